// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bulk.c - single-copy transfers of large messages between processes of one host.
 *
 * Through the ring every byte is copied twice (sender into the ring, receiver out of it).
 * For a long send the sender instead publishes an *offer* (where the bytes are in
 * its address space) at the head of the stream, and the receiver copies them into its own
 * buffer with process_vm_readv(). Both threads are inside the library anyway, so the
 * receiver also publishes a *claim* (where its buffer is) and the sender copies the same
 * claim from the other end with process_vm_writev(): each byte is copied once, and the two
 * cores share the work.
 *
 * Sharing a claim without locks (the words are in bulk.h). The receiver copies chunks from
 * the front, the sender from the back. Before copying a chunk, each announces how far it
 * goes (receiver: front = end of its chunk; sender: back = start of its chunk), issues a
 * full barrier, and reads the other's word: [B1] receiver "store front; mb; load back" vs
 * [B2] sender "store back; mb; load front". At least one sees the other, so a chunk is never
 * skipped by both: the sender never copies below the front it sees, and the receiver stops
 * once its front passes the back it sees (a chunk both copy is written twice with the same
 * bytes, which is harmless). The receiver also looks at back before announcing a chunk,
 * and announces none once the sender has announced the rest, so that the last chunk is
 * not copied by both as a rule. At the end the receiver closes the claim (front = its end):
 * a sender that has not announced anything by then sees that and copies nothing, and a
 * sender that has is waited for (its stop word) before the buffer goes back to the caller.
 *
 * When the direct copy pays. process_vm_readv() costs about 1.2 us per call and pins the
 * other process's pages one by one (cheaper on huge pages), and a blocking send waits for
 * its receiver's copy, while the ring's two copies overlap on two cores (19-21 GB/s on the
 * 2-vCPU machines from 64 KiB on). Measured there, the ring wins up to 256 KiB (3x the
 * bandwidth at 64 KiB, 1.2-1.4x at 256 KiB) and one copy from 512 KiB (1.1-1.5x). So every
 * blocking send from SCIF_CMA_MIN (512 KiB) on is offered, every time: a constant, not a
 * measurement that could come out differently from one run to the next
 * (docs/architecture.md 7a). The old
 * timing probe (time the first chunk against a memcpy measured once, decline below half of
 * it) compared against the wrong thing, a cache-hot memcpy rather than the ring, and declined
 * offers three times faster than the ring on most runs; it stays behind SCIF_CMA_PROBE=1. A
 * declined offer's rest goes through the ring, and no offers are made for the next BULK_SKIP
 * large sends. A peer that cannot be reached at all (another user, a fork child, EPERM from
 * Yama) is declined for good.
 *
 * Non-blocking sends (from SCIF_CMA_TRY) offer only to a receiver that said it waits in
 * scif_recv() for as much (want), and only what it wants. The receiver takes such an offer
 * whole or declines it at once; it commits first ([B4] take), and the sender withdraws an
 * offer not committed to within SCIF_CMA_WAIT_US ([B3] revoke): the pair makes sure the
 * sender never returns while the receiver may still read its buffer.
 *
 * What a hostile peer can do: name addresses in its *own* address space (we only ever copy
 * from or into the process the link's credentials name, and only within the caller's
 * buffer on our side), publish impossible offsets (-EPROTO: the connection is dropped), or
 * never finish (a blocking caller blocks, as it would for a peer that never sends; a
 * non-blocking send whose offer the peer committed to and does not finish within
 * bulk_nb_copy_ns() drops the connection instead).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "bulk.h"
#include "epd.h"
#include "log.h"

#define BULK_CHUNK (256u << 10)     /* unit of the split and of the speed probe */
#define BULK_SPLIT_MIN (32u << 10)  /* claims from this long are copied from both ends */
#define BULK_SKIP 16                /* large sends without offers after a slow one */
#define BULK_LINGER_MS 200          /* wait for a disconnected sender's last copy this long */

size_t scif__bulk_min = 512u << 10;
size_t scif__bulk_try = 64u << 10;
uint64_t scif__bulk_nb_wait_ns = 100000u;
static int bulk_probe; /* SCIF_CMA_PROBE=1: decline offers slower than half of memcpy */

/*
 * Our process id, without a system call per message: cleared in a fork child (pthread_atfork)
 * and looked up again there. A child made without the fork handlers (a raw clone) that uses
 * its parent's endpoint would be taken for its parent; such a child may not call libscif.
 */
static pid_t bulk_self;

static void bulk_atfork_child(void)
{
	__atomic_store_n(&bulk_self, 0, __ATOMIC_RELAXED);
}

static uint32_t bulk_getpid(void)
{
	pid_t p = __atomic_load_n(&bulk_self, __ATOMIC_RELAXED);

	if (!p) {
		p = getpid();
		__atomic_store_n(&bulk_self, p, __ATOMIC_RELAXED);
	}
	return (uint32_t)p;
}

/*
 * How a claim of @k bytes is split: each side copies pieces of this many bytes, the
 * receiver from the front, the sender from the back; a short claim in two halves.
 */
static inline uint64_t bulk_piece(uint64_t k)
{
	return k >= 2 * BULK_CHUNK ? BULK_CHUNK : ((k / 2 + 4095) & ~4095ull);
}

void scif__bulk_init(void)
{
	pthread_atfork(NULL, NULL, bulk_atfork_child);
	const char *v = getenv("SCIF_CMA_MIN");

	if (v && *v)
		scif__bulk_min = (size_t)strtoull(v, NULL, 0);
	v = getenv("SCIF_CMA_TRY");
	if (v && *v)
		scif__bulk_try = (size_t)strtoull(v, NULL, 0);
	v = getenv("SCIF_CMA_WAIT_US");
	if (v && *v)
		scif__bulk_nb_wait_ns = strtoull(v, NULL, 0) * 1000u;
	v = getenv("SCIF_CMA_PROBE");
	if (v && *v)
		bulk_probe = atoi(v) != 0;
}

/* ---- how fast a plain copy is here (bytes per ns), measured once per process ----------- */

static double bulk_ref_rate;
static pthread_once_t bulk_ref_once = PTHREAD_ONCE_INIT;

static void bulk_measure(void)
{
	const size_t n = 1u << 20;
	uint8_t *a = mmap(NULL, 2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t best = UINT64_MAX;

	if (a == MAP_FAILED) {
		bulk_ref_rate = 0; /* every direct copy then counts as fast enough */
		return;
	}
	memset(a, 1, 2 * n);
	for (int i = 0; i < 4; i++) {
		uint64_t t = scif__now_ns();

		memcpy(a + n, a, n);
		__asm__ __volatile__("" ::"r"(a) : "memory");
		t = scif__now_ns() - t;
		if (i && t < best)
			best = t;
	}
	munmap(a, 2 * n);
	bulk_ref_rate = best ? (double)n / (double)best : 0;
}

/* A copy of @n bytes that took @ns ran at under half the speed of memcpy. */
static int bulk_slow(size_t n, uint64_t ns)
{
	if (!bulk_probe)
		return 0;
	pthread_once(&bulk_ref_once, bulk_measure);
	return (double)n < 0.5 * bulk_ref_rate * (double)ns;
}

/* ---- the two copies ------------------------------------------------------------------- */

/*
 * Copy @n bytes between ours at @local and the peer's at @raddr (@to_peer: ours to theirs);
 * bytes copied (a prefix) or -errno.
 */
static long bulk_copy(const struct scif_endpt *ep, uint8_t *local, uint64_t raddr, size_t n,
		      int to_peer)
{
	struct iovec l = { .iov_base = local, .iov_len = n };
	struct iovec r = { .iov_base = (void *)(uintptr_t)raddr, .iov_len = n };
	ssize_t done;

	do
		done = to_peer ? process_vm_writev(ep->bulk_pid, &l, 1, &r, 1, 0)
			       : process_vm_readv(ep->bulk_pid, &l, 1, &r, 1, 0);
	while (done < 0 && errno == EINTR);
	return done < 0 ? -errno : (long)done;
}

/* A claim word (tag << 32 | offset) for claim @tag, or @none if it is another claim's. */
static inline uint64_t bulk_word(uint64_t w, uint32_t tag, uint64_t none)
{
	return (uint32_t)(w >> 32) == tag ? (uint32_t)w : none;
}

/* ---- sender -------------------------------------------------------------------------- */

int scif__bulk_tx_ok(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;

	return ep->bulk_pid && !sh->tx_bulk_off && bulk_getpid() == scif__qp_mine(ep)->owner_pid;
}

/*
 * Our part of the receiver's claim @tag: chunks from the back, for as long as the receiver's
 * front has not reached them. The claim was read after an acquire of its tag; re-reading
 * the tag after the fields tells a claim rewritten meanwhile (it is then someone else's).
 */
static int bulk_help(struct scif_endpt *ep, const uint8_t *src, size_t olen, uint32_t tag)
{
	struct scif_bulk_claim *cl = &scif__qp_mine(ep)->bulk_claim;
	struct scif_bulk_offer *of = &scif__qp_theirs(ep)->bulk_offer;
	uint64_t oseq = scif__read_once(&cl->oseq);
	uint64_t off = scif__read_once(&cl->off);
	uint64_t k = scif__read_once(&cl->len);
	uint64_t dst = scif__read_once(&cl->dst);
	uint64_t t = (uint64_t)tag << 32, b, piece;

	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the fields before the second look at seq */
	if ((uint32_t)scif__read_once(&cl->seq) != tag || oseq != ep->sh->tx_oseq)
		return 0;
	if (off > olen || k > olen - off || k == 0)
		return -EPROTO;
	piece = bulk_piece(k);
	for (b = k; b > 0;) {
		uint64_t lo = b > piece ? b - piece : 0, front, ns, n;
		long put;

		scif__write_once(&of->back, t | lo);
		scif__mb(); /* [B2] back before front; pairs with [B1] in bulk_split */
		front = bulk_word(scif__read_once(&cl->front), tag, k);
		if (front > k)
			return -EPROTO;
		if (front > lo)
			lo = front;
		if (lo >= b)
			break;
		n = b - lo;
		ns = scif__now_ns();
		put = bulk_copy(ep, (uint8_t *)src + off + lo, dst + lo, n, 1);
		if (put != (long)n)
			break; /* the receiver copies [lo, b) itself */
		b = lo;
		if (n == BULK_CHUNK && bulk_slow(n, scif__now_ns() - ns))
			break;
	}
	scif_dbg("endpoint %d: claim %u: copied [%llu, %llu) of %llu", ep->fd, tag,
		 (unsigned long long)b, (unsigned long long)k, (unsigned long long)k);
	/* Release pairs with the receiver's acquire of stop: our copies are complete. */
	scif__store_release(&of->stop, t | b);
	scif__msg_kick_rx(ep);
	return 0;
}

/*
 * A non-blocking offer not taken by @deadline: withdraw it. Returns 1 if it is withdrawn
 * (the receiver will not copy any of it), 0 if the receiver committed to it first.
 */
static int bulk_revoke(struct scif_endpt *ep, uint64_t seq)
{
	struct scif_bulk_offer *of = &scif__qp_theirs(ep)->bulk_offer;

	scif__write_once(&of->revoke, seq);
	scif__mb(); /* [B3] revoke before take; pairs with [B4] in scif__bulk_recv */
	if ((uint32_t)scif__read_once(&scif__qp_mine(ep)->bulk_claim.take) == (uint32_t)seq)
		return 0;
	scif_dbg("endpoint %d: offer %llu withdrawn", ep->fd, (unsigned long long)seq);
	return 1;
}

/*
 * Make the receiver look at a new offer. In a stream it is back in scif_recv() within a
 * microsecond or so and answers (a claim, a commitment or its count) without a bell: watch
 * our words for that for up to BULK_KICK_GRACE_NS before paying for a doorbell (which
 * kick_rx rings only if the receiver may be asleep).
 */
#define BULK_KICK_GRACE_NS 3000u

static void bulk_kick_offer(struct scif_endpt *ep, const struct scif_bulk_claim *cl,
			    uint32_t seq)
{
	uint64_t until = 0;

	for (unsigned int i = 1;; i++) {
		/*
		 * An answer to this offer: a claim on it, its count, or a commitment. A claim is
		 * new to us and names this offer: the last offer's claim may still be new, since
		 * a receiver that copied all of it itself gave its count before we looked at the
		 * claim, and it is no answer (taken for one, the kick was skipped and a sleeping
		 * receiver slept through the offer until its 1 s recheck).
		 */
		if (((uint32_t)scif__load_acquire(&cl->seq) != ep->sh->tx_cseq &&
		     scif__read_once(&cl->oseq) == ep->sh->tx_oseq) ||
		    (uint32_t)(scif__read_once(&cl->done) >> 32) == seq ||
		    (uint32_t)scif__read_once(&cl->take) == seq)
			return;
		if ((i & 63) == 0) {
			uint64_t now = scif__now_ns();

			if (!until)
				until = now + BULK_KICK_GRACE_NS;
			else if (now > until)
				break;
		}
		scif__cpu_relax();
	}
	scif__msg_kick_rx(ep);
}

/*
 * How long a non-blocking send waits for a receiver that committed to its offer: as long as
 * any peer may take to answer (SCIF_REQ_TIMEOUT_MS, 10 s), plus 4 ns a byte (0.25 GB/s, a
 * tenth of the slowest process_vm_readv measured): far longer than an honest copy takes
 * even on a machine whose CPUs are oversubscribed, and not a hang.
 */
static uint64_t bulk_nb_copy_ns(size_t len)
{
	return scif__req_timeout_ns() + 4ull * len;
}

long scif__bulk_send(struct scif_endpt *ep, const uint8_t *src, size_t len, int nb)
{
	struct scif_ep_shared *sh = ep->sh;
	struct scif_bulk_offer *of = &scif__qp_theirs(ep)->bulk_offer;
	struct scif_bulk_claim *cl = &scif__qp_mine(ep)->bulk_claim;
	uint64_t seq, done = 0, deadline = 0;
	int taken = !nb;

	if (nb) {
		/* Only to a receiver waiting for at least SCIF_CMA_TRY bytes, and no more. */
		uint64_t want = scif__read_once(&scif__qp_mine(ep)->bulk_wait.want);

		if (want < scif__bulk_try || !want)
			return 0;
		if (len > want)
			len = (size_t)want;
	}
	seq = ++sh->tx_oseq;
	if (seq < sh->tx_skip_until)
		return 0;
	scif__write_once(&of->pos, sh->tx.idx);
	scif__write_once(&of->addr, (uint64_t)(uintptr_t)src);
	scif__write_once(&of->len, (uint64_t)len);
	scif__write_once(&of->mode, nb ? SCIF_BULK_NB : 0);
	/* Release pairs with the receiver's acquire of seq (scif__bulk_pending/_recv). */
	scif__store_release(&of->seq, seq);
	bulk_kick_offer(ep, cl, (uint32_t)seq);
	if (nb)
		deadline = scif__now_ns() + scif__bulk_nb_wait_ns;
	for (unsigned int i = 0;; i++) {
		/* Acquire pairs with the receiver's release of done: its copies are complete. */
		uint64_t dw = scif__load_acquire(&cl->done), cw;
		int ret;

		if ((uint32_t)(dw >> 32) == (uint32_t)seq) {
			uint64_t d = dw & SCIF_BULK_COUNT;

			if (d < done || d > len)
				return -EPROTO;
			done = d;
			if (dw & SCIF_BULK_DECLINE) {
				if (dw & SCIF_BULK_NEVER)
					sh->tx_bulk_off = 1;
				else if (!(dw & SCIF_BULK_NOW))
					sh->tx_skip_until = seq + BULK_SKIP;
				scif_dbg("endpoint %d: offer %llu declined after %llu bytes", ep->fd,
					 (unsigned long long)seq, (unsigned long long)done);
				return (long)done;
			}
			if (done == len)
				return (long)done;
		}
		/* Acquire pairs with the receiver's release of the claim tag (bulk_split). */
		cw = scif__load_acquire(&cl->seq);
		if ((uint32_t)cw != sh->tx_cseq) {
			sh->tx_cseq = (uint32_t)cw;
			ret = bulk_help(ep, src, len, (uint32_t)cw);
			if (ret)
				return ret;
			continue;
		}
		if (scif__epd_state(ep) != SCIFEP_CONNECTED) {
			/*
			 * The receiver may have finished, answered and left after our look at
			 * done above: its last count stands (a send it took whole succeeded).
			 */
			dw = scif__load_acquire(&cl->done);
			if ((uint32_t)(dw >> 32) == (uint32_t)seq &&
			    (dw & SCIF_BULK_COUNT) > done && (dw & SCIF_BULK_COUNT) <= len)
				done = dw & SCIF_BULK_COUNT;
			return done ? (long)done : -ECONNRESET;
		}
		if (!taken) {
			/*
			 * A non-blocking offer: spin (the receiver waits, so it answers in
			 * microseconds) until it commits to the offer or declines it, or until
			 * the deadline, then withdraw it. Once committed, it is waited for
			 * like a blocking one: the receiver's copy is bounded.
			 */
			if ((uint32_t)scif__read_once(&cl->take) == (uint32_t)seq) {
				taken = 1;
				deadline = scif__now_ns() + bulk_nb_copy_ns(len);
				continue;
			}
			if ((i & 63) == 63 && scif__now_ns() > deadline) {
				if (bulk_revoke(ep, seq))
					return 0;
				taken = 1;
				deadline = scif__now_ns() + bulk_nb_copy_ns(len);
			}
			scif__cpu_relax();
			continue;
		}
		/*
		 * A non-blocking send the receiver committed to waits for its copy, but not for
		 * ever: a receiver that has not finished long after any honest copy would have
		 * is broken or hostile, and costs the connection (the caller gets ECONNRESET, or
		 * the count the receiver acknowledged), never a call that does not return.
		 */
		if (nb && scif__now_ns() > deadline) {
			scif_warn("endpoint %d: peer committed to a single copy of %zu bytes and did "
				  "not finish it; disconnecting", ep->fd, len);
			scif__epd_disconnect(ep);
			return done ? (long)done : -ECONNRESET;
		}
		ret = scif__msg_tx_sleep(ep, &cl->done, dw, &cl->seq, cw);
		/*
		 * A signal does not end an offer the receiver may be copying from: the count we
		 * would return could fall short of what it takes, and the application would send
		 * those bytes twice. Only scif_close (or the peer's end) stops us here.
		 */
		if (ret == -EINTR && !scif__load_acquire(&ep->closing))
			continue;
		if (ret)
			return done && ret != -EPROTO ? (long)done : ret;
	}
}

/* ---- receiver ------------------------------------------------------------------------ */

/*
 * An offer is only good while the connection is: a send completes only once its offer is
 * consumed, so an offer still pending after a disconnect was abandoned (its sender failed or
 * left, and its buffer may hold anything by now). Bytes already in the ring stay readable.
 */
int scif__bulk_offered(const struct scif_endpt *ep)
{
	/* Acquire pairs with the sender's release of seq in scif__bulk_send. */
	return scif__load_acquire(&scif__qp_mine(ep)->bulk_offer.seq) !=
		       scif__read_once(&ep->sh->rx_oseq) &&
	       scif__epd_state(ep) == SCIFEP_CONNECTED;
}

/* The non-blocking offer @seq was withdrawn and we did not commit to it. */
static int bulk_withdrawn(const struct scif_endpt *ep, uint64_t seq)
{
	const struct scif_bulk_offer *of = &scif__qp_mine(ep)->bulk_offer;

	return (scif__read_once(&of->mode) & SCIF_BULK_NB) &&
	       scif__read_once(&ep->sh->rx_otake) != seq &&
	       scif__read_once(&of->revoke) == seq;
}

int scif__bulk_pending(const struct scif_endpt *ep)
{
	/* Acquire pairs with the sender's release of seq in scif__bulk_send. */
	uint64_t seq = scif__load_acquire(&scif__qp_mine(ep)->bulk_offer.seq);

	return seq != scif__read_once(&ep->sh->rx_oseq) && !bulk_withdrawn(ep, seq) &&
	       scif__epd_state(ep) == SCIFEP_CONNECTED;
}

void scif__bulk_want(struct scif_endpt *ep, size_t want)
{
	struct scif_ep_shared *sh = ep->sh;

	if (want < scif__bulk_try || !scif__bulk_try || !ep->bulk_pid)
		want = 0;
	if (want != sh->rx_want) {
		scif__write_once(&sh->rx_want, want); /* read lock-free (msg.c rx_quiet) */
		scif__write_once(&scif__qp_theirs(ep)->bulk_wait.want, (uint64_t)want);
	}
}

/*
 * Wait for the sender's stop word of claim @tag; returns the claim offset from which the
 * sender copied everything, or -errno. A sender that disconnected meanwhile may still be
 * finishing a copy into our buffer (another of its threads closed the endpoint): it is given
 * BULK_LINGER_MS to say it stopped before the buffer is handed back anyway.
 */
static long bulk_wait_stop(struct scif_endpt *ep, uint32_t tag, uint64_t k)
{
	const uint64_t *stop = &scif__qp_mine(ep)->bulk_offer.stop;
	int ret = 0;

	for (int linger = 0;;) {
		/* Acquire pairs with the sender's release of stop in bulk_help. */
		uint64_t w = scif__load_acquire(stop);
		uint64_t b = bulk_word(w, tag, UINT64_MAX);

		if (b != UINT64_MAX)
			return b > k ? -EPROTO : (long)b;
		if (ret == -EINTR || scif__epd_state(ep) != SCIFEP_CONNECTED) {
			struct timespec ms = { 0, 1000000 };

			if (linger++ == BULK_LINGER_MS)
				return ret ? ret : -ECONNRESET;
			nanosleep(&ms, NULL);
			continue;
		}
		ret = scif__msg_rx_sleep(ep, stop, w);
		if (ret && ret != -EINTR)
			return ret;
	}
}

/*
 * Copy the @k claimed bytes at offer offset @off (peer address @raddr) into @dst with the
 * sender's help. Returns how many bytes from the start of @dst are in place (all @k, or a
 * prefix when a copy failed: *err then says why), never touching @dst after returning.
 */
static size_t bulk_split(struct scif_endpt *ep, uint8_t *dst, uint64_t raddr, uint64_t off,
			 size_t k, long *err)
{
	struct scif_ep_shared *sh = ep->sh;
	struct scif_bulk_claim *cl = &scif__qp_theirs(ep)->bulk_claim;
	const uint64_t *back = &scif__qp_mine(ep)->bulk_offer.back;
	uint32_t tag = ++sh->rx_cseq;
	uint64_t t = (uint64_t)tag << 32, b = k, f = 0, piece = bulk_piece(k);

	scif__write_once(&cl->front, t);
	scif__write_once(&cl->oseq, sh->rx_ocur);
	scif__write_once(&cl->off, off);
	scif__write_once(&cl->len, (uint64_t)k);
	scif__write_once(&cl->dst, (uint64_t)(uintptr_t)dst);
	/* Release pairs with the sender's acquire of seq in scif__bulk_send. */
	scif__store_release(&cl->seq, (uint64_t)tag);
	scif__msg_kick_tx(ep);
	while (f < k) {
		uint64_t n = k - f < piece ? k - f : piece, ns;
		long got;

		/*
		 * The sender has announced everything from f on: leave it that (announcing
		 * more could only make both copy a piece; the sender copies from the largest
		 * front it saw, which is at most f).
		 */
		b = bulk_word(scif__read_once(back), tag, k);
		if (b > k) {
			*err = -EPROTO;
			break;
		}
		if (b <= f)
			break;
		scif__write_once(&cl->front, t | (f + n));
		scif__mb(); /* [B1] front before back; pairs with [B2] in bulk_help */
		b = bulk_word(scif__read_once(back), tag, k);
		if (b > k) {
			*err = -EPROTO;
			break;
		}
		ns = scif__now_ns();
		got = bulk_copy(ep, dst + f, raddr + f, n, 0);
		if (got != (long)n) {
			*err = got < 0 ? got : -EFAULT;
			f += got > 0 ? (uint64_t)got : 0;
			break;
		}
		f += n;
		if (n == BULK_CHUNK && bulk_slow(n, scif__now_ns() - ns))
			sh->rx_bulk_fast = 0; /* probe again next time */
		if (f >= b)
			break;
	}
	/* Close the claim: a sender that has not announced a chunk yet will see this. */
	scif__write_once(&cl->front, t | k);
	scif__mb(); /* [B1] */
	b = bulk_word(scif__read_once(back), tag, k);
	if (b < k) {
		long stop = bulk_wait_stop(ep, tag, k);

		if (stop < 0) {
			if (!*err)
				*err = stop;
		} else if (!*err && (uint64_t)stop > f) {
			long got = bulk_copy(ep, dst + f, raddr + f, (size_t)stop - f, 0);

			if (got != (long)stop - (long)f) {
				*err = got < 0 ? got : -EFAULT;
				f += got > 0 ? (uint64_t)got : 0;
			} else {
				f = k;
			}
		} else if (!*err) {
			f = k;
		}
	}
	return (size_t)f;
}

/* Tell the sender how much of the offer we consumed (and whether we take more). */
static void bulk_done(struct scif_endpt *ep, uint64_t flags)
{
	struct scif_ep_shared *sh = ep->sh;

	/* Release pairs with the sender's acquire of done: our copies are complete. */
	scif__store_release(&scif__qp_theirs(ep)->bulk_claim.done,
			    (sh->rx_ocur << 32) | flags | sh->rx_odone);
	if (flags || sh->rx_odone == sh->rx_olen)
		scif__write_once(&sh->rx_oseq, sh->rx_ocur);
	scif__msg_kick_tx(ep);
}

/*
 * A non-blocking offer (@seq, @olen bytes left) and a receive that can take @len bytes:
 * commit to the whole offer, or finish it without a byte. Returns 1 if committed, 0 if
 * not (the offer is finished: withdrawn, or declined as too long for this receive).
 */
static int bulk_take(struct scif_endpt *ep, uint64_t seq, uint64_t olen, size_t len)
{
	struct scif_ep_shared *sh = ep->sh;

	if (len < olen) {
		/* It must be taken whole by this call (its sender cannot wait for the next). */
		bulk_done(ep, SCIF_BULK_DECLINE | SCIF_BULK_NOW);
		return 0;
	}
	scif__write_once(&scif__qp_theirs(ep)->bulk_claim.take, seq);
	scif__mb(); /* [B4] take before revoke; pairs with [B3] in bulk_revoke */
	if (scif__read_once(&scif__qp_mine(ep)->bulk_offer.revoke) == seq) {
		scif__write_once(&sh->rx_oseq, seq);
		return 0;
	}
	scif__write_once(&sh->rx_otake, seq);
	return 1;
}

long scif__bulk_recv(struct scif_endpt *ep, uint8_t *dst, size_t len, int block)
{
	struct scif_ep_shared *sh = ep->sh;
	struct scif_bulk_offer *of = &scif__qp_mine(ep)->bulk_offer;
	uint64_t seq = scif__load_acquire(&of->seq), raddr, flags = 0;
	size_t k, f = 0;
	long err = 0;
	int nb;

	if (seq == sh->rx_oseq)
		return 0;
	if (seq != sh->rx_ocur) {
		uint64_t olen = scif__read_once(&of->len);

		/* A new offer: later than the last one, of a sane length, read once. */
		if (seq - sh->rx_oseq > (1ull << 32) || olen == 0 || olen > SCIF_BULK_MAX)
			return -EPROTO;
		sh->rx_ocur = seq;
		sh->rx_opos = scif__read_once(&of->pos);
		sh->rx_oaddr = scif__read_once(&of->addr);
		sh->rx_olen = olen;
		sh->rx_omode = scif__read_once(&of->mode);
		sh->rx_odone = 0;
	}
	nb = (sh->rx_omode & SCIF_BULK_NB) && sh->rx_otake != seq;
	/*
	 * A non-blocking offer its sender withdrew is finished without a byte, wherever our
	 * ring index is: the sender stored revoke before any ring byte after the offer, and we
	 * acquired the ring index past it (if we read such bytes) before this load.
	 */
	if (nb && scif__read_once(&of->revoke) == seq) {
		scif__write_once(&sh->rx_oseq, seq);
		return 0;
	}
	if (sh->rx.idx != sh->rx_opos) {
		/* Ring bytes before the offer: take them first (they are visible by now). */
		uint64_t widx = scif__load_acquire(&scif__qp_mine(ep)->in_widx);

		return sh->rx.idx < sh->rx_opos && widx >= sh->rx_opos ? 0 : -EPROTO;
	}
	if (!ep->bulk_pid) {
		bulk_done(ep, SCIF_BULK_DECLINE | SCIF_BULK_NEVER);
		return 0;
	}
	if (nb && !bulk_take(ep, seq, sh->rx_olen - sh->rx_odone, len))
		return 0;
	scif__msg_rx_busy(ep);
	nb = (sh->rx_omode & SCIF_BULK_NB) != 0;
	k = sh->rx_olen - sh->rx_odone < len ? (size_t)(sh->rx_olen - sh->rx_odone) : len;
	raddr = sh->rx_oaddr + sh->rx_odone;
	if (bulk_probe && !sh->rx_bulk_fast) {
		/* Probe: is a direct copy from this peer worth it? */
		size_t n = k < BULK_CHUNK ? k : BULK_CHUNK;
		uint64_t ns = scif__now_ns();
		long got = bulk_copy(ep, dst, raddr, n, 0);

		if (got != (long)n) {
			err = got < 0 ? got : -EFAULT;
			f = got > 0 ? (size_t)got : 0;
		} else {
			f = n;
			/* Judged on a whole chunk only: a short copy is mostly system call. */
			if (n == BULK_CHUNK) {
				if (bulk_slow(n, scif__now_ns() - ns))
					flags = SCIF_BULK_DECLINE;
				else
					sh->rx_bulk_fast = 1;
			}
		}
	}
	if (!err && !flags && f < k) {
		if (block && k - f >= BULK_SPLIT_MIN && bulk_getpid() == scif__qp_mine(ep)->owner_pid) {
			f += bulk_split(ep, dst + f, raddr + f, sh->rx_odone + f, k - f, &err);
		} else {
			long got = bulk_copy(ep, dst + f, raddr + f, k - f, 0);

			if (got != (long)(k - f))
				err = got < 0 ? got : -EFAULT;
			f += got > 0 ? (size_t)got : 0;
		}
	}
	if (err == -EPROTO)
		return err;
	sh->rx_odone += f;
	if (err && err != -EINTR && err != -ECONNRESET) {
		scif_dbg("endpoint %d: direct copy from pid %d failed: %ld; using the ring", ep->fd,
			 (int)ep->bulk_pid, err);
		flags = SCIF_BULK_DECLINE | SCIF_BULK_NEVER;
		err = 0;
	}
	/* A non-blocking send waits for this call only: what it did not take goes by ring. */
	if (nb && !flags && sh->rx_odone < sh->rx_olen)
		flags = SCIF_BULK_DECLINE | SCIF_BULK_NOW;
	bulk_done(ep, flags);
	return f ? (long)f : err;
}
