/* config.c — parses, validates and freezes cutoff.conf (libconfig). */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "diag.h"
#include "util.h"

static const struct schema_key relay_schema[] = {
	{"name", SCHEMA_STRING, false, 0, 0, NULL},
	{"url", SCHEMA_STRING, true, 0, 0, NULL},
	{"tls", SCHEMA_STRING, false, 0, 0, NULL},
	{"tls_verify", SCHEMA_BOOL, false, 0, 0, NULL},
	{"allow_insecure", SCHEMA_BOOL, false, 0, 0, NULL},
	{"user", SCHEMA_STRING, false, 0, 0, NULL},
	{"password", SCHEMA_STRING, false, 0, 0, NULL},
	{"password_file", SCHEMA_STRING, false, 0, 0, NULL},
	{"connections", SCHEMA_INT, false, 1, 64, NULL},
	{"timeout", SCHEMA_INT, false, 1, 3600, NULL},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key domain_rate_schema[] = {
	{"domain", SCHEMA_STRING, true, 0, 0, NULL},
	{"per_second", SCHEMA_NUMBER, true, 0.001, 100000, NULL},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key rate_schema[] = {
	{"messages_per_second", SCHEMA_NUMBER, false, 0, 1000000, NULL},
	{"per_domain", SCHEMA_GROUP_LIST, false, 0, 0, domain_rate_schema},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key bounces_schema[] = {
	{"return_path_domain", SCHEMA_STRING, false, 0, 0, NULL},
	{"secret_file", SCHEMA_STRING, false, 0, 0, NULL},
	{"maildir", SCHEMA_STRING, false, 0, 0, NULL},
	{"quarantine", SCHEMA_STRING, false, 0, 0, NULL},
	{"soft_threshold", SCHEMA_INT, false, 1, 100, NULL},
	{"unsubscribe", SCHEMA_STRING, false, 0, 0, NULL},
	{NULL, 0, false, 0, 0, NULL},
};

static const struct schema_key config_schema[] = {
	{"database", SCHEMA_STRING, false, 0, 0, NULL},
	{"campaigns_dir", SCHEMA_STRING, false, 0, 0, NULL},
	{"templates_dir", SCHEMA_STRING, false, 0, 0, NULL},
	{"relays", SCHEMA_GROUP_LIST, false, 0, 0, relay_schema},
	{"rate", SCHEMA_GROUP, false, 0, 0, rate_schema},
	{"batch_size", SCHEMA_INT, false, 1, 100000, NULL},
	{"lease_seconds", SCHEMA_INT, false, 10, 86400, NULL},
	{"bounces", SCHEMA_GROUP, false, 0, 0, bounces_schema},
	{NULL, 0, false, 0, 0, NULL},
};

bool config_host_is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
	       strcmp(host, "[::1]") == 0 || str_starts_with(host, "127.");
}

int config_check_secret_file(const char *path, const char *what, struct err *e)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return err_sys(e, ERR_CONFIG, errno, "%s %s cannot be read", what, path);
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_CONFIG, "%s %s is not a regular file", what, path);
	if (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))
		return err_set(e, ERR_NOPERM,
			       "%s %s holds a secret but group or others may read it (mode %04o);"
			       " run: chmod 600 %s",
			       what, path, (unsigned)(st.st_mode & 07777), path);
	return 0;
}

int config_read_secret(const char *path, const char *what, unsigned char **out, size_t *len,
		       struct err *e)
{
	struct buf b;
	char chunk[4096];
	FILE *f = NULL;
	size_t n;
	int rc;

	buf_init(&b);
	if ((rc = config_check_secret_file(path, what, e)) != 0)
		goto out;
	if ((f = fopen(path, "r")) == NULL) {
		rc = err_sys(e, ERR_CONFIG, errno, "%s %s cannot be opened", what, path);
		goto out;
	}
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
		b.data[--b.len] = '\0';
	if (b.len == 0) {
		rc = err_set(e, ERR_CONFIG, "%s %s is empty", what, path);
		goto out;
	}
	*len = b.len;
	*out = (unsigned char *)buf_steal(&b);
out:
	if (f != NULL)
		fclose(f);
	if (b.data != NULL)
		explicit_bzero(b.data, b.cap);
	buf_free(&b);
	return rc;
}

/* A path from the file, made relative to the config file's folder. */
static char *resolve_path(const char *dir, const char *p)
{
	if (p[0] == '/' || dir == NULL)
		return xstrdup(p);
	return xasprintf("%s/%s", dir, p);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return NULL;
	return xstrndup(path, (size_t)(slash - path));
}

static const char *get_str(const config_setting_t *g, const char *name)
{
	const char *v = NULL;

	if (g == NULL || !config_setting_lookup_string(g, name, &v))
		return NULL;
	return v;
}

static int get_int(const config_setting_t *g, const char *name, int def)
{
	int v;

	if (g == NULL || !config_setting_lookup_int(g, name, &v))
		return def;
	return v;
}

static double get_number(const config_setting_t *g, const char *name, double def)
{
	double f;
	int i;

	if (g == NULL)
		return def;
	if (config_setting_lookup_float(g, name, &f))
		return f;
	if (config_setting_lookup_int(g, name, &i))
		return i;
	return def;
}

static bool get_bool(const config_setting_t *g, const char *name, bool def)
{
	int v;

	if (g == NULL || !config_setting_lookup_bool(g, name, &v))
		return def;
	return v != 0;
}

/* Splits smtp[s]://host[:port][/...] into scheme and host; false if malformed. */
static bool relay_url_parse(const char *url, bool *smtps, char **host)
{
	const char *h, *end;

	if (str_starts_with(url, "smtp://"))
		*smtps = false, h = url + 7;
	else if (str_starts_with(url, "smtps://"))
		*smtps = true, h = url + 8;
	else
		return false;
	if (*h == '[') {
		end = strchr(h, ']');
		if (end == NULL)
			return false;
		end++;
	} else {
		end = h + strcspn(h, ":/");
	}
	if (end == h)
		return false;
	*host = xstrndup(h, (size_t)(end - h));
	return true;
}

static void relay_tls_mode(struct diag *d, const config_setting_t *s, const char *file,
			   struct relay *r, bool smtps)
{
	const char *tls = get_str(s, "tls");

	r->tls = smtps ? RELAY_TLS_SMTPS : RELAY_TLS_STARTTLS;
	if (tls == NULL)
		return;
	if (strcmp(tls, "starttls") == 0 && !smtps)
		r->tls = RELAY_TLS_STARTTLS;
	else if (strcmp(tls, "smtps") == 0 && smtps)
		r->tls = RELAY_TLS_SMTPS;
	else if (strcmp(tls, "none") == 0 && !smtps)
		r->tls = RELAY_TLS_NONE;
	else
		diag_at(d, config_setting_get_member(s, "tls"), file,
			"relay %s: tls must be \"starttls\" or \"none\" for smtp:// and \"smtps\""
			" for smtps:// (it is \"%s\")",
			r->name, tls);
}

/* Reads the relay's password from password_file or inline password. */
static void relay_password(struct diag *d, const config_setting_t *s, const char *file,
			   const char *dir, struct relay *r)
{
	const char *pf = get_str(s, "password_file"), *inline_pw = get_str(s, "password");
	struct err e = {0};
	unsigned char *secret = NULL;
	size_t len = 0;
	char *path;

	if (pf != NULL && inline_pw != NULL)
		diag_at(d, s, file, "relay %s: give password_file or password, not both", r->name);
	if (inline_pw != NULL)
		r->password = xstrdup(inline_pw);
	if (pf == NULL)
		goto check_user;
	path = resolve_path(dir, pf);
	if (config_read_secret(path, "password_file", &secret, &len, &e) != 0)
		diag_raise(d, e.code), diag_at(d, config_setting_get_member(s, "password_file"), file, "relay %s: %s",
			r->name, e.msg);
	else
		r->password = (char *)secret;
	free(path);
check_user:
	if (r->password != NULL && r->user == NULL)
		diag_at(d, s, file, "relay %s: a password needs a user", r->name);
}

static void relay_load(struct diag *d, const config_setting_t *s, const char *file,
		       const char *dir, struct relay *r, int index)
{
	const char *url = get_str(s, "url"), *name = get_str(s, "name");
	bool smtps = false;

	r->line = (int)config_setting_source_line(s);
	r->name = name ? xstrdup(name) : xasprintf("relay%d", index + 1);
	r->url = xstrdup(url ? url : "");
	r->user = get_str(s, "user") ? xstrdup(get_str(s, "user")) : NULL;
	r->connections = get_int(s, "connections", 4);
	r->timeout = get_int(s, "timeout", 60);
	if (url != NULL && !relay_url_parse(url, &smtps, &r->host)) {
		diag_at(d, config_setting_get_member(s, "url"), file,
			"relay %s: url must look like smtp://host:port or smtps://host:port (it is"
			" \"%s\")",
			r->name, url);
		return;
	}
	if (r->host == NULL)
		return;
	r->loopback = config_host_is_loopback(r->host);
	relay_tls_mode(d, s, file, r, smtps);
	r->verify = get_bool(s, "tls_verify", true);
	if (r->tls == RELAY_TLS_NONE && !r->loopback && !get_bool(s, "allow_insecure", false))
		diag_at(d, s, file,
			"relay %s: tls = \"none\" sends mail in clear text to %s; use starttls, or"
			" set allow_insecure = true if that is really intended",
			r->name, r->host);
	if (!r->verify && !r->loopback && !get_bool(s, "allow_insecure", false))
		diag_at(d, s, file,
			"relay %s: tls_verify = false needs allow_insecure = true for a relay that"
			" is not on loopback",
			r->name);
	relay_password(d, s, file, dir, r);
}

static void relays_load(struct diag *d, config_t *cf, const char *file, const char *dir,
			struct config *c)
{
	const config_setting_t *list = config_lookup(cf, "relays");
	int n = list ? config_setting_length(list) : 0;

	if (list == NULL || !config_setting_is_aggregate(list))
		return;
	c->relays = xcalloc((size_t)n, sizeof *c->relays);
	c->n_relays = (size_t)n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
		if (!config_setting_is_group(s))
			continue;
		relay_load(d, s, file, dir, &c->relays[i], i);
		for (int j = 0; j < i; j++)
			if (strcmp(c->relays[j].name, c->relays[i].name) == 0)
				diag_at(d, s, file, "relay name '%s' is used twice", c->relays[i].name);
	}
}

static void rates_load(struct diag *d, config_t *cf, const char *file, struct config *c)
{
	const config_setting_t *rate = config_lookup(cf, "rate");
	const config_setting_t *list = rate ? config_setting_get_member(rate, "per_domain") : NULL;
	int n = list ? config_setting_length(list) : 0;

	c->rate = get_number(rate, "messages_per_second", 0);
	if (list == NULL || n <= 0 || !config_setting_is_aggregate(list))
		return;
	c->domain_rates = xcalloc((size_t)n, sizeof *c->domain_rates);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
		const char *dom = get_str(s, "domain");

		if (dom == NULL || !config_setting_is_group(s))
			continue;
		if (*dom == '\0' || strchr(dom, '@') || strchr(dom, ' ')) {
			diag_at(d, s, file, "per_domain: '%s' is not a domain name", dom);
			continue;
		}
		c->domain_rates[c->n_domain_rates].domain = str_ascii_lower(xstrdup(dom));
		c->domain_rates[c->n_domain_rates].per_second = get_number(s, "per_second", 1);
		c->n_domain_rates++;
	}
}

static void bounces_load(struct diag *d, config_t *cf, const char *file, const char *dir,
			 struct config *c)
{
	const config_setting_t *b = config_lookup(cf, "bounces");
	const char *v;
	struct err e = {0};

	c->bounces.soft_threshold = get_int(b, "soft_threshold", 3);
	if ((v = get_str(b, "return_path_domain")) != NULL)
		c->bounces.return_path_domain = str_ascii_lower(xstrdup(v));
	if ((v = get_str(b, "maildir")) != NULL)
		c->bounces.maildir = resolve_path(dir, v);
	if ((v = get_str(b, "quarantine")) != NULL)
		c->bounces.quarantine = resolve_path(dir, v);
	if ((v = get_str(b, "unsubscribe")) != NULL) {
		if (strcmp(v, "global") == 0)
			c->bounces.unsubscribe_global = true;
		else if (strcmp(v, "campaign") != 0)
			diag_at(d, config_setting_get_member(b, "unsubscribe"), file,
				"bounces.unsubscribe must be \"campaign\" or \"global\"");
	}
	if ((v = get_str(b, "secret_file")) == NULL)
		return;
	c->bounces.secret_file = resolve_path(dir, v);
	if (config_read_secret(c->bounces.secret_file, "bounces.secret_file", &c->bounces.secret,
			       &c->bounces.secret_len, &e) != 0)
		diag_raise(d, e.code), diag_at(d, config_setting_get_member(b, "secret_file"), file, "%s", e.msg);
	else if (c->bounces.secret_len < 16)
		diag_at(d, config_setting_get_member(b, "secret_file"), file,
			"bounces.secret_file holds %zu bytes; use at least 16 random bytes"
			" (e.g. head -c 32 /dev/urandom | base64 > FILE)",
			c->bounces.secret_len);
}

static struct config *config_defaults(void)
{
	struct config *c = xcalloc(1, sizeof *c);

	c->database = xstrdup("cutoff.db");
	c->campaigns_dir = xstrdup("campaigns");
	c->batch_size = 500;
	c->lease_seconds = 300;
	c->bounces.soft_threshold = 3;
	return c;
}

/* An inline password makes the config file itself a secret. */
static void check_inline_secret(struct diag *d, config_t *cf, const char *path)
{
	const config_setting_t *list = config_lookup(cf, "relays");
	struct err e = {0};

	for (int i = 0; list && i < config_setting_length(list); i++)
		if (get_str(config_setting_get_elem(list, (unsigned)i), "password") != NULL) {
			if (config_check_secret_file(path, "the config file (it has an inline"
						     " password)", &e) == ERR_NOPERM)
				diag_raise(d, ERR_NOPERM), diag_add(d, path, 0, "%s; or move the password to a"
					 " password_file", e.msg);
			return;
		}
}

static void config_fill(struct diag *d, config_t *cf, const char *path, struct config *c)
{
	char *dir = dir_of(path);
	const char *v;

	diag_check_group(d, config_root_setting(cf), config_schema, NULL, path);
	check_inline_secret(d, cf, path);
	if ((v = get_str(config_root_setting(cf), "database")) != NULL)
		free(c->database), c->database = resolve_path(dir, v);
	if ((v = get_str(config_root_setting(cf), "campaigns_dir")) != NULL)
		free(c->campaigns_dir), c->campaigns_dir = resolve_path(dir, v);
	if ((v = get_str(config_root_setting(cf), "templates_dir")) != NULL)
		free(c->templates_dir), c->templates_dir = resolve_path(dir, v);
	c->batch_size = get_int(config_root_setting(cf), "batch_size", c->batch_size);
	c->lease_seconds = get_int(config_root_setting(cf), "lease_seconds", c->lease_seconds);
	relays_load(d, cf, path, dir, c);
	rates_load(d, cf, path, c);
	bounces_load(d, cf, path, dir, c);
	free(dir);
}

int config_load(struct config **out, const char *path, struct err *e)
{
	struct config *c = config_defaults();
	struct diag d;
	config_t cf;
	int rc = 0;

	*out = NULL;
	diag_init(&d);
	config_init(&cf);
	if (path != NULL) {
		c->path = xstrdup(path);
		if (diag_read_config(&d, &cf, path) == 0)
			config_fill(&d, &cf, path, c);
	}
	if (d.count > 0) {
		rc = diag_to_err(&d, ERR_CONFIG, e);
		config_free(c);
		goto out;
	}
	*out = c;
out:
	config_destroy(&cf);
	diag_free(&d);
	return rc;
}

static void wipe_free(char *s, size_t n)
{
	if (s == NULL)
		return;
	explicit_bzero(s, n);
	free(s);
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_relays; i++) {
		struct relay *r = &c->relays[i];
		free(r->name), free(r->url), free(r->host), free(r->user);
		wipe_free(r->password, r->password ? strlen(r->password) : 0);
	}
	free(c->relays);
	for (size_t i = 0; i < c->n_domain_rates; i++)
		free(c->domain_rates[i].domain);
	free(c->domain_rates);
	free(c->path), free(c->database), free(c->campaigns_dir), free(c->templates_dir);
	free(c->bounces.return_path_domain), free(c->bounces.secret_file);
	free(c->bounces.maildir), free(c->bounces.quarantine);
	wipe_free((char *)c->bounces.secret, c->bounces.secret_len);
	free(c);
}
