/* test_import_attrs.c — the importer's attribute JSON is byte for byte what jansson writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "util.h"

/* What import.c wrote before it had its own encoder: the reference for stored digests. */
static char *jansson_attrs(const char *const *names, const char *const *values,
			   const size_t *lens, size_t n)
{
	json_t *o = json_object();
	char *text;

	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, names[i], json_stringn(values[i], lens[i]));
	text = n > 0 ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

static void same_as_jansson(const char *const *names, const char *const *values, size_t n)
{
	size_t lens[16];
	struct buf b;
	char *want;

	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(values[i]);
	buf_init(&b);
	import_attrs_json(&b, names, values, lens, n);
	want = jansson_attrs(names, values, lens, n);
	if (want == NULL)
		assert_int_equal(b.len, 0);
	else
		assert_string_equal(b.data, want);
	free(want);
	buf_free(&b);
}

static void test_plain_and_ordered(void **state)
{
	const char *names[] = {"country", "member_since", "a"};
	const char *values[] = {"FR", "1999", ""};

	(void)state;
	same_as_jansson(names, values, 3);
	same_as_jansson(names, values, 1);
	same_as_jansson(names, values, 0);
}

static void test_escapes(void **state)
{
	const char *names[] = {"q\"uote", "back\\slash", "slash/", "tab"};
	const char *values[] = {"say \"hi\"", "C:\\dir\\", "a/b</script>", "a\tb\nc\rd\be\ff"};

	(void)state;
	same_as_jansson(names, values, 4);
}

static void test_every_control_character_and_utf8(void **state)
{
	char ctl[64];
	const char *names[] = {"ctl", "utf8", "del"};
	const char *values[] = {ctl, "山田 太郎 \xe2\x80\xa8 é \xf0\x9f\x98\x80", "x\x7fy"};
	size_t n = 0;

	(void)state;
	for (int c = 1; c < 0x20; c++)
		ctl[n++] = (char)c;
	ctl[n] = '\0';
	same_as_jansson(names, values, 3);
}

/* Random printable-and-control strings: the two encoders never disagree. */
static void test_random_values(void **state)
{
	uint32_t seed = 12345;
	char v[4][40];
	const char *names[] = {"k1", "k2", "k3", "k4"};
	const char *values[] = {v[0], v[1], v[2], v[3]};

	(void)state;
	for (int round = 0; round < 2000; round++) {
		for (int j = 0; j < 4; j++) {
			int len = (int)(seed % 39);
			for (int i = 0; i < len; i++) {
				seed = seed * 1103515245u + 12345u;
				v[j][i] = (char)(1 + (seed >> 16) % 127); /* 1..127, ASCII */
			}
			v[j][len] = '\0';
		}
		same_as_jansson(names, values, 4);
	}
}

/* The buffer is replaced, not appended to, and an empty set leaves it empty. */
static void test_reuses_the_buffer(void **state)
{
	const char *names[] = {"k"};
	const char *values[] = {"v"};
	size_t lens[] = {1};
	struct buf b;

	(void)state;
	buf_init(&b);
	import_attrs_json(&b, names, values, lens, 1);
	import_attrs_json(&b, names, values, lens, 1);
	assert_string_equal(b.data, "{\"k\":\"v\"}");
	import_attrs_json(&b, names, values, lens, 0);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_ordered),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_every_control_character_and_utf8),
		cmocka_unit_test(test_random_values),
		cmocka_unit_test(test_reuses_the_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
