/* report.h — what cutoff user, who, report and forget compute from the ledger and the event log
 * (each person's state, the funnel, the per-day series, one person's history, erasure), and
 * how it is written: an aligned table, CSV (RFC 4180), JSON lines, JSON (RFC 8259) and one
 * self-contained HTML page with an inline SVG chart. The writers are pure: data in, text out. */
#ifndef CUTOFF_REPORT_H
#define CUTOFF_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "store.h"
#include "store_report.h"
#include "util.h"

/* ---- one affected person of a campaign ---- */

/* The states `cutoff who --state` selects; a person is in several at once. */
enum report_state {
	REPORT_ANY,          /* every affected person */
	REPORT_NOTIFIED,     /* told: an e-mail accepted and not bounced, or a login reminder */
	REPORT_NOT_NOTIFIED, /* not (yet) told */
	REPORT_BOUNCED,      /* an e-mail bounced, or failed for good at the relay (5xx) */
	REPORT_DEFERRED,     /* an e-mail is deferred now, to be retried */
	REPORT_REMINDED,     /* shown a login reminder */
	REPORT_COMPLETED,    /* upgraded (or recorded as done) */
	REPORT_PENDING,      /* not completed */
	REPORT_SUPPRESSED    /* not to be mailed: suppressed, unsubscribed or forgotten */
};

/* Parses a --state name; false if unknown. */
bool report_state_parse(const char *name, enum report_state *out);

/*
 * One affected person, summed up from their facts (store_fact). Strings are valid during the
 * callback that hands the person out; the delivery strings are static.
 */
struct report_person {
	int64_t recipient_id;
	const char *user_id, *email, *segment, *state; /* email NULL once forgotten */
	int64_t segment_id, created_at;
	int64_t emails;                  /* e-mails accepted by a relay (bounced ones included) */
	int64_t first_email_at, last_email_at;
	int64_t delivered;               /* e-mails accepted and not bounced */
	int64_t first_told_at, last_told_at; /* a delivered e-mail or a login reminder */
	const char *last_kind;           /* the latest delivery: initial, reminder, final */
	const char *last_result;         /* its state: queued, sent, deferred, bounced, ... */
	int64_t bounced_at;              /* the latest bounce or 5xx failure, 0: none */
	const char *bounce;              /* its class: hard, soft */
	int64_t deferred_at;             /* a delivery deferred now: when it last was */
	int64_t reminders, first_reminder_at, last_reminder_at;
	int64_t completed_at;            /* 0: not completed */
	const char *suppressed;          /* hard-bounce, complaint, unsubscribe, forgotten, ... */
	int64_t suppressed_at;
	int64_t last_activity;           /* the latest of all the times above */
};

/*
 * Builds people from the facts streamed in recipient order: report_person_feed each fact;
 * it calls fn with the previous person when a new one starts; report_person_flush hands out
 * the last. fn returning non-zero is returned (and the walk should stop).
 */
struct report_builder {
	struct report_person p;
	bool have;
	int64_t last_delivery_id; /* the person's latest delivery so far */
	struct buf strings;       /* the person's strings, NUL-separated */
	int (*fn)(void *ud, const struct report_person *p);
	void *ud;
};
void report_builder_init(struct report_builder *b,
			 int (*fn)(void *ud, const struct report_person *p), void *ud);
int report_person_feed(struct report_builder *b, const struct store_fact *f);
int report_person_flush(struct report_builder *b);
void report_builder_free(struct report_builder *b);

/* Whether p is in state s. */
bool report_person_in(const struct report_person *p, enum report_state s);

/*
 * The time `--since` compares for state s: the last notification (notified), the last bounce
 * (bounced), the last deferral (deferred), the last reminder (reminded), completion
 * (completed), suppression (suppressed); the last activity otherwise.
 */
int64_t report_person_when(const struct report_person *p, enum report_state s);

/* Streams the affected people of a campaign (segment_id 0: all) to fn, in recipient order. */
int report_people(struct store *s, int64_t campaign_id, int64_t segment_id,
		  int (*fn)(void *ud, const struct report_person *p), void *ud, struct err *e);

/* ---- who: one row per person ---- */

enum report_format { REPORT_TABLE, REPORT_CSV, REPORT_JSON, REPORT_HTML, REPORT_TEXT };

/*
 * Writes the header of who's rows (table: column titles; CSV: the header row; JSON lines:
 * nothing) and one row. Times are UTC (RFC 3339) in CSV and JSON, and the campaign's local
 * time ("2003-08-18 09:00") in the table, whose columns have fixed widths (longer values are
 * cut with "~") so that rows align as they stream.
 */
void report_who_header(struct buf *out, enum report_format f);
void report_who_row(struct buf *out, enum report_format f, const struct report_person *p,
		    const char *tz);

/* ---- the campaign report ---- */

/* The funnel of a set of people. */
struct report_counts {
	int64_t affected, emailed, delivered, reminded, completed;
	int64_t bounced, suppressed, pending;
};

/* Adds p to c. */
void report_counts_add(struct report_counts *c, const struct report_person *p);

struct report_segment {
	int64_t id;
	char *name, *target_version; /* target NULL: discontinued */
	int64_t send_at;
	struct report_counts c;
};

/* One local calendar day of the campaign's time zone. */
struct report_day {
	int64_t start;   /* UTC instant of its local midnight */
	char date[11];   /* YYYY-MM-DD */
	int64_t emails;  /* e-mails accepted by a relay that day */
	int64_t reminders, notified, completed, bounced; /* people, first time that day */
	int64_t notified_total, completed_total;         /* people, up to the end of that day */
};

struct report {
	char *campaign, *title, *state, *timezone;
	int64_t announce_at, reminder_start_at, cutoff_at, now;
	struct report_counts total;
	struct report_segment *segments;
	size_t n_segments;
	struct report_day *days; /* from the announcement's day to today's (none before it) */
	size_t n_days;
	int64_t first_day;       /* the announcement's local day, in days since 1970-01-01 */
	int64_t chart_start;     /* the UTC start of that day */
	int64_t chart_days;      /* days the chart spans: to today or to the cutoff's day */
};

/*
 * Fills the calendar days of r (r->timezone, announce_at, now, cutoff_at set): local
 * midnights from the announcement's day to today's. ERR_DATA for an unknown zone.
 */
int report_days_init(struct report *r, struct err *e);

/* The index of the day holding t, or r->n_days when t is before the first or after the last. */
size_t report_day_index(const struct report *r, int64_t t);

/* Computes r for campaign c as of now: one pass over the people, one over reminders. */
int report_build(struct report *r, struct store *s, const struct store_campaign *c, int64_t now,
		 struct err *e);
void report_free(struct report *r);

/* Writers: the table for people, JSON for tools, one self-contained HTML page. */
void report_write_table(struct buf *out, const struct report *r);
void report_write_json(struct buf *out, const struct report *r);
void report_write_html(struct buf *out, const struct report *r);
/* The chart alone (SVG), as the HTML page embeds it. */
void report_write_svg(struct buf *out, const struct report *r);

/* ---- one person's whole history: cutoff user ---- */

struct report_entry {
	int64_t at;
	char *what, *kind, *email_kind;
	int code;
	char *text, *note, *message_id, *relay, *detail;
	int64_t ref;
};

struct report_suppression {
	char *reason, *campaign, *detail; /* reason NULL: not suppressed */
	int64_t at;
};

struct report_membership {
	int64_t recipient_id;
	char *campaign, *title, *campaign_state, *campaign_tz;
	char *user_id, *email, *name, *locale, *timezone, *client, *version, *platform, *os;
	char *attrs, *segment, *state;
	int64_t created_at, completed_at;
	struct report_suppression suppression; /* of email */
	struct report_entry *history;
	size_t n_history;
};

struct report_user {
	char *query;   /* as given */
	char *address; /* the query as a normalised address, or NULL */
	struct report_membership *m;
	size_t n;
	struct report_suppression suppression; /* of address, when it is one */
};

/*
 * Loads everything about the person named by query (a user id, or an address whose domain
 * is matched without regard to case) in every campaign. ERR_NOTFOUND when nothing is known:
 * no recipient, and the address (if it is one) is not suppressed.
 */
int report_user_load(struct report_user *u, struct store *s, const char *query, struct err *e);
void report_user_free(struct report_user *u);

/* Writers: human-readable (times in each campaign's zone) and JSON (UTC). */
void report_user_write_text(struct buf *out, const struct report_user *u);
void report_user_write_json(struct buf *out, const struct report_user *u);

/* ---- forget ---- */

struct report_forget_result {
	int64_t recipients;  /* recipient rows erased */
	int64_t scrubbed;    /* replies and event details rewritten */
	int64_t cancelled;   /* queued or deferred e-mails cancelled */
	int64_t addresses;   /* addresses kept suppressed by their hash */
};

/*
 * Erases the personal data of the person named by query (user id or address) everywhere, in
 * one transaction: see store_report_forget_recipient and store_report_forget_scrub; each of
 * their addresses stays suppressed by its hash (reason 'forgotten', the address itself
 * erased); an event "forgotten" without personal data is added per recipient. An address
 * not (or no longer) in any campaign is still suppressed. ERR_NOTFOUND for a user id that
 * no campaign has. Returns what was done in *res.
 */
int report_forget(struct store *s, const char *query, int64_t now,
		  struct report_forget_result *res, struct err *e);

/*
 * Text with every occurrence of address (ASCII case ignored) replaced by "[forgotten]", newly
 * allocated, or text itself when it holds none.
 */
char *report_redact(const char *text, const char *address);

/*
 * An event's JSON detail with only the keys known to hold no personal data (source, kind,
 * delivery, status, code, reason, class, attributed_by, feedback_type, sha256, message,
 * index, by, file, row, client_version, platform, outcome, period, previous_reason) and
 * address redacted from their values; newly allocated, NULL when nothing is left or json is
 * not an object.
 */
char *report_scrub_detail(const char *json, const char *address);

/* ---- small writers, shared and tested ---- */

/* t as "2003-08-18T16:00:00Z" (UTC); "" for 0. buf holds at least 21 bytes. */
void report_time_utc(int64_t t, char *buf, size_t n);
/* Appends v as an RFC 4180 field: quoted when it holds a comma, quote, CR or LF. */
void report_csv_field(struct buf *b, const char *v);
/* Appends v as a JSON string (RFC 8259), or null when v is NULL. */
void report_json_string(struct buf *b, const char *v);
/* Appends v escaped for HTML text and attribute values. */
void report_html_text(struct buf *b, const char *v);
/* Appends v in a cell of width code points (right-aligned if right); longer is cut with "~". */
void report_cell(struct buf *b, const char *v, int width, bool right);

#endif
