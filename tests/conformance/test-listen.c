// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-listen.c - conformance of scif_listen() and of the backlog (spec 2.2, 3.4, 4.1;
 * cases C09-C11, C21, C22).
 */
#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(listen, .timeout = 120);

/* A blocking scif_connect() run by a thread. */
struct conn_job {
	scif_epd_t e;
	struct scif_portID dst;
	int ret;
	int err;
	int done;
};

static void *connect_thread(void *arg)
{
	struct conn_job *j = arg;

	j->ret = scif_connect(j->e, &j->dst);
	j->err = errno;
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static uint16_t self_node(void)
{
	uint16_t self = 0;

	scif_get_nodeIDs(NULL, 0, &self);
	return self;
}

Test(listen, unbound_endpoint_is_einval_C09)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	expect_errno(scif_listen(e, 1), EINVAL);
	scif_close(e);
}

Test(listen, backlog_not_positive_is_einval_C10)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_assert_gt(scif_bind(e, 0), 0);
	expect_errno(scif_listen(e, 0), EINVAL);
	expect_errno(scif_listen(e, -5), EINVAL);
	/* The failed calls left the endpoint bound: a valid listen still works. */
	cr_expect_eq(scif_listen(e, 1), 0);
	scif_close(e);
}

Test(listen, backlog_checked_before_state)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_assert_gt(scif_bind(e, 0), 0);
	cr_assert_eq(scif_listen(e, 1), 0);
	/* Listening already (EISCONN), but a bad backlog is reported first. */
	expect_errno(scif_listen(e, 0), EINVAL);
	scif_close(e);
}

Test(listen, twice_is_eisconn_C11)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_assert_gt(scif_bind(e, 0), 0);
	cr_expect_eq(scif_listen(e, 1), 0);
	expect_errno(scif_listen(e, 1), EISCONN);
	scif_close(e);
}

Test(listen, connected_endpoints_are_eisconn)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_listen(a, 1), EISCONN);
	expect_errno(scif_listen(b, 1), EISCONN);
	scif_close(a);
	scif_close(b);
}

Test(listen, disconnected_endpoint_is_einval, .timeout = 20)
{
	struct scif_pollepd p;
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	scif_close(b);
	p = (struct scif_pollepd){ .epd = a, .events = POLLIN };
	cr_assert(scif_poll(&p, 1, 1000) == 1 && (p.revents & POLLHUP), "no POLLHUP");
	expect_errno(scif_listen(a, 1), EINVAL);
	scif_close(a);
}

Test(listen, connecting_endpoint_is_eisconn, .timeout = 20)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 4), e = scif_open(), n;
	struct scif_portID dst = { .node = self_node(), .port = p }, peer;

	cr_assert_geq(e, 0);
	cr_assert_eq(fcntl(scif_get_fd(e), F_SETFL, O_NONBLOCK), 0);
	expect_errno(scif_connect(e, &dst), EINPROGRESS);
	expect_errno(scif_listen(e, 1), EISCONN);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(listen, endpoint_left_bound_by_failed_connect_can_listen, .timeout = 20)
{
	scif_epd_t e = scif_open();
	struct scif_portID dst = { .node = self_node(), .port = test_port() };

	cr_assert_geq(e, 0);
	expect_errno(scif_connect(e, &dst), ECONNREFUSED);
	cr_expect_eq(scif_listen(e, 1), 0);
	scif_close(e);
}

Test(listen, backlog_full_refuses_new_request_C21, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), e2 = scif_open(), n;
	struct conn_job j = { .e = scif_open(), .dst = { .node = self_node(), .port = p } };
	struct scif_portID dst = j.dst, peer;
	uint64_t t0;
	pthread_t th;

	cr_assert_geq(j.e, 0);
	cr_assert_geq(e2, 0);
	cr_assert_eq(pthread_create(&th, NULL, connect_thread, &j), 0);
	cr_assert(test_wait_request(l, 2000), "the first request never became pending");
	/* One request is pending and the backlog is 1: the second is refused at once. */
	t0 = test_now_ms();
	expect_errno(scif_connect(e2, &dst), ECONNREFUSED);
	cr_expect_lt(test_now_ms() - t0, 3000, "refusal took %llu ms",
		     (unsigned long long)(test_now_ms() - t0));
	cr_expect_eq(__atomic_load_n(&j.done, __ATOMIC_ACQUIRE), 0,
		     "the first connect returned before any accept");
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	pthread_join(th, NULL);
	cr_expect_gt(j.ret, 0, "first connect: %d (%s)", j.ret, strerror(j.err));
	scif_close(n);
	scif_close(j.e);
	scif_close(e2);
	scif_close(l);
}

Test(listen, accepted_connections_do_not_count_against_backlog, .timeout = 30)
{
	uint16_t p = test_port();
	scif_epd_t l = test_listener(p, 1), n1, n2;
	struct conn_job j1 = { .e = scif_open(), .dst = { .node = self_node(), .port = p } };
	struct conn_job j2 = j1;
	struct scif_portID peer;
	pthread_t t1, t2;

	j2.e = scif_open();
	cr_assert_geq(j1.e, 0);
	cr_assert_geq(j2.e, 0);
	cr_assert_eq(pthread_create(&t1, NULL, connect_thread, &j1), 0);
	cr_assert(test_wait_request(l, 2000));
	cr_assert_eq(scif_accept(l, &peer, &n1, SCIF_ACCEPT_SYNC), 0);
	pthread_join(t1, NULL);
	cr_expect_gt(j1.ret, 0);
	/* Backlog 1, one connection accepted: another request is still admitted. */
	cr_assert_eq(pthread_create(&t2, NULL, connect_thread, &j2), 0);
	cr_expect_eq(scif_accept(l, &peer, &n2, SCIF_ACCEPT_SYNC), 0);
	pthread_join(t2, NULL);
	cr_expect_gt(j2.ret, 0, "second connect: %d (%s)", j2.ret, strerror(j2.err));
	scif_close(n1);
	scif_close(n2);
	scif_close(j1.e);
	scif_close(j2.e);
	scif_close(l);
}

Test(listen, large_backlog_is_clamped_not_rejected_C22)
{
	scif_epd_t e = scif_open();

	cr_assert_geq(e, 0);
	cr_assert_gt(scif_bind(e, 0), 0);
	cr_expect_eq(scif_listen(e, 5000), 0);
	scif_close(e);
}
