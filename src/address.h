/* address.h — checks and normalises e-mail addresses for the SMTP envelope (RFC 5321, RFC 6531, IDNA2008). */
#ifndef CUTOFF_ADDRESS_H
#define CUTOFF_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/*
 * What is accepted: an RFC 5321 Mailbox, Local-part "@" (Domain / address-literal), usable as is
 * in MAIL FROM:<...> and RCPT TO:<...>.
 * - Local part: a dot-string of atext, or a quoted string (qtextSMTP and quoted-pairSMTP), never
 *   a mix of the two. It is kept byte for byte (case, quotes and backslashes as written): only
 *   the receiving host may interpret it. At most 64 octets, quotes included.
 * - SMTPUTF8 (RFC 6531): UTF-8 is accepted in the local part, in atext and in qtext, but not
 *   after a backslash, and not the invisible or space-like characters that are typing accidents
 *   (U+00A0, U+200B..U+200F, U+2028..U+202F, U+205F..U+2064, U+3000, U+FEFF, ...). Such an
 *   address can only be sent to a server that offers SMTPUTF8: see address_needs_smtputf8.
 * - Domain: LDH labels of 1..63 octets that neither start nor end with a hyphen, no trailing
 *   dot, at most 255 octets; one-label and all-numeric domains are syntactically fine. A domain
 *   with non-ASCII characters is converted with libidn2 (idn2_lookup_u8, UTS #46
 *   non-transitional processing with NFC input, as current browsers do: "faß.de" becomes
 *   "xn--fa-hia.de", not "fass.de"); the normalised address holds the A-labels. ASCII
 *   domains (including existing "xn--" labels) never go through libidn2.
 * - Address literals: [IPv4] with four numbers 0-255, and [IPv6:...] exactly as the RFC 5321
 *   grammar has it ("::" stands for at least two zero groups, so at most 6 other groups, or 4
 *   with an IPv4 tail). Other tags are refused (none is registered).
 * - Refused everywhere: control characters (C0, DEL, C1; CR and LF in particular, so nothing
 *   can be smuggled into an SMTP command), invalid UTF-8, comments, folding white space, and a
 *   whole address over 254 octets (the 256-octet path minus "<" and ">").
 */

/*
 * Checks in, after trimming spaces and tabs around it (never inside; CR and LF are not
 * trimmed), and on success stores in *out a newly allocated normalised address: local part
 * unchanged, "@", domain lower-cased (A-labels for an internationalised domain; for an IPv6
 * literal the tag is written "IPv6:" and hex digits are lower-cased). The caller frees *out
 * with free(). out may be NULL to check only.
 * Returns 0, or ERR_DATA with a short reason in e ("no @ in address", "local part is 65
 * octets, longer than 64", "domain label '-x' starts with a hyphen", ...); *out is then NULL.
 * The reason never echoes control characters; callers add the row or field.
 */
int address_normalize(const char *in, char **out, struct err *e);

/* Like address_normalize for the len bytes at in, which need not be NUL-terminated (a CSV
 * cell); an embedded NUL byte is an error, not the end of the address. */
int address_normalize_len(const char *in, size_t len, char **out, struct err *e);

/* True if addr has any non-ASCII octet. For a normalised address that is a UTF-8 local part,
 * which needs the SMTPUTF8 extension (RFC 6531): the sender must offer "SMTPUTF8" in MAIL
 * FROM and must not send it to a server that does not advertise the extension. */
bool address_needs_smtputf8(const char *addr);

/* The domain of an address: a pointer into addr just after its last "@", or NULL if it has
 * none. Nothing is allocated. */
const char *address_domain(const char *addr);

/* True if a and b name the same mailbox as far as cutoff can tell: local parts equal byte for
 * byte, domains equal ignoring ASCII case. Meant for normalised addresses (then it is strcmp
 * == 0) and for addresses found elsewhere, e.g. a DSN's Final-Recipient. An internationalised
 * domain compares equal to its A-label form only after address_normalize. */
bool address_equal(const char *a, const char *b);

/* A 64-bit hash consistent with address_equal (FNV-1a of the local part and the lower-cased
 * domain), for hash tables and duplicate detection; not for security. */
uint64_t address_hash(const char *addr);

#endif
