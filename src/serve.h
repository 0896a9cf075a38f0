/* serve.h — `cutoff serve`: the login decision over HTTP/1.1 (RFC 9110, RFC 9112) with JSON
 * bodies (RFC 8259), bearer-token authentication (RFC 6750) and Prometheus metrics. */
#ifndef CUTOFF_SERVE_H
#define CUTOFF_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/*
 * Design (docs/api.md): libmicrohttpd's threads (a small epoll pool whose connections are
 * suspended while their events are decided, or one blocking thread per connection) parse and
 * check each request and hand its login events to the decider, one thread that owns the store
 * connection, the login catalog and the login session (login.h: a connection is never
 * shared). The decider takes every event waiting, decides them in one transaction and commits
 * without waiting for the disk (synchronous=NORMAL); a syncer thread fdatasyncs the WAL and
 * only then resumes or wakes the requests of every batch committed before that sync began,
 * while the decider decides the next batch (group commit: an answer is never shown for a
 * transaction that rolled back, nor before its WAL frames are on disk; a failed sync answers
 * 500 and stops all later decisions). A busy database is retried until busy_wait_ms, then
 * the waiting requests get 503 and nothing of theirs is recorded.
 */

#define SERVE_USER_MAX 256      /* bytes of a user id */
#define SERVE_FIELD_MAX 64      /* bytes of a client version or platform */
#define SERVE_BATCH_MAX 1000    /* events in one POST /v1/logins:batch */
#define SERVE_BODY_MAX 4096     /* bytes of a POST /v1/logins body */
#define SERVE_BATCH_BODY_MAX (512 * 1024) /* bytes of a batch body */

struct serve_options {
	const char *db_path;        /* the database (migrated) */
	int listen_fd;              /* a listening socket; the service owns it from serve_start */
	const unsigned char *token; /* the bearer token, token_len bytes (copied) */
	size_t token_len;
	bool now_fixed;             /* decide every login at `now` (--now) */
	int64_t now;
	unsigned connection_limit;  /* connections at once, all clients */
	unsigned per_ip_limit;      /* connections at once from one IP address */
	unsigned timeout_s;         /* an idle or slow connection is closed after this */
	long busy_wait_ms;          /* how long a batch waits for a busy database before 503 */
	long drain_ms;              /* at shutdown, how long in-flight requests may take */
	unsigned threads;           /* HTTP threads (suspend/resume); 0: one per connection */
	bool epoll;                 /* the HTTP threads wait with epoll rather than poll */
	long group_wait_us;         /* how long a batch may wait for requests in flight (0: not) */
	long wal_frames;            /* a WAL this long is started over between commits (0: 32768) */
	long index_every;           /* logins left out of login_by_user, then added in bulk
				       (0: 32768; 1: after every commit) */
	long index_idle_ms;         /* a decider idle this long adds them too (0: never) */
};

struct serve;

/*
 * Opens the store in the decider thread, loads the campaigns and starts answering on
 * o->listen_fd. Returns 0; ERR_CONFIG / a store error when the database or its campaigns do
 * not load; ERR_SOFTWARE when libmicrohttpd does not start. On error listen_fd is closed.
 * Stop and free with serve_stop.
 */
int serve_start(struct serve **out, const struct serve_options *o, struct err *e);

/*
 * Graceful stop: stops accepting, lets the requests in flight finish (their batch committed
 * and answered) for up to drain_ms, answers later requests on open connections 503, then
 * stops the threads and frees sv (NULL is fine). Returns the number of requests still in
 * flight when it gave up waiting (0 normally).
 */
long serve_stop(struct serve *sv);

/*
 * Listening sockets for serve_options.listen_fd, non-blocking (the HTTP threads all accept on
 * it) and close-on-exec. Each returns 0 with *fd set, or ERR_USAGE
 * (a malformed address) / ERR_IO (bind or listen failed, the message says where).
 * serve_listen_tcp: "127.0.0.1:8625", "[::1]:8625" (numeric host and port).
 * serve_listen_unix: a Unix socket at path (a stale socket there is replaced; any other
 * file is refused), mode 0660.
 * serve_listen_systemd: the socket systemd passed (LISTEN_PID, LISTEN_FDS, sd_listen_fds(3));
 * *fd is -1 when none was passed; more than one is ERR_USAGE.
 */
int serve_listen_tcp(const char *addr, int *fd, struct err *e);
int serve_listen_unix(const char *path, int *fd, struct err *e);
int serve_listen_systemd(int *fd, struct err *e);

#endif
