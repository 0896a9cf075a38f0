/* err.h — errors as values: a negative code plus a message a person can act on. */
#ifndef CUTOFF_ERR_H
#define CUTOFF_ERR_H

#include <stddef.h>

/*
 * Every fallible function returns 0 on success or one of these negative codes,
 * and fills a caller-provided struct err. Only main() maps them to sysexits.h
 * (err_exit_code).
 */
enum err_code {
	ERR_OK = 0,
	ERR_NOMEM = -1,    /* out of memory */
	ERR_IO = -2,       /* a local file or the database could not be read or written */
	ERR_CONFIG = -3,   /* configuration or campaign file is wrong (EX_CONFIG) */
	ERR_DATA = -4,     /* input data is wrong (EX_DATAERR) */
	ERR_TEMPFAIL = -5, /* try again later: relay down, lock held, work deferred (EX_TEMPFAIL) */
	ERR_USAGE = -6,    /* wrong command line (EX_USAGE) */
	ERR_NOTFOUND = -7, /* the named campaign, user or file does not exist (EX_NOINPUT) */
	ERR_REFUSED = -8,    /* refused in the current state, e.g. an unsafe change (EX_DATAERR) */
	ERR_SOFTWARE = -9, /* an internal error: a bug or a library misbehaving (EX_SOFTWARE) */
	ERR_NOPERM = -10,  /* refused for permissions, e.g. a secret readable by others (EX_NOPERM) */
	ERR_PROTOCOL = -11 /* the remote side broke the protocol (EX_PROTOCOL) */
};

struct err {
	int code;
	char msg[1024];
};

/*
 * Records code and a printf-style message in e unless e already holds an error
 * (the first, most specific error wins; callers propagate, never overwrite).
 * Returns code so that `return err_set(e, ERR_DATA, "...")` reads naturally.
 * e may be NULL.
 */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like err_set, appending ": strerror(errno_value)" (log_warn style). */
int err_sys(struct err *e, int code, int errno_value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Prefixes an existing message with more context ("file.cfg:12: ..."). */
void err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears e for reuse. */
void err_clear(struct err *e);

/* The sysexits.h exit status for a code; 0 for ERR_OK. */
int err_exit_code(int code);

/* Name of a code, for logs ("config", "data", ...). */
const char *err_code_name(int code);

#endif
