/* test_login.c — the login decision against a real SQLite store: one reminder per period (also
 * when eight threads decide the same login at once), completion by version and what it cancels,
 * discontinued segments, suppression, paused campaigns, several campaigns, the JSON answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "campaign.h"
#include "login.h"
#include "login_line.h"
#include "login_text.h"
#include "schedule.h"
#include "store.h"
#include "store_login.h"
#include "store_report.h"
#include "util.h"

/* ---- fixture: a scratch folder with templates, a database with two campaigns -------------- */

static char scratch[64];

static void write_file(const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", scratch, rel);
	FILE *f;

	for (char *p = path + strlen(scratch) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	free(path);
}

/* name, cutoff: campaign "t" ends 15 October, "u" (the more urgent) 1 October. */
static char *campaign_text(const char *name, const char *cutoff)
{
	return xasprintf(
		"name = \"%s\";\ntitle = \"Test %s\";\n"
		"from = \"Test Team <team@test.example.test>\";\n"
		"timezone = \"America/Los_Angeles\";\n"
		"announce = \"2003-08-18 09:00\";\nreminder_start = \"2003-09-18\";\n"
		"cutoff = \"%s\";\nupgrade_url = \"https://test.example.test/%s\";\n"
		"segments = (\n"
		"  { name = \"old\"; match = { client = \"c1\"; version_below = \"5.0\"; };\n"
		"    template = \"upgrade\"; target_version = \"5.0\"; },\n"
		"  { name = \"late\"; match = { client = \"c3\"; }; template = \"upgrade\";\n"
		"    send = \"2003-09-25 09:00\"; target_version = \"2.0\"; },\n"
		"  { name = \"gone\"; match = { client = \"c2\"; }; template = \"gone\";"
		" discontinued = true; }\n);\n",
		name, name, cutoff, name);
}

static void tree_write(void)
{
	write_file("upgrade/subject.mustache", "Upgrade before {{cutoff_date}}\n");
	write_file("upgrade/text.mustache", "Upgrade to {{target_version}}\n");
	write_file("upgrade/login.mustache",
		   "{{campaign.name}}: {{days_left}} days left, upgrade to {{target_version}}"
		   " ({{kind}}{{#is_final_notice}}!{{/is_final_notice}})\n");
	write_file("gone/subject.mustache", "It ends {{cutoff_date}}\n");
	write_file("gone/text.mustache", "Sorry\n");
	write_file("gone/login.mustache", "{{campaign.name}}: it ends in {{days_left}} days\n");
}

struct fx {
	char *db;
	struct store *s;
	int64_t t_id, u_id;       /* the campaigns' ids */
	int64_t t_seg[3], u_seg[3];
	struct login_catalog *cat;
	struct login_session *ls;
};

static int64_t at(const char *instant)
{
	int64_t t = 0;
	struct err e = {0};

	if (schedule_parse_instant(instant, &t, &e) != 0)
		fail_msg("%s", e.msg);
	return t;
}

/* Stores campaign NAME as `cutoff campaign add` would; its segment ids go to seg. */
static int64_t add_campaign(struct store *s, const char *name, const char *cutoff,
			    int64_t seg[3])
{
	char *text = campaign_text(name, cutoff);
	struct campaign *c = NULL;
	struct store_campaign row = {0};
	struct store_segment segs[3];
	struct err e = {0};

	if (campaign_load_text(&c, text, "t.cfg", scratch, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	row.name = c->name, row.title = c->title, row.timezone = c->timezone;
	row.announce_at = c->announce_at, row.reminder_start_at = c->reminder_start_at;
	row.cutoff_at = c->cutoff_at, row.definition = c->source_text;
	row.source_path = "t.cfg", row.templates_dir = scratch, row.digest = "d";
	assert_int_equal(store_campaign_put(s, &row, 0, &e), 0);
	for (size_t i = 0; i < 3; i++)
		segs[i] = (struct store_segment){
			0, c->segments[i].name, (int)i, c->segments[i].template_name,
			c->segments[i].send_at, c->segments[i].target_version};
	assert_int_equal(store_segments_put(s, row.id, segs, 3, &e), 0);
	for (size_t i = 0; i < 3; i++)
		seg[i] = segs[i].id;
	campaign_free(c);
	free(text);
	return row.id;
}

static int64_t add_user(struct store *s, int64_t cid, int64_t seg, const char *user,
			const char *client)
{
	char *email = xasprintf("%s@users.example.test", user);
	struct store_recipient r = {.campaign_id = cid, .user_id = user, .email = email,
				    .client = client, .version = "4.6", .segment_id = seg};
	struct err e = {0};
	int64_t id = 0;

	if (store_recipient_insert(s, &r, 0, &id, &e) != 0)
		fail_msg("%s", e.msg);
	free(email);
	return id;
}

static void fx_reload(struct fx *f)
{
	struct err e = {0};

	login_session_free(f->ls);
	login_catalog_free(f->cat);
	if (login_catalog_load(&f->cat, f->s, &e) != 0)
		fail_msg("catalog: %s", e.msg);
	f->ls = login_session_new(f->cat, f->s);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	struct err e = {0};

	snprintf(scratch, sizeof scratch, "/tmp/test_login.XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	tree_write();
	f->db = xasprintf("%s/cutoff.db", scratch);
	if (store_open(&f->s, f->db, STORE_CREATE | STORE_MIGRATE, &e) != 0)
		fail_msg("%s", e.msg);
	f->t_id = add_campaign(f->s, "t", "2003-10-15", f->t_seg);
	f->u_id = add_campaign(f->s, "u", "2003-10-01", f->u_seg);
	add_user(f->s, f->t_id, f->t_seg[0], "alice", "c1");  /* old: target 5.0 */
	add_user(f->s, f->t_id, f->t_seg[2], "gina", "c2");   /* discontinued */
	add_user(f->s, f->t_id, f->t_seg[1], "lena", "c3");   /* late: first e-mail 25 Sep */
	add_user(f->s, f->t_id, f->t_seg[0], "both", "c1");
	add_user(f->s, f->u_id, f->u_seg[0], "both", "c1");   /* in both campaigns */
	add_user(f->s, f->t_id, f->t_seg[0], "sam", "c1");
	fx_reload(f);
	*state = f;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	login_session_free(f->ls);
	login_catalog_free(f->cat);
	store_close(f->s);
	free(f->db);
	free(f);
	nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* One login in its own transaction; the answer's strings are copied into text. */
static struct login_answer decide(struct fx *f, const char *user, const char *version,
				  const char *when, char *text, size_t n)
{
	struct login_event ev = {user, version, "windows", at(when)};
	struct login_answer a;
	struct err e = {0};

	assert_int_equal(store_begin(f->s, &e), 0);
	if (login_decide(f->ls, &ev, &a, &e) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(store_commit(f->s, &e), 0);
	if (text != NULL)
		snprintf(text, n, "%s", a.reminded ? a.text : "");
	return a;
}

static int count_period(void *ud, int64_t index, int64_t shown_at)
{
	struct buf *b = ud;

	(void)shown_at;
	buf_printf(b, "%s%lld", b->len ? "," : "", (long long)index);
	return 0;
}

/* The id of user's recipient row in the campaign (which must exist). */
static int64_t recipient_id(struct fx *f, int64_t campaign_id, const char *user)
{
	struct store_recipient_key k;
	struct err e = {0};

	assert_int_equal(store_recipient_find_user(f->s, campaign_id, user, &k, &e), 0);
	return k.id;
}

/* The periods recipient id was reminded in, "0,2,3". */
static char *periods(struct fx *f, int64_t campaign_id, const char *user)
{
	struct buf b;
	struct err e = {0};

	buf_init(&b);
	buf_puts(&b, "");
	assert_int_equal(store_login_reminder_each(f->s, recipient_id(f, campaign_id, user),
						   count_period, &b, &e),
			 0);
	return buf_steal(&b);
}

/* ---- the tests ------------------------------------------------------------------------- */

static void test_once_per_period(void **state)
{
	struct fx *f = *state;
	char text[512];
	struct login_answer a;
	char *p;

	a = decide(f, "alice", "4.6", "2003-09-18T06:59:59Z", text, sizeof text);
	assert_false(a.reminded); /* 23:59:59 PDT on the 17th: before the window */
	assert_true(a.known);
	assert_string_equal(a.outcome, "none");
	a = decide(f, "alice", "4.6", "2003-09-18T07:00:00Z", text, sizeof text);
	assert_true(a.reminded);
	assert_string_equal(text, "t: 27 days left, upgrade to 5.0 (login)");
	assert_int_equal(a.days_left, 27);
	assert_string_equal(a.campaign, "t");
	assert_string_equal(a.upgrade_url, "https://test.example.test/t");
	assert_int_equal(a.period_index, 0);
	assert_string_equal(a.outcome, "reminder");
	for (int i = 0; i < 5; i++) /* the same local day, many times: nothing more */
		assert_false(decide(f, "alice", "4.6", "2003-09-19T06:30:00Z", NULL, 0).reminded);
	a = decide(f, "alice", "4.6", "2003-09-19T07:00:00Z", NULL, 0);
	assert_true(a.reminded);
	assert_int_equal(a.period_index, 1);
	assert_int_equal(a.period_end - a.period_start, 86400);
	/* 22 September skipped (no login), a late login on the 23rd still finds its reminder. */
	assert_true(decide(f, "alice", "4.6", "2003-09-24T06:00:00Z", NULL, 0).reminded);
	p = periods(f, f->t_id, "alice");
	assert_string_equal(p, "0,1,5");
	free(p);
	/* The last instant before the cutoff, the cutoff itself, and after. */
	assert_true(decide(f, "alice", "4.6", "2003-10-15T06:59:59Z", NULL, 0).reminded);
	assert_false(decide(f, "alice", "4.6", "2003-10-15T07:00:00Z", NULL, 0).reminded);
	assert_false(decide(f, "alice", "4.6", "2003-10-20T07:00:00Z", NULL, 0).reminded);
}

static void test_completion(void **state)
{
	struct fx *f = *state;
	struct store_delivery_counts dc;
	struct login_answer a;
	int64_t queued = 0, due = -1;
	struct err e = {0};

	/* A queued final notice for the segment: completion must cancel it. */
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "final", 1, 1, 0,
						      &queued, &e), 0);
	assert_int_equal(queued, 3); /* alice, both, sam */
	a = decide(f, "sam", "4.9", "2003-09-20T17:00:00Z", NULL, 0);
	assert_true(a.reminded);
	assert_false(a.completed);
	a = decide(f, "sam", "5.0", "2003-09-20T18:00:00Z", NULL, 0);
	assert_false(a.reminded);
	assert_true(a.completed);
	assert_int_equal(a.completed_now, 1);
	assert_string_equal(a.outcome, "completed");
	assert_int_equal(store_delivery_counts(f->s, f->t_id, 0, &dc, &e), 0);
	assert_int_equal(dc.cancelled, 1);
	assert_int_equal(dc.queued, 2);
	/* The indexed count of due deliveries agrees with the full count, before and at due_at. */
	assert_int_equal(store_delivery_due(f->s, f->t_id, 0, &due, &e), 0);
	assert_int_equal(due, 0);
	assert_int_equal(store_delivery_counts(f->s, f->t_id, 1, &dc, &e), 0);
	assert_int_equal(store_delivery_due(f->s, f->t_id, 1, &due, &e), 0);
	assert_int_equal(due, 2);
	assert_int_equal(dc.due, due);
	/* Next day, an old client again: completed stays completed, nothing shown. */
	a = decide(f, "sam", "4.6", "2003-09-21T18:00:00Z", NULL, 0);
	assert_false(a.reminded);
	assert_true(a.completed);
	assert_int_equal(a.completed_now, 0);
	/* A discontinued segment: no version completes it, and it is still reminded. */
	a = decide(f, "gina", "99.0", "2003-09-21T18:00:00Z", NULL, 0);
	assert_false(a.completed);
	assert_true(a.reminded);
	assert_string_equal(a.text, "t: it ends in 24 days");
	/* Not a version: recorded, completes nothing. */
	a = decide(f, "alice", "five", "2003-09-21T18:00:00Z", NULL, 0);
	assert_false(a.completed);
}

static int completed_detail(void *ud, const struct store_history_item *h)
{
	struct buf *b = ud;

	if (strcmp(h->what, "event") == 0 && strcmp(h->kind, "completed") == 0)
		buf_printf(b, "%s%s", b->len ? "\n" : "", h->detail ? h->detail : "(null)");
	return 0;
}

/* The completion event's detail (what support reads): who completed, and with what. */
static char *completion_detail(struct fx *f, int64_t campaign_id, const char *user)
{
	struct buf b;
	struct err e = {0};

	buf_init(&b);
	buf_puts(&b, "");
	assert_int_equal(store_report_history(f->s, recipient_id(f, campaign_id, user), user,
					      completed_detail, &b, &e),
			 0);
	return buf_steal(&b);
}

static void test_completion_detail(void **state)
{
	struct fx *f = *state;
	struct login_event ev = {"alice", "5.0.1", NULL, at("2003-09-20T17:00:00Z")};
	struct login_answer a;
	struct err e = {0};
	char *d;

	a = decide(f, "sam", "5.0", "2003-09-20T18:00:00Z", NULL, 0);
	assert_int_equal(a.completed_now, 1);
	d = completion_detail(f, f->t_id, "sam");
	assert_string_equal(d, "{\"by\":\"login\",\"client_version\":\"5.0\","
			       "\"platform\":\"windows\"}");
	free(d);
	/* No platform reported: null. An odd one is escaped, not lost. */
	assert_int_equal(store_begin(f->s, &e), 0);
	assert_int_equal(login_decide(f->ls, &ev, &a, &e), 0);
	ev.user = "both", ev.platform = "Win \"XP\"\\2 sp1 \xc3\xa9";
	assert_int_equal(login_decide(f->ls, &ev, &a, &e), 0);
	assert_int_equal(a.completed_now, 2);
	assert_int_equal(store_commit(f->s, &e), 0);
	d = completion_detail(f, f->t_id, "alice");
	assert_string_equal(d, "{\"by\":\"login\",\"client_version\":\"5.0.1\",\"platform\":null}");
	free(d);
	d = completion_detail(f, f->u_id, "both");
	assert_string_equal(d, "{\"by\":\"login\",\"client_version\":\"5.0.1\","
			       "\"platform\":\"Win \\\"XP\\\"\\\\2 sp1 \xc3\xa9\"}");
	free(d);
}

static void test_unknown_suppressed_late_segment(void **state)
{
	struct fx *f = *state;
	struct login_answer a;
	struct err e = {0};

	a = decide(f, "nobody", "4.6", "2003-09-20T17:00:00Z", NULL, 0);
	assert_false(a.known);
	assert_false(a.reminded);
	assert_string_equal(a.outcome, "unknown");
	/* The late segment sends its first e-mail on 25 September: no reminder before. */
	assert_false(decide(f, "lena", "1.0", "2003-09-24T17:00:00Z", NULL, 0).reminded);
	assert_true(decide(f, "lena", "1.0", "2003-09-25T17:00:00Z", NULL, 0).reminded);
	/* A suppressed address gets nothing. */
	assert_int_equal(store_suppress(f->s, "alice@users.example.test", "hard-bounce", f->t_id,
					NULL, 0, &e), 0);
	assert_false(decide(f, "alice", "4.6", "2003-09-20T17:00:00Z", NULL, 0).reminded);
}

/* The login path's suppression check (store_suppressed) finds the keys store_suppress writes,
 * for any address, and only the address as written. */
static void test_suppressed_agrees(void **state)
{
	struct fx *f = *state;
	static const char *const in[] = {"Bob@Example.TEST", "zo\xc3\xab@b\xc3\xbc" "cher.example.test",
					 "x+tag@a.example.test"};
	static const char *const out[] = {"bob@example.test", "Zo\xc3\xab@b\xc3\xbc" "cher.example.test",
					  "x@a.example.test", "nobody@example.test"};
	struct err e = {0};
	bool found;

	for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
		assert_int_equal(store_suppress(f->s, in[i], "manual", 0, NULL, 0, &e), 0);
		assert_int_equal(store_suppressed(f->s, in[i], &found, &e), 0);
		assert_true(found);
	}
	for (size_t i = 0; i < sizeof out / sizeof *out; i++) {
		assert_int_equal(store_suppressed(f->s, out[i], &found, &e), 0);
		assert_false(found);
	}
}

static void test_several_campaigns_and_paused(void **state)
{
	struct fx *f = *state;
	struct login_answer a;
	struct err e = {0};
	bool stale = true;

	/* "both" is in t (cutoff 15 Oct) and u (1 Oct): u is the more urgent. */
	a = decide(f, "both", "4.6", "2003-09-20T17:00:00Z", NULL, 0);
	assert_true(a.reminded);
	assert_string_equal(a.campaign, "u");
	a = decide(f, "both", "4.6", "2003-09-20T18:00:00Z", NULL, 0);
	assert_true(a.reminded);
	assert_string_equal(a.campaign, "t");
	assert_false(decide(f, "both", "4.6", "2003-09-20T19:00:00Z", NULL, 0).reminded);
	/* After u's cutoff only t reminds. */
	a = decide(f, "both", "4.6", "2003-10-02T17:00:00Z", NULL, 0);
	assert_string_equal(a.campaign, "t");
	/* Pausing t: the catalog is stale; once reloaded, no reminders, completion still works. */
	assert_int_equal(login_catalog_stale(f->cat, f->s, &stale, &e), 0);
	assert_false(stale);
	assert_int_equal(store_campaign_set_state(f->s, f->t_id, "paused", 1, &e), 0);
	assert_int_equal(login_catalog_stale(f->cat, f->s, &stale, &e), 0);
	assert_true(stale);
	fx_reload(f);
	assert_false(decide(f, "alice", "4.6", "2003-10-03T17:00:00Z", NULL, 0).reminded);
	a = decide(f, "both", "5.1", "2003-10-03T18:00:00Z", NULL, 0);
	assert_true(a.completed); /* in t, and in u (whose cutoff passed: it stays active) */
	assert_int_equal(a.completed_now, 2);
}

/* ---- eight threads, one connection each, the same login at the same instant -------------- */

struct racer {
	struct fx *f;
	pthread_barrier_t *go;
	const char *when;
	int reminded;
};

static void *race(void *ud)
{
	struct racer *r = ud;
	struct store *s = NULL;
	struct login_session *ls;
	struct login_event ev = {"alice", "4.6", NULL, at(r->when)};
	struct login_answer a;
	struct err e = {0};

	if (store_open(&s, r->f->db, 0, &e) != 0)
		return NULL;
	ls = login_session_new(r->f->cat, s);
	pthread_barrier_wait(r->go);
	if (store_begin(s, &e) == 0 && login_decide(ls, &ev, &a, &e) == 0 &&
	    store_commit(s, &e) == 0)
		r->reminded = a.reminded ? 1 : 0;
	else
		r->reminded = -1;
	login_session_free(ls);
	store_close(s);
	return NULL;
}

static void test_concurrent_logins(void **state)
{
	static const char *days[] = {"2003-09-26T17:00:00Z", "2003-09-27T17:00:00Z",
				     "2003-09-28T17:00:00Z"};
	struct fx *f = *state;
	pthread_barrier_t go;
	pthread_t th[8];
	struct racer r[8];

	for (size_t d = 0; d < 3; d++) {
		int total = 0;
		pthread_barrier_init(&go, NULL, 8);
		for (int i = 0; i < 8; i++) {
			r[i] = (struct racer){f, &go, days[d], 0};
			assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(th[i], NULL);
			assert_int_not_equal(r[i].reminded, -1);
			total += r[i].reminded;
		}
		pthread_barrier_destroy(&go);
		assert_int_equal(total, 1); /* exactly one of the eight showed it */
	}
}

/* Two connections tuned for a stream of logins (store_login_stream: one with a large cache,
 * one with memory-mapped reads; both with a large WAL between checkpoints) see each other's
 * commits: a page one changed is read from the WAL by the other, not from its stale cache or
 * mapping of the database file. */
static struct login_answer decide_on(struct login_session *ls, struct store *s, const char *user,
				     const char *version, const char *when)
{
	struct login_event ev = {user, version, NULL, at(when)};
	struct login_answer a;
	struct err e = {0};

	assert_int_equal(store_begin(s, &e), 0);
	if (login_decide(ls, &ev, &a, &e) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(store_commit(s, &e), 0);
	return a;
}

/* A session remembers whose reminder of the period it saw taken, so a repeat login makes no
 * claim (shown by removing the claim behind its back: nothing is shown again); and it forgets
 * them when a transaction rolls back, so a reminder whose claim was rolled back is shown at
 * the next login. */
static void test_taken_remembered_and_forgotten(void **state)
{
	struct fx *f = *state;
	struct store_recipient_key k;
	struct store *other = NULL;
	struct login_event ev = {"sam", "4.6", NULL, at("2003-09-20T17:00:00Z")};
	struct login_answer a;
	struct err e = {0};

	a = decide(f, "alice", "4.6", "2003-09-20T17:00:00Z", NULL, 0);
	assert_true(a.reminded);
	assert_int_equal(store_recipient_find_user(f->s, f->t_id, "alice", &k, &e), 0);
	assert_int_equal(store_open(&other, f->db, 0, &e), 0);
	assert_int_equal(store_login_reminder_release(other, k.id, a.period_start, &e), 0);
	store_close(other);
	assert_false(decide(f, "alice", "4.6", "2003-09-20T18:00:00Z", NULL, 0).reminded);
	assert_int_equal(store_begin(f->s, &e), 0);
	assert_int_equal(login_decide(f->ls, &ev, &a, &e), 0);
	assert_true(a.reminded);
	store_rollback(f->s);
	assert_true(decide(f, "sam", "4.6", "2003-09-20T18:00:00Z", NULL, 0).reminded);
	assert_false(decide(f, "sam", "4.6", "2003-09-20T19:00:00Z", NULL, 0).reminded);
	/* The rollback also emptied the rest: alice's claim is made again, and finds none. */
	assert_true(decide(f, "alice", "4.6", "2003-09-20T19:00:00Z", NULL, 0).reminded);
}

/* Collects the logins of a person's history. */
struct login_rows {
	int n;
	int64_t at[256];
	char version[256][8], platform[256][8]; /* "-" for NULL */
};

static int collect_login(void *ud, const struct store_history_item *h)
{
	struct login_rows *r = ud;

	if (strcmp(h->what, "login") != 0 || r->n >= 256)
		return 0;
	r->at[r->n] = h->at;
	snprintf(r->version[r->n], sizeof r->version[0], "%s", h->text ? h->text : "-");
	snprintf(r->platform[r->n], sizeof r->platform[0], "%s", h->note ? h->note : "-");
	r->n++;
	return 0;
}

static struct login_rows *logins_of(struct store *s, int64_t id, const char *user)
{
	static struct login_rows r;
	struct err e = {0};

	memset(&r, 0, sizeof r);
	if (store_report_history(s, id, user, collect_login, &r, &e) != 0)
		fail_msg("%s", e.msg);
	return &r;
}

/* Logins recorded in a transaction go in 64 rows to a statement or at the commit: all of
 * them, in order, with their NULLs; none after a rollback; at once outside a transaction;
 * and a history read on the recording connection sees those still held back. */
static void test_logins_batched(void **state)
{
	struct fx *f = *state;
	struct store_recipient_key k;
	struct store *other = NULL;
	struct login_rows *r;
	struct err e = {0};

	assert_int_equal(store_recipient_find_user(f->s, f->t_id, "alice", &k, &e), 0);
	assert_int_equal(store_open(&other, f->db, 0, &e), 0);
	assert_int_equal(store_begin(f->s, &e), 0);
	for (int i = 0; i < 150; i++)
		assert_int_equal(store_login_record(f->s, "alice", 1000 + i, i % 3 ? "4.6" : NULL,
						    i % 2 ? "mac" : "", "none", &e),
				 0);
	assert_int_equal(logins_of(other, k.id, "alice")->n, 0); /* not committed */
	assert_int_equal(store_commit(f->s, &e), 0);
	r = logins_of(other, k.id, "alice");
	assert_int_equal(r->n, 150);
	for (int i = 0; i < 150; i++) {
		assert_int_equal(r->at[i], 1000 + i);
		assert_string_equal(r->version[i], i % 3 ? "4.6" : "-");
		assert_string_equal(r->platform[i], i % 2 ? "mac" : "-");
	}
	assert_int_equal(store_begin(f->s, &e), 0);
	for (int i = 0; i < 70; i++) /* a full statement's worth and some */
		assert_int_equal(store_login_record(f->s, "alice", 2000 + i, "4.6", NULL, "none",
						    &e),
				 0);
	assert_int_equal(logins_of(f->s, k.id, "alice")->n, 220); /* its own, held back too */
	store_rollback(f->s);
	assert_int_equal(logins_of(other, k.id, "alice")->n, 150);
	assert_int_equal(logins_of(f->s, k.id, "alice")->n, 150);
	assert_int_equal(store_login_record(f->s, "alice", 3000, "4.7", NULL, "none", &e), 0);
	r = logins_of(other, k.id, "alice");
	assert_int_equal(r->n, 151);
	assert_int_equal(r->at[150], 3000);
	store_close(other);
}

static void test_tuned_streams_agree(void **state)
{
	struct fx *f = *state;
	struct store *s[2] = {NULL, NULL};
	struct login_session *ls[2];
	struct store_delivery_counts dc;
	int64_t queued = 0;
	struct err e = {0};

	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_open(&s[i], f->db, 0, &e), 0);
		assert_int_equal(store_login_stream(s[i], i ? STORE_LOGIN_MAPPED : STORE_LOGIN_CACHED,
						    &e),
				 0);
		ls[i] = login_session_new(f->cat, s[i]);
	}
	/* Both read alice's and sam's pages before either writes. */
	assert_false(decide_on(ls[0], s[0], "alice", "4.6", "2003-09-18T06:00:00Z").reminded);
	assert_false(decide_on(ls[1], s[1], "sam", "4.6", "2003-09-18T06:00:00Z").reminded);
	for (int d = 0; d < 3; d++) {
		static const char *const days[] = {"2003-09-20T17:00:00Z", "2003-09-21T17:00:00Z",
						   "2003-09-22T17:00:00Z"};
		int a = d % 2, b = 1 - a;

		assert_true(decide_on(ls[a], s[a], "alice", "4.6", days[d]).reminded);
		assert_false(decide_on(ls[b], s[b], "alice", "4.6", days[d]).reminded);
		assert_false(decide_on(ls[a], s[a], "alice", "4.6", days[d]).reminded);
	}
	/* A completion on a tuned connection (CHECK constraints on, as everywhere) writes the
	 * same states: sam completed, and sam's queued e-mail cancelled, no one else's. */
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "final", 1, 1, 0,
						      &queued, &e), 0);
	assert_int_equal(queued, 3); /* alice, both, sam */
	assert_int_equal(decide_on(ls[1], s[1], "sam", "5.0", "2003-09-22T18:00:00Z").completed_now,
			 1);
	assert_int_equal(store_delivery_counts(f->s, f->t_id, 0, &dc, &e), 0);
	assert_int_equal(dc.cancelled, 1);
	assert_int_equal(dc.queued, 2);
	assert_true(decide_on(ls[0], s[0], "sam", "4.6", "2003-09-22T19:00:00Z").completed);
	assert_false(decide_on(ls[0], s[0], "sam", "4.6", "2003-09-23T19:00:00Z").reminded);
	for (int i = 0; i < 2; i++) {
		login_session_free(ls[i]);
		store_close(s[i]);
	}
}

/* Shared texts: recipients of one group share a text for one local day, and only that day. */
static void test_text_shared_by_day(void **state)
{
	struct fx *f = *state;
	char text[512];
	struct login_answer a;

	/* 23:59:59 PDT on 19 September, then midnight: the same group, a day apart. */
	a = decide(f, "alice", "4.6", "2003-09-20T06:59:59Z", text, sizeof text);
	assert_int_equal(a.days_left, 26);
	assert_string_equal(text, "t: 26 days left, upgrade to 5.0 (login)");
	a = decide(f, "sam", "4.6", "2003-09-20T07:00:00Z", text, sizeof text);
	assert_int_equal(a.days_left, 25);
	assert_string_equal(text, "t: 25 days left, upgrade to 5.0 (login)");
	/* Later the same local day, the next member of the group: the kept text. "both" is
	 * also in u, more urgent: u's reminder first, then t's at the next login. */
	a = decide(f, "both", "4.6", "2003-09-21T06:00:00Z", text, sizeof text);
	assert_string_equal(a.campaign, "u");
	assert_int_equal(a.days_left, 11);
	a = decide(f, "both", "4.6", "2003-09-21T06:59:59Z", text, sizeof text);
	assert_string_equal(a.campaign, "t");
	assert_int_equal(a.days_left, 25);
	assert_string_equal(text, "t: 25 days left, upgrade to 5.0 (login)");
}

/* A text that reads a recipient's own data is theirs: never shared. */
static void test_text_per_user(void **state)
{
	struct fx *f = *state;
	char text[512];

	write_file("upgrade/login.mustache", "{{recipient.user_id}}: {{days_left}} days\n");
	fx_reload(f);
	decide(f, "alice", "4.6", "2003-09-20T17:00:00Z", text, sizeof text);
	assert_string_equal(text, "alice: 25 days");
	decide(f, "sam", "4.6", "2003-09-20T17:00:01Z", text, sizeof text);
	assert_string_equal(text, "sam: 25 days");
}

/* Whether segment 0 ("upgrade") of campaign t shares texts with login.mustache = text. */
static bool shared_with(const char *rel, const char *text)
{
	char *def = campaign_text("t", "2003-10-15");
	struct campaign *c = NULL;
	struct login_text_plan *p;
	struct err e = {0};
	bool shared, gone;

	write_file(rel, text);
	if (campaign_load_text(&c, def, "t.cfg", scratch, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	p = login_text_plan_new(c);
	shared = login_text_plan_shared(p, 0);
	gone = login_text_plan_shared(p, 2);
	assert_true(gone); /* the other template is not concerned */
	login_text_plan_free(p);
	campaign_free(c);
	free(def);
	return shared;
}

static void test_text_plan(void **state)
{
	(void)state;
	assert_true(shared_with("upgrade/login.mustache", "{{campaign.name}} {{days_left}}"
				" {{#is_final_notice}}!{{/is_final_notice}} {{cutoff_date}}\n"));
	assert_true(shared_with("upgrade/login.mustache", "{{client_name}} {{recipient.version}}"
				" {{segment.upgrade_url}} {{recipient.os}}\n"));
	assert_false(shared_with("upgrade/login.mustache", "{{recipient.name}}\n"));
	assert_false(shared_with("upgrade/login.mustache", "{{attributes.country}}\n"));
	assert_false(shared_with("upgrade/login.mustache", "{{#segment}}{{name}}{{/segment}}\n"));
	assert_false(shared_with("upgrade/login.mustache", "{{.}}\n"));
	write_file("partials/p.mustache", "{{days_left}}\n");
	assert_false(shared_with("upgrade/login.mustache", "{{> p}}\n"));
	assert_true(shared_with("upgrade/login.mustache", "{{days_left}}\n"));
	/* A locale folder's text reads the name: the whole segment is unshared. */
	assert_false(shared_with("fr/upgrade/login.mustache", "{{recipient.email}}\n"));
	assert_false(shared_with("fr/upgrade/login.mustache", "{{days_left"));  /* broken */
	assert_true(shared_with("fr/upgrade/login.mustache", "{{days_left}} jours\n"));
}

static void test_json(void **state)
{
	struct login_answer a = {.reminded = true, .campaign = "t", .days_left = 3,
				 .text = "Say \"hi\"\\ \x01 caf\xc3\xa9 \xff!"};
	struct buf b;

	(void)state;
	buf_init(&b);
	login_answer_json(&a, "u\"1", &b);
	assert_string_equal(b.data, "{\"user\":\"u\\\"1\",\"reminder\":{\"campaign\":\"t\","
				    "\"text\":\"Say \\\"hi\\\"\\\\ \\u0001 caf\xc3\xa9 \\ufffd!\","
				    "\"days_left\":3,\"upgrade_url\":null},\"completed\":false}");
	buf_reset(&b);
	a = (struct login_answer){.reminded = true, .campaign = "t", .text = "",
				  .upgrade_url = "https://x/", .days_left = -12};
	login_answer_json(&a, "y", &b);
	assert_string_equal(b.data, "{\"user\":\"y\",\"reminder\":{\"campaign\":\"t\",\"text\":\"\","
				    "\"days_left\":-12,\"upgrade_url\":\"https://x/\"},\"completed\":false}");
	buf_reset(&b);
	a.days_left = INT64_MIN;
	login_answer_json(&a, "y", &b);
	assert_non_null(strstr(b.data, "\"days_left\":-9223372036854775808,"));
	buf_reset(&b);
	a.days_left = 1234567890;
	login_answer_json(&a, "y", &b);
	assert_non_null(strstr(b.data, "\"days_left\":1234567890,"));
	buf_reset(&b);
	a = (struct login_answer){.completed = true};
	login_answer_json(&a, "x", &b);
	assert_string_equal(b.data, "{\"user\":\"x\",\"reminder\":null,\"completed\":true}");
	buf_free(&b);
}

/* Every octet through login_json_string, in valid UTF-8 (the table's path) and after an invalid
 * octet (the careful path): the same escapes either way. */
static void test_json_string(void **state)
{
	char in[8], want[16], got_bad[32];
	struct buf b;

	(void)state;
	buf_init(&b);
	for (int c = 1; c < 0x80; c++) {
		in[0] = 'x', in[1] = (char)c, in[2] = '\0';
		if (c == '"' || c == '\\')
			snprintf(want, sizeof want, "\"x\\%c\"", c);
		else if (c < 0x20 || c == 0x7f)
			snprintf(want, sizeof want, "\"x\\u%04x\"", (unsigned)c);
		else
			snprintf(want, sizeof want, "\"x%c\"", c);
		buf_reset(&b);
		login_json_string(&b, in);
		assert_string_equal(b.data, want);
		/* the same octet after an invalid one: \ufffd, then the same escape */
		in[0] = (char)0xff;
		buf_reset(&b);
		login_json_string(&b, in);
		snprintf(got_bad, sizeof got_bad, "\"\\ufffd%s", want + 2);
		assert_string_equal(b.data, got_bad);
	}
	buf_reset(&b);
	login_json_string(&b, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \"q\" \x7f");
	assert_string_equal(b.data, "\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \\\"q\\\" \\u007f\"");
	buf_reset(&b);
	login_json_string(&b, "");
	assert_string_equal(b.data, "\"\"");
	buf_free(&b);
}

/* The daily run's queue marks: a second queueing skips the segment, unless someone joined it. */
static void test_queue_marks(void **state)
{
	struct fx *f = *state;
	struct store_recipient_key k;
	int64_t n = -1, id;
	struct err e = {0};

	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "initial", 0, 1,
						      0, &n, &e), 0);
	assert_int_equal(n, 3); /* alice, both, sam */
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "initial", 0, 1,
						      0, &n, &e), 0);
	assert_int_equal(n, 0);
	/* A recipient imported later gets the wave. */
	add_user(f->s, f->t_id, f->t_seg[0], "late", "c1");
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "initial", 0, 1,
						      0, &n, &e), 0);
	assert_int_equal(n, 1);
	/* So does one moved into the segment (re-matched by an import). */
	assert_int_equal(store_recipient_find_user(f->s, f->t_id, "gina", &k, &e), 0);
	assert_int_equal(store_recipient_set_segment(f->s, k.id, f->t_seg[0], 0, &e), 0);
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "initial", 0, 1,
						      0, &n, &e), 0);
	assert_int_equal(n, 1);
	/* Another occurrence is queued on its own; completing someone drops no mark. */
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "final", 9, 9, 0,
						      &n, &e), 0);
	assert_int_equal(n, 5);
	id = add_user(f->s, f->u_id, f->u_seg[0], "other", "c1"); /* another campaign's */
	(void)id;
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "final", 9, 9, 0,
						      &n, &e), 0);
	assert_int_equal(n, 0); /* re-checked (a new id), and nothing was missing */
	assert_true(decide(f, "sam", "5.0", "2003-09-20T17:00:00Z", NULL, 0).completed);
	assert_int_equal(store_delivery_queue_segment(f->s, f->t_id, f->t_seg[0], "final", 9, 9, 0,
						      &n, &e), 0);
	assert_int_equal(n, 0);
}

static void test_bad_event(void **state)
{
	struct fx *f = *state;
	struct login_event ev = {"", "4.6", NULL, 0};
	struct login_answer a;
	struct err e = {0};

	assert_int_equal(login_decide(f->ls, &ev, &a, &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "without a user"));
}

/* Event lines: what is read from each, and the reason for those that are not logins. */
static void test_event_lines(void **state)
{
	static const struct {
		const char *line;
		const char *user, *version, *platform; /* NULL: absent */
		int64_t at;                            /* 0: the clock (7) */
		const char *error;                     /* a part of the reason, or NULL */
	} cases[] = {
		{"{\"user\":\"u1\",\"client_version\":\"4.6\",\"platform\":\"mac\",\"time\":5}",
		 "u1", "4.6", "mac", 5, NULL},
		{" { \"time\" : \"1970-01-01T00:01:00Z\" , \"user\" : \"u2\" } ", "u2", NULL, NULL,
		 60, NULL},
		{"{\"user\":\"j\\u00e9r\\u00f4me \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\t\"}",
		 "j\xc3\xa9r\xc3\xb4me \xf0\x9f\x98\x80 \"q\" \\ / \t", NULL, NULL, 0, NULL},
		{"{\"user\":\"u3\",\"platform\":null,\"x\":[1,{\"y\":null}],\"z\":-1.5e3}", "u3",
		 NULL, NULL, 0, NULL},
		{"{\"user\":\"u4\",\"ok\":true,\"no\":false,\"n\":-12,\"time\":null}", "u4", NULL,
		 NULL, 0, NULL},
		{"{\"user\":\"u5\",}", NULL, NULL, NULL, 0, "near"},
		{"{\"user\":\"u6\",\"user\":\"u7\"}", NULL, NULL, NULL, 0, "duplicate object key"},
		{"{}", NULL, NULL, NULL, 0, "\"user\" must be a non-empty string"},
		{"{\"user\":\"\"}", NULL, NULL, NULL, 0, "\"user\" must be a non-empty string"},
		{"{\"user\":7}", NULL, NULL, NULL, 0, "\"user\" must be a non-empty string"},
		{"{\"user\":\"u8\",\"client_version\":5}", "u8", NULL, NULL, 0,
		 "\"client_version\" must be a string"},
		{"{\"user\":\"u9\",\"time\":1.5}", "u9", NULL, NULL, 0, "\"time\" must be"},
		{"{\"user\":\"u9\",\"time\":\"soon\"}", "u9", NULL, NULL, 0, "is not a date"},
		{"{\"user\":\"u9\",\"time\":true}", "u9", NULL, NULL, 0, "\"time\" must be"},
		{"{\"user\":\"a\\u0000b\"}", NULL, NULL, NULL, 0, "NUL"},
		{"{\"user\":\"\\udc00\"}", NULL, NULL, NULL, 0, "invalid Unicode"},
		{"{\"user\":\"\xff\"}", NULL, NULL, NULL, 0, "unable to decode byte"},
		{"{\"user\":\"u1\"} x", NULL, NULL, NULL, 0, "end of file expected"},
		{"[\"user\"]", NULL, NULL, NULL, 0, "not a JSON object"},
		{"{\"user\":\"u1\",\"n\":0123}", NULL, NULL, NULL, 0, "invalid token"},
	};
	struct login_line l;

	(void)state;
	login_line_init(&l);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct login_event ev;
		char why[400] = "";
		int rc = login_line_parse(&l, cases[i].line, strlen(cases[i].line), 7, &ev, why,
					  sizeof why);
		if (cases[i].error != NULL) {
			if (rc != ERR_DATA || strstr(why, cases[i].error) == NULL)
				fail_msg("case %zu: rc %d, why '%s', wanted '%s'", i, rc, why,
					 cases[i].error);
		} else if (rc != 0) {
			fail_msg("case %zu: %s", i, why);
		}
		if ((cases[i].user == NULL) != (ev.user == NULL) ||
		    (ev.user && strcmp(ev.user, cases[i].user) != 0))
			fail_msg("case %zu: user '%s'", i, ev.user ? ev.user : "(null)");
		if (cases[i].error == NULL) {
			assert_true((cases[i].version == NULL) == (ev.client_version == NULL));
			if (ev.client_version)
				assert_string_equal(ev.client_version, cases[i].version);
			if (ev.platform)
				assert_string_equal(ev.platform, cases[i].platform);
			assert_int_equal(ev.at, cases[i].at ? cases[i].at : 7);
		}
	}
	login_line_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_once_per_period, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_detail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_suppressed_late_segment, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_suppressed_agrees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_several_campaigns_and_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_logins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logins_batched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_taken_remembered_and_forgotten, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tuned_streams_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_shared_by_day, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_per_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_plan, setup, teardown),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_json_string),
		cmocka_unit_test(test_event_lines),
		cmocka_unit_test_setup_teardown(test_bad_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_marks, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
