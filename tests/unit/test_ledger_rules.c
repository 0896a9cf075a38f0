/* test_ledger_rules.c — the sender's pure rules: VERP tokens (signed, tamper-evident) and
 * the backoff of deferred deliveries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "retry.h"
#include "verp.h"

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";

static void test_verp_round_trip(void **state)
{
	struct verp_ids ids = {7, 123456, 9876543210LL}, got = {0};
	char addr[VERP_ADDRESS_SIZE];
	struct err e = {0};

	(void)state;
	assert_int_equal(verp_address(key, 32, &ids, "bounces.example.test", addr, sizeof addr, &e), 0);
	assert_true(strncmp(addr, "bounces+", 8) == 0);
	assert_non_null(strstr(addr, "@bounces.example.test"));
	assert_true(strchr(addr, '@') - addr <= 64); /* the local part fits RFC 5321 */
	assert_int_equal(verp_parse(key, 32, addr, &got, &e), 0);
	assert_int_equal(got.campaign_id, 7);
	assert_int_equal(got.recipient_id, 123456);
	assert_int_equal(got.delivery_id, 9876543210LL);
}

/* A signer writes the very address verp_address writes, and it parses back. */
static void test_verp_signer_same_address(void **state)
{
	struct verp_signer *v = verp_signer_new(key, 32);
	static const struct verp_ids ids[] = {{1, 2, 3}, {7, 123456, 9876543210LL},
					      {0, 0, 0}, {99, 1, 36}};
	char a[VERP_ADDRESS_SIZE], b[VERP_ADDRESS_SIZE];
	struct verp_ids got;
	struct err e = {0};

	(void)state;
	assert_non_null(v);
	for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
		assert_int_equal(verp_address(key, 32, &ids[i], "b.example.test", a, sizeof a, &e), 0);
		assert_int_equal(verp_signer_address(v, &ids[i], "b.example.test", b, sizeof b, &e), 0);
		assert_string_equal(b, a);
		assert_int_equal(verp_parse(key, 32, b, &got, &e), 0);
		assert_int_equal(got.delivery_id, ids[i].delivery_id);
	}
	verp_signer_free(v);
	verp_signer_free(NULL);
}

static void test_verp_survives_upper_case(void **state)
{
	struct verp_ids ids = {1, 2, 3}, got = {0};
	char addr[VERP_ADDRESS_SIZE];
	struct err e = {0};

	(void)state;
	verp_address(key, 32, &ids, "b.example.test", addr, sizeof addr, &e);
	for (char *p = addr; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(verp_parse(key, 32, addr, &got, &e), 0);
	assert_int_equal(got.delivery_id, 3);
}

static void test_verp_forged_or_mangled(void **state)
{
	struct verp_ids ids = {1, 2, 3}, got = {0};
	char addr[VERP_ADDRESS_SIZE], forged[VERP_ADDRESS_SIZE];
	struct err e = {0};
	char *dot;

	(void)state;
	verp_address(key, 32, &ids, "b.example.test", addr, sizeof addr, &e);
	/* Another delivery id with the same MAC: the signature no longer matches. */
	snprintf(forged, sizeof forged, "bounces+4%s", addr + 9);
	assert_int_equal(verp_parse(key, 32, forged, &got, &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "does not match"));
	err_clear(&e);
	/* Another key cannot read it either. */
	assert_int_equal(verp_parse((const unsigned char *)"another key, 32 bytes long......",
				    32, addr, &got, &e), ERR_DATA);
	err_clear(&e);
	dot = strrchr(addr, '.');
	*dot = '\0'; /* cut the token short */
	assert_int_equal(verp_parse(key, 32, "bounces+1.2@b.example.test", &got, &e), ERR_DATA);
	err_clear(&e);
	assert_int_equal(verp_parse(key, 32, "postmaster@b.example.test", &got, &e), ERR_DATA);
	assert_non_null(strstr(e.msg, "not a VERP address"));
}

static void test_backoff_doubles_and_caps(void **state)
{
	const int64_t now = 1000000, far = now + 100 * 86400;
	const uint32_t middle = 0x80000000u; /* no jitter */

	(void)state;
	assert_int_equal(retry_next_attempt(1, now, far, middle), now + 300);
	assert_int_equal(retry_next_attempt(2, now, far, middle), now + 600);
	assert_int_equal(retry_next_attempt(3, now, far, middle), now + 1200);
	assert_int_equal(retry_next_attempt(10, now, far, middle), now + RETRY_MAX_SECONDS);
	assert_int_equal(retry_next_attempt(60, now, far, middle), now + RETRY_MAX_SECONDS);
}

static void test_backoff_jitter_bounds(void **state)
{
	const int64_t now = 0, far = 1 << 30;

	(void)state;
	/* jitter spans -20% .. +20% of the delay */
	assert_int_equal(retry_next_attempt(1, now, far, 0), 300 - 60);
	assert_int_equal(retry_next_attempt(1, now, far, 0xffffffffu), 300 + 59);
}

static void test_backoff_expires_at_the_cutoff(void **state)
{
	(void)state;
	assert_int_equal(retry_next_attempt(1, 1000, 1000 + 200, 0x80000000u), 0);
	assert_int_equal(retry_next_attempt(1, 1000, 1000 + 300, 0x80000000u), 0);
	assert_int_equal(retry_next_attempt(1, 1000, 1000 + 301, 0x80000000u), 1300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verp_round_trip),
		cmocka_unit_test(test_verp_signer_same_address),
		cmocka_unit_test(test_verp_survives_upper_case),
		cmocka_unit_test(test_verp_forged_or_mangled),
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_backoff_jitter_bounds),
		cmocka_unit_test(test_backoff_expires_at_the_cutoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
