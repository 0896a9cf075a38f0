/* queue_calls.c — bench/queue's driver: queues a campaign's due e-mail as the sender does,
 * queue_due_some(MAX_ROWS) in a transaction of its own a call until everything due is in
 * (MAX_ROWS 0: one call, queue_due, as `cutoff run` and a stopped send do), through the store
 * and queue modules of the build it is linked with.
 * Usage: queue_calls DB CAMPAIGN NOW MAX_ROWS   Prints one line: the calls, the deliveries, wall
 * and CPU seconds, and the calls' median, p99 and longest (each holds the write lock). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "campaign.h"
#include "queue.h"
#include "schedule.h"
#include "store.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Queues until done; calls[] gets each call's seconds (grown as needed). 0 or the error. */
static int queue_all(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
		     int64_t max_rows, double **calls, size_t *n, int64_t *queued, struct err *e)
{
	size_t cap = 0;
	bool done = false;

	while (!done) {
		struct queue_counts q;
		double t = now_s();

		if (store_begin(s, e) != 0)
			return e->code;
		if (queue_due_some(s, c, campaign_id, now, max_rows, &q, &done, e) != 0) {
			store_rollback(s);
			return e->code;
		}
		if (store_commit(s, e) != 0)
			return e->code;
		if (*n == cap && (*calls = realloc(*calls, (cap = cap ? 2 * cap : 1024) *
							     sizeof **calls)) == NULL)
			abort();
		(*calls)[(*n)++] = now_s() - t;
		*queued += q.initial + q.reminder + q.final;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct store *s = NULL;
	struct store_campaign sc = {0};
	struct campaign *c = NULL;
	struct err e = {0};
	double *calls = NULL, t, cpu;
	int64_t now, queued = 0;
	size_t n = 0;
	int rc = 1;

	if (argc != 5) {
		fprintf(stderr, "usage: queue_calls DB CAMPAIGN NOW MAX_ROWS\n");
		return 64;
	}
	if (store_open(&s, argv[1], 0, &e) != 0 || store_campaign_get(s, argv[2], &sc, &e) != 0 ||
	    campaign_load_text(&c, sc.definition, "the database", sc.templates_dir, &e) != 0 ||
	    schedule_parse_instant(argv[3], &now, &e) != 0)
		goto out;
	t = now_s(), cpu = cpu_s();
	if (queue_all(s, c, sc.id, now, strtoll(argv[4], NULL, 10), &calls, &n, &queued, &e) != 0)
		goto out;
	t = now_s() - t, cpu = cpu_s() - cpu;
	qsort(calls, n, sizeof *calls, by_value);
	printf("%zu calls, %lld deliveries, %.2f s wall, %.2f s CPU; calls: median %.2f ms,"
	       " p99 %.2f ms, longest %.2f ms\n", n, (long long)queued, t, cpu,
	       calls[n / 2] * 1e3, calls[(size_t)((double)n * 0.99)] * 1e3, calls[n - 1] * 1e3);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "queue_calls: %s\n", e.msg);
	free(calls);
	campaign_free(c);
	store_campaign_clear(&sc);
	store_close(s);
	return rc;
}
