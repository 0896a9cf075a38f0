/* test_mustache.c — the Mustache spec suites from ../shared/corpora, plus strict mode, escaping, errors, names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "err.h"
#include "mustache.h"
#include "util.h"

static const char *const spec_files[] = {
	"interpolation.json", "sections.json", "inverted.json",
	"comments.json", "partials.json", "delimiters.json",
};

/* Where the spec suites live, or NULL when ../shared/corpora is absent. */
static char *spec_dir(void)
{
	const char *shared = getenv("CUTOFF_SHARED");
	struct stat st;
	char *dir;

	if (shared == NULL)
		return NULL;
	dir = xasprintf("%s/corpora/mustache-spec/specs", shared);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		free(dir);
		return NULL;
	}
	return dir;
}

/* A partial loader over a JSON object of name -> source (the spec's "partials"). */
static int load_from_json(void *ud, const char *name, char **text, char **origin,
			  struct err *e)
{
	const json_t *v = json_object_get(ud, name);

	(void)e;
	if (!json_is_string(v))
		return 1;
	*text = xstrdup(json_string_value(v));
	*origin = xasprintf("partials/%s.mustache", name);
	return 0;
}

/* Runs one spec test; returns true when it passes, printing why when not. */
static bool spec_run_one(const char *file, const json_t *test)
{
	const char *name = json_string_value(json_object_get(test, "name"));
	const char *tpl = json_string_value(json_object_get(test, "template"));
	const char *want = json_string_value(json_object_get(test, "expected"));
	json_t *partials = json_object_get(test, "partials");
	struct mustache_partials loader = { .load = load_from_json, .ud = partials };
	struct mustache *m = NULL;
	struct err e = { 0 };
	struct buf out;
	bool ok = false;

	buf_init(&out);
	if (name == NULL || tpl == NULL || want == NULL) {
		printf("FAIL %s: a test lacks name, template or expected\n", file);
		goto out;
	}
	if (mustache_compile(&m, tpl, name, &loader, &e) < 0 ||
	    mustache_render(m, json_object_get(test, "data"), MUSTACHE_ESCAPE_HTML, &out, &e) < 0) {
		printf("FAIL %s: \"%s\": %s\n", file, name, e.msg);
		goto out;
	}
	ok = strcmp(out.data, want) == 0;
	if (!ok)
		printf("FAIL %s: \"%s\"\n  expected: [%s]\n  got:      [%s]\n", file, name,
		       want, out.data);
out:
	mustache_free(m);
	buf_free(&out);
	return ok;
}

static void test_spec(void **state)
{
	char *dir = spec_dir();
	int passed = 0, failed = 0;

	(void)state;
	if (dir == NULL)
		skip();
	for (size_t i = 0; i < sizeof spec_files / sizeof spec_files[0]; i++) {
		char *path = xasprintf("%s/%s", dir, spec_files[i]);
		json_error_t jerr;
		json_t *root = json_load_file(path, 0, &jerr);
		json_t *tests = json_object_get(root, "tests");
		size_t j;
		json_t *t;

		if (!json_is_array(tests)) {
			printf("FAIL %s: cannot read the tests: %s\n", path, jerr.text);
			failed++;
		}
		json_array_foreach(tests, j, t) {
			if (spec_run_one(spec_files[i], t))
				passed++;
			else
				failed++;
		}
		json_decref(root);
		free(path);
	}
	free(dir);
	printf("mustache spec: %d passed, %d failed\n", passed, failed);
	assert_int_equal(failed, 0);
	assert_true(passed >= 136);
}

/* Compiles and renders tpl with data given as JSON text; returns the render
 * result code and leaves the output or the error in out/e. */
static int render_json(const char *tpl, const char *json, unsigned flags, struct buf *out,
		       struct err *e)
{
	struct mustache *m = NULL;
	json_t *data = json_loads(json, JSON_DECODE_ANY, NULL);
	int rc;

	assert_non_null(data);
	rc = mustache_compile(&m, tpl, "templates/x/text.mustache", NULL, e);
	if (rc == 0)
		rc = mustache_render(m, data, flags, out, e);
	mustache_free(m);
	json_decref(data);
	return rc;
}

/* Renders and returns the output (static storage, for short assertions). */
static const char *render_ok(const char *tpl, const char *json, unsigned flags)
{
	static char result[512];
	struct err e = { 0 };
	struct buf out;

	buf_init(&out);
	assert_int_equal(render_json(tpl, json, flags, &out, &e), 0);
	snprintf(result, sizeof result, "%s", out.data != NULL ? out.data : "");
	buf_free(&out);
	return result;
}

/* Expects compiling tpl to fail with ERR_CONFIG and the exact message. */
static void compile_fails(const char *tpl, const char *msg)
{
	struct mustache *m = (struct mustache *)&m;
	struct err e = { 0 };

	assert_int_equal(mustache_compile(&m, tpl, "t.mustache", NULL, &e), ERR_CONFIG);
	assert_null(m);
	assert_string_equal(e.msg, msg);
}

static void test_strict_unknown_variable(void **state)
{
	struct err e = { 0 };
	struct buf out;

	(void)state;
	buf_init(&out);
	buf_puts(&out, "kept");
	assert_int_equal(render_json("Dear {{name}},\n\nthe cutoff is\n    {{cutof_date}}.\n",
				     "{\"name\": \"Ann\", \"cutoff_date\": \"15 October 2003\"}",
				     MUSTACHE_STRICT, &out, &e), ERR_DATA);
	assert_string_equal(e.msg, "templates/x/text.mustache:4:5: unknown variable 'cutof_date'");
	assert_string_equal(out.data, "kept"); /* nothing half-rendered is left */
	/* the same template without STRICT follows the spec: missing is empty */
	assert_string_equal(render_ok("[{{cutof_date}}]", "{}", 0), "[]");
	/* columns count characters, not bytes */
	err_clear(&e);
	assert_int_equal(render_json("Grüße {{x}}", "{}", MUSTACHE_STRICT, &out, &e), ERR_DATA);
	assert_string_equal(e.msg, "templates/x/text.mustache:1:7: unknown variable 'x'");
	buf_free(&out);
}

static void test_strict_sections_and_chains(void **state)
{
	struct err e = { 0 };
	struct buf out;

	(void)state;
	buf_init(&out);
	assert_int_equal(render_json("a\n{{^done}}x{{/done}}", "{}", MUSTACHE_STRICT, &out, &e),
			 ERR_DATA);
	assert_string_equal(e.msg, "templates/x/text.mustache:2:1: unknown section 'done'");
	err_clear(&e);
	assert_int_equal(render_json("{{a.b.c}}", "{\"a\": {\"b\": {}}}", MUSTACHE_STRICT,
				     &out, &e), ERR_DATA);
	assert_string_equal(e.msg, "templates/x/text.mustache:1:1: unknown variable 'a.b.c'");
	err_clear(&e);
	assert_int_equal(render_json("{{#a}}{{.}}{{/a}}", "{\"a\": {\"b\": 1}}", MUSTACHE_STRICT,
				     &out, &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "1:7: an object cannot be printed"));
	/* present null, outer-context names and the implicit iterator all resolve */
	assert_string_equal(render_ok("{{n}}{{#l}}{{.}}{{top}}{{/l}}",
				      "{\"n\": null, \"top\": \"!\", \"l\": [1, 2]}",
				      MUSTACHE_STRICT), "1!2!");
	buf_free(&out);
}

static void test_compile_errors(void **state)
{
	(void)state;
	compile_fails("Hello\n  {{#items}}\n{{name}}\n",
		      "t.mustache:2:3: section 'items' is never closed; add '{{/items}}' where it ends");
	compile_fails("{{#a}}{{#b}}{{/a}}{{/b}}",
		      "t.mustache:1:13: '{{/a}}' does not match the open section 'b' (line 1, "
		      "column 7); close that one first with '{{/b}}'");
	compile_fails("x {{/a}}",
		      "t.mustache:1:3: '{{/a}}' closes a section that was never opened; remove it "
		      "or add '{{#a}}' before it");
	compile_fails("ok\nthen {{name",
		      "t.mustache:2:6: tag '{{' is never closed; end it with '}}'");
	compile_fails("{{{name}}",
		      "t.mustache:1:1: tag '{{' is never closed; end it with '}}}'");
	compile_fails("{{=<% %>=}}\n<%#a%>\n",
		      "t.mustache:2:1: section 'a' is never closed; add '<%/a%>' where it ends");
	compile_fails("{{=<%=}}",
		      "t.mustache:1:1: bad set-delimiter tag '{{=<%=}}': write two delimiters of 1 "
		      "to 16 characters without '=' or spaces, separated by a space, like "
		      "{{=<% %>=}}");
	compile_fails("{{ }}", "t.mustache:1:1: empty tag '{{}}'; put a name in it");
	compile_fails("{{first name}}",
		      "t.mustache:1:1: tag name 'first name' contains a space; names are one word "
		      "(is a closing '}}' missing?)");
	compile_fails("{{a..b}}",
		      "t.mustache:1:1: bad name 'a..b': use '.' alone or dotted names like 'a.b'");
}

static void test_depth_limits(void **state)
{
	struct buf src, out;
	struct err e = { 0 };

	(void)state;
	buf_init(&src);
	buf_init(&out);
	for (int i = 0; i <= MUSTACHE_MAX_DEPTH; i++)
		buf_puts(&src, "{{#a}}");
	assert_int_equal(render_json(src.data, "{}", 0, &out, &e), ERR_CONFIG);
	assert_non_null(strstr(e.msg, "sections nested more than 100 deep"));
	buf_free(&src);
	buf_free(&out);
}

static int load_self(void *ud, const char *name, char **text, char **origin, struct err *e)
{
	(void)ud;
	(void)e;
	if (strcmp(name, "loop") == 0) {
		*text = xstrdup("x{{>loop}}");
		return 0;
	}
	if (strcmp(name, "broken") == 0) {
		*text = xstrdup("line one\n{{#open}}\n");
		*origin = xstrdup("templates/common/broken.mustache");
		return 0;
	}
	if (strcmp(name, "fails") == 0)
		return err_set(e, ERR_IO, "templates/common/fails.mustache: permission denied");
	if (strcmp(name, "greet") == 0) {
		*text = xstrdup("Hi {{nam}}\n");
		*origin = xstrdup("templates/common/greet.mustache");
		return 0;
	}
	return 1;
}

static void test_partials(void **state)
{
	struct mustache_partials loader = { .load = load_self };
	struct mustache *m = NULL;
	struct err e = { 0 };
	struct buf out;
	json_t *data = json_pack("{s:s}", "name", "Ann");

	(void)state;
	buf_init(&out);
	/* a partial that includes itself unconditionally fails, it does not crash */
	assert_int_equal(mustache_compile(&m, "{{>loop}}", "t", &loader, &e), 0);
	assert_int_equal(mustache_render(m, data, 0, &out, &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "nested more than 200 deep"));
	assert_int_equal(out.len, 0);
	mustache_free(m);
	err_clear(&e);
	/* errors inside a partial name the partial's file */
	assert_int_equal(mustache_compile(&m, "{{>broken}}", "t", &loader, &e), ERR_CONFIG);
	assert_string_equal(e.msg, "templates/common/broken.mustache:2:1: section 'open' is "
			    "never closed; add '{{/open}}' where it ends");
	err_clear(&e);
	assert_int_equal(mustache_compile(&m, "{{>fails}}", "t", &loader, &e), ERR_IO);
	assert_string_equal(e.msg, "partial 'fails': templates/common/fails.mustache: "
			    "permission denied");
	err_clear(&e);
	assert_int_equal(mustache_compile(&m, "a\n  {{>greet}}\n{{>nothere}}", "t", &loader, &e), 0);
	assert_int_equal(mustache_render(m, data, MUSTACHE_STRICT, &out, &e), ERR_DATA);
	assert_string_equal(e.msg, "templates/common/greet.mustache:1:4: unknown variable 'nam'");
	err_clear(&e);
	assert_int_equal(mustache_render(m, data, 0, &out, &e), 0);
	assert_string_equal(out.data, "a\n  Hi \n");
	json_object_set_new(data, "nam", json_string("Bo"));
	assert_int_equal(mustache_render(m, data, MUSTACHE_STRICT, &out, &e), ERR_DATA);
	assert_string_equal(e.msg, "t:3:1: unknown partial 'nothere'");
	mustache_free(m);
	json_decref(data);
	buf_free(&out);
}

static void test_escaping(void **state)
{
	const char *data = "{\"v\": \"<a href=\\\"x\\\">Tom & Jerry's</a>\"}";

	(void)state;
	assert_string_equal(render_ok("{{v}}|{{{v}}}|{{&v}}", data, MUSTACHE_ESCAPE_HTML),
			    "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;|"
			    "<a href=\"x\">Tom & Jerry's</a>|<a href=\"x\">Tom & Jerry's</a>");
	assert_string_equal(render_ok("{{v}}", data, 0), "<a href=\"x\">Tom & Jerry's</a>");
	assert_string_equal(render_ok("{{v}}", "{\"v\": \"plain\"}", MUSTACHE_ESCAPE_HTML), "plain");
}

static void test_values(void **state)
{
	(void)state;
	assert_string_equal(render_ok("{{a}} {{b}} {{c}} {{d}} {{e}} {{f}} {{g}} {{h}}[{{i}}]",
				      "{\"a\": 1.5, \"b\": 85, \"c\": 2.0, \"d\": -3, \"e\": 0.1,"
				      " \"f\": 1e21, \"g\": true, \"h\": false, \"i\": null}", 0),
			    "1.5 85 2 -3 0.1 1e+21 true false[]");
	/* falsey as in JavaScript: "", 0 and [] do not render a section */
	assert_string_equal(render_ok("{{#s}}S{{/s}}{{^s}}s{{/s}}{{#z}}Z{{/z}}{{^z}}z{{/z}}"
				      "{{#o}}O{{/o}}",
				      "{\"s\": \"\", \"z\": 0, \"o\": {}}", 0), "szO");
	/* objects and arrays print nothing unless strict */
	assert_string_equal(render_ok("[{{o}}{{l}}]", "{\"o\": {}, \"l\": [1]}", 0), "[]");
}

static void test_render_many(void **state)
{
	struct mustache *m = NULL;
	struct err e = { 0 };
	struct buf out;
	json_t *data = json_object();

	(void)state;
	buf_init(&out);
	assert_int_equal(mustache_compile(&m, "{{#users}}{{name}};{{/users}}", NULL, NULL, &e), 0);
	for (int i = 0; i < 3; i++) {
		json_t *users = json_pack("[{s:i}]", "name", i);

		json_object_set_new(data, "users", users);
		buf_reset(&out);
		assert_int_equal(mustache_render(m, data, MUSTACHE_STRICT, &out, &e), 0);
		assert_int_equal(out.data[0], '0' + i);
	}
	assert_int_equal(mustache_render(m, data, 0x80, &out, &e), ERR_USAGE);
	mustache_free(m);
	mustache_free(NULL);
	json_decref(data);
	buf_free(&out);
}

/* Collects "origin:line:col kind name [scope/...]" lines. */
static int collect_name(void *ud, const struct mustache_name *n)
{
	static const char *const kinds[] = { "var", "section", "inverted", "partial" };
	struct buf *b = ud;

	buf_printf(b, "%s:%d:%d %s %s%s [", n->origin, n->line, n->col, kinds[n->kind],
		   n->name, n->missing ? " (missing)" : "");
	for (size_t i = 0; i < n->scope_len; i++)
		buf_printf(b, "%s%s", i ? "/" : "", n->scope[i]);
	buf_puts(b, "]\n");
	return 0;
}

static int stop_at_second(void *ud, const struct mustache_name *n)
{
	int *count = ud;

	(void)n;
	return ++*count == 2 ? 42 : 0;
}

static int load_names(void *ud, const char *name, char **text, char **origin, struct err *e)
{
	(void)ud;
	(void)e;
	if (strcmp(name, "item") == 0) {
		*text = xstrdup("{{label}}\n{{#children}}{{>item}}{{/children}}");
		*origin = xstrdup("item.mustache");
		return 0;
	}
	return 1;
}

static void test_names(void **state)
{
	struct mustache_partials loader = { .load = load_names };
	struct mustache *m = NULL;
	struct err e = { 0 };
	struct buf b;
	int count = 0;

	(void)state;
	buf_init(&b);
	assert_int_equal(mustache_compile(&m,
		"Dear {{recipient.name}},\n"
		"{{#segments}}\n"
		"  {{^done}}{{title}}{{/done}} {{{.}}}\n"
		"  {{>item}}\n"
		"{{/segments}}\n"
		"{{! a note }}{{>gone}}\n", "main.mustache", &loader, &e), 0);
	assert_int_equal(mustache_names(m, collect_name, &b), 0);
	assert_string_equal(b.data,
		"main.mustache:1:6 var recipient.name []\n"
		"main.mustache:2:1 section segments []\n"
		"main.mustache:3:3 inverted done [segments]\n"
		"main.mustache:3:12 var title [segments]\n"
		"main.mustache:3:31 var . [segments]\n"
		"main.mustache:4:3 partial item [segments]\n"
		"item.mustache:1:1 var label [segments]\n"
		"item.mustache:2:1 section children [segments]\n"
		"item.mustache:2:14 partial item [segments/children]\n"
		"main.mustache:6:14 partial gone (missing) []\n");
	assert_int_equal(mustache_names(m, stop_at_second, &count), 42);
	assert_int_equal(count, 2);
	mustache_free(m);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec),
		cmocka_unit_test(test_strict_unknown_variable),
		cmocka_unit_test(test_strict_sections_and_chains),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_depth_limits),
		cmocka_unit_test(test_partials),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_render_many),
		cmocka_unit_test(test_names),
	};
	char *dir = spec_dir();
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	if (rc == 0 && dir == NULL) {
		printf("SKIP: the Mustache spec suites are absent: set CUTOFF_SHARED to the shared/ "
		       "folder holding corpora/mustache-spec/specs/ (the other tests passed)\n");
		rc = 77;
	}
	free(dir);
	return rc;
}
