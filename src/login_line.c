/* login_line.c — one login event from a line of JSON (RFC 8259): a small parser for the usual
 * flat line, jansson for everything else. */
#include "login_line.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"

/* ---- the fast path: the usual line, a flat object of strings and integers -------------- */

#define FAST_MAX_KEYS 16

/* A parser over one line, which it may change (strings are decoded in place). */
struct fast {
	char *p, *end;
	const char *keys[FAST_MAX_KEYS];
	size_t n_keys;
};

static void fast_ws(struct fast *f)
{
	while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\r' || *f->p == '\n'))
		f->p++;
}

/* Appends code point c as UTF-8 at *w. */
static void put_utf8(char **w, unsigned c)
{
	unsigned char *o = (unsigned char *)*w;

	if (c < 0x80) {
		*o++ = (unsigned char)c;
	} else if (c < 0x800) {
		*o++ = (unsigned char)(0xc0 | c >> 6), *o++ = (unsigned char)(0x80 | (c & 0x3f));
	} else if (c < 0x10000) {
		*o++ = (unsigned char)(0xe0 | c >> 12);
		*o++ = (unsigned char)(0x80 | (c >> 6 & 0x3f));
		*o++ = (unsigned char)(0x80 | (c & 0x3f));
	} else {
		*o++ = (unsigned char)(0xf0 | c >> 18);
		*o++ = (unsigned char)(0x80 | (c >> 12 & 0x3f));
		*o++ = (unsigned char)(0x80 | (c >> 6 & 0x3f));
		*o++ = (unsigned char)(0x80 | (c & 0x3f));
	}
	*w = (char *)o;
}

/* Four hex digits at p, or -1. */
static long hex4(const char *p, const char *end)
{
	long v = 0;

	for (int i = 0; i < 4; i++, p++) {
		int d = p >= end ? -1 : *p >= '0' && *p <= '9' ? *p - '0'
				 : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
				 : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* One escape after a backslash at f->p: decoded at *w. False when it is not one JSON has. */
static bool fast_escape(struct fast *f, char **w)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *k = f->p < f->end ? strchr(from, *f->p) : NULL;
	long c, lo;

	if (k != NULL && *f->p != '\0') {
		*(*w)++ = to[k - from], f->p++;
		return true;
	}
	if (f->p >= f->end || *f->p != 'u' || (c = hex4(f->p + 1, f->end)) < 0)
		return false;
	f->p += 5;
	if (c >= 0xdc00 && c <= 0xdfff)
		return false; /* a lone low surrogate */
	if (c >= 0xd800 && c <= 0xdbff) {
		if (f->end - f->p < 6 || f->p[0] != '\\' || f->p[1] != 'u' ||
		    (lo = hex4(f->p + 2, f->end)) < 0xdc00 || lo > 0xdfff)
			return false;
		c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00), f->p += 6;
	}
	if (c == 0)
		return false; /* a NUL would cut the string: let the slow path refuse it */
	put_utf8(w, (unsigned)c);
	return true;
}

/* A string at f->p, decoded in place and NUL-terminated into *out. */
static bool fast_string(struct fast *f, const char **out)
{
	char *w, *start;

	if (f->p >= f->end || *f->p != '"')
		return false;
	start = w = ++f->p;
	while (f->p < f->end && *f->p != '"') {
		unsigned char ch = (unsigned char)*f->p;
		if (ch < 0x20)
			return false;
		if (ch == '\\') {
			f->p++;
			if (!fast_escape(f, &w))
				return false;
		} else {
			*w++ = *f->p++;
		}
	}
	if (f->p >= f->end)
		return false;
	f->p++;
	*w = '\0';
	*out = start;
	return str_utf8_valid(start, (size_t)(w - start));
}

/* What a scalar was. */
enum fast_kind { FAST_NULL, FAST_BOOL, FAST_INT, FAST_STRING };

/* An integer (no fraction, no exponent, at most 18 digits), null, true or false. */
static bool fast_scalar(struct fast *f, long long *v, enum fast_kind *kind)
{
	static const char *const words[] = {"null", "true", "false"};
	char *s = f->p;
	int digits = 0;

	for (int i = 0; i < 3; i++) {
		size_t n = strlen(words[i]);
		if ((size_t)(f->end - f->p) >= n && memcmp(f->p, words[i], n) == 0) {
			f->p += n;
			*kind = i == 0 ? FAST_NULL : FAST_BOOL;
			return true;
		}
	}
	if (f->p < f->end && *f->p == '-')
		f->p++;
	*v = 0;
	for (; f->p < f->end && *f->p >= '0' && *f->p <= '9' && digits < 19; f->p++, digits++)
		*v = *v * 10 + (*f->p - '0');
	if (digits == 0 || digits > 18 || (digits > 1 && s[*s == '-'] == '0') ||
	    (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E')))
		return false;
	*v = *s == '-' ? -*v : *v;
	*kind = FAST_INT;
	return true;
}

/* Notes a key; false when it came before (the slow path then refuses the line). */
static bool fast_key_once(struct fast *f, const char *key)
{
	for (size_t i = 0; i < f->n_keys; i++)
		if (strcmp(f->keys[i], key) == 0)
			return false;
	if (f->n_keys == FAST_MAX_KEYS)
		return false;
	f->keys[f->n_keys++] = key;
	return true;
}

/* One "key": value pair of the object into ev (and the time's text or number). */
static bool fast_member(struct fast *f, struct login_event *ev, const char **time_text,
			long long *time_int, enum fast_kind *time_kind)
{
	const char *key, *s = NULL;
	enum fast_kind kind = FAST_STRING;
	long long v = 0;

	if (!fast_string(f, &key) || !fast_key_once(f, key))
		return false;
	fast_ws(f);
	if (f->p >= f->end || *f->p++ != ':')
		return false;
	fast_ws(f);
	if (f->p < f->end && *f->p == '"' ? !fast_string(f, &s) : !fast_scalar(f, &v, &kind))
		return false;
	if (strcmp(key, "user") == 0 || strcmp(key, "client_version") == 0 ||
	    strcmp(key, "platform") == 0) {
		if (kind != FAST_STRING && kind != FAST_NULL)
			return false; /* not text: the slow path says what is wrong */
		if (key[0] == 'u')
			ev->user = s;
		else if (key[0] == 'c')
			ev->client_version = s;
		else
			ev->platform = s;
	} else if (strcmp(key, "time") == 0) {
		if (kind == FAST_BOOL)
			return false;
		*time_text = s, *time_int = v, *time_kind = kind;
	}
	return true;
}

/*
 * Reads the usual event line without building a JSON tree: a flat object of strings,
 * integers, null, true and false, each key once. Returns false for anything else (nested
 * values, fractions, a bad time, no user...), which then goes to jansson. Decodes strings in
 * place: line is changed.
 */
static bool fast_event(char *line, size_t len, int64_t now, struct login_event *ev)
{
	struct fast f = {line, line + len, {NULL}, 0};
	enum fast_kind time_kind = FAST_NULL;
	const char *time_text = NULL;
	long long time_int = 0;
	struct err te = {0};

	fast_ws(&f);
	if (f.p >= f.end || *f.p++ != '{')
		return false;
	do {
		fast_ws(&f);
		if (!fast_member(&f, ev, &time_text, &time_int, &time_kind))
			return false;
		fast_ws(&f);
	} while (f.p < f.end && *f.p == ',' && f.p++);
	if (f.p >= f.end || *f.p++ != '}')
		return false;
	fast_ws(&f);
	if (f.p != f.end || ev->user == NULL || ev->user[0] == '\0')
		return false;
	ev->at = now;
	if (time_kind == FAST_STRING)
		return schedule_parse_instant(time_text, &ev->at, &te) == 0;
	if (time_kind == FAST_INT)
		ev->at = time_int;
	return true;
}

/* ---- the general path: jansson ---------------------------------------------------------- */

/* Reads ev's optional string member; false (why set) when it is there but not a string. */
static bool member_string(json_t *o, const char *key, const char **out, const char **why)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v)) {
		*why = key;
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* The login's time: "time" as RFC 3339 text or Unix seconds, else now. */
static bool event_time(json_t *o, int64_t now, int64_t *at, char *why, size_t n)
{
	json_t *v = json_object_get(o, "time");
	struct err te = {0};

	*at = now;
	if (v == NULL || json_is_null(v))
		return true;
	if (json_is_integer(v)) {
		*at = json_integer_value(v);
		return true;
	}
	if (json_is_string(v) && schedule_parse_instant(json_string_value(v), at, &te) == 0)
		return true;
	snprintf(why, n, "\"time\" must be Unix seconds or an RFC 3339 time%s%s",
		 te.msg[0] ? ": " : "", te.msg);
	return false;
}

/* Reads the line with jansson (the tree is kept in l for ev's strings). */
static int slow_event(struct login_line *l, const char *line, size_t len, int64_t now,
		      struct login_event *ev, char *why, size_t n)
{
	const char *bad_member = NULL;
	json_error_t je;
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);

	l->json = o;
	*ev = (struct login_event){NULL, NULL, NULL, now};
	if (o == NULL || !json_is_object(o)) {
		snprintf(why, n, "%s", o == NULL ? je.text : "not a JSON object");
	} else if (!member_string(o, "user", &ev->user, &bad_member) || ev->user == NULL ||
		   !ev->user[0]) {
		ev->user = NULL;
		snprintf(why, n, "\"user\" must be a non-empty string");
	} else if (!member_string(o, "client_version", &ev->client_version, &bad_member) ||
		   !member_string(o, "platform", &ev->platform, &bad_member)) {
		snprintf(why, n, "\"%s\" must be a string", bad_member);
	} else if (event_time(o, now, &ev->at, why, n)) {
		return 0;
	}
	return ERR_DATA;
}

void login_line_init(struct login_line *l)
{
	buf_init(&l->scratch);
	l->json = NULL;
}

void login_line_free(struct login_line *l)
{
	buf_free(&l->scratch);
	json_decref(l->json);
	l->json = NULL;
}

int login_line_parse(struct login_line *l, const char *line, size_t len, int64_t now,
		     struct login_event *ev, char *why, size_t n)
{
	json_decref(l->json);
	l->json = NULL;
	buf_reset(&l->scratch);
	buf_append(&l->scratch, line, len); /* the fast parser decodes in place: keep the line */
	*ev = (struct login_event){NULL, NULL, NULL, now};
	if (fast_event(l->scratch.data, len, now, ev))
		return 0;
	return slow_event(l, line, len, now, ev, why, n);
}
