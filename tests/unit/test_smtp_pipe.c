/* test_smtp_pipe.c — the SMTP dialogue of one connection, byte for byte: RFC 2920 groups and
 * their replies matched in order, one command at a time without PIPELINING, replies split
 * across reads and spread over lines, dot-stuffing, and what a lost connection leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_pipe.h"

static struct mailer_job *job_new(const char *from, const char *rcpt, const char *data)
{
	struct mailer_job *j = calloc(1, sizeof *j);

	j->envelope_from = strdup(from);
	j->rcpt = strdup(rcpt);
	buf_init(&j->data);
	buf_puts(&j->data, data);
	return j;
}

static struct smtp_pipe *pipe_with(const char *const *caps)
{
	struct smtp_pipe *p = smtp_pipe_new();

	smtp_pipe_reconnect(p);
	for (; caps != NULL && *caps != NULL; caps++)
		smtp_pipe_capability(p, *caps, strlen(*caps));
	return p;
}

static const char *const PIPELINING[] = {"250-mx.example.test", "250-PIPELINING",
					 "250 8BITMIME", NULL};

/* Everything the pipe has to send now, all of it taken as sent. */
static char *drain(struct smtp_pipe *p)
{
	size_t len;
	const char *out = smtp_pipe_output(p, &len);
	char *s = strndup(out, len);

	smtp_pipe_sent(p, len);
	return s;
}

static void expect_out(struct smtp_pipe *p, const char *want)
{
	char *got = drain(p);

	assert_string_equal(got, want);
	free(got);
}

static void feed(struct smtp_pipe *p, const char *s, int want_rc)
{
	assert_int_equal(smtp_pipe_input(p, s, strlen(s)), want_rc);
}

static void expect_done(struct smtp_pipe *p, const char *rcpt, bool accepted, int code,
			enum mailer_stage stage, const char *reply, enum smtp_fate fate)
{
	struct smtp_done d;

	assert_true(smtp_pipe_next_done(p, &d));
	assert_string_equal(d.job->rcpt, rcpt);
	assert_int_equal(d.accepted, accepted);
	assert_int_equal(d.code, code);
	assert_int_equal(d.stage, stage);
	assert_string_equal(d.reply, reply);
	assert_int_equal(d.fate, fate);
	mailer_job_free(d.job);
}

static void free_left(struct smtp_pipe *p)
{
	struct mailer_job *j;

	while ((j = smtp_pipe_take(p)) != NULL)
		mailer_job_free(j);
	smtp_pipe_free(p);
}

/* MAIL, RCPT and DATA in one group; the body goes with the next message's envelope. */
static void test_pipelined_groups(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	assert_true(smtp_pipe_pipelining(p));
	assert_int_equal(smtp_pipe_depth(p), 2);
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "Subject: a\r\n\r\nhi\r\n"));
	smtp_pipe_add(p, job_new("f@x.test", "b@y.test", "Subject: b\r\n\r\nho\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	assert_true(smtp_pipe_awaiting(p));
	feed(p, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n", 0);
	expect_out(p, ""); /* nothing may follow DATA until its reply */
	feed(p, "354 go ahead\r\n", 0);
	expect_out(p, "Subject: a\r\n\r\nhi\r\n.\r\n"
		      "MAIL FROM:<f@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
	feed(p, "250 2.0.0 Ok: queued as A\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", 0);
	expect_done(p, "a@y.test", true, 250, MAILER_STAGE_DATA, "2.0.0 Ok: queued as A",
		    SMTP_REPLIED);
	assert_false(smtp_pipe_next_done(p, &(struct smtp_done){0}));
	expect_out(p, "Subject: b\r\n\r\nho\r\n.\r\n");
	feed(p, "250 2.0.0 Ok: queued as B\r\n", 0);
	expect_done(p, "b@y.test", true, 250, MAILER_STAGE_DATA, "2.0.0 Ok: queued as B",
		    SMTP_REPLIED);
	assert_false(smtp_pipe_awaiting(p));
	assert_int_equal(smtp_pipe_count(p), 0);
	free_left(p);
}

/* A 5xx RCPT in the middle of a batch: replies still match in order, no body goes, RSET. */
static void test_rcpt_refused_in_batch(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	assert_true(smtp_pipe_takes_now(p)); /* idle: a message would go at once */
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "A\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	assert_false(smtp_pipe_takes_now(p)); /* a second one would wait for the 354 */
	feed(p, "250 ok\r\n250 ok\r\n354 go\r\n", 0);
	assert_true(smtp_pipe_takes_now(p)); /* now it goes with A's body */
	smtp_pipe_add(p, job_new("f@x.test", "bad@y.test", "B\r\n"));
	assert_false(smtp_pipe_takes_now(p)); /* full */
	expect_out(p, "A\r\n.\r\nMAIL FROM:<f@x.test>\r\nRCPT TO:<bad@y.test>\r\nDATA\r\n");
	/* all four replies in one read: the end of A's data, then B's envelope */
	feed(p, "250 queued\r\n250 2.1.0 Ok\r\n550 5.1.1 <bad@y.test>: User unknown\r\n"
		"554 5.5.1 Error: no valid recipients\r\n", 0);
	expect_done(p, "a@y.test", true, 250, MAILER_STAGE_DATA, "queued", SMTP_REPLIED);
	expect_done(p, "bad@y.test", false, 550, MAILER_STAGE_RCPT,
		    "5.1.1 <bad@y.test>: User unknown", SMTP_REPLIED);
	smtp_pipe_add(p, job_new("f@x.test", "c@y.test", "C\r\n"));
	expect_out(p, "RSET\r\nMAIL FROM:<f@x.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
	feed(p, "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0);
	expect_out(p, "C\r\n.\r\n");
	feed(p, "250 queued C\r\n", 0);
	expect_done(p, "c@y.test", true, 250, MAILER_STAGE_DATA, "queued C", SMTP_REPLIED);
	free_left(p);
}

/* Without PIPELINING: one command, one reply; a refused RCPT ends the message at once. */
static void test_one_command_at_a_time(void **state)
{
	const char *const caps[] = {"250-mx.example.test", "250 SIZE 1000000", NULL};
	struct smtp_pipe *p = pipe_with(caps);

	(void)state;
	assert_false(smtp_pipe_pipelining(p));
	assert_int_equal(smtp_pipe_depth(p), 1);
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "hello\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test> SIZE=7\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "RCPT TO:<a@y.test>\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "DATA\r\n");
	feed(p, "354 go\r\n", 0);
	expect_out(p, "hello\r\n.\r\n");
	feed(p, "250 done\r\n", 0);
	expect_done(p, "a@y.test", true, 250, MAILER_STAGE_DATA, "done", SMTP_REPLIED);
	smtp_pipe_add(p, job_new("f@x.test", "temp@y.test", "x\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test> SIZE=3\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "RCPT TO:<temp@y.test>\r\n");
	feed(p, "450 4.2.1 try later\r\n", 0);
	expect_done(p, "temp@y.test", false, 450, MAILER_STAGE_RCPT, "4.2.1 try later",
		    SMTP_REPLIED);
	smtp_pipe_add(p, job_new("f@x.test", "b@y.test", "y\r\n"));
	expect_out(p, "RSET\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "MAIL FROM:<f@x.test> SIZE=3\r\n");
	free_left(p);
}

/* Feeds s one byte at a time: every split of a reply across reads. */
static void feed_bytes(struct smtp_pipe *p, const char *s)
{
	for (; *s != '\0'; s++)
		assert_int_equal(smtp_pipe_input(p, s, 1), 0);
}

/* A reply may arrive a byte at a time, and a multi-line reply is one reply. */
static void test_split_and_multiline_replies(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "A\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	feed_bytes(p, "250-2.1.0 first\r\n250 2.1.0 second\r\n250 rcpt ok\r\n35");
	expect_out(p, "");
	feed_bytes(p, "4 go\r\n");
	expect_out(p, "A\r\n.\r\n");
	feed_bytes(p, "550-5.7.1 this message\r\n550-5.7.1 is refused\r\n550 5.7.1 by pol");
	assert_false(smtp_pipe_next_done(p, &(struct smtp_done){0}));
	feed_bytes(p, "icy\r\n");
	expect_done(p, "a@y.test", false, 550, MAILER_STAGE_DATA,
		    "5.7.1 this message 5.7.1 is refused 5.7.1 by policy", SMTP_REPLIED);
	free_left(p);
}

/* Replies nobody asked for, or that are not SMTP, end the dialogue. */
static void test_bad_replies(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	feed(p, "250 unasked\r\n", -1);
	smtp_pipe_free(p);
	p = pipe_with(PIPELINING);
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "A\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	feed(p, "HTTP/1.1 400 Bad Request\r\n", -1);
	free_left(p);
}

/* A 354 for a message already refused: the server waits for a body we must not send. */
static void test_354_after_refusal(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	smtp_pipe_add(p, job_new("f@x.test", "bad@y.test", "A\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<bad@y.test>\r\nDATA\r\n");
	feed(p, "250 ok\r\n550 no such user\r\n354 go ahead anyway\r\n", -1);
	expect_done(p, "bad@y.test", false, 550, MAILER_STAGE_RCPT, "no such user", SMTP_REPLIED);
	expect_out(p, "");
	free_left(p);
}

/* 421 at MAIL: the server closes; the message has its verdict, the next one is unsent. */
static void test_421_closes(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "A\r\n"));
	smtp_pipe_add(p, job_new("f@x.test", "b@y.test", "B\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	feed(p, "421 4.7.0 slow down\r\n", -1);
	smtp_pipe_abort(p);
	expect_done(p, "a@y.test", false, 421, MAILER_STAGE_MAIL, "4.7.0 slow down", SMTP_REPLIED);
	assert_false(smtp_pipe_next_done(p, &(struct smtp_done){0}));
	assert_int_equal(smtp_pipe_count(p), 1); /* b: nothing of it went, it waits */
	free_left(p);
}

/* A lost connection: the message whose body went is lost, the one behind it goes again. */
static void test_abort_keeps_the_unsent(void **state)
{
	struct smtp_pipe *p = pipe_with(PIPELINING);

	(void)state;
	smtp_pipe_add(p, job_new("f@x.test", "a@y.test", "A\r\n"));
	smtp_pipe_add(p, job_new("f@x.test", "b@y.test", "B\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n");
	feed(p, "250 ok\r\n250 ok\r\n354 go\r\n", 0);
	expect_out(p, "A\r\n.\r\nMAIL FROM:<f@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
	feed(p, "250 ok\r\n", 0); /* A's end of data is answered... */
	feed(p, "250 ok\r\n", 0); /* ...and B's MAIL, then the connection goes */
	expect_done(p, "a@y.test", true, 250, MAILER_STAGE_DATA, "ok", SMTP_REPLIED);
	smtp_pipe_add(p, job_new("f@x.test", "c@y.test", "C\r\n"));
	smtp_pipe_abort(p);
	assert_false(smtp_pipe_next_done(p, &(struct smtp_done){0}));
	assert_int_equal(smtp_pipe_count(p), 2);
	smtp_pipe_capability(p, "250 PIPELINING", 14); /* the new connection's EHLO */
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
	feed(p, "250 ok\r\n250 ok\r\n354 go\r\n", 0);
	expect_out(p, "B\r\n.\r\nMAIL FROM:<f@x.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
	smtp_pipe_abort(p); /* B's body went: lost; C's did not */
	expect_done(p, "b@y.test", false, 354, MAILER_STAGE_DATA, "go", SMTP_LOST);
	assert_int_equal(smtp_pipe_count(p), 1);
	free_left(p);
}

/* Undoes dot-stuffing as a server does; returns the message without its final ".". */
static char *unstuff(const char *s, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	bool bol = true;

	for (size_t i = 0; i < len; i++) {
		if (bol && s[i] == '.') {
			if (i + 2 < len + 1 && s[i + 1] == '\r' && s[i + 2] == '\n')
				break; /* the end */
			i++;
		}
		out[n++] = s[i];
		bol = s[i] == '\n';
	}
	*out_len = n;
	return out;
}

static void test_dot_stuffing(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	smtp_dot_stuff(&b, ".start\r\n.\r\nmid.dle\r\n..two\r\nend", 30);
	assert_string_equal(b.data, "..start\r\n..\r\nmid.dle\r\n...two\r\nend\r\n.\r\n");
	buf_reset(&b);
	smtp_dot_stuff(&b, "", 0);
	assert_string_equal(b.data, ".\r\n");
	buf_reset(&b);
	smtp_dot_stuff(&b, "x\n.y\r\n", 6); /* a bare LF before a dot is stuffed too */
	assert_string_equal(b.data, "x\n..y\r\n.\r\n");
	buf_free(&b);
}

/* A large body with dots at line starts everywhere, sent in pieces of every size. */
static void test_dot_stuffing_large_body_in_pieces(void **state)
{
	struct smtp_pipe *p = pipe_with(NULL);
	struct mailer_job *j;
	struct buf msg, wire;
	size_t len, step = 1, un_len;
	const char *out;
	char *un;

	(void)state;
	buf_init(&msg), buf_init(&wire);
	for (int i = 0; msg.len < 200000; i++)
		buf_printf(&msg, "%s%d\r\n", i % 3 == 0 ? "." : (i % 3 == 1 ? ".." : "x."), i);
	j = job_new("f@x.test", "a@y.test", "");
	buf_free(&j->data);
	j->data = msg; /* the job owns it now */
	smtp_pipe_add(p, j);
	expect_out(p, "MAIL FROM:<f@x.test>\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "RCPT TO:<a@y.test>\r\n");
	feed(p, "250 ok\r\n", 0);
	expect_out(p, "DATA\r\n");
	feed(p, "354 go\r\n", 0);
	while ((out = smtp_pipe_output(p, &len)), len > 0) {
		size_t n = step < len ? step : len, again;
		/* a TLS write that would block is retried with these very bytes */
		assert_ptr_equal(smtp_pipe_unsent_bytes(p, &again), out);
		assert_int_equal(again, len);
		buf_append(&wire, out, n);
		smtp_pipe_sent(p, n);
		step = step * 3 % 8191 + 1; /* pieces of ever-changing sizes */
	}
	assert_memory_equal(wire.data + wire.len - 5, "\r\n.\r\n", 5);
	un = unstuff(wire.data, wire.len, &un_len);
	assert_int_equal(un_len, j->data.len);
	assert_memory_equal(un, j->data.data, un_len);
	free(un);
	buf_free(&wire);
	free_left(p);
}

/* SIZE and SMTPUTF8 parameters only when the server announced them. */
static void test_mail_parameters(void **state)
{
	const char *const caps[] = {"250-mx", "250-SIZE", "250-SMTPUTF8", "250 PIPELINING", NULL};
	struct smtp_pipe *p = pipe_with(caps);

	(void)state;
	smtp_pipe_add(p, job_new("f@x.test", "j\xc3\xb6rg@y.test", "ab\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test> SIZE=4 SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@y.test>\r\n"
		      "DATA\r\n");
	free_left(p);
	p = pipe_with(PIPELINING);
	smtp_pipe_add(p, job_new("f@x.test", "j\xc3\xb6rg@y.test", "ab\r\n"));
	expect_out(p, "MAIL FROM:<f@x.test>\r\nRCPT TO:<j\xc3\xb6rg@y.test>\r\nDATA\r\n");
	free_left(p);
}

/* SIZE= carries the message's length in decimal, however many digits (0, 10, 100000). */
static void test_size_digits(void **state)
{
	const char *const caps[] = {"250-mx.example.test", "250-PIPELINING", "250 SIZE", NULL};
	static const size_t lens[] = {0, 10, 100000, 1234567};

	(void)state;
	for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
		struct smtp_pipe *p = pipe_with(caps);
		struct mailer_job *j = job_new("f@x.test", "a@y.test", "");
		char *want;

		for (size_t n = 0; n < lens[i]; n++)
			buf_append(&j->data, "x", 1);
		smtp_pipe_add(p, j);
		want = xasprintf("MAIL FROM:<f@x.test> SIZE=%zu\r\nRCPT TO:<a@y.test>\r\nDATA\r\n",
				 lens[i]);
		expect_out(p, want);
		free(want);
		free_left(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined_groups),
		cmocka_unit_test(test_rcpt_refused_in_batch),
		cmocka_unit_test(test_one_command_at_a_time),
		cmocka_unit_test(test_split_and_multiline_replies),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_354_after_refusal),
		cmocka_unit_test(test_421_closes),
		cmocka_unit_test(test_abort_keeps_the_unsent),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_dot_stuffing_large_body_in_pieces),
		cmocka_unit_test(test_mail_parameters),
		cmocka_unit_test(test_size_digits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
