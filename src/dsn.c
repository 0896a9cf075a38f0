/* dsn.c — parses one returned message with GMime 3 into a dsn_result: RFC 3464 delivery
 * status notifications, the plain-text bounces of real MTAs (Sendmail, Postfix, Exim,
 * qmail, Exchange, Gmail, Yahoo, ...), RFC 5965 feedback reports, Amazon SES notifications,
 * RFC 3834 auto-replies and mailed unsubscribe requests; reads mbox files (RFC 4155). */
#include "dsn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Bounds that keep the work per message linear and small. */
#define PART_TEXT_MAX (256 * 1024) /* bytes read from one text part */
#define NOTICE_MAX (128 * 1024)    /* bytes of notification text kept */
#define DIAG_MAX 2048              /* bytes of diagnostic kept per recipient */
#define MAX_RECIPIENTS 1000
#define MAX_DEPTH 12
#define LOCAL_MAX 64   /* longest local part looked at (RFC 5321 4.5.3.1.1) */
#define DOMAIN_MAX 255 /* longest domain looked at (RFC 5321 4.5.3.1.2) */

/* Everything gathered from one message before the result is decided. */
struct parse_ctx {
	struct dsn_result *res;
	GMimeMessage *msg;
	struct buf notice;      /* the human-readable notification (text/plain parts) */
	struct buf lower;       /* notice[0..notice_end) lower-cased (same offsets), for phrase
				 * searches */
	struct buf html;        /* a text/html notification, used when there is no text/plain */
	struct buf ds;          /* message/delivery-status content */
	struct buf fb;          /* message/feedback-report content */
	struct buf orig_hdrs;   /* text/rfc822-headers content */
	GMimeMessage *orig;     /* the first message/rfc822 part's message (not referenced) */
	size_t notice_end;      /* where the copy of the original message starts in notice */
	bool has_marker;        /* notice_end is at an "original message follows" line */
	bool bounce_like;       /* From/Subject/headers look like a mailer daemon's */
	bool have_orphan;       /* a delivery-status block without a usable address */
	enum dsn_action orphan_action;
	char orphan_status[16];
	char *orphan_diag;
	size_t cap;             /* allocated recipients */
	char from_buf[256];
	char to_buf[256];
	char reporting_mta[256]; /* Reporting-MTA of the delivery-status, or "" */
	bool *need_whole;        /* see parse_message */
};

static const char *const kind_names[] = {
	[DSN_KIND_OTHER] = "other",         [DSN_KIND_BOUNCE] = "bounce",
	[DSN_KIND_DELAY] = "delay",         [DSN_KIND_AUTOREPLY] = "autoreply",
	[DSN_KIND_COMPLAINT] = "complaint", [DSN_KIND_UNSUBSCRIBE] = "unsubscribe",
};

const char *dsn_kind_name(enum dsn_kind kind)
{
	if ((int)kind < 0 || kind > DSN_KIND_UNSUBSCRIBE)
		return "other";
	return kind_names[kind];
}

void dsn_init(void)
{
	g_mime_init();
}

void dsn_shutdown(void)
{
	g_mime_shutdown();
}

/* ---- small string helpers ---------------------------------------------------------- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_local_char(char c)
{
	return char_ascii_alnum(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~.-", c) != NULL) ||
	       (unsigned char)c >= 0x80;
}

static bool is_domain_char(char c)
{
	return char_ascii_alnum(c) || c == '.' || c == '-' || c == '_';
}

/* Case-insensitive search for needle in hay[0..len). */
static const char *find_ci(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0 || len < n)
		return NULL;
	for (size_t i = 0; i + n <= len; i++)
		if ((hay[i] | 0x20) == (needle[0] | 0x20) && strncasecmp(hay + i, needle, n) == 0)
			return hay + i;
	return NULL;
}

/*
 * Search for a lower-case needle in lower-cased text (the notice's lower copy): the first
 * occurrence, as memmem gives, found from its first byte with memchr, which is several
 * times quicker over a notice than glibc's general memmem for these short needles.
 */
static const char *find_lc(const char *lc, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	const char *p = lc, *end;

	if (lc == NULL || n == 0 || len < n)
		return lc != NULL && n == 0 ? lc : NULL;
	end = lc + (len - n) + 1; /* one past the last place the needle can start */
	while (p < end && (p = memchr(p, needle[0], (size_t)(end - p))) != NULL) {
		if (memcmp(p + 1, needle + 1, n - 1) == 0)
			return p;
		p++;
	}
	return NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
	return hay != NULL && find_ci(hay, strlen(hay), needle) != NULL;
}

/* Trims white space from both ends of s[0..*len); returns the new start. */
static const char *trim(const char *s, size_t *len)
{
	while (*len > 0 && is_space(*s))
		s++, (*len)--;
	while (*len > 0 && is_space(s[*len - 1]))
		(*len)--;
	return s;
}

/*
 * Appends src[0..len) to out with CRLF and lone CR turned into LF and NUL bytes into
 * spaces, keeping out under max bytes.
 */
static void append_text(struct buf *out, const char *src, size_t len, size_t max)
{
	size_t room = out->len < max ? max - out->len : 0;

	if (len > room)
		len = room;
	if (len == 0)
		return;
	if (memchr(src, '\r', len) == NULL && memchr(src, '\0', len) == NULL) {
		buf_append(out, src, len);
		return;
	}
	buf_grow(out, len);
	for (size_t i = 0; i < len; i++) {
		char c = src[i];

		if (c == '\r') {
			if (i + 1 < len && src[i + 1] == '\n')
				continue;
			c = '\n';
		} else if (c == '\0') {
			c = ' ';
		}
		out->data[out->len++] = c;
	}
	out->data[out->len] = '\0';
}

/* ---- addresses --------------------------------------------------------------------- */

/*
 * Finds the addr-spec around the '@' at s[at] within s[0..len): sets *start and *alen.
 * strict also requires a dot in the domain. Returns false if there is none. Looks at most
 * LOCAL_MAX bytes back and DOMAIN_MAX forward (RFC 5321 limits), so scanning a line with
 * many '@' stays linear.
 */
static bool address_around(const char *s, size_t len, size_t at, bool strict, size_t *start,
			   size_t *alen)
{
	size_t a = at, b = at + 1;
	bool dot = false;

	while (a > 0 && at - a < LOCAL_MAX && is_local_char(s[a - 1]))
		a--;
	while (a < at && s[a] == '.')
		a++;
	while (b < len && b - at <= DOMAIN_MAX && is_domain_char(s[b]))
		dot |= s[b++] == '.';
	if (b < len && s[b] == '[' && b == at + 1) {
		while (b < len && s[b] != ']' && !is_space(s[b]))
			b++;
		if (b < len && s[b] == ']')
			b++, dot = true;
	}
	while (b > at + 1 && (s[b - 1] == '.' || s[b - 1] == '-'))
		b--;
	if (a == at || b == at + 1 || (strict && !dot))
		return false;
	*start = a;
	*alen = b - a;
	return true;
}

/* Finds the first address in s[0..len); see address_around. */
static bool find_address(const char *s, size_t len, bool strict, size_t *start, size_t *alen)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '@' && address_around(s, len, i, strict, start, alen))
			return true;
	return false;
}

/* A lower-cased copy of s[0..len). */
static char *lower_dup(const char *s, size_t len)
{
	char *p = xstrndup(s, len);

	return str_ascii_lower(p);
}

/* The first addr-spec in s, lower-cased, into out; "" if none. */
static void address_into(const char *s, char *out, size_t outlen)
{
	size_t a, n;

	out[0] = '\0';
	if (s == NULL || !find_address(s, strlen(s), false, &a, &n) || n >= outlen)
		return;
	memcpy(out, s + a, n);
	out[n] = '\0';
	str_ascii_lower(out);
}

/*
 * The address in a DSN recipient field ("rfc822; <user@example.com>"): the part after the
 * address type, without angle brackets or quotes, lower-cased. NULL if there is none.
 */
static char *dsn_field_address(const char *value)
{
	const char *semi = strchr(value, ';');
	const char *p = semi ? semi + 1 : value;
	char clean[512];
	size_t n = 0, a, alen;

	/* A quoted local part ("a..b"@example.com) is kept without its quotes. */
	for (; *p && n + 1 < sizeof clean; p++)
		if (*p != '"')
			clean[n++] = *p;
	clean[n] = '\0';
	if (!find_address(clean, n, false, &a, &alen))
		return NULL;
	return lower_dup(clean + a, alen);
}

/* An address whose domain looks like a real one (has a dot). */
static bool address_is_routable(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	return at != NULL && at != addr && strchr(at, '.') != NULL;
}

/* ---- header-style field blocks ----------------------------------------------------- */

/* Iterates "Name: value" fields (with folded continuation lines) over a text. */
struct field_iter {
	const char *p;
	const char *end;
};

enum field_event { FIELD_END = 0, FIELD_FIELD, FIELD_BLANK };

/* Returns the end of the line starting at p (the '\n' or end). */
static const char *line_end(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl ? nl : end;
}

/* A header field name: printable, no space or colon, then ':'. Returns its length or 0. */
static size_t field_name_len(const char *p, const char *eol)
{
	const char *q = p;

	while (q < eol && *q != ':' && *q > ' ' && *q < 127)
		q++;
	if (q == p || q >= eol || *q != ':' || q - p > 64)
		return 0;
	return (size_t)(q - p);
}

/*
 * Reads the next field into name and value (value unfolded: continuation lines joined
 * with one space). Returns FIELD_BLANK for a blank line (a block boundary), FIELD_END at
 * the end. Lines that are not fields are skipped.
 */
static enum field_event field_next(struct field_iter *it, struct buf *name, struct buf *value)
{
	while (it->p < it->end) {
		const char *start = it->p;
		const char *eol = line_end(start, it->end);
		size_t len = (size_t)(eol - start), nlen, vlen;
		const char *line = trim(start, &len), *v;

		it->p = eol < it->end ? eol + 1 : eol;
		if (len == 0)
			return FIELD_BLANK;
		/* An indented line here continues nothing we kept: skip it. */
		if (*start == ' ' || *start == '\t' ||
		    (nlen = field_name_len(line, line + len)) == 0)
			continue;
		buf_reset(name);
		buf_reset(value);
		buf_append(name, line, nlen);
		v = line + nlen + 1;
		vlen = len - nlen - 1;
		v = trim(v, &vlen);
		buf_append(value, v, vlen);
		while (it->p < it->end && (*it->p == ' ' || *it->p == '\t')) {
			const char *ceol = line_end(it->p, it->end);
			size_t clen = (size_t)(ceol - it->p);
			const char *c = trim(it->p, &clen);

			if (clen == 0)
				break;
			if (value->len > 0)
				buf_putc(value, ' ');
			buf_append(value, c, clen);
			it->p = ceol < it->end ? ceol + 1 : ceol;
		}
		return FIELD_FIELD;
	}
	return FIELD_END;
}

/* ---- results ----------------------------------------------------------------------- */

static struct dsn_recipient *find_recipient(struct dsn_result *res, const char *address)
{
	for (size_t i = 0; i < res->n_recipients; i++)
		if (strcasecmp(res->recipients[i].address, address) == 0)
			return &res->recipients[i];
	return NULL;
}

/* Adds a recipient (address is taken over), or returns the one with that address. */
static struct dsn_recipient *add_recipient(struct parse_ctx *c, char *address)
{
	struct dsn_result *res = c->res;
	struct dsn_recipient *r = find_recipient(res, address);

	if (r != NULL || res->n_recipients >= MAX_RECIPIENTS) {
		free(address);
		return r;
	}
	if (res->n_recipients == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 4;
		res->recipients = xrealloc(res->recipients, c->cap * sizeof *res->recipients);
	}
	r = &res->recipients[res->n_recipients++];
	memset(r, 0, sizeof *r);
	r->address = address;
	return r;
}

static void recipient_set_diag(struct dsn_recipient *r, const char *text, size_t len)
{
	if (len > DIAG_MAX)
		len = DIAG_MAX;
	free(r->diagnostic);
	r->diagnostic = xstrndup(text, len);
}

void dsn_result_free(struct dsn_result *res)
{
	if (res == NULL)
		return;
	for (size_t i = 0; i < res->n_recipients; i++) {
		free(res->recipients[i].address);
		free(res->recipients[i].diagnostic);
		free(res->recipients[i].remote_mta);
	}
	free(res->recipients);
	for (size_t i = 0; i < res->n_cutoff_headers; i++) {
		free(res->cutoff_headers[i].name);
		free(res->cutoff_headers[i].value);
	}
	free(res->cutoff_headers);
	free(res->original_message_id);
	free(res->envelope_recipient);
	free(res->feedback_type);
	free(res);
}

/* ---- reading the MIME tree --------------------------------------------------------- */

/*
 * Reads stream into b (b reset first) as g_mime_data_wrapper_write_to_stream does: from its
 * start, until it says it is at its end; false if a read fails.
 */
static bool read_stream(GMimeStream *stream, struct buf *b)
{
	gint64 size = g_mime_stream_length(stream);
	ssize_t n;

	buf_reset(b);
	g_mime_stream_reset(stream);
	buf_grow(b, size > 0 ? (size_t)size + 1 : 4096);
	while (!g_mime_stream_eos(stream)) {
		if (b->cap - b->len < 2)
			buf_grow(b, 4096);
		if ((n = g_mime_stream_read(stream, b->data + b->len, b->cap - b->len - 1)) < 0)
			return false;
		b->len += (size_t)n;
	}
	b->data[b->len] = '\0';
	g_mime_stream_reset(stream);
	return true;
}

/* The decoded content of dw into b, the way GMime's data wrapper writes it to a stream
 * (uuencoded parts, which GMime's filter first scans for their "begin" line). */
static bool wrapper_text(GMimeDataWrapper *dw, struct buf *b)
{
	GMimeStream *mem = g_mime_stream_mem_new();
	GByteArray *ba;
	bool ok = g_mime_data_wrapper_write_to_stream(dw, mem) >= 0;

	if (ok) {
		ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		buf_append(b, (const char *)ba->data, ba->len);
	}
	g_object_unref(mem);
	return ok;
}

/*
 * Appends the decoded content of part to out (line endings normalised). The same bytes as
 * g_mime_data_wrapper_write_to_stream gives: read and, for base64 and quoted-printable,
 * decoded with GMime's own decoder, without the memory stream, filter stream and filter
 * objects it makes.
 */
static void part_text(GMimePart *part, struct buf *out, size_t max)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	GMimeContentEncoding enc;
	GMimeStream *stream;
	struct buf raw, dec;
	const char *text;
	size_t len;

	if (dw == NULL || out->len >= max || (stream = g_mime_data_wrapper_get_stream(dw)) == NULL)
		return;
	buf_init(&raw), buf_init(&dec);
	enc = g_mime_data_wrapper_get_encoding(dw);
	if (enc == GMIME_CONTENT_ENCODING_UUENCODE) {
		if (!wrapper_text(dw, &dec))
			goto out;
		text = dec.data ? dec.data : "", len = dec.len;
	} else if (!read_stream(stream, &raw)) {
		goto out;
	} else {
		text = raw.data, len = raw.len;
	}
	if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
		GMimeEncoding state;

		g_mime_encoding_init_decode(&state, enc);
		buf_grow(&dec, g_mime_encoding_outlen(&state, raw.len) + 16);
		dec.len = g_mime_encoding_step(&state, raw.data, raw.len, dec.data);
		dec.len += g_mime_encoding_flush(&state, "", 0, dec.data + dec.len);
		text = dec.data, len = dec.len;
	}
	if (out->len > 0)
		append_text(out, "\n\n", 2, max);
	append_text(out, text, len < PART_TEXT_MAX ? len : PART_TEXT_MAX, max);
out:
	buf_free(&raw), buf_free(&dec); /* stream is the wrapper's (transfer none) */
}

static bool type_is(GMimeContentType *ct, const char *type, const char *subtype)
{
	const char *t = g_mime_content_type_get_media_type(ct);
	const char *s = g_mime_content_type_get_media_subtype(ct);

	return t != NULL && s != NULL && strcasecmp(t, type) == 0 && strcasecmp(s, subtype) == 0;
}

static bool is_attachment(GMimeObject *obj)
{
	const char *d = g_mime_object_get_disposition(obj);

	return d != NULL && strcasecmp(d, "attachment") == 0;
}

static void walk_part(struct parse_ctx *c, GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimePart *part = GMIME_PART(obj);

	if (ct == NULL)
		return;
	if (type_is(ct, "message", "delivery-status") ||
	    type_is(ct, "message", "global-delivery-status"))
		part_text(part, &c->ds, PART_TEXT_MAX);
	else if (type_is(ct, "message", "feedback-report"))
		part_text(part, &c->fb, PART_TEXT_MAX);
	else if (type_is(ct, "text", "rfc822-headers") || type_is(ct, "text", "rfc822-header") ||
		 type_is(ct, "message", "global-headers") || type_is(ct, "message", "rfc822")) {
		if (c->orig_hdrs.len == 0)
			part_text(part, &c->orig_hdrs, PART_TEXT_MAX);
	} else if (type_is(ct, "text", "plain")) {
		if (c->notice.len == 0 || !is_attachment(obj))
			part_text(part, &c->notice, NOTICE_MAX);
	} else if (type_is(ct, "text", "html")) {
		if (c->html.len == 0 && !is_attachment(obj))
			part_text(part, &c->html, NOTICE_MAX);
	}
}

/* Collects the parts of the report; does not descend into returned messages. */
static void walk(struct parse_ctx *c, GMimeObject *obj, int depth)
{
	if (obj == NULL || depth > MAX_DEPTH)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);
		const char *prologue = g_mime_multipart_get_prologue(mp);

		/* A multipart without parts (a broken boundary) keeps its text as prologue. */
		if (n == 0 && depth > 0 && prologue != NULL)
			append_text(&c->notice, prologue, strlen(prologue), NOTICE_MAX);
		for (int i = 0; i < n; i++)
			walk(c, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (c->orig == NULL && m != NULL)
			c->orig = m;
	} else if (GMIME_IS_PART(obj)) {
		walk_part(c, obj);
	}
}

/* True if the tag at p ('<' .. q '>') ends a line of text: <br>, <p>, <div>, <tr>, ... */
static bool html_tag_breaks(const char *p, const char *q)
{
	static const char *const breaks[] = { "br", "p", "/p", "div", "/div", "tr", "/tr",
					      "li", "td", "/td" };

	for (size_t i = 0; i < sizeof breaks / sizeof breaks[0]; i++) {
		size_t n = strlen(breaks[i]);

		if ((size_t)(q - p - 1) >= n && strncasecmp(p + 1, breaks[i], n) == 0 &&
		    (p[1 + n] == '>' || is_space(p[1 + n]) || p[1 + n] == '/'))
			return true;
	}
	return false;
}

/* The common entity at p (before end): its length, and its character in *c; or 0. */
static size_t html_entity(const char *p, const char *end, char *c)
{
	static const struct {
		const char *entity;
		char c;
	} entities[] = { { "&lt;", '<' },    { "&gt;", '>' },   { "&amp;", '&' },
			 { "&nbsp;", ' ' },  { "&quot;", '"' }, { "&#39;", '\'' } };

	for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++) {
		size_t n = strlen(entities[i].entity);

		if ((size_t)(end - p) >= n && strncasecmp(p, entities[i].entity, n) == 0) {
			*c = entities[i].c;
			return n;
		}
	}
	return 0;
}

/*
 * Turns an HTML notification into text: tags dropped, block ends into line breaks, the
 * common entities decoded. Good enough to find addresses and SMTP replies in it.
 */
static void html_to_text(const struct buf *html, struct buf *out)
{
	const char *p = html->data, *end = html->data + html->len;

	while (p < end) {
		char c = *p == '\n' ? ' ' : *p;
		size_t n = 1;

		if (*p == '<') {
			const char *q = memchr(p, '>', (size_t)(end - p));

			if (q == NULL)
				break;
			if (html_tag_breaks(p, q))
				buf_putc(out, '\n');
			p = q + 1;
			continue;
		}
		if (*p == '&' && (n = html_entity(p, end, &c)) == 0)
			n = 1;
		buf_putc(out, c);
		p += n;
	}
}

/* ---- message/delivery-status (RFC 3464) -------------------------------------------- */

/* One per-recipient block as read, before it becomes a dsn_recipient. */
struct ds_block {
	char *final;    /* Final-Recipient address */
	char *original; /* Original-Recipient address */
	char *actual;   /* X-Actual-Recipient address (Sendmail) */
	enum dsn_action action;
	char status[16];
	struct buf diag;
	char *remote_mta;
	bool any;
};

static void ds_block_reset(struct ds_block *b)
{
	free(b->final);
	free(b->original);
	free(b->actual);
	free(b->remote_mta);
	buf_free(&b->diag);
	memset(b, 0, sizeof *b);
}

static enum dsn_action parse_action(const char *v)
{
	static const struct {
		const char *name;
		enum dsn_action action;
	} actions[] = {
		{ "failed", DSN_ACTION_FAILED },   { "failure", DSN_ACTION_FAILED },
		{ "delayed", DSN_ACTION_DELAYED }, { "delivered", DSN_ACTION_DELIVERED },
		{ "relayed", DSN_ACTION_RELAYED }, { "expanded", DSN_ACTION_EXPANDED },
		{ "deliverable", DSN_ACTION_DELIVERED },
	};

	while (is_space(*v))
		v++;
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
		if (strncasecmp(v, actions[i].name, strlen(actions[i].name)) == 0)
			return actions[i].action;
	return DSN_ACTION_NONE;
}

/* Turns a finished block into a recipient; blocks without an address are dropped. */
static void ds_block_commit(struct parse_ctx *c, struct ds_block *b)
{
	char **cands[] = { &b->final, &b->original, &b->actual };
	char *addr = NULL;
	struct dsn_recipient *r;

	for (size_t i = 0; i < 3 && addr == NULL; i++)
		if (address_is_routable(*cands[i]))
			addr = *cands[i], *cands[i] = NULL;
	for (size_t i = 0; i < 3 && addr == NULL; i++)
		if (*cands[i] != NULL)
			addr = *cands[i], *cands[i] = NULL;
	if (addr == NULL && b->any && !c->have_orphan) {
		/* Kept for a recipient found elsewhere (X-Failed-Recipients, the text). */
		c->have_orphan = true;
		c->orphan_action = b->action;
		memcpy(c->orphan_status, b->status, sizeof c->orphan_status);
		if (b->diag.len > 0)
			c->orphan_diag = xstrndup(b->diag.data, b->diag.len);
	}
	if (addr != NULL && (r = add_recipient(c, addr)) != NULL) {
		if (b->action != DSN_ACTION_NONE)
			r->action = b->action;
		if (b->status[0] != '\0')
			memcpy(r->status, b->status, sizeof r->status);
		if (b->diag.len > 0 && r->diagnostic == NULL)
			recipient_set_diag(r, b->diag.data, b->diag.len);
		if (b->remote_mta != NULL && r->remote_mta == NULL)
			r->remote_mta = b->remote_mta, b->remote_mta = NULL;
	}
	ds_block_reset(b);
}

/* The value after "type;" of Diagnostic-Code or Remote-MTA ("smtp; 550 ..."). */
static const char *after_type(const char *v)
{
	const char *semi = strchr(v, ';');

	if (semi != NULL && semi - v < 20) {
		for (const char *p = v; p < semi; p++)
			if (is_space(*p))
				return v;
		v = semi + 1;
	}
	while (is_space(*v))
		v++;
	return v;
}

/* Applies one field to the current block; a repeated recipient field starts a new one. */
static void ds_field(struct parse_ctx *c, struct ds_block *b, const char *name, const char *value)
{
	char **slot = NULL;

	if (strcasecmp(name, "Final-Recipient") == 0)
		slot = &b->final;
	else if (strcasecmp(name, "Original-Recipient") == 0)
		slot = &b->original;
	else if (strcasecmp(name, "X-Actual-Recipient") == 0)
		slot = &b->actual;
	if (slot != NULL) {
		if (*slot != NULL)
			ds_block_commit(c, b);
		*slot = dsn_field_address(value);
		b->any = true;
	} else if (strcasecmp(name, "Action") == 0) {
		if (b->action != DSN_ACTION_NONE && (b->final || b->original))
			ds_block_commit(c, b);
		b->action = parse_action(value);
		b->any = true;
	} else if (strcasecmp(name, "Status") == 0) {
		classify_find_status(value, strlen(value), b->status, sizeof b->status);
	} else if (strcasecmp(name, "Diagnostic-Code") == 0) {
		if (b->diag.len > 0)
			buf_putc(&b->diag, ' ');
		buf_puts(&b->diag, after_type(value));
	} else if (strcasecmp(name, "Remote-MTA") == 0 && b->remote_mta == NULL) {
		b->remote_mta = xstrdup(after_type(value));
	}
}

/* Reads the per-recipient blocks of a message/delivery-status body. */
static void parse_delivery_status(struct parse_ctx *c, const char *text, size_t len)
{
	struct field_iter it = { text, text + len };
	struct buf name, value;
	struct ds_block b;
	enum field_event ev;

	memset(&b, 0, sizeof b);
	buf_init(&name);
	buf_init(&value);
	while ((ev = field_next(&it, &name, &value)) != FIELD_END) {
		if (ev == FIELD_BLANK) {
			if (b.any)
				ds_block_commit(c, &b);
			continue;
		}
		if (strcasecmp(name.data, "Reporting-MTA") == 0 && c->reporting_mta[0] == '\0')
			snprintf(c->reporting_mta, sizeof c->reporting_mta, "%s",
			         after_type(value.data));
		ds_field(c, &b, name.data, value.data);
	}
	ds_block_commit(c, &b);
	buf_free(&name);
	buf_free(&value);
}

/*
 * Some MTAs (Amazon WorkMail, some appliances) print the delivery-status fields inside
 * the text notification. Reads them from the first line that starts a DSN block.
 */
static void parse_inline_delivery_status(struct parse_ctx *c)
{
	static const char *const starts[] = { "\nreporting-mta:", "\nfinal-recipient:",
					      "\noriginal-recipient:", "\naction:" };
	const char *text = c->notice.data, *lc = c->lower.data, *first = NULL;
	size_t len = c->notice_end;

	if (text == NULL || !find_lc(lc, len, "\nstatus:") || !find_lc(lc, len, "-recipient:"))
		return;
	for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
		const char *p = find_lc(lc, len, starts[i]);

		if (p != NULL && (first == NULL || p < first))
			first = p;
	}
	if (first != NULL)
		parse_delivery_status(c, text + (first - lc) + 1, (size_t)(lc + len - first - 1));
}

/* ---- feedback reports (RFC 5965) and provider notifications ------------------------ */

/* Adds every address in a list ("a@x, b@y") as a recipient. */
static void add_address_list(struct parse_ctx *c, const char *list)
{
	size_t len = strlen(list), a, n;

	for (size_t i = 0; i < len; i++) {
		if (list[i] != '@' || !address_around(list, len, i, false, &a, &n))
			continue;
		add_recipient(c, lower_dup(list + a, n));
		i = a + n;
	}
}

/* The original message's To addresses, from the message/rfc822 part or the headers part. */
static void add_original_to(struct parse_ctx *c)
{
	if (c->orig != NULL) {
		const char *to = g_mime_object_get_header(GMIME_OBJECT(c->orig), "To");

		if (to != NULL)
			add_address_list(c, to);
		return;
	}
	if (c->orig_hdrs.len > 0) {
		struct field_iter it = { c->orig_hdrs.data, c->orig_hdrs.data + c->orig_hdrs.len };
		struct buf name, value;
		enum field_event ev;

		buf_init(&name);
		buf_init(&value);
		while ((ev = field_next(&it, &name, &value)) == FIELD_FIELD)
			if (strcasecmp(name.data, "To") == 0)
				add_address_list(c, value.data);
		buf_free(&name);
		buf_free(&value);
	}
}

static void parse_feedback_report(struct parse_ctx *c)
{
	struct field_iter it = { c->fb.data, c->fb.data + c->fb.len };
	struct buf name, value;
	enum field_event ev;

	buf_init(&name);
	buf_init(&value);
	while ((ev = field_next(&it, &name, &value)) != FIELD_END) {
		if (ev != FIELD_FIELD)
			continue;
		if (strcasecmp(name.data, "Feedback-Type") == 0 && c->res->feedback_type == NULL)
			c->res->feedback_type = lower_dup(value.data, value.len);
		else if (strcasecmp(name.data, "Original-Rcpt-To") == 0 ||
			 strcasecmp(name.data, "Removal-Recipient") == 0)
			add_address_list(c, value.data);
	}
	buf_free(&name);
	buf_free(&value);
	if (c->res->n_recipients == 0)
		add_original_to(c);
	c->res->kind = DSN_KIND_COMPLAINT;
}

/* Microsoft's JMRP complaints: the returned message carries the complaining recipient. */
static bool parse_jmrp(struct parse_ctx *c)
{
	const char *rcpt;

	if (c->orig == NULL)
		return false;
	rcpt = g_mime_object_get_header(GMIME_OBJECT(c->orig), "X-HmXmrOriginalRecipient");
	if (rcpt == NULL)
		return false;
	add_address_list(c, rcpt);
	c->res->kind = DSN_KIND_COMPLAINT;
	c->res->feedback_type = xstrdup("abuse");
	return true;
}

static const char *json_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "";
}

/* Original Message-ID and X-Cutoff-* from the "mail.headers" list of an SES notification. */
static void ses_headers(struct parse_ctx *c, json_t *mail)
{
	json_t *headers = json_object_get(mail, "headers"), *h;
	size_t i;

	json_array_foreach(headers, i, h) {
		const char *name = json_str(h, "name"), *value = json_str(h, "value");

		if (strcasecmp(name, "Message-ID") == 0 && c->res->original_message_id == NULL) {
			size_t len = strlen(value);
			const char *v = trim(value, &len);

			if (len > 1 && v[0] == '<' && v[len - 1] == '>')
				v++, len -= 2;
			c->res->original_message_id = xstrndup(v, len);
		} else if (strncasecmp(name, "X-Cutoff-", 9) == 0) {
			c->res->cutoff_headers = xrealloc(c->res->cutoff_headers,
							  (c->res->n_cutoff_headers + 1) *
								  sizeof *c->res->cutoff_headers);
			c->res->cutoff_headers[c->res->n_cutoff_headers].name = xstrdup(name);
			c->res->cutoff_headers[c->res->n_cutoff_headers++].value = xstrdup(value);
		}
	}
}

static void ses_recipients(struct parse_ctx *c, json_t *list, enum dsn_action action,
			   const char *diag_key)
{
	size_t i;
	json_t *e;

	json_array_foreach(list, i, e) {
		const char *addr =
		    json_is_string(e) ? json_string_value(e) : json_str(e, "emailAddress");
		struct dsn_recipient *r;
		size_t a, n;

		if (!find_address(addr, strlen(addr), false, &a, &n))
			continue;
		if ((r = add_recipient(c, lower_dup(addr + a, n))) == NULL)
			continue;
		r->action = action;
		if (json_is_object(e)) {
			const char *st = json_str(e, "status"), *d = json_str(e, diag_key);

			classify_find_status(st, strlen(st), r->status, sizeof r->status);
			if (*d)
				recipient_set_diag(r, d, strlen(d));
		}
	}
}

/* Parses the JSON at p (len bytes, trailing text ignored); folded lines are joined. */
static json_t *ses_load(const char *p, size_t len)
{
	json_t *root = json_loadb(p, len, JSON_DISABLE_EOF_CHECK, NULL);
	struct buf joined;

	if (root != NULL)
		return root;
	/* Lines over 998 bytes come folded ("\n "): join them and try again. */
	buf_init(&joined);
	for (const char *q = p; q < p + len; q++) {
		if (q[0] == '\n' && q + 1 < p + len && q[1] == ' ')
			q++;
		else
			buf_putc(&joined, *q);
	}
	root = json_loadb(joined.data ? joined.data : "", joined.len, JSON_DISABLE_EOF_CHECK, NULL);
	buf_free(&joined);
	return root;
}

/* Applies one SES notification object; false if it is none. */
static bool ses_apply(struct parse_ctx *c, json_t *msg)
{
	const char *type = json_str(msg, "notificationType");

	if (strcasecmp(type, "Bounce") == 0) {
		json_t *b = json_object_get(msg, "bounce");
		bool transient = strcasecmp(json_str(b, "bounceType"), "Transient") == 0;

		ses_recipients(c, json_object_get(b, "bouncedRecipients"),
		               transient ? DSN_ACTION_DELAYED : DSN_ACTION_FAILED,
		               "diagnosticCode");
	} else if (strcasecmp(type, "Complaint") == 0) {
		json_t *cp = json_object_get(msg, "complaint");
		const char *ft = json_str(cp, "complaintFeedbackType");

		ses_recipients(c, json_object_get(cp, "complainedRecipients"), DSN_ACTION_NONE, "");
		c->res->kind = DSN_KIND_COMPLAINT;
		c->res->feedback_type = xstrdup(*ft ? ft : "abuse");
	} else if (strcasecmp(type, "Delivery") == 0) {
		json_t *d = json_object_get(msg, "delivery");
		const char *resp = json_str(d, "smtpResponse");

		ses_recipients(c, json_object_get(d, "recipients"), DSN_ACTION_DELIVERED, "");
		for (size_t i = 0; i < c->res->n_recipients && *resp; i++)
			recipient_set_diag(&c->res->recipients[i], resp, strlen(resp));
	} else {
		return false;
	}
	ses_headers(c, json_object_get(msg, "mail"));
	return true;
}

/*
 * Amazon SES notifications mailed through SNS: a JSON object with notificationType
 * Bounce, Complaint or Delivery, possibly wrapped in an SNS envelope ("Message"). Returns
 * false if the notice is not one.
 */
static bool parse_ses_json(struct parse_ctx *c)
{
	const char *p = c->notice.data, *wrapped;
	json_t *root, *inner = NULL;
	bool known;

	if (p == NULL)
		return false;
	while (is_space(*p))
		p++;
	if (*p != '{' || !find_ci(p, c->notice.len, "notificationType"))
		return false;
	if ((root = ses_load(p, c->notice.len - (size_t)(p - c->notice.data))) == NULL)
		return false;
	wrapped = json_string_value(json_object_get(root, "Message"));
	if (wrapped != NULL)
		inner = json_loads(wrapped, 0, NULL);
	known = ses_apply(c, inner != NULL ? inner : root);
	json_decref(inner);
	json_decref(root);
	return known;
}

/* ---- plain-text notifications ------------------------------------------------------ */

/* One pass over a lower-cased line for the words every marker phrase holds. */
static bool has_marker_word(const char *lc, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++) {
		const char *p = lc + i;
		size_t left = len - i;

		if ((p[0] == 'c' && memcmp(p, "copy", 4) == 0) ||
		    (p[0] == 'o' && left >= 6 && memcmp(p, "origin", 6) == 0) ||
		    (p[0] == 'h' && left >= 6 && memcmp(p, "header", 6) == 0) ||
		    (p[0] == 'm' && left >= 7 && memcmp(p, "message", 7) == 0))
			return true;
	}
	return false;
}

/* True if the line announces the copy of the original message that follows it. */
static bool is_original_marker(const char *line, const char *lc, size_t len)
{
	static const char *const phrases[] = {
		"below this line is a copy", "below is a copy", "message headers follow",
		"original message follows", "headers of the original message",
		"header of the original message", "copy of the message", "copy of your message",
		"unsent message follows", "undelivered message follows", "original message header",
	};
	static const char *const decorated[] = { "original message", "returned message",
						 "original mail", "message follows",
						 "headers follow" };

	if (len > 100 || memchr(line, '@', len) != NULL)
		return false;
	/* Every phrase below holds "copy", "original", "header" or "message". */
	if (!has_marker_word(lc, len))
		return false;
	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
		if (find_lc(lc, len, phrases[i]))
			return true;
	if (len == 0 || !(line[0] == '-' || line[0] == '=' || line[0] == '*' || line[0] == '_' ||
			  line[0] == '['))
		return false;
	for (size_t i = 0; i < sizeof decorated / sizeof decorated[0]; i++)
		if (find_lc(lc, len, decorated[i]))
			return true;
	return false;
}

/* Sets c->notice_end to the start of the returned copy of the message, if marked. */
/*
 * Sets c->notice_end to the start of the returned copy of the message, if marked, and
 * c->lower to the notice up to there, lower-cased (phrase searches use it).
 */
static void find_notice_end(struct parse_ctx *c)
{
	const char *p = c->notice.data, *end = p + c->notice.len;

	c->notice_end = c->notice.len;
	buf_grow(&c->lower, c->notice.len);
	c->lower.data[0] = '\0';
	while (p != NULL && p < end) {
		const char *eol = line_end(p, end);
		size_t len = (size_t)(eol - p), start = c->lower.len;
		const char *line = trim(p, &len);

		for (const char *q = p; q < eol; q++)
			c->lower.data[c->lower.len++] =
			    (*q >= 'A' && *q <= 'Z') ? (char)(*q | 0x20) : *q;
		c->lower.data[c->lower.len] = '\0';
		if (len > 0 && is_original_marker(line, c->lower.data + start + (line - p), len)) {
			c->notice_end = (size_t)(p - c->notice.data);
			c->has_marker = true;
			c->lower.len = c->notice_end;
			c->lower.data[c->lower.len] = '\0';
			return;
		}
		if (eol < end)
			c->lower.data[c->lower.len++] = '\n';
		c->lower.data[c->lower.len] = '\0';
		p = eol + 1;
	}
}

/* An address that cannot be a failed recipient of this report. */
static bool excluded_address(const struct parse_ctx *c, const char *addr)
{
	return strcasecmp(addr, c->from_buf) == 0 || strncasecmp(addr, "mailer-daemon@", 14) == 0;
}

/* Skips a transcript prefix (">>>", "<<<") and a reply code with its status ("554 5.0.0 "). */
static size_t skip_reply_prefix(const char *line, size_t len, bool *coded)
{
	size_t i = 0, k;

	*coded = false;
	while (i < len && (is_space(line[i]) || line[i] == '>'))
		i++;
	if (i + 3 < len && line[i] == '<' && line[i + 1] == '<' && line[i + 2] == '<')
		i += 3;
	while (i < len && is_space(line[i]))
		i++;
	if (i + 4 <= len && (line[i] == '4' || line[i] == '5') && line[i + 1] >= '0' &&
	    line[i + 1] <= '9' && line[i + 2] >= '0' && line[i + 2] <= '9' &&
	    (line[i + 3] == ' ' || line[i + 3] == '-')) {
		*coded = true;
		i += 4;
		for (k = i; k < len && (char_ascii_alnum(line[k]) || line[k] == '.'); k++)
			;
		if (k < len && line[k] == ' ' && k > i && line[i] >= '2' && line[i] <= '5' &&
		    line[i + 1] == '.')
			i = k + 1;
	}
	return i;
}

/*
 * A line that names a failed recipient at its start: "<user@example.com>:",
 * "user@example.com", "user@example.com: 550 ...", "<user@example.com>... User unknown",
 * "554 <user@example.com>... Host unknown" (then *coded: the line is the whole reply).
 * Sets the address bounds and where the rest of the line begins.
 */
static bool recipient_at_start(const char *line, size_t len, size_t *a, size_t *n, size_t *rest,
			       bool *coded)
{
	size_t i = skip_reply_prefix(line, len, coded), j, k;

	if (i < len && (line[i] == '<' || line[i] == '"'))
		i++;
	for (j = i; j < len && is_local_char(line[j]); j++)
		;
	if (j == i || j >= len || line[j] != '@' || !address_around(line, len, j, true, a, n) ||
	    *a != i)
		return false;
	k = *a + *n;
	while (k < len && (line[k] == '>' || line[k] == '"'))
		k++;
	if (k < len && !(line[k] == ':' || line[k] == ' ' || line[k] == '\t' || line[k] == ',' ||
			 line[k] == '.' || line[k] == ';' || line[k] == '('))
		return false;
	*rest = k;
	return true;
}

/* A line that names a failed recipient after a phrase: "delivering your mail to <x>". */
static bool recipient_after_phrase(const char *line, const char *lc, size_t len, size_t *a,
				   size_t *n, size_t *rest)
{
	static const char *const phrases[] = {
		"delivering your mail to", "your message to", "your mail to", "delivery to",
		"could not be delivered to", "was not delivered to", "could not deliver to",
		"failed to deliver to", "undeliverable to", "addressed to", "message to",
		"failed recipient:", "recipient address:", "recipient:",
	};
	bool coded;

	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
		const char *p = find_lc(lc, len, phrases[i]);
		size_t k;

		if (p == NULL)
			continue;
		k = (size_t)(p - lc) + strlen(phrases[i]);
		while (k < len && (line[k] == ' ' || line[k] == ':' || line[k] == '\t'))
			k++;
		if (k < len && (line[k] == '<' || line[k] == '"'))
			k++;
		if (recipient_at_start(line + k, len - k, a, n, rest, &coded) && !coded) {
			*a += k;
			*rest += k;
			return true;
		}
	}
	return false;
}

static bool has_alnum(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (char_ascii_alnum(s[i]))
			return true;
	return false;
}

/* The diagnostic block being gathered for one recipient of a text notice. */
struct text_block {
	struct dsn_recipient *r;
	struct buf diag;
	bool open;
};

static void text_block_flush(struct text_block *tb)
{
	size_t len = tb->diag.len;
	const char *d = trim(tb->diag.data ? tb->diag.data : "", &len);

	if (tb->r != NULL && tb->r->stage == SMTP_STAGE_UNKNOWN)
		tb->r->stage = classify_find_stage(d, len);
	if (tb->r != NULL && tb->r->diagnostic == NULL && has_alnum(d, len))
		recipient_set_diag(tb->r, d, len);
	tb->r = NULL;
	tb->open = false;
	buf_reset(&tb->diag);
}

/* Adds one notice line to the open block: a blank line ends a block that has words. */
static void text_block_line(struct text_block *tb, const char *line, size_t len)
{
	size_t tlen = len;
	const char *t = trim(line, &tlen);

	if (!tb->open)
		return;
	if (tlen == 0) {
		/* A block ends at a blank line once it has words, unless it ends with a label
		 * ("because:", "Remote host said:") whose text follows. */
		bool label = tb->diag.len >= 2 && tb->diag.data[tb->diag.len - 2] == ':';

		if (!label && has_alnum(tb->diag.data ? tb->diag.data : "", tb->diag.len))
			text_block_flush(tb);
		return;
	}
	if (tb->diag.len < DIAG_MAX) {
		buf_append(&tb->diag, t, tlen);
		buf_putc(&tb->diag, '\n');
	}
}

/*
 * True if the line ends with "sent by" (Exim: "A message sent by" + the sender); a line
 * after ">>> MAIL From:<...>" also answers about the sender.
 */
static bool names_sender_next(const char *line, size_t len)
{
	const char *t = trim(line, &len);

	while (len > 0 && t[len - 1] == ':')
		len--;
	return len >= 7 && strncasecmp(t + len - 7, "sent by", 7) == 0;
}

/*
 * A recipient line was found: starts that recipient's block, unless the line repeats the
 * open block's recipient (then it is part of its reply) or names no recipient. Takes addr
 * over. With add, a new recipient is added; otherwise only a known one gets the block.
 */
static bool text_block_start(struct parse_ctx *c, struct text_block *tb, char *addr, bool add,
			     bool after_rcpt)
{
	if ((tb->open && strcmp(tb->r->address, addr) == 0) || excluded_address(c, addr)) {
		free(addr);
		return false;
	}
	text_block_flush(tb);
	if (add) {
		tb->r = add_recipient(c, addr);
	} else {
		tb->r = find_recipient(c->res, addr);
		free(addr);
	}
	tb->open = tb->r != NULL;
	/* ">>> RCPT To:<x>" then "<<< 550 <x>... User unknown". */
	if (tb->open && after_rcpt && tb->r->stage == SMTP_STAGE_UNKNOWN)
		tb->r->stage = SMTP_STAGE_RCPT;
	return true;
}

/*
 * Scans the notice for recipient lines and the text that follows each of them (its
 * diagnostic). With add, new recipients are added; otherwise only known ones get text.
 */
static void scan_notice(struct parse_ctx *c, bool add)
{
	const char *p = c->notice.data, *end = p + c->notice_end;
	struct text_block tb = { NULL, { NULL, 0, 0 }, false };
	const char *prev = NULL, *prev_lc = NULL; /* the last line with words */
	size_t prev_len = 0;

	while (p != NULL && p < end) {
		const char *eol = line_end(p, end);
		const char *lc = c->lower.data + (p - c->notice.data);
		size_t len = (size_t)(eol - p), a, n, rest;
		bool coded = false, at = memchr(p, '@', len) != NULL, sender = false;

		/* "A message sent by" or ">>> MAIL From:" announce the sender, not a recipient. */
		if (at && prev != NULL)
			sender = names_sender_next(prev, prev_len) ||
				 find_lc(prev_lc, prev_len, "mail from") != NULL;
		if (at && !sender &&
		    (recipient_at_start(p, len, &a, &n, &rest, &coded) ||
		     recipient_after_phrase(p, lc, len, &a, &n, &rest)) &&
		    text_block_start(c, &tb, lower_dup(p + a, n), add,
		                     prev != NULL &&
		                         find_lc(prev_lc, prev_len, "rcpt to") != NULL)) {
			/* A transcript summary line is the whole reply for that address. */
			text_block_line(&tb, coded ? p : p + rest, coded ? len : len - rest);
			if (coded)
				text_block_flush(&tb);
		} else {
			text_block_line(&tb, p, len);
		}
		if (has_alnum(p, len))
			prev = p, prev_lc = lc, prev_len = len;
		p = eol + 1;
	}
	text_block_flush(&tb);
	buf_free(&tb.diag);
}

/* A notice line that reports a failure (so an address on it is a failed recipient). */
static bool line_reports_failure(const char *line, const char *lc, size_t len)
{
	static const char *const words[] = {
		"fail", "error", "unknown", "reject", "invalid", "could not", "couldn't",
		"unable", "undeliver", "not deliver", "no such", "not exist", "denied", "refused",
		"permanent", "rcpt to", "not found", "full", "expired", "timed out", "problem",
	};

	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (find_lc(lc, len, words[i]))
			return true;
	return classify_find_reply_code(line, len) >= 400;
}

/* Addresses that name the sender or a mail system rather than a recipient. */
static bool system_address(const struct parse_ctx *c, const char *addr)
{
	static const char *const locals[] = { "postmaster@", "mailer-daemon@", "abuse@",
					      "no-reply@", "noreply@", "root@" };

	if (excluded_address(c, addr) || strcasecmp(addr, c->to_buf) == 0)
		return true;
	for (size_t i = 0; i < sizeof locals / sizeof locals[0]; i++)
		if (strncasecmp(addr, locals[i], strlen(locals[i])) == 0)
			return true;
	return false;
}

/*
 * The last resort for notices of no known layout: every address on a line that reports a
 * failure, except the sender's and the mail systems'. Each gets that line and the ones
 * after it, up to a blank line, as its diagnostic.
 */
static void scan_notice_loose(struct parse_ctx *c)
{
	const char *p = c->notice.data, *end = p + c->notice_end;
	struct text_block tb = { NULL, { NULL, 0, 0 }, false };

	while (p != NULL && p < end) {
		const char *eol = line_end(p, end);
		size_t len = (size_t)(eol - p), a, n;
		bool found = false, failure = len > 0 && memchr(p, '@', len) != NULL &&
			line_reports_failure(p, c->lower.data + (p - c->notice.data), len);

		for (size_t i = 0; failure && i < len; i++) {
			char *addr;

			if (p[i] != '@' || !address_around(p, len, i, true, &a, &n))
				continue;
			addr = lower_dup(p + a, n);
			i = a + n;
			if (system_address(c, addr)) {
				free(addr);
				continue;
			}
			if (!found)
				text_block_flush(&tb);
			found = true;
			tb.r = add_recipient(c, addr);
			tb.open = tb.r != NULL;
		}
		text_block_line(&tb, p, len);
		p = eol + 1;
	}
	text_block_flush(&tb);
	buf_free(&tb.diag);
}

/* Keeps only the recipients that X-Failed-Recipients also names, if any of them does. */
static void keep_listed(struct parse_ctx *c, const char *xfr)
{
	struct dsn_result *res = c->res;
	size_t kept = 0, listed = 0;

	for (size_t i = 0; i < res->n_recipients; i++)
		listed += contains_ci(xfr, res->recipients[i].address);
	if (listed == 0)
		return;
	for (size_t i = 0; i < res->n_recipients; i++) {
		struct dsn_recipient *r = &res->recipients[i];

		if (contains_ci(xfr, r->address)) {
			res->recipients[kept++] = *r;
			continue;
		}
		free(r->address);
		free(r->diagnostic);
		free(r->remote_mta);
	}
	res->n_recipients = kept;
}

/* ---- what kind of message ---------------------------------------------------------- */

static const char *header(GMimeMessage *msg, const char *name)
{
	return g_mime_object_get_header(GMIME_OBJECT(msg), name);
}

static bool contains_any(const char *s, const char *const *needles, size_t n)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (contains_ci(s, needles[i]))
			return true;
	return false;
}

/* Whether the message comes from a mailer daemon reporting on a delivery. */
static bool looks_like_bounce(GMimeMessage *msg)
{
	static const char *const senders[] = {
		"mailer-daemon", "mailer daemon", "postmaster", "mail delivery",
		"delivery subsystem", "mail administrator", "mail system", "mailerdaemon", "mmdf",
	};
	static const char *const subjects[] = {
		"undeliver", "undelivered", "delivery fail", "delivery status notification",
		"failure notice", "returned mail", "returning message", "delivery problem",
		"not be delivered", "delivery failure", "mail delivery", "non-deliver",
		"nondeliver", "non remis", "unzustellbar", "delivery report", "failed delivery",
		"delivery notification", "mail system error", "could not send", "delivery error",
		"error sending", "message failure", "delivery has failed", "bounce",
	};
	const char *ct = header(msg, "Content-Type");

	if (header(msg, "X-Failed-Recipients") != NULL)
		return true;
	if (ct != NULL && contains_ci(ct, "report-type") && contains_ci(ct, "delivery-status"))
		return true;
	return contains_any(header(msg, "From"), senders, sizeof senders / sizeof senders[0]) ||
	       contains_any(header(msg, "Subject"), subjects, sizeof subjects / sizeof subjects[0]);
}

/* RFC 3834 and the usual vacation responders' marks. */
static bool looks_like_autoreply(GMimeMessage *msg)
{
	static const char *const subjects[] = {
		"auto:", "auto reply", "autoreply", "auto-reply", "automatic reply",
		"automatische antwort", "out of office", "out of the office", "vacation",
		"away from", "abwesen", "réponse automatique", "reponse automatique",
		"respuesta automática", "risposta automatica", "automatisch antwoord", "autosvar",
		"自動応答", "auto response", "autoresponse",
	};
	const char *as = header(msg, "Auto-Submitted");
	const char *prec = header(msg, "Precedence");
	const char *apple = header(msg, "X-Apple-Action");

	if (as != NULL && contains_ci(as, "auto-replied"))
		return true;
	if (header(msg, "X-Autoreply") != NULL || header(msg, "X-Autorespond") != NULL ||
	    header(msg, "X-Autoresponder") != NULL || (apple && contains_ci(apple, "vacation")) ||
	    (prec != NULL && contains_ci(prec, "auto_reply")))
		return true;
	return contains_any(header(msg, "Subject"), subjects, sizeof subjects / sizeof subjects[0]);
}

/* A mailed unsubscribe request (RFC 2369 List-Unsubscribe: <mailto:...?subject=unsubscribe>). */
static bool looks_like_unsubscribe(GMimeMessage *msg)
{
	const char *s = header(msg, "Subject");

	if (s == NULL)
		return false;
	while (is_space(*s))
		s++;
	return strncasecmp(s, "unsubscribe", 11) == 0 || strncasecmp(s, "remove", 6) == 0;
}

/* The sender of an auto-reply or unsubscribe request is the recipient it is about. */
static void add_sender(struct parse_ctx *c, enum bounce_reason reason)
{
	struct dsn_recipient *r;

	if (c->from_buf[0] == '\0')
		return;
	r = add_recipient(c, xstrdup(c->from_buf));
	if (r != NULL)
		r->reason = reason;
}

/* Text notices warning that delivery is still being retried. */
static bool notice_says_delayed(const struct parse_ctx *c, GMimeMessage *msg)
{
	static const char *const phrases[] = {
		"has not yet been delivered", "not yet been delivered", "will continue trying",
		"will keep trying", "still being retried", "will be retried",
		"warning message only", "not need to resend", "delivery has been delayed",
		"is delayed",
	};
	const char *subject = header(msg, "Subject");

	if (subject != NULL && (contains_ci(subject, "delay") || contains_ci(subject, "warning")))
		return true;
	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
		if (c->lower.data != NULL && strstr(c->lower.data, phrases[i]) != NULL)
			return true;
	return false;
}

/* ---- finishing the recipients ------------------------------------------------------ */

/*
 * Chooses between the Status field and the code in the remote server's reply: the more
 * specific one, or the one whose class agrees with the reply code. Returns a pointer to
 * one of the two.
 */
static const char *prefer_status(const char *field, const char *inmsg, int reply)
{
	bool field_zero = strstr(field, ".0") != NULL, msg_zero = strstr(inmsg, ".0") != NULL;

	if (field[0] == '\0')
		return inmsg;
	if (inmsg[0] == '\0' || strcmp(field, inmsg) == 0)
		return field;
	if (reply > 0 && field[0] != inmsg[0]) {
		if (field[0] - '0' == reply / 100)
			return field;
		if (inmsg[0] - '0' == reply / 100)
			return inmsg;
	}
	if (strcmp(field + 1, ".0.0") == 0)
		return strcmp(inmsg + 1, ".0.0") == 0 ? field : inmsg;
	if (field_zero && !msg_zero)
		return inmsg;
	if (strcmp(inmsg + 1, ".0.0") == 0)
		return field;
	/* Codes that say little on their own: the reply says more. */
	if (strcmp(field, "4.4.7") == 0 || strcmp(field, "4.7.0") == 0 ||
	    strncmp(field, "5.3.", 4) == 0 || strncmp(field + 1, ".5.", 3) == 0)
		return inmsg;
	if (strcmp(field, "5.1.1") == 0)
		return msg_zero || strncmp(inmsg, "5.5.", 4) == 0 ? field : inmsg;
	if (strcmp(field, "5.1.3") == 0 && strncmp(inmsg, "5.7.", 4) == 0)
		return inmsg;
	return field;
}

/* "example.com mx.example.com reporting.example.net mailer.example.org": for provider rules. */
static void recipient_hosts(const struct parse_ctx *c, const struct dsn_recipient *r,
			    char *out, size_t outlen)
{
	const char *at = strrchr(r->address, '@');
	const char *from_at = strrchr(c->from_buf, '@');

	snprintf(out, outlen, "%s %s %s %s", at ? at + 1 : "", r->remote_mta ? r->remote_mta : "",
		 c->reporting_mta, from_at ? from_at + 1 : "");
}

/*
 * The diagnostic a recipient is judged on: its own, or for the only recipient of a notice
 * whose block holds no reply code or status, the whole notice.
 */
static void recipient_diag(struct parse_ctx *c, struct dsn_recipient *r)
{
	const char *diag = r->diagnostic;
	size_t dlen = diag ? strlen(diag) : 0;
	char found[16];

	if (c->res->n_recipients == 1 && c->notice_end > 0 &&
	    (diag == NULL || (classify_find_reply_code(diag, dlen) < 400 &&
			      !classify_find_status(diag, dlen, found, sizeof found))))
		recipient_set_diag(r, c->notice.data, c->notice_end);
}

/* Reply code and status from the diagnostic; the status kept is the more telling one. */
static void recipient_codes(struct dsn_recipient *r)
{
	size_t dlen = r->diagnostic ? strlen(r->diagnostic) : 0;
	char found[16];

	if (dlen == 0)
		return;
	r->reply_code = classify_find_reply_code(r->diagnostic, dlen);
	if (classify_find_status(r->diagnostic, dlen, found, sizeof found)) {
		const char *best = prefer_status(r->status, found, r->reply_code);

		if (best != r->status)
			snprintf(r->status, sizeof r->status, "%s", best);
	}
}

/* Completes a recipient: its diagnostic, codes, stage, reason and class. */
static void finish_recipient(struct parse_ctx *c, struct dsn_recipient *r)
{
	char hosts[1024];
	struct classify_input in;
	struct classification out;

	recipient_diag(c, r);
	recipient_codes(r);
	if (r->action == DSN_ACTION_DELIVERED || r->action == DSN_ACTION_RELAYED ||
	    r->action == DSN_ACTION_EXPANDED || r->status[0] == '2') {
		r->reason = REASON_DELIVERED;
		r->class = BOUNCE_CLASS_NONE;
		return;
	}
	if (r->stage == SMTP_STAGE_UNKNOWN && r->diagnostic != NULL)
		r->stage = classify_find_stage(r->diagnostic, strlen(r->diagnostic));
	/* The notice, unless that was the diagnostic just searched (recipient_diag). */
	if (r->stage == SMTP_STAGE_UNKNOWN && c->res->n_recipients == 1 &&
	    !(r->diagnostic != NULL && strlen(r->diagnostic) == c->notice_end &&
	      memcmp(r->diagnostic, c->notice.data, c->notice_end) == 0))
		r->stage = classify_find_stage(c->notice.data, c->notice_end);
	recipient_hosts(c, r, hosts, sizeof hosts);
	in = (struct classify_input){ r->status, r->reply_code, r->diagnostic, r->stage, hosts };
	classify(&in, &out);
	r->reason = out.reason;
	r->class = out.class;
	/* A delay is never the last word on an address. */
	if (r->action == DSN_ACTION_DELAYED && r->class == BOUNCE_CLASS_HARD)
		r->class = BOUNCE_CLASS_SOFT;
}

/* The kind a delivery report has, from its recipients' actions. */
static enum dsn_kind kind_of_report(const struct dsn_result *res)
{
	bool delayed = false, failed = false;

	for (size_t i = 0; i < res->n_recipients; i++) {
		const struct dsn_recipient *r = &res->recipients[i];

		if (r->action == DSN_ACTION_DELAYED)
			delayed = true;
		else if (r->action == DSN_ACTION_FAILED ||
			 (r->action == DSN_ACTION_NONE && r->reason != REASON_DELIVERED))
			failed = true;
	}
	if (failed)
		return DSN_KIND_BOUNCE;
	return delayed ? DSN_KIND_DELAY : DSN_KIND_OTHER;
}

/* ---- the returned original message ------------------------------------------------- */

static void add_cutoff_header(struct dsn_result *res, const char *name, const char *value)
{
	res->cutoff_headers = xrealloc(res->cutoff_headers,
				       (res->n_cutoff_headers + 1) * sizeof *res->cutoff_headers);
	res->cutoff_headers[res->n_cutoff_headers].name = xstrdup(name);
	res->cutoff_headers[res->n_cutoff_headers++].value = xstrdup(value);
}

static void set_message_id(struct dsn_result *res, const char *value)
{
	size_t len = strlen(value);
	const char *v = trim(value, &len);

	if (res->original_message_id != NULL || len == 0)
		return;
	if (len > 1 && v[0] == '<') {
		const char *gt = memchr(v, '>', len);

		v++;
		len = gt ? (size_t)(gt - v) : len - 1;
	}
	if (len > 0)
		res->original_message_id = xstrndup(v, len);
}

/* Message-ID and X-Cutoff-* from the first field block of text[0..len). */
static void original_from_fields(struct dsn_result *res, const char *text, size_t len)
{
	struct field_iter it = { text, text + len };
	struct buf name, value;
	enum field_event ev;
	bool seen = false;

	buf_init(&name);
	buf_init(&value);
	while ((ev = field_next(&it, &name, &value)) != FIELD_END) {
		if (ev == FIELD_BLANK) {
			if (seen)
				break;
			continue;
		}
		seen = true;
		if (strcasecmp(name.data, "Message-ID") == 0)
			set_message_id(res, value.data);
		else if (strncasecmp(name.data, "X-Cutoff-", 9) == 0)
			add_cutoff_header(res, name.data, value.data);
	}
	buf_free(&name);
	buf_free(&value);
}

static void original_from_message(struct dsn_result *res, GMimeMessage *orig)
{
	GMimeHeaderList *list = g_mime_object_get_header_list(GMIME_OBJECT(orig));
	int n = list ? g_mime_header_list_get_count(list) : 0;
	const char *id = g_mime_message_get_message_id(orig);

	if (id != NULL && res->original_message_id == NULL)
		res->original_message_id = xstrdup(id);
	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
		const char *name = g_mime_header_get_name(h), *value;

		/* Only these values are decoded: decoding every header costs charset work. */
		if (name != NULL && strncasecmp(name, "X-Cutoff-", 9) == 0) {
			value = g_mime_header_get_value(h);
			add_cutoff_header(res, name, value ? value : "");
		}
	}
}

/* Finds the returned message's identity wherever the report put it. */
static void collect_original(struct parse_ctx *c)
{
	if (c->res->original_message_id != NULL || c->res->n_cutoff_headers > 0)
		return;
	if (c->orig != NULL) {
		original_from_message(c->res, c->orig);
	} else if (c->orig_hdrs.len > 0) {
		original_from_fields(c->res, c->orig_hdrs.data, c->orig_hdrs.len);
	} else if (c->has_marker) {
		const char *start = c->notice.data + c->notice_end;
		const char *eol = line_end(start, c->notice.data + c->notice.len);

		if (eol < c->notice.data + c->notice.len)
			original_from_fields(c->res, eol + 1,
					     (size_t)(c->notice.data + c->notice.len - eol - 1));
	}
}

static void collect_envelope(struct parse_ctx *c)
{
	static const char *const names[] = { "X-Original-To", "Delivered-To", "To" };
	char addr[256];

	if (c->res->envelope_recipient != NULL)
		return;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		address_into(header(c->msg, names[i]), addr, sizeof addr);
		if (addr[0] != '\0') {
			c->res->envelope_recipient = xstrdup(addr);
			return;
		}
	}
}

/* ---- parsing one message ----------------------------------------------------------- */

static void ctx_init(struct parse_ctx *c, GMimeMessage *msg)
{
	struct buf *bufs[] = {&c->notice, &c->lower, &c->html, &c->ds, &c->fb, &c->orig_hdrs};

	memset(c, 0, sizeof *c);
	c->msg = msg;
	c->res = xcalloc(1, sizeof *c->res);
	/* Never NULL, so that pointer arithmetic on an empty buffer is defined. */
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
		buf_init(bufs[i]);
		buf_append(bufs[i], "", 0);
	}
	address_into(header(msg, "From"), c->from_buf, sizeof c->from_buf);
	address_into(header(msg, "To"), c->to_buf, sizeof c->to_buf);
}

static void ctx_release(struct parse_ctx *c)
{
	free(c->orphan_diag);
	buf_free(&c->notice);
	buf_free(&c->lower);
	buf_free(&c->html);
	buf_free(&c->ds);
	buf_free(&c->fb);
	buf_free(&c->orig_hdrs);
}

/* Recipients of a delivery report: the DSN, else the X-Failed-Recipients, else the text. */
static void find_failed_recipients(struct parse_ctx *c)
{
	const char *xfr = header(c->msg, "X-Failed-Recipients");

	if (c->ds.len > 0)
		parse_delivery_status(c, c->ds.data, c->ds.len);
	if (c->res->n_recipients == 0)
		parse_inline_delivery_status(c);
	if (c->res->n_recipients > 0) {
		scan_notice(c, false);
		return;
	}
	if (c->bounce_like)
		scan_notice(c, true);
	if (xfr != NULL && c->res->n_recipients > 0) {
		keep_listed(c, xfr);
	} else if (xfr != NULL) {
		add_address_list(c, xfr);
		scan_notice(c, false);
	}
	if (c->res->n_recipients == 0 && c->bounce_like)
		scan_notice_loose(c);
	if (c->res->n_recipients == 1 && c->have_orphan) {
		struct dsn_recipient *r = &c->res->recipients[0];

		if (r->action == DSN_ACTION_NONE)
			r->action = c->orphan_action;
		if (r->status[0] == '\0')
			memcpy(r->status, c->orphan_status, sizeof r->status);
		if (c->orphan_diag != NULL && (r->diagnostic == NULL || r->status[0] == '\0'))
			recipient_set_diag(r, c->orphan_diag, strlen(c->orphan_diag));
	}
	if (c->res->n_recipients > 0 && notice_says_delayed(c, c->msg))
		for (size_t i = 0; i < c->res->n_recipients; i++)
			if (c->res->recipients[i].action == DSN_ACTION_NONE)
				c->res->recipients[i].action = DSN_ACTION_DELAYED;
}

static struct dsn_result *parse_message(GMimeMessage *msg, int depth, bool *need_whole);

/*
 * A report that forwards another report (a bounce of a bounce, or a notice wrapping the
 * MTA's DSN): the inner one's recipients, if it has any. Replaces c->res.
 */
static bool adopt_nested_report(struct parse_ctx *c, int depth)
{
	struct dsn_result *inner;

	if (c->orig == NULL || depth >= 3)
		return false;
	inner = parse_message(c->orig, depth + 1, NULL);
	if (inner->n_recipients == 0 ||
	    (inner->kind != DSN_KIND_BOUNCE && inner->kind != DSN_KIND_DELAY)) {
		dsn_result_free(inner);
		return false;
	}
	dsn_result_free(c->res);
	c->res = inner;
	free(inner->envelope_recipient);
	inner->envelope_recipient = NULL; /* the outer message's, collected later */
	return true;
}

/* Decides what the message is and fills c->res; false if c->res came whole from inside. */
static bool decide_kind(struct parse_ctx *c, int depth)
{
	if (c->fb.len > 0) {
		parse_feedback_report(c);
	} else if (parse_jmrp(c)) {
		/* kind and recipient set */
	} else if (!parse_ses_json(c)) {
		find_failed_recipients(c);
		if (c->res->n_recipients == 0 && c->bounce_like && c->need_whole != NULL &&
		    c->orig != NULL && depth < 3) {
			*c->need_whole = true; /* the returned message's body is wanted */
			return false;
		}
		if (c->res->n_recipients == 0 && c->bounce_like && adopt_nested_report(c, depth))
			return false;
		/* A report with the returned message but no readable recipient: its To. */
		if (c->res->n_recipients == 0 && c->bounce_like &&
		    (c->ds.len > 0 || c->orig != NULL || c->orig_hdrs.len > 0))
			add_original_to(c);
	}
	if (c->res->kind == DSN_KIND_COMPLAINT) {
		for (size_t i = 0; i < c->res->n_recipients; i++)
			c->res->recipients[i].reason = REASON_FEEDBACK;
		return true;
	}
	if (c->res->n_recipients > 0) {
		for (size_t i = 0; i < c->res->n_recipients; i++)
			finish_recipient(c, &c->res->recipients[i]);
		c->res->kind = kind_of_report(c->res);
	} else if (!c->bounce_like && looks_like_autoreply(c->msg)) {
		c->res->kind = DSN_KIND_AUTOREPLY;
		add_sender(c, REASON_VACATION);
	} else if (!c->bounce_like && looks_like_unsubscribe(c->msg)) {
		c->res->kind = DSN_KIND_UNSUBSCRIBE;
		add_sender(c, REASON_FEEDBACK);
	}
	return true;
}

/* A notification whose words say delivery failed, whatever its headers say. */
static bool notice_reports_failure(const struct parse_ctx *c)
{
	static const char *const phrases[] = {
		"could not be delivered", "couldn't be delivered", "undeliverable",
		"delivery failed", "delivery has failed", "not be delivered", "permanent error",
		"permanent fatal", "invalid user address", "unable to deliver",
		"failed permanently", "returned to sender", "delivery to the following",
		"following recipient", "following address",
	};

	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
		if (c->lower.data != NULL && strstr(c->lower.data, phrases[i]) != NULL)
			return true;
	return false;
}

/* The text before the first part of a multipart whose parts are missing or unreadable. */
static void notice_from_prologue(struct parse_ctx *c, GMimeObject *top)
{
	const char *prologue;

	if (top == NULL || !GMIME_IS_MULTIPART(top))
		return;
	prologue = g_mime_multipart_get_prologue(GMIME_MULTIPART(top));
	if (prologue != NULL)
		append_text(&c->notice, prologue, strlen(prologue), NOTICE_MAX);
}

/*
 * Reads msg into a result. need_whole (at depth 0, when the returned messages' bodies were
 * left out of msg) is set if the result needs them: the report is then to be parsed again
 * whole, and this result is only fit to be freed.
 */
static struct dsn_result *parse_message(GMimeMessage *msg, int depth, bool *need_whole)
{
	struct parse_ctx c;
	struct dsn_result *res;
	GMimeObject *top = g_mime_message_get_mime_part(msg);

	ctx_init(&c, msg);
	c.need_whole = need_whole;
	walk(&c, top, 0);
	if (c.notice.len == 0 && c.html.len > 0)
		html_to_text(&c.html, &c.notice);
	if (c.notice.len == 0 && c.ds.len == 0)
		notice_from_prologue(&c, top);
	find_notice_end(&c);
	c.bounce_like = looks_like_bounce(msg) || c.ds.len > 0 || notice_reports_failure(&c);
	if (decide_kind(&c, depth))
		collect_original(&c);
	collect_envelope(&c);
	res = c.res;
	ctx_release(&c);
	return res;
}

struct dsn_result *dsn_parse_message(GMimeMessage *msg)
{
	return parse_message(msg, 0, NULL);
}

/* ---- what GMime is given ----------------------------------------------------------- */

/*
 * GMime makes a GObject of every header field and of every part, and frees them again:
 * most of the cost of parsing a bounce, whose header is mostly Received, DKIM, ARC and
 * provider trace fields that nothing here reads, and which often carries the whole
 * returned message. So the copy GMime parses is slimmed:
 *   - the message's header keeps only the fields this file reads of it (every header()
 *     call, collect_envelope) and those of part_kept and MIME-Version, and its first field (GMime takes a header that starts with anything
 *     else for no message at all); each returned message's (message/rfc822) header keeps
 *     what is read of a returned message (To, Message-ID, X-Cutoff-*, Microsoft's
 *     original recipient), its structure and first field; a part's header keeps its
 *     Content-Type, -Transfer-Encoding and -Disposition (part_kept). Whoever reads a new
 *     field here adds it to top_kept, returned_kept or part_kept.
 *   - a returned message's body is left out: only its header is ever read, except when
 *     a report is adopted from inside it (adopt_nested_report), and then the message is
 *     parsed again without this cut (dsn_parse_buffer).
 * Only what GMime is certain to read the same way is slimmed: the multipart structure is
 * followed through boundaries that are plainly given and not prefixes of each other; at
 * the first line that is not plainly a header field, or that starts like a boundary but
 * is not exactly one, or any other doubt, the rest is copied as it is. Slimming less never
 * changes a result.
 */
#define SLIM_DEPTH 8
#define SLIM_BOUNDARY_MAX 200

static const char *const top_kept[] = {
	"from", "to", "subject", "mime-version", "x-failed-recipients", "auto-submitted",
	"precedence", "x-apple-action", "x-autoreply", "x-autorespond", "x-autoresponder",
	"x-original-to", "delivered-to", NULL
};
static const char *const returned_kept[] = {
	"to", "message-id", "mime-version", "x-hmxmroriginalrecipient", NULL
};

/* What GMime's structure and this file read of any MIME entity. */
static const char *const part_kept[] = {
	"content-type", "content-transfer-encoding", "content-disposition", NULL
};

static bool listed(const char *const *list, const char *name, size_t n)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strlen(list[i]) == n && strncasecmp(name, list[i], n) == 0)
			return true;
	return false;
}

/* Whether the header field called name[0..n) is kept for GMime: part_kept always,
 * X-Cutoff-* in a returned message, else what keep names. */
static bool header_field_kept(const char *const *keep, const char *name, size_t n)
{
	return listed(part_kept, name, n) || listed(keep, name, n) ||
	       (keep == returned_kept && n > 9 && strncasecmp(name, "x-cutoff-", 9) == 0);
}

struct slim {
	const char *p, *end;   /* what is left of the normalised message (LF line ends) */
	struct buf *out;
	bool cut;              /* leave out the bodies of returned messages */
	bool was_cut;          /* some body was left out */
	const char *bound[SLIM_DEPTH + 1]; /* the open multiparts' boundaries, outermost first */
	size_t bound_len[SLIM_DEPTH + 1];
	int depth;
};

/* What a header block says about what follows it. */
struct slim_fields {
	const char *ct, *ct_end;   /* the Content-Type value (may be folded), or NULL */
	const char *cte, *cte_end; /* the Content-Transfer-Encoding value, or NULL */
	bool twice;                /* one of them given twice: not trusted */
};

static bool starts_dashes(const char *p, const char *eol)
{
	return eol - p >= 2 && p[0] == '-' && p[1] == '-';
}

static const char *next_line(const char *eol, const char *end)
{
	return eol < end ? eol + 1 : eol;
}

/* Notes the value of the field named name[0..n) running to next, if it is one of f's. */
static void slim_note(struct slim_fields *f, const char *name, size_t n, const char *next)
{
	if (n == 12 && strncasecmp(name, "content-type", 12) == 0) {
		f->twice |= f->ct != NULL;
		f->ct = name + n + 1, f->ct_end = next;
	} else if (n == 25 && strncasecmp(name, "content-transfer-encoding", 25) == 0) {
		f->twice |= f->cte != NULL;
		f->cte = name + n + 1, f->cte_end = next;
	}
}

/*
 * Copies the header block at s->p up to and including its empty line, leaving out the
 * fields header_field_kept refuses with keep (never the first).
 * Returns false, with s->p at the line in doubt (what came before it copied), when a line
 * is not plainly a field: no name, a line of white space, a continuation first, or,
 * inside the message (not top), a line starting with "--".
 */
static bool slim_block(struct slim *s, const char *const *keep, bool top,
		       struct slim_fields *f)
{
	const char *first = s->p;

	memset(f, 0, sizeof *f);
	while (s->p < s->end) {
		const char *p = s->p, *eol = line_end(p, s->end), *next = next_line(eol, s->end);
		size_t n;

		if (eol == p) {
			buf_append(s->out, p, (size_t)(next - p));
			s->p = next;
			return true;
		}
		if ((!top && starts_dashes(p, eol)) || (n = field_name_len(p, eol)) == 0)
			return false;
		/* The field goes on over the lines that start with white space. */
		while (next < s->end && (*next == ' ' || *next == '\t')) {
			const char *ceol = line_end(next, s->end);
			size_t clen = (size_t)(ceol - next);

			trim(next, &clen);
			if (clen == 0)
				return false;
			next = next_line(ceol, s->end);
		}
		slim_note(f, p, n, next);
		if (p == first || header_field_kept(keep, p, n))
			buf_append(s->out, p, (size_t)(next - p));
		s->p = next;
	}
	return true;
}

static bool slim_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

static size_t slim_token(const char *p, const char *end)
{
	const char *q = p;

	while (q < end && (char_ascii_alnum(*q) || strchr("!#$%&'*+-.^_`{|}~", *q) != NULL) && *q)
		q++;
	return (size_t)(q - p);
}

static bool token_is(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/*
 * Reads a Content-Type value v[0..end): *multipart, *message (message/rfc822) and the
 * boundary parameter. False if it is not plainly "type/subtype; name=value; ..." with
 * token or simple quoted values and at most one, plain, boundary.
 */
static bool slim_content_type(const char *v, const char *end, bool *multipart, bool *message,
			      const char **bnd, size_t *blen)
{
	size_t tn, sn, n;
	const char *t;

	*bnd = NULL, *blen = 0;
	while (v < end && slim_ws(*v))
		v++;
	t = v, tn = slim_token(v, end), v += tn;
	if (tn == 0 || v >= end || *v != '/')
		return false;
	sn = slim_token(++v, end);
	if (sn == 0)
		return false;
	*multipart = token_is(t, tn, "multipart");
	*message = token_is(t, tn, "message") && token_is(v, sn, "rfc822");
	for (v += sn;;) {
		const char *name, *val;
		size_t nn;

		while (v < end && slim_ws(*v))
			v++;
		if (v == end)
			break;
		if (*v++ != ';')
			return false;
		while (v < end && slim_ws(*v))
			v++;
		if (v == end)
			break;
		name = v, nn = slim_token(v, end), v += nn;
		while (v < end && slim_ws(*v))
			v++;
		if (nn == 0 || v == end || *v++ != '=')
			return false;
		while (v < end && slim_ws(*v))
			v++;
		if (v < end && *v == '"') {
			val = ++v;
			while (v < end && *v != '"' && *v != '\\' && *v != '\n')
				v++;
			if (v == end || *v != '"')
				return false;
			n = (size_t)(v++ - val);
		} else {
			val = v, n = slim_token(v, end), v += n;
		}
		if (nn >= 8 && strncasecmp(name, "boundary", 8) == 0) {
			if (nn != 8 || *bnd != NULL || n == 0 || n > SLIM_BOUNDARY_MAX ||
			    val[0] == ' ' || val[n - 1] == ' ' || memmem(val, n, "=?", 2))
				return false;
			*bnd = val, *blen = n;
		}
	}
	return !*multipart || *bnd != NULL;
}

/* Pushes a multipart's boundary; false if too deep or a prefix of an open one or the
 * other way round (GMime would then have to choose). */
static bool slim_push(struct slim *s, const char *b, size_t n)
{
	if (s->depth == SLIM_DEPTH)
		return false;
	for (int i = 0; i < s->depth; i++) {
		size_t m = n < s->bound_len[i] ? n : s->bound_len[i];

		if (memcmp(b, s->bound[i], m) == 0)
			return false;
	}
	s->bound[s->depth] = b, s->bound_len[s->depth++] = n;
	return true;
}

/*
 * The line p..eol, which starts with "--": the level of the open boundary it is exactly
 * ("--B" or "--B--", *close telling which), -1 if it starts with no open boundary (a line
 * of content to GMime), -2 if it starts with one but is not exactly it (in doubt).
 */
static int slim_boundary(const struct slim *s, int depth, const char *p, const char *eol,
			 bool *close)
{
	size_t len = (size_t)(eol - p) - 2;

	for (int i = 0; i < depth; i++) {
		size_t n = s->bound_len[i];

		if (len < n || memcmp(p + 2, s->bound[i], n) != 0)
			continue;
		*close = len == n + 2 && p[n + 2] == '-' && p[n + 3] == '-';
		return len == n || *close ? i : -2;
	}
	return -1;
}

static bool slim_plain_encoding(const struct slim_fields *f)
{
	size_t n;
	const char *v;

	if (f->cte == NULL)
		return true;
	n = (size_t)(f->cte_end - f->cte);
	v = trim(f->cte, &n);
	return token_is(v, n, "7bit") || token_is(v, n, "8bit") || token_is(v, n, "binary");
}

/*
 * A returned message, after its part's header: its header slimmed, then its body left out
 * up to the boundary that ends it. False when in doubt (s->p where to copy from).
 */
/*
 * Whether the line at q (before end) is a Content-Type field naming a multipart, folded
 * lines included: inside a returned message, GMime would then look for a boundary that
 * this file does not follow.
 */
static bool declares_multipart(const char *q, const char *end)
{
	const char *eol = line_end(q, end), *p = q + 12;

	if (eol - q < 13 || (*q | 0x20) != 'c' || strncasecmp(q, "content-type", 12) != 0)
		return false;
	while (p < eol && (*p == ' ' || *p == '\t'))
		p++;
	if (p == eol || *p != ':')
		return false;
	while (eol < end && eol + 1 < end && (eol[1] == ' ' || eol[1] == '\t'))
		eol = line_end(eol + 1, end);
	return find_ci(p, (size_t)(eol - p), "multipart") != NULL;
}

static bool slim_returned(struct slim *s)
{
	struct slim_fields f;
	bool multipart = false, message, close;
	const char *bnd = NULL, *q;
	size_t blen = 0;
	int outer = s->depth, level = -1;

	if (!slim_block(s, returned_kept, false, &f) || f.twice ||
	    (f.ct != NULL &&
	     !slim_content_type(f.ct, f.ct_end, &multipart, &message, &bnd, &blen)) ||
	    (multipart && !slim_push(s, bnd, blen)))
		return false;
	/* Its own multipart's boundaries are known; any other "--" line, or a multipart
	 * nested inside it (whose boundary GMime would also match), is in doubt. */
	for (q = s->p; q < s->end; q = next_line(line_end(q, s->end), s->end)) {
		const char *eol = line_end(q, s->end);

		if (!starts_dashes(q, eol)) {
			if (declares_multipart(q, s->end)) {
				level = -1;
				break;
			}
			continue;
		}
		level = slim_boundary(s, s->depth, q, eol, &close);
		if (level < 0)
			break;
		if (level < outer)
			break; /* the boundary that ends the returned message */
	}
	s->depth = outer;
	if (q < s->end && level < 0)
		return false;
	s->was_cut |= q > s->p;
	s->p = q;
	return true;
}

/* A part, after the boundary line that opens it. False when in doubt. */
static bool slim_part(struct slim *s)
{
	struct slim_fields f;
	bool multipart, message;
	const char *bnd;
	size_t blen;

	if (!slim_block(s, part_kept, false, &f) || f.twice)
		return false;
	if (f.ct == NULL)
		return true;
	if (!slim_content_type(f.ct, f.ct_end, &multipart, &message, &bnd, &blen))
		return false;
	if (multipart)
		return slim_push(s, bnd, blen);
	if (message && s->cut && slim_plain_encoding(&f))
		return slim_returned(s);
	return true;
}

/* Follows the multiparts from the message's top header to its end. */
static void slim_message(struct slim *s)
{
	struct slim_fields f;
	bool multipart, message, close;
	const char *bnd;
	size_t blen;

	if (!slim_block(s, top_kept, true, &f) || f.twice || f.ct == NULL ||
	    !slim_content_type(f.ct, f.ct_end, &multipart, &message, &bnd, &blen) ||
	    !multipart || !slim_push(s, bnd, blen))
		return;
	while (s->depth > 0 && s->p < s->end) {
		const char *eol = line_end(s->p, s->end), *next = next_line(eol, s->end);
		int level = -1;

		if (starts_dashes(s->p, eol) &&
		    (level = slim_boundary(s, s->depth, s->p, eol, &close)) == -2)
			return;
		buf_append(s->out, s->p, (size_t)(next - s->p));
		s->p = next;
		if (level < 0)
			continue;
		s->depth = close ? level : level + 1;
		if (!close && !slim_part(s))
			return;
	}
}

/*
 * Appends the normalised message text[0..len) to out as GMime is to parse it (see the top
 * of this section); cut leaves out returned messages' bodies. Returns whether some body
 * was left out.
 */
static bool slim_copy(const char *text, size_t len, bool cut, struct buf *out)
{
	struct slim s = { .p = text, .end = text + len, .out = out, .cut = cut };

	buf_grow(out, len);
	slim_message(&s);
	buf_append(out, s.p, (size_t)(s.end - s.p));
	return s.was_cut;
}

/* Builds a message from a stream GMime can read; NULL if there is no message in it. */
static GMimeMessage *construct(GMimeStream *stream)
{
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);

	g_object_unref(parser);
	return msg;
}

/* GMime's message from the normalised text[0..len), slimmed (slim_copy); NULL if none. */
static GMimeMessage *slimmed_message(const char *text, size_t len, bool cut, bool *was_cut)
{
	struct buf copy;
	size_t copy_len;
	GMimeStream *stream;
	GMimeMessage *msg;

	buf_init(&copy);
	*was_cut = slim_copy(text, len, cut, &copy);
	/* The stream takes the copy over (g_free is free). */
	copy_len = copy.len;
	stream = g_mime_stream_mem_new_with_byte_array(
		g_byte_array_new_take((guint8 *)buf_steal(&copy), copy_len));
	msg = construct(stream);
	g_object_unref(stream);
	return msg;
}

int dsn_parse_buffer(const char *data, size_t len, struct dsn_result **out, struct err *e)
{
	struct buf lf;
	GMimeMessage *msg;
	bool was_cut, need_whole = false;

	*out = NULL;
	/* A leading mbox separator is not a header: skip it. */
	if (len >= 5 && memcmp(data, "From ", 5) == 0) {
		const char *nl = memchr(data, '\n', len);
		const char *cr = memchr(data, '\r', len);
		const char *eol = nl && (!cr || nl < cr) ? nl : cr;

		if (eol == NULL)
			len = 0;
		else {
			if (eol == cr && eol + 1 == nl)
				eol = nl;
			len -= (size_t)(eol + 1 - data), data = eol + 1;
		}
	}
	buf_init(&lf);
	if (memchr(data, '\r', len) != NULL || memchr(data, '\0', len) != NULL) {
		append_text(&lf, data, len, len + 1);
		data = lf.data ? lf.data : "", len = lf.len;
	}
	msg = slimmed_message(data, len, true, &was_cut);
	if (msg != NULL) {
		*out = parse_message(msg, 0, was_cut ? &need_whole : NULL);
		g_object_unref(msg);
	}
	if (need_whole) {
		dsn_result_free(*out);
		*out = NULL;
		if ((msg = slimmed_message(data, len, false, &was_cut)) != NULL) {
			*out = parse_message(msg, 0, NULL);
			g_object_unref(msg);
		}
	}
	buf_free(&lf);
	if (*out == NULL)
		return err_set(e, ERR_DATA, "not a mail message (no header found): quarantine it");
	return 0;
}

int dsn_parse_stream(GMimeStream *stream, struct dsn_result **out, struct err *e)
{
	struct buf data;
	char chunk[8192];
	ssize_t n;
	int rc;

	*out = NULL;
	buf_init(&data);
	while ((n = g_mime_stream_read(stream, chunk, sizeof chunk)) > 0)
		buf_append(&data, chunk, (size_t)n);
	if (n < 0) {
		buf_free(&data);
		return err_set(e, ERR_IO,
		               "reading a message stream failed: check the file or pipe");
	}
	rc = dsn_parse_buffer(data.data ? data.data : "", data.len, out, e);
	buf_free(&data);
	return rc;
}

/* ---- JSON -------------------------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at p (n bytes left), or 0 (RFC 3629). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] < 0x80 ? 1 : p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
	unsigned cp;

	if (len <= 1 || len > n || p[0] > 0xF4)
		return len == 1 ? 1 : 0;
	cp = p[0] & (0x7Fu >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3Fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

json_t *dsn_json_text(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	struct buf fixed;
	json_t *j;
	size_t n;

	if (s == NULL)
		return json_null();
	if ((j = json_stringn(s, len)) != NULL)
		return j;
	/* Not UTF-8 (jansson refuses it): each byte that is not becomes U+FFFD. */
	buf_init(&fixed);
	buf_grow(&fixed, len + 16);
	for (size_t i = 0; i < len; i += n) {
		if ((n = utf8_len(p + i, len - i)) == 0) {
			buf_append(&fixed, "\xEF\xBF\xBD", 3);
			n = 1;
		} else {
			buf_append(&fixed, s + i, n);
		}
	}
	j = json_stringn(fixed.data, fixed.len);
	buf_free(&fixed);
	if (j == NULL)
		abort(); /* out of memory: the text is valid UTF-8 now */
	return j;
}

static json_t *json_text(const char *s)
{
	return dsn_json_text(s, s ? strlen(s) : 0);
}

json_t *dsn_result_to_json(const struct dsn_result *res)
{
	json_t *root = json_object(), *list = json_array();

	json_object_set_new(root, "kind", json_string(dsn_kind_name(res->kind)));
	for (size_t i = 0; i < res->n_recipients; i++) {
		const struct dsn_recipient *r = &res->recipients[i];
		json_t *o = json_object();

		json_object_set_new(o, "address", json_text(r->address));
		json_object_set_new(o, "status", json_text(r->status[0] ? r->status : NULL));
		json_object_set_new(o, "reply_code",
				    r->reply_code ? json_integer(r->reply_code) : json_null());
		json_object_set_new(o, "reason", json_string(classify_reason_name(r->reason)));
		json_object_set_new(o, "class",
		                    r->class == BOUNCE_CLASS_NONE
		                        ? json_null()
		                        : json_string(classify_class_name(r->class)));
		json_array_append_new(list, o);
	}
	json_object_set_new(root, "recipients", list);
	return root;
}

/* ---- mbox -------------------------------------------------------------------------- */

struct dsn_mbox {
	GMimeStream *stream;
	GMimeParser *parser;
	size_t index;
	bool done;
};

struct dsn_mbox *dsn_mbox_new(GMimeStream *stream)
{
	struct dsn_mbox *mb = xcalloc(1, sizeof *mb);

	mb->stream = g_object_ref(stream);
	mb->parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(mb->parser, GMIME_FORMAT_MBOX);
	return mb;
}

int dsn_mbox_open(const char *path, struct dsn_mbox **out, struct err *e)
{
	GMimeStream *stream;

	*out = NULL;
	errno = 0;
	stream = g_mime_stream_file_open(path, "rb", NULL);
	if (stream == NULL && (errno == ENOENT || errno == ENOTDIR))
		return err_set(e, ERR_NOTFOUND, "%s: no such mbox: check the path", path);
	if (stream == NULL)
		return err_sys(e, ERR_IO, errno, "%s: cannot open the mbox", path);
	*out = dsn_mbox_new(stream);
	g_object_unref(stream);
	return 0;
}

int dsn_mbox_next(struct dsn_mbox *mb, struct dsn_result **out, size_t *index)
{
	GMimeMessage *msg;

	*out = NULL;
	if (mb->done || g_mime_parser_eos(mb->parser)) {
		mb->done = true;
		return 0;
	}
	msg = g_mime_parser_construct_message(mb->parser, NULL);
	if (msg == NULL) {
		mb->done = true;
		return 0;
	}
	*out = dsn_parse_message(msg);
	*index = ++mb->index;
	g_object_unref(msg);
	return 1;
}

void dsn_mbox_free(struct dsn_mbox *mb)
{
	if (mb == NULL)
		return;
	g_object_unref(mb->parser);
	g_object_unref(mb->stream);
	free(mb);
}
