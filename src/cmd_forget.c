/* cmd_forget.c — `cutoff forget USER`: erase a person's personal data, keep the counts. */
#include <stdio.h>

#include "cli.h"
#include "report.h"
#include "runlock.h"

static int forget_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct report_forget_result res;
	struct runlock *lock = NULL;
	struct store *s;
	int rc;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage(&cmd_forget, e, "forget needs one user id or address");
	/* Not while an import runs: it keeps its new recipients' address keys in memory until its
	 * end, and an address erased meanwhile would keep its key (db/017). */
	if ((rc = ctx_store(x, 0, &s, e)) != 0 ||
	    (rc = runlock_acquire_file(&lock, x->db_path, ".import-lock", "import", "forget",
				       ctx_now(x), e)) != 0)
		return rc;
	rc = report_forget(s, argv[1], ctx_now(x), &res, e);
	runlock_release(lock);
	if (rc != 0)
		return rc;
	fprintf(x->out, "forgot %s: %lld recipient record%s erased, %lld text%s scrubbed, %lld"
		" queued e-mail%s cancelled; %lld address%s kept suppressed by %s hash only\n",
		argv[1], (long long)res.recipients, res.recipients == 1 ? "" : "s",
		(long long)res.scrubbed, res.scrubbed == 1 ? "" : "s", (long long)res.cancelled,
		res.cancelled == 1 ? "" : "s", (long long)res.addresses,
		res.addresses == 1 ? "" : "es", res.addresses == 1 ? "its" : "their");
	return 0;
}

const struct command cmd_forget = {
	"forget", forget_run, "forget USER",
	"erase a person's personal data everywhere, keeping the anonymous counts",
	"\nUSER is a user id or an address. In one transaction, in every campaign: the\n"
	"recipient's user id becomes forgotten-N, and their address, name, locale, time zone\n"
	"and attributes are erased (segment, client version, state and dates stay, so reports\n"
	"keep their counts); the address is cut out of the relay replies and the event log's\n"
	"details keep only fields that hold no personal data (bounce status and class, not the\n"
	"DSN's text); their logins are re-keyed to forgotten-N; queued and deferred e-mail is\n"
	"cancelled; the address stays suppressed by its SHA-256 hash alone (reason forgotten),\n"
	"so that it is never mailed again; and the event log records \"forgotten\" without\n"
	"personal data. An address that no campaign has is still suppressed. It cannot be\n"
	"undone. While an import runs it exits 75: try again when the import has finished.\n\n"
	"Not covered: copies outside the database (returned mail kept in the bounce Maildir,\n"
	"quarantined messages, rejects files, logs, the mail already delivered).\n",
};
