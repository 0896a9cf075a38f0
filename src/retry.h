/* retry.h — when to try a deferred delivery again: the one backoff function. */
#ifndef CUTOFF_RETRY_H
#define CUTOFF_RETRY_H

#include <stdint.h>

#define RETRY_BASE_SECONDS 300    /* the first retry: about 5 minutes later */
#define RETRY_MAX_SECONDS 21600   /* never more than 6 hours apart */

/*
 * The time of the next attempt after the attempts-th attempt failed
 * temporarily at now: RETRY_BASE_SECONDS doubled per attempt, capped at
 * RETRY_MAX_SECONDS, with +/-20% jitter drawn from jitter (any 32-bit value;
 * the caller passes a random one) so that deferred messages do not all come
 * back at once. Returns 0 when that time is at or after the cutoff: the
 * delivery has expired and fails instead.
 */
int64_t retry_next_attempt(int attempts, int64_t now, int64_t cutoff, uint32_t jitter);

#endif
