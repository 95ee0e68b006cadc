// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * nodeqp.c - the SCIF connection protocol: listen, connect, accept, the handshake that
 * exchanges queue-pair regions and doorbells over the fabric link, and disconnection.
 *
 * Handshake (messages on the link, see struct scif_ctl_msg):
 *   connector                         acceptor
 *   fabric connect ----------------->  (taken off the listen socket by the listener)
 *   CNCT_REQ {region, bell} -------->  pending: POLLIN on the listener once it is here
 *                          <--------  CNCT_GNT {region, bell}, CONNECTED (or CNCT_REJ)
 *   CONNECTED on GNT
 * A hang-up of the link or of a bell at any time means the other side is gone. The
 * acceptor never waits for the connector: a request is pending only once its REQ is there,
 * so a silent or dead connector cannot stall scif_accept, and a connection the connector
 * closes right after scif_connect returned is still accepted (and then reads as closed).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"
#include "nodeqp.h"

#define CONNECT_TIMEOUT_MS 10000 /* spec 3.5: MPSS4's node-alive timeout */
#define REQ_SILENCE_MS 1000      /* a connector sends its REQ with its connect: drop it after */

static uint32_t conn_ring_size(void)
{
	const char *v = getenv("SCIF_RING_SIZE");
	unsigned long x;

	if (!v || !*v)
		return SCIF_RING_DEFAULT;
	x = strtoul(v, NULL, 0);
	if (x < SCIF_RING_MIN || x > SCIF_RING_MAX || (x & (x - 1)))
		return SCIF_RING_DEFAULT;
	return (uint32_t)x;
}

static int ctl_reply_in(struct scif_endpt *ep, const struct scif_ctl_msg *m);
static void conn_disconnect(struct scif_endpt *ep);

static void msg_init(struct scif_ctl_msg *m, uint16_t op, const struct scif_endpt *ep)
{
	scif__ctl_msg_init(m, op, ep);
	m->pid = (uint32_t)getpid();
}

/*
 * Read one control message from the link, waiting up to timeout_ms (negative: forever).
 * Anything malformed is -EPROTO; a hang-up is -ECONNRESET. Received handles land in @fh
 * (*@nfh of them, -1 if lost), the caller's to import or release.
 * With @ep (a blocking connect), a scif_close() of it interrupts the wait (-EINTR).
 */
static int link_read(int link, struct scif_ctl_msg *m, struct scif_fh *fh, int *nfh,
		     int timeout_ms, struct scif_endpt *ep)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : scif__now_ns() + (uint64_t)timeout_ms * 1000000u;
	int cap = *nfh;

	for (;;) {
		struct pollfd p = { .fd = link, .events = POLLIN };
		int ret, wait_ms = -1;

		*nfh = cap;
		ret = scif__fab.ops->link_recv(link, m, sizeof(*m), fh, nfh);
		if (ret == 0)
			return -ECONNRESET;
		if (ret > 0) {
			if ((size_t)ret != sizeof(*m) || m->magic != SCIF_CTL_MAGIC ||
			    m->version != SCIF_CTL_VERSION || m->op == 0 || m->op >= SCIF_CTL_MAX) {
				scif_fh_release(fh, *nfh);
				*nfh = 0;
				return -EPROTO;
			}
			return 0;
		}
		if (ret != -EAGAIN)
			return ret == -ECONNRESET || ret == -EPIPE ? -ECONNRESET : ret;
		if (timeout_ms >= 0) {
			uint64_t now = scif__now_ns();

			if (now >= deadline)
				return -ETIMEDOUT;
			wait_ms = (int)((deadline - now + 999999) / 1000000);
		}
		if (ep) {
			/* Also woken by scif_close (signals do not interrupt a connect). */
			ret = scif__msg_wait(ep, link, 0, wait_ms);
			if (ret == -EINTR && scif__load_acquire(&ep->closing))
				return ret;
			continue;
		}
		ret = poll(&p, 1, wait_ms);
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
}

/* We write only the header of our region before sharing it (fabric.h SCIF_REGION_HEAD). */
static_assert(SCIF_QP_HDR_SIZE <= SCIF_REGION_HEAD, "the QP header fits the region head");

static int conn_region_create(struct scif_endpt *ep)
{
	uint32_t ring = conn_ring_size();
	struct scif_qp_region *r;
	int ret;

	if (ep->mine.addr)
		return 0;
	ret = scif__fab.ops->region_create(&scif__fab, SCIF_QP_HDR_SIZE + (size_t)ring, &ep->mine);
	if (ret)
		return ret;
	r = ep->mine.addr;
	r->version = SCIF_QP_VERSION;
	r->ring_size = ring;
	r->hdr_size = SCIF_QP_HDR_SIZE;
	r->owner_pid = (uint32_t)getpid();
	r->magic = SCIF_QP_MAGIC;
	return 0;
}

/*
 * Map the peer's region and build the ring views. The peer's header is read once here and
 * never again: a hostile peer changing it later cannot move our copies out of bounds.
 */
static int conn_import(struct scif_endpt *ep, const struct scif_ctl_msg *m, struct scif_fh *fh,
		       int nfh)
{
	uint32_t ring = m->ring_size;
	struct scif_qp_region *me, *pr;
	int ret;

	if (nfh != 2 || ring < SCIF_RING_MIN || ring > SCIF_RING_MAX || (ring & (ring - 1)))
		return -EPROTO;
	ret = scif__fab.ops->region_import(&scif__fab, &fh[0], SCIF_QP_HDR_SIZE + (size_t)ring,
					   &ep->theirs);
	if (ret)
		return ret;
	pr = ep->theirs.addr;
	if (scif__read_once(&pr->magic) != SCIF_QP_MAGIC ||
	    scif__read_once(&pr->version) != SCIF_QP_VERSION ||
	    scif__read_once(&pr->ring_size) != ring ||
	    scif__fab.ops->bell_import(&scif__fab, &fh[1], &ep->peer_bell)) {
		scif__fab.ops->region_destroy(&ep->theirs);
		return -EPROTO;
	}
	/* Direct copies only into the process the kernel names, and only if it owns the region
	 * (not, say, a fork child of the process that listened). */
	ep->bulk_pid = 0;
	if (scif__bulk_min && scif__fab.ops->peer_process) {
		pid_t pid = scif__fab.ops->peer_process(ep->link);

		if (pid > 0 && (uint32_t)pid == scif__read_once(&pr->owner_pid))
			ep->bulk_pid = pid;
	}
	me = ep->mine.addr;
	ep->tx.data = pr->data;
	ep->tx.remote_idx = &pr->in_widx;
	ep->tx.local_idx = &me->out_ridx;
	ep->tx.shrt = &pr->in_short;
	ep->tx.size = ring;
	ep->tx.mask = ring - 1;
	ep->rx.data = me->data;
	ep->rx.remote_idx = &pr->out_ridx;
	ep->rx.local_idx = &me->in_widx;
	ep->rx.shrt = &me->in_short;
	/* Our ring's size as we made it, not as our region says: the peer can write there. */
	ep->rx.size = (uint32_t)(ep->mine.len - SCIF_QP_HDR_SIZE);
	ep->rx.mask = ep->rx.size - 1;
	/*
	 * A shadow of the peer's region: what we write there goes by the fabric's flush. A line
	 * carried by one remote write lands in no particular order within it, which the short
	 * copy's seqlock cannot tell from a consistent one: no short copies then.
	 */
	ep->tx.flush = ep->rx.flush = scif__fab.ops->region_flush;
	if (ep->tx.flush)
		ep->tx.shrt = ep->rx.shrt = NULL;
	ep->tx.flush_r = ep->rx.flush_r = &ep->theirs;
	ep->tx.flush_base = ep->rx.flush_base = ep->theirs.addr;
	/* The producer's index and doorbell count go together (tx_notify); see rb.h. */
	static_assert(offsetof(struct scif_qp_region, in_db) ==
			      offsetof(struct scif_qp_region, in_widx) + sizeof(uint64_t),
		      "in_db follows in_widx");
	ep->tx.idx_len = 2 * sizeof(uint64_t);
	ep->rx.idx_len = sizeof(uint64_t);
	ep->sh->peer = m->src;
	return 0;
}

/*
 * Send one control message, waiting up to @wait_ms while the link is full (the peer is not
 * reading it). -EAGAIN after that: the caller decides what a peer that does not read costs.
 */
static int link_send_wait(int link, const struct scif_ctl_msg *m, const struct scif_fh *fh,
			  int nfh, int wait_ms)
{
	uint64_t deadline = scif__now_ns() + (uint64_t)wait_ms * 1000000u;

	for (;;) {
		int ret = scif__fab.ops->link_send(link, m, sizeof(*m), fh, nfh);
		uint64_t now = scif__now_ns();
		struct pollfd p = { .fd = link, .events = POLLOUT };

		if (ret != -EAGAIN || now >= deadline)
			return ret == -EPIPE ? -ECONNRESET : ret;
		poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
	}
}

#define SEND_WAIT_MS 1000      /* a caller's message waits this long for room on the link */
#define SEND_WAIT_MON_MS 50    /* the monitor's (it serves every endpoint: not longer) */

/* Send our region and our bell (so the peer can ring us and learn when we are gone). */
static int conn_send_qp(struct scif_endpt *ep, uint16_t op, const struct scif_portID *dst)
{
	struct scif_ctl_msg m;
	struct scif_fh fh[2];

	scif__fab.ops->region_export(&ep->mine, &fh[0]);
	scif__fab.ops->bell_export(&ep->bell, &fh[1]);
	msg_init(&m, op, ep);
	if (dst)
		m.dst = *dst;
	m.ring_size = ((struct scif_qp_region *)ep->mine.addr)->ring_size;
	return link_send_wait(ep->link, &m, fh, 2, SEND_WAIT_MS);
}

static int conn_send_simple(int link, uint16_t op, const struct scif_endpt *ep, int err)
{
	struct scif_ctl_msg m;

	msg_init(&m, op, ep);
	m.err = err;
	return link_send_wait(link, &m, NULL, 0, SEND_WAIT_MS);
}

/*
 * Both sides: the connection is up; watch the peer. Called with ctl held (connector) or
 * before the endpoint is handed out (acceptor). CONNECTED is published before the monitor
 * watches the link: whatever the peer sends once its side is up (a registration right after
 * scif_connect returns) must reach the monitor as a connected endpoint's control message,
 * never as a handshake step. On failure the caller aborts the endpoint.
 */
static int conn_established(struct scif_endpt *ep)
{
	int ret;

	/* Release pairs with the acquire in scif__epd_state: rings are set up. */
	__atomic_store_n(&ep->sh->state, SCIFEP_CONNECTED, __ATOMIC_RELEASE);
	ret = scif__monitor_watch(ep, SCIF_WATCH_LINK, ep->link, EPOLLIN | EPOLLRDHUP);
	/* A fabric whose peer bells have no descriptor signals the peer's end on the link. */
	if (!ret && ep->peer_bell.fd >= 0)
		ret = scif__monitor_watch(ep, SCIF_WATCH_PEERBELL, ep->peer_bell.fd, EPOLLRDHUP);
	return ret;
}

/* Undo a connect attempt: back to BOUND, the link and the peer's handles dropped. */
static void conn_abort(struct scif_endpt *ep)
{
	scif__monitor_unwatch(ep->link);
	scif__monitor_unwatch(ep->peer_bell.fd);
	if (ep->link >= 0)
		close(ep->link);
	ep->link = -1;
	scif__fab.ops->bell_close(&ep->peer_bell);
	scif__fab.ops->region_destroy(&ep->theirs);
	__atomic_store_n(&ep->sh->state, SCIFEP_BOUND, __ATOMIC_RELEASE);
}

/* The connector got a GNT (or REJ/hang-up): finish. Called with ctl held. */
static int conn_finish(struct scif_endpt *ep, int timeout_ms, int take_ctl)
{
	struct scif_ctl_msg m;
	struct scif_fh fh[SCIF_LINK_MAX_FH];
	int nfh = SCIF_LINK_MAX_FH;
	int ret;

	ret = link_read(ep->link, &m, fh, &nfh, timeout_ms, take_ctl ? ep : NULL);
	if (ret == -ETIMEDOUT || ret == -EAGAIN || ret == -EINTR)
		return ret;
	if (ret)
		return -ECONNREFUSED;
	if (m.op != SCIF_CNCT_GNT) {
		scif_fh_release(fh, nfh);
		return m.op == SCIF_CNCT_REJ && m.err == ENOMEM ? -ENOMEM : -ECONNREFUSED;
	}
	/*
	 * The endpoint changes under ctl, so a scif_close() racing us either sees the connection
	 * and its watches (and undoes them), or we see it closing and give up.
	 */
	if (take_ctl)
		scif__lock(&ep->sh->ctl);
	ret = scif__load_acquire(&ep->closing) ? -EINTR : conn_import(ep, &m, fh, nfh);
	scif_fh_release(fh, nfh);
	if (!ret)
		ret = conn_established(ep);
	if (take_ctl)
		scif__unlock(&ep->sh->ctl);
	return ret ? (ret == -ENOMEM || ret == -EINTR ? ret : -ECONNREFUSED) : 0;
}

int scif__conn_connect(struct scif_endpt *ep, struct scif_portID *dst)
{
	struct scif_ep_shared *sh = ep->sh;
	int ret, nonblock;

	scif__lock(&sh->ctl);
	switch (sh->state) {
	case SCIFEP_LISTENING:
		ret = -EOPNOTSUPP;
		goto out;
	case SCIFEP_CONNECTED:
		if (scif__load_acquire(&sh->nb_collect)) { /* a non-blocking connect finished */
			scif__store_release(&sh->nb_collect, 0);
			ret = sh->port;
		} else {
			ret = -EISCONN;
		}
		goto out;
	case SCIFEP_CONNECTING:
		ret = sh->blocking ? -EISCONN : -EINPROGRESS;
		goto out;
	case SCIFEP_DISCONNECTED:
		/* A non-blocking connect that succeeded, then lost its peer: it did succeed. */
		if (scif__load_acquire(&sh->nb_collect)) {
			scif__store_release(&sh->nb_collect, 0);
			ret = sh->conn_err ? sh->conn_err : sh->port;
		} else {
			ret = -EINVAL;
		}
		goto out;
	case SCIFEP_BOUND:
		if (scif__load_acquire(&sh->nb_collect)) { /* failed non-blocking connect */
			scif__store_release(&sh->nb_collect, 0);
			ret = sh->conn_err;
			goto out;
		}
		break;
	case SCIFEP_UNBOUND:
		ret = scif__port_bind(ep, 0);
		if (ret < 0)
			goto out;
		sh->state = SCIFEP_BOUND;
		break;
	}
	ret = conn_region_create(ep);
	if (ret) {
		ret = -ENOMEM;
		goto out;
	}
	ret = scif__fab.ops->connect(&scif__fab, ep->port->fd, dst);
	if (ret < 0) {
		/* Nobody there, or no descriptor/memory for the link (spec 3.5: ENOMEM). */
		ret = ret == -ECONNREFUSED ? ret : -ENOMEM;
		goto out;
	}
	ep->link = ret;
	ret = scif__fab.ops->peer_allowed(&scif__fab, ep->link);
	if (!ret)
		ret = conn_send_qp(ep, SCIF_CNCT_REQ, dst);
	if (ret) {
		conn_abort(ep);
		ret = ret == -ENOMEM ? ret : -ECONNREFUSED;
		goto out;
	}
	nonblock = (fcntl(ep->fd, F_GETFL) & O_NONBLOCK) != 0;
	if (nonblock) {
		/* Park a message on the descriptor so poll() shows POLLOUT only when done. */
		scif__msg_set_writable(ep, 0);
		sh->state = SCIFEP_CONNECTING;
		ret = scif__monitor_watch(ep, SCIF_WATCH_LINK, ep->link, EPOLLIN | EPOLLRDHUP);
		if (ret) {
			scif__msg_set_writable(ep, 1);
			conn_abort(ep);
		} else {
			ret = -EINPROGRESS;
		}
		goto out;
	}
	/* Wait without holding ctl, so other calls see CONNECTING and answer EISCONN. */
	sh->state = SCIFEP_CONNECTING;
	sh->blocking = 1;
	scif__unlock(&sh->ctl);
	ret = conn_finish(ep, CONNECT_TIMEOUT_MS, 1);
	scif__lock(&sh->ctl);
	sh->blocking = 0;
	if (ret) {
		/* Withdraw: closing the link drops our request from the listener's queue. */
		conn_abort(ep);
		if (ret == -ETIMEDOUT)
			ret = -ECONNREFUSED;
		goto out;
	}
	ret = sh->port;
out:
	scif__unlock(&sh->ctl);
	return ret;
}

/* The monitor saw the link of a connecting or connected endpoint become readable. */
void scif__conn_link_event(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;
	int ret;

	if (scif__epd_state(ep) != SCIFEP_CONNECTING) {
		/* Connected: RMA control messages, dispatched by opcode after validation. */
		for (int budget = 0; budget < 64; budget++) {
			struct scif_ctl_msg m;
			struct scif_fh fh[SCIF_LINK_MAX_FH];
			int nfh = SCIF_LINK_MAX_FH;

			ret = scif__fab.ops->link_recv(ep->link, &m, sizeof(m), fh, &nfh);
			if (ret == -EAGAIN)
				return;
			if (ret <= 0) { /* hang-up: the peer endpoint is gone */
				conn_disconnect(ep);
				return;
			}
			if ((size_t)ret != sizeof(m) || m.magic != SCIF_CTL_MAGIC ||
			    m.version != SCIF_CTL_VERSION)
				ret = -EPROTO;
			else if (m.op == SCIF_REPLY)
				ret = ctl_reply_in(ep, &m);
			else
				ret = scif__epd_ctl(ep, &m, fh, nfh); /* imports what it keeps */
			scif_fh_release(fh, nfh);
			if (ret < 0) { /* a peer that breaks the protocol loses the connection */
				conn_disconnect(ep);
				return;
			}
		}
		return;
	}
	if (!scif__trylock(&sh->ctl))
		return; /* the owner of ctl is finishing the handshake itself */
	if (sh->state == SCIFEP_CONNECTING && !sh->blocking) {
		/* Still CONNECTING while we finish: conn_finish establishes, or we abort. */
		ret = conn_finish(ep, 0, 0);
		if (ret != -ETIMEDOUT && ret != -EAGAIN) { /* else a spurious wake-up */
			if (ret)
				conn_abort(ep);
			sh->conn_err = ret;
			/* Release pairs with the acquire in poll.c: conn_err is set. */
			scif__store_release(&sh->nb_collect, 1);
			scif__msg_set_writable(ep, 1); /* POLLOUT: finished */
		}
	}
	scif__unlock(&sh->ctl);
}

int scif__conn_listen(struct scif_endpt *ep, int backlog)
{
	struct scif_ep_shared *sh = ep->sh;
	int ret;

	if (backlog > SCIF_MAX_BACKLOG)
		backlog = SCIF_MAX_BACKLOG;
	scif__lock(&sh->ctl);
	switch (sh->state) {
	case SCIFEP_BOUND:
		break;
	case SCIFEP_UNBOUND:
	case SCIFEP_DISCONNECTED:
		ret = -EINVAL;
		goto out;
	default:
		ret = -EISCONN;
		goto out;
	}
	ep->pend = calloc((size_t)backlog, sizeof(*ep->pend));
	if (!ep->pend) {
		ret = -ENOMEM;
		goto out;
	}
	ret = scif__fab.ops->listen(&scif__fab, sh->port, backlog);
	if (ret < 0) {
		ret = -ENOMEM; /* we hold the port: only resources can fail here */
		free(ep->pend);
		ep->pend = NULL;
		goto out;
	}
	ep->lfd = ret;
	ep->backlog = backlog;
	ep->listen_cap = backlog;
	ep->npend = 0;
	ret = scif__monitor_watch(ep, SCIF_WATCH_LISTEN, ep->lfd, EPOLLIN | EPOLLET);
	if (ret) {
		close(ep->lfd);
		ep->lfd = -1;
		free(ep->pend); /* still BOUND: scif_listen may be called again */
		ep->pend = NULL;
		goto out;
	}
	/* The monitor watches lfd from here on and reads the state (scif__conn_listen_event). */
	__atomic_store_n(&sh->state, SCIFEP_LISTENING, __ATOMIC_RELEASE);
out:
	scif__unlock(&sh->ctl);
	return ret;
}

/* Drop pending request i (withdrawn, silent too long, or taken). */
static int pend_remove(struct scif_endpt *ep, int i)
{
	int link = ep->pend[i].link;

	scif__monitor_unwatch(link);
	memmove(&ep->pend[i], &ep->pend[i + 1], sizeof(ep->pend[0]) * (size_t)(ep->npend - i - 1));
	ep->npend--;
	return link;
}

/*
 * The listener's request queue. Connections the fabric queued are taken off the listen
 * socket at once into ep->pend (oldest first, at most `backlog`; the fabric's queue admits
 * only what is left, and any surplus is refused at once), each watched by the monitor. A
 * request is pending (POLLIN, accept takes it) once its REQ message is there; a connector
 * that hung up before being accepted withdrew it (spec 3.5), and one silent for
 * REQ_SILENCE_MS is dropped, so neither is ever waited for. Under the recv_lock.
 * Returns the index of the oldest pending request, or -1.
 */
/* poll(2) of one link, now; a failed poll (EINTR, ENOMEM) is tried again. */
static short link_revents(int link, short events)
{
	struct pollfd p = { .fd = link, .events = events };

	for (int i = 0; i < 8; i++)
		if (poll(&p, 1, 0) >= 0)
			return p.revents;
	return 0;
}

static int listen_scan(struct scif_endpt *ep)
{
	uint64_t now = scif__now_ns();
	int ready = -1, cap, link;

	ep->listen_err = 0;
	for (int i = 0; i < ep->npend;) {
		struct pollfd p = { .revents = link_revents(ep->pend[i].link,
							    POLLIN | POLLRDHUP) };

		if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
		    (!(p.revents & POLLIN) &&
		     now - ep->pend[i].since > (uint64_t)REQ_SILENCE_MS * 1000000u)) {
			close(pend_remove(ep, i));
			continue;
		}
		if (ready < 0 && (p.revents & POLLIN))
			ready = i;
		i++;
	}
	while ((link = scif__fab.ops->accept(&scif__fab, ep->lfd)) != -EAGAIN) {
		int err;

		if (link == -ECONNABORTED || link == -EINTR)
			continue;
		if (link < 0) {
			/*
			 * No descriptor or memory for it: the request stays queued, and the
			 * listener reads as ready so that scif_accept says why (spec 3.6).
			 */
			ep->listen_err = link == -EMFILE || link == -ENFILE ? -EMFILE : -ENOMEM;
			break;
		}
		err = ep->npend == ep->backlog ? ECONNREFUSED :
						     -scif__fab.ops->peer_allowed(&scif__fab, link);

		if (!err)
			err = -scif__monitor_watch(ep, SCIF_WATCH_LISTEN, link,
						   EPOLLIN | EPOLLRDHUP | EPOLLET);
		if (err) {
			conn_send_simple(link, SCIF_CNCT_REJ, ep, err);
			close(link);
			continue;
		}
		ep->pend[ep->npend].link = link;
		ep->pend[ep->npend].since = now;
		/* Its REQ is usually there already: the connector sends it with the connect. */
		if (ready < 0 && link_revents(link, POLLIN) == POLLIN)
			ready = ep->npend;
		ep->npend++;
	}
	/* The fabric's queue admits what the backlog has left (one more is refused above). */
	cap = ep->backlog - ep->npend > 0 ? ep->backlog - ep->npend : 1;
	if (cap != ep->listen_cap && scif__fab.ops->relisten(ep->lfd, cap) == 0)
		ep->listen_cap = cap;
	return ready;
}

/*
 * Keep the listener's descriptor readable exactly while a request is pending. Called by
 * whoever holds the listener's recv_lock (accepting threads, or the monitor). A pending
 * request rings the bell without draining it first: a thread polling the descriptor meanwhile
 * (without the lock) must never find it empty while one is pending. Returns whether one is.
 */
static int listen_sync(struct scif_endpt *ep)
{
	int pending = listen_scan(ep) >= 0 || ep->listen_err;

	if (pending)
		scif__fab.ops->ring(&ep->bell); /* a full bell is rung already */
	else
		scif__fab.ops->drain(ep->fd);
	return pending;
}

/* Let go of a listener's recv_lock; redo the sync if a request arrived meanwhile. */
static void listen_unlock(struct scif_endpt *ep)
{
	scif__unlock(&ep->sh->recv_lock);
	if (scif__load_acquire(&ep->listen_dirty))
		scif__conn_listen_event(ep);
}

int scif__conn_listen_pending(struct scif_endpt *ep)
{
	int ret;

	if (!scif__trylock(&ep->sh->recv_lock)) {
		/* An accept is running: it keeps the descriptor readable while one is pending. */
		struct pollfd p = { .fd = ep->fd, .events = POLLIN };

		return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
	}
	ret = listen_sync(ep);
	listen_unlock(ep);
	return ret;
}

void scif__conn_listen_event(struct scif_endpt *ep)
{
	/* Release pairs with the acquire in listen_unlock: the holder will see it. */
	scif__store_release(&ep->listen_dirty, 1);
	while (scif__trylock(&ep->sh->recv_lock)) {
		scif__write_once(&ep->listen_dirty, 0);
		if (scif__epd_state(ep) == SCIFEP_LISTENING)
			listen_sync(ep);
		scif__unlock(&ep->sh->recv_lock);
		if (!scif__load_acquire(&ep->listen_dirty))
			break;
	}
}

/*
 * The handshake with the requester of pending request @i, whose link is readable: never
 * waits. Returns the new endpoint, or -errno: -EAGAIN when the request was bad (dropped) or
 * is still arriving (a fabric whose links are byte streams: it stays pending, and its link
 * is readable again once the message is whole); the caller moves on.
 */
static int accept_one(struct scif_endpt *lep, int i, struct scif_endpt **out)
{
	struct scif_endpt *ep = NULL;
	struct scif_ctl_msg m;
	struct scif_fh fh[SCIF_LINK_MAX_FH];
	int nfh = SCIF_LINK_MAX_FH;
	int link = lep->pend[i].link;
	int ret;

	ret = link_read(link, &m, fh, &nfh, 0, NULL);
	if (ret == -ETIMEDOUT)
		return -EAGAIN;
	pend_remove(lep, i);
	if (ret)
		goto drop;
	if (m.op != SCIF_CNCT_REQ || m.src.node > scif__fab.max_node ||
	    m.dst.port != lep->sh->port) {
		scif_fh_release(fh, nfh);
		goto drop;
	}
	ret = scif__epd_alloc(&ep);
	if (ret) {
		scif_fh_release(fh, nfh);
		goto reject;
	}
	ep->own_fd = 1;
	ep->link = link;
	link = -1;
	ep->port = scif__port_ref(lep->port);
	ep->sh->port = lep->sh->port;
	ep->sh->state = SCIFEP_CONNECTING;
	ret = conn_region_create(ep);
	if (!ret)
		ret = conn_import(ep, &m, fh, nfh);
	scif_fh_release(fh, nfh);
	if (ret) {
		if (ret == -ENOMEM)
			conn_send_simple(ep->link, SCIF_CNCT_REJ, ep, ENOMEM);
		goto fail;
	}
	ret = scif__epd_publish(ep);
	if (ret)
		goto fail;
	/* Watched and CONNECTED before the GNT lets the connector talk. */
	ret = conn_established(ep);
	if (!ret)
		ret = conn_send_qp(ep, SCIF_CNCT_GNT, &m.src);
	if (ret)
		goto fail_published;
	ep->own_fd = 0;
	*out = ep;
	return 0;
fail_published:
	scif__epd_unpublish(ep);
	return ret == -ENOMEM ? ret : -EAGAIN;
fail:
	scif__epd_put(ep);
	return ret == -ENOMEM ? ret : -EAGAIN;
reject:
	conn_send_simple(link, SCIF_CNCT_REJ, lep, -ret);
drop:
	close(link);
	return ret == -ENOMEM ? ret : -EAGAIN;
}

int scif__conn_accept(struct scif_endpt *lep, struct scif_portID *peer, scif_epd_t *newepd,
		      int flags)
{
	struct scif_ep_shared *sh = lep->sh;
	struct scif_endpt *ep;
	int ret, i;

	if (flags & ~SCIF_ACCEPT_SYNC)
		return -EINVAL;
	if (scif__epd_state(lep) != SCIFEP_LISTENING)
		return -EINVAL;
	/* One descriptor must be available before a request is consumed (spec 3.6). */
	ret = dup(lep->bell.fd);
	if (ret < 0)
		return -errno;
	close(ret);
	scif__lock(&sh->recv_lock);
	for (;;) {
		if (scif__load_acquire(&lep->closing)) {
			ret = -EINTR;
			break;
		}
		i = listen_scan(lep);
		if (i >= 0) {
			ret = accept_one(lep, i, &ep);
			if (ret == -EAGAIN)
				continue;
			if (ret)
				break;
			*newepd = ep->fd;
			*peer = ep->sh->peer;
			break;
		}
		if (lep->listen_err || !(flags & SCIF_ACCEPT_SYNC)) {
			ret = lep->listen_err ? lep->listen_err : -EAGAIN;
			break;
		}
		/* Sleep until the descriptor shows a pending request (the monitor keeps it so). */
		listen_sync(lep);
		listen_unlock(lep);
		ret = scif__msg_wait(lep, lep->lfd, POLLIN, -1);
		scif__lock(&sh->recv_lock);
		if (ret)
			break;
	}
	if (scif__epd_state(lep) == SCIFEP_LISTENING)
		listen_sync(lep);
	listen_unlock(lep);
	return ret;
}

/* The peer is gone (or broke the protocol): DISCONNECTED, port released, waiters woken. */
static void conn_disconnect(struct scif_endpt *ep)
{
	struct scif_ep_shared *sh = ep->sh;
	struct scif_port *port;

	scif__lock(&sh->ctl);
	if (scif__epd_state(ep) != SCIFEP_CONNECTED || ep->bell_shut) {
		scif__unlock(&sh->ctl);
		return;
	}
	__atomic_store_n(&ep->bell_shut, 1, __ATOMIC_RELEASE);
	/* Spec 2.4: a disconnected endpoint releases its port at once. */
	port = ep->port;
	ep->port = NULL;
	scif__unlock(&sh->ctl);
	scif_dbg("endpoint %d: peer %u:%u gone", ep->fd, sh->peer.node, sh->peer.port);
	scif__monitor_unwatch(ep->link);
	scif__monitor_unwatch(ep->peer_bell.fd);
	/*
	 * Wake every sleeper and show POLLHUP to poll(2): a bell byte left unread, no parked
	 * message, then both directions shut down; only then is DISCONNECTED published, so
	 * whoever sees the state also sees the descriptor's hang-up. The monitor's bell watch
	 * turns edge-triggered first: from now on only the error that the unread byte raises
	 * on the bell when the application's descriptor is finally closed means "closed".
	 */
	scif__monitor_watch(ep, SCIF_WATCH_BELL, ep->bell.fd, EPOLLRDHUP | EPOLLET);
	scif__fab.ops->ring(&ep->bell);
	scif__fab.ops->drain(ep->bell.fd);
	scif__write_once(&sh->junked, 0); /* the disconnect, not a sender, drained the bell */
	shutdown(ep->bell.fd, SHUT_RDWR);
	__atomic_store_n(&sh->state, SCIFEP_DISCONNECTED, __ATOMIC_RELEASE);
	scif__epd_wake(ep);
	scif__port_put(port);
}

/* ---- control requests over the link ---------------------------------------------------- */

struct scif_req {
	uint32_t tag;
	uint16_t op;
	int done;
	struct scif_ctl_msg reply;
	struct scif_req *next;
};


void scif__ctl_msg_init(struct scif_ctl_msg *m, uint16_t op, const struct scif_endpt *ep)
{
	memset(m, 0, sizeof(*m));
	m->magic = SCIF_CTL_MAGIC;
	m->version = SCIF_CTL_VERSION;
	m->op = op;
	m->src.node = scif__fab.self;
	m->src.port = ep->sh->port;
}

/*
 * A peer whose control link stays full does not read it: it is broken, and loses the
 * connection (ECONNRESET), as a silent one does. Other failures are resources (ENOMEM).
 */
static int ctl_send_wait(struct scif_endpt *ep, struct scif_ctl_msg *m,
			 const struct scif_fh *fh, int wait_ms)
{
	int ret = link_send_wait(ep->link, m, fh, fh ? 1 : 0, wait_ms);

	if (ret == -EAGAIN) {
		scif_warn("endpoint %d: peer does not read its control link", ep->fd);
		conn_disconnect(ep);
	}
	if (ret == -EAGAIN || ret == -ECONNRESET)
		return -ECONNRESET;
	return ret ? -ENOMEM : 0;
}

int scif__ctl_send(struct scif_endpt *ep, struct scif_ctl_msg *m, const struct scif_fh *fh)
{
	return ctl_send_wait(ep, m, fh, SEND_WAIT_MS);
}

/*
 * How long the peer may take to answer a request (SCIF_REQ_TIMEOUT_MS, default 10 s, the
 * node-alive limit Intel's driver used). A fence wait may legitimately take long: it gets
 * ETIMEDOUT like Intel's; any other silent request means the peer is broken, and costs it
 * the connection.
 */
uint64_t scif__req_timeout_ns(void)
{
	static uint64_t ns;

	if (!scif__read_once(&ns)) {
		const char *v = getenv("SCIF_REQ_TIMEOUT_MS");
		unsigned long ms = v && *v ? strtoul(v, NULL, 0) : 0;

		scif__write_once(&ns, (ms ? (uint64_t)ms : 10000u) * 1000000u);
	}
	return ns;
}

int scif__ctl_call(struct scif_endpt *ep, struct scif_ctl_msg *m, const struct scif_fh *fh,
		   struct scif_ctl_msg *reply)
{
	struct scif_req req = { .op = m->op };
	uint64_t deadline;
	int ret;

	pthread_mutex_lock(&ep->req_lock);
	req.tag = ++ep->next_tag;
	req.next = ep->reqs;
	ep->reqs = &req;
	pthread_mutex_unlock(&ep->req_lock);
	m->tag = req.tag;
	ret = scif__ctl_send(ep, m, fh);
	deadline = scif__now_ns() + scif__req_timeout_ns();
	pthread_mutex_lock(&ep->req_lock);
	/* Woken by the reply (monitor), or by scif__epd_wake (disconnect, close). */
	while (!ret && !req.done) {
		uint64_t now = scif__now_ns();
		struct timespec ts;

		if (scif__load_acquire(&ep->closing))
			ret = -EINTR;
		else if (scif__epd_state(ep) != SCIFEP_CONNECTED)
			ret = -ECONNRESET;
		else if (now >= deadline)
			ret = -ETIMEDOUT;
		if (ret)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((deadline - now) / 1000000000u);
		ts.tv_nsec += (long)((deadline - now) % 1000000000u);
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&ep->req_cond, &ep->req_lock, &ts);
	}
	for (struct scif_req **pp = &ep->reqs; *pp; pp = &(*pp)->next)
		if (*pp == &req) {
			*pp = req.next;
			break;
		}
	pthread_mutex_unlock(&ep->req_lock);
	if (ret == -ETIMEDOUT && m->op != SCIF_WAIT) {
		scif_warn("endpoint %d: peer did not answer request %u in time", ep->fd, m->op);
		conn_disconnect(ep);
		ret = -ECONNRESET;
	}
	if (ret)
		return ret;
	if (reply)
		*reply = req.reply;
	return -req.reply.err; /* one of the errnos ctl_reply_in lets through for the op */
}

void scif__ctl_reply(struct scif_endpt *ep, uint32_t tag, int err, uint64_t p0)
{
	struct scif_ctl_msg r;

	scif__ctl_msg_init(&r, SCIF_REPLY, ep);
	r.tag = tag;
	r.err = err;
	r.payload[0] = p0;
	/* From the monitor or the DMA worker, which serve every endpoint: wait briefly. */
	ctl_send_wait(ep, &r, NULL, SEND_WAIT_MON_MS);
}

/*
 * The errnos an honest peer can answer each request with; the caller returns them as they
 * are, so anything else (a negative number, an errno the call may not return) is a lie
 * that costs the peer the connection.
 */
static int reply_err_valid(uint16_t op, int32_t err)
{
	switch (op) {
	case SCIF_REGISTER:
		return err == 0 || err == ENOMEM || err == EAGAIN;
	case SCIF_MAP_REF:
		return err == 0 || err == ENXIO;
	case SCIF_WAIT:
		return err == 0 || err == ENOMEM;
	default: /* UNREGISTER, MAP_UNREF, MARK */
		return err == 0;
	}
}

static int ctl_reply_in(struct scif_endpt *ep, const struct scif_ctl_msg *m)
{
	int ret = 0;

	pthread_mutex_lock(&ep->req_lock);
	/* A reply nobody waits for answers a request that timed out or was interrupted. */
	for (struct scif_req *r = ep->reqs; r; r = r->next)
		if (r->tag == m->tag) {
			if (!reply_err_valid(r->op, m->err)) {
				ret = -EPROTO;
				break;
			}
			r->reply = *m;
			r->done = 1;
			pthread_cond_broadcast(&ep->req_cond);
			break;
		}
	pthread_mutex_unlock(&ep->req_lock);
	return ret;
}

void scif__conn_closing(struct scif_endpt *ep)
{
	/* Under ctl: a connect finishing on another thread sets these (conn_finish). */
	scif__lock(&ep->sh->ctl);
	scif__monitor_unwatch(ep->link);
	scif__monitor_unwatch(ep->peer_bell.fd);
	scif__monitor_unwatch(ep->lfd);
	scif__unlock(&ep->sh->ctl);
}

/* The last reference is gone: the link, the peer's handles, the listen queue, the port. */
static void conn_fini(struct scif_endpt *ep)
{
	/*
	 * Bytes sent before the close are never lost (spec 4.2). On a shadow fabric they may
	 * still be on the wire, on another path than the link whose hang-up the peer is about
	 * to see: let them land first.
	 */
	if (ep->tx.flush && scif__epd_state(ep) == SCIFEP_CONNECTED)
		scif__fab.ops->region_fence(&ep->theirs, ep->link);
	scif__monitor_unwatch(ep->link);
	scif__monitor_unwatch(ep->peer_bell.fd);
	scif__monitor_unwatch(ep->lfd);
	scif__fab.ops->bell_close(&ep->peer_bell);
	if (ep->link >= 0)
		close(ep->link);
	if (ep->lfd >= 0)
		close(ep->lfd);
	while (ep->npend > 0) /* refused at once: the connectors see the hang-up */
		close(pend_remove(ep, ep->npend - 1));
	free(ep->pend);
	ep->pend = NULL;
	ep->link = ep->lfd = -1;
	scif__fab.ops->region_destroy(&ep->theirs);
	scif__fab.ops->region_destroy(&ep->mine);
	scif__port_put(ep->port);
	ep->port = NULL;
}

/* Register the watches the endpoint's state calls for (after fork(), or a dup() rekey). */
static void conn_rewatch(struct scif_endpt *ep)
{
	switch (scif__epd_state(ep)) {
	case SCIFEP_LISTENING:
		scif__monitor_watch(ep, SCIF_WATCH_LISTEN, ep->lfd, EPOLLIN | EPOLLET);
		for (int i = 0; i < ep->npend; i++) /* the requests it holds */
			scif__monitor_watch(ep, SCIF_WATCH_LISTEN, ep->pend[i].link,
					    EPOLLIN | EPOLLRDHUP | EPOLLET);
		break;
	case SCIFEP_CONNECTING:
		scif__monitor_watch(ep, SCIF_WATCH_LINK, ep->link, EPOLLIN | EPOLLRDHUP);
		break;
	case SCIFEP_CONNECTED:
		scif__monitor_watch(ep, SCIF_WATCH_LINK, ep->link, EPOLLIN | EPOLLRDHUP);
		if (ep->peer_bell.fd >= 0)
			scif__monitor_watch(ep, SCIF_WATCH_PEERBELL, ep->peer_bell.fd, EPOLLRDHUP);
		break;
	}
}

static void on_listen(struct scif_endpt *ep, uint32_t events)
{
	(void)events;
	scif__conn_listen_event(ep);
}

static void on_link(struct scif_endpt *ep, uint32_t events)
{
	(void)events;
	scif__conn_link_event(ep);
}

static void on_peer_bell(struct scif_endpt *ep, uint32_t events)
{
	/* Every copy of the peer's descriptor is closed: the peer endpoint is gone. */
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_disconnect(ep);
}

/* The connection protocol's part in an endpoint's life (epd.h). */
const struct scif_epd_layer scif__conn_layer = {
	.name = "conn",
	.disconnect = conn_disconnect,
	.fini = conn_fini,
	.rewatch = conn_rewatch,
};

void scif__conn_setup(void)
{
	scif__monitor_handle(SCIF_WATCH_LISTEN, on_listen);
	scif__monitor_handle(SCIF_WATCH_LINK, on_link);
	scif__monitor_handle(SCIF_WATCH_PEERBELL, on_peer_bell);
}
