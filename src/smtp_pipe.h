/* smtp_pipe.h — the mail transactions of one SMTP connection, pipelined as RFC 2920 allows
 * (RFC 5321 MAIL, RCPT, DATA, dot-stuffing; RFC 1870 SIZE; RFC 6531 SMTPUTF8). No I/O: the
 * caller moves bytes between it and the connection libcurl set up (see mailer.c). */
#ifndef CUTOFF_SMTP_PIPE_H
#define CUTOFF_SMTP_PIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "mailer.h"

struct smtp_pipe;

/* What became of a message that left the pipe. */
enum smtp_fate {
	SMTP_REPLIED, /* the server's reply decided it: see accepted, code, stage, reply */
	SMTP_LOST,    /* its body went out and the connection ended before the reply */
};

/* One message that left the pipe (the job is the caller's again). */
struct smtp_done {
	struct mailer_job *job;
	enum smtp_fate fate;
	bool accepted;          /* a 2xx to the end of its data */
	enum mailer_stage stage; /* the command the reply answered (or the last one sent) */
	int code;               /* that reply's code, 0 when none came */
	char reply[512];        /* its text, continuation lines joined by a space */
};

/* A new pipe for one connection. Free with smtp_pipe_free (NULL is fine). */
struct smtp_pipe *smtp_pipe_new(void);
void smtp_pipe_free(struct smtp_pipe *p);

/*
 * Starts over on a new connection: forgets the capabilities, the replies awaited and the
 * bytes not yet sent. Messages whose body never went out stay queued, in order, to go
 * first on the new connection; call smtp_pipe_abort before, so that the others left.
 */
void smtp_pipe_reconnect(struct smtp_pipe *p);

/*
 * Learns the server's extensions from one line of its EHLO reply ("250-PIPELINING",
 * "250 SIZE 10240000"). Call smtp_pipe_reconnect, then this for each line of the last
 * EHLO reply of the connection's setup; without it, no extension is assumed.
 */
void smtp_pipe_capability(struct smtp_pipe *p, const char *line, size_t len);

/* Whether the server announced PIPELINING (RFC 2920). */
bool smtp_pipe_pipelining(const struct smtp_pipe *p);

/* Messages queued and not yet left: at most smtp_pipe_depth. */
size_t smtp_pipe_count(const struct smtp_pipe *p);

/*
 * How many messages the pipe holds usefully: 2 when pipelining (one waiting for the
 * reply to its data while the next one's envelope goes out with that data), else 1.
 */
size_t smtp_pipe_depth(const struct smtp_pipe *p);

/*
 * Whether a message queued now would have its commands sent at once: the pipe is
 * empty, or the last message's DATA was answered 354 (its body and the new envelope
 * go out in one write).
 */
bool smtp_pipe_takes_now(const struct smtp_pipe *p);

/* Queues job (the pipe holds it until it leaves through smtp_pipe_next_done). */
void smtp_pipe_add(struct smtp_pipe *p, struct mailer_job *job);

/*
 * Appends to the output every command (and body) the dialogue allows now: with
 * PIPELINING, MAIL, RCPT and DATA in one group, and a body (dot-stuffed, ended by
 * CRLF.CRLF) with the next message's envelope once its DATA got 354; without,
 * one command at a time. Returns the bytes waiting to be sent (*len of them),
 * valid until the next call into the pipe.
 */
const char *smtp_pipe_output(struct smtp_pipe *p, size_t *len);

/*
 * The bytes still to be sent, without adding any (*len of them): for retrying a TLS
 * write, which must be repeated with the same buffer before anything else is added.
 */
const char *smtp_pipe_unsent_bytes(const struct smtp_pipe *p, size_t *len);

/* Whether bytes smtp_pipe_output gave are still to be sent. */
bool smtp_pipe_unsent(const struct smtp_pipe *p);

/* n of the bytes smtp_pipe_output gave were sent. */
void smtp_pipe_sent(struct smtp_pipe *p, size_t n);

/*
 * Reads what the server sent (any split: a reply may span calls, a call may hold
 * several replies) and matches each reply, in order, to the command it answers.
 * Returns 0, or -1 when the connection must end now: a reply with no command
 * awaiting it, a 354 to a message already refused, or a 421 (the server closes).
 */
int smtp_pipe_input(struct smtp_pipe *p, const char *data, size_t len);

/* Whether replies are awaited (the connection's timeout runs only then). */
bool smtp_pipe_awaiting(const struct smtp_pipe *p);

/*
 * The connection ended (dropped, timed out, or the pipe asked for it): every message
 * that has a verdict, or whose body went out (SMTP_LOST), leaves through
 * smtp_pipe_next_done; those whose body never went out stay queued, unsent.
 */
void smtp_pipe_abort(struct smtp_pipe *p);

/* Takes out the oldest message that is done; false when none is. */
bool smtp_pipe_next_done(struct smtp_pipe *p, struct smtp_done *out);

/* Takes out a message still queued (none of it will be sent); NULL when none is left. */
struct mailer_job *smtp_pipe_take(struct smtp_pipe *p);

/*
 * Appends msg dot-stuffed (RFC 5321 4.5.2: a line starting with "." gets another one)
 * and ended by "CRLF.CRLF" (a CRLF first when msg does not end with one).
 */
void smtp_dot_stuff(struct buf *out, const char *msg, size_t len);

#endif
