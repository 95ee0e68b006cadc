// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-multi.h - the compat pair "multi": four connections between the same two processes,
 * driven by one thread with scif_poll, interleaved full-duplex streams with checksums, then
 * one window per endpoint at the same fixed offset (each endpoint has its own registered
 * address space). The event loop is shared by both sides.
 */
#ifndef C_MULTI_H
#define C_MULTI_H

#include "compat.h"

#define NCONN 4
#define CHUNK_MAX 65536
#define WIN_LEN (64 << 10)
#define WIN_OFF ((off_t)0x10000) /* the same SCIF_MAP_FIXED offset on every endpoint */

/* Side 0 is the host, 1 the card; what side s sends on connection i. */
#define STREAM_LEN(s, i) ((uint64_t)(2 << 20) + 4093u * (i) + 1000u * (s))
#define STREAM_SEED(s, i) (0xc000ULL + 0x100 * (s) + (i))
#define WIN_SEED(s, i) (0xe000ULL + 0x100 * (s) + (i))

struct conn {
	scif_epd_t ep;
	uint64_t sent, rcvd, tx_len, rx_len, tx_seed, rx_seed, tx_sum, rx_sum, rng;
};

/* Run every stream of both directions to the end, one poll loop for all endpoints. */
static inline void multi_pump(struct conn *c, int side)
{
	static uint8_t buf[CHUNK_MAX];
	struct scif_pollepd p[NCONN];
	int busy = NCONN, r;

	for (int i = 0; i < NCONN; i++) {
		c[i].tx_len = STREAM_LEN(side, i);
		c[i].rx_len = STREAM_LEN(!side, i);
		c[i].tx_seed = STREAM_SEED(side, i);
		c[i].rx_seed = STREAM_SEED(!side, i);
		c[i].tx_sum = c[i].rx_sum = COMPAT_FNV_INIT;
		c[i].rng = (uint64_t)side << 32 | (uint64_t)i;
	}
	while (busy) {
		busy = 0;
		for (int i = 0; i < NCONN; i++) {
			p[i].epd = c[i].ep;
			p[i].events = (short)((c[i].rcvd < c[i].rx_len ? SCIF_POLLIN : 0) |
					      (c[i].sent < c[i].tx_len ? SCIF_POLLOUT : 0));
			p[i].revents = 0;
			if (!p[i].events)
				p[i].epd = -1; /* finished both ways: scif_poll ignores it */
			else
				busy++;
		}
		if (!busy)
			break;
		SCIF_CHECK(60, r, scif_poll(p, NCONN, COMPAT_WAIT_MS));
		if (r == 0)
			fail(61, "scif_poll: no endpoint ready for %d s", COMPAT_WAIT_MS / 1000);
		for (int i = 0; i < NCONN; i++) {
			struct conn *k = &c[i];

			if (p[i].revents & (SCIF_POLLERR | SCIF_POLLHUP | SCIF_POLLNVAL))
				fail(62, "connection %d: revents %#x", i, p[i].revents);
			if (p[i].revents & SCIF_POLLOUT) {
				uint64_t n = 1 + compat_mix(k->rng++) % CHUNK_MAX;

				if (n > k->tx_len - k->sent)
					n = k->tx_len - k->sent;
				compat_fill(buf, n, k->tx_seed, k->sent);
				SCIF_CHECK(63, r, scif_send(k->ep, buf, (int)n, 0));
				k->tx_sum = compat_fnv(k->tx_sum, buf, (size_t)r);
				k->sent += (uint64_t)r;
			}
			if (p[i].revents & SCIF_POLLIN) {
				uint64_t n = k->rx_len - k->rcvd;
				long long bad;

				if (n > CHUNK_MAX)
					n = CHUNK_MAX;
				SCIF_CHECK(64, r, scif_recv(k->ep, buf, (int)n, 0));
				bad = compat_verify(buf, (size_t)r, k->rx_seed, k->rcvd);
				if (bad >= 0)
					fail(65, "connection %d: stream byte %llu is wrong", i,
					     (unsigned long long)(k->rcvd + (uint64_t)bad));
				k->rx_sum = compat_fnv(k->rx_sum, buf, (size_t)r);
				k->rcvd += (uint64_t)r;
			}
		}
	}
}

/* Compare checksums, then one window per endpoint at WIN_OFF, read by the peer. */
static inline void multi_finish(struct conn *c, int side)
{
	uint8_t *win[NCONN], *buf = compat_alloc(70, WIN_LEN);
	uint64_t mine[2], theirs[2];
	off_t off;
	int r;

	for (int i = 0; i < NCONN; i++) {
		mine[0] = c[i].tx_sum;
		mine[1] = c[i].sent;
		compat_send(71, c[i].ep, mine, sizeof(mine));
	}
	for (int i = 0; i < NCONN; i++) {
		compat_recv(72, c[i].ep, theirs, sizeof(theirs));
		if (theirs[0] != c[i].rx_sum || theirs[1] != c[i].rcvd)
			fail(73, "connection %d: peer sent %llu bytes (sum %#llx), "
				 "we got %llu (sum %#llx)",
			     i, (unsigned long long)theirs[1], (unsigned long long)theirs[0],
			     (unsigned long long)c[i].rcvd, (unsigned long long)c[i].rx_sum);
	}
	for (int i = 0; i < NCONN; i++) {
		win[i] = compat_alloc(74, WIN_LEN);
		compat_fill(win[i], WIN_LEN, WIN_SEED(side, i), 0);
		SCIF_CHECK(75, off, scif_register(c[i].ep, win[i], WIN_LEN, WIN_OFF, SCIF_PROT_READ,
						  SCIF_MAP_FIXED));
		compat_send(76, c[i].ep, "r", 1);
	}
	for (int i = 0; i < NCONN; i++) {
		compat_expect(77, c[i].ep, 'r');
		SCIF_CHECK(78, r, scif_vreadfrom(c[i].ep, buf, WIN_LEN, WIN_OFF, SCIF_RMA_SYNC));
		compat_check(79, buf, WIN_LEN, WIN_SEED(!side, i),
			     "peer's window at the shared offset");
		compat_send(80, c[i].ep, "x", 1);
	}
	/* Both sides unregister while every connection is still up, then close. */
	for (int i = 0; i < NCONN; i++) {
		compat_expect(81, c[i].ep, 'x');
		SCIF_CHECK(82, r, scif_unregister(c[i].ep, WIN_OFF, WIN_LEN));
		compat_send(83, c[i].ep, "y", 1);
	}
	for (int i = 0; i < NCONN; i++) {
		compat_expect(84, c[i].ep, 'y');
		SCIF_CHECK(85, r, scif_close(c[i].ep));
		free(win[i]);
	}
	free(buf);
}

#endif /* C_MULTI_H */
