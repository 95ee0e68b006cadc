// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fabric/pcie.c - two OS instances joined by one shared memory window (the aperture, pcie.h):
 * an ivshmem device's BAR2 on the card, the shared-memory file on the host. Doorbells are the
 * device's interrupts (eventfds). How a process reaches both is pcie_dev.c's business.
 *
 * Where things live:
 *   stations  every process attached to the aperture is a station, numbered by its ivshmem
 *             peer id, with a slice of its own (pcie.h). The first host process (SCIF_NODE
 *             unset or 0) makes the aperture and serves it (ivshmem server: station 0, the
 *             hub); other host processes join it as ivshmem clients, stations of node 0; a card
 *             process joins as an ivshmem client (SCIF_NODE says its node) or through
 *             kernel/shim in a guest (its device says). Several processes of one OS instance
 *             are several stations of one SCIF node (docs/pcie-fabric.md).
 *   ports     held as on the local fabric (a locked file per node and port, in the trust
 *             domain's directory of this OS instance).
 *   links     a link is a SOCK_SEQPACKET socket pair inside this process: the core holds one
 *             end, the progress thread the other. Nothing crosses the bus through it: a
 *             control message goes from link_send into a queue pair in the aperture
 *             (pcie.h): straight to station 0, relayed by station 0 to any other, and the
 *             receiving process's progress thread delivers it on the link's socket pair
 *             there. A link's hang-up is a CLOSE record, or the peer station's departure
 *             (the ivshmem server tells the host, which tells the others in a ROSTER record;
 *             the server's socket closing or its heartbeat stopping tells the others that
 *             the host is gone).
 *   regions   pages of the owner's heap in its own slice; the peer writes them in place.
 *   bells     the own bell is the local fabric's socket pair; ringing the peer's bell is a
 *             word set in the peer's slice and a doorbell; the peer's progress thread rings
 *             the socket. Many endpoints share the one vector.
 *   windows   pages of the owner's heap: the core moves the application's pages onto them
 *             (the aperture descriptor at their offset), the peer maps the same pages, so
 *             RMA is one copy and scif_mmap maps the same memory.
 * Every index, offset and length read from the aperture is checked before use: a bad record
 * costs the station (all its links), a bad handle costs its link, neither costs a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "scif.h"
#include "fabric.h"
#include "local.h"
#include "pcie.h"
#include "../atomic.h"
#include "../log.h"

#define PCIE_MSG_MAX 4096u
#define PCIE_REC_MAX (sizeof(struct pcie_rec) + PCIE_MSG_MAX + SCIF_LINK_MAX_FH * sizeof(struct pcie_fh_wire))
#define PCIE_SEND_MS 1000   /* a full node queue pair this long: EAGAIN (the core retries) */
#define PCIE_CONNECT_MS 3000 /* an unanswered CONNECT is refused after this */
#define PCIE_MAX_LINKS 65536u
#define PCIE_FH_NODE_SHIFT 8 /* a received handle's kind: PCIE_FH_* | sender station << 8 */

enum { LINK_FREE, LINK_CONNECTING, LINK_OPEN, LINK_REFUSED };

/**
 * struct pcie_link - one link of this process. Under pcie.lock.
 * @gen:   bumped when the entry is freed: a stale (index, gen) never matches.
 * @state: LINK_*.
 * @st:    the peer's station (once OPEN).
 * @ask:   CONNECTING: the stations asked that have not refused yet (one bit each).
 * @tfd:   the progress thread's end of the socket pair (-1 once closed).
 * @rid, @rgen: the peer process's link (valid once OPEN).
 */
struct pcie_link {
	uint32_t gen;
	uint8_t state;
	uint16_t st;
	uint16_t ask;
	int tfd;
	uint32_t rid, rgen;
	uint32_t next_free;
};
_Static_assert(PCIE_MAX_NODES <= 16, "a link's @ask has a bit per station");

/* A listening endpoint: @ufd the core's end, @tfd ours (links are passed down it). */
struct pcie_listener {
	int ufd, tfd;
	uint16_t port;
	int backlog, pending;
};

/**
 * struct pcie_station - what this process knows of one station (one process attached).
 * @up:     the hub: attached at the device level (its ivshmem client is connected); the
 *          other stations: station 0 is up (the server is), any other is up once the hub's
 *          ROSTER said so. Written by the progress thread.
 * @hello:  the hub: the station said HELLO (its slice is ready); we may send to it. The
 *          others: set with @up.
 * @node:   the SCIF node the station serves (its HELLO), -1 while unknown.
 * @tx:     orders the senders of ring self -> node (any thread).
 * @wr:     bytes we produced into ring self -> node (under @tx).
 * @rd:     bytes we consumed of ring node -> self (progress thread only).
 * @session: host: the card's session we read its ring for (0: none yet, pcie_peer_ctl).
 * @attached: host: the card's device is connected (an ivshmem peer with its id), whether
 *          or not a live card process drives it (@up). Progress thread.
 * @gone:   host: the session of the card process whose heartbeat stopped: the card's entry
 *          still holds it, and only a different one is a new card process.
 * @beat, @beat_at: the peer's heartbeat count as last seen, and when it last changed
 *          (progress thread; a host watches its cards, a blind card its host).
 * @kbeat, @kbeat_at: host: the same for the card kernel's heartbeat (pcie_peer_ctl.kbeat).
 */
struct pcie_station {
	int up;
	int hello;
	int node;
	uint64_t session;
	int attached;
	uint64_t gone;
	uint64_t beat, beat_at;
	uint64_t kbeat, kbeat_at;
	pthread_mutex_t tx;
	uint64_t wr;
	uint64_t rd;
};

static struct {
	pthread_mutex_t lock; /* start-up, links, listeners, bells, heap */
	pthread_cond_t cond;  /* a connect waiting for its answer, or for a card's HELLO */
	int ready;
	struct pcie_dev dev;
	uint8_t *ap;
	struct pcie_ap_hdr hdr; /* our copy: validated once, never read from the aperture again */
	uint16_t self; /* our station */
	uint16_t node; /* our SCIF node */
	struct scif_fabric *fab;
	int wake; /* an eventfd: the progress thread's own doorbell */
	pthread_t thread;
	int forked; /* a fork child: the parent's queue pairs and thread are not ours */
	int renumber; /* hub: a station came, went or said HELLO (pcie_number_cards); progress thread */
	struct pcie_station st[PCIE_MAX_NODES];
	struct pcie_link *links;
	uint32_t nlinks, free_link;
	uint64_t *byfd; /* by the core's link descriptor: index + 1 | gen << 32, or 0 */
	int nbyfd;
	struct pcie_listener *lis;
	int nlis, cap_lis;
	int bell_fd[PCIE_NBELLS]; /* own bell slots: the bell's descriptor + 1, 0 if free */
	uint32_t bell_top;        /* slots at and above are all free */
	uint8_t *heap_used;       /* one byte per page of our heap */
	uint32_t heap_pages, heap_cursor;
} pcie = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake = -1,
	.free_link = UINT32_MAX,
};

/* ---- the aperture ---------------------------------------------------------------------- */

/* Under pcie.lock: wait up to 10 ms for pcie.cond. */
static void pcie_tick(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 10000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&pcie.cond, &pcie.lock, &ts);
}

static uint8_t *pcie_slice(uint16_t n)
{
	return pcie.ap + pcie.hdr.first_slice + (uint64_t)n * pcie.hdr.slice_size;
}

/* In slice @n, what node @m writes. */
static struct pcie_peer_ctl *pcie_ctl(uint16_t n, uint16_t m)
{
	return (struct pcie_peer_ctl *)pcie_slice(n) + m;
}

/* Ring @m -> @n: its data, in slice @n. */
static uint8_t *pcie_ring(uint16_t n, uint16_t m)
{
	return pcie_slice(n) + PCIE_RING_OFF + (uint64_t)m * pcie.hdr.ring_bytes;
}

static uint32_t *pcie_bell_word(uint16_t n, uint32_t slot, int unpark)
{
	return (uint32_t *)(pcie_slice(n) + PCIE_BELL_OFF) + (unpark ? PCIE_NBELLS : 0) + slot;
}

/* Is [off, off + len) inside node @n's heap (page-aligned, non-empty)? */
static int pcie_in_heap(uint16_t n, uint64_t off, uint64_t len)
{
	uint64_t lo = pcie.hdr.first_slice + (uint64_t)n * pcie.hdr.slice_size + pcie.hdr.heap_off;
	uint64_t hi = pcie.hdr.first_slice + ((uint64_t)n + 1) * pcie.hdr.slice_size;

	return n < pcie.hdr.nnodes && len && !(off % PCIE_PAGE) && off >= lo && off <= hi &&
	       len <= hi - off;
}

/* The host lays the aperture out before it serves it (pcie_dev_ops.open's @ready). */
static int pcie_layout(struct pcie_dev *d, unsigned int nnodes)
{
	struct pcie_ap_hdr *h = &pcie.hdr;
	uint64_t slice = ((d->size - PCIE_PAGE) / nnodes) & ~(uint64_t)(PCIE_PAGE - 1);

	h->magic = PCIE_MAGIC;
	h->version = PCIE_VERSION;
	h->size = d->size;
	h->nnodes = nnodes;
	h->nbells = PCIE_NBELLS;
	h->ring_bytes = PCIE_RING_BYTES;
	h->first_slice = PCIE_PAGE;
	h->slice_size = slice;
	h->heap_off = PCIE_RING_OFF + (uint64_t)nnodes * PCIE_RING_BYTES;
	if (h->heap_off + 16 * PCIE_PAGE > slice)
		return -EINVAL; /* too small an aperture for that many nodes */
	return 0;
}

/* A card checks the host's header once: everything the layout accessors rely on. */
static int pcie_check_hdr(const struct pcie_ap_hdr *h, uint64_t size, uint16_t self)
{
	if (h->magic != PCIE_MAGIC || h->version != PCIE_VERSION || h->size != size ||
	    h->nnodes < 2 || h->nnodes > PCIE_MAX_NODES || self >= h->nnodes ||
	    h->nbells != PCIE_NBELLS || h->ring_bytes % 8 || h->ring_bytes < 4 * PCIE_REC_MAX ||
	    h->ring_bytes > (64u << 20) || h->first_slice != PCIE_PAGE ||
	    h->slice_size % PCIE_PAGE || h->heap_off % PCIE_PAGE ||
	    h->heap_off < PCIE_RING_OFF + h->nnodes * h->ring_bytes ||
	    h->heap_off >= h->slice_size || h->slice_size > size ||
	    h->first_slice + h->nnodes * h->slice_size > size)
		return -EPROTO;
	return 0;
}

static int pcie_map(struct pcie_dev *d)
{
	void *p = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, (off_t)d->map_off);

	if (p == MAP_FAILED)
		return -ENOMEM;
	pcie.ap = p;
	return 0;
}

static unsigned int pcie_nnodes_env(void)
{
	const char *v = getenv("SCIF_PCIE_NODES");
	long n = v && *v ? strtol(v, NULL, 10) : 2;

	return n >= 2 && n <= PCIE_MAX_NODES ? (unsigned int)n : 0;
}

static int pcie_host_ready(struct pcie_dev *d)
{
	unsigned int nnodes = pcie_nnodes_env();
	int ret;

	if (!nnodes)
		return -EINVAL;
	ret = pcie_layout(d, nnodes);
	if (!ret)
		ret = pcie_map(d);
	if (ret)
		return ret;
	/* A fresh file reads as zeros: every ring empty, every bell quiet. The header last. */
	memcpy(pcie.ap, &pcie.hdr, sizeof(pcie.hdr));
	return 0;
}

/* ---- our heap (pages of our own slice) ------------------------------------------------ */

/*
 * Next-fit from a moving cursor: freed pages are reused as late as possible, so that a peer
 * still writing a region it has not yet learnt is gone lands in free pages, not in a new
 * connection's (which the core would reject as corrupt all the same).
 */
static int64_t pcie_heap_alloc(size_t len)
{
	uint64_t need = (len + PCIE_PAGE - 1) / PCIE_PAGE;
	uint32_t n = pcie.heap_pages, start = pcie.heap_cursor, run = 0;

	if (!len || need > n)
		return -ENOMEM;
	pthread_mutex_lock(&pcie.lock);
	for (uint64_t i = 0; i < (uint64_t)n + need; i++) {
		uint32_t p = (uint32_t)((start + i) % n);

		if (p == 0)
			run = 0; /* a run never wraps */
		if (pcie.heap_used[p]) {
			run = 0;
			continue;
		}
		if (++run == need) {
			uint32_t first = p + 1 - (uint32_t)need;

			memset(pcie.heap_used + first, 1, need);
			pcie.heap_cursor = (first + (uint32_t)need) % n;
			pthread_mutex_unlock(&pcie.lock);
			return first;
		}
	}
	pthread_mutex_unlock(&pcie.lock);
	return -ENOMEM;
}

static void pcie_heap_free(uint64_t first, size_t len)
{
	uint64_t need = (len + PCIE_PAGE - 1) / PCIE_PAGE;

	pthread_mutex_lock(&pcie.lock);
	if (first + need <= pcie.heap_pages)
		memset(pcie.heap_used + first, 0, need);
	pthread_mutex_unlock(&pcie.lock);
}

/* The aperture offset of page @first of our heap. */
static uint64_t pcie_heap_off(uint64_t first)
{
	return pcie.hdr.first_slice + (uint64_t)pcie.self * pcie.hdr.slice_size +
	       pcie.hdr.heap_off + first * PCIE_PAGE;
}

/* ---- doorbells and the node queue pairs -------------------------------------------------- */

static void pcie_wake(void)
{
	uint64_t one = 1;

	if (write(pcie.wake, &one, sizeof(one)) < 0) {
		/* a full counter is a pending wake-up already */
	}
}

static int pcie_kick(uint16_t node)
{
	if (node == pcie.self) {
		pcie_wake();
		return 0;
	}
	return pcie.dev.ops->kick(&pcie.dev, node);
}

/* Do we have a queue pair with station @n? The hub with all, the others with the hub. */
static int pcie_direct(uint16_t n)
{
	return pcie.dev.host || n == 0 || n == pcie.self;
}

/*
 * Send one record to station @to (body, then handles): straight into ring self -> @to, or,
 * where we have no queue pair with it, to the hub with @h->route naming it. Waits up to
 * @wait_ms for room. 0, -EAGAIN if it stayed full, -ECONNRESET if the station is gone or lies
 * about what it consumed.
 */
static int pcie_qp_send(uint16_t to, struct pcie_rec *h, const void *body,
			const struct pcie_fh_wire *fw, int nfw, int wait_ms)
{
	uint16_t node = pcie_direct(to) ? to : 0; /* the station whose ring we write */
	struct pcie_station *nd = &pcie.st[node];
	uint64_t rb = pcie.hdr.ring_bytes, until = 0;
	size_t blen = h->msglen, total;
	int ret = 0;

	if (node != to) {
		if (!scif__read_once(&pcie.st[to].up))
			return -ECONNRESET;
		h->route = (uint32_t)to + 1;
	}

	/*
	 * A fork child shares the parent's aperture but not its producer index (a copy that
	 * goes stale at the parent's next record): it must never write a queue pair.
	 */
	if (scif__read_once(&pcie.forked))
		return -ECONNRESET;
	total = (sizeof(*h) + blen + (size_t)nfw * sizeof(*fw) + 7) & ~(size_t)7;
	if (total > PCIE_REC_MAX + 8)
		return -EMSGSIZE;
	h->len = (uint32_t)total;
	h->nfh = (uint16_t)nfw;
	pthread_mutex_lock(&nd->tx);
	for (;;) {
		/* Acquire pairs with the receiver's release store of rindex (pcie_qp_recv). */
		uint64_t ri = scif__load_acquire(&pcie_ctl(pcie.self, node)->rindex);
		uint64_t pos = nd->wr % rb, tail = rb - pos, need;

		if (!scif__read_once(&nd->up)) {
			ret = -ECONNRESET;
			break;
		}
		if (ri > nd->wr || nd->wr - ri > rb) {
			ret = -ECONNRESET; /* the peer lies about its read index */
			break;
		}
		need = total + (tail < total ? tail : 0);
		if (rb - (nd->wr - ri) >= need) {
			uint8_t *data = pcie_ring(node, pcie.self);

			if (tail < total) {
				struct pcie_rec pad = { .len = (uint32_t)tail, .type = PCIE_REC_PAD };

				memcpy(data + pos, &pad, 8);
				nd->wr += tail;
				pos = 0;
			}
			memcpy(data + pos, h, sizeof(*h));
			if (blen)
				memcpy(data + pos + sizeof(*h), body, blen);
			if (nfw)
				memcpy(data + pos + sizeof(*h) + blen, fw, (size_t)nfw * sizeof(*fw));
			nd->wr += total;
			/* Release pairs with the receiver's acquire load of windex: data first. */
			scif__store_release(&pcie_ctl(node, pcie.self)->windex, nd->wr);
			break;
		}
		if (!until)
			until = scif_fabric_now_ms() + (uint64_t)wait_ms;
		else if (scif_fabric_now_ms() >= until) {
			ret = -EAGAIN;
			break;
		}
		pthread_mutex_unlock(&nd->tx);
		pcie_kick(node);
		usleep(50);
		pthread_mutex_lock(&nd->tx);
	}
	pthread_mutex_unlock(&nd->tx);
	if (!ret)
		ret = pcie_kick(node) < 0 ? -ECONNRESET : 0;
	return ret;
}

static int pcie_send_simple(uint16_t node, uint16_t type, uint32_t dst, uint32_t dst_gen,
			    uint32_t src, uint32_t src_gen, const void *body, uint32_t blen)
{
	struct pcie_rec h = { .type = type, .dst = dst, .dst_gen = dst_gen, .src = src,
			      .src_gen = src_gen, .msglen = blen };

	return pcie_qp_send(node, &h, body, NULL, 0, PCIE_SEND_MS);
}

/* ---- links ------------------------------------------------------------------------------ */

/* Under pcie.lock: a free entry (its peer station @node), or NULL. */
static struct pcie_link *pcie_link_new(uint16_t node, uint8_t state, int tfd)
{
	struct pcie_link *l;

	if (pcie.free_link == UINT32_MAX) {
		uint32_t n = pcie.nlinks ? pcie.nlinks * 2 : 64;
		struct pcie_link *p;

		if (n > PCIE_MAX_LINKS || !(p = realloc(pcie.links, n * sizeof(*p))))
			return NULL;
		for (uint32_t i = pcie.nlinks; i < n; i++)
			p[i] = (struct pcie_link){ .gen = 1, .tfd = -1,
						   .next_free = i + 1 < n ? i + 1 : UINT32_MAX };
		pcie.links = p;
		pcie.free_link = pcie.nlinks;
		pcie.nlinks = n;
	}
	l = &pcie.links[pcie.free_link];
	pcie.free_link = l->next_free;
	l->state = state;
	l->st = node;
	l->ask = 0;
	l->tfd = tfd;
	l->rid = l->rgen = 0;
	return l;
}

static uint32_t pcie_link_id(const struct pcie_link *l)
{
	return (uint32_t)(l - pcie.links);
}

/* Under pcie.lock: the link (@id, @gen) if it is live. */
static struct pcie_link *pcie_link_find(uint32_t id, uint32_t gen)
{
	if (id >= pcie.nlinks || pcie.links[id].gen != gen || pcie.links[id].state == LINK_FREE)
		return NULL;
	return &pcie.links[id];
}

/* Under pcie.lock: close our end (the core's end hangs up) and free the entry. */
static void pcie_link_free(struct pcie_link *l)
{
	if (l->tfd >= 0)
		close(l->tfd);
	l->tfd = -1;
	l->state = LINK_FREE;
	l->gen++;
	if (!l->gen)
		l->gen = 1;
	l->next_free = pcie.free_link;
	pcie.free_link = pcie_link_id(l);
}

/* Under pcie.lock: remember that the core's descriptor @fd is link @l. */
static int pcie_byfd_set(int fd, const struct pcie_link *l)
{
	if (fd >= pcie.nbyfd) {
		int n = fd + 64;
		uint64_t *p = realloc(pcie.byfd, (size_t)n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		memset(p + pcie.nbyfd, 0, (size_t)(n - pcie.nbyfd) * sizeof(*p));
		pcie.byfd = p;
		pcie.nbyfd = n;
	}
	pcie.byfd[fd] = l ? ((uint64_t)l->gen << 32 | (pcie_link_id(l) + 1)) : 0;
	return 0;
}

/* Under pcie.lock: the live link behind the core's descriptor @fd. */
static struct pcie_link *pcie_byfd(int fd)
{
	uint64_t v;

	if (fd < 0 || fd >= pcie.nbyfd || !(v = pcie.byfd[fd]))
		return NULL;
	return pcie_link_find((uint32_t)v - 1, (uint32_t)(v >> 32));
}

static int pcie_socketpair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0 ? -errno
											      : 0;
}

/* Under pcie.lock: publish the nodes of the stations we can reach (fab->online). */
static void pcie_online_locked(void)
{
	uint64_t bits = 1ULL << pcie.node;

	for (uint16_t s = 0; s < pcie.hdr.nnodes; s++)
		if (pcie.st[s].up && pcie.st[s].hello && pcie.st[s].node >= 0)
			bits |= 1ULL << pcie.st[s].node;
	__atomic_store_n(&pcie.fab->online, bits, __ATOMIC_RELEASE);
}

/* Hub: tell every station that said HELLO, but @skip, that station @n serves @node now. */
static void pcie_roster_all(uint16_t n, uint32_t node, uint16_t skip)
{
	struct pcie_roster r = { .station = n, .node = node };

	for (uint16_t s = 1; s < pcie.hdr.nnodes; s++)
		if (s != n && s != skip && scif__read_once(&pcie.st[s].up) && pcie.st[s].hello)
			pcie_send_simple(s, PCIE_REC_ROSTER, 0, 0, 0, 0, &r, sizeof(r));
}

/*
 * Hub: what station @n wrote in our slice goes, so that the next one with its id starts from
 * a clean entry and a new session; and from now on nobody writes its rings (pcie_qp_send
 * checks @up under the station's tx lock). Then pcie_station_down(n, 1). For a station that
 * broke the protocol, and as pcie_dev.departed for one whose device left: called inside the
 * device's dispatch, before a newcomer can be given the id, so before it can write anything.
 * The rest of that departure (links, roster) follows once the dispatch has returned: by then
 * the newcomer may have written its entry and its HELLO, which a wipe there would erase.
 */
static void pcie_station_wipe(struct pcie_dev *d, uint16_t n)
{
	struct pcie_station *nd = &pcie.st[n];

	if (!d->host || n == pcie.self || n >= pcie.hdr.nnodes)
		return;
	pthread_mutex_lock(&nd->tx);
	scif__write_once(&nd->up, 0);
	memset(pcie_ctl(pcie.self, n), 0, sizeof(struct pcie_peer_ctl));
	pthread_mutex_unlock(&nd->tx);
}

/*
 * A station is gone (or broke the protocol): every link to it hangs up, a connect that asked
 * it counts it as a refusal, its queue pairs start afresh when it comes back. @wipe (hub):
 * its entry in our slice was wiped (pcie_station_wipe: its device left, or it broke the protocol)
 * and the next one with its id starts from a new session; without it (its process's heartbeat
 * stopped, its last will), the entry is left to the next process, which may be writing it
 * already. The hub tells the other stations; any other station that loses the hub loses
 * every station with it. Progress thread.
 */
static void pcie_station_down(uint16_t n, int wipe)
{
	struct pcie_station *nd = &pcie.st[n];
	int announced;

	pthread_mutex_lock(&pcie.lock);
	announced = nd->hello; /* said only while up; pcie_station_wipe may have cleared @up */
	scif__write_once(&nd->up, 0);
	nd->hello = 0;
	nd->node = -1;
	if (pcie.dev.host && wipe)
		nd->session = 0;
	for (uint32_t i = 0; i < pcie.nlinks; i++) {
		struct pcie_link *l = &pcie.links[i];

		if (l->state == LINK_CONNECTING && (l->ask >> n & 1)) {
			l->ask &= (uint16_t)~(1u << n);
			if (!l->ask)
				l->state = LINK_REFUSED; /* its connect frees it */
		} else if (l->state != LINK_FREE && l->state != LINK_CONNECTING && l->st == n) {
			pcie_link_free(l);
		}
	}
	pcie_online_locked();
	pthread_cond_broadcast(&pcie.cond);
	pthread_mutex_unlock(&pcie.lock);
	scif_info("pcie: station %u is gone", n);
	pcie.renumber = 1;
	if (pcie.dev.host && announced)
		pcie_roster_all(n, PCIE_NODE_NONE, n);
	if (!pcie.dev.host && n == 0)
		for (uint16_t s = 1; s < pcie.hdr.nnodes; s++)
			if (s != pcie.self && scif__read_once(&pcie.st[s].up))
				pcie_station_down(s, 0);
}

/*
 * Hub: station @n attached to the device. Our side of its queue pairs starts from zero; the
 * station zeroes its own slice before its HELLO, and we send nothing before that.
 */
static void pcie_station_up(uint16_t n)
{
	struct pcie_station *nd = &pcie.st[n];

	pthread_mutex_lock(&nd->tx);
	nd->wr = 0;
	nd->rd = 0;
	nd->session = 0;
	/* Ours to write in the station's slice: our producer and consumer indices. */
	scif__write_once(&pcie_ctl(n, pcie.self)->windex, 0);
	scif__write_once(&pcie_ctl(n, pcie.self)->rindex, 0);
	pthread_mutex_unlock(&nd->tx);
	pthread_mutex_lock(&pcie.lock);
	nd->hello = 0;
	nd->node = -1;
	nd->beat = 0;
	nd->beat_at = scif_fabric_now_ms();
	nd->kbeat = 0;
	nd->kbeat_at = nd->beat_at;
	scif__write_once(&nd->up, 1);
	pthread_mutex_unlock(&pcie.lock);
	pcie.renumber = 1;
	scif_info("pcie: station %u attached", n);
}

static void pcie_dev_event(void *arg, enum pcie_dev_event ev, uint16_t n)
{
	(void)arg;
	if (n >= pcie.hdr.nnodes || n == pcie.self)
		return; /* an ivshmem peer beyond the slices: never a SCIF node */
	if (ev == PCIE_DEV_UP && pcie.dev.host) {
		pcie.st[n].attached = 1;
		pcie.st[n].gone = 0;
		pcie_station_up(n);
	} else if (ev == PCIE_DEV_DOWN && (pcie.st[n].up || pcie.st[n].attached)) {
		pcie.st[n].attached = 0;
		pcie_station_down(n, 1);
	}
}

/* A listener for @port, under pcie.lock. */
static struct pcie_listener *pcie_listener_find(uint16_t port)
{
	for (int i = pcie.nlis - 1; i >= 0; i--)
		if (pcie.lis[i].port == port && pcie.lis[i].tfd >= 0)
			return &pcie.lis[i];
	return NULL;
}

/* Under pcie.lock: forget listener @i (the core closed its end). */
static void pcie_listener_drop(int i)
{
	if (pcie.lis[i].tfd >= 0)
		close(pcie.lis[i].tfd);
	pcie.lis[i] = pcie.lis[--pcie.nlis];
}

struct pcie_pass {
	uint32_t id, gen;
};

/* A CONNECT from @n: queue a new link on the listener, or refuse. Progress thread. */
static void pcie_in_connect(uint16_t n, const struct pcie_rec *h, const uint8_t *body)
{
	struct pcie_connect c;
	struct pcie_listener *ls;
	struct pcie_link *l = NULL;
	uint32_t id = 0, gen = 0;
	int sv[2] = { -1, -1 };

	if (h->msglen != sizeof(c) || h->nfh)
		return;
	memcpy(&c, body, sizeof(c));
	pthread_mutex_lock(&pcie.lock);
	ls = c.port <= 65535 ? pcie_listener_find((uint16_t)c.port) : NULL;
	if (ls && ls->pending < ls->backlog && !pcie_socketpair(sv) &&
	    (l = pcie_link_new(n, LINK_OPEN, sv[1]))) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct pcie_pass pass = { pcie_link_id(l), l->gen };
		struct iovec iov = { &pass, sizeof(pass) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sv[0], sizeof(int));
		l->rid = h->src;
		l->rgen = h->src_gen;
		if (sendmsg(ls->tfd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(pass)) {
			ls->pending++;
			id = pass.id;
			gen = pass.gen;
		} else {
			pcie_link_free(l); /* closes sv[1] */
			l = NULL;
		}
	} else if (sv[1] >= 0) {
		close(sv[1]);
	}
	if (sv[0] >= 0)
		close(sv[0]); /* in flight to the listener, or not wanted */
	pthread_mutex_unlock(&pcie.lock);
	if (l)
		pcie_send_simple(n, PCIE_REC_ACCEPT, h->src, h->src_gen, id, gen, NULL, 0);
	else
		pcie_send_simple(n, PCIE_REC_REFUSE, h->src, h->src_gen, 0, 0, NULL, 0);
	pcie_wake(); /* poll the new link's end */
}

/* A control message for one of our links: check its handles, deliver it on the socket pair. */
static void pcie_in_msg(uint16_t n, const struct pcie_rec *h, const uint8_t *body)
{
	uint8_t dg[8 + SCIF_LINK_MAX_FH * sizeof(struct pcie_fh_wire) + PCIE_MSG_MAX];
	const uint8_t *fw = body + h->msglen; /* the handles follow the body, unaligned */
	struct pcie_link *l;
	uint32_t hd[2] = { h->nfh, h->msglen };
	size_t flen = (size_t)h->nfh * sizeof(struct pcie_fh_wire);
	uint32_t rid = 0, rgen = 0;
	int bad = 0;

	pthread_mutex_lock(&pcie.lock);
	l = pcie_link_find(h->dst, h->dst_gen);
	if (!l || l->state != LINK_OPEN || l->st != n || l->tfd < 0) {
		pthread_mutex_unlock(&pcie.lock);
		return; /* a link closed meanwhile: its CLOSE is on its way to the peer */
	}
	for (int i = 0; i < h->nfh; i++) {
		struct pcie_fh_wire w;

		memcpy(&w, fw + (size_t)i * sizeof(w), sizeof(w));
		if (w.kind < PCIE_FH_REGION || w.kind > PCIE_FH_MEM || w.pad)
			bad = 1;
		/* Stamp the sender's station: an import checks the handle against its slice. */
		w.kind |= (uint32_t)n << PCIE_FH_NODE_SHIFT;
		memcpy(dg + 8 + (size_t)i * sizeof(w), &w, sizeof(w));
	}
	memcpy(dg, hd, sizeof(hd));
	memcpy(dg + 8 + flen, body, h->msglen);
	/* A link whose reader does not keep up (its socket pair full) is lost, not waited on. */
	if (bad || send(l->tfd, dg, 8 + flen + h->msglen, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		rid = l->rid;
		rgen = l->rgen;
		pcie_link_free(l);
		bad = 1;
	}
	pthread_mutex_unlock(&pcie.lock);
	if (bad)
		pcie_send_simple(n, PCIE_REC_CLOSE, rid, rgen, 0, 0, NULL, 0);
}

/* Is a record's body and handles within its length, and within bounds? */
static int pcie_rec_fits(const struct pcie_rec *h)
{
	return h->msglen <= PCIE_MSG_MAX && h->nfh <= SCIF_LINK_MAX_FH &&
	       (size_t)h->msglen + (size_t)h->nfh * sizeof(struct pcie_fh_wire) <=
		       h->len - sizeof(*h);
}

/*
 * Hub: station @n said HELLO, serving SCIF node @hello->node: we may send to it, the other
 * stations learn of it, and it learns of them (ROSTER). A second HELLO of one process is
 * ignored. Progress thread.
 */
static void pcie_in_hello(uint16_t n, const struct pcie_rec *h, const uint8_t *body)
{
	struct pcie_hello hl;

	if (h->msglen != sizeof(hl) || h->nfh)
		return;
	memcpy(&hl, body, sizeof(hl));
	if (hl.node >= pcie.hdr.nnodes || hl.pad)
		return; /* no node of this aperture: never served */
	pthread_mutex_lock(&pcie.lock);
	if (pcie.st[n].hello) {
		pthread_mutex_unlock(&pcie.lock);
		return;
	}
	pcie.st[n].hello = 1;
	pcie.st[n].node = (int)hl.node;
	pcie_online_locked();
	pthread_cond_broadcast(&pcie.cond);
	pthread_mutex_unlock(&pcie.lock);
	pcie.renumber = 1;
	scif_info("pcie: station %u serves node %u", n, hl.node);
	for (uint16_t s = 1; s < pcie.hdr.nnodes; s++) {
		struct pcie_roster r = { .station = s };

		if (s == n || !scif__read_once(&pcie.st[s].up) || !pcie.st[s].hello)
			continue;
		r.node = (uint32_t)pcie.st[s].node;
		pcie_send_simple(n, PCIE_REC_ROSTER, 0, 0, 0, 0, &r, sizeof(r));
	}
	pcie_roster_all(n, hl.node, n);
}

/*
 * Not the hub: the hub's word (a ROSTER record) on another station. A station that comes while
 * we think it is there is a new process in its place: the last one's links go first.
 * Progress thread.
 */
static void pcie_in_roster(const struct pcie_rec *h, const uint8_t *body)
{
	struct pcie_roster r;

	if (h->msglen != sizeof(r) || h->nfh)
		return;
	memcpy(&r, body, sizeof(r));
	if (r.station == 0 || r.station >= pcie.hdr.nnodes || r.station == pcie.self ||
	    (r.node != PCIE_NODE_NONE && r.node >= pcie.hdr.nnodes))
		return;
	if (scif__read_once(&pcie.st[r.station].up))
		pcie_station_down((uint16_t)r.station, 0);
	if (r.node == PCIE_NODE_NONE)
		return;
	pthread_mutex_lock(&pcie.lock);
	pcie.st[r.station].node = (int)r.node;
	pcie.st[r.station].hello = 1;
	scif__write_once(&pcie.st[r.station].up, 1);
	pcie_online_locked();
	pthread_cond_broadcast(&pcie.cond);
	pthread_mutex_unlock(&pcie.lock);
}

/*
 * Hub: a record from station @n for another station (@h->route): pass it on with its origin
 * in @route. Where it cannot go (that station is gone or not ready), @n hears what a gone
 * station would have said: its CONNECT is refused, the link of its ACCEPT or MSG closed.
 * Progress thread.
 */
static void pcie_relay(uint16_t n, struct pcie_rec *h, const uint8_t *body)
{
	struct pcie_fh_wire fw[SCIF_LINK_MAX_FH];
	struct pcie_rec r = { .dst = h->src, .dst_gen = h->src_gen };
	uint32_t to = h->route - 1;

	if (!pcie_rec_fits(h) || to >= pcie.hdr.nnodes || to == n || to == pcie.self)
		return; /* malformed: dropped, as for us */
	if (scif__read_once(&pcie.st[to].up) && pcie.st[to].hello) {
		memcpy(fw, body + h->msglen, (size_t)h->nfh * sizeof(fw[0]));
		h->route = (uint32_t)n + 1;
		if (!pcie_qp_send((uint16_t)to, h, body, fw, h->nfh, PCIE_SEND_MS))
			return;
	}
	if (h->type == PCIE_REC_CONNECT)
		r.type = PCIE_REC_REFUSE;
	else if (h->type == PCIE_REC_ACCEPT || h->type == PCIE_REC_MSG)
		r.type = PCIE_REC_CLOSE;
	else
		return;
	r.route = to + 1; /* as from that station */
	pcie_qp_send(n, &r, NULL, NULL, 0, PCIE_SEND_MS);
}

/* One record from station @n (copied out of the aperture, its length checked). */
static void pcie_in_rec(uint16_t n, const struct pcie_rec *h, const uint8_t *body)
{
	struct pcie_link *l;
	int reply_close = 0;

	if (!pcie_rec_fits(h))
		return; /* malformed: dropped (the link it names times out or is reset) */
	switch (h->type) {
	case PCIE_REC_HELLO:
		if (pcie.dev.host && n != pcie.self)
			pcie_in_hello(n, h, body);
		break;
	case PCIE_REC_ROSTER:
		if (!pcie.dev.host && n == 0)
			pcie_in_roster(h, body);
		break;
	case PCIE_REC_CONNECT:
		pcie_in_connect(n, h, body);
		break;
	case PCIE_REC_ACCEPT:
	case PCIE_REC_REFUSE:
		pthread_mutex_lock(&pcie.lock);
		l = pcie_link_find(h->dst, h->dst_gen);
		if (l && l->state == LINK_CONNECTING && (l->ask >> n & 1)) {
			l->ask &= (uint16_t)~(1u << n);
			if (h->type == PCIE_REC_ACCEPT) {
				l->state = LINK_OPEN;
				l->st = n;
				l->rid = h->src;
				l->rgen = h->src_gen;
			} else if (!l->ask) {
				l->state = LINK_REFUSED; /* every station asked said no */
			}
			pthread_cond_broadcast(&pcie.cond);
		} else if (h->type == PCIE_REC_ACCEPT) {
			reply_close = 1; /* the connector gave up: the acceptor's link goes */
		}
		pthread_mutex_unlock(&pcie.lock);
		if (reply_close)
			pcie_send_simple(n, PCIE_REC_CLOSE, h->src, h->src_gen, 0, 0, NULL, 0);
		break;
	case PCIE_REC_MSG:
		pcie_in_msg(n, h, body);
		break;
	case PCIE_REC_CLOSE:
		pthread_mutex_lock(&pcie.lock);
		l = pcie_link_find(h->dst, h->dst_gen);
		if (l && l->state == LINK_CONNECTING && (l->ask >> n & 1)) {
			l->ask &= (uint16_t)~(1u << n);
			if (!l->ask)
				l->state = LINK_REFUSED;
			pthread_cond_broadcast(&pcie.cond);
		} else if (l && l->state != LINK_CONNECTING && l->st == n) {
			pcie_link_free(l);
			pthread_cond_broadcast(&pcie.cond);
		}
		pthread_mutex_unlock(&pcie.lock);
		break;
	default:
		break; /* unknown: dropped */
	}
}

/*
 * Host: card @n's entry in our slice holds a session other than the one we serve: the card
 * process we knew is gone and the next one on that device is attaching (it zeroes the session
 * before it resets its indices, pcie_attach). Its links hang up; the new process is read from
 * the start once it stored its session. Progress thread.
 */
static void pcie_station_restart(uint16_t n)
{
	scif_info("pcie: station %u: a new process replaced the last one", n);
	pcie_station_down(n, 0);
	pcie_station_up(n);
}

/*
 * Consume ring @n -> self. Every record is copied out before it is checked (the peer may
 * change the aperture under us); a framing error (a length that does not fit) breaks the
 * node: it can no longer be parsed. Progress thread.
 */
static void pcie_qp_recv(uint16_t n)
{
	static uint8_t buf[PCIE_REC_MAX + 8];
	struct pcie_station *nd = &pcie.st[n];
	uint64_t rb = pcie.hdr.ring_bytes;
	const uint8_t *data = pcie_ring(pcie.self, n);
	uint64_t w;

	if (pcie.dev.host && n != pcie.self) {
		/* Acquire pairs with the card's release store of its session (pcie_attach). */
		uint64_t s = scif__load_acquire(&pcie_ctl(pcie.self, n)->session);

		if (nd->session && s != nd->session) {
			pcie_station_restart(n);
			return;
		}
		if (!nd->session) {
			if (!s)
				return; /* the card has not reset its indices yet */
			nd->session = s;
			nd->rd = 0;
			nd->beat_at = scif_fabric_now_ms(); /* its heartbeats count from its attach */
			nd->kbeat = 0;
			nd->kbeat_at = nd->beat_at;
		}
	}
	/* Acquire pairs with the sender's release store of windex (pcie_qp_send). */
	w = scif__load_acquire(&pcie_ctl(pcie.self, n)->windex);

	if (w < nd->rd || w - nd->rd > rb || (w - nd->rd) % 8)
		goto broken;
	while (nd->rd < w) {
		uint64_t pos = nd->rd % rb;
		struct pcie_rec h;
		uint32_t len;

		memcpy(&len, data + pos, sizeof(len));
		if (len < 8 || len % 8 || len > rb - pos || len > w - nd->rd)
			goto broken;
		memcpy(buf, data + pos, len > sizeof(buf) ? 8 : len);
		memcpy(&h, buf, 8);
		if (h.len != len)
			goto broken; /* changed while we copied */
		if (h.type != PCIE_REC_PAD) {
			if (len < sizeof(h) || len > sizeof(buf))
				goto broken;
			memcpy(&h, buf, sizeof(h));
			if (!h.route) {
				pcie_in_rec(n, &h, buf + sizeof(h));
			} else if (pcie.dev.host) {
				pcie_relay(n, &h, buf + sizeof(h));
			} else if (n == 0 && h.route >= 2 && h.route - 1 < pcie.hdr.nnodes &&
				   h.route - 1 != pcie.self &&
				   scif__read_once(&pcie.st[h.route - 1].up)) {
				/* Relayed by the hub: from the station it names. */
				pcie_in_rec((uint16_t)(h.route - 1), &h, buf + sizeof(h));
			} /* else from a station that is gone (or never was): dropped */
			if (!scif__read_once(&nd->up))
				return; /* the node went meanwhile (a callback reset it) */
		}
		nd->rd += len;
		/*
		 * Release pairs with the sender's acquire load of rindex: copied out first. Per
		 * record, so that a sender waiting for room (perhaps the peer's progress thread,
		 * answering us) sees it as soon as there is some.
		 */
		scif__store_release(&pcie_ctl(n, pcie.self)->rindex, nd->rd);
	}
	return;
broken:
	/*
	 * Or a new card process is resetting its indices: then it zeroed its session first
	 * (ordered before the reset, which our acquire load of windex saw).
	 */
	if (pcie.dev.host && n != pcie.self &&
	    scif__read_once(&pcie_ctl(pcie.self, n)->session) != nd->session) {
		pcie_station_restart(n);
		return;
	}
	scif_warn("pcie: station %u's queue pair is corrupt: its links are lost", n);
	pcie_station_wipe(&pcie.dev, n);
	pcie_station_down(n, 1);
}

/* Ring or unpark the own bells the peers marked. Progress thread. */
static void pcie_bells_scan(void)
{
	uint32_t top = scif__read_once(&pcie.bell_top);

	for (uint32_t s = 0; s < top; s++) {
		for (int unpark = 0; unpark < 2; unpark++) {
			uint32_t *w = pcie_bell_word(pcie.self, s, unpark);

			if (!scif__read_once(w) || !scif__atomic_xchg(w, 0))
				continue;
			pthread_mutex_lock(&pcie.lock);
			if (pcie.bell_fd[s]) {
				int fd = pcie.bell_fd[s] - 1;

				if (unpark) {
					scif__fabric_local.drain(fd);
				} else {
					struct scif_bell b = { .fd = fd };

					scif__fabric_local.ring(&b);
				}
			}
			pthread_mutex_unlock(&pcie.lock);
		}
	}
}

/* ---- the progress thread ------------------------------------------------------------------ */

/*
 * Hub: number the cards (PCIE_CARDS_OFF). The stations of one process (the devices of one QEMU
 * guest) are one card. A card keeps the node one of its stations said in its HELLO; one that
 * said node 0 is a host process, no card; the others get the lowest node from 1 that no station
 * said and no card before them has. Stable while nobody comes or goes; a host process that has
 * not said HELLO yet may hold a number for a moment, long before a guest's process reads its
 * own (a guest boots for seconds first). Progress thread, after a station came, went or said
 * HELLO (pcie.renumber): not on every doorbell.
 */
static void pcie_number_cards(void)
{
	uint8_t *tab = pcie.ap + PCIE_CARDS_OFF;
	uint16_t n = (uint16_t)pcie.hdr.nnodes;
	int pid[PCIE_MAX_NODES], num[PCIE_MAX_NODES];
	uint32_t used = 1; /* node 0: the host */

	for (uint16_t s = 1; s < n; s++) {
		pid[s] = pcie.st[s].attached && pcie.dev.ops->peer_group
				 ? pcie.dev.ops->peer_group(&pcie.dev, s) : -1;
		num[s] = -1;
		if (pid[s] > 0 && pcie.st[s].hello && pcie.st[s].node >= 0)
			used |= 1u << pcie.st[s].node;
	}
	for (uint16_t s = 1; s < n; s++) {
		int v = -1;

		if (pid[s] <= 0 || num[s] >= 0)
			continue;
		for (uint16_t t = s; t < n && v < 0; t++)
			if (pid[t] == pid[s] && pcie.st[t].hello && pcie.st[t].node >= 0)
				v = pcie.st[t].node; /* said: a card's node, or 0 (a host process) */
		for (int c = 1; v < 0 && c < n; c++)
			if (!(used >> c & 1)) {
				v = c;
				used |= 1u << c;
			}
		for (uint16_t t = s; t < n; t++)
			if (pid[t] == pid[s])
				num[t] = v > 0 ? v : 0;
	}
	for (uint16_t s = 1; s < n; s++) {
		uint8_t v = (uint8_t)(num[s] > 0 ? num[s] : 0);

		if (scif__read_once(&tab[s]) != v)
			scif__write_once(&tab[s], v);
	}
}

/* Has the peer's heartbeat count, @b now, stayed the same for @limit ms? Progress thread. */
static int pcie_beat_lost(struct pcie_station *nd, uint64_t b, uint64_t now, uint64_t limit)
{
	if (b != nd->beat) {
		nd->beat = b;
		nd->beat_at = now;
		return 0;
	}
	return now - nd->beat_at >= limit;
}

/*
 * Host: has card @nd's kernel heartbeat, @kb now, stayed the same for PCIE_KBEAT_LOST_MS? Never
 * for a card that has none (0). Progress thread.
 */
static int pcie_kbeat_lost(struct pcie_station *nd, uint32_t kb, uint64_t now)
{
	if (!kb)
		return 0;
	if (kb != nd->kbeat) {
		nd->kbeat = kb;
		nd->kbeat_at = now;
		return 0;
	}
	return now - nd->kbeat_at >= PCIE_KBEAT_LOST_MS;
}

/*
 * Host: what the cards' entries in our slice say, for each card whose device is connected. A
 * card process that stopped beating is gone (its links hang up; its device may stay, as in a
 * guest whose program died); a session other than the one we serve, or than the one that
 * stopped, is the next card process on that device. Progress thread.
 */
static int pcie_host_watch(uint64_t now)
{
	int arrived = 0;

	for (uint16_t n = 1; n < pcie.hdr.nnodes; n++) {
		struct pcie_station *nd = &pcie.st[n];
		uint64_t s;

		if (!nd->attached)
			continue;
		/* Acquire pairs with the card's release store of its session (pcie_attach). */
		s = scif__load_acquire(&pcie_ctl(pcie.self, n)->session);
		if (!nd->up) {
			if (s && s != nd->gone) {
				nd->gone = 0;
				pcie_station_up(n);
				arrived = 1;
			}
			continue;
		}
		if (!nd->session)
			continue; /* not adopted yet (pcie_qp_recv) */
		if (s != nd->session) {
			pcie_station_restart(n);
			arrived = 1;
		} else if (scif__read_once(&pcie_ctl(pcie.self, n)->bye) == (uint32_t)s) {
			scif_info("pcie: station %u's process has ended (its last will)", n);
			nd->gone = s;
			pcie_station_down(n, 0);
		} else if (pcie_kbeat_lost(nd, scif__read_once(&pcie_ctl(pcie.self, n)->kbeat),
					   now)) {
			scif_info("pcie: station %u's OS stopped (its kernel's heartbeat)", n);
			nd->gone = s;
			pcie_station_down(n, 0);
		} else if (pcie_beat_lost(nd, scif__read_once(&pcie_ctl(pcie.self, n)->beat), now,
					  PCIE_CARD_LOST_MS)) {
			scif_info("pcie: station %u's heartbeat stopped", n);
			nd->gone = s;
			pcie_station_down(n, 0);
		}
	}
	return arrived;
}

/*
 * The heartbeat (pcie_peer_ctl.beat), from the progress thread. Every process advances its
 * count in the entry it owns in each peer's slice every PCIE_BEAT_MS: the host in each card's
 * slice, a card in the host's. A count that stopped for PCIE_BEAT_LOST_MS is a process gone:
 * the host watches every card (a card's program may die in a guest that stays), a blind card
 * (pcie_dev.blind) its host. Returns how long the thread may sleep before it is due (ms): 0
 * when a card process arrived, whose ring the thread reads at once.
 */
static int pcie_heartbeat(void)
{
	static uint64_t due, count;
	uint64_t now = scif_fabric_now_ms();
	int peers = 0;

	if (pcie.dev.host) {
		if (pcie_host_watch(now))
			return 0;
	} else if (pcie.dev.blind && scif__read_once(&pcie.st[0].up) &&
		 pcie_beat_lost(&pcie.st[0], scif__read_once(&pcie_ctl(pcie.self, 0)->beat),
				now, PCIE_BEAT_LOST_MS)) {
		scif_info("pcie: the host's heartbeat stopped");
		pcie_station_down(0, 0);
	}
	if (pcie.dev.host) {
		for (uint16_t n = 1; n < pcie.hdr.nnodes; n++)
			peers += pcie.st[n].attached || scif__read_once(&pcie.st[n].up);
	} else {
		peers = scif__read_once(&pcie.st[0].up);
	}
	if (!peers)
		return 1000; /* nobody to beat for or to watch: an arrival wakes us */
	if (now >= due) {
		count++;
		if (pcie.dev.host) {
			for (uint16_t n = 1; n < pcie.hdr.nnodes; n++)
				if (scif__read_once(&pcie.st[n].up))
					scif__write_once(&pcie_ctl(n, pcie.self)->beat, count);
		} else if (scif__read_once(&pcie.st[0].up)) {
			scif__write_once(&pcie_ctl(0, pcie.self)->beat, count);
		}
		due = now + PCIE_BEAT_MS;
	}
	return (int)(due - now);
}

static void *pcie_progress(void *arg)
{
	struct pollfd *p = NULL;
	uint64_t *pid = NULL; /* per pollfd: a link's index | gen << 32, or a listener's index */
	size_t cap = 0;

	(void)arg;
	for (;;) {
		size_t n = 0, need;
		int devn, timeout;

		/* Work first: doorbells are consumed before the rings are read (no lost wake-up). */
		uint64_t junk;

		while (read(pcie.wake, &junk, sizeof(junk)) == (ssize_t)sizeof(junk))
			;
		pcie.dev.ops->handle(&pcie.dev, pcie_dev_event, NULL);
		for (uint16_t i = 0; i < pcie.hdr.nnodes; i++)
			if (pcie_direct(i) && scif__read_once(&pcie.st[i].up))
				pcie_qp_recv(i);
		if (pcie.dev.host && pcie.renumber) {
			pcie.renumber = 0;
			pcie_number_cards();
		}
		pcie_bells_scan();
		timeout = pcie_heartbeat();

		pthread_mutex_lock(&pcie.lock);
		need = 1 + 8 + pcie.nlinks + (size_t)pcie.nlis;
		if (need > cap) {
			struct pollfd *np = realloc(p, need * sizeof(*p));
			uint64_t *ni = np ? realloc(pid, need * sizeof(*ni)) : NULL;

			if (np)
				p = np;
			if (ni)
				pid = ni;
			if (!np || !ni) {
				pthread_mutex_unlock(&pcie.lock);
				usleep(10000);
				continue;
			}
			cap = need;
		}
		p[n++] = (struct pollfd){ .fd = pcie.wake, .events = POLLIN };
		{
			int fds[8];

			devn = pcie.dev.ops->pollfds(&pcie.dev, fds, 8);
			for (int i = 0; i < devn; i++)
				p[n++] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		}
		for (uint32_t i = 0; i < pcie.nlinks; i++)
			if (pcie.links[i].state != LINK_FREE && pcie.links[i].tfd >= 0) {
				pid[n] = i | (uint64_t)pcie.links[i].gen << 32;
				p[n++] = (struct pollfd){ .fd = pcie.links[i].tfd, .events = 0 };
			}
		size_t first_lis = n;

		for (int i = 0; i < pcie.nlis; i++) {
			pid[n] = (uint32_t)i;
			p[n++] = (struct pollfd){ .fd = pcie.lis[i].tfd, .events = 0 };
		}
		pthread_mutex_unlock(&pcie.lock);

		/*
		 * At most 1 s, a safety net: a lost doorbell costs latency, never a hang. Less
		 * while the heartbeat is due (a host with cards, a blind card).
		 */
		if (poll(p, n, timeout) <= 0)
			continue;

		/* The core closed its end of links or listeners: tell the peers, forget them. */
		pthread_mutex_lock(&pcie.lock);
		for (size_t i = (size_t)devn + 1; i < first_lis; i++) {
			struct pcie_link *l = &pcie.links[(uint32_t)pid[i]];

			if (!(p[i].revents & (POLLHUP | POLLERR)) || l->tfd != p[i].fd ||
			    l->gen != (uint32_t)(pid[i] >> 32))
				continue;
			if (l->state == LINK_OPEN) {
				uint16_t node = l->st;
				uint32_t rid = l->rid, rgen = l->rgen;

				pcie_link_free(l);
				pthread_mutex_unlock(&pcie.lock);
				pcie_send_simple(node, PCIE_REC_CLOSE, rid, rgen, 0, 0, NULL, 0);
				pthread_mutex_lock(&pcie.lock);
			}
		}
		for (size_t i = n; i-- > first_lis;) {
			int k = (int)pid[i];

			if ((p[i].revents & (POLLHUP | POLLERR)) && k < pcie.nlis &&
			    pcie.lis[k].tfd == p[i].fd)
				pcie_listener_drop(k);
		}
		pthread_mutex_unlock(&pcie.lock);
	}
	return NULL;
}

/*
 * In a fork child: the locks as new (another thread may have held one at the fork), and no
 * queue pair writes from now on. Endpoints of a process that forked stay with the parent on
 * this fabric, as on the ofi fabric.
 */
static void pcie_atfork_child(void)
{
	pthread_mutex_init(&pcie.lock, NULL);
	pthread_cond_init(&pcie.cond, NULL);
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		pthread_mutex_init(&pcie.st[i].tx, NULL);
	scif__write_once(&pcie.forked, 1);
}

/* A nonzero number that differs from one attach to the next. */
static uint64_t pcie_session(void)
{
	uint64_t s = 0;

	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
		s = (uint64_t)getpid() << 32 ^ scif_fabric_now_ms();
	return (uint32_t)s ? s : s | 1; /* its low half is the last will's word (pcie_peer_ctl.bye) */
}

/*
 * Card: have the device tell the host when this process ends, however it ends (a kill
 * included): the low half of @session in our entry's @bye, then a doorbell (pcie_peer_ctl).
 * Without it (an ivshmem client needs none: the server sees its socket close; a shim module
 * without the will), the host learns it from our heartbeat, PCIE_CARD_LOST_MS later.
 */
static void pcie_will(uint64_t session)
{
	struct pcie_peer_ctl *c = pcie_ctl(0, pcie.self);
	int ret = -ENOTSUP;

	if (pcie.dev.ops->will)
		ret = pcie.dev.ops->will(&pcie.dev, (uint64_t)((uint8_t *)&c->bye - pcie.ap),
					 (uint32_t)session);
	if (ret && pcie.dev.blind)
		scif_info("pcie: no last will (%d): the host will learn of our end by the heartbeat",
			  ret);
	/* And our kernel's heartbeat, which tells the host when our OS stops (pcie_peer_ctl). */
	ret = -ENOTSUP;
	if (pcie.dev.ops->kbeat)
		ret = pcie.dev.ops->kbeat(&pcie.dev, (uint64_t)((uint8_t *)&c->kbeat - pcie.ap),
					  PCIE_KBEAT_MS);
	if (ret && pcie.dev.blind)
		scif_info("pcie: no kernel heartbeat (%d)", ret);
}

/*
 * SCIF_PCIE_BOOT_MS: how long the host's attach waits for its cards (every node of the
 * aperture) to attach and say HELLO, as a host driver waits for its cards to boot; 0 (the
 * default) does not wait. Under pcie.lock.
 */
static void pcie_boot_wait(void)
{
	const char *v = getenv("SCIF_PCIE_BOOT_MS");
	long ms = v && *v ? strtol(v, NULL, 10) : 0;
	uint64_t until = scif_fabric_now_ms() + (uint64_t)(ms > 0 && ms < 600000 ? ms : 0);

	for (;;) {
		uint16_t n = 1;

		while (n < pcie.hdr.nnodes && pcie.st[n].hello)
			n++;
		if (n == pcie.hdr.nnodes || scif_fabric_now_ms() >= until)
			return;
		pcie_tick();
	}
}

/* ---- attach ---------------------------------------------------------------------------------- */

/*
 * A card in a guest: the node the host numbered our card (PCIE_CARDS_OFF), read once at attach;
 * waited for a moment (the hub numbers a card as it connects, its guest then boots), else
 * @fallback.
 */
static uint16_t pcie_card_number(uint16_t fallback)
{
	uint64_t until = scif_fabric_now_ms() + 3000;
	const uint8_t *v = pcie.ap + PCIE_CARDS_OFF + pcie.self;

	while (!scif__read_once(v) && scif_fabric_now_ms() < until)
		usleep(10000);
	return scif__read_once(v) ? scif__read_once(v) : fallback;
}

/* Is the environment variable @name set to 1? */
static int pcie_env_flag(const char *name)
{
	const char *v = getenv(name);

	return v && !strcmp(v, "1");
}

static int pcie_attach(struct scif_fabric *fab)
{
	const char *node = getenv("SCIF_NODE");
	const char *shim = getenv("SCIF_PCIE_DEV");
	unsigned long want = 0;
	uint64_t session;
	int ret = 0;

	pthread_mutex_lock(&pcie.lock);
	if (pcie.ready)
		goto done;
	if (node && *node) {
		char *end;

		errno = 0;
		want = strtoul(node, &end, 10);
		if (errno || *end || want >= PCIE_MAX_NODES) {
			ret = -ENXIO;
			goto out;
		}
	}
	if (scif__local_names(fab)) {
		ret = -ENXIO;
		goto out;
	}
	if (shim && *shim)
		pcie.dev.ops = &scif__pcie_dev_shim;
	else if (!want)
		pcie.dev.ops = &scif__pcie_dev_host;
	else
		pcie.dev.ops = &scif__pcie_dev_client;
	pcie.dev.fd = -1;
	pcie.dev.node = (uint16_t)want;
	pcie.dev.departed = pcie_station_wipe;
	ret = pcie.dev.ops->open(&pcie.dev, pcie_host_ready);
	if (ret == -EADDRINUSE && pcie.dev.ops == &scif__pcie_dev_host &&
	    !pcie_env_flag("SCIF_PCIE_SERVE")) {
		/* Another host process serves the aperture: we are another station of node 0. */
		pcie.dev.ops = &scif__pcie_dev_client;
		ret = pcie.dev.ops->open(&pcie.dev, pcie_host_ready);
	}
	if (ret) {
		scif_info("pcie: %s device: %d", pcie.dev.ops->name, ret);
		ret = -ENXIO;
		goto out;
	}
	pcie.self = pcie.dev.self;
	pcie.node = pcie.dev.node;
	if (!pcie.dev.host) {
		/* The one read across the bus: the host's header, once, checked. */
		ret = pcie.dev.size < PCIE_PAGE ? -EPROTO : pcie_map(&pcie.dev);
		if (!ret) {
			memcpy(&pcie.hdr, pcie.ap, sizeof(pcie.hdr));
			ret = pcie_check_hdr(&pcie.hdr, pcie.dev.size, pcie.self);
		}
		if (!ret && pcie.dev.blind && !want)
			pcie.node = pcie_card_number(pcie.node);
		if (!ret && pcie.node >= pcie.hdr.nnodes)
			ret = -ERANGE;
		if (ret) {
			scif_info("pcie: the aperture's header is not valid for station %u, node %u",
				  pcie.self, pcie.node);
			goto fail;
		}
		/* Our slice, below the heap, is ours to reset: nobody writes it before HELLO. */
		memset(pcie_slice(pcie.self), 0, pcie.hdr.heap_off);
		/*
		 * A card process before us on this device may have left its session in the host's
		 * slice: zero it before the indices, so that a host that sees them reset also sees
		 * the session change (release fence: the store before the memset's).
		 */
		scif__write_once(&pcie_ctl(0, pcie.self)->session, 0);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		for (uint16_t m = 0; m < pcie.hdr.nnodes; m++)
			if (m != pcie.self)
				memset(pcie_ctl(m, pcie.self), 0, sizeof(struct pcie_peer_ctl));
		/* Release pairs with the host's acquire load: the indices are reset before. */
		session = pcie_session();
		scif__store_release(&pcie_ctl(0, pcie.self)->session, session);
		pcie_will(session);
	}
	pcie.heap_pages = (uint32_t)((pcie.hdr.slice_size - pcie.hdr.heap_off) / PCIE_PAGE);
	pcie.heap_used = calloc(pcie.heap_pages, 1);
	pcie.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!pcie.heap_used || pcie.wake < 0) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		pthread_mutex_init(&pcie.st[i].tx, NULL);
	pcie.fab = fab;
	fab->self = pcie.node;
	fab->max_node = (uint16_t)(pcie.hdr.nnodes - 1);
	for (uint16_t s = 0; s < PCIE_MAX_NODES; s++)
		pcie.st[s].node = -1;
	/* Our own station: a connection within this process goes through ring self -> self. */
	pcie.st[pcie.self].up = 1;
	pcie.st[pcie.self].hello = 1;
	pcie.st[pcie.self].node = pcie.node;
	if (!pcie.dev.host) {
		pcie.st[0].up = 1;
		pcie.st[0].hello = 1;
		pcie.st[0].node = 0;
		pcie.st[0].beat_at = scif_fabric_now_ms(); /* the host's count: from now on */
	}
	pcie_online_locked();
	{
		sigset_t all, old;

		/* The thread takes no signals of the application's. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		ret = -pthread_create(&pcie.thread, NULL, pcie_progress, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (ret)
		goto fail;
	pthread_detach(pcie.thread);
	pthread_atfork(NULL, NULL, pcie_atfork_child);
	if (!pcie.dev.host) {
		/*
		 * If this fails, the host went away meanwhile: we are attached all the same (the
		 * thread runs), with the host offline, as after any later departure.
		 */
		struct pcie_hello hl = { .node = pcie.node };

		pthread_mutex_unlock(&pcie.lock);
		if (pcie_send_simple(0, PCIE_REC_HELLO, 0, 0, 0, 0, &hl, sizeof(hl)))
			scif_info("pcie: the host did not take our HELLO");
		pthread_mutex_lock(&pcie.lock);
	}
	if (pcie.dev.host)
		pcie_boot_wait();
	pcie.ready = 1;
	scif_info("pcie: station %u (node %u) attached (%s), %u stations", pcie.self, pcie.node,
		  pcie.dev.ops->name, pcie.hdr.nnodes);
	goto done;
fail:
	pcie.dev.ops->close(&pcie.dev);
	if (pcie.ap)
		munmap(pcie.ap, pcie.dev.size);
	pcie.ap = NULL;
	if (pcie.dev.fd >= 0)
		close(pcie.dev.fd);
	pcie.dev.fd = -1;
	free(pcie.heap_used);
	pcie.heap_used = NULL;
	if (pcie.wake >= 0)
		close(pcie.wake);
	pcie.wake = -1;
	ret = -ENXIO;
	goto out;
done:
	fab->self = pcie.node;
	fab->max_node = (uint16_t)(pcie.hdr.nnodes - 1);
	ret = 0;
out:
	pthread_mutex_unlock(&pcie.lock);
	return ret;
}

/* ---- ports and links ops ------------------------------------------------------------------ */

static int pcie_port_reserve(struct scif_fabric *fab, uint16_t port)
{
	return scif__fabric_local.port_reserve(fab, port);
}

static int pcie_listen(struct scif_fabric *fab, uint16_t port, int backlog)
{
	int sv[2], ret;

	(void)fab;
	ret = pcie_socketpair(sv);
	if (ret)
		return ret;
	pthread_mutex_lock(&pcie.lock);
	/* A listener whose descriptor number or port is taken again was closed already. */
	for (int i = pcie.nlis - 1; i >= 0; i--)
		if (pcie.lis[i].ufd == sv[0] || pcie.lis[i].port == port)
			pcie_listener_drop(i);
	if (pcie.nlis == pcie.cap_lis) {
		int n = pcie.cap_lis ? pcie.cap_lis * 2 : 8;
		struct pcie_listener *p = realloc(pcie.lis, (size_t)n * sizeof(*p));

		if (!p) {
			pthread_mutex_unlock(&pcie.lock);
			close(sv[0]);
			close(sv[1]);
			return -ENOMEM;
		}
		pcie.lis = p;
		pcie.cap_lis = n;
	}
	pcie.lis[pcie.nlis++] = (struct pcie_listener){ .ufd = sv[0], .tfd = sv[1], .port = port,
							 .backlog = backlog };
	pthread_mutex_unlock(&pcie.lock);
	pcie_wake();
	return sv[0];
}

static int pcie_relisten(int lfd, int backlog)
{
	pthread_mutex_lock(&pcie.lock);
	for (int i = 0; i < pcie.nlis; i++)
		if (pcie.lis[i].ufd == lfd)
			pcie.lis[i].backlog = backlog;
	pthread_mutex_unlock(&pcie.lock);
	return 0;
}

/* Under pcie.lock: the stations that serve @node and take records (one bit each). */
static uint16_t pcie_stations_of(uint16_t node)
{
	uint16_t bits = 0;

	for (uint16_t s = 0; s < pcie.hdr.nnodes; s++)
		if (pcie.st[s].up && pcie.st[s].hello && pcie.st[s].node == node)
			bits |= (uint16_t)(1u << s);
	return bits;
}

/* Under pcie.lock: hub: is a station attached that has not said HELLO (its node unknown)? */
static int pcie_unannounced(void)
{
	for (uint16_t s = 1; pcie.dev.host && s < pcie.hdr.nnodes; s++)
		if (pcie.st[s].up && !pcie.st[s].hello)
			return 1;
	return 0;
}

/*
 * Ports are held per node in each OS instance (pcie_port_reserve), so at most one station of
 * the node listens on a port: every station of the node is asked, the one that listens
 * accepts, the others refuse. Refused when all refused, or none answered in PCIE_CONNECT_MS.
 */
static int pcie_connect(struct scif_fabric *fab, int holder, const struct scif_portID *dst)
{
	struct pcie_connect c = { .port = dst->port };
	uint64_t until = scif_fabric_now_ms() + PCIE_CONNECT_MS;
	struct pcie_link *l;
	uint16_t ask = 0;
	uint32_t id, gen;
	int sv[2], ret;

	(void)fab;
	(void)holder;
	if (dst->node >= pcie.hdr.nnodes)
		return -ECONNREFUSED;
	ret = pcie_socketpair(sv);
	if (ret)
		return -ENOMEM;
	pthread_mutex_lock(&pcie.lock);
	/* A station that attached but has not said HELLO yet may be the one: a moment for it. */
	while (!(ask = pcie_stations_of(dst->node)) && pcie_unannounced() &&
	       scif_fabric_now_ms() < until)
		pcie_tick();
	l = ask ? pcie_link_new(0, LINK_CONNECTING, sv[1]) : NULL;
	if (!l) {
		ret = ask ? -ENOMEM : -ECONNREFUSED;
		pthread_mutex_unlock(&pcie.lock);
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	l->ask = ask;
	id = pcie_link_id(l);
	gen = l->gen;
	pthread_mutex_unlock(&pcie.lock);
	for (uint16_t s = 0; s < pcie.hdr.nnodes; s++) {
		if (!(ask >> s & 1) ||
		    !pcie_send_simple(s, PCIE_REC_CONNECT, 0, 0, id, gen, &c, sizeof(c)))
			continue;
		pthread_mutex_lock(&pcie.lock); /* not asked after all: as refused */
		l = &pcie.links[id];
		if (l->gen == gen && l->state == LINK_CONNECTING) {
			l->ask &= (uint16_t)~(1u << s);
			if (!l->ask)
				l->state = LINK_REFUSED;
		}
		pthread_mutex_unlock(&pcie.lock);
	}
	pthread_mutex_lock(&pcie.lock);
	l = &pcie.links[id]; /* the table may have moved */
	while (l->state == LINK_CONNECTING && scif_fabric_now_ms() < until) {
		pcie_tick();
		l = &pcie.links[id];
	}
	if (l->state == LINK_OPEN && !pcie_byfd_set(sv[0], l)) {
		pthread_mutex_unlock(&pcie.lock);
		pcie_wake(); /* poll the new link's end */
		return sv[0];
	}
	if (l->state == LINK_OPEN) { /* accepted, but we cannot keep it: tell the acceptor */
		uint16_t st = l->st;
		uint32_t rid = l->rid, rgen = l->rgen;

		pcie_link_free(l);
		pthread_mutex_unlock(&pcie.lock);
		pcie_send_simple(st, PCIE_REC_CLOSE, rid, rgen, 0, 0, NULL, 0);
		close(sv[0]);
		return -ECONNREFUSED;
	}
	pcie_link_free(l); /* a late ACCEPT finds no link and closes the acceptor's */
	pthread_mutex_unlock(&pcie.lock);
	close(sv[0]);
	return -ECONNREFUSED;
}

static int pcie_accept(struct scif_fabric *fab, int lfd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct pcie_pass pass;
	struct iovec iov = { &pass, sizeof(pass) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm;
	struct pcie_link *l;
	ssize_t n;
	int fd = -1;

	(void)fab;
	do
		n = recvmsg(lfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	cm = CMSG_FIRSTHDR(&mh);
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
	    cm->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd < 0 || n != (ssize_t)sizeof(pass) || (mh.msg_flags & MSG_CTRUNC)) {
		if (fd >= 0)
			close(fd);
		return -ECONNABORTED;
	}
	pthread_mutex_lock(&pcie.lock);
	for (int i = 0; i < pcie.nlis; i++)
		if (pcie.lis[i].ufd == lfd && pcie.lis[i].pending > 0)
			pcie.lis[i].pending--;
	l = pcie_link_find(pass.id, pass.gen);
	/* A link the peer closed already stays hung up: the core sees that. */
	if (l && pcie_byfd_set(fd, l)) {
		pthread_mutex_unlock(&pcie.lock);
		close(fd);
		return -ENOMEM;
	}
	if (!l)
		pcie_byfd_set(fd, NULL);
	pthread_mutex_unlock(&pcie.lock);
	return fd;
}

/* The aperture is the boundary: whoever reaches it may talk (docs/pcie-fabric.md). */
static int pcie_peer_allowed(struct scif_fabric *fab, int link)
{
	(void)fab;
	(void)link;
	return 0;
}

static int pcie_link_send(int link, const void *msg, size_t len, const struct scif_fh *fh,
			  int nfh)
{
	struct pcie_fh_wire fw[SCIF_LINK_MAX_FH];
	struct pcie_rec h = { .type = PCIE_REC_MSG };
	struct pcie_link *l;
	uint16_t st;

	if (nfh < 0 || nfh > SCIF_LINK_MAX_FH || len > PCIE_MSG_MAX)
		return -EINVAL;
	for (int i = 0; i < nfh; i++) {
		if (fh[i].kind < PCIE_FH_REGION || fh[i].kind > PCIE_FH_MEM)
			return -EINVAL;
		fw[i] = (struct pcie_fh_wire){ .kind = fh[i].kind };
		memcpy(fw[i].word, fh[i].word, sizeof(fw[i].word));
	}
	pthread_mutex_lock(&pcie.lock);
	l = pcie_byfd(link);
	if (!l || l->state != LINK_OPEN) {
		pthread_mutex_unlock(&pcie.lock);
		return -ECONNRESET;
	}
	st = l->st;
	h.dst = l->rid;
	h.dst_gen = l->rgen;
	h.src = pcie_link_id(l);
	h.src_gen = l->gen;
	h.msglen = (uint32_t)len;
	pthread_mutex_unlock(&pcie.lock);
	return pcie_qp_send(st, &h, msg, fw, nfh, PCIE_SEND_MS);
}

static int pcie_link_recv(int link, void *msg, size_t len, struct scif_fh *fh, int *nfh)
{
	uint8_t dg[8 + SCIF_LINK_MAX_FH * sizeof(struct pcie_fh_wire) + PCIE_MSG_MAX];
	uint32_t hd[2];
	ssize_t n;
	size_t flen;

	do
		n = recv(link, dg, sizeof(dg), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (nfh && n <= 0)
		*nfh = 0;
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	/* Our own progress thread wrote it, from checked input: still, check the framing. */
	if ((size_t)n < sizeof(hd))
		return -EPROTO;
	memcpy(hd, dg, sizeof(hd));
	flen = (size_t)hd[0] * sizeof(struct pcie_fh_wire);
	if (hd[0] > SCIF_LINK_MAX_FH || (size_t)n != 8 + flen + hd[1] || hd[1] > len ||
	    (hd[0] && (!fh || !nfh || (int)hd[0] > *nfh))) {
		if (nfh)
			*nfh = 0;
		return -EPROTO;
	}
	for (uint32_t i = 0; i < hd[0]; i++) {
		struct pcie_fh_wire w;

		memcpy(&w, dg + 8 + i * sizeof(w), sizeof(w));
		fh[i] = (struct scif_fh){ .fd = -1, .kind = w.kind };
		memcpy(fh[i].word, w.word, sizeof(fh[i].word));
	}
	if (nfh)
		*nfh = (int)hd[0];
	memcpy(msg, dg + 8 + flen, hd[1]);
	return (int)hd[1];
}

/* ---- regions ------------------------------------------------------------------------------- */

/* A received handle of @kind from another node: that node, or -1. */
static int pcie_fh_node(const struct scif_fh *fh, uint32_t kind)
{
	uint32_t n = fh->kind >> PCIE_FH_NODE_SHIFT;

	if (fh->fd >= 0 || (fh->kind & ((1u << PCIE_FH_NODE_SHIFT) - 1)) != kind ||
	    n >= pcie.hdr.nnodes)
		return -1;
	return (int)n;
}

static int pcie_region_create(struct scif_fabric *fab, size_t len, struct scif_region *r)
{
	int64_t first = pcie_heap_alloc(len);

	(void)fab;
	if (first < 0)
		return -ENOMEM;
	r->addr = pcie.ap + pcie_heap_off((uint64_t)first);
	/* Zeroed: the peer's part of a region starts empty (fabric.h). */
	memset(r->addr, 0, len);
	r->len = len;
	r->priv[0] = 1; /* ours */
	r->priv[1] = (uint64_t)first;
	return 0;
}

static void pcie_region_export(const struct scif_region *r, struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = -1, .kind = PCIE_FH_REGION,
				.word = { (uint64_t)((uint8_t *)r->addr - pcie.ap), r->len } };
}

static int pcie_region_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len,
			      struct scif_region *r)
{
	int n = pcie_fh_node(fh, PCIE_FH_REGION);

	(void)fab;
	if (n < 0 || fh->word[1] != len || fh->word[2] || !pcie_in_heap((uint16_t)n, fh->word[0], len))
		return -EPROTO;
	r->addr = pcie.ap + fh->word[0];
	r->len = len;
	r->priv[0] = 0; /* the peer's */
	return 0;
}

static void pcie_region_destroy(struct scif_region *r)
{
	if (!r->addr)
		return;
	if (r->priv[0])
		pcie_heap_free(r->priv[1], r->len);
	r->addr = NULL;
	r->priv[0] = 0;
}

/* ---- bells --------------------------------------------------------------------------------- */

static int pcie_bell_create(struct scif_fabric *fab, int *user, struct scif_bell *own)
{
	uint32_t s;
	int ret = scif__fabric_local.bell_create(fab, user, own);

	if (ret)
		return ret;
	pthread_mutex_lock(&pcie.lock);
	for (s = 0; s < PCIE_NBELLS && pcie.bell_fd[s]; s++)
		;
	if (s == PCIE_NBELLS) {
		pthread_mutex_unlock(&pcie.lock);
		scif__fabric_local.bell_close(own);
		close(*user);
		*user = -1;
		return -ENOMEM;
	}
	pcie.bell_fd[s] = own->fd + 1;
	scif__write_once(pcie_bell_word(pcie.self, s, 0), 0);
	scif__write_once(pcie_bell_word(pcie.self, s, 1), 0);
	if (s + 1 > pcie.bell_top)
		scif__write_once(&pcie.bell_top, s + 1);
	pthread_mutex_unlock(&pcie.lock);
	own->priv32 = s;
	own->priv = 1; /* own */
	return 0;
}

static void pcie_bell_export(const struct scif_bell *own, struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = -1, .kind = PCIE_FH_BELL, .word = { own->priv32 } };
}

static int pcie_bell_import(struct scif_fabric *fab, struct scif_fh *fh, struct scif_bell *peer)
{
	int n = pcie_fh_node(fh, PCIE_FH_BELL);

	(void)fab;
	if (n < 0 || fh->word[0] >= PCIE_NBELLS || fh->word[1] || fh->word[2])
		return -EPROTO;
	*peer = (struct scif_bell){ .fd = -1, .priv32 = (uint32_t)n, .priv = fh->word[0] };
	return 0;
}

/* Set a bell word in the peer's slice, then its doorbell (a syscall: a full barrier). */
static int pcie_ring_word(const struct scif_bell *b, int unpark)
{
	scif__store_release(pcie_bell_word((uint16_t)b->priv32, (uint32_t)b->priv, unpark), 1);
	return pcie_kick((uint16_t)b->priv32) < 0 ? -ECONNRESET : 0;
}

static int pcie_ring_bell(const struct scif_bell *b)
{
	if (b->fd >= 0)
		return scif__fabric_local.ring(b);
	return pcie_ring_word(b, 0);
}

static int pcie_drain(int fd)
{
	return scif__fabric_local.drain(fd);
}

static int pcie_unpark(const struct scif_bell *peer)
{
	return pcie_ring_word(peer, 1);
}

static void pcie_bell_close(struct scif_bell *b)
{
	if (b->fd >= 0 && b->priv == 1) {
		pthread_mutex_lock(&pcie.lock);
		if (b->priv32 < PCIE_NBELLS && pcie.bell_fd[b->priv32] == b->fd + 1)
			pcie.bell_fd[b->priv32] = 0;
		pthread_mutex_unlock(&pcie.lock);
	}
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	b->priv = 0;
}

/* ---- window memory -------------------------------------------------------------------------- */

static int pcie_mem_alloc(struct scif_fabric *fab, size_t len, unsigned int page_shift,
			  struct scif_mem *m)
{
	int64_t first;
	int fd;

	(void)fab;
	(void)page_shift; /* the aperture has its own pages: huge pages are not carried over */
	first = pcie_heap_alloc(len);
	if (first < 0)
		return -ENOMEM;
	fd = fcntl(pcie.dev.fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		pcie_heap_free((uint64_t)first, len);
		return -ENOMEM;
	}
	*m = (struct scif_mem){ .fd = fd, .off = (off_t)(pcie.dev.map_off + pcie_heap_off((uint64_t)first)),
				.len = len, .priv = { 1, (uint64_t)first } };
	return 0;
}

static void pcie_mem_export(const struct scif_mem *m, off_t off, size_t len, int prot,
			    struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = -1, .kind = PCIE_FH_MEM,
				.word = { (uint64_t)(m->off + off) - pcie.dev.map_off, len,
					  (uint64_t)prot } };
}

static int pcie_mem_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len, int prot,
			   struct scif_mem *m)
{
	int n = pcie_fh_node(fh, PCIE_FH_MEM);
	void *p;

	(void)fab;
	if (n < 0 || !len || fh->word[1] < len ||
	    !pcie_in_heap((uint16_t)n, fh->word[0], len))
		return -EINVAL;
	p = mmap(NULL, len, prot, MAP_SHARED, pcie.dev.fd, (off_t)(pcie.dev.map_off + fh->word[0]));
	if (p == MAP_FAILED)
		return -ENOMEM;
	/*
	 * scif_mmap maps the device again rather than remapping @p: a shim's BAR is a PFN map,
	 * which mremap cannot grow from nothing. The descriptor is lent (priv[0] 2), not ours
	 * to close.
	 */
	*m = (struct scif_mem){ .fd = pcie.dev.fd, .off = (off_t)(pcie.dev.map_off + fh->word[0]),
				.len = len, .addr = p, .priv = { 2 } };
	return 0;
}

static void pcie_mem_free(struct scif_mem *m)
{
	if (m->addr)
		munmap(m->addr, m->len);
	if (m->fd >= 0 && m->priv[0] != 2)
		close(m->fd);
	if (m->priv[0] == 1)
		pcie_heap_free(m->priv[1], m->len);
	m->addr = NULL;
	m->fd = -1;
	m->priv[0] = 0;
}

const struct scif_fabric_ops scif__fabric_pcie = {
	.size = sizeof(struct scif_fabric_ops),
	.name = "pcie",
	.attach = pcie_attach,
	.port_reserve = pcie_port_reserve,
	.listen = pcie_listen,
	.connect = pcie_connect,
	.accept = pcie_accept,
	.relisten = pcie_relisten,
	.peer_allowed = pcie_peer_allowed,
	.link_send = pcie_link_send,
	.link_recv = pcie_link_recv,
	.region_create = pcie_region_create,
	.region_export = pcie_region_export,
	.region_import = pcie_region_import,
	.region_destroy = pcie_region_destroy,
	.bell_create = pcie_bell_create,
	.bell_export = pcie_bell_export,
	.bell_import = pcie_bell_import,
	.ring = pcie_ring_bell,
	.drain = pcie_drain,
	.unpark = pcie_unpark,
	.bell_close = pcie_bell_close,
	.mem_alloc = pcie_mem_alloc,
	.mem_export = pcie_mem_export,
	.mem_import = pcie_mem_import,
	.mem_free = pcie_mem_free,
};
