/* writeback.c — a file written back in pieces between another thread's syncs (writeback.h). */
#include "writeback.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>

#include "util.h"

#define POLL_NS 50000 /* how often a busy flag is looked at: a WAL sync takes 0.1 to 1 ms */

/* Waits while *busy is set, at most max_ns; counts the wait into st. */
static void wait_not_busy(const atomic_bool *busy, int64_t max_ns, struct writeback_stats *st)
{
	const struct timespec poll = {0, POLL_NS};
	int64_t t0, now;

	if (busy == NULL || !atomic_load(busy))
		return;
	t0 = now = monotonic_ns();
	while (atomic_load(busy) && now - t0 < max_ns) {
		nanosleep(&poll, NULL);
		now = monotonic_ns();
	}
	st->waited_ns += now - t0;
	if (atomic_load(busy))
		st->waits_cut++;
}

/* True for the errors of a descriptor or file system that does not take the hint. */
static int refused(int err)
{
	return err == EINVAL || err == ENOSYS || err == ESPIPE || err == EOPNOTSUPP;
}

int writeback_paced(int fd, off_t size, off_t piece, const atomic_bool *busy, int64_t max_wait_ns,
		    struct writeback_stats *stats, struct err *e)
{
	const unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			       SYNC_FILE_RANGE_WAIT_AFTER;
	struct writeback_stats st = {0};
	off_t at = 0, n;
	int rc = 0;

	if (piece <= 0)
		piece = WRITEBACK_PIECE;
	if (max_wait_ns <= 0)
		max_wait_ns = WRITEBACK_WAIT_NS;
	while (at < size) {
		n = size - at < piece ? size - at : piece; /* never 0: that means "to the end" */
		wait_not_busy(busy, max_wait_ns, &st);
		if (sync_file_range(fd, at, n, flags) != 0) {
			if (errno == EINTR)
				continue;
			rc = refused(errno) ? WRITEBACK_UNSUPPORTED
					    : err_sys(e, ERR_IO, errno, "writing back bytes %lld to"
						      " %lld of the file", (long long)at,
						      (long long)(at + n));
			goto out;
		}
		st.pieces++, st.bytes += n, at += n;
	}
out:
	if (stats != NULL)
		*stats = st;
	return rc;
}
