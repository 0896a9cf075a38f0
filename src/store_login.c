/* store_login.c — the scheduler's SQL (part of the store module): logins, login reminders,
 * completion, queue marks. */
#include "store_login.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "util.h"

enum login_stmt {
	LS_RECIPIENT,
	LS_LOGIN_ADD,
	LS_LOGIN_ADD_4,
	LS_LOGIN_ADD_16,
	LS_LOGIN_ADD_CHUNK,
	LS_KEY_ADD,
	LS_KEY_ADD_4,
	LS_KEY_ADD_16,
	LS_KEY_ADD_CHUNK,
	LS_INDEXED,
	LS_INDEXED_SET,
	LS_TAIL_INDEX,
	LS_BULK_TABLE,
	LS_BULK_CLEAR,
	LS_BULK_FILL,
	LS_BULK_PIECE,
	LS_BULK_BOUND,
	LS_REMINDER_CLAIM,
	LS_REMINDER_CLAIM_TAIL,
	LS_REMINDER_RELEASE,
	LS_REMINDER_RELEASE_TAIL,
	LS_REMINDER_RELEASE_SCAN,
	LS_CLAIMS_MARK,
	LS_CLAIMS_READ,
	LS_CLAIMS_BOUNDS,
	LS_CLAIMS_TABLE,
	LS_CLAIMS_CLEAR,
	LS_CLAIMS_FILL,
	LS_CLAIMS_PIECE,
	LS_CLAIMS_PIECE_ALL,
	LS_CLAIMS_BOUND,
	LS_CLAIMS_MOVE_ALL,
	LS_CLAIMS_DONE,
	LS_CLAIMS_EPOCH,
	LS_REMINDER_EACH,
	LS_CAMPAIGNS_SIGNATURE,
	LS_COMPLETE,
	LS_COMPLETE_QUEUED,
	LS_COMPLETE_CANCEL,
	LS_COMPLETE_EVENT,
	LS_MARK_SET,
	LS_COUNT
};

/* STORE_LOGIN_CHUNK rows of the login table's five values. */
#define LOGIN_ROW "(?, ?, ?, ?, ?)"
#define LOGIN_ROWS_4 LOGIN_ROW ", " LOGIN_ROW ", " LOGIN_ROW ", " LOGIN_ROW
#define LOGIN_ROWS_16 LOGIN_ROWS_4 ", " LOGIN_ROWS_4 ", " LOGIN_ROWS_4 ", " LOGIN_ROWS_4
#define LOGIN_ROWS_64 LOGIN_ROWS_16 ", " LOGIN_ROWS_16 ", " LOGIN_ROWS_16 ", " LOGIN_ROWS_16
#define KEY_ROW "(?, ?, ?)"
#define KEY_ROWS_4 KEY_ROW ", " KEY_ROW ", " KEY_ROW ", " KEY_ROW
#define KEY_ROWS_16 KEY_ROWS_4 ", " KEY_ROWS_4 ", " KEY_ROWS_4 ", " KEY_ROWS_4
#define KEY_ROWS_64 KEY_ROWS_16 ", " KEY_ROWS_16 ", " KEY_ROWS_16 ", " KEY_ROWS_16
_Static_assert(STORE_LOGIN_CHUNK == 64, "LOGIN_ROWS_64 holds STORE_LOGIN_CHUNK rows");

static const char *const login_sql[LS_COUNT] = {
	[LS_RECIPIENT] =
		"SELECT id, campaign_id, user_id, email, name, locale, timezone, client, version,"
		" platform, os, attrs, coalesce(segment_id, 0), digest, state"
		" FROM recipient WHERE campaign_id = ?1 AND user_id = ?2",
	[LS_LOGIN_ADD] =
		"INSERT INTO login (user_id, at, client_version, platform, outcome)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	/* OR FAIL: a statement that writes many rows and may abort keeps a statement journal
	 * (the prior content of every page it changes, spilled to a temporary file past 64 KiB:
	 * two writes per page, as many as the WAL's own); with FAIL it keeps none. A failure
	 * still ends the batch, whose whole transaction is rolled back. */
	[LS_LOGIN_ADD_4] =
		"INSERT OR FAIL INTO login (user_id, at, client_version, platform, outcome) VALUES "
		LOGIN_ROWS_4,
	[LS_LOGIN_ADD_16] =
		"INSERT OR FAIL INTO login (user_id, at, client_version, platform, outcome) VALUES "
		LOGIN_ROWS_16,
	[LS_LOGIN_ADD_CHUNK] =
		"INSERT OR FAIL INTO login (user_id, at, client_version, platform, outcome) VALUES "
		LOGIN_ROWS_64,
	[LS_KEY_ADD] = "INSERT INTO login_by_user (user_id, at, login_id) VALUES (?1, ?2, ?3)",
	[LS_KEY_ADD_4] = "INSERT OR FAIL INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_4,
	[LS_KEY_ADD_16] = "INSERT OR FAIL INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_16,
	[LS_KEY_ADD_CHUNK] = "INSERT OR FAIL INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_64,
	[LS_INDEXED] =
		"SELECT through, (SELECT coalesce(max(id), 0) FROM login) FROM login_indexed",
	/* Never back: a bulk in steps may end after a commit that indexed further. */
	[LS_INDEXED_SET] = "UPDATE login_indexed SET through = max(through, ?1)",
	/* Key order: consecutive keys share the B-tree's leaves, each written once a commit. OR
	 * IGNORE: a bulk in steps that did not finish may have added some keys of the tail. */
	[LS_TAIL_INDEX] =
		"INSERT OR IGNORE INTO login_by_user (user_id, at, login_id)"
		" SELECT user_id, at, id FROM login WHERE id > ?1 AND id <= ?2"
		" AND outcome <> 'unknown' ORDER BY user_id, at, id",
	/* A bulk in steps (store_login_bulk_step): the tail's keys, sorted by their primary key,
	 * in the connection's own temporary database. */
	[LS_BULK_TABLE] =
		"CREATE TEMP TABLE IF NOT EXISTS login_bulk (user_id TEXT NOT NULL,"
		" at INTEGER NOT NULL, login_id INTEGER NOT NULL,"
		" PRIMARY KEY (user_id, at, login_id)) WITHOUT ROWID",
	[LS_BULK_CLEAR] = "DELETE FROM temp.login_bulk",
	[LS_BULK_FILL] =
		"INSERT OR IGNORE INTO temp.login_bulk (user_id, at, login_id)"
		" SELECT user_id, at, id FROM login WHERE id > ?1 AND id <= ?2"
		" AND outcome <> 'unknown'",
	/* A piece: the next ?1 sorted keys after the last one moved (?2, ?3, ?4), read on from there
	 * (a seek of the sorted table's key), not deleted: a delete of each piece's keys cost more
	 * than the piece itself (bench/serve, 15 s: 412 against 305 ms). */
	[LS_BULK_PIECE] =
		"INSERT OR IGNORE INTO login_by_user (user_id, at, login_id)"
		" SELECT user_id, at, login_id FROM temp.login_bulk"
		" WHERE (user_id, at, login_id) > (?2, ?3, ?4)"
		" ORDER BY user_id, at, login_id LIMIT ?1",
	/* The piece's last key, and whether any follows it. */
	[LS_BULK_BOUND] =
		"SELECT user_id, at, login_id FROM temp.login_bulk"
		" WHERE (user_id, at, login_id) > (?2, ?3, ?4)"
		" ORDER BY user_id, at, login_id LIMIT 2 OFFSET ?1",
	/* The key is not among the tail's claims (checked in memory first). */
	[LS_REMINDER_CLAIM] =
		"INSERT INTO login_reminder_indexed (recipient_id, period_start, campaign_id,"
		" period_index, shown_at, client_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
		" ON CONFLICT (recipient_id, period_start) DO NOTHING",
	/* Appended: the commit's claims share the tail's last page (db/013). */
	[LS_REMINDER_CLAIM_TAIL] =
		"INSERT INTO login_reminder_tail (recipient_id, period_start, campaign_id,"
		" period_index, shown_at, client_version) SELECT ?1, ?2, ?3, ?4, ?5, ?6"
		" WHERE NOT EXISTS (SELECT 1 FROM login_reminder_indexed"
		"  WHERE recipient_id = ?1 AND period_start = ?2)",
	[LS_REMINDER_RELEASE] =
		"DELETE FROM login_reminder_indexed WHERE recipient_id = ?1 AND period_start = ?2",
	[LS_REMINDER_RELEASE_TAIL] = "DELETE FROM login_reminder_tail WHERE id = ?1",
	[LS_REMINDER_RELEASE_SCAN] =
		"DELETE FROM login_reminder_tail WHERE recipient_id = ?1 AND period_start = ?2",
	[LS_CLAIMS_MARK] =
		"SELECT epoch, (SELECT coalesce(max(id), 0) FROM login_reminder_tail)"
		" FROM login_reminder_tail_epoch",
	[LS_CLAIMS_READ] =
		"SELECT id, recipient_id, period_start FROM login_reminder_tail WHERE id > ?1",
	[LS_CLAIMS_BOUNDS] =
		"SELECT coalesce(min(id) - 1, 0), coalesce(max(id), 0) FROM login_reminder_tail",
	[LS_CLAIMS_TABLE] =
		"CREATE TEMP TABLE IF NOT EXISTS claim_bulk (recipient_id INTEGER NOT NULL,"
		" period_start INTEGER NOT NULL, tail_id INTEGER NOT NULL, campaign_id INTEGER,"
		" period_index INTEGER, shown_at INTEGER, client_version TEXT,"
		" PRIMARY KEY (recipient_id, period_start)) WITHOUT ROWID",
	[LS_CLAIMS_CLEAR] = "DELETE FROM temp.claim_bulk",
	[LS_CLAIMS_FILL] =
		"INSERT OR IGNORE INTO temp.claim_bulk (recipient_id, period_start, tail_id,"
		" campaign_id, period_index, shown_at, client_version)"
		" SELECT recipient_id, period_start, id, campaign_id, period_index, shown_at,"
		" client_version FROM login_reminder_tail WHERE id > ?1 AND id <= ?2",
	/* Key order: the subquery's, a co-routine that scans the sorted table (an ORDER BY
	 * outside it sorted the rows again). Only claims still in the tail: a deleted
	 * recipient's left with it. OR IGNORE: a bulk cut short may have copied some already. */
	[LS_CLAIMS_PIECE] =
		"INSERT OR IGNORE INTO login_reminder_indexed (recipient_id, period_start, campaign_id,"
		" period_index, shown_at, client_version)"
		" SELECT recipient_id, period_start, campaign_id, period_index, shown_at,"
		" client_version FROM (SELECT * FROM temp.claim_bulk"
		"  WHERE (recipient_id, period_start) > (?2, ?3)"
		"  ORDER BY recipient_id, period_start LIMIT ?1) b"
		" WHERE EXISTS (SELECT 1 FROM login_reminder_tail t WHERE t.id = b.tail_id)",
	/* The same when no row left the tail since the bulk began (its epoch unchanged): each
	 * sorted claim is still there, and the probe of the tail, a fifth of a piece, is spared. */
	[LS_CLAIMS_PIECE_ALL] =
		"INSERT OR IGNORE INTO login_reminder_indexed (recipient_id, period_start, campaign_id,"
		" period_index, shown_at, client_version)"
		" SELECT recipient_id, period_start, campaign_id, period_index, shown_at,"
		" client_version FROM temp.claim_bulk WHERE (recipient_id, period_start) > (?2, ?3)"
		" ORDER BY recipient_id, period_start LIMIT ?1",
	[LS_CLAIMS_BOUND] =
		"SELECT recipient_id, period_start FROM temp.claim_bulk"
		" WHERE (recipient_id, period_start) > (?2, ?3)"
		" ORDER BY recipient_id, period_start LIMIT 2 OFFSET ?1",
	[LS_CLAIMS_MOVE_ALL] =
		"INSERT OR IGNORE INTO login_reminder_indexed (recipient_id, period_start, campaign_id,"
		" period_index, shown_at, client_version)"
		" SELECT recipient_id, period_start, campaign_id, period_index, shown_at,"
		" client_version FROM login_reminder_tail WHERE id <= ?1"
		" ORDER BY recipient_id, period_start",
	[LS_CLAIMS_DONE] = "DELETE FROM login_reminder_tail WHERE id <= ?1",
	[LS_CLAIMS_EPOCH] = "UPDATE login_reminder_tail_epoch SET epoch = epoch + 1",
	[LS_REMINDER_EACH] =
		"SELECT period_index, shown_at FROM login_reminder WHERE recipient_id = ?1"
		" ORDER BY period_start",
	[LS_CAMPAIGNS_SIGNATURE] =
		"SELECT coalesce(group_concat(id || ':' || state || ':' || digest || ':'"
		" || cutoff_at || ':' || updated_at, ','), '')"
		" FROM (SELECT * FROM campaign ORDER BY id)",
	[LS_COMPLETE] =
		"UPDATE recipient SET state = 'completed', completed_at = ?2, updated_at = ?2"
		" WHERE id = ?1 AND state = 'pending'",
	/* Whether there is anything to cancel: one probe of the covering index delivery_person,
	 * where the UPDATE below needs two ephemeral tables (its row set and the IN list) even
	 * when it changes nothing, as it does for most completions. */
	[LS_COMPLETE_QUEUED] =
		"SELECT EXISTS (SELECT 1 FROM delivery WHERE recipient_id = ?1"
		" AND +state IN ('queued', 'deferred'))",
	[LS_COMPLETE_CANCEL] =
		"UPDATE delivery SET state = 'cancelled', reason = 'completed', updated_at = ?2"
		" WHERE recipient_id = ?1 AND state IN ('queued', 'deferred')",
	[LS_COMPLETE_EVENT] =
		"INSERT INTO event (campaign_id, recipient_id, at, kind, detail)"
		" VALUES (?1, ?2, ?3, 'completed', ?4)",
	[LS_MARK_SET] =
		"INSERT INTO queue_mark (segment_id, kind, occurrence, watermark, queued_at)"
		" VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (segment_id, kind, occurrence)"
		" DO UPDATE SET watermark = excluded.watermark, queued_at = excluded.queued_at",
};

_Static_assert(LS_COUNT <= sizeof((struct store *)0)->login_stmts /
				   sizeof(((struct store *)0)->login_stmts[0]),
	       "raise the size of struct store's login_stmts");

/* The cached statement id, reset with its bindings cleared; NULL with e filled. */
static sqlite3_stmt *stmt(struct store *s, enum login_stmt id, struct err *e)
{
	return store_cached(s, &s->login_stmts[id], login_sql[id], "preparing a statement", e);
}

/*
 * The rows a statement of the login and login_by_user inserts take at once, largest first, and
 * those statements. A commit's rows go in as few statements as these sizes make (25: 16, 4, 4
 * and 1): cutoff serve commits 20 to 50 logins at a time, and row by row a statement's own
 * cost (bindings cleared, reset, its program started and halted) was a third of inserting a
 * row into the login table (callgrind: 5,000 instructions a row alone, 3,400 in a chunk).
 */
static const size_t chunk_rows[] = {STORE_LOGIN_CHUNK, 16, 4, 1};
static const enum login_stmt chunk_logins[] = {LS_LOGIN_ADD_CHUNK, LS_LOGIN_ADD_16,
					       LS_LOGIN_ADD_4, LS_LOGIN_ADD};
static const enum login_stmt chunk_keys[] = {LS_KEY_ADD_CHUNK, LS_KEY_ADD_16, LS_KEY_ADD_4,
					     LS_KEY_ADD};

/* The largest chunk of at most n rows (n > 0): its index in chunk_rows. */
static size_t chunk_for(size_t n)
{
	size_t c = 0;

	while (chunk_rows[c] > n)
		c++;
	return c;
}


int store_login_recipient(struct store *s, int64_t campaign_id, const char *user_id,
			  int (*fn)(void *ud, const struct store_recipient *r), void *ud,
			  struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_RECIPIENT, e);
	struct store_recipient r;
	int rc, step;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		store_recipient_from_row(st, &r);
		rc = fn(ud, &r); /* the row stays valid: fn uses other statements */
	} else {
		rc = step == SQLITE_DONE ? 1 : store_db_error(s, e, "looking up a login's user");
	}
	sqlite3_reset(st);
	return rc;
}

/* Binds one login's five values from parameter first on. */
static void bind_login(sqlite3_stmt *st, int first, const char *user_id, int64_t at,
		       const char *client_version, const char *platform, const char *outcome)
{
	sqlite3_bind_text(st, first, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, first + 1, at);
	store_bind_text(st, first + 2, client_version);
	store_bind_text(st, first + 3, platform);
	sqlite3_bind_text(st, first + 4, outcome, -1, SQLITE_STATIC);
}

/* Whether a login with this outcome is found by its user (login_by_user). */
static bool known(const char *outcome)
{
	return strcmp(outcome, "unknown") != 0;
}

static void bind_key(sqlite3_stmt *st, int first, const char *user_id, int64_t at, int64_t id)
{
	sqlite3_bind_text(st, first, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, first + 1, at);
	sqlite3_bind_int64(st, first + 2, id);
}

/* One login outside a transaction: in one of its own, as inside one. */
static int login_insert(struct store *s, const char *user_id, int64_t at,
			const char *client_version, const char *platform, const char *outcome,
			struct err *e)
{
	int rc = store_begin(s, e);

	if (rc != 0)
		return rc;
	if ((rc = store_login_record(s, user_id, at, client_version, platform, outcome, e)) == 0)
		rc = store_commit(s, e);
	if (rc != 0)
		store_rollback(s);
	return rc;
}

/* A recorded string's offset in the rows' text, SIZE_MAX for NULL. */
static size_t keep(struct buf *text, const char *v)
{
	size_t at = text->len;

	if (v == NULL)
		return SIZE_MAX;
	buf_append(text, v, strlen(v) + 1);
	return at;
}

static const char *kept(const struct buf *text, size_t at)
{
	return at == SIZE_MAX ? NULL : text->data + at;
}

void store_login_drop(struct store *s)
{
	s->logins.n = 0;
	buf_reset(&s->logins.text);
	s->login_keys.n = 0;
	buf_reset(&s->login_keys.text);
	s->login_first = 0;
}

/* A string's first 8 bytes (NUL-padded) as a number that orders as the bytes do. */
static uint64_t head_of(const char *v)
{
	uint64_t h = 0;
	size_t i = 0;

	for (; i < 8 && v[i] != '\0'; i++)
		h = h << 8 | (unsigned char)v[i];
	return h << (8 * (8 - i));
}

/* Keeps a known login's key for login_by_user. */
static void key_keep(struct store_login_keys *k, const char *user_id, int64_t at, int64_t id)
{
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 1024;
		k->v = xrealloc(k->v, k->cap * sizeof *k->v);
	}
	k->v[k->n++] = (struct store_login_key){head_of(user_id), keep(&k->text, user_id), at, id};
}

/* Key order, as login_by_user's primary key sorts (BINARY: bytes, as strcmp). Equal heads
 * with a NUL in them mean equal strings; otherwise the rest decides. */
static int key_cmp(const void *pa, const void *pb, void *text)
{
	const struct store_login_key *a = pa, *b = pb;
	int c = (a->head > b->head) - (a->head < b->head);

	if (c == 0 && (a->head & 0xff) != 0)
		c = strcmp((const char *)text + a->user + 8, (const char *)text + b->user + 8);
	if (c != 0)
		return c;
	if (a->at != b->at)
		return a->at < b->at ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

/* Inserts the kept keys in key order, STORE_LOGIN_CHUNK to a statement, and drops them. */
static int keys_flush(struct store *s, struct err *e)
{
	struct store_login_keys *k = &s->login_keys;
	sqlite3_stmt *st = NULL;
	size_t i = 0;
	int rc = 0;

	if (k->n == 0)
		return 0;
	qsort_r(k->v, k->n, sizeof *k->v, key_cmp, k->text.data);
	while (rc == 0 && i < k->n) {
		size_t c = chunk_for(k->n - i);

		if ((st = stmt(s, chunk_keys[c], e)) == NULL)
			return e->code;
		for (size_t j = 0; j < chunk_rows[c]; j++)
			bind_key(st, (int)(3 * j + 1), k->text.data + k->v[i + j].user,
				 k->v[i + j].at, k->v[i + j].id);
		rc = store_step_done(s, st, "recording logins", e);
		i += chunk_rows[c];
	}
	k->n = 0;
	buf_reset(&k->text);
	return rc;
}

/* Binds recorded row i's five values from parameter first on. */
static void bind_kept(sqlite3_stmt *st, int first, const struct store_login_rows *l, size_t i)
{
	bind_login(st, first, kept(&l->text, l->v[i].user), l->v[i].at,
		   kept(&l->text, l->v[i].version), kept(&l->text, l->v[i].platform),
		   l->v[i].outcome);
}

/* Inserts the recorded rows (a full set in one statement; what a commit finds left, in chunks:
 * chunk_rows) and, unless the keys are left for later, keeps the keys of the known ones, whose
 * ids follow each other (each new rowid is the largest plus one); notes the transaction's
 * first id; the rows are dropped either way. */
static int rows_flush(struct store *s, struct err *e)
{
	struct store_login_rows *l = &s->logins;
	sqlite3_stmt *st = NULL;
	size_t i = 0;
	int rc = 0;

	while (rc == 0 && i < l->n) {
		size_t c = chunk_for(l->n - i);

		if ((st = stmt(s, chunk_logins[c], e)) == NULL) {
			rc = e->code;
			break;
		}
		for (size_t j = 0; j < chunk_rows[c]; j++)
			bind_kept(st, (int)(5 * j + 1), l, i + j);
		rc = store_step_done(s, st, "recording logins", e);
		i += chunk_rows[c];
	}
	if (rc == 0 && l->n > 0) {
		int64_t first = sqlite3_last_insert_rowid(s->db) - (int64_t)l->n + 1;
		if (s->login_first == 0)
			s->login_first = first;
		for (i = 0; !s->login_index_later && i < l->n; i++)
			if (known(l->v[i].outcome))
				key_keep(&s->login_keys, kept(&l->text, l->v[i].user), l->v[i].at,
					 first + (int64_t)i);
	}
	l->n = 0;
	buf_reset(&l->text);
	return rc;
}

/* Reads login_indexed.through and the last login's id. */
static int tail_bounds(struct store *s, int64_t *through, int64_t *last, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_INDEXED, e);
	int step;

	*through = *last = 0;
	if (st == NULL)
		return e->code;
	if ((step = sqlite3_step(st)) == SQLITE_ROW) {
		*through = sqlite3_column_int64(st, 0);
		*last = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (step == SQLITE_DONE)
		return err_set(e, ERR_IO, "database %s: the table login_indexed has lost its row:"
			       " restore it (INSERT INTO login_indexed VALUES (1, 0), then run"
			       " DELETE FROM login_by_user)", s->path);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "reading the logins' index mark");
}

static int through_set(struct store *s, int64_t through, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_INDEXED_SET, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, through);
	return store_step_done(s, st, "moving the logins' index mark", e);
}

/* Adds the keys of the known logins in (through, last] in key order; moves through to last. */
static int tail_index(struct store *s, int64_t through, int64_t last, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_TAIL_INDEX, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, through);
	sqlite3_bind_int64(st, 2, last);
	if ((rc = store_step_done(s, st, "indexing logins", e)) != 0)
		return rc;
	return through_set(s, last, e);
}

/* The keys of the transaction's logins into login_by_user: the kept ones when the tail ends
 * just before them (as always, unless a connection that indexes later left one), else the
 * whole tail read back from the login table. */
static int index_own(struct store *s, struct err *e)
{
	int64_t through, last;
	int rc = tail_bounds(s, &through, &last, e);

	if (rc != 0)
		return rc;
	if (through < s->login_first - 1)
		return tail_index(s, through, last, e);
	if ((rc = keys_flush(s, e)) != 0)
		return rc;
	return through_set(s, last, e);
}

int store_login_flush(struct store *s, struct err *e)
{
	int rc = rows_flush(s, e);

	if (rc == 0 && s->login_first != 0 && !s->login_index_later)
		rc = index_own(s, e);
	store_login_drop(s);
	return rc;
}

void store_login_index_later(struct store *s, bool later)
{
	s->login_index_later = later;
}

/* login_reminder_tail_epoch (db/013). */
static int claims_epoch(struct store *s, int64_t *epoch, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_CLAIMS_MARK, e);
	int step;

	*epoch = 0;
	if (st == NULL)
		return e->code;
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		*epoch = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "reading the login reminders' tail");
}

/* The claims' tail: ids in (*below, *top]; none when equal. */
static int claims_bounds(struct store *s, int64_t *below, int64_t *top, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_CLAIMS_BOUNDS, e);
	int step;

	*below = *top = 0;
	if (st == NULL)
		return e->code;
	if ((step = sqlite3_step(st)) == SQLITE_ROW) {
		*below = sqlite3_column_int64(st, 0);
		*top = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "reading the login reminders' tail");
}

int store_login_tail(struct store *s, int64_t *tail, struct err *e)
{
	int64_t through, last, below = 0, top = 0;
	int rc = tail_bounds(s, &through, &last, e);

	if (rc == 0)
		rc = claims_bounds(s, &below, &top, e);
	*tail = rc == 0 ? last - through + top - below : 0;
	return rc;
}

/* Runs a statement of the bulk with up to two integer parameters. */
static int bulk_run(struct store *s, enum login_stmt id, int64_t p1, int64_t p2, struct err *e)
{
	sqlite3_stmt *st = stmt(s, id, e);

	if (st == NULL)
		return e->code;
	if (sqlite3_bind_parameter_count(st) >= 1)
		sqlite3_bind_int64(st, 1, p1);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, p2);
	return store_step_done(s, st, "indexing logins", e);
}

int store_login_bulk_start(struct store *s, struct store_login_bulk *b, struct err *e)
{
	int rc;

	store_login_bulk_end(b);
	*b = (struct store_login_bulk){0};
	/* The sorted keys in memory, not in a temporary file (a bulk's: about 1 MiB) */
	if (sqlite3_exec(s->db, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) != SQLITE_OK)
		return store_db_error(s, e, "indexing logins");
	if ((rc = bulk_run(s, LS_BULK_TABLE, 0, 0, e)) != 0 ||
	    (rc = bulk_run(s, LS_BULK_CLEAR, 0, 0, e)) != 0 ||
	    (rc = bulk_run(s, LS_CLAIMS_TABLE, 0, 0, e)) != 0 ||
	    (rc = bulk_run(s, LS_CLAIMS_CLEAR, 0, 0, e)) != 0 ||
	    (rc = tail_bounds(s, &b->through, &b->last, e)) != 0 ||
	    (rc = claims_bounds(s, &b->claims_next, &b->claims_last, e)) != 0 ||
	    (rc = claims_epoch(s, &b->epoch, e)) != 0)
		return rc;
	b->next = b->through;
	b->claims_deleted = b->claims_next;
	b->keys_done = b->last <= b->through;
	b->active = !b->keys_done || b->claims_last > b->claims_next;
	return 0;
}

/* The claims up to `to` out of the tail: rows left it (the epoch moves). */
static int claims_done(struct store *s, int64_t to, struct err *e)
{
	int rc = bulk_run(s, LS_CLAIMS_DONE, to, 0, e);

	return rc != 0 ? rc : bulk_run(s, LS_CLAIMS_EPOCH, 0, 0, e);
}

/* Binds the position a part's piece reads on from, from ?2 on: after the last key moved, or
 * below every key before the first piece (login ids and recipient ids are at least 1). */
static void bind_position(sqlite3_stmt *st, const struct store_login_bulk *b)
{
	if (!b->keys_done) {
		sqlite3_bind_text(st, 2, b->key_user ? b->key_user : "", -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, b->key_user ? b->key_at : INT64_MIN);
		sqlite3_bind_int64(st, 4, b->key_user ? b->key_login : INT64_MIN);
	} else {
		sqlite3_bind_int64(st, 2, b->claim_set ? b->claim_recipient : INT64_MIN);
		sqlite3_bind_int64(st, 3, b->claim_set ? b->claim_period : INT64_MIN);
	}
}

/* The position moved to the last key of the piece just run (bound, a row of LS_BULK_BOUND or
 * LS_CLAIMS_BOUND). */
static void position_set(struct store_login_bulk *b, sqlite3_stmt *bound)
{
	if (!b->keys_done) {
		const char *user = (const char *)sqlite3_column_text(bound, 0);

		free(b->key_user);
		b->key_user = xstrdup(user ? user : "");
		b->key_at = sqlite3_column_int64(bound, 1);
		b->key_login = sqlite3_column_int64(bound, 2);
	} else {
		b->claim_recipient = sqlite3_column_int64(bound, 0);
		b->claim_period = sqlite3_column_int64(bound, 1);
		b->claim_set = true;
	}
}

/* The next `keys` sorted rows of a part moved (insert, one of its pieces' statements), and
 * the position moved past them; *left: rows follow. The sorted tables are read on, never
 * deleted from: the next bulk_start empties them. */
static int piece_move(struct store *s, struct store_login_bulk *b, enum login_stmt insert,
		      enum login_stmt bound_id, size_t keys, bool *left, struct err *e)
{
	sqlite3_stmt *st = stmt(s, insert, e), *bound;
	int rc, step;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, (int64_t)keys);
	bind_position(st, b);
	if ((rc = store_step_done(s, st, "indexing logins", e)) != 0)
		return rc;
	if ((bound = stmt(s, bound_id, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(bound, 1, (int64_t)keys - 1);
	bind_position(bound, b);
	if ((step = sqlite3_step(bound)) == SQLITE_ROW) {
		position_set(b, bound);
		step = sqlite3_step(bound);
	}
	*left = step == SQLITE_ROW;
	sqlite3_reset(bound);
	return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : store_db_error(s, e, "indexing logins");
}

/* The next `keys` sorted rows of a part into its table; at its end, the mark moved (the
 * logins') or the tail's moved claims deleted. *left: rows remain. */
static int piece_run(struct store *s, struct store_login_bulk *b, size_t keys, bool *left,
		     struct err *e)
{
	int64_t epoch = 0;
	int rc;

	if (!b->keys_done) {
		if ((rc = piece_move(s, b, LS_BULK_PIECE, LS_BULK_BOUND, keys, left, e)) == 0 &&
		    !*left)
			rc = through_set(s, b->last, e);
		return rc;
	}
	if ((rc = claims_epoch(s, &epoch, e)) != 0)
		return rc;
	return piece_move(s, b, epoch == b->epoch ? LS_CLAIMS_PIECE_ALL : LS_CLAIMS_PIECE,
			  LS_CLAIMS_BOUND, keys, left, e);
}

/*
 * One transaction: the next `keys` moved claims out of the tail, by rowid (its first pages).
 * Not all at once: 32,768 rows took 18 ms. The epoch moves with the last step only, whose
 * delete may leave the tail empty (its next rowid 1 again): until then the rows above stay,
 * and a connection that still keeps the deleted claims in memory keeps claims that are in
 * the B-tree now.
 */
static int claims_delete_step(struct store *s, struct store_login_bulk *b, size_t keys,
			      struct err *e)
{
	int64_t to = b->claims_last - b->claims_deleted > (int64_t)keys
			     ? b->claims_deleted + (int64_t)keys
			     : b->claims_last;
	int rc;

	if ((rc = store_begin(s, e)) != 0)
		return rc;
	rc = to < b->claims_last ? bulk_run(s, LS_CLAIMS_DONE, to, 0, e) : claims_done(s, to, e);
	if (rc == 0 && (rc = store_commit(s, e)) == 0) {
		b->wrote = true;
		b->claims_deleted = to;
		b->active = to < b->claims_last;
		return 0;
	}
	store_rollback(s);
	return rc;
}

/* One transaction: the next `keys` sorted keys or claims moved; the part ends once none is
 * left (then the claims' part, if any). */
static int bulk_piece(struct store *s, struct store_login_bulk *b, size_t keys, struct err *e)
{
	bool left = true;
	int rc;

	if ((rc = store_begin(s, e)) != 0)
		return rc;
	rc = piece_run(s, b, keys, &left, e);
	if (rc == 0 && (rc = store_commit(s, e)) == 0) {
		b->wrote = true;
		if (left)
			return 0;
		if (b->keys_done)
			b->claims_moved = true; /* then out of the tail (claims_delete_step) */
		b->keys_done = true;
		b->active = b->claims_moved || b->claims_last > b->claims_next;
	}
	if (rc != 0)
		store_rollback(s);
	return rc;
}

/* The next ids of a part's tail sorted into its table (a read); true when none were left. */
static int bulk_fill(struct store *s, struct store_login_bulk *b, size_t keys, bool *filled,
		     struct err *e)
{
	int64_t *next = b->keys_done ? &b->claims_next : &b->next;
	int64_t last = b->keys_done ? b->claims_last : b->last, to;
	int rc;

	*filled = *next >= last;
	if (*filled)
		return 0;
	to = last - *next > (int64_t)keys ? *next + (int64_t)keys : last;
	rc = bulk_run(s, b->keys_done ? LS_CLAIMS_FILL : LS_BULK_FILL, *next, to, e);
	if (rc == 0)
		*next = to;
	return rc;
}

int store_login_bulk_step(struct store *s, struct store_login_bulk *b, size_t keys,
			  struct err *e)
{
	bool filled = false;
	int rc;

	b->wrote = false;
	if (!b->active)
		return 0;
	if (keys == 0) /* a piece of none would still move its position past a key */
		keys = 1;
	/* a read of the tail's last pages, sorted in memory; then the sorted rows, in pieces;
	 * then the claims moved out of the tail */
	if (b->claims_moved)
		rc = claims_delete_step(s, b, keys, e);
	else if ((rc = bulk_fill(s, b, keys, &filled, e)) == 0 && filled)
		rc = bulk_piece(s, b, keys, e);
	if (rc != 0 || !b->active)
		store_login_bulk_end(b);
	return rc;
}

void store_login_bulk_end(struct store_login_bulk *b)
{
	free(b->key_user);
	b->key_user = NULL;
	b->active = false;
}

enum store_bulk_part store_login_bulk_part(const struct store_login_bulk *b)
{
	if (!b->active)
		return STORE_BULK_NONE;
	if (b->claims_moved)
		return STORE_BULK_CLAIMS_DELETE;
	if (!b->keys_done)
		return b->next < b->last ? STORE_BULK_KEYS_SORT : STORE_BULK_KEYS_ADD;
	return b->claims_next < b->claims_last ? STORE_BULK_CLAIMS_SORT : STORE_BULK_CLAIMS_MOVE;
}

/* Every claim of the tail up to `top` into login_reminder_indexed in key order, out of the tail. */
static int claims_move_all(struct store *s, int64_t top, struct err *e)
{
	int rc = bulk_run(s, LS_CLAIMS_MOVE_ALL, top, 0, e);

	return rc != 0 ? rc : claims_done(s, top, e);
}

int store_login_index(struct store *s, int64_t min_tail, int64_t *indexed, struct err *e)
{
	int64_t through = 0, last = 0, below = 0, top = 0, n = 0;
	int rc;

	*indexed = 0;
	if ((rc = store_begin(s, e)) != 0)
		return rc;
	if ((rc = tail_bounds(s, &through, &last, e)) == 0 &&
	    (rc = claims_bounds(s, &below, &top, e)) == 0 &&
	    (n = last - through + top - below) >= min_tail && n > 0) {
		if (last > through)
			rc = tail_index(s, through, last, e);
		if (rc == 0 && top > below)
			rc = claims_move_all(s, top, e);
	}
	if (rc == 0 && (rc = store_commit(s, e)) == 0 && n >= min_tail)
		*indexed = last - through;
	if (rc != 0)
		store_rollback(s);
	return rc;
}


/* ---- the tail's claims in memory (db/013) ---- */

/* A claim's key. recipient_id 0 marks a free slot, -1 one freed (probing goes on past it). */
struct claim_key {
	int64_t recipient_id, period_start;
};

struct store_claims {
	struct claim_key *v; /* open addressing, linear probing; cap a power of two */
	size_t cap, used;    /* slots, slots not free (freed ones too) */
	int64_t seen;        /* every tail row up to this id is in v */
	int64_t epoch;       /* login_reminder_tail_epoch when v was read */
	bool valid;          /* v matches the tail as of seen and epoch */
	int64_t last_id;     /* the open transaction's last claim in the tail, 0: none */
	struct claim_key last;
};

static size_t claims_slot(const struct store_claims *c, struct claim_key k)
{
	uint64_t h = (uint64_t)k.recipient_id * UINT64_C(0x9E3779B97F4A7C15) ^
		     (uint64_t)k.period_start * UINT64_C(0xC2B2AE3D27D4EB4F);

	return (size_t)(h ^ h >> 29) & (c->cap - 1);
}

static bool key_eq(struct claim_key a, struct claim_key b)
{
	return a.recipient_id == b.recipient_id && a.period_start == b.period_start;
}

/* The slot holding k, or SIZE_MAX. */
static size_t claims_find(const struct store_claims *c, struct claim_key k)
{
	if (c->cap == 0)
		return SIZE_MAX;
	for (size_t i = claims_slot(c, k);; i = (i + 1) & (c->cap - 1)) {
		if (c->v[i].recipient_id == 0)
			return SIZE_MAX;
		if (key_eq(c->v[i], k))
			return i;
	}
}

static void claims_clear(struct store_claims *c)
{
	if (c->cap > 0)
		memset(c->v, 0, c->cap * sizeof *c->v);
	c->used = 0;
	c->seen = 0;
	c->valid = false;
}

static void claims_put(struct store_claims *c, struct claim_key k);

/* Twice the slots (or the first 1024), the keys put again, the freed ones dropped. */
static void claims_grow(struct store_claims *c)
{
	struct claim_key *old = c->v;
	size_t n = c->cap;

	c->cap = n ? 2 * n : 1024;
	c->v = xcalloc(c->cap, sizeof *c->v);
	c->used = 0;
	for (size_t i = 0; i < n; i++)
		if (old[i].recipient_id > 0)
			claims_put(c, old[i]);
	free(old);
}

/* Adds k (not there yet). */
static void claims_put(struct store_claims *c, struct claim_key k)
{
	size_t i;

	if (2 * (c->used + 1) > c->cap)
		claims_grow(c);
	for (i = claims_slot(c, k); c->v[i].recipient_id != 0; i = (i + 1) & (c->cap - 1))
		;
	c->v[i] = k;
	c->used++;
}

/* Reads the tail's claims above c->seen into c. */
static int claims_read(struct store *s, struct store_claims *c, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_CLAIMS_READ, e);
	int step;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, c->seen);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		struct claim_key k = {sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2)};

		c->seen = sqlite3_column_int64(st, 0);
		if (claims_find(c, k) == SIZE_MAX)
			claims_put(c, k);
	}
	sqlite3_reset(st);
	return step == SQLITE_DONE ? 0 : store_db_error(s, e, "reading the login reminders' tail");
}

/*
 * Brings the claims kept in memory up to the tail as it stands, once a transaction: the rows
 * added since they were read, or all of them again when rows left the tail (the epoch moved) or
 * the last read was undone. Outside a transaction, at every call.
 */
static int claims_sync(struct store *s, struct err *e)
{
	struct store_claims *c;
	sqlite3_stmt *st;
	int64_t epoch = 0, top = 0;
	int step, rc;

	if (s->claims_synced)
		return 0;
	if (s->claims == NULL)
		s->claims = xcalloc(1, sizeof *s->claims);
	c = s->claims;
	if ((st = stmt(s, LS_CLAIMS_MARK, e)) == NULL)
		return e->code;
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		epoch = sqlite3_column_int64(st, 0), top = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	if (step != SQLITE_ROW)
		return step == SQLITE_DONE
			       ? err_set(e, ERR_IO, "database %s: the table login_reminder_tail_epoch"
					 " has lost its row: restore it (INSERT INTO"
					 " login_reminder_tail_epoch VALUES (1, 0))", s->path)
			       : store_db_error(s, e, "reading the login reminders' tail");
	if (!c->valid || epoch != c->epoch || top < c->seen)
		claims_clear(c);
	c->epoch = epoch;
	if (top > c->seen && (rc = claims_read(s, c, e)) != 0) {
		c->valid = false;
		return rc;
	}
	c->valid = true;
	s->claims_synced = !sqlite3_get_autocommit(s->db);
	return 0;
}

void store_login_claims_end(struct store *s, bool committed)
{
	s->claims_synced = false;
	if (s->claims == NULL)
		return;
	if (!committed && s->claims_dirty)
		s->claims->valid = false;
	s->claims->last_id = 0;
	s->claims_dirty = false;
}

void store_login_claims_free(struct store *s)
{
	if (s->claims != NULL)
		free(s->claims->v);
	free(s->claims);
	s->claims = NULL;
}

/* Inside a transaction the row waits for STORE_LOGIN_CHUNK others or the commit, to go in
 * with them in one statement (a statement's own cost, bindings to reset, was most of a
 * login's); outside one it is inserted at once. */
int store_login_record(struct store *s, const char *user_id, int64_t at,
		       const char *client_version, const char *platform, const char *outcome,
		       struct err *e)
{
	struct store_login_rows *l = &s->logins;
	int rc;

	if (sqlite3_get_autocommit(s->db))
		return login_insert(s, user_id, at, client_version, platform, outcome, e);
	l->v[l->n].user = keep(&l->text, user_id);
	l->v[l->n].at = at;
	l->v[l->n].version = keep(&l->text, client_version);
	l->v[l->n].platform = keep(&l->text, platform);
	l->v[l->n].outcome = outcome;
	if (++l->n < STORE_LOGIN_CHUNK)
		return 0;
	if ((rc = rows_flush(s, e)) != 0)
		store_login_drop(s);
	return rc;
}

/* Binds a claim's six values. */
static void bind_claim(sqlite3_stmt *st, const struct store_login_reminder *r)
{
	sqlite3_bind_int64(st, 1, r->recipient_id);
	sqlite3_bind_int64(st, 2, r->period_start);
	sqlite3_bind_int64(st, 3, r->campaign_id);
	sqlite3_bind_int64(st, 4, r->period_index);
	sqlite3_bind_int64(st, 5, r->at);
	store_bind_text(st, 6, r->client_version);
}

/* A claim appended to the tail: kept in memory too, as the transaction's last (a release). */
static void claims_note(struct store *s, struct claim_key k)
{
	struct store_claims *c = s->claims;
	int64_t id = sqlite3_last_insert_rowid(s->db);

	claims_put(c, k);
	if (id > c->seen)
		c->seen = id; /* the write lock is held: no other row can lie below it unseen */
	c->last_id = id, c->last = k;
	s->claims_dirty = true;
}

int store_login_reminder_claim(struct store *s, const struct store_login_reminder *r,
			       bool *claimed, struct err *e)
{
	struct claim_key k = {r->recipient_id, r->period_start};
	bool tail = s->login_index_later;
	sqlite3_stmt *st;
	int rc;

	*claimed = false;
	if ((rc = claims_sync(s, e)) != 0)
		return rc;
	if (claims_find(s->claims, k) != SIZE_MAX)
		return 0;
	if ((st = stmt(s, tail ? LS_REMINDER_CLAIM_TAIL : LS_REMINDER_CLAIM, e)) == NULL)
		return e->code;
	bind_claim(st, r);
	if ((rc = store_step_done(s, st, "recording a login reminder", e)) != 0)
		return rc;
	*claimed = sqlite3_changes(s->db) == 1;
	if (*claimed && tail)
		claims_note(s, k);
	return 0;
}

/* Takes a claim of the open transaction out of the tail, and out of memory. */
static int release_tail(struct store *s, struct claim_key k, struct err *e)
{
	struct store_claims *c = s->claims;
	bool last = c != NULL && c->last_id != 0 && key_eq(c->last, k);
	sqlite3_stmt *st = stmt(s, last ? LS_REMINDER_RELEASE_TAIL : LS_REMINDER_RELEASE_SCAN, e);
	size_t i;

	if (st == NULL)
		return e->code;
	if (last) {
		sqlite3_bind_int64(st, 1, c->last_id);
	} else {
		sqlite3_bind_int64(st, 1, k.recipient_id);
		sqlite3_bind_int64(st, 2, k.period_start);
	}
	if (c != NULL && (i = claims_find(c, k)) != SIZE_MAX) {
		c->v[i].recipient_id = -1; /* freed: probing goes on past it */
		c->v[i].period_start = 0;
		s->claims_dirty = true;
	}
	if (last && c->seen == c->last_id)
		c->seen--; /* the next row appended takes its id again: it is to be read */
	if (c != NULL)
		c->last_id = 0;
	return store_step_done(s, st, "taking back a login reminder", e);
}

int store_login_reminder_release(struct store *s, int64_t recipient_id, int64_t period_start,
				 struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_REMINDER_RELEASE, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, period_start);
	if ((rc = store_step_done(s, st, "taking back a login reminder", e)) != 0 ||
	    sqlite3_changes(s->db) > 0)
		return rc;
	return release_tail(s, (struct claim_key){recipient_id, period_start}, e);
}

int store_login_reminder_each(struct store *s, int64_t recipient_id,
			      int (*fn)(void *ud, int64_t period_index, int64_t shown_at),
			      void *ud, struct err *e)
{
	sqlite3_stmt *st = NULL;
	int rc = 0, step = SQLITE_DONE;

	/* Its own statement: fn may use the cached ones. */
	if (sqlite3_prepare_v2(s->db, login_sql[LS_REMINDER_EACH], -1, &st, NULL) != SQLITE_OK)
		return store_db_error(s, e, "listing login reminders");
	sqlite3_bind_int64(st, 1, recipient_id);
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = fn(ud, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
	if (rc == 0 && step != SQLITE_DONE)
		rc = store_db_error(s, e, "listing login reminders");
	sqlite3_finalize(st);
	return rc;
}

int store_login_campaigns_signature(struct store *s, char **out, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_CAMPAIGNS_SIGNATURE, e);
	int step;

	*out = NULL;
	if (st == NULL)
		return e->code;
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		*out = xstrdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "reading the campaigns");
}

int store_login_stream(struct store *s, enum store_login_reads reads, struct err *e)
{
	static const char cached[] = "PRAGMA wal_autocheckpoint = 131072;"
				     " PRAGMA cache_size = -1048576; PRAGMA mmap_size = 0";
	static const char mapped[] = "PRAGMA wal_autocheckpoint = 32768;"
				     " PRAGMA cache_size = -65536; PRAGMA mmap_size = 4294967296";

	if (sqlite3_exec(s->db, reads == STORE_LOGIN_CACHED ? cached : mapped, NULL, NULL,
			 NULL) != SQLITE_OK)
		return store_db_error(s, e, "tuning the connection for logins");
	return 0;
}

static int complete_event(struct store *s, int64_t campaign_id, int64_t recipient_id,
			  int64_t now, const char *detail, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_COMPLETE_EVENT, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, recipient_id);
	sqlite3_bind_int64(st, 3, now);
	store_bind_text(st, 4, detail);
	return store_step_done(s, st, "recording a completion", e);
}

/* Cancels recipient_id's queued and deferred e-mail, if it has any; *cancelled counts them. */
static int complete_cancel(struct store *s, int64_t recipient_id, int64_t now,
			   int64_t *cancelled, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_COMPLETE_QUEUED, e);
	int step;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	step = sqlite3_step(st);
	if (step != SQLITE_ROW)
		return store_db_error(s, e, "looking for a completed recipient's queued e-mail");
	if (sqlite3_column_int64(st, 0) == 0) {
		sqlite3_reset(st);
		return 0;
	}
	sqlite3_reset(st);
	if ((st = stmt(s, LS_COMPLETE_CANCEL, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, now);
	if ((step = store_step_done(s, st, "cancelling a completed recipient's e-mail", e)) != 0)
		return step;
	if (cancelled != NULL)
		*cancelled = sqlite3_changes(s->db);
	return 0;
}

int store_recipient_complete(struct store *s, int64_t campaign_id, int64_t recipient_id,
			     int64_t now, const char *detail, bool *changed, int64_t *cancelled,
			     struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_COMPLETE, e);
	int rc;

	*changed = false;
	if (cancelled != NULL)
		*cancelled = 0;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, now);
	if ((rc = store_step_done(s, st, "completing a recipient", e)) != 0)
		return rc;
	if (sqlite3_changes(s->db) == 0)
		return 0;
	*changed = true;
	if ((rc = complete_cancel(s, recipient_id, now, cancelled, e)) != 0)
		return rc;
	return complete_event(s, campaign_id, recipient_id, now, detail, e);
}

int store_queue_mark_set(struct store *s, int64_t segment_id, const char *kind,
			 int64_t occurrence, int64_t watermark, int64_t now, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_MARK_SET, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, segment_id);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, occurrence);
	sqlite3_bind_int64(st, 4, watermark);
	sqlite3_bind_int64(st, 5, now);
	return store_step_done(s, st, "recording a queue mark", e);
}
