/* mime.h — composes the RFC 5322 / MIME message cutoff sends, with GMime 3
 * (RFC 5322, 2045-2047, 2369 List-Unsubscribe, 8058 one-click, 3834 Auto-Submitted). */
#ifndef CUTOFF_MIME_H
#define CUTOFF_MIME_H

#include <stdint.h>

#include "err.h"
#include "util.h"

/*
 * What one message says, as already-rendered UTF-8 strings. mime_compose only
 * reads it; the caller owns every string. NULL means "absent" where allowed.
 *
 * Every value bound for a header is checked before anything is built: a CR, LF
 * or any other control character (str_has_control), invalid UTF-8, or the text
 * "=?" (which mail readers would decode as an RFC 2047 encoded word) is refused.
 * Addresses must be plain ASCII addr-specs (dot-atom local part, LDH domain in
 * its A-label form); quoted local parts, address literals and SMTPUTF8 are not
 * supported.
 */
struct mime_message_spec {
	const char *from_name;          /* sender display name; NULL or "" for none */
	const char *from_addr;          /* required */
	const char *reply_to;           /* NULL, "addr" or "Name <addr>" (exactly one mailbox) */
	const char *to_name;            /* recipient display name; NULL or "" for none */
	const char *to_addr;            /* required */
	const char *subject;            /* required, not empty; RFC 2047-encoded as needed */
	const char *text;               /* required text/plain body */
	const char *html;               /* NULL = text only, else multipart/alternative */
	const char *message_id_domain;  /* required: right-hand side of the Message-ID */
	const char *unsubscribe_mailto; /* "mailto:..." or a bare address; NULL for none */
	const char *unsubscribe_url;    /* https:// URL (RFC 8058 one-click); NULL for none */
	const char *campaign;           /* X-Cutoff-Campaign; NULL to omit */
	const char *recipient_id;       /* X-Cutoff-Recipient; also names the recipient in errors */
	const char *delivery_id;        /* X-Cutoff-Delivery; NULL to omit */
	int64_t date;                   /* UTC seconds since the epoch, for Date and Message-ID */
	const char *ics;                /* NULL, or iCalendar text attached as cutoff.ics */
};

/*
 * Initialises GMime (g_mime_init). Call once from the main thread at startup,
 * before any thread calls mime_compose; pair with mime_shutdown at exit.
 */
void mime_init(void);

/* Releases GMime's global state (g_mime_shutdown). Call once, after the last mime_compose. */
void mime_shutdown(void);

/*
 * Composes the message described by s into out, exactly as it goes over SMTP:
 * CRLF line endings, ending with CRLF, no line over 998 octets, 7-bit clean.
 *
 * Structure: a single text/plain part; multipart/alternative (text, then HTML)
 * when s->html is set; wrapped in multipart/mixed with a text/calendar
 * (method=PUBLISH, attachment cutoff.ics) part when s->ics is set. Every text
 * part is charset=utf-8. The Content-Transfer-Encoding of each part is GMime's
 * best fit under a 7-bit constraint (GMimeFilterBest): 7bit for ASCII with lines
 * of at most 998 octets; quoted-printable when under 17% of the octets are
 * 8-bit, when a line is longer, or when a line starts with "From "; base64
 * otherwise (of the canonical CRLF text). GMime's encoders do the encoding.
 * Bodies have CRLF and lone CR normalised to LF first, and get a final newline
 * if they lack one.
 *
 * Headers, in this order: Date, From, Reply-To, Subject, To, Message-ID,
 * Auto-Submitted: auto-generated, List-Unsubscribe (and List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click when an https URL is given), X-Cutoff-Campaign,
 * X-Cutoff-Recipient, X-Cutoff-Delivery (each only when given), MIME-Version,
 * Content-Type, Content-Transfer-Encoding. Display names go through GMime's
 * InternetAddress API (UTF-8 encoded words, quoting, folding); the subject
 * through g_mime_utils_header_encode_text and GMime's folding.
 *
 * s, out and message_id must not be NULL. out is reset first and holds the
 * message on success (the caller owns out).
 * On success *message_id is a new string the caller frees, without angle
 * brackets ("20030818160000.<24 hex>@domain", or with a numeric delivery_id
 * "20030818160000.<delivery id, 18 digits>.<24 hex>@domain" so that the ids
 * of one run sort in delivery order; as g_mime_message_get_message_id
 * returns it when a bounce is parsed); the time is that of s->date and the
 * random part, like the multipart boundaries, comes from RAND_bytes.
 *
 * Returns 0, or ERR_DATA for a value that cannot go into the message (the
 * message names the field and, when given, the recipient id: "recipient u123:
 * the display name contains a line break; refusing to compose a header from
 * it"), or ERR_SOFTWARE if OpenSSL fails. On error out is empty and
 * *message_id is NULL. Calls share no GMime object, so threads may compose at
 * once after mime_init.
 */
int mime_compose(const struct mime_message_spec *s, struct buf *out, char **message_id,
		 struct err *e);

/*
 * Header lines that repeat from one message to the next in a run (Date, From,
 * Reply-To: the campaign's, at the run's clock; the last 32 different Subjects),
 * kept encoded so that a thread
 * composing many messages checks and encodes each once. Not thread-safe: one
 * per thread. Free with mime_cache_free (NULL is fine).
 */
struct mime_cache;
struct mime_cache *mime_cache_new(void);
void mime_cache_free(struct mime_cache *c);

/*
 * mime_compose, reusing c's encoded Date, From, Reply-To and Subject lines when s
 * has the same date, sender, Reply-To or subject as a message that filled them (values found
 * valid once are valid again), and remembering them otherwise. The message is
 * byte for byte what mime_compose writes, and errors are the same. c NULL is
 * mime_compose.
 */
int mime_compose_cached(struct mime_cache *c, const struct mime_message_spec *s,
			struct buf *out, char **message_id, struct err *e);

/*
 * Converts the CRLF line endings of a composed message in b to LF, in place,
 * for display (cutoff preview) or writing to a Unix mbox. Never fails.
 */
void mime_crlf_to_lf(struct buf *b);

#endif
