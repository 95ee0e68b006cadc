// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-ring.h - the compat pair "ring": two single-producer/single-consumer byte rings laid over
 * one window of the card's memory. The card uses its own (registered) memory, the host sees
 * the same pages through scif_mmap; head and tail words live in the shared page.
 */
#ifndef C_RING_H
#define C_RING_H

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>

#include "compat.h"

#define RING_MAGIC 0x53434946524e4731ULL /* "SCIFRNG1" */
#define RING_SIZE (128 << 10)              /* bytes of data per ring (power of two) */
#define RING_TOTAL (8ULL << 20)            /* bytes moved through each ring */
#define RING_WIN_LEN (COMPAT_PAGE + 2 * RING_SIZE)
#define SEED_A 0xa11a                      /* ring A: host produces, card consumes */
#define SEED_B 0xb22b                      /* ring B: card produces, host consumes */

/*
 * The control page at offset 0 of the window. The card writes magic and size before it
 * registers the window and never changes them. Indices are free-running byte counts (masked
 * on access); each is written by one side only, on its own cache line:
 * a_tail by the host, a_head by the card, b_tail by the card, b_head by the host.
 */
struct ring_ctl {
	uint64_t magic;
	uint64_t size;
	alignas(64) _Atomic uint64_t a_tail;
	alignas(64) _Atomic uint64_t a_head;
	alignas(64) _Atomic uint64_t b_tail;
	alignas(64) _Atomic uint64_t b_head;
};
static_assert(sizeof(struct ring_ctl) == 320, "ring_ctl layout");
static_assert(offsetof(struct ring_ctl, b_head) == 256, "ring_ctl layout");

/* Ring A's data follows the control page, ring B's follows ring A's. */
#define RING_A_DATA COMPAT_PAGE
#define RING_B_DATA (COMPAT_PAGE + RING_SIZE)

/* One end of one ring, as a process sees it. */
struct ring_end {
	_Atomic uint64_t *tail, *head;
	uint8_t *data;
	uint64_t seed;  /* the pattern the stream carries */
	uint64_t moved; /* bytes produced or consumed so far */
	uint64_t rng;   /* picks the producer's chunk sizes */
	uint64_t sum;   /* FNV of every byte moved */
	const char *name;
};

/* Produce the next chunk if there is room; returns the bytes produced. */
static inline uint64_t ring_produce(struct ring_end *r)
{
	/* Acquire: pairs with the consumer's release of head, so it has finished reading. */
	uint64_t head = atomic_load_explicit(r->head, memory_order_acquire);
	uint64_t tail = r->moved;
	uint64_t room = RING_SIZE - (tail - head);
	uint64_t n = 1 + compat_mix(r->rng++) % 16384, done = 0;

	if (n > room)
		n = room;
	if (n > RING_TOTAL - tail)
		n = RING_TOTAL - tail;
	while (done < n) {
		uint64_t at = (tail + done) & (RING_SIZE - 1);
		uint64_t piece = n - done < RING_SIZE - at ? n - done : RING_SIZE - at;

		compat_fill(r->data + at, piece, r->seed, tail + done);
		r->sum = compat_fnv(r->sum, r->data + at, piece);
		done += piece;
	}
	r->moved += n;
	/* Release: the bytes above are visible before the new tail (consumer's acquire). */
	if (n)
		atomic_store_explicit(r->tail, r->moved, memory_order_release);
	return n;
}

/* Consume and check whatever is there; returns the bytes consumed. */
static inline uint64_t ring_consume(struct ring_end *r, int code)
{
	/* Acquire: pairs with the producer's release of tail; the data is in place. */
	uint64_t tail = atomic_load_explicit(r->tail, memory_order_acquire);
	uint64_t head = r->moved, n = tail - head, done = 0;

	if (tail < head || n > RING_SIZE)
		fail(code, "%s: impossible tail %llu (head %llu)", r->name,
		     (unsigned long long)tail, (unsigned long long)head);
	while (done < n) {
		uint64_t at = (head + done) & (RING_SIZE - 1);
		uint64_t piece = n - done < RING_SIZE - at ? n - done : RING_SIZE - at;
		long long bad = compat_verify(r->data + at, piece, r->seed, head + done);

		if (bad >= 0)
			fail(code, "%s: stream byte %llu is wrong (0x%02x)", r->name,
			     (unsigned long long)(head + done + (uint64_t)bad), r->data[at + bad]);
		r->sum = compat_fnv(r->sum, r->data + at, piece);
		done += piece;
	}
	r->moved += n;
	/* Release: our reads are done before the producer may overwrite (its acquire). */
	if (n)
		atomic_store_explicit(r->head, r->moved, memory_order_release);
	return n;
}

/* Run the producer of one ring and the consumer of the other until both moved everything. */
static inline void ring_run(struct ring_end *prod, struct ring_end *cons, int code)
{
	long long idle_since = compat_ms();
	unsigned spins = 0;

	while (prod->moved < RING_TOTAL || cons->moved < RING_TOTAL) {
		if (ring_produce(prod) + ring_consume(cons, code)) {
			spins = 0;
			idle_since = compat_ms();
			continue;
		}
		if ((spins & 255) == 255 && compat_ms() - idle_since > COMPAT_WAIT_MS)
			fail(code + 1, "no progress for %d s: %s at %llu, %s at %llu of %llu",
			     COMPAT_WAIT_MS / 1000, prod->name, (unsigned long long)prod->moved,
			     cons->name, (unsigned long long)cons->moved,
			     (unsigned long long)RING_TOTAL);
		compat_relax(&spins);
	}
}

#endif /* C_RING_H */
