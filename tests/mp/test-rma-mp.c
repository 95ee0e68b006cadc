// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-rma-mp.c - RMA between node 0 (this process) and node 1 (tests/mp/scif-peer): every
 * byte checked over windows of 4 KiB to 256 MiB, fence ordering, mmap ping-pong, and peers
 * killed or windows unregistered while asynchronous RMAs are in flight.
 */
#include <sys/mman.h>

#include "common.h"
#include "mp/stream.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(rma_mp, .timeout = 300);

struct hello {
	uint64_t offset, size;
};

static scif_epd_t listen_accept(uint16_t port, char *const args[], pid_t *pid)
{
	scif_epd_t lep = scif_open(), ep;
	struct scif_portID peer;

	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 1), 0);
	*pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, *pid, 30000);
	scif_close(lep);
	return ep;
}

static uint64_t rng_next(uint64_t *s)
{
	return stream_mix((*s)++);
}

/*
 * Random RMAs of every kind and flag against the peer's window; a shadow copy models what
 * the peer's window must hold, and at the end both the peer's own checksum and a full read
 * back are compared with it.
 */
static void integrity(size_t size, int ops)
{
	const uint64_t seed = (uint64_t)time(NULL) ^ size;
	uint16_t port = test_port();
	char a1[16], a2[24], a3[24];
	char *args[] = { "rma-serve", "0", test_num(a1, port), test_num(a2, size), test_num(a3, seed), NULL };
	uint8_t *local, *shadow, *vbuf;
	struct hello h;
	uint64_t rng = seed, sum;
	off_t lw;
	pid_t pid;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&local, 4096, size), 0);
	shadow = malloc(size);
	vbuf = malloc(size + 64);
	cr_assert(shadow && vbuf);
	lw = scif_register(ep, local, size, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(lw, 0, "register %zu: %s", size, strerror(errno));
	cr_assert_eq(scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK), (int)sizeof(h));
	cr_assert_eq(h.size, size);
	stream_fill(seed, 0, shadow, size);
	for (int op = 0; op < ops; op++) {
		uint64_t r = rng_next(&rng);
		size_t len = 1 + (size_t)(rng_next(&rng) % (r & 1 ? size : (size < 8192 ? size : 8192)));
		size_t roff = (size_t)(rng_next(&rng) % (size - len + 1));
		size_t loff = (size_t)(rng_next(&rng) % (size - len + 1));
		size_t voff = (size_t)(r >> 8) % 64;
		int flags = (int[]){ SCIF_RMA_SYNC, 0, SCIF_RMA_USECPU, SCIF_RMA_SYNC | SCIF_RMA_ORDERED,
				     SCIF_RMA_ORDERED }[(r >> 16) % 5];
		int mark, ret;

		switch ((r >> 24) % 4) {
		case 0: /* writeto: new bytes into the peer's window */
			stream_fill(r, 0, local + loff, len);
			ret = scif_writeto(ep, lw + (off_t)loff, len, (off_t)h.offset + (off_t)roff,
					   flags);
			memcpy(shadow + roff, local + loff, len);
			break;
		case 1: /* vwriteto from an unaligned ordinary buffer */
			stream_fill(r, 0, vbuf + voff, len);
			ret = scif_vwriteto(ep, vbuf + voff, len, (off_t)h.offset + (off_t)roff, flags);
			memcpy(shadow + roff, vbuf + voff, len);
			break;
		case 2: /* readfrom into the local window */
			ret = scif_readfrom(ep, lw + (off_t)loff, len, (off_t)h.offset + (off_t)roff,
					    flags);
			break;
		default: /* vreadfrom into an unaligned ordinary buffer */
			ret = scif_vreadfrom(ep, vbuf + voff, len, (off_t)h.offset + (off_t)roff, flags);
			break;
		}
		cr_assert_eq(ret, 0, "op %d: %s", op, strerror(errno));
		/* Asynchronous ones complete at the fence; then check what was read. */
		cr_assert_eq(scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark), 0);
		cr_assert_eq(scif_fence_wait(ep, mark), 0);
		if ((r >> 24) % 4 == 2)
			cr_assert_arr_eq(local + loff, shadow + roff, len, "readfrom op %d", op);
		else if ((r >> 24) % 4 == 3)
			cr_assert_arr_eq(vbuf + voff, shadow + roff, len, "vreadfrom op %d", op);
	}
	/* Every byte: read the whole window back, and compare with the peer's own view. */
	for (size_t pos = 0; pos < size; pos += 16 << 20) {
		size_t n = size - pos < (16 << 20) ? size - pos : (16 << 20);

		cr_assert_eq(scif_readfrom(ep, lw, n, (off_t)h.offset + (off_t)pos, SCIF_RMA_SYNC), 0);
		cr_assert_arr_eq(local, shadow + pos, n, "window bytes [%zu, +%zu)", pos, n);
	}
	cr_assert_eq(scif_send(ep, "d", 1, SCIF_SEND_BLOCK), 1);
	cr_assert_eq(scif_recv(ep, &sum, sizeof(sum), SCIF_RECV_BLOCK), (int)sizeof(sum));
	cr_expect_eq(sum, stream_fnv(0xcbf29ce484222325ULL, shadow, size),
		     "the peer's own view of its window differs");
	scif_close(ep);
	cr_expect_eq(test_wait(pid), 0);
	free(shadow);
	free(vbuf);
	free(local);
}

Test(rma_mp, integrity_4KiB) { integrity(4 << 10, 300); }
Test(rma_mp, integrity_64KiB) { integrity(64 << 10, 300); }
Test(rma_mp, integrity_1MiB) { integrity(1 << 20, 200); }
Test(rma_mp, integrity_16MiB, .timeout = 300) { integrity(16 << 20, 100); }
/* 256 MiB scaled by test_scaled() (64 MiB in the sanitizer builds' runs). */
Test(rma_mp, integrity_256MiB, .timeout = 600) { integrity((size_t)test_scaled(256 << 20), 40); }

/* A fence signal is never visible before the data it fences. */
Test(rma_mp, signal_never_before_the_data, .timeout = 300)
{
	const size_t size = 8 << 20;
	uint16_t port = test_port();
	char a1[16], a2[24];
	char *args[] = { "rma-signal", "0", test_num(a1, port), test_num(a2, size), "30", NULL };
	volatile uint8_t *buf;
	struct hello h;
	pid_t pid;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&buf, 4096, size), 0);
	memset((void *)buf, 0, size);
	h.offset = (uint64_t)scif_register(ep, (void *)buf, size, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					   0);
	h.size = size;
	cr_assert_geq((off_t)h.offset, 0);
	cr_assert_eq(scif_send(ep, &h, sizeof(h), SCIF_SEND_BLOCK), (int)sizeof(h));
	for (uint64_t r = 1; r <= 30; r++) {
		uint64_t until = test_now_ms() + 10000;

		while (__atomic_load_n((volatile uint64_t *)buf, __ATOMIC_ACQUIRE) != r)
			cr_assert_lt(test_now_ms(), until, "round %llu signal never came",
				     (unsigned long long)r);
		for (size_t i = 64; i < size; i += 4093)
			cr_assert_eq(buf[i], (uint8_t)r, "round %llu: byte %zu not yet written",
				     (unsigned long long)r, i);
		cr_assert_eq(buf[size - 1], (uint8_t)r);
		cr_assert_eq(scif_send(ep, "n", 1, SCIF_SEND_BLOCK), 1);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(ep);
}

Test(rma_mp, mmap_ping_pong_across_processes)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "mmap-pong", "0", test_num(a1, port), "20000", NULL };
	volatile uint64_t *buf;
	struct hello h;
	pid_t pid;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&buf, 4096, 4096), 0);
	memset((void *)buf, 0, 4096);
	h.offset = (uint64_t)scif_register(ep, (void *)buf, 4096, 0,
					   SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq((off_t)h.offset, 0);
	cr_assert_eq(scif_send(ep, &h, sizeof(h), SCIF_SEND_BLOCK), (int)sizeof(h));
	for (uint64_t i = 1; i <= 20000; i++) {
		uint64_t until = test_now_ms() + 10000;

		__atomic_store_n(&buf[0], i, __ATOMIC_RELEASE);
		while (__atomic_load_n(&buf[8], __ATOMIC_ACQUIRE) != i)
			cr_assert_lt(test_now_ms(), until, "pong %llu lost", (unsigned long long)i);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(ep);
}

/* The peer is killed while its asynchronous writes into our window are in flight. */
Test(rma_mp, peer_killed_during_async_rma)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "rma-flood", "0", test_num(a1, port), NULL };
	uint8_t *buf;
	struct hello h;
	pid_t pid;
	int mark;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&buf, 4096, 4 << 20), 0);
	h.offset = (uint64_t)scif_register(ep, buf, 4 << 20, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq((off_t)h.offset, 0);
	cr_assert_eq(scif_send(ep, &h, sizeof(h), SCIF_SEND_BLOCK), (int)sizeof(h));
	usleep(50000);
	kill(pid, SIGKILL);
	test_wait(pid);
	/* Our side stays sound: the window is still ours, calls report the reset. */
	buf[0] = 1;
	cr_expect_eq(buf[0], 1);
	uint64_t until = test_now_ms() + 2000;
	int r;

	while ((r = scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark)) == 0 && test_now_ms() < until)
		usleep(1000);
	cr_expect_eq(r, -1);
	cr_expect_eq(errno, ECONNRESET);
	expect_errno(scif_unregister(ep, (off_t)h.offset, 4 << 20), ECONNRESET);
	cr_expect_eq(scif_close(ep), 0);
}

/* Our own asynchronous RMAs in flight when we unregister, close, or the peer dies. */
Test(rma_mp, unregister_and_close_during_own_async_rma)
{
	uint16_t port = test_port();
	char a1[16], a2[24];
	char *args[] = { "rma-serve", "0", test_num(a1, port), test_num(a2, 16 << 20), "9", NULL };
	uint8_t *buf;
	struct hello h;
	off_t lw;
	pid_t pid;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&buf, 4096, 16 << 20), 0);
	lw = scif_register(ep, buf, 16 << 20, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(lw, 0);
	cr_assert_eq(scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK), (int)sizeof(h));
	for (int i = 0; i < 32; i++)
		cr_assert_eq(scif_writeto(ep, lw, 16 << 20, (off_t)h.offset, 0), 0);
	/* Unregister the source while copies from it are queued: no fault, no hang. */
	cr_expect_eq(scif_unregister(ep, lw, 16 << 20), 0);
	expect_errno(scif_writeto(ep, lw, 4096, (off_t)h.offset, SCIF_RMA_SYNC), ENXIO);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(scif_vwriteto(ep, buf, 16 << 20, (off_t)h.offset, 0), 0);
	/* Close with transfers still queued, then the peer goes too. */
	cr_expect_eq(scif_close(ep), 0);
	kill(pid, SIGKILL);
	test_wait(pid);
	free(buf);
}

/* A window survives a fork() of its owner: the peer's writes still reach the parent. */
Test(rma_mp, window_survives_owner_fork)
{
	uint16_t port = test_port();
	char a1[16], a2[24];
	char *args[] = { "rma-serve", "0", test_num(a1, port), test_num(a2, 1 << 20), "5", NULL };
	uint8_t *buf;
	struct hello h;
	off_t lw;
	pid_t pid, child;
	int st;
	scif_epd_t ep = listen_accept(port, args, &pid);

	cr_assert_eq(posix_memalign((void **)&buf, 4096, 1 << 20), 0);
	memset(buf, 0, 1 << 20);
	lw = scif_register(ep, buf, 1 << 20, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(lw, 0);
	cr_assert_eq(scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK), (int)sizeof(h));
	child = fork();
	if (child == 0)
		_exit(0); /* the child leaves at once; the parent's window must be unaffected */
	test_waitpid(child, &st, 10000);
	cr_assert_eq(scif_readfrom(ep, lw, 1 << 20, (off_t)h.offset, SCIF_RMA_SYNC), 0);
	uint8_t *want = malloc(1 << 20);

	stream_fill(5, 0, want, 1 << 20);
	cr_expect_arr_eq(buf, want, 1 << 20, "the parent's window lost the data");
	free(want);
	scif_send(ep, "d", 1, SCIF_SEND_BLOCK);
	scif_close(ep);
	test_wait(pid);
}
