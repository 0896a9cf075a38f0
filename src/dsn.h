/* dsn.h — parses one returned message (DSN, non-standard bounce, ARF complaint, auto-reply,
 * unsubscribe request) into a result; reads mbox files (RFC 3464, RFC 3463, RFC 5965,
 * RFC 3834, RFC 6533, RFC 4155). Pure: no database, no files moved. */
#ifndef CUTOFF_DSN_H
#define CUTOFF_DSN_H

#include <stdbool.h>
#include <stddef.h>

#include <gmime/gmime.h>
#include <jansson.h>

#include "classify.h"
#include "err.h"

/*
 * What a returned message is. Only DSN_KIND_BOUNCE reports failed deliveries. The
 * recipients of a complaint are the complaining addresses; of an auto-reply or an
 * unsubscribe request, its sender (reason vacation or feedback, no class).
 */
enum dsn_kind {
	DSN_KIND_OTHER = 0,   /* not recognised, or a success notice (Action: delivered) */
	DSN_KIND_BOUNCE,      /* at least one recipient failed */
	DSN_KIND_DELAY,       /* delivery is delayed and still being retried (Action: delayed) */
	DSN_KIND_AUTOREPLY,   /* an auto-reply or vacation message (RFC 3834) */
	DSN_KIND_COMPLAINT,   /* a feedback report (RFC 5965 ARF) or a provider's complaint */
	DSN_KIND_UNSUBSCRIBE  /* a mailed unsubscribe request (RFC 2369 mailto:) */
};

/* The DSN Action of one recipient (RFC 3464 section 2.3.3). */
enum dsn_action {
	DSN_ACTION_NONE = 0, /* not given */
	DSN_ACTION_FAILED,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,
	DSN_ACTION_EXPANDED
};

/* One recipient a report is about. Strings are owned by the result. */
struct dsn_recipient {
	char *address;          /* lower-cased addr-spec, never NULL */
	char status[16];        /* RFC 3463 "5.1.1", or "" when none was found */
	int reply_code;         /* SMTP reply code (550), or 0 */
	enum dsn_action action;
	enum bounce_reason reason;
	enum bounce_class class; /* BOUNCE_CLASS_NONE for complaints, auto-replies, successes */
	char *diagnostic;       /* the remote server's words, unfolded; NULL if none */
	char *remote_mta;       /* Remote-MTA host, or NULL */
	enum smtp_stage stage;  /* the SMTP command the failure answered, if told */
};

/* One header field of the returned original message. */
struct dsn_header {
	char *name;
	char *value;
};

/* Everything read from one returned message. Free with dsn_result_free. */
struct dsn_result {
	enum dsn_kind kind;
	struct dsn_recipient *recipients;
	size_t n_recipients;
	char *original_message_id;     /* the returned message's Message-ID without <>, or NULL */
	struct dsn_header *cutoff_headers; /* its X-Cutoff-* header fields, in order */
	size_t n_cutoff_headers;
	char *envelope_recipient;      /* who this report was delivered to (X-Original-To,
					* Delivered-To or To), for VERP; NULL if unknown */
	char *feedback_type;           /* ARF Feedback-Type ("abuse"), or NULL */
};

/*
 * Initialises GMime. Call once at program start, before any other dsn_ function, from
 * one thread; dsn_shutdown at exit. Both may be called again after each other.
 */
void dsn_init(void);
void dsn_shutdown(void);

/*
 * Parses the message in data[0..len) (CRLF, LF or CR line endings; a leading mbox "From "
 * line is skipped). Any bytes give a result: an empty or unrecognised message is
 * DSN_KIND_OTHER with no recipients. On success returns 0 and sets *out, which the caller
 * frees with dsn_result_free; returns ERR_DATA (with e filled) only if data is not a
 * message at all (GMime finds no header). Never crashes on any input.
 */
int dsn_parse_buffer(const char *data, size_t len, struct dsn_result **out, struct err *e);

/*
 * Reads stream to its end and parses it as dsn_parse_buffer does. The caller keeps its
 * reference to stream. Returns ERR_IO if the stream cannot be read.
 */
int dsn_parse_stream(GMimeStream *stream, struct dsn_result **out, struct err *e);

/*
 * Reads a message GMime has built (the caller keeps msg). Always succeeds; the caller frees
 * the result with dsn_result_free. Messages may be parsed on several threads at once.
 */
struct dsn_result *dsn_parse_message(GMimeMessage *msg);

/* Releases a result; NULL is fine. */
void dsn_result_free(struct dsn_result *res);

/* "bounce", "delay", "autoreply", "complaint", "unsubscribe" or "other". */
const char *dsn_kind_name(enum dsn_kind kind);

/*
 * {"kind": ..., "recipients": [{"address": ..., "status": "5.1.1" | null,
 * "reply_code": 550 | null, "reason": ..., "class": "hard" | "soft" | null}]}. An address
 * that is not UTF-8 is kept, its stray bytes as U+FFFD (see dsn_json_text).
 * A new reference the caller releases with json_decref; the caller adds file, index,
 * attributed_by. Never NULL (aborts on out of memory).
 */
json_t *dsn_result_to_json(const struct dsn_result *res);

/*
 * A JSON string of s[0..len), for values that come from the network and may not be UTF-8
 * (jansson's json_string refuses those, and a value set from it would silently be left
 * out): every byte that is not part of well-formed UTF-8 becomes U+FFFD, the rest is kept.
 * NULL s gives JSON null. A new reference; never NULL (aborts on out of memory).
 */
json_t *dsn_json_text(const char *s, size_t len);

/* An mbox file being read one message at a time (From_ lines, RFC 4155). */
struct dsn_mbox;

/*
 * Opens the mbox at path for dsn_mbox_next (LF or CRLF lines; GMime's mbox parser). Returns
 * ERR_NOTFOUND if it does not exist, ERR_IO if it cannot be opened. An empty file, a file
 * of a few bytes or one with no "From " line is not an error: it has no messages. Free
 * with dsn_mbox_free.
 */
int dsn_mbox_open(const char *path, struct dsn_mbox **out, struct err *e);

/* Like dsn_mbox_open on a stream (the mbox takes its own reference). */
struct dsn_mbox *dsn_mbox_new(GMimeStream *stream);

/*
 * Parses the next message. Returns 1 and sets *out (caller frees) and *index (1 for the
 * first message); returns 0 (and *out NULL) at the end of the mbox, or where GMime can
 * build no further message, and on every call after that.
 */
int dsn_mbox_next(struct dsn_mbox *mb, struct dsn_result **out, size_t *index);

/* Closes the mbox; NULL is fine. */
void dsn_mbox_free(struct dsn_mbox *mb);

#endif
