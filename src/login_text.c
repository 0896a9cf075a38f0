/* login_text.c — login reminder texts rendered once per group of recipients who provably get
 * the same words, and per local day (login_text.h says why that is exact). */
#include "login_text.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mustache.h"
#include "schedule.h"
#include "util.h"

#define TEMPLATE_MAX_BYTES (1 << 20) /* a larger login.mustache is not analysed: unshared */
#define CACHE_SLOTS 4096             /* a power of two */
#define CACHE_MAX_USED 3072          /* then the cache starts again empty */

/* The recipient fields a segment's texts read, beyond locale and timezone (always keyed). */
enum text_field { TF_CLIENT = 1, TF_VERSION = 2, TF_PLATFORM = 4, TF_OS = 8 };

struct segment_plan {
	bool shared;
	unsigned fields; /* enum text_field bits */
};

struct login_text_plan {
	const struct campaign *c;
	struct segment_plan *seg; /* parallel to c->segments */
};

/* ---- the analysis ----------------------------------------------------------------------- */

/* Names that are the same for every recipient of a segment with the same locale and zone on
 * the same local day, and the recipient fields that some others add to the group's key. */
static bool name_allowed(const char *name, unsigned *fields)
{
	static const char *const fixed[] = {
		"cutoff_date", "cutoff_time", "reminder_start_date", "days_left", "upgrade_url",
		"target_version", "locale", "timezone", "kind", "is_reminder", "is_final_notice",
		"campaign", "segment", "recipient.locale", "recipient.timezone", NULL};
	static const struct {
		const char *name;
		unsigned field;
	} keyed[] = {{"client_name", TF_CLIENT},   {"recipient.client", TF_CLIENT},
		     {"recipient.version", TF_VERSION}, {"recipient.platform", TF_PLATFORM},
		     {"recipient.os", TF_OS}};

	for (int i = 0; fixed[i] != NULL; i++)
		if (strcmp(name, fixed[i]) == 0)
			return true;
	if (strncmp(name, "campaign.", 9) == 0 || strncmp(name, "segment.", 8) == 0)
		return true; /* the campaign's and the segment's own values */
	for (size_t i = 0; i < sizeof keyed / sizeof *keyed; i++)
		if (strcmp(name, keyed[i].name) == 0) {
			*fields |= keyed[i].field;
			return true;
		}
	return false;
}

struct walk {
	bool shared;
	unsigned fields;
};

static int name_check(void *ud, const struct mustache_name *n)
{
	struct walk *w = ud;

	if (n->kind == MUSTACHE_NAME_PARTIAL || n->scope_len > 0 ||
	    !name_allowed(n->name, &w->fields)) {
		w->shared = false;
		return 1; /* stops the walk */
	}
	return 0;
}

/* Reads path into *text: 0, 1 when there is no such file, -1 when it cannot be read. */
static int file_text(const char *path, char **text)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[8192];
	size_t n;
	int rc = 0;

	*text = NULL;
	if (f == NULL)
		return errno == ENOENT || errno == ENOTDIR ? 1 : -1;
	buf_init(&b);
	buf_puts(&b, "");
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= TEMPLATE_MAX_BYTES)
		buf_append(&b, chunk, n);
	if (ferror(f) || b.len > TEMPLATE_MAX_BYTES || strlen(b.data) != b.len)
		rc = -1;
	fclose(f);
	if (rc == 0)
		*text = buf_steal(&b);
	buf_free(&b);
	return rc;
}

/* Adds what the login template at path reads to w (absent: nothing to add). */
static void template_check(const char *path, struct walk *w)
{
	struct mustache *m = NULL;
	struct err e = {0};
	char *text = NULL;
	int rc = file_text(path, &text);

	if (rc == 1)
		return;
	if (rc != 0 || mustache_compile(&m, text, path, NULL, &e) != 0)
		w->shared = false;
	else
		mustache_names(m, name_check, w);
	mustache_free(m);
	free(text);
}

/* Every login.mustache segment g could get: DIR/TEMPLATE/ and DIR/ANY/TEMPLATE/. */
static void segment_check(const struct campaign *c, const struct segment *g,
			  struct segment_plan *out)
{
	struct walk w = {true, 0};
	DIR *dir = opendir(c->templates_dir);
	struct dirent *de;
	char *path;

	if (dir == NULL) {
		out->shared = false;
		return;
	}
	path = xasprintf("%s/%s/login.mustache", c->templates_dir, g->template_name);
	template_check(path, &w);
	free(path);
	while (w.shared && (de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		path = xasprintf("%s/%s/%s/login.mustache", c->templates_dir, de->d_name,
				 g->template_name);
		template_check(path, &w);
		free(path);
	}
	closedir(dir);
	out->shared = w.shared, out->fields = w.fields;
}

struct login_text_plan *login_text_plan_new(const struct campaign *c)
{
	struct login_text_plan *p = xcalloc(1, sizeof *p);

	p->c = c;
	p->seg = xcalloc(c->n_segments ? c->n_segments : 1, sizeof *p->seg);
	for (size_t i = 0; i < c->n_segments; i++)
		segment_check(c, &c->segments[i], &p->seg[i]);
	return p;
}

void login_text_plan_free(struct login_text_plan *p)
{
	if (p == NULL)
		return;
	free(p->seg);
	free(p);
}

bool login_text_plan_shared(const struct login_text_plan *p, size_t g)
{
	return g < p->c->n_segments && p->seg[g].shared;
}

/* ---- the cache -------------------------------------------------------------------------- */

struct entry {
	uint64_t hash;
	char *key; /* NULL: a free slot */
	size_t key_len;
	int64_t from, until; /* the login times the text holds for */
	char *text;
	int64_t days_left;
};

struct login_text_cache {
	struct entry slot[CACHE_SLOTS];
	size_t used;
	struct buf key; /* the key being looked up */
};

struct login_text_cache *login_text_cache_new(void)
{
	struct login_text_cache *tc = xcalloc(1, sizeof *tc);

	buf_init(&tc->key);
	return tc;
}

static void cache_clear(struct login_text_cache *tc)
{
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		free(tc->slot[i].key), free(tc->slot[i].text);
		memset(&tc->slot[i], 0, sizeof tc->slot[i]);
	}
	tc->used = 0;
}

void login_text_cache_free(struct login_text_cache *tc)
{
	if (tc == NULL)
		return;
	cache_clear(tc);
	buf_free(&tc->key);
	free(tc);
}

/* Appends one field to the key: absent and present (even empty) differ. */
static void key_field(struct buf *b, const char *v)
{
	if (v == NULL) {
		buf_putc(b, '\0');
		return;
	}
	buf_putc(b, '\1');
	buf_append(b, v, strlen(v) + 1);
}

/* The group of q's recipient: campaign k, segment g, locale, zone, and the fields read. */
static void key_build(struct buf *b, size_t k, size_t g, unsigned fields,
		      const struct store_recipient *r)
{
	buf_reset(b);
	buf_append(b, &k, sizeof k);
	buf_append(b, &g, sizeof g);
	key_field(b, r->locale);
	key_field(b, r->timezone);
	key_field(b, fields & TF_CLIENT ? r->client : NULL);
	key_field(b, fields & TF_VERSION ? r->version : NULL);
	key_field(b, fields & TF_PLATFORM ? r->platform : NULL);
	key_field(b, fields & TF_OS ? r->os : NULL);
}

/* The slot holding key b, or the free slot where it goes. */
static struct entry *cache_slot(struct login_text_cache *tc, const struct buf *b, uint64_t h)
{
	size_t i = (size_t)h & (CACHE_SLOTS - 1);

	while (tc->slot[i].key != NULL &&
	       !(tc->slot[i].hash == h && tc->slot[i].key_len == b->len &&
		 memcmp(tc->slot[i].key, b->data, b->len) == 0))
		i = (i + 1) & (CACHE_SLOTS - 1);
	return &tc->slot[i];
}

/*
 * The UTC bounds [lo, hi) of t's local day in tz, when it is an ordinary 24-hour day: its
 * first second reads 00:00:00 and its last 23:59:59 of the same date, so no clock change
 * lies inside. False otherwise (a day with a clock change, an unknown zone).
 */
static bool local_day(int64_t t, const char *tz, int64_t *lo, int64_t *hi)
{
	char iso[SCHEDULE_FORMAT_SIZE], check[SCHEDULE_FORMAT_SIZE], midnight[16];
	struct err e = {0};

	if (schedule_format_local_iso(t, tz, iso, sizeof iso) != 0 || strlen(iso) < 19)
		return false;
	snprintf(midnight, sizeof midnight, "%.10s", iso);
	if (schedule_parse_local(midnight, tz, lo, &e) != 0)
		return false;
	*hi = *lo + 86400;
	if (t < *lo || t >= *hi)
		return false;
	if (schedule_format_local_iso(*lo, tz, check, sizeof check) != 0 ||
	    strncmp(check, iso, 10) != 0 || strncmp(check + 10, "T00:00:00", 9) != 0)
		return false;
	return schedule_format_local_iso(*hi - 1, tz, check, sizeof check) == 0 &&
	       strncmp(check, iso, 10) == 0 && strncmp(check + 10, "T23:59:59", 9) == 0;
}

/* Keeps text for key b from now on (replacing e's old text for another day). */
static struct entry *cache_put(struct login_text_cache *tc, struct entry *e, uint64_t h,
			       const struct login_text_plan *p, const struct render_request *q,
			       const char *text, int64_t days_left)
{
	const char *tz = q->recipient->timezone ? q->recipient->timezone : p->c->timezone;

	if (e->key == NULL) {
		if (tc->used >= CACHE_MAX_USED) {
			cache_clear(tc);
			e = cache_slot(tc, &tc->key, h);
		}
		e->hash = h, e->key_len = tc->key.len;
		e->key = xmalloc(tc->key.len);
		memcpy(e->key, tc->key.data, tc->key.len);
		tc->used++;
	}
	free(e->text);
	e->text = xstrdup(text);
	e->days_left = days_left;
	if (!local_day(q->now, tz, &e->from, &e->until))
		e->from = q->now, e->until = q->now + 1;
	if (e->until > p->c->cutoff_at) /* days_left is 0 from the cutoff on */
		e->until = p->c->cutoff_at;
	return e;
}

int login_text_render(struct login_text_cache *tc, const struct login_text_plan *p, size_t k,
		      struct render *r, const struct render_request *q,
		      struct render_result *res, struct login_text *out, struct err *e)
{
	size_t g = (size_t)(q->segment - p->c->segments);
	struct entry *slot = NULL;
	uint64_t h = 0;
	int rc;

	if (g < p->c->n_segments && p->seg[g].shared) {
		key_build(&tc->key, k, g, p->seg[g].fields, q->recipient);
		h = hash_fnv1a(HASH_FNV1A_INIT, tc->key.data, tc->key.len);
		slot = cache_slot(tc, &tc->key, h);
		if (slot->key != NULL && slot->from <= q->now && q->now < slot->until) {
			out->text = slot->text, out->days_left = slot->days_left;
			return 0;
		}
	}
	if ((rc = render_login(r, q, res, e)) != 0)
		return rc;
	out->text = res->part[RENDER_LOGIN].data ? res->part[RENDER_LOGIN].data : "";
	out->days_left = res->days_left;
	if (slot != NULL)
		out->text = cache_put(tc, slot, h, p, q, out->text, out->days_left)->text;
	return 0;
}
