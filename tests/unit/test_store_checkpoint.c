/* test_store_checkpoint.c — store_wal_checkpoint: a PASSIVE pass that cannot copy the whole WAL
 * leaves the database file unsynced (SQLite syncs it only after a whole copy), PASSIVE_SYNC
 * syncs it after copying, and both report the frames in the WAL and those copied. */
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
#include "store_internal.h" /* the connections themselves: the test writes and reads raw SQL */
#include "util.h"

/* A VFS over the default one that counts the syncs of main database files (not of WALs). */
static sqlite3_vfs counting_vfs;
static sqlite3_io_methods counting_methods;
static const sqlite3_io_methods *real_methods;
static int db_syncs;

static int counting_sync(sqlite3_file *f, int flags)
{
	db_syncs++;
	return real_methods->xSync(f, flags);
}

static int counting_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
			 int *out_flags)
{
	sqlite3_vfs *real = vfs->pAppData;
	int rc = real->xOpen(real, name, f, flags, out_flags);

	if (rc == SQLITE_OK && (flags & SQLITE_OPEN_MAIN_DB) && f->pMethods != NULL) {
		real_methods = f->pMethods; /* the unix VFS: one table for every file it opens */
		counting_methods = *real_methods;
		counting_methods.xSync = counting_sync;
		f->pMethods = &counting_methods;
	}
	return rc;
}

/* Makes the counting VFS the default one (the store opens its connections with it). */
static void counting_vfs_register(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);

	if (counting_vfs.zName != NULL)
		return;
	counting_vfs = *real;
	counting_vfs.zName = "counting";
	counting_vfs.pAppData = real;
	counting_vfs.xOpen = counting_open;
	assert_int_equal(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
}

static void sql(struct store *s, const char *q)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, q, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", q, msg);
}

/* Setup: the counting VFS, a scratch directory; *state is a database path in it. */
static int scratch_db(void **state)
{
	char dir[] = "/tmp/test_store_checkpoint.XXXXXX";

	counting_vfs_register();
	if (mkdtemp(dir) == NULL)
		return -1;
	*state = xasprintf("%s/t.db", dir);
	return 0;
}

/* Teardown: the database, its WAL and shared memory, and the directory. */
static int scratch_db_remove(void **state)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	char *db = *state, *dir = xstrdup(db);

	for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
		char *f = xasprintf("%s%s", db, suffix[i]);

		unlink(f);
		free(f);
	}
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
	free(dir);
	free(db);
	return 0;
}

/*
 * A writer commits while a reader holds an older snapshot: a checkpoint may copy only the
 * frames that snapshot sees, as with a writer committing during the pass (the service's case).
 */
static void commit_past_reader(struct store *writer, struct store *reader)
{
	sql(reader, "COMMIT");
	sql(writer, "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 20)"
		    " INSERT INTO t(x) SELECT randomblob(3000) FROM i");
	sql(reader, "BEGIN; SELECT count(*) FROM t");
	sql(writer, "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 20)"
		    " INSERT INTO t(x) SELECT randomblob(3000) FROM i");
}

static void test_passive_sync_syncs_the_database(void **state)
{
	const char *db = *state;
	struct store *w = NULL, *r = NULL, *c = NULL;
	struct err e = {0};
	int frames = 0, copied = 0, before;

	assert_int_equal(store_open(&w, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&r, db, 0, &e), 0);
	assert_int_equal(store_open(&c, db, 0, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(w, 0, &e), 0);
	sql(w, "CREATE TABLE t(x)");
	sql(r, "BEGIN; SELECT count(*) FROM sqlite_schema");

	commit_past_reader(w, r);
	before = db_syncs;
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_PASSIVE, &frames, &copied, &e), 0);
	assert_true(copied > 0 && copied < frames); /* a part: the reader's snapshot */
	assert_int_equal(db_syncs, before);         /* SQLite's own pass: no sync */

	commit_past_reader(w, r);
	before = db_syncs;
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_PASSIVE_SYNC, &frames, &copied, &e),
			 0);
	assert_true(copied > 0 && copied < frames);
	assert_int_equal(db_syncs, before + 1); /* what it copied is on disk */

	/* Nothing lost: the reader gone, a RESTART on the writer copies the rest. */
	sql(r, "COMMIT");
	assert_int_equal(store_wal_checkpoint(w, STORE_CKPT_RESTART, &frames, &copied, &e), 0);
	assert_int_equal(copied, frames);
	store_close(r);
	store_close(c);
	store_close(w);
	assert_int_equal(store_open(&r, db, STORE_READONLY, &e), 0);
	sql(r, "CREATE TEMP TABLE n AS SELECT count(*) AS n FROM t");
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(r->db, "SELECT n FROM n", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 80);
	sqlite3_finalize(st);
	store_close(r);
}

/* A whole copy (nothing in the way) is synced by SQLite; PASSIVE_SYNC adds no second sync
 * when it copied nothing new. */
static void test_passive_sync_of_nothing_new(void **state)
{
	const char *db = *state;
	struct store *w = NULL, *c = NULL;
	struct err e = {0};
	int frames = 0, copied = 0, before;

	assert_int_equal(store_open(&w, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&c, db, 0, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(w, 0, &e), 0);
	sql(w, "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
	before = db_syncs;
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_PASSIVE, &frames, &copied, &e), 0);
	assert_int_equal(copied, frames);
	assert_int_equal(db_syncs, before + 1); /* SQLite's, after a whole copy */
	before = db_syncs;
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_PASSIVE_SYNC, &frames, &copied, &e),
			 0);
	assert_int_equal(copied, frames);
	assert_int_equal(db_syncs, before);
	store_close(c);
	store_close(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_passive_sync_syncs_the_database, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_passive_sync_of_nothing_new, scratch_db,
						scratch_db_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
