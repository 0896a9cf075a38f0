/* login.h — the login decision: at each login, whether to show a reminder and its text, in one
 * call that also records the login, the reminder shown, and a completion. */
#ifndef CUTOFF_LOGIN_H
#define CUTOFF_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"
#include "util.h"

/*
 * The rules (docs/cutoff.1, "login"):
 * - A login reminder is due once per reminder period: the campaign's cadence (an RRULE,
 *   default daily) cuts [reminder start, cutoff) into periods (schedule_cadence_*), and the
 *   first login of a pending recipient in a period gets that period's reminder. Nothing is
 *   armed in advance: the period is derived from the login's time, so a login inside the
 *   window finds its reminder even when the daily run is late or did not run at all.
 * - Never before the recipient's segment sent its first e-mail, never at or after the
 *   cutoff, never to a completed, unaffected, forgotten or suppressed recipient, never for a
 *   paused campaign, and nothing for a user no active campaign knows.
 * - At most one per recipient and period, even when logins of the same user are decided at
 *   the same instant by several threads or processes: the reminder's row
 *   (recipient, period start) is the primary key of login_reminder, inserted with ON CONFLICT
 *   DO NOTHING, and only the login whose insert changed a row shows it.
 * - A login whose client version is at or above the target of the recipient's segment
 *   completes the recipient (every campaign where that holds): state 'completed', queued and
 *   deferred e-mail cancelled; nothing is shown for that campaign. A discontinued segment has
 *   no target: no login completes it.
 * - A user in several campaigns: completion is decided in each; at most ONE reminder is shown
 *   per login, the most urgent one: among the campaigns whose reminder is due now, the one
 *   with the earliest cutoff (then by name). The others stay due, and a later login in the
 *   same period shows the next.
 * - Every login is recorded (user, time, client version, platform, outcome), known user or not.
 *
 * Threads: a login server (cutoff serve) calls login_decide from several threads. It loads
 * one login_catalog (the campaigns, their period tables and compiled templates), which is
 * immutable once loaded and shared by every thread, and gives each thread its own
 * login_session over its own store connection (store_open in that thread; a connection is
 * never shared). A session keeps its renderers and buffers; nothing in it is shared, and
 * nothing login_decide calls keeps process-wide mutable state.
 */

/* The campaigns logins are decided against; immutable once loaded. */
struct login_catalog;

/*
 * Loads every active or paused campaign of the store: its definition, its login-reminder
 * periods and its compiled templates. Ended and cancelled campaigns are left out. Returns 0,
 * ERR_CONFIG when a campaign's definition or templates no longer load (the message names
 * it), or a store error. Free *out with login_catalog_free, after every session using it.
 */
int login_catalog_load(struct login_catalog **out, struct store *s, struct err *e);

/* Frees cat (NULL is fine). */
void login_catalog_free(struct login_catalog *cat);

/* How many campaigns cat holds. */
size_t login_catalog_count(const struct login_catalog *cat);

/*
 * Sets *stale when the campaigns in the store changed since cat was loaded (one was added,
 * changed, paused, resumed, ended...), so that a long-running caller reloads. Cheap: one
 * query over the campaign table. Returns 0 or a store error.
 */
int login_catalog_stale(const struct login_catalog *cat, struct store *s, bool *stale,
			struct err *e);

/* What one thread decides with: its store connection, renderers and buffers. */
struct login_session;

/* A session over cat and s (both must outlive it). Never fails but for memory, which aborts. */
struct login_session *login_session_new(const struct login_catalog *cat, struct store *s);

/* Frees ls (NULL is fine). */
void login_session_free(struct login_session *ls);

/* One login, as a login server reports it. */
struct login_event {
	const char *user;           /* the user id, as imported */
	const char *client_version; /* NULL or "" when not reported (then nothing completes) */
	const char *platform;       /* NULL or "" when not reported; recorded only */
	int64_t at;                 /* UTC seconds */
};

/* The decision. Strings belong to the catalog or the session: valid until the next call. */
struct login_answer {
	bool known;            /* some active or paused campaign has this user */
	bool completed;        /* completed in every such campaign (by this login or earlier) */
	int completed_now;     /* campaigns this login completed */
	bool reminded;         /* show a reminder: the fields below are set */
	const char *campaign;  /* its campaign's name */
	const char *text;      /* the rendered login text: one line, UTF-8 */
	int64_t days_left;     /* whole local days until the cutoff (render_days_left) */
	const char *upgrade_url;
	int64_t period_index;  /* 0-based period of the cadence */
	int64_t period_start, period_end;
	const char *outcome;   /* what was recorded: reminder, completed, none, unknown */
};

/*
 * Decides for ev (the rules above) and records it, inside the caller's transaction
 * (store_begin ... store_commit): the login, the reminder shown and any completion commit
 * together. Act on the answer (show the text) only once the transaction has committed; if
 * it rolls back, nothing was recorded and nothing must be shown.
 * Returns 0 with *out filled; ERR_DATA for an event without a user; a store error
 * (ERR_TEMPFAIL when the database is busy, ERR_IO), after which the caller rolls back. A
 * login text that cannot be rendered for one recipient (a control character from their
 * data) is not an error: it is logged, its reminder is taken back, and nothing is shown.
 */
int login_decide(struct login_session *ls, const struct login_event *ev,
		 struct login_answer *out, struct err *e);

/*
 * Appends a as one line of JSON, without a newline:
 * {"user":USER,"reminder":{"campaign":...,"text":...,"days_left":N,"upgrade_url":...}|null,
 *  "completed":BOOL}. upgrade_url is null when the campaign has none.
 */
void login_answer_json(const struct login_answer *a, const char *user, struct buf *out);

/* Appends s as a JSON string (quoted, escaped; invalid UTF-8 replaced by U+FFFD). */
void login_json_string(struct buf *out, const char *s);

#endif
