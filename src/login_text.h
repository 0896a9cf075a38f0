/* login_text.h — login reminder texts rendered once per group of recipients who provably get
 * the same words, and per local day; used by login.c. */
#ifndef CUTOFF_LOGIN_TEXT_H
#define CUTOFF_LOGIN_TEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "campaign.h"
#include "err.h"
#include "render.h"
#include "store.h"

/*
 * Why this is exact. A login text is render_login's output, a function of the template the
 * recipient is given (their segment's template folder in their locale), of the variables that
 * template reads, and of the login time only through days_left (whole local days to the
 * cutoff in the recipient's zone, else the campaign's). When every login.mustache a segment
 * could get (its folder at the top and in every subfolder of the templates folder, a
 * superset of the locale folders render picks from) reads only names from a fixed list —
 * the campaign's and segment's own values, the dates and days_left, client_name, locale,
 * timezone, kind, and the recipient's locale, timezone, client, version, platform or os —
 * with no partial and no section scope, two recipients of that segment with the same
 * locale, timezone and used fields get the same text on the same local day. Anything else
 * (recipient.name, attributes, a partial, a name this list does not know) makes the segment
 * unshared: each recipient's text is rendered for them, as before.
 * A text is kept for the local day of the login in that zone, when that day is an ordinary
 * 24-hour one (its midnight and last second are on the same date and offset: no clock change
 * inside); on a day with a clock change it is kept for that second only.
 */

/* What a campaign's segments allow: immutable once made, shared by threads. */
struct login_text_plan;

/*
 * Reads every login.mustache the segments of c could use (c->templates_dir) and decides
 * which segments' texts can be shared. A template that cannot be read or compiled makes its
 * segment unshared (render_templates_load reports it). Never fails but for memory, which
 * aborts. Free with login_text_plan_free.
 */
struct login_text_plan *login_text_plan_new(const struct campaign *c);

/* Frees p (NULL is fine). */
void login_text_plan_free(struct login_text_plan *p);

/* Whether segment index g of the plan's campaign has shared texts (for tests). */
bool login_text_plan_shared(const struct login_text_plan *p, size_t g);

/* One thread's texts, across the campaigns of a catalog. */
struct login_text_cache;

struct login_text_cache *login_text_cache_new(void);
void login_text_cache_free(struct login_text_cache *tc);

/* A text to show, and the days_left it was rendered with. */
struct login_text {
	const char *text; /* valid until the next login_text_render with the same cache */
	int64_t days_left;
};

/*
 * The login text of q (render_login's, through r, which renders campaign index k of the
 * catalog whose plan is p) into *out: from tc when a recipient of the same group had it
 * rendered for the same local day, else rendered now and kept. Returns 0, or render_login's
 * error (nothing is kept then).
 */
int login_text_render(struct login_text_cache *tc, const struct login_text_plan *p, size_t k,
		      struct render *r, const struct render_request *q,
		      struct render_result *res, struct login_text *out, struct err *e);

#endif
