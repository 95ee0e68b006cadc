// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-badfd.c - every call that takes an endpoint, given a descriptor that is not open
 * (EBADF) or is open but not an endpoint (ENOTTY) (spec 2.3; case C94).
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(badfd, .timeout = 120);

/* A descriptor number that is not open in this process. */
static int unused_fd(void)
{
	for (int fd = 1000; fd < 2000; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			return fd;
	cr_assert_fail("no unused descriptor number");
	return -1;
}

static void *page(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	return p;
}

/* Every call taking an endpoint, with valid other arguments, must fail with @err on @fd. */
static void all_calls_fail(int fd, int err)
{
	struct scif_portID dst = { .node = 0, .port = test_port() }, peer;
	scif_epd_t n = -1;
	void *buf = page();
	int mark;

	scif_get_nodeIDs(NULL, 0, &dst.node);
	expect_errno(scif_bind(fd, 0), err);
	expect_errno(scif_listen(fd, 1), err);
	expect_errno(scif_connect(fd, &dst), err);
	expect_errno(scif_accept(fd, &peer, &n, 0), err);
	expect_errno(scif_send(fd, buf, 10, 0), err);
	expect_errno(scif_recv(fd, buf, 10, 0), err);
	expect_errno(scif_register(fd, buf, 4096, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0), err);
	expect_errno(scif_unregister(fd, 0, 4096), err);
	expect_errno(scif_mmap(NULL, 4096, SCIF_PROT_READ, 0, fd, 0), err);
	expect_errno(scif_readfrom(fd, 0, 4096, 0, 0), err);
	expect_errno(scif_writeto(fd, 0, 4096, 0, 0), err);
	expect_errno(scif_vreadfrom(fd, buf, 4096, 0, 0), err);
	expect_errno(scif_vwriteto(fd, buf, 4096, 0, 0), err);
	expect_errno(scif_fence_mark(fd, SCIF_FENCE_INIT_SELF, &mark), err);
	expect_errno(scif_fence_wait(fd, 0), err);
	expect_errno(scif_fence_signal(fd, 0, 1, 0, 1, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL),
		     err);
	munmap(buf, 4096);
}

Test(badfd, send_on_pipe_is_enotty_and_on_unused_fd_ebadf_C94)
{
	int p[2];
	char buf[10] = { 0 };

	cr_assert_eq(pipe(p), 0);
	expect_errno(scif_send(p[1], buf, 10, 0), ENOTTY);
	expect_errno(scif_send(unused_fd(), buf, 10, 0), EBADF);
	/* The pipe was not disturbed. */
	cr_expect_eq(write(p[1], "x", 1), 1);
	cr_expect_eq(read(p[0], buf, 1), 1);
	close(p[0]);
	close(p[1]);
}

Test(badfd, every_call_on_unused_fd_is_ebadf)
{
	all_calls_fail(unused_fd(), EBADF);
}

Test(badfd, every_call_on_negative_fd_is_ebadf)
{
	all_calls_fail(-1, EBADF);
}

Test(badfd, every_call_on_closed_endpoint_is_ebadf)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_assert_eq(scif_close(e), 0);
	all_calls_fail(e, EBADF);
}

Test(badfd, every_call_on_pipe_is_enotty)
{
	int p[2];

	cr_assert_eq(pipe(p), 0);
	all_calls_fail(p[0], ENOTTY);
	all_calls_fail(p[1], ENOTTY);
	close(p[0]);
	close(p[1]);
}

Test(badfd, every_call_on_socket_is_enotty)
{
	int s[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	all_calls_fail(s[0], ENOTTY);
	close(s[0]);
	close(s[1]);
}

Test(badfd, every_call_on_regular_file_is_enotty)
{
	char path[] = "/tmp/scif-badfd-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	unlink(path);
	all_calls_fail(fd, ENOTTY);
	close(fd);
}

Test(badfd, descriptor_checked_before_arguments)
{
	struct scif_portID dst = { .node = 65535, .port = 0 }, peer;
	char buf[10] = { 0 };
	scif_epd_t n;
	int p[2];

	/* The descriptor is looked at before the call's own argument checks... */
	expect_errno(scif_connect(-1, &dst), EBADF);
	expect_errno(scif_send(-1, buf, -1, 0), EBADF);
	expect_errno(scif_recv(-1, buf, 10, 2), EBADF);
	expect_errno(scif_accept(-1, &peer, &n, 2), EBADF);
	expect_errno(scif_listen(-1, 0), EBADF);
	cr_assert_eq(pipe(p), 0);
	expect_errno(scif_send(p[1], NULL, 10, 0), ENOTTY);
	expect_errno(scif_accept(p[0], &peer, &n, 2), ENOTTY);
	close(p[0]);
	close(p[1]);
	/* ...except the library-side checks: NULL dst/peer/newepd, and len == 0. */
	expect_errno(scif_connect(-1, NULL), EINVAL);
	expect_errno(scif_accept(-1, NULL, &n, 0), EINVAL);
	cr_expect_eq(scif_send(-1, buf, 0, 0), 0);
	cr_expect_eq(scif_recv(-1, buf, 0, 0), 0);
}

Test(badfd, get_fd_and_poll_pass_other_descriptors_through)
{
	struct scif_pollepd pe;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_expect_eq(scif_get_fd(p[0]), p[0]);
	pe = (struct scif_pollepd){ .epd = p[1], .events = POLLOUT };
	cr_expect_eq(scif_poll(&pe, 1, 0), 1);
	cr_expect_eq(pe.revents, POLLOUT);
	close(p[0]);
	close(p[1]);
}
