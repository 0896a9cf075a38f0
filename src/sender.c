/* sender.c — the send loop: claim, render, rate-limit, submit, settle (RFC 5321 semantics:
 * 2xx sent, 4xx deferred, 5xx failed; throttling slows the relay instead of failing anyone). */
#include "sender.h"

#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "classify.h"
#include "log.h"
#include "mailer.h"
#include "render.h"
#include "retry.h"
#include "schedule.h"
#include "verp.h"

/*
 * Settlements ride in the next claim's commit (claim_batch): one fsync for both. They
 * take a commit of their own only past FLUSH_EVERY (more than a claim holds) or once
 * the oldest has waited FLUSH_MS: what a crash re-sends stays about as small as before
 * (the crash test), while a worker at full speed commits about once a claim, not also
 * every 128 messages (each commit stops its connections for an fsync, and makes the
 * other worker wait for the lock and re-read the pages it changed).
 */
#define FLUSH_EVERY 1024
#define FLUSH_MS 50
#define CLAIM_ROUNDS 64     /* a claim fills the queue to this many rounds of connections */
#define RELAY_DOWN_STREAK 4 /* failed connections in a row that end the run */
#define KEEP_MOVING_EVERY 4 /* prepared messages between two looks at the transfers */
/*
 * Queueing a 20,000-recipient wave is one INSERT ... SELECT of 50-80 ms, during which
 * the other worker waits for the write lock and no connection is open yet. So the run
 * queues about QUEUE_CHUNK deliveries before its first claim and as many again in each
 * claim's transaction until the wave is in (queue_due_some: chunks of QUEUE_CHUNK
 * recipient ids, the queue marks being the shared, durable progress), four times what a
 * worker claims at once.
 */
#define QUEUE_CHUNK 1024

static volatile sig_atomic_t stop_requested; /* set by SIGINT/SIGTERM only */

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* What the sender keeps about one claimed delivery until it is settled. */
struct item {
	int64_t delivery_id;
	int64_t recipient_id;
	int attempts;
	char *email;
	char *user_id;
	char *message_id;
	const char *domain; /* into email */
};

/* A token bucket: rate per second, burst of one second. */
struct bucket {
	double rate; /* 0: no limit */
	double tokens;
	int64_t at_ms;
};

struct domain_bucket {
	const char *domain;
	struct bucket b;
};

/* A settlement waiting for the next ledger commit, with copies of what it points to. */
struct pending_settle {
	struct store_settlement st;
	char *reply, *local_error, *message_id, *reason, *relay;
	char *email;           /* a hard bounce suppresses it */
	char *bounce_detail;   /* JSON for the event log, or NULL */
	int64_t recipient_id;
};

struct sender {
	struct store *s;
	const struct config *cfg;
	const struct campaign *c;
	int64_t campaign_id;
	const struct sender_options *o;
	struct sender_summary *sum;
	struct err *e;
	char run_id[64];
	int64_t *segment_ids;
	struct render_templates *templates;
	struct render *render;
	struct render_result res;
	struct verp_signer *verp; /* keyed once for the run's envelope senders, or NULL */
	struct mailer *mailer;
	struct mailer_job **pending; /* claimed and rendered, not yet submitted */
	size_t n_pending, cap_pending;
	struct pending_settle *settles;
	size_t n_settles, cap_settles;
	int64_t oldest_settle_ms;
	struct bucket global;
	struct domain_bucket *domains;
	size_t n_domains;
	int64_t submitted;
	int64_t started_ms;
	int64_t last_progress_ms;
	int64_t busy_since_ms;  /* when the current wait for the ledger's lock began */
	bool queue_done;        /* everything due is queued (by this run or another) */
	int fatal;
};

static void item_free(struct item *it)
{
	if (it == NULL)
		return;
	free(it->email), free(it->user_id), free(it->message_id);
	free(it);
}

static void job_free(struct mailer_job *job)
{
	if (job != NULL)
		item_free(job->ud);
	mailer_job_free(job);
}

/* Refills b and tells whether one message may go now. */
static bool bucket_ready(struct bucket *b, int64_t now_ms)
{
	double burst;

	if (b->rate <= 0)
		return true;
	burst = b->rate > 1 ? b->rate : 1;
	b->tokens += b->rate * (double)(now_ms - b->at_ms) / 1000.0;
	b->at_ms = now_ms;
	if (b->tokens > burst)
		b->tokens = burst;
	return b->tokens >= 1.0;
}

static void bucket_spend(struct bucket *b)
{
	if (b != NULL && b->rate > 0)
		b->tokens -= 1.0;
}

static struct bucket *domain_bucket(struct sender *x, const char *domain)
{
	for (size_t i = 0; i < x->n_domains; i++)
		if (strcasecmp(x->domains[i].domain, domain) == 0)
			return &x->domains[i].b;
	return NULL;
}

static void buckets_init(struct sender *x)
{
	double share = x->o->share > 1 ? x->o->share : 1;
	double g = x->cfg->rate / share, c = x->c->rate / share;
	int64_t now = mailer_now_ms();

	x->global.rate = (g > 0 && (c <= 0 || g < c)) ? g : c;
	x->global.tokens = 1, x->global.at_ms = now;
	x->domains = xcalloc(x->cfg->n_domain_rates, sizeof *x->domains);
	x->n_domains = x->cfg->n_domain_rates;
	for (size_t i = 0; i < x->n_domains; i++) {
		x->domains[i].domain = x->cfg->domain_rates[i].domain;
		x->domains[i].b.rate = x->cfg->domain_rates[i].per_second / share;
		x->domains[i].b.tokens = 1, x->domains[i].b.at_ms = now;
	}
}

static uint32_t random_u32(void)
{
	uint32_t v = 0;

	if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
		v = (uint32_t)getpid() * 2654435761u ^ (uint32_t)mailer_now_ms();
	return v;
}

static void make_run_id(struct sender *x)
{
	char host[64] = "host";

	gethostname(host, sizeof host - 1);
	host[strcspn(host, ".")] = '\0';
	snprintf(x->run_id, sizeof x->run_id, "%s:%ld:%08x", host, (long)getpid(), random_u32());
}

/* Ledger transactions; a dry run keeps one transaction open and rolls it back at the end. */
static int txn_begin(struct sender *x)
{
	return x->o->dry_run ? 0 : store_begin(x->s, x->e);
}

static int txn_commit(struct sender *x)
{
	int rc;

	if (x->o->dry_run)
		return 0;
	if ((rc = store_commit(x->s, x->e)) != 0)
		store_rollback(x->s);
	return rc;
}

static char *dup_or_null(const char *s)
{
	return (s != NULL && *s) ? xstrdup(s) : NULL;
}

/* What settle_add needs to know about an attempt, besides the item. */
struct outcome {
	const char *state;   /* the delivery's new state */
	const char *outcome; /* the attempt's outcome */
	const char *reason;
	int64_t due_at;
	bool attempted;
	bool uncount;
	const struct mailer_result *r; /* or NULL */
};

static void settle_add(struct sender *x, const struct item *it, const struct outcome *o)
{
	struct pending_settle *p;

	if (x->n_settles == x->cap_settles) {
		x->cap_settles = x->cap_settles ? 2 * x->cap_settles : 64;
		x->settles = xrealloc(x->settles, x->cap_settles * sizeof *x->settles);
	}
	if (x->n_settles == 0)
		x->oldest_settle_ms = mailer_now_ms();
	p = &x->settles[x->n_settles++];
	memset(p, 0, sizeof *p);
	p->reply = o->r ? dup_or_null(o->r->reply) : NULL;
	p->local_error = o->r ? dup_or_null(o->r->local_error) : NULL;
	p->relay = o->r ? xstrdup(o->r->relay) : NULL;
	p->message_id = dup_or_null(it->message_id);
	p->reason = dup_or_null(o->reason);
	p->recipient_id = it->recipient_id;
	p->st = (struct store_settlement){
		.delivery_id = it->delivery_id, .state = o->state, .due_at = o->due_at,
		.outcome = o->outcome, .relay = p->relay, .code = o->r ? o->r->code : 0,
		.reply = p->reply, .local_error = p->local_error, .message_id = p->message_id,
		.reason = p->reason, .attempted = o->attempted, .uncount = o->uncount,
	};
}

static void settle_free(struct pending_settle *p)
{
	free(p->reply), free(p->local_error), free(p->message_id), free(p->reason);
	free(p->relay), free(p->email), free(p->bounce_detail);
}

/* A hard bounce at send time suppresses the address, with an event saying why. */
static int settle_bounce(struct sender *x, const struct pending_settle *p, int64_t now)
{
	int rc;

	if (p->email == NULL)
		return 0;
	if ((rc = store_suppress(x->s, p->email, "hard-bounce", x->campaign_id, p->bounce_detail,
				 now, x->e)) != 0)
		return rc;
	return store_event_add(x->s, x->campaign_id, p->recipient_id, now, "bounce",
			       p->bounce_detail, x->e);
}

/* Writes the waiting settlements inside the caller's transaction; they stay pending on error.
 * All in one call: the store writes their attempt rows several to a statement. The hard
 * bounces come after them, in the same transaction (they touch no row in flight). */
static int settles_apply(struct sender *x)
{
	size_t n = x->n_settles;
	const struct store_settlement **t = xmalloc((n ? n : 1) * sizeof *t);
	bool *applied = xcalloc(n ? n : 1, sizeof *applied);
	int64_t now = x->o->now;
	int rc;

	for (size_t i = 0; i < n; i++)
		t[i] = &x->settles[i].st;
	rc = store_delivery_settle_batch(x->s, x->run_id, now, t, n, applied, x->e);
	for (size_t i = 0; i < n && rc == 0; i++)
		if (applied[i] && x->settles[i].email != NULL)
			rc = settle_bounce(x, &x->settles[i], now);
	free(t);
	free(applied);
	return rc;
}

/* Forgets the settlements once their transaction committed (or the run gives up). */
static void settles_clear(struct sender *x)
{
	for (size_t i = 0; i < x->n_settles; i++)
		settle_free(&x->settles[i]);
	x->n_settles = 0;
}

/* One ledger commit for every waiting settlement: only then do they count as settled. */
static int flush(struct sender *x)
{
	int rc;

	if (x->n_settles == 0)
		return 0;
	if ((rc = txn_begin(x)) != 0)
		return rc;
	if ((rc = settles_apply(x)) == 0)
		rc = txn_commit(x);
	else if (!x->o->dry_run)
		store_rollback(x->s);
	settles_clear(x);
	return rc;
}

static bool flush_due(const struct sender *x)
{
	return x->n_settles >= FLUSH_EVERY ||
	       (x->n_settles > 0 && mailer_now_ms() - x->oldest_settle_ms >= FLUSH_MS);
}

static const char *outcome_name(enum mailer_outcome o)
{
	switch (o) {
	case MAILER_ACCEPTED: return "sent";
	case MAILER_TEMPFAIL: return "deferred";
	case MAILER_PERMFAIL: return "failed";
	case MAILER_THROTTLED: return "throttled";
	case MAILER_RELAY_DOWN: return "relay-down";
	}
	return "?";
}

/* One key=value line per attempt when not on a terminal (journald). Never secrets. */
static void log_attempt(const struct sender *x, const struct item *it,
			const struct mailer_result *r, const char *outcome)
{
	char id[24], code[8], att[8];

	if (!x->o->log_attempts)
		return;
	snprintf(id, sizeof id, "%lld", (long long)it->delivery_id);
	snprintf(code, sizeof code, "%d", r ? r->code : 0);
	snprintf(att, sizeof att, "%d", it->attempts);
	log_kv("event", "delivery", "campaign", x->c->name, "delivery", id, "user", it->user_id,
	       "attempt", att, "outcome", outcome, "relay", r ? r->relay : "", "code", code,
	       "reply", r ? r->reply : "", "error", r ? r->local_error : "", "message_id",
	       it->message_id ? it->message_id : "", NULL);
}

/* Puts a job back in front of the pending queue (throttled, or its relay went down). */
static void pending_push(struct sender *x, struct mailer_job *job)
{
	if (x->n_pending == x->cap_pending) {
		x->cap_pending = x->cap_pending ? 2 * x->cap_pending : 64;
		x->pending = xrealloc(x->pending, x->cap_pending * sizeof *x->pending);
	}
	x->pending[x->n_pending++] = job;
}

/* A 5xx at RCPT/DATA: the one classifier says whether the address is dead. */
static void permanent_failure(struct sender *x, struct item *it, const struct mailer_result *r)
{
	struct classify_input in = {0};
	struct classification cl;
	char status[16] = "";
	struct outcome o = {"failed", "failed", NULL, 0, true, false, r};
	char *detail;

	classify_find_status(r->reply, strlen(r->reply), status, sizeof status);
	in.status = status[0] ? status : NULL;
	in.reply_code = r->code;
	in.text = r->reply;
	in.stage = r->stage == MAILER_STAGE_DATA ? SMTP_STAGE_DATA : SMTP_STAGE_RCPT;
	in.hosts = it->domain;
	classify(&in, &cl);
	o.reason = cl.class == BOUNCE_CLASS_HARD ? "hard" : "soft";
	settle_add(x, it, &o);
	detail = xasprintf("{\"source\":\"smtp\",\"code\":%d,\"status\":\"%s\",\"reason\":\"%s\","
			   "\"class\":\"%s\",\"delivery\":%lld}",
			   r->code, status, classify_reason_name(cl.reason),
			   classify_class_name(cl.class), (long long)it->delivery_id);
	if (cl.class == BOUNCE_CLASS_HARD) {
		x->settles[x->n_settles - 1].email = xstrdup(it->email);
		x->settles[x->n_settles - 1].bounce_detail = detail;
	} else {
		free(detail);
	}
	x->sum->failed++;
}

static void temporary_failure(struct sender *x, struct item *it, const struct mailer_result *r)
{
	int64_t next = retry_next_attempt(it->attempts, x->o->now, x->c->cutoff_at, random_u32());
	struct outcome o = {"deferred", "deferred", NULL, next, true, false, r};

	if (next == 0) {
		o.state = "failed", o.outcome = "failed", o.reason = "expired";
		x->sum->failed++;
	} else {
		x->sum->deferred++;
	}
	settle_add(x, it, &o);
}

static void on_done(void *ud, struct mailer_job *job, const struct mailer_result *r)
{
	struct sender *x = ud;
	struct item *it = job->ud;
	struct outcome sent = {"sent", "sent", NULL, 0, true, false, r};

	log_attempt(x, it, r, outcome_name(r->outcome));
	switch (r->outcome) {
	case MAILER_ACCEPTED:
		settle_add(x, it, &sent);
		x->sum->sent++;
		break;
	case MAILER_PERMFAIL:
		permanent_failure(x, it, r);
		break;
	case MAILER_TEMPFAIL:
		temporary_failure(x, it, r);
		break;
	case MAILER_THROTTLED:
		x->sum->throttled++;
		/* the job goes back to the queue, the relay is slower now */
		__attribute__((fallthrough));
	case MAILER_RELAY_DOWN:
		pending_push(x, job); /* kept as rendered; the ledger still holds it 'sending' */
		return;
	}
	job_free(job);
}

/* What prepare() learns about the recipient of a claimed delivery. */
struct prep {
	struct sender *x;
	const struct store_claim *claim;
	struct mailer_job *job; /* set when there is something to send */
	const char *skip_state; /* else: settle as this (suppressed, cancelled, failed) */
	const char *skip_reason;
};

static const struct segment *segment_of(const struct sender *x, int64_t segment_id)
{
	for (size_t i = 0; i < x->c->n_segments; i++)
		if (x->segment_ids[i] == segment_id)
			return &x->c->segments[i];
	return NULL;
}

static int envelope_from(struct sender *x, const struct store_claim *cl, char *out, size_t n)
{
	struct verp_ids ids = {x->campaign_id, cl->recipient_id, cl->delivery_id};

	if (x->cfg->bounces.return_path_domain == NULL || x->cfg->bounces.secret == NULL) {
		snprintf(out, n, "%s", x->c->from_addr);
		return 0;
	}
	if (x->verp != NULL)
		return verp_signer_address(x->verp, &ids, x->cfg->bounces.return_path_domain, out,
					   n, x->e);
	return verp_address(x->cfg->bounces.secret, x->cfg->bounces.secret_len, &ids,
			    x->cfg->bounces.return_path_domain, out, n, x->e);
}

static int render_job(struct prep *p, const struct store_recipient *r, const struct segment *g)
{
	struct sender *x = p->x;
	char delivery[24], from[VERP_ADDRESS_SIZE];
	struct render_request q = {r, g, x->o->now, delivery, NULL, NULL, p->claim->kind};
	struct err re = {0};
	struct mailer_job *job;
	struct item *it;
	int rc;

	snprintf(delivery, sizeof delivery, "%lld", (long long)p->claim->delivery_id);
	if ((rc = envelope_from(x, p->claim, from, sizeof from)) != 0)
		return rc;
	if (x->cfg->bounces.return_path_domain != NULL && x->c->list_unsubscribe)
		q.unsubscribe_mailto = from;
	if (render_message(x->render, &q, &x->res, &re) != 0) {
		/* Bad data for this one recipient (a header injection, say): fail it, go on. */
		log_warnx("campaign %s, user %s: %s", x->c->name, r->user_id, re.msg);
		p->skip_state = "failed", p->skip_reason = "render";
		return 0;
	}
	it = xcalloc(1, sizeof *it);
	it->delivery_id = p->claim->delivery_id, it->recipient_id = r->id;
	it->attempts = p->claim->attempts;
	it->email = xstrdup(r->email), it->user_id = xstrdup(r->user_id);
	it->message_id = x->res.message_id ? xstrdup(x->res.message_id) : NULL;
	it->domain = address_domain(it->email);
	job = xcalloc(1, sizeof *job);
	job->id = p->claim->delivery_id, job->ud = it;
	job->envelope_from = xstrdup(from), job->rcpt = xstrdup(r->email);
	buf_init(&job->data);
	buf_append(&job->data, x->res.message.data, x->res.message.len);
	p->job = job;
	return 0;
}

static int prepare_one(void *ud, const struct store_recipient *r)
{
	struct prep *p = ud;
	const struct segment *g;
	bool suppressed = false;
	int rc;

	if (r->email == NULL || strcmp(r->state, "forgotten") == 0) {
		p->skip_state = "cancelled", p->skip_reason = "forgotten";
		return 0;
	}
	if (strcmp(r->state, "pending") != 0) {
		p->skip_state = "cancelled", p->skip_reason = r->state; /* completed, unaffected */
		return 0;
	}
	if ((rc = store_suppressed(p->x->s, r->email, &suppressed, p->x->e)) != 0)
		return rc;
	if (suppressed) {
		p->skip_state = "suppressed", p->skip_reason = "suppressed";
		return 0;
	}
	if ((g = segment_of(p->x, r->segment_id)) == NULL) {
		p->skip_state = "cancelled", p->skip_reason = "no segment";
		return 0;
	}
	return render_job(p, r, g);
}

/* Turns one claim into a pending job, or settles it at once when it must not be sent. */
static int prepare(struct sender *x, const struct store_claim *cl)
{
	struct prep p = {x, cl, NULL, NULL, NULL};
	struct item it = {cl->delivery_id, cl->recipient_id, cl->attempts, NULL, NULL, NULL, NULL};
	struct outcome o = {NULL, NULL, NULL, 0, false, true, NULL};
	int rc = store_recipient_by_id(x->s, cl->recipient_id, prepare_one, &p, x->e);

	if (rc == ERR_NOTFOUND) {
		err_clear(x->e);
		p.skip_state = "cancelled", p.skip_reason = "recipient removed";
	} else if (rc != 0) {
		return rc;
	}
	if (p.job != NULL) {
		pending_push(x, p.job);
		return 0;
	}
	o.state = o.outcome = p.skip_state, o.reason = p.skip_reason;
	settle_add(x, &it, &o);
	if (strcmp(p.skip_state, "suppressed") == 0)
		x->sum->suppressed++;
	else if (strcmp(p.skip_state, "failed") == 0)
		x->sum->failed++;
	else
		x->sum->cancelled++;
	return 0;
}

/* This process's share of the relays' connections (at least 1). */
static size_t own_connections(const struct sender *x)
{
	size_t conns = 0;

	for (size_t i = 0; i < x->cfg->n_relays; i++)
		conns += (size_t)x->cfg->relays[i].connections;
	if (x->o->share > 1)
		conns = (conns + (size_t)x->o->share - 1) / (size_t)x->o->share;
	return conns > 0 ? conns : 1;
}

/*
 * A claim fills the queue up to CLAIM_ROUNDS rounds of this process's connections:
 * each claim is a commit (settlements ride in it), and a commit costs an fsync and
 * the index pages it dirties whatever its size, so a few larger claims cost less
 * than many small ones; a crash re-queues what was claimed and not yet settled.
 */
static size_t claim_size(const struct sender *x)
{
	size_t target = x->o->dry_run ? 256 : CLAIM_ROUNDS * own_connections(x), want;

	/* Under a rate limit, about a second's worth: no more waits 'sending'. */
	if (x->global.rate > 0 && (double)target > x->global.rate)
		target = x->global.rate < 8 ? 8 : (size_t)x->global.rate;
	if (!x->o->dry_run && x->mailer != NULL && mailer_capacity(x->mailer, mailer_now_ms()) == 0 &&
	    mailer_in_flight(x->mailer) == 0)
		target = 8; /* every relay rests: claim little until one is back */
	want = target > x->n_pending ? target - x->n_pending : 0;
	if (want > (size_t)x->cfg->batch_size)
		want = (size_t)x->cfg->batch_size;
	if (x->o->limit > 0) {
		int64_t left = x->o->limit - x->submitted - (int64_t)x->n_pending;
		want = left <= 0 ? 0 : (size_t)left < want ? (size_t)left : want;
	}
	return want;
}

static int submit_pending(struct sender *x);

/*
 * While a batch is being prepared, the transfers in flight must not wait for it:
 * every few messages, hand what is ready to the idle connections and read the
 * replies that came in, without waiting. Finished transfers only queue their
 * settlements (memory); nothing here touches the ledger.
 */
static int keep_moving(struct sender *x)
{
	int rc;

	if (x->o->dry_run || x->mailer == NULL)
		return 0;
	if ((rc = submit_pending(x)) != 0 || mailer_in_flight(x->mailer) == 0)
		return rc;
	return mailer_run(x->mailer, 0, on_done, x, x->e);
}

/* Queues the next piece of what is due (about max_rows deliveries, queue_due_some; 0: all the
 * rest), in the caller's transaction. */
static int queue_more(struct sender *x, int64_t max_rows)
{
	struct queue_counts n;
	int rc;

	if (x->queue_done)
		return 0;
	rc = queue_due_some(x->s, x->c, x->campaign_id, x->o->now, max_rows, &n, &x->queue_done,
			    x->e);
	x->sum->queued.initial += n.initial, x->sum->queued.reminder += n.reminder;
	x->sum->queued.final += n.final;
	return rc;
}

/* Claims and prepares the next batch; *got = how many were claimed (0: nothing due). */
static int claim_batch(struct sender *x, size_t *got)
{
	struct store_claim claims[512];
	size_t want = claim_size(x), n = 0;
	int rc;

	*got = 0;
	if (want == 0)
		return 0;
	if (want > 512)
		want = 512;
	/* The waiting settlements and the next claim share one commit (one fsync, not two). */
	if ((rc = txn_begin(x)) != 0)
		return rc;
	rc = settles_apply(x);
	if (rc == 0)
		rc = queue_more(x, QUEUE_CHUNK);
	if (rc == 0)
		rc = store_delivery_claim(x->s, x->campaign_id, x->run_id, x->o->now,
					  (int64_t)time(NULL) + x->cfg->lease_seconds, want, claims,
					  &n, x->e);
	if (rc == 0)
		rc = txn_commit(x);
	else if (!x->o->dry_run)
		store_rollback(x->s);
	settles_clear(x);
	/* The batch's lookups (recipient, suppression) share one read transaction. */
	if (rc == 0 && n > 0 && !x->o->dry_run && (rc = store_begin_read(x->s, x->e)) != 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < n; i++)
		if ((rc = prepare(x, &claims[i])) == 0 && i % KEEP_MOVING_EVERY == 0)
			rc = keep_moving(x);
	if (n > 0 && !x->o->dry_run) {
		if (rc == 0)
			rc = store_commit(x->s, x->e);
		else
			store_rollback(x->s);
	}
	*got = n;
	return rc;
}

/* Hands pending jobs to the relays while the rates and connections allow. */
static int submit_pending(struct sender *x)
{
	int64_t now_ms = mailer_now_ms();
	size_t keep = 0, i;

	for (i = 0; i < x->n_pending; i++) {
		struct mailer_job *job = x->pending[i];
		struct item *it = job->ud;
		struct bucket *db = domain_bucket(x, it->domain);
		int rc;

		if (!bucket_ready(&x->global, now_ms))
			break; /* the global rate: nothing else may go now */
		if (db != NULL && !bucket_ready(db, now_ms)) {
			x->pending[keep++] = job; /* this domain must wait; others may go */
			continue;
		}
		rc = x->o->dry_run ? 0 : mailer_submit(x->mailer, job, now_ms, x->e);
		if (rc < 0)
			return rc;
		if (rc == 1)
			break; /* every relay is busy or resting */
		bucket_spend(&x->global), bucket_spend(db);
		x->submitted++;
		if (x->o->dry_run)
			on_done(x, job, &(struct mailer_result){.outcome = MAILER_ACCEPTED,
							       .relay = "(dry run)", .code = 250});
	}
	for (; i < x->n_pending; i++)
		x->pending[keep++] = x->pending[i];
	x->n_pending = keep;
	return 0;
}

static void progress(struct sender *x, bool final)
{
	int64_t now = mailer_now_ms();
	double t = (double)(now - x->started_ms) / 1000.0;
	int64_t done = x->sum->sent + x->sum->deferred + x->sum->failed;

	if (!x->o->progress || (!final && now - x->last_progress_ms < 250))
		return;
	x->last_progress_ms = now;
	fprintf(stderr, "\rsending %s: %lld sent, %lld deferred, %lld failed, %.0f/s, %zu in"
		" flight   %s", x->c->name, (long long)x->sum->sent, (long long)x->sum->deferred,
		(long long)x->sum->failed, t > 0 ? (double)done / t : 0.0,
		x->mailer ? mailer_in_flight(x->mailer) : 0, final ? "\n" : "");
}

/* Stops claiming when the campaign was paused or cancelled meanwhile. */
static int still_active(struct sender *x, bool *active)
{
	struct store_campaign sc;
	int rc = store_campaign_get(x->s, x->c->name, &sc, x->e);

	if (rc != 0)
		return rc;
	*active = strcmp(sc.state, "active") == 0;
	store_campaign_clear(&sc);
	return 0;
}

static bool limit_reached(const struct sender *x)
{
	return x->o->limit > 0 && x->submitted + (int64_t)x->n_pending >= x->o->limit;
}

static void wait_briefly(const struct sender *x)
{
	struct timespec ts = {0, 5 * 1000 * 1000};

	if (x->mailer == NULL || mailer_in_flight(x->mailer) == 0)
		nanosleep(&ts, NULL);
}

/* Every relay stayed down: the run ends (exit 75), and the log says which relays and how. */
static void relays_down(struct sender *x)
{
	struct buf b;

	buf_init(&b);
	mailer_describe_relays(x->mailer, &b);
	log_warnx("send: every relay is down: %s", b.data);
	buf_free(&b);
	x->sum->relays_down = true;
}

static int pump(struct sender *x)
{
	int rc;

	if ((rc = submit_pending(x)) != 0)
		return rc;
	if (x->mailer != NULL && mailer_in_flight(x->mailer) > 0) {
		if ((rc = mailer_run(x->mailer, 20, on_done, x, x->e)) != 0)
			return rc;
	} else if (x->n_pending > 0) {
		wait_briefly(x); /* waiting for a rate bucket or a resting relay */
	}
	if (x->mailer != NULL && !x->sum->relays_down &&
	    mailer_all_relays_down(x->mailer, RELAY_DOWN_STREAK))
		relays_down(x);
	if (flush_due(x))
		return flush(x);
	return 0;
}

/*
 * Claim again only when few jobs wait: what is claimed is 'sending' in the ledger, and
 * a crash re-queues all of it, so keep it to a couple of rounds of the connections.
 */
static size_t low_water(const struct sender *x)
{
	size_t conns = own_connections(x);

	if (x->o->dry_run)
		return 256;
	return conns < 4 ? 8 : 2 * conns;
}

static int send_loop(struct sender *x)
{
	bool exhausted = false, active = true;
	size_t got;
	int rc = 0;

	while (rc == 0 && !x->sum->relays_down) {
		if (stop_requested) {
			x->sum->interrupted = true;
			break;
		}
		if (!exhausted && !limit_reached(x) && x->n_pending < low_water(x)) {
			if ((rc = still_active(x, &active)) != 0)
				break;
			if (!active) {
				x->sum->paused = true, exhausted = true;
			} else if ((rc = claim_batch(x, &got)) == 0 && got == 0 &&
				   x->queue_done) {
				exhausted = true; /* else the next claim queues more */
			}
		}
		if (rc == 0)
			rc = pump(x);
		progress(x, false);
		if ((exhausted || limit_reached(x)) && x->n_pending == 0 &&
		    (x->mailer == NULL || mailer_in_flight(x->mailer) == 0))
			break;
	}
	return rc;
}

/* After the loop: let transfers under way finish, and give back what never left. */
static int drain(struct sender *x)
{
	struct outcome back = {"queued", "relay-down", NULL, 0, false, true, NULL};
	int64_t deadline = mailer_now_ms() + 1000LL * 120;
	int rc = 0;

	while (rc == 0 && x->mailer != NULL && mailer_in_flight(x->mailer) > 0 &&
	       mailer_now_ms() < deadline)
		rc = mailer_run(x->mailer, 50, on_done, x, x->e);
	back.due_at = x->o->now;
	if (!x->sum->relays_down)
		back.outcome = "queued";
	for (size_t i = 0; i < x->n_pending; i++) {
		settle_add(x, x->pending[i]->ud, &back);
		job_free(x->pending[i]);
	}
	x->n_pending = 0;
	if (rc == 0)
		rc = flush(x);
	return rc;
}

/*
 * The other worker holds the ledger's write lock (its commit is an fsync): rather
 * than sleep as SQLite's busy timeout does, keep the transfers in flight moving,
 * 1 ms at a time, for at most the store's busy timeout. Finished transfers wait
 * for the next mailer_run: this runs inside a ledger call and calls nothing back.
 */
static int ledger_busy(void *ud, int tries)
{
	struct sender *x = ud;
	int64_t now = mailer_now_ms();
	struct timespec ts = {0, 200 * 1000};

	if (tries == 0)
		x->busy_since_ms = now;
	if (now - x->busy_since_ms >= STORE_BUSY_TIMEOUT_MS)
		return 0;
	if (x->mailer != NULL && mailer_in_flight(x->mailer) > 0)
		mailer_wait(x->mailer, 1);
	else
		nanosleep(&ts, NULL);
	return 1;
}

static int setup(struct sender *x)
{
	struct render_options ro = {x->cfg->bounces.secret, x->cfg->bounces.secret_len, false};
	int rc;

	x->segment_ids = xcalloc(x->c->n_segments, sizeof *x->segment_ids);
	for (size_t i = 0; i < x->c->n_segments; i++)
		if ((rc = store_segment_id(x->s, x->campaign_id, x->c->segments[i].name,
					   &x->segment_ids[i], x->e)) != 0)
			return rc;
	if ((rc = render_templates_load(&x->templates, x->c, x->e)) != 0)
		return rc;
	x->render = render_new(x->templates, &ro);
	if (x->cfg->bounces.secret != NULL) /* NULL if OpenSSL fails: verp_address then */
		x->verp = verp_signer_new(x->cfg->bounces.secret, x->cfg->bounces.secret_len);
	render_result_init(&x->res);
	if (!x->o->dry_run && (rc = mailer_new(&x->mailer, x->cfg, x->o->share, x->e)) != 0)
		return rc;
	store_busy_wait(x->s, ledger_busy, x);
	buckets_init(x);
	return 0;
}

static void teardown(struct sender *x)
{
	store_busy_wait(x->s, NULL, NULL);
	for (size_t i = 0; i < x->n_pending; i++)
		job_free(x->pending[i]);
	free(x->pending);
	for (size_t i = 0; i < x->n_settles; i++)
		settle_free(&x->settles[i]);
	free(x->settles);
	free(x->domains);
	mailer_free(x->mailer);
	render_result_free(&x->res);
	render_free(x->render);
	verp_signer_free(x->verp);
	render_templates_free(x->templates);
	free(x->segment_ids);
}

/* The dead runs found among those with deliveries in flight. */
struct dead_runs {
	char host[64];
	char **ids;
	size_t n;
};

/*
 * A run is dead when its lease ran out (wall-clock time: leases are about
 * processes, not campaign time), or when it ran on this host and its process
 * is gone. A live run elsewhere keeps its deliveries until its lease ends.
 */
static int note_if_dead(void *ud, const char *run_id, int64_t lease_until)
{
	struct dead_runs *d = ud;
	size_t hl = strlen(d->host);
	bool dead = lease_until < (int64_t)time(NULL);
	char *end;
	long pid;

	if (!dead && strncmp(run_id, d->host, hl) == 0 && run_id[hl] == ':') {
		pid = strtol(run_id + hl + 1, &end, 10);
		if (*end == ':' && pid > 0)
			dead = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
	}
	if (dead) {
		d->ids = xrealloc(d->ids, (d->n + 1) * sizeof *d->ids);
		d->ids[d->n++] = xstrdup(run_id);
	}
	return 0;
}

static int recover_dead_runs(struct sender *x)
{
	struct dead_runs d = {{0}, NULL, 0};
	int rc;

	snprintf(d.host, sizeof d.host, "%.*s", (int)strcspn(x->run_id, ":"), x->run_id);
	rc = store_delivery_claimants(x->s, note_if_dead, &d, x->e);
	for (size_t i = 0; i < d.n; i++) {
		if (rc == 0)
			rc = store_delivery_recover(x->s, d.ids[i], x->run_id, x->o->now,
						    &x->sum->recovered, x->e);
		free(d.ids[i]);
	}
	free(d.ids);
	return rc;
}

/* Recovers what a dead run left 'sending', and queues the first piece of what became due. */
static int prepare_ledger(struct sender *x)
{
	int rc;

	if ((rc = txn_begin(x)) != 0)
		return rc;
	if ((rc = recover_dead_runs(x)) == 0 && (rc = queue_more(x, QUEUE_CHUNK)) == 0 &&
	    (x->o->now < x->c->cutoff_at ||
	     (rc = store_delivery_expire(x->s, x->campaign_id, x->o->now, &x->sum->expired,
					 x->e)) == 0))
		return txn_commit(x);
	if (!x->o->dry_run)
		store_rollback(x->s);
	return rc;
}

/*
 * A run that stops early (--limit, a pause, an interruption, relays down) still
 * queues everything due, as it did when the whole wave was queued up front: the
 * summary's "due and not sent" counts it, and the next run finds it queued.
 */
static int finish_queue(struct sender *x)
{
	int rc;

	if (x->queue_done)
		return 0;
	if ((rc = txn_begin(x)) != 0)
		return rc;
	if ((rc = queue_more(x, 0)) == 0)
		return txn_commit(x);
	if (!x->o->dry_run)
		store_rollback(x->s);
	return rc;
}

static void install_signals(struct sigaction *old_int, struct sigaction *old_term)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	stop_requested = 0;
	sigaction(SIGINT, &sa, old_int);
	sigaction(SIGTERM, &sa, old_term);
}

int sender_send(struct store *s, const struct config *cfg, const struct campaign *c,
		int64_t campaign_id, const struct sender_options *o, struct sender_summary *sum,
		struct err *e)
{
	struct sender x = {.s = s, .cfg = cfg, .c = c, .campaign_id = campaign_id, .o = o,
			   .sum = sum, .e = e};
	struct sigaction old_int, old_term;
	int rc;

	memset(sum, 0, sizeof *sum);
	make_run_id(&x);
	x.started_ms = x.last_progress_ms = mailer_now_ms();
	install_signals(&old_int, &old_term);
	if (o->dry_run && (rc = store_begin(s, e)) != 0)
		goto out;
	if ((rc = setup(&x)) != 0 || (rc = prepare_ledger(&x)) != 0)
		goto out;
	rc = send_loop(&x);
	if (rc == 0)
		rc = drain(&x);
	if (rc == 0)
		rc = finish_queue(&x);
	progress(&x, true);
	if (rc == 0)
		rc = store_delivery_due(s, campaign_id, o->now, &sum->remaining, e);
out:
	if (o->dry_run)
		store_rollback(s);
	sum->seconds = (double)(mailer_now_ms() - x.started_ms) / 1000.0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	teardown(&x);
	return rc;
}

/* What sender_warm_zones has loaded so far. */
struct zone_warm {
	const struct campaign *c;
	size_t n;
};

static int zone_warm_one(void *ud, const char *tz)
{
	struct zone_warm *w = ud;
	struct schedule_civil civ;

	if (w->n == SENDER_WARM_ZONES)
		return 1; /* enough: stop */
	w->n++;
	/* The instants the render looks up first (zone_fill): libical expands the zone's
	 * rules over the years they need, once for the process and its later children. */
	(void)schedule_local_civil(w->c->cutoff_at, tz, &civ);
	(void)schedule_local_civil(w->c->reminder_start_at, tz, &civ);
	return 0;
}

size_t sender_warm_zones(struct store *s, const struct campaign *c, int64_t campaign_id)
{
	struct zone_warm w = {c, 0};
	struct err ignored = {0}; /* best effort: the send meets any error again and reports it */

	(void)store_recipient_zones(s, campaign_id, SENDER_WARM_SAMPLE, zone_warm_one, &w,
				    &ignored);
	return w.n;
}
