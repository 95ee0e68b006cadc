// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-rb.c - the byte ring on its own: capacity, wrap-around, byte order, and rejection of
 * impossible indices published by a corrupt or hostile peer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rb.h"

/* Two views of one ring, as the sender and the receiver see it, over plain memory. */
struct ring_pair {
	uint8_t data[64];
	uint64_t widx, ridx; /* the words each side publishes into the other's memory */
	struct scif_rb tx, rx;
	struct scif_rb_state txs, rxs;
};

static void ring_init(struct ring_pair *p)
{
	memset(p, 0, sizeof(*p));
	p->tx = (struct scif_rb){ .data = p->data, .remote_idx = &p->widx,
				  .local_idx = &p->ridx, .size = 64, .mask = 63 };
	p->rx = (struct scif_rb){ .data = p->data, .remote_idx = &p->ridx,
				  .local_idx = &p->widx, .size = 64, .mask = 63 };
}

Test(rb, holds_exactly_its_size)
{
	struct ring_pair p;
	uint8_t buf[100] = { 0 };

	ring_init(&p);
	cr_expect_eq(scif__rb_write(&p.tx, &p.txs, buf, 100), 64);
	cr_expect_eq(scif__rb_write(&p.tx, &p.txs, buf, 1), 0);
	cr_expect_eq(scif__rb_avail(&p.rx, &p.rxs), 64);
	cr_expect_eq(scif__rb_space(&p.tx, &p.txs), 0);
}

Test(rb, wraps_at_end_keeping_byte_order)
{
	struct ring_pair p;
	uint8_t in[1000], out[1000];
	size_t w = 0, r = 0;
	unsigned int seed = 1;

	ring_init(&p);
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 13 + 7);
	/* Odd-sized writes and reads so every wrap offset is exercised. */
	while (r < sizeof(in)) {
		size_t wn = 1 + rand_r(&seed) % 37, rn = 1 + rand_r(&seed) % 41;

		if (w < sizeof(in)) {
			long n = scif__rb_write(&p.tx, &p.txs, in + w,
						wn < sizeof(in) - w ? wn : sizeof(in) - w);
			cr_assert_geq(n, 0);
			w += (size_t)n;
		}
		long n = scif__rb_read(&p.rx, &p.rxs, out + r, rn < sizeof(out) - r ? rn : sizeof(out) - r);
		cr_assert_geq(n, 0);
		r += (size_t)n;
	}
	cr_expect_arr_eq(in, out, sizeof(in));
}

Test(rb, empty_read_returns_zero)
{
	struct ring_pair p;
	uint8_t b;

	ring_init(&p);
	cr_expect_eq(scif__rb_read(&p.rx, &p.rxs, &b, 1), 0);
}

Test(rb, rejects_write_index_beyond_one_ring)
{
	struct ring_pair p;
	uint8_t b[8];

	ring_init(&p);
	p.widx = 65; /* more unread bytes than the ring holds */
	cr_expect_eq(scif__rb_read(&p.rx, &p.rxs, b, 8), -EPROTO);
	p.widx = UINT64_MAX; /* "negative" distance */
	cr_expect_eq(scif__rb_avail(&p.rx, &p.rxs), -EPROTO);
}

Test(rb, rejects_index_moving_backwards)
{
	struct ring_pair p;
	uint8_t b[8] = { 0 };

	ring_init(&p);
	cr_assert_eq(scif__rb_write(&p.tx, &p.txs, b, 8), 8);
	cr_assert_eq(scif__rb_avail(&p.rx, &p.rxs), 8);
	p.widx = 4; /* producer went back */
	cr_expect_eq(scif__rb_avail(&p.rx, &p.rxs), -EPROTO);
}

Test(rb, rejects_read_index_ahead_of_writer)
{
	struct ring_pair p;
	uint8_t b[8] = { 0 };

	ring_init(&p);
	cr_assert_eq(scif__rb_write(&p.tx, &p.txs, b, 8), 8);
	p.ridx = 9; /* consumer claims bytes never written */
	cr_expect_eq(scif__rb_space(&p.tx, &p.txs), -EPROTO);
}
