// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * peer-compat.c - card-side roles of the regression tests in test-regress.c: the shapes in
 * which programs written for Intel's libscif found our differences.
 *
 *   connect-register <node> <port> <count>  connect and register a window at once, count
 *                    times; each round: register, send 'r', wait for the test's ack, close
 *   connect-close <node> <port> <count>     connect and close at once, count times
 *   mmap-hold <node> <port>                 map the test's window (offset and length sent to
 *                    us), say 'm'; on 'u' unmap and say 'x'; then wait for the hang-up
 *   low-fd-hold <node> <port> <limit>       with RLIMIT_NOFILE at <limit>, connect and stay
 *                    until the test hangs up (its windows must not need our descriptors)
 *   rma-async-sync <node> <port> <rounds>   each round: asynchronous writeto of 1 MiB, a
 *                    fence signal, then a synchronous vwriteto of 64 KiB over the start of
 *                    the same remote range; say 'd' and wait for the test's check
 */
#include <errno.h>
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mp/peer.h"

int peer_connect_register(uint16_t node, uint16_t port, int count)
{
	void *buf;

	if (posix_memalign(&buf, 4096, 4096))
		return 2;
	for (int i = 0; i < count; i++) {
		scif_epd_t ep = peer_connect(node, port);
		char c = 'r';

		if (ep < 0) {
			fprintf(stderr, "round %d: connect: %s\n", i, strerror(errno));
			return 3;
		}
		if (scif_register(ep, buf, 4096, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0) < 0) {
			fprintf(stderr, "round %d: register: %s\n", i, strerror(errno));
			return 4;
		}
		if (scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1 ||
		    scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1 || c != 'a') {
			fprintf(stderr, "round %d: ack: %s\n", i, strerror(errno));
			return 5;
		}
		scif_close(ep);
	}
	free(buf);
	return 0;
}

int peer_connect_close(uint16_t node, uint16_t port, int count)
{
	for (int i = 0; i < count; i++) {
		scif_epd_t ep = peer_connect(node, port);

		if (ep < 0) {
			fprintf(stderr, "round %d: connect: %s\n", i, strerror(errno));
			return 3;
		}
		scif_close(ep);
	}
	return 0;
}

int peer_mmap_hold(uint16_t node, uint16_t port)
{
	scif_epd_t ep = peer_connect(node, port);
	uint64_t w[2];
	void *p;
	char c;

	if (ep < 0 || scif_recv(ep, w, sizeof(w), SCIF_RECV_BLOCK) != sizeof(w))
		return 2;
	p = scif_mmap(NULL, w[1], SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ep, (off_t)w[0]);
	if (p == SCIF_MMAP_FAILED) {
		fprintf(stderr, "mmap: %s\n", strerror(errno));
		return 3;
	}
	c = 'm';
	if (scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1 ||
	    scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1 || c != 'u')
		return 4;
	if (scif_munmap(p, w[1]))
		return 5;
	c = 'x';
	if (scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1)
		return 6;
	scif_recv(ep, &c, 1, SCIF_RECV_BLOCK); /* until the test hangs up */
	return 0;
}

int peer_low_fd_hold(uint16_t node, uint16_t port, int limit)
{
	struct rlimit rl = { .rlim_cur = (rlim_t)limit, .rlim_max = (rlim_t)limit };
	scif_epd_t ep;
	char c;

	if (setrlimit(RLIMIT_NOFILE, &rl))
		return 2;
	ep = peer_connect(node, port);
	if (ep < 0)
		return 3;
	while (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) == 1)
		if (scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1) /* echo: "still connected?" */
			return 4;
	scif_close(ep);
	return errno == ECONNRESET ? 0 : 5;
}

#define AS_BIG (1u << 20)
#define AS_SMALL (64u << 10)

int peer_rma_async_sync(uint16_t node, uint16_t port, int rounds)
{
	scif_epd_t ep = peer_connect(node, port);
	uint8_t *big, *small;
	uint64_t roff;
	off_t loff;

	if (ep < 0 || posix_memalign((void **)&big, 4096, AS_BIG + 4096) ||
	    posix_memalign((void **)&small, 4096, AS_SMALL))
		return 2;
	loff = scif_register(ep, big, AS_BIG + 4096, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (loff < 0 || scif_recv(ep, &roff, sizeof(roff), SCIF_RECV_BLOCK) != sizeof(roff))
		return 3;
	for (int r = 0; r < rounds; r++) {
		char c = 'd';

		/* Older data everywhere, then newer data over the start, synchronously. */
		memset(big, 'A' + r % 26, AS_BIG);
		memset(small, 'a' + r % 26, AS_SMALL);
		if (scif_writeto(ep, loff, AS_BIG, (off_t)roff, 0))
			return 4;
		if (scif_fence_signal(ep, loff + AS_BIG, (uint64_t)r + 1, 0, 0,
				      SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL))
			return 5;
		if (scif_vwriteto(ep, small, AS_SMALL, (off_t)roff, SCIF_RMA_SYNC))
			return 6;
		if (scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1 ||
		    scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1 || c != 'k')
			return 7;
	}
	scif_close(ep);
	free(big);
	free(small);
	return 0;
}
