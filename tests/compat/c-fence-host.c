// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fence-host.c - compat pair "fence", host side (node 0, listens on PORT). Each round: wait
 * for the card's remote signal and check what its asynchronous writeto/vwriteto stored;
 * give it data to read; cover its unfenced writeto with an INIT_PEER mark and signal;
 * write into the card asynchronously and tell it with a remote signal. Peer: c-fence-card.
 * Usage: SCIF_NODE=0 c-fence-host PORT
 */
#include "c-fence.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct scif_portID peer;
	scif_epd_t lep, ep;
	uint8_t *win, *vbuf;
	off_t hoff, coff;
	int r, mark;

	win = compat_alloc(1, WIN_LEN);
	vbuf = malloc(REG_LEN);
	if (!vbuf)
		fail(1, "out of memory");
	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, 1));
	SCIF_CHECK(5, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));
	SCIF_CHECK(6, hoff, scif_register(ep, win, WIN_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					  0));
	compat_send(7, ep, &hoff, sizeof(hoff));
	compat_recv(8, ep, &coff, sizeof(coff));

	for (int rd = 1; rd <= ROUNDS; rd++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "round %d", (int)rd);
		/* The card's remote signal lands after its writeto and vwriteto of the round. */
		compat_wait_word(10, win + FL + SIG_CARD, rd, "card's INIT_SELF remote signal");
		compat_check(11, win + R0, REG_LEN, SEED(rd, 0), "card's async writeto");
		compat_check(12, win + R1, REG_LEN, SEED(rd, 1), "card's async vwriteto");

		/* Data for the card's fenced readfrom and vreadfrom. */
		compat_fill(win + R2, REG_LEN, SEED(rd, 2), 0);
		compat_fill(win + R3, REG_LEN, SEED(rd, 3), 0);
		compat_send(13, ep, "R", 1);

		/* The card issued a writeto into R3 and said 'A' without fencing it. */
		compat_expect(14, ep, 'A');
		SCIF_CHECK(15, r, scif_fence_mark(ep, SCIF_FENCE_INIT_PEER, &mark));
		SCIF_CHECK(16, r, scif_fence_wait(ep, mark));
		compat_check(17, win + R3, REG_LEN, SEED(rd, 4),
			     "card's writeto under an INIT_PEER mark");
		SCIF_CHECK(18, r, scif_fence_signal(ep, hoff + FL + SIG_IPEER, rd,
						    coff + FL + SIG_IPEER, rd,
						    SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL |
						    SCIF_SIGNAL_REMOTE));
		compat_wait_word(19, win + FL + SIG_IPEER, rd, "INIT_PEER local signal");

		/* Our own asynchronous writes into the card, then the signal that follows them. */
		compat_fill(win + R0, REG_LEN, SEED(rd, 5), 0);
		SCIF_CHECK(20, r, scif_writeto(ep, hoff + R0, REG_LEN, coff + R0, RMA_FLAGS(rd)));
		compat_fill(vbuf, REG_LEN, SEED(rd, 6), 0);
		SCIF_CHECK(21, r, scif_vwriteto(ep, vbuf, REG_LEN, coff + R1,
						RMA_FLAGS(rd) | SCIF_RMA_ORDERED));
		SCIF_CHECK(22, r, scif_fence_signal(ep, 0, 0, coff + FL + SIG_HOST, rd,
						    SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE));
		compat_expect(23, ep, 'N');
	}

	compat_ctx[0] = 0;
	compat_send(30, ep, "Q", 1);
	compat_expect(31, ep, 'q');
	SCIF_CHECK(32, r, scif_unregister(ep, hoff, WIN_LEN));
	compat_send(33, ep, "Z", 1);
	SCIF_CHECK(34, r, scif_close(ep));
	SCIF_CHECK(35, r, scif_close(lep));
	free(win);
	free(vbuf);
	return 0;
}
