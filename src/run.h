/* run.h — the daily run: everything due in every campaign, idempotently (what `cutoff run` and
 * the systemd timer do). */
#ifndef CUTOFF_RUN_H
#define CUTOFF_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounces.h"
#include "campaign.h"
#include "config.h"
#include "err.h"
#include "schedule.h"
#include "sender.h"
#include "store.h"

/*
 * Sends one campaign with sender_send's contract (queue what is due, recover, send, retry
 * deferred, expire at the cutoff); the caller may put a parallel sender here.
 */
typedef int (*run_send_fn)(void *ud, struct store *s, const struct campaign *c,
			   int64_t campaign_id, const struct sender_options *o,
			   struct sender_summary *sum, struct err *e);

struct run_options {
	int64_t now;        /* the clock (--now) */
	bool dry_run;       /* compose, classify, count; send nothing, change nothing */
	bool progress;      /* progress lines on stderr (a terminal) */
	bool log_attempts;  /* key=value lines per attempt (journald) */
	run_send_fn send;   /* NULL: sender_send */
	void *send_ud;
};

/* What the run did with one campaign. */
struct run_campaign {
	char *name;
	char *timezone;
	char state[16];               /* before the run: active or paused */
	int64_t reminder_start_at, cutoff_at;
	bool sent;                    /* the sender ran: send is its summary */
	struct sender_summary send;
	bool ended;                   /* its cutoff has passed: ended now (not in a dry run) */
	int64_t expired;              /* unsent deliveries failed as expired when it ended */
	struct schedule_period period; /* the login-reminder period now */
	size_t n_periods;
	int rc;                       /* 0, or what stopped this campaign (error) */
	struct err error;
};

struct run_summary {
	bool bounces_ran;             /* config bounces.maildir is set */
	struct bounces_summary bounces;
	int bounces_rc;
	struct err bounces_error;
	struct run_campaign *campaigns; /* by name */
	size_t n;
	bool interrupted;             /* SIGINT/SIGTERM: the campaigns after it were not run */
};

/*
 * The daily job, for the store's campaigns at o->now; the caller holds the run lock.
 * 1. Returned mail: when config bounces.maildir is set, bounces_process_maildir reads it
 *    first, so that this run already skips the addresses it suppresses.
 * 2. Every active campaign before its cutoff: o->send (sender_send) queues what became due
 *    (each segment's first e-mail, the latest reminder e-mail occurrence, the final notice:
 *    one delivery per recipient per occurrence, so a second run the same day or a run after
 *    missed days queues nothing twice and forgets nothing), sends it, and retries deferred
 *    mail whose time has come. Paused campaigns are skipped.
 * 3. Every active or paused campaign whose cutoff has passed is ended: state 'ended' (login
 *    reminders stop: logins only look at active campaigns) and its unsent deliveries fail as
 *    expired, in one transaction.
 * Login reminders need no work here: they are derived at login time (login.h), so the run
 *    only reports the current period.
 * A campaign that fails (its templates no longer load, say) is reported in its entry and
 * the others still run. Returns 0 with *out filled (free with run_summary_free) unless the
 * store fails before any campaign is looked at; the caller reads the entries for the exit
 * status (run_status).
 */
int run_daily(struct store *s, const struct config *cfg, const struct run_options *o,
	      struct run_summary *out, struct err *e);

/*
 * The run's outcome as one error: the first campaign or bounce error that is not temporary;
 * else ERR_TEMPFAIL when something was deferred, every relay was down, the database was
 * busy or the run was interrupted (75: run again later); else 0.
 */
int run_status(const struct run_summary *r, struct err *e);

/* Frees what run_daily put in r. */
void run_summary_free(struct run_summary *r);

#endif
