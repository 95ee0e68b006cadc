// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-regrace-card.c - compat pair "regrace", card side (node 1): CONNECTIONS times, connects
 * to the host's PORT, calls scif_register the moment scif_connect returns, reads the host's
 * page, and closes. Fails if any registration failed. Peer: c-regrace-host.
 * Usage: SCIF_NODE=1 c-regrace-card PORT [CONNECTIONS]
 */
#include "c-regrace.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	int n = regrace_conns(argc, argv), r;
	struct regrace_stats st = { 0 };
	uint8_t *page, *buf;
	off_t hoff, coff;
	scif_epd_t ep;

	page = compat_alloc(1, COMPAT_PAGE);
	buf = compat_alloc(1, COMPAT_PAGE);
	for (int i = 0; i < n; i++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "connection %d of %d", i, n);
		SCIF_CHECK(2, ep, scif_open());
		compat_connect(3, ep, 0, port);
		/* No message first: the window is set up as soon as the connection exists. */
		compat_fill(page, COMPAT_PAGE, SEED_CARD(i), 0);
		coff = scif_register(ep, page, COMPAT_PAGE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
		if (coff < 0)
			regrace_note(&st, i, errno, "card: scif_register right after scif_connect");
		compat_send(4, ep, &coff, sizeof(coff));
		compat_recv(5, ep, &hoff, sizeof(hoff));
		if (hoff >= 0) {
			SCIF_CHECK(6, r, scif_vreadfrom(ep, buf, COMPAT_PAGE, hoff, SCIF_RMA_SYNC));
			compat_check(7, buf, COMPAT_PAGE, SEED_HOST(i), "the host's page");
		}
		compat_send(8, ep, "c", 1);
		compat_expect(9, ep, 'h');
		SCIF_CHECK(10, r, scif_close(ep));
	}
	free(page);
	free(buf);
	regrace_report(20, &st, n, "right after scif_connect");
	return 0;
}
