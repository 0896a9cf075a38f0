/* mime.c — composes the message cutoff sends, with GMime 3 (RFC 5322, RFC 2045-2047,
 * RFC 2369 List-Unsubscribe, RFC 8058 one-click unsubscribe, RFC 3834 Auto-Submitted). */
/*
 * Why not GMimeMessage/GMimePart: building the message as a tree of GObjects
 * and writing it through GMime's stream filters cost about 60 us a message
 * (16,000 a second; GMime also opens /dev/urandom for every boundary). Here
 * GMime does everything that needs judgement — address quoting and RFC 2047
 * encoding (InternetAddress API), subject encoding and folding, the date, the
 * choice of Content-Transfer-Encoding (GMimeFilterBest) and the quoted-printable
 * and base64 encoders — while the fixed MIME skeleton (header names, boundary
 * lines, constant Content-Type values) is written straight into the caller's
 * buffer: about 15 us a message. The unit tests parse every shape back with
 * GMime's parser and with Python's strict email policy.
 */
#include "mime.h"

#include <openssl/rand.h>

#include <gmime/gmime.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* RFC 5322 2.1.1: no line may be longer than 998 octets, CRLF excluded. */
#define LINE_MAX_OCTETS 998
#define NAME_MAX_OCTETS 256
#define SUBJECT_MAX_OCTETS 998
#define ADDR_MAX_OCTETS 254   /* RFC 5321 4.5.3.1.3 path limit, minus the brackets */
#define LOCAL_MAX_OCTETS 64   /* RFC 5321 4.5.3.1.1 */
#define DOMAIN_MAX_OCTETS 253
#define LABEL_MAX_OCTETS 63
#define ID_MAX_OCTETS 200
#define MAILBOX_PLAIN_MAX 76 /* a plain mailbox line up to this is GMime's as it is */
#define URI_MAX_OCTETS 900    /* so " <uri>," stays far below 998 on its own line */
#define RANDOM_OCTETS 12      /* 96 bits for the Message-ID and for each boundary */

/* Where a check reports to: the recipient id (once it is known to be safe to print). */
struct check {
	const char *rid;
	struct err *e;
};

/* What spec_check prepares for the build: owned, released by prepared_free. */
struct prepared {
	GDateTime *date;
	InternetAddressList *reply_to; /* the one parsed mailbox, or NULL */
	char *mailto;                  /* "mailto:..." for List-Unsubscribe, or NULL */
};

/* One composition: where it writes, scratch space, its random identifiers. */
struct composer {
	struct buf *out;
	struct buf normalised; /* a body with its line breaks made LF, when it needs it */
	struct buf canonical;  /* the CRLF form of a body, for base64 */
	struct buf encoded;    /* GMime's encoder output */
	GMimeFilter *best;     /* GMimeFilterBest, reset for each part */
	char *message_id;
	char alt_boundary[6 + 2 * RANDOM_OCTETS + 1];
	char mix_boundary[6 + 2 * RANDOM_OCTETS + 1];
};

/* One remembered header line and what it was made from. */
struct cached_line {
	bool set;
	char *key1, *key2; /* the values it encodes (NULL: absent) */
	int64_t key_date;
	struct buf line;   /* the header, CRLF-terminated, folded lines included */
};

/* Subjects a cache remembers: one per segment, language and kind is the usual run. */
#define SUBJECT_SLOTS 32

/* Messages' worth of random octets a cache draws from OpenSSL at once. */
#define RANDOM_POOL_MESSAGES 64

struct mime_cache {
	struct cached_line date, from, reply_to;
	struct cached_line subject[SUBJECT_SLOTS];
	size_t next_subject; /* the slot the next new subject takes */
	/* random octets drawn ahead, used once each from the end; drawn again in a new process */
	unsigned char pool[RANDOM_POOL_MESSAGES * 3 * RANDOM_OCTETS];
	size_t pool_left;
	pid_t pool_pid;
};

/* What the cache already holds for this message: the lines to copy, checks to skip. */
struct cache_hits {
	const struct buf *date, *from, *reply_to, *subject;
};

void mime_init(void)
{
	InternetAddressList *list;

	g_mime_init();
	/*
	 * Create the GObject classes mime_compose uses now, in this thread, so that
	 * threads composing later never race to initialise them (ThreadSanitizer
	 * flags GLib's lazy class initialisation otherwise).
	 */
	list = internet_address_list_parse(NULL, "Warm Up <warm@up.invalid>");
	if (list != NULL)
		g_object_unref(list);
	g_object_unref(g_mime_filter_best_new(GMIME_FILTER_BEST_ENCODING));
}

void mime_shutdown(void)
{
	g_mime_shutdown();
}

static int refuse(const struct check *c, const char *what, const char *problem)
{
	if (c->rid != NULL)
		return err_set(c->e, ERR_DATA,
			       "recipient %s: %s %s; refusing to compose a header from it", c->rid,
			       what, problem);
	return err_set(c->e, ERR_DATA, "%s %s; refusing to compose a header from it", what,
		       problem);
}

static int refuse_body(const struct check *c, const char *what, const char *problem)
{
	if (c->rid != NULL)
		return err_set(c->e, ERR_DATA, "recipient %s: %s %s; refusing to compose the message",
			       c->rid, what, problem);
	return err_set(c->e, ERR_DATA, "%s %s; refusing to compose the message", what, problem);
}

/* Describes the first control character of v (which has one) for an error message. */
static void control_describe(const char *v, char *out, size_t n)
{
	const unsigned char *p = (const unsigned char *)v;

	if (strpbrk(v, "\r\n") != NULL) {
		snprintf(out, n, "contains a line break");
		return;
	}
	for (; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(out, n, "contains a control character (U+%04X)", *p);
			return;
		}
		if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			snprintf(out, n, "contains a control character (U+%04X)", p[1]);
			return;
		}
	}
	snprintf(out, n, "contains a control character");
}

/*
 * The checks every header value gets: valid UTF-8, no control character, at most
 * max octets and, when ew is set, no "=?" that a reader would decode (RFC 2047).
 */
static int chars_check(const struct check *c, const char *what, const char *v, size_t max,
		       bool ew)
{
	size_t len = strlen(v);
	char problem[96];

	if (!str_utf8_valid(v, len))
		return refuse(c, what, "is not valid UTF-8");
	if (str_has_control(v)) {
		control_describe(v, problem, sizeof problem);
		return refuse(c, what, problem);
	}
	if (ew && strstr(v, "=?") != NULL)
		return refuse(c, what,
			      "contains \"=?\", which mail readers would decode as an RFC 2047 "
			      "encoded word");
	if (len > max) {
		snprintf(problem, sizeof problem, "is %zu octets long (at most %zu)", len, max);
		return refuse(c, what, problem);
	}
	return 0;
}

/* A display name or the subject: optional unless required; free text otherwise. */
static int text_check(const struct check *c, const char *what, const char *v, size_t max,
		      bool required)
{
	if (v == NULL || *v == '\0')
		return required ? refuse(c, what, "is missing") : 0;
	return chars_check(c, what, v, max, true);
}

/* An identifier for an X-Cutoff header: visible ASCII, no spaces. */
static int token_check(const struct check *c, const char *what, const char *v)
{
	if (v == NULL)
		return 0;
	if (*v == '\0')
		return refuse(c, what, "is empty");
	if (chars_check(c, what, v, ID_MAX_OCTETS, true) < 0)
		return ERR_DATA;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p >= 0x80)
			return refuse(c, what, "contains non-ASCII characters");
		if (*p == ' ')
			return refuse(c, what, "contains a space");
	}
	return 0;
}

static bool is_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

static bool is_ldh(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-';
}

/* RFC 5322 dot-atom: atext runs separated by single dots. */
static bool dot_atom_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char)s[i]))
			return false;
	return true;
}

/* An RFC 1035 host name of LDH labels (A-labels for IDNs), without a trailing dot. */
static bool domain_valid(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > DOMAIN_MAX_OCTETS)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (label == 0 || label > LABEL_MAX_OCTETS || s[i - 1] == '-' ||
			    s[i - label] == '-')
				return false;
			label = 0;
		} else if (is_ldh((unsigned char)s[i])) {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

/* Finds the first octet of an address that no addr-spec we accept may hold. */
static int addr_chars_check(const struct check *c, const char *what, const char *v)
{
	char problem[96];

	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p >= 0x80)
			return refuse(c, what,
				      "contains non-ASCII characters (write the domain in its "
				      "A-label xn-- form; SMTPUTF8 addresses are not supported)");
		if (*p == ' ')
			return refuse(c, what, "contains a space");
		if (!is_atext(*p) && *p != '.' && *p != '@') {
			snprintf(problem, sizeof problem,
				 "contains '%c', which an e-mail address may not hold", *p);
			return refuse(c, what, problem);
		}
	}
	return 0;
}

/* A bare addr-spec (local@domain) of at most len octets of v. */
static int addr_check_n(const struct check *c, const char *what, const char *v, size_t len)
{
	const char *at = memchr(v, '@', len);

	if (len > ADDR_MAX_OCTETS)
		return refuse(c, what, "is longer than 254 octets");
	if (at == NULL || memchr(at + 1, '@', len - (size_t)(at - v) - 1) != NULL)
		return refuse(c, what, "is not an e-mail address (it needs exactly one @)");
	if ((size_t)(at - v) > LOCAL_MAX_OCTETS || !dot_atom_valid(v, (size_t)(at - v)))
		return refuse(c, what, "has an invalid local part (before the @)");
	if (!domain_valid(at + 1, len - (size_t)(at - v) - 1))
		return refuse(c, what, "has an invalid domain (after the @)");
	return 0;
}

static int addr_check(const struct check *c, const char *what, const char *v)
{
	if (v == NULL || *v == '\0')
		return refuse(c, what, "is missing");
	if (chars_check(c, what, v, ADDR_MAX_OCTETS + 1, false) < 0 ||
	    addr_chars_check(c, what, v) < 0)
		return ERR_DATA;
	return addr_check_n(c, what, v, strlen(v));
}

/* A URI for List-Unsubscribe: visible ASCII that can sit between angle brackets. */
static int uri_chars_check(const struct check *c, const char *what, const char *v)
{
	char problem[96];

	if (chars_check(c, what, v, URI_MAX_OCTETS, false) < 0)
		return ERR_DATA;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p >= 0x80)
			return refuse(c, what, "contains non-ASCII characters (percent-encode them)");
		if (*p == ' ' || *p == '<' || *p == '>' || *p == '"' || *p == '\\') {
			snprintf(problem, sizeof problem,
				 "contains '%c', which must be percent-encoded", *p);
			return refuse(c, what, problem);
		}
	}
	return 0;
}

/* The one-click URL: RFC 8058 3.1 requires HTTPS. */
static int url_check(const struct check *c, const char *v)
{
	const char *what = "the unsubscribe URL";

	if (v == NULL)
		return 0;
	if (uri_chars_check(c, what, v) < 0)
		return ERR_DATA;
	if (strncasecmp(v, "https://", 8) != 0 || v[8] == '\0' || v[8] == '/')
		return refuse(c, what, "is not an https:// URL (RFC 8058 one-click needs HTTPS)");
	return 0;
}

/* "mailto:addr[?query]" or a bare address; *out gets the mailto: URI. */
static int mailto_check(const struct check *c, const char *v, char **out)
{
	const char *what = "the unsubscribe mailto";
	const char *addr, *query;
	struct buf b;

	if (v == NULL)
		return 0;
	if (uri_chars_check(c, what, v) < 0)
		return ERR_DATA;
	if (strncasecmp(v, "mailto:", 7) != 0) {
		if (addr_check(c, what, v) < 0)
			return ERR_DATA;
		buf_init(&b); /* "mailto:" and v: no format string to parse twice */
		buf_puts(&b, "mailto:");
		buf_puts(&b, v);
		*out = buf_steal(&b);
		return 0;
	}
	addr = v + 7;
	query = strchr(addr, '?');
	if (addr_check_n(c, what, addr, query ? (size_t)(query - addr) : strlen(addr)) < 0)
		return ERR_DATA;
	*out = xstrdup(v);
	return 0;
}

/*
 * Whether GMime's IDN step would leave addr (as GMime stored it) as
 * it is, so that it can be set in advance and save a libidn2 call a mailbox, the
 * largest single cost of composing. For an ASCII domain libidn2 at most lowercases
 * it, and GMime keeps the original spelling when the two differ only in case; a
 * label with "--" in its third and fourth places (the xn-- A-labels and the other
 * reserved forms) is left to GMime and libidn2 to judge.
 */
static bool idn_is_identity(const char *addr)
{
	const char *label = strchr(addr, '@');

	/* GMime itself turns xn-- labels it accepts into U-labels when it stores addr. */
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p >= 0x80)
			return false;
	if (label == NULL)
		return false;
	for (label++;; label++) {
		if (strlen(label) >= 4 && label[2] == '-' && label[3] == '-')
			return false;
		if ((label = strchr(label, '.')) == NULL)
			return true;
	}
}

/* Sets m's A-label form to its address when GMime would find it so (see above). */
static void mailbox_idn_preset(InternetAddressMailbox *m)
{
	/* Set before GMime's encoder asks for it (it computes it only when unset). */
	if (m->idn_addr == NULL && idn_is_identity(m->addr))
		m->idn_addr = g_strdup(m->addr);
}

/* Parses "addr" or "Name <addr>" with GMime; exactly one mailbox, re-checked. */
static int reply_to_check(const struct check *c, const char *v, InternetAddressList **out)
{
	const char *what = "the Reply-To address";
	InternetAddressList *list = NULL;
	InternetAddress *ia;
	int rc;

	if (v == NULL)
		return 0;
	if ((rc = chars_check(c, what, v, NAME_MAX_OCTETS + ADDR_MAX_OCTETS, true)) < 0)
		goto out;
	list = internet_address_list_parse(NULL, v);
	if (list == NULL || internet_address_list_length(list) != 1 ||
	    !INTERNET_ADDRESS_IS_MAILBOX(internet_address_list_get_address(list, 0))) {
		rc = refuse(c, what, "is not exactly one address (\"addr\" or \"Name <addr>\")");
		goto out;
	}
	ia = internet_address_list_get_address(list, 0);
	if ((rc = addr_check(c, what, internet_address_mailbox_get_addr(
					      INTERNET_ADDRESS_MAILBOX(ia)))) < 0 ||
	    (rc = text_check(c, what, internet_address_get_name(ia), NAME_MAX_OCTETS, false)) < 0)
		goto out;
	internet_address_set_charset(ia, "utf-8");
	mailbox_idn_preset(INTERNET_ADDRESS_MAILBOX(ia));
	*out = list;
	list = NULL;
out:
	if (list != NULL)
		g_object_unref(list);
	return rc;
}

/* A body: valid UTF-8 (it is declared charset=utf-8). */
static int body_check(const struct check *c, const char *what, const char *v, bool required)
{
	if (v == NULL)
		return required ? refuse_body(c, what, "is missing") : 0;
	if (!str_utf8_valid(v, strlen(v)))
		return refuse_body(c, what, "is not valid UTF-8");
	return 0;
}

static int bodies_check(const struct check *c, const struct mime_message_spec *s)
{
	if (body_check(c, "the text body", s->text, true) < 0 ||
	    body_check(c, "the HTML body", s->html, false) < 0 ||
	    body_check(c, "the calendar attachment", s->ics, false) < 0)
		return ERR_DATA;
	if (s->ics != NULL && strncmp(s->ics, "BEGIN:VCALENDAR", 15) != 0)
		return refuse_body(c, "the calendar attachment",
				   "does not start with BEGIN:VCALENDAR");
	return 0;
}

static int ids_check(const struct check *c, const struct mime_message_spec *s)
{
	const char *d = s->message_id_domain;

	if (token_check(c, "the campaign name", s->campaign) < 0 ||
	    token_check(c, "the delivery id", s->delivery_id) < 0)
		return ERR_DATA;
	if (d == NULL || *d == '\0')
		return refuse(c, "the Message-ID domain", "is missing");
	if (chars_check(c, "the Message-ID domain", d, DOMAIN_MAX_OCTETS, false) < 0)
		return ERR_DATA;
	if (!domain_valid(d, strlen(d)))
		return refuse(c, "the Message-ID domain", "is not a host name (LDH labels)");
	return 0;
}

static void prepared_free(struct prepared *p)
{
	if (p->date != NULL)
		g_date_time_unref(p->date);
	if (p->reply_to != NULL)
		g_object_unref(p->reply_to);
	free(p->mailto);
}

/* The sender's name and address, unless the cache holds their line (checked then). */
static int sender_check(const struct check *c, const struct mime_message_spec *s,
			const struct cache_hits *h)
{
	if (h->from != NULL)
		return 0;
	if (text_check(c, "the sender display name", s->from_name, NAME_MAX_OCTETS, false) < 0 ||
	    addr_check(c, "the sender address", s->from_addr) < 0)
		return ERR_DATA;
	return 0;
}

/*
 * Checks every value of s before anything is built (but those whose header line
 * h holds: they were found valid before); fills p (freed by the caller).
 */
static int spec_check(const struct mime_message_spec *s, const struct cache_hits *h,
		      struct prepared *p, struct err *e)
{
	struct check c = {NULL, e};

	if (token_check(&c, "the recipient id", s->recipient_id) < 0)
		return ERR_DATA;
	c.rid = s->recipient_id;
	if (text_check(&c, "the display name", s->to_name, NAME_MAX_OCTETS, false) < 0 ||
	    addr_check(&c, "the e-mail address", s->to_addr) < 0 || sender_check(&c, s, h) < 0 ||
	    (h->reply_to == NULL && reply_to_check(&c, s->reply_to, &p->reply_to) < 0) ||
	    (h->subject == NULL &&
	     text_check(&c, "the subject", s->subject, SUBJECT_MAX_OCTETS, true) < 0) ||
	    ids_check(&c, s) < 0 || url_check(&c, s->unsubscribe_url) < 0 ||
	    mailto_check(&c, s->unsubscribe_mailto, &p->mailto) < 0 || bodies_check(&c, s) < 0)
		return ERR_DATA;
	if (h->date != NULL)
		return 0;
	p->date = g_date_time_new_from_unix_utc(s->date);
	if (p->date == NULL)
		return refuse(&c, "the date", "is out of range (years 1 to 9999)");
	return 0;
}

/* Writes the n octets at p as 2n lowercase hex digits and a NUL into out. */
static void hex_encode(char *out, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/*
 * "YYYYMMDDhhmmss.[<delivery, 18 digits>.]<hex>@domain", the time that of Date
 * (years 1-9999, which spec_check enforces): the fixed-size head written digit by
 * digit on the stack and the domain appended (a format string cost more than the
 * rest of the Message-ID).
 */
static char *message_id_make(const struct tm *tm, const char *delivery, const char *hex,
			     const char *domain)
{
	char head[80], *p = head;
	struct buf b;

	p = dec_put(p, (uint64_t)tm->tm_year + 1900, 4);
	p = dec_put(p, (uint64_t)tm->tm_mon + 1, 2), p = dec_put(p, (uint64_t)tm->tm_mday, 2);
	p = dec_put(p, (uint64_t)tm->tm_hour, 2), p = dec_put(p, (uint64_t)tm->tm_min, 2);
	p = dec_put(p, (uint64_t)tm->tm_sec, 2);
	*p++ = '.';
	if (delivery != NULL) {
		p = dec_put(p, strtoull(delivery, NULL, 10), 18);
		*p++ = '.';
	}
	buf_init(&b);
	buf_append(&b, head, (size_t)(p - head));
	buf_puts(&b, hex);
	buf_putc(&b, '@');
	buf_puts(&b, domain);
	return buf_steal(&b);
}

/*
 * One message's random octets (3 * RANDOM_OCTETS) from the cache's pool, which is drawn
 * from OpenSSL RAND_bytes RANDOM_POOL_MESSAGES messages at a time: one call per message
 * cost more than the rest of the Message-ID. A process forked from the one that drew
 * the pool draws its own (the same octets in two processes would be the same ids).
 * NULL when OpenSSL fails.
 */
static unsigned char *random_take(struct mime_cache *c)
{
	pid_t pid = getpid();

	if (c->pool_left < 3 * RANDOM_OCTETS || c->pool_pid != pid) {
		if (RAND_bytes(c->pool, (int)sizeof c->pool) != 1) {
			c->pool_left = 0;
			return NULL;
		}
		c->pool_left = sizeof c->pool, c->pool_pid = pid;
	}
	c->pool_left -= 3 * RANDOM_OCTETS;
	return c->pool + c->pool_left;
}

/*
 * 3 * 96 random bits for the message (one RAND_bytes call, or the cache's pool): 96 for
 * the Message-ID
 * ("YYYYMMDDhhmmss.<24 hex>@domain", the time being that of Date) and 96 for
 * each multipart boundary ("=-alt-<24 hex>", "=-mix-<24 hex>": "=-" cannot occur
 * in quoted-printable or base64 text and neither boundary is a prefix of the other).
 */
static int randomness_make(const struct mime_message_spec *s, struct composer *c,
			   struct mime_cache *cache, struct err *e)
{
	unsigned char own[3 * RANDOM_OCTETS], *rnd = own;
	char hex[2 * RANDOM_OCTETS + 1];
	time_t t = (time_t)s->date;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		return err_set(e, ERR_DATA, "the date %lld cannot be converted to UTC",
			       (long long)s->date);
	if (cache != NULL && (rnd = random_take(cache)) == NULL)
		return err_set(e, ERR_SOFTWARE,
			       "OpenSSL RAND_bytes failed; cannot make a unique Message-ID");
	if (cache == NULL && RAND_bytes(own, (int)sizeof own) != 1)
		return err_set(e, ERR_SOFTWARE,
			       "OpenSSL RAND_bytes failed; cannot make a unique Message-ID");
	hex_encode(hex, rnd, RANDOM_OCTETS);
	/* With a numeric delivery id, the ids of one run sort in delivery order: the
	 * ledger's Message-ID index then grows at its end instead of at random pages. */
	if (s->delivery_id != NULL && *s->delivery_id != '\0' &&
	    s->delivery_id[strspn(s->delivery_id, "0123456789")] == '\0' &&
	    strlen(s->delivery_id) <= 18)
		c->message_id = message_id_make(&tm, s->delivery_id, hex, s->message_id_domain);
	else
		c->message_id = message_id_make(&tm, NULL, hex, s->message_id_domain);
	/* "=-alt-" and "=-mix-" (6 octets) and the hex digits written in place, no format. */
	memcpy(c->alt_boundary, "=-alt-", 6);
	hex_encode(c->alt_boundary + 6, rnd + RANDOM_OCTETS, RANDOM_OCTETS);
	memcpy(c->mix_boundary, "=-mix-", 6);
	hex_encode(c->mix_boundary + 6, rnd + 2 * RANDOM_OCTETS, RANDOM_OCTETS);
	return 0;
}

/*
 * Appends the strings up to the NULL that ends the list: the fixed skeleton of
 * a header around its values, without a format string to parse for each line.
 */
static void puts_all(struct buf *out, ...)
{
	const char *s;
	va_list ap;

	va_start(ap, out);
	while ((s = va_arg(ap, const char *)) != NULL)
		buf_puts(out, s);
	va_end(ap);
}

/* Appends p[0..n) to out with every bare LF made CRLF (GMime folds with LF). */
static void append_crlf(struct buf *out, const char *p, size_t n)
{
	const char *end = p + n, *nl;

	buf_grow(out, n + n / 32 + 2);
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		size_t len = (size_t)(nl - p);

		if (len > 0 && nl[-1] == '\r')
			len--;
		buf_append(out, p, len);
		buf_append(out, "\r\n", 2);
		p = nl + 1;
	}
	buf_append(out, p, (size_t)(end - p));
}

static void append_str_crlf(struct buf *out, const char *s)
{
	append_crlf(out, s, strlen(s));
}

/* "Name: " and the list, encoded, quoted and folded by GMime's InternetAddress API. */
static void addresses_append(struct buf *out, const char *header, InternetAddressList *list)
{
	GString *str = g_string_sized_new(128);

	g_string_append(str, header);
	g_string_append(str, ": ");
	internet_address_list_encode(list, NULL, str); /* ends with a newline */
	append_crlf(out, str->str, str->len);
	g_string_free(str, TRUE);
}

/*
 * Whether GMime's encoder would write the mailbox as "Header: name <addr>" (or
 * "Header: addr" without a name) on one line, untouched: a name of ASCII letters and
 * digits in words that single spaces separate (nothing to quote or encode), an address
 * of letters, digits and ".-_+" with an ASCII domain GMime's IDN step leaves as it is
 * (idn_is_identity), and a line short enough that GMime does not fold it (it folds past
 * 78 columns). Half the worked example's names are such; the others go through GMime.
 */
static bool mailbox_plain(const char *header, const char *name, const char *addr,
			  size_t *line_len)
{
	size_t len = strlen(header) + 2;
	const char *p;

	for (p = addr; *p; p++)
		if (!char_ascii_alnum((unsigned char)*p) && strchr(".-_+@", *p) == NULL)
			return false;
	len += (size_t)(p - addr);
	if (name != NULL && *name != '\0') {
		for (p = name; *p; p++)
			if (*p == ' ' ? p == name || p[1] == ' ' || p[1] == '\0'
				      : !char_ascii_alnum((unsigned char)*p))
				return false;
		len += (size_t)(p - name) + 3; /* " <" and ">" */
	}
	*line_len = len;
	return len <= MAILBOX_PLAIN_MAX && idn_is_identity(addr);
}

/* One mailbox; the display name is RFC 2047-encoded in UTF-8 where it needs to be. */
static void mailbox_append(struct buf *out, const char *header, const char *name,
			   const char *addr)
{
	InternetAddressList *list;
	InternetAddress *ia;
	size_t line_len;

	if (mailbox_plain(header, name, addr, &line_len)) {
		buf_grow(out, line_len + 2);
		puts_all(out, header, ": ", NULL);
		if (name != NULL && *name != '\0')
			puts_all(out, name, " <", addr, ">\r\n", NULL);
		else
			puts_all(out, addr, "\r\n", NULL);
		return;
	}
	list = internet_address_list_new();
	ia = internet_address_mailbox_new(name ? name : "", addr);

	mailbox_idn_preset(INTERNET_ADDRESS_MAILBOX(ia));
	/* UTF-8 encoded words, not GMime's default pick of the smallest charset. */
	internet_address_set_charset(ia, "utf-8");
	internet_address_list_add(list, ia);
	g_object_unref(ia);
	addresses_append(out, header, list);
	g_object_unref(list);
}

/* Subject: encoded (RFC 2047, UTF-8) and folded by GMime, as its default header formatter does. */
static void subject_append(struct buf *out, const char *subject)
{
	char *encoded = g_mime_utils_header_encode_text(NULL, subject, "utf-8");
	char *header = g_strconcat("Subject: ", encoded, NULL);
	char *folded = g_mime_utils_unstructured_header_fold(NULL, NULL, header);

	append_str_crlf(out, folded);
	g_free(folded);
	g_free(header);
	g_free(encoded);
}

/* RFC 2369 List-Unsubscribe, one URI per line; RFC 8058 List-Unsubscribe-Post. */
static void unsubscribe_append(struct buf *out, const char *mailto, const char *url)
{
	if (mailto == NULL && url == NULL)
		return;
	buf_puts(out, "List-Unsubscribe:");
	if (mailto != NULL)
		puts_all(out, " <", mailto, url != NULL ? ">,\r\n" : ">\r\n", NULL);
	if (url != NULL)
		puts_all(out, " <", url, ">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
			 NULL);
}

static void token_append(struct buf *out, const char *header, const char *v)
{
	if (v != NULL)
		puts_all(out, header, ": ", v, "\r\n", NULL);
}

/* The Date line: the cached one, or made from p->date. */
static void date_append(struct buf *out, const struct buf *hit, const struct prepared *p)
{
	char *date;

	if (hit != NULL) {
		buf_append(out, hit->data, hit->len);
		return;
	}
	date = g_mime_utils_header_format_date(p->date);
	puts_all(out, "Date: ", date, "\r\n", NULL);
	g_free(date);
}

static void headers_append(struct buf *out, const struct mime_message_spec *s,
			   const struct cache_hits *h, const struct prepared *p,
			   const char *message_id)
{
	date_append(out, h->date, p);
	if (h->from != NULL)
		buf_append(out, h->from->data, h->from->len);
	else
		mailbox_append(out, "From", s->from_name, s->from_addr);
	if (h->reply_to != NULL)
		buf_append(out, h->reply_to->data, h->reply_to->len);
	else if (p->reply_to != NULL)
		addresses_append(out, "Reply-To", p->reply_to);
	if (h->subject != NULL)
		buf_append(out, h->subject->data, h->subject->len);
	else
		subject_append(out, s->subject);
	mailbox_append(out, "To", s->to_name, s->to_addr);
	puts_all(out, "Message-ID: <", message_id, ">\r\nAuto-Submitted: auto-generated\r\n", NULL);
	unsubscribe_append(out, p->mailto, s->unsubscribe_url);
	token_append(out, "X-Cutoff-Campaign", s->campaign);
	token_append(out, "X-Cutoff-Recipient", s->recipient_id);
	token_append(out, "X-Cutoff-Delivery", s->delivery_id);
	buf_puts(out, "MIME-Version: 1.0\r\n");
}

/*
 * The body text with CRLF and lone CR made LF and a final LF: text itself when
 * it already is so (the usual case, no copy), else a normalised copy in tmp.
 */
static const char *body_normalise(const char *text, struct buf *tmp, size_t *len)
{
	const char *p = text, *end, *cr;

	*len = strlen(text);
	end = text + *len;
	if (memchr(text, '\r', *len) == NULL && *len > 0 && text[*len - 1] == '\n')
		return text;
	buf_reset(tmp);
	while ((cr = memchr(p, '\r', (size_t)(end - p))) != NULL) {
		buf_append(tmp, p, (size_t)(cr - p));
		buf_putc(tmp, '\n');
		p = cr + 1 < end && cr[1] == '\n' ? cr + 2 : cr + 1;
	}
	buf_append(tmp, p, (size_t)(end - p));
	if (tmp->len == 0 || tmp->data[tmp->len - 1] != '\n')
		buf_putc(tmp, '\n');
	*len = tmp->len;
	return tmp->data;
}

/*
 * GMime's choice of encoding (best_encoding, below) without running its filter,
 * when it is plain to see: the octets with the high bit set (a body is a C
 * string: no NUL) decide between quoted-printable and base64 at 17%, and an
 * ASCII body with short lines none of which starts with "From " stays 7bit.
 * Near the 17% line, with long lines or a "From " line it returns DEFAULT: the
 * filter decides. Counts the high bits 8 octets at a time.
 */
static GMimeContentEncoding plain_encoding(const char *body, size_t len)
{
	const char *p = body, *end = body + len, *nl;
	size_t high = 0, i = 0;
	uint64_t w;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, body + i, 8);
		/* the 8 high bits moved to the low bit of each octet, summed in the top one */
		high += (size_t)((((w & 0x8080808080808080ULL) >> 7) * 0x0101010101010101ULL) >> 56);
	}
	for (; i < len; i++)
		high += (unsigned char)body[i] >> 7;
	if (high > 0) {
		if (high * 100 + 100 < 17 * len)
			return GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
		if (high * 100 > 17 * len + 100)
			return GMIME_CONTENT_ENCODING_BASE64;
		return GMIME_CONTENT_ENCODING_DEFAULT;
	}
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (nl - p > 990 || (end - p >= 5 && memcmp(p, "From ", 5) == 0))
			return GMIME_CONTENT_ENCODING_DEFAULT;
	}
	return GMIME_CONTENT_ENCODING_7BIT;
}

/*
 * GMime's best Content-Transfer-Encoding under a 7-bit constraint: the
 * GMimeFilterBest statistics that g_mime_part_get_best_content_encoding
 * gathers, over the whole body at once (unless plain_encoding can tell).
 * DEFAULT (nothing to encode) is 7bit.
 */
static GMimeContentEncoding best_encoding(GMimeFilter *best, const char *body, size_t len)
{
	GMimeContentEncoding encoding = plain_encoding(body, len);
	size_t outlen, outprespace;
	char *outbuf;

	if (encoding != GMIME_CONTENT_ENCODING_DEFAULT)
		return encoding;
	g_mime_filter_reset(best);
	g_mime_filter_complete(best, (char *)body, len, 0, &outbuf, &outlen, &outprespace);
	encoding = g_mime_filter_best_encoding(GMIME_FILTER_BEST(best),
					       GMIME_ENCODING_CONSTRAINT_7BIT);
	return encoding == GMIME_CONTENT_ENCODING_DEFAULT ? GMIME_CONTENT_ENCODING_7BIT : encoding;
}

/* Runs GMime's encoder over in[0..len) and appends its output with CRLF line breaks. */
static void encoded_append(struct composer *c, GMimeContentEncoding encoding, const char *in,
			   size_t len)
{
	GMimeEncoding state;
	size_t n;

	g_mime_encoding_init_encode(&state, encoding);
	buf_reset(&c->encoded);
	buf_grow(&c->encoded, g_mime_encoding_outlen(&state, len));
	n = g_mime_encoding_flush(&state, in, len, c->encoded.data);
	append_crlf(c->out, c->encoded.data, n);
}

/*
 * One text part: its headers (extra ones end in CRLF) and its body in the
 * encoding GMime finds best. Base64 encodes the canonical CRLF form (RFC 2046
 * 4.1.1); quoted-printable line breaks stand for CRLF already.
 */
static void text_part_append(struct composer *c, const char *type, const char *extra,
			     const char *text)
{
	size_t len;
	const char *body = body_normalise(text, &c->normalised, &len);
	GMimeContentEncoding encoding = best_encoding(c->best, body, len);

	puts_all(c->out, "Content-Type: ", type, "\r\nContent-Transfer-Encoding: ",
		 g_mime_content_encoding_to_string(encoding), "\r\n", extra, "\r\n", NULL);
	if (encoding == GMIME_CONTENT_ENCODING_7BIT) {
		append_crlf(c->out, body, len);
	} else if (encoding == GMIME_CONTENT_ENCODING_BASE64) {
		buf_reset(&c->canonical);
		append_crlf(&c->canonical, body, len);
		encoded_append(c, encoding, c->canonical.data, c->canonical.len);
	} else {
		encoded_append(c, encoding, body, len);
	}
}

/* Each part's body ends with CRLF; the CRLF before "--" belongs to the delimiter. */
static void multipart_begin(struct buf *out, const char *subtype, const char *boundary)
{
	puts_all(out, "Content-Type: multipart/", subtype, "; boundary=\"", boundary,
		 "\"\r\n\r\n--", boundary, "\r\n", NULL);
}

static void multipart_next(struct buf *out, const char *boundary)
{
	puts_all(out, "\r\n--", boundary, "\r\n", NULL);
}

static void multipart_end(struct buf *out, const char *boundary)
{
	puts_all(out, "\r\n--", boundary, "--\r\n", NULL);
}

/* text/plain, or multipart/alternative with text first, then HTML (RFC 2046 5.1.4). */
static void alternative_append(struct composer *c, const struct mime_message_spec *s)
{
	if (s->html == NULL) {
		text_part_append(c, "text/plain; charset=utf-8", "", s->text);
		return;
	}
	multipart_begin(c->out, "alternative", c->alt_boundary);
	text_part_append(c, "text/plain; charset=utf-8", "", s->text);
	multipart_next(c->out, c->alt_boundary);
	text_part_append(c, "text/html; charset=utf-8", "", s->html);
	multipart_end(c->out, c->alt_boundary);
}

/* The message body, wrapped in multipart/mixed with the calendar when there is one. */
static void body_append(struct composer *c, const struct mime_message_spec *s)
{
	if (s->ics == NULL) {
		alternative_append(c, s);
		return;
	}
	multipart_begin(c->out, "mixed", c->mix_boundary);
	alternative_append(c, s);
	multipart_next(c->out, c->mix_boundary);
	text_part_append(c, "text/calendar; charset=utf-8; method=PUBLISH; name=cutoff.ics",
			 "Content-Disposition: attachment; filename=cutoff.ics\r\n", s->ics);
	multipart_end(c->out, c->mix_boundary);
}

/* Every line ends in CRLF and holds at most 998 octets before it. */
static int lines_check(const struct buf *b, struct err *e)
{
	const char *p = b->data, *end = b->data + b->len, *nl;
	size_t line = 1;

	for (; p < end; p = nl + 1, line++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL || nl == p || nl[-1] != '\r')
			return err_set(e, ERR_SOFTWARE,
				       "composed message line %zu does not end in CRLF (a bug)", line);
		if ((size_t)(nl - p) - 1 > LINE_MAX_OCTETS)
			return err_set(e, ERR_SOFTWARE,
				       "composed message line %zu is %zu octets long, over 998 (a bug)",
				       line, (size_t)(nl - p) - 1);
	}
	return 0;
}

static void composer_init(struct composer *c, struct buf *out)
{
	memset(c, 0, sizeof *c);
	c->out = out;
	buf_init(&c->normalised);
	buf_init(&c->canonical);
	buf_init(&c->encoded);
	c->best = g_mime_filter_best_new(GMIME_FILTER_BEST_ENCODING);
}

static void composer_free(struct composer *c)
{
	buf_free(&c->normalised);
	buf_free(&c->canonical);
	buf_free(&c->encoded);
	g_object_unref(c->best);
	free(c->message_id);
}

struct mime_cache *mime_cache_new(void)
{
	struct mime_cache *c = xcalloc(1, sizeof *c);

	buf_init(&c->date.line), buf_init(&c->from.line), buf_init(&c->reply_to.line);
	for (size_t i = 0; i < SUBJECT_SLOTS; i++)
		buf_init(&c->subject[i].line);
	return c;
}

static void cached_line_clear(struct cached_line *l)
{
	free(l->key1), free(l->key2);
	l->key1 = l->key2 = NULL;
	l->set = false;
	buf_reset(&l->line);
}

void mime_cache_free(struct mime_cache *c)
{
	if (c == NULL)
		return;
	cached_line_clear(&c->date), cached_line_clear(&c->from), cached_line_clear(&c->reply_to);
	buf_free(&c->date.line), buf_free(&c->from.line), buf_free(&c->reply_to.line);
	for (size_t i = 0; i < SUBJECT_SLOTS; i++) {
		cached_line_clear(&c->subject[i]);
		buf_free(&c->subject[i].line);
	}
	free(c);
}

static bool same_str(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static const struct buf *cached_hit(const struct cached_line *l, const char *k1, const char *k2,
				    int64_t date)
{
	return l->set && same_str(l->key1, k1) && same_str(l->key2, k2) && l->key_date == date
		       ? &l->line : NULL;
}

/* Looks up the lines s shares with the message that filled c (none when c is NULL). */
static void cache_lookup(const struct mime_cache *c, const struct mime_message_spec *s,
			 struct cache_hits *h)
{
	memset(h, 0, sizeof *h);
	if (c == NULL)
		return;
	h->date = cached_hit(&c->date, NULL, NULL, s->date);
	h->from = cached_hit(&c->from, s->from_name, s->from_addr, 0);
	if (s->reply_to != NULL)
		h->reply_to = cached_hit(&c->reply_to, s->reply_to, NULL, 0);
	for (size_t i = 0; i < SUBJECT_SLOTS && h->subject == NULL && s->subject != NULL; i++)
		h->subject = cached_hit(&c->subject[i], s->subject, NULL, 0);
}

/* Remembers the header line "Name: ..." that starts out's text (it was just written). */
static void cache_store(struct cached_line *l, const struct buf *out, const char *name,
			const char *k1, const char *k2, int64_t date)
{
	const char *p = out->data;
	size_t n = strlen(name);

	while (!(strncmp(p, name, n) == 0 && p[n] == ':'))
		p = strstr(p, "\r\n") + 2;
	cached_line_clear(l);
	l->key1 = k1 ? xstrdup(k1) : NULL, l->key2 = k2 ? xstrdup(k2) : NULL, l->key_date = date;
	/* the line and its folded continuations */
	for (const char *end = strstr(p, "\r\n");; end = strstr(end + 2, "\r\n")) {
		if (end[2] != ' ' && end[2] != '\t') {
			buf_append(&l->line, p, (size_t)(end + 2 - p));
			break;
		}
	}
	l->set = true;
}

/* After a message was composed: remember the lines the cache did not have. */
static void cache_fill(struct mime_cache *c, const struct cache_hits *h,
		       const struct mime_message_spec *s, const struct buf *out)
{
	if (c == NULL)
		return;
	if (h->date == NULL)
		cache_store(&c->date, out, "Date", NULL, NULL, s->date);
	if (h->from == NULL)
		cache_store(&c->from, out, "From", s->from_name, s->from_addr, 0);
	if (h->reply_to == NULL && s->reply_to != NULL)
		cache_store(&c->reply_to, out, "Reply-To", s->reply_to, NULL, 0);
	if (h->subject == NULL) {
		cache_store(&c->subject[c->next_subject], out, "Subject", s->subject, NULL, 0);
		c->next_subject = (c->next_subject + 1) % SUBJECT_SLOTS;
	}
}

int mime_compose_cached(struct mime_cache *cache, const struct mime_message_spec *s,
			struct buf *out, char **message_id, struct err *e)
{
	struct prepared p = {NULL, NULL, NULL};
	struct cache_hits h;
	struct composer c;
	int rc;

	*message_id = NULL;
	buf_reset(out);
	composer_init(&c, out);
	cache_lookup(cache, s, &h);
	if ((rc = spec_check(s, &h, &p, e)) < 0 || (rc = randomness_make(s, &c, cache, e)) < 0)
		goto out;
	headers_append(out, s, &h, &p, c.message_id);
	body_append(&c, s);
	if ((rc = lines_check(out, e)) < 0)
		goto out;
	cache_fill(cache, &h, s, out);
	*message_id = c.message_id;
	c.message_id = NULL;
out:
	if (rc < 0)
		buf_reset(out);
	composer_free(&c);
	prepared_free(&p);
	return rc;
}

int mime_compose(const struct mime_message_spec *s, struct buf *out, char **message_id,
		 struct err *e)
{
	return mime_compose_cached(NULL, s, out, message_id, e);
}

void mime_crlf_to_lf(struct buf *b)
{
	size_t w = 0;

	for (size_t r = 0; r < b->len; r++) {
		if (b->data[r] == '\r' && r + 1 < b->len && b->data[r + 1] == '\n')
			continue;
		b->data[w++] = b->data[r];
	}
	b->len = w;
	if (b->data != NULL)
		b->data[w] = '\0';
}
