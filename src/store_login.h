/* store_login.h — the scheduler's SQL: logins, login reminders, completion, and the queue marks
 * of the daily run. Part of the store module (tables of db/004_login.sql, the ledger). */
#ifndef CUTOFF_STORE_LOGIN_H
#define CUTOFF_STORE_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/*
 * Every function returns 0 or a negative err code with e filled (ERR_TEMPFAIL when the
 * database is busy, ERR_IO otherwise). None opens a transaction: each runs in the caller's
 * (store_begin), so a login's reminder, completion and login record commit together. The
 * statements are prepared once per connection and cached in it: one connection per thread.
 */

/* ---- logins and login reminders ---- */

/*
 * Finds the recipient of campaign_id whose user id is exactly user_id and calls fn with it
 * (strings valid during the call only; fn may run other store functions). Returns fn's
 * result, 1 when there is no such recipient, or a store error.
 */
int store_login_recipient(struct store *s, int64_t campaign_id, const char *user_id,
			  int (*fn)(void *ud, const struct store_recipient *r), void *ud,
			  struct err *e);

/*
 * Appends a login: user_id as given, at (UTC), the client version and platform reported
 * (NULL when not), and outcome (reminder, completed, none, unknown; see db/004_login.sql: a
 * string constant, kept by address). Inside a transaction the row is inserted with others,
 * 64 at a time or at store_commit (the transaction's readers of the login table on this
 * connection see it: store_report_history flushes first); store_rollback drops it. Outside
 * one it is committed in a transaction of its own.
 */
int store_login_record(struct store *s, const char *user_id, int64_t at,
		       const char *client_version, const char *platform, const char *outcome,
		       struct err *e);

/*
 * The keys of login_by_user (a user's logins, for support) and the tail (db/012_login_tail.sql):
 * a connection's commits add the keys of their logins, in key order, unless it said it would
 * index later; then its logins stay in the tail, above login_indexed.through, which every
 * reader of login_by_user also scans, until store_login_index adds their keys in bulk, many to
 * a B-tree leaf (cutoff serve's decider: a commit of 25 logins otherwise writes one random
 * leaf of that index a login). A commit that finds a tail before its own logins indexes it too.
 * Above the mark some keys may be in login_by_user already (a bulk in steps cut short): each
 * is added once, and readers list such a login once.
 */

/*
 * later true: this connection's commits leave their logins' keys to store_login_index, and
 * its reminder claims in login_reminder_tail (db/013_login_reminder_tail.sql), for the same
 * bulks to move into login_reminder_indexed.
 */
void store_login_index_later(struct store *s, bool later);

/*
 * Outside a transaction: when at least min_tail logins and claims (and at least one) are in
 * the tails, adds the keys of the known logins to login_by_user in key order and moves through
 * to the last login, and moves the claims of login_reminder_tail into login_reminder_indexed,
 * in a transaction of its own (undone whole by a failure or a crash: nothing lost, nothing
 * doubled). *indexed is the number of logins it covered, 0 when it left them.
 */
int store_login_index(struct store *s, int64_t min_tail, int64_t *indexed, struct err *e);

/*
 * The same bulk in short steps, each of its own, so that a service can run them between its
 * batches instead of stopping for the whole bulk (cutoff serve: 32,768 logins took 25 to
 * 100 ms at once). store_login_bulk_start takes the tail as it stands (b->active false when
 * there is none); each store_login_bulk_step either reads the keys of the next `keys` login
 * ids and sorts them in memory (no write to the database; the steps' runs are merged as they
 * are added) or, once all are read, adds the next `keys` of them in key order to
 * login_by_user in one transaction, which also moves the mark after the last. b->active
 * turns false when the mark moved, or at a failure (the bulk is then abandoned: start
 * another). b starts zeroed; store_login_bulk_end releases what an active one holds (a bulk
 * that ended or failed holds nothing), and so does a start. A bulk cut short by a failure or
 * a crash leaves some keys above the mark; readers and later bulks allow for them (each key
 * is added once).
 * Then the same for the claims of login_reminder_tail as the bulk began: sorted by their key in
 * steps, moved into login_reminder_indexed in steps, then deleted from the tail in steps
 * (a claim copied and not yet deleted is read once: the view login_reminder skips it).
 * Outside a transaction. A store error, as the others.
 */
struct store_login_bulk {
	int64_t through, last; /* the tail it covers: login ids in (through, last] */
	int64_t next;          /* the ids up to next are read and sorted */
	int64_t claims_next, claims_last; /* the claims' tail ids: in (claims_next, claims_last] */
	int64_t epoch;         /* login_reminder_tail_epoch at the start */
	int64_t claims_deleted; /* the moved claims' tail ids up to it are deleted */
	bool claims_moved;     /* every claim is in login_reminder_indexed: deletes follow */
	bool keys_done;        /* the logins' part is done (the mark moved) */
	struct bulk_sort *sort; /* the part's rows read so far, sorted in memory (store_login.c) */
	bool wrote;            /* the last step committed a transaction */
	bool active;
};
int store_login_bulk_start(struct store *s, struct store_login_bulk *b, struct err *e);
int store_login_bulk_step(struct store *s, struct store_login_bulk *b, size_t keys,
			  struct err *e);
void store_login_bulk_end(struct store_login_bulk *b);

/* Which part of the bulk b's next step runs (each costs differently a key, so that a caller
 * can size each apart): the logins' keys sorted, then added; the claims sorted, then moved,
 * then deleted from the tail; STORE_BULK_NONE when b is not active. */
enum store_bulk_part {
	STORE_BULK_KEYS_SORT,
	STORE_BULK_KEYS_ADD,
	STORE_BULK_CLAIMS_SORT,
	STORE_BULK_CLAIMS_MOVE,
	STORE_BULK_CLAIMS_DELETE,
	STORE_BULK_NONE
};
enum store_bulk_part store_login_bulk_part(const struct store_login_bulk *b);

/* *tail: how many login ids lie above login_indexed.through (logins whose keys may be missing
 * from login_by_user), plus the claims in login_reminder_tail. */
int store_login_tail(struct store *s, int64_t *tail, struct err *e);

/* A login reminder to claim: one recipient, one cadence period. */
struct store_login_reminder {
	int64_t campaign_id;
	int64_t recipient_id;
	int64_t period_start;      /* UTC start of the period: with recipient_id, the key */
	int64_t period_index;
	int64_t at;                /* the login's time */
	const char *client_version; /* or NULL */
};

/*
 * Records that r's reminder is shown now, unless one was shown in that period already:
 * *claimed is true only for the call that inserted it, so of two concurrent logins exactly one
 * gets it. The key is looked up in login_reminder_indexed and among the claims of
 * login_reminder_tail, which the connection keeps in memory, reads once at its transaction's
 * first claim (all of them, or those added since it last did) and forgets when the
 * transaction is rolled back; the write transaction (store_begin) holds every other writer
 * off until the commit. The claim goes into the tail when the connection indexes later
 * (store_login_index_later), else into login_reminder_indexed.
 */
int store_login_reminder_claim(struct store *s, const struct store_login_reminder *r,
			       bool *claimed, struct err *e);

/* Takes back a claim of this transaction (the text could not be rendered after all). */
int store_login_reminder_release(struct store *s, int64_t recipient_id, int64_t period_start,
				 struct err *e);

/*
 * Calls fn with the 0-based period index of every login reminder shown to recipient_id, in
 * period order (for `cutoff user`, tests and reports). fn returning non-zero stops.
 */
int store_login_reminder_each(struct store *s, int64_t recipient_id,
			      int (*fn)(void *ud, int64_t period_index, int64_t shown_at),
			      void *ud, struct err *e);

/*
 * A text that changes whenever a campaign is added or removed or changes its state,
 * definition or dates: a login server keeping campaigns in memory compares it now and then
 * to know when to reload them. *out is freed by the caller.
 */
int store_login_campaigns_signature(struct store *s, char **out, struct err *e);

/* How a login stream reads pages that are not in the WAL (store_login_stream). */
enum store_login_reads {
	/* A page cache of up to 1 GiB, no map: each page is read once and stays decoded in the
	 * cache. With a map, every page access also searched the WAL index first (SQLite does
	 * that before looking in its cache when a map is on) and decoded the page header again:
	 * 7% of a batch's instructions. For `cutoff login --batch`, whose commits are few. Its
	 * WAL is checkpointed every 131072 pages (512 MiB), not 32768: a page dirtied by several
	 * commits is copied back once (1M balanced events: 11.2 / 11.6 s against 12.2 / 12.0). */
	STORE_LOGIN_CACHED,
	/* Reads through a memory map of the database (PRAGMA mmap_size) and a 64 MiB cache, for
	 * a connection whose cache must stay small (cutoff serve's decider: see serve.c). */
	STORE_LOGIN_MAPPED,
};

/*
 * Tunes s for a stream of login transactions (cutoff login --batch, cutoff serve): the WAL is
 * checkpointed every 32768 pages (CACHED: 131072) instead of SQLite's 1000, so that a page
 * written by many commits in a row (the login table's last page, hot index pages) is copied
 * back to the database once, not once per checkpoint; the page cache is large enough that a batch's dirty
 * pages are written at its commit rather than spilled before; reads as `reads` says (pages in
 * the WAL are always read from the WAL). CHECK constraints stay on: written as IN lists they
 * built and dropped a temporary b-tree at every completion (a fifth of its instructions),
 * which db/009 removed by writing them as comparisons. Durability is unchanged
 * (synchronous=FULL).
 */
int store_login_stream(struct store *s, enum store_login_reads reads, struct err *e);

/* ---- completion ---- */

/*
 * Completes recipient_id (of campaign_id) at now if it is pending: state 'completed',
 * completed_at, and every delivery of it still queued or deferred cancelled (reason
 * 'completed'; one already handed to a relay cannot be called back), with an event
 * "completed" whose detail is the JSON object text detail. *changed is false (and nothing
 * is written) when it was not pending: already completed, unaffected or forgotten.
 * *cancelled (may be NULL) counts the deliveries cancelled.
 */
int store_recipient_complete(struct store *s, int64_t campaign_id, int64_t recipient_id,
			     int64_t now, const char *detail, bool *changed, int64_t *cancelled,
			     struct err *e);

/* ---- queue marks: what the daily run has queued in full ---- */

/* Records that (segment_id, kind, occurrence) is queued for every pending recipient up to
 * watermark. Call in the transaction that queued them. */
int store_queue_mark_set(struct store *s, int64_t segment_id, const char *kind,
			 int64_t occurrence, int64_t watermark, int64_t now, struct err *e);

#endif
