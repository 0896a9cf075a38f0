/* test_checkpointer.c — the checkpoint thread: a pass asked for copies every committed frame
 * into the database while the writer goes on; its figures; starting the WAL over after it;
 * a database that is not there is a clear error and no thread. */
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

#include "checkpointer.h"
#include "store.h"
#include "store_internal.h" /* the writer's connection, to write pages and read the WAL's state */
#include "scratch.h"
#include "util.h"

static void exec_ok(struct store *s, const char *sql)
{
	assert_int_equal(sqlite3_exec(s->db, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* The WAL's frames and how many of them are in the database, as a PASSIVE checkpoint of
 * nothing new on a third connection sees them. */
static void wal_state(const char *path, int *log, int *copied)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL),
			 SQLITE_OK); /* opens it: in WAL mode from here */
	assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, log,
						   copied), SQLITE_OK);
	sqlite3_close(db);
}

static void test_a_pass_copies_what_was_committed(void **state)
{
	const char *path = *state;
	struct store *w = NULL;
	struct checkpointer *c = NULL;
	struct err e = {0};
	long passes, failed;
	int frames, log, copied;

	assert_int_equal(store_open(&w, path, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(w, 0, &e), 0);
	assert_int_equal(checkpointer_start(&c, path, &e), 0);
	exec_ok(w, "CREATE TABLE t(v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
		   " SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT randomblob(2000) FROM n");
	assert_false(checkpointer_wal_over(c, 1)); /* no pass yet */
	checkpointer_kick(c);
	checkpointer_idle(c);
	checkpointer_stats(c, &passes, &failed, &frames);
	assert_int_equal(passes, 1);
	assert_int_equal(failed, 0);
	assert_true(frames > 250);
	assert_true(checkpointer_wal_over(c, frames));
	assert_false(checkpointer_wal_over(c, frames + 1));
	wal_state(path, &log, &copied);
	assert_int_equal(log, frames);
	assert_int_equal(copied, frames); /* all of it was in the database before this look */

	/* The writer says it started over: not over until a later pass finds the WAL big. */
	checkpointer_restarted(c);
	assert_false(checkpointer_wal_over(c, 1));
	/* Its next transaction writes the WAL from the start: a small WAL again. */
	exec_ok(w, "INSERT INTO t VALUES (randomblob(10))");
	checkpointer_kick(c);
	checkpointer_idle(c);
	checkpointer_stats(c, &passes, &failed, &frames);
	assert_int_equal(passes, 2);
	assert_true(frames > 0 && frames < 10);
	checkpointer_stop(c);
	exec_ok(w, "SELECT count(*) FROM t");
	store_close(w);
}

static void test_no_database_no_thread(void **state)
{
	struct checkpointer *c = (struct checkpointer *)&c;
	struct err e = {0};
	char *missing = xasprintf("%s.missing", (const char *)*state);

	assert_int_equal(checkpointer_start(&c, missing, &e), ERR_NOTFOUND);
	assert_null(c);
	assert_non_null(strstr(e.msg, missing));
	checkpointer_stop(NULL);
	free(missing);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_a_pass_copies_what_was_committed, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_no_database_no_thread, scratch_db,
						scratch_db_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
