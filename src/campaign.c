/* campaign.c — campaign files: schema, validation (all problems with file:line), segment matching. */
#include "campaign.h"

#include <errno.h>
#include <fnmatch.h>
#include <libconfig.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "diag.h"
#include "schedule.h"
#include "util.h"
#include "version.h"

const char *const campaign_template_parts[] = {"subject", "text", "html", "login", NULL};
const bool campaign_template_required[] = {true, true, false, true};

static const struct schema_key match_schema[] = {
	{"client", SCHEMA_STRINGS, false, 0, 0, NULL},
	{"platform", SCHEMA_STRINGS, false, 0, 0, NULL},
	{"os", SCHEMA_STRINGS, false, 0, 0, NULL},
	{"version_min", SCHEMA_STRING, false, 0, 0, NULL},
	{"version_below", SCHEMA_STRING, false, 0, 0, NULL},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key segment_schema[] = {
	{"name", SCHEMA_STRING, true, 0, 0, NULL},
	{"match", SCHEMA_GROUP, true, 0, 0, match_schema},
	{"template", SCHEMA_STRING, false, 0, 0, NULL},
	{"send", SCHEMA_STRING, false, 0, 0, NULL},
	{"target_version", SCHEMA_STRING, false, 0, 0, NULL},
	{"discontinued", SCHEMA_BOOL, false, 0, 0, NULL},
	{"upgrade_url", SCHEMA_STRING, false, 0, 0, NULL},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key campaign_schema[] = {
	{"name", SCHEMA_STRING, true, 0, 0, NULL},
	{"title", SCHEMA_STRING, true, 0, 0, NULL},
	{"from", SCHEMA_STRING, true, 0, 0, NULL},
	{"reply_to", SCHEMA_STRING, false, 0, 0, NULL},
	{"timezone", SCHEMA_STRING, true, 0, 0, NULL},
	{"announce", SCHEMA_STRING, true, 0, 0, NULL},
	{"reminder_start", SCHEMA_STRING, true, 0, 0, NULL},
	{"cutoff", SCHEMA_STRING, true, 0, 0, NULL},
	{"login_reminders", SCHEMA_STRING, false, 0, 0, NULL},
	{"reminder_emails", SCHEMA_STRING, false, 0, 0, NULL},
	{"final_notice", SCHEMA_STRING, false, 0, 0, NULL},
	{"upgrade_url", SCHEMA_STRING, true, 0, 0, NULL},
	{"rate", SCHEMA_NUMBER, false, 0, 1000000, NULL},
	{"list_unsubscribe", SCHEMA_BOOL, false, 0, 0, NULL},
	{"unsubscribe_url", SCHEMA_STRING, false, 0, 0, NULL},
	{"templates", SCHEMA_STRING, false, 0, 0, NULL},
	{"client_names", SCHEMA_STRING_MAP, false, 0, 0, NULL},
	{"attributes", SCHEMA_STRINGS, false, 0, 0, NULL},
	{"segments", SCHEMA_GROUP_LIST, true, 0, 0, segment_schema},
	{NULL, 0, false, 0, 0, NULL},
};

/* Parsing state shared by the checks below: where problems go and what is being read. */
struct loader {
	struct diag *d;
	const char *file;     /* origin for messages */
	config_setting_t *root;
	struct campaign *c;
	bool check_templates;
};

static const char *get_str(const config_setting_t *g, const char *name)
{
	const char *v = NULL;

	if (g == NULL || !config_setting_lookup_string(g, name, &v))
		return NULL;
	return v;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static const config_setting_t *member(const config_setting_t *g, const char *name)
{
	return g ? config_setting_get_member(g, name) : NULL;
}

static bool name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '-')
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

/* Parses "Display Name <addr>" or a bare address into c->from_name / c->from_addr. */
static void parse_from(struct loader *l, const char *from)
{
	const config_setting_t *s = member(l->root, "from");
	const char *lt = strrchr(from, '<');
	char *addr, *norm = NULL;
	struct err e = {0};
	size_t n;

	if (str_has_control(from)) {
		diag_at(l->d, s, l->file, "from contains a control character");
		return;
	}
	if (lt != NULL && str_ends_with(from, ">")) {
		n = (size_t)(lt - from);
		while (n > 0 && from[n - 1] == ' ')
			n--;
		if (n >= 2 && from[0] == '"' && from[n - 1] == '"')
			l->c->from_name = xstrndup(from + 1, n - 2);
		else
			l->c->from_name = xstrndup(from, n);
		addr = xstrndup(lt + 1, strlen(lt + 1) - 1);
	} else {
		l->c->from_name = xstrdup("");
		addr = xstrdup(from);
	}
	if (address_normalize(addr, &norm, &e) != 0)
		diag_at(l->d, s, l->file, "from: '%s' is not a usable address: %s", addr, e.msg);
	l->c->from_addr = norm;
	free(addr);
}

static void parse_date(struct loader *l, const char *key, char **text, int64_t *at)
{
	const char *v = get_str(l->root, key);
	struct err e = {0};

	if (v == NULL)
		return;
	*text = xstrdup(v);
	if (l->c->timezone == NULL)
		return;
	if (schedule_parse_local(v, l->c->timezone, at, &e) != 0)
		diag_at(l->d, member(l->root, key), l->file, "%s: %s", key, e.msg);
}

static void check_rrule(struct loader *l, const char *key, char **out, const char *def)
{
	const char *v = get_str(l->root, key);
	struct err e = {0};

	if (v == NULL && def == NULL)
		return;
	*out = xstrdup(v ? v : def);
	if (schedule_rrule_check(*out, &e) != 0)
		diag_at(l->d, member(l->root, key), l->file, "%s: %s", key, e.msg);
}

static void load_times(struct loader *l)
{
	struct campaign *c = l->c;
	const char *tz = get_str(l->root, "timezone");
	struct err e = {0};

	if (tz != NULL && schedule_tz_check(tz, &e) != 0)
		diag_at(l->d, member(l->root, "timezone"), l->file, "timezone: %s", e.msg);
	else if (tz != NULL)
		c->timezone = xstrdup(tz);
	parse_date(l, "announce", &c->announce_text, &c->announce_at);
	parse_date(l, "reminder_start", &c->reminder_start_text, &c->reminder_start_at);
	parse_date(l, "cutoff", &c->cutoff_text, &c->cutoff_at);
	if (c->announce_at && c->reminder_start_at && c->announce_at > c->reminder_start_at)
		diag_at(l->d, member(l->root, "reminder_start"), l->file,
			"reminder_start (%s) is before announce (%s); the order must be announce <="
			" reminder_start < cutoff",
			c->reminder_start_text, c->announce_text);
	if (c->reminder_start_at && c->cutoff_at && c->reminder_start_at >= c->cutoff_at)
		diag_at(l->d, member(l->root, "cutoff"), l->file,
			"cutoff (%s) is not after reminder_start (%s); the order must be announce <="
			" reminder_start < cutoff",
			c->cutoff_text, c->reminder_start_text);
	check_rrule(l, "login_reminders", &c->login_cadence, "FREQ=DAILY");
	check_rrule(l, "reminder_emails", &c->reminder_emails, NULL);
}

static void load_final_notice(struct loader *l)
{
	struct campaign *c = l->c;
	const char *v = get_str(l->root, "final_notice");
	struct err e = {0};

	if (v == NULL)
		return;
	c->final_notice = xstrdup(v);
	if (c->timezone == NULL || c->cutoff_at == 0)
		return;
	if (schedule_final_notice(c->cutoff_at, v, c->timezone, &c->final_notice_at, &e) != 0) {
		diag_at(l->d, member(l->root, "final_notice"), l->file, "final_notice: %s", e.msg);
		return;
	}
	if (c->announce_at && c->final_notice_at <= c->announce_at)
		diag_at(l->d, member(l->root, "final_notice"), l->file,
			"final_notice %s before the cutoff falls before the announcement", v);
}

static bool url_ok(const char *u)
{
	return (str_starts_with(u, "https://") || str_starts_with(u, "http://")) &&
	       strlen(u) > 8 && !str_has_control(u) && strpbrk(u, " <>\"") == NULL;
}

static void check_url(struct loader *l, const config_setting_t *g, const char *key, char **out)
{
	const char *v = get_str(g, key);

	if (v == NULL)
		return;
	*out = xstrdup(v);
	if (!url_ok(v))
		diag_at(l->d, member(g, key), l->file,
			"%s must be an http(s) URL without spaces or quotes (it is \"%s\")", key, v);
}

/* Reads a string or a list of strings into ml; an empty list is a problem. */
static void load_match_list(struct loader *l, const config_setting_t *m, const char *key,
			    struct match_list *ml, const char *seg)
{
	const config_setting_t *s = member(m, key);
	int n;

	if (s == NULL)
		return;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		ml->values = xcalloc(1, sizeof *ml->values);
		ml->values[0] = xstrdup(config_setting_get_string(s));
		ml->n = 1;
		return;
	}
	n = config_setting_length(s);
	if (n == 0) {
		diag_at(l->d, s, l->file, "segment %s: match.%s is an empty list, so the segment"
			" matches nothing; remove the key to match any %s", seg, key, key);
		return;
	}
	ml->values = xcalloc((size_t)n, sizeof *ml->values);
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (v != NULL)
			ml->values[ml->n++] = xstrdup(v);
	}
}

static void load_version_range(struct loader *l, const config_setting_t *m, struct segment *g)
{
	struct err e = {0};

	g->version_min = dup_or_null(get_str(m, "version_min"));
	g->version_below = dup_or_null(get_str(m, "version_below"));
	if (g->version_min && version_check(g->version_min, &e) != 0)
		diag_at(l->d, member(m, "version_min"), l->file, "segment %s: version_min: %s",
			g->name, e.msg);
	err_clear(&e);
	if (g->version_below && version_check(g->version_below, &e) != 0)
		diag_at(l->d, member(m, "version_below"), l->file, "segment %s: version_below: %s",
			g->name, e.msg);
	if (g->version_min && g->version_below && version_valid(g->version_min) &&
	    version_valid(g->version_below) && version_compare(g->version_min, g->version_below) >= 0)
		diag_at(l->d, m, l->file,
			"segment %s: version_min %s is not below version_below %s, so the segment"
			" matches nothing",
			g->name, g->version_min, g->version_below);
}

static void load_target(struct loader *l, const config_setting_t *s, struct segment *g)
{
	const char *target = get_str(s, "target_version");
	int disc = 0;
	struct err e = {0};

	config_setting_lookup_bool(s, "discontinued", &disc);
	if ((target == NULL) == (disc == 0)) {
		diag_at(l->d, s, l->file,
			"segment %s: give either target_version (the version that completes the"
			" upgrade) or discontinued = true (no upgrade path), exactly one",
			g->name);
		return;
	}
	if (target == NULL)
		return;
	g->target_version = xstrdup(target);
	if (version_check(target, &e) != 0)
		diag_at(l->d, member(s, "target_version"), l->file, "segment %s: target_version: %s",
			g->name, e.msg);
	else if (g->version_below && version_valid(g->version_below) &&
		 version_compare(target, g->version_below) < 0)
		diag_at(l->d, member(s, "target_version"), l->file,
			"segment %s: target_version %s is below version_below %s: upgrading to it"
			" would leave the user affected",
			g->name, target, g->version_below);
}

static void load_send(struct loader *l, const config_setting_t *s, struct segment *g)
{
	struct campaign *c = l->c;
	struct err e = {0};

	g->send_at = c->announce_at;
	g->send_text = dup_or_null(get_str(s, "send"));
	if (g->send_text == NULL || c->timezone == NULL)
		return;
	if (schedule_parse_local(g->send_text, c->timezone, &g->send_at, &e) != 0) {
		diag_at(l->d, member(s, "send"), l->file, "segment %s: send: %s", g->name, e.msg);
		return;
	}
	if ((c->announce_at && g->send_at < c->announce_at) ||
	    (c->cutoff_at && g->send_at >= c->cutoff_at))
		diag_at(l->d, member(s, "send"), l->file,
			"segment %s: send (%s) must be between announce and the cutoff", g->name,
			g->send_text);
}

/* Checks that the segment's template folder has every required part. */
static void check_template_files(struct loader *l, const config_setting_t *s,
				 const struct segment *g)
{
	char *path;

	if (!l->check_templates || l->c->templates_dir == NULL)
		return;
	for (int i = 0; campaign_template_parts[i] != NULL; i++) {
		if (!campaign_template_required[i])
			continue;
		path = xasprintf("%s/%s/%s.mustache", l->c->templates_dir, g->template_name,
				 campaign_template_parts[i]);
		if (access(path, R_OK) != 0)
			diag_at(l->d, member(s, "template") ? member(s, "template") : s, l->file,
				"segment %s: template file %s cannot be read: %s", g->name, path,
				strerror(errno));
		free(path);
	}
}

static void load_segment(struct loader *l, const config_setting_t *s, struct segment *g)
{
	const config_setting_t *m = member(s, "match");
	const char *name = get_str(s, "name");

	g->line = (int)config_setting_source_line(s);
	g->name = xstrdup(name ? name : "?");
	if (name != NULL && !name_valid(name))
		diag_at(l->d, member(s, "name"), l->file,
			"segment name '%s' must be lower-case letters, digits and '-'", name);
	load_match_list(l, m, "client", &g->clients, g->name);
	load_match_list(l, m, "platform", &g->platforms, g->name);
	load_match_list(l, m, "os", &g->os, g->name);
	load_version_range(l, m, g);
	load_target(l, s, g);
	load_send(l, s, g);
	check_url(l, s, "upgrade_url", &g->upgrade_url);
	g->template_name = xstrdup(get_str(s, "template") ? get_str(s, "template") : g->name);
	if (strchr(g->template_name, '/') || g->template_name[0] == '.')
		diag_at(l->d, member(s, "template"), l->file,
			"segment %s: template '%s' must be a folder name, not a path", g->name,
			g->template_name);
	else
		check_template_files(l, s, g);
}

/* True if every value of inner is accepted by outer (an empty list accepts all). */
static bool list_covers(const struct match_list *outer, const struct match_list *inner)
{
	if (outer->n == 0)
		return true;
	if (inner->n == 0)
		return false;
	for (size_t i = 0; i < inner->n; i++) {
		bool found = false;
		for (size_t j = 0; j < outer->n && !found; j++)
			found = strcasecmp(outer->values[j], inner->values[i]) == 0 ||
				strcmp(outer->values[j], "*") == 0;
		if (!found)
			return false;
	}
	return true;
}

/* True if segment a accepts every recipient b would, so b (listed later) never matches. */
static bool segment_covers(const struct segment *a, const struct segment *b)
{
	if (!list_covers(&a->clients, &b->clients) || !list_covers(&a->platforms, &b->platforms) ||
	    !list_covers(&a->os, &b->os))
		return false;
	if (a->version_min && (!b->version_min || version_compare(b->version_min, a->version_min) < 0))
		return false;
	if (a->version_below &&
	    (!b->version_below || version_compare(b->version_below, a->version_below) > 0))
		return false;
	return true;
}

static void load_segments(struct loader *l)
{
	const config_setting_t *list = member(l->root, "segments");
	int n = list ? config_setting_length(list) : 0;
	struct campaign *c = l->c;

	if (list == NULL || !config_setting_is_aggregate(list))
		return;
	if (n == 0)
		diag_at(l->d, list, l->file, "segments is empty: a campaign needs at least one");
	c->segments = xcalloc((size_t)n, sizeof *c->segments);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
		if (!config_setting_is_group(s))
			continue;
		load_segment(l, s, &c->segments[c->n_segments]);
		for (size_t j = 0; j < c->n_segments; j++) {
			const struct segment *a = &c->segments[j], *b = &c->segments[c->n_segments];
			if (strcmp(a->name, b->name) == 0)
				diag_at(l->d, s, l->file, "segment name '%s' is used twice (first at"
					" line %d)", b->name, a->line);
			else if (segment_covers(a, b))
				diag_at(l->d, s, l->file,
					"segment %s matches nothing: segment %s (line %d) comes first"
					" and takes every recipient it would match",
					b->name, a->name, a->line);
		}
		c->n_segments++;
	}
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* The campaign's templates folder, made absolute so the database copy works from anywhere. */
static void resolve_templates(struct loader *l, const char *path, const char *templates_root)
{
	const char *t = get_str(l->root, "templates");
	char *dir = dir_of(path), *want, *real;

	if (t != NULL)
		want = t[0] == '/' ? xstrdup(t) : xasprintf("%s/%s", dir, t);
	else if (templates_root != NULL)
		want = xasprintf("%s/%s", templates_root, l->c->name);
	else
		want = xasprintf("%s/../templates/%s", dir, l->c->name);
	real = realpath(want, NULL);
	if (real == NULL)
		diag_at(l->d, member(l->root, "templates") ? member(l->root, "templates") : l->root,
			l->file, "templates folder %s: %s", want, strerror(errno));
	l->c->templates_dir = real;
	free(want);
	free(dir);
}

static void load_client_names(struct loader *l)
{
	const config_setting_t *g = member(l->root, "client_names");
	int n = g && config_setting_is_group(g) ? config_setting_length(g) : 0;
	struct campaign *c = l->c;

	if (n <= 0)
		return;
	c->client_names = xcalloc((size_t)n, sizeof *c->client_names);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *v = config_setting_get_string(s);
		if (v == NULL)
			continue;
		if (str_has_control(v))
			diag_at(l->d, s, l->file, "client_names.%s contains a control character",
				config_setting_name(s));
		c->client_names[c->n_client_names].key = xstrdup(config_setting_name(s));
		c->client_names[c->n_client_names].value = xstrdup(v);
		c->n_client_names++;
	}
}

static void load_attributes(struct loader *l)
{
	struct match_list *a = &l->c->attributes;

	load_match_list(l, l->root, "attributes", a, "(campaign)");
	for (size_t i = 0; i < a->n; i++) {
		const char *v = a->values[i];
		bool ok = *v != '\0';
		for (const char *p = v; *p && ok; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
		if (!ok)
			diag_at(l->d, member(l->root, "attributes"), l->file,
				"attributes: '%s' must be letters, digits, '_' or '-' (it is a CSV"
				" column name the templates use as attributes.NAME)", v);
	}
}

static void load_top(struct loader *l)
{
	struct campaign *c = l->c;
	const char *v;

	diag_check_group(l->d, l->root, campaign_schema, NULL, l->file);
	c->name = xstrdup(get_str(l->root, "name") ? get_str(l->root, "name") : "");
	if (*c->name && !name_valid(c->name))
		diag_at(l->d, member(l->root, "name"), l->file,
			"name '%s' must be lower-case letters, digits and '-' (at most 64)", c->name);
	c->title = xstrdup(get_str(l->root, "title") ? get_str(l->root, "title") : "");
	if ((v = get_str(l->root, "from")) != NULL) {
		c->from = xstrdup(v);
		parse_from(l, v);
	}
	c->reply_to = dup_or_null(get_str(l->root, "reply_to"));
	if (c->reply_to && str_has_control(c->reply_to))
		diag_at(l->d, member(l->root, "reply_to"), l->file, "reply_to contains a control"
			" character");
	check_url(l, l->root, "upgrade_url", &c->upgrade_url);
	check_url(l, l->root, "unsubscribe_url", &c->unsubscribe_url);
	config_setting_lookup_float(l->root, "rate", &c->rate);
	if (c->rate == 0) {
		int r = 0;
		if (config_setting_lookup_int(l->root, "rate", &r))
			c->rate = r;
	}
	{
		int lu = 0;
		config_setting_lookup_bool(l->root, "list_unsubscribe", &lu);
		c->list_unsubscribe = lu != 0;
	}
}

static int campaign_parse(struct campaign **out, config_t *cf, const char *origin,
			  const char *templates_dir, const char *templates_root, struct diag *d,
			  struct err *e)
{
	struct campaign *c = xcalloc(1, sizeof *c);
	struct loader l = {d, origin, config_root_setting(cf), c, templates_dir == NULL};

	load_top(&l);
	if (templates_dir != NULL)
		c->templates_dir = xstrdup(templates_dir);
	else
		resolve_templates(&l, origin, templates_root);
	load_client_names(&l);
	load_attributes(&l);
	load_times(&l);
	load_final_notice(&l);
	load_segments(&l);
	if (d->count > 0) {
		campaign_free(c);
		return diag_to_err(d, ERR_CONFIG, e);
	}
	*out = c;
	return 0;
}

static char *slurp(const char *path, struct err *e)
{
	struct buf b;
	char chunk[8192];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		err_sys(e, errno == ENOENT ? ERR_NOTFOUND : ERR_CONFIG, errno, "%s", path);
		return NULL;
	}
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	return buf_steal(&b);
}

int campaign_load_file(struct campaign **out, const char *path, const char *templates_root,
		       struct err *e)
{
	struct diag d;
	config_t cf;
	char *text = NULL;
	int rc;

	*out = NULL;
	diag_init(&d);
	config_init(&cf);
	if ((text = slurp(path, e)) == NULL) {
		rc = e->code;
		goto out;
	}
	if (diag_read_config(&d, &cf, path) != 0) {
		rc = diag_to_err(&d, ERR_CONFIG, e);
		goto out;
	}
	if ((rc = campaign_parse(out, &cf, path, NULL, templates_root, &d, e)) != 0)
		goto out;
	(*out)->source_path = realpath(path, NULL);
	if ((*out)->source_path == NULL)
		(*out)->source_path = xstrdup(path);
	(*out)->source_text = text;
	text = NULL;
out:
	free(text);
	config_destroy(&cf);
	diag_free(&d);
	return rc;
}

int campaign_load_text(struct campaign **out, const char *text, const char *origin,
		       const char *templates_dir, struct err *e)
{
	struct diag d;
	config_t cf;
	int rc;

	*out = NULL;
	diag_init(&d);
	config_init(&cf);
	if (config_read_string(&cf, text) != CONFIG_TRUE) {
		diag_add(&d, origin, config_error_line(&cf), "syntax error: %s",
			 config_error_text(&cf));
		rc = diag_to_err(&d, ERR_CONFIG, e);
		goto out;
	}
	if ((rc = campaign_parse(out, &cf, origin, templates_dir, NULL, &d, e)) != 0)
		goto out;
	(*out)->source_path = xstrdup(origin);
	(*out)->source_text = xstrdup(text);
out:
	config_destroy(&cf);
	diag_free(&d);
	return rc;
}

static void match_list_free(struct match_list *ml)
{
	for (size_t i = 0; i < ml->n; i++)
		free(ml->values[i]);
	free(ml->values);
}

void campaign_free(struct campaign *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_segments; i++) {
		struct segment *g = &c->segments[i];
		free(g->name), free(g->version_min), free(g->version_below);
		free(g->template_name), free(g->send_text), free(g->target_version);
		free(g->upgrade_url);
		match_list_free(&g->clients), match_list_free(&g->platforms);
		match_list_free(&g->os);
	}
	free(c->segments);
	for (size_t i = 0; i < c->n_client_names; i++)
		free(c->client_names[i].key), free(c->client_names[i].value);
	free(c->client_names);
	match_list_free(&c->attributes);
	free(c->name), free(c->title), free(c->from), free(c->from_name), free(c->from_addr);
	free(c->reply_to), free(c->timezone), free(c->announce_text);
	free(c->reminder_start_text), free(c->cutoff_text), free(c->login_cadence);
	free(c->reminder_emails), free(c->final_notice), free(c->upgrade_url);
	free(c->unsubscribe_url), free(c->templates_dir), free(c->source_path);
	free(c->source_text);
	free(c);
}

static bool list_accepts(const struct match_list *ml, const char *v, bool patterns)
{
	if (ml->n == 0)
		return true;
	if (v == NULL || *v == '\0')
		return false;
	for (size_t i = 0; i < ml->n; i++) {
		if (patterns ? fnmatch(ml->values[i], v, FNM_CASEFOLD) == 0
			     : strcasecmp(ml->values[i], v) == 0)
			return true;
	}
	return false;
}

static bool segment_accepts(const struct segment *g, const struct recipient_fields *r)
{
	bool ranged = g->version_min || g->version_below;

	if (!list_accepts(&g->clients, r->client, false) ||
	    !list_accepts(&g->platforms, r->platform, false) || !list_accepts(&g->os, r->os, true))
		return false;
	if (!ranged)
		return true;
	if (r->version == NULL || !version_valid(r->version))
		return false;
	if (g->version_min && version_compare(r->version, g->version_min) < 0)
		return false;
	if (g->version_below && version_compare(r->version, g->version_below) >= 0)
		return false;
	return true;
}

const struct segment *campaign_match(const struct campaign *c, const struct recipient_fields *r)
{
	for (size_t i = 0; i < c->n_segments; i++)
		if (segment_accepts(&c->segments[i], r))
			return &c->segments[i];
	return NULL;
}

const struct segment *campaign_segment(const struct campaign *c, const char *name)
{
	for (size_t i = 0; i < c->n_segments; i++)
		if (strcmp(c->segments[i].name, name) == 0)
			return &c->segments[i];
	return NULL;
}

const char *campaign_client_name(const struct campaign *c, const char *client)
{
	if (client == NULL)
		return "";
	for (size_t i = 0; i < c->n_client_names; i++)
		if (strcasecmp(c->client_names[i].key, client) == 0)
			return c->client_names[i].value;
	return client;
}

bool segment_completed_by(const struct segment *s, const char *version)
{
	if (s->target_version == NULL || version == NULL || !version_valid(version))
		return false;
	return version_compare(version, s->target_version) >= 0;
}

static bool str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool list_same(const struct match_list *a, const struct match_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->values[i], b->values[i]) != 0)
			return false;
	return true;
}

static void diff_segment(struct buf *why, const struct segment *a, const struct segment *b)
{
	if (!list_same(&a->clients, &b->clients) || !list_same(&a->platforms, &b->platforms) ||
	    !list_same(&a->os, &b->os) || !str_same(a->version_min, b->version_min) ||
	    !str_same(a->version_below, b->version_below))
		buf_printf(why, "\n  segment %s: its match changed (recipients would move between"
			   " segments)", a->name);
	if (!str_same(a->target_version, b->target_version))
		buf_printf(why, "\n  segment %s: target_version or discontinued changed", a->name);
	if (a->send_at != b->send_at)
		buf_printf(why, "\n  segment %s: send date changed", a->name);
}

static void diff_segments(struct buf *why, const struct campaign *o, const struct campaign *n)
{
	if (o->n_segments != n->n_segments) {
		buf_printf(why, "\n  the number of segments changed (%zu -> %zu)", o->n_segments,
			   n->n_segments);
		return;
	}
	for (size_t i = 0; i < o->n_segments; i++) {
		if (strcmp(o->segments[i].name, n->segments[i].name) != 0)
			buf_printf(why, "\n  segment %zu was %s and is now %s", i + 1,
				   o->segments[i].name, n->segments[i].name);
		else
			diff_segment(why, &o->segments[i], &n->segments[i]);
	}
}

int campaign_check_update(const struct campaign *o, const struct campaign *n, struct err *e)
{
	struct buf why;
	int rc = 0;

	buf_init(&why);
	if (!str_same(o->timezone, n->timezone))
		buf_printf(&why, "\n  timezone changed (%s -> %s)", o->timezone, n->timezone);
	if (o->announce_at != n->announce_at)
		buf_printf(&why, "\n  announce changed (%s -> %s)", o->announce_text, n->announce_text);
	if (o->reminder_start_at != n->reminder_start_at)
		buf_printf(&why, "\n  reminder_start changed (%s -> %s)", o->reminder_start_text,
			   n->reminder_start_text);
	if (n->cutoff_at < o->cutoff_at)
		buf_printf(&why, "\n  cutoff moved earlier (%s -> %s); only a later cutoff is safe",
			   o->cutoff_text, n->cutoff_text);
	if (!str_same(o->from_addr, n->from_addr))
		buf_printf(&why, "\n  the sender address changed (%s -> %s)", o->from_addr,
			   n->from_addr);
	if (!str_same(o->login_cadence, n->login_cadence))
		buf_printf(&why, "\n  login_reminders changed");
	if (!str_same(o->reminder_emails, n->reminder_emails))
		buf_printf(&why, "\n  reminder_emails changed");
	if (!str_same(o->final_notice, n->final_notice))
		buf_printf(&why, "\n  final_notice changed");
	diff_segments(&why, o, n);
	if (why.len > 0)
		rc = err_set(e, ERR_REFUSED,
			     "campaign %s has begun sending; refusing these unsafe changes:%s\n"
			     "Safe changes are: title, reply_to, a later cutoff, rate, templates,"
			     " upgrade URLs and unsubscribe settings.",
			     o->name, why.data);
	buf_free(&why);
	return rc;
}
