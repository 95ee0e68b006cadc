/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_msg.c
 * @brief FI_EP_MSG endpoints and passive endpoints: one SCIF connection per endpoint.
 *
 * Connection management (frames of struct sfi_hdr on the new SCIF connection):
 *
 *   client                                   server
 *   fi_connect: scif_connect (non-blocking)  pep: scif_accept when its EQ is read
 *   -- CONNREQ (cm data) ------------------>  FI_CONNREQ event (info->handle = the request)
 *                                            fi_accept: register windows, then
 *   <------------------ ACCEPT (cm data) --  (or fi_reject: REJECT (cm data), close)
 *   register windows, FI_CONNECTED
 *   -- ACK -------------------------------->  FI_CONNECTED
 *
 * The ACK makes sure that neither side reports FI_CONNECTED before the other side's memory
 * regions are windows on the connection, so RMA may start right after the event.
 *
 * Data: a MSG frame carries a message (FI_REMOTE_CQ_DATA in hdr.data when flagged). It goes
 * into the oldest posted receive; when none is posted the stream simply stops (SCIF's own
 * buffer is the flow control) until fi_recv posts one. A message longer than the receive
 * fills it and completes with FI_ETRUNC; the rest is thrown away. RMA is SCIF RMA with
 * SCIF_RMA_SYNC on the connection (complete when the call returns; local buffers need no
 * registration); remote offset = key + addr (sfi_domain.c). fi_writedata follows the write
 * with a WRITE_DATA frame (the target's CQ entry and remote write counter); with
 * FI_RMA_EVENT every RMA is followed by an RMA_EVENT frame (the target's counters). Both are
 * ordered after the data, which is in place when the frame leaves.
 *
 * A connection that fails (the peer closed, a bad frame) reports FI_SHUTDOWN on the EQ,
 * fails queued sends and flushes posted receives with FI_ECANCELED; fi_shutdown does the
 * same and also reports FI_SHUTDOWN locally. Nothing the peer sends is trusted: a frame
 * that is not valid in the connection's state fails that connection only.
 *
 * Locking: endpoints run under their domain's lock; a passive endpoint (no domain) has its
 * own lock, taken inside the EQ's CM progress lock (sfi_eq.c: EQ lock, then domain/pep lock,
 * then the EQ's event lock).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sfi.h"

/** Largest connection data of fi_connect/fi_accept/fi_reject (FI_OPT_CM_DATA_SIZE). */
#define SFI_MSG_CM_DATA_MAX 256
/** How long a handshake may take after the SCIF connection is up, and how long an accepted
 *  SCIF connection may take to deliver its CONNREQ. */
#define SFI_MSG_HANDSHAKE_MS 30000
/** Connection requests taken from a listener per EQ progress call. */
#define SFI_MSG_ACCEPT_BUDGET 16
/** Accepted SCIF connections whose CONNREQ is still awaited, per listener: beyond this,
 *  requests wait in SCIF's backlog (clients that never speak cannot exhaust descriptors). */
#define SFI_MSG_MAX_PENDING 256
/** Largest inject buffer of one transmit request. */
#define SFI_MSG_INJECT_MAX 4096

/** Wire operations of MSG connections. */
enum {
	SFI_MSG_OP_CONNREQ = 1,
	SFI_MSG_OP_ACCEPT,
	SFI_MSG_OP_REJECT,
	SFI_MSG_OP_ACK,
	SFI_MSG_OP_MSG,
	SFI_MSG_OP_WRITE_DATA,
	SFI_MSG_OP_RMA_EVENT,   /**< FI_RMA_EVENT: an RMA into the peer's memory finished */
};
/** hdr.flags of a MSG frame: hdr.data is remote CQ data. */
#define SFI_MSG_F_DATA 0x1
/** hdr.flags of an RMA_EVENT frame: the RMA was a read (else a write). */
#define SFI_MSG_F_READ 0x1

enum sfi_msg_state {
	SFI_MSG_IDLE,       /**< neither connecting nor connected */
	SFI_MSG_CONNECTING, /**< SCIF connect under way */
	SFI_MSG_REQ_SENT,   /**< CONNREQ sent, waiting for ACCEPT/REJECT */
	SFI_MSG_PASSIVE,    /**< adopted a connection request, fi_accept not called yet */
	SFI_MSG_ACCEPTING,  /**< ACCEPT sent, waiting for ACK */
	SFI_MSG_CONNECTED,
	SFI_MSG_DOWN,       /**< shut down, refused or failed */
};

struct sfi_pep;

/** A connection request: an accepted SCIF endpoint whose CONNREQ is read or reported.
 *  Its fid is the info->handle of the FI_CONNREQ event. */
struct sfi_connreq {
	struct fid fid;
	struct sfi_pep *pep;        /**< NULL once the passive endpoint is closed */
	struct sfi_conn conn;
	struct sfi_list entry;      /**< in sfi_pep::reqs */
	bool reported;              /**< FI_CONNREQ queued */
	bool failed;
	uint64_t deadline;
	size_t cm_len;
	uint8_t cm[SFI_MSG_CM_DATA_MAX];
};

struct sfi_pep {
	struct fid_pep pep_fid;
	struct sfi_fabric *fabric;
	struct fi_info *info;
	struct sfi_eq *eq;
	pthread_mutex_t lock;
	scif_epd_t lepd;
	struct sfi_addr addr;
	bool bound, listening;
	struct sfi_eq_obj eq_obj;
	struct sfi_list reqs;       /**< struct sfi_connreq */
	size_t npending;            /**< of which not reported yet */
};

/** A transmit request: a frame on the connection (send, or writedata's notice). */
struct sfi_msg_tx {
	struct sfi_tx tx;
	struct sfi_msg_ep *mep;
	void *context;
	uint64_t flags;             /**< completion flags; SFI_MSG_TX_SILENT: counters only */
	struct sfi_list free_entry;
	uint8_t inject[];
};
#define SFI_MSG_TX_SILENT (1ULL << 63)

/** A posted receive. */
struct sfi_msg_rx {
	struct sfi_list entry;
	void *context;
	uint64_t flags;
	size_t count, len;
	struct iovec iov[SFI_MAX_IOV];
};

/** Where the endpoint's descriptor is registered. */
#define SFI_MSG_MAX_WAITS 10

struct sfi_msg_ep {
	struct sfi_ep ep;
	struct fi_info *info;
	enum sfi_msg_state state;
	scif_epd_t cepd;            /**< SCIF endpoint while connecting (before conn) */
	bool conn_live;             /**< conn is initialised and owns the SCIF endpoint */
	bool conn_added;            /**< conn is in the domain's list */
	struct sfi_conn conn;
	struct sfi_addr src;        /**< local address (port 0 until known) */
	struct sfi_addr dest;       /**< fi_connect target */
	uint64_t deadline;
	struct sfi_eq_obj eq_obj;
	bool eq_attached;
	bool shutdown_reported;     /**< FI_SHUTDOWN queued (once per endpoint) */
	/* connection data of our CONNREQ/ACCEPT, and its frame */
	uint8_t cm[SFI_MSG_CM_DATA_MAX];
	size_t cm_len;
	struct sfi_tx cm_tx;        /**< our CONNREQ or ACCEPT */
	struct sfi_tx ack_tx;       /**< our ACK */
	/* data path */
	struct sfi_list rxq;        /**< posted struct sfi_msg_rx, oldest first */
	struct sfi_list rx_free;
	struct sfi_list tx_free;
	size_t tx_size, rx_size, tx_used, rx_used;
	size_t inject_size;
	/* wait sets holding our descriptor */
	struct sfi_wait *waits[SFI_MSG_MAX_WAITS];
	size_t nwaits;
	int reg_fd;
	uint32_t reg_events;
};

static uint64_t sfi_msg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline struct sfi_msg_ep *sfi_msg_ep_of(struct fid_ep *ep)
{
	return sfi_container_of(ep, struct sfi_msg_ep, ep.ep_fid);
}

static inline struct sfi_msg_ep *sfi_msg_ep_of_fid(fid_t fid)
{
	return sfi_container_of(fid, struct sfi_msg_ep, ep.ep_fid.fid);
}

/** A SCIF call's errno as a negative FI_E* code. */
static int sfi_msg_errno(int e)
{
	switch (e) {
	case ENXIO:
	case EPERM:
	case EACCES:
		return -FI_EACCES;
	case ECONNRESET:
		return -FI_ECONNRESET;
	case ENOTCONN:
		return -FI_ENOTCONN;
	case ECONNREFUSED:
		return -FI_ECONNREFUSED;
	case ENODEV:
		return -FI_EHOSTUNREACH;
	case EFAULT:
		return -FI_EFAULT;
	case ENOMEM:
	case ENOBUFS:
		return -FI_ENOMEM;
	case EINVAL:
		return -FI_EINVAL;
	default:
		return e > 0 ? -e : -FI_EOTHER;
	}
}

/* ------------------------------------------------------------------------------------ */
/* Wait sets: the endpoint's one descriptor (connecting or connected SCIF endpoint) sits in
 * the wait sets of its CQs, counters and EQ with the events the connection needs now. */

/** The descriptor and events the endpoint should be waited on with now. */
static int sfi_msg_want(struct sfi_msg_ep *mep, uint32_t *events)
{
	if (mep->conn_live && !mep->conn.err && mep->conn.epd >= 0) {
		*events = sfi_conn_events(&mep->conn);
		/* Nothing to wait for (a message waits for fi_recv): stay registered for
		 * hang-ups and errors only, which epoll reports whatever is asked. */
		if (!*events)
			*events = POLLPRI;
		return mep->conn.epd;
	}
	if (mep->state == SFI_MSG_CONNECTING && mep->cepd >= 0) {
		*events = POLLOUT;
		return mep->cepd;
	}
	*events = 0;
	return -1;
}

/** Bring every wait set in line with sfi_msg_want (domain lock held). */
static void sfi_msg_sync_waits(struct sfi_msg_ep *mep)
{
	uint32_t events;
	int fd = sfi_msg_want(mep, &events);
	size_t i;

	if (fd == mep->reg_fd && events == mep->reg_events)
		return;
	if (mep->reg_fd >= 0 && fd != mep->reg_fd)
		for (i = 0; i < mep->nwaits; i++)
			sfi_wait_fd(mep->waits[i], mep->reg_fd, 0);
	if (fd >= 0)
		for (i = 0; i < mep->nwaits; i++)
			sfi_wait_fd(mep->waits[i], fd, events);
	mep->reg_fd = fd;
	mep->reg_events = fd >= 0 ? events : 0;
}

/** Take the descriptor out of every wait set (before it is closed). */
static void sfi_msg_unregister_fd(struct sfi_msg_ep *mep)
{
	size_t i;

	if (mep->reg_fd >= 0)
		for (i = 0; i < mep->nwaits; i++)
			sfi_wait_fd(mep->waits[i], mep->reg_fd, 0);
	mep->reg_fd = -1;
	mep->reg_events = 0;
}

static void sfi_msg_wait_add(struct sfi_msg_ep *mep, struct sfi_wait *w)
{
	size_t i;

	for (i = 0; i < mep->nwaits; i++)
		if (mep->waits[i] == w)
			return;
	if (mep->nwaits == SFI_MSG_MAX_WAITS)
		return;
	mep->waits[mep->nwaits++] = w;
	if (mep->reg_fd >= 0)
		sfi_wait_fd(w, mep->reg_fd, mep->reg_events);
}

static void sfi_msg_wait_del(struct sfi_msg_ep *mep, struct sfi_wait *w)
{
	size_t i;

	for (i = 0; i < mep->nwaits; i++) {
		if (mep->waits[i] != w)
			continue;
		if (mep->reg_fd >= 0)
			sfi_wait_fd(w, mep->reg_fd, 0);
		mep->waits[i] = mep->waits[--mep->nwaits];
		return;
	}
}

/** ep->wait_fds: a CQ or counter with a wait object was bound or is going away. */
static void sfi_msg_wait_fds(struct sfi_ep *ep, struct sfi_wait *w, bool add)
{
	struct sfi_msg_ep *mep = sfi_container_of(ep, struct sfi_msg_ep, ep);

	if (add)
		sfi_msg_wait_add(mep, w);
	else
		sfi_msg_wait_del(mep, w);
}

/* ------------------------------------------------------------------------------------ */
/* Events. */

/** Queue a CM event (FI_CONNECTED, FI_SHUTDOWN) for the endpoint, with optional data. */
static void sfi_msg_cm_event(struct sfi_msg_ep *mep, uint32_t event, const void *data,
			     size_t len)
{
	struct {
		struct fi_eq_cm_entry e;
		uint8_t data[SFI_MSG_CM_DATA_MAX];
	} ev;

	if (!mep->ep.eq)
		return;
	memset(&ev.e, 0, sizeof(ev.e));
	ev.e.fid = &mep->ep.ep_fid.fid;
	if (len > SFI_MSG_CM_DATA_MAX)
		len = SFI_MSG_CM_DATA_MAX;
	if (len)
		memcpy(ev.data, data, len);
	if (sfi_eq_write(mep->ep.eq, event, &ev, sizeof(ev.e) + len, 0))
		SFI_WARN(FI_LOG_EP_CTRL, "CM event lost: out of memory\n");
}

static void sfi_msg_cm_error(struct sfi_msg_ep *mep, int err, const void *data, size_t len)
{
	if (!mep->ep.eq)
		return;
	if (sfi_eq_write_err(mep->ep.eq, &mep->ep.ep_fid.fid, mep->ep.ep_fid.fid.context,
			     err < 0 ? -err : err, err < 0 ? -err : err, data, len))
		SFI_WARN(FI_LOG_EP_CTRL, "CM error event lost: out of memory\n");
}

/* ------------------------------------------------------------------------------------ */
/* Requests. */

static struct sfi_msg_tx *sfi_msg_tx_get(struct sfi_msg_ep *mep)
{
	struct sfi_msg_tx *req;

	if (mep->tx_used >= mep->tx_size)
		return NULL;
	if (!sfi_list_empty(&mep->tx_free)) {
		req = sfi_list_entry(mep->tx_free.next, struct sfi_msg_tx, free_entry);
		sfi_list_remove(&req->free_entry);
	} else {
		req = malloc(sizeof(*req) + mep->inject_size);
		if (!req)
			return NULL;
		sfi_list_init(&req->free_entry);
	}
	req->mep = mep;
	mep->tx_used++;
	return req;
}

static void sfi_msg_tx_put(struct sfi_msg_ep *mep, struct sfi_msg_tx *req)
{
	mep->tx_used--;
	sfi_list_insert_head(&mep->tx_free, &req->free_entry);
}

static struct sfi_msg_rx *sfi_msg_rx_get(struct sfi_msg_ep *mep)
{
	struct sfi_msg_rx *rx;

	if (mep->rx_used >= mep->rx_size)
		return NULL;
	if (!sfi_list_empty(&mep->rx_free)) {
		rx = sfi_list_entry(mep->rx_free.next, struct sfi_msg_rx, entry);
		sfi_list_remove(&rx->entry);
	} else {
		rx = malloc(sizeof(*rx));
		if (!rx)
			return NULL;
		sfi_list_init(&rx->entry);
	}
	mep->rx_used++;
	return rx;
}

static void sfi_msg_rx_put(struct sfi_msg_ep *mep, struct sfi_msg_rx *rx)
{
	mep->rx_used--;
	sfi_list_insert_head(&mep->rx_free, &rx->entry);
}

/** Error-complete every posted receive (shutdown, failure). */
static void sfi_msg_flush_rx(struct sfi_msg_ep *mep, int err)
{
	while (!sfi_list_empty(&mep->rxq)) {
		struct sfi_msg_rx *rx = sfi_list_entry(mep->rxq.next, struct sfi_msg_rx, entry);

		sfi_list_remove(&rx->entry);
		sfi_ep_error_rx(&mep->ep, rx->context, FI_RECV | FI_MSG, err, 0, NULL, 0, 0, 0);
		sfi_msg_rx_put(mep, rx);
	}
}

/** A frame of a transmit request is in SCIF's hands (or failed). */
static void sfi_msg_tx_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct sfi_msg_tx *req = sfi_container_of(tx, struct sfi_msg_tx, tx);
	struct sfi_msg_ep *mep = req->mep;
	uint64_t flags = req->flags & ~SFI_MSG_TX_SILENT;

	(void)c;
	if (req->flags & SFI_MSG_TX_SILENT) {
		struct sfi_cntr *cntr = flags & FI_READ ? mep->ep.read_cntr :
					flags & FI_WRITE ? mep->ep.write_cntr : mep->ep.send_cntr;

		if (cntr) {
			if (err)
				sfi_cntr_err(cntr);
			else
				sfi_cntr_inc(cntr);
		}
	} else if (err) {
		sfi_ep_error_tx(&mep->ep, req->context, flags, err);
	} else {
		sfi_ep_complete_tx(&mep->ep, req->context, flags);
	}
	sfi_msg_tx_put(mep, req);
}

/** A connection frame (CONNREQ, ACCEPT, ACK, REJECT) left: nothing to report. */
static void sfi_msg_cm_tx_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	(void)c;
	(void)tx;
	(void)err;
}

/** Send a connection frame; CONNREQ and ACCEPT carry the endpoint's cm data. Each is sent
 *  at most once per connection, so their embedded frames are free. */
static int sfi_msg_send_cm(struct sfi_msg_ep *mep, uint8_t op)
{
	struct sfi_hdr hdr = { .op = op };
	struct iovec iov = { .iov_base = mep->cm, .iov_len = mep->cm_len };
	struct sfi_tx *tx = op == SFI_MSG_OP_ACK ? &mep->ack_tx : &mep->cm_tx;

	tx->done = sfi_msg_cm_tx_done;
	return sfi_conn_send(&mep->conn, tx, &hdr, &iov,
			     op != SFI_MSG_OP_ACK && mep->cm_len ? 1 : 0);
}

/* ------------------------------------------------------------------------------------ */
/* The connection's frames. */

/** Close the connection (descriptor out of the wait sets, windows gone with it). */
static void sfi_msg_close_conn(struct sfi_msg_ep *mep, int err)
{
	sfi_msg_unregister_fd(mep);
	if (mep->conn_added) {
		sfi_domain_conn_del(mep->ep.domain, &mep->conn);
		mep->conn_added = false;
	}
	if (mep->conn_live)
		sfi_conn_fini(&mep->conn, err);
	if (mep->cepd >= 0) {
		scif_close(mep->cepd);
		mep->cepd = -1;
	}
}

/** Both sides are ready: remote memory regions are windows on the connection now. */
static int sfi_msg_add_to_domain(struct sfi_msg_ep *mep)
{
	int ret = sfi_domain_conn_add(mep->ep.domain, &mep->conn);

	if (ret) {
		SFI_WARN(FI_LOG_EP_CTRL, "cannot register memory regions on the connection: %s\n",
			 fi_strerror(-ret));
		return ret;
	}
	mep->conn_added = true;
	return 0;
}

static int sfi_msg_rx_hdr(struct sfi_conn *c, const struct sfi_hdr *hdr, struct iovec *iov,
			  void **cookie)
{
	struct sfi_msg_ep *mep = c->owner;
	struct sfi_msg_rx *rx;
	size_t i, n, left;

	*cookie = NULL;
	switch (hdr->op) {
	case SFI_MSG_OP_ACCEPT:
	case SFI_MSG_OP_REJECT:
		if (mep->state != SFI_MSG_REQ_SENT || hdr->len > SFI_MSG_CM_DATA_MAX)
			return -FI_EIO;
		iov[0].iov_base = mep->cm;
		iov[0].iov_len = hdr->len;
		mep->cm_len = hdr->len;
		return hdr->len ? 1 : 0;
	case SFI_MSG_OP_ACK:
		if (mep->state != SFI_MSG_ACCEPTING || hdr->len)
			return -FI_EIO;
		return 0;
	case SFI_MSG_OP_WRITE_DATA:
	case SFI_MSG_OP_RMA_EVENT:
		if (mep->state != SFI_MSG_CONNECTED || hdr->len)
			return -FI_EIO;
		return 0;
	case SFI_MSG_OP_MSG:
		if (mep->state != SFI_MSG_CONNECTED)
			return -FI_EIO;
		if (sfi_list_empty(&mep->rxq))
			return -FI_EAGAIN; /* wait for fi_recv */
		rx = sfi_list_entry(mep->rxq.next, struct sfi_msg_rx, entry);
		sfi_list_remove(&rx->entry);
		*cookie = rx;
		left = hdr->len;
		for (i = 0, n = 0; i < rx->count && left; i++) {
			size_t l = rx->iov[i].iov_len < left ? rx->iov[i].iov_len : left;

			if (!l)
				continue;
			iov[n].iov_base = rx->iov[i].iov_base;
			iov[n].iov_len = l;
			left -= l;
			n++;
		}
		if (left && n)
			c->rx_discard = left; /* truncated: the rest is thrown away */
		return (int)n;
	default:
		SFI_WARN(FI_LOG_EP_DATA, "unexpected frame op %u\n", hdr->op);
		return -FI_EIO;
	}
}

static void sfi_msg_rx_done(struct sfi_conn *c, const struct sfi_hdr *hdr, void *cookie)
{
	struct sfi_msg_ep *mep = c->owner;
	struct sfi_msg_rx *rx = cookie;

	switch (hdr->op) {
	case SFI_MSG_OP_ACCEPT:
		if (sfi_msg_add_to_domain(mep) || sfi_msg_send_cm(mep, SFI_MSG_OP_ACK)) {
			sfi_msg_cm_error(mep, -FI_ECONNREFUSED, NULL, 0);
			mep->state = SFI_MSG_DOWN;
			sfi_msg_close_conn(mep, -FI_ECONNREFUSED);
			return;
		}
		mep->state = SFI_MSG_CONNECTED;
		sfi_msg_cm_event(mep, FI_CONNECTED, mep->cm, mep->cm_len);
		return;
	case SFI_MSG_OP_REJECT:
		mep->state = SFI_MSG_DOWN;
		sfi_msg_cm_error(mep, -FI_ECONNREFUSED, mep->cm, mep->cm_len);
		sfi_msg_close_conn(mep, -FI_ECONNREFUSED);
		return;
	case SFI_MSG_OP_ACK:
		mep->state = SFI_MSG_CONNECTED;
		sfi_msg_cm_event(mep, FI_CONNECTED, NULL, 0);
		return;
	case SFI_MSG_OP_WRITE_DATA:
		sfi_ep_complete_rx(&mep->ep, NULL,
				   FI_REMOTE_WRITE | FI_RMA | FI_REMOTE_CQ_DATA, 0, NULL,
				   hdr->data, 0, FI_ADDR_NOTAVAIL);
		return;
	case SFI_MSG_OP_RMA_EVENT:
		/* no CQ entry without data: the remote read/write counter moves */
		sfi_ep_complete_rx(&mep->ep, NULL, FI_RMA | (hdr->flags & SFI_MSG_F_READ ?
				   FI_REMOTE_READ : FI_REMOTE_WRITE), 0, NULL, 0, 0,
				   FI_ADDR_NOTAVAIL);
		return;
	case SFI_MSG_OP_MSG: {
		uint64_t flags = FI_RECV | FI_MSG | (rx->flags & FI_COMPLETION);
		uint64_t data = 0;

		if (hdr->flags & SFI_MSG_F_DATA) {
			flags |= FI_REMOTE_CQ_DATA;
			data = hdr->data;
		}
		if (hdr->len > rx->len)
			sfi_ep_error_rx(&mep->ep, rx->context, flags, FI_ETRUNC, rx->len,
					rx->count ? rx->iov[0].iov_base : NULL, data, 0,
					hdr->len - rx->len);
		else
			sfi_ep_complete_rx(&mep->ep, rx->context, flags, hdr->len,
					   rx->count ? rx->iov[0].iov_base : NULL, data, 0,
					   FI_ADDR_NOTAVAIL);
		sfi_msg_rx_put(mep, rx);
		return;
	}
	}
}

/** FI_SHUTDOWN for the endpoint, once. */
static void sfi_msg_report_shutdown(struct sfi_msg_ep *mep)
{
	if (mep->shutdown_reported)
		return;
	mep->shutdown_reported = true;
	sfi_msg_cm_event(mep, FI_SHUTDOWN, NULL, 0);
}

/** The connection failed or the peer went away. */
static void sfi_msg_on_error(struct sfi_conn *c, int err)
{
	struct sfi_msg_ep *mep = c->owner;
	enum sfi_msg_state was = mep->state;

	mep->state = SFI_MSG_DOWN;
	sfi_msg_close_conn(mep, err);
	switch (was) {
	case SFI_MSG_REQ_SENT:
		sfi_msg_cm_error(mep, -FI_ECONNREFUSED, NULL, 0);
		break;
	case SFI_MSG_ACCEPTING:
		sfi_msg_cm_error(mep, -FI_ECONNABORTED, NULL, 0);
		break;
	case SFI_MSG_PASSIVE:
		break;
	default:
		sfi_msg_flush_rx(mep, -FI_ECANCELED);
		sfi_msg_report_shutdown(mep);
		break;
	}
}

static const struct sfi_conn_ops sfi_msg_conn_ops = {
	.rx_hdr = sfi_msg_rx_hdr,
	.rx_done = sfi_msg_rx_done,
	.on_error = sfi_msg_on_error,
};

/* ------------------------------------------------------------------------------------ */
/* Progress. */

/** The SCIF connect finished (or may have): start the handshake. */
static void sfi_msg_connect_progress(struct sfi_msg_ep *mep)
{
	struct scif_portID dst = { .node = mep->dest.node, .port = mep->dest.port };
	int ret;

	ret = scif_connect(mep->cepd, &dst);
	if (ret < 0 && errno == EINPROGRESS) {
		if (sfi_msg_now_ms() > mep->deadline) {
			mep->state = SFI_MSG_DOWN;
			sfi_msg_close_conn(mep, -FI_ETIMEDOUT);
			sfi_msg_cm_error(mep, -FI_ETIMEDOUT, NULL, 0);
		}
		return;
	}
	if (ret < 0) {
		int err = sfi_msg_errno(errno);

		if (err == -FI_EHOSTUNREACH || err == -FI_EINVAL)
			err = -FI_ECONNREFUSED;
		mep->state = SFI_MSG_DOWN;
		sfi_msg_close_conn(mep, err);
		sfi_msg_cm_error(mep, err, NULL, 0);
		return;
	}
	mep->src.port = (uint16_t)ret;
	sfi_msg_unregister_fd(mep);
	ret = sfi_conn_init(&mep->conn, mep->cepd, &mep->dest, &sfi_msg_conn_ops, mep);
	if (ret) {
		mep->state = SFI_MSG_DOWN;
		sfi_msg_close_conn(mep, ret);
		sfi_msg_cm_error(mep, ret, NULL, 0);
		return;
	}
	mep->cepd = -1;
	mep->conn_live = true;
	mep->state = SFI_MSG_REQ_SENT;
	mep->deadline = sfi_msg_now_ms() + SFI_MSG_HANDSHAKE_MS;
	ret = sfi_msg_send_cm(mep, SFI_MSG_OP_CONNREQ);
	if (ret) {
		mep->state = SFI_MSG_DOWN;
		sfi_msg_close_conn(mep, ret);
		sfi_msg_cm_error(mep, -FI_ECONNREFUSED, NULL, 0);
	}
}

/** Everything the endpoint has to do now (domain lock held). */
static void sfi_msg_progress_locked(struct sfi_msg_ep *mep)
{
	if (mep->state == SFI_MSG_CONNECTING)
		sfi_msg_connect_progress(mep);
	if (mep->conn_live && !mep->conn.err) {
		sfi_conn_progress(&mep->conn);
		if ((mep->state == SFI_MSG_REQ_SENT || mep->state == SFI_MSG_ACCEPTING) &&
		    sfi_msg_now_ms() > mep->deadline) {
			enum sfi_msg_state was = mep->state;

			mep->state = SFI_MSG_DOWN;
			sfi_msg_close_conn(mep, -FI_ETIMEDOUT);
			sfi_msg_cm_error(mep, was == SFI_MSG_REQ_SENT ? -FI_ETIMEDOUT :
					 -FI_ECONNABORTED, NULL, 0);
		}
	}
	sfi_msg_sync_waits(mep);
}

/** ep->progress: CQ and counter reads. */
static void sfi_msg_progress(struct sfi_ep *ep)
{
	sfi_msg_progress_locked(sfi_container_of(ep, struct sfi_msg_ep, ep));
}

/** EQ reads: the connection handshake. */
static void sfi_msg_eq_progress(struct sfi_eq_obj *obj)
{
	struct sfi_msg_ep *mep = sfi_container_of(obj, struct sfi_msg_ep, eq_obj);

	sfi_domain_lock(mep->ep.domain);
	sfi_msg_progress_locked(mep);
	sfi_domain_unlock(mep->ep.domain);
}

/* ------------------------------------------------------------------------------------ */
/* Data transfer. */

/** Can data move on the endpoint now? */
static inline int sfi_msg_check_connected(struct sfi_msg_ep *mep)
{
	if (mep->state == SFI_MSG_CONNECTED && mep->conn_live && !mep->conn.err)
		return 0;
	return mep->state == SFI_MSG_DOWN ? -FI_ENOTCONN : -FI_EOPBADSTATE;
}

/** Queue a message of @p count iovec entries (domain lock held). */
static ssize_t sfi_msg_sendv_locked(struct sfi_msg_ep *mep, const struct iovec *iov,
				    size_t count, void *context, uint64_t data,
				    uint64_t flags)
{
	struct sfi_hdr hdr = { .op = SFI_MSG_OP_MSG };
	struct sfi_msg_tx *req;
	struct iovec one;
	size_t len;
	int ret;

	ret = sfi_msg_check_connected(mep);
	if (ret)
		return ret;
	if (count > SFI_MAX_IOV || (count && !iov))
		return -FI_EINVAL;
	len = sfi_iov_len(iov, count);
	if (len > SFI_MAX_MSG)
		return -FI_EMSGSIZE;
	if ((flags & FI_INJECT) && len > mep->inject_size)
		return -FI_EINVAL;
	req = sfi_msg_tx_get(mep);
	if (!req) {
		sfi_msg_progress_locked(mep);
		return -FI_EAGAIN;
	}
	req->context = context;
	req->flags = FI_SEND | FI_MSG | (flags & (FI_COMPLETION | SFI_MSG_TX_SILENT));
	if (flags & FI_REMOTE_CQ_DATA) {
		hdr.flags = SFI_MSG_F_DATA;
		hdr.data = data;
	}
	if (flags & FI_INJECT) {
		sfi_copy_from_iov(req->inject, len, iov, count, 0);
		one.iov_base = req->inject;
		one.iov_len = len;
		iov = &one;
		count = len ? 1 : 0;
	}
	req->tx.done = sfi_msg_tx_done;
	ret = sfi_conn_send(&mep->conn, &req->tx, &hdr, iov, count);
	if (ret) {
		sfi_msg_tx_put(mep, req);
		return ret;
	}
	sfi_msg_sync_waits(mep);
	return 0;
}

static ssize_t sfi_msg_sendv_common(struct fid_ep *ep, const struct iovec *iov, size_t count,
				    void *context, uint64_t data, uint64_t flags)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	ssize_t ret;

	sfi_domain_lock(mep->ep.domain);
	ret = sfi_msg_sendv_locked(mep, iov, count, context, data, flags);
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

static ssize_t sfi_msg_send(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			    fi_addr_t dest_addr, void *context)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	(void)desc;
	(void)dest_addr;
	return sfi_msg_sendv_common(ep, &iov, 1, context, 0, sfi_msg_ep_of(ep)->ep.tx_flags);
}

static ssize_t sfi_msg_sendv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			     size_t count, fi_addr_t dest_addr, void *context)
{
	(void)desc;
	(void)dest_addr;
	return sfi_msg_sendv_common(ep, iov, count, context, 0, sfi_msg_ep_of(ep)->ep.tx_flags);
}

static ssize_t sfi_msg_sendmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{
	if (!msg)
		return -FI_EINVAL;
	return sfi_msg_sendv_common(ep, msg->msg_iov, msg->iov_count, msg->context, msg->data,
				    flags & ~SFI_MSG_TX_SILENT);
}

static ssize_t sfi_msg_senddata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
				uint64_t data, fi_addr_t dest_addr, void *context)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	(void)desc;
	(void)dest_addr;
	return sfi_msg_sendv_common(ep, &iov, 1, context, data,
				    sfi_msg_ep_of(ep)->ep.tx_flags | FI_REMOTE_CQ_DATA);
}

static ssize_t sfi_msg_inject(struct fid_ep *ep, const void *buf, size_t len,
			      fi_addr_t dest_addr)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	(void)dest_addr;
	return sfi_msg_sendv_common(ep, &iov, 1, NULL, 0, FI_INJECT | SFI_MSG_TX_SILENT);
}

static ssize_t sfi_msg_injectdata(struct fid_ep *ep, const void *buf, size_t len,
				  uint64_t data, fi_addr_t dest_addr)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	(void)dest_addr;
	return sfi_msg_sendv_common(ep, &iov, 1, NULL, data,
				    FI_INJECT | FI_REMOTE_CQ_DATA | SFI_MSG_TX_SILENT);
}

/** Post a receive. */
static ssize_t sfi_msg_recv_common(struct fid_ep *ep, const struct iovec *iov, size_t count,
				   void *context, uint64_t flags)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	struct sfi_msg_rx *rx;
	ssize_t ret = 0;
	size_t i;

	if (count > SFI_MAX_IOV || (count && !iov))
		return -FI_EINVAL;
	sfi_domain_lock(mep->ep.domain);
	if (!mep->ep.enabled) {
		ret = -FI_EOPBADSTATE;
		goto out;
	}
	if (mep->state == SFI_MSG_DOWN) {
		ret = -FI_ENOTCONN;
		goto out;
	}
	rx = sfi_msg_rx_get(mep);
	if (!rx) {
		ret = -FI_EAGAIN;
		sfi_msg_progress_locked(mep);
		goto out;
	}
	rx->context = context;
	rx->flags = flags;
	rx->count = count;
	rx->len = 0;
	for (i = 0; i < count; i++) {
		rx->iov[i] = iov[i];
		rx->len += iov[i].iov_len;
	}
	sfi_list_insert_tail(&mep->rxq, &rx->entry);
	/* a message may be waiting for exactly this receive */
	if (mep->conn_live && !mep->conn.err && !mep->conn.rx_in_payload &&
	    sfi_conn_hdr_done(&mep->conn))
		sfi_msg_progress_locked(mep);
out:
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

static ssize_t sfi_msg_recv(struct fid_ep *ep, void *buf, size_t len, void *desc,
			    fi_addr_t src_addr, void *context)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	(void)desc;
	(void)src_addr;
	return sfi_msg_recv_common(ep, &iov, 1, context, sfi_msg_ep_of(ep)->ep.rx_flags);
}

static ssize_t sfi_msg_recvv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			     size_t count, fi_addr_t src_addr, void *context)
{
	(void)desc;
	(void)src_addr;
	return sfi_msg_recv_common(ep, iov, count, context, sfi_msg_ep_of(ep)->ep.rx_flags);
}

static ssize_t sfi_msg_recvmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{
	if (!msg)
		return -FI_EINVAL;
	if (flags & FI_MULTI_RECV)
		return -FI_EBADFLAGS;
	return sfi_msg_recv_common(ep, msg->msg_iov, msg->iov_count, msg->context, flags);
}

static struct fi_ops_msg sfi_msg_msg_ops = {
	.size = sizeof(struct fi_ops_msg),
	.recv = sfi_msg_recv,
	.recvv = sfi_msg_recvv,
	.recvmsg = sfi_msg_recvmsg,
	.send = sfi_msg_send,
	.sendv = sfi_msg_sendv,
	.sendmsg = sfi_msg_sendmsg,
	.inject = sfi_msg_inject,
	.senddata = sfi_msg_senddata,
	.injectdata = sfi_msg_injectdata,
};

/* ------------------------------------------------------------------------------------ */
/* RMA. */

/**
 * One RMA operation: @p flags carry FI_INJECT/FI_COMPLETION/FI_REMOTE_CQ_DATA and
 * SFI_MSG_TX_SILENT (inject: counters only).
 */
static ssize_t sfi_msg_rma(struct fid_ep *ep, bool write, const struct iovec *iov,
			   size_t count, const struct fi_rma_iov *rma, size_t rma_count,
			   void *context, uint64_t data, uint64_t flags)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	uint64_t op = (write ? FI_WRITE : FI_READ) | FI_RMA;
	struct sfi_msg_tx *req = NULL;
	size_t rlen = 0;
	ssize_t ret;
	int err;

	if (count > SFI_MAX_IOV || rma_count > SFI_MAX_IOV || (count && !iov) ||
	    (rma_count && !rma))
		return -FI_EINVAL;
	for (size_t k = 0; k < rma_count; k++)
		rlen += rma[k].len;
	if (sfi_iov_len(iov, count) != rlen)
		return -FI_EINVAL;
	if ((flags & FI_INJECT) && sfi_iov_len(iov, count) > mep->inject_size)
		return -FI_EINVAL;

	sfi_domain_lock(mep->ep.domain);
	ret = sfi_msg_check_connected(mep);
	if (ret)
		goto out;
	/* remote CQ data, or FI_RMA_EVENT, need a notice to the target after the copy */
	if ((write && (flags & FI_REMOTE_CQ_DATA)) || (mep->ep.caps & FI_RMA_EVENT)) {
		req = sfi_msg_tx_get(mep);
		if (!req) {
			sfi_msg_progress_locked(mep);
			ret = -FI_EAGAIN;
			goto out;
		}
	}
	err = sfi_rma_copy(mep->conn.epd, write, iov, count, rma, rma_count);
	if (err)
		err = sfi_msg_errno(err);
	if (err == 0 && req) {
		struct sfi_hdr hdr = { .op = SFI_MSG_OP_RMA_EVENT, .data = data,
				       .size = sfi_iov_len(iov, count) };

		if (write && (flags & FI_REMOTE_CQ_DATA))
			hdr.op = SFI_MSG_OP_WRITE_DATA;
		else if (!write)
			hdr.flags = SFI_MSG_F_READ;

		req->context = context;
		req->flags = op | (flags & (FI_COMPLETION | SFI_MSG_TX_SILENT));
		req->tx.done = sfi_msg_tx_done;
		err = sfi_conn_send(&mep->conn, &req->tx, &hdr, NULL, 0);
		if (!err) {
			sfi_msg_sync_waits(mep);
			goto out; /* completes when the notice is out */
		}
	}
	if (req)
		sfi_msg_tx_put(mep, req);
	if (flags & SFI_MSG_TX_SILENT) {
		struct sfi_cntr *c = write ? mep->ep.write_cntr : mep->ep.read_cntr;

		if (c) {
			if (err)
				sfi_cntr_err(c);
			else
				sfi_cntr_inc(c);
		}
		ret = err == -FI_ECONNRESET ? -FI_ENOTCONN : 0;
	} else if (err) {
		sfi_ep_error_tx(&mep->ep, context, op, err);
	} else {
		sfi_ep_complete_tx(&mep->ep, context, op | (flags & FI_COMPLETION));
	}
out:
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

/** The single-buffer calls: fi_read, fi_write, fi_writedata and the injects. */
static ssize_t sfi_msg_rma1(struct fid_ep *ep, bool write, const void *buf, size_t len,
			    uint64_t addr, uint64_t key, void *context, uint64_t data,
			    uint64_t flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct fi_rma_iov rma = { .addr = addr, .len = len, .key = key };

	return sfi_msg_rma(ep, write, &iov, 1, &rma, 1, context, data, flags);
}

/** fi_readv/fi_writev: one remote region as long as the local list. */
static ssize_t sfi_msg_rmav(struct fid_ep *ep, bool write, const struct iovec *iov,
			    size_t count, uint64_t addr, uint64_t key, void *context)
{
	struct fi_rma_iov rma = { .addr = addr, .len = sfi_iov_len(iov, count), .key = key };

	return sfi_msg_rma(ep, write, iov, count, &rma, 1, context, 0,
			   sfi_msg_ep_of(ep)->ep.tx_flags);
}

static ssize_t sfi_msg_read(struct fid_ep *ep, void *buf, size_t len, void *desc,
			    fi_addr_t src_addr, uint64_t addr, uint64_t key, void *context)
{
	(void)desc;
	(void)src_addr;
	return sfi_msg_rma1(ep, false, buf, len, addr, key, context, 0,
			    sfi_msg_ep_of(ep)->ep.tx_flags);
}

static ssize_t sfi_msg_readv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			     size_t count, fi_addr_t src_addr, uint64_t addr, uint64_t key,
			     void *context)
{
	(void)desc;
	(void)src_addr;
	return sfi_msg_rmav(ep, false, iov, count, addr, key, context);
}

static ssize_t sfi_msg_readmsg(struct fid_ep *ep, const struct fi_msg_rma *msg,
			       uint64_t flags)
{
	if (!msg)
		return -FI_EINVAL;
	return sfi_msg_rma(ep, false, msg->msg_iov, msg->iov_count, msg->rma_iov,
			   msg->rma_iov_count, msg->context, 0, flags & FI_COMPLETION);
}

static ssize_t sfi_msg_write(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			     fi_addr_t dest_addr, uint64_t addr, uint64_t key, void *context)
{
	(void)desc;
	(void)dest_addr;
	return sfi_msg_rma1(ep, true, buf, len, addr, key, context, 0,
			    sfi_msg_ep_of(ep)->ep.tx_flags);
}

static ssize_t sfi_msg_writev(struct fid_ep *ep, const struct iovec *iov, void **desc,
			      size_t count, fi_addr_t dest_addr, uint64_t addr, uint64_t key,
			      void *context)
{
	(void)desc;
	(void)dest_addr;
	return sfi_msg_rmav(ep, true, iov, count, addr, key, context);
}

static ssize_t sfi_msg_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg,
				uint64_t flags)
{
	if (!msg)
		return -FI_EINVAL;
	return sfi_msg_rma(ep, true, msg->msg_iov, msg->iov_count, msg->rma_iov,
			   msg->rma_iov_count, msg->context, msg->data,
			   flags & (FI_COMPLETION | FI_REMOTE_CQ_DATA | FI_INJECT));
}

static ssize_t sfi_msg_inject_write(struct fid_ep *ep, const void *buf, size_t len,
				    fi_addr_t dest_addr, uint64_t addr, uint64_t key)
{
	(void)dest_addr;
	return sfi_msg_rma1(ep, true, buf, len, addr, key, NULL, 0,
			    FI_INJECT | SFI_MSG_TX_SILENT);
}

static ssize_t sfi_msg_writedata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
				 uint64_t data, fi_addr_t dest_addr, uint64_t addr,
				 uint64_t key, void *context)
{
	(void)desc;
	(void)dest_addr;
	return sfi_msg_rma1(ep, true, buf, len, addr, key, context, data,
			    sfi_msg_ep_of(ep)->ep.tx_flags | FI_REMOTE_CQ_DATA);
}

static ssize_t sfi_msg_inject_writedata(struct fid_ep *ep, const void *buf, size_t len,
					uint64_t data, fi_addr_t dest_addr, uint64_t addr,
					uint64_t key)
{
	(void)dest_addr;
	return sfi_msg_rma1(ep, true, buf, len, addr, key, NULL, data,
			    FI_INJECT | FI_REMOTE_CQ_DATA | SFI_MSG_TX_SILENT);
}

static struct fi_ops_rma sfi_msg_rma_ops = {
	.size = sizeof(struct fi_ops_rma),
	.read = sfi_msg_read,
	.readv = sfi_msg_readv,
	.readmsg = sfi_msg_readmsg,
	.write = sfi_msg_write,
	.writev = sfi_msg_writev,
	.writemsg = sfi_msg_writemsg,
	.inject = sfi_msg_inject_write,
	.writedata = sfi_msg_writedata,
	.injectdata = sfi_msg_inject_writedata,
};

/* ------------------------------------------------------------------------------------ */
/* Connection management of active endpoints. */

/** An address given by the application in @p fmt (FI_FORMAT_UNSPEC, FI_ADDR_STR or
 *  FI_SOCKADDR_IN); @p len 0 when the call has no length (fi_connect). 0 or -FI_EINVAL. */
static int sfi_msg_addr_in(uint32_t fmt, const void *addr, size_t len, struct sfi_addr *out)
{
	if (!addr)
		return -FI_EINVAL;
	if (fmt == FI_SOCKADDR_IN)
		return sfi_addr_from_sin(addr, len ? len : sizeof(struct sockaddr_in), out);
	if (fmt == FI_ADDR_STR && !len)
		len = strnlen(addr, 128) + 1;
	else if (fmt != FI_ADDR_STR && !len)
		len = sizeof(*out);
	return sfi_addr_from_info(fmt == FI_ADDR_STR ? FI_ADDR_STR : FI_FORMAT_UNSPEC, addr,
				  len, out);
}

/** An address of an fi_info (src_addr/dest_addr in info->addr_format). */
static int sfi_msg_info_addr_in(const struct fi_info *info, const void *addr, size_t len,
				struct sfi_addr *out)
{
	if (!addr || !len)
		return -FI_EINVAL;
	return sfi_msg_addr_in(info->addr_format, addr, len, out);
}

static int sfi_msg_connect(struct fid_ep *ep, const void *addr, const void *param,
			   size_t paramlen)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	struct sfi_addr dest;
	scif_epd_t epd;
	int ret = 0, fl;

	if (sfi_msg_addr_in(mep->info->addr_format, addr, 0, &dest) ||
	    paramlen > SFI_MSG_CM_DATA_MAX || (paramlen && !param))
		return -FI_EINVAL;
	sfi_domain_lock(mep->ep.domain);
	if (!mep->ep.eq) {
		ret = -FI_ENOEQ;
		goto out;
	}
	if (!mep->ep.enabled) {
		ret = -FI_EOPBADSTATE;
		goto out;
	}
	if (mep->state != SFI_MSG_IDLE) {
		ret = -FI_EISCONN;
		goto out;
	}
	epd = scif_open();
	if (epd < 0) {
		ret = sfi_msg_errno(errno);
		goto out;
	}
	if (mep->src.port && scif_bind(epd, mep->src.port) < 0) {
		ret = errno == EACCES ? -FI_EACCES : -FI_EADDRINUSE;
		scif_close(epd);
		goto out;
	}
	fl = fcntl(scif_get_fd(epd), F_GETFL);
	if (fl < 0 || fcntl(scif_get_fd(epd), F_SETFL, fl | O_NONBLOCK) < 0) {
		ret = sfi_msg_errno(errno);
		scif_close(epd);
		goto out;
	}
	if (paramlen)
		memcpy(mep->cm, param, paramlen);
	mep->cm_len = paramlen;
	mep->dest = dest;
	mep->cepd = epd;
	mep->state = SFI_MSG_CONNECTING;
	mep->deadline = sfi_msg_now_ms() + SFI_MSG_HANDSHAKE_MS;
	/* the first scif_connect starts the handshake; the result is picked up by progress */
	sfi_msg_connect_progress(mep);
	sfi_msg_sync_waits(mep);
out:
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

static int sfi_msg_accept(struct fid_ep *ep, const void *param, size_t paramlen)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	int ret;

	if (paramlen > SFI_MSG_CM_DATA_MAX || (paramlen && !param))
		return -FI_EINVAL;
	sfi_domain_lock(mep->ep.domain);
	if (!mep->ep.eq) {
		ret = -FI_ENOEQ;
		goto out;
	}
	if (!mep->ep.enabled) {
		ret = -FI_EOPBADSTATE;
		goto out;
	}
	if (mep->state != SFI_MSG_PASSIVE || !mep->conn_live || mep->conn.err) {
		ret = mep->state == SFI_MSG_DOWN ? -FI_ECONNABORTED : -FI_EOPBADSTATE;
		goto out;
	}
	if (paramlen)
		memcpy(mep->cm, param, paramlen);
	mep->cm_len = paramlen;
	/* our regions become windows before the peer can learn that it may use them */
	ret = sfi_msg_add_to_domain(mep);
	if (!ret)
		ret = sfi_msg_send_cm(mep, SFI_MSG_OP_ACCEPT);
	if (ret) {
		mep->state = SFI_MSG_DOWN;
		sfi_msg_close_conn(mep, ret);
		goto out;
	}
	mep->state = SFI_MSG_ACCEPTING;
	mep->deadline = sfi_msg_now_ms() + SFI_MSG_HANDSHAKE_MS;
	sfi_msg_progress_locked(mep);
out:
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

/**
 * fi_shutdown: close the connection. Both sides get FI_SHUTDOWN (the peer when it notices
 * the close, we at once, as other connection-oriented providers do); queued sends and posted
 * receives complete with FI_ECANCELED before this returns.
 */
static int sfi_msg_shutdown(struct fid_ep *ep, uint64_t flags)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	enum sfi_msg_state was;

	if (flags)
		return -FI_EBADFLAGS;
	sfi_domain_lock(mep->ep.domain);
	was = mep->state;
	if (was != SFI_MSG_DOWN && was != SFI_MSG_IDLE) {
		mep->state = SFI_MSG_DOWN;
		sfi_msg_close_conn(mep, -FI_ECANCELED);
		sfi_msg_flush_rx(mep, -FI_ECANCELED);
		if (was == SFI_MSG_CONNECTED)
			sfi_msg_report_shutdown(mep);
	}
	sfi_domain_unlock(mep->ep.domain);
	return 0;
}

/** Hand out an address in @p fmt, with fi_getname's FI_ETOOSMALL rules. */
static int sfi_msg_copy_addr(uint32_t fmt, const struct sfi_addr *a, void *addr,
			     size_t *addrlen)
{
	char buf[64];
	struct sockaddr_in sin;
	const void *src = a;
	size_t room, need = sizeof(*a);

	if (!addrlen)
		return -FI_EINVAL;
	if (fmt == FI_SOCKADDR_IN) {
		sfi_addr_to_sin(a, &sin);
		src = &sin;
		need = sizeof(sin);
	} else if (fmt == FI_ADDR_STR) {
		size_t blen = sizeof(buf);

		sfi_addr_str(a, buf, &blen);
		src = buf;
		need = strlen(buf) + 1;
	}
	room = *addrlen;
	*addrlen = need;
	if (room < need || !addr)
		return -FI_ETOOSMALL;
	memcpy(addr, src, need);
	return 0;
}

/** A malloc'ed copy of @p a in @p fmt for an fi_info; NULL when out of memory. */
static void *sfi_msg_info_addr(uint32_t fmt, const struct sfi_addr *a, size_t *len)
{
	size_t need = 64;
	void *p = malloc(need);

	if (p && sfi_msg_copy_addr(fmt, a, p, &need)) {
		free(p);
		return NULL;
	}
	*len = need;
	return p;
}

static int sfi_msg_getname(fid_t fid, void *addr, size_t *addrlen)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	struct sfi_addr a;

	sfi_domain_lock(mep->ep.domain);
	a = mep->src;
	sfi_domain_unlock(mep->ep.domain);
	return sfi_msg_copy_addr(mep->info->addr_format, &a, addr, addrlen);
}

static int sfi_msg_setname(fid_t fid, void *addr, size_t addrlen)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	struct sfi_addr a;
	int ret = 0;

	if (!addrlen || sfi_msg_addr_in(mep->info->addr_format, addr, addrlen, &a))
		return -FI_EINVAL;
	sfi_domain_lock(mep->ep.domain);
	if (mep->state != SFI_MSG_IDLE)
		ret = -FI_EOPBADSTATE;
	else if (a.node != mep->src.node)
		ret = -FI_EADDRNOTAVAIL;
	else
		mep->src.port = a.port;
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

static int sfi_msg_getpeer(struct fid_ep *ep, void *addr, size_t *addrlen)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);
	struct sfi_addr a;
	int ret = 0;

	sfi_domain_lock(mep->ep.domain);
	if (mep->conn_live)
		a = mep->conn.peer;
	else if (mep->state != SFI_MSG_IDLE)
		a = mep->dest;
	else
		ret = -FI_ENOTCONN;
	sfi_domain_unlock(mep->ep.domain);
	if (ret)
		return ret;
	a.magic = SFI_ADDR_MAGIC;
	return sfi_msg_copy_addr(mep->info->addr_format, &a, addr, addrlen);
}

static struct fi_ops_cm sfi_msg_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = sfi_msg_setname,
	.getname = sfi_msg_getname,
	.getpeer = sfi_msg_getpeer,
	.connect = sfi_msg_connect,
	.listen = sfi_no_listen,
	.accept = sfi_msg_accept,
	.reject = sfi_no_reject,
	.shutdown = sfi_msg_shutdown,
	.join = sfi_no_join,
};

/* ------------------------------------------------------------------------------------ */
/* Endpoint control. */

static ssize_t sfi_msg_cancel(fid_t fid, void *context)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	struct sfi_list *it;
	ssize_t ret = -FI_ENOENT;

	sfi_domain_lock(mep->ep.domain);
	sfi_list_foreach(&mep->rxq, it) {
		struct sfi_msg_rx *rx = sfi_list_entry(it, struct sfi_msg_rx, entry);

		if (rx->context != context)
			continue;
		sfi_list_remove(&rx->entry);
		sfi_ep_error_rx(&mep->ep, context, FI_RECV | FI_MSG, FI_ECANCELED, 0, NULL, 0, 0,
				0);
		sfi_msg_rx_put(mep, rx);
		ret = 0;
		break;
	}
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

/** FI_OPT_ENDPOINT options common to active and passive endpoints. */
static int sfi_msg_getopt_common(int level, int optname, void *optval, size_t *optlen)
{
	if (level != FI_OPT_ENDPOINT)
		return -FI_ENOPROTOOPT;
	if (optname != FI_OPT_CM_DATA_SIZE)
		return -FI_ENOPROTOOPT;
	if (!optval || !optlen || *optlen < sizeof(size_t)) {
		if (optlen)
			*optlen = sizeof(size_t);
		return -FI_ETOOSMALL;
	}
	*(size_t *)optval = SFI_MSG_CM_DATA_MAX;
	*optlen = sizeof(size_t);
	return 0;
}

static int sfi_msg_setopt_common(int level, int optname, const void *optval, size_t optlen)
{
	if (level != FI_OPT_ENDPOINT)
		return -FI_ENOPROTOOPT;
	if (optname != FI_OPT_CM_DATA_SIZE)
		return -FI_ENOPROTOOPT;
	if (!optval || optlen != sizeof(size_t))
		return -FI_EINVAL;
	/* room for up to SFI_MSG_CM_DATA_MAX bytes is always there */
	return *(const size_t *)optval <= SFI_MSG_CM_DATA_MAX ? 0 : -FI_EINVAL;
}

static int sfi_msg_getopt(fid_t fid, int level, int optname, void *optval, size_t *optlen)
{
	(void)fid;
	return sfi_msg_getopt_common(level, optname, optval, optlen);
}

static int sfi_msg_setopt(fid_t fid, int level, int optname, const void *optval,
			  size_t optlen)
{
	(void)fid;
	return sfi_msg_setopt_common(level, optname, optval, optlen);
}

static ssize_t sfi_msg_rx_size_left(struct fid_ep *ep)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);

	return sfi_ep_queue_left(&mep->ep, &mep->rx_size, &mep->rx_used);
}

static ssize_t sfi_msg_tx_size_left(struct fid_ep *ep)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of(ep);

	return sfi_ep_queue_left(&mep->ep, &mep->tx_size, &mep->tx_used);
}

static struct fi_ops_ep sfi_msg_ep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = sfi_msg_cancel,
	.getopt = sfi_msg_getopt,
	.setopt = sfi_msg_setopt,
	.tx_ctx = sfi_no_tx_ctx,
	.rx_ctx = sfi_no_rx_ctx,
	.rx_size_left = sfi_msg_rx_size_left,
	.tx_size_left = sfi_msg_tx_size_left,
};

static int sfi_msg_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	int ret;

	ret = sfi_ep_bind_common(&mep->ep, bfid, flags);
	if (ret || bfid->fclass != FI_CLASS_EQ)
		return ret;
	/* the EQ drives the handshake (attach without the domain lock: lock order), perhaps
	 * from another thread: the domain's lock is needed from now on */
	sfi_domain_share(mep->ep.domain);
	sfi_eq_attach(mep->ep.eq, &mep->eq_obj);
	sfi_domain_lock(mep->ep.domain);
	mep->eq_attached = true;
	if (mep->ep.eq->wait)
		sfi_msg_wait_add(mep, mep->ep.eq->wait);
	sfi_msg_sync_waits(mep);
	sfi_domain_unlock(mep->ep.domain);
	return 0;
}

static int sfi_msg_control(struct fid *fid, int command, void *arg)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	uint64_t *flags = arg;
	int ret = 0;

	sfi_domain_lock(mep->ep.domain);
	switch (command) {
	case FI_ENABLE:
		if (!mep->ep.rx_cq && !mep->ep.tx_cq && !mep->ep.send_cntr &&
		    !mep->ep.recv_cntr && !mep->ep.read_cntr && !mep->ep.write_cntr)
			ret = -FI_ENOCQ;
		else
			mep->ep.enabled = true;
		break;
	case FI_GETOPSFLAG:
		if (!flags) {
			ret = -FI_EINVAL;
		} else if (*flags & FI_TRANSMIT) {
			*flags = mep->ep.tx_flags & ~FI_SELECTIVE_COMPLETION;
		} else if (*flags & FI_RECV) {
			*flags = mep->ep.rx_flags & ~FI_SELECTIVE_COMPLETION;
		} else {
			ret = -FI_EINVAL;
		}
		break;
	case FI_SETOPSFLAG:
		if (!flags) {
			ret = -FI_EINVAL;
		} else if (*flags & FI_TRANSMIT) {
			mep->ep.tx_flags = (mep->ep.tx_flags & FI_SELECTIVE_COMPLETION) |
					   (*flags & ~(FI_TRANSMIT | FI_SELECTIVE_COMPLETION));
		} else if (*flags & FI_RECV) {
			mep->ep.rx_flags = (mep->ep.rx_flags & FI_SELECTIVE_COMPLETION) |
					   (*flags & ~(FI_RECV | FI_SELECTIVE_COMPLETION));
		} else {
			ret = -FI_EINVAL;
		}
		break;
	default:
		ret = -FI_ENOSYS;
		break;
	}
	sfi_domain_unlock(mep->ep.domain);
	return ret;
}

static void sfi_msg_free_pools(struct sfi_msg_ep *mep)
{
	while (!sfi_list_empty(&mep->tx_free)) {
		struct sfi_msg_tx *req = sfi_list_entry(mep->tx_free.next, struct sfi_msg_tx,
							free_entry);

		sfi_list_remove(&req->free_entry);
		free(req);
	}
	while (!sfi_list_empty(&mep->rx_free)) {
		struct sfi_msg_rx *rx = sfi_list_entry(mep->rx_free.next, struct sfi_msg_rx,
						       entry);

		sfi_list_remove(&rx->entry);
		free(rx);
	}
}

/** Transmit frames dropped by fi_close: returned to the pool without a completion. */
static void sfi_msg_tx_drop(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	struct sfi_msg_tx *req = sfi_container_of(tx, struct sfi_msg_tx, tx);

	(void)c;
	(void)err;
	sfi_msg_tx_put(req->mep, req);
}

static int sfi_msg_close(struct fid *fid)
{
	struct sfi_msg_ep *mep = sfi_msg_ep_of_fid(fid);
	struct sfi_domain *d = mep->ep.domain;
	struct sfi_list *it;

	if (mep->eq_attached)
		sfi_eq_detach(mep->ep.eq, &mep->eq_obj);
	sfi_domain_lock(d);
	mep->eq_attached = false;
	/* outstanding operations are dropped silently: the application is done with them */
	sfi_list_foreach(&mep->conn.txq, it) {
		struct sfi_tx *tx = sfi_list_entry(it, struct sfi_tx, entry);

		if (tx != &mep->cm_tx && tx != &mep->ack_tx)
			tx->done = sfi_msg_tx_drop;
	}
	sfi_list_foreach(&mep->conn.tx_done, it) {
		struct sfi_tx *tx = sfi_list_entry(it, struct sfi_tx, entry);

		if (tx != &mep->cm_tx && tx != &mep->ack_tx)
			tx->done = sfi_msg_tx_drop;
	}
	mep->state = SFI_MSG_DOWN;
	sfi_msg_close_conn(mep, -FI_ECANCELED);
	while (!sfi_list_empty(&mep->rxq)) {
		struct sfi_msg_rx *rx = sfi_list_entry(mep->rxq.next, struct sfi_msg_rx, entry);

		sfi_list_remove(&rx->entry);
		sfi_msg_rx_put(mep, rx);
	}
	sfi_domain_unlock(d);

	sfi_ep_unbind_all(&mep->ep);
	sfi_msg_free_pools(mep);
	sfi_domain_lock(d);
	d->refs--;
	sfi_domain_unlock(d);
	fi_freeinfo(mep->info);
	free(mep);
	return 0;
}

static struct fi_ops sfi_msg_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = sfi_msg_close,
	.bind = sfi_msg_bind,
	.control = sfi_msg_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

/* ------------------------------------------------------------------------------------ */
/* Passive endpoints and connection requests. */

static inline struct sfi_pep *sfi_pep_of_fid(fid_t fid)
{
	return sfi_container_of(fid, struct sfi_pep, pep_fid.fid);
}

/** Release a connection request (pep lock held when it is still on the pep's list). */
static void sfi_connreq_free(struct sfi_connreq *cr)
{
	if (cr->pep) {
		if (!cr->reported) {
			if (cr->pep->eq && cr->pep->eq->wait && cr->conn.epd >= 0)
				sfi_wait_fd(cr->pep->eq->wait, cr->conn.epd, 0);
			cr->pep->npending--;
		}
		sfi_list_remove(&cr->entry);
		cr->pep = NULL;
	}
	sfi_conn_fini(&cr->conn, -FI_ECANCELED);
	free(cr);
}

/** Take a connection request off its passive endpoint (the caller now owns it). */
static void sfi_connreq_detach(struct sfi_connreq *cr)
{
	struct sfi_pep *pep = cr->pep;

	if (!pep)
		return;
	pthread_mutex_lock(&pep->lock);
	if (cr->pep) {
		if (!cr->reported)
			pep->npending--;
		sfi_list_remove(&cr->entry);
		cr->pep = NULL;
	}
	pthread_mutex_unlock(&pep->lock);
}

static int sfi_connreq_close(struct fid *fid)
{
	struct sfi_connreq *cr = sfi_container_of(fid, struct sfi_connreq, fid);

	sfi_connreq_detach(cr);
	sfi_connreq_free(cr);
	return 0;
}

static struct fi_ops sfi_connreq_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = sfi_connreq_close,
	.bind = sfi_no_bind,
	.control = sfi_no_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static int sfi_connreq_rx_hdr(struct sfi_conn *c, const struct sfi_hdr *hdr,
			      struct iovec *iov, void **cookie)
{
	struct sfi_connreq *cr = c->owner;

	*cookie = NULL;
	if (cr->reported)
		return -FI_EAGAIN; /* nothing may follow until the request is accepted */
	if (hdr->op != SFI_MSG_OP_CONNREQ || hdr->len > SFI_MSG_CM_DATA_MAX) {
		SFI_WARN(FI_LOG_EP_CTRL, "bad connection request from %u:%u (op %u len %u)\n",
			 c->peer.node, c->peer.port, hdr->op, hdr->len);
		return -FI_EIO;
	}
	iov[0].iov_base = cr->cm;
	iov[0].iov_len = hdr->len;
	return hdr->len ? 1 : 0;
}

/** The CONNREQ frame is in: report FI_CONNREQ with a copy of the pep's info. */
static void sfi_connreq_rx_done(struct sfi_conn *c, const struct sfi_hdr *hdr, void *cookie)
{
	struct sfi_connreq *cr = c->owner;
	struct sfi_pep *pep = cr->pep;
	struct {
		struct fi_eq_cm_entry e;
		uint8_t data[SFI_MSG_CM_DATA_MAX];
	} ev;
	struct sfi_addr *dest;
	struct fi_info *info;

	(void)cookie;
	cr->cm_len = hdr->len;
	info = fi_dupinfo(pep->info);
	dest = malloc(sizeof(*dest));
	if (!info || !dest) {
		free(dest);
		fi_freeinfo(info);
		cr->failed = true;
		return;
	}
	*dest = c->peer;
	dest->magic = SFI_ADDR_MAGIC;
	free(info->dest_addr);
	info->dest_addr = sfi_msg_info_addr(info->addr_format, dest, &info->dest_addrlen);
	free(dest);
	free(info->src_addr);
	info->src_addr = sfi_msg_info_addr(info->addr_format, &pep->addr, &info->src_addrlen);
	if (!info->dest_addr || !info->src_addr) {
		fi_freeinfo(info);
		cr->failed = true;
		return;
	}
	info->handle = &cr->fid;
	memset(&ev.e, 0, sizeof(ev.e));
	ev.e.fid = &pep->pep_fid.fid;
	ev.e.info = info;
	memcpy(ev.data, cr->cm, cr->cm_len);
	if (sfi_eq_write(pep->eq, FI_CONNREQ, &ev, sizeof(ev.e) + cr->cm_len, 0)) {
		info->handle = NULL;
		fi_freeinfo(info);
		cr->failed = true;
		return;
	}
	cr->reported = true;
	pep->npending--;
	if (pep->eq->wait)
		sfi_wait_fd(pep->eq->wait, c->epd, 0);
}

static void sfi_connreq_on_error(struct sfi_conn *c, int err)
{
	struct sfi_connreq *cr = c->owner;

	(void)err;
	cr->failed = true;
}

static const struct sfi_conn_ops sfi_connreq_ops = {
	.rx_hdr = sfi_connreq_rx_hdr,
	.rx_done = sfi_connreq_rx_done,
	.on_error = sfi_connreq_on_error,
};

/** EQ reads: take new SCIF connections, read their CONNREQ, report them. */
static void sfi_pep_eq_progress(struct sfi_eq_obj *obj)
{
	struct sfi_pep *pep = sfi_container_of(obj, struct sfi_pep, eq_obj);
	struct sfi_list *it, *tmp;
	uint64_t now = sfi_msg_now_ms();
	int i;

	pthread_mutex_lock(&pep->lock);
	for (i = 0; pep->listening && pep->eq && i < SFI_MSG_ACCEPT_BUDGET &&
		    pep->npending < SFI_MSG_MAX_PENDING; i++) {
		struct scif_portID peer;
		struct sfi_connreq *cr;
		struct sfi_addr pa;
		scif_epd_t nepd;

		if (scif_accept(pep->lepd, &peer, &nepd, 0) < 0) {
			if (errno != EAGAIN && errno != EINTR)
				SFI_WARN(FI_LOG_EP_CTRL, "scif_accept: %s\n", strerror(errno));
			break;
		}
		cr = calloc(1, sizeof(*cr));
		pa.node = peer.node;
		pa.port = peer.port;
		pa.magic = SFI_ADDR_MAGIC;
		if (!cr || sfi_conn_init(&cr->conn, nepd, &pa, &sfi_connreq_ops, cr)) {
			SFI_WARN(FI_LOG_EP_CTRL, "connection request from %u:%u dropped\n",
				 peer.node, peer.port);
			free(cr);
			scif_close(nepd);
			continue;
		}
		cr->fid.fclass = FI_CLASS_CONNREQ;
		cr->fid.ops = &sfi_connreq_fi_ops;
		cr->pep = pep;
		cr->deadline = now + SFI_MSG_HANDSHAKE_MS;
		sfi_list_insert_tail(&pep->reqs, &cr->entry);
		pep->npending++;
		if (pep->eq->wait)
			sfi_wait_fd(pep->eq->wait, nepd, POLLIN);
	}
	sfi_list_foreach_safe(&pep->reqs, it, tmp) {
		struct sfi_connreq *cr = sfi_list_entry(it, struct sfi_connreq, entry);

		if (cr->reported)
			continue;
		if (!cr->failed && pep->eq)
			sfi_conn_progress(&cr->conn);
		if (cr->reported)
			continue;
		if (cr->failed || cr->conn.err || now > cr->deadline) {
			SFI_INFO(FI_LOG_EP_CTRL, "connection request from %u:%u failed\n",
				 cr->conn.peer.node, cr->conn.peer.port);
			sfi_connreq_free(cr);
		}
	}
	pthread_mutex_unlock(&pep->lock);
}

/** Bind the listening endpoint to a port if it is not yet (0: a dynamic one). */
static int sfi_pep_bind_port(struct sfi_pep *pep)
{
	int port;

	if (pep->bound)
		return 0;
	port = scif_bind(pep->lepd, pep->addr.port);
	if (port < 0)
		return errno == EACCES ? -FI_EACCES : -FI_EADDRINUSE;
	pep->addr.port = (uint16_t)port;
	pep->bound = true;
	return 0;
}

static int sfi_pep_listen(struct fid_pep *pep_fid)
{
	struct sfi_pep *pep = sfi_pep_of_fid(&pep_fid->fid);
	int ret;

	pthread_mutex_lock(&pep->lock);
	if (!pep->eq) {
		ret = -FI_ENOEQ;
		goto out;
	}
	if (pep->listening) {
		ret = 0;
		goto out;
	}
	ret = sfi_pep_bind_port(pep);
	if (ret)
		goto out;
	if (scif_listen(pep->lepd, 1024) < 0) {
		ret = sfi_msg_errno(errno);
		goto out;
	}
	pep->listening = true;
	if (pep->eq->wait)
		sfi_wait_fd(pep->eq->wait, pep->lepd, POLLIN);
	SFI_INFO(FI_LOG_EP_CTRL, "listening on %u:%u\n", pep->addr.node, pep->addr.port);
out:
	pthread_mutex_unlock(&pep->lock);
	return ret;
}

static int sfi_pep_reject(struct fid_pep *pep_fid, fid_t handle, const void *param,
			  size_t paramlen)
{
	struct sfi_pep *pep = sfi_pep_of_fid(&pep_fid->fid);
	struct sfi_connreq *cr;
	struct sfi_hdr hdr = { .op = SFI_MSG_OP_REJECT };
	struct iovec iov = { .iov_base = (void *)param, .iov_len = paramlen };
	struct sfi_tx tx;

	if (!handle || handle->fclass != FI_CLASS_CONNREQ || paramlen > SFI_MSG_CM_DATA_MAX ||
	    (paramlen && !param))
		return -FI_EINVAL;
	cr = sfi_container_of(handle, struct sfi_connreq, fid);
	if (cr->pep && cr->pep != pep)
		return -FI_EINVAL;
	sfi_connreq_detach(cr);
	/* The frame fits an idle connection; the peer reads it even after our close. */
	tx.done = sfi_msg_cm_tx_done;
	if (!cr->conn.err && cr->conn.epd >= 0 &&
	    !sfi_conn_send(&cr->conn, &tx, &hdr, &iov, paramlen ? 1 : 0))
		sfi_conn_progress(&cr->conn);
	sfi_connreq_free(cr);
	return 0;
}

static int sfi_pep_getname(fid_t fid, void *addr, size_t *addrlen)
{
	struct sfi_pep *pep = sfi_pep_of_fid(fid);
	struct sfi_addr a;
	int ret;

	pthread_mutex_lock(&pep->lock);
	ret = sfi_pep_bind_port(pep);
	a = pep->addr;
	pthread_mutex_unlock(&pep->lock);
	if (ret)
		return ret;
	return sfi_msg_copy_addr(pep->info->addr_format, &a, addr, addrlen);
}

static int sfi_pep_setname(fid_t fid, void *addr, size_t addrlen)
{
	struct sfi_pep *pep = sfi_pep_of_fid(fid);
	struct sfi_addr a;
	int ret;

	if (!addrlen || sfi_msg_addr_in(pep->info->addr_format, addr, addrlen, &a))
		return -FI_EINVAL;
	pthread_mutex_lock(&pep->lock);
	if (pep->bound) {
		ret = -FI_EOPBADSTATE;
	} else if (a.node != pep->addr.node) {
		ret = -FI_EADDRNOTAVAIL;
	} else {
		pep->addr.port = a.port;
		ret = sfi_pep_bind_port(pep);
		if (ret)
			pep->addr.port = 0;
	}
	pthread_mutex_unlock(&pep->lock);
	return ret;
}

static struct fi_ops_cm sfi_pep_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = sfi_pep_setname,
	.getname = sfi_pep_getname,
	.getpeer = sfi_no_getpeer,
	.connect = sfi_no_connect,
	.listen = sfi_pep_listen,
	.accept = sfi_no_accept,
	.reject = sfi_pep_reject,
	.shutdown = sfi_no_shutdown,
	.join = sfi_no_join,
};

static ssize_t sfi_pep_no_cancel(fid_t fid, void *context)
{
	(void)fid;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t sfi_pep_no_size_left(struct fid_ep *ep)
{
	(void)ep;
	return -FI_ENOSYS;
}

static struct fi_ops_ep sfi_pep_ep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = sfi_pep_no_cancel,
	.getopt = sfi_msg_getopt,
	.setopt = sfi_msg_setopt,
	.tx_ctx = sfi_no_tx_ctx,
	.rx_ctx = sfi_no_rx_ctx,
	.rx_size_left = sfi_pep_no_size_left,
	.tx_size_left = sfi_pep_no_size_left,
};

static int sfi_pep_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct sfi_pep *pep = sfi_pep_of_fid(fid);
	struct sfi_eq *eq;

	if (!bfid || bfid->fclass != FI_CLASS_EQ)
		return -FI_EINVAL;
	if (flags)
		return -FI_EBADFLAGS;
	eq = sfi_container_of(bfid, struct sfi_eq, eq_fid.fid);
	if (eq->fabric != pep->fabric)
		return -FI_EINVAL;
	pthread_mutex_lock(&pep->lock);
	if (pep->eq) {
		pthread_mutex_unlock(&pep->lock);
		return -FI_EINVAL;
	}
	pthread_mutex_lock(&eq->qlock);
	eq->refs++;
	pthread_mutex_unlock(&eq->qlock);
	pep->eq = eq;
	pthread_mutex_unlock(&pep->lock);
	sfi_eq_attach(eq, &pep->eq_obj);
	return 0;
}

static int sfi_pep_close(struct fid *fid)
{
	struct sfi_pep *pep = sfi_pep_of_fid(fid);
	struct sfi_list *it, *tmp;

	if (pep->eq)
		sfi_eq_detach(pep->eq, &pep->eq_obj);
	pthread_mutex_lock(&pep->lock);
	sfi_list_foreach_safe(&pep->reqs, it, tmp) {
		struct sfi_connreq *cr = sfi_list_entry(it, struct sfi_connreq, entry);

		if (cr->reported) {
			/* the application holds the handle: it may still accept it */
			sfi_list_remove(&cr->entry);
			cr->pep = NULL;
		} else {
			sfi_connreq_free(cr);
		}
	}
	if (pep->listening && pep->eq && pep->eq->wait)
		sfi_wait_fd(pep->eq->wait, pep->lepd, 0);
	scif_close(pep->lepd);
	if (pep->eq) {
		pthread_mutex_lock(&pep->eq->qlock);
		pep->eq->refs--;
		pthread_mutex_unlock(&pep->eq->qlock);
	}
	pthread_mutex_unlock(&pep->lock);
	pthread_mutex_lock(&pep->fabric->lock);
	pep->fabric->refs--;
	pthread_mutex_unlock(&pep->fabric->lock);
	pthread_mutex_destroy(&pep->lock);
	fi_freeinfo(pep->info);
	free(pep);
	return 0;
}

static struct fi_ops sfi_pep_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = sfi_pep_close,
	.bind = sfi_pep_bind,
	.control = sfi_no_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

int sfi_pep_open(struct fid_fabric *fabric, struct fi_info *info, struct fid_pep **pep_out,
		 void *context)
{
	struct sfi_fabric *fab = sfi_container_of(fabric, struct sfi_fabric, fabric_fid);
	struct sfi_addr src;
	struct sfi_pep *pep;
	int node, ret;

	if (!info || !pep_out || (info->ep_attr && info->ep_attr->type != FI_EP_MSG))
		return -FI_EINVAL;
	node = sfi_self_node();
	if (node < 0)
		return node;
	pep = calloc(1, sizeof(*pep));
	if (!pep)
		return -FI_ENOMEM;
	pep->info = fi_dupinfo(info);
	if (!pep->info) {
		free(pep);
		return -FI_ENOMEM;
	}
	pthread_mutex_init(&pep->lock, NULL);
	sfi_list_init(&pep->reqs);
	pep->fabric = fab;
	pep->addr.node = (uint16_t)node;
	pep->addr.magic = SFI_ADDR_MAGIC;
	pep->eq_obj.progress = sfi_pep_eq_progress;
	pep->eq_obj.fd = -1;
	pep->eq_obj.listener = true;
	pep->lepd = scif_open();
	if (pep->lepd < 0) {
		ret = sfi_msg_errno(errno);
		goto fail;
	}
	if (!sfi_msg_info_addr_in(info, info->src_addr, info->src_addrlen, &src) && src.port) {
		pep->addr.port = src.port;
		ret = sfi_pep_bind_port(pep);
		if (ret) {
			scif_close(pep->lepd);
			goto fail;
		}
	}
	pep->pep_fid.fid.fclass = FI_CLASS_PEP;
	pep->pep_fid.fid.context = context;
	pep->pep_fid.fid.ops = &sfi_pep_fi_ops;
	pep->pep_fid.ops = &sfi_pep_ep_ops;
	pep->pep_fid.cm = &sfi_pep_cm_ops;
	pthread_mutex_lock(&fab->lock);
	fab->refs++;
	pthread_mutex_unlock(&fab->lock);
	*pep_out = &pep->pep_fid;
	return 0;
fail:
	pthread_mutex_destroy(&pep->lock);
	fi_freeinfo(pep->info);
	free(pep);
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Active endpoints. */

int sfi_msg_ep_open(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep_out,
		    void *context)
{
	struct sfi_domain *d = sfi_container_of(domain, struct sfi_domain, domain_fid);
	struct sfi_addr src;
	bool have_src = false;
	struct sfi_msg_ep *mep;
	int ret;

	if (!info || !ep_out || (info->ep_attr && info->ep_attr->type != FI_EP_MSG))
		return -FI_EINVAL;
	if (info->handle && info->handle->fclass != FI_CLASS_CONNREQ)
		return -FI_EINVAL;
	mep = calloc(1, sizeof(*mep));
	if (!mep)
		return -FI_ENOMEM;
	mep->info = fi_dupinfo(info);
	if (!mep->info) {
		free(mep);
		return -FI_ENOMEM;
	}
	mep->info->handle = NULL;
	mep->ep.ep_fid.fid.fclass = FI_CLASS_EP;
	mep->ep.ep_fid.fid.context = context;
	mep->ep.ep_fid.fid.ops = &sfi_msg_fi_ops;
	mep->ep.ep_fid.ops = &sfi_msg_ep_ops;
	mep->ep.ep_fid.cm = &sfi_msg_cm_ops;
	mep->ep.ep_fid.msg = &sfi_msg_msg_ops;
	mep->ep.ep_fid.rma = &sfi_msg_rma_ops;
	mep->ep.ep_fid.tagged = &sfi_no_tagged_ops;
	mep->ep.ep_fid.atomic = &sfi_no_atomic_ops;
	mep->ep.ep_fid.collective = &sfi_no_collective_ops;
	mep->ep.domain = d;
	mep->ep.type = FI_EP_MSG;
	mep->ep.caps = info->caps;
	mep->ep.tx_flags = info->tx_attr ? info->tx_attr->op_flags : 0;
	mep->ep.rx_flags = info->rx_attr ? info->rx_attr->op_flags : 0;
	mep->ep.progress = sfi_msg_progress;
	mep->ep.wait_fds = sfi_msg_wait_fds;
	mep->state = SFI_MSG_IDLE;
	mep->cepd = -1;
	mep->reg_fd = -1;
	sfi_list_init(&mep->rxq);
	sfi_list_init(&mep->rx_free);
	sfi_list_init(&mep->tx_free);
	sfi_list_init(&mep->conn.txq);
	sfi_list_init(&mep->conn.tx_done);
	sfi_list_init(&mep->conn.domain_entry);
	sfi_list_init(&mep->conn.owner_entry);
	mep->conn.epd = -1;
	mep->tx_size = info->tx_attr && info->tx_attr->size ? info->tx_attr->size :
		       sfi_params.tx_size;
	mep->rx_size = info->rx_attr && info->rx_attr->size ? info->rx_attr->size :
		       sfi_params.rx_size;
	if (!mep->tx_size)
		mep->tx_size = 256;
	if (!mep->rx_size)
		mep->rx_size = 256;
	mep->inject_size = info->tx_attr && info->tx_attr->inject_size ?
			   info->tx_attr->inject_size : sfi_params.inject_size;
	if (mep->inject_size > SFI_MSG_INJECT_MAX)
		mep->inject_size = SFI_MSG_INJECT_MAX;
	mep->eq_obj.progress = sfi_msg_eq_progress;
	mep->eq_obj.fd = -1;
	mep->src.node = d->self_node;
	mep->src.magic = SFI_ADDR_MAGIC;
	if (!sfi_msg_info_addr_in(info, info->src_addr, info->src_addrlen, &src))
		have_src = true;
	if (have_src && !info->handle)
		mep->src.port = src.port;

	if (info->handle) {
		/* server side: adopt the SCIF connection of the request */
		struct sfi_connreq *cr = sfi_container_of(info->handle, struct sfi_connreq, fid);
		uint16_t port = cr->pep ? cr->pep->addr.port : 0;
		scif_epd_t epd;

		sfi_connreq_detach(cr);
		epd = cr->conn.epd;
		if (cr->conn.err || epd < 0) {
			sfi_connreq_free(cr);
			ret = -FI_ECONNABORTED;
			goto fail;
		}
		ret = sfi_conn_init(&mep->conn, epd, &cr->conn.peer, &sfi_msg_conn_ops, mep);
		if (ret) {
			sfi_connreq_free(cr);
			goto fail;
		}
		cr->conn.epd = -1; /* now ours */
		sfi_connreq_free(cr);
		mep->conn_live = true;
		mep->state = SFI_MSG_PASSIVE;
		if (!port && have_src)
			port = src.port;
		mep->src.port = port;
	}
	sfi_domain_lock(d);
	d->refs++;
	sfi_domain_unlock(d);
	*ep_out = &mep->ep.ep_fid;
	return 0;
fail:
	fi_freeinfo(mep->info);
	free(mep);
	return ret;
}
