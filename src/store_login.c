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
	LS_BULK_PIECE_DROP,
	LS_BULK_LEFT,
	LS_REMINDER_CLAIM,
	LS_REMINDER_RELEASE,
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
	[LS_BULK_PIECE] =
		"INSERT OR IGNORE INTO login_by_user (user_id, at, login_id)"
		" SELECT user_id, at, login_id FROM temp.login_bulk"
		" ORDER BY user_id, at, login_id LIMIT ?1",
	[LS_BULK_PIECE_DROP] =
		"DELETE FROM temp.login_bulk WHERE (user_id, at, login_id) IN"
		" (SELECT user_id, at, login_id FROM temp.login_bulk"
		"  ORDER BY user_id, at, login_id LIMIT ?1)",
	[LS_BULK_LEFT] = "SELECT EXISTS (SELECT 1 FROM temp.login_bulk)",
	[LS_REMINDER_CLAIM] =
		"INSERT INTO login_reminder (recipient_id, period_start, campaign_id, period_index,"
		" shown_at, client_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
		" ON CONFLICT (recipient_id, period_start) DO NOTHING",
	[LS_REMINDER_RELEASE] =
		"DELETE FROM login_reminder WHERE recipient_id = ?1 AND period_start = ?2",
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

int store_login_tail(struct store *s, int64_t *tail, struct err *e)
{
	int64_t through, last;
	int rc = tail_bounds(s, &through, &last, e);

	*tail = rc == 0 ? last - through : 0;
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

	*b = (struct store_login_bulk){0};
	/* The sorted keys in memory, not in a temporary file (a bulk's: about 1 MiB) */
	if (sqlite3_exec(s->db, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) != SQLITE_OK)
		return store_db_error(s, e, "indexing logins");
	if ((rc = bulk_run(s, LS_BULK_TABLE, 0, 0, e)) != 0 ||
	    (rc = bulk_run(s, LS_BULK_CLEAR, 0, 0, e)) != 0 ||
	    (rc = tail_bounds(s, &b->through, &b->last, e)) != 0)
		return rc;
	b->next = b->through;
	b->active = b->last > b->through;
	return 0;
}

/* Whether the sorted table still holds keys. */
static int bulk_left(struct store *s, bool *left, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_BULK_LEFT, e);
	int step;

	if (st == NULL)
		return e->code;
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		*left = sqlite3_column_int(st, 0) != 0;
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "indexing logins");
}

/* One transaction: the next `keys` sorted keys into login_by_user; the mark once none is left. */
static int bulk_piece(struct store *s, struct store_login_bulk *b, size_t keys, struct err *e)
{
	bool left = true;
	int rc;

	if ((rc = store_begin(s, e)) != 0)
		return rc;
	if ((rc = bulk_run(s, LS_BULK_PIECE, (int64_t)keys, 0, e)) == 0 &&
	    (rc = bulk_run(s, LS_BULK_PIECE_DROP, (int64_t)keys, 0, e)) == 0 &&
	    (rc = bulk_left(s, &left, e)) == 0 && !left)
		rc = through_set(s, b->last, e);
	if (rc == 0 && (rc = store_commit(s, e)) == 0)
		b->active = left;
	if (rc != 0)
		store_rollback(s);
	return rc;
}

int store_login_bulk_step(struct store *s, struct store_login_bulk *b, size_t keys,
			  struct err *e)
{
	int64_t to;
	int rc;

	if (!b->active)
		return 0;
	if (b->next < b->last) { /* a read of the login table's last pages, sorted in memory */
		to = b->last - b->next > (int64_t)keys ? b->next + (int64_t)keys : b->last;
		if ((rc = bulk_run(s, LS_BULK_FILL, b->next, to, e)) == 0)
			b->next = to;
	} else {
		rc = bulk_piece(s, b, keys, e);
	}
	if (rc != 0)
		b->active = false;
	return rc;
}

int store_login_index(struct store *s, int64_t min_tail, int64_t *indexed, struct err *e)
{
	int64_t through = 0, last = 0;
	int rc;

	*indexed = 0;
	if ((rc = store_begin(s, e)) != 0)
		return rc;
	if ((rc = tail_bounds(s, &through, &last, e)) == 0 && last - through >= min_tail &&
	    last > through)
		rc = tail_index(s, through, last, e);
	if (rc == 0 && (rc = store_commit(s, e)) == 0 && last - through >= min_tail)
		*indexed = last - through;
	if (rc != 0)
		store_rollback(s);
	return rc;
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

int store_login_reminder_claim(struct store *s, const struct store_login_reminder *r,
			       bool *claimed, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_REMINDER_CLAIM, e);
	int rc;

	*claimed = false;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, r->recipient_id);
	sqlite3_bind_int64(st, 2, r->period_start);
	sqlite3_bind_int64(st, 3, r->campaign_id);
	sqlite3_bind_int64(st, 4, r->period_index);
	sqlite3_bind_int64(st, 5, r->at);
	store_bind_text(st, 6, r->client_version);
	if ((rc = store_step_done(s, st, "recording a login reminder", e)) != 0)
		return rc;
	*claimed = sqlite3_changes(s->db) == 1;
	return 0;
}

int store_login_reminder_release(struct store *s, int64_t recipient_id, int64_t period_start,
				 struct err *e)
{
	sqlite3_stmt *st = stmt(s, LS_REMINDER_RELEASE, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, period_start);
	return store_step_done(s, st, "taking back a login reminder", e);
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
