/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_rdm.c
 * @brief FI_EP_RDM endpoints: reliable datagrams over lazily made SCIF connections.
 *
 * An RDM endpoint owns one listening SCIF endpoint; its address is (own node, that port).
 * Connections are made on the first transfer to a peer address and kept. Each endpoint
 * SENDS MESSAGES ONLY ON CONNECTIONS IT INITIATED (one per peer address) and receives on all
 * of them; rendezvous replies (CTS) and the hello acknowledgement travel back on the
 * connection their request came on. Simultaneous connects therefore never need resolving,
 * and messages from one source arrive, and match, in send order (FI_ORDER_SAS).
 *
 * Wire protocol (struct sfi_hdr, ops below):
 *   initiator -> acceptor: HELLO (payload: struct rdm_hello, the initiator's address and
 *     incarnation), then EAGER (payload = message), RTS (size, id = sender request), DATA
 *     (id = receiver token, payload = granted bytes) and WDATA (remote CQ data after an RMA
 *     write).
 *   acceptor -> initiator: HELLO_ACK (payload: the acceptor's incarnation; the acceptor
 *     registered its memory regions on the connection, RMA may start), CTS (id = sender
 *     request, size = bytes granted, tag = receiver token), ACK (id = sender request: a
 *     message sent with FI_DELIVERY_COMPLETE, flag RDM_WF_ACK, is in the receive buffer or
 *     the unexpected queue).
 * Everything from the wire is checked; a violation fails that connection only.
 *
 * Messages up to sfi_params.eager_max go eagerly: straight into a matching posted buffer,
 * or into a malloc'd buffer on the unexpected queue. Larger ones use the RTS/CTS/DATA
 * rendezvous; the receiver grants min(size, buffer) bytes so truncated data is never sent.
 * From sfi_params.rndv_write_min granted bytes into one buffer, the receiver also offers a
 * window over the buffer's whole pages (sfi_wcache.c; CTS flag RDM_WF_RMA, hdr.data = window
 * offset + the bytes before the first whole page): the sender scif_vwriteto()s that middle,
 * one copy, and its DATA frame (flag RDM_WF_RMA) carries only the bytes before and after
 * it, in the partial pages that other data may share. A sender that cannot write sends
 * every byte in DATA as usual; the receiver takes either.
 *
 * Everything runs under the domain lock; progress is manual (CQ/counter reads).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sfi.h"

/* Wire ops (sfi_hdr::op). */
enum {
	RDM_OP_HELLO = 1,
	RDM_OP_HELLO_ACK,
	RDM_OP_EAGER,
	RDM_OP_RTS,
	RDM_OP_CTS,
	RDM_OP_DATA,
	RDM_OP_WDATA,
	RDM_OP_ACK,
};

/* Wire flags (sfi_hdr::flags). */
#define RDM_WF_TAGGED 0x1  /**< tagged message: hdr.tag is meaningful */
#define RDM_WF_DATA 0x2    /**< hdr.data carries remote CQ data */
#define RDM_WF_ACK 0x4     /**< FI_DELIVERY_COMPLETE: ACK (id) once the data is taken in */
#define RDM_WF_RMA 0x8     /**< CTS: write the middle into my window (data = offset + head);
			    *   DATA: the middle was written, the payload is the rest */
#define RDM_WF_MASK (RDM_WF_TAGGED | RDM_WF_DATA | RDM_WF_ACK | RDM_WF_RMA)
#define RDM_PAGE 4096ULL

/** Internal op flag of the fi_inject* calls, which report no completion (unlike
 *  FI_INJECT passed to fi_sendmsg or set in op_flags, which only frees the buffer).
 *  A provider-specific bit; stripped from applications' flags. */
#define RDM_TX_SILENT (1ULL << 63)

/** A peer broke the protocol (libfabric has no FI_EPROTO): the connection fails. */
#define RDM_EPROTO FI_EIO

#define RDM_PEER_BUCKETS 64
#define RDM_MAX_WAITS 8
#define RDM_LISTEN_BACKLOG 256
#define RDM_RETRY_MIN_MS 5
#define RDM_RETRY_MAX_MS 100
#define RDM_ALLOC_CHUNK 32
/** scif_accept costs three system calls even when nothing is pending: the listener is
 *  polled at most this often (ms) by progress; first contacts wait at most that long. */
#define RDM_ACCEPT_EVERY_MS 1
/** Idle outgoing connections whose address left the AV are closed this often (ms). */
#define RDM_GC_EVERY_MS 100
#define RDM_SRC_CACHE 64

struct rdm_ep;
struct rdm_conn;

/** A peer address this endpoint sends to, and its outgoing connection. */
enum rdm_peer_state {
	RDM_PEER_IDLE,       /**< no connection; the next send starts one */
	RDM_PEER_CONNECTING, /**< non-blocking scif_connect in progress */
	RDM_PEER_RETRY,      /**< refused; connect again at retry_at */
	RDM_PEER_HELLO,      /**< connected, HELLO sent, waiting for HELLO_ACK */
	RDM_PEER_READY,      /**< sends go straight to the connection */
};

struct rdm_peer {
	struct sfi_list hentry;     /**< hash bucket */
	struct sfi_list centry;     /**< rdm_ep::connecting while CONNECTING/RETRY */
	struct sfi_addr addr;
	enum rdm_peer_state state;
	scif_epd_t cepd;            /**< endpoint being connected, or -1 */
	uint64_t deadline, retry_at; /**< CLOCK_MONOTONIC ms */
	unsigned int attempts;
	struct rdm_conn *conn;      /**< outgoing connection (HELLO/READY) */
	struct sfi_list pending;    /**< struct rdm_txr waiting for READY, in order */
	fi_addr_t fi_addr;          /**< the fi_addr last used to send here */
};

/*
 * A HELLO's payload: the connecting endpoint's RDM address, and the incarnation of the
 * endpoint that has it (random, drawn at open). A HELLO_ACK carries the accepting endpoint's
 * incarnation. An address is a SCIF (node, port), and a port is free again as soon as its
 * endpoint is closed: the next endpoint to bind it (fabtests' rdm_multi_client opens its
 * clients one after another, and SCIF hands out the lowest free port) has the same address.
 * Two incarnations tell us that an outgoing connection to an address leads to an endpoint
 * that is gone (rdm_rx_done), before the first message of its successor can be answered.
 */
struct rdm_hello {
	struct sfi_addr addr;
	uint64_t incarnation;
};

/** One SCIF connection (outgoing or accepted). */
struct rdm_conn {
	struct sfi_conn c;
	struct rdm_ep *ep;
	struct rdm_peer *peer;      /**< outgoing: the peer; accepted: NULL */
	bool outgoing;
	bool hello;                 /**< accepted: HELLO seen; outgoing: HELLO_ACK seen */
	bool dead;                  /**< failed; waiting in rdm_ep::dead to be freed */
	bool registered;            /**< sfi_domain_conn_add succeeded */
	bool stale;                 /**< outgoing: its peer's address has a new incarnation
				     *   (rdm_rx_done); progress fails it (rdm_fail_stale) */
	uint16_t accept_node;       /**< accepted: node the SCIF handshake came from */
	uint32_t wait_events;       /**< events it is registered with in the wait sets */
	struct sfi_addr src;        /**< accepted: the initiator's RDM address (from HELLO) */
	struct rdm_hello hello_buf; /**< HELLO payload being received / sent */
	uint64_t ack_buf;           /**< HELLO_ACK payload: outgoing: the peer's incarnation,
				     *   as received; accepted: ours, being sent */
	struct sfi_tx ctl_tx;       /**< HELLO or HELLO_ACK */
	bool ctl_busy;
	struct sfi_list rts_wait;   /**< outgoing: struct rdm_txr waiting for a CTS */
	struct sfi_list rndv_rx;    /**< accepted: struct rdm_rx waiting for DATA */
	struct rdm_rx *cur_rx;      /**< receive whose payload is arriving now */
	struct rdm_unexp *cur_ux;   /**< unexpected entry whose payload is arriving now */
	struct sfi_wcache wc;       /**< accepted: windows over receive buffers */
};

enum rdm_txr_kind {
	RDM_TX_MSG,     /**< eager or rendezvous message */
	RDM_TX_WRITE,
	RDM_TX_READ,
};

/** A transmit request. rdm_txr_get clears everything before @c iov; the arrays and frames
 *  after it are written before they are read (iov/rma up to their counts, frames by
 *  sfi_conn_send), so recycling a request does not clear half a kilobyte. */
struct rdm_txr {
	struct sfi_list entry;      /**< peer->pending or conn->rts_wait */
	struct rdm_txr *next_free;
	struct rdm_ep *ep;
	enum rdm_txr_kind kind;
	int frames;                 /**< frames handed to sfi_conn, not yet done */
	bool finished;              /**< completion reported */
	bool in_list;
	bool rndv;
	void *context;
	uint64_t cq_flags;          /**< FI_SEND|FI_MSG..., FI_COMPLETION */
	uint64_t tag, data, id;
	uint16_t wflags;
	size_t iov_count, len;
	size_t rma_count;
	bool wdata;                 /**< RMA write followed by a WDATA frame */
	bool no_cq;                 /**< fi_inject*: counters only, no CQ entry on success */
	bool dc;                    /**< FI_DELIVERY_COMPLETE: completes on the peer's ACK */
	bool cts_seen;              /**< rendezvous: DATA is on its way (dc: waits for ACK) */
	char *inject;               /**< ep->inject_size bytes, right after the struct */
	/* not cleared by rdm_txr_get */
	struct iovec iov[SFI_MAX_IOV];
	struct fi_rma_iov rma[SFI_MAX_IOV];
	struct sfi_tx tx;           /**< EAGER / RTS / WDATA frame */
	struct sfi_tx tx2;          /**< DATA frame */
};

/** A posted receive, or one piece of a multi-receive buffer. rdm_rx_get clears everything
 *  before @c iov (the iovec is filled up to iov_count, ctl_tx by sfi_conn_send). */
struct rdm_rx {
	struct sfi_list entry;      /**< posted queue, or conn->rndv_rx */
	struct rdm_rx *next_free;
	struct rdm_rx *parent;      /**< FI_MULTI_RECV buffer this piece belongs to */
	void *context;
	uint64_t flags;             /**< user op flags */
	uint64_t cq_flags;          /**< FI_RECV|FI_MSG or FI_RECV|FI_TAGGED */
	size_t iov_count, len;
	uint64_t tag, ignore;
	bool any_src;
	struct sfi_addr src;
	/* the message matched */
	struct sfi_addr msrc;
	uint64_t mtag, mdata, token;
	uint64_t sender_id;         /**< rendezvous: the sender's request (CTS, ACK) */
	uint16_t mflags;
	size_t msize;               /**< sender's length */
	size_t mlen;                /**< bytes placed (min(msize, len)) */
	bool ctl_busy;              /**< ctl_tx is queued in a connection */
	bool put_pending;           /**< finished while ctl_busy: freed by the CTS's done */
	bool silent;                /**< internal (discarded rendezvous): no completion */
	size_t rma_head, rma_len;   /**< rendezvous into a window: bytes [rma_head, +rma_len)
				     *   may come by RMA (rma_len 0: no window offered) */
	/* FI_MULTI_RECV buffer state */
	size_t mr_off;
	unsigned int mr_inflight;
	bool mr_released;
	/* not cleared by rdm_rx_get */
	struct iovec iov[SFI_MAX_IOV];
	struct sfi_tx ctl_tx;       /**< CTS */
};

/** An unexpected message (eager payload or a rendezvous RTS). */
struct rdm_unexp {
	struct sfi_list entry;
	struct rdm_unexp *next_free;
	struct rdm_conn *conn;      /**< source connection; NULL once it died (eager only) */
	struct sfi_addr src;
	uint64_t tag, data, sender_id;
	uint16_t wflags;
	size_t size;
	bool rndv;
	bool complete;              /**< eager payload fully in buf */
	bool claimed;
	bool discard;               /**< FI_DISCARD while the payload arrives: drop it then */
	void *claim_ctx;
	void *buf;
	struct rdm_rx *waiting;     /**< receive that matched while the payload arrives */
};

struct rdm_ep {
	struct sfi_ep ep;
	struct fi_info *info;
	struct sfi_addr addr;
	uint64_t incarnation;       /**< random, told in every HELLO and HELLO_ACK */
	bool stale;                 /**< a connection is marked stale: rdm_fail_stale */
	scif_epd_t lepd;            /**< bound at open, listening from fi_enable */
	bool listening;
	uint64_t accept_at;         /**< next time progress tries scif_accept (coarse ms) */
	int timerfd;
	bool timer_armed;
	uint64_t timer_at;
	size_t inject_size, eager_max, rx_limit;
	size_t rndv_write_min;      /**< offer windows from this many granted bytes (0: never) */
	size_t tx_size, rx_size, tx_used, rx_used;
	size_t min_multi_recv;
	uint64_t tx_op_flags, rx_op_flags;
	uint64_t next_id;
	struct sfi_list conns;      /**< live struct rdm_conn (owner_entry) */
	struct sfi_list dead;       /**< failed struct rdm_conn to free */
	struct sfi_list connecting; /**< struct rdm_peer (centry) */
	struct sfi_list buckets[RDM_PEER_BUCKETS];
	struct sfi_list posted_msg, posted_tag, unexp_msg, unexp_tag;
	struct rdm_txr *free_txr;
	struct rdm_rx *free_rx;
	struct rdm_unexp *free_ux;
	struct sfi_list chunks;     /**< freelist allocations */
	struct {
		struct sfi_wait *w;
		int refs;
	} waits[RDM_MAX_WAITS];
	struct rdm_src_cache {
		struct sfi_addr addr;
		fi_addr_t fi_addr;
		uint64_t removals;  /**< the AV's removals when it was looked up */
	} src_cache[RDM_SRC_CACHE];
	/* the last destination sent to: its fi_addr stands for that peer until the AV loses
	 * an address or the peer is freed (which clears tx_peer) */
	struct rdm_peer *tx_peer;
	fi_addr_t tx_dest;
	uint64_t tx_removals;
	uint64_t gc_at;             /**< next idle-connection sweep (coarse ms) */
	unsigned int busy_passes;   /**< progress passes that took frames in (rdm_progress) */
	int nwaits;
};

static inline struct rdm_ep *rdm_ep_of(struct fid_ep *ep)
{
	return sfi_container_of(ep, struct rdm_ep, ep.ep_fid);
}

static uint64_t rdm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/** A cheap clock (vDSO, a few ms resolution) for throttling. */
static uint64_t rdm_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool rdm_addr_eq(const struct sfi_addr *a, const struct sfi_addr *b)
{
	return a->node == b->node && a->port == b->port;
}

/** errno of a failed SCIF call as a positive FI_E* code for completions. */
static int rdm_errno(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return FI_ECONNREFUSED;
	case ECONNRESET:
	case EPIPE:
		return FI_ECONNRESET;
	case ENODEV:
	case ETIMEDOUT:
		return FI_EHOSTUNREACH;
	case ENOMEM:
	case ENOBUFS:
		return FI_ENOMEM;
	case ENXIO:
	case EACCES:
		return FI_EACCES;
	case EINVAL:
		return FI_EINVAL;
	default:
		return e > 0 ? e : FI_EIO;
	}
}

/* ------------------------------------------------------------------------------------ */
/* Request freelists: the fast path allocates nothing. */

struct rdm_chunk {
	struct sfi_list entry;
	char mem[];
};

/** Allocate @p n zeroed objects of @p size in one chunk; NULL on ENOMEM. */
static void *rdm_chunk_alloc(struct rdm_ep *ep, size_t size, size_t n)
{
	struct rdm_chunk *ch = calloc(1, sizeof(*ch) + size * n);

	if (!ch)
		return NULL;
	sfi_list_insert_tail(&ep->chunks, &ch->entry);
	return ch->mem;
}

/**
 * Refill an empty free list: a chunk of RDM_ALLOC_CHUNK objects of @p size, each linked
 * to the next through its free-list pointer at @p link_off (the last one to NULL).
 * @return the first object, the new list head; NULL on ENOMEM.
 */
static void *rdm_pool_refill(struct rdm_ep *ep, size_t size, size_t link_off)
{
	char *mem = rdm_chunk_alloc(ep, size, RDM_ALLOC_CHUNK);

	if (!mem)
		return NULL;
	for (size_t i = 0; i < RDM_ALLOC_CHUNK; i++) {
		void *next = i + 1 < RDM_ALLOC_CHUNK ? mem + (i + 1) * size : NULL;

		memcpy(mem + i * size + link_off, &next, sizeof(next));
	}
	return mem;
}

static size_t rdm_txr_size(const struct rdm_ep *ep)
{
	size_t s = sizeof(struct rdm_txr) + ep->inject_size;

	return (s + 63) & ~(size_t)63;
}

static struct rdm_txr *rdm_txr_get(struct rdm_ep *ep)
{
	struct rdm_txr *t;

	if (!ep->free_txr) {
		ep->free_txr = rdm_pool_refill(ep, rdm_txr_size(ep),
					       offsetof(struct rdm_txr, next_free));
		if (!ep->free_txr)
			return NULL;
	}
	t = ep->free_txr;
	ep->free_txr = t->next_free;
	sfi_zero(t, offsetof(struct rdm_txr, iov));
	t->inject = (char *)(t + 1);
	t->ep = ep;
	sfi_list_init(&t->entry);
	return t;
}

static void rdm_txr_put(struct rdm_ep *ep, struct rdm_txr *t)
{
	t->next_free = ep->free_txr;
	ep->free_txr = t;
}

static struct rdm_rx *rdm_rx_get(struct rdm_ep *ep)
{
	struct rdm_rx *r;

	if (!ep->free_rx) {
		ep->free_rx = rdm_pool_refill(ep, sizeof(*r),
					      offsetof(struct rdm_rx, next_free));
		if (!ep->free_rx)
			return NULL;
	}
	r = ep->free_rx;
	ep->free_rx = r->next_free;
	sfi_zero(r, offsetof(struct rdm_rx, iov));
	sfi_list_init(&r->entry);
	return r;
}

/** Free a receive; one whose CTS frame the connection still holds goes when that is done. */
static void rdm_rx_put(struct rdm_ep *ep, struct rdm_rx *r)
{
	if (r->ctl_busy) {
		r->put_pending = true;
		return;
	}
	r->next_free = ep->free_rx;
	ep->free_rx = r;
}

static struct rdm_unexp *rdm_ux_get(struct rdm_ep *ep)
{
	struct rdm_unexp *u;

	if (!ep->free_ux) {
		ep->free_ux = rdm_pool_refill(ep, sizeof(*u),
					      offsetof(struct rdm_unexp, next_free));
		if (!ep->free_ux)
			return NULL;
	}
	u = ep->free_ux;
	ep->free_ux = u->next_free;
	sfi_zero(u, sizeof(*u));
	sfi_list_init(&u->entry);
	return u;
}

static void rdm_ux_put(struct rdm_ep *ep, struct rdm_unexp *u)
{
	free(u->buf);
	u->buf = NULL;
	u->next_free = ep->free_ux;
	ep->free_ux = u;
}

/* ------------------------------------------------------------------------------------ */
/* Wait sets: the listener, the retry timer, connections and connects in progress. */

static void rdm_fd_set(struct rdm_ep *ep, int fd, uint32_t events)
{
	int i;

	if (fd < 0)
		return;
	for (i = 0; i < ep->nwaits; i++)
		sfi_wait_fd(ep->waits[i].w, fd, events);
}

/** Bring a connection's registration in line with what it waits for. */
static void rdm_conn_update_wait(struct rdm_conn *rc)
{
	uint32_t ev = rc->dead ? 0 : sfi_conn_events(&rc->c);

	if (ev != rc->wait_events) {
		rdm_fd_set(rc->ep, rc->c.epd, ev);
		rc->wait_events = ev;
	}
}

/** Add (or remove) every descriptor of the endpoint to (from) one wait set. */
static void rdm_wait_all(struct rdm_ep *ep, struct sfi_wait *w, bool add)
{
	struct sfi_list *it;

	if (ep->lepd >= 0 && ep->listening)
		sfi_wait_fd(w, ep->lepd, add ? POLLIN : 0);
	if (ep->timerfd >= 0)
		sfi_wait_fd(w, ep->timerfd, add ? POLLIN : 0);
	sfi_list_foreach(&ep->conns, it) {
		struct rdm_conn *rc = sfi_container_of(it, struct rdm_conn, c.owner_entry);

		if (rc->wait_events)
			sfi_wait_fd(w, rc->c.epd, add ? rc->wait_events : 0);
	}
	sfi_list_foreach(&ep->connecting, it) {
		struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, centry);

		if (p->state == RDM_PEER_CONNECTING && p->cepd >= 0)
			sfi_wait_fd(w, p->cepd, add ? POLLOUT : 0);
	}
}

/** sfi_ep::wait_fds: join or leave a CQ's / counter's wait set (refcounted). */
static void rdm_wait_fds(struct sfi_ep *sep, struct sfi_wait *w, bool add)
{
	struct rdm_ep *ep = sfi_container_of(sep, struct rdm_ep, ep);
	int i;

	if (!w)
		return;
	for (i = 0; i < ep->nwaits; i++)
		if (ep->waits[i].w == w)
			break;
	if (add) {
		if (i < ep->nwaits) {
			ep->waits[i].refs++;
			return;
		}
		if (ep->nwaits == RDM_MAX_WAITS) {
			SFI_WARN(FI_LOG_EP_CTRL, "too many wait sets on one endpoint\n");
			return;
		}
		ep->waits[ep->nwaits].w = w;
		ep->waits[ep->nwaits].refs = 1;
		ep->nwaits++;
		rdm_wait_all(ep, w, true);
	} else if (i < ep->nwaits) {
		if (--ep->waits[i].refs > 0)
			return;
		rdm_wait_all(ep, w, false);
		ep->waits[i] = ep->waits[--ep->nwaits];
	}
}

/** Arm the timer for the earliest connect retry or deadline (or disarm it). */
static void rdm_timer_update(struct rdm_ep *ep)
{
	struct sfi_list *it;
	uint64_t at = UINT64_MAX;
	struct itimerspec its;

	sfi_list_foreach(&ep->connecting, it) {
		struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, centry);
		uint64_t t = p->state == RDM_PEER_RETRY ? p->retry_at : p->deadline;

		if (t < at)
			at = t;
	}
	if (at == UINT64_MAX) {
		if (!ep->timer_armed)
			return;
		memset(&its, 0, sizeof(its));
		ep->timer_armed = false;
	} else {
		uint64_t now = rdm_now_ms(), d = at > now ? at - now : 1;

		if (ep->timer_armed && ep->timer_at == at)
			return;
		memset(&its, 0, sizeof(its));
		its.it_value.tv_sec = (time_t)(d / 1000);
		its.it_value.tv_nsec = (long)(d % 1000) * 1000000L;
		ep->timer_armed = true;
		ep->timer_at = at;
	}
	if (ep->timerfd >= 0)
		timerfd_settime(ep->timerfd, 0, &its, NULL);
}

/* ------------------------------------------------------------------------------------ */
/* Completions. */

static unsigned int rdm_hash(const struct sfi_addr *a);

/**
 * The fi_addr of a source address (FI_SOURCE), or FI_ADDR_NOTAVAIL. A FI_AV_TABLE reverse
 * lookup is a linear search, so results are cached (direct mapped) and revalidated with an
 * O(1) forward lookup: the AV may change at any time.
 */
static fi_addr_t rdm_src_fiaddr(struct rdm_ep *ep, const struct sfi_addr *src)
{
	struct rdm_src_cache *sc;

	if (!(ep->ep.caps & FI_SOURCE) || !ep->ep.av || src->magic != SFI_ADDR_MAGIC)
		return FI_ADDR_NOTAVAIL;
	if (ep->ep.av->type == FI_AV_MAP)
		return sfi_av_reverse(ep->ep.av, src);
	sc = &ep->src_cache[rdm_hash(src) % RDM_SRC_CACHE];
	if (sc->fi_addr != FI_ADDR_NOTAVAIL && rdm_addr_eq(&sc->addr, src) &&
	    sc->removals == ep->ep.av->removals)
		return sc->fi_addr;
	sc->addr = *src;
	sc->fi_addr = sfi_av_reverse(ep->ep.av, src);
	sc->removals = ep->ep.av->removals;
	return sc->fi_addr;
}

/** Report a transmit request once, then free it when no frame still refers to it. */
static void rdm_txr_finish(struct rdm_ep *ep, struct rdm_txr *t, int err)
{
	if (!t->finished) {
		t->finished = true;
		if (t->in_list) {
			sfi_list_remove(&t->entry);
			t->in_list = false;
		}
		if (err) {
			sfi_ep_error_tx(&ep->ep, t->context, t->cq_flags, err);
		} else if (t->no_cq) {
			struct sfi_cntr *c = (t->cq_flags & FI_WRITE) ? ep->ep.write_cntr :
					     ep->ep.send_cntr;

			if (c)
				sfi_cntr_inc(c);
		} else {
			sfi_ep_complete_tx(&ep->ep, t->context, t->cq_flags);
		}
		ep->tx_used--;
	}
	if (t->frames == 0)
		rdm_txr_put(ep, t);
}

/**
 * Report a receive (or a multi-receive piece) whose data is in place.
 * @p err: 0, or a positive FI_E* code (then nothing was delivered unless FI_ETRUNC).
 */
static void rdm_rx_finish(struct rdm_ep *ep, struct rdm_rx *r, int err)
{
	struct rdm_rx *owner = r->parent ? r->parent : r;
	uint64_t flags = owner->cq_flags;
	void *buf = r->iov_count ? r->iov[0].iov_base : NULL;
	fi_addr_t src;

	if (r->silent) {
		rdm_rx_put(ep, r);
		return;
	}
	src = rdm_src_fiaddr(ep, &r->msrc);
	if (r->mflags & RDM_WF_DATA)
		flags |= FI_REMOTE_CQ_DATA;
	if (!err && r->mlen < r->msize)
		err = FI_ETRUNC;
	if (r->parent) {
		owner->mr_inflight--;
		if (owner->mr_released && owner->mr_inflight == 0)
			flags |= FI_MULTI_RECV;
	}
	if (err)
		sfi_ep_error_rx(&ep->ep, owner->context, flags, err, r->mlen, buf, r->mdata,
				r->mtag, err == FI_ETRUNC ? r->msize - r->mlen : 0);
	else
		sfi_ep_complete_rx(&ep->ep, owner->context, flags, r->mlen, buf, r->mdata,
				   r->mtag, src);
	if (r->parent) {
		if (flags & FI_MULTI_RECV)
			rdm_rx_put(ep, owner);
		rdm_rx_put(ep, r);
	} else {
		rdm_rx_put(ep, r);
	}
}

/* ------------------------------------------------------------------------------------ */
/* Matching. */

static bool rdm_rx_matches(const struct rdm_rx *r, bool tagged, const struct sfi_addr *src,
			   uint64_t tag)
{
	if (!r->any_src && !rdm_addr_eq(&r->src, src))
		return false;
	return !tagged || ((r->tag ^ tag) & ~r->ignore) == 0;
}

/** The first posted receive a message from @p src with @p tag matches, or NULL. */
static struct rdm_rx *rdm_match_posted(struct rdm_ep *ep, bool tagged,
				       const struct sfi_addr *src, uint64_t tag)
{
	struct sfi_list *q = tagged ? &ep->posted_tag : &ep->posted_msg, *it;

	sfi_list_foreach(q, it) {
		struct rdm_rx *r = sfi_container_of(it, struct rdm_rx, entry);

		if (rdm_rx_matches(r, tagged, src, tag))
			return r;
	}
	return NULL;
}

/** Append the bytes [@p off, @p off + @p len) of @p src to @p dst (which holds @p n
 *  entries, room for @p max); returns the new count, or max + 1 if they do not fit. */
static size_t rdm_iov_slice(struct iovec *dst, size_t n, size_t max, const struct iovec *src,
			    size_t count, size_t off, size_t len)
{
	for (size_t i = 0; i < count && len; i++) {
		size_t l = src[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		if (n == max)
			return max + 1;
		dst[n].iov_base = (char *)src[i].iov_base + off;
		dst[n].iov_len = l;
		n++;
		len -= l;
		off = 0;
	}
	return n;
}

/** Copy at most @p len bytes' worth of iovec @p src into @p dst; the entry count. */
static size_t rdm_iov_trim(struct iovec *dst, const struct iovec *src, size_t count,
			   size_t len)
{
	return rdm_iov_slice(dst, 0, SFI_MAX_IOV, src, count, 0, len);
}

/**
 * Take the posted receive @p r for a message of @p size bytes: the receive itself (out of
 * its queue), or for FI_MULTI_RECV a new piece carved from the buffer. Records the match.
 * @return the receive that gets the data, or NULL (ENOMEM: the message stays unmatched).
 */
static struct rdm_rx *rdm_take(struct rdm_ep *ep, struct rdm_rx *r, size_t size,
			       const struct sfi_addr *src, uint64_t tag, uint64_t data,
			       uint16_t wflags)
{
	struct rdm_rx *t = r;

	if (r->flags & FI_MULTI_RECV) {
		size_t avail = r->len - r->mr_off;

		t = rdm_rx_get(ep);
		if (!t)
			return NULL;
		t->parent = r;
		t->len = size < avail ? size : avail;
		t->iov[0].iov_base = (char *)r->iov[0].iov_base + r->mr_off;
		t->iov[0].iov_len = t->len;
		t->iov_count = 1;
		r->mr_off += t->len;
		r->mr_inflight++;
		if (r->len == r->mr_off || r->len - r->mr_off < ep->min_multi_recv) {
			sfi_list_remove(&r->entry);
			r->mr_released = true;
			ep->rx_used--;
		}
	} else {
		sfi_list_remove(&r->entry);
		ep->rx_used--;
	}
	t->msrc = *src;
	t->mtag = (wflags & RDM_WF_TAGGED) ? tag : 0;
	t->mdata = (wflags & RDM_WF_DATA) ? data : 0;
	t->mflags = wflags;
	t->msize = size;
	t->mlen = size < t->len ? size : t->len;
	return t;
}

/* ------------------------------------------------------------------------------------ */
/* Connections. */

static const struct sfi_conn_ops rdm_conn_ops;
static void rdm_peer_fail(struct rdm_ep *ep, struct rdm_peer *p, int err);

static void rdm_ctl_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_conn *rc = sfi_container_of(c, struct rdm_conn, c);

	(void)tx;
	(void)err;
	rc->ctl_busy = false;
}

/**
 * A connection failed (or the peer went away, or it broke the protocol): fail everything
 * that depended on it and park it for freeing. Idempotent. @p err is negative.
 */
static void rdm_conn_fail(struct rdm_conn *rc, int err)
{
	struct rdm_ep *ep = rc->ep;
	struct sfi_list *it, *tmp;
	int e = err < 0 ? -err : FI_EIO;
	int q;

	if (rc->dead)
		return;
	rc->dead = true;
	if (rc->wait_events) {
		rdm_fd_set(ep, rc->c.epd, 0);
		rc->wait_events = 0;
	}
	if (rc->registered) {
		sfi_domain_conn_del(ep->ep.domain, &rc->c);
		rc->registered = false;
	}
	/* queued frames get done(err) here: eager sends and DATA frames fail */
	sfi_conn_fini(&rc->c, err);
	sfi_list_remove(&rc->c.owner_entry);
	sfi_list_insert_tail(&ep->dead, &rc->c.owner_entry);

	sfi_list_foreach_safe(&rc->rts_wait, it, tmp) {
		struct rdm_txr *t = sfi_container_of(it, struct rdm_txr, entry);

		rdm_txr_finish(ep, t, e);
	}
	sfi_list_foreach_safe(&rc->rndv_rx, it, tmp) {
		struct rdm_rx *r = sfi_container_of(it, struct rdm_rx, entry);

		sfi_list_remove(&r->entry);
		rdm_rx_finish(ep, r, e);
	}
	if (rc->cur_rx) {
		rdm_rx_finish(ep, rc->cur_rx, e);
		rc->cur_rx = NULL;
	}
	if (rc->cur_ux) {
		/* the one eager payload that was arriving: it never will */
		struct rdm_unexp *u = rc->cur_ux;

		rc->cur_ux = NULL;
		sfi_list_remove(&u->entry);
		if (u->waiting)
			rdm_rx_finish(ep, u->waiting, e);
		rdm_ux_put(ep, u);
	}
	for (q = 0; q < 2; q++) {
		struct sfi_list *uq = q ? &ep->unexp_tag : &ep->unexp_msg;

		sfi_list_foreach_safe(uq, it, tmp) {
			struct rdm_unexp *u = sfi_container_of(it, struct rdm_unexp, entry);

			if (u->conn != rc)
				continue;
			if (!u->rndv) {
				u->conn = NULL; /* complete: its data stays deliverable */
				continue;
			}
			sfi_list_remove(&u->entry);
			rdm_ux_put(ep, u);
		}
	}
	if (rc->outgoing && rc->peer) {
		struct rdm_peer *p = rc->peer;

		rc->peer = NULL;
		if (p->conn == rc) {
			p->conn = NULL;
			rdm_peer_fail(ep, p, e);
		}
	}
}

static void rdm_conn_free(struct rdm_conn *rc)
{
	sfi_list_remove(&rc->c.owner_entry);
	free(rc);
}

/** sfi_conn on_error: the connection is broken. */
static void rdm_on_error(struct sfi_conn *c, int err)
{
	rdm_conn_fail(sfi_container_of(c, struct rdm_conn, c), err ? err : -FI_ECONNRESET);
}

/** Wrap a connected SCIF endpoint; registers the domain's regions on it. NULL on error,
 *  with *@p err set (negative) and @p epd closed. */
static struct rdm_conn *rdm_conn_new(struct rdm_ep *ep, scif_epd_t epd,
				     const struct sfi_addr *peer, bool outgoing, int *err)
{
	struct rdm_conn *rc = calloc(1, sizeof(*rc));
	int ret;

	*err = -FI_ENOMEM;
	if (!rc) {
		scif_close(epd);
		return NULL;
	}
	rc->ep = ep;
	rc->outgoing = outgoing;
	sfi_list_init(&rc->rts_wait);
	sfi_list_init(&rc->rndv_rx);
	ret = sfi_conn_init(&rc->c, epd, peer, &rdm_conn_ops, ep);
	if (ret) {
		SFI_WARN(FI_LOG_EP_CTRL, "connection setup failed: %s\n", fi_strerror(-ret));
		scif_close(epd);
		free(rc);
		*err = ret;
		return NULL;
	}
	ret = sfi_domain_conn_add(ep->ep.domain, &rc->c);
	if (ret) {
		SFI_WARN(FI_LOG_EP_CTRL, "registering regions on a connection failed: %s\n",
			 fi_strerror(-ret));
		sfi_conn_fini(&rc->c, ret);
		free(rc);
		*err = ret;
		return NULL;
	}
	rc->registered = true;
	/* Frames go through mapped rings where the fabric maps remote memory (sfi_lane.c). */
	(void)sfi_lane_offer(&rc->c, sfi_params.lane_size);
	sfi_list_insert_tail(&ep->conns, &rc->c.owner_entry);
	rdm_conn_update_wait(rc);
	return rc;
}

/** Queue a header-only control frame on the connection's own tx slot. */
static int rdm_send_ctl(struct rdm_conn *rc, uint8_t op, const struct iovec *iov, size_t cnt)
{
	struct sfi_hdr h;
	int ret;

	memset(&h, 0, sizeof(h));
	h.op = op;
	rc->ctl_tx.done = rdm_ctl_done;
	ret = sfi_conn_send(&rc->c, &rc->ctl_tx, &h, iov, cnt);
	if (!ret)
		rc->ctl_busy = true;
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Peers and outgoing connections. */

static unsigned int rdm_hash(const struct sfi_addr *a)
{
	uint32_t h = ((uint32_t)a->node << 16 | a->port) * 2654435761u;

	return (h >> 16) % RDM_PEER_BUCKETS;
}

/** The peer at @p a, or NULL if we never sent there. */
static struct rdm_peer *rdm_peer_find(struct rdm_ep *ep, const struct sfi_addr *a)
{
	struct sfi_list *b = &ep->buckets[rdm_hash(a)], *it;

	sfi_list_foreach(b, it) {
		struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, hentry);

		if (rdm_addr_eq(&p->addr, a))
			return p;
	}
	return NULL;
}

/**
 * The peer @p dest names, or NULL (not in the AV, or never sent to). A sender mostly sends
 * where it sent last: that translation is kept (rdm_ep::tx_peer).
 */
static inline struct rdm_peer *rdm_dest_peer(struct rdm_ep *ep, fi_addr_t dest)
{
	struct sfi_av *av = ep->ep.av;
	struct rdm_peer *p;
	struct sfi_addr a;

	if (!av)
		return NULL;
	if (ep->tx_peer && ep->tx_dest == dest && ep->tx_removals == av->removals)
		return ep->tx_peer;
	if (sfi_av_lookup_addr(av, dest, &a))
		return NULL;
	p = rdm_peer_find(ep, &a);
	if (p) {
		ep->tx_peer = p;
		ep->tx_dest = dest;
		ep->tx_removals = av->removals;
	}
	return p;
}

static struct rdm_peer *rdm_peer_get(struct rdm_ep *ep, const struct sfi_addr *a)
{
	struct sfi_list *b = &ep->buckets[rdm_hash(a)];
	struct rdm_peer *p = rdm_peer_find(ep, a);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->addr = *a;
	p->addr.magic = SFI_ADDR_MAGIC;
	p->cepd = -1;
	sfi_list_init(&p->centry);
	sfi_list_init(&p->pending);
	sfi_list_insert_tail(b, &p->hentry);
	return p;
}

/** Leave the connecting list; close a half-made SCIF endpoint. */
static void rdm_peer_stop_connect(struct rdm_ep *ep, struct rdm_peer *p)
{
	if (p->cepd >= 0) {
		if (p->state == RDM_PEER_CONNECTING)
			rdm_fd_set(ep, p->cepd, 0);
		scif_close(p->cepd);
		p->cepd = -1;
	}
	sfi_list_remove(&p->centry);
}

/** The peer cannot be reached: fail its queued transfers with @p err (positive). */
static void rdm_peer_fail(struct rdm_ep *ep, struct rdm_peer *p, int err)
{
	struct sfi_list *it, *tmp;

	if (p->state == RDM_PEER_CONNECTING || p->state == RDM_PEER_RETRY)
		rdm_peer_stop_connect(ep, p);
	p->state = RDM_PEER_IDLE;
	sfi_list_foreach_safe(&p->pending, it, tmp) {
		struct rdm_txr *t = sfi_container_of(it, struct rdm_txr, entry);

		rdm_txr_finish(ep, t, err);
	}
}

static void rdm_txr_issue(struct rdm_ep *ep, struct rdm_conn *rc, struct rdm_txr *t);

/** HELLO_ACK arrived: the peer is ready; send what waited, in order. */
static void rdm_peer_ready(struct rdm_ep *ep, struct rdm_peer *p)
{
	p->state = RDM_PEER_READY;
	while (!sfi_list_empty(&p->pending) && p->state == RDM_PEER_READY && p->conn) {
		struct rdm_txr *t = sfi_container_of(p->pending.next, struct rdm_txr, entry);

		sfi_list_remove(&t->entry);
		t->in_list = false;
		rdm_txr_issue(ep, p->conn, t);
	}
}

/** The SCIF connect finished: wrap it and say HELLO. */
static void rdm_peer_connected(struct rdm_ep *ep, struct rdm_peer *p)
{
	scif_epd_t epd = p->cepd;
	struct rdm_conn *rc;
	struct iovec iov;
	int err;

	rdm_fd_set(ep, epd, 0);
	p->cepd = -1;
	sfi_list_remove(&p->centry);
	rc = rdm_conn_new(ep, epd, &p->addr, true, &err);
	if (!rc) {
		rdm_peer_fail(ep, p, -err);
		return;
	}
	rc->peer = p;
	p->conn = rc;
	p->state = RDM_PEER_HELLO;
	rc->hello_buf.addr = ep->addr;
	rc->hello_buf.incarnation = ep->incarnation;
	iov.iov_base = &rc->hello_buf;
	iov.iov_len = sizeof(rc->hello_buf);
	if (rdm_send_ctl(rc, RDM_OP_HELLO, &iov, 1))
		rdm_conn_fail(rc, -FI_ECONNRESET);
	else
		rdm_conn_update_wait(rc);
}

/** A connect attempt ended with errno @p e: retry on refusal until the deadline. */
static void rdm_peer_connect_error(struct rdm_ep *ep, struct rdm_peer *p, int e)
{
	uint64_t now = rdm_now_ms();
	uint64_t delay;

	if (p->state == RDM_PEER_CONNECTING)
		rdm_fd_set(ep, p->cepd, 0);
	scif_close(p->cepd);
	p->cepd = -1;
	delay = (uint64_t)RDM_RETRY_MIN_MS << (p->attempts < 5 ? p->attempts : 5);
	if (delay > RDM_RETRY_MAX_MS)
		delay = RDM_RETRY_MAX_MS;
	if (e == ECONNREFUSED && now + delay < p->deadline) {
		p->state = RDM_PEER_RETRY;
		p->retry_at = now + delay;
		return;
	}
	SFI_INFO(FI_LOG_EP_CTRL, "cannot connect to %u:%u: %s\n", p->addr.node, p->addr.port,
		 strerror(e));
	rdm_peer_fail(ep, p, rdm_errno(e));
}

/** Start (or restart) a non-blocking connect to @p p. */
static void rdm_peer_connect(struct rdm_ep *ep, struct rdm_peer *p)
{
	struct scif_portID dst = { .node = p->addr.node, .port = p->addr.port };
	int fl, r;

	if (p->state == RDM_PEER_IDLE) {
		p->attempts = 0;
		p->deadline = rdm_now_ms() + (uint64_t)(sfi_params.conn_timeout_ms > 0 ?
							sfi_params.conn_timeout_ms : 10000);
		sfi_list_insert_tail(&ep->connecting, &p->centry);
	}
	p->attempts++;
	p->state = RDM_PEER_RETRY;
	p->cepd = scif_open();
	if (p->cepd < 0) {
		rdm_peer_fail(ep, p, rdm_errno(errno));
		return;
	}
	fl = fcntl(p->cepd, F_GETFL);
	if (fl < 0 || fcntl(p->cepd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rdm_peer_connect_error(ep, p, errno);
		return;
	}
	r = scif_connect(p->cepd, &dst);
	if (r >= 0) {
		rdm_peer_connected(ep, p);
	} else if (errno == EINPROGRESS) {
		p->state = RDM_PEER_CONNECTING;
		rdm_fd_set(ep, p->cepd, POLLOUT);
	} else {
		rdm_peer_connect_error(ep, p, errno);
	}
}

/** Drive connects in progress and retries; fail those past their deadline. */
static void rdm_progress_connects(struct rdm_ep *ep)
{
	struct sfi_list *it, *tmp;
	uint64_t now = rdm_now_ms();

	if (ep->timer_armed && ep->timerfd >= 0) {
		uint64_t ticks;

		if (read(ep->timerfd, &ticks, sizeof(ticks)) > 0)
			ep->timer_armed = false;
	}
	sfi_list_foreach_safe(&ep->connecting, it, tmp) {
		struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, centry);

		if (p->state == RDM_PEER_CONNECTING) {
			struct scif_portID dst = { .node = p->addr.node, .port = p->addr.port };

			if (scif_connect(p->cepd, &dst) >= 0)
				rdm_peer_connected(ep, p);
			else if (errno != EINPROGRESS)
				rdm_peer_connect_error(ep, p, errno);
			else if (now >= p->deadline)
				rdm_peer_connect_error(ep, p, ETIMEDOUT);
		} else if (p->state == RDM_PEER_RETRY && now >= p->retry_at) {
			rdm_peer_connect(ep, p);
		}
	}
	rdm_timer_update(ep);
}

/* ------------------------------------------------------------------------------------ */
/* Transmit. */

/** An EAGER/WDATA frame went out; a FI_DELIVERY_COMPLETE one waits for its ACK (which may
 *  even have come first: then only the free is left). */
static void rdm_eager_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_txr *t = sfi_container_of(tx, struct rdm_txr, tx);

	(void)c;
	t->frames--;
	if (err || !t->dc || t->finished)
		rdm_txr_finish(t->ep, t, err ? -err : 0);
}

/** The RTS went out: the request now waits for its CTS (already in rts_wait). */
static void rdm_rts_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_txr *t = sfi_container_of(tx, struct rdm_txr, tx);

	(void)c;
	t->frames--;
	if (err)
		rdm_txr_finish(t->ep, t, -err);
	else if (t->finished)
		rdm_txr_finish(t->ep, t, 0);
}

/** The DATA frame went out: the send is complete (FI_DELIVERY_COMPLETE: at the ACK). */
static void rdm_data_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_txr *t = sfi_container_of(tx, struct rdm_txr, tx2);

	(void)c;
	t->frames--;
	if (err || !t->dc || t->finished)
		rdm_txr_finish(t->ep, t, err ? -err : 0);
}

/** An ACK frame (a spare transmit request carries it) went out: recycle it. */
static void rdm_ack_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_txr *t = sfi_container_of(tx, struct rdm_txr, tx);

	(void)c;
	(void)err;
	rdm_txr_put(t->ep, t);
}

/** Tell the sender of a FI_DELIVERY_COMPLETE message that it arrived. */
static void rdm_send_ack(struct rdm_ep *ep, struct rdm_conn *rc, uint64_t id)
{
	struct rdm_txr *t = rdm_txr_get(ep);
	struct sfi_hdr h;

	if (!t) {
		rdm_conn_fail(rc, -FI_ENOMEM); /* the sender must not wait forever */
		return;
	}
	memset(&h, 0, sizeof(h));
	h.op = RDM_OP_ACK;
	h.id = id;
	t->tx.done = rdm_ack_done;
	if (sfi_conn_send(&rc->c, &t->tx, &h, NULL, 0))
		rdm_txr_put(ep, t);
	else
		rdm_conn_update_wait(rc);
}

/** Run an RMA now, synchronously (SCIF_RMA_SYNC); 0 or a positive FI_E* code. */
static int rdm_rma_run(struct rdm_conn *rc, struct rdm_txr *t)
{
	int e = sfi_rma_copy(rc->c.epd, t->kind == RDM_TX_WRITE, t->iov, t->iov_count, t->rma,
			     t->rma_count);

	return e ? rdm_errno(e) : 0;
}

/** Hand a request to a ready connection. Failures complete the request. */
static void rdm_txr_issue(struct rdm_ep *ep, struct rdm_conn *rc, struct rdm_txr *t)
{
	struct sfi_hdr h;
	int ret;

	memset(&h, 0, sizeof(h));
	if (t->kind != RDM_TX_MSG) {
		ret = rdm_rma_run(rc, t);
		if (ret || !t->wdata) {
			rdm_txr_finish(ep, t, ret);
			return;
		}
		h.op = RDM_OP_WDATA;
		h.flags = RDM_WF_DATA;
		h.data = t->data;
		t->tx.done = rdm_eager_done;
		ret = sfi_conn_send(&rc->c, &t->tx, &h, NULL, 0);
	} else if (!t->rndv) {
		h.op = RDM_OP_EAGER;
		h.flags = t->wflags;
		h.tag = t->tag;
		h.data = t->data;
		t->tx.done = rdm_eager_done;
		if (t->dc) {
			h.id = t->id = ++ep->next_id;
			sfi_list_insert_tail(&rc->rts_wait, &t->entry);
			t->in_list = true;
		}
		ret = sfi_conn_send(&rc->c, &t->tx, &h, t->iov, t->iov_count);
	} else {
		h.op = RDM_OP_RTS;
		h.flags = t->wflags;
		h.tag = t->tag;
		h.data = t->data;
		h.size = t->len;
		h.id = t->id = ++ep->next_id;
		t->tx.done = rdm_rts_done;
		ret = sfi_conn_send(&rc->c, &t->tx, &h, NULL, 0);
		if (!ret) {
			sfi_list_insert_tail(&rc->rts_wait, &t->entry);
			t->in_list = true;
		}
	}
	if (ret) {
		rdm_txr_finish(ep, t, -ret);
		return;
	}
	t->frames++;
	rdm_conn_update_wait(rc);
}

/** Send @p t to fi_addr @p dest: now if connected, else after the lazy connect. */
static ssize_t rdm_txr_submit(struct rdm_ep *ep, fi_addr_t dest, struct rdm_txr *t)
{
	struct sfi_addr a;
	struct rdm_peer *p;

	if (!ep->ep.av || sfi_av_lookup_addr(ep->ep.av, dest, &a)) {
		rdm_txr_put(ep, t);
		return -FI_EINVAL;
	}
	p = rdm_peer_get(ep, &a);
	if (!p) {
		rdm_txr_put(ep, t);
		return -FI_ENOMEM;
	}
	p->fi_addr = dest;
	ep->tx_used++;
	if (p->state == RDM_PEER_READY && p->conn && sfi_list_empty(&p->pending)) {
		rdm_txr_issue(ep, p->conn, t);
		return 0;
	}
	sfi_list_insert_tail(&p->pending, &t->entry);
	t->in_list = true;
	if (p->state == RDM_PEER_IDLE) {
		rdm_peer_connect(ep, p);
		rdm_timer_update(ep);
	}
	return 0;
}

/** Common checks and request set-up for every transmit call. NULL with *ret set. */
static struct rdm_txr *rdm_tx_prep(struct rdm_ep *ep, const struct iovec *iov, size_t count,
				   uint64_t flags, ssize_t *ret)
{
	struct rdm_txr *t;
	size_t len;

	if (!ep->ep.enabled) {
		*ret = -FI_EOPBADSTATE;
		return NULL;
	}
	if (count > SFI_MAX_IOV || (count && !iov)) {
		*ret = -FI_EINVAL;
		return NULL;
	}
	len = sfi_iov_len(iov, count);
	if (len > SFI_MAX_MSG) {
		*ret = -FI_EMSGSIZE;
		return NULL;
	}
	if ((flags & FI_INJECT) && len > ep->inject_size) {
		*ret = -FI_EMSGSIZE;
		return NULL;
	}
	if (ep->tx_used >= ep->tx_size) {
		ep->ep.progress(&ep->ep);
		if (ep->tx_used >= ep->tx_size) {
			*ret = -FI_EAGAIN;
			return NULL;
		}
	}
	t = rdm_txr_get(ep);
	if (!t) {
		*ret = -FI_ENOMEM;
		return NULL;
	}
	t->len = len;
	if (flags & FI_INJECT) {
		sfi_copy_from_iov(t->inject, len, iov, count, 0);
		t->iov[0].iov_base = t->inject;
		t->iov[0].iov_len = len;
		t->iov_count = len ? 1 : 0;
	} else {
		sfi_iov_copy(t->iov, iov, count);
		t->iov_count = count;
	}
	return t;
}

/**
 * The eager fast path: a message in one buffer that goes eagerly, to a peer whose connection
 * is up with nothing waiting before it, is framed and handed to SCIF from here
 * (sfi_conn_send_now) with no request, and its completion (an inject: its counter) is
 * written at once instead of from the next progress; completions are unordered
 * (FI_ORDER_NONE). Most small sends take this path: the request's set-up, queueing and
 * deferred completion were most of the provider's own cost per message. 1 when sent, 0
 * when the general path must take it (nothing done).
 */
static int rdm_send_now(struct rdm_ep *ep, const struct iovec *iov, size_t count,
			fi_addr_t dest, uint64_t tag, uint64_t data, void *context,
			uint64_t flags, uint16_t wflags, uint64_t cq_flags)
{
	size_t len = count ? iov[0].iov_len : 0;
	struct rdm_peer *p;
	struct sfi_hdr h;

	if (count > 1 || (count && !iov) || !ep->ep.enabled || ep->tx_used >= ep->tx_size)
		return 0;
	if ((flags & FI_INJECT) ? len > ep->inject_size :
	    len > ep->eager_max || (flags & FI_DELIVERY_COMPLETE))
		return 0;
	p = rdm_dest_peer(ep, dest);
	if (!p || p->state != RDM_PEER_READY || !p->conn || p->conn->dead ||
	    !sfi_list_empty(&p->pending))
		return 0;
	memset(&h, 0, sizeof(h));
	h.op = RDM_OP_EAGER;
	h.flags = wflags;
	h.tag = tag;
	h.data = data;
	if (!sfi_conn_send_now(&p->conn->c, &h, len ? iov[0].iov_base : NULL, len))
		return 0;
	p->fi_addr = dest;
	if (p->conn->c.want_pollout) /* a rest waits for room */
		rdm_conn_update_wait(p->conn);
	if (flags & RDM_TX_SILENT) {
		if (ep->ep.send_cntr)
			sfi_cntr_inc(ep->ep.send_cntr);
	} else {
		sfi_ep_complete_tx(&ep->ep, context, cq_flags);
	}
	return 1;
}

/** Every send/tsend variant: eager up to eager_max (and every inject), rendezvous above. */
static ssize_t rdm_sendgen(struct rdm_ep *ep, const struct iovec *iov, size_t count,
			   fi_addr_t dest, uint64_t tag, uint64_t data, void *context,
			   uint64_t flags, bool tagged)
{
	uint16_t wflags = (tagged ? RDM_WF_TAGGED : 0) |
			  ((flags & FI_REMOTE_CQ_DATA) ? RDM_WF_DATA : 0);
	uint64_t cq_flags = FI_SEND | (tagged ? FI_TAGGED : FI_MSG) | (flags & FI_COMPLETION);
	struct rdm_txr *t;
	ssize_t ret = 0;

	if (!(ep->ep.caps & (tagged ? FI_TAGGED : FI_MSG)))
		return -FI_EOPNOTSUPP;
	sfi_domain_lock(ep->ep.domain);
	if (rdm_send_now(ep, iov, count, dest, tag, data, context, flags, wflags, cq_flags)) {
		ep->ep.domain->sent = true; /* an answer may be awaited (sfi_cq.c cq_readfrom) */
		sfi_domain_unlock(ep->ep.domain);
		return 0;
	}
	t = rdm_tx_prep(ep, iov, count, flags, &ret);
	if (t) {
		t->kind = RDM_TX_MSG;
		t->context = context;
		t->tag = tag;
		t->data = data;
		t->wflags = wflags;
		t->cq_flags = cq_flags;
		t->rndv = t->len > ep->eager_max && !(flags & FI_INJECT);
		t->dc = (flags & FI_DELIVERY_COMPLETE) && !(flags & FI_INJECT);
		if (t->dc)
			t->wflags |= RDM_WF_ACK;
		t->no_cq = flags & RDM_TX_SILENT;
		ret = rdm_txr_submit(ep, dest, t);
		if (!ret)
			ep->ep.domain->sent = true;
	}
	sfi_domain_unlock(ep->ep.domain);
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Receive side of the wire. */

/** The CTS frame left (or was flushed): free the receive if it finished meanwhile. */
static void rdm_cts_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct rdm_rx *r = sfi_container_of(tx, struct rdm_rx, ctl_tx);
	struct rdm_conn *rc = sfi_container_of(c, struct rdm_conn, c);

	(void)err;
	r->ctl_busy = false;
	if (r->put_pending)
		rdm_rx_put(rc->ep, r);
}

/**
 * Offer the whole pages of receive @p t's buffer as a window the sender writes (CTS @p h
 * gets RDM_WF_RMA): one buffer, at least rndv_write_min bytes granted, and a window from
 * the connection's cache. Anything else: no offer, every byte comes in DATA.
 */
static void rdm_rndv_window(struct rdm_ep *ep, struct rdm_conn *rc, struct rdm_rx *t,
			    struct sfi_hdr *h)
{
	uintptr_t base, first;
	size_t head, len;
	off_t roff;

	t->rma_head = t->rma_len = 0;
	if (!ep->rndv_write_min || t->mlen < ep->rndv_write_min || t->iov_count != 1 ||
	    t->iov[0].iov_len < t->mlen)
		return;
	base = (uintptr_t)t->iov[0].iov_base;
	first = (base + RDM_PAGE - 1) & ~(uintptr_t)(RDM_PAGE - 1);
	head = first - base;
	if (head >= t->mlen)
		return;
	len = (t->mlen - head) & ~(size_t)(RDM_PAGE - 1);
	if (!len || sfi_wcache_get(&rc->wc, rc->c.epd, first, len, &roff))
		return;
	t->rma_head = head;
	t->rma_len = len;
	h->flags |= RDM_WF_RMA;
	h->data = (uint64_t)roff + head; /* window offsets are whole pages */
}

/** Match an RTS to receive @p t: grant min(size, buffer) and reply CTS. */
static void rdm_rndv_grant(struct rdm_ep *ep, struct rdm_conn *rc, struct rdm_rx *t,
			   uint64_t sender_id)
{
	struct sfi_hdr h;
	int ret;

	t->token = ++ep->next_id;
	t->sender_id = sender_id;
	memset(&h, 0, sizeof(h));
	h.op = RDM_OP_CTS;
	h.id = sender_id;
	h.size = t->mlen;
	h.tag = t->token;
	rdm_rndv_window(ep, rc, t, &h);
	t->ctl_tx.done = rdm_cts_done;
	sfi_list_insert_tail(&rc->rndv_rx, &t->entry);
	ret = sfi_conn_send(&rc->c, &t->ctl_tx, &h, NULL, 0);
	if (!ret)
		t->ctl_busy = true;
	if (ret) {
		sfi_list_remove(&t->entry);
		rdm_rx_finish(ep, t, -ret);
		return;
	}
	rdm_conn_update_wait(rc);
}


/** An EAGER header: choose where its payload goes. */
static int rdm_rx_eager(struct rdm_ep *ep, struct rdm_conn *rc, const struct sfi_hdr *h,
			struct iovec *iov)
{
	bool tagged = h->flags & RDM_WF_TAGGED;
	struct rdm_rx *r, *t;
	struct rdm_unexp *u;

	if (h->len > ep->rx_limit)
		return -RDM_EPROTO;
	r = rdm_match_posted(ep, tagged, &rc->src, h->tag);
	if (r) {
		t = rdm_take(ep, r, h->len, &rc->src, h->tag, h->data, h->flags);
		if (!t)
			return -FI_ENOMEM;
		rc->cur_rx = t;
		/* truncated: what does not fit is thrown away by sfi_conn */
		rc->c.rx_discard = h->len - t->mlen;
		return (int)rdm_iov_trim(iov, t->iov, t->iov_count, t->mlen);
	}
	u = rdm_ux_get(ep);
	if (!u)
		return -FI_ENOMEM;
	if (h->len) {
		u->buf = malloc(h->len);
		if (!u->buf) {
			rdm_ux_put(ep, u);
			return -FI_ENOMEM;
		}
	}
	u->conn = rc;
	u->src = rc->src;
	u->tag = tagged ? h->tag : 0;
	u->data = (h->flags & RDM_WF_DATA) ? h->data : 0;
	u->wflags = h->flags;
	u->size = h->len;
	u->complete = h->len == 0;
	sfi_list_insert_tail(tagged ? &ep->unexp_tag : &ep->unexp_msg, &u->entry);
	if (!h->len)
		return 0;
	rc->cur_ux = u;
	iov[0].iov_base = u->buf;
	iov[0].iov_len = h->len;
	return 1;
}

/** An RTS: match it now (CTS) or queue it as unexpected. */
static int rdm_rx_rts(struct rdm_ep *ep, struct rdm_conn *rc, const struct sfi_hdr *h)
{
	bool tagged = h->flags & RDM_WF_TAGGED;
	struct rdm_rx *r, *t;
	struct rdm_unexp *u;

	if (h->len || h->size > SFI_MAX_MSG)
		return -RDM_EPROTO;
	r = rdm_match_posted(ep, tagged, &rc->src, h->tag);
	if (r) {
		t = rdm_take(ep, r, h->size, &rc->src, h->tag, h->data, h->flags);
		if (!t)
			return -FI_ENOMEM;
		rdm_rndv_grant(ep, rc, t, h->id);
		return 0;
	}
	u = rdm_ux_get(ep);
	if (!u)
		return -FI_ENOMEM;
	u->conn = rc;
	u->src = rc->src;
	u->tag = tagged ? h->tag : 0;
	u->data = (h->flags & RDM_WF_DATA) ? h->data : 0;
	u->wflags = h->flags;
	u->size = h->size;
	u->sender_id = h->id;
	u->rndv = true;
	sfi_list_insert_tail(tagged ? &ep->unexp_tag : &ep->unexp_msg, &u->entry);
	return 0;
}

/** Whether a CTS's window offer is well formed: its head and whole pages fit the grant. */
static bool rdm_cts_window_ok(const struct sfi_hdr *h)
{
	uint64_t head = h->data & (RDM_PAGE - 1), roff = h->data - head;

	return head < h->size && (h->size - head) >= RDM_PAGE && roff <= (uint64_t)INT64_MAX;
}

/**
 * A CTS offering a window: write the granted bytes' whole pages into it, and put the rest
 * (before and after) in @p iov, *@p n entries (maybe none). Returns 1 if written, 0 if the
 * write could not be done here (too many pieces, or SCIF refused the offset: every byte then
 * goes in DATA, which the receiver takes as well), or a negative FI_E* if the connection is
 * gone.
 */
static int rdm_cts_write(struct rdm_conn *rc, struct rdm_txr *t, const struct sfi_hdr *h,
			 struct iovec *iov, size_t *n)
{
	uint64_t head = h->data & (RDM_PAGE - 1);
	size_t len = (h->size - head) & ~(size_t)(RDM_PAGE - 1), k;
	struct fi_rma_iov rma = { .addr = 0, .len = len, .key = h->data - head };
	struct iovec mid[SFI_MAX_IOV];
	size_t nm;
	int e;

	k = rdm_iov_slice(iov, 0, SFI_MAX_IOV, t->iov, t->iov_count, 0, head);
	if (k <= SFI_MAX_IOV)
		k = rdm_iov_slice(iov, k, SFI_MAX_IOV, t->iov, t->iov_count, head + len,
				  h->size - head - len);
	nm = rdm_iov_slice(mid, 0, SFI_MAX_IOV, t->iov, t->iov_count, head, len);
	if (k > SFI_MAX_IOV || nm > SFI_MAX_IOV)
		return 0;
	e = sfi_rma_copy(rc->c.epd, true, mid, nm, &rma, 1);
	if (e == ECONNRESET || e == ENOTCONN)
		return -FI_ECONNRESET;
	if (e)
		return 0; /* the receiver gets every byte in DATA instead */
	*n = k;
	return 1;
}

/** A CTS on an outgoing connection: stream the granted bytes. */
static int rdm_rx_cts(struct rdm_ep *ep, struct rdm_conn *rc, const struct sfi_hdr *h)
{
	struct sfi_list *it;
	struct rdm_txr *t = NULL;
	struct iovec iov[SFI_MAX_IOV];
	struct sfi_hdr d;
	size_t n;
	int ret;

	if (h->len)
		return -RDM_EPROTO;
	sfi_list_foreach(&rc->rts_wait, it) {
		struct rdm_txr *x = sfi_container_of(it, struct rdm_txr, entry);

		if (x->id == h->id) {
			t = x;
			break;
		}
	}
	if (!t || !t->rndv || t->cts_seen || h->size > t->len ||
	    ((h->flags & RDM_WF_RMA) && !rdm_cts_window_ok(h))) {
		SFI_WARN(FI_LOG_EP_DATA, "CTS for unknown request %" PRIu64 " or bad size\n",
			 h->id);
		return -RDM_EPROTO;
	}
	t->cts_seen = true;
	if (!t->dc) {
		sfi_list_remove(&t->entry);
		t->in_list = false;
	}
	memset(&d, 0, sizeof(d));
	d.op = RDM_OP_DATA;
	d.id = h->tag;
	ret = (h->flags & RDM_WF_RMA) ? rdm_cts_write(rc, t, h, iov, &n) : 0;
	if (ret < 0) {
		rdm_txr_finish(ep, t, -ret);
		return ret;
	}
	if (ret)
		d.flags = RDM_WF_RMA;
	else
		n = rdm_iov_trim(iov, t->iov, t->iov_count, h->size);
	t->tx2.done = rdm_data_done;
	ret = sfi_conn_send(&rc->c, &t->tx2, &d, iov, n);
	if (ret) {
		rdm_txr_finish(ep, t, -ret);
		return ret;
	}
	t->frames++;
	return 0;
}

/** An ACK on an outgoing connection: a FI_DELIVERY_COMPLETE send is complete. */
static int rdm_rx_ack(struct rdm_ep *ep, struct rdm_conn *rc, const struct sfi_hdr *h)
{
	struct sfi_list *it;

	if (h->len)
		return -RDM_EPROTO;
	sfi_list_foreach(&rc->rts_wait, it) {
		struct rdm_txr *t = sfi_container_of(it, struct rdm_txr, entry);

		if (t->id != h->id)
			continue;
		if (!t->dc || (t->rndv && !t->cts_seen))
			break;
		rdm_txr_finish(ep, t, 0);
		return 0;
	}
	SFI_WARN(FI_LOG_EP_DATA, "ACK for unknown request %" PRIu64 "\n", h->id);
	return -RDM_EPROTO;
}

/** A DATA frame: find the receive its token names. */
static int rdm_rx_data(struct rdm_conn *rc, const struct sfi_hdr *h, struct iovec *iov)
{
	struct sfi_list *it;

	sfi_list_foreach(&rc->rndv_rx, it) {
		struct rdm_rx *t = sfi_container_of(it, struct rdm_rx, entry);

		if (t->token != h->id)
			continue;
		if (h->flags & RDM_WF_RMA) {
			/* The middle is in the window: the rest comes, around it. */
			size_t n;

			if (!t->rma_len || h->len != t->mlen - t->rma_len)
				break;
			sfi_list_remove(&t->entry);
			rc->cur_rx = t;
			n = rdm_iov_slice(iov, 0, SFI_MAX_IOV, t->iov, t->iov_count, 0,
					  t->rma_head);
			return (int)rdm_iov_slice(iov, n, SFI_MAX_IOV, t->iov, t->iov_count,
						  t->rma_head + t->rma_len,
						  t->mlen - t->rma_head - t->rma_len);
		}
		if (h->len != t->mlen)
			break;
		sfi_list_remove(&t->entry);
		rc->cur_rx = t;
		return (int)rdm_iov_trim(iov, t->iov, t->iov_count, h->len);
	}
	SFI_WARN(FI_LOG_EP_DATA, "DATA for unknown token %" PRIu64 " (%u bytes)\n", h->id,
		 h->len);
	return -RDM_EPROTO;
}

/** A handshake frame: exactly @p op with a @p len-byte payload, which goes to @p buf. */
static int rdm_rx_handshake(const struct sfi_hdr *h, unsigned int op, void *buf, size_t len,
			    struct iovec *iov)
{
	if (h->op != op || h->len != len)
		return -RDM_EPROTO;
	iov[0].iov_base = buf;
	iov[0].iov_len = len;
	return 1;
}

/** sfi_conn rx_hdr: route a frame's payload (validates op, direction and state). */
static int rdm_rx_hdr(struct sfi_conn *c, const struct sfi_hdr *h, struct iovec *iov,
		      void **cookie)
{
	struct rdm_conn *rc = sfi_container_of(c, struct rdm_conn, c);
	struct rdm_ep *ep = rc->ep;

	*cookie = NULL;
	if (h->flags & ~RDM_WF_MASK)
		return -RDM_EPROTO;
	if (rc->outgoing) {
		if (!rc->hello)
			return rdm_rx_handshake(h, RDM_OP_HELLO_ACK, &rc->ack_buf,
						sizeof(rc->ack_buf), iov);
		if (h->op == RDM_OP_CTS)
			return rdm_rx_cts(ep, rc, h);
		return h->op == RDM_OP_ACK ? rdm_rx_ack(ep, rc, h) : -RDM_EPROTO;
	}
	if (!rc->hello)
		return rdm_rx_handshake(h, RDM_OP_HELLO, &rc->hello_buf, sizeof(rc->hello_buf),
					iov);
	switch (h->op) {
	case RDM_OP_EAGER:
		return rdm_rx_eager(ep, rc, h, iov);
	case RDM_OP_RTS:
		return rdm_rx_rts(ep, rc, h);
	case RDM_OP_DATA:
		return rdm_rx_data(rc, h, iov);
	case RDM_OP_WDATA:
		return h->len || !(h->flags & RDM_WF_DATA) ? -RDM_EPROTO : 0;
	default:
		return -RDM_EPROTO;
	}
}

/** sfi_conn rx_done: a frame's payload is in place. */
/**
 * sfi_conn rx_frame: an eager message whole in a lane record, for a posted receive, is
 * copied and completed here, without the iovec set up for sfi_conn and the rx_done pass.
 * Anything else (no match, multi-receive, delivery-complete, handshakes, other ops) goes
 * the usual way: 0.
 */
static int rdm_rx_frame(struct sfi_conn *c, const struct sfi_hdr *h, const void *payload)
{
	struct rdm_conn *rc = sfi_container_of(c, struct rdm_conn, c);
	struct rdm_ep *ep = rc->ep;
	bool tagged = h->flags & RDM_WF_TAGGED;
	struct rdm_rx *r;

	if (rc->outgoing || !rc->hello || h->op != RDM_OP_EAGER ||
	    (h->flags & ~(RDM_WF_TAGGED | RDM_WF_DATA)) || h->len > ep->rx_limit)
		return 0;
	r = rdm_match_posted(ep, tagged, &rc->src, h->tag);
	if (!r || (r->flags & FI_MULTI_RECV))
		return 0;
	r = rdm_take(ep, r, h->len, &rc->src, h->tag, h->data, h->flags);
	if (r->iov_count == 1 && r->mlen <= SFI_COPY_SMALL)
		sfi_copy_small(r->iov[0].iov_base, payload, r->mlen);
	else if (r->mlen)
		sfi_copy_to_iov(r->iov, r->iov_count, 0, payload, r->mlen);
	rdm_rx_finish(ep, r, 0);
	return 1;
}

static void rdm_rx_done(struct sfi_conn *c, const struct sfi_hdr *h, void *cookie)
{
	struct rdm_conn *rc = sfi_container_of(c, struct rdm_conn, c);
	struct rdm_ep *ep = rc->ep;
	struct rdm_rx *t;
	struct rdm_unexp *u;

	(void)cookie;
	if (rc->outgoing) {
		if (!rc->hello && h->op == RDM_OP_HELLO_ACK) {
			rc->hello = true;
			if (rc->peer && rc->peer->conn == rc)
				rdm_peer_ready(ep, rc->peer);
		}
		return;
	}
	if (!rc->hello) {
		struct sfi_addr a = rc->hello_buf.addr;
		struct rdm_peer *p;
		struct iovec iov;

		if (a.magic != SFI_ADDR_MAGIC || a.node != rc->accept_node || a.port == 0) {
			SFI_WARN(FI_LOG_EP_CTRL, "bad HELLO from node %u\n", rc->accept_node);
			rdm_conn_fail(rc, -RDM_EPROTO);
			return;
		}
		rc->src = a;
		rc->c.peer = a;
		rc->hello = true;
		/*
		 * Our connection to this address reached an endpoint of another incarnation: that
		 * one is gone, though SCIF may not have said so yet. Failed at the end of this
		 * progress pass (not here: the pass walks the connection list), so before anything
		 * that came on this connection can be answered over the dead one.
		 */
		p = rdm_peer_find(ep, &a);
		if (p && p->conn && p->conn->hello && !p->conn->dead &&
		    p->conn->ack_buf != rc->hello_buf.incarnation) {
			SFI_DBG(FI_LOG_EP_CTRL, "%u:%u is a new endpoint: its old connection goes\n",
				a.node, a.port);
			p->conn->stale = true;
			ep->stale = true;
		}
		rc->ack_buf = ep->incarnation;
		iov.iov_base = &rc->ack_buf;
		iov.iov_len = sizeof(rc->ack_buf);
		if (rdm_send_ctl(rc, RDM_OP_HELLO_ACK, &iov, 1))
			rdm_conn_fail(rc, -FI_ECONNRESET);
		return;
	}
	switch (h->op) {
	case RDM_OP_EAGER:
		t = rc->cur_rx;
		u = rc->cur_ux;
		rc->cur_rx = NULL;
		rc->cur_ux = NULL;
		if (t) {
			rdm_rx_finish(ep, t, 0);
		} else if (u) {
			u->complete = true;
			if (u->discard) {
				rdm_ux_put(ep, u);
			} else if (u->waiting) {
				t = u->waiting;
				sfi_copy_to_iov(t->iov, t->iov_count, 0, u->buf, t->mlen);
				rdm_rx_finish(ep, t, 0);
				rdm_ux_put(ep, u);
			}
		}
		if ((h->flags & RDM_WF_ACK) && !rc->dead)
			rdm_send_ack(ep, rc, h->id);
		break;
	case RDM_OP_DATA:
		t = rc->cur_rx;
		rc->cur_rx = NULL;
		if (t) {
			if (t->mflags & RDM_WF_ACK)
				rdm_send_ack(ep, rc, t->sender_id);
			rdm_rx_finish(ep, t, 0);
		}
		break;
	case RDM_OP_WDATA:
		sfi_ep_complete_rx(&ep->ep, NULL, FI_REMOTE_WRITE | FI_RMA | FI_REMOTE_CQ_DATA,
				   0, NULL, h->data, 0, rdm_src_fiaddr(ep, &rc->src));
		break;
	default:
		break;
	}
}

static const struct sfi_conn_ops rdm_conn_ops = {
	.rx_hdr = rdm_rx_hdr,
	.rx_done = rdm_rx_done,
	.rx_frame = rdm_rx_frame,
	.on_error = rdm_on_error,
};

/* ------------------------------------------------------------------------------------ */
/* Progress. */

/** Take every pending connection request on the listener. */
static void rdm_progress_accept(struct rdm_ep *ep)
{
	while (ep->listening) {
		struct scif_portID pid;
		scif_epd_t nepd;
		struct rdm_conn *rc;
		struct sfi_addr a = { .magic = 0 };
		int err;

		if (scif_accept(ep->lepd, &pid, &nepd, 0) < 0) {
			if (errno != EAGAIN && errno != EINTR)
				SFI_WARN(FI_LOG_EP_CTRL, "scif_accept: %s\n", strerror(errno));
			return;
		}
		a.node = pid.node;
		a.port = pid.port;
		rc = rdm_conn_new(ep, nepd, &a, false, &err);
		if (rc)
			rc->accept_node = pid.node;
	}
}

/**
 * Close idle outgoing connections whose peer left the AV (fi_av_remove): the address may
 * be reused by another endpoint later. FI_AV_MAP keeps no state to tell, so only tables.
 */
static void rdm_gc_peers(struct rdm_ep *ep)
{
	struct sfi_av *av = ep->ep.av;
	unsigned int b;

	if (!av || av->type != FI_AV_TABLE)
		return;
	for (b = 0; b < RDM_PEER_BUCKETS; b++) {
		struct sfi_list *it, *tmp;

		sfi_list_foreach_safe(&ep->buckets[b], it, tmp) {
			struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, hentry);
			struct rdm_conn *rc = p->conn;
			struct sfi_addr a;

			if (p->state != RDM_PEER_READY || !rc || !sfi_list_empty(&p->pending) ||
			    !sfi_list_empty(&rc->rts_wait) || !sfi_list_empty(&rc->c.txq))
				continue;
			if (!sfi_av_lookup_addr(av, p->fi_addr, &a) && rdm_addr_eq(&a, &p->addr))
				continue;
			if (sfi_av_reverse(av, &p->addr) != FI_ADDR_NOTAVAIL)
				continue;
			SFI_DBG(FI_LOG_EP_CTRL, "closing the connection to removed peer %u:%u\n",
				p->addr.node, p->addr.port);
			rdm_conn_fail(rc, -FI_ECANCELED);
			sfi_list_remove(&p->hentry);
			if (ep->tx_peer == p)
				ep->tx_peer = NULL;
			free(p);
		}
	}
}

/**
 * An outgoing connection that expects nothing: its HELLO_ACK came, no request waits for a
 * CTS or ACK on it, it has nothing to send and no frame half taken in. The peer sends on
 * such a connection only in reply to us, so the only thing that can arrive is its end (or
 * a protocol violation): progress looks at it only as often as at the listener
 * (RDM_ACCEPT_EVERY_MS), not on every call. That halves the empty scif_recv calls of an
 * endpoint that talks to one peer (it also receives on the peer's connection), and they
 * are what a polling reader spends its time on.
 */
static inline bool rdm_conn_quiet(const struct rdm_conn *rc)
{
	const struct sfi_conn *c = &rc->c;

	return rc->outgoing && rc->hello && sfi_list_empty(&rc->rts_wait) &&
	       sfi_list_empty(&c->txq) && sfi_list_empty(&c->tx_done) && !c->rx_in_payload &&
	       c->rx_hdr_got == 0 && c->rx_stage_off == c->rx_stage_len &&
	       !c->lane.rx_gone; /* arming saw the peer's end: progress meets it now */
}

/**
 * Fail the outgoing connections whose peer's address has a new incarnation (rdm_rx_done):
 * what is queued on them fails with FI_ECONNRESET, and the next send to the address
 * connects to the endpoint that has it now.
 */
static void rdm_fail_stale(struct rdm_ep *ep)
{
	struct sfi_list *it, *tmp;

	ep->stale = false;
	sfi_list_foreach_safe(&ep->conns, it, tmp) {
		struct rdm_conn *rc = sfi_container_of(it, struct rdm_conn, c.owner_entry);

		if (rc->stale)
			rdm_conn_fail(rc, -FI_ECONNRESET);
	}
}

/**
 * Move bytes on the connections: every one when @p sweep, else those not quiet
 * (rdm_conn_quiet, sfi_conn_rx_quiet). Whether a frame came in on any.
 */
static bool rdm_progress_conns(struct rdm_ep *ep, bool sweep)
{
	struct sfi_list *it, *tmp;
	bool busy = false;

	sfi_list_foreach_safe(&ep->conns, it, tmp) {
		struct rdm_conn *rc = sfi_container_of(it, struct rdm_conn, c.owner_entry);
		uint64_t frames = rc->c.rx_frames;

		if (!sweep && (rdm_conn_quiet(rc) || sfi_conn_rx_quiet(&rc->c)))
			continue;
		sfi_conn_progress(&rc->c);
		busy |= rc->c.rx_frames != frames; /* rc is not freed before the pass ends */
		if (!rc->dead)
			rdm_conn_update_wait(rc);
	}
	return busy;
}

/**
 * sfi_ep::progress: connect, move bytes on the connections that have something; then, at
 * most every RDM_ACCEPT_EVERY_MS, accept, look at the quiet connections too, and sweep idle
 * ones (RDM_GC_EVERY_MS); reap dead ones. The clock for that is read after a pass that took
 * no frame in (a polling caller's), or every 64th one that did: a message's way from the
 * ring to its completion does not wait for it.
 */
static void rdm_progress(struct sfi_ep *sep)
{
	struct rdm_ep *ep = sfi_container_of(sep, struct rdm_ep, ep);

	if (!sep->enabled)
		return;
	if (!sfi_list_empty(&ep->connecting) || ep->timer_armed)
		rdm_progress_connects(ep);
	if (!rdm_progress_conns(ep, false) || (++ep->busy_passes & 63) == 0) {
		uint64_t now = rdm_coarse_ms();

		if (now >= ep->accept_at) {
			ep->accept_at = now + RDM_ACCEPT_EVERY_MS;
			if (ep->listening)
				rdm_progress_accept(ep);
			(void)rdm_progress_conns(ep, true);
		}
		if (ep->listening && now >= ep->gc_at) {
			ep->gc_at = now + RDM_GC_EVERY_MS;
			rdm_gc_peers(ep);
		}
	}
	if (ep->stale)
		rdm_fail_stale(ep);
	while (!sfi_list_empty(&ep->dead))
		rdm_conn_free(sfi_container_of(ep->dead.next, struct rdm_conn, c.owner_entry));
}

/** sfi_ep::arm: every live connection arms its lane before the caller sleeps. */
static int rdm_arm(struct sfi_ep *sep)
{
	struct rdm_ep *ep = sfi_container_of(sep, struct rdm_ep, ep);
	struct sfi_list *it;

	sfi_list_foreach(&ep->conns, it) {
		struct rdm_conn *rc = sfi_container_of(it, struct rdm_conn, c.owner_entry);

		if (!rc->dead && sfi_conn_arm(&rc->c))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Receive calls. */

/** Deliver an unexpected entry to receive @p t (from rdm_take); frees or parks @p u. */
static void rdm_ux_deliver(struct rdm_ep *ep, struct rdm_unexp *u, struct rdm_rx *t)
{
	sfi_list_remove(&u->entry);
	if (u->rndv) {
		if (u->conn && !u->conn->dead)
			rdm_rndv_grant(ep, u->conn, t, u->sender_id);
		else
			rdm_rx_finish(ep, t, FI_ECONNRESET);
		rdm_ux_put(ep, u);
	} else if (u->complete) {
		if (t->mlen)
			sfi_copy_to_iov(t->iov, t->iov_count, 0, u->buf, t->mlen);
		rdm_rx_finish(ep, t, 0);
		rdm_ux_put(ep, u);
	} else {
		/* payload still arriving: rdm_rx_done delivers it */
		u->waiting = t;
	}
}

/** First unexpected entry matching @p r (claimed ones only by their claim context). */
static struct rdm_unexp *rdm_match_unexp(struct rdm_ep *ep, const struct rdm_rx *r,
					 bool tagged, bool claim)
{
	struct sfi_list *q = tagged ? &ep->unexp_tag : &ep->unexp_msg, *it;

	sfi_list_foreach(q, it) {
		struct rdm_unexp *u = sfi_container_of(it, struct rdm_unexp, entry);

		if (u->waiting)
			continue;
		if (claim) {
			if (u->claimed && u->claim_ctx == r->context)
				return u;
			continue;
		}
		if (!u->claimed && rdm_rx_matches(r, tagged, &u->src, u->tag))
			return u;
	}
	return NULL;
}

/** Drop an unexpected message without delivering it (FI_DISCARD). */
static void rdm_ux_discard(struct rdm_ep *ep, struct rdm_unexp *u)
{
	sfi_list_remove(&u->entry);
	if (u->rndv) {
		/* grant nothing: no data moves and the sender completes */
		if (u->conn && !u->conn->dead) {
			struct rdm_rx *t = rdm_rx_get(ep);

			if (t) {
				t->silent = true;
				t->msrc = u->src;
				t->mflags = u->wflags;
				rdm_rndv_grant(ep, u->conn, t, u->sender_id);
			}
		}
		rdm_ux_put(ep, u);
	} else if (!u->complete) {
		u->discard = true; /* rdm_rx_done frees it once the payload is in */
	} else {
		rdm_ux_put(ep, u);
	}
}

/**
 * Every recv/trecv variant, including FI_PEEK / FI_CLAIM / FI_DISCARD (tagged) and
 * FI_MULTI_RECV (untagged): unexpected messages are matched first, in arrival order; what
 * is left waits in the posted queue.
 */
static ssize_t rdm_recvgen(struct rdm_ep *ep, const struct iovec *iov, size_t count,
			   fi_addr_t src, uint64_t tag, uint64_t ignore, void *context,
			   uint64_t flags, bool tagged)
{
	struct rdm_rx *r, *t;
	struct rdm_unexp *u;
	ssize_t ret = 0;

	if (!(ep->ep.caps & (tagged ? FI_TAGGED : FI_MSG)))
		return -FI_EOPNOTSUPP;
	if (count > SFI_MAX_IOV || (count && !iov))
		return -FI_EINVAL;
	if ((flags & FI_MULTI_RECV) && (tagged || count != 1 || !(ep->ep.caps & FI_MULTI_RECV)))
		return -FI_EINVAL;
	if ((flags & (FI_PEEK | FI_CLAIM | FI_DISCARD)) && !tagged)
		return -FI_EOPNOTSUPP;

	sfi_domain_lock(ep->ep.domain);
	if (!ep->ep.enabled) {
		ret = -FI_EOPBADSTATE;
		goto out;
	}
	r = rdm_rx_get(ep);
	if (!r) {
		ret = -FI_ENOMEM;
		goto out;
	}
	r->context = context;
	r->flags = flags;
	r->cq_flags = FI_RECV | (tagged ? FI_TAGGED : FI_MSG) | (flags & FI_COMPLETION);
	sfi_iov_copy(r->iov, iov, count);
	r->iov_count = count;
	r->len = sfi_iov_len(iov, count);
	r->tag = tag;
	r->ignore = ignore;
	r->any_src = true;
	if ((ep->ep.caps & FI_DIRECTED_RECV) && src != FI_ADDR_UNSPEC) {
		if (!ep->ep.av || sfi_av_lookup_addr(ep->ep.av, src, &r->src)) {
			rdm_rx_put(ep, r);
			ret = -FI_EINVAL;
			goto out;
		}
		r->any_src = false;
	}

	if (flags & FI_PEEK) {
		u = rdm_match_unexp(ep, r, true, false);
		if (!u) {
			sfi_ep_error_rx(&ep->ep, context, r->cq_flags, FI_ENOMSG, 0, NULL, 0, tag,
					0);
			rdm_rx_put(ep, r);
			goto out;
		}
		r->cq_flags |= (u->wflags & RDM_WF_DATA) ? FI_REMOTE_CQ_DATA : 0;
		sfi_ep_complete_rx(&ep->ep, context, r->cq_flags, u->size, NULL, u->data, u->tag,
				   rdm_src_fiaddr(ep, &u->src));
		if (flags & FI_DISCARD) {
			rdm_ux_discard(ep, u);
		} else if (flags & FI_CLAIM) {
			u->claimed = true;
			u->claim_ctx = context;
		}
		rdm_rx_put(ep, r);
		goto out;
	}
	if (flags & FI_CLAIM) {
		u = rdm_match_unexp(ep, r, true, true);
		if (!u) {
			rdm_rx_put(ep, r);
			ret = -FI_EINVAL;
			goto out;
		}
		if (flags & FI_DISCARD) {
			sfi_ep_complete_rx(&ep->ep, context, r->cq_flags, 0, NULL, u->data, u->tag,
					   rdm_src_fiaddr(ep, &u->src));
			rdm_ux_discard(ep, u);
			rdm_rx_put(ep, r);
			goto out;
		}
		/* rdm_take expects the receive in a queue */
		sfi_list_insert_tail(&ep->posted_tag, &r->entry);
		ep->rx_used++;
		t = rdm_take(ep, r, u->size, &u->src, u->tag, u->data, u->wflags);
		rdm_ux_deliver(ep, u, t);
		goto out;
	}

	if (ep->rx_used >= ep->rx_size) {
		rdm_rx_put(ep, r);
		ret = -FI_EAGAIN;
		goto out;
	}
	sfi_list_insert_tail(tagged ? &ep->posted_tag : &ep->posted_msg, &r->entry);
	ep->rx_used++;
	/* unexpected messages first, in arrival order */
	for (;;) {
		bool last;

		u = rdm_match_unexp(ep, r, tagged, false);
		if (!u)
			break;
		t = rdm_take(ep, r, u->size, &u->src, u->tag, u->data, u->wflags);
		if (!t) {
			ret = -FI_ENOMEM;
			break;
		}
		/* r may be freed by the delivery once it has left the queue */
		last = !(flags & FI_MULTI_RECV) || r->mr_released;
		rdm_ux_deliver(ep, u, t);
		if (last)
			break;
	}
out:
	sfi_domain_unlock(ep->ep.domain);
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* fi_ops_msg / fi_ops_tagged. */

static ssize_t rdm_recv(struct fid_ep *fep, void *buf, size_t len, void *desc, fi_addr_t src,
			void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { buf, len };

	(void)desc;
	return rdm_recvgen(ep, &iov, 1, src, 0, 0, context, ep->rx_op_flags, false);
}

static ssize_t rdm_recvv(struct fid_ep *fep, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t src, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	(void)desc;
	return rdm_recvgen(ep, iov, count, src, 0, 0, context, ep->rx_op_flags, false);
}

static ssize_t rdm_recvmsg(struct fid_ep *fep, const struct fi_msg *msg, uint64_t flags)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	return rdm_recvgen(ep, msg->msg_iov, msg->iov_count, msg->addr, 0, 0, msg->context,
			   flags, false);
}

static ssize_t rdm_send(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			fi_addr_t dest, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	(void)desc;
	return rdm_sendgen(ep, &iov, 1, dest, 0, 0, context, ep->tx_op_flags, false);
}

static ssize_t rdm_sendv(struct fid_ep *fep, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t dest, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	(void)desc;
	return rdm_sendgen(ep, iov, count, dest, 0, 0, context, ep->tx_op_flags, false);
}

static ssize_t rdm_sendmsg(struct fid_ep *fep, const struct fi_msg *msg, uint64_t flags)
{
	return rdm_sendgen(rdm_ep_of(fep), msg->msg_iov, msg->iov_count, msg->addr, 0,
			   msg->data, msg->context, flags & ~RDM_TX_SILENT, false);
}

static ssize_t rdm_inject(struct fid_ep *fep, const void *buf, size_t len, fi_addr_t dest)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	return rdm_sendgen(ep, &iov, 1, dest, 0, 0, NULL, FI_INJECT | RDM_TX_SILENT, false);
}

static ssize_t rdm_senddata(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			    uint64_t data, fi_addr_t dest, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	(void)desc;
	return rdm_sendgen(ep, &iov, 1, dest, 0, data, context,
			   ep->tx_op_flags | FI_REMOTE_CQ_DATA, false);
}

static ssize_t rdm_injectdata(struct fid_ep *fep, const void *buf, size_t len,
			      uint64_t data, fi_addr_t dest)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	return rdm_sendgen(ep, &iov, 1, dest, 0, data, NULL,
			   FI_INJECT | FI_REMOTE_CQ_DATA | RDM_TX_SILENT, false);
}

static struct fi_ops_msg rdm_msg_ops = {
	.size = sizeof(struct fi_ops_msg),
	.recv = rdm_recv,
	.recvv = rdm_recvv,
	.recvmsg = rdm_recvmsg,
	.send = rdm_send,
	.sendv = rdm_sendv,
	.sendmsg = rdm_sendmsg,
	.inject = rdm_inject,
	.senddata = rdm_senddata,
	.injectdata = rdm_injectdata,
};

static ssize_t rdm_trecv(struct fid_ep *fep, void *buf, size_t len, void *desc,
			 fi_addr_t src, uint64_t tag, uint64_t ignore, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { buf, len };

	(void)desc;
	return rdm_recvgen(ep, &iov, 1, src, tag, ignore, context,
			   ep->rx_op_flags & ~FI_MULTI_RECV, true);
}

static ssize_t rdm_trecvv(struct fid_ep *fep, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t src, uint64_t tag, uint64_t ignore,
			  void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	(void)desc;
	return rdm_recvgen(ep, iov, count, src, tag, ignore, context,
			   ep->rx_op_flags & ~FI_MULTI_RECV, true);
}

static ssize_t rdm_trecvmsg(struct fid_ep *fep, const struct fi_msg_tagged *msg,
			    uint64_t flags)
{
	return rdm_recvgen(rdm_ep_of(fep), msg->msg_iov, msg->iov_count, msg->addr, msg->tag,
			   msg->ignore, msg->context, flags, true);
}

static ssize_t rdm_tsend(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			 fi_addr_t dest, uint64_t tag, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	(void)desc;
	return rdm_sendgen(ep, &iov, 1, dest, tag, 0, context, ep->tx_op_flags, true);
}

static ssize_t rdm_tsendv(struct fid_ep *fep, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t dest, uint64_t tag, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	(void)desc;
	return rdm_sendgen(ep, iov, count, dest, tag, 0, context, ep->tx_op_flags, true);
}

static ssize_t rdm_tsendmsg(struct fid_ep *fep, const struct fi_msg_tagged *msg,
			    uint64_t flags)
{
	return rdm_sendgen(rdm_ep_of(fep), msg->msg_iov, msg->iov_count, msg->addr, msg->tag,
			   msg->data, msg->context, flags & ~RDM_TX_SILENT, true);
}

static ssize_t rdm_tinject(struct fid_ep *fep, const void *buf, size_t len, fi_addr_t dest,
			   uint64_t tag)
{
	struct iovec iov = { (void *)buf, len };

	return rdm_sendgen(rdm_ep_of(fep), &iov, 1, dest, tag, 0, NULL,
			   FI_INJECT | RDM_TX_SILENT, true);
}

static ssize_t rdm_tsenddata(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			     uint64_t data, fi_addr_t dest, uint64_t tag, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct iovec iov = { (void *)buf, len };

	(void)desc;
	return rdm_sendgen(ep, &iov, 1, dest, tag, data, context,
			   ep->tx_op_flags | FI_REMOTE_CQ_DATA, true);
}

static ssize_t rdm_tinjectdata(struct fid_ep *fep, const void *buf, size_t len,
			       uint64_t data, fi_addr_t dest, uint64_t tag)
{
	struct iovec iov = { (void *)buf, len };

	return rdm_sendgen(rdm_ep_of(fep), &iov, 1, dest, tag, data, NULL,
			   FI_INJECT | FI_REMOTE_CQ_DATA | RDM_TX_SILENT, true);
}

static struct fi_ops_tagged rdm_tagged_ops = {
	.size = sizeof(struct fi_ops_tagged),
	.recv = rdm_trecv,
	.recvv = rdm_trecvv,
	.recvmsg = rdm_trecvmsg,
	.send = rdm_tsend,
	.sendv = rdm_tsendv,
	.sendmsg = rdm_tsendmsg,
	.inject = rdm_tinject,
	.senddata = rdm_tsenddata,
	.injectdata = rdm_tinjectdata,
};

/* ------------------------------------------------------------------------------------ */
/* RMA. */

/** Every RMA call: run now (SCIF_RMA_SYNC) if the peer is ready, else after the connect. */
static ssize_t rdm_rmagen(struct rdm_ep *ep, enum rdm_txr_kind kind, const struct iovec *iov,
			  size_t count, fi_addr_t dest, const struct fi_rma_iov *rma,
			  size_t rma_count, uint64_t data, void *context, uint64_t flags)
{
	struct rdm_txr *t;
	ssize_t ret = 0;

	if (!(ep->ep.caps & FI_RMA))
		return -FI_EOPNOTSUPP;
	if (rma_count > SFI_MAX_IOV || (rma_count && !rma))
		return -FI_EINVAL;
	if (sfi_iov_len(iov, count) != 0 || rma_count) {
		size_t i, rl = 0;

		for (i = 0; i < rma_count; i++)
			rl += rma[i].len;
		if (rl != sfi_iov_len(iov, count))
			return -FI_EINVAL;
	}
	if (kind == RDM_TX_READ)
		flags &= ~FI_INJECT;
	sfi_domain_lock(ep->ep.domain);
	t = rdm_tx_prep(ep, iov, count, flags, &ret);
	if (t) {
		t->kind = kind;
		t->context = context;
		t->data = data;
		t->wdata = kind == RDM_TX_WRITE && (flags & FI_REMOTE_CQ_DATA);
		memcpy(t->rma, rma, rma_count * sizeof(*rma));
		t->rma_count = rma_count;
		t->cq_flags = FI_RMA | (kind == RDM_TX_WRITE ? FI_WRITE : FI_READ) |
			      (flags & FI_COMPLETION);
		t->no_cq = flags & RDM_TX_SILENT;
		ret = rdm_txr_submit(ep, dest, t);
	}
	sfi_domain_unlock(ep->ep.domain);
	return ret;
}

/** The single-buffer calls: fi_read, fi_write, fi_writedata and the injects. */
static ssize_t rdm_rma1(struct fid_ep *fep, enum rdm_txr_kind kind, const void *buf,
			size_t len, fi_addr_t dest, uint64_t addr, uint64_t key, uint64_t data,
			void *context, uint64_t flags)
{
	struct iovec iov = { (void *)buf, len };
	struct fi_rma_iov r = { addr, len, key };

	return rdm_rmagen(rdm_ep_of(fep), kind, &iov, 1, dest, &r, 1, data, context, flags);
}

/** fi_readv/fi_writev: one remote region as long as the local list. */
static ssize_t rdm_rmav(struct fid_ep *fep, enum rdm_txr_kind kind, const struct iovec *iov,
			size_t count, fi_addr_t dest, uint64_t addr, uint64_t key, void *context)
{
	struct rdm_ep *ep = rdm_ep_of(fep);
	struct fi_rma_iov r = { addr, sfi_iov_len(iov, count), key };

	return rdm_rmagen(ep, kind, iov, count, dest, &r, 1, 0, context, ep->tx_op_flags);
}

static ssize_t rdm_read(struct fid_ep *fep, void *buf, size_t len, void *desc, fi_addr_t src,
			uint64_t addr, uint64_t key, void *context)
{
	(void)desc;
	return rdm_rma1(fep, RDM_TX_READ, buf, len, src, addr, key, 0, context,
			rdm_ep_of(fep)->tx_op_flags);
}

static ssize_t rdm_readv(struct fid_ep *fep, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t src, uint64_t addr, uint64_t key, void *context)
{
	(void)desc;
	return rdm_rmav(fep, RDM_TX_READ, iov, count, src, addr, key, context);
}

static ssize_t rdm_readmsg(struct fid_ep *fep, const struct fi_msg_rma *msg, uint64_t flags)
{
	return rdm_rmagen(rdm_ep_of(fep), RDM_TX_READ, msg->msg_iov, msg->iov_count, msg->addr,
			  msg->rma_iov, msg->rma_iov_count, 0, msg->context, flags);
}

static ssize_t rdm_write(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			 fi_addr_t dest, uint64_t addr, uint64_t key, void *context)
{
	(void)desc;
	return rdm_rma1(fep, RDM_TX_WRITE, buf, len, dest, addr, key, 0, context,
			rdm_ep_of(fep)->tx_op_flags);
}

static ssize_t rdm_writev(struct fid_ep *fep, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t dest, uint64_t addr, uint64_t key,
			  void *context)
{
	(void)desc;
	return rdm_rmav(fep, RDM_TX_WRITE, iov, count, dest, addr, key, context);
}

static ssize_t rdm_writemsg(struct fid_ep *fep, const struct fi_msg_rma *msg, uint64_t flags)
{
	return rdm_rmagen(rdm_ep_of(fep), RDM_TX_WRITE, msg->msg_iov, msg->iov_count, msg->addr,
			  msg->rma_iov, msg->rma_iov_count, msg->data, msg->context,
			  flags & ~RDM_TX_SILENT);
}

static ssize_t rdm_inject_write(struct fid_ep *fep, const void *buf, size_t len,
				fi_addr_t dest, uint64_t addr, uint64_t key)
{
	return rdm_rma1(fep, RDM_TX_WRITE, buf, len, dest, addr, key, 0, NULL,
			FI_INJECT | RDM_TX_SILENT);
}

static ssize_t rdm_writedata(struct fid_ep *fep, const void *buf, size_t len, void *desc,
			     uint64_t data, fi_addr_t dest, uint64_t addr, uint64_t key,
			     void *context)
{
	(void)desc;
	return rdm_rma1(fep, RDM_TX_WRITE, buf, len, dest, addr, key, data, context,
			rdm_ep_of(fep)->tx_op_flags | FI_REMOTE_CQ_DATA);
}

static ssize_t rdm_inject_writedata(struct fid_ep *fep, const void *buf, size_t len,
				    uint64_t data, fi_addr_t dest, uint64_t addr, uint64_t key)
{
	return rdm_rma1(fep, RDM_TX_WRITE, buf, len, dest, addr, key, data, NULL,
			FI_INJECT | FI_REMOTE_CQ_DATA | RDM_TX_SILENT);
}

static struct fi_ops_rma rdm_rma_ops = {
	.size = sizeof(struct fi_ops_rma),
	.read = rdm_read,
	.readv = rdm_readv,
	.readmsg = rdm_readmsg,
	.write = rdm_write,
	.writev = rdm_writev,
	.writemsg = rdm_writemsg,
	.inject = rdm_inject_write,
	.writedata = rdm_writedata,
	.injectdata = rdm_inject_writedata,
};

/* ------------------------------------------------------------------------------------ */
/* fi_ops_ep. */

/** fi_cancel: a posted receive with this context completes with FI_ECANCELED. A
 *  multi-receive buffer with pieces still arriving is released instead: its last piece's
 *  completion carries FI_MULTI_RECV. */
static ssize_t rdm_cancel(fid_t fid, void *context)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	struct sfi_list *queues[2] = { &ep->posted_msg, &ep->posted_tag }, *it;
	int q;

	sfi_domain_lock(ep->ep.domain);
	for (q = 0; q < 2; q++) {
		sfi_list_foreach(queues[q], it) {
			struct rdm_rx *r = sfi_container_of(it, struct rdm_rx, entry);
			uint64_t flags = r->cq_flags;

			if (r->context != context)
				continue;
			sfi_list_remove(&r->entry);
			ep->rx_used--;
			if (r->flags & FI_MULTI_RECV) {
				r->mr_released = true;
				if (r->mr_inflight)
					goto out;
				flags |= FI_MULTI_RECV;
			}
			sfi_ep_error_rx(&ep->ep, context, flags, FI_ECANCELED, 0, NULL, 0, r->tag,
					0);
			rdm_rx_put(ep, r);
			goto out;
		}
	}
out:
	sfi_domain_unlock(ep->ep.domain);
	return 0;
}

static int rdm_getopt(fid_t fid, int level, int optname, void *optval, size_t *optlen)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);

	if (level != FI_OPT_ENDPOINT)
		return -FI_ENOPROTOOPT;
	if (!optval || !optlen)
		return -FI_EINVAL;
	switch (optname) {
	case FI_OPT_MIN_MULTI_RECV:
		if (*optlen < sizeof(size_t))
			return -FI_ETOOSMALL;
		*(size_t *)optval = ep->min_multi_recv;
		*optlen = sizeof(size_t);
		return 0;
	case FI_OPT_CM_DATA_SIZE:
		if (*optlen < sizeof(size_t))
			return -FI_ETOOSMALL;
		*(size_t *)optval = 0;
		*optlen = sizeof(size_t);
		return 0;
	default:
		return -FI_ENOPROTOOPT;
	}
}

static int rdm_setopt(fid_t fid, int level, int optname, const void *optval, size_t optlen)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);

	if (level != FI_OPT_ENDPOINT)
		return -FI_ENOPROTOOPT;
	switch (optname) {
	case FI_OPT_MIN_MULTI_RECV:
		if (!optval || optlen != sizeof(size_t))
			return -FI_EINVAL;
		sfi_domain_lock(ep->ep.domain);
		ep->min_multi_recv = *(const size_t *)optval;
		sfi_domain_unlock(ep->ep.domain);
		return 0;
	default:
		return -FI_ENOPROTOOPT;
	}
}

static ssize_t rdm_rx_size_left(struct fid_ep *fep)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	return sfi_ep_queue_left(&ep->ep, &ep->rx_size, &ep->rx_used);
}

static ssize_t rdm_tx_size_left(struct fid_ep *fep)
{
	struct rdm_ep *ep = rdm_ep_of(fep);

	return sfi_ep_queue_left(&ep->ep, &ep->tx_size, &ep->tx_used);
}

static struct fi_ops_ep rdm_ep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = rdm_cancel,
	.getopt = rdm_getopt,
	.setopt = rdm_setopt,
	.tx_ctx = sfi_no_tx_ctx,
	.rx_ctx = sfi_no_rx_ctx,
	.rx_size_left = rdm_rx_size_left,
	.tx_size_left = rdm_tx_size_left,
};

/* ------------------------------------------------------------------------------------ */
/* fi_ops_cm. */

/** Open and bind the listener's SCIF endpoint to @p port (0: dynamic). */
static int rdm_bind_port(struct rdm_ep *ep, uint16_t port)
{
	scif_epd_t epd = scif_open();
	int r;

	if (epd < 0)
		return -rdm_errno(errno);
	r = scif_bind(epd, port);
	if (r < 0) {
		int e = errno;

		SFI_WARN(FI_LOG_EP_CTRL, "cannot bind SCIF port %u: %s\n", port, strerror(e));
		scif_close(epd);
		/* a fresh endpoint: EINVAL can only mean the port is taken (spec 3.3) */
		return e == EADDRINUSE || (port && e == EINVAL) ? -FI_EADDRINUSE : -rdm_errno(e);
	}
	if (ep->lepd >= 0)
		scif_close(ep->lepd);
	ep->lepd = epd;
	ep->addr.port = (uint16_t)r;
	return 0;
}

static int rdm_setname(fid_t fid, void *addr, size_t addrlen)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	const struct sfi_addr *a = addr;
	int ret;

	if (!addr || addrlen != sizeof(struct sfi_addr) || a->magic != SFI_ADDR_MAGIC)
		return -FI_EINVAL;
	sfi_domain_lock(ep->ep.domain);
	if (ep->ep.enabled)
		ret = -FI_EOPBADSTATE;
	else if (a->node != ep->addr.node)
		ret = -FI_EINVAL;
	else if (a->port == ep->addr.port)
		ret = 0;
	else
		ret = rdm_bind_port(ep, a->port);
	sfi_domain_unlock(ep->ep.domain);
	return ret;
}

static int rdm_getname(fid_t fid, void *addr, size_t *addrlen)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	size_t want = sizeof(struct sfi_addr);

	if (!addrlen)
		return -FI_EINVAL;
	if (*addrlen < want || !addr) {
		*addrlen = want;
		return -FI_ETOOSMALL;
	}
	sfi_domain_lock(ep->ep.domain);
	memcpy(addr, &ep->addr, want);
	sfi_domain_unlock(ep->ep.domain);
	*addrlen = want;
	return 0;
}

static struct fi_ops_cm rdm_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = rdm_setname,
	.getname = rdm_getname,
	.getpeer = sfi_no_getpeer,
	.connect = sfi_no_connect,
	.listen = sfi_no_listen,
	.accept = sfi_no_accept,
	.reject = sfi_no_reject,
	.shutdown = sfi_no_shutdown,
	.join = sfi_no_join,
};

/* ------------------------------------------------------------------------------------ */
/* fid ops. */

/** fi_enable: an AV and both CQs are required; start listening. */
static int rdm_enable(struct rdm_ep *ep)
{
	int i;

	if (ep->ep.enabled)
		return 0;
	if (!ep->ep.av)
		return -FI_ENOAV;
	if (ep->lepd < 0) {
		int ret = rdm_bind_port(ep, 0);

		if (ret)
			return ret;
	}
	if (scif_listen(ep->lepd, RDM_LISTEN_BACKLOG) < 0) {
		SFI_WARN(FI_LOG_EP_CTRL, "scif_listen: %s\n", strerror(errno));
		return -rdm_errno(errno);
	}
	ep->listening = true;
	for (i = 0; i < ep->nwaits; i++) {
		sfi_wait_fd(ep->waits[i].w, ep->lepd, POLLIN);
	}
	ep->ep.enabled = true;
	return 0;
}

static int rdm_control(struct fid *fid, int command, void *arg)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	int ret;

	switch (command) {
	case FI_ENABLE:
		sfi_domain_lock(ep->ep.domain);
		ret = rdm_enable(ep);
		sfi_domain_unlock(ep->ep.domain);
		return ret;
	case FI_GETOPSFLAG:
		if (!arg)
			return -FI_EINVAL;
		if (*(uint64_t *)arg & FI_TRANSMIT)
			*(uint64_t *)arg = ep->tx_op_flags;
		else if (*(uint64_t *)arg & FI_RECV)
			*(uint64_t *)arg = ep->rx_op_flags;
		else
			return -FI_EINVAL;
		return 0;
	case FI_SETOPSFLAG: {
		uint64_t f;

		if (!arg)
			return -FI_EINVAL;
		f = *(uint64_t *)arg;
		if (f & FI_TRANSMIT)
			ep->tx_op_flags = f & ~(FI_TRANSMIT | FI_RECV);
		else if (f & FI_RECV)
			ep->rx_op_flags = f & ~(FI_TRANSMIT | FI_RECV);
		else
			return -FI_EINVAL;
		return 0;
	}
	default:
		return -FI_ENOSYS;
	}
}

/** fi_ep_bind: CQs, counters, the AV and an EQ, before fi_enable only. */
static int rdm_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	int ret;

	sfi_domain_lock(ep->ep.domain);
	if (ep->ep.enabled)
		ret = -FI_EOPBADSTATE;
	else
		ret = sfi_ep_bind_common(&ep->ep, bfid, flags);
	sfi_domain_unlock(ep->ep.domain);
	return ret;
}

/** Free every queue and connection of the endpoint (domain lock held). */
static void rdm_teardown(struct rdm_ep *ep)
{
	struct sfi_list *it, *tmp;
	unsigned int b;
	int q;

	while (!sfi_list_empty(&ep->conns)) {
		struct rdm_conn *rc = sfi_container_of(ep->conns.next, struct rdm_conn,
						       c.owner_entry);

		rdm_conn_fail(rc, -FI_ECANCELED);
	}
	while (!sfi_list_empty(&ep->dead))
		rdm_conn_free(sfi_container_of(ep->dead.next, struct rdm_conn, c.owner_entry));
	for (b = 0; b < RDM_PEER_BUCKETS; b++) {
		sfi_list_foreach_safe(&ep->buckets[b], it, tmp) {
			struct rdm_peer *p = sfi_container_of(it, struct rdm_peer, hentry);

			rdm_peer_fail(ep, p, FI_ECANCELED);
			sfi_list_remove(&p->hentry);
			free(p);
		}
	}
	ep->tx_peer = NULL;
	for (q = 0; q < 2; q++) {
		struct sfi_list *l = q ? &ep->unexp_tag : &ep->unexp_msg;

		while (!sfi_list_empty(l)) {
			struct rdm_unexp *u = sfi_container_of(l->next, struct rdm_unexp, entry);

			sfi_list_remove(&u->entry);
			free(u->buf);
			u->buf = NULL;
		}
	}
	while (!sfi_list_empty(&ep->chunks)) {
		struct rdm_chunk *ch = sfi_container_of(ep->chunks.next, struct rdm_chunk, entry);

		sfi_list_remove(&ch->entry);
		free(ch);
	}
}

/** fi_close: connections are closed (operations still in flight fail with FI_ECANCELED). */
static int rdm_close(struct fid *fid)
{
	struct rdm_ep *ep = sfi_container_of(fid, struct rdm_ep, ep.ep_fid.fid);
	struct sfi_domain *d = ep->ep.domain;
	int i;

	sfi_domain_lock(d);
	for (i = 0; i < ep->nwaits; i++)
		rdm_wait_all(ep, ep->waits[i].w, false);
	ep->nwaits = 0;
	ep->ep.enabled = false;
	rdm_teardown(ep);
	sfi_ep_unbind_all(&ep->ep);
	if (ep->lepd >= 0)
		scif_close(ep->lepd);
	if (ep->timerfd >= 0)
		close(ep->timerfd);
	d->refs--;
	sfi_domain_unlock(d);
	fi_freeinfo(ep->info);
	free(ep);
	return 0;
}

static struct fi_ops rdm_fid_ops = {
	.size = sizeof(struct fi_ops),
	.close = rdm_close,
	.bind = rdm_bind,
	.control = rdm_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

/* ------------------------------------------------------------------------------------ */

/** fi_endpoint for FI_EP_RDM: binds the listener's port (info->src_addr, else dynamic). */
int sfi_rdm_ep_open(struct fid_domain *domain, struct fi_info *info, struct fid_ep **epp,
		    void *context)
{
	struct sfi_domain *d = sfi_container_of(domain, struct sfi_domain, domain_fid);
	struct sfi_addr src = { .magic = 0 };
	struct rdm_ep *ep;
	unsigned int b;
	int ret;

	if (!info || !epp || !info->ep_attr || info->ep_attr->type != FI_EP_RDM)
		return -FI_EINVAL;
	if (info->src_addr &&
	    sfi_addr_from_info(info->addr_format, info->src_addr, info->src_addrlen, &src))
		return -FI_EINVAL;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -FI_ENOMEM;
	ep->info = fi_dupinfo(info);
	if (!ep->info) {
		free(ep);
		return -FI_ENOMEM;
	}
	ep->ep.ep_fid.fid.fclass = FI_CLASS_EP;
	ep->ep.ep_fid.fid.context = context;
	ep->ep.ep_fid.fid.ops = &rdm_fid_ops;
	ep->ep.ep_fid.ops = &rdm_ep_ops;
	ep->ep.ep_fid.cm = &rdm_cm_ops;
	ep->ep.ep_fid.msg = &rdm_msg_ops;
	ep->ep.ep_fid.rma = &rdm_rma_ops;
	ep->ep.ep_fid.tagged = &rdm_tagged_ops;
	ep->ep.ep_fid.atomic = &sfi_no_atomic_ops;
	ep->ep.ep_fid.collective = &sfi_no_collective_ops;
	ep->ep.domain = d;
	ep->ep.type = FI_EP_RDM;
	ep->ep.caps = info->caps ? info->caps : sfi_rdm_info.caps;
	ep->ep.progress = rdm_progress;
	ep->ep.wait_fds = rdm_wait_fds;
	ep->ep.arm = rdm_arm;
	ep->lepd = -1;
	ep->timerfd = -1;
	ep->inject_size = info->tx_attr && info->tx_attr->inject_size ?
			  info->tx_attr->inject_size : sfi_params.inject_size;
	ep->eager_max = sfi_params.eager_max;
	ep->rndv_write_min = sfi_wcache_usable() ? sfi_params.rndv_write_min : 0;
	if (ep->eager_max > SFI_MAX_MSG)
		ep->eager_max = SFI_MAX_MSG;
	ep->rx_limit = ep->eager_max > ep->inject_size ? ep->eager_max : ep->inject_size;
	ep->tx_size = info->tx_attr && info->tx_attr->size ? info->tx_attr->size :
		      sfi_params.tx_size;
	ep->rx_size = info->rx_attr && info->rx_attr->size ? info->rx_attr->size :
		      sfi_params.rx_size;
	ep->tx_op_flags = info->tx_attr ? info->tx_attr->op_flags : 0;
	ep->rx_op_flags = info->rx_attr ? info->rx_attr->op_flags : 0;
	ep->min_multi_recv = 64;
	sfi_list_init(&ep->conns);
	sfi_list_init(&ep->dead);
	sfi_list_init(&ep->connecting);
	sfi_list_init(&ep->posted_msg);
	sfi_list_init(&ep->posted_tag);
	sfi_list_init(&ep->unexp_msg);
	sfi_list_init(&ep->unexp_tag);
	sfi_list_init(&ep->chunks);
	for (b = 0; b < RDM_SRC_CACHE; b++)
		ep->src_cache[b].fi_addr = FI_ADDR_NOTAVAIL;
	for (b = 0; b < RDM_PEER_BUCKETS; b++)
		sfi_list_init(&ep->buckets[b]);

	ret = sfi_self_node();
	if (ret < 0)
		goto err;
	ep->addr.node = (uint16_t)ret;
	ep->addr.magic = SFI_ADDR_MAGIC;
	if (getrandom(&ep->incarnation, sizeof(ep->incarnation), GRND_NONBLOCK) !=
	    sizeof(ep->incarnation))
		ep->incarnation = rdm_now_ms() ^ (uint64_t)getpid() << 32 ^ (uintptr_t)ep;
	ep->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (ep->timerfd < 0) {
		ret = -FI_ENOMEM;
		goto err;
	}
	if (info->src_addr && src.node != ep->addr.node) {
		ret = -FI_EINVAL;
		goto err;
	}
	ret = rdm_bind_port(ep, info->src_addr ? src.port : 0);
	if (ret)
		goto err;

	sfi_domain_lock(d);
	d->refs++;
	sfi_domain_unlock(d);
	*epp = &ep->ep.ep_fid;
	return 0;
err:
	if (ep->timerfd >= 0)
		close(ep->timerfd);
	if (ep->lepd >= 0)
		scif_close(ep->lepd);
	fi_freeinfo(ep->info);
	free(ep);
	return ret;
}
