/* calendar.c — a campaign's milestones as a VCALENDAR with its VTIMEZONE (RFC 5545, libical). */
#include "calendar.h"

#include <libical/ical.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "schedule.h"
#include "util.h"

/* One milestone, before it becomes a VEVENT. */
struct milestone {
	int64_t at;
	const char *kind;    /* X-CUTOFF-MILESTONE */
	const char *segment; /* X-CUTOFF-SEGMENT, or NULL */
	char *summary;
	char *uid_part;      /* the UID is cutoff-CAMPAIGN-UID_PART@DOMAIN */
};

struct milestones {
	struct milestone *v;
	size_t n;
};

static void add(struct milestones *m, int64_t at, const char *kind, const char *segment,
		char *summary, char *uid_part)
{
	m->v = xrealloc(m->v, (m->n + 1) * sizeof *m->v);
	m->v[m->n++] = (struct milestone){at, kind, segment, summary, uid_part};
}

static void milestones_free(struct milestones *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].summary), free(m->v[i].uid_part);
	free(m->v);
}

static int by_time(const void *a, const void *b)
{
	const struct milestone *x = a, *y = b;

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return strcmp(x->uid_part, y->uid_part); /* qsort is not stable: a fixed order */
}

/* Every milestone of c, in time order. */
static int collect(const struct campaign *c, struct milestones *m, struct err *e)
{
	int64_t *occ = NULL;
	size_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < c->n_segments; i++) {
		const struct segment *g = &c->segments[i];
		add(m, g->send_at, "announce", g->name,
		    xasprintf("%s: first e-mail to segment %s%s", c->title, g->name,
			      g->target_version ? "" : " (discontinued)"),
		    xasprintf("announce-%s", g->name));
	}
	add(m, c->reminder_start_at, "reminder-start", NULL,
	    xasprintf("%s: login reminders begin", c->title), xstrdup("reminder-start"));
	if (c->reminder_emails != NULL &&
	    (rc = schedule_occurrences(c->reminder_emails, c->reminder_start_at, c->timezone,
				       c->reminder_start_at, c->cutoff_at, &occ, &n, e)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		add(m, occ[i], "reminder-email", NULL, xasprintf("%s: reminder e-mail", c->title),
		    xasprintf("reminder-email-%lld", (long long)occ[i]));
	free(occ);
	if (c->final_notice_at > 0)
		add(m, c->final_notice_at, "final-notice", NULL,
		    xasprintf("%s: final notice e-mail", c->title), xstrdup("final-notice"));
	add(m, c->cutoff_at, "cutoff", NULL,
	    xasprintf("%s: cutoff, old clients lose access", c->title), xstrdup("cutoff"));
	qsort(m->v, m->n, sizeof *m->v, by_time);
	return 0;
}

static struct icaltimetype utc_time(int64_t t)
{
	return icaltime_from_timet_with_zone((time_t)t, 0, icaltimezone_get_utc_timezone());
}

static icalproperty *x_prop(const char *name, const char *value)
{
	icalproperty *p = icalproperty_new_x(value);

	icalproperty_set_x_name(p, name);
	return p;
}

static icalcomponent *event(const struct campaign *c, const struct milestone *m,
			    icaltimezone *zone, int64_t now)
{
	char *uid = xasprintf("cutoff-%s-%s@%s", c->name, m->uid_part,
			      address_domain(c->from_addr) ? address_domain(c->from_addr)
							   : "cutoff.invalid");
	struct icaltimetype local = icaltime_from_timet_with_zone((time_t)m->at, 0, zone);
	icalproperty *start;
	icalcomponent *ev;

	local.zone = NULL; /* written as local time; the TZID parameter names the zone */
	start = icalproperty_new_dtstart(local);
	icalproperty_add_parameter(start, icalparameter_new_tzid(c->timezone));
	ev = icalcomponent_vanew(ICAL_VEVENT_COMPONENT, icalproperty_new_uid(uid),
				 icalproperty_new_dtstamp(utc_time(now)), start,
				 icalproperty_new_summary(m->summary),
				 icalproperty_new_transp(ICAL_TRANSP_TRANSPARENT),
				 icalproperty_new_categories("cutoff"),
				 x_prop("X-CUTOFF-MILESTONE", m->kind), (void *)0);
	if (m->segment != NULL)
		icalcomponent_add_property(ev, x_prop("X-CUTOFF-SEGMENT", m->segment));
	if (strcmp(m->kind, "cutoff") == 0 && c->upgrade_url != NULL)
		icalcomponent_add_property(ev, icalproperty_new_url(c->upgrade_url));
	free(uid);
	return ev;
}

/* RFC 5545 3.6.5: an RDATE of an observance is local time; libical writes some in UTC. */
static void rdates_to_local(icalcomponent *obs)
{
	icalproperty *off = icalcomponent_get_first_property(obs, ICAL_TZOFFSETFROM_PROPERTY);
	int from = off ? icalproperty_get_tzoffsetfrom(off) : 0;

	for (icalproperty *p = icalcomponent_get_first_property(obs, ICAL_RDATE_PROPERTY); p;
	     p = icalcomponent_get_next_property(obs, ICAL_RDATE_PROPERTY)) {
		struct icaldatetimeperiodtype d = icalproperty_get_rdate(p);
		if (icalperiodtype_is_null_period(d.period) && icaltime_is_utc(d.time)) {
			icaltime_adjust(&d.time, 0, 0, 0, from);
			d.time.zone = NULL;
			icalproperty_set_rdate(p, d);
		}
	}
}

/* The zone's VTIMEZONE, cut to [from, until), with the plain IANA name as its TZID. */
static icalcomponent *vtimezone(icaltimezone *zone, const char *tzid, int64_t from,
				int64_t until)
{
	icalcomponent *vtz = icalcomponent_new_clone(icaltimezone_get_component(zone));
	icalproperty *id = icalcomponent_get_first_property(vtz, ICAL_TZID_PROPERTY);

	icaltimezone_truncate_vtimezone(vtz, utc_time(from), utc_time(until), 0);
	if (id != NULL)
		icalproperty_set_tzid(id, tzid);
	for (icalcomponent *o = icalcomponent_get_first_component(vtz, ICAL_ANY_COMPONENT); o;
	     o = icalcomponent_get_next_component(vtz, ICAL_ANY_COMPONENT))
		rdates_to_local(o);
	return vtz;
}

int calendar_campaign(const struct campaign *c, int64_t now, char **out, struct err *e)
{
	icaltimezone *zone = icaltimezone_get_builtin_timezone(c->timezone);
	struct milestones m = {NULL, 0};
	icalcomponent *cal = NULL;
	char *text;
	int rc;

	*out = NULL;
	if (zone == NULL || icaltimezone_get_component(zone) == NULL)
		return err_set(e, ERR_DATA, "time zone '%s' is unknown to libical", c->timezone);
	if ((rc = collect(c, &m, e)) != 0)
		goto out;
	cal = icalcomponent_vanew(ICAL_VCALENDAR_COMPONENT, icalproperty_new_version("2.0"),
				  icalproperty_new_prodid("-//cutoff//" CUTOFF_VERSION "//EN"),
				  icalproperty_new_calscale("GREGORIAN"),
				  icalproperty_new_method(ICAL_METHOD_PUBLISH),
				  x_prop("X-WR-CALNAME", c->title),
				  x_prop("X-WR-TIMEZONE", c->timezone), (void *)0);
	icalcomponent_add_component(cal, vtimezone(zone, c->timezone, m.v[0].at - 86400,
						   c->cutoff_at + 86400));
	for (size_t i = 0; i < m.n; i++)
		icalcomponent_add_component(cal, event(c, &m.v[i], zone, now));
	text = icalcomponent_as_ical_string_r(cal);
	*out = xstrdup(text ? text : "");
	icalmemory_free_buffer(text);
out:
	icalcomponent_free(cal);
	milestones_free(&m);
	return rc;
}
