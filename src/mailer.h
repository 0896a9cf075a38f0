/* mailer.h — all SMTP: a pool of relays, reused connections set up by libcurl (STARTTLS/SMTPS,
 * AUTH), pipelined transactions, failover and throttling (RFC 5321, 3207, 4954, 2920). */
#ifndef CUTOFF_MAILER_H
#define CUTOFF_MAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "util.h"

struct mailer;

/* One message to send: the caller fills it, mailer_submit takes it over. */
struct mailer_job {
	int64_t id;          /* the caller's (the delivery id) */
	char *envelope_from; /* MAIL FROM address (VERP), owned by the job */
	char *rcpt;          /* RCPT TO address, owned by the job */
	struct buf data;     /* the message, CRLF line endings; the mailer dot-stuffs it */
	void *ud;            /* the caller's */
};

/* What became of one job. */
enum mailer_outcome {
	MAILER_ACCEPTED,   /* 2xx after DATA: the relay took responsibility */
	MAILER_TEMPFAIL,   /* 4xx at RCPT/DATA, a dropped connection or a timeout: try later */
	MAILER_PERMFAIL,   /* 5xx at RCPT or DATA: this recipient or message is refused */
	MAILER_THROTTLED,  /* 421, or 451/454 before RCPT: the relay asks us to slow down */
	MAILER_RELAY_DOWN  /* no connection, TLS or AUTH failed, or the sender refused: not the
			    * recipient's fault, try another relay or later */
};

enum mailer_stage { MAILER_STAGE_CONNECT, MAILER_STAGE_MAIL, MAILER_STAGE_RCPT, MAILER_STAGE_DATA };

struct mailer_result {
	enum mailer_outcome outcome;
	enum mailer_stage stage; /* the command the last reply answered */
	const char *relay;       /* the relay's name (valid while the mailer lives) */
	int code;                /* the last SMTP reply code, 0 when none came */
	char reply[512];         /* the server's last reply, continuation lines joined */
	char local_error[256];   /* the local account when the failure was local or a timeout */
};

/*
 * Creates a mailer over cfg's relays (at least one; ERR_CONFIG otherwise).
 * Nothing connects until jobs arrive. When
 * share processes send at once, each uses 1/share of every relay's
 * connections (rounded up), so together they keep to the configured count.
 * Free with mailer_free.
 */
int mailer_new(struct mailer **out, const struct config *cfg, int share, struct err *e);
void mailer_free(struct mailer *m);

/* How many jobs could start now on relays that are up (free connections). */
size_t mailer_capacity(const struct mailer *m, int64_t now_ms);

/* Jobs submitted and not yet reported. */
size_t mailer_in_flight(const struct mailer *m);

/*
 * Queues job on the first relay that is up, has room on a connection (two messages
 * a connection when the relay pipelines, else one) and is not over its throttled
 * rate; it goes out at the next mailer_run or mailer_wait. Takes the job over on success (returns 0). Returns
 * 1 and leaves the job with the caller when no relay can take it now.
 */
int mailer_submit(struct mailer *m, struct mailer_job *job, int64_t now_ms, struct err *e);

/*
 * Sends what is ready, waits up to timeout_ms for replies, and calls done for each
 * finished job (the callback owns the job and frees it with mailer_job_free).
 * Returns 0, or ERR_SOFTWARE if waiting on the sockets fails as a whole.
 */
int mailer_run(struct mailer *m, int timeout_ms,
	       void (*done)(void *ud, struct mailer_job *job, const struct mailer_result *r),
	       void *ud, struct err *e);

/*
 * Lets the jobs in flight progress for up to timeout_ms (waiting on their
 * sockets) without reporting any that finish: they are reported by the next
 * mailer_run. Jobs already finished do not cut the wait short, so calling it
 * in a loop does not spin. For waits that must not call back into the caller, such as a
 * wait for the database lock inside a ledger transaction. Never fails: a
 * failure shows at the next mailer_run.
 */
void mailer_wait(struct mailer *m, int timeout_ms);

/*
 * True when every relay is down: each failed to connect (or refused us) this
 * many times in a row. The sender then ends the run (exit 75).
 */
bool mailer_all_relays_down(const struct mailer *m, int failures);

/* A one-line account of the relays' state, for the message that ends a run. */
void mailer_describe_relays(const struct mailer *m, struct buf *out);

/* Frees a job and what it owns (NULL is fine). */
void mailer_job_free(struct mailer_job *job);

/* Monotonic milliseconds, the mailer's clock for throttling and retry of relays. */
int64_t mailer_now_ms(void);

#endif
