/* queue.c — from "what is due at T" (schedule) to rows in the ledger (store). */
#include "queue.h"

#include <stdlib.h>

#include "schedule.h"

/*
 * A chunk is a span of recipient ids of every campaign, read once for up to
 * STORE_QUEUE_SEGMENTS segments (store_delivery_queue_chunk): the due segments of a kind are
 * queued together, in id order, not one after the other (one pass over the recipients instead
 * of one a segment). When few of the ids are theirs or pending (a small campaign among others,
 * a late reminder), a chunk queues few deliveries, so a call of queue_due_some goes on chunk
 * after chunk until it has queued max_rows deliveries or looked at QUEUE_SCAN_CHUNKS chunks of
 * ids: an id looked at and not queued costs a small part of one queued (a row read in rowid
 * order against a delivery row and its index entries written), and each call is a transaction
 * of the sender's.
 */
#define QUEUE_SCAN_CHUNKS 16

/* How much one call may still queue and look at, and whether everything due is queued. */
struct budget {
	int64_t span; /* recipient ids a chunk looks at; 0: no limit (one chunk) */
	int64_t left; /* deliveries it may still queue */
	int64_t ids;  /* recipient ids it may still look at */
	bool done;    /* every segment queued in full so far */
};

/* Queues q's segments chunk after chunk while the budget lasts. */
static int queue_segments(struct store *s, struct store_queue_chunk *q, int64_t now,
			  int64_t *count, struct budget *b, struct err *e)
{
	struct store_queue_step step = {0, 0, false};
	int rc;

	q->max_ids = b->span;
	while (!step.done) {
		if (b->span > 0 && (b->left <= 0 || b->ids <= 0)) {
			b->done = false; /* the budget is spent: a later call goes on */
			return 0;
		}
		if ((rc = store_delivery_queue_chunk(s, q, now, &step, e)) != 0)
			return rc;
		*count += step.queued;
		b->left -= step.queued, b->ids -= step.looked_at;
	}
	return 0;
}

/* Queues kind/occurrence for every segment whose first e-mail has gone out by now,
 * STORE_QUEUE_SEGMENTS of them at a time. */
static int queue_all_segments(struct store *s, const struct campaign *c, int64_t campaign_id,
			      const char *kind, int64_t occurrence, int64_t now, int64_t *count,
			      struct budget *b, struct err *e)
{
	struct store_queue_chunk q = {campaign_id, kind, occurrence, 0, {0}, {0}, 0};
	int rc = 0;

	for (size_t i = 0; rc == 0 && b->done && i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];

		if (g->send_at > now)
			continue; /* a reminder never comes before the segment's first e-mail */
		if ((rc = store_segment_id(s, campaign_id, g->name, &q.segment_ids[q.n_segments],
					   e)) != 0)
			break;
		q.due_at[q.n_segments++] = occurrence ? occurrence : g->send_at;
		if (q.n_segments == STORE_QUEUE_SEGMENTS) {
			rc = queue_segments(s, &q, now, count, b, e);
			q.n_segments = 0;
		}
	}
	if (rc == 0 && b->done && q.n_segments > 0)
		rc = queue_segments(s, &q, now, count, b, e);
	return rc;
}

static int queue_reminder_emails(struct store *s, const struct campaign *c, int64_t campaign_id,
				 int64_t now, int64_t *count, struct budget *b, struct err *e)
{
	struct schedule_due due;
	int rc;

	if (c->reminder_emails == NULL)
		return 0;
	if ((rc = schedule_due_reminder(c->reminder_emails, c->reminder_start_at, c->cutoff_at,
					c->timezone, INT64_MIN, now, &due, e)) != 0)
		return rc;
	if (due.missed == 0)
		return 0;
	return queue_all_segments(s, c, campaign_id, "reminder", due.occurrence, now, count, b, e);
}

int queue_due_some(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
		   int64_t max_rows, struct queue_counts *out, bool *done, struct err *e)
{
	struct budget b = {max_rows, max_rows, QUEUE_SCAN_CHUNKS * max_rows, true};
	int rc;

	out->initial = out->reminder = out->final = 0;
	*done = true;
	if (now >= c->cutoff_at)
		return 0;
	if ((rc = queue_all_segments(s, c, campaign_id, "initial", 0, now, &out->initial, &b,
				     e)) != 0)
		return rc;
	if ((rc = queue_reminder_emails(s, c, campaign_id, now, &out->reminder, &b, e)) != 0)
		return rc;
	if (c->final_notice_at > 0 && c->final_notice_at <= now)
		rc = queue_all_segments(s, c, campaign_id, "final", c->final_notice_at, now,
					&out->final, &b, e);
	if (rc == 0 && out->initial + out->reminder + out->final > 0)
		rc = store_campaign_mark_sending(s, campaign_id, now, e);
	*done = b.done;
	return rc;
}

int queue_due(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
	      struct queue_counts *out, struct err *e)
{
	bool done;

	return queue_due_some(s, c, campaign_id, now, 0, out, &done, e);
}
