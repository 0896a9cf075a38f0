/* test_serve_pace.c — the service's bulk steps sized by their time: a slow part's steps shrink
 * towards the target, a fast part's grow, each part apart, always within the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "serve_pace.h"

#define MS 1000000

static void test_starts_at_start_keys(void **state)
{
	struct serve_pace p;

	(void)state;
	serve_pace_init(&p, MS / 2, 32, 1024, 8192);
	for (int i = 0; i < SERVE_PACE_PARTS; i++)
		assert_int_equal(serve_pace_keys(&p, i), 1024);
	assert_int_equal(serve_pace_keys(&p, -1), 32); /* no such part: the least */
	assert_int_equal(serve_pace_keys(&p, SERVE_PACE_PARTS), 32);
}

/* 1,024 keys took 5 ms (5 us a key): the part converges on 100 keys, the others stay. */
static void test_slow_part_shrinks(void **state)
{
	struct serve_pace p;
	size_t k;

	(void)state;
	serve_pace_init(&p, MS / 2, 32, 1024, 8192);
	for (int i = 0; i < 20; i++) {
		k = serve_pace_keys(&p, 3);
		serve_pace_done(&p, 3, k, (int64_t)k * 5000);
	}
	k = serve_pace_keys(&p, 3);
	assert_true(k >= 95 && k <= 105);
	assert_int_equal(serve_pace_keys(&p, 2), 1024);
}

/* A cheap part (10 ns a key) grows to the bound, and a preempted step halves it at most. */
static void test_fast_part_grows_to_max(void **state)
{
	struct serve_pace p;
	size_t k;

	(void)state;
	serve_pace_init(&p, MS / 2, 32, 1024, 8192);
	for (int i = 0; i < 10; i++) {
		k = serve_pace_keys(&p, 0);
		serve_pace_done(&p, 0, k, (int64_t)k * 10);
	}
	assert_int_equal(serve_pace_keys(&p, 0), 8192);
	serve_pace_done(&p, 0, 8192, 1000 * (int64_t)MS); /* a second away from the core */
	assert_int_equal(serve_pace_keys(&p, 0), 4098); /* (8192 + 4.1) / 2 */
	for (int i = 0; i < 10; i++)
		serve_pace_done(&p, 0, serve_pace_keys(&p, 0), 1000 * (int64_t)MS);
	assert_int_equal(serve_pace_keys(&p, 0), 32);
}

/* Nonsense in: nothing out of bounds, no division by zero. */
static void test_bounds_and_nonsense(void **state)
{
	struct serve_pace p;

	(void)state;
	serve_pace_init(&p, 0, 0, 5000, 16);
	assert_int_equal(p.min_keys, 1);
	assert_int_equal(serve_pace_keys(&p, 1), 16);
	serve_pace_done(&p, 1, 16, 0);
	assert_int_equal(serve_pace_keys(&p, 1), 16);
	serve_pace_done(&p, 1, 0, 5);  /* no keys: ignored */
	serve_pace_done(&p, 99, 4, 5); /* no such part: ignored */
	assert_int_equal(serve_pace_keys(&p, 1), 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_starts_at_start_keys),
		cmocka_unit_test(test_slow_part_shrinks),
		cmocka_unit_test(test_fast_part_grows_to_max),
		cmocka_unit_test(test_bounds_and_nonsense),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
