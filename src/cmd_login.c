/* cmd_login.c — `cutoff login`: the login hook, one login or a stream of them (JSON lines). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "login.h"
#include "login_line.h"
#include "store_login.h"
#include "util.h"

#define BATCH_EVERY 20000    /* events per commit, by default */
#define BATCH_MS 200         /* ... or at most this long, by default */
#define LINE_MAX_BYTES 65536 /* a longer input line is refused */
#define READ_CHUNK (1 << 20)
#define STALE_CHECK_MS 1000  /* how often a stream looks for changed campaigns */
#define BUSY_WAIT_MS 120000  /* how long a stream waits for another writer */

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one login ------------------------------------------------------------------------- */

static int login_one(struct ctx *x, const struct login_event *ev, bool json, struct err *e)
{
	struct login_catalog *cat = NULL;
	struct login_session *ls = NULL;
	struct login_answer a;
	struct store *s;
	struct buf out;
	int rc;

	buf_init(&out);
	if ((rc = ctx_store(x, 0, &s, e)) != 0 || (rc = login_catalog_load(&cat, s, e)) != 0)
		goto out;
	ls = login_session_new(cat, s);
	if ((rc = store_begin(s, e)) != 0)
		goto out;
	if ((rc = login_decide(ls, ev, &a, e)) != 0 || (rc = store_commit(s, e)) != 0) {
		store_rollback(s);
		goto out;
	}
	/* Committed: only now is the answer given. */
	if (json) {
		login_answer_json(&a, ev->user, &out);
		fprintf(x->out, "%s\n", out.data);
	} else if (a.reminded) {
		fprintf(x->out, "%s\n", a.text);
	}
out:
	buf_free(&out);
	login_session_free(ls);
	login_catalog_free(cat);
	return rc;
}

/* ---- reading JSON lines ------------------------------------------------------------------ */

/* Reads a descriptor in large chunks and hands out lines. */
struct reader {
	int fd;
	char *buf;
	size_t off, len, cap; /* unread data is buf[off, len); cap keeps room for a NUL */
	bool eof;
	bool skipping;        /* dropping the rest of an over-long line */
};

/*
 * The next complete line in the buffer, newline (and a CR before it) removed and
 * NUL-terminated, or NULL when none is buffered. *too_long is set instead for a line longer
 * than LINE_MAX_BYTES, whose bytes are dropped up to its newline.
 */
static char *reader_line(struct reader *r, size_t *len, bool *too_long)
{
	char *start, *nl;

	*too_long = false;
	for (;;) {
		start = r->buf + r->off;
		nl = memchr(start, '\n', r->len - r->off);
		if (!r->skipping)
			break;
		r->off = nl ? (size_t)(nl - r->buf) + 1 : r->len;
		if (nl == NULL)
			return NULL;
		r->skipping = false;
	}
	if (nl != NULL && (size_t)(nl - start) > LINE_MAX_BYTES) {
		/* read whole, and refused all the same */
		r->off = (size_t)(nl - r->buf) + 1, *too_long = true;
		return NULL;
	}
	if (nl == NULL && r->len - r->off >= LINE_MAX_BYTES) {
		r->off = r->len, r->skipping = true, *too_long = true;
		return NULL;
	}
	if (nl == NULL && !(r->eof && r->off < r->len))
		return NULL;
	if (nl == NULL)
		nl = r->buf + r->len; /* the last line, without a newline: room for a NUL */
	*len = (size_t)(nl - start);
	r->off = nl < r->buf + r->len ? (size_t)(nl - r->buf) + 1 : r->len;
	*nl = '\0';
	if (*len > 0 && start[*len - 1] == '\r')
		start[--*len] = '\0';
	return start;
}

/* Reads more (blocking). Returns 0, or ERR_IO. */
static int reader_fill(struct reader *r, struct err *e)
{
	ssize_t n;

	if (r->off > 0) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off, r->off = 0;
	}
	do
		n = read(r->fd, r->buf + r->len, r->cap - 1 - r->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_sys(e, ERR_IO, errno, "reading login events from standard input");
	if (n == 0)
		r->eof = true;
	r->len += (size_t)n;
	return 0;
}

/* True when reading would not block: more input is already waiting. */
static bool reader_ready(const struct reader *r)
{
	struct pollfd p = {r->fd, POLLIN, 0};

	return poll(&p, 1, 0) > 0;
}

/* ---- a stream of logins ------------------------------------------------------------------ */

struct batch {
	struct ctx *x;
	struct store *s;
	struct login_catalog *cat;
	struct login_session *ls;
	long every, ms;          /* commit after this many events or milliseconds */
	bool in_txn;
	long in_batch;           /* events in the open transaction */
	int64_t batch_started_ms;
	int64_t stale_checked_ms;
	struct buf answers;      /* the open transaction's answers, printed once it commits */
	struct login_line line;  /* what the event being decided points into */
	int64_t lineno;
	int64_t events, reminded, completed, unknown, bad, commits;
	struct err *e;
};

/* Commits the open transaction, then (only then) prints its answers. */
static int batch_commit(struct batch *b)
{
	int rc;

	if (b->in_txn) {
		b->in_txn = false;
		if ((rc = store_commit(b->s, b->e)) != 0) {
			store_rollback(b->s);
			return rc;
		}
		b->commits++;
	}
	b->in_batch = 0;
	if (b->answers.len > 0 && (fwrite(b->answers.data, 1, b->answers.len, stdout) !=
				   b->answers.len || fflush(stdout) != 0))
		return err_sys(b->e, ERR_IO, errno, "writing the answers");
	buf_reset(&b->answers);
	return 0;
}

/* Reloads the campaigns when they changed (checked at most once a second, between commits). */
static int batch_refresh(struct batch *b)
{
	int64_t now = monotonic_ms();
	bool stale = false;
	int rc;

	if (b->cat != NULL && now - b->stale_checked_ms < STALE_CHECK_MS)
		return 0;
	b->stale_checked_ms = now;
	if (b->cat != NULL &&
	    ((rc = login_catalog_stale(b->cat, b->s, &stale, b->e)) != 0 || !stale))
		return rc;
	login_session_free(b->ls), b->ls = NULL;
	login_catalog_free(b->cat), b->cat = NULL;
	if ((rc = login_catalog_load(&b->cat, b->s, b->e)) != 0)
		return rc;
	b->ls = login_session_new(b->cat, b->s);
	return 0;
}

/* An answer for a line that is not a login: the usual shape, plus the error. */
static void answer_bad(struct batch *b, const char *user, const char *why)
{
	char msg[600];

	b->bad++;
	snprintf(msg, sizeof msg, "line %lld: %s", (long long)b->lineno, why);
	buf_puts(&b->answers, "{\"user\":");
	if (user != NULL)
		login_json_string(&b->answers, user);
	else
		buf_puts(&b->answers, "null");
	buf_puts(&b->answers, ",\"reminder\":null,\"completed\":false,\"error\":");
	login_json_string(&b->answers, msg);
	buf_puts(&b->answers, "}\n");
}

/*
 * Opens the batch's transaction. A writer holding the database longer than the store's busy
 * timeout (the daily run queueing a large wave) makes the stream wait, up to BUSY_WAIT_MS,
 * rather than end: a login server behind it would otherwise lose its hook.
 */
static int batch_begin(struct batch *b)
{
	int64_t until = monotonic_ms() + BUSY_WAIT_MS;
	int rc;

	while ((rc = store_begin(b->s, b->e)) == ERR_TEMPFAIL && monotonic_ms() < until)
		err_clear(b->e);
	if (rc != 0)
		return rc;
	b->in_txn = true;
	b->batch_started_ms = monotonic_ms();
	return 0;
}

static int batch_decide(struct batch *b, const struct login_event *ev)
{
	struct login_answer a;
	int rc;

	if (!b->in_txn && (rc = batch_begin(b)) != 0)
		return rc;
	if ((rc = login_decide(b->ls, ev, &a, b->e)) != 0)
		return rc;
	b->events++, b->in_batch++;
	b->reminded += a.reminded, b->completed += a.completed_now > 0, b->unknown += !a.known;
	login_answer_json(&a, ev->user, &b->answers);
	buf_putc(&b->answers, '\n');
	return 0;
}

/* Decides one input line; a line that is not a login gets an error answer. */
static int batch_line(struct batch *b, const char *line, size_t len)
{
	struct login_event ev;
	char why[400];

	if (login_line_parse(&b->line, line, len, ctx_now(b->x), &ev, why, sizeof why) != 0) {
		answer_bad(b, ev.user, why);
		return 0;
	}
	return batch_decide(b, &ev);
}

/* Commits when the batch is full or old enough. */
static int batch_maybe_commit(struct batch *b)
{
	int rc;

	if (b->in_batch < b->every && !(b->in_txn && monotonic_ms() - b->batch_started_ms >= b->ms))
		return 0;
	if ((rc = batch_commit(b)) != 0)
		return rc;
	return batch_refresh(b); /* between transactions: campaigns added, paused, ended */
}

static int batch_loop(struct batch *b, struct reader *r)
{
	bool too_long;
	size_t len;
	char *line;
	int rc = 0;

	while (rc == 0) {
		if ((line = reader_line(r, &len, &too_long)) != NULL || too_long) {
			b->lineno++;
			if (too_long)
				answer_bad(b, NULL, "longer than 65536 bytes");
			else if (len > 0) /* a blank line is skipped, and gets no answer */
				rc = batch_line(b, line, len);
			if (rc == 0)
				rc = batch_maybe_commit(b);
			continue;
		}
		if (r->eof)
			break;
		/* Nothing buffered: answer what is decided before waiting for more input. */
		if (!reader_ready(r) && (rc = batch_commit(b)) == 0)
			rc = batch_refresh(b);
		if (rc == 0)
			rc = reader_fill(r, b->e);
	}
	if (rc == 0)
		rc = batch_commit(b);
	else if (b->in_txn)
		store_rollback(b->s); /* nothing of it is answered */
	return rc;
}

static void batch_report(const struct batch *b, double seconds)
{
	if (log_get_level() == LOG_LEVEL_QUIET)
		return;
	fprintf(stderr, "cutoff login: %lld events: %lld reminders shown, %lld completed, %lld"
		" unknown users, %lld bad lines; %lld commits, %.2f s, %.0f events/s\n",
		(long long)b->events, (long long)b->reminded, (long long)b->completed,
		(long long)b->unknown, (long long)b->bad, (long long)b->commits, seconds,
		seconds > 0 ? (double)b->events / seconds : 0.0);
}

static int login_batch(struct ctx *x, long every, long ms, struct err *e)
{
	struct batch b = {.x = x, .every = every, .ms = ms, .e = e};
	struct reader r = {.fd = STDIN_FILENO, .cap = READ_CHUNK + LINE_MAX_BYTES + 1};
	int64_t t0 = monotonic_ms();
	int rc;

	buf_init(&b.answers);
	login_line_init(&b.line);
	r.buf = xmalloc(r.cap);
	if ((rc = ctx_store(x, 0, &b.s, e)) == 0 &&
	    (rc = store_login_stream(b.s, STORE_LOGIN_CACHED, e)) == 0 && (rc = batch_refresh(&b)) == 0)
		rc = batch_loop(&b, &r);
	batch_report(&b, (double)(monotonic_ms() - t0) / 1000.0);
	if (rc == 0 && b.bad > 0)
		rc = err_set(e, ERR_DATA, "%lld input line(s) were not logins (their answers say"
			     " why); the others were answered", (long long)b.bad);
	free(r.buf);
	buf_free(&b.answers);
	login_line_free(&b.line);
	login_session_free(b.ls);
	login_catalog_free(b.cat);
	return rc;
}

/* ---- the command ---------------------------------------------------------------------- */

struct login_args {
	const char *version, *platform;
	bool json, batch;
	long every, ms;
};

static int parse_args(int argc, char **argv, struct login_args *a, struct err *e)
{
	static const struct option longopts[] = {
		{"client-version", required_argument, NULL, 'V'},
		{"platform", required_argument, NULL, 'p'},
		{"json", no_argument, NULL, 'j'},
		{"batch", no_argument, NULL, 'b'},
		{"commit-every", required_argument, NULL, 'N'},
		{"commit-ms", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 'V')
			a->version = optarg;
		else if (ch == 'p')
			a->platform = optarg;
		else if (ch == 'j')
			a->json = true;
		else if (ch == 'b')
			a->batch = true;
		else if (!((ch == 'N' && str_to_long(optarg, 1, 1000000, &a->every)) ||
			   (ch == 'T' && str_to_long(optarg, 0, 3600000, &a->ms))))
			return cli_usage(&cmd_login, e, "unknown option, or a bad --commit-every or"
					 " --commit-ms");
	}
	return 0;
}

static int login_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct login_args a = {NULL, NULL, false, false, BATCH_EVERY, BATCH_MS};
	struct login_event ev;
	int rc;

	if ((rc = parse_args(argc, argv, &a, e)) != 0)
		return rc;
	if (a.batch) {
		if (argc - optind != 0 || a.version || a.platform)
			return cli_usage(&cmd_login, e, "--batch reads the users and versions from"
					 " standard input: give no USER or --client-version");
		return login_batch(x, a.every, a.ms, e);
	}
	if (argc - optind != 1 || a.version == NULL)
		return cli_usage(&cmd_login, e, "login needs a USER and --client-version V");
	ev = (struct login_event){argv[optind], a.version, a.platform, ctx_now(x)};
	return login_one(x, &ev, a.json, e);
}

const struct command cmd_login = {
	"login", login_run,
	"login USER --client-version V [--platform P] [--json] | --batch",
	"the login hook: whether to show USER a reminder now, and its text",
	"\nDecides at a login, in one call: records the login, shows a reminder at most once\n"
	"per reminder period (the campaign's login_reminders cadence, daily by default) from\n"
	"the reminder start until the cutoff, and completes the user when the client version\n"
	"is at or above their segment's target (their queued e-mail is cancelled). Nothing is\n"
	"shown for unknown, completed, unaffected or suppressed users, for paused campaigns, or\n"
	"outside the window. A user in several campaigns sees the most urgent reminder due (the\n"
	"earliest cutoff); the others remain due for a later login in the same period.\n\n"
	"  --client-version V  the version the client reported (required for one login)\n"
	"  --platform P        the platform it reported (recorded)\n"
	"  --json              answer {\"user\":...,\"reminder\":{\"campaign\",\"text\",\n"
	"                      \"days_left\",\"upgrade_url\"}|null,\"completed\":bool};\n"
	"                      without it the reminder's text is printed, or nothing\n"
	"  --batch             read login events from standard input, one JSON object a\n"
	"                      line: {\"user\":\"u1\",\"client_version\":\"4.6\",\n"
	"                      \"platform\":\"windows\",\"time\":\"2003-09-20T17:00:00Z\"}\n"
	"                      (time: RFC 3339 or Unix seconds; default the clock), and\n"
	"                      write one answer a line, in order\n"
	"  --commit-every N    --batch: commit after N events (default 20000)\n"
	"  --commit-ms T       --batch: ... or once the oldest is T ms old (default 200)\n\n"
	"Durability: an answer is written only after the transaction recording its login and\n"
	"reminder has committed (synchronous=FULL), and at once whenever no more input is\n"
	"waiting; if a commit fails, no answer of that batch is written. A line that is not a\n"
	"login gets an answer with an \"error\" member, and the exit status is then 65.\n",
};
