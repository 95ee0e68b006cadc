/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stream.h - seeded data streams for the data-integrity tests: each direction of a
 * connection carries bytes that are a pure function of (seed, position), sent and received
 * in random-sized pieces by a sender and a receiver thread, and checked byte for byte plus
 * with a running checksum on both sides.
 */
#ifndef SCIF_TESTS_STREAM_H
#define SCIF_TESTS_STREAM_H

#include <errno.h>
#include <pthread.h>
#include <scif.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static inline uint64_t stream_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t stream_seed(uint64_t seed, uint64_t conn, uint64_t dir)
{
	return stream_mix(seed ^ stream_mix(conn * 2 + dir));
}

/* Bytes [pos, pos+n) of the stream named by seed. */
static inline void stream_fill(uint64_t seed, uint64_t pos, uint8_t *buf, size_t n)
{
	while (n) {
		uint64_t w = stream_mix(seed ^ (pos >> 3));
		unsigned int k = (unsigned int)(pos & 7);

		for (; k < 8 && n; k++, n--, pos++)
			*buf++ = (uint8_t)(w >> (k * 8));
	}
}

/**
 * struct stream_conn - one connection under test.
 * @ep:       the endpoint.
 * @tx_seed, @rx_seed: streams this side sends and expects.
 * @bytes:    bytes per direction (UINT64_MAX: until the connection ends).
 * @sent, @received: progress.
 * @tx_sum, @rx_sum: FNV-1a checksums of what was sent / received.
 * @error:    first failure (0 ok, else a code), @err_errno its errno.
 */
struct stream_conn {
	scif_epd_t ep;
	uint64_t tx_seed, rx_seed, bytes;
	uint64_t sent, received;
	uint64_t tx_sum, rx_sum;
	int error, err_errno;
	pthread_t tx_th, rx_th;
};

static inline uint64_t stream_fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* Largest piece: long enough for single-copy transfers (bulk.c, from 1 MiB). */
#define STREAM_PIECE_MAX (4u << 20)

/*
 * Random piece sizes: mostly small, sometimes up to 256 KiB, now and then up to 4 MiB, so
 * every ring path is used, and offers are taken whole, in pieces and without blocking.
 */
static inline size_t stream_piece(uint64_t *rng, uint64_t left)
{
	uint64_t r = stream_mix((*rng)++);
	size_t n;

	switch (r & 7) {
	case 0:
	case 1:
		n = 1 + (r >> 8) % 64;
		break;
	case 2:
	case 3:
		n = 1 + (r >> 8) % 4096;
		break;
	case 4:
	case 5:
		n = 1 + (r >> 8) % 65536;
		break;
	case 6:
		n = 1 + (r >> 8) % (256 << 10);
		break;
	default:
		n = 1 + (r >> 8) % STREAM_PIECE_MAX;
		break;
	}
	return n < left ? n : (size_t)left;
}

/*
 * @len bytes (rounded up to 2 MiB), 2 MiB-aligned, on transparent huge pages if @thp, and
 * touched, so that no first touch lands inside a copy the library times (bulk.c).
 */
static inline uint8_t *stream_alloc(size_t len, int thp)
{
	size_t huge = 2u << 20, n = (len + huge - 1) & ~(huge - 1);
	uint8_t *p = aligned_alloc(huge, n ? n : huge);

	if (p && thp)
		(void)madvise(p, n, MADV_HUGEPAGE);
	if (p)
		memset(p, 0, n);
	return p;
}

/* Half of the connections keep their buffers on huge pages: direct copies pay off there. */
static inline uint8_t *stream_buf(const struct stream_conn *c)
{
	return stream_alloc(STREAM_PIECE_MAX, (int)(c->tx_seed & 1));
}

/* The first failure of either thread (both may fail at once: atomics, for TSan too). */
static inline void stream_fail(struct stream_conn *c, int code)
{
	int none = 0;

	if (__atomic_compare_exchange_n(&c->error, &none, code, 0, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED))
		__atomic_store_n(&c->err_errno, errno, __ATOMIC_RELAXED);
}

static inline void *stream_tx(void *arg)
{
	struct stream_conn *c = arg;
	uint8_t *buf = stream_buf(c);
	uint64_t rng = c->tx_seed;

	c->tx_sum = 0xcbf29ce484222325ULL;
	while (c->sent < c->bytes) {
		size_t n = stream_piece(&rng, c->bytes - c->sent);
		int flags = (rng & 1) ? SCIF_SEND_BLOCK : 0;
		size_t off = 0;

		stream_fill(c->tx_seed, c->sent, buf, n);
		while (off < n) {
			int r = scif_send(c->ep, buf + off, (int)(n - off), flags);

			if (r < 0) {
				stream_fail(c, 1);
				goto out;
			}
			if (r == 0)
				r = scif_send(c->ep, buf + off, (int)(n - off), SCIF_SEND_BLOCK);
			if (r < 0) {
				stream_fail(c, 1);
				goto out;
			}
			c->tx_sum = stream_fnv(c->tx_sum, buf + off, (size_t)r);
			off += (size_t)r;
			c->sent += (uint64_t)r;
		}
	}
out:
	free(buf);
	return NULL;
}

static inline void *stream_rx(void *arg)
{
	struct stream_conn *c = arg;
	uint8_t *buf = stream_buf(c), *want = malloc(STREAM_PIECE_MAX);
	uint64_t rng = c->rx_seed ^ 0x5555;

	c->rx_sum = 0xcbf29ce484222325ULL;
	while (c->received < c->bytes) {
		size_t n = stream_piece(&rng, c->bytes - c->received);
		int flags = (rng & 2) ? SCIF_RECV_BLOCK : 0;
		int r = scif_recv(c->ep, buf, (int)n, flags);

		if (r == 0)
			r = scif_recv(c->ep, buf, (int)n, SCIF_RECV_BLOCK);
		if (r < 0) {
			stream_fail(c, 2);
			break;
		}
		stream_fill(c->rx_seed, c->received, want, (size_t)r);
		if (memcmp(buf, want, (size_t)r)) {
			__atomic_store_n(&c->error, 3, __ATOMIC_RELAXED); /* corrupted data */
			break;
		}
		c->rx_sum = stream_fnv(c->rx_sum, buf, (size_t)r);
		c->received += (uint64_t)r;
	}
	free(buf);
	free(want);
	return NULL;
}

static inline void stream_start(struct stream_conn *c)
{
	pthread_create(&c->tx_th, NULL, stream_tx, c);
	pthread_create(&c->rx_th, NULL, stream_rx, c);
}

/* Returns the connection's error code (0 = everything sent and received intact). */
static inline int stream_join(struct stream_conn *c)
{
	pthread_join(c->tx_th, NULL);
	pthread_join(c->rx_th, NULL);
	return c->error;
}

#endif /* SCIF_TESTS_STREAM_H */
