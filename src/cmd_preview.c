/* cmd_preview.c — `cutoff preview CAMPAIGN USER`: the exact RFC 5322 message a user would get, or one part of it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "cli.h"
#include "mime.h"
#include "render.h"
#include "util.h"

struct preview {
	struct ctx *x;
	const struct campaign *c;
	struct render *r;
	int64_t *segment_ids; /* the store id of each segment, parallel to c->segments */
	int part;             /* a render_part, or -1 for the whole message */
	bool crlf;
	struct err *e;
};

static int part_from_name(const char *name)
{
	static const char *const names[RENDER_NPARTS] = {"subject", "text", "html", "login"};

	for (int p = 0; p < RENDER_NPARTS; p++)
		if (strcmp(name, names[p]) == 0)
			return p;
	return -2;
}

static const struct segment *segment_of(const struct preview *pv, int64_t segment_id)
{
	for (size_t i = 0; i < pv->c->n_segments; i++)
		if (segment_id != 0 && pv->segment_ids[i] == segment_id)
			return &pv->c->segments[i];
	return NULL;
}

/* Tells on stderr why this message would not actually be sent now. */
static void notes(struct preview *pv, const struct store_recipient *rc)
{
	struct err ignored = {0};
	bool suppressed = false;

	if (rc->state != NULL && strcmp(rc->state, "completed") == 0)
		fprintf(stderr, "cutoff: note: user %s has completed (upgraded); no e-mail would be"
			" sent\n", rc->user_id);
	if (rc->email != NULL && store_suppressed(pv->x->store, rc->email, &suppressed,
						  &ignored) == 0 && suppressed)
		fprintf(stderr, "cutoff: note: %s is suppressed (bounced, complained or"
			" unsubscribed); no e-mail would be sent\n", rc->email);
}

static int print_part(struct preview *pv, const struct render_result *res, const char *user,
		      struct err *e)
{
	const struct buf *b = &res->part[pv->part];

	if (pv->part == RENDER_HTML && !res->has_html)
		return err_set(e, ERR_NOTFOUND, "the message for %s has no HTML part (its template"
			       " in locale %s has no html.mustache): it is text only", user,
			       res->locale);
	fwrite(b->data ? b->data : "", 1, b->len, pv->x->out);
	if (b->len == 0 || b->data[b->len - 1] != '\n')
		fputc('\n', pv->x->out);
	return 0;
}

static int preview_one(void *ud, const struct store_recipient *rc)
{
	struct preview *pv = ud;
	struct render_request q = {rc, segment_of(pv, rc->segment_id), ctx_now(pv->x), NULL, NULL,
				   NULL, NULL};
	struct render_result res;
	int ret;

	render_result_init(&res);
	if (pv->part == RENDER_LOGIN)
		ret = render_login(pv->r, &q, &res, pv->e);
	else
		ret = render_message(pv->r, &q, &res, pv->e);
	if (ret != 0)
		goto out;
	notes(pv, rc);
	if (pv->part >= 0) {
		ret = print_part(pv, &res, rc->user_id, pv->e);
		goto out;
	}
	if (!pv->crlf)
		mime_crlf_to_lf(&res.message);
	fwrite(res.message.data, 1, res.message.len, pv->x->out);
out:
	render_result_free(&res);
	return ret;
}

static int segment_ids_load(struct store *s, int64_t campaign_id, const struct campaign *c,
			    int64_t **out, struct err *e)
{
	int rc = 0;

	*out = xcalloc(c->n_segments ? c->n_segments : 1, sizeof **out);
	for (size_t i = 0; i < c->n_segments && rc == 0; i++)
		rc = store_segment_id(s, campaign_id, c->segments[i].name, &(*out)[i], e);
	return rc;
}

static int preview_parse(struct preview *pv, struct render_options *o, int argc, char **argv,
			 struct err *e)
{
	static const struct option longopts[] = {
		{"part", required_argument, NULL, 'p'},
		{"crlf", no_argument, NULL, 'c'},
		{"ics", no_argument, NULL, 'i'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 0, opterr = 0; /* 0: glibc re-initialises its permutation state */
	while ((ch = getopt_long(argc, argv, "p:", longopts, NULL)) != -1) {
		if (ch == 'p' && (pv->part = part_from_name(optarg)) < 0)
			return cli_usage(&cmd_preview, e, "--part takes text, html, subject or login");
		else if (ch == 'c')
			pv->crlf = true;
		else if (ch == 'i')
			o->attach_ics = true;
		else if (ch != 'p')
			return cli_usage(&cmd_preview, e, "unknown option");
	}
	if (argc - optind != 2)
		return cli_usage(&cmd_preview, e, "preview needs a campaign and a user");
	return 0;
}

static int preview_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct preview pv = {.x = x, .part = -1, .e = e};
	struct render_options o = {0};
	struct store_campaign sc = {0};
	struct campaign *c = NULL;
	struct render_templates *t = NULL;
	int rc;

	if ((rc = preview_parse(&pv, &o, argc, argv, e)) != 0)
		return rc;
	if ((rc = cmd_load_campaign(x, argv[optind], &sc, &c, e)) != 0)
		return rc;
	mime_init();
	pv.c = c;
	o.secret = x->cfg->bounces.secret;
	o.secret_len = x->cfg->bounces.secret_len;
	if ((rc = render_templates_load(&t, c, e)) != 0 ||
	    (rc = segment_ids_load(x->store, sc.id, c, &pv.segment_ids, e)) != 0)
		goto out;
	pv.r = render_new(t, &o);
	rc = store_recipient_lookup(x->store, sc.id, argv[optind + 1], preview_one, &pv, e);
out:
	render_free(pv.r);
	render_templates_free(t);
	free(pv.segment_ids);
	mime_shutdown();
	campaign_free(c);
	store_campaign_clear(&sc);
	return rc;
}

const struct command cmd_preview = {
	"preview", preview_run,
	"preview CAMPAIGN USER [--part P] [--crlf]",
	"print the exact RFC 5322 message USER would get",
	"\nUSER is a user id or an e-mail address of the campaign's recipients. The message is\n"
	"rendered from the recipient's segment template in their locale (with fallback), dated\n"
	"by the clock (--now), and composed exactly as it would be sent; only the Message-ID and\n"
	"MIME boundaries, which are random, differ from one run to the next.\n\n"
	"  --part P   print one part decoded instead: subject, text, html, or login (the\n"
	"             reminder shown at login)\n"
	"  --crlf     keep the CRLF line endings of the wire format (default: LF for display)\n"
	"  --ics      attach the cutoff as an iCalendar event (cutoff.ics)\n",
};
