/* login_line.h — one login event read from a line of JSON (RFC 8259), as `cutoff login --batch`
 * and a login server write them: {"user":"u1","client_version":"4.6","platform":"windows",
 * "time":"2003-09-20T17:00:00Z"}. */
#ifndef CUTOFF_LOGIN_LINE_H
#define CUTOFF_LOGIN_LINE_H

#include <stddef.h>
#include <stdint.h>

#include "login.h"
#include "util.h"

/*
 * The members: "user" (a non-empty string, required), "client_version" and "platform"
 * (strings, or null or absent), "time" (RFC 3339 text as schedule_parse_instant reads it,
 * or Unix seconds as an integer; null or absent: the clock). Other members are ignored,
 * whatever their values. Each key once (RFC 8259 leaves duplicates open: cutoff refuses them).
 *
 * The usual line, a flat object of strings, integers, null, true and false, is read by a
 * small parser without building a JSON tree (most of the time spent on a line otherwise);
 * anything else (nested values, fractions, every malformed line) goes to jansson, which
 * reads it or says what is wrong. Both accept and refuse the same lines.
 */

/* What a parsed event's strings point into: reused from line to line. */
struct login_line {
	struct buf scratch; /* the line, decoded in place by the fast parser */
	void *json;         /* the jansson tree of the last line that needed it, or NULL */
};

void login_line_init(struct login_line *l);
void login_line_free(struct login_line *l);

/*
 * Reads the event on line[0, len) (no newline) into *ev, whose strings stay valid until the
 * next call with l; now is the time of an event without one.
 * Returns 0, or ERR_DATA with the reason in why[0, n) ("\"user\" must be a non-empty
 * string"); ev->user is then the user when one could be read (for the error answer), else NULL.
 */
int login_line_parse(struct login_line *l, const char *line, size_t len, int64_t now,
		     struct login_event *ev, char *why, size_t n);

#endif
