/* retry.c — exponential backoff with jitter, bounded by the campaign's cutoff. */
#include "retry.h"

int64_t retry_next_attempt(int attempts, int64_t now, int64_t cutoff, uint32_t jitter)
{
	int64_t delay = RETRY_BASE_SECONDS;
	int64_t spread;

	for (int i = 1; i < attempts && delay < RETRY_MAX_SECONDS; i++)
		delay *= 2;
	if (delay > RETRY_MAX_SECONDS)
		delay = RETRY_MAX_SECONDS;
	/* jitter in [0, 2^32) maps to [-20%, +20%) of the delay */
	spread = delay * 2 / 5;
	delay += (int64_t)((uint64_t)jitter * (uint64_t)spread >> 32) - spread / 2;
	if (now + delay >= cutoff)
		return 0;
	return now + delay;
}
