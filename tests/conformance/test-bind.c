// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bind.c - conformance of scif_bind() and of port ownership (spec 2.4, 3.3; cases C03-C08,
 * C12, C26, C45).
 */
#include <grp.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(bind, .timeout = 120);

/* A port below SCIF_ADMIN_PORT_END that parallel test processes do not share. */
static uint16_t test_priv_port(void)
{
	return (uint16_t)(600 + (unsigned)getpid() % 400u);
}

/* Bind @pn on a fresh endpoint, retrying for up to 1 s while the port is still taken. */
static int bind_retry(scif_epd_t e, uint16_t pn)
{
	uint64_t until = test_now_ms() + 1000;
	int r;

	while ((r = scif_bind(e, pn)) < 0 && errno == EINVAL && test_now_ms() < until)
		usleep(5000);
	return r;
}

/* Wait up to 1 s for @e to report POLLHUP (its peer is gone). */
static int wait_hup(scif_epd_t e)
{
	struct scif_pollepd p = { .epd = e, .events = POLLIN };

	return scif_poll(&p, 1, 1000) == 1 && (p.revents & POLLHUP);
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

/*
 * A connected pair through a listener on port @lp: *a connects (bound to @cp first unless it
 * is 0), *b is the accepted endpoint, *l the listener (left open).
 */
static void pair_on(uint16_t lp, uint16_t cp, scif_epd_t *a, scif_epd_t *b, scif_epd_t *l)
{
	struct acceptor acc = { .n = -1 };
	struct scif_portID dst;
	uint16_t self;
	pthread_t th;
	int r;

	scif_get_nodeIDs(NULL, 0, &self);
	acc.l = scif_open();
	cr_assert_geq(acc.l, 0);
	cr_assert_eq(scif_bind(acc.l, lp), lp);
	cr_assert_eq(scif_listen(acc.l, 4), 0);
	*a = scif_open();
	cr_assert_geq(*a, 0);
	if (cp)
		cr_assert_eq(scif_bind(*a, cp), cp);
	cr_assert_eq(pthread_create(&th, NULL, accept_thread, &acc), 0);
	dst.node = self;
	dst.port = lp;
	r = scif_connect(*a, &dst);
	pthread_join(th, NULL);
	cr_assert_gt(r, 0, "connect: %s", strerror(errno));
	cr_assert_eq(acc.ret, 0, "accept failed");
	*b = acc.n;
	*l = acc.l;
}

/*
 * Run @fn without privilege and collect the four numbers it reports. As root (CI), in a
 * fork()ed child that drops to nobody: a different uid is a different SCIF domain, which is
 * fine for bind. The child never calls cr_* and leaves through _exit.
 */
static void run_unprivileged(void (*fn)(int res[4]), int res[4])
{
	size_t got = 0;
	pid_t pid;
	int p[2], st;

	if (geteuid() != 0) {
		fn(res);
		return;
	}
	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int r[4] = { -100, -100, -100, -100 };

		close(p[0]);
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534))
			_exit(2);
		fn(r);
		if (write(p[1], r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	while (got < 4 * sizeof(int)) {
		ssize_t n = read(p[0], (char *)res + got, 4 * sizeof(int) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	test_waitpid(pid, &st, 30000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unprivileged child failed (status %#x)",
		  st);
	cr_assert_eq(got, 4 * sizeof(int));
}

Test(bind, port_zero_picks_distinct_dynamic_ports_C03)
{
	scif_epd_t e1 = scif_open(), e2 = scif_open();
	int p1, p2;

	cr_assert_geq(e1, 0);
	cr_assert_geq(e2, 0);
	p1 = scif_bind(e1, 0);
	p2 = scif_bind(e2, 0);
	cr_expect_geq(p1, SCIF_PORT_RSVD + 1, "bind(0) returned %d", p1);
	cr_expect_leq(p1, 65535);
	cr_expect_geq(p2, SCIF_PORT_RSVD + 1, "bind(0) returned %d", p2);
	cr_expect_leq(p2, 65535);
	cr_expect_neq(p1, p2);
	scif_close(e1);
	scif_close(e2);
}

Test(bind, second_bind_of_bound_endpoint_is_einval_C04)
{
	scif_epd_t e = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(e, 0);
	cr_expect_eq(scif_bind(e, p), p);
	expect_errno(scif_bind(e, (uint16_t)(p + 1)), EINVAL);
	expect_errno(scif_bind(e, 0), EINVAL);
	scif_close(e);
}

Test(bind, port_in_use_is_einval_C05)
{
	scif_epd_t e1 = scif_open(), e2 = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(e1, 0);
	cr_assert_geq(e2, 0);
	cr_expect_eq(scif_bind(e1, p), p);
	expect_errno(scif_bind(e2, p), EINVAL);
	/* The failed bind left e2 unbound: it can still bind another port. */
	cr_expect_gt(scif_bind(e2, 0), 0);
	scif_close(e1);
	scif_close(e2);
}

static void bind_1023_1024(int res[4])
{
	scif_epd_t e1 = scif_open(), e2 = scif_open();

	errno = 0;
	res[0] = scif_bind(e1, 1023);
	res[1] = errno;
	errno = 0;
	res[2] = scif_bind(e2, 1024);
	res[3] = errno;
	scif_close(e1);
	scif_close(e2);
}

Test(bind, unprivileged_port_below_1024_is_eacces_C06)
{
	int r[4];

	run_unprivileged(bind_1023_1024, r);
	cr_expect_eq(r[0], -1, "bind(1023) returned %d", r[0]);
	cr_expect_eq(r[1], EACCES, "bind(1023): errno %d (%s)", r[1], strerror(r[1]));
	cr_expect_eq(r[2], 1024, "bind(1024) returned %d, errno %d (%s)", r[2], r[3],
		     strerror(r[3]));
}

static void bind_bound_100(int res[4])
{
	scif_epd_t e = scif_open();

	res[0] = scif_bind(e, 0);
	errno = 0;
	res[2] = scif_bind(e, 100);
	res[3] = errno;
	scif_close(e);
}

Test(bind, privilege_checked_before_state_C07)
{
	int r[4];

	run_unprivileged(bind_bound_100, r);
	cr_expect_gt(r[0], 0, "bind(0) returned %d", r[0]);
	cr_expect_eq(r[2], -1, "bind(100) on a bound endpoint returned %d", r[2]);
	cr_expect_eq(r[3], EACCES, "bind(100): errno %d (%s), expected EACCES", r[3],
		     strerror(r[3]));
}

Test(bind, privileged_caller_may_bind_below_1024)
{
	scif_epd_t e;
	uint16_t p = test_priv_port();

	if (geteuid() != 0)
		cr_skip_test("needs root to bind a port below 1024");
	e = scif_open();
	cr_assert_geq(e, 0);
	cr_expect_eq(scif_bind(e, p), p);
	scif_close(e);
}

Test(bind, port_free_again_after_close_C08)
{
	scif_epd_t e1 = scif_open(), e2;
	uint16_t p = test_port();

	cr_assert_geq(e1, 0);
	cr_expect_eq(scif_bind(e1, p), p);
	cr_expect_eq(scif_close(e1), 0);
	e2 = scif_open();
	cr_assert_geq(e2, 0);
	cr_expect_eq(scif_bind(e2, p), p);
	scif_close(e2);
}

Test(bind, listening_endpoint_is_eisconn_C12)
{
	scif_epd_t e = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(e, 0);
	cr_assert_eq(scif_bind(e, p), p);
	cr_assert_eq(scif_listen(e, 1), 0);
	expect_errno(scif_bind(e, (uint16_t)(p + 1)), EISCONN);
	expect_errno(scif_bind(e, 0), EISCONN);
	scif_close(e);
}

Test(bind, connected_endpoints_are_eisconn)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_bind(a, 0), EISCONN);
	expect_errno(scif_bind(b, test_port()), EISCONN);
	scif_close(a);
	scif_close(b);
}

Test(bind, state_checked_before_port_in_use)
{
	scif_epd_t a, b, l, x = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(x, 0);
	cr_assert_eq(scif_bind(x, p), p);
	test_pair(&a, &b, &l);
	/* p is taken, but the connected endpoint's state decides first. */
	expect_errno(scif_bind(a, p), EISCONN);
	scif_close(a);
	scif_close(b);
	scif_close(l);
	scif_close(x);
}

Test(bind, disconnected_endpoint_is_eisconn, .timeout = 20)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	scif_close(b);
	cr_assert(wait_hup(a), "no POLLHUP after the peer closed");
	expect_errno(scif_bind(a, 0), EISCONN);
	scif_close(a);
}

Test(bind, connecting_endpoint_is_eisconn, .timeout = 20)
{
	scif_epd_t l = scif_open(), e = scif_open(), n;
	uint16_t self, p = test_port();
	struct scif_portID dst, peer;

	scif_get_nodeIDs(NULL, 0, &self);
	dst.node = self;
	dst.port = p;
	cr_assert_eq(scif_bind(l, p), p);
	cr_assert_eq(scif_listen(l, 4), 0);
	cr_assert_eq(fcntl(scif_get_fd(e), F_SETFL, O_NONBLOCK), 0);
	expect_errno(scif_connect(e, &dst), EINPROGRESS);
	expect_errno(scif_bind(e, 0), EISCONN);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(bind, accepted_endpoint_keeps_listener_port_C26, .timeout = 20)
{
	scif_epd_t a, b, l, x = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(x, 0);
	pair_on(p, 0, &a, &b, &l);
	cr_expect_eq(scif_close(l), 0);
	/* b still uses the port it shares with the closed listener. */
	expect_errno(scif_bind(x, p), EINVAL);
	cr_expect_eq(scif_close(b), 0);
	cr_expect_eq(bind_retry(x, p), p, "port %u not released after the last user closed", p);
	scif_close(a);
	scif_close(x);
}

Test(bind, accepted_endpoint_releases_port_when_peer_closes_C26, .timeout = 20)
{
	scif_epd_t a, b, l, x = scif_open();
	uint16_t p = test_port();

	cr_assert_geq(x, 0);
	pair_on(p, 0, &a, &b, &l);
	cr_expect_eq(scif_close(l), 0);
	expect_errno(scif_bind(x, p), EINVAL);
	/* The peer closing makes b DISCONNECTED, which releases the port (spec 2.4). */
	cr_expect_eq(scif_close(a), 0);
	cr_expect_eq(bind_retry(x, p), p, "port %u not released at disconnect", p);
	scif_close(b);
	scif_close(x);
}

Test(bind, disconnected_endpoint_releases_its_port_C45, .timeout = 20)
{
	scif_epd_t a, b, l, x = scif_open();
	uint16_t lp = test_port(), p = test_port();

	cr_assert_geq(x, 0);
	pair_on(lp, p, &a, &b, &l);
	cr_expect_eq(scif_close(b), 0);
	/* a is not closed: only disconnected. */
	cr_expect_eq(bind_retry(x, p), p, "port %u of the disconnected endpoint not released", p);
	scif_close(a);
	scif_close(l);
	scif_close(x);
}
