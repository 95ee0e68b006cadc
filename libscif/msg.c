// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * msg.c - scif_send()/scif_recv() over the byte rings, and the readiness of the endpoint
 * descriptor. The fast path is system-call free: a waiting side spins briefly, then sleeps
 * in poll() on its descriptor, and the other side rings it only if it may be asleep.
 *
 * Descriptor readiness, kept true whenever no library call runs on the endpoint:
 *   readable  <=> a byte is in our inbound ring (or the peer is gone: POLLHUP)
 *   writable  <=> a byte fits in our outbound ring (best effort: see tx_settle)
 * Readable is driven by "bell" bytes queued on the descriptor: the peer rings when our
 * receiver is *armed*; the receiver disarms only while it spins inside scif_recv() (then it
 * sees the bytes itself), and on its way out re-arms and fixes the descriptor up (rx_settle).
 *
 * Who writes what (ring halves in rb.h):
 *   peer_rx_arm (in the sender's region)   receiver writes: DISARMED or RX_SLEEPING bit |
 *                                          bells accounted (rb.h)
 *   in_db       (in the receiver's region) sender writes: bells rung in total
 *   peer_tx_wait (in the receiver's region) sender writes: its wait sequence
 * Barrier pairs: [M1] sender "store widx; mb; load arm" vs [M2] receiver "store arm; mb;
 * load widx"; [M3] sender "store tx_wait; mb; load ridx" vs [M4] receiver "store ridx; mb;
 * load tx_wait". In each pair at least one side sees the other's store, so no wake-up is lost.
 * A fabric that takes a shadow peer's rings on our side (bell_quiet) leaves one out when
 * our arm word says DISARMED: its "bytes in place; mb; load arm" pairs with [M2] as [M1].
 * A scif_recv() that returns after taking bytes makes [M4] and [M2] one barrier (rx_settle
 * with @room): "store ridx; store arm; mb; load tx_wait; load widx" (ridx and the arm word
 * share a line of the sender's region): one locked instruction less on the receiver's way
 * to its answer.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"

#define PROBE_INTERVAL_NS 100000u /* idle non-blocking calls look for a hang-up this often */

static uint64_t msg_spin_ns = 20000;
/*
 * The longest a sleeper (here and in scif_poll) sleeps before it looks again for itself: a
 * doorbell lost to a transient failure (ENOBUFS, ...) or a wake-up without its eventfd costs
 * this much latency, never a hang. SCIF_WAIT_RECHECK_MS changes it: the tests make it long,
 * so that a wake-up the protocol loses shows up as a stall instead of a second's delay.
 * Written once, by the library's initialisation, before any call can sleep.
 */
int scif__wait_recheck_ms = 1000;

void scif__msg_init(void)
{
	const char *v = getenv("SCIF_SPIN_US");

	if (v && *v)
		msg_spin_ns = strtoull(v, NULL, 10) * 1000u;
	v = getenv("SCIF_WAIT_RECHECK_MS");
	if (v && *v) {
		unsigned long ms = strtoul(v, NULL, 10);

		if (ms >= 1 && ms <= 3600000)
			scif__wait_recheck_ms = (int)ms;
	}
}

/* Publish our receiver's arm word; a store the peer would only re-read is skipped. */
static inline void rx_arm_set(struct scif_endpt *ep, uint64_t v)
{
	if (ep->sh->rx_arm != v) {
		/* Read by the fabric's progress too (bell_quiet): one store. */
		scif__write_once(&ep->sh->rx_arm, v);
		scif__write_once(&scif__qp_theirs(ep)->peer_rx_arm, v);
	}
}

/* A peer that publishes impossible indices loses the connection, and nothing else. */
static int msg_corrupt(struct scif_endpt *ep)
{
	scif_warn("endpoint %d: peer published an invalid ring index; disconnecting", ep->fd);
	scif__epd_disconnect(ep);
	return -ECONNRESET;
}

/*
 * Idle non-blocking calls (nothing to read, no room) ask the kernel whether the peer hung
 * up, at most every PROBE_INTERVAL_NS, so a peer's death is reported by the next call even
 * before the monitor thread has run. A poller makes such calls back to back, so the clock
 * is the coarse one: the precise clock cost an idle scif_recv() as much again (43 against
 * 12 ns on the development VM), and with the coarse one a probe comes at most once per
 * scheduler tick (1-4 ms), which is as soon as anyone needs it.
 */
static int msg_probe(struct scif_endpt *ep)
{
	uint64_t now = scif__coarse_ns();
	struct pollfd p[2] = { { .fd = ep->peer_bell.fd, .events = POLLRDHUP },
			       { .fd = ep->link, .events = POLLRDHUP } };

	if (now - scif__read_once(&ep->sh->last_probe) < PROBE_INTERVAL_NS)
		return 0;
	scif__write_once(&ep->sh->last_probe, now);
	if (poll(p, 2, 0) > 0 && ((p[0].revents | p[1].revents) & (POLLRDHUP | POLLHUP | POLLERR))) {
		scif__epd_disconnect(ep);
		return 1;
	}
	return 0;
}

/* The sleeping primitive: poll the endpoint descriptor (and @extra), interruptible. */
int scif__msg_wait(struct scif_endpt *ep, int extra, short events, int timeout_ms)
{
	struct pollfd p[3];
	int n = 0, ret, wfd = scif__load_acquire(&ep->wake_fd);

	if (wfd < 0) {
		/* Created on first sleep; scif_close() writes it to wake this process's sleepers. */
		int fresh = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), exp = -1;

		if (fresh < 0) {
			/* No descriptor for it: sleep in short slices and watch closing instead. */
			if (timeout_ms < 0 || timeout_ms > 100)
				timeout_ms = 100;
		} else if (__atomic_compare_exchange_n(&ep->wake_fd, &exp, fresh, 0,
						       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			wfd = fresh;
		} else {
			close(fresh);
			wfd = exp;
		}
	}
	if (timeout_ms < 0 || timeout_ms > scif__wait_recheck_ms)
		timeout_ms = scif__wait_recheck_ms;
	scif__atomic_inc(&ep->waiters);
	if (scif__load_acquire(&ep->closing)) {
		scif__atomic_dec(&ep->waiters);
		return -EINTR;
	}
	p[n++] = (struct pollfd){ .fd = ep->fd, .events = events };
	if (wfd >= 0)
		p[n++] = (struct pollfd){ .fd = wfd, .events = POLLIN };
	if (extra >= 0)
		p[n++] = (struct pollfd){ .fd = extra, .events = POLLIN };
	scif__fab_sleep(1);
	ret = poll(p, (nfds_t)n, timeout_ms);
	scif__fab_sleep(0);
	scif__atomic_dec(&ep->waiters);
	if (ret < 0 && errno == EINTR)
		return -EINTR;
	if (ret < 0) /* no memory for the poll: the caller looks again, a little later */
		usleep(1000);
	if (scif__load_acquire(&ep->closing))
		return -EINTR;
	return 0;
}

/*
 * Make the descriptor writable (drain the parked message off the bell) or unwritable (park
 * one). Callers hold the send lock, or own the endpoint during a connect.
 */
void scif__msg_set_writable(struct scif_endpt *ep, int writable)
{
	static const char junk[4096];

	if (writable) {
		scif__fab.ops->drain(ep->bell.fd);
		scif__write_once(&ep->sh->junked, 0);
	} else {
		/*
		 * Park one even if one was parked: the peer's unpark drains the bell without
		 * telling us, and the flag would then leave the descriptor writable while the
		 * ring is full (a blocked sender's poll() returned at once, and it spun). A
		 * second message beside one still parked changes nothing: the send buffer
		 * takes two at most, and the first already made the descriptor unwritable.
		 */
		if (send(ep->fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0 ||
		    errno == EAGAIN)
			scif__write_once(&ep->sh->junked, 1);
	}
}

static void rx_notify_room(struct scif_endpt *ep);
static void rx_room_check(struct scif_endpt *ep);

/* ---- receive side ---------------------------------------------------------------------- */

/*
 * Leaving scif_recv() (recv lock held): re-arm and make "descriptor readable <=> bytes in
 * the ring" true again, with a bell of our own if data came in while we were disarmed.
 * With @retry (a call that took nothing and may look again), data that came in meanwhile
 * is left for the caller to take instead: returns 1 without ringing, the arm word already
 * published, and the caller reads and settles again. A non-blocking receiver polling in a
 * loop is mostly between its look at the ring and this one, so otherwise nearly every
 * message cost it a bell to itself and a drain (three system calls per message).
 */
static int rx_settle_retry(struct scif_endpt *ep, int retry, int room)
{
	struct scif_ep_shared *sh = ep->sh;
	/* Acquire pairs with the sender's release of in_db in tx_notify. */
	uint64_t db = scif__load_acquire(&scif__qp_mine(ep)->in_db);
	long avail;

	rx_arm_set(ep, sh->rx_seen);
	/*
	 * [M2] arm before looking at widx; pairs with [M1] in tx_notify. With @room it is also
	 * [M4] for the bytes this call consumed (out_ridx, stored by scif__rb_read): one
	 * barrier per call instead of two.
	 */
	scif__mb();
	if (room)
		rx_room_check(ep);
	avail = scif__rb_avail(&ep->rx, &sh->rx);
	if (avail > 0 || scif__bulk_pending(ep)) {
		if (retry)
			return 1;
		if (db == sh->rx_seen && !sh->self_bell) {
			scif__fab.ops->ring(&ep->bell);
			scif__write_once(&sh->self_bell, 1);
		}
		return 0;
	}
	if (db == sh->rx_seen && !sh->self_bell)
		return 0;
	/* Empty ring with bells queued: take them off, then look once more. */
	scif__bell_drain(ep);
	scif__write_once(&sh->rx_seen, db);
	scif__write_once(&sh->self_bell, 0);
	rx_arm_set(ep, sh->rx_seen);
	scif__mb(); /* [M2] again, for the new arm word */
	if (scif__rb_avail(&ep->rx, &sh->rx) > 0 || scif__bulk_pending(ep)) {
		scif__fab.ops->ring(&ep->bell);
		scif__write_once(&sh->self_bell, 1);
	}
	return 0;
}

static void rx_settle(struct scif_endpt *ep, int room)
{
	rx_settle_retry(ep, 0, room);
}

/* Something to look at: bytes in the ring, *w moved away from v, or a state change. */
static inline int rx_moved(const struct scif_endpt *ep, const uint64_t *w, uint64_t v)
{
	return scif__read_once(&scif__qp_mine(ep)->in_widx) != ep->sh->rx.idx || scif__read_once(w) != v ||
	       scif__epd_state(ep) != SCIFEP_CONNECTED;
}

/* Spin disarmed until rx_moved() or the spin time is up; 1 if it moved. */
static int rx_spin(struct scif_endpt *ep, const uint64_t *w, uint64_t v)
{
	uint64_t until = 0; /* the clock is read only once a wait is not short */
	void (*poll)(int) = scif__fab.ops->poll;

	if (!msg_spin_ns)
		return 0;
	rx_arm_set(ep, SCIF_DISARMED | ep->sh->rx_seen);
	for (unsigned int i = 1;; i++) {
		if (rx_moved(ep, w, v))
			return 1;
		/* A fabric whose incoming bytes land only when progressed: progress it. */
		if (__builtin_expect(poll != NULL, 0) && (i & 63) == 0)
			poll(1);
		if ((i & 255) == 0) {
			uint64_t now = scif__now_ns();

			if (!until)
				until = now + msg_spin_ns;
			else if (now > until)
				return 0;
		}
		scif__cpu_relax();
	}
}

/*
 * Wait for inbound bytes or an offer: spin disarmed, then sleep armed. 0, -EINTR or
 * -ECONNRESET.
 */
static int rx_wait(struct scif_endpt *ep)
{
	const uint64_t *offer = &scif__qp_mine(ep)->bulk_offer.seq;

	if (rx_spin(ep, offer, ep->sh->rx_oseq))
		return 0;
	/* Armed again; bytes that came in meanwhile are read by the caller, not rung for. */
	if (rx_settle_retry(ep, 1, 0) || rx_moved(ep, offer, ep->sh->rx_oseq))
		return 0;
	/*
	 * Only a hint, so no barrier: a sender that sees it rings without its grace; one that
	 * does not rings after it. The next arm-word store (disarm, settle) clears it.
	 */
	rx_arm_set(ep, SCIF_RX_SLEEPING | ep->sh->rx_seen);
	return scif__msg_wait(ep, -1, POLLIN, -1);
}

/*
 * Inside scif_recv(), taking an offer (bulk.c): the receiver looks at the sender's words
 * itself until it leaves (rx_settle re-arms), so the sender's kicks need ring no bell.
 */
void scif__msg_rx_busy(struct scif_endpt *ep)
{
	rx_arm_set(ep, SCIF_DISARMED | ep->sh->rx_seen);
}

/*
 * Wait inside scif_recv() for a word the sender changes (bulk.c). Unlike rx_wait, the
 * descriptor is not made "readable <=> data" here (an offer being consumed is pending and
 * would make it readable at once): queued bells are taken off and the receiver armed, so
 * the sender's next kick is the one that wakes us. rx_settle fixes the descriptor up when
 * scif_recv() returns.
 */
int scif__msg_rx_sleep(struct scif_endpt *ep, const uint64_t *w, uint64_t v)
{
	struct scif_ep_shared *sh = ep->sh;

	if (rx_spin(ep, w, v))
		return 0;
	scif__bell_drain(ep);
	/* Acquire pairs with the sender's release of in_db in tx_notify. */
	scif__write_once(&sh->rx_seen, scif__load_acquire(&scif__qp_mine(ep)->in_db));
	scif__write_once(&sh->self_bell, 0);
	rx_arm_set(ep, sh->rx_seen);
	scif__mb(); /* [M2] arm before looking; pairs with [M1] in tx_notify */
	if (rx_moved(ep, w, v))
		return 0;
	return scif__msg_wait(ep, -1, POLLIN, -1);
}

/*
 * A non-blocking scif_recv() on a quiet endpoint: the ring empty, no offer, the receiver
 * armed with every doorbell accounted for and none of its own queued (so the descriptor is
 * not readable, as the last call left it), no hang-up probe due. Such a call has nothing to
 * take and nothing to settle, so it returns 0 without the lock, barriers or stores: a
 * program that polls (a libfabric provider) makes several of these for every message, and
 * the full path's settle took the lock and two barriers each time and, when a message came
 * in between its looks, rang the receiver's own bell and drained it again (two system calls:
 * in fabtests' tagged ping-pong over the provider, about 20 % of messages, against 0.3 %
 * now; docs/architecture.md section 7).
 *
 * Read without the lock, so what it reads may be a moment old: the fields are written with
 * single stores (write_once) by the holder of the lock, and any disagreement sends the call
 * down the full path. The arm word it finds was published, with [M2] after it, by the call
 * that settled last, so a sender that publishes after that sees it and rings: its bytes
 * (in_widx, loaded with acquire) or its doorbell (in_db) show here, or the call races with
 * them as any non-blocking call may, and the next one takes them.
 */
static inline int rx_quiet(const struct scif_endpt *ep)
{
	const struct scif_ep_shared *sh = ep->sh;
	const struct scif_qp_region *mine = scif__qp_mine(ep);
	uint64_t seen = scif__read_once(&sh->rx_seen);

	return scif__load_acquire(&mine->in_widx) == scif__read_once(&sh->rx.idx) &&
	       scif__read_once(&sh->rx_arm) == seen && !scif__read_once(&sh->self_bell) &&
	       scif__load_acquire(&mine->in_db) == seen && !scif__read_once(&sh->rx_want) &&
	       !scif__bulk_offered(ep) &&
	       scif__coarse_ns() - scif__read_once(&sh->last_probe) < PROBE_INTERVAL_NS;
}

int scif__msg_recv(struct scif_endpt *ep, void *msg, int len, int flags)
{
	struct scif_ep_shared *sh = ep->sh;
	uint8_t *buf = msg;
	int got = 0, ret = 0, retried = 0;
	uint32_t st = scif__epd_state(ep);

	if (st != SCIFEP_CONNECTED && st != SCIFEP_DISCONNECTED)
		return -ENOTCONN;
	if (!flags && len > 0 && st == SCIFEP_CONNECTED && rx_quiet(ep)) {
		/* A fabric that lands bytes only when progressed: progress it, and look again. */
		if (__builtin_expect(scif__fab.ops->poll == NULL, 1))
			return 0;
		scif__fab.ops->poll(0);
		if (rx_quiet(ep))
			return 0;
	}
	scif__lock(&sh->recv_lock);
	for (;;) {
		/* State first: bytes the peer wrote before leaving are visible once it is gone. */
		st = scif__epd_state(ep);
		long n = scif__rb_read(&ep->rx, &sh->rx, buf + got, (size_t)(len - got));

		if (n == 0 && scif__bulk_offered(ep))
			n = scif__bulk_recv(ep, buf + got, (size_t)(len - got), flags);
		if (n == -EPROTO) {
			ret = msg_corrupt(ep);
			break;
		}
		if (n < 0) {
			ret = (int)n;
			break;
		}
		if (n > 0) {
			got += (int)n;
			/* A call that returns now answers the sender on its way out ([M4] there). */
			if (got == len)
				break;
			rx_notify_room(ep);
		}
		if (got == len)
			break;
		if (st == SCIFEP_DISCONNECTED) {
			ret = -ECONNRESET;
			break;
		}
		if (!flags) {
			if (!got && msg_probe(ep))
				continue;
			/* Bytes that came in since we looked: take them (settles again below). */
			if (!got && !retried && st == SCIFEP_CONNECTED && rx_settle_retry(ep, 1, 0)) {
				retried = 1;
				continue;
			}
			break;
		}
		if (scif__load_acquire(&ep->closing)) {
			ret = -EINTR;
			break;
		}
		/* A long wait: the peer's non-blocking sends may offer single copies (bulk.c). */
		scif__bulk_want(ep, (size_t)(len - got));
		ret = rx_wait(ep);
		if (ret)
			break;
	}
	if (sh->rx_want)
		scif__bulk_want(ep, 0);
	/* Not after a disconnect: the bell byte left then must stay unread (nodeqp.c). */
	if (scif__epd_state(ep) == SCIFEP_CONNECTED)
		rx_settle(ep, 1);
	else if (got)
		rx_notify_room(ep);
	scif__unlock(&sh->recv_lock);
	return got ? got : ret;
}

/* ---- send side ------------------------------------------------------------------------- */

/*
 * After publishing bytes: ring the peer if its receiver is armed and has seen our bells.
 * An armed receiver that is about to call scif_recv again (a ping-pong: it has just sent its
 * answer) disarms within a few hundred nanoseconds, so we watch its arm word, on the line we
 * already hold, for up to BELL_GRACE spins before paying for a doorbell. Skipping is safe
 * when it disarms (it then looks at the ring after [M2], after our widx) or when it has
 * consumed everything we sent (nothing left to make readable). A receiver asleep in
 * scif_recv() or scif_poll() says so in its arm word (SCIF_RX_SLEEPING): it will not disarm
 * before it is woken, so it is rung at once (the grace is 64 pauses, 1.5-4 us here).
 */
#define BELL_GRACE 64

static void tx_notify(struct scif_endpt *ep, int grace)
{
	struct scif_ep_shared *sh = ep->sh;
	const struct scif_qp_region *mine = scif__qp_mine(ep);
	uint64_t arm, ridx0;

	if (__builtin_expect(ep->tx.flush != NULL, 0)) {
		/*
		 * A shadow fabric (remote writes): the receiver's arm word and our index cross on
		 * the wire, so no barrier pairs them. Ring every time instead; the bell follows
		 * the bytes on the link, in order.
		 */
		sh->db_sent++;
		scif__write_once(&scif__qp_theirs(ep)->in_db, sh->db_sent);
		scif__rb_flush_idx(&ep->tx, SCIF_FLUSH_MORE); /* in_widx and in_db */
		scif__fab.ops->ring(&ep->peer_bell);
		return;
	}
	scif__mb(); /* [M1] widx before the arm word; pairs with [M2] in rx_settle */
	arm = scif__read_once(&mine->peer_rx_arm);
	/* A receiver that is consuming (streaming) will not disarm soon: ring at once then. */
	ridx0 = scif__read_once(&mine->out_ridx);
	if (arm & SCIF_RX_SLEEPING)
		grace = 0;
	for (int i = 0; grace && i < BELL_GRACE && !(arm & SCIF_DISARMED) && arm == sh->db_sent;
	     i++) {
		uint64_t ridx = scif__read_once(&mine->out_ridx);

		if (ridx == sh->tx.idx)
			return;
		if (ridx != ridx0)
			break;
		scif__cpu_relax();
		arm = scif__read_once(&mine->peer_rx_arm);
	}
	/* The sleeping hint does not count as a doorbell accounted for: mask it off. */
	if (!(arm & SCIF_DISARMED) && (arm & ~SCIF_RX_SLEEPING) == sh->db_sent) {
		sh->db_sent++;
		/* Release pairs with the receiver's acquire of in_db in rx_settle. */
		scif__store_release(&scif__qp_theirs(ep)->in_db, sh->db_sent);
		scif__fab.ops->ring(&ep->peer_bell);
	}
}

/* No grace: the receiver may wait for a word other than the ring index (bulk.c). */
void scif__msg_kick_rx(struct scif_endpt *ep)
{
	tx_notify(ep, 0);
}

/* After consuming bytes: if the peer's sender asked for room, make its descriptor writable. */
static void rx_room_check(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;
	uint64_t want = scif__read_once(&scif__qp_mine(ep)->peer_tx_wait);

	if (want != sh->tx_seen) {
		sh->tx_seen = want;
		scif__fab.ops->unpark(&ep->peer_bell);
	}
}

static void rx_notify_room(struct scif_endpt *ep)
{
	scif__mb(); /* [M4] ridx before tx_wait; pairs with [M3] in tx_arm */
	rx_room_check(ep);
}

void scif__msg_kick_tx(struct scif_endpt *ep)
{
	rx_notify_room(ep);
}

/* Ask the receiver to wake us when room appears; returns the room seen after asking. */
static long tx_arm(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;

	scif__msg_set_writable(ep, 0);
	sh->tx_wait++;
	scif__write_once(&scif__qp_theirs(ep)->peer_tx_wait, sh->tx_wait);
	scif__mb(); /* [M3] pairs with [M4] in rx_notify_room */
	if (__builtin_expect(ep->tx.flush != NULL, 0)) {
		/* Shadow fabric: [M3] is the fabric's two-way fence (fabric.h region_fence). */
		scif__rb_flush(&ep->tx, &scif__qp_theirs(ep)->peer_tx_wait,
			       sizeof(scif__qp_theirs(ep)->peer_tx_wait), 0);
		if (scif__fab.ops->region_fence(&ep->theirs, ep->link) < 0) {
			/* The peer is gone: no room will come; the waiters see the reset. */
			scif__epd_disconnect(ep);
			return 0;
		}
	}
	return scif__rb_space(&ep->tx, &sh->tx);
}

/* Leaving scif_send() with a full ring: make the descriptor unwritable until room appears. */
static int tx_settle(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;
	/* Room by what we last saw is room indeed (the consumer only frees more). */
	long room = (long)(ep->tx.size - (sh->tx.idx - sh->tx.cache));

	if (room == 0)
		room = scif__rb_space(&ep->tx, &sh->tx);

	if (room == 0)
		room = tx_arm(ep);
	if (room < 0)
		return msg_corrupt(ep);
	if (room > 0 && scif__read_once(&sh->junked))
		scif__msg_set_writable(ep, 1);
	return 0;
}

static inline int tx_moved(const struct scif_endpt *ep, const uint64_t *w1, uint64_t v1,
			   const uint64_t *w2, uint64_t v2)
{
	return scif__read_once(w1) != v1 || scif__read_once(w2) != v2 ||
	       scif__epd_state(ep) != SCIFEP_CONNECTED;
}

/*
 * Wait inside scif_send() for the receiver to change one of two words (its read index when
 * the ring is full, its claim and done words for bulk.c): spin, then ask to be woken (the
 * receiver's rx_notify_room answers: it drains our parked message) and sleep. A descriptor
 * left unwritable here is fixed up by tx_settle when scif_send() returns.
 */
int scif__msg_tx_sleep(struct scif_endpt *ep, const uint64_t *w1, uint64_t v1, const uint64_t *w2,
		       uint64_t v2)
{
	uint64_t until = 0;
	void (*poll)(int) = scif__fab.ops->poll;

	for (unsigned int i = 1; msg_spin_ns; i++) {
		if (tx_moved(ep, w1, v1, w2, v2))
			return 0;
		if (__builtin_expect(poll != NULL, 0) && (i & 63) == 0)
			poll(1);
		if ((i & 255) == 0) {
			uint64_t now = scif__now_ns();

			if (!until)
				until = now + msg_spin_ns;
			else if (now > until)
				break;
		}
		scif__cpu_relax();
	}
	if (tx_arm(ep) < 0)
		return -EPROTO;
	if (tx_moved(ep, w1, v1, w2, v2))
		return 0;
	return scif__msg_wait(ep, -1, POLLOUT, -1);
}

/* Wait for room in the outbound ring; 0, -EINTR or -ECONNRESET. */
static int tx_wait(struct scif_endpt *ep)
{
	const uint64_t *ridx = &scif__qp_mine(ep)->out_ridx;
	uint64_t seen = ep->sh->tx.cache;
	int ret = scif__msg_tx_sleep(ep, ridx, seen, ridx, seen);

	return ret == -EPROTO ? msg_corrupt(ep) : ret;
}

/*
 * Which sends offer a single copy (bulk.c) is decided by length alone, the same way every
 * time: blocking ones from SCIF_CMA_MIN, non-blocking ones from SCIF_CMA_TRY when the
 * receiver waits for them. The crossover, measured (docs/architecture.md 7a), is where
 * the ring's two copies cost more than the system call and page pinning of one.
 */
int scif__msg_send(struct scif_endpt *ep, void *msg, int len, int flags)
{
	struct scif_ep_shared *sh = ep->sh;
	const uint8_t *buf = msg;
	int sent = 0, ret = 0, bulk;
	size_t min = flags ? scif__bulk_min : scif__bulk_try;
	uint32_t st = scif__epd_state(ep);

	if (st == SCIFEP_DISCONNECTED)
		return -ECONNRESET;
	if (st != SCIFEP_CONNECTED)
		return -ENOTCONN;
	scif__lock(&sh->send_lock);
	bulk = min && (size_t)len >= min && scif__bulk_tx_ok(ep);
	for (;;) {
		long n;

		if (scif__epd_state(ep) != SCIFEP_CONNECTED) {
			ret = -ECONNRESET;
			break;
		}
		if (bulk && (size_t)(len - sent) >= min) {
			size_t part = (size_t)(len - sent) < SCIF_BULK_MAX ? (size_t)(len - sent)
									 : SCIF_BULK_MAX;

			n = scif__bulk_send(ep, buf + sent, part, !flags);
			if (n == -EPROTO) {
				ret = msg_corrupt(ep);
				break;
			}
			if (n < 0) {
				ret = (int)n;
				break;
			}
			sent += (int)n;
			/* Declined (or not offered): the rest goes through the ring; so does the
			 * rest of a non-blocking send, which offers once. */
			if ((size_t)n < part || !flags)
				bulk = 0;
			if (sent == len)
				break;
			continue;
		}
		n = scif__rb_write(&ep->tx, &sh->tx, buf + sent, (size_t)(len - sent));
		if (n < 0) {
			ret = msg_corrupt(ep);
			break;
		}
		if (n > 0) {
			sent += (int)n;
			tx_notify(ep, 1);
		}
		if (sent == len)
			break;
		if (!flags) {
			if (!sent)
				msg_probe(ep);
			break;
		}
		if (scif__load_acquire(&ep->closing)) {
			ret = -EINTR;
			break;
		}
		ret = tx_wait(ep);
		if (ret)
			break;
	}
	if (scif__epd_state(ep) == SCIFEP_CONNECTED) {
		int r = tx_settle(ep);

		if (r && !ret)
			ret = r;
	}
	scif__unlock(&sh->send_lock);
	if (!sent && !ret && scif__epd_state(ep) == SCIFEP_DISCONNECTED)
		ret = -ECONNRESET;
	return sent ? sent : ret;
}

/*
 * What scif_poll reports for a connected or disconnected endpoint. With @arm, also make
 * sure the descriptor will wake a poll() for what is not ready yet.
 */
short scif__msg_revents(struct scif_endpt *ep, short events, int arm)
{
	struct scif_ep_shared *sh = ep->sh;
	uint32_t st = scif__epd_state(ep);
	short rev = 0;
	long n;

	n = (long)(scif__load_acquire(&scif__qp_mine(ep)->in_widx) - scif__read_once(&sh->rx.idx));
	if ((events & POLLIN) && (n > 0 || scif__bulk_pending(ep)))
		rev |= POLLIN;
	if (st == SCIFEP_DISCONNECTED)
		return rev | POLLHUP;
	if (n < 0 || n > (long)ep->rx.size)
		rev |= POLLERR;
	if (events & POLLOUT) {
		uint64_t ridx = scif__load_acquire(&scif__qp_mine(ep)->out_ridx);

		if (ep->tx.size - (scif__read_once(&sh->tx.idx) - ridx) > 0)
			rev |= POLLOUT;
		else if (arm && scif__trylock(&sh->send_lock)) {
			if (tx_settle(ep) == 0 && scif__rb_space(&ep->tx, &sh->tx) > 0)
				rev |= POLLOUT;
			scif__unlock(&sh->send_lock);
		}
	}
	if (arm && !(rev & POLLIN) && (events & POLLIN) && scif__trylock(&sh->recv_lock)) {
		rx_settle(ep, 0);
		/* About to sleep in poll(): the sender may ring without its grace (tx_notify). */
		rx_arm_set(ep, SCIF_RX_SLEEPING | sh->rx_seen);
		scif__unlock(&sh->recv_lock);
	}
	return rev;
}
