/* test_store_walbuf.c — STORE_WAL_BUFFERED (store_walbuf.h): a commit's WAL frames reach the
 * file in one write, and another connection reads exactly what was committed (spilled pages
 * rewritten in a transaction, rollbacks, transactions over the 1 MiB buffer, a WAL started
 * over). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "store.h"
#include "store_internal.h" /* the connection itself */
#include "store_walbuf.h"
#include "util.h"
#include "scratch.h"

/* ---- counting the writes to -wal files, under the unix VFS ---- */

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
static sqlite3_syscall_ptr real_pwrite, real_pwrite64;
static long wal_writes;
static int wal_fail_errno; /* non-zero: writes to a -wal file fail with it */

static int is_wal_fd(int fd)
{
	char link[64], path[4096];
	ssize_t n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof path - 1)) < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0;
}

/* Counts a write to a -wal file; true when it is to fail instead. */
static int wal_write_fails(int fd)
{
	int wal = is_wal_fd(fd);

	wal_writes += wal;
	if (!wal || wal_fail_errno == 0)
		return 0;
	errno = wal_fail_errno;
	return 1;
}

static ssize_t counting_pwrite(int fd, const void *b, size_t n, off_t off)
{
	return wal_write_fails(fd) ? -1 : ((pwrite_fn)real_pwrite)(fd, b, n, off);
}

static ssize_t counting_pwrite64(int fd, const void *b, size_t n, off_t off)
{
	return wal_write_fails(fd) ? -1 : ((pwrite_fn)real_pwrite64)(fd, b, n, off);
}

static int setup(void **state)
{
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find("unix");

	(void)state;
	assert_non_null(unix_vfs);
	real_pwrite = unix_vfs->xGetSystemCall(unix_vfs, "pwrite");
	real_pwrite64 = unix_vfs->xGetSystemCall(unix_vfs, "pwrite64");
	if (real_pwrite != NULL)
		unix_vfs->xSetSystemCall(unix_vfs, "pwrite", (sqlite3_syscall_ptr)counting_pwrite);
	if (real_pwrite64 != NULL)
		unix_vfs->xSetSystemCall(unix_vfs, "pwrite64",
					 (sqlite3_syscall_ptr)counting_pwrite64);
	return 0;
}

/* ---- helpers ---- */

static void exec_ok(struct store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		print_error("%s: %s\n", sql, sqlite3_errmsg(s->db));
	assert_int_equal(rc, SQLITE_OK);
}

struct fixture {
	char dir[64];
	char *db;
	struct store *w; /* the buffered writer */
	struct store *r; /* a plain connection that reads */
};

static void open_pair(struct fixture *f, int writer_flags)
{
	struct err e = {0};

	snprintf(f->dir, sizeof f->dir, "/tmp/test_store_walbuf.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = xasprintf("%s/t.db", f->dir);
	assert_int_equal(store_open(&f->w, f->db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_close(f->w);
	assert_int_equal(store_open(&f->w, f->db, writer_flags, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(f->w, 0, &e), 0);
	assert_int_equal(store_open(&f->r, f->db, 0, &e), 0);
	exec_ok(f->w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
}

static void close_pair(struct fixture *f)
{
	char *p;

	store_close(f->w);
	store_close(f->r);
	unlink(f->db);
	p = xasprintf("%s-wal", f->db), unlink(p), free(p);
	p = xasprintf("%s-shm", f->db), unlink(p), free(p);
	rmdir(f->dir);
	free(f->db);
}


static char *query_text(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	char *v;

	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

/* SQLite's integrity check passes on s. */
static void assert_sound(struct store *s)
{
	char *ok = query_text(s, "PRAGMA integrity_check");

	assert_string_equal(ok, "ok");
	free(ok);
}

/* Rows k in [from, to) with a 3000-byte value that depends on k and round: about a page each. */
static void write_rows(struct store *s, int from, int to, int round)
{
	char *sql = xasprintf("WITH RECURSIVE n(k) AS (SELECT %d UNION ALL SELECT k + 1 FROM n"
			      " WHERE k + 1 < %d) INSERT OR REPLACE INTO t SELECT k,"
			      " zeroblob(2990) || CAST(k * 7 + %d AS BLOB) FROM n",
			      from, to, round);

	exec_ok(s, sql);
	free(sql);
}

/* What the reader sees of t, as one number that changes with any row's key or value. */
static int64_t digest(struct store *s)
{
	return scratch_int(s, "SELECT count(*) * 1000003 + coalesce(sum(k * length(v)), 0) +"
			    " coalesce(sum(CAST(substr(v, 2991) AS INTEGER)), 0) FROM t");
}

/* ---- tests ---- */

/* The buffered connection really opens through the VFS, and a commit of ~25 pages (~105 KiB,
 * under one piece of WALBUF_WRITE_MAX) is one write of the WAL where the default VFS makes
 * two a frame. */
static void test_a_commit_is_one_write(void **state)
{
	struct fixture f, plain;
	sqlite3_vfs *vfs = NULL;
	long buffered, unbuffered;

	(void)state;
	open_pair(&f, STORE_WAL_BUFFERED);
	assert_non_null(store_walbuf_vfs());
	assert_int_equal(sqlite3_file_control(f.w->db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs),
			 SQLITE_OK);
	assert_string_equal(vfs->zName, store_walbuf_vfs());
	write_rows(f.w, 0, 25, 0); /* the first commit also writes (and syncs) the WAL header */
	wal_writes = 0;
	write_rows(f.w, 0, 25, 1);
	buffered = wal_writes;
	close_pair(&f);

	open_pair(&plain, 0);
	write_rows(plain.w, 0, 25, 0);
	wal_writes = 0;
	write_rows(plain.w, 0, 25, 1);
	unbuffered = wal_writes;
	close_pair(&plain);
	assert_true(unbuffered >= 50); /* the counting works: two writes a frame */
	assert_int_equal(buffered, 1);
}

/* Another connection reads exactly what was committed: transactions of all sizes (over the
 * 1 MiB kept in memory), pages spilled and rewritten inside a transaction, a rollback, and
 * commits after the reader started the WAL over. */
static void test_readers_see_every_commit(void **state)
{
	struct fixture f;
	int64_t want;

	(void)state;
	open_pair(&f, STORE_WAL_BUFFERED);
	write_rows(f.w, 0, 10, 0);
	want = digest(f.w);
	assert_int_equal(digest(f.r), want);
	write_rows(f.w, 0, 1000, 1); /* ~3 MiB: written as it fills */
	want = digest(f.w);
	assert_int_equal(digest(f.r), want);

	exec_ok(f.w, "PRAGMA cache_size = 10"); /* dirty pages spill to the WAL mid-transaction */
	exec_ok(f.w, "BEGIN");
	for (int round = 2; round < 6; round++)
		write_rows(f.w, 0, 200, round);
	assert_int_equal(digest(f.r), want); /* nothing visible before the commit */
	exec_ok(f.w, "COMMIT");
	want = digest(f.w);
	assert_int_equal(digest(f.r), want);

	exec_ok(f.w, "BEGIN");
	write_rows(f.w, 1000, 1100, 9);
	exec_ok(f.w, "ROLLBACK");
	assert_int_equal(digest(f.w), want);
	assert_int_equal(digest(f.r), want);

	exec_ok(f.r, "PRAGMA wal_checkpoint(TRUNCATE)"); /* the reader copies it all */
	write_rows(f.w, 500, 700, 7);                    /* the writer starts the WAL over */
	want = digest(f.w);
	assert_int_equal(digest(f.r), want);
	assert_sound(f.r);
	close_pair(&f);
}

/* With synchronous=NORMAL a commit does not sync the WAL, so only its last frame can flush
 * what is kept: a disk that refuses the write (ENOSPC) fails the COMMIT itself, the reader
 * never sees the transaction, and the database stays sound and writable. */
static void test_a_failed_write_fails_the_commit_without_sync(void **state)
{
	struct fixture f;
	int64_t want;
	int rc;

	(void)state;
	open_pair(&f, STORE_WAL_BUFFERED);
	exec_ok(f.w, "PRAGMA synchronous = NORMAL");
	write_rows(f.w, 0, 10, 0);
	want = digest(f.w);
	exec_ok(f.w, "BEGIN");
	write_rows(f.w, 0, 20, 1); /* ~20 pages: under the 1 MiB kept, nothing written yet */
	wal_fail_errno = ENOSPC;
	rc = sqlite3_exec(f.w->db, "COMMIT", NULL, NULL, NULL);
	wal_fail_errno = 0;
	assert_int_not_equal(rc, SQLITE_OK);
	if (!sqlite3_get_autocommit(f.w->db))
		exec_ok(f.w, "ROLLBACK");
	assert_int_equal(digest(f.r), want);
	assert_int_equal(digest(f.w), want);
	write_rows(f.w, 0, 20, 2); /* and the next commit goes through */
	want = digest(f.w);
	assert_int_equal(digest(f.r), want);
	assert_sound(f.r);
	close_pair(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_commit_is_one_write),
		cmocka_unit_test(test_readers_see_every_commit),
		cmocka_unit_test(test_a_failed_write_fails_the_commit_without_sync),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
