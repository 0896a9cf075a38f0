/* run.c — the daily run: bounces, then per campaign queue and send, or end at the cutoff. */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A campaign row copied while listing, to run once the listing is done. */
struct row {
	int64_t id;
	char *definition, *source_path, *templates_dir;
};

struct listing {
	struct run_summary *out;
	struct row *rows;
};

static int list_campaign(void *ud, const struct store_campaign *sc)
{
	struct listing *l = ud;
	struct run_campaign *rc;
	struct row *row;

	if (strcmp(sc->state, "active") != 0 && strcmp(sc->state, "paused") != 0)
		return 0;
	l->out->campaigns = xrealloc(l->out->campaigns, (l->out->n + 1) * sizeof *rc);
	l->rows = xrealloc(l->rows, (l->out->n + 1) * sizeof *row);
	rc = &l->out->campaigns[l->out->n];
	row = &l->rows[l->out->n++];
	memset(rc, 0, sizeof *rc);
	rc->name = xstrdup(sc->name);
	rc->timezone = xstrdup(sc->timezone);
	snprintf(rc->state, sizeof rc->state, "%s", sc->state);
	rc->reminder_start_at = sc->reminder_start_at, rc->cutoff_at = sc->cutoff_at;
	row->id = sc->id;
	row->definition = xstrdup(sc->definition);
	row->source_path = xstrdup(sc->source_path);
	row->templates_dir = xstrdup(sc->templates_dir);
	return 0;
}

static void rows_free(struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(rows[i].definition), free(rows[i].source_path), free(rows[i].templates_dir);
	free(rows);
}

/* Step 1: the bounce mailbox, when there is one. */
static void run_bounces(struct store *s, const struct config *cfg, const struct run_options *o,
			struct run_summary *out)
{
	struct bounces_options bo = {.now = o->now, .dry_run = o->dry_run};

	if (cfg->bounces.maildir == NULL)
		return;
	out->bounces_ran = true;
	out->bounces_rc = bounces_process_maildir(s, cfg, cfg->bounces.maildir, &bo,
						  &out->bounces, &out->bounces_error);
}

/* Step 3: the cutoff has passed: expire what was never sent and end the campaign. */
static int end_campaign(struct store *s, int64_t id, const struct run_options *o,
			struct run_campaign *rc, struct err *e)
{
	int ret;

	if (o->dry_run)
		return 0;
	if ((ret = store_begin(s, e)) != 0)
		return ret;
	if ((ret = store_delivery_expire(s, id, o->now, &rc->expired, e)) == 0 &&
	    (ret = store_campaign_set_state(s, id, "ended", o->now, e)) == 0 &&
	    (ret = store_event_add(s, id, 0, o->now, "campaign-ended", NULL, e)) == 0 &&
	    (ret = store_commit(s, e)) == 0) {
		rc->ended = true;
		return 0;
	}
	store_rollback(s);
	return ret;
}

static int send_campaign(struct store *s, const struct config *cfg, const struct campaign *c,
			 int64_t id, const struct run_options *o, struct run_campaign *rc,
			 struct err *e)
{
	struct sender_options so = {.dry_run = o->dry_run, .progress = o->progress,
				    .log_attempts = o->log_attempts, .now = o->now, .share = 1};

	rc->sent = true;
	if (o->send != NULL)
		return o->send(o->send_ud, s, c, id, &so, &rc->send, e);
	return sender_send(s, cfg, c, id, &so, &rc->send, e);
}

/* The login-reminder period at now, for the summary (logins derive it themselves). */
static void reminder_period(const struct campaign *c, int64_t now, struct run_campaign *rc)
{
	struct schedule_cadence *cad = NULL;

	if (schedule_cadence_new(c->login_cadence, c->reminder_start_at, c->cutoff_at,
				 c->timezone, &cad, NULL) != 0)
		return;
	rc->n_periods = schedule_cadence_count(cad);
	schedule_cadence_period_at(cad, now, &rc->period);
	schedule_cadence_free(cad);
}

/* One campaign: load its definition, then send, or end it at the cutoff. */
static void run_one(struct store *s, const struct config *cfg, const struct row *row,
		    const struct run_options *o, struct run_campaign *rc)
{
	struct campaign *c = NULL;
	char *origin = xasprintf("%s (as added)", row->source_path);

	rc->rc = campaign_load_text(&c, row->definition, origin, row->templates_dir, &rc->error);
	free(origin);
	if (rc->rc != 0)
		return;
	reminder_period(c, o->now, rc);
	if (o->now >= c->cutoff_at)
		rc->rc = end_campaign(s, row->id, o, rc, &rc->error);
	else if (strcmp(rc->state, "active") == 0)
		rc->rc = send_campaign(s, cfg, c, row->id, o, rc, &rc->error);
	campaign_free(c);
}

int run_daily(struct store *s, const struct config *cfg, const struct run_options *o,
	      struct run_summary *out, struct err *e)
{
	struct listing l = {out, NULL};
	int rc;

	memset(out, 0, sizeof *out);
	run_bounces(s, cfg, o, out);
	if ((rc = store_campaign_each(s, list_campaign, &l, e)) != 0)
		goto out;
	for (size_t i = 0; i < out->n; i++) {
		if (out->interrupted) {
			out->campaigns[i].rc = err_set(&out->campaigns[i].error, ERR_TEMPFAIL,
						       "not run: the run was interrupted");
			continue;
		}
		run_one(s, cfg, &l.rows[i], o, &out->campaigns[i]);
		out->interrupted = out->campaigns[i].send.interrupted;
	}
out:
	rows_free(l.rows, out->n);
	return rc;
}

/* The exit status one sending run asks for (cmd_send_status's rule), as an error code. */
static int send_status(const struct sender_summary *s)
{
	return s->relays_down || s->interrupted || s->deferred > 0 ? ERR_TEMPFAIL : 0;
}

int run_status(const struct run_summary *r, struct err *e)
{
	const struct err *first_temp = NULL;
	bool deferred = false;

	if (r->bounces_ran && r->bounces_rc != 0) {
		if (r->bounces_rc != ERR_TEMPFAIL)
			return err_set(e, r->bounces_rc, "bounces: %s", r->bounces_error.msg);
		first_temp = &r->bounces_error;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct run_campaign *c = &r->campaigns[i];
		if (c->rc != 0 && c->rc != ERR_TEMPFAIL)
			return err_set(e, c->rc, "campaign %s: %s", c->name, c->error.msg);
		if (c->rc == ERR_TEMPFAIL && first_temp == NULL)
			first_temp = &c->error;
		deferred |= c->sent && c->rc == 0 && send_status(&c->send) != 0;
	}
	if (first_temp != NULL)
		return err_set(e, ERR_TEMPFAIL, "%s", first_temp->msg);
	if (deferred)
		return err_set(e, ERR_TEMPFAIL, "something was deferred or could not be sent (see"
			       " the summary above); it stays queued for the next run");
	return 0;
}

void run_summary_free(struct run_summary *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->campaigns[i].name), free(r->campaigns[i].timezone);
	free(r->campaigns);
	r->campaigns = NULL, r->n = 0;
}
