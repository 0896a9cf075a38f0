/* address.c — checks and normalises envelope addresses (RFC 5321 4.1.2, 4.1.3, 4.5.3.1; RFC 6531; RFC 5891 and UTS #46 via libidn2). */
#include "address.h"

#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum {
	LOCAL_MAX = 64,   /* RFC 5321 4.5.3.1.1 */
	LABEL_MAX = 63,   /* RFC 1035 2.3.4 */
	DOMAIN_MAX = 255, /* RFC 5321 4.5.3.1.2 */
	ADDRESS_MAX = 254 /* 4.5.3.1.3: a path is at most 256 octets, "<" and ">" included */
};

/* Locale-independent character classes: the grammar is ASCII, whatever setlocale said. */
static bool is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_atext(unsigned char c)
{
	return char_ascii_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 dcontent: printable ASCII except "[", "\" and "]". */
static bool is_dcontent(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '[' && c != '\\' && c != ']';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Names a byte for a message without echoing anything unprintable: 'x' or 0xNN. */
static const char *show_char(unsigned char c, char buf[8])
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "0x%02x", (unsigned)c);
	return buf;
}

/* Decodes the UTF-8 sequence at s, already known to be valid; stores its length in *n. */
static uint32_t utf8_decode(const unsigned char *s, size_t *n)
{
	if (s[0] < 0xe0) {
		*n = 2;
		return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	}
	if (s[0] < 0xf0) {
		*n = 3;
		return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	}
	*n = 4;
	return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
	       (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
}

/*
 * Space-like and invisible code points. They are valid UTF-8 (RFC 6531 would take them), but in
 * a list of users they are copy-and-paste accidents that make a second, undeliverable spelling
 * of a mailbox, so they are refused in the local part (in a domain, UTS #46 handles them).
 */
static bool is_invisible(uint32_t cp)
{
	return cp == 0x00a0 || cp == 0x00ad || cp == 0x034f || cp == 0x061c || cp == 0x1680 ||
	       cp == 0x180e || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
	       (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0x3164 || cp == 0xfeff;
}

/* Checks the non-ASCII character at s in a local part; stores its length in *n. */
static int check_local_utf8(const char *s, size_t *n, struct err *e)
{
	uint32_t cp = utf8_decode((const unsigned char *)s, n);

	if (is_invisible(cp))
		return err_set(e, ERR_DATA, "invisible or space character U+%04X in local part",
			       (unsigned)cp);
	return 0;
}

/* Removes spaces and tabs around the address (CSV cells often carry them); never CR or LF. */
static void trim(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

/* Refuses what must never reach an SMTP command line (C0, DEL, C1) and invalid UTF-8. */
static int scan_octets(const char *s, size_t n, struct err *e)
{
	const unsigned char *p = (const unsigned char *)s;
	bool non_ascii = false;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			return err_set(e, ERR_DATA, "line break (CR or LF) in address");
		if (p[i] == '\0')
			return err_set(e, ERR_DATA, "NUL byte in address");
		if (p[i] < 0x20 || p[i] == 0x7f)
			return err_set(e, ERR_DATA, "control character 0x%02x in address",
				       (unsigned)p[i]);
		/* C1 controls U+0080..U+009F are C2 80..C2 9F in UTF-8. */
		if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
			return err_set(e, ERR_DATA, "control character U+%04X in address",
				       (unsigned)p[i + 1]);
		non_ascii |= p[i] >= 0x80;
	}
	if (non_ascii && !str_utf8_valid(s, n))
		return err_set(e, ERR_DATA, "address is not valid UTF-8");
	return 0;
}

static int local_char_error(unsigned char c, struct err *e)
{
	char b[8];

	switch (c) {
	case ' ':
		return err_set(e, ERR_DATA, "space in local part (allowed only inside quotes)");
	case '"':
		return err_set(e, ERR_DATA,
			       "quote in the middle of the local part (quote all of it or none)");
	case '\\':
		return err_set(e, ERR_DATA, "backslash outside quotes in local part");
	case '(':
	case ')':
		return err_set(e, ERR_DATA, "parenthesis in local part (comments are not allowed "
					    "in an envelope address)");
	default:
		return err_set(e, ERR_DATA, "character %s not allowed in local part unless quoted",
			       show_char(c, b));
	}
}

/* RFC 5321 Dot-string (atext, plus UTF-8 per RFC 6531); *len is where it stops: the first "@". */
static int parse_dot_string(const char *s, size_t n, size_t *len, struct err *e)
{
	size_t i, step;
	int rc;

	for (i = 0; i < n && s[i] != '@'; i += step) {
		unsigned char c = (unsigned char)s[i];

		step = 1;
		if (c == '.' && i == 0)
			return err_set(e, ERR_DATA, "local part starts with a dot");
		if (c == '.' && s[i - 1] == '.')
			return err_set(e, ERR_DATA, "two dots in a row in local part");
		if (c >= 0x80 && (rc = check_local_utf8(s + i, &step, e)) < 0)
			return rc;
		if (c != '.' && c < 0x80 && !is_atext(c))
			return local_char_error(c, e);
	}
	if (i > 0 && s[i - 1] == '.')
		return err_set(e, ERR_DATA, "local part ends with a dot");
	*len = i;
	return 0;
}

/* RFC 5321 Quoted-string (qtextSMTP, quoted-pairSMTP, UTF-8 qtext per RFC 6531); *len includes
 * both quotes. Control characters were refused before. */
static int parse_quoted(const char *s, size_t n, size_t *len, struct err *e)
{
	size_t i = 1, step;
	int rc;

	while (i < n && s[i] != '"') {
		step = 1;
		if (s[i] == '\\' && i + 1 < n && (unsigned char)s[i + 1] >= 0x80)
			return err_set(e, ERR_DATA, "backslash before a non-ASCII character in "
						    "quoted local part");
		if (s[i] == '\\')
			step = 2;
		else if ((unsigned char)s[i] >= 0x80 && (rc = check_local_utf8(s + i, &step, e)) < 0)
			return rc;
		i += step;
	}
	if (i >= n)
		return err_set(e, ERR_DATA, "unclosed quote in local part");
	*len = i + 1;
	return 0;
}

/* Parses the local part at the start of s; *len is its length, s[*len] is the "@". */
static int parse_local(const char *s, size_t n, size_t *len, struct err *e)
{
	int rc = s[0] == '"' ? parse_quoted(s, n, len, e) : parse_dot_string(s, n, len, e);

	if (rc < 0)
		return rc;
	if (*len == 0)
		return err_set(e, ERR_DATA, "nothing before the @");
	if (*len == n)
		return err_set(e, ERR_DATA, "no @ after the quoted local part");
	if (s[*len] == '.')
		return err_set(e, ERR_DATA, "quoted and unquoted parts mixed in local part "
					    "(quote all of it or none)");
	if (s[*len] != '@')
		return err_set(e, ERR_DATA, "text after the closing quote of the local part "
					    "(inside quotes, write \\\" for a quote)");
	if (*len > LOCAL_MAX)
		return err_set(e, ERR_DATA, "local part is %zu octets, longer than 64", *len);
	return 0;
}

static int domain_char_error(unsigned char c, struct err *e)
{
	char b[8];

	switch (c) {
	case '@':
		return err_set(e, ERR_DATA,
			       "more than one @ (an @ in the local part must be inside quotes)");
	case ' ':
		return err_set(e, ERR_DATA, "space in domain");
	case '(':
	case ')':
		return err_set(e, ERR_DATA, "parenthesis in domain (comments are not allowed in "
					    "an envelope address)");
	case '[':
	case ']':
		return err_set(e, ERR_DATA, "bracket inside the domain (an address literal is the "
					    "whole domain, e.g. [192.0.2.1])");
	default:
		return err_set(e, ERR_DATA, "character %s not allowed in domain", show_char(c, b));
	}
}

/* Checks one label of an ASCII domain, all of whose characters are letters, digits, hyphens. */
static int check_label(const char *l, size_t n, bool first, bool last, struct err *e)
{
	if (n == 0 && first)
		return err_set(e, ERR_DATA, "domain starts with a dot");
	if (n == 0 && last)
		return err_set(e, ERR_DATA, "domain ends with a dot");
	if (n == 0)
		return err_set(e, ERR_DATA, "two dots in a row in domain");
	if (n > LABEL_MAX)
		return err_set(e, ERR_DATA, "domain label '%.20s...' is %zu octets, longer than 63",
			       l, n);
	if (l[0] == '-')
		return err_set(e, ERR_DATA, "domain label '%.*s' starts with a hyphen", (int)n, l);
	if (l[n - 1] == '-')
		return err_set(e, ERR_DATA, "domain label '%.*s' ends with a hyphen", (int)n, l);
	return 0;
}

/* Checks an ASCII domain (RFC 5321 Domain) and writes it lower-cased to out (n bytes). */
static int check_hostname(const char *d, size_t n, char *out, struct err *e)
{
	size_t start = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if ((rc = check_label(d + start, i - start, start == 0, false, e)) < 0)
				return rc;
			start = i + 1;
		} else if (!char_ascii_alnum(c) && c != '-') {
			return domain_char_error(c, e);
		}
		out[i] = lower(d[i]);
	}
	if ((rc = check_label(d + start, n - start, start == 0, true, e)) < 0)
		return rc;
	if (n > DOMAIN_MAX)
		return err_set(e, ERR_DATA, "domain is %zu octets, longer than 255", n);
	return 0;
}

/*
 * Converts a domain holding non-ASCII characters to A-labels: IDNA2008 with UTS #46
 * non-transitional mapping and NFC input. *ace is freed with idn2_free.
 */
static int domain_to_alabels(const char *d, size_t n, char **ace, struct err *e)
{
	uint8_t *a = NULL;
	char *u;
	int rc;

	/* Without STD3 rules libidn2 lets "_" or " " through, with them it silently drops "_"
	 * and "@" (2.3.3). So STD3 stays off, the ASCII is checked here with the same reasons
	 * as for an ASCII domain, and check_hostname checks the A-labels it returns. */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c < 0x80 && !char_ascii_alnum(c) && c != '-' && c != '.')
			return domain_char_error(c, e);
	}
	u = xstrndup(d, n);
	rc = idn2_lookup_u8((const uint8_t *)u, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK)
		rc = err_set(e, ERR_DATA, "internationalised domain '%s' is not valid IDNA2008: %s",
			     u, idn2_strerror(rc));
	*ace = (char *)a;
	free(u);
	return rc;
}

/* RFC 5321 IPv4-address-literal: four Snum (1 to 3 digits, 0..255) separated by dots. */
static bool ipv4_ok(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		if (part > 0 && (i >= n || s[i++] != '.'))
			return false;
		for (; i < n && s[i] >= '0' && s[i] <= '9' && digits < 3; i++, digits++)
			v = v * 10 + (unsigned)(s[i] - '0');
		if (digits == 0 || v > 255)
			return false;
	}
	return i == n;
}

/* Splits IPv6 hex groups (1 to 4 hex digits) separated by ":", with at most one "::". */
static bool ipv6_groups(const char *s, size_t n, size_t *groups, bool *comp)
{
	size_t i = 0;

	*groups = 0;
	*comp = n >= 2 && s[0] == ':' && s[1] == ':';
	if (*comp)
		i = 2;
	while (i < n) {
		size_t start = i;

		while (i < n && is_hex((unsigned char)s[i]) && i - start < 4)
			i++;
		if (i == start || (i < n && is_hex((unsigned char)s[i])))
			return false;
		(*groups)++;
		if (i == n)
			break;
		if (s[i++] != ':')
			return false;
		if (i < n && s[i] == ':' && *comp)
			return false;
		if (i < n && s[i] == ':') {
			*comp = true;
			i++;
		} else if (i == n) {
			return false; /* a single ":" at the end */
		}
	}
	return true;
}

/*
 * RFC 5321 IPv6-addr: IPv6-full (8 groups), IPv6-comp ("::" and at most 6 other groups),
 * IPv6v4-full (6 groups and IPv4), IPv6v4-comp ("::", at most 4 groups, IPv4). A "::" for a
 * single zero group (RFC 4291 allows it, RFC 5321 does not) is refused.
 */
static bool ipv6_ok(const char *s, size_t n)
{
	const char *colon = memrchr(s, ':', n);
	size_t groups, hex;
	bool comp;

	if (colon != NULL && memchr(colon, '.', n - (size_t)(colon - s)) != NULL) {
		hex = (size_t)(colon - s) + 1;
		if (!ipv4_ok(colon + 1, n - hex))
			return false;
		if (hex < 2 || s[hex - 2] != ':')
			hex--; /* drop the ":" before the IPv4 part unless it ends a "::" */
		if (!ipv6_groups(s, hex, &groups, &comp))
			return false;
		return comp ? groups <= 4 : groups == 6;
	}
	if (!ipv6_groups(s, n, &groups, &comp))
		return false;
	return comp ? groups <= 6 : groups == 8;
}

/* True if s is empty or only hex digits: what stands before the first ":" of a bare IPv6. */
static bool is_hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_hex((unsigned char)s[i]))
			return false;
	return true;
}

static bool ascii_caseeq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

/* Checks an address literal "[...]" and writes it to out (n bytes): tag "IPv6:", hex lower-case. */
static int check_literal(const char *d, size_t n, char *out, struct err *e)
{
	const char *close = memchr(d, ']', n), *in = d + 1, *colon;
	size_t len = n - 2;
	char b[8];

	if (close == NULL)
		return err_set(e, ERR_DATA, "unclosed [ in address literal");
	if (close != d + n - 1)
		return err_set(e, ERR_DATA, "text after the ] of the address literal");
	for (size_t i = 0; i < len; i++)
		if (!is_dcontent((unsigned char)in[i]))
			return err_set(e, ERR_DATA, "character %s not allowed in address literal",
				       show_char((unsigned char)in[i], b));
	colon = memchr(in, ':', len);
	if (len >= 5 && ascii_caseeq(in, "IPv6:", 5)) {
		if (!ipv6_ok(in + 5, len - 5))
			return err_set(e, ERR_DATA, "not a valid IPv6 address literal");
		memcpy(out, "[IPv6:", 6);
		for (size_t i = 6; i < n; i++)
			out[i] = lower(d[i]);
		return 0;
	}
	if (colon != NULL && is_hex_run(in, (size_t)(colon - in)))
		return err_set(e, ERR_DATA, "IPv6 address literal without the IPv6: tag "
					    "(write [IPv6:2001:db8::1])");
	if (colon != NULL)
		return err_set(e, ERR_DATA, "address literal tag '%.*s' is not supported (only IPv6)",
			       (int)(colon - in < 32 ? colon - in : 32), in);
	if (!ipv4_ok(in, len))
		return err_set(e, ERR_DATA, "not a valid IPv4 address literal (four numbers 0-255)");
	memcpy(out, d, n);
	return 0;
}

static bool has_non_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Appends the normalised domain (or address literal) d to b. */
static int append_domain(struct buf *b, const char *d, size_t n, struct err *e)
{
	char *ace = NULL;
	int rc;

	if (n == 0)
		return err_set(e, ERR_DATA, "nothing after the @");
	if (d[0] != '[' && has_non_ascii(d, n)) {
		if ((rc = domain_to_alabels(d, n, &ace, e)) < 0)
			goto out;
		d = ace;
		n = strlen(ace);
	}
	buf_grow(b, n);
	rc = d[0] == '[' ? check_literal(d, n, b->data + b->len, e)
			 : check_hostname(d, n, b->data + b->len, e);
	if (rc == 0) {
		b->len += n;
		b->data[b->len] = '\0';
	}
out:
	idn2_free(ace);
	return rc;
}

int address_normalize_len(const char *in, size_t len, char **out, struct err *e)
{
	struct buf b;
	size_t local = 0;
	int rc;

	buf_init(&b);
	if (out != NULL)
		*out = NULL;
	if (in == NULL)
		len = 0;
	trim(&in, &len);
	if (len == 0)
		return err_set(e, ERR_DATA, "empty address");
	if ((rc = scan_octets(in, len, e)) < 0)
		return rc;
	if (memchr(in, '@', len) == NULL)
		return err_set(e, ERR_DATA, "no @ in address");
	if ((rc = parse_local(in, len, &local, e)) < 0)
		return rc;
	buf_grow(&b, len);
	buf_append(&b, in, local + 1);
	if ((rc = append_domain(&b, in + local + 1, len - local - 1, e)) < 0)
		goto out;
	if (b.len > ADDRESS_MAX) {
		rc = err_set(e, ERR_DATA, "address is %zu octets, longer than 254", b.len);
		goto out;
	}
	if (out != NULL)
		*out = buf_steal(&b);
out:
	buf_free(&b);
	return rc;
}

int address_normalize(const char *in, char **out, struct err *e)
{
	return address_normalize_len(in, in != NULL ? strlen(in) : 0, out, e);
}

bool address_needs_smtputf8(const char *addr)
{
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

const char *address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : NULL;
}

bool address_equal(const char *a, const char *b)
{
	const char *da = strrchr(a, '@'), *db = strrchr(b, '@');
	size_t la, lb;

	if (da == NULL || db == NULL)
		return strcmp(a, b) == 0;
	la = (size_t)(da - a);
	lb = (size_t)(db - b);
	if (la != lb || memcmp(a, b, la) != 0 || strlen(da) != strlen(db))
		return false;
	return ascii_caseeq(da, db, strlen(da));
}

uint64_t address_hash(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t local = at != NULL ? (size_t)(at - addr) : strlen(addr);
	uint64_t h = hash_fnv1a(HASH_FNV1A_INIT, addr, local);

	for (const char *p = addr + local; *p != '\0'; p++) {
		char c = lower(*p);

		h = hash_fnv1a(h, &c, 1);
	}
	return h;
}
