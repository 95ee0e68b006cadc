/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bulk.h - single-copy transfers of large messages (bulk.c).
 *
 * A scif_send() of at least SCIF_CMA_MIN bytes does not push its bytes through the ring.
 * It *offers* them: it publishes where they are in its own address space, and the
 * receiver copies them straight into its buffer with one kernel-assisted copy
 * (process_vm_readv), while the sender, which would otherwise only wait, copies part of
 * the same buffer from the other end (process_vm_writev). Every byte is copied once, by
 * one of two cores, instead of twice through the ring. A non-blocking send offers only
 * to a receiver waiting in scif_recv() for at least as much, and withdraws the offer if
 * it is not taken within SCIF_CMA_WAIT_US (the take/revoke pair below).
 *
 * The lines below live in the queue-pair region (rb.h); as everywhere there, each is
 * written only by the region owner's *peer* P and read only by the owner O.
 */
#ifndef SCIF_BULK_H
#define SCIF_BULK_H

#include <stddef.h>
#include <stdint.h>

/* Largest single offer; longer sends make several (scif_send lengths are below 2 GiB). */
#define SCIF_BULK_MAX (1u << 28)
/* flags in the low word of scif_bulk_claim.done, above the byte count */
#define SCIF_BULK_DECLINE (1ull << 31) /* the receiver takes no more of the offer */
#define SCIF_BULK_NEVER (1ull << 30)   /* ... and will not take offers on this connection */
#define SCIF_BULK_NOW (1ull << 29)     /* ... (only) of this one: its buffer is too short */
#define SCIF_BULK_COUNT ((1ull << 29) - 1)
_Static_assert(SCIF_BULK_MAX <= SCIF_BULK_COUNT, "an offer's length fits the count");
/* scif_bulk_offer.mode */
#define SCIF_BULK_NB 1u /* a non-blocking send's offer: take it whole or not at all (take) */

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
 * @mode:  SCIF_BULK_NB or 0, written with @pos before @seq.
 * @revoke: the SCIF_BULK_NB offer P withdrew (its seq): it was not taken in time. Dekker
 *         pair [B3] "store revoke; mb; load take" with O's [B4] on scif_bulk_claim.take:
 *         at least one sees the other, so an offer is never both withdrawn and copied.
 */
struct scif_bulk_offer {
	uint64_t seq;
	uint64_t pos;
	uint64_t addr;
	uint64_t len;
	uint64_t back;
	uint64_t stop;
	uint64_t mode;
	uint64_t revoke;
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
 * @take:  the SCIF_BULK_NB offer P committed to copy (its seq), [B4] "store take; mb;
 *         load revoke" before P copies anything of it; O then waits for @done however long.
 */
struct scif_bulk_claim {
	uint64_t seq;
	uint64_t oseq;
	uint64_t off;
	uint64_t len;
	uint64_t dst;
	uint64_t front;
	uint64_t done;
	uint64_t take;
};

/**
 * struct scif_bulk_wait - P's receiver, as O's sender needs to know it for a non-blocking
 * offer, on a line of its own (P writes it only when a long scif_recv() goes to wait).
 * @want:  bytes P's blocking scif_recv() still wants while it waits, 0 when it is not
 *         waiting. A hint: O offers no more than this, and only withdraws what is not taken.
 */
struct scif_bulk_wait {
	uint64_t want;
	uint8_t pad[56];
};

_Static_assert(sizeof(struct scif_bulk_offer) == 64, "one line");
_Static_assert(sizeof(struct scif_bulk_claim) == 64, "one line");
_Static_assert(sizeof(struct scif_bulk_wait) == 64, "one line");

struct scif_endpt;

/* Blocking sends this long or longer go single-copy (SCIF_CMA_MIN; 0 turns it off). */
extern size_t scif__bulk_min;
/*
 * Non-blocking sends this long or longer (SCIF_CMA_TRY; 0 turns it off) go single-copy
 * when the receiver waits in scif_recv() for at least as much.
 */
extern size_t scif__bulk_try;
/*
 * A non-blocking offer not taken within this long is withdrawn (bytes go through the ring):
 * SCIF_CMA_WAIT_US, 100 us by default.
 */
extern uint64_t scif__bulk_nb_wait_ns;

void scif__bulk_init(void);
/* Whether scif_send() on @ep may offer (the peer can be reached, we are its process). */
int scif__bulk_tx_ok(struct scif_endpt *ep);
/*
 * Offer @len bytes (<= SCIF_BULK_MAX) and wait until the receiver has them. Returns the
 * bytes the receiver took: @len, or fewer when it declined the rest (send those through
 * the ring), 0 if no offer was made; -errno (-EPROTO for a misbehaving peer) if none.
 * @nb (a non-blocking send): offer only as much as a waiting receiver wants, and withdraw
 * it (0) unless the receiver commits to it within scif__bulk_nb_wait_ns.
 */
long scif__bulk_send(struct scif_endpt *ep, const uint8_t *src, size_t len, int nb);
/* An offer waits at the head of our inbound stream (a withdrawn one does not). */
int scif__bulk_pending(const struct scif_endpt *ep);
/* An offer came in that scif__bulk_recv has not finished (it may have been withdrawn). */
int scif__bulk_offered(const struct scif_endpt *ep);
/* Receiver: tell the peer's sender our scif_recv() waits for @want more bytes (0: no more). */
void scif__bulk_want(struct scif_endpt *ep, size_t want);
/*
 * Take up to @len bytes of the pending offer into @dst; @block: scif_recv() blocks, so the
 * sender may be asked to help. Returns bytes taken (0: none pending, ring bytes come first,
 * or the offer was declined), or -errno.
 */
long scif__bulk_recv(struct scif_endpt *ep, uint8_t *dst, size_t len, int block);

#endif /* SCIF_BULK_H */
