/* cmd_serve.c — `cutoff serve`: the login-time reminder service for login servers (HTTP). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "serve.h"
#include "util.h"

#define DEFAULT_LISTEN "127.0.0.1:8625"
#define TOKEN_CREDENTIAL "cutoff-serve-token"
#define TOKEN_MIN 16

struct serve_args {
	const char *listen, *socket, *token_file;
	long connections, per_ip, timeout_s, busy_wait_ms, drain_ms, threads, group_wait_us;
	long wal_frames, index_every, index_idle_ms;
	bool epoll;
};

static int parse_args(int argc, char **argv, struct serve_args *a, struct err *e)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"socket", required_argument, NULL, 's'},
		{"token-file", required_argument, NULL, 't'},
		{"connections", required_argument, NULL, 'c'},
		{"per-ip", required_argument, NULL, 'i'},
		{"timeout", required_argument, NULL, 'T'},
		{"busy-wait-ms", required_argument, NULL, 'b'},
		{"drain-ms", required_argument, NULL, 'd'},
		{"threads", required_argument, NULL, 'n'},
		{"group-wait-us", required_argument, NULL, 'g'},
		{"checkpoint-frames", required_argument, NULL, 'w'},
		{"index-every", required_argument, NULL, 'x'},
		{"index-idle-ms", required_argument, NULL, 'X'},
		{"epoll", no_argument, NULL, 'e'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0, opterr = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 'l')
			a->listen = optarg;
		else if (ch == 's')
			a->socket = optarg;
		else if (ch == 't')
			a->token_file = optarg;
		else if (ch == 'e')
			a->epoll = true;
		else if (!((ch == 'c' && str_to_long(optarg, 1, 100000, &a->connections)) ||
			   (ch == 'i' && str_to_long(optarg, 0, 100000, &a->per_ip)) ||
			   (ch == 'T' && str_to_long(optarg, 1, 3600, &a->timeout_s)) ||
			   (ch == 'b' && str_to_long(optarg, 0, 3600000, &a->busy_wait_ms)) ||
			   (ch == 'd' && str_to_long(optarg, 0, 3600000, &a->drain_ms)) ||
			   (ch == 'n' && str_to_long(optarg, 0, 64, &a->threads)) ||
			   (ch == 'g' && str_to_long(optarg, 0, 1000000, &a->group_wait_us)) ||
			   (ch == 'w' && str_to_long(optarg, 1, 1000000000, &a->wal_frames)) ||
			   (ch == 'x' && str_to_long(optarg, 1, 1000000000, &a->index_every)) ||
			   (ch == 'X' && str_to_long(optarg, 0, 3600000, &a->index_idle_ms))))
			return cli_usage(&cmd_serve, e, "unknown option, or a number out of range");
	}
	if (argc - optind != 0)
		return cli_usage(&cmd_serve, e, "serve takes no arguments");
	if (a->listen != NULL && a->socket != NULL)
		return cli_usage(&cmd_serve, e, "give --listen or --socket, not both");
	return 0;
}

/*
 * Reads the bearer token: --token-file, else the systemd credential. Refuses a file others may
 * read (config_check_secret_file), an empty or short token, or one a header cannot carry.
 */
static int read_token(const char *file, unsigned char **token, size_t *len, struct err *e)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char *path = NULL;
	int rc;

	if (file == NULL && dir == NULL)
		return cli_usage(&cmd_serve, e, "give --token-file FILE (or run under systemd with"
				 " LoadCredential=" TOKEN_CREDENTIAL ":FILE)");
	path = file != NULL ? xstrdup(file) : xasprintf("%s/%s", dir, TOKEN_CREDENTIAL);
	if ((rc = config_read_secret(path, "token file", token, len, e)) != 0)
		goto out;
	for (size_t i = 0; i < *len && rc == 0; i++)
		if ((*token)[i] <= ' ' || (*token)[i] >= 0x7f)
			rc = err_set(e, ERR_CONFIG, "token file %s: the token must be printable"
				     " ASCII without spaces (one line)", path);
	if (rc == 0 && *len < TOKEN_MIN)
		rc = err_set(e, ERR_CONFIG, "token file %s: the token is shorter than %d"
			     " characters; make one with: openssl rand -hex 32", path, TOKEN_MIN);
	if (rc != 0) {
		OPENSSL_cleanse(*token, *len);
		free(*token), *token = NULL;
	}
out:
	free(path);
	return rc;
}

static int open_listener(const struct serve_args *a, int *fd, const char **where, struct err *e)
{
	int rc;

	if (a->socket != NULL)
		return *where = a->socket, serve_listen_unix(a->socket, fd, e);
	if (a->listen == NULL) {
		if ((rc = serve_listen_systemd(fd, e)) != 0 || *fd >= 0)
			return *where = "the socket systemd passed", rc;
	}
	*where = a->listen != NULL ? a->listen : DEFAULT_LISTEN;
	return serve_listen_tcp(*where, fd, e);
}

/* Blocks SIGTERM and SIGINT in every thread (the service threads inherit it); main waits. */
static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int serve_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct serve_args a = {NULL, NULL, NULL, 1024, 128, 30, 30000, 30000, 2, 1000, 32768, 0, 100,
			       false};
	struct serve_options o = {0};
	unsigned char *token = NULL;
	struct serve *sv = NULL;
	const char *where = NULL;
	sigset_t set;
	int rc, sig = 0, fd = -1;
	long left;

	if ((rc = parse_args(argc, argv, &a, e)) != 0 ||
	    (rc = read_token(a.token_file, &token, &o.token_len, e)) != 0)
		goto out;
	block_signals(&set);
	if ((rc = open_listener(&a, &fd, &where, e)) != 0)
		goto out;
	o = (struct serve_options){x->db_path, fd, token, o.token_len, x->now_fixed, x->now,
				   (unsigned)a.connections, (unsigned)a.per_ip,
				   (unsigned)a.timeout_s, a.busy_wait_ms, a.drain_ms,
				   (unsigned)a.threads, a.epoll, a.group_wait_us, a.wal_frames,
				   a.index_every, a.index_idle_ms};
	if ((rc = serve_start(&sv, &o, e)) != 0)
		goto out;
	log_info("cutoff serve: answering on %s", where);
	sigwait(&set, &sig);
	log_info("cutoff serve: %s: finishing the requests in flight", strsignal(sig));
	if ((left = serve_stop(sv)) != 0)
		rc = err_set(e, ERR_TEMPFAIL, "%ld request(s) were still in flight after"
			     " --drain-ms; their connections were closed", left);
	if (a.socket != NULL)
		unlink(a.socket);
out:
	if (token != NULL)
		OPENSSL_cleanse(token, o.token_len);
	free(token);
	return rc;
}

const struct command cmd_serve = {
	"serve", serve_run,
	"serve [--listen ADDR:PORT | --socket PATH] --token-file FILE",
	"the login-time reminder service for login servers (HTTP, JSON)",
	"\nAnswers login servers over HTTP with the decisions of `cutoff login`: POST\n"
	"/v1/logins {\"user\",\"client_version\",\"platform\"} records the login and answers\n"
	"{\"reminder\":{...}|null}; POST /v1/logins:batch {\"events\":[...]} (up to 1000) answers\n"
	"each in order; GET /v1/users/USER is `cutoff user USER --format json`; GET /healthz;\n"
	"GET /metrics (Prometheus). Every route but /healthz needs \"Authorization: Bearer\n"
	"TOKEN\". See docs/api.md.\n\n"
	"  --listen ADDR:PORT  TCP address (default " DEFAULT_LISTEN ", or the socket systemd\n"
	"                      passes: cutoff-serve.socket)\n"
	"  --socket PATH       a Unix socket instead (mode 0660)\n"
	"  --token-file FILE   the bearer token, one line, mode 0600 (default under systemd:\n"
	"                      $CREDENTIALS_DIRECTORY/" TOKEN_CREDENTIAL ")\n"
	"  --connections N     connections at once (default 1024)\n"
	"  --per-ip N          connections at once from one address (default 128; 0: any)\n"
	"  --timeout S         close a connection idle or stalled for S seconds (default 30)\n"
	"  --busy-wait-ms T    how long logins wait for a busy database before 503\n"
	"                      (default 30000)\n"
	"  --drain-ms T        at SIGTERM, how long requests in flight may take (default 30000)\n"
	"  --threads N         HTTP threads (default 2); 0: a thread per connection\n"
	"  --epoll             the HTTP threads wait with epoll, not poll: for many (some\n"
	"                      hundreds or more) mostly idle keep-alive connections\n"
	"  --group-wait-us U   how long a group commit may wait for the requests in flight\n"
	"                      to join it (default 1000; 0: never)\n"
	"  --checkpoint-frames N  past N frames (4 KiB pages) in the WAL, start it over\n"
	"                      between two commits (default 32768: 128 MiB)\n"
	"  --index-every N     add the logins' keys for support lookups in bulk, once N\n"
	"                      logins are left out (default 32768; 1: after each commit)\n"
	"  --index-idle-ms MS  and once no login came for MS ms (default 100; 0: not)\n\n"
	"Logins are decided by one thread in group commits: an answer is sent only after the\n"
	"transaction recording it committed. SIGTERM or SIGINT: stop accepting, finish the\n"
	"requests in flight, exit 0. With --now, every login is decided at that time.\n",
};
