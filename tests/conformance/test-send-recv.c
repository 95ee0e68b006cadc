// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-send-recv.c - conformance of scif_send() and scif_recv() (spec 3.2, 3.7, 3.8, 4.2,
 * 4.3; cases C33-C44, C46, C49).
 */
#include <sys/mman.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(send_recv, .timeout = 120);

/* A scif_send() or scif_recv() run by a thread. */
struct io_job {
	scif_epd_t e;
	void *buf;
	int len;
	int flags;
	int is_send;
	int ret;
	int err;
	int done;
};

static void *io_thread(void *arg)
{
	struct io_job *j = arg;

	if (j->is_send)
		j->ret = scif_send(j->e, j->buf, j->len, j->flags);
	else
		j->ret = scif_recv(j->e, j->buf, j->len, j->flags);
	j->err = errno;
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int job_done(struct io_job *j)
{
	return __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
}

static int job_wait(struct io_job *j, int ms)
{
	uint64_t until = test_now_ms() + (uint64_t)ms;

	while (!job_done(j) && test_now_ms() < until)
		usleep(2000);
	return job_done(j);
}

/* Signal @th until @j returns (the first signal may land before the call sleeps): 3 s. */
static int interrupt(pthread_t th, struct io_job *j)
{
	uint64_t until = test_now_ms() + 3000;

	usleep(100000);
	while (!job_done(j) && test_now_ms() < until) {
		pthread_kill(th, SIGUSR1);
		usleep(50000);
	}
	return job_done(j);
}

/* Wait up to 1 s for @e to report POLLHUP; returns the last revents seen. */
static short wait_hup(scif_epd_t e)
{
	struct scif_pollepd p = { .epd = e, .events = POLLIN };
	uint64_t until = test_now_ms() + 1000;

	do {
		p.revents = 0;
		if (scif_poll(&p, 1, 100) < 0)
			return 0;
	} while (!(p.revents & POLLHUP) && test_now_ms() < until);
	return p.revents;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
}

/* Connected pair whose rings hold @ring bytes per direction (library setting). */
static void small_ring_pair(scif_epd_t *a, scif_epd_t *b, const char *ring)
{
	cr_assert_eq(setenv("SCIF_RING_SIZE", ring, 1), 0);
	test_pair(a, b, NULL);
}

Test(send_recv, blocking_round_trip_C33)
{
	uint8_t in[100], out[100];
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	fill(in, sizeof(in), 1);
	memset(out, 0, sizeof(out));
	cr_expect_eq(scif_send(a, in, 100, SCIF_SEND_BLOCK), 100);
	cr_expect_eq(scif_recv(b, out, 100, SCIF_RECV_BLOCK), 100);
	cr_expect_arr_eq(in, out, 100);
	/* And the other direction. */
	cr_expect_eq(scif_send(b, in, 100, SCIF_SEND_BLOCK), 100);
	cr_expect_eq(scif_recv(a, out, 100, SCIF_RECV_BLOCK), 100);
	cr_expect_arr_eq(in, out, 100);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, stream_has_no_message_boundaries_C34)
{
	uint8_t in[30], out[30];
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	fill(in, sizeof(in), 2);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(scif_send(a, in + 10 * i, 10, SCIF_SEND_BLOCK), 10);
	cr_expect_eq(scif_recv(b, out, 30, SCIF_RECV_BLOCK), 30);
	cr_expect_arr_eq(in, out, 30);
	/* One send read by several recvs. */
	cr_expect_eq(scif_send(a, in, 30, SCIF_SEND_BLOCK), 30);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(scif_recv(b, out + 10 * i, 10, SCIF_RECV_BLOCK), 10);
	cr_expect_arr_eq(in, out, 30);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, zero_length_returns_zero_before_any_check_C35)
{
	scif_epd_t e = scif_open();
	char c;

	cr_assert_geq(e, 0);
	cr_expect_eq(scif_send(e, &c, 0, 0xFF), 0);
	cr_expect_eq(scif_recv(e, &c, 0, 0xFF), 0);
	cr_expect_eq(scif_send(e, NULL, 0, 0), 0);
	cr_expect_eq(scif_recv(e, NULL, 0, 0), 0);
	scif_close(e);
}

Test(send_recv, unconnected_endpoints_are_enotconn_C36)
{
	scif_epd_t e = scif_open(), l = scif_open();
	char buf[10] = { 0 };

	cr_assert_geq(e, 0);
	cr_assert_geq(l, 0);
	expect_errno(scif_send(e, buf, 10, 0), ENOTCONN);
	expect_errno(scif_recv(e, buf, 10, 0), ENOTCONN);
	cr_assert_gt(scif_bind(e, 0), 0);
	expect_errno(scif_send(e, buf, 10, 0), ENOTCONN);
	expect_errno(scif_recv(e, buf, 10, 0), ENOTCONN);
	expect_errno(scif_send(e, buf, 10, SCIF_SEND_BLOCK), ENOTCONN);
	expect_errno(scif_recv(e, buf, 10, SCIF_RECV_BLOCK), ENOTCONN);
	cr_assert_gt(scif_bind(l, 0), 0);
	cr_assert_eq(scif_listen(l, 1), 0);
	expect_errno(scif_send(l, buf, 10, 0), ENOTCONN);
	expect_errno(scif_recv(l, buf, 10, 0), ENOTCONN);
	scif_close(e);
	scif_close(l);
}

Test(send_recv, connecting_endpoint_is_enotconn, .timeout = 20)
{
	scif_epd_t l = scif_open(), e = scif_open(), n;
	uint16_t self, p = test_port();
	struct scif_portID dst, peer;
	char buf[10] = { 0 };

	scif_get_nodeIDs(NULL, 0, &self);
	dst.node = self;
	dst.port = p;
	cr_assert_eq(scif_bind(l, p), p);
	cr_assert_eq(scif_listen(l, 1), 0);
	cr_assert_eq(fcntl(scif_get_fd(e), F_SETFL, O_NONBLOCK), 0);
	expect_errno(scif_connect(e, &dst), EINPROGRESS);
	expect_errno(scif_send(e, buf, 10, 0), ENOTCONN);
	expect_errno(scif_recv(e, buf, 10, 0), ENOTCONN);
	cr_expect_eq(scif_accept(l, &peer, &n, SCIF_ACCEPT_SYNC), 0);
	scif_close(n);
	scif_close(e);
	scif_close(l);
}

Test(send_recv, bad_length_and_flags_are_einval_C37)
{
	char buf[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, out[10];
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_send(a, buf, -1, 0), EINVAL);
	expect_errno(scif_send(a, buf, 10, 2), EINVAL);
	/* Any value with bit 0 set means blocking. */
	cr_expect_eq(scif_send(a, buf, 10, 3), 10);
	expect_errno(scif_recv(b, out, -1, 0), EINVAL);
	expect_errno(scif_recv(b, out, 10, 2), EINVAL);
	cr_expect_eq(scif_recv(b, out, 10, 3), 10);
	cr_expect_arr_eq(buf, out, 10);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, arguments_checked_before_state)
{
	scif_epd_t e = scif_open();
	char buf[10] = { 0 };

	cr_assert_geq(e, 0);
	/* Unbound (ENOTCONN), but EINVAL and EFAULT come first. */
	expect_errno(scif_send(e, buf, -1, 0), EINVAL);
	expect_errno(scif_recv(e, buf, 10, 2), EINVAL);
	expect_errno(scif_send(e, NULL, 10, 0), EFAULT);
	expect_errno(scif_recv(e, NULL, 10, 0), EFAULT);
	scif_close(e);
}

Test(send_recv, null_buffer_is_efault)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_send(a, NULL, 10, SCIF_SEND_BLOCK), EFAULT);
	expect_errno(scif_recv(b, NULL, 10, 0), EFAULT);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, unreadable_source_is_efault, .timeout = 20)
{
	long pg = sysconf(_SC_PAGESIZE);
	scif_epd_t a, b;
	char *p;

	test_pair(&a, &b, NULL);
	p = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	expect_errno(scif_send(a, p, 100, SCIF_SEND_BLOCK), EFAULT);
	munmap(p, (size_t)pg);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, unwritable_destination_is_efault, .timeout = 20)
{
	long pg = sysconf(_SC_PAGESIZE);
	char buf[100] = { 0 };
	scif_epd_t a, b;
	char *p;

	test_pair(&a, &b, NULL);
	p = mmap(NULL, (size_t)pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(scif_send(a, buf, 100, SCIF_SEND_BLOCK), 100);
	expect_errno(scif_recv(b, p, 100, SCIF_RECV_BLOCK), EFAULT);
	munmap(p, (size_t)pg);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, nonblocking_recv_without_data_returns_zero_C38)
{
	scif_epd_t a, b;
	char buf[10];

	test_pair(&a, &b, NULL);
	cr_expect_eq(scif_recv(b, buf, 10, 0), 0);
	cr_expect_eq(scif_recv(a, buf, 10, 0), 0);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, nonblocking_recv_returns_what_is_there, .timeout = 20)
{
	struct scif_pollepd p;
	char in[10] = "abcdefghi", out[100];
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_send(a, in, 10, 0), 10);
	p = (struct scif_pollepd){ .epd = b, .events = POLLIN };
	cr_assert_eq(scif_poll(&p, 1, 1000), 1);
	cr_expect_eq(scif_recv(b, out, 100, 0), 10);
	cr_expect_arr_eq(in, out, 10);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, nonblocking_send_fills_ring_then_returns_zero_C39, .timeout = 20)
{
	static uint8_t in[8192], out[8192];
	struct scif_pollepd p;
	scif_epd_t a, b;
	int n, total;

	/* Intel's ring holds 4095 bytes; this library's is configurable: 4096 here. */
	small_ring_pair(&a, &b, "4096");
	fill(in, sizeof(in), 3);
	n = scif_send(a, in, 8192, 0);
	cr_expect_eq(n, 4096, "first non-blocking send returned %d", n);
	cr_expect_eq(scif_send(a, in + 4096, 8192 - 4096, 0), 0);
	p = (struct scif_pollepd){ .epd = a, .events = POLLOUT };
	cr_expect_eq(scif_poll(&p, 1, 0), 0, "POLLOUT with a full ring (revents %#x)", p.revents);
	cr_expect_eq(scif_recv(b, out, 100, SCIF_RECV_BLOCK), 100);
	p = (struct scif_pollepd){ .epd = a, .events = POLLOUT };
	cr_expect_eq(scif_poll(&p, 1, 1000), 1);
	cr_expect(p.revents & POLLOUT, "no POLLOUT after the peer read (revents %#x)", p.revents);
	cr_expect_eq(scif_send(a, in + n, 100, 0), 100);
	/* The stream is intact. */
	total = 100;
	while (total < n + 100) {
		int r = scif_recv(b, out + total, n + 100 - total, SCIF_RECV_BLOCK);

		cr_assert_gt(r, 0);
		total += r;
	}
	cr_expect_arr_eq(in, out, (size_t)n + 100);
	unsetenv("SCIF_RING_SIZE");
	scif_close(a);
	scif_close(b);
}

Test(send_recv, default_ring_takes_a_large_nonblocking_send, .timeout = 20)
{
	static uint8_t in[1 << 20];
	struct scif_pollepd p;
	scif_epd_t a, b;
	int n;

	if (getenv("SCIF_RING_SIZE"))
		cr_skip_test("ring size set by the environment");
	test_pair(&a, &b, NULL);
	n = scif_send(a, in, sizeof(in), 0);
	cr_expect_gt(n, 0, "non-blocking send returned %d", n);
	cr_expect_lt(n, (int)sizeof(in));
	cr_expect_eq(scif_send(a, in, (int)sizeof(in), 0), 0);
	p = (struct scif_pollepd){ .epd = a, .events = POLLOUT };
	cr_expect_eq(scif_poll(&p, 1, 0), 0, "POLLOUT with a full ring (revents %#x)", p.revents);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, one_mebibyte_with_threads_C40, .timeout = 60)
{
	const int len = 1 << 20;
	uint8_t *in = malloc((size_t)len), *out = calloc(1, (size_t)len);
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;
	int r;

	cr_assert(in && out);
	test_pair(&a, &b, NULL);
	fill(in, (size_t)len, 4);
	j = (struct io_job){ .e = b, .buf = out, .len = len, .flags = SCIF_RECV_BLOCK };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	r = scif_send(a, in, len, SCIF_SEND_BLOCK);
	pthread_join(th, NULL);
	cr_expect_eq(r, len);
	cr_expect_eq(j.ret, len, "recv: %d (%s)", j.ret, strerror(j.err));
	cr_expect_eq(memcmp(in, out, (size_t)len), 0, "data differs");
	free(in);
	free(out);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, both_directions_at_once, .timeout = 60)
{
	const int len = 1 << 20;
	uint8_t *in1 = malloc((size_t)len), *in2 = malloc((size_t)len);
	uint8_t *out1 = calloc(1, (size_t)len), *out2 = calloc(1, (size_t)len);
	struct io_job j[3];
	scif_epd_t a, b;
	pthread_t th[3];
	int r;

	cr_assert(in1 && in2 && out1 && out2);
	small_ring_pair(&a, &b, "4096");
	fill(in1, (size_t)len, 5);
	fill(in2, (size_t)len, 6);
	j[0] = (struct io_job){ .e = b, .buf = out1, .len = len, .flags = 1 };
	j[1] = (struct io_job){ .e = b, .buf = in2, .len = len, .flags = 1, .is_send = 1 };
	j[2] = (struct io_job){ .e = a, .buf = out2, .len = len, .flags = 1 };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, io_thread, &j[i]), 0);
	r = scif_send(a, in1, len, SCIF_SEND_BLOCK);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	cr_expect_eq(r, len);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(j[i].ret, len, "job %d: %d (%s)", i, j[i].ret, strerror(j[i].err));
	cr_expect_eq(memcmp(in1, out1, (size_t)len), 0, "a->b data differs");
	cr_expect_eq(memcmp(in2, out2, (size_t)len), 0, "b->a data differs");
	unsetenv("SCIF_RING_SIZE");
	free(in1);
	free(in2);
	free(out1);
	free(out2);
	scif_close(a);
	scif_close(b);
}

Test(send_recv, buffered_bytes_survive_peer_close_C41, .timeout = 20)
{
	char in[40], out[100];
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	fill((uint8_t *)in, sizeof(in), 7);
	cr_assert_eq(scif_send(b, in, 40, SCIF_SEND_BLOCK), 40);
	cr_assert_eq(scif_close(b), 0);
	cr_expect_eq(scif_recv(a, out, 100, SCIF_RECV_BLOCK), 40);
	cr_expect_arr_eq(in, out, 40);
	expect_errno(scif_recv(a, out, 100, SCIF_RECV_BLOCK), ECONNRESET);
	expect_errno(scif_recv(a, out, 100, 0), ECONNRESET);
	scif_close(a);
}

Test(send_recv, blocked_recv_woken_by_peer_close_C42, .timeout = 20)
{
	char out[100];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	test_pair(&a, &b, NULL);
	j = (struct io_job){ .e = a, .buf = out, .len = 100, .flags = SCIF_RECV_BLOCK };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	usleep(100000);
	cr_expect_eq(job_done(&j), 0, "blocking recv returned with no data");
	cr_assert_eq(scif_close(b), 0);
	cr_expect(job_wait(&j, 2000), "recv not woken by the peer's close");
	if (!job_done(&j))
		scif_close(a); /* wakes it with EINTR so the thread can be joined */
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, ECONNRESET, "errno %d (%s)", j.err, strerror(j.err));
	scif_close(a);
}

Test(send_recv, send_after_peer_close_is_econnreset_C43, .timeout = 20)
{
	char buf[10] = { 0 };
	scif_epd_t a, b;
	short rev;

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_close(b), 0);
	rev = wait_hup(a);
	cr_expect(rev & POLLHUP, "revents %#x, expected POLLHUP", rev);
	expect_errno(scif_send(a, buf, 10, 0), ECONNRESET);
	expect_errno(scif_send(a, buf, 10, SCIF_SEND_BLOCK), ECONNRESET);
	scif_close(a);
}

Test(send_recv, unread_bytes_after_peer_close_C44, .timeout = 20)
{
	char in[10] = "012345678", out[100];
	struct scif_pollepd p;
	scif_epd_t a, b;
	short rev;

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_send(b, in, 10, SCIF_SEND_BLOCK), 10);
	cr_assert_eq(scif_close(b), 0);
	rev = wait_hup(a);
	cr_expect(rev & POLLHUP, "revents %#x, expected POLLHUP", rev);
	p = (struct scif_pollepd){ .epd = a, .events = POLLIN };
	cr_expect_eq(scif_poll(&p, 1, 0), 1);
	cr_expect_eq(p.revents & (POLLIN | POLLHUP), POLLIN | POLLHUP, "revents %#x", p.revents);
	cr_expect_eq(scif_recv(a, out, 100, 0), 10);
	cr_expect_arr_eq(in, out, 10);
	expect_errno(scif_recv(a, out, 100, 0), ECONNRESET);
	scif_close(a);
}

Test(send_recv, blocked_send_woken_by_peer_close, .timeout = 20)
{
	static uint8_t buf[8192];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	small_ring_pair(&a, &b, "4096");
	cr_assert_eq(scif_send(a, buf, 4096, 0), 4096);
	j = (struct io_job){ .e = a, .buf = buf, .len = 100, .flags = SCIF_SEND_BLOCK, .is_send = 1 };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	usleep(100000);
	cr_expect_eq(job_done(&j), 0, "blocking send returned with a full ring (%d)", j.ret);
	cr_assert_eq(scif_close(b), 0);
	cr_expect(job_wait(&j, 2000), "send not woken by the peer's close");
	if (!job_done(&j))
		scif_close(a);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, ECONNRESET, "errno %d (%s)", j.err, strerror(j.err));
	unsetenv("SCIF_RING_SIZE");
	scif_close(a);
}

Test(send_recv, blocked_recv_interrupted_by_signal_C46, .timeout = 20)
{
	char out[100];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	test_install_sigusr1();
	test_pair(&a, &b, NULL);
	j = (struct io_job){ .e = a, .buf = out, .len = 100, .flags = SCIF_RECV_BLOCK };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	cr_expect(interrupt(th, &j), "blocking recv not interrupted by a signal");
	if (!job_done(&j))
		scif_close(b);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s)", j.err, strerror(j.err));
	scif_close(a);
	scif_close(b);
}

Test(send_recv, blocked_send_interrupted_by_signal_is_eintr, .timeout = 20)
{
	static uint8_t buf[4096];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	test_install_sigusr1();
	small_ring_pair(&a, &b, "4096");
	cr_assert_eq(scif_send(a, buf, 4096, 0), 4096);
	j = (struct io_job){ .e = a, .buf = buf, .len = 100, .flags = SCIF_SEND_BLOCK, .is_send = 1 };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	cr_expect(interrupt(th, &j), "blocking send not interrupted by a signal");
	if (!job_done(&j))
		scif_close(b);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s)", j.err, strerror(j.err));
	unsetenv("SCIF_RING_SIZE");
	scif_close(a);
	scif_close(b);
}

Test(send_recv, interrupted_send_returns_partial_count, .timeout = 20)
{
	static uint8_t in[8192], out[8192];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;
	int total = 0;

	test_install_sigusr1();
	small_ring_pair(&a, &b, "4096");
	fill(in, sizeof(in), 8);
	j = (struct io_job){ .e = a, .buf = in, .len = 8192, .flags = SCIF_SEND_BLOCK, .is_send = 1 };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	cr_expect(interrupt(th, &j), "blocking send not interrupted by a signal");
	if (!job_done(&j))
		scif_close(b);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, 4096, "interrupted send returned %d (%s), expected the 4096 queued",
		     j.ret, strerror(j.err));
	while (j.ret > 0 && total < j.ret) {
		int r = scif_recv(b, out + total, j.ret - total, 0);

		cr_assert_gt(r, 0);
		total += r;
	}
	cr_expect_arr_eq(in, out, (size_t)total);
	unsetenv("SCIF_RING_SIZE");
	scif_close(a);
	scif_close(b);
}

Test(send_recv, blocked_recv_woken_by_own_close_is_eintr, .timeout = 20)
{
	char out[100];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	test_pair(&a, &b, NULL);
	j = (struct io_job){ .e = a, .buf = out, .len = 100, .flags = SCIF_RECV_BLOCK };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	usleep(100000);
	cr_assert_eq(job_done(&j), 0);
	cr_expect_eq(scif_close(a), 0);
	cr_expect(job_wait(&j, 2000), "recv not woken by scif_close of its endpoint");
	if (!job_done(&j))
		scif_close(b);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s)", j.err, strerror(j.err));
	scif_close(b);
}

Test(send_recv, blocked_send_woken_by_own_close_is_eintr, .timeout = 20)
{
	static uint8_t buf[4096];
	struct io_job j;
	scif_epd_t a, b;
	pthread_t th;

	small_ring_pair(&a, &b, "4096");
	cr_assert_eq(scif_send(a, buf, 4096, 0), 4096);
	j = (struct io_job){ .e = a, .buf = buf, .len = 100, .flags = SCIF_SEND_BLOCK, .is_send = 1 };
	cr_assert_eq(pthread_create(&th, NULL, io_thread, &j), 0);
	usleep(100000);
	cr_assert_eq(job_done(&j), 0);
	cr_expect_eq(scif_close(a), 0);
	cr_expect(job_wait(&j, 2000), "send not woken by scif_close of its endpoint");
	if (!job_done(&j))
		scif_close(b);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, -1);
	cr_expect_eq(j.err, EINTR, "errno %d (%s)", j.err, strerror(j.err));
	unsetenv("SCIF_RING_SIZE");
	scif_close(b);
}

#define MSG_LEN (20 * 1024)
#define MSGS 10

/* Byte @i of message @m from sender @t: a pattern that identifies (t, m) everywhere. */
static uint8_t msg_byte(int t, int m, int i)
{
	return (uint8_t)((t * 131 + m * 17 + i * 7 + (i >> 9)) & 0xff);
}

struct sender {
	scif_epd_t e;
	int t;
	int ok;
};

static void *sender_thread(void *arg)
{
	struct sender *s = arg;
	uint8_t *buf = malloc(MSG_LEN);

	s->ok = buf != NULL;
	for (int m = 0; s->ok && m < MSGS; m++) {
		buf[0] = (uint8_t)s->t;
		buf[1] = (uint8_t)m;
		for (int i = 2; i < MSG_LEN; i++)
			buf[i] = msg_byte(s->t, m, i);
		if (scif_send(s->e, buf, MSG_LEN, SCIF_SEND_BLOCK) != MSG_LEN)
			s->ok = 0;
	}
	free(buf);
	return NULL;
}

Test(send_recv, concurrent_sends_do_not_interleave_C49, .timeout = 60)
{
	struct sender s[2];
	uint8_t *buf = malloc(MSG_LEN);
	int next[2] = { 0, 0 };
	scif_epd_t a, b;
	pthread_t th[2];

	cr_assert(buf);
	/* A ring much smaller than a message, so every send takes many steps. */
	small_ring_pair(&a, &b, "4096");
	for (int t = 0; t < 2; t++) {
		s[t] = (struct sender){ .e = a, .t = t + 1 };
		cr_assert_eq(pthread_create(&th[t], NULL, sender_thread, &s[t]), 0);
	}
	for (int k = 0; k < 2 * MSGS; k++) {
		int t, m, bad = -1;

		cr_assert_eq(scif_recv(b, buf, MSG_LEN, SCIF_RECV_BLOCK), MSG_LEN);
		t = buf[0];
		m = buf[1];
		cr_assert(t == 1 || t == 2, "block %d starts with sender %d", k, t);
		cr_expect_eq(m, next[t - 1], "block %d: sender %d message %d, expected %d", k, t, m,
			     next[t - 1]);
		next[t - 1] = m + 1;
		for (int i = 2; i < MSG_LEN && bad < 0; i++)
			if (buf[i] != msg_byte(t, m, i))
				bad = i;
		cr_expect_eq(bad, -1, "block %d (sender %d message %d) broken at byte %d", k, t, m,
			     bad);
	}
	for (int t = 0; t < 2; t++) {
		pthread_join(th[t], NULL);
		cr_expect(s[t].ok, "sender %d failed", t + 1);
	}
	cr_expect_eq(next[0], MSGS);
	cr_expect_eq(next[1], MSGS);
	unsetenv("SCIF_RING_SIZE");
	free(buf);
	scif_close(a);
	scif_close(b);
}
