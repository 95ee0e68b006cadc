// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-regrace-host.c - compat pair "regrace", host side (node 0, listens on PORT): accepts
 * every one of the card's connections, registers a page on each right after scif_accept and
 * reads the page the card registered right after scif_connect. Fails if a connection is
 * missing or any registration failed. Peer: c-regrace-card.
 * Usage: SCIF_NODE=0 c-regrace-host PORT [CONNECTIONS]
 */
#include "c-regrace.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	int n = regrace_conns(argc, argv), r;
	struct regrace_stats st = { 0 };
	struct scif_portID peer;
	uint8_t *page, *buf;
	scif_epd_t lep, ep;
	off_t hoff, coff;

	page = compat_alloc(1, COMPAT_PAGE);
	buf = compat_alloc(1, COMPAT_PAGE);
	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, 16));
	for (int i = 0; i < n; i++) {
		snprintf(compat_ctx, sizeof(compat_ctx), "connection %d of %d", i, n);
		errno = 0;
		if (scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC) < 0)
			fail(5, "accept of connection %d of %d failed: %s", i, n, strerror(errno));
		compat_fill(page, COMPAT_PAGE, SEED_HOST(i), 0);
		hoff = scif_register(ep, page, COMPAT_PAGE, 0, SCIF_PROT_READ, 0);
		if (hoff < 0)
			regrace_note(&st, i, errno, "host: scif_register right after scif_accept");
		compat_send(6, ep, &hoff, sizeof(hoff));
		compat_recv(7, ep, &coff, sizeof(coff));
		if (coff >= 0) {
			SCIF_CHECK(8, r, scif_vreadfrom(ep, buf, COMPAT_PAGE, coff, SCIF_RMA_SYNC));
			compat_check(9, buf, COMPAT_PAGE, SEED_CARD(i), "the card's page");
		}
		compat_expect(10, ep, 'c');
		compat_send(11, ep, "h", 1);
		SCIF_CHECK(12, r, scif_close(ep));
	}
	SCIF_CHECK(13, r, scif_close(lep));
	free(page);
	free(buf);
	regrace_report(20, &st, n, "right after scif_accept");
	return 0;
}
