/* test_version.c — dotted-number version parsing and ordering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "version.h"

static void test_ordering_from_the_brief(void **state)
{
	(void)state;
	assert_true(version_compare("4.7.2009", "4.7.300") > 0);
	assert_true(version_compare("4.7.300", "4.7") > 0);
	assert_true(version_compare("4.7", "4.7.2009") < 0);
	assert_true(version_compare("5.0", "4.7.2009") > 0);
	assert_true(version_compare("10.0", "9.9.9") > 0);
}

static void test_missing_components_are_zero(void **state)
{
	(void)state;
	assert_int_equal(version_compare("4.7", "4.7.0"), 0);
	assert_int_equal(version_compare("5", "5.0.0.0"), 0);
	assert_true(version_compare("4.7.0.1", "4.7") > 0);
}

static void test_leading_zeros_are_numbers(void **state)
{
	(void)state;
	/* 4.7.0041 is build 41, below build 300 and build 2009. */
	assert_true(version_compare("4.7.0041", "4.7.300") < 0);
	assert_int_equal(version_compare("4.07", "4.7"), 0);
}

static void test_prerelease_suffix(void **state)
{
	(void)state;
	assert_true(version_compare("5.0b1", "5.0") < 0);
	assert_true(version_compare("5.0b1", "5.0b2") < 0);
	assert_true(version_compare("5.0", "5.0.1") < 0);
	assert_true(version_compare("6.2-rc1", "6.2") < 0);
}

static void test_validity(void **state)
{
	struct err e = {0};

	(void)state;
	assert_true(version_valid("4.7.2009"));
	assert_true(version_valid("6"));
	assert_true(version_valid("5.0b1"));
	assert_false(version_valid(""));
	assert_false(version_valid("v5"));
	assert_false(version_valid("4..7"));
	assert_false(version_valid("4.7."));
	assert_false(version_valid(".4"));
	assert_false(version_valid("4.7 beta"));
	assert_false(version_valid("1234567890.1")); /* more than 9 digits */
	assert_int_equal(version_check("v5", &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "'v5' is not a version"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordering_from_the_brief),
		cmocka_unit_test(test_missing_components_are_zero),
		cmocka_unit_test(test_leading_zeros_are_numbers),
		cmocka_unit_test(test_prerelease_suffix),
		cmocka_unit_test(test_validity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
