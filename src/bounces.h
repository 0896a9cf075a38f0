/* bounces.h — returned mail, read and acted on: each message (DSN, complaint, auto-reply,
 * unsubscribe request) is parsed once (dsn.h), attributed to the exact delivery, and acted
 * on; Maildir, mbox (RFC 4155) and single-message input (RFC 3464, RFC 5965, RFC 3834,
 * RFC 2369). Every message ends up processed (Maildir: moved to cur/ with the S flag) or
 * quarantined with the reason; none is ever deleted.
 *
 * Attribution, first that holds:
 *   verp        the signed VERP token of the address the report was delivered to
 *               (X-Original-To, Delivered-To, To, Envelope-To, or what the MTA passed);
 *               checked with bounces.secret: a forged or mangled token is not trusted
 *   message-id  the returned message's Message-ID, looked up in the ledger
 *   header      its X-Cutoff-Delivery, or X-Cutoff-Campaign + X-Cutoff-Recipient
 *   recipient   the DSN's Final-Recipient / Original-Recipient: that address's most
 *               recent delivery (not for unsubscribe requests, which need a token)
 *   text        a signed VERP token, or a one-click unsubscribe link, anywhere in the text
 *
 * Acting (in one transaction with the record that makes it idempotent):
 *   hard bounce   delivery 'bounced'; the address suppressed (hard-bounce); event "bounce"
 *   soft bounce   delivery 'bounced'; counted (event "soft-bounce"); bounces.soft_threshold
 *                 of them on distinct days, after the last delivery still 'sent', suppress
 *                 the address (soft-bounce; event "suppressed")
 *   complaint     the address suppressed (complaint); event "complaint"
 *   unsubscribe   bounces.unsubscribe = global: the address suppressed (unsubscribe); else
 *                 the recipient unsubscribed from that campaign only; event "unsubscribe"
 *   delay, auto-reply, success notice: nothing changes; event "delay" / "autoreply" /
 *                 "delivery-notice"
 * Quarantined (file copied or moved into the quarantine folder, with NAME.reason beside it):
 * what is not a message, what is not recognised (left for a person), what cannot be
 * attributed, and an unsubscribe request without a valid token.
 */
#ifndef CUTOFF_BOUNCES_H
#define CUTOFF_BOUNCES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "dsn.h"
#include "err.h"
#include "store.h"

/* How a message was attributed (bounces_by_name gives the JSON word). */
enum bounces_by {
	BOUNCES_BY_NONE = 0,
	BOUNCES_BY_VERP,
	BOUNCES_BY_MESSAGE_ID,
	BOUNCES_BY_HEADER,
	BOUNCES_BY_RECIPIENT,
	BOUNCES_BY_TEXT
};

/* What was (or, in a dry run, would be) done with a message. */
enum bounces_action {
	BOUNCES_RECORD = 0,  /* an event only: delay, auto-reply, success notice */
	BOUNCES_SUPPRESS,    /* an address suppressed (hard bounce, complaint, soft threshold,
			      * global unsubscribe) */
	BOUNCES_COUNT,       /* a soft bounce counted, under the threshold */
	BOUNCES_UNSUBSCRIBE, /* unsubscribed from one campaign */
	BOUNCES_DUPLICATE,   /* processed before, or another copy of a bounce already counted
			      * for its delivery: nothing counted again */
	BOUNCES_QUARANTINE   /* set aside with the reason */
};

/* "none", "verp", "message-id", "header", "recipient", "text". */
const char *bounces_by_name(enum bounces_by by);

/* "record", "suppress", "count", "unsubscribe", "duplicate", "quarantine". */
const char *bounces_action_name(enum bounces_action a);

/* How to run. */
struct bounces_options {
	int64_t now;            /* the clock (ctx_now) */
	bool dry_run;           /* classify only: no database writes, no file moved or written */
	FILE *json;             /* one JSON line per message here, or NULL */
	const char *quarantine; /* the quarantine folder; NULL: config bounces.quarantine, else
				 * the default of each input (see the functions) */
	const char *envelope;   /* the envelope recipient the MTA passed with a single message
				 * ($ORIGINAL_RECIPIENT), or NULL */
	int jobs;               /* threads reading and parsing (acting is always in order, on
				 * the caller's thread); 0: one per processor */
};

/* Counts over one run. */
struct bounces_summary {
	int64_t messages;     /* read */
	int64_t hard, soft, delays, autoreplies, complaints, unsubscribes, notices; /* handled */
	int64_t suppressed;   /* addresses suppressed by this run */
	int64_t duplicates;   /* processed by an earlier run: nothing counted again */
	int64_t quarantined;
	int64_t unreadable;   /* could not be read, moved or quarantined: left where they were */
};

/* What happened to one message. */
struct bounces_result {
	enum dsn_kind kind;
	enum bounces_by by;
	enum bounces_action action;
	int64_t delivery_id;  /* the (first) delivery it was attributed to, or 0 */
	int64_t recipient_id;
	size_t n_targets;     /* deliveries it was attributed to */
	char reason[256];     /* why quarantined, else "" */
	char sha256[65];      /* of the raw message */
};

/*
 * Processes one message in data[0..len): parse, attribute, act (see the top of this file).
 * s is the open store (NULL only in a dry run without a database: then only signed VERP
 * tokens attribute). source names the message in records, events and the JSON ("file";
 * index > 0 adds "index", an mbox message's number). A quarantined message is written to
 * the quarantine folder (o->quarantine, else config bounces.quarantine, else
 * quarantine_default, else "quarantine") as quarantine_name (NULL: "message-" and 16 hex
 * digits of its SHA-256), with quarantine_name.reason beside it.
 * Returns 0 with *res filled whenever the message was handled (quarantined included);
 * ERR_TEMPFAIL when the database is busy, ERR_IO when the quarantine cannot be written, and
 * then nothing was changed. The call is one transaction.
 */
int bounces_process_buffer(struct store *s, const struct config *cfg, const char *data,
			   size_t len, const char *source, size_t index,
			   const char *quarantine_name, const char *quarantine_default,
			   const struct bounces_options *o, struct bounces_result *res,
			   struct bounces_summary *sum, struct err *e);

/*
 * Processes every message in DIR/new (a Maildir; the daily run calls this with config
 * bounces.maildir), in name order, in transactions of up to 256 messages: each one handled
 * is renamed to DIR/cur/NAME:2,S after its transaction commits, each one quarantined is moved
 * to the quarantine folder (config bounces.quarantine, else DIR/../quarantine). A DIR without
 * new/ is a folder of message files, read in a dry run only (ERR_USAGE otherwise). A message
 * that cannot be read or moved is counted in sum->unreadable and the run goes on; the run
 * then returns ERR_IO. ERR_NOTFOUND if DIR does not exist; ERR_TEMPFAIL if the database is
 * busy (what was committed stays done; the rest stays in new/ for the next run).
 */
int bounces_process_maildir(struct store *s, const struct config *cfg, const char *dir,
			    const struct bounces_options *o, struct bounces_summary *sum,
			    struct err *e);

/*
 * Processes every message of an mbox file (From_ lines, LF or CRLF). The file is never
 * changed: re-reading it counts nothing twice. Quarantined messages are copied to the
 * quarantine folder (default: FILE's folder/quarantine) as MBOX-N-HASH. Errors as
 * bounces_process_maildir.
 */
int bounces_process_mbox(struct store *s, const struct config *cfg, const char *path,
			 const struct bounces_options *o, struct bounces_summary *sum,
			 struct err *e);

/*
 * Processes the one message readable from fd (an MTA's pipe). Quarantine default: the
 * database's folder/quarantine. Returns 0 when the message was handled (quarantined
 * included), else an error after which the MTA should try again.
 */
int bounces_process_fd(struct store *s, const struct config *cfg, int fd, const char *db_path,
		       const struct bounces_options *o, struct bounces_summary *sum,
		       struct err *e);

#endif
