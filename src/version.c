/* version.c — dotted-number version parsing and ordering. */
#include "version.h"

#include <string.h>

/* One parsed component: its number and the suffix text after it. */
struct component {
	long number;
	const char *suffix;
	size_t suffix_len;
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_suffix_char(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
	       c == '+' || c == '_';
}

/* Reads the component at *p and advances past it and its dot; false if malformed. */
static bool next_component(const char **p, struct component *c)
{
	const char *s = *p;
	int digits = 0;

	c->number = 0;
	while (is_digit(*s)) {
		if (++digits > 9)
			return false;
		c->number = c->number * 10 + (*s - '0');
		s++;
	}
	if (digits == 0)
		return false;
	c->suffix = s;
	while (is_suffix_char(*s))
		s++;
	c->suffix_len = (size_t)(s - c->suffix);
	if (*s == '.') {
		s++;
		if (*s == '\0')
			return false;
	} else if (*s != '\0') {
		return false;
	}
	*p = s;
	return true;
}

bool version_valid(const char *s)
{
	struct component c;

	if (s == NULL || *s == '\0')
		return false;
	while (*s)
		if (!next_component(&s, &c))
			return false;
	return true;
}

int version_check(const char *s, struct err *e)
{
	if (s == NULL || *s == '\0')
		return err_set(e, ERR_DATA, "the version is empty");
	if (!version_valid(s))
		return err_set(e, ERR_DATA,
			       "'%s' is not a version: expected dotted numbers such as 4.7.2009",
			       s);
	return 0;
}

/* Orders two components: numbers first, then "has a suffix" sorts before none. */
static int component_compare(const struct component *a, const struct component *b)
{
	size_t n;
	int r;

	if (a->number != b->number)
		return a->number < b->number ? -1 : 1;
	if (a->suffix_len == 0 && b->suffix_len == 0)
		return 0;
	if (a->suffix_len == 0) /* a release sorts after its pre-releases */
		return 1;
	if (b->suffix_len == 0)
		return -1;
	n = a->suffix_len < b->suffix_len ? a->suffix_len : b->suffix_len;
	r = memcmp(a->suffix, b->suffix, n);
	if (r != 0)
		return r < 0 ? -1 : 1;
	if (a->suffix_len != b->suffix_len)
		return a->suffix_len < b->suffix_len ? -1 : 1;
	return 0;
}

int version_compare(const char *a, const char *b)
{
	static const struct component zero = {0, "", 0};

	if (!version_valid(a) || !version_valid(b)) {
		int r = strcmp(a ? a : "", b ? b : "");
		return r < 0 ? -1 : r > 0;
	}
	while (*a || *b) {
		struct component ca = zero, cb = zero;
		int r;

		if (*a)
			next_component(&a, &ca);
		if (*b)
			next_component(&b, &cb);
		r = component_compare(&ca, &cb);
		if (r != 0)
			return r;
	}
	return 0;
}
