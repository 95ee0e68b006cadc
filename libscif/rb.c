// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rb.c - the byte ring. Indices run free (64-bit, never wrap in practice) and are masked on
 * access; the peer's index is validated on every read so a hostile or corrupt peer yields
 * -EPROTO, never an out-of-bounds copy.
 */
#include <errno.h>
#include <string.h>

#include "atomic.h"
#include "rb.h"

/*
 * The other side's index is only trusted if it is consistent with ours: a producer can be at
 * most one ring ahead of the consumer, and neither may move backwards.
 */
static inline int rb_check(uint64_t widx, uint64_t ridx, uint32_t size)
{
	return widx - ridx <= size && (int64_t)(widx - ridx) >= 0;
}

long scif__rb_space(const struct scif_rb *rb, struct scif_rb_state *st)
{
	/* Acquire pairs with the consumer's release of out_ridx in scif__rb_read: its copy-out
	 * of those bytes is complete before we overwrite them. */
	uint64_t ridx = scif__load_acquire(rb->local_idx);

	if (!rb_check(st->idx, ridx, rb->size) || ridx < st->cache)
		return -EPROTO;
	st->cache = ridx;
	return (long)(rb->size - (st->idx - ridx));
}

long scif__rb_avail(const struct scif_rb *rb, struct scif_rb_state *st)
{
	/* Acquire pairs with the producer's release of in_widx in scif__rb_write: the bytes
	 * below widx are visible before we copy them out. */
	uint64_t widx = scif__load_acquire(rb->local_idx);

	if (!rb_check(widx, st->idx, rb->size) || widx < st->cache)
		return -EPROTO;
	st->cache = widx;
	return (long)(widx - st->idx);
}

long scif__rb_write(const struct scif_rb *rb, struct scif_rb_state *st, const void *buf,
		    size_t len)
{
	uint64_t room = rb->size - (st->idx - st->cache);
	uint32_t off, first;
	size_t n;

	if (room < len) {
		long r = scif__rb_space(rb, st);

		if (r < 0)
			return r;
		room = (uint64_t)r;
	}
	n = len < room ? len : (size_t)room;
	/*
	 * Publish every SCIF_RB_CHUNK bytes, so the consumer copies one piece out while we copy
	 * the next one in: the two copies run in parallel on two cores instead of in turn.
	 */
	for (size_t done = 0; done < n;) {
		size_t piece = n - done < SCIF_RB_CHUNK ? n - done : SCIF_RB_CHUNK;

		off = (uint32_t)(st->idx & rb->mask);
		first = rb->size - off;
		if (piece <= first) {
			memcpy(rb->data + off, (const uint8_t *)buf + done, piece);
		} else {
			memcpy(rb->data + off, (const uint8_t *)buf + done, first);
			memcpy(rb->data, (const uint8_t *)buf + done + first, piece - first);
		}
		st->idx += piece;
		done += piece;
		/* Release pairs with the consumer's acquire in scif__rb_avail: bytes first. */
		scif__store_release(rb->remote_idx, st->idx);
	}
	return (long)n;
}

long scif__rb_read(const struct scif_rb *rb, struct scif_rb_state *st, void *buf, size_t len)
{
	uint64_t avail = st->cache - st->idx;
	uint32_t off, first;
	size_t n;

	if (avail < len) {
		long r = scif__rb_avail(rb, st);

		if (r < 0)
			return r;
		avail = (uint64_t)r;
	}
	n = len < avail ? len : (size_t)avail;
	for (size_t done = 0; done < n;) {
		size_t piece = n - done < SCIF_RB_CHUNK ? n - done : SCIF_RB_CHUNK;

		off = (uint32_t)(st->idx & rb->mask);
		first = rb->size - off;
		if (piece <= first) {
			memcpy((uint8_t *)buf + done, rb->data + off, piece);
		} else {
			memcpy((uint8_t *)buf + done, rb->data + off, first);
			memcpy((uint8_t *)buf + done + first, rb->data, piece - first);
		}
		st->idx += piece;
		done += piece;
		/* Release pairs with the producer's acquire in scif__rb_space: our loads of the
		 * bytes are done before the producer may overwrite them. */
		scif__store_release(rb->remote_idx, st->idx);
	}
	return (long)n;
}
