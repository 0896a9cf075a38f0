/* report.c — what cutoff user, who, report and forget compute, and their writers: aligned
 * tables, CSV (RFC 4180), JSON and JSON lines (RFC 8259), HTML with an inline SVG chart. */
#include "report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "schedule.h"

/* ---- small writers ------------------------------------------------------------------- */

/* Writes v as width decimal digits at p (v >= 0). */
static void digits(char *p, int v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
}

void report_time_utc(int64_t t, char *buf, size_t n)
{
	char v[21] = "0000-00-00T00:00:00Z";
	struct tm tm;
	time_t tt = (time_t)t;

	/* By hand rather than snprintf: who writes millions of these. */
	if (t == 0 || gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 0) {
		snprintf(buf, n, "%s", "");
		return;
	}
	digits(v, tm.tm_year + 1900, 4), digits(v + 5, tm.tm_mon + 1, 2);
	digits(v + 8, tm.tm_mday, 2), digits(v + 11, tm.tm_hour, 2);
	digits(v + 14, tm.tm_min, 2), digits(v + 17, tm.tm_sec, 2);
	if (n > 0) {
		size_t k = n - 1 < sizeof v - 1 ? n - 1 : sizeof v - 1;
		memcpy(buf, v, k);
		buf[k] = '\0';
	}
}

/* t in tz as "2003-08-18 09:00" (minutes: table cells); "" for 0. */
static void time_local_short(int64_t t, const char *tz, char *buf, size_t n)
{
	char iso[SCHEDULE_FORMAT_SIZE];

	if (t == 0 || schedule_format_local_iso(t, tz, iso, sizeof iso) != 0 || strlen(iso) < 16) {
		report_time_utc(t, iso, sizeof iso);
		snprintf(buf, n, "%.16s", iso);
	} else {
		snprintf(buf, n, "%.10s %.5s", iso, iso + 11);
	}
}

/* t in tz as "2003-08-18 09:00:05 PDT" (seconds always, so that columns align). */
static void time_local_long(int64_t t, const char *tz, char *buf, size_t n)
{
	char v[SCHEDULE_FORMAT_SIZE];

	if (schedule_format_local(t, tz, v, sizeof v) != 0) {
		report_time_utc(t, buf, n);
		return;
	}
	if (strlen(v) > 16 && v[16] == ' ')
		snprintf(buf, n, "%.16s:00%s", v, v + 16);
	else
		snprintf(buf, n, "%s", v);
}

void report_csv_field(struct buf *b, const char *v)
{
	if (v == NULL)
		return;
	if (strpbrk(v, ",\"\r\n") == NULL) {
		buf_puts(b, v);
		return;
	}
	buf_putc(b, '"');
	for (const char *p = v; *p; p++) {
		if (*p == '"')
			buf_putc(b, '"');
		buf_putc(b, *p);
	}
	buf_putc(b, '"');
}

/* The length of the valid UTF-8 sequence at p (2-4 bytes: p[0] >= 0x80), or 0 if it is not
 * one (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
		   : (p[0] & 0xf8) == 0xf0 ? 4 : 0;

	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n > 0 && str_utf8_valid((const char *)p, n) ? n : 0;
}

/* Whether byte c goes into a JSON string as it is. */
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

void report_json_string(struct buf *b, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;

	if (v == NULL) {
		buf_puts(b, "null");
		return;
	}
	buf_putc(b, '"');
	while (*p) {
		const unsigned char *run = p;
		size_t n;
		while (json_plain(*p))
			p++;
		buf_append(b, run, (size_t)(p - run));
		if (*p == '\0')
			break;
		if (*p == '"' || *p == '\\') {
			buf_putc(b, '\\'), buf_putc(b, (char)*p++);
		} else if (*p < 0x20) {
			buf_printf(b, *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t"
				   : "\\u%04x", *p);
			p++;
		} else if ((n = utf8_len(p)) == 0) {
			buf_puts(b, "\\ufffd"); /* not UTF-8 (a relay's reply may be anything) */
			p++;
		} else {
			buf_append(b, p, n);
			p += n;
		}
	}
	buf_putc(b, '"');
}

void report_html_text(struct buf *b, const char *v)
{
	for (const char *p = v ? v : ""; *p; p++) {
		switch (*p) {
		case '&': buf_puts(b, "&amp;"); break;
		case '<': buf_puts(b, "&lt;"); break;
		case '>': buf_puts(b, "&gt;"); break;
		case '"': buf_puts(b, "&quot;"); break;
		case '\'': buf_puts(b, "&#39;"); break;
		default: buf_putc(b, *p); break;
		}
	}
}

/* Code points in s (continuation bytes not counted). */
static int code_points(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void report_cell(struct buf *b, const char *v, int width, bool right)
{
	const char *s = v ? v : "";
	int n = code_points(s);

	if (n > width) {
		const char *p = s;
		for (int k = 0; k < width - 1; k++) /* width - 1 code points, then "~" */
			do
				p++;
			while (((unsigned char)*p & 0xc0) == 0x80);
		buf_append(b, s, (size_t)(p - s));
		buf_putc(b, '~');
		return;
	}
	for (int k = 0; right && k < width - n; k++)
		buf_putc(b, ' ');
	buf_puts(b, s);
	for (int k = 0; !right && k < width - n; k++)
		buf_putc(b, ' ');
}

/* ---- people: each affected person summed up from their facts ------------------------- */

static const char *const state_names[] = {
	[REPORT_ANY] = "any",           [REPORT_NOTIFIED] = "notified",
	[REPORT_NOT_NOTIFIED] = "not-notified", [REPORT_BOUNCED] = "bounced",
	[REPORT_DEFERRED] = "deferred", [REPORT_REMINDED] = "reminded",
	[REPORT_COMPLETED] = "completed", [REPORT_PENDING] = "pending",
	[REPORT_SUPPRESSED] = "suppressed",
};

bool report_state_parse(const char *name, enum report_state *out)
{
	for (size_t i = 1; i < sizeof state_names / sizeof state_names[0]; i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum report_state)i;
			return true;
		}
	}
	return false;
}

/* The static copy of v among names (NULL-terminated), else fallback: strings that outlive the
 * fact they came from. */
static const char *canonical(const char *v, const char *const *names, const char *fallback)
{
	for (size_t i = 0; v != NULL && names[i] != NULL; i++)
		if (strcmp(v, names[i]) == 0)
			return names[i];
	return v == NULL ? NULL : fallback;
}

static const char *const delivery_states[] = {"queued",  "sending",    "sent",      "deferred",
					      "failed",  "bounced",    "suppressed", "cancelled",
					      NULL};
static const char *const delivery_kinds[] = {"initial", "reminder", "final", NULL};
static const char *const suppress_reasons[] = {"hard-bounce", "soft-bounce", "complaint",
					       "unsubscribe", "forgotten",  "manual",
					       "suppressed",  NULL};

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* The earlier of two times, 0 meaning none. */
static int64_t min_set(int64_t a, int64_t b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

void report_builder_init(struct report_builder *b,
			 int (*fn)(void *ud, const struct report_person *p), void *ud)
{
	memset(b, 0, sizeof *b);
	buf_init(&b->strings);
	b->fn = fn;
	b->ud = ud;
}

void report_builder_free(struct report_builder *b)
{
	buf_free(&b->strings);
}

/* Copies the person's strings from f (they outlive f) and points p at them. */
static void person_strings(struct report_builder *b, const struct store_fact *f)
{
	const char *v[4] = {f->user_id, f->email, f->segment, f->state};
	size_t off[4];

	buf_reset(&b->strings);
	for (int i = 0; i < 4; i++) {
		off[i] = b->strings.len;
		buf_puts(&b->strings, v[i] ? v[i] : "");
		buf_putc(&b->strings, '\0');
	}
	b->p.user_id = b->strings.data + off[0];
	b->p.email = f->email ? b->strings.data + off[1] : NULL;
	b->p.segment = b->strings.data + off[2];
	b->p.state = b->strings.data + off[3];
}

static void person_start(struct report_builder *b, const struct store_fact *f)
{
	struct report_person *p = &b->p;

	memset(p, 0, sizeof *p);
	person_strings(b, f);
	p->recipient_id = f->recipient_id;
	p->segment_id = f->segment_id;
	p->created_at = f->created_at;
	p->completed_at = f->completed_at;
	p->reminders = f->reminders;
	p->first_reminder_at = f->first_reminder_at;
	p->last_reminder_at = f->last_reminder_at;
	if (strcmp(p->state, "forgotten") == 0)
		p->suppressed = "forgotten", p->suppressed_at = f->recipient_updated_at;
	else if (f->suppressed != NULL)
		p->suppressed = canonical(f->suppressed, suppress_reasons, "suppressed"),
		p->suppressed_at = f->suppressed_at;
	b->have = true;
}

static bool is_bounce(const struct store_fact *f)
{
	return strcmp(f->delivery_state, "bounced") == 0 ||
	       (strcmp(f->delivery_state, "failed") == 0 && f->reason != NULL &&
		(strcmp(f->reason, "hard") == 0 || strcmp(f->reason, "soft") == 0));
}

/* Adds one delivery of the person. */
static void person_add(struct report_person *p, const struct store_fact *f, int64_t *last_id)
{
	if (f->delivery_id == 0 || f->delivery_state == NULL)
		return;
	if (f->sent_at != 0) {
		p->emails++;
		p->first_email_at = min_set(p->first_email_at, f->sent_at);
		p->last_email_at = max64(p->last_email_at, f->sent_at);
	}
	if (strcmp(f->delivery_state, "sent") == 0) {
		p->delivered++;
		p->first_told_at = min_set(p->first_told_at, f->sent_at);
		p->last_told_at = max64(p->last_told_at, f->sent_at);
	} else if (is_bounce(f) && f->updated_at >= p->bounced_at) {
		p->bounced_at = f->updated_at;
		p->bounce = f->reason && strcmp(f->reason, "hard") == 0 ? "hard" : "soft";
	} else if (strcmp(f->delivery_state, "deferred") == 0) {
		p->deferred_at = max64(p->deferred_at, f->updated_at);
	} else if (strcmp(f->delivery_state, "suppressed") == 0 && p->suppressed == NULL) {
		p->suppressed = canonical(f->reason, suppress_reasons, "suppressed");
		if (p->suppressed == NULL)
			p->suppressed = "suppressed";
		p->suppressed_at = f->updated_at;
	}
	if (f->delivery_id > *last_id) {
		*last_id = f->delivery_id;
		p->last_kind = canonical(f->kind, delivery_kinds, "other");
		p->last_result = canonical(f->delivery_state, delivery_states, "other");
	}
	p->last_activity = max64(p->last_activity, max64(f->updated_at, f->sent_at));
}

static int person_emit(struct report_builder *b)
{
	struct report_person *p = &b->p;
	int64_t t = p->last_activity;

	if (!b->have)
		return 0;
	b->have = false;
	p->first_told_at = min_set(p->first_told_at, p->first_reminder_at);
	p->last_told_at = max64(p->last_told_at, p->last_reminder_at);
	t = max64(t, max64(p->created_at, p->completed_at));
	t = max64(t, max64(p->last_reminder_at, p->suppressed_at));
	p->last_activity = t;
	return b->fn(b->ud, p);
}

int report_person_feed(struct report_builder *b, const struct store_fact *f)
{
	int rc;

	if (!b->have || f->recipient_id != b->p.recipient_id) {
		if ((rc = person_emit(b)) != 0)
			return rc;
		person_start(b, f);
		b->last_delivery_id = 0;
	}
	person_add(&b->p, f, &b->last_delivery_id);
	return 0;
}

int report_person_flush(struct report_builder *b)
{
	return person_emit(b);
}

static bool person_completed(const struct report_person *p)
{
	return p->completed_at != 0 || strcmp(p->state, "completed") == 0;
}

bool report_person_in(const struct report_person *p, enum report_state s)
{
	switch (s) {
	case REPORT_ANY: return true;
	case REPORT_NOTIFIED: return p->delivered > 0 || p->reminders > 0;
	case REPORT_NOT_NOTIFIED: return p->delivered == 0 && p->reminders == 0;
	case REPORT_BOUNCED: return p->bounced_at != 0;
	case REPORT_DEFERRED: return p->deferred_at != 0;
	case REPORT_REMINDED: return p->reminders > 0;
	case REPORT_COMPLETED: return person_completed(p);
	case REPORT_PENDING: return !person_completed(p);
	case REPORT_SUPPRESSED: return p->suppressed != NULL;
	}
	return false;
}

int64_t report_person_when(const struct report_person *p, enum report_state s)
{
	switch (s) {
	case REPORT_NOTIFIED: return p->last_told_at;
	case REPORT_BOUNCED: return p->bounced_at;
	case REPORT_DEFERRED: return p->deferred_at;
	case REPORT_REMINDED: return p->last_reminder_at;
	case REPORT_COMPLETED: return p->completed_at;
	case REPORT_SUPPRESSED: return p->suppressed_at;
	default: return p->last_activity;
	}
}

static int people_fact(void *ud, const struct store_fact *f)
{
	return report_person_feed(ud, f);
}

int report_people(struct store *s, int64_t campaign_id, int64_t segment_id,
		  int (*fn)(void *ud, const struct report_person *p), void *ud, struct err *e)
{
	struct report_builder b;
	int rc;

	report_builder_init(&b, fn, ud);
	rc = store_report_facts(s, campaign_id, segment_id, people_fact, &b, e);
	if (rc == 0)
		rc = report_person_flush(&b);
	report_builder_free(&b);
	return rc;
}

/* ---- who: one row per person --------------------------------------------------------- */

/* The columns of who, in CSV and JSON lines, and the table's (a subset, fixed widths). */
static const char *const who_columns[] = {
	"user_id",     "email",  "segment",   "state",         "emails",    "first_email",
	"last_email",  "last_kind", "last_result", "bounce",    "reminders", "last_reminder",
	"completed",   "suppressed", NULL};

struct table_column {
	const char *title;
	int width;
	bool right;
};

static const struct table_column who_table[] = {
	{"USER_ID", 14, false},     {"EMAIL", 34, false},    {"SEGMENT", 17, false},
	{"STATE", 9, false},        {"EMAILS", 6, true},     {"FIRST_EMAIL", 16, false},
	{"LAST_RESULT", 11, false}, {"BOUNCE", 6, false},    {"REMINDERS", 9, true},
	{"COMPLETED", 16, false},   {"SUPPRESSED", 0, false}};
#define WHO_TABLE_N (sizeof who_table / sizeof who_table[0])

void report_who_header(struct buf *out, enum report_format f)
{
	if (f == REPORT_CSV) {
		for (int i = 0; who_columns[i] != NULL; i++)
			buf_printf(out, "%s%s", i ? "," : "", who_columns[i]);
		buf_puts(out, "\r\n");
	} else if (f == REPORT_TABLE) {
		for (size_t i = 0; i < WHO_TABLE_N; i++) {
			if (i)
				buf_putc(out, ' ');
			if (who_table[i].width == 0)
				buf_puts(out, who_table[i].title);
			else
				report_cell(out, who_table[i].title, who_table[i].width,
					    who_table[i].right);
		}
		buf_putc(out, '\n');
	}
}

/* v >= 0 in decimal, by hand (who writes millions). */
static void format_count(int64_t v, char out[24])
{
	char t[24];
	int n = 0;

	do
		t[n++] = (char)('0' + (v % 10 + 10) % 10);
	while ((v /= 10) != 0 && n < 23);
	for (int i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	out[n] = '\0';
}

/* A person's values as text, in who_columns' order (times UTC), into v (14 entries). */
static void who_values(const struct report_person *p, char t[5][24], char n[2][24],
		       const char **v)
{
	report_time_utc(p->first_email_at, t[0], 24);
	report_time_utc(p->last_email_at, t[1], 24);
	report_time_utc(p->last_reminder_at, t[2], 24);
	report_time_utc(p->completed_at, t[3], 24);
	format_count(p->emails, n[0]);
	format_count(p->reminders, n[1]);
	const char *w[] = {p->user_id, p->email, p->segment, p->state, n[0], t[0], t[1],
			   p->last_kind, p->last_result, p->bounce, n[1], t[2], t[3],
			   p->suppressed};
	memcpy(v, w, sizeof w);
}

static void who_json(struct buf *out, const struct report_person *p)
{
	char t[5][24], n[2][24];
	const char *v[14];

	who_values(p, t, n, v);
	buf_putc(out, '{');
	for (int i = 0; who_columns[i] != NULL; i++) {
		buf_puts(out, i ? ",\"" : "\"");
		buf_puts(out, who_columns[i]);
		buf_puts(out, "\":");
		if (i == 4 || i == 10)
			buf_puts(out, v[i]);
		else
			report_json_string(out, v[i] && *v[i] ? v[i] : NULL);
	}
	buf_puts(out, "}\n");
}

static void who_csv(struct buf *out, const struct report_person *p)
{
	char t[5][24], n[2][24];
	const char *v[14];

	who_values(p, t, n, v);
	for (int i = 0; who_columns[i] != NULL; i++) {
		if (i)
			buf_putc(out, ',');
		report_csv_field(out, v[i]);
	}
	buf_puts(out, "\r\n");
}

static void who_table_row(struct buf *out, const struct report_person *p, const char *tz)
{
	char first[24], done[24], emails[24], rem[24];
	const char *v[WHO_TABLE_N];

	time_local_short(p->first_email_at, tz, first, sizeof first);
	time_local_short(p->completed_at, tz, done, sizeof done);
	snprintf(emails, sizeof emails, "%lld", (long long)p->emails);
	snprintf(rem, sizeof rem, "%lld", (long long)p->reminders);
	const char *w[WHO_TABLE_N] = {p->user_id, p->email ? p->email : "-", p->segment,
				      p->state, emails, first, p->last_result ? p->last_result
				      : "-", p->bounce ? p->bounce : "-", rem, done,
				      p->suppressed ? p->suppressed : "-"};
	memcpy(v, w, sizeof w);
	for (size_t i = 0; i < WHO_TABLE_N; i++) {
		if (i)
			buf_putc(out, ' ');
		if (who_table[i].width == 0)
			buf_puts(out, v[i]);
		else
			report_cell(out, *v[i] ? v[i] : "-", who_table[i].width,
				    who_table[i].right);
	}
	buf_putc(out, '\n');
}

void report_who_row(struct buf *out, enum report_format f, const struct report_person *p,
		    const char *tz)
{
	if (f == REPORT_CSV)
		who_csv(out, p);
	else if (f == REPORT_JSON)
		who_json(out, p);
	else
		who_table_row(out, p, tz);
}

/* ---- the campaign report: funnel, segments, days -------------------------------------- */

void report_counts_add(struct report_counts *c, const struct report_person *p)
{
	bool done = person_completed(p);

	c->affected++;
	c->emailed += p->emails > 0;
	c->delivered += p->delivered > 0;
	c->reminded += p->reminders > 0;
	c->completed += done;
	c->bounced += p->bounced_at != 0;
	c->suppressed += p->suppressed != NULL;
	c->pending += !done;
}

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, char out[11])
{
	time_t t = (time_t)(z * 86400);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, 11, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* The local calendar day of t in tz, as days since 1970-01-01. */
static int local_day(int64_t t, const char *tz, int64_t *day, struct err *e)
{
	char iso[SCHEDULE_FORMAT_SIZE];
	int y, m, d;

	if (schedule_format_local_iso(t, tz, iso, sizeof iso) != 0 ||
	    sscanf(iso, "%4d-%2d-%2d", &y, &m, &d) != 3)
		return err_set(e, ERR_DATA, "cannot express %lld in time zone %s", (long long)t,
			       tz);
	*day = days_from_civil(y, m, d);
	return 0;
}

/* The first instant of local day `day` in tz: its midnight, or 01:00 when the clocks jump
 * over midnight that day. */
static int day_start(int64_t day, const char *tz, int64_t *out, struct err *e)
{
	char date[11], text[20];
	struct err ignore = {0};

	civil_from_days(day, date);
	if (schedule_parse_local(date, tz, out, &ignore) == 0)
		return 0;
	snprintf(text, sizeof text, "%s 01:00", date);
	return schedule_parse_local(text, tz, out, e);
}

int report_days_init(struct report *r, struct err *e)
{
	int64_t first = 0, today = 0, last_chart = 0, cutoff_day = 0;
	int rc;

	r->days = NULL, r->n_days = 0, r->chart_days = 0;
	if ((rc = local_day(r->announce_at, r->timezone, &first, e)) != 0 ||
	    (rc = local_day(r->now, r->timezone, &today, e)) != 0 ||
	    (rc = local_day(r->cutoff_at, r->timezone, &cutoff_day, e)) != 0)
		return rc;
	last_chart = today > cutoff_day ? today : cutoff_day;
	r->chart_days = last_chart - first + 1;
	r->first_day = first;
	if ((rc = day_start(first, r->timezone, &r->chart_start, e)) != 0)
		return rc;
	if (r->now < r->announce_at || today < first)
		return 0;
	r->n_days = (size_t)(today - first + 1);
	r->days = xcalloc(r->n_days + 1, sizeof *r->days);
	for (size_t i = 0; i <= r->n_days && rc == 0; i++) {
		civil_from_days(first + (int64_t)i, r->days[i].date);
		rc = day_start(first + (int64_t)i, r->timezone, &r->days[i].start, e);
	}
	return rc;
}

size_t report_day_index(const struct report *r, int64_t t)
{
	size_t lo = 0, hi = r->n_days;

	/* days[n_days] is the sentinel: the start of the day after today. */
	if (r->n_days == 0 || t < r->days[0].start || t >= r->days[r->n_days].start)
		return r->n_days;
	if (t == 0)
		return r->n_days;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->days[mid].start <= t)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* What report_build keeps while the facts stream by. */
struct build {
	struct report *r;
	struct report_builder b;
	int64_t notified_before, completed_before; /* people done before the first day */
};

static void day_add(struct report *r, int64_t t, size_t field_offset, int64_t *before)
{
	size_t i;

	if (t == 0)
		return;
	i = report_day_index(r, t);
	if (i < r->n_days)
		*(int64_t *)((char *)&r->days[i] + field_offset) += 1;
	else if (before != NULL && r->n_days > 0 && t < r->days[0].start)
		(*before)++;
}

static int build_person(void *ud, const struct report_person *p)
{
	struct build *w = ud;
	struct report *r = w->r;

	report_counts_add(&r->total, p);
	for (size_t i = 0; i < r->n_segments; i++)
		if (r->segments[i].id == p->segment_id)
			report_counts_add(&r->segments[i].c, p);
	day_add(r, p->first_told_at, offsetof(struct report_day, notified), &w->notified_before);
	day_add(r, person_completed(p) ? p->completed_at : 0,
		offsetof(struct report_day, completed), &w->completed_before);
	day_add(r, p->bounced_at, offsetof(struct report_day, bounced), NULL);
	return 0;
}

static int build_fact(void *ud, const struct store_fact *f)
{
	struct build *w = ud;

	if (f->delivery_id != 0 && f->sent_at != 0)
		day_add(w->r, f->sent_at, offsetof(struct report_day, emails), NULL);
	return report_person_feed(&w->b, f);
}

static int build_reminders(void *ud, int64_t t)
{
	struct report *r = ud;
	size_t i = report_day_index(r, t);

	if (i < r->n_days)
		r->days[i].reminders++;
	return 0;
}

static int build_segment(void *ud, const struct store_segment_row *g)
{
	struct report *r = ud;
	struct report_segment *v;

	r->segments = xrealloc(r->segments, (r->n_segments + 1) * sizeof *r->segments);
	v = &r->segments[r->n_segments++];
	memset(v, 0, sizeof *v);
	v->id = g->id;
	v->name = xstrdup(g->name);
	v->target_version = g->target_version ? xstrdup(g->target_version) : NULL;
	v->send_at = g->send_at;
	return 0;
}

static void build_totals(struct build *w)
{
	int64_t notified = w->notified_before, completed = w->completed_before;

	for (size_t i = 0; i < w->r->n_days; i++) {
		notified += w->r->days[i].notified;
		completed += w->r->days[i].completed;
		w->r->days[i].notified_total = notified;
		w->r->days[i].completed_total = completed;
	}
}

static void report_init_from(struct report *r, const struct store_campaign *c, int64_t now)
{
	memset(r, 0, sizeof *r);
	r->campaign = xstrdup(c->name);
	r->title = xstrdup(c->title);
	r->state = xstrdup(c->state);
	r->timezone = xstrdup(c->timezone);
	r->announce_at = c->announce_at;
	r->reminder_start_at = c->reminder_start_at;
	r->cutoff_at = c->cutoff_at;
	r->now = now;
}

int report_build(struct report *r, struct store *s, const struct store_campaign *c, int64_t now,
		 struct err *e)
{
	struct build w;
	int rc;

	memset(&w, 0, sizeof w);
	w.r = r;
	report_init_from(r, c, now);
	if ((rc = report_days_init(r, e)) != 0)
		return rc;
	report_builder_init(&w.b, build_person, &w);
	if ((rc = store_report_read_begin(s, e)) != 0)
		goto out;
	if ((rc = store_report_segments(s, c->id, build_segment, r, e)) == 0 &&
	    (rc = store_report_facts(s, c->id, 0, build_fact, &w, e)) == 0 &&
	    (rc = report_person_flush(&w.b)) == 0)
		rc = store_report_reminder_times(s, c->id, build_reminders, r, e);
	store_report_read_end(s);
	if (rc == 0)
		build_totals(&w);
out:
	report_builder_free(&w.b);
	return rc;
}

void report_free(struct report *r)
{
	if (r == NULL)
		return;
	free(r->campaign), free(r->title), free(r->state), free(r->timezone);
	for (size_t i = 0; i < r->n_segments; i++)
		free(r->segments[i].name), free(r->segments[i].target_version);
	free(r->segments);
	free(r->days);
	memset(r, 0, sizeof *r);
}

/* ---- the report's writers -------------------------------------------------------------- */

/* The funnel's lines: label, JSON key, and where the count is. */
static const struct {
	const char *label, *key;
	size_t offset;
} funnel_lines[] = {
	{"affected", "affected", offsetof(struct report_counts, affected)},
	{"e-mailed", "emailed", offsetof(struct report_counts, emailed)},
	{"delivered (no bounce)", "delivered", offsetof(struct report_counts, delivered)},
	{"reminded at login", "reminded", offsetof(struct report_counts, reminded)},
	{"completed", "completed", offsetof(struct report_counts, completed)},
	{"bounced", "bounced", offsetof(struct report_counts, bounced)},
	{"suppressed", "suppressed", offsetof(struct report_counts, suppressed)},
	{"still pending", "pending", offsetof(struct report_counts, pending)},
};
#define FUNNEL_N (sizeof funnel_lines / sizeof funnel_lines[0])

static int64_t funnel_value(const struct report_counts *c, size_t i)
{
	return *(const int64_t *)((const char *)c + funnel_lines[i].offset);
}

static double percent(int64_t n, int64_t of)
{
	return of > 0 ? 100.0 * (double)n / (double)of : 0.0;
}

static const char *weekday(const char *date)
{
	static const char *const names[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
	int y = 0, m = 0, d = 0;
	int64_t z;

	sscanf(date, "%4d-%2d-%2d", &y, &m, &d);
	z = days_from_civil(y, m, d);
	return names[((z % 7) + 7) % 7];
}

static void table_heading(struct buf *out, const struct report *r)
{
	char a[SCHEDULE_FORMAT_SIZE], m[SCHEDULE_FORMAT_SIZE], k[SCHEDULE_FORMAT_SIZE];
	char n[SCHEDULE_FORMAT_SIZE];

	time_local_long(r->announce_at, r->timezone, a, sizeof a);
	time_local_long(r->reminder_start_at, r->timezone, m, sizeof m);
	time_local_long(r->cutoff_at, r->timezone, k, sizeof k);
	time_local_long(r->now, r->timezone, n, sizeof n);
	buf_printf(out, "campaign %s: %s (%s)\n", r->campaign, r->title, r->state);
	buf_printf(out, "time zone %s; announced %s; login reminders from %s; cutoff %s\n",
		   r->timezone, a, m, k);
	buf_printf(out, "as of %s\n\n", n);
}

static void table_funnel(struct buf *out, const struct report *r)
{
	buf_printf(out, "%-24s %10s %8s\n", "FUNNEL", "PEOPLE", "%");
	for (size_t i = 0; i < FUNNEL_N; i++) {
		int64_t v = funnel_value(&r->total, i);
		buf_printf(out, "%-24s %10lld %7.1f%%\n", funnel_lines[i].label, (long long)v,
			   percent(v, r->total.affected));
	}
	buf_putc(out, '\n');
}

static void table_counts_row(struct buf *out, const char *name, const struct report_counts *c)
{
	report_cell(out, name, 20, false);
	for (size_t i = 0; i < FUNNEL_N; i++)
		buf_printf(out, " %10lld", (long long)funnel_value(c, i));
	buf_putc(out, '\n');
}

static void table_segments(struct buf *out, const struct report *r)
{
	static const char *const titles[] = {"AFFECTED", "E-MAILED", "DELIVERED", "REMINDED",
					     "COMPLETED", "BOUNCED", "SUPPRESSED", "PENDING"};

	report_cell(out, "SEGMENT", 20, false);
	for (size_t i = 0; i < FUNNEL_N; i++)
		buf_printf(out, " %10s", titles[i]);
	buf_putc(out, '\n');
	for (size_t i = 0; i < r->n_segments; i++)
		table_counts_row(out, r->segments[i].name, &r->segments[i].c);
	table_counts_row(out, "all", &r->total);
	buf_putc(out, '\n');
}

static void table_days(struct buf *out, const struct report *r)
{
	buf_printf(out, "%-14s %8s %9s %8s %9s %8s %9s %10s\n", "DAY", "E-MAILS", "REMINDERS",
		   "NOTIFIED", "COMPLETED", "BOUNCED", "NOTIFIED%", "COMPLETED%");
	for (size_t i = 0; i < r->n_days; i++) {
		const struct report_day *d = &r->days[i];
		buf_printf(out, "%s %s %8lld %9lld %8lld %9lld %8lld %8.1f%% %9.1f%%\n", d->date,
			   weekday(d->date), (long long)d->emails, (long long)d->reminders,
			   (long long)d->notified, (long long)d->completed, (long long)d->bounced,
			   percent(d->notified_total, r->total.affected),
			   percent(d->completed_total, r->total.affected));
	}
	if (r->n_days == 0)
		buf_puts(out, "(the campaign has not been announced yet)\n");
}

void report_write_table(struct buf *out, const struct report *r)
{
	table_heading(out, r);
	table_funnel(out, r);
	table_segments(out, r);
	table_days(out, r);
}

static void json_time(struct buf *out, const char *key, int64_t t, bool comma)
{
	char v[24];

	report_time_utc(t, v, sizeof v);
	buf_printf(out, "%s\"%s\":", comma ? "," : "", key);
	report_json_string(out, t ? v : NULL);
}

static void json_counts(struct buf *out, const struct report_counts *c)
{
	buf_putc(out, '{');
	for (size_t i = 0; i < FUNNEL_N; i++)
		buf_printf(out, "%s\"%s\":%lld", i ? "," : "", funnel_lines[i].key,
			   (long long)funnel_value(c, i));
	buf_putc(out, '}');
}

static void json_day(struct buf *out, const struct report_day *d)
{
	buf_printf(out, "{\"date\":\"%s\",", d->date);
	json_time(out, "start", d->start, false);
	buf_printf(out, ",\"emails\":%lld,\"reminders\":%lld,\"notified\":%lld,\"completed\":%lld,"
		   "\"bounced\":%lld,\"notified_total\":%lld,\"completed_total\":%lld}",
		   (long long)d->emails, (long long)d->reminders, (long long)d->notified,
		   (long long)d->completed, (long long)d->bounced, (long long)d->notified_total,
		   (long long)d->completed_total);
}

void report_write_json(struct buf *out, const struct report *r)
{
	buf_puts(out, "{\"campaign\":");
	report_json_string(out, r->campaign);
	buf_puts(out, ",\"title\":");
	report_json_string(out, r->title);
	buf_puts(out, ",\"state\":");
	report_json_string(out, r->state);
	buf_puts(out, ",\"timezone\":");
	report_json_string(out, r->timezone);
	json_time(out, "announce", r->announce_at, true);
	json_time(out, "reminder_start", r->reminder_start_at, true);
	json_time(out, "cutoff", r->cutoff_at, true);
	json_time(out, "as_of", r->now, true);
	buf_puts(out, ",\"funnel\":");
	json_counts(out, &r->total);
	buf_puts(out, ",\"segments\":[");
	for (size_t i = 0; i < r->n_segments; i++) {
		buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
		report_json_string(out, r->segments[i].name);
		buf_puts(out, ",\"target_version\":");
		report_json_string(out, r->segments[i].target_version);
		json_time(out, "send_at", r->segments[i].send_at, true);
		buf_puts(out, ",\"funnel\":");
		json_counts(out, &r->segments[i].c);
		buf_putc(out, '}');
	}
	buf_puts(out, "],\"days\":[");
	for (size_t i = 0; i < r->n_days; i++) {
		if (i)
			buf_putc(out, ',');
		json_day(out, &r->days[i]);
	}
	buf_puts(out, "]}\n");
}

/* The chart's frame (SVG user units). */
enum { SVG_W = 960, SVG_H = 420, SVG_L = 64, SVG_R = 72, SVG_T = 48, SVG_B = 56 };
#define PLOT_W ((double)(SVG_W - SVG_L - SVG_R))
#define PLOT_H ((double)(SVG_H - SVG_T - SVG_B))

static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Sep 18" for a local day number. */
static void short_date(int64_t day, char out[8])
{
	char d[11];
	int y = 0, m = 1, dd = 1;

	civil_from_days(day, d);
	sscanf(d, "%4d-%2d-%2d", &y, &m, &dd);
	snprintf(out, 8, "%s %d", month_names[(m - 1) % 12], dd);
}

static double x_day(const struct report *r, double i)
{
	return SVG_L + i * PLOT_W / (double)(r->chart_days > 0 ? r->chart_days : 1);
}

/* x of instant t: days elapsed since the first local midnight (23- and 25-hour days are
 * drawn as 24: half an hour of difference at most). */
static double x_time(const struct report *r, int64_t t)
{
	return x_day(r, (double)(t - r->chart_start) / 86400.0);
}

static double y_percent(double pct)
{
	return SVG_T + PLOT_H * (1.0 - pct / 100.0);
}

/* The smallest 1, 2 or 5 times a power of ten at or above v (at least 1). */
static int64_t nice_ceiling(int64_t v)
{
	int64_t p = 1;

	while (p * 10 <= v)
		p *= 10;
	return v <= p ? p : v <= 2 * p ? 2 * p : v <= 5 * p ? 5 * p : 10 * p;
}

static void svg_axes(struct buf *out, const struct report *r, int64_t ymax)
{
	for (int k = 0; k <= 4; k++) {
		double y = y_percent(25.0 * k);
		buf_printf(out, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\""
			   " stroke=\"#ddd\"/>\n", SVG_L, y, SVG_W - SVG_R, y);
		buf_printf(out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\""
			   " fill=\"#555\">%d%%</text>\n", SVG_L - 6, y + 4, 25 * k);
		buf_printf(out, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" fill=\"#555\">%lld"
			   "</text>\n", SVG_W - SVG_R + 6, y + 4, (long long)(ymax * k / 4));
	}
	int64_t step = r->chart_days <= 14 ? 1 : r->chart_days <= 31 ? 3 : r->chart_days <= 70
		       ? 7 : r->chart_days <= 140 ? 14 : 30;
	for (int64_t i = 0; i < r->chart_days; i += step) {
		char d[8];
		short_date(r->first_day + i, d);
		buf_printf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#999\"/>"
			   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\""
			   " fill=\"#555\">%s</text>\n", x_day(r, (double)i), SVG_H - SVG_B,
			   x_day(r, (double)i), SVG_H - SVG_B + 5, x_day(r, (double)i),
			   SVG_H - SVG_B + 20, d);
	}
	buf_printf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\"/>\n", SVG_L,
		   SVG_H - SVG_B, SVG_W - SVG_R, SVG_H - SVG_B);
	buf_printf(out, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#555\" text-anchor="
		   "\"end\">people</text><text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#555\">"
		   "e-mails, reminders a day</text>\n", SVG_L - 6, SVG_T - 12, SVG_W - SVG_R - 100,
		   SVG_T - 12);
}

static void svg_bars(struct buf *out, const struct report *r, int64_t ymax)
{
	double band = PLOT_W / (double)(r->chart_days > 0 ? r->chart_days : 1);

	buf_puts(out, "<g id=\"series-emails\" class=\"series emails\" fill=\"#9dbbdb\">\n");
	for (size_t i = 0; i < r->n_days; i++) {
		double h = PLOT_H * (double)r->days[i].emails / (double)ymax;
		if (r->days[i].emails > 0)
			buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
				   "<title>%s: %lld e-mails</title></rect>\n",
				   x_day(r, (double)i) + band * 0.1, SVG_T + PLOT_H - h, band * 0.4,
				   h, r->days[i].date, (long long)r->days[i].emails);
	}
	buf_puts(out, "</g>\n<g id=\"series-reminders\" class=\"series reminders\""
		      " fill=\"#f0c38e\">\n");
	for (size_t i = 0; i < r->n_days; i++) {
		double h = PLOT_H * (double)r->days[i].reminders / (double)ymax;
		if (r->days[i].reminders > 0)
			buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
				   "<title>%s: %lld login reminders</title></rect>\n",
				   x_day(r, (double)i) + band * 0.5, SVG_T + PLOT_H - h, band * 0.4,
				   h, r->days[i].date, (long long)r->days[i].reminders);
	}
	buf_puts(out, "</g>\n");
}

/* A cumulative line (share of the affected people, at the end of each day). */
static void svg_line(struct buf *out, const struct report *r, const char *name,
		     const char *color, size_t offset)
{
	double band = PLOT_W / (double)(r->chart_days > 0 ? r->chart_days : 1), pct = 0;

	buf_printf(out, "<polyline id=\"series-%s\" class=\"series %s\" fill=\"none\" stroke=\"%s\""
		   " stroke-width=\"2.5\" points=\"", name, name, color);
	for (size_t i = 0; i < r->n_days; i++) {
		int64_t v = *(const int64_t *)((const char *)&r->days[i] + offset);
		pct = percent(v, r->total.affected);
		buf_printf(out, "%s%.1f,%.1f", i ? " " : "", x_day(r, (double)i) + band / 2,
			   y_percent(pct));
	}
	buf_puts(out, "\"/>\n");
	if (r->n_days > 0)
		buf_printf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/><text x=\"%.1f\""
			   " y=\"%.1f\" font-size=\"12\" fill=\"%s\">%.1f%%</text>\n",
			   x_day(r, (double)(r->n_days - 1)) + band / 2, y_percent(pct), color,
			   x_day(r, (double)(r->n_days - 1)) + band / 2 + 6, y_percent(pct) - 6,
			   color, pct);
}

static void svg_marker(struct buf *out, const struct report *r, const char *id, int64_t t,
		       const char *color, const char *label, int row)
{
	double x = x_time(r, t);

	if (x < SVG_L || x > SVG_W - SVG_R)
		return;
	buf_printf(out, "<g id=\"marker-%s\" class=\"marker\"><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\""
		   " y2=\"%d\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>"
		   "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"%s\" text-anchor=\"end\">",
		   id, x, SVG_T - 4 + 14 * row, x, SVG_H - SVG_B, color, x - 4,
		   SVG_T + 10 + 14 * row, color);
	report_html_text(out, label);
	buf_puts(out, "</text></g>\n");
}

static void svg_legend(struct buf *out)
{
	static const struct {
		const char *label, *color;
		bool bar;
	} items[] = {{"notified (people, cumulative)", "#1f6fb2", false},
		     {"completed (people, cumulative)", "#2e8b57", false},
		     {"e-mails sent a day", "#9dbbdb", true},
		     {"login reminders a day", "#f0c38e", true}};
	double x = SVG_L;

	for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
		if (items[i].bar)
			buf_printf(out, "<rect x=\"%.1f\" y=\"10\" width=\"14\" height=\"10\" fill="
				   "\"%s\"/>", x, items[i].color);
		else
			buf_printf(out, "<line x1=\"%.1f\" y1=\"15\" x2=\"%.1f\" y2=\"15\" stroke="
				   "\"%s\" stroke-width=\"2.5\"/>", x, x + 14, items[i].color);
		buf_printf(out, "<text x=\"%.1f\" y=\"19\" font-size=\"12\" fill=\"#333\">%s</text>\n",
			   x + 18, items[i].label);
		x += 24 + 6.6 * (double)strlen(items[i].label);
	}
}

void report_write_svg(struct buf *out, const struct report *r)
{
	int64_t peak = 1;
	char label[64], d[8];
	int64_t day;
	struct err ignore = {0};

	for (size_t i = 0; i < r->n_days; i++)
		peak = max64(peak, max64(r->days[i].emails, r->days[i].reminders));
	peak = nice_ceiling(peak);
	buf_printf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"chart\" viewBox=\"0 0 %d %d\""
		   " role=\"img\" aria-labelledby=\"chart-title\" font-family=\"sans-serif\">\n"
		   "<title id=\"chart-title\">", SVG_W, SVG_H);
	report_html_text(out, r->campaign);
	buf_puts(out, ": people notified and completed, e-mails and login reminders a day"
		      "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n");
	svg_legend(out);
	svg_axes(out, r, peak);
	svg_bars(out, r, peak);
	svg_line(out, r, "notified", "#1f6fb2", offsetof(struct report_day, notified_total));
	svg_line(out, r, "completed", "#2e8b57", offsetof(struct report_day, completed_total));
	if (local_day(r->reminder_start_at, r->timezone, &day, &ignore) != 0)
		day = r->first_day;
	short_date(day, d);
	snprintf(label, sizeof label, "reminders from %s", d);
	svg_marker(out, r, "reminder-start", r->reminder_start_at, "#c76b12", label, 0);
	if (local_day(r->cutoff_at, r->timezone, &day, &ignore) != 0)
		day = r->first_day;
	short_date(day, d);
	snprintf(label, sizeof label, "cutoff %s", d);
	svg_marker(out, r, "cutoff", r->cutoff_at, "#c0392b", label, 1);
	if (r->now < r->cutoff_at)
		svg_marker(out, r, "today", r->now, "#777", "today", 2);
	buf_puts(out, "</svg>\n");
}

static void html_counts_row(struct buf *out, const char *name, const struct report_counts *c)
{
	buf_puts(out, "<tr><td>");
	report_html_text(out, name);
	buf_puts(out, "</td>");
	for (size_t i = 0; i < FUNNEL_N; i++)
		buf_printf(out, "<td>%lld</td>", (long long)funnel_value(c, i));
	buf_puts(out, "</tr>\n");
}

static void html_tables(struct buf *out, const struct report *r)
{
	buf_puts(out, "<h2>Funnel</h2>\n<table id=\"funnel\"><thead><tr><th></th><th>people</th>"
		      "<th>%</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < FUNNEL_N; i++) {
		int64_t v = funnel_value(&r->total, i);
		buf_printf(out, "<tr><td>%s</td><td>%lld</td><td>%.1f%%</td></tr>\n",
			   funnel_lines[i].label, (long long)v, percent(v, r->total.affected));
	}
	buf_puts(out, "</tbody></table>\n<h2>Segments</h2>\n<table id=\"segments\"><thead><tr>"
		      "<th>segment</th>");
	for (size_t i = 0; i < FUNNEL_N; i++)
		buf_printf(out, "<th>%s</th>", funnel_lines[i].key);
	buf_puts(out, "</tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n_segments; i++)
		html_counts_row(out, r->segments[i].name, &r->segments[i].c);
	html_counts_row(out, "all", &r->total);
	buf_puts(out, "</tbody></table>\n<h2>Day by day</h2>\n<table id=\"days\"><thead><tr>"
		      "<th>day</th><th>e-mails</th><th>reminders</th><th>notified</th>"
		      "<th>completed</th><th>bounced</th><th>notified, total</th>"
		      "<th>completed, total</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n_days; i++) {
		const struct report_day *d = &r->days[i];
		buf_printf(out, "<tr><td>%s %s</td><td>%lld</td><td>%lld</td><td>%lld</td>"
			   "<td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td></tr>\n", d->date,
			   weekday(d->date), (long long)d->emails, (long long)d->reminders,
			   (long long)d->notified, (long long)d->completed, (long long)d->bounced,
			   (long long)d->notified_total, (long long)d->completed_total);
	}
	buf_puts(out, "</tbody></table>\n");
}

static const char html_style[] =
	"body{font-family:system-ui,-apple-system,\"Segoe UI\",Helvetica,Arial,sans-serif;"
	"color:#222;max-width:1000px;margin:2em auto;padding:0 1em}"
	"h1{font-size:1.6em;margin-bottom:.2em}.meta{color:#555;margin-top:0}"
	"table{border-collapse:collapse;margin:.5em 0 1.5em}"
	"th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}"
	"th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #999}"
	"figure{margin:1em 0}svg{width:100%;height:auto}figcaption{color:#555;font-size:.9em}";

void report_write_html(struct buf *out, const struct report *r)
{
	char a[SCHEDULE_FORMAT_SIZE], m[SCHEDULE_FORMAT_SIZE], k[SCHEDULE_FORMAT_SIZE];
	char n[SCHEDULE_FORMAT_SIZE];

	time_local_long(r->announce_at, r->timezone, a, sizeof a);
	time_local_long(r->reminder_start_at, r->timezone, m, sizeof m);
	time_local_long(r->cutoff_at, r->timezone, k, sizeof k);
	time_local_long(r->now, r->timezone, n, sizeof n);
	buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		      "<title>cutoff report: ");
	report_html_text(out, r->campaign);
	buf_printf(out, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", html_style);
	report_html_text(out, r->title);
	buf_puts(out, "</h1>\n<p class=\"meta\">campaign <b>");
	report_html_text(out, r->campaign);
	buf_puts(out, "</b> (");
	report_html_text(out, r->state);
	buf_puts(out, ") &middot; time zone ");
	report_html_text(out, r->timezone);
	buf_printf(out, " &middot; announced %s &middot; login reminders from %s &middot; cutoff"
		   " %s &middot; as of %s</p>\n<figure>\n", a, m, k, n);
	report_write_svg(out, r);
	buf_printf(out, "<figcaption>Share of the %lld affected people notified (an e-mail"
		   " delivered or a login reminder shown) and completed, day by day in %s; bars:"
		   " e-mails accepted by the relay and login reminders shown each day.</figcaption>"
		   "\n</figure>\n", (long long)r->total.affected, r->timezone);
	html_tables(out, r);
	buf_puts(out, "</body>\n</html>\n");
}

/* ---- one person's history: cutoff user ------------------------------------------------- */

static char *dup_or_null(const char *v)
{
	return v ? xstrdup(v) : NULL;
}

static int user_member(void *ud, const struct store_member *sm)
{
	struct report_user *u = ud;
	struct report_membership *m;

	u->m = xrealloc(u->m, (u->n + 1) * sizeof *u->m);
	m = &u->m[u->n++];
	memset(m, 0, sizeof *m);
	m->recipient_id = sm->recipient_id;
	m->campaign = xstrdup(sm->campaign), m->title = xstrdup(sm->title);
	m->campaign_state = xstrdup(sm->campaign_state), m->campaign_tz = xstrdup(sm->campaign_tz);
	m->user_id = xstrdup(sm->user_id), m->email = dup_or_null(sm->email);
	m->name = dup_or_null(sm->name), m->locale = dup_or_null(sm->locale);
	m->timezone = dup_or_null(sm->timezone), m->client = dup_or_null(sm->client);
	m->version = dup_or_null(sm->version), m->platform = dup_or_null(sm->platform);
	m->os = dup_or_null(sm->os), m->attrs = dup_or_null(sm->attrs);
	m->segment = dup_or_null(sm->segment), m->state = xstrdup(sm->state);
	m->created_at = sm->created_at, m->completed_at = sm->completed_at;
	return 0;
}

static int user_entry(void *ud, const struct store_history_item *h)
{
	struct report_membership *m = ud;
	struct report_entry *x;

	m->history = xrealloc(m->history, (m->n_history + 1) * sizeof *m->history);
	x = &m->history[m->n_history++];
	x->at = h->at, x->code = h->code, x->ref = h->ref;
	x->what = xstrdup(h->what), x->kind = dup_or_null(h->kind);
	x->email_kind = dup_or_null(h->email_kind), x->text = dup_or_null(h->text);
	x->note = dup_or_null(h->note), x->message_id = dup_or_null(h->message_id);
	x->relay = dup_or_null(h->relay), x->detail = dup_or_null(h->detail);
	return 0;
}

static int user_suppression(void *ud, const struct store_suppression_row *r)
{
	struct report_suppression *p = ud;

	p->reason = xstrdup(r->reason);
	p->campaign = dup_or_null(r->campaign);
	p->detail = dup_or_null(r->detail);
	p->at = r->created_at;
	return 0;
}

/* Everything after the list of memberships: histories and suppressions. */
static int user_details(struct report_user *u, struct store *s, struct err *e)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < u->n; i++) {
		struct report_membership *m = &u->m[i];
		rc = store_report_history(s, m->recipient_id, m->user_id, user_entry, m, e);
		if (rc == 0 && m->email != NULL)
			rc = store_report_suppression(s, m->email, user_suppression,
						      &m->suppression, e);
	}
	if (rc >= 0 && u->address != NULL)
		rc = store_report_suppression(s, u->address, user_suppression, &u->suppression, e);
	return rc < 0 ? rc : 0;
}

int report_user_load(struct report_user *u, struct store *s, const char *query, struct err *e)
{
	struct err ignore = {0};
	int rc;

	memset(u, 0, sizeof *u);
	u->query = xstrdup(query);
	if (strchr(query, '@') != NULL && address_normalize(query, &u->address, &ignore) != 0)
		u->address = NULL;
	if ((rc = store_report_read_begin(s, e)) != 0)
		return rc;
	if ((rc = store_report_members(s, query, u->address, user_member, u, e)) == 0)
		rc = user_details(u, s, e);
	store_report_read_end(s);
	if (rc == 0 && u->n == 0 && u->suppression.reason == NULL)
		rc = err_set(e, ERR_NOTFOUND, "no one with the user id or address '%s' in any"
			     " campaign (see: cutoff who CAMPAIGN)", query);
	return rc;
}

static void suppression_free(struct report_suppression *p)
{
	free(p->reason), free(p->campaign), free(p->detail);
}

static void membership_free(struct report_membership *m)
{
	char *v[] = {m->campaign, m->title,   m->campaign_state, m->campaign_tz, m->user_id,
		     m->email,    m->name,    m->locale,         m->timezone,    m->client,
		     m->version,  m->platform, m->os,            m->attrs,       m->segment,
		     m->state};

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		free(v[i]);
	for (size_t i = 0; i < m->n_history; i++) {
		struct report_entry *x = &m->history[i];
		free(x->what), free(x->kind), free(x->email_kind), free(x->text), free(x->note);
		free(x->message_id), free(x->relay), free(x->detail);
	}
	free(m->history);
	suppression_free(&m->suppression);
}

void report_user_free(struct report_user *u)
{
	if (u == NULL)
		return;
	for (size_t i = 0; i < u->n; i++)
		membership_free(&u->m[i]);
	free(u->m);
	free(u->query), free(u->address);
	suppression_free(&u->suppression);
	memset(u, 0, sizeof *u);
}

/* "initial e-mail", "reminder e-mail", "final notice". */
static const char *email_name(const char *kind)
{
	if (kind == NULL)
		return "e-mail";
	if (strcmp(kind, "final") == 0)
		return "final notice";
	if (strcmp(kind, "reminder") == 0)
		return "reminder e-mail";
	return strcmp(kind, "initial") == 0 ? "initial e-mail" : kind;
}

/* A JSON object as "key value, key value" (sep " ") or "key=value, ..." (sep "="), strings
 * unquoted, in its own order; text that is not an object as it is. */
static void detail_text(struct buf *out, const char *json, const char *sep)
{
	json_t *o = json ? json_loads(json, 0, NULL) : NULL;
	const char *key;
	json_t *v;
	bool first = true;

	if (!json_is_object(o)) {
		if (json)
			buf_puts(out, json);
		json_decref(o);
		return;
	}
	json_object_foreach(o, key, v) {
		char *t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		buf_printf(out, "%s%s%s%s", first ? "" : ", ", key, sep,
			   t ? t : json_string_value(v));
		free(t);
		first = false;
	}
	json_decref(o);
}

static const char *attempt_label(const char *outcome)
{
	if (outcome == NULL)
		return "attempt";
	if (strcmp(outcome, "sent") == 0)
		return "e-mail sent";
	return strcmp(outcome, "relay-down") == 0 ? "relay down" : outcome;
}

static void entry_attempt(struct buf *out, const struct report_entry *x)
{
	buf_printf(out, "%s", email_name(x->email_kind));
	if (x->relay)
		buf_printf(out, " via %s", x->relay);
	if (x->code || x->text)
		buf_puts(out, ":");
	if (x->code)
		buf_printf(out, " %d", x->code);
	if (x->text)
		buf_printf(out, " %s", x->text);
	if (x->note)
		buf_printf(out, " (%s)", x->note);
	if (x->message_id)
		buf_printf(out, "; Message-ID <%s>", x->message_id);
}

/* The label and the text of one history entry. */
static const char *entry_text(struct buf *out, const struct report_entry *x)
{
	const char *w = x->what;

	if (strcmp(w, "imported") == 0 || strcmp(w, "reimported") == 0) {
		buf_printf(out, x->kind ? "segment %s" : "not affected", x->kind);
		if (x->ref)
			buf_printf(out, ", import %lld (%s)", (long long)x->ref, x->text ? x->text
				   : "");
		return strcmp(w, "imported") == 0 ? "imported" : "updated";
	}
	if (strcmp(w, "queued") == 0) {
		buf_puts(out, email_name(x->kind));
		return "queued";
	}
	if (strcmp(w, "attempt") == 0) {
		entry_attempt(out, x);
		return attempt_label(x->kind);
	}
	if (strcmp(w, "settled") == 0) {
		buf_printf(out, "%s%s%s", email_name(x->email_kind), x->text ? ": " : "",
			   x->text ? x->text : "");
		return x->kind ? x->kind : "settled";
	}
	if (strcmp(w, "login") == 0) {
		buf_printf(out, "client %s%s%s: %s", x->text ? x->text : "?", x->note ? " on " : "",
			   x->note ? x->note : "", x->kind ? x->kind : "");
		return "login";
	}
	if (strcmp(w, "reminder") == 0) {
		buf_printf(out, "period %lld%s%s", (long long)x->ref + 1, x->text ? ", client " : "",
			   x->text ? x->text : "");
		return "reminder shown";
	}
	if (strcmp(w, "event") == 0) {
		detail_text(out, x->detail, " ");
		return x->kind ? x->kind : "event";
	}
	return w;
}

static void text_suppression(struct buf *out, const struct report_suppression *p,
			     const char *tz)
{
	char t[SCHEDULE_FORMAT_SIZE];

	if (p->reason == NULL) {
		buf_puts(out, "no\n");
		return;
	}
	time_local_long(p->at, tz, t, sizeof t);
	buf_printf(out, "%s since %s", p->reason, t);
	if (p->campaign)
		buf_printf(out, " (campaign %s)", p->campaign);
	buf_putc(out, '\n');
}

/* Who the person is, as far as the campaign knows (nothing once forgotten). */
static void text_identity(struct buf *out, const struct report_membership *m)
{
	if (m->client || m->version || m->platform || m->os)
		buf_printf(out, "  %-12s %s %s%s%s%s%s\n", "client", m->client ? m->client : "?",
			   m->version ? m->version : "?", m->platform ? ", " : "",
			   m->platform ? m->platform : "", m->os ? " " : "", m->os ? m->os : "");
	if (m->locale || m->timezone)
		buf_printf(out, "  %-12s %s%s%s\n", "locale", m->locale ? m->locale : "",
			   m->locale && m->timezone ? ", " : "", m->timezone ? m->timezone : "");
	if (m->attrs) {
		buf_printf(out, "  %-12s ", "attributes");
		detail_text(out, m->attrs, "=");
		buf_putc(out, '\n');
	}
}

static void text_history(struct buf *out, const struct report_membership *m)
{
	char t[SCHEDULE_FORMAT_SIZE];
	struct buf line;

	buf_printf(out, "  history (%s):\n", m->campaign_tz);
	buf_init(&line);
	for (size_t i = 0; i < m->n_history; i++) {
		const char *label;
		buf_reset(&line);
		label = entry_text(&line, &m->history[i]);
		time_local_long(m->history[i].at, m->campaign_tz, t, sizeof t);
		buf_printf(out, "    %s  %-15s %s\n", t, label, line.data ? line.data : "");
	}
	buf_free(&line);
}

static void text_membership(struct buf *out, const struct report_membership *m)
{
	bool forgotten = strcmp(m->state, "forgotten") == 0;
	char t[SCHEDULE_FORMAT_SIZE];

	buf_printf(out, "%s: %s", m->campaign, m->user_id);
	if (forgotten)
		buf_puts(out, " (personal data erased)");
	if (m->name)
		buf_printf(out, ", %s", m->name);
	if (m->email)
		buf_printf(out, " <%s>", m->email);
	buf_printf(out, "\n  %-12s %s (%s)\n", "campaign", m->title, m->campaign_state);
	buf_printf(out, "  %-12s %s, %s", "segment", m->segment ? m->segment : "(not affected)",
		   m->state);
	if (m->completed_at) {
		time_local_long(m->completed_at, m->campaign_tz, t, sizeof t);
		buf_printf(out, " %s", t);
	}
	buf_putc(out, '\n');
	text_identity(out, m);
	buf_printf(out, "  %-12s ", "suppressed");
	if (forgotten)
		buf_puts(out, "forgotten (the address is kept as a hash only)\n");
	else
		text_suppression(out, &m->suppression, m->campaign_tz);
	text_history(out, m);
}

void report_user_write_text(struct buf *out, const struct report_user *u)
{
	for (size_t i = 0; i < u->n; i++) {
		if (i)
			buf_putc(out, '\n');
		text_membership(out, &u->m[i]);
	}
	if (u->address != NULL && u->suppression.reason != NULL) {
		if (u->n)
			buf_putc(out, '\n');
		buf_printf(out, "address %s: suppressed, ", u->address);
		text_suppression(out, &u->suppression, "UTC");
	}
}

/* "key":value pairs of the JSON writers. */
static void jkey(struct buf *out, const char *key)
{
	buf_printf(out, ",\"%s\":", key);
}

static void jstr(struct buf *out, const char *key, const char *v)
{
	jkey(out, key);
	report_json_string(out, v);
}

static void jtime(struct buf *out, const char *key, int64_t t)
{
	json_time(out, key, t, true);
}

static void jtime_value(struct buf *out, int64_t t)
{
	char v[24];

	report_time_utc(t, v, sizeof v);
	report_json_string(out, t ? v : NULL);
}

/* An embedded JSON object from the database, or its text as a string if it is not one. */
static void jraw(struct buf *out, const char *key, const char *json)
{
	json_t *o = json ? json_loads(json, 0, NULL) : NULL;
	char *t = json_is_object(o) ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	jkey(out, key);
	if (t != NULL)
		buf_puts(out, t);
	else
		report_json_string(out, json);
	free(t);
	json_decref(o);
}

static void json_entry(struct buf *out, const struct report_entry *x)
{
	const char *w = x->what;

	buf_puts(out, "{\"at\":");
	jtime_value(out, x->at);
	jstr(out, "what", w);
	if (strcmp(w, "imported") == 0 || strcmp(w, "reimported") == 0) {
		jstr(out, "segment", x->kind);
		jkey(out, "import");
		buf_printf(out, x->ref ? "%lld" : "null", (long long)x->ref);
		jstr(out, "file", x->ref ? x->text : NULL);
	} else if (strcmp(w, "queued") == 0) {
		jstr(out, "email", x->kind);
	} else if (strcmp(w, "attempt") == 0) {
		jstr(out, "outcome", x->kind), jstr(out, "email", x->email_kind);
		jkey(out, "code"), buf_printf(out, "%d", x->code);
		jstr(out, "reply", x->text), jstr(out, "error", x->note);
		jstr(out, "message_id", x->message_id), jstr(out, "relay", x->relay);
	} else if (strcmp(w, "settled") == 0) {
		jstr(out, "state", x->kind), jstr(out, "email", x->email_kind);
		jstr(out, "reason", x->text);
	} else if (strcmp(w, "event") == 0) {
		jstr(out, "kind", x->kind), jraw(out, "detail", x->detail);
	} else if (strcmp(w, "login") == 0) {
		jstr(out, "outcome", x->kind), jstr(out, "client_version", x->text);
		jstr(out, "platform", x->note);
	} else if (strcmp(w, "reminder") == 0) {
		jkey(out, "period"), buf_printf(out, "%lld", (long long)x->ref);
		jstr(out, "client_version", x->text);
	}
	buf_putc(out, '}');
}

static void json_suppression(struct buf *out, const char *key, const struct report_suppression *p)
{
	jkey(out, key);
	if (p->reason == NULL) {
		buf_puts(out, "null");
		return;
	}
	buf_puts(out, "{\"reason\":");
	report_json_string(out, p->reason);
	jtime(out, "since", p->at);
	jstr(out, "campaign", p->campaign);
	if (p->detail)
		jraw(out, "detail", p->detail);
	else
		jkey(out, "detail"), buf_puts(out, "null");
	buf_putc(out, '}');
}

static void json_membership(struct buf *out, const struct report_membership *m)
{
	buf_puts(out, "{\"campaign\":");
	report_json_string(out, m->campaign);
	jstr(out, "title", m->title), jstr(out, "campaign_state", m->campaign_state);
	jstr(out, "timezone", m->campaign_tz);
	jkey(out, "recipient_id"), buf_printf(out, "%lld", (long long)m->recipient_id);
	jstr(out, "user_id", m->user_id), jstr(out, "email", m->email), jstr(out, "name", m->name);
	jstr(out, "locale", m->locale), jstr(out, "user_timezone", m->timezone);
	jstr(out, "client", m->client), jstr(out, "version", m->version);
	jstr(out, "platform", m->platform), jstr(out, "os", m->os);
	if (m->attrs)
		jraw(out, "attributes", m->attrs);
	else
		jkey(out, "attributes"), buf_puts(out, "null");
	jstr(out, "segment", m->segment), jstr(out, "state", m->state);
	jtime(out, "imported", m->created_at), jtime(out, "completed", m->completed_at);
	json_suppression(out, "suppression", &m->suppression);
	buf_puts(out, ",\"history\":[");
	for (size_t i = 0; i < m->n_history; i++) {
		if (i)
			buf_putc(out, ',');
		json_entry(out, &m->history[i]);
	}
	buf_puts(out, "]}");
}

void report_user_write_json(struct buf *out, const struct report_user *u)
{
	buf_puts(out, "{\"query\":");
	report_json_string(out, u->query);
	jstr(out, "address", u->address);
	json_suppression(out, "address_suppression", &u->suppression);
	buf_puts(out, ",\"people\":[");
	for (size_t i = 0; i < u->n; i++) {
		if (i)
			buf_putc(out, ',');
		json_membership(out, &u->m[i]);
	}
	buf_puts(out, "]}\n");
}

/* ---- forget ------------------------------------------------------------------------------ */

char *report_redact(const char *text, const char *address)
{
	size_t n = address ? strlen(address) : 0;
	const char *p, *from = text;
	struct buf b;

	if (text == NULL || n == 0 || (p = strcasestr(text, address)) == NULL)
		return (char *)text;
	buf_init(&b);
	for (; p != NULL; p = strcasestr(from, address)) {
		buf_append(&b, from, (size_t)(p - from));
		buf_puts(&b, "[forgotten]");
		from = p + n;
	}
	buf_puts(&b, from);
	return buf_steal(&b);
}

/* Keys of event details that hold no personal data (db/003's bounces, db/004's completions,
 * the sender's bounces, forget's own). */
static const char *const anonymous_keys[] = {
	"source",  "kind", "delivery", "status", "code", "reason", "class", "attributed_by",
	"feedback_type", "sha256", "message", "index", "by", "file", "row", "client_version",
	"platform", "outcome", "period", "previous_reason", "erased", NULL};

char *report_scrub_detail(const char *json, const char *address)
{
	json_t *in = json ? json_loads(json, 0, NULL) : NULL, *out = json_object(), *v;
	const char *key;
	char *text = NULL;

	if (json_is_object(in)) {
		json_object_foreach(in, key, v) {
			if (canonical(key, anonymous_keys, NULL) == NULL || json_is_object(v) ||
			    json_is_array(v))
				continue;
			if (json_is_string(v)) {
				const char *s = json_string_value(v);
				char *r = report_redact(s, address);
				json_object_set_new(out, key, json_string(r));
				if (r != s)
					free(r);
			} else {
				json_object_set(out, key, v);
			}
		}
	}
	if (json_object_size(out) > 0)
		text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(in);
	json_decref(out);
	return text;
}

/* The scrubbers forget applies to one recipient's texts (ud: its address, or NULL). */
static char *scrub_text(void *ud, const char *text)
{
	return report_redact(text, ud);
}

static char *scrub_detail(void *ud, const char *json)
{
	char *v = report_scrub_detail(json, ud);

	if (v != NULL && strcmp(v, json) == 0) {
		free(v);
		return (char *)json;
	}
	return v;
}

/* Erases one recipient; an already forgotten one is left alone. */
static int forget_one(struct store *s, const struct store_forget_target *t, int64_t now,
		      struct report_forget_result *res, struct err *e)
{
	struct store_scrubber sc = {scrub_text, scrub_detail, t->email};
	int64_t cancelled = 0;
	int rc;

	if (t->email == NULL && str_starts_with(t->user_id, "forgotten-"))
		return 0;
	if ((rc = store_report_forget_scrub(s, t->recipient_id, &sc, &res->scrubbed, e)) != 0 ||
	    (rc = store_report_forget_recipient(s, t->recipient_id, t->user_id, now, &cancelled,
						e)) != 0 ||
	    (rc = store_event_add(s, t->campaign_id, t->recipient_id, now, "forgotten",
				  "{\"by\":\"cutoff forget\",\"erased\":\"user_id, email, name,"
				  " locale, timezone, attributes, addresses in replies and"
				  " events\"}", e)) != 0)
		return rc;
	res->recipients++;
	res->cancelled += cancelled;
	return 0;
}

/* Keeps address suppressed by its hash alone. */
static int forget_address(struct store *s, const char *address, int64_t campaign_id, int64_t now,
			  struct report_forget_result *res, struct err *e)
{
	int rc;

	if ((rc = store_suppress(s, address, "forgotten", campaign_id, NULL, now, e)) != 0 ||
	    (rc = store_report_forget_suppression(s, address, e)) != 0)
		return rc;
	res->addresses++;
	return 0;
}

/* Whether address is among the first i targets' addresses (each suppressed once). */
static bool seen_address(const struct store_forget_target *t, size_t i, const char *address)
{
	for (size_t k = 0; k < i; k++)
		if (t[k].email && strcmp(t[k].email, address) == 0)
			return true;
	return false;
}

static int forget_all(struct store *s, const struct store_forget_target *t, size_t n,
		      const char *address, int64_t now, struct report_forget_result *res,
		      struct err *e)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = forget_one(s, &t[i], now, res, e);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (t[i].email && !seen_address(t, i, t[i].email))
			rc = forget_address(s, t[i].email, t[i].campaign_id, now, res, e);
	if (rc == 0 && address != NULL && !seen_address(t, n, address))
		rc = forget_address(s, address, n ? t[0].campaign_id : 0, now, res, e);
	return rc;
}

int report_forget(struct store *s, const char *query, int64_t now,
		  struct report_forget_result *res, struct err *e)
{
	struct store_forget_target *t = NULL;
	struct err ignore = {0};
	char *address = NULL;
	size_t n = 0;
	int rc;

	memset(res, 0, sizeof *res);
	if (strchr(query, '@') != NULL && address_normalize(query, &address, &ignore) != 0)
		address = NULL;
	if ((rc = store_begin(s, e)) != 0)
		goto out;
	if ((rc = store_report_forget_find(s, query, address, &t, &n, e)) != 0)
		goto fail;
	if (n == 0 && address == NULL) {
		rc = err_set(e, ERR_NOTFOUND, "no one with the user id '%s' in any campaign (give"
			     " an address to suppress one that no campaign has)", query);
		goto fail;
	}
	if ((rc = forget_all(s, t, n, address, now, res, e)) != 0 ||
	    (rc = store_commit(s, e)) != 0)
		goto fail;
	goto out;
fail:
	store_rollback(s);
out:
	store_report_forget_targets_free(t, n);
	free(address);
	return rc;
}
