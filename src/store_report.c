/* store_report.c — the SQL of cutoff user, who, report and forget (part of the store module). */
#include "store_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "util.h"

enum rst_id {
	RS_MEMBERS,
	RS_HISTORY,
	RS_SUPPRESSION,
	RS_SEGMENTS,
	RS_FACTS,
	RS_REMINDER_SUMS,
	RS_REMINDER_SUMS_TAIL,
	RS_REMINDER_TIMES,
	RS_FORGET_FIND,
	RS_FORGET_ATTEMPTS,
	RS_FORGET_ATTEMPT_SET,
	RS_FORGET_DELIVERIES,
	RS_FORGET_DELIVERY_SET,
	RS_FORGET_EVENTS,
	RS_FORGET_EVENT_SET,
	RS_FORGET_RECIPIENT,
	RS_FORGET_CANCEL,
	RS_FORGET_LOGINS,
	RS_FORGET_LOGIN_KEYS,
	RS_FORGET_SUPPRESSION,
	RS_ADDRESS_FORGOTTEN,
	RS_COUNT
};

/* The recipients of any campaign with user id ?1 or ?2 (the normalised address, when the import
 * had no user_id column), or address ?2: one lookup per campaign in the user index, and the
 * address's key (db/016). Written as a UNION with CROSS JOINs (which fix the join order)
 * because, without ANALYZE's statistics, SQLite would answer an OR with a scan of the
 * campaign's recipients. */
#define PERSON_HITS                                                                       \
	"WITH hit(id) AS ("                                                                \
	" SELECT r.id FROM campaign c CROSS JOIN recipient r ON r.campaign_id = c.id"      \
	"  AND r.user_id = ?1"                                                             \
	" UNION SELECT r.id FROM campaign c CROSS JOIN recipient r ON r.campaign_id = c.id" \
	"  AND r.user_id = ?2"                                                             \
	" UNION SELECT id FROM recipient WHERE id IN " STORE_ADDRESS_IDS("?2")             \
	"  AND email = ?2) "

/* A bounce event of the delivery d: the event already tells of it, with the DSN's details. */
#define BOUNCE_EVENT_OF_D                                                                   \
	"EXISTS (SELECT 1 FROM event v WHERE v.recipient_id = ?1"                          \
	" AND v.kind IN ('bounce', 'soft-bounce') AND json_valid(v.detail)"                 \
	" AND json_extract(v.detail, '$.delivery') = d.id)"

/* The columns every branch of the history query has, in store_history_item's order. */
static const char history_sql[] =
	"SELECT at, what, kind, email_kind, code, text, note, message_id, relay, detail, ref FROM ("
	" SELECT r.created_at AS at, 0 AS ord, 'imported' AS what, g.name AS kind,"
	"  NULL AS email_kind, 0 AS code,"
	"  CASE WHEN i.started_at <= r.created_at THEN i.file END AS text, NULL AS note,"
	"  NULL AS message_id, NULL AS relay, NULL AS detail,"
	"  CASE WHEN i.started_at <= r.created_at THEN i.id ELSE 0 END AS ref"
	" FROM recipient r LEFT JOIN segment g ON g.id = r.segment_id"
	" LEFT JOIN import_run i ON i.id = r.import_run WHERE r.id = ?1"
	" UNION ALL SELECT i.started_at, 0, 'reimported', g.name, NULL, 0, i.file, NULL, NULL,"
	"  NULL, NULL, i.id"
	" FROM recipient r JOIN import_run i ON i.id = r.import_run"
	" LEFT JOIN segment g ON g.id = r.segment_id"
	" WHERE r.id = ?1 AND i.started_at > r.created_at"
	" UNION ALL SELECT d.created_at, 1, 'queued', d.kind, d.kind, 0, NULL, NULL, NULL, NULL,"
	"  NULL, d.id FROM delivery d WHERE d.recipient_id = ?1"
	" UNION ALL SELECT a.at, 2, 'attempt', a.outcome, d.kind, coalesce(a.code, 0), a.reply,"
	"  a.local_error, a.message_id, a.relay, NULL, d.id"
	" FROM delivery d JOIN attempt a ON a.delivery_id = d.id WHERE d.recipient_id = ?1"
	" UNION ALL SELECT d.updated_at, 3, 'settled', d.state, d.kind, 0, d.reason, NULL, NULL,"
	"  NULL, NULL, d.id FROM delivery d WHERE d.recipient_id = ?1"
	"  AND (d.state IN ('suppressed', 'cancelled')"
	"   OR (d.state = 'bounced' AND NOT " BOUNCE_EVENT_OF_D ")"
	"   OR (d.state = 'failed' AND NOT EXISTS (SELECT 1 FROM attempt a"
	"       WHERE a.delivery_id = d.id AND a.outcome = 'failed')))"
	" UNION ALL SELECT l.at, 4, 'login', l.outcome, NULL, 0, l.client_version, l.platform,"
	"  NULL, NULL, NULL, l.id FROM login_by_user k JOIN login l ON l.id = k.login_id"
	"  WHERE k.user_id = ?2"
	/* The tail, whose keys are not in login_by_user yet (db/012): a scan of its rowids; a
	 * bulk in steps may have added some of them already. */
	" UNION ALL SELECT l.at, 4, 'login', l.outcome, NULL, 0, l.client_version, l.platform,"
	"  NULL, NULL, NULL, l.id FROM login l"
	"  WHERE l.id > (SELECT through FROM login_indexed) AND l.user_id = ?2"
	"  AND l.outcome <> 'unknown' AND NOT EXISTS (SELECT 1 FROM login_by_user k"
	"   WHERE k.user_id = l.user_id AND k.at = l.at AND k.login_id = l.id)"
	" UNION ALL SELECT m.shown_at, 5, 'reminder', NULL, NULL, 0, m.client_version, NULL,"
	"  NULL, NULL, NULL, m.period_index FROM login_reminder m WHERE m.recipient_id = ?1"
	" UNION ALL SELECT v.at, 6, 'event', v.kind, NULL, 0, NULL, NULL, NULL, NULL, v.detail,"
	"  v.id FROM event v WHERE v.recipient_id = ?1"
	" UNION ALL SELECT r.completed_at, 7, 'completed', NULL, NULL, 0, NULL, NULL, NULL, NULL,"
	"  NULL, 0 FROM recipient r WHERE r.id = ?1 AND r.completed_at IS NOT NULL"
	"  AND NOT EXISTS (SELECT 1 FROM event v WHERE v.recipient_id = ?1"
	"                  AND v.kind = 'completed')"
	") ORDER BY at, ord, ref";

static const char *const rst_sql[RS_COUNT] = {
	[RS_MEMBERS] =
		PERSON_HITS
		"SELECT r.id, c.id, c.name, c.title, c.state, c.timezone, r.user_id, r.email,"
		" r.name, r.locale, r.timezone, r.client, r.version, r.platform, r.os, r.attrs,"
		" g.name, r.state, r.created_at, r.updated_at, coalesce(r.completed_at, 0)"
		" FROM hit JOIN recipient r ON r.id = hit.id JOIN campaign c ON c.id = r.campaign_id"
		" LEFT JOIN segment g ON g.id = r.segment_id ORDER BY c.name",
	[RS_HISTORY] = history_sql,
	[RS_SUPPRESSION] =
		"SELECT p.reason, c.name, p.detail, p.created_at FROM suppression p"
		" LEFT JOIN campaign c ON c.id = p.campaign_id WHERE p.address_hash = ?1",
	[RS_SEGMENTS] =
		"SELECT id, name, target_version, send_at FROM segment WHERE campaign_id = ?1"
		" ORDER BY position, id",
	/* One scan of the recipients in id order (the unary + keeps it off the campaign
	 * index, whose order is not by id), deliveries by their (recipient_id, ...) index, the
	 * suppressions by an automatic index on their address (few, compared to recipients).
	 * Segment names come from store_report_facts' own small table, not a join per row. */
	[RS_FACTS] =
		"SELECT r.id, r.user_id, r.email, NULL, r.state, r.segment_id, r.created_at,"
		" coalesce(r.completed_at, 0),"
		" CASE WHEN p.reason IS NOT NULL THEN p.reason"
		"      WHEN u.recipient_id IS NOT NULL THEN 'unsubscribe' END,"
		" coalesce(p.created_at, u.created_at, 0),"
		" coalesce(d.id, 0), d.kind, d.state, d.reason, coalesce(d.sent_at, 0),"
		" coalesce(d.updated_at, 0), r.updated_at"
		" FROM recipient r LEFT JOIN delivery d ON d.recipient_id = r.id"
		" LEFT JOIN suppression p ON p.email = r.email"
		" LEFT JOIN campaign_unsubscribe u ON u.campaign_id = r.campaign_id"
		"  AND u.recipient_id = r.id"
		" WHERE +r.campaign_id = ?1 AND r.segment_id IS NOT NULL"
		" AND (?2 = 0 OR r.segment_id = ?2) ORDER BY r.id",
	/* In primary-key order (recipient_id first): merged with the facts as both stream. The
	 * B-tree's and the tail's claims apart (db/013): read together through the view, the
	 * groups of a million recipients went through a sort. */
	[RS_REMINDER_SUMS] =
		"SELECT recipient_id, count(*), min(shown_at), max(shown_at)"
		" FROM login_reminder_indexed WHERE +campaign_id = ?1 GROUP BY recipient_id"
		" ORDER BY recipient_id",
	/* The tail's claims not copied into the B-tree yet: a scan of a short table, sorted. */
	[RS_REMINDER_SUMS_TAIL] =
		"SELECT t.recipient_id, count(*), min(t.shown_at), max(t.shown_at)"
		" FROM login_reminder_tail t WHERE t.campaign_id = ?1 AND NOT EXISTS (SELECT 1"
		"  FROM login_reminder_indexed i WHERE i.recipient_id = t.recipient_id"
		"  AND i.period_start = t.period_start) GROUP BY t.recipient_id"
		" ORDER BY t.recipient_id",
	[RS_REMINDER_TIMES] = "SELECT shown_at FROM login_reminder WHERE +campaign_id = ?1",
	[RS_FORGET_FIND] =
		PERSON_HITS "SELECT r.id, r.campaign_id, r.user_id, r.email FROM hit"
		" JOIN recipient r ON r.id = hit.id ORDER BY r.id",
	[RS_FORGET_ATTEMPTS] =
		"SELECT a.id, a.reply, a.local_error FROM delivery d"
		" JOIN attempt a ON a.delivery_id = d.id WHERE d.recipient_id = ?1",
	[RS_FORGET_ATTEMPT_SET] = "UPDATE attempt SET reply = ?2, local_error = ?3 WHERE id = ?1",
	[RS_FORGET_DELIVERIES] =
		"SELECT id, last_reply, NULL FROM delivery WHERE recipient_id = ?1",
	[RS_FORGET_DELIVERY_SET] = "UPDATE delivery SET last_reply = ?2 WHERE id = ?1",
	[RS_FORGET_EVENTS] =
		"SELECT id, detail, NULL FROM event WHERE recipient_id = ?1 AND detail IS NOT NULL",
	[RS_FORGET_EVENT_SET] = "UPDATE event SET detail = ?2 WHERE id = ?1",
	[RS_FORGET_RECIPIENT] =
		"UPDATE recipient SET user_id = 'forgotten-' || id, email = NULL, email_key = NULL,"
		" name = NULL,"
		" locale = NULL, timezone = NULL, attrs = NULL, state = 'forgotten', digest = 0,"
		" updated_at = ?2 WHERE id = ?1",
	[RS_FORGET_CANCEL] =
		"UPDATE delivery SET state = 'cancelled', reason = 'forgotten', updated_at = ?2"
		" WHERE recipient_id = ?1 AND state IN ('queued', 'deferred')",
	/* Every login of the user, those of the tail (db/012) too: they are indexed as renamed. */
	[RS_FORGET_LOGINS] = "UPDATE login SET user_id = 'forgotten-' || ?2 WHERE user_id = ?1",
	[RS_FORGET_LOGIN_KEYS] =
		"UPDATE login_by_user SET user_id = 'forgotten-' || ?2 WHERE user_id = ?1",
	/* In an UPDATE every right-hand side reads the old row: detail keeps the old reason. */
	[RS_FORGET_SUPPRESSION] =
		"UPDATE suppression SET email = NULL,"
		" detail = CASE WHEN reason <> 'forgotten'"
		"          THEN json_object('previous_reason', reason) END,"
		" reason = 'forgotten' WHERE address_hash = ?1",
	[RS_ADDRESS_FORGOTTEN] =
		"SELECT 1 FROM suppression WHERE address_hash = ?1 AND reason = 'forgotten'",
};

_Static_assert(RS_COUNT <= sizeof ((struct store *)0)->report_stmts /
				   sizeof ((struct store *)0)->report_stmts[0],
	       "struct store's report_stmts is too small");

/* The cached statement id, reset with its bindings cleared; NULL with e filled. */
static sqlite3_stmt *rst(struct store *s, enum rst_id id, struct err *e)
{
	return store_cached(s, &s->report_stmts[id], rst_sql[id],
			    "preparing a report statement (run: cutoff init)", e);
}

static const char *col(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const char *v = col(st, i);

	return v ? xstrdup(v) : NULL;
}

/* Steps st to its end, calling row(st) for each row; row returning non-zero stops. */
static int each_row(struct store *s, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *ud),
		    void *ud, const char *what, struct err *e)
{
	int rc = 0, step;

	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = row(st, ud);
	if (rc == 0 && step != SQLITE_DONE)
		rc = store_db_error(s, e, what);
	sqlite3_reset(st);
	return rc;
}

int store_report_read_begin(struct store *s, struct err *e)
{
	if (sqlite3_exec(s->db, "BEGIN DEFERRED", NULL, NULL, NULL) != SQLITE_OK)
		return store_db_error(s, e, "starting a read transaction");
	return 0;
}

void store_report_read_end(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
}

/* ---- one person ---- */

struct member_walk {
	int (*fn)(void *ud, const struct store_member *m);
	void *ud;
};

static int member_row(sqlite3_stmt *st, void *ud)
{
	struct member_walk *w = ud;
	struct store_member m = {
		.recipient_id = sqlite3_column_int64(st, 0),
		.campaign_id = sqlite3_column_int64(st, 1),
		.campaign = col(st, 2), .title = col(st, 3), .campaign_state = col(st, 4),
		.campaign_tz = col(st, 5), .user_id = col(st, 6), .email = col(st, 7),
		.name = col(st, 8), .locale = col(st, 9), .timezone = col(st, 10),
		.client = col(st, 11), .version = col(st, 12), .platform = col(st, 13),
		.os = col(st, 14), .attrs = col(st, 15), .segment = col(st, 16),
		.state = col(st, 17), .created_at = sqlite3_column_int64(st, 18),
		.updated_at = sqlite3_column_int64(st, 19),
		.completed_at = sqlite3_column_int64(st, 20),
	};

	return w->fn(w->ud, &m);
}

/* Binds PERSON_HITS' user id and address. */
static void bind_person(sqlite3_stmt *st, const char *user_id, const char *email)
{
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	store_bind_text(st, 2, email);
}

int store_report_members(struct store *s, const char *user_id, const char *email,
			 int (*fn)(void *ud, const struct store_member *m), void *ud,
			 struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_MEMBERS, e);
	struct member_walk w = {fn, ud};

	if (st == NULL)
		return e->code;
	bind_person(st, user_id, email);
	return each_row(s, st, member_row, &w, "finding a person", e);
}

struct history_walk {
	int (*fn)(void *ud, const struct store_history_item *h);
	void *ud;
};

static int history_row(sqlite3_stmt *st, void *ud)
{
	struct history_walk *w = ud;
	struct store_history_item h = {
		.at = sqlite3_column_int64(st, 0), .what = col(st, 1), .kind = col(st, 2),
		.email_kind = col(st, 3), .code = sqlite3_column_int(st, 4), .text = col(st, 5),
		.note = col(st, 6), .message_id = col(st, 7), .relay = col(st, 8),
		.detail = col(st, 9), .ref = sqlite3_column_int64(st, 10),
	};

	return w->fn(w->ud, &h);
}

int store_report_history(struct store *s, int64_t recipient_id, const char *user_id,
			 int (*fn)(void *ud, const struct store_history_item *h), void *ud,
			 struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_HISTORY, e);
	struct history_walk w = {fn, ud};
	int rc;

	if (st == NULL)
		return e->code;
	if ((rc = store_login_flush(s, e)) != 0) /* this connection's own, still held back */
		return rc;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_text(st, 2, user_id, -1, SQLITE_STATIC);
	return each_row(s, st, history_row, &w, "reading a person's history", e);
}

struct suppression_walk {
	int (*fn)(void *ud, const struct store_suppression_row *r);
	void *ud;
	bool found;
};

static int suppression_row(sqlite3_stmt *st, void *ud)
{
	struct suppression_walk *w = ud;
	struct store_suppression_row r = {col(st, 0), col(st, 1), col(st, 2),
					  sqlite3_column_int64(st, 3)};

	w->found = true;
	return w->fn(w->ud, &r);
}

int store_report_suppression(struct store *s, const char *email,
			     int (*fn)(void *ud, const struct store_suppression_row *r), void *ud,
			     struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_SUPPRESSION, e);
	struct suppression_walk w = {fn, ud, false};
	char hash[65];
	int rc;

	if (st == NULL)
		return e->code;
	store_address_key(email, hash);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	rc = each_row(s, st, suppression_row, &w, "reading a suppression", e);
	return rc != 0 ? rc : w.found ? 0 : 1;
}

/* ---- the people of a campaign ---- */

struct segment_walk {
	int (*fn)(void *ud, const struct store_segment_row *g);
	void *ud;
};

static int segment_row(sqlite3_stmt *st, void *ud)
{
	struct segment_walk *w = ud;
	struct store_segment_row g = {sqlite3_column_int64(st, 0), col(st, 1), col(st, 2),
				      sqlite3_column_int64(st, 3)};

	return w->fn(w->ud, &g);
}

int store_report_segments(struct store *s, int64_t campaign_id,
			  int (*fn)(void *ud, const struct store_segment_row *g), void *ud,
			  struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_SEGMENTS, e);
	struct segment_walk w = {fn, ud};

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	return each_row(s, st, segment_row, &w, "listing segments", e);
}

/* The login-reminder cursor, read alongside the facts: both are ordered by recipient id. */
struct reminder_cursor {
	sqlite3_stmt *st;
	bool done;
	int64_t recipient_id, n, first, last;
};

/* Moves the cursor to the first summary for a recipient id at or above id. */
static int reminder_seek(struct store *s, struct reminder_cursor *c, int64_t id, struct err *e)
{
	while (!c->done && c->recipient_id < id) {
		int step = sqlite3_step(c->st);
		if (step == SQLITE_DONE) {
			c->done = true;
		} else if (step != SQLITE_ROW) {
			return store_db_error(s, e, "reading login reminders");
		} else {
			c->recipient_id = sqlite3_column_int64(c->st, 0);
			c->n = sqlite3_column_int64(c->st, 1);
			c->first = sqlite3_column_int64(c->st, 2);
			c->last = sqlite3_column_int64(c->st, 3);
		}
	}
	return 0;
}

/* Adds the cursor's summary to f's when it is f's recipient's. */
static void reminder_add(struct store_fact *f, const struct reminder_cursor *c)
{
	if (c->done || c->recipient_id != f->recipient_id || c->n == 0)
		return;
	if (f->reminders == 0 || c->first < f->first_reminder_at)
		f->first_reminder_at = c->first;
	if (f->reminders == 0 || c->last > f->last_reminder_at)
		f->last_reminder_at = c->last;
	f->reminders += c->n;
}

static void fact_from_row(sqlite3_stmt *st, struct store_fact *f)
{
	f->recipient_id = sqlite3_column_int64(st, 0);
	f->user_id = col(st, 1), f->email = col(st, 2), f->segment = col(st, 3);
	f->state = col(st, 4);
	f->segment_id = sqlite3_column_int64(st, 5);
	f->created_at = sqlite3_column_int64(st, 6);
	f->completed_at = sqlite3_column_int64(st, 7);
	f->suppressed = col(st, 8);
	f->suppressed_at = sqlite3_column_int64(st, 9);
	f->delivery_id = sqlite3_column_int64(st, 10);
	f->kind = col(st, 11), f->delivery_state = col(st, 12), f->reason = col(st, 13);
	f->sent_at = sqlite3_column_int64(st, 14);
	f->updated_at = sqlite3_column_int64(st, 15);
	f->recipient_updated_at = sqlite3_column_int64(st, 16);
}

/* The names of a campaign's segments, by id (a handful). */
struct segment_names {
	int64_t *id;
	char **name;
	size_t n;
};

static int segment_name_row(sqlite3_stmt *st, void *ud)
{
	struct segment_names *g = ud;

	g->id = xrealloc(g->id, (g->n + 1) * sizeof *g->id);
	g->name = xrealloc(g->name, (g->n + 1) * sizeof *g->name);
	g->id[g->n] = sqlite3_column_int64(st, 0);
	g->name[g->n++] = col_dup(st, 1);
	return 0;
}

static const char *segment_name(const struct segment_names *g, int64_t id)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->id[i] == id)
			return g->name[i];
	return "?";
}

static void segment_names_free(struct segment_names *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->name[i]);
	free(g->id), free(g->name);
}

struct fact_walk {
	struct store *s;
	struct segment_names g;
	struct reminder_cursor rc, rc_tail; /* the B-tree's claims, the tail's (db/013) */
	int (*fn)(void *ud, const struct store_fact *f);
	void *ud;
	struct err *e;
};

static int fact_row(sqlite3_stmt *st, void *ud)
{
	struct fact_walk *w = ud;
	struct store_fact f;
	int rc;

	fact_from_row(st, &f);
	f.segment = segment_name(&w->g, f.segment_id);
	f.reminders = 0, f.first_reminder_at = 0, f.last_reminder_at = 0;
	if ((rc = reminder_seek(w->s, &w->rc, f.recipient_id, w->e)) != 0 ||
	    (rc = reminder_seek(w->s, &w->rc_tail, f.recipient_id, w->e)) != 0)
		return rc;
	reminder_add(&f, &w->rc);
	reminder_add(&f, &w->rc_tail);
	return w->fn(w->ud, &f);
}

int store_report_facts(struct store *s, int64_t campaign_id, int64_t segment_id,
		       int (*fn)(void *ud, const struct store_fact *f), void *ud, struct err *e)
{
	struct fact_walk w = {s, {NULL, NULL, 0}, {NULL, false, -1, 0, 0, 0},
			      {NULL, false, -1, 0, 0, 0}, fn, ud, e};
	sqlite3_stmt *st = rst(s, RS_SEGMENTS, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	if ((rc = each_row(s, st, segment_name_row, &w.g, "listing segments", e)) != 0)
		goto out;
	if ((st = rst(s, RS_FACTS, e)) == NULL || (w.rc.st = rst(s, RS_REMINDER_SUMS, e)) == NULL ||
	    (w.rc_tail.st = rst(s, RS_REMINDER_SUMS_TAIL, e)) == NULL) {
		rc = e->code;
		goto out;
	}
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, segment_id);
	sqlite3_bind_int64(w.rc.st, 1, campaign_id);
	sqlite3_bind_int64(w.rc_tail.st, 1, campaign_id);
	rc = each_row(s, st, fact_row, &w, "listing a campaign's people", e);
	sqlite3_reset(w.rc.st);
	sqlite3_reset(w.rc_tail.st);
out:
	segment_names_free(&w.g);
	return rc;
}

struct time_walk {
	int (*fn)(void *ud, int64_t t);
	void *ud;
};

static int time_row(sqlite3_stmt *st, void *ud)
{
	struct time_walk *w = ud;

	return w->fn(w->ud, sqlite3_column_int64(st, 0));
}

int store_report_reminder_times(struct store *s, int64_t campaign_id,
				int (*fn)(void *ud, int64_t t), void *ud, struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_REMINDER_TIMES, e);
	struct time_walk w = {fn, ud};

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	return each_row(s, st, time_row, &w, "reading login reminders", e);
}

/* ---- forgetting ---- */

struct target_list {
	struct store_forget_target *v;
	size_t n;
};

static int target_row(sqlite3_stmt *st, void *ud)
{
	struct target_list *l = ud;
	struct store_forget_target *t;

	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	t = &l->v[l->n++];
	t->recipient_id = sqlite3_column_int64(st, 0);
	t->campaign_id = sqlite3_column_int64(st, 1);
	t->user_id = col_dup(st, 2);
	t->email = col_dup(st, 3);
	return 0;
}

int store_report_forget_find(struct store *s, const char *user_id, const char *email,
			     struct store_forget_target **out, size_t *n, struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_FORGET_FIND, e);
	struct target_list l = {NULL, 0};
	int rc;

	*out = NULL, *n = 0;
	if (st == NULL)
		return e->code;
	bind_person(st, user_id, email);
	if ((rc = each_row(s, st, target_row, &l, "finding a person to forget", e)) != 0) {
		store_report_forget_targets_free(l.v, l.n);
		return rc;
	}
	*out = l.v, *n = l.n;
	return 0;
}

void store_report_forget_targets_free(struct store_forget_target *t, size_t n)
{
	for (size_t i = 0; t != NULL && i < n; i++)
		free(t[i].user_id), free(t[i].email);
	free(t);
}

/* Texts of one table read before any is rewritten (no update under a running SELECT). */
struct text_rows {
	int64_t *id;
	char **a, **b;
	size_t n;
};

static int text_row(sqlite3_stmt *st, void *ud)
{
	struct text_rows *t = ud;

	t->id = xrealloc(t->id, (t->n + 1) * sizeof *t->id);
	t->a = xrealloc(t->a, (t->n + 1) * sizeof *t->a);
	t->b = xrealloc(t->b, (t->n + 1) * sizeof *t->b);
	t->id[t->n] = sqlite3_column_int64(st, 0);
	t->a[t->n] = col_dup(st, 1);
	t->b[t->n] = col_dup(st, 2);
	t->n++;
	return 0;
}

static void text_rows_free(struct text_rows *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->a[i]), free(t->b[i]);
	free(t->id), free(t->a), free(t->b);
}

/* What scrubber fn made of v: *out is the new text (NULL: none), true if it differs. */
static bool scrub_one(char *(*fn)(void *ud, const char *t), void *ud, const char *v, char **out)
{
	char *r;

	*out = NULL;
	if (v == NULL)
		return false;
	r = fn(ud, v);
	if (r == v)
		return false;
	*out = r;
	return true;
}

/* Reads the (id, a, b) texts of select_id for recipient_id, scrubs each, writes back with
 * update_id (?1 id, ?2 a, ?3 b) the rows that changed. */
static int scrub_table(struct store *s, int64_t recipient_id, enum rst_id select_id,
		       enum rst_id update_id, char *(*fn)(void *ud, const char *t), void *ud,
		       int64_t *changed, struct err *e)
{
	sqlite3_stmt *st = rst(s, select_id, e);
	struct text_rows t = {NULL, NULL, NULL, 0};
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	rc = each_row(s, st, text_row, &t, "reading texts to scrub", e);
	for (size_t i = 0; rc == 0 && i < t.n; i++) {
		char *a, *b;
		bool ca = scrub_one(fn, ud, t.a[i], &a), cb = scrub_one(fn, ud, t.b[i], &b);
		if ((ca || cb) && (st = rst(s, update_id, e)) == NULL)
			rc = e->code;
		if (rc == 0 && (ca || cb)) {
			sqlite3_bind_int64(st, 1, t.id[i]);
			sqlite3_bind_text(st, 2, ca ? a : t.a[i], -1, SQLITE_STATIC);
			if (update_id == RS_FORGET_ATTEMPT_SET)
				sqlite3_bind_text(st, 3, cb ? b : t.b[i], -1, SQLITE_STATIC);
			rc = store_step_done(s, st, "scrubbing personal data", e);
			(*changed)++;
		}
		free(a), free(b);
	}
	text_rows_free(&t);
	return rc;
}

int store_report_forget_scrub(struct store *s, int64_t recipient_id,
			      const struct store_scrubber *sc, int64_t *changed, struct err *e)
{
	int rc;

	if ((rc = scrub_table(s, recipient_id, RS_FORGET_ATTEMPTS, RS_FORGET_ATTEMPT_SET,
			      sc->text, sc->ud, changed, e)) != 0 ||
	    (rc = scrub_table(s, recipient_id, RS_FORGET_DELIVERIES, RS_FORGET_DELIVERY_SET,
			      sc->text, sc->ud, changed, e)) != 0)
		return rc;
	return scrub_table(s, recipient_id, RS_FORGET_EVENTS, RS_FORGET_EVENT_SET, sc->detail,
			   sc->ud, changed, e);
}

int store_report_forget_recipient(struct store *s, int64_t recipient_id, const char *user_id,
				  int64_t now, int64_t *cancelled, struct err *e)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = rst(s, RS_FORGET_CANCEL, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, now);
	if ((rc = store_step_done(s, st, "cancelling a forgotten person's e-mail", e)) != 0)
		return rc;
	*cancelled = sqlite3_changes(s->db);
	if ((st = rst(s, RS_FORGET_LOGINS, e)) == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, recipient_id);
	if ((rc = store_step_done(s, st, "re-keying a forgotten person's logins", e)) != 0)
		return rc;
	if ((st = rst(s, RS_FORGET_LOGIN_KEYS, e)) == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, recipient_id);
	if ((rc = store_step_done(s, st, "re-keying a forgotten person's logins", e)) != 0)
		return rc;
	/* The address key goes with the address (db/017), to a case variant if there is one. */
	if ((rc = store_keys_leave_recipient(s, recipient_id, e)) != 0)
		return rc;
	if ((st = rst(s, RS_FORGET_RECIPIENT, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, recipient_id);
	sqlite3_bind_int64(st, 2, now);
	return store_step_done(s, st, "erasing a person", e);
}

int store_report_forget_suppression(struct store *s, const char *email, struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_FORGET_SUPPRESSION, e);
	char hash[65];

	if (st == NULL)
		return e->code;
	store_address_key(email, hash);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	return store_step_done(s, st, "making a suppression anonymous", e);
}

int store_report_address_forgotten(struct store *s, const char *email, bool *out, struct err *e)
{
	sqlite3_stmt *st = rst(s, RS_ADDRESS_FORGOTTEN, e);
	char hash[65];
	int step;

	*out = false;
	if (st == NULL)
		return e->code;
	store_address_key(email, hash);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	sqlite3_reset(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return store_db_error(s, e, "checking a forgotten address");
	*out = step == SQLITE_ROW;
	return 0;
}
