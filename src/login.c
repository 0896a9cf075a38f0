/* login.c — the login decision (login.h): period at login time, one reminder per period by the
 * store's primary key, completion by client version, every login recorded. */
#include "login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "log.h"
#include "login_text.h"
#include "render.h"
#include "schedule.h"
#include "store_login.h"
#include "version.h"

/* One campaign as logins see it. */
struct login_campaign {
	int64_t id;
	bool active;                        /* else paused: completion only, no reminders */
	struct campaign *c;
	int64_t *segment_ids;               /* parallel to c->segments */
	struct schedule_cadence *cadence;   /* the login-reminder periods */
	struct render_templates *templates;
	struct login_text_plan *texts;      /* which segments' texts are shared */
};

struct login_catalog {
	struct login_campaign *v; /* most urgent first: earliest cutoff, then name */
	size_t n;
	char *signature;          /* store_login_campaigns_signature when loaded */
};

/* The recipients of one campaign whose reminder of one period this session saw taken (shown
 * by it, or found claimed): a repeat login of theirs in that period needs no claim statement
 * (a quarter of a balanced stream's logins). Emptied when the period changes and when a
 * transaction rolls back (a claim it made may be gone); it can only spare a claim that would
 * have found the reminder taken, never show one. */
struct taken {
	int64_t period_start;
	int64_t *slot; /* open addressing; 0 is free (recipient ids are positive) */
	size_t cap, n;
};

struct login_session {
	const struct login_catalog *cat;
	struct store *s;
	struct taken *taken; /* one per campaign */
	struct render **render; /* one per campaign, made on first use */
	struct render_result res;
	struct login_text_cache *texts;
	struct buf detail; /* a completion event's detail */
};

/* A stored campaign row, copied while listing. */
struct campaign_row {
	int64_t id;
	bool active;
	char *name, *definition, *source_path, *templates_dir;
};

struct rows {
	struct campaign_row *v;
	size_t n;
};

static int collect_row(void *ud, const struct store_campaign *sc)
{
	struct rows *rows = ud;
	struct campaign_row *r;

	if (strcmp(sc->state, "active") != 0 && strcmp(sc->state, "paused") != 0)
		return 0;
	rows->v = xrealloc(rows->v, (rows->n + 1) * sizeof *rows->v);
	r = &rows->v[rows->n++];
	r->id = sc->id;
	r->active = strcmp(sc->state, "active") == 0;
	r->name = xstrdup(sc->name);
	r->definition = xstrdup(sc->definition);
	r->source_path = xstrdup(sc->source_path);
	r->templates_dir = xstrdup(sc->templates_dir);
	return 0;
}

static void rows_free(struct rows *rows)
{
	for (size_t i = 0; i < rows->n; i++) {
		free(rows->v[i].name), free(rows->v[i].definition);
		free(rows->v[i].source_path), free(rows->v[i].templates_dir);
	}
	free(rows->v);
}

static void campaign_clear(struct login_campaign *lc)
{
	login_text_plan_free(lc->texts);
	render_templates_free(lc->templates);
	schedule_cadence_free(lc->cadence);
	free(lc->segment_ids);
	campaign_free(lc->c);
}

/* Loads one campaign: definition, segment ids, periods, templates. */
static int campaign_load(struct store *s, const struct campaign_row *row,
			 struct login_campaign *lc, struct err *e)
{
	char *origin = xasprintf("%s (as added)", row->source_path);
	int rc;

	memset(lc, 0, sizeof *lc);
	lc->id = row->id, lc->active = row->active;
	rc = campaign_load_text(&lc->c, row->definition, origin, row->templates_dir, e);
	free(origin);
	if (rc != 0)
		return rc;
	lc->segment_ids = xcalloc(lc->c->n_segments ? lc->c->n_segments : 1, sizeof(int64_t));
	for (size_t i = 0; rc == 0 && i < lc->c->n_segments; i++)
		rc = store_segment_id(s, lc->id, lc->c->segments[i].name, &lc->segment_ids[i], e);
	if (rc == 0)
		rc = schedule_cadence_new(lc->c->login_cadence, lc->c->reminder_start_at,
					  lc->c->cutoff_at, lc->c->timezone, &lc->cadence, e);
	if (rc == 0)
		rc = render_templates_load(&lc->templates, lc->c, e);
	if (rc == 0)
		lc->texts = login_text_plan_new(lc->c);
	return rc;
}

static int by_urgency(const void *a, const void *b)
{
	const struct login_campaign *x = a, *y = b;

	if (x->c->cutoff_at != y->c->cutoff_at)
		return x->c->cutoff_at < y->c->cutoff_at ? -1 : 1;
	return strcmp(x->c->name, y->c->name);
}

int login_catalog_load(struct login_catalog **out, struct store *s, struct err *e)
{
	struct login_catalog *cat = xcalloc(1, sizeof *cat);
	struct rows rows = {NULL, 0};
	int rc;

	*out = NULL;
	if ((rc = store_login_campaigns_signature(s, &cat->signature, e)) != 0 ||
	    (rc = store_campaign_each(s, collect_row, &rows, e)) != 0)
		goto out;
	cat->v = xcalloc(rows.n ? rows.n : 1, sizeof *cat->v);
	for (size_t i = 0; rc == 0 && i < rows.n; i++, cat->n++) {
		if ((rc = campaign_load(s, &rows.v[i], &cat->v[i], e)) != 0)
			err_prefix(e, "campaign %s: ", rows.v[i].name);
	}
	if (rc == 0)
		qsort(cat->v, cat->n, sizeof *cat->v, by_urgency);
out:
	rows_free(&rows);
	if (rc != 0)
		login_catalog_free(cat);
	else
		*out = cat;
	return rc;
}

void login_catalog_free(struct login_catalog *cat)
{
	if (cat == NULL)
		return;
	for (size_t i = 0; i < cat->n; i++)
		campaign_clear(&cat->v[i]);
	free(cat->v);
	free(cat->signature);
	free(cat);
}

size_t login_catalog_count(const struct login_catalog *cat)
{
	return cat->n;
}

int login_catalog_stale(const struct login_catalog *cat, struct store *s, bool *stale,
			struct err *e)
{
	char *now = NULL;
	int rc = store_login_campaigns_signature(s, &now, e);

	*stale = rc == 0 && strcmp(now, cat->signature) != 0;
	free(now);
	return rc;
}

static size_t taken_home(const struct taken *t, int64_t id)
{
	return (size_t)(((uint64_t)id * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & (t->cap - 1);
}

static bool taken_has(const struct taken *t, int64_t period_start, int64_t id)
{
	if (t->n == 0 || t->period_start != period_start)
		return false;
	for (size_t i = taken_home(t, id);; i = (i + 1) & (t->cap - 1)) {
		if (t->slot[i] == id)
			return true;
		if (t->slot[i] == 0)
			return false;
	}
}

static void taken_put(struct taken *t, int64_t id)
{
	size_t i = taken_home(t, id);

	while (t->slot[i] != 0 && t->slot[i] != id)
		i = (i + 1) & (t->cap - 1);
	t->n += t->slot[i] == 0;
	t->slot[i] = id;
}

/* Empties t, for period_start. */
static void taken_reset(struct taken *t, int64_t period_start)
{
	t->n = 0, t->period_start = period_start;
	if (t->slot != NULL)
		memset(t->slot, 0, t->cap * sizeof *t->slot);
}

static void taken_add(struct taken *t, int64_t period_start, int64_t id)
{
	if (t->period_start != period_start)
		taken_reset(t, period_start);
	if (2 * (t->n + 1) > t->cap) { /* at most half full */
		struct taken old = *t;

		t->cap = t->cap ? 2 * t->cap : 1024, t->n = 0;
		t->slot = xcalloc(t->cap, sizeof *t->slot);
		for (size_t i = 0; i < old.cap; i++)
			if (old.slot[i] != 0)
				taken_put(t, old.slot[i]);
		free(old.slot);
	}
	taken_put(t, id);
}

/* The store's rollback hook: what the session saw taken may have been rolled back. */
static void taken_forget(void *ud)
{
	struct login_session *ls = ud;

	for (size_t k = 0; k < ls->cat->n; k++)
		taken_reset(&ls->taken[k], INT64_MIN);
}

struct login_session *login_session_new(const struct login_catalog *cat, struct store *s)
{
	struct login_session *ls = xcalloc(1, sizeof *ls);

	ls->cat = cat, ls->s = s;
	ls->render = xcalloc(cat->n ? cat->n : 1, sizeof *ls->render);
	ls->taken = xcalloc(cat->n ? cat->n : 1, sizeof *ls->taken);
	store_on_rollback(s, taken_forget, ls);
	render_result_init(&ls->res);
	ls->texts = login_text_cache_new();
	buf_init(&ls->detail);
	return ls;
}

void login_session_free(struct login_session *ls)
{
	if (ls == NULL)
		return;
	store_on_rollback(ls->s, NULL, NULL);
	for (size_t i = 0; i < ls->cat->n; i++)
		render_free(ls->render[i]), free(ls->taken[i].slot);
	free(ls->render);
	free(ls->taken);
	render_result_free(&ls->res);
	login_text_cache_free(ls->texts);
	buf_free(&ls->detail);
	free(ls);
}

/* ---- one login ------------------------------------------------------------------------ */

/* What deciding one login keeps while it visits the user's campaigns. */
struct visit {
	struct login_session *ls;
	size_t k; /* the campaign visited */
	const struct login_event *ev;
	bool version_ok; /* ev->client_version is a version cutoff can compare */
	struct login_answer *a;
	int pending;     /* campaigns where the user still has to upgrade */
	int completed;   /* campaigns where they have (now or before) */
	struct err *e;
};

static const struct segment *segment_of(const struct login_campaign *lc, int64_t segment_id)
{
	for (size_t i = 0; segment_id != 0 && i < lc->c->n_segments; i++)
		if (lc->segment_ids[i] == segment_id)
			return &lc->c->segments[i];
	return NULL;
}

/* The completion event's detail, {"by":"login","client_version":V,"platform":P|null}, in the
 * session's buffer: written by hand, a quarter of the cost of packing and dumping it. */
static const char *completion_detail(struct login_session *ls, const struct login_event *ev)
{
	struct buf *d = &ls->detail;

	buf_reset(d);
	buf_puts(d, "{\"by\":\"login\",\"client_version\":");
	login_json_string(d, ev->client_version);
	buf_puts(d, ",\"platform\":");
	if (ev->platform != NULL && ev->platform[0] != '\0')
		login_json_string(d, ev->platform);
	else
		buf_puts(d, "null");
	buf_putc(d, '}');
	return d->data;
}

static int complete(struct visit *v, const struct store_recipient *r)
{
	bool changed = false;
	int rc = store_recipient_complete(v->ls->s, v->ls->cat->v[v->k].id, r->id, v->ev->at,
					  completion_detail(v->ls, v->ev), &changed, NULL, v->e);

	if (rc == 0 && changed)
		v->a->completed_now++;
	return rc;
}

/* Renders r's login text into the answer; false (logged) when it cannot be shown. */
static bool render_text(struct visit *v, const struct store_recipient *r,
			const struct segment *g)
{
	const struct login_campaign *lc = &v->ls->cat->v[v->k];
	struct render **rd = &v->ls->render[v->k];
	struct render_request q = {r, g, v->ev->at, NULL, NULL, NULL, "login"};
	struct login_text t;
	struct err re = {0};

	if (*rd == NULL)
		*rd = render_new(lc->templates, NULL);
	if (login_text_render(v->ls->texts, lc->texts, v->k, *rd, &q, &v->ls->res, &t, &re) != 0) {
		log_warnx("campaign %s, user %s: no login reminder: %s", lc->c->name, r->user_id,
			  re.msg);
		return false;
	}
	v->a->days_left = t.days_left;
	v->a->text = t.text;
	v->a->upgrade_url = g->upgrade_url ? g->upgrade_url : lc->c->upgrade_url;
	v->a->campaign = lc->c->name;
	return true;
}

/* Shows this period's reminder of r if it is due and no login took it yet. */
static int remind(struct visit *v, const struct store_recipient *r, const struct segment *g)
{
	const struct login_campaign *lc = &v->ls->cat->v[v->k];
	struct taken *taken = &v->ls->taken[v->k];
	struct store_login_reminder lr = {lc->id, r->id, 0, 0, v->ev->at, v->ev->client_version};
	struct schedule_period p;
	bool suppressed = false, claimed = false;
	int rc;

	schedule_cadence_period_at(lc->cadence, v->ev->at, &p);
	if (!p.inside || v->ev->at < g->send_at || r->email == NULL)
		return 0;
	/* Claim first: most logins find the period's reminder taken, and skip the rest. */
	lr.period_start = p.begin, lr.period_index = (int64_t)p.index;
	if (taken_has(taken, p.begin, r->id))
		return 0;
	if ((rc = store_login_reminder_claim(v->ls->s, &lr, &claimed, v->e)) != 0)
		return rc;
	if (!claimed) {
		taken_add(taken, p.begin, r->id);
		return 0;
	}
	if ((rc = store_suppressed(v->ls->s, r->email, &suppressed, v->e)) != 0)
		return rc;
	if (suppressed || !render_text(v, r, g))
		return store_login_reminder_release(v->ls->s, r->id, p.begin, v->e);
	taken_add(taken, p.begin, r->id);
	v->a->reminded = true;
	v->a->period_index = (int64_t)p.index;
	v->a->period_start = p.begin, v->a->period_end = p.end;
	return 0;
}

static int visit_recipient(void *ud, const struct store_recipient *r)
{
	struct visit *v = ud;
	const struct login_campaign *lc = &v->ls->cat->v[v->k];
	const struct segment *g;

	v->a->known = true;
	if (strcmp(r->state, "completed") == 0) {
		v->completed++;
		return 0;
	}
	if (strcmp(r->state, "pending") != 0 || (g = segment_of(lc, r->segment_id)) == NULL)
		return 0; /* unaffected or forgotten */
	if (v->version_ok && segment_completed_by(g, v->ev->client_version)) {
		v->completed++;
		return complete(v, r);
	}
	v->pending++;
	if (v->a->reminded || !lc->active)
		return 0;
	return remind(v, r, g);
}

static const char *outcome_of(const struct login_answer *a)
{
	return a->reminded ? "reminder" : a->completed_now > 0 ? "completed"
				     : a->known		   ? "none"
							   : "unknown";
}

int login_decide(struct login_session *ls, const struct login_event *ev,
		 struct login_answer *out, struct err *e)
{
	struct visit v = {ls, 0, ev, false, out, 0, 0, e};
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (ev->user == NULL || ev->user[0] == '\0')
		return err_set(e, ERR_DATA, "a login without a user id");
	v.version_ok = ev->client_version != NULL && version_valid(ev->client_version);
	for (v.k = 0; v.k < ls->cat->n; v.k++) {
		rc = store_login_recipient(ls->s, ls->cat->v[v.k].id, ev->user, visit_recipient, &v,
					   e);
		if (rc < 0)
			return rc;
	}
	out->completed = v.completed > 0 && v.pending == 0;
	out->outcome = outcome_of(out);
	return store_login_record(ls->s, ev->user, ev->at, ev->client_version, ev->platform,
				  out->outcome, e);
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;

	if (n == 0 || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL: nothing read past it */
			return 0;
	return str_utf8_valid((const char *)s, n) ? n : 0;
}

#define J16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
/* The octets a JSON string holds as they are: JSON_ASCII for printable ASCII but the quote and
 * the backslash (the C0 controls and DEL are escaped, DEL as \u007f), JSON_UTF8 for the octets
 * of multi-octet characters, which only text known to be valid UTF-8 copies as they are. */
enum { JSON_ASCII = 1, JSON_UTF8 = 2 };
static const unsigned char json_plain[256] = {
	J16(0), J16(0),
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x22 " */
	J16(1), J16(1),
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x5c \ */
	J16(1),
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x7f DEL */
	J16(2), J16(2), J16(2), J16(2), J16(2), J16(2), J16(2), J16(2),
};
#undef J16

void login_json_string(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	/* Text valid UTF-8 as a whole (every reminder's) is copied in runs the table finds, non-ASCII
	 * included; other text stops at each non-ASCII character to check it. With days_left by
	 * dec_put: an answer's JSON 6,266 instructions a login -> 4,238 (bench/serve-instructions),
	 * against testing each octet four times and each non-ASCII character on its own. */
	unsigned char plain = str_utf8_valid(s, n) ? JSON_ASCII | JSON_UTF8 : JSON_ASCII;

	buf_grow(out, n + 2);
	buf_putc(out, '"');
	while (*p) {
		const unsigned char *run = p;

		while (json_plain[*p] & plain)
			p++;
		if (p > run)
			buf_append(out, run, (size_t)(p - run));
		if (*p == '\0')
			break;
		if (*p == '"' || *p == '\\')
			buf_putc(out, '\\'), buf_putc(out, (char)*p++);
		else if (*p < 0x80)
			buf_printf(out, "\\u%04x", *p++); /* a C0 control or DEL */
		else if ((n = utf8_len(p)) > 0)
			buf_append(out, p, n), p += n;
		else
			buf_puts(out, "\\ufffd"), p++;
	}
	buf_putc(out, '"');
}

void login_answer_json(const struct login_answer *a, const char *user, struct buf *out)
{
	char num[24], *end;
	uint64_t days;

	buf_puts(out, "{\"user\":");
	login_json_string(out, user ? user : "");
	if (a->reminded) {
		buf_puts(out, ",\"reminder\":{\"campaign\":");
		login_json_string(out, a->campaign);
		buf_puts(out, ",\"text\":");
		login_json_string(out, a->text);
		buf_puts(out, ",\"days_left\":");
		days = a->days_left < 0 ? (uint64_t)-(a->days_left + 1) + 1 : (uint64_t)a->days_left;
		end = num;
		if (a->days_left < 0)
			*end++ = '-';
		end = dec_put(end, days, 1); /* not buf_printf: a quarter of the answer's instructions */
		buf_append(out, num, (size_t)(end - num));
		buf_puts(out, ",\"upgrade_url\":");
		if (a->upgrade_url != NULL)
			login_json_string(out, a->upgrade_url);
		else
			buf_puts(out, "null");
		buf_putc(out, '}');
	} else {
		buf_puts(out, ",\"reminder\":null");
	}
	buf_puts(out, a->completed ? ",\"completed\":true}" : ",\"completed\":false}");
}
