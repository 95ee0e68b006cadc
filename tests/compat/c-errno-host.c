// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-errno-host.c - compat pair "errno", host side (node 0, listens on PORT). Every SCIF call
 * is checked the way MPSS-era programs check them: errno cleared before the call, and a
 * success that leaves errno set is a failure, on blocking and non-blocking paths alike; the
 * program ends with exit(errno). Peer: c-errno-card. Usage: SCIF_NODE=0 c-errno-host PORT
 */
#include <sys/mman.h>

#include "c-errno.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1), nodes[16], self = 0xffff;
	struct scif_pollepd pl;
	struct scif_portID peer, peer2;
	scif_epd_t lep, ep, ep2;
	uint8_t hello[HELLO_LEN], *stream, *win, *vbuf, *map;
	off_t off, coff;
	uint64_t sum;
	int r, mark;

	compat_strict = 1;
	stream = malloc(STREAM_LEN);
	vbuf = malloc(REG_LEN);
	win = compat_alloc(1, WIN_LEN);
	if (!stream || !vbuf)
		fail(1, "out of memory");

	/* Node discovery, then a listener. */
	SCIF_TRY(2, r, scif_get_nodeIDs(nodes, 16, &self));
	if (r < 2 || self != 0)
		fail(3, "scif_get_nodeIDs: %d nodes, self %u; want >= 2 and node 0", r, self);
	SCIF_TRY(4, lep, scif_open());
	SCIF_TRY(5, r, scif_get_fd(lep));
	if (r != lep)
		fail(5, "scif_get_fd(%d) returned %d", lep, r);
	SCIF_TRY(6, r, scif_bind(lep, port));
	if (r != port)
		fail(6, "scif_bind returned %d, expected %u", r, port);
	SCIF_TRY(7, r, scif_listen(lep, 4));

	/* First connection: a blocking accept. Second: poll the listener, accept without SYNC. */
	SCIF_TRY(8, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));
	if (peer.node != 1)
		fail(8, "accepted a connection from node %u, expected 1", peer.node);
	pl = (struct scif_pollepd){ .epd = lep, .events = SCIF_POLLIN };
	SCIF_TRY(9, r, scif_poll(&pl, 1, COMPAT_WAIT_MS));
	if (r != 1 || !(pl.revents & SCIF_POLLIN))
		fail(9, "scif_poll on the listener returned %d, revents %#x", r, pl.revents);
	SCIF_TRY(10, r, scif_accept(lep, &peer2, &ep2, 0));
	if (peer2.node != 1 || peer2.port == peer.port)
		fail(10, "second connection from %u:%u (first %u:%u)", peer2.node, peer2.port,
		     peer.node, peer.port);

	/* Nothing has been sent on ep2 yet: a zero-timeout poll and a non-blocking recv find 0. */
	pl = (struct scif_pollepd){ .epd = ep2, .events = SCIF_POLLIN };
	SCIF_TRY(11, r, scif_poll(&pl, 1, 0));
	if (r != 0)
		fail(11, "scif_poll(timeout 0) on an idle endpoint returned %d", r);
	SCIF_TRY(12, r, scif_recv(ep2, hello, 16, 0));
	if (r != 0)
		fail(12, "non-blocking scif_recv on an idle endpoint returned %d", r);

	/* Blocking hello and reply on ep, then the non-blocking stream on ep2. */
	SCIF_TRY(13, r, scif_recv(ep, hello, HELLO_LEN, SCIF_RECV_BLOCK));
	if (r != HELLO_LEN)
		fail(13, "hello: got %d bytes", r);
	compat_check(13, hello, HELLO_LEN, SEED_HELLO, "hello");
	SCIF_TRY(14, r, scif_send(ep, hello, HELLO_LEN, SCIF_SEND_BLOCK));
	if (r != HELLO_LEN)
		fail(14, "reply: sent %d bytes", r);
	nb_recv(ep2, stream, STREAM_LEN);
	compat_check(15, stream, STREAM_LEN, SEED_STREAM, "non-blocking stream");
	sum = compat_fnv(COMPAT_FNV_INIT, stream, STREAM_LEN);
	nb_send(ep2, (const uint8_t *)&sum, sizeof(sum), INT_MAX);

	/* Registration and the exchange of offsets. */
	compat_fill(win + R2, REG_LEN, SEED_H_R2, 0);
	compat_fill(win + R3, REG_LEN, SEED_H_R3, 0);
	SCIF_TRY(16, off, scif_register(ep, win, WIN_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0));
	compat_send(17, ep, &off, sizeof(off));
	compat_recv(18, ep, &coff, sizeof(coff));
	if (coff != CARD_FIXED_OFF)
		fail(18, "the card's window is at %#llx, expected %#llx", (long long)coff,
		     (long long)CARD_FIXED_OFF);

	/* Host-initiated RMA into the card's window, every flavour, sync and fenced. */
	compat_fill(win + R4, REG_LEN, SEED_H_W0, 0);
	SCIF_TRY(30, r, scif_writeto(ep, off + R4, REG_LEN, coff + R0, SCIF_RMA_SYNC));
	compat_fill(vbuf, REG_LEN, SEED_H_W1, 0);
	SCIF_TRY(31, r, scif_vwriteto(ep, vbuf, REG_LEN, coff + R1, 0));
	SCIF_TRY(32, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
	SCIF_TRY(33, r, scif_fence_wait(ep, mark));
	SCIF_TRY(34, r, scif_readfrom(ep, off + R4, REG_LEN, coff + R2, 0));
	SCIF_TRY(35, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
	SCIF_TRY(36, r, scif_fence_wait(ep, mark));
	compat_check(37, win + R4, REG_LEN, SEED_C_R2, "readfrom of the card's R2");
	SCIF_TRY(38, r, scif_vreadfrom(ep, vbuf, REG_LEN, coff + R3, SCIF_RMA_SYNC));
	compat_check(39, vbuf, REG_LEN, SEED_C_R3, "vreadfrom of the card's R3");
	SCIF_TRY(40, r, scif_fence_signal(ep, off + FL + SIG_SELF, 0x1111, coff + FL + SIG_PEER,
					  0x2222, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL |
					  SCIF_SIGNAL_REMOTE));
	compat_wait_word(41, win + FL + SIG_SELF, 0x1111, "local fence signal");
	compat_send(42, ep, "H", 1);

	/*
	 * Card-initiated RMA: it writes R0 (sync) and R1 (asynchronous, unfenced) and says 'C';
	 * a peer mark then covers those writes. Its remote signal follows its reads.
	 */
	compat_expect(43, ep, 'C');
	SCIF_TRY(44, r, scif_fence_mark(ep, SCIF_FENCE_INIT_PEER, &mark));
	SCIF_TRY(45, r, scif_fence_wait(ep, mark));
	compat_check(46, win + R0, REG_LEN, SEED_C_W0, "card's writeto into R0");
	compat_check(47, win + R1, REG_LEN, SEED_C_W1, "card's vwriteto into R1");
	compat_wait_word(48, win + FL + SIG_PEER, 0x3333, "card's remote fence signal");
	/* Both SIGNAL flags: Intel swaps the pairs when INIT_PEER comes with only one. */
	SCIF_TRY(49, r, scif_fence_signal(ep, off + FL + SIG_IPEER, 0x5555, coff + FL + SIG_IPEER,
					  0x6666, SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL |
					  SCIF_SIGNAL_REMOTE));
	compat_wait_word(50, win + FL + SIG_IPEER, 0x5555, "INIT_PEER local signal");
	compat_expect(51, ep, 'c');

	/* scif_mmap of the card's R2: read its data, store a stamp page and a flag word. */
	SCIF_TRY(60, map, (uint8_t *)scif_mmap(NULL, REG_LEN, SCIF_PROT_READ | SCIF_PROT_WRITE, 0,
					       ep, coff + R2));
	if (map == SCIF_MMAP_FAILED)
		fail(60, "scif_mmap returned SCIF_MMAP_FAILED");
	compat_check(61, map, REG_LEN, SEED_C_R2, "scif_mmap view of the card's R2");
	compat_fill(map, COMPAT_PAGE, SEED_MMAP_H, 0);
	SCIF_TRY(62, r, scif_munmap(map, REG_LEN));
	SCIF_TRY(63, map, (uint8_t *)scif_mmap(NULL, COMPAT_PAGE, SCIF_PROT_WRITE, 0, ep,
					       coff + FL));
	atomic_store_explicit((_Atomic uint64_t *)(map + SIG_MMAP), 0x7777, memory_order_release);
	SCIF_TRY(64, r, scif_munmap(map, COMPAT_PAGE));
	compat_send(65, ep, "M", 1);
	compat_wait_word(66, win + FL + SIG_MMAP, 0x8888, "card's store through scif_mmap");
	compat_check(67, win + R3, COMPAT_PAGE, SEED_MMAP_C, "card's stamp in R3 via scif_mmap");

	/* Teardown: both unregister while connected, then close. */
	compat_expect(70, ep, 'u');
	SCIF_TRY(71, r, scif_unregister(ep, off, WIN_LEN));
	compat_send(72, ep, "U", 1);
	SCIF_TRY(73, r, scif_close(ep2));
	SCIF_TRY(74, r, scif_close(ep));
	SCIF_TRY(75, r, scif_close(lep));
	free(stream);
	free(vbuf);
	free(win);

	/* MPSS-era programs end with exit(errno): nothing above may have left it set. */
	if (errno)
		fail(99, "errno is %d (%s) at exit", errno, strerror(errno));
	exit(errno);
}
