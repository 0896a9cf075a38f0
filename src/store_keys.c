/* store_keys.c — the holders of address keys (recipient_key, db/017), and an import's keys
 * added after its rows (part of the store module).
 *
 * Deferred keys. An import's new recipients go into recipient without an entry in
 * recipient_key: their span (recipient ids from import_pending.first_id on, in their campaign)
 * is recorded, and the connection keeps each new holder's key in memory, in an open-addressing
 * table of STORE_DEFER_KEYS entries at most (12 bytes a slot: the key, and the holder's id
 * less the span's first). That table answers "who holds this key" for the span as the UNIQUE
 * index did, so the importer finds a duplicate address at the row, in file order, as before.
 * Its slot is the key's top bits, so walking the slots meets the keys nearly in order: when
 * the table is full, and when the import ends, store_keys_add adds them to recipient_key in
 * that walk, and each leaf of recipient_key is written once a fill instead of once a commit
 * (docs/import.md), without a sort or a read of the rows; a Bloom filter of the keys filled
 * spares most later rows a lookup in recipient_key. The table is exact: a holder that
 * leaves its key (an update) leaves a tombstone, and no other process changes the span's
 * addresses meanwhile (the import lock: imports, and `cutoff forget`, take it). Other
 * connections find the span's recipients by a scan of the span (STORE_ADDRESS_IDS); a crash
 * leaves the span in import_pending, and the next init, daily run or import adds it from the
 * rows (import_finish_pending, store_keys_finish_pending: one INSERT ... SELECT sorted by
 * key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"
#include "util.h"

/* The keys kept in memory before a fill: 12 MiB of slots at three quarters full, with room
 * for a run of inserts past it (store_keys_room). */
#define STORE_DEFER_KEYS ((3u << 18) - STORE_KEYS_ROOM_MAX)

enum kst_id {
	KS_HOLDER,
	KS_ADD,
	KS_DROP,
	KS_FILL,
	KS_PENDING_START,
	KS_PENDING_MOVE,
	KS_PENDING_END,
	KS_PENDING_EACH,
	KS_ANY_RECIPIENT,
	KS_HEIR,
	KS_PROMOTE,
	KS_KEY_OF,
	KS_ADD_MANY, /* prepared on first use (fill_statement) */
	KS_COUNT
};

static const char *const kst_sql[KS_COUNT] = {
	/* The holder of key ?1 in campaign ?2 among the keys added, and its address. */
	[KS_HOLDER] =
		"SELECT k.recipient_id, coalesce(r.email, '') FROM recipient_key k"
		" JOIN recipient r ON r.id = k.recipient_id"
		" WHERE k.email_key = ?1 AND k.campaign_id = ?2",
	[KS_ADD] = "INSERT INTO recipient_key (email_key, campaign_id, recipient_id)"
		   " VALUES (?1, ?2, ?3)",
	[KS_DROP] = "DELETE FROM recipient_key WHERE email_key = ?1 AND campaign_id = ?2"
		    " AND recipient_id = ?3",
	/* A span's holders read back from its rows, in key order (store_keys_finish_pending,
	 * after a crash or a failure; the unary + keeps the campaign's user index off it: the
	 * span is a range of rowids). */
	[KS_FILL] =
		"INSERT INTO recipient_key (email_key, campaign_id, recipient_id)"
		" SELECT email_key, campaign_id, id FROM recipient"
		" WHERE id >= ?2 AND +campaign_id = ?1 AND email_key IS NOT NULL"
		" ORDER BY email_key",
	[KS_PENDING_START] =
		"INSERT INTO import_pending (campaign_id, first_id)"
		" SELECT ?1, coalesce(max(id), 0) + 1 FROM recipient RETURNING first_id",
	[KS_PENDING_MOVE] =
		"UPDATE import_pending"
		" SET first_id = (SELECT coalesce(max(id), 0) + 1 FROM recipient)"
		" WHERE campaign_id = ?1 RETURNING first_id",
	[KS_PENDING_END] = "DELETE FROM import_pending WHERE campaign_id = ?1",
	[KS_PENDING_EACH] = "SELECT campaign_id, first_id FROM import_pending ORDER BY campaign_id",
	[KS_ANY_RECIPIENT] = "SELECT EXISTS (SELECT 1 FROM recipient WHERE campaign_id = ?1)",
	/* The first recipient of campaign ?2 other than ?3 stored without a key because its
	 * address shares key ?1: a walk of the spill index, which holds only such rows (a few
	 * case variants; every row when tests cut the keys to 2 bits). */
	[KS_HEIR] =
		"SELECT id FROM recipient INDEXED BY recipient_email_spill"
		" WHERE email_key IS NULL AND email IS NOT NULL AND +campaign_id = ?2 AND id <> ?3"
		" AND cutoff_address_key(email) = ?1 ORDER BY id LIMIT 1",
	[KS_PROMOTE] = "UPDATE recipient SET email_key = ?2 WHERE id = ?1",
	/* A recipient's key and address now (store_keys_stored). */
	[KS_KEY_OF] = "SELECT email_key, campaign_id, coalesce(email, '') FROM recipient WHERE id = ?1",
};

_Static_assert(KS_COUNT <= sizeof ((struct store *)0)->keys_stmts /
				   sizeof ((struct store *)0)->keys_stmts[0],
	       "struct store's keys_stmts is too small");

struct store_defer {
	int64_t campaign_id;
	int64_t first_id; /* the span's first recipient id */
	bool settled;     /* the campaign had recipients before: ask recipient_key too */
	uint64_t *filled; /* NULL, or a Bloom filter of the keys this import put in recipient_key
			   * (a fill, or a key of a filled recipient's new address): recipient_key
			   * is asked only for a key it may hold */
	size_t cap;       /* keys kept before a fill */
	size_t n;         /* keys kept */
	size_t mask;      /* slots - 1 */
	int shift;        /* 64 - log2(slots): a key's slot is its top bits */
	int64_t *key;     /* by slot */
	uint32_t *off;    /* by slot: the holder's id - first_id + 1; 0: a free slot; DEAD: the
			   * holder left the key */
};

#define DEAD UINT32_MAX

/* The Bloom filter of the keys filled: 2 MiB, four bits a key. A false positive costs a
 * lookup in recipient_key: about 1 key in 500 at a million keys, 1 in 20 at 2.6 million, two
 * thirds at 10 million (where every key was looked up before it). */
#define FILLED_BITS ((size_t)1 << 24)

/* The filter's four bits of key, by double hashing (the multiply spreads tests' few-bit keys). */
static size_t filled_bit(int64_t key, unsigned i)
{
	uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15u;

	return (size_t)((x >> 32) + i * ((x & 0xffffffffu) | 1)) & (FILLED_BITS - 1);
}

static void filled_add(struct store_defer *d, int64_t key)
{
	if (d->filled == NULL)
		d->filled = xcalloc(FILLED_BITS / 64, sizeof *d->filled);
	for (unsigned i = 0; i < 4; i++) {
		size_t b = filled_bit(key, i);
		d->filled[b / 64] |= (uint64_t)1 << (b % 64);
	}
}

static bool filled_may_hold(const struct store_defer *d, int64_t key)
{
	if (d->filled == NULL)
		return false;
	for (unsigned i = 0; i < 4; i++) {
		size_t b = filled_bit(key, i);
		if (!(d->filled[b / 64] & (uint64_t)1 << (b % 64)))
			return false;
	}
	return true;
}

static sqlite3_stmt *kst(struct store *s, enum kst_id id, struct err *e)
{
	return store_cached(s, &s->keys_stmts[id], kst_sql[id], "preparing a statement", e);
}

/* The key's slot: its top bits, with the sign flipped so that the slots' order is the keys'
 * order as SQLite compares them (the key is part of a SHA-256 already: spread evenly). */
static size_t slot_of(const struct store_defer *d, int64_t key)
{
	return (size_t)(((uint64_t)key ^ ((uint64_t)1 << 63)) >> d->shift) & d->mask;
}

/* The slot that holds key in d, or the free slot where it would go. */
static size_t defer_slot(const struct store_defer *d, int64_t key)
{
	size_t i = slot_of(d, key);

	while (d->off[i] != 0 && d->key[i] != key)
		i = (i + 1) & d->mask;
	return i;
}

/* The holder of key recorded in d (0: none). */
static int64_t defer_find(const struct store_defer *d, int64_t key)
{
	uint32_t off = d->off[defer_slot(d, key)];

	return off == 0 || off == DEAD ? 0 : d->first_id + off - 1;
}

static void defer_clear(struct store_defer *d)
{
	memset(d->off, 0, (d->mask + 1) * sizeof *d->off);
	d->n = 0;
}

bool store_keys_deferred(const struct store *s, int64_t campaign_id, int64_t recipient_id)
{
	return s->defer != NULL && s->defer->campaign_id == campaign_id &&
	       recipient_id >= s->defer->first_id;
}

/* Adds the keys of campaign_id's recipients from first_id on to recipient_key. */
static int fill(struct store *s, int64_t campaign_id, int64_t first_id, struct err *e)
{
	sqlite3_stmt *st = kst(s, KS_FILL, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, first_id);
	return store_step_done(s, st, "adding an import's address keys", e);
}

static int pending_step(struct store *s, enum kst_id id, int64_t campaign_id, int64_t *first,
			struct err *e)
{
	sqlite3_stmt *st = kst(s, id, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && first != NULL)
		*first = sqlite3_column_int64(st, 0);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : store_db_error(s, e, "recording an import's span");
}

int store_keys_pending_any(struct store *s, bool *any, struct err *e)
{
	sqlite3_stmt *st = kst(s, KS_PENDING_EACH, e);
	int step;

	if (st == NULL)
		return e->code;
	step = sqlite3_step(st);
	*any = step == SQLITE_ROW;
	sqlite3_reset(st);
	return step == SQLITE_ROW || step == SQLITE_DONE
		       ? 0
		       : store_db_error(s, e, "reading the pending imports");
}

int store_keys_finish_pending(struct store *s, struct err *e)
{
	sqlite3_stmt *st = kst(s, KS_PENDING_EACH, e);
	int64_t (*span)[2] = NULL;
	size_t n = 0, cap = 0;
	int rc = 0, step, kib = 0;

	if (st == NULL)
		return e->code;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap)
			span = xrealloc(span, (cap = cap ? 2 * cap : 4) * sizeof *span);
		span[n][0] = sqlite3_column_int64(st, 0);
		span[n++][1] = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (step != SQLITE_DONE)
		rc = store_db_error(s, e, "reading the pending imports");
	/* SQLite's sorter holds up to a page cache's worth of keys in memory (32 MiB) before it
	 * writes runs to temporary files: a small cache for the sort keeps the peak down. Called
	 * at the start of a transaction, with few dirty pages to spill. */
	if (rc == 0 && n > 0 && (rc = store_cache_kib(s, &kib, e)) == 0)
		rc = store_cache_size(s, 4096, e);
	for (size_t i = 0; i < n && rc == 0; i++) {
		log_info("adding the address keys of an import that did not finish (campaign %lld,"
			 " recipients from %lld on)", (long long)span[i][0], (long long)span[i][1]);
		if ((rc = fill(s, span[i][0], span[i][1], e)) == 0)
			rc = pending_step(s, KS_PENDING_END, span[i][0], NULL, e);
	}
	if (kib > 0 && store_cache_size(s, kib, rc == 0 ? e : &(struct err){0}) != 0 && rc == 0)
		rc = e->code;
	free(span);
	return rc;
}

int store_keys_defer(struct store *s, int64_t campaign_id, size_t cap, struct err *e)
{
	struct store_defer *d;
	sqlite3_stmt *st;
	size_t slots = 16;
	int rc, step;
	bool any = false;

	if (s->defer != NULL)
		return err_set(e, ERR_SOFTWARE, "address keys are deferred already");
	if ((rc = store_keys_finish_pending(s, e)) != 0)
		return rc;
	if ((st = kst(s, KS_ANY_RECIPIENT, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		any = sqlite3_column_int(st, 0) != 0;
	sqlite3_reset(st);
	if (step != SQLITE_ROW)
		return store_db_error(s, e, "counting a campaign's recipients");
	if (cap == 0 || cap > STORE_DEFER_KEYS)
		cap = STORE_DEFER_KEYS;
	while (slots / 4 * 3 < cap + STORE_KEYS_ROOM_MAX)
		slots *= 2;
	d = xcalloc(1, sizeof *d);
	d->campaign_id = campaign_id;
	d->settled = any;
	d->cap = cap;
	d->mask = slots - 1;
	d->shift = 64;
	for (size_t n = slots; n > 1; n /= 2)
		d->shift--;
	d->key = xcalloc(slots, sizeof *d->key);
	d->off = xcalloc(slots, sizeof *d->off);
	if ((rc = pending_step(s, KS_PENDING_START, campaign_id, &d->first_id, e)) != 0) {
		free(d->key), free(d->off), free(d);
		return rc;
	}
	s->defer = d;
	return 0;
}

void store_keys_drop(struct store *s)
{
	if (s->defer == NULL)
		return;
	free(s->defer->key);
	free(s->defer->off);
	free(s->defer->filled);
	free(s->defer);
	s->defer = NULL;
}

/* The INSERT of FILL_ROWS keys into recipient_key: ?1 the campaign, then each key and its
 * holder. */
#define FILL_ROWS 64

static sqlite3_stmt *fill_statement(struct store *s, struct err *e)
{
	sqlite3_stmt **slot = &s->keys_stmts[KS_ADD_MANY];
	struct buf sql;

	if (*slot != NULL) {
		sqlite3_reset(*slot);
		return *slot;
	}
	buf_init(&sql);
	buf_puts(&sql, "INSERT INTO recipient_key (email_key, campaign_id, recipient_id) VALUES ");
	for (int i = 0; i < FILL_ROWS; i++)
		buf_printf(&sql, "%s(?%d, ?1, ?%d)", i ? ", " : "", 2 + 2 * i, 3 + 2 * i);
	store_cached(s, slot, sql.data, "preparing a statement", e);
	buf_free(&sql);
	return *slot;
}

/* Adds d's keys to recipient_key in the order of their slots (nearly the keys' order), in
 * statements of FILL_ROWS keys (one at a time took half again as long), the last few one by
 * one. */
static int fill_from_memory(struct store *s, const struct store_defer *d, struct err *e)
{
	sqlite3_stmt *many = fill_statement(s, e), *one = kst(s, KS_ADD, e);
	size_t slot[FILL_ROWS];
	int rc = 0, k = 0;

	if (many == NULL || one == NULL)
		return e->code;
	sqlite3_bind_int64(many, 1, d->campaign_id);
	for (size_t i = 0; i <= d->mask && rc == 0; i++) {
		if (d->off[i] == 0 || d->off[i] == DEAD)
			continue;
		slot[k] = i;
		sqlite3_bind_int64(many, 2 + 2 * k, d->key[i]);
		sqlite3_bind_int64(many, 3 + 2 * k, d->first_id + d->off[i] - 1);
		if (++k == FILL_ROWS) {
			rc = store_step_done(s, many, "adding an import's address keys", e);
			k = 0;
		}
	}
	for (int j = 0; j < k && rc == 0; j++) {
		sqlite3_bind_int64(one, 1, d->key[slot[j]]);
		sqlite3_bind_int64(one, 2, d->campaign_id);
		sqlite3_bind_int64(one, 3, d->first_id + d->off[slot[j]] - 1);
		rc = store_step_done(s, one, "adding an import's address keys", e);
	}
	return rc;
}

int store_keys_add(struct store *s, bool done, struct err *e)
{
	struct store_defer *d = s->defer;
	int rc;

	if (d == NULL)
		return 0;
	if ((rc = fill_from_memory(s, d, e)) != 0)
		return rc;
	if (done) {
		if ((rc = pending_step(s, KS_PENDING_END, d->campaign_id, NULL, e)) == 0)
			store_keys_drop(s);
		return rc;
	}
	if ((rc = pending_step(s, KS_PENDING_MOVE, d->campaign_id, &d->first_id, e)) != 0)
		return rc;
	for (size_t i = 0; i <= d->mask; i++)
		if (d->off[i] != 0 && d->off[i] != DEAD)
			filled_add(d, d->key[i]);
	defer_clear(d);
	return 0;
}

int store_keys_stored(struct store *s, int64_t id, int64_t *key, int64_t *campaign_id,
		      char *email, size_t size, struct err *e)
{
	sqlite3_stmt *st = kst(s, KS_KEY_OF, e);
	int step, held;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, id);
	step = sqlite3_step(st);
	held = step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER;
	if (held) {
		*key = sqlite3_column_int64(st, 0);
		*campaign_id = sqlite3_column_int64(st, 1);
		if (email != NULL)
			snprintf(email, size, "%s", (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_reset(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return store_db_error(s, e, "looking up a recipient's address key");
	return held;
}

/* Whether recipient id (pending) holds key still, with *email its address. */
static int pending_holder(struct store *s, int64_t id, int64_t key, char *email, size_t size,
			  struct err *e)
{
	int64_t now = 0, campaign_id;
	int held = store_keys_stored(s, id, &now, &campaign_id, email, size, e);

	return held == 1 && now != key ? 0 : held;
}

void store_keys_prefetch(const struct store *s, int64_t key, int64_t campaign_id)
{
	const struct store_defer *d = s->defer;

	if (d != NULL && d->campaign_id == campaign_id) {
		size_t i = slot_of(d, key);

		__builtin_prefetch(&d->off[i]);
		__builtin_prefetch(&d->key[i]);
	}
}

int store_keys_holder(struct store *s, int64_t key, int64_t campaign_id, int64_t *id,
		      char *email, size_t size, struct err *e)
{
	struct store_defer *d = s->defer;
	bool mine = d != NULL && d->campaign_id == campaign_id;
	int64_t pending;
	int step;

	if (!mine || d->settled || filled_may_hold(d, key)) {
		sqlite3_stmt *st = kst(s, KS_HOLDER, e);

		if (st == NULL)
			return e->code;
		sqlite3_bind_int64(st, 1, key);
		sqlite3_bind_int64(st, 2, campaign_id);
		if ((step = sqlite3_step(st)) == SQLITE_ROW) {
			*id = sqlite3_column_int64(st, 0);
			snprintf(email, size, "%s", (const char *)sqlite3_column_text(st, 1));
		}
		sqlite3_reset(st);
		if (step == SQLITE_ROW)
			return 1;
		if (step != SQLITE_DONE)
			return store_db_error(s, e, "looking up an address key");
	}
	if (!mine || (pending = defer_find(d, key)) == 0)
		return 0;
	/* Recorded; its address may have changed since (an update, or `forget`). */
	step = pending_holder(s, pending, key, email, size, e);
	if (step == 1)
		*id = pending;
	return step;
}

int store_keys_record(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
		      struct err *e)
{
	struct store_defer *d = s->defer;
	sqlite3_stmt *st;

	if (store_keys_deferred(s, campaign_id, id)) {
		size_t i = defer_slot(d, key);

		if (d->n >= d->cap + STORE_KEYS_ROOM_MAX)
			return err_set(e, ERR_SOFTWARE,
				       "deferred address keys recorded without room");
		d->n += d->off[i] == 0;
		d->key[i] = key;
		d->off[i] = (uint32_t)(id - d->first_id + 1);
		return 0;
	}
	if (d != NULL && d->campaign_id == campaign_id)
		filled_add(d, key); /* an earlier span's recipient, or one from before the import */
	if ((st = kst(s, KS_ADD, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, key);
	sqlite3_bind_int64(st, 2, campaign_id);
	sqlite3_bind_int64(st, 3, id);
	return store_step_done(s, st, "recording an address key", e);
}

int store_keys_leave(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
		     struct err *e)
{
	sqlite3_stmt *st;
	int64_t heir = 0;
	int rc, step;

	if ((rc = store_keys_unrecord(s, key, campaign_id, id, e)) != 0)
		return rc;
	if ((st = kst(s, KS_HEIR, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, key);
	sqlite3_bind_int64(st, 2, campaign_id);
	sqlite3_bind_int64(st, 3, id);
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		heir = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return store_db_error(s, e, "looking up an address key's heir");
	if (heir == 0)
		return 0;
	if ((st = kst(s, KS_PROMOTE, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, heir);
	sqlite3_bind_int64(st, 2, key);
	if ((rc = store_step_done(s, st, "handing an address key on", e)) != 0)
		return rc;
	return store_keys_record(s, key, campaign_id, heir, e);
}

int store_keys_leave_recipient(struct store *s, int64_t id, struct err *e)
{
	int64_t key = 0, campaign_id = 0;
	int held = store_keys_stored(s, id, &key, &campaign_id, NULL, 0, e);

	return held == 1 ? store_keys_leave(s, key, campaign_id, id, e) : held;
}

int store_keys_room(struct store *s, int64_t campaign_id, size_t n, struct err *e)
{
	struct store_defer *d = s->defer;

	if (n > STORE_KEYS_ROOM_MAX)
		return err_set(e, ERR_SOFTWARE, "room for %zu deferred address keys asked at once",
			       n);
	if (d == NULL || d->campaign_id != campaign_id || d->n + n <= d->cap)
		return 0;
	return store_keys_add(s, false, e); /* every key of the span so far, into recipient_key */
}

int store_keys_unrecord(struct store *s, int64_t key, int64_t campaign_id, int64_t id,
			struct err *e)
{
	sqlite3_stmt *st;

	if (store_keys_deferred(s, campaign_id, id)) {
		size_t i = defer_slot(s->defer, key);

		if (s->defer->off[i] == (uint32_t)(id - s->defer->first_id + 1))
			s->defer->off[i] = DEAD; /* a tombstone: the slots after it stay reachable */
		return 0;
	}
	if ((st = kst(s, KS_DROP, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, key);
	sqlite3_bind_int64(st, 2, campaign_id);
	sqlite3_bind_int64(st, 3, id);
	return store_step_done(s, st, "removing an address key", e);
}
