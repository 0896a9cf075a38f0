/* store.h — all SQL lives here: the SQLite store (WAL) behind functions, so another backend can follow. */
#ifndef CUTOFF_STORE_H
#define CUTOFF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct store;

enum store_open_flags {
	STORE_CREATE = 1,   /* create the file if missing */
	STORE_MIGRATE = 2,  /* apply pending migrations (cutoff init) */
	STORE_READONLY = 4, /* for read-only commands */
	STORE_WAL_BUFFERED = 8 /* a commit's WAL frames in few large writes (store_walbuf.h) */
};

/*
 * Opens the database at path: WAL, foreign keys on, a busy timeout. Refuses a
 * database whose schema is newer than this binary (ERR_REFUSED) and, without
 * STORE_MIGRATE, one that needs migrating ("run cutoff init", ERR_REFUSED). A
 * missing file without STORE_CREATE is ERR_NOTFOUND. *out is freed with
 * store_close.
 */
int store_open(struct store **out, const char *path, int flags, struct err *e);
void store_close(struct store *s);

/* Schema versions: what the file had when opened and what it has now. */
int store_schema_version(const struct store *s);
int store_schema_version_at_open(const struct store *s);
/* The newest schema this binary knows. */
int store_schema_latest(void);

/* Transactions. store_begin takes the write lock at once (BEGIN IMMEDIATE). */
int store_begin(struct store *s, struct err *e);
/* A read transaction: many lookups under one shared lock (end it with store_commit). */
int store_begin_read(struct store *s, struct err *e);
int store_commit(struct store *s, struct err *e);
void store_rollback(struct store *s);
/* Calls fn(ud) whenever a transaction on s rolls back, by store_rollback or by SQLite itself
 * (a failed commit); fn NULL removes it. One function per connection. */
void store_on_rollback(struct store *s, void (*fn)(void *ud), void *ud);
/* synchronous=FULL (default) or NORMAL, for bulk loads that can be redone. */
int store_set_durable(struct store *s, bool full, struct err *e);
/* The path of s's WAL file, as SQLite names it (symbolic links resolved); valid while s is
 * open. A writer with synchronous=NORMAL makes its commits durable by an fdatasync of it. */
const char *store_wal_path(struct store *s);
/* The path of s's database file, as SQLite names it (absolute, symbolic links resolved); valid
 * while s is open. For a thread that syncs the file itself after a PASSIVE checkpoint. */
const char *store_db_path(struct store *s);
/* PRAGMA wal_autocheckpoint: the WAL size in pages at which a commit of this connection also
 * checkpoints (0: never; a long-lived writer leaves checkpoints to another connection).
 * Returns 0 or ERR_IO. */
int store_wal_autocheckpoint(struct store *s, int pages, struct err *e);
/* The frames in the WAL after this connection's last commit, counted while its own
 * checkpoints are off (store_wal_autocheckpoint 0); -1 before such a commit. */
int store_wal_frames(const struct store *s);
/* Pages this connection's page cache wrote out in the middle of a transaction because it was
 * full (SQLite's SQLITE_DBSTATUS_CACHE_SPILL), since the last call. */
int store_cache_spills(struct store *s);
/* PRAGMA cache_size: this connection's page cache, in KiB. Returns 0 or ERR_IO. */
int store_cache_size(struct store *s, int kib, struct err *e);
/*
 * Checkpoints the WAL now, never waiting for a lock (sqlite3_wal_checkpoint_v2), in one of
 * the modes below: PASSIVE copies what it can without blocking writers or readers; PASSIVE_SYNC
 * does that and then syncs the database file (SQLite syncs it only when a checkpoint copied the
 * whole WAL, so under steady writes the pages of every PASSIVE pile up unsynced until a RESTART
 * has to sync them all, on the writer's connection); RESTART
 * copies every frame so that the next commit writes the WAL from its start again (call it on
 * the writer's own connection between transactions, after a PASSIVE elsewhere did the bulk);
 * TRUNCATE does that and empties the WAL file, holding the write lock while it does, so use
 * it when idle.
 * *frames and *copied (either may be NULL) get the frames in the WAL and those now in the
 * database (-1 when the database is not in WAL mode). The connection's busy wait is back to
 * store_open's after (a store_busy_wait handler is dropped). Returns 0; ERR_TEMPFAIL when RESTART or
 * TRUNCATE found a writer or a reader in the way (try later); ERR_IO.
 */
enum store_checkpoint {
	STORE_CKPT_PASSIVE,
	STORE_CKPT_PASSIVE_SYNC,
	STORE_CKPT_RESTART,
	STORE_CKPT_TRUNCATE
};
int store_wal_checkpoint(struct store *s, enum store_checkpoint mode, int *frames, int *copied,
			 struct err *e);

/* ---- campaigns ---- */

struct store_campaign {
	int64_t id;
	char *name, *title, *state, *timezone;
	int64_t announce_at, reminder_start_at, cutoff_at;
	char *definition, *source_path, *templates_dir, *digest;
	int64_t sending_started_at; /* 0 = not yet */
	int64_t created_at, updated_at;
};

/* Fills out (strings owned by out: store_campaign_clear). ERR_NOTFOUND names the campaign. */
int store_campaign_get(struct store *s, const char *name, struct store_campaign *out,
		       struct err *e);
void store_campaign_clear(struct store_campaign *c);

/* Inserts or updates the campaign row by name; sets c->id. */
int store_campaign_put(struct store *s, struct store_campaign *c, int64_t now, struct err *e);

/* Calls fn for each campaign ordered by name; fn returning non-zero stops (returned). */
int store_campaign_each(struct store *s, int (*fn)(void *ud, const struct store_campaign *c),
			void *ud, struct err *e);

/* Sets state ('active', 'paused', 'cancelled', 'ended'). */
int store_campaign_set_state(struct store *s, int64_t campaign_id, const char *state,
			     int64_t now, struct err *e);

struct store_segment {
	int64_t id;
	const char *name;
	int position;
	const char *template_name;
	int64_t send_at;
	const char *target_version; /* NULL: discontinued */
};

/*
 * Upserts segs by name (ids of existing names stay) and fills their ids.
 * Segments not in segs are kept until store_segments_prune.
 */
int store_segments_put(struct store *s, int64_t campaign_id, struct store_segment *segs,
		       size_t n, struct err *e);
/* The id of segment name of a campaign; ERR_NOTFOUND if it has none of that name. */
int store_segment_id(struct store *s, int64_t campaign_id, const char *name, int64_t *id,
		     struct err *e);
/* Deletes segments whose id is not in keep (recipients must be re-matched first). */
int store_segments_prune(struct store *s, int64_t campaign_id, const int64_t *keep, size_t n,
			 struct err *e);

/* Recipient counts of one segment (segment_id 0 = not affected). */
struct store_segment_counts {
	int64_t segment_id;
	char *name; /* NULL for "not affected" */
	int64_t pending, completed, total;
};
/* *out is an array of *n entries (free with store_segment_counts_free). */
int store_segment_counts(struct store *s, int64_t campaign_id, struct store_segment_counts **out,
			 size_t *n, struct err *e);
void store_segment_counts_free(struct store_segment_counts *c, size_t n);

/* ---- recipients ---- */

/* A recipient's text fields, in the order the store binds them (store_recipient.text_len). */
enum store_text {
	STORE_TEXT_USER_ID, STORE_TEXT_EMAIL, STORE_TEXT_NAME, STORE_TEXT_LOCALE,
	STORE_TEXT_TIMEZONE, STORE_TEXT_CLIENT, STORE_TEXT_VERSION, STORE_TEXT_PLATFORM,
	STORE_TEXT_OS, STORE_TEXT_ATTRS, STORE_TEXT_COUNT
};

struct store_recipient {
	int64_t id;
	int64_t campaign_id;
	const char *user_id, *email, *name, *locale, *timezone;
	const char *client, *version, *platform, *os;
	const char *attrs;  /* JSON object text or NULL */
	int64_t segment_id; /* 0: not affected */
	uint64_t digest;
	const char *state;  /* pending, completed, unaffected, forgotten */
	int64_t import_run; /* the import writing it (insert/update), 0 = none */
	int64_t email_key;  /* store_address_key64(email), when email_key_set */
	bool email_key_set; /* else the store computes it */
	/* The text fields' lengths in bytes, in the order of enum store_text, when the caller
	 * knows them (the importer's reader thread measures them); 0: the store measures. */
	uint32_t text_len[STORE_TEXT_COUNT];
};

/* The key of an address in recipient_email_key (db/016): the first 8 octets of the SHA-256 of
 * the address with its ASCII letters in lower case (as SQLite's NOCASE compares), as a signed
 * integer. Stored in the database: it never changes. SQL has it as cutoff_address_key(). */
int64_t store_address_key64(const char *email);
/* Tests only: keep this many low bits of each key (64), so that keys collide on purpose. */
extern int store_address_key_bits;

/* The parts of an existing recipient the importer needs to decide. */
struct store_recipient_key {
	int64_t id;
	uint64_t digest;
	int64_t import_run; /* the import that last wrote it */
	int64_t segment_id; /* 0: none */
	char user_id[256];
	char email[320];
};

/* Finds by (campaign, user_id) or (campaign, email). Returns 0 found, 1 not found, or <0.
 * By email: the key's holders that are added (recipient_key), the rows without a key, and
 * this connection's deferred keys, not another import's pending span (the importer's
 * lookup: it holds the import lock and finishes any pending span first). */
int store_recipient_find_user(struct store *s, int64_t campaign_id, const char *user_id,
			      struct store_recipient_key *out, struct err *e);
int store_recipient_find_email(struct store *s, int64_t campaign_id, const char *email,
			       struct store_recipient_key *out, struct err *e);

/*
 * Inserts r (r->id is ignored) and sets *id. Returns 1, inserting nothing, when
 * the campaign already has a recipient with that user_id or address (one
 * statement: the importer tries this first, and looks up only on a conflict).
 */
int store_recipient_insert(struct store *s, const struct store_recipient *r, int64_t now,
			   int64_t *id, struct err *e);

/*
 * Inserts rows[0, n) in that order, as store_recipient_insert would one by one, in multi-row
 * statements (up to 64 rows each), and stops at the first row whose user_id or address the
 * campaign already has. Sets *inserted to how many went in: rows[0, *inserted); when that is
 * less than n, rows[*inserted] conflicts and the rows after it were not tried. Meant for import
 * mode (store_import_mode: without foreign keys, a statement needs no statement journal).
 * The rows share rows[0]'s campaign and import run (ERR_SOFTWARE otherwise).
 * Returns 0, or <0 (a database error; *inserted is then meaningless).
 */
int store_recipient_insert_run(struct store *s, const struct store_recipient *rows, size_t n,
			       int64_t now, size_t *inserted, struct err *e);
/*
 * Overwrites the imported fields of recipient r->id (not user_id, state or completion).
 * keys_kept: the caller knows r->email and r->segment_id are the stored ones, so the address
 * and segment indexes are left as they are (SQLite rewrites an index entry of every column an
 * UPDATE sets, changed or not).
 */
int store_recipient_update(struct store *s, const struct store_recipient *r, int64_t now,
			   bool keys_kept, struct err *e);
/* Moves a recipient to another segment (0 = none) and the matching state. */
int store_recipient_set_segment(struct store *s, int64_t recipient_id, int64_t segment_id,
				int64_t now, struct err *e);

/*
 * Streams the recipients of a campaign in id order: fn gets each (strings valid
 * during the call only). fn returning non-zero stops and is returned.
 */
int store_recipient_each(struct store *s, int64_t campaign_id,
			 int (*fn)(void *ud, const struct store_recipient *r), void *ud,
			 struct err *e);

/*
 * Finds one recipient of a campaign by user id or by normalised address and
 * calls fn with it (strings valid during the call only); fn's result is
 * returned. ERR_NOTFOUND names key when there is none.
 */
int store_recipient_lookup(struct store *s, int64_t campaign_id, const char *key,
			   int (*fn)(void *ud, const struct store_recipient *r), void *ud,
			   struct err *e);

/* ---- deferred address keys (db/017, src/store_keys.c) ---- */

/*
 * Defers the address keys of campaign_id's new recipients on this connection, inside the open
 * write transaction: first adds the keys of any import left pending (store_keys_finish_pending),
 * then records in import_pending that the campaign's recipients from the next id on are this
 * import's, and keeps the keys of up to cap of them in memory (0: the default, 786,432, 12 MiB)
 * before adding them. Until store_keys_add(s, true), this connection's inserts and updates of
 * those recipients leave recipient_key alone; lookups by address on any connection still find
 * them. One import a database at a time (the caller holds the import lock). 0 or the
 * database error.
 */
int store_keys_defer(struct store *s, int64_t campaign_id, size_t cap, struct err *e);
/* Adds the deferred keys to recipient_key in key order, inside the open write transaction;
 * done: and stops deferring (the campaign's import_pending row goes with it), else the span
 * starts again after the last recipient. Nothing deferred: 0. 0 or the database error. */
int store_keys_add(struct store *s, bool done, struct err *e);
/* Stops deferring without adding (after a failure: the span stays pending, and the next
 * store_keys_defer or store_keys_finish_pending adds it). */
void store_keys_drop(struct store *s);
/* Adds the keys of every import left pending (a crash between its batches and its end), inside
 * the open write transaction. 0 or the database error. */
int store_keys_finish_pending(struct store *s, struct err *e);
/* Sets *any to whether an import's keys are pending (import_pending has a row). 0 or the
 * database error. */
int store_keys_pending_any(struct store *s, bool *any, struct err *e);

/* ---- import runs and events ---- */

struct store_import_counts {
	int64_t rows, added, updated, unchanged, merged, not_affected, rejected;
};

int store_import_start(struct store *s, int64_t campaign_id, const char *file, int64_t now,
		       int64_t *run_id, struct err *e);
int store_import_finish(struct store *s, int64_t run_id, const struct store_import_counts *c,
			const char *state, const char *rejects_file, int64_t now, struct err *e);

/*
 * Tunes the connection for a bulk import (on) or back to the defaults (off): commits are not
 * fsynced (the caller makes the last one durable with store_set_durable(s, true)), the WAL is
 * checkpointed every 32768 pages instead of every 1000, the page cache is halved (given back
 * when off), and foreign keys are not enforced
 * (the importer calls store_import_parents_check in each transaction instead). CHECK
 * constraints stay on (since db/009 they cost next to nothing). Outside a transaction only
 * (SQLite ignores the foreign_keys pragma inside one). Returns 0 or the database error.
 */
int store_import_mode(struct store *s, bool on, struct err *e);

/*
 * What the foreign keys, off in import mode, would check of each row the importer writes:
 * that the campaign and each of segment_ids[0, n) (its segments) still exist. Called once a
 * transaction (no other connection can remove them until it ends). Returns 0, ERR_TEMPFAIL
 * (one is gone: another process changed the campaign between two batches), or <0.
 */
int store_import_parents_check(struct store *s, int64_t campaign_id, const int64_t *segment_ids,
			       size_t n, struct err *e);
/* Sets *out to whether any address was ever forgotten (so the importer may skip checking
 * each row when none was). Returns 0 or the database error. */
int store_import_forgotten_any(struct store *s, bool *out, struct err *e);

/* Appends an event; detail is a JSON object text or NULL. */
int store_event_add(struct store *s, int64_t campaign_id, int64_t recipient_id, int64_t at,
		    const char *kind, const char *detail, struct err *e);

/* True if the normalised address is suppressed (hash lookup). */
int store_suppressed(struct store *s, const char *email, bool *out, struct err *e);

/*
 * Suppresses an address for good (hard bounce, complaint, unsubscribe, ...):
 * keyed by the SHA-256 of the normalised address so it outlives `forget`.
 * A second suppression of the same address keeps the first. reason is one of
 * hard-bounce, complaint, unsubscribe, forgotten, manual.
 */
int store_suppress(struct store *s, const char *email, const char *reason, int64_t campaign_id,
		   const char *detail, int64_t now, struct err *e);

/* Calls fn with recipient id (strings valid during the call). ERR_NOTFOUND if gone. */
int store_recipient_by_id(struct store *s, int64_t id,
			  int (*fn)(void *ud, const struct store_recipient *r), void *ud,
			  struct err *e);

/* ---- the ledger: deliveries and their attempts ---- */

/* How long a statement waits for another writer's lock before failing busy (store_open's). */
#define STORE_BUSY_TIMEOUT_MS 10000

/*
 * While the database is locked by another writer, SQLite calls wait(ud, tries)
 * instead of sleeping: it waits a little (doing useful work meanwhile) and
 * returns nonzero to try again, or 0 to give up (the statement then fails as
 * busy). wait NULL restores the store's own busy timeout. wait must not use s.
 */
void store_busy_wait(struct store *s, int (*wait)(void *ud, int tries), void *ud);

/* Records that the campaign has begun sending (first time only). */
int store_campaign_mark_sending(struct store *s, int64_t campaign_id, int64_t now,
				struct err *e);

/*
 * Queues one delivery (kind, occurrence) for every pending recipient of a
 * segment, due at due_at; recipients that already have it are left alone (the
 * ledger's unique key), so this is idempotent. Only recipients above the
 * segment's queue mark are looked at (db/004_login.sql: every pending one up
 * to it is queued already). *queued counts the new rows.
 */
int store_delivery_queue_segment(struct store *s, int64_t campaign_id, int64_t segment_id,
				 const char *kind, int64_t occurrence, int64_t due_at,
				 int64_t now, int64_t *queued, struct err *e);

/* The segments one chunk queues together at most: one pass over its span for all of them. */
#define STORE_QUEUE_SEGMENTS 8

/* Which deliveries store_delivery_queue_chunk queues, over how many recipient ids at most. */
struct store_queue_chunk {
	int64_t campaign_id;
	const char *kind;
	int64_t occurrence;
	size_t n_segments; /* 1 to STORE_QUEUE_SEGMENTS, each of the campaign and once */
	int64_t segment_ids[STORE_QUEUE_SEGMENTS];
	int64_t due_at[STORE_QUEUE_SEGMENTS]; /* each segment's deliveries are due then */
	int64_t max_ids; /* ids looked at, every campaign's (not the segments'); 0: all left */
};

/* What one chunk did. */
struct store_queue_step {
	int64_t queued;    /* deliveries added */
	int64_t looked_at; /* recipient ids spanned: above the lowest mark, up to the new one */
	bool done;         /* every mark is at the highest recipient id: nothing is left */
};

/*
 * store_delivery_queue_segment a piece at a time, for several segments in one
 * pass: queues q's delivery for the pending recipients of its segments among
 * the next q->max_ids recipient ids above the lowest of their queue marks (a
 * span of the whole table, read by rowid: no index has the segment, db/015),
 * each segment's only above its own mark, and moves every mark below the
 * span's end to it, in the caller's transaction. The marks are the shared,
 * durable progress: another process, or the next run after a crash, carries
 * on from them, and the ledger's unique key forbids a second delivery whatever
 * happens. out->done once the span reached the highest recipient id. Returns
 * 0, ERR_SOFTWARE for a count of segments out of range, or the store's error
 * (out then counts nothing).
 */
int store_delivery_queue_chunk(struct store *s, const struct store_queue_chunk *q, int64_t now,
			       struct store_queue_step *out, struct err *e);

/* One claimed delivery. */
struct store_claim {
	int64_t delivery_id;
	int64_t recipient_id;
	char kind[12];
	int64_t occurrence;
	int attempts; /* including this one */
	bool possibly_duplicated;
};

/*
 * Atomically moves up to max due deliveries of a campaign (queued or deferred,
 * due_at <= now) to 'sending', claimed by run_id until lease_until, and
 * returns them in out (an array of at least max). One statement: two senders
 * can never claim the same row.
 */
int store_delivery_claim(struct store *s, int64_t campaign_id, const char *run_id, int64_t now,
			 int64_t lease_until, size_t max, struct store_claim *out, size_t *n,
			 struct err *e);

/*
 * Calls fn with each run that has deliveries 'sending', and the latest lease
 * among them (so the caller can tell a dead run from a live one).
 */
int store_delivery_claimants(struct store *s,
			     int (*fn)(void *ud, const char *run_id, int64_t lease_until), void *ud,
			     struct err *e);

/*
 * Re-queues the deliveries that dead_run left 'sending' (the caller decided it
 * is dead), marking them possibly duplicated and recording, as run_id, an
 * attempt 'recovered'. *recovered is increased by their number.
 */
int store_delivery_recover(struct store *s, const char *dead_run, const char *run_id, int64_t now,
			   int64_t *recovered, struct err *e);

/* How one attempt ended, to be written to the ledger. */
struct store_settlement {
	int64_t delivery_id;
	const char *state;       /* sent, deferred, failed, suppressed, cancelled, queued */
	int64_t due_at;          /* deferred/queued: the next attempt */
	const char *outcome;     /* the attempt's outcome: sent, deferred, failed, throttled, ... */
	const char *relay;
	int code;                /* SMTP reply code or 0 */
	const char *reply;       /* server reply text or NULL */
	const char *local_error; /* cutoff's own account or NULL */
	const char *message_id;
	const char *reason;      /* failed/suppressed/cancelled: why */
	bool attempted;          /* an SMTP transaction happened: record an attempt row */
	bool uncount;            /* not the recipient's attempt (relay down): attempts - 1 */
};

/*
 * Settles a claimed delivery: only if it is still 'sending' and claimed by
 * run_id (a row recovered by another run is left alone; *applied tells).
 */
int store_delivery_settle(struct store *s, const char *run_id, int64_t now,
			  const struct store_settlement *st, bool *applied, struct err *e);

/*
 * Settles t[0..n-1] as store_delivery_settle does each, in the caller's transaction, and
 * says in applied[i] whether t[i] was; the attempt rows of those applied are written after
 * the settlements, in the order of t, several to a statement. On error nothing tells which
 * were written: roll the transaction back.
 */
int store_delivery_settle_batch(struct store *s, const char *run_id, int64_t now,
				const struct store_settlement *const *t, size_t n, bool *applied,
				struct err *e);

/*
 * Fails every queued or deferred delivery of a campaign with reason 'expired'
 * (the cutoff has passed: sending now would be pointless). *expired counts them.
 */
int store_delivery_expire(struct store *s, int64_t campaign_id, int64_t now, int64_t *expired,
			  struct err *e);

/*
 * How many deliveries of a campaign are queued or deferred and due at now: the same figure as
 * store_delivery_counts' due, through the index of due deliveries instead of a scan of the
 * campaign's every delivery (the daily run asks it on days with nothing to send).
 */
int store_delivery_due(struct store *s, int64_t campaign_id, int64_t now, int64_t *due,
		       struct err *e);

/*
 * Calls fn with each distinct, non-empty time zone among the first `sample` recipients of
 * the campaign by user id (its (campaign_id, user_id) index, not sorted: a bounded read,
 * `sample` table lookups whatever the campaign's size and the other campaigns');
 * tz is valid during the call only, and fn returning non-zero stops (returned). For the
 * sender's warm-up before its workers fork. Returns 0, fn's value, or ERR_IO.
 */
int store_recipient_zones(struct store *s, int64_t campaign_id, int64_t sample,
			  int (*fn)(void *ud, const char *tz), void *ud, struct err *e);

/* Deliveries of a campaign by state, and those due now. */
struct store_delivery_counts {
	int64_t queued, sending, sent, deferred, failed, bounced, suppressed, cancelled;
	int64_t due;                 /* queued or deferred with due_at <= now */
	int64_t possibly_duplicated;
};
int store_delivery_counts(struct store *s, int64_t campaign_id, int64_t now,
			  struct store_delivery_counts *out, struct err *e);

#endif
