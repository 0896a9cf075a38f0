/* cmd_login.c — `cutoff login`: the login hook, one login or a stream of them (JSON lines). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpointer.h"
#include "cli.h"
#include "log.h"
#include "login.h"
#include "login_feed.h"
#include "store_login.h"
#include "util.h"

#define BATCH_EVERY 50000    /* events per commit, by default */
#define WAL_FRAMES 131072  /* by default a WAL of 512 MiB is started over */
#define BATCH_MS 500         /* ... or at most this long, by default */
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

/* ---- a stream of logins ------------------------------------------------------------------ */

struct batch {
	struct ctx *x;
	struct store *s;
	struct login_catalog *cat;
	struct login_session *ls;
	long every, ms;          /* commit after this many events or milliseconds */
	long wal_frames;         /* start the WAL over past this many frames */
	bool in_txn;
	long in_batch;           /* events in the open transaction */
	int64_t batch_started_ms;
	int64_t stale_checked_ms;
	struct buf answers;      /* the open transaction's answers, printed once it commits */
	struct checkpointer *ck; /* copies the WAL into the database off this thread; or NULL */
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
		if (b->ck != NULL) /* copied while the next batch is decided (checkpointer.h) */
			checkpointer_committed(b->ck, b->s, (int)b->wal_frames);
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

/* Decides one parsed input line; a line that is not a login gets an error answer. */
static int batch_item(struct batch *b, const struct login_item *it)
{
	b->lineno = it->lineno;
	if (it->kind == LOGIN_ITEM_TOO_LONG) {
		answer_bad(b, NULL, "longer than 65536 bytes");
		return 0;
	}
	if (it->kind == LOGIN_ITEM_BAD) {
		answer_bad(b, it->ev.user, it->why);
		return 0;
	}
	return batch_decide(b, &it->ev);
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

/* Decides the lines the feed parses, committing as batch_maybe_commit says and whenever no
 * parsed line is waiting: what is decided is answered before waiting for more input. */
static int batch_loop(struct batch *b, struct login_feed *f)
{
	const struct login_item *items;
	bool eof = false, wait = false;
	size_t n;
	int rc = 0;

	while (rc == 0 && !eof) {
		if ((rc = login_feed_next(f, wait, &items, &n, &eof, b->e)) != 0)
			break;
		wait = n == 0 && !eof;
		if (wait && (rc = batch_commit(b)) == 0)
			rc = batch_refresh(b);
		for (size_t i = 0; rc == 0 && i < n; i++)
			if ((rc = batch_item(b, &items[i])) == 0)
				rc = batch_maybe_commit(b);
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

/* The time of an event without one: the clock, or --now. */
static int64_t feed_now(const void *ud)
{
	return ctx_now(ud);
}

struct login_args {
	const char *version, *platform;
	bool json, batch;
	long every, ms, wal_frames;
};

/* Starts the checkpointer and stops this connection's own checkpoints; without a thread (it
 * could not start) this connection goes on checkpointing by itself. */
static int batch_checkpointer(struct batch *b)
{
	struct err e = {0};

	if (checkpointer_start(&b->ck, b->x->db_path, &e) != 0) {
		log_debug("login: checkpoints on this thread: %s", e.msg);
		return 0;
	}
	return store_wal_autocheckpoint(b->s, 0, b->e);
}

static int login_batch(struct ctx *x, const struct login_args *a, struct err *e)
{
	struct batch b = {.x = x, .every = a->every, .ms = a->ms, .wal_frames = a->wal_frames,
			  .e = e};
	struct login_feed *f = NULL;
	int64_t t0 = monotonic_ms();
	int rc;

	buf_init(&b.answers);
	if ((rc = ctx_store(x, STORE_WAL_BUFFERED, &b.s, e)) == 0 &&
	    (rc = store_login_stream(b.s, STORE_LOGIN_CACHED, e)) == 0 &&
	    (rc = batch_checkpointer(&b)) == 0 &&
	    (rc = batch_refresh(&b)) == 0 &&
	    (rc = login_feed_start(&f, STDIN_FILENO, feed_now, x, e)) == 0)
		rc = batch_loop(&b, f);
	login_feed_stop(f);
	checkpointer_stop(b.ck);
	batch_report(&b, (double)(monotonic_ms() - t0) / 1000.0);
	if (rc == 0 && b.bad > 0)
		rc = err_set(e, ERR_DATA, "%lld input line(s) were not logins (their answers say"
			     " why); the others were answered", (long long)b.bad);
	buf_free(&b.answers);
	login_session_free(b.ls);
	login_catalog_free(b.cat);
	return rc;
}

/* ---- the command ---------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct login_args *a, struct err *e)
{
	static const struct option longopts[] = {
		{"client-version", required_argument, NULL, 'V'},
		{"platform", required_argument, NULL, 'p'},
		{"json", no_argument, NULL, 'j'},
		{"batch", no_argument, NULL, 'b'},
		{"commit-every", required_argument, NULL, 'N'},
		{"commit-ms", required_argument, NULL, 'T'},
		{"checkpoint-frames", required_argument, NULL, 'w'},
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
			   (ch == 'T' && str_to_long(optarg, 0, 3600000, &a->ms)) ||
			   (ch == 'w' && str_to_long(optarg, 1, INT_MAX, &a->wal_frames))))
			return cli_usage(&cmd_login, e, "unknown option, or a bad --commit-every,"
					 " --commit-ms or --checkpoint-frames");
	}
	return 0;
}

static int login_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct login_args a = {NULL, NULL, false, false, BATCH_EVERY, BATCH_MS, WAL_FRAMES};
	struct login_event ev;
	int rc;

	if ((rc = parse_args(argc, argv, &a, e)) != 0)
		return rc;
	if (a.batch) {
		if (argc - optind != 0 || a.version || a.platform)
			return cli_usage(&cmd_login, e, "--batch reads the users and versions from"
					 " standard input: give no USER or --client-version");
		return login_batch(x, &a, e);
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
	"  --commit-every N    --batch: commit after N events (default 50000)\n"
	"  --commit-ms T       --batch: ... or once the oldest is T ms old (default 500)\n"
	"  --checkpoint-frames N  --batch: a thread of its own copies the WAL into the\n"
	"                      database after each commit; past N frames (4 KiB pages) the\n"
	"                      WAL is started over between two commits (default 131072)\n\n"
	"Durability: an answer is written only after the transaction recording its login and\n"
	"reminder has committed (synchronous=FULL), and at once whenever no more input is\n"
	"waiting; if a commit fails, no answer of that batch is written. A line that is not a\n"
	"login gets an answer with an \"error\" member, and the exit status is then 65.\n",
};
