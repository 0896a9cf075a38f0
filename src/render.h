/* render.h — a campaign's messages: templates per segment and locale with fallback, the variables they see, localized dates, the composed RFC 5322 message. */
#ifndef CUTOFF_RENDER_H
#define CUTOFF_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "campaign.h"
#include "diag.h"
#include "err.h"
#include "store.h"
#include "util.h"

/*
 * Template layout (docs/templates.md):
 *   TEMPLATES/[LOCALE/]TEMPLATE/{subject,text,html,login}.mustache
 *   TEMPLATES/[LOCALE/]partials/NAME.mustache          ({{> NAME}})
 * where TEMPLATES is campaign->templates_dir and TEMPLATE a segment's
 * template_name. The top level is the default, written in English
 * (RENDER_DEFAULT_LOCALE). A LOCALE folder is any subfolder whose name is a
 * language tag ("fr", "pt-BR", "zh-Hant") and that no segment uses as its
 * template folder.
 *
 * Fallback: a recipient whose locale is "pt-BR" gets the template folder
 * pt-BR/TEMPLATE/, else pt/TEMPLATE/, else TEMPLATE/ (RFC 4647 lookup, case
 * ignored). The unit is the template folder, so a message is never half in
 * one language: subject, text and login must all be in the folder chosen, and
 * html is taken from that folder only (a locale folder without html.mustache
 * gives a text-only message even when the default has HTML). A locale folder
 * may hold only some templates and only some partials. Partials fall back per
 * file, starting from the locale of the template that includes them:
 * pt-BR/partials/x, pt/partials/x, partials/x for a template in pt-BR/, and
 * only partials/x for a default template.
 *
 * Dates are written in the language of the template folder chosen, in the
 * recipient's own regional form when the languages agree (an en-US recipient
 * of the default English templates reads "Wednesday, October 15, 2003"), and
 * in the recipient's time zone, else the campaign's.
 */
#define RENDER_DEFAULT_LOCALE "en"

/* The template parts, indexes into render_result and campaign_template_parts. */
enum render_part { RENDER_SUBJECT, RENDER_TEXT, RENDER_HTML, RENDER_LOGIN, RENDER_NPARTS };

/* ---- compiled templates: once per campaign ------------------------------------------------ */

/* Every template of one campaign, compiled: immutable once loaded, so threads may share it. */
struct render_templates;

/*
 * Compiles every template file a campaign's segments use, in the default
 * folder and in every locale folder present on disk, with their partials.
 * Returns 0, or ERR_CONFIG listing the problems (file:line:col) when a file is
 * missing, unreadable or does not compile; *out is NULL then. c must outlive
 * *out. Free with render_templates_free. The variable names are not checked
 * here: render_check_campaign does that, once, when the campaign is checked
 * or added.
 */
int render_templates_load(struct render_templates **out, const struct campaign *c, struct err *e);

/* Releases t (NULL is fine). */
void render_templates_free(struct render_templates *t);

/* The locale folder ("pt-BR", "fr") or RENDER_DEFAULT_LOCALE that a recipient
 * with locale tag `locale` (may be NULL) gets for template `template_name`.
 * The string belongs to t. */
const char *render_templates_locale(const struct render_templates *t, const char *template_name,
				    const char *locale);

/* ---- check: `cutoff campaign check` and `campaign add` -------------------------------------- */

/*
 * Checks every template of every segment, in every locale present on disk:
 * each file compiles (sections close, tags are well-formed), every partial it
 * includes exists, every name it uses is a known variable (docs/templates.md;
 * names inside sections resolve relative to the section, as at render time),
 * no group of variables is interpolated, and each segment's message renders in
 * strict mode against a sample recipient and composes (a subject of one line,
 * headers that mime_compose accepts). Every problem is added to d, located
 * "file:line:col" where it has a place in a file. The sample is rendered as at
 * the campaign's announce time, so the result does not depend on the clock.
 * Returns 0 when nothing is wrong, else ERR_CONFIG (the problems are in d;
 * diag_to_err turns them into one message).
 */
int render_check_campaign(const struct campaign *c, struct diag *d);

/* ---- rendering: one renderer per thread ----------------------------------------------------- */

struct render_options {
	/* HMAC-SHA256 key for one-click unsubscribe tokens (config bounces.secret), or NULL:
	 * then no unsubscribe URL is made unless the request brings one. */
	const unsigned char *secret;
	size_t secret_len;
	bool attach_ics; /* attach cutoff.ics, the cutoff as an all-day event (RFC 5545) */
};

/* A renderer: the context skeleton, caches and buffers of one thread. Not thread-safe. */
struct render;

/*
 * Makes a renderer for templates t (which must outlive it); o may be NULL
 * (no secret, no attachment) and is copied, but the secret it points to must
 * outlive the renderer. Never fails but for memory, which aborts.
 */
struct render *render_new(const struct render_templates *t, const struct render_options *o);

/* Releases r (NULL is fine). */
void render_free(struct render *r);

/* What to render: one recipient of the campaign, at one time. */
struct render_request {
	const struct store_recipient *recipient; /* from the store; email must not be NULL */
	const struct segment *segment;           /* the recipient's segment (by segment_id) */
	int64_t now;                    /* the clock: Date, Message-ID, days_left */
	const char *delivery_id;        /* X-Cutoff-Delivery, or NULL */
	const char *unsubscribe_mailto; /* List-Unsubscribe mailto (the VERP address), or NULL */
	const char *unsubscribe_url;    /* overrides the HMAC-token URL, or NULL */
	const char *kind;               /* the delivery kind: "initial", "reminder" or "final"
					 * (the ledger's); NULL: "initial" for messages, "login"
					 * for render_login. Templates see kind, is_reminder and
					 * is_final_notice */
};

/* What came out; reused across calls (buffers keep their memory). */
struct render_result {
	struct buf part[RENDER_NPARTS]; /* the rendered parts, UTF-8; subject and login on one
					 * line without a final newline */
	bool has_html;                  /* part[RENDER_HTML] was rendered */
	struct buf message;             /* the RFC 5322 message, CRLF (render_message only) */
	char *message_id;               /* its Message-ID without <>, or NULL */
	const char *locale;             /* the template locale used ("fr", "en"); owned by the
					 * templates */
	int64_t days_left;              /* the days_left the templates saw */
};

void render_result_init(struct render_result *res);
void render_result_free(struct render_result *res);

/*
 * Renders the subject, text and (when the template has one) HTML of q's
 * message and composes it with mime_compose: From, Reply-To from the campaign,
 * To the recipient's name and address, Date and Message-ID (under the sender's
 * domain) from q->now, Auto-Submitted, List-Unsubscribe (+ Post) when the
 * campaign has list_unsubscribe, X-Cutoff-Campaign / -Recipient / -Delivery.
 * X-Cutoff-Recipient is the user id when it is a plain token (printable ASCII,
 * no space), else the address: either finds the recipient with
 * store_recipient_lookup. A recipient name containing "=?" (which readers would
 * decode as an RFC 2047 word) is left out of To (the body still greets them).
 * Returns 0, or ERR_DATA naming the recipient and the field when a value bound
 * for a header is unsafe (a line break or control character, e.g. an attribute
 * used in the subject) or a template fails at render time; ERR_REFUSED when the
 * recipient has no address (forgotten) or no segment. res is filled on success.
 */
int render_message(struct render *r, const struct render_request *q, struct render_result *res,
		   struct err *e);

/*
 * Renders the subject, text and (when the template has one) HTML of q's message into res,
 * as render_message does, without composing it (no res->message): for dry runs and
 * benchmarks. The header checks are mime_compose's, so a value render_message would
 * refuse may pass here. Errors as render_message otherwise.
 */
int render_parts(struct render *r, const struct render_request *q, struct render_result *res,
		 struct err *e);

/*
 * Renders the login reminder text (login.mustache) of q into res->part[RENDER_LOGIN]
 * (one line, no final newline) and sets res->locale. Errors as render_message.
 */
int render_login(struct render *r, const struct render_request *q, struct render_result *res,
		 struct err *e);

/* ---- helpers, also used by the tests -------------------------------------------------------- */

/* Room for the strings render_format_date and render_format_time write. */
#define RENDER_DATE_SIZE 96

/*
 * Writes the local date of instant t in zone tzid (IANA) in the language of
 * locale (a BCP 47 tag; unknown languages give English): "Wednesday,
 * 15 October 2003". Returns 0, or ERR_DATA for an unknown zone or a date
 * outside years 1-9999 (buf is then empty).
 */
int render_format_date(int64_t t, const char *tzid, const char *locale, char *buf, size_t n,
		       struct err *e);

/* Like render_format_date, for the local time of day: "00:00", "12:00 AM" (en-US). */
int render_format_time(int64_t t, const char *tzid, const char *locale, char *buf, size_t n,
		       struct err *e);

/*
 * Whole local calendar days from now until the cutoff in zone tzid: the local
 * date of the cutoff minus today's local date, 0 once the cutoff has passed
 * (and never negative). DST does not change it: it counts dates, not hours.
 * Returns 0 or ERR_DATA for an unknown zone.
 */
int render_days_left(int64_t now, int64_t cutoff, const char *tzid, int64_t *out, struct err *e);

/* The length of an unsubscribe token, without its NUL. */
#define RENDER_TOKEN_LEN 22

/*
 * The one-click unsubscribe token of recipient_id (the store's id) in a
 * campaign: base64url of the first 128 bits of HMAC-SHA256(secret,
 * "unsubscribe\0" campaign "\0" recipient_id in decimal). token has room for
 * RENDER_TOKEN_LEN + 1 bytes. The URL the messages carry is
 * UNSUBSCRIBE_URL?c=CAMPAIGN&r=RECIPIENT_ID&t=TOKEN ('&' instead of '?' when
 * the campaign's URL already has a query); whoever serves it recomputes the
 * token and compares in constant time. Returns 0, or ERR_SOFTWARE if OpenSSL fails.
 */
int render_unsubscribe_token(const unsigned char *secret, size_t secret_len, const char *campaign,
			     int64_t recipient_id, char *token, struct err *e);

#endif
