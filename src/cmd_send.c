/* cmd_send.c — `cutoff send CAMPAIGN [--dry-run] [--limit N]`: the e-mail wave of one campaign. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "campaign.h"
#include "cli.h"
#include "mailer.h"
#include "runlock.h"
#include "sender.h"
#include "util.h"

void cmd_print_send_summary(FILE *out, const char *name, const struct sender_summary *s,
			    bool dry_run)
{
	fprintf(out, "%s %s: %lld %s, %lld deferred, %lld failed, %lld suppressed, %lld cancelled;"
		" %lld due and not sent (%.1f s)\n",
		dry_run ? "dry run of" : "sent", name, (long long)s->sent,
		dry_run ? "would be sent" : "sent", (long long)s->deferred, (long long)s->failed,
		(long long)s->suppressed, (long long)s->cancelled, (long long)s->remaining,
		s->seconds);
	if (s->queued.initial + s->queued.reminder + s->queued.final > 0)
		fprintf(out, "  queued now: %lld initial, %lld reminder, %lld final notice\n",
			(long long)s->queued.initial, (long long)s->queued.reminder,
			(long long)s->queued.final);
	if (s->recovered > 0)
		fprintf(out, "  recovered %lld deliver%s left in flight by a run that died: they"
			" were sent again and may have arrived twice\n", (long long)s->recovered,
			s->recovered == 1 ? "y" : "ies");
	if (s->throttled > 0)
		fprintf(out, "  %lld throttling repl%s: the relay was slowed down\n",
			(long long)s->throttled, s->throttled == 1 ? "y" : "ies");
	if (s->expired > 0)
		fprintf(out, "  the cutoff has passed: %lld unsent deliver%s expired\n",
			(long long)s->expired, s->expired == 1 ? "y" : "ies");
	if (s->paused)
		fprintf(out, "  the campaign is paused or cancelled: sending stopped\n");
}

int cmd_send_status(const struct sender_summary *s, struct err *e)
{
	if (s->relays_down)
		return err_set(e, ERR_TEMPFAIL, "every SMTP relay stayed down, so the run stopped;"
			       " nothing unsent was lost: %lld deliveries stay queued for the next"
			       " run", (long long)s->remaining);
	if (s->interrupted)
		return err_set(e, ERR_TEMPFAIL, "interrupted; messages not yet sent stay queued");
	if (s->deferred > 0)
		return err_set(e, ERR_TEMPFAIL, "%lld deliveries were deferred and will be retried"
			       " by a later run", (long long)s->deferred);
	return 0;
}

/* Adds a worker's counts to the total. */
static void summary_add(struct sender_summary *t, const struct sender_summary *w)
{
	t->queued.initial += w->queued.initial, t->queued.reminder += w->queued.reminder;
	t->queued.final += w->queued.final, t->recovered += w->recovered;
	t->sent += w->sent, t->deferred += w->deferred, t->failed += w->failed;
	t->suppressed += w->suppressed, t->cancelled += w->cancelled;
	t->throttled += w->throttled, t->expired += w->expired;
	t->relays_down |= w->relays_down, t->paused |= w->paused;
	t->interrupted |= w->interrupted;
}

/*
 * One worker process: its own database connection (a connection never crosses a fork),
 * its share of the connections and rates; it dies with the parent (PR_SET_PDEATHSIG),
 * so a killed run leaves no orphan sending. Writes its summary and exit code to fd.
 */
static void worker_main(struct ctx *x, const struct campaign *c, int64_t campaign_id,
			const struct sender_options *o, int fd)
{
	struct sender_summary sum;
	struct store *s = NULL;
	struct err e = {0};
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	memset(&sum, 0, sizeof sum);
	rc = store_open(&s, x->db_path, STORE_WAL_BUFFERED, &e); /* synchronous=FULL: safe */
	if (rc == 0)
		rc = sender_send(s, x->cfg, c, campaign_id, o, &sum, &e);
	if (rc != 0)
		fprintf(stderr, "cutoff: worker %ld: %s\n", (long)getpid(), e.msg);
	if (write(fd, &sum, sizeof sum) != (ssize_t)sizeof sum || write(fd, &rc, sizeof rc) < 0)
		rc = ERR_IO;
	store_close(s);
	_exit(rc == 0 ? 0 : 1);
}

static int collect(pid_t pid, int fd, struct sender_summary *total, int *worst)
{
	struct sender_summary w;
	int rc = 0, status;

	if (read(fd, &w, sizeof w) == (ssize_t)sizeof w && read(fd, &rc, sizeof rc) == sizeof rc)
		summary_add(total, &w);
	else
		rc = ERR_SOFTWARE;
	close(fd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc != 0 && *worst == 0)
		*worst = rc;
	return 0;
}

int cmd_send_parallel(struct ctx *x, const struct campaign *c, int64_t campaign_id,
		      const struct sender_options *o, int workers, struct sender_summary *sum,
		      struct err *e)
{
	struct sender_options wo = *o;
	pid_t pids[16];
	int fds[16], n = 0, worst = 0, rc;

	if (workers <= 1 || o->dry_run)
		return sender_send(x->store, x->cfg, c, campaign_id, o, sum, e);
	wo.share = workers, wo.progress = false;
	if (o->limit > 0)
		wo.limit = (o->limit + workers - 1) / workers;
	/* The workers inherit the zones loaded here instead of each expanding them again. */
	(void)sender_warm_zones(x->store, c, campaign_id);
	fflush(NULL);
	for (int i = 1; i < workers && i < 16; i++) {
		int p[2];
		if (pipe(p) != 0)
			break;
		if ((pids[n] = fork()) == 0) {
			close(p[0]);
			worker_main(x, c, campaign_id, &wo, p[1]);
		}
		close(p[1]);
		if (pids[n] < 0) {
			close(p[0]);
			break;
		}
		fds[n++] = p[0];
	}
	wo.share = n + 1;
	rc = sender_send(x->store, x->cfg, c, campaign_id, &wo, sum, e);
	for (int i = 0; i < n; i++)
		collect(pids[i], fds[i], sum, &worst);
	if (rc == 0 && worst != 0)
		rc = err_set(e, worst, "a sending worker failed (see its message above)");
	/* What is left is counted once every worker has settled its last messages: the count
	 * sender_send made when this process was done missed those still in another's flight. */
	if (rc == 0)
		rc = store_delivery_due(x->store, campaign_id, o->now, &sum->remaining, e);
	return rc;
}

static int default_workers(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus < 1 ? 1 : cpus > 4 ? 4 : (int)cpus;
}

static int send_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {
		{"dry-run", no_argument, NULL, 'n'},
		{"limit", required_argument, NULL, 'l'},
		{"workers", required_argument, NULL, 'w'},
		{NULL, 0, NULL, 0},
	};
	struct sender_options o = {false, 0, x->tty, !x->tty, ctx_now(x), 1};
	int workers = default_workers();
	long v;
	struct store_campaign sc = {0};
	struct sender_summary sum;
	struct campaign *c = NULL;
	struct runlock *lock = NULL;
	struct store *s;
	long limit;
	int ch, rc;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "nl:w:", longopts, NULL)) != -1) {
		if (ch == 'n')
			o.dry_run = true;
		else if (ch == 'l' && str_to_long(optarg, 1, 1000000000L, &limit))
			o.limit = limit;
		else if (ch == 'w' && str_to_long(optarg, 1, 16, &v))
			workers = (int)v;
		else
			return cli_usage(&cmd_send, e, "unknown option, or a bad --limit or --workers");
	}
	if (argc - optind != 1)
		return cli_usage(&cmd_send, e, "send needs a campaign name");
	/* This process sends too: its ledger commits (synchronous=FULL) write their WAL
	 * frames in a few large writes, as the workers' do, not two writes a frame. */
	if ((rc = ctx_store(x, STORE_WAL_BUFFERED, &s, e)) != 0 ||
	    (rc = cmd_load_campaign(x, argv[optind], &sc, &c, e)) != 0)
		return rc;
	if ((rc = runlock_acquire(&lock, x->db_path, "send", ctx_now(x), e)) == 0 &&
	    (rc = cmd_send_parallel(x, c, sc.id, &o, workers, &sum, e)) == 0) {
		cmd_print_send_summary(x->out, c->name, &sum, o.dry_run);
		rc = cmd_send_status(&sum, e);
	}
	runlock_release(lock);
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_send = {
	"send", send_run, "send CAMPAIGN [--dry-run] [--limit N] [--workers N]",
	"send the campaign's due e-mail through the configured relays",
	"\nQueues what is due (the initial e-mail of each segment whose time has come, reminder\n"
	"e-mails, the final notice), then sends it: each delivery is recorded before its SMTP\n"
	"transaction and settled after it (2xx sent, 4xx or a dropped connection deferred with\n"
	"backoff until the cutoff, 5xx failed; a hard failure suppresses the address). One run\n"
	"at a time per database; a second one exits 75 naming the holder.\n\n"
	"  --dry-run   render and compose every due message, send nothing, record nothing\n"
	"  --limit N   stop after N messages\n"
	"  --workers N sending processes (default: one per CPU, at most 4); together they\n"
	"              keep to each relay's connections and to the rates\n\n"
	"Exit status 0 when everything due was sent; 75 when something was deferred, every\n"
	"relay was down, or the run was interrupted (nothing unsent is lost).\n",
};
