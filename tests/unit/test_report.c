/* test_report.c — support and reporting: the writers (CSV, JSON, HTML, table cells, times), each
 * person's state from their facts, local days across clock changes, redaction, and user, who,
 * report and forget against a real SQLite store filled through the store API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "schedule.h"
#include "store.h"
#include "store_report.h"
#include "util.h"

static int64_t at(const char *instant)
{
	int64_t t = 0;
	struct err e = {0};

	if (schedule_parse_instant(instant, &t, &e) != 0)
		fail_msg("%s", e.msg);
	return t;
}

/* ---- the writers ---------------------------------------------------------------------------- */

static void test_time_utc(void **state)
{
	char b[32];

	(void)state;
	report_time_utc(at("2003-08-18T16:00:05Z"), b, sizeof b);
	assert_string_equal(b, "2003-08-18T16:00:05Z");
	report_time_utc(0, b, sizeof b);
	assert_string_equal(b, "");
	report_time_utc(at("1999-12-31T23:59:59Z"), b, 11);
	assert_string_equal(b, "1999-12-31");
}

static void test_csv_fields(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	report_csv_field(&b, "plain");
	buf_putc(&b, '|');
	report_csv_field(&b, "a,b");
	buf_putc(&b, '|');
	report_csv_field(&b, "say \"hi\"");
	buf_putc(&b, '|');
	report_csv_field(&b, "two\r\nlines");
	buf_putc(&b, '|');
	report_csv_field(&b, NULL);
	assert_string_equal(b.data, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"|");
	buf_free(&b);
}

static void test_json_strings(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	report_json_string(&b, "q\"b\\s/\n\t\x01 J\xc3\xbcrgen \xe5\xb1\xb1");
	buf_putc(&b, ' ');
	report_json_string(&b, NULL);
	buf_putc(&b, ' ');
	report_json_string(&b, "bad \xff\xc3 end"); /* not UTF-8: each byte becomes U+FFFD */
	buf_putc(&b, ' ');
	report_json_string(&b, "\xed\xa0\x80"); /* a surrogate is not UTF-8 either */
	assert_string_equal(b.data, "\"q\\\"b\\\\s/\\n\\t\\u0001 J\xc3\xbcrgen \xe5\xb1\xb1\" null"
				    " \"bad \\ufffd\\ufffd end\" \"\\ufffd\\ufffd\\ufffd\"");
	buf_free(&b);
}

static void test_html_text(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	report_html_text(&b, "<b>\"Tom\" & 'Jerry'</b>");
	assert_string_equal(b.data, "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;");
	buf_free(&b);
}

static void test_cells(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	report_cell(&b, "abc", 5, false);
	buf_putc(&b, '|');
	report_cell(&b, "42", 5, true);
	buf_putc(&b, '|');
	report_cell(&b, "abcdefgh", 5, false);
	buf_putc(&b, '|');
	report_cell(&b, "J\xc3\xbcrgen M", 6, false); /* cut by code points, not bytes */
	buf_putc(&b, '|');
	report_cell(&b, "\xc3\xa9t\xc3\xa9", 4, false);
	buf_putc(&b, '|');
	report_cell(&b, NULL, 2, false);
	assert_string_equal(b.data, "abc  |   42|abcd~|J\xc3\xbcrge~|\xc3\xa9t\xc3\xa9 |  ");
	buf_free(&b);
}

/* ---- people from facts ---------------------------------------------------------------------- */

/* People handed out by the builder, with copies of their strings (valid during the call). */
struct collected {
	struct report_person p[4];
	char user[4][32], state[4][32];
	int n;
};

static int collect(void *ud, const struct report_person *p)
{
	struct collected *c = ud;

	assert_true(c->n < 4);
	c->p[c->n] = *p;
	snprintf(c->user[c->n], sizeof c->user[0], "%s", p->user_id);
	snprintf(c->state[c->n], sizeof c->state[0], "%s", p->state);
	c->p[c->n].user_id = c->user[c->n];
	c->p[c->n].state = c->state[c->n];
	c->p[c->n].email = c->p[c->n].segment = NULL;
	c->n++;
	return 0;
}

static struct store_fact fact(int64_t rid, const char *uid, int64_t did, const char *kind,
			      const char *st, const char *reason, int64_t sent, int64_t upd)
{
	struct store_fact f = {0};

	f.recipient_id = rid, f.user_id = uid, f.email = "x@example.test", f.segment = "seg";
	f.state = "pending", f.segment_id = 1, f.created_at = 100;
	f.delivery_id = did, f.kind = kind, f.delivery_state = st, f.reason = reason;
	f.sent_at = sent, f.updated_at = upd;
	return f;
}

static void test_people_from_facts(void **state)
{
	struct report_builder b;
	struct collected c = {0};
	struct store_fact f[5];

	(void)state;
	f[0] = fact(1, "a", 10, "initial", "bounced", "hard", 1000, 1500);
	f[1] = fact(1, "a", 12, "final", "deferred", NULL, 0, 3000);
	f[2] = fact(1, "a", 11, "reminder", "sent", NULL, 2000, 2000);
	f[3] = fact(2, "b", 0, NULL, NULL, NULL, 0, 0);
	f[3].reminders = 2, f[3].first_reminder_at = 500, f[3].last_reminder_at = 4000;
	f[3].completed_at = 4000, f[3].state = "completed";
	f[4] = fact(3, "c", 20, "initial", "failed", "expired", 0, 6000);
	f[4].suppressed = "complaint", f[4].suppressed_at = 700;
	report_builder_init(&b, collect, &c);
	for (int i = 0; i < 5; i++)
		assert_int_equal(report_person_feed(&b, &f[i]), 0);
	assert_int_equal(report_person_flush(&b), 0);
	report_builder_free(&b);
	assert_int_equal(c.n, 3);

	const struct report_person *a = &c.p[0], *bp = &c.p[1], *cp = &c.p[2];
	assert_string_equal(a->user_id, "a");
	assert_int_equal(a->emails, 2);
	assert_int_equal(a->delivered, 1);
	assert_int_equal(a->first_email_at, 1000);
	assert_int_equal(a->last_email_at, 2000);
	assert_int_equal(a->first_told_at, 2000);
	assert_int_equal(a->bounced_at, 1500);
	assert_string_equal(a->bounce, "hard");
	assert_int_equal(a->deferred_at, 3000);
	assert_string_equal(a->last_kind, "final"); /* the highest delivery id, not the last fact */
	assert_string_equal(a->last_result, "deferred");
	assert_int_equal(a->last_activity, 3000);
	assert_true(report_person_in(a, REPORT_NOTIFIED));
	assert_true(report_person_in(a, REPORT_BOUNCED));
	assert_true(report_person_in(a, REPORT_DEFERRED));
	assert_true(report_person_in(a, REPORT_PENDING));
	assert_false(report_person_in(a, REPORT_REMINDED));
	assert_false(report_person_in(a, REPORT_SUPPRESSED));
	assert_int_equal(report_person_when(a, REPORT_NOTIFIED), 2000);

	assert_int_equal(bp->emails, 0);
	assert_null(bp->last_result);
	assert_true(report_person_in(bp, REPORT_NOTIFIED)); /* a login reminder tells too */
	assert_true(report_person_in(bp, REPORT_COMPLETED));
	assert_false(report_person_in(bp, REPORT_PENDING));
	assert_int_equal(bp->first_told_at, 500);
	assert_int_equal(report_person_when(bp, REPORT_REMINDED), 4000);

	assert_true(report_person_in(cp, REPORT_NOT_NOTIFIED));
	assert_false(report_person_in(cp, REPORT_BOUNCED)); /* expired is not a bounce */
	assert_string_equal(cp->suppressed, "complaint");
	assert_int_equal(report_person_when(cp, REPORT_SUPPRESSED), 700);

	struct report_counts n = {0};
	for (int i = 0; i < 3; i++)
		report_counts_add(&n, &c.p[i]);
	assert_int_equal(n.affected, 3);
	assert_int_equal(n.emailed, 1);
	assert_int_equal(n.delivered, 1);
	assert_int_equal(n.reminded, 1);
	assert_int_equal(n.completed, 1);
	assert_int_equal(n.bounced, 1);
	assert_int_equal(n.suppressed, 1);
	assert_int_equal(n.pending, 2);
}

static void test_state_names(void **state)
{
	enum report_state s;

	(void)state;
	assert_true(report_state_parse("not-notified", &s));
	assert_int_equal(s, REPORT_NOT_NOTIFIED);
	assert_true(report_state_parse("suppressed", &s));
	assert_int_equal(s, REPORT_SUPPRESSED);
	assert_false(report_state_parse("any", &s));
	assert_false(report_state_parse("Notified", &s));
}

static void test_who_rows(void **state)
{
	struct report_person p = {0};
	struct buf b;

	(void)state;
	p.user_id = "u,1", p.email = "a@b.test", p.segment = "msn-windows", p.state = "pending";
	p.emails = 1, p.first_email_at = p.last_email_at = at("2003-08-18T16:00:00Z");
	p.last_kind = "initial", p.last_result = "bounced", p.bounce = "hard";
	p.suppressed = "hard-bounce";
	buf_init(&b);
	report_who_header(&b, REPORT_CSV);
	report_who_row(&b, REPORT_CSV, &p, "America/Los_Angeles");
	report_who_row(&b, REPORT_JSON, &p, "America/Los_Angeles");
	report_who_row(&b, REPORT_TABLE, &p, "America/Los_Angeles");
	assert_string_equal(
		b.data,
		"user_id,email,segment,state,emails,first_email,last_email,last_kind,last_result,"
		"bounce,reminders,last_reminder,completed,suppressed\r\n"
		"\"u,1\",a@b.test,msn-windows,pending,1,2003-08-18T16:00:00Z,2003-08-18T16:00:00Z,"
		"initial,bounced,hard,0,,,hard-bounce\r\n"
		"{\"user_id\":\"u,1\",\"email\":\"a@b.test\",\"segment\":\"msn-windows\",\"state\":"
		"\"pending\",\"emails\":1,\"first_email\":\"2003-08-18T16:00:00Z\",\"last_email\":"
		"\"2003-08-18T16:00:00Z\",\"last_kind\":\"initial\",\"last_result\":\"bounced\","
		"\"bounce\":\"hard\",\"reminders\":0,\"last_reminder\":null,\"completed\":null,"
		"\"suppressed\":\"hard-bounce\"}\n"
		"u,1            a@b.test                           msn-windows       pending        1"
		" 2003-08-18 09:00 bounced     hard           0 -                hard-bounce\n");
	buf_free(&b);
}

/* ---- days ------------------------------------------------------------------------------------ */

static void test_days_across_clock_changes(void **state)
{
	struct report r = {0};
	struct err e = {0};

	(void)state;
	r.timezone = "America/Los_Angeles";
	r.announce_at = at("2003-10-25T16:00:00Z"); /* Saturday 09:00 PDT */
	r.now = at("2003-10-27T20:00:00Z");
	r.cutoff_at = at("2003-11-01T07:00:00Z");
	assert_int_equal(report_days_init(&r, &e), 0);
	assert_int_equal(r.n_days, 3);
	assert_int_equal(r.chart_days, 7); /* to the cutoff's day, 31 October (PST) */
	assert_string_equal(r.days[0].date, "2003-10-25");
	assert_int_equal(r.days[0].start, at("2003-10-25T07:00:00Z"));
	assert_int_equal(r.days[1].start, at("2003-10-26T07:00:00Z")); /* 25 hours long */
	assert_int_equal(r.days[2].start, at("2003-10-27T08:00:00Z"));
	assert_int_equal(report_day_index(&r, at("2003-10-27T07:30:00Z")), 1);
	assert_int_equal(report_day_index(&r, at("2003-10-27T08:00:00Z")), 2);
	assert_int_equal(report_day_index(&r, at("2003-10-25T06:59:59Z")), 3); /* before */
	assert_int_equal(report_day_index(&r, at("2003-10-28T08:00:00Z")), 3); /* after today */
	free(r.days);

	/* São Paulo's clocks jumped from 00:00 to 01:00 on 19 October 2003: no midnight. */
	memset(&r, 0, sizeof r);
	r.timezone = "America/Sao_Paulo";
	r.announce_at = at("2003-10-18T12:00:00Z");
	r.now = r.cutoff_at = at("2003-10-20T12:00:00Z");
	assert_int_equal(report_days_init(&r, &e), 0);
	assert_int_equal(r.n_days, 3);
	assert_int_equal(r.days[1].start, at("2003-10-19T03:00:00Z"));
	assert_int_equal(r.days[2].start, at("2003-10-20T02:00:00Z"));
	free(r.days);

	/* Before the announcement there are no days yet. */
	memset(&r, 0, sizeof r);
	r.timezone = "America/Los_Angeles";
	r.announce_at = at("2003-08-18T16:00:00Z");
	r.now = at("2003-08-10T00:00:00Z");
	r.cutoff_at = at("2003-10-15T07:00:00Z");
	assert_int_equal(report_days_init(&r, &e), 0);
	assert_int_equal(r.n_days, 0);
	assert_int_equal(report_day_index(&r, at("2003-08-18T16:00:00Z")), 0);
	free(r.days);

	r.timezone = "Mars/Olympus_Mons";
	assert_int_not_equal(report_days_init(&r, &e), 0);
	assert_int_equal(e.code, ERR_DATA);
}

/* ---- redaction -------------------------------------------------------------------------------- */

static void test_redact(void **state)
{
	const char *plain = "250 2.0.0 Ok: queued as 4ABC";
	char *r;

	(void)state;
	assert_ptr_equal(report_redact(plain, "a@b.test"), plain);
	r = report_redact("550 5.1.1 <Jo@B.Test>: no; jo@b.test again", "jo@b.test");
	assert_string_equal(r, "550 5.1.1 <[forgotten]>: no; [forgotten] again");
	free(r);
	assert_ptr_equal(report_redact(plain, NULL), plain);
}

static void test_scrub_detail(void **state)
{
	char *r;

	(void)state;
	r = report_scrub_detail("{\"source\":\"dsn\",\"address\":\"jo@b.test\",\"status\":\"5.1.1\","
				"\"code\":550,\"diagnostic\":\"550 <jo@b.test> unknown\","
				"\"reason\":\"no such user jo@b.test\",\"nested\":{\"a\":1},"
				"\"class\":\"hard\"}",
				"jo@b.test");
	assert_string_equal(r, "{\"source\":\"dsn\",\"status\":\"5.1.1\",\"code\":550,"
			       "\"reason\":\"no such user [forgotten]\",\"class\":\"hard\"}");
	free(r);
	assert_null(report_scrub_detail("{\"address\":\"x\"}", "x"));
	assert_null(report_scrub_detail("not json", "x"));
	assert_null(report_scrub_detail("[1,2]", "x"));
}

/* ---- against a real store ------------------------------------------------------------------- */

struct fx {
	char dir[64];
	char *db;
	struct store *s;
	struct store_campaign c;
	int64_t seg[2];
	int64_t rid[3];
};

static void must(int rc, const struct err *e)
{
	if (rc != 0)
		fail_msg("%s", e->msg);
}

static void add_recipient(struct fx *f, int i, const char *uid, const char *email,
			  const char *name, int64_t seg)
{
	struct store_recipient r = {0};
	struct err e = {0};

	r.campaign_id = f->c.id, r.user_id = uid, r.email = email, r.name = name;
	r.locale = "de-DE", r.timezone = "Europe/Berlin", r.client = "msn-messenger";
	r.version = "4.6", r.platform = "windows", r.os = "XP";
	r.attrs = "{\"country\":\"DE\"}", r.segment_id = seg, r.digest = 1;
	must(store_recipient_insert(f->s, &r, at("2003-08-17T00:00:00Z"), &f->rid[i], &e), &e);
}

/* Sends the initial e-mail of segment seg at t: each delivery settled with outcome[i]. */
static void send_wave(struct fx *f, int64_t seg, int64_t t, const char *const *outcome)
{
	struct store_claim claims[8];
	struct err e = {0};
	int64_t queued;
	size_t n;
	bool applied;

	must(store_delivery_queue_segment(f->s, f->c.id, seg, "initial", 0, t, t, &queued, &e), &e);
	must(store_delivery_claim(f->s, f->c.id, "run1", t, t + 600, 8, claims, &n, &e), &e);
	for (size_t i = 0; i < n; i++) {
		bool ok = strcmp(outcome[i], "sent") == 0;
		struct store_settlement st = {
			.delivery_id = claims[i].delivery_id, .state = outcome[i],
			.outcome = outcome[i], .relay = "loopback", .code = ok ? 250 : 550,
			.reply = ok ? "2.0.0 Ok: queued as 1A2B" :
				      "5.1.1 <jo@b.test>: Recipient address rejected",
			.message_id = ok ? "20030818160000.abc@msn.example.test" : NULL,
			.reason = ok ? NULL : "hard", .attempted = true};
		must(store_delivery_settle(f->s, "run1", t, &st, &applied, &e), &e);
		assert_true(applied);
	}
}

static int setup_store(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	struct store_segment segs[2] = {{0, "old", 0, "upgrade", 0, "5.0"},
					{0, "gone", 1, "gone", 0, NULL}};
	struct err e = {0};
	static const char *const wave[] = {"sent", "failed", "sent"};

	snprintf(f->dir, sizeof f->dir, "/tmp/test_report.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = xasprintf("%s/t.db", f->dir);
	must(store_open(&f->s, f->db, STORE_CREATE | STORE_MIGRATE, &e), &e);
	f->c = (struct store_campaign){0, "t", "Test upgrade", "active", "America/Los_Angeles",
				       at("2003-08-18T16:00:00Z"), at("2003-09-18T07:00:00Z"),
				       at("2003-10-15T07:00:00Z"), "x", "t.cfg", "tpl", "d",
				       0, 0, 0};
	must(store_campaign_put(f->s, &f->c, 0, &e), &e);
	segs[0].send_at = segs[1].send_at = f->c.announce_at;
	must(store_segments_put(f->s, f->c.id, segs, 2, &e), &e);
	f->seg[0] = segs[0].id, f->seg[1] = segs[1].id;
	add_recipient(f, 0, "u1", "u1@b.test", "One", f->seg[0]);
	add_recipient(f, 1, "u2", "jo@b.test", "Jo Forget", f->seg[0]);
	add_recipient(f, 2, "u3", "u3@B.test", "Three", f->seg[1]);
	send_wave(f, f->seg[0], at("2003-08-18T16:00:00Z"), wave);
	send_wave(f, f->seg[1], at("2003-08-18T16:00:00Z"), wave + 2);
	must(store_suppress(f->s, "jo@b.test", "hard-bounce", f->c.id,
			    "{\"source\":\"smtp\",\"address\":\"jo@b.test\"}",
			    at("2003-08-18T16:00:00Z"), &e), &e);
	must(store_event_add(f->s, f->c.id, f->rid[1], at("2003-08-18T16:00:00Z"), "bounce",
			     "{\"source\":\"smtp\",\"code\":550,\"class\":\"hard\","
			     "\"diagnostic\":\"<jo@b.test> rejected\"}", &e), &e);
	*state = f;
	return 0;
}

static int remove_file(const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);

	unlink(p);
	free(p);
	return 0;
}

static int teardown_store(void **state)
{
	struct fx *f = *state;

	store_close(f->s);
	remove_file(f->dir, "t.db"), remove_file(f->dir, "t.db-wal");
	remove_file(f->dir, "t.db-shm");
	rmdir(f->dir);
	free(f->db);
	free(f);
	return 0;
}

static void test_store_report(void **state)
{
	struct fx *f = *state;
	struct report r;
	struct err e = {0};

	must(report_build(&r, f->s, &f->c, at("2003-08-20T12:00:00Z"), &e), &e);
	assert_int_equal(r.total.affected, 3);
	assert_int_equal(r.total.emailed, 2);
	assert_int_equal(r.total.delivered, 2);
	assert_int_equal(r.total.bounced, 1);
	assert_int_equal(r.total.suppressed, 1);
	assert_int_equal(r.total.pending, 3);
	assert_int_equal(r.n_segments, 2);
	assert_string_equal(r.segments[1].name, "gone");
	assert_null(r.segments[1].target_version);
	assert_int_equal(r.segments[0].c.affected, 2);
	assert_int_equal(r.n_days, 3);
	assert_int_equal(r.days[0].emails, 2);
	assert_int_equal(r.days[0].notified, 2);
	assert_int_equal(r.days[0].bounced, 1);
	assert_int_equal(r.days[2].notified_total, 2);

	struct buf b;
	buf_init(&b);
	report_write_json(&b, &r);
	assert_non_null(strstr(b.data, "\"funnel\":{\"affected\":3,\"emailed\":2,\"delivered\":2,"
				       "\"reminded\":0,\"completed\":0,\"bounced\":1,"
				       "\"suppressed\":1,\"pending\":3}"));
	buf_reset(&b);
	report_write_html(&b, &r);
	assert_non_null(strstr(b.data, "<polyline id=\"series-completed\""));
	assert_non_null(strstr(b.data, "id=\"marker-reminder-start\""));
	assert_null(strstr(b.data, "<script"));
	buf_free(&b);
	report_free(&r);
}

static void test_store_user_and_forget(void **state)
{
	struct fx *f = *state;
	struct report_user u;
	struct report_forget_result res;
	struct err e = {0};
	struct buf b;
	bool forgotten = true;

	assert_int_equal(report_user_load(&u, f->s, "JO@b.test", &e), ERR_NOTFOUND);
	report_user_free(&u); /* the local part is compared as it is */
	err_clear(&e);
	must(report_user_load(&u, f->s, "jo@B.TEST", &e), &e);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.m[0].user_id, "u2");
	assert_string_equal(u.m[0].suppression.reason, "hard-bounce");
	buf_init(&b);
	report_user_write_text(&b, &u);
	assert_non_null(strstr(b.data, "t: u2, Jo Forget <jo@b.test>\n"));
	assert_non_null(strstr(b.data, "failed          initial e-mail via loopback: 550 5.1.1"));
	report_user_free(&u);

	must(store_report_address_forgotten(f->s, "jo@b.test", &forgotten, &e), &e);
	assert_false(forgotten);
	must(report_forget(f->s, "u2", at("2003-09-01T00:00:00Z"), &res, &e), &e);
	assert_int_equal(res.recipients, 1);
	assert_int_equal(res.addresses, 1);
	assert_true(res.scrubbed >= 3); /* the attempt's reply, the delivery's, the event */
	must(store_report_address_forgotten(f->s, "jo@b.test", &forgotten, &e), &e);
	assert_true(forgotten);

	/* Nothing of the person is left: not by user id, not in any text. */
	assert_int_equal(report_user_load(&u, f->s, "u2", &e), ERR_NOTFOUND);
	report_user_free(&u);
	err_clear(&e);
	must(report_user_load(&u, f->s, "jo@b.test", &e), &e);
	assert_int_equal(u.n, 0);
	assert_string_equal(u.suppression.reason, "forgotten");
	assert_string_equal(u.suppression.detail, "{\"previous_reason\":\"hard-bounce\"}");
	report_user_free(&u);
	char *pseudonym = xasprintf("forgotten-%lld", (long long)f->rid[1]);
	must(report_user_load(&u, f->s, pseudonym, &e), &e);
	free(pseudonym);
	assert_int_equal(u.n, 1);
	assert_null(u.m[0].email);
	assert_null(u.m[0].name);
	assert_null(u.m[0].attrs);
	buf_reset(&b);
	report_user_write_json(&b, &u);
	assert_null(strstr(b.data, "jo@b.test"));
	assert_null(strstr(b.data, "Jo Forget"));
	assert_non_null(strstr(b.data, "<[forgotten]>: Recipient address rejected"));
	assert_non_null(strstr(b.data, "\"kind\":\"forgotten\""));
	report_user_free(&u);
	buf_free(&b);

	/* The counts stay. */
	struct report r;
	must(report_build(&r, f->s, &f->c, at("2003-09-02T00:00:00Z"), &e), &e);
	assert_int_equal(r.total.affected, 3);
	assert_int_equal(r.total.bounced, 1);
	assert_int_equal(r.total.suppressed, 1);
	report_free(&r);

	/* Forgetting again changes nothing; an unknown user id is not found. */
	must(report_forget(f->s, "jo@b.test", at("2003-09-03T00:00:00Z"), &res, &e), &e);
	assert_int_equal(res.recipients, 0);
	assert_int_equal(report_forget(f->s, "nobody", 0, &res, &e), ERR_NOTFOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_utc),
		cmocka_unit_test(test_csv_fields),
		cmocka_unit_test(test_json_strings),
		cmocka_unit_test(test_html_text),
		cmocka_unit_test(test_cells),
		cmocka_unit_test(test_people_from_facts),
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_who_rows),
		cmocka_unit_test(test_days_across_clock_changes),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_scrub_detail),
		cmocka_unit_test_setup_teardown(test_store_report, setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_store_user_and_forget, setup_store,
						teardown_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
