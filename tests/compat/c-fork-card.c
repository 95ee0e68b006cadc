// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fork-card.c - compat pair "fork", card side (node 1): connects to the host's PORT and
 * listens on PORT+1 for the host's forked child; checks the child's RMA and its window, then
 * reads the parent's three windows (two registered before its fork, one after), writes into
 * two of them and checks the parent's RMA into its own window. Peer: c-fork-host.
 * Usage: SCIF_NODE=1 c-fork-card PORT
 */
#include "c-fork.h"

/* The host's child connects here: check its vwriteto, then read its window. */
static void serve_child(scif_epd_t lep2)
{
	struct scif_portID peer;
	off_t child_off, off;
	scif_epd_t cep;
	uint8_t *w;
	int r;

	w = compat_alloc(40, CHILD_LEN);
	SCIF_CHECK(41, r, scif_accept(lep2, &peer, &cep, SCIF_ACCEPT_SYNC));
	compat_recv(42, cep, &child_off, sizeof(child_off));
	SCIF_CHECK(43, off, scif_register(cep, w, CHILD_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					  0));
	compat_send(44, cep, &off, sizeof(off));
	compat_expect(45, cep, 'v');
	compat_check(46, w, CHILD_LEN, SEED_CHILD_W, "the host child's vwriteto");
	SCIF_CHECK(47, r, scif_readfrom(cep, off, CHILD_LEN, child_off, SCIF_RMA_SYNC));
	compat_check(48, w, CHILD_LEN, SEED_CHILD, "readfrom of the host child's window");
	/* Unregister while still connected: the child closes as soon as it reads 'k'. */
	SCIF_CHECK(49, r, scif_unregister(cep, off, CHILD_LEN));
	compat_send(50, cep, "k", 1);
	SCIF_CHECK(51, r, scif_close(cep));
	free(w);
}

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct fork_offsets offs;
	scif_epd_t lep2, ep;
	off_t coff, offc;
	uint8_t *w;
	int r, mark;

	w = compat_alloc(1, CARD_LEN);
	SCIF_CHECK(2, lep2, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep2, port + 1));
	SCIF_CHECK(4, r, scif_listen(lep2, 1));
	SCIF_CHECK(5, ep, scif_open());
	compat_connect(6, ep, 0, port);
	SCIF_CHECK(7, coff, scif_register(ep, w, CARD_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0));
	compat_recv(8, ep, &offs, sizeof(offs));
	compat_send(9, ep, &coff, sizeof(coff));

	serve_child(lep2);
	SCIF_CHECK(10, r, scif_close(lep2));

	/* The parent's windows after its fork: rewritten heads, original tails, and window C. */
	compat_expect(11, ep, 'P');
	compat_recv(12, ep, &offc, sizeof(offc));
	SCIF_CHECK(13, r, scif_readfrom(ep, coff, WIN_A_LEN, offs.a, SCIF_RMA_SYNC));
	compat_check(14, w, TOUCH_LEN, SEED_A_AFTER, "window A (DONTFORK), rewritten after fork");
	compat_check_at(15, w + TOUCH_LEN, WIN_A_LEN - TOUCH_LEN, SEED_A, TOUCH_LEN,
			"window A (DONTFORK), untouched part");
	SCIF_CHECK(16, r, scif_readfrom(ep, coff, WIN_B_LEN, offs.b, SCIF_RMA_SYNC));
	compat_check(17, w, TOUCH_LEN, SEED_B_AFTER, "window B, rewritten after fork");
	compat_check_at(18, w + TOUCH_LEN, WIN_B_LEN - TOUCH_LEN, SEED_B, TOUCH_LEN,
			"window B, untouched part");
	SCIF_CHECK(19, r, scif_readfrom(ep, coff, WIN_C_LEN, offc, 0));
	SCIF_CHECK(20, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
	SCIF_CHECK(21, r, scif_fence_wait(ep, mark));
	compat_check(22, w, WIN_C_LEN, SEED_C, "window C, registered after the fork");

	/* Write the second halves of A and B. */
	compat_fill(w, HALF, SEED_A_CARD, 0);
	compat_fill(w + HALF, HALF, SEED_B_CARD, 0);
	SCIF_CHECK(23, r, scif_writeto(ep, coff, HALF, offs.a + HALF, SCIF_RMA_SYNC));
	SCIF_CHECK(24, r, scif_writeto(ep, coff + HALF, HALF, offs.b + HALF, SCIF_RMA_SYNC));
	compat_send(25, ep, "W", 1);

	/* The parent's fenced vwriteto and its sync writeto from window A. */
	compat_expect(26, ep, 'V');
	compat_check(27, w, 1 << 20, SEED_PARENT, "the parent's vwriteto");
	compat_check(28, w + (1 << 20), TOUCH_LEN, SEED_A_AFTER, "the parent's writeto from A");
	compat_send(29, ep, "E", 1);

	/* Each side unregisters while the other is still connected. */
	compat_expect(30, ep, 'X');
	SCIF_CHECK(31, r, scif_unregister(ep, coff, CARD_LEN));
	compat_send(32, ep, "Y", 1);
	SCIF_CHECK(33, r, scif_close(ep));
	free(w);
	return 0;
}
