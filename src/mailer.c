/* mailer.c — SMTP over libcurl's multi interface (RFC 5321 with STARTTLS RFC 3207, AUTH RFC 4954):
 * relays with failover, reused connections, reply capture, and throttled relays slowed down. */
#include "mailer.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* A relay and what the mailer has learnt about it. */
struct relay_state {
	const struct relay *cfg;
	int connections;        /* this process's share of cfg->connections */
	char *url;              /* cfg->url with the EHLO name as its path */
	int in_flight;
	int fail_streak;        /* consecutive MAILER_RELAY_DOWN outcomes */
	int64_t down_until_ms;  /* not used before this (monotonic ms) */
	double rate;            /* messages a second while throttled; 0 = no limit */
	double ceiling;         /* the rate seen when first throttled: recover up to twice it */
	double tokens;
	int64_t tokens_at_ms;
	int64_t window_ms;      /* start of the window the observed rate is measured over */
	int64_t window_done;    /* completions in it */
	int64_t throttled_ms;   /* when the relay last asked us to slow down */
};

/* One transfer slot: an easy handle kept across messages (its connection lives in the multi). */
struct transfer {
	CURL *easy;
	struct mailer_job *job;
	struct relay_state *relay;
	struct curl_slist *rcpt;
	size_t offset;
	enum mailer_stage stage;
	int code;
	bool quitting; /* QUIT sent: its reply must not hide the one that mattered */
	bool reply_done;
	char reply[512];
	size_t reply_len;
	char line[1024];
	size_t line_len;
	char errbuf[CURL_ERROR_SIZE];
	struct relay_state *bound; /* the relay the handle's options are set for, or NULL */
	struct transfer *next_free;
};

struct mailer {
	CURLM *multi;
	struct relay_state *relays;
	size_t n_relays;
	struct transfer *free_list;
	size_t in_flight;
	char ehlo[256];
};

int64_t mailer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mailer_job_free(struct mailer_job *job)
{
	if (job == NULL)
		return;
	free(job->envelope_from);
	free(job->rcpt);
	buf_free(&job->data);
	free(job);
}

static size_t read_body(char *dst, size_t size, size_t nmemb, void *ud)
{
	struct transfer *t = ud;
	size_t room = size * nmemb, left = t->job->data.len - t->offset;
	size_t n = left < room ? left : room;

	memcpy(dst, t->job->data.data + t->offset, n);
	t->offset += n;
	return n;
}

/* Keeps the last complete reply: "250-a" "250 b" becomes code 250, "a b". */
static void reply_line(struct transfer *t, const char *line, size_t len)
{
	int code;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (t->reply_done) {
		t->reply_len = 0;
		t->reply[0] = '\0';
	}
	if (len > 4 && t->reply_len + 1 < sizeof t->reply) {
		int n = snprintf(t->reply + t->reply_len, sizeof t->reply - t->reply_len, "%s%.*s",
				 t->reply_len ? " " : "", (int)(len - 4), line + 4);
		t->reply_len += n > 0 ? (size_t)n : 0;
		if (t->reply_len >= sizeof t->reply)
			t->reply_len = sizeof t->reply - 1;
	}
	t->code = code;
	t->reply_done = len == 3 || line[3] != '-';
}

/* Which command the next reply will answer, from the commands libcurl sends. */
static void command_sent(struct transfer *t, const char *cmd, size_t len)
{
	if (len >= 4 && strncasecmp(cmd, "MAIL", 4) == 0)
		t->stage = MAILER_STAGE_MAIL;
	else if (len >= 4 && strncasecmp(cmd, "RCPT", 4) == 0)
		t->stage = MAILER_STAGE_RCPT;
	else if (len >= 4 && strncasecmp(cmd, "DATA", 4) == 0)
		t->stage = MAILER_STAGE_DATA;
	else if (len >= 4 && strncasecmp(cmd, "QUIT", 4) == 0)
		t->quitting = true;
}

static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud)
{
	struct transfer *t = ud;

	(void)easy;
	if (type == CURLINFO_HEADER_OUT) {
		command_sent(t, data, size);
		return 0;
	}
	if (type != CURLINFO_HEADER_IN || t->quitting)
		return 0;
	for (size_t i = 0; i < size; i++) {
		if (t->line_len + 1 < sizeof t->line)
			t->line[t->line_len++] = data[i];
		if (data[i] == '\n') {
			reply_line(t, t->line, t->line_len);
			t->line_len = 0;
		}
	}
	return 0;
}

static void relay_tokens(struct relay_state *r, int64_t now_ms)
{
	if (r->rate <= 0)
		return;
	r->tokens += r->rate * (double)(now_ms - r->tokens_at_ms) / 1000.0;
	if (r->tokens > (r->rate > 1 ? r->rate : 1))
		r->tokens = r->rate > 1 ? r->rate : 1;
	r->tokens_at_ms = now_ms;
}

static bool relay_can_take(struct relay_state *r, int64_t now_ms)
{
	if (now_ms < r->down_until_ms || r->in_flight >= r->connections)
		return false;
	relay_tokens(r, now_ms);
	return r->rate <= 0 || r->tokens >= 1.0;
}

size_t mailer_capacity(const struct mailer *m, int64_t now_ms)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n_relays; i++) {
		struct relay_state *r = &m->relays[i];
		if (relay_can_take(r, now_ms))
			n += (size_t)(r->connections - r->in_flight);
	}
	return n;
}

size_t mailer_in_flight(const struct mailer *m)
{
	return m->in_flight;
}

/* The URL's path is the EHLO name libcurl announces: scheme://host:port/NAME. */
static char *url_with_ehlo(const char *url, const char *ehlo)
{
	const char *host = strstr(url, "://");
	size_t keep;

	host = host ? host + 3 : url;
	keep = (size_t)(host - url) + strcspn(host, "/");
	return xasprintf("%.*s/%s", (int)keep, url, ehlo);
}

int mailer_new(struct mailer **out, const struct config *cfg, int share, struct err *e)
{
	struct mailer *m;
	char host[200] = "localhost";
	int total = 0;

	*out = NULL;
	if (cfg->n_relays == 0)
		return err_set(e, ERR_CONFIG, "no SMTP relay is configured: add a relays = ( {"
			       " url = \"smtp://host:port\"; } ) entry to %s",
			       cfg->path ? cfg->path : "the configuration (--config FILE)");
	m = xcalloc(1, sizeof *m);
	gethostname(host, sizeof host - 1);
	snprintf(m->ehlo, sizeof m->ehlo, "%s", host);
	m->multi = curl_multi_init();
	m->relays = xcalloc(cfg->n_relays, sizeof *m->relays);
	m->n_relays = cfg->n_relays;
	for (size_t i = 0; i < cfg->n_relays; i++) {
		struct relay_state *r = &m->relays[i];
		r->cfg = &cfg->relays[i];
		r->url = url_with_ehlo(cfg->relays[i].url, m->ehlo);
		r->connections = share > 1 ? (r->cfg->connections + share - 1) / share
					   : r->cfg->connections;
		total += r->connections;
	}
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)total);
	*out = m;
	return 0;
}

void mailer_free(struct mailer *m)
{
	if (m == NULL)
		return;
	while (m->free_list != NULL) {
		struct transfer *t = m->free_list;
		m->free_list = t->next_free;
		curl_easy_cleanup(t->easy);
		free(t);
	}
	curl_multi_cleanup(m->multi);
	for (size_t i = 0; i < m->n_relays; i++)
		free(m->relays[i].url);
	free(m->relays);
	free(m);
}

static struct transfer *transfer_get(struct mailer *m)
{
	struct transfer *t = m->free_list;

	if (t != NULL) {
		m->free_list = t->next_free;
		return t;
	}
	t = xcalloc(1, sizeof *t);
	t->easy = curl_easy_init();
	return t;
}

/*
 * What stays the same for every message through one relay, set once per easy
 * handle (and again only when the handle serves another relay), so that a message
 * sets its own three options instead of a curl_easy_reset and twenty.
 */
static void transfer_bind(struct transfer *t, struct relay_state *r)
{
	const struct relay *c = r->cfg;
	CURL *h = t->easy;

	curl_easy_reset(h);
	t->bound = r;
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
	curl_easy_setopt(h, CURLOPT_READDATA, t);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)c->timeout);
	curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, (long)c->timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->timeout * 5);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L); /* feeds on_debug: the replies' text */
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, t);
	curl_easy_setopt(h, CURLOPT_PRIVATE, t);
	curl_easy_setopt(h, CURLOPT_USE_SSL,
			 c->tls == RELAY_TLS_NONE ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
	if (c->user != NULL) {
		curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->password ? c->password : "");
	}
}

static void transfer_setup(struct transfer *t, struct relay_state *r)
{
	CURL *h = t->easy;

	if (t->bound != r)
		transfer_bind(t, r);
	t->relay = r, t->offset = 0, t->stage = MAILER_STAGE_CONNECT, t->code = 0;
	t->quitting = false;
	t->reply_done = false, t->reply_len = 0, t->reply[0] = '\0', t->line_len = 0;
	t->errbuf[0] = '\0';
	t->rcpt = curl_slist_append(NULL, t->job->rcpt);
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, t->job->envelope_from);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, t->rcpt);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->job->data.len);
}

int mailer_submit(struct mailer *m, struct mailer_job *job, int64_t now_ms, struct err *e)
{
	struct relay_state *r = NULL;
	struct transfer *t;

	for (size_t i = 0; i < m->n_relays && r == NULL; i++)
		if (relay_can_take(&m->relays[i], now_ms))
			r = &m->relays[i];
	if (r == NULL)
		return 1;
	t = transfer_get(m);
	t->job = job;
	transfer_setup(t, r);
	if (curl_multi_add_handle(m->multi, t->easy) != CURLM_OK) {
		curl_slist_free_all(t->rcpt);
		t->rcpt = NULL, t->job = NULL;
		t->next_free = m->free_list, m->free_list = t;
		return err_set(e, ERR_SOFTWARE, "libcurl refused a transfer");
	}
	if (r->rate > 0)
		r->tokens -= 1.0;
	r->in_flight++;
	m->in_flight++;
	return 0;
}

static bool relay_failure(CURLcode rc, int code, enum mailer_stage stage)
{
	if (code >= 500 && stage < MAILER_STAGE_RCPT)
		return true; /* greeting, EHLO, AUTH or MAIL FROM refused: about us, not them */
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_USE_SSL_FAILED:
	case CURLE_LOGIN_DENIED:
	case CURLE_SSL_CACERT_BADFILE:
		return true;
	case CURLE_OPERATION_TIMEDOUT:
		return stage == MAILER_STAGE_CONNECT && code == 0;
	default:
		return false;
	}
}

static enum mailer_outcome outcome_of(CURLcode rc, int code, enum mailer_stage stage)
{
	if (rc == CURLE_OK && code >= 200 && code < 300)
		return MAILER_ACCEPTED;
	if (code == 421 || ((code == 451 || code == 454) && stage < MAILER_STAGE_RCPT))
		return MAILER_THROTTLED;
	if (relay_failure(rc, code, stage))
		return MAILER_RELAY_DOWN;
	if (code >= 500 && code < 600)
		return MAILER_PERMFAIL;
	return MAILER_TEMPFAIL;
}

/* Learns from an outcome: failure streaks, back-off of a dead relay, throttled rates. */
static void relay_learn(struct relay_state *r, enum mailer_outcome o, int64_t now_ms)
{
	double observed;

	if (r->window_ms == 0 || now_ms - r->window_ms > 10000)
		r->window_ms = now_ms, r->window_done = 0; /* a fresh window every 10 s */
	r->window_done++;
	/* at least 100 ms, so that a burst at start-up does not read as a huge rate */
	observed = (double)r->window_done * 1000.0 /
		   (double)(now_ms - r->window_ms > 100 ? now_ms - r->window_ms : 100);
	if (o == MAILER_RELAY_DOWN) {
		int shift = r->fail_streak < 6 ? r->fail_streak : 6;
		r->fail_streak++;
		r->down_until_ms = now_ms + (1000LL << shift); /* 1 s, 2 s, ... 64 s */
		return;
	}
	r->fail_streak = 0;
	if (o == MAILER_THROTTLED) {
		/* One halving per second at most: replies to messages already sent at the
		 * old rate say nothing about the new one. */
		if (now_ms - r->throttled_ms < 1000)
			return;
		r->throttled_ms = now_ms;
		if (r->rate <= 0)
			r->ceiling = observed > 1 ? observed : 1;
		r->rate = (r->rate > 0 ? r->rate : r->ceiling) / 2;
		if (r->rate < 0.2)
			r->rate = 0.2;
		r->tokens = 0, r->tokens_at_ms = now_ms;
		log_warnx("relay %s asks us to slow down: now at most %.1f messages a second",
			  r->cfg->name, r->rate);
	} else if (r->rate > 0 && o == MAILER_ACCEPTED) {
		r->rate *= 1.02; /* recover gradually */
		if (r->rate >= 2 * r->ceiling)
			r->rate = 0;
	}
}

static void result_fill(struct transfer *t, CURLcode rc, struct mailer_result *res)
{
	memset(res, 0, sizeof *res);
	res->relay = t->relay->cfg->name;
	res->code = t->code;
	res->stage = t->stage;
	snprintf(res->reply, sizeof res->reply, "%s", t->reply);
	if (rc != CURLE_OK)
		snprintf(res->local_error, sizeof res->local_error, "%s",
			 t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
	res->outcome = outcome_of(rc, t->code, t->stage);
}

static void finish(struct mailer *m, CURLMsg *msg,
		   void (*done)(void *ud, struct mailer_job *job, const struct mailer_result *r),
		   void *ud)
{
	struct transfer *t = NULL;
	struct mailer_result res;
	struct mailer_job *job;

	curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
	curl_multi_remove_handle(m->multi, t->easy);
	result_fill(t, msg->data.result, &res);
	relay_learn(t->relay, res.outcome, mailer_now_ms());
	t->relay->in_flight--;
	m->in_flight--;
	curl_slist_free_all(t->rcpt);
	job = t->job;
	t->rcpt = NULL, t->job = NULL;
	t->next_free = m->free_list, m->free_list = t;
	done(ud, job, &res);
}

/* Reports every finished transfer; returns how many there were. */
static int drain_finished(struct mailer *m,
			  void (*done)(void *ud, struct mailer_job *job,
				       const struct mailer_result *r),
			  void *ud)
{
	int left, n = 0;
	CURLMsg *msg;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE) {
			finish(m, msg, done, ud);
			n++;
		}
	return n;
}

int mailer_run(struct mailer *m, int timeout_ms,
	       void (*done)(void *ud, struct mailer_job *job, const struct mailer_result *r),
	       void *ud, struct err *e)
{
	int running = 0;

	if (curl_multi_perform(m->multi, &running) != CURLM_OK)
		return err_set(e, ERR_SOFTWARE, "libcurl's multi interface failed");
	/* Something finished already: return at once so its connection gets new work. */
	if (drain_finished(m, done, ud) > 0 || running == 0)
		return 0;
	if (curl_multi_poll(m->multi, NULL, 0, timeout_ms, NULL) != CURLM_OK ||
	    curl_multi_perform(m->multi, &running) != CURLM_OK)
		return err_set(e, ERR_SOFTWARE, "libcurl's multi interface failed");
	drain_finished(m, done, ud);
	return 0;
}

void mailer_wait(struct mailer *m, int timeout_ms)
{
	int running = 0;

	if (curl_multi_poll(m->multi, NULL, 0, timeout_ms, NULL) == CURLM_OK)
		curl_multi_perform(m->multi, &running);
}

bool mailer_all_relays_down(const struct mailer *m, int failures)
{
	for (size_t i = 0; i < m->n_relays; i++)
		if (m->relays[i].fail_streak < failures)
			return false;
	return true;
}

void mailer_describe_relays(const struct mailer *m, struct buf *out)
{
	for (size_t i = 0; i < m->n_relays; i++)
		buf_printf(out, "%s%s (%s): %d failed connection%s in a row", i ? "; " : "",
			   m->relays[i].cfg->name, m->relays[i].cfg->url, m->relays[i].fail_streak,
			   m->relays[i].fail_streak == 1 ? "" : "s");
}
