/* store_internal.h — what the files of the store module share (store.c, store_bounces.c,
 * store_login.c, store_report.c, store_ledger.c):
 * the connection and three helpers. Nothing outside the store module includes this. */
#ifndef CUTOFF_STORE_INTERNAL_H
#define CUTOFF_STORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "err.h"
#include "store.h"
#include "util.h"

/* Room for store.c's cache of prepared statements (store.c asserts it is enough). */
#define STORE_MAX_STATEMENTS 128

/* Logins a connection recorded inside its open transaction and has not inserted yet
 * (store_login.c): a full set goes in with one multi-row INSERT, the rest when the transaction
 * commits (store_login_flush). */
#define STORE_LOGIN_CHUNK 64

struct store_login_rows {
	struct buf text; /* their strings, each NUL-terminated */
	struct {
		size_t user, version, platform; /* offsets in text; SIZE_MAX: NULL */
		int64_t at;
		const char *outcome; /* a static string */
	} v[STORE_LOGIN_CHUNK];
	size_t n;
};

/* The keys of known users' logins (outcome not 'unknown') inserted in the open transaction,
 * not yet in login_by_user: they go in sorted when the transaction's logins are flushed. */
struct store_login_keys {
	struct buf text; /* the user ids, each NUL-terminated */
	struct store_login_key {
		uint64_t head; /* the user id's first 8 bytes, big-endian: most orders decided here */
		size_t user;   /* offset in text */
		int64_t at, id;
	} *v;
	size_t n, cap;
};

/* The keys of login_reminder_tail's claims a connection knows (store_login.c). */
struct store_claims;

struct store {
	sqlite3 *db;
	char *path;
	int version_at_open;
	sqlite3_stmt *stmts[STORE_MAX_STATEMENTS]; /* store.c's own, indexed by its enum */
	sqlite3_stmt *login_stmts[48];             /* store_login.c's, indexed by its enum */
	sqlite3_stmt *report_stmts[32];            /* store_report.c's, indexed by its enum */
	sqlite3_stmt *ledger_stmts[16];            /* store_ledger.c's, indexed by its enum */
	sqlite3_stmt *keys_stmts[16];              /* store_keys.c's, indexed by its enum */
	struct store_login_rows logins;            /* recorded, not yet inserted */
	struct store_login_keys login_keys;        /* inserted into login, not login_by_user */
	int64_t login_first; /* the open transaction's first login inserted (its id); 0: none */
	bool login_index_later; /* leave the keys to store_login_index (db/012_login_tail.sql) */
	int wal_frames; /* in the WAL after the last commit, while own checkpoints are off */
	struct store_claims *claims; /* the tail's claims (db/013), or NULL before the first */
	struct store_defer *defer;   /* an import's deferred address keys (store_keys.c), or NULL */
	int import_cache_kib;        /* the page cache before store_import_mode halved it; 0 */
	bool claims_synced;          /* claims read in the open transaction */
	bool claims_dirty;           /* claims holds some of the open transaction's */
};

/*
 * Fills e from the connection's last error, "database PATH: WHAT: sqlite's message": busy or
 * locked is ERR_TEMPFAIL, a constraint ERR_REFUSED, anything else ERR_IO. Returns the code.
 */
int store_db_error(struct store *s, struct err *e, const char *what);

/* Binds v as text parameter i (SQLITE_STATIC: v must outlive the step), NULL when v is NULL
 * or empty. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);

/* Steps a statement that returns no rows (or ignores them) and resets it; 0 or
 * store_db_error's code. */
int store_step_done(struct store *s, sqlite3_stmt *st, const char *what, struct err *e);

/* Fills r from a row whose columns are store.c's recipient columns, in its order (id,
 * campaign_id, user_id, email, name, locale, timezone, client, version, platform, os, attrs,
 * segment_id, digest, state); strings stay valid until the statement moves on. */
void store_recipient_from_row(sqlite3_stmt *st, struct store_recipient *r);

/*
 * The statement in *slot (a file's cache of prepared statements), reset with its bindings
 * cleared; prepared from sql (persistent) on first use and kept in *slot. NULL with e filled
 * ("database PATH: WHAT: ...") when it cannot be prepared. store_close finalizes the caches.
 */
sqlite3_stmt *store_cached(struct store *s, sqlite3_stmt **slot, const char *sql,
			   const char *what, struct err *e);

/* Inserts the logins recorded in the open transaction and not inserted yet, and (unless
 * store_login_index_later) the keys of every login not in login_by_user yet, moving
 * login_indexed.through to the last (store_commit does it first; a reader of the login tables
 * on this connection too). They are dropped either way: after a failure the transaction is
 * to be rolled back. 0 or store_db_error's code. */
int store_login_flush(struct store *s, struct err *e);

/* Drops the recorded logins and keys not inserted yet (store_rollback, store_close). */
void store_login_drop(struct store *s);

/* The transaction ended, committed or not (store_commit, store_rollback, store_begin): the
 * claims kept in memory are read again at the next one's first claim; those of a transaction
 * that was not committed are all read again. */
void store_login_claims_end(struct store *s, bool committed);

/* Frees the claims kept in memory (store_close). */
void store_login_claims_free(struct store *s);

/* The suppression table's key of a normalised address: lower-case hex SHA-256, NUL-terminated
 * (the key survives forgetting the address). */
void store_address_key(const char *email, char out[65]);
/* The holder of address key key in campaign_id (db/017): in recipient_key, or among this
 * connection's deferred keys (store_keys_defer; a holder recorded there counts while its row
 * still has the key). 1 with *id and its address in email[0, size), 0 for none, or the
 * database error. */
int store_keys_holder(struct store *s, int64_t key, int64_t campaign_id, int64_t *id,
		      char *email, size_t size, struct err *e);
/* Asks the CPU for the memory where store_keys_holder will look key up (a run's rows are
 * prefetched together, so that their cache misses overlap). */
void store_keys_prefetch(const struct store *s, int64_t key, int64_t campaign_id);
/* Recipient id (just stored with email_key = key) holds key: into recipient_key, or into the
 * deferred keys when id is in this connection's span (store_keys_room made room before the row
 * was written). 0 or the database error. */
int store_keys_record(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
		      struct err *e);
/* The connection's page cache in KiB (as cache_size was set, in KiB or in pages). 0 or the
 * database error. */
int store_cache_kib(struct store *s, int *kib, struct err *e);

/* Most keys one statement records (a run of inserts, store_recipient_insert_run). */
#define STORE_KEYS_ROOM_MAX 64
/* Makes room for n (<= STORE_KEYS_ROOM_MAX) more deferred keys of campaign_id before the rows
 * that record them are written: when they would not fit, every key of the span so far goes
 * into recipient_key first. 0 or the database error. */
int store_keys_room(struct store *s, int64_t campaign_id, size_t n, struct err *e);
/* Recipient id no longer holds key (its address changed, or is gone): out of recipient_key,
 * and the key handed on to the campaign's first other recipient stored without a key because
 * its address shares this one (a case variant), so that a key without a holder never has
 * such a row (an address whose key nobody holds is then free). 0 or the database error. */
int store_keys_leave(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
		     struct err *e);
/* The key recipient id holds now, its campaign, and (email not NULL) its address in
 * email[0, size): 1, 0 when it holds none (no address, or a key another address holds), or the
 * database error. */
int store_keys_stored(struct store *s, int64_t id, int64_t *key, int64_t *campaign_id,
		      char *email, size_t size, struct err *e);
/* The same for whatever key recipient id holds now (none: nothing), before its address is
 * erased (`cutoff forget`). 0 or the database error. */
int store_keys_leave_recipient(struct store *s, int64_t id, struct err *e);
/* Recipient id no longer holds key, without handing it on (store_keys_leave). 0 or the
 * database error. */
int store_keys_unrecord(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
			struct err *e);
/* Whether recipient_id of campaign_id is in this connection's span of deferred keys. */
bool store_keys_deferred(const struct store *s, int64_t campaign_id, int64_t recipient_id);

/* SQL: the ids of the recipients whose address equals the text X (an SQL expression such as
 * "?2") up to the case of its ASCII letters, as `email = X COLLATE NOCASE` says (db/016,
 * db/017): the holders of X's key in every campaign (recipient_key), the rows that share a key
 * with another address and are stored without one (recipient_email_spill), and the holders
 * among an import's recipients whose keys are not added yet (import_pending's spans: a scan
 * of each span while an import runs, nothing otherwise). A key's holder may be another
 * address whose key collides: the caller still compares the address. */
#define STORE_ADDRESS_IDS(X)                                                                    \
	"(SELECT recipient_id FROM recipient_key WHERE email_key = cutoff_address_key(" X ")"   \
	" UNION ALL SELECT id FROM recipient WHERE email_key IS NULL AND email = " X            \
	" COLLATE NOCASE"                                                                       \
	" UNION ALL SELECT r.id FROM import_pending p CROSS JOIN recipient r ON r.id >= p.first_id"\
	" WHERE +r.campaign_id = p.campaign_id AND +r.email_key = cutoff_address_key(" X "))"

/* SQL: the ids of campaign C's recipients whose user id is K or whose address is exactly K
 * (C and K SQL expressions such as "?1"). A UNION, not an OR: without ANALYZE's statistics
 * SQLite would read the OR by a scan of the campaign (the unary + keeps it off the campaign's
 * indexes for the address). */
#define STORE_PERSON_IDS(C, K)                                                               \
	"(SELECT id FROM recipient WHERE campaign_id = " C " AND user_id = " K                  \
	" UNION ALL SELECT id FROM recipient WHERE id IN " STORE_ADDRESS_IDS(K)                \
	" AND +campaign_id = " C " AND email = " K ")"

#endif
