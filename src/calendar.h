/* calendar.h — a campaign's milestones as an iCalendar file (RFC 5545), built with libical. */
#ifndef CUTOFF_CALENDAR_H
#define CUTOFF_CALENDAR_H

#include <stdint.h>

#include "campaign.h"
#include "err.h"

/*
 * Writes campaign c's milestones as a VCALENDAR (METHOD:PUBLISH) into *out, a new
 * NUL-terminated string with CRLF line ends that the caller frees with free():
 *   - the first e-mail of each segment (the announce, or the segment's own send time),
 *   - the start of login reminders,
 *   - each reminder e-mail occurrence of the campaign's reminder_emails rule in
 *     [reminder start, cutoff), the instants the daily run queues them for,
 *   - the final notice, when the campaign has one,
 *   - the cutoff.
 * Each is a VEVENT of no duration whose DTSTART is the local time in the campaign's zone
 * with TZID set to the plain IANA name ("America/Los_Angeles"), and the file carries that
 * zone's VTIMEZONE from libical, truncated (icaltimezone_truncate_vtimezone) to the
 * transitions from a day before the first milestone to a day after the cutoff, its RDATEs
 * in local time as RFC 5545 3.6.5 requires. UIDs are stable ("cutoff-NAME-cutoff@DOMAIN"),
 * so a re-import updates the events; DTSTAMP is now. Each VEVENT also has
 * X-CUTOFF-MILESTONE: announce, reminder-start, reminder-email, final-notice or cutoff (and
 * X-CUTOFF-SEGMENT).
 * Returns 0, or ERR_DATA when the zone is unknown to libical or the reminder rule cannot
 * be expanded (a campaign that passed its check never does this).
 */
int calendar_campaign(const struct campaign *c, int64_t now, char **out, struct err *e);

#endif
