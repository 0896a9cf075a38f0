/* cmd_import.c — `cutoff import CAMPAIGN FILE.csv`: load the affected-user list. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "cli.h"
#include "import.h"
#include "util.h"

static void print_counts(FILE *out, const char *name, const char *path,
			 const struct import_result *r)
{
	const struct store_import_counts *c = &r->counts;

	fprintf(out, "imported %s into %s: %lld rows\n", path, name, (long long)c->rows);
	fprintf(out, "  added         %10lld\n", (long long)c->added);
	fprintf(out, "  updated       %10lld\n", (long long)c->updated);
	fprintf(out, "  unchanged     %10lld\n", (long long)c->unchanged);
	fprintf(out, "  merged        %10lld  (duplicate user id or address)\n",
		(long long)c->merged);
	fprintf(out, "  not affected  %10lld\n", (long long)c->not_affected);
	fprintf(out, "  rejected      %10lld%s%s%s\n", (long long)c->rejected,
		r->rejects_path ? "  (line numbers and reasons in " : "",
		r->rejects_path ? r->rejects_path : "", r->rejects_path ? ")" : "");
}

static int import_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {
		{"rejects", required_argument, NULL, 'r'},
		{"no-progress", no_argument, NULL, 'P'},
		{NULL, 0, NULL, 0},
	};
	struct import_options o = {.progress = x->tty, .now = ctx_now(x), .db_path = x->db_path};
	struct import_result r = {0};
	struct store_campaign sc = {0};
	struct campaign *c = NULL;
	struct store *s;
	int ch, rc;

	optind = 0, opterr = 0; /* 0: glibc re-initialises its permutation state */
	while ((ch = getopt_long(argc, argv, "r:", longopts, NULL)) != -1) {
		if (ch == 'r')
			o.rejects_path = optarg;
		else if (ch == 'P')
			o.progress = false;
		else
			return cli_usage(&cmd_import, e, "unknown option");
	}
	if (argc - optind != 2)
		return cli_usage(&cmd_import, e, "import needs a campaign and a CSV file");
	/* Each batch's WAL frames in a few large writes (store_walbuf.h; safe at the import's
	 * synchronous=NORMAL: a write error fails the batch's commit). */
	if ((rc = ctx_store(x, STORE_WAL_BUFFERED, &s, e)) != 0 ||
	    (rc = cmd_load_campaign(x, argv[optind], &sc, &c, e)) != 0)
		return rc;
	rc = import_csv(s, c, sc.id, argv[optind + 1], &o, &r, e);
	if (rc == 0 || r.counts.rows > 0)
		print_counts(x->out, c->name, argv[optind + 1], &r);
	if (rc == 0 && r.counts.rejected > 0)
		rc = err_set(e, ERR_DATA,
			     "%lld row(s) of %s were rejected and the rest imported; fix them in %s"
			     " (drop its first two columns) and import that file",
			     (long long)r.counts.rejected, argv[optind + 1], r.rejects_path);
	free(r.rejects_path);
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_import = {
	"import", import_run, "import CAMPAIGN FILE.csv [--rejects FILE]",
	"load the affected-user list (streaming, idempotent)",
	"\nReads an RFC 4180 CSV (UTF-8, optional BOM, CRLF or LF, quoted fields) whose\n"
	"first row names the columns: email is required; user_id, name, locale, timezone,\n"
	"client, version, platform and os are known; any other column is kept as a template\n"
	"attribute. Each row is matched to the campaign's segments; rows matching none are\n"
	"counted as not affected. Re-importing the same or an updated file is safe: rows are\n"
	"added, updated, left unchanged, or merged with a duplicate user id or address.\n\n"
	"  --rejects FILE  where rejected rows go (default FILE.csv.rejects.csv): a CSV with\n"
	"                  the line number and reason, then the row's own fields\n"
	"  --no-progress   no progress line even on a terminal\n\n"
	"Exit status 65 when some rows were rejected (the rest are imported); 75 when another\n"
	"import is running on the database (one at a time).\n",
};
