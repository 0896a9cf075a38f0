/* store_report.h — the SQL of support and reporting: one person's history (cutoff user), the
 * people of a campaign with their deliveries (cutoff who, cutoff report), and erasing a person
 * (cutoff forget). Part of the store module: with store.c, the only place that holds SQL. */
#ifndef CUTOFF_STORE_REPORT_H
#define CUTOFF_STORE_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/*
 * Every function returns 0 or a negative err code with e filled (ERR_TEMPFAIL when the
 * database is busy, ERR_IO otherwise). Strings handed to a callback are valid during the call
 * only. Callbacks returning non-zero stop the walk, and that value is returned. The statements
 * are prepared once per connection and cached in it (struct store's report_stmts).
 */

/*
 * A read transaction (BEGIN DEFERRED): the queries until store_report_read_end see one
 * snapshot of the database. It takes no lock a writer waits for (WAL): `cutoff run` and
 * `cutoff serve` go on meanwhile.
 */
int store_report_read_begin(struct store *s, struct err *e);
/* Ends it; harmless when none is open. */
void store_report_read_end(struct store *s);

/* ---- one person: cutoff user ---- */

/* A person's recipient row in one campaign, with the campaign and the import that wrote it. */
struct store_member {
	int64_t recipient_id, campaign_id;
	const char *campaign, *title, *campaign_state, *campaign_tz;
	const char *user_id, *email, *name, *locale, *timezone;
	const char *client, *version, *platform, *os;
	const char *attrs;   /* JSON object text, or NULL */
	const char *segment; /* NULL: not affected */
	const char *state;   /* pending, completed, unaffected, forgotten */
	int64_t created_at, updated_at, completed_at; /* completed_at 0: not completed */
};

/*
 * Calls fn with every recipient, in any campaign, whose user id is user_id or email, or whose
 * address is email (the normalised address, or NULL to match by user id only), ordered by
 * campaign name. Uses the (campaign_id, user_id) and (campaign_id, email) indexes.
 */
int store_report_members(struct store *s, const char *user_id, const char *email,
			 int (*fn)(void *ud, const struct store_member *m), void *ud,
			 struct err *e);

/*
 * One entry of a recipient's history. what says where it comes from:
 *   imported   kind = segment (NULL: not affected), text = the import's file, ref = its id
 *   reimported an import that changed the row later; text, ref as above
 *   queued     a delivery was queued: kind = initial/reminder/final, ref = delivery id,
 *              code = 0, text = NULL
 *   attempt    an SMTP attempt: kind = outcome (sent, deferred, failed, throttled,
 *              relay-down, recovered), email_kind, code, text = the reply, note = cutoff's own
 *              account, message_id, relay, ref = delivery id
 *   settled    a delivery ended without an attempt of its own: kind = state (bounced,
 *              suppressed, cancelled, failed), text = reason, email_kind, ref = delivery id
 *   event      the event log: kind = event kind, detail = its JSON, ref = event id
 *   completed  completion without an event of its own (older databases)
 *   login      a login of the user id: kind = outcome, text = client version, note = platform
 *   reminder   a login reminder shown: ref = period index, text = client version
 */
struct store_history_item {
	int64_t at;
	const char *what, *kind, *email_kind;
	int code;
	const char *text, *note, *message_id, *relay, *detail;
	int64_t ref;
};

/* Calls fn with the history of recipient_id (logins matched by user_id) ordered by time. */
int store_report_history(struct store *s, int64_t recipient_id, const char *user_id,
			 int (*fn)(void *ud, const struct store_history_item *h), void *ud,
			 struct err *e);

/* The suppression of an address (keyed by the hash of the normalised address). */
struct store_suppression_row {
	const char *reason;   /* hard-bounce, complaint, unsubscribe, forgotten, manual, ... */
	const char *campaign; /* the campaign it came from, or NULL */
	const char *detail;   /* JSON object text, or NULL */
	int64_t created_at;
};

/* Calls fn with the suppression of email (normalised) if there is one; returns 1 if none. */
int store_report_suppression(struct store *s, const char *email,
			     int (*fn)(void *ud, const struct store_suppression_row *r), void *ud,
			     struct err *e);

/* ---- the people of a campaign: cutoff who, cutoff report ---- */

/* The segments of a campaign, in their order. */
struct store_segment_row {
	int64_t id;
	const char *name;
	const char *target_version; /* NULL: discontinued */
	int64_t send_at;
};
int store_report_segments(struct store *s, int64_t campaign_id,
			  int (*fn)(void *ud, const struct store_segment_row *g), void *ud,
			  struct err *e);

/*
 * One affected recipient joined with one of its deliveries: a recipient with n deliveries
 * gives n facts, one with none gives one fact with delivery_id 0. The recipient part and the
 * login-reminder summary repeat on each.
 */
struct store_fact {
	int64_t recipient_id;
	const char *user_id, *email, *segment, *state;
	int64_t segment_id, created_at, completed_at; /* completed_at 0: not completed */
	int64_t recipient_updated_at;
	const char *suppressed;  /* why the address is not mailed: the suppression's reason,
				    'unsubscribe' (from this campaign only), or NULL */
	int64_t suppressed_at;
	int64_t reminders, first_reminder_at, last_reminder_at; /* login reminders shown */
	int64_t delivery_id;     /* 0: no delivery */
	const char *kind, *delivery_state, *reason;
	int64_t sent_at, updated_at; /* sent_at 0: never accepted by a relay */
};

/*
 * Streams the facts of every affected recipient (segment set) of campaign_id, or of one
 * segment (segment_id, 0 = all), ordered by recipient id and then delivery id, without
 * loading them: one scan of the recipients, the deliveries by their recipient index, and the
 * login reminders merged in by recipient.
 */
int store_report_facts(struct store *s, int64_t campaign_id, int64_t segment_id,
		       int (*fn)(void *ud, const struct store_fact *f), void *ud, struct err *e);

/* Calls fn with the time of every login reminder shown in campaign_id, in no order (a scan:
 * no sort of what may be millions). */
int store_report_reminder_times(struct store *s, int64_t campaign_id,
				int (*fn)(void *ud, int64_t t), void *ud, struct err *e);

/* ---- forgetting a person: cutoff forget ---- */

/* A recipient to forget, found by store_report_forget_find (strings owned by the array). */
struct store_forget_target {
	int64_t recipient_id, campaign_id;
	char *user_id, *email; /* email NULL: forgotten already */
};

/*
 * Finds every recipient, in any campaign, with user id user_id or email, or address email
 * (normalised, or NULL). *out is an array of *n (store_report_forget_targets_free).
 */
int store_report_forget_find(struct store *s, const char *user_id, const char *email,
			     struct store_forget_target **out, size_t *n, struct err *e);
void store_report_forget_targets_free(struct store_forget_target *t, size_t n);

/*
 * Rewrites the texts of one recipient that may hold personal data: each scrubber returns a
 * newly allocated replacement (NULL to set NULL) or the text pointer itself to leave it
 * alone. text is applied to its attempts' replies and local errors and to its deliveries'
 * last replies, detail to its events' details (login reminders hold no such text).
 * *changed counts the rows rewritten. Run inside the caller's transaction (store_begin).
 */
struct store_scrubber {
	char *(*text)(void *ud, const char *text);   /* replies: redact the address */
	char *(*detail)(void *ud, const char *json); /* event details: keep anonymous keys */
	void *ud;
};
int store_report_forget_scrub(struct store *s, int64_t recipient_id,
			      const struct store_scrubber *sc, int64_t *changed, struct err *e);

/*
 * Erases the recipient's personal fields: user id becomes "forgotten-ID", address, name,
 * locale, time zone and attributes NULL, state 'forgotten' (completed_at, segment, client and
 * version stay for the counts); its queued and deferred deliveries are cancelled (reason
 * 'forgotten'); the logins of user_id are re-keyed to the same "forgotten-ID". *cancelled
 * counts the deliveries cancelled.
 */
int store_report_forget_recipient(struct store *s, int64_t recipient_id, const char *user_id,
				  int64_t now, int64_t *cancelled, struct err *e);

/*
 * Makes the suppression of email (normalised) anonymous: the address and the detail go, the
 * reason becomes 'forgotten' and the detail records the reason it had, if another. Call after
 * store_suppress(email, "forgotten", ...) so that there is one.
 */
int store_report_forget_suppression(struct store *s, const char *email, struct err *e);

/* Whether email (normalised) was forgotten: suppressed with reason 'forgotten' (for the
 * importer, which must not bring the person's data back). */
int store_report_address_forgotten(struct store *s, const char *email, bool *out, struct err *e);

#endif
