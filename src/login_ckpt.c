/* login_ckpt.c — the checkpointing thread beside a login stream (login_ckpt.h). */
#include "login_ckpt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "store.h"
#include "store_login.h"
#include "util.h"

struct login_ckpt {
	struct store *s;   /* the thread's own connection; only the thread uses it */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t poked;
	uint64_t commits;  /* pokes so far (under lock) */
	uint64_t copied;   /* the pokes the last checkpoint started after (under lock) */
	bool stop;         /* under lock */
};

/* Waits for a commit not yet copied, or for stop; returns with the lock held. */
static bool ckpt_wait(struct login_ckpt *c, uint64_t *target)
{
	while (!c->stop && c->copied == c->commits)
		pthread_cond_wait(&c->poked, &c->lock);
	*target = c->commits;
	return !c->stop;
}

static void *ckpt_main(void *ud)
{
	struct login_ckpt *c = ud;
	struct err e = {0};
	uint64_t target;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	while (rc == 0 && ckpt_wait(c, &target)) {
		pthread_mutex_unlock(&c->lock);
		rc = store_login_checkpoint(c->s, &e);
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
	struct err e = {0};

	if (store_open(&c->s, path, 0, &e) != 0) {
		log_warnx("login stream: no checkpointing thread: %s", e.msg);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->poked, NULL);
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
