// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-multi-card.c - compat pair "multi", card side (node 1, listens on PORT): accepts the
 * host's four connections, sorts them by the index each one announces and runs the shared
 * poll loop of c-multi.h. Peer: c-multi-host. Usage: SCIF_NODE=1 c-multi-card PORT
 */
#include "c-multi.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct conn c[NCONN];
	struct scif_portID peer;
	scif_epd_t lep, ep;
	uint32_t idx;
	int r;

	memset(c, 0, sizeof(c));
	for (int i = 0; i < NCONN; i++)
		c[i].ep = -1;
	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, NCONN));
	for (int i = 0; i < NCONN; i++) {
		SCIF_CHECK(5, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));
		compat_recv(6, ep, &idx, sizeof(idx));
		if (idx >= NCONN || c[idx].ep >= 0 || peer.node != 0)
			fail(7, "connection from %u:%u announces index %u", peer.node,
			     peer.port, idx);
		c[idx].ep = ep;
	}
	SCIF_CHECK(8, r, scif_close(lep));
	multi_pump(c, 1);
	multi_finish(c, 1);
	return 0;
}
