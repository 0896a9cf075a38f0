/* sender.h — the e-mail wave: claims due deliveries from the ledger, renders them, hands them
 * to the mailer under the rate limits, and settles each attempt. Never twice, never lost. */
#ifndef CUTOFF_SENDER_H
#define CUTOFF_SENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "campaign.h"
#include "config.h"
#include "err.h"
#include "queue.h"
#include "store.h"

struct sender_options {
	bool dry_run;      /* everything but SMTP, and nothing stays recorded */
	int64_t limit;     /* stop after this many messages handed to relays; 0 = all */
	bool progress;     /* a progress line on stderr (a terminal) */
	bool log_attempts; /* one key=value line per attempt on stderr (not a terminal) */
	int64_t now;       /* the clock: what is due, Date headers, retry times */
	int share;         /* this many processes send at once (cmd_send's --workers): each
			    * takes 1/share of the relays' connections and of the rates */
};

struct sender_summary {
	struct queue_counts queued; /* newly queued by this run */
	int64_t recovered;          /* left 'sending' by a run that died: possibly duplicated */
	int64_t sent;               /* accepted by a relay (dry run: composed) */
	int64_t deferred;           /* 4xx, dropped or timed out: retried later */
	int64_t failed;             /* 5xx, or expired at the cutoff */
	int64_t suppressed;         /* not sent: the address is suppressed */
	int64_t cancelled;          /* not sent: completed or forgotten recipient */
	int64_t throttled;          /* throttling replies (the message was retried) */
	int64_t remaining;          /* still queued or deferred and due now */
	int64_t expired;            /* unsent at the cutoff: failed as expired */
	bool relays_down;           /* every relay stayed down: the run stopped */
	bool paused;                /* the campaign was paused or cancelled meanwhile */
	bool interrupted;           /* SIGINT or SIGTERM */
	double seconds;
};

/*
 * Queues what is due for campaign c (queue_due), recovers deliveries left
 * 'sending' by a dead run, then sends: claims batches atomically, skips
 * suppressed, completed and forgotten recipients, renders each message,
 * submits it to the relays within the global, per-campaign and per-domain
 * rates, and settles every attempt (sent / deferred with backoff / failed,
 * a hard 5xx also suppresses the address). At or after the cutoff nothing is
 * sent: what is still queued or deferred fails as expired. The caller holds
 * the run lock.
 * Returns 0 with the summary filled (check relays_down, interrupted); or
 * ERR_CONFIG (no relay, no return-path secret), or a store error.
 */
int sender_send(struct store *s, const struct config *cfg, const struct campaign *c,
		int64_t campaign_id, const struct sender_options *o, struct sender_summary *sum,
		struct err *e);

/* Recipients sender_warm_zones looks at, and distinct zones it loads at most. */
#define SENDER_WARM_SAMPLE 4096
#define SENDER_WARM_ZONES 64

/*
 * Loads the time zones of SENDER_WARM_SAMPLE of the campaign's recipients (the first by
 * user id, store_recipient_zones; at most SENDER_WARM_ZONES distinct ones, and a
 * bounded read whatever the campaign's size) into libical's zone cache, as rendering for
 * them would: called before the sending workers fork, so that they inherit the expanded
 * zones instead of each expanding them again (a few milliseconds of CPU a zone). Best
 * effort: an unknown zone or a store error is left for the send itself to meet and
 * report. Returns how many distinct zones it looked up.
 */
size_t sender_warm_zones(struct store *s, const struct campaign *c, int64_t campaign_id);

#endif
