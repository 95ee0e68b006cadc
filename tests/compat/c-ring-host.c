// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-ring-host.c - compat pair "ring", host side (node 0): connects to the card's PORT
 * (retrying while it is not up), maps the card's ring window with scif_mmap and runs the
 * host ends of both rings of c-ring.h: fills ring A, drains and checks ring B.
 * Peer: c-ring-card. Usage: SCIF_NODE=0 c-ring-host PORT
 */
#include "c-ring.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct ring_end a, b;
	struct ring_ctl *ctl;
	uint64_t msg[2], sums[2];
	scif_epd_t ep;
	uint8_t *map;
	int r;

	SCIF_CHECK(2, ep, scif_open());
	compat_connect(3, ep, 1, port);
	compat_recv(4, ep, msg, sizeof(msg));
	if (msg[1] != RING_WIN_LEN)
		fail(4, "the card offers a window of %llu bytes, expected %u",
		     (unsigned long long)msg[1], RING_WIN_LEN);
	map = scif_mmap(NULL, RING_WIN_LEN, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ep, (off_t)msg[0]);
	if (map == SCIF_MMAP_FAILED)
		fail(5, "scif_mmap of the card's ring window: %s", strerror(errno));
	ctl = (struct ring_ctl *)map;
	if (ctl->magic != RING_MAGIC || ctl->size != RING_SIZE)
		fail(6, "ring control page: magic %#llx size %llu", (unsigned long long)ctl->magic,
		     (unsigned long long)ctl->size);

	a = (struct ring_end){ .tail = &ctl->a_tail, .head = &ctl->a_head,
			       .data = map + RING_A_DATA, .seed = SEED_A, .rng = 3,
			       .sum = COMPAT_FNV_INIT, .name = "ring A (host->card)" };
	b = (struct ring_end){ .tail = &ctl->b_tail, .head = &ctl->b_head,
			       .data = map + RING_B_DATA, .seed = SEED_B,
			       .sum = COMPAT_FNV_INIT, .name = "ring B (card->host)" };
	ring_run(&a, &b, 10);

	sums[0] = a.sum;
	sums[1] = a.moved;
	compat_send(20, ep, sums, sizeof(sums));
	compat_recv(21, ep, sums, sizeof(sums));
	if (sums[0] != b.sum || sums[1] != RING_TOTAL)
		fail(22, "ring B: card produced %llu bytes with sum %#llx, host consumed sum %#llx",
		     (unsigned long long)sums[1], (unsigned long long)sums[0],
		     (unsigned long long)b.sum);
	/* The card has unregistered the window by now; our mapping must still show its pages. */
	if (ctl->magic != RING_MAGIC ||
	    atomic_load_explicit(&ctl->b_tail, memory_order_acquire) != RING_TOTAL)
		fail(23, "the mapping changed after the card unregistered its window");
	compat_send(23, ep, "D", 1);

	SCIF_CHECK(24, r, scif_munmap(map, RING_WIN_LEN));
	SCIF_CHECK(25, r, scif_close(ep));
	return 0;
}
