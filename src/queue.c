/* queue.c — from "what is due at T" (schedule) to rows in the ledger (store). */
#include "queue.h"

#include <stdlib.h>

#include "schedule.h"

/* Queues kind/occurrence for every segment whose first e-mail has gone out by now. */
static int queue_all_segments(struct store *s, const struct campaign *c, int64_t campaign_id,
			      const char *kind, int64_t occurrence, int64_t now, int64_t *count,
			      struct err *e)
{
	for (size_t i = 0; i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];
		int64_t segment_id, n = 0;
		int rc;

		if (g->send_at > now)
			continue; /* a reminder never comes before the segment's first e-mail */
		if ((rc = store_segment_id(s, campaign_id, g->name, &segment_id, e)) != 0 ||
		    (rc = store_delivery_queue_segment(s, campaign_id, segment_id, kind,
						       occurrence, occurrence ? occurrence : g->send_at,
						       now, &n, e)) != 0)
			return rc;
		*count += n;
	}
	return 0;
}

static int queue_reminder_emails(struct store *s, const struct campaign *c, int64_t campaign_id,
				 int64_t now, int64_t *count, struct err *e)
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
	return queue_all_segments(s, c, campaign_id, "reminder", due.occurrence, now, count, e);
}

int queue_due(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
	      struct queue_counts *out, struct err *e)
{
	int rc;

	out->initial = out->reminder = out->final = 0;
	if (now >= c->cutoff_at)
		return 0;
	if ((rc = queue_all_segments(s, c, campaign_id, "initial", 0, now, &out->initial, e)) != 0)
		return rc;
	if ((rc = queue_reminder_emails(s, c, campaign_id, now, &out->reminder, e)) != 0)
		return rc;
	if (c->final_notice_at > 0 && c->final_notice_at <= now)
		rc = queue_all_segments(s, c, campaign_id, "final", c->final_notice_at, now,
					&out->final, e);
	if (rc == 0 && out->initial + out->reminder + out->final > 0)
		rc = store_campaign_mark_sending(s, campaign_id, now, e);
	return rc;
}
