/* test_ledger_entries.c — the ledger's schema after db/014: a delivery queued for a recipient
 * unsubscribed from the campaign is inserted suppressed by the queueing statement itself (no
 * trigger), delivery_message_id holds accepted Message-IDs only and still serves the bounce
 * look-up, a batch of settlements writes the attempt rows of those applied, and a database of schema 13 with deliveries migrates with its rows intact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrations.h"
#include "store.h"
#include "store_internal.h" /* the connection itself: the ledger is checked with SQL */
#include "scratch.h"
#include "util.h"

#define RUN "test:1:run"

/* Runs sql on db; any error fails the test. */
static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

/* Two campaigns; campaign 1's segment 1 has recipients 1-4, all pending; recipient 2 is
 * unsubscribed from campaign 1, recipient 3 only from campaign 2. */
static void seed(sqlite3 *db)
{
	exec_ok(db,
		"PRAGMA foreign_keys = ON;"
		"INSERT INTO campaign (id, name, title, state, timezone, announce_at,"
		" reminder_start_at, cutoff_at, definition, source_path, templates_dir, digest,"
		" created_at, updated_at) VALUES"
		" (1, 'one', 'One', 'active', 'UTC', 1, 2, 3, 'x', 'x', 'x', 'd', 0, 0),"
		" (2, 'two', 'Two', 'active', 'UTC', 1, 2, 3, 'x', 'x', 'x', 'd', 0, 0);"
		"INSERT INTO segment (id, campaign_id, name, position, template, send_at)"
		" VALUES (1, 1, 'all', 0, 't', 0);"
		"INSERT INTO recipient (id, campaign_id, user_id, email, segment_id, digest,"
		" created_at, updated_at) VALUES"
		" (1, 1, 'u1', 'u1@example.test', 1, 1, 0, 0),"
		" (2, 1, 'u2', 'u2@example.test', 1, 2, 0, 0),"
		" (3, 1, 'u3', 'u3@example.test', 1, 3, 0, 0),"
		" (4, 1, 'u4', 'u4@example.test', 1, 4, 0, 0);"
		"INSERT INTO campaign_unsubscribe (campaign_id, recipient_id, created_at)"
		" VALUES (1, 2, 5), (2, 3, 5);");
}

static struct store *open_store(const char *path)
{
	struct store *s = NULL;
	struct err e = {0};

	if (store_open(&s, path, STORE_CREATE | STORE_MIGRATE, &e) != 0)
		fail_msg("%s", e.msg);
	return s;
}

/* The text of the one-row, one-value query sql (a copy; the caller frees it). */
static char *q_text(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	char *v;

	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = xstrdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
	sqlite3_finalize(st);
	return v;
}

/* Whether the plan of sql names index somewhere. */
static bool plan_uses(struct store *s, const char *sql, const char *index)
{
	char *explain = xasprintf("EXPLAIN QUERY PLAN %s", sql);
	sqlite3_stmt *st = NULL;
	bool found = false;

	assert_int_equal(sqlite3_prepare_v2(s->db, explain, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		found = found || strstr((const char *)sqlite3_column_text(st, 3), index) != NULL;
	sqlite3_finalize(st);
	free(explain);
	return found;
}

static void queue(struct store *s, const char *kind, int64_t now, int64_t expected)
{
	int64_t queued = -1;
	struct err e = {0};

	if (store_delivery_queue_segment(s, 1, 1, kind, 0, 100, now, &queued, &e) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(queued, expected);
}

static void test_queue_suppresses_the_unsubscribed(void **state)
{
	struct store *s = open_store(*state);
	struct store_claim c[8];
	struct err e = {0};
	size_t n = 0;
	char *text;

	seed(s->db);
	queue(s, "initial", 50, 4);
	/* As db/003's trigger left it: suppressed, why, and nothing else changed. */
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE recipient_id = 2"
				 " AND state = 'suppressed' AND reason = 'unsubscribe'"
				 " AND created_at = 50 AND updated_at = 50 AND attempts = 0"), 1);
	/* Unsubscribed from another campaign only: queued like the others. */
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE recipient_id <> 2"
				 " AND state = 'queued' AND reason IS NULL"), 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM sqlite_schema"
				 " WHERE type = 'trigger' AND tbl_name = 'delivery'"), 0);
	/* No sender can claim it. */
	assert_int_equal(store_delivery_claim(s, 1, RUN, 200, 500, 8, c, &n, &e), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(c[i].recipient_id, 2);
	/* Queueing the same wave again adds nothing and changes nobody. */
	queue(s, "initial", 60, 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE updated_at = 60"),
			 0);
	/* An unsubscribe after the first wave stops the next one. */
	exec_ok(s->db, "INSERT INTO campaign_unsubscribe (campaign_id, recipient_id, created_at)"
		       " VALUES (1, 4, 70)");
	queue(s, "final", 80, 4);
	text = q_text(s, "SELECT group_concat(recipient_id) FROM (SELECT recipient_id"
			 " FROM delivery WHERE kind = 'final' AND state = 'suppressed'"
			 " AND reason = 'unsubscribe' ORDER BY 1)");
	assert_string_equal(text, "2,4");
	free(text);
	store_close(s);
}

/* Claims and settles every due delivery of campaign 1 as sent with Message-ID <id>@m. */
static void send_all(struct store *s, int64_t now)
{
	struct store_claim c[8];
	struct err e = {0};
	char mid[32];
	bool applied;
	size_t n = 0;

	assert_int_equal(store_delivery_claim(s, 1, RUN, now, now + 300, 8, c, &n, &e), 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(mid, sizeof mid, "%lld@m", (long long)c[i].delivery_id);
		struct store_settlement t = {.delivery_id = c[i].delivery_id, .state = "sent",
					     .outcome = "sent", .relay = "r", .code = 250,
					     .reply = "2.0.0 Ok", .message_id = mid,
					     .attempted = true};
		assert_int_equal(store_delivery_settle(s, RUN, now, &t, &applied, &e), 0);
		assert_true(applied);
	}
}

static void test_message_id_index(void **state)
{
	static const char by_mid[] = "SELECT id FROM delivery WHERE message_id = '1@m'";
	struct store *s = open_store(*state);
	char *sql;

	seed(s->db);
	queue(s, "initial", 50, 4);
	send_all(s, 200);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE state = 'sent'"), 3);
	/* Only accepted Message-IDs are entries; the look-up by one still uses the index. */
	sql = q_text(s, "SELECT sql FROM sqlite_schema WHERE name = 'delivery_message_id'");
	assert_non_null(strstr(sql, "WHERE message_id IS NOT NULL"));
	free(sql);
	assert_true(plan_uses(s, by_mid, "delivery_message_id"));
	assert_int_equal(scratch_int(s, by_mid), 1);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery"
				 " INDEXED BY delivery_message_id WHERE message_id IS NOT NULL"), 3);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt WHERE message_id ="
				 " (SELECT message_id FROM delivery WHERE id = attempt.delivery_id)"),
			 3);
	store_close(s);
}

static int by_delivery_id(const void *a, const void *b)
{
	int64_t x = ((const struct store_claim *)a)->delivery_id;
	int64_t y = ((const struct store_claim *)b)->delivery_id;

	return (x > y) - (x < y);
}

#define N_BATCH 45 /* 32 + 8 + 5: every statement size of store_delivery_settle_batch */

/* Settles N_BATCH claimed deliveries in one call, in descending id order: two were taken
 * over by another run, every seventh had no SMTP transaction; each attempt row written has
 * its own settlement's values, in the order given. */
static void test_settle_batch(void **state)
{
	struct store *s = open_store(*state);
	struct store_settlement t[N_BATCH];
	const struct store_settlement *pt[N_BATCH];
	char relay[N_BATCH][16], reply[N_BATCH][16], mid[N_BATCH][16];
	bool applied[N_BATCH];
	struct store_claim c[64];
	struct err e = {0};
	size_t n = 0;
	int expected = 0;

	seed(s->db);
	exec_ok(s->db, "WITH RECURSIVE k(i) AS (SELECT 5 UNION ALL SELECT i + 1 FROM k"
		       " WHERE i < 50) INSERT INTO recipient (id, campaign_id, user_id, segment_id,"
		       " digest, created_at, updated_at) SELECT i, 1, 'u' || i, 1, i, 0, 0 FROM k");
	queue(s, "initial", 50, 50);
	assert_int_equal(store_delivery_claim(s, 1, RUN, 200, 500, 64, c, &n, &e), 0);
	assert_int_equal(n, 49); /* recipient 2 is unsubscribed */
	qsort(c, n, sizeof *c, by_delivery_id);
	exec_ok(s->db, "UPDATE delivery SET claimed_by = 'other' WHERE id IN (SELECT id FROM"
		       " delivery WHERE state = 'sending' ORDER BY id LIMIT 2 OFFSET 10)");
	for (int i = 0; i < N_BATCH; i++) {
		int64_t id = c[n - 1 - (size_t)i].delivery_id;
		snprintf(relay[i], sizeof relay[i], "r%lld", (long long)id);
		snprintf(reply[i], sizeof reply[i], "reply %lld", (long long)id);
		snprintf(mid[i], sizeof mid[i], "%lld@m", (long long)id);
		t[i] = (struct store_settlement){
			.delivery_id = id, .state = i % 2 ? "deferred" : "sent",
			.due_at = i % 2 ? 900 : 0, .outcome = i % 2 ? "deferred" : "sent",
			.relay = relay[i], .code = i % 2 ? 451 : 250, .reply = reply[i],
			.local_error = i % 2 ? "slow" : NULL, .message_id = mid[i],
			.attempted = i % 7 != 0};
		pt[i] = &t[i];
	}
	assert_int_equal(store_delivery_settle_batch(s, RUN, 300, pt, N_BATCH, applied, &e), 0);
	for (int i = 0; i < N_BATCH; i++) {
		char *sql = xasprintf("SELECT claimed_by IS 'other' FROM delivery WHERE id = %lld",
				      (long long)t[i].delivery_id);
		bool other = scratch_int(s, sql) != 0;

		free(sql);
		assert_int_equal(applied[i], !other);
		expected += !other && t[i].attempted;
	}
	assert_int_equal(expected, N_BATCH - 2 - 7); /* both taken over are in the batch */
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt"), expected);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt a JOIN delivery d"
				 " ON d.id = a.delivery_id WHERE a.run_id = '" RUN "' AND a.at = 300"
				 " AND a.relay = 'r' || d.id AND a.reply = 'reply ' || d.id"
				 " AND a.message_id = d.id || '@m' AND d.state = a.outcome"
				 " AND a.code = CASE a.outcome WHEN 'sent' THEN 250 ELSE 451 END"
				 " AND a.local_error IS CASE a.outcome WHEN 'sent' THEN NULL"
				 " ELSE 'slow' END"), expected);
	/* In the order given: descending delivery ids. */
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt a JOIN attempt b"
				 " ON b.id > a.id WHERE b.delivery_id > a.delivery_id"), 0);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE claimed_by ="
				 " 'other' AND state = 'sending'"), 2);
	store_close(s);
}

/* A batch naming one delivery twice settles it as two calls in a row would: the first
 * settlement applies, the second finds the row settled and writes nothing. */
static void test_settle_batch_same_delivery(void **state)
{
	struct store *s = open_store(*state);
	struct store_settlement t[8];
	const struct store_settlement *pt[8];
	bool applied[8];
	struct store_claim c[8];
	struct err e = {0};
	size_t n = 0;
	char *text;

	seed(s->db);
	exec_ok(s->db, "INSERT INTO recipient (id, campaign_id, user_id, segment_id, digest,"
		       " created_at, updated_at) VALUES (5, 1, 'u5', 1, 5, 0, 0),"
		       " (6, 1, 'u6', 1, 6, 0, 0), (7, 1, 'u7', 1, 7, 0, 0),"
		       " (8, 1, 'u8', 1, 8, 0, 0)");
	queue(s, "initial", 50, 8);
	assert_int_equal(store_delivery_claim(s, 1, RUN, 200, 500, 8, c, &n, &e), 0);
	assert_int_equal(n, 7);
	for (size_t i = 0; i < 8; i++) {
		t[i] = (struct store_settlement){.delivery_id = c[i % 7].delivery_id,
						 .state = i == 7 ? "failed" : "sent",
						 .outcome = i == 7 ? "failed" : "sent", .relay = "r",
						 .code = i == 7 ? 550 : 250, .reply = "x",
						 .attempted = true};
		pt[i] = &t[i];
	}
	assert_int_equal(store_delivery_settle_batch(s, RUN, 300, pt, 8, applied, &e), 0);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(applied[i], i < 7);
	text = q_text(s, "SELECT group_concat(state || ':' || last_code) FROM (SELECT DISTINCT"
			 " state, last_code FROM delivery WHERE recipient_id <> 2)");
	assert_string_equal(text, "sent:250");
	free(text);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt"), 7);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM attempt WHERE outcome = 'sent'"), 7);
	store_close(s);
}

/* A database as migrations 1..13 left it (each in its own transaction, as store.c does). */
static void old_database(const char *path)
{
	sqlite3 *db = NULL;
	char *v;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON");
	for (int i = 0; i < migrations_count && migrations[i].version <= 13; i++) {
		exec_ok(db, "BEGIN");
		exec_ok(db, migrations[i].sql);
		v = xasprintf("PRAGMA user_version = %d; COMMIT", migrations[i].version);
		exec_ok(db, v);
		free(v);
	}
	seed(db);
	/* Queued by the old trigger: 2 suppressed; then one sent, one in flight. */
	exec_ok(db, "INSERT INTO delivery (campaign_id, recipient_id, kind, occurrence, due_at,"
		    " created_at, updated_at) SELECT 1, id, 'initial', 0, 100, 50, 50 FROM recipient;"
		    "UPDATE delivery SET state = 'sent', message_id = 'old@m', sent_at = 60"
		    " WHERE recipient_id = 1;"
		    "UPDATE delivery SET state = 'sending', claimed_by = 'dead' WHERE recipient_id = 3");
	sqlite3_close(db);
}

static void test_migration_keeps_the_rows(void **state)
{
	static const char rows[] =
		"SELECT group_concat(recipient_id || ':' || state || ':' || coalesce(reason, '')"
		" || ':' || coalesce(message_id, ''), ' ') FROM (SELECT * FROM delivery ORDER BY id)";
	static const char by_mid[] = "SELECT id FROM delivery WHERE message_id = 'old@m'";
	struct store *s;
	char *text;

	old_database(*state);
	s = open_store(*state);
	assert_int_equal(scratch_int(s, "PRAGMA user_version"), migrations_count);
	text = q_text(s, rows);
	assert_string_equal(text, "1:sent::old@m 2:suppressed:unsubscribe: 3:sending:: 4:queued::");
	free(text);
	text = q_text(s, "PRAGMA integrity_check");
	assert_string_equal(text, "ok");
	free(text);
	assert_true(plan_uses(s, by_mid, "delivery_message_id"));
	assert_int_equal(scratch_int(s, by_mid), 1);
	/* The next wave, queued by the new statement, still stops the unsubscribed. */
	queue(s, "final", 80, 4);
	assert_int_equal(scratch_int(s, "SELECT recipient_id FROM delivery WHERE kind = 'final'"
				 " AND state = 'suppressed' AND reason = 'unsubscribe'"), 2);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_queue_suppresses_the_unsubscribed, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_message_id_index, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_settle_batch, scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_settle_batch_same_delivery, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_migration_keeps_the_rows, scratch_db,
						scratch_db_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
