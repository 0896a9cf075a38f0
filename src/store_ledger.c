/* store_ledger.c — the delivery ledger's SQL (part of the store module): queueing, claiming,
 * recovering and settling deliveries, and counting them. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "store_login.h"
#include "util.h"

enum ledger_stmt {
	LD_CAMPAIGN_MARK_SENDING,
	LD_DELIVERY_QUEUE,
	LD_DELIVERY_CLAIM,
	LD_DELIVERY_RECOVER_ATTEMPTS,
	LD_DELIVERY_RECOVER,
	LD_DELIVERY_CLAIMANTS,
	LD_DELIVERY_SETTLE,
	LD_ATTEMPT_ADD,
	LD_ATTEMPT_ADD_8,
	LD_ATTEMPT_ADD_32,
	LD_DELIVERY_COUNTS,
	LD_DELIVERY_EXPIRE,
	LD_DELIVERY_DUE,
	LD_QUEUE_MARK,
	LD_RECIPIENT_ZONES,
	LD_COUNT
};

#define ATTEMPT_INSERT                                                                   \
	"INSERT INTO attempt (run_id, at, delivery_id, relay, code, reply, local_error,"   \
	" message_id, outcome) VALUES "
#define ATTEMPT_ROW "(?1, ?2, ?, ?, ?, ?, ?, ?, ?)"
#define ATTEMPT_ROWS_8                                                                   \
	ATTEMPT_ROW ", " ATTEMPT_ROW ", " ATTEMPT_ROW ", " ATTEMPT_ROW ", " ATTEMPT_ROW ", " \
	ATTEMPT_ROW ", " ATTEMPT_ROW ", " ATTEMPT_ROW
/* The parameters of each row of ATTEMPT_ROW besides ?1 and ?2. */
#define ATTEMPT_ROW_PARAMS 7

/* LD_DELIVERY_QUEUE's segments: the i-th (from 0) is ?(7 + 3i), its queue mark ?(8 + 3i) and
 * its deliveries' due time ?(9 + 3i); a slot left unused is NULL, which no segment equals. */
#define QUEUE_SEGMENT_PARAM(i) (7 + 3 * (i))
#define QUEUE_SEGMENT_MARK                                                                \
	" WHEN ?7 THEN ?8 WHEN ?10 THEN ?11 WHEN ?13 THEN ?14 WHEN ?16 THEN ?17"          \
	" WHEN ?19 THEN ?20 WHEN ?22 THEN ?23 WHEN ?25 THEN ?26 WHEN ?28 THEN ?29"
#define QUEUE_SEGMENT_DUE                                                                 \
	" WHEN ?7 THEN ?9 WHEN ?10 THEN ?12 WHEN ?13 THEN ?15 WHEN ?16 THEN ?18"          \
	" WHEN ?19 THEN ?21 WHEN ?22 THEN ?24 WHEN ?25 THEN ?27 WHEN ?28 THEN ?30"
_Static_assert(QUEUE_SEGMENT_PARAM(STORE_QUEUE_SEGMENTS - 1) == 28,
	       "QUEUE_SEGMENT_MARK and QUEUE_SEGMENT_DUE list STORE_QUEUE_SEGMENTS slots");

static const char *const ledger_sql[LD_COUNT] = {
	[LD_CAMPAIGN_MARK_SENDING] =
		"UPDATE campaign SET sending_started_at = ?2 WHERE id = ?1"
		" AND sending_started_at IS NULL",
	/* A recipient unsubscribed from the campaign gets its row settled as suppressed at
	 * once, so no sender can claim it (what db/003's trigger did, db/014). The span of
	 * recipient ids is read by rowid, every campaign's rows in it (no index has the
	 * segment, db/015): the unary + keeps the (campaign_id, user_id) index off it, which
	 * would read the campaign's rows a table lookup each, in user id order. Up to
	 * STORE_QUEUE_SEGMENTS segments in the one pass, each with its mark and due time
	 * (QUEUE_SEGMENT_MARK, QUEUE_SEGMENT_DUE): a row of another segment, or at or below
	 * its segment's mark, matches no slot and is left out. */
	[LD_DELIVERY_QUEUE] =
		"INSERT INTO delivery (campaign_id, recipient_id, kind, occurrence, state, reason,"
		" due_at, created_at, updated_at)"
		" SELECT ?1, r.id, ?2, ?3,"
		" CASE WHEN u.recipient_id IS NULL THEN 'queued' ELSE 'suppressed' END,"
		" CASE WHEN u.recipient_id IS NOT NULL THEN 'unsubscribe' END,"
		" CASE r.segment_id" QUEUE_SEGMENT_DUE " END, ?4, ?4"
		" FROM recipient r LEFT JOIN campaign_unsubscribe u"
		" ON u.campaign_id = ?1 AND u.recipient_id = r.id"
		" WHERE r.id > ?5 AND r.id <= ?6 AND +r.campaign_id = ?1 AND r.state = 'pending'"
		" AND r.id > CASE r.segment_id" QUEUE_SEGMENT_MARK " END"
		" ON CONFLICT (recipient_id, kind, occurrence) DO NOTHING",
	[LD_DELIVERY_CLAIM] =
		"UPDATE delivery SET state = 'sending', claimed_by = ?2, lease_until = ?4,"
		" attempts = attempts + 1, updated_at = ?3"
		" WHERE id IN (SELECT id FROM delivery WHERE campaign_id = ?1"
		"              AND state IN ('queued', 'deferred') AND due_at <= ?3"
		"              ORDER BY due_at, id LIMIT ?5)"
		" RETURNING id, recipient_id, kind, occurrence, attempts, possibly_duplicated",
	[LD_DELIVERY_RECOVER_ATTEMPTS] =
		"INSERT INTO attempt (delivery_id, run_id, at, outcome, local_error)"
		" SELECT id, ?1, ?2, 'recovered', 'the run ' || ?3 ||"
		" ' died during this attempt; it may or may not have been accepted'"
		" FROM delivery WHERE state = 'sending' AND claimed_by = ?3",
	[LD_DELIVERY_RECOVER] =
		"UPDATE delivery SET state = 'queued', possibly_duplicated = 1, claimed_by = NULL,"
		" lease_until = NULL, due_at = min(due_at, ?2), updated_at = ?2"
		" WHERE state = 'sending' AND claimed_by = ?3",
	[LD_DELIVERY_CLAIMANTS] =
		"SELECT claimed_by, max(lease_until) FROM delivery WHERE state = 'sending'"
		" GROUP BY claimed_by",
	[LD_DELIVERY_SETTLE] =
		"UPDATE delivery SET state = ?3, due_at = CASE WHEN ?4 > 0 THEN ?4 ELSE due_at END,"
		" claimed_by = NULL, lease_until = NULL,"
		" attempts = attempts - ?5, relay = coalesce(?6, relay), last_code = ?7,"
		" last_reply = ?8, message_id = coalesce(?9, message_id), reason = ?10,"
		" sent_at = CASE WHEN ?3 = 'sent' THEN ?11 ELSE sent_at END, updated_at = ?11"
		" WHERE id = ?1 AND state = 'sending' AND claimed_by = ?2",
	/* One attempt, or several a statement (store_delivery_settle_batch): the run and the
	 * time are ?1 and ?2 in every row, each row's other values the next 7 parameters (see
	 * attempt_bind). */
	[LD_ATTEMPT_ADD] = ATTEMPT_INSERT ATTEMPT_ROW,
	[LD_ATTEMPT_ADD_8] = ATTEMPT_INSERT ATTEMPT_ROWS_8,
	[LD_ATTEMPT_ADD_32] =
		ATTEMPT_INSERT ATTEMPT_ROWS_8 ", " ATTEMPT_ROWS_8 ", " ATTEMPT_ROWS_8 ", "
		ATTEMPT_ROWS_8,
	[LD_DELIVERY_COUNTS] =
		"SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'sending'), 0),"
		" coalesce(sum(state = 'sent'), 0), coalesce(sum(state = 'deferred'), 0),"
		" coalesce(sum(state = 'failed'), 0), coalesce(sum(state = 'bounced'), 0),"
		" coalesce(sum(state = 'suppressed'), 0), coalesce(sum(state = 'cancelled'), 0),"
		" coalesce(sum(state IN ('queued', 'deferred') AND due_at <= ?2), 0),"
		" coalesce(sum(possibly_duplicated), 0)"
		" FROM delivery WHERE campaign_id = ?1",
	[LD_DELIVERY_DUE] =
		"SELECT count(*) FROM delivery WHERE campaign_id = ?1"
		" AND state IN ('queued', 'deferred') AND due_at <= ?2",
	[LD_DELIVERY_EXPIRE] =
		"UPDATE delivery SET state = 'failed', reason = 'expired', updated_at = ?2"
		" WHERE campaign_id = ?1 AND state IN ('queued', 'deferred')",
	/* The segment's queue mark (-1: none) and the highest recipient id now. */
	[LD_QUEUE_MARK] =
		"SELECT coalesce((SELECT watermark FROM queue_mark WHERE segment_id = ?1"
		" AND kind = ?2 AND occurrence = ?3), -1),"
		" (SELECT coalesce(max(id), 0) FROM recipient)",
	/* No ORDER BY: the first ?2 entries of the campaign's (campaign_id, user_id) index, not
	 * a sort of them all; a table lookup each, ?2 at most. */
	[LD_RECIPIENT_ZONES] =
		"SELECT DISTINCT timezone FROM (SELECT timezone FROM recipient"
		" WHERE campaign_id = ?1 LIMIT ?2) WHERE timezone IS NOT NULL AND timezone <> ''",
};

_Static_assert(LD_COUNT <= sizeof((struct store *)0)->ledger_stmts /
				   sizeof(((struct store *)0)->ledger_stmts[0]),
	       "raise the size of struct store's ledger_stmts");

/* The cached statement id, reset with its bindings cleared; NULL with e filled. */
static sqlite3_stmt *stmt(struct store *s, enum ledger_stmt id, struct err *e)
{
	return store_cached(s, &s->ledger_stmts[id], ledger_sql[id], "preparing a statement", e);
}

void store_busy_wait(struct store *s, int (*wait)(void *ud, int tries), void *ud)
{
	if (wait != NULL)
		sqlite3_busy_handler(s->db, wait, ud);
	else
		sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
}

int store_campaign_mark_sending(struct store *s, int64_t campaign_id, int64_t now,
				struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_CAMPAIGN_MARK_SENDING, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, now);
	return store_step_done(s, st, "marking a campaign as sending", e);
}

/* Reads a segment's queue mark of q's kind and occurrence (-1: none) and the highest
 * recipient id. */
static int queue_mark_read(struct store *s, const struct store_queue_chunk *q, int64_t segment_id,
			   int64_t *mark, int64_t *max_id, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_QUEUE_MARK, e);
	int step;

	*mark = -1, *max_id = 0;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, segment_id);
	sqlite3_bind_text(st, 2, q->kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, q->occurrence);
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		*mark = sqlite3_column_int64(st, 0), *max_id = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "reading the queue marks");
}

/* Inserts q's deliveries of the ids in (from, to], each segment's above marks[i]; *queued
 * how many. */
static int queue_span(struct store *s, const struct store_queue_chunk *q, const int64_t *marks,
		      int64_t from, int64_t to, int64_t now, int64_t *queued, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_QUEUE, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, q->campaign_id);
	sqlite3_bind_text(st, 2, q->kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, q->occurrence);
	sqlite3_bind_int64(st, 4, now);
	sqlite3_bind_int64(st, 5, from);
	sqlite3_bind_int64(st, 6, to);
	for (int i = 0; i < STORE_QUEUE_SEGMENTS; i++) {
		int p = QUEUE_SEGMENT_PARAM(i);

		if ((size_t)i >= q->n_segments) {
			sqlite3_bind_null(st, p); /* matches no segment */
			continue;
		}
		sqlite3_bind_int64(st, p, q->segment_ids[i]);
		sqlite3_bind_int64(st, p + 1, marks[i]);
		sqlite3_bind_int64(st, p + 2, q->due_at[i]);
	}
	if ((rc = store_step_done(s, st, "queueing deliveries", e)) == 0)
		*queued = sqlite3_changes(s->db);
	return rc;
}

int store_delivery_queue_chunk(struct store *s, const struct store_queue_chunk *q, int64_t now,
			       struct store_queue_step *out, struct err *e)
{
	int64_t marks[STORE_QUEUE_SEGMENTS], from = INT64_MAX, max_id = 0, to, queued = 0;
	int rc;

	*out = (struct store_queue_step){0, 0, false};
	if (q->n_segments == 0 || q->n_segments > STORE_QUEUE_SEGMENTS)
		return err_set(e, ERR_SOFTWARE, "a queueing chunk of %zu segments", q->n_segments);
	/* A mark says every pending recipient of its segment up to it is queued
	 * (db/004_login.sql): carry on above the lowest (from the first id when a segment has
	 * none); at or past the highest id, nothing is left to add. */
	for (size_t i = 0; i < q->n_segments; i++) {
		if ((rc = queue_mark_read(s, q, q->segment_ids[i], &marks[i], &max_id, e)) != 0)
			return rc;
		from = marks[i] < from ? marks[i] : from;
	}
	if (from >= max_id) {
		out->done = true;
		return 0;
	}
	if (from < 0)
		from = 0; /* rowids start at 1 */
	to = q->max_ids > 0 && q->max_ids < max_id - from ? from + q->max_ids : max_id;
	if ((rc = queue_span(s, q, marks, from, to, now, &queued, e)) != 0)
		return rc;
	for (size_t i = 0; i < q->n_segments; i++)
		if (marks[i] < to && (rc = store_queue_mark_set(s, q->segment_ids[i], q->kind,
								q->occurrence, to, now, e)) != 0)
			return rc;
	*out = (struct store_queue_step){queued, to - from, to == max_id};
	return 0;
}

int store_delivery_queue_segment(struct store *s, int64_t campaign_id, int64_t segment_id,
				 const char *kind, int64_t occurrence, int64_t due_at,
				 int64_t now, int64_t *queued, struct err *e)
{
	struct store_queue_chunk q = {campaign_id, kind, occurrence, 1, {segment_id}, {due_at}, 0};
	struct store_queue_step step;
	int rc = store_delivery_queue_chunk(s, &q, now, &step, e);

	*queued = step.queued;
	return rc;
}

int store_delivery_claim(struct store *s, int64_t campaign_id, const char *run_id, int64_t now,
			 int64_t lease_until, size_t max, struct store_claim *out, size_t *n,
			 struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_CLAIM, e);
	int step;

	*n = 0;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_text(st, 2, run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, lease_until);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)max);
	while ((step = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
		struct store_claim *c = &out[(*n)++];
		c->delivery_id = sqlite3_column_int64(st, 0);
		c->recipient_id = sqlite3_column_int64(st, 1);
		snprintf(c->kind, sizeof c->kind, "%s", sqlite3_column_text(st, 2));
		c->occurrence = sqlite3_column_int64(st, 3);
		c->attempts = sqlite3_column_int(st, 4);
		c->possibly_duplicated = sqlite3_column_int(st, 5) != 0;
	}
	sqlite3_reset(st);
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		return store_db_error(s, e, "claiming deliveries");
	return 0;
}

int store_delivery_claimants(struct store *s,
			     int (*fn)(void *ud, const char *run_id, int64_t lease_until), void *ud,
			     struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_CLAIMANTS, e);
	char run[128];
	int rc = 0, step;

	if (st == NULL)
		return e->code;
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t lease = sqlite3_column_int64(st, 1);
		snprintf(run, sizeof run, "%s", sqlite3_column_text(st, 0) ?
			 (const char *)sqlite3_column_text(st, 0) : "");
		/* Copy first: fn may run other statements while this one is reset. */
		rc = fn(ud, run, lease);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = store_db_error(s, e, "listing runs with deliveries in flight");
	sqlite3_reset(st);
	return rc;
}

int store_delivery_recover(struct store *s, const char *dead_run, const char *run_id, int64_t now,
			   int64_t *recovered, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_RECOVER_ATTEMPTS, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, dead_run, -1, SQLITE_STATIC);
	if ((rc = store_step_done(s, st, "recording recovered deliveries", e)) != 0)
		return rc;
	if ((st = stmt(s, LD_DELIVERY_RECOVER, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, dead_run, -1, SQLITE_STATIC);
	if ((rc = store_step_done(s, st, "recovering deliveries", e)) != 0)
		return rc;
	*recovered += sqlite3_changes(s->db);
	return 0;
}

/* Binds t's values of an attempt row whose first parameter besides ?1, ?2 is at. */
static void attempt_bind(sqlite3_stmt *st, int at, const struct store_settlement *t)
{
	sqlite3_bind_int64(st, at, t->delivery_id);
	store_bind_text(st, at + 1, t->relay);
	sqlite3_bind_int(st, at + 2, t->code);
	store_bind_text(st, at + 3, t->reply);
	store_bind_text(st, at + 4, t->local_error);
	store_bind_text(st, at + 5, t->message_id);
	sqlite3_bind_text(st, at + 6, t->outcome, -1, SQLITE_STATIC);
}

/* The attempt rows of t[0..n-1] in one statement of n rows (n: 1, 8 or 32). */
static int attempts_add_rows(struct store *s, const char *run_id, int64_t now,
			     const struct store_settlement *const *t, size_t n, struct err *e)
{
	sqlite3_stmt *st = stmt(s, n == 32 ? LD_ATTEMPT_ADD_32 : n == 8 ? LD_ATTEMPT_ADD_8
								 : LD_ATTEMPT_ADD, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	for (size_t i = 0; i < n; i++)
		attempt_bind(st, 3 + (int)i * ATTEMPT_ROW_PARAMS, t[i]);
	return store_step_done(s, st, "recording attempts", e);
}

/* The attempt rows of t[0..n-1], in their order: by 32, then by 8, then one at a time. */
static int attempts_add(struct store *s, const char *run_id, int64_t now,
			const struct store_settlement *const *t, size_t n, struct err *e)
{
	size_t i = 0;
	int rc = 0;

	for (; rc == 0 && n - i >= 32; i += 32)
		rc = attempts_add_rows(s, run_id, now, t + i, 32, e);
	for (; rc == 0 && n - i >= 8; i += 8)
		rc = attempts_add_rows(s, run_id, now, t + i, 8, e);
	for (; rc == 0 && i < n; i++)
		rc = attempts_add_rows(s, run_id, now, t + i, 1, e);
	return rc;
}

/* The UPDATE of a settlement; *applied: the row was still this run's to settle. */
static int settle_row(struct store *s, const char *run_id, int64_t now,
		      const struct store_settlement *t, bool *applied, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_SETTLE, e);
	int rc;

	*applied = false;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, t->delivery_id);
	sqlite3_bind_text(st, 2, run_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t->state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, t->due_at);
	sqlite3_bind_int(st, 5, t->uncount ? 1 : 0);
	store_bind_text(st, 6, t->relay);
	if (t->code)
		sqlite3_bind_int(st, 7, t->code);
	else
		sqlite3_bind_null(st, 7);
	store_bind_text(st, 8, t->reply ? t->reply : t->local_error);
	store_bind_text(st, 9, t->message_id);
	store_bind_text(st, 10, t->reason);
	sqlite3_bind_int64(st, 11, now);
	if ((rc = store_step_done(s, st, "settling a delivery", e)) != 0)
		return rc;
	*applied = sqlite3_changes(s->db) == 1;
	return 0;
}

int store_delivery_settle(struct store *s, const char *run_id, int64_t now,
			  const struct store_settlement *t, bool *applied, struct err *e)
{
	int rc = settle_row(s, run_id, now, t, applied, e);

	if (rc == 0 && *applied && t->attempted)
		return attempts_add_rows(s, run_id, now, &t, 1, e);
	return rc;
}

int store_delivery_settle_batch(struct store *s, const char *run_id, int64_t now,
				const struct store_settlement *const *t, size_t n, bool *applied,
				struct err *e)
{
	const struct store_settlement **attempts = xmalloc((n ? n : 1) * sizeof *attempts);
	size_t n_attempts = 0;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = settle_row(s, run_id, now, t[i], &applied[i], e);
		if (rc == 0 && applied[i] && t[i]->attempted)
			attempts[n_attempts++] = t[i];
	}
	if (rc == 0)
		rc = attempts_add(s, run_id, now, attempts, n_attempts, e);
	free(attempts);
	return rc;
}

int store_delivery_counts(struct store *s, int64_t campaign_id, int64_t now,
			  struct store_delivery_counts *out, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_COUNTS, e);
	int64_t *v[] = {&out->queued, &out->sending, &out->sent, &out->deferred, &out->failed,
			&out->bounced, &out->suppressed, &out->cancelled, &out->due,
			&out->possibly_duplicated};
	int step;

	memset(out, 0, sizeof *out);
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, now);
	step = sqlite3_step(st);
	for (int i = 0; step == SQLITE_ROW && i < 10; i++)
		*v[i] = sqlite3_column_int64(st, i);
	sqlite3_reset(st);
	if (step != SQLITE_ROW)
		return store_db_error(s, e, "counting deliveries");
	return 0;
}

int store_delivery_expire(struct store *s, int64_t campaign_id, int64_t now, int64_t *expired,
			  struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_EXPIRE, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, now);
	if ((rc = store_step_done(s, st, "expiring deliveries", e)) != 0)
		return rc;
	*expired = sqlite3_changes(s->db);
	return 0;
}

int store_delivery_due(struct store *s, int64_t campaign_id, int64_t now, int64_t *due,
		       struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_DELIVERY_DUE, e);
	int step;

	*due = 0;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, now);
	if ((step = sqlite3_step(st)) == SQLITE_ROW)
		*due = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return step == SQLITE_ROW ? 0 : store_db_error(s, e, "counting deliveries due");
}

int store_recipient_zones(struct store *s, int64_t campaign_id, int64_t sample,
			  int (*fn)(void *ud, const char *tz), void *ud, struct err *e)
{
	sqlite3_stmt *st = stmt(s, LD_RECIPIENT_ZONES, e);
	int rc = 0, step = SQLITE_DONE;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, sample);
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = fn(ud, (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (rc == 0 && step != SQLITE_DONE)
		rc = store_db_error(s, e, "listing the recipients' time zones");
	return rc;
}
