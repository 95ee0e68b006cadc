// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-accept.c - conformance of scif_accept() (spec 2.2, 3.2, 3.6; cases C14, C23-C25, C48).
 */
#include <sys/resource.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(accept, .timeout = 120);

/* A blocking scif_accept() run by a thread; t_done is when it returned. */
struct accept_job {
	scif_epd_t l, n;
	struct scif_portID peer;
	int ret;
	int err;
	int done;
	uint64_t t_done;
};

static void *accept_thread(void *arg)
{
	struct accept_job *j = arg;

	j->ret = scif_accept(j->l, &j->peer, &j->n, SCIF_ACCEPT_SYNC);
	j->err = errno;
	j->t_done = test_now_ms();
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int job_done(struct accept_job *j)
{
	return __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
}

static int job_wait(struct accept_job *j, int ms)
{
	uint64_t until = test_now_ms() + (uint64_t)ms;

	while (!job_done(j) && test_now_ms() < until)
		usleep(2000);
	return job_done(j);
}

static uint16_t self_node(void)
{
	uint16_t self = 0;

	scif_get_nodeIDs(NULL, 0, &self);
	return self;
}

/* Collect the result of a non-blocking connect started by test_request(). */
static int request_finish(scif_epd_t e)
{
	struct scif_pollepd p = { .epd = e, .events = POLLOUT };
	struct scif_portID dst = { .node = self_node(), .port = 1 };

	/* The collecting call reports the stored result whatever dst says. */
	if (scif_poll(&p, 1, 2000) != 1)
		return -1;
	return scif_connect(e, &dst);
}

Test(accept, null_pointers_are_einval_C14)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), n = -1;
	struct scif_portID peer;

	expect_errno(scif_accept(l, NULL, &n, 0), EINVAL);
	expect_errno(scif_accept(l, &peer, NULL, 0), EINVAL);
	expect_errno(scif_accept(l, NULL, &n, SCIF_ACCEPT_SYNC), EINVAL);
	/* A library check, made even before the descriptor is looked at. */
	expect_errno(scif_accept(-1, NULL, &n, 0), EINVAL);
	expect_errno(scif_accept(-1, &peer, NULL, 0), EINVAL);
	scif_close(l);
}

Test(accept, empty_queue_without_sync_is_eagain_C23)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), n = -1;
	struct scif_portID peer;

	expect_errno(scif_accept(l, &peer, &n, 0), EAGAIN);
	scif_close(l);
}

Test(accept, unknown_flags_are_einval_C24)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), n = -1, e = scif_open();
	struct scif_portID peer;

	cr_assert_geq(e, 0);
	expect_errno(scif_accept(l, &peer, &n, 2), EINVAL);
	expect_errno(scif_accept(l, &peer, &n, 3), EINVAL);
	/* Flags come before the queue: a pending request does not change the answer. */
	scif_close(e);
	e = test_request(p);
	expect_errno(scif_accept(l, &peer, &n, 2), EINVAL);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	cr_expect_gt(request_finish(e), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(accept, bound_endpoint_is_einval_C25)
{
	scif_epd_t e = scif_open(), n = -1;
	struct scif_portID peer;

	cr_assert_geq(e, 0);
	expect_errno(scif_accept(e, &peer, &n, 0), EINVAL);
	cr_assert_gt(scif_bind(e, 0), 0);
	expect_errno(scif_accept(e, &peer, &n, 0), EINVAL);
	expect_errno(scif_accept(e, &peer, &n, SCIF_ACCEPT_SYNC), EINVAL);
	scif_close(e);
}

Test(accept, connected_endpoints_are_einval, .timeout = 20)
{
	scif_epd_t a, b, n = -1;
	struct scif_portID peer;

	test_pair(&a, &b, NULL);
	expect_errno(scif_accept(a, &peer, &n, 0), EINVAL);
	expect_errno(scif_accept(b, &peer, &n, SCIF_ACCEPT_SYNC), EINVAL);
	scif_close(b);
	/* a is now disconnected. */
	{
		struct scif_pollepd pe = { .epd = a, .events = POLLIN };

		cr_assert(scif_poll(&pe, 1, 1000) == 1 && (pe.revents & POLLHUP), "no POLLHUP");
	}
	expect_errno(scif_accept(a, &peer, &n, 0), EINVAL);
	scif_close(a);
}

Test(accept, connecting_endpoint_is_einval, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = test_request(p), n = -1, m = -1;
	struct scif_portID peer;

	expect_errno(scif_accept(e, &peer, &m, 0), EINVAL);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	cr_expect_gt(request_finish(e), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(accept, returns_connected_endpoint_and_stays_listening, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 2), e = test_request(p), n = -1, m = -1;
	struct scif_portID peer = { 0, 0 };
	char c = 'q';
	int port;

	cr_assert_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	cr_expect_geq(n, 0);
	port = request_finish(e);
	cr_expect_gt(port, 0);
	cr_expect_eq(peer.node, self_node());
	cr_expect_eq(peer.port, port);
	cr_expect_eq(scif_send(n, &c, 1, SCIF_SEND_BLOCK), 1);
	c = 0;
	cr_expect_eq(scif_recv(e, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_expect_eq(c, 'q');
	/* Still listening: the queue is just empty. */
	expect_errno(scif_accept(l, &peer, &m, 0), EAGAIN);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(accept, takes_the_oldest_request_first, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 4), e1, e2, n1 = -1, n2 = -1;
	struct scif_portID peer1, peer2;
	struct scif_pollepd pe = { .epd = l, .events = POLLIN };
	int p1, p2;

	e1 = test_request(p);
	cr_assert_eq(scif_poll(&pe, 1, 2000), 1);
	e2 = test_request(p);
	cr_expect_eq(scif_accept(l, &peer1, &n1, SCIF_ACCEPT_SYNC), 0);
	cr_expect_eq(scif_accept(l, &peer2, &n2, SCIF_ACCEPT_SYNC), 0);
	p1 = request_finish(e1);
	p2 = request_finish(e2);
	cr_expect_gt(p1, 0);
	cr_expect_gt(p2, 0);
	cr_expect_eq(peer1.port, p1, "first accept got port %u, oldest request was %d",
		     peer1.port, p1);
	cr_expect_eq(peer2.port, p2);
	scif_close(n1);
	scif_close(n2);
	scif_close(e1);
	scif_close(e2);
	scif_close(l);
}

Test(accept, withdrawn_request_is_skipped, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 4), e1 = test_request(p), e2, n = -1;
	struct scif_pollepd pe = { .epd = l, .events = POLLIN };
	struct scif_portID peer;
	int p2;

	cr_assert_eq(scif_poll(&pe, 1, 2000), 1);
	/* The requester goes away before the accept. */
	cr_assert_eq(scif_close(e1), 0);
	usleep(100000);
	expect_errno(scif_accept(l, &peer, &n, 0), EAGAIN);
	pe.revents = 0;
	cr_expect_eq(scif_poll(&pe, 1, 0), 0, "listener still shows a request (%#x)", pe.revents);
	/* A later request is accepted normally. */
	e2 = test_request(p);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	p2 = request_finish(e2);
	cr_expect_gt(p2, 0);
	cr_expect_eq(peer.port, p2);
	scif_close(n);
	scif_close(e2);
	scif_close(l);
}

Test(accept, sync_skips_withdrawn_request, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 4), e1 = test_request(p), e2, n = -1;
	struct scif_pollepd pe = { .epd = l, .events = POLLIN };
	struct scif_portID peer;
	int p2;

	cr_assert_eq(scif_poll(&pe, 1, 2000), 1);
	cr_assert_eq(scif_close(e1), 0);
	e2 = test_request(p);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	p2 = request_finish(e2);
	cr_expect_gt(p2, 0);
	cr_expect_eq(peer.port, p2, "accepted port %u, live requester is %d", peer.port, p2);
	scif_close(n);
	scif_close(e2);
	scif_close(l);
}

Test(accept, sync_waits_for_a_request, .timeout = 20)
{
	uint16_t p = test_port();
	struct accept_job j = { .l = test_listener(p, 1), .n = -1 };
	scif_epd_t e;
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, accept_thread, &j), 0);
	usleep(200000);
	cr_expect_eq(job_done(&j), 0, "SYNC accept returned (%d, %s) with no request", j.ret,
		     strerror(j.err));
	e = test_request(p);
	cr_expect(job_wait(&j, 2000), "SYNC accept did not return after a request");
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, 0, "accept: %d (%s)", j.ret, strerror(j.err));
	cr_expect_gt(request_finish(e), 0);
	scif_close(j.n);
	scif_close(e);
	scif_close(j.l);
}

Test(accept, no_descriptor_left_is_emfile_and_keeps_request, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = test_request(p), n = -1;
	struct scif_pollepd pe = { .epd = l, .events = POLLIN };
	struct scif_portID peer;
	struct rlimit old, low;
	int fill[1024], nfill = 0, fd, r, err;
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	cr_assert_geq(null, 0);
	cr_assert_eq(scif_poll(&pe, 1, 2000), 1);
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Use up every descriptor below a low limit. */
	low = old;
	low.rlim_cur = 256;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (nfill < 1024 && (fd = dup(null)) >= 0)
		fill[nfill++] = fd;
	cr_assert_eq(errno, EMFILE);
	errno = 0;
	r = scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC);
	err = errno;

	while (nfill > 0)
		close(fill[--nfill]);
	setrlimit(RLIMIT_NOFILE, &old);
	close(null);
	cr_expect_eq(r, -1, "accept returned %d with no descriptor free", r);
	cr_expect(err == EMFILE || err == ENFILE, "errno %d (%s), expected EMFILE", err,
		  strerror(err));
	/* The request was not consumed. */
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	cr_expect_gt(request_finish(e), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(accept, sync_interrupted_by_signal_is_eintr, .timeout = 20)
{
	uint16_t p = test_port();
	struct accept_job j = { .l = test_listener(p, 1), .n = -1 };
	uint64_t until;
	pthread_t th;

	test_install_sigusr1();
	cr_assert_eq(pthread_create(&th, NULL, accept_thread, &j), 0);
	usleep(100000);
	/* Signal until the call returns, in case the first one lands before it sleeps. */
	until = test_now_ms() + 3000;
	while (!job_done(&j) && test_now_ms() < until) {
		pthread_kill(th, SIGUSR1);
		usleep(50000);
	}
	cr_expect(job_done(&j), "SYNC accept not interrupted by a signal");
	if (!job_done(&j)) {
		/* Let it finish so the thread can be joined. */
		scif_epd_t e = test_request(p);

		pthread_join(th, NULL);
		scif_close(e);
	} else {
		pthread_join(th, NULL);
	}
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s), expected EINTR", j.err, strerror(j.err));
	scif_close(j.l);
}

Test(accept, listener_closed_under_sync_accept_is_eintr_C48, .timeout = 20)
{
	uint16_t p = test_port();
	struct accept_job j = { .l = test_listener(p, 1), .n = -1 };
	pthread_t th;
	uint64_t t0;

	cr_assert_eq(pthread_create(&th, NULL, accept_thread, &j), 0);
	usleep(200000);
	cr_assert_eq(job_done(&j), 0);
	t0 = test_now_ms();
	cr_expect_eq(scif_close(j.l), 0);
	cr_expect(job_wait(&j, 2000), "accept still blocked after the listener was closed");
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s), expected EINTR", j.err, strerror(j.err));
	cr_expect_lt(j.t_done - t0, 2000);
}
