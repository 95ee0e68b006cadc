// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rma_card.c - the card half of the RMA example: write into the host's window with an
 * asynchronous scif_writeto, fence it with a remote signal, and expose a window of its own
 * that the host maps. Run `SCIF_NODE=1 ./rma_card` beside the host.
 */
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXAMPLE_PORT 2051

int main(void)
{
	struct scif_portID host = { .node = 0, .port = EXAMPLE_PORT };
	scif_epd_t ep = scif_open();
	off_t host_off, my_off;
	uint8_t *win;
	char done;
	int tries = 0;

	while (scif_connect(ep, &host) < 0 && errno == ECONNREFUSED && tries++ < 50)
		usleep(100000);
	if (posix_memalign((void **)&win, 4096, 8192))
		return 1;
	memset(win, 0, 8192);
	strcpy((char *)win, "hello from the card's window");
	strcpy((char *)win + 4096, "card data moved by RMA");
	my_off = scif_register(ep, win, 8192, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (my_off == SCIF_REGISTER_FAILED) {
		perror("scif_register");
		return 1;
	}
	scif_recv(ep, &host_off, sizeof(host_off), SCIF_RECV_BLOCK);
	scif_send(ep, &my_off, sizeof(my_off), SCIF_SEND_BLOCK);

	/* Queue the copy (no SCIF_RMA_SYNC: it runs on the DMA engine while we go on)... */
	if (scif_writeto(ep, my_off + 4096, 64, host_off + 64, 0) < 0) {
		perror("scif_writeto");
		return 1;
	}
	/* ...and have the value 1 stored at the host's offset 0 once it has completed. */
	if (scif_fence_signal(ep, 0, 0, host_off, 1, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE) < 0) {
		perror("scif_fence_signal");
		return 1;
	}
	scif_recv(ep, &done, 1, SCIF_RECV_BLOCK);
	printf("card: my window now says \"%s\"\n", (char *)win + 512);
	scif_close(ep);
	free(win);
	return 0;
}
