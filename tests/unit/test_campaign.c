/* test_campaign.c — the worked example's segments: matching, completion, safe updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "util.h"

static struct campaign *example;

static int setup(void **state)
{
	const char *src = getenv("CUTOFF_SOURCE_DIR");
	char *path = xasprintf("%s/campaigns/messenger-upgrade.cfg", src ? src : ".");
	struct err e = {0};
	int rc = campaign_load_file(&example, path, NULL, &e);

	(void)state;
	if (rc != 0)
		fprintf(stderr, "loading %s: %s\n", path, e.msg);
	free(path);
	return rc;
}

static int teardown(void **state)
{
	(void)state;
	campaign_free(example);
	return 0;
}

static const char *segment_of(const char *client, const char *version, const char *platform,
			      const char *os)
{
	struct recipient_fields r = {client, version, platform, os};
	const struct segment *g = campaign_match(example, &r);

	return g ? g->name : "(none)";
}

static void test_dates_in_the_campaign_zone(void **state)
{
	(void)state;
	/* 2003-08-18 09:00 PDT = 16:00Z; 2003-09-18 00:00 PDT = 07:00Z; 2003-10-15 00:00 PDT. */
	assert_int_equal(example->announce_at, 1061222400);
	assert_int_equal(example->reminder_start_at, 1063868400);
	assert_int_equal(example->cutoff_at, 1066201200);
	/* The final notice is three local days before the cutoff: 2003-10-12 00:00 PDT. */
	assert_int_equal(example->final_notice_at, 1066201200 - 3 * 86400);
	assert_string_equal(example->from_addr, "messenger-upgrade@msn.example.test");
	assert_string_equal(example->from_name, "MSN Messenger Team");
	assert_int_equal(example->n_segments, 7);
}

static void test_segments_of_the_worked_example(void **state)
{
	(void)state;
	assert_string_equal(segment_of("msn-messenger", "4.6", "windows", "XP"), "msn-windows");
	assert_string_equal(segment_of("MSN-Messenger", "4.7.0041", "Windows", "98"), "msn-windows");
	assert_string_equal(segment_of("msn-messenger", "5.0", "windows", "XP"), "(none)");
	assert_string_equal(segment_of("msn-messenger", "6.0", "windows", "XP"), "(none)");
	assert_string_equal(segment_of("windows-messenger", "4.7.300", "windows", "XP"),
			    "windows-messenger");
	assert_string_equal(segment_of("windows-messenger", "4.7.2009", "windows", "XP"), "(none)");
	assert_string_equal(segment_of("msn-messenger", "2.5", "mac", "9.2.2"), "mac-os9");
	assert_string_equal(segment_of("msn-messenger", "3.1.1", "mac", "10.2.6"), "mac-osx");
	assert_string_equal(segment_of("msn-messenger", "3.5", "mac", "10.2.6"), "(none)");
	assert_string_equal(segment_of("msn-messenger", "2.0", "mac", "8.6"), "mac-os8");
	assert_string_equal(segment_of("msn-messenger", "1.0", "msn-companion", NULL), "msn-companion");
	assert_string_equal(segment_of("trillian", "2.0", "windows", "XP"), "third-party");
	assert_string_equal(segment_of("Gaim", "0.66", "linux", NULL), "third-party");
	/* No version: a segment with a version range cannot match it. */
	assert_string_equal(segment_of("msn-messenger", NULL, "windows", "XP"), "(none)");
	assert_string_equal(segment_of("msn-messenger", "junk", "windows", "XP"), "(none)");
}

static void test_mac_os9_waits_a_week(void **state)
{
	const struct segment *g = campaign_segment(example, "mac-os9");

	(void)state;
	assert_non_null(g);
	assert_int_equal(g->send_at, example->announce_at + 7 * 86400);
	assert_int_equal(campaign_segment(example, "msn-windows")->send_at, example->announce_at);
}

static void test_completion(void **state)
{
	const struct segment *win = campaign_segment(example, "msn-windows");
	const struct segment *mac8 = campaign_segment(example, "mac-os8");

	(void)state;
	assert_true(segment_completed_by(win, "5.0"));
	assert_true(segment_completed_by(win, "6.0.0602"));
	assert_false(segment_completed_by(win, "4.7"));
	assert_false(segment_completed_by(win, NULL));
	assert_false(segment_completed_by(mac8, "99.0")); /* discontinued: never complete */
}

static struct campaign *variant(const char *from, const char *to)
{
	char *text = xstrdup(example->source_text);
	char *at = strstr(text, from);
	struct campaign *c = NULL;
	struct err e = {0};
	char *changed;

	assert_non_null(at);
	*at = '\0';
	changed = xasprintf("%s%s%s", text, to, at + strlen(from));
	if (campaign_load_text(&c, changed, "variant.cfg", example->templates_dir, &e) != 0)
		fail_msg("variant did not load: %s", e.msg);
	free(text);
	free(changed);
	return c;
}

static void test_safe_and_unsafe_updates(void **state)
{
	struct campaign *later = variant("cutoff = \"2003-10-15\"", "cutoff = \"2003-10-22\"");
	struct campaign *earlier = variant("cutoff = \"2003-10-15\"", "cutoff = \"2003-10-01\"");
	struct campaign *retarget = variant("target_version = \"5.0\"", "target_version = \"6.0\"");
	struct campaign *title = variant("title = \"MSN", "title = \"The MSN");
	struct err e = {0};

	(void)state;
	assert_int_equal(campaign_check_update(example, later, &e), 0);
	assert_int_equal(campaign_check_update(example, title, &e), 0);
	assert_int_equal(campaign_check_update(example, earlier, &e), ERR_REFUSED);
	assert_non_null(strstr(e.msg, "cutoff moved earlier"));
	err_clear(&e);
	assert_int_equal(campaign_check_update(example, retarget, &e), ERR_REFUSED);
	assert_non_null(strstr(e.msg, "segment msn-windows: target_version"));
	campaign_free(later), campaign_free(earlier), campaign_free(retarget), campaign_free(title);
}

static void test_problems_reported_together(void **state)
{
	const char *text = "name = \"Bad Name\";\ntitle = 3;\nfrom = \"no address\";\n"
			   "timezone = \"Europe/Nowhere\";\nannounce = \"2003-13-01\";\n"
			   "reminder_start = \"2003-09-18\";\ncutoff = \"2003-10-15\";\n"
			   "upgrade_url = \"ftp://x\";\nsegments = ();\n";
	struct campaign *c = NULL;
	struct err e = {0};

	(void)state;
	assert_int_equal(campaign_load_text(&c, text, "bad.cfg", "/tmp", &e), ERR_CONFIG);
	assert_null(c);
	assert_non_null(strstr(e.msg, "bad.cfg:1: name 'Bad Name' must be lower-case"));
	assert_non_null(strstr(e.msg, "bad.cfg:2: 'title' must be a string"));
	assert_non_null(strstr(e.msg, "bad.cfg:3: from: 'no address' is not a usable address"));
	assert_non_null(strstr(e.msg, "bad.cfg:4: timezone:"));
	assert_non_null(strstr(e.msg, "bad.cfg:8: upgrade_url must be an http(s) URL"));
	assert_non_null(strstr(e.msg, "segments is empty"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dates_in_the_campaign_zone),
		cmocka_unit_test(test_segments_of_the_worked_example),
		cmocka_unit_test(test_mac_os9_waits_a_week),
		cmocka_unit_test(test_completion),
		cmocka_unit_test(test_safe_and_unsafe_updates),
		cmocka_unit_test(test_problems_reported_together),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
