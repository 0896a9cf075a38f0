/* verp.c — VERP tokens: base-36 ids and a truncated HMAC-SHA256, checked in constant time. */
#include "verp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define MAC_CHARS 13 /* 64 bits in base 32 */

static void base36(int64_t v, char *out, size_t n)
{
	char tmp[16];
	size_t len = 0;
	uint64_t u = (uint64_t)v;

	do {
		tmp[len++] = "0123456789abcdefghijklmnopqrstuvwxyz"[u % 36];
		u /= 36;
	} while (u > 0 && len < sizeof tmp);
	for (size_t i = 0; i < len && i + 1 < n; i++)
		out[i] = tmp[len - 1 - i];
	out[len < n ? len : n - 1] = '\0';
}

struct verp_signer {
	EVP_MAC_CTX *ctx; /* HMAC-SHA256 keyed with the secret */
};

/* The first 64 bits of md as MAC_CHARS base-32 characters. */
static void mac_chars(const unsigned char *md, char out[MAC_CHARS + 1])
{
	uint64_t bits = 0;

	for (int i = 0; i < 8; i++)
		bits = bits << 8 | md[i];
	for (int i = MAC_CHARS - 1; i >= 0; i--, bits >>= 5)
		out[i] = "abcdefghijklmnopqrstuvwxyz234567"[bits & 31];
	out[MAC_CHARS] = '\0';
}

/* "verp\0" and the ids' text into msg: what the MAC covers; its length, or 0 if too long. */
static size_t mac_input(const char *ids_text, unsigned char msg[128])
{
	size_t n = strlen(ids_text);

	if (n + 5 > 128)
		return 0;
	memcpy(msg, "verp", 5); /* includes the NUL separator */
	memcpy(msg + 5, ids_text, n);
	return n + 5;
}

/* The MAC of the ids' text with the signer's keyed context (re-initialised with its key), as
 * MAC_CHARS base-32 characters. */
static int signer_mac(struct verp_signer *v, const char *ids_text, char out[MAC_CHARS + 1],
		      struct err *e)
{
	unsigned char msg[128], md[EVP_MAX_MD_SIZE];
	size_t n = mac_input(ids_text, msg), md_len = 0;

	if (n == 0)
		return err_set(e, ERR_SOFTWARE, "VERP ids too long");
	if (EVP_MAC_init(v->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(v->ctx, msg, n) != 1 ||
	    EVP_MAC_final(v->ctx, md, &md_len, sizeof md) != 1 || md_len < 8)
		return err_set(e, ERR_SOFTWARE, "HMAC-SHA256 failed in OpenSSL");
	mac_chars(md, out);
	return 0;
}

/* The ids' text "D.R.C" (base 36). */
static void ids_text_make(const struct verp_ids *ids, char text[64])
{
	char d[16], r[16], c[16];

	base36(ids->delivery_id, d, sizeof d);
	base36(ids->recipient_id, r, sizeof r);
	base36(ids->campaign_id, c, sizeof c);
	snprintf(text, 64, "%s.%s.%s", d, r, c);
}

struct verp_signer *verp_signer_new(const unsigned char *secret, size_t secret_len)
{
	EVP_MAC_CTX *ctx = hmac_sha256_new(secret, secret_len);
	struct verp_signer *v;

	if (ctx == NULL)
		return NULL;
	v = xcalloc(1, sizeof *v);
	v->ctx = ctx;
	return v;
}

void verp_signer_free(struct verp_signer *v)
{
	if (v == NULL)
		return;
	EVP_MAC_CTX_free(v->ctx);
	free(v);
}

int verp_signer_address(struct verp_signer *v, const struct verp_ids *ids, const char *domain,
			char *out, size_t n, struct err *e)
{
	char text[64], mac[MAC_CHARS + 1];
	int rc;

	ids_text_make(ids, text);
	if ((rc = signer_mac(v, text, mac, e)) != 0)
		return rc;
	snprintf(out, n, "bounces+%s.%s@%s", text, mac, domain);
	return 0;
}

/* A signer for one use; NULL with e filled when OpenSSL cannot key one. */
static struct verp_signer *signer_once(const unsigned char *secret, size_t secret_len,
				       struct err *e)
{
	struct verp_signer *v = verp_signer_new(secret, secret_len);

	if (v == NULL)
		err_set(e, ERR_SOFTWARE, "HMAC-SHA256 failed in OpenSSL");
	return v;
}

int verp_address(const unsigned char *secret, size_t secret_len, const struct verp_ids *ids,
		 const char *domain, char *out, size_t n, struct err *e)
{
	struct verp_signer *v = signer_once(secret, secret_len, e);
	int rc = v != NULL ? verp_signer_address(v, ids, domain, out, n, e) : ERR_SOFTWARE;

	verp_signer_free(v);
	return rc;
}

/* The MAC of the ids' text under secret, as MAC_CHARS base-32 characters. */
static int mac_of(const unsigned char *secret, size_t secret_len, const char *ids_text,
		  char out[MAC_CHARS + 1], struct err *e)
{
	struct verp_signer *v = signer_once(secret, secret_len, e);
	int rc = v != NULL ? signer_mac(v, ids_text, out, e) : ERR_SOFTWARE;

	verp_signer_free(v);
	return rc;
}

static int parse_base36(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 12)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 10
			    : ch >= 'A' && ch <= 'Z' ? ch - 'A' + 10 : -1;
		if (digit < 0)
			return -1;
		v = v * 36 + (uint64_t)digit;
	}
	*out = (int64_t)v;
	return 0;
}

/* Splits "D.R.C.MAC" into its ids and MAC; -1 if it is not of that shape. */
static int split_token(const char *tok, size_t len, struct verp_ids *ids, char *ids_text,
		       size_t ids_n, char *mac)
{
	const char *dot[3];
	const char *p = tok, *end = tok + len;

	for (int i = 0; i < 3; i++) {
		dot[i] = memchr(p, '.', (size_t)(end - p));
		if (dot[i] == NULL)
			return -1;
		p = dot[i] + 1;
	}
	if ((size_t)(end - p) != MAC_CHARS || (size_t)(dot[2] - tok) + 1 > ids_n)
		return -1;
	if (parse_base36(tok, (size_t)(dot[0] - tok), &ids->delivery_id) ||
	    parse_base36(dot[0] + 1, (size_t)(dot[1] - dot[0] - 1), &ids->recipient_id) ||
	    parse_base36(dot[1] + 1, (size_t)(dot[2] - dot[1] - 1), &ids->campaign_id))
		return -1;
	memcpy(ids_text, tok, (size_t)(dot[2] - tok));
	ids_text[dot[2] - tok] = '\0';
	for (int i = 0; i < MAC_CHARS; i++)
		mac[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
	mac[MAC_CHARS] = '\0';
	return 0;
}

int verp_parse(const unsigned char *secret, size_t secret_len, const char *address,
	       struct verp_ids *ids, struct err *e)
{
	char ids_text[64], mac[MAC_CHARS + 1], want[MAC_CHARS + 1];
	const char *tok, *at;
	struct verp_ids got;
	int rc;

	if (strncasecmp(address, "bounces+", 8) != 0)
		return err_set(e, ERR_DATA, "not a VERP address (no bounces+ token)");
	tok = address + 8;
	at = strchr(tok, '@');
	if (split_token(tok, at ? (size_t)(at - tok) : strlen(tok), &got, ids_text,
			sizeof ids_text, mac) != 0)
		return err_set(e, ERR_DATA, "the VERP token is malformed");
	/* Ids were written lower case; a mail system may have upper-cased the whole address. */
	for (char *p = ids_text; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if ((rc = mac_of(secret, secret_len, ids_text, want, e)) != 0)
		return rc;
	if (CRYPTO_memcmp(mac, want, MAC_CHARS) != 0)
		return err_set(e, ERR_DATA, "the VERP token's signature does not match (forged or"
			       " mangled)");
	*ids = got;
	return 0;
}
