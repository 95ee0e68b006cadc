/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * epd.h - SCIF endpoints: states, the per-endpoint structures and the descriptor table.
 * Names follow the kernel driver (struct scif_endpt, SCIFEP_*) so the code reads like it.
 */
#ifndef SCIF_EPD_H
#define SCIF_EPD_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "scif.h"
#include "fabric/fabric.h"
#include "lock.h"
#include "rb.h"
#include "window.h"

/* dup() copies of one endpoint a process may use at once (beyond the first descriptor). */
#define SCIF_MAX_ALIAS 8

enum scif_epd_state {
	SCIFEP_UNBOUND,
	SCIFEP_BOUND,
	SCIFEP_LISTENING,
	SCIFEP_CONNECTING,
	SCIFEP_CONNECTED,
	SCIFEP_DISCONNECTED,
};

/* Monitor registrations of one endpoint (epoll data carries fd, generation and kind). */
enum scif_watch_kind {
	SCIF_WATCH_BELL,     /* our bell: hang-up means every copy of the user descriptor closed */
	SCIF_WATCH_LISTEN,   /* listen socket: a connection request arrived */
	SCIF_WATCH_LINK,     /* control link: a message, or the peer endpoint is gone */
	SCIF_WATCH_PEERBELL, /* the peer's bell: hang-up means the peer's descriptor closed */
};

/* A connection request a listener holds: its link, and when it arrived (ns). */
struct scif_pend {
	int link;
	uint64_t since;
};

/**
 * struct scif_port - a port held by this process.
 * @port: the port number.
 * @fd:   the fabric's holder descriptor; closing it frees the port.
 * @refs: the listener and every accepted endpoint using the port (under scif__port_lock).
 */
struct scif_port {
	uint16_t port;
	int fd;
	int refs;
};

/**
 * struct scif_ep_shared - the part of an endpoint that every process holding its descriptor
 * shares (MAP_SHARED anonymous memory, so fork() children see the same state, locks and
 * ring positions). Never shared with the peer.
 *
 * @state:       enum scif_epd_state; changed under @ctl, read lock-free.
 * @nb_collect:  a non-blocking connect finished and its result is not collected yet.
 * @blocking:    a blocking scif_connect() is waiting for the answer (others get EISCONN).
 * @conn_err:    result of that connect (0 or -errno).
 * @ctl:         serialises state changes and the connection handshake.
 * @send_lock:   held for a whole scif_send() (bytes of concurrent sends never interleave).
 * @recv_lock:   held for a whole scif_recv().
 * @tx:          our producer position in the peer's ring (under @send_lock).
 * @db_sent:     doorbells we rang toward the peer (under @send_lock).
 * @tx_wait:     sequence of our sender's "wake me when there is room" requests.
 * @junked:      a message is parked on the user descriptor to make it unwritable.
 * @rx:          our consumer position in our own ring (under @recv_lock).
 * @rx_seen:     doorbells we have accounted for (see msg.c).
 * @rx_arm:      the arm word we last published in the peer's region.
 * @self_bell:   we rang our own bell and have not drained it yet.
 * @tx_seen:     the last peer tx_wait sequence we answered.
 * @tx_oseq:     large sends so far; the sequence of our single-copy offers (bulk.c).
 * @tx_skip_until: no offers before this @tx_oseq (the receiver found them slow).
 * @tx_bulk_off: the receiver cannot take offers on this connection.
 * @tx_cseq:     the last claim of the receiver we answered.
 * @rx_oseq:     the last offer we finished or declined.
 * @rx_ocur, @rx_opos, @rx_oaddr, @rx_olen, @rx_omode: the offer being consumed, read once.
 * @rx_otake:    the last non-blocking offer we committed to take (bulk.h take).
 * @rx_want:     the want word we last published (bulk.h scif_bulk_wait).
 * @rx_odone:    bytes of it consumed so far.
 * @rx_cseq:     our last claim's tag.
 * @rx_bulk_fast: direct copies from this peer ran at memory speed last time.
 * @last_probe:  coarse time (ns) of the last hang-up probe on an idle non-blocking call.
 * @port:        bound local port (0 if none).
 * @peer:        the peer's (node, port) once connected.
 */
struct scif_ep_shared {
	uint32_t state;
	uint32_t nb_collect;
	int32_t conn_err;
	uint32_t blocking;
	struct scif_lock ctl;
	uint8_t pad1[60];
	struct scif_lock send_lock;
	uint32_t junked;
	struct scif_rb_state tx;
	uint64_t db_sent;
	uint64_t tx_wait;
	uint64_t tx_oseq;
	uint64_t tx_skip_until;
	uint32_t tx_bulk_off;
	uint32_t tx_cseq;
	/* the receiving side on lines of its own */
	_Alignas(64) struct scif_lock recv_lock;
	uint32_t self_bell;
	struct scif_rb_state rx;
	uint64_t rx_seen;
	uint64_t rx_arm; /* written by the receiver only; read by a fabric's progress too */
	uint64_t tx_seen;
	uint64_t rx_oseq;
	uint64_t rx_ocur;
	uint64_t rx_opos;
	uint64_t rx_oaddr;
	uint64_t rx_olen;
	uint64_t rx_odone;
	uint64_t rx_omode;
	uint64_t rx_otake;
	uint64_t rx_want;
	uint32_t rx_cseq;
	uint32_t rx_bulk_fast;
	uint64_t last_probe;
	uint16_t port;
	struct scif_portID peer;
};

/**
 * struct scif_endpt - one endpoint as this process sees it.
 *
 * @fd:        the descriptor the application holds (scif_epd_t).
 * @bell:      our own bell (fabric.h): its @fd is the other end of @fd's socket pair;
 *             ringing it makes @fd readable.
 * @peer_bell: the peer's bell (connected only; @fd -1 otherwise): we ring it after producing
 *             bytes, unpark it after consuming (msg.c), watch its @fd (if any) for hang-up.
 * @link:      control link to the peer (connecting/connected), or -1.
 * @lfd:       listen socket (listening), or -1.
 * @backlog:   listen backlog.
 * @bell_shut: this process shut the bell down at disconnect (its hang-up is not a close).
 * @listen_dirty: (listening) a request arrived while another thread held the recv_lock; it
 *             syncs the descriptor when it lets go.
 * @pend, @npend: (listening) connection requests taken off the listen socket, oldest
 *             first, at most @backlog (nodeqp.c listen_scan); under @sh->recv_lock.
 * @listen_cap: how many more the fabric's listen queue was last told to admit.
 * @listen_err: the last scan could not take a queued request (-EMFILE, -ENOMEM).
 * @port:      the held port, shared with accepted endpoints (listener, bound, connected).
 * @sh:        the fork-shared state.
 * @mine:      our region (our inbound ring lives in it).
 * @theirs:    the peer's region (our outbound ring lives in it).
 * @tx, @rx:   ring views (see rb.h).
 * @refs:      1 for the table plus one per call in flight; the last put destroys.
 * @gen:       generation, so stale monitor events for a reused descriptor are ignored.
 * @closing:   scif_close() was called here; blocked calls return EINTR.
 * @waiters:   threads of this process sleeping on @fd (so close knows to wake them).
 * @wake_fd:   eventfd scif_close() writes to wake this process's sleepers (lazily made).
 * @own_fd:    @fd is ours to close on teardown (an endpoint never handed to the caller).
 * @bulk_pid:  the peer's process, if we may copy to and from its memory directly (bulk.c):
 *             the link's credentials name it, it runs as our user and owns its region.
 * @ino:       inode of @fd's socket, to recognise dup() copies of it.
 * @alias, @nalias: other descriptor numbers of this process for the same endpoint (dup);
 *             under the table lock.
 * @ras:       windows of both sides (window.h).
 * @req_lock, @req_cond, @reqs, @next_tag: control requests waiting for the peer's reply.
 * @dma_issued: RMA transfers queued so far (fence marks count these).
 * @dma_done:  transfers completed (in order: the DMA worker is FIFO), a futex word.
 * @max_mark, @max_peer_mark: highest marks handed out (fence_wait rejects others).
 * @peer_waits: the peer's WAIT requests not yet satisfied (under the worker lock).
 */
struct scif_endpt {
	int fd;
	struct scif_bell bell;
	struct scif_bell peer_bell;
	int link;
	int lfd;
	int backlog;
	struct scif_pend *pend;
	int npend;
	int listen_cap;
	int listen_err;
	uint32_t listen_dirty;
	uint32_t bell_shut;
	struct scif_port *port;
	struct scif_ep_shared *sh;
	struct scif_region mine;
	struct scif_region theirs;
	struct scif_rb tx;
	struct scif_rb rx;
	uint32_t refs;
	uint32_t gen;
	uint32_t closing;
	uint32_t waiters;
	int wake_fd;
	int own_fd;
	pid_t bulk_pid;
	unsigned long ino;
	int alias[SCIF_MAX_ALIAS];
	int nalias;
	struct scif_ras ras;
	pthread_mutex_t req_lock;
	pthread_cond_t req_cond;
	struct scif_req *reqs;
	uint32_t next_tag;
	uint32_t dma_issued;
	uint32_t dma_done;
	uint32_t max_mark;
	uint32_t max_peer_mark;
	struct scif_peer_wait *peer_waits;
};

struct scif_ctl_msg;
struct scif_req;
struct scif_peer_wait;

#define SCIF_MAX_BACKLOG 1024

/* The process's attachment to its fabric (set up once by scif__init). */
extern struct scif_fabric scif__fab;

/* Take the queued rings off the endpoint's descriptor (fabric.h, bell_drain). */
static inline void scif__bell_drain(struct scif_endpt *ep)
{
	if (__builtin_expect(scif__fab.ops->bell_drain != NULL, 0))
		scif__fab.ops->bell_drain(&ep->bell, ep->fd);
	else
		scif__fab.ops->drain(ep->fd);
}

/* Around a sleep in poll(2) for what the peer writes or rings (fabric.h, sleep). */
static inline void scif__fab_sleep(int asleep)
{
	if (__builtin_expect(scif__fab.ops->sleep != NULL, 0))
		scif__fab.ops->sleep(asleep);
}

int scif__init(void);

/*
 * An endpoint's life. The table (epd.c) owns an endpoint's existence: its descriptor, its
 * bell, the shared state, the references, and the one wake-up every waiter listens to
 * (scif__epd_wake). The layers above it join through this table of hooks, registered once at
 * start-up (init.c), so no lower layer calls an upper one by name:
 *   @init:       a new endpoint (UNBOUND, or being accepted).
 *   @disconnect: the peer is gone or broke the protocol (from the monitor, a data-path check,
 *                a request that timed out): the connection layer moves the endpoint to
 *                DISCONNECTED, releases its port and wakes every waiter. Idempotent.
 *   @ctl:        a control message from the peer (monitor thread) with the fabric handles
 *                that came with it (@nfh of them, -1 if lost: fabric.h link_recv): 0
 *                handled, -EPROTO to drop the peer, -ENOMSG not this layer's. It imports
 *                the handles it keeps; the caller releases the rest.
 *   @rewatch:    register the monitor watches the state calls for (fork() child, dup()).
 *   @fini:       the last reference is gone: let go of everything (reverse order of joining).
 *
 * States and who changes them (all under sh->ctl, published with a release store):
 *   UNBOUND -> BOUND           scif_bind, or a connect's automatic bind (ports.c, nodeqp.c)
 *   BOUND -> LISTENING         scif_listen (nodeqp.c)
 *   BOUND -> CONNECTING        scif_connect; back to BOUND on failure (nodeqp.c)
 *   CONNECTING -> CONNECTED    the connector on the grant, the acceptor before it (nodeqp.c)
 *   CONNECTED -> DISCONNECTED  @disconnect, only (nodeqp.c conn_disconnect)
 * scif_close() leaves the state alone: it unpublishes the endpoint, sets @closing, wakes
 * everyone (-EINTR) and waits for them; the last reference runs the @fini hooks.
 */
struct scif_epd_layer {
	const char *name;
	void (*init)(struct scif_endpt *ep);
	void (*disconnect)(struct scif_endpt *ep);
	int (*ctl)(struct scif_endpt *ep, const struct scif_ctl_msg *m, struct scif_fh *fh,
		   int nfh);
	void (*rewatch)(struct scif_endpt *ep);
	void (*fini)(struct scif_endpt *ep);
};

#define SCIF_MAX_LAYERS 4
void scif__epd_add_layer(const struct scif_epd_layer *l);
/* Run the layers' hooks (see struct scif_epd_layer). */
void scif__epd_disconnect(struct scif_endpt *ep);
int scif__epd_ctl(struct scif_endpt *ep, const struct scif_ctl_msg *m, struct scif_fh *fh,
		  int nfh);
void scif__epd_rewatch(struct scif_endpt *ep);

/* What a layer does with an event on a watch of @kind (enum scif_watch_kind, not BELL). */
typedef void (*scif_watch_fn)(struct scif_endpt *ep, uint32_t events);
void scif__monitor_handle(int kind, scif_watch_fn fn);
/* Fork handlers of the monitor (once, at start-up). */
void scif__monitor_setup(void);
/* Make sure the monitor thread runs in this process (after fork(), too). */
int scif__monitor_ensure(void);
int scif__monitor_watch(struct scif_endpt *ep, int kind, int fd, uint32_t events);
void scif__monitor_unwatch(int fd);
/* Re-register an endpoint's watches under its current descriptor number. */
void scif__monitor_rekey(struct scif_endpt *ep);

/*
 * Descriptor table. get() returns a counted reference or NULL; put() drops it. find() is
 * get() for a descriptor the application passed: it also recognises dup() copies (and so
 * looks at the descriptor itself, which only the application's calls may do). ref() takes
 * one more reference on an endpoint the caller already holds.
 */
struct scif_endpt *scif__epd_get(int fd);
struct scif_endpt *scif__epd_find(int fd);
/*
 * The endpoint published under @fd now, without a reference: it may be closed and its
 * struct reused at any moment, so only a caller that pins it some other way (a light read
 * of its windows, window.h) may use more than its type-stable memory.
 */
struct scif_endpt *scif__epd_peek(int fd);
void scif__epd_ref(struct scif_endpt *ep);
void scif__epd_put(struct scif_endpt *ep);
/* New UNBOUND endpoint with its descriptor pair; returns it with one table reference. */
int scif__epd_create(struct scif_endpt **out);
/* Set up an accepted endpoint's descriptors (a new descriptor pair). */
int scif__epd_alloc(struct scif_endpt **out);
int scif__epd_publish(struct scif_endpt *ep);
/* Remove from the table (the user descriptor is gone or going), with every dup() alias. */
void scif__epd_unpublish(struct scif_endpt *ep);
/*
 * scif_close() of one descriptor number: if other numbers of this process still refer to
 * the endpoint, drop only this one and return 1 (the endpoint lives on); else return 0.
 */
int scif__epd_drop_alias(struct scif_endpt *ep, int fd);
/* Call fn on every endpoint in the table. */
void scif__epd_foreach(void (*fn)(struct scif_endpt *ep));
/*
 * Wake every thread of this process waiting on the endpoint, whatever it waits for: blocked
 * send/recv/accept/connect, requests waiting for the peer's reply, fence waits. Each waiter
 * then looks at what changed (closing: -EINTR; not CONNECTED: -ECONNRESET). Called by
 * scif_close and by the disconnect path; the one wake-up every waiter listens to.
 */
void scif__epd_wake(struct scif_endpt *ep);
/* Look up why a descriptor is not an endpoint: -EBADF or -ENOTTY. */
int scif__epd_lookup_err(int fd);

/* Our queue-pair region (we read it) and the peer's (we write into it); rb.h. */
static inline struct scif_qp_region *scif__qp_mine(const struct scif_endpt *ep)
{
	return ep->mine.addr;
}

static inline struct scif_qp_region *scif__qp_theirs(const struct scif_endpt *ep)
{
	return ep->theirs.addr;
}

static inline uint32_t scif__epd_state(const struct scif_endpt *ep)
{
	return __atomic_load_n(&ep->sh->state, __ATOMIC_ACQUIRE);
}

/* Connected-state check of register/RMA/fence/mmap (spec 2.2): ECONNRESET, ENOTCONN. */
int scif__epd_verify_connected(struct scif_endpt *ep);

/* Ports (ports.c). */
int scif__port_bind(struct scif_endpt *ep, uint16_t pn);
int scif__port_check_privilege(uint16_t pn);
/* Run the monitor's pending events in the caller (a hang-up may free a port). */
void scif__monitor_poll_now(void);
void scif__port_put(struct scif_port *p);
struct scif_port *scif__port_ref(struct scif_port *p);

/* Connection (nodeqp.c). */
int scif__conn_listen(struct scif_endpt *ep, int backlog);
int scif__conn_connect(struct scif_endpt *ep, struct scif_portID *dst);
int scif__conn_accept(struct scif_endpt *ep, struct scif_portID *peer, scif_epd_t *newepd,
		      int flags);
/* The monitor saw the link readable (non-blocking connect completion, control messages). */
void scif__conn_link_event(struct scif_endpt *ep);
/* Whether a live connection request is pending on a listener (scif_poll). */
int scif__conn_listen_pending(struct scif_endpt *ep);
/* The listen socket has requests: make the listener's descriptor readable. */
void scif__conn_listen_event(struct scif_endpt *ep);
/* scif_close() of the last descriptor: the monitor stops delivering the peer's events. */
void scif__conn_closing(struct scif_endpt *ep);
/* The connection layer (its struct scif_epd_layer) and its monitor handlers. */
extern const struct scif_epd_layer scif__conn_layer;
void scif__conn_setup(void);

/* Control requests over the link (nodeqp.c). */
int scif__ctl_send(struct scif_endpt *ep, struct scif_ctl_msg *m, const struct scif_fh *fh);
/*
 * Send a request and wait for the REPLY with its tag (at most SCIF_REQ_TIMEOUT_MS); returns
 * 0 or the -errno the peer answered (one the request may carry), -EINTR (closed here),
 * -ECONNRESET (peer gone, silent or lying), -ETIMEDOUT (a fence wait).
 */
int scif__ctl_call(struct scif_endpt *ep, struct scif_ctl_msg *m, const struct scif_fh *fh,
		   struct scif_ctl_msg *reply);
/* Answer the peer's request @tag. */
void scif__ctl_reply(struct scif_endpt *ep, uint32_t tag, int err, uint64_t p0);
void scif__ctl_msg_init(struct scif_ctl_msg *m, uint16_t op, const struct scif_endpt *ep);

/* The RMA layer (rma.c). */
extern const struct scif_epd_layer scif__rma_layer;

/* Messaging (msg.c). */
int scif__msg_send(struct scif_endpt *ep, void *msg, int len, int flags);
int scif__msg_recv(struct scif_endpt *ep, void *msg, int len, int flags);
/* Readiness of an endpoint as scif_poll reports it; may prepare the descriptor for a sleep. */
short scif__msg_revents(struct scif_endpt *ep, short events, int arm);
/* Sleep on the endpoint descriptor (and @extra if >= 0) until ready, woken or signalled. */
int scif__msg_wait(struct scif_endpt *ep, int extra, short events, int timeout_ms);
void scif__msg_set_writable(struct scif_endpt *ep, int writable);
void scif__msg_init(void);
/* How long a sleep in the library lasts at most before it looks again (SCIF_WAIT_RECHECK_MS). */
extern int scif__wait_recheck_ms;
/* For bulk.c, which runs inside scif_send()/scif_recv() (their lock held): */
/* Sender: make the peer's receiver look at its words (ring it if it may be asleep). */
void scif__msg_kick_rx(struct scif_endpt *ep);
/* Receiver: wake the peer's sender if it asked to be woken. */
void scif__msg_kick_tx(struct scif_endpt *ep);
/* Sender: spin, then sleep, until *w1 != v1 or *w2 != v2 or the connection changes. */
int scif__msg_tx_sleep(struct scif_endpt *ep, const uint64_t *w1, uint64_t v1, const uint64_t *w2,
		       uint64_t v2);
/* Receiver: no bells needed until scif_recv() returns (it watches the sender's words). */
void scif__msg_rx_busy(struct scif_endpt *ep);
/* Receiver: spin, then sleep, until *w != v or the connection changes. */
int scif__msg_rx_sleep(struct scif_endpt *ep, const uint64_t *w, uint64_t v);

uint64_t scif__now_ns(void);
/* The same clock at scheduler-tick resolution (1-4 ms), for cheap "has it been a while" tests:
 * about a quarter of the cost of scif__now_ns() where the vDSO reads a paravirtual clock. */
uint64_t scif__coarse_ns(void);
/* How long a peer may take to answer before it counts as broken (SCIF_REQ_TIMEOUT_MS, 10 s). */
uint64_t scif__req_timeout_ns(void);

/* scif_poll (poll.c). */
int scif__poll(struct scif_pollepd *epds, unsigned int nepds, long timeout);

#endif /* SCIF_EPD_H */
