/* login_feed.c — reads and parses login lines on a thread of its own (login_feed.h). Blocks of
 * parsed lines go round a ring of FEED_BLOCKS: the thread fills the free ones, the decider
 * takes them in order and gives each back on its next call, so memory stays bounded. */
#include "login_feed.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "login_line.h"
#include "util.h"

#define FEED_BLOCKS 4
#define BLOCK_ITEMS 2048
#define READ_CHUNK (1 << 20)
#define STOP_CHECK_MS 100

/* Reads a descriptor in large chunks and hands out lines. */
struct reader {
	int fd;
	char *buf;
	size_t off, len, cap; /* unread data is buf[off, len); cap keeps room for a NUL */
	bool eof;
	bool skipping;        /* dropping the rest of an over-long line */
};

/* A parsed line as the thread stores it: strings as offsets in its block's text. */
struct raw_item {
	int kind;
	int64_t lineno, at;
	size_t user, version, platform, why; /* SIZE_MAX: NULL */
};

struct block {
	struct buf text;
	struct raw_item *raw;
	struct login_item *items; /* raw made into pointers, by the decider */
	size_t n;
	bool eof;
	struct err err; /* a read error after the lines in raw, or code 0 */
};

struct login_feed {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t filled, emptied;
	struct block b[FEED_BLOCKS];
	size_t head, count; /* b[head] is the oldest filled block; count are filled */
	bool holding;       /* the decider still reads b[head] */
	bool ended;         /* the decider took the last block */
	struct err pending; /* a read error to return on the next call */
	atomic_bool stop;
	int64_t (*now)(const void *ud);
	const void *now_ud;
	struct reader r;
	struct login_line line;
	int64_t lineno;
};

/* ---- reading lines (the thread's) ----------------------------------------------------- */

/*
 * The next complete line in the buffer, newline (and a CR before it) removed and
 * NUL-terminated, or NULL when none is buffered. *too_long is set instead for a line longer
 * than LOGIN_FEED_LINE_MAX, whose bytes are dropped up to its newline.
 */
static char *reader_line(struct reader *r, size_t *len, bool *too_long)
{
	char *start, *nl;

	*too_long = false;
	for (;;) {
		start = r->buf + r->off;
		nl = memchr(start, '\n', r->len - r->off);
		if (!r->skipping)
			break;
		r->off = nl ? (size_t)(nl - r->buf) + 1 : r->len;
		if (nl == NULL)
			return NULL;
		r->skipping = false;
	}
	if (nl != NULL && (size_t)(nl - start) > LOGIN_FEED_LINE_MAX) {
		/* read whole, and refused all the same */
		r->off = (size_t)(nl - r->buf) + 1, *too_long = true;
		return NULL;
	}
	if (nl == NULL && r->len - r->off >= LOGIN_FEED_LINE_MAX) {
		r->off = r->len, r->skipping = true, *too_long = true;
		return NULL;
	}
	if (nl == NULL && !(r->eof && r->off < r->len))
		return NULL;
	if (nl == NULL)
		nl = r->buf + r->len; /* the last line, without a newline: room for a NUL */
	*len = (size_t)(nl - start);
	r->off = nl < r->buf + r->len ? (size_t)(nl - r->buf) + 1 : r->len;
	*nl = '\0';
	if (*len > 0 && start[*len - 1] == '\r')
		start[--*len] = '\0';
	return start;
}

/* Reads more (blocking). Returns 0, or ERR_IO. */
static int reader_fill(struct reader *r, struct err *e)
{
	ssize_t n;

	if (r->off > 0) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off, r->off = 0;
	}
	do
		n = read(r->fd, r->buf + r->len, r->cap - 1 - r->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_sys(e, ERR_IO, errno, "reading login events from standard input");
	if (n == 0)
		r->eof = true;
	r->len += (size_t)n;
	return 0;
}

/* Waits up to ms for input (or its end); true when reading would not block. */
static bool reader_wait(const struct reader *r, int ms)
{
	struct pollfd p = {r->fd, POLLIN, 0};

	return poll(&p, 1, ms) > 0;
}

/* ---- filling a block (the thread's) --------------------------------------------------- */

/* s's offset in the block's text, SIZE_MAX for NULL. */
static size_t keep(struct block *bk, const char *s)
{
	size_t at = bk->text.len;

	if (s == NULL)
		return SIZE_MAX;
	buf_append(&bk->text, s, strlen(s) + 1);
	return at;
}

static void add_line(struct login_feed *f, struct block *bk, const char *line, size_t len,
		     bool too_long)
{
	struct raw_item *it = &bk->raw[bk->n++];
	struct login_event ev = {NULL, NULL, NULL, 0};
	char why[400];

	*it = (struct raw_item){LOGIN_ITEM_TOO_LONG, f->lineno, 0, SIZE_MAX, SIZE_MAX, SIZE_MAX,
				SIZE_MAX};
	if (too_long)
		return;
	if (login_line_parse(&f->line, line, len, f->now(f->now_ud), &ev, why, sizeof why) != 0) {
		it->kind = LOGIN_ITEM_BAD;
		it->user = keep(bk, ev.user);
		it->why = keep(bk, why);
		return;
	}
	it->kind = LOGIN_ITEM_EVENT;
	it->at = ev.at;
	it->user = keep(bk, ev.user);
	it->version = keep(bk, ev.client_version);
	it->platform = keep(bk, ev.platform);
}

/* Fills bk with the lines read next: until it is full, the input ends or fails, or no more
 * input is waiting (what is parsed is handed over before waiting). */
static void fill(struct login_feed *f, struct block *bk)
{
	bool too_long;
	size_t len = 0;
	char *line;

	buf_reset(&bk->text);
	bk->n = 0, bk->eof = false;
	err_clear(&bk->err);
	while (bk->n < BLOCK_ITEMS) {
		if ((line = reader_line(&f->r, &len, &too_long)) != NULL || too_long) {
			f->lineno++;
			if (too_long || len > 0) /* a blank line is skipped, and gets no answer */
				add_line(f, bk, line, len, too_long);
			continue;
		}
		if (f->r.eof) {
			bk->eof = true;
			return;
		}
		if (bk->n > 0 && !reader_wait(&f->r, 0))
			return;
		while (!reader_wait(&f->r, STOP_CHECK_MS))
			if (atomic_load(&f->stop))
				return;
		if (reader_fill(&f->r, &bk->err) != 0)
			return;
	}
}

static void *feed_main(void *arg)
{
	struct login_feed *f = arg;
	struct block *bk;
	bool last = false;

	while (!last) {
		pthread_mutex_lock(&f->lock);
		while (f->count == FEED_BLOCKS && !atomic_load(&f->stop))
			pthread_cond_wait(&f->emptied, &f->lock);
		bk = &f->b[(f->head + f->count) % FEED_BLOCKS];
		pthread_mutex_unlock(&f->lock);
		if (atomic_load(&f->stop))
			break;
		fill(f, bk);
		if (atomic_load(&f->stop))
			break;
		last = bk->eof || bk->err.code != 0;
		pthread_mutex_lock(&f->lock);
		f->count++;
		pthread_cond_signal(&f->filled);
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

/* ---- the decider's side --------------------------------------------------------------- */

static const char *at_offset(const struct block *bk, size_t at)
{
	return at == SIZE_MAX ? NULL : bk->text.data + at;
}

int login_feed_start(struct login_feed **out, int fd, int64_t (*now)(const void *ud),
		     const void *now_ud, struct err *e)
{
	struct login_feed *f = xcalloc(1, sizeof *f);
	int rc;

	*out = NULL;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->filled, NULL);
	pthread_cond_init(&f->emptied, NULL);
	atomic_init(&f->stop, false);
	f->now = now, f->now_ud = now_ud;
	f->r = (struct reader){.fd = fd, .cap = READ_CHUNK + LOGIN_FEED_LINE_MAX + 1};
	f->r.buf = xmalloc(f->r.cap);
	login_line_init(&f->line);
	for (size_t i = 0; i < FEED_BLOCKS; i++) {
		buf_init(&f->b[i].text);
		f->b[i].raw = xcalloc(BLOCK_ITEMS, sizeof *f->b[i].raw);
		f->b[i].items = xcalloc(BLOCK_ITEMS, sizeof *f->b[i].items);
	}
	if ((rc = pthread_create(&f->thread, NULL, feed_main, f)) != 0) {
		login_feed_stop(f); /* no thread to join */
		return err_set(e, ERR_SOFTWARE, "cannot start the input thread: %s", strerror(rc));
	}
	f->started = true;
	*out = f;
	return 0;
}

int login_feed_next(struct login_feed *f, bool wait, const struct login_item **items,
		    size_t *n, bool *eof, struct err *e)
{
	struct block *bk;

	*items = NULL, *n = 0, *eof = f->ended;
	if (f->pending.code != 0) {
		*e = f->pending;
		return e->code;
	}
	pthread_mutex_lock(&f->lock);
	if (f->holding) { /* the block read last is free again */
		f->head = (f->head + 1) % FEED_BLOCKS, f->count--, f->holding = false;
		pthread_cond_signal(&f->emptied);
	}
	while (wait && !f->ended && f->count == 0)
		pthread_cond_wait(&f->filled, &f->lock);
	f->holding = !f->ended && f->count > 0;
	bk = &f->b[f->head];
	pthread_mutex_unlock(&f->lock);
	if (!f->holding)
		return 0;
	for (size_t i = 0; i < bk->n; i++) {
		const struct raw_item *r = &bk->raw[i];

		bk->items[i] = (struct login_item){
			r->kind, r->lineno,
			{at_offset(bk, r->user), at_offset(bk, r->version),
			 at_offset(bk, r->platform), r->at},
			at_offset(bk, r->why)};
	}
	*items = bk->items, *n = bk->n;
	f->ended = bk->eof || bk->err.code != 0;
	*eof = bk->eof;
	f->pending = bk->err;
	return 0;
}

void login_feed_stop(struct login_feed *f)
{
	if (f == NULL)
		return;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		atomic_store(&f->stop, true);
		pthread_cond_signal(&f->emptied);
		pthread_mutex_unlock(&f->lock);
		pthread_join(f->thread, NULL);
	}
	for (size_t i = 0; i < FEED_BLOCKS; i++) {
		buf_free(&f->b[i].text);
		free(f->b[i].raw);
		free(f->b[i].items);
	}
	login_line_free(&f->line);
	free(f->r.buf);
	pthread_cond_destroy(&f->filled);
	pthread_cond_destroy(&f->emptied);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
