/* checkpointer.c — copies the WAL into the database on a thread of its own, when asked. */
#include "checkpointer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "util.h"

#define CHECKPOINTER_NICE 10 /* added to the nice value the thread starts with */

struct checkpointer {
	struct store *s; /* the thread's own connection */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* to the thread: asked, or stopping */
	pthread_cond_t done; /* from the thread: a pass ended */
	bool asked, running, stopping;
	long passes, failed;
	int frames;          /* in the WAL at the last pass */
};

/* One pass; its figures under the lock. */
static void pass(struct checkpointer *c)
{
	struct err e = {0};
	int frames = -1;
	int rc = store_wal_checkpoint(c->s, STORE_CKPT_PASSIVE_SYNC, &frames, NULL, &e);

	if (rc != 0 && rc != ERR_TEMPFAIL)
		log_warnx("checkpoint: %s", e.msg);
	pthread_mutex_lock(&c->mu);
	c->passes++;
	if (rc != 0)
		c->failed++;
	else
		c->frames = frames;
	pthread_mutex_unlock(&c->mu);
}

static void *checkpointer_main(void *arg)
{
	struct checkpointer *c = arg;

	/* Background work: on Linux a thread's nice value is its own (setpriority(2)), and this
	 * one's passes (50 to 100 ms of CPU each) otherwise took half of the core the import's
	 * reader runs on, which then fell behind the storing thread (bench/import: the storing
	 * thread waited 0.21 to 0.27 s for rows, against 0.11 to 0.125 s with this). A pass
	 * still runs whenever a core is free, and the writer copies by itself past its WAL
	 * limit (checkpointer_committed), so the WAL stays bounded. Best effort: a failure
	 * leaves the thread at its creator's priority. */
	id_t self = (id_t)syscall(SYS_gettid);
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, self);
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, self, nice + CHECKPOINTER_NICE);
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->asked && !c->stopping)
			pthread_cond_wait(&c->wake, &c->mu);
		if (c->stopping)
			break;
		c->asked = false;
		c->running = true;
		pthread_mutex_unlock(&c->mu);
		pass(c);
		pthread_mutex_lock(&c->mu);
		c->running = false;
		pthread_cond_broadcast(&c->done);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int checkpointer_start(struct checkpointer **out, const char *path, struct err *e)
{
	struct checkpointer *c = xcalloc(1, sizeof *c);
	int rc;

	*out = NULL;
	if ((rc = store_open(&c->s, path, 0, e)) != 0) {
		free(c);
		return rc;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->done, NULL);
	if ((rc = pthread_create(&c->thread, NULL, checkpointer_main, c)) != 0) {
		store_close(c->s);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->wake);
		pthread_cond_destroy(&c->done);
		free(c);
		return err_sys(e, ERR_TEMPFAIL, rc, "starting the checkpoint thread");
	}
	*out = c;
	return 0;
}

void checkpointer_kick(struct checkpointer *c)
{
	pthread_mutex_lock(&c->mu);
	c->asked = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

void checkpointer_committed(struct checkpointer *c, struct store *writer, int wal_frames)
{
	struct err e = {0};

	if (store_wal_frames(writer) < wal_frames) {
		checkpointer_kick(c);
		return;
	}
	checkpointer_idle(c);
	if (store_wal_checkpoint(writer, STORE_CKPT_PASSIVE, NULL, NULL, &e) != 0)
		log_warnx("checkpoint: %s", e.msg);
}

void checkpointer_idle(struct checkpointer *c)
{
	pthread_mutex_lock(&c->mu);
	while (c->asked || c->running)
		pthread_cond_wait(&c->done, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

void checkpointer_stats(struct checkpointer *c, long *passes, long *failed, int *frames)
{
	pthread_mutex_lock(&c->mu);
	*passes = c->passes;
	*failed = c->failed;
	*frames = c->frames;
	pthread_mutex_unlock(&c->mu);
}

void checkpointer_stop(struct checkpointer *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	store_close(c->s);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->done);
	free(c);
}
