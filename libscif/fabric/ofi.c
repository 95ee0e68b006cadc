// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fabric/ofi.c - SCIF nodes on different hosts (or network namespaces), joined by libfabric.
 *
 * Where things live:
 *   nodes     a cluster file (SCIF_NODES_FILE): "<node> <IPv4 address>" per line. Node N's
 *             processes run where N's address is local; SCIF_NODE says which node we are.
 *   ports     held as on the local fabric (a locked file per node and port, so only the trust
 *             domain's processes of this host can take one); SCIF port P of node N is TCP
 *             port P on N's address, where a listening endpoint listens.
 *   links     TCP connections between the two endpoints' processes, carrying framed control
 *             messages (ofi_frame below). Their hang-up is the peer's death; keepalive and
 *             TCP_USER_TIMEOUT bound how long an unreachable peer takes to show as one
 *             (OFI_DEAD_MS). Each side first sends a HELLO frame with its libfabric endpoint
 *             name, which this fabric consumes itself: link_recv stamps every handle that
 *             comes over the link with the address of that link's peer, so a handle can
 *             never name another process's endpoint.
 *   regions   each side's region is memory registered for remote writes; the peer imports it
 *             as a *shadow* (local memory of the same size): the core writes the shadow and
 *             calls region_flush, which carries the bytes over, in order (the provider must
 *             offer FI_ORDER_WAW and FI_ORDER_SAW). Long ranges go as RDMA writes. Short
 *             ones go as a PUT message that the peer's progress places (OFI_OP_PUT below),
 *             and a flush that promises more (SCIF_FLUSH_MORE) waits in the thread's pending
 *             message for the next: a send's data, its index and its doorbell are one
 *             message, which is what a round trip over TCP costs (needs FI_ORDER_WAS too).
 *             A receiver's read index (SCIF_FLUSH_LAZY) is held until something else goes
 *             to the sender's process, and travels with it: with the answer of a
 *             ping-pong, an unpark, or the echo of the sender's fence when it runs short
 *             of room (ofi_inject_locked).
 *   bells     the own bell is the local fabric's socket pair; the peer's bell is a token, and
 *             ringing it is a small message to the peer's process, whose progress thread
 *             rings the socket (OFI_OP_RING, or the ring of a PUT). Unpark is a message too.
 *   windows   memory registered with libfabric; the peer cannot map it (scif_mmap answers
 *             EOPNOTSUPP across the network) and reaches it with RDMA reads and writes.
 *
 * One libfabric RDM endpoint serves the whole process (FI_EP_RDM: "tcp" becomes
 * "tcp;ofi_rxm", "verbs" becomes "verbs;ofi_rxm"). A progress thread waits on its completion
 * queue: it makes the provider place incoming data (manual progress) and handles the small
 * messages. libfabric is loaded when this fabric is chosen (dlopen), so libscif itself does
 * not depend on it.
 *
 * A fork child cannot use the parent's libfabric endpoint: endpoints of a process that
 * forked stay with the parent on this fabric.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "scif.h"
#include "fabric.h"
#include "local.h"
#include "../log.h"

#define OFI_FH_REGION 0x52464f01u /* a region: word 0 remote address, word 1 key */
#define OFI_FH_BELL 0x52464f02u   /* a bell: word 0 its token */
#define OFI_FH_MEM 0x52464f03u    /* window memory: word 0 remote address, word 1 key */

#define OFI_LINK_MAGIC 0x4b4e4c4fu /* "OLNK" */
#define OFI_NOTE_MAGIC 0x45544e4fu /* "ONTE" */
#define OFI_FR_HELLO 1
#define OFI_FR_MSG 2
#define OFI_NAME_MAX 256
#define OFI_MSG_MAX 4096
#define OFI_RX_BUFS 64
#define OFI_NOTE_BYTES 512 /* the longest small message: a PUT with its ranges */
#define OFI_INJECT_WANT 256 /* the inject size asked for: a PUT is always injected */
#define OFI_REG_BUCKETS 256
#define OFI_SEND_STRIPES 32 /* link send locks, by descriptor (ofi_send_frame) */
#define OFI_FENCES 64
#define OFI_CONNECT_MS 3000 /* a TCP connect that takes longer is refused */
#define OFI_FRAME_MS 2000   /* the rest of a frame we began to send must go within this */
#define OFI_DEAD_MS 4000    /* an unreachable peer shows as gone after about this long */
#define OFI_OP_MS 10000     /* a queue that stays full this long means the peer is gone */
#define OFI_GONE_MS 2       /* how often a call kept waiting looks whether its peer is gone */
#define OFI_EXIT_MS 1000    /* what exit() spends making sure the peers got our bytes */
#define OFI_FORGET_MS OFI_OP_MS /* a peer process unused this long leaves the address vector */
#define OFI_RMA_PIECE (1 << 20) /* an RMA goes in pieces of this (ofi_rma_wait) */
#define OFI_RMA_DEPTH 8         /* pieces of one RMA in flight */
#define OFI_LEASE_NS 1000000u   /* a spinning thread progresses for us this long (ofi_park) */

/* One framed control message on a link; the message, then nfh handles, follow it. */
struct ofi_frame {
	uint32_t magic;
	uint16_t type;
	uint16_t nfh;
	uint32_t len;
	uint32_t flags; /* OFI_FR_MORE on a HELLO: a message follows at once */
};
#define OFI_FR_MORE 1u
#define OFI_LINK_OWE (1ULL << 63)

struct ofi_fh_wire {
	uint32_t kind;
	uint32_t pad;
	uint64_t word[3];
};

struct ofi_hello {
	uint32_t node;
	uint32_t namelen;
	uint8_t name[OFI_NAME_MAX];
};

/*
 * A small message between the fabric's processes, handled by the receiver's progress. A PUT
 * is followed by ranges to place in the receiver's regions, in order; with OFI_PUT_RING its
 * @arg is a bell token to ring after. Any other message may carry ranges too (lazy ones,
 * ofi_lazy_fill): they are placed before the message is handled. Ranges, when there are any:
 * the key of the region they are for (8 bytes), then each range (struct ofi_put, then its
 * bytes padded to 8); a range header with @off OFI_PUT_KEY and @len 0 is followed by the key
 * the next ranges are for. A short send's bytes, its index and doorbell count and the ring
 * make 64 bytes, and 80 with a held read index (a ping-pong's answer carries one).
 */
enum { OFI_OP_RING = 1, OFI_OP_UNPARK, OFI_OP_PING, OFI_OP_ECHO, OFI_OP_PUT };
#define OFI_PUT_RING (1u << 16)
struct ofi_note {
	uint32_t magic;
	uint32_t op;
	uint64_t arg;
};

union ofi_msgbuf {
	struct ofi_note n;
	uint64_t align;
	uint8_t b[OFI_NOTE_BYTES];
};

/* One range of a PUT: @len bytes at @off of the region whose key came last. */
struct ofi_put {
	uint32_t off;
	uint32_t len;
};
#define OFI_PUT_KEY UINT32_MAX /* @off of a header that says another key follows */

/* A message being built: @len bytes of @m, whose ranges are for @key (if it has ranges). */
struct ofi_out {
	size_t len;
	size_t last; /* where its last range's header is (0: none yet) */
	uint64_t key;
	union ofi_msgbuf m;
};

/* A PUT being filled by one thread (flushes with SCIF_FLUSH_MORE); @o.len 0: none. */
struct ofi_pending {
	fi_addr_t peer;
	struct ofi_out o;
};

/* One of our regions, which peers write with RDMA or PUTs (r->priv[0]). */
struct ofi_own {
	struct fid_mr *mr;
	uint64_t key;
	uint8_t *addr;
	size_t len;
	struct ofi_own *next; /* in ofi.reg[], under ofi.reg_lock */
};

/*
 * The peer's side of an imported region: where its memory is, and our shadow's MR.
 * A range flushed with SCIF_FLUSH_LAZY is *held*: @lazy_off and @lazy_len say which (set by
 * the flushing thread, the one writer of the consumer's index, before it links the shadow),
 * and the shadow is on ofi.held[@peer], under fi_lock, until a message toward @peer carries
 * it (ofi_lazy_fill takes it off). @lazy says so, set exactly while it is on the list: set and
 * cleared under fi_lock, and read without it by the flushing thread, which pairs "store the
 * range's bytes; mb; load lazy" with the carrier's "clear lazy; mb; read the bytes": either
 * the flusher sees the range still held, and the carrier reads its new bytes, or it sees it
 * gone and holds it again.
 */
struct ofi_shadow {
	struct fid_mr *mr;
	void *desc;
	uint64_t raddr;
	uint64_t key;
	fi_addr_t peer;
	uint8_t *addr; /* the shadow itself */
	struct ofi_shadow *lazy_next;
	uint32_t lazy_off;
	uint32_t lazy_len;
	int lazy;
};

/* An operation whose completion someone waits for (the progress thread reports it). */
struct ofi_op {
	struct fi_context2 ctx; /* first: the completion's op_context points here */
	int done;
	int err;
};

/* A link, by its descriptor (under ofi.lock). */
struct ofi_link {
	uint64_t peer; /* its peer's address + 1 (0: no HELLO yet), and OFI_LINK_OWE while
			* ours is still to be sent */
	ino_t ino;     /* the socket's inode: the core closes links without telling us, so an
			* entry whose descriptor is now another file is stale (ofi_peer_gone) */
	int lowat;     /* SO_RCVLOWAT is raised: a frame has begun to arrive (ofi_link_recv) */
};

/*
 * A peer process's endpoint name and its address in our address vector (under ofi.lock).
 * @refs counts what we imported from it (shadows, its bells, its windows); links to it are
 * counted when asked (ofi_forget_gone): the core closes them without telling us. @idle_since
 * is when a look first found neither (0: in use at the last look).
 */
struct ofi_peer {
	struct ofi_peer *next;
	fi_addr_t addr;
	uint64_t refs;
	uint64_t idle_since;
	int linked; /* ofi_forget_gone's mark */
	uint32_t namelen;
	uint8_t name[OFI_NAME_MAX];
};

struct ofi_bell_slot {
	int fd;       /* the own bell's descriptor, or -1 if the slot is free */
	uint32_t gen; /* bumped when the slot is freed: stale tokens miss */
	const uint64_t *quiet; /* bell_quiet: rings are left out while *quiet & quiet_mask */
	uint64_t quiet_mask;
	uint64_t rings;   /* rings written into it, counted after each write */
	uint64_t drained; /* @rings when it was last drained (ofi_bell_drain) */
};

struct ofi_fence {
	fi_addr_t peer; /* the process pinged: only its echo counts */
	uint32_t gen;
	int busy;
	int done;
};

static struct {
	pthread_mutex_t lock; /* start-up, the tables below */
	/*
	 * One frame at a time on a link: link fd's lock is send_lock[fd % OFI_SEND_STRIPES]. A
	 * lock per link (not one for all) because a frame that half went waits up to
	 * OFI_FRAME_MS for the rest to go under it, and a peer that stopped reading must not
	 * stall the links to every other peer for that long; striped because links live in
	 * ofi.links, which moves when it grows.
	 */
	pthread_mutex_t send_lock[OFI_SEND_STRIPES];
	pthread_mutex_t recv_lock;
	pthread_mutex_t fi_lock; /* every libfabric call (FI_LK/FI_UL; see ofi_open_ep) */
	pthread_cond_t fence_cond; /* fences and ofi_op completions */
	pthread_mutex_t reg_lock; /* reg[]; taken under fi_lock by a pass placing PUTs */
	int ready;
	int forked; /* a fork child that has not opened its own endpoint yet */
	uint16_t self;
	uint64_t listed;
	struct in_addr addr[SCIF_MAX_NODES];
	/* libfabric, loaded at start-up */
	void *dl;
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
		       struct fi_info **);
	void (*freeinfo)(struct fi_info *);
	struct fi_info *(*dupinfo)(const struct fi_info *);
	int (*fabric_open)(struct fi_fabric_attr *, struct fid_fabric **, void *);
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	size_t inject;
	int mr_local;
	int virt_addr;
	int mr_endpoint;
	size_t put; /* the longest PUT (injected), or 0: every flush an RDMA write (without
		     * FI_ORDER_WAS or with SCIF_OFI_PUT=0) */
	struct ofi_hello hello;
	union ofi_msgbuf rx[OFI_RX_BUFS];
	struct fi_context2 rx_ctx[OFI_RX_BUFS];
	struct fid_mr *rx_mr;
	struct ofi_own *reg[OFI_REG_BUCKETS];
	pthread_t thread;
	/*
	 * The progress thread stands aside while a thread of the core spins (ofi_park): its
	 * wake-ups would only take the CPU and fi_lock from the spinner, which progresses
	 * anyway. @lease (ns, monotonic): until when the last spinner's ofi_poll vouches for
	 * progress (written by spinners, read by the progress thread); @wanting: threads that
	 * sleep waiting for progress (ofi_want_progress), so the thread must not stand aside;
	 * @parked: set by the progress thread while it stands aside on @park_fd, an eventfd
	 * that ofi_want_progress writes. @parked and @wanting pair as a Dekker pair (seq_cst
	 * store, then load of the other): either the thread sees @wanting, or the waker sees
	 * @parked and writes.
	 */
	uint64_t lease;
	unsigned int wanting;
	int parked;
	int park_fd;
	/* under lock */
	struct ofi_bell_slot *bells;
	uint32_t nbells;
	struct ofi_link *links; /* by link descriptor */
	int nlinks;
	struct ofi_fence fence[OFI_FENCES];
	struct ofi_peer *peers; /* every peer process in the address vector, once */
	unsigned int npeers;
	/*
	 * Under fi_lock: the shadows holding a lazy range (struct ofi_shadow), one list per peer
	 * process, indexed by its address (dense in an FI_AV_TABLE), so that a message toward
	 * one peer looks only at what is held for it; @nheld counts them all.
	 */
	struct ofi_shadow **held;
	size_t held_slots;
	size_t nheld;
} ofi = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.send_lock = { [0 ... OFI_SEND_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER },
	.recv_lock = PTHREAD_MUTEX_INITIALIZER,
	.fi_lock = PTHREAD_MUTEX_INITIALIZER,
	.fence_cond = PTHREAD_COND_INITIALIZER,
	.reg_lock = PTHREAD_MUTEX_INITIALIZER,
	.park_fd = -1,
};

static __thread struct ofi_pending ofi_pend;

/*
 * libfabric's calls one at a time. The providers say FI_THREAD_SAFE, but tcp;ofi_rxm of
 * libfabric 1.17 crashed in its completion queue when a peer died while another thread
 * posted writes toward it; the calls are short, so one lock costs little.
 */
#define FI_LK() pthread_mutex_lock(&ofi.fi_lock)
#define FI_UL() pthread_mutex_unlock(&ofi.fi_lock)

/* ---- the cluster file ------------------------------------------------------------------ */

/*
 * SCIF_NODES_FILE: one node per line, "<node id> <IPv4 address>"; '#' starts a comment.
 * A node listed twice, an id beyond SCIF_MAX_NODES - 1 or an address that does not parse
 * makes the file invalid (-ENXIO: no node is attached).
 */
static int ofi_read_nodes(void)
{
	const char *path = getenv("SCIF_NODES_FILE");
	char line[256];
	FILE *f;
	int ret = 0;

	if (!path || !*path)
		return -ENXIO;
	f = fopen(path, "re");
	if (!f)
		return -ENXIO;
	while (!ret && fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#'), host[64];
		unsigned int node;
		int n;

		if (hash)
			*hash = 0;
		n = sscanf(line, "%u %63s", &node, host);
		if (n <= 0)
			continue;
		if (n != 2 || node >= SCIF_MAX_NODES || (ofi.listed >> node & 1) ||
		    inet_pton(AF_INET, host, &ofi.addr[node]) != 1)
			ret = -ENXIO;
		else
			ofi.listed |= 1ULL << node;
	}
	fclose(f);
	return ret || !ofi.listed ? -ENXIO : 0;
}

static int ofi_node_of(const struct in_addr *a)
{
	for (int n = 0; n < SCIF_MAX_NODES; n++)
		if ((ofi.listed >> n & 1) && ofi.addr[n].s_addr == a->s_addr)
			return n;
	return -1;
}

/* ---- libfabric -------------------------------------------------------------------------- */

/*
 * Load libfabric; @fresh: a copy of its own, in a new link-map namespace (dlmopen), with its
 * own copies of everything it loads. A fork child on verbs needs that: librdmacm keeps the
 * device contexts it opened for the life of the process, and the kernel refuses commands
 * written to a uverbs file by any process but the one that opened it (a fork child has
 * credentials of its own: EACCES), so the parent's copy could never serve the child.
 */
static int ofi_load(int fresh)
{
	ofi.dl = fresh ? dlmopen(LM_ID_NEWLM, "libfabric.so.1", RTLD_NOW | RTLD_LOCAL)
		       : dlopen("libfabric.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!ofi.dl) {
		scif_info("ofi: cannot load libfabric: %s", dlerror());
		return -ENXIO;
	}
	*(void **)&ofi.getinfo = dlsym(ofi.dl, "fi_getinfo");
	*(void **)&ofi.freeinfo = dlsym(ofi.dl, "fi_freeinfo");
	*(void **)&ofi.dupinfo = dlsym(ofi.dl, "fi_dupinfo");
	*(void **)&ofi.fabric_open = dlsym(ofi.dl, "fi_fabric");
	if (!ofi.getinfo || !ofi.freeinfo || !ofi.dupinfo || !ofi.fabric_open)
		return -ENXIO;
	return 0;
}

/* Pick a provider bound to our node's address that orders writes before later writes and
 * sends; never our own libfabric provider (it runs over libscif). */
static int ofi_pick(void)
{
	struct fi_info *hints = ofi.dupinfo(NULL), *list = NULL, *fi;
	char host[INET_ADDRSTRLEN];
	int ret;

	if (!hints)
		return -ENOMEM;
	hints->caps = FI_MSG | FI_RMA | FI_SOURCE;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->ep_attr->type = FI_EP_RDM;
	hints->addr_format = FI_SOCKADDR_IN;
	/* No FI_MR_LOCAL: the provider registers local buffers itself (RMA from the
	 * application's buffers of the v-calls, rings written anywhere). */
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY |
				      FI_MR_ENDPOINT;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->tx_attr->msg_order = FI_ORDER_WAW | FI_ORDER_SAW | FI_ORDER_SAS;
	hints->rx_attr->msg_order = FI_ORDER_WAW | FI_ORDER_SAW | FI_ORDER_SAS;
	inet_ntop(AF_INET, &ofi.addr[ofi.self], host, sizeof(host));
	/* Room for a PUT with a short send's bytes, index and doorbell, if the provider can. */
	hints->tx_attr->inject_size = OFI_INJECT_WANT;
	ret = ofi.getinfo(FI_VERSION(1, 9), host, NULL, FI_SOURCE, hints, &list);
	if (ret) {
		hints->tx_attr->inject_size = 0;
		ret = ofi.getinfo(FI_VERSION(1, 9), host, NULL, FI_SOURCE, hints, &list);
	}
	ofi.freeinfo(hints);
	if (ret)
		return -ENXIO;
	for (fi = list; fi; fi = fi->next)
		if (!strstr(fi->fabric_attr->prov_name, "scif") &&
		    (fi->tx_attr->msg_order & (FI_ORDER_WAW | FI_ORDER_SAW)) ==
			    (FI_ORDER_WAW | FI_ORDER_SAW))
			break;
	if (fi)
		ofi.info = ofi.dupinfo(fi);
	ofi.freeinfo(list);
	return ofi.info ? 0 : -ENXIO;
}

/* Register @len bytes at @buf for @access (FI_* flags); *desc for local use. */
static int ofi_mr(void *buf, size_t len, uint64_t access, struct fid_mr **mr, void **desc)
{
	uint64_t key = 0;
	int r = -FI_ENOKEY;

	/*
	 * Where we choose the keys (no FI_MR_PROV_KEY), they are random: a key is all a peer
	 * needs to reach memory, so one peer must not guess the keys of another's.
	 */
	FI_LK();
	for (int tries = 0; r == -FI_ENOKEY && tries < 4; tries++) {
		if (getrandom(&key, sizeof(key), 0) != sizeof(key))
			break;
		if (ofi.info->domain_attr->mr_key_size < sizeof(key))
			key &= (1ULL << (8 * ofi.info->domain_attr->mr_key_size)) - 1;
		r = fi_mr_reg(ofi.domain, buf, len, access, 0, key, 0, mr, NULL);
	}
	if (r) {
		FI_UL();
		return -ENOMEM;
	}
	if (ofi.mr_endpoint &&
	    (fi_mr_bind(*mr, &ofi.ep->fid, 0) || fi_mr_enable(*mr))) {
		fi_close(&(*mr)->fid);
		FI_UL();
		*mr = NULL;
		return -ENOMEM;
	}
	FI_UL();
	if (desc)
		*desc = fi_mr_desc(*mr);
	return 0;
}

static void ofi_handle(union ofi_msgbuf *m, size_t len, fi_addr_t src);

static void ofi_mr_close(struct fid_mr *mr)
{
	if (!mr)
		return;
	FI_LK();
	fi_close(&mr->fid);
	FI_UL();
}

static void ofi_op_done(struct ofi_op *op, int err)
{
	pthread_mutex_lock(&ofi.lock);
	op->err = err;
	op->done = 1;
	pthread_cond_broadcast(&ofi.fence_cond);
	pthread_mutex_unlock(&ofi.lock);
}

static int ofi_is_rx(void *ctx)
{
	return (struct fi_context2 *)ctx >= ofi.rx_ctx &&
	       (struct fi_context2 *)ctx < ofi.rx_ctx + OFI_RX_BUFS;
}

/* ---- regions peers may PUT into ----------------------------------------------------------- */

static unsigned int ofi_reg_hash(uint64_t key)
{
	return (unsigned int)((key * 0x9e3779b97f4a7c15ULL) >> 56) % OFI_REG_BUCKETS;
}

/* Under reg_lock. */
static struct ofi_own *ofi_reg_find(uint64_t key)
{
	struct ofi_own *o = ofi.reg[ofi_reg_hash(key)];

	while (o && o->key != key)
		o = o->next;
	return o;
}

static void ofi_reg_add(struct ofi_own *o)
{
	unsigned int h = ofi_reg_hash(o->key);

	pthread_mutex_lock(&ofi.reg_lock);
	o->next = ofi.reg[h];
	ofi.reg[h] = o;
	pthread_mutex_unlock(&ofi.reg_lock);
}

/* After this returns, no PUT writes into @o any more. */
static void ofi_reg_del(struct ofi_own *o)
{
	struct ofi_own **pp;

	pthread_mutex_lock(&ofi.reg_lock);
	for (pp = &ofi.reg[ofi_reg_hash(o->key)]; *pp && *pp != o; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = o->next;
	pthread_mutex_unlock(&ofi.reg_lock);
}

/*
 * Place a PUT's ranges (received, @len bytes; the peer's, so every field is checked).
 * Called under fi_lock by the pass that read the message: a later pass, which may run in
 * another thread, cannot place a later PUT first. Word-aligned ranges are stored a word at a
 * time, so an index is never seen torn; each range is released after the ones before it
 * (the reader's acquire of an index pairs with it). A bad range drops the rest and the ring;
 * a range for a region that is gone is skipped.
 */
static void ofi_put_place(union ofi_msgbuf *m, size_t len)
{
	size_t at = sizeof(struct ofi_note);
	uint64_t key;

	if (len - at < sizeof(key))
		goto bad_unlocked;
	memcpy(&key, m->b + at, sizeof(key));
	at += sizeof(key);
	pthread_mutex_lock(&ofi.reg_lock);
	while (at < len) {
		struct ofi_put p;
		struct ofi_own *o;
		size_t pad;

		if (len - at < sizeof(p))
			goto bad;
		memcpy(&p, m->b + at, sizeof(p));
		at += sizeof(p);
		if (p.off == OFI_PUT_KEY) {
			if (p.len || len - at < sizeof(key))
				goto bad;
			memcpy(&key, m->b + at, sizeof(key));
			at += sizeof(key);
			continue;
		}
		pad = ((size_t)p.len + 7) & ~(size_t)7;
		if (!p.len || pad > len - at)
			goto bad;
		o = ofi_reg_find(key);
		if (!o) {
			/*
			 * A region of ours that is gone: the range is for a connection closed
			 * since (a held read index travels with another connection's message,
			 * which must not be lost with it). Nothing to place.
			 */
			at += pad;
			continue;
		}
		if (p.off > o->len || p.len > o->len - p.off)
			goto bad;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		if (!((p.off | p.len) & 7)) {
			uint64_t *d = (uint64_t *)(o->addr + p.off);
			const uint64_t *src = (const uint64_t *)(m->b + at);

			for (uint32_t w = 0; w < p.len / 8; w++)
				__atomic_store_n(&d[w], src[w], __ATOMIC_RELAXED);
		} else {
			memcpy(o->addr + p.off, m->b + at, p.len);
		}
		at += pad;
	}
	pthread_mutex_unlock(&ofi.reg_lock);
	return;
bad:
	pthread_mutex_unlock(&ofi.reg_lock);
bad_unlocked:
	m->n.op = 0;
	/* Under fi_lock: the count needs no other. A flood of them logs a few. */
	static unsigned long bad_puts;
	if (bad_puts++ % 1000 < 3)
		scif_warn("ofi: dropped a malformed PUT (%lu so far)", bad_puts);
}

static void ofi_repost(int i)
{
	ssize_t r;

	FI_LK();
	while ((r = fi_recv(ofi.ep, &ofi.rx[i], sizeof(ofi.rx[i]),
			    ofi.rx_mr ? fi_mr_desc(ofi.rx_mr) : NULL, FI_ADDR_UNSPEC,
			    &ofi.rx_ctx[i])) == -FI_EAGAIN)
		fi_cq_read(ofi.cq, NULL, 0);
	FI_UL();
	if (r)
		scif_warn("ofi: posting a receive failed: %zd", r);
}

/*
 * The progress thread: waits on the completion queue, which makes the provider place
 * incoming RDMA data, and handles the small messages (rings, unparks, fences).
 */
/*
 * One pass over the completion queue (which also makes the provider progress): handles what
 * it finds. Returns how many completions it handled, -FI_EAGAIN if none, or another -errno.
 * With @trywait, an empty queue also asks libfabric whether we may sleep on its descriptor
 * (*@trywait = 1 if so). With @try, a pass that would wait for the lock (someone is
 * progressing right now) does nothing.
 */
static ssize_t ofi_cq_pass(int *trywait, int try)
{
	struct fid *fids[1] = { &ofi.cq->fid };
	struct fi_cq_msg_entry e[16];
	fi_addr_t src[16];
	ssize_t n, got;

	if (!try)
		FI_LK();
	else if (pthread_mutex_trylock(&ofi.fi_lock))
		return -FI_EAGAIN;
	n = fi_cq_readfrom(ofi.cq, e, 16, src);
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err;

		memset(&err, 0, sizeof(err));
		got = fi_cq_readerr(ofi.cq, &err, 0);
		FI_UL();
		if (got > 0 && err.op_context) {
			if (ofi_is_rx(err.op_context))
				ofi_repost((int)((struct fi_context2 *)err.op_context - ofi.rx_ctx));
			else
				ofi_op_done(err.op_context, err.err ? err.err : EIO);
		}
		return 1;
	}
	if (n == -FI_EAGAIN && trywait)
		*trywait = fi_trywait(ofi.fabric, fids, 1) == FI_SUCCESS;
	/* PUTs are placed before the lock goes, in the order they came (ofi_put_place). */
	for (ssize_t k = 0; k < n; k++) {
		if (!ofi_is_rx(e[k].op_context))
			continue;
		union ofi_msgbuf *m = &ofi.rx[(struct fi_context2 *)e[k].op_context - ofi.rx_ctx];

		if (e[k].len > sizeof(m->n) && e[k].len <= sizeof(*m) &&
		    m->n.magic == OFI_NOTE_MAGIC)
			ofi_put_place(m, e[k].len);
	}
	FI_UL();
	for (ssize_t k = 0; k < n; k++) {
		int i = (int)((struct fi_context2 *)e[k].op_context - ofi.rx_ctx);

		if (!ofi_is_rx(e[k].op_context)) {
			if (e[k].op_context)
				ofi_op_done(e[k].op_context, 0);
			continue;
		}
		ofi_handle(&ofi.rx[i], e[k].len, src[k]);
		ofi_repost(i);
	}
	return n;
}

/*
 * A thread is about to sleep until the fabric progresses (@on), or has woken (!@on): while
 * one does, the progress thread does not stand aside, and one standing aside is called back.
 * (The seq_cst pair with ofi_park is in the struct's comment.)
 */
static void ofi_want_progress(int on)
{
	uint64_t one = 1;

	if (!on) {
		__atomic_sub_fetch(&ofi.wanting, 1, __ATOMIC_SEQ_CST);
		return;
	}
	__atomic_add_fetch(&ofi.wanting, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&ofi.parked, __ATOMIC_SEQ_CST) && write(ofi.park_fd, &one, 8) < 0)
		return; /* EAGAIN: the counter is full, which wakes it all the same */
}

/*
 * The progress thread: stand aside while a spinning thread's lease runs (ofi_poll) and no
 * thread sleeps waiting for progress, until the lease ends or ofi_want_progress calls.
 * Returns 1 if it stood aside (the caller looks again).
 *
 * Without this, every event on the completion queue's descriptor (an arriving message, and
 * with tcp;ofi_rxm even our own sends, which signal it) wakes the progress thread, which on
 * a busy CPU preempts the spinner, takes fi_lock from it and hands the CPU back: four
 * context switches per round trip for work the spinner does itself.
 */
static int ofi_park(void)
{
	uint64_t end = __atomic_load_n(&ofi.lease, __ATOMIC_RELAXED), now, v;
	struct pollfd p = { .fd = ofi.park_fd, .events = POLLIN };
	struct timespec ts;

	if (!end || ofi.park_fd < 0 || __atomic_load_n(&ofi.wanting, __ATOMIC_SEQ_CST))
		return 0;
	now = scif_fabric_now_ns();
	if (end <= now)
		return 0;
	__atomic_store_n(&ofi.parked, 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&ofi.wanting, __ATOMIC_SEQ_CST)) {
		ts.tv_sec = (time_t)((end - now) / 1000000000u);
		ts.tv_nsec = (long)((end - now) % 1000000000u);
		if (ppoll(&p, 1, &ts, NULL) > 0 && read(ofi.park_fd, &v, sizeof(v)) < 0)
			v = 0; /* EAGAIN: a wake-up already taken; nothing to do */
	}
	__atomic_store_n(&ofi.parked, 0, __ATOMIC_SEQ_CST);
	return 1;
}

/* The progress thread: passes over the completion queue, sleeping while it is empty. */
static void *ofi_progress(void *arg)
{
	int wfd = -1;

	(void)arg;
	if (fi_control(&ofi.cq->fid, FI_GETWAIT, &wfd))
		wfd = -1;
	for (unsigned int idle = 0;;) {
		int wait = 0;
		ssize_t n;

		if (ofi_park()) {
			idle = 0;
			continue;
		}
		n = ofi_cq_pass(wfd >= 0 ? &wait : NULL, 0);

		if (n == -FI_EAGAIN) {
			/*
			 * Nothing to do: sleep on the wait descriptor once libfabric agrees. A
			 * provider that keeps saying "not now" without producing anything (a
			 * connection in an error state) gets short sleeps instead of a spin.
			 */
			if (wait) {
				struct pollfd p = { .fd = wfd, .events = POLLIN };

				poll(&p, 1, 100);
				idle = 0;
			} else if (wfd < 0 || ++idle >= 256) {
				usleep(50);
			}
		} else if (n < 0) {
			scif_warn("ofi: reading the completion queue failed: %zd", n);
			usleep(1000);
		} else {
			idle = 0;
		}
	}
	return NULL;
}

/*
 * A thread of the core that spins waiting for the peer (@spin), or a non-blocking call that
 * found nothing, makes the progress the progress thread would, so that incoming bytes land
 * without a wake-up (and without the progress thread, which may share its CPU, having to
 * run first). Never blocks on the lock.
 */
static void ofi_poll(int spin)
{
	if (!__atomic_load_n(&ofi.ready, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&ofi.forked, __ATOMIC_ACQUIRE))
		return;
	/* A spinner vouches for progress a while: the progress thread stands aside (ofi_park). */
	if (spin)
		__atomic_store_n(&ofi.lease, scif_fabric_now_ns() + OFI_LEASE_NS, __ATOMIC_RELAXED);
	ofi_cq_pass(NULL, 1);
}

/* A thread of the core sleeps waiting for the peer, or has woken (fabric.h sleep). */
static void ofi_sleep(int asleep)
{
	if (__atomic_load_n(&ofi.ready, __ATOMIC_ACQUIRE))
		ofi_want_progress(asleep);
}

static int ofi_open_ep(void);
static void ofi_at_exit(void);

static int ofi_open(struct scif_fabric *fab)
{
	int ret;

	(void)fab;
	ret = ofi_load(0);
	if (!ret)
		ret = ofi_pick();
	if (ret)
		return ret;
	ofi.inject = ofi.info->tx_attr->inject_size;
	scif_info("ofi: provider %s, inject %zu, mr_mode %#x", ofi.info->fabric_attr->prov_name,
		  ofi.inject, (unsigned)ofi.info->domain_attr->mr_mode);
	ofi.mr_local = (ofi.info->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
	ofi.virt_addr = (ofi.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
	ofi.mr_endpoint = (ofi.info->domain_attr->mr_mode & FI_MR_ENDPOINT) != 0;
	/* A PUT too short to carry a send's index and doorbell lines is not worth it. */
	ofi.put = ofi.inject < OFI_NOTE_BYTES ? ofi.inject : OFI_NOTE_BYTES;
	if (ofi.put < 128 || !(ofi.info->tx_attr->msg_order & FI_ORDER_WAS) ||
	    (getenv("SCIF_OFI_PUT") && !strcmp(getenv("SCIF_OFI_PUT"), "0")))
		ofi.put = 0;
	return ofi_open_ep();
}

/*
 * This process's libfabric objects, its receives and its progress thread. A fork child
 * gets its own (ofi_live): the parent's are the parent's, sockets and all.
 */
static int ofi_open_ep(void)
{
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_FD };
	struct fi_av_attr ava = { .type = FI_AV_TABLE };
	size_t namelen = OFI_NAME_MAX;
	pthread_attr_t ta;
	sigset_t all, old;
	int ret;

	if (ofi.fabric_open(ofi.info->fabric_attr, &ofi.fabric, NULL) ||
	    fi_domain(ofi.fabric, ofi.info, &ofi.domain, NULL) ||
	    fi_av_open(ofi.domain, &ava, &ofi.av, NULL) ||
	    fi_cq_open(ofi.domain, &cqa, &ofi.cq, NULL) ||
	    fi_endpoint(ofi.domain, ofi.info, &ofi.ep, NULL) ||
	    fi_ep_bind(ofi.ep, &ofi.av->fid, 0) ||
	    /* Selective on the transmit side only: writes and notes report nothing unless
	     * asked; every receive reports. */
	    fi_ep_bind(ofi.ep, &ofi.cq->fid, FI_TRANSMIT | FI_SELECTIVE_COMPLETION) ||
	    fi_ep_bind(ofi.ep, &ofi.cq->fid, FI_RECV) ||
	    fi_enable(ofi.ep) || fi_getname(&ofi.ep->fid, ofi.hello.name, &namelen) ||
	    namelen > OFI_NAME_MAX)
		return -ENXIO;
	ofi.hello.node = ofi.self;
	ofi.hello.namelen = (uint32_t)namelen;
	if (ofi.mr_local && ofi_mr(ofi.rx, sizeof(ofi.rx), FI_RECV, &ofi.rx_mr, NULL))
		return -ENXIO;
	for (int i = 0; i < OFI_RX_BUFS; i++)
		ofi_repost(i);
	/* Without it the progress thread never stands aside (ofi_park): slower, not wrong. */
	ofi.park_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* The application's signals are not for the progress thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&ofi.thread, &ta, ofi_progress, NULL);
	pthread_attr_destroy(&ta);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret ? -ENXIO : 0;
}

/* In a fork child: the locks as new, and libfabric to be opened again on first use. */
static void ofi_atfork_child(void)
{
	pthread_mutex_init(&ofi.fi_lock, NULL);
	pthread_mutex_init(&ofi.lock, NULL);
	for (int i = 0; i < OFI_SEND_STRIPES; i++)
		pthread_mutex_init(&ofi.send_lock[i], NULL);
	pthread_mutex_init(&ofi.recv_lock, NULL);
	pthread_cond_init(&ofi.fence_cond, NULL);
	pthread_mutex_init(&ofi.reg_lock, NULL);
	ofi_pend.o.len = 0;
	/* The parent's connections: they stay with it. */
	ofi.held = NULL;
	ofi.held_slots = 0;
	ofi.nheld = 0;
	/* No progress thread here until ofi_live opens our own endpoint (and eventfd). */
	if (ofi.park_fd >= 0)
		close(ofi.park_fd);
	ofi.park_fd = -1;
	ofi.lease = 0;
	ofi.wanting = 0;
	ofi.parked = 0;
	if (ofi.ready)
		ofi.forked = 1;
}

/*
 * Before an op that needs this process's endpoint: a fork child opens its own. The parent's
 * objects are left alone (closing them would close the parent's connections): endpoints a
 * child inherited are not usable on this fabric.
 */
static int ofi_live(void)
{
	int ret = 0;

	if (!__atomic_load_n(&ofi.forked, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&ofi.lock);
	if (ofi.forked) {
		ofi.fabric = NULL;
		ofi.domain = NULL;
		ofi.av = NULL;
		ofi.cq = NULL;
		ofi.ep = NULL;
		ofi.rx_mr = NULL;
		ofi.peers = NULL; /* the parent's address vector's (left, like the rest) */
		ofi.npeers = 0;
		for (int fd = 0; fd < ofi.nlinks; fd++) /* they name the parent's addresses */
			ofi.links[fd].peer = 0;
		if (!strncmp(ofi.info->fabric_attr->prov_name, "verbs", 5)) {
			/* The parent's info and library stay as they are (theirs to free). */
			struct fi_info *theirs = ofi.info;

			ofi.info = NULL;
			ret = ofi_load(1);
			if (!ret)
				ret = ofi_pick();
			if (ret) /* the next call tries again, and looks at the provider's name */
				ofi.info = theirs;
		}
		if (!ret)
			ret = ofi_open_ep();
		if (!ret)
			__atomic_store_n(&ofi.forked, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&ofi.lock);
	return ret ? -ENOMEM : 0;
}

static int ofi_attach(struct scif_fabric *fab)
{
	unsigned long self;
	const char *v = getenv("SCIF_NODE");
	char *end;
	int ret = 0;

	pthread_mutex_lock(&ofi.lock);
	if (!ofi.ready) {
		errno = 0;
		self = v && *v ? strtoul(v, &end, 10) : 0;
		if ((v && *v && (errno || *end)) || ofi_read_nodes() || self >= SCIF_MAX_NODES ||
		    !(ofi.listed >> self & 1))
			ret = -ENXIO;
		if (!ret) {
			ofi.self = (uint16_t)self;
			ret = scif__local_names(fab);
		}
		if (!ret)
			ret = ofi_open(fab) ? -ENXIO : 0;
		if (!ret) {
			pthread_atfork(NULL, NULL, ofi_atfork_child);
			atexit(ofi_at_exit);
		}
		ofi.ready = !ret;
	}
	pthread_mutex_unlock(&ofi.lock);
	if (ret)
		return ret;
	fab->self = ofi.self;
	fab->max_node = (uint16_t)(63 - __builtin_clzll(ofi.listed));
	fab->online = ofi.listed;
	return 0;
}

/* ---- peers that are gone ---------------------------------------------------------------- */

/* Has @link hung up (or failed)? */
static int ofi_link_dead(int link)
{
	struct pollfd p = { .fd = link, .events = POLLRDHUP };

	return link < 0 || (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/*
 * The peer (address + 1, 0: none) link entry @fd names, or 0 when the core has closed that
 * link since: told by the descriptor's inode, and the entry forgotten. Under ofi.lock.
 */
static uint64_t ofi_link_peer_locked(int fd)
{
	uint64_t a = ofi.links[fd].peer & ~OFI_LINK_OWE;
	struct stat st;

	if (a && (fstat(fd, &st) || !S_ISSOCK(st.st_mode) || st.st_ino != ofi.links[fd].ino)) {
		ofi.links[fd].peer = 0;
		a = 0;
	}
	return a;
}

/*
 * How many of our links to the process at @peer are up; *@dead_out: how many have hung up.
 * Under ofi.lock.
 *
 * ofi_peer_gone: is the process at @peer gone? Yes when we hold links to it and every one
 * has hung up: nothing we could still send it has an endpoint to go to. (No link at all
 * says nothing about the process.)
 */
static int ofi_peer_links_locked(fi_addr_t peer, int *dead_out)
{
	int live = 0, dead = 0;

	for (int fd = 0; fd < ofi.nlinks && !live; fd++) {
		if ((ofi.links[fd].peer & ~OFI_LINK_OWE) != peer + 1 || !ofi_link_peer_locked(fd))
			continue;
		if (ofi_link_dead(fd))
			dead++;
		else
			live++;
	}
	*dead_out = dead;
	return live;
}

static int ofi_peer_gone(fi_addr_t peer)
{
	int dead, live;

	pthread_mutex_lock(&ofi.lock);
	live = ofi_peer_links_locked(peer, &dead);
	pthread_mutex_unlock(&ofi.lock);
	return !live && dead;
}

/*
 * A call that the provider answered -FI_EAGAIN toward @peer: may it be made again? Not past
 * @r->until (OFI_OP_MS after the first answer unless the caller set it), and not once the
 * process at @peer is gone, looked at every OFI_GONE_MS: tcp;ofi_rxm answers -FI_EAGAIN for
 * as long as it is asked toward a process that died, trying to connect to it again each time.
 * Returns 0 (try again) or -ECONNRESET. Start with the struct zeroed (or only @until set).
 */
struct ofi_retry {
	uint64_t until;
	uint64_t look;
};

static int ofi_retry(struct ofi_retry *r, fi_addr_t peer)
{
	uint64_t now = scif_fabric_now_ms();

	if (!r->look) {
		if (!r->until)
			r->until = now + OFI_OP_MS;
	} else if (now > r->until) {
		return -ECONNRESET;
	} else if (now < r->look) {
		return 0;
	} else if (ofi_peer_gone(peer)) {
		return -ECONNRESET;
	}
	r->look = now + OFI_GONE_MS;
	return 0;
}

/* ---- small messages --------------------------------------------------------------------- */

/* Start @o as a note @op with @arg and no ranges. */
static void ofi_out_start(struct ofi_out *o, uint32_t op, uint64_t arg)
{
	o->m.n = (struct ofi_note){ .magic = OFI_NOTE_MAGIC, .op = op, .arg = arg };
	o->len = sizeof(o->m.n);
	o->last = 0;
}

/* What a range of @len bytes for the region @key adds to @o (the wire format: ofi_note). */
static size_t ofi_out_need(const struct ofi_out *o, uint64_t key, size_t len)
{
	size_t k = 0;

	if (o->len == sizeof(o->m.n))
		k = sizeof(key);
	else if (o->key != key)
		k = sizeof(struct ofi_put) + sizeof(key);
	return k + sizeof(struct ofi_put) + ((len + 7) & ~(size_t)7);
}

/* Append to @o @len bytes from @src for @off of the region @key (the caller made room). */
static void ofi_out_add(struct ofi_out *o, uint64_t key, uint32_t off, const void *src,
			uint32_t len)
{
	struct ofi_put *e;

	if (o->len == sizeof(o->m.n) || o->key != key) {
		if (o->len != sizeof(o->m.n)) {
			e = (struct ofi_put *)(o->m.b + o->len);
			*e = (struct ofi_put){ .off = OFI_PUT_KEY, .len = 0 };
			o->len += sizeof(*e);
		}
		memcpy(o->m.b + o->len, &key, sizeof(key));
		o->len += sizeof(key);
		o->key = key;
	}
	o->last = o->len;
	e = (struct ofi_put *)(o->m.b + o->len);
	*e = (struct ofi_put){ .off = off, .len = len };
	memcpy(e + 1, src, len);
	/* The padding too: nothing of this process's memory goes out by accident. */
	memset((uint8_t *)(e + 1) + len, 0, ((len + 7) & ~7u) - len);
	o->len += sizeof(*e) + ((len + 7) & ~(size_t)7);
}

/*
 * Under fi_lock: append to @o the held ranges toward @to that fit, their bytes read now,
 * taking them off its list in ofi.held; returns them as a chain (lazy_next), to put back
 * with ofi_lazy_keep if the message does not go. *@left is set if some did not fit.
 */
static struct ofi_shadow *ofi_lazy_fill(struct ofi_out *o, fi_addr_t to, int *left)
{
	struct ofi_shadow *took = NULL, **pp, *s;

	if (to >= ofi.held_slots)
		return NULL;
	pp = &ofi.held[to];
	while ((s = *pp)) {
		if (o->len + ofi_out_need(o, s->key, s->lazy_len) > ofi.put) {
			*left = 1;
			pp = &s->lazy_next;
			continue;
		}
		*pp = s->lazy_next;
		ofi.nheld--;
		/* The other half of the pairing in struct ofi_shadow: clear, mb, read. */
		__atomic_store_n(&s->lazy, 0, __ATOMIC_SEQ_CST);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		ofi_out_add(o, s->key, s->lazy_off, s->addr + s->lazy_off, s->lazy_len);
		s->lazy_next = took;
		took = s;
	}
	return took;
}

/* Under fi_lock: hold @s's range on its peer's list; -ENOMEM if there is no room for one. */
static int ofi_lazy_hold(struct ofi_shadow *s)
{
	if (s->peer >= ofi.held_slots) {
		size_t n = ofi.held_slots ? ofi.held_slots : 16;
		struct ofi_shadow **h;

		while (n <= s->peer)
			n *= 2;
		h = realloc(ofi.held, n * sizeof(*h));
		if (!h)
			return -ENOMEM;
		memset(h + ofi.held_slots, 0, (n - ofi.held_slots) * sizeof(*h));
		ofi.held = h;
		ofi.held_slots = n;
	}
	s->lazy_next = ofi.held[s->peer];
	ofi.held[s->peer] = s;
	ofi.nheld++;
	__atomic_store_n(&s->lazy, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* Under fi_lock: the ranges of chain @took did not go after all; they are held again. */
static void ofi_lazy_keep(struct ofi_shadow *took)
{
	while (took) {
		struct ofi_shadow *s = took;

		took = s->lazy_next;
		(void)ofi_lazy_hold(s); /* its slot was there when it was taken: no allocation */
	}
}

/* Under fi_lock: take @s off its peer's list if it is held (it is going away). */
static void ofi_lazy_unlink(struct ofi_shadow *s)
{
	/* A fork child's copy of a parent's shadow may say held with no list behind it. */
	if (!s->lazy || s->peer >= ofi.held_slots)
		return;
	for (struct ofi_shadow **pp = &ofi.held[s->peer]; *pp; pp = &(*pp)->lazy_next)
		if (*pp == s) {
			*pp = s->lazy_next;
			ofi.nheld--;
			s->lazy = 0;
			return;
		}
}

/*
 * Under fi_lock: inject @o toward @to, and with it, or in PUTs of their own just before it,
 * the ranges held toward @to (SCIF_FLUSH_LAZY): nothing this process sends to a peer
 * overtakes a range it holds for it. Returns fi_inject's answer; on -FI_EAGAIN @o is as it
 * was and whatever did not go is held still. @o's room past its length is used.
 */
static ssize_t ofi_inject_locked(struct ofi_out *o, fi_addr_t to)
{
	struct ofi_shadow *took = NULL;
	size_t len = o->len, last = o->last;
	uint64_t key = o->key;
	int left = 0;
	ssize_t r;

	if (__builtin_expect(ofi.nheld != 0, 0))
		took = ofi_lazy_fill(o, to, &left);
	while (left) {
		/* PUTs of their own first (each takes one at least: region_flush holds only
		 * ranges that fit an empty PUT). */
		struct ofi_out x;
		struct ofi_shadow *xt;

		ofi_out_start(&x, OFI_OP_PUT, 0);
		left = 0;
		xt = ofi_lazy_fill(&x, to, &left);
		r = fi_inject(ofi.ep, x.m.b, x.len, to);
		if (r) {
			ofi_lazy_keep(xt);
			ofi_lazy_keep(took);
			goto undo;
		}
	}
	r = fi_inject(ofi.ep, o->m.b, o->len, to);
	if (!r)
		return 0;
	ofi_lazy_keep(took);
undo:
	o->len = len;
	o->last = last;
	o->key = key;
	return r;
}

/* Send this thread's pending PUT, if any: before anything else goes to any peer. */
static int ofi_push(void)
{
	struct ofi_pending *p = &ofi_pend;
	struct ofi_retry rt = { 0 };
	ssize_t r;

	if (!p->o.len)
		return 0;
	for (;;) {
		FI_LK();
		r = ofi_inject_locked(&p->o, p->peer);
		if (r == -FI_EAGAIN)
			fi_cq_read(ofi.cq, NULL, 0);
		FI_UL();
		if (r != -FI_EAGAIN || ofi_retry(&rt, p->peer))
			break;
	}
	p->o.len = 0;
	return r ? -ECONNRESET : 0;
}

/* A small message to @to; given up at @until (ms; 0: OFI_OP_MS from now) or if @to is gone. */
static int ofi_note_send(uint32_t op, uint64_t arg, fi_addr_t to, uint64_t until)
{
	struct ofi_out o; /* the note, and room for held ranges (ofi_inject_locked) */
	struct ofi_retry rt = { .until = until };
	ssize_t r;

	ofi_out_start(&o, op, arg);
	if (ofi_push())
		return -ECONNRESET;
	for (;;) {
		FI_LK();
		r = ofi_inject_locked(&o, to);
		if (r == -FI_EAGAIN)
			fi_cq_read(ofi.cq, NULL, 0);
		FI_UL();
		if (r != -FI_EAGAIN || ofi_retry(&rt, to))
			break;
	}
	return r ? -ECONNRESET : 0;
}

/*
 * Ring (or, with @unpark, drain) our bell named by @token. A ring is left out while its
 * owner says it is looking by itself (bell_quiet): what the ring is for is in place by
 * now (a PUT's ranges are placed before it is handled; RDMA writes land before the sends
 * that follow them), and the barrier orders that before the look at the owner's word.
 */
static void ofi_bell_token(uint64_t token, int unpark)
{
	uint32_t idx = (uint32_t)token, gen = (uint32_t)(token >> 32);

	/* A token of a bell closed since is stale: the generation says so. */
	pthread_mutex_lock(&ofi.lock);
	if (idx < ofi.nbells && ofi.bells[idx].fd >= 0 && ofi.bells[idx].gen == gen) {
		struct ofi_bell_slot *s = &ofi.bells[idx];
		struct scif_bell b = { .fd = s->fd };

		if (unpark) {
			scif__fabric_local.drain(b.fd);
		} else {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (!s->quiet ||
			    !(__atomic_load_n(s->quiet, __ATOMIC_RELAXED) & s->quiet_mask)) {
				scif__fabric_local.ring(&b);
				s->rings++;
			}
		}
	}
	pthread_mutex_unlock(&ofi.lock);
}

/* A received message of @len bytes (a PUT's ranges are placed already: ofi_cq_pass). */
static void ofi_handle(union ofi_msgbuf *m, size_t len, fi_addr_t src)
{
	struct ofi_note *n = &m->n;
	uint32_t idx = (uint32_t)n->arg, gen = (uint32_t)(n->arg >> 32);

	if (len < sizeof(*n) || n->magic != OFI_NOTE_MAGIC)
		return;
	switch (n->op) {
	case OFI_OP_PUT | OFI_PUT_RING:
		ofi_bell_token(n->arg, 0);
		break;
	case OFI_OP_RING:
	case OFI_OP_UNPARK:
		ofi_bell_token(n->arg, n->op == OFI_OP_UNPARK);
		break;
	case OFI_OP_PING:
		/* Sent after everything we posted toward the peer before we saw its ping. */
		if (src != FI_ADDR_NOTAVAIL)
			ofi_note_send(OFI_OP_ECHO, n->arg, src, 0);
		break;
	case OFI_OP_ECHO:
		pthread_mutex_lock(&ofi.lock);
		if (idx < OFI_FENCES && ofi.fence[idx].busy && ofi.fence[idx].gen == gen &&
		    ofi.fence[idx].peer == src) {
			ofi.fence[idx].done = 1;
			pthread_cond_broadcast(&ofi.fence_cond);
		}
		pthread_mutex_unlock(&ofi.lock);
		break;
	}
}

/* ---- ports and links -------------------------------------------------------------------- */

static void ofi_sockaddr(struct sockaddr_in *sa, uint16_t node, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr = ofi.addr[node];
	sa->sin_port = htons(port);
}

/* A link: no Nagle, and a peer that stops answering shows as a hang-up within OFI_DEAD_MS. */
static void ofi_link_opts(int fd)
{
	int one = 1, idle = 1, intvl = 1, cnt = 3;
	unsigned int uto = OFI_DEAD_MS;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
}

/* Set link @fd's entry to @v (a new link), or, with @keep, its peer part only. */
static int ofi_link_set(int fd, uint64_t v, int keep)
{
	int ret = 0;

	struct stat st = { 0 };

	if (!keep && fstat(fd, &st))
		return -errno;
	pthread_mutex_lock(&ofi.lock);
	if (fd >= ofi.nlinks) {
		int n = fd + 64;
		struct ofi_link *l = realloc(ofi.links, sizeof(*l) * (size_t)n);

		if (!l) {
			ret = -ENOMEM;
		} else {
			memset(l + ofi.nlinks, 0, sizeof(*l) * (size_t)(n - ofi.nlinks));
			ofi.links = l;
			ofi.nlinks = n;
		}
	}
	if (!ret && keep) {
		ofi.links[fd].peer = (ofi.links[fd].peer & OFI_LINK_OWE) | v;
	} else if (!ret) {
		ofi.links[fd] = (struct ofi_link){ .peer = v, .ino = st.st_ino };
	}
	pthread_mutex_unlock(&ofi.lock);
	return ret;
}

/* The address of link @fd's peer + 1, or 0 before its HELLO. */
static uint64_t ofi_link_peer(int fd)
{
	uint64_t a = 0;

	pthread_mutex_lock(&ofi.lock);
	if (fd >= 0 && fd < ofi.nlinks)
		a = ofi.links[fd].peer & ~OFI_LINK_OWE;
	pthread_mutex_unlock(&ofi.lock);
	return a;
}

/* Is our HELLO still owed on link @fd? It is not any more once asked. */
static int ofi_link_take_owe(int fd)
{
	int owe = 0;

	pthread_mutex_lock(&ofi.lock);
	if (fd >= 0 && fd < ofi.nlinks && (ofi.links[fd].peer & OFI_LINK_OWE)) {
		ofi.links[fd].peer &= ~OFI_LINK_OWE;
		owe = 1;
	}
	pthread_mutex_unlock(&ofi.lock);
	return owe;
}

/* Send @n bytes on @fd, waiting for room at most @ms in total. */
static int ofi_send_all(int fd, const void *buf, size_t n, int ms)
{
	uint64_t until = scif_fabric_now_ms() + (uint64_t)ms;
	size_t done = 0;

	while (done < n) {
		ssize_t r = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		uint64_t now;

		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			return -ECONNRESET;
		now = scif_fabric_now_ms();
		if (now >= until)
			return -ETIMEDOUT;
		poll(&p, 1, (int)(until - now));
	}
	return 0;
}

/* Append one frame to @buf at @at; returns the new end. */
static size_t ofi_frame_put(uint8_t *buf, size_t at, uint16_t type, uint32_t flags,
			    const void *msg, size_t len, const struct scif_fh *fh, int nfh)
{
	struct ofi_frame h = { .magic = OFI_LINK_MAGIC, .type = type, .nfh = (uint16_t)nfh,
			       .len = (uint32_t)len, .flags = flags };

	memcpy(buf + at, &h, sizeof(h));
	memcpy(buf + at + sizeof(h), msg, len);
	at += sizeof(h) + len;
	for (int i = 0; i < nfh; i++) {
		struct ofi_fh_wire w = { .kind = fh[i].kind };

		memcpy(w.word, fh[i].word, sizeof(w.word));
		memcpy(buf + at, &w, sizeof(w));
		at += sizeof(w);
	}
	return at;
}

#define OFI_HELLO_LEN (offsetof(struct ofi_hello, name) + ofi.hello.namelen)

/*
 * Send a message frame (@type OFI_FR_MSG) or our HELLO alone (@type OFI_FR_HELLO, waiting
 * for room if need be). A link whose HELLO is still owed (ours, on the connecting side)
 * sends it in front of its first message, in the same write, so that the peer never sees a
 * link readable with a HELLO and no request.
 */
static int ofi_send_frame(int fd, uint16_t type, const void *msg, size_t len,
			  const struct scif_fh *fh, int nfh)
{
	uint8_t buf[2 * sizeof(struct ofi_frame) + sizeof(struct ofi_hello) + OFI_MSG_MAX +
		    SCIF_LINK_MAX_FH * sizeof(struct ofi_fh_wire)];
	size_t total = 0;
	int may_wait = type == OFI_FR_HELLO, ret = 0;
	pthread_mutex_t *send_lock;
	ssize_t r;

	if (fd < 0 || nfh < 0 || nfh > SCIF_LINK_MAX_FH || len > OFI_MSG_MAX)
		return -EINVAL;
	send_lock = &ofi.send_lock[fd % OFI_SEND_STRIPES];
	pthread_mutex_lock(send_lock);
	if (type == OFI_FR_MSG && ofi_link_take_owe(fd)) {
		total = ofi_frame_put(buf, 0, OFI_FR_HELLO, OFI_FR_MORE, &ofi.hello,
				      OFI_HELLO_LEN, NULL, 0);
		may_wait = 1; /* the link is new: only a full socket buffer would stop it */
	}
	total = ofi_frame_put(buf, total, type, 0, msg, len, fh, nfh);
	do
		r = send(fd, buf, total, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EAGAIN && may_wait)
		r = 0;
	if (r < 0) {
		ret = errno == EAGAIN ? -EAGAIN : -ECONNRESET;
	} else if ((size_t)r < total &&
		   ofi_send_all(fd, buf + r, total - (size_t)r, OFI_FRAME_MS) < 0) {
		/* Half a frame cannot be taken back: the link is lost. */
		shutdown(fd, SHUT_RDWR);
		ret = -ECONNRESET;
	}
	pthread_mutex_unlock(send_lock);
	return ret;
}

static int ofi_port_reserve(struct scif_fabric *fab, uint16_t port)
{
	return scif__fabric_local.port_reserve(fab, port);
}

static int ofi_tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	return fd < 0 ? -errno : fd;
}

static int ofi_listen(struct scif_fabric *fab, uint16_t port, int backlog)
{
	struct sockaddr_in sa;
	int fd = ofi_tcp_socket(), one = 1, err;

	(void)fab;
	if (fd < 0)
		return fd;
	ofi_sockaddr(&sa, ofi.self, port);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog - 1) < 0) {
		err = errno;
		close(fd);
		return err == EADDRINUSE || err == EACCES ? -EADDRINUSE : -err;
	}
	return fd;
}

static int ofi_connect(struct scif_fabric *fab, int holder, const struct scif_portID *dst)
{
	struct sockaddr_in sa;
	int fd, err = 0;
	socklen_t el = sizeof(err);

	if (ofi_live())
		return -ENOMEM;

	(void)fab;
	(void)holder;
	if (dst->node >= SCIF_MAX_NODES || !(ofi.listed >> dst->node & 1))
		return -ECONNREFUSED;
	fd = ofi_tcp_socket();
	if (fd < 0)
		return fd;
	ofi_sockaddr(&sa, ofi.self, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	ofi_sockaddr(&sa, dst->node, dst->port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (errno != EINPROGRESS)
			goto fail;
		if (poll(&p, 1, OFI_CONNECT_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			close(fd);
			return err == EMFILE || err == ENFILE || err == ENOMEM ? -ENOMEM
										: -ECONNREFUSED;
		}
	}
	ofi_link_opts(fd);
	if (ofi_link_set(fd, OFI_LINK_OWE, 0)) {
		close(fd);
		return -ENOMEM;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	return err == EMFILE || err == ENFILE || err == ENOMEM ? -ENOMEM : -ECONNREFUSED;
}

static int ofi_accept(struct scif_fabric *fab, int lfd)
{
	int fd;

	if (ofi_live())
		return -ENOMEM;
	(void)fab;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	ofi_link_opts(fd);
	if (ofi_link_set(fd, 0, 0) ||
	    ofi_send_frame(fd, OFI_FR_HELLO, &ofi.hello, OFI_HELLO_LEN, NULL, 0)) {
		close(fd);
		return -ECONNABORTED;
	}
	return fd;
}

static int ofi_relisten(int lfd, int backlog)
{
	return listen(lfd, backlog - 1) < 0 ? -errno : 0;
}

/* Only the cluster's nodes may talk to us: the link must come from one of their addresses. */
static int ofi_peer_allowed(struct scif_fabric *fab, int link)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	(void)fab;
	if (getpeername(link, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	return sa.sin_family == AF_INET && ofi_node_of(&sa.sin_addr) >= 0 ? 0 : -EACCES;
}

static int ofi_link_send(int link, const void *msg, size_t len, const struct scif_fh *fh,
			 int nfh)
{
	return ofi_send_frame(link, OFI_FR_MSG, msg, len, fh, nfh);
}

/* Count (@d 1) or let go of (@d -1) something imported from the process at @a. */
static void ofi_peer_ref(fi_addr_t a, int d)
{
	pthread_mutex_lock(&ofi.lock);
	for (struct ofi_peer *p = ofi.peers; p; p = p->next)
		if (p->addr == a) {
			p->refs += (uint64_t)(int64_t)d;
			break;
		}
	pthread_mutex_unlock(&ofi.lock);
}

/*
 * Take the peer processes we no longer use out of the address vector: nothing imported from
 * them, no link to them, and so at two looks OFI_FORGET_MS apart, by which time nothing
 * toward them is in flight any more (every operation gives up within OFI_OP_MS). Looked at
 * when a new process says HELLO, so the vector holds the processes in use and those let go
 * of since about the last arrival; without it, a server's vector would grow by one entry
 * per client it ever had. Under recv_lock (one HELLO at a time).
 */
static void ofi_forget_gone(void)
{
	uint64_t now = scif_fabric_now_ms();
	struct ofi_peer *gone = NULL, **pp, *p;
	unsigned int n = 0, left;

	pthread_mutex_lock(&ofi.lock);
	for (p = ofi.peers; p; p = p->next)
		p->linked = p->refs != 0;
	for (int fd = 0; fd < ofi.nlinks; fd++) {
		/* Hung up or not, a link still open may bring handles naming the peer. */
		uint64_t a = ofi_link_peer_locked(fd);

		if (!a)
			continue;
		for (p = ofi.peers; p; p = p->next)
			if (p->addr + 1 == a) {
				p->linked = 1;
				break;
			}
	}
	for (pp = &ofi.peers; (p = *pp);) {
		if (p->linked || !p->idle_since || now - p->idle_since < OFI_FORGET_MS) {
			p->idle_since = p->linked ? 0 : p->idle_since ? p->idle_since : now | 1;
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->next = gone;
		gone = p;
		n++;
	}
	ofi.npeers -= n;
	left = ofi.npeers;
	pthread_mutex_unlock(&ofi.lock);
	if (!gone)
		return;
	scif_dbg("ofi: %u peer processes left the address vector, %u in it", n, left);
	FI_LK();
	for (p = gone; p; p = p->next)
		fi_av_remove(ofi.av, &p->addr, 1, 0);
	FI_UL();
	while ((p = gone)) {
		gone = p->next;
		free(p);
	}
}

/*
 * The peer's HELLO: its endpoint in our address vector, once per peer process (every
 * address is a connection of the provider's), and remembered for the link.
 */
static int ofi_hello_in(int link, const uint8_t *body, size_t len)
{
	struct ofi_hello h;
	struct ofi_peer *p;
	fi_addr_t a = FI_ADDR_NOTAVAIL;
	int n;

	if (len < offsetof(struct ofi_hello, name) || len > sizeof(h))
		return -EPROTO;
	memset(&h, 0, sizeof(h));
	memcpy(&h, body, len);
	if (h.namelen != len - offsetof(struct ofi_hello, name) || !h.namelen ||
	    h.node >= SCIF_MAX_NODES || !(ofi.listed >> h.node & 1))
		return -EPROTO;
	pthread_mutex_lock(&ofi.lock);
	for (p = ofi.peers; p; p = p->next)
		if (p->namelen == h.namelen && !memcmp(p->name, h.name, h.namelen)) {
			a = p->addr;
			break;
		}
	pthread_mutex_unlock(&ofi.lock);
	if (a == FI_ADDR_NOTAVAIL) {
		ofi_forget_gone();
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		FI_LK();
		n = fi_av_insert(ofi.av, h.name, 1, &a, 0, NULL);
		FI_UL();
		if (n != 1) {
			free(p);
			return -EPROTO;
		}
		p->addr = a;
		p->namelen = h.namelen;
		memcpy(p->name, h.name, h.namelen);
		pthread_mutex_lock(&ofi.lock);
		p->next = ofi.peers;
		ofi.peers = p;
		ofi.npeers++;
		pthread_mutex_unlock(&ofi.lock);
	}
	return ofi_link_set(link, a + 1, 1);
}

/*
 * Raise the link's SO_RCVLOWAT to @want bytes (a frame that has begun: the link is readable
 * again only once it is whole), or restore it (@want 1). Under recv_lock. -errno if the
 * socket refused.
 */
static int ofi_link_lowat(int link, int want)
{
	int now = -1, to = want > 1 ? want : 0;

	pthread_mutex_lock(&ofi.lock);
	if (link < ofi.nlinks)
		now = ofi.links[link].lowat;
	pthread_mutex_unlock(&ofi.lock);
	if (now == to)
		return 0;
	if (setsockopt(link, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)))
		return -errno;
	pthread_mutex_lock(&ofi.lock);
	if (link < ofi.nlinks)
		ofi.links[link].lowat = to;
	pthread_mutex_unlock(&ofi.lock);
	return 0;
}

/*
 * Only part of a frame of @want bytes is in: nobody waits for the rest (a peer may send it
 * slowly, or never, and one thread serves every link). The link is readable again once the
 * frame is whole; a peer that hung up will never finish it.
 */
static int ofi_link_partial(int link, size_t want)
{
	if (ofi_link_dead(link))
		return 0;
	/* A link that stayed readable would be looked at again and again: lose it instead. */
	return ofi_link_lowat(link, (int)want) ? -EPROTO : -EAGAIN;
}

/* A recv error that means the peer is gone (0), or -EAGAIN / another -errno. */
static int ofi_link_err(int err)
{
	if (err == ECONNRESET || err == ETIMEDOUT || err == EPIPE || err == EHOSTUNREACH)
		return 0;
	return err == EAGAIN || err == EINTR ? -EAGAIN : -err;
}

/*
 * One framed message from @link. A frame is taken off the socket only when it is whole
 * (looked at with MSG_PEEK first), so a reader never waits for one that has begun: the call
 * is -EAGAIN until the rest arrives, which may be never (the core drops a connecting peer
 * that stays silent, and a connected one's link waits alone).
 */
static int ofi_link_recv(int link, void *msg, size_t len, struct scif_fh *fh, int *nfh)
{
	uint8_t fr[sizeof(struct ofi_frame) + OFI_MSG_MAX +
		   SCIF_LINK_MAX_FH * sizeof(struct ofi_fh_wire)];
	const uint8_t *body = fr + sizeof(struct ofi_frame);
	struct ofi_frame h;
	int ret;

	pthread_mutex_lock(&ofi.recv_lock);
	for (;;) {
		/* What has arrived, up to a longest frame: the header, and maybe all of it. */
		ssize_t n = recv(link, fr, sizeof(fr), MSG_PEEK | MSG_DONTWAIT);
		size_t whole;

		if (n <= 0) {
			ret = n == 0 ? 0 : ofi_link_err(errno);
			break;
		}
		if ((size_t)n < sizeof(h)) {
			ret = ofi_link_partial(link, sizeof(h));
			break;
		}
		memcpy(&h, fr, sizeof(h));
		if (h.magic != OFI_LINK_MAGIC || h.len > OFI_MSG_MAX ||
		    (h.flags & ~OFI_FR_MORE) || (h.flags && h.type != OFI_FR_HELLO) ||
		    h.nfh > SCIF_LINK_MAX_FH || (h.type != OFI_FR_HELLO && h.type != OFI_FR_MSG)) {
			ret = -EPROTO;
			break;
		}
		whole = sizeof(h) + h.len + (size_t)h.nfh * sizeof(struct ofi_fh_wire);
		if ((size_t)n < whole) {
			ret = ofi_link_partial(link, whole);
			break;
		}
		/* Whole: taken at once (this lock keeps other readers of the link out). */
		if (recv(link, fr, whole, MSG_DONTWAIT) != (ssize_t)whole) {
			ret = -EPROTO;
			break;
		}
		ofi_link_lowat(link, 1);
		if (h.type == OFI_FR_HELLO) {
			ret = h.nfh ? -EPROTO : ofi_hello_in(link, body, h.len);
			if (ret)
				break;
			continue; /* the message sent with it (OFI_FR_MORE), if it is in */
		}
		if (h.len > len || (h.nfh && (!fh || !nfh || h.nfh > *nfh))) {
			ret = -EPROTO;
			break;
		}
		if (h.nfh) {
			uint64_t peer = ofi_link_peer(link);

			/* Handles name memory of the process at the other end, which said HELLO. */
			if (!peer) {
				ret = -EPROTO;
				break;
			}
			for (int i = 0; i < h.nfh; i++) {
				struct ofi_fh_wire w;

				memcpy(&w, body + h.len + (size_t)i * sizeof(w), sizeof(w));
				fh[i] = (struct scif_fh){ .fd = -1, .kind = w.kind,
							  .word = { w.word[0], w.word[1], peer - 1 } };
			}
		}
		if (nfh)
			*nfh = h.nfh;
		memcpy(msg, body, h.len);
		ret = (int)h.len;
		break;
	}
	pthread_mutex_unlock(&ofi.recv_lock);
	if (ret <= 0 && nfh)
		*nfh = 0;
	return ret;
}

/* ---- regions ---------------------------------------------------------------------------- */

static int ofi_rma_wait(int read, void *buf, size_t len, void *desc, fi_addr_t peer,
			uint64_t raddr, uint64_t key);

static void *ofi_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int ofi_region_create(struct scif_fabric *fab, size_t len, struct scif_region *r)
{
	struct ofi_own *o;
	void *p;

	if (ofi_live())
		return -ENOMEM;
	(void)fab;
	o = calloc(1, sizeof(*o));
	p = o ? ofi_map(len) : NULL;
	if (!p || ofi_mr(p, len, FI_REMOTE_WRITE | FI_REMOTE_READ, &o->mr, NULL)) {
		if (p)
			munmap(p, len);
		free(o);
		return -ENOMEM;
	}
	o->key = fi_mr_key(o->mr);
	o->addr = p;
	o->len = len;
	ofi_reg_add(o);
	*r = (struct scif_region){ .addr = p, .len = len, .priv = { (uintptr_t)o, 0 } };
	return 0;
}

static void ofi_region_export(const struct scif_region *r, struct scif_fh *fh)
{
	const struct ofi_own *o = (const struct ofi_own *)(uintptr_t)r->priv[0];

	*fh = (struct scif_fh){ .fd = -1, .kind = OFI_FH_REGION,
				.word = { ofi.virt_addr ? (uintptr_t)r->addr : 0, o->key } };
}

static int ofi_region_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len,
			     struct scif_region *r)
{
	struct ofi_shadow *s;
	void *p;

	(void)fab;
	if (fh->kind != OFI_FH_REGION)
		return -EPROTO;
	s = calloc(1, sizeof(*s));
	p = s ? ofi_map(len) : NULL;
	if (!p || (ofi.mr_local && ofi_mr(p, len, FI_WRITE | FI_READ, &s->mr, &s->desc))) {
		if (p)
			munmap(p, len);
		free(s);
		return -ENOMEM;
	}
	s->raddr = fh->word[0];
	s->key = fh->word[1];
	s->peer = fh->word[2];
	s->addr = p;
	/*
	 * The shadow starts as a copy of the peer's region: of its head, the only part its owner
	 * writes before sharing it (fabric.h), and of its last byte, so that a region shorter
	 * than @len fails the import.
	 */
	if (ofi_rma_wait(1, p, len < SCIF_REGION_HEAD ? len : SCIF_REGION_HEAD, s->desc, s->peer,
			 s->raddr, s->key) ||
	    ofi_rma_wait(1, (uint8_t *)p + len - 1, 1, s->desc, s->peer, s->raddr + len - 1,
			 s->key)) {
		ofi_mr_close(s->mr);
		munmap(p, len);
		free(s);
		return -EPROTO;
	}
	ofi_peer_ref(s->peer, 1);
	*r = (struct scif_region){ .addr = p, .len = len, .priv = { (uintptr_t)s, 1 } };
	return 0;
}

static void ofi_region_destroy(struct scif_region *r)
{
	if (!r->addr)
		return;
	if (r->priv[1]) {
		struct ofi_shadow *s = (struct ofi_shadow *)(uintptr_t)r->priv[0];

		/* Off its peer's list, under the lock that the senders read it under. */
		FI_LK();
		ofi_lazy_unlink(s);
		FI_UL();
		ofi_mr_close(s->mr);
		ofi_peer_ref(s->peer, -1);
		free(s);
	} else {
		struct ofi_own *o = (struct ofi_own *)(uintptr_t)r->priv[0];

		ofi_reg_del(o);
		ofi_mr_close(o->mr);
		free(o);
	}
	munmap(r->addr, r->len);
	*r = (struct scif_region){ 0 };
}

/* Write @len bytes at @buf to the peer's @raddr: injected (copied now) if short. */
static int ofi_write(const void *buf, size_t len, void *desc, fi_addr_t peer, uint64_t raddr,
		     uint64_t key)
{
	struct ofi_retry rt = { 0 };
	ssize_t r;

	if (ofi_push())
		return -ECONNRESET;
	for (;;) {
		FI_LK();
		if (len <= ofi.inject)
			r = fi_inject_write(ofi.ep, buf, len, peer, raddr, key);
		else
			r = fi_write(ofi.ep, buf, len, desc, peer, raddr, key, NULL);
		if (r == -FI_EAGAIN)
			fi_cq_read(ofi.cq, NULL, 0);
		FI_UL();
		if (r != -FI_EAGAIN) {
			if (r)
				scif_warn("ofi: write of %zu bytes failed: %zd", len, r);
			return r ? -ECONNRESET : 0;
		}
		if (ofi_retry(&rt, peer))
			return -ECONNRESET;
	}
}

/* Under ofi.lock: wait up to 10 ms for a completion or a fence's answer. */
static void ofi_tick(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 10 * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	ofi_want_progress(1); /* what is waited for comes by the progress thread */
	pthread_cond_timedwait(&ofi.fence_cond, &ofi.lock, &ts);
	ofi_want_progress(0);
}

/*
 * An RDMA read (@read) or write of @len bytes between @buf and the peer's @raddr, waited for:
 * 0, or -ECONNRESET if a piece of it failed, its peer is gone, or no piece completed for
 * OFI_OP_MS. It goes in pieces of OFI_RMA_PIECE, up to OFI_RMA_DEPTH of them in flight, so
 * that the deadline is on progress: a long transfer over a slow link (soft-RoCE on an
 * emulated CPU moves about a megabyte a second) is not a dead peer, and a dead peer costs
 * OFI_OP_MS whatever the length.
 */
static int ofi_rma_wait(int read, void *buf, size_t len, void *desc, fi_addr_t peer,
			uint64_t raddr, uint64_t key)
{
	struct ofi_op op[OFI_RMA_DEPTH];
	size_t pieces = (len + OFI_RMA_PIECE - 1) / OFI_RMA_PIECE, next = 0, oldest = 0;
	struct ofi_retry rt = { 0 }, gone = { .until = UINT64_MAX };
	uint64_t until = 0;
	int ret = 0;

	if (ofi_push())
		return -ECONNRESET;
	while (oldest < next || (next < pieces && !ret)) {
		/* Post what fits; a full queue with nothing of ours in it is waited out here. */
		while (!ret && next < pieces && next - oldest < OFI_RMA_DEPTH) {
			size_t at = next * OFI_RMA_PIECE;
			size_t n = len - at < OFI_RMA_PIECE ? len - at : OFI_RMA_PIECE;
			struct ofi_op *o = &op[next % OFI_RMA_DEPTH];
			struct iovec iov = { .iov_base = (uint8_t *)buf + at, .iov_len = n };
			struct fi_rma_iov riov = { .addr = raddr + at, .len = n, .key = key };
			struct fi_msg_rma msg = { .msg_iov = &iov, .desc = &desc, .iov_count = 1,
						  .addr = peer, .rma_iov = &riov,
						  .rma_iov_count = 1, .context = &o->ctx };
			ssize_t r;

			*o = (struct ofi_op){ .done = 0 };
			FI_LK();
			r = read ? fi_readmsg(ofi.ep, &msg, FI_COMPLETION)
				 : fi_writemsg(ofi.ep, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE);
			if (r == -FI_EAGAIN)
				fi_cq_read(ofi.cq, NULL, 0);
			FI_UL();
			if (!r) {
				if (oldest == next++)
					until = scif_fabric_now_ms() + OFI_OP_MS;
				rt = (struct ofi_retry){ 0 };
			} else if (r != -FI_EAGAIN || ofi_retry(&rt, peer)) {
				ret = -ECONNRESET;
			} else if (oldest < next) {
				break; /* ours will make room */
			}
		}
		if (oldest == next)
			continue;
		/* Wait for the oldest piece; each one that completes moves the deadline. */
		pthread_mutex_lock(&ofi.lock);
		while (!op[oldest % OFI_RMA_DEPTH].done) {
			ofi_tick();
			if (op[oldest % OFI_RMA_DEPTH].done)
				break;
			/*
			 * Every completion wakes every waiter: look whether the peer is gone only
			 * every OFI_GONE_MS (ofi_retry), and without ofi.lock (ofi_peer_gone
			 * takes it).
			 */
			if (!ret && scif_fabric_now_ms() >= gone.look) {
				pthread_mutex_unlock(&ofi.lock);
				if (ofi_retry(&gone, peer))
					until = 0;
				pthread_mutex_lock(&ofi.lock);
			}
			if (scif_fabric_now_ms() > until) {
				/* The pieces still own their ops: cancel them before the stack goes. */
				pthread_mutex_unlock(&ofi.lock);
				FI_LK();
				for (size_t i = oldest; i < next; i++)
					fi_cancel(&ofi.ep->fid, &op[i % OFI_RMA_DEPTH].ctx);
				FI_UL();
				pthread_mutex_lock(&ofi.lock);
				until = scif_fabric_now_ms() + OFI_OP_MS;
				ret = -ECONNRESET;
			}
		}
		if (op[oldest % OFI_RMA_DEPTH].err)
			ret = -ECONNRESET;
		pthread_mutex_unlock(&ofi.lock);
		oldest++;
		if (!ret)
			until = scif_fabric_now_ms() + OFI_OP_MS;
	}
	return ret;
}

/*
 * Short ranges join this thread's pending PUT (one per thread: flushes of one thread are in
 * order by construction, and a thread that flushes with SCIF_FLUSH_MORE comes back before
 * doing anything else); it goes when a flush says no more, at the ring that follows, or
 * before anything else this thread sends. A range that would not fit an injected message
 * goes as an RDMA write, after the pending PUT.
 */
static int ofi_region_flush(const struct scif_region *r, size_t off, size_t len,
			    unsigned int flags)
{
	struct ofi_shadow *s = (struct ofi_shadow *)(uintptr_t)r->priv[0];
	/* The most a range takes: a key of its own (ofi_out_need). */
	size_t need = 2 * sizeof(struct ofi_put) + sizeof(uint64_t) + ((len + 7) & ~(size_t)7);
	struct ofi_pending *p = &ofi_pend;
	struct ofi_put *e;

	if (!r->priv[1] || off > r->len || len > r->len - off || !len)
		return -EINVAL;
	if ((flags & SCIF_FLUSH_LAZY) && !p->o.len && !((off | len) & 7) &&
	    sizeof(struct ofi_note) + need <= ofi.put) {
		/* Held already, with the bytes read when it goes (struct ofi_shadow). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&s->lazy, __ATOMIC_SEQ_CST) && s->lazy_off == off &&
		    s->lazy_len == len)
			return 0;
		FI_LK();
		if (!s->lazy) {
			s->lazy_off = (uint32_t)off;
			s->lazy_len = (uint32_t)len;
			if (!ofi_lazy_hold(s)) {
				FI_UL();
				return 0;
			}
		}
		FI_UL();
		/* Another range is held (or no room to hold one): this one goes now. */
	}
	if (sizeof(struct ofi_note) + need > ofi.put)
		return ofi_write((uint8_t *)r->addr + off, len, s->desc, s->peer, s->raddr + off,
				 s->key);
	if (p->o.len) {
		/* The same range again, right after itself (a send's index, then its doorbell
		 * count beside it): its bytes now are all the peer needs. */
		e = (struct ofi_put *)(p->o.m.b + p->o.last);
		if (p->peer == s->peer && p->o.last && p->o.key == s->key && e->off == off &&
		    e->len == len) {
			memcpy(e + 1, (const uint8_t *)r->addr + off, len);
			return flags & SCIF_FLUSH_MORE ? 0 : ofi_push();
		}
		if ((p->peer != s->peer || p->o.len + need > ofi.put) && ofi_push())
			return -ECONNRESET;
	}
	if (!p->o.len) {
		p->peer = s->peer;
		ofi_out_start(&p->o, OFI_OP_PUT, 0);
	}
	ofi_out_add(&p->o, s->key, (uint32_t)off, (const uint8_t *)r->addr + off, (uint32_t)len);
	return flags & SCIF_FLUSH_MORE ? 0 : ofi_push();
}

/*
 * The two-way fence with the process at @peer: a ping that its progress thread answers after
 * everything it had posted toward us. Gives up with -ECONNRESET at @until (ms) or once @link
 * hangs up (@link < 0: no link to watch).
 */
static int ofi_fence_peer(fi_addr_t peer, int link, uint64_t until)
{
	uint64_t arg;
	int i, ret;

	pthread_mutex_lock(&ofi.lock);
	for (;;) {
		for (i = 0; i < OFI_FENCES && ofi.fence[i].busy; i++)
			;
		if (i < OFI_FENCES)
			break;
		pthread_cond_wait(&ofi.fence_cond, &ofi.lock);
	}
	ofi.fence[i].busy = 1;
	ofi.fence[i].done = 0;
	ofi.fence[i].peer = peer;
	ofi.fence[i].gen++;
	arg = (uint64_t)ofi.fence[i].gen << 32 | (uint32_t)i;
	pthread_mutex_unlock(&ofi.lock);
	ret = ofi_note_send(OFI_OP_PING, arg, peer, until);
	pthread_mutex_lock(&ofi.lock);
	while (!ret && !ofi.fence[i].done) {
		ofi_tick();
		/* A peer that is gone never answers: its link says so first. */
		if (!ofi.fence[i].done &&
		    (scif_fabric_now_ms() > until || (link >= 0 && ofi_link_dead(link)))) {
			ret = -ECONNRESET;
		} else if (!ofi.fence[i].done && link < 0) {
			pthread_mutex_unlock(&ofi.lock);
			ret = ofi_peer_gone(peer) ? -ECONNRESET : 0;
			pthread_mutex_lock(&ofi.lock);
		}
	}
	ofi.fence[i].busy = 0;
	pthread_cond_broadcast(&ofi.fence_cond);
	pthread_mutex_unlock(&ofi.lock);
	return ret;
}

static int ofi_region_fence(const struct scif_region *r, int link)
{
	const struct ofi_shadow *s = (const struct ofi_shadow *)(uintptr_t)r->priv[0];

	if (!r->priv[1])
		return -EINVAL;
	return ofi_fence_peer(s->peer, link, scif_fabric_now_ms() + OFI_OP_MS);
}

/*
 * At exit: the bytes this process sent are on the wire, on other paths than the links whose
 * hang-up its peers are about to see. A process that exits without closing its endpoints
 * closes them all the same (spec 4.2: nothing it sent is lost): fence every peer process
 * that one of those endpoints is still connected to (a link of ours to it is up), within
 * OFI_EXIT_MS in all. Endpoints closed before were fenced by their close (conn_fini), and a
 * peer whose links are all closed or hung up is owed nothing: it is left out, so that a
 * process that outlived some of its peers does not spend OFI_EXIT_MS waiting for the
 * answer of one that is gone (and the live ones behind it in the list get their fence).
 */
static void ofi_at_exit(void)
{
	uint64_t until = scif_fabric_now_ms() + OFI_EXIT_MS;
	fi_addr_t addr[64];
	int n = 0, dead;

	if (!ofi.ready || __atomic_load_n(&ofi.forked, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&ofi.lock);
	for (struct ofi_peer *p = ofi.peers; p && n < 64; p = p->next)
		if (ofi_peer_links_locked(p->addr, &dead))
			addr[n++] = p->addr;
	pthread_mutex_unlock(&ofi.lock);
	for (int i = 0; i < n && scif_fabric_now_ms() < until; i++)
		ofi_fence_peer(addr[i], -1, until);
}

/* ---- bells ------------------------------------------------------------------------------ */

static int ofi_bell_create(struct scif_fabric *fab, int *user, struct scif_bell *own)
{
	uint32_t i;
	int ret = scif__fabric_local.bell_create(fab, user, own);

	if (ret)
		return ret;
	pthread_mutex_lock(&ofi.lock);
	for (i = 0; i < ofi.nbells && ofi.bells[i].fd >= 0; i++)
		;
	if (i == ofi.nbells) {
		uint32_t n = ofi.nbells ? ofi.nbells * 2 : 64;
		struct ofi_bell_slot *b = realloc(ofi.bells, sizeof(*b) * n);

		if (!b) {
			pthread_mutex_unlock(&ofi.lock);
			close(*user);
			scif__fabric_local.bell_close(own);
			*user = -1;
			return -ENOMEM;
		}
		/* Generations start random: a peer cannot guess the token of a bell it was
		 * never given (it could only ring or unpark it, but even that). */
		for (uint32_t k = ofi.nbells; k < n; k++) {
			b[k] = (struct ofi_bell_slot){ .fd = -1 };
			if (getrandom(&b[k].gen, sizeof(b[k].gen), GRND_NONBLOCK) !=
			    sizeof(b[k].gen))
				b[k].gen = (uint32_t)(k * 2654435761u ^ (uint32_t)getpid());
		}
		ofi.bells = b;
		ofi.nbells = n;
	}
	ofi.bells[i].fd = own->fd;
	own->priv = (uint64_t)ofi.bells[i].gen << 32 | i;
	pthread_mutex_unlock(&ofi.lock);
	return 0;
}

/* Under ofi.lock: the slot of our own bell @b, or NULL. */
static struct ofi_bell_slot *ofi_bell_slot(const struct scif_bell *b)
{
	uint32_t i = (uint32_t)b->priv;

	return i < ofi.nbells && ofi.bells[i].fd == b->fd && b->fd >= 0 ? &ofi.bells[i] : NULL;
}

static void ofi_bell_quiet(struct scif_bell *own, const uint64_t *word, uint64_t mask)
{
	struct ofi_bell_slot *s;

	pthread_mutex_lock(&ofi.lock);
	if ((s = ofi_bell_slot(own))) {
		s->quiet = word;
		s->quiet_mask = mask;
	}
	pthread_mutex_unlock(&ofi.lock);
}

static void ofi_bell_export(const struct scif_bell *own, struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = -1, .kind = OFI_FH_BELL, .word = { own->priv } };
}

static int ofi_bell_import(struct scif_fabric *fab, struct scif_fh *fh, struct scif_bell *peer)
{
	(void)fab;
	if (fh->kind != OFI_FH_BELL)
		return -EPROTO;
	/* @priv32: the peer process's address + 1 (0: nothing imported). */
	*peer = (struct scif_bell){ .fd = -1, .priv32 = (uint32_t)fh->word[2] + 1,
				    .priv = fh->word[0] };
	ofi_peer_ref(fh->word[2], 1);
	return 0;
}

static int ofi_ring(const struct scif_bell *b)
{
	struct ofi_pending *p = &ofi_pend;

	if (b->fd >= 0) {
		/* Our own bell (the core rings itself): counted like the peer's rings. */
		int r = scif__fabric_local.ring(b);
		struct ofi_bell_slot *s;

		pthread_mutex_lock(&ofi.lock);
		if ((s = ofi_bell_slot(b)))
			s->rings++;
		pthread_mutex_unlock(&ofi.lock);
		return r;
	}
	if (p->o.len && p->peer + 1 == (fi_addr_t)b->priv32) {
		/* The bytes this ring is for, and the ring, in one message. */
		p->o.m.n.op |= OFI_PUT_RING;
		p->o.m.n.arg = b->priv;
		return ofi_push();
	}
	return ofi_note_send(OFI_OP_RING, b->priv, b->priv32 - 1, 0);
}

/*
 * Drain our bell @own from @user, its other end, unless nothing was written into it since
 * it was last drained: most of the peer's rings are left out while the owner looks by
 * itself (bell_quiet), and its next drain would be a system call that finds nothing. Every
 * write is counted after it is made and @drained is set before the descriptor is read, so
 * a byte written is always followed by a count that the next drain sees.
 */
static int ofi_bell_drain(const struct scif_bell *own, int user)
{
	struct ofi_bell_slot *s;

	pthread_mutex_lock(&ofi.lock);
	s = ofi_bell_slot(own);
	if (s && s->rings == s->drained) {
		pthread_mutex_unlock(&ofi.lock);
		return 0;
	}
	if (s)
		s->drained = s->rings;
	pthread_mutex_unlock(&ofi.lock);
	return scif__fabric_local.drain(user);
}

static int ofi_drain(int fd)
{
	return scif__fabric_local.drain(fd);
}

static int ofi_unpark(const struct scif_bell *peer)
{
	return ofi_note_send(OFI_OP_UNPARK, peer->priv, peer->priv32 - 1, 0);
}

static void ofi_bell_close(struct scif_bell *b)
{
	if (b->fd < 0) {
		if (b->priv32) /* the peer's bell */
			ofi_peer_ref(b->priv32 - 1, -1);
		*b = (struct scif_bell){ .fd = -1 };
		return;
	}
	struct ofi_bell_slot *s;

	pthread_mutex_lock(&ofi.lock);
	if ((s = ofi_bell_slot(b))) {
		s->fd = -1;
		s->gen++;
		s->quiet = NULL;
	}
	pthread_mutex_unlock(&ofi.lock);
	scif__fabric_local.bell_close(b);
}

/* ---- window memory ---------------------------------------------------------------------- */

/*
 * Window memory is a memfd as on the local fabric (the core maps it over the application's
 * pages); this fabric maps it once more and registers that mapping, the same pages, for the
 * peer's RDMA: once per kind of access a window can grant (read, write, both), so that the
 * key a window hands out allows only what the window does. priv[0] holds a struct ofi_mem.
 */
enum { OFI_MR_RD, OFI_MR_WR, OFI_MR_RW, OFI_MRS };

struct ofi_mem {
	void *map;
	struct fid_mr *mr[OFI_MRS];
};

static int ofi_mem_alloc(struct scif_fabric *fab, size_t len, unsigned int page_shift,
			 struct scif_mem *m)
{
	static const uint64_t access[OFI_MRS] = { FI_REMOTE_READ, FI_REMOTE_WRITE,
						  FI_REMOTE_READ | FI_REMOTE_WRITE };
	struct ofi_mem *om;
	int ret = ofi_live() ? -ENOMEM : scif__fabric_local.mem_alloc(fab, len, page_shift, m);

	if (ret)
		return ret;
	om = calloc(1, sizeof(*om));
	if (om) {
		om->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
		if (om->map == MAP_FAILED)
			om->map = NULL;
	}
	for (int i = 0; !ret && i < OFI_MRS; i++)
		ret = om && om->map ? ofi_mr(om->map, len, access[i], &om->mr[i], NULL) : -ENOMEM;
	if (ret) {
		for (int i = 0; om && i < OFI_MRS; i++)
			ofi_mr_close(om->mr[i]);
		if (om && om->map)
			munmap(om->map, len);
		free(om);
		scif__fabric_local.mem_free(m);
		return -ENOMEM;
	}
	m->priv[0] = (uintptr_t)om;
	return 0;
}

static void ofi_mem_export(const struct scif_mem *m, off_t off, size_t len, int prot,
			   struct scif_fh *fh)
{
	const struct ofi_mem *om = (const struct ofi_mem *)(uintptr_t)m->priv[0];
	int k = (prot & SCIF_PROT_WRITE) ? (prot & SCIF_PROT_READ ? OFI_MR_RW : OFI_MR_WR)
					 : OFI_MR_RD;
	uint64_t base = ofi.virt_addr ? (uintptr_t)om->map : 0;

	(void)len;
	*fh = (struct scif_fh){ .fd = -1, .kind = OFI_FH_MEM,
				.word = { base + (uint64_t)(m->off + off), fi_mr_key(om->mr[k]) } };
}

/* The peer's window: where it is and its key; nothing to map (addr stays NULL). */
static int ofi_mem_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len, int prot,
			  struct scif_mem *m)
{
	(void)fab;
	(void)prot;
	if (fh->kind != OFI_FH_MEM || !len)
		return -EINVAL;
	/* @priv[2]: the peer process's address + 1 (0: nothing imported). */
	*m = (struct scif_mem){ .fd = -1, .len = len,
				.priv = { fh->word[0], fh->word[1], fh->word[2] + 1 } };
	ofi_peer_ref(fh->word[2], 1);
	return 0;
}

static void ofi_mem_free(struct scif_mem *m)
{
	if (m->fd >= 0) { /* ours */
		struct ofi_mem *om = (struct ofi_mem *)(uintptr_t)m->priv[0];

		if (om) {
			for (int i = 0; i < OFI_MRS; i++)
				ofi_mr_close(om->mr[i]);
			if (om->map)
				munmap(om->map, m->len);
			free(om);
		}
		m->priv[0] = 0;
		scif__fabric_local.mem_free(m);
	} else if (m->priv[2]) { /* the peer's */
		ofi_peer_ref(m->priv[2] - 1, -1);
		m->priv[2] = 0;
	}
	m->addr = NULL;
	m->fd = -1;
}

/* RMA into or out of the peer's window; a local buffer is registered for the copy if the
 * provider asks for local registration. */
static int ofi_mem_copy(const struct scif_mem *m, size_t off, void *buf, size_t len, int to_peer)
{
	struct fid_mr *mr = NULL;
	void *desc = NULL;
	int ret;

	if (off > m->len || len > m->len - off || !len)
		return -EINVAL;
	if (ofi.mr_local && ofi_mr(buf, len, to_peer ? FI_WRITE : FI_READ, &mr, &desc))
		return -ENOMEM;
	ret = ofi_rma_wait(!to_peer, buf, len, desc, m->priv[2] - 1, m->priv[0] + off, m->priv[1]);
	ofi_mr_close(mr);
	return ret;
}

const struct scif_fabric_ops scif__fabric_ofi = {
	.size = sizeof(struct scif_fabric_ops),
	.name = "ofi",
	.attach = ofi_attach,
	.port_reserve = ofi_port_reserve,
	.listen = ofi_listen,
	.connect = ofi_connect,
	.accept = ofi_accept,
	.relisten = ofi_relisten,
	.peer_allowed = ofi_peer_allowed,
	.link_send = ofi_link_send,
	.link_recv = ofi_link_recv,
	.region_create = ofi_region_create,
	.region_export = ofi_region_export,
	.region_import = ofi_region_import,
	.region_destroy = ofi_region_destroy,
	.region_flush = ofi_region_flush,
	.region_fence = ofi_region_fence,
	.bell_create = ofi_bell_create,
	.bell_export = ofi_bell_export,
	.bell_import = ofi_bell_import,
	.ring = ofi_ring,
	.drain = ofi_drain,
	.unpark = ofi_unpark,
	.bell_close = ofi_bell_close,
	.mem_alloc = ofi_mem_alloc,
	.mem_export = ofi_mem_export,
	.mem_import = ofi_mem_import,
	.mem_free = ofi_mem_free,
	.mem_copy = ofi_mem_copy,
	.poll = ofi_poll,
	.sleep = ofi_sleep,
	.bell_drain = ofi_bell_drain,
	.bell_quiet = ofi_bell_quiet,
};
