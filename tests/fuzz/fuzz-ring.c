// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-ring.c - libFuzzer target: the data plane of a connection as a hostile peer drives it
 * (libscif/msg.c, rb.c, and with FZ_BULK bulk.c): ring bytes and indices, doorbells and arm
 * words, and, in fuzz-bulk, single-copy offers, claims and their words.
 *
 * Per input the fuzzer makes an honest connection to the library (its own ring 4..64 KiB,
 * the library's 4..16 KiB), then runs a sequence of operations. As the peer it writes and
 * consumes ring bytes the way an honest peer does (indices published with release, bells
 * rung per the arm protocol, the sender woken after consuming), offers bytes single-copy and
 * takes the library's offers, helps with claims; or it lies: any header word of the library's
 * region set to anything, ring bytes scribbled, bells drained. The library's side runs
 * scif_send/scif_recv (blocking or not), scif_poll and poll(2) on the application thread.
 *
 * Checked: no crash or sanitizer report; calls fail only with errnos the spec lists and
 * never return more than asked; while the fuzzer has not lied, every byte each side
 * receives is the byte the other sent, the library never publishes an impossible index or
 * offer, and a blocking scif_recv whose bytes are all there returns (no lost wake-up); once
 * the fuzzer hangs up every blocked call returns within FZ_HANG_MS; no descriptor is left over.
 *
 * Input: two bytes of ring sizes, then operations: a byte (low 4 bits: which; bits 4-5:
 * flags), 4 bytes of length, and their operands.
 * FZ_BULK: single-copy transfers from 4 KiB (SCIF_CMA_MIN), every offer taken.
 */
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz.h"
#include "peer.h"

#ifndef FZ_BULK
#define FZ_BULK 0
#endif

#define SCRATCH (2u << 20)  /* fuzzer memory its offers point into */
#define GUARD (4u << 20)    /* inaccessible, after the scratch memory */
#define APPBUF (2u << 20)   /* the library side's buffer */
#define IO_MAX (FZ_BULK ? (1u << 20) : (64u << 10))
#define DISARMED SCIF_DISARMED

/* The two byte streams: a byte is a function of its position. */
static inline uint8_t pat_in(uint64_t pos) /* fuzzer -> library */
{
	return (uint8_t)(pos * 131u + (pos >> 11) + 7u);
}

static inline uint8_t pat_out(uint64_t pos) /* library -> fuzzer */
{
	return (uint8_t)(pos * 197u + (pos >> 13) + 3u);
}

static struct fz_app app;
static scif_epd_t lep;
static uint16_t lport;
static uint8_t *scratch, *appbuf;

/* Shared with the application thread. */
static int lied;          /* the fuzzer broke the protocol: data and liveness are unchecked */
static int hung;          /* the fuzzer has hung up: calls may end early */
static uint64_t lib_rx;   /* the library's receive stream position (application thread) */
static uint64_t lib_tx;   /* the library's send stream position (application thread) */

enum { APP_RECV, APP_SEND, APP_POLL, APP_FDPOLL };

struct app_op {
	int kind, flags;
	scif_epd_t ep;
	size_t len;
	uint64_t start; /* lib_rx when it was queued */
	short events;
	long ret;
};

static struct app_op op_buf; /* the application thread's current call */

static void lie(void)
{
	__atomic_store_n(&lied, 1, __ATOMIC_SEQ_CST);
}

static int lying(void)
{
	return __atomic_load_n(&lied, __ATOMIC_SEQ_CST);
}

/* Checks of data and liveness hold while the fuzzer is honest and still there. */
static int checking(void)
{
	return !lying() && !__atomic_load_n(&hung, __ATOMIC_SEQ_CST);
}

static void app_run(void *arg)
{
	struct app_op *o = arg;
	struct scif_pollepd p = { .epd = o->ep, .events = o->events };
	struct pollfd q = { .fd = o->ep, .events = o->events };
	int r;

	switch (o->kind) {
	case APP_RECV:
		r = scif_recv(o->ep, appbuf, (int)o->len, o->flags);
		fz_expect_errno("scif_recv", r, FZ_ERRNOS(ECONNRESET, ENOMEM));
		if (r > (int)o->len)
			fz_fail("scif_recv(%zu) returned %d", o->len, r);
		for (int i = 0; i < r && !lying(); i++)
			if (appbuf[i] != pat_in(lib_rx + (uint64_t)i))
				fz_fail("scif_recv: byte %llu of the stream differs",
					(unsigned long long)(lib_rx + (uint64_t)i));
		if (o->flags && r >= 0 && r != (int)o->len && checking())
			fz_fail("blocking scif_recv(%zu) returned %d on a live connection", o->len,
				r);
		if (r > 0)
			lib_rx += (uint64_t)r;
		o->ret = r;
		break;
	case APP_SEND:
		for (size_t i = 0; i < o->len; i++)
			appbuf[i] = pat_out(lib_tx + i);
		r = scif_send(o->ep, appbuf, (int)o->len, o->flags);
		fz_expect_errno("scif_send", r, FZ_ERRNOS(ECONNRESET, ENOMEM));
		if (r > (int)o->len)
			fz_fail("scif_send(%zu) returned %d", o->len, r);
		if (o->flags && r >= 0 && r != (int)o->len && checking())
			fz_fail("blocking scif_send(%zu) returned %d on a live connection", o->len,
				r);
		if (r > 0)
			lib_tx += (uint64_t)r;
		o->ret = r;
		break;
	case APP_POLL:
		r = scif_poll(&p, 1, 0);
		fz_expect_errno("scif_poll", r, FZ_ERRNOS(EINTR, ENOMEM));
		if (r > 1 || (r == 1 && (p.revents & ~(SCIF_POLLIN | SCIF_POLLOUT | SCIF_POLLHUP |
						       SCIF_POLLERR))))
			fz_fail("scif_poll returned %d, revents %#x", r, p.revents);
		break;
	default:
		r = poll(&q, 1, 0);
		if (r < 0)
			fz_fail("poll(2) on the endpoint: %s", strerror(errno));
		break;
	}
}

/**
 * struct peer - the fuzzer's side of the connection.
 * @fw, @tsp:      its ring write index and its stream position (bytes made available).
 * @db_sent:       bells rung toward the library.
 * @fr, @frp:      its ring read index and the library stream position it consumed.
 * @tx_seen:       the library sender's wait sequence last seen.
 * @oseq, @olen, @ooff, @opending: its own offer (sequence, length, scratch offset).
 * @help_tag:      the library's last claim it helped with.
 * @lseq, @lpos, @laddr, @llen, @ltaken, @lpending: the library's offer being taken.
 * @lnb, @lcommit: it is a non-blocking send's offer; we committed to it (take).
 * @ctag:          claim tags it used.
 * @lazy:          it skipped a bell or drained the library's: no liveness check.
 */
struct peer {
	struct fzp_conn c;
	uint64_t fw, tsp, db_sent;
	uint64_t fr, frp, tx_seen;
	uint64_t oseq, olen, ooff;
	int opending;
	uint32_t help_tag;
	uint64_t lseq, lpos, laddr, llen, ltaken;
	int lpending, lnb, lcommit;
	uint32_t ctag;
	int lazy;
};

/* Ring the library if its receiver is armed and has seen our bells (msg.c tx_notify). */
static void peer_notify(struct peer *p)
{
	struct scif_qp_region *me = p->c.mine.map;
	uint64_t arm;

	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* [M1] */
	arm = __atomic_load_n(&me->peer_rx_arm, __ATOMIC_RELAXED);
	if (!(arm & DISARMED) && (arm & ~SCIF_RX_SLEEPING) == p->db_sent) {
		p->db_sent++;
		__atomic_store_n(&p->c.theirs->in_db, p->db_sent, __ATOMIC_RELEASE);
		send(p->c.lib_bell, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

/* After consuming: wake the library's sender if it waits for room (msg.c rx_notify_room). */
static void peer_room(struct peer *p)
{
	struct scif_qp_region *me = p->c.mine.map;
	uint64_t want;
	char buf[4096];

	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* [M4] */
	want = __atomic_load_n(&me->peer_tx_wait, __ATOMIC_RELAXED);
	if (want != p->tx_seen) {
		p->tx_seen = want;
		while (recv(p->c.lib_bell, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
	}
}

/* Write up to @n honest bytes into the library's ring. */
static void peer_write(struct peer *p, size_t n, int quiet)
{
	struct scif_qp_region *me = p->c.mine.map, *th = p->c.theirs;
	uint64_t ridx = __atomic_load_n(&me->out_ridx, __ATOMIC_ACQUIRE);
	uint32_t size = p->c.ring_theirs;
	uint64_t room;

	if (p->opending) /* an honest sender waits for its offer first */
		return;
	if (ridx > p->fw || p->fw - ridx > size) {
		if (!lying())
			fz_fail("the library consumed to %llu of %llu written",
				(unsigned long long)ridx, (unsigned long long)p->fw);
		return;
	}
	room = size - (p->fw - ridx);
	if (n > room)
		n = (size_t)room;
	for (size_t i = 0; i < n; i++)
		th->data[(p->fw + i) & (size - 1)] = pat_in(p->tsp + i);
	p->fw += n;
	p->tsp += n;
	/* A short write also goes beside the index, as the library's own do (rb.c). */
	if (n && n <= SCIF_RB_SHORT) {
		uint64_t w[SCIF_RB_SHORT / 8];

		for (size_t i = 0; i < SCIF_RB_SHORT; i++)
			((uint8_t *)w)[i] = th->data[(p->fw - SCIF_RB_SHORT + i) & (size - 1)];
		__atomic_store_n(&th->in_short.end, SCIF_RB_SHORT_NONE, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		for (size_t i = 0; i < SCIF_RB_SHORT / 8; i++)
			__atomic_store_n(&th->in_short.data[i], w[i], __ATOMIC_RELAXED);
		__atomic_store_n(&th->in_short.end, p->fw, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&th->in_widx, p->fw, __ATOMIC_RELEASE);
	if (quiet)
		p->lazy = 1;
	else
		peer_notify(p);
}

/* Consume up to @n of the library's ring bytes, checking them. */
static void peer_consume(struct peer *p, size_t n)
{
	struct scif_qp_region *me = p->c.mine.map;
	uint64_t widx = __atomic_load_n(&me->in_widx, __ATOMIC_ACQUIRE);
	uint32_t size = p->c.ring_mine;

	if (widx < p->fr || widx - p->fr > size) {
		if (!lying())
			fz_fail("the library published write index %llu with %llu consumed",
				(unsigned long long)widx, (unsigned long long)p->fr);
		return;
	}
	if (n > widx - p->fr)
		n = (size_t)(widx - p->fr);
	/*
	 * The library's short copy, when it names this index, holds the stream's last bytes: the
	 * unread ones among them must equal the ring's (read as the library's receivers do).
	 */
	if (!lying() && __atomic_load_n(&me->in_short.end, __ATOMIC_ACQUIRE) == widx) {
		uint64_t w[SCIF_RB_SHORT / 8], from = widx - p->fr < SCIF_RB_SHORT ? p->fr : widx - SCIF_RB_SHORT;

		for (size_t i = 0; i < SCIF_RB_SHORT / 8; i++)
			w[i] = __atomic_load_n(&me->in_short.data[i], __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&me->in_short.end, __ATOMIC_RELAXED) == widx)
			for (uint64_t j = from; j < widx; j++)
				if (((const uint8_t *)w)[SCIF_RB_SHORT - (widx - j)] !=
				    me->data[j & (size - 1)])
					fz_fail("the library's short copy differs from its ring at %llu",
						(unsigned long long)j);
	}
	for (size_t i = 0; i < n && !lying(); i++)
		if (me->data[(p->fr + i) & (size - 1)] != pat_out(p->frp + i))
			fz_fail("the library's byte %llu differs", (unsigned long long)(p->frp + i));
	p->fr += n;
	p->frp += n;
	__atomic_store_n(&p->c.theirs->out_ridx, p->fr, __ATOMIC_RELEASE);
	peer_room(p);
}

/* Account for the library's bells and publish our arm word (msg.c rx_settle). */
static void peer_bells(struct peer *p, int disarm)
{
	struct scif_qp_region *me = p->c.mine.map;
	char buf[256];
	uint64_t seen;

	while (recv(p->c.user, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	seen = __atomic_load_n(&me->in_db, __ATOMIC_ACQUIRE);
	__atomic_store_n(&p->c.theirs->peer_rx_arm, seen | (disarm ? DISARMED : 0),
			 __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* [M2] */
}

/* Offer @n bytes single-copy from the scratch memory (bulk.c, sender side). */
static void peer_offer(struct peer *p, struct fz *f)
{
	struct scif_bulk_offer *of = &p->c.theirs->bulk_offer;
	uint64_t n = 1 + fz_u32(f) % IO_MAX, off = fz_u32(f) % (SCRATCH - n + 1);

	if (p->opending)
		return;
	for (uint64_t i = 0; i < n; i++)
		scratch[off + i] = pat_in(p->tsp + i);
	__atomic_store_n(&of->pos, p->fw, __ATOMIC_RELAXED);
	__atomic_store_n(&of->addr, (uint64_t)(uintptr_t)(scratch + off), __ATOMIC_RELAXED);
	__atomic_store_n(&of->len, n, __ATOMIC_RELAXED);
	__atomic_store_n(&of->seq, ++p->oseq, __ATOMIC_RELEASE);
	p->olen = n;
	p->ooff = off;
	p->opending = 1;
	peer_notify(p);
}

/* How much of our offer the library took; the rest goes through the ring (honest). */
static void peer_offer_done(struct peer *p)
{
	uint64_t dw = __atomic_load_n(&((struct scif_qp_region *)p->c.mine.map)->bulk_claim.done,
				      __ATOMIC_ACQUIRE);
	uint64_t got = dw & SCIF_BULK_COUNT;

	if (!p->opending || (uint32_t)(dw >> 32) != (uint32_t)p->oseq)
		return;
	if (got > p->olen) {
		if (!lying())
			fz_fail("the library took %llu of a %llu-byte offer", (unsigned long long)got,
				(unsigned long long)p->olen);
		return;
	}
	if (got == p->olen || (dw & SCIF_BULK_DECLINE)) {
		p->tsp += got;
		p->opending = 0;
	}
}

/* Help with the library's claim on our offer: copy its back part into its buffer. */
static void peer_help(struct peer *p, struct fz *f)
{
	struct scif_bulk_claim *cl = &((struct scif_qp_region *)p->c.mine.map)->bulk_claim;
	struct scif_bulk_offer *of = &p->c.theirs->bulk_offer;
	uint32_t tag = (uint32_t)__atomic_load_n(&cl->seq, __ATOMIC_ACQUIRE);
	uint64_t oseq = cl->oseq, off = cl->off, k = cl->len, dst = cl->dst, t, lo, front;
	struct iovec l, r;

	if (!p->opending || tag == p->help_tag || oseq != p->oseq)
		return;
	p->help_tag = tag;
	if (off > p->olen || k > p->olen - off || !k || dst < (uintptr_t)appbuf ||
	    dst + k > (uintptr_t)appbuf + APPBUF) {
		if (!lying())
			fz_fail("the library claimed [%llu, +%llu) of %llu at %#llx",
				(unsigned long long)off, (unsigned long long)k,
				(unsigned long long)p->olen, (unsigned long long)dst);
		return;
	}
	t = (uint64_t)tag << 32;
	lo = k - (1 + fz_u32(f) % k);
	__atomic_store_n(&of->back, t | lo, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* [B2] */
	front = __atomic_load_n(&cl->front, __ATOMIC_RELAXED);
	front = (uint32_t)(front >> 32) == tag ? (uint32_t)front : k;
	if (front > lo)
		lo = front;
	if (lo < k) {
		l = (struct iovec){ scratch + p->ooff + off + lo, k - lo };
		r = (struct iovec){ (void *)(uintptr_t)(dst + lo), k - lo };
		if (process_vm_writev(getpid(), &l, 1, &r, 1, 0) != (ssize_t)(k - lo))
			fz_fail("help the claim: %s", strerror(errno));
	} else {
		lo = k;
	}
	__atomic_store_n(&of->stop, t | lo, __ATOMIC_RELEASE);
	{
		struct scif_qp_region *me = p->c.mine.map;
		uint64_t arm;

		/* The receiver may sleep for our stop word: ring it (bulk.c: no grace). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		arm = __atomic_load_n(&me->peer_rx_arm, __ATOMIC_RELAXED);
		if (!(arm & DISARMED) && (arm & ~SCIF_RX_SLEEPING) == p->db_sent) {
			p->db_sent++;
			__atomic_store_n(&p->c.theirs->in_db, p->db_sent, __ATOMIC_RELEASE);
			send(p->c.lib_bell, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		}
	}
}

/* Take up to @n bytes of the library's offer (bulk.c, receiver side); @flags decline. */
static void peer_take(struct peer *p, uint64_t n, uint64_t flags)
{
	struct scif_qp_region *me = p->c.mine.map;
	struct scif_bulk_offer *of = &me->bulk_offer;
	uint64_t seq = __atomic_load_n(&of->seq, __ATOMIC_ACQUIRE), k;
	static uint8_t tmp[1u << 20];
	struct iovec l, r;

	if (seq != p->lseq && !p->lpending && (of->mode & SCIF_BULK_NB) &&
	    __atomic_load_n(&of->revoke, __ATOMIC_ACQUIRE) == seq) {
		/* Withdrawn before we looked: its position is stale, its bytes in the ring. */
		p->lseq = seq;
		return;
	}
	if (seq != p->lseq && !p->lpending) {
		uint64_t widx = __atomic_load_n(&me->in_widx, __ATOMIC_ACQUIRE);

		p->lseq = seq;
		p->lpos = of->pos;
		p->laddr = of->addr;
		p->llen = of->len;
		p->ltaken = 0;
		p->lpending = 1;
		p->lnb = (of->mode & SCIF_BULK_NB) != 0;
		p->lcommit = 0;
		if (!lying() && (p->llen == 0 || p->llen > SCIF_BULK_MAX || p->lpos > widx ||
				 p->lpos < p->fr || p->laddr < (uintptr_t)appbuf ||
				 p->laddr + p->llen > (uintptr_t)appbuf + APPBUF))
			fz_fail("the library offered %llu bytes at %#llx, stream position %llu "
				"(ring at %llu..%llu)", (unsigned long long)p->llen,
				(unsigned long long)p->laddr, (unsigned long long)p->lpos,
				(unsigned long long)p->fr, (unsigned long long)widx);
	}
	/* A non-blocking send's offer it withdrew: its bytes come through the ring instead. */
	if (p->lpending && p->lnb && !p->lcommit &&
	    __atomic_load_n(&of->revoke, __ATOMIC_ACQUIRE) == p->lseq) {
		p->lpending = 0;
		return;
	}
	if (!p->lpending || p->fr != p->lpos)
		return; /* ring bytes first */
	if (p->lnb && !p->lcommit) {
		/* Whole or not at all: commit (take), unless it was withdrawn meanwhile. */
		if (n < p->llen || flags) {
			__atomic_store_n(&p->c.theirs->bulk_claim.done,
					 (p->lseq << 32) | SCIF_BULK_DECLINE | SCIF_BULK_NOW,
					 __ATOMIC_RELEASE);
			p->lpending = 0;
			peer_room(p);
			return;
		}
		__atomic_store_n(&p->c.theirs->bulk_claim.take, p->lseq, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST); /* [B4] */
		if (__atomic_load_n(&of->revoke, __ATOMIC_RELAXED) == p->lseq) {
			p->lpending = 0;
			return;
		}
		p->lcommit = 1;
	}
	k = p->llen - p->ltaken < n ? p->llen - p->ltaken : n;
	if (k > sizeof(tmp))
		k = sizeof(tmp);
	l = (struct iovec){ tmp, k };
	r = (struct iovec){ (void *)(uintptr_t)(p->laddr + p->ltaken), k };
	if (k && process_vm_readv(getpid(), &l, 1, &r, 1, 0) != (ssize_t)k) {
		if (!lying())
			fz_fail("the library's offer is not readable: %s", strerror(errno));
		flags = SCIF_BULK_DECLINE | SCIF_BULK_NEVER;
		k = 0;
	}
	for (uint64_t i = 0; i < k && !lying(); i++)
		if (tmp[i] != pat_out(p->frp + i))
			fz_fail("the library's offered byte %llu differs",
				(unsigned long long)(p->frp + i));
	p->ltaken += k;
	p->frp += k;
	__atomic_store_n(&p->c.theirs->bulk_claim.done, (p->lseq << 32) | flags | p->ltaken,
			 __ATOMIC_RELEASE);
	if (flags || p->ltaken == p->llen)
		p->lpending = 0;
	peer_room(p);
}

/* A word of the library's region that its peer may write, set to anything. */
static void peer_poke(struct peer *p, struct fz *f)
{
	struct scif_qp_region *th = p->c.theirs;
	uint64_t *words[] = { &th->in_widx, &th->in_db, &th->peer_tx_wait, &th->in_short.end,
			      &th->in_short.data[0], &th->in_short.data[3], &th->out_ridx,
			      &th->peer_rx_arm, &th->bulk_offer.seq, &th->bulk_offer.pos,
			      &th->bulk_offer.addr, &th->bulk_offer.len, &th->bulk_offer.back,
			      &th->bulk_offer.stop, &th->bulk_claim.seq, &th->bulk_claim.oseq,
			      &th->bulk_claim.off, &th->bulk_claim.len, &th->bulk_claim.dst,
			      &th->bulk_claim.front, &th->bulk_claim.done, &th->bulk_offer.mode,
			      &th->bulk_offer.revoke, &th->bulk_claim.take, &th->bulk_wait.want };
	unsigned int i = fz_u8(f) % (sizeof(words) / sizeof(words[0]));
	uint8_t mode = fz_u8(f);
	uint64_t v = __atomic_load_n(words[i], __ATOMIC_RELAXED);

	switch (mode % 4) {
	case 0:
		v = fz_u64(f);
		break;
	case 1:
		v += (uint64_t)(int64_t)(int16_t)fz_u16(f);
		break;
	case 2:
		v = (uint64_t)(uintptr_t)scratch + fz_u32(f) % SCRATCH;
		break;
	default:
		v = (uint64_t)(uintptr_t)scratch + SCRATCH + fz_u32(f) % GUARD;
		break;
	}
	/* Addresses the library copies into or from are ours: never our own live memory. */
	if ((words[i] == &th->bulk_offer.addr || words[i] == &th->bulk_claim.dst) && mode % 4 < 2)
		v = (uint64_t)(uintptr_t)scratch + SCRATCH + v % GUARD;
	lie();
	__atomic_store_n(words[i], v, mode & 4 ? __ATOMIC_RELEASE : __ATOMIC_RELAXED);
	if (mode & 8)
		send(p->c.lib_bell, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* A claim on the library's offer, with the library copying into our scratch memory. */
static void peer_claim(struct peer *p, struct fz *f)
{
	struct scif_bulk_claim *cl = &p->c.theirs->bulk_claim;
	char buf[4096];

	__atomic_store_n(&cl->oseq, fz_u8(f) & 1 ? fz_u64(f) : p->lseq, __ATOMIC_RELAXED);
	__atomic_store_n(&cl->off, fz_u8(f) & 1 ? fz_u64(f) : p->ltaken, __ATOMIC_RELAXED);
	__atomic_store_n(&cl->len, fz_u32(f) % (2 * IO_MAX), __ATOMIC_RELAXED);
	__atomic_store_n(&cl->dst, (uint64_t)(uintptr_t)scratch + fz_u32(f) % SCRATCH,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&cl->front, (uint64_t)(p->ctag + 1) << 32 | fz_u32(f), __ATOMIC_RELAXED);
	__atomic_store_n(&cl->seq, ++p->ctag, __ATOMIC_RELEASE);
	while (recv(p->c.lib_bell, buf, sizeof(buf), MSG_DONTWAIT) > 0) /* kick its sender */
		;
	lie(); /* its copies land in scratch memory, and the claim may be anything */
}

/*
 * If the application thread is in a blocking call the fuzzer can finish honestly, finish
 * it: feed or drain it for up to 2 s of no progress. A call that then still waits lost a
 * wake-up.
 */
static void peer_settle(struct peer *p)
{
	uint64_t until = fz_now_ms() + 2000, seen = p->frp + p->tsp;

	if (lying() || p->lazy)
		return;
	while (!fz_app_idle(&app, 1)) {
		if (op_buf.kind == APP_RECV) {
			/* Everything it asked for, if the ring lets us (offers are taken too). */
			peer_offer_done(p);
			if (op_buf.start + op_buf.len > p->tsp + (p->opending ? p->olen : 0))
				peer_write(p, (size_t)(op_buf.start + op_buf.len - p->tsp), 0);
		} else if (op_buf.kind == APP_SEND) {
			peer_consume(p, SIZE_MAX);
			peer_take(p, UINT64_MAX, 0);
		}
		peer_bells(p, 0);
		if (lying())
			return;
		if (p->frp + p->tsp != seen) {
			seen = p->frp + p->tsp;
			until = fz_now_ms() + 2000;
		}
		if (fz_now_ms() > until)
			fz_fail("lost wake-up: a blocking scif_%s(%zu) makes no progress for 2 s",
				op_buf.kind == APP_RECV ? "recv" : "send", op_buf.len);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("SCIF_SPIN_US", "2", 1);
	setenv("SCIF_CMA_MIN", FZ_BULK ? "4096" : "0", 1);
	setenv("SCIF_CMA_TRY", FZ_BULK ? "4096" : "0", 1);
	setenv("SCIF_CMA_PROBE", "0", 1);
	fz_init();
	fz_app_start(&app);
	scratch = mmap(NULL, SCRATCH + GUARD, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	appbuf = mmap(NULL, APPBUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED || appbuf == MAP_FAILED ||
	    mprotect(scratch + SCRATCH, GUARD, PROT_NONE))
		fz_fail("mmap: %s", strerror(errno));
	lport = (uint16_t)fz_listener(&lep, 4);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *lib_rings[] = { "4096", "8192", "16384" };
	static const uint32_t rings[] = { 4096, 8192, 65536 };
	struct fz in = { data, size }, *f = &in;
	struct peer p = { 0 };
	int fds0 = fz_fd_count();
	scif_epd_t ep;

	setenv("SCIF_RING_SIZE", lib_rings[fz_u8(f) % 3], 1);
	if (fzp_conn_accept(&p.c, lep, lport, rings[fz_u8(f) % 3], (uint32_t)getpid()))
		return 0;
	ep = p.c.ep;
	__atomic_store_n(&lied, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&hung, 0, __ATOMIC_SEQ_CST);
	lib_rx = lib_tx = 0;
	for (int ops = 0; f->n && ops < 256; ops++) {
		uint8_t op = fz_u8(f);
		size_t n = 1 + fz_u32(f) % IO_MAX;

		switch (op & 15) { /* bit 4 and up: the operation's flags */
		case 0: /* honest bytes to the library (bit 4: without a bell) */
			peer_write(&p, n, op & 16);
			break;
		case 1: /* consume the library's bytes */
			peer_consume(&p, n);
			break;
		case 2: /* account for its bells, arm (bit 4: disarmed, "spinning") */
			peer_bells(&p, op & 16);
			break;
		case 3: /* the library receives (bit 4: blocking) */
		case 4: /* the library sends (bit 4: blocking) */
			if (fz_app_idle(&app, 0)) {
				op_buf = (struct app_op){ .kind = (op & 15) == 3 ? APP_RECV
										 : APP_SEND,
							  .flags = (op & 16) ? 1 : 0, .ep = ep,
							  .len = n, .start = lib_rx };
				fz_app_call(&app, app_run, &op_buf, 2);
			}
			break;
		case 5: /* the library polls */
			if (fz_app_idle(&app, 0)) {
				op_buf = (struct app_op){ .kind = op & 16 ? APP_FDPOLL : APP_POLL,
							  .ep = ep,
							  .events = (short)(POLLIN | POLLOUT) };
				fz_app_call(&app, app_run, &op_buf, 10);
			}
			break;
		case 6: /* a spurious bell, or (bit 4) its bell drained under it */
			if (op & 16) {
				char buf[4096];

				while (recv(p.c.lib_bell, buf, sizeof(buf), MSG_DONTWAIT) > 0)
					;
				p.lazy = 1;
			} else {
				send(p.c.lib_bell, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			break;
		case 7:
			peer_poke(&p, f);
			break;
		case 8: /* bytes scribbled anywhere in its ring */
			for (size_t i = 0, off = fz_u16(f); i < n % 256; i++)
				p.c.theirs->data[(off + i) & (p.c.ring_theirs - 1)] = fz_u8(f);
			lie();
			break;
		case 9: { /* our own header rewritten: the library read it once, at the handshake */
			struct scif_qp_region *me = p.c.mine.map;

			me->ring_size = fz_u32(f);
			me->magic = fz_u64(f);
			me->owner_pid = fz_u32(f);
			break;
		}
		case 10:
			peer_offer(&p, f);
			break;
		case 11:
			peer_offer_done(&p);
			peer_help(&p, f);
			break;
		case 12: /* take the library's offer (bit 4: declining the rest) */
			peer_take(&p, n, op & 16 ? SCIF_BULK_DECLINE | (op & 32 ? SCIF_BULK_NEVER : 0)
						 : 0);
			break;
		case 13:
			peer_claim(&p, f);
			break;
		case 14:
			peer_settle(&p);
			break;
		case 15: /* how much our receiver waits for (a hint: non-blocking offers) */
			__atomic_store_n(&p.c.theirs->bulk_wait.want, op & 16 ? (uint64_t)n : 0,
					 __ATOMIC_RELAXED);
			break;
		default:
			usleep(n % 500);
			break;
		}
	}
	peer_settle(&p);
	/* The fuzzer hangs up: every call the library is in returns, promptly. */
	__atomic_store_n(&hung, 1, __ATOMIC_SEQ_CST);
	fzp_conn_hangup(&p.c);
	if (!fz_app_idle(&app, FZ_HANG_MS))
		fz_fail("a library call still blocked %d s after the peer hung up",
			FZ_HANG_MS / 1000);
	scif_close(ep);
	fz_expect_fds(fds0, FZ_BULK ? "fuzz-bulk" : "fuzz-ring");
	return 0;
}
