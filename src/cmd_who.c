/* cmd_who.c — `cutoff who CAMPAIGN`: the people of a campaign in one state, streamed as an
 * aligned table, CSV (RFC 4180) or JSON lines. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "report.h"
#include "schedule.h"
#include "util.h"

#define FLUSH_BYTES (64 * 1024)

struct who_args {
	const char *campaign, *segment;
	enum report_state state;
	enum report_format format;
	int64_t since;
	bool has_since;
};

/* What the walk over the people keeps. */
struct who_walk {
	const struct who_args *a;
	const char *tz;
	FILE *out;
	struct buf b;
	int64_t rows;
	struct err *e;
};

static int parse_format(const char *v, enum report_format *out)
{
	if (strcmp(v, "table") == 0)
		*out = REPORT_TABLE;
	else if (strcmp(v, "csv") == 0)
		*out = REPORT_CSV;
	else if (strcmp(v, "json") == 0)
		*out = REPORT_JSON;
	else
		return -1;
	return 0;
}

static int parse_option(int ch, struct who_args *a, struct err *e)
{
	if (ch == 's' && !report_state_parse(optarg, &a->state))
		return cli_usage(&cmd_who, e, "--state is one of notified, not-notified, bounced,"
				 " deferred, reminded, completed, pending, suppressed");
	if (ch == 'f' && parse_format(optarg, &a->format) != 0)
		return cli_usage(&cmd_who, e, "--format is table, csv or json");
	if (ch == 'g')
		a->segment = optarg;
	if (ch == 'S') {
		if (schedule_parse_instant(optarg, &a->since, e) != 0) {
			err_prefix(e, "--since: ");
			return e->code;
		}
		a->has_since = true;
	}
	if (ch == '?' || ch == ':')
		return cli_usage(&cmd_who, e, "unknown option or missing value");
	return 0;
}

static int parse_args(int argc, char **argv, struct who_args *a, struct err *e)
{
	static const struct option longopts[] = {
		{"state", required_argument, NULL, 's'},  {"segment", required_argument, NULL, 'g'},
		{"since", required_argument, NULL, 'S'},  {"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	int ch, rc;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1)
		if ((rc = parse_option(ch, a, e)) != 0)
			return rc;
	if (argc - optind != 1)
		return cli_usage(&cmd_who, e, "who needs one campaign name");
	a->campaign = argv[optind];
	return 0;
}

static int flush(struct who_walk *w)
{
	if (w->b.len > 0 && fwrite(w->b.data, 1, w->b.len, w->out) != w->b.len)
		return err_sys(w->e, ERR_IO, errno, "writing the list");
	buf_reset(&w->b);
	return 0;
}

static int who_person(void *ud, const struct report_person *p)
{
	struct who_walk *w = ud;

	if (!report_person_in(p, w->a->state) ||
	    (w->a->has_since && report_person_when(p, w->a->state) < w->a->since))
		return 0;
	report_who_row(&w->b, w->a->format, p, w->tz);
	w->rows++;
	return w->b.len >= FLUSH_BYTES ? flush(w) : 0;
}

static int who_list(struct ctx *x, struct store *s, const struct who_args *a,
		    const struct store_campaign *sc, struct err *e)
{
	struct who_walk w = {a, sc->timezone, x->out, {0}, 0, e};
	int64_t segment_id = 0;
	int rc;

	buf_init(&w.b);
	if (a->segment && (rc = store_segment_id(s, sc->id, a->segment, &segment_id, e)) != 0)
		goto out;
	report_who_header(&w.b, a->format);
	if ((rc = store_report_read_begin(s, e)) != 0)
		goto out;
	rc = report_people(s, sc->id, segment_id, who_person, &w, e);
	store_report_read_end(s);
	if (rc == 0)
		rc = flush(&w);
out:
	buf_free(&w.b);
	return rc;
}

static int who_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct who_args a = {NULL, NULL, REPORT_ANY, REPORT_TABLE, 0, false};
	struct store_campaign sc = {0};
	struct store *s;
	int rc;

	if ((rc = parse_args(argc, argv, &a, e)) != 0)
		return rc;
	if ((rc = ctx_store(x, STORE_READONLY, &s, e)) != 0 ||
	    (rc = store_campaign_get(s, a.campaign, &sc, e)) != 0)
		return rc;
	rc = who_list(x, s, &a, &sc, e);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_who = {
	"who", who_run,
	"who CAMPAIGN [--state S] [--segment S] [--since T] [--format table|csv|json]",
	"list the people of a campaign, by state: who was notified, bounced, completed ...",
	"\nOne row per affected person, in import order, streamed as it is read (millions of\n"
	"rows need no memory): user_id, email, segment, state (pending, completed, forgotten),\n"
	"emails (accepted by the relay), first_email, last_email, last_kind and last_result\n"
	"(the latest e-mail and its state), bounce (hard, soft), reminders (login reminders\n"
	"shown), last_reminder, completed, suppressed (why the address is not mailed).\n\n"
	"  --state S     only people in state S (one can be in several):\n"
	"                  notified      an e-mail accepted and not bounced, or a login reminder\n"
	"                  not-notified  neither yet\n"
	"                  bounced       an e-mail bounced, or failed for good (5xx)\n"
	"                  deferred      an e-mail deferred now, to be retried\n"
	"                  reminded      shown a login reminder\n"
	"                  completed     upgraded, or recorded as done\n"
	"                  pending       not completed\n"
	"                  suppressed    suppressed (bounce, complaint, unsubscribe), or forgotten\n"
	"  --segment S   only the segment S\n"
	"  --since T     only people whose STATE happened at or after T (2003-09-01, or\n"
	"                2003-09-01T16:00:00Z): the last notification, bounce, deferral,\n"
	"                reminder, completion or suppression; the last activity of any kind\n"
	"                without --state, or with pending and not-notified\n"
	"  --format F    table (default: fixed-width columns, times in the campaign's zone,\n"
	"                long values cut with ~), csv (RFC 4180 with a header row, CRLF, times\n"
	"                in UTC as 2003-08-18T16:00:00Z) or json (one object a line, same\n"
	"                fields, null when empty)\n\n"
	"Read-only, in one read transaction: safe while cutoff run or serve is working.\n",
};
