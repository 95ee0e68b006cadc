/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rb.h - the queue-pair region of a connected endpoint and the byte ring that carries
 * scif_send()/scif_recv() data. Each side only writes into the peer's region and only reads
 * its own ("no reads across the bus", ARCHITECTURE.md principle 2).
 */
#ifndef SCIF_RB_H
#define SCIF_RB_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "bulk.h"

#define SCIF_QP_MAGIC 0x3050515f46494353ULL /* "SCIF_QP0" little-endian */
#define SCIF_QP_VERSION 5
#define SCIF_QP_HDR_SIZE 4096u
#define SCIF_RING_MIN (4u << 10)
#define SCIF_RING_MAX (64u << 20)
#define SCIF_RING_DEFAULT (256u << 10)
/* Bytes copied between index updates (pipelining granularity of a long copy). */
#define SCIF_RB_CHUNK (16u << 10)
#define SCIF_RB_CHUNK_LONG (64u << 10)
#define SCIF_RB_CHUNK_LONG_FROM (128u << 10)
/* The stream's last bytes, copied next to the write index for short messages. */
#define SCIF_RB_SHORT 32u

/* Flags of the receiver arm word (peer_rx_arm below; msg.c); the rest counts doorbells. */
#define SCIF_DISARMED (1ULL << 63)    /* spinning in scif_recv(): no doorbell needed */
#define SCIF_RX_SLEEPING (1ULL << 62) /* asleep in scif_recv(): ring without a grace */

/**
 * struct scif_rb_short - the producer's copy of the stream's last SCIF_RB_SHORT bytes, on
 * the line of its write index, so a consumer that has read up to within SCIF_RB_SHORT bytes
 * of the write index copies a short message from the line it has just pulled in, instead of
 * missing on a second line of the ring. The ring holds the same bytes; this is only a
 * shortcut, taken when it is consistent and never trusted beyond that.
 *
 * @end:  the stream index just past @data's last byte, or SCIF_RB_SHORT_NONE while the
 *        producer rewrites @data. A seqlock: the producer stores NONE, a release fence,
 *        @data, then @end with release (before the write index); the consumer loads @end
 *        (acquire), @data, an acquire fence, and @end again, and uses @data only if both
 *        loads of @end equal the write index it saw.
 * @data: the bytes [@end - SCIF_RB_SHORT, @end) of the stream (relaxed 8-byte words).
 */
struct scif_rb_short {
	uint64_t end;
	uint64_t data[SCIF_RB_SHORT / 8];
};
#define SCIF_RB_SHORT_NONE UINT64_MAX


/**
 * struct scif_qp_region - the region one endpoint owns (O) and shares with its peer (P).
 *
 * O allocates it, fills the identity line and hands it to P during the connection handshake;
 * the fabric seals its size. After that, O only *reads* it and P only *writes* the fields
 * marked "P writes" (O never writes them; P never reads anything here). What P writes as a
 * sender shares one 64-byte line, what it writes as a receiver another, so each message costs
 * the other side as few line transfers as possible, and O and P never write the same line.
 *
 * @magic:       identity, written by O before sharing, then constant.
 * @version:     layout version (SCIF_QP_VERSION).
 * @ring_size:   size of @data, a power of two in [SCIF_RING_MIN, SCIF_RING_MAX].
 * @hdr_size:    offset of @data from the start of the region (SCIF_QP_HDR_SIZE).
 * @owner_pid:   O's process id (diagnostics and single-copy transfers).
 * @in_widx:     P writes: bytes P has produced into @data in total (free-running).
 *               Published with a release store after the bytes; O reads it with acquire.
 * @in_db:       P writes: doorbells P has rung toward O (free-running count), so O knows
 *               whether its notification descriptor may hold unread bytes.
 * @out_ridx:    P writes: bytes P has consumed of O's outbound ring (that ring lives in P's
 *               region). Release after P's copy-out; O reads it with acquire before reuse.
 * @peer_rx_arm: P writes: P's receiver arm word: the doorbells P has accounted for, with
 *               SCIF_DISARMED set while P spins in scif_recv and needs no doorbell, or
 *               SCIF_RX_SLEEPING while P sleeps in scif_recv and wants one at once (msg.c).
 *               O reads it after publishing new bytes to decide whether to ring P.
 * @peer_tx_wait: P writes: sequence of P's sender waiting for room in O's inbound ring;
 *               O reads it after freeing room to decide whether to wake P.
 * @in_short:    P writes: the last bytes P produced into @data, beside @in_widx (struct
 *               scif_rb_short); O reads them instead of @data for a short message.
 * @bulk_offer:  P writes: P's single-copy offers to O and P's share of O's claims (bulk.c).
 * @bulk_claim:  P writes: P's claims on O's offers and how far P has consumed them (bulk.c).
 * @bulk_wait:   P writes: how much P's waiting scif_recv() wants (non-blocking offers, bulk.c).
 * @data:        O's inbound ring; P copies bytes in, O copies them out.
 */
struct scif_qp_region {
	/* line 0: identity (O, before sharing) */
	uint64_t magic;
	uint32_t version;
	uint32_t ring_size;
	uint32_t hdr_size;
	uint32_t owner_pid;
	uint8_t pad0[40];
	/* line 1: P as a sender writes all of these, so O's receiver misses on one line */
	uint64_t in_widx;
	uint64_t in_db;
	uint64_t peer_tx_wait;
	struct scif_rb_short in_short;
	/* line 2: P as a receiver writes both, so O's sender misses on one line */
	uint64_t out_ridx;
	uint64_t peer_rx_arm;
	uint8_t pad2[48];
	/* lines 3 and 4: single-copy transfers of large messages (struct comments in bulk.h) */
	struct scif_bulk_offer bulk_offer;
	struct scif_bulk_claim bulk_claim;
	/* line 5: P's receiver waits (for O's non-blocking sender; bulk.h) */
	struct scif_bulk_wait bulk_wait;
	uint8_t reserved[SCIF_QP_HDR_SIZE - 6 * 64];
	uint8_t data[];
};

static_assert(offsetof(struct scif_qp_region, in_widx) == 64, "qp line 1");
static_assert(offsetof(struct scif_qp_region, peer_tx_wait) == 80, "qp line 1");
static_assert(offsetof(struct scif_qp_region, in_short) + sizeof(struct scif_rb_short) == 128,
	      "qp line 1");
static_assert(offsetof(struct scif_qp_region, out_ridx) == 128, "qp line 2");
static_assert(offsetof(struct scif_qp_region, peer_rx_arm) == 136, "qp line 2");
static_assert(offsetof(struct scif_qp_region, bulk_offer) == 192, "qp line 3");
static_assert(offsetof(struct scif_qp_region, bulk_claim) == 256, "qp line 4");
static_assert(offsetof(struct scif_qp_region, bulk_wait) == 320, "qp line 5");
static_assert(offsetof(struct scif_qp_region, data) == SCIF_QP_HDR_SIZE, "qp data offset");

/**
 * struct scif_rb - one direction of a connection as one side sees it.
 *
 * For the sending side: @data and @remote_idx point into the *peer's* region (in_widx),
 * @local_idx into our own (out_ridx). For the receiving side: @data and @local_idx point into
 * our own region (in_widx), @remote_idx into the peer's (out_ridx). @shrt is the short copy
 * beside the write index (the peer's in_short when sending, ours when receiving), or NULL
 * (always NULL where @flush is set: nodeqp.c conn_import).
 * @idx is our own free-running index (widx when sending, ridx when receiving); @cache the
 * last value of the other side's index we read; @flush, on a fabric whose imported region is
 * a shadow of the peer's memory (fabric.h region_flush), carries what we write into the
 * peer's region (@flush_r, at @flush_base) there, else NULL, and @idx_len says how much
 * of @remote_idx's line is ours to carry with the index; @tail (sending) the stream's last
 * SCIF_RB_SHORT bytes, kept here because the producer never reads the peer's region. The
 * state lives in fork-shared memory and is only written under the direction's lock, @idx
 * with single stores: scif_poll and a quiet non-blocking scif_recv read it without (msg.c).
 */
struct scif_region;

struct scif_rb {
	uint8_t *data;
	uint64_t *remote_idx;
	const uint64_t *local_idx;
	struct scif_rb_short *shrt;
	uint32_t size;
	uint32_t mask;
	int (*flush)(const struct scif_region *r, size_t off, size_t len, unsigned int flags);
	const struct scif_region *flush_r;
	const uint8_t *flush_base; /* where @flush_r is mapped */
	uint32_t idx_len;	   /* bytes at @remote_idx that carry our index (rb_flush_idx) */
};

/*
 * Carry [@p, @p + @len) of the peer's region there (shadow fabrics only; rb.c, msg.c).
 * @flags as for the fabric's region_flush (SCIF_FLUSH_MORE: the producer's index or a ring
 * follows at once, so the fabric may send them together).
 */
void scif__rb_flush(const struct scif_rb *rb, const void *p, size_t len, unsigned int flags);
/*
 * Carry our index to the peer's region: @idx_len bytes at @remote_idx, which for a producer
 * include the doorbell count beside it (in_widx, in_db), so that the index and the doorbell
 * that follows it are one range. Only the words that changed travel, not their lines.
 */
void scif__rb_flush_idx(const struct scif_rb *rb, unsigned int flags);

struct scif_rb_state {
	uint64_t idx;
	uint64_t cache;
	uint64_t pub; /* consumer, shadow fabrics: @idx when it last went without being held */
	uint8_t tail[SCIF_RB_SHORT];
};

/* Result of a copy: bytes moved, or -EPROTO if the peer published an impossible index. */
long scif__rb_write(const struct scif_rb *rb, struct scif_rb_state *st, const void *buf,
		    size_t len);
long scif__rb_read(const struct scif_rb *rb, struct scif_rb_state *st, void *buf, size_t len);
/* Bytes readable now (refreshing the cache), or -EPROTO. */
long scif__rb_avail(const struct scif_rb *rb, struct scif_rb_state *st);
/* Bytes of room now (refreshing the cache), or -EPROTO. */
long scif__rb_space(const struct scif_rb *rb, struct scif_rb_state *st);

#endif /* SCIF_RB_H */
