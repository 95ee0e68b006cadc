// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-errno-card.c - compat pair "errno", card side (node 1): connects twice to the host's
 * PORT (once blocking, retrying ECONNREFUSED; once with O_NONBLOCK and poll), then runs the
 * card half of the protocol in c-errno.h. Every call is checked Intel-style (errno cleared
 * before, still clear after a success) and the program ends with exit(errno).
 * Peer: c-errno-host. Usage: SCIF_NODE=1 c-errno-card PORT
 */
#include <fcntl.h>
#include <sys/mman.h>

#include "c-errno.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1), nodes[16], self = 0xffff;
	struct scif_portID host = { .node = 0, .port = port };
	struct scif_pollepd pl;
	scif_epd_t ep, ep2;
	uint8_t hello[HELLO_LEN], *stream, *win, *vbuf, *vbuf2, *map;
	off_t coff, hoff;
	uint64_t sum;
	int r, mark;

	compat_strict = 1;
	stream = malloc(STREAM_LEN);
	vbuf = malloc(REG_LEN);
	vbuf2 = malloc(REG_LEN);
	win = mmap(NULL, WIN_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!stream || !vbuf || !vbuf2 || win == MAP_FAILED)
		fail(1, "out of memory");

	SCIF_TRY(2, r, scif_get_nodeIDs(nodes, 16, &self));
	if (r < 2 || self != 1 || nodes[0] != 0)
		fail(3, "scif_get_nodeIDs: %d nodes, first %u, self %u; want >= 2, 0, 1", r,
		     nodes[0], self);

	/* First endpoint: a blocking connect, retried while the host is not listening yet. */
	SCIF_TRY(4, ep, scif_open());
	SCIF_TRY(5, r, scif_get_fd(ep));
	if (r != ep)
		fail(5, "scif_get_fd(%d) returned %d", ep, r);
	r = compat_connect(6, ep, 0, port);

	/* Second endpoint: the non-blocking connect of the MPSS documentation. */
	SCIF_TRY(7, ep2, scif_open());
	if (fcntl(scif_get_fd(ep2), F_SETFL, O_NONBLOCK))
		fail(7, "fcntl(O_NONBLOCK): %s", strerror(errno));
	errno = 0;
	r = scif_connect(ep2, &host);
	if (r < 0 && errno == EINPROGRESS) {
		pl = (struct scif_pollepd){ .epd = ep2, .events = SCIF_POLLOUT };
		SCIF_TRY(8, r, scif_poll(&pl, 1, COMPAT_WAIT_MS));
		if (r != 1 || !(pl.revents & SCIF_POLLOUT))
			fail(8, "scif_poll for the connect returned %d, revents %#x", r,
			     pl.revents);
		SCIF_TRY(9, r, scif_connect(ep2, &host));
	} else if (r < 0 || errno) {
		compat_call_failed(10, "non-blocking scif_connect", r, errno);
	}
	if (r <= 0)
		fail(9, "scif_connect returned port %d", r);

	/* Nothing has been sent on ep2 yet: a zero-timeout poll and a non-blocking recv find 0. */
	pl = (struct scif_pollepd){ .epd = ep2, .events = SCIF_POLLIN };
	SCIF_TRY(11, r, scif_poll(&pl, 1, 0));
	if (r != 0)
		fail(11, "scif_poll(timeout 0) on an idle endpoint returned %d", r);
	SCIF_TRY(12, r, scif_recv(ep2, hello, 16, 0));
	if (r != 0)
		fail(12, "non-blocking scif_recv on an idle endpoint returned %d", r);

	/* Blocking hello on ep, the echo back; then the stream on ep2 and its checksum. */
	compat_fill(hello, HELLO_LEN, SEED_HELLO, 0);
	SCIF_TRY(13, r, scif_send(ep, hello, HELLO_LEN, SCIF_SEND_BLOCK));
	if (r != HELLO_LEN)
		fail(13, "hello: sent %d bytes", r);
	memset(hello, 0, sizeof(hello));
	SCIF_TRY(14, r, scif_recv(ep, hello, HELLO_LEN, SCIF_RECV_BLOCK));
	if (r != HELLO_LEN)
		fail(14, "reply: got %d bytes", r);
	compat_check(14, hello, HELLO_LEN, SEED_HELLO, "echoed hello");
	compat_fill(stream, STREAM_LEN, SEED_STREAM, 0);
	nb_send(ep2, stream, STREAM_LEN, 40000);
	nb_recv(ep2, (uint8_t *)&sum, sizeof(sum));
	if (sum != compat_fnv(COMPAT_FNV_INIT, stream, STREAM_LEN))
		fail(15, "the host's checksum of the stream differs");

	/* A window at a fixed offset, then the exchange of offsets. */
	compat_fill(win + R2, REG_LEN, SEED_C_R2, 0);
	compat_fill(win + R3, REG_LEN, SEED_C_R3, 0);
	SCIF_TRY(16, coff, scif_register(ep, win, WIN_LEN, CARD_FIXED_OFF,
					 SCIF_PROT_READ | SCIF_PROT_WRITE, SCIF_MAP_FIXED));
	if (coff != CARD_FIXED_OFF)
		fail(16, "SCIF_MAP_FIXED registration at %#llx returned %#llx",
		     (long long)CARD_FIXED_OFF, (long long)coff);
	compat_recv(17, ep, &hoff, sizeof(hoff));
	compat_send(18, ep, &coff, sizeof(coff));

	/* The host's RMAs landed once its remote signal is visible. */
	compat_expect(30, ep, 'H');
	compat_wait_word(31, win + FL + SIG_PEER, 0x2222, "host's remote fence signal");
	compat_check(32, win + R0, REG_LEN, SEED_H_W0, "host's writeto into R0");
	compat_check(33, win + R1, REG_LEN, SEED_H_W1, "host's vwriteto into R1");

	/* The card's RMAs: R0 sync, R1 asynchronous and left for the host's INIT_PEER mark. */
	compat_fill(win + R4, REG_LEN, SEED_C_W0, 0);
	SCIF_TRY(40, r, scif_writeto(ep, coff + R4, REG_LEN, hoff + R0, SCIF_RMA_SYNC));
	compat_fill(vbuf, REG_LEN, SEED_C_W1, 0);
	SCIF_TRY(41, r, scif_vwriteto(ep, vbuf, REG_LEN, hoff + R1, 0));
	compat_send(42, ep, "C", 1);
	SCIF_TRY(43, r, scif_readfrom(ep, coff + R4, REG_LEN, hoff + R2, 0));
	SCIF_TRY(44, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
	SCIF_TRY(45, r, scif_fence_wait(ep, mark));
	compat_check(46, win + R4, REG_LEN, SEED_H_R2, "readfrom of the host's R2");
	SCIF_TRY(47, r, scif_vreadfrom(ep, vbuf2, REG_LEN, hoff + R3, SCIF_RMA_SYNC));
	compat_check(48, vbuf2, REG_LEN, SEED_H_R3, "vreadfrom of the host's R3");
	SCIF_TRY(49, r, scif_fence_signal(ep, coff + FL + SIG_SELF, 0x4444, hoff + FL + SIG_PEER,
					  0x3333, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL |
					  SCIF_SIGNAL_REMOTE));
	compat_wait_word(50, win + FL + SIG_SELF, 0x4444, "local fence signal");
	compat_wait_word(51, win + FL + SIG_IPEER, 0x6666, "host's INIT_PEER remote signal");
	compat_send(52, ep, "c", 1);

	/* The host stamped our R2 through scif_mmap; now map its R3 and FL page in turn. */
	compat_expect(60, ep, 'M');
	compat_wait_word(61, win + FL + SIG_MMAP, 0x7777, "host's store through scif_mmap");
	compat_check(62, win + R2, COMPAT_PAGE, SEED_MMAP_H, "host's stamp in R2 via scif_mmap");
	SCIF_TRY(63, map, (uint8_t *)scif_mmap(NULL, REG_LEN, SCIF_PROT_READ | SCIF_PROT_WRITE, 0,
					       ep, hoff + R3));
	compat_check(64, map, REG_LEN, SEED_H_R3, "scif_mmap view of the host's R3");
	compat_fill(map, COMPAT_PAGE, SEED_MMAP_C, 0);
	SCIF_TRY(65, r, scif_munmap(map, REG_LEN));
	SCIF_TRY(66, map, (uint8_t *)scif_mmap(NULL, COMPAT_PAGE, SCIF_PROT_READ | SCIF_PROT_WRITE,
					       0, ep, hoff + FL));
	/* Release: the stamp above is visible before the flag (the host loads it with acquire). */
	atomic_store_explicit((_Atomic uint64_t *)(map + SIG_MMAP), 0x8888, memory_order_release);
	SCIF_TRY(67, r, scif_munmap(map, COMPAT_PAGE));

	/* Teardown: unregister while still connected, then close both endpoints. */
	SCIF_TRY(70, r, scif_unregister(ep, coff, WIN_LEN));
	compat_send(71, ep, "u", 1);
	compat_expect(72, ep, 'U');
	SCIF_TRY(73, r, scif_close(ep2));
	SCIF_TRY(74, r, scif_close(ep));
	munmap(win, WIN_LEN);
	free(stream);
	free(vbuf);
	free(vbuf2);

	/* MPSS-era programs end with exit(errno): nothing above may have left it set. */
	if (errno)
		fail(99, "errno is %d (%s) at exit", errno, strerror(errno));
	exit(errno);
}
