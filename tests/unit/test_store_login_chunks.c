/* test_store_login_chunks.c — the logins a commit finds recorded go into the login and
 * login_by_user tables in few multi-row statements (64, 16, 4 and 1 rows: 25 logins are 4
 * statements, not 25), every row exactly as recorded, in order, whatever their number. */
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
#include "store_internal.h" /* the connection itself: its statements are what is counted */
#include "scratch.h"
#include "util.h"

static const char *const outcomes[] = {"reminder", "none", "unknown", "completed"};

/* The values of the i-th login recorded: user, time, version (NULL every third), platform
 * (NULL every other) and outcome. */
static void login_values(int i, char user[32], int64_t *at, const char **version,
			 const char **platform, const char **outcome)
{
	snprintf(user, 32, "u%06d", (i * 7919) % 100003);
	*at = 1000000 + i;
	*version = i % 3 == 0 ? NULL : (i % 3 == 1 ? "4.6" : "5.0 beta");
	*platform = i % 2 == 0 ? NULL : "windows";
	*outcome = outcomes[i % 4];
}

/* Text column c of st, or "(null)". */
static const char *text_or_null(sqlite3_stmt *st, int c)
{
	const unsigned char *v = sqlite3_column_text(st, c);

	return v != NULL ? (const char *)v : "(null)";
}

/* Every number of logins from 1 to 150 in a commit of its own (all the remainders of a chunk
 * of 64, and 64 and 128 themselves): the login table then holds every login recorded, in the
 * order recorded, with consecutive ids, and login_by_user exactly the known ones' keys. */
static void test_every_commit_size_keeps_every_row(void **state)
{
	struct store *s = NULL;
	struct err e = {0};
	sqlite3_stmt *st = NULL;
	const char *version, *platform, *outcome;
	char user[32];
	int64_t at;
	int i = 0, n, known = 0;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	for (n = 1; n <= 150; n++) {
		assert_int_equal(store_begin(s, &e), 0);
		for (int k = 0; k < n; k++, i++) {
			login_values(i, user, &at, &version, &platform, &outcome);
			known += strcmp(outcome, "unknown") != 0;
			assert_int_equal(store_login_record(s, user, at, version, platform,
							    outcome, &e), 0);
		}
		assert_int_equal(store_commit(s, &e), 0);
	}
	assert_int_equal(sqlite3_prepare_v2(s->db, "SELECT id, user_id, at, client_version,"
					    " platform, outcome FROM login ORDER BY id", -1,
					    &st, NULL), SQLITE_OK);
	for (int k = 0; k < i; k++) {
		login_values(k, user, &at, &version, &platform, &outcome);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int64(st, 0), k + 1);
		assert_string_equal(text_or_null(st, 1), user);
		assert_int_equal(sqlite3_column_int64(st, 2), at);
		assert_string_equal(text_or_null(st, 3), version ? version : "(null)");
		assert_string_equal(text_or_null(st, 4), platform ? platform : "(null)");
		assert_string_equal(text_or_null(st, 5), outcome);
	}
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM login_by_user),"
					    " (SELECT count(*) FROM (SELECT user_id, at, id FROM"
					    " login WHERE outcome <> 'unknown' EXCEPT SELECT user_id,"
					    " at, login_id FROM login_by_user))", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), known);
	assert_int_equal(sqlite3_column_int(st, 1), 0);
	sqlite3_finalize(st);
	store_close(s);
}

/* The INSERT statements run, by table. */
struct inserts {
	int logins, keys;
};

static int count_inserts(unsigned type, void *ud, void *p, void *x)
{
	struct inserts *c = ud;
	const char *sql = sqlite3_sql(p);

	(void)type, (void)x;
	if (strstr(sql, "INTO login_by_user ") != NULL)
		c->keys++;
	else if (strstr(sql, "INTO login ") != NULL)
		c->logins++;
	return 0;
}

/* Records and commits n logins of known users; counts the INSERTs into login and
 * login_by_user meanwhile (a full chunk of 64 rows goes in as it is recorded). */
static struct inserts commit_inserts(struct store *s, int n, int first)
{
	struct inserts c = {0, 0};
	struct err e = {0};
	char user[32];

	assert_int_equal(store_begin(s, &e), 0);
	assert_int_equal(sqlite3_trace_v2(s->db, SQLITE_TRACE_STMT, count_inserts, &c), SQLITE_OK);
	for (int i = first; i < first + n; i++) {
		snprintf(user, sizeof user, "k%06d", (i * 7919) % 100003);
		assert_int_equal(store_login_record(s, user, i, "4.6", "windows", "none", &e), 0);
	}
	assert_int_equal(store_commit(s, &e), 0);
	assert_int_equal(sqlite3_trace_v2(s->db, 0, NULL, NULL), SQLITE_OK);
	return c;
}

/* A commit of 25 logins (cutoff serve's group commits hold 20 to 50) inserts them with 4
 * statements a table (16 + 4 + 4 + 1 rows), not 25; 64 with one; 100 with 4 (64 + 16 + 16 +
 * 4); 3 with 3. */
static void test_few_statements_a_commit(void **state)
{
	static const struct {
		int n, statements;
	} cases[] = {{25, 4}, {64, 1}, {100, 4}, {3, 3}, {1, 1}, {20, 2}};
	struct store *s = NULL;
	struct err e = {0};
	int first = 0;

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct inserts c = commit_inserts(s, cases[k].n, first);

		first += cases[k].n;
		assert_int_equal(c.logins, cases[k].statements);
		assert_int_equal(c.keys, cases[k].statements);
	}
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_commit_size_keeps_every_row, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_few_statements_a_commit, scratch_db,
						scratch_db_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
