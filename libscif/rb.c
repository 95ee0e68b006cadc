// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rb.c - the byte ring. Indices run free (64-bit, never wrap in practice) and are masked on
 * access; the peer's index is validated on every read so a hostile or corrupt peer yields
 * -EPROTO, never an out-of-bounds copy.
 */
#include <errno.h>
#include <string.h>

#include "atomic.h"
#include "fabric/fabric.h"
#include "rb.h"

void scif__rb_flush(const struct scif_rb *rb, const void *p, size_t len, unsigned int flags)
{
	rb->flush(rb->flush_r, (size_t)((const uint8_t *)p - rb->flush_base), len, flags);
}

void scif__rb_flush_idx(const struct scif_rb *rb, unsigned int flags)
{
	scif__rb_flush(rb, rb->remote_idx, rb->idx_len, flags);
}

/* The bytes just put at @off (wrapping as rb_put does) and then our index, on shadow fabrics:
 * the data lands before the index that covers it (the fabric keeps flushes in order). */
static inline void rb_flush_data(const struct scif_rb *rb, uint32_t off, size_t n)
{
	size_t first = rb->size - off < n ? rb->size - off : n;

	scif__rb_flush(rb, rb->data + off, first, SCIF_FLUSH_MORE);
	if (n > first)
		scif__rb_flush(rb, rb->data, n - first, SCIF_FLUSH_MORE);
}

/*
 * How the consumer's index goes on a shadow fabric: held by the fabric (SCIF_FLUSH_LAZY: it
 * travels with our next message to the producer, or when the producer runs short of room and
 * fences) until a copy's chunk (SCIF_RB_CHUNK), or a quarter of a smaller ring, has been
 * consumed since it last went at once. A ping-pong then carries each index with its answer
 * instead of in a message of its own, and a stream's producer sees room come back as often
 * as before, without asking.
 */
static inline unsigned int rb_ridx_flags(const struct scif_rb *rb, struct scif_rb_state *st)
{
	uint32_t every = rb->size / 4 < SCIF_RB_CHUNK ? rb->size / 4 : SCIF_RB_CHUNK;

	if (st->idx - st->pub < every)
		return SCIF_FLUSH_LAZY;
	st->pub = st->idx;
	return 0;
}

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

/* Copy @n bytes into the ring at offset @off, the part past its end to its start. */
static inline void rb_put(const struct scif_rb *rb, uint32_t off, const void *buf, size_t n)
{
	size_t first = rb->size - off < n ? rb->size - off : n;

	memcpy(rb->data + off, buf, first);
	memcpy(rb->data, (const uint8_t *)buf + first, n - first);
}

/* Copy @n bytes out of the ring from offset @off, wrapping as rb_put does. */
static inline void rb_get(const struct scif_rb *rb, uint32_t off, void *buf, size_t n)
{
	size_t first = rb->size - off < n ? rb->size - off : n;

	memcpy(buf, rb->data + off, first);
	memcpy((uint8_t *)buf + first, rb->data, n - first);
}

/*
 * Copy n bytes between buf and the ring at st->idx, publishing our index every SCIF_RB_CHUNK
 * bytes, so the other side copies one piece while we copy the next: the producer's and the
 * consumer's copies run in parallel on two cores instead of in turn. The release of each
 * index pairs with the other side's acquire (scif__rb_avail for the producer's, scif__rb_space
 * for the consumer's): bytes before the index, or our loads of them before their reuse.
 */
static void rb_copy(const struct scif_rb *rb, struct scif_rb_state *st, uint8_t *buf, size_t n,
		    int to_ring)
{
	/* Long copies in longer pieces: fewer index lines bounce, and each copy runs longer. */
	size_t chunk = n > SCIF_RB_CHUNK_LONG_FROM ? SCIF_RB_CHUNK_LONG : SCIF_RB_CHUNK;

	/*
	 * A producer on a shadow fabric copies in one piece: its consumer sees nothing before
	 * the fabric carries it, and each flush is an operation of the fabric's (an RDMA write
	 * and an index message), which costs more than the copies it would overlap.
	 */
	if (__builtin_expect(rb->flush != NULL, 0) && to_ring)
		chunk = n;

	for (size_t done = 0; done < n;) {
		size_t piece = n - done < chunk ? n - done : chunk;
		uint32_t off = (uint32_t)(st->idx & rb->mask);

		if (to_ring)
			rb_put(rb, off, buf + done, piece);
		else
			rb_get(rb, off, buf + done, piece);
		scif__write_once(&st->idx, st->idx + piece); /* read lock-free (msg.c) */
		done += piece;
		scif__store_release(rb->remote_idx, st->idx);
		if (__builtin_expect(rb->flush != NULL, 0)) {
			/* A producer's index is followed by its doorbell (msg.c tx_notify). */
			if (to_ring)
				rb_flush_data(rb, off, piece);
			scif__rb_flush_idx(rb, to_ring ? SCIF_FLUSH_MORE : rb_ridx_flags(rb, st));
		}
	}
}

/* The producer: remember the stream's last bytes after @n more from @buf. */
static void rb_tail_push(struct scif_rb_state *st, const uint8_t *buf, size_t n)
{
	if (n >= SCIF_RB_SHORT) {
		memcpy(st->tail, buf + n - SCIF_RB_SHORT, SCIF_RB_SHORT);
	} else {
		memmove(st->tail, st->tail + n, SCIF_RB_SHORT - n);
		memcpy(st->tail + SCIF_RB_SHORT - n, buf, n);
	}
}

/* The producer: publish the tail as the bytes up to @end (seqlock in rb.h). */
static void rb_short_publish(struct scif_rb_short *sh, const uint8_t *tail, uint64_t end)
{
	uint64_t w[SCIF_RB_SHORT / 8];

	memcpy(w, tail, sizeof(w));
	scif__write_once(&sh->end, SCIF_RB_SHORT_NONE);
	__atomic_thread_fence(__ATOMIC_RELEASE); /* NONE before the data; pairs with the
						    consumer's acquire fence in rb_short_take */
	for (size_t i = 0; i < SCIF_RB_SHORT / 8; i++)
		scif__write_once(&sh->data[i], w[i]);
	/* Release pairs with the consumer's acquire of end: the data before the index. */
	scif__store_release(&sh->end, end);
}

/*
 * The consumer: copy @n of the @avail bytes at st->idx from the short copy, if it holds
 * them and was not being rewritten. Returns 1 if it did.
 */
static int rb_short_take(const struct scif_rb *rb, struct scif_rb_state *st, uint8_t *buf,
			 size_t n, uint64_t avail)
{
	struct scif_rb_short *sh = rb->shrt;
	uint64_t w[SCIF_RB_SHORT / 8], end;

	if (!sh || avail > SCIF_RB_SHORT)
		return 0;
	end = scif__load_acquire(&sh->end); /* pairs with the release in rb_short_publish */
	if (end != st->cache)
		return 0;
	for (size_t i = 0; i < SCIF_RB_SHORT / 8; i++)
		w[i] = scif__read_once(&sh->data[i]);
	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* data before the second look at end */
	if (scif__read_once(&sh->end) != end)
		return 0;
	memcpy(buf, (uint8_t *)w + SCIF_RB_SHORT - avail, n);
	return 1;
}

long scif__rb_write(const struct scif_rb *rb, struct scif_rb_state *st, const void *buf,
		    size_t len)
{
	uint64_t room = rb->size - (st->idx - st->cache);
	size_t n;

	if (room < len) {
		long r = scif__rb_space(rb, st);

		if (r < 0)
			return r;
		room = (uint64_t)r;
	}
	n = len < room ? len : (size_t)room;
	if (!rb->shrt) {
		rb_copy(rb, st, (uint8_t *)buf, n, 1);
	} else if (n && n <= SCIF_RB_SHORT) {
		/* A short message: the ring, then its copy beside the index, then the index. */
		uint32_t off = (uint32_t)(st->idx & rb->mask);

		rb_put(rb, off, buf, n);
		rb_tail_push(st, buf, n);
		scif__write_once(&st->idx, st->idx + n);
		rb_short_publish(rb->shrt, st->tail, st->idx);
		/* Pairs with scif__rb_avail. No flush: a shadow fabric has no short copy. */
		scif__store_release(rb->remote_idx, st->idx);
	} else {
		rb_copy(rb, st, (uint8_t *)buf, n, 1);
		rb_tail_push(st, buf, n);
	}
	return (long)n;
}

long scif__rb_read(const struct scif_rb *rb, struct scif_rb_state *st, void *buf, size_t len)
{
	uint64_t avail = st->cache - st->idx;
	size_t n;

	if (avail < len) {
		long r = scif__rb_avail(rb, st);

		if (r < 0)
			return r;
		avail = (uint64_t)r;
	}
	n = len < avail ? len : (size_t)avail;
	if (n && rb_short_take(rb, st, buf, n, avail)) {
		scif__write_once(&st->idx, st->idx + n);
		/* Release pairs with scif__rb_space: we are done with those bytes. (No flush:
		 * a shadow fabric has no short copy, so rb_copy below carries its index.) */
		scif__store_release(rb->remote_idx, st->idx);
		return (long)n;
	}
	rb_copy(rb, st, buf, n, 0);
	return (long)n;
}
