/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_lane.c
 * @brief A connection's mapped lane: frames written straight into a ring in the receiver's
 *        memory, which the sender maps with scif_mmap.
 *
 * Every non-blocking scif_send and scif_recv keeps the endpoint's descriptor readable exactly
 * when bytes are waiting, so that a program may poll it at any time: each call settles that
 * state with barriers, and each send looks whether the receiver must be woken. A polling
 * provider pays this on every message and every empty look, though it sleeps only when its
 * application asks to. The lane moves that work to the moment of going to sleep
 * (sfi_conn_arm): while the receiver polls, a frame costs the sender a copy into the peer's
 * memory and one barrier, and the receiver a load of the line the record starts on.
 *
 * Setting up. Each side may offer (sfi_lane_offer) a ring of its own: anonymous memory, a
 * 4 KiB control page then the ring, registered as a window on the connection (any offset
 * the library picks: never one of the domain's fixed MR offsets). The OFFER frame (an
 * SFI_OP_CONN frame on the stream) says where, how large, and the ring's salt. The peer maps
 * the window (scif_mmap; a fabric that cannot map remote memory refuses, and that direction
 * simply stays on the stream), queues an ON frame, and once ON is all on the stream
 * (sfi_lane_tx_switch) writes every later byte into the ring. ON is the last frame of that
 * direction on the stream: the receiver reads the ring from the frame after it, and treats
 * every later stream byte as a doorbell.
 *
 * The ring. Records start on 64-byte lines: a 16-byte header { mark, len, flags } and len
 * payload bytes, padded to the next line. The mark is the ring's salt plus the absolute line
 * number of the record (the byte position over all laps, divided by 64), and is stored last,
 * with release order: the receiver, acquiring the mark at its head, knows the record is
 * whole. Stale lines of earlier laps (their marks, or payload bytes that happen to sit at a
 * line's start) never carry the mark of this lap's line, short of a 64-bit coincidence with
 * the random salt. A record never wraps: at the end of the ring the sender writes a SKIP
 * record for the rest of it and goes on at offset 0. Bytes are a stream, as on SCIF: the
 * sender may split a frame over records, the receiver may take a record in pieces.
 *
 * Who writes what. The sender writes records (the ring) and ctrl->tx_wait; the receiver
 * writes ctrl->head (bytes consumed, released after it copied them out) and ctrl->arm. Each
 * side keeps its own copy of what it writes and never reads its own words back, and checks
 * what the other writes: a mark that does not match is "not yet", a record that would pass
 * the end of the ring, a flag it does not know, or a head that goes back or beyond what was
 * written, fails the connection. The payload is copied out once, so a peer that rewrites a
 * record while it is read garbles only its own message.
 *
 * Sleeping. A receiver about to sleep (sfi_lane_arm) takes the doorbells off the stream,
 * stores a new ctrl->arm value, issues a full barrier and looks at its head once more. A
 * sender, after storing a record's mark, issues a full barrier and reads ctrl->arm: a value
 * it has not rung for gets one doorbell byte on the stream. One of the two sees the other
 * (each stores, then a barrier, then loads what the other stored). A sender with frames that
 * do not fit stores a new ctrl->tx_wait value the same way before it sleeps; a receiver looks
 * at tx_wait whenever it reads the ring (a plain load of its own line) and, with a barrier,
 * when it arms, and rings the sender once for each new value. The SCIF stream still reports
 * the peer's hang-up: an empty ring looks at it every 64th read, and when arming.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "sfi.h"

#define LANE_LINE SFI_LANE_LINE
#define LANE_CTRL SFI_LANE_CTRL
#define LANE_MIN ((size_t)4 << 10)
#define LANE_MAX ((size_t)64 << 20)
#define LANE_HDR 16u               /**< record header bytes */
#define LANE_SKIP 0x1u             /**< flags: the rest of the ring is unused this lap */

/* sfi_hdr::flags of SFI_OP_CONN frames */
#define LANE_CTL_OFFER 1u /**< id: window offset, size: ring bytes, data: salt */
#define LANE_CTL_ON 2u    /**< the last frame on the stream; the rest goes into the ring */
#define LANE_CTL_BELL 3u  /**< a doorbell from a peer whose frames are on the stream */

/** The control page's words, each on a line of its own. */
struct lane_ctrl {
	uint64_t head __attribute__((aligned(64)));    /**< receiver: bytes consumed */
	uint64_t arm __attribute__((aligned(64)));     /**< receiver: new value = ring me */
	uint64_t tx_wait __attribute__((aligned(64))); /**< sender: new value = ring me */
};

struct lane_rec {
	uint64_t mark;  /**< salt + line number; stored last (release) */
	uint32_t len;   /**< payload bytes */
	uint32_t flags; /**< LANE_SKIP or 0 */
};

_Static_assert(sizeof(struct lane_ctrl) <= LANE_CTRL, "control page");
_Static_assert(sizeof(struct lane_rec) == LANE_HDR, "record header");

/** A full barrier: stores before it are visible before loads after it (and write-combined
 *  stores to a mapped device window are flushed). */
static inline void lane_mb(void)
{
#if defined(__x86_64__)
	__asm__ __volatile__("lock orq $0,(%%rsp)" ::: "memory", "cc");
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/**
 * Order the payload's stores before the mark's. On x86, stores to write-back memory become
 * visible in program order anyway; only a write-combined mapping (a device window: libscif's
 * PCIe fabric maps a peer's memory through a prefetchable BAR) needs the sfence, which costs
 * a 8-byte round trip about 4 % (6 alternating rounds).
 */
static inline void lane_wmb(const struct sfi_lane *l)
{
#if defined(__x86_64__)
	if (!l->tx_wb)
		__builtin_ia32_sfence();
	else
		__atomic_signal_fence(__ATOMIC_RELEASE);
#else
	(void)l;
	__atomic_thread_fence(__ATOMIC_RELEASE);
#endif
}

/** The device of shared memory's in-kernel file system (a memfd's), or 0 if unknown. */
static uint64_t lane_shmem_dev(void)
{
	static uint64_t dev; /* 0: not known (yet) */
	static int tried;    /* two first callers at once both ask, and get the same answer */
	struct sfi_wfile f;
	size_t cover;
	void *p;
	int fd;

	if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&dev, __ATOMIC_RELAXED);
	fd = memfd_create("sfi-lane-probe", MFD_CLOEXEC);
	if (fd >= 0) {
		p = ftruncate(fd, 4096) ? MAP_FAILED :
					  mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			if (sfi_map_where((uintptr_t)p, &f, &cover) == 0 && f.inode)
				__atomic_store_n(&dev, f.dev, __ATOMIC_RELAXED);
			munmap(p, 4096);
		}
		close(fd);
	}
	__atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
	return __atomic_load_n(&dev, __ATOMIC_RELAXED);
}

/** Whether the peer's ring, mapped at @p map, is shared memory like a memfd's (write-back),
 *  not a device's window; false whenever the kernel cannot say. */
static bool lane_map_is_shmem(const void *map)
{
	uint64_t dev = lane_shmem_dev();
	struct sfi_wfile f;
	size_t cover;

	return dev && sfi_map_where((uintptr_t)map, &f, &cover) == 0 && f.inode && f.dev == dev;
}

static inline struct lane_ctrl *lane_ctrl(uint8_t *map)
{
	return (struct lane_ctrl *)(void *)map;
}

static inline size_t lane_round(size_t n)
{
	return (n + LANE_LINE - 1) & ~(size_t)(LANE_LINE - 1);
}

/** The connection's own frames need nothing done once sent. */
static void lane_ctl_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	(void)c;
	(void)tx;
	(void)err;
}

int sfi_lane_offer(struct sfi_conn *c, size_t size)
{
	struct sfi_lane *l = &c->lane;
	struct sfi_hdr h;
	uint8_t *map;
	off_t off;

	if (!size || l->rx_map || c->epd < 0 || c->err)
		return 0;
	if (size < LANE_MIN || size > LANE_MAX || (size & (size - 1)))
		return -FI_EINVAL;
	map = mmap(NULL, LANE_CTRL + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (map == MAP_FAILED)
		return 0;
	off = scif_register(c->epd, map, LANE_CTRL + size, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
			    0);
	if (off < 0) {
		SFI_DBG(FI_LOG_EP_CTRL, "no lane to %u:%u: scif_register: %s\n", c->peer.node,
			c->peer.port, strerror(errno));
		munmap(map, LANE_CTRL + size);
		return 0;
	}
	if (getrandom(&l->rx_salt, sizeof(l->rx_salt), GRND_NONBLOCK) != sizeof(l->rx_salt))
		l->rx_salt = (uint64_t)(uintptr_t)map * 0x9e3779b97f4a7c15ull ^ (uint64_t)off;
	l->rx_map = map;
	l->rx_size = size;
	memset(&h, 0, sizeof(h));
	h.op = SFI_OP_CONN;
	h.flags = LANE_CTL_OFFER;
	h.id = (uint64_t)off;
	h.size = size;
	h.data = l->rx_salt;
	l->offer_tx.done = lane_ctl_done;
	/* Not offered: take the window back now (else it lives as long as the endpoint). */
	if (sfi_conn_send(c, &l->offer_tx, &h, NULL, 0)) {
		(void)scif_unregister(c->epd, off, LANE_CTRL + size);
		munmap(map, LANE_CTRL + size);
		l->rx_map = NULL;
	}
	return 0;
}

/** The peer offered its ring: map it and switch our direction to it. */
static int lane_take_offer(struct sfi_conn *c, const struct sfi_hdr *h)
{
	struct sfi_lane *l = &c->lane;
	struct sfi_hdr on;
	void *map;

	if (l->tx_map || l->tx_on)
		return -FI_EIO; /* one offer per connection */
	if (h->size < LANE_MIN || h->size > LANE_MAX || (h->size & (h->size - 1)) ||
	    h->id > (uint64_t)INT64_MAX)
		return -FI_EIO;
	if (!sfi_params.lane_size)
		return 0; /* we keep to the stream; the offer costs the peer a window */
	map = scif_mmap(NULL, LANE_CTRL + h->size, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, c->epd,
			(off_t)h->id);
	if (map == SCIF_MMAP_FAILED) {
		SFI_DBG(FI_LOG_EP_CTRL, "no lane to %u:%u: scif_mmap: %s\n", c->peer.node,
			c->peer.port, strerror(errno));
		return 0;
	}
	l->tx_map = map;
	l->tx_wb = lane_map_is_shmem(map);
	l->tx_size = h->size;
	l->tx_salt = h->data;
	l->tx_tail = l->tx_head = 0;
	l->tx_rung = l->tx_wait = 0;
	memset(&on, 0, sizeof(on));
	on.op = SFI_OP_CONN;
	on.flags = LANE_CTL_ON;
	l->on_tx.done = lane_ctl_done;
	return sfi_conn_send(c, &l->on_tx, &on, NULL, 0);
}

int sfi_lane_ctl(struct sfi_conn *c, const struct sfi_hdr *h)
{
	struct sfi_lane *l = &c->lane;

	if (h->len)
		return -FI_EIO;
	switch (h->flags) {
	case LANE_CTL_OFFER:
		return lane_take_offer(c, h);
	case LANE_CTL_ON:
		/* Only after our offer, and once. */
		if (!l->rx_map || l->rx_on)
			return -FI_EIO;
		l->rx_on = true;
		/* Anything after ON on the stream is a doorbell. */
		c->rx_stage_off = c->rx_stage_len;
		return 0;
	case LANE_CTL_BELL:
		return 0;
	default:
		return -FI_EIO;
	}
}

void sfi_lane_tx_switch(struct sfi_conn *c)
{
	c->lane.tx_on = true;
}

/** Send the peer a doorbell on the stream (it sleeps, or waits for room in our ring). */
static void lane_ring(struct sfi_conn *c)
{
	if (c->lane.tx_on) {
		char b = 0;

		/* 0 taken: the stream is full of doorbells the peer has not read; it wakes. */
		(void)scif_send(c->epd, &b, 1, 0);
	} else {
		struct sfi_hdr h;

		/* Frames on their way wake it as well; else a frame that means nothing. */
		memset(&h, 0, sizeof(h));
		h.op = SFI_OP_CONN;
		h.flags = LANE_CTL_BELL;
		(void)sfi_conn_send_now(c, &h, NULL, 0);
	}
}

/** Read the peer's head; 0, or -FI_EIO when it went back or past what we wrote. */
static int lane_tx_head(struct sfi_lane *l)
{
	uint64_t h = __atomic_load_n(&lane_ctrl(l->tx_map)->head, __ATOMIC_ACQUIRE);

	if (h - l->tx_head > l->tx_tail - l->tx_head)
		return -FI_EIO;
	l->tx_head = h;
	return 0;
}

/** Fill the rest of this lap with a SKIP record at @p pos (@p contig bytes). */
static void lane_skip(struct sfi_lane *l, size_t pos, size_t contig)
{
	struct lane_rec *r = (struct lane_rec *)(void *)(l->tx_map + LANE_CTRL + pos);

	r->len = 0;
	r->flags = LANE_SKIP;
	lane_wmb(l);
	__atomic_store_n(&r->mark, l->tx_salt + (l->tx_tail / LANE_LINE), __ATOMIC_RELEASE);
	l->tx_tail += contig;
}

/** Seal the record at the tail, its @p m payload bytes written: the mark goes last. */
static void lane_seal(struct sfi_lane *l, struct lane_rec *r, size_t m)
{
	r->len = (uint32_t)m;
	r->flags = 0;
	lane_wmb(l);
	__atomic_store_n(&r->mark, l->tx_salt + (l->tx_tail / LANE_LINE), __ATOMIC_RELEASE);
	l->tx_tail += lane_round(LANE_HDR + m);
}

/**
 * Put one record of up to @p n bytes (the first of @p a, then of @p b) at the tail; the count
 * taken (0: no room), or -FI_EIO (the peer's head broke the rules).
 */
static ssize_t lane_put(struct sfi_lane *l, const uint8_t *a, size_t alen, const uint8_t *b,
			size_t n)
{
	size_t mask = l->tx_size - 1, pos, contig, room, need, m;
	struct lane_rec *r;

	/* A record holds at most a quarter of the ring: the receiver frees room as it goes. */
	if (n > l->tx_size / 4 - LANE_HDR)
		n = l->tx_size / 4 - LANE_HDR;
	need = lane_round(LANE_HDR + n);
	pos = l->tx_tail & mask;
	contig = l->tx_size - pos;
	room = l->tx_size - (l->tx_tail - l->tx_head);
	if (room < need + (contig < need ? contig : 0)) {
		if (lane_tx_head(l))
			return -FI_EIO;
		room = l->tx_size - (l->tx_tail - l->tx_head);
	}
	if (contig < need) {
		if (room >= contig + need) {
			/* Not before the end: skip it, and start the next lap. */
			lane_skip(l, pos, contig);
			room -= contig;
			pos = 0;
		} else {
			need = contig; /* the rest of this lap, as far as there is room */
		}
	}
	if (need > room)
		need = room & ~(size_t)(LANE_LINE - 1);
	if (need <= LANE_HDR)
		return 0;
	m = need - LANE_HDR < n ? need - LANE_HDR : n;
	r = (struct lane_rec *)(void *)(l->tx_map + LANE_CTRL + pos);
	if (m <= alen) {
		memcpy(r + 1, a, m);
	} else {
		memcpy(r + 1, a, alen);
		memcpy((uint8_t *)(r + 1) + alen, b, m - alen);
	}
	lane_seal(l, r, m);
	return (ssize_t)m;
}

/** After records were sealed: ring a peer that went to sleep (see "Sleeping" above). */
static void lane_wrote(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;
	uint64_t arm;

	/* [L1] the marks before the look at arm; pairs with [L2] in sfi_lane_arm. */
	lane_mb();
	arm = __atomic_load_n(&lane_ctrl(l->tx_map)->arm, __ATOMIC_RELAXED);
	if (arm != l->tx_rung) {
		l->tx_rung = arm;
		lane_ring(c);
	}
}

ssize_t sfi_lane_write(struct sfi_conn *c, const void *a, size_t alen, const void *b,
		       size_t blen)
{
	struct sfi_lane *l = &c->lane;
	const uint8_t *pa = a, *pb = b;
	size_t done = 0, total = alen + blen;

	while (done < total) {
		ssize_t m = lane_put(l, pa, alen, pb, total - done);

		if (m <= 0) {
			if (m < 0 && !done)
				return m;
			break; /* full; or broken, which the next call reports */
		}
		done += (size_t)m;
		if ((size_t)m < alen) {
			pa += m;
			alen -= (size_t)m;
		} else {
			pb += (size_t)m - alen;
			pa = pb;
			alen = total - done;
			pb = NULL;
		}
	}
	if (!done)
		return 0;
	lane_wrote(c);
	return (ssize_t)done;
}

/* A record of at most SFI_LANE_SMALL bytes takes one line: it never meets the ring's end. */
_Static_assert(LANE_HDR + SFI_LANE_SMALL <= LANE_LINE, "a small record is one line");

uint8_t *sfi_lane_reserve(struct sfi_conn *c, size_t n)
{
	struct sfi_lane *l = &c->lane;

	if (n > SFI_LANE_SMALL)
		return NULL;
	if (l->tx_size - (l->tx_tail - l->tx_head) < LANE_LINE &&
	    (lane_tx_head(l) || l->tx_size - (l->tx_tail - l->tx_head) < LANE_LINE))
		return NULL;
	return l->tx_map + LANE_CTRL + (l->tx_tail & (l->tx_size - 1)) + LANE_HDR;
}

void sfi_lane_commit(struct sfi_conn *c, size_t n)
{
	struct sfi_lane *l = &c->lane;

	lane_seal(l, (struct lane_rec *)(void *)(l->tx_map + LANE_CTRL +
						 (l->tx_tail & (l->tx_size - 1))), n);
	lane_wrote(c);
}

/** The peer waits for room we made: ring it once per tx_wait value. */
static inline void lane_answer_wait(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;
	uint64_t w = __atomic_load_n(&lane_ctrl(l->rx_map)->tx_wait, __ATOMIC_RELAXED);

	if (__builtin_expect(w != l->rx_wait_seen, 0)) {
		l->rx_wait_seen = w;
		lane_ring(c);
	}
}

/**
 * Take the doorbells off the stream, and learn whether the peer is gone: 0, or a negative
 * FI_E* code (-FI_ECONNRESET) once the stream says so.
 */
static int lane_stream_look(struct sfi_conn *c)
{
	char junk[256];
	int n;

	do {
		n = scif_recv(c->epd, junk, sizeof(junk), 0);
	} while (n > 0 || (n < 0 && errno == EINTR));
	if (n == 0)
		return 0;
	return errno == ECONNRESET || errno == ENOTCONN ? -FI_ECONNRESET : -FI_EIO;
}

/** Whether a record (or a record's rest) waits at our head. */
static inline bool lane_rx_ready(const struct sfi_lane *l)
{
	return l->rx_in_rec || sfi_lane_rx_marked(l);
}

/** The payload of the record at our head (open). */
static inline const uint8_t *lane_rec_payload(const struct sfi_lane *l)
{
	return l->rx_map + LANE_CTRL + (l->rx_head & (l->rx_size - 1)) + LANE_HDR;
}

/**
 * Open the record at our head (passing skips): 1 when one is open (rx_in_rec), 0 when
 * none is there yet, or -FI_EIO when what is there breaks the ring's rules.
 */
static int lane_open(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;

	while (!l->rx_in_rec) {
		size_t pos = l->rx_head & (l->rx_size - 1);
		const struct lane_rec *r =
			(const struct lane_rec *)(const void *)(l->rx_map + LANE_CTRL + pos);
		uint32_t rlen, flags;

		if (!sfi_lane_rx_marked(l))
			return 0;
		rlen = __atomic_load_n(&r->len, __ATOMIC_RELAXED);
		flags = __atomic_load_n(&r->flags, __ATOMIC_RELAXED);
		if (flags == LANE_SKIP && pos) {
			l->rx_head += l->rx_size - pos;
			continue;
		}
		if (flags || !rlen || rlen > l->rx_size - pos - LANE_HDR) {
			SFI_WARN(FI_LOG_EP_DATA,
				 "bad lane record from %u:%u (len %u flags %#x at %zu)\n",
				 c->peer.node, c->peer.port, rlen, flags, pos);
			return -FI_EIO;
		}
		l->rx_rec_len = rlen;
		l->rx_rec_off = 0;
		l->rx_in_rec = true;
	}
	return 1;
}

/** Lines up to our head are read: let the sender have them (released after the copies). */
static inline void lane_publish(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;

	__atomic_store_n(&lane_ctrl(l->rx_map)->head, l->rx_head, __ATOMIC_RELEASE);
	l->rx_idle = 0;
	lane_answer_wait(c);
}

/** Nothing at our head: 0, or the peer's end once everything it wrote was taken. */
static ssize_t lane_empty(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;

	lane_answer_wait(c);
	if (l->rx_gone)
		return -FI_ECONNRESET;
	if ((++l->rx_idle & SFI_LANE_IDLE_LOOK) == 0) {
		int ret = lane_stream_look(c);

		if (ret) {
			/* What it wrote before it went is taken first. */
			l->rx_gone = true;
			if (!lane_rx_ready(l))
				return ret;
		}
	}
	return 0;
}

ssize_t sfi_lane_read(struct sfi_conn *c, void *buf, size_t len)
{
	struct sfi_lane *l = &c->lane;
	uint64_t head0 = l->rx_head;
	size_t got = 0;

	while (got < len) {
		int ret = lane_open(c);
		size_t m;

		if (ret < 0)
			return ret;
		if (!ret)
			break;
		m = l->rx_rec_len - l->rx_rec_off;
		if (m > len - got)
			m = len - got;
		memcpy((uint8_t *)buf + got, lane_rec_payload(l) + l->rx_rec_off, m);
		got += m;
		l->rx_rec_off += (uint32_t)m;
		if (l->rx_rec_off == l->rx_rec_len) {
			l->rx_head += lane_round(LANE_HDR + l->rx_rec_len);
			l->rx_in_rec = false;
		}
	}
	if (l->rx_head != head0)
		lane_publish(c);
	return got ? (ssize_t)got : lane_empty(c);
}

ssize_t sfi_lane_view(struct sfi_conn *c, const uint8_t **p)
{
	struct sfi_lane *l = &c->lane;
	int ret = lane_open(c);

	if (ret < 0)
		return ret;
	if (!ret)
		return lane_empty(c);
	*p = lane_rec_payload(l) + l->rx_rec_off;
	return (ssize_t)(l->rx_rec_len - l->rx_rec_off);
}

void sfi_lane_release(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;

	l->rx_head += lane_round(LANE_HDR + l->rx_rec_len);
	l->rx_in_rec = false;
	lane_publish(c);
}

int sfi_lane_arm(struct sfi_conn *c, bool rx_held, bool tx_blocked)
{
	struct sfi_lane *l = &c->lane;
	bool tx = tx_blocked && l->tx_on;

	if (l->rx_on) {
		if (l->rx_gone || lane_stream_look(c)) {
			l->rx_gone = true;
			return 1; /* progress meets it */
		}
		__atomic_store_n(&lane_ctrl(l->rx_map)->arm, ++l->rx_arm, __ATOMIC_RELAXED);
	}
	if (tx)
		__atomic_store_n(&lane_ctrl(l->tx_map)->tx_wait, ++l->tx_wait, __ATOMIC_RELAXED);
	if (!l->rx_on && !tx)
		return 0;
	/* [L2] arm (tx_wait) before the look at the ring (head); pairs with [L1]. */
	lane_mb();
	if (l->rx_on) {
		if (!rx_held && lane_rx_ready(l))
			return 1;
		lane_answer_wait(c);
	}
	if (tx) {
		if (lane_tx_head(l))
			return 1; /* the next write fails the connection */
		if (l->tx_size - (l->tx_tail - l->tx_head) >= 2 * LANE_LINE)
			return 1;
	}
	return 0;
}

void sfi_lane_fini(struct sfi_conn *c)
{
	struct sfi_lane *l = &c->lane;

	if (l->tx_map)
		(void)scif_munmap(l->tx_map, LANE_CTRL + l->tx_size);
	if (l->rx_map)
		munmap(l->rx_map, LANE_CTRL + l->rx_size);
	memset(l, 0, sizeof(*l));
}
