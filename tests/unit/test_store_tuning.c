/* test_store_tuning.c — the per-connection tuning calls of the store (store_cache_size,
 * store_wal_autocheckpoint, store_import_mode, store_login_stream) set what they say on that
 * connection and on no other, and none of them turns the schema's CHECK constraints off; and
 * SQLite runs without its global memory statistics (a mutex per allocation); and a completion
 * runs no trigger. */
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
#include "store_login.h"
#include "store_internal.h" /* the connection itself: its pragmas are what is checked */
#include "scratch.h"
#include "util.h"

/* The integer a one-value PRAGMA returns on s's connection. */
static long pragma_int(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long v;

	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void test_cache_size_is_per_connection(void **state)
{
	const char *db = *state;
	struct store *a = NULL, *b = NULL;
	struct err e = {0};
	long before;

	assert_int_equal(store_open(&a, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(store_open(&b, db, 0, &e), 0);
	before = pragma_int(b, "PRAGMA cache_size");
	assert_int_equal(store_cache_size(a, 4096, &e), 0);
	assert_int_equal(pragma_int(a, "PRAGMA cache_size"), -4096); /* KiB, not pages */
	assert_int_equal(pragma_int(b, "PRAGMA cache_size"), before);
	assert_int_equal(store_wal_autocheckpoint(a, 0, &e), 0);
	assert_int_equal(pragma_int(a, "PRAGMA wal_autocheckpoint"), 0);
	store_close(a);
	store_close(b);
}

/* A store keeps no SQLite memory statistics: sqlite3_memory_used() stays 0 through opening,
 * migrating and querying, where with statistics on it counts every byte SQLite holds. */
static void test_no_memory_statistics(void **state)
{
	const char *db = *state;
	struct store *s = NULL;
	struct err e = {0};

	assert_int_equal(store_open(&s, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_true(pragma_int(s, "SELECT count(*) FROM sqlite_schema") > 10);
	assert_int_equal(sqlite3_memory_used(), 0);
	assert_int_equal(sqlite3_memory_highwater(0), 0);
	store_close(s);
}

/* Runs sql on s; returns SQLite's result code. */
static int run(struct store *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/* One row in each table with a CHECK, each valid; then every CHECK refuses a value outside
 * its list, on a connection tuned as given. */
static void checks_hold(struct store *s)
{
	static const char *const bad[] = {
		"UPDATE campaign SET state = 'bogus'",
		"UPDATE recipient SET state = 'bogus'",
		"UPDATE import_run SET state = 'bogus'",
		"UPDATE delivery SET state = 'bogus'",
		"UPDATE delivery SET kind = 'bogus'",
	};
	static const char *const good[] = {
		"UPDATE campaign SET state = 'ended'",
		"UPDATE recipient SET state = 'forgotten'",
		"UPDATE import_run SET state = 'failed'",
		"UPDATE delivery SET state = 'cancelled'",
		"UPDATE delivery SET kind = 'final'",
	};

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(run(s, bad[i]), SQLITE_CONSTRAINT);
		assert_int_equal(run(s, good[i]), SQLITE_OK);
		assert_int_equal(sqlite3_changes(s->db), 1);
	}
	assert_int_equal(run(s, "UPDATE campaign SET state = 'active';"
				"UPDATE recipient SET state = 'pending';"
				"UPDATE import_run SET state = 'running';"
				"UPDATE delivery SET state = 'queued', kind = 'initial'"),
			 SQLITE_OK);
}

/* db/009 wrote every CHECK (x IN (...)) as comparisons (an IN list built a temporary b-tree at
 * every write); the constraints still refuse what they refused, on every tuned connection. */
static void test_checks_are_comparisons_and_hold(void **state)
{
	const char *db = *state;
	struct store *a = NULL, *b = NULL;
	struct err e = {0};

	assert_int_equal(store_open(&a, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(pragma_int(a, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
				       " AND sql LIKE '%CHECK (%'"),
			 4);
	assert_int_equal(pragma_int(a, "SELECT count(*) FROM sqlite_schema"
				       " WHERE sql LIKE '%CHECK%' AND sql LIKE '% IN (%'"),
			 0);
	assert_int_equal(run(a, "INSERT INTO campaign (id, name, title, timezone, announce_at,"
				" reminder_start_at, cutoff_at, definition, source_path, templates_dir,"
				" digest, created_at, updated_at) VALUES (1, 'c', 't', 'UTC', 1, 2, 3,"
				" '', '', '', '', 0, 0);"
				"INSERT INTO recipient (id, campaign_id, user_id, email, digest,"
				" created_at, updated_at) VALUES (1, 1, 'u', 'u@example.test', 0, 0, 0);"
				"INSERT INTO import_run (campaign_id, file, started_at)"
				" VALUES (1, 'f', 0);"
				"INSERT INTO delivery (campaign_id, recipient_id, kind, occurrence, due_at,"
				" created_at, updated_at) VALUES (1, 1, 'initial', 0, 0, 0, 0)"),
			 SQLITE_OK);
	checks_hold(a);
	assert_int_equal(store_import_mode(a, true, &e), 0);
	checks_hold(a);
	assert_int_equal(store_import_mode(a, false, &e), 0);
	assert_int_equal(store_open(&b, db, 0, &e), 0);
	assert_int_equal(store_login_stream(b, STORE_LOGIN_CACHED, &e), 0);
	assert_int_equal(pragma_int(b, "PRAGMA mmap_size"), 0);
	assert_int_equal(pragma_int(b, "PRAGMA cache_size"), -1048576);
	assert_int_equal(pragma_int(b, "PRAGMA wal_autocheckpoint"), 131072);
	checks_hold(b);
	assert_int_equal(store_login_stream(b, STORE_LOGIN_MAPPED, &e), 0);
	assert_true(pragma_int(b, "PRAGMA mmap_size") > 0);
	assert_int_equal(pragma_int(b, "PRAGMA cache_size"), -65536);
	assert_int_equal(pragma_int(b, "PRAGMA wal_autocheckpoint"), 32768);
	checks_hold(b);
	store_close(a);
	store_close(b);
}

/* A migration after 009 that adds a column, on the connection that ran 009 (a fresh init):
 * 009 rewrote the table's text in sqlite_schema behind the connection's back, and ADD COLUMN
 * splices the column in at an offset taken from the text the connection had loaded, unless
 * 009 makes it reload the schema. The column must land at the end, on every connection. */
static void test_column_added_after_009(void **state)
{
	const char *db = *state;
	struct store *s = NULL, *t = NULL;
	struct err e = {0};

	assert_int_equal(store_open(&s, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(run(s, "ALTER TABLE recipient ADD COLUMN probe TEXT"), SQLITE_OK);
	assert_int_equal(pragma_int(s, "SELECT sql LIKE '%updated_at   INTEGER NOT NULL, email_key INTEGER, probe TEXT,"
				       "%UNIQUE (campaign_id, user_id)%' FROM sqlite_schema"
				       " WHERE name = 'recipient'"),
			 1);
	assert_int_equal(store_open(&t, db, 0, &e), 0);
	assert_int_equal(pragma_int(t, "SELECT name = 'probe' FROM pragma_table_info('recipient')"
				       " ORDER BY cid DESC LIMIT 1"),
			 1);
	assert_int_equal(pragma_int(t, "SELECT count(*) FROM pragma_integrity_check"
				       " WHERE integrity_check <> 'ok'"),
			 0);
	store_close(t);
	store_close(s);
}

/* sqlite3_trace_v2 callback: counts the trigger programs started (their "-- TRIGGER" text). */
static int count_triggers(unsigned type, void *ud, void *p, void *x)
{
	(void)p;
	if (type == SQLITE_TRACE_STMT && strncmp(x, "-- TRIGGER ", 11) == 0)
		++*(int *)ud;
	return 0;
}

/* db/010: completing a recipient runs no trigger program (the queue-mark trigger fired on
 * every completion), while a move into a segment still drops the marks, also from unaffected
 * (no segment) to pending. */
static void test_completion_runs_no_trigger(void **state)
{
	const char *db = *state;
	struct store *s = NULL;
	struct err e = {0};
	bool changed = false;
	int fired = 0;

	assert_int_equal(store_open(&s, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	assert_int_equal(run(s, "INSERT INTO campaign (id, name, title, timezone, announce_at,"
				" reminder_start_at, cutoff_at, definition, source_path, templates_dir,"
				" digest, created_at, updated_at) VALUES (1, 'c', 't', 'UTC', 1, 2, 3,"
				" '', '', '', '', 0, 0);"
				"INSERT INTO segment (id, campaign_id, name, position, template, send_at)"
				" VALUES (1, 1, 'g', 0, 't', 0);"
				"INSERT INTO recipient (id, campaign_id, user_id, email, segment_id, digest,"
				" created_at, updated_at) VALUES (1, 1, 'u', 'u@example.test', 1, 0, 0, 0);"
				"INSERT INTO recipient (id, campaign_id, user_id, email, state, digest,"
				" created_at, updated_at) VALUES (2, 1, 'v', 'v@example.test',"
				" 'unaffected', 0, 0, 0);"
				"INSERT INTO queue_mark VALUES (1, 'initial', 0, 2, 0)"),
			 SQLITE_OK);
	sqlite3_trace_v2(s->db, SQLITE_TRACE_STMT, count_triggers, &fired);
	assert_int_equal(store_recipient_complete(s, 1, 1, 5, "{}", &changed, NULL, &e), 0);
	assert_true(changed);
	assert_int_equal(fired, 0);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM queue_mark"), 1);
	assert_int_equal(store_recipient_set_segment(s, 2, 1, 6, &e), 0);
	assert_int_equal(pragma_int(s, "SELECT state = 'pending' FROM recipient WHERE id = 2"), 1);
	assert_true(fired > 0);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM queue_mark"), 0);
	sqlite3_trace_v2(s->db, 0, NULL, NULL);
	store_close(s);
}

/* The suppression key of an address is its SHA-256 in lower-case hex, as stored in every
 * database so far: a changed key would unsuppress everyone already suppressed. */
static void test_address_key_is_sha256(void **state)
{
	char key[65];

	(void)state;
	store_address_key("Someone@Example.test", key);
	assert_string_equal(key, "e70e1d90760b1b880c586ecc923c5a89749a8588c726537cbc4c29f141bfa250");
	store_address_key("", key);
	assert_string_equal(key, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* A VFS that is the default one but counts the statement journals opened as files. */
static sqlite3_vfs counting_vfs;
static sqlite3_vfs *real_vfs;
static int subjournals;

static int counting_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags,
			 int *out)
{
	(void)v;
	if (flags & SQLITE_OPEN_SUBJOURNAL)
		subjournals++;
	return real_vfs->xOpen(real_vfs, name, f, flags, out);
}

/* Logins recorded in a transaction go in by chunks of 64 rows without a statement journal (a
 * multi-row statement that may abort copies every page it changes to one, spilled to a file
 * past 64 KiB: as many writes as the WAL's). 20,000 logins first, so that a chunk of users
 * spread over the index changes far more than 64 KiB of pages. */
static void test_login_chunks_keep_no_statement_journal(void **state)
{
	const char *db = *state;
	struct store *s = NULL;
	struct err e = {0};
	char user[32];

	real_vfs = sqlite3_vfs_find(NULL);
	counting_vfs = *real_vfs;
	counting_vfs.zName = "counting";
	counting_vfs.xOpen = counting_open;
	assert_int_equal(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
	assert_int_equal(store_open(&s, db, STORE_CREATE | STORE_MIGRATE, &e), 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_begin(s, &e), 0);
		for (int i = 0; i < (round ? 640 : 20000); i++) {
			snprintf(user, sizeof user, "u%08d", (i * 7919 + round * 13) % 20011);
			assert_int_equal(store_login_record(s, user, i, "4.6", NULL, "none", &e), 0);
		}
		assert_int_equal(store_commit(s, &e), 0);
	}
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM login"), 20640);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM login_by_user"), 20640);
	assert_int_equal(subjournals, 0);
	store_close(s);
	sqlite3_vfs_unregister(&counting_vfs);
	sqlite3_vfs_register(real_vfs, 1);
}

/* login_by_user holds exactly the (user, time, id) of every login of a known user (outcome not
 * 'unknown'): recorded in transactions (full chunks and the rest at commit), outside one, and
 * nothing of a rolled-back one; a reader on the same connection sees them before the commit. */
static void test_login_keys_match_logins(void **state)
{
	static const char *const outcomes[] = {"none", "unknown", "reminder", "completed", "unknown"};
	struct store *s = NULL;
	struct err e = {0};
	char user[32];

	assert_int_equal(store_open(&s, *state, STORE_CREATE | STORE_MIGRATE, &e), 0);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(store_begin(s, &e), 0);
		for (int i = 0; i < 1000 + round * 37; i++) {
			snprintf(user, sizeof user, "u%05d", (i * 7919 + round) % 503);
			assert_int_equal(store_login_record(s, user, 1000 * round + i % 7, "4.6",
							    NULL, outcomes[i % 5], &e), 0);
		}
		if (round == 1) {
			store_rollback(s);
			continue;
		}
		if (round == 2) /* read inside the transaction: flushed first */
			assert_int_equal(store_login_flush(s, &e), 0);
		assert_int_equal(store_commit(s, &e), 0);
	}
	for (int i = 0; i < 10; i++) /* outside a transaction: at once */
		assert_int_equal(store_login_record(s, "solo", 9000 + i, NULL, NULL,
						    outcomes[i % 5], &e), 0);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM login"), 1000 + 1074 + 10);
	/* Known: outcomes 0, 2 and 3 of every 5: 600 of 1000, 645 of 1074, 6 of 10. */
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM login_by_user"), 600 + 645 + 6);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM (SELECT user_id, at, id FROM login"
				      " WHERE outcome <> 'unknown' EXCEPT SELECT user_id, at,"
				      " login_id FROM login_by_user)"), 0);
	assert_int_equal(pragma_int(s, "SELECT count(*) FROM (SELECT user_id, at, login_id FROM"
				      " login_by_user EXCEPT SELECT user_id, at, id FROM login"
				      " WHERE outcome <> 'unknown')"), 0);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_memory_statistics,
						scratch_db, scratch_db_remove),
		cmocka_unit_test(test_address_key_is_sha256),
		cmocka_unit_test_setup_teardown(test_cache_size_is_per_connection,
						scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_checks_are_comparisons_and_hold,
						scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_completion_runs_no_trigger,
						scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_column_added_after_009,
						scratch_db, scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_login_keys_match_logins, scratch_db,
						scratch_db_remove),
		cmocka_unit_test_setup_teardown(test_login_chunks_keep_no_statement_journal,
						scratch_db, scratch_db_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
