/* cmd_run.c — `cutoff run`: the daily job (the systemd timer's): what is due, every campaign. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "campaign.h"
#include "cli.h"
#include "import.h"
#include "run.h"
#include "runlock.h"
#include "util.h"

/* The sender for each campaign: cutoff send's worker processes. */
struct parallel {
	struct ctx *x;
	int workers;
};

static int send_parallel(void *ud, struct store *s, const struct campaign *c, int64_t id,
			 const struct sender_options *o, struct sender_summary *sum, struct err *e)
{
	struct parallel *p = ud;

	(void)s; /* cmd_send_parallel sends on the ctx's store, which is s */
	return cmd_send_parallel(p->x, c, id, o, p->workers, sum, e);
}

static void print_bounces(FILE *out, const struct run_summary *r)
{
	const struct bounces_summary *b = &r->bounces;

	if (!r->bounces_ran)
		return;
	if (r->bounces_rc != 0) {
		fprintf(out, "bounces: not done: %s\n", r->bounces_error.msg);
		return;
	}
	fprintf(out, "bounces: %lld message%s read: %lld hard, %lld soft, %lld complaint%s, %lld"
		" unsubscribe%s; %lld address%s suppressed, %lld quarantined\n",
		(long long)b->messages, b->messages == 1 ? "" : "s", (long long)b->hard,
		(long long)b->soft, (long long)b->complaints, b->complaints == 1 ? "" : "s",
		(long long)b->unsubscribes, b->unsubscribes == 1 ? "" : "s",
		(long long)b->suppressed, b->suppressed == 1 ? "" : "es",
		(long long)b->quarantined);
}

/* Where login reminders stand: before, inside (which period) or after the window. */
static void print_period(FILE *out, const struct run_campaign *c, int64_t now)
{
	char a[64], b[64];

	if (c->n_periods == 0)
		return;
	if (c->period.inside) {
		cmd_format_local(c->period.begin, c->timezone, a, sizeof a);
		cmd_format_local(c->period.end, c->timezone, b, sizeof b);
		fprintf(out, "  login reminders: period %zu of %zu, %s to %s\n",
			c->period.index + 1, c->n_periods, a, b);
	} else if (now < c->reminder_start_at) {
		cmd_format_local(c->reminder_start_at, c->timezone, a, sizeof a);
		fprintf(out, "  login reminders: from %s\n", a);
	}
}

static void print_campaign(FILE *out, const struct run_campaign *c, int64_t now, bool dry_run)
{
	char cut[64];

	cmd_format_local(c->cutoff_at, c->timezone, cut, sizeof cut);
	fprintf(out, "campaign %s (%s, cutoff %s)\n", c->name, c->state, cut);
	if (c->rc != 0)
		fprintf(out, "  not done: %s\n", c->error.msg);
	if (c->sent && c->rc == 0) {
		fputs("  ", out);
		cmd_print_send_summary(out, c->name, &c->send, dry_run);
	} else if (c->rc == 0 && now < c->cutoff_at) {
		fprintf(out, "  paused: nothing sent (resume it with: cutoff campaign resume %s)\n",
			c->name);
	}
	if (now >= c->cutoff_at && c->rc == 0)
		fprintf(out, "  %s: the cutoff has passed; login reminders stopped, %lld unsent"
			" deliver%s expired\n", dry_run ? "would end" : "ended",
			(long long)c->expired, c->expired == 1 ? "y" : "ies");
	else
		print_period(out, c, now);
}

static int default_workers(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus < 1 ? 1 : cpus > 4 ? 4 : (int)cpus;
}

static int run_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {
		{"dry-run", no_argument, NULL, 'n'},
		{"workers", required_argument, NULL, 'w'},
		{NULL, 0, NULL, 0},
	};
	struct parallel par = {x, default_workers()};
	struct run_options o = {.now = ctx_now(x), .progress = x->tty, .log_attempts = !x->tty,
				.send = send_parallel, .send_ud = &par};
	struct run_summary sum = {0};
	struct runlock *lock = NULL;
	struct store *s;
	long v;
	int ch, rc;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "nw:", longopts, NULL)) != -1) {
		if (ch == 'n')
			o.dry_run = true;
		else if (ch == 'w' && str_to_long(optarg, 1, 16, &v))
			par.workers = (int)v;
		else
			return cli_usage(&cmd_run, e, "unknown option, or a bad --workers");
	}
	if (argc - optind != 0)
		return cli_usage(&cmd_run, e, "run takes no arguments");
	/* The run sends on this connection too (and its workers on theirs): its commits write
	 * their WAL frames in a few large writes (store_walbuf.h). */
	if ((rc = ctx_store(x, STORE_WAL_BUFFERED, &s, e)) != 0 ||
	    (rc = runlock_acquire(&lock, x->db_path, "run", o.now, e)) != 0)
		return rc;
	/* An import that died before its end left its new recipients' keys to add (db/017). */
	if (!o.dry_run && (rc = import_finish_pending(s, x->db_path, o.now, e)) != 0) {
		runlock_release(lock);
		return rc;
	}
	if ((rc = run_daily(s, x->cfg, &o, &sum, e)) == 0) {
		print_bounces(x->out, &sum);
		for (size_t i = 0; i < sum.n; i++)
			print_campaign(x->out, &sum.campaigns[i], o.now, o.dry_run);
		if (sum.n == 0)
			fprintf(x->out, "no active campaign: nothing to do\n");
		rc = run_status(&sum, e);
	}
	run_summary_free(&sum);
	runlock_release(lock);
	return rc;
}

const struct command cmd_run = {
	"run", run_run, "run [--dry-run] [--workers N]",
	"the daily job: everything due in every active campaign",
	"\nWhat the systemd timer runs, once a day or more often. In order:\n"
	"  1. reads the bounce mailbox (config bounces.maildir), when there is one;\n"
	"  2. for every active campaign before its cutoff: queues what became due (each\n"
	"     segment's first e-mail, the latest reminder e-mail occurrence, the final\n"
	"     notice), sends it through the relays and retries deferred mail;\n"
	"  3. ends every campaign whose cutoff has passed: login reminders stop and unsent\n"
	"     mail fails as expired.\n"
	"Login reminders are derived at login time (cutoff login), so a late run delays no\n"
	"reminder. Running twice the same day sends nothing twice; after missed days an\n"
	"occurrence that was missed is sent once, not once per missed day. One run at a\n"
	"time per database: a second exits 75 naming the first.\n\n"
	"  --dry-run    compose and count everything, send and change nothing\n"
	"  --workers N  sending processes per campaign (default: one per CPU, at most 4)\n\n"
	"Exit status 0 when everything due is done; 75 when something was deferred, every\n"
	"relay was down or the database was busy (run again later: nothing is lost).\n",
};
