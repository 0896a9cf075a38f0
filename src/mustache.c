/* mustache.c — Mustache templates: parser to a node tree, renderer over jansson values (Mustache spec 1.x). */
#include "mustache.h"

#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELIM_MAX 16 /* longest delimiter a {{=a b=}} tag may set */
#define MUSTACHE_RENDER_DEPTH (2 * MUSTACHE_MAX_DEPTH)

enum node_type {
	N_TEXT,     /* literal text: at most one line, ending with its '\n' */
	N_INDENT,   /* a line of the template starts: emit the partial indentation */
	N_VAR,      /* {{x}}, {{{x}}}, {{&x}} */
	N_SECTION,  /* {{#x}} ... {{/x}} */
	N_INVERTED, /* {{^x}} ... {{/x}} */
	N_PARTIAL   /* {{>x}} */
};

struct tmpl;

struct nodelist {
	struct node *v;
	size_t n;
	size_t cap;
};

struct node {
	enum node_type type;
	bool raw;            /* N_VAR: never escaped */
	bool standalone;     /* N_PARTIAL: alone on its line, so text is indentation */
	int line;
	int col;
	const char *text;    /* N_TEXT, N_PARTIAL indentation: points into the source */
	size_t len;
	char *name;          /* as written: "a.b", "." (owned) */
	char *keys;          /* name split at '.', each part NUL-terminated (owned) */
	size_t nkeys;        /* 0 for "." */
	struct nodelist kids; /* N_SECTION, N_INVERTED */
	struct tmpl *partial; /* N_PARTIAL: owned by the struct mustache */
};

/* One template source: the root or a partial. */
struct tmpl {
	char *name;   /* partial name (NULL for the root) */
	char *origin; /* for messages */
	char *source;
	struct nodelist body;
	bool loaded;
	bool missing; /* a partial the loader did not find */
};

struct mustache {
	struct tmpl *root;
	struct tmpl **parts; /* every partial reachable from root, by name */
	size_t nparts;
	size_t cap;
};

/* ---- node lists ---- */

static struct node *nodelist_push(struct nodelist *l, enum node_type type)
{
	struct node *n;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
	}
	n = &l->v[l->n++];
	memset(n, 0, sizeof *n);
	n->type = type;
	return n;
}

static void nodelist_free(struct nodelist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].keys);
		nodelist_free(&l->v[i].kids);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static void tmpl_free(struct tmpl *t)
{
	if (t == NULL)
		return;
	nodelist_free(&t->body);
	free(t->name);
	free(t->origin);
	free(t->source);
	free(t);
}

void mustache_free(struct mustache *t)
{
	if (t == NULL)
		return;
	tmpl_free(t->root);
	for (size_t i = 0; i < t->nparts; i++)
		tmpl_free(t->parts[i]);
	free(t->parts);
	free(t);
}

/* The partial called name, registered (not yet loaded) if it is new. */
static struct tmpl *mustache_partial(struct mustache *m, const char *name)
{
	struct tmpl *t;

	for (size_t i = 0; i < m->nparts; i++)
		if (strcmp(m->parts[i]->name, name) == 0)
			return m->parts[i];
	if (m->nparts == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 4;
		m->parts = xrealloc(m->parts, m->cap * sizeof *m->parts);
	}
	t = xcalloc(1, sizeof *t);
	t->name = xstrdup(name);
	m->parts[m->nparts++] = t;
	return t;
}

/* ---- parser ---- */

struct parser {
	struct mustache *m;
	struct tmpl *t;
	const char *src;
	size_t len;
	size_t pos;        /* everything before pos has been consumed */
	char otag[DELIM_MAX + 1];
	char ctag[DELIM_MAX + 1];
	size_t olen;
	size_t clen;
	size_t line_start; /* start of the line holding pos (when !tag_on_line: no tag yet) */
	bool tag_on_line;  /* a tag that was not standalone sits on the current line */
	bool at_bol;       /* nothing of the current line has been emitted yet */
	int depth;
	/* position cache for line:column */
	size_t lc_pos;
	size_t lc_bol;
	int lc_line;
};

/* A tag as read: kind is its sigil ('#', '^', '/', '>', '!', '=', '&', '{' or 0). */
struct tag {
	char kind;
	size_t start;       /* offset of the opening delimiter */
	size_t end;         /* offset just past the closing delimiter */
	const char *body;   /* trimmed content after the sigil */
	size_t body_len;
	int line;
	int col;
	bool standalone;
	size_t line_start;  /* start of the tag's line (standalone only) */
	size_t next;        /* where parsing resumes: past the line end if standalone */
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Line and column (in UTF-8 characters) of offset pos; offsets only grow. */
static void parser_where(struct parser *p, size_t pos, int *line, int *col)
{
	int c = 1;

	if (pos < p->lc_pos) {
		p->lc_pos = 0;
		p->lc_bol = 0;
		p->lc_line = 1;
	}
	for (; p->lc_pos < pos; p->lc_pos++)
		if (p->src[p->lc_pos] == '\n') {
			p->lc_line++;
			p->lc_bol = p->lc_pos + 1;
		}
	for (size_t i = p->lc_bol; i < pos; i++)
		if (((unsigned char)p->src[i] & 0xC0) != 0x80)
			c++;
	*line = p->lc_line;
	*col = c;
}

/* A short, printable excerpt of s for messages. */
static void excerpt(char *dst, size_t size, const char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 4 < size; i++)
		dst[j++] = (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') ? ' ' : s[i];
	if (j + 4 >= size && n > j) {
		memcpy(dst + j, "...", 3);
		j += 3;
	}
	dst[j] = '\0';
}

static int parser_fail(struct parser *p, int line, int col, struct err *e,
		       const char *what)
{
	return err_set(e, ERR_CONFIG, "%s:%d:%d: %s", p->t->origin, line, col, what);
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* Finds where the tag opened at tg->start ends and what it holds. */
static int tag_read(struct parser *p, struct tag *tg, struct err *e)
{
	const char *s = p->src + tg->start + p->olen;
	size_t avail = p->len - (tg->start + p->olen);
	char close[DELIM_MAX + 2];
	size_t close_len = 0;
	const char *hit;
	char msg[160];

	tg->kind = avail > 0 && strchr("#^/>!=&{", s[0]) != NULL ? s[0] : 0;
	if (tg->kind == '{')
		close[close_len++] = '}';
	else if (tg->kind == '=')
		close[close_len++] = '=';
	memcpy(close + close_len, p->ctag, p->clen);
	close_len += p->clen;
	hit = avail > (tg->kind != 0) ?
		memmem(s + (tg->kind != 0), avail - (tg->kind != 0), close, close_len) : NULL;
	if (hit == NULL) {
		snprintf(msg, sizeof msg, "tag '%s' is never closed; end it with '%.*s'",
			 p->otag, (int)close_len, close);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	tg->body = s + (tg->kind != 0);
	tg->body_len = (size_t)(hit - tg->body);
	tg->end = (size_t)(hit - p->src) + close_len;
	trim(&tg->body, &tg->body_len);
	return 0;
}

/* Checks a tag name: non-empty and free of whitespace (spec: "a non-whitespace
 * character sequence"), and for dotted names no empty part. */
static int tag_check_name(struct parser *p, const struct tag *tg, struct err *e)
{
	char msg[200], ex[48];
	const char *s = tg->body;
	size_t n = tg->body_len;

	excerpt(ex, sizeof ex, s, n);
	if (n == 0) {
		snprintf(msg, sizeof msg, "empty tag '%s%s'; put a name in it", p->otag, p->ctag);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)s[i])) {
			snprintf(msg, sizeof msg, "tag name '%s' contains a space; "
				 "names are one word (is a closing '%s' missing?)", ex, p->ctag);
			return parser_fail(p, tg->line, tg->col, e, msg);
		}
	if (tg->kind == '>' || (n == 1 && s[0] == '.'))
		return 0;
	if (s[0] == '.' || s[n - 1] == '.' || memmem(s, n, "..", 2) != NULL) {
		snprintf(msg, sizeof msg, "bad name '%s': use '.' alone or dotted names like 'a.b'", ex);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	return 0;
}

/* Decides whether tg stands alone on its line (only blanks around it), which
 * removes the whole line from the output. Interpolations never do. */
static void tag_standalone(struct parser *p, struct tag *tg)
{
	size_t ls = p->line_start, i;
	bool prior_tag = p->tag_on_line;

	tg->standalone = false;
	tg->next = tg->end;
	if (tg->kind == 0 || tg->kind == '&' || tg->kind == '{')
		return;
	for (i = tg->start; i > p->pos; i--)
		if (p->src[i - 1] == '\n') {
			ls = i;
			prior_tag = false;
			break;
		}
	if (prior_tag)
		return;
	for (i = ls; i < tg->start; i++)
		if (!is_blank(p->src[i]))
			return;
	for (i = tg->end; i < p->len && is_blank(p->src[i]); i++)
		;
	if (i + 1 < p->len && p->src[i] == '\r' && p->src[i + 1] == '\n')
		i += 2;
	else if (i < p->len && p->src[i] == '\n')
		i++;
	else if (i < p->len)
		return;
	tg->standalone = true;
	tg->line_start = ls;
	tg->next = i;
}

/* Emits src[a, b) as text nodes, one per line, each line of the template
 * preceded by an N_INDENT marker. */
static void emit_text(struct parser *p, struct nodelist *out, size_t a, size_t b)
{
	while (a < b) {
		const char *nl = memchr(p->src + a, '\n', b - a);
		size_t end = nl != NULL ? (size_t)(nl - p->src) + 1 : b;
		struct node *n;

		if (p->at_bol) {
			nodelist_push(out, N_INDENT);
			p->at_bol = false;
		}
		n = nodelist_push(out, N_TEXT);
		n->text = p->src + a;
		n->len = end - a;
		if (nl != NULL) {
			p->at_bol = true;
			p->line_start = end;
			p->tag_on_line = false;
		}
		a = end;
	}
}

/* Fills the name fields of n from the tag. */
static void node_set_name(struct node *n, const struct tag *tg)
{
	n->line = tg->line;
	n->col = tg->col;
	n->name = xstrndup(tg->body, tg->body_len);
	if (tg->body_len == 1 && tg->body[0] == '.')
		return;
	n->keys = xstrndup(tg->body, tg->body_len);
	n->nkeys = 1;
	for (char *k = n->keys; *k != '\0'; k++)
		if (*k == '.') {
			*k = '\0';
			n->nkeys++;
		}
}

static int parse_delimiters(struct parser *p, const struct tag *tg, struct err *e)
{
	const char *s = tg->body, *end = tg->body + tg->body_len, *o, *c;
	size_t on, cn;
	char msg[240], ex[48];

	o = s;
	while (s < end && !isspace((unsigned char)*s))
		s++;
	on = (size_t)(s - o);
	while (s < end && isspace((unsigned char)*s))
		s++;
	c = s;
	cn = (size_t)(end - c);
	if (on == 0 || cn == 0 || on > DELIM_MAX || cn > DELIM_MAX || memchr(o, '=', on) ||
	    memchr(c, '=', cn) || memchr(c, ' ', cn) || memchr(c, '\t', cn) ||
	    memchr(c, '\n', cn) || memchr(c, '\r', cn)) {
		excerpt(ex, sizeof ex, tg->body, tg->body_len);
		snprintf(msg, sizeof msg, "bad set-delimiter tag '%s=%s=%s': write two delimiters "
			 "of 1 to %d characters without '=' or spaces, separated by a space, "
			 "like %s=<%% %%>=%s", p->otag, ex, p->ctag, DELIM_MAX, p->otag, p->ctag);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	memcpy(p->otag, o, on);
	p->otag[on] = '\0';
	p->olen = on;
	memcpy(p->ctag, c, cn);
	p->ctag[cn] = '\0';
	p->clen = cn;
	return 0;
}

static int parse_block(struct parser *p, struct nodelist *out, const struct node *open,
		       struct err *e);

static int parse_section(struct parser *p, struct nodelist *out, const struct tag *tg,
			 struct err *e)
{
	struct node *n = nodelist_push(out, tg->kind == '#' ? N_SECTION : N_INVERTED);
	char msg[120];

	node_set_name(n, tg);
	if (p->depth >= MUSTACHE_MAX_DEPTH) {
		snprintf(msg, sizeof msg, "sections nested more than %d deep; "
			 "flatten the template", MUSTACHE_MAX_DEPTH);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	p->depth++;
	/* out is not touched until the section closes, so n stays valid */
	return parse_block(p, &n->kids, n, e);
}

static int parse_close(struct parser *p, const struct tag *tg, const struct node *open,
		       struct err *e)
{
	char msg[300], ex[48];

	excerpt(ex, sizeof ex, tg->body, tg->body_len);
	if (open == NULL) {
		snprintf(msg, sizeof msg, "'%s/%s%s' closes a section that was never opened; "
			 "remove it or add '%s#%s%s' before it", p->otag, ex, p->ctag,
			 p->otag, ex, p->ctag);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	if (strlen(open->name) != tg->body_len ||
	    memcmp(open->name, tg->body, tg->body_len) != 0) {
		snprintf(msg, sizeof msg, "'%s/%s%s' does not match the open section '%s' "
			 "(line %d, column %d); close that one first with '%s/%s%s'",
			 p->otag, ex, p->ctag, open->name, open->line, open->col,
			 p->otag, open->name, p->ctag);
		return parser_fail(p, tg->line, tg->col, e, msg);
	}
	p->depth--;
	return 1;
}

static void parse_partial(struct parser *p, struct nodelist *out, const struct tag *tg)
{
	struct node *n = nodelist_push(out, N_PARTIAL);

	node_set_name(n, tg);
	free(n->keys);
	n->keys = NULL;
	n->nkeys = 0;
	n->partial = mustache_partial(p->m, n->name);
	n->standalone = tg->standalone;
	if (tg->standalone) {
		n->text = p->src + tg->line_start;
		n->len = tg->start - tg->line_start;
	}
}

/* Handles one tag; returns 1 when it closes open, 0 to go on, or an error. */
static int parse_tag(struct parser *p, struct nodelist *out, const struct node *open,
		     const struct tag *tg, struct err *e)
{
	struct node *n;
	int rc;

	if (tg->kind != '!' && tg->kind != '=' && (rc = tag_check_name(p, tg, e)) < 0)
		return rc;
	switch (tg->kind) {
	case '!':
		return 0;
	case '=':
		return parse_delimiters(p, tg, e);
	case '#':
	case '^':
		rc = parse_section(p, out, tg, e);
		return rc < 0 ? rc : 0;
	case '/':
		return parse_close(p, tg, open, e);
	case '>':
		parse_partial(p, out, tg);
		return 0;
	default:
		n = nodelist_push(out, N_VAR);
		node_set_name(n, tg);
		n->raw = tg->kind == '&' || tg->kind == '{';
		return 0;
	}
}

/* Emits the text before tg and moves past tg (and past its whole line when it
 * stands alone, the blanks before it included). */
static void parser_skip_tag(struct parser *p, struct nodelist *out, struct tag *tg)
{
	tag_standalone(p, tg);
	emit_text(p, out, p->pos, tg->standalone ? tg->line_start : tg->start);
	if (!tg->standalone && p->at_bol) {
		nodelist_push(out, N_INDENT);
		p->at_bol = false;
	}
	p->pos = tg->next;
	p->tag_on_line = !tg->standalone;
	if (tg->standalone)
		p->line_start = tg->next;
}

/* Parses until the close tag of open (returns 1 once it is read) or the end of
 * the source (returns 0; an error when a section is still open). */
static int parse_block(struct parser *p, struct nodelist *out, const struct node *open,
		       struct err *e)
{
	char msg[200];
	int rc;

	for (;;) {
		struct tag tg = { 0 };
		const char *hit = p->pos < p->len ?
			memmem(p->src + p->pos, p->len - p->pos, p->otag, p->olen) : NULL;

		if (hit == NULL)
			break;
		tg.start = (size_t)(hit - p->src);
		parser_where(p, tg.start, &tg.line, &tg.col);
		if ((rc = tag_read(p, &tg, e)) < 0)
			return rc;
		parser_skip_tag(p, out, &tg);
		rc = parse_tag(p, out, open, &tg, e);
		if (rc != 0)
			return rc;
	}
	emit_text(p, out, p->pos, p->len);
	p->pos = p->len;
	if (open != NULL) {
		snprintf(msg, sizeof msg, "section '%s' is never closed; add '%s/%s%s' where it ends",
			 open->name, p->otag, open->name, p->ctag);
		return parser_fail(p, open->line, open->col, e, msg);
	}
	return 0;
}

/* Parses t->source into t->body with the default delimiters. */
static int tmpl_parse(struct mustache *m, struct tmpl *t, struct err *e)
{
	struct parser p = {
		.m = m, .t = t, .src = t->source, .len = strlen(t->source),
		.otag = "{{", .ctag = "}}", .olen = 2, .clen = 2,
		.at_bol = true, .lc_line = 1,
	};

	t->loaded = true;
	return parse_block(&p, &t->body, NULL, e);
}

/* Loads and parses partial t through the loader. */
static int tmpl_load(struct mustache *m, struct tmpl *t,
		     const struct mustache_partials *partials, struct err *e)
{
	char *text = NULL, *origin = NULL;
	int rc = 1;

	t->loaded = true;
	if (partials != NULL && partials->load != NULL)
		rc = partials->load(partials->ud, t->name, &text, &origin, e);
	if (rc < 0) {
		if (e != NULL && e->code == 0)
			err_set(e, rc, "loading partial '%s' failed", t->name);
		else
			err_prefix(e, "partial '%s': ", t->name);
		goto out;
	}
	if (rc > 0 || text == NULL) {
		t->missing = true;
		rc = 0;
		goto out;
	}
	t->source = text;
	t->origin = origin != NULL ? origin : xstrdup(t->name);
	text = origin = NULL;
	rc = tmpl_parse(m, t, e);
out:
	free(text);
	free(origin);
	return rc;
}

int mustache_compile(struct mustache **out, const char *text, const char *origin,
		     const struct mustache_partials *partials, struct err *e)
{
	struct mustache *m = xcalloc(1, sizeof *m);
	int rc;

	*out = NULL;
	m->root = xcalloc(1, sizeof *m->root);
	m->root->origin = xstrdup(origin != NULL ? origin : "<template>");
	m->root->source = xstrdup(text);
	if ((rc = tmpl_parse(m, m->root, e)) < 0)
		goto out;
	/* partials register themselves while being parsed; load them in turn */
	for (size_t i = 0; i < m->nparts; i++)
		if (!m->parts[i]->loaded && (rc = tmpl_load(m, m->parts[i], partials, e)) < 0)
			goto out;
	*out = m;
	m = NULL;
	rc = 0;
out:
	mustache_free(m);
	return rc;
}

/* ---- renderer ---- */

/* The context stack, innermost first, kept on the C stack while rendering. */
struct ctx {
	const json_t *v;
	const struct ctx *up;
};

/* The indentation of the partials being rendered, innermost last. */
struct indent {
	const char *s;
	size_t n;
	const struct indent *up;
};

struct render {
	unsigned flags;
	struct buf *out;
	struct err *e;
	int depth;
};

static int render_list(struct render *r, const struct tmpl *t, const struct nodelist *l,
		       const struct ctx *c, const struct indent *ind);

/* The value n names, or NULL when it resolves to nothing. */
static const json_t *lookup(const struct node *n, const struct ctx *c)
{
	const json_t *v = NULL;
	const char *k = n->keys;

	if (n->nkeys == 0)
		return c != NULL ? c->v : NULL;
	for (; c != NULL; c = c->up)
		if (json_is_object(c->v) && (v = json_object_get(c->v, k)) != NULL)
			break;
	for (size_t i = 1; v != NULL && i < n->nkeys; i++) {
		k += strlen(k) + 1;
		v = json_is_object(v) ? json_object_get(v, k) : NULL;
	}
	return v;
}

/* JavaScript's !!v, as the spec's sections say. */
static bool truthy(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL:
	case JSON_FALSE: return false;
	case JSON_STRING: return json_string_length(v) > 0;
	case JSON_INTEGER: return json_integer_value(v) != 0;
	case JSON_REAL: return json_real_value(v) != 0.0;
	case JSON_ARRAY: return json_array_size(v) > 0;
	default: return true;
	}
}

static void put_escaped(struct buf *b, const char *s, size_t n)
{
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		const char *ent;

		switch (s[i]) {
		case '&': ent = "&amp;"; break;
		case '<': ent = "&lt;"; break;
		case '>': ent = "&gt;"; break;
		case '"': ent = "&quot;"; break;
		case '\'': ent = "&#39;"; break;
		default: continue;
		}
		buf_append(b, s + run, i - run);
		buf_puts(b, ent);
		run = i + 1;
	}
	buf_append(b, s + run, n - run);
}

/* Formats d in the shortest "%g" form that reads back as d, with a '.' as the
 * decimal point whatever the locale. */
static size_t format_real(char *dst, size_t size, double d)
{
	const char *dp = localeconv()->decimal_point;
	int n = 0;

	for (int prec = 1; prec <= 17; prec++) {
		n = snprintf(dst, size, "%.*g", prec, d);
		if (strtod(dst, NULL) == d)
			break;
	}
	if (dp != NULL && strcmp(dp, ".") != 0 && dp[0] != '\0') {
		char *at = strstr(dst, dp);
		size_t dl = strlen(dp);

		if (at != NULL) {
			*at = '.';
			memmove(at + 1, at + dl, strlen(at + dl) + 1);
			n -= (int)dl - 1;
		}
	}
	return n > 0 ? (size_t)n : 0;
}

static int render_fail(struct render *r, const struct tmpl *t, const struct node *n,
		       const char *what)
{
	return err_set(r->e, ERR_DATA, "%s:%d:%d: %s '%s'", t->origin, n->line, n->col,
		       what, n->name);
}

static int render_var(struct render *r, const struct tmpl *t, const struct node *n,
		      const struct ctx *c)
{
	const json_t *v = lookup(n, c);
	char num[64];
	size_t len;

	if (v == NULL)
		return r->flags & MUSTACHE_STRICT ? render_fail(r, t, n, "unknown variable") : 0;
	switch (json_typeof(v)) {
	case JSON_STRING:
		if (!n->raw && (r->flags & MUSTACHE_ESCAPE_HTML))
			put_escaped(r->out, json_string_value(v), json_string_length(v));
		else
			buf_append(r->out, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER:
		len = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
				       json_integer_value(v));
		buf_append(r->out, num, len);
		return 0;
	case JSON_REAL:
		len = format_real(num, sizeof num, json_real_value(v));
		buf_append(r->out, num, len);
		return 0;
	case JSON_TRUE: buf_puts(r->out, "true"); return 0;
	case JSON_FALSE: buf_puts(r->out, "false"); return 0;
	case JSON_NULL: return 0;
	default:
		if (r->flags & MUSTACHE_STRICT)
			return render_fail(r, t, n, json_is_array(v) ?
					   "a list cannot be printed; iterate it with a section:" :
					   "an object cannot be printed; name one of its fields:");
		return 0;
	}
}

static int render_section(struct render *r, const struct tmpl *t, const struct node *n,
			  const struct ctx *c, const struct indent *ind)
{
	const json_t *v = lookup(n, c);
	struct ctx inner = { .up = c };
	int rc = 0;

	if (v == NULL && (r->flags & MUSTACHE_STRICT))
		return render_fail(r, t, n, "unknown section");
	if (n->type == N_INVERTED)
		return v == NULL || !truthy(v) ? render_list(r, t, &n->kids, c, ind) : 0;
	if (v == NULL || !truthy(v))
		return 0;
	if (!json_is_array(v)) {
		inner.v = v;
		return render_list(r, t, &n->kids, &inner, ind);
	}
	for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
		inner.v = json_array_get(v, i);
		rc = render_list(r, t, &n->kids, &inner, ind);
	}
	return rc;
}

static int render_partial(struct render *r, const struct tmpl *t, const struct node *n,
			  const struct ctx *c, const struct indent *ind)
{
	struct indent mine = { .s = n->text, .n = n->len, .up = ind };

	if (n->partial->missing)
		return r->flags & MUSTACHE_STRICT ? render_fail(r, t, n, "unknown partial") : 0;
	/* a standalone partial is indented like its tag; an inline one is not */
	return render_list(r, n->partial, &n->partial->body, c, n->standalone ? &mine : NULL);
}

static void put_indent(struct buf *b, const struct indent *ind)
{
	if (ind == NULL)
		return;
	put_indent(b, ind->up);
	buf_append(b, ind->s, ind->n);
}

static int render_list(struct render *r, const struct tmpl *t, const struct nodelist *l,
		       const struct ctx *c, const struct indent *ind)
{
	int rc = 0;

	if (++r->depth > MUSTACHE_RENDER_DEPTH) {
		rc = err_set(r->e, ERR_DATA, "%s: sections and partials nested more than %d deep "
			     "(does a partial include itself outside a section that ends?)",
			     t->origin, MUSTACHE_RENDER_DEPTH);
		goto out;
	}
	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		const struct node *n = &l->v[i];

		switch (n->type) {
		case N_TEXT: buf_append(r->out, n->text, n->len); break;
		case N_INDENT: put_indent(r->out, ind); break;
		case N_VAR: rc = render_var(r, t, n, c); break;
		case N_SECTION:
		case N_INVERTED: rc = render_section(r, t, n, c, ind); break;
		case N_PARTIAL: rc = render_partial(r, t, n, c, ind); break;
		}
	}
out:
	r->depth--;
	return rc;
}

int mustache_render(const struct mustache *t, const json_t *data, unsigned flags,
		    struct buf *out, struct err *e)
{
	struct render r = { .flags = flags, .out = out, .e = e };
	struct ctx root = { .v = data };
	size_t mark = out->len;
	int rc;

	if (flags & ~(MUSTACHE_ESCAPE_HTML | MUSTACHE_STRICT))
		return err_set(e, ERR_USAGE, "mustache_render: unknown flags 0x%x", flags);
	buf_grow(out, 0); /* so that out->data is a string even if nothing is added */
	out->data[mark] = '\0';
	rc = render_list(&r, t->root, &t->root->body, data != NULL ? &root : NULL, NULL);
	if (rc < 0) {
		out->len = mark;
		out->data[mark] = '\0';
	}
	return rc;
}

/* ---- names ---- */

struct walk {
	int (*fn)(void *ud, const struct mustache_name *name);
	void *ud;
	const char **scope;
	size_t depth;
	size_t cap;
	const struct tmpl **path; /* partials being walked, to stop at recursion */
	size_t npath;
	size_t path_cap;
};

static int walk_list(struct walk *w, const struct tmpl *t, const struct nodelist *l);

static int walk_report(struct walk *w, const struct tmpl *t, const struct node *n,
		       enum mustache_name_kind kind)
{
	struct mustache_name nm = {
		.name = n->name, .kind = kind, .origin = t->origin, .line = n->line,
		.col = n->col, .scope = w->scope, .scope_len = w->depth,
		.missing = n->type == N_PARTIAL && n->partial->missing,
	};

	return w->fn(w->ud, &nm);
}

static int walk_partial(struct walk *w, const struct tmpl *p)
{
	int rc;

	if (p->missing)
		return 0;
	for (size_t i = 0; i < w->npath; i++)
		if (w->path[i] == p)
			return 0;
	if (w->npath == w->path_cap) {
		w->path_cap = w->path_cap ? w->path_cap * 2 : 8;
		w->path = xrealloc(w->path, w->path_cap * sizeof *w->path);
	}
	w->path[w->npath++] = p;
	rc = walk_list(w, p, &p->body);
	w->npath--;
	return rc;
}

static int walk_section(struct walk *w, const struct tmpl *t, const struct node *n)
{
	int rc;

	if (n->type == N_INVERTED)
		return walk_list(w, t, &n->kids);
	if (w->depth == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 8;
		w->scope = xrealloc(w->scope, w->cap * sizeof *w->scope);
	}
	w->scope[w->depth++] = n->name;
	rc = walk_list(w, t, &n->kids);
	w->depth--;
	return rc;
}

static int walk_list(struct walk *w, const struct tmpl *t, const struct nodelist *l)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		const struct node *n = &l->v[i];

		switch (n->type) {
		case N_VAR:
			rc = walk_report(w, t, n, MUSTACHE_NAME_VARIABLE);
			break;
		case N_SECTION:
		case N_INVERTED:
			rc = walk_report(w, t, n, n->type == N_SECTION ? MUSTACHE_NAME_SECTION :
					 MUSTACHE_NAME_INVERTED);
			if (rc == 0)
				rc = walk_section(w, t, n);
			break;
		case N_PARTIAL:
			rc = walk_report(w, t, n, MUSTACHE_NAME_PARTIAL);
			if (rc == 0)
				rc = walk_partial(w, n->partial);
			break;
		default:
			break;
		}
	}
	return rc;
}

int mustache_names(const struct mustache *t,
		   int (*fn)(void *ud, const struct mustache_name *name), void *ud)
{
	struct walk w = { .fn = fn, .ud = ud };
	int rc;

	rc = walk_list(&w, t->root, &t->root->body);
	free(w.scope);
	free(w.path);
	return rc;
}
