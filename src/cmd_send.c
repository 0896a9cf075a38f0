/* cmd_send.c — `cutoff send CAMPAIGN [--dry-run] [--limit N]`: the e-mail wave of one campaign. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

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

static int send_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {
		{"dry-run", no_argument, NULL, 'n'},
		{"limit", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	struct sender_options o = {false, 0, x->tty, !x->tty, ctx_now(x)};
	struct store_campaign sc = {0};
	struct sender_summary sum;
	struct campaign *c = NULL;
	struct runlock *lock = NULL;
	long limit;
	int ch, rc;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "nl:", longopts, NULL)) != -1) {
		if (ch == 'n')
			o.dry_run = true;
		else if (ch == 'l' && str_to_long(optarg, 1, 1000000000L, &limit))
			o.limit = limit;
		else
			return cli_usage(&cmd_send, e, "unknown option or bad --limit");
	}
	if (argc - optind != 1)
		return cli_usage(&cmd_send, e, "send needs a campaign name");
	if ((rc = cmd_load_campaign(x, argv[optind], &sc, &c, e)) != 0)
		return rc;
	if ((rc = runlock_acquire(&lock, x->db_path, "send", ctx_now(x), e)) == 0 &&
	    (rc = sender_send(x->store, x->cfg, c, sc.id, &o, &sum, e)) == 0) {
		cmd_print_send_summary(x->out, c->name, &sum, o.dry_run);
		rc = cmd_send_status(&sum, e);
	}
	runlock_release(lock);
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_send = {
	"send", send_run, "send CAMPAIGN [--dry-run] [--limit N]",
	"send the campaign's due e-mail through the configured relays",
	"\nQueues what is due (the initial e-mail of each segment whose time has come, reminder\n"
	"e-mails, the final notice), then sends it: each delivery is recorded before its SMTP\n"
	"transaction and settled after it (2xx sent, 4xx or a dropped connection deferred with\n"
	"backoff until the cutoff, 5xx failed; a hard failure suppresses the address). One run\n"
	"at a time per database; a second one exits 75 naming the holder.\n\n"
	"  --dry-run   render and compose every due message, send nothing, record nothing\n"
	"  --limit N   stop after N messages\n\n"
	"Exit status 0 when everything due was sent; 75 when something was deferred, every\n"
	"relay was down, or the run was interrupted (nothing unsent is lost).\n",
};
