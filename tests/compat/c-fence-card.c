// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fence-card.c - compat pair "fence", card side (node 1): connects to the host's PORT.
 * Each round: asynchronous writeto and vwriteto into the host followed by a signal with both
 * SIGNAL_LOCAL and SIGNAL_REMOTE; asynchronous readfrom and vreadfrom under a mark and
 * wait; an unfenced writeto that the host covers with INIT_PEER; then the host's writes,
 * announced by its remote signal. Peer: c-fence-host. Usage: SCIF_NODE=1 c-fence-card PORT
 */
#include "c-fence.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	uint8_t *win, *vbuf, *vbuf2;
	off_t hoff, coff;
	scif_epd_t ep;
	int r, mark;

	win = compat_alloc(1, WIN_LEN);
	vbuf = malloc(REG_LEN);
	vbuf2 = malloc(REG_LEN);
	if (!vbuf || !vbuf2)
		fail(1, "out of memory");
	SCIF_CHECK(2, ep, scif_open());
	compat_connect(3, ep, 0, port);
	SCIF_CHECK(4, coff, scif_register(ep, win, WIN_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					  0));
	compat_recv(5, ep, &hoff, sizeof(hoff));
	compat_send(6, ep, &coff, sizeof(coff));

	for (int rd = 1; rd <= ROUNDS; rd++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "round %d", (int)rd);
		/* Two asynchronous writes, then one signal for both ends once they have landed. */
		compat_fill(win + R0, REG_LEN, SEED(rd, 0), 0);
		SCIF_CHECK(10, r, scif_writeto(ep, coff + R0, REG_LEN, hoff + R0, RMA_FLAGS(rd)));
		compat_fill(vbuf, REG_LEN, SEED(rd, 1), 0);
		SCIF_CHECK(11, r, scif_vwriteto(ep, vbuf, REG_LEN, hoff + R1,
						RMA_FLAGS(rd) | SCIF_RMA_USECACHE));
		SCIF_CHECK(12, r, scif_fence_signal(ep, coff + FL + SIG_CARD, rd,
						    hoff + FL + SIG_CARD, rd,
						    SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL |
						    SCIF_SIGNAL_REMOTE));
		compat_wait_word(13, win + FL + SIG_CARD, rd, "INIT_SELF local signal");

		/* Asynchronous reads of the host's data, completed by a mark and a wait. */
		compat_expect(14, ep, 'R');
		SCIF_CHECK(15, r, scif_readfrom(ep, coff + R2, REG_LEN, hoff + R2, RMA_FLAGS(rd)));
		SCIF_CHECK(16, r, scif_vreadfrom(ep, vbuf2, REG_LEN, hoff + R3, RMA_FLAGS(rd)));
		SCIF_CHECK(17, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
		SCIF_CHECK(18, r, scif_fence_wait(ep, mark));
		compat_check(19, win + R2, REG_LEN, SEED(rd, 2), "fenced readfrom");
		compat_check(20, vbuf2, REG_LEN, SEED(rd, 3), "fenced vreadfrom");

		/* An unfenced write: the host's INIT_PEER mark must cover it. */
		compat_fill(win + R3, REG_LEN, SEED(rd, 4), 0);
		SCIF_CHECK(21, r, scif_writeto(ep, coff + R3, REG_LEN, hoff + R3, RMA_FLAGS(rd)));
		compat_send(22, ep, "A", 1);
		compat_wait_word(23, win + FL + SIG_IPEER, rd, "host's INIT_PEER remote signal");

		/* The host's writes into R0 and R1, announced by its remote signal. */
		compat_wait_word(24, win + FL + SIG_HOST, rd, "host's INIT_SELF remote signal");
		compat_check(25, win + R0, REG_LEN, SEED(rd, 5), "host's async writeto");
		compat_check(26, win + R1, REG_LEN, SEED(rd, 6), "host's async vwriteto (ORDERED)");
		compat_send(27, ep, "N", 1);
	}

	compat_ctx[0] = 0;
	compat_expect(30, ep, 'Q');
	SCIF_CHECK(31, r, scif_unregister(ep, coff, WIN_LEN));
	compat_send(32, ep, "q", 1);
	compat_expect(33, ep, 'Z');
	SCIF_CHECK(34, r, scif_close(ep));
	free(win);
	free(vbuf);
	free(vbuf2);
	return 0;
}
