/* queue.c — from "what is due at T" (schedule) to rows in the ledger (store). */
#include "queue.h"

#include <stdlib.h>

#include "schedule.h"

/* How much one call may queue, and whether everything due is queued. */
struct budget {
	int64_t left; /* a chunk's recipients, less what was queued; 0: no limit */
	bool limited;
	bool done;    /* every segment queued in full so far */
};

/* Queues kind/occurrence for every segment whose first e-mail has gone out by now. */
static int queue_all_segments(struct store *s, const struct campaign *c, int64_t campaign_id,
			      const char *kind, int64_t occurrence, int64_t now, int64_t *count,
			      struct budget *b, struct err *e)
{
	for (size_t i = 0; i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];
		struct store_queue_chunk q = {campaign_id, 0, kind, occurrence,
					      occurrence ? occurrence : g->send_at, b->left};
		int64_t n = 0;
		bool done = false;
		int rc;

		if (g->send_at > now)
			continue; /* a reminder never comes before the segment's first e-mail */
		if (b->limited && b->left <= 0) {
			b->done = false; /* the budget is spent: a later call goes on */
			return 0;
		}
		if ((rc = store_segment_id(s, campaign_id, g->name, &q.segment_id, e)) != 0 ||
		    (rc = store_delivery_queue_chunk(s, &q, now, &n, &done, e)) != 0)
			return rc;
		*count += n;
		if (!done) {
			b->done = false, b->left = 0;
			return 0;
		}
		/* A segment done within the budget leaves what it did not use to the next. */
		if (b->limited)
			b->left = n < b->left ? b->left - (n > 0 ? n : 1) : 0;
	}
	return 0;
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
	struct budget b = {max_rows, max_rows > 0, true};
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
