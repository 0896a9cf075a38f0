/* test_mailer.c — the mailer against the scripted aiosmtpd server (tests/tools/smtpd.py):
 * every job is reported once, even when the report callback itself waits on the sockets
 * (as the sender does inside a ledger busy wait), and counts as in flight until reported;
 * mailer_wait waits its whole time even with finished jobs waiting to be reported (no spin);
 * jobs queued behind a lost one go again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailer.h"

#define JOBS 24

struct server {
	pid_t pid;
	int port;
	char out[256];
};

static int free_port(void)
{
	FILE *f = popen("/usr/bin/python3 -c 'import socket; s=socket.socket(); "
			"s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'", "r");
	int port = 0;

	if (f == NULL || fscanf(f, "%d", &port) != 1)
		port = 0;
	if (f != NULL)
		pclose(f);
	return port;
}

/* Starts smtpd.py with extra (or NULL); waits until it listens. */
static void server_start(struct server *s, const char *extra)
{
	const char *src = getenv("CUTOFF_SOURCE_DIR");
	char script[512], port[16], ready[256];

	assert_non_null(src);
	s->port = free_port();
	assert_true(s->port > 0);
	snprintf(script, sizeof script, "%s/tests/tools/smtpd.py", src);
	snprintf(port, sizeof port, "%d", s->port);
	snprintf(ready, sizeof ready, "/tmp/test_mailer.%d.ready", (int)getpid());
	snprintf(s->out, sizeof s->out, "/tmp/test_mailer.%d.jsonl", (int)getpid());
	unlink(ready), unlink(s->out);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1), dup2(null, 2); /* not the test's output: ctest waits for it to close */
		execl("/usr/bin/python3", "python3", script, "--port", port, "--out", s->out,
		      "--ready", ready, extra ? extra : "--stall", extra ? "10" : "30", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && access(ready, F_OK) != 0; i++)
		usleep(100000);
	assert_int_equal(access(ready, F_OK), 0);
	unlink(ready);
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	waitpid(s->pid, NULL, 0);
	unlink(s->out);
	s->pid = 0;
}

/* Each test's server, stopped by the teardown even when an assertion failed. */
static int setup(void **state)
{
	*state = calloc(1, sizeof(struct server));
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	server_stop(*state);
	free(*state);
	return 0;
}

struct tally {
	struct mailer *m;
	int seen[JOBS];
	int accepted, deferred, reported;
	bool wait_inside; /* wait on the sockets from inside the callback */
};

static void on_done(void *ud, struct mailer_job *job, const struct mailer_result *r)
{
	struct tally *t = ud;

	assert_true(job->id >= 0 && job->id < JOBS);
	t->seen[job->id]++;
	t->reported++;
	if (r->outcome == MAILER_ACCEPTED)
		t->accepted++;
	else if (r->outcome == MAILER_TEMPFAIL)
		t->deferred++;
	mailer_job_free(job);
	if (t->wait_inside)
		mailer_wait(t->m, 40); /* more jobs finish here: reported by the next mailer_run */
}

static struct mailer_job *job_new(int id, const char *rcpt)
{
	struct mailer_job *j = calloc(1, sizeof *j);

	j->id = id;
	j->envelope_from = strdup("bounces@example.test");
	j->rcpt = strdup(rcpt);
	buf_init(&j->data);
	buf_printf(&j->data, "Subject: %d\r\n\r\nhello %d\r\n", id, id);
	return j;
}

/* Sends JOBS jobs (rcpt_of names each one's recipient) and waits for every report. */
static void send_all(struct server *s, struct tally *t, const char *(*rcpt_of)(int))
{
	struct relay relay = {.name = "smtpd", .tls = RELAY_TLS_NONE, .loopback = true,
			      .connections = 6, .timeout = 2};
	struct config cfg = {.relays = &relay, .n_relays = 1};
	struct err e = {0};
	char url[64];
	int next = 0;
	int64_t deadline = mailer_now_ms() + 30000;

	snprintf(url, sizeof url, "smtp://127.0.0.1:%d", s->port);
	relay.url = url;
	assert_int_equal(mailer_new(&t->m, &cfg, 1, &e), 0);
	while (t->reported < JOBS && mailer_now_ms() < deadline) {
		while (next < JOBS && mailer_capacity(t->m, mailer_now_ms()) > 0) {
			struct mailer_job *j = job_new(next, rcpt_of(next));
			assert_int_equal(mailer_submit(t->m, j, mailer_now_ms(), &e), 0);
			next++;
		}
		if (t->wait_inside)
			usleep(15000); /* let replies gather: one mailer_run reports several */
		assert_int_equal(mailer_run(t->m, 20, on_done, t, &e), 0);
	}
	assert_int_equal(mailer_in_flight(t->m), 0);
	mailer_free(t->m);
	for (int i = 0; i < JOBS; i++)
		assert_int_equal(t->seen[i], 1);
}

static const char *rcpt_ok(int i)
{
	(void)i;
	return "ok@users.example.test";
}

static void test_reports_each_job_once_when_the_callback_waits(void **state)
{
	struct server *s = *state;
	struct tally t = {.wait_inside = true};

	server_start(s, "--delay-ms");
	send_all(s, &t, rcpt_ok);
	assert_int_equal(t.accepted, JOBS);
}

/* Every fourth one stalls past the timeout: only those are deferred; the ones queued
 * behind them on the same connection, whose body never went, go again and arrive. */
static const char *rcpt_some_stall(int i)
{
	return i % 4 == 1 ? "stall@users.example.test" : "ok@users.example.test";
}

static void test_jobs_behind_a_lost_one_go_again(void **state)
{
	struct server *s = *state;
	struct tally t = {0};
	FILE *f;
	int lines = 0, ch;

	server_start(s, NULL);
	send_all(s, &t, rcpt_some_stall);
	assert_int_equal(t.deferred, JOBS / 4);
	assert_int_equal(t.accepted, JOBS - JOBS / 4);
	f = fopen(s->out, "r");
	assert_non_null(f);
	while ((ch = fgetc(f)) != EOF)
		lines += ch == '\n';
	fclose(f);
	assert_int_equal(lines, JOBS - JOBS / 4); /* each accepted one arrived once */
}

/* A job that finished during mailer_wait is in flight until mailer_run reports it: the
 * sender ends its run when nothing is in flight, and must not lose that report. */
static void test_in_flight_until_reported(void **state)
{
	struct server *s = *state;
	struct relay relay = {.name = "smtpd", .tls = RELAY_TLS_NONE, .loopback = true,
			      .connections = 1, .timeout = 5};
	struct config cfg = {.relays = &relay, .n_relays = 1};
	struct tally t = {0};
	struct err e = {0};
	char url[64];

	server_start(s, NULL);
	snprintf(url, sizeof url, "smtp://127.0.0.1:%d", s->port);
	relay.url = url;
	assert_int_equal(mailer_new(&t.m, &cfg, 1, &e), 0);
	assert_int_equal(mailer_submit(t.m, job_new(0, "ok@users.example.test"), mailer_now_ms(), &e),
			 0);
	for (int i = 0; i < 40; i++) /* 2 s: far longer than the server takes */
		mailer_wait(t.m, 50);
	assert_int_equal(mailer_in_flight(t.m), 1);
	assert_int_equal(t.reported, 0);
	assert_int_equal(mailer_run(t.m, 0, on_done, &t, &e), 0);
	assert_int_equal(t.reported, 1);
	assert_int_equal(t.accepted, 1);
	assert_int_equal(mailer_in_flight(t.m), 0);
	mailer_free(t.m);
}

/* Once a job has finished and waits to be reported, mailer_wait still waits on the sockets
 * for its whole timeout: the sender's ledger busy wait calls it again and again, and a wait
 * that returned at once would spin, retrying the database lock with nothing to gain. */
static void test_wait_waits_with_reports_pending(void **state)
{
	struct server *s = *state;
	struct relay relay = {.name = "smtpd", .tls = RELAY_TLS_NONE, .loopback = true,
			      .connections = 1, .timeout = 5};
	struct config cfg = {.relays = &relay, .n_relays = 1};
	struct tally t = {0};
	struct err e = {0};
	char url[64];
	int64_t start;

	server_start(s, NULL);
	snprintf(url, sizeof url, "smtp://127.0.0.1:%d", s->port);
	relay.url = url;
	assert_int_equal(mailer_new(&t.m, &cfg, 1, &e), 0);
	assert_int_equal(mailer_submit(t.m, job_new(0, "ok@users.example.test"), mailer_now_ms(), &e),
			 0);
	for (int i = 0; i < 40; i++) /* 2 s: far longer than the server takes */
		mailer_wait(t.m, 50);
	start = mailer_now_ms();
	mailer_wait(t.m, 200);
	assert_true(mailer_now_ms() - start >= 150);
	assert_int_equal(mailer_run(t.m, 0, on_done, &t, &e), 0);
	assert_int_equal(t.accepted, 1); /* it had finished: the wait was not for it */
	mailer_free(t.m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reports_each_job_once_when_the_callback_waits,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_behind_a_lost_one_go_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_in_flight_until_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_waits_with_reports_pending, setup,
						teardown),
	};

	if (system("/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null") != 0) {
		printf("skipped: python3-aiosmtpd is not installed\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
