/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_conn.c
 * @brief A framed, non-blocking message stream over one connected SCIF endpoint.
 *
 * Frames are a struct sfi_hdr followed by hdr.len payload bytes, written back to back on the
 * endpoint's byte stream; a header with no id or size goes in a shorter form of 16 or 24
 * bytes (sfi.h SFI_WIRE_SHORT, SFI_WIRE_DATA), so that a small frame fits the short copy
 * libscif keeps beside its ring index. Nothing here blocks: scif_send and scif_recv are
 * called without their BLOCK flags and return what fits / what is there.
 *
 * Sending: frames are queued in FIFO order on c->txq; the head frame is pushed from its
 * (iov_idx, iov_off) position. A frame whose every byte was handed to SCIF moves to
 * c->tx_done, and its done() callback runs from the next sfi_conn_progress (never from
 * sfi_conn_send, so callers may keep using their request after queueing it). Frames of up
 * to SFI_CONN_BOUNCE bytes (header included) are copied into one contiguous buffer and go
 * out with a single scif_send, and the receiver takes each such frame with a single
 * scif_recv. Copying a few KiB costs far less than a frame arriving in two pieces: the
 * polling receiver re-arms between them, so the sender rings its doorbell, and the two
 * system calls of a doorbell cost more than the copy (a 4 KiB message took about twice as
 * long as with one scif_send). sfi_conn_send_now does the same for a small frame with no
 * struct sfi_tx at all, when nothing is queued before it (the RDM endpoint's eager sends):
 * a rest SCIF had no room for is copied to the spill buffer and queued as a frame of its
 * own, so nothing can overtake it.
 *
 * Receiving: bytes are read in chunks of up to SFI_CONN_STAGE into a staging buffer and
 * frames are parsed out of it, so a stream of small frames costs one scif_recv for many of
 * them. A header (it may arrive in pieces) is validated, then the owner's rx_hdr callback
 * chooses the destination iovec; payload bytes already staged are copied there, and the
 * rest of a large payload is received straight into it (user buffers: no intermediate
 * copy). rx_done runs when the payload is in.
 *
 * Mapped lane (sfi_lane.c): once the peer took our offer of a ring and sent its ON frame,
 * its bytes are read from the ring instead (sfi_conn_read); once we took its offer and our
 * ON frame is out, ours go into its ring (sfi_conn_write). Framing, parsing and the owner's
 * callbacks do not change. SFI_OP_CONN frames are the connection's own and never reach the
 * owner. sfi_conn_arm arms the lane before the owner's caller sleeps.
 *
 * Callbacks may call sfi_conn_send and sfi_conn_fini on the connection, but must not free it;
 * on_error is the last thing sfi_conn_progress does with the connection, so the owner may
 * release it there.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sfi.h"

/** Frames up to this size (header included) are sent with one scif_send from a copy. */
#define SFI_CONN_BOUNCE 8192
/** Largest count handed to one scif_send/scif_recv (their length is an int). */
#define SFI_CONN_CHUNK ((size_t)1 << 30)
/** Frames received per progress call: one busy connection cannot starve the others. */
#define SFI_CONN_RX_BUDGET 64
/** Staging buffer size: one scif_recv takes in up to this much (a whole bounced frame). */
#define SFI_CONN_STAGE SFI_CONN_BOUNCE
/** Payload pieces at least this long bypass the staging buffer (zero copy). */
#define SFI_CONN_DIRECT 1024

/** A failed SCIF call's errno as a negative FI_E* code. */
static int sfi_conn_errno(int e)
{
	switch (e) {
	case ECONNRESET:
	case EPIPE:
		return -FI_ECONNRESET;
	case ENOTCONN:
		return -FI_ENOTCONN;
	case EFAULT:
		return -FI_EFAULT;
	case ENOMEM:
	case ENOBUFS:
		return -FI_ENOMEM;
	case EBADF:
	case ENOTTY:
	case EINVAL:
		return -FI_EINVAL;
	default:
		return e > 0 ? -e : -FI_EIO;
	}
}

int sfi_conn_init(struct sfi_conn *c, scif_epd_t epd, const struct sfi_addr *peer,
		  const struct sfi_conn_ops *ops, void *owner)
{
	int fd, fl;

	memset(c, 0, sizeof(*c));
	c->epd = -1;
	sfi_list_init(&c->txq);
	sfi_list_init(&c->tx_done);
	sfi_list_init(&c->domain_entry);
	sfi_list_init(&c->owner_entry);
	if (epd < 0 || !ops || !ops->rx_hdr || !ops->rx_done || !ops->on_error)
		return -FI_EINVAL;
	c->rx_stage = malloc(SFI_CONN_STAGE + 2 * SFI_CONN_BOUNCE);
	if (!c->rx_stage)
		return -FI_ENOMEM;
	c->tx_bounce = c->rx_stage + SFI_CONN_STAGE;
	c->rx_view = c->rx_stage;
	c->tx_spill = c->tx_bounce + SFI_CONN_BOUNCE;

	/* scif_send/scif_recv with flags 0 never block anyway; O_NONBLOCK also covers
	 * anything done on the descriptor itself. */
	fd = scif_get_fd(epd);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		free(c->rx_stage);
		c->rx_stage = NULL;
		c->tx_bounce = c->tx_spill = NULL;
		return sfi_conn_errno(errno);
	}

	c->epd = epd;
	if (peer)
		c->peer = *peer;
	c->ops = ops;
	c->owner = owner;
	return 0;
}

/** Total bytes left to send in @p tx from its current position. */
static size_t sfi_conn_tx_left(const struct sfi_tx *tx)
{
	size_t i, n = 0;

	for (i = tx->iov_idx; i < tx->iov_count; i++)
		n += tx->iov[i].iov_len;
	return n - (tx->iov_idx < tx->iov_count ? tx->iov_off : 0);
}

/** Advance the send position of @p tx by @p n bytes. */
static void sfi_conn_tx_advance(struct sfi_tx *tx, size_t n)
{
	while (n && tx->iov_idx < tx->iov_count) {
		size_t room = tx->iov[tx->iov_idx].iov_len - tx->iov_off;

		if (n < room) {
			tx->iov_off += n;
			return;
		}
		n -= room;
		tx->iov_idx++;
		tx->iov_off = 0;
	}
	/* skip trailing empty entries so a finished frame has iov_idx == iov_count */
	while (tx->iov_idx < tx->iov_count && tx->iov[tx->iov_idx].iov_len == tx->iov_off) {
		tx->iov_idx++;
		tx->iov_off = 0;
	}
}

/** Hand bytes to the peer: into its ring once our direction is on the lane, else to SCIF.
 *  The count taken (0: no room now) or a negative FI_E* code. */
static ssize_t sfi_conn_write(struct sfi_conn *c, const void *buf, size_t len)
{
	int n;

	if (c->lane.tx_on)
		return sfi_lane_write(c, buf, len, NULL, 0);
	if (len > SFI_CONN_CHUNK)
		len = SFI_CONN_CHUNK;
	do {
		n = scif_send(c->epd, (void *)buf, (int)len, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? sfi_conn_errno(errno) : n;
}

/** Take bytes the peer sent: from our ring once its direction is on the lane, else from
 *  SCIF. The count (0: nothing now) or a negative FI_E* code. */
static ssize_t sfi_conn_read(struct sfi_conn *c, void *buf, size_t len)
{
	int n;

	if (c->lane.rx_on)
		return sfi_lane_read(c, buf, len);
	if (len > SFI_CONN_CHUNK)
		len = SFI_CONN_CHUNK;
	do {
		n = scif_recv(c->epd, buf, (int)len, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? sfi_conn_errno(errno) : n;
}

/**
 * Push one frame from its current position.
 * @return 1 when the whole frame was handed over, 0 when there is no room for more, or a
 *         negative FI_E* code.
 */
static int sfi_conn_push_frame(struct sfi_conn *c, struct sfi_tx *tx)
{
	if (tx->iov_idx == 0 && tx->iov_off == 0) {
		size_t total = sfi_conn_tx_left(tx);

		if (total <= SFI_CONN_BOUNCE) {
			uint8_t *buf = c->tx_bounce;
			size_t i, pos = 0;
			ssize_t n;

			for (i = 0; i < tx->iov_count; i++) {
				memcpy(buf + pos, tx->iov[i].iov_base, tx->iov[i].iov_len);
				pos += tx->iov[i].iov_len;
			}
			n = sfi_conn_write(c, buf, total);
			if (n < 0)
				return (int)n;
			sfi_conn_tx_advance(tx, (size_t)n);
			if ((size_t)n == total)
				return 1;
			if (n == 0)
				return 0;
			/* partial: go on from the new position below */
		}
	}

	while (tx->iov_idx < tx->iov_count) {
		const struct iovec *v = &tx->iov[tx->iov_idx];
		size_t chunk = v->iov_len - tx->iov_off;
		ssize_t n;

		if (chunk == 0) {
			sfi_conn_tx_advance(tx, 0);
			continue;
		}
		n = sfi_conn_write(c, (char *)v->iov_base + tx->iov_off, chunk);
		if (n < 0)
			return (int)n;
		sfi_conn_tx_advance(tx, (size_t)n);
		if ((size_t)n < chunk)
			return 0;
	}
	return 1;
}

/** Push queued frames in order until SCIF is full; 0 or a negative FI_E* code. */
static int sfi_conn_push(struct sfi_conn *c)
{
	while (!sfi_list_empty(&c->txq)) {
		struct sfi_tx *tx = sfi_list_entry(c->txq.next, struct sfi_tx, entry);
		int ret = sfi_conn_push_frame(c, tx);

		if (ret <= 0) {
			c->want_pollout = true;
			return ret;
		}
		sfi_list_remove(&tx->entry);
		sfi_list_insert_tail(&c->tx_done, &tx->entry);
		if (tx == &c->lane.on_tx)
			sfi_lane_tx_switch(c); /* the stream's last frame from us */
	}
	c->want_pollout = false;
	return 0;
}

/** Encode @p hdr for a payload of @p len bytes into @p out; returns the header's length on
 *  the wire (the short forms when it has no id or size). */
static size_t sfi_conn_frame_hdr(struct sfi_hdr *out, const struct sfi_hdr *hdr, size_t len)
{
	return sfi_hdr_store(out, hdr, sfi_hdr_form(hdr), (uint32_t)len);
}

/** The spilled rest of a frame sent by sfi_conn_send_now is all SCIF's (or lost). */
static void sfi_conn_spill_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	(void)tx;
	(void)err;
	c->spill_busy = false;
}

_Static_assert(SFI_LANE_SMALL - SFI_HDR_SHORT <= SFI_COPY_SMALL,
	       "a small record's payload is a small copy");

int sfi_conn_send_now(struct sfi_conn *c, const struct sfi_hdr *hdr, const void *buf,
		      size_t len)
{
	struct sfi_hdr h;
	size_t hlen, total;
	ssize_t n;

	if (c->epd < 0 || c->err || !sfi_list_empty(&c->txq) || c->spill_busy)
		return 0;
	if (c->lane.tx_on) {
		/* A small frame is written where the peer reads it, header field by field. */
		uint8_t form = sfi_hdr_form(hdr);
		uint8_t *p = sfi_lane_reserve(c, sfi_hdr_form_len(form) + len);

		if (p) {
			hlen = sfi_hdr_store(p, hdr, form, (uint32_t)len);
			sfi_copy_small(p + hlen, buf, len); /* len <= SFI_LANE_SMALL - 16 */
			sfi_lane_commit(c, hlen + len);
			return 1;
		}
	}
	hlen = sfi_conn_frame_hdr(&h, hdr, len);
	total = hlen + len;
	if (total > SFI_CONN_BOUNCE)
		return 0;
	if (c->lane.tx_on) {
		/* Header and payload straight into the peer's ring. */
		n = sfi_lane_write(c, &h, hlen, buf, len);
		if (n <= 0)
			return 0;
		if ((size_t)n < total) {
			memcpy(c->tx_bounce, &h, hlen);
			if (len)
				memcpy(c->tx_bounce + hlen, buf, len);
		}
	} else {
		memcpy(c->tx_bounce, &h, hlen);
		if (len)
			memcpy(c->tx_bounce + hlen, buf, len);
		n = sfi_conn_write(c, c->tx_bounce, total);
		if (n <= 0)
			return 0; /* nothing went: sfi_conn_send queues it (and meets the error again) */
	}
	if ((size_t)n < total) {
		/* The rest goes before any later frame, from a buffer of our own. */
		struct sfi_tx *tx = &c->spill;

		memcpy(c->tx_spill, c->tx_bounce + n, total - (size_t)n);
		tx->iov[0].iov_base = c->tx_spill;
		tx->iov[0].iov_len = total - (size_t)n;
		tx->iov_count = 1;
		tx->iov_idx = tx->iov_off = 0;
		tx->done = sfi_conn_spill_done;
		c->spill_busy = true;
		sfi_list_insert_tail(&c->txq, &tx->entry);
		c->want_pollout = true;
	}
	return 1;
}

int sfi_conn_send(struct sfi_conn *c, struct sfi_tx *tx, const struct sfi_hdr *hdr,
		  const struct iovec *iov, size_t count)
{
	size_t i, len = 0;
	bool idle;

	if (c->err)
		return c->err;
	if (c->epd < 0)
		return -FI_ENOTCONN;
	if (count > SFI_MAX_IOV || (count && !iov))
		return -FI_EINVAL;
	for (i = 0; i < count; i++) {
		if (iov[i].iov_len > SFI_MAX_MSG - len)
			return -FI_EMSGSIZE;
		len += iov[i].iov_len;
	}

	tx->iov[0].iov_base = &tx->hdr;
	tx->iov[0].iov_len = sfi_conn_frame_hdr(&tx->hdr, hdr, len);
	for (i = 0; i < count; i++)
		tx->iov[i + 1] = iov[i];
	tx->iov_count = count + 1;
	tx->iov_idx = 0;
	tx->iov_off = 0;

	idle = sfi_list_empty(&c->txq);
	sfi_list_insert_tail(&c->txq, &tx->entry);
	if (idle) {
		/* An error here is sticky in SCIF: progress finds it again and fails the
		 * connection (after taking in what the peer sent before it went away). */
		if (sfi_conn_push(c) < 0)
			c->want_pollout = true;
	}
	return 0;
}

/** Run done(0) for frames that are entirely in SCIF's hands, oldest first. */
static void sfi_conn_complete_tx(struct sfi_conn *c)
{
	while (!sfi_list_empty(&c->tx_done)) {
		struct sfi_tx *tx = sfi_list_entry(c->tx_done.next, struct sfi_tx, entry);

		sfi_list_remove(&tx->entry);
		tx->done(c, tx, 0);
	}
}

/** Call done(err) on every frame still queued (done(0) on those already sent). */
static void sfi_conn_flush_tx(struct sfi_conn *c, int err)
{
	sfi_conn_complete_tx(c);
	while (!sfi_list_empty(&c->txq)) {
		struct sfi_tx *tx = sfi_list_entry(c->txq.next, struct sfi_tx, entry);

		sfi_list_remove(&tx->entry);
		tx->done(c, tx, err);
	}
	c->want_pollout = false;
}

/** Forget the frame being received. */
static void sfi_conn_rx_reset(struct sfi_conn *c)
{
	c->rx_hdr_got = 0;
	c->rx_iov_count = 0;
	c->rx_iov_idx = 0;
	c->rx_iov_off = 0;
	c->rx_discard = 0;
	c->rx_cookie = NULL;
	c->rx_in_payload = false;
	c->rx_conn_frame = false;
}

/** What the shorter header forms leave out is 0. */
static inline void sfi_hdr_unshorten(struct sfi_hdr *h)
{
	if (h->version == SFI_WIRE_SHORT)
		h->data = 0;
	if (h->version != SFI_WIRE_VERSION)
		h->id = h->size = 0;
}

/**
 * A header is complete: validate it and ask the owner where its payload goes.
 * @return 0, or a negative FI_E* code that fails the connection.
 */
static int sfi_conn_rx_start(struct sfi_conn *c)
{
	const struct sfi_hdr *h = &c->rx_hdr;
	size_t i, total = 0;
	int n;

	if ((h->version != SFI_WIRE_VERSION && h->version != SFI_WIRE_DATA &&
	     h->version != SFI_WIRE_SHORT) || h->op >= SFI_OP_MAX || h->len > SFI_MAX_MSG) {
		SFI_WARN(FI_LOG_EP_DATA, "bad frame from %u:%u (version %u op %u len %u)\n",
			 c->peer.node, c->peer.port, h->version, h->op, h->len);
		return -FI_EIO;
	}
	sfi_hdr_unshorten(&c->rx_hdr);
	c->rx_cookie = NULL;
	c->rx_discard = 0;
	if (h->op == SFI_OP_CONN) {
		/* The connection's own (sfi_lane.c): a header, nothing for the owner. */
		n = sfi_lane_ctl(c, h);
		if (n)
			return n;
		c->rx_conn_frame = true;
		c->rx_iov_count = 0;
		c->rx_in_payload = true;
		return 0;
	}
	n = c->ops->rx_hdr(c, h, c->rx_iov, &c->rx_cookie);
	if (c->err || c->epd < 0)
		return c->err ? c->err : -FI_ECONNRESET;
	if (n < 0) {
		c->rx_discard = 0;
		return n; /* -FI_EAGAIN: the header is offered again next time */
	}
	if (n > SFI_MAX_IOV || c->rx_discard > h->len)
		return -FI_EINVAL;
	for (i = 0; i < (size_t)n; i++) {
		if (c->rx_iov[i].iov_len > SFI_MAX_MSG - total)
			return -FI_EINVAL;
		total += c->rx_iov[i].iov_len;
	}
	if (n > 0 && total + c->rx_discard != h->len) {
		SFI_WARN(FI_LOG_EP_DATA, "receive iovec holds %zu+%zu bytes for a %u-byte frame\n",
			 total, c->rx_discard, h->len);
		return -FI_EINVAL;
	}
	c->rx_iov_count = (size_t)n;
	c->rx_iov_idx = 0;
	c->rx_iov_off = 0;
	if (n == 0)
		c->rx_discard = h->len;
	c->rx_in_payload = true;
	return 0;
}

/** Staged bytes not parsed yet. */
static inline size_t sfi_conn_staged(const struct sfi_conn *c)
{
	return c->rx_stage_len - c->rx_stage_off;
}

/**
 * Refill the (empty) staging buffer with what SCIF has now.
 * @return the byte count (0: nothing there), or a negative FI_E* code.
 */
static int sfi_conn_stage_fill(struct sfi_conn *c)
{
	ssize_t n;

	c->rx_stage_off = c->rx_stage_len = 0;
	if (c->lane.rx_on) {
		/* Parsed where it lies: every byte is still copied out exactly once. */
		n = sfi_lane_view(c, &c->rx_view);
		if (n <= 0)
			return (int)n;
		c->rx_stage_len = (size_t)n;
		c->rx_drained = true; /* a record at a time */
		return (int)n;
	}
	c->rx_view = c->rx_stage;
	n = sfi_conn_read(c, c->rx_stage, SFI_CONN_STAGE);
	if (n < 0)
		return (int)n;
	c->rx_stage_len = (size_t)n;
	c->rx_drained = n < (ssize_t)SFI_CONN_STAGE;
	return (int)n;
}

/** Take up to @p len staged bytes into @p dst (NULL: drop them); returns the count. */
static size_t sfi_conn_stage_take(struct sfi_conn *c, void *dst, size_t len)
{
	size_t n = sfi_conn_staged(c);

	if (n > len)
		n = len;
	if (dst)
		memcpy(dst, c->rx_view + c->rx_stage_off, n);
	c->rx_stage_off += n;
	if (c->rx_view != c->rx_stage && c->rx_stage_off == c->rx_stage_len) {
		sfi_lane_release(c); /* a record viewed in the ring, all taken */
		c->rx_view = c->rx_stage;
	}
	return n;
}

/**
 * Receive payload bytes of the current frame: staged bytes first, then large pieces straight
 * from SCIF into the destination, small ones through the staging buffer.
 * @return 1 when the payload is complete, 0 when no more bytes are available now, or a
 *         negative FI_E* code.
 */
static int sfi_conn_rx_payload(struct sfi_conn *c)
{
	while (c->rx_iov_idx < c->rx_iov_count) {
		const struct iovec *v = &c->rx_iov[c->rx_iov_idx];
		size_t chunk = v->iov_len - c->rx_iov_off;
		char *dst = (char *)v->iov_base + c->rx_iov_off;
		ssize_t n;

		if (chunk == 0) {
			c->rx_iov_idx++;
			c->rx_iov_off = 0;
			continue;
		}
		if (sfi_conn_staged(c)) {
			c->rx_iov_off += sfi_conn_stage_take(c, dst, chunk);
			continue;
		}
		if (chunk < SFI_CONN_DIRECT) {
			n = sfi_conn_stage_fill(c);
			if (n <= 0)
				return n;
			continue;
		}
		n = sfi_conn_read(c, dst, chunk);
		if (n <= 0)
			return (int)n;
		c->rx_iov_off += (size_t)n;
	}
	while (c->rx_discard) {
		int n;

		if (sfi_conn_staged(c)) {
			c->rx_discard -= sfi_conn_stage_take(c, NULL, c->rx_discard);
			continue;
		}
		n = sfi_conn_stage_fill(c);
		if (n <= 0)
			return n;
	}
	return 1;
}

/**
 * Staged bytes to parse: those there, or a refill. The count (0: none now), or a negative
 * FI_E* code. After a refill that took all SCIF had, asking again at once would most likely
 * find the ring empty, and an empty scif_recv costs as much as a full one: the frames taken
 * so far complete now, and the next call looks again.
 */
static int sfi_conn_stage_more(struct sfi_conn *c)
{
	size_t n = sfi_conn_staged(c);

	if (n)
		return n > INT_MAX ? INT_MAX : (int)n;
	if (c->rx_drained)
		return 0;
	return sfi_conn_stage_fill(c);
}

/**
 * Offer the owner's rx_frame a frame that lies whole in the viewed lane record: the header
 * is copied out and checked as sfi_conn_rx_start does, the payload is left where it is for
 * the owner to copy. 1 when the owner took it (the bytes are consumed), 0 when it is for the
 * usual path (nothing consumed), or a negative FI_E* code.
 */
static int sfi_conn_rx_whole(struct sfi_conn *c)
{
	size_t n = sfi_conn_staged(c), need;
	const uint8_t *v = c->rx_view + c->rx_stage_off;
	struct sfi_hdr h;
	int ret;

	if (c->rx_view == c->rx_stage || n < SFI_HDR_PREFIX)
		return 0;
	memcpy(&h, v, SFI_HDR_PREFIX);
	need = sfi_hdr_form_len(h.version);
	/* No form, the connection's own frames and bad ops take the usual path (which refuses
	 * what it must). */
	if (!need || h.op >= SFI_OP_CONN || n < need || n - need < h.len)
		return 0;
	memcpy((uint8_t *)&h + SFI_HDR_PREFIX, v + SFI_HDR_PREFIX, need - SFI_HDR_PREFIX);
	sfi_hdr_unshorten(&h);
	ret = c->ops->rx_frame(c, &h, v + need);
	if (ret <= 0)
		return ret;
	(void)sfi_conn_stage_take(c, NULL, need + h.len);
	return 1;
}

/**
 * Take in up to SFI_CONN_RX_BUDGET frames.
 * @return 0, or a negative FI_E* code (the connection failed, or it was closed by a callback
 *         and must not be touched further: then c->epd < 0).
 */
static int sfi_conn_rx(struct sfi_conn *c)
{
	int frames = 0;

	c->rx_drained = false;

	while (frames < SFI_CONN_RX_BUDGET) {
		struct sfi_hdr hdr;
		void *cookie;
		int ret;

		if (!c->rx_in_payload) {
			if (c->rx_hdr_got == 0 && c->ops->rx_frame) {
				ret = sfi_conn_stage_more(c);
				if (ret <= 0)
					return ret;
				ret = sfi_conn_rx_whole(c);
				if (ret < 0)
					return ret;
				if (ret > 0) {
					frames++;
					c->rx_frames++;
					if (c->err || c->epd < 0)
						return c->err ? c->err : -FI_ECONNRESET;
					continue;
				}
			}
			while (!sfi_conn_hdr_done(c)) {
				ret = sfi_conn_stage_more(c);
				if (ret <= 0)
					return ret;
				/* The prefix first: it says how long the rest is. */
				c->rx_hdr_got += sfi_conn_stage_take(c,
					(char *)&c->rx_hdr + c->rx_hdr_got,
					sfi_conn_hdr_need(c) - c->rx_hdr_got);
			}
			ret = sfi_conn_rx_start(c);
			if (ret == -FI_EAGAIN)
				return 0; /* the owner has no room: the stream waits */
			if (ret)
				return ret;
		}
		ret = sfi_conn_rx_payload(c);
		if (ret <= 0)
			return ret;

		hdr = c->rx_hdr;
		cookie = c->rx_cookie;
		frames++;
		c->rx_frames++;
		if (c->rx_conn_frame) {
			sfi_conn_rx_reset(c);
			continue;
		}
		sfi_conn_rx_reset(c);
		c->ops->rx_done(c, &hdr, cookie);
		if (c->err || c->epd < 0)
			return c->err ? c->err : -FI_ECONNRESET;
	}
	return 0;
}

/** The connection broke: fail queued frames, then tell the owner (last use of @p c). */
static int sfi_conn_fail(struct sfi_conn *c, int err)
{
	if (c->err)
		return c->err;
	c->err = err;
	if (err == -FI_ECONNRESET)
		SFI_DBG(FI_LOG_EP_DATA, "peer %u:%u closed the connection\n",
			c->peer.node, c->peer.port);
	else
		SFI_WARN(FI_LOG_EP_DATA, "connection to %u:%u failed: %s\n",
			 c->peer.node, c->peer.port, fi_strerror(-err));
	sfi_conn_flush_tx(c, err);
	c->ops->on_error(c, err);
	return err;
}

int sfi_conn_progress(struct sfi_conn *c)
{
	int ret;

	if (c->err)
		return c->err;
	if (c->epd < 0)
		return -FI_ENOTCONN;

	/* Frames sent earlier complete before anything that arrived since. */
	sfi_conn_complete_tx(c);
	if (c->err)
		return c->err;
	if (c->epd < 0)
		return -FI_ENOTCONN;
	/* What the peer sent before any failure is taken in first. */
	ret = sfi_conn_rx(c);
	if (c->err)
		return c->err;
	if (c->epd < 0)
		return -FI_ENOTCONN; /* closed by a callback */
	if (ret == 0 && !sfi_list_empty(&c->txq))
		ret = sfi_conn_push(c);
	if (ret == 0)
		sfi_conn_complete_tx(c);
	if (c->err)
		return c->err;
	if (c->epd < 0)
		return -FI_ENOTCONN;
	if (ret < 0)
		return sfi_conn_fail(c, ret);
	return 0;
}

void sfi_conn_fini(struct sfi_conn *c, int err)
{
	if (!err)
		err = -FI_ECANCELED;
	if (!c->err)
		c->err = err;
	/* Whatever is still queued never reaches the peer. */
	sfi_conn_flush_tx(c, c->err);
	if (c->epd >= 0) {
		scif_close(c->epd);
		c->epd = -1;
	}
	sfi_lane_fini(c);
	sfi_conn_rx_reset(c);
	free(c->rx_stage);
	c->rx_stage = NULL;
	c->rx_view = NULL;
	c->tx_bounce = c->tx_spill = NULL;
	c->rx_stage_off = c->rx_stage_len = 0;
}

int sfi_conn_arm(struct sfi_conn *c)
{
	bool held = !c->rx_in_payload && sfi_conn_hdr_done(c);

	if (c->epd < 0 || c->err)
		return 0;
	if (!held && sfi_conn_staged(c))
		return 1; /* frames staged and not parsed yet */
	return sfi_lane_arm(c, held, c->want_pollout);
}
