/* bounces.c — returned mail: parse each message once (dsn.h), attribute it to the exact
 * delivery, act on it in the ledger, and move it along its Maildir or into quarantine
 * (RFC 3464, RFC 5965, RFC 3834, RFC 2369, RFC 4155; the Maildir convention). */
#include "bounces.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "render.h"
#include "store_bounces.h"
#include "util.h"
#include "verp.h"

#define TXN_MESSAGES 256   /* messages per ledger transaction in a Maildir or mbox run */
#define MAX_CANDIDATES 16  /* VERP addresses or links tried per message and tier */
#define MAX_TARGETS 64     /* deliveries one report may be attributed to */
#define DIAG_IN_EVENT 500  /* bytes of the remote server's words kept in an event */

static const char *const by_names[] = {
	[BOUNCES_BY_NONE] = "none",
	[BOUNCES_BY_VERP] = "verp",
	[BOUNCES_BY_MESSAGE_ID] = "message-id",
	[BOUNCES_BY_HEADER] = "header",
	[BOUNCES_BY_RECIPIENT] = "recipient",
	[BOUNCES_BY_TEXT] = "text",
};

static const char *const action_names[] = {
	[BOUNCES_RECORD] = "record",           [BOUNCES_SUPPRESS] = "suppress",
	[BOUNCES_COUNT] = "count",             [BOUNCES_UNSUBSCRIBE] = "unsubscribe",
	[BOUNCES_DUPLICATE] = "duplicate",     [BOUNCES_QUARANTINE] = "quarantine",
};

const char *bounces_by_name(enum bounces_by by)
{
	return (unsigned)by <= BOUNCES_BY_TEXT ? by_names[by] : "none";
}

const char *bounces_action_name(enum bounces_action a)
{
	return (unsigned)a <= BOUNCES_QUARANTINE ? action_names[a] : "record";
}

/* ---- the run: store, settings, transaction, pending Maildir moves --------------------- */

/* A Maildir message handled in the open transaction, renamed to cur/ once it commits. */
struct move {
	char *from, *to;
};

struct proc {
	struct store *s;          /* NULL: no database (a dry run without one) */
	struct store_bounces *sb;
	const struct config *cfg;
	const struct bounces_options *o;
	const char *quarantine;   /* the folder */
	struct bounces_summary *sum;
	struct err *e;
	bool in_txn;
	size_t n_txn;
	struct move *moves;
	size_t n_moves, cap_moves;
	struct buf json;
	struct attribution *attr; /* reused from message to message (24 KiB: not zeroed
				   * and allocated again for each) */
};

/* One message as read, and where it came from. */
struct msg {
	const char *data;
	size_t len;
	const char *source; /* "file" in the JSON */
	size_t index;       /* mbox: 1, 2, ...; else 0 */
	const char *path;   /* a Maildir file: moved when handled or quarantined; else NULL */
	const char *name;   /* its name in the quarantine folder */
	const char *done;   /* a Maildir file: where it goes once handled (cur/NAME:2,S) */
};

static void proc_init(struct proc *p, struct store *s, const struct config *cfg,
		      const struct bounces_options *o, const char *quarantine,
		      struct bounces_summary *sum, struct err *e)
{
	memset(p, 0, sizeof *p);
	p->s = s, p->cfg = cfg, p->o = o, p->quarantine = quarantine, p->sum = sum, p->e = e;
	p->sb = s ? store_bounces_new(s) : NULL;
	buf_init(&p->json);
}

static void moves_clear(struct proc *p)
{
	for (size_t i = 0; i < p->n_moves; i++)
		free(p->moves[i].from), free(p->moves[i].to);
	p->n_moves = 0;
}

static void proc_release(struct proc *p)
{
	if (p->in_txn)
		store_rollback(p->s);
	moves_clear(p);
	free(p->moves);
	store_bounces_free(p->sb);
	buf_free(&p->json);
	free(p->attr);
}

static bool writes(const struct proc *p)
{
	return !p->o->dry_run && p->s != NULL;
}

static int proc_begin(struct proc *p)
{
	int rc;

	if (!writes(p) || p->in_txn)
		return 0;
	if ((rc = store_begin(p->s, p->e)) != 0)
		return rc;
	p->in_txn = true, p->n_txn = 0;
	return 0;
}

/* Commits the open transaction, then renames its Maildir messages into cur/. */
static int proc_flush(struct proc *p)
{
	int rc;

	if (p->in_txn) {
		p->in_txn = false;
		if ((rc = store_commit(p->s, p->e)) != 0) {
			store_rollback(p->s);
			moves_clear(p);
			return rc;
		}
	}
	for (size_t i = 0; i < p->n_moves; i++) {
		if (rename(p->moves[i].from, p->moves[i].to) != 0 && errno != ENOENT) {
			log_warn("%s: processed, but cannot be moved to %s", p->moves[i].from,
				 p->moves[i].to);
			p->sum->unreadable++;
		}
	}
	moves_clear(p);
	return 0;
}

/* Drops the open transaction after an error: its messages stay in new/ for the next run. */
static void proc_abort(struct proc *p)
{
	if (p->in_txn)
		store_rollback(p->s);
	p->in_txn = false;
	moves_clear(p);
}

/* cur/NAME with the S (seen) flag added to its info, flags kept in ASCII order. */
static char *maildir_cur_path(const char *dir, const char *name)
{
	const char *info = strstr(name, ":2,");
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s/cur/", dir);
	if (info == NULL) {
		buf_printf(&b, "%s:2,S", name);
		return buf_steal(&b);
	}
	buf_append(&b, name, (size_t)(info + 3 - name));
	info += 3;
	if (strchr(info, 'S') != NULL) {
		buf_puts(&b, info);
		return buf_steal(&b);
	}
	for (; *info && *info < 'S'; info++)
		buf_putc(&b, *info);
	buf_putc(&b, 'S');
	buf_puts(&b, info);
	return buf_steal(&b);
}

static void move_add(struct proc *p, const char *from, const char *to)
{
	if (p->n_moves == p->cap_moves) {
		p->cap_moves = p->cap_moves ? 2 * p->cap_moves : 64;
		p->moves = xrealloc(p->moves, p->cap_moves * sizeof *p->moves);
	}
	p->moves[p->n_moves].from = xstrdup(from);
	p->moves[p->n_moves++].to = xstrdup(to);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static void sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		out[2 * i] = hex[md[i] >> 4], out[2 * i + 1] = hex[md[i] & 15];
	out[64] = '\0';
}

/* The first needle (lower case, starting with a letter) in hay[0..len), case ignored. */
static const char *find_ci(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	char first = needle[0];

	for (size_t i = 0; n <= len && i <= len - n; i++)
		if ((hay[i] | 0x20) == first && strncasecmp(hay + i, needle, n) == 0)
			return hay + i;
	return NULL;
}

/* The first "bounces+" in hay[0..len), as written or upper-cased (what mail systems do to a
 * VERP address); mixed case is not looked for in running text. Found from its '+' (memchr
 * is many times quicker than memmem over a whole message, and '+' is rare in text). */
static const char *find_verp(const char *hay, size_t len)
{
	const char *p = hay, *end = hay + len;

	while ((p = memchr(p, '+', (size_t)(end - p))) != NULL) {
		if (p - hay >= 7 &&
		    (memcmp(p - 7, "bounces", 7) == 0 || memcmp(p - 7, "BOUNCES", 7) == 0))
			return p - 7;
		p++;
	}
	return NULL;
}

static bool addr_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr(".+-_=@", c) != NULL;
}

/* Copies the address starting at p (up to end) into out; false if it has no '@'. */
static bool take_address(const char *p, const char *end, char *out, size_t n)
{
	size_t len = 0;

	while (p + len < end && len + 1 < n && addr_char(p[len]))
		len++;
	memcpy(out, p, len);
	out[len] = '\0';
	return memchr(out, '@', len) != NULL;
}

/* ---- attribution ------------------------------------------------------------------------ */

struct target {
	struct store_bounce_target t;
	const struct dsn_recipient *r; /* the DSN recipient it is about, or NULL: pick one */
};

struct attribution {
	enum bounces_by by;
	struct target v[MAX_TARGETS];
	size_t n;
	char note[200]; /* why a tier failed, for the quarantine reason */
};

static void note(struct attribution *a, const char *text)
{
	if (a->note[0] == '\0')
		snprintf(a->note, sizeof a->note, "%s", text);
}

static bool has_delivery(const struct attribution *a, int64_t delivery_id)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].t.delivery_id == delivery_id)
			return true;
	return false;
}

static void add_target(struct attribution *a, const struct store_bounce_target *t,
		       const struct dsn_recipient *r)
{
	if (a->n == MAX_TARGETS || has_delivery(a, t->delivery_id))
		return;
	a->v[a->n].t = *t;
	a->v[a->n++].r = r;
}

/*
 * A signed VERP address: 0 with *t filled (from the ledger, which must agree with every id
 * of the token; without a database, from the token alone), 1 when it is not one or does not
 * check out, <0 on a database error.
 */
static int verp_target(struct proc *p, const char *address, struct store_bounce_target *t,
		       struct attribution *a)
{
	const struct config *cfg = p->cfg;
	struct verp_ids ids;
	struct err ve = {0};
	int rc;

	if (cfg->bounces.secret == NULL || cfg->bounces.secret_len == 0)
		return 1;
	if (verp_parse(cfg->bounces.secret, cfg->bounces.secret_len, address, &ids, &ve) != 0) {
		char why[200];
		snprintf(why, sizeof why, "%s: %s", address, ve.msg);
		note(a, why);
		return 1;
	}
	if (p->sb == NULL) {
		memset(t, 0, sizeof *t);
		t->delivery_id = ids.delivery_id, t->recipient_id = ids.recipient_id;
		t->campaign_id = ids.campaign_id;
		return 0;
	}
	if ((rc = store_bounces_by_delivery(p->sb, ids.delivery_id, t, p->e)) < 0)
		return rc;
	if (rc == 0 && t->recipient_id == ids.recipient_id && t->campaign_id == ids.campaign_id)
		return 0;
	note(a, "a valid VERP token names a delivery the database does not hold");
	return 1;
}

/* The envelope addresses of the report's own header that may carry a VERP token. */
static size_t envelope_candidates(const struct msg *m, const struct dsn_result *dr,
				  const char *hint, char (*out)[VERP_ADDRESS_SIZE])
{
	static const struct {
		const char *name;
		size_t len;
	} fields[] = {{"x-original-to:", 14}, {"delivered-to:", 13}, {"to:", 3},
		      {"envelope-to:", 12}, {"x-envelope-to:", 14}, {"x-delivered-to:", 15}};
	const char *p = m->data, *end = m->data + m->len;
	size_t n = 0;

	if (hint != NULL && *hint && n < MAX_CANDIDATES)
		snprintf(out[n++], VERP_ADDRESS_SIZE, "%s", hint);
	if (dr != NULL && dr->envelope_recipient != NULL)
		snprintf(out[n++], VERP_ADDRESS_SIZE, "%s", dr->envelope_recipient);
	if (end - p >= 5 && memcmp(p, "From ", 5) == 0)
		p = memchr(p, '\n', (size_t)(end - p)), p = p ? p + 1 : end;
	while (p < end && *p != '\n' && *p != '\r' && n < MAX_CANDIDATES) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *v;
		char first = (char)(*p | 0x20); /* lower case for letters; never NUL */

		eol = eol ? eol : end;
		/* Most header lines start with none of the fields' first letters. */
		for (size_t i = 0; strchr("xdte", first) != NULL &&
				   i < sizeof fields / sizeof fields[0]; i++) {
			size_t fl = fields[i].len;
			if ((size_t)(eol - p) > fl && strncasecmp(p, fields[i].name, fl) == 0 &&
			    (v = find_ci(p + fl, (size_t)(eol - p - fl), "bounces+")) != NULL &&
			    take_address(v, eol, out[n], VERP_ADDRESS_SIZE))
				n++;
		}
		p = eol + 1;
	}
	return n;
}

static int by_verp(struct proc *p, const struct msg *m, const struct dsn_result *dr,
		   struct attribution *a)
{
	char cand[MAX_CANDIDATES][VERP_ADDRESS_SIZE];
	size_t n = envelope_candidates(m, dr, p->o->envelope, cand);
	struct store_bounce_target t;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(cand[i], "bounces+", 8) != 0)
			continue;
		if ((rc = verp_target(p, cand[i], &t, a)) < 0)
			return rc;
		if (rc == 0) {
			add_target(a, &t, NULL);
			return 0;
		}
	}
	return 0;
}

static const char *cutoff_header(const struct dsn_result *dr, const char *name)
{
	for (size_t i = 0; i < dr->n_cutoff_headers; i++)
		if (strcasecmp(dr->cutoff_headers[i].name, name) == 0)
			return dr->cutoff_headers[i].value;
	return NULL;
}

/* Copies a header value without surrounding white space. */
static void trimmed(const char *v, char *out, size_t n)
{
	size_t len;

	while (*v == ' ' || *v == '\t')
		v++;
	len = strcspn(v, " \t\r\n");
	snprintf(out, n, "%.*s", (int)len, v);
}

static int by_message_id(struct proc *p, const struct dsn_result *dr, struct attribution *a)
{
	struct store_bounce_target t;
	int rc;

	if (dr->original_message_id == NULL)
		return 0;
	if ((rc = store_bounces_by_message_id(p->sb, dr->original_message_id, &t, p->e)) == 0)
		add_target(a, &t, NULL);
	return rc < 0 ? rc : 0;
}

/* X-Cutoff-Delivery (checked against X-Cutoff-Campaign when both are quoted), else
 * X-Cutoff-Campaign + X-Cutoff-Recipient. */
static int by_header(struct proc *p, const struct dsn_result *dr, struct attribution *a)
{
	const char *dv = cutoff_header(dr, "X-Cutoff-Delivery");
	const char *cv = cutoff_header(dr, "X-Cutoff-Campaign");
	const char *rv = cutoff_header(dr, "X-Cutoff-Recipient");
	char campaign[80] = "", key[330] = "", digits[24] = "";
	struct store_bounce_target t;
	int64_t cid = 0;
	long id;
	int rc = 1;

	if (cv != NULL) {
		trimmed(cv, campaign, sizeof campaign);
		if ((rc = store_bounces_campaign_id(p->sb, campaign, &cid, p->e)) < 0)
			return rc;
	}
	if (dv != NULL && (trimmed(dv, digits, sizeof digits), str_to_long(digits, 1, LONG_MAX,
									   &id)) &&
	    (rc = store_bounces_by_delivery(p->sb, id, &t, p->e)) == 0 &&
	    (cv == NULL || cid == t.campaign_id)) {
		add_target(a, &t, NULL);
		return 0;
	}
	if (rc < 0)
		return rc;
	if (cid == 0 || rv == NULL)
		return 0;
	trimmed(rv, key, sizeof key);
	if ((rc = store_bounces_by_recipient(p->sb, cid, key, 0, &t, p->e)) == 0)
		add_target(a, &t, NULL);
	return rc < 0 ? rc : 0;
}

/* Each address the report names, to its most recent delivery. */
static int by_recipient(struct proc *p, const struct dsn_result *dr, struct attribution *a)
{
	struct store_bounce_target t;
	int rc;

	for (size_t i = 0; i < dr->n_recipients; i++) {
		const struct dsn_recipient *r = &dr->recipients[i];
		if (dr->kind == DSN_KIND_BOUNCE && r->class == BOUNCE_CLASS_NONE)
			continue; /* delivered or relayed: this report is not about it */
		if ((rc = store_bounces_by_address(p->sb, r->address, &t, p->e)) < 0)
			return rc;
		if (rc == 0)
			add_target(a, &t, r);
	}
	return 0;
}

/* A signed VERP address anywhere in the text (a quoted Return-Path, a Received line). */
static int verp_in_text(struct proc *p, const struct msg *m, struct attribution *a)
{
	const char *q = m->data, *end = m->data + m->len, *hit;
	char addr[VERP_ADDRESS_SIZE];
	struct store_bounce_target t;
	int tries = 0, rc;

	while (tries < MAX_CANDIDATES && (hit = find_verp(q, (size_t)(end - q))) != NULL) {
		q = hit + 8;
		if (!take_address(hit, end, addr, sizeof addr))
			continue;
		tries++;
		if ((rc = verp_target(p, addr, &t, a)) < 0)
			return rc;
		if (rc == 0) {
			add_target(a, &t, NULL);
			return 0;
		}
	}
	return 0;
}

/* Reads "c=NAME&r=ID&t=TOKEN" (or with &amp;) at p; false if it is not one. */
static bool parse_link(const char *p, const char *end, char *name, size_t nn, long *rid,
		       char token[RENDER_TOKEN_LEN + 1])
{
	size_t len = 0;
	char digits[24];

	while (p + len < end && len + 1 < nn &&
	       (p[len] == '-' || (p[len] >= 'a' && p[len] <= 'z') ||
		(p[len] >= '0' && p[len] <= '9')))
		len++;
	memcpy(name, p, len), name[len] = '\0', p += len;
	p += (end - p > 7 && strncmp(p, "&amp;r=", 7) == 0) ? 7
	     : (end - p > 3 && strncmp(p, "&r=", 3) == 0) ? 3 : 0;
	if (len == 0 || p[-1] != '=')
		return false;
	for (len = 0; p + len < end && len + 1 < sizeof digits && p[len] >= '0' && p[len] <= '9';)
		len++;
	memcpy(digits, p, len), digits[len] = '\0', p += len;
	if (!str_to_long(digits, 1, LONG_MAX, rid))
		return false;
	p += (end - p > 7 && strncmp(p, "&amp;t=", 7) == 0) ? 7
	     : (end - p > 3 && strncmp(p, "&t=", 3) == 0) ? 3 : 0;
	if (p[-1] != '=' || end - p < RENDER_TOKEN_LEN)
		return false;
	memcpy(token, p, RENDER_TOKEN_LEN), token[RENDER_TOKEN_LEN] = '\0';
	return true;
}

/* A one-click unsubscribe link (render_unsubscribe_token) quoted in the text. */
static int link_in_text(struct proc *p, const struct msg *m, struct attribution *a)
{
	const struct config *cfg = p->cfg;
	const char *q = m->data, *end = m->data + m->len, *hit;
	char name[72], token[RENDER_TOKEN_LEN + 1], want[RENDER_TOKEN_LEN + 1];
	struct store_bounce_target t;
	int64_t cid;
	long rid;
	int tries = 0, rc;

	if (cfg->bounces.secret == NULL || p->sb == NULL)
		return 0;
	while (tries < MAX_CANDIDATES && (hit = find_ci(q, (size_t)(end - q), "c=")) != NULL) {
		q = hit + 2;
		if (hit == m->data || (hit[-1] != '?' && hit[-1] != '&' && hit[-1] != ';') ||
		    !parse_link(hit + 2, end, name, sizeof name, &rid, token))
			continue;
		tries++;
		if ((rc = store_bounces_campaign_id(p->sb, name, &cid, p->e)) < 0)
			return rc;
		if (rc == 1 ||
		    render_unsubscribe_token(cfg->bounces.secret, cfg->bounces.secret_len, name,
					     rid, want, p->e) != 0 ||
		    CRYPTO_memcmp(token, want, RENDER_TOKEN_LEN) != 0)
			continue;
		if ((rc = store_bounces_by_recipient(p->sb, cid, NULL, rid, &t, p->e)) < 0)
			return rc;
		if (rc == 0) {
			add_target(a, &t, NULL);
			return 0;
		}
	}
	return 0;
}

/* Tries each way in turn; a->by says which one held (BOUNCES_BY_NONE: none). */
static int attribute(struct proc *p, const struct msg *m, const struct dsn_result *dr,
		     struct attribution *a)
{
	bool token_only = dr->kind == DSN_KIND_UNSUBSCRIBE;
	int rc;

	if ((rc = by_verp(p, m, dr, a)) != 0 || a->n > 0)
		return a->by = BOUNCES_BY_VERP, rc;
	if (p->sb != NULL && !token_only) {
		if ((rc = by_message_id(p, dr, a)) != 0 || a->n > 0)
			return a->by = BOUNCES_BY_MESSAGE_ID, rc;
		if ((rc = by_header(p, dr, a)) != 0 || a->n > 0)
			return a->by = BOUNCES_BY_HEADER, rc;
		if ((rc = by_recipient(p, dr, a)) != 0 || a->n > 0)
			return a->by = BOUNCES_BY_RECIPIENT, rc;
	}
	if ((rc = verp_in_text(p, m, a)) != 0 || a->n > 0 ||
	    (dr->kind == DSN_KIND_UNSUBSCRIBE && (rc = link_in_text(p, m, a)) != 0) || a->n > 0)
		return a->by = BOUNCES_BY_TEXT, rc;
	a->by = BOUNCES_BY_NONE;
	return 0;
}

/* ---- deciding and acting ---------------------------------------------------------------- */

/* A success notice: every recipient delivered, relayed or expanded. */
static bool success_notice(const struct dsn_result *dr)
{
	if (dr->n_recipients == 0)
		return false;
	for (size_t i = 0; i < dr->n_recipients; i++) {
		enum dsn_action act = dr->recipients[i].action;
		if (act != DSN_ACTION_DELIVERED && act != DSN_ACTION_RELAYED &&
		    act != DSN_ACTION_EXPANDED)
			return false;
	}
	return true;
}

/* Sets res->reason and returns true when the message must go to quarantine. */
static bool must_quarantine(const struct dsn_result *dr, const struct attribution *a,
			    bool looked_up, struct bounces_result *res)
{
	const char *why = NULL;

	if (dr->kind == DSN_KIND_OTHER && !success_notice(dr))
		why = "not recognised as a bounce, delay, complaint, auto-reply or unsubscribe"
		      " request: left for a person to read";
	else if (dr->kind == DSN_KIND_UNSUBSCRIBE && a->by == BOUNCES_BY_NONE)
		why = "an unsubscribe request without a valid token (it was not sent to a signed"
		      " List-Unsubscribe address and quotes no valid one-click link)";
	else if (a->by == BOUNCES_BY_NONE && !looked_up)
		why = "could not be attributed: no valid VERP token (no database was read, so"
		      " Message-ID, X-Cutoff headers and addresses were not looked up)";
	else if (a->by == BOUNCES_BY_NONE)
		why = "could not be attributed to a delivery: no valid VERP token, no known"
		      " Message-ID or X-Cutoff header, no known recipient address";
	if (why == NULL)
		return false;
	if (a->note[0] != '\0')
		snprintf(res->reason, sizeof res->reason, "%s (%s)", why, a->note);
	else
		snprintf(res->reason, sizeof res->reason, "%s", why);
	return true;
}

/* The DSN recipient a delivery-level target is about: its own address, else the first
 * hard failure, else the first failure, else the first. NULL if the report names none. */
static const struct dsn_recipient *pick_recipient(const struct dsn_result *dr, const char *email)
{
	const struct dsn_recipient *hard = NULL, *failed = NULL;

	for (size_t i = 0; i < dr->n_recipients; i++) {
		const struct dsn_recipient *r = &dr->recipients[i];
		if (r->class != BOUNCE_CLASS_NONE && *email && strcasecmp(r->address, email) == 0)
			return r;
		if (r->class == BOUNCE_CLASS_HARD && hard == NULL)
			hard = r;
		if (r->class != BOUNCE_CLASS_NONE && failed == NULL)
			failed = r;
	}
	return hard ? hard : failed ? failed : dr->n_recipients ? &dr->recipients[0] : NULL;
}

/* The remote server's words, cut at DIAG_IN_EVENT bytes on a character boundary; bytes
 * that are not UTF-8 (a Latin-1 reply) kept as U+FFFD. */
static json_t *diagnostic_json(const char *diag)
{
	size_t len = strnlen(diag, DIAG_IN_EVENT);

	if (diag[len] != '\0')
		while (len > 0 && ((unsigned char)diag[len] & 0xC0) == 0x80)
			len--;
	return dsn_json_text(diag, len);
}

/* A JSON string of a value that may not be UTF-8 (see dsn_json_text). */
static json_t *text_json(const char *s)
{
	return dsn_json_text(s, s ? strlen(s) : 0);
}

/* The event's detail: what came back, how it was attributed, which message. */
static char *event_detail(const struct msg *m, const struct dsn_result *dr,
			  const struct attribution *a, const struct target *tg,
			  const struct bounces_result *res)
{
	const struct dsn_recipient *r = tg->r;
	json_t *o = json_object();
	char *text;

	json_object_set_new(o, "source", json_string("dsn"));
	json_object_set_new(o, "kind", json_string(dsn_kind_name(dr->kind)));
	json_object_set_new(o, "delivery", json_integer(tg->t.delivery_id));
	json_object_set_new(o, "attributed_by", json_string(bounces_by_name(a->by)));
	if (r != NULL) {
		json_object_set_new(o, "address", text_json(r->address));
		json_object_set_new(o, "status", json_string(r->status));
		json_object_set_new(o, "code", json_integer(r->reply_code));
		json_object_set_new(o, "reason", json_string(classify_reason_name(r->reason)));
		json_object_set_new(o, "class", json_string(classify_class_name(r->class)));
		if (r->diagnostic != NULL)
			json_object_set_new(o, "diagnostic", diagnostic_json(r->diagnostic));
	}
	if (dr->feedback_type != NULL)
		json_object_set_new(o, "feedback_type", text_json(dr->feedback_type));
	json_object_set_new(o, "message", text_json(m->source));
	if (m->index > 0)
		json_object_set_new(o, "index", json_integer((json_int_t)m->index));
	json_object_set_new(o, "sha256", json_string(res->sha256));
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}

/* Suppresses an address (once) and counts it when it is new. */
static int suppress(struct proc *p, const struct target *tg, const char *reason,
		    const char *detail)
{
	bool already = false;
	int rc;

	if (tg->t.email[0] == '\0')
		return 0; /* forgotten: its suppression by hash already holds */
	if ((rc = store_suppressed(p->s, tg->t.email, &already, p->e)) != 0 ||
	    (rc = store_suppress(p->s, tg->t.email, reason, tg->t.campaign_id, detail,
				 p->o->now, p->e)) != 0)
		return rc;
	if (!already)
		p->sum->suppressed++;
	return 0;
}

static int event(struct proc *p, const struct target *tg, const char *kind, const char *detail)
{
	return store_event_add(p->s, tg->t.campaign_id, tg->t.recipient_id, p->o->now, kind,
			       detail, p->e);
}

/* A soft bounce: counted; the threshold reached on distinct days suppresses. */
static int act_soft(struct proc *p, const struct target *tg, const char *detail,
		    enum bounces_action *action)
{
	int64_t days = 0;
	bool added;
	int rc;

	if (tg->t.email[0] == '\0')
		return event(p, tg, "soft-bounce", detail);
	if ((rc = store_bounces_soft_add(p->sb, tg->t.email, tg->t.delivery_id, tg->t.sent_at,
					 p->o->now, &added, p->e)) != 0 ||
	    (rc = event(p, tg, "soft-bounce", detail)) != 0 ||
	    (rc = store_bounces_soft_days(p->sb, tg->t.email,
					  tg->t.sent_at > 0 ? tg->t.sent_at : p->o->now, &days,
					  p->e)) != 0)
		return rc;
	if (days < p->cfg->bounces.soft_threshold)
		return 0;
	*action = BOUNCES_SUPPRESS;
	if ((rc = suppress(p, tg, "soft-bounce", detail)) != 0)
		return rc;
	return event(p, tg, "suppressed", detail);
}

/* A failed delivery: 'bounced' in the ledger, then hard or soft. */
static int act_bounce(struct proc *p, const struct target *tg, const char *detail,
		      enum bounces_action *action)
{
	enum bounce_class cls = tg->r ? tg->r->class : BOUNCE_CLASS_SOFT;
	bool changed;
	int rc;

	if (cls == BOUNCE_CLASS_NONE)
		cls = BOUNCE_CLASS_SOFT; /* a failure whose recipient line was not found */
	if (tg->t.delivery_id > 0 &&
	    (rc = store_bounces_mark_bounced(p->sb, tg->t.delivery_id, classify_class_name(cls),
					     p->o->now, &changed, p->e)) != 0)
		return rc;
	if (cls == BOUNCE_CLASS_SOFT) {
		p->sum->soft++;
		if (*action != BOUNCES_SUPPRESS)
			*action = BOUNCES_COUNT;
		return p->o->dry_run ? 0 : act_soft(p, tg, detail, action);
	}
	p->sum->hard++;
	*action = BOUNCES_SUPPRESS;
	if ((rc = suppress(p, tg, "hard-bounce", detail)) != 0)
		return rc;
	return event(p, tg, "bounce", detail);
}

static int act_unsubscribe(struct proc *p, const struct target *tg, const char *detail,
			   enum bounces_action *action)
{
	int64_t cancelled;
	int rc;

	if (p->cfg->bounces.unsubscribe_global) {
		*action = BOUNCES_SUPPRESS;
		rc = suppress(p, tg, "unsubscribe", detail);
	} else {
		*action = BOUNCES_UNSUBSCRIBE;
		rc = store_bounces_unsubscribe(p->sb, tg->t.campaign_id, tg->t.recipient_id,
					       p->o->now, &cancelled, p->e);
	}
	return rc != 0 ? rc : event(p, tg, "unsubscribe", detail);
}

/* What one target of the message calls for; in a dry run only *action is set. */
static int act_target(struct proc *p, const struct msg *m, const struct dsn_result *dr,
		      const struct attribution *a, struct target *tg,
		      struct bounces_result *res)
{
	bool w = writes(p);
	char *detail;
	int rc = 0;

	if (tg->r == NULL)
		tg->r = pick_recipient(dr, tg->t.email);
	if (dr->kind == DSN_KIND_BOUNCE && !w) {
		enum bounce_class cls = tg->r ? tg->r->class : BOUNCE_CLASS_SOFT;
		res->action = cls == BOUNCE_CLASS_HARD ? BOUNCES_SUPPRESS
			      : res->action == BOUNCES_SUPPRESS ? BOUNCES_SUPPRESS : BOUNCES_COUNT;
		*(cls == BOUNCE_CLASS_HARD ? &p->sum->hard : &p->sum->soft) += 1;
		return 0;
	}
	detail = w ? event_detail(m, dr, a, tg, res) : NULL;
	switch (dr->kind) {
	case DSN_KIND_BOUNCE: rc = act_bounce(p, tg, detail, &res->action); break;
	case DSN_KIND_COMPLAINT:
		res->action = BOUNCES_SUPPRESS;
		rc = w ? suppress(p, tg, "complaint", detail) : 0;
		rc = rc == 0 && w ? event(p, tg, "complaint", detail) : rc;
		break;
	case DSN_KIND_UNSUBSCRIBE:
		res->action = p->cfg->bounces.unsubscribe_global ? BOUNCES_SUPPRESS
								 : BOUNCES_UNSUBSCRIBE;
		rc = w ? act_unsubscribe(p, tg, detail, &res->action) : 0;
		break;
	case DSN_KIND_DELAY: rc = w ? event(p, tg, "delay", detail) : 0; break;
	case DSN_KIND_AUTOREPLY: rc = w ? event(p, tg, "autoreply", detail) : 0; break;
	case DSN_KIND_OTHER: rc = w ? event(p, tg, "delivery-notice", detail) : 0; break;
	}
	free(detail);
	return rc;
}

static void count_kind(struct bounces_summary *sum, enum dsn_kind kind)
{
	switch (kind) {
	case DSN_KIND_DELAY: sum->delays++; break;
	case DSN_KIND_AUTOREPLY: sum->autoreplies++; break;
	case DSN_KIND_COMPLAINT: sum->complaints++; break;
	case DSN_KIND_UNSUBSCRIBE: sum->unsubscribes++; break;
	case DSN_KIND_OTHER: sum->notices++; break;
	case DSN_KIND_BOUNCE: break; /* counted per delivery, hard or soft */
	}
}

static int act(struct proc *p, const struct msg *m, const struct dsn_result *dr,
	       struct attribution *a, struct bounces_result *res)
{
	struct store_bounce_message rec;
	char *source = NULL;
	size_t fresh = 0;
	int rc = 0;

	res->action = BOUNCES_RECORD;
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		if (dr->kind == DSN_KIND_BOUNCE && strcmp(a->v[i].t.state, "bounced") == 0)
			continue; /* another copy of a bounce already counted for that delivery */
		fresh++;
		rc = act_target(p, m, dr, a, &a->v[i], res);
	}
	if (fresh == 0 && dr->kind == DSN_KIND_BOUNCE)
		res->action = BOUNCES_DUPLICATE, p->sum->duplicates++;
	else
		count_kind(p->sum, dr->kind);
	if (rc != 0 || !writes(p))
		return rc;
	source = m->index > 0 ? xasprintf("%s#%zu", m->source, m->index) : xstrdup(m->source);
	rec = (struct store_bounce_message){res->sha256, source, dsn_kind_name(dr->kind),
					    bounces_by_name(a->by), res->delivery_id,
					    bounces_action_name(res->action)};
	rc = store_bounces_record(p->sb, &rec, p->o->now, p->e);
	free(source);
	return rc;
}

/* ---- quarantine ------------------------------------------------------------------------- */

/* Writes data to dir/name through a temporary file, fsync and rename. */
static int write_file(const char *dir, const char *name, const char *data, size_t len,
		      struct err *e)
{
	char *tmp = xasprintf("%s/.tmp-%s", dir, name), *path = xasprintf("%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;
	size_t off = 0;
	ssize_t n;

	if (fd < 0) {
		rc = err_sys(e, ERR_IO, errno, "quarantine: cannot create %s", tmp);
		goto out;
	}
	while (off < len && (n = write(fd, data + off, len - off)) > 0)
		off += (size_t)n;
	if (off < len || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
		rc = err_sys(e, ERR_IO, errno, "quarantine: cannot write %s", path);
		if (off < len)
			close(fd);
		unlink(tmp);
	}
out:
	free(tmp), free(path);
	return rc;
}

static int ensure_dir(const char *dir, struct err *e)
{
	struct stat st;

	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return err_sys(e, ERR_IO, errno, "cannot create the quarantine folder %s (set"
			       " bounces.quarantine in the config)", dir);
	return 0;
}

/* The message goes to the quarantine folder (moved when it is a file, else written), with
 * NAME.reason beside it. */
static int quarantine(struct proc *p, const struct msg *m, const struct bounces_result *res)
{
	char when[32], *reason_name, *text, *to;
	time_t t = (time_t)p->o->now;
	struct tm tm;
	int rc;

	if ((rc = ensure_dir(p->quarantine, p->e)) != 0)
		return rc;
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	reason_name = xasprintf("%s.reason", m->name);
	text = xasprintf("reason: %s\nsource: %s%s%.0zu\nsha256: %s\nkind: %s\nquarantined: %s\n",
			 res->reason, m->source, m->index ? " message " : "", m->index,
			 res->sha256, dsn_kind_name(res->kind), when);
	rc = write_file(p->quarantine, reason_name, text, strlen(text), p->e);
	to = xasprintf("%s/%s", p->quarantine, m->name);
	if (rc == 0 && m->path != NULL && rename(m->path, to) != 0) {
		if (errno != EXDEV)
			rc = err_sys(p->e, ERR_IO, errno, "cannot move %s to %s", m->path, to);
		else if ((rc = write_file(p->quarantine, m->name, m->data, m->len, p->e)) == 0)
			unlink(m->path); /* moved across file systems: copied, then removed */
	} else if (rc == 0 && m->path == NULL) {
		rc = write_file(p->quarantine, m->name, m->data, m->len, p->e);
	}
	free(reason_name), free(text), free(to);
	return rc;
}

/* ---- one message ------------------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at p (of at most n bytes) and its code point; 0 if
 * it is not one (overlong, surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_decode(const unsigned char *p, size_t n, unsigned *cp)
{
	size_t len = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
	static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};

	if (len == 0 || len > n || p[0] > 0xF4)
		return 0;
	*cp = p[0] & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (p[i] & 0x3F);
	}
	if (*cp < min[len] || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
		return 0;
	return len;
}

/* A JSON string, ASCII only: control characters and non-ASCII escaped (\uXXXX, surrogate
 * pairs above U+FFFF), invalid UTF-8 as U+FFFD. NULL is null. */
static void json_str(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = s ? strlen(s) : 0, len;
	unsigned cp;

	if (s == NULL) {
		buf_puts(b, "null");
		return;
	}
	buf_putc(b, '"');
	for (size_t i = 0; i < n; i += len) {
		/* A run of characters that stand for themselves, copied at once. */
		for (len = 0; i + len < n && p[i + len] >= 0x20 && p[i + len] < 0x7F &&
			      p[i + len] != '"' && p[i + len] != '\\'; len++)
			;
		if (len > 0) {
			buf_append(b, s + i, len);
			continue;
		}
		len = 1;
		if (p[i] == '"' || p[i] == '\\')
			buf_putc(b, '\\'), buf_putc(b, (char)p[i]);
		else if (p[i] >= 0x20 && p[i] < 0x7F)
			buf_putc(b, (char)p[i]);
		else if (p[i] < 0x80)
			buf_printf(b, "\\u%04x", p[i]);
		else if ((len = utf8_decode(p + i, n - i, &cp)) == 0)
			len = 1, buf_puts(b, "\\ufffd");
		else if (cp < 0x10000)
			buf_printf(b, "\\u%04x", cp);
		else
			buf_printf(b, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
				   0xDC00 + ((cp - 0x10000) & 0x3FF));
	}
	buf_putc(b, '"');
}

/* One recipient as dsn_result_to_json has it. */
static void json_recipient(struct buf *b, const struct dsn_recipient *r)
{
	buf_puts(b, "{\"address\":");
	json_str(b, r->address);
	buf_puts(b, ",\"status\":");
	json_str(b, r->status[0] ? r->status : NULL);
	if (r->reply_code)
		buf_printf(b, ",\"reply_code\":%d", r->reply_code);
	else
		buf_puts(b, ",\"reply_code\":null");
	buf_puts(b, ",\"reason\":");
	json_str(b, classify_reason_name(r->reason));
	buf_puts(b, ",\"class\":");
	json_str(b, r->class == BOUNCE_CLASS_NONE ? NULL : classify_class_name(r->class));
	buf_putc(b, '}');
}

/* {"file", "index" (mbox), "kind", "attributed_by", "recipients", "action", "delivery",
 * "reason" (quarantined)}: written directly, the JSON library's tree costs more than the
 * parse of many messages. */
static void json_line(struct proc *p, const struct msg *m, const struct dsn_result *dr,
		      const struct bounces_result *res)
{
	struct buf *b = &p->json;

	buf_reset(b);
	buf_puts(b, "{\"file\":");
	json_str(b, m->source);
	if (m->index > 0)
		buf_printf(b, ",\"index\":%zu", m->index);
	buf_printf(b, ",\"kind\":\"%s\",\"attributed_by\":\"%s\",\"recipients\":[",
		   dsn_kind_name(res->kind), bounces_by_name(res->by));
	for (size_t i = 0; dr != NULL && i < dr->n_recipients; i++) {
		if (i > 0)
			buf_putc(b, ',');
		json_recipient(b, &dr->recipients[i]);
	}
	buf_printf(b, "],\"action\":\"%s\",\"delivery\":", bounces_action_name(res->action));
	if (res->delivery_id)
		buf_printf(b, "%lld", (long long)res->delivery_id);
	else
		buf_puts(b, "null");
	if (res->reason[0]) {
		buf_puts(b, ",\"reason\":");
		json_str(b, res->reason);
	}
	buf_puts(b, "}\n");
	fwrite(b->data, 1, b->len, p->o->json);
}

/* Decides and acts on a parsed message (dr NULL: it was not a message at all). */
static int handle(struct proc *p, const struct msg *m, const struct dsn_result *dr,
		  struct bounces_result *res)
{
	struct attribution *a;
	int rc = 0;

	if (p->attr == NULL)
		p->attr = xmalloc(sizeof *p->attr);
	a = p->attr; /* only v[0..n) is ever read */
	a->by = BOUNCES_BY_NONE, a->n = 0, a->note[0] = '\0';
	if (dr != NULL && (rc = attribute(p, m, dr, a)) != 0)
		goto out;
	res->by = a->by, res->n_targets = a->n;
	if (a->n > 0) {
		res->delivery_id = a->v[0].t.delivery_id;
		res->recipient_id = a->v[0].t.recipient_id;
	}
	if (dr == NULL || must_quarantine(dr, a, p->sb != NULL, res)) {
		res->action = BOUNCES_QUARANTINE;
		p->sum->quarantined++;
		rc = p->o->dry_run ? 0 : quarantine(p, m, res);
		goto out;
	}
	rc = act(p, m, dr, a, res);
	if (rc == 0 && m->done != NULL && !p->o->dry_run)
		move_add(p, m->path, m->done);
out:
	return rc;
}

/* What parsing gives, on any thread, before the message is acted on in order. */
struct parsed {
	struct dsn_result *dr; /* NULL: not a message (pe says why) */
	struct err pe;
	char sha256[65];       /* "" in a dry run, which records nothing */
};

static void parse_stage(const struct msg *m, bool hash, struct parsed *pr)
{
	memset(pr, 0, sizeof *pr);
	if (hash)
		sha256_hex(m->data, m->len, pr->sha256);
	dsn_parse_buffer(m->data, m->len, &pr->dr, &pr->pe);
}

/*
 * Acts on one parsed message: one processed before only moves along; otherwise it is
 * attributed and acted on, or quarantined. Returns 0 when it was handled; an error
 * (database, quarantine) leaves it where it was.
 */
static int act_stage(struct proc *p, const struct msg *m, const struct parsed *pr,
		     struct bounces_result *res)
{
	bool seen = false;
	int rc;

	memset(res, 0, sizeof *res);
	memcpy(res->sha256, pr->sha256, sizeof res->sha256);
	p->sum->messages++;
	if ((rc = proc_begin(p)) != 0)
		return rc;
	if (writes(p) && (rc = store_bounces_seen(p->sb, res->sha256, &seen, p->e)) != 0)
		return rc;
	if (seen) {
		res->action = BOUNCES_DUPLICATE;
		p->sum->duplicates++;
		if (m->done != NULL)
			move_add(p, m->path, m->done);
	} else {
		if (pr->dr == NULL)
			snprintf(res->reason, sizeof res->reason, "%s", pr->pe.msg);
		res->kind = pr->dr ? pr->dr->kind : DSN_KIND_OTHER;
		rc = handle(p, m, pr->dr, res);
	}
	if (rc == 0 && p->o->json != NULL)
		json_line(p, m, pr->dr, res);
	if (rc == 0 && p->in_txn && ++p->n_txn >= TXN_MESSAGES)
		rc = proc_flush(p);
	return rc;
}

/* The quarantine folder: the option, else the config, else fallback (the caller frees). */
static char *quarantine_dir(const struct config *cfg, const struct bounces_options *o,
			    const char *fallback)
{
	if (o->quarantine != NULL)
		return xstrdup(o->quarantine);
	if (cfg->bounces.quarantine != NULL)
		return xstrdup(cfg->bounces.quarantine);
	return xstrdup(fallback);
}

/* The folder holding path ("." when it has none). */
static char *parent_dir(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	while (len > 0 && path[len - 1] != '/')
		len--;
	while (len > 1 && path[len - 1] == '/')
		len--;
	return len == 0 ? xstrdup(".") : xstrndup(path, len);
}

int bounces_process_buffer(struct store *s, const struct config *cfg, const char *data,
			   size_t len, const char *source, size_t index,
			   const char *quarantine_name, const char *quarantine_default,
			   const struct bounces_options *o, struct bounces_result *res,
			   struct bounces_summary *sum, struct err *e)
{
	char *qdir = quarantine_dir(cfg, o, quarantine_default ? quarantine_default : "quarantine");
	struct msg m = {data, len, source, index, NULL, quarantine_name, NULL};
	struct parsed pr;
	char *name = NULL;
	struct proc p;
	int rc;

	parse_stage(&m, true, &pr);
	if (quarantine_name == NULL)
		m.name = name = xasprintf("message-%.16s", pr.sha256);
	proc_init(&p, s, cfg, o, qdir, sum, e);
	rc = act_stage(&p, &m, &pr, res);
	if (rc == 0)
		rc = proc_flush(&p);
	else
		proc_abort(&p);
	proc_release(&p);
	dsn_result_free(pr.dr);
	free(name), free(qdir);
	return rc;
}

/* ---- batches: read and parse on every processor, act in order on this thread ------------ */

#define BATCH_MESSAGES 128
#define MAX_JOBS 16

/* One message of a batch. */
struct slot {
	struct msg m;
	struct buf data; /* kept from batch to batch */
	char *path;      /* a file to read (Maildir, folder), or NULL: data is filled */
	char *done;      /* Maildir: cur/NAME:2,S */
	char *name;      /* its name in the quarantine folder */
	int read_rc;     /* 0 read, 1 gone (another run took it), else unreadable (re) */
	struct err re;
	struct parsed pr;
};

struct batch {
	struct slot v[BATCH_MESSAGES];
	size_t n;
	_Atomic size_t next;
	bool hash;
	int jobs;
};

/* Reads the whole file at path into b; 1 if it is gone (ENOENT). */
static int read_path(const char *path, struct buf *b, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	buf_reset(b);
	if (fd < 0)
		return errno == ENOENT ? 1 : err_sys(e, ERR_IO, errno, "cannot open %s", path);
	/* Room for the whole file and the read that finds its end: no copy as it is read. */
	buf_grow(b, fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096);
	for (;;) {
		if (b->cap - b->len < 2)
			buf_grow(b, 4096);
		if ((n = read(fd, b->data + b->len, b->cap - b->len - 1)) <= 0)
			break;
		b->len += (size_t)n;
	}
	b->data[b->len] = '\0';
	if (n < 0) {
		int err = errno;
		close(fd);
		return err_sys(e, ERR_IO, err, "cannot read %s", path);
	}
	close(fd);
	return 0;
}

static void *batch_worker(void *arg)
{
	struct batch *b = arg;
	size_t i;

	while ((i = b->next++) < b->n) {
		struct slot *s = &b->v[i];
		if (s->path != NULL && (s->read_rc = read_path(s->path, &s->data, &s->re)) != 0)
			continue;
		s->m.data = s->data.data, s->m.len = s->data.len;
		parse_stage(&s->m, b->hash, &s->pr);
	}
	return NULL;
}

/* Reads and parses the batch on b->jobs threads (this one included). */
static void batch_parse(struct batch *b)
{
	pthread_t t[MAX_JOBS];
	int started = 0;

	b->next = 0;
	for (int i = 1; i < b->jobs && (size_t)i < b->n; i++)
		if (pthread_create(&t[started], NULL, batch_worker, b) == 0)
			started++;
	batch_worker(b);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
}

/* Acts on one slot. A message that cannot be read or quarantined stays where it is and the
 * run goes on; a database error stops it. */
static int slot_act(struct proc *p, struct slot *s)
{
	struct bounces_result res;
	int rc;

	if (s->read_rc == 1)
		return 0;
	if (s->read_rc != 0) {
		log_warnx("%s", s->re.msg);
		p->sum->unreadable++;
		return 0;
	}
	rc = act_stage(p, &s->m, &s->pr, &res);
	if (rc == ERR_IO && res.action == BOUNCES_QUARANTINE) {
		log_warnx("%s: left where it was: %s", s->m.source, p->e->msg);
		err_clear(p->e);
		p->sum->unreadable++;
		return 0;
	}
	return rc;
}

/* Acts on the parsed slots in order; empties the batch. */
static int batch_run(struct proc *p, struct batch *b)
{
	int rc = 0;

	for (size_t i = 0; i < b->n && rc == 0; i++)
		rc = slot_act(p, &b->v[i]);
	for (size_t i = 0; i < b->n; i++) {
		struct slot *s = &b->v[i];
		dsn_result_free(s->pr.dr);
		free(s->path), free(s->done), free(s->name);
		s->pr.dr = NULL, s->path = s->done = s->name = NULL;
		s->read_rc = 0;
		err_clear(&s->re);
	}
	b->n = 0;
	return rc;
}

static struct batch *batch_new(const struct proc *p)
{
	struct batch *b = xcalloc(1, sizeof *b);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	for (size_t i = 0; i < BATCH_MESSAGES; i++)
		buf_init(&b->v[i].data);
	b->hash = writes(p);
	b->jobs = p->o->jobs > 0 ? p->o->jobs : cpus > 0 ? (int)cpus : 1;
	if (b->jobs > MAX_JOBS)
		b->jobs = MAX_JOBS;
	return b;
}

static void batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < BATCH_MESSAGES; i++) {
		buf_free(&b->v[i].data);
		dsn_result_free(b->v[i].pr.dr);
		free(b->v[i].path), free(b->v[i].done), free(b->v[i].name);
	}
	free(b);
}

/* ---- input: Maildir, folder of files, mbox, a pipe -------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files of dir (no dot files), sorted; *n of them. ERR_NOTFOUND, ERR_IO. */
static int list_files(const char *dir, char ***out, size_t *n, struct err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;

	*n = 0;
	if (d == NULL)
		return err_sys(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, errno,
			       "cannot read the folder %s", dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		if (*n == cap)
			cap = cap ? 2 * cap : 256, v = xrealloc(v, cap * sizeof *v);
		v[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (*n > 1)
		qsort(v, *n, sizeof *v, cmp_names);
	*out = v;
	return 0;
}

static void names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Every file of folder, in name order; in a Maildir each one handled goes to cur/. */
static int process_files(struct proc *p, const char *folder, const char *maildir)
{
	struct batch *b = batch_new(p);
	char **names = NULL;
	size_t n = 0;
	int rc;

	if ((rc = list_files(folder, &names, &n, p->e)) != 0)
		goto out;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct slot *s = &b->v[b->n++];
		s->path = xasprintf("%s/%s", folder, names[i]);
		s->done = maildir ? maildir_cur_path(maildir, names[i]) : NULL;
		s->name = xstrdup(names[i]);
		s->m = (struct msg){NULL, 0, s->path, 0, s->path, s->name, s->done};
		if (b->n == BATCH_MESSAGES || i + 1 == n) {
			batch_parse(b);
			rc = batch_run(p, b);
		}
	}
	rc = rc == 0 ? proc_flush(p) : (proc_abort(p), rc);
out:
	batch_free(b);
	names_free(names, n);
	return rc;
}

static int unreadable_status(const struct bounces_summary *sum, struct err *e)
{
	if (sum->unreadable > 0)
		return err_set(e, ERR_IO, "%lld message%s could not be read, moved or quarantined"
			       " and %s left where %s (see the warnings above)",
			       (long long)sum->unreadable, sum->unreadable == 1 ? "" : "s",
			       sum->unreadable == 1 ? "was" : "were",
			       sum->unreadable == 1 ? "it was" : "they were");
	return 0;
}

int bounces_process_maildir(struct store *s, const struct config *cfg, const char *dir,
			    const struct bounces_options *o, struct bounces_summary *sum,
			    struct err *e)
{
	char *newdir = xasprintf("%s/new", dir), *curdir = xasprintf("%s/cur", dir);
	char *parent = parent_dir(dir), *fallback = xasprintf("%s/quarantine", parent);
	char *qdir = quarantine_dir(cfg, o, fallback);
	struct stat st;
	struct proc p;
	bool maildir;
	int rc;

	proc_init(&p, s, cfg, o, qdir, sum, e);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		rc = err_set(e, ERR_NOTFOUND, "%s: no such folder: check --maildir (or the config's"
			     " bounces.maildir)", dir);
		goto out;
	}
	maildir = stat(newdir, &st) == 0 && S_ISDIR(st.st_mode);
	if (!maildir && !o->dry_run) {
		rc = err_set(e, ERR_USAGE, "%s is not a Maildir (it has no new/ folder); a plain"
			     " folder of messages can only be read with --dry-run", dir);
		goto out;
	}
	if (maildir && !o->dry_run && mkdir(curdir, 0700) != 0 && errno != EEXIST) {
		rc = err_sys(e, ERR_IO, errno, "cannot create %s", curdir);
		goto out;
	}
	rc = process_files(&p, maildir ? newdir : dir, maildir ? dir : NULL);
	if (rc == 0)
		rc = unreadable_status(sum, e);
out:
	proc_release(&p);
	free(newdir), free(curdir), free(parent), free(fallback), free(qdir);
	return rc;
}

/* An mbox being split at its From_ lines (at the start, or after an empty line). */
struct mbox_reader {
	FILE *f;
	char *line;
	size_t cap;
	ssize_t len;     /* the line read ahead, or -1 at the end */
	bool prev_blank;
	size_t index;
};

static bool is_blank(const char *s, ssize_t n)
{
	return (n == 1 && s[0] == '\n') || (n == 2 && s[0] == '\r' && s[1] == '\n');
}

static bool is_separator(const struct mbox_reader *r)
{
	return r->len >= 5 && memcmp(r->line, "From ", 5) == 0 && r->prev_blank;
}

static void mbox_advance(struct mbox_reader *r)
{
	if (r->len >= 0)
		r->prev_blank = is_blank(r->line, r->len);
	r->len = getline(&r->line, &r->cap, r->f);
}

/* The next message into b; false at the end. Text before the first From_ line is skipped. */
static bool mbox_next(struct mbox_reader *r, struct buf *b)
{
	buf_reset(b);
	while (r->len >= 0 && !is_separator(r))
		mbox_advance(r);
	if (r->len < 0)
		return false;
	do {
		buf_append(b, r->line, (size_t)r->len);
		mbox_advance(r);
	} while (r->len >= 0 && !is_separator(r));
	r->index++;
	return true;
}

/* Names the quarantined copies of an mbox's messages MBOX-N-HASH, once their hash is known. */
static void name_mbox_slots(struct batch *b, const char *base)
{
	for (size_t i = 0; i < b->n; i++) {
		b->v[i].name = xasprintf("%s-%zu-%.12s", base, b->v[i].m.index,
					 b->v[i].pr.sha256);
		b->v[i].m.name = b->v[i].name;
	}
}

static int process_mbox_file(struct proc *p, FILE *f, const char *path)
{
	struct mbox_reader r = {f, NULL, 0, 0, true, 0};
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct batch *b = batch_new(p);
	bool more = true;
	int rc = 0;

	r.len = getline(&r.line, &r.cap, f);
	while (rc == 0 && more) {
		struct slot *s = &b->v[b->n];
		if ((more = mbox_next(&r, &s->data))) {
			s->m = (struct msg){s->data.data, s->data.len, path, r.index,
					    NULL, NULL, NULL};
			b->n++;
		}
		if (b->n == BATCH_MESSAGES || (!more && b->n > 0)) {
			batch_parse(b);
			name_mbox_slots(b, base);
			rc = batch_run(p, b);
		}
	}
	if (rc == 0 && ferror(f))
		rc = err_sys(p->e, ERR_IO, errno, "cannot read the mbox %s", path);
	rc = rc == 0 ? proc_flush(p) : (proc_abort(p), rc);
	free(r.line);
	batch_free(b);
	return rc;
}

int bounces_process_mbox(struct store *s, const struct config *cfg, const char *path,
			 const struct bounces_options *o, struct bounces_summary *sum,
			 struct err *e)
{
	char *parent = parent_dir(path), *fallback = xasprintf("%s/quarantine", parent);
	char *qdir = quarantine_dir(cfg, o, fallback);
	FILE *f = fopen(path, "rb");
	struct proc p;
	int rc;

	proc_init(&p, s, cfg, o, qdir, sum, e);
	if (f == NULL)
		rc = err_sys(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, errno,
			     "cannot open the mbox %s", path);
	else
		rc = process_mbox_file(&p, f, path);
	if (f != NULL)
		fclose(f);
	proc_release(&p);
	free(parent), free(fallback), free(qdir);
	return rc;
}

int bounces_process_fd(struct store *s, const struct config *cfg, int fd, const char *db_path,
		       const struct bounces_options *o, struct bounces_summary *sum,
		       struct err *e)
{
	char chunk[65536], sha[65], *parent = parent_dir(db_path ? db_path : "./db");
	char *fallback = xasprintf("%s/quarantine", parent), *name = NULL;
	struct bounces_result res;
	struct buf b;
	ssize_t n;
	int rc;

	buf_init(&b);
	while ((n = read(fd, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			buf_append(&b, chunk, (size_t)n);
	if (n < 0) {
		rc = err_sys(e, ERR_IO, errno, "cannot read the message on standard input");
		goto out;
	}
	buf_append(&b, "", 0);
	sha256_hex(b.data, b.len, sha);
	name = xasprintf("stdin-%.16s", sha);
	rc = bounces_process_buffer(s, cfg, b.data, b.len, "-", 0, name, fallback, o, &res, sum,
				    e);
out:
	buf_free(&b);
	free(parent), free(fallback), free(name);
	return rc;
}
