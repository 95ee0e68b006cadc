// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * host.c - the host half of the example pair: listen on a port of node 0, accept the card,
 * receive its greeting and answer. Run it with `SCIF_NODE=0 ./host` beside `SCIF_NODE=1 ./card`.
 */
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXAMPLE_PORT 2050

int main(void)
{
	struct scif_portID peer;
	scif_epd_t lep, ep;
	char buf[64] = { 0 };
	char reply[] = "hello card, this is the host";
	int n;

	lep = scif_open();
	if (lep == SCIF_OPEN_FAILED) {
		perror("scif_open");
		return 1;
	}
	if (scif_bind(lep, EXAMPLE_PORT) < 0 || scif_listen(lep, 4) < 0) {
		perror("scif_bind/scif_listen");
		return 1;
	}
	printf("host: listening on port %d\n", EXAMPLE_PORT);
	fflush(stdout);
	if (scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC) < 0) {
		perror("scif_accept");
		return 1;
	}
	printf("host: connection from node %u port %u\n", peer.node, peer.port);
	/* A blocking receive of a fixed-size message: the stream has no message boundaries. */
	n = scif_recv(ep, buf, 32, SCIF_RECV_BLOCK);
	if (n < 0) {
		perror("scif_recv");
		return 1;
	}
	printf("host: received \"%s\"\n", buf);
	if (scif_send(ep, reply, sizeof(reply), SCIF_SEND_BLOCK) != (int)sizeof(reply)) {
		perror("scif_send");
		return 1;
	}
	/* Wait for the card to hang up before closing, so the reply is read. */
	n = scif_recv(ep, buf, 1, SCIF_RECV_BLOCK);
	scif_close(ep);
	scif_close(lep);
	return 0;
}
