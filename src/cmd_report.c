/* cmd_report.c — `cutoff report CAMPAIGN`: the funnel, per segment, day by day; as a table,
 * JSON, or one self-contained HTML page with an SVG chart. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"
#include "util.h"

static int parse_args(int argc, char **argv, enum report_format *f, const char **file,
		      struct err *e)
{
	static const struct option longopts[] = {
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, ":o:", longopts, NULL)) != -1) {
		if (ch == 'o')
			*file = optarg;
		else if (ch == 'f' && strcmp(optarg, "table") == 0)
			*f = REPORT_TABLE;
		else if (ch == 'f' && strcmp(optarg, "json") == 0)
			*f = REPORT_JSON;
		else if (ch == 'f' && strcmp(optarg, "html") == 0)
			*f = REPORT_HTML;
		else
			return cli_usage(&cmd_report, e, "unknown option, or --format is not table,"
					 " json or html");
	}
	if (argc - optind != 1)
		return cli_usage(&cmd_report, e, "report needs one campaign name");
	return 0;
}

/* Writes b to path through a temporary file renamed into place: a reader never sees half. */
static int write_file(const char *path, const struct buf *b, struct err *e)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = 0;

	if (f == NULL) {
		rc = err_sys(e, ERR_IO, errno, "cannot write %s", tmp);
		goto out;
	}
	if ((b->len > 0 && fwrite(b->data, 1, b->len, f) != b->len) || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0)
		rc = err_sys(e, ERR_IO, errno, "writing %s", tmp);
	if (fclose(f) != 0 && rc == 0)
		rc = err_sys(e, ERR_IO, errno, "writing %s", tmp);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = err_sys(e, ERR_IO, errno, "renaming %s to %s", tmp, path);
	if (rc != 0)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

static int report_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	enum report_format f = REPORT_TABLE;
	struct store_campaign sc = {0};
	const char *file = NULL;
	struct report r = {0};
	struct store *s;
	struct buf b;
	int rc;

	if ((rc = parse_args(argc, argv, &f, &file, e)) != 0)
		return rc;
	if ((rc = ctx_store(x, STORE_READONLY, &s, e)) != 0 ||
	    (rc = store_campaign_get(s, argv[optind], &sc, e)) != 0)
		return rc;
	buf_init(&b);
	if ((rc = report_build(&r, s, &sc, ctx_now(x), e)) != 0)
		goto out;
	if (f == REPORT_HTML)
		report_write_html(&b, &r);
	else if (f == REPORT_JSON)
		report_write_json(&b, &r);
	else
		report_write_table(&b, &r);
	if (file != NULL)
		rc = write_file(file, &b, e);
	else if (b.len > 0 && fwrite(b.data, 1, b.len, x->out) != b.len)
		rc = err_sys(e, ERR_IO, errno, "writing the report");
out:
	report_free(&r);
	buf_free(&b);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_report = {
	"report", report_run, "report CAMPAIGN [--format table|json|html] [-o FILE]",
	"the campaign's funnel, per segment and day by day; an HTML page with a chart",
	"\nThe funnel of the affected people: e-mailed (an e-mail accepted by the relay),\n"
	"delivered (one accepted and not bounced), reminded at login, completed; and bounced,\n"
	"suppressed, still pending (not completed). The same per segment, then one line per day\n"
	"of the campaign's time zone from the announcement to today (--now): e-mails accepted,\n"
	"login reminders shown, people notified and completed for the first time, bounces, and\n"
	"the running share of people notified and completed. The counts agree with\n"
	"cutoff who --state.\n\n"
	"  --format F   table (default), json (one object: campaign, dates in UTC, funnel,\n"
	"               segments[], days[]) or html (one self-contained page: an inline SVG\n"
	"               chart of notification and completion over time with the reminder\n"
	"               start and the cutoff marked, and the tables; no scripts, no external\n"
	"               styles or fonts)\n"
	"  -o, --output FILE   write to FILE (through a temporary file renamed into place)\n"
	"               instead of standard output\n\n"
	"Read-only, in one read transaction: safe while cutoff run or serve is working.\n",
};
