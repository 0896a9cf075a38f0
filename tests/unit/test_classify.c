/* test_classify.c — focused cases for the bounce classifier and the DSN parser: status,
 * reply code and text rules, provider codes, each kind of report, line endings, mbox edge
 * cases and inputs that must not crash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "classify.h"
#include "dsn.h"
#include "util.h"

/* ---- the classifier ---------------------------------------------------------------- */

static struct classification run(const char *status, int reply, const char *text,
				 enum smtp_stage stage)
{
	struct classify_input in = { status, reply, text, stage, NULL };
	struct classification out;

	classify(&in, &out);
	return out;
}

static void assert_class(const char *status, int reply, const char *text, enum smtp_stage stage,
			 const char *reason, enum bounce_class cls)
{
	struct classification c = run(status, reply, text, stage);

	if (strcmp(classify_reason_name(c.reason), reason) != 0 || c.class != cls)
		fail_msg("[%s %d %s]: got %s/%s, want %s/%s", status ? status : "-", reply,
			 text ? text : "-", classify_reason_name(c.reason),
			 classify_class_name(c.class), reason, classify_class_name(cls));
}

static void test_status_decides(void **state)
{
	(void)state;
	assert_class("5.1.1", 550, "550 5.1.1 <a@example.com>: Recipient address rejected: "
		     "User unknown in local recipient table", SMTP_STAGE_UNKNOWN, "userunknown",
		     BOUNCE_CLASS_HARD);
	assert_class("5.1.2", 550, "Host or domain name not found", SMTP_STAGE_UNKNOWN,
		     "hostunknown", BOUNCE_CLASS_HARD);
	assert_class("5.1.6", 550, "mailbox has moved", SMTP_STAGE_UNKNOWN, "hasmoved",
		     BOUNCE_CLASS_HARD);
	assert_class("5.2.2", 552, "Mailbox full", SMTP_STAGE_UNKNOWN, "mailboxfull",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.3.4", 552, "Message size exceeds fixed maximum", SMTP_STAGE_UNKNOWN,
		     "mesgtoobig", BOUNCE_CLASS_SOFT);
	assert_class("4.4.7", 0, "delivery time expired", SMTP_STAGE_UNKNOWN, "expired",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.7.26", 550, "Multiple authentication checks failed", SMTP_STAGE_RCPT,
		     "authfailure", BOUNCE_CLASS_SOFT);
	assert_class("5.7.606", 550, "Access denied, banned sending IP [192.0.2.1]",
		     SMTP_STAGE_UNKNOWN, "blocked", BOUNCE_CLASS_SOFT);
	assert_class("2.1.5", 250, "250 2.1.5 Ok", SMTP_STAGE_UNKNOWN, "delivered",
		     BOUNCE_CLASS_NONE);
}

/* A full mailbox or a block is soft even under a "user unknown" status or a 5xx code. */
static void test_text_overrules_status(void **state)
{
	(void)state;
	assert_class("5.1.1", 550, "550 5.1.1 mailbox full", SMTP_STAGE_UNKNOWN, "mailboxfull",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.1.1", 550, "Relay access denied", SMTP_STAGE_UNKNOWN, "norelaying",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.7.1", 554, "554 5.7.1 Service unavailable; Client host [192.0.2.49] "
		     "blocked using cbl.abuseat.org", SMTP_STAGE_UNKNOWN, "blocked",
		     BOUNCE_CLASS_SOFT);
	assert_class(NULL, 550, "550 Message rejected: spam detected", SMTP_STAGE_DATA,
		     "spamdetected", BOUNCE_CLASS_SOFT);
	assert_class("5.1.1", 550, "procmail: Couldn't create mailbox: No such user",
		     SMTP_STAGE_UNKNOWN, "mailererror", BOUNCE_CLASS_SOFT);
}

/* "User unknown" in text is believed at RCPT, doubted after DATA, refused at MAIL FROM. */
static void test_user_unknown_needs_rcpt(void **state)
{
	(void)state;
	assert_class("5.0.0", 550, "550 Unknown user", SMTP_STAGE_RCPT, "userunknown",
		     BOUNCE_CLASS_HARD);
	assert_class("5.0.0", 550, "550 Unknown user", SMTP_STAGE_DATA, "filtered",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.0.0", 550, "550 Unknown user", SMTP_STAGE_UNKNOWN, "filtered",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.0.0", 550, "550 Unknown user", SMTP_STAGE_MAIL, "onhold",
		     BOUNCE_CLASS_SOFT);
	assert_class(NULL, 550, "SMTP error from remote mail server after RCPT TO:<a@b.example>: "
		     "550 No such user here", SMTP_STAGE_UNKNOWN, "userunknown", BOUNCE_CLASS_HARD);
	/* A folded reply still names its command. */
	assert_class(NULL, 550, "550 <a@b.example>: Recipient address rejected. (in reply to RCPT\n"
		     "    TO command)", SMTP_STAGE_UNKNOWN, "userunknown", BOUNCE_CLASS_HARD);
	/* The receiving system's own verdict, whatever the stage. */
	assert_class(NULL, 0, "User a.b (a@b.example) not listed in Domino Directory",
		     SMTP_STAGE_UNKNOWN, "userunknown", BOUNCE_CLASS_HARD);
}

static void test_dns_temporary_is_not_hostunknown(void **state)
{
	(void)state;
	assert_class(NULL, 0, "Name service error for domain example.com: Host not found, try "
		     "again", SMTP_STAGE_UNKNOWN, "networkerror", BOUNCE_CLASS_SOFT);
	assert_class("5.4.4", 0, "Host or domain name not found. Name service error for "
		     "name=example.invalid type=MX: Host not found", SMTP_STAGE_UNKNOWN,
		     "hostunknown", BOUNCE_CLASS_HARD);
	assert_class(NULL, 0, "Unrouteable address", SMTP_STAGE_UNKNOWN, "hostunknown",
		     BOUNCE_CLASS_HARD);
}

static void test_null_mx_is_hard_only_when_permanent(void **state)
{
	(void)state;
	assert_class(NULL, 0, "an MX or SRV record indicated no SMTP service", SMTP_STAGE_UNKNOWN,
		     "notaccept", BOUNCE_CLASS_HARD);
	assert_int_equal(classify_class_of(REASON_NOTACCEPT, "4.3.2", 0), BOUNCE_CLASS_SOFT);
	assert_int_equal(classify_class_of(REASON_NOTACCEPT, NULL, 421), BOUNCE_CLASS_SOFT);
	assert_int_equal(classify_class_of(REASON_NOTACCEPT, "5.1.10", 550), BOUNCE_CLASS_HARD);
	assert_int_equal(classify_class_of(REASON_FEEDBACK, NULL, 0), BOUNCE_CLASS_NONE);
}

static void test_provider_codes(void **state)
{
	struct classify_input in = { "5.5.0", 550, "550 5.5.0 Requested action not taken: mailbox "
				     "unavailable", SMTP_STAGE_UNKNOWN, "hotmail.com" };
	struct classification out;

	(void)state;
	assert_class("5.1.1", 550, "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid "
		     "recipient. LPN007_416", SMTP_STAGE_UNKNOWN, "userunknown", BOUNCE_CLASS_HARD);
	assert_class("5.5.0", 550, "Boite du destinataire archivee. Archived recipient. "
		     "LPN007_420", SMTP_STAGE_UNKNOWN, "suspend", BOUNCE_CLASS_SOFT);
	assert_class("5.1.1", 550, "550 5.1.1 <a@example.com> - 192.0.2.1 has sent to too many "
		     "recipients this hour. IB607", SMTP_STAGE_UNKNOWN, "speeding",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.1.1", 550, "550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes "
		     "Refused due to recipient preferences", SMTP_STAGE_UNKNOWN, "filtered",
		     BOUNCE_CLASS_SOFT);
	assert_class("5.1.0", 550, "550 5.1.0 <a@charter.net> AUP#I1320 too many connections",
		     SMTP_STAGE_UNKNOWN, "toomanyconn", BOUNCE_CLASS_SOFT);
	/* The same words mean "no such user" only at that provider. */
	classify(&in, &out);
	assert_int_equal(out.reason, REASON_USERUNKNOWN);
	in.hosts = "example.org mx.example.org";
	classify(&in, &out);
	assert_int_not_equal(out.reason, REASON_USERUNKNOWN);
}

static void test_nothing_known(void **state)
{
	(void)state;
	assert_class(NULL, 0, NULL, SMTP_STAGE_UNKNOWN, "undefined", BOUNCE_CLASS_SOFT);
	assert_class("", 0, "", SMTP_STAGE_UNKNOWN, "undefined", BOUNCE_CLASS_SOFT);
	assert_class(NULL, 0, "something odd happened", SMTP_STAGE_UNKNOWN, "onhold",
		     BOUNCE_CLASS_SOFT);
	assert_class("9.9.9", 999, "\x01\x02\xff", SMTP_STAGE_UNKNOWN, "onhold", BOUNCE_CLASS_SOFT);
}

static void test_find_status(void **state)
{
	char out[16];
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "550 5.1.1 <a@b.example>... User unknown", "5.1.1" },
		{ "Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1" },
		{ "550 5.7.606 Access denied", "5.7.606" },
		{ "host 10.5.1.1 said: 554 denied", "" },
		{ "version 1.2.5.1 is old", "" },
		{ "250 2.0.0 Ok\n451 4.3.0 Error: queue file write error", "4.3.0" },
		{ "250 2.1.5 Ok", "2.1.5" },
		{ "5.1.1", "5.1.1" },
		{ "", "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = strlen(cases[i].text);
		bool found = classify_find_status(cases[i].text, len, out, sizeof out);

		assert_string_equal(out, cases[i].want);
		assert_int_equal(found, cases[i].want[0] != '\0');
	}
	/* A short output buffer truncates, never overflows. */
	assert_true(classify_find_status("5.7.606", 7, out, 4));
	assert_string_equal(out, "5.7");
}

static void test_find_reply_code(void **state)
{
	(void)state;
	assert_int_equal(classify_find_reply_code("said: 550 5.1.1 nope", 20), 550);
	assert_int_equal(classify_find_reply_code("550-5.1.1 nope", 14), 550);
	assert_int_equal(classify_find_reply_code("host [192.0.2.153]: 421 try later", 33), 421);
	assert_int_equal(classify_find_reply_code("Thu, 10 Jul 2014 16:31:43 +0900", 31), 0);
	assert_int_equal(classify_find_reply_code("Size (in bytes): 222\n", 21), 0);
	assert_int_equal(classify_find_reply_code("250 Ok then 552 too big", 23), 552);
	assert_int_equal(classify_find_reply_code("", 0), 0);
}

static void test_find_stage(void **state)
{
	static const struct {
		const char *text;
		enum smtp_stage want;
	} cases[] = {
		{ "(in reply to RCPT TO command)", SMTP_STAGE_RCPT },
		{ "SMTP error from remote mail server after end of data:", SMTP_STAGE_DATA },
		{ "SMTP error after MAIL FROM:<a@b>: 550 x", SMTP_STAGE_MAIL },
		{ ">>> RCPT To:<a@b>\n<<< 550 unknown", SMTP_STAGE_RCPT },
		{ "Connected to 192.0.2.1 but my name was rejected.", SMTP_STAGE_HELO },
		{ "550 5.1.1 User unknown", SMTP_STAGE_UNKNOWN },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(classify_find_stage(cases[i].text, strlen(cases[i].text)),
				 cases[i].want);
	assert_int_equal(classify_find_stage(NULL, 0), SMTP_STAGE_UNKNOWN);
}

static void test_names(void **state)
{
	enum bounce_reason r;

	(void)state;
	for (int i = 0; i < REASON_COUNT; i++) {
		const char *name = classify_reason_name((enum bounce_reason)i);

		assert_true(classify_reason_from_name(name, &r));
		assert_int_equal(r, i);
	}
	assert_false(classify_reason_from_name("nosuchreason", &r));
	assert_string_equal(classify_reason_name((enum bounce_reason)999), "undefined");
	assert_string_equal(classify_class_name(BOUNCE_CLASS_HARD), "hard");
	assert_string_equal(classify_class_name(BOUNCE_CLASS_SOFT), "soft");
	assert_string_equal(classify_class_name(BOUNCE_CLASS_NONE), "none");
}

/* ---- the parser -------------------------------------------------------------------- */

/* A Postfix DSN: Auto-Submitted: auto-replied, yet a bounce, not an auto-reply. */
static const char postfix_dsn[] =
	"Return-Path: <>\n"
	"X-Original-To: bounces+u1=example.org@cutoff.example.net\n"
	"Delivered-To: bounces@cutoff.example.net\n"
	"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"To: bounces+u1=example.org@cutoff.example.net\n"
	"Auto-Submitted: auto-replied\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=delivery-status;\n"
	"\tboundary=\"B1\"\n"
	"\n"
	"--B1\n"
	"Content-Type: text/plain; charset=us-ascii\n"
	"\n"
	"This is the mail system at host mx.example.net.\n"
	"\n"
	"<nobody@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n"
	"    <nobody@example.org>: Recipient address rejected: User unknown in local\n"
	"    recipient table (in reply to RCPT TO command)\n"
	"\n"
	"--B1\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns; mx.example.net\n"
	"\n"
	"Final-Recipient: rfc822; nobody@example.org\n"
	"Original-Recipient: rfc822;nobody@example.org\n"
	"Action: failed\n"
	"Status: 5.1.1\n"
	"Remote-MTA: dns; mx.example.org\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n"
	"    rejected: User unknown in local recipient table\n"
	"\n"
	"Final-Recipient: rfc822; full@example.org\n"
	"Action: failed\n"
	"Status: 5.2.2\n"
	"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n"
	"\n"
	"--B1\n"
	"Content-Type: text/rfc822-headers\n"
	"\n"
	"From: Cutoff <noreply@cutoff.example.net>\n"
	"To: nobody@example.org\n"
	"Message-ID: <c1.u1.initial@cutoff.example.net>\n"
	"X-Cutoff-Campaign: msn-2003\n"
	"X-Cutoff-Delivery: 42\n"
	"Subject: Upgrade before 15 October\n"
	"\n"
	"--B1--\n";

/* Replaces every "\n" of a message with eol. */
static char *with_eol(const char *msg, const char *eol)
{
	struct buf b;

	buf_init(&b);
	for (const char *p = msg; *p; p++) {
		if (*p == '\n')
			buf_puts(&b, eol);
		else
			buf_putc(&b, *p);
	}
	return buf_steal(&b);
}

static struct dsn_result *parse(const char *msg)
{
	struct dsn_result *res = NULL;
	struct err e = { 0 };

	assert_int_equal(dsn_parse_buffer(msg, strlen(msg), &res, &e), 0);
	assert_non_null(res);
	return res;
}

static char *to_json(const struct dsn_result *res)
{
	json_t *j = dsn_result_to_json(res);
	char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);

	json_decref(j);
	return s;
}

static void test_postfix_dsn(void **state)
{
	struct dsn_result *res = parse(postfix_dsn);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 2);
	assert_string_equal(res->recipients[0].address, "nobody@example.org");
	assert_string_equal(res->recipients[0].status, "5.1.1");
	assert_int_equal(res->recipients[0].reply_code, 550);
	assert_int_equal(res->recipients[0].reason, REASON_USERUNKNOWN);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
	assert_int_equal(res->recipients[0].action, DSN_ACTION_FAILED);
	assert_string_equal(res->recipients[0].remote_mta, "mx.example.org");
	assert_int_equal(res->recipients[0].stage, SMTP_STAGE_RCPT);
	assert_string_equal(res->recipients[1].address, "full@example.org");
	assert_int_equal(res->recipients[1].reason, REASON_MAILBOXFULL);
	assert_int_equal(res->recipients[1].class, BOUNCE_CLASS_SOFT);
	assert_string_equal(res->original_message_id, "c1.u1.initial@cutoff.example.net");
	assert_int_equal(res->n_cutoff_headers, 2);
	assert_string_equal(res->cutoff_headers[0].name, "X-Cutoff-Campaign");
	assert_string_equal(res->cutoff_headers[0].value, "msn-2003");
	assert_string_equal(res->cutoff_headers[1].value, "42");
	assert_string_equal(res->envelope_recipient, "bounces+u1=example.org@cutoff.example.net");
	dsn_result_free(res);
}

/* The same message with LF, CRLF and CR line endings gives the same answer. */
static void test_line_endings(void **state)
{
	static const char *const eols[] = { "\r\n", "\r" };
	struct dsn_result *lf = parse(postfix_dsn);
	char *want = to_json(lf);

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		char *msg = with_eol(postfix_dsn, eols[i]);
		struct dsn_result *res = parse(msg);
		char *got = to_json(res);

		assert_string_equal(got, want);
		assert_string_equal(res->original_message_id, lf->original_message_id);
		assert_int_equal(res->n_cutoff_headers, lf->n_cutoff_headers);
		free(got);
		dsn_result_free(res);
		free(msg);
	}
	free(want);
	dsn_result_free(lf);
}

static void test_json_shape(void **state)
{
	struct dsn_result *res = parse(postfix_dsn);
	char *s = to_json(res);

	(void)state;
	assert_string_equal(s, "{\"kind\":\"bounce\",\"recipients\":["
			       "{\"address\":\"nobody@example.org\",\"class\":\"hard\","
			       "\"reason\":\"userunknown\",\"reply_code\":550,"
			       "\"status\":\"5.1.1\"},"
			       "{\"address\":\"full@example.org\",\"class\":\"soft\","
			       "\"reason\":\"mailboxfull\",\"reply_code\":552,"
			       "\"status\":\"5.2.2\"}]}");
	free(s);
	dsn_result_free(res);
}

/* A report in Latin-1 (German MTA): 8-bit bytes in its header, its text, its DSN fields and
 * the failed address itself. It is still read and classified, and no value is left out of
 * the JSON: bytes that are not UTF-8 become U+FFFD. */
static const char latin1_dsn[] =
	"From: Mail-Daemon (Zustellsystem f\xfcr E-Mail) <MAILER-DAEMON@mx.example.de>\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Unzustellbar: Ihre Nachricht an M\xfcller\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"L1\"\n"
	"\n"
	"--L1\n"
	"Content-Type: text/plain; charset=iso-8859-1\n"
	"Content-Transfer-Encoding: 8bit\n"
	"\n"
	"Ihre Nachricht konnte nicht zugestellt werden. Gr\xfc\xdf" "e.\n"
	"\n"
	"--L1\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns; mx.example.de\n"
	"\n"
	"Final-Recipient: rfc822; m\xfcller@example.de\n"
	"Action: failed\n"
	"Status: 5.1.1\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <m\xfcller@example.de>: Empf\xe4nger unbekannt"
	" (user unknown)\n"
	"\n"
	"--L1--\n";

static void test_not_utf8_is_kept(void **state)
{
	struct dsn_result *res = parse(latin1_dsn);
	json_t *j, *r;
	const char *addr;
	char *text;

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "m\xfcller@example.de");
	assert_string_equal(res->recipients[0].status, "5.1.1");
	assert_int_equal(res->recipients[0].reply_code, 550);
	assert_int_equal(res->recipients[0].reason, REASON_USERUNKNOWN);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
	assert_non_null(strstr(res->recipients[0].diagnostic, "Empf\xe4nger unbekannt"));

	j = dsn_result_to_json(res);
	r = json_array_get(json_object_get(j, "recipients"), 0);
	assert_non_null(r);
	addr = json_string_value(json_object_get(r, "address"));
	assert_non_null(addr); /* jansson refuses the raw bytes: it used to be left out */
	assert_string_equal(addr, "m\xef\xbf\xbdller@example.de");
	assert_string_equal(json_string_value(json_object_get(r, "status")), "5.1.1");
	assert_string_equal(json_string_value(json_object_get(r, "class")), "hard");
	text = json_dumps(j, JSON_COMPACT);
	assert_non_null(text);
	free(text);
	json_decref(j);
	dsn_result_free(res);
}

/* dsn_json_text keeps every well-formed character and replaces each stray byte. */
static void test_json_text(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain ascii", "plain ascii" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7" },
		{ "caf\xe9", "caf\xef\xbf\xbd" },                       /* Latin-1 */
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },             /* overlong '/' */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* a surrogate */
		{ "cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd" },      /* cut short */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* > U+10FFFF */
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *j = dsn_json_text(cases[i].in, strlen(cases[i].in));

		assert_non_null(json_string_value(j));
		assert_string_equal(json_string_value(j), cases[i].out);
		json_decref(j);
	}
	assert_true(json_is_null(dsn_json_text(NULL, 0)));
}

/* The same Postfix notice, its text encoded three ways: the parser reads the decoded text. */
static const char encoded_b64[] =
	"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"E1\"\n"
	"\n"
	"--E1\n"
	"Content-Type: text/plain\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"VGhpcyBpcyB0aGUgbWFpbCBzeXN0ZW0gYXQgaG9zdCBteC5leGFtcGxlLm9yZy4KCkknbSBzb3Jy\n"
	"eSB0byBoYXZlIHRvIGluZm9ybSB5b3UgdGhhdCB5b3VyIG1lc3NhZ2UgY291bGQgbm90CmJlIGRl\n"
	"bGl2ZXJlZCB0byBvbmUgb3IgbW9yZSByZWNpcGllbnRzLgoKPGdvbmVAZXhhbXBsZS5vcmc+OiBo\n"
	"b3N0IG14LmV4YW1wbGUub3JnWzE5Mi4wLjIuMV0gc2FpZDogNTUwIDUuMS4xCiAgICA8Z29uZUBl\n"
	"eGFtcGxlLm9yZz46IFJlY2lwaWVudCBhZGRyZXNzIHJlamVjdGVkOiBVc2VyIHVua25vd24gKGlu\n"
	"IHJlcGx5IHRvCiAgICBSQ1BUIFRPIGNvbW1hbmQpCg==\n"
	"--E1--\n";

static const char encoded_qp[] =
	"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"E1\"\n"
	"\n"
	"--E1\n"
	"Content-Type: text/plain\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"This is the mail system at host mx.example.org.\n"
	"\n"
	"I'm sorry to have to inform you that your message could not\n"
	"be delivered to one or more recipients.\n"
	"\n"
	"<gone@exa=\n"
	"mple.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n"
	"    <gone@example.org>: Recipient address rejected: User unknown (in reply =\n"
	"to\n"
	"    RCPT TO command)\n"
	"--E1--\n";

static const char encoded_uu[] =
	"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"E1\"\n"
	"\n"
	"--E1\n"
	"Content-Type: text/plain\n"
	"Content-Transfer-Encoding: x-uuencode\n"
	"\n"
	"begin 644 notice.txt\n"
	"M5&AI<R!I<R!T:&4@;6%I;\"!S>7-T96T@870@:&]S=\"!M>\"YE>&%M<&QE+F]R\n"
	"M9RX*\"DDG;2!S;W)R>2!T;R!H879E('1O(&EN9F]R;2!Y;W4@=&AA=\"!Y;W5R\n"
	"M(&UE<W-A9V4@8V]U;&0@;F]T\"F)E(&1E;&EV97)E9\"!T;R!O;F4@;W(@;6]R\n"
	"M92!R96-I<&EE;G1S+@H*/&=O;F5 97AA;7!L92YO<F<^.B!H;W-T(&UX+F5X\n"
	"M86UP;&4N;W)G6S$Y,BXP+C(N,5T@<V%I9#H@-34P(#4N,2XQ\"B @(\" \\9V]N\n"
	"M94!E>&%M<&QE+F]R9SXZ(%)E8VEP:65N=\"!A9&1R97-S(')E:F5C=&5D.B!5\n"
	"M<V5R('5N:VYO=VX@*&EN(')E<&QY('1O\"B @(\"!20U!4(%1/(&-O;6UA;F0I\n"
	"!\"@  \n"
	"`\n"
	"end\n"
	"--E1--\n";

static void test_encoded_notice(void **state)
{
	const char *const msgs[] = { encoded_b64, encoded_qp, encoded_uu };

	(void)state;
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		struct dsn_result *res = parse(msgs[i]);

		assert_int_equal(res->kind, DSN_KIND_BOUNCE);
		assert_int_equal(res->n_recipients, 1);
		assert_string_equal(res->recipients[0].address, "gone@example.org");
		assert_string_equal(res->recipients[0].status, "5.1.1");
		assert_int_equal(res->recipients[0].reply_code, 550);
		assert_int_equal(res->recipients[0].stage, SMTP_STAGE_RCPT);
		assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
		dsn_result_free(res);
	}
}

/* A notice that only forwards the MTA's report as a returned message (message/rfc822):
 * the recipient is read from the report inside it. GMime is first given the notice
 * without the returned message's body; the parser then needs that body and parses the
 * message again whole. */
static const char forwarded_report[] =
	"From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Returned mail: see transcript for details\n"
	"Received: from relay.example.net by mx.cutoff.example.net; Mon, 18 Aug 2003\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"OUT\"\n"
	"\n"
	"--OUT\n"
	"Content-Type: text/plain\n"
	"\n"
	"The attached report came back to the relay.\n"
	"\n"
	"--OUT\n"
	"Content-Type: message/rfc822\n"
	"Content-Description: the report\n"
	"\n"
	"Received: from mx.example.org by relay.example.net; Mon, 18 Aug 2003\n"
	"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
	"To: bounces@cutoff.example.net\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"IN\"\n"
	"\n"
	"--IN\n"
	"Content-Type: text/plain\n"
	"\n"
	"Your message could not be delivered.\n"
	"\n"
	"--IN\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns; mx.example.org\n"
	"\n"
	"Final-Recipient: rfc822; inner@example.org\n"
	"Action: failed\n"
	"Status: 5.1.1\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <inner@example.org>: User unknown\n"
	"\n"
	"--IN--\n"
	"\n"
	"--OUT--\n";

static void test_forwarded_report(void **state)
{
	struct dsn_result *res = parse(forwarded_report);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "inner@example.org");
	assert_string_equal(res->recipients[0].status, "5.1.1");
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
	assert_string_equal(res->envelope_recipient, "bounces@cutoff.example.net");
	dsn_result_free(res);
}

static void test_delay(void **state)
{
	static const char msg[] =
		"From: MAILER-DAEMON@mx.example.net\n"
		"Subject: Delayed Mail (still being retried)\n"
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n"
		"\n--B\nContent-Type: text/plain\n\nStill trying.\n"
		"--B\nContent-Type: message/delivery-status\n\n"
		"Reporting-MTA: dns; mx.example.net\n\n"
		"Final-Recipient: rfc822; slow@example.org\n"
		"Action: delayed\nStatus: 4.4.1\n"
		"Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.9]:25: Connection "
		"timed out\n\n--B--\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_DELAY);
	assert_int_equal(res->n_recipients, 1);
	assert_int_equal(res->recipients[0].action, DSN_ACTION_DELAYED);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_SOFT);
	dsn_result_free(res);
}

static void test_vacation(void **state)
{
	static const char msg[] =
		"From: \"Neko, Nyaan\" <nyaan@example.org>\n"
		"To: noreply@cutoff.example.net\n"
		"Subject: Automatic reply: Upgrade before 15 October\n"
		"Auto-Submitted: auto-replied\n"
		"Content-Type: text/plain\n\n"
		"I'm out of the office until Monday.\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_AUTOREPLY);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "nyaan@example.org");
	assert_int_equal(res->recipients[0].reason, REASON_VACATION);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_NONE);
	dsn_result_free(res);
}

static void test_arf_complaint(void **state)
{
	static const char msg[] =
		"From: fbl@isp.example\n"
		"Subject: Abuse report\n"
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n"
		"\n--F\nContent-Type: text/plain\n\nA complaint.\n"
		"--F\nContent-Type: message/feedback-report\n\n"
		"Feedback-Type: abuse\nUser-Agent: test/1.0\nVersion: 1\n"
		"Original-Rcpt-To: angry@example.org\n\n"
		"--F\nContent-Type: message/rfc822\n\n"
		"From: noreply@cutoff.example.net\nTo: angry@example.org\n"
		"Message-ID: <c1.u9@cutoff.example.net>\nX-Cutoff-Campaign: msn-2003\n"
		"Subject: hi\n\nbody\n--F--\n";
	struct dsn_result *res = parse(msg);
	char *s;

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_COMPLAINT);
	assert_string_equal(res->feedback_type, "abuse");
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "angry@example.org");
	assert_string_equal(res->original_message_id, "c1.u9@cutoff.example.net");
	assert_int_equal(res->n_cutoff_headers, 1);
	s = to_json(res);
	assert_non_null(strstr(s, "\"class\":null"));
	assert_non_null(strstr(s, "\"status\":null"));
	assert_non_null(strstr(s, "\"reason\":\"feedback\""));
	free(s);
	dsn_result_free(res);
}

static void test_unsubscribe(void **state)
{
	static const char msg[] = "From: Someone <someone@example.org>\n"
				  "To: unsubscribe+c1@cutoff.example.net\n"
				  "Subject: unsubscribe\n\n\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_UNSUBSCRIBE);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "someone@example.org");
	assert_int_equal(res->recipients[0].reason, REASON_FEEDBACK);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_NONE);
	assert_string_equal(res->envelope_recipient, "unsubscribe+c1@cutoff.example.net");
	dsn_result_free(res);
}

/* Exim's text bounce: no delivery-status part; the original copy follows a marker. */
static void test_exim_text_bounce(void **state)
{
	static const char msg[] =
		"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
		"To: noreply@cutoff.example.net\n"
		"Subject: Mail delivery failed: returning message to sender\n"
		"X-Failed-Recipients: gone@example.org\n"
		"Auto-Submitted: auto-replied\n\n"
		"This message was created automatically by mail delivery software.\n\n"
		"A message that you sent could not be delivered to one or more of its\n"
		"recipients. This is a permanent error. The following address(es) failed:\n\n"
		"  gone@example.org\n"
		"    SMTP error from remote mail server after RCPT TO:<gone@example.org>:\n"
		"    host mx.example.org [192.0.2.7]: 550 5.1.1 <gone@example.org>...\n"
		"    User unknown\n\n"
		"------ This is a copy of the message, including all the headers. ------\n\n"
		"Message-Id: <c1.u2@cutoff.example.net>\n"
		"X-Cutoff-Recipient: u2\n"
		"From: noreply@cutoff.example.net\n\n"
		"Upgrade, please. Write to help@example.net.\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "gone@example.org");
	assert_string_equal(res->recipients[0].status, "5.1.1");
	assert_int_equal(res->recipients[0].reply_code, 550);
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
	assert_string_equal(res->original_message_id, "c1.u2@cutoff.example.net");
	assert_int_equal(res->n_cutoff_headers, 1);
	assert_string_equal(res->cutoff_headers[0].value, "u2");
	dsn_result_free(res);
}

/* An ordinary message, even with an attached message, is not a bounce. */
static void test_not_a_bounce(void **state)
{
	static const char msg[] =
		"From: friend@example.org\nTo: me@example.net\nSubject: look at this\n"
		"Content-Type: multipart/mixed; boundary=\"M\"\n\n"
		"--M\nContent-Type: text/plain\n\nsee attached, from bob@example.com\n"
		"--M\nContent-Type: message/rfc822\n\nFrom: bob@example.com\nTo: x@example.org\n"
		"Subject: old\n\nold text\n--M--\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_OTHER);
	assert_int_equal(res->n_recipients, 0);
	dsn_result_free(res);
}

/* Inputs that are barely or not at all messages: an answer or ERR_DATA, never a crash. */
static void test_garbage(void **state)
{
	static const char *const inputs[] = {
		"", " ", "\n", "\r\n\r\n", "22\n", "From ", "From \n", "From x\r",
		"Content-Type: multipart/report; boundary=\"\"\n\n--\n--\n",
		"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: "
		"message/delivery-status\n\nFinal-Recipient: rfc822;\nAction: failed\n"
		"Status: 5.1.1\n\n--x--\n",
		"Content-Type: message/delivery-status\n\nFinal-Recipient: ;;;@@@\n Status: 9.9\n",
		"From: MAILER-DAEMON\nSubject: Undelivered\n\n"
		"<@>:\n<a@>\n@b.example\n<<<< 550 <>\n",
		"From: MAILER-DAEMON\nContent-Type: text/plain\n\n{\"notificationType\":\"Bounce\"",
		"From: MAILER-DAEMON\nContent-Type: text/plain\n\n{\"notificationType\":\"Bounce\","
		"\"bounce\":{\"bouncedRecipients\":[1,null,{\"emailAddress\":7}]}}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		struct dsn_result *res = NULL;
		struct err e = { 0 };
		int rc = dsn_parse_buffer(inputs[i], strlen(inputs[i]), &res, &e);

		if (rc != 0) {
			assert_int_equal(rc, ERR_DATA);
			assert_null(res);
			assert_true(e.msg[0] != '\0');
			continue;
		}
		/* A bounce always names whom it is about. */
		if (res->kind == DSN_KIND_BOUNCE)
			assert_true(res->n_recipients > 0);
		json_decref(dsn_result_to_json(res));
		dsn_result_free(res);
	}
}

/* Random bytes, NULs and deep nesting. */
static void test_random_bytes(void **state)
{
	/* Mostly mail-like bytes, with some NULs, CRs and high bytes. */
	static const char alphabet[] = "From: <>@\n\r\t:;-=abc5.1.1 Content-Type multipart/report"
				       "\0\xff";
	unsigned seed = 12345;
	char data[4096];

	(void)state;
	for (int round = 0; round < 300; round++) {
		size_t len = (size_t)(round * 13) % sizeof data;
		struct dsn_result *res = NULL;
		struct err e = { 0 };

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			data[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		if (dsn_parse_buffer(data, len, &res, &e) == 0)
			dsn_result_free(res);
	}
}

static void test_deep_nesting(void **state)
{
	struct buf b;
	struct dsn_result *res = NULL;
	struct err e = { 0 };

	(void)state;
	buf_init(&b);
	buf_puts(&b, "From: MAILER-DAEMON@example.net\n");
	for (int i = 0; i < 300; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i);
	buf_puts(&b, "Content-Type: text/plain\n\n<deep@example.org>: 550 5.1.1 User unknown\n");
	assert_int_equal(dsn_parse_buffer(b.data, b.len, &res, &e), 0);
	dsn_result_free(res);
	buf_free(&b);
}

static void test_parse_stream(void **state)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(postfix_dsn, strlen(postfix_dsn));
	struct dsn_result *res = NULL;
	struct err e = { 0 };

	(void)state;
	assert_int_equal(dsn_parse_stream(stream, &res, &e), 0);
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 2);
	dsn_result_free(res);
	g_object_unref(stream);
}

/* Writes data to a new temporary file; returns its path (caller unlinks and frees). */
static char *temp_file(const char *data, size_t len)
{
	char *path = xstrdup("/tmp/cutoff-test-dsn-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static size_t count_mbox(const char *data, size_t len, size_t *bounces)
{
	char *path = temp_file(data, len);
	struct dsn_mbox *mb = NULL;
	struct err e = { 0 };
	struct dsn_result *res;
	size_t n = 0, index;

	assert_int_equal(dsn_mbox_open(path, &mb, &e), 0);
	*bounces = 0;
	while (dsn_mbox_next(mb, &res, &index) == 1) {
		assert_int_equal(index, ++n);
		*bounces += res->kind == DSN_KIND_BOUNCE;
		dsn_result_free(res);
	}
	assert_int_equal(dsn_mbox_next(mb, &res, &index), 0);
	assert_null(res);
	dsn_mbox_free(mb);
	unlink(path);
	free(path);
	return n;
}

static void test_mbox(void **state)
{
	struct buf b;
	size_t bounces;

	(void)state;
	assert_int_equal(count_mbox("", 0, &bounces), 0);
	assert_int_equal(count_mbox(" ", 1, &bounces), 0);
	assert_int_equal(count_mbox("22\n", 3, &bounces), 0);
	assert_int_equal(count_mbox("Fro", 3, &bounces), 0);
	buf_init(&b);
	buf_puts(&b, "From MAILER-DAEMON Thu Oct  2 10:00:00 2003\n");
	buf_puts(&b, postfix_dsn);
	buf_puts(&b, "\nFrom someone Thu Oct  2 10:00:01 2003\n");
	buf_puts(&b, "From: a@example.org\nSubject: hello\n\n>From the start\n");
	assert_int_equal(count_mbox(b.data, b.len, &bounces), 2);
	assert_int_equal(bounces, 1);
	/* The same mbox with CRLF line endings. */
	{
		char *crlf = with_eol(b.data, "\r\n");

		assert_int_equal(count_mbox(crlf, strlen(crlf), &bounces), 2);
		assert_int_equal(bounces, 1);
		free(crlf);
	}
	buf_free(&b);
}

/* A notification sent as HTML only. */
static void test_html_notice(void **state)
{
	static const char msg[] =
		"From: postmaster@mx.example.net\nSubject: Undeliverable: hello\n"
		"Content-Type: text/html\n\n"
		"<html><body><p>Delivery to <b>gone@example.org</b> failed.</p>"
		"<p>Remote server said: 550 5.1.1 &lt;gone@example.org&gt; User unknown "
		"(in reply to RCPT TO command)</p></body></html>\n";
	struct dsn_result *res = parse(msg);

	(void)state;
	assert_int_equal(res->kind, DSN_KIND_BOUNCE);
	assert_int_equal(res->n_recipients, 1);
	assert_string_equal(res->recipients[0].address, "gone@example.org");
	assert_string_equal(res->recipients[0].status, "5.1.1");
	assert_int_equal(res->recipients[0].class, BOUNCE_CLASS_HARD);
	dsn_result_free(res);
}

static void test_mbox_missing(void **state)
{
	struct dsn_mbox *mb = (struct dsn_mbox *)&mb;
	struct err e = { 0 };

	(void)state;
	assert_int_equal(dsn_mbox_open("/nonexistent/cutoff/mbox", &mb, &e), ERR_NOTFOUND);
	assert_null(mb);
	assert_non_null(strstr(e.msg, "/nonexistent/cutoff/mbox"));
	dsn_mbox_free(NULL);
	dsn_result_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_decides),
		cmocka_unit_test(test_text_overrules_status),
		cmocka_unit_test(test_user_unknown_needs_rcpt),
		cmocka_unit_test(test_dns_temporary_is_not_hostunknown),
		cmocka_unit_test(test_null_mx_is_hard_only_when_permanent),
		cmocka_unit_test(test_provider_codes),
		cmocka_unit_test(test_nothing_known),
		cmocka_unit_test(test_find_status),
		cmocka_unit_test(test_find_reply_code),
		cmocka_unit_test(test_find_stage),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_postfix_dsn),
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_json_shape),
		cmocka_unit_test(test_not_utf8_is_kept),
		cmocka_unit_test(test_json_text),
		cmocka_unit_test(test_encoded_notice),
		cmocka_unit_test(test_forwarded_report),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_vacation),
		cmocka_unit_test(test_arf_complaint),
		cmocka_unit_test(test_unsubscribe),
		cmocka_unit_test(test_exim_text_bounce),
		cmocka_unit_test(test_not_a_bounce),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_parse_stream),
		cmocka_unit_test(test_mbox),
		cmocka_unit_test(test_mbox_missing),
		cmocka_unit_test(test_html_notice),
	};
	int rc;

	dsn_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	dsn_shutdown();
	return rc;
}
