/* smtp_pipe.c — one SMTP connection's mail transactions, pipelined (RFC 2920) when the server
 * allows it, one command at a time when not (RFC 5321 3.3, 4.5.2; RFC 1870; RFC 6531). */
#include "smtp_pipe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PIPE_SLOTS 4   /* messages queued: depth is at most 2, reconnects keep what is unsent */
#define PIPE_EXPECT 16 /* replies awaited: RSET, MAIL, RCPT, DATA, body per message */

/* The next thing a message sends; STEP_BODY is its content, whose reply ends it. */
enum step { STEP_RSET, STEP_MAIL, STEP_RCPT, STEP_DATA, STEP_BODY, STEP_END };

/* One message in the pipe. */
struct pmsg {
	struct mailer_job *job;
	enum step next;
	int awaiting;   /* its commands sent and not yet answered */
	bool got354;    /* its DATA was answered 354: the body may go */
	bool body_sent; /* from here on, a lost connection may have delivered it */
	bool failed;    /* a reply refused it: that reply is its verdict */
	bool done;      /* it leaves through smtp_pipe_next_done */
	bool accepted;
	bool lost;      /* its body went out and the connection ended before the reply */
	enum mailer_stage stage;
	int code;
	char reply[512];
};

/* A reply awaited, and the message whose command it answers. */
struct expect {
	enum step cmd;
	size_t slot;
};

struct smtp_pipe {
	struct pmsg msgs[PIPE_SLOTS]; /* a ring, oldest at head */
	size_t head, n;
	struct expect exp[PIPE_EXPECT]; /* a ring, in the order the commands went */
	size_t ehead, en;
	int data_awaited; /* DATA commands not yet answered: nothing may follow them */
	bool pipelining, size, smtputf8;
	bool need_rset; /* a transaction was left open by a refusal */
	struct buf out;
	size_t out_off;
	char line[1024]; /* a reply line split across reads */
	size_t line_len;
	char reply[512]; /* the reply being read, continuation lines joined */
	size_t reply_len;
};

struct smtp_pipe *smtp_pipe_new(void)
{
	struct smtp_pipe *p = xcalloc(1, sizeof *p);

	buf_init(&p->out);
	return p;
}

void smtp_pipe_free(struct smtp_pipe *p)
{
	if (p == NULL)
		return;
	buf_free(&p->out);
	free(p);
}

static struct pmsg *msg_at(struct smtp_pipe *p, size_t i)
{
	return &p->msgs[(p->head + i) % PIPE_SLOTS];
}

void smtp_pipe_reconnect(struct smtp_pipe *p)
{
	p->pipelining = p->size = p->smtputf8 = false;
	p->need_rset = false;
	p->ehead = p->en = 0, p->data_awaited = 0;
	buf_reset(&p->out), p->out_off = 0;
	p->line_len = 0, p->reply_len = 0, p->reply[0] = '\0';
}

/* Whether line, past its "250-" or "250 ", starts with the keyword kw as a whole word. */
static bool has_keyword(const char *line, size_t len, const char *kw)
{
	size_t k = strlen(kw);

	if (len < 4 + k || strncasecmp(line + 4, kw, k) != 0)
		return false;
	return len == 4 + k || line[4 + k] == ' ' || line[4 + k] == '\r' || line[4 + k] == '\n';
}

void smtp_pipe_capability(struct smtp_pipe *p, const char *line, size_t len)
{
	if (len < 4 || strncmp(line, "250", 3) != 0)
		return;
	if (has_keyword(line, len, "PIPELINING"))
		p->pipelining = true;
	else if (has_keyword(line, len, "SIZE"))
		p->size = true;
	else if (has_keyword(line, len, "SMTPUTF8"))
		p->smtputf8 = true;
}

bool smtp_pipe_pipelining(const struct smtp_pipe *p)
{
	return p->pipelining;
}

size_t smtp_pipe_count(const struct smtp_pipe *p)
{
	return p->n;
}

size_t smtp_pipe_depth(const struct smtp_pipe *p)
{
	return p->pipelining ? 2 : 1;
}

bool smtp_pipe_takes_now(const struct smtp_pipe *p)
{
	const struct pmsg *last;

	if (p->n == 0)
		return true;
	if (p->n >= smtp_pipe_depth(p))
		return false;
	last = &p->msgs[(p->head + p->n - 1) % PIPE_SLOTS];
	return last->got354 || last->body_sent;
}

static void msg_start(struct pmsg *m, struct mailer_job *job)
{
	memset(m, 0, sizeof *m);
	m->job = job;
	m->next = STEP_MAIL;
	m->stage = MAILER_STAGE_MAIL;
}

void smtp_pipe_add(struct smtp_pipe *p, struct mailer_job *job)
{
	if (p->n == PIPE_SLOTS)
		abort(); /* the caller keeps to smtp_pipe_depth: a bug, not a runtime condition */
	msg_start(msg_at(p, p->n), job);
	p->n++;
}

void smtp_dot_stuff(struct buf *out, const char *msg, size_t len)
{
	const char *s = msg, *end = msg + len, *q;

	buf_grow(out, len + 8);
	if (len > 0 && msg[0] == '.')
		buf_putc(out, '.');
	/* Lines starting with "." are rare: copy the runs between them whole (memchr finds
	 * each line's end faster than memmem finds "\n." in lines of 76 octets). */
	for (const char *line = msg; line < end && (q = memchr(line, '\n', (size_t)(end - line)));
	     line = q + 1) {
		if (q + 1 < end && q[1] == '.') {
			buf_append(out, s, (size_t)(q + 1 - s));
			buf_putc(out, '.');
			s = q + 1;
		}
	}
	buf_append(out, s, (size_t)(end - s));
	if (len > 0 && (len < 2 || end[-2] != '\r' || end[-1] != '\n'))
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
}

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static void expect_push(struct smtp_pipe *p, enum step cmd, size_t i)
{
	if (p->en == PIPE_EXPECT)
		abort(); /* at most 5 a message and 2 messages in flight: a bug */
	p->exp[(p->ehead + p->en) % PIPE_EXPECT] = (struct expect){cmd, (p->head + i) % PIPE_SLOTS};
	p->en++;
	msg_at(p, i)->awaiting++;
	if (cmd == STEP_DATA)
		p->data_awaited++;
}

/* Writes " SIZE=<n>" at out (room for 26 octets) and returns its length. */
static size_t size_param(char *out, size_t n)
{
	memcpy(out, " SIZE=", 6);
	return (size_t)(dec_put(out + 6, n, 1) - out);
}

static void rcpt_append(struct buf *out, const char *rcpt)
{
	buf_puts(out, "RCPT TO:<");
	buf_puts(out, rcpt);
	buf_append(out, ">\r\n", 3);
}

static void emit_mail(struct smtp_pipe *p, struct pmsg *m)
{
	const struct mailer_job *j = m->job;
	char size[32];

	/* Two commands a message: pieces appended, no format string parsed twice (buf_printf). */
	buf_puts(&p->out, "MAIL FROM:<");
	buf_puts(&p->out, j->envelope_from);
	buf_puts(&p->out, ">");
	if (p->size)
		buf_append(&p->out, size, size_param(size, j->data.len));
	if (p->smtputf8 && (non_ascii(j->envelope_from) || non_ascii(j->rcpt)))
		buf_puts(&p->out, " SMTPUTF8");
	buf_append(&p->out, "\r\n", 2);
}

/* Sends message i's next command (after an RSET when a refusal left a transaction open). */
static void emit(struct smtp_pipe *p, size_t i)
{
	struct pmsg *m = msg_at(p, i);

	if (m->next == STEP_MAIL && p->need_rset) {
		buf_append(&p->out, "RSET\r\n", 6); /* a command of its own: MAIL may wait */
		expect_push(p, STEP_RSET, i);
		p->need_rset = false;
		return;
	}
	if (m->next == STEP_MAIL)
		emit_mail(p, m);
	else if (m->next == STEP_RCPT)
		rcpt_append(&p->out, m->job->rcpt);
	else
		buf_append(&p->out, "DATA\r\n", 6);
	expect_push(p, m->next, i);
	m->next++;
}

/* RFC 2920 3.1: any command may follow another except after DATA, whose reply decides. */
static bool may_send(const struct smtp_pipe *p)
{
	return p->en == 0 || (p->pipelining && p->data_awaited == 0);
}

/* Writes out what the dialogue allows now, message by message in order. */
static void pump(struct smtp_pipe *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct pmsg *m = msg_at(p, i);

		while (m->next != STEP_END) {
			if (m->next == STEP_BODY) {
				if (!m->got354)
					return; /* later messages wait behind this one's 354 */
				smtp_dot_stuff(&p->out, m->job->data.data, m->job->data.len);
				expect_push(p, STEP_BODY, i);
				m->body_sent = true;
				m->next = STEP_END;
			} else if (may_send(p)) {
				emit(p, i);
			} else {
				return;
			}
		}
	}
}

const char *smtp_pipe_output(struct smtp_pipe *p, size_t *len)
{
	if (p->out_off == p->out.len)
		buf_reset(&p->out), p->out_off = 0;
	pump(p);
	*len = p->out.len - p->out_off;
	return p->out.data + p->out_off;
}

const char *smtp_pipe_unsent_bytes(const struct smtp_pipe *p, size_t *len)
{
	*len = p->out.len - p->out_off;
	return p->out.data + p->out_off;
}

bool smtp_pipe_unsent(const struct smtp_pipe *p)
{
	return p->out_off < p->out.len;
}

void smtp_pipe_sent(struct smtp_pipe *p, size_t n)
{
	p->out_off += n;
	if (p->out_off >= p->out.len)
		buf_reset(&p->out), p->out_off = 0;
}

static enum mailer_stage stage_of(enum step cmd)
{
	switch (cmd) {
	case STEP_RSET:
	case STEP_MAIL: return MAILER_STAGE_MAIL;
	case STEP_RCPT: return MAILER_STAGE_RCPT;
	default: return MAILER_STAGE_DATA;
	}
}

static void msg_record(struct smtp_pipe *p, struct pmsg *m, enum step cmd, int code)
{
	m->code = code;
	m->stage = stage_of(cmd);
	memcpy(m->reply, p->reply, p->reply_len + 1);
}

/* What a reply to cmd means for m, which no reply has refused yet. */
static void msg_reply(struct smtp_pipe *p, struct pmsg *m, enum step cmd, int code)
{
	if (cmd == STEP_RSET) {
		if (code == 421)
			msg_record(p, m, cmd, code), m->failed = true, m->next = STEP_END;
		return;
	}
	msg_record(p, m, cmd, code);
	if (cmd == STEP_BODY)
		m->done = true, m->accepted = code >= 200 && code < 300;
	else if (cmd == STEP_DATA && code == 354)
		m->got354 = true;
	else if (cmd == STEP_DATA || code < 200 || code >= 300)
		m->failed = true, m->next = STEP_END;
}

/* A complete reply: it answers the oldest command awaiting one. */
static int dispatch(struct smtp_pipe *p, int code)
{
	struct expect e;
	struct pmsg *m;
	int rc = code == 421 ? -1 : 0; /* RFC 5321 3.8: the server closes after a 421 */

	if (p->en == 0)
		return -1;
	e = p->exp[p->ehead];
	p->ehead = (p->ehead + 1) % PIPE_EXPECT, p->en--;
	if (e.cmd == STEP_DATA)
		p->data_awaited--;
	m = &p->msgs[e.slot];
	m->awaiting--;
	if (!m->failed)
		msg_reply(p, m, e.cmd, code);
	else if (e.cmd == STEP_DATA && code == 354)
		rc = -1; /* the server waits for a body we must not send: only closing ends it */
	if (m->failed && m->awaiting == 0 && !m->done)
		m->done = true, p->need_rset = true;
	return rc;
}

/* One line of a reply: "250-text" goes on, "250 text" ends it. */
static int reply_line(struct smtp_pipe *p, const char *line, size_t len)
{
	size_t room;
	int rc;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-'))
		return -1; /* not SMTP: nothing more this connection says can be trusted */
	if (len > 4) {
		if (p->reply_len > 0 && p->reply_len + 1 < sizeof p->reply)
			p->reply[p->reply_len++] = ' ';
		room = sizeof p->reply - 1 - p->reply_len;
		memcpy(p->reply + p->reply_len, line + 4, len - 4 < room ? len - 4 : room);
		p->reply_len += len - 4 < room ? len - 4 : room;
		p->reply[p->reply_len] = '\0';
	}
	if (len > 3 && line[3] == '-')
		return 0;
	rc = dispatch(p, (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
	p->reply_len = 0, p->reply[0] = '\0';
	return rc;
}

int smtp_pipe_input(struct smtp_pipe *p, const char *data, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) + 1 : len;

		if (nl != NULL && p->line_len == 0) { /* the usual case: a whole line here */
			if (reply_line(p, data, n) != 0)
				return -1;
		} else {
			size_t room = sizeof p->line - p->line_len;
			memcpy(p->line + p->line_len, data, n < room ? n : room);
			p->line_len += n < room ? n : room; /* an overlong line keeps its start */
			if (nl != NULL) {
				int rc = reply_line(p, p->line, p->line_len);
				p->line_len = 0;
				if (rc != 0)
					return -1;
			}
		}
		data += n, len -= n;
	}
	return 0;
}

bool smtp_pipe_awaiting(const struct smtp_pipe *p)
{
	return p->en > 0;
}

void smtp_pipe_abort(struct smtp_pipe *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct pmsg *m = msg_at(p, i);

		if (m->done)
			continue;
		if (m->failed)
			m->done = true; /* refused: that reply is the verdict */
		else if (m->body_sent)
			m->done = true, m->lost = true;
		else
			msg_start(m, m->job); /* nothing of it can have been delivered: again */
	}
	smtp_pipe_reconnect(p);
}

bool smtp_pipe_next_done(struct smtp_pipe *p, struct smtp_done *out)
{
	struct pmsg *m;

	if (p->n == 0 || !(m = msg_at(p, 0))->done)
		return false;
	out->job = m->job;
	out->fate = m->lost ? SMTP_LOST : SMTP_REPLIED;
	out->accepted = m->accepted;
	out->stage = m->stage;
	out->code = m->code;
	memcpy(out->reply, m->reply, sizeof out->reply);
	p->head = (p->head + 1) % PIPE_SLOTS, p->n--;
	return true;
}

struct mailer_job *smtp_pipe_take(struct smtp_pipe *p)
{
	struct mailer_job *job;

	if (p->n == 0)
		return NULL;
	job = msg_at(p, 0)->job;
	p->head = (p->head + 1) % PIPE_SLOTS, p->n--;
	return job;
}
