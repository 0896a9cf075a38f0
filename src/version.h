/* version.h — client version strings compared as dotted numbers (4.7.2009 > 4.7.300 > 4.7). */
#ifndef CUTOFF_VERSION_H
#define CUTOFF_VERSION_H

#include <stdbool.h>

#include "err.h"

/*
 * True if s is a version cutoff can compare: one or more dot-separated
 * components, each starting with a decimal number (at most 9 digits) and
 * optionally followed by a suffix of letters, digits, '-' or '+' ("5.0b1",
 * "6.2-rc1"). Empty components ("4..7", "4.") are not versions.
 */
bool version_valid(const char *s);

/*
 * Like version_valid, filling e (ERR_DATA) with the reason when s is not one.
 * Returns 0 or ERR_DATA.
 */
int version_check(const char *s, struct err *e);

/*
 * Compares two valid versions: <0, 0 or >0. Components compare numerically;
 * a missing component counts as 0 (4.7 == 4.7.0). Within a component a suffix
 * marks a pre-release: 5.0b1 < 5.0 < 5.0.1; suffixes compare as ASCII.
 * Invalid input compares as ASCII strings (callers validate first).
 */
int version_compare(const char *a, const char *b);

#endif
