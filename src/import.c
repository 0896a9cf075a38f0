/* import.c — RFC 4180 CSV import with libcsv: streaming, per-row validation, rejects file, idempotent. */
#include "import.h"

#include <csv.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "schedule.h"
#include "store_report.h"
#include "util.h"
#include "version.h"

#define MAX_FIELDS 512
#define MAX_ROW_BYTES (1024 * 1024)
#define READ_CHUNK (256 * 1024)
#define TZ_CACHE 64

/* Columns with a meaning of their own; everything else is a template attribute. */
enum known_col { COL_EMAIL, COL_USER_ID, COL_NAME, COL_LOCALE, COL_TIMEZONE, COL_CLIENT,
		 COL_VERSION, COL_PLATFORM, COL_OS, COL_KNOWN };
static const char *const known_names[COL_KNOWN] = {
	"email", "user_id", "name", "locale", "timezone", "client", "version", "platform", "os"};

/* Everything one import run carries between libcsv callbacks. */
struct importer {
	struct store *s;
	const struct campaign *c;
	int64_t campaign_id;
	const struct import_options *o;
	struct import_result *r;
	struct err *e;
	int64_t *segment_ids;     /* parallel to c->segments */
	/* the header */
	int ncols;
	char **col_names;
	int known[COL_KNOWN];     /* column index of each known column, or -1 */
	bool have_header;
	/* the row being parsed */
	struct buf fields;        /* field bytes, each NUL-terminated */
	size_t offs[MAX_FIELDS];
	size_t lens[MAX_FIELDS];
	int nfields;
	bool too_many_fields;
	long row_line;            /* physical line where the row began */
	long line;                /* physical line being fed */
	size_t row_bytes;
	/* output */
	FILE *rejects;
	const char *rejects_path;
	int fatal;                /* a store error stopped the import */
	int64_t in_batch;
	struct timespec started, last_progress;
	char *tz_ok[TZ_CACHE];
	int n_tz_ok;
	int extra[MAX_FIELDS];    /* the columns kept as template attributes, in header order */
	int n_extra;
	struct buf attrs;         /* the current row's attributes as JSON */
	struct buf vals;          /* the current row's known fields, trimmed */
	bool any_forgotten;       /* some address was forgotten: check each row's */
};

static const char *field(const struct importer *im, int i)
{
	return im->fields.data + im->offs[i];
}

static void on_field(void *data, size_t len, void *ud)
{
	struct importer *im = ud;

	if (im->nfields >= MAX_FIELDS) {
		im->too_many_fields = true;
		return;
	}
	im->offs[im->nfields] = im->fields.len;
	im->lens[im->nfields] = len;
	buf_append(&im->fields, data ? data : "", data ? len : 0);
	buf_putc(&im->fields, '\0');
	im->nfields++;
}

static void row_reset(struct importer *im)
{
	buf_reset(&im->fields);
	im->nfields = 0;
	im->too_many_fields = false;
	im->row_bytes = 0;
}

static void csv_put(FILE *f, const char *v, size_t len, bool first)
{
	if (!first)
		fputc(',', f);
	csv_fwrite(f, v, len);
}

/* Opens the rejects file on the first rejected row, with a header that mirrors the input's. */
static int rejects_open(struct importer *im)
{
	if (im->rejects != NULL)
		return 0;
	im->rejects = fopen(im->rejects_path, "w");
	if (im->rejects == NULL)
		return err_sys(im->e, ERR_IO, errno, "cannot write the rejects file %s (choose"
			       " another with --rejects FILE)", im->rejects_path);
	fputs("line,reason", im->rejects);
	for (int i = 0; i < im->ncols; i++)
		csv_put(im->rejects, im->col_names[i], strlen(im->col_names[i]), false);
	fputs("\r\n", im->rejects);
	return 0;
}

/* Records a rejected row: its line, the reason, and its fields as read. */
static void reject(struct importer *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(struct importer *im, const char *fmt, ...)
{
	char reason[512], line[32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	im->r->counts.rejected++;
	if (rejects_open(im) != 0) {
		im->fatal = im->e->code;
		return;
	}
	snprintf(line, sizeof line, "%ld", im->row_line);
	fputs(line, im->rejects);
	csv_put(im->rejects, reason, strlen(reason), false);
	for (int i = 0; i < im->nfields; i++)
		csv_put(im->rejects, field(im, i), im->lens[i], false);
	fputs("\r\n", im->rejects);
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* Reads the header row: column names, the known ones located, duplicates refused. */
static int header_read(struct importer *im)
{
	im->ncols = im->nfields;
	im->col_names = xcalloc((size_t)im->ncols, sizeof *im->col_names);
	for (int k = 0; k < COL_KNOWN; k++)
		im->known[k] = -1;
	for (int i = 0; i < im->ncols; i++) {
		char *name = trim((char *)field(im, i));
		if (!str_utf8_valid(name, strlen(name)) || str_has_control(name) || *name == '\0')
			return err_set(im->e, ERR_DATA, "line %ld: column %d of the header is empty"
				       " or not a printable UTF-8 name", im->row_line, i + 1);
		im->col_names[i] = xstrdup(name);
		for (int j = 0; j < i; j++)
			if (strcasecmp(im->col_names[j], name) == 0)
				return err_set(im->e, ERR_DATA, "line %ld: the header names column"
					       " '%s' twice", im->row_line, name);
		for (int k = 0; k < COL_KNOWN; k++)
			if (strcasecmp(known_names[k], name) == 0)
				im->known[k] = i;
	}
	for (int i = 0; i < im->ncols; i++) {
		bool known = false;
		for (int k = 0; k < COL_KNOWN && !known; k++)
			known = im->known[k] == i;
		if (!known)
			im->extra[im->n_extra++] = i;
	}
	for (size_t a = 0; a < im->c->attributes.n; a++) {
		bool found = false;
		for (int i = 0; i < im->ncols && !found; i++)
			found = strcasecmp(im->col_names[i], im->c->attributes.values[a]) == 0;
		if (!found)
			return err_set(im->e, ERR_DATA,
				       "line %ld: the header has no '%s' column, which campaign %s's"
				       " templates use (its 'attributes' setting)",
				       im->row_line, im->c->attributes.values[a], im->c->name);
	}
	if (im->known[COL_EMAIL] < 0)
		return err_set(im->e, ERR_DATA,
			       "line %ld: the header has no 'email' column (it has: %s%s); the first"
			       " row must name the columns, one of them email",
			       im->row_line, im->col_names[0], im->ncols > 1 ? ", ..." : "");
	im->have_header = true;
	return 0;
}

/* One row, checked and normalised, ready for the store. */
struct row {
	const char *v[COL_KNOWN]; /* known columns, NULL when absent or empty */
	char *email;              /* normalised, owned */
	const char *attrs;        /* JSON, the importer's, or NULL */
	char locale[36];
};

static void row_free(struct row *w)
{
	free(w->email);
}

static bool tz_known(struct importer *im, const char *tz)
{
	struct err e = {0};

	for (int i = 0; i < im->n_tz_ok; i++)
		if (strcmp(im->tz_ok[i], tz) == 0)
			return true;
	if (schedule_tz_check(tz, &e) != 0)
		return false;
	if (im->n_tz_ok < TZ_CACHE)
		im->tz_ok[im->n_tz_ok++] = xstrdup(tz);
	return true;
}

static bool is_alpha(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

bool import_locale_normalize(char *locale)
{
	size_t part = 0, index = 0;

	for (char *p = locale;; p++) {
		if (*p == '_')
			*p = '-';
		if (*p == '-' || *p == '\0') {
			/* The language is 2-3 letters; other subtags 1-8 letters or digits. */
			if (index == 0 ? (part < 2 || part > 3) : (part < 1 || part > 8))
				return false;
			if (*p == '\0')
				return true;
			part = 0, index++;
			continue;
		}
		if (!(is_alpha(*p) || (index > 0 && *p >= '0' && *p <= '9')))
			return false;
		part++;
	}
}

/* True if all len bytes are printable ASCII (most fields): no NUL, no control, valid UTF-8. */
static bool printable_ascii(const char *v, size_t len)
{
	const unsigned char *p = (const unsigned char *)v;
	unsigned bad = 0;

	for (size_t i = 0; i < len; i++)
		bad |= (unsigned)(p[i] - 0x20) >= 0x5f; /* below 0x20, or 0x7f and above */
	return bad == 0;
}

/* Checks every field's encoding, and the known ones for control characters. */
static bool row_check_text(struct importer *im)
{
	for (int i = 0; i < im->nfields; i++) {
		const char *v = field(im, i);
		if (printable_ascii(v, im->lens[i]))
			continue;
		if (memchr(v, '\0', im->lens[i]) != NULL) {
			reject(im, "column '%s' contains a NUL byte", im->col_names[i]);
			return false;
		}
		if (!str_utf8_valid(v, im->lens[i])) {
			reject(im, "column '%s' is not valid UTF-8", im->col_names[i]);
			return false;
		}
	}
	for (int k = 0; k < COL_KNOWN; k++) {
		int i = im->known[k];
		if (i >= 0 && !printable_ascii(field(im, i), im->lens[i]) &&
		    str_has_control(field(im, i))) {
			reject(im, "column '%s' contains a line break or control character",
			       known_names[k]);
			return false;
		}
	}
	return true;
}

/* Appends v as a JSON string: escapes as jansson's json_dumps does, so digests stay stable. */
static void json_put_string(struct buf *b, const char *v, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;

	buf_putc(b, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)v[i];
		char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
		size_t n = 2;

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		buf_append(b, v + run, i - run);
		run = i + 1;
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: n = 6; break;
		}
		buf_append(b, esc, n);
	}
	buf_append(b, v + run, len - run);
	buf_putc(b, '"');
}

void import_attrs_json(struct buf *out, const char *const *names, const char *const *values,
		       const size_t *lens, size_t n)
{
	buf_reset(out);
	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		buf_putc(out, i == 0 ? '{' : ',');
		json_put_string(out, names[i], strlen(names[i]));
		buf_putc(out, ':');
		json_put_string(out, values[i], lens[i]);
	}
	buf_putc(out, '}');
}

/* The extra columns of the current row as a JSON object in im->attrs; NULL if none. */
static const char *row_attrs(struct importer *im)
{
	const char *names[MAX_FIELDS], *values[MAX_FIELDS];
	size_t lens[MAX_FIELDS];

	for (int j = 0; j < im->n_extra; j++) {
		names[j] = im->col_names[im->extra[j]];
		values[j] = field(im, im->extra[j]);
		lens[j] = im->lens[im->extra[j]];
	}
	import_attrs_json(&im->attrs, names, values, lens, (size_t)im->n_extra);
	return im->n_extra > 0 ? im->attrs.data : NULL;
}

/* Field i of the current row without surrounding blanks, copied into im->vals (whose room
 * the caller reserved); NULL if i < 0 or the field is blank. */
static const char *known_trimmed(struct importer *im, int i)
{
	const char *v, *end;
	char *out;

	if (i < 0)
		return NULL;
	v = field(im, i), end = v + im->lens[i];
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (v == end)
		return NULL;
	out = im->vals.data + im->vals.len;
	memcpy(out, v, (size_t)(end - v));
	out[end - v] = '\0';
	im->vals.len += (size_t)(end - v) + 1;
	return out;
}

/* Fills w from the current row; false (and the row rejected) on any problem. */
static bool row_build(struct importer *im, struct row *w)
{
	struct err e = {0};

	if (!row_check_text(im))
		return false;
	/* Trimmed copies: the fields as read stay whole for the rejects file. */
	buf_reset(&im->vals);
	buf_grow(&im->vals, im->fields.len); /* no reallocation below: the pointers hold */
	for (int k = 0; k < COL_KNOWN; k++)
		w->v[k] = known_trimmed(im, im->known[k]);
	if (w->v[COL_EMAIL] == NULL) {
		reject(im, "the email column is empty");
		return false;
	}
	if (address_normalize(w->v[COL_EMAIL], &w->email, &e) != 0) {
		reject(im, "email '%s': %s", w->v[COL_EMAIL], e.msg);
		return false;
	}
	if (im->known[COL_USER_ID] >= 0 && w->v[COL_USER_ID] == NULL) {
		reject(im, "the user_id column is empty");
		return false;
	}
	if (im->known[COL_USER_ID] < 0)
		w->v[COL_USER_ID] = w->email;
	if (w->v[COL_VERSION] && !version_valid(w->v[COL_VERSION])) {
		reject(im, "version '%s' is not dotted numbers such as 4.7.2009", w->v[COL_VERSION]);
		return false;
	}
	if (w->v[COL_LOCALE]) {
		size_t len = strlen(w->v[COL_LOCALE]);
		if (len < sizeof w->locale)
			memcpy(w->locale, w->v[COL_LOCALE], len + 1);
		if (len >= sizeof w->locale || !import_locale_normalize(w->locale)) {
			reject(im, "locale '%s' is not a language tag such as fr or pt-BR",
			       w->v[COL_LOCALE]);
			return false;
		}
		w->v[COL_LOCALE] = w->locale;
	}
	if (w->v[COL_TIMEZONE] && !tz_known(im, w->v[COL_TIMEZONE])) {
		reject(im, "timezone '%s' is not an IANA time zone such as Europe/Paris",
		       w->v[COL_TIMEZONE]);
		return false;
	}
	w->attrs = row_attrs(im);
	return true;
}

static uint64_t row_digest(const struct row *w, int64_t segment_id)
{
	uint64_t h = HASH_FNV1A_INIT;

	/* user_id is the key, not a field: a duplicate under another id digests the same. */
	for (int k = 0; k < COL_KNOWN; k++) {
		const char *v = k == COL_EMAIL ? w->email : k == COL_USER_ID ? NULL : w->v[k];
		if (v != NULL)
			h = hash_fnv1a(h, v, strlen(v));
		h = hash_fnv1a(h, "\x1f", 1);
	}
	if (w->attrs != NULL)
		h = hash_fnv1a(h, w->attrs, strlen(w->attrs));
	return hash_fnv1a(h, &segment_id, sizeof segment_id) & INT64_MAX;
}

static void row_to_recipient(const struct importer *im, const struct row *w, int64_t segment_id,
			     struct store_recipient *r)
{
	memset(r, 0, sizeof *r);
	r->campaign_id = im->campaign_id;
	r->user_id = w->v[COL_USER_ID];
	r->email = w->email;
	r->name = w->v[COL_NAME];
	r->locale = w->v[COL_LOCALE];
	r->timezone = w->v[COL_TIMEZONE];
	r->client = w->v[COL_CLIENT];
	r->version = w->v[COL_VERSION];
	r->platform = w->v[COL_PLATFORM];
	r->os = w->v[COL_OS];
	r->attrs = w->attrs;
	r->segment_id = segment_id;
	r->digest = row_digest(w, segment_id);
	r->import_run = im->r->run_id;
}

/* What happened to a row that reached the store. */
enum outcome { OUT_ADDED, OUT_UPDATED, OUT_UNCHANGED, OUT_MERGED, OUT_CONFLICT, OUT_SKIPPED };

/* An existing recipient: unchanged, updated, or (seen earlier in this file) merged. */
static int row_update(struct importer *im, struct store_recipient *r,
		      const struct store_recipient_key *k, bool by_email, enum outcome *out)
{
	struct store_recipient_key other;
	int rc;

	if (k->import_run == im->r->run_id || by_email)
		*out = OUT_MERGED;
	else
		*out = k->digest == r->digest ? OUT_UNCHANGED : OUT_UPDATED;
	if (k->digest == r->digest && !by_email)
		return 0;
	if (!by_email && strcmp(k->email, r->email) != 0) {
		rc = store_recipient_find_email(im->s, im->campaign_id, r->email, &other, im->e);
		if (rc < 0)
			return rc;
		if (rc == 0 && other.id != k->id) {
			*out = OUT_CONFLICT;
			reject(im, "email %s already belongs to user %s", r->email, other.user_id);
			return 0;
		}
	}
	r->id = k->id;
	return store_recipient_update(im->s, r, im->o->now, im->e);
}

static int row_store(struct importer *im, const struct row *w, int64_t segment_id,
		     enum outcome *out)
{
	struct store_recipient r;
	struct store_recipient_key k;
	int64_t id;
	int rc;

	row_to_recipient(im, w, segment_id, &r);
	/* Most rows are new: one INSERT that turns out a no-op on a duplicate is the fast path. */
	if (segment_id != 0) {
		if ((rc = store_recipient_insert(im->s, &r, im->o->now, &id, im->e)) <= 0) {
			*out = OUT_ADDED;
			return rc;
		}
	}
	rc = store_recipient_find_user(im->s, im->campaign_id, r.user_id, &k, im->e);
	if (rc <= 0)
		return rc < 0 ? rc : row_update(im, &r, &k, false, out);
	*out = OUT_SKIPPED;
	if (segment_id == 0) /* not affected, and not known: nothing to keep */
		return 0;
	rc = store_recipient_find_email(im->s, im->campaign_id, r.email, &k, im->e);
	if (rc <= 0)
		return rc < 0 ? rc : row_update(im, &r, &k, true, out);
	/* Neither the user id nor the address is known: the insert above would have worked. */
	return err_set(im->e, ERR_SOFTWARE, "recipient %s conflicts but cannot be found", r.user_id);
}

static void count_outcome(struct store_import_counts *c, enum outcome o, bool affected)
{
	if (o == OUT_CONFLICT)
		return; /* counted as rejected by reject() */
	if (!affected) {
		c->not_affected++;
		return;
	}
	switch (o) {
	case OUT_ADDED: c->added++; break;
	case OUT_UPDATED: c->updated++; break;
	case OUT_UNCHANGED: c->unchanged++; break;
	case OUT_MERGED: c->merged++; break;
	default: break;
	}
}

static int64_t row_segment(const struct importer *im, const struct row *w)
{
	struct recipient_fields f = {w->v[COL_CLIENT], w->v[COL_VERSION], w->v[COL_PLATFORM],
				     w->v[COL_OS]};
	const struct segment *g = campaign_match(im->c, &f);

	return g ? im->segment_ids[g - im->c->segments] : 0;
}

/* A complete data row: check, match, store. */
static void row_process(struct importer *im)
{
	struct row w;
	int64_t segment_id;
	enum outcome o = OUT_SKIPPED;
	bool forgotten = false;
	int rc;

	memset(&w, 0, sizeof w);
	im->r->counts.rows++;
	if (im->too_many_fields || im->nfields != im->ncols) {
		reject(im, "expected %d fields as in the header, found %s%d", im->ncols,
		       im->too_many_fields ? "more than " : "", im->nfields);
		return;
	}
	if (!row_build(im, &w))
		goto out;
	/* A forgotten person stays forgotten: their data is not taken in again (and not
	 * written to the rejects file either); they count as not affected. */
	if (im->any_forgotten &&
	    (rc = store_report_address_forgotten(im->s, w.email, &forgotten, im->e)) != 0) {
		im->fatal = rc;
		goto out;
	}
	if (forgotten) {
		im->r->counts.not_affected++;
		goto out;
	}
	segment_id = row_segment(im, &w);
	if ((rc = row_store(im, &w, segment_id, &o)) != 0) {
		im->fatal = rc;
		goto out;
	}
	count_outcome(&im->r->counts, o, segment_id != 0);
	im->in_batch++;
out:
	row_free(&w);
}

static double elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void progress(struct importer *im, bool final)
{
	struct timespec now;
	double t;

	if (!im->o->progress || (!final && im->r->counts.rows % 4096 != 0))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!final && elapsed(&im->last_progress, &now) < 0.25)
		return;
	im->last_progress = now;
	t = elapsed(&im->started, &now);
	fprintf(stderr, "\rimporting %s: %lld rows, %.0f rows/s, %lld rejected%s", im->c->name,
		(long long)im->r->counts.rows, t > 0 ? (double)im->r->counts.rows / t : 0.0,
		(long long)im->r->counts.rejected, final ? "\n" : "");
}

/* Commits every commit_every rows so other writers get a turn during a long import. */
static void batch_boundary(struct importer *im)
{
	int64_t every = im->o->commit_every > 0 ? im->o->commit_every : 50000;

	if (im->in_batch < every || im->fatal)
		return;
	if ((im->fatal = store_commit(im->s, im->e)) == 0)
		im->fatal = store_begin(im->s, im->e);
	im->in_batch = 0;
}

static void on_row(int term, void *ud)
{
	struct importer *im = ud;

	(void)term;
	if (im->fatal)
		goto out;
	if (!im->have_header) {
		if (header_read(im) != 0)
			im->fatal = im->e->code;
		goto out;
	}
	row_process(im);
	progress(im, false);
	batch_boundary(im);
out:
	row_reset(im);
}

/* RFC 4180 keeps spaces around unquoted fields; libcsv trims them unless told not to. */
static int space_none(unsigned char c)
{
	(void)c;
	return 0;
}

static void parser_init(struct csv_parser *p)
{
	csv_init(p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
	csv_set_space_func(p, space_none);
}

/* Feeds one physical line (or the part of it in this chunk) to the parser. */
static void feed(struct importer *im, struct csv_parser *p, const char *data, size_t len,
		 bool *skipping)
{
	size_t done;

	if (*skipping)
		return;
	if (p->pstate == 0 && im->nfields == 0 && im->row_bytes == 0)
		im->row_line = im->line;
	im->row_bytes += len;
	if (im->row_bytes > MAX_ROW_BYTES) {
		im->r->counts.rows++;
		reject(im, "the row is longer than %d bytes", MAX_ROW_BYTES);
		*skipping = true;
	} else {
		done = csv_parse(p, data, len, on_field, on_row, im);
		if (done == len)
			return;
		im->r->counts.rows++;
		reject(im, "malformed CSV: %s (a quote inside an unquoted field, or text after"
		       " a closing quote)", csv_strerror(csv_error(p)));
		*skipping = true;
	}
	/* Start afresh after the bad row: the rest of its line is skipped. */
	csv_free(p);
	parser_init(p);
	row_reset(im);
}

/* Where the next LF and the next CR of a chunk are (end when none): found with memchr and
 * kept until passed, so a chunk is searched once for each, whatever its line endings. */
struct line_scan {
	const char *chunk, *end, *lf, *cr;
};

static const char *next_of(const char *from, const char *end, char ch)
{
	const char *at = memchr(from, ch, (size_t)(end - from));

	return at != NULL ? at : end;
}

/* The length of the line starting at offset pos: just past its CR, LF or CRLF, or to the end
 * of the chunk if it has none there (*complete false). */
static size_t line_end(struct line_scan *ls, size_t pos, bool *complete)
{
	const char *p = ls->chunk + pos, *eol;

	if (ls->lf < p)
		ls->lf = next_of(p, ls->end, '\n');
	if (ls->cr < p)
		ls->cr = next_of(p, ls->end, '\r');
	eol = ls->lf < ls->cr ? ls->lf : ls->cr;
	*complete = eol < ls->end;
	if (!*complete)
		return (size_t)(ls->end - p);
	if (*eol == '\r' && eol + 1 < ls->end && eol[1] == '\n')
		eol++;
	return (size_t)(eol + 1 - p);
}

/* Feeds a chunk line by line, counting physical lines (LF, CRLF or CR). */
static void feed_chunk(struct importer *im, struct csv_parser *p, const char *chunk, size_t n,
		       bool *skipping, bool *after_cr)
{
	struct line_scan ls = {chunk, chunk + n, next_of(chunk, chunk + n, '\n'),
			       next_of(chunk, chunk + n, '\r')};
	size_t pos = 0;

	/* A CRLF split across two reads: its LF ends no new line. */
	if (*after_cr && n > 0 && chunk[0] == '\n') {
		feed(im, p, chunk, 1, skipping);
		pos = 1;
	}
	*after_cr = false;
	while (pos < n && !im->fatal) {
		bool complete;
		size_t len = line_end(&ls, pos, &complete);

		feed(im, p, chunk + pos, len, skipping);
		pos += len;
		if (complete) {
			im->line++;
			*skipping = false;
			*after_cr = chunk[pos - 1] == '\r';
		}
	}
}

static int read_all(struct importer *im, FILE *f, const char *path)
{
	struct csv_parser p;
	char *chunk = xmalloc(READ_CHUNK);
	bool skipping = false, after_cr = false, first = true;
	size_t n;

	parser_init(&p);
	im->line = 1;
	while (!im->fatal && (n = fread(chunk, 1, READ_CHUNK, f)) > 0) {
		size_t skip = (first && n >= 3 && memcmp(chunk, "\xef\xbb\xbf", 3) == 0) ? 3 : 0;
		first = false;
		feed_chunk(im, &p, chunk + skip, n - skip, &skipping, &after_cr);
	}
	if (!im->fatal && ferror(f))
		im->fatal = err_sys(im->e, ERR_IO, errno, "reading %s", path);
	if (!im->fatal && !skipping && csv_fini(&p, on_field, on_row, im) != 0) {
		im->r->counts.rows++;
		reject(im, "the file ends inside a quoted field that began on this line (is it"
		       " truncated?)");
	}
	csv_free(&p);
	free(chunk);
	return im->fatal;
}

static int load_segment_ids(struct importer *im)
{
	im->segment_ids = xcalloc(im->c->n_segments, sizeof *im->segment_ids);
	for (size_t i = 0; i < im->c->n_segments; i++) {
		int rc = store_segment_id(im->s, im->campaign_id, im->c->segments[i].name,
					  &im->segment_ids[i], im->e);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void importer_free(struct importer *im)
{
	for (int i = 0; i < im->ncols; i++)
		free(im->col_names[i]);
	free(im->col_names);
	for (int i = 0; i < im->n_tz_ok; i++)
		free(im->tz_ok[i]);
	free(im->segment_ids);
	buf_free(&im->fields);
	buf_free(&im->attrs);
	buf_free(&im->vals);
	if (im->rejects != NULL)
		fclose(im->rejects);
}

/* Records how the run ended, in its own transaction. */
static int finish_run(struct importer *im, const char *state)
{
	struct err e2 = {0};
	int rc;

	if ((rc = store_begin(im->s, &e2)) == 0 &&
	    (rc = store_import_finish(im->s, im->r->run_id, &im->r->counts, state,
				      im->rejects ? im->rejects_path : NULL, im->o->now, &e2)) == 0)
		rc = store_commit(im->s, &e2);
	if (rc != 0) {
		store_rollback(im->s);
		err_set(im->e, e2.code, "%s", e2.msg);
	}
	return rc;
}

static int import_body(struct importer *im, FILE *f, const char *path)
{
	int rc;

	if ((rc = store_begin(im->s, im->e)) != 0)
		return rc;
	if ((rc = read_all(im, f, path)) == 0 && !im->have_header)
		rc = err_set(im->e, ERR_DATA, "%s is empty: the first row must name the columns,"
			     " one of them email", path);
	if (rc == 0)
		rc = store_commit(im->s, im->e);
	if (rc != 0)
		store_rollback(im->s);
	return rc;
}

int import_csv(struct store *s, const struct campaign *c, int64_t campaign_id, const char *path,
	       const struct import_options *o, struct import_result *r, struct err *e)
{
	struct importer im = {.s = s, .c = c, .campaign_id = campaign_id, .o = o, .r = r, .e = e};
	char *default_rejects = NULL;
	FILE *f = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	buf_init(&im.fields), buf_init(&im.attrs), buf_init(&im.vals);
	if ((f = fopen(path, "rb")) == NULL) {
		rc = err_sys(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, errno, "cannot read %s", path);
		goto out;
	}
	default_rejects = xasprintf("%s.rejects.csv", path);
	im.rejects_path = o->rejects_path ? o->rejects_path : default_rejects;
	clock_gettime(CLOCK_MONOTONIC, &im.started);
	im.last_progress = im.started;
	/* An import can be re-run safely, so it need not fsync each batch (WAL stays consistent);
	 * the run's last commit (finish_run) is made durable, and with it every batch. */
	if ((rc = load_segment_ids(&im)) != 0 ||
	    (rc = store_import_forgotten_any(s, &im.any_forgotten, e)) != 0 ||
	    (rc = store_import_mode(s, true, e)) != 0)
		goto out;
	if ((rc = store_begin(s, e)) != 0 ||
	    (rc = store_import_start(s, campaign_id, path, o->now, &r->run_id, e)) != 0 ||
	    (rc = store_commit(s, e)) != 0) {
		store_rollback(s);
		goto out;
	}
	rc = import_body(&im, f, path);
	progress(&im, true);
	if (store_set_durable(s, true, rc == 0 ? e : NULL) != 0 && rc == 0)
		rc = e->code;
	if (finish_run(&im, rc == 0 ? "done" : "failed") != 0 && rc == 0)
		rc = e->code;
	if (im.rejects != NULL && fflush(im.rejects) != 0 && rc == 0)
		rc = err_sys(e, ERR_IO, errno, "writing %s", im.rejects_path);
	if (im.rejects != NULL)
		r->rejects_path = xstrdup(im.rejects_path);
out:
	store_import_mode(s, false, NULL);
	if (f != NULL)
		fclose(f);
	importer_free(&im);
	free(default_rejects);
	return rc;
}

/* State for import_rematch's walk over the stored recipients. */
struct rematch {
	struct store *s;
	const struct campaign *c;
	int64_t *segment_ids;
	int64_t now;
	int64_t moved;
	struct err *e;
};

static int rematch_one(void *ud, const struct store_recipient *r)
{
	struct rematch *m = ud;
	struct recipient_fields f = {r->client, r->version, r->platform, r->os};
	const struct segment *g;
	int64_t id;

	if (r->email == NULL) /* forgotten: nothing to match */
		return 0;
	g = campaign_match(m->c, &f);
	id = g ? m->segment_ids[g - m->c->segments] : 0;
	if (id == r->segment_id)
		return 0;
	m->moved++;
	return store_recipient_set_segment(m->s, r->id, id, m->now, m->e);
}

int import_rematch(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
		   int64_t *moved, struct err *e)
{
	struct rematch m = {s, c, NULL, now, 0, e};
	int rc = 0;

	m.segment_ids = xcalloc(c->n_segments, sizeof *m.segment_ids);
	for (size_t i = 0; i < c->n_segments && rc == 0; i++)
		rc = store_segment_id(s, campaign_id, c->segments[i].name, &m.segment_ids[i], e);
	if (rc == 0)
		rc = store_recipient_each(s, campaign_id, rematch_one, &m, e);
	*moved = m.moved;
	free(m.segment_ids);
	return rc;
}
