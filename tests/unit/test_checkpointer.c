/* test_checkpointer.c — the checkpoint thread: a pass asked for copies every committed frame
 * into the database while the writer goes on; its figures; the writer's count of the WAL;
 * starting the WAL over at the threshold and not before; a database that is not there is a
 * clear error and no thread. */
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
#include <dirent.h>
#include <errno.h>
#include <sys/resource.h>

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

/* The WAL's last frame and how many are copied, read from the wal-index (-shm) without a
 * connection, which would copy what it can: the header's mxFrame (offset 16) and the
 * checkpoint information's nBackfill (offset 96), in native byte order
 * (https://sqlite.org/walformat.html, "The WAL-Index Header"). */
static void shm_state(const char *path, uint32_t *last, uint32_t *copied)
{
	char *shm = xasprintf("%s-shm", path);
	FILE *f = fopen(shm, "rb");
	unsigned char b[100];

	assert_non_null(f);
	assert_int_equal(fread(b, 1, sizeof b, f), sizeof b);
	fclose(f);
	memcpy(last, b + 16, sizeof *last);
	memcpy(copied, b + 96, sizeof *copied);
	free(shm);
}

static void test_a_pass_copies_what_was_committed(void **state)
{
	const char *path = *state;
	struct store *w = NULL;
	struct checkpointer *c = NULL;
	struct err e = {0};
	long passes, failed;
	int frames, log, copied;
	uint32_t last, done;

	assert_int_equal(store_open(&w, path, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_wal_autocheckpoint(w, 0, &e), 0);
	assert_int_equal(store_wal_frames(w), -1); /* no commit yet */
	assert_int_equal(checkpointer_start(&c, path, &e), 0);
	exec_ok(w, "CREATE TABLE t(v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
		   " SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT randomblob(2000) FROM n");
	checkpointer_kick(c);
	checkpointer_idle(c);
	checkpointer_stats(c, &passes, &failed, &frames);
	assert_int_equal(passes, 1);
	assert_int_equal(failed, 0);
	assert_true(frames > 250);
	assert_int_equal(store_wal_frames(w), frames); /* the writer's count after its commit */
	wal_state(path, &log, &copied);
	assert_int_equal(log, frames);
	assert_int_equal(copied, frames); /* all of it was in the database before this look */

	/* Under the threshold, a commit only asks for a pass. */
	exec_ok(w, "INSERT INTO t SELECT randomblob(2000) FROM t LIMIT 100");
	checkpointer_committed(c, w, store_wal_frames(w) + 1);
	checkpointer_idle(c);
	checkpointer_stats(c, &passes, &failed, &frames);
	assert_int_equal(passes, 2);
	/* At it, the writer has copied every frame when the call returns, so its next
	 * transaction writes the WAL from the start. */
	exec_ok(w, "INSERT INTO t SELECT randomblob(2000) FROM t LIMIT 400");
	checkpointer_committed(c, w, store_wal_frames(w));
	shm_state(path, &last, &done);
	assert_int_equal(last, (uint32_t)store_wal_frames(w));
	assert_int_equal(done, last);
	exec_ok(w, "INSERT INTO t VALUES (randomblob(10))");
	assert_true(store_wal_frames(w) > 0 && store_wal_frames(w) < 10);
	checkpointer_kick(c);
	checkpointer_idle(c);
	checkpointer_stats(c, &passes, &failed, &frames);
	assert_int_equal(failed, 0);
	assert_int_equal(frames, store_wal_frames(w));
	checkpointer_stop(c);
	exec_ok(w, "SELECT count(*) FROM t");
	store_close(w);
}

/* How many threads of this process run at nice value n (/proc/self/task/TID/stat, field 19). */
static int threads_at_nice(long n)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int count = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[300], line[1024], *p;
		long nice = 0;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue; /* a thread that just ended */
		if (fgets(line, sizeof line, f) != NULL && (p = strrchr(line, ')')) != NULL &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %ld",
			   &nice) == 1 && nice == n)
			count++;
		fclose(f);
	}
	closedir(d);
	return count;
}

/* The thread copies in the background: it runs 10 nice values below the thread that started
 * it (the import's reader keeps its core), and only it. */
static void test_the_thread_runs_at_a_lower_priority(void **state)
{
	const char *path = *state;
	struct store *w = NULL;
	struct checkpointer *c = NULL;
	struct err e = {0};
	long base, want;

	errno = 0;
	base = getpriority(PRIO_PROCESS, 0);
	assert_int_equal(errno, 0);
	if (base >= 19) {
		skip(); /* nothing lower to go to */
		return;
	}
	want = base + 10 < 19 ? base + 10 : 19;
	assert_int_equal(store_open(&w, path, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(threads_at_nice(want), 0);
	assert_int_equal(checkpointer_start(&c, path, &e), 0);
	checkpointer_kick(c);
	checkpointer_idle(c); /* the thread has run: it sets its priority first */
	assert_int_equal(threads_at_nice(want), 1);
	assert_int_equal(threads_at_nice(base), 1); /* this one, unchanged */
	checkpointer_stop(c);
	assert_int_equal(threads_at_nice(want), 0);
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
		cmocka_unit_test_setup_teardown(test_the_thread_runs_at_a_lower_priority, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_no_database_no_thread, scratch_db,
						scratch_db_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
