/* serve.c — `cutoff serve`: login decisions over HTTP/1.1 (RFC 9110, RFC 9112), JSON (RFC 8259),
 * bearer tokens (RFC 6750), Prometheus text metrics; libmicrohttpd threads, one decider. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"
#include "login.h"
#include "report.h"
#include "serve_pace.h"
#include "store.h"
#include "store_login.h"
#include "util.h"
#include "writeback.h"

#define STALE_CHECK_MS 1000 /* how often the decider looks for changed campaigns */
#define CKPT_PERIOD_MS 200  /* how often the checkpointer copies the WAL into the database */
#define CKPT_RESTART_FRAMES 32768 /* default wal_frames: a WAL of 128 MiB is started over */
#define CKPT_CONVERGED_FRAMES 1024 /* a pass that copied this few: the rest is the decider's */
#define CKPT_PASSES_MAX 16  /* passes back to back, at most, before asking for the restart */
#define DECIDER_CACHE_KIB 4096 /* the decider's page cache: see decider_main */
#define INDEX_EVERY 32768 /* default index_every: the tail's logins indexed in one bulk */
#define INDEX_STEP_KEYS 1024 /* keys sorted or added by a bulk's first step of each part */
#define INDEX_STEP_MIN 32    /* ... and at least, by any step */
#define INDEX_STEP_MAX 8192  /* ... and at most */
#define INDEX_STEP_NS 500000 /* the time a step should take: 0.5 ms (serve_pace.h) */
#define INDEX_IDLE_NS 10000000 /* no batch for 10 ms: idle, a bulk's steps need not be short */
#define TXN_EVENTS_MAX 5000 /* events decided in one transaction, at most (whole requests) */
#define DISCARD_MAX (4 * SERVE_BATCH_BODY_MAX) /* an oversized body is read this far, then cut */

/* ---- metrics ---------------------------------------------------------------------------- */

enum route { R_LOGINS, R_BATCH, R_USERS, R_HEALTHZ, R_METRICS, R_OTHER, R_COUNT };
static const char *const route_names[R_COUNT] = {
	"logins", "logins_batch", "users", "healthz", "metrics", "other",
};
static const unsigned statuses[] = {200, 400, 401, 404, 405, 500, 503};
#define S_COUNT (sizeof statuses / sizeof statuses[0])
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				 0.01,   0.025,   0.05,   0.1,   0.5,    1.0};
#define B_COUNT (sizeof buckets / sizeof buckets[0])

/* Durations counted into the buckets above. */
struct histogram {
	atomic_uint_fast64_t counts[B_COUNT + 1]; /* per bucket (not cumulative); last: +Inf */
	atomic_uint_fast64_t sum_ns;
};

/* The decider's steps, each timed once per batch (docs/api.md, Performance). */
enum step { STEP_GATHER, STEP_DECIDE, STEP_COMMIT, STEP_CHECKPOINT, STEP_INDEX, STEP_COUNT };
static const char *const step_names[STEP_COUNT] = {"gather", "decide", "commit", "checkpoint",
						   "index"};

/* A login request's way through the service, each part timed (request_completed): read (its
 * headers read to its events queued for the decider), queue (waiting to be taken into a
 * batch: the batch before, a bulk's step, the gathering), decide (its batch decided and
 * committed), sync (waiting for the fdatasync of the WAL that makes it durable), send (its
 * answer published until sent: its HTTP thread's loop). They add up to its latency. */
enum phase { PH_READ, PH_QUEUE, PH_DECIDE, PH_SYNC, PH_SEND, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"read", "queue", "decide", "sync", "send"};

struct metrics {
	atomic_uint_fast64_t requests[R_COUNT][S_COUNT];
	struct histogram latency;
	struct histogram phases[PH_COUNT]; /* answered logins (200) only */
	atomic_uint_fast64_t logins, reminders, completions, unknown, commits, busy, failed;
	atomic_uint_fast64_t indexed, index_runs; /* logins added to login_by_user in bulk */
	atomic_uint_fast64_t decide_ns, commit_ns; /* the decider's time: deciding, committing */
	/* One duration per batch: gathering, deciding and committing (those that succeeded: the
	 * commit histogram), restarting the WAL (checkpoint); their sums are the step totals. */
	struct histogram steps[STEP_COUNT];
	atomic_uint_fast64_t ckpt_truncate, ckpt_ns; /* the checkpointer's */
	atomic_uint_fast64_t ckpt_restart; /* the decider's, between batches */
	struct histogram ckpt_pass; /* each PASSIVE pass of the checkpointer (their count) */
	atomic_long ckpt_copied; /* frames the checkpointer's last pass copied */
	atomic_long ckpt_backfilled; /* frames of the WAL in the database after that pass */
	atomic_long restart_frames; /* frames the decider's last restart copied itself */
	atomic_uint_fast64_t resume_ns; /* the decider's: answering */
	struct histogram wal_sync; /* each fdatasync of the WAL by the syncer (their count) */
	struct histogram db_sync; /* each fdatasync of the database by the checkpointer */
	atomic_uint_fast64_t db_sync_failed; /* ... that failed (or its writeback did) */
	atomic_uint_fast64_t wb_pieces, wb_wait_ns, wb_waits_cut; /* its writebacks' (writeback.h) */
	atomic_long wal_frames; /* in the WAL at the last checkpoint */
	atomic_long in_flight;
	atomic_long campaigns;
	atomic_bool syncer_realtime; /* the syncer got SCHED_FIFO (thread_realtime) */
};

/* ---- the decider's queue ------------------------------------------------------------------ */

/* One request's events, waiting for the decider. */
struct job {
	struct login_event *ev;
	size_t n;
	struct buf answers;     /* the answers, comma-separated, once decided */
	unsigned result;        /* 200, 500 or 503: the decider's, published as status */
	unsigned status;        /* 0 while waiting; result, under the queue's lock */
	char error[300];
	pthread_cond_t done;    /* thread per connection: signalled once status is set */
	struct MHD_Connection *conn; /* thread pool: the suspended connection to resume */
	/* When it was queued, taken into a batch, committed (0: not), and its result published
	 * (enum phase) */
	int64_t queued_ns, taken_ns, committed_ns, answered_ns;
	struct job *next;
};

struct serve {
	struct serve_options o;
	unsigned char token_sha[32];
	/* SHA-256, fetched once: EVP_sha256() makes every EVP_Digest look the algorithm up
	 * again (three quarters of a short digest's cost: store_address_key). NULL: not found,
	 * EVP_sha256() then. */
	EVP_MD *sha256;
	struct MHD_Daemon *mhd;
	int listen_fd;               /* ours again after MHD_quiesce_daemon */
	atomic_bool draining;
	struct metrics m;

	pthread_t decider;
	pthread_mutex_t lock;
	pthread_cond_t work, done;   /* a job is waiting / the decider started */
	struct job *head, *tail;
	long queued;                 /* jobs in the queue */
	/* Whom queue_put must wake. Written under the lock; atomic, so that request_completed can
	 * test it without the lock. */
	_Atomic enum { D_BUSY, D_IDLE, D_GATHERING } decider_state;
	bool stop;                   /* the decider ends once the queue is empty */
	int start_rc;                /* the decider's start: 1 while starting */
	struct err start_err;

	pthread_t syncer;            /* makes committed batches durable, then answers them */
	pthread_cond_t sync_work;    /* a committed batch waits for the syncer */
	struct job *unsynced, *unsynced_tail; /* committed, not yet synced: not answered */
	long syncing;                /* jobs committed and not yet answered by the syncer */
	int wal_fd;                  /* the WAL, read-only, for fdatasync; -1 before the decider */
	atomic_bool wal_syncing;     /* the syncer is inside its fdatasync of the WAL */
	bool syncer_started, syncer_stop;
	int sync_errno;              /* a WAL sync failed: every later batch fails (sticky) */

	pthread_t checkpointer;      /* copies the WAL into the database, off the decider */
	pthread_cond_t tick;         /* wakes the checkpointer to stop */
	bool ckpt_started, ckpt_stop;
	atomic_bool restart_wanted;  /* the checkpointer asks the decider for a RESTART */
};

/* Counts a duration of ns into h (the last bucket counts: +Inf). */
static void histogram_add(struct histogram *h, int64_t ns)
{
	size_t i;

	for (i = 0; i < B_COUNT && (double)ns / 1e9 > buckets[i]; i++)
		;
	atomic_fetch_add(&h->counts[i], 1);
	atomic_fetch_add(&h->sum_ns, (uint64_t)ns);
}

/* The durations counted in h. */
static uint64_t histogram_count(struct histogram *h)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= B_COUNT; i++)
		n += atomic_load(&h->counts[i]);
	return n;
}

/*
 * Makes the calling thread SCHED_BATCH: a thread the decider wakes (an HTTP thread resuming a
 * connection it answered) or a timer wakes (the checkpointer) no longer preempts the thread
 * that was running, which was most often the decider, the one thread that bounds the
 * service, in the middle of its batch (measured: its involuntary context switches fell from
 * 1,800-6,600 to 170-2,400 in 15 s of load). It still gets its fair share of the CPU. A
 * failure (a system call filter) leaves the thread as it was.
 */
static void thread_no_wakeup_preemption(void)
{
	struct sched_param p = {0};

	(void)sched_setscheduler(0, SCHED_BATCH, &p);
}

#define SYNCER_RT_PRIORITY 1 /* SCHED_FIFO's lowest: above every normal thread, below the kernel's */
#define SHORT_SLICE_NS 100000 /* the shortest slice Linux grants (0.1 ms; 1.4 ms by default here) */

/* sched_setattr(2)'s argument, the kernel's struct sched_attr as first published (48 bytes):
 * glibc 2.36 has neither the call nor the type. */
struct slice_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};
_Static_assert(sizeof(struct slice_attr) == 48, "SCHED_ATTR_SIZE_VER0");

/*
 * Asks a short time slice for the calling thread (SCHED_OTHER, its nice value kept). Linux's
 * EEVDF scheduler (6.12 and later) takes a normal thread's sched_runtime as its slice: a thread
 * with a shorter one gets an earlier deadline, so when it wakes on a busy CPU it runs at once
 * instead of after the running thread's slice. For the decider, and the syncer where it cannot
 * be realtime (thread_realtime), which every answer waits for in turn, on the two CPUs that
 * wrk and the HTTP threads share (docs/api.md, Performance, eleventh pass): wrk's p99 fell
 * from 5.96-6.30 ms to 5.05-5.73 ms in three alternated pairs, the requests/s unchanged.
 * Their CPU is the same; only when they get it changes. An older kernel ignores the slice; a
 * failure (a system call filter) leaves the thread as it was.
 */
static void thread_short_slice(void)
{
	struct slice_attr a = {.size = sizeof a, .policy = SCHED_OTHER, .runtime = SHORT_SLICE_NS};
	pid_t tid = (pid_t)syscall(SYS_gettid);
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, (id_t)tid);
	if (errno != 0)
		return;
	a.nice = nice;
	(void)syscall(SYS_sched_setattr, tid, &a, 0);
}

/*
 * Puts the calling thread in the lowest realtime priority, SCHED_FIFO 1: for the WAL's syncer,
 * which sleeps in fdatasync nearly all the time and, when the disk is done, has a batch's
 * answers to release (about 60 us of CPU). With the shortest slice it still waited for a CPU
 * behind the decider or an HTTP thread: 1 % of its wake-ups by more than 0.5 ms (perf sched
 * timehist), which was most of the WAL syncs' tail above 1 ms and of wrk's p99 above 5 ms
 * (docs/api.md, Performance, fourteenth pass). Needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 1
 * (the unit's LimitRTPRIO=1); returns 0, or the error number of a refusal, the thread then
 * left as it was. Linux's realtime throttling (sched_rt_runtime_us) still leaves the other
 * threads 5 % of each second, should a batch of 5,000 events ever take long to answer.
 */
static int thread_realtime(void)
{
	struct sched_param p = {.sched_priority = SYNCER_RT_PRIORITY};

	return sched_setscheduler(0, SCHED_FIFO, &p) == 0 ? 0 : errno; /* 0: this thread */
}

/* ---- the decider -------------------------------------------------------------------------- */

struct decider {
	struct serve *sv;
	struct store *s;
	struct login_catalog *cat;
	struct login_session *ls;
	int64_t stale_checked_ns;
	uint64_t logins, reminders, completions, unknown; /* of the open transaction */
	int64_t tail; /* logins committed since the last bulk began (db/012), as counted here */
	struct store_login_bulk bulk; /* adding the keys of the tail, step by step */
	struct serve_pace pace; /* each step's keys, by the time the last ones took */
	int64_t batch_end_ns; /* when the last batch was committed (or failed) */
	struct err e;
};

/* Loads the campaigns, or reloads them when they changed (looked at once a second). */
static int decider_reload(struct decider *d, struct err *e)
{
	int64_t now = monotonic_ns();
	bool stale = false;
	struct login_catalog *cat = NULL;
	int rc;

	if (d->cat != NULL && now - d->stale_checked_ns < STALE_CHECK_MS * INT64_C(1000000))
		return 0;
	d->stale_checked_ns = now;
	if (d->cat != NULL &&
	    ((rc = login_catalog_stale(d->cat, d->s, &stale, e)) != 0 || !stale))
		return rc;
	if ((rc = login_catalog_load(&cat, d->s, e)) != 0)
		return rc;
	login_session_free(d->ls);
	login_catalog_free(d->cat);
	d->cat = cat;
	d->ls = login_session_new(cat, d->s);
	atomic_store(&d->sv->m.campaigns, (long)login_catalog_count(cat));
	log_info("serve: %zu campaign(s) loaded", login_catalog_count(cat));
	return 0;
}

/*
 * Loads the campaigns, or reloads them when they changed (looked at once a second). A reload
 * that fails (a campaign's templates gone, the database busy) keeps the campaigns loaded
 * before, with a warning, and is tried again a second later: one bad edit must not stop the
 * logins. Returns an error only when there is nothing loaded at all.
 */
static int decider_refresh(struct decider *d)
{
	struct err e = {0};
	int rc = decider_reload(d, &e);

	if (rc != 0 && d->cat != NULL) {
		log_warnx("serve: the campaigns changed but could not be reloaded (still deciding"
			  " with those loaded before): %s", e.msg);
		return 0;
	}
	if (rc != 0)
		err_set(&d->e, rc, "%s", e.msg);
	return rc;
}

/* Decides every event of the list inside the open transaction; answers kept in the jobs. */
static int decider_decide(struct decider *d, struct job *list)
{
	struct login_answer a;
	int rc;

	for (struct job *j = list; j != NULL; j = j->next) {
		for (size_t i = 0; i < j->n; i++) {
			if ((rc = login_decide(d->ls, &j->ev[i], &a, &d->e)) != 0)
				return rc;
			d->logins++, d->reminders += a.reminded;
			d->completions += a.completed_now > 0, d->unknown += !a.known;
			if (i > 0)
				buf_putc(&j->answers, ',');
			login_answer_json(&a, j->ev[i].user, &j->answers);
		}
	}
	return 0;
}

/* Forgets what a rolled-back attempt decided. */
static void decider_reset(struct decider *d, struct job *list)
{
	for (struct job *j = list; j != NULL; j = j->next)
		buf_reset(&j->answers);
	d->logins = d->reminders = d->completions = d->unknown = 0;
}

static void jobs_fail(struct job *list, unsigned status, const struct err *e)
{
	for (struct job *j = list; j != NULL; j = j->next) {
		j->result = status;
		snprintf(j->error, sizeof j->error, "%s", e->msg);
	}
}

/*
 * After a failed fdatasync of the WAL the kernel may have dropped the pages it could not write,
 * and what was committed after them may not be on disk either: nothing more is decided (500),
 * until the service is restarted (SQLite then reads the WAL as it is on disk). True then.
 */
static bool decider_sync_failed(struct decider *d, struct job *list)
{
	struct serve *sv = d->sv;
	int err;

	pthread_mutex_lock(&sv->lock);
	err = sv->sync_errno;
	pthread_mutex_unlock(&sv->lock);
	if (err == 0)
		return false;
	err_set(&d->e, ERR_IO, "the database's WAL could not be synced to disk (%s): logins are"
		" no longer recorded; restart the service once the disk is fixed", strerror(err));
	log_warnx("login batch not recorded: %s", d->e.msg);
	atomic_fetch_add(&sv->m.failed, 1);
	jobs_fail(list, 500, &d->e);
	return true;
}

/*
 * One transaction for the whole list: begin, decide, commit. A busy database is retried
 * (nothing of a rolled-back attempt was recorded) until busy_wait_ms; then 503.
 */
static void decider_batch(struct decider *d, struct job *list)
{
	int64_t until = monotonic_ns() + d->sv->o.busy_wait_ms * INT64_C(1000000);
	struct metrics *m = &d->sv->m;
	int64_t t0, t1, t2;
	int rc;

	if (decider_sync_failed(d, list))
		return;
	for (;;) {
		err_clear(&d->e);
		t0 = t1 = monotonic_ns();
		if ((rc = decider_refresh(d)) == 0 && (rc = store_begin(d->s, &d->e)) == 0) {
			if ((rc = decider_decide(d, list)) == 0) {
				t1 = monotonic_ns();
				rc = store_commit(d->s, &d->e);
			}
			if (rc != 0)
				store_rollback(d->s);
		}
		t2 = monotonic_ns();
		atomic_fetch_add(&m->decide_ns, (uint64_t)(t1 - t0));
		atomic_fetch_add(&m->commit_ns, (uint64_t)(t2 - t1));
		if (rc == 0) {
			histogram_add(&m->steps[STEP_DECIDE], t1 - t0);
			histogram_add(&m->steps[STEP_COMMIT], t2 - t1);
			break;
		}
		decider_reset(d, list);
		if (rc != ERR_TEMPFAIL || monotonic_ns() >= until) {
			log_warnx("login batch not recorded: %s", d->e.msg);
			atomic_fetch_add(&m->failed, 1);
			jobs_fail(list, rc == ERR_TEMPFAIL ? 503 : 500, &d->e);
			return;
		}
		atomic_fetch_add(&m->busy, 1);
		usleep(10000);
	}
	for (struct job *j = list; j != NULL; j = j->next) {
		j->result = 200;
		j->committed_ns = t2;
	}
	atomic_fetch_add(&m->commits, 1);
	atomic_fetch_add(&m->logins, d->logins);
	atomic_fetch_add(&m->reminders, d->reminders);
	atomic_fetch_add(&m->completions, d->completions);
	atomic_fetch_add(&m->unknown, d->unknown);
	d->tail += (int64_t)d->logins;
	decider_reset(d, NULL);
}

/*
 * Publishes the decided status of every job of list and wakes the requests that wait with a
 * thread each. Locked. Returns list when its requests are suspended connections instead, for
 * jobs_resume once the lock is released; NULL otherwise. (A service runs one kind or the
 * other.)
 */
static struct job *jobs_answer(struct job *list)
{
	int64_t now = monotonic_ns();

	for (struct job *j = list, *next; j != NULL; j = next) {
		next = j->next; /* a woken thread frees its job */
		j->status = j->result;
		j->answered_ns = now;
		if (j->conn == NULL)
			pthread_cond_signal(&j->done);
	}
	return list != NULL && list->conn != NULL ? list : NULL;
}

/*
 * Resumes the suspended connections of list, published by jobs_answer. Not locked: each
 * MHD_resume_connection writes libmicrohttpd's eventfd, and the HTTP thread that takes the
 * first answer must read its status under the lock (answer_job), so a batch's thirty resumes
 * made under the lock kept it waiting (Performance, fifteenth pass). A suspended connection
 * and its job stay until resumed, and libmicrohttpd is stopped only after the syncer and the
 * decider are joined; a job is gone once its connection resumes, hence next first.
 */
static void jobs_resume(struct job *list)
{
	for (struct job *j = list, *next; j != NULL; j = next) {
		next = j->next;
		MHD_resume_connection(j->conn);
	}
}

/* jobs_answer, then jobs_resume with the lock released for the resumes. Locked on entry and
 * on return. */
static void jobs_answer_resume(struct serve *sv, struct job *list)
{
	if ((list = jobs_answer(list)) != NULL) {
		pthread_mutex_unlock(&sv->lock);
		jobs_resume(list);
		pthread_mutex_lock(&sv->lock);
	}
}

/* Hands a committed batch to the syncer, which answers it once the WAL is synced. Locked. */
static void sync_queue_put(struct serve *sv, struct job *list)
{
	for (struct job *j = list; j != NULL; j = j->next) {
		sv->syncing++;
		if (j->next == NULL) {
			if (sv->unsynced_tail != NULL)
				sv->unsynced_tail->next = list;
			else
				sv->unsynced = list;
			sv->unsynced_tail = j;
			break;
		}
	}
	pthread_cond_signal(&sv->sync_work);
}

/* Takes whole jobs off the queue, up to TXN_EVENTS_MAX events (at least one job). Locked. */
static struct job *queue_take(struct serve *sv)
{
	struct job *list = sv->head, *last = sv->head;
	size_t n = last->n;
	int64_t now = monotonic_ns();

	while (last->next != NULL && n + last->next->n <= TXN_EVENTS_MAX)
		last = last->next, n += last->n;
	sv->head = last->next;
	if (sv->head == NULL)
		sv->tail = NULL;
	last->next = NULL;
	for (struct job *j = list; j != NULL; j = j->next) {
		sv->queued--;
		j->taken_ns = now;
	}
	return list;
}

/* True when no more requests are worth waiting for: every one in flight is queued or waits for
 * the WAL sync of its batch, the batch is full, or the service is stopping. Locked. */
static bool queue_gathered(const struct serve *sv)
{
	return sv->stop || sv->queued + sv->syncing >= atomic_load(&sv->m.in_flight) ||
	       sv->queued >= TXN_EVENTS_MAX;
}

/*
 * Before a batch, waits up to group_wait_us for the requests in flight that are not queued yet
 * (being read, or answered by the last commit and coming back on their keep-alive connection)
 * so that they share this commit rather than pay for the next one: with N connections busy,
 * batches alternate between two halves of N otherwise, each paying a full fsync. It waits
 * only while some request in flight is missing from the queue, so a lone login is not
 * delayed. Locked.
 */
static void queue_gather(struct serve *sv)
{
	int64_t until = monotonic_ns() + sv->o.group_wait_us * INT64_C(1000);
	struct timespec ts = {until / 1000000000, until % 1000000000};

	sv->decider_state = D_GATHERING;
	while (!queue_gathered(sv) && monotonic_ns() < until)
		pthread_cond_timedwait(&sv->work, &sv->lock, &ts);
	sv->decider_state = D_BUSY;
}

/*
 * Asked by the checkpointer, between batches: copies the frames its PASSIVE checkpoint did not
 * (those of the last few commits), so that the next commit writes the WAL from its start. A
 * reader in the way makes it a PASSIVE one; the checkpointer asks again.
 */
static void decider_restart_wal(struct decider *d)
{
	struct metrics *m = &d->sv->m;
	int64_t t0 = monotonic_ns();
	struct err e = {0};
	int done = 0;
	int rc = store_wal_checkpoint(d->s, STORE_CKPT_RESTART, NULL, &done, &e);
	int64_t ns = monotonic_ns() - t0;
	long before = atomic_load(&m->ckpt_backfilled);

	histogram_add(&m->steps[STEP_CHECKPOINT], ns);
	if (rc == 0) {
		atomic_fetch_add(&m->ckpt_restart, 1);
		/* Fewer than the checkpointer's last pass had copied: the WAL started over since
		 * (SQLite does it at the first commit after a pass copied it whole), and all of
		 * these are the restart's own. */
		atomic_store(&m->restart_frames, done >= before ? done - before : done);
	} else if (rc != ERR_TEMPFAIL) {
		log_warnx("serve: checkpoint: %s", e.msg);
	}
}

/* Whether a WAL sync failed: nothing more is written then. */
static bool decider_writes_stopped(struct decider *d)
{
	bool stopped;

	pthread_mutex_lock(&d->sv->lock);
	stopped = d->sv->sync_errno != 0;
	pthread_mutex_unlock(&d->sv->lock);
	return stopped;
}

/*
 * One step of the bulk that adds the tail's keys to login_by_user in key order, starting one
 * when none runs (store_login_bulk_step): the batches' commits leave the keys out, so that a
 * commit of 25 logins writes one random B-tree leaf a login, not two (docs/api.md,
 * Performance, sixth pass). A step runs between two batches or while idle (the whole bulk at
 * once held every request for 25 to 100 ms), and takes as many keys as fit in INDEX_STEP_NS by
 * the last steps of its part (eighth pass: 1,024 keys a step took 2.5 ms at the median, up to
 * 5 ms when moving claims, and the next batch waited for it). Idle (no batch for
 * INDEX_IDLE_NS: under load the queue is empty between most batches, while their answers are on
 * their way), at least INDEX_STEP_KEYS, as before: fewer transactions, the bulk ends sooner. A
 * failure abandons the bulk; the tail stays, to be indexed by a later one.
 */
static void decider_index_step(struct decider *d)
{
	bool idle = monotonic_ns() - d->batch_end_ns >= INDEX_IDLE_NS;
	struct metrics *m = &d->sv->m;
	int64_t t0 = monotonic_ns();
	struct err e = {0};
	int rc = 0;

	if (decider_writes_stopped(d))
		return;
	if (!d->bulk.active) {
		rc = store_login_bulk_start(d->s, &d->bulk, &e);
		d->tail = 0; /* the logins committed from now on are the next bulk's */
	}
	if (rc == 0 && d->bulk.active) {
		enum store_bulk_part part = store_login_bulk_part(&d->bulk);
		size_t keys = serve_pace_keys(&d->pace, (int)part);
		int64_t t1 = monotonic_ns();

		if (idle && keys < INDEX_STEP_KEYS)
			keys = INDEX_STEP_KEYS;
		rc = store_login_bulk_step(d->s, &d->bulk, keys, &e);
		/* only whole steps: the one that ended its part took fewer keys */
		if (rc == 0 && store_login_bulk_part(&d->bulk) == part)
			serve_pace_done(&d->pace, (int)part, keys, monotonic_ns() - t1);
		if (d->bulk.wrote) /* a transaction: the checkpointer looks at the WAL */
			atomic_fetch_add(&m->index_runs, 1);
		if (rc == 0 && !d->bulk.active)
			atomic_fetch_add(&m->indexed, (uint64_t)(d->bulk.last - d->bulk.through));
	}
	histogram_add(&m->steps[STEP_INDEX], monotonic_ns() - t0);
	if (rc != 0)
		log_warnx("serve: indexing the logins for support (tried again later): %s", e.msg);
}

/* At the stop: the whole tail at once (no request waits any more), so that none is left. */
static void decider_index_all(struct decider *d)
{
	struct err e = {0};
	int64_t n = 0;

	if (decider_writes_stopped(d))
		return;
	if (store_login_index(d->s, 1, &n, &e) != 0)
		log_warnx("serve: indexing the logins for support: %s", e.msg);
	else
		atomic_fetch_add(&d->sv->m.indexed, (uint64_t)n);
}

/* Waits for work; with a tail left to index, for index_idle_ms at most: true when that passed
 * without any. Locked. */
static bool decider_idle(struct decider *d)
{
	struct serve *sv = d->sv;
	int64_t until = monotonic_ns() + sv->o.index_idle_ms * INT64_C(1000000);
	struct timespec ts = {until / 1000000000, until % 1000000000};

	if (d->tail == 0 || sv->o.index_idle_ms <= 0) {
		pthread_cond_wait(&sv->work, &sv->lock);
		return false;
	}
	return pthread_cond_timedwait(&sv->work, &sv->lock, &ts) == ETIMEDOUT &&
	       sv->head == NULL && !sv->stop;
}

/* Waits for work. Locked. Meanwhile runs the steps of a bulk, and starts one once
 * index_idle_ms pass without work while a tail is left. */
static void decider_wait(struct decider *d)
{
	struct serve *sv = d->sv;

	while (sv->head == NULL && !sv->stop) {
		if (d->bulk.active || decider_idle(d)) {
			pthread_mutex_unlock(&sv->lock);
			decider_index_step(d);
			pthread_mutex_lock(&sv->lock);
		}
	}
}

static void decider_loop(struct decider *d)
{
	struct serve *sv = d->sv;
	int64_t index_every = sv->o.index_every > 0 ? sv->o.index_every : INDEX_EVERY;
	struct job *list;
	int64_t t0;

	pthread_mutex_lock(&sv->lock);
	for (;;) {
		sv->decider_state = D_IDLE;
		decider_wait(d);
		sv->decider_state = D_BUSY;
		if (sv->head == NULL)
			break;
		t0 = monotonic_ns();
		queue_gather(sv);
		histogram_add(&sv->m.steps[STEP_GATHER], monotonic_ns() - t0);
		list = queue_take(sv);
		pthread_mutex_unlock(&sv->lock);
		decider_batch(d, list);
		d->batch_end_ns = t0 = monotonic_ns();
		pthread_mutex_lock(&sv->lock);
		if (list->result == 200)
			sync_queue_put(sv, list); /* answered once its WAL frames are on disk */
		else /* nothing was recorded: no sync to wait for */
			jobs_answer_resume(sv, list);
		atomic_fetch_add(&sv->m.resume_ns, (uint64_t)(monotonic_ns() - t0));
		if (atomic_exchange(&sv->restart_wanted, false)) {
			pthread_mutex_unlock(&sv->lock);
			decider_restart_wal(d);
			pthread_mutex_lock(&sv->lock);
		}
		if (d->bulk.active || d->tail >= index_every) {
			pthread_mutex_unlock(&sv->lock);
			decider_index_step(d);
			pthread_mutex_lock(&sv->lock);
		}
	}
	pthread_mutex_unlock(&sv->lock);
}

/* ---- the syncer ---------------------------------------------------------------------------- */

/* A failed sync: its batches get 500 (recorded or not, nobody can say until the service
 * restarts), and so does every later batch (decider_sync_failed). Locked. */
static void syncer_failed(struct serve *sv, struct job *list, int err)
{
	log_warnx("serve: fdatasync of the WAL failed (%s): the last logins may not be on disk;"
		  " no more logins are recorded until the service restarts", strerror(err));
	if (sv->sync_errno == 0)
		sv->sync_errno = err;
	atomic_fetch_add(&sv->m.failed, 1);
	for (struct job *j = list; j != NULL; j = j->next) {
		j->result = 500;
		snprintf(j->error, sizeof j->error, "the database's WAL could not be synced to disk"
			 " (%s): this login may or may not be recorded", strerror(err));
	}
}

/*
 * The decider commits with synchronous=NORMAL: a COMMIT writes its WAL frames (store_walbuf.h:
 * a write error fails it) without waiting for the disk. This thread makes them durable with
 * an fdatasync of the WAL and only then answers the batches committed before the sync began,
 * while the decider goes on with the next batch. No answer is sent before the frames that
 * record it are on disk; and no checkpoint copies frames that are not: SQLite syncs the WAL
 * before it copies any (walCheckpoint), on the checkpointer's connection as on the decider's.
 */
static void *syncer_main(void *arg)
{
	struct serve *sv = arg;
	struct job *list;
	int64_t t0;
	int err;

	/* Not SCHED_BATCH: woken by the disk, it must answer at once, not after a time slice. */
	(void)pthread_setname_np(pthread_self(), "cutoff-syncer");
	if ((err = thread_realtime()) == 0) {
		atomic_store(&sv->m.syncer_realtime, true);
	} else {
		log_info("serve: the WAL's syncer stays a normal thread (SCHED_FIFO %d: %s; see"
			 " LimitRTPRIO= in docs/api.md)", SYNCER_RT_PRIORITY, strerror(err));
		thread_short_slice();
	}
	pthread_mutex_lock(&sv->lock);
	for (;;) {
		while (sv->unsynced == NULL && !sv->syncer_stop)
			pthread_cond_wait(&sv->sync_work, &sv->lock);
		if (sv->unsynced == NULL)
			break;
		list = sv->unsynced;
		sv->unsynced = sv->unsynced_tail = NULL;
		pthread_mutex_unlock(&sv->lock);
		t0 = monotonic_ns();
		atomic_store(&sv->wal_syncing, true); /* the checkpointer's writeback waits */
		err = fdatasync(sv->wal_fd) == 0 ? 0 : errno;
		atomic_store(&sv->wal_syncing, false);
		histogram_add(&sv->m.wal_sync, monotonic_ns() - t0);
		pthread_mutex_lock(&sv->lock);
		if (err != 0)
			syncer_failed(sv, list, err);
		for (struct job *j = list; j != NULL; j = j->next)
			sv->syncing--;
		jobs_answer_resume(sv, list);
	}
	pthread_mutex_unlock(&sv->lock);
	return NULL;
}

/* Opens the WAL for the syncer, starts it, and makes the decider's commits wait for no sync. */
static int start_syncer(struct decider *d)
{
	struct serve *sv = d->sv;
	const char *path = store_wal_path(d->s);
	int rc;

	if (path == NULL || (sv->wal_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return err_sys(&d->e, ERR_IO, errno, "opening the WAL %s (to sync it)",
			       path ? path : "(none)");
	if ((rc = pthread_create(&sv->syncer, NULL, syncer_main, sv)) != 0)
		return err_sys(&d->e, ERR_SOFTWARE, rc, "starting the WAL's syncer thread");
	sv->syncer_started = true;
	return store_set_durable(d->s, false, &d->e);
}

/* Stops one of the service's own threads, if started: sets its stop flag under the lock,
 * wakes it through the condition it waits on, and joins it. */
static void stop_thread(struct serve *sv, pthread_t t, bool *started, bool *stop,
			pthread_cond_t *wake)
{
	if (!*started)
		return;
	pthread_mutex_lock(&sv->lock);
	*stop = true;
	pthread_cond_signal(wake);
	pthread_mutex_unlock(&sv->lock);
	pthread_join(t, NULL);
	*started = false;
}

/* Lets the syncer answer what it holds, then stops it. */
static void stop_syncer(struct serve *sv)
{
	stop_thread(sv, sv->syncer, &sv->syncer_started, &sv->syncer_stop, &sv->sync_work);
}

/* Tells serve_start how the decider started. */
static void decider_started(struct serve *sv, int rc, const struct err *e)
{
	pthread_mutex_lock(&sv->lock);
	sv->start_rc = rc;
	if (rc != 0)
		sv->start_err = *e;
	pthread_cond_broadcast(&sv->done);
	pthread_mutex_unlock(&sv->lock);
}

static void *decider_main(void *arg)
{
	struct decider d = {.sv = arg};
	int rc;

	serve_pace_init(&d.pace, INDEX_STEP_NS, INDEX_STEP_MIN, INDEX_STEP_KEYS, INDEX_STEP_MAX);

	(void)pthread_setname_np(pthread_self(), "cutoff-decider"); /* for top -H and perf */
	thread_short_slice();
	/*
	 * The store is opened here: its connection belongs to this thread alone. Its page cache
	 * is small: SQLite's B-tree balancing parks a page at a key past the end of the file
	 * (the pending-byte page), so nearly every commit ends with a scan of the whole cache's
	 * hash table (pcache1TruncateUnsafe), whose cost grows with the cache. With the 64 MiB
	 * of store_login_stream that scan was a fifth of the decider's CPU; logins hit random
	 * recipients, so a larger cache saves few reads (measured, 4 s runs: 36 us of decider
	 * CPU a login with 4 MiB, 40 with 16 MiB, 48 with 64 MiB).
	 */
	if ((rc = store_open(&d.s, d.sv->o.db_path, STORE_WAL_BUFFERED, &d.e)) == 0 &&
	    (rc = store_login_stream(d.s, STORE_LOGIN_MAPPED, &d.e)) == 0 &&
	    (rc = store_cache_size(d.s, DECIDER_CACHE_KIB, &d.e)) == 0 &&
	    (rc = store_wal_autocheckpoint(d.s, 0, &d.e)) == 0 && /* the checkpointer's job */
	    (rc = store_login_tail(d.s, &d.tail, &d.e)) == 0 &&
	    (rc = decider_refresh(&d)) == 0) /* also opens (creates) the WAL */
		rc = start_syncer(&d);
	if (rc == 0)
		store_login_index_later(d.s, true); /* decider_index_step adds the keys in bulk */
	decider_started(d.sv, rc, &d.e);
	if (rc == 0)
		decider_loop(&d);
	if (rc == 0 && (d.tail > 0 || d.bulk.active))
		decider_index_all(&d); /* leaves no tail behind, as the other commands do */
	store_login_bulk_end(&d.bulk);
	stop_syncer(d.sv); /* every committed batch synced and answered */
	login_session_free(d.ls);
	login_catalog_free(d.cat);
	store_close(d.s);
	return NULL;
}

/* ---- the checkpointer ----------------------------------------------------------------------- */

/* What the checkpointer remembers between its looks at the WAL. */
struct ckpt_state {
	uint64_t seen;   /* the commit count at the last look */
	bool clean;      /* the WAL was emptied since */
	int backfilled;  /* frames of the WAL in the database after the last pass */
	int db_fd;       /* the database file, read-only, synced here; -1: SQLite syncs it */
	bool no_writeback; /* the file system refused sync_file_range: fdatasync alone */
	bool failed;     /* a sync of the database failed: no more checkpoints (checkpointer_sync) */
};

/*
 * Makes what a pass copied durable: the database's dirty pages written back in pieces, each
 * once the syncer is out of its WAL fdatasync (writeback_paced), then an fdatasync of the file,
 * which then has only the metadata and the device's cache left to flush. Written at once, the
 * thousands of random pages a pass leaves made every WAL sync behind them wait (issue 8).
 * Returns 0; ERR_IO with e filled.
 */
static int checkpointer_sync(struct serve *sv, struct ckpt_state *c, struct err *e)
{
	struct metrics *m = &sv->m;
	struct writeback_stats st = {0};
	struct stat sb;
	int64_t t0;
	int rc = 0;

	if (fstat(c->db_fd, &sb) != 0)
		return err_sys(e, ERR_IO, errno, "database %s: fstat", sv->o.db_path);
	if (!c->no_writeback) {
		rc = writeback_paced(c->db_fd, sb.st_size, WRITEBACK_PIECE, &sv->wal_syncing, 0, &st, e);
		atomic_fetch_add(&m->wb_pieces, (uint64_t)st.pieces);
		atomic_fetch_add(&m->wb_wait_ns, (uint64_t)st.waited_ns);
		atomic_fetch_add(&m->wb_waits_cut, (uint64_t)st.waits_cut);
		if (rc == WRITEBACK_UNSUPPORTED) {
			log_warnx("serve: database %s: no paced writeback (sync_file_range refused):"
				  " each checkpoint's pages are written by its fdatasync at once",
				  sv->o.db_path);
			c->no_writeback = true, rc = 0;
		}
		if (rc != 0) {
			err_prefix(e, "database %s: ", sv->o.db_path);
			return rc;
		}
	}
	t0 = monotonic_ns();
	rc = fdatasync(c->db_fd) == 0 ? 0 : err_sys(e, ERR_IO, errno, "database %s: fdatasync",
						     sv->o.db_path);
	histogram_add(&m->db_sync, monotonic_ns() - t0);
	return rc;
}

/*
 * A failed sync of the database: the pages the passes copied may not be on disk, and the kernel
 * may have marked them clean, so no later sync would write them again. The WAL still holds
 * them; so the checkpointer stops here: it never again asks for a restart nor truncates, and
 * the WAL is never started over while this process runs (the decider restarts only when asked;
 * SQLite's own sync in a restart already asked for, or at close, fails too: Linux reports the
 * error to every descriptor open on the file). The WAL grows until the service restarts.
 */
static void checkpointer_failed(struct serve *sv, struct ckpt_state *c, const struct err *e)
{
	log_warnx("serve: checkpoint: %s: the database file may be missing pages the WAL holds;"
		  " no more checkpoints (the WAL grows) until the service restarts", e->msg);
	atomic_fetch_add(&sv->m.db_sync_failed, 1);
	c->failed = true;
}

/*
 * One PASSIVE pass, the database file synced after it when it copied frames (off the decider:
 * SQLite itself syncs it only when a pass copied the whole WAL, which never happens while
 * commits go on, so without this the restart's sync would write every page copied since the
 * last restart): by checkpointer_sync, or by SQLite (PASSIVE_SYNC) when the file could not be
 * opened here. Returns 0 with *frames (in the WAL) and *copied (by this pass); ERR_TEMPFAIL;
 * an error, logged.
 */
static int checkpointer_pass(struct serve *sv, struct store *s, struct ckpt_state *c,
			     int *frames, int *copied)
{
	struct metrics *m = &sv->m;
	enum store_checkpoint mode = c->db_fd >= 0 ? STORE_CKPT_PASSIVE : STORE_CKPT_PASSIVE_SYNC;
	int64_t t0 = monotonic_ns(), ns;
	struct err e = {0};
	int done = 0, rc;

	rc = store_wal_checkpoint(s, mode, frames, &done, &e);
	if (rc == 0) {
		/* Fewer frames backfilled than last time: the WAL was started over in between. */
		*copied = done >= c->backfilled ? done - c->backfilled : done;
		c->backfilled = done;
		if (mode == STORE_CKPT_PASSIVE && *copied > 0 &&
		    (rc = checkpointer_sync(sv, c, &e)) != 0)
			checkpointer_failed(sv, c, &e);
	}
	ns = monotonic_ns() - t0;
	atomic_fetch_add(&m->ckpt_ns, (uint64_t)ns);
	if (rc != 0) {
		if (rc != ERR_TEMPFAIL && !c->failed) /* busy: a reader or writer in the way */
			log_warnx("serve: checkpoint: %s", e.msg);
		return rc;
	}
	histogram_add(&m->ckpt_pass, ns);
	atomic_store(&m->wal_frames, (long)*frames);
	atomic_store(&m->ckpt_copied, (long)*copied);
	atomic_store(&m->ckpt_backfilled, (long)done);
	return 0;
}

/*
 * A WAL written without a pause is never wholly copied (new frames come in while a pass runs),
 * so it would grow for ever: past wal_frames the decider starts it over, between two batches,
 * by a RESTART that copies what the passes left and syncs the database, while every request
 * waits. So first passes run back to back, each copying what was committed during the one
 * before, until one copies few frames: the restart then has about as few to copy and sync.
 */
static void checkpointer_converge(struct serve *sv, struct store *s, struct ckpt_state *c)
{
	int frames = 0, copied = INT_MAX;

	for (int i = 0; i < CKPT_PASSES_MAX && copied > CKPT_CONVERGED_FRAMES; i++)
		if (checkpointer_pass(sv, s, c, &frames, &copied) != 0)
			return; /* asked again at the next look */
	atomic_store(&sv->restart_wanted, true);
}

/*
 * One look at the WAL: while logins are being committed, a PASSIVE pass (it copies what no
 * reader still needs and never blocks the decider), and past wal_frames the passes that lead to
 * a restart; once a whole period went by without a commit, a TRUNCATE, so that the WAL file
 * shrinks back to nothing when the service is idle.
 */
static void checkpointer_step(struct serve *sv, struct store *s, struct ckpt_state *c)
{
	struct metrics *m = &sv->m;
	/* The decider's bulk index transactions write the WAL too. */
	uint64_t commits = atomic_load(&m->commits) + atomic_load(&m->index_runs);
	bool idle = commits == c->seen;
	long restart_at = sv->o.wal_frames > 0 ? sv->o.wal_frames : CKPT_RESTART_FRAMES;
	struct err e = {0};
	int64_t t0;
	int frames = 0, copied = 0, rc;

	c->seen = commits;
	if ((idle && c->clean) || c->failed)
		return;
	if (!idle) {
		c->clean = false;
		if (checkpointer_pass(sv, s, c, &frames, &copied) == 0 && frames >= restart_at)
			checkpointer_converge(sv, s, c);
		return;
	}
	t0 = monotonic_ns();
	rc = store_wal_checkpoint(s, STORE_CKPT_TRUNCATE, NULL, NULL, &e);
	atomic_fetch_add(&m->ckpt_ns, (uint64_t)(monotonic_ns() - t0));
	if (rc == 0) {
		atomic_fetch_add(&m->ckpt_truncate, 1);
		atomic_store(&m->wal_frames, 0);
		/* The next restart's frames are counted from an empty WAL, not from the last
		 * pass's (test_serve.sh once saw cutoff_serve_restart_frames at -366). */
		atomic_store(&m->ckpt_backfilled, 0);
		c->clean = true, c->backfilled = 0;
	} else if (rc != ERR_TEMPFAIL) {
		log_warnx("serve: checkpoint: %s", e.msg);
	}
}

/*
 * The decider's connection never checkpoints (wal_autocheckpoint 0): a checkpoint there would
 * hold every request of its batch for the database file's writes and fsync. This thread does
 * it instead, on a connection of its own, every CKPT_PERIOD_MS.
 */
static void *checkpointer_main(void *arg)
{
	struct serve *sv = arg;
	struct store *s = NULL;
	struct err e = {0};
	struct ckpt_state c = {.db_fd = -1};
	int64_t at;

	if (store_open(&s, sv->o.db_path, 0, &e) != 0) {
		log_warnx("serve: no checkpointer (the WAL grows until the service stops): %s",
			  e.msg);
		return NULL;
	}
	/* Read-only is enough to sync: fdatasync and sync_file_range write the page cache's
	 * pages, whoever dirtied them. */
	if ((c.db_fd = open(store_db_path(s), O_RDONLY | O_CLOEXEC)) < 0)
		log_warn("serve: database %s: cannot open it to sync it after checkpoints; SQLite"
			 " syncs it instead (PASSIVE_SYNC), all at once", store_db_path(s));
	(void)pthread_setname_np(pthread_self(), "cutoff-ckpt");
	thread_no_wakeup_preemption();
	pthread_mutex_lock(&sv->lock);
	while (!sv->ckpt_stop) {
		at = monotonic_ns() + CKPT_PERIOD_MS * INT64_C(1000000);
		struct timespec ts = {at / 1000000000, at % 1000000000};

		while (!sv->ckpt_stop && monotonic_ns() < at)
			pthread_cond_timedwait(&sv->tick, &sv->lock, &ts);
		if (sv->ckpt_stop)
			break;
		pthread_mutex_unlock(&sv->lock);
		checkpointer_step(sv, s, &c);
		pthread_mutex_lock(&sv->lock);
	}
	pthread_mutex_unlock(&sv->lock);
	if (c.db_fd >= 0)
		close(c.db_fd);
	store_close(s);
	return NULL;
}

static void start_checkpointer(struct serve *sv)
{
	int rc = pthread_create(&sv->checkpointer, NULL, checkpointer_main, sv);

	sv->ckpt_started = rc == 0;
	if (rc != 0)
		log_warnx("serve: no checkpointer thread (%s): the WAL grows until the service"
			  " stops", strerror(rc));
}

static void stop_checkpointer(struct serve *sv)
{
	stop_thread(sv, sv->checkpointer, &sv->ckpt_started, &sv->ckpt_stop, &sv->tick);
}

/* Appends j to the queue. Locked. False when the decider has stopped. */
static bool queue_put(struct serve *sv, struct job *j)
{
	if (sv->stop)
		return false;
	if (sv->tail != NULL)
		sv->tail->next = j;
	else
		sv->head = j;
	sv->tail = j;
	sv->queued++;
	j->queued_ns = monotonic_ns();
	/* A gathering decider is woken once, when the batch is whole, not at every job: on two
	 * cores each wake-up is a context switch taken from the threads that feed it. */
	if (sv->decider_state == D_IDLE ||
	    (sv->decider_state == D_GATHERING && queue_gathered(sv)))
		pthread_cond_signal(&sv->work);
	return true;
}

/*
 * Hands j to the decider. With a thread per connection, waits until it is decided (or the
 * decider stopped: status 0). With a thread pool, suspends the connection, which the decider
 * resumes once j is decided; returns true then (the answer is for the next call).
 */
static bool decide_submit(struct serve *sv, struct job *j, struct MHD_Connection *c)
{
	bool queued;

	pthread_mutex_lock(&sv->lock);
	if (sv->o.threads > 0) {
		if ((queued = !sv->stop)) {
			MHD_suspend_connection(c); /* before the decider can see j, resume it */
			j->conn = c;
			queue_put(sv, j);
		}
		pthread_mutex_unlock(&sv->lock);
		return queued;
	}
	pthread_cond_init(&j->done, NULL);
	if (queue_put(sv, j))
		while (j->status == 0)
			pthread_cond_wait(&j->done, &sv->lock);
	pthread_mutex_unlock(&sv->lock);
	pthread_cond_destroy(&j->done);
	return false;
}

/* ---- requests ------------------------------------------------------------------------------ */

struct request {
	struct serve *sv;
	enum route route;
	int64_t t0;
	struct buf body;
	size_t received;    /* body bytes seen, kept or not */
	bool too_large;
	unsigned status;    /* what was answered */
	json_t *root;       /* a login body, parsed */
	struct login_event one;
	struct job *job;    /* its events, decided or being decided */
};

/* Queues a response of status with body b (taken) and content type json or text. */
static enum MHD_Result respond(struct MHD_Connection *c, struct request *r, unsigned status,
			       struct buf *b, const char *type)
{
	struct MHD_Response *resp;
	enum MHD_Result ok;
	size_t len = b->len;
	char *data = buf_steal(b);

	if (data == NULL)
		data = xstrdup("");
	resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(data);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (atomic_load(&r->sv->draining)) /* stopping: the client reconnects elsewhere */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"cutoff\"");
	if (status == 405)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					r->route == R_LOGINS || r->route == R_BATCH ? "POST"
										    : "GET, HEAD");
	ok = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	r->status = status;
	return ok;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, struct request *r,
				    unsigned status, struct buf *b)
{
	return respond(c, r, status, b, "application/json");
}

/* {"error":MESSAGE}, with its status. */
static enum MHD_Result respond_error(struct MHD_Connection *c, struct request *r,
				     unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum MHD_Result respond_error(struct MHD_Connection *c, struct request *r,
				     unsigned status, const char *fmt, ...)
{
	char msg[600];
	struct buf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	buf_init(&b);
	buf_puts(&b, "{\"error\":");
	login_json_string(&b, msg);
	buf_puts(&b, "}\n");
	return respond_json(c, r, status, &b);
}

static enum route route_of(const char *url)
{
	if (strcmp(url, "/v1/logins") == 0)
		return R_LOGINS;
	if (strcmp(url, "/v1/logins:batch") == 0)
		return R_BATCH;
	if (str_starts_with(url, "/v1/users/") && url[10] != '\0')
		return R_USERS;
	if (strcmp(url, "/healthz") == 0)
		return R_HEALTHZ;
	if (strcmp(url, "/metrics") == 0)
		return R_METRICS;
	return R_OTHER;
}

/* True when the request carries "Authorization: Bearer TOKEN" with the right token. */
static bool authorized(const struct serve *sv, struct MHD_Connection *c)
{
	const EVP_MD *md = sv->sha256 != NULL ? sv->sha256 : EVP_sha256();
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	unsigned char sha[32];
	unsigned int n = 0;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	/* Digests of equal length, compared in constant time: neither the token nor its
	 * length leaks through timing. */
	if (!EVP_Digest(h, strlen(h), sha, &n, md, NULL) || n != sizeof sha)
		return false;
	return CRYPTO_memcmp(sha, sv->token_sha, sizeof sha) == 0;
}

/* ---- login bodies ---------------------------------------------------------------------- */

/* Checks a string member: NULL or a string of at most max bytes without control characters. */
static bool member_string(json_t *v, const char *name, bool required, size_t max,
			  const char **out, char *why, size_t n)
{
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			snprintf(why, n, "\"%s\" is missing", name);
		return !required;
	}
	if (!json_is_string(v) || (required && json_string_length(v) == 0)) {
		snprintf(why, n, "\"%s\" must be a %sstring", name, required ? "non-empty " : "");
		return false;
	}
	if (json_string_length(v) > max) {
		snprintf(why, n, "\"%s\" is longer than %zu bytes", name, max);
		return false;
	}
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v) || str_has_control(*out)) {
		snprintf(why, n, "\"%s\" holds a control character", name);
		return false;
	}
	return true;
}

/* Reads one login object into ev; false with the reason in why. */
static bool parse_event(const struct serve *sv, json_t *o, struct login_event *ev, char *why,
			size_t n)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o)) {
		snprintf(why, n, "a login must be a JSON object");
		return false;
	}
	json_object_foreach(o, key, v) {
		if (strcmp(key, "user") != 0 && strcmp(key, "client_version") != 0 &&
		    strcmp(key, "platform") != 0) {
			snprintf(why, n, "unknown field \"%.64s\" (known: user, client_version,"
				 " platform)", key);
			return false;
		}
	}
	ev->at = sv->o.now_fixed ? sv->o.now : (int64_t)time(NULL);
	return member_string(json_object_get(o, "user"), "user", true, SERVE_USER_MAX, &ev->user,
			     why, n) &&
	       member_string(json_object_get(o, "client_version"), "client_version", false,
			     SERVE_FIELD_MAX, &ev->client_version, why, n) &&
	       member_string(json_object_get(o, "platform"), "platform", false, SERVE_FIELD_MAX,
			     &ev->platform, why, n);
}

/* The events of a batch body {"events":[...]}; false with the reason in why. */
static bool parse_batch(const struct serve *sv, json_t *root, struct job *j, char *why, size_t n)
{
	json_t *events = json_object_get(root, "events");
	char inner[400];

	if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(events)) {
		snprintf(why, n, "a batch must be {\"events\":[LOGIN, ...]} and nothing else");
		return false;
	}
	j->n = json_array_size(events);
	if (j->n == 0 || j->n > SERVE_BATCH_MAX) {
		snprintf(why, n, "a batch holds 1 to %d events, not %zu", SERVE_BATCH_MAX, j->n);
		return false;
	}
	j->ev = xcalloc(j->n, sizeof *j->ev);
	for (size_t i = 0; i < j->n; i++) {
		if (!parse_event(sv, json_array_get(events, i), &j->ev[i], inner, sizeof inner)) {
			snprintf(why, n, "events[%zu]: %s", i, inner);
			return false;
		}
	}
	return true;
}

/* The answer of a decided job, or its error. */
static enum MHD_Result answer_job(struct serve *sv, struct MHD_Connection *c, struct request *r)
{
	struct job *j = r->job;
	unsigned status;
	struct buf b;

	pthread_mutex_lock(&sv->lock); /* status is published under the lock */
	status = j->status;
	pthread_mutex_unlock(&sv->lock);
	if (status == 0)
		return respond_error(c, r, 503, "the service is stopping: nothing was recorded;"
				     " try again");
	if (status != 200)
		return respond_error(c, r, status, "%s: nothing was recorded%s", j->error,
				     status == 503 ? "; try again" : "");
	buf_init(&b);
	buf_puts(&b, r->route == R_BATCH ? "{\"answers\":[" : "");
	buf_append(&b, j->answers.data, j->answers.len);
	buf_puts(&b, r->route == R_BATCH ? "]}\n" : "\n");
	return respond_json(c, r, 200, &b);
}

/* POST /v1/logins and /v1/logins:batch: parse, decide with the others, answer. */
static enum MHD_Result handle_logins(struct serve *sv, struct MHD_Connection *c,
				     struct request *r)
{
	json_error_t jerr;
	char why[500];
	struct job *j;

	if (r->job != NULL) /* resumed: decided */
		return answer_job(sv, c, r);
	r->root = json_loadb(r->body.data ? r->body.data : "", r->body.len,
			     JSON_REJECT_DUPLICATES, &jerr);
	if (r->root == NULL)
		return respond_error(c, r, 400, "malformed JSON: %s (line %d, column %d)", jerr.text,
				     jerr.line, jerr.column);
	r->job = j = xcalloc(1, sizeof *j);
	buf_init(&j->answers);
	if (r->route == R_LOGINS ? (j->ev = &r->one, j->n = 1,
				    parse_event(sv, r->root, &r->one, why, sizeof why))
				 : parse_batch(sv, r->root, j, why, sizeof why)) {
		if (decide_submit(sv, j, c))
			return MHD_YES; /* suspended until decided */
		return answer_job(sv, c, r);
	}
	return respond_error(c, r, 400, "%s", why);
}

static void request_free(struct request *r)
{
	if (r->job != NULL) {
		if (r->job->ev != &r->one)
			free(r->job->ev);
		buf_free(&r->job->answers);
		free(r->job);
	}
	json_decref(r->root);
	buf_free(&r->body);
	free(r);
}

/* GET /v1/users/USER: everything `cutoff user USER --format json` says. */
static enum MHD_Result handle_user(struct serve *sv, struct MHD_Connection *c, struct request *r,
				   const char *user)
{
	struct report_user u = {0};
	struct store *s = NULL;
	struct err e = {0};
	enum MHD_Result ok;
	struct buf b;
	int rc;

	if (strlen(user) > SERVE_USER_MAX || str_has_control(user))
		return respond_error(c, r, 400, "a user id is at most %d bytes, without control"
				     " characters", SERVE_USER_MAX);
	buf_init(&b);
	/* A read-only connection of this thread's own, for this request. */
	if ((rc = store_open(&s, sv->o.db_path, STORE_READONLY, &e)) == 0 &&
	    (rc = report_user_load(&u, s, user, &e)) == 0)
		report_user_write_json(&b, &u);
	if (rc == 0)
		ok = respond_json(c, r, 200, &b);
	else
		ok = respond_error(c, r, rc == ERR_NOTFOUND ? 404 : rc == ERR_TEMPFAIL ? 503 : 500,
				   "%s", e.msg);
	report_user_free(&u);
	store_close(s);
	buf_free(&b);
	return ok;
}

static void metrics_counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
		   (unsigned long long)v);
}

/* The rows of one histogram; label is "" or one label, e.g. step="decide". */
static void metrics_histogram_rows(struct buf *b, const char *name, const char *label,
				   struct histogram *h)
{
	const char *comma = label[0] != '\0' ? "," : "";
	char braced[64] = "";
	uint64_t sum = 0;

	if (label[0] != '\0')
		snprintf(braced, sizeof braced, "{%s}", label);
	for (size_t i = 0; i <= B_COUNT; i++) {
		sum += atomic_load(&h->counts[i]);
		if (i < B_COUNT)
			buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, comma,
				   buckets[i], (unsigned long long)sum);
		else
			buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, comma,
				   (unsigned long long)sum);
	}
	buf_printf(b, "%s_sum%s %.6f\n%s_count%s %llu\n", name, braced,
		   (double)atomic_load(&h->sum_ns) / 1e9, name, braced, (unsigned long long)sum);
}

static void metrics_histogram(struct buf *b, const char *name, const char *help,
			      struct histogram *h)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	metrics_histogram_rows(b, name, "", h);
}

/* One histogram per step of the decider, labelled step="...". */
static void metrics_steps(struct buf *b, struct metrics *m)
{
	static const char name[] = "cutoff_serve_decider_step_duration_seconds";
	char label[32];

	buf_printf(b, "# HELP %s Each batch's time in each step of the decider (checkpoint:"
		   " starting the WAL over).\n# TYPE %s histogram\n", name, name);
	for (int i = 0; i < STEP_COUNT; i++) {
		snprintf(label, sizeof label, "step=\"%s\"", step_names[i]);
		metrics_histogram_rows(b, name, label, &m->steps[i]);
	}
}

/* One histogram per phase of an answered login request, labelled phase="...". */
static void metrics_phases(struct buf *b, struct metrics *m)
{
	static const char name[] = "cutoff_serve_login_phase_duration_seconds";
	char label[32];

	buf_printf(b, "# HELP %s Each answered login request's time in each phase: read (headers"
		   " to queued), queue (waiting for its batch), decide (its batch decided and"
		   " committed), sync (waiting for the WAL's fdatasync), send (answered to sent)."
		   "\n# TYPE %s histogram\n", name, name);
	for (int i = 0; i < PH_COUNT; i++) {
		snprintf(label, sizeof label, "phase=\"%s\"", phase_names[i]);
		metrics_histogram_rows(b, name, label, &m->phases[i]);
	}
}

/* GET /metrics: Prometheus text format 0.0.4. */
static enum MHD_Result handle_metrics(struct serve *sv, struct MHD_Connection *c,
				      struct request *r)
{
	struct metrics *m = &sv->m;
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "# HELP cutoff_serve_requests_total HTTP requests answered, by route and"
		     " status.\n# TYPE cutoff_serve_requests_total counter\n");
	for (int i = 0; i < R_COUNT; i++)
		for (size_t k = 0; k < S_COUNT; k++)
			if (atomic_load(&m->requests[i][k]) > 0 || (k == 0 && i < R_USERS))
				buf_printf(&b, "cutoff_serve_requests_total{route=\"%s\","
					       "code=\"%u\"} %llu\n", route_names[i], statuses[k],
					   (unsigned long long)atomic_load(&m->requests[i][k]));
	metrics_counter(&b, "cutoff_serve_logins_total", "Logins decided and recorded.",
			atomic_load(&m->logins));
	metrics_counter(&b, "cutoff_serve_reminders_shown_total", "Reminders answered (shown).",
			atomic_load(&m->reminders));
	metrics_counter(&b, "cutoff_serve_completions_total", "Logins that completed a user.",
			atomic_load(&m->completions));
	metrics_counter(&b, "cutoff_serve_unknown_users_total", "Logins of users no campaign has.",
			atomic_load(&m->unknown));
	metrics_counter(&b, "cutoff_serve_commits_total", "Transactions committed (group commits).",
			atomic_load(&m->commits));
	metrics_counter(&b, "cutoff_serve_logins_indexed_total", "Logins whose keys were added"
			" to login_by_user in bulk, after their commits.", atomic_load(&m->indexed));
	metrics_counter(&b, "cutoff_serve_busy_retries_total", "Batches retried: database busy.",
			atomic_load(&m->busy));
	metrics_counter(&b, "cutoff_serve_failed_batches_total", "Batches not recorded (503/500).",
			atomic_load(&m->failed));
	buf_printf(&b, "# HELP cutoff_serve_decider_seconds_total The decider's time, by step.\n"
		       "# TYPE cutoff_serve_decider_seconds_total counter\n"
		       "cutoff_serve_decider_seconds_total{step=\"decide\"} %.6f\n"
		       "cutoff_serve_decider_seconds_total{step=\"commit\"} %.6f\n"
		       "cutoff_serve_decider_seconds_total{step=\"checkpoint\"} %.6f\n"
		       "cutoff_serve_decider_seconds_total{step=\"gather\"} %.6f\n"
		       "cutoff_serve_decider_seconds_total{step=\"answer\"} %.6f\n",
		   (double)atomic_load(&m->decide_ns) / 1e9, (double)atomic_load(&m->commit_ns) / 1e9,
		   (double)atomic_load(&m->steps[STEP_CHECKPOINT].sum_ns) / 1e9,
		   (double)atomic_load(&m->steps[STEP_GATHER].sum_ns) / 1e9,
		   (double)atomic_load(&m->resume_ns) / 1e9);
	metrics_histogram(&b, "cutoff_serve_request_duration_seconds",
			  "Time from a request's headers to its answer sent.", &m->latency);
	metrics_histogram(&b, "cutoff_serve_commit_duration_seconds",
			  "Time of each group commit that succeeded (its WAL frames written; their sync:"
			  " cutoff_serve_wal_sync_duration_seconds).",
			  &m->steps[STEP_COMMIT]);
	metrics_steps(&b, m);
	metrics_phases(&b, m);
	metrics_histogram(&b, "cutoff_serve_wal_sync_duration_seconds",
			  "Each fdatasync of the WAL that makes committed batches durable before"
			  " their answers.", &m->wal_sync);
	buf_printf(&b, "# HELP cutoff_serve_checkpoints_total WAL checkpoints, by mode.\n"
		       "# TYPE cutoff_serve_checkpoints_total counter\n"
		       "cutoff_serve_checkpoints_total{mode=\"passive\"} %llu\n"
		       "cutoff_serve_checkpoints_total{mode=\"restart\"} %llu\n"
		       "cutoff_serve_checkpoints_total{mode=\"truncate\"} %llu\n",
		   (unsigned long long)histogram_count(&m->ckpt_pass),
		   (unsigned long long)atomic_load(&m->ckpt_restart),
		   (unsigned long long)atomic_load(&m->ckpt_truncate));
	buf_printf(&b, "# HELP cutoff_serve_checkpoint_seconds_total The checkpointer's time.\n"
		       "# TYPE cutoff_serve_checkpoint_seconds_total counter\n"
		       "cutoff_serve_checkpoint_seconds_total %.6f\n"
		       "# HELP cutoff_serve_wal_frames Frames in the WAL at the last checkpoint.\n"
		       "# TYPE cutoff_serve_wal_frames gauge\ncutoff_serve_wal_frames %ld\n",
		   (double)atomic_load(&m->ckpt_ns) / 1e9, atomic_load(&m->wal_frames));
	buf_printf(&b, "# HELP cutoff_serve_checkpoint_copied_frames Frames the checkpointer's"
		       " last PASSIVE pass copied.\n"
		       "# TYPE cutoff_serve_checkpoint_copied_frames gauge\n"
		       "cutoff_serve_checkpoint_copied_frames %ld\n"
		       "# HELP cutoff_serve_restart_frames Frames the decider's last WAL restart"
		       " copied (those the checkpointer's passes left).\n"
		       "# TYPE cutoff_serve_restart_frames gauge\ncutoff_serve_restart_frames %ld\n",
		   atomic_load(&m->ckpt_copied), atomic_load(&m->restart_frames));
	metrics_histogram(&b, "cutoff_serve_checkpoint_pass_duration_seconds",
			  "Each PASSIVE pass of the checkpointer, the database's sync included.",
			  &m->ckpt_pass);
	metrics_histogram(&b, "cutoff_serve_checkpoint_db_sync_duration_seconds",
			  "Each fdatasync of the database by the checkpointer, after its paced"
			  " writeback.", &m->db_sync);
	metrics_counter(&b, "cutoff_serve_checkpoint_db_sync_failures_total", "Syncs of the"
			" database after a checkpoint that failed (the checkpointer then stops).",
			atomic_load(&m->db_sync_failed));
	metrics_counter(&b, "cutoff_serve_checkpoint_writeback_pieces_total", "Pieces of the"
			" database written back between the WAL's syncs (sync_file_range).",
			atomic_load(&m->wb_pieces));
	metrics_counter(&b, "cutoff_serve_checkpoint_writeback_waits_cut_total", "Pieces started"
			" while a WAL sync still ran (the wait for it is bounded).",
			atomic_load(&m->wb_waits_cut));
	buf_printf(&b, "# HELP cutoff_serve_checkpoint_writeback_wait_seconds_total The"
		       " checkpointer's time waiting for the WAL's syncs before its pieces.\n"
		       "# TYPE cutoff_serve_checkpoint_writeback_wait_seconds_total counter\n"
		       "cutoff_serve_checkpoint_writeback_wait_seconds_total %.6f\n",
		   (double)atomic_load(&m->wb_wait_ns) / 1e9);
	buf_printf(&b, "# HELP cutoff_serve_in_flight Requests being answered.\n"
		       "# TYPE cutoff_serve_in_flight gauge\ncutoff_serve_in_flight %ld\n"
		       "# HELP cutoff_serve_campaigns Campaigns logins are decided against.\n"
		       "# TYPE cutoff_serve_campaigns gauge\ncutoff_serve_campaigns %ld\n"
		       "# HELP cutoff_serve_syncer_realtime 1 when the WAL's syncer runs at"
		       " SCHED_FIFO 1, 0 when refused (it then asks for the shortest slice).\n"
		       "# TYPE cutoff_serve_syncer_realtime gauge\ncutoff_serve_syncer_realtime %d\n",
		   atomic_load(&m->in_flight), atomic_load(&m->campaigns),
		   atomic_load(&m->syncer_realtime) ? 1 : 0);
	return respond(c, r, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- the access handler ------------------------------------------------------------------- */

static bool method_fits(enum route route, const char *method)
{
	if (route == R_LOGINS || route == R_BATCH)
		return strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* The first call, on the headers: refuse early what needs no body to refuse. */
static enum MHD_Result on_headers(struct serve *sv, struct MHD_Connection *c, struct request *r,
				  const char *method)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	size_t max = r->route == R_BATCH ? SERVE_BATCH_BODY_MAX : SERVE_BODY_MAX;
	long len;

	if (atomic_load(&sv->draining))
		return respond_error(c, r, 503, "the service is stopping; try again");
	if (r->route != R_HEALTHZ && !authorized(sv, c))
		return respond_error(c, r, 401, "missing or wrong bearer token (Authorization:"
				     " Bearer TOKEN)");
	if (r->route == R_OTHER)
		return respond_error(c, r, 404, "no such resource (see docs/api.md)");
	if (!method_fits(r->route, method))
		return respond_error(c, r, 405, "method %.16s not allowed here", method);
	if (cl != NULL && (!str_to_long(cl, 0, LONG_MAX, &len) || (size_t)len > max))
		return respond_error(c, r, 400, "the body is larger than %zu bytes", max);
	return MHD_YES;
}

/* The last call, the body read whole. */
static enum MHD_Result on_request(struct serve *sv, struct MHD_Connection *c, struct request *r,
				  const char *url)
{
	size_t max = r->route == R_BATCH ? SERVE_BATCH_BODY_MAX : SERVE_BODY_MAX;
	struct buf b;

	if (r->too_large)
		return respond_error(c, r, 400, "the body is larger than %zu bytes", max);
	switch (r->route) {
	case R_LOGINS:
	case R_BATCH:
		return handle_logins(sv, c, r);
	case R_USERS:
		return handle_user(sv, c, r, url + 10);
	case R_METRICS:
		return handle_metrics(sv, c, r);
	default:
		buf_init(&b);
		buf_printf(&b, "{\"status\":\"ok\",\"campaigns\":%ld}\n",
			   atomic_load(&sv->m.campaigns));
		return respond_json(c, r, 200, &b);
	}
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *c, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct serve *sv = cls;
	struct request *r = *con_cls;

	(void)version;
	if (r == NULL) {
		r = xcalloc(1, sizeof *r);
		r->t0 = monotonic_ns();
		r->sv = sv;
		r->route = route_of(url);
		buf_init(&r->body);
		*con_cls = r;
		atomic_fetch_add(&sv->m.in_flight, 1);
		return on_headers(sv, c, r, method);
	}
	if (r->status != 0) { /* refused on its headers: the body is not wanted */
		r->received += *upload_data_size;
		*upload_data_size = 0;
		return r->received > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (*upload_data_size > 0) {
		r->received += *upload_data_size;
		if (r->received <= (r->route == R_BATCH ? SERVE_BATCH_BODY_MAX : SERVE_BODY_MAX))
			buf_append(&r->body, upload_data, *upload_data_size);
		else
			r->too_large = true;
		*upload_data_size = 0;
		return r->received > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	return on_request(sv, c, r, url);
}

/* A request is over (answered, or its connection gone): count it and free it. */
static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct serve *sv = cls;
	struct request *r = *con_cls;
	struct metrics *m = &sv->m;
	int64_t ns;

	(void)c, (void)toe;
	if (r == NULL)
		return;
	ns = monotonic_ns() - r->t0;
	if (r->status == 200 && r->job != NULL && r->job->committed_ns != 0) {
		const struct job *j = r->job;
		const int64_t at[PH_COUNT + 1] = {r->t0, j->queued_ns, j->taken_ns,
						  j->committed_ns, j->answered_ns, r->t0 + ns};

		for (int p = 0; p < PH_COUNT; p++)
			histogram_add(&m->phases[p], at[p + 1] - at[p]);
	}
	if (r->status != 0) {
		histogram_add(&m->latency, ns);
		for (size_t k = 0; k < S_COUNT; k++)
			if (statuses[k] == r->status)
				atomic_fetch_add(&m->requests[r->route][k], 1);
	}
	atomic_fetch_sub(&m->in_flight, 1);
	/* One fewer in flight may be what a gathering decider waits for: the requests its last
	 * batch answered leave the count here, once sent, and nothing else would wake it before
	 * the next request is queued or its wait runs out (Performance, fifteenth pass). The
	 * decider sets its state before it tests the count, and this reads it after the count
	 * fell: one of the two sees the other. */
	if (atomic_load(&sv->decider_state) == D_GATHERING) {
		pthread_mutex_lock(&sv->lock);
		if (sv->decider_state == D_GATHERING && queue_gathered(sv))
			pthread_cond_signal(&sv->work);
		pthread_mutex_unlock(&sv->lock);
	}
	request_free(r);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warnx("serve: %s", msg); /* a limit reached, a client misbehaving */
}

/* ---- start and stop --------------------------------------------------------------------- */

/* Starts the decider thread and waits for it to open the store and load the campaigns. */
static int start_decider(struct serve *sv, struct err *e)
{
	int rc;

	sv->start_rc = 1;
	if ((rc = pthread_create(&sv->decider, NULL, decider_main, sv)) != 0)
		return err_sys(e, ERR_SOFTWARE, rc, "starting the decider thread");
	pthread_mutex_lock(&sv->lock);
	while (sv->start_rc == 1)
		pthread_cond_wait(&sv->done, &sv->lock);
	rc = sv->start_rc;
	pthread_mutex_unlock(&sv->lock);
	if (rc != 0) {
		pthread_join(sv->decider, NULL);
		*e = sv->start_err;
	}
	return rc;
}

/* libmicrohttpd's threads are its own: each is made SCHED_BATCH when it takes a connection
 * (this runs on the thread that accepted it; a thread per connection inherits it). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	(void)cls, (void)c, (void)socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		thread_no_wakeup_preemption();
}

static int start_mhd(struct serve *sv, struct err *e)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;

	/* poll, not epoll, by default: a connection is suspended while its login is decided,
	 * which costs epoll two epoll_ctl calls a request (out of the set and back in); poll
	 * looks at every connection of its thread at each wake-up instead, which is cheaper
	 * up to some hundreds of connections (measured with 64: 17 us of HTTP-thread CPU a
	 * login against 20). --epoll for many more, mostly idle, keep-alive connections. */
	if (sv->o.threads > 0)
		flags |= (sv->o.epoll ? MHD_USE_EPOLL : MHD_USE_POLL) | MHD_ALLOW_SUSPEND_RESUME;
	else
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	sv->mhd = MHD_start_daemon(
		flags, 0, NULL, NULL, access_handler, sv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, sv, /* first, or MHD's own logger speaks */
		MHD_OPTION_THREAD_POOL_SIZE, sv->o.threads > 1 ? sv->o.threads : 0,
		MHD_OPTION_LISTEN_SOCKET, sv->listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, sv->o.connection_limit,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, sv->o.per_ip_limit,
		MHD_OPTION_CONNECTION_TIMEOUT, sv->o.timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024),
		MHD_OPTION_NOTIFY_COMPLETED, request_completed, sv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, sv,
		MHD_OPTION_END);
	if (sv->mhd == NULL)
		return err_set(e, ERR_SOFTWARE, "libmicrohttpd did not start (see the messages"
			       " above; is the listening socket valid?)");
	return 0;
}

static struct serve *serve_new(const struct serve_options *o)
{
	struct serve *sv = xcalloc(1, sizeof *sv);
	unsigned int n = 0;

	sv->o = *o;
	sv->listen_fd = o->listen_fd;
	sv->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_Digest(o->token, o->token_len, sv->token_sha, &n,
		   sv->sha256 != NULL ? sv->sha256 : EVP_sha256(), NULL);
	pthread_mutex_init(&sv->lock, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* queue_gather's deadline */
	pthread_cond_init(&sv->work, &ca);
	pthread_cond_init(&sv->sync_work, NULL);
	sv->wal_fd = -1;
	pthread_cond_init(&sv->tick, &ca); /* the checkpointer's period */
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&sv->done, NULL);
	return sv;
}

static void serve_free(struct serve *sv)
{
	pthread_mutex_destroy(&sv->lock);
	pthread_cond_destroy(&sv->work);
	pthread_cond_destroy(&sv->sync_work);
	if (sv->wal_fd >= 0)
		close(sv->wal_fd);
	pthread_cond_destroy(&sv->tick);
	pthread_cond_destroy(&sv->done);
	OPENSSL_cleanse(sv->token_sha, sizeof sv->token_sha);
	EVP_MD_free(sv->sha256);
	free(sv);
}

int serve_start(struct serve **out, const struct serve_options *o, struct err *e)
{
	struct serve *sv = serve_new(o);
	int rc;

	*out = NULL;
	if ((rc = start_decider(sv, e)) != 0) {
		close(sv->listen_fd);
		serve_free(sv);
		return rc;
	}
	start_checkpointer(sv);
	if ((rc = start_mhd(sv, e)) != 0) {
		close(sv->listen_fd);
		sv->listen_fd = -1;
		serve_stop(sv);
		return rc;
	}
	*out = sv;
	return 0;
}

/* Stops the decider once every queued job is answered. */
static void stop_decider(struct serve *sv)
{
	pthread_mutex_lock(&sv->lock);
	sv->stop = true;
	pthread_cond_signal(&sv->work);
	pthread_mutex_unlock(&sv->lock);
	pthread_join(sv->decider, NULL);
}

long serve_stop(struct serve *sv)
{
	int64_t until;
	long left = 0;

	if (sv == NULL)
		return 0;
	if (sv->mhd != NULL) {
		/* No new connections; new requests on open ones get 503 (draining). */
		int fd = MHD_quiesce_daemon(sv->mhd);

		atomic_store(&sv->draining, true);
		until = monotonic_ns() + sv->o.drain_ms * INT64_C(1000000);
		while ((left = atomic_load(&sv->m.in_flight)) > 0 && monotonic_ns() < until)
			usleep(5000);
		/* The decider answers what is queued; what comes later is refused (503). Past the
		 * deadline, the connections it resumes get a moment to send their answers. */
		stop_decider(sv);
		until = monotonic_ns() + 2000 * INT64_C(1000000);
		while ((left = atomic_load(&sv->m.in_flight)) > 0 && monotonic_ns() < until)
			usleep(5000);
		MHD_stop_daemon(sv->mhd);
		if (fd >= 0)
			close(fd);
	} else {
		stop_decider(sv);
	}
	stop_checkpointer(sv);
	serve_free(sv);
	return left;
}

/* ---- listening sockets -------------------------------------------------------------------- */

static int listen_on(int fd, const struct sockaddr *sa, socklen_t len, const char *what,
		     struct err *e)
{
	int one = 1;

	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, sa, len) != 0)
		return err_sys(e, ERR_IO, errno, "cannot bind %s", what);
	if (listen(fd, 1024) != 0)
		return err_sys(e, ERR_IO, errno, "cannot listen on %s", what);
	return 0;
}

int serve_listen_tcp(const char *addr, int *fd, struct err *e)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	char *host = xstrdup(addr), *port = strrchr(host, ':');
	int rc = 0;

	*fd = -1;
	if (port == NULL || port == host || port[1] == '\0') {
		rc = err_set(e, ERR_USAGE, "--listen %s: give ADDRESS:PORT, e.g. 127.0.0.1:8625",
			     addr);
		goto out;
	}
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']')
		memmove(host, host + 1, strlen(host)), host[strlen(host) - 1] = '\0';
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		rc = err_set(e, ERR_USAGE, "--listen %s: not a numeric address and port", addr);
		goto out;
	}
	if ((*fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		rc = err_sys(e, ERR_IO, errno, "socket for %s", addr);
	else
		rc = listen_on(*fd, ai->ai_addr, ai->ai_addrlen, addr, e);
out:
	if (rc != 0 && *fd >= 0)
		close(*fd), *fd = -1;
	if (ai != NULL)
		freeaddrinfo(ai);
	free(host);
	return rc;
}

int serve_listen_unix(const char *path, int *fd, struct err *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int rc;

	*fd = -1;
	if (strlen(path) >= sizeof sun.sun_path)
		return err_set(e, ERR_USAGE, "--socket %s: longer than %zu bytes", path,
			       sizeof sun.sun_path - 1);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return err_set(e, ERR_IO, "--socket %s: a file that is not a socket is there", path);
	if (lstat(path, &st) == 0 && unlink(path) != 0)
		return err_sys(e, ERR_IO, errno, "--socket %s: removing the old socket", path);
	if ((*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return err_sys(e, ERR_IO, errno, "socket for %s", path);
	if ((rc = listen_on(*fd, (struct sockaddr *)&sun, sizeof sun, path, e)) == 0 &&
	    chmod(path, 0660) != 0)
		rc = err_sys(e, ERR_IO, errno, "chmod 0660 %s", path);
	if (rc != 0)
		close(*fd), *fd = -1;
	return rc;
}

int serve_listen_systemd(int *fd, struct err *e)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	long p, n;

	*fd = -1;
	if (pid == NULL || fds == NULL || !str_to_long(pid, 1, LONG_MAX, &p) || p != getpid())
		return 0;
	if (!str_to_long(fds, 0, 1000, &n) || n != 1)
		return err_set(e, ERR_USAGE, "systemd passed %s sockets: cutoff serve takes one"
			       " (ListenStream= once in cutoff-serve.socket)", fds);
	unsetenv("LISTEN_PID"), unsetenv("LISTEN_FDS"), unsetenv("LISTEN_FDNAMES");
	*fd = 3; /* SD_LISTEN_FDS_START */
	fcntl(*fd, F_SETFD, FD_CLOEXEC);
	/* Several threads accept on it: one must never block in accept() the other won. */
	fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK);
	return 0;
}
