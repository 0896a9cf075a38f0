/* cli.h — the command line: global options, the context every command gets, dispatch. */
#ifndef CUTOFF_CLI_H
#define CUTOFF_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "store.h"

/* What every command is handed: the frozen config, the clock, the store. */
struct ctx {
	struct config *cfg;     /* frozen after load */
	const char *db_path;    /* --db, else cfg->database */
	int64_t now;            /* --now, else 0 */
	bool now_fixed;
	struct store *store;    /* opened on demand by ctx_store */
	bool tty;               /* stderr is a terminal: draw progress */
	FILE *out;              /* where results go (stdout) */
};

/* The current time: --now when given, else the system clock (UTC seconds). */
int64_t ctx_now(const struct ctx *x);

/* Opens the database once (store_open flags) and hands it out; the ctx owns it. */
int ctx_store(struct ctx *x, int flags, struct store **out, struct err *e);

/* A command: argv[0] is its name; returns 0 or a negative err code (e filled). */
struct command {
	const char *name;
	int (*run)(struct ctx *x, int argc, char **argv, struct err *e);
	const char *usage;   /* one line: "import CAMPAIGN FILE.csv [--rejects FILE]" */
	const char *summary; /* what it does, one line */
	const char *help;    /* the options and details, for COMMAND --help */
};

/* True if argv has -h or --help before any "--"; prints the command's help then. */
bool cli_wants_help(const struct command *c, int argc, char **argv);
/* ERR_USAGE with "usage: cutoff USAGE" and a hint. */
int cli_usage(const struct command *c, struct err *e, const char *why);

/* Runs cutoff; returns the process exit status (sysexits.h). */
int cli_main(int argc, char **argv);

/*
 * Loads a stored campaign: its row (sc) and its parsed definition (*c).
 * The caller frees both (store_campaign_clear, campaign_free). ERR_NOTFOUND
 * names the campaign.
 */
struct campaign;
struct store_campaign;
int cmd_load_campaign(struct ctx *x, const char *name, struct store_campaign *sc,
		      struct campaign **c, struct err *e);

/* Formats UTC t in tz as "2003-10-15 00:00 PDT" into buf. */
void cmd_format_local(int64_t t, const char *tz, char *buf, size_t n);

/* Commands, each in its own cmd_*.c. */
extern const struct command cmd_init, cmd_campaign, cmd_import, cmd_preview, cmd_send;
extern const struct command cmd_bounces;
extern const struct command cmd_run, cmd_login, cmd_serve, cmd_complete, cmd_calendar;
extern const struct command cmd_user, cmd_who, cmd_report, cmd_forget;

/* Shared by send and run: the summary line and the exit status of a sending run. */
struct sender_summary;
void cmd_print_send_summary(FILE *out, const char *name, const struct sender_summary *s,
			    bool dry_run);
int cmd_send_status(const struct sender_summary *s, struct err *e);

/*
 * Sends campaign c with `workers` processes at once (1 or a dry run: this
 * process alone); the summaries are added up in *sum. The caller holds the
 * run lock (its descriptor is inherited). Returns sender_send's result, or the
 * first worker's failure.
 */
struct sender_options;
int cmd_send_parallel(struct ctx *x, const struct campaign *c, int64_t campaign_id,
		      const struct sender_options *o, int workers, struct sender_summary *sum,
		      struct err *e);

#endif
