/* test_import_store.c — import_csv against a real SQLite store: counts, forgotten addresses, and
 * the connection left as it was found (CHECK constraints on, commits durable again). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "campaign.h"
#include "import.h"
#include "report.h"
#include "runlock.h"
#include "scratch.h"
#include "store.h"
#include "store_bounces.h"
#include "store_report.h"
#include "store_internal.h" /* the connection itself: its pragmas are what is checked */
#include "util.h"

struct fx {
	char dir[64];
	char *db, *csv;
	struct store *s;
	struct campaign *c;
	int64_t campaign_id;
};

static void must(int rc, const struct err *e)
{
	if (rc != 0)
		fail_msg("%s", e->msg);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	const char *src = getenv("CUTOFF_SOURCE_DIR");
	char *path = xasprintf("%s/campaigns/messenger-upgrade.cfg", src ? src : ".");
	struct store_campaign sc = {0, "messenger-upgrade", "t", "active", "UTC", 0, 0, 1, "x",
				    "t.cfg", "tpl", "d", 0, 0, 0};
	struct store_segment segs[16];
	struct err e = {0};

	snprintf(f->dir, sizeof f->dir, "/tmp/test_import_store.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = xasprintf("%s/t.db", f->dir);
	f->csv = xasprintf("%s/users.csv", f->dir);
	must(campaign_load_file(&f->c, path, NULL, &e), &e);
	free(path);
	must(store_open(&f->s, f->db, STORE_CREATE | STORE_MIGRATE, &e), &e);
	must(store_campaign_put(f->s, &sc, 0, &e), &e);
	f->campaign_id = sc.id;
	assert_true(f->c->n_segments <= 16);
	for (size_t i = 0; i < f->c->n_segments; i++)
		segs[i] = (struct store_segment){0, f->c->segments[i].name, (int)i,
						 f->c->segments[i].template_name, 0,
						 f->c->segments[i].target_version};
	must(store_segments_put(f->s, sc.id, segs, f->c->n_segments, &e), &e);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char *p;

	store_close(f->s);
	campaign_free(f->c);
	for (const char *const *n = (const char *const[]){"t.db", "t.db-wal", "t.db-shm",
			 "users.csv", "users.csv.rejects.csv", NULL}; *n; n++) {
		p = xasprintf("%s/%s", f->dir, *n);
		unlink(p);
		free(p);
	}
	rmdir(f->dir);
	free(f->db);
	free(f->csv);
	free(f);
	return 0;
}

static void write_csv(const struct fx *f, const char *text)
{
	FILE *out = fopen(f->csv, "w");

	assert_non_null(out);
	fputs(text, out);
	fclose(out);
}

static int64_t query_int(struct fx *f, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(f->s->db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void import(struct fx *f, struct import_result *r)
{
	struct import_options o = {.now = 1000, .db_path = f->db}; /* with a checkpoint thread */
	struct err e = {0};

	must(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, r, &e), &e);
}

#define HEADER "user_id,email,name,locale,timezone,client,version,platform,os,country\n"

static void test_counts_and_the_connection_after(void **state)
{
	struct fx *f = *state;
	struct import_result r;
	struct err e = {0};

	write_csv(f, HEADER "a1,a1@users.example.test,A,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "a2,a2@users.example.test,B,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "a3,a1@users.example.test,C,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "a4,a4@users.example.test,D,en,,msn-messenger,6.0,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.rows, 4);
	assert_int_equal(r.counts.added, 2);
	assert_int_equal(r.counts.merged, 1);
	assert_int_equal(r.counts.not_affected, 1);
	assert_null(r.rejects_path);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 2);
	/* The import's tuning is undone: recipient's CHECK holds, commits are FULL, the WAL
	 * is checkpointed at SQLite's default size, the page cache is whole again. */
	assert_int_equal(query_int(f, "PRAGMA cache_size"), -32768);
	assert_int_equal(query_int(f, "PRAGMA synchronous"), 2);
	assert_int_equal(query_int(f, "PRAGMA ignore_check_constraints"), 0);
	assert_int_equal(query_int(f, "PRAGMA wal_autocheckpoint"), 1000);
	assert_int_equal(query_int(f, "PRAGMA foreign_keys"), 1);
	must(store_import_mode(f->s, true, &e), &e);
	assert_int_equal(query_int(f, "PRAGMA wal_autocheckpoint"), 32768);
	assert_int_equal(query_int(f, "PRAGMA synchronous"), 1);
	assert_int_equal(query_int(f, "PRAGMA foreign_keys"), 0);
	assert_int_equal(query_int(f, "PRAGMA cache_size"), -16384);
	must(store_import_mode(f->s, true, &e), &e); /* twice: halved once */
	assert_int_equal(query_int(f, "PRAGMA cache_size"), -16384);
	must(store_import_mode(f->s, false, &e), &e);
	assert_int_equal(query_int(f, "PRAGMA cache_size"), -32768);
	assert_int_equal(query_int(f, "PRAGMA wal_autocheckpoint"), 1000);
	assert_int_equal(query_int(f, "PRAGMA foreign_keys"), 1);
	assert_int_not_equal(sqlite3_exec(f->s->db,
					  "UPDATE recipient SET state = 'bogus' WHERE user_id = 'a1'",
					  NULL, NULL, NULL),
			     SQLITE_OK);
	/* Every stored state is one the CHECK allows. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE state NOT IN"
				      " ('pending', 'completed', 'unaffected', 'forgotten')"),
			 0);
	/* The later duplicate's data wins (a3 merged into a1 by address). */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'a1'"
				      " AND name = 'C'"),
			 1);
	free(r.rejects_path);
	/* Again: nothing added, and the same people end up with the same data. */
	import(f, &r);
	assert_int_equal(r.counts.added, 0);
	assert_int_equal(r.counts.merged, 1);
	assert_int_equal(r.counts.not_affected, 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 2);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'a1'"
				      " AND name = 'C'"),
			 1);
	free(r.rejects_path);
}

/* SQLite's integrity check finds nothing wrong. */
/* The database passes integrity_check, no import is left pending, and recipient_key holds
 * exactly the recipients with a key (db/017). */
static void assert_sound(struct fx *f)
{
	assert_int_equal(query_int(f, "SELECT count(*) FROM pragma_integrity_check"
				      " WHERE integrity_check <> 'ok'"),
			 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM import_pending"), 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM (SELECT 1 FROM recipient"
				      " WHERE email IS NOT NULL GROUP BY campaign_id, email"
				      " HAVING count(*) > 1)"),
			 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient r WHERE email_key IS NOT NULL"
				      " AND NOT EXISTS (SELECT 1 FROM recipient_key k"
				      " WHERE k.email_key = r.email_key AND k.campaign_id = r.campaign_id"
				      " AND k.recipient_id = r.id)"),
			 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient_key k WHERE NOT EXISTS"
				      " (SELECT 1 FROM recipient r WHERE r.id = k.recipient_id"
				      " AND r.email_key = k.email_key AND r.campaign_id = k.campaign_id)"),
			 0);
}

/* A forgotten address (its SHA-256 in suppression, as `cutoff forget` leaves it) is not taken
 * in again; the others are. The key is the lower-case hex SHA-256 of the address. */
static void test_forgotten_address_not_taken_again(void **state)
{
	struct fx *f = *state;
	struct import_result r;
	bool forgotten = true;
	struct err e = {0};

	must(store_import_forgotten_any(f->s, &forgotten, &e), &e);
	assert_false(forgotten);
	/* SHA-256("abc") from FIPS 180-2: the key format, byte for byte. */
	assert_int_equal(sqlite3_exec(f->s->db,
				      "INSERT INTO suppression (address_hash, email, reason, created_at)"
				      " VALUES ('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61"
				      "f20015ad', NULL, 'forgotten', 0)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	must(store_import_forgotten_any(f->s, &forgotten, &e), &e);
	assert_true(forgotten);
	must(store_report_address_forgotten(f->s, "abc", &forgotten, &e), &e);
	assert_true(forgotten);
	must(store_report_address_forgotten(f->s, "abd", &forgotten, &e), &e);
	assert_false(forgotten);
	must(store_suppress(f->s, "gone@users.example.test", "forgotten", 0, NULL, 0, &e), &e);
	must(store_suppress(f->s, "bounced@users.example.test", "hard-bounce", 0, NULL, 0, &e), &e);
	write_csv(f, HEADER "g1,gone@users.example.test,Gone,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "b1,bounced@users.example.test,B,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "k1,kept@users.example.test,K,en,,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.added, 2);
	assert_int_equal(r.counts.not_affected, 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'g1'"
				      " OR name = 'Gone'"),
			 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 2);
	free(r.rejects_path);
}

/* Copies the found recipient's user id into ud (a char[64]). */
static int copy_user_id(void *ud, const struct store_recipient *r)
{
	snprintf(ud, 64, "%s", r->user_id);
	return 0;
}

/* Asserts that every cached query that looks a recipient up by address seeks recipient_key
 * (db/017), the spill index or a recipient's rowid rather than scanning a campaign, and reads
 * the pending imports' spans (STORE_ADDRESS_IDS) as rowid ranges; returns how many it
 * checked. */
static int address_lookups_use_the_index(struct fx *f)
{
	int checked = 0;

	for (sqlite3_stmt *st = sqlite3_next_stmt(f->s->db, NULL); st != NULL;
	     st = sqlite3_next_stmt(f->s->db, st)) {
		const char *sql = sqlite3_sql(st);
		char *explain, plan[2048] = "";
		sqlite3_stmt *ex = NULL;

		/* INDEXED BY: a walk of the index it names, on purpose (a key's heir among the
		 * spilled rows, store_keys_leave). */
		if (strncmp(sql, "UPDATE", 6) == 0 || strncmp(sql, "INSERT", 6) == 0 ||
		    strstr(sql, "INDEXED BY") != NULL ||
		    (strstr(sql, "email = ?") == NULL && strstr(sql, "email_key") == NULL))
			continue;
		explain = xasprintf("EXPLAIN QUERY PLAN %s", sql);
		assert_int_equal(sqlite3_prepare_v2(f->s->db, explain, -1, &ex, NULL), SQLITE_OK);
		while (sqlite3_step(ex) == SQLITE_ROW)
			snprintf(plan + strlen(plan), sizeof plan - strlen(plan), "%s\n",
				 (const char *)sqlite3_column_text(ex, 3));
		sqlite3_finalize(ex);
		free(explain);
		/* The key's holders, the spill index when the address is looked up, and no
		 * reading of a whole campaign or table. */
		if ((strstr(plan, "USING PRIMARY KEY (email_key=?") == NULL &&
		     strstr(plan, "recipient_email_spill") == NULL &&
		     strstr(plan, "USING INTEGER PRIMARY KEY (rowid=?)") == NULL) ||
		    ((strstr(sql, "cutoff_address_key") != NULL ||
		      strstr(sql, "FROM recipient_key") != NULL) &&
		     strstr(plan, "USING PRIMARY KEY (email_key=?") == NULL) ||
		    (strstr(sql, "import_pending") != NULL &&
		     strstr(plan, "USING INTEGER PRIMARY KEY (rowid>?)") == NULL) ||
		    (strstr(sql, "COLLATE NOCASE") != NULL &&
		     strstr(plan, "recipient_email_spill") == NULL) ||
		    strstr(plan, "SCAN recipient") != NULL || strstr(plan, "SCAN r\n") != NULL ||
		    strstr(plan, "SCAN r ") != NULL || strstr(plan, "SCAN k") != NULL ||
		    strstr(plan, "(campaign_id=?)") != NULL)
		{
			fprintf(stderr, "plan:\n%s\n", plan); /* fail_msg cuts long messages */
			fail_msg("no index for an address lookup:\n%s\nplan:\n%s", sql, plan);
		}
		checked++;
	}
	return checked;
}

/* Addresses are found by their key (db/016): unique per campaign exactly as before (the local
 * part's case matters), found exactly, a case variant stored without the key it shares and
 * found all the same, and every lookup by address seeks the key's index. */
static void test_address_key_index(void **state)
{
	struct fx *f = *state;
	struct import_result r;
	struct store_recipient_key k;
	struct store_recipient dup = {0};
	char user[64] = "";
	struct store_forget_target *t = NULL;
	struct store_bounces *b;
	struct store_bounce_target bt;
	size_t n = 0;
	int64_t id = 0, days = -1;
	struct err e = {0};

	assert_int_equal(query_int(f, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
				      " AND tbl_name = 'recipient' AND sql LIKE '%email%'"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM sqlite_master WHERE name IN"
				      " ('recipient_key', 'recipient_email_spill', 'import_pending')"),
			 3);
	write_csv(f, HEADER "c1,Carol@users.example.test,C1,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "c2,carol@users.example.test,C2,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "c3,Carol@users.example.test,C3,en,,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.added, 2);
	assert_int_equal(r.counts.merged, 1);
	free(r.rejects_path);
	must(store_recipient_find_email(f->s, f->campaign_id, "Carol@users.example.test", &k, &e),
	     &e);
	assert_string_equal(k.user_id, "c1");
	must(store_recipient_find_email(f->s, f->campaign_id, "carol@users.example.test", &k, &e),
	     &e);
	assert_string_equal(k.user_id, "c2");
	assert_int_equal(store_recipient_find_email(f->s, f->campaign_id,
						    "CAROL@users.example.test", &k, &e),
			 1);
	must(store_recipient_lookup(f->s, f->campaign_id, "carol@users.example.test",
				    copy_user_id, user, &e),
	     &e);
	assert_string_equal(user, "c2");
	/* The first spelling holds the key, the second shares it and goes without. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'c1'"
				      " AND email_key = cutoff_address_key('carol@USERS.example.test')"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'c2'"
				      " AND email_key IS NULL"),
			 1);
	/* The same address under a new user id is refused. */
	dup.campaign_id = f->campaign_id, dup.user_id = "c4", dup.email = "carol@users.example.test";
	assert_int_equal(store_recipient_insert(f->s, &dup, 0, &id, &e), 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 2);
	/* The nocase lookup of bounce attribution finds both spellings. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"
				      " WHERE email = 'CAROL@USERS.EXAMPLE.TEST' COLLATE NOCASE"),
			 2);
	/* Support's lookup of one person (cutoff user, cutoff forget) by address. */
	must(store_report_forget_find(f->s, "nobody", "carol@users.example.test", &t, &n, &e), &e);
	assert_int_equal(n, 1);
	assert_string_equal(t[0].user_id, "c2");
	store_report_forget_targets_free(t, n);
	/* Bounce attribution's lookups (no deliveries here: the plans are what is checked). */
	b = store_bounces_new(f->s);
	assert_int_equal(store_bounces_by_address(b, "CAROL@users.example.test", &bt, &e), 1);
	assert_int_equal(store_bounces_by_recipient(b, f->campaign_id, "carol@users.example.test", 0,
						    &bt, &e),
			 1);
	must(store_bounces_soft_days(b, "CAROL@users.example.test", 0, &days, &e), &e);
	assert_int_equal(days, 0);
	assert_true(address_lookups_use_the_index(f) >= 7);
	store_bounces_free(b);
}


/* The key of an address is stored: its definition must never change (db/016). SHA-256 of the
 * address with its ASCII letters folded, the first 8 octets big-endian, as Python computes:
 * struct.unpack('>q', hashlib.sha256(b'carol@users.example.test').digest()[:8]). */
static void test_address_key_is_fixed(void **state)
{
	(void)state;
	assert_int_equal(store_address_key64("carol@users.example.test"), -998336140747262015LL);
	assert_int_equal(store_address_key64("Carol@Users.Example.Test"), -998336140747262015LL);
	/* NOCASE folds ASCII only, and so does the key. */
	assert_int_equal(store_address_key64("\xc3\x89mile@x.test"), -7660530824960376953LL);
	assert_int_equal(store_address_key64("\xc3\xa9mile@x.test"), 7696652030930561530LL);
}

/* Keys cut to 2 bits collide all the time: every address is still stored once, found exactly
 * and regardless of case, and a second import of the file changes nothing. */
static void test_colliding_keys_keep_every_address(void **state)
{
	struct fx *f = *state;
	struct import_result r;
	struct store_recipient_key k;
	char user[64] = "", addr[64];
	FILE *out;
	struct err e = {0};

	store_address_key_bits = 2;
	assert_non_null(out = fopen(f->csv, "w"));
	fputs(HEADER, out);
	for (int i = 0; i < 40; i++)
		fprintf(out, "k%d,k%d@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n", i,
			i);
	fputs("k40,k3@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n" /* k3's */
	      "k41,K5@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n", /* a variant */
	      out);
	fclose(out);
	import(f, &r);
	assert_int_equal(r.counts.added, 41);
	assert_int_equal(r.counts.merged, 1);
	assert_null(r.rejects_path);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 41);
	assert_true(query_int(f, "SELECT count(*) FROM recipient WHERE email_key IS NOT NULL") <= 4);
	for (int i = 0; i < 40; i++) {
		snprintf(addr, sizeof addr, "k%d@users.example.test", i);
		must(store_recipient_find_email(f->s, f->campaign_id, addr, &k, &e), &e);
		assert_string_equal(k.email, addr);
	}
	must(store_recipient_find_email(f->s, f->campaign_id, "K5@users.example.test", &k, &e), &e);
	assert_string_equal(k.user_id, "k41");
	must(store_recipient_lookup(f->s, f->campaign_id, "K5@users.example.test", copy_user_id,
				    user, &e),
	     &e);
	assert_string_equal(user, "k41");
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE id IN (SELECT id FROM"
				      " recipient WHERE email_key = cutoff_address_key('k5@users."
				      "example.test') UNION ALL SELECT id FROM recipient WHERE"
				      " email_key IS NULL AND email = 'k5@USERS.example.test'"
				      " COLLATE NOCASE) AND email = 'k5@users.EXAMPLE.test'"
				      " COLLATE NOCASE"),
			 2);
	import(f, &r);
	assert_int_equal(r.counts.added, 0);
	assert_int_equal(r.counts.unchanged + r.counts.merged, 42);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 41);
	store_address_key_bits = 64;
}

/* Row i of write_many's file is rejected (a bad version) when this holds. */
static bool many_rejected(int i)
{
	return i % 7 == 0;
}

/* Row i of write_many's file carries a big country value when this holds: 20 rows in a row. */
static bool many_big(int i)
{
	return i >= 2500 && i < 2520;
}

/* Writes n rows: row i (line i + 2) is user q<i> at address q<i % 1000>@..., so rows 1000
 * apart are one person; many_rejected rows have a bad version, many_big ones big_len bytes of
 * country. */
static void write_many(const struct fx *f, int n, size_t big_len)
{
	FILE *out = fopen(f->csv, "w");
	char *big = xmalloc(big_len + 1);

	assert_non_null(out);
	memset(big, 'x', big_len);
	big[big_len] = '\0';
	fputs(HEADER, out);
	for (int i = 0; i < n; i++)
		fprintf(out, "q%d,q%d@users.example.test,N%d,en,,msn-messenger,%s,windows,XP,%s\n", i,
			i % 1000, i, many_rejected(i) ? "v4" : "4.6", many_big(i) ? big : "FR");
	fclose(out);
	free(big);
}

/* Checks that the rejects file lists exactly the rows many_rejected picks, in file order. */
static void check_many_rejects(const char *path, int n)
{
	char chunk[256];
	bool line_start = true;
	FILE *in = fopen(path, "r");
	int i = 0;
	long line;

	assert_non_null(in);
	assert_non_null(fgets(chunk, sizeof chunk, in)); /* the header */
	while (fgets(chunk, sizeof chunk, in) != NULL) {
		bool at = line_start;

		line_start = strchr(chunk, '\n') != NULL; /* long lines come in several chunks */
		if (!at)
			continue;
		while (i < n && !many_rejected(i))
			i++;
		assert_int_equal(sscanf(chunk, "%ld,", &line), 1);
		assert_int_equal(line, i + 2);
		i++;
	}
	fclose(in);
	while (i < n && !many_rejected(i))
		i++;
	assert_int_equal(i, n); /* none missing at the end */
}

/* The reader thread parses ahead of the store through a bounded queue: rows far bigger than
 * its byte budget, and many more rows than it has slots, are stored and rejected in file
 * order exactly as by one thread (the later duplicate's data wins, rejects keep their line
 * numbers and order). */
static void test_rows_stored_in_file_order_through_the_queue(void **state)
{
	struct fx *f = *state;
	struct import_result r;
	char *rejects;
	int64_t rejected = 0, big_kept = 0;

	write_many(f, 2600, 600 * 1024); /* 20 rows of 600 KiB in a row: 12 MiB */
	for (int a = 0; a < 1000; a++) {
		int last = -1;
		for (int i = a; i < 2600; i += 1000)
			last = many_rejected(i) ? last : i;
		big_kept += last >= 0 && many_big(last);
	}
	for (int i = 0; i < 2600; i++)
		rejected += many_rejected(i);
	import(f, &r);
	assert_int_equal(r.counts.rows, 2600);
	assert_int_equal(r.counts.rejected, rejected);
	assert_int_equal(r.counts.added, 1000); /* every address has a good row */
	assert_int_equal(r.counts.merged, 2600 - rejected - 1000);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 1000);
	/* q1's rows: line 3 (kept), q1001 (rejected), q2001 (merged into q1, its data won). */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'q1'"
				      " AND name = 'N2001'"),
			 1);
	assert_true(big_kept > 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"
				      " WHERE length(attrs) > 600 * 1024"),
			 big_kept);
	rejects = xasprintf("%s.rejects.csv", f->csv);
	assert_string_equal(r.rejects_path, rejects);
	check_many_rejects(rejects, 2600);
	free(rejects);
	free(r.rejects_path);
}

/* A store-side failure (here: the rejects file cannot be written) stops the reader thread,
 * which may be far ahead or waiting for room: the import returns that error, and the batch
 * in progress is rolled back. */
static void test_store_failure_stops_the_reader(void **state)
{
	struct fx *f = *state;
	char *bad = xasprintf("%s/no/such/dir/rejects.csv", f->dir);
	struct import_options o = {.rejects_path = bad, .now = 1000, .db_path = f->db};
	struct import_result r;
	struct err e = {0};

	write_many(f, 20000, 16);
	assert_int_equal(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "cannot write the rejects file"));
	assert_null(r.rejects_path);
	assert_int_equal(r.counts.rows, 1); /* the first row is rejected, and nothing after */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM import_run WHERE state = 'failed'"), 1);
	assert_sound(f);
	free(bad);
}

/* An import that fails after committing batches keeps them, with their keys added from the
 * rows (the memory also held the failed batch's), and nothing left pending. */
static void test_a_failed_import_adds_its_batches_keys(void **state)
{
	struct fx *f = *state;
	char *bad = xasprintf("%s/no/such/dir/rejects.csv", f->dir);
	struct import_options o = {.rejects_path = bad, .now = 1000, .commit_every = 10,
				   .db_path = f->db};
	struct import_result r;
	struct err e = {0};
	FILE *out = fopen(f->csv, "w");

	assert_non_null(out);
	fputs(HEADER, out);
	for (int i = 0; i < 105; i++)
		fprintf(out, "f%d,f%d@users.example.test,N,en,,msn-messenger,%s,windows,XP,FR\n", i, i,
			i == 104 ? "v4" : "4.6");
	fclose(out);
	assert_int_equal(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "cannot write the rejects file"));
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 100);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient_key"), 100);
	assert_sound(f);
	free(bad);
}

/* A re-import that changes a recipient's address or segment moves its index entries with it
 * (the cheaper update, which leaves both indexes alone, is only for rows that keep them), and
 * one that changes neither keeps them: found by the new address, not by the old one, in the
 * new segment, and integrity_check finds every index entry. */
static void test_update_moves_the_address_and_the_segment(void **state)
{
	struct fx *f = *state;
	struct import_result r;

	write_csv(f, "user_id,email,client,version,platform,os,country\n"
		     "k1,k1@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "k2,k2@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "k3,k3@example.test,msn-messenger,4.7,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.added, 3);
	write_csv(f, "user_id,email,client,version,platform,os,country\n"
		     "k1,k1-new@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "k2,k2@example.test,windows-messenger,4.7,windows,XP,FR\n"
		     "k3,k3@example.test,msn-messenger,4.7,windows,XP,DE\n");
	import(f, &r);
	assert_int_equal(r.counts.updated, 3);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'k1'"
				      " AND email = 'k1-new@example.test' COLLATE NOCASE"
				      " AND email = 'k1-new@example.test'"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"
				      " WHERE email = 'k1@example.test' COLLATE NOCASE"),
			 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient r JOIN segment g"
				      " ON g.id = r.segment_id WHERE r.user_id = 'k2'"
				      " AND g.name = 'windows-messenger'"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'k3'"
				      " AND attrs LIKE '%DE%' AND email = 'k3@example.test'"),
			 1);
	assert_sound(f);
	free(r.rejects_path);
}

/* With a checkpoint thread, each batch is copied into the database while the next is stored,
 * and past wal_frames the WAL starts over: a long import keeps it short (without the restart it
 * holds every batch's frames), loses nothing, and leaves a sound database. */
static void test_checkpoint_thread_keeps_the_wal_short(void **state)
{
	struct fx *f = *state;
	struct import_options o = {.now = 1000, .commit_every = 50, .db_path = f->db,
				   .wal_frames = 64};
	struct import_result r;
	struct err e = {0};
	struct stat st;
	char *wal = xasprintf("%s-wal", f->db);
	FILE *out = fopen(f->csv, "w");

	assert_non_null(out);
	fputs("user_id,email,client,version,platform,os,country\n", out);
	for (int i = 0; i < 8000; i++)
		fprintf(out, "w%d,w%d@example.test,msn-messenger,4.7.%d,windows,XP,C%06d\n", i,
			(i * 7919) % 8000, i % 3000, i);
	assert_int_equal(fclose(out), 0);
	must(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), &e);
	assert_int_equal(r.counts.added, 8000);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 8000);
	assert_int_equal(stat(wal, &st), 0);
	/* The 160 batches write about 6,500 frames (27 MB without the restart); with it the
	 * WAL holds what was committed while the checkpoint thread's last pass ran on top of the
	 * 64 (about 1,000 frames here). */
	assert_true(st.st_size < 2500 * (4096 + 24));
	assert_sound(f);
	free(r.rejects_path);
	free(wal);
}

/* Fills rows[0, n) with new recipients of the fixture's campaign: user <prefix><i> at
 * <prefix><i>@example.test, whose strings live in names (n * 2 of 32 bytes). */
static void run_rows(struct fx *f, struct store_recipient *rows, char (*names)[32], int n,
		     const char *prefix)
{
	for (int i = 0; i < n; i++) {
		snprintf(names[2 * i], 32, "%s%d", prefix, i);
		snprintf(names[2 * i + 1], 32, "%s%d@example.test", prefix, i);
		rows[i] = (struct store_recipient){.campaign_id = f->campaign_id,
						   .user_id = names[2 * i],
						   .email = names[2 * i + 1], .digest = 1};
	}
}

/* store_recipient_insert_run inserts rows in order, several per statement, and stops at the
 * first whose user id or address is taken (by a stored recipient or by an earlier row of the
 * run), leaving the rows after it untried; a constraint other than uniqueness is an error. */
static void test_insert_run_stops_at_the_first_conflict(void **state)
{
	struct fx *f = *state;
	struct store_recipient rows[100], one = {0};
	char names[200][32];
	size_t done = 0;
	int64_t id = 0;
	struct err e = {0};

	one.campaign_id = f->campaign_id, one.user_id = "x5", one.email = "x5@example.test";
	must(store_recipient_insert(f->s, &one, 0, &id, &e), &e);
	must(store_import_mode(f->s, true, &e), &e);
	must(store_begin(f->s, &e), &e);
	run_rows(f, rows, names, 100, "r");
	rows[70].user_id = "x5"; /* a stored recipient's user id: in the third statement (64 + 4 + 2) */
	must(store_recipient_insert_run(f->s, rows, 100, 0, &done, &e), &e);
	assert_int_equal(done, 70);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 71);
	must(store_recipient_insert_run(f->s, rows + 71, 29, 0, &done, &e), &e);
	assert_int_equal(done, 29);
	/* In row order, ids rising: r99 is the last and highest. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient a JOIN recipient b"
				      " ON a.id < b.id WHERE a.user_id LIKE 'r%' AND b.user_id LIKE 'r%'"
				      " AND CAST(substr(a.user_id, 2) AS INTEGER)"
				      " > CAST(substr(b.user_id, 2) AS INTEGER)"),
			 0);
	assert_int_equal(query_int(f, "SELECT max(id) = (SELECT id FROM recipient"
				      " WHERE user_id = 'r99') FROM recipient"),
			 1);
	/* A conflict with an earlier row of the same run, by address. */
	run_rows(f, rows, names, 10, "s");
	rows[6].email = rows[2].email;
	must(store_recipient_insert_run(f->s, rows, 10, 0, &done, &e), &e);
	assert_int_equal(done, 6);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id LIKE 's%'"), 6);
	/* One run is of one campaign and one import run. */
	run_rows(f, rows, names, 3, "u");
	rows[2].import_run = 7;
	assert_int_equal(store_recipient_insert_run(f->s, rows, 3, 0, &done, &e), ERR_SOFTWARE);
	memset(&e, 0, sizeof e);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id LIKE 'u%'"), 0);
	/* A missing user id is no conflict but an error. */
	run_rows(f, rows, names, 3, "t");
	rows[1].user_id = NULL;
	assert_true(store_recipient_insert_run(f->s, rows, 3, 0, &done, &e) < 0);
	assert_non_null(strstr(e.msg, "NOT NULL"));
	store_rollback(f->s);
	must(store_import_mode(f->s, false, &e), &e);
}

/* store_import_parents_check stands in for the foreign keys import mode turns off: it fails,
 * asking for the import to be run again, once the campaign or one of the segments is gone. */
static void test_parents_check(void **state)
{
	struct fx *f = *state;
	int64_t ids[2] = {0, 0};
	struct err e = {0};

	must(store_segment_id(f->s, f->campaign_id, f->c->segments[0].name, &ids[0], &e), &e);
	must(store_segment_id(f->s, f->campaign_id, f->c->segments[1].name, &ids[1], &e), &e);
	must(store_import_parents_check(f->s, f->campaign_id, ids, 2, &e), &e);
	assert_int_equal(store_import_parents_check(f->s, f->campaign_id + 1, ids, 0, &e),
			 ERR_TEMPFAIL);
	assert_non_null(strstr(e.msg, "import the file again"));
	memset(&e, 0, sizeof e);
	assert_int_equal(sqlite3_exec(f->s->db, "DELETE FROM segment WHERE id = (SELECT max(id)"
				      " FROM segment)", NULL, NULL, NULL),
			 SQLITE_OK);
	ids[1] = query_int(f, "SELECT max(id) + 1 FROM segment");
	assert_int_equal(store_import_parents_check(f->s, f->campaign_id, ids, 2, &e),
			 ERR_TEMPFAIL);
	must(store_import_parents_check(f->s, f->campaign_id, ids, 1, &e), &e);
}

/* The connection's commits: sqlite3_total_changes at each, for the ordering test below. */
struct commits {
	sqlite3 *db;
	int n;
	int64_t changes[64];
};

static int on_commit(void *ud)
{
	struct commits *c = ud;

	if (c->n < 64)
		c->changes[c->n++] = sqlite3_total_changes64(c->db);
	return 0;
}

/* New rows are inserted several at a time, yet each row still sees every row before it
 * stored, as one by one: an address a recipient moves away from is free for the next row,
 * and a duplicate is merged; a batch still ends after exactly commit_every rows. */
static void test_rows_stored_one_by_one_in_effect(void **state)
{
	struct fx *f = *state;
	struct import_options o = {.now = 1000, .commit_every = 7, .db_path = f->db};
	struct commits c = {.db = f->s->db};
	struct import_result r;
	struct err e = {0};
	int64_t base;
	FILE *out;

	write_csv(f, "user_id,email,client,version,platform,os,country\n"
		     "m1,m1@example.test,msn-messenger,4.7,windows,XP,FR\n");
	import(f, &r);
	out = fopen(f->csv, "w");
	assert_non_null(out);
	fputs("user_id,email,client,version,platform,os,country\n"
	      "m1,m1-new@example.test,msn-messenger,4.7,windows,XP,FR\n"
	      "m2,m1@example.test,msn-messenger,4.7,windows,XP,FR\n", out);
	/* Rows 2 to 101: b0 ... b98, every tenth a copy of the row before it (merged). */
	for (int i = 0; i < 100; i++)
		fprintf(out, "b%d,b%d@example.test,msn-messenger,4.7,windows,XP,FR\n",
			i % 10 == 9 ? i - 1 : i, i % 10 == 9 ? i - 1 : i);
	assert_int_equal(fclose(out), 0);
	sqlite3_commit_hook(f->s->db, on_commit, &c);
	must(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), &e);
	sqlite3_commit_hook(f->s->db, NULL, NULL);
	free(r.rejects_path);
	assert_int_equal(r.counts.updated, 1);
	assert_int_equal(r.counts.added, 91);
	assert_int_equal(r.counts.merged, 10);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'm2'"
				      " AND email = 'm1@example.test'"),
			 1);
	/* Commits: the run's start, one per 7 rows stored (102 rows: 14), the last rows, the
	 * run's end. Before the k-th batch's commit, 7k rows were stored: one update (m1),
	 * then m2 and the b rows, a tenth of them merged without a write. */
	assert_int_equal(c.n, 1 + 14 + 1 + 1);
	base = c.changes[0];
	for (int k = 1; k <= 14; k++) {
		int b_rows = 7 * k - 2;
		/* m1's update also moved its key in recipient_key (db/017): 2 more changes. */
		assert_int_equal(c.changes[k] - base, 4 + b_rows - b_rows / 10);
	}
	assert_sound(f);
}

/* Imports 3,000 new users named <prefix><i> with commit_every 2,000, counting the commits. */
static void import_counting_commits(struct fx *f, const char *prefix, struct commits *c)
{
	struct import_options o = {.now = 1000, .commit_every = 2000, .db_path = f->db};
	struct import_result r;
	struct err e = {0};
	FILE *out = fopen(f->csv, "w");

	assert_non_null(out);
	fputs("user_id,email,client,version,platform,os,country\n", out);
	for (int i = 0; i < 3000; i++)
		fprintf(out, "%s%d,%s%d@example.test,msn-messenger,4.7,windows,XP,C%06d\n", prefix,
			i, prefix, (i * 7919) % 3000, i);
	assert_int_equal(fclose(out), 0);
	*c = (struct commits){.db = f->s->db};
	sqlite3_commit_hook(f->s->db, on_commit, c);
	must(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), &e);
	sqlite3_commit_hook(f->s->db, NULL, NULL);
	free(r.rejects_path);
	assert_int_equal(r.counts.added, 3000);
}

/* A batch ends early, once half of commit_every rows are in, when the page cache overflowed
 * (pages written to the WAL mid-transaction); with room in the cache it holds commit_every
 * rows. Commits: the run's start, the batches, the last rows, the run's end. */
static void test_a_batch_ends_early_when_the_cache_overflows(void **state)
{
	struct fx *f = *state;
	struct commits c;
	struct err e = {0};

	import_counting_commits(f, "roomy", &c);
	assert_int_equal(c.n, 1 + 1 + 1 + 1);
	assert_int_equal(c.changes[1] - c.changes[0], 2000);

	must(store_cache_size(f->s, 64, &e), &e); /* 16 pages: every batch overflows it */
	import_counting_commits(f, "tight", &c);
	assert_int_equal(c.n, 1 + 2 + 1 + 1);
	for (int k = 1; k <= 2; k++) {
		int64_t rows = c.changes[k] - c.changes[k - 1];
		assert_true(rows >= 1000 && rows < 1000 + 64); /* at the end of the run past half */
	}
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 6000);
	assert_sound(f);
}

/* The rejects file at path lists exactly the lines in want (comma-separated), in order. */
static void check_rejected_lines(const char *path, const char *want)
{
	char line[1024], got[256] = "";
	FILE *in = fopen(path, "r");

	assert_non_null(in);
	assert_non_null(fgets(line, sizeof line, in)); /* the header */
	while (fgets(line, sizeof line, in) != NULL)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%ld", *got ? "," : "",
			 strtol(line, NULL, 10));
	fclose(in);
	assert_string_equal(got, want);
}

/* Rows that store nothing (not affected and unknown, rejected) go with a run of new rows, yet
 * a row that is not affected still sees the rows before it stored and none after it: n1's
 * second row makes the n1 just added unaffected, n2's first row (n2 unknown then) is a no-op
 * and its second row adds n2; the rejected row keeps its place in the rejects file. */
static void test_not_affected_rows_in_a_run(void **state)
{
	struct fx *f = *state;
	struct import_result r;

	write_csv(f, "user_id,email,client,version,platform,os,country\n"
		     "n1,n1@example.test,msn-messenger,4.6,windows,XP,FR\n"
		     "n1,n1@example.test,msn-messenger,6.0,windows,XP,FR\n"
		     "n2,n2@example.test,msn-messenger,6.0,windows,XP,FR\n"
		     "n9,n9@example.test,msn-messenger,v4,windows,XP,FR\n"
		     "n2,n2@example.test,msn-messenger,4.6,windows,XP,FR\n"
		     "n3,n3@example.test,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.rows, 6);
	assert_int_equal(r.counts.added, 3);
	assert_int_equal(r.counts.not_affected, 2);
	assert_int_equal(r.counts.rejected, 1);
	assert_int_equal(r.counts.merged, 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'n1'"
				      " AND state = 'unaffected' AND segment_id IS NULL"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'n2'"
				      " AND state = 'pending' AND segment_id IS NOT NULL"),
			 1);
	check_rejected_lines(r.rejects_path, "5");
	free(r.rejects_path);
}

/* A file where nearly every rule of the importer meets another: user ids and addresses drawn
 * from small pools (a person twice, an address under two user ids, a case variant of an
 * address, an address that moves and is taken by the next row), some rows not affected. */
static void write_tangled(const struct fx *f, unsigned seed, int n)
{
	FILE *out = fopen(f->csv, "w");

	assert_non_null(out);
	fputs(HEADER, out);
	for (int i = 0; i < n; i++) {
		unsigned u, a, x;

		seed = seed * 1103515245u + 12345u, u = (seed >> 8) % 700;
		seed = seed * 1103515245u + 12345u, a = (seed >> 8) % 600;
		seed = seed * 1103515245u + 12345u, x = (seed >> 8) % 100;
		fprintf(out, "t%u,%c%u@users.example.test,N,en,,%s,4.6,windows,XP,FR\n", u,
			x < 20 ? 'T' : 't', a, x >= 90 ? "other-client" : "msn-messenger");
	}
	fclose(out);
}

/* The recipients and key holders of fx as one text, in id order. */
static char *contents(struct fx *f)
{
	sqlite3_stmt *st = NULL;
	struct buf b;
	char *out;

	buf_init(&b);
	assert_int_equal(sqlite3_prepare_v2(f->s->db,
					    "SELECT r.id, r.user_id, coalesce(r.email, ''), r.state,"
					    " r.digest, coalesce(k.recipient_id, 0) FROM recipient r"
					    " LEFT JOIN recipient_key k ON k.recipient_id = r.id"
					    " AND k.email_key = r.email_key AND k.campaign_id = r.campaign_id"
					    " ORDER BY r.id",
					    -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		buf_printf(&b, "%lld %s %s %s %lld %lld\n", (long long)sqlite3_column_int64(st, 0),
			   sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
			   sqlite3_column_text(st, 3), (long long)sqlite3_column_int64(st, 4),
			   (long long)sqlite3_column_int64(st, 5));
	sqlite3_finalize(st);
	out = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return out;
}

/* Two imports of tangled files, each with the keys added row by row (IMPORT_KEYS_NOW), and
 * deferred with room for 8 keys (a fill every few rows, in the middle of runs and batches)
 * or the default room (one fill at the end): the same recipients, counts and rejects. With
 * keys cut to 2 bits too, where nearly every address shares its key. */
static void tangled_three_ways(int key_bits)
{
	const size_t room[3] = {IMPORT_KEYS_NOW, 8, 0};
	char *seen[3] = {NULL}, *rejects[3] = {NULL};
	struct store_import_counts counts[3][2];

	store_address_key_bits = key_bits;
	for (int w = 0; w < 3; w++) {
		void *state = NULL;
		struct fx *f;

		assert_int_equal(setup(&state), 0);
		f = state;
		for (int round = 0; round < 2; round++) {
			struct import_options o = {.now = 1000 + round, .commit_every = 50,
						   .db_path = f->db, .defer_keys = room[w]};
			struct import_result r;
			struct err e = {0};

			write_tangled(f, 7u + (unsigned)round, 1500);
			must(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), &e);
			counts[w][round] = r.counts;
			assert_true(r.counts.rejected > 0 && r.counts.merged > 0);
			assert_true(r.counts.added > 0 && r.counts.not_affected > 0);
			if (round == 1) {
				size_t len;

				assert_non_null(r.rejects_path);
				assert_non_null(rejects[w] = scratch_read_file(r.rejects_path, &len));
			}
			free(r.rejects_path);
			assert_sound(f);
		}
		seen[w] = contents(f);
		assert_int_equal(teardown(&state), 0);
	}
	for (int w = 1; w < 3; w++) {
		assert_memory_equal(&counts[w], &counts[0], sizeof counts[0]);
		assert_string_equal(seen[w], seen[0]);
		assert_string_equal(rejects[w], rejects[0]);
	}
	for (int w = 0; w < 3; w++)
		free(seen[w]), free(rejects[w]);
	store_address_key_bits = 64;
}

static void test_deferred_keys_store_what_row_by_row_does(void **state)
{
	(void)state;
	tangled_three_ways(64);
	tangled_three_ways(2);
}

/* An address that moves within one import is free for the rows after it, and the address it
 * moved to is taken (a new user id there is merged, another user cannot move there), while
 * both holders are still only in the import's memory. */
static void test_an_address_moves_within_one_import(void **state)
{
	struct fx *f = *state;
	struct import_result r;

	write_csv(f, "user_id,email,client,version,platform,os,country\n"
		     "u1,x@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "u1,y@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "u2,x@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "u3,y@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "u4,X@example.test,msn-messenger,4.7,windows,XP,FR\n"
		     "u2,y@example.test,msn-messenger,4.7,windows,XP,FR\n");
	import(f, &r);
	/* u3 is merged into u1 by the address; u2 cannot move to u1's. */
	assert_int_equal(r.counts.added, 3);
	assert_int_equal(r.counts.merged, 2);
	assert_int_equal(r.counts.rejected, 1);
	free(r.rejects_path);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient r JOIN recipient_key k"
				      " ON k.recipient_id = r.id WHERE r.user_id = 'u1'"
				      " AND k.email_key = cutoff_address_key('y@example.test')"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient r JOIN recipient_key k"
				      " ON k.recipient_id = r.id WHERE r.user_id = 'u2'"
				      " AND k.email_key = cutoff_address_key('x@example.test')"),
			 1);
	/* The case variant shares u2's key and goes without one. */
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'u4'"
				      " AND email = 'X@example.test' AND email_key IS NULL"),
			 1);
	assert_sound(f);
}

/* A key's holder that loses its address hands the key to a case variant stored without it:
 * forgetting Carol@ leaves carol@ holding the key, and the exact carol@ under a new user id is
 * then merged into that recipient, not stored twice. */
static void test_a_forgotten_holder_hands_its_key_on(void **state)
{
	struct fx *f = *state;
	struct report_forget_result res;
	struct import_result r;
	struct err e = {0};

	write_csv(f, HEADER "c1,Carol@users.example.test,C1,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "c2,carol@users.example.test,C2,en,,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	free(r.rejects_path);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'c2'"
				      " AND email_key IS NULL"),
			 1);
	must(report_forget(f->s, "c1", 2000, &res, &e), &e);
	assert_int_equal(res.recipients, 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient_key k JOIN recipient r"
				      " ON r.id = k.recipient_id WHERE r.user_id = 'c2'"),
			 1);
	write_csv(f, HEADER "c3,carol@users.example.test,C3,en,,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	free(r.rejects_path);
	assert_int_equal(r.counts.added, 0);
	assert_int_equal(r.counts.merged, 1);
	assert_sound(f);
}

/* A crash between an import's batches and its end leaves its span pending: every lookup by
 * address on another connection still finds those recipients (a scan of the span), and the
 * next import, of any file, adds their keys first. */
static void test_a_pending_span_is_found_and_finished(void **state)
{
	struct fx *f = *state;
	struct store *other = NULL;
	struct store_recipient_key k;
	struct store_forget_target *t = NULL;
	struct import_result r;
	char user[64] = "";
	size_t n = 0;
	struct err e = {0};

	write_many(f, 3000, 16);
	import(f, &r);
	free(r.rejects_path);
	/* As a crash leaves it: the last 300 recipients committed, their keys not added; q999
	 * (line 1001) is among them. */
	assert_int_equal(sqlite3_exec(f->s->db,
				      "INSERT INTO import_pending (campaign_id, first_id)"
				      " SELECT campaign_id, max(id) - 299 FROM recipient;"
				      " DELETE FROM recipient_key WHERE recipient_id >="
				      " (SELECT first_id FROM import_pending)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient WHERE user_id = 'q999' AND id >="
				      " (SELECT first_id FROM import_pending) AND email_key IS NOT NULL"),
			 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient_key k JOIN recipient r"
				      " ON r.id = k.recipient_id WHERE r.user_id = 'q999'"),
			 0);
	must(store_open(&other, f->db, 0, &e), &e);
	must(store_recipient_lookup(other, f->campaign_id, "q999@users.example.test", copy_user_id,
				    user, &e),
	     &e);
	assert_string_equal(user, "q999");
	must(store_report_forget_find(other, "nobody", "q999@users.example.test", &t, &n, &e), &e);
	assert_int_equal(n, 1);
	store_report_forget_targets_free(t, n);
	store_close(other);
	write_csv(f, HEADER "z1,z1@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n"
			    "z2,q999@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n");
	import(f, &r);
	assert_int_equal(r.counts.added, 1);
	assert_int_equal(r.counts.merged, 1); /* into q999, by the address */
	free(r.rejects_path);
	must(store_recipient_find_email(f->s, f->campaign_id, "q999@users.example.test", &k, &e),
	     &e);
	assert_string_equal(k.user_id, "q999");
	assert_sound(f);
}

/* One import a database at a time: a second one is refused with the holder's name while the
 * first holds the import lock, and goes ahead once it is released. */
static void test_one_import_at_a_time(void **state)
{
	struct fx *f = *state;
	struct runlock *held = NULL;
	struct import_options o = {.now = 1000, .db_path = f->db};
	struct import_result r;
	struct err e = {0};
	char *lock = xasprintf("%s.import-lock", f->db);

	write_csv(f, HEADER "a1,a1@users.example.test,N,en,,msn-messenger,4.6,windows,XP,FR\n");
	must(runlock_acquire_file(&held, f->db, ".import-lock", "import", "import", 1000, &e), &e);
	assert_int_equal(import_csv(f->s, f->c, f->campaign_id, f->csv, &o, &r, &e), ERR_TEMPFAIL);
	assert_non_null(strstr(e.msg, "another cutoff import is already working on"));
	assert_non_null(strstr(e.msg, "cutoff import, pid"));
	assert_int_equal(query_int(f, "SELECT count(*) FROM recipient"), 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM import_run"), 0);
	runlock_release(held);
	import(f, &r);
	assert_int_equal(r.counts.added, 1);
	free(r.rejects_path);
	unlink(lock);
	free(lock);
	assert_sound(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_counts_and_the_connection_after, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_forgotten_address_not_taken_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_address_key_index, setup, teardown),
		cmocka_unit_test(test_address_key_is_fixed),
		cmocka_unit_test_setup_teardown(test_colliding_keys_keep_every_address, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rows_stored_in_file_order_through_the_queue,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_moves_the_address_and_the_segment, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_thread_keeps_the_wal_short, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_insert_run_stops_at_the_first_conflict, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parents_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_affected_rows_in_a_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_batch_ends_early_when_the_cache_overflows,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rows_stored_one_by_one_in_effect, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_store_failure_stops_the_reader, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_a_failed_import_adds_its_batches_keys, setup,
						teardown),
		cmocka_unit_test(test_deferred_keys_store_what_row_by_row_does),
		cmocka_unit_test_setup_teardown(test_an_address_moves_within_one_import, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_a_pending_span_is_found_and_finished, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_one_import_at_a_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_forgotten_holder_hands_its_key_on, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
