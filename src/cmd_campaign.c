/* cmd_campaign.c — `cutoff campaign check|add|list|show|pause|resume|cancel`. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "cli.h"
#include "import.h"
#include "render.h"
#include "schedule.h"
#include "util.h"

void cmd_format_local(int64_t t, const char *tz, char *buf, size_t n)
{
	if (schedule_format_local(t, tz, buf, n) != 0)
		snprintf(buf, n, "@%lld", (long long)t);
}

int cmd_load_campaign(struct ctx *x, const char *name, struct store_campaign *sc,
		      struct campaign **c, struct err *e)
{
	struct store *s;
	char *origin;
	int rc;

	if ((rc = ctx_store(x, 0, &s, e)) != 0 || (rc = store_campaign_get(s, name, sc, e)) != 0)
		return rc;
	origin = xasprintf("%s (as added)", sc->source_path);
	rc = campaign_load_text(c, sc->definition, origin, sc->templates_dir, e);
	free(origin);
	if (rc != 0)
		store_campaign_clear(sc);
	return rc;
}

static void print_segments(FILE *out, const struct campaign *c)
{
	char when[64];

	for (size_t i = 0; i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];
		cmd_format_local(g->send_at, c->timezone, when, sizeof when);
		fprintf(out, "  %-24s first e-mail %s, %s%s, templates %s/\n", g->name, when,
			g->target_version ? "complete at version " : "discontinued",
			g->target_version ? g->target_version : "", g->template_name);
	}
}

static void print_campaign(FILE *out, const struct campaign *c)
{
	char a[64], r[64], k[64], f[64];

	cmd_format_local(c->announce_at, c->timezone, a, sizeof a);
	cmd_format_local(c->reminder_start_at, c->timezone, r, sizeof r);
	cmd_format_local(c->cutoff_at, c->timezone, k, sizeof k);
	fprintf(out, "campaign %s: %s\n", c->name, c->title);
	fprintf(out, "  from            %s\n", c->from);
	fprintf(out, "  time zone       %s\n", c->timezone);
	fprintf(out, "  announce        %s\n", a);
	fprintf(out, "  reminder start  %s\n", r);
	fprintf(out, "  cutoff          %s\n", k);
	fprintf(out, "  login reminders %s\n", c->login_cadence);
	if (c->reminder_emails)
		fprintf(out, "  reminder e-mail %s\n", c->reminder_emails);
	if (c->final_notice) {
		cmd_format_local(c->final_notice_at, c->timezone, f, sizeof f);
		fprintf(out, "  final notice    %s before the cutoff (%s)\n", c->final_notice, f);
	}
	fprintf(out, "  templates       %s\n", c->templates_dir);
	fprintf(out, "segments (first match wins):\n");
	print_segments(out, c);
}

/* Loads a campaign file and checks every template of it (render_check_campaign). */
static int load_and_check(struct ctx *x, const char *path, struct campaign **out, struct err *e)
{
	struct diag d;
	int rc;

	if ((rc = campaign_load_file(out, path, x->cfg->templates_dir, e)) != 0)
		return rc;
	diag_init(&d);
	if (render_check_campaign(*out, &d) != 0) {
		rc = diag_to_err(&d, ERR_CONFIG, e);
		campaign_free(*out);
		*out = NULL;
	}
	diag_free(&d);
	return rc;
}

static int campaign_check(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct campaign *c = NULL;
	int rc;

	if (argc != 3)
		return cli_usage(&cmd_campaign, e, "campaign check needs a campaign file");
	if ((rc = load_and_check(x, argv[2], &c, e)) != 0)
		return rc;
	print_campaign(x->out, c);
	fprintf(x->out, "%s: OK\n", argv[2]);
	campaign_free(c);
	return 0;
}

static char *definition_digest(const struct campaign *c)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char *hex = xmalloc(2 * SHA256_DIGEST_LENGTH + 1);
	char *text = xasprintf("%s\n%s", c->source_text, c->templates_dir);

	SHA256((const unsigned char *)text, strlen(text), md);
	free(text);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

/* Saves c's segments and returns their ids in keep (caller frees). */
static int save_segments(struct store *s, int64_t campaign_id, const struct campaign *c,
			 int64_t **keep, struct err *e)
{
	struct store_segment *segs = xcalloc(c->n_segments, sizeof *segs);
	int rc;

	*keep = xcalloc(c->n_segments, sizeof **keep);
	for (size_t i = 0; i < c->n_segments; i++) {
		segs[i].name = c->segments[i].name;
		segs[i].position = (int)i;
		segs[i].template_name = c->segments[i].template_name;
		segs[i].send_at = c->segments[i].send_at;
		segs[i].target_version = c->segments[i].target_version;
	}
	rc = store_segments_put(s, campaign_id, segs, c->n_segments, e);
	for (size_t i = 0; rc == 0 && i < c->n_segments; i++)
		(*keep)[i] = segs[i].id;
	free(segs);
	return rc;
}

/* Writes the campaign and its segments, re-matching recipients already imported. */
static int save_campaign(struct ctx *x, struct store *s, const struct campaign *c,
			 const char *digest, bool existed, int64_t *moved, struct err *e)
{
	struct store_campaign row = {0};
	int64_t *keep = NULL;
	int rc;

	row.name = c->name, row.title = c->title, row.timezone = c->timezone;
	row.announce_at = c->announce_at, row.reminder_start_at = c->reminder_start_at;
	row.cutoff_at = c->cutoff_at, row.definition = c->source_text;
	row.source_path = c->source_path, row.templates_dir = c->templates_dir;
	row.digest = (char *)digest;
	*moved = 0;
	if ((rc = store_campaign_put(s, &row, ctx_now(x), e)) != 0 ||
	    (rc = save_segments(s, row.id, c, &keep, e)) != 0)
		goto out;
	if (existed && (rc = import_rematch(s, c, row.id, ctx_now(x), moved, e)) != 0)
		goto out;
	rc = store_segments_prune(s, row.id, keep, c->n_segments, e);
out:
	free(keep);
	return rc;
}

/* Refuses unsafe changes to a campaign that has begun sending. */
static int check_update(const struct store_campaign *old_row, const struct campaign *c,
			struct err *e)
{
	struct campaign *old = NULL;
	int rc;

	if (old_row->sending_started_at == 0)
		return 0;
	if ((rc = campaign_load_text(&old, old_row->definition, old_row->source_path,
				     old_row->templates_dir, e)) != 0)
		return rc;
	rc = campaign_check_update(old, c, e);
	campaign_free(old);
	return rc;
}

static int campaign_add(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct campaign *c = NULL;
	struct store_campaign old = {0};
	struct err probe = {0};
	struct store *s;
	char *digest = NULL;
	int64_t moved = 0;
	bool existed;
	int rc;

	if (argc != 3)
		return cli_usage(&cmd_campaign, e, "campaign add needs a campaign file");
	if ((rc = load_and_check(x, argv[2], &c, e)) != 0 ||
	    (rc = ctx_store(x, 0, &s, e)) != 0 || (rc = store_begin(s, e)) != 0)
		goto out;
	existed = store_campaign_get(s, c->name, &old, &probe) == 0;
	if (!existed && probe.code != ERR_NOTFOUND) {
		rc = err_set(e, probe.code, "%s", probe.msg);
		goto fail;
	}
	digest = definition_digest(c);
	if (existed && strcmp(old.digest, digest) == 0) {
		store_rollback(s);
		fprintf(x->out, "campaign %s: unchanged\n", c->name);
		goto out;
	}
	if ((existed && (rc = check_update(&old, c, e)) != 0) ||
	    (rc = save_campaign(x, s, c, digest, existed, &moved, e)) != 0 ||
	    (rc = store_commit(s, e)) != 0)
		goto fail;
	fprintf(x->out, "campaign %s: %s (%zu segments", c->name, existed ? "updated" : "added",
		c->n_segments);
	if (moved > 0)
		fprintf(x->out, "; %lld recipients re-matched to other segments", (long long)moved);
	fprintf(x->out, ")\n");
	goto out;
fail:
	store_rollback(s);
out:
	free(digest);
	store_campaign_clear(&old);
	campaign_free(c);
	return rc;
}

struct list_ctx {
	FILE *out;
	int n;
};

static int list_one(void *ud, const struct store_campaign *c)
{
	struct list_ctx *l = ud;
	char a[64], k[64];

	if (l->n++ == 0)
		fprintf(l->out, "%-24s %-10s %-22s %-22s %s\n", "NAME", "STATE", "ANNOUNCE",
			"CUTOFF", "TITLE");
	cmd_format_local(c->announce_at, c->timezone, a, sizeof a);
	cmd_format_local(c->cutoff_at, c->timezone, k, sizeof k);
	fprintf(l->out, "%-24s %-10s %-22s %-22s %s\n", c->name, c->state, a, k, c->title);
	return 0;
}

static int campaign_list(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct list_ctx l = {x->out, 0};
	struct store *s;
	int rc;

	(void)argv;
	if (argc != 2)
		return cli_usage(&cmd_campaign, e, "campaign list takes no arguments");
	if ((rc = ctx_store(x, 0, &s, e)) != 0 ||
	    (rc = store_campaign_each(s, list_one, &l, e)) != 0)
		return rc;
	if (l.n == 0)
		fprintf(x->out, "no campaigns (add one with: cutoff campaign add FILE)\n");
	return 0;
}

static void print_counts(FILE *out, struct store_segment_counts *v, size_t n)
{
	int64_t total = 0, pending = 0, completed = 0;

	fprintf(out, "recipients:\n  %-24s %10s %10s %10s\n", "SEGMENT", "TOTAL", "PENDING",
		"COMPLETED");
	for (size_t i = 0; i < n; i++) {
		if (v[i].name == NULL && v[i].total == 0)
			continue;
		fprintf(out, "  %-24s %10lld %10lld %10lld\n", v[i].name ? v[i].name : "(not affected)",
			(long long)v[i].total, (long long)v[i].pending, (long long)v[i].completed);
		total += v[i].total, pending += v[i].pending, completed += v[i].completed;
	}
	fprintf(out, "  %-24s %10lld %10lld %10lld\n", "all", (long long)total,
		(long long)pending, (long long)completed);
}

static int print_deliveries(struct ctx *x, int64_t campaign_id, struct err *e)
{
	struct store_delivery_counts d;
	int rc = store_delivery_counts(x->store, campaign_id, ctx_now(x), &d, e);

	if (rc != 0)
		return rc;
	fprintf(x->out, "e-mail deliveries:\n  sent %lld, queued %lld (due now %lld), deferred %lld,"
		" failed %lld, bounced %lld, suppressed %lld, cancelled %lld, in flight %lld\n",
		(long long)d.sent, (long long)d.queued, (long long)d.due, (long long)d.deferred,
		(long long)d.failed, (long long)d.bounced, (long long)d.suppressed,
		(long long)d.cancelled, (long long)d.sending);
	if (d.possibly_duplicated > 0)
		fprintf(x->out, "  %lld recovered from runs that died mid-send (possibly duplicated)\n",
			(long long)d.possibly_duplicated);
	return 0;
}

static int campaign_show(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct store_campaign sc = {0};
	struct campaign *c = NULL;
	struct store_segment_counts *v = NULL;
	size_t n = 0;
	int rc;

	if (argc != 3)
		return cli_usage(&cmd_campaign, e, "campaign show needs a campaign name");
	if ((rc = cmd_load_campaign(x, argv[2], &sc, &c, e)) != 0)
		return rc;
	print_campaign(x->out, c);
	fprintf(x->out, "state: %s%s\n", sc.state,
		sc.sending_started_at ? " (sending has begun)" : " (nothing sent yet)");
	if ((rc = store_segment_counts(x->store, sc.id, &v, &n, e)) == 0)
		print_counts(x->out, v, n);
	if (rc == 0)
		rc = print_deliveries(x, sc.id, e);
	store_segment_counts_free(v, n);
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

/* pause, resume, cancel: which states each may leave from, and where it goes. */
static int campaign_state(struct ctx *x, int argc, char **argv, struct err *e)
{
	const char *verb = argv[1], *to;
	struct store_campaign sc = {0};
	struct store *s;
	bool ok;
	int rc;

	if (argc != 3)
		return cli_usage(&cmd_campaign, e, "this needs a campaign name");
	if ((rc = ctx_store(x, 0, &s, e)) != 0 || (rc = store_campaign_get(s, argv[2], &sc, e)) != 0)
		return rc;
	if (strcmp(verb, "pause") == 0)
		to = "paused", ok = strcmp(sc.state, "active") == 0 || strcmp(sc.state, to) == 0;
	else if (strcmp(verb, "resume") == 0)
		to = "active", ok = strcmp(sc.state, "paused") == 0 || strcmp(sc.state, to) == 0;
	else
		to = "cancelled", ok = strcmp(sc.state, "ended") != 0;
	if (!ok)
		rc = err_set(e, ERR_REFUSED, "campaign %s is %s; it cannot be %s", sc.name, sc.state,
			     strcmp(verb, "pause") == 0 ? "paused" : verb[0] == 'r' ? "resumed"
										: "cancelled");
	else if (strcmp(sc.state, to) == 0)
		fprintf(x->out, "campaign %s: already %s\n", sc.name, to);
	else if ((rc = store_campaign_set_state(s, sc.id, to, ctx_now(x), e)) == 0)
		fprintf(x->out, "campaign %s: %s (was %s)\n", sc.name, to, sc.state);
	store_campaign_clear(&sc);
	return rc;
}

static int campaign_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	static const struct {
		const char *name;
		int (*fn)(struct ctx *, int, char **, struct err *);
	} subs[] = {
		{"check", campaign_check}, {"add", campaign_add},      {"list", campaign_list},
		{"show", campaign_show},   {"pause", campaign_state},  {"resume", campaign_state},
		{"cancel", campaign_state},
	};

	if (argc < 2)
		return cli_usage(&cmd_campaign, e, "campaign needs a subcommand");
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
		if (strcmp(argv[1], subs[i].name) == 0)
			return subs[i].fn(x, argc, argv, e);
	return cli_usage(&cmd_campaign, e, "unknown campaign subcommand");
}

const struct command cmd_campaign = {
	"campaign", campaign_run, "campaign check|add FILE | list | show|pause|resume|cancel NAME",
	"define, inspect and control campaigns",
	"\n  check FILE   validate a campaign file (all problems at once, with file:line) and\n"
	"               print its schedule; changes nothing (the -n of cutoff)\n"
	"  add FILE     load or update a campaign; once sending has begun only safe changes\n"
	"               are accepted (title, reply_to, a later cutoff, rate, templates, URLs)\n"
	"  list         every campaign with its state and dates\n"
	"  show NAME    a campaign's definition, state and recipients per segment\n"
	"  pause NAME   stop sending and reminding until resumed\n"
	"  resume NAME  continue a paused campaign\n"
	"  cancel NAME  stop the campaign for good\n",
};
