// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-connect.c - conformance of scif_connect(), blocking and non-blocking (spec 2.2, 3.5,
 * 4.1; cases C13-C20, C27-C29, C47).
 */
#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(connect, .timeout = 120);

/* A blocking scif_connect() run by a thread; t_done is when it returned. */
struct conn_job {
	scif_epd_t e;
	struct scif_portID dst;
	int ret;
	int err;
	int done;
	uint64_t t_done;
};

static void *connect_thread(void *arg)
{
	struct conn_job *j = arg;

	j->ret = scif_connect(j->e, &j->dst);
	j->err = errno;
	j->t_done = test_now_ms();
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int job_done(struct conn_job *j)
{
	return __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
}

/* Wait up to @ms for the job to finish; returns whether it did. */
static int job_wait(struct conn_job *j, int ms)
{
	uint64_t until = test_now_ms() + (uint64_t)ms;

	while (!job_done(j) && test_now_ms() < until)
		usleep(2000);
	return job_done(j);
}

struct acceptor {
	scif_epd_t l, n;
	struct scif_portID peer;
	int ret;
};

static void *accept_thread(void *arg)
{
	struct acceptor *acc = arg;

	acc->ret = scif_accept(acc->l, &acc->peer, &acc->n, SCIF_ACCEPT_SYNC);
	return NULL;
}

static uint16_t self_node(void)
{
	uint16_t self = 0;

	scif_get_nodeIDs(NULL, 0, &self);
	return self;
}

/* Connect @e to the listener @l on @port with an accepting thread; returns connect's result. */
static int connect_accepted(scif_epd_t e, scif_epd_t l, uint16_t port, struct acceptor *acc)
{
	struct scif_portID dst = { .node = self_node(), .port = port };
	pthread_t th;
	int r;

	acc->l = l;
	acc->n = -1;
	cr_assert_eq(pthread_create(&th, NULL, accept_thread, acc), 0);
	r = scif_connect(e, &dst);
	pthread_join(th, NULL);
	return r;
}

static void set_nonblock(scif_epd_t e, int on)
{
	int fl = fcntl(scif_get_fd(e), F_GETFL);

	cr_assert_geq(fl, 0);
	cr_assert_eq(fcntl(scif_get_fd(e), F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

Test(connect, listening_endpoint_is_eopnotsupp_C13)
{
	uint16_t p1 = test_port(), p2 = test_port();
	scif_epd_t l1 = test_listener(p1, 1), l2 = test_listener(p2, 1);
	struct scif_portID dst = { .node = self_node(), .port = p2 };

	expect_errno(scif_connect(l1, &dst), EOPNOTSUPP);
	scif_close(l1);
	scif_close(l2);
}

Test(connect, null_destination_is_einval_C14)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	expect_errno(scif_connect(e, NULL), EINVAL);
	/* A library check, made before the descriptor is looked at. */
	expect_errno(scif_connect(-1, NULL), EINVAL);
	scif_close(e);
}

Test(connect, port_zero_is_einval_C15)
{
	scif_epd_t e = scif_open();
	struct scif_portID dst = { .node = self_node(), .port = 0 };

	cr_assert_geq(e, 0);
	expect_errno(scif_connect(e, &dst), EINVAL);
	scif_close(e);
}

Test(connect, nonexistent_node_is_enodev_C16)
{
	scif_epd_t e = scif_open();
	struct scif_portID dst = { .node = 65535, .port = test_port() };
	uint16_t nodes[64], self;
	int n = scif_get_nodeIDs(nodes, 64, &self);

	cr_assert_geq(e, 0);
	cr_assert_geq(n, 1);
	expect_errno(scif_connect(e, &dst), ENODEV);
	/* Node 5 is above the highest id of the default two-node fabric. */
	if (nodes[(n < 64 ? n : 64) - 1] < 5) {
		dst.node = 5;
		expect_errno(scif_connect(e, &dst), ENODEV);
	}
	scif_close(e);
}

Test(connect, node_checked_before_port_and_state)
{
	scif_epd_t e = scif_open();
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1);
	struct scif_portID dst = { .node = 65535, .port = 0 };

	cr_assert_geq(e, 0);
	expect_errno(scif_connect(e, &dst), ENODEV);
	/* Arguments come before the state: a listener gets ENODEV/EINVAL, not EOPNOTSUPP. */
	expect_errno(scif_connect(l, &dst), ENODEV);
	dst.node = self_node();
	expect_errno(scif_connect(l, &dst), EINVAL);
	scif_close(l);
	scif_close(e);
}

Test(connect, no_listener_is_econnrefused_promptly_C17, .timeout = 30)
{
	scif_epd_t e1 = scif_open(), e2 = scif_open(), x = scif_open();
	uint16_t p1 = test_port(), p2 = test_port();
	struct scif_portID dst = { .node = self_node(), .port = p1 };
	uint64_t t0;

	cr_assert_geq(e1, 0);
	cr_assert_geq(e2, 0);
	cr_assert_geq(x, 0);
	/* Nothing bound on p1. */
	t0 = test_now_ms();
	expect_errno(scif_connect(e1, &dst), ECONNREFUSED);
	cr_expect_lt(test_now_ms() - t0, 2000, "refusal not prompt");
	/* p2 bound but not listening. */
	cr_assert_eq(scif_bind(x, p2), p2);
	dst.port = p2;
	t0 = test_now_ms();
	expect_errno(scif_connect(e2, &dst), ECONNREFUSED);
	cr_expect_lt(test_now_ms() - t0, 2000, "refusal not prompt");
	/* x connecting to its own, non-listening port. */
	t0 = test_now_ms();
	expect_errno(scif_connect(x, &dst), ECONNREFUSED);
	cr_expect_lt(test_now_ms() - t0, 2000, "refusal not prompt");
	scif_close(e1);
	scif_close(e2);
	scif_close(x);
}

Test(connect, no_listener_on_other_node_is_econnrefused, .timeout = 30)
{
	scif_epd_t e = scif_open();
	uint16_t nodes[64], self;
	int n = scif_get_nodeIDs(nodes, 64, &self);
	struct scif_portID dst = { .port = test_port() };

	cr_assert_geq(e, 0);
	if (n < 2)
		cr_skip_test("only one node online");
	dst.node = nodes[0] == self ? nodes[1] : nodes[0];
	expect_errno(scif_connect(e, &dst), ECONNREFUSED);
	scif_close(e);
}

Test(connect, failed_connect_keeps_auto_bound_port_C18, .timeout = 30)
{
	scif_epd_t e = scif_open();
	uint16_t p = test_port(), dead = test_port();
	struct scif_portID dst = { .node = self_node(), .port = dead };
	struct acceptor acc;
	scif_epd_t l;
	int r;

	cr_assert_geq(e, 0);
	expect_errno(scif_connect(e, &dst), ECONNREFUSED);
	/* The refused connect auto-bound the endpoint, and it stays bound. */
	expect_errno(scif_bind(e, 0), EINVAL);
	l = test_listener(p, 1);
	r = connect_accepted(e, l, p, &acc);
	cr_expect_gt(r, 0, "connect after refusal: %d (%s)", r, strerror(errno));
	cr_expect_eq(acc.ret, 0);
	cr_expect_eq(acc.peer.port, r, "accept saw port %u, connect returned %d", acc.peer.port, r);
	scif_close(acc.n);
	scif_close(e);
	scif_close(l);
}

Test(connect, returns_local_port_seen_by_acceptor_C19, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = scif_open();
	struct acceptor acc;
	int r;

	cr_assert_geq(e, 0);
	r = connect_accepted(e, l, p, &acc);
	cr_expect_geq(r, SCIF_PORT_RSVD, "connect returned %d", r);
	cr_expect_eq(acc.ret, 0);
	cr_expect_eq(acc.peer.node, self_node());
	cr_expect_eq(acc.peer.port, r, "accept saw port %u, connect returned %d", acc.peer.port, r);
	scif_close(acc.n);
	scif_close(e);
	scif_close(l);
}

Test(connect, explicitly_bound_endpoint_connects_from_its_port, .timeout = 30)
{
	uint16_t p = test_port(), cp = test_port();
	scif_epd_t l = test_listener(p, 1), e = scif_open();
	struct acceptor acc;
	int r;

	cr_assert_geq(e, 0);
	cr_assert_eq(scif_bind(e, cp), cp);
	r = connect_accepted(e, l, p, &acc);
	cr_expect_eq(r, cp);
	cr_expect_eq(acc.peer.port, cp);
	scif_close(acc.n);
	scif_close(e);
	scif_close(l);
}

Test(connect, blocking_connect_waits_for_accept_C20, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), n;
	struct conn_job j = { .e = scif_open(), .dst = { .node = self_node(), .port = p } };
	struct scif_portID peer;
	pthread_t th;

	cr_assert_geq(j.e, 0);
	cr_assert_eq(pthread_create(&th, NULL, connect_thread, &j), 0);
	usleep(300000);
	cr_expect_eq(job_done(&j), 0, "connect returned (%d, %s) with nobody accepting", j.ret,
		     strerror(j.err));
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	pthread_join(th, NULL);
	cr_expect_gt(j.ret, 0, "connect: %d (%s)", j.ret, strerror(j.err));
	scif_close(n);
	scif_close(j.e);
	scif_close(l);
}

Test(connect, second_connect_during_blocking_connect_is_eisconn, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 2), n;
	struct conn_job j1 = { .e = scif_open(), .dst = { .node = self_node(), .port = p } };
	struct conn_job j2 = j1;
	struct scif_portID peer;
	pthread_t t1, t2;
	int prompt;

	cr_assert_geq(j1.e, 0);
	cr_assert_eq(pthread_create(&t1, NULL, connect_thread, &j1), 0);
	cr_assert(test_wait_request(l, 2000), "the first request never became pending");
	/* Same endpoint, while the first (blocking) connect is still waiting for accept. */
	cr_assert_eq(pthread_create(&t2, NULL, connect_thread, &j2), 0);
	prompt = job_wait(&j2, 1000);
	cr_expect(prompt, "the second connect did not return while the first was pending");
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	cr_expect_gt(j1.ret, 0, "first connect: %d (%s)", j1.ret, strerror(j1.err));
	cr_expect_eq(j2.ret, -1, "second connect returned %d", j2.ret);
	cr_expect_eq(j2.err, EISCONN, "second connect: errno %d (%s), expected EISCONN", j2.err,
		     strerror(j2.err));
	scif_close(n);
	scif_close(j1.e);
	scif_close(l);
}

Test(connect, nonblocking_connect_C27, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = scif_open(), n;
	struct scif_portID dst = { .node = self_node(), .port = p }, peer;
	struct scif_pollepd pe;
	struct pollfd pf;
	char c = 'x';
	int r;

	cr_assert_geq(e, 0);
	set_nonblock(e, 1);
	expect_errno(scif_connect(e, &dst), EINPROGRESS);
	expect_errno(scif_connect(e, &dst), EINPROGRESS);
	/* Not finished before the accept: no POLLOUT. */
	pe = (struct scif_pollepd){ .epd = e, .events = POLLOUT };
	cr_expect_eq(scif_poll(&pe, 1, 0), 0, "revents %#x before accept", pe.revents);
	pf = (struct pollfd){ .fd = scif_get_fd(e), .events = POLLOUT };
	cr_expect_eq(poll(&pf, 1, 0), 0, "poll(2) revents %#x before accept", pf.revents);
	cr_assert_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	pe = (struct scif_pollepd){ .epd = e, .events = POLLOUT };
	cr_expect_eq(scif_poll(&pe, 1, 2000), 1);
	cr_expect(pe.revents & POLLOUT, "revents %#x after accept", pe.revents);
	pf = (struct pollfd){ .fd = scif_get_fd(e), .events = POLLOUT };
	cr_expect_eq(poll(&pf, 1, 2000), 1);
	cr_expect(pf.revents & POLLOUT, "poll(2) revents %#x after accept", pf.revents);
	r = scif_connect(e, &dst);
	cr_expect_gt(r, 0, "collecting connect: %d (%s)", r, strerror(errno));
	cr_expect_eq(peer.port, r);
	/* The connection works. */
	cr_expect_eq(scif_send(e, &c, 1, SCIF_SEND_BLOCK), 1);
	c = 0;
	cr_expect_eq(scif_recv(n, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_expect_eq(c, 'x');
	/* Collected once; afterwards it is an ordinary connected endpoint. */
	expect_errno(scif_connect(e, &dst), EISCONN);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(connect, nonblocking_connect_refused_C28, .timeout = 30)
{
	uint16_t dead = test_port(), p = test_port();
	scif_epd_t e = scif_open(), l;
	struct scif_portID dst = { .node = self_node(), .port = dead };
	struct scif_pollepd pe = { .epd = e, .events = POLLOUT };
	struct acceptor acc;
	int r;

	cr_assert_geq(e, 0);
	set_nonblock(e, 1);
	errno = 0;
	r = scif_connect(e, &dst);
	cr_expect_eq(r, -1);
	cr_expect(errno == EINPROGRESS || errno == ECONNREFUSED, "errno %d (%s)", errno,
		  strerror(errno));
	if (r == -1 && errno == EINPROGRESS) {
		cr_expect_eq(scif_poll(&pe, 1, 2000), 1);
		cr_expect(pe.revents & POLLOUT, "revents %#x", pe.revents);
		expect_errno(scif_connect(e, &dst), ECONNREFUSED);
	}
	/* Usable for a new connect. */
	set_nonblock(e, 0);
	l = test_listener(p, 1);
	r = connect_accepted(e, l, p, &acc);
	cr_expect_gt(r, 0, "reconnect: %d (%s)", r, strerror(errno));
	cr_expect_eq(acc.ret, 0);
	scif_close(acc.n);
	scif_close(e);
	scif_close(l);
}

Test(connect, connected_endpoints_are_eisconn_C29, .timeout = 30)
{
	uint16_t p = test_port(), p2 = test_port();
	scif_epd_t l = test_listener(p, 1), l2 = test_listener(p2, 1), e = scif_open();
	struct scif_portID dst = { .node = self_node(), .port = p2 };
	struct acceptor acc;

	cr_assert_geq(e, 0);
	cr_assert_gt(connect_accepted(e, l, p, &acc), 0);
	expect_errno(scif_connect(e, &dst), EISCONN);
	expect_errno(scif_connect(acc.n, &dst), EISCONN);
	scif_close(acc.n);
	scif_close(e);
	scif_close(l);
	scif_close(l2);
}

Test(connect, disconnected_endpoint_is_einval, .timeout = 30)
{
	uint16_t p = test_port(), p2 = test_port();
	scif_epd_t l = test_listener(p, 1), l2 = test_listener(p2, 1), e = scif_open();
	struct scif_portID dst = { .node = self_node(), .port = p2 };
	struct scif_pollepd pe = { .epd = e, .events = POLLIN };
	struct acceptor acc;

	cr_assert_geq(e, 0);
	cr_assert_gt(connect_accepted(e, l, p, &acc), 0);
	scif_close(acc.n);
	cr_assert(scif_poll(&pe, 1, 1000) == 1 && (pe.revents & POLLHUP), "no POLLHUP");
	expect_errno(scif_connect(e, &dst), EINVAL);
	scif_close(e);
	scif_close(l);
	scif_close(l2);
}

Test(connect, listener_closed_with_pending_request_refuses_C47, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1);
	struct conn_job j = { .e = scif_open(), .dst = { .node = self_node(), .port = p } };
	pthread_t th;
	uint64_t t0;

	cr_assert_geq(j.e, 0);
	cr_assert_eq(pthread_create(&th, NULL, connect_thread, &j), 0);
	cr_assert(test_wait_request(l, 2000), "the request never became pending");
	t0 = test_now_ms();
	cr_expect_eq(scif_close(l), 0);
	cr_expect(job_wait(&j, 1000), "connect still blocked 1 s after the listener closed");
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1, "connect returned %d", j.ret);
	cr_expect_eq(j.err, ECONNREFUSED, "errno %d (%s), expected ECONNREFUSED", j.err,
		     strerror(j.err));
	cr_expect_lt(j.t_done - t0, 1000, "refused after %llu ms",
		     (unsigned long long)(j.t_done - t0));
	scif_close(j.e);
}

Test(connect, unaccepted_blocking_connect_gives_up_with_econnrefused, .timeout = 60)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e = scif_open(), n = -1;
	struct scif_portID dst = { .node = self_node(), .port = p }, peer;
	struct scif_pollepd pe = { .epd = l, .events = POLLIN };
	uint64_t t0 = test_now_ms(), dt;

	cr_assert_geq(e, 0);
	/* Nobody accepts: the library's limit is 10 s (spec 3.5 decision). */
	expect_errno(scif_connect(e, &dst), ECONNREFUSED);
	dt = test_now_ms() - t0;
	cr_expect_geq(dt, 5000, "gave up after %llu ms", (unsigned long long)dt);
	cr_expect_lt(dt, 30000, "gave up after %llu ms", (unsigned long long)dt);
	/* The request was withdrawn from the listener's queue. */
	usleep(100000);
	cr_expect_eq(scif_poll(&pe, 1, 0), 0, "listener still shows a request (%#x)", pe.revents);
	expect_errno(scif_accept(l, &peer, &n, 0), EAGAIN);
	scif_close(e);
	scif_close(l);
}
