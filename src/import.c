/* import.c — RFC 4180 CSV import with libcsv: streaming, per-row validation, rejects file,
 * idempotent; a reader thread parses and checks rows while the calling thread stores them. */
#include "import.h"

#include <csv.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "checkpointer.h"
#include "log.h"
#include "runlock.h"
#include "schedule.h"
#include "store_report.h"
#include "util.h"
#include "version.h"

#define MAX_FIELDS 512
#define MAX_ROW_BYTES (1024 * 1024)
#define READ_CHUNK (256 * 1024)
#define TZ_CACHE 64
#define QUEUE_SLOTS 1024
#define QUEUE_BYTES (4 * 1024 * 1024)
#define SLOT_KEEP_BYTES (64 * 1024) /* a slot's buffers beyond this are given back */
#define STORE_CHUNK 256             /* rows the store thread takes per lock */
#define RUN_ROWS 64                 /* new rows stored at once (store_recipient_insert_run) */
/* With a checkpoint thread, the WAL is started over past this many frames by default (128 MiB
 * of 4 KiB pages, as the connection's own checkpoints in import mode did). */
#define IMPORT_WAL_FRAMES 32768

/* Columns with a meaning of their own; everything else is a template attribute. */
enum known_col { COL_EMAIL, COL_USER_ID, COL_NAME, COL_LOCALE, COL_TIMEZONE, COL_CLIENT,
		 COL_VERSION, COL_PLATFORM, COL_OS, COL_KNOWN };
static const char *const known_names[COL_KNOWN] = {
	"email", "user_id", "name", "locale", "timezone", "client", "version", "platform", "os"};

/* One row, checked and normalised, ready for the store. */
struct row {
	const char *v[COL_KNOWN]; /* known columns, NULL when absent or empty */
	char *email;              /* normalised, owned */
	const char *attrs;        /* JSON, the slot's, or NULL */
	char locale[36];
	/* The stored text's lengths, measured here on the reader thread (store_recipient's
	 * text_len), where the storing thread would measure them for each bind. */
	uint32_t len[STORE_TEXT_COUNT];
};

/* One row as the reader thread read and checked it, queued for the store (main) thread.
 * The reader fills a free slot; once queued, only the store thread reads it until it is
 * handed back. A slot owns w.email until it is reused or the queue is freed. */
struct slot {
	struct buf fields;        /* field bytes as read, each NUL-terminated */
	size_t *offs, *lens;      /* room for room_fields fields, grown as rows need */
	int room_fields;
	int nfields;
	bool too_many_fields;
	long row_line;            /* physical line where the row began */
	bool rejected;            /* reason says why; w is not filled */
	char reason[512];
	struct row w;
	int64_t segment_id;       /* 0: matches no segment */
	uint64_t digest;
	int64_t email_key;        /* store_address_key64(w.email), computed by the reader */
	struct buf vals;          /* the known fields, trimmed (w.v points here) */
	struct buf attrs;         /* the extra columns as JSON (w.attrs points here) */
	size_t queued_bytes;      /* what it counts against QUEUE_BYTES while queued */
};

/* The bounded queue between the reader thread and the store thread: at most QUEUE_SLOTS
 * rows and about QUEUE_BYTES of their text wait, so memory does not grow with the file. */
struct row_queue {
	pthread_mutex_t mu;
	pthread_cond_t filled;    /* a row was queued, or the reader is done */
	pthread_cond_t drained;   /* a row was handed back, or the store stopped */
	struct slot *slots;       /* QUEUE_SLOTS, a ring */
	size_t head, count;       /* slots[head] is the oldest queued row */
	size_t bytes;             /* field bytes queued */
	bool done;                /* the reader queued its last row */
	bool stop;                /* the store failed: the reader stops reading */
	bool reader_waits;        /* for room: woken when the queue is half empty */
	bool store_waits;         /* for rows: woken when a quarter of the queue is full */
};

/* Everything one import run carries. The reader thread alone touches the fields marked
 * (reader) until it is joined; the store thread alone touches those marked (store). The
 * header fields are written by the reader before its first row is queued. */
struct importer {
	struct store *s;
	const struct campaign *c;
	int64_t campaign_id;
	const struct import_options *o;
	struct import_result *r;
	struct err *e;            /* (store) */
	int64_t *segment_ids;     /* parallel to c->segments; read by the reader */
	FILE *f;                  /* (reader) the input */
	const char *path;
	/* the header */
	int ncols;
	char **col_names;
	int known[COL_KNOWN];     /* column index of each known column, or -1 */
	bool have_header;
	int extra[MAX_FIELDS];    /* the columns kept as template attributes, in header order */
	int n_extra;
	/* (reader) the row being parsed */
	struct slot *cur;
	long line;                /* physical line being fed */
	size_t row_bytes;
	struct err re;            /* the reader's error: the file cannot be read, a bad header */
	int rfatal;               /* re.code once the reader failed */
	bool stopped;             /* the store thread failed: read no further */
	char *tz_ok[TZ_CACHE];
	int n_tz_ok;
	struct row_queue q;
	/* (store) output */
	FILE *rejects;
	const char *rejects_path;
	int fatal;                /* a store error stopped the import */
	int64_t in_batch;
	struct timespec started, last_progress;
	bool any_forgotten;       /* some address was forgotten: check each row's */
	struct checkpointer *ck;  /* (store) copies each batch into the database; or NULL */
};

static void row_free(struct row *w)
{
	free(w->email);
}

static const char *slot_field(const struct slot *sl, int i)
{
	return sl->fields.data + sl->offs[i];
}

static const char *field(const struct importer *im, int i)
{
	return slot_field(im->cur, i);
}

static void on_field(void *data, size_t len, void *ud)
{
	struct importer *im = ud;
	struct slot *sl = im->cur;

	if (sl->nfields >= MAX_FIELDS) {
		sl->too_many_fields = true;
		return;
	}
	if (sl->nfields == sl->room_fields) {
		sl->room_fields = sl->room_fields ? 2 * sl->room_fields : 16;
		sl->offs = xrealloc(sl->offs, (size_t)sl->room_fields * sizeof *sl->offs);
		sl->lens = xrealloc(sl->lens, (size_t)sl->room_fields * sizeof *sl->lens);
	}
	sl->offs[sl->nfields] = sl->fields.len;
	sl->lens[sl->nfields] = len;
	buf_append(&sl->fields, data ? data : "", data ? len : 0);
	buf_putc(&sl->fields, '\0');
	sl->nfields++;
}

/* Makes the reader's current slot empty, for the next row. */
static void row_reset(struct importer *im)
{
	struct slot *sl = im->cur;

	buf_reset(&sl->fields);
	sl->nfields = 0;
	sl->too_many_fields = false;
	sl->rejected = false;
	row_free(&sl->w);
	memset(&sl->w, 0, sizeof sl->w);
	sl->segment_id = 0;
	sl->digest = 0;
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

/* (store) Records a rejected row: its line, the reason, and its fields as read. */
static void rejects_write(struct importer *im, const struct slot *sl, const char *reason)
{
	char line[32];

	im->r->counts.rejected++;
	if (rejects_open(im) != 0) {
		im->fatal = im->e->code;
		return;
	}
	snprintf(line, sizeof line, "%ld", sl->row_line);
	fputs(line, im->rejects);
	csv_put(im->rejects, reason, strlen(reason), false);
	for (int i = 0; i < sl->nfields; i++)
		csv_put(im->rejects, slot_field(sl, i), sl->lens[i], false);
	fputs("\r\n", im->rejects);
}

/* (reader) Marks the current row rejected, for the store thread to write in its turn. */
static void reject(struct importer *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(struct importer *im, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(im->cur->reason, sizeof im->cur->reason, fmt, ap);
	va_end(ap);
	im->cur->rejected = true;
}

/* ---- the queue between the reader and the store thread ---- */

static void queue_init(struct row_queue *q)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->filled, NULL);
	pthread_cond_init(&q->drained, NULL);
	q->slots = xcalloc(QUEUE_SLOTS, sizeof *q->slots);
	for (size_t i = 0; i < QUEUE_SLOTS; i++) {
		buf_init(&q->slots[i].fields);
		buf_init(&q->slots[i].vals);
		buf_init(&q->slots[i].attrs);
	}
}

static void queue_free(struct row_queue *q)
{
	if (q->slots == NULL)
		return;
	for (size_t i = 0; i < QUEUE_SLOTS; i++) {
		row_free(&q->slots[i].w);
		free(q->slots[i].offs);
		free(q->slots[i].lens);
		buf_free(&q->slots[i].fields);
		buf_free(&q->slots[i].vals);
		buf_free(&q->slots[i].attrs);
	}
	free(q->slots);
	pthread_cond_destroy(&q->drained);
	pthread_cond_destroy(&q->filled);
	pthread_mutex_destroy(&q->mu);
}

/* (reader, lock held) Waits for a free slot and makes it current; false if the store stopped
 * (the slot is then the reader's scratch space: nothing reads it). */
static bool queue_claim(struct importer *im)
{
	struct row_queue *q = &im->q;

	while (!q->stop && (q->count == QUEUE_SLOTS || (q->count > 0 && q->bytes > QUEUE_BYTES))) {
		q->reader_waits = true;
		if (q->store_waits) /* for a batch that big rows keep from filling up */
			pthread_cond_signal(&q->filled);
		pthread_cond_wait(&q->drained, &q->mu);
	}
	q->reader_waits = false;
	if (!q->stop)
		im->cur = &q->slots[(q->head + q->count) % QUEUE_SLOTS];
	return !q->stop;
}

/* (reader) Queues the current row (one row of the file, to be stored or rejected) and makes
 * a fresh slot current. Once the store has stopped, stops the reader instead. */
static void row_push(struct importer *im)
{
	struct row_queue *q = &im->q;
	bool going = false;

	pthread_mutex_lock(&q->mu);
	if (!q->stop) {
		im->cur->queued_bytes = im->cur->fields.len;
		q->bytes += im->cur->queued_bytes;
		q->count++;
		/* Woken for a batch, not for each row: the threads do not take turns row by row. */
		if (q->store_waits && q->count >= QUEUE_SLOTS / 4)
			pthread_cond_signal(&q->filled);
		going = queue_claim(im);
	}
	pthread_mutex_unlock(&q->mu);
	if (!going) {
		im->stopped = true; /* the store reads no slot any more */
		return;
	}
	row_reset(im);
}

/* (reader) Tells the store thread that no more rows come. */
static void queue_finish(struct row_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->done = true;
	pthread_cond_signal(&q->filled);
	pthread_mutex_unlock(&q->mu);
}

/* (store) Waits for queued rows; how many there are, at most STORE_CHUNK, from slots[q->head]
 * on (which only this thread moves); 0 once the reader is done and all were stored. */
static size_t queue_take(struct row_queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->mu);
	while (q->count == 0 && !q->done) {
		q->store_waits = true;
		pthread_cond_wait(&q->filled, &q->mu);
	}
	q->store_waits = false;
	n = q->count < STORE_CHUNK ? q->count : STORE_CHUNK;
	pthread_mutex_unlock(&q->mu);
	return n;
}

/* (store) Hands the n oldest slots back to the reader (their big buffers freed). */
static void queue_release(struct row_queue *q, size_t n)
{
	size_t bytes = 0;

	for (size_t i = 0; i < n; i++) {
		struct slot *sl = &q->slots[(q->head + i) % QUEUE_SLOTS];
		bytes += sl->queued_bytes;
		if (sl->fields.cap > SLOT_KEEP_BYTES || sl->vals.cap > SLOT_KEEP_BYTES ||
		    sl->attrs.cap > SLOT_KEEP_BYTES) {
			buf_free(&sl->fields), buf_free(&sl->vals), buf_free(&sl->attrs);
			buf_init(&sl->fields), buf_init(&sl->vals), buf_init(&sl->attrs);
		}
	}
	pthread_mutex_lock(&q->mu);
	q->head = (q->head + n) % QUEUE_SLOTS;
	q->count -= n;
	q->bytes -= bytes;
	if (q->reader_waits && q->count <= QUEUE_SLOTS / 2 && q->bytes <= QUEUE_BYTES / 2)
		pthread_cond_signal(&q->drained);
	pthread_mutex_unlock(&q->mu);
}

/* (store) Stops the reader: it reads no further and queues nothing more. */
static void queue_stop(struct row_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_signal(&q->drained);
	pthread_mutex_unlock(&q->mu);
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
	im->ncols = im->cur->nfields;
	im->col_names = xcalloc((size_t)im->ncols, sizeof *im->col_names);
	for (int k = 0; k < COL_KNOWN; k++)
		im->known[k] = -1;
	for (int i = 0; i < im->ncols; i++) {
		char *name = trim((char *)field(im, i));
		if (!str_utf8_valid(name, strlen(name)) || str_has_control(name) || *name == '\0')
			return err_set(&im->re, ERR_DATA, "line %ld: column %d of the header is empty"
				       " or not a printable UTF-8 name", im->cur->row_line, i + 1);
		im->col_names[i] = xstrdup(name);
		for (int j = 0; j < i; j++)
			if (strcasecmp(im->col_names[j], name) == 0)
				return err_set(&im->re, ERR_DATA, "line %ld: the header names column"
					       " '%s' twice", im->cur->row_line, name);
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
			return err_set(&im->re, ERR_DATA,
				       "line %ld: the header has no '%s' column, which campaign %s's"
				       " templates use (its 'attributes' setting)",
				       im->cur->row_line, im->c->attributes.values[a], im->c->name);
	}
	if (im->known[COL_EMAIL] < 0)
		return err_set(&im->re, ERR_DATA,
			       "line %ld: the header has no 'email' column (it has: %s%s); the first"
			       " row must name the columns, one of them email",
			       im->cur->row_line, im->col_names[0], im->ncols > 1 ? ", ..." : "");
	im->have_header = true;
	return 0;
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
	for (int i = 0; i < im->cur->nfields; i++) {
		const char *v = field(im, i);
		if (printable_ascii(v, im->cur->lens[i]))
			continue;
		if (memchr(v, '\0', im->cur->lens[i]) != NULL) {
			reject(im, "column '%s' contains a NUL byte", im->col_names[i]);
			return false;
		}
		if (!str_utf8_valid(v, im->cur->lens[i])) {
			reject(im, "column '%s' is not valid UTF-8", im->col_names[i]);
			return false;
		}
	}
	for (int k = 0; k < COL_KNOWN; k++) {
		int i = im->known[k];
		if (i >= 0 && !printable_ascii(field(im, i), im->cur->lens[i]) &&
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

/* The extra columns of the current row as a JSON object in the slot's attrs; NULL if none. */
static const char *row_attrs(struct importer *im)
{
	const char *names[MAX_FIELDS], *values[MAX_FIELDS];
	size_t lens[MAX_FIELDS];

	for (int j = 0; j < im->n_extra; j++) {
		names[j] = im->col_names[im->extra[j]];
		values[j] = field(im, im->extra[j]);
		lens[j] = im->cur->lens[im->extra[j]];
	}
	import_attrs_json(&im->cur->attrs, names, values, lens, (size_t)im->n_extra);
	return im->n_extra > 0 ? im->cur->attrs.data : NULL;
}

/* Field i of the current row without surrounding blanks, copied into the slot's vals (whose room
 * the caller reserved); NULL if i < 0 or the field is blank. */
static const char *known_trimmed(struct importer *im, int i)
{
	const char *v, *end;
	char *out;

	if (i < 0)
		return NULL;
	v = field(im, i), end = v + im->cur->lens[i];
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (v == end)
		return NULL;
	out = im->cur->vals.data + im->cur->vals.len;
	memcpy(out, v, (size_t)(end - v));
	out[end - v] = '\0';
	im->cur->vals.len += (size_t)(end - v) + 1;
	return out;
}

/* w's text lengths, as they will be stored (the address normalised, the locale too). */
static void row_measure(struct row *w)
{
	const char *v[STORE_TEXT_COUNT] = {
		[STORE_TEXT_USER_ID] = w->v[COL_USER_ID], [STORE_TEXT_EMAIL] = w->email,
		[STORE_TEXT_NAME] = w->v[COL_NAME], [STORE_TEXT_LOCALE] = w->v[COL_LOCALE],
		[STORE_TEXT_TIMEZONE] = w->v[COL_TIMEZONE], [STORE_TEXT_CLIENT] = w->v[COL_CLIENT],
		[STORE_TEXT_VERSION] = w->v[COL_VERSION], [STORE_TEXT_PLATFORM] = w->v[COL_PLATFORM],
		[STORE_TEXT_OS] = w->v[COL_OS], [STORE_TEXT_ATTRS] = w->attrs};

	for (int t = 0; t < STORE_TEXT_COUNT; t++)
		w->len[t] = v[t] != NULL ? (uint32_t)strlen(v[t]) : 0;
}

/* Fills w from the current row; false (and the row rejected) on any problem. */
static bool row_build(struct importer *im, struct row *w)
{
	struct err e = {0};

	if (!row_check_text(im))
		return false;
	/* Trimmed copies: the fields as read stay whole for the rejects file. */
	buf_reset(&im->cur->vals);
	buf_grow(&im->cur->vals, im->cur->fields.len); /* no reallocation below: the pointers hold */
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
	row_measure(w);
	return true;
}

static uint64_t row_digest(const struct row *w, int64_t segment_id)
{
	uint64_t h = HASH_FNV1A_INIT;

	/* user_id is the key, not a field: a duplicate under another id digests the same. The
	 * known columns in their order, with the lengths row_measure took. */
	static const enum store_text text_of[COL_KNOWN] = {
		[COL_EMAIL] = STORE_TEXT_EMAIL, [COL_USER_ID] = STORE_TEXT_USER_ID,
		[COL_NAME] = STORE_TEXT_NAME, [COL_LOCALE] = STORE_TEXT_LOCALE,
		[COL_TIMEZONE] = STORE_TEXT_TIMEZONE, [COL_CLIENT] = STORE_TEXT_CLIENT,
		[COL_VERSION] = STORE_TEXT_VERSION, [COL_PLATFORM] = STORE_TEXT_PLATFORM,
		[COL_OS] = STORE_TEXT_OS};

	for (int k = 0; k < COL_KNOWN; k++) {
		const char *v = k == COL_EMAIL ? w->email : k == COL_USER_ID ? NULL : w->v[k];
		if (v != NULL)
			h = hash_fnv1a(h, v, w->len[text_of[k]]);
		h = hash_fnv1a(h, "\x1f", 1);
	}
	if (w->attrs != NULL)
		h = hash_fnv1a(h, w->attrs, w->len[STORE_TEXT_ATTRS]);
	return hash_fnv1a(h, &segment_id, sizeof segment_id) & INT64_MAX;
}

static void row_to_recipient(const struct importer *im, const struct slot *sl,
			     struct store_recipient *r)
{
	const struct row *w = &sl->w;

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
	r->segment_id = sl->segment_id;
	r->digest = sl->digest;
	r->email_key = sl->email_key, r->email_key_set = true;
	r->import_run = im->r->run_id;
	memcpy(r->text_len, w->len, sizeof r->text_len);
}

/* What happened to a row that reached the store. */
enum outcome { OUT_ADDED, OUT_UPDATED, OUT_UNCHANGED, OUT_MERGED, OUT_CONFLICT, OUT_SKIPPED };

/* An existing recipient: unchanged, updated, or (seen earlier in this file) merged. */
static int row_update(struct importer *im, const struct slot *sl, struct store_recipient *r,
		      const struct store_recipient_key *k, bool by_email, enum outcome *out)
{
	struct store_recipient_key other;
	char reason[sizeof sl->reason];
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
			snprintf(reason, sizeof reason, "email %s already belongs to user %s",
				 r->email, other.user_id);
			rejects_write(im, sl, reason);
			return 0;
		}
	}
	r->id = k->id;
	return store_recipient_update(im->s, r, im->o->now,
				      strcmp(k->email, r->email) == 0 && k->segment_id == r->segment_id,
				      im->e);
}

/* Stores one row; tried: its INSERT was tried already (store_run) and conflicted. */
static int row_store(struct importer *im, const struct slot *sl, bool tried, enum outcome *out)
{
	struct store_recipient r;
	struct store_recipient_key k;
	int64_t id;
	int rc;

	row_to_recipient(im, sl, &r);
	/* Most rows are new: one INSERT that turns out a no-op on a duplicate is the fast path. */
	if (sl->segment_id != 0 && !tried) {
		if ((rc = store_recipient_insert(im->s, &r, im->o->now, &id, im->e)) <= 0) {
			*out = OUT_ADDED;
			return rc;
		}
	}
	rc = store_recipient_find_user(im->s, im->campaign_id, r.user_id, &k, im->e);
	if (rc <= 0)
		return rc < 0 ? rc : row_update(im, sl, &r, &k, false, out);
	*out = OUT_SKIPPED;
	if (sl->segment_id == 0) /* not affected, and not known: nothing to keep */
		return 0;
	rc = store_recipient_find_email(im->s, im->campaign_id, r.email, &k, im->e);
	if (rc <= 0)
		return rc < 0 ? rc : row_update(im, sl, &r, &k, true, out);
	/* Neither the user id nor the address is known: only the address's key was taken, by
	 * another address (a run stops there too); store_recipient_insert stores it without. */
	if (tried && (rc = store_recipient_insert(im->s, &r, im->o->now, &id, im->e)) <= 0) {
		*out = OUT_ADDED;
		return rc;
	}
	return err_set(im->e, ERR_SOFTWARE, "recipient %s conflicts but cannot be found", r.user_id);
}

static void count_outcome(struct store_import_counts *c, enum outcome o, bool affected)
{
	if (o == OUT_CONFLICT)
		return; /* counted as rejected by rejects_write() */
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

/* (reader) A complete data row: checked, normalised and matched into the current slot, then
 * queued (rejected or not) for the store thread. */
static void row_process(struct importer *im)
{
	struct slot *sl = im->cur;

	if (sl->too_many_fields || sl->nfields != im->ncols)
		reject(im, "expected %d fields as in the header, found %s%d", im->ncols,
		       sl->too_many_fields ? "more than " : "", sl->nfields);
	else if (row_build(im, &sl->w)) {
		sl->segment_id = row_segment(im, &sl->w);
		sl->digest = row_digest(&sl->w, sl->segment_id);
		/* Here rather than in the store thread, which is the import's bottleneck. */
		sl->email_key = sl->w.email ? store_address_key64(sl->w.email) : 0;
	}
	row_push(im);
}

/* (store) One queued row, in file order: rejected, or stored as the import did inline;
 * tried: store_run tried its INSERT already, and it conflicted. */
static void slot_store(struct importer *im, const struct slot *sl, bool tried)
{
	enum outcome o = OUT_SKIPPED;
	bool forgotten = false;
	int rc;

	im->r->counts.rows++;
	if (sl->rejected) {
		rejects_write(im, sl, sl->reason);
		return;
	}
	/* A forgotten person stays forgotten: their data is not taken in again (and not
	 * written to the rejects file either); they count as not affected. */
	if (im->any_forgotten &&
	    (rc = store_report_address_forgotten(im->s, sl->w.email, &forgotten, im->e)) != 0) {
		im->fatal = rc;
		return;
	}
	if (forgotten) {
		im->r->counts.not_affected++;
		return;
	}
	if ((rc = row_store(im, sl, tried, &o)) != 0) {
		im->fatal = rc;
		return;
	}
	count_outcome(&im->r->counts, o, sl->segment_id != 0);
	im->in_batch++;
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

static int64_t commit_every(const struct importer *im)
{
	return im->o->commit_every > 0 ? im->o->commit_every : 50000;
}

/* Opens a write transaction and checks what the foreign keys (off in import mode) would have
 * checked of each row written in it. 0 or the store's error. */
static int batch_begin(struct importer *im)
{
	int rc = store_begin(im->s, im->e);

	if (rc == 0)
		rc = store_import_parents_check(im->s, im->campaign_id, im->segment_ids,
						im->c->n_segments, im->e);
	return rc;
}

/* Commits every commit_every rows so other writers get a turn during a long import; and after
 * half as many once the page cache has overflowed in this batch. Past that point SQLite
 * writes dirty pages to the WAL in the middle of the transaction; the address key's index
 * is written at random, so most of them are changed again, rewritten in place, and at the
 * commit every frame after the first one rewritten has its checksum read and written again
 * (bench/import, 1M rows: the overflow starts near 650,000 rows; then 58,000 frames were
 * read and their headers written one by one, and 20,000 pages read back from the WAL).
 * Half a batch at least keeps the index's own writes at most twice what they were. */
static void batch_boundary(struct importer *im)
{
	if (im->fatal || im->in_batch < commit_every(im) / 2)
		return;
	/* Read and reset: counted from this commit on, or until the next look. */
	if (store_cache_spills(im->s) == 0 && im->in_batch < commit_every(im))
		return;
	if ((im->fatal = store_commit(im->s, im->e)) != 0)
		return;
	if (im->ck != NULL) /* copied while the next batch is stored (checkpointer.h) */
		checkpointer_committed(im->ck, im->s,
				       im->o->wal_frames > 0 ? im->o->wal_frames : IMPORT_WAL_FRAMES);
	im->fatal = batch_begin(im);
	im->in_batch = 0;
}

/* (reader) libcsv's end of a row: the header, or a data row to queue. */
static void on_row(int term, void *ud)
{
	struct importer *im = ud;

	(void)term;
	if (im->rfatal || im->stopped)
		return;
	if (im->have_header) {
		row_process(im); /* queued: the slot current now is fresh */
		return;
	}
	if (header_read(im) != 0)
		im->rfatal = im->re.code;
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
	if (p->pstate == 0 && im->cur->nfields == 0 && im->row_bytes == 0)
		im->cur->row_line = im->line;
	im->row_bytes += len;
	if (im->row_bytes > MAX_ROW_BYTES) {
		reject(im, "the row is longer than %d bytes", MAX_ROW_BYTES);
	} else {
		done = csv_parse(p, data, len, on_field, on_row, im);
		if (done == len || im->stopped || im->rfatal)
			return;
		reject(im, "malformed CSV: %s (a quote inside an unquoted field, or text after"
		       " a closing quote)", csv_strerror(csv_error(p)));
	}
	row_push(im);
	*skipping = true;
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
	while (pos < n && !im->rfatal && !im->stopped) {
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

/* (reader) Reads and parses the whole file, queueing every row; the thread's body. */
static void read_all(struct importer *im)
{
	struct csv_parser p;
	char *chunk = xmalloc(READ_CHUNK);
	bool skipping = false, after_cr = false, first = true;
	size_t n;

	parser_init(&p);
	im->line = 1;
	while (!im->rfatal && !im->stopped && (n = fread(chunk, 1, READ_CHUNK, im->f)) > 0) {
		size_t skip = (first && n >= 3 && memcmp(chunk, "\xef\xbb\xbf", 3) == 0) ? 3 : 0;
		first = false;
		feed_chunk(im, &p, chunk + skip, n - skip, &skipping, &after_cr);
	}
	if (!im->rfatal && !im->stopped && ferror(im->f))
		im->rfatal = err_sys(&im->re, ERR_IO, errno, "reading %s", im->path);
	if (!im->rfatal && !im->stopped && !skipping &&
	    csv_fini(&p, on_field, on_row, im) != 0 && !im->rfatal && !im->stopped) {
		reject(im, "the file ends inside a quoted field that began on this line (is it"
		       " truncated?)");
		row_push(im);
	}
	csv_free(&p);
	free(chunk);
}

static void *reader_main(void *arg)
{
	struct importer *im = arg;

	read_all(im);
	queue_finish(&im->q);
	return NULL;
}

static const struct slot *queued(const struct importer *im, size_t i)
{
	return &im->q.slots[(im->q.head + i) % QUEUE_SLOTS];
}

/* What a queued row is to a run of new rows (store_some). */
enum run_role {
	ROLE_NEW,       /* a new recipient to insert with the run */
	ROLE_REJECTED,  /* written to the rejects file in its turn: nothing stored */
	ROLE_FORGOTTEN, /* counted as not affected: nothing stored */
	ROLE_NOOP,      /* not affected and unknown, before the run and in it: nothing stored */
	ROLE_ALONE      /* to be stored by itself, after the run */
};

/* (store) The role of queued row sl in a run whose new rows so far are rows[0, n). A row that
 * is not affected is a no-op only if no recipient has its user id, neither stored nor among
 * rows[0, n). 0 or the store's error. */
static int slot_role(struct importer *im, const struct slot *sl,
		     const struct store_recipient *rows, size_t n, enum run_role *role)
{
	struct store_recipient_key k;
	bool forgotten = false;
	int rc;

	*role = sl->rejected ? ROLE_REJECTED : ROLE_ALONE;
	if (sl->rejected)
		return 0;
	if (im->any_forgotten &&
	    (rc = store_report_address_forgotten(im->s, sl->w.email, &forgotten, im->e)) != 0)
		return rc;
	if (forgotten || sl->segment_id != 0) {
		*role = forgotten ? ROLE_FORGOTTEN : ROLE_NEW;
		return 0;
	}
	for (size_t j = 0; j < n; j++)
		if (strcmp(rows[j].user_id, sl->w.v[COL_USER_ID]) == 0)
			return 0;
	rc = store_recipient_find_user(im->s, im->campaign_id, sl->w.v[COL_USER_ID], &k, im->e);
	if (rc == 1)
		*role = ROLE_NOOP;
	return rc < 0 ? rc : 0;
}

/* (store) Counts a queued row of a run that stored nothing or was inserted with it. */
static void run_count(struct importer *im, const struct slot *sl, enum run_role role)
{
	if (role == ROLE_REJECTED || role == ROLE_FORGOTTEN) {
		slot_store(im, sl, false); /* touches no recipient */
		return;
	}
	im->r->counts.rows++;
	if (role == ROLE_NEW)
		im->r->counts.added++;
	else
		im->r->counts.not_affected++;
	im->in_batch++;
}

/* (store) Inserts rows[0, n), the new rows among the m queued from slot i on (their roles in
 * roles), in multi-row statements, then counts the m rows in file order; the first new row
 * that conflicts is stored the slow way, and the rows after it are left for the next call,
 * so every row sees the rows before it stored, as one by one. Returns the slots it took. */
static size_t store_run(struct importer *im, size_t i, const struct store_recipient *rows,
			size_t n, const enum run_role *roles, size_t m)
{
	size_t done = n, k = 0, taken;

	if (n > 0 &&
	    (im->fatal = store_recipient_insert_run(im->s, rows, n, im->o->now, &done, im->e)))
		return m;
	for (taken = 0; taken < m && !im->fatal; taken++) {
		if (roles[taken] == ROLE_NEW && k++ == done) { /* it conflicts */
			slot_store(im, queued(im, i + taken++), true);
			progress(im, false);
			break;
		}
		run_count(im, queued(im, i + taken), roles[taken]);
		progress(im, false);
	}
	batch_boundary(im);
	return taken;
}

/* (store) Stores the queued rows from slot i on (of the n taken): a run of new rows at once,
 * with the rows around them that store nothing, up to RUN_ROWS new rows and the end of the
 * batch; or else the next row by itself. Returns the slots it took (at least one). */
static size_t store_some(struct importer *im, size_t i, size_t n)
{
	struct store_recipient rows[RUN_ROWS];
	enum run_role roles[STORE_CHUNK];
	size_t m = 0, nrows = 0, counted = 0, room = (size_t)(commit_every(im) - im->in_batch);

	while (i + m < n && nrows < RUN_ROWS && counted < room) {
		const struct slot *sl = queued(im, i + m);

		if ((im->fatal = slot_role(im, sl, rows, nrows, &roles[m])) != 0)
			return n - i;
		if (roles[m] == ROLE_ALONE)
			break;
		if (roles[m] == ROLE_NEW)
			row_to_recipient(im, sl, &rows[nrows++]);
		counted += roles[m] == ROLE_NEW || roles[m] == ROLE_NOOP;
		m++;
	}
	if (m > 0)
		return store_run(im, i, rows, nrows, roles, m);
	slot_store(im, queued(im, i), false);
	progress(im, false);
	batch_boundary(im);
	return 1;
}

/* (store) Stores the queued rows as they come, committing every commit_every rows, until the
 * reader is done or a store error; then stops the reader. 0 or the store's error. */
static int store_rows(struct importer *im)
{
	size_t n;

	/* A chunk of rows per lock: the mutex's cache line does not cross cores for each row. */
	while (!im->fatal && (n = queue_take(&im->q)) > 0) {
		for (size_t i = 0; i < n && !im->fatal;)
			i += store_some(im, i, n);
		queue_release(&im->q, n);
	}
	queue_stop(&im->q);
	return im->fatal;
}

/* Runs the reader thread beside the store thread (this one) and joins it. 0, the store's
 * error, or else the reader's (copied into im->e). */
static int read_and_store(struct importer *im)
{
	pthread_t reader;
	int rc;

	im->cur = &im->q.slots[0];
	if ((rc = pthread_create(&reader, NULL, reader_main, im)) != 0)
		return err_sys(im->e, ERR_IO, rc, "cannot start the import's reader thread");
	rc = store_rows(im);
	pthread_join(reader, NULL);
	if (rc == 0 && im->rfatal != 0)
		rc = err_set(im->e, im->re.code, "%s", im->re.msg);
	return rc;
}

/* Starts the checkpoint thread and stops this connection's own checkpoints; without a thread
 * (none asked for, or it could not start) this connection goes on checkpointing by itself. */
static int import_checkpointer(struct importer *im)
{
	struct err e = {0};

	if (im->o->db_path == NULL)
		return 0;
	if (checkpointer_start(&im->ck, im->o->db_path, &e) != 0) {
		log_debug("import: checkpoints on this thread: %s", e.msg);
		return 0;
	}
	return store_wal_autocheckpoint(im->s, 0, im->e);
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
	queue_free(&im->q);
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

static int import_body(struct importer *im)
{
	int rc;

	if ((rc = batch_begin(im)) != 0) {
		store_rollback(im->s);
		return rc;
	}
	if ((rc = read_and_store(im)) == 0 && !im->have_header)
		rc = err_set(im->e, ERR_DATA, "%s is empty: the first row must name the columns,"
			     " one of them email", im->path);
	/* The new recipients' address keys, in key order, with the last batch (db/017). */
	if (rc == 0 && (rc = store_keys_add(im->s, true, im->e)) == 0)
		rc = store_commit(im->s, im->e);
	if (rc != 0)
		store_rollback(im->s);
	return rc;
}

/* After a failed import: the keys of the recipients its committed batches added, read from
 * the rows (the memory also holds the rolled-back batch's), in a transaction of their own. If
 * even that fails, the span stays pending (import_pending) and the next init, run or import
 * adds it; lookups by address find those recipients meanwhile. */
static void keys_after_failure(struct importer *im)
{
	struct err e2 = {0};

	store_keys_drop(im->s);
	if (store_begin(im->s, &e2) == 0 && store_keys_finish_pending(im->s, &e2) == 0 &&
	    store_commit(im->s, &e2) == 0)
		return;
	store_rollback(im->s);
	log_info("import: the new recipients' address keys are left for the next init, run or"
		 " import: %s", e2.msg);
}

int import_csv(struct store *s, const struct campaign *c, int64_t campaign_id, const char *path,
	       const struct import_options *o, struct import_result *r, struct err *e)
{
	struct importer im = {.s = s, .c = c, .campaign_id = campaign_id, .o = o, .r = r, .e = e,
			      .path = path};
	char *default_rejects = NULL;
	struct runlock *lock = NULL;
	FILE *f = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	queue_init(&im.q);
	if ((f = im.f = fopen(path, "rb")) == NULL) {
		rc = err_sys(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, errno, "cannot read %s", path);
		goto out;
	}
	default_rejects = xasprintf("%s.rejects.csv", path);
	im.rejects_path = o->rejects_path ? o->rejects_path : default_rejects;
	clock_gettime(CLOCK_MONOTONIC, &im.started);
	im.last_progress = im.started;
	/* An import can be re-run safely, so it need not fsync each batch (WAL stays consistent);
	 * the run's last commit (finish_run) is made durable, and with it every batch. */
	/* One import a database at a time: its new recipients' keys wait in memory until its
	 * end (store_keys_defer), which only the importer holding them can do right. */
	if (o->db_path != NULL &&
	    (rc = runlock_acquire_file(&lock, o->db_path, ".import-lock", "import", "import", o->now,
					e)) != 0)
		goto out;
	if ((rc = load_segment_ids(&im)) != 0 ||
	    (rc = store_import_forgotten_any(s, &im.any_forgotten, e)) != 0 ||
	    (rc = store_import_mode(s, true, e)) != 0 || (rc = import_checkpointer(&im)) != 0)
		goto out;
	if ((rc = batch_begin(&im)) != 0 ||
	    (rc = store_import_start(s, campaign_id, path, o->now, &r->run_id, e)) != 0 ||
	    (rc = o->defer_keys == IMPORT_KEYS_NOW
			  ? store_keys_finish_pending(s, e)
			  : store_keys_defer(s, campaign_id, o->defer_keys, e)) != 0 ||
	    (rc = store_commit(s, e)) != 0) {
		store_keys_drop(s);
		store_rollback(s);
		goto out;
	}
	if ((rc = import_body(&im)) != 0)
		keys_after_failure(&im);
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
	checkpointer_stop(im.ck);
	runlock_release(lock);
	store_import_mode(s, false, NULL);
	if (f != NULL)
		fclose(f);
	importer_free(&im);
	free(default_rejects);
	return rc;
}

int import_finish_pending(struct store *s, const char *db_path, int64_t now, struct err *e)
{
	struct runlock *lock = NULL;
	struct err busy = {0};
	bool any = false;
	int rc;

	if ((rc = store_keys_pending_any(s, &any, e)) != 0 || !any)
		return rc;
	/* Housekeeping: a lock that is taken (an import runs, and its keys are its own) or that
	 * cannot be opened leaves the span for later, and the command goes on. */
	if (runlock_acquire_file(&lock, db_path, ".import-lock", "import", "finish", now, &busy) != 0) {
		if (busy.code == ERR_TEMPFAIL)
			log_debug("an import's address keys wait for it: %s", busy.msg);
		else
			log_info("the address keys of an import that did not finish wait: %s",
				 busy.msg);
		return 0;
	}
	if ((rc = store_begin(s, e)) == 0 && (rc = store_keys_finish_pending(s, e)) == 0)
		rc = store_commit(s, e);
	if (rc != 0)
		store_rollback(s);
	runlock_release(lock);
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
