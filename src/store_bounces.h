/* store_bounces.h — the SQL of returned-mail processing. Part of the store module: with
 * store.c, the only file allowed to hold SQL (tables of db/003_bounces.sql, the ledger). */
#ifndef CUTOFF_STORE_BOUNCES_H
#define CUTOFF_STORE_BOUNCES_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/*
 * The bounce statements prepared on one open store, kept until store_bounces_free. Each
 * function below returns 0 or a negative err code (ERR_TEMPFAIL when the database is busy,
 * ERR_IO otherwise) with e filled; lookups return 1 when nothing matches.
 */
struct store_bounces;

/* Makes the statement cache for s (nothing is prepared yet). Free it before store_close. */
struct store_bounces *store_bounces_new(struct store *s);

/* Finalizes the statements; NULL is fine. */
void store_bounces_free(struct store_bounces *b);

/* A delivery a returned message is about, with what acting on it needs. */
struct store_bounce_target {
	int64_t delivery_id;
	int64_t recipient_id;
	int64_t campaign_id;
	int64_t sent_at; /* 0: never sent */
	char state[16];  /* the delivery's state: sent, bounced, ... */
	char email[320]; /* the recipient's address as stored; "" once forgotten */
};

/* The delivery of that id. 0 found, 1 none. */
int store_bounces_by_delivery(struct store_bounces *b, int64_t delivery_id,
                              struct store_bounce_target *out, struct err *e);

/* The delivery whose message (delivery.message_id or any attempt's) had this Message-ID,
 * without angle brackets. 0 found, 1 none. */
int store_bounces_by_message_id(struct store_bounces *b, const char *message_id,
                                struct store_bounce_target *out, struct err *e);

/* The most recent delivery (by sent time, then id) to a recipient whose address is address,
 * case ignored, in any campaign. 0 found, 1 none. */
int store_bounces_by_address(struct store_bounces *b, const char *address,
                             struct store_bounce_target *out, struct err *e);

/* The most recent delivery to the recipient of campaign_id named by key (X-Cutoff-Recipient:
 * user id or address), or by recipient_id when key is NULL. 0 found, 1 none. */
int store_bounces_by_recipient(struct store_bounces *b, int64_t campaign_id, const char *key,
                               int64_t recipient_id, struct store_bounce_target *out,
                               struct err *e);

/* The id of the campaign called name. 0 found, 1 none. */
int store_bounces_campaign_id(struct store_bounces *b, const char *name, int64_t *id,
                              struct err *e);

/* Whether the message with this hex SHA-256 was processed before. */
int store_bounces_seen(struct store_bounces *b, const char *sha256, bool *seen, struct err *e);

/* What was done with one returned message (a bounce_message row). */
struct store_bounce_message {
	const char *sha256;
	const char *source;        /* file name, "mbox:N" or "-" */
	const char *kind;          /* dsn_kind_name */
	const char *attributed_by; /* verp, message-id, header, recipient, text */
	int64_t delivery_id;       /* the first delivery it was attributed to */
	const char *outcome;       /* suppress, count, unsubscribe, record */
};

/* Records a processed message. A second record of the same hash is ERR_REFUSED. */
int store_bounces_record(struct store_bounces *b, const struct store_bounce_message *m, int64_t now,
                         struct err *e);

/*
 * A DSN came back for the delivery: state 'bounced' with reason (hard, soft), unless it is
 * in flight ('sending'), already bounced, or never left (failed, suppressed, cancelled).
 * *changed tells whether the row moved.
 */
int store_bounces_mark_bounced(struct store_bounces *b, int64_t delivery_id, const char *reason,
                               int64_t now, bool *changed, struct err *e);

/*
 * Counts a soft bounce of address for delivery_id (sent at sent_at; 0: now). A delivery's
 * second soft bounce is not counted again (*added false).
 */
int store_bounces_soft_add(struct store_bounces *b, const char *address, int64_t delivery_id,
                           int64_t sent_at, int64_t now, bool *added, struct err *e);

/*
 * The number of distinct UTC days on which messages to address were sent that soft-bounced
 * (DSNs counted by store_bounces_soft_add, and 5xx soft failures at send time), after the
 * last delivery to it that was sent before `before` and is still 'sent' (a later success
 * resets the count).
 */
int store_bounces_soft_days(struct store_bounces *b, const char *address, int64_t before,
                            int64_t *days, struct err *e);

/*
 * Unsubscribes a recipient from one campaign: recorded (a second time changes nothing), its
 * queued and deferred deliveries become 'suppressed' (reason unsubscribe) and so will any
 * queued later (a trigger of db/003). *cancelled counts the deliveries stopped now.
 */
int store_bounces_unsubscribe(struct store_bounces *b, int64_t campaign_id, int64_t recipient_id,
                              int64_t now, int64_t *cancelled, struct err *e);

#endif
