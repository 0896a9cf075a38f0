/* test_writeback.c — writeback_paced: its pieces cover the whole file in order, a busy flag is
 * waited for but never longer than the bound, a descriptor that refuses the hint is told apart
 * from a real error. sync_file_range is wrapped (-Wl,--wrap, tests/CMakeLists.txt) to record
 * each call and, when asked, fail it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "writeback.h"

#define MIB (1 << 20)
#define MS 1000000

int __real_sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);
int __wrap_sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);

/* The calls seen, and a failure to inject at call number fail_at (0: none). */
static struct call {
	off_t offset, nbytes;
	unsigned flags;
	bool busy; /* the flag as it was when the call came */
} calls[64];
static int ncalls, fail_at, fail_errno;
static atomic_bool flag;

int __wrap_sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
{
	if (ncalls < (int)(sizeof calls / sizeof calls[0]))
		calls[ncalls] = (struct call){offset, nbytes, flags, atomic_load(&flag)};
	if (++ncalls == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return __real_sync_file_range(fd, offset, nbytes, flags);
}

static int reset(void **state)
{
	(void)state;
	ncalls = fail_at = fail_errno = 0;
	atomic_store(&flag, false);
	return 0;
}

/* A scratch file of size bytes, written (dirty pages), unlinked; its descriptor. */
static int scratch_file(off_t size)
{
	char path[] = "/tmp/test_writeback.XXXXXX", block[65536];
	int fd = mkstemp(path);
	off_t at;

	assert_true(fd >= 0);
	unlink(path);
	memset(block, 'x', sizeof block);
	for (at = 0; at < size; at += (off_t)sizeof block)
		assert_true(write(fd, block, size - at < (off_t)sizeof block ? (size_t)(size - at)
									     : sizeof block) > 0);
	return fd;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 10 MiB + 1 byte in 4 MiB pieces: three calls, back to back from 0 to the end, none with
 * nbytes 0 (which would mean "to the end of the file"), each waiting for its writes. */
static void test_pieces_cover_the_file(void **state)
{
	const off_t size = 10 * MIB + 1;
	const unsigned all = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			     SYNC_FILE_RANGE_WAIT_AFTER;
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(size);

	(void)state;
	assert_int_equal(writeback_paced(fd, size, 4 * MIB, &flag, 0, &st, &e), 0);
	assert_int_equal(ncalls, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(calls[i].offset, (off_t)i * 4 * MIB);
		assert_int_equal(calls[i].flags, all);
		assert_true(calls[i].nbytes > 0);
	}
	assert_int_equal(calls[2].offset + calls[2].nbytes, size);
	assert_int_equal(st.pieces, 3);
	assert_int_equal(st.bytes, size);
	assert_int_equal(st.waits_cut, 0);
	close(fd);
}

/* piece <= 0: WRITEBACK_PIECE; a file smaller than a piece is one call. */
static void test_default_piece(void **state)
{
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(WRITEBACK_PIECE + 4096);

	(void)state;
	assert_int_equal(writeback_paced(fd, WRITEBACK_PIECE + 4096, 0, NULL, 0, &st, &e), 0);
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[0].nbytes, WRITEBACK_PIECE);
	assert_int_equal(calls[1].nbytes, 4096);
	close(fd);
}

/* An empty file: nothing to write back, no call. */
static void test_empty_file(void **state)
{
	struct writeback_stats st = {.pieces = 7};
	struct err e = {0};
	int fd = scratch_file(0);

	(void)state;
	assert_int_equal(writeback_paced(fd, 0, 0, &flag, 0, &st, &e), 0);
	assert_int_equal(ncalls, 0);
	assert_int_equal(st.pieces, 0);
	assert_int_equal(st.bytes, 0);
	close(fd);
}

/* A flag that stays set: each piece waits for it, about the bound and not much more. */
static void test_busy_wait_is_bounded(void **state)
{
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(3 * MIB);
	int64_t t0;

	(void)state;
	atomic_store(&flag, true);
	t0 = now_ns();
	assert_int_equal(writeback_paced(fd, 3 * MIB, MIB, &flag, 5 * MS, &st, &e), 0);
	assert_true(now_ns() - t0 >= 15 * MS);
	assert_true(now_ns() - t0 < 1000 * MS); /* a loaded machine, not a wait for ever */
	assert_int_equal(st.pieces, 3);
	assert_int_equal(st.waits_cut, 3);
	assert_true(st.waited_ns >= 15 * MS);
	close(fd);
}

static void *clear_later(void *arg)
{
	const struct timespec d = {0, 20 * MS};

	(void)arg;
	nanosleep(&d, NULL);
	atomic_store(&flag, false);
	return NULL;
}

/* A flag cleared after 20 ms: the first piece starts only then, and the wait was not cut. */
static void test_waits_for_busy_flag(void **state)
{
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(2 * MIB);
	pthread_t t;

	(void)state;
	atomic_store(&flag, true);
	assert_int_equal(pthread_create(&t, NULL, clear_later, NULL), 0);
	assert_int_equal(writeback_paced(fd, 2 * MIB, MIB, &flag, INT64_C(10000) * MS, &st, &e), 0);
	pthread_join(t, NULL);
	assert_int_equal(ncalls, 2);
	assert_false(calls[0].busy);
	assert_int_equal(st.waits_cut, 0);
	assert_true(st.waited_ns >= 15 * MS);
	close(fd);
}

/* A pipe refuses the hint (ESPIPE): WRITEBACK_UNSUPPORTED, no error. */
static void test_pipe_is_unsupported(void **state)
{
	struct err e = {0};
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(writeback_paced(p[1], MIB, 0, NULL, 0, NULL, &e), WRITEBACK_UNSUPPORTED);
	assert_int_equal(e.code, 0);
	close(p[0]), close(p[1]);
}

/* The other refusals, injected on the second piece: also WRITEBACK_UNSUPPORTED. */
static void test_refusals_are_unsupported(void **state)
{
	static const int refusals[] = {EINVAL, ENOSYS, EOPNOTSUPP};
	int fd = scratch_file(2 * MIB);

	for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
		struct err e = {0};

		reset(state);
		fail_at = 2, fail_errno = refusals[i];
		assert_int_equal(writeback_paced(fd, 2 * MIB, MIB, NULL, 0, NULL, &e),
				 WRITEBACK_UNSUPPORTED);
		assert_int_equal(e.code, 0);
	}
	close(fd);
}

/* A bad descriptor is an error, with a message. */
static void test_bad_fd(void **state)
{
	struct err e = {0};

	(void)state;
	assert_int_equal(writeback_paced(-1, MIB, 0, NULL, 0, NULL, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "writing back bytes 0 to"));
}

/* EIO on the second piece: ERR_IO naming that piece; the first counted, no third tried. */
static void test_io_error(void **state)
{
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(3 * MIB);

	(void)state;
	fail_at = 2, fail_errno = EIO;
	assert_int_equal(writeback_paced(fd, 3 * MIB, MIB, NULL, 0, &st, &e), ERR_IO);
	assert_int_equal(ncalls, 2);
	assert_int_equal(st.pieces, 1);
	assert_int_equal(st.bytes, MIB);
	assert_non_null(strstr(e.msg, "1048576 to 2097152"));
	assert_non_null(strstr(e.msg, strerror(EIO)));
	close(fd);
}

/* EINTR: the same piece again, then on. */
static void test_eintr_retried(void **state)
{
	struct writeback_stats st;
	struct err e = {0};
	int fd = scratch_file(2 * MIB);

	(void)state;
	fail_at = 1, fail_errno = EINTR;
	assert_int_equal(writeback_paced(fd, 2 * MIB, MIB, NULL, 0, &st, &e), 0);
	assert_int_equal(ncalls, 3);
	assert_int_equal(calls[1].offset, 0);
	assert_int_equal(calls[2].offset, MIB);
	assert_int_equal(st.pieces, 2);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_pieces_cover_the_file, reset),
		cmocka_unit_test_setup(test_default_piece, reset),
		cmocka_unit_test_setup(test_empty_file, reset),
		cmocka_unit_test_setup(test_busy_wait_is_bounded, reset),
		cmocka_unit_test_setup(test_waits_for_busy_flag, reset),
		cmocka_unit_test_setup(test_pipe_is_unsupported, reset),
		cmocka_unit_test_setup(test_refusals_are_unsupported, reset),
		cmocka_unit_test_setup(test_bad_fd, reset),
		cmocka_unit_test_setup(test_io_error, reset),
		cmocka_unit_test_setup(test_eintr_retried, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
