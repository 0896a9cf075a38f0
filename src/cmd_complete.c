/* cmd_complete.c — `cutoff complete CAMPAIGN (USER... | --file F.csv)`: record that users
 * upgraded; their e-mail and reminders stop at once, queued e-mail included (RFC 4180 input). */
#include <csv.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "campaign.h"
#include "cli.h"
#include "store_login.h"
#include "util.h"

#define COMMIT_EVERY 1000 /* completions per transaction */
#define MAX_LISTED 20     /* users not found that are named one by one */

struct completer {
	struct ctx *x;
	struct store *s;
	int64_t campaign_id;
	const char *campaign;
	const char *file;  /* the --file, or NULL */
	int64_t row;       /* CSV row (the header is row 1) */
	long in_txn;       /* completions in the open transaction, or -1 when none is open */
	int64_t completed, already, not_pending, not_found, bad, cancelled;
	struct err *e;
};

static int txn_flush(struct completer *k, bool final)
{
	int rc;

	if (k->in_txn < 0 || (!final && k->in_txn < COMMIT_EVERY))
		return 0;
	k->in_txn = -1;
	if ((rc = store_commit(k->s, k->e)) != 0)
		store_rollback(k->s);
	return rc;
}

/* Where a user came from, for messages: "F.csv row 4: " or "". */
static void origin(const struct completer *k, char *buf, size_t n)
{
	if (k->file != NULL)
		snprintf(buf, n, "%s row %lld: ", k->file, (long long)k->row);
	else
		buf[0] = '\0';
}

static char *detail_json(const struct completer *k)
{
	json_t *o = k->file ? json_pack("{s:s, s:s, s:I}", "by", "file", "file", k->file, "row",
					(json_int_t)k->row)
			    : json_pack("{s:s}", "by", "command");
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return text;
}

static int complete_found(void *ud, const struct store_recipient *r)
{
	struct completer *k = ud;
	char *detail = detail_json(k);
	bool changed = false;
	int64_t cancelled = 0;
	int rc = store_recipient_complete(k->s, k->campaign_id, r->id, ctx_now(k->x), detail,
					  &changed, &cancelled, k->e);

	free(detail);
	if (rc != 0)
		return rc;
	if (changed)
		k->completed++, k->cancelled += cancelled;
	else if (strcmp(r->state, "completed") == 0)
		k->already++;
	else
		k->not_pending++; /* unaffected or forgotten: nothing to complete */
	return 0;
}

/* Completes the recipient with user id or address `key`. */
static int complete_key(struct completer *k, const char *key)
{
	char where[400];
	int rc;

	if (k->in_txn < 0) {
		if ((rc = store_begin(k->s, k->e)) != 0)
			return rc;
		k->in_txn = 0;
	}
	k->in_txn++;
	rc = store_recipient_lookup(k->s, k->campaign_id, key, complete_found, k, k->e);
	if (rc == ERR_NOTFOUND) {
		err_clear(k->e);
		origin(k, where, sizeof where);
		if (k->not_found++ < MAX_LISTED)
			fprintf(stderr, "cutoff: %sno user or address '%s' in campaign %s\n", where,
				key, k->campaign);
		rc = 0;
	}
	return rc != 0 ? rc : txn_flush(k, false);
}

/* ---- --file: a CSV with a user_id or an email column ------------------------------------ */

struct csv_state {
	struct completer *k;
	int user_col, email_col; /* -1: absent */
	int col;                 /* the field being read */
	char *user, *email;      /* this row's */
	bool header_done;
	int rc;
};

static bool column_is(const char *field, const char *name)
{
	if (strncmp(field, "\xef\xbb\xbf", 3) == 0)
		field += 3; /* a BOM before the first column name */
	return strcasecmp(field, name) == 0;
}

static void on_field(void *s, size_t len, void *ud)
{
	struct csv_state *cs = ud;
	const char *f = s;

	(void)len;
	if (!cs->header_done) {
		if (column_is(f, "user_id"))
			cs->user_col = cs->col;
		else if (column_is(f, "email"))
			cs->email_col = cs->col;
	} else if (cs->col == cs->user_col) {
		free(cs->user), cs->user = xstrdup(f);
	} else if (cs->col == cs->email_col) {
		free(cs->email), cs->email = xstrdup(f);
	}
	cs->col++;
}

/* One data row: its user id, else its normalised address. */
static int row_complete(struct csv_state *cs)
{
	struct completer *k = cs->k;
	struct err ae = {0};
	char *addr = NULL;
	int rc;

	if (cs->user != NULL && cs->user[0] != '\0')
		return complete_key(k, cs->user);
	if (cs->email != NULL && cs->email[0] != '\0' &&
	    address_normalize(cs->email, &addr, &ae) == 0) {
		rc = complete_key(k, addr);
		free(addr);
		return rc;
	}
	k->bad++;
	fprintf(stderr, "cutoff: %s row %lld: %s\n", k->file, (long long)k->row,
		ae.msg[0] ? ae.msg : "no user_id or email in this row");
	return 0;
}

static void on_row(int c, void *ud)
{
	struct csv_state *cs = ud;

	(void)c;
	cs->k->row++;
	if (!cs->header_done) {
		cs->header_done = true;
		if (cs->user_col < 0 && cs->email_col < 0)
			cs->rc = err_set(cs->k->e, ERR_DATA, "%s: the first row must name a user_id"
					 " or an email column", cs->k->file);
	} else if (cs->rc == 0 && cs->col > 0) {
		cs->rc = row_complete(cs);
	}
	free(cs->user), free(cs->email);
	cs->user = cs->email = NULL;
	cs->col = 0;
}

static int complete_file(struct completer *k, const char *path)
{
	struct csv_state cs = {k, -1, -1, 0, NULL, NULL, false, 0};
	struct csv_parser p;
	char chunk[65536];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL)
		return err_sys(k->e, ERR_NOTFOUND, errno, "%s", path);
	csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
	while (cs.rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		if (csv_parse(&p, chunk, n, on_field, on_row, &cs) != n && cs.rc == 0)
			cs.rc = err_set(k->e, ERR_DATA, "%s row %lld: malformed CSV: %s", path,
					(long long)k->row + 1, csv_strerror(csv_error(&p)));
	if (cs.rc == 0 && ferror(f))
		cs.rc = err_sys(k->e, ERR_IO, errno, "reading %s", path);
	if (cs.rc == 0 && csv_fini(&p, on_field, on_row, &cs) != 0)
		cs.rc = err_set(k->e, ERR_DATA, "%s: the file ends inside a quoted field", path);
	if (cs.rc == 0 && !cs.header_done)
		cs.rc = err_set(k->e, ERR_DATA, "%s is empty: it needs a user_id or email column",
				path);
	csv_free(&p);
	free(cs.user), free(cs.email);
	fclose(f);
	return cs.rc;
}

/* ---- the command ---------------------------------------------------------------------- */

static void print_counts(FILE *out, const struct completer *k)
{
	fprintf(out, "completed in %s: %lld user%s (%lld queued e-mail%s cancelled); %lld already"
		" completed, %lld not affected, %lld not found%s%lld%s\n",
		k->campaign, (long long)k->completed, k->completed == 1 ? "" : "s",
		(long long)k->cancelled, k->cancelled == 1 ? "" : "s", (long long)k->already,
		(long long)k->not_pending, (long long)k->not_found,
		k->file ? ", " : "", (long long)(k->file ? k->bad : 0),
		k->file ? " bad rows" : "");
	if (k->not_found > MAX_LISTED)
		fprintf(stderr, "cutoff: ... and %lld more users not found\n",
			(long long)(k->not_found - MAX_LISTED));
}

/* Users given that are not in the campaign, or unusable rows: the exit status says so. */
static int complete_status(const struct completer *k, struct err *e)
{
	if (k->file == NULL && k->not_found > 0)
		return err_set(e, ERR_NOTFOUND, "%lld of the users given %s not in campaign %s",
			       (long long)k->not_found, k->not_found == 1 ? "is" : "are",
			       k->campaign);
	if (k->bad > 0)
		return err_set(e, ERR_DATA, "%lld row(s) of %s had no usable user_id or email;"
			       " the others were completed", (long long)k->bad, k->file);
	return 0;
}

static int complete_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct option longopts[] = {{"file", required_argument, NULL, 'f'},
						 {NULL, 0, NULL, 0}};
	struct completer k = {.x = x, .in_txn = -1, .e = e};
	struct store_campaign sc = {0};
	int ch, rc;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "f:", longopts, NULL)) != -1) {
		if (ch != 'f')
			return cli_usage(&cmd_complete, e, "unknown option");
		k.file = optarg;
	}
	if (argc - optind < 1 || (k.file == NULL) == (argc - optind < 2))
		return cli_usage(&cmd_complete, e, "complete needs a campaign and either users or"
				 " --file F.csv");
	if ((rc = ctx_store(x, 0, &k.s, e)) != 0 ||
	    (rc = store_campaign_get(k.s, argv[optind], &sc, e)) != 0)
		return rc;
	k.campaign_id = sc.id, k.campaign = sc.name;
	if (k.file != NULL)
		rc = complete_file(&k, k.file);
	for (int i = optind + 1; rc == 0 && i < argc; i++)
		rc = complete_key(&k, argv[i]);
	if (rc == 0)
		rc = txn_flush(&k, true);
	else if (k.in_txn >= 0)
		store_rollback(k.s);
	if (rc == 0) {
		print_counts(x->out, &k);
		rc = complete_status(&k, e);
	}
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_complete = {
	"complete", complete_run, "complete CAMPAIGN (USER... | --file F.csv)",
	"record that users upgraded: their e-mail and reminders stop now",
	"\nMarks each user (a user id or an e-mail address) of the campaign as completed: no\n"
	"more e-mail, no more login reminders, and every delivery still queued or deferred is\n"
	"cancelled at once (one already handed to a relay cannot be called back). Users already\n"
	"completed, not affected, or not in the campaign are counted and left alone; completing\n"
	"again is harmless. Completion works for any segment, discontinued ones included (the\n"
	"user moved to a supported client); logins complete only segments with a target.\n\n"
	"  --file F.csv  a CSV whose first row names a user_id or an email column (user_id\n"
	"                wins when a row has both); other columns are ignored\n\n"
	"Exit status 66 when a USER given on the command line is not in the campaign; 65 when\n"
	"rows of the file have neither a user id nor a valid address (the others are completed).\n",
};
