/* login_feed.h — the input side of `cutoff login --batch`: a thread of its own reads a
 * descriptor, splits it into lines and parses each (login_line.h), and hands the parsed lines
 * over in blocks, so that reading and parsing run on the second core beside the decisions. */
#ifndef CUTOFF_LOGIN_FEED_H
#define CUTOFF_LOGIN_FEED_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "login.h"

#define LOGIN_FEED_LINE_MAX 65536 /* a longer input line is refused */

/* One non-blank input line, parsed. */
struct login_item {
	enum { LOGIN_ITEM_EVENT, LOGIN_ITEM_BAD, LOGIN_ITEM_TOO_LONG } kind;
	int64_t lineno;         /* 1-based, blank lines counted */
	struct login_event ev;  /* EVENT; BAD: ev.user when one could be read, else NULL */
	const char *why;        /* BAD: the reason */
};

struct login_feed;

/*
 * Starts reading fd on a new thread. now(now_ud) is the time of an event without one, taken
 * when its line is parsed. Returns 0, or an error when the thread cannot start.
 */
int login_feed_start(struct login_feed **out, int fd, int64_t (*now)(const void *ud),
		     const void *now_ud, struct err *e);

/*
 * The next block of parsed lines, in input order, in *items[0, *n) (valid until the next
 * call). With wait false and no block ready, returns at once with *n 0; with wait true it
 * waits for one. *eof is set once the input has ended and every line was handed over. A read
 * error is returned (after the lines read before it) as ERR_IO.
 */
int login_feed_next(struct login_feed *f, bool wait, const struct login_item **items,
		    size_t *n, bool *eof, struct err *e);

/* Stops the thread (it notices within 100 ms, even while waiting for input) and frees f. */
void login_feed_stop(struct login_feed *f);

#endif
