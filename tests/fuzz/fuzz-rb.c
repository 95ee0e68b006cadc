// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-rb.c - libFuzzer target: the byte ring (libscif/rb.c) as a pure function, fast.
 *
 * A ring of 4..32 KiB in a buffer of exactly that size (ASan sees any copy beyond it), its
 * producer and consumer views over two index words, and a sequence of writes, reads, room and
 * fill queries and index words overwritten as a hostile peer would. While nobody lied, a FIFO
 * model must match byte for byte and no call may report -EPROTO; after a lie every call must
 * return -EPROTO or a count within its bounds, and never copy outside the ring.
 *
 * Both views share a short copy (struct scif_rb_short), which a lying producer may also
 * overwrite.
 *
 * Input: byte 0 ring size, 8 bytes starting index, then ops of one byte each (op % 7) with
 * their operands.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rb.h"

#define RB_MAX (32u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t model[RB_MAX], src[2 * RB_MAX], dst[2 * RB_MAX];
	struct fz in = { data, size }, *f = &in;
	uint32_t rsize = 4096u << (fz_u8(f) % 4);
	/* Indices run free but never wrap in practice (rb.h): start anywhere below 2^62. */
	uint64_t base = fz_u64(f) & ((1ull << 62) - 1), widx = base, ridx = base;
	uint8_t *ring = malloc(rsize);
	struct scif_rb_short blk = { .end = SCIF_RB_SHORT_NONE };
	struct scif_rb prod = { .data = ring, .remote_idx = &widx, .local_idx = &ridx,
				.shrt = &blk, .size = rsize, .mask = rsize - 1 };
	struct scif_rb cons = { .data = ring, .remote_idx = &ridx, .local_idx = &widx,
				.shrt = &blk, .size = rsize, .mask = rsize - 1 };
	struct scif_rb_state ps = { .idx = base, .cache = base }, cs = { .idx = base, .cache = base };
	size_t qhead = 0, qlen = 0; /* the model: bytes written and not yet read */
	int lied = 0;

	if (!ring)
		return 0;
	memset(ring, 0xa5, rsize);
	for (int ops = 0; f->n && ops < 4096; ops++) {
		uint8_t op = fz_u8(f);
		size_t n = fz_u16(f) % (2 * rsize + 1);
		long r;

		switch (op % 7) {
		case 0: /* write n bytes */
			for (size_t i = 0; i < n; i++)
				src[i] = (uint8_t)(ops * 31 + i);
			r = scif__rb_write(&prod, &ps, src, n);
			if (r != -EPROTO && (r < 0 || (size_t)r > n))
				fz_fail("rb_write(%zu) returned %ld", n, r);
			if (lied)
				break;
			if (r != (long)(n < rsize - qlen ? n : rsize - qlen))
				fz_fail("rb_write(%zu) returned %ld with %zu of %u in the ring", n, r,
					qlen, rsize);
			for (long i = 0; i < r; i++)
				model[(qhead + qlen + (size_t)i) % rsize] = src[i];
			qlen += (size_t)r;
			break;
		case 1: /* read n bytes */
			r = scif__rb_read(&cons, &cs, dst, n);
			if (r != -EPROTO && (r < 0 || (size_t)r > n))
				fz_fail("rb_read(%zu) returned %ld", n, r);
			if (lied)
				break;
			if (r != (long)(n < qlen ? n : qlen))
				fz_fail("rb_read(%zu) returned %ld with %zu in the ring", n, r, qlen);
			for (long i = 0; i < r; i++)
				if (dst[i] != model[(qhead + (size_t)i) % rsize])
					fz_fail("rb_read: byte %ld differs", i);
			qhead = (qhead + (size_t)r) % rsize;
			qlen -= (size_t)r;
			break;
		case 2:
			r = scif__rb_avail(&cons, &cs);
			if (r != -EPROTO && (r < 0 || r > (long)rsize))
				fz_fail("rb_avail returned %ld", r);
			if (!lied && r != (long)qlen)
				fz_fail("rb_avail returned %ld, %zu in the ring", r, qlen);
			break;
		case 3:
			r = scif__rb_space(&prod, &ps);
			if (r != -EPROTO && (r < 0 || r > (long)rsize))
				fz_fail("rb_space returned %ld", r);
			if (!lied && r != (long)(rsize - qlen))
				fz_fail("rb_space returned %ld, %zu in the ring", r, qlen);
			break;
		case 4: /* the producer's word, as a lying producer publishes it */
		case 5: { /* the consumer's word */
			uint64_t *w = op % 7 == 4 ? &widx : &ridx;
			uint64_t v = fz_u8(f) & 1 ? fz_u64(f) : *w + (uint64_t)(int64_t)(int16_t)n;

			if (v != *w)
				lied = 1;
			*w = v;
			break;
		}
		case 6: /* the short copy, rewritten by a lying producer: at the index or anywhere */
			blk.end = fz_u8(f) & 1 ? widx : fz_u64(f);
			for (size_t i = 0; i < SCIF_RB_SHORT / 8; i++)
				blk.data[i] = fz_u64(f);
			lied = 1;
			break;
		}
		if (!lied && (op & 0x80) && (r = scif__rb_avail(&cons, &cs)) != (long)qlen)
			fz_fail("honest ring: %ld readable, the model has %zu", r, qlen);
	}
	free(ring);
	return 0;
}
