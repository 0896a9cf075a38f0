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
	LS_BULK_READ,
	LS_BULK_ADD,
	LS_BULK_ADD_4,
	LS_BULK_ADD_16,
	LS_BULK_ADD_CHUNK,
	LS_REMINDER_CLAIM,
	LS_REMINDER_CLAIM_TAIL,
	LS_REMINDER_RELEASE,
	LS_REMINDER_RELEASE_TAIL,
	LS_REMINDER_RELEASE_SCAN,
	LS_CLAIMS_MARK,
	LS_CLAIMS_READ,
	LS_CLAIMS_BOUNDS,
	LS_CLAIMS_SCAN,
	LS_CLAIMS_MOVE,
	LS_CLAIMS_MOVE_4,
	LS_CLAIMS_MOVE_16,
	LS_CLAIMS_MOVE_CHUNK,
	LS_CLAIMS_MOVE_CHECKED,
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
#define CLAIM_ROW "(?, ?, ?, ?, ?, ?)"
#define CLAIM_ROWS_4 CLAIM_ROW ", " CLAIM_ROW ", " CLAIM_ROW ", " CLAIM_ROW
#define CLAIM_ROWS_16 CLAIM_ROWS_4 ", " CLAIM_ROWS_4 ", " CLAIM_ROWS_4 ", " CLAIM_ROWS_4
#define CLAIM_ROWS_64 CLAIM_ROWS_16 ", " CLAIM_ROWS_16 ", " CLAIM_ROWS_16 ", " CLAIM_ROWS_16
#define CLAIM_INTO "INSERT OR IGNORE INTO login_reminder_indexed (recipient_id, period_start," \
	" campaign_id, period_index, shown_at, client_version)"
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
	/* A bulk in steps (store_login_bulk_step): a step's worth of the tail's keys, read to be
	 * sorted in memory (struct bulk_sort); then added in key order, a piece at a time. OR
	 * IGNORE: a bulk that did not finish may have added some (and it never aborts halfway,
	 * so the multi-row statements keep no statement journal). */
	[LS_BULK_READ] =
		"SELECT user_id, at, id FROM login WHERE id > ?1 AND id <= ?2"
		" AND outcome <> 'unknown'",
	[LS_BULK_ADD] = "INSERT OR IGNORE INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROW,
	[LS_BULK_ADD_4] = "INSERT OR IGNORE INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_4,
	[LS_BULK_ADD_16] = "INSERT OR IGNORE INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_16,
	[LS_BULK_ADD_CHUNK] = "INSERT OR IGNORE INTO login_by_user (user_id, at, login_id) VALUES "
		KEY_ROWS_64,
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
	/* The same for the claims: a step's worth of the tail read, then moved in key order. */
	[LS_CLAIMS_SCAN] =
		"SELECT recipient_id, period_start, id, campaign_id, period_index, shown_at,"
		" client_version FROM login_reminder_tail WHERE id > ?1 AND id <= ?2",
	[LS_CLAIMS_MOVE] = CLAIM_INTO " VALUES " CLAIM_ROW,
	[LS_CLAIMS_MOVE_4] = CLAIM_INTO " VALUES " CLAIM_ROWS_4,
	[LS_CLAIMS_MOVE_16] = CLAIM_INTO " VALUES " CLAIM_ROWS_16,
	[LS_CLAIMS_MOVE_CHUNK] = CLAIM_INTO " VALUES " CLAIM_ROWS_64,
	/* Once rows left the tail other than by this bulk (the epoch moved): only a claim still in
	 * the tail (a deleted recipient's left with it). */
	[LS_CLAIMS_MOVE_CHECKED] =
		CLAIM_INTO " SELECT ?1, ?2, ?3, ?4, ?5, ?6"
		" WHERE EXISTS (SELECT 1 FROM login_reminder_tail WHERE id = ?7)",
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
static const enum login_stmt chunk_bulk_keys[] = {LS_BULK_ADD_CHUNK, LS_BULK_ADD_16,
						  LS_BULK_ADD_4, LS_BULK_ADD};
static const enum login_stmt chunk_claims[] = {LS_CLAIMS_MOVE_CHUNK, LS_CLAIMS_MOVE_16,
					       LS_CLAIMS_MOVE_4, LS_CLAIMS_MOVE};

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

/* Inserts n of k's keys, k->v[pick[i]] (k->v[i] when pick is NULL), in the order given, with
 * the statements `chunks` (one a size of chunk_rows). */
static int keys_add(struct store *s, const enum login_stmt chunks[],
		    const struct store_login_keys *k, const size_t *pick, size_t n, const char *what,
		    struct err *e)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n;) {
		size_t c = chunk_for(n - i);
		sqlite3_stmt *st = stmt(s, chunks[c], e);

		if (st == NULL)
			return e->code;
		for (size_t j = 0; j < chunk_rows[c]; j++) {
			const struct store_login_key *key = &k->v[pick ? pick[i + j] : i + j];

			bind_key(st, (int)(3 * j + 1), k->text.data + key->user, key->at, key->id);
		}
		rc = store_step_done(s, st, what, e);
		i += chunk_rows[c];
	}
	return rc;
}

/* Inserts the kept keys in key order, STORE_LOGIN_CHUNK to a statement, and drops them. */
static int keys_flush(struct store *s, struct err *e)
{
	struct store_login_keys *k = &s->login_keys;
	int rc;

	if (k->n == 0)
		return 0;
	qsort_r(k->v, k->n, sizeof *k->v, key_cmp, k->text.data);
	rc = keys_add(s, chunk_keys, k, NULL, k->n, "recording logins", e);
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

static struct bulk_sort *sort_new(bool claims);
static void sort_free(struct bulk_sort *bs);

int store_login_bulk_start(struct store *s, struct store_login_bulk *b, struct err *e)
{
	int rc;

	store_login_bulk_end(b);
	*b = (struct store_login_bulk){0};
	if ((rc = tail_bounds(s, &b->through, &b->last, e)) != 0 ||
	    (rc = claims_bounds(s, &b->claims_next, &b->claims_last, e)) != 0 ||
	    (rc = claims_epoch(s, &b->epoch, e)) != 0)
		return rc;
	b->next = b->through;
	b->claims_deleted = b->claims_next;
	b->keys_done = b->last <= b->through;
	b->active = !b->keys_done || b->claims_last > b->claims_next;
	if (b->active) /* the keys' rows, or the claims' if no key is left */
		b->sort = sort_new(b->keys_done);
	return 0;
}

/* The claims up to `to` out of the tail: rows left it (the epoch moves). */
static int claims_done(struct store *s, int64_t to, struct err *e)
{
	int rc = bulk_run(s, LS_CLAIMS_DONE, to, 0, e);

	return rc != 0 ? rc : bulk_run(s, LS_CLAIMS_EPOCH, 0, 0, e);
}

/* ---- a bulk's rows, sorted in memory --------------------------------------------------- */

/* A claim of the tail, as a bulk moves it. */
struct bulk_claim {
	int64_t recipient, period, tail_id, campaign, period_index, shown_at;
	size_t version; /* offset in the sort's text; SIZE_MAX: NULL */
};

/*
 * A part's rows (the logins' keys, then the claims), read from its tail a step at a time
 * (bulk_fill), each step's rows sorted as one run; the pieces take them in key order by
 * merging the runs (a heap of the runs, the one whose next row sorts first on top). Sorted
 * into a temporary table instead, each row cost a B-tree insert, more than the piece that
 * moved it (docs/api.md, Performance, thirteenth pass).
 */
struct bulk_sort {
	bool claims;
	struct store_login_keys keys;             /* the keys' part: rows, user ids */
	struct bulk_claim *c;                     /* the claims' part */
	size_t nc, capc;
	struct buf text;                          /* the claims' client versions */
	size_t *next, *end, nrun, caprun;         /* run i: rows next[i] to end[i] - 1 left */
	size_t *heap, nheap;                      /* the runs with rows left */
	bool heaped;                              /* the heap is made (at the first piece) */
	bool moved_any;                           /* a claim was taken: */
	int64_t moved_recipient, moved_period;    /* the last one's key */
};

static void sort_free(struct bulk_sort *bs)
{
	if (bs == NULL)
		return;
	free(bs->keys.v);
	buf_free(&bs->keys.text);
	free(bs->c);
	buf_free(&bs->text);
	free(bs->next);
	free(bs->end);
	free(bs->heap);
	free(bs);
}

static struct bulk_sort *sort_new(bool claims)
{
	struct bulk_sort *bs = xcalloc(1, sizeof *bs);

	bs->claims = claims;
	buf_init(&bs->keys.text);
	buf_init(&bs->text);
	return bs;
}

static size_t sort_rows(const struct bulk_sort *bs)
{
	return bs->claims ? bs->nc : bs->keys.n;
}

/* Claims in key order; of two with one key, the one appended to the tail first (the one a
 * moving statement of the whole tail in key order keeps: OR IGNORE). */
static int claim_cmp(const void *pa, const void *pb)
{
	const struct bulk_claim *a = pa, *b = pb;

	if (a->recipient != b->recipient)
		return a->recipient < b->recipient ? -1 : 1;
	if (a->period != b->period)
		return a->period < b->period ? -1 : 1;
	return (a->tail_id > b->tail_id) - (a->tail_id < b->tail_id);
}

/* Whether row i sorts before row j. */
static bool row_before(const struct bulk_sort *bs, size_t i, size_t j)
{
	if (bs->claims)
		return claim_cmp(&bs->c[i], &bs->c[j]) < 0;
	return key_cmp(&bs->keys.v[i], &bs->keys.v[j], bs->keys.text.data) < 0;
}

/* Whether run a's next row sorts before run b's. */
static bool run_before(const struct bulk_sort *bs, size_t a, size_t b)
{
	return row_before(bs, bs->next[a], bs->next[b]);
}

static void heap_down(struct bulk_sort *bs, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, least = i;

		if (l < bs->nheap && run_before(bs, bs->heap[l], bs->heap[least]))
			least = l;
		if (l + 1 < bs->nheap && run_before(bs, bs->heap[l + 1], bs->heap[least]))
			least = l + 1;
		if (least == i)
			return;
		size_t t = bs->heap[i];
		bs->heap[i] = bs->heap[least];
		bs->heap[least] = t;
		i = least;
	}
}

/* The next row in key order (its index), SIZE_MAX once none is left. */
static size_t sort_take(struct bulk_sort *bs)
{
	size_t r, row;

	if (!bs->heaped) {
		bs->heap = xcalloc(bs->nrun ? bs->nrun : 1, sizeof *bs->heap);
		for (size_t i = 0; i < bs->nrun; i++)
			bs->heap[bs->nheap++] = i;
		for (size_t i = bs->nheap / 2; i-- > 0;)
			heap_down(bs, i);
		bs->heaped = true;
	}
	if (bs->nheap == 0)
		return SIZE_MAX;
	r = bs->heap[0];
	row = bs->next[r]++;
	if (bs->next[r] == bs->end[r])
		bs->heap[0] = bs->heap[--bs->nheap];
	heap_down(bs, 0);
	return row;
}

/* Appends the part's tail rows with ids in (from, to], sorted, as one run. */
static int sort_fill(struct store *s, struct bulk_sort *bs, int64_t from, int64_t to,
		     struct err *e)
{
	sqlite3_stmt *st = stmt(s, bs->claims ? LS_CLAIMS_SCAN : LS_BULK_READ, e);
	size_t first = sort_rows(bs);
	int step;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, from);
	sqlite3_bind_int64(st, 2, to);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (!bs->claims) {
			const char *user = (const char *)sqlite3_column_text(st, 0);

			key_keep(&bs->keys, user ? user : "", sqlite3_column_int64(st, 1),
				 sqlite3_column_int64(st, 2));
			continue;
		}
		if (bs->nc == bs->capc) {
			bs->capc = bs->capc ? 2 * bs->capc : 1024;
			bs->c = xrealloc(bs->c, bs->capc * sizeof *bs->c);
		}
		bs->c[bs->nc++] = (struct bulk_claim){
			sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
			sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
			sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5),
			keep(&bs->text, (const char *)sqlite3_column_text(st, 6))};
	}
	sqlite3_reset(st);
	if (step != SQLITE_DONE)
		return store_db_error(s, e, "indexing logins");
	if (sort_rows(bs) == first)
		return 0;
	if (bs->claims)
		qsort(bs->c + first, bs->nc - first, sizeof *bs->c, claim_cmp);
	else
		qsort_r(bs->keys.v + first, bs->keys.n - first, sizeof *bs->keys.v, key_cmp,
			bs->keys.text.data);
	if (bs->nrun == bs->caprun) {
		bs->caprun = bs->caprun ? 2 * bs->caprun : 64;
		bs->next = xrealloc(bs->next, bs->caprun * sizeof *bs->next);
		bs->end = xrealloc(bs->end, bs->caprun * sizeof *bs->end);
	}
	bs->next[bs->nrun] = first;
	bs->end[bs->nrun++] = sort_rows(bs);
	return 0;
}

/*
 * Takes the next sorted rows, up to STORE_LOGIN_CHUNK and *keys (each row taken counts against
 * it), into pick: how many. Of the claims only the first of each key is picked (the others
 * are copies). *done once none is left.
 */
static size_t sort_pick(struct bulk_sort *bs, size_t *keys, size_t pick[], bool *done)
{
	size_t n = 0, row;

	while (n < STORE_LOGIN_CHUNK && *keys > 0) {
		if ((row = sort_take(bs)) == SIZE_MAX) {
			*done = true;
			break;
		}
		(*keys)--;
		if (bs->claims) {
			const struct bulk_claim *c = &bs->c[row];
			bool copy = bs->moved_any && c->recipient == bs->moved_recipient &&
				    c->period == bs->moved_period;

			bs->moved_any = true;
			bs->moved_recipient = c->recipient, bs->moved_period = c->period;
			if (copy)
				continue;
		}
		pick[n++] = row;
	}
	return n;
}

/* The next `keys` sorted keys added to login_by_user, a chunk to a statement. */
static int keys_move(struct store *s, struct bulk_sort *bs, size_t keys, struct err *e)
{
	size_t pick[STORE_LOGIN_CHUNK], n;
	bool done = false;
	int rc = 0;

	while (rc == 0 && keys > 0 && !done) {
		n = sort_pick(bs, &keys, pick, &done);
		rc = keys_add(s, chunk_bulk_keys, &bs->keys, pick, n, "indexing logins", e);
	}
	return rc;
}

static void bind_moved(sqlite3_stmt *st, int first, const struct bulk_sort *bs,
		       const struct bulk_claim *c)
{
	sqlite3_bind_int64(st, first, c->recipient);
	sqlite3_bind_int64(st, first + 1, c->period);
	sqlite3_bind_int64(st, first + 2, c->campaign);
	sqlite3_bind_int64(st, first + 3, c->period_index);
	sqlite3_bind_int64(st, first + 4, c->shown_at);
	if (c->version == SIZE_MAX)
		sqlite3_bind_null(st, first + 5);
	else
		sqlite3_bind_text(st, first + 5, bs->text.data + c->version, -1, SQLITE_STATIC);
}

/*
 * The next `keys` sorted claims moved into login_reminder_indexed, a chunk to a statement, the
 * first of each key only; checked one by one to be still in the tail when rows left it other
 * than by this bulk since it began (checked: the epoch moved).
 */
static int claims_move(struct store *s, struct bulk_sort *bs, size_t keys, bool checked,
		       struct err *e)
{
	size_t pick[STORE_LOGIN_CHUNK], n;
	bool done = false;
	int rc = 0;

	while (rc == 0 && keys > 0 && !done) {
		n = sort_pick(bs, &keys, pick, &done);
		for (size_t i = 0; rc == 0 && i < n;) {
			size_t c = chunk_for(n - i), rows = checked ? 1 : chunk_rows[c];
			sqlite3_stmt *st = stmt(s, checked ? LS_CLAIMS_MOVE_CHECKED : chunk_claims[c], e);

			if (st == NULL)
				return e->code;
			for (size_t j = 0; j < rows; j++)
				bind_moved(st, (int)(6 * j + 1), bs, &bs->c[pick[i + j]]);
			if (checked)
				sqlite3_bind_int64(st, 7, bs->c[pick[i]].tail_id);
			rc = store_step_done(s, st, "indexing logins", e);
			i += rows;
		}
	}
	return rc;
}

/* The next `keys` sorted rows of a part moved (the logins' keys into login_by_user, the claims
 * into login_reminder_indexed); at the keys' end, the mark moved. *left: rows remain. */
static int piece_run(struct store *s, struct store_login_bulk *b, size_t keys, bool *left,
		     struct err *e)
{
	struct bulk_sort *bs = b->sort;
	int64_t epoch = 0;
	int rc;

	if (!b->keys_done) {
		rc = keys_move(s, bs, keys, e);
		*left = bs->nheap > 0;
		if (rc == 0 && !*left)
			rc = through_set(s, b->last, e);
		return rc;
	}
	if ((rc = claims_epoch(s, &epoch, e)) != 0)
		return rc;
	rc = claims_move(s, bs, keys, epoch != b->epoch, e);
	*left = bs->nheap > 0;
	return rc;
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
		b->keys_done = true;     /* then the claims, if any, sorted afresh */
		b->active = b->claims_moved || b->claims_last > b->claims_next;
		sort_free(b->sort);
		b->sort = b->active && !b->claims_moved ? sort_new(true) : NULL;
	}
	if (rc != 0)
		store_rollback(s);
	return rc;
}

/* The next ids of a part's tail read and sorted in memory; true when none were left. */
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
	rc = sort_fill(s, b->sort, *next, to, e);
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
	sort_free(b->sort);
	b->sort = NULL;
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
