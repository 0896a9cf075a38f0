/* test_store_pcache.c — cutoff's SQLite page cache: what the page cache interface promises
 * (pages kept intact while cached, pinned pages never reused, the page unpinned longest ago
 * reused first, truncate, rekey, discard, cache size, extra bytes zeroed), that store_open
 * installs it, and SQLite's own integrity through it under a tiny cache (spills, rollbacks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_pcache.h"
#include "scratch.h"
#include "util.h"

#define PAGE 4096
#define EXTRA 136

static const sqlite3_pcache_methods2 *M;

static int methods(void **state)
{
	(void)state;
	M = store_pcache_methods();
	return M->xInit(M->pArg) == SQLITE_OK ? 0 : -1;
}

/* A purgeable cache of max pages. */
static sqlite3_pcache *cache(int max)
{
	sqlite3_pcache *c = M->xCreate(PAGE, EXTRA, 1);

	assert_non_null(c);
	M->xCachesize(c, max);
	return c;
}

/* Page key, created if need be (createFlag 2), stamped with its key in its content. */
static sqlite3_pcache_page *get(sqlite3_pcache *c, unsigned key)
{
	sqlite3_pcache_page *p = M->xFetch(c, key, 2);

	assert_non_null(p);
	memset(p->pBuf, (int)(key & 0xff), PAGE);
	memcpy(p->pBuf, &key, sizeof key);
	return p;
}

/* Whether key is cached, with the content get() gave it. */
static int holds(sqlite3_pcache *c, unsigned key)
{
	sqlite3_pcache_page *p = M->xFetch(c, key, 0);
	unsigned stamp;

	if (!p)
		return 0;
	memcpy(&stamp, p->pBuf, sizeof stamp);
	assert_int_equal(stamp, key);
	assert_int_equal(((unsigned char *)p->pBuf)[PAGE - 1], key & 0xff);
	M->xUnpin(c, p, 0);
	return 1;
}

static void test_fetch_and_extra_zeroed(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(100);
	static const unsigned keys[] = {1, 2, 1023, 1024, 1025, 70000, 5000000};
	unsigned char zero[EXTRA] = {0};

	assert_null(M->xFetch(c, 1, 0));
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		sqlite3_pcache_page *p = get(c, keys[i]);
		assert_memory_equal(p->pExtra, zero, EXTRA);
		memset(p->pExtra, 0xA5, EXTRA); /* what SQLite would write there */
		assert_ptr_equal(M->xFetch(c, keys[i], 0), p);
		M->xUnpin(c, p, 0);
	}
	assert_int_equal(M->xPagecount(c), 7);
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		assert_true(holds(c, keys[i]));
	/* A discarded page's memory comes back with its extra bytes zeroed again. */
	M->xUnpin(c, M->xFetch(c, 2, 0), 1);
	assert_false(holds(c, 2));
	assert_int_equal(M->xPagecount(c), 6);
	sqlite3_pcache_page *p = get(c, 3);
	assert_memory_equal(p->pExtra, zero, EXTRA);
	M->xDestroy(c);
}

static void test_reuses_the_page_unpinned_longest_ago(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(4);

	for (unsigned k = 1; k <= 4; k++)
		M->xUnpin(c, get(c, k), 0);
	/* The cache is full: page 5 takes the memory of page 1, unpinned first. */
	M->xUnpin(c, get(c, 5), 0);
	assert_false(holds(c, 1));
	assert_int_equal(M->xPagecount(c), 4);
	/* holds() pinned and unpinned 2..5 in that order, so 2 goes next; pinning 3 again and
	 * unpinning it last makes 4 the one after. */
	assert_true(holds(c, 2) && holds(c, 3) && holds(c, 4) && holds(c, 5));
	assert_true(holds(c, 3));
	M->xUnpin(c, get(c, 6), 0);
	assert_false(holds(c, 2));
	M->xUnpin(c, get(c, 7), 0);
	assert_false(holds(c, 4));
	assert_true(holds(c, 3) && holds(c, 5) && holds(c, 6) && holds(c, 7));
	M->xDestroy(c);
}

static void test_pinned_pages_are_never_reused(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(10);
	sqlite3_pcache_page *pinned[10];

	for (unsigned k = 1; k <= 9; k++)
		pinned[k] = get(c, k);
	/* 9 of 10 pinned: createFlag 1 says no (SQLite spills dirty pages first), 2 says yes. */
	assert_null(M->xFetch(c, 100, 1));
	for (unsigned k = 100; k < 120; k++)
		assert_non_null(get(c, k));
	assert_int_equal(M->xPagecount(c), 29);
	for (unsigned k = 1; k <= 9; k++)
		assert_ptr_equal(M->xFetch(c, k, 0), pinned[k]);
	/* Over the limit, an unpinned page is let go at once. */
	M->xUnpin(c, pinned[1], 0);
	assert_false(holds(c, 1));
	assert_int_equal(M->xPagecount(c), 28);
	M->xDestroy(c);
}

static void test_cache_size_shrinks_and_non_purgeable_keeps(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(50);

	for (unsigned k = 1; k <= 50; k++)
		M->xUnpin(c, get(c, k), 0);
	M->xCachesize(c, 10);
	assert_int_equal(M->xPagecount(c), 10);
	for (unsigned k = 41; k <= 50; k++) /* the last ten unpinned stay */
		assert_true(holds(c, k));
	M->xShrink(c);
	assert_int_equal(M->xPagecount(c), 0);
	M->xDestroy(c);

	sqlite3_pcache *mem = M->xCreate(PAGE, EXTRA, 0); /* an in-memory database's */
	M->xCachesize(mem, 5);
	for (unsigned k = 1; k <= 200; k++)
		assert_non_null(get(mem, k));
	assert_int_equal(M->xPagecount(mem), 200);
	for (unsigned k = 1; k <= 200; k++)
		assert_non_null(M->xFetch(mem, k, 0));
	M->xDestroy(mem);
}

static void test_truncate_and_rekey(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(5000);
	sqlite3_pcache_page *p;

	for (unsigned k = 1; k <= 3000; k++)
		if (k % 3)
			M->xUnpin(c, get(c, k), 0);
		else
			get(c, k); /* left pinned: truncate unpins implicitly */
	M->xTruncate(c, 1500);
	assert_int_equal(M->xPagecount(c), 1499);
	assert_true(holds(c, 1499));
	assert_false(holds(c, 1500));
	assert_false(holds(c, 2999));
	assert_true(holds(c, 1));
	for (unsigned k = 1500; k <= 1600; k++) /* the numbers can be used again */
		M->xUnpin(c, get(c, k), 0);
	assert_int_equal(M->xPagecount(c), 1600);

	/* Rekey moves a page; a page already at the new number is discarded. */
	p = get(c, 4000);
	M->xRekey(c, p, 4000, 7);
	assert_null(M->xFetch(c, 4000, 0));
	assert_ptr_equal(M->xFetch(c, 7, 0), p);
	unsigned stamp;
	memcpy(&stamp, p->pBuf, sizeof stamp);
	assert_int_equal(stamp, 4000);
	assert_int_equal(M->xPagecount(c), 1600);
	/* A page far past the others (SQLite parks one at the pending-byte page, 262,145, while it
	 * balances): truncating below it drops it and what lies between, nothing else. */
	M->xUnpin(c, get(c, 262145), 0);
	M->xTruncate(c, 1600);
	assert_int_equal(M->xPagecount(c), 1599);
	assert_false(holds(c, 262145));
	assert_false(holds(c, 1600));
	assert_true(holds(c, 1599));
	M->xTruncate(c, 0);
	assert_int_equal(M->xPagecount(c), 0);
	assert_null(M->xFetch(c, 7, 0));
	M->xDestroy(c);
}

/* Many pages through a small cache, in a random order: every page found is intact. */
static void test_churn_keeps_pages_intact(void **state)
{
	(void)state;
	sqlite3_pcache *c = cache(64);
	unsigned seed = 1, found = 0;

	for (int i = 0; i < 200000; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned key = 1 + (seed >> 8) % 5000;
		if (holds(c, key))
			found++;
		else
			M->xUnpin(c, get(c, key), 0);
		assert_true(M->xPagecount(c) <= 64);
	}
	assert_true(found > 0);
	M->xDestroy(c);
}

/* ---- through SQLite --------------------------------------------------------------------- */

static void test_store_open_installs_it(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	sqlite3_pcache_methods2 now = {0};

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &now), SQLITE_MISUSE);
	/* SQLite is initialised now, so it refuses to say; shut it down to ask. */
	store_close(s);
	assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &now), SQLITE_OK);
	assert_ptr_equal(now.xFetch, store_pcache_methods()->xFetch);
	assert_ptr_equal(now.xCreate, store_pcache_methods()->xCreate);
}

static sqlite3_int64 one(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
}

/* A 10-page cache, transactions of thousands of pages (SQLite spills to the WAL and reads back
 * through the cache), a rolled-back one, a second connection writing: the database is intact
 * and holds exactly what was committed. */
static void test_sqlite_intact_through_a_tiny_cache(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	sqlite3 *a = NULL, *b = NULL;
	char *msg = NULL;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0); /* installs */
	store_close(s);
	assert_int_equal(sqlite3_open(*state, &a), SQLITE_OK);
	assert_int_equal(sqlite3_open(*state, &b), SQLITE_OK);
	exec_ok(a, "PRAGMA journal_mode = WAL; PRAGMA cache_size = 10;"
		   " CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB, w TEXT UNIQUE);"
		   " BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
		   " WHERE i < 20000) INSERT INTO t SELECT i, randomblob(300), hex(randomblob(16))"
		   " FROM n; COMMIT;");
	assert_int_equal(one(a, "SELECT count(*) FROM t"), 20000);
	exec_ok(a, "BEGIN; DELETE FROM t WHERE k % 2 = 0; UPDATE t SET v = zeroblob(500);"
		   " INSERT INTO t SELECT k + 100000, v, w || 'x' FROM t;");
	assert_int_equal(one(a, "SELECT count(*) FROM t"), 20000);
	exec_ok(a, "ROLLBACK");
	exec_ok(b, "PRAGMA cache_size = 10; UPDATE t SET v = zeroblob(7) WHERE k <= 5000");
	assert_int_equal(one(a, "SELECT count(*) FROM t"), 20000);
	assert_int_equal(one(a, "SELECT sum(length(v)) FROM t"), 5000 * 7 + 15000 * 300);
	assert_int_equal(one(a, "SELECT count(DISTINCT w) FROM t"), 20000);
	assert_int_equal(sqlite3_exec(a, "PRAGMA integrity_check", NULL, NULL, &msg), SQLITE_OK);
	assert_int_equal(one(a, "SELECT count(*) FROM pragma_integrity_check WHERE"
				" integrity_check <> 'ok'"), 0);
	exec_ok(a, "VACUUM"); /* rekeys and truncates pages */
	assert_int_equal(one(b, "SELECT count(*) FROM t"), 20000);
	assert_int_equal(one(b, "SELECT count(*) FROM pragma_integrity_check WHERE"
				" integrity_check <> 'ok'"), 0);
	sqlite3_close(a);
	sqlite3_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fetch_and_extra_zeroed),
		cmocka_unit_test(test_reuses_the_page_unpinned_longest_ago),
		cmocka_unit_test(test_pinned_pages_are_never_reused),
		cmocka_unit_test(test_cache_size_shrinks_and_non_purgeable_keeps),
		cmocka_unit_test(test_truncate_and_rekey),
		cmocka_unit_test(test_churn_keeps_pages_intact),
		cmocka_unit_test_setup_teardown(test_sqlite_intact_through_a_tiny_cache, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_store_open_installs_it, scratch_db,
						scratch_db_remove),
	};
	return cmocka_run_group_tests(tests, methods, NULL);
}
