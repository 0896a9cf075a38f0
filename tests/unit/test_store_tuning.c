/* test_store_tuning.c — the per-connection tuning calls of the store (store_cache_size,
 * store_wal_autocheckpoint) set what they say on that connection and on no other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"
#include "store_internal.h" /* the connection itself: its pragmas are what is checked */
#include "util.h"

/* The integer a one-value PRAGMA returns on s's connection. */
static long pragma_int(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long v;

	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void test_cache_size_is_per_connection(void **state)
{
	char dir[] = "/tmp/test_store_tuning.XXXXXX";
	struct store *a = NULL, *b = NULL;
	struct err e = {0};
	char *db;
	long before;

	(void)state;
	assert_non_null(mkdtemp(dir));
	db = xasprintf("%s/t.db", dir);
	assert_int_equal(store_open(&a, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&b, db, 0, &e), 0);
	before = pragma_int(b, "PRAGMA cache_size");
	assert_int_equal(store_cache_size(a, 4096, &e), 0);
	assert_int_equal(pragma_int(a, "PRAGMA cache_size"), -4096); /* KiB, not pages */
	assert_int_equal(pragma_int(b, "PRAGMA cache_size"), before);
	assert_int_equal(store_wal_autocheckpoint(a, 0, &e), 0);
	assert_int_equal(pragma_int(a, "PRAGMA wal_autocheckpoint"), 0);
	store_close(a);
	store_close(b);
	unlink(db);
	rmdir(dir);
	free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_size_is_per_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
