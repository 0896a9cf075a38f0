/* cmd_calendar.c — `cutoff calendar CAMPAIGN`: the milestones as iCalendar (RFC 5545). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "campaign.h"
#include "cli.h"
#include "util.h"

static int calendar_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {{NULL, 0, NULL, 0}};
	struct store_campaign sc = {0};
	struct campaign *c = NULL;
	char *text = NULL;
	int ch, rc;

	optind = 0, opterr = 0;
	if ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		return cli_usage(&cmd_calendar, e, "unknown option");
	if (argc - optind != 1)
		return cli_usage(&cmd_calendar, e, "calendar needs a campaign name");
	if ((rc = cmd_load_campaign(x, argv[optind], &sc, &c, e)) != 0)
		return rc;
	if ((rc = calendar_campaign(c, ctx_now(x), &text, e)) == 0 &&
	    fputs(text, x->out) == EOF)
		rc = err_sys(e, ERR_IO, errno, "writing the calendar");
	free(text);
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_calendar = {
	"calendar", calendar_run, "calendar CAMPAIGN",
	"the campaign's milestones as iCalendar (RFC 5545)",
	"\nPrints a VCALENDAR with the campaign's time zone (VTIMEZONE) and one event per\n"
	"milestone: the first e-mail of each segment, the start of login reminders, each\n"
	"reminder e-mail, the final notice and the cutoff, at their local times. Save it as a\n"
	".ics file to import it into a calendar; the events keep their UIDs, so importing a\n"
	"later version updates them. Example: cutoff calendar NAME > NAME.ics\n",
};
