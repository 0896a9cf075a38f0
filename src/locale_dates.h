/* locale_dates.h — dates and times written the way each supported language writes them (CLDR "full" date, short time). */
#ifndef CUTOFF_LOCALE_DATES_H
#define CUTOFF_LOCALE_DATES_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Why a table and not strftime_l: glibc only formats month and day names for
 * locales compiled on the host (Debian ships C.UTF-8 alone unless the locales
 * package is configured), so the same campaign would read differently on two
 * hosts and the tests could not be deterministic. The table covers the
 * languages below, with the patterns of CLDR's full date format and the names
 * in the case each pattern needs (Polish and Russian months in the genitive).
 * A language not in the table is written in English.
 *
 * Supported tags: en (15 October), en-US (October 15), fr, de, es, it, nl,
 * pt (and pt-BR, pt-PT), sv, da, nb (and no, nn), pl, ru, ja, ko, zh.
 */
struct locale_dates;

/* A date on the proleptic Gregorian calendar. */
struct locale_civil {
	int year;    /* 1..9999 */
	int month;   /* 1..12 */
	int day;     /* 1..31 */
	int weekday; /* 0 = Sunday .. 6 = Saturday */
	int hour;    /* 0..23 */
	int minute;  /* 0..59 */
};

/*
 * The table entry for a BCP 47 tag, looked up as RFC 4647 "lookup" does:
 * "pt-BR" tries "pt-BR" then "pt"; "en-US" has its own entry; any other tag,
 * NULL or "" gives English. Case and '_' versus '-' do not matter. Never NULL;
 * the entry is static (nothing to free) and may be shared by threads.
 */
const struct locale_dates *locale_dates_find(const char *tag);

/* The tag of an entry as the table names it: "en", "en-US", "fr", "pt", ... */
const char *locale_dates_tag(const struct locale_dates *l);

/* True if the language of tag a (the part before '-') equals that of b, ignoring case. */
bool locale_same_language(const char *a, const char *b);

/*
 * Writes the date of c (weekday, day, month, year) in l's full format into buf:
 * "Wednesday, 15 October 2003", "mercredi 15 octobre 2003", "2003年10月15日水曜日".
 * Returns the length written, or -1 (buf left empty when n > 0) if c is not a
 * valid date or buf is too small (64 bytes is always enough).
 */
int locale_dates_format_date(const struct locale_dates *l, const struct locale_civil *c,
			     char *buf, size_t n);

/*
 * Writes the time of c in l's short format: "00:00", "9:05 AM" (en-US), "0:00" (ja).
 * Returns the length written, or -1 as locale_dates_format_date.
 */
int locale_dates_format_time(const struct locale_dates *l, const struct locale_civil *c,
			     char *buf, size_t n);

/* The day of the week of a Gregorian date: 0 = Sunday .. 6 = Saturday. */
int locale_weekday(int year, int month, int day);

/* Days since 1970-01-01 of a Gregorian date (negative before it). */
long long locale_days_from_civil(int year, int month, int day);

#endif
