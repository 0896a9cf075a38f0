/* cmd_user.c — `cutoff user USER`: one person's whole history, in every campaign. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "report.h"
#include "util.h"

static int parse_args(int argc, char **argv, bool *json, struct err *e)
{
	static const struct option longopts[] = {
		{"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		if (ch == 'f' && (strcmp(optarg, "text") == 0 || strcmp(optarg, "json") == 0))
			*json = strcmp(optarg, "json") == 0;
		else
			return cli_usage(&cmd_user, e, "unknown option, or --format is not text or"
					 " json");
	}
	if (argc - optind != 1)
		return cli_usage(&cmd_user, e, "user needs one user id or address");
	return 0;
}

static int user_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct report_user u;
	struct store *s;
	struct buf b;
	bool json = false;
	int rc;

	if ((rc = parse_args(argc, argv, &json, e)) != 0)
		return rc;
	if ((rc = ctx_store(x, STORE_READONLY, &s, e)) != 0)
		return rc;
	buf_init(&b);
	if ((rc = report_user_load(&u, s, argv[optind], e)) == 0) {
		if (json)
			report_user_write_json(&b, &u);
		else
			report_user_write_text(&b, &u);
		if (b.len > 0 && fwrite(b.data, 1, b.len, x->out) != b.len)
			rc = err_sys(e, ERR_IO, errno, "writing the history");
	}
	report_user_free(&u);
	buf_free(&b);
	return rc;
}

const struct command cmd_user = {
	"user", user_run, "user USER [--format text|json]",
	"one person's whole history: e-mails, replies, bounces, logins, reminders, completion",
	"\nUSER is a user id, or an address (its domain matched without regard to case). For\n"
	"every campaign the person is in: who they are, their segment and state, whether their\n"
	"address is suppressed and why, and their history in time order (times in the\n"
	"campaign's zone): imported (segment, import), each e-mail queued and each SMTP attempt\n"
	"(the relay's reply code and text, the Message-ID), deferrals, bounces (class, status,\n"
	"reason), complaints and unsubscribes, each login and login reminder shown,\n"
	"completion, and forget. An address that no campaign has but that is suppressed\n"
	"(forgotten people, for one) is reported as such.\n\n"
	"  --format F   text (default) or json (one object: query, address,\n"
	"               address_suppression, people[] with history[]; times in UTC)\n\n"
	"Read-only: safe while cutoff run or serve is working. Exit status 66 when no one is\n"
	"found.\n",
};
