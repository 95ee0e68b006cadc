// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-mixsync-card.c - compat pair "mixsync", card side (node 1): connects to the host's PORT;
 * each round issues an asynchronous scif_writeto of 1 MiB, a remote fence signal, then a
 * SCIF_RMA_SYNC write of 64 KiB over the start of the same range (scif_writeto in odd
 * rounds, scif_vwriteto in even ones) and tells the host over scif_send once it returned.
 * Peer: c-mixsync-host. Usage: SCIF_NODE=1 c-mixsync-card PORT
 */
#include "c-mixsync.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	uint8_t *win, *vbuf;
	off_t hoff, coff;
	scif_epd_t ep;
	int r;

	win = compat_alloc(1, CARD_WIN_LEN);
	vbuf = malloc(SMALL_LEN);
	if (!vbuf)
		fail(1, "out of memory");
	SCIF_CHECK(2, ep, scif_open());
	compat_connect(3, ep, 0, port);
	SCIF_CHECK(4, coff, scif_register(ep, win, CARD_WIN_LEN, 0, SCIF_PROT_READ, 0));
	compat_recv(5, ep, &hoff, sizeof(hoff));

	for (int32_t rd = 1; rd <= ROUNDS; rd++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "round %d", (int)rd);
		compat_fill(win, BIG_LEN, SEED_OLD(rd), 0);
		SCIF_CHECK(10, r, scif_writeto(ep, coff, BIG_LEN, hoff, 0));
		SCIF_CHECK(11, r, scif_fence_signal(ep, 0, 0, hoff + BIG_LEN, (uint64_t)rd,
						    SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE));
		if (rd & 1) {
			compat_fill(win + BIG_LEN, SMALL_LEN, SEED_NEW(rd), 0);
			SCIF_CHECK(12, r, scif_writeto(ep, coff + BIG_LEN, SMALL_LEN, hoff,
						       SCIF_RMA_SYNC));
		} else {
			compat_fill(vbuf, SMALL_LEN, SEED_NEW(rd), 0);
			SCIF_CHECK(13, r, scif_vwriteto(ep, vbuf, SMALL_LEN, hoff, SCIF_RMA_SYNC));
		}
		compat_send(14, ep, &rd, sizeof(rd));
		compat_expect(15, ep, 'k');
	}
	compat_ctx[0] = 0;
	SCIF_CHECK(20, r, scif_unregister(ep, coff, CARD_WIN_LEN));
	compat_send(21, ep, "u", 1);
	compat_expect(22, ep, 'U');
	SCIF_CHECK(23, r, scif_close(ep));
	free(win);
	free(vbuf);
	return 0;
}
