// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-multi-host.c - compat pair "multi", host side (node 0): opens four endpoints to the
 * card's PORT (the first one retrying while the card is not up), names each with its index
 * and runs the shared poll loop of c-multi.h. Peer: c-multi-card.
 * Usage: SCIF_NODE=0 c-multi-host PORT
 */
#include "c-multi.h"

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct conn c[NCONN];

	memset(c, 0, sizeof(c));
	for (uint32_t i = 0; i < NCONN; i++) {
		SCIF_CHECK(2, c[i].ep, scif_open());
		compat_connect(3, c[i].ep, 1, port);
		compat_send(4, c[i].ep, &i, sizeof(i));
	}
	multi_pump(c, 0);
	multi_finish(c, 0);
	return 0;
}
