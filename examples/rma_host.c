// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rma_host.c - the host half of the RMA example: register a window, let the card write into
 * it and signal completion with a fence, then map the card's window and answer through it.
 * Run `SCIF_NODE=0 ./rma_host` beside `SCIF_NODE=1 ./rma_card`.
 */
#include <scif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXAMPLE_PORT 2051
#define WIN_SIZE (1 << 20)

int main(void)
{
	struct scif_portID peer;
	scif_epd_t lep, ep;
	volatile uint64_t *flag;
	uint8_t *win;
	off_t my_off, card_off;
	char *card_view;

	lep = scif_open();
	if (lep < 0 || scif_bind(lep, EXAMPLE_PORT) < 0 || scif_listen(lep, 1) < 0 ||
	    scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC) < 0) {
		perror("listen/accept");
		return 1;
	}
	/* A window: page-aligned memory in this endpoint's registered address space. */
	if (posix_memalign((void **)&win, 4096, WIN_SIZE))
		return 1;
	memset(win, 0, WIN_SIZE);
	my_off = scif_register(ep, win, WIN_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (my_off == SCIF_REGISTER_FAILED) {
		perror("scif_register");
		return 1;
	}
	/* Tell the card where it is; offsets are how the peer names our memory. */
	scif_send(ep, &my_off, sizeof(my_off), SCIF_SEND_BLOCK);
	scif_recv(ep, &card_off, sizeof(card_off), SCIF_RECV_BLOCK);

	/* The card's fence signal stores 1 in our first word only after its data landed. */
	flag = (volatile uint64_t *)win;
	while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != 1)
		;
	printf("host: the card wrote \"%s\" into my window\n", (char *)win + 64);

	/* Map the card's window: its memory, seen and written directly. */
	card_view = scif_mmap(NULL, 4096, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ep, card_off);
	if (card_view == SCIF_MMAP_FAILED) {
		perror("scif_mmap");
		return 1;
	}
	printf("host: the card's window says \"%s\"\n", card_view);
	strcpy(card_view + 512, "host was here (stored through scif_mmap)");
	scif_send(ep, "d", 1, SCIF_SEND_BLOCK);

	scif_recv(ep, &card_off, 1, SCIF_RECV_BLOCK); /* the card hangs up when done */
	scif_munmap(card_view, 4096);
	scif_close(ep);
	scif_close(lep);
	free(win);
	return 0;
}
