/* test_store_checkpoint.c — store_wal_checkpoint: a PASSIVE pass leaves the database file
 * unsynced when it could not copy the WAL to its end (a reader in the way, or commits that came
 * in while it copied: SQLite syncs only after a whole copy), PASSIVE_SYNC syncs it then too. */
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
#include "scratch.h"
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

/* Setup: the counting VFS, then a scratch database path (scratch.h). */
static int counting_scratch_db(void **state)
{
	counting_vfs_register();
	return scratch_db(state);
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

/*
 * The case the service meets under load: a pass that copies every frame it saw, while commits
 * come in behind it. SQLite then leaves the file unsynced (it compares with the WAL's end after
 * the copy), though the pass reports all frames copied; PASSIVE_SYNC syncs it all the same.
 * Simulated by a commit from inside the copy (a VFS write hook on the database file).
 */
static struct store *during_copy_writer;

static int writing_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	struct store *w = during_copy_writer;

	during_copy_writer = NULL; /* once */
	if (w != NULL)
		sql(w, "INSERT INTO t(x) VALUES (randomblob(3000))");
	return real_methods->xWrite(f, buf, n, off);
}

static void test_passive_sync_with_commits_during_the_copy(void **state)
{
	const char *db = *state;
	struct store *w = NULL, *c = NULL;
	struct err e = {0};
	int frames = 0, copied = 0, before;

	assert_int_equal(store_open(&w, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&c, db, 0, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(w, 0, &e), 0);
	sql(w, "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
	counting_methods.xWrite = writing_write;
	for (int mode = STORE_CKPT_PASSIVE; mode <= STORE_CKPT_PASSIVE_SYNC; mode++) {
		sql(w, "INSERT INTO t(x) VALUES (randomblob(3000))");
		during_copy_writer = w;
		before = db_syncs;
		assert_int_equal(store_wal_checkpoint(c, mode, &frames, &copied, &e), 0);
		assert_null(during_copy_writer);  /* a commit came in during the copy */
		assert_int_equal(copied, frames); /* every frame the pass saw */
		assert_int_equal(db_syncs, before + (mode == STORE_CKPT_PASSIVE_SYNC));
	}
	counting_methods.xWrite = real_methods->xWrite;
	store_close(c);
	store_close(w);
}

/* A whole copy with nothing coming in is synced by SQLite itself; an empty WAL, by no one. */
static void test_whole_copy_and_empty_wal(void **state)
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
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_TRUNCATE, &frames, &copied, &e), 0);
	before = db_syncs;
	assert_int_equal(store_wal_checkpoint(c, STORE_CKPT_PASSIVE_SYNC, &frames, &copied, &e),
			 0);
	assert_int_equal(frames, 0);
	assert_int_equal(db_syncs, before);
	store_close(c);
	store_close(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_passive_sync_syncs_the_database,
						counting_scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_passive_sync_with_commits_during_the_copy,
						counting_scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_whole_copy_and_empty_wal, counting_scratch_db,
						scratch_db_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
