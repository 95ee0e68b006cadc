// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-vq.c - the split virtqueue on its own: the card's driver half and the host's device half
 * in one process over ordinary memory (the "RAS" is a window at WIN_OFF), data round trips,
 * index wrap, notification suppression, a two-thread stress, and hostile rings on both sides.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "vq.h"

#define WIN_OFF 0x40000000ull        /* where the window sits in the card's RAS */
#define EVT (1ULL << VIRTIO_RING_F_EVENT_IDX)
#define IND (1ULL << VIRTIO_RING_F_INDIRECT_DESC)

/* One queue, both halves, over a window of plain memory. */
struct env {
	uint8_t *win;
	size_t win_len, ring_bytes, pool_used;
	struct vq_card c;
	struct vq_host h;
	struct vos_req r;
	int fail;                    /* the mem ops fail with this (-errno) when set */
};

static int mem_check(struct env *e, size_t len, uint64_t off)
{
	if (e->fail)
		return e->fail;
	if (off < WIN_OFF || len > e->win_len || off - WIN_OFF > e->win_len - len)
		return -EFAULT;
	return 0;
}

static int mem_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct env *e = ctx;
	int ret = mem_check(e, len, off);

	if (!ret)
		memcpy(buf, e->win + (off - WIN_OFF), len);
	return ret;
}

static int mem_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct env *e = ctx;
	int ret = mem_check(e, len, off);

	if (!ret)
		memcpy(e->win + (off - WIN_OFF), buf, len);
	return ret;
}

static const struct vq_mem_ops mem_ops = { .read = mem_read, .write = mem_write };

static struct env *env_new(uint16_t size, uint64_t features, size_t pool)
{
	struct env *e = calloc(1, sizeof(*e));

	cr_assert_not_null(e);
	e->ring_bytes = vq_card_ring_bytes(size, features);
	cr_assert_gt(e->ring_bytes, 0);
	e->win_len = e->ring_bytes + pool;
	cr_assert_eq(posix_memalign((void **)&e->win, 4096, e->win_len), 0);
	memset(e->win, 0xa5, e->win_len);
	cr_assert_eq(vq_card_init(&e->c, size, features, e->win, e->win, WIN_OFF, e->win_len), 0);
	cr_assert_eq(vq_host_init(&e->h, size, features, e->c.desc, e->c.avail, e->c.used,
				  WIN_OFF, e->win_len, &mem_ops, e), 0);
	return e;
}

static void env_free(struct env *e)
{
	vq_card_destroy(&e->c);
	free(e->win);
	free(e);
}

/* Buffer memory inside the window, after the rings. */
static void *env_alloc(struct env *e, size_t len)
{
	uint8_t *p = e->win + e->ring_bytes + e->pool_used;

	e->pool_used += (len + 15) & ~(size_t)15;
	cr_assert_leq(e->ring_bytes + e->pool_used, e->win_len, "test pool too small");
	return p;
}

static uint64_t pool_off(struct env *e, size_t at)
{
	return WIN_OFF + e->ring_bytes + at;
}

static void fill(void *buf, size_t len, uint32_t seed)
{
	uint8_t *p = buf;
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static uint64_t fnv(const void *buf, size_t len, uint64_t h)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

#define FNV0 0xcbf29ce484222325ull

/* ---------------------------------------------------------------------------------------- */
/* Layout and arguments. */

Test(vq, layout_puts_used_ring_on_its_own_page, .timeout = 30)
{
	struct env *e = env_new(256, EVT | IND, 0);
	uint8_t *base = e->win;

	cr_expect_eq((uint8_t *)e->c.desc, base);
	cr_expect_eq((uint8_t *)e->c.avail, base + 256 * 16);
	cr_expect_eq(((uint8_t *)e->c.used - base) % 4096, 0);
	cr_expect_geq((uint8_t *)e->c.used, (uint8_t *)&e->c.avail->ring[257]);
	cr_expect_eq(((uint8_t *)e->c.indirect_tables - base) % 4096, 0);
	cr_expect_geq((uint8_t *)e->c.indirect_tables, (uint8_t *)&e->c.used->ring[256] + 2);
	cr_expect_eq(e->ring_bytes % 4096, 0);
	cr_expect_eq(e->ring_bytes, ((uint8_t *)e->c.indirect_tables - base) + 256 * 64 * 16);
	cr_expect_lt(vq_card_ring_bytes(256, EVT), e->ring_bytes);
	cr_expect_eq(vq_card_ring_bytes(0, 0), 0);
	cr_expect_eq(vq_card_ring_bytes(3, 0), 0);
	cr_expect_eq(vq_card_ring_bytes(2048, 0), 0);
	cr_expect_eq(vq_card_off(&e->c, e->c.avail), WIN_OFF + 256 * 16);
	cr_expect_eq(vq_card_space(&e->c), 256);
	env_free(e);
}

Test(vq, init_refuses_bad_arguments, .timeout = 30)
{
	struct env *e = env_new(16, 0, 4096);
	struct vq_card c;
	struct vq_host h;
	void *d = e->c.desc, *a = e->c.avail, *u = e->c.used;

	/* Card: size, alignment, rings outside the window. */
	cr_expect_eq(vq_card_init(&c, 12, 0, e->win, e->win, WIN_OFF, e->win_len), -EINVAL);
	cr_expect_eq(vq_card_init(&c, 16, 0, e->win + 64, e->win, WIN_OFF, e->win_len), -EINVAL);
	cr_expect_eq(vq_card_init(&c, 16, 0, e->win, e->win, WIN_OFF, 4096), -EINVAL);
	cr_expect_eq(vq_card_init(&c, 16, 0, e->win + 4096, e->win, WIN_OFF, e->ring_bytes),
		     -EINVAL);
	/* Host: size, ring alignment, missing ops. */
	cr_expect_eq(vq_host_init(&h, 0, 0, d, a, u, WIN_OFF, e->win_len, &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 24, 0, d, a, u, WIN_OFF, e->win_len, &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 2048, 0, d, a, u, WIN_OFF, e->win_len, &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 16, 0, (uint8_t *)d + 8, a, u, WIN_OFF, e->win_len,
				  &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 16, 0, d, (uint8_t *)a + 1, u, WIN_OFF, e->win_len,
				  &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 16, 0, d, a, (uint8_t *)u + 2, WIN_OFF, e->win_len,
				  &mem_ops, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 16, 0, d, a, u, WIN_OFF, e->win_len, NULL, e), -EINVAL);
	cr_expect_eq(vq_host_init(&h, 16, 0, d, a, u, UINT64_MAX, 2, &mem_ops, e), -EINVAL);
	env_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* Requests end to end. */

Test(vq, single_segment_round_trip, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	char *buf = env_alloc(e, 64), out[64];
	int tok;
	void *t;
	uint32_t len;

	strcpy(buf, "hello, host");
	cr_assert_eq(vq_card_add(&e->c, &(struct vos_sg){ buf, 12 }, 1, 0, &tok), 0);
	cr_expect_eq(vq_card_space(&e->c), 7);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(e->r.nseg, 1);
	cr_expect_eq(e->r.out_len, 12);
	cr_expect_eq(e->r.in_len, 0);
	cr_expect_eq(e->r.seg[0].addr, vq_card_off(&e->c, buf));
	cr_expect_eq(e->r.seg[0].write, 0);
	cr_expect_eq(vq_req_read(&e->h, &e->r, 0, out, sizeof(out)), 12);
	cr_expect_str_eq(out, "hello, host");
	cr_expect_eq(vq_req_write(&e->h, &e->r, 0, out, 1), 0, "no writable part");
	cr_expect_eq(vq_host_push(&e->h, &e->r, 1), -EINVAL);
	cr_assert_eq(vq_host_push(&e->h, &e->r, 0), 0);
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 0);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(t, &tok);
	cr_expect_eq(len, 0);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), 0);
	cr_expect_eq(vq_card_space(&e->c), 8);
	env_free(e);
}

Test(vq, multi_segment_offsets_and_short_copies, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	uint8_t *o1 = env_alloc(e, 10), *o2 = env_alloc(e, 20), *o3 = env_alloc(e, 5);
	uint8_t *i1 = env_alloc(e, 7), *i2 = env_alloc(e, 9);
	struct vos_sg sg[] = { { o1, 10 }, { o2, 20 }, { o3, 5 }, { i1, 7 }, { i2, 9 } };
	uint8_t want[35], got[64], data[16];
	void *t;
	uint32_t len;

	fill(want, 35, 1);
	memcpy(o1, want, 10);
	memcpy(o2, want + 10, 20);
	memcpy(o3, want + 30, 5);
	cr_assert_eq(vq_card_add(&e->c, sg, 3, 2, e), 0);
	cr_expect_eq(vq_card_space(&e->c), 3);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_assert_eq(e->r.nseg, 5);
	cr_expect_eq(e->r.out_len, 35);
	cr_expect_eq(e->r.in_len, 16);
	for (unsigned k = 0; k < 5; k++) {
		cr_expect_eq(e->r.seg[k].addr, vq_card_off(&e->c, sg[k].addr));
		cr_expect_eq(e->r.seg[k].len, sg[k].len);
		cr_expect_eq(e->r.seg[k].write, k >= 3);
	}
	/* From every offset, with lengths running past the end of the readable part. */
	for (size_t off = 0; off <= 36; off++) {
		ssize_t n = vq_req_read(&e->h, &e->r, off, got, 64);

		cr_assert_eq(n, off < 35 ? 35 - (ssize_t)off : 0);
		cr_assert_eq(memcmp(got, want + off, n), 0);
	}
	cr_expect_eq(vq_req_read(&e->h, &e->r, 8, got, 5), 5);
	cr_expect_eq(memcmp(got, want + 8, 5), 0);
	fill(data, 16, 2);
	cr_expect_eq(vq_req_write(&e->h, &e->r, 0, data, 4), 4);
	cr_expect_eq(vq_req_write(&e->h, &e->r, 4, data + 4, 100), 12);
	cr_expect_eq(vq_req_write(&e->h, &e->r, 16, data, 1), 0);
	cr_expect_eq(memcmp(i1, data, 7), 0);
	cr_expect_eq(memcmp(i2, data + 7, 9), 0);
	/* A failing copy reports the transport's error. */
	e->fail = -EIO;
	cr_expect_eq(vq_req_read(&e->h, &e->r, 0, got, 1), -EIO);
	cr_expect_eq(vq_req_write(&e->h, &e->r, 0, data, 1), -EIO);
	e->fail = 0;
	cr_assert_eq(vq_host_push(&e->h, &e->r, 16), 0);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(t, e);
	cr_expect_eq(len, 16);
	cr_expect_eq(vq_card_space(&e->c), 8);
	env_free(e);
}

Test(vq, indirect_tables_take_one_descriptor, .timeout = 30)
{
	struct env *e = env_new(8, IND, 65536);
	struct vos_sg sg[VQ_INDIRECT_MAX + 1];
	uint8_t *b = env_alloc(e, 8 * (VQ_INDIRECT_MAX + 1));
	void *t;
	uint32_t len;

	for (unsigned k = 0; k <= VQ_INDIRECT_MAX; k++)
		sg[k] = (struct vos_sg){ b + 8 * k, 8 };
	/* Eight 4-segment buffers fit a size-8 queue. */
	for (unsigned i = 0; i < 8; i++)
		cr_assert_eq(vq_card_add(&e->c, sg, 2, 2, &e->r.seg[i]), 0);
	cr_expect_eq(vq_card_space(&e->c), 0);
	cr_expect_eq(vq_card_add(&e->c, sg, 1, 0, e), -ENOSPC);
	cr_expect(e->c.desc[0].flags & VRING_DESC_F_INDIRECT);
	for (unsigned i = 0; i < 8; i++) {
		cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
		cr_expect_eq(e->r.nseg, 4);
		cr_expect_eq(e->r.out_len, 16);
		cr_expect_eq(e->r.in_len, 16);
		cr_expect_eq(e->r.seg[3].addr, vq_card_off(&e->c, b + 24));
		cr_expect_eq(e->r.seg[2].write, 1);
		cr_assert_eq(vq_host_push(&e->h, &e->r, 3), 0);
	}
	for (unsigned i = 0; i < 8; i++) {
		cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
		cr_expect_eq(len, 3);
	}
	/* A one-segment buffer stays direct; more than a table's worth falls back to a chain
	 * (which does not fit a size-8 queue). */
	cr_assert_eq(vq_card_add(&e->c, sg, 1, 0, e), 0);
	cr_expect_eq(vq_card_add(&e->c, sg, VQ_INDIRECT_MAX + 1, 0, e), -EINVAL);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(e->r.nseg, 1);
	cr_expect_eq(e->c.desc[e->r.head].flags & VRING_DESC_F_INDIRECT, 0);
	env_free(e);
}

Test(vq, indirect_fallback_to_chain_when_too_many_segments, .timeout = 30)
{
	struct env *e = env_new(128, IND, 65536);
	struct vos_sg sg[VQ_INDIRECT_MAX + 1];
	uint8_t *b = env_alloc(e, 8 * (VQ_INDIRECT_MAX + 1));

	for (unsigned k = 0; k <= VQ_INDIRECT_MAX; k++)
		sg[k] = (struct vos_sg){ b + 8 * k, 8 };
	cr_assert_eq(vq_card_add(&e->c, sg, VQ_INDIRECT_MAX, 1, e), 0);
	cr_expect_eq(vq_card_space(&e->c), 128 - VQ_INDIRECT_MAX - 1);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(e->r.nseg, VQ_INDIRECT_MAX + 1);
	cr_expect_eq(e->r.in_len, 8);
	env_free(e);
}

/* Round trip of `len` bytes each way, split into random segments, copied in random chunks. */
static void round_trip(struct env *e, uint8_t *ob, uint8_t *ib, size_t len, unsigned *seed)
{
	struct vos_sg sg[10];
	unsigned nout = 1 + rand_r(seed) % 5, nin = 1 + rand_r(seed) % 5, k;
	size_t at, chunk;
	static uint8_t tmp[1 << 20];
	uint64_t sum = FNV0, want;
	void *t;
	uint32_t got;

	if (nout > len)
		nout = len;
	if (nin > len)
		nin = len;
	/* Split [0, len) of each buffer at random points. */
	for (k = 0, at = 0; k < nout; k++) {
		size_t n = k + 1 == nout ? len - at : 1 + rand_r(seed) % (len - at - (nout - k - 1));

		sg[k] = (struct vos_sg){ ob + at, n };
		at += n;
	}
	for (k = 0, at = 0; k < nin; k++) {
		size_t n = k + 1 == nin ? len - at : 1 + rand_r(seed) % (len - at - (nin - k - 1));

		sg[nout + k] = (struct vos_sg){ ib + at, n };
		at += n;
	}
	fill(ob, len, (uint32_t)len);
	want = fnv(ob, len, FNV0);
	cr_assert_eq(vq_card_add(&e->c, sg, nout, nin, &sum), 0);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_assert_eq(e->r.out_len, len);
	cr_assert_eq(e->r.in_len, len);
	for (at = 0; at < len; at += chunk) {
		chunk = 1 + rand_r(seed) % 70000;
		ssize_t n = vq_req_read(&e->h, &e->r, at, tmp, chunk);

		cr_assert_eq(n, chunk < len - at ? chunk : len - at);
		sum = fnv(tmp, n, sum);
	}
	cr_assert_eq(sum, want, "len %zu: checksum of what the host read", len);
	fill(tmp, len, (uint32_t)~len);
	want = fnv(tmp, len, FNV0);
	for (at = 0; at < len; at += chunk) {
		chunk = 1 + rand_r(seed) % 70000;
		ssize_t n = vq_req_write(&e->h, &e->r, at, tmp + at, chunk);

		cr_assert_eq(n, chunk < len - at ? chunk : len - at);
	}
	cr_assert_eq(vq_host_push(&e->h, &e->r, len), 0);
	cr_assert_eq(vq_card_get(&e->c, &t, &got), 1);
	cr_assert_eq(t, &sum);
	cr_assert_eq(got, len);
	cr_assert_eq(fnv(ib, len, FNV0), want, "len %zu: checksum of what the card got", len);
}

static void round_trips(uint64_t features)
{
	static const size_t sizes[] = { 1, 2, 3, 7, 15, 16, 17, 255, 256, 511, 4095, 4096, 4097,
					65535, 65536, 65537, 100000, 1 << 20 };
	struct env *e = env_new(64, features, 2 << 20);
	uint8_t *ob = env_alloc(e, 1 << 20), *ib = env_alloc(e, 1 << 20);
	unsigned seed = 7;

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (unsigned rep = 0; rep < 4; rep++)
			round_trip(e, ob, ib, sizes[i], &seed);
	cr_expect_eq(vq_card_space(&e->c), 64);
	env_free(e);
}

Test(vq, data_round_trip_direct, .timeout = 30)
{
	round_trips(0);
}

Test(vq, data_round_trip_indirect, .timeout = 30)
{
	round_trips(IND | EVT);
}

/* ---------------------------------------------------------------------------------------- */
/* Index wrap, notifications, ring full. */

Test(vq, indexes_wrap_at_16_bits, .timeout = 30)
{
	struct env *e = env_new(4, EVT, 4096);
	uint32_t *b = env_alloc(e, 4 * sizeof(uint32_t));
	unsigned kicks = 0, irqs = 0, n = 70000;
	void *t;
	uint32_t len, v;

	for (unsigned i = 0; i < n; i++) {
		/* Two in flight so the ring slots and the indexes drift apart. */
		b[i % 4] = i;
		cr_assert_eq(vq_card_add(&e->c, &(struct vos_sg){ &b[i % 4], 4 }, 1, 0,
					 (void *)(uintptr_t)(i + 1)), 0);
		kicks += vq_card_need_kick(&e->c);
		if (i % 2 == 0)
			continue;
		for (unsigned j = 0; j < 2; j++) {
			cr_assert_eq(vq_host_pop(&e->h, &e->r), 1, "request %u", i);
			cr_assert_eq(vq_req_read(&e->h, &e->r, 0, &v, 4), 4);
			cr_assert_eq(v, i - 1 + j);
			cr_assert_eq(vq_host_push(&e->h, &e->r, 0), 0);
		}
		cr_assert_eq(vq_host_pop(&e->h, &e->r), 0);
		irqs += vq_host_need_irq(&e->h);
		for (unsigned j = 0; j < 2; j++) {
			cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
			cr_assert_eq((uintptr_t)t, i + j);
		}
		cr_assert_eq(vq_card_get(&e->c, &t, &len), 0);
	}
	cr_expect_eq(e->c.avail_idx, (uint16_t)n);
	cr_expect_eq(e->h.used_idx, (uint16_t)n);
	/* The host drained to empty (re-arming) before each pair: one kick per pair, the first
	 * add; the card drained before each batch of pushes: one IRQ per batch. */
	cr_expect_eq(kicks, n / 2);
	cr_expect_eq(irqs, n / 2);
	env_free(e);
}

Test(vq, event_idx_suppresses_kicks_and_irqs, .timeout = 30)
{
	struct env *e = env_new(8, EVT, 4096);
	char *b = env_alloc(e, 8);
	struct vos_sg sg = { b, 8 };
	struct vos_req r[8];
	void *t;
	uint32_t len;

	/* Kicks: the host asks for one at the entry after what it consumed. */
	cr_expect_not(vq_card_need_kick(&e->c), "nothing added");
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b), 0);
	cr_expect(vq_card_need_kick(&e->c), "first buffer");
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 1), 0);
	cr_expect_not(vq_card_need_kick(&e->c), "host has not caught up");
	cr_assert_eq(vq_host_pop(&e->h, &r[0]), 1);
	cr_assert_eq(vq_host_pop(&e->h, &r[1]), 1);
	cr_assert_eq(vq_host_pop(&e->h, &r[2]), 0);
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 2), 0);
	cr_expect(vq_card_need_kick(&e->c), "host drained and re-armed");
	cr_assert_eq(vq_host_pop(&e->h, &r[2]), 1);
	cr_expect_not(vq_host_kicks(&e->h, false));
	cr_assert_eq(vq_host_pop(&e->h, &r[3]), 0);
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 3), 0);
	cr_expect_not(vq_card_need_kick(&e->c), "kicks off");
	cr_expect(vq_host_kicks(&e->h, true), "a buffer arrived while kicks were off");
	cr_assert_eq(vq_host_pop(&e->h, &r[3]), 1);
	cr_assert_eq(vq_host_pop(&e->h, &r[4]), 0);
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 4), 0);
	cr_expect(vq_card_need_kick(&e->c));
	cr_assert_eq(vq_host_pop(&e->h, &r[4]), 1);
	cr_expect_not(vq_host_kicks(&e->h, true), "nothing new since the pop");

	/* IRQs: the card asks for one at the element after what it consumed. */
	cr_expect_not(vq_host_need_irq(&e->h), "nothing pushed");
	cr_assert_eq(vq_host_push(&e->h, &r[0], 1), 0);
	cr_expect(vq_host_need_irq(&e->h), "first push");
	cr_assert_eq(vq_host_push(&e->h, &r[1], 1), 0);
	cr_expect_not(vq_host_need_irq(&e->h), "card has not caught up");
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 0);
	cr_assert_eq(vq_host_push(&e->h, &r[2], 1), 0);
	cr_expect(vq_host_need_irq(&e->h), "card drained and re-armed");
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_not(vq_card_irqs(&e->c, false));
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 0);
	cr_assert_eq(vq_host_push(&e->h, &r[3], 1), 0);
	cr_expect_not(vq_host_need_irq(&e->h), "IRQs off");
	cr_expect(vq_card_irqs(&e->c, true), "a buffer came back while IRQs were off");
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(t, b + 3);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 0);
	cr_expect_not(vq_card_irqs(&e->c, true));
	env_free(e);
}

Test(vq, flags_suppress_without_event_idx, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	char *b = env_alloc(e, 8);
	struct vos_sg sg = { b, 8 };
	struct vos_req r[4];
	void *t;
	uint32_t len;

	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b), 0);
	cr_expect(vq_card_need_kick(&e->c));
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 1), 0);
	cr_expect(vq_card_need_kick(&e->c), "no event index: every new batch kicks");
	cr_expect_not(vq_card_need_kick(&e->c), "nothing new");
	cr_expect_not(vq_host_kicks(&e->h, false));
	cr_expect_eq(e->c.used->flags, VRING_USED_F_NO_NOTIFY);
	cr_assert_eq(vq_card_add(&e->c, &sg, 0, 1, b + 2), 0);
	cr_expect_not(vq_card_need_kick(&e->c), "NO_NOTIFY");
	cr_expect(vq_host_kicks(&e->h, true));
	cr_expect_eq(e->c.used->flags, 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(vq_host_pop(&e->h, &r[i]), 1);
	cr_expect_not(vq_host_kicks(&e->h, true));

	cr_assert_eq(vq_host_push(&e->h, &r[0], 0), 0);
	cr_expect(vq_host_need_irq(&e->h));
	cr_expect_not(vq_host_need_irq(&e->h), "nothing new");
	cr_expect_not(vq_card_irqs(&e->c, false), "nothing new since the card's last get");
	cr_expect_eq(e->c.avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
	cr_assert_eq(vq_host_push(&e->h, &r[1], 0), 0);
	cr_expect_not(vq_host_need_irq(&e->h), "NO_INTERRUPT");
	cr_expect(vq_card_irqs(&e->c, true));
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 0);
	cr_assert_eq(vq_host_push(&e->h, &r[2], 0), 0);
	cr_expect(vq_host_need_irq(&e->h));
	env_free(e);
}

Test(vq, full_ring_gives_enospc, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	uint8_t *b = env_alloc(e, 64);
	struct vos_sg sg[9];
	void *t;
	uint32_t len;

	for (unsigned k = 0; k < 9; k++)
		sg[k] = (struct vos_sg){ b + k, 1 };
	cr_assert_eq(vq_card_add(&e->c, sg, 3, 3, b), 0);
	cr_expect_eq(vq_card_space(&e->c), 2);
	cr_expect_eq(vq_card_add(&e->c, sg, 2, 1, b), -ENOSPC);
	cr_assert_eq(vq_card_add(&e->c, sg, 1, 0, b + 1), 0);
	cr_assert_eq(vq_card_add(&e->c, sg, 1, 0, b + 2), 0);
	cr_expect_eq(vq_card_add(&e->c, sg, 1, 0, b + 3), -ENOSPC);
	cr_expect_eq(vq_card_space(&e->c), 0);
	/* Never fits, or bad arguments: -EINVAL whatever the space. */
	cr_expect_eq(vq_card_add(&e->c, sg, 9, 0, b), -EINVAL);
	cr_expect_eq(vq_card_add(&e->c, sg, 0, 0, b), -EINVAL);
	cr_expect_eq(vq_card_add(&e->c, sg, 1, 0, NULL), -EINVAL);
	cr_expect_eq(vq_card_add(&e->c, &(struct vos_sg){ e->win - 1, 1 }, 1, 0, b), -EINVAL);
	cr_expect_eq(vq_card_add(&e->c, &(struct vos_sg){ e->win + e->win_len - 4, 5 }, 1, 0, b),
		     -EINVAL);
	/* Returning the 6-descriptor chain frees all of it. */
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_assert_eq(vq_host_push(&e->h, &e->r, 3), 0);
	cr_assert_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(vq_card_space(&e->c), 6);
	cr_expect_eq(vq_card_add(&e->c, sg, 3, 3, b), 0);
	env_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* Two threads: the card adds, the host pops and pushes, with real doorbells (counters) that
 * each side waits on only after the queue told it to: a lost kick or IRQ is a timeout. */

#define STRESS_N 200000
#define STRESS_SLOTS 256
#define STRESS_BUF 2048

struct slot {
	uint8_t *out, *in;
	uint32_t j, out_len, in_len;
	struct slot *next_free;
};

struct stress {
	struct env *e;
	unsigned kicks, irqs;          /* the doorbells: bumped by the notifier */
	unsigned kicks_wanted, irqs_wanted;
	int stop;                      /* set when one side fails, so the other stops waiting */
	char err[160];                 /* first failure, reported by the test thread */
	struct slot slots[STRESS_SLOTS];
};

static void stress_fail(struct stress *s, const char *what, long v)
{
	if (!__atomic_exchange_n(&s->stop, 1, __ATOMIC_ACQ_REL))
		snprintf(s->err, sizeof(s->err), "%s (%ld)", what, v);
}

/* Wait until *bell differs from seen; false on a 10 s deadline or when the peer failed. */
static bool bell_wait(struct stress *s, unsigned *bell, unsigned seen)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0;; i++) {
		if (__atomic_load_n(bell, __ATOMIC_ACQUIRE) != seen)
			return true;
		if (__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
			return false;
		sched_yield();
		if (i % 64 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec > 10)
				return false;
		}
	}
}

static void *stress_card(void *arg)
{
	struct stress *s = arg;
	struct vq_card *c = &s->e->c;
	struct slot *free_slots = NULL;
	unsigned sent = 0, got = 0, seed = 42;

	for (unsigned i = 0; i < STRESS_SLOTS; i++) {
		s->slots[i].next_free = free_slots;
		free_slots = &s->slots[i];
	}
	while (got < STRESS_N) {
		unsigned seen = __atomic_load_n(&s->irqs, __ATOMIC_ACQUIRE);
		bool progress = false;
		void *t;
		uint32_t len;
		int ret;

		while (sent < STRESS_N && free_slots) {
			struct slot *sl = free_slots;
			struct vos_sg sg[6];
			unsigned nout = 1 + rand_r(&seed) % 4, nin = 1 + rand_r(&seed) % 2, k;

			sl->j = sent;
			sl->out_len = 8 + rand_r(&seed) % (STRESS_BUF - 8);
			sl->in_len = 2 + rand_r(&seed) % (STRESS_BUF - 2);
			memcpy(sl->out, &sl->j, 4);
			memcpy(sl->out + 4, &sl->out_len, 4);
			fill(sl->out + 8, sl->out_len - 8, sl->j);
			/* nout - 1 small segments, then the rest; the same for the writable part. */
			for (k = 0; k + 1 < nout; k++)
				sg[k] = (struct vos_sg){ sl->out + k, 1 };
			sg[k] = (struct vos_sg){ sl->out + k, sl->out_len - k };
			if (nin == 2)
				sg[nout] = (struct vos_sg){ sl->in, 1 };
			sg[nout + nin - 1] = (struct vos_sg){ sl->in + nin - 1, sl->in_len - (nin - 1) };
			ret = vq_card_add(c, sg, nout, nin, sl);
			if (ret == -ENOSPC)
				break;
			if (ret) {
				stress_fail(s, "vq_card_add", ret);
				return NULL;
			}
			free_slots = sl->next_free;
			sent++;
			progress = true;
		}
		if (vq_card_need_kick(c)) {
			s->kicks_wanted++;
			__atomic_fetch_add(&s->kicks, 1, __ATOMIC_RELEASE);
		}
		while ((ret = vq_card_get(c, &t, &len)) == 1) {
			struct slot *sl = t;
			uint32_t written = sl->in_len - sl->j % 3;  /* what the host writes */
			uint8_t want[STRESS_BUF];

			fill(want, written, sl->j ^ 0x5a5a5a5au);
			if (len != written || memcmp(sl->in, want, len)) {
				stress_fail(s, "card: bad data back for request", sl->j);
				return NULL;
			}
			sl->next_free = free_slots;
			free_slots = sl;
			got++;
			progress = true;
		}
		if (ret < 0) {
			stress_fail(s, "vq_card_get", ret);
			return NULL;
		}
		if (!progress && !bell_wait(s, &s->irqs, seen)) {
			stress_fail(s, "card: no IRQ, requests returned", got);
			return NULL;
		}
	}
	return NULL;
}

static void *stress_host(void *arg)
{
	struct stress *s = arg;
	struct env *e = s->e;
	struct vos_req *r = malloc(sizeof(*r));
	uint8_t buf[STRESS_BUF], want[STRESS_BUF];
	unsigned done = 0;

	while (r && done < STRESS_N) {
		unsigned seen = __atomic_load_n(&s->kicks, __ATOMIC_ACQUIRE);
		int ret = vq_host_pop(&e->h, r);
		uint32_t j, len, written;

		if (ret < 0) {
			stress_fail(s, "vq_host_pop", ret);
			break;
		}
		if (ret == 0) {
			if (vq_host_need_irq(&e->h)) {
				s->irqs_wanted++;
				__atomic_fetch_add(&s->irqs, 1, __ATOMIC_RELEASE);
			}
			if (!bell_wait(s, &s->kicks, seen)) {
				stress_fail(s, "host: no kick, requests done", done);
				break;
			}
			continue;
		}
		if (vq_req_read(&e->h, r, 0, buf, sizeof(buf)) != r->out_len || r->out_len < 8) {
			stress_fail(s, "host: short read", r->out_len);
			break;
		}
		memcpy(&j, buf, 4);
		memcpy(&len, buf + 4, 4);
		fill(want, len - 8, j);
		if (len != r->out_len || j >= STRESS_N || memcmp(buf + 8, want, len - 8)) {
			stress_fail(s, "host: bad data in request", j);
			break;
		}
		written = r->in_len - j % 3;
		fill(buf, written, j ^ 0x5a5a5a5au);
		if (vq_req_write(&e->h, r, 0, buf, written) != written) {
			stress_fail(s, "host: write failed", j);
			break;
		}
		ret = vq_host_push(&e->h, r, written);
		if (ret) {
			stress_fail(s, "vq_host_push", ret);
			break;
		}
		done++;
		if (done % 16 == 0 && vq_host_need_irq(&e->h)) {
			s->irqs_wanted++;
			__atomic_fetch_add(&s->irqs, 1, __ATOMIC_RELEASE);
		}
	}
	/* The last pushes may not have been signalled yet. */
	if (vq_host_need_irq(&e->h))
		__atomic_fetch_add(&s->irqs, 1, __ATOMIC_RELEASE);
	free(r);
	return NULL;
}

static void stress(uint64_t features)
{
	struct stress *s = calloc(1, sizeof(*s));
	pthread_t tc, th;

	cr_assert_not_null(s);
	s->e = env_new(STRESS_SLOTS, features, (size_t)STRESS_SLOTS * 2 * STRESS_BUF);
	for (unsigned i = 0; i < STRESS_SLOTS; i++) {
		s->slots[i].out = env_alloc(s->e, STRESS_BUF);
		s->slots[i].in = env_alloc(s->e, STRESS_BUF);
	}
	cr_assert_eq(pthread_create(&th, NULL, stress_host, s), 0);
	cr_assert_eq(pthread_create(&tc, NULL, stress_card, s), 0);
	pthread_join(tc, NULL);
	pthread_join(th, NULL);
	cr_assert_eq(s->stop, 0, "%s", s->err);
	cr_log_info("%u kicks, %u IRQs for %u requests", s->kicks_wanted, s->irqs_wanted,
		    STRESS_N);
	cr_expect_eq(vq_card_space(&s->e->c), STRESS_SLOTS);
	env_free(s->e);
	free(s);
}

Test(vq, stress_two_threads_event_idx_indirect, .timeout = 30)
{
	stress(EVT | IND);
}

Test(vq, stress_two_threads_flags, .timeout = 30)
{
	stress(0);
}

/* ---------------------------------------------------------------------------------------- */
/* A hostile card: the host half must refuse every broken ring with -EBADMSG. */

static void raw_desc(struct env *e, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	e->c.desc[i] = (struct vring_desc){ .addr = addr, .len = len, .flags = flags,
					    .next = next };
}

/* Publish `head` as the next available entry, as a card would. */
static void raw_publish(struct env *e, uint16_t head)
{
	e->c.avail->ring[e->c.avail_idx % e->c.size] = head;
	__atomic_store_n(&e->c.avail->idx, ++e->c.avail_idx, __ATOMIC_RELEASE);
}

static void expect_bad(struct env *e, const char *what)
{
	cr_expect_eq(vq_host_pop(&e->h, &e->r), -EBADMSG, "%s", what);
}

Test(vq_hostile_card, avail_idx_jump, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_desc(e, 0, pool_off(e, 0), 1, 0, 0);
	e->c.avail->idx = 9;
	expect_bad(e, "idx + 9 on a size-8 queue");
	e->c.avail->idx = 0x8000;
	expect_bad(e, "idx far ahead");
	e->c.avail->idx = 8;
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 1, "exactly size is legal");
	env_free(e);
}

Test(vq_hostile_card, head_out_of_range, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_publish(e, 8);
	expect_bad(e, "head == size");
	e->c.avail->ring[0] = 0xffff;
	expect_bad(e, "head 0xffff");
	env_free(e);
}

Test(vq_hostile_card, next_out_of_range, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_desc(e, 0, pool_off(e, 0), 1, VRING_DESC_F_NEXT, 8);
	raw_publish(e, 0);
	expect_bad(e, "next == size");
	env_free(e);
}

Test(vq_hostile_card, descriptor_loop, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	for (unsigned i = 0; i < 8; i++)
		raw_desc(e, i, pool_off(e, 0), 1, VRING_DESC_F_NEXT, (i + 1) % 8);
	raw_publish(e, 3);
	expect_bad(e, "ring-wide loop");
	raw_desc(e, 5, pool_off(e, 0), 1, VRING_DESC_F_NEXT, 5);
	raw_publish(e, 5);
	e->h.last_avail = 1;
	expect_bad(e, "self loop");
	env_free(e);
}

Test(vq_hostile_card, readable_after_writable, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_desc(e, 0, pool_off(e, 0), 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	raw_desc(e, 1, pool_off(e, 4), 4, 0, 0);
	raw_publish(e, 0);
	expect_bad(e, "write then read");
	env_free(e);
}

Test(vq_hostile_card, segment_outside_window, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	uint64_t end = WIN_OFF + e->win_len;

	raw_publish(e, 0);
	raw_desc(e, 0, WIN_OFF - 1, 1, 0, 0);
	expect_bad(e, "below the window");
	raw_desc(e, 0, end - 4, 5, 0, 0);
	expect_bad(e, "crosses the end");
	raw_desc(e, 0, end, 0, VRING_DESC_F_WRITE, 0);
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 1, "empty segment at the very end is inside");
	raw_publish(e, 0);
	raw_desc(e, 0, 0, 0x1000, 0, 0);
	expect_bad(e, "offset 0");
	raw_desc(e, 0, pool_off(e, 0), 0x80000000u, 0, 0);
	expect_bad(e, "2 GiB long");
	env_free(e);
}

Test(vq_hostile_card, addr_plus_len_overflows, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_desc(e, 0, UINT64_MAX - 10, 100, 0, 0);
	raw_publish(e, 0);
	expect_bad(e, "wraps past 2^64");
	raw_desc(e, 0, UINT64_MAX, UINT32_MAX, VRING_DESC_F_WRITE, 0);
	expect_bad(e, "wraps past 2^64, writable");
	env_free(e);
}

Test(vq_hostile_card, indirect_not_negotiated, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);
	struct vring_desc *tbl = env_alloc(e, 32);

	tbl[0] = (struct vring_desc){ pool_off(e, 64), 1, 0, 0 };
	raw_desc(e, 0, vq_card_off(&e->c, tbl), 16, VRING_DESC_F_INDIRECT, 0);
	raw_publish(e, 0);
	expect_bad(e, "indirect without the feature");
	env_free(e);
}

/* An indirect descriptor at slot 0 over a table of n entries built by the caller. */
static struct vring_desc *indirect_env(struct env **ep, unsigned n)
{
	struct env *e = env_new(8, IND, 65536);
	struct vring_desc *tbl = env_alloc(e, 16 * (n + 1));

	for (unsigned i = 0; i < n; i++)
		tbl[i] = (struct vring_desc){ pool_off(e, 60000 + i), 1,
					      i + 1 < n ? VRING_DESC_F_NEXT : 0, i + 1 };
	raw_desc(e, 0, vq_card_off(&e->c, tbl), 16 * n, VRING_DESC_F_INDIRECT, 0);
	raw_publish(e, 0);
	*ep = e;
	return tbl;
}

Test(vq_hostile_card, indirect_good_then_chained_after_direct, .timeout = 30)
{
	struct env *e;
	struct vring_desc *tbl = indirect_env(&e, 4);

	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(e->r.nseg, 4);
	/* virtio lets direct descriptors precede the indirect one. */
	raw_desc(e, 1, pool_off(e, 0), 3, VRING_DESC_F_NEXT, 0);
	tbl[3].flags = VRING_DESC_F_WRITE;
	raw_publish(e, 1);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(e->r.nseg, 5);
	cr_expect_eq(e->r.out_len, 6);
	cr_expect_eq(e->r.in_len, 1);
	env_free(e);
}

Test(vq_hostile_card, indirect_with_next, .timeout = 30)
{
	struct env *e;

	indirect_env(&e, 2);
	e->c.desc[0].flags |= VRING_DESC_F_NEXT;
	e->c.desc[0].next = 1;
	raw_desc(e, 1, pool_off(e, 0), 1, 0, 0);
	expect_bad(e, "INDIRECT | NEXT");
	env_free(e);
}

Test(vq_hostile_card, indirect_bad_lengths, .timeout = 30)
{
	struct env *e;

	indirect_env(&e, 2);
	e->c.desc[0].len = 0;
	expect_bad(e, "len 0");
	e->c.desc[0].len = 24;
	expect_bad(e, "len not a multiple of 16");
	e->c.desc[0].len = (VOS_REQ_SEGS + 1) * 16;
	expect_bad(e, "more than VOS_REQ_SEGS entries");
	e->c.desc[0].len = 0xfffffff0u;
	expect_bad(e, "huge");
	e->c.desc[0].len = 32;
	e->c.desc[0].addr = WIN_OFF + e->win_len - 16;
	expect_bad(e, "table past the window");
	e->c.desc[0].addr = UINT64_MAX - 15;
	expect_bad(e, "table address wraps");
	env_free(e);
}

Test(vq_hostile_card, indirect_nested, .timeout = 30)
{
	struct env *e;
	struct vring_desc *tbl = indirect_env(&e, 3);

	tbl[1].flags |= VRING_DESC_F_INDIRECT;
	tbl[1].len = 16;
	tbl[1].addr = vq_card_off(&e->c, tbl);
	expect_bad(e, "indirect inside indirect");
	env_free(e);
}

Test(vq_hostile_card, indirect_table_next_and_loop, .timeout = 30)
{
	struct env *e;
	struct vring_desc *tbl = indirect_env(&e, 4);

	tbl[2].next = 4;
	expect_bad(e, "next past the table");
	tbl[2].next = 0;
	expect_bad(e, "loop in the table");
	tbl[2].next = 3;
	tbl[3].flags = VRING_DESC_F_WRITE;
	tbl[1].flags |= VRING_DESC_F_WRITE;
	expect_bad(e, "readable after writable in the table");
	tbl[1].flags &= ~VRING_DESC_F_WRITE;
	tbl[1].addr = WIN_OFF - 8;
	expect_bad(e, "table entry outside the window");
	tbl[1].addr = pool_off(e, 0);
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 1);
	env_free(e);
}

Test(vq_hostile_card, indirect_read_failure_is_reported, .timeout = 30)
{
	struct env *e;

	indirect_env(&e, 2);
	e->fail = -ENOTCONN;
	cr_expect_eq(vq_host_pop(&e->h, &e->r), -ENOTCONN);
	env_free(e);
}

Test(vq_hostile_card, chain_longer_than_req_segs, .timeout = 30)
{
	struct env *e = env_new(1024, IND, 65536);
	struct vring_desc *tbl = env_alloc(e, 16 * VOS_REQ_SEGS);

	for (unsigned i = 0; i < VOS_REQ_SEGS; i++)
		raw_desc(e, i, pool_off(e, 60000), 1, VRING_DESC_F_NEXT, i + 1);
	raw_desc(e, VOS_REQ_SEGS, pool_off(e, 60000), 1, 0, 0);
	raw_publish(e, 1);
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 1, "exactly VOS_REQ_SEGS");
	cr_expect_eq(e->r.nseg, VOS_REQ_SEGS);
	raw_publish(e, 0);
	expect_bad(e, "VOS_REQ_SEGS + 1 direct");
	/* A full table is fine alone; behind one direct descriptor it is one too many. */
	for (unsigned i = 0; i < VOS_REQ_SEGS; i++)
		tbl[i] = (struct vring_desc){ pool_off(e, 60000), 1,
					      i + 1 < VOS_REQ_SEGS ? VRING_DESC_F_NEXT : 0, i + 1 };
	raw_desc(e, 600, pool_off(e, 0), 1, VRING_DESC_F_NEXT, 601);
	raw_desc(e, 601, vq_card_off(&e->c, tbl), 16 * VOS_REQ_SEGS, VRING_DESC_F_INDIRECT, 0);
	e->c.avail->ring[1] = 601;
	cr_expect_eq(vq_host_pop(&e->h, &e->r), 1, "a full table alone is fine");
	raw_publish(e, 600);
	expect_bad(e, "1 direct + VOS_REQ_SEGS indirect");
	env_free(e);
}

Test(vq_hostile_card, total_length_overflows_32_bits, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	/* Each segment is inside a huge window; together they pass 4 GiB. */
	e->h.win_len = UINT64_MAX / 2;
	raw_desc(e, 0, WIN_OFF, 0xc0000000u, VRING_DESC_F_NEXT, 1);
	raw_desc(e, 1, WIN_OFF, 0xc0000000u, 0, 0);
	raw_publish(e, 0);
	expect_bad(e, "out_len past 4 GiB");
	env_free(e);
}

Test(vq_hostile_card, push_checks_written, .timeout = 30)
{
	struct env *e = env_new(8, 0, 4096);

	raw_desc(e, 0, pool_off(e, 0), 10, VRING_DESC_F_WRITE, 0);
	raw_publish(e, 0);
	cr_assert_eq(vq_host_pop(&e->h, &e->r), 1);
	cr_expect_eq(vq_host_push(&e->h, &e->r, 11), -EINVAL);
	cr_expect_eq(e->c.used->idx, 0);
	cr_expect_eq(vq_host_push(&e->h, &e->r, 10), 0);
	cr_expect_eq(e->c.used->idx, 1);
	env_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* A hostile host: the card half must refuse bad used elements with -EBADMSG. */

static void raw_used(struct env *e, uint32_t id, uint32_t len)
{
	e->c.used->ring[e->h.used_idx % e->c.size] = (struct vring_used_elem){ id, len };
	e->h.used_idx++;
	__atomic_store_n(&e->c.used->idx, e->h.used_idx, __ATOMIC_RELEASE);
}

static struct env *card_env(void)
{
	struct env *e = env_new(8, IND, 4096);
	uint8_t *b = env_alloc(e, 64);
	struct vos_sg sg[2] = { { b, 16 }, { b + 16, 16 } };

	cr_assert_eq(vq_card_add(&e->c, sg, 0, 1, b), 0);      /* head 0, 16 writable */
	cr_assert_eq(vq_card_add(&e->c, sg, 1, 1, b + 1), 0);  /* head 1, indirect */
	return e;
}

Test(vq_hostile_host, used_id_out_of_range, .timeout = 30)
{
	struct env *e = card_env();
	void *t;
	uint32_t len;

	raw_used(e, 8, 0);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	e->c.used->ring[0].id = 0x10000;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	e->c.used->ring[0].id = UINT32_MAX;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	cr_expect_eq(vq_card_space(&e->c), 6);
	env_free(e);
}

Test(vq_hostile_host, used_id_not_in_flight, .timeout = 30)
{
	struct env *e = card_env();
	void *t;
	uint32_t len;

	raw_used(e, 5, 0);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG, "never posted");
	e->c.used->ring[0].id = 0;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), 1);
	raw_used(e, 0, 0);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG, "returned twice");
	cr_expect_eq(vq_card_space(&e->c), 7);
	env_free(e);
}

Test(vq_hostile_host, used_len_past_buffer, .timeout = 30)
{
	struct env *e = card_env();
	void *t;
	uint32_t len;

	raw_used(e, 1, 17);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG, "17 into 16 (indirect)");
	e->c.used->ring[0].len = UINT32_MAX;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	e->c.used->ring[0].len = 16;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(len, 16);
	env_free(e);
}

Test(vq_hostile_host, used_idx_jump, .timeout = 30)
{
	struct env *e = card_env();
	void *t;
	uint32_t len;

	e->c.used->idx = 9;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	e->c.used->idx = 0xffff;
	cr_expect_eq(vq_card_get(&e->c, &t, &len), -EBADMSG);
	env_free(e);
}

Test(vq_hostile_host, scribbled_descriptor_table_does_not_corrupt_free_list, .timeout = 30)
{
	struct env *e = card_env();
	void *t;
	uint32_t len;

	/* The host can write the mapped table; the card's free list must not care. */
	memset(e->c.desc, 0xff, 16 * 8);
	raw_used(e, 0, 16);
	raw_used(e, 1, 16);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(vq_card_get(&e->c, &t, &len), 1);
	cr_expect_eq(vq_card_space(&e->c), 8);
	for (unsigned i = 0; i < 8; i++)
		cr_expect_eq(vq_card_add(&e->c, &(struct vos_sg){ e->win + e->ring_bytes, 1 }, 1, 0,
					 e), 0);
	cr_expect_eq(vq_card_space(&e->c), 0);
	env_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* Logging. */

static char *capture_stderr(void (*fn)(void))
{
	static char out[4096];
	char path[] = "/tmp/test-vq-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	ssize_t n;

	cr_assert_geq(fd, 0);
	unlink(path);
	dup2(fd, 2);
	fn();
	dup2(saved, 2);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	out[n > 0 ? n : 0] = 0;
	return out;
}

static void log_some(void)
{
	vos_log_open("/usr/sbin/scif-virtiod", false, LOG_NOTICE);
	errno = EPIPE;
	vos_log(LOG_WARNING, "queue %d: %s", 3, "broken");
	cr_expect_eq(errno, EPIPE, "errno kept");
	vos_log(LOG_INFO, "dropped");
	vos_log(LOG_ERR, "%m");
	vos_log(LOG_NOTICE, "n");
}

Test(vq_log, stderr_lines_with_ident_pid_level, .timeout = 30)
{
	char want[256];
	long pid = getpid();

	snprintf(want, sizeof(want),
		 "scif-virtiod[%ld]: warning: queue 3: broken\n"
		 "scif-virtiod[%ld]: err: %s\n"
		 "scif-virtiod[%ld]: notice: n\n", pid, pid, strerror(EPIPE), pid);
	cr_expect_str_eq(capture_stderr(log_some), want);
}

static void log_long(void)
{
	char big[3000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	vos_log_open("t", false, LOG_DEBUG);
	vos_log(LOG_DEBUG, "%s", big);
	vos_log(LOG_DEBUG, "after");
}

Test(vq_log, long_lines_are_cut_not_split, .timeout = 30)
{
	char *out = capture_stderr(log_long), *nl = strchr(out, '\n');

	cr_assert_not_null(nl);
	cr_expect_lt(nl - out, 1024);
	cr_expect_eq(strncmp(out, "t[", 2), 0);
	cr_expect_eq(strstr(nl + 1, ": debug: after\n") != NULL, 1);
}
