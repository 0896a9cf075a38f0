/* test_render.c — templates per locale with fallback, localized dates across time zones and DST,
 * the check that finds every template problem with file:line:col, and whole messages parsed back
 * with GMime (hostile names and attributes included). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gmime/gmime.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "campaign.h"
#include "diag.h"
#include "locale_dates.h"
#include "mime.h"
#include "render.h"
#include "util.h"

/* 2003-08-18 09:00 PDT, the announcement; 2003-10-15 00:00 PDT, the cutoff. */
#define ANNOUNCE INT64_C(1061222400)
#define CUTOFF INT64_C(1066201200)

/* ---- a scratch template tree ----------------------------------------------------------------- */

static char scratch[64];

static void write_file(const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", scratch, rel);
	FILE *f;

	for (char *p = path + strlen(scratch) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(path);
}

static void remove_file(const char *rel)
{
	char *path = xasprintf("%s/%s", scratch, rel);

	unlink(path);
	free(path);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static const char campaign_text[] =
	"name = \"t\";\n"
	"title = \"Test campaign\";\n"
	"from = \"Test Team <team@test.example.test>\";\n"
	"reply_to = \"Support <support@test.example.test>\";\n"
	"timezone = \"America/Los_Angeles\";\n"
	"announce = \"2003-08-18 09:00\";\n"
	"reminder_start = \"2003-09-18\";\n"
	"cutoff = \"2003-10-15\";\n"
	"upgrade_url = \"https://test.example.test/upgrade\";\n"
	"list_unsubscribe = true;\n"
	"unsubscribe_url = \"https://test.example.test/unsubscribe\";\n"
	"client_names = { c1 = \"Client One\"; c2 = \"Client Two\"; };\n"
	"attributes = [\"country\"];\n"
	"segments = (\n"
	"  { name = \"old\"; match = { client = \"c1\"; version_below = \"5.0\"; };\n"
	"    template = \"upgrade\"; target_version = \"5.0\"; },\n"
	"  { name = \"gone\"; match = { client = \"c2\"; }; template = \"gone\"; discontinued = true; }\n"
	");\n";

/* The default tree: English upgrade (with html) and gone; pt and de versions; stray partials. */
static void tree_write(void)
{
	write_file("upgrade/subject.mustache", "Upgrade {{client_name}} before {{cutoff_date}}\n");
	write_file("upgrade/text.mustache", "{{> greeting}}\nCutoff: {{cutoff_date}} {{cutoff_time}}"
		   "\nDays: {{days_left}}\nCountry: {{attributes.country}}\n{{> footer}}\n");
	write_file("upgrade/html.mustache", "<p>{{> greeting}}</p><p>{{cutoff_date}}</p>\n");
	write_file("upgrade/login.mustache", "Login {{days_left}} {{target_version}}\n");
	write_file("gone/subject.mustache", "{{client_name}} ends {{cutoff_date}}\n");
	write_file("gone/text.mustache", "{{> greeting}}\n{{#segment}}{{name}} {{discontinued}}"
		   "{{/segment}}\n");
	write_file("gone/login.mustache", "Gone {{cutoff_date}}\n");
	write_file("partials/greeting.mustache",
		   "{{#recipient.name}}Hello {{recipient.name}},{{/recipient.name}}"
		   "{{^recipient.name}}Hello,{{/recipient.name}}\n");
	write_file("partials/footer.mustache", "-- en footer\n");
	/* pt: the upgrade template without html; pt-BR: a footer only (never used by pt). */
	write_file("pt/upgrade/subject.mustache", "Atualize {{client_name}} antes de {{cutoff_date}}\n");
	write_file("pt/upgrade/text.mustache", "{{> greeting}}\n{{cutoff_date}}\n{{> footer}}\n");
	write_file("pt/upgrade/login.mustache", "pt login\n");
	write_file("pt-BR/partials/footer.mustache", "-- pt-BR footer\n");
	/* de: the whole upgrade template and its own greeting; the footer falls back. */
	write_file("de/upgrade/subject.mustache", "Bitte {{client_name}} aktualisieren\n");
	write_file("de/upgrade/text.mustache", "{{> greeting}}\n{{cutoff_date}}\n{{> footer}}\n");
	write_file("de/upgrade/html.mustache", "<p>{{> greeting}}</p>\n");
	write_file("de/upgrade/login.mustache", "de login\n");
	write_file("de/partials/greeting.mustache", "Hallo {{recipient.name}},\n");
	/* fr: partials only, so French recipients get the English templates and partials. */
	write_file("fr/partials/footer.mustache", "-- fr footer\n");
}

static struct campaign *campaign_new(void)
{
	struct campaign *c = NULL;
	struct err e = {0};

	if (campaign_load_text(&c, campaign_text, "t.cfg", scratch, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	return c;
}

static int setup(void **state)
{
	(void)state;
	snprintf(scratch, sizeof scratch, "/tmp/test_render.XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	tree_write();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A recipient of segment "old" unless the test changes it. */
static struct store_recipient recipient_base(void)
{
	struct store_recipient r = {
		.id = 42,
		.campaign_id = 1,
		.user_id = "u42",
		.email = "alice@users.example.test",
		.name = "Alice Example",
		.locale = "en",
		.timezone = "America/Los_Angeles",
		.client = "c1",
		.version = "4.6",
		.platform = "windows",
		.os = "XP",
		.attrs = "{\"country\":\"FR\",\"undeclared\":\"x\"}",
		.segment_id = 1,
		.state = "pending",
	};
	return r;
}

/* ---- locale_dates -------------------------------------------------------------------------- */

static void assert_date(const char *tag, int y, int m, int d, const char *want)
{
	struct locale_civil c = {y, m, d, locale_weekday(y, m, d), 0, 0};
	char buf[RENDER_DATE_SIZE];

	assert_true(locale_dates_format_date(locale_dates_find(tag), &c, buf, sizeof buf) > 0);
	assert_string_equal(buf, want);
}

static void test_dates_per_language(void **state)
{
	(void)state;
	assert_date("en", 2003, 10, 15, "Wednesday, 15 October 2003");
	assert_date("en-GB", 2003, 10, 15, "Wednesday, 15 October 2003");
	assert_date("en-US", 2003, 10, 15, "Wednesday, October 15, 2003");
	assert_date("en_us", 2003, 10, 15, "Wednesday, October 15, 2003");
	assert_date("fr", 2003, 10, 15, "mercredi 15 octobre 2003");
	assert_date("fr-CA", 2003, 8, 1, "vendredi 1 août 2003");
	assert_date("de-DE", 2003, 10, 15, "Mittwoch, 15. Oktober 2003");
	assert_date("pt-BR", 2003, 10, 15, "quarta-feira, 15 de outubro de 2003");
	assert_date("pt", 2003, 3, 9, "domingo, 9 de março de 2003");
	assert_date("es-ES", 2003, 10, 15, "miércoles, 15 de octubre de 2003");
	assert_date("it", 2003, 10, 15, "mercoledì 15 ottobre 2003");
	assert_date("nl", 2003, 10, 15, "woensdag 15 oktober 2003");
	assert_date("sv", 2003, 10, 15, "onsdag 15 oktober 2003");
	assert_date("da", 2003, 10, 15, "onsdag den 15. oktober 2003");
	assert_date("no", 2003, 12, 15, "mandag 15. desember 2003");
	assert_date("pl", 2003, 10, 15, "środa, 15 października 2003");
	assert_date("ru", 2003, 10, 15, "среда, 15 октября 2003 г.");
	assert_date("ja-JP", 2003, 10, 15, "2003年10月15日水曜日");
	assert_date("ko", 2003, 10, 15, "2003년 10월 15일 수요일");
	assert_date("zh-Hant-TW", 2003, 10, 15, "2003年10月15日星期三");
	/* Unknown, empty and absent languages are English. */
	assert_date("tlh", 2003, 10, 15, "Wednesday, 15 October 2003");
	assert_date("", 2003, 10, 15, "Wednesday, 15 October 2003");
	assert_date(NULL, 2004, 2, 29, "Sunday, 29 February 2004");
	assert_string_equal(locale_dates_tag(locale_dates_find("pt-PT")), "pt");
	assert_string_equal(locale_dates_tag(locale_dates_find("EN-us")), "en-US");
}

static void test_date_arithmetic_and_bad_dates(void **state)
{
	struct locale_civil bad = {2003, 2, 29, 6, 0, 0}, wrong_day = {2003, 10, 15, 2, 0, 0};
	struct locale_civil ok = {2003, 10, 15, 3, 0, 0};
	char small[8], buf[64];

	(void)state;
	assert_int_equal(locale_days_from_civil(1970, 1, 1), 0);
	assert_int_equal(locale_days_from_civil(2003, 10, 15), 12340);
	assert_int_equal(locale_days_from_civil(1969, 12, 31), -1);
	assert_int_equal(locale_weekday(1970, 1, 1), 4);
	assert_int_equal(locale_weekday(1969, 12, 28), 0);
	assert_int_equal(locale_weekday(2000, 2, 29), 2);
	assert_int_equal(locale_weekday(1, 1, 1), 1);
	assert_int_equal(locale_dates_format_date(locale_dates_find("en"), &bad, buf, sizeof buf), -1);
	assert_string_equal(buf, "");
	assert_int_equal(locale_dates_format_date(locale_dates_find("en"), &wrong_day, buf,
						  sizeof buf), -1);
	assert_int_equal(locale_dates_format_date(locale_dates_find("en"), &ok, small, sizeof small),
			 -1);
	assert_string_equal(small, "");
	assert_true(locale_same_language("pt-BR", "pt"));
	assert_true(locale_same_language("EN_us", "en"));
	assert_false(locale_same_language("en", "es"));
	assert_false(locale_same_language("ptx", "pt"));
	assert_false(locale_same_language(NULL, "pt"));
}

/* ---- dates in time zones and across DST ---------------------------------------------------- */

static void assert_zone_date(int64_t t, const char *tz, const char *tag, const char *date,
			     const char *time)
{
	char buf[RENDER_DATE_SIZE];
	struct err e = {0};

	if (render_format_date(t, tz, tag, buf, sizeof buf, &e) != 0)
		fail_msg("%s: %s", tz, e.msg);
	assert_string_equal(buf, date);
	assert_int_equal(render_format_time(t, tz, tag, buf, sizeof buf, &e), 0);
	assert_string_equal(buf, time);
}

static void test_dates_in_time_zones(void **state)
{
	char buf[RENDER_DATE_SIZE];
	struct err e = {0};

	(void)state;
	/* The cutoff, 2003-10-15 00:00 PDT = 07:00Z, is the 14th in Honolulu. */
	assert_zone_date(CUTOFF, "America/Los_Angeles", "en", "Wednesday, 15 October 2003", "00:00");
	assert_zone_date(CUTOFF, "America/Los_Angeles", "en-US", "Wednesday, October 15, 2003",
			 "12:00 AM");
	assert_zone_date(CUTOFF, "Pacific/Honolulu", "en", "Tuesday, 14 October 2003", "21:00");
	assert_zone_date(CUTOFF, "Europe/Paris", "fr", "mercredi 15 octobre 2003", "09:00");
	assert_zone_date(CUTOFF, "Asia/Tokyo", "ja", "2003年10月15日水曜日", "16:00");
	assert_zone_date(CUTOFF, "Asia/Seoul", "ko", "2003년 10월 15일 수요일", "오후 4:00");
	assert_zone_date(CUTOFF, "Pacific/Kiritimati", "de", "Mittwoch, 15. Oktober 2003", "21:00");
	assert_zone_date(CUTOFF, "UTC", "en-US", "Wednesday, October 15, 2003", "7:00 AM");
	/* Fall back in Los Angeles: 08:30Z and 09:30Z are both 01:30, PDT then PST. */
	assert_zone_date(INT64_C(1067157000), "America/Los_Angeles", "en",
			 "Sunday, 26 October 2003", "01:30");
	assert_zone_date(INT64_C(1067160600), "America/Los_Angeles", "en",
			 "Sunday, 26 October 2003", "01:30");
	/* Spring forward in Paris, 2003-03-30: 00:59Z is 01:59 CET, 01:00Z is 03:00 CEST. */
	assert_zone_date(INT64_C(1048985940), "Europe/Paris", "fr", "dimanche 30 mars 2003",
			 "01:59");
	assert_zone_date(INT64_C(1048986000), "Europe/Paris", "fr", "dimanche 30 mars 2003",
			 "03:00");
	/* Sao Paulo had DST in the southern summer of 2003: -02:00 on 2003-10-20 (from the 19th). */
	assert_zone_date(INT64_C(1066615200), "America/Sao_Paulo", "pt-BR",
			 "segunda-feira, 20 de outubro de 2003", "00:00");
	assert_int_equal(render_format_date(CUTOFF, "Mars/Olympus_Mons", "en", buf, sizeof buf, &e),
			 ERR_DATA);
	assert_non_null(strstr(e.msg, "Mars/Olympus_Mons"));
	assert_string_equal(buf, "");
}

static void assert_days(int64_t now, int64_t cutoff, const char *tz, int64_t want)
{
	struct err e = {0};
	int64_t got = -1;

	if (render_days_left(now, cutoff, tz, &got, &e) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(got, want);
}

static void test_days_left(void **state)
{
	struct err e = {0};
	int64_t got;

	(void)state;
	assert_days(ANNOUNCE, CUTOFF, "America/Los_Angeles", 58);
	/* 2003-10-14 23:59:59 PDT: one day; at the cutoff and after: none. */
	assert_days(CUTOFF - 1, CUTOFF, "America/Los_Angeles", 1);
	assert_days(CUTOFF, CUTOFF, "America/Los_Angeles", 0);
	assert_days(CUTOFF + 86400 * 30, CUTOFF, "America/Los_Angeles", 0);
	/* In Honolulu the cutoff falls on the evening of the 14th: that morning is day 0. */
	assert_days(CUTOFF - 6 * 3600, CUTOFF, "Pacific/Honolulu", 0);
	assert_days(CUTOFF - 30 * 3600, CUTOFF, "Pacific/Honolulu", 1);
	/* Across the fall-back night (a 25-hour day): 2003-10-25 12:00 PDT to 2003-10-27 00:00
	 * PST is two local days, not 60 hours rounded. */
	assert_days(INT64_C(1067108400), INT64_C(1067241600), "America/Los_Angeles", 2);
	/* Across spring-forward (a 23-hour day): 2003-04-05 23:30 PST to 2003-04-07 00:00 PDT. */
	assert_days(INT64_C(1049614200), INT64_C(1049698800), "America/Los_Angeles", 2);
	assert_int_equal(render_days_left(ANNOUNCE, CUTOFF, "No/Such_Zone", &got, &e), ERR_DATA);
}

/* ---- locale fallback ----------------------------------------------------------------------- */

static struct render_templates *templates_ok(const struct campaign *c)
{
	struct render_templates *t = NULL;
	struct err e = {0};

	if (render_templates_load(&t, c, &e) != 0)
		fail_msg("render_templates_load: %s", e.msg);
	return t;
}

static void test_locale_fallback(void **state)
{
	struct campaign *c = campaign_new();
	struct render_templates *t = templates_ok(c);

	(void)state;
	assert_string_equal(render_templates_locale(t, "upgrade", "pt-BR"), "pt");
	assert_string_equal(render_templates_locale(t, "upgrade", "PT_br"), "pt");
	assert_string_equal(render_templates_locale(t, "upgrade", "pt"), "pt");
	assert_string_equal(render_templates_locale(t, "upgrade", "de-AT"), "de");
	assert_string_equal(render_templates_locale(t, "upgrade", "fr"), "en");
	assert_string_equal(render_templates_locale(t, "upgrade", "ja-JP"), "en");
	assert_string_equal(render_templates_locale(t, "upgrade", NULL), "en");
	assert_string_equal(render_templates_locale(t, "upgrade", ""), "en");
	/* gone has no locale versions at all. */
	assert_string_equal(render_templates_locale(t, "gone", "de"), "en");
	render_templates_free(t);
	campaign_free(c);
}

static char locale_used[32];

/* Renders r's message with the tree's campaign; fills res. */
static void render_ok(const struct campaign *c, const struct store_recipient *r, size_t segment,
		      const struct render_options *o, struct render_result *res)
{
	struct render_templates *t = templates_ok(c);
	struct render *rr = render_new(t, o);
	struct render_request q = {r, &c->segments[segment], ANNOUNCE, "d-7", NULL, NULL, NULL};
	struct err e = {0};

	if (render_message(rr, &q, res, &e) != 0)
		fail_msg("render_message: %s", e.msg);
	if (render_login(rr, &q, res, &e) != 0)
		fail_msg("render_login: %s", e.msg);
	/* res->locale belongs to the templates freed below: keep a copy. */
	snprintf(locale_used, sizeof locale_used, "%s", res->locale);
	res->locale = locale_used;
	render_free(rr);
	render_templates_free(t);
}

static void test_fallback_per_template_folder(void **state)
{
	struct campaign *c = campaign_new();
	struct store_recipient r = recipient_base();
	struct render_result res;

	(void)state;
	render_result_init(&res);
	/* pt-BR: pt/upgrade; its footer comes from partials/ (pt-BR/partials is not pt's);
	 * no html in pt/, so text only although the default has html; dates in pt-BR. */
	r.locale = "pt-BR";
	r.timezone = "America/Sao_Paulo";
	render_ok(c, &r, 0, NULL, &res);
	assert_string_equal(res.locale, "pt");
	assert_string_equal(res.part[RENDER_SUBJECT].data,
			    "Atualize Client One antes de quarta-feira, 15 de outubro de 2003");
	assert_string_equal(res.part[RENDER_TEXT].data, "Hello Alice Example,\n"
			    "quarta-feira, 15 de outubro de 2003\n-- en footer\n");
	assert_false(res.has_html);
	assert_null(strstr(res.message.data, "text/html"));
	assert_string_equal(res.part[RENDER_LOGIN].data, "pt login");
	/* de-AT: de/upgrade with de's greeting and the default footer; German date. */
	r.locale = "de-AT";
	r.timezone = "Europe/Vienna";
	render_ok(c, &r, 0, NULL, &res);
	assert_string_equal(res.locale, "de");
	assert_string_equal(res.part[RENDER_TEXT].data,
			    "Hallo Alice Example,\nMittwoch, 15. Oktober 2003\n-- en footer\n");
	assert_true(res.has_html);
	/* fr: the English templates, English partials and an English date (never half French). */
	r.locale = "fr-FR";
	r.timezone = "Europe/Paris";
	render_ok(c, &r, 0, NULL, &res);
	assert_string_equal(res.locale, "en");
	assert_string_equal(res.part[RENDER_SUBJECT].data,
			    "Upgrade Client One before Wednesday, 15 October 2003");
	assert_non_null(strstr(res.part[RENDER_TEXT].data, "-- en footer"));
	/* en-US reading the English templates gets the US form; no time zone: the campaign's. */
	r.locale = "en-US";
	r.timezone = NULL;
	render_ok(c, &r, 0, NULL, &res);
	assert_string_equal(res.part[RENDER_TEXT].data,
			    "Hello Alice Example,\nCutoff: Wednesday, October 15, 2003 12:00 AM\n"
			    "Days: 58\nCountry: FR\n-- en footer\n");
	assert_string_equal(res.part[RENDER_LOGIN].data, "Login 58 5.0");
	/* No name: the inverted section; the recipient's zone moves the date. */
	r.name = NULL;
	r.locale = NULL;
	r.timezone = "Pacific/Honolulu";
	render_ok(c, &r, 0, NULL, &res);
	assert_string_equal(res.part[RENDER_TEXT].data,
			    "Hello,\nCutoff: Tuesday, 14 October 2003 21:00\n"
			    "Days: 57\nCountry: FR\n-- en footer\n");
	render_result_free(&res);
	campaign_free(c);
}

/* ---- the check ----------------------------------------------------------------------------- */

/* Runs render_check_campaign on the scratch tree; returns the problems, one per line. */
static char *check_text(int *count)
{
	struct campaign *c = campaign_new();
	struct diag d;
	struct err e = {0};
	char *text;

	diag_init(&d);
	render_check_campaign(c, &d);
	*count = d.count;
	diag_to_err(&d, ERR_CONFIG, &e);
	text = xstrdup(e.msg);
	diag_free(&d);
	campaign_free(c);
	return text;
}

static void assert_has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("expected to find\n  %s\nin\n%s", want, text);
}

static void test_check_accepts_good_templates(void **state)
{
	int n;
	char *text = check_text(&n);

	(void)state;
	if (n != 0)
		fail_msg("unexpected problems:\n%s", text);
	free(text);
}

static void test_check_reports_every_problem(void **state)
{
	char *text, *path;
	int n;

	(void)state;
	write_file("upgrade/text.mustache",
		   "{{> greeting}}\n"
		   "Cutoff: {{cutof_date}}\n"                                /* 2:9 typo */
		   "{{#recipient}}{{name}} {{nme}}{{/recipient}}\n"          /* 3:24 in scope */
		   "{{#segment}}{{target_version}}{{/segment}}\n"            /* fine */
		   "{{recipient}}\n"                                         /* 5:1 a group */
		   "{{attributes.colour}} {{> missing-partial}}\n");         /* 6:1, 6:23 */
	write_file("upgrade/html.mustache", "<p>\n{{#campaign}}{{title}}\n");   /* unclosed */
	remove_file("de/upgrade/login.mustache");
	write_file("partials/footer.mustache", "-- {{recipient.phone}}\n");    /* in a partial */
	text = check_text(&n);
	path = xasprintf("%s/upgrade/text.mustache", scratch);
	assert_has(text, "upgrade/text.mustache:2:9: unknown variable 'cutof_date'; did you mean"
			 " 'cutoff_date'?");
	assert_has(text, "upgrade/text.mustache:3:24: unknown variable 'nme'");
	assert_has(text, "upgrade/text.mustache:5:1: a group of variables cannot be written out:"
			 " 'recipient'");
	assert_has(text, "upgrade/text.mustache:6:1: unknown variable 'attributes.colour'; add"
			 " 'colour' to the campaign's attributes list");
	assert_has(text, "upgrade/text.mustache:6:23: no partial 'missing-partial'");
	assert_has(text, "upgrade/html.mustache:2:1:");
	assert_has(text, "de/upgrade/login.mustache: missing: template de/upgrade needs subject,"
			 " text and login");
	assert_has(text, "partials/footer.mustache:1:4: unknown variable 'recipient.phone'");
	assert_null(strstr(text, "'target_version'"));
	assert_null(strstr(text, "'name'"));
	/* Each problem once, although the footer is included by three templates. */
	assert_int_equal(n, 8);
	/* Loading for sending refuses the same templates. */
	{
		struct campaign *c = campaign_new();
		struct render_templates *t = NULL;
		struct err e = {0};
		assert_int_equal(render_templates_load(&t, c, &e), ERR_CONFIG);
		assert_null(t);
		assert_has(e.msg, "campaign t: the templates have problems");
		campaign_free(c);
	}
	free(path);
	free(text);
	tree_write();
	write_file("de/upgrade/login.mustache", "de login\n");
}

static void test_check_renders_a_sample(void **state)
{
	char *text;
	int n;

	(void)state;
	/* Names are fine; only rendering and composing show these. */
	write_file("gone/subject.mustache", "Read this =?utf-8?q?x?=\n");
	write_file("upgrade/subject.mustache", "Two\n{{! a comment }}lines\n");
	text = check_text(&n);
	assert_has(text, "gone: segment gone, a full sample recipient: recipient sample-user: the"
			 " subject contains \"=?\"");
	assert_has(text, "upgrade: segment old, a full sample recipient: recipient sample-user:"
			 " the subject contains a line break");
	free(text);
	tree_write();
}

static void test_check_the_worked_example(void **state)
{
	const char *src = getenv("CUTOFF_SOURCE_DIR");
	char *path = xasprintf("%s/campaigns/messenger-upgrade.cfg", src ? src : ".");
	struct campaign *c = NULL;
	struct err e = {0};
	struct diag d;

	(void)state;
	if (campaign_load_file(&c, path, NULL, &e) != 0)
		fail_msg("%s: %s", path, e.msg);
	diag_init(&d);
	if (render_check_campaign(c, &d) != 0) {
		diag_to_err(&d, ERR_CONFIG, &e);
		fail_msg("the worked example's templates: %s", e.msg);
	}
	diag_free(&d);
	campaign_free(c);
	free(path);
}

/* ---- whole messages ------------------------------------------------------------------------ */

static GMimeMessage *parse_back(const struct buf *b)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(b->data, b->len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);

	g_object_unref(parser);
	g_object_unref(stream);
	assert_non_null(msg);
	return msg;
}

static void assert_mime_type(GMimeObject *part, const char *want)
{
	char *type = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(part));

	assert_string_equal(type, want);
	g_free(type);
}

static const char *header(GMimeMessage *m, const char *name)
{
	return g_mime_object_get_header(GMIME_OBJECT(m), name);
}

/* s with every run of white space made one space, in out (256 bytes). */
static const char *squeeze(const char *s, char *out)
{
	size_t k = 0;

	for (; *s && k < 255; s++) {
		bool ws = *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n';
		if (!ws)
			out[k++] = *s;
		else if (k > 0 && out[k - 1] != ' ')
			out[k++] = ' ';
	}
	out[k] = '\0';
	return out;
}

static void test_message_headers_parsed_with_gmime(void **state)
{
	static const unsigned char secret[] = "0123456789abcdef0123";
	struct render_options o = {secret, sizeof secret - 1, false};
	struct campaign *c = campaign_new();
	struct store_recipient r = recipient_base();
	struct render_result res;
	GMimeMessage *m;
	InternetAddressList *to;
	char token[RENDER_TOKEN_LEN + 1], *want, name[256];
	struct err e = {0};

	(void)state;
	render_result_init(&res);
	r.name = "José \"Pepe\" <pepe@evil.example.test>, Bcc: x@evil.example.test";
	render_ok(c, &r, 0, &o, &res);
	m = parse_back(&res.message);
	assert_string_equal(header(m, "Subject"),
			    "Upgrade Client One before Wednesday, 15 October 2003");
	assert_string_equal(header(m, "From"), "Test Team <team@test.example.test>");
	assert_string_equal(header(m, "Reply-To"), "Support <support@test.example.test>");
	to = g_mime_message_get_to(m);
	assert_int_equal(internet_address_list_length(to), 1);
	/* Folding may put a line break between an encoded word and the quoted rest: unfolded
	 * it is white space, which GMime's parser keeps as it was (Python's makes it a space). */
	assert_string_equal(squeeze(internet_address_get_name(
				    internet_address_list_get_address(to, 0)), name),
			    r.name);
	assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(
				    internet_address_list_get_address(to, 0))),
			    "alice@users.example.test");
	assert_null(header(m, "Bcc"));
	assert_string_equal(header(m, "Auto-Submitted"), "auto-generated");
	assert_string_equal(header(m, "X-Cutoff-Campaign"), "t");
	assert_string_equal(header(m, "X-Cutoff-Recipient"), "u42");
	assert_string_equal(header(m, "X-Cutoff-Delivery"), "d-7");
	assert_string_equal(g_mime_message_get_message_id(m), res.message_id);
	assert_true(str_ends_with(res.message_id, "@test.example.test"));
	assert_true(str_starts_with(res.message_id, "20030818160000."));
	assert_non_null(g_mime_message_get_date(m));
	assert_int_equal(g_date_time_to_unix(g_mime_message_get_date(m)), ANNOUNCE);
	assert_int_equal(render_unsubscribe_token(secret, sizeof secret - 1, "t", 42, token, &e), 0);
	assert_int_equal(strlen(token), RENDER_TOKEN_LEN);
	want = xasprintf("<https://test.example.test/unsubscribe?c=t&r=42&t=%s>", token);
	assert_string_equal(header(m, "List-Unsubscribe"), want);
	assert_string_equal(header(m, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
	assert_true(GMIME_IS_MULTIPART(g_mime_message_get_mime_part(m)));
	assert_mime_type(g_mime_message_get_mime_part(m), "multipart/alternative");
	/* The HTML escapes the name. */
	assert_non_null(strstr(res.part[RENDER_HTML].data,
			       "Hello José &quot;Pepe&quot; &lt;pepe@evil.example.test&gt;"));
	g_object_unref(m);
	free(want);
	render_result_free(&res);
	campaign_free(c);
}

static void test_hostile_values(void **state)
{
	struct campaign *c = campaign_new();
	struct store_recipient r = recipient_base();
	struct render_templates *t = templates_ok(c);
	struct render *rr = render_new(t, NULL);
	struct render_request q = {&r, &c->segments[0], ANNOUNCE, NULL, NULL, NULL, NULL};
	struct render_result res;
	struct err e = {0};
	GMimeMessage *m;

	(void)state;
	render_result_init(&res);
	/* An encoded-word look-alike name is left out of To, kept (as text) in the body. */
	r.name = "=?utf-8?B?QWRtaW4=?=";
	assert_int_equal(render_message(rr, &q, &res, &e), 0);
	m = parse_back(&res.message);
	assert_string_equal(header(m, "To"), "alice@users.example.test");
	assert_non_null(strstr(res.part[RENDER_TEXT].data, "Hello =?utf-8?B?QWRtaW4=?=,"));
	assert_null(header(m, "List-Unsubscribe")); /* no secret: no token, no header */
	g_object_unref(m);
	/* A line break in an attribute is harmless in the body ... */
	r.name = "Eve";
	r.attrs = "{\"country\":\"FR\\r\\nBcc: victim@example.test\"}";
	assert_int_equal(render_message(rr, &q, &res, &e), 0);
	*strstr(res.message.data, "\r\n\r\n") = '\0'; /* the header block */
	assert_null(strstr(res.message.data, "Bcc"));
	assert_null(strstr(res.message.data, "victim"));
	/* ... and refused, naming the recipient and the field, when it reaches a header. */
	render_free(rr);
	render_templates_free(t);
	write_file("upgrade/subject.mustache", "Upgrade ({{attributes.country}})\n");
	write_file("upgrade/login.mustache", "Login {{attributes.country}}\n");
	t = templates_ok(c);
	rr = render_new(t, NULL);
	assert_int_equal(render_message(rr, &q, &res, &e), ERR_DATA);
	assert_has(e.msg, "recipient u42: the subject contains a line break");
	err_clear(&e);
	assert_int_equal(render_login(rr, &q, &res, &e), ERR_DATA);
	assert_has(e.msg, "recipient u42: the login text contains a line break");
	err_clear(&e);
	/* A user id that is no header token names the recipient by address. */
	r.user_id = "user with spaces";
	assert_int_equal(render_message(rr, &q, &res, &e), ERR_DATA);
	assert_has(e.msg, "recipient alice@users.example.test: the subject");
	err_clear(&e);
	/* Forgotten (no address) and unaffected (no segment) recipients render nothing. */
	r.email = NULL;
	assert_int_equal(render_message(rr, &q, &res, &e), ERR_REFUSED);
	err_clear(&e);
	r.email = "alice@users.example.test";
	q.segment = NULL;
	assert_int_equal(render_message(rr, &q, &res, &e), ERR_REFUSED);
	assert_has(e.msg, "in no segment");
	render_free(rr);
	render_templates_free(t);
	render_result_free(&res);
	campaign_free(c);
	tree_write();
}

static void test_text_only_and_calendar(void **state)
{
	struct render_options o = {NULL, 0, true};
	struct campaign *c = campaign_new();
	struct store_recipient r = recipient_base();
	struct render_result res;
	GMimeMessage *m;
	GMimeObject *top;

	(void)state;
	render_result_init(&res);
	r.client = "c2";
	r.timezone = "Asia/Tokyo";
	render_ok(c, &r, 1, &o, &res);
	assert_string_equal(res.part[RENDER_TEXT].data, "Hello Alice Example,\ngone true\n");
	assert_string_equal(res.part[RENDER_SUBJECT].data,
			    "Client Two ends Wednesday, 15 October 2003");
	m = parse_back(&res.message);
	top = g_mime_message_get_mime_part(m);
	assert_mime_type(top, "multipart/mixed");
	assert_non_null(strstr(res.message.data, "Content-Type: text/calendar"));
	assert_non_null(strstr(res.message.data, "DTSTART;VALUE=DATE:20031015"));
	assert_non_null(strstr(res.message.data, "UID:cutoff-t-42@test.example.test"));
	g_object_unref(m);
	/* render_parts renders the same parts and composes nothing. */
	{
		struct render_templates *t = templates_ok(c);
		struct render *rr = render_new(t, &o);
		struct render_request q = {&r, &c->segments[1], ANNOUNCE, NULL, NULL, NULL, NULL};
		struct render_result parts;
		struct err e = {0};
		render_result_init(&parts);
		assert_int_equal(render_parts(rr, &q, &parts, &e), 0);
		assert_string_equal(parts.part[RENDER_SUBJECT].data, res.part[RENDER_SUBJECT].data);
		assert_string_equal(parts.part[RENDER_TEXT].data, res.part[RENDER_TEXT].data);
		assert_int_equal(parts.message.len, 0);
		assert_null(parts.message_id);
		render_result_free(&parts);
		render_free(rr);
		render_templates_free(t);
	}
	render_result_free(&res);
	campaign_free(c);
}

/* Many zones and languages: the date cache fills, starts afresh, and stays right. */
static void test_zone_cache(void **state)
{
	static const char *const zones[] = {"America/Los_Angeles", "Pacific/Honolulu",
					    "Europe/Paris", "Asia/Tokyo", "UTC"};
	static const char *const tags[] = {"en", "en-US", "fr", "de", "es", "it", "nl", "pt", "sv",
					   "da", "nb", "pl", "ru", "ja", "ko", "zh"};
	struct campaign *c = campaign_new();
	struct render_templates *t = templates_ok(c);
	struct render *rr = render_new(t, NULL);
	struct store_recipient r = recipient_base();
	struct render_request q = {&r, &c->segments[1], ANNOUNCE, NULL, NULL, NULL, NULL};
	struct render_result res;
	struct err e = {0};
	char zone[32];

	(void)state;
	render_result_init(&res);
	r.client = "c2";
	for (int i = 0; i < 1200; i++) {
		/* Etc/GMT+N zones are distinct entries; 25 of them x 16 tags > the cache size. */
		snprintf(zone, sizeof zone, "Etc/GMT%+d", i % 25 - 12);
		r.timezone = i % 7 == 0 ? zones[i % 5] : zone;
		r.locale = tags[i % 16];
		q.now = ANNOUNCE + i * 3600;
		if (render_login(rr, &q, &res, &e) != 0)
			fail_msg("%s: %s", r.timezone, e.msg);
	}
	r.timezone = "Pacific/Honolulu";
	r.locale = "en";
	q.now = ANNOUNCE;
	assert_int_equal(render_login(rr, &q, &res, &e), 0);
	assert_string_equal(res.part[RENDER_LOGIN].data, "Gone Tuesday, 14 October 2003");
	r.timezone = "Mars/Base";
	assert_int_equal(render_login(rr, &q, &res, &e), ERR_DATA);
	assert_has(e.msg, "recipient u42: time zone 'Mars/Base'");
	render_free(rr);
	render_templates_free(t);
	render_result_free(&res);
	campaign_free(c);
}

/*
 * One render serves a whole run: what one recipient set in the context must never
 * show in the next one's message, whether the next value differs, is equal or is
 * missing. A long-lived render gives each recipient what a fresh one gives.
 */
static void test_context_reused_across_recipients(void **state)
{
	static const char every[] =
		"{{recipient.user_id}}|{{recipient.email}}|{{recipient.name}}|{{recipient.locale}}|"
		"{{recipient.timezone}}|{{recipient.client}}|{{recipient.version}}|"
		"{{recipient.platform}}|{{recipient.os}}|{{client_name}}|{{upgrade_url}}|"
		"{{target_version}}|{{unsubscribe_url}}|{{locale}}|{{timezone}}|{{kind}}|"
		"{{attributes.country}}|{{days_left}}\n";
	struct campaign *c;
	struct render_templates *t;
	struct render *rr;
	struct render_options o = {(const unsigned char *)"k", 1, false};
	struct store_recipient rs[8];
	struct render_result res, fresh_res;
	struct err e = {0};

	(void)state;
	write_file("upgrade/login.mustache", every);
	c = campaign_new();
	t = templates_ok(c);
	rr = render_new(t, &o);
	render_result_init(&res);
	render_result_init(&fresh_res);
	for (size_t i = 0; i < 8; i++)
		rs[i] = recipient_base();
	rs[1].id = 43, rs[1].user_id = "u43", rs[1].email = "bob@users.example.test";
	rs[1].name = NULL, rs[1].version = NULL, rs[1].platform = NULL, rs[1].os = NULL;
	rs[1].client = "c2", rs[1].attrs = NULL, rs[1].timezone = NULL;
	rs[2].id = 44, rs[2].user_id = "u44", rs[2].email = "carol@users.example.test";
	rs[2].name = "Carol", rs[2].locale = "fr", rs[2].timezone = "Europe/Paris";
	rs[2].attrs = "{\"country\":\"DE\"}";
	rs[3] = rs[2]; /* the same values again */
	rs[4].id = 45, rs[4].user_id = "u45", rs[4].email = "dan@users.example.test";
	rs[4].locale = NULL, rs[4].client = NULL, rs[4].version = "4.5";
	rs[5] = rs[1];
	rs[6] = rs[2];
	/* A value that is not UTF-8 renders empty, never as the previous recipient's value. */
	rs[7] = rs[2], rs[7].id = 46, rs[7].user_id = "u46", rs[7].name = "Eve \xff";
	for (size_t i = 0; i < 8; i++) {
		struct render_request q = {&rs[i], &c->segments[0], ANNOUNCE + (int64_t)i * 86400,
					   NULL, NULL, NULL, i % 2 ? "reminder" : NULL};
		struct render *fresh = render_new(t, &o);

		if (render_login(rr, &q, &res, &e) != 0 || render_login(fresh, &q, &fresh_res, &e) != 0)
			fail_msg("recipient %zu: %s", i, e.msg);
		assert_string_equal(res.part[RENDER_LOGIN].data, fresh_res.part[RENDER_LOGIN].data);
		assert_has(res.part[RENDER_LOGIN].data, rs[i].email);
		render_free(fresh);
	}
	assert_has(res.part[RENDER_LOGIN].data, "u46|carol@users.example.test||fr|");
	render_free(rr);
	render_templates_free(t);
	render_result_free(&res);
	render_result_free(&fresh_res);
	campaign_free(c);
	write_file("upgrade/login.mustache", "Login {{days_left}} {{target_version}}\n");
}

/* The one-click URL: "?c=" after a bare URL, "&c=" after one that has a query already;
 * the recipient id in decimal, whatever its size. */
static void test_unsubscribe_url_query(void **state)
{
	static const unsigned char secret[] = "0123456789abcdef0123";
	struct render_options o = {secret, sizeof secret - 1, false};
	const char *at = strstr(campaign_text, "/unsubscribe\"");
	char *text = xasprintf("%.*s/unsubscribe?list=7%s", (int)(at - campaign_text),
			       campaign_text, at + strlen("/unsubscribe"));
	struct campaign *c = NULL;
	struct store_recipient r = recipient_base();
	struct render_result res;
	char token[RENDER_TOKEN_LEN + 1], *want;
	GMimeMessage *m;
	struct err e = {0};

	(void)state;
	if (campaign_load_text(&c, text, "t.cfg", scratch, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	r.id = 9876543210LL;
	render_result_init(&res);
	render_ok(c, &r, 0, &o, &res);
	m = parse_back(&res.message);
	assert_int_equal(render_unsubscribe_token(secret, sizeof secret - 1, "t", r.id, token, &e),
			 0);
	want = xasprintf("<https://test.example.test/unsubscribe?list=7&c=t&r=9876543210&t=%s>",
			 token);
	assert_string_equal(header(m, "List-Unsubscribe"), want);
	g_object_unref(m);
	free(want);
	free(text);
	render_result_free(&res);
	campaign_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dates_per_language),
		cmocka_unit_test(test_date_arithmetic_and_bad_dates),
		cmocka_unit_test(test_dates_in_time_zones),
		cmocka_unit_test(test_days_left),
		cmocka_unit_test(test_locale_fallback),
		cmocka_unit_test(test_fallback_per_template_folder),
		cmocka_unit_test(test_check_accepts_good_templates),
		cmocka_unit_test(test_check_reports_every_problem),
		cmocka_unit_test(test_check_renders_a_sample),
		cmocka_unit_test(test_check_the_worked_example),
		cmocka_unit_test(test_message_headers_parsed_with_gmime),
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_text_only_and_calendar),
		cmocka_unit_test(test_zone_cache),
		cmocka_unit_test(test_context_reused_across_recipients),
		cmocka_unit_test(test_unsubscribe_url_query),
	};
	int rc;

	mime_init();
	rc = cmocka_run_group_tests(tests, setup, teardown);
	mime_shutdown();
	return rc;
}
