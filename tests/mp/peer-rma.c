// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * peer-rma.c - the card-side roles of the multi-process RMA tests (see test-rma-mp.c). Each
 * connects to node:port, registers a window and talks to the test over scif_send/recv.
 *
 *   rma-serve  <node> <port> <size> <seed>  fill a window with seeded bytes, send its offset,
 *              wait for "done", reply with the checksum of the whole window
 *   rma-signal <node> <port> <size> <rounds> writes rounds of data into the test's window
 *              asynchronously, each followed by fence_signal(SELF|REMOTE) of a flag
 *   mmap-pong  <node> <port> <rounds>        ping-pong through a scif_mmap of the test's window
 *   rma-flood  <node> <port>                 async writeto into the test's window until killed
 */
#include <errno.h>
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp/peer.h"
#include "mp/stream.h"

struct hello {
	uint64_t offset, size;
};

static uint8_t *window(scif_epd_t ep, size_t size, off_t *off)
{
	uint8_t *buf;

	if (posix_memalign((void **)&buf, 4096, size))
		return NULL;
	memset(buf, 0, size);
	*off = scif_register(ep, buf, size, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	return *off < 0 ? NULL : buf;
}

int peer_rma_serve(uint16_t node, uint16_t port, size_t size, uint64_t seed)
{
	scif_epd_t ep = peer_connect(node, port);
	struct hello h;
	uint8_t *buf;
	off_t off;
	uint64_t sum;
	char done;

	if (ep < 0)
		return 2;
	if (posix_memalign((void **)&buf, 4096, size))
		return 3;
	stream_fill(seed, 0, buf, size); /* the contents before registration must survive it */
	off = scif_register(ep, buf, size, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (off < 0)
		return 4;
	h.offset = (uint64_t)off;
	h.size = size;
	if (scif_send(ep, &h, sizeof(h), SCIF_SEND_BLOCK) != sizeof(h) ||
	    scif_recv(ep, &done, 1, SCIF_RECV_BLOCK) != 1)
		return 5;
	/* What this side's own loads see, after all of the test's RMAs. */
	sum = stream_fnv(0xcbf29ce484222325ULL, buf, size);
	if (scif_send(ep, &sum, sizeof(sum), SCIF_SEND_BLOCK) != sizeof(sum))
		return 6;
	scif_recv(ep, &done, 1, SCIF_RECV_BLOCK); /* until the test hangs up */
	scif_close(ep);
	free(buf);
	return 0;
}

int peer_rma_signal(uint16_t node, uint16_t port, size_t size, int rounds)
{
	scif_epd_t ep = peer_connect(node, port);
	struct hello h;
	uint8_t *buf;
	off_t off;
	char c;

	if (ep < 0 || !(buf = window(ep, size, &off)))
		return 2;
	if (scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK) != sizeof(h))
		return 3;
	/* The test's window: [flag line][data...]. */
	for (int r = 1; r <= rounds; r++) {
		memset(buf, r, size);
		for (size_t pos = 64; pos < size; pos += 1 << 20) {
			size_t n = size - pos < (1 << 20) ? size - pos : (1 << 20);

			if (scif_writeto(ep, off + (off_t)pos, n, (off_t)h.offset + (off_t)pos, 0))
				return 4;
		}
		if (scif_fence_signal(ep, 0, 0, (off_t)h.offset, (uint64_t)r,
				      SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE))
			return 5;
		/* Wait for the test to check this round before reusing the buffer. */
		if (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1)
			return 6;
	}
	scif_close(ep);
	free(buf);
	return 0;
}

int peer_mmap_pong(uint16_t node, uint16_t port, int rounds)
{
	scif_epd_t ep = peer_connect(node, port);
	volatile uint64_t *m;
	struct hello h;

	if (ep < 0 || scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK) != sizeof(h))
		return 2;
	m = scif_mmap(NULL, 4096, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ep, (off_t)h.offset);
	if (m == SCIF_MMAP_FAILED)
		return 3;
	/* The test stores ping at word 0 of its own memory; we answer at word 8 (another line). */
	for (uint64_t i = 1; i <= (uint64_t)rounds; i++) {
		while (__atomic_load_n(&m[0], __ATOMIC_ACQUIRE) != i)
			;
		__atomic_store_n(&m[8], i, __ATOMIC_RELEASE);
	}
	scif_munmap((void *)m, 4096);
	return 0;
}

int peer_rma_flood(uint16_t node, uint16_t port)
{
	scif_epd_t ep = peer_connect(node, port);
	struct hello h;
	uint8_t *buf;
	off_t off;

	if (ep < 0 || !(buf = window(ep, 4 << 20, &off)))
		return 2;
	if (scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK) != sizeof(h))
		return 3;
	for (;;)
		if (scif_writeto(ep, off, 4 << 20, (off_t)h.offset, 0))
			return 0;
}
