/* verp.h — signed VERP envelope senders: bounces+TOKEN@domain names the exact delivery, and
 * only cutoff can make one (HMAC-SHA256), so a bounce is attributed without trusting its text. */
#ifndef CUTOFF_VERP_H
#define CUTOFF_VERP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* What a token names. */
struct verp_ids {
	int64_t campaign_id;
	int64_t recipient_id;
	int64_t delivery_id;
};

/* Room for any address verp_address writes (the local part stays under 64 octets). */
#define VERP_ADDRESS_SIZE 320

/*
 * Writes "bounces+D.R.C.MAC@domain" into out: delivery, recipient and campaign
 * ids in base 36 and the first 64 bits of HMAC-SHA256(secret, "verp\0D.R.C")
 * in base 32 (lower case, so that case-folding mail systems do not break it).
 * Returns 0, or ERR_SOFTWARE if OpenSSL fails.
 */
int verp_address(const unsigned char *secret, size_t secret_len, const struct verp_ids *ids,
		 const char *domain, char *out, size_t n, struct err *e);

/*
 * A signer keeps the secret's keyed HMAC context, so that a run signing many
 * addresses keys it once. verp_signer_new returns NULL if OpenSSL fails; free
 * with verp_signer_free (NULL is fine). One per thread.
 */
struct verp_signer;
struct verp_signer *verp_signer_new(const unsigned char *secret, size_t secret_len);
void verp_signer_free(struct verp_signer *v);

/* verp_address with v's secret: the same address. Returns 0, or ERR_SOFTWARE. */
int verp_signer_address(struct verp_signer *v, const struct verp_ids *ids, const char *domain,
			char *out, size_t n, struct err *e);

/*
 * Reads a VERP address (or its local part) back: "bounces+TOKEN@...", case
 * ignored. Returns 0 and fills ids when the token is well formed and its MAC
 * checks out (compared in constant time); ERR_DATA when there is no token, it
 * is malformed, or it is forged or mangled (the message says which).
 */
int verp_parse(const unsigned char *secret, size_t secret_len, const char *address,
	       struct verp_ids *ids, struct err *e);

#endif
