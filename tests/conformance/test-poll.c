// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-poll.c - conformance of scif_poll() and of endpoint readiness through poll(2) and
 * select(2) (spec 2.2, 3.22; cases C30-C32).
 */
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(poll, .timeout = 120);

/* scif_poll() of one endpoint; returns revents (or -1 if scif_poll failed). */
static int poll1(scif_epd_t e, short events, long timeout)
{
	struct scif_pollepd p = { .epd = e, .events = events };
	int r = scif_poll(&p, 1, timeout);

	if (r < 0)
		return -1;
	cr_expect_eq(r, p.revents != 0, "scif_poll returned %d with revents %#x", r, p.revents);
	return p.revents;
}

/* poll(2) of one descriptor; returns revents. */
static int syspoll1(int fd, short events, int timeout)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, timeout) < 0 ? -1 : p.revents;
}

struct poll_job {
	scif_epd_t e;
	int ret;
	int err;
	int done;
};

static void *poll_thread(void *arg)
{
	struct poll_job *j = arg;
	struct scif_pollepd p = { .epd = j->e, .events = POLLIN };

	j->ret = scif_poll(&p, 1, -1);
	j->err = errno;
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(poll, listener_reports_pending_requests_C30, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 2), e, n;
	struct scif_portID peer;

	cr_expect_eq(poll1(l, POLLIN, 0), 0);
	cr_expect_eq(poll1(l, POLLIN, 100), 0);
	e = test_request(p);
	cr_expect_eq(poll1(l, POLLIN, 2000), POLLIN);
	cr_expect_eq(syspoll1(scif_get_fd(l), POLLIN, 2000), POLLIN);
	/* POLLOUT means nothing on a listener, even with a request pending. */
	cr_expect_eq(poll1(l, POLLOUT, 0), 0);
	cr_expect_eq(poll1(l, POLLIN | POLLOUT, 0), POLLIN);
	cr_assert_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	/* Nothing pending any more. */
	cr_expect_eq(poll1(l, POLLIN, 0), 0);
	cr_expect_eq(syspoll1(scif_get_fd(l), POLLIN, 0), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(poll, unconnected_endpoint_is_pollerr_C31)
{
	scif_epd_t e = scif_open();
	struct scif_pollepd p = { .epd = e, .events = POLLIN };

	cr_assert_geq(e, 0);
	cr_expect_eq(scif_poll(&p, 1, 0), 1);
	cr_expect_eq(p.revents, POLLERR);
	/* Reported even when not asked for, and for a bound endpoint too. */
	cr_expect_eq(poll1(e, 0, 0), POLLERR);
	cr_assert_gt(scif_bind(e, 0), 0);
	cr_expect_eq(poll1(e, POLLIN | POLLOUT, 0), POLLERR);
	scif_close(e);
}

Test(poll, closed_descriptor_is_pollnval_and_negative_ignored_C32)
{
	scif_epd_t e = scif_open(), d = scif_open();
	struct scif_pollepd p[3];
	int r;

	cr_assert_geq(e, 0);
	cr_assert_geq(d, 0);
	cr_assert_eq(scif_close(d), 0);
	p[0] = (struct scif_pollepd){ .epd = d, .events = POLLIN };
	p[1] = (struct scif_pollepd){ .epd = -1, .events = POLLIN, .revents = 0x7 };
	p[2] = (struct scif_pollepd){ .epd = e, .events = POLLIN };
	r = scif_poll(p, 3, 0);
	cr_expect_geq(r, 1);
	cr_expect_eq(p[0].revents, POLLNVAL);
	cr_expect_eq(p[1].revents, 0);
	cr_expect_eq(p[2].revents, POLLERR);
	cr_expect_eq(r, 2);
	scif_close(e);
}

Test(poll, connected_endpoint_in_and_out, .timeout = 20)
{
	scif_epd_t a, b;
	char c = 'z';

	test_pair(&a, &b, NULL);
	cr_expect_eq(poll1(a, POLLOUT, 0), POLLOUT);
	cr_expect_eq(poll1(a, POLLIN, 0), 0);
	cr_expect_eq(poll1(b, POLLIN, 100), 0);
	cr_expect_eq(syspoll1(scif_get_fd(b), POLLIN, 0), 0);
	cr_assert_eq(scif_send(a, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(poll1(b, POLLIN, 2000), POLLIN);
	cr_expect_eq(poll1(b, POLLIN | POLLOUT, 0), POLLIN | POLLOUT);
	cr_expect_eq(syspoll1(scif_get_fd(b), POLLIN, 2000), POLLIN);
	cr_expect_eq(scif_recv(b, &c, 1, 0), 1);
	cr_expect_eq(poll1(b, POLLIN, 0), 0);
	cr_expect_eq(syspoll1(scif_get_fd(b), POLLIN, 0), 0);
	scif_close(a);
	scif_close(b);
}

Test(poll, select_agrees_with_poll, .timeout = 20)
{
	struct timeval tv = { .tv_sec = 2 };
	scif_epd_t a, b;
	fd_set rd;
	char c = 'y';

	test_pair(&a, &b, NULL);
	cr_assert_lt(b, FD_SETSIZE);
	FD_ZERO(&rd);
	FD_SET(b, &rd);
	tv = (struct timeval){ 0 };
	cr_expect_eq(select(b + 1, &rd, NULL, NULL, &tv), 0);
	cr_assert_eq(scif_send(a, &c, 1, SCIF_SEND_BLOCK), 1);
	FD_ZERO(&rd);
	FD_SET(b, &rd);
	tv = (struct timeval){ .tv_sec = 2 };
	cr_expect_eq(select(b + 1, &rd, NULL, NULL, &tv), 1);
	cr_expect(FD_ISSET(b, &rd));
	scif_close(a);
	scif_close(b);
}

Test(poll, wakes_when_data_arrives, .timeout = 20)
{
	struct poll_job j;
	scif_epd_t a, b;
	pthread_t th;
	char c = 'w';

	test_pair(&a, &b, NULL);
	j = (struct poll_job){ .e = b };
	cr_assert_eq(pthread_create(&th, NULL, poll_thread, &j), 0);
	usleep(100000);
	cr_expect_eq(__atomic_load_n(&j.done, __ATOMIC_ACQUIRE), 0, "poll returned early");
	cr_assert_eq(scif_send(a, &c, 1, SCIF_SEND_BLOCK), 1);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, 1);
	scif_close(a);
	scif_close(b);
}

Test(poll, disconnected_endpoint_is_pollhup, .timeout = 20)
{
	scif_epd_t a, b;
	int rev;

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_close(b), 0);
	rev = poll1(a, POLLIN, 2000);
	cr_expect(rev > 0 && (rev & POLLHUP), "revents %#x, expected POLLHUP", rev);
	/* POLLHUP is reported even when not requested, and through poll(2). */
	rev = poll1(a, 0, 0);
	cr_expect(rev > 0 && (rev & POLLHUP), "revents %#x with events 0", rev);
	rev = syspoll1(scif_get_fd(a), POLLIN, 0);
	cr_expect(rev > 0 && (rev & POLLHUP), "poll(2) revents %#x", rev);
	scif_close(a);
}

Test(poll, connecting_endpoint_reports_nothing_until_done, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = test_request(p), n;
	struct scif_portID peer;
	int rev;

	cr_expect_eq(poll1(e, POLLIN | POLLOUT, 0), 0);
	cr_expect_eq(poll1(e, POLLOUT, 100), 0);
	cr_assert_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	rev = poll1(e, POLLOUT, 2000);
	cr_expect(rev > 0 && (rev & POLLOUT), "revents %#x after accept", rev);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

struct watch_job {
	scif_epd_t e;
	int bad;   /* revents other than 0 and POLLOUT seen while connecting */
	int done;  /* POLLOUT seen */
};

static void *watch_thread(void *arg)
{
	struct watch_job *j = arg;
	uint64_t until = test_now_ms() + 3000;

	while (test_now_ms() < until) {
		struct scif_pollepd p = { .epd = j->e, .events = POLLOUT };

		if (scif_poll(&p, 1, 0) < 0 || (p.revents & ~POLLOUT)) {
			j->bad = p.revents ? p.revents : -1;
			break;
		}
		if (p.revents & POLLOUT) {
			j->done = 1;
			break;
		}
	}
	return NULL;
}

Test(poll, connecting_endpoint_never_reports_pollerr, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = test_request(p), n;
	struct watch_job j = { .e = e };
	struct scif_portID peer;
	pthread_t th;

	/* Watch the endpoint through the whole handshake. */
	cr_assert_eq(pthread_create(&th, NULL, watch_thread, &j), 0);
	cr_assert_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	pthread_join(th, NULL);
	cr_expect_eq(j.bad, 0, "revents %#x while the connect was finishing", j.bad);
	cr_expect(j.bad || j.done, "no POLLOUT within 3 s");
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(poll, timeout_expires_with_zero, .timeout = 20)
{
	scif_epd_t a, b;
	uint64_t t0;

	test_pair(&a, &b, NULL);
	t0 = test_now_ms();
	cr_expect_eq(poll1(a, POLLIN, 200), 0);
	cr_expect_geq(test_now_ms() - t0, 150, "returned after %llu ms",
		      (unsigned long long)(test_now_ms() - t0));
	scif_close(a);
	scif_close(b);
}

Test(poll, other_descriptors_work_as_in_poll)
{
	struct scif_pollepd p[2];
	scif_epd_t e = scif_open();
	int fds[2];

	cr_assert_geq(e, 0);
	cr_assert_eq(pipe(fds), 0);
	p[0] = (struct scif_pollepd){ .epd = fds[0], .events = POLLIN };
	p[1] = (struct scif_pollepd){ .epd = fds[1], .events = POLLOUT };
	cr_expect_eq(scif_poll(p, 2, 0), 1);
	cr_expect_eq(p[0].revents, 0);
	cr_expect_eq(p[1].revents, POLLOUT);
	cr_assert_eq(write(fds[1], "x", 1), 1);
	cr_expect_eq(scif_poll(p, 1, 0), 1);
	cr_expect_eq(p[0].revents, POLLIN);
	close(fds[0]);
	close(fds[1]);
	scif_close(e);
}

Test(poll, empty_set_is_a_sleep)
{
	uint64_t t0 = test_now_ms();

	cr_expect_eq(scif_poll(NULL, 0, 50), 0);
	cr_expect_geq(test_now_ms() - t0, 30);
}

Test(poll, null_array_is_efault)
{
	expect_errno(scif_poll(NULL, 1, 0), EFAULT);
}

Test(poll, unmapped_array_is_efault)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	expect_errno(scif_poll(p, 1, 0), EFAULT);
	munmap(p, (size_t)pg);
}

Test(poll, too_many_entries_is_einval)
{
	struct scif_pollepd p = { .epd = -1 };
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur >= 0x7fffffff)
		cr_skip_test("RLIMIT_NOFILE unlimited");
	expect_errno(scif_poll(&p, (unsigned int)rl.rlim_cur + 1, 0), EINVAL);
}

Test(poll, signal_interrupts_with_eintr, .timeout = 20)
{
	struct sigaction sa;
	struct poll_job j;
	scif_epd_t a, b;
	pthread_t th;
	uint64_t until;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = test_on_signal;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	test_pair(&a, &b, NULL);
	j = (struct poll_job){ .e = b };
	cr_assert_eq(pthread_create(&th, NULL, poll_thread, &j), 0);
	usleep(100000);
	until = test_now_ms() + 3000;
	while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) && test_now_ms() < until) {
		pthread_kill(th, SIGUSR1);
		usleep(50000);
	}
	if (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE)) {
		char c = 0;

		cr_expect_fail("scif_poll not interrupted by a signal");
		scif_send(a, &c, 1, SCIF_SEND_BLOCK);
	}
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s)", j.err, strerror(j.err));
	scif_close(a);
	scif_close(b);
}

Test(poll, pollepd_is_layout_identical_to_pollfd)
{
	cr_expect_eq(sizeof(struct scif_pollepd), sizeof(struct pollfd));
	cr_expect_eq(offsetof(struct scif_pollepd, epd), offsetof(struct pollfd, fd));
	cr_expect_eq(offsetof(struct scif_pollepd, events), offsetof(struct pollfd, events));
	cr_expect_eq(offsetof(struct scif_pollepd, revents), offsetof(struct pollfd, revents));
}
