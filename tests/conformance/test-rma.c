// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-rma.c - conformance of registration, RMA, fences and remote mapping (spec 3.9-3.19,
 * 4.4-4.6; cases C52-C90, C93), on an in-process connected pair.
 */
#include <setjmp.h>
#include <sys/mman.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(register, .timeout = 120);
TestSuite(unregister, .timeout = 120);
TestSuite(rma, .timeout = 120);
TestSuite(fence, .timeout = 120);
TestSuite(mmap, .timeout = 120);
TestSuite(munmap, .timeout = 120);

#define PG 4096

static void *pages(size_t n, int prot)
{
	void *p = mmap(NULL, n * PG, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	return p;
}

/* A pair with a registered RW window on each side: *lw (on a), *rw (on b). */
static void rma_pair(scif_epd_t *a, scif_epd_t *b, uint8_t **abuf, uint8_t **bbuf, size_t n,
		     off_t *lw, off_t *rw)
{
	test_pair(a, b, NULL);
	*abuf = pages(n, PROT_READ | PROT_WRITE);
	*bbuf = pages(n, PROT_READ | PROT_WRITE);
	*lw = scif_register(*a, *abuf, n * PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	*rw = scif_register(*b, *bbuf, n * PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_neq(*lw, SCIF_REGISTER_FAILED, "register a: %s", strerror(errno));
	cr_assert_neq(*rw, SCIF_REGISTER_FAILED, "register b: %s", strerror(errno));
}

Test(register, unconnected_endpoint_C52)
{
	scif_epd_t e = scif_open();
	void *p = pages(1, PROT_READ | PROT_WRITE);

	expect_errno(scif_register(e, p, PG, 0, SCIF_PROT_READ, 0), ENOTCONN);
	scif_close(e);
}

Test(register, bad_arguments_C53)
{
	scif_epd_t a, b;
	uint8_t *p = pages(2, PROT_READ | PROT_WRITE);

	test_pair(&a, &b, NULL);
	expect_errno(scif_register(a, p + 1, PG, 0, SCIF_PROT_READ, 0), EINVAL);
	expect_errno(scif_register(a, p, 0, 0, SCIF_PROT_READ, 0), EINVAL);
	expect_errno(scif_register(a, p, 4097, 0, SCIF_PROT_READ, 0), EINVAL);
	expect_errno(scif_register(a, p, PG, 0, 4, 0), EINVAL);
	expect_errno(scif_register(a, p, PG, 0, SCIF_PROT_READ, 0x40), EINVAL);
	expect_errno(scif_register(a, p, PG, 0, SCIF_PROT_READ, SCIF_MAP_KERNEL), EINVAL);
	scif_close(a);
	scif_close(b);
}

Test(register, fixed_offset_rules_C54_C55)
{
	scif_epd_t a, b;
	uint8_t *p = pages(4, PROT_READ | PROT_WRITE);

	test_pair(&a, &b, NULL);
	expect_errno(scif_register(a, p, PG, 4095, SCIF_PROT_READ, SCIF_MAP_FIXED), EINVAL);
	expect_errno(scif_register(a, p, PG, -4096, SCIF_PROT_READ, SCIF_MAP_FIXED), EINVAL);
	cr_expect_eq(scif_register(a, p, 2 * PG, 0x100000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     0x100000);
	expect_errno(scif_register(a, p, PG, 0x101000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     EADDRINUSE);
	cr_expect_eq(scif_register(a, p + 2 * PG, PG, 0x102000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     0x102000);
	scif_close(a);
	scif_close(b);
}

Test(register, library_chosen_offsets_C56)
{
	scif_epd_t a, b;
	uint8_t *p = pages(3, PROT_READ | PROT_WRITE);
	off_t o1, o2;

	test_pair(&a, &b, NULL);
	o1 = scif_register(a, p, 2 * PG, 0, SCIF_PROT_READ, 0);
	o2 = scif_register(a, p + 2 * PG, PG, 0, SCIF_PROT_READ, 0);
	cr_assert_geq(o1, 0);
	cr_assert_geq(o2, 0);
	cr_expect_eq(o1 % PG, 0);
	cr_expect_eq(o2 % PG, 0);
	cr_expect(o1 + 2 * PG <= o2 || o2 + PG <= o1, "windows overlap");
	scif_close(a);
	scif_close(b);
}

Test(register, unmapped_and_readonly_memory_C57)
{
	scif_epd_t a, b;
	uint8_t *hole, *ro = pages(1, PROT_READ);

	test_pair(&a, &b, NULL);
	/* Made just before the call, so no allocator (ASan's included) maps it again. */
	hole = pages(1, PROT_READ);
	munmap(hole, PG);
	expect_errno(scif_register(a, hole, PG, 0, SCIF_PROT_READ, 0), EFAULT);
	expect_errno(scif_register(a, ro, PG, 0, SCIF_PROT_WRITE, 0), EFAULT);
	cr_expect_geq(scif_register(a, ro, PG, 0, SCIF_PROT_READ, 0), 0);
	scif_close(a);
	scif_close(b);
}

Test(register, keeps_the_memory_contents)
{
	scif_epd_t a, b;
	uint8_t *p = malloc(3 * PG), *q = (uint8_t *)(((uintptr_t)p + PG - 1) & ~(uintptr_t)(PG - 1));

	test_pair(&a, &b, NULL);
	for (int i = 0; i < PG; i++)
		q[i] = (uint8_t)(i * 3);
	cr_assert_geq(scif_register(a, q, PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0), 0);
	for (int i = 0; i < PG; i++)
		cr_assert_eq(q[i], (uint8_t)(i * 3), "byte %d changed by registration", i);
	q[5] = 99; /* still the application's ordinary memory */
	cr_expect_eq(q[5], 99);
	scif_close(a);
	scif_close(b);
	free(p);
}

Test(unregister, then_peer_rma_fails_C58)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	cr_expect_eq(scif_unregister(b, rw, 2 * PG), 0);
	expect_errno(scif_writeto(a, lw, 100, rw, SCIF_RMA_SYNC), ENXIO);
	scif_close(a);
	scif_close(b);
}

Test(unregister, half_a_window_C59)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	expect_errno(scif_unregister(b, rw, PG), EINVAL);
	cr_expect_eq(scif_writeto(a, lw, 100, rw, SCIF_RMA_SYNC), 0, "window must still work");
	scif_close(a);
	scif_close(b);
}

Test(unregister, two_adjacent_windows_C60)
{
	scif_epd_t a, b;
	uint8_t *p = pages(2, PROT_READ | PROT_WRITE);

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_register(a, p, PG, 0x200000, SCIF_PROT_READ, SCIF_MAP_FIXED), 0x200000);
	cr_assert_eq(scif_register(a, p + PG, PG, 0x201000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     0x201000);
	cr_expect_eq(scif_unregister(a, 0x200000, 2 * PG), 0);
	cr_expect_eq(scif_register(a, p, 2 * PG, 0x200000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     0x200000, "both offsets must be free again");
	scif_close(a);
	scif_close(b);
}

Test(unregister, bad_arguments_C61)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_unregister(a, 0x100000, 0), EINVAL);
	expect_errno(scif_unregister(a, 0x100001, PG), EINVAL);
	expect_errno(scif_unregister(a, -4096, PG), EINVAL);
	cr_expect_eq(scif_unregister(a, 0x100000, PG), 0, "an empty range is fine (MPSS4)");
	scif_close(a);
	scif_close(b);
}

Test(rma, writeto_unaligned_C62)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	for (int i = 0; i < 1000; i++)
		abuf[i] = (uint8_t)(i + 1);
	cr_assert_eq(scif_writeto(a, lw, 1000, rw + 7, SCIF_RMA_SYNC), 0, "%s", strerror(errno));
	cr_expect_arr_eq(bbuf + 7, abuf, 1000);
	scif_close(a);
	scif_close(b);
}

Test(rma, readfrom_unaligned_C63)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	for (int i = 0; i < 5000; i++)
		bbuf[i] = (uint8_t)(i * 7);
	cr_assert_eq(scif_readfrom(a, lw + 3, 5000, rw, SCIF_RMA_SYNC), 0, "%s", strerror(errno));
	cr_expect_arr_eq(abuf + 3, bbuf, 5000);
	scif_close(a);
	scif_close(b);
}

Test(rma, spans_contiguous_windows_not_gaps_C64)
{
	scif_epd_t a, b;
	uint8_t *ab = pages(4, PROT_READ | PROT_WRITE), *bb = pages(4, PROT_READ | PROT_WRITE);
	off_t lw;

	test_pair(&a, &b, NULL);
	lw = scif_register(a, ab, 4 * PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(lw, 0);
	cr_assert_eq(scif_register(b, bb, PG, 0x300000, SCIF_PROT_WRITE, SCIF_MAP_FIXED), 0x300000);
	cr_assert_eq(scif_register(b, bb + PG, PG, 0x301000, SCIF_PROT_WRITE, SCIF_MAP_FIXED),
		     0x301000);
	cr_assert_eq(scif_register(b, bb + 2 * PG, PG, 0x303000, SCIF_PROT_WRITE, SCIF_MAP_FIXED),
		     0x303000);
	memset(ab, 0x5a, 4 * PG);
	cr_expect_eq(scif_writeto(a, lw, 2 * PG, 0x300000, SCIF_RMA_SYNC), 0);
	cr_expect_eq(bb[PG + 100], 0x5a);
	expect_errno(scif_writeto(a, lw, 3 * PG, 0x301000, SCIF_RMA_SYNC), ENXIO);
	scif_close(a);
	scif_close(b);
}

Test(rma, outside_windows_and_negative_C65)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	expect_errno(scif_writeto(a, lw, 100, rw + PG, SCIF_RMA_SYNC), ENXIO);
	expect_errno(scif_writeto(a, lw, 100, rw + PG - 50, SCIF_RMA_SYNC), ENXIO);
	expect_errno(scif_readfrom(a, -4096, 100, rw, SCIF_RMA_SYNC), ENXIO);
	scif_close(a);
	scif_close(b);
}

Test(rma, flags_and_length_C66)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	expect_errno(scif_writeto(a, lw, 0, rw, SCIF_RMA_SYNC), EINVAL);
	expect_errno(scif_writeto(a, lw, 10, rw, 0x10), EINVAL);
	cr_expect_eq(scif_writeto(a, lw, 10, rw, SCIF_RMA_SYNC | 0x100), 0);
	scif_close(a);
	scif_close(b);
}

Test(rma, protection_C67)
{
	scif_epd_t a, b;
	uint8_t *ab = pages(1, PROT_READ | PROT_WRITE), *bb = pages(1, PROT_READ | PROT_WRITE);
	off_t lw, rw;

	test_pair(&a, &b, NULL);
	lw = scif_register(a, ab, PG, 0, SCIF_PROT_READ, 0);
	rw = scif_register(b, bb, PG, 0, SCIF_PROT_READ, 0);
	cr_assert_geq(lw, 0);
	cr_assert_geq(rw, 0);
	errno = 0;
	cr_expect_eq(scif_writeto(a, lw, 10, rw, SCIF_RMA_SYNC), -1);
	cr_expect(errno == EPERM || errno == EACCES, "errno %d", errno);
	errno = 0;
	cr_expect_eq(scif_readfrom(a, lw, 10, rw, SCIF_RMA_SYNC), -1);
	cr_expect(errno == EPERM || errno == EACCES, "errno %d", errno);
	scif_close(a);
	scif_close(b);
}

Test(rma, v_calls_unaligned_buffers_C68)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf, *src = malloc(800), *dst = malloc(800);
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	for (int i = 0; i < 777; i++)
		src[3 + i] = (uint8_t)(i ^ 0x33);
	cr_assert_eq(scif_vwriteto(a, src + 3, 777, rw, SCIF_RMA_SYNC), 0);
	cr_expect_arr_eq(bbuf, src + 3, 777);
	cr_assert_eq(scif_vreadfrom(a, dst + 5, 777, rw, SCIF_RMA_SYNC), 0);
	cr_expect_arr_eq(dst + 5, src + 3, 777);
	scif_close(a);
	scif_close(b);
	free(src);
	free(dst);
}

Test(rma, v_call_null_buffer_C69)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	expect_errno(scif_vreadfrom(a, NULL, PG, rw, SCIF_RMA_SYNC), EFAULT);
	scif_close(a);
	scif_close(b);
}

Test(rma, window_of_another_connection_C70)
{
	scif_epd_t a, b, a2, b2;
	uint8_t *p = pages(1, PROT_READ | PROT_WRITE), *q = pages(1, PROT_READ | PROT_WRITE);
	off_t lw, w2;

	test_pair(&a, &b, NULL);
	test_pair(&a2, &b2, NULL);
	lw = scif_register(a, p, PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	w2 = scif_register(b2, q, PG, 0x500000, SCIF_PROT_READ | SCIF_PROT_WRITE, SCIF_MAP_FIXED);
	cr_assert_geq(lw, 0);
	cr_assert_eq(w2, 0x500000);
	expect_errno(scif_writeto(a, lw, 10, w2, SCIF_RMA_SYNC), ENXIO);
	scif_close(a);
	scif_close(b);
	scif_close(a2);
	scif_close(b2);
}

Test(rma, after_peer_closed_C71)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;
	int mark;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	scif_close(b);
	usleep(50000);
	expect_errno(scif_writeto(a, lw, 10, rw, SCIF_RMA_SYNC), ECONNRESET);
	expect_errno(scif_register(a, abuf, PG, 0, SCIF_PROT_READ, 0), ECONNRESET);
	expect_errno(scif_fence_mark(a, SCIF_FENCE_INIT_SELF, &mark), ECONNRESET);
	scif_close(a);
}

Test(rma, state_checked_before_flags_C72)
{
	scif_epd_t e = scif_open();

	expect_errno(scif_writeto(e, 0, 10, 0, 0x10), ENOTCONN);
	scif_close(e);
}

Test(fence, async_writes_then_mark_wait_C73)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;
	int mark;

	rma_pair(&a, &b, &abuf, &bbuf, 64, &lw, &rw);
	for (int i = 0; i < 64 * PG; i++)
		abuf[i] = (uint8_t)(i % 251);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(scif_writeto(a, lw + i * PG, PG, rw + i * PG, 0), 0);
	cr_assert_eq(scif_fence_mark(a, SCIF_FENCE_INIT_SELF, &mark), 0);
	cr_assert_eq(scif_fence_wait(a, mark), 0);
	cr_expect_arr_eq(bbuf, abuf, 64 * PG);
	scif_close(a);
	scif_close(b);
}

Test(fence, mark_flags_C74)
{
	scif_epd_t a, b;
	int mark;

	test_pair(&a, &b, NULL);
	expect_errno(scif_fence_mark(a, 0, &mark), EINVAL);
	expect_errno(scif_fence_mark(a, SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER, &mark), EINVAL);
	expect_errno(scif_fence_mark(a, SCIF_FENCE_RAS_SELF, &mark), EINVAL);
	scif_close(a);
	scif_close(b);
}

Test(fence, peer_mark_and_wait_C75)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;
	int mark;

	rma_pair(&a, &b, &abuf, &bbuf, 16, &lw, &rw);
	memset(bbuf, 0x77, 16 * PG);
	/* b's RMAs toward a, fenced from a's side. */
	cr_assert_eq(scif_writeto(b, rw, 16 * PG, lw, 0), 0);
	cr_assert_eq(scif_fence_mark(a, SCIF_FENCE_INIT_PEER, &mark), 0);
	cr_expect_lt(mark, 0, "peer marks are negative");
	cr_assert_eq(scif_fence_wait(a, mark), 0);
	cr_expect_eq(abuf[16 * PG - 1], 0x77);
	scif_close(a);
	scif_close(b);
}

Test(fence, wait_on_unknown_mark_C76)
{
	scif_epd_t a, b;

	test_pair(&a, &b, NULL);
	expect_errno(scif_fence_wait(a, 12345), EINVAL);
	scif_close(a);
	scif_close(b);
}

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	memcpy(&v, p, 8);
	return v;
}

static void wait_value(const uint8_t *p, uint64_t want)
{
	uint64_t until = test_now_ms() + 5000;

	while (load64(p) != want && test_now_ms() < until)
		usleep(100);
	cr_assert_eq(load64(p), want, "signal value never arrived");
}

Test(fence, signal_local_after_writes_C77)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 32, &lw, &rw);
	memset(abuf + PG, 0x3c, 31 * PG);
	cr_assert_eq(scif_writeto(a, lw + PG, 31 * PG, rw + PG, 0), 0);
	cr_assert_eq(scif_fence_signal(a, lw + 4, 0x1122334455667788ULL, 0, 0,
				       SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL), 0);
	wait_value(abuf + 4, 0x1122334455667788ULL);
	/* The signal is never visible before the data it fences. */
	cr_expect_eq(bbuf[32 * PG - 1], 0x3c);
	scif_close(a);
	scif_close(b);
}

Test(fence, signal_remote_C78)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 32, &lw, &rw);
	memset(abuf + PG, 0x4d, 31 * PG);
	cr_assert_eq(scif_writeto(a, lw + PG, 31 * PG, rw + PG, 0), 0);
	cr_assert_eq(scif_fence_signal(a, 0, 0, rw, 0xabcdefULL,
				       SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE), 0);
	wait_value(bbuf, 0xabcdefULL);
	cr_expect_eq(bbuf[32 * PG - 1], 0x4d);
	scif_close(a);
	scif_close(b);
}

Test(fence, signal_peer_local_documented_pairing_C79)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	cr_assert_eq(scif_fence_signal(a, lw + 8, 0x5151ULL, rw + 16, 0x6262ULL,
				       SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL), 0);
	wait_value(abuf + 8, 0x5151ULL);
	cr_expect_eq(load64(bbuf + 16), 0, "SIGNAL_LOCAL alone must not write the remote value");
	scif_close(a);
	scif_close(b);
}

Test(fence, signal_bad_flags_C80)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	expect_errno(scif_fence_signal(a, lw + 2, 1, 0, 0, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL),
		     EINVAL);
	expect_errno(scif_fence_signal(a, lw, 1, 0, 0, SCIF_FENCE_INIT_SELF), EINVAL);
	expect_errno(scif_fence_signal(a, lw, 1, 0, 0,
				       SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER |
					       SCIF_SIGNAL_LOCAL),
		     EINVAL);
	scif_close(a);
	scif_close(b);
}

Test(fence, signal_outside_window_C81)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	expect_errno(scif_fence_signal(a, lw + PG - 4, 1, 0, 0,
				       SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL),
		     ENXIO);
	expect_errno(scif_fence_signal(a, lw + 16 * PG, 1, 0, 0,
				       SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL),
		     ENXIO);
	scif_close(a);
	scif_close(b);
}

Test(fence, unconnected_C82)
{
	scif_epd_t e = scif_open();
	int mark;

	expect_errno(scif_fence_mark(e, SCIF_FENCE_INIT_SELF, &mark), ENOTCONN);
	expect_errno(scif_fence_wait(e, 0), ENOTCONN);
	expect_errno(scif_fence_signal(e, 0, 0, 0, 0, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL),
		     ENOTCONN);
	scif_close(e);
}

Test(mmap, maps_the_same_memory_C83)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf, *m;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	bbuf[10] = 42;
	m = scif_mmap(NULL, 2 * PG, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, a, rw);
	cr_assert_neq(m, SCIF_MMAP_FAILED, "%s", strerror(errno));
	cr_expect_eq((uintptr_t)m % PG, 0);
	cr_expect_eq(m[10], 42);
	m[PG + 1] = 24;
	cr_expect_eq(bbuf[PG + 1], 24, "a store through the mapping must reach b's memory");
	cr_expect_eq(scif_munmap(m, 2 * PG), 0);
	scif_close(a);
	scif_close(b);
}

Test(mmap, bad_offset_and_unregistered_range_C84)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	errno = 0;
	cr_expect_eq(scif_mmap(NULL, PG, SCIF_PROT_READ, 0, a, rw + 100), SCIF_MMAP_FAILED);
	cr_expect_eq(errno, EINVAL);
	errno = 0;
	cr_expect_eq(scif_mmap(NULL, PG, SCIF_PROT_READ, 0, a, rw + 8 * PG), SCIF_MMAP_FAILED);
	cr_expect_eq(errno, ENXIO);
	scif_close(a);
	scif_close(b);
}

Test(mmap, write_on_readonly_window_C85)
{
	scif_epd_t a, b;
	uint8_t *bb = pages(1, PROT_READ | PROT_WRITE);
	off_t rw;

	test_pair(&a, &b, NULL);
	rw = scif_register(b, bb, PG, 0, SCIF_PROT_READ, 0);
	cr_assert_geq(rw, 0);
	errno = 0;
	cr_expect_eq(scif_mmap(NULL, PG, SCIF_PROT_WRITE, 0, a, rw), SCIF_MMAP_FAILED);
	cr_expect(errno == EPERM || errno == EACCES, "errno %d", errno);
	scif_close(a);
	scif_close(b);
}

Test(mmap, fixed_address_C86)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf, *want = pages(2, PROT_NONE), *m;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 2, &lw, &rw);
	m = scif_mmap(want, 2 * PG, SCIF_PROT_READ, SCIF_MAP_FIXED, a, rw);
	cr_expect_eq(m, want);
	scif_munmap(m, 2 * PG);
	scif_close(a);
	scif_close(b);
}

Test(mmap, survives_close_C87)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf, *m;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	bbuf[7] = 7;
	m = scif_mmap(NULL, PG, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, a, rw);
	cr_assert_neq(m, SCIF_MMAP_FAILED);
	scif_close(a);
	cr_expect_eq(m[7], 7);
	m[8] = 8;
	cr_expect_eq(bbuf[8], 8);
	cr_expect_eq(scif_munmap(m, PG), 0);
	scif_close(b);
}

Test(mmap, unregistered_mapped_window_stays_reserved_C88)
{
	scif_epd_t a, b;
	uint8_t *ab = pages(1, PROT_READ | PROT_WRITE), *bb = pages(1, PROT_READ | PROT_WRITE), *m;

	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_register(b, bb, PG, 0x700000, SCIF_PROT_READ | SCIF_PROT_WRITE,
				   SCIF_MAP_FIXED), 0x700000);
	m = scif_mmap(NULL, PG, SCIF_PROT_READ, 0, a, 0x700000);
	cr_assert_neq(m, SCIF_MMAP_FAILED);
	usleep(20000); /* the mapping notice travels to b */
	cr_expect_eq(scif_unregister(b, 0x700000, PG), 0);
	expect_errno(scif_register(b, bb, PG, 0x700000, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     EADDRINUSE);
	cr_expect_eq(scif_munmap(m, PG), 0);
	uint64_t until = test_now_ms() + 2000;
	off_t r;

	while ((r = scif_register(b, bb, PG, 0x700000, SCIF_PROT_READ, SCIF_MAP_FIXED)) < 0 &&
	       test_now_ms() < until)
		usleep(1000);
	cr_expect_eq(r, 0x700000, "offsets must be free once unmapped");
	(void)ab;
	scif_close(a);
	scif_close(b);
}

Test(munmap, unaligned_C89)
{
	expect_errno(scif_munmap((void *)0x1001, PG), EINVAL);
}

Test(mmap, spans_two_contiguous_windows_C90)
{
	scif_epd_t a, b;
	uint8_t *b1 = pages(1, PROT_READ | PROT_WRITE), *b2 = pages(1, PROT_READ | PROT_WRITE), *m;

	test_pair(&a, &b, NULL);
	b1[0] = 1;
	b2[0] = 2;
	cr_assert_eq(scif_register(b, b1, PG, 0x800000, SCIF_PROT_READ, SCIF_MAP_FIXED), 0x800000);
	cr_assert_eq(scif_register(b, b2, PG, 0x801000, SCIF_PROT_READ, SCIF_MAP_FIXED), 0x801000);
	m = scif_mmap(NULL, 2 * PG, SCIF_PROT_READ, 0, a, 0x800000);
	cr_assert_neq(m, SCIF_MMAP_FAILED, "%s", strerror(errno));
	cr_expect_eq(m[0], 1);
	cr_expect_eq(m[PG], 2);
	scif_munmap(m, 2 * PG);
	scif_close(a);
	scif_close(b);
}

Test(mmap, not_inherited_by_fork_C93)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf, *m;
	off_t lw, rw;
	pid_t pid;
	int st;

	rma_pair(&a, &b, &abuf, &bbuf, 1, &lw, &rw);
	m = scif_mmap(NULL, PG, SCIF_PROT_READ, 0, a, rw);
	cr_assert_neq(m, SCIF_MMAP_FAILED);
	pid = fork();
	if (pid == 0) {
		/* The child must not have the mapping: probe without touching it. */
		unsigned char v;

		_exit(mincore(m, PG, &v) == 0 ? 1 : 0);
	}
	test_waitpid(pid, &st, 30000);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mapping inherited by the child");
	scif_munmap(m, PG);
	scif_close(a);
	scif_close(b);
}

Test(rma, ordered_last_line_lands_last)
{
	scif_epd_t a, b;
	uint8_t *abuf, *bbuf;
	off_t lw, rw;

	rma_pair(&a, &b, &abuf, &bbuf, 64, &lw, &rw);
	for (int round = 1; round <= 20; round++) {
		memset(abuf, round, 64 * PG);
		cr_assert_eq(scif_writeto(a, lw, 64 * PG, rw, SCIF_RMA_ORDERED), 0);
		/* Poll the last byte; once it shows the round, everything else must too. */
		while (__atomic_load_n(&bbuf[64 * PG - 1], __ATOMIC_ACQUIRE) != round)
			;
		for (int i = 0; i < 64 * PG; i += 997)
			cr_assert_eq(bbuf[i], round, "byte %d older than the last line", i);
	}
	scif_close(a);
	scif_close(b);
}

/*
 * Copies in the caller read the window lists without a lock (a light read); whoever changes
 * the lists waits for them. Two threads copy between a's window and b's while b unregisters
 * and registers its window again and again (a's monitor thread takes it out of and back into
 * a's list of the peer's windows) and a third thread does the same with windows of a's own.
 * A copy either finds the window and moves the right bytes or fails with ENXIO; a copy that
 * ran into memory already given back would crash the test (and TSan sees the ordering).
 */
#define RACE_PAGES 16
#define RACE_OFF 0x4000000

struct race {
	scif_epd_t a;
	off_t lw;
	int stop, bad_errno, bad_data;
	long ok, enxio;
};

struct race_copier {
	struct race *r;
	int first; /* copier k uses pages k, k + 2, ...: the two never touch the same bytes */
};

static void *race_copier(void *arg)
{
	struct race_copier *c = arg;
	struct race *r = c->r;
	uint8_t *v = malloc(PG);

	for (unsigned int i = 0; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); i++) {
		off_t page = (off_t)((2 * i + (unsigned int)c->first) % RACE_PAGES) * PG;
		off_t roff = RACE_OFF + page;
		int ret, sync = i & 1 ? SCIF_RMA_SYNC : SCIF_RMA_USECPU;

		if (i % 3 == 0)
			ret = scif_writeto(r->a, r->lw + page, PG, roff, sync);
		else if (i % 3 == 1)
			ret = scif_readfrom(r->a, r->lw + page, PG, roff, sync);
		else
			ret = scif_vreadfrom(r->a, v, PG, roff, sync);
		if (ret == 0) {
			__atomic_add_fetch(&r->ok, 1, __ATOMIC_RELAXED);
			if (i % 3 == 2 && (v[0] != 0x5a || v[PG - 1] != 0x5a))
				__atomic_store_n(&r->bad_data, 1, __ATOMIC_RELAXED);
		} else if (errno == ENXIO) {
			__atomic_add_fetch(&r->enxio, 1, __ATOMIC_RELAXED);
		} else {
			__atomic_store_n(&r->bad_errno, errno, __ATOMIC_RELAXED);
		}
	}
	free(v);
	return NULL;
}

/* Windows of a's own come and go beside the copies (a's list changes under them). */
static void *race_own_windows(void *arg)
{
	struct race *r = arg;
	uint8_t *p = pages(2, PROT_READ | PROT_WRITE);

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		off_t w = scif_register(r->a, p, 2 * PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);

		if (w == SCIF_REGISTER_FAILED || scif_unregister(r->a, w, 2 * PG))
			__atomic_store_n(&r->bad_errno, errno, __ATOMIC_RELAXED);
	}
	munmap(p, 2 * PG);
	return NULL;
}

Test(rma, copies_race_registration_of_both_sides, .timeout = 120)
{
	struct race r = { 0 };
	struct race_copier c[2] = { { &r, 0 }, { &r, 1 } };
	pthread_t t[3];
	scif_epd_t b;
	uint8_t *abuf, *bbuf;
	off_t rw;
	int rounds = (int)test_scaled(400);

	test_pair(&r.a, &b, NULL);
	abuf = pages(RACE_PAGES, PROT_READ | PROT_WRITE);
	bbuf = pages(RACE_PAGES, PROT_READ | PROT_WRITE);
	memset(abuf, 0x5a, RACE_PAGES * PG);
	memset(bbuf, 0x5a, RACE_PAGES * PG);
	r.lw = scif_register(r.a, abuf, RACE_PAGES * PG, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_neq(r.lw, SCIF_REGISTER_FAILED, "register a: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, race_copier, &c[i]), 0);
	cr_assert_eq(pthread_create(&t[2], NULL, race_own_windows, &r), 0);
	for (int i = 0; i < rounds; i++) {
		rw = scif_register(b, bbuf, RACE_PAGES * PG, RACE_OFF,
				   SCIF_PROT_READ | SCIF_PROT_WRITE, SCIF_MAP_FIXED);
		cr_assert_eq(rw, RACE_OFF, "round %d: register b: %s", i, strerror(errno));
		cr_assert_eq(scif_unregister(b, RACE_OFF, RACE_PAGES * PG), 0,
			     "round %d: unregister b: %s", i, strerror(errno));
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(r.bad_errno, 0, "a copy or a registration failed with %s",
		     strerror(r.bad_errno));
	cr_expect_eq(r.bad_data, 0, "a copy read bytes that were never in the window");
	cr_expect_gt(r.ok, 0, "no copy found the window (%ld ENXIO)", r.enxio);
	cr_expect_gt(r.enxio, 0, "no copy ran while the window was away (%ld copies)", r.ok);
	/* Both sides are whole: a last copy each way. */
	rw = scif_register(b, bbuf, RACE_PAGES * PG, RACE_OFF, SCIF_PROT_READ | SCIF_PROT_WRITE,
			   SCIF_MAP_FIXED);
	cr_assert_eq(rw, RACE_OFF);
	cr_expect_eq(scif_writeto(r.a, r.lw, RACE_PAGES * PG, rw, SCIF_RMA_SYNC), 0);
	cr_expect_eq(scif_readfrom(r.a, r.lw, RACE_PAGES * PG, rw, SCIF_RMA_SYNC), 0);
	cr_expect_eq(abuf[RACE_PAGES * PG - 1], 0x5a);
	scif_close(r.a);
	scif_close(b);
}

/*
 * A copy in the caller holds no reference to its endpoint: closing the endpoint under it
 * must wait for the copy before the windows go. Two threads copy 32 KiB at a time between a
 * and b while the main thread closes a; each copy succeeds or fails as an operation on a
 * closed descriptor does (EBADF, or ENOTTY if the number was reused meanwhile).
 * Not in the TSan build: ThreadSanitizer reports every use of a descriptor that another
 * thread closes (the failed copy's fstat against close(2)), and that use is this test's
 * point. The TSan build checks light copies against registration (the test above).
 */
#if !defined(__SANITIZE_THREAD__)
struct close_race {
	scif_epd_t a;
	off_t lw, rw;
	int bad_errno;
	long ok;
};

struct close_copier {
	struct close_race *c;
	off_t first; /* copier k uses pages [16k, 16k + 16) of both windows */
};

static void *close_race_copier(void *arg)
{
	struct close_copier *k = arg;
	struct close_race *c = k->c;

	for (unsigned int i = 0;; i++) {
		off_t w = k->first, r = k->first + 8 * PG;
		int ret = i & 1 ? scif_writeto(c->a, c->lw + w, 8 * PG, c->rw + w, SCIF_RMA_SYNC) :
				  scif_readfrom(c->a, c->lw + r, 8 * PG, c->rw + r, SCIF_RMA_SYNC);

		if (ret == 0) {
			__atomic_add_fetch(&c->ok, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (errno != EBADF && errno != ENOTTY)
			__atomic_store_n(&c->bad_errno, errno, __ATOMIC_RELAXED);
		return NULL;
	}
}

Test(rma, close_while_copies_run, .timeout = 120)
{
	int rounds = (int)test_scaled(40);

	for (int round = 0; round < rounds; round++) {
		struct close_race c = { 0 };
		struct close_copier k[2] = { { &c, 0 }, { &c, 16 * PG } };
		pthread_t t[2];
		scif_epd_t b;
		uint8_t *abuf, *bbuf;

		rma_pair(&c.a, &b, &abuf, &bbuf, 32, &c.lw, &c.rw);
		for (int i = 0; i < 2; i++)
			cr_assert_eq(pthread_create(&t[i], NULL, close_race_copier, &k[i]), 0);
		while (__atomic_load_n(&c.ok, __ATOMIC_RELAXED) < 100 * (round % 4 + 1))
			sched_yield();
		cr_assert_eq(scif_close(c.a), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		cr_expect_eq(c.bad_errno, 0, "round %d: a copy failed with %s", round,
			     strerror(c.bad_errno));
		scif_close(b);
		munmap(abuf, 32 * PG);
		munmap(bbuf, 32 * PG);
	}
}
#endif /* !__SANITIZE_THREAD__ */
