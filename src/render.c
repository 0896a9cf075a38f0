/* render.c — a campaign's messages: templates per segment and locale (RFC 4647 lookup), the variable context, localized dates, the composed message (RFC 5322 via mime_compose, RFC 5545 attachment). */
#include "render.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <libical/ical.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "address.h"
#include "import.h"
#include "locale_dates.h"
#include "mime.h"
#include "mustache.h"
#include "schedule.h"

#define MAX_LOCALE_CHAIN 8
#define ZONE_SLOTS 512     /* (time zone, date language) pairs a renderer remembers */
#define ZONE_MAX_USED 384  /* past this many the cache starts afresh */
#define MAX_TEMPLATE_BYTES (1024 * 1024)

/* ---- compiled templates ------------------------------------------------------------------- */

/* One template folder in one locale: its compiled parts (html may be NULL). */
struct tmpl_set {
	const char *name;   /* the segment's template_name (owned by the campaign) */
	const char *locale; /* a locale folder name, or NULL for the default */
	char *dir;
	char *path[RENDER_NPARTS];
	struct mustache *part[RENDER_NPARTS];
};

struct render_templates {
	const struct campaign *c;
	char **locales; /* locale folders on disk, sorted */
	size_t n_locales;
	struct tmpl_set *sets;
	size_t n_sets;
};

/* Reads a whole file. Returns 0, 1 when it does not exist, or ERR_IO / ERR_CONFIG. */
static int file_read(const char *path, char **out, struct err *e)
{
	struct buf b;
	char chunk[8192];
	FILE *f;
	size_t n;
	int rc = 0;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL)
		return errno == ENOENT ? 1 : err_sys(e, ERR_IO, errno, "%s cannot be read", path);
	buf_init(&b);
	buf_puts(&b, "");
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_TEMPLATE_BYTES)
		buf_append(&b, chunk, n);
	if (ferror(f))
		rc = err_sys(e, ERR_IO, errno, "%s cannot be read", path);
	else if (b.len > MAX_TEMPLATE_BYTES)
		rc = err_set(e, ERR_CONFIG, "%s is larger than %d bytes", path, MAX_TEMPLATE_BYTES);
	else if (strlen(b.data) != b.len || !str_utf8_valid(b.data, b.len))
		rc = err_set(e, ERR_CONFIG, "%s is not UTF-8 text (save it as UTF-8)", path);
	fclose(f);
	if (rc == 0)
		*out = buf_steal(&b);
	buf_free(&b);
	return rc;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_template_name(const struct campaign *c, const char *name)
{
	for (size_t i = 0; i < c->n_segments; i++)
		if (strcmp(c->segments[i].template_name, name) == 0)
			return true;
	return false;
}

/* A folder name that is a language tag as written ("pt-BR", not "pt_BR") and no template's. */
static bool is_locale_folder(const struct campaign *c, const char *name)
{
	char copy[64];

	if (strlen(name) >= sizeof copy || strcmp(name, "partials") == 0 ||
	    is_template_name(c, name))
		return false;
	memcpy(copy, name, strlen(name) + 1);
	return import_locale_normalize(copy) && strcmp(copy, name) == 0;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the locale folders of the campaign's templates folder. */
static void locales_scan(struct render_templates *t)
{
	DIR *dir = opendir(t->c->templates_dir);
	struct dirent *de;

	if (dir == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		char *path;
		if (!is_locale_folder(t->c, de->d_name))
			continue;
		path = xasprintf("%s/%s", t->c->templates_dir, de->d_name);
		if (is_dir(path)) {
			t->locales = xrealloc(t->locales, (t->n_locales + 1) * sizeof *t->locales);
			t->locales[t->n_locales++] = xstrdup(de->d_name);
		}
		free(path);
	}
	closedir(dir);
	if (t->n_locales > 1) /* qsort must not be given NULL, which locales is when empty */
		qsort(t->locales, t->n_locales, sizeof *t->locales, str_cmp);
}

/* The locale folder called tag (case ignored), or NULL. */
static const char *locale_folder(const struct render_templates *t, const char *tag, size_t n)
{
	for (size_t i = 0; i < t->n_locales; i++)
		if (strlen(t->locales[i]) == n && strncasecmp(t->locales[i], tag, n) == 0)
			return t->locales[i];
	return NULL;
}

/*
 * The locale folders a tag falls back through, most specific first (RFC 4647
 * lookup: "pt-BR", then "pt"), leaving out those not on disk. Returns the count.
 */
static size_t locale_chain(const struct render_templates *t, const char *tag,
			   const char *out[MAX_LOCALE_CHAIN])
{
	size_t n = tag ? strlen(tag) : 0, k = 0;

	while (n > 0 && k < MAX_LOCALE_CHAIN) {
		const char *f = locale_folder(t, tag, n);
		if (f != NULL)
			out[k++] = f;
		while (n > 0 && tag[n - 1] != '-' && tag[n - 1] != '_')
			n--;
		if (n > 0)
			n--;
	}
	return k;
}

static const struct tmpl_set *set_find(const struct render_templates *t, const char *name,
				       const char *locale)
{
	for (size_t i = 0; i < t->n_sets; i++) {
		const struct tmpl_set *s = &t->sets[i];
		if (strcmp(s->name, name) == 0 &&
		    (locale == NULL ? s->locale == NULL : s->locale == locale))
			return s;
	}
	return NULL;
}

/* The set a recipient with this locale tag gets for template name, or NULL if none. */
static const struct tmpl_set *set_pick(const struct render_templates *t, const char *name,
				       const char *tag)
{
	const char *chain[MAX_LOCALE_CHAIN];
	size_t n = locale_chain(t, tag, chain);

	for (size_t i = 0; i < n; i++) {
		const struct tmpl_set *s = set_find(t, name, chain[i]);
		if (s != NULL)
			return s;
	}
	return set_find(t, name, NULL);
}

const char *render_templates_locale(const struct render_templates *t, const char *template_name,
				    const char *locale)
{
	const struct tmpl_set *s = set_pick(t, template_name, locale);

	return s && s->locale ? s->locale : RENDER_DEFAULT_LOCALE;
}

/* Where a template in locale folder `locale` (NULL: default) looks for partials. */
struct partial_dirs {
	const struct render_templates *t;
	const char *locale;
};

static bool partial_name_ok(const char *name)
{
	return name[0] != '\0' && name[0] != '.' && strchr(name, '/') == NULL &&
	       strchr(name, '\\') == NULL;
}

static int partial_load(void *ud, const char *name, char **text_out, char **origin_out,
			struct err *e)
{
	const struct partial_dirs *pd = ud;
	const char *chain[MAX_LOCALE_CHAIN];
	size_t n = locale_chain(pd->t, pd->locale, chain);

	if (!partial_name_ok(name))
		return 1;
	for (size_t i = 0; i <= n; i++) {
		char *path = i < n ? xasprintf("%s/%s/partials/%s.mustache", pd->t->c->templates_dir,
					       chain[i], name)
				   : xasprintf("%s/partials/%s.mustache", pd->t->c->templates_dir, name);
		int rc = file_read(path, text_out, e);
		if (rc == 0) {
			*origin_out = path;
			return 0;
		}
		free(path);
		if (rc < 0)
			return rc;
	}
	return 1;
}

/* Subjects and login texts are one line: the file's own final newline is not part of it. */
static void trim_end(char *text)
{
	size_t n = strlen(text);

	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
			 text[n - 1] == '\t'))
		text[--n] = '\0';
}

/* Adds a problem to d unless the same one is there (a partial included by several templates). */
static void diag_once(struct diag *d, const char *where, const char *prefix, const char *msg)
{
	char *text = xasprintf("%s%s", prefix, msg);

	for (int i = 0; i < d->count; i++) {
		if (strcmp(d->entries[i].file, where) == 0 && strcmp(d->entries[i].msg, text) == 0) {
			free(text);
			return;
		}
	}
	diag_add(d, where, 0, "%s", text);
	free(text);
}

/* Adds a problem whose message may start with "FILE.mustache:LINE:COL: " to d, located there. */
static void diag_located(struct diag *d, const char *fallback_file, const char *prefix,
			 const char *msg)
{
	const char *p = strstr(msg, ".mustache:");
	int line, col, used = 0;

	if (p != NULL && sscanf(p + 10, "%d:%d: %n", &line, &col, &used) == 2 && used > 0) {
		char *where = xasprintf("%.*s:%d:%d", (int)(p + 9 - msg), msg, line, col);
		diag_once(d, where, prefix, p + 10 + used);
		free(where);
		return;
	}
	diag_once(d, fallback_file, prefix, msg);
}

/* Compiles one part of a set; a missing optional part stays NULL. */
static void set_compile_part(struct render_templates *t, struct tmpl_set *s, int p,
			     struct diag *d)
{
	struct partial_dirs pd = {t, s->locale};
	struct mustache_partials partials = {partial_load, &pd};
	struct err e = {0};
	char *text = NULL;
	int rc;

	s->path[p] = xasprintf("%s/%s.mustache", s->dir, campaign_template_parts[p]);
	rc = file_read(s->path[p], &text, &e);
	if (rc == 1 && campaign_template_required[p])
		diag_add(d, s->path[p], 0, "missing: template %s%s%s needs subject, text and login"
			 " (html is optional)", s->locale ? s->locale : "", s->locale ? "/" : "",
			 s->name);
	if (rc != 0) {
		if (rc < 0)
			diag_add(d, s->path[p], 0, "%s", e.msg);
		goto out;
	}
	if (p == RENDER_SUBJECT || p == RENDER_LOGIN)
		trim_end(text);
	if (mustache_compile(&s->part[p], text, s->path[p], &partials, &e) != 0)
		diag_located(d, s->path[p], "", e.msg);
out:
	free(text);
}

static void set_add(struct render_templates *t, const char *name, const char *locale,
		    struct diag *d)
{
	struct tmpl_set *s;

	t->sets = xrealloc(t->sets, (t->n_sets + 1) * sizeof *t->sets);
	s = &t->sets[t->n_sets++];
	memset(s, 0, sizeof *s);
	s->name = name;
	s->locale = locale;
	s->dir = locale ? xasprintf("%s/%s/%s", t->c->templates_dir, locale, name)
			: xasprintf("%s/%s", t->c->templates_dir, name);
	for (int p = 0; p < RENDER_NPARTS; p++)
		set_compile_part(t, s, p, d);
}

/* Compiles the default and every locale version of every template a segment uses. */
static struct render_templates *templates_build(const struct campaign *c, struct diag *d)
{
	struct render_templates *t = xcalloc(1, sizeof *t);

	t->c = c;
	locales_scan(t);
	for (size_t i = 0; i < c->n_segments; i++) {
		const char *name = c->segments[i].template_name;
		if (set_find(t, name, NULL) != NULL)
			continue;
		set_add(t, name, NULL, d);
		for (size_t k = 0; k < t->n_locales; k++) {
			char *dir = xasprintf("%s/%s/%s", c->templates_dir, t->locales[k], name);
			if (is_dir(dir))
				set_add(t, name, t->locales[k], d);
			free(dir);
		}
	}
	return t;
}

void render_templates_free(struct render_templates *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_sets; i++) {
		for (int p = 0; p < RENDER_NPARTS; p++) {
			mustache_free(t->sets[i].part[p]);
			free(t->sets[i].path[p]);
		}
		free(t->sets[i].dir);
	}
	free(t->sets);
	for (size_t i = 0; i < t->n_locales; i++)
		free(t->locales[i]);
	free(t->locales);
	free(t);
}

/* ---- the variable context ------------------------------------------------------------------ */

/* The dates of one (time zone, date language) pair, and today's days_left there. */
struct zone_entry {
	char *tz; /* NULL: free slot */
	const struct locale_dates *dates;
	json_t *cutoff_date, *cutoff_time, *reminder_start_date, *days_left;
	long long cutoff_day; /* local date of the cutoff, days since 1970-01-01 */
	int64_t last_now;
	bool have_now;
};

struct render {
	const struct render_templates *t;
	const struct campaign *c;
	struct render_options o;
	json_t *root;        /* the context; values are replaced for each message */
	json_t *recipient;   /* root.recipient */
	json_t *attributes;  /* root.attributes */
	json_t **segments;   /* the segment object of each segment, by index */
	struct zone_entry zones[ZONE_SLOTS];
	size_t zones_used;
	struct buf url;      /* the unsubscribe URL being built */
	EVP_MAC_CTX *mac;    /* HMAC keyed with o.secret, made on first use */
	struct mime_cache *mime; /* the header lines every message of the run shares */
};

static json_t *json_str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/*
 * Sets key of o to a string (or null), replacing what it held. Most of a context's
 * strings are the same from one recipient to the next (locale, client, version,
 * segment values): an equal value is left in place, which saves a new string, its
 * UTF-8 check and the old one's release (a fifth of filling the context).
 */
static void set_str(json_t *o, const char *key, const char *s)
{
	json_t *old = json_object_get(o, key), *v;

	if (s == NULL ? json_is_null(old)
		      : json_is_string(old) && strcmp(json_string_value(old), s) == 0)
		return;
	/* A string only o holds (a user id, an address, a name) is rewritten where it is:
	 * no new value, no hash table update, no release of the old one. json_string_set
	 * refuses a value that is not UTF-8 and leaves old as it was; null is set below. */
	if (s != NULL && json_is_string(old) && old->refcount == 1 && json_string_set(old, s) == 0)
		return;
	v = json_str_or_null(s); /* NULL for a value that is not UTF-8: render it empty */
	json_object_set_new_nocheck(o, key, v != NULL ? v : json_null());
}

static json_t *campaign_object(const struct campaign *c)
{
	json_t *o = json_object();

	set_str(o, "name", c->name);
	set_str(o, "title", c->title);
	set_str(o, "from_name", c->from_name);
	set_str(o, "from_address", c->from_addr);
	set_str(o, "upgrade_url", c->upgrade_url);
	set_str(o, "timezone", c->timezone);
	return o;
}

static json_t *segment_object(const struct campaign *c, const struct segment *g)
{
	json_t *o = json_object();

	set_str(o, "name", g->name);
	set_str(o, "target_version", g->target_version);
	set_str(o, "upgrade_url", g->upgrade_url ? g->upgrade_url : c->upgrade_url);
	json_object_set_new_nocheck(o, "discontinued", json_boolean(g->target_version == NULL));
	return o;
}

static const char *const recipient_keys[] = {"user_id", "email",   "name",     "locale", "timezone",
					     "client",  "version", "platform", "os",     NULL};

/* Builds the context skeleton: every key present, so the static check sees the full set. */
static void context_init(struct render *r)
{
	const struct campaign *c = r->c;
	static const char *const top[] = {"client_name", "cutoff_date", "cutoff_time",
					  "reminder_start_date", "days_left", "upgrade_url",
					  "target_version", "unsubscribe_url", "locale", "timezone",
					  "kind", "is_reminder", "is_final_notice", NULL};

	r->root = json_object();
	r->recipient = json_object();
	r->attributes = json_object();
	for (int i = 0; recipient_keys[i] != NULL; i++)
		json_object_set_new_nocheck(r->recipient, recipient_keys[i], json_null());
	for (size_t i = 0; i < c->attributes.n; i++)
		json_object_set_new(r->attributes, c->attributes.values[i], json_null());
	json_object_set_nocheck(r->root, "recipient", r->recipient);
	json_object_set_nocheck(r->root, "attributes", r->attributes);
	json_object_set_new_nocheck(r->root, "campaign", campaign_object(c));
	r->segments = xcalloc(c->n_segments ? c->n_segments : 1, sizeof *r->segments);
	for (size_t i = 0; i < c->n_segments; i++)
		r->segments[i] = segment_object(c, &c->segments[i]);
	if (c->n_segments > 0)
		json_object_set_nocheck(r->root, "segment", r->segments[0]);
	else
		json_object_set_new_nocheck(r->root, "segment", json_object());
	for (int i = 0; top[i] != NULL; i++)
		json_object_set_new_nocheck(r->root, top[i], json_null());
}

struct render *render_new(const struct render_templates *t, const struct render_options *o)
{
	struct render *r = xcalloc(1, sizeof *r);

	r->t = t;
	r->c = t->c;
	if (o != NULL)
		r->o = *o;
	buf_init(&r->url);
	r->mime = mime_cache_new();
	context_init(r);
	return r;
}

static void zones_clear(struct render *r)
{
	for (size_t i = 0; i < ZONE_SLOTS; i++) {
		struct zone_entry *z = &r->zones[i];
		if (z->tz == NULL)
			continue;
		free(z->tz);
		json_decref(z->cutoff_date), json_decref(z->cutoff_time);
		json_decref(z->reminder_start_date), json_decref(z->days_left);
		memset(z, 0, sizeof *z);
	}
	r->zones_used = 0;
}

void render_free(struct render *r)
{
	if (r == NULL)
		return;
	zones_clear(r);
	for (size_t i = 0; i < r->c->n_segments; i++)
		json_decref(r->segments[i]);
	free(r->segments);
	json_decref(r->recipient);
	json_decref(r->attributes);
	json_decref(r->root);
	buf_free(&r->url);
	EVP_MAC_CTX_free(r->mac);
	mime_cache_free(r->mime);
	free(r);
}

/* The local wall-clock date and time of t in tzid. */
static int local_civil(int64_t t, const char *tzid, struct locale_civil *out, struct err *e)
{
	struct schedule_civil c;

	if (schedule_local_civil(t, tzid, &c) != 0)
		return err_set(e, ERR_DATA, "time zone '%s' is unknown, or the date is outside"
			       " years 1-9999", tzid ? tzid : "(none)");
	out->year = c.year, out->month = c.month, out->day = c.day;
	out->hour = c.hour, out->minute = c.minute;
	out->weekday = locale_weekday(out->year, out->month, out->day);
	return 0;
}

int render_format_date(int64_t t, const char *tzid, const char *locale, char *buf, size_t n,
		       struct err *e)
{
	struct locale_civil lc;
	int rc;

	if (n > 0)
		buf[0] = '\0';
	if ((rc = local_civil(t, tzid, &lc, e)) != 0)
		return rc;
	if (locale_dates_format_date(locale_dates_find(locale), &lc, buf, n) < 0)
		return err_set(e, ERR_DATA, "the date does not fit in %zu bytes", n);
	return 0;
}

int render_format_time(int64_t t, const char *tzid, const char *locale, char *buf, size_t n,
		       struct err *e)
{
	struct locale_civil lc;
	int rc;

	if (n > 0)
		buf[0] = '\0';
	if ((rc = local_civil(t, tzid, &lc, e)) != 0)
		return rc;
	if (locale_dates_format_time(locale_dates_find(locale), &lc, buf, n) < 0)
		return err_set(e, ERR_DATA, "the time does not fit in %zu bytes", n);
	return 0;
}

/* Whole local days from now to the cutoff whose local date is cutoff_day. */
static int days_until(int64_t now, int64_t cutoff, long long cutoff_day, const char *tzid,
		      int64_t *out, struct err *e)
{
	struct locale_civil today = {0};
	long long d;
	int rc;

	*out = 0;
	if (now >= cutoff)
		return 0;
	if ((rc = local_civil(now, tzid, &today, e)) != 0)
		return rc;
	d = cutoff_day - locale_days_from_civil(today.year, today.month, today.day);
	*out = d > 0 ? d : 0;
	return 0;
}

int render_days_left(int64_t now, int64_t cutoff, const char *tzid, int64_t *out, struct err *e)
{
	struct locale_civil c = {0};
	int rc;

	*out = 0;
	if ((rc = local_civil(cutoff, tzid, &c, e)) != 0)
		return rc;
	return days_until(now, cutoff, locale_days_from_civil(c.year, c.month, c.day), tzid, out,
			  e);
}

static json_t *date_json(const struct locale_dates *l, const struct locale_civil *c, bool time)
{
	char buf[RENDER_DATE_SIZE];

	if ((time ? locale_dates_format_time(l, c, buf, sizeof buf)
		  : locale_dates_format_date(l, c, buf, sizeof buf)) < 0)
		return json_null();
	return json_string(buf);
}

/* Fills a new cache entry for (tz, dates). */
static int zone_fill(const struct campaign *c, struct zone_entry *z, const char *tz,
		     const struct locale_dates *dates, struct err *e)
{
	struct locale_civil cut, start;
	int rc;

	if ((rc = local_civil(c->cutoff_at, tz, &cut, e)) != 0 ||
	    (rc = local_civil(c->reminder_start_at, tz, &start, e)) != 0)
		return rc;
	z->tz = xstrdup(tz);
	z->dates = dates;
	z->cutoff_date = date_json(dates, &cut, false);
	z->cutoff_time = date_json(dates, &cut, true);
	z->reminder_start_date = date_json(dates, &start, false);
	z->days_left = json_integer(0);
	z->cutoff_day = locale_days_from_civil(cut.year, cut.month, cut.day);
	z->have_now = false;
	return 0;
}

/* The cache entry of (tz, dates), made on first use; NULL with e set if tz is unknown. */
static struct zone_entry *zone_get(struct render *r, const char *tz,
				   const struct locale_dates *dates, struct err *e)
{
	uint64_t h = hash_fnv1a(HASH_FNV1A_INIT, tz, strlen(tz));
	size_t i;

	h = hash_fnv1a(h, &dates, sizeof dates);
	for (i = h % ZONE_SLOTS; r->zones[i].tz != NULL; i = (i + 1) % ZONE_SLOTS)
		if (r->zones[i].dates == dates && strcmp(r->zones[i].tz, tz) == 0)
			return &r->zones[i];
	if (r->zones_used >= ZONE_MAX_USED) {
		zones_clear(r);
		for (i = h % ZONE_SLOTS; r->zones[i].tz != NULL; i = (i + 1) % ZONE_SLOTS)
			;
	}
	if (zone_fill(r->c, &r->zones[i], tz, dates, e) != 0)
		return NULL;
	r->zones_used++;
	return &r->zones[i];
}

/* Sets the date variables for a recipient in zone tz reading dates in `dates`. */
static int context_dates(struct render *r, const char *tz, const struct locale_dates *dates,
			 int64_t now, struct err *e)
{
	struct zone_entry *z = zone_get(r, tz, dates, e);
	int64_t days;
	int rc;

	if (z == NULL)
		return ERR_DATA;
	if (!z->have_now || z->last_now != now) {
		if ((rc = days_until(now, r->c->cutoff_at, z->cutoff_day, tz, &days, e)) != 0)
			return rc;
		json_integer_set(z->days_left, days);
		z->last_now = now, z->have_now = true;
	}
	json_object_set_nocheck(r->root, "cutoff_date", z->cutoff_date);
	json_object_set_nocheck(r->root, "cutoff_time", z->cutoff_time);
	json_object_set_nocheck(r->root, "reminder_start_date", z->reminder_start_date);
	json_object_set_nocheck(r->root, "days_left", z->days_left);
	set_str(r->root, "timezone", tz);
	return 0;
}

/* The declared attributes of a recipient; those it lacks are null. */
static void context_attributes(struct render *r, const char *attrs)
{
	const struct match_list *names = &r->c->attributes;
	json_t *parsed = NULL;

	if (names->n == 0)
		return;
	if (attrs != NULL)
		parsed = json_loads(attrs, JSON_REJECT_DUPLICATES, NULL);
	for (size_t i = 0; i < names->n; i++) {
		json_t *v = json_is_object(parsed) ? json_object_get(parsed, names->values[i]) : NULL;
		json_object_set(r->attributes, names->values[i],
				json_is_string(v) ? v : json_null());
	}
	json_decref(parsed);
}

/* base64url without padding. */
static void base64url(const unsigned char *p, size_t n, char *out)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t k = 0;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		out[k++] = a[(v >> 18) & 63];
		out[k++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[k++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[k++] = a[v & 63];
	}
	out[k] = '\0';
}

/* The token with a keyed context, which is re-initialised with the same key each time. */
static int token_make(EVP_MAC_CTX *ctx, const char *campaign, int64_t recipient_id, char *token,
		      struct err *e)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char id[24];
	size_t md_len = 0;
	int ok;

	token[0] = '\0';
	snprintf(id, sizeof id, "%lld", (long long)recipient_id);
	ok = ctx != NULL && EVP_MAC_init(ctx, NULL, 0, NULL) == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)"unsubscribe", sizeof "unsubscribe") == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)campaign, strlen(campaign) + 1) == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
	     EVP_MAC_final(ctx, md, &md_len, sizeof md) == 1 && md_len >= 16;
	if (ok)
		base64url(md, 16, token);
	OPENSSL_cleanse(md, sizeof md);
	return ok ? 0 : err_set(e, ERR_SOFTWARE, "OpenSSL HMAC-SHA256 failed; cannot make an"
				" unsubscribe token");
}

int render_unsubscribe_token(const unsigned char *secret, size_t secret_len, const char *campaign,
			     int64_t recipient_id, char *token, struct err *e)
{
	EVP_MAC_CTX *ctx = hmac_sha256_new(secret, secret_len);
	int rc = token_make(ctx, campaign, recipient_id, token, e);

	EVP_MAC_CTX_free(ctx);
	return rc;
}

/* Sets *out to the one-click URL for this message, or NULL when the campaign has none. */
static int unsubscribe_url(struct render *r, const struct render_request *q, const char **out,
			   struct err *e)
{
	const struct campaign *c = r->c;
	char token[RENDER_TOKEN_LEN + 1], id[24];
	int rc;

	*out = NULL;
	if (!c->list_unsubscribe)
		return 0;
	if (q->unsubscribe_url != NULL) {
		*out = q->unsubscribe_url;
		return 0;
	}
	if (c->unsubscribe_url == NULL || r->o.secret == NULL || r->o.secret_len == 0)
		return 0;
	if (r->mac == NULL)
		r->mac = hmac_sha256_new(r->o.secret, r->o.secret_len);
	if ((rc = token_make(r->mac, c->name, q->recipient->id, token, e)) != 0)
		return rc;
	/* "<url>?c=<campaign>&r=<id>&t=<token>" ('&' when url has a query): one a message, so
	 * appended piece by piece rather than through a format string (buf_printf parses it twice). */
	snprintf(id, sizeof id, "%lld", (long long)q->recipient->id);
	buf_reset(&r->url);
	buf_puts(&r->url, c->unsubscribe_url);
	buf_puts(&r->url, strchr(c->unsubscribe_url, '?') ? "&c=" : "?c=");
	buf_puts(&r->url, c->name);
	buf_puts(&r->url, "&r=");
	buf_puts(&r->url, id);
	buf_puts(&r->url, "&t=");
	buf_puts(&r->url, token);
	*out = r->url.data;
	return 0;
}

/* A value fit for X-Cutoff-Recipient: printable ASCII, no space, no "=?", not too long. */
static bool header_token(const char *s)
{
	size_t n = 0;

	if (s == NULL || *s == '\0' || strstr(s, "=?") != NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return n <= 200;
}

/* How the recipient is named in X-Cutoff-Recipient and in errors. */
static const char *recipient_key(const struct store_recipient *rc)
{
	return header_token(rc->user_id) ? rc->user_id : rc->email;
}

/* Sets recipient.*, attributes.* and the segment's variables. */
static void context_recipient(struct render *r, const struct store_recipient *rc,
			      const struct segment *g)
{
	const struct campaign *c = r->c;
	const char *values[] = {rc->user_id, rc->email,   rc->name,     rc->locale, rc->timezone,
				rc->client,  rc->version, rc->platform, rc->os};

	for (int i = 0; recipient_keys[i] != NULL; i++)
		set_str(r->recipient, recipient_keys[i], values[i]);
	context_attributes(r, rc->attrs);
	json_object_set_nocheck(r->root, "segment", r->segments[g - c->segments]);
	set_str(r->root, "client_name", rc->client ? campaign_client_name(c, rc->client) : NULL);
	set_str(r->root, "upgrade_url", g->upgrade_url ? g->upgrade_url : c->upgrade_url);
	set_str(r->root, "target_version", g->target_version);
}

/* Fills the context for q; *set_out is the template set the recipient gets. */
static int context_fill(struct render *r, const struct render_request *q,
			const struct tmpl_set **set_out, struct err *e)
{
	const struct store_recipient *rc = q->recipient;
	const struct segment *g = q->segment;
	const struct campaign *c = r->c;
	const struct tmpl_set *s;
	const char *unsub, *tz = rc->timezone ? rc->timezone : c->timezone, *tl;
	int ret;

	if (rc->email == NULL)
		return err_set(e, ERR_REFUSED, "recipient %s has no address (forgotten): nothing"
			       " to render", rc->user_id ? rc->user_id : "?");
	if (g == NULL || g < c->segments || g >= c->segments + c->n_segments)
		return err_set(e, ERR_REFUSED, "recipient %s is in no segment of campaign %s (not"
			       " affected): nothing to render", recipient_key(rc), c->name);
	if ((s = set_pick(r->t, g->template_name, rc->locale)) == NULL)
		return err_set(e, ERR_SOFTWARE, "template %s of campaign %s was not loaded",
			       g->template_name, c->name);
	tl = s->locale ? s->locale : RENDER_DEFAULT_LOCALE;
	context_recipient(r, rc, g);
	set_str(r->root, "locale", tl);
	if ((ret = context_dates(r, tz, locale_dates_find(locale_same_language(rc->locale, tl) ?
							  rc->locale : tl), q->now, e)) != 0) {
		err_prefix(e, "recipient %s: ", recipient_key(rc));
		return ret;
	}
	if ((ret = unsubscribe_url(r, q, &unsub, e)) != 0)
		return ret;
	set_str(r->root, "unsubscribe_url", unsub);
	*set_out = s;
	return 0;
}

/* What kind of message this is: kind, and the two flags a template can test in a section. */
static void context_kind(struct render *r, const char *kind)
{
	set_str(r->root, "kind", kind);
	json_object_set_new_nocheck(r->root, "is_reminder",
				    json_boolean(strcmp(kind, "reminder") == 0));
	json_object_set_new_nocheck(r->root, "is_final_notice",
				    json_boolean(strcmp(kind, "final") == 0));
}

/* ---- rendering and composing -------------------------------------------------------------- */

void render_result_init(struct render_result *res)
{
	memset(res, 0, sizeof *res);
	for (int p = 0; p < RENDER_NPARTS; p++)
		buf_init(&res->part[p]);
	buf_init(&res->message);
}

void render_result_free(struct render_result *res)
{
	if (res == NULL)
		return;
	for (int p = 0; p < RENDER_NPARTS; p++)
		buf_free(&res->part[p]);
	buf_free(&res->message);
	free(res->message_id);
	res->message_id = NULL;
}

static const char *buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* Renders part p of set s for recipient who into out (strict; HTML escaped for html). */
static int part_render(struct render *r, const struct tmpl_set *s, int p,
		       const struct store_recipient *who, struct buf *out, struct err *e)
{
	int ret;

	buf_reset(out);
	buf_puts(out, "");
	ret = mustache_render(s->part[p], r->root,
			      MUSTACHE_STRICT | (p == RENDER_HTML ? MUSTACHE_ESCAPE_HTML : 0), out, e);
	if (ret != 0)
		err_prefix(e, "recipient %s: ", recipient_key(who));
	return ret;
}

/* The name for To: left out when it holds "=?", which readers would decode (RFC 2047). */
static const char *to_name(const char *name)
{
	return name != NULL && strstr(name, "=?") == NULL ? name : NULL;
}

/* The calendar attachment: the cutoff as an all-day event on its local date. */
static char *ics_build(struct render *r, const struct render_request *q, const char *summary)
{
	const struct campaign *c = r->c;
	const char *tz = q->recipient->timezone ? q->recipient->timezone : c->timezone;
	struct locale_civil cut = {0};
	struct icaltimetype day = icaltime_null_date(), next;
	icalcomponent *cal, *ev;
	char *uid, *text, *out;

	if (local_civil(c->cutoff_at, tz, &cut, NULL) != 0)
		return NULL;
	day.year = cut.year, day.month = cut.month, day.day = cut.day;
	next = day;
	icaltime_adjust(&next, 1, 0, 0, 0);
	uid = xasprintf("cutoff-%s-%lld@%s", c->name, (long long)q->recipient->id,
			address_domain(c->from_addr));
	ev = icalcomponent_vanew(
		ICAL_VEVENT_COMPONENT, icalproperty_new_uid(uid),
		icalproperty_new_dtstamp(icaltime_from_timet_with_zone((time_t)q->now, 0,
								       icaltimezone_get_utc_timezone())),
		icalproperty_new_dtstart(day), icalproperty_new_dtend(next),
		icalproperty_new_summary(summary), icalproperty_new_transp(ICAL_TRANSP_TRANSPARENT),
		(void *)0);
	if (json_string_value(json_object_get(r->root, "upgrade_url")) != NULL)
		icalcomponent_add_property(ev, icalproperty_new_url(json_string_value(
						       json_object_get(r->root, "upgrade_url"))));
	cal = icalcomponent_vanew(ICAL_VCALENDAR_COMPONENT, icalproperty_new_version("2.0"),
				  icalproperty_new_prodid("-//cutoff//" CUTOFF_VERSION "//EN"),
				  icalproperty_new_method(ICAL_METHOD_PUBLISH), ev, (void *)0);
	text = icalcomponent_as_ical_string_r(cal);
	out = text ? xstrdup(text) : NULL;
	icalmemory_free_buffer(text);
	icalcomponent_free(cal);
	free(uid);
	return out;
}

static int compose(struct render *r, const struct render_request *q, struct render_result *res,
		   struct err *e)
{
	const struct campaign *c = r->c;
	const struct store_recipient *rc = q->recipient;
	const char *unsub = json_string_value(json_object_get(r->root, "unsubscribe_url"));
	char *ics = r->o.attach_ics ? ics_build(r, q, buf_str(&res->part[RENDER_SUBJECT])) : NULL;
	struct mime_message_spec s = {
		.from_name = c->from_name,
		.from_addr = c->from_addr,
		.reply_to = c->reply_to,
		.to_name = to_name(rc->name),
		.to_addr = rc->email,
		.subject = buf_str(&res->part[RENDER_SUBJECT]),
		.text = buf_str(&res->part[RENDER_TEXT]),
		.html = res->has_html ? buf_str(&res->part[RENDER_HTML]) : NULL,
		.message_id_domain = address_domain(c->from_addr),
		.unsubscribe_mailto = c->list_unsubscribe ? q->unsubscribe_mailto : NULL,
		.unsubscribe_url = unsub,
		.campaign = c->name,
		.recipient_id = recipient_key(rc),
		.delivery_id = q->delivery_id,
		.date = q->now,
		.ics = ics,
	};
	int ret;

	free(res->message_id);
	res->message_id = NULL;
	ret = mime_compose_cached(r->mime, &s, &res->message, &res->message_id, e);
	free(ics);
	return ret;
}

int render_parts(struct render *r, const struct render_request *q, struct render_result *res,
		 struct err *e)
{
	const struct tmpl_set *s = NULL;
	int rc;

	res->has_html = false;
	if ((rc = context_fill(r, q, &s, e)) != 0)
		return rc;
	context_kind(r, q->kind ? q->kind : "initial");
	res->days_left = json_integer_value(json_object_get(r->root, "days_left"));
	res->locale = s->locale ? s->locale : RENDER_DEFAULT_LOCALE;
	if ((rc = part_render(r, s, RENDER_SUBJECT, q->recipient, &res->part[RENDER_SUBJECT], e)) ||
	    (rc = part_render(r, s, RENDER_TEXT, q->recipient, &res->part[RENDER_TEXT], e)))
		return rc;
	if (s->part[RENDER_HTML] != NULL) {
		if ((rc = part_render(r, s, RENDER_HTML, q->recipient, &res->part[RENDER_HTML], e)))
			return rc;
		res->has_html = true;
	}
	return 0;
}

int render_message(struct render *r, const struct render_request *q, struct render_result *res,
		   struct err *e)
{
	int rc = render_parts(r, q, res, e);

	return rc != 0 ? rc : compose(r, q, res, e);
}

int render_login(struct render *r, const struct render_request *q, struct render_result *res,
		 struct err *e)
{
	const struct tmpl_set *s = NULL;
	int rc;

	if ((rc = context_fill(r, q, &s, e)) != 0)
		return rc;
	context_kind(r, q->kind ? q->kind : "login");
	res->locale = s->locale ? s->locale : RENDER_DEFAULT_LOCALE;
	res->days_left = json_integer_value(json_object_get(r->root, "days_left"));
	if ((rc = part_render(r, s, RENDER_LOGIN, q->recipient, &res->part[RENDER_LOGIN], e)))
		return rc;
	if (str_has_control(buf_str(&res->part[RENDER_LOGIN])))
		return err_set(e, ERR_DATA, "recipient %s: the login text contains a line break or"
			       " control character (from a variable); refusing to show it",
			       recipient_key(q->recipient));
	return 0;
}

/* ---- loading for sending, and the check ---------------------------------------------------- */

/* Problems already reported (a partial included by several templates is reported once). */
struct seen {
	char **keys;
	size_t n;
};

static bool seen_add(struct seen *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i], key) == 0)
			return false;
	s->keys = xrealloc(s->keys, (s->n + 1) * sizeof *s->keys);
	s->keys[s->n++] = xstrdup(key);
	return true;
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->keys[i]);
	free(s->keys);
}

/* What the name check walks with. */
struct names_check {
	const json_t *shape; /* a context with every variable present */
	struct diag *d;
	struct seen seen;
	const struct campaign *c;
};

/* Looks name up in a context stack of shapes, as mustache does; NULL when it resolves to nothing. */
static const json_t *shape_lookup(const json_t *const *stack, size_t depth, const char *name)
{
	const char *dot = strchr(name, '.');
	size_t first = dot ? (size_t)(dot - name) : strlen(name);
	char part[256];
	const json_t *v = NULL;

	if (strcmp(name, ".") == 0)
		return stack[depth - 1] ? stack[depth - 1] : json_null();
	if (first >= sizeof part)
		return NULL;
	memcpy(part, name, first), part[first] = '\0';
	for (size_t i = depth; i-- > 0 && v == NULL;)
		if (json_is_object(stack[i]))
			v = json_object_get(stack[i], part);
	while (v != NULL && dot != NULL) {
		const char *next = strchr(dot + 1, '.');
		size_t len = next ? (size_t)(next - dot - 1) : strlen(dot + 1);
		if (len >= sizeof part || !json_is_object(v))
			return NULL;
		memcpy(part, dot + 1, len), part[len] = '\0';
		v = json_object_get(v, part);
		dot = next;
	}
	return v;
}

/* Adds every variable name the shape has ("recipient.name", "days_left") to out. */
static void shape_names(const json_t *o, const char *prefix, struct seen *out)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v) {
		char *full = prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
		if (json_is_object(v))
			shape_names(v, full, out);
		else
			seen_add(out, full);
		free(full);
	}
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64], prev, tmp;

	if (lb >= 64 || la >= 64)
		return 64;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0], row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j], row[j] = best, prev = tmp;
		}
	}
	return row[lb];
}

/* "; did you mean 'cutoff_date'?" for a near miss, else a pointer to the list. */
static void suggestion(const struct names_check *nc, const char *name, char *out, size_t n)
{
	struct seen all = {0};
	const char *best = NULL;
	size_t best_d = 3;

	shape_names(nc->shape, NULL, &all);
	for (size_t i = 0; i < all.n; i++) {
		size_t d = edit_distance(name, all.keys[i]);
		if (d < best_d)
			best_d = d, best = all.keys[i];
	}
	if (best != NULL)
		snprintf(out, n, "; did you mean '%s'?", best);
	else if (strncmp(name, "attributes.", 11) == 0)
		snprintf(out, n, "; add '%s' to the campaign's attributes list (a CSV column)",
			 name + 11);
	else
		snprintf(out, n, " (the variables are listed in docs/templates.md)");
	seen_free(&all);
}

static void name_problem(struct names_check *nc, const struct mustache_name *n, const char *what,
			 const char *extra)
{
	char *where = xasprintf("%s:%d:%d", n->origin, n->line, n->col);
	char *key = xasprintf("%s %s", where, n->name);

	if (seen_add(&nc->seen, key))
		diag_add(nc->d, where, 0, "%s '%s'%s", what, n->name, extra);
	free(key);
	free(where);
}

static int name_check(void *ud, const struct mustache_name *n)
{
	struct names_check *nc = ud;
	const json_t *stack[MUSTACHE_MAX_DEPTH * 2 + 1];
	size_t depth = 1;
	const json_t *v;
	char hint[256];

	if (n->kind == MUSTACHE_NAME_PARTIAL) {
		if (n->missing)
			name_problem(nc, n, "no partial", " (looked for partials/NAME.mustache in"
				     " the template's locale folder, its parents and the top level)");
		return 0;
	}
	stack[0] = nc->shape;
	for (size_t i = 0; i < n->scope_len && depth < sizeof stack / sizeof stack[0]; i++) {
		stack[depth] = shape_lookup(stack, depth, n->scope[i]);
		depth++;
	}
	v = shape_lookup(stack, depth, n->name);
	if (v == NULL) {
		suggestion(nc, n->name, hint, sizeof hint);
		name_problem(nc, n, "unknown variable", hint);
	} else if (n->kind == MUSTACHE_NAME_VARIABLE && json_is_object(v)) {
		name_problem(nc, n, "a group of variables cannot be written out:",
			     "; use one of its fields (see docs/templates.md)");
	}
	return 0;
}

static void names_check_all(const struct render_templates *t, const json_t *shape, struct diag *d)
{
	struct names_check nc = {shape, d, {NULL, 0}, t->c};

	for (size_t i = 0; i < t->n_sets; i++)
		for (int p = 0; p < RENDER_NPARTS; p++)
			if (t->sets[i].part[p] != NULL)
				mustache_names(t->sets[i].part[p], name_check, &nc);
	seen_free(&nc.seen);
}

/* Builds and statically checks the templates; problems go to d. */
static struct render_templates *templates_checked(const struct campaign *c, struct diag *d)
{
	struct render_templates *t = templates_build(c, d);
	struct render *r = render_new(t, NULL);

	names_check_all(t, r->root, d);
	render_free(r);
	return t;
}

int render_templates_load(struct render_templates **out, const struct campaign *c, struct err *e)
{
	struct diag d;
	int rc = 0;

	*out = NULL;
	diag_init(&d);
	if (c->templates_dir == NULL) {
		rc = err_set(e, ERR_CONFIG, "campaign %s has no templates folder", c->name);
		goto out;
	}
	*out = templates_checked(c, &d);
	if (d.count > 0) {
		rc = diag_to_err(&d, ERR_CONFIG, e);
		err_prefix(e, "campaign %s: the templates have problems (run: cutoff campaign check):\n",
			   c->name);
		render_templates_free(*out);
		*out = NULL;
	}
out:
	diag_free(&d);
	return rc;
}

/* A made-up recipient of segment g reading locale `locale`; full or with only the required fields. */
static void sample_recipient(const struct campaign *c, const struct segment *g, const char *locale,
			     bool full, struct store_recipient *rc, struct buf *attrs)
{
	json_t *o = json_object();
	char *text;

	memset(rc, 0, sizeof *rc);
	rc->id = 1;
	rc->user_id = "sample-user";
	rc->email = "sample.user@example.test";
	rc->locale = locale;
	rc->segment_id = 1;
	rc->state = "pending";
	if (full) {
		rc->name = "Sample User";
		rc->timezone = c->timezone;
		rc->client = g->clients.n ? g->clients.values[0] : "sample-client";
		rc->version = g->version_min ? g->version_min : "1.0";
		rc->platform = g->platforms.n ? g->platforms.values[0] : "sample-platform";
		rc->os = "sample-os";
	}
	for (size_t i = 0; i < c->attributes.n; i++)
		json_object_set_new(o, c->attributes.values[i],
				    json_string(full ? "sample" : ""));
	text = json_dumps(o, JSON_COMPACT);
	buf_reset(attrs);
	buf_puts(attrs, text);
	rc->attrs = attrs->data;
	free(text);
	json_decref(o);
}

/* Renders and composes one sample message; a problem goes to d (once per template folder). */
static void sample_check(struct render *r, const struct tmpl_set *s, const struct segment *g,
			 bool full, struct diag *d, struct seen *seen)
{
	struct store_recipient rc;
	struct render_request q = {&rc, g, r->c->announce_at, "1", NULL, NULL, NULL};
	struct render_result res;
	struct buf attrs;
	struct err e = {0};
	char *prefix;

	buf_init(&attrs);
	render_result_init(&res);
	sample_recipient(r->c, g, s->locale ? s->locale : RENDER_DEFAULT_LOCALE, full, &rc, &attrs);
	prefix = xasprintf("segment %s, %s sample recipient: ", g->name,
			   full ? "a full" : "a minimal");
	if (render_message(r, &q, &res, &e) != 0 || render_login(r, &q, &res, &e) != 0) {
		char *key = xasprintf("%s %s", s->dir, e.msg);
		if (seen_add(seen, key))
			diag_located(d, s->dir, prefix, e.msg);
		free(key);
	}
	free(prefix);
	render_result_free(&res);
	buf_free(&attrs);
}

int render_check_campaign(const struct campaign *c, struct diag *d)
{
	int before = d->count;
	struct render_templates *t;
	struct render_options o = {(const unsigned char *)"sample secret", 13, true};
	struct render *r;

	if (c->templates_dir == NULL) {
		diag_add(d, c->source_path, 0, "campaign %s has no templates folder", c->name);
		return ERR_CONFIG;
	}
	struct seen seen = {NULL, 0};
	bool clean;

	mime_init();
	t = templates_checked(c, d);
	r = render_new(t, &o);
	/* Broken templates were reported already; rendering them would only repeat it. */
	clean = d->count == before;
	for (size_t i = 0; clean && i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];
		for (size_t k = 0; k < t->n_sets; k++) {
			if (strcmp(t->sets[k].name, g->template_name) != 0)
				continue;
			sample_check(r, &t->sets[k], g, true, d, &seen);
			sample_check(r, &t->sets[k], g, false, d, &seen);
		}
	}
	seen_free(&seen);
	render_free(r);
	render_templates_free(t);
	mime_shutdown();
	return d->count > before ? ERR_CONFIG : 0;
}
