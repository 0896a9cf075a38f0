/* diag.c — one-pass problem collection and schema checks for libconfig files. */
#include "diag.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d)
{
	buf_init(&d->text);
	d->entries = NULL;
	d->count = 0;
	d->code = 0;
}

void diag_raise(struct diag *d, int code)
{
	if (d->code == 0)
		d->code = code;
}

void diag_free(struct diag *d)
{
	for (int i = 0; i < d->count; i++)
		free(d->entries[i].file), free(d->entries[i].msg);
	free(d->entries);
	d->entries = NULL;
	buf_free(&d->text);
	d->count = 0;
}

static void diag_vadd(struct diag *d, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof msg, fmt, ap);
	d->entries = xrealloc(d->entries, (size_t)(d->count + 1) * sizeof *d->entries);
	d->entries[d->count].file = xstrdup(file ? file : "-");
	d->entries[d->count].line = line;
	d->entries[d->count].seq = d->count;
	d->entries[d->count].msg = xstrdup(msg);
	d->count++;
}

void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(d, file, line, fmt, ap);
	va_end(ap);
}

void diag_at(struct diag *d, const config_setting_t *s, const char *fallback_file,
	     const char *fmt, ...)
{
	const char *file = s ? config_setting_source_file(s) : NULL;
	int line = s ? (int)config_setting_source_line(s) : 0;
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(d, file ? file : fallback_file, line, fmt, ap);
	va_end(ap);
}

/* Orders by file, then line, then the order the problems were found in. */
static int entry_cmp(const void *a, const void *b)
{
	const struct diag_entry *x = a, *y = b;
	int r = strcmp(x->file, y->file);

	if (r != 0)
		return r;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq - y->seq;
}

int diag_to_err(struct diag *d, int code, struct err *e)
{
	struct diag_entry *sorted;

	if (d->count == 0)
		return 0;
	sorted = xcalloc((size_t)d->count, sizeof *sorted);
	memcpy(sorted, d->entries, (size_t)d->count * sizeof *sorted);
	qsort(sorted, (size_t)d->count, sizeof *sorted, entry_cmp);
	buf_reset(&d->text);
	for (int i = 0; i < d->count; i++) {
		if (sorted[i].line > 0)
			buf_printf(&d->text, "%s:%d: %s\n", sorted[i].file, sorted[i].line,
				   sorted[i].msg);
		else
			buf_printf(&d->text, "%s: %s\n", sorted[i].file, sorted[i].msg);
	}
	free(sorted);
	/* Drop the final newline: the caller prints the message as one block. */
	if (d->text.len > 0 && d->text.data[d->text.len - 1] == '\n')
		d->text.data[--d->text.len] = '\0';
	return err_set(e, d->code ? d->code : code, "%s", d->text.data);
}

static const char *type_name(enum schema_type t)
{
	switch (t) {
	case SCHEMA_STRING: return "a string";
	case SCHEMA_INT: return "an integer";
	case SCHEMA_NUMBER: return "a number";
	case SCHEMA_BOOL: return "true or false";
	case SCHEMA_GROUP: return "a group { ... }";
	case SCHEMA_GROUP_LIST: return "a list of groups ( { ... }, ... )";
	case SCHEMA_STRINGS: return "a string or a list of strings";
	case SCHEMA_STRING_MAP: return "a group of strings { key = \"value\"; ... }";
	}
	return "?";
}

static bool is_aggregate_of(const config_setting_t *s, int elem_type)
{
	int n;

	if (!config_setting_is_aggregate(s) || config_setting_is_group(s))
		return false;
	n = config_setting_length(s);
	for (int i = 0; i < n; i++)
		if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != elem_type)
			return false;
	return true;
}

static bool group_of_strings(const config_setting_t *s)
{
	for (int i = 0; i < config_setting_length(s); i++)
		if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING)
			return false;
	return true;
}

static bool type_matches(const config_setting_t *s, enum schema_type t)
{
	int st = config_setting_type(s);

	switch (t) {
	case SCHEMA_STRING: return st == CONFIG_TYPE_STRING;
	case SCHEMA_INT: return st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64;
	case SCHEMA_NUMBER:
		return st == CONFIG_TYPE_INT || st == CONFIG_TYPE_INT64 || st == CONFIG_TYPE_FLOAT;
	case SCHEMA_BOOL: return st == CONFIG_TYPE_BOOL;
	case SCHEMA_GROUP: return st == CONFIG_TYPE_GROUP;
	case SCHEMA_GROUP_LIST: return is_aggregate_of(s, CONFIG_TYPE_GROUP);
	case SCHEMA_STRINGS: return st == CONFIG_TYPE_STRING || is_aggregate_of(s, CONFIG_TYPE_STRING);
	case SCHEMA_STRING_MAP: return st == CONFIG_TYPE_GROUP && group_of_strings(s);
	}
	return false;
}

static void check_range(struct diag *d, const config_setting_t *s, const struct schema_key *k,
			const char *where, const char *file)
{
	double v;

	if (k->min == 0 && k->max == 0)
		return;
	if (k->type != SCHEMA_INT && k->type != SCHEMA_NUMBER)
		return;
	v = config_setting_type(s) == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
							 : (double)config_setting_get_int64(s);
	if (v < k->min || v > k->max)
		diag_at(d, s, file, "%s must be between %g and %g (it is %g)", where, k->min,
			k->max, v);
}

static const struct schema_key *schema_find(const struct schema_key *schema, const char *name)
{
	for (const struct schema_key *k = schema; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static void check_children(struct diag *d, const config_setting_t *s, const struct schema_key *k,
			   const char *where, const char *file)
{
	char sub[256];

	if (k->type == SCHEMA_GROUP) {
		diag_check_group(d, s, k->children, where, file);
		return;
	}
	if (k->type != SCHEMA_GROUP_LIST)
		return;
	for (int i = 0; i < config_setting_length(s); i++) {
		snprintf(sub, sizeof sub, "%s[%d]", where, i + 1);
		diag_check_group(d, config_setting_get_elem(s, (unsigned)i), k->children, sub,
				 file);
	}
}

void diag_check_group(struct diag *d, const config_setting_t *group,
		      const struct schema_key *schema, const char *path, const char *file)
{
	char where[256];
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct schema_key *k = schema_find(schema, name ? name : "");

		snprintf(where, sizeof where, "%s%s%s", path ? path : "", path ? "." : "",
			 name ? name : "?");
		if (k == NULL) {
			diag_at(d, s, file, "unknown setting '%s'", where);
			continue;
		}
		if (!type_matches(s, k->type)) {
			diag_at(d, s, file, "'%s' must be %s", where, type_name(k->type));
			continue;
		}
		check_range(d, s, k, where, file);
		check_children(d, s, k, where, file);
	}
	for (const struct schema_key *k = schema; k->name != NULL; k++)
		if (k->required && config_setting_get_member(group, k->name) == NULL)
			diag_at(d, group, file, "missing required setting '%s%s%s'",
				path ? path : "", path ? "." : "", k->name);
}

int diag_read_config(struct diag *d, config_t *cfg, const char *path)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		diag_add(d, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	fclose(f);
	if (config_read_file(cfg, path) != CONFIG_TRUE) {
		diag_add(d, config_error_file(cfg) ? config_error_file(cfg) : path,
			 config_error_line(cfg), "syntax error: %s", config_error_text(cfg));
		return -1;
	}
	return 0;
}
