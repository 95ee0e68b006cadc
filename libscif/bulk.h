/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bulk.h - single-copy transfers of large messages (bulk.c).
 *
 * A blocking scif_send() of at least SCIF_CMA_MIN bytes does not push its bytes through the
 * ring. It *offers* them: it publishes where they are in its own address space, and the
 * receiver copies them straight into its buffer with one kernel-assisted copy
 * (process_vm_readv), while the sender, which would otherwise only wait, copies part of
 * the same buffer from the other end (process_vm_writev). Every byte is copied once, by
 * one of two cores, instead of twice through the ring.
 *
 * The two lines below live in the queue-pair region (rb.h); as everywhere there, each is
 * written only by the region owner's *peer* P and read only by the owner O.
 */
#ifndef SCIF_BULK_H
#define SCIF_BULK_H

#include <stddef.h>
#include <stdint.h>

/* Largest single offer; longer sends make several (scif_send lengths are below 2 GiB). */
#define SCIF_BULK_MAX (1u << 30)
/* flags in the low word of scif_bulk_claim.done, above the byte count */
#define SCIF_BULK_DECLINE (1ull << 31) /* the receiver takes no more of the offer */
#define SCIF_BULK_NEVER (1ull << 30)   /* ... and will not take offers on this connection */
#define SCIF_BULK_COUNT ((1ull << 30) - 1)

/**
 * struct scif_bulk_offer - P's offer of bytes to O, and P's part in O's claims.
 * @seq:   offer sequence, stored with release after @pos, @addr and @len.
 * @pos:   stream position of the offer's first byte (P's ring index when it offered; all
 *         ring bytes before it come first).
 * @addr:  where the bytes are in P's address space.
 * @len:   how many (1..SCIF_BULK_MAX).
 * @back:  (claim tag << 32) | lowest claim offset P has taken ("copy from the back").
 *         Dekker pair [B2] with the receiver's @front ([B1]).
 * @stop:  (claim tag << 32) | b: P is done with that claim and copied [b, claim end).
 *         Release after the copies; O acquires it before returning the buffer.
 */
struct scif_bulk_offer {
	uint64_t seq;
	uint64_t pos;
	uint64_t addr;
	uint64_t len;
	uint64_t back;
	uint64_t stop;
	uint8_t pad[16];
};

/**
 * struct scif_bulk_claim - P's claim on one of O's offers, and how much P has consumed.
 * @seq:   claim tag (sequence), stored with release after the other claim fields.
 * @oseq:  the offer the claim belongs to.
 * @off:   offset of the claimed bytes in the offer.
 * @len:   how many bytes.
 * @dst:   where they go in P's address space.
 * @front: (claim tag << 32) | end of what P copies itself ("copy from the front").
 * @done:  (offer sequence << 32) | flags | bytes of the offer P has consumed; release
 *         after P's copies, O acquires it before returning from scif_send().
 */
struct scif_bulk_claim {
	uint64_t seq;
	uint64_t oseq;
	uint64_t off;
	uint64_t len;
	uint64_t dst;
	uint64_t front;
	uint64_t done;
	uint8_t pad[8];
};

_Static_assert(sizeof(struct scif_bulk_offer) == 64, "one line");
_Static_assert(sizeof(struct scif_bulk_claim) == 64, "one line");

struct scif_endpt;

/* Messages this long or longer go single-copy (SCIF_CMA_MIN; 0 turns it off). */
extern size_t scif__bulk_min;
/*
 * Blocking sends from this long (SCIF_CMA_TRY; 0 turns it off) up to scif__bulk_min go
 * single-copy or through the ring, whichever has cost the sender less on the connection.
 */
extern size_t scif__bulk_try;

void scif__bulk_init(void);
/* Whether scif_send() on @ep may offer (the peer can be reached, we are its process). */
int scif__bulk_tx_ok(struct scif_endpt *ep);
/*
 * Offer @len bytes (<= SCIF_BULK_MAX) and wait until the receiver has them. Returns the
 * bytes the receiver took: @len, or fewer when it declined the rest (send those through
 * the ring), 0 if no offer was made; -errno (-EPROTO for a misbehaving peer) if none.
 */
long scif__bulk_send(struct scif_endpt *ep, const uint8_t *src, size_t len);
/* An offer waits at the head of our inbound stream. */
int scif__bulk_pending(const struct scif_endpt *ep);
/*
 * Take up to @len bytes of the pending offer into @dst; @block: scif_recv() blocks, so the
 * sender may be asked to help. Returns bytes taken (0: none pending, ring bytes come first,
 * or the offer was declined), or -errno.
 */
long scif__bulk_recv(struct scif_endpt *ep, uint8_t *dst, size_t len, int block);

#endif /* SCIF_BULK_H */
