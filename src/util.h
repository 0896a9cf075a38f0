/* util.h — allocation that aborts on out-of-memory, a growable buffer, small string helpers. */
#ifndef CUTOFF_UTIL_H
#define CUTOFF_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

/* Out of memory is one of the two places the program may abort (style.md). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated printf-formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated once anything was added. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b); /* releases data; b may be reused after buf_init */
void buf_reset(struct buf *b); /* len = 0, keeps the allocation */
void buf_grow(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the data over to the caller (who frees it) and reinitialises b. */
char *buf_steal(struct buf *b);

/* True if s starts with prefix. */
bool str_starts_with(const char *s, const char *prefix);
/* True if s ends with suffix. */
bool str_ends_with(const char *s, const char *suffix);
/* ASCII lower-casing in place; returns s. */
char *str_ascii_lower(char *s);
/* True if s is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool str_utf8_valid(const char *s, size_t len);
/* True if s holds a C0 control character, DEL, or a C1 control (as UTF-8). */
bool str_has_control(const char *s);
/* Parses a whole decimal integer in [min, max]; false on anything else. */
bool str_to_long(const char *s, long min, long max, long *out);
/* True for an ASCII letter or digit (whatever the locale). */
bool char_ascii_alnum(int c);
/* Writes v in decimal, zero-padded to at least width digits (at most 20 digits, no NUL);
 * returns the end. For the hot paths where a format string costs more than the rest. */
char *dec_put(char *out, uint64_t v, int width);

/* CLOCK_MONOTONIC in nanoseconds: for intervals and deadlines, not dates. */
int64_t monotonic_ns(void);

/* 64-bit FNV-1a, for change detection (not for security). */
uint64_t hash_fnv1a(uint64_t h, const void *p, size_t n);
#define HASH_FNV1A_INIT UINT64_C(0xcbf29ce484222325)

/*
 * A keyed HMAC-SHA256 context (OpenSSL's EVP_MAC) for signing many messages with one secret:
 * re-initialise it with EVP_MAC_init(ctx, NULL, 0, NULL) before each. NULL if OpenSSL fails.
 * Free with EVP_MAC_CTX_free.
 */
EVP_MAC_CTX *hmac_sha256_new(const unsigned char *secret, size_t secret_len);

#endif
