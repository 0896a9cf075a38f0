/* login_ckpt.c — the checkpointing thread beside a login stream (login_ckpt.h). */
#include "login_ckpt.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "err.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define CKPT_PERIOD_MS 200 /* at most one checkpoint this often */

struct login_ckpt {
	struct store *s;   /* the thread's own connection; only the thread uses it */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t poked;
	uint64_t commits;  /* pokes so far (under lock) */
	uint64_t copied;   /* the pokes the last checkpoint started after (under lock) */
	bool stop;         /* under lock */
};

/* A monotonic instant ms milliseconds from now. */
static struct timespec after_ms(long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L)
		t.tv_sec++, t.tv_nsec -= 1000000000L;
	return t;
}

/*
 * With the lock held: waits out the rest of CKPT_PERIOD_MS since the last checkpoint (next),
 * then for a commit not yet copied; false on stop. One checkpoint a period at most: a slow
 * stream commits once a login, and a checkpoint (it fsyncs the database) per login would
 * double its syncs for nothing.
 */
static bool ckpt_wait(struct login_ckpt *c, const struct timespec *next, uint64_t *target)
{
	while (!c->stop && pthread_cond_timedwait(&c->poked, &c->lock, next) != ETIMEDOUT)
		;
	while (!c->stop && c->copied == c->commits)
		pthread_cond_wait(&c->poked, &c->lock);
	*target = c->commits;
	return !c->stop;
}

static void *ckpt_main(void *ud)
{
	struct login_ckpt *c = ud;
	struct err e = {0};
	struct timespec next = after_ms(0);
	uint64_t target;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	while (rc == 0 && ckpt_wait(c, &next, &target)) {
		next = after_ms(CKPT_PERIOD_MS);
		pthread_mutex_unlock(&c->lock);
		/* PASSIVE: it copies what no reader needs, and never blocks the writer. Another
		 * checkpoint under way (the writer's own) is no failure: the next commit's turn. */
		if ((rc = store_wal_checkpoint(c->s, STORE_CKPT_PASSIVE, NULL, NULL, &e)) ==
		    ERR_TEMPFAIL) {
			err_clear(&e);
			rc = 0;
		}
		pthread_mutex_lock(&c->lock);
		c->copied = target;
	}
	pthread_mutex_unlock(&c->lock);
	if (rc != 0) /* the writer's own checkpoints carry on */
		log_warnx("login stream: the checkpointing thread stopped: %s", e.msg);
	return NULL;
}

struct login_ckpt *login_ckpt_start(const char *path)
{
	struct login_ckpt *c = xcalloc(1, sizeof *c);
	pthread_condattr_t ca;
	struct err e = {0};

	if (store_open(&c->s, path, 0, &e) != 0) {
		log_warnx("login stream: no checkpointing thread: %s", e.msg);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->poked, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
		log_warnx("login stream: no checkpointing thread: cannot start a thread");
		pthread_cond_destroy(&c->poked);
		pthread_mutex_destroy(&c->lock);
		store_close(c->s);
		free(c);
		return NULL;
	}
	return c;
}

void login_ckpt_poke(struct login_ckpt *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->commits++;
	pthread_cond_signal(&c->poked);
	pthread_mutex_unlock(&c->lock);
}

void login_ckpt_stop(struct login_ckpt *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->poked);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->poked);
	pthread_mutex_destroy(&c->lock);
	store_close(c->s);
	free(c);
}
