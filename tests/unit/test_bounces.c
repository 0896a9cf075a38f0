/* test_bounces.c — returned mail against a real SQLite ledger in a scratch folder: the order
 * of attribution, forged VERP tokens, idempotence, the soft threshold on distinct days and
 * its reset, complaints, unsubscribes, quarantine, and a Maildir run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounces.h"
#include "dsn.h"
#include "render.h"
#include "store.h"
#include "util.h"
#include "verp.h"

#define DAY 86400
#define T0 1061222400 /* 2003-08-18 16:00Z, the worked example's first wave */
#define SECRET "0123456789abcdef0123456789abcdef"
#define DOMAIN "bounces.example.test"

/* One scratch database with a campaign, a segment and four recipients. */
struct fx {
	char dir[64];
	char *db_path;
	struct store *s;
	sqlite3 *q; /* a second connection, to look at what the store wrote */
	struct config cfg;
	int64_t cid, seg;
	int64_t rid[4];
	char *email[4];
};

static void must(int rc, const struct err *e)
{
	if (rc != 0)
		fail_msg("unexpected error %d: %s", rc, e->msg);
}

static int64_t q_int(struct fx *f, const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	va_list ap;
	char *sql;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (sqlite3_prepare_v2(f->q, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(f->q));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return v;
}

static void add_campaign(struct fx *f, const char *name)
{
	struct store_campaign c = {0};
	struct store_segment g = {0, "all", 0, "upgrade", T0, "5.0"};
	struct err e = {0};

	c.name = (char *)name, c.title = (char *)"t", c.timezone = (char *)"UTC";
	c.announce_at = T0, c.reminder_start_at = T0 + 30 * DAY, c.cutoff_at = T0 + 60 * DAY;
	c.definition = c.source_path = c.templates_dir = c.digest = (char *)"x";
	must(store_campaign_put(f->s, &c, T0, &e), &e);
	must(store_segments_put(f->s, c.id, &g, 1, &e), &e);
	f->cid = c.id, f->seg = g.id;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	struct err e = {0};

	snprintf(f->dir, sizeof f->dir, "/tmp/cutoff-test-bounces.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db_path = xasprintf("%s/cutoff.db", f->dir);
	must(store_open(&f->s, f->db_path, STORE_CREATE | STORE_MIGRATE, &e), &e);
	assert_int_equal(sqlite3_open(f->db_path, &f->q), SQLITE_OK);
	f->cfg.bounces.secret = (unsigned char *)SECRET;
	f->cfg.bounces.secret_len = strlen(SECRET);
	f->cfg.bounces.return_path_domain = (char *)DOMAIN;
	f->cfg.bounces.soft_threshold = 3;
	f->cfg.bounces.quarantine = xasprintf("%s/quarantine", f->dir);
	add_campaign(f, "messenger-upgrade");
	for (int i = 0; i < 4; i++) {
		char user[16];
		struct store_recipient r = {0};
		snprintf(user, sizeof user, "u%d", i);
		f->email[i] = xasprintf("User%d@users.example.test", i);
		r.campaign_id = f->cid, r.user_id = user, r.email = f->email[i];
		r.segment_id = f->seg, r.state = "pending";
		must(store_recipient_insert(f->s, &r, T0, &f->rid[i], &e), &e);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	sqlite3_close(f->q);
	store_close(f->s);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	for (int i = 0; i < 4; i++)
		free(f->email[i]);
	free(cmd), free(f->db_path), free(f->cfg.bounces.quarantine), free(f);
	return 0;
}

/* Queues (kind, occurrence) for everyone, sends it at `at`: every delivery settles 'sent'
 * with Message-ID m-DELIVERY@msn.example.test. */
static void send_wave(struct fx *f, const char *kind, int64_t occurrence, int64_t at)
{
	struct store_claim claims[16];
	struct store_settlement st = {0};
	struct err e = {0};
	int64_t queued;
	size_t n;
	bool applied;

	must(store_delivery_queue_segment(f->s, f->cid, f->seg, kind, occurrence, at, at, &queued,
					  &e), &e);
	must(store_delivery_claim(f->s, f->cid, "test", at, at + 600, 16, claims, &n, &e), &e);
	for (size_t i = 0; i < n; i++) {
		char *mid = xasprintf("m-%lld@msn.example.test", (long long)claims[i].delivery_id);
		st = (struct store_settlement){.delivery_id = claims[i].delivery_id,
					       .state = "sent", .outcome = "sent", .relay = "r",
					       .code = 250, .message_id = mid, .attempted = true};
		must(store_delivery_settle(f->s, "test", at, &st, &applied, &e), &e);
		free(mid);
	}
}

/* The delivery of recipient i for (kind, occurrence). */
static int64_t delivery_of(struct fx *f, int i, const char *kind, int64_t occurrence)
{
	return q_int(f, "SELECT id FROM delivery WHERE recipient_id = %lld AND kind = '%q'"
		     " AND occurrence = %lld", (long long)f->rid[i], kind, (long long)occurrence);
}

static char *verp_of(struct fx *f, int i, int64_t delivery_id)
{
	struct verp_ids ids = {f->cid, f->rid[i], delivery_id};
	char out[VERP_ADDRESS_SIZE];
	struct err e = {0};

	must(verp_address((const unsigned char *)SECRET, strlen(SECRET), &ids, DOMAIN, out,
			  sizeof out, &e), &e);
	return xstrdup(out);
}

/* What a DSN may quote of the returned message. */
struct quoted {
	const char *message_id;   /* without <> */
	const char *delivery;     /* X-Cutoff-Delivery */
	const char *campaign;     /* X-Cutoff-Campaign */
	const char *recipient;    /* X-Cutoff-Recipient */
	const char *return_path;  /* Return-Path of the returned message */
};

/* An RFC 3464 report delivered to `to` about final_rcpt. */
static char *dsn(const char *to, const char *final_rcpt, const char *action, const char *status,
		 const char *diag, const struct quoted *q)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "Return-Path: <>\nDelivered-To: %s\nFrom: MAILER-DAEMON@mx.example.test"
		   " (Mail Delivery System)\nTo: %s\nSubject: Undelivered Mail Returned to Sender\n"
		   "Date: Mon, 18 Aug 2003 16:05:00 +0000\nMIME-Version: 1.0\nContent-Type:"
		   " multipart/report; report-type=delivery-status; boundary=\"BB\"\n\n--BB\n"
		   "Content-Type: text/plain\n\nThis is the mail system at host mx.example.test.\n"
		   "Your message could not be delivered to one or more recipients.\n\n"
		   "<%s>: %s\n\n--BB\nContent-Type: message/delivery-status\n\n"
		   "Reporting-MTA: dns; mx.example.test\n\nFinal-Recipient: rfc822; %s\n"
		   "Action: %s\nStatus: %s\nDiagnostic-Code: smtp; %s\n\n--BB\n"
		   "Content-Type: text/rfc822-headers\n\n",
		   to, to, final_rcpt, diag, final_rcpt, action, status, diag);
	if (q != NULL && q->return_path)
		buf_printf(&b, "Return-Path: <%s>\n", q->return_path);
	buf_puts(&b, "From: MSN Messenger Team <messenger-upgrade@msn.example.test>\n"
		     "Subject: Your MSN Messenger needs an upgrade\n");
	if (q != NULL && q->message_id)
		buf_printf(&b, "Message-ID: <%s>\n", q->message_id);
	if (q != NULL && q->campaign)
		buf_printf(&b, "X-Cutoff-Campaign: %s\n", q->campaign);
	if (q != NULL && q->recipient)
		buf_printf(&b, "X-Cutoff-Recipient: %s\n", q->recipient);
	if (q != NULL && q->delivery)
		buf_printf(&b, "X-Cutoff-Delivery: %s\n", q->delivery);
	buf_puts(&b, "\n--BB--\n");
	return buf_steal(&b);
}

static char *hard_dsn(const char *to, const char *rcpt, const struct quoted *q)
{
	return dsn(to, rcpt, "failed", "5.1.1", "550 5.1.1 <x>: Recipient address rejected: User"
		   " unknown in virtual mailbox table", q);
}

static char *soft_dsn(const char *to, const char *rcpt, const struct quoted *q)
{
	return dsn(to, rcpt, "failed", "5.2.2", "552 5.2.2 Mailbox full: quota exceeded", q);
}

/* Processes msg at time now; returns the result (and fails the test on an error). */
static struct bounces_result process(struct fx *f, const char *msg, int64_t now, bool dry_run)
{
	struct bounces_options o = {.now = now, .dry_run = dry_run};
	struct bounces_summary sum = {0};
	struct bounces_result res;
	struct err e = {0};

	must(bounces_process_buffer(f->s, &f->cfg, msg, strlen(msg), "test", 0, NULL, NULL, &o,
				    &res, &sum, &e), &e);
	return res;
}

static bool suppressed(struct fx *f, int i, const char *reason)
{
	return q_int(f, "SELECT count(*) FROM suppression WHERE email = '%q' AND reason = '%q'",
		     f->email[i], reason) == 1;
}

/* ---- attribution ------------------------------------------------------------------- */

static void test_verp_hard_bounce_suppresses(void **state)
{
	struct fx *f = *state;
	int64_t d;
	char *to, *msg;
	struct bounces_result r;

	send_wave(f, "initial", 0, T0);
	d = delivery_of(f, 1, "initial", 0);
	to = verp_of(f, 1, d);
	msg = hard_dsn(to, "user1@users.example.test", NULL);
	r = process(f, msg, T0 + 3600, false);
	assert_int_equal(r.by, BOUNCES_BY_VERP);
	assert_int_equal(r.kind, DSN_KIND_BOUNCE);
	assert_int_equal(r.action, BOUNCES_SUPPRESS);
	assert_int_equal(r.delivery_id, d);
	assert_int_equal(q_int(f, "SELECT state = 'bounced' AND reason = 'hard' FROM delivery"
			       " WHERE id = %lld", (long long)d), 1);
	assert_true(suppressed(f, 1, "hard-bounce"));
	assert_int_equal(q_int(f, "SELECT count(*) FROM suppression"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'bounce' AND"
			       " recipient_id = %lld", (long long)f->rid[1]), 1);
	free(to), free(msg);
}

/* A reply in Latin-1: the bounce is acted on, its words are kept in the event (stray bytes as
 * U+FFFD, they used to be left out), and the dry run's JSON line is valid and keeps them. */
static void test_not_utf8_diagnostic_is_kept(void **state)
{
	struct fx *f = *state;
	struct bounces_options o = {.now = T0 + 3600, .dry_run = true};
	struct bounces_summary sum = {0};
	struct bounces_result r;
	struct err e = {0};
	char *to, *msg, *line = NULL;
	size_t line_len = 0;
	json_t *j, *rcpt;
	FILE *out;
	int64_t d;

	send_wave(f, "initial", 0, T0);
	d = delivery_of(f, 1, "initial", 0);
	to = verp_of(f, 1, d);
	msg = dsn(to, "user1@users.example.test", "failed", "5.1.1",
		  "550 5.1.1 Empf\xe4nger unbekannt: Postfach existiert nicht", NULL);

	/* The dry run's line, from the same message. */
	assert_non_null(out = open_memstream(&line, &line_len));
	o.json = out;
	must(bounces_process_buffer(f->s, &f->cfg, msg, strlen(msg), "caf\xe9.eml", 0, NULL, NULL,
				    &o, &r, &sum, &e), &e);
	fclose(out);
	assert_non_null(j = json_loads(line, 0, NULL));
	assert_string_equal(json_string_value(json_object_get(j, "file")), "caf\xef\xbf\xbd.eml");
	rcpt = json_array_get(json_object_get(j, "recipients"), 0);
	assert_string_equal(json_string_value(json_object_get(rcpt, "class")), "hard");
	assert_string_equal(json_string_value(json_object_get(rcpt, "status")), "5.1.1");
	json_decref(j);
	free(line);

	r = process(f, msg, T0 + 3600, false);
	assert_int_equal(r.by, BOUNCES_BY_VERP);
	assert_int_equal(r.action, BOUNCES_SUPPRESS);
	assert_true(suppressed(f, 1, "hard-bounce"));
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'bounce' AND"
			       " json_extract(detail, '$.diagnostic') = '550 5.1.1 Empf'"
			       " || char(65533) || 'nger unbekannt: Postfach existiert nicht'"), 1);
	free(to), free(msg);
}

/* A forged token never attributes: the next clue does, or the message is quarantined. */
static void test_forged_verp_is_not_trusted(void **state)
{
	struct fx *f = *state;
	int64_t d0, d2;
	char *to, *msg, *reason;
	struct bounces_result r;
	size_t at;

	send_wave(f, "initial", 0, T0);
	d0 = delivery_of(f, 0, "initial", 0), d2 = delivery_of(f, 2, "initial", 0);
	to = verp_of(f, 0, d0);
	at = strlen("bounces+");
	to[at] = to[at] == '1' ? '2' : '1'; /* another delivery id, the old signature */
	msg = hard_dsn(to, "user2@users.example.test", NULL);
	r = process(f, msg, T0 + 3600, false);
	assert_int_equal(r.by, BOUNCES_BY_RECIPIENT);
	assert_int_equal(r.delivery_id, d2);
	assert_false(suppressed(f, 0, "hard-bounce"));
	assert_true(suppressed(f, 2, "hard-bounce"));
	free(msg);

	/* Nothing else to go by: quarantined, saying the token was forged. */
	msg = hard_dsn(to, "nobody@elsewhere.example", NULL);
	r = process(f, msg, T0 + 3600, false);
	assert_int_equal(r.action, BOUNCES_QUARANTINE);
	assert_int_equal(r.by, BOUNCES_BY_NONE);
	assert_non_null(strstr(r.reason, "forged or mangled"));
	assert_false(suppressed(f, 0, "hard-bounce"));
	reason = xasprintf("%s/quarantine/message-%.16s.reason", f->dir, r.sha256);
	assert_int_equal(access(reason, R_OK), 0);
	free(reason), free(to), free(msg);
}

static void test_attribution_order(void **state)
{
	struct fx *f = *state;
	int64_t d[4];
	char *to, *msg, dv[24], *in_text, *upper;
	struct quoted q = {0};
	struct bounces_result r;

	send_wave(f, "initial", 0, T0);
	for (int i = 0; i < 4; i++)
		d[i] = delivery_of(f, i, "initial", 0);
	to = verp_of(f, 0, d[0]);
	q.message_id = in_text = xasprintf("m-%lld@msn.example.test", (long long)d[1]);
	snprintf(dv, sizeof dv, "%lld", (long long)d[2]);
	q.delivery = dv, q.campaign = "messenger-upgrade";

	/* Every clue at once, each naming someone else: the VERP token wins. */
	msg = hard_dsn(to, "user3@users.example.test", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_VERP), assert_int_equal(r.delivery_id, d[0]);
	free(msg);
	/* Then the returned Message-ID, */
	msg = hard_dsn("bounces@" DOMAIN, "user3@users.example.test", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_MESSAGE_ID), assert_int_equal(r.delivery_id, d[1]);
	free(msg);
	/* then the X-Cutoff headers, */
	q.message_id = "unknown@elsewhere.example";
	msg = hard_dsn("bounces@" DOMAIN, "user3@users.example.test", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_HEADER), assert_int_equal(r.delivery_id, d[2]);
	free(msg);
	/* (campaign + recipient when there is no delivery header), */
	q.delivery = NULL, q.recipient = "u1";
	msg = hard_dsn("bounces@" DOMAIN, "user3@users.example.test", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_HEADER), assert_int_equal(r.delivery_id, d[1]);
	free(msg);
	/* then the Final-Recipient, case ignored, */
	msg = hard_dsn("bounces@" DOMAIN, "USER3@users.example.test", NULL);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_RECIPIENT), assert_int_equal(r.delivery_id, d[3]);
	free(msg);
	/* then a signed token in the text (the quoted Return-Path). */
	memset(&q, 0, sizeof q);
	q.return_path = to;
	msg = hard_dsn("bounces@" DOMAIN, "someone@elsewhere.example", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_TEXT), assert_int_equal(r.delivery_id, d[0]);
	free(msg);
	/* The token upper-cased by a mail system, after other '+' signs, is found too. */
	upper = xasprintf("a+b+c@elsewhere.example>, <%s", to);
	for (char *c = upper; *c; c++)
		*c = *c >= 'a' && *c <= 'z' ? (char)(*c - 32) : *c;
	q.return_path = upper;
	msg = hard_dsn("bounces@" DOMAIN, "someone@elsewhere.example", &q);
	r = process(f, msg, T0 + 60, true);
	assert_int_equal(r.by, BOUNCES_BY_TEXT), assert_int_equal(r.delivery_id, d[0]);
	free(msg), free(upper);
	/* A dry run changed nothing. */
	assert_int_equal(q_int(f, "SELECT count(*) FROM suppression"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM delivery WHERE state <> 'sent'"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM bounce_message"), 0);
	free(to), free(in_text);
}

/* ---- idempotence, soft bounces ------------------------------------------------------ */

static void test_same_message_counts_once(void **state)
{
	struct fx *f = *state;
	char *to, *msg;
	struct bounces_result r;

	send_wave(f, "initial", 0, T0);
	to = verp_of(f, 1, delivery_of(f, 1, "initial", 0));
	msg = soft_dsn(to, "user1@users.example.test", NULL);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.action, BOUNCES_COUNT);
	r = process(f, msg, T0 + 120, false);
	assert_int_equal(r.action, BOUNCES_DUPLICATE);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'soft-bounce'"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM soft_bounce"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM bounce_message"), 1);
	free(msg);
	/* The same bounce in other bytes (another copy) still counts the delivery once. */
	msg = soft_dsn(to, "user1@users.example.test", &(struct quoted){.campaign = "x"});
	r = process(f, msg, T0 + 180, false);
	assert_int_equal(r.action, BOUNCES_DUPLICATE);
	assert_int_equal(q_int(f, "SELECT count(*) FROM soft_bounce"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'soft-bounce'"), 1);
	free(msg), free(to);
}

/* A soft bounce of recipient i's (kind, occ) delivery, processed at now. */
static struct bounces_result soft_bounce_of(struct fx *f, int i, const char *kind, int64_t occ,
					    int64_t now)
{
	char *to = verp_of(f, i, delivery_of(f, i, kind, occ));
	char *msg = soft_dsn(to, "whatever@users.example.test", NULL);
	struct bounces_result r = process(f, msg, now, false);

	free(to), free(msg);
	return r;
}

static void test_soft_threshold_on_distinct_days(void **state)
{
	struct fx *f = *state;
	struct bounces_result r;

	send_wave(f, "initial", 0, T0);
	send_wave(f, "reminder", T0 + 3600, T0 + 3600);   /* the same day */
	send_wave(f, "reminder", T0 + DAY, T0 + DAY);
	send_wave(f, "reminder", T0 + 2 * DAY, T0 + 2 * DAY);
	r = soft_bounce_of(f, 1, "initial", 0, T0 + 3 * DAY);
	assert_int_equal(r.action, BOUNCES_COUNT);
	r = soft_bounce_of(f, 1, "reminder", T0 + 3600, T0 + 3 * DAY);
	assert_int_equal(r.action, BOUNCES_COUNT); /* sent the same day: still one day */
	r = soft_bounce_of(f, 1, "reminder", T0 + DAY, T0 + 3 * DAY);
	assert_int_equal(r.action, BOUNCES_COUNT);
	assert_false(suppressed(f, 1, "soft-bounce"));
	r = soft_bounce_of(f, 1, "reminder", T0 + 2 * DAY, T0 + 3 * DAY);
	assert_int_equal(r.action, BOUNCES_SUPPRESS); /* the third distinct day */
	assert_true(suppressed(f, 1, "soft-bounce"));
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'suppressed'"), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM suppression"), 1);
}

static void test_success_resets_soft_count(void **state)
{
	struct fx *f = *state;
	struct bounces_result r;

	for (int day = 0; day < 4; day++)
		send_wave(f, day ? "reminder" : "initial", day ? T0 + day * DAY : 0,
			  T0 + day * DAY);
	soft_bounce_of(f, 2, "initial", 0, T0 + 5 * DAY);
	soft_bounce_of(f, 2, "reminder", T0 + DAY, T0 + 5 * DAY);
	/* day 2's message got through (no bounce); day 3's bounced: one day since. */
	r = soft_bounce_of(f, 2, "reminder", T0 + 3 * DAY, T0 + 5 * DAY);
	assert_int_equal(r.action, BOUNCES_COUNT);
	assert_false(suppressed(f, 2, "soft-bounce"));
	assert_int_equal(q_int(f, "SELECT count(*) FROM soft_bounce"), 3);
}

/* ---- complaints, unsubscribes, the rest ---------------------------------------------- */

static char *arf(const char *to, const char *message_id)
{
	return xasprintf("From: feedback@isp.example\nTo: %s\nSubject: complaint about message\n"
			 "MIME-Version: 1.0\nContent-Type: multipart/report;"
			 " report-type=feedback-report; boundary=\"AA\"\n\n--AA\n"
			 "Content-Type: text/plain\n\nThis is an email abuse report.\n\n--AA\n"
			 "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
			 "User-Agent: isp/1.0\nVersion: 1\n"
			 "Original-Rcpt-To: user3@users.example.test\n\n--AA\n"
			 "Content-Type: message/rfc822\n\n"
			 "From: messenger-upgrade@msn.example.test\n"
			 "To: user3@users.example.test\nSubject: upgrade\n"
			 "Message-ID: <%s>\n\nbody\n"
			 "\n--AA--\n", to, message_id);
}

static void test_complaint_suppresses(void **state)
{
	struct fx *f = *state;
	int64_t d;
	char *mid, *msg;
	struct bounces_result r;

	send_wave(f, "initial", 0, T0);
	d = delivery_of(f, 3, "initial", 0);
	mid = xasprintf("m-%lld@msn.example.test", (long long)d);
	msg = arf("abuse-desk@msn.example.test", mid);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.kind, DSN_KIND_COMPLAINT);
	assert_int_equal(r.by, BOUNCES_BY_MESSAGE_ID);
	assert_int_equal(r.delivery_id, d);
	assert_true(suppressed(f, 3, "complaint"));
	assert_int_equal(q_int(f, "SELECT state = 'sent' FROM delivery WHERE id = %lld",
			       (long long)d), 1); /* it was delivered: the ledger says so still */
	free(mid), free(msg);
}

static char *unsubscribe_mail(const char *to, const char *from, const char *body)
{
	return xasprintf("From: %s\nTo: %s\nSubject: unsubscribe\nDate: Tue, 19 Aug 2003 10:00:00"
			 " +0000\nMessage-ID: <u1@users.example.test>\n\n%s\n", from, to, body);
}

static void test_unsubscribe_for_the_campaign(void **state)
{
	struct fx *f = *state;
	struct bounces_result r;
	char *to, *msg;
	int64_t queued;
	struct err e = {0};

	send_wave(f, "initial", 0, T0);
	to = verp_of(f, 1, delivery_of(f, 1, "initial", 0));
	must(store_delivery_queue_segment(f->s, f->cid, f->seg, "reminder", T0 + DAY, T0 + DAY,
					  T0, &queued, &e), &e);
	msg = unsubscribe_mail(to, "user1@users.example.test", "");
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.kind, DSN_KIND_UNSUBSCRIBE);
	assert_int_equal(r.by, BOUNCES_BY_VERP);
	assert_int_equal(r.action, BOUNCES_UNSUBSCRIBE);
	assert_false(suppressed(f, 1, "unsubscribe")); /* for this campaign only */
	assert_int_equal(q_int(f, "SELECT state = 'suppressed' AND reason = 'unsubscribe' FROM"
			       " delivery WHERE recipient_id = %lld AND kind = 'reminder'",
			       (long long)f->rid[1]), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM delivery WHERE kind = 'reminder' AND"
			       " state = 'queued'"), 3);
	/* A delivery queued later is stopped at once. */
	must(store_delivery_queue_segment(f->s, f->cid, f->seg, "final", T0 + 9 * DAY, T0 + 9 * DAY,
					  T0 + 2 * DAY, &queued, &e), &e);
	assert_int_equal(q_int(f, "SELECT state = 'suppressed' FROM delivery WHERE recipient_id ="
			       " %lld AND kind = 'final'", (long long)f->rid[1]), 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'unsubscribe'"), 1);
	free(msg);

	/* With bounces.unsubscribe = global, the address is suppressed everywhere. */
	f->cfg.bounces.unsubscribe_global = true;
	free(to);
	to = verp_of(f, 2, delivery_of(f, 2, "initial", 0));
	msg = unsubscribe_mail(to, "user2@users.example.test", "please");
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.action, BOUNCES_SUPPRESS);
	assert_true(suppressed(f, 2, "unsubscribe"));
	free(msg), free(to);
}

static void test_unsubscribe_needs_a_token(void **state)
{
	struct fx *f = *state;
	struct bounces_result r;
	char token[RENDER_TOKEN_LEN + 1], *msg, *body;
	struct err e = {0};

	send_wave(f, "initial", 0, T0);
	/* From the recipient's own address but not to a signed address: not trusted. */
	msg = unsubscribe_mail("bounces@" DOMAIN, "user1@users.example.test", "");
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.action, BOUNCES_QUARANTINE);
	assert_non_null(strstr(r.reason, "without a valid token"));
	free(msg);
	/* A forged one-click link neither. */
	body = xasprintf("https://messenger.example.test/unsubscribe?c=messenger-upgrade&r=%lld"
			 "&t=AAAAAAAAAAAAAAAAAAAAAA", (long long)f->rid[1]);
	msg = unsubscribe_mail("bounces@" DOMAIN, "user1@users.example.test", body);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.action, BOUNCES_QUARANTINE);
	free(msg), free(body);
	/* The real one-click link, quoted in the text, is a valid token. */
	must(render_unsubscribe_token((const unsigned char *)SECRET, strlen(SECRET),
				      "messenger-upgrade", f->rid[1], token, &e), &e);
	body = xasprintf("https://messenger.example.test/unsubscribe?c=messenger-upgrade&amp;r=%lld"
			 "&amp;t=%s", (long long)f->rid[1], token);
	msg = unsubscribe_mail("bounces@" DOMAIN, "user1@users.example.test", body);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.by, BOUNCES_BY_TEXT);
	assert_int_equal(r.action, BOUNCES_UNSUBSCRIBE);
	assert_int_equal(q_int(f, "SELECT count(*) FROM campaign_unsubscribe WHERE recipient_id ="
			       " %lld", (long long)f->rid[1]), 1);
	free(msg), free(body);
}

static void test_delay_and_autoreply_change_nothing(void **state)
{
	struct fx *f = *state;
	struct bounces_result r;
	char *to, *msg;

	send_wave(f, "initial", 0, T0);
	to = verp_of(f, 0, delivery_of(f, 0, "initial", 0));
	msg = dsn(to, "user0@users.example.test", "delayed", "4.4.1",
		  "connect to mx.users.example.test: Connection timed out", NULL);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.kind, DSN_KIND_DELAY);
	assert_int_equal(r.action, BOUNCES_RECORD);
	free(msg);
	msg = xasprintf("From: User 0 <user0@users.example.test>\nTo: %s\nSubject: Out of office\n"
			"Auto-Submitted: auto-replied\n\nI am away until September.\n", to);
	r = process(f, msg, T0 + 60, false);
	assert_int_equal(r.kind, DSN_KIND_AUTOREPLY);
	assert_int_equal(r.by, BOUNCES_BY_VERP);
	assert_int_equal(r.action, BOUNCES_RECORD);
	assert_int_equal(q_int(f, "SELECT count(*) FROM suppression"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM soft_bounce"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM delivery WHERE state <> 'sent'"), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind IN"
			       " ('delay', 'autoreply')"), 2);
	free(msg), free(to);
}

static void test_garbage_is_quarantined(void **state)
{
	struct fx *f = *state;
	static const char garbage[] = "\x01\x02 this is not a mail message at all";
	struct bounces_result r = process(f, garbage, T0, false);
	char *path = xasprintf("%s/quarantine/message-%.16s", f->dir, r.sha256), *reason;
	struct stat st;

	assert_int_equal(r.action, BOUNCES_QUARANTINE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, strlen(garbage));
	reason = xasprintf("%s.reason", path);
	assert_int_equal(access(reason, R_OK), 0);
	assert_int_equal(q_int(f, "SELECT count(*) FROM bounce_message"), 0);
	free(path), free(reason);
}

/* ---- a Maildir run ----------------------------------------------------------------- */

static void put_file(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	free(path);
}

static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_maildir_moves_and_reruns(void **state)
{
	struct fx *f = *state;
	char *md = xasprintf("%s/bounces", f->dir), *newdir = xasprintf("%s/new", md);
	char *cur = xasprintf("%s/cur", md), *to, *msg, *moved, *back;
	struct bounces_options o = {.now = T0 + 60, .jobs = 2};
	struct bounces_summary sum = {0};
	struct err e = {0};

	send_wave(f, "initial", 0, T0);
	assert_int_equal(mkdir(md, 0700), 0), assert_int_equal(mkdir(newdir, 0700), 0);
	to = verp_of(f, 0, delivery_of(f, 0, "initial", 0));
	msg = hard_dsn(to, "user0@users.example.test", NULL);
	put_file(newdir, "1061222460.1.mx", msg);
	put_file(newdir, "1061222460.2.mx", msg); /* a second copy: counted once */
	put_file(newdir, "1061222460.3.mx", "garbage\n");
	must(bounces_process_maildir(f->s, &f->cfg, md, &o, &sum, &e), &e);
	assert_int_equal(sum.messages, 3);
	assert_int_equal(sum.hard, 1);
	assert_int_equal(sum.duplicates, 1);
	assert_int_equal(sum.quarantined, 1);
	assert_int_equal(sum.suppressed, 1);
	assert_int_equal(count_files(newdir), 0);
	assert_int_equal(count_files(cur), 2);
	moved = xasprintf("%s/1061222460.1.mx:2,S", cur);
	assert_int_equal(access(moved, R_OK), 0);
	assert_int_equal(count_files(f->cfg.bounces.quarantine), 2); /* message + .reason */
	/* Put back into new/ and read again: nothing counts twice. */
	back = xasprintf("%s/1061222460.1.mx", newdir);
	assert_int_equal(rename(moved, back), 0);
	memset(&sum, 0, sizeof sum);
	must(bounces_process_maildir(f->s, &f->cfg, md, &o, &sum, &e), &e);
	assert_int_equal(sum.messages, 1), assert_int_equal(sum.duplicates, 1);
	assert_int_equal(q_int(f, "SELECT count(*) FROM event WHERE kind = 'bounce'"), 1);
	assert_int_equal(count_files(cur), 2);
	free(md), free(newdir), free(cur), free(to), free(msg), free(moved), free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_verp_hard_bounce_suppresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_verp_is_not_trusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_utf8_diagnostic_is_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attribution_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_message_counts_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_soft_threshold_on_distinct_days, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_success_resets_soft_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complaint_suppresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_for_the_campaign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_needs_a_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delay_and_autoreply_change_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_garbage_is_quarantined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir_moves_and_reruns, setup, teardown),
	};
	int rc;

	dsn_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	dsn_shutdown();
	return rc;
}
