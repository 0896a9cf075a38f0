/* test_ledger_busy.c — waiting for the ledger's write lock: the sender's wait function is
 * called while another writer holds the lock, the transaction goes ahead once it is free,
 * and a wait that gives up fails the transaction as busy (ERR_TEMPFAIL), losing nothing;
 * and what a claim costs the ledger: no index it rewrites keys on state needlessly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

struct fixture {
	char dir[64];
	char db[96];
	struct store *holder; /* holds the write lock */
	struct store *waiter; /* wants it */
};

/* What the wait function saw, and what it does on its nth call. */
struct waits {
	struct fixture *f;
	int calls;
	int release_at; /* on this call, the holder commits (0: never) */
	int give_up_at; /* on this call, return 0 (0: never) */
};

static int wait_counting(void *ud, int tries)
{
	struct waits *w = ud;
	struct err e = {0};

	assert_int_equal(tries, w->calls); /* SQLite counts the tries of one wait */
	w->calls++;
	if (w->give_up_at != 0 && w->calls == w->give_up_at)
		return 0;
	if (w->release_at != 0 && w->calls == w->release_at)
		assert_int_equal(store_commit(w->f->holder, &e), 0);
	return 1;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct err e = {0};

	snprintf(f->dir, sizeof f->dir, "/tmp/cutoff-ledger-busy-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof f->db, "%s/cutoff.db", f->dir);
	assert_int_equal(store_open(&f->holder, f->db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&f->waiter, f->db, 0, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	store_close(f->waiter);
	store_close(f->holder);
	for (const char *const *sfx = (const char *const[]){"", "-wal", "-shm", NULL}; *sfx; sfx++) {
		snprintf(path, sizeof path, "%s%s", f->db, *sfx);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* The wait runs while the lock is held, and the transaction proceeds once it is released. */
static void test_wait_runs_until_the_lock_is_free(void **state)
{
	struct fixture *f = *state;
	struct waits w = {f, 0, 3, 0};
	struct err e = {0};

	assert_int_equal(store_begin(f->holder, &e), 0);
	store_busy_wait(f->waiter, wait_counting, &w);
	assert_int_equal(store_begin(f->waiter, &e), 0);
	assert_int_equal(w.calls, 3);
	assert_int_equal(store_commit(f->waiter, &e), 0);
}

/* A wait that gives up fails the transaction as busy; nothing was written. */
static void test_giving_up_fails_busy(void **state)
{
	struct fixture *f = *state;
	struct waits w = {f, 0, 0, 2};
	struct err e = {0};

	assert_int_equal(store_begin(f->holder, &e), 0);
	store_busy_wait(f->waiter, wait_counting, &w);
	assert_int_equal(store_begin(f->waiter, &e), ERR_TEMPFAIL);
	assert_int_equal(w.calls, 2);
	assert_non_null(strstr(e.msg, "locked"));
	assert_int_equal(store_commit(f->holder, &(struct err){0}), 0);
}

/*
 * With the wait removed, the store's own busy timeout applies again: a writer in
 * another process holds the lock for 300 ms, the transaction waits it out, and
 * the removed wait is never called.
 */
static void test_wait_removed(void **state)
{
	struct fixture *f = *state;
	struct waits w = {f, 0, 0, 1};
	struct err e = {0};
	int ready[2];
	int status = -1;
	char c;
	pid_t pid;

	store_busy_wait(f->waiter, wait_counting, &w);
	store_busy_wait(f->waiter, NULL, NULL);
	assert_int_equal(pipe(ready), 0);
	if ((pid = fork()) == 0) {
		struct store *s = NULL;
		int ok = store_open(&s, f->db, 0, &e) == 0 && store_begin(s, &e) == 0 &&
			 write(ready[1], "x", 1) == 1;
		usleep(300 * 1000);
		ok = ok && store_commit(s, &e) == 0;
		store_close(s);
		_exit(ok ? 0 : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(store_begin(f->waiter, &e), 0);
	assert_int_equal(store_commit(f->waiter, &e), 0);
	assert_int_equal(w.calls, 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* it held the lock */
	close(ready[0]), close(ready[1]);
}

/*
 * Claiming and settling change a delivery's state: an index with state in it moves an
 * entry for each (migration 008 took it out of delivery_campaign). The index still keys
 * on campaign_id, which the per-campaign counts and ON DELETE CASCADE look up by.
 */
static void test_delivery_campaign_without_state(void **state)
{
	struct fixture *f = *state;
	char cols[128] = "";
	sqlite3_stmt *st;
	sqlite3 *db;

	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM pragma_index_info("
					    "'delivery_campaign') ORDER BY seqno", -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		snprintf(cols + strlen(cols), sizeof cols - strlen(cols), "%s%s", cols[0] ? "," : "",
			 (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_string_equal(cols, "campaign_id");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_wait_runs_until_the_lock_is_free, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_giving_up_fails_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_campaign_without_state, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
