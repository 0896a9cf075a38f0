/* mailer.c — SMTP relays with failover, reused connections and throttling (RFC 5321): libcurl
 * connects (TCP, SMTPS or STARTTLS RFC 3207 with verification, AUTH RFC 4954, EHLO) with
 * CURLOPT_CONNECT_ONLY, then smtp_pipe carries the mail transactions, pipelined (RFC 2920). */
#include "mailer.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "smtp_pipe.h"

struct conn;

/* A relay and what the mailer has learnt about it. */
struct relay_state {
	const struct relay *cfg;
	int connections;        /* this process's share of cfg->connections */
	struct conn *conns;     /* that many */
	char *url;              /* cfg->url with the EHLO name as its path */
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

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_READY };

/*
 * One connection to a relay. libcurl sets it up in a multi handle of its own (a
 * connect-only connection sits idle in its multi's pool, where pruning done for
 * another connection could take it for dead), then smtp_pipe talks over it.
 */
struct conn {
	struct relay_state *relay;
	CURLM *multi;
	CURL *easy;
	enum conn_state state;
	curl_socket_t fd;
	struct smtp_pipe *pipe;
	int64_t progress_ms; /* the last byte sent or read */
	bool heard;          /* the relay answered a command on this connection */
	size_t retry_len;    /* a write that would have blocked: retried as it was, first */
	/* the setup's dialogue, as libcurl's debug callback shows it */
	bool in_ehlo;        /* the lines coming are the EHLO reply: its capabilities */
	bool reply_done;
	int code;
	char reply[512];
	size_t reply_len;
	char line[1024];
	size_t line_len;
	char errbuf[CURL_ERROR_SIZE];
};

/* A finished job waiting to be reported by mailer_run. */
struct finished {
	struct mailer_job *job;
	struct mailer_result res;
};

struct mailer {
	struct relay_state *relays;
	size_t n_relays;
	size_t in_flight;
	struct finished *done;
	size_t n_done, cap_done;
	struct pollfd *pfds;
	struct conn **pconn; /* the connection of each pfds entry */
	size_t cap_pfds;
	char ehlo[256];
	char io[16384];
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

/* Keeps the setup's last complete reply: "250-a" "250 b" becomes code 250, "a b". */
static void setup_reply_line(struct conn *c, const char *line, size_t len)
{
	int code;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return;
	if (c->in_ehlo)
		smtp_pipe_capability(c->pipe, line, len);
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (c->reply_done)
		c->reply_len = 0, c->reply[0] = '\0';
	if (len > 4 && c->reply_len + 1 < sizeof c->reply) {
		int n = snprintf(c->reply + c->reply_len, sizeof c->reply - c->reply_len, "%s%.*s",
				 c->reply_len ? " " : "", (int)(len - 4), line + 4);
		c->reply_len += n > 0 ? (size_t)n : 0;
		if (c->reply_len >= sizeof c->reply)
			c->reply_len = sizeof c->reply - 1;
	}
	c->code = code;
	c->reply_done = len == 3 || line[3] != '-';
}

/*
 * libcurl's account of the setup: the commands it sends tell which reply is the
 * EHLO reply (after STARTTLS, the second one counts), the replies give the code
 * and text a failure is reported with.
 */
static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud)
{
	struct conn *c = ud;

	(void)easy;
	if (type == CURLINFO_HEADER_OUT) {
		c->in_ehlo = size >= 4 && strncasecmp(data, "EHLO", 4) == 0;
		if (c->in_ehlo)
			smtp_pipe_reconnect(c->pipe); /* forget what an earlier EHLO said */
		return 0;
	}
	if (type != CURLINFO_HEADER_IN)
		return 0;
	for (size_t i = 0; i < size; i++) {
		if (c->line_len + 1 < sizeof c->line)
			c->line[c->line_len++] = data[i];
		if (data[i] == '\n') {
			setup_reply_line(c, c->line, c->line_len);
			c->line_len = 0;
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

/* Messages conn can take now: a connection not yet set up takes one, to set it up with. */
static size_t conn_room(const struct conn *c)
{
	size_t depth = c->state == CONN_READY ? smtp_pipe_depth(c->pipe) : 1;
	size_t n = smtp_pipe_count(c->pipe);

	return n < depth ? depth - n : 0;
}

static size_t relay_room(const struct relay_state *r)
{
	size_t n = 0;

	for (int i = 0; i < r->connections; i++)
		n += conn_room(&r->conns[i]);
	return n;
}

static bool relay_can_take(struct relay_state *r, int64_t now_ms)
{
	if (now_ms < r->down_until_ms || relay_room(r) == 0)
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
			n += relay_room(r);
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

/* What stays the same for every connection to a relay, set once on the connection's handle. */
static void conn_init(struct conn *c, struct relay_state *r)
{
	const struct relay *cfg = r->cfg;
	CURL *h;

	c->relay = r;
	c->fd = CURL_SOCKET_BAD;
	c->pipe = smtp_pipe_new();
	c->multi = curl_multi_init();
	c->easy = h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L); /* greeting, EHLO, STARTTLS, AUTH: no more */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)cfg->timeout);
	curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, (long)cfg->timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)cfg->timeout * 5);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, on_debug);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
	curl_easy_setopt(h, CURLOPT_USE_SSL, cfg->tls == RELAY_TLS_NONE ? (long)CURLUSESSL_NONE
									: (long)CURLUSESSL_ALL);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, cfg->verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, cfg->verify ? 2L : 0L);
	if (cfg->user != NULL) {
		curl_easy_setopt(h, CURLOPT_USERNAME, cfg->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->password ? cfg->password : "");
	}
}

static void conn_free(struct conn *c)
{
	struct mailer_job *job;

	if (c->easy == NULL)
		return;
	if (c->state == CONN_READY) {
		size_t n = 0;
		curl_easy_send(c->easy, "QUIT\r\n", 6, &n); /* a courtesy: no reply awaited */
	}
	if (c->state != CONN_IDLE)
		curl_multi_remove_handle(c->multi, c->easy); /* closes the connection */
	while ((job = smtp_pipe_take(c->pipe)) != NULL)
		mailer_job_free(job);
	smtp_pipe_free(c->pipe);
	curl_easy_cleanup(c->easy);
	curl_multi_cleanup(c->multi);
}

int mailer_new(struct mailer **out, const struct config *cfg, int share, struct err *e)
{
	struct mailer *m;
	char host[200] = "localhost";

	*out = NULL;
	if (cfg->n_relays == 0)
		return err_set(e, ERR_CONFIG, "no SMTP relay is configured: add a relays = ( {"
			       " url = \"smtp://host:port\"; } ) entry to %s",
			       cfg->path ? cfg->path : "the configuration (--config FILE)");
	m = xcalloc(1, sizeof *m);
	gethostname(host, sizeof host - 1);
	snprintf(m->ehlo, sizeof m->ehlo, "%s", host);
	m->relays = xcalloc(cfg->n_relays, sizeof *m->relays);
	m->n_relays = cfg->n_relays;
	for (size_t i = 0; i < cfg->n_relays; i++) {
		struct relay_state *r = &m->relays[i];
		r->cfg = &cfg->relays[i];
		r->url = url_with_ehlo(cfg->relays[i].url, m->ehlo);
		r->connections = share > 1 ? (r->cfg->connections + share - 1) / share
					   : r->cfg->connections;
		if (r->connections < 1)
			r->connections = 1;
		r->conns = xcalloc((size_t)r->connections, sizeof *r->conns);
		for (int k = 0; k < r->connections; k++)
			conn_init(&r->conns[k], r);
	}
	*out = m;
	return 0;
}

void mailer_free(struct mailer *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_relays; i++) {
		for (int k = 0; k < m->relays[i].connections; k++)
			conn_free(&m->relays[i].conns[k]);
		free(m->relays[i].conns);
		free(m->relays[i].url);
	}
	for (size_t i = 0; i < m->n_done; i++)
		mailer_job_free(m->done[i].job);
	free(m->done);
	free(m->pfds);
	free(m->pconn);
	free(m->relays);
	free(m);
}

/* Starts setting up c's connection (libcurl does it as the multi handle is driven). */
static int conn_connect(struct conn *c)
{
	c->state = CONN_CONNECTING;
	c->fd = CURL_SOCKET_BAD;
	c->retry_len = 0;
	c->heard = false, c->in_ehlo = false;
	c->code = 0, c->reply_done = false, c->reply_len = 0, c->reply[0] = '\0';
	c->line_len = 0, c->errbuf[0] = '\0';
	smtp_pipe_reconnect(c->pipe);
	curl_easy_setopt(c->easy, CURLOPT_VERBOSE, 1L); /* feeds on_debug: the setup's replies */
	if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) {
		c->state = CONN_IDLE;
		return -1;
	}
	return 0;
}

/* How much c suits one more message: 3 when it would go at once, then the emptiest. */
static int conn_fit(const struct conn *c)
{
	if (conn_room(c) == 0)
		return 0;
	if (c->state == CONN_READY && smtp_pipe_takes_now(c->pipe))
		return 3; /* with the body waiting there, or on an idle connection: one write */
	return smtp_pipe_count(c->pipe) == 0 ? 2 : 1;
}

/* The connection that suits one more message best, or NULL when none has room. */
static struct conn *relay_pick(struct relay_state *r)
{
	struct conn *best = NULL;
	int fit = 0;

	for (int i = 0; i < r->connections && fit < 3; i++) {
		int f = conn_fit(&r->conns[i]);
		if (f > fit)
			best = &r->conns[i], fit = f;
	}
	return best;
}

int mailer_submit(struct mailer *m, struct mailer_job *job, int64_t now_ms, struct err *e)
{
	struct relay_state *r = NULL;
	struct conn *c;

	for (size_t i = 0; i < m->n_relays && r == NULL; i++)
		if (relay_can_take(&m->relays[i], now_ms))
			r = &m->relays[i];
	if (r == NULL || (c = relay_pick(r)) == NULL)
		return 1;
	if (c->state == CONN_IDLE && conn_connect(c) != 0)
		return err_set(e, ERR_SOFTWARE, "libcurl refused to set up a connection to %s",
			       r->cfg->name);
	smtp_pipe_add(c->pipe, job);
	if (r->rate > 0)
		r->tokens -= 1.0;
	m->in_flight++;
	return 0;
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

/* The outcome of a job whose connection could not be set up (libcurl's verdict). */
static enum mailer_outcome setup_outcome(CURLcode rc, int code)
{
	if (code == 421 || code == 451 || code == 454)
		return MAILER_THROTTLED;
	if (relay_failure(rc, code, MAILER_STAGE_CONNECT))
		return MAILER_RELAY_DOWN;
	return MAILER_TEMPFAIL;
}

/* The outcome of a job the dialogue ended (see smtp_pipe.h). */
static enum mailer_outcome pipe_outcome(const struct smtp_done *d)
{
	if (d->accepted)
		return MAILER_ACCEPTED;
	if (d->fate == SMTP_LOST)
		return MAILER_TEMPFAIL; /* its body went out: the relay may have it, try later */
	if (d->code == 421 || ((d->code == 451 || d->code == 454) && d->stage < MAILER_STAGE_RCPT))
		return MAILER_THROTTLED;
	if (d->code >= 500 && d->code < 600)
		/* MAIL FROM refused: about us, not the recipient */
		return d->stage < MAILER_STAGE_RCPT ? MAILER_RELAY_DOWN : MAILER_PERMFAIL;
	return MAILER_TEMPFAIL;
}

/* Learns from a finished job and holds it for mailer_run to report (in flight till then). */
static void finish(struct mailer *m, struct relay_state *r, struct mailer_job *job,
		   const struct mailer_result *res)
{
	relay_learn(r, res->outcome, mailer_now_ms());
	if (m->n_done == m->cap_done) {
		m->cap_done = m->cap_done ? 2 * m->cap_done : 16;
		m->done = xrealloc(m->done, m->cap_done * sizeof *m->done);
	}
	m->done[m->n_done].job = job;
	m->done[m->n_done].res = *res;
	m->n_done++;
}

/* Every job the dialogue on c has ended; why is the local account of a lost one. */
static void conn_collect(struct mailer *m, struct conn *c, const char *why)
{
	struct smtp_done d;
	struct mailer_result res;

	while (smtp_pipe_next_done(c->pipe, &d)) {
		res.relay = c->relay->cfg->name;
		res.code = d.code;
		res.stage = d.stage;
		memcpy(res.reply, d.reply, sizeof res.reply);
		snprintf(res.local_error, sizeof res.local_error, "%s",
			 d.fate == SMTP_LOST && why ? why : "");
		res.outcome = pipe_outcome(&d);
		finish(m, c->relay, d.job, &res);
	}
}

/* Ends every job queued on c with the same result. */
static void conn_give_up(struct mailer *m, struct conn *c, const struct mailer_result *res)
{
	struct mailer_job *job;

	while ((job = smtp_pipe_take(c->pipe)) != NULL)
		finish(m, c->relay, job, res);
}

/* libcurl finished setting up c: the dialogue starts, or its jobs fail as the setup did. */
static void conn_setup_done(struct mailer *m, struct conn *c, CURLcode rc)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	struct mailer_result res;

	if (rc == CURLE_OK && curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
	    fd != CURL_SOCKET_BAD) {
		c->state = CONN_READY, c->fd = fd;
		c->progress_ms = mailer_now_ms();
		curl_easy_setopt(c->easy, CURLOPT_VERBOSE, 0L);
		return;
	}
	curl_multi_remove_handle(c->multi, c->easy);
	c->state = CONN_IDLE;
	memset(&res, 0, sizeof res);
	res.relay = c->relay->cfg->name;
	res.code = c->code;
	res.stage = MAILER_STAGE_CONNECT;
	snprintf(res.reply, sizeof res.reply, "%s", c->reply);
	snprintf(res.local_error, sizeof res.local_error, "%s",
		 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	res.outcome = setup_outcome(rc, c->code);
	conn_give_up(m, c, &res);
}

/*
 * c's connection is over (dropped, timed out, or the dialogue cannot go on): the jobs
 * with a verdict, or whose body went out, finish; those not sent go on a new connection,
 * unless this one never got an answer (then the relay is not working: relay down).
 */
static void conn_fail(struct mailer *m, struct conn *c, const char *why)
{
	bool heard = c->heard;
	struct mailer_result res;

	smtp_pipe_abort(c->pipe);
	conn_collect(m, c, why);
	curl_multi_remove_handle(c->multi, c->easy); /* closes the connection */
	c->state = CONN_IDLE, c->fd = CURL_SOCKET_BAD;
	if (smtp_pipe_count(c->pipe) == 0 || (heard && conn_connect(c) == 0))
		return;
	memset(&res, 0, sizeof res);
	res.relay = c->relay->cfg->name;
	res.stage = MAILER_STAGE_CONNECT;
	res.outcome = MAILER_RELAY_DOWN;
	snprintf(res.local_error, sizeof res.local_error, "%s", why);
	conn_give_up(m, c, &res);
}

/*
 * Sends what c's dialogue has ready, as far as the socket takes it. A write that would
 * block is repeated with the same bytes before more are added: OpenSSL wants a TLS
 * write retried with the same buffer.
 */
static void conn_flush(struct mailer *m, struct conn *c)
{
	size_t len, n;
	const char *out;

	if (c->retry_len > 0)
		out = smtp_pipe_unsent_bytes(c->pipe, &len), len = c->retry_len;
	else
		out = smtp_pipe_output(c->pipe, &len);
	while (len > 0) {
		CURLcode rc = curl_easy_send(c->easy, out, len, &n);
		if (rc == CURLE_AGAIN) {
			c->retry_len = len;
			return;
		}
		c->retry_len = 0;
		if (rc != CURLE_OK) {
			conn_fail(m, c, curl_easy_strerror(rc));
			return;
		}
		smtp_pipe_sent(c->pipe, n);
		c->progress_ms = mailer_now_ms();
		out = smtp_pipe_output(c->pipe, &len);
	}
}

/* Reads c's replies until none is waiting, and collects the jobs they end. */
static void conn_read(struct mailer *m, struct conn *c)
{
	for (;;) {
		size_t n = 0;
		CURLcode rc = curl_easy_recv(c->easy, m->io, sizeof m->io, &n);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK || n == 0) {
			conn_fail(m, c, rc != CURLE_OK ? curl_easy_strerror(rc)
						       : "the relay closed the connection");
			return;
		}
		c->heard = true;
		c->progress_ms = mailer_now_ms();
		if (smtp_pipe_input(c->pipe, m->io, n) != 0) {
			conn_fail(m, c, "the relay ended the dialogue");
			return;
		}
		/* In clear, a short read emptied the socket: spare the call that says so. Over
		 * TLS a read returns one record, and more may wait in the socket. */
		if (n < sizeof m->io && c->relay->cfg->tls == RELAY_TLS_NONE)
			break;
	}
	conn_collect(m, c, NULL);
}

static void pfd_add(struct mailer *m, size_t *n, int fd, short events, struct conn *c)
{
	if (*n == m->cap_pfds) {
		m->cap_pfds = m->cap_pfds ? 2 * m->cap_pfds : 16;
		m->pfds = xrealloc(m->pfds, m->cap_pfds * sizeof *m->pfds);
		m->pconn = xrealloc(m->pconn, m->cap_pfds * sizeof *m->pconn);
	}
	m->pfds[*n] = (struct pollfd){.fd = fd, .events = events};
	m->pconn[*n] = c;
	(*n)++;
}

/* The sockets libcurl waits on while it sets c up, and when it wants to be called again. */
static void poll_setup(struct mailer *m, struct conn *c, size_t *n, int *timeout_ms)
{
	fd_set r, w, x;
	int maxfd = -1;
	long t = -1;

	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	curl_multi_fdset(c->multi, &r, &w, &x, &maxfd);
	for (int fd = 0; fd <= maxfd; fd++) {
		short ev = (short)((FD_ISSET(fd, &r) ? POLLIN : 0) | (FD_ISSET(fd, &w) ? POLLOUT : 0));
		if (ev)
			pfd_add(m, n, fd, ev, c);
	}
	curl_multi_timeout(c->multi, &t);
	if (maxfd < 0 && (t < 0 || t > 10))
		t = 10; /* nothing to wait on yet (a resolver thread, say): look again soon */
	if (t >= 0 && t < *timeout_ms)
		*timeout_ms = (int)t;
}

/* Fills m->pfds with every connection's sockets; shortens *timeout_ms to the nearest timeout. */
static size_t poll_set(struct mailer *m, int *timeout_ms, int64_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n_relays; i++)
		for (int k = 0; k < m->relays[i].connections; k++) {
			struct conn *c = &m->relays[i].conns[k];
			int64_t left = c->progress_ms + 1000LL * c->relay->cfg->timeout - now;
			if (c->state == CONN_CONNECTING)
				poll_setup(m, c, &n, timeout_ms);
			if (c->state != CONN_READY)
				continue;
			pfd_add(m, &n, c->fd,
				(short)(POLLIN | (smtp_pipe_unsent(c->pipe) ? POLLOUT : 0)), c);
			if (smtp_pipe_awaiting(c->pipe) && left < *timeout_ms)
				*timeout_ms = left > 0 ? (int)left : 0;
		}
	return n;
}

/* After a wait: libcurl's setups progress, replies are read, stalled dialogues end. */
static void after_poll(struct mailer *m, size_t n, int64_t now)
{
	char why[80];

	for (size_t i = 0; i < n; i++) {
		struct conn *c = m->pconn[i];
		if (m->pfds[i].revents != 0 && c->state == CONN_READY && c->fd == m->pfds[i].fd)
			conn_read(m, c);
	}
	for (size_t i = 0; i < m->n_relays; i++)
		for (int k = 0; k < m->relays[i].connections; k++) {
			struct conn *c = &m->relays[i].conns[k];
			int running, left;
			CURLMsg *msg;
			if (c->state == CONN_CONNECTING) {
				curl_multi_perform(c->multi, &running);
				if ((msg = curl_multi_info_read(c->multi, &left)) != NULL &&
				    msg->msg == CURLMSG_DONE)
					conn_setup_done(m, c, msg->data.result);
			} else if (c->state == CONN_READY && smtp_pipe_awaiting(c->pipe) &&
				   now - c->progress_ms >= 1000LL * c->relay->cfg->timeout) {
				snprintf(why, sizeof why, "no reply from the relay within %d seconds",
					 c->relay->cfg->timeout);
				conn_fail(m, c, why);
			}
		}
}

/*
 * One round: send what is ready, wait up to timeout_ms for the sockets, read what came.
 * When report is set, jobs already finished cut the wait short (their caller is waiting
 * for them); mailer_wait, which reports nothing, waits the whole time even so.
 */
static int drive(struct mailer *m, int timeout_ms, bool report)
{
	size_t n;

	for (size_t i = 0; i < m->n_relays; i++)
		for (int k = 0; k < m->relays[i].connections; k++)
			if (m->relays[i].conns[k].state == CONN_READY)
				conn_flush(m, &m->relays[i].conns[k]);
	if ((report && m->n_done > 0) || timeout_ms < 0)
		timeout_ms = 0;
	n = poll_set(m, &timeout_ms, mailer_now_ms());
	if (poll(m->pfds, n, timeout_ms) < 0 && errno != EINTR)
		return -1;
	after_poll(m, n, mailer_now_ms());
	return 0;
}

int mailer_run(struct mailer *m, int timeout_ms,
	       void (*done)(void *ud, struct mailer_job *job, const struct mailer_result *r),
	       void *ud, struct err *e)
{
	struct finished *list;
	size_t n, cap;

	if (drive(m, timeout_ms, true) != 0)
		return err_set(e, ERR_SOFTWARE, "waiting for the relays' connections: %s",
			       strerror(errno));
	/* A callback may wait on the sockets (mailer_wait, in a ledger busy wait), and
	 * what finishes then goes to a fresh list for the next call to report. */
	list = m->done, n = m->n_done, cap = m->cap_done;
	m->done = NULL, m->n_done = m->cap_done = 0;
	for (size_t i = 0; i < n; i++) {
		m->in_flight--; /* reported: the caller may count on it being over */
		done(ud, list[i].job, &list[i].res);
	}
	if (m->done == NULL)
		m->done = list, m->cap_done = cap;
	else
		free(list);
	return 0;
}

void mailer_wait(struct mailer *m, int timeout_ms)
{
	drive(m, timeout_ms, false);
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
