// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * card.c - the card half of the example pair: find the host, connect to its port, send a
 * greeting and print the answer. Run it with `SCIF_NODE=1 ./card` beside the host.
 */
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXAMPLE_PORT 2050

int main(void)
{
	struct scif_portID host = { .node = 0, .port = EXAMPLE_PORT };
	uint16_t nodes[16], self;
	char msg[32] = "hello host, this is a card";
	char buf[64];
	scif_epd_t ep;
	int n, port, tries;

	n = scif_get_nodeIDs(nodes, 16, &self);
	if (n < 0) {
		perror("scif_get_nodeIDs");
		return 1;
	}
	printf("card: I am node %u, %d node(s) online\n", self, n);
	ep = scif_open();
	if (ep == SCIF_OPEN_FAILED) {
		perror("scif_open");
		return 1;
	}
	/* The host may not be listening yet: retry refused connects for a few seconds. */
	for (tries = 0; (port = scif_connect(ep, &host)) < 0 && errno == ECONNREFUSED && tries < 50;
	     tries++)
		usleep(100000);
	if (port < 0) {
		perror("scif_connect");
		return 1;
	}
	printf("card: connected from local port %d\n", port);
	if (scif_send(ep, msg, sizeof(msg), SCIF_SEND_BLOCK) != (int)sizeof(msg)) {
		perror("scif_send");
		return 1;
	}
	n = scif_recv(ep, buf, 29, SCIF_RECV_BLOCK);
	if (n < 0) {
		perror("scif_recv");
		return 1;
	}
	printf("card: received \"%s\"\n", buf);
	scif_close(ep);
	return 0;
}
