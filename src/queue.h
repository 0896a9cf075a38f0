/* queue.h — puts what the schedule says is due into the ledger: initial waves, reminder
 * e-mails, final notices. Idempotent: the ledger's unique key makes a re-run a no-op. */
#ifndef CUTOFF_QUEUE_H
#define CUTOFF_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "campaign.h"
#include "err.h"
#include "store.h"

struct queue_counts {
	int64_t initial;  /* new initial deliveries */
	int64_t reminder; /* new reminder e-mails */
	int64_t final;    /* new final notices */
};

/*
 * Queues every delivery of campaign c (stored as campaign_id) that is due at
 * now and not yet in the ledger: the initial e-mail of each segment whose send
 * time has come; the latest reminder e-mail occurrence at or before now (missed
 * occurrences collapse into that one: nobody gets several at once); the final
 * notice once its time has come. Nothing is queued at or after the cutoff.
 * Only pending recipients (not completed, not unaffected) get deliveries.
 * Runs in the caller's transaction, if any. Returns 0 or the store's error.
 */
int queue_due(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
	      struct queue_counts *out, struct err *e);

/*
 * queue_due a piece at a time (max_rows 0: all of it), carrying on from the
 * queue marks where the last call, this process's or another's, stopped
 * (store_delivery_queue_chunk). The due segments of a kind are queued
 * together, in recipient id order, by chunks of max_rows recipient ids; a call
 * takes chunks until it has queued max_rows deliveries or more (fewer than
 * twice that) or looked at a bounded number of chunks' ids (queue.c). *done
 * when everything due is queued; call again while it is not. out counts what
 * this call added. Returns 0 or the store's error.
 */
int queue_due_some(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
		   int64_t max_rows, struct queue_counts *out, bool *done, struct err *e);

#endif
