/* test_sender_warm.c — sender_warm_zones, which loads the recipients' time zones before the
 * sending workers fork: each distinct zone of the campaign's first recipients once, none of
 * another campaign's, none past the sample, and an unknown zone or none at all is no error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "schedule.h"
#include "scratch.h"
#include "sender.h"
#include "store.h"
#include "util.h"

struct fx {
	void *db; /* scratch_db's path */
	struct store *s;
	struct campaign c; /* only the dates sender_warm_zones reads */
	int64_t t_id, u_id;
	int n_users;
};

static int64_t add_campaign(struct fx *f, const char *name)
{
	struct store_campaign row = {0};
	struct err e = {0};

	row.name = (char *)name, row.title = (char *)name, row.timezone = "UTC";
	row.announce_at = f->c.announce_at, row.reminder_start_at = f->c.reminder_start_at;
	row.cutoff_at = f->c.cutoff_at, row.definition = "", row.source_path = "t.cfg";
	row.templates_dir = ".", row.digest = "d";
	if (store_campaign_put(f->s, &row, 0, &e) != 0)
		fail_msg("%s", e.msg);
	return row.id;
}

static void add_user(struct fx *f, int64_t cid, const char *tz)
{
	char user[32], email[64];
	struct store_recipient r = {.campaign_id = cid, .user_id = user, .email = email,
				    .client = "c1", .version = "4.6", .timezone = tz};
	struct err e = {0};
	int64_t id = 0;

	/* Zero-padded: the sample's order (by user id) is the order they are added in. */
	snprintf(user, sizeof user, "u%06d", f->n_users);
	snprintf(email, sizeof email, "u%06d@users.example.test", f->n_users++);
	if (store_recipient_insert(f->s, &r, 0, &id, &e) != 0)
		fail_msg("%s", e.msg);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	struct err e = {0};

	if (scratch_db(&f->db) != 0)
		return -1;
	if (store_open(&f->s, f->db, STORE_CREATE | STORE_MIGRATE, &e) != 0)
		fail_msg("%s", e.msg);
	if (schedule_parse_instant("2003-10-15T07:00:00Z", &f->c.cutoff_at, &e) != 0 ||
	    schedule_parse_instant("2003-09-18T07:00:00Z", &f->c.reminder_start_at, &e) != 0)
		fail_msg("%s", e.msg);
	f->c.announce_at = f->c.reminder_start_at;
	f->t_id = add_campaign(f, "t");
	f->u_id = add_campaign(f, "u");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	void *db = f->db;

	store_close(f->s);
	free(f);
	return scratch_db_remove(&db);
}

/* Each distinct zone once, whatever the order and the repeats; no zone and an unknown one
 * are no error (the send reports an unknown zone as it renders). */
static void test_distinct_zones(void **state)
{
	struct fx *f = *state;
	static const char *const tzs[] = {"Europe/Paris", "Asia/Tokyo", "Europe/Paris", NULL,
					  "America/Sao_Paulo", "Mars/Olympus_Mons", "Asia/Tokyo"};

	for (size_t i = 0; i < sizeof tzs / sizeof *tzs; i++)
		add_user(f, f->t_id, tzs[i]);
	add_user(f, f->u_id, "Australia/Sydney"); /* another campaign's: not looked at */
	assert_int_equal(sender_warm_zones(f->s, &f->c, f->t_id), 4);
	assert_int_equal(sender_warm_zones(f->s, &f->c, f->u_id), 1);
	assert_int_equal(sender_warm_zones(f->s, &f->c, f->t_id + f->u_id + 1), 0);
}

/* The walk stops after SENDER_WARM_SAMPLE recipients: a zone first met past them is left
 * to the workers, and a campaign of tens of millions is not read through. */
static void test_sample_bound(void **state)
{
	struct fx *f = *state;
	struct err e = {0};

	assert_int_equal(store_begin(f->s, &e), 0);
	for (int i = 0; i < SENDER_WARM_SAMPLE - 1; i++)
		add_user(f, f->t_id, i % 2 ? "Europe/Berlin" : NULL);
	add_user(f, f->t_id, "Asia/Seoul");      /* the sample's last */
	add_user(f, f->t_id, "America/Denver"); /* past it */
	assert_int_equal(store_commit(f->s, &e), 0);
	assert_int_equal(sender_warm_zones(f->s, &f->c, f->t_id), 2);
}

/* At most SENDER_WARM_ZONES distinct zones are loaded. */
static void test_zone_bound(void **state)
{
	struct fx *f = *state;
	char tz[32];

	for (int i = 0; i < SENDER_WARM_ZONES + 5; i++) {
		snprintf(tz, sizeof tz, "Test/Zone%d", i); /* unknown zones count as looked up */
		add_user(f, f->t_id, tz);
	}
	assert_int_equal(sender_warm_zones(f->s, &f->c, f->t_id), SENDER_WARM_ZONES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_distinct_zones, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sample_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zone_bound, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
