// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-errno.h - the protocol of the compat pair "errno" (c-errno-host.c, c-errno-card.c): the
 * window layout both sides register and the data patterns each side writes and expects.
 */
#ifndef C_ERRNO_H
#define C_ERRNO_H

#include <limits.h>

#include "compat.h"

/*
 * Each side registers one window of five 256 KiB regions and a page of signal words:
 * R0 the peer writes with scif_writeto(SYNC); R1 the peer writes with an asynchronous
 * scif_vwriteto; R2 and R3 hold the owner's data, read by the peer with scif_readfrom and
 * scif_vreadfrom; R4 is the owner's staging area for its own writeto/readfrom.
 */
#define REG_LEN (256 << 10)
#define R0 (0 * REG_LEN)
#define R1 (1 * REG_LEN)
#define R2 (2 * REG_LEN)
#define R3 (3 * REG_LEN)
#define R4 (4 * REG_LEN)
#define FL (5 * REG_LEN)
#define WIN_LEN (FL + COMPAT_PAGE)

/* Signal words in the FL page. */
#define SIG_SELF 0   /* the owner's own SCIF_SIGNAL_LOCAL */
#define SIG_PEER 8   /* the peer's SCIF_SIGNAL_REMOTE */
#define SIG_IPEER 16 /* the owner's SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL */
#define SIG_MMAP 24  /* stored by the peer through scif_mmap */

/* The card's window sits at a fixed offset (SCIF_MAP_FIXED); the host lets SCIF choose. */
#define CARD_FIXED_OFF ((off_t)1 << 32)

/* Data patterns (seeds): who writes what where. */
#define SEED_H_W0 0x1100 /* host -> card R0 */
#define SEED_H_W1 0x1101 /* host -> card R1 */
#define SEED_H_R2 0x1102 /* host's own R2 */
#define SEED_H_R3 0x1103 /* host's own R3 */
#define SEED_C_W0 0x2200
#define SEED_C_W1 0x2201
#define SEED_C_R2 0x2202
#define SEED_C_R3 0x2203
#define SEED_STREAM 0x3300 /* card -> host over the non-blocking endpoint */
#define SEED_HELLO 0x3301
#define SEED_MMAP_H 0x4400 /* host stores into the card's R2 page through scif_mmap */
#define SEED_MMAP_C 0x4401

#define STREAM_LEN 300000
#define HELLO_LEN 64

/* Receive len bytes on a non-blocking path: scif_poll, then scif_recv without RECV_BLOCK. */
static inline void nb_recv(scif_epd_t ep, uint8_t *buf, int len)
{
	struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN };
	int got = 0, r;

	while (got < len) {
		SCIF_TRY(20, r, scif_poll(&p, 1, COMPAT_WAIT_MS));
		if (r != 1 || !(p.revents & SCIF_POLLIN))
			fail(21, "scif_poll(POLLIN) returned %d, revents %#x", r, p.revents);
		SCIF_TRY(22, r, scif_recv(ep, buf + got, len - got, 0));
		got += r;
	}
}

/* Send len bytes without SEND_BLOCK, in calls of at most @piece bytes (the ring fills). */
static inline void nb_send(scif_epd_t ep, const uint8_t *buf, int len, int piece)
{
	struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLOUT };
	int sent = 0, r;

	while (sent < len) {
		SCIF_TRY(23, r, scif_poll(&p, 1, COMPAT_WAIT_MS));
		if (r != 1 || !(p.revents & SCIF_POLLOUT))
			fail(24, "scif_poll(POLLOUT) returned %d, revents %#x", r, p.revents);
		SCIF_TRY(25, r, scif_send(ep, (void *)(buf + sent),
					  len - sent < piece ? len - sent : piece, 0));
		sent += r;
	}
}

#endif /* C_ERRNO_H */
