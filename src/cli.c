/* cli.c — global options, the command table, help, and the one place errors become exit codes. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"
#include "mime.h"
#include "schedule.h"
#include "util.h"

static const struct command *const commands[] = {
	&cmd_init,
	&cmd_campaign,
	&cmd_import,
	&cmd_preview,
	&cmd_send,
	&cmd_bounces,
	&cmd_run,
	&cmd_login,
	&cmd_serve,
	&cmd_complete,
	&cmd_calendar,
	&cmd_user,
	&cmd_who,
	&cmd_report,
	&cmd_forget,
	NULL,
};

int64_t ctx_now(const struct ctx *x)
{
	return x->now_fixed ? x->now : (int64_t)time(NULL);
}

int ctx_store(struct ctx *x, int flags, struct store **out, struct err *e)
{
	int rc;

	if (x->store == NULL &&
	    (rc = store_open(&x->store, x->db_path, flags, e)) != 0)
		return rc;
	*out = x->store;
	return 0;
}

static void print_usage(FILE *f)
{
	fprintf(f, "usage: cutoff [--config FILE] [--db FILE] [--now TIME] [-v|-q] COMMAND ...\n\n"
		   "Runs deadline-driven notification campaigns: e-mail the users of old clients,\n"
		   "remind them at login until the cutoff, and track bounces and upgrades.\n\n"
		   "Commands:\n");
	for (int i = 0; commands[i] != NULL; i++)
		fprintf(f, "  %-42s %s\n", commands[i]->usage, commands[i]->summary);
	fprintf(f, "\nGlobal options:\n"
		   "  --config FILE  configuration file (default " CUTOFF_SYSCONFDIR "/cutoff.conf"
		   " if it exists)\n"
		   "  --db FILE      database file (overrides the config's database)\n"
		   "  --now TIME     act as if it were TIME (2003-08-18T16:00:00Z, or a date)\n"
		   "  -v, -q         more, or less, output on stderr\n"
		   "  --version      print the version\n\n"
		   "Run 'cutoff COMMAND --help' for a command's options; see cutoff(1).\n"
		   "Exit status: 0 done, 64 usage, 65 bad input data, 66 not found, 69/75 try again\n"
		   "later, 74 I/O error, 77 permission, 78 configuration error.\n");
}

bool cli_wants_help(const struct command *c, int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			printf("usage: cutoff %s\n\n%s\n%s", c->usage, c->summary, c->help);
			return true;
		}
	}
	return false;
}

int cli_usage(const struct command *c, struct err *e, const char *why)
{
	return err_set(e, ERR_USAGE, "%s\nusage: cutoff %s (see: cutoff %s --help)", why,
		       c->usage, c->name);
}

static const struct command *find_command(const char *name)
{
	for (int i = 0; commands[i] != NULL; i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

/* Global options as given on the command line, before the config is read. */
struct global_opts {
	const char *config;
	const char *db;
	const char *now;
	int verbosity;
};

static int parse_globals(int argc, char **argv, struct global_opts *g, struct err *e)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"db", required_argument, NULL, 'd'},
		{"now", required_argument, NULL, 'n'},    {"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+c:d:n:vqhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': g->config = optarg; break;
		case 'd': g->db = optarg; break;
		case 'n': g->now = optarg; break;
		case 'v': g->verbosity++; break;
		case 'q': g->verbosity--; break;
		case 'h': print_usage(stdout); return 1;
		case 'V': printf("cutoff %s\n", CUTOFF_VERSION); return 1;
		default:
			return err_set(e, ERR_USAGE, "unknown or incomplete option '%s' (see: cutoff"
				       " --help)", argv[optind - 1]);
		}
	}
	return 0;
}

static int setup_ctx(struct ctx *x, const struct global_opts *g, struct err *e)
{
	const char *cfg = g->config;
	int rc;

	if (cfg == NULL && getenv("CUTOFF_CONFIG") != NULL)
		cfg = getenv("CUTOFF_CONFIG");
	if (cfg == NULL && access(CUTOFF_SYSCONFDIR "/cutoff.conf", F_OK) == 0)
		cfg = CUTOFF_SYSCONFDIR "/cutoff.conf";
	if ((rc = config_load(&x->cfg, cfg, e)) != 0)
		return rc;
	x->db_path = g->db ? g->db : x->cfg->database;
	if (g->now != NULL) {
		if ((rc = schedule_parse_instant(g->now, &x->now, e)) != 0) {
			err_prefix(e, "--now: ");
			return rc;
		}
		x->now_fixed = true;
	}
	x->tty = isatty(STDERR_FILENO) == 1;
	x->out = stdout;
	return 0;
}

static int report(int rc, const struct err *e)
{
	if (rc != 0)
		fprintf(stderr, "cutoff: %s\n", e->msg[0] ? e->msg : err_code_name(rc));
	return err_exit_code(rc);
}

int cli_main(int argc, char **argv)
{
	struct global_opts g = {0};
	struct ctx x = {0};
	struct err e = {0};
	const struct command *c;
	int rc;

	if ((rc = parse_globals(argc, argv, &g, &e)) != 0)
		return rc > 0 ? EX_OK : report(rc, &e);
	log_set_level(g.verbosity > 0 ? LOG_LEVEL_INFO + (g.verbosity > 1)
		      : g.verbosity < 0 ? LOG_LEVEL_QUIET : LOG_LEVEL_WARN);
	if (optind >= argc) {
		print_usage(stderr);
		return EX_USAGE;
	}
	if ((c = find_command(argv[optind])) == NULL) {
		err_set(&e, ERR_USAGE, "unknown command '%s' (see: cutoff --help)", argv[optind]);
		return report(ERR_USAGE, &e);
	}
	if (cli_wants_help(c, argc - optind, argv + optind))
		return EX_OK;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	mime_init();
	if ((rc = setup_ctx(&x, &g, &e)) == 0)
		rc = c->run(&x, argc - optind, argv + optind, &e);
	store_close(x.store);
	config_free(x.cfg);
	mime_shutdown();
	curl_global_cleanup();
	if (fflush(stdout) != 0 && rc == 0)
		rc = err_set(&e, ERR_IO, "writing the output failed");
	return report(rc, &e);
}
