// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-errno.c - every one of the 22 calls leaves errno exactly as it found it when it
 * succeeds, on every path: blocking and not, the ring and the single-copy path of send/recv,
 * synchronous and asynchronous RMA with CPU and worker, fences, mmap. Intel's library is a
 * thin ioctl wrapper with that property, and programs written for it check errno after a
 * successful call (`errno = 0; scif_close(epd); if (errno) ...`).
 */
#include <sys/mman.h>

#include "common.h"

/* An errno no call of ours would ever set. */
#define SENTINEL 4242

/* Run a call that must succeed; it must not touch errno. */
#define expect_clean(call, ok)                                                          \
	do {                                                                            \
		errno = SENTINEL;                                                       \
		long _r = (long)(call);                                                 \
		int _e = errno;                                                         \
		cr_expect(ok, "%s returned %ld (errno %d)", #call, _r, _e);             \
		cr_expect_eq(_e, SENTINEL, "%s succeeded but changed errno to %d (%s)", #call, \
			     _e, strerror(_e));                                         \
	} while (0)

TestSuite(errno_kept, .timeout = 60);

struct acc {
	scif_epd_t lep, ep;
	int flags, ret, err;
};

/* Accept in a thread, checking errno there too (errno is per thread). */
static void *acc_thread(void *arg)
{
	struct acc *a = arg;
	struct scif_portID peer;

	errno = SENTINEL;
	if (a->flags) {
		a->ret = scif_accept(a->lep, &peer, &a->ep, SCIF_ACCEPT_SYNC);
	} else {
		struct scif_pollepd p = { .epd = a->lep, .events = POLLIN };

		do
			a->ret = scif_poll(&p, 1, 5000);
		while (a->ret == 0);
		if (a->ret == 1 && errno == SENTINEL)
			a->ret = scif_accept(a->lep, &peer, &a->ep, 0);
		else
			a->ret = -2;
	}
	a->err = errno;
	return NULL;
}

Test(errno_kept, open_bind_listen_connect_accept_close)
{
	uint16_t self, port = test_port();
	struct acc a = { .flags = SCIF_ACCEPT_SYNC };
	struct scif_portID dst;
	scif_epd_t c;
	pthread_t th;

	expect_clean(scif_get_nodeIDs(NULL, 0, &self), _r >= 1);
	expect_clean(a.lep = scif_open(), _r >= 0);
	expect_clean(scif_get_fd(a.lep), _r == a.lep);
	expect_clean(scif_bind(a.lep, port), _r == port);
	expect_clean(scif_listen(a.lep, 4), _r == 0);
	pthread_create(&th, NULL, acc_thread, &a);
	expect_clean(c = scif_open(), _r >= 0);
	dst = (struct scif_portID){ .node = self, .port = port };
	expect_clean(scif_connect(c, &dst), _r > 0);
	pthread_join(th, NULL);
	cr_expect_eq(a.ret, 0);
	cr_expect_eq(a.err, SENTINEL, "blocking accept changed errno to %d", a.err);
	expect_clean(scif_close(c), _r == 0);
	expect_clean(scif_close(a.ep), _r == 0);

	/* Non-blocking accept after poll; non-blocking connect collected after POLLOUT. */
	a.flags = 0;
	pthread_create(&th, NULL, acc_thread, &a);
	c = scif_open();
	cr_assert_eq(fcntl(c, F_SETFL, O_NONBLOCK), 0);
	errno = 0;
	cr_assert_eq(scif_connect(c, &dst), -1);
	cr_assert_eq(errno, EINPROGRESS);
	{
		struct scif_pollepd p = { .epd = c, .events = POLLOUT };

		expect_clean(scif_poll(&p, 1, 5000), _r == 1);
	}
	expect_clean(scif_connect(c, &dst), _r > 0);
	pthread_join(th, NULL);
	cr_expect_eq(a.ret, 0);
	cr_expect_eq(a.err, SENTINEL, "poll + non-blocking accept changed errno to %d", a.err);
	/* A dup()ed number closes alone. */
	{
		int d = dup(c);

		expect_clean(scif_close(d), _r == 0);
	}
	expect_clean(scif_close(c), _r == 0);
	expect_clean(scif_close(a.ep), _r == 0);
	expect_clean(scif_close(a.lep), _r == 0);
	/* bind(0) searches for a free port; close of an unbound endpoint. */
	c = scif_open();
	expect_clean(scif_bind(c, 0), _r > 0);
	expect_clean(scif_close(c), _r == 0);
	expect_clean(scif_close(scif_open()), _r == 0);
}

struct big {
	scif_epd_t ep;
	uint8_t *buf;
	int len, ret, err;
};

static void *big_recv(void *arg)
{
	struct big *b = arg;

	errno = SENTINEL;
	b->ret = scif_recv(b->ep, b->buf, b->len, SCIF_RECV_BLOCK);
	b->err = errno;
	return NULL;
}

Test(errno_kept, send_recv_every_path)
{
	scif_epd_t a, b;
	static uint8_t small[4096], out[4096];
	const int big_len = 4 << 20;
	struct big r;
	uint8_t *src;
	pthread_t th;

	test_pair(&a, &b, NULL);
	/* Non-blocking: empty ring (returns 0), then data; blocking both ways. */
	expect_clean(scif_recv(b, out, 16, 0), _r == 0);
	expect_clean(scif_send(a, small, 100, 0), _r == 100);
	expect_clean(scif_recv(b, out, 100, 0), _r == 100);
	expect_clean(scif_send(a, small, 4096, SCIF_SEND_BLOCK), _r == 4096);
	expect_clean(scif_recv(b, out, 4096, SCIF_RECV_BLOCK), _r == 4096);
	expect_clean(scif_send(a, small, 0, 0), _r == 0);
	/* Large blocking messages: the single-copy path and flow control through the ring. */
	src = malloc((size_t)big_len);
	r = (struct big){ .ep = b, .buf = malloc((size_t)big_len), .len = big_len };
	cr_assert(src && r.buf);
	memset(src, 0x5a, (size_t)big_len);
	for (int i = 0; i < 2; i++) {
		pthread_create(&th, NULL, big_recv, &r);
		expect_clean(scif_send(a, src, big_len, SCIF_SEND_BLOCK), _r == big_len);
		pthread_join(th, NULL);
		cr_expect_eq(r.ret, big_len);
		cr_expect_eq(r.err, SENTINEL, "large blocking recv changed errno to %d", r.err);
		cr_expect_eq(memcmp(src, r.buf, (size_t)big_len), 0);
	}
	/* poll: ready at once, and after a sleep. */
	{
		struct scif_pollepd p = { .epd = a, .events = POLLOUT };

		expect_clean(scif_poll(&p, 1, 0), _r == 1);
		p = (struct scif_pollepd){ .epd = b, .events = POLLIN };
		expect_clean(scif_poll(&p, 1, 0), _r == 0);
		expect_clean(scif_poll(NULL, 0, 1), _r == 0);
	}
	free(src);
	free(r.buf);
	scif_close(a);
	scif_close(b);
}

Test(errno_kept, register_rma_fence_mmap)
{
	const size_t len = 2 << 20;
	scif_epd_t a, b;
	uint8_t *la, *lb, *v;
	off_t wa, wb;
	int mark;
	void *m;

	test_pair(&a, &b, NULL);
	la = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	v = malloc(len);
	cr_assert(la != MAP_FAILED && lb != MAP_FAILED && v);
	memset(v, 3, len);
	expect_clean(wa = scif_register(a, la, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0),
		     _r >= 0);
	expect_clean(wb = scif_register(b, lb, len, 0x100000, SCIF_PROT_READ | SCIF_PROT_WRITE,
					SCIF_MAP_FIXED),
		     _r == 0x100000);
	/* Each flavour: in the caller (SYNC, USECPU), on the worker (async), ORDERED. */
	expect_clean(scif_writeto(a, wa, 4096, wb, SCIF_RMA_SYNC), _r == 0);
	expect_clean(scif_writeto(a, wa, len, wb, SCIF_RMA_USECPU), _r == 0);
	expect_clean(scif_writeto(a, wa, len, wb, 0), _r == 0);
	expect_clean(scif_readfrom(a, wa, len, wb, 0), _r == 0);
	expect_clean(scif_readfrom(a, wa + 7, 1000, wb + 3, SCIF_RMA_SYNC | SCIF_RMA_ORDERED),
		     _r == 0);
	expect_clean(scif_vwriteto(a, v, len, wb, 0), _r == 0);
	expect_clean(scif_vwriteto(a, v + 1, 4096, wb, SCIF_RMA_SYNC), _r == 0);
	expect_clean(scif_vreadfrom(a, v, len, wb, SCIF_RMA_USECACHE), _r == 0);
	expect_clean(scif_vreadfrom(a, v, 100, wb, SCIF_RMA_SYNC), _r == 0);
	/* Fences: own marks, the peer's marks (a request), signals both ways. */
	expect_clean(scif_fence_mark(a, SCIF_FENCE_INIT_SELF, &mark), _r == 0);
	expect_clean(scif_fence_wait(a, mark), _r == 0);
	expect_clean(scif_fence_mark(b, SCIF_FENCE_INIT_PEER, &mark), _r == 0);
	expect_clean(scif_fence_wait(b, mark), _r == 0);
	expect_clean(scif_fence_signal(a, wa, 1, wb + 8, 2,
				       SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE),
		     _r == 0);
	expect_clean(scif_fence_signal(a, wa, 1, wb + 8, 2,
				       SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE),
		     _r == 0);
	/* mmap and munmap of the peer's window; unregister of both windows. */
	expect_clean(m = scif_mmap(NULL, len, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, a, wb),
		     (void *)_r != SCIF_MMAP_FAILED);
	expect_clean(scif_munmap(m, len), _r == 0);
	expect_clean(scif_unregister(a, wa, len), _r == 0);
	expect_clean(scif_unregister(b, wb, len), _r == 0);
	expect_clean(scif_unregister(b, wb, len), _r == 0); /* nothing there: still success */
	scif_close(a);
	scif_close(b);
	free(v);
}
