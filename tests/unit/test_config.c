/* test_config.c — cutoff.conf: validation in one pass with file:line, secrets' permissions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static char dir[] = "/tmp/cutoff-test-config-XXXXXX";

static char *write_file(const char *name, const char *text, mode_t mode)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	(void)state;
	if (system(cmd) != 0)
		return -1;
	free(cmd);
	return 0;
}

static void test_defaults_without_a_file(void **state)
{
	struct config *c = NULL;
	struct err e = {0};

	(void)state;
	assert_int_equal(config_load(&c, NULL, &e), 0);
	assert_string_equal(c->database, "cutoff.db");
	assert_int_equal(c->n_relays, 0);
	assert_int_equal(c->bounces.soft_threshold, 3);
	config_free(c);
}

static void test_valid_config(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *pw = write_file("relay.pw", "s3cret\n", 0600);
	char *key = write_file("verp.key", "0123456789abcdef0123456789abcdef\n", 0600);
	char *path = write_file("ok.conf",
		"database = \"state/cutoff.db\";\n"
		"relays = ( { name = \"local\"; url = \"smtp://127.0.0.1:2525\"; tls = \"none\"; },\n"
		"           { name = \"isp\"; url = \"smtps://smtp.example.test:465\";\n"
		"             user = \"cutoff\"; password_file = \"relay.pw\"; connections = 8; } );\n"
		"rate = { messages_per_second = 100.5;\n"
		"         per_domain = ( { domain = \"Hotmail.Example.Test\"; per_second = 5; } ); };\n"
		"bounces = { return_path_domain = \"bounces.example.test\"; secret_file = \"verp.key\";"
		" soft_threshold = 4; };\n",
		0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), 0);
	assert_non_null(strstr(c->database, "/state/cutoff.db"));
	assert_int_equal(strncmp(c->database, dir, strlen(dir)), 0);
	assert_int_equal(c->n_relays, 2);
	assert_int_equal(c->relays[0].tls, RELAY_TLS_NONE);
	assert_true(c->relays[0].loopback);
	assert_int_equal(c->relays[1].tls, RELAY_TLS_SMTPS);
	assert_string_equal(c->relays[1].password, "s3cret");
	assert_int_equal(c->relays[1].connections, 8);
	assert_true(c->rate > 100.4 && c->rate < 100.6);
	assert_string_equal(c->domain_rates[0].domain, "hotmail.example.test");
	assert_int_equal(c->bounces.secret_len, 32);
	assert_int_equal(c->bounces.soft_threshold, 4);
	config_free(c);
	free(pw), free(key), free(path);
}

static void test_every_problem_reported_with_line(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *path = write_file("bad.conf",
		"databse = \"x.db\";\n"                                   /* 1: unknown key */
		"batch_size = \"many\";\n"                                /* 2: wrong type */
		"relays = ( { url = \"http://relay.example.test\"; },\n" /* 3: bad scheme */
		"           { url = \"smtp://mx.example.test\"; tls = \"none\"; } );\n" /* 4 */
		"rate = { messages_per_second = -1; };\n",               /* 5: out of range */
		0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), ERR_CONFIG);
	assert_null(c);
	assert_non_null(strstr(e.msg, "bad.conf:1: unknown setting 'databse'"));
	assert_non_null(strstr(e.msg, "bad.conf:2: 'batch_size' must be an integer"));
	assert_non_null(strstr(e.msg, "bad.conf:3: relay relay1: url must look like"));
	assert_non_null(strstr(e.msg, "bad.conf:4: relay relay2: tls = \"none\" sends mail in clear"));
	assert_non_null(strstr(e.msg, "bad.conf:5: rate.messages_per_second must be between"));
	free(path);
}

static void test_syntax_error_has_line(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *path = write_file("syntax.conf", "database = \"a.db\";\nrelays = ( { url = ; } );\n",
				0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), ERR_CONFIG);
	assert_non_null(strstr(e.msg, "syntax.conf:2: syntax error"));
	free(path);
}

static void test_readable_secret_file_refused(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *pw = write_file("open.pw", "s3cret\n", 0644);
	char *path = write_file("secret.conf",
		"relays = ( { url = \"smtp://127.0.0.1:25\"; user = \"u\";"
		" password_file = \"open.pw\"; } );\n", 0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), ERR_NOPERM);
	assert_non_null(strstr(e.msg, "group or others may read it (mode 0644)"));
	assert_non_null(strstr(e.msg, "chmod 600"));
	assert_int_equal(chmod(pw, 0600), 0);
	err_clear(&e);
	assert_int_equal(config_load(&c, path, &e), 0);
	config_free(c);
	free(pw), free(path);
}

static void test_inline_password_needs_private_config(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *path = write_file("inline.conf",
		"relays = ( { url = \"smtp://127.0.0.1:25\"; user = \"u\"; password = \"p\"; } );\n",
		0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), ERR_NOPERM);
	assert_non_null(strstr(e.msg, "inline password"));
	assert_int_equal(chmod(path, 0600), 0);
	err_clear(&e);
	assert_int_equal(config_load(&c, path, &e), 0);
	assert_string_equal(c->relays[0].password, "p");
	config_free(c);
	free(path);
}

static void test_short_verp_secret_refused(void **state)
{
	struct config *c = NULL;
	struct err e = {0};
	char *key = write_file("short.key", "abc\n", 0600);
	char *path = write_file("short.conf", "bounces = { secret_file = \"short.key\"; };\n", 0644);

	(void)state;
	assert_int_equal(config_load(&c, path, &e), ERR_CONFIG);
	assert_non_null(strstr(e.msg, "use at least 16 random bytes"));
	free(key), free(path);
}

static void test_missing_file(void **state)
{
	struct config *c = NULL;
	struct err e = {0};

	(void)state;
	assert_int_equal(config_load(&c, "/nonexistent/cutoff.conf", &e), ERR_CONFIG);
	assert_non_null(strstr(e.msg, "/nonexistent/cutoff.conf: cannot open"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_without_a_file),
		cmocka_unit_test(test_valid_config),
		cmocka_unit_test(test_every_problem_reported_with_line),
		cmocka_unit_test(test_syntax_error_has_line),
		cmocka_unit_test(test_readable_secret_file_refused),
		cmocka_unit_test(test_inline_password_needs_private_config),
		cmocka_unit_test(test_short_verp_secret_refused),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
