/* store_bounces.c — the SQL of returned-mail processing (part of the store module). */
#include "store_bounces.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "util.h"

enum bst_id {
	BST_BY_DELIVERY,
	BST_BY_MESSAGE_ID,
	BST_BY_ADDRESS,
	BST_BY_RECIPIENT,
	BST_CAMPAIGN_ID,
	BST_SEEN,
	BST_RECORD,
	BST_MARK_BOUNCED,
	BST_SOFT_ADD,
	BST_SOFT_DAYS,
	BST_UNSUBSCRIBE,
	BST_UNSUBSCRIBE_CANCEL,
	BST_COUNT
};

/* Every query that yields a target selects these columns from delivery d, recipient r. */
#define TARGET_COLUMNS                                                                   \
	"SELECT d.id, d.recipient_id, d.campaign_id, coalesce(d.sent_at, 0), d.state,"   \
	" coalesce(r.email, '') FROM delivery d JOIN recipient r ON r.id = d.recipient_id"
#define MOST_RECENT " ORDER BY coalesce(d.sent_at, d.updated_at) DESC, d.id DESC LIMIT 1"

static const char *const bst_sql[BST_COUNT] = {
	[BST_BY_DELIVERY] = TARGET_COLUMNS " WHERE d.id = ?1",
	[BST_BY_MESSAGE_ID] =
		TARGET_COLUMNS " WHERE d.id = (SELECT id FROM delivery WHERE message_id = ?1"
		" UNION ALL SELECT delivery_id FROM attempt WHERE message_id = ?1 LIMIT 1)",
	[BST_BY_ADDRESS] = TARGET_COLUMNS " WHERE r.id IN " STORE_ADDRESS_IDS("?1")
		" AND r.email = ?1 COLLATE NOCASE" MOST_RECENT,
	[BST_BY_RECIPIENT] =
		TARGET_COLUMNS " WHERE r.campaign_id = ?1 AND r.id = coalesce(?3,"
		" (SELECT id FROM recipient WHERE id IN " STORE_PERSON_IDS("?1", "?2")
		"  ORDER BY user_id = ?2 DESC LIMIT 1))" MOST_RECENT,
	[BST_CAMPAIGN_ID] = "SELECT id FROM campaign WHERE name = ?1",
	[BST_SEEN] = "SELECT 1 FROM bounce_message WHERE sha256 = ?1",
	[BST_RECORD] =
		"INSERT INTO bounce_message (sha256, source, kind, attributed_by, delivery_id,"
		" outcome, processed_at) VALUES (?1, ?2, ?3, ?4, nullif(?5, 0), ?6, ?7)",
	[BST_MARK_BOUNCED] =
		"UPDATE delivery SET state = 'bounced', reason = ?2, updated_at = ?3"
		" WHERE id = ?1 AND state IN ('sent', 'queued', 'deferred')",
	[BST_SOFT_ADD] =
		"INSERT INTO soft_bounce (address_hash, delivery_id, sent_at, at)"
		" VALUES (?1, nullif(?2, 0), ?3, ?4) ON CONFLICT (delivery_id) DO NOTHING",
	/* Soft bounces after the last success: DSNs counted here, and 5xx soft failures the
	 * sender recorded; a day is the UTC day the bounced message was sent. */
	[BST_SOFT_DAYS] =
		"WITH last_ok AS (SELECT coalesce(max(d.sent_at), -1) AS t FROM delivery d"
		"  JOIN recipient r ON r.id = d.recipient_id WHERE r.id IN " STORE_ADDRESS_IDS("?2")
		"  AND r.email = ?2 COLLATE NOCASE"
		"  AND d.state = 'sent' AND d.sent_at < ?3)"
		" SELECT count(DISTINCT t / 86400) FROM ("
		"  SELECT sent_at AS t FROM soft_bounce WHERE address_hash = ?1"
		"  UNION ALL SELECT d.updated_at FROM delivery d JOIN recipient r"
		"  ON r.id = d.recipient_id WHERE r.id IN " STORE_ADDRESS_IDS("?2")
		"  AND r.email = ?2 COLLATE NOCASE"
		"  AND d.state = 'failed' AND d.reason = 'soft')"
		" WHERE t > (SELECT t FROM last_ok)",
	[BST_UNSUBSCRIBE] =
		"INSERT INTO campaign_unsubscribe (campaign_id, recipient_id, created_at)"
		" VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
	[BST_UNSUBSCRIBE_CANCEL] =
		"UPDATE delivery SET state = 'suppressed', reason = 'unsubscribe', updated_at = ?3"
		" WHERE campaign_id = ?1 AND recipient_id = ?2 AND state IN ('queued', 'deferred')",
};

struct store_bounces {
	struct store *s;
	sqlite3_stmt *st[BST_COUNT];
};

struct store_bounces *store_bounces_new(struct store *s)
{
	struct store_bounces *b = xcalloc(1, sizeof *b);

	b->s = s;
	return b;
}

void store_bounces_free(struct store_bounces *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < BST_COUNT; i++)
		sqlite3_finalize(b->st[i]);
	free(b);
}

/* The cached statement id, reset with its bindings cleared; NULL with e filled. */
static sqlite3_stmt *bst(struct store_bounces *b, enum bst_id id, struct err *e)
{
	return store_cached(b->s, &b->st[id], bst_sql[id],
			    "preparing a bounce statement (run: cutoff init)", e);
}

static void copy_col(sqlite3_stmt *st, int i, char *out, size_t n)
{
	const unsigned char *v = sqlite3_column_text(st, i);

	snprintf(out, n, "%s", v ? (const char *)v : "");
}

/* Steps a bound target query: 0 and *out filled, 1 when there is no row. */
static int target_step(struct store_bounces *b, sqlite3_stmt *st, struct store_bounce_target *out,
		       struct err *e)
{
	int rc = sqlite3_step(st);

	memset(out, 0, sizeof *out);
	if (rc == SQLITE_ROW) {
		out->delivery_id = sqlite3_column_int64(st, 0);
		out->recipient_id = sqlite3_column_int64(st, 1);
		out->campaign_id = sqlite3_column_int64(st, 2);
		out->sent_at = sqlite3_column_int64(st, 3);
		copy_col(st, 4, out->state, sizeof out->state);
		copy_col(st, 5, out->email, sizeof out->email);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = 1;
	} else {
		rc = store_db_error(b->s, e, "finding the delivery a bounce is about");
	}
	sqlite3_reset(st);
	return rc;
}

int store_bounces_by_delivery(struct store_bounces *b, int64_t delivery_id,
			      struct store_bounce_target *out, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_BY_DELIVERY, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, delivery_id);
	return target_step(b, st, out, e);
}

int store_bounces_by_message_id(struct store_bounces *b, const char *message_id,
				struct store_bounce_target *out, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_BY_MESSAGE_ID, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
	return target_step(b, st, out, e);
}

int store_bounces_by_address(struct store_bounces *b, const char *address,
			     struct store_bounce_target *out, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_BY_ADDRESS, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	return target_step(b, st, out, e);
}

int store_bounces_by_recipient(struct store_bounces *b, int64_t campaign_id, const char *key,
			       int64_t recipient_id, struct store_bounce_target *out,
			       struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_BY_RECIPIENT, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	store_bind_text(st, 2, key);
	if (key == NULL)
		sqlite3_bind_int64(st, 3, recipient_id);
	return target_step(b, st, out, e);
}

int store_bounces_campaign_id(struct store_bounces *b, const char *name, int64_t *id,
			      struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_CAMPAIGN_ID, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? 1 : store_db_error(b->s, e, "finding a campaign");
	}
	sqlite3_reset(st);
	return rc;
}

int store_bounces_seen(struct store_bounces *b, const char *sha256, bool *seen, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_SEEN, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(b->s, e, "checking whether a bounce was processed");
	*seen = rc == SQLITE_ROW;
	return 0;
}

int store_bounces_record(struct store_bounces *b, const struct store_bounce_message *m,
			 int64_t now, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_RECORD, e);

	if (st == NULL)
		return e->code;
	sqlite3_bind_text(st, 1, m->sha256, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->source, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->attributed_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, m->delivery_id);
	sqlite3_bind_text(st, 6, m->outcome, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, now);
	return store_step_done(b->s, st, "recording a processed bounce", e);
}

int store_bounces_mark_bounced(struct store_bounces *b, int64_t delivery_id, const char *reason,
			       int64_t now, bool *changed, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_MARK_BOUNCED, e);
	int rc;

	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, delivery_id);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	rc = store_step_done(b->s, st, "marking a delivery bounced", e);
	*changed = rc == 0 && sqlite3_changes(b->s->db) > 0;
	return rc;
}

int store_bounces_soft_add(struct store_bounces *b, const char *address, int64_t delivery_id,
			   int64_t sent_at, int64_t now, bool *added, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_SOFT_ADD, e);
	char key[65];
	int rc;

	if (st == NULL)
		return e->code;
	store_address_key(address, key);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, delivery_id);
	sqlite3_bind_int64(st, 3, sent_at > 0 ? sent_at : now);
	sqlite3_bind_int64(st, 4, now);
	rc = store_step_done(b->s, st, "counting a soft bounce", e);
	*added = rc == 0 && sqlite3_changes(b->s->db) > 0;
	return rc;
}

int store_bounces_soft_days(struct store_bounces *b, const char *address, int64_t before,
			    int64_t *days, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_SOFT_DAYS, e);
	char key[65];
	int rc;

	if (st == NULL)
		return e->code;
	store_address_key(address, key);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, before);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*days = sqlite3_column_int64(st, 0);
		rc = 0;
	} else {
		rc = store_db_error(b->s, e, "counting soft bounces");
	}
	sqlite3_reset(st);
	return rc;
}

int store_bounces_unsubscribe(struct store_bounces *b, int64_t campaign_id, int64_t recipient_id,
			      int64_t now, int64_t *cancelled, struct err *e)
{
	sqlite3_stmt *st = bst(b, BST_UNSUBSCRIBE, e);
	int rc;

	*cancelled = 0;
	if (st == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, recipient_id);
	sqlite3_bind_int64(st, 3, now);
	if ((rc = store_step_done(b->s, st, "recording an unsubscribe", e)) != 0)
		return rc;
	if ((st = bst(b, BST_UNSUBSCRIBE_CANCEL, e)) == NULL)
		return e->code;
	sqlite3_bind_int64(st, 1, campaign_id);
	sqlite3_bind_int64(st, 2, recipient_id);
	sqlite3_bind_int64(st, 3, now);
	if ((rc = store_step_done(b->s, st, "stopping an unsubscribed recipient's mail", e)) == 0)
		*cancelled = sqlite3_changes(b->s->db);
	return rc;
}
