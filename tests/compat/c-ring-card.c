// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-ring-card.c - compat pair "ring", card side (node 1, listens on PORT): owns two byte
 * rings in a registered window of its own memory (c-ring.h), consumes ring A that the host
 * fills through scif_mmap and fills ring B for the host, 8 MiB each way, every byte checked
 * and both streams checksummed. Peer: c-ring-host. Usage: SCIF_NODE=1 c-ring-card PORT
 */
#include <sys/mman.h>

#include "c-ring.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct scif_portID peer;
	struct ring_end a, b;
	struct ring_ctl *ctl;
	scif_epd_t lep, ep;
	uint64_t msg[2], sums[2];
	uint8_t *win;
	off_t off;
	int r;

	win = mmap(NULL, RING_WIN_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (win == MAP_FAILED)
		fail(1, "mmap: %s", strerror(errno));
	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, 1));
	SCIF_CHECK(5, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));

	/* The control page is complete before the window exists for the host. */
	ctl = (struct ring_ctl *)win;
	ctl->magic = RING_MAGIC;
	ctl->size = RING_SIZE;
	SCIF_CHECK(6, off, scif_register(ep, win, RING_WIN_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					 0));
	msg[0] = (uint64_t)off;
	msg[1] = RING_WIN_LEN;
	compat_send(7, ep, msg, sizeof(msg));

	/* Ring A: consume what the host produces. Ring B: produce for the host. */
	a = (struct ring_end){ .tail = &ctl->a_tail, .head = &ctl->a_head,
			       .data = win + RING_A_DATA, .seed = SEED_A,
			       .sum = COMPAT_FNV_INIT, .name = "ring A (host->card)" };
	b = (struct ring_end){ .tail = &ctl->b_tail, .head = &ctl->b_head,
			       .data = win + RING_B_DATA, .seed = SEED_B, .rng = 7,
			       .sum = COMPAT_FNV_INIT, .name = "ring B (card->host)" };
	ring_run(&b, &a, 10);

	/* Checksums both ways: the host sends its producer sum of A, we send ours of B. */
	compat_recv(20, ep, sums, sizeof(sums));
	if (sums[0] != a.sum || sums[1] != RING_TOTAL)
		fail(21, "ring A: host produced %llu bytes with sum %#llx, card consumed sum %#llx",
		     (unsigned long long)sums[1], (unsigned long long)sums[0],
		     (unsigned long long)a.sum);
	/* Unregister while the host still has the window mapped (its mapping stays valid). */
	SCIF_CHECK(22, r, scif_unregister(ep, off, RING_WIN_LEN));
	sums[0] = b.sum;
	sums[1] = b.moved;
	compat_send(23, ep, sums, sizeof(sums));
	compat_expect(24, ep, 'D');
	SCIF_CHECK(25, r, scif_close(ep));
	SCIF_CHECK(26, r, scif_close(lep));
	munmap(win, RING_WIN_LEN);
	return 0;
}
