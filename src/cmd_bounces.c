/* cmd_bounces.c — `cutoff bounces (--maildir DIR | --mbox FILE | -)`: read returned mail
 * (DSNs, complaints, auto-replies, unsubscribe requests) and act on it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounces.h"
#include "cli.h"
#include "dsn.h"
#include "util.h"

/* Where the messages come from. */
struct source {
	const char *maildir;
	const char *mbox;
	bool stdin_message;
};

static void print_summary(FILE *out, const struct bounces_summary *s, bool dry_run)
{
	fprintf(out, "%s%lld message%s: %lld hard bounce%s, %lld soft, %lld delay%s, %lld"
		" auto-repl%s, %lld complaint%s, %lld unsubscribe%s, %lld other notice%s\n",
		dry_run ? "dry run, nothing changed: " : "", (long long)s->messages,
		s->messages == 1 ? "" : "s", (long long)s->hard, s->hard == 1 ? "" : "s",
		(long long)s->soft, (long long)s->delays, s->delays == 1 ? "" : "s",
		(long long)s->autoreplies, s->autoreplies == 1 ? "y" : "ies",
		(long long)s->complaints, s->complaints == 1 ? "" : "s",
		(long long)s->unsubscribes, s->unsubscribes == 1 ? "" : "s", (long long)s->notices,
		s->notices == 1 ? "" : "s");
	fprintf(out, "  %lld address%s %ssuppressed, %lld quarantined, %lld already processed\n",
		(long long)s->suppressed, s->suppressed == 1 ? "" : "es",
		dry_run ? "would be " : "", (long long)s->quarantined, (long long)s->duplicates);
}

/* The store: read-write, or in a dry run read-only when the database exists (else none). */
static int open_store(struct ctx *x, bool dry_run, struct store **s, struct err *e)
{
	*s = NULL;
	if (dry_run && access(x->db_path, F_OK) != 0)
		return 0; /* classify and attribute by VERP token only */
	return ctx_store(x, dry_run ? STORE_READONLY : 0, s, e);
}

static int run_source(struct ctx *x, const struct source *src, const struct bounces_options *o,
		      struct bounces_summary *sum, struct err *e)
{
	struct store *s = NULL;
	int rc;

	if ((rc = open_store(x, o->dry_run, &s, e)) != 0)
		return rc;
	if (src->maildir != NULL)
		return bounces_process_maildir(s, x->cfg, src->maildir, o, sum, e);
	if (src->mbox != NULL)
		return bounces_process_mbox(s, x->cfg, src->mbox, o, sum, e);
	return bounces_process_fd(s, x->cfg, STDIN_FILENO, x->db_path, o, sum, e);
}

static int parse_args(int argc, char **argv, struct source *src, struct bounces_options *o,
		      bool *json, struct err *e)
{
	static const struct option longopts[] = {
		{"maildir", required_argument, NULL, 'm'}, {"mbox", required_argument, NULL, 'b'},
		{"dry-run", no_argument, NULL, 'n'},       {"format", required_argument, NULL, 'f'},
		{"quarantine", required_argument, NULL, 'Q'},
		{"recipient", required_argument, NULL, 'r'}, {"jobs", required_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	int ch, sources;
	long jobs;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 'm')
			src->maildir = optarg;
		else if (ch == 'b')
			src->mbox = optarg;
		else if (ch == 'n')
			o->dry_run = true;
		else if (ch == 'f' && (strcmp(optarg, "json") == 0 || strcmp(optarg, "text") == 0))
			*json = strcmp(optarg, "json") == 0;
		else if (ch == 'Q')
			o->quarantine = optarg;
		else if (ch == 'r')
			o->envelope = optarg;
		else if (ch == 'j' && str_to_long(optarg, 1, 16, &jobs))
			o->jobs = (int)jobs;
		else
			return cli_usage(&cmd_bounces, e, "unknown option, --format not"
					 " json/text, or --jobs not 1-16");
	}
	for (; optind < argc; optind++) {
		if (strcmp(argv[optind], "-") != 0)
			return cli_usage(&cmd_bounces, e, "unexpected argument (use - for stdin)");
		src->stdin_message = true;
	}
	sources = (src->maildir != NULL) + (src->mbox != NULL) + src->stdin_message;
	if (sources > 1)
		return cli_usage(&cmd_bounces, e, "give one of --maildir, --mbox and -");
	return 0;
}

static int bounces_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct bounces_options o = {.now = ctx_now(x)};
	struct source src = {NULL, NULL, false};
	struct bounces_summary sum = {0};
	bool json = false;
	int rc;

	if ((rc = parse_args(argc, argv, &src, &o, &json, e)) != 0)
		return rc;
	if (src.maildir == NULL && src.mbox == NULL && !src.stdin_message)
		src.maildir = x->cfg->bounces.maildir;
	if (src.maildir == NULL && src.mbox == NULL && !src.stdin_message)
		return cli_usage(&cmd_bounces, e, "bounces needs --maildir DIR, --mbox FILE or -"
				 " (or bounces.maildir in the config)");
	if (src.stdin_message && o.envelope == NULL)
		o.envelope = getenv("ORIGINAL_RECIPIENT") ? getenv("ORIGINAL_RECIPIENT")
							  : getenv("RECIPIENT");
	o.json = json ? x->out : NULL;
	dsn_init();
	rc = run_source(x, &src, &o, &sum, e);
	dsn_shutdown();
	if (!json && (rc == 0 || sum.messages > 0))
		print_summary(x->out, &sum, o.dry_run);
	if (rc != 0 && src.stdin_message && rc != ERR_USAGE) {
		/* The MTA keeps the message and tries again later; nothing was changed. */
		err_prefix(e, "the message stays with the mail system, which will retry: ");
		rc = ERR_TEMPFAIL;
	}
	return rc;
}

const struct command cmd_bounces = {
	"bounces", bounces_run,
	"bounces (--maildir DIR | --mbox FILE | -) [--dry-run] [--format json]",
	"read returned mail (bounces, complaints, auto-replies, unsubscribes) and act on it",
	"\nEach message is parsed once and attributed to the exact delivery: by the signed VERP\n"
	"token of the address it came back to, else the returned message's Message-ID, else its\n"
	"X-Cutoff-* headers, else the DSN's Final-Recipient, else a signed token in its text.\n"
	"A hard bounce marks the delivery bounced and suppresses the address; a soft bounce is\n"
	"counted (bounces.soft_threshold of them on distinct days suppress; a later success\n"
	"resets the count); a complaint suppresses; an unsubscribe request sent to a message's\n"
	"List-Unsubscribe address unsubscribes that recipient from the campaign (or everywhere,\n"
	"with bounces.unsubscribe = \"global\"); delays and auto-replies only go into the log.\n"
	"Processing is idempotent: a message read again counts nothing twice.\n\n"
	"  --maildir DIR      a Maildir: messages in DIR/new are processed and moved to\n"
	"                     DIR/cur with the S flag, never deleted (default: the config's\n"
	"                     bounces.maildir); with --dry-run DIR may be any folder of messages\n"
	"  --mbox FILE        an mbox file (left unchanged)\n"
	"  -                  one message on standard input, for an MTA pipe alias such as\n"
	"                     bounces: \"|cutoff bounces -\"; the envelope recipient is taken\n"
	"                     from $ORIGINAL_RECIPIENT or $RECIPIENT (Postfix local(8)) or\n"
	"                     --recipient\n"
	"  --recipient ADDR   the address the message was delivered to (stdin)\n"
	"  --dry-run          classify and attribute only: no database write, no file moved\n"
	"  --format json      one JSON line per message: file, index (mbox), kind,\n"
	"                     attributed_by, recipients (address, status, reply_code, reason,\n"
	"                     class), action, delivery, reason (why quarantined)\n"
	"  --jobs N           threads reading and parsing messages (default: one per\n"
	"                     processor); they are always acted on in order\n"
	"  --quarantine DIR   where messages that cannot be parsed, recognised or attributed go,\n"
	"                     each with NAME.reason beside it (default: the config's\n"
	"                     bounces.quarantine, else ../quarantine beside the Maildir, the\n"
	"                     folder of the mbox + /quarantine, or the database's folder +\n"
	"                     /quarantine for stdin)\n\n"
	"Exit status 0 when every message was handled (quarantined ones included); 74 when some\n"
	"could not be read or moved (they stay where they were); 75 when the database is busy.\n"
	"With -, every failure exits 75 so that the MTA keeps the message and retries.\n",
};
