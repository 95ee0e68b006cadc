// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-mixsync-host.c - compat pair "mixsync", host side (node 0, listens on PORT): registers
 * the window the card writes into; each round, as soon as the card says its SYNC write has
 * returned, checks that the first 64 KiB hold the newer data, then waits for the signal that
 * follows the older asynchronous 1 MiB and checks the whole window. Peer: c-mixsync-card.
 * Usage: SCIF_NODE=0 c-mixsync-host PORT
 */
#include "c-mixsync.h"

/* Say what the first 64 KiB hold when they are not the newer data. */
static void explain(int code, const uint8_t *w, int rd, const char *when)
{
	long long bad = compat_verify(w, SMALL_LEN, SEED_NEW(rd), 0);

	if (bad < 0)
		return;
	if (compat_verify(w + bad, SMALL_LEN - (size_t)bad, SEED_OLD(rd), (uint64_t)bad) < 0)
		fail(code, "%s: bytes %lld..%d hold the OLDER asynchronous writeto, not "
			   "the SCIF_RMA_SYNC write issued after it", when, bad, SMALL_LEN - 1);
	compat_check(code, w, SMALL_LEN, SEED_NEW(rd), when);
}

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct scif_portID peer;
	scif_epd_t lep, ep;
	off_t hoff;
	uint8_t *win;
	int32_t said;
	int r;

	win = compat_alloc(1, HOST_WIN_LEN);
	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, 1));
	SCIF_CHECK(5, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));
	SCIF_CHECK(6, hoff, scif_register(ep, win, HOST_WIN_LEN, 0,
					  SCIF_PROT_READ | SCIF_PROT_WRITE, 0));
	compat_send(7, ep, &hoff, sizeof(hoff));

	for (int rd = 1; rd <= ROUNDS; rd++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "round %d", (int)rd);
		compat_recv(10, ep, &said, sizeof(said));
		if (said != rd)
			fail(10, "protocol: round %d announced as %d", rd, said);
		/* The SYNC call has returned: its data must be there, and nothing older over it. */
		explain(11, win, rd, "right after the SYNC call returned");
		compat_wait_word(12, win + BIG_LEN, (uint64_t)rd, "signal after the async writeto");
		explain(13, win, rd, "after the async writeto's fence signal");
		compat_check_at(14, win + SMALL_LEN, BIG_LEN - SMALL_LEN, SEED_OLD(rd), SMALL_LEN,
				"the rest of the async writeto");
		compat_send(15, ep, "k", 1);
	}
	compat_ctx[0] = 0;
	compat_expect(20, ep, 'u');
	SCIF_CHECK(21, r, scif_unregister(ep, hoff, HOST_WIN_LEN));
	compat_send(22, ep, "U", 1);
	SCIF_CHECK(23, r, scif_close(ep));
	SCIF_CHECK(24, r, scif_close(lep));
	free(win);
	return 0;
}
