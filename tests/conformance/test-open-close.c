// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-open-close.c - conformance of scif_open(), scif_close() and scif_get_fd()
 * (spec 3.1, 3.2, 3.21; cases C01, C02, C92; bad descriptors are in test-badfd.c).
 */
#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(open, .timeout = 120);
TestSuite(close, .timeout = 120);
TestSuite(get_fd, .timeout = 120);

Test(open, returns_cloexec_descriptor_C01)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_expect(fcntl(e, F_GETFD) & FD_CLOEXEC);
	cr_expect_eq(scif_get_fd(e), e);
	cr_expect_eq(scif_close(e), 0);
}

Test(close, twice_gives_ebadf_C02)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_expect_eq(scif_close(e), 0);
	expect_errno(scif_close(e), EBADF);
}

Test(close, foreign_descriptor_is_einval_and_left_open)
{
	int p[2];

	cr_assert_eq(pipe(p), 0);
	expect_errno(scif_close(p[0]), EINVAL);
	cr_expect_geq(fcntl(p[0], F_GETFD), 0, "the pipe must stay open");
	close(p[0]);
	close(p[1]);
}

Test(open, descriptor_closed_across_exec_C92)
{
	scif_epd_t e = scif_open();
	char arg[32];
	char *argv[] = { "/bin/sh", "-c", arg, NULL };
	pid_t pid;
	int st;

	cr_assert_geq(e, 0);
	/* The helper shell reports whether the descriptor number is open in it. */
	snprintf(arg, sizeof(arg), "[ -e /proc/self/fd/%d ]", e);
	cr_assert_eq(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
	test_waitpid(pid, &st, 30000);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "descriptor %d leaked into exec", e);
	scif_close(e);
}

Test(get_fd, returns_its_argument)
{
	cr_expect_eq(scif_get_fd(12345), 12345);
	cr_expect_eq(scif_get_fd(-1), -1);
}

Test(close, plain_close_is_a_scif_close)
{
	scif_epd_t a, b;
	char c;

	test_pair(&a, &b, NULL);
	/* Spec 3.2: close(2) of the last descriptor has exactly the effect of scif_close. */
	cr_assert_eq(close(a), 0);
	expect_errno(scif_recv(b, &c, 1, SCIF_RECV_BLOCK), ECONNRESET);
	scif_close(b);
}

Test(close, dup_refers_to_the_same_endpoint)
{
	scif_epd_t a, b, a2;
	char c = 'x', r = 0;

	test_pair(&a, &b, NULL);
	/* Spec 3.2: a dup() of an endpoint descriptor is the same endpoint. */
	a2 = dup(a);
	cr_assert_geq(a2, 0);
	cr_expect_eq(scif_send(a2, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(scif_recv(b, &r, 1, SCIF_RECV_BLOCK), 1);
	cr_expect_eq(r, 'x');
	/* Closing one copy keeps the endpoint; closing the last one disconnects. */
	cr_expect_eq(scif_close(a), 0);
	cr_expect_eq(scif_send(a2, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(scif_recv(b, &r, 1, SCIF_RECV_BLOCK), 1);
	cr_expect_eq(scif_close(a2), 0);
	expect_errno(scif_recv(b, &r, 1, SCIF_RECV_BLOCK), ECONNRESET);
	scif_close(b);
}
