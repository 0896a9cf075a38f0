/* writeback.h — a file's dirty pages written back in pieces, each started only once another
 * thread's sync is out of the way, so that one large writeback does not queue in front of the
 * small syncs that answers wait for (Linux sync_file_range(2)). */
#ifndef CUTOFF_WRITEBACK_H
#define CUTOFF_WRITEBACK_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define WRITEBACK_PIECE (4 << 20) /* bytes written back at a time, by default */
#define WRITEBACK_WAIT_NS 2000000 /* the longest wait for the busy flag, a piece: 2 ms */
#define WRITEBACK_UNSUPPORTED 1   /* writeback_paced's: the file system refuses the hint */

/* What one writeback_paced did. */
struct writeback_stats {
	int pieces;        /* sync_file_range calls that succeeded */
	int64_t bytes;     /* the bytes they covered: the whole size when it returns 0 */
	int64_t waited_ns; /* the time spent waiting for the busy flag to clear */
	int waits_cut;     /* pieces started with the flag still set (the wait bounded) */
};

/*
 * Writes back the bytes [0, size) of fd, piece bytes at a time (piece <= 0: WRITEBACK_PIECE),
 * each piece started and waited for (sync_file_range WAIT_BEFORE | WRITE | WAIT_AFTER) before
 * the next. Before each piece, while *busy is set (busy may be NULL: never), waits for it to
 * clear, at most max_wait_ns (<= 0: WRITEBACK_WAIT_NS) a piece. This writes data, not the
 * file's metadata, nor does it flush the device's cache: the caller still fdatasyncs, which
 * then has little left to write.
 * Returns 0; WRITEBACK_UNSUPPORTED when fd does not take the hint (EINVAL, ENOSYS, ESPIPE,
 * EOPNOTSUPP: a pipe, a file system without it), not an error: just fdatasync; ERR_IO (EIO,
 * EBADF, ENOSPC...) with e filled. stats (may be NULL) is filled either way.
 */
int writeback_paced(int fd, off_t size, off_t piece, const atomic_bool *busy, int64_t max_wait_ns,
		    struct writeback_stats *stats, struct err *e);

#endif
