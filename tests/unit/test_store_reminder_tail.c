/* test_store_reminder_tail.c — reminder claims a connection appends to login_reminder_tail
 * (db/013_login_reminder_tail.sql) are claimed once across connections and transactions, read
 * once by every reader (the view login_reminder, the reminder list, the report's times) before,
 * during and after a bulk moves them into login_reminder_indexed, and a bulk cut short loses
 * and doubles nothing; rollbacks, releases and deleted recipients take claims back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_login.h"
#include "store_report.h"
#include "store_internal.h" /* the connection itself: the tables are set up with SQL */
#include "scratch.h"

#define DAY INT64_C(86400)

/* Opens the scratch database with campaign 1 and its recipients 1 to 5. */
static struct store *open_with_recipients(void **state)
{
	struct store *s = NULL;
	struct err e = {0};

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(sqlite3_exec(s->db,
				      "INSERT INTO campaign (id, name, title, timezone, announce_at,"
				      " reminder_start_at, cutoff_at, definition, source_path,"
				      " templates_dir, digest, created_at, updated_at)"
				      " VALUES (1, 'c', 'C', 'UTC', 0, 0, 99, '', '', '', '', 0, 0);"
				      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
				      " WHERE i < 5) INSERT INTO recipient (id, campaign_id, user_id,"
				      " digest, created_at, updated_at)"
				      " SELECT i, 1, 'u' || i, 0, 0, 0 FROM n",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	return s;
}

/* Claims recipient's reminder of period day (its own transaction): whether it got it. */
static bool claim(struct store *s, int64_t recipient, int64_t day)
{
	struct store_login_reminder r = {1, recipient, day * DAY, day, day * DAY + 60, "4.6"};
	struct err e = {0};
	bool claimed = false;

	assert_int_equal(store_begin(s, &e), 0);
	assert_int_equal(store_login_reminder_claim(s, &r, &claimed, &e), 0);
	assert_int_equal(store_commit(s, &e), 0);
	return claimed;
}

static int64_t tail_rows(struct store *s)
{
	return scratch_int(s, "SELECT count(*) FROM login_reminder_tail");
}

static int count_cb(void *ud, int64_t a, int64_t b)
{
	(void)a, (void)b;
	++*(int *)ud;
	return 0;
}

static int time_cb(void *ud, int64_t t)
{
	(void)t;
	++*(int *)ud;
	return 0;
}

/* Every reader sees n claims in all, each once, and recipient 1 holds r1 of them. */
static void assert_claims(struct store *s, int n, int r1)
{
	struct err e = {0};
	int each = 0, times = 0;

	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder"), n);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM (SELECT DISTINCT recipient_id,"
				    " period_start FROM login_reminder)"), n);
	assert_int_equal(store_login_reminder_each(s, 1, count_cb, &each, &e), 0);
	assert_int_equal(each, r1);
	assert_int_equal(store_report_reminder_times(s, 1, time_cb, &times, &e), 0);
	assert_int_equal(times, n);
}

/* A claim in the tail blocks the same claim from another connection, that indexes later or
 * not, in a later transaction, and from itself; readers count it once. */
static void test_tail_claim_blocks_others(void **state)
{
	struct store *a = open_with_recipients(state), *b = NULL, *c = NULL;
	struct err e = {0};

	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	assert_int_equal(store_open(&c, *state, 0, &e), 0);
	store_login_index_later(a, true);
	store_login_index_later(c, true);
	assert_true(claim(a, 1, 10));
	assert_int_equal(tail_rows(a), 1);
	assert_false(claim(a, 1, 10));
	assert_false(claim(b, 1, 10)); /* reads the tail at its first claim */
	assert_false(claim(c, 1, 10));
	assert_true(claim(b, 1, 11)); /* into the B-tree: blocks the tail's connections */
	assert_int_equal(tail_rows(a), 1);
	assert_false(claim(a, 1, 11));
	assert_false(claim(c, 1, 11));
	/* c's claims are seen by a (read since its last transaction), and the other way */
	assert_true(claim(c, 2, 10));
	assert_false(claim(a, 2, 10));
	assert_true(claim(a, 3, 10));
	assert_false(claim(c, 3, 10));
	assert_false(claim(b, 3, 10));
	assert_claims(a, 4, 2);
	assert_int_equal(tail_rows(a), 3);
	/* the view refuses a key of the tail, as the table's primary key did */
	assert_int_not_equal(sqlite3_exec(b->db, "INSERT INTO login_reminder VALUES (2, 864000,"
					  " 1, 10, 0, NULL)", NULL, NULL, NULL), SQLITE_OK);
	assert_claims(b, 4, 2);
	store_close(a);
	store_close(b);
	store_close(c);
}

/* A claim rolled back is forgotten (claimed again next time); one released in its
 * transaction leaves the tail and memory; a deleted recipient's claims leave with it, and its
 * id, given again, can claim (the other connection reads the tail again). */
static void test_rollback_release_delete(void **state)
{
	struct store *a = open_with_recipients(state), *b = NULL;
	struct store_login_reminder r = {1, 4, 10 * DAY, 10, 10 * DAY, NULL};
	struct err e = {0};
	bool claimed = false;

	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	store_login_index_later(a, true);
	assert_int_equal(store_begin(a, &e), 0);
	assert_int_equal(store_login_reminder_claim(a, &r, &claimed, &e), 0);
	assert_true(claimed);
	store_rollback(a);
	assert_int_equal(tail_rows(a), 0);
	assert_true(claim(a, 4, 10));

	r.recipient_id = 5;
	assert_int_equal(store_begin(a, &e), 0);
	assert_int_equal(store_login_reminder_claim(a, &r, &claimed, &e), 0);
	assert_true(claimed);
	assert_int_equal(store_login_reminder_release(a, 5, 10 * DAY, &e), 0);
	assert_int_equal(store_commit(a, &e), 0);
	assert_int_equal(scratch_int(a, "SELECT count(*) FROM login_reminder"
				    " WHERE recipient_id = 5"), 0);
	assert_true(claim(a, 5, 10));

	assert_false(claim(b, 4, 10));
	assert_int_equal(sqlite3_exec(a->db, "DELETE FROM recipient WHERE id = 4;"
				      " INSERT INTO recipient (id, campaign_id, user_id, digest,"
				      " created_at, updated_at) VALUES (4, 1, 'new4', 0, 0, 0)",
				      NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(scratch_int(a, "SELECT count(*) FROM login_reminder"
				    " WHERE recipient_id = 4"), 0);
	assert_true(claim(b, 4, 10));
	assert_false(claim(a, 4, 10));
	assert_claims(a, 2, 0);
	store_close(a);
	store_close(b);
}

/* The last claim of the tail, released and committed, frees its rowid: the next row appended,
 * by another connection, takes it, and the connection that released it still reads it. */
static void test_released_rowid_taken_again(void **state)
{
	struct store *a = open_with_recipients(state), *c = NULL;
	struct store_login_reminder r = {1, 5, 10 * DAY, 10, 10 * DAY, NULL};
	struct err e = {0};
	bool claimed = false;

	assert_int_equal(store_open(&c, *state, 0, &e), 0);
	store_login_index_later(a, true);
	store_login_index_later(c, true);
	assert_true(claim(a, 1, 10));
	assert_int_equal(store_begin(a, &e), 0);
	assert_int_equal(store_login_reminder_claim(a, &r, &claimed, &e), 0);
	assert_true(claimed);
	assert_int_equal(store_login_reminder_release(a, 5, 10 * DAY, &e), 0);
	assert_int_equal(store_commit(a, &e), 0);
	assert_true(claim(c, 2, 10));
	assert_int_equal(scratch_int(a, "SELECT id FROM login_reminder_tail WHERE recipient_id = 2"),
			 2);
	assert_false(claim(a, 2, 10));
	assert_claims(a, 2, 1);
	store_close(a);
	store_close(c);
}

/* A bulk in steps of 2 moves the claims in key order after the logins' keys: at every step each
 * claim is read once and blocks a second; claims made meanwhile stay for the next bulk; at
 * the end the moved ones are out of the tail. */
static void test_bulk_moves_claims(void **state)
{
	struct store *s = open_with_recipients(state), *b = NULL;
	struct store_login_bulk k = {0};
	struct err e = {0};
	int64_t tail = 0;
	int steps = 0;

	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	store_login_index_later(s, true);
	for (int i = 5; i >= 1; i--)
		assert_true(claim(s, i, 10));
	assert_int_equal(store_login_tail(s, &tail, &e), 0);
	assert_int_equal(tail, 5);
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	assert_true(k.active);
	assert_true(claim(s, 1, 11)); /* after the start: the next bulk's */
	while (k.active) {
		/* the part each step runs, which the service sizes its steps by */
		assert_int_equal(store_login_bulk_part(&k), steps < 3   ? STORE_BULK_CLAIMS_SORT
							   : steps < 6 ? STORE_BULK_CLAIMS_MOVE
								       : STORE_BULK_CLAIMS_DELETE);
		assert_int_equal(store_login_bulk_step(s, &k, 2, &e), 0);
		steps++;
		assert_claims(s, 6, 2);
		assert_false(claim(b, 3, 10));
		assert_false(claim(s, 5, 10));
	}
	/* 5 claims sorted 2 at a time; moved 2 at a time; deleted from the tail 2 at a time */
	assert_int_equal(steps, 3 + 3 + 3);
	assert_int_equal(store_login_bulk_part(&k), STORE_BULK_NONE);
	assert_int_equal(tail_rows(s), 1);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"), 5);
	assert_false(claim(s, 2, 10)); /* its memory read again, the tail having shrunk */
	assert_true(claim(s, 2, 11));
	assert_false(claim(b, 2, 11));
	assert_claims(b, 7, 2);
	store_login_bulk_end(&k);
	store_close(s);
	store_close(b);
}

/* A recipient deleted while a bulk runs (its claims sorted already): its claim is not moved
 * (it left the tail with it), the others are; and a claim deleted through the view while a
 * bulk runs is not moved back either; another connection claims both again. */
static void test_deleted_during_bulk(void **state)
{
	struct store *s = open_with_recipients(state), *b = NULL;
	struct store_login_bulk k = {0};
	struct err e = {0};

	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	store_login_index_later(s, true);
	for (int i = 1; i <= 5; i++)
		assert_true(claim(s, i, 10));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0); /* all sorted */
	assert_int_equal(sqlite3_exec(b->db, "DELETE FROM recipient WHERE id = 2;"
				      " DELETE FROM login_reminder WHERE recipient_id = 4",
				      NULL, NULL, NULL), SQLITE_OK);
	while (k.active)
		assert_int_equal(store_login_bulk_step(s, &k, 2, &e), 0);
	assert_int_equal(tail_rows(s), 0);
	assert_int_equal(scratch_int(s, "SELECT group_concat(recipient_id, '') FROM"
				    " (SELECT recipient_id FROM login_reminder_indexed ORDER BY 1)"),
			 135);
	assert_true(claim(b, 4, 10));
	assert_true(claim(s, 1, 11));
	assert_false(claim(s, 4, 10));
	store_login_bulk_end(&k);
	store_close(s);
	store_close(b);
}

/* A bulk reads the tail a step at a time and sorts each step's claims apart; the pieces merge
 * them in key order. Claims appended out of order over three steps, two keys twice (copies a
 * crash can leave): after each piece the B-tree holds a prefix of the recipients, and each key
 * once, as first appended (its shown_at). */
static void test_bulk_merges_steps(void **state)
{
	struct store *s = open_with_recipients(state);
	struct store_login_bulk k = {0};
	struct err e = {0};
	int moved = 0;

	store_login_index_later(s, true);
	assert_int_equal(sqlite3_exec(s->db,
				      "INSERT INTO login_reminder_tail (recipient_id, period_start,"
				      " campaign_id, period_index, shown_at, client_version) VALUES"
				      " (3, 10, 1, 1, 101, '4.6'), (1, 10, 1, 1, 102, NULL),"
				      " (5, 10, 1, 1, 103, '4.6'), (1, 10, 1, 1, 104, '4.6'),"
				      " (2, 10, 1, 1, 105, '5.0'), (4, 10, 1, 1, 106, '4.6'),"
				      " (3, 10, 1, 1, 107, '4.6')",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	while (store_login_bulk_part(&k) == STORE_BULK_CLAIMS_SORT) /* runs of 3, 3 and 1 */
		assert_int_equal(store_login_bulk_step(s, &k, 3, &e), 0);
	while (store_login_bulk_part(&k) == STORE_BULK_CLAIMS_MOVE && moved < 7) {
		int64_t n, top;

		assert_int_equal(store_login_bulk_step(s, &k, 1, &e), 0);
		moved++;
		n = scratch_int(s, "SELECT count(*) FROM login_reminder_indexed");
		top = scratch_int(s, "SELECT coalesce(max(recipient_id), 0)"
				     " FROM login_reminder_indexed");
		assert_int_equal(n, top); /* recipients 1 to top, none skipped */
	}
	while (k.active)
		assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0);
	assert_int_equal(moved, 7); /* one piece a row read, duplicates included */
	assert_int_equal(tail_rows(s), 0);
	assert_int_equal(scratch_int(s, "SELECT group_concat(shown_at - 100, '') FROM"
				    " (SELECT shown_at FROM login_reminder_indexed ORDER BY recipient_id)"),
			 25163);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"
				    " WHERE recipient_id = 1 AND client_version IS NULL"),
			 1);
	store_login_bulk_end(&k);
	store_close(s);
}

/* A bulk cut short (its connection gone after moving some claims, as in a crash) leaves
 * copies in both places: read once, claimed once; the next bulk, and a one-shot one, end
 * with every claim in the B-tree once and the tail empty. */
static void test_bulk_cut_short(void **state)
{
	struct store *s = open_with_recipients(state);
	struct store_login_bulk k = {0};
	struct err e = {0};
	int64_t n = -1;

	store_login_index_later(s, true);
	for (int i = 1; i <= 5; i++)
		assert_true(claim(s, i, 10));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0); /* sorted */
	assert_int_equal(store_login_bulk_step(s, &k, 2, &e), 0);  /* 2 moved */
	assert_true(k.active);
	store_close(s);
	assert_int_equal(store_open(&s, *state, 0, &e), 0);
	store_login_index_later(s, true);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"), 2);
	assert_int_equal(tail_rows(s), 5);
	assert_claims(s, 5, 1);
	assert_false(claim(s, 1, 10));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	while (k.active)
		assert_int_equal(store_login_bulk_step(s, &k, 3, &e), 0);
	assert_int_equal(tail_rows(s), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"), 5);
	assert_claims(s, 5, 1);

	/* cut short while it deletes the moved claims from the tail: read once, then deleted */
	for (int i = 1; i <= 5; i++)
		assert_true(claim(s, i, 12));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	while (!k.claims_moved)
		assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 2, &e), 0);
	assert_true(k.active);
	assert_int_equal(tail_rows(s), 3);
	store_close(s);
	assert_int_equal(store_open(&s, *state, 0, &e), 0);
	store_login_index_later(s, true);
	assert_claims(s, 10, 2);
	assert_false(claim(s, 5, 12));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	while (k.active)
		assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0);
	assert_int_equal(tail_rows(s), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"), 10);
	assert_claims(s, 10, 2);

	/* cut short, then the one-shot bulk (cutoff serve's at its stop) */
	assert_true(claim(s, 1, 11));
	assert_true(claim(s, 2, 11));
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 1, &e), 0);
	assert_claims(s, 12, 3);
	assert_int_equal(store_login_index(s, 1, &n, &e), 0);
	assert_int_equal(tail_rows(s), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM login_reminder_indexed"), 12);
	assert_claims(s, 12, 3);
	assert_false(claim(s, 2, 11));
	store_login_bulk_end(&k);
	store_close(s);
}

struct fact_sums {
	int64_t reminders[6], first[6], last[6];
};

static int on_fact(void *ud, const struct store_fact *f)
{
	struct fact_sums *w = ud;

	if (f->recipient_id >= 1 && f->recipient_id <= 5) {
		w->reminders[f->recipient_id] = f->reminders;
		w->first[f->recipient_id] = f->first_reminder_at;
		w->last[f->recipient_id] = f->last_reminder_at;
	}
	return 0;
}

/* The report's facts count a recipient's claims in the B-tree and in the tail together, and
 * a claim copied into the B-tree by a bulk cut short once. */
static void test_report_counts_tail_claims(void **state)
{
	struct store *s = open_with_recipients(state), *b = NULL;
	struct store_login_bulk k = {0};
	struct fact_sums w = {0};
	struct err e = {0};

	assert_int_equal(sqlite3_exec(s->db,
				      "INSERT INTO segment (id, campaign_id, name, position, template,"
				      " send_at) VALUES (1, 1, 'all', 0, 't', 0);"
				      "UPDATE recipient SET segment_id = 1",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(store_open(&b, *state, 0, &e), 0);
	store_login_index_later(s, true);
	assert_true(claim(b, 1, 10)); /* the B-tree */
	assert_true(claim(s, 1, 11)); /* the tail */
	assert_true(claim(s, 1, 9));
	assert_true(claim(s, 2, 10));
	assert_true(claim(s, 3, 10));
	assert_int_equal(store_report_facts(s, 1, 0, on_fact, &w, &e), 0);
	assert_int_equal(w.reminders[1], 3);
	assert_int_equal(w.first[1], 9 * DAY + 60);
	assert_int_equal(w.last[1], 11 * DAY + 60);
	assert_int_equal(w.reminders[2], 1);
	assert_int_equal(w.reminders[3], 1);
	assert_int_equal(w.reminders[4], 0);
	assert_int_equal(w.first[4], 0);

	/* a bulk cut short after its first piece: copies in both places, counted once */
	assert_int_equal(store_login_bulk_start(s, &k, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 64, &e), 0);
	assert_int_equal(store_login_bulk_step(s, &k, 2, &e), 0);
	assert_int_equal(tail_rows(s), 4);
	w = (struct fact_sums){0};
	assert_int_equal(store_report_facts(s, 1, 0, on_fact, &w, &e), 0);
	assert_int_equal(w.reminders[1], 3);
	assert_int_equal(w.reminders[2], 1);
	assert_int_equal(w.reminders[3], 1);
	assert_int_equal(w.last[1], 11 * DAY + 60);
	store_login_bulk_end(&k);
	store_close(s);
	store_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tail_claim_blocks_others, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_rollback_release_delete, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_released_rowid_taken_again, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_moves_claims, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_deleted_during_bulk, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_merges_steps, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_bulk_cut_short, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_report_counts_tail_claims, scratch_db,
						scratch_db_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
