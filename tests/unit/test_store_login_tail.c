/* test_store_login_tail.c — logins whose keys a connection left out of login_by_user (the tail,
 * db/012_login_tail.sql) are found by a person's history exactly once, before and after
 * store_login_index adds them in bulk (at once or in steps); forget reaches them; a bulk
 * that fails or is cut short loses and doubles nothing; a commit that finds a tail indexes
 * it with its own logins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_login.h"
#include "store_report.h"
#include "store_internal.h" /* the connection itself: the tables are checked with SQL */
#include "scratch.h"

/* Whether login_by_user holds exactly the keys of the known logins up to through, no more. */
static void assert_keys_match(struct store *s)
{
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM (SELECT user_id, at, id FROM login"
				    " WHERE outcome <> 'unknown' AND id <= (SELECT through FROM"
				    " login_indexed) EXCEPT SELECT user_id, at, login_id FROM"
				    " login_by_user)"), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM (SELECT user_id, at, login_id FROM"
				    " login_by_user EXCEPT SELECT user_id, at, id FROM login"
				    " WHERE outcome <> 'unknown' AND id <= (SELECT through FROM"
				    " login_indexed))"), 0);
}

struct logins_seen {
	int n;
	int64_t refs[16]; /* login ids, in the order listed */
};

static int on_item(void *ud, const struct store_history_item *h)
{
	struct logins_seen *w = ud;

	if (strcmp(h->what, "login") == 0 && w->n < 16)
		w->refs[w->n++] = h->ref;
	return 0;
}

/* The logins of user in its history (no recipient: only the login rows count), checked to be
 * each listed once, in time order. */
static int history_logins(struct store *s, const char *user)
{
	struct logins_seen w = {0};
	struct err e = {0};

	assert_int_equal(store_report_history(s, 0, user, on_item, &w, &e), 0);
	for (int i = 1; i < w.n; i++)
		assert_true(w.refs[i - 1] < w.refs[i]); /* at increases with id here: no repeat */
	return w.n;
}

/* Records n logins of user (outcome), at times from *at on. */
static void record(struct store *s, const char *user, const char *outcome, int n, int64_t *at)
{
	struct err e = {0};

	for (int i = 0; i < n; i++)
		assert_int_equal(store_login_record(s, user, (*at)++, "4.6", "windows", outcome, &e),
				 0);
}

static void commit_logins(struct store *s, const char *user, const char *outcome, int n,
			  int64_t *at)
{
	struct err e = {0};

	assert_int_equal(store_begin(s, &e), 0);
	record(s, user, outcome, n, at);
	assert_int_equal(store_commit(s, &e), 0);
}

static int64_t tail(struct store *s)
{
	struct err e = {0};
	int64_t n = -1;

	assert_int_equal(store_login_tail(s, &n, &e), 0);
	return n;
}

/* Left out, the logins are in the tail and in the history; indexed in bulk, in login_by_user
 * and still once in the history; a bulk below its minimum does nothing. */
static void test_tail_is_found_then_indexed(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	int64_t at = 1000, n = -1;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	assert_int_equal(store_begin(s, &e), 0);
	record(s, "u1", "none", 3, &at);
	record(s, "u1", "unknown", 1, &at);
	record(s, "u2", "reminder", 2, &at);
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 0);
	assert_int_equal(tail(s), 6);
	assert_int_equal(history_logins(s, "u1"), 3);
	assert_int_equal(history_logins(s, "u2"), 2);

	/* this connection's own, recorded in the open transaction, are seen too, once */
	assert_int_equal(store_begin(s, &e), 0);
	record(s, "u1", "completed", 1, &at);
	assert_int_equal(history_logins(s, "u1"), 4);
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(history_logins(s, "u1"), 4);

	assert_int_equal(store_login_index(s, 8, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_int_equal(tail(s), 7);
	assert_int_equal(store_login_index(s, 7, &n, &e), 0);
	assert_int_equal(n, 7);
	assert_int_equal(tail(s), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 6);
	assert_keys_match(s);
	assert_int_equal(history_logins(s, "u1"), 4);
	assert_int_equal(history_logins(s, "u2"), 2);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0); /* nothing left: nothing done */
	assert_int_equal(n, 0);
	store_close(s);
}

/* A commit that indexes its logins (as every command but cutoff serve) indexes the tail another
 * connection left before them; and a login recorded outside a transaction too. */
static void test_commit_indexes_a_tail_left_before(void **state)
{
	struct store *a = NULL, *b = NULL;
	struct err e = {0};
	int64_t at = 1000;

	assert_int_equal(store_open(&a, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	store_login_index_later(a, true);
	commit_logins(a, "u1", "none", 5, &at);
	commit_logins(a, "u9", "unknown", 2, &at);
	assert_int_equal(tail(b), 7);
	commit_logins(b, "u2", "reminder", 3, &at);
	assert_int_equal(tail(b), 0);
	assert_int_equal(scratch_int(b, "SELECT count(*) FROM login_by_user"), 8);
	assert_keys_match(b);
	assert_int_equal(history_logins(b, "u1"), 5);

	commit_logins(a, "u1", "none", 2, &at);
	assert_int_equal(store_login_record(b, "u2", at++, NULL, NULL, "none", &e), 0);
	assert_int_equal(tail(b), 0);
	assert_int_equal(scratch_int(b, "SELECT count(*) FROM login_by_user"), 11);
	assert_keys_match(b);
	assert_int_equal(history_logins(a, "u1"), 7);
	assert_int_equal(history_logins(a, "u2"), 4);
	store_close(a);
	store_close(b);
}

/* A bulk that fails (here its mark cannot be moved; a crash is the same to SQLite: the
 * transaction is not there) leaves the tail whole and login_by_user as it was; the next one
 * adds every key, once. */
static void test_failed_bulk_loses_and_doubles_nothing(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	int64_t at = 1000, n = -1;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	commit_logins(s, "u1", "none", 4, &at);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	commit_logins(s, "u1", "reminder", 3, &at);
	assert_int_equal(sqlite3_exec(s->db, "CREATE TEMP TRIGGER no_mark BEFORE UPDATE ON"
				      " main.login_indexed BEGIN SELECT RAISE(ABORT, 'disk full');"
				      " END", NULL, NULL, NULL), SQLITE_OK);
	assert_int_not_equal(store_login_index(s, 1, &n, &e), 0);
	assert_non_null(strstr(e.msg, "disk full"));
	assert_int_equal(n, 0);
	assert_int_equal(tail(s), 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 4);
	assert_keys_match(s);
	assert_int_equal(history_logins(s, "u1"), 7);

	assert_int_equal(sqlite3_exec(s->db, "DROP TRIGGER no_mark", NULL, NULL, NULL), SQLITE_OK);
	e = (struct err){0};
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 7);
	assert_keys_match(s);
	assert_int_equal(history_logins(s, "u1"), 7);
	store_close(s);
}

/* Forgetting a user re-keys the logins of the tail too: they are indexed under the new key,
 * and nothing is left under the old one. */
static void test_forget_reaches_the_tail(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	int64_t at = 1000, n = -1, cancelled = 0;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	commit_logins(s, "u1", "none", 2, &at);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	commit_logins(s, "u1", "reminder", 3, &at);
	assert_int_equal(store_begin(s, &e), 0);
	assert_int_equal(store_report_forget_recipient(s, 42, "u1", at, &cancelled, &e), 0);
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(history_logins(s, "u1"), 0);
	assert_int_equal(history_logins(s, "forgotten-42"), 5);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user WHERE user_id = 'u1'"), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"
				    " WHERE user_id = 'forgotten-42'"), 5);
	assert_keys_match(s);
	store_close(s);
}

/* A bulk in steps of 2 keys: the mark moves only at its last step; at every step each login is
 * listed once, and at the end login_by_user is exact. */
static void test_bulk_in_steps(void **state)
{
	struct store *s = NULL;
	struct store_login_bulk b = {0};
	struct err e = {0};
	int64_t at = 1000;
	int steps = 0;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	commit_logins(s, "u1", "none", 4, &at);
	commit_logins(s, "u0", "unknown", 1, &at);
	commit_logins(s, "u2", "reminder", 3, &at);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	assert_true(b.active);
	assert_int_equal(b.last - b.through, 8);
	commit_logins(s, "u3", "none", 1, &at); /* after the start: the next bulk's */
	while (b.active) {
		/* the part each step runs, which the service sizes its steps by */
		assert_int_equal(store_login_bulk_part(&b),
				 steps < 4 ? STORE_BULK_KEYS_SORT : STORE_BULK_KEYS_ADD);
		assert_int_equal(store_login_bulk_step(s, &b, 2, &e), 0);
		steps++;
		assert_int_equal(history_logins(s, "u1"), 4);
		assert_int_equal(history_logins(s, "u2"), 3);
		assert_int_equal(tail(s), b.active ? 9 : 1);
	}
	assert_int_equal(steps, 4 + 4); /* 8 ids sorted 2 at a time; 7 keys added 2 at a time */
	assert_int_equal(store_login_bulk_part(&b), STORE_BULK_NONE);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 7);
	assert_keys_match(s);
	assert_int_equal(history_logins(s, "u3"), 1);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0); /* u3's login */
	while (b.active)
		assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0);
	assert_int_equal(tail(s), 0);
	assert_keys_match(s);
	store_login_bulk_end(&b);
	store_close(s);
}

/* Each piece of the add part reads the sorted keys on from the last one added: with pieces of
 * one key, keys that tie on user and time (told apart by the login id) and users that sort
 * first ("!", "0", upper case, before lower case and non-ASCII), each step adds exactly the next
 * key, none twice and none skipped. */
static void test_bulk_pieces_read_on(void **state)
{
	static const char *const users[] = {"\u00e9", "b", "!", "B", "0", "b", "!", "a"};
	struct store *s = NULL;
	struct store_login_bulk b = {0};
	struct err e = {0};
	int64_t added = 0;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	assert_int_equal(store_begin(s, &e), 0);
	for (size_t i = 0; i < sizeof users / sizeof *users; i++) /* the same time: ties */
		assert_int_equal(store_login_record(s, users[i], 1000, "4.6", "windows", "none", &e),
				 0);
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0); /* all 8 sorted */
	while (b.active && added < 8) { /* bounded: a piece that adds nothing fails, not loops */
		assert_int_equal(store_login_bulk_part(&b), STORE_BULK_KEYS_ADD);
		assert_int_equal(store_login_bulk_step(s, &b, 1, &e), 0);
		assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), ++added);
	}
	assert_false(b.active);
	assert_int_equal(added, 8);
	assert_int_equal(tail(s), 0);
	assert_keys_match(s);
	store_login_bulk_end(&b);
	store_close(s);
}

/* The keys read in steps of three (three runs, each sorted apart) and added a key a piece: after
 * each piece, login_by_user holds exactly the first keys in key order, merged across the runs. */
static void test_bulk_merges_steps(void **state)
{
	static const char *const users[] = {"m", "b", "z", "a", "b", "y", "c", "\u00e9", "A"};
	const size_t n = sizeof users / sizeof *users;
	struct store *s = NULL;
	struct store_login_bulk b = {0};
	struct err e = {0};
	int64_t added = 0;
	char sql[300];

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	assert_int_equal(store_begin(s, &e), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(store_login_record(s, users[i], 1000 - (int64_t)i, "4.6",
						    "windows", "none", &e),
				 0);
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	while (store_login_bulk_part(&b) == STORE_BULK_KEYS_SORT)
		assert_int_equal(store_login_bulk_step(s, &b, 3, &e), 0);
	while (b.active && added < (int64_t)n) {
		assert_int_equal(store_login_bulk_part(&b), STORE_BULK_KEYS_ADD);
		assert_int_equal(store_login_bulk_step(s, &b, 1, &e), 0);
		added++;
		snprintf(sql, sizeof sql,
			 "SELECT count(*) FROM login_by_user k WHERE (k.user_id, k.at, k.login_id)"
			 " <= (SELECT user_id, at, id FROM login ORDER BY user_id, at, id"
			 " LIMIT 1 OFFSET %lld)",
			 (long long)added - 1);
		assert_int_equal(scratch_int(s, sql), added);
		assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), added);
	}
	assert_false(b.active);
	assert_int_equal(added, (int64_t)n);
	assert_int_equal(tail(s), 0);
	assert_keys_match(s);
	store_login_bulk_end(&b);
	store_close(s);
}

/* A bulk cut short (its connection gone after adding some keys, as in a crash) leaves keys
 * above the mark: the history still lists each login once, and a commit that indexes the tail,
 * a later bulk and a bulk in steps each end with login_by_user exact, no key twice. */
static void test_bulk_cut_short(void **state)
{
	struct store *s = NULL, *t = NULL;
	struct store_login_bulk b = {0};
	struct err e = {0};
	int64_t at = 1000, n = -1;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	store_login_index_later(s, true);
	commit_logins(s, "u1", "none", 5, &at);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0); /* sorted */
	assert_int_equal(store_login_bulk_step(s, &b, 2, &e), 0);  /* 2 keys added */
	assert_true(b.active);
	store_close(s); /* its temporary table goes with it */
	assert_int_equal(store_open(&s, *state, 0, &e), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 2);
	assert_int_equal(tail(s), 5);
	assert_int_equal(history_logins(s, "u1"), 5);

	/* a bulk in steps from the start again */
	store_login_index_later(s, true);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	while (b.active)
		assert_int_equal(store_login_bulk_step(s, &b, 3, &e), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 5);
	assert_keys_match(s);

	/* cut short again; then a commit of another connection indexes the tail, OR IGNORE */
	commit_logins(s, "u1", "none", 4, &at);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 1, &e), 0);
	assert_int_equal(history_logins(s, "u1"), 9);
	assert_int_equal(store_open(&t, *state, 0, &e), 0);
	commit_logins(t, "u2", "none", 1, &at);
	assert_int_equal(tail(t), 0);
	assert_int_equal(scratch_int(t, "SELECT count(*) FROM login_by_user"), 10);
	assert_keys_match(t);
	/* the bulk cut short, finished after that commit, moves nothing back */
	while (b.active)
		assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0);
	assert_int_equal(tail(s), 0);
	assert_keys_match(s);

	/* and cut short before a one-shot bulk */
	commit_logins(s, "u1", "none", 3, &at);
	assert_int_equal(store_login_bulk_start(s, &b, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 64, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &b, 1, &e), 0);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_by_user"), 13);
	assert_keys_match(s);
	assert_int_equal(history_logins(s, "u1"), 12);
	store_login_bulk_end(&b);
	store_close(s);
	store_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tail_is_found_then_indexed, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_commit_indexes_a_tail_left_before, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_failed_bulk_loses_and_doubles_nothing,
						scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_forget_reaches_the_tail, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_in_steps, scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_pieces_read_on, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_merges_steps, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_cut_short, scratch_db, scratch_db_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
