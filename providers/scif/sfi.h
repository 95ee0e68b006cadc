/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi.h
 * @brief Internals of the `scif` libfabric provider (prefix `sfi_`).
 *
 * The provider knows only the SCIF API (include/scif.h), libfabric's public headers and the
 * kernel's (include/procmap.h: what is mapped at an address).
 *
 * Objects and files:
 *   sfi_init.c    fi_prov_ini, provider variables, fi_getinfo and the attribute checks
 *   sfi_fabric.c  fabric, wait sets (FI_WAIT_FD on an epoll descriptor)
 *   sfi_domain.c  domain, memory regions (SCIF windows), the domain's connection list
 *   sfi_av.c      address vectors (FI_AV_MAP and FI_AV_TABLE of struct sfi_addr)
 *   sfi_cq.c      completion queues and counters
 *   sfi_eq.c      event queues
 *   sfi_conn.c    a framed, non-blocking message stream over one SCIF connection
 *   sfi_lane.c    a connection's mapped lane: frames written into the receiver's ring
 *   sfi_msg.c     FI_EP_MSG endpoints and passive endpoints
 *   sfi_rdm.c     FI_EP_RDM endpoints (tag matching, lazy connections, rendezvous)
 *   sfi_wcache.c  windows kept over receive buffers, for one-copy rendezvous
 *
 * Concurrency: one mutex per domain (sfi_domain::lock) serialises every operation on the
 * domain's objects, including progress. Fabric-level objects (EQs not yet bound, wait sets)
 * have their own lock. The provider reports FI_THREAD_SAFE. A domain opened FI_THREAD_DOMAIN
 * skips its lock (sfi_domain::serial) until a fabric-level object may run its progress from
 * another thread (sfi_domain_share). Lock order: sfi_eq::lock and
 * sfi_wait::lock before sfi_domain::lock; sfi_eq::qlock is innermost (sfi_eq_write may be
 * called with a domain lock held, sfi_eq_attach/detach may not).
 *
 * Progress: FI_PROGRESS_MANUAL. Reading (or waiting on) a CQ, counter or EQ runs the
 * progress function of every endpoint bound to it; nothing runs in the background.
 *
 * Return values: internal functions return 0 / a count, or a negative FI_E* code.
 */
#ifndef SFI_H
#define SFI_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_collective.h>
#include <rdma/providers/fi_log.h>
#include <rdma/providers/fi_prov.h>

#include <scif.h>

#define SFI_PROV_NAME "scif"
#define SFI_FABRIC_NAME "scif"
#define SFI_MAJOR 1
#define SFI_MINOR 0
#define SFI_PROV_VERSION FI_VERSION(SFI_MAJOR, SFI_MINOR)
#define SFI_FI_VERSION FI_VERSION(1, 17)

#define SFI_HIDDEN __attribute__((visibility("hidden")))

/** The provider, for fi_log and fi_param (defined in sfi_init.c). */
extern struct fi_provider sfi_prov;

#define SFI_WARN(subsys, ...) FI_WARN(&sfi_prov, subsys, __VA_ARGS__)
#define SFI_INFO(subsys, ...) FI_INFO(&sfi_prov, subsys, __VA_ARGS__)
#define SFI_DBG(subsys, ...) FI_DBG(&sfi_prov, subsys, __VA_ARGS__)

#define sfi_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/** Provider variables (FI_SCIF_*), read once by fi_prov_ini. */
struct sfi_params {
	size_t eager_max;   /**< FI_SCIF_EAGER_MAX: RDM messages above this go by rendezvous */
	size_t inject_size; /**< FI_SCIF_INJECT_SIZE: fi_inject limit */
	size_t cq_size;     /**< FI_SCIF_CQ_SIZE: default CQ depth */
	size_t tx_size;     /**< FI_SCIF_TX_SIZE: default tx queue depth */
	size_t rx_size;     /**< FI_SCIF_RX_SIZE: default rx queue depth */
	int conn_timeout_ms;/**< FI_SCIF_CONN_TIMEOUT: a lazy RDM connect gives up after this */
	size_t rndv_write_min; /**< FI_SCIF_RNDV_WRITE_MIN: rendezvous from this size write
			    *   into a window over the receive buffer (0: never) */
	size_t lane_size;   /**< FI_SCIF_LANE_SIZE: ring bytes of an RDM connection's mapped
			    *   lane (sfi_lane.c; 0: frames stay on the SCIF byte stream) */
};
extern struct sfi_params sfi_params;

/* ------------------------------------------------------------------------------------ */
/* Intrusive doubly linked list (libfabric's own is not installed). */

struct sfi_list {
	struct sfi_list *next, *prev;
};

#define SFI_LIST_INIT(name) { &(name), &(name) }
static inline void sfi_list_init(struct sfi_list *l) { l->next = l->prev = l; }
static inline bool sfi_list_empty(const struct sfi_list *l) { return l->next == l; }
static inline void sfi_list_insert_tail(struct sfi_list *l, struct sfi_list *n)
{
	n->next = l;
	n->prev = l->prev;
	l->prev->next = n;
	l->prev = n;
}
static inline void sfi_list_insert_head(struct sfi_list *l, struct sfi_list *n)
{
	n->prev = l;
	n->next = l->next;
	l->next->prev = n;
	l->next = n;
}
static inline void sfi_list_remove(struct sfi_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}
#define sfi_list_entry(ptr, type, member) sfi_container_of(ptr, type, member)
#define sfi_list_foreach(l, it) for ((it) = (l)->next; (it) != (l); (it) = (it)->next)
#define sfi_list_foreach_safe(l, it, tmp) \
	for ((it) = (l)->next, (tmp) = (it)->next; (it) != (l); (it) = (tmp), (tmp) = (it)->next)

/** A spin-wait hint to the CPU (x86 pause, arm64 yield). */
static inline void sfi_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/** Monotonic clock in milliseconds (timeouts of the blocking calls). */
static inline int64_t sfi_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
/** Milliseconds left until @p deadline (-1: none, stays -1), never below 0. */
static inline int sfi_left_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - sfi_now_ms();

	return left <= 0 ? 0 : (left > INT32_MAX ? INT32_MAX : (int)left);
}
/** The deadline of a @p timeout in ms (negative: none). */
static inline int64_t sfi_deadline(int timeout)
{
	return timeout < 0 ? -1 : sfi_now_ms() + timeout;
}

/* ------------------------------------------------------------------------------------ */
/* Addresses. */

/**
 * An endpoint's address: a SCIF node and port. This is the raw address (FI_FORMAT_UNSPEC,
 * addrlen sizeof(struct sfi_addr)) that fi_getname returns and fi_av_insert takes.
 * The string form (FI_ADDR_STR, fi_av_straddr, fi_av_insertsvc) is "fi_scif://NODE:PORT".
 * The FI_SOCKADDR_IN form (needed under ofi_rxm, whose AV takes only IP addresses) is
 * AF_INET, address 127.N.N.1 with the node in the middle two bytes in network order (node 0
 * is 127.0.0.1, node 1 is 127.0.1.1), port = the SCIF port; MSG endpoints (sfi_msg.c)
 * accept and return it when info->addr_format is FI_SOCKADDR_IN.
 */
struct sfi_addr {
	uint16_t node;
	uint16_t port;
	uint32_t magic; /**< SFI_ADDR_MAGIC: tells a scif address from garbage */
};
#define SFI_ADDR_MAGIC 0x53464931u /* "SFI1" */

/** Parse "N", "fi_scif://N:P", or node/service strings; 0 or -FI_EINVAL. */
int sfi_addr_parse(const char *node, const char *service, struct sfi_addr *out) SFI_HIDDEN;
/** Like sfi_addr_parse, but a host name ("localhost", 127.x, this machine's name) stands for
 *  node @p host_node (-1: this process's node; 0 for a peer's address: the host). */
int sfi_addr_parse_ext(const char *node, const char *service, int host_node,
		       struct sfi_addr *out) SFI_HIDDEN;
/** An address as fi_info carries it (info->addr_format, src_addr/dest_addr + len):
 *  FI_FORMAT_UNSPEC (struct sfi_addr) or FI_ADDR_STR; 0 or -FI_EINVAL. */
/*
 * FI_SOCKADDR_IN form of a SCIF address, for layered providers (ofi_rxm keeps its peers in
 * an IP address vector): AF_INET, 127.0.0.0/8 with the node in the middle two bytes
 * (node 0 is 127.0.0.1, node 1 is 127.0.1.1, ...), the SCIF port as the port.
 * sfi_addr_from_sin checks @p len and the form; 0 or -FI_EINVAL.
 */
struct sockaddr_in;
void sfi_addr_to_sin(const struct sfi_addr *a, struct sockaddr_in *sin) SFI_HIDDEN;
int sfi_addr_from_sin(const void *addr, size_t len, struct sfi_addr *out) SFI_HIDDEN;
int sfi_addr_from_info(uint32_t addr_format, const void *addr, size_t addrlen,
		       struct sfi_addr *out) SFI_HIDDEN;
/** Format @p a as "fi_scif://N:P" into buf (like fi_av_straddr; returns buf). */
const char *sfi_addr_str(const struct sfi_addr *a, char *buf, size_t *len) SFI_HIDDEN;
/** This process's SCIF node id (scif_get_nodeIDs), or a negative FI_E* code. */
int sfi_self_node(void) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Wait objects: every FI_WAIT_FD object owns (or shares, through a wait set) an epoll
 * descriptor. Endpoints add their SCIF descriptors to the epoll sets of the CQs, counters
 * and EQs they are bound to; a signal (fi_cq_signal, an entry written by another thread)
 * writes an eventfd that is also in the set. */

/** A CQ, counter or EQ that uses a fi_wait_open wait set (fi_wait checks each). */
struct sfi_waitobj {
	struct sfi_list entry;    /**< in sfi_wait::objs */
	struct fid *fid;          /**< the CQ, counter or EQ */
};

struct sfi_wait {
	struct fid_wait wait_fid; /**< valid only for a fi_wait_open wait set */
	struct sfi_fabric *fabric;
	int epfd;           /**< the FI_WAIT_FD descriptor apps poll on */
	int sigfd;          /**< eventfd, in epfd, for signals */
	int refs;           /**< objects using this wait set */
	int sig_pending;    /**< sigfd holds a count (saves a write per completion) */
	struct sfi_list objs;   /**< struct sfi_waitobj of CQs/counters/EQs using a wait set */
	pthread_mutex_t lock;
};

int sfi_wait_init(struct sfi_wait *w, struct sfi_fabric *fab) SFI_HIDDEN;
void sfi_wait_fini(struct sfi_wait *w) SFI_HIDDEN;
/** Add/modify (events != 0) or remove (events == 0) a descriptor; 0 or -errno. */
int sfi_wait_fd(struct sfi_wait *w, int fd, uint32_t events) SFI_HIDDEN;
/** Wake whoever waits on @p w. */
void sfi_wait_signal(struct sfi_wait *w) SFI_HIDDEN;
/** Clear the signal eventfd after a wake-up. */
void sfi_wait_clear(struct sfi_wait *w) SFI_HIDDEN;
/** Block up to @p timeout ms (-1 forever) for activity; 0, -FI_ETIMEDOUT or -FI_EINTR. */
int sfi_wait_block(struct sfi_wait *w, int timeout) SFI_HIDDEN;
/** Give a CQ, counter or EQ (@p fid) the wait object @p obj asks for: none, its own
 *  epoll set @p own (FI_WAIT_FD, FI_WAIT_UNSPEC) or the fi_wait_open set @p set of fabric
 *  @p fab, joined through @p wobj (FI_WAIT_SET); *@p out is the result. 0 or -FI_E*. */
int sfi_wait_setup(struct sfi_fabric *fab, enum fi_wait_obj obj, struct fid_wait *set,
		   struct sfi_wait *own, struct sfi_wait **out, struct sfi_waitobj *wobj,
		   struct fid *fid) SFI_HIDDEN;
/** Undo sfi_wait_setup: finish @p own, or leave the wait set @p w (NULL: nothing). */
void sfi_wait_release(struct sfi_wait *own, struct sfi_wait *w,
		      struct sfi_waitobj *wobj) SFI_HIDDEN;
/** FI_GETWAIT/FI_GETWAITOBJ of a CQ, counter or EQ whose wait object is @p w (or NULL). */
int sfi_wait_control(struct sfi_wait *w, int command, void *arg) SFI_HIDDEN;
/** One step of a blocking read: block on @p w up to @p left ms and clear it, or just
 *  yield without a wait object. -FI_EINTR if interrupted, else 0. */
int sfi_wait_once(struct sfi_wait *w, int left) SFI_HIDDEN;
int sfi_wait_open(struct fid_fabric *fabric, struct fi_wait_attr *attr,
		  struct fid_wait **waitset) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Fabric and domain. */

struct sfi_fabric {
	struct fid_fabric fabric_fid;
	pthread_mutex_t lock;
	int refs;                 /**< domains, EQs, wait sets, passive endpoints */
};

int sfi_fabric_open(struct fi_fabric_attr *attr, struct fid_fabric **fabric,
		    void *context) SFI_HIDDEN;

struct sfi_domain;
struct sfi_ep;

/** A memory region. Regions with FI_REMOTE_READ/WRITE are SCIF windows at the same
 *  offset on every connection of the domain (registered on connections that exist when
 *  fi_mr_reg runs, and by sfi_domain_conn_add on later ones).
 *
 *  THE KEY/ADDRESS RULE: the initiator of an RMA passes (addr, key) and the SCIF offset it
 *  reads or writes in the peer's registered address space is simply  key + addr  (mod 2^64).
 *  - FI_MR_PROV_KEY without FI_MR_VIRT_ADDR (the default): addr is a byte offset from the
 *    region's first byte, and key = offset + (addr - page_addr), the SCIF offset of that
 *    first byte.
 *  - FI_MR_VIRT_ADDR (or legacy FI_MR_BASIC) domains: addr is the target's virtual address
 *    and key = offset + (addr - page_addr) - (uintptr_t)addr.
 *  The window covers [offset, offset + page_len); one unmapped page separates regions, so an
 *  access that runs past a region fails (ENXIO) instead of touching another one.
 *  Regions without remote access have a key (unique, never a SCIF offset) but no window. */
struct sfi_mr {
	struct fid_mr mr_fid;
	struct sfi_domain *domain;
	void *addr;          /**< the buffer as registered */
	size_t len;
	uint64_t access;
	uint64_t offset;     /**< SCIF offset of the page holding addr when remote */
	void *page_addr;     /**< addr rounded down to a page */
	size_t page_len;     /**< registered length, whole pages */
	struct sfi_list entry;   /**< in sfi_domain::mrs (remote-access regions only) */
};
/** The SCIF offset in the target's registered space an RMA (addr, key) refers to. */
static inline uint64_t sfi_rma_offset(uint64_t addr, uint64_t key) { return key + addr; }
/** Find the remote-access region of @p d that holds [off, off+len) (SCIF offsets), or NULL
 *  (domain lock held). */
struct sfi_mr *sfi_mr_find(struct sfi_domain *d, uint64_t off, size_t len) SFI_HIDDEN;

/** One SCIF connection of the domain, on which remote-access regions are registered. */
struct sfi_conn;

struct sfi_domain {
	struct fid_domain domain_fid;
	struct sfi_fabric *fabric;
	pthread_mutex_t lock;     /**< serialises everything under the domain; recursive */
	/**
	 * True while the lock is skipped: the domain was opened FI_THREAD_DOMAIN, so the
	 * application serialises its calls on the domain's objects, and nothing else calls in
	 * (no endpoint of it is driven by an EQ, no CQ or counter of it sits in a wait set;
	 * those are fabric objects another thread may read). Set at open, cleared once and for
	 * all by sfi_domain_share() with the lock held; read relaxed: the application's own
	 * serialisation orders the clearing before its next call on the domain.
	 */
	bool serial;
	bool sent;                /**< an RDM send went out since a CQ read last paused
				   *   (sfi_cq.c cq_readfrom) */
	int refs;                 /**< endpoints, CQs, counters, AVs, MRs */
	uint16_t self_node;
	enum fi_threading threading;
	uint64_t mr_mode;
	uint64_t next_offset;     /**< next free SCIF offset for a region (page aligned) */
	uint64_t next_local_key;  /**< keys of regions without remote access */
	struct sfi_list mrs;      /**< remote-access struct sfi_mr */
	struct sfi_list conns;    /**< struct sfi_conn that are connected */
};

int sfi_domain_open(struct fid_fabric *fabric, struct fi_info *info,
		    struct fid_domain **domain, void *context) SFI_HIDDEN;
static inline void sfi_domain_lock(struct sfi_domain *d)
{
	if (!__atomic_load_n(&d->serial, __ATOMIC_RELAXED))
		pthread_mutex_lock(&d->lock);
}

static inline void sfi_domain_unlock(struct sfi_domain *d)
{
	if (!__atomic_load_n(&d->serial, __ATOMIC_RELAXED))
		pthread_mutex_unlock(&d->lock);
}

/**
 * From now on take the domain's lock: a fabric object (an EQ, a wait set) is about to run
 * the domain's progress, possibly from a thread of its own. Not with the domain lock held
 * (a skipped lock would then be released).
 */
void sfi_domain_share(struct sfi_domain *d) SFI_HIDDEN;

/** Register every remote-access region of the domain on a new connection's SCIF endpoint
 *  and add it to the domain's list; 0 or a negative FI_E* code (connection unusable). */
int sfi_domain_conn_add(struct sfi_domain *d, struct sfi_conn *c) SFI_HIDDEN;
/** Remove a connection from the domain's list (its windows die with its SCIF endpoint). */
void sfi_domain_conn_del(struct sfi_domain *d, struct sfi_conn *c) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Address vectors. */

struct sfi_av {
	struct fid_av av_fid;
	struct sfi_domain *domain;
	enum fi_av_type type;
	struct sfi_addr *table;   /**< FI_AV_TABLE: index -> address (magic 0 = free slot) */
	size_t count, size;       /**< slots used (== size: indices are never reused) */
	size_t size_alloc;        /**< slots allocated */
	uint64_t removals;        /**< bumped by every fi_av_remove: a translation cached
	                               while it stands still holds (slots are never reused) */
	bool async;               /**< opened with FI_EVENT: inserts report to the bound EQ */
	struct sfi_eq *eq;        /**< FI_EVENT: insert completions */
	int refs;                 /**< endpoints bound */
};

int sfi_av_open(struct fid_domain *domain, struct fi_av_attr *attr, struct fid_av **av,
		void *context) SFI_HIDDEN;
/** fi_addr -> address; 0 or -FI_EINVAL (unknown/removed). */
int sfi_av_lookup_addr(struct sfi_av *av, fi_addr_t fi_addr, struct sfi_addr *out) SFI_HIDDEN;
/** address -> fi_addr (for FI_SOURCE), FI_ADDR_NOTAVAIL when not in the AV. */
fi_addr_t sfi_av_reverse(struct sfi_av *av, const struct sfi_addr *a) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Completion queues and counters. */

/** A queued completion: the union of all formats plus the source address. */
struct sfi_cq_entry {
	struct fi_cq_tagged_entry e;
	fi_addr_t src;
};

struct sfi_cq {
	struct fid_cq cq_fid;
	struct sfi_domain *domain;
	enum fi_cq_format format;
	size_t entry_size;
	struct sfi_cq_entry *ring;   /**< grows when full: a CQ never overruns */
	size_t head, count, size;
	struct sfi_list errs;        /**< struct sfi_cq_err, oldest first */
	struct sfi_wait wait_own;    /**< when wait_obj is FI_WAIT_FD/UNSPEC without a set */
	struct sfi_wait *wait;       /**< NULL for FI_WAIT_NONE */
	struct sfi_ep **eps;         /**< endpoints bound, progressed on read */
	size_t neps, eps_size;
	int refs;
	int signaled;                /**< fi_cq_signal: the next blocked sread returns */
	bool idle;                   /**< the last read found nothing (sfi_cq.c) */
	enum fi_cq_wait_cond wait_cond; /**< FI_CQ_COND_THRESHOLD: sread's cond is a count */
	struct sfi_waitobj wobj;     /**< in wait->objs when wait is a fi_wait_open set */
	uint32_t api_version;        /**< the fabric's, for the fi_cq_err_entry layout */
};

int sfi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq,
		void *context) SFI_HIDDEN;
/** Queue a completion (domain lock held); 0 or -FI_ENOMEM. */
int sfi_cq_write(struct sfi_cq *cq, void *context, uint64_t flags, size_t len, void *buf,
		 uint64_t data, uint64_t tag, fi_addr_t src) SFI_HIDDEN;
/** Queue an error completion (copied; err_data is not kept); 0 or -FI_ENOMEM. */
int sfi_cq_write_err(struct sfi_cq *cq, const struct fi_cq_err_entry *err) SFI_HIDDEN;

struct sfi_cntr {
	struct fid_cntr cntr_fid;
	struct sfi_domain *domain;
	uint64_t value, errors;
	struct sfi_wait wait_own;
	struct sfi_wait *wait;
	struct sfi_ep **eps;
	size_t neps, eps_size;
	int refs;
	struct sfi_waitobj wobj;
};

int sfi_cntr_open(struct fid_domain *domain, struct fi_cntr_attr *attr,
		  struct fid_cntr **cntr, void *context) SFI_HIDDEN;
void sfi_cntr_inc(struct sfi_cntr *c) SFI_HIDDEN;
void sfi_cntr_err(struct sfi_cntr *c) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Event queues. */

struct sfi_eq {
	struct fid_eq eq_fid;
	struct sfi_fabric *fabric;
	pthread_mutex_t lock;
	struct sfi_list events;       /**< struct sfi_eq_event, oldest first */
	struct sfi_list errs;
	struct sfi_wait wait_own;
	struct sfi_wait *wait;
	/** CM participants (passive and MSG endpoints, RDM endpoints) progressed on read. */
	struct sfi_list cm_objs;      /**< struct sfi_eq_obj */
	int refs;
	/** Leaf lock of the event lists and refs: sfi_eq_write takes only this one, so it may
	 *  be called with the domain lock held. @c lock (recursive) serialises the CM progress
	 *  and cm_objs; the order is EQ lock, then domain lock, then qlock. Hence
	 *  sfi_eq_attach/detach must NOT be called with a domain lock held. */
	pthread_mutex_t qlock;
	struct sfi_waitobj wobj;
	void *last_err_data;          /**< err_data handed out by the last readerr */
	/** While listeners progress (eq_progress), their FI_CONNREQ events wait here, to be
	 *  queued after what the other participants report in the same pass (qlock). */
	struct sfi_list held;
	bool holding;
};

/** Something whose connection management runs when its EQ is read. */
struct sfi_eq_obj {
	struct sfi_list entry;
	void (*progress)(struct sfi_eq_obj *obj);
	int fd;                       /**< descriptor added to the EQ's wait set, or -1 */
	bool listener;                /**< takes connection requests (a passive endpoint):
	                                   progressed first in a pass, reported last */
	uint32_t events;              /**< epoll events for fd (0: EPOLLIN); to change them
	                                   later call sfi_wait_fd(eq->wait, fd, events) */
};

int sfi_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr, struct fid_eq **eq,
		void *context) SFI_HIDDEN;
/** Queue an event (@p len bytes of @p buf, e.g. struct fi_eq_cm_entry + cm data); takes the
 *  EQ lock itself; 0 or -FI_ENOMEM. */
int sfi_eq_write(struct sfi_eq *eq, uint32_t event, const void *buf, size_t len,
		 uint64_t flags) SFI_HIDDEN;
int sfi_eq_write_err(struct sfi_eq *eq, fid_t fid, void *context, int err, int prov_errno,
		     const void *err_data, size_t err_data_size) SFI_HIDDEN;
/** Add/remove a CM participant (its fd joins/leaves the EQ's wait set). Not with a domain
 *  lock held (see sfi_eq::qlock). */
void sfi_eq_attach(struct sfi_eq *eq, struct sfi_eq_obj *obj) SFI_HIDDEN;
void sfi_eq_detach(struct sfi_eq *eq, struct sfi_eq_obj *obj) SFI_HIDDEN;

/** fi_trywait / fi_wait helpers: run the object's progress; -FI_EAGAIN if it has something
 *  to read, else 0. */
int sfi_cq_ready(struct sfi_cq *cq) SFI_HIDDEN;
int sfi_cntr_ready(struct sfi_cntr *c) SFI_HIDDEN;
int sfi_eq_ready(struct sfi_eq *eq) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Endpoints: what the CQs, counters and EQs see of an endpoint. */

struct sfi_ep {
	struct fid_ep ep_fid;
	struct sfi_domain *domain;
	enum fi_ep_type type;
	uint64_t caps;
	struct sfi_cq *tx_cq, *rx_cq;
	uint64_t tx_flags, rx_flags;  /**< bind flags (FI_SELECTIVE_COMPLETION) and op_flags */
	struct sfi_cntr *send_cntr, *recv_cntr, *read_cntr, *write_cntr;
	struct sfi_cntr *rem_read_cntr, *rem_write_cntr;
	struct sfi_av *av;
	struct sfi_eq *eq;
	bool enabled;
	/** Run the endpoint's data progress (domain lock held). */
	void (*progress)(struct sfi_ep *ep);
	/** Put the endpoint's descriptors into a wait set (events != 0) or take them out
	 *  (events == 0); called on bind/close of a CQ/counter with a wait object. */
	void (*wait_fds)(struct sfi_ep *ep, struct sfi_wait *w, bool add);
	/** Optional, before the caller sleeps on the wait set (domain lock held, progress just
	 *  ran): arm what needs arming (sfi_conn_arm); nonzero if it must not sleep. */
	int (*arm)(struct sfi_ep *ep);
};

/** Attach/detach an endpoint to a CQ or counter's progress list (domain lock held). */
int sfi_cq_attach(struct sfi_cq *cq, struct sfi_ep *ep) SFI_HIDDEN;
void sfi_cq_detach(struct sfi_cq *cq, struct sfi_ep *ep) SFI_HIDDEN;
int sfi_cntr_attach(struct sfi_cntr *c, struct sfi_ep *ep) SFI_HIDDEN;
void sfi_cntr_detach(struct sfi_cntr *c, struct sfi_ep *ep) SFI_HIDDEN;

/** Common fi_ep_bind (CQ, counter, AV, EQ) for both endpoint types; 0 or -FI_E*. */
int sfi_ep_bind_common(struct sfi_ep *ep, struct fid *bfid, uint64_t flags) SFI_HIDDEN;
/** Drop every binding (on close). */
void sfi_ep_unbind_all(struct sfi_ep *ep) SFI_HIDDEN;

/** Report a completed operation: a CQ entry unless FI_SELECTIVE_COMPLETION suppresses it,
 *  and the matching counter. @p op_flags carry FI_SEND/FI_RECV/FI_READ/FI_WRITE/
 *  FI_REMOTE_READ/FI_REMOTE_WRITE and FI_COMPLETION. */
void sfi_ep_complete_tx(struct sfi_ep *ep, void *context, uint64_t op_flags) SFI_HIDDEN;
void sfi_ep_complete_rx(struct sfi_ep *ep, void *context, uint64_t op_flags, size_t len,
			void *buf, uint64_t data, uint64_t tag, fi_addr_t src) SFI_HIDDEN;
/** Report a failed operation (error CQ entry + counter error). olen = bytes truncated. */
void sfi_ep_error_tx(struct sfi_ep *ep, void *context, uint64_t op_flags, int err) SFI_HIDDEN;
void sfi_ep_error_rx(struct sfi_ep *ep, void *context, uint64_t op_flags, int err,
		     size_t len, void *buf, uint64_t data, uint64_t tag, size_t olen) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* sfi_conn: a framed, non-blocking message stream over one connected SCIF endpoint.
 *
 * Every frame is a struct sfi_hdr followed by hdr.len payload bytes. Sending queues a frame
 * (header + a caller-owned iovec, which must stay valid until the tx callback) and pushes
 * as much as fits without blocking; sfi_conn_progress pushes the rest and parses arriving
 * frames. For each arriving header the owner's rx_hdr callback chooses where the payload
 * goes (an iovec, or NULL to discard it); when the payload is in, rx_done runs. A peer is
 * not trusted: a header with a bad version, op or length, or a payload longer than
 * SFI_MAX_MSG, makes the connection fail (conn->err set, on_error called once). */

#define SFI_WIRE_VERSION 4 /* 2: HELLO and HELLO_ACK carry incarnations; 3: short headers;
			    * 4: mapped lanes (SFI_OP_CONN) */
/*
 * A header whose id and size are 0 goes in a shorter form: its first SFI_HDR_DATA bytes
 * (version to data), with version SFI_WIRE_DATA, or, if its data is 0 as well, its first
 * SFI_HDR_SHORT bytes (version to tag), with version SFI_WIRE_SHORT. A frame of up to 32
 * bytes (an eager tagged message of up to 16 bytes, or 8 with CQ data, as Open MPI sends
 * them) travels in libscif's short copy beside the ring index, so the receiver misses on one
 * cache line for it instead of two or three. The first SFI_HDR_PREFIX bytes of every form
 * are alike, and say which form follows.
 */
#define SFI_WIRE_SHORT (0x80 | SFI_WIRE_VERSION)
#define SFI_WIRE_DATA (0x40 | SFI_WIRE_VERSION)
#define SFI_HDR_PREFIX 8 /**< version, op, flags, len: what tells the forms apart */
#define SFI_HDR_SHORT 16 /**< bytes of a short header on the wire */
#define SFI_HDR_DATA 24  /**< bytes of a header with CQ data, but no id or size */
#define SFI_MAX_MSG ((size_t)1 << 31) /**< largest single message (max_msg_size) */
#define SFI_MAX_IOV 8                 /**< iov_limit of every endpoint */

struct sfi_hdr {
	uint8_t version;   /**< SFI_WIRE_VERSION, SFI_WIRE_DATA or SFI_WIRE_SHORT */
	uint8_t op;        /**< owner-defined, < SFI_OP_MAX */
	uint16_t flags;    /**< owner-defined */
	uint32_t len;      /**< payload bytes that follow this header */
	uint64_t tag;      /**< tagged messages */
	uint64_t data;     /**< remote CQ data */
	uint64_t id;       /**< owner-defined (request ids for rendezvous, RMA offsets) */
	uint64_t size;     /**< owner-defined (total message size for rendezvous) */
};
#define SFI_OP_MAX 32
/** The connection's own frames (sfi_lane.c: lane offer, switch, doorbell): never an owner's. */
#define SFI_OP_CONN (SFI_OP_MAX - 1)

struct sfi_conn;

/** A frame queued for sending. The owner embeds it in its request. */
struct sfi_tx {
	struct sfi_list entry;
	struct sfi_hdr hdr;
	struct iovec iov[SFI_MAX_IOV + 1]; /**< [0] is the header (set by sfi_conn_send) */
	size_t iov_count;
	size_t iov_idx, iov_off;           /**< send position */
	void (*done)(struct sfi_conn *c, struct sfi_tx *tx, int err); /**< all bytes handed
	                                      to SCIF (err 0) or the connection failed */
};

struct sfi_conn_ops {
	/** A header arrived. Fill @p iov (at most SFI_MAX_IOV entries, total == hdr->len, or
	 *  return 0 entries to discard the payload) and return the entry count, or a negative
	 *  FI_E* to fail the connection. @p cookie is passed to rx_done.
	 *  Optional extras: set c->rx_discard to N to have the last N payload bytes thrown away
	 *  (then the iovec totals hdr->len - N: truncation); return -FI_EAGAIN when there is no
	 *  room yet: the stream stops and the same header is offered again by the next
	 *  sfi_conn_progress (flow control). Callbacks may call sfi_conn_send/sfi_conn_fini
	 *  but must not free the connection (on_error may: it is its last use). */
	int (*rx_hdr)(struct sfi_conn *c, const struct sfi_hdr *hdr, struct iovec *iov,
		      void **cookie);
	/** The payload of the frame announced by rx_hdr is in place. */
	void (*rx_done)(struct sfi_conn *c, const struct sfi_hdr *hdr, void *cookie);
	/** Optional, first look at a frame that lies whole in a lane's record: @p payload
	 *  (hdr->len bytes, in the peer-writable ring: copy it out once, decide nothing on it)
	 *  follows the validated header. 1 when the owner took the frame (no rx_hdr/rx_done),
	 *  0 to have it parsed the usual way, or a negative FI_E* code to fail the connection. */
	int (*rx_frame)(struct sfi_conn *c, const struct sfi_hdr *hdr, const void *payload);
	/** The connection failed or the peer closed (err: -FI_ECONNRESET, -FI_EIO, ...).
	 *  Queued tx frames have had done(err) called before this. */
	void (*on_error)(struct sfi_conn *c, int err);
};

/**
 * A connection's mapped lane (sfi_lane.c): each side may offer a ring in its own memory,
 * registered as a window on the connection; the peer maps it with scif_mmap and from then on
 * writes its frames there instead of into the SCIF byte stream. The stream stays open for
 * doorbells (a byte when a sleeping receiver armed) and for the peer's hang-up.
 */
struct sfi_lane {
	/* receive side: our ring (ctrl page + ring), a window on the connection */
	uint8_t *rx_map;         /**< mmap()ed by us; munmap()ed after scif_close */
	size_t rx_size;          /**< ring bytes (a power of two) */
	uint64_t rx_salt;        /**< record marks are salt + line number (sfi_lane.c) */
	uint64_t rx_head;        /**< absolute byte position of the next record */
	uint32_t rx_rec_len;     /**< payload bytes of the record being taken (rx_in_rec) */
	uint32_t rx_rec_off;     /**< of which taken */
	bool rx_in_rec;
	bool rx_on;              /**< the peer switched: its frames come through the ring */
	bool rx_gone;            /**< the stream reported the peer gone: drain, then fail */
	unsigned int rx_idle;    /**< empty reads; the stream is looked at every 64th */
	uint64_t rx_arm;         /**< last value stored to ctrl->arm */
	uint64_t rx_wait_seen;   /**< last ctrl->tx_wait value answered with a doorbell */
	/* send side: the peer's ring, mapped */
	uint8_t *tx_map;         /**< scif_mmap()ed; NULL while not offered or not mappable */
	size_t tx_size;
	uint64_t tx_salt;
	uint64_t tx_tail;        /**< absolute byte position of our next record */
	uint64_t tx_head;        /**< the peer's head, as last read (validated) */
	uint64_t tx_rung;        /**< the peer's arm value we last rang the doorbell for */
	uint64_t tx_wait;        /**< last value stored to the peer's ctrl->tx_wait */
	bool tx_on;              /**< our frames go into the peer's ring */
	bool tx_wb;              /**< the mapping is ordinary shared memory (write-back):
				  *   x86 keeps our stores in order without an sfence */
	struct sfi_tx offer_tx;  /**< our OFFER frame */
	struct sfi_tx on_tx;     /**< our ON frame: the last of our frames on the stream */
};

struct sfi_conn {
	scif_epd_t epd;
	struct sfi_addr peer;
	const struct sfi_conn_ops *ops;
	void *owner;               /**< the endpoint that owns the connection */
	struct sfi_list txq;       /**< struct sfi_tx, head is being sent */
	uint8_t *tx_bounce;        /**< a frame up to SFI_CONN_BOUNCE bytes is copied here and
				    *   sent whole (sfi_conn.c); shares rx_stage's allocation */
	uint8_t *tx_spill;         /**< what SCIF took not of a sfi_conn_send_now frame (as
				    *   large, same allocation), sent by @c spill */
	struct sfi_tx spill;       /**< queued while @c spill_busy */
	bool spill_busy;
	/* receive state */
	struct sfi_hdr rx_hdr;
	size_t rx_hdr_got;
	struct iovec rx_iov[SFI_MAX_IOV];
	size_t rx_iov_count, rx_iov_idx, rx_iov_off;
	size_t rx_discard;         /**< payload bytes left to throw away */
	void *rx_cookie;
	bool rx_in_payload;
	uint8_t *rx_stage;         /**< small reads land here first (sfi_conn.c), then parse */
	const uint8_t *rx_view;    /**< where the staged bytes are: rx_stage, or on a lane the
				    *   record in our ring they are parsed from in place */
	size_t rx_stage_off, rx_stage_len; /**< unparsed staged bytes: [off, len) */
	bool rx_drained;           /**< this progress call's last refill took all SCIF had */
	int err;                   /**< 0 while usable */
	bool want_pollout;         /**< frames are waiting for room */
	struct sfi_list tx_done;   /**< frames fully handed to SCIF whose done() is pending */
	bool rx_conn_frame;        /**< the frame being received is an SFI_OP_CONN one */
	uint64_t rx_frames;        /**< frames taken in so far (sfi_conn_progress) */
	struct sfi_lane lane;      /**< zeroed: no lane (frames on the stream) */
	struct sfi_list domain_entry; /**< in sfi_domain::conns */
	struct sfi_list owner_entry;  /**< free for the owner */
};

/** The wire form of @p hdr (SFI_WIRE_*): the short ones when it has no id or size. */
static inline uint8_t sfi_hdr_form(const struct sfi_hdr *hdr)
{
	if (hdr->id || hdr->size)
		return SFI_WIRE_VERSION;
	return hdr->data ? SFI_WIRE_DATA : SFI_WIRE_SHORT;
}

/**
 * Store @p hdr in wire form @p form, for a payload of @p len bytes, at @p dst (8-byte
 * aligned): field by field, so that a header composed just before (in narrower stores)
 * is never read back in wider loads, which the CPU cannot serve from its store buffer.
 * Returns the bytes stored (sfi_hdr_form_len(form)).
 */
static inline size_t sfi_hdr_store(void *dst, const struct sfi_hdr *hdr, uint8_t form,
				   uint32_t len)
{
	struct sfi_hdr *o = dst;

	o->version = form;
	o->op = hdr->op;
	o->flags = hdr->flags;
	o->len = len;
	o->tag = hdr->tag;
	if (form == SFI_WIRE_SHORT)
		return SFI_HDR_SHORT;
	o->data = hdr->data;
	if (form == SFI_WIRE_DATA)
		return SFI_HDR_DATA;
	o->id = hdr->id;
	o->size = hdr->size;
	return sizeof(*o);
}

/** Bytes on the wire of a header whose prefix says @p version; 0 for no known form. */
static inline size_t sfi_hdr_form_len(uint8_t version)
{
	switch (version) {
	case SFI_WIRE_SHORT:
		return SFI_HDR_SHORT;
	case SFI_WIRE_DATA:
		return SFI_HDR_DATA;
	case SFI_WIRE_VERSION:
		return sizeof(struct sfi_hdr);
	default:
		return 0;
	}
}

/** How many bytes the header being received has on the wire, as far as is known yet. */
static inline size_t sfi_conn_hdr_need(const struct sfi_conn *c)
{
	size_t n = c->rx_hdr_got < SFI_HDR_PREFIX ? 0 : sfi_hdr_form_len(c->rx_hdr.version);

	/* no form (yet): the prefix, refused as it stands by sfi_conn_rx_start */
	return n ? n : SFI_HDR_PREFIX;
}

/** The header of the frame being received is complete (in any form). */
static inline bool sfi_conn_hdr_done(const struct sfi_conn *c)
{
	return c->rx_hdr_got >= SFI_HDR_PREFIX && c->rx_hdr_got == sfi_conn_hdr_need(c);
}

/** Events the connection's descriptor should be waited for (POLLIN, plus POLLOUT while
 *  frames wait for room). */
static inline uint32_t sfi_conn_events(const struct sfi_conn *c)
{
	/* Room in the peer's ring comes with a doorbell (POLLIN), never with POLLOUT. */
	uint32_t ev = c->want_pollout && !c->lane.tx_on ? POLLOUT : 0;

	if (c->epd < 0 || c->err)
		return 0;
	/* A header the owner has no room for holds the stream: more POLLIN would only spin. */
	if (c->rx_in_payload || !sfi_conn_hdr_done(c))
		ev |= POLLIN;
	return ev;
}

/** Initialise around a connected SCIF endpoint (set O_NONBLOCK); 0 or -FI_E*. */
int sfi_conn_init(struct sfi_conn *c, scif_epd_t epd, const struct sfi_addr *peer,
		  const struct sfi_conn_ops *ops, void *owner) SFI_HIDDEN;
/**
 * Send a small frame at once, without a struct sfi_tx: @p hdr and the @p len bytes at
 * @p buf are copied into the bounce buffer and handed to SCIF in one scif_send. Only when
 * no frame is queued before it and it fits SFI_CONN_BOUNCE. 1 when the frame is the
 * connection's (a rest SCIF had no room for is kept and goes before any later frame), 0
 * when nothing was sent: the caller then takes sfi_conn_send, which also meets any error.
 */
int sfi_conn_send_now(struct sfi_conn *c, const struct sfi_hdr *hdr, const void *buf,
		      size_t len) SFI_HIDDEN;
/** Queue a frame: @p hdr (its len is computed from iov), @p iov (count <= SFI_MAX_IOV).
 *  Never blocks; pushes what fits now. 0 or the connection's error. Never calls tx->done
 *  itself (done runs from sfi_conn_progress or sfi_conn_fini), so the caller may still use
 *  @p tx after it returns; on an error return the frame was not queued and done never runs. */
int sfi_conn_send(struct sfi_conn *c, struct sfi_tx *tx, const struct sfi_hdr *hdr,
		  const struct iovec *iov, size_t count) SFI_HIDDEN;
/** Push queued frames and parse arriving ones; returns the connection's error (0 if ok). */
int sfi_conn_progress(struct sfi_conn *c) SFI_HIDDEN;
/** Fail queued frames with @p err, close the SCIF endpoint. Idempotent. */
void sfi_conn_fini(struct sfi_conn *c, int err) SFI_HIDDEN;
/**
 * Before the caller sleeps on the connection's descriptor (fi_trywait, sread, cntr wait):
 * arm the mapped lane's doorbells. 1 when it must not sleep (bytes or room arrived, or the
 * peer is gone: progress first), 0 when a peer's next frame or freed room will wake it.
 */
int sfi_conn_arm(struct sfi_conn *c) SFI_HIDDEN;

/* sfi_lane.c: the mapped lane (struct sfi_lane), used by sfi_conn.c only. */

/** Offer the peer a ring of @p size bytes (a power of two, 4 KiB to 64 MiB) in our memory.
 *  0 when offered or when a lane cannot be had here (the stream serves); never fails the
 *  connection. */
int sfi_lane_offer(struct sfi_conn *c, size_t size) SFI_HIDDEN;
/** An SFI_OP_CONN frame arrived (header only); 0 or a negative FI_E* code (protocol). */
int sfi_lane_ctl(struct sfi_conn *c, const struct sfi_hdr *h) SFI_HIDDEN;
/** Our ON frame is all on the stream: later bytes go into the peer's ring. */
void sfi_lane_tx_switch(struct sfi_conn *c) SFI_HIDDEN;
/** Write the first bytes of @p a (@p alen) then @p b (@p blen) into the peer's ring as one
 *  record; bytes taken (0: no room), or a negative FI_E* code. */
ssize_t sfi_lane_write(struct sfi_conn *c, const void *a, size_t alen, const void *b,
		       size_t blen) SFI_HIDDEN;
/** The rest of the record at our head, in place: its byte count with *@p p set (0: none
 *  now), or a negative FI_E* code as sfi_lane_read. The record stays unread (the sender
 *  cannot write over it) until sfi_lane_release. */
ssize_t sfi_lane_view(struct sfi_conn *c, const uint8_t **p) SFI_HIDDEN;
/**
 * Room for a record of @p n bytes (at most SFI_LANE_SMALL) at the tail of the peer's ring:
 * where to write them, or NULL (no room now, or the peer's head broke the rules, which the
 * next sfi_lane_write reports). The caller writes the bytes in place (no staging copy) and
 * publishes them with sfi_lane_commit before anything else goes on the connection.
 */
uint8_t *sfi_lane_reserve(struct sfi_conn *c, size_t n) SFI_HIDDEN;
/** Publish the @p n bytes written at sfi_lane_reserve's pointer as one record. */
void sfi_lane_commit(struct sfi_conn *c, size_t n) SFI_HIDDEN;
#define SFI_LANE_SMALL 48u /**< sfi_lane_reserve's limit: a record of one line */
/** The viewed record is all taken: give its lines back to the sender. */
void sfi_lane_release(struct sfi_conn *c) SFI_HIDDEN;
/** Take up to @p len bytes from our ring; bytes taken (0: none now), or a negative FI_E*
 *  code (the peer broke the ring's rules, or is gone and everything it wrote was taken). */
ssize_t sfi_lane_read(struct sfi_conn *c, void *buf, size_t len) SFI_HIDDEN;
#define SFI_LANE_LINE 64u   /**< records start on lines of this size */
#define SFI_LANE_CTRL 4096u /**< the control page before the ring, in the window */
#define SFI_LANE_IDLE_LOOK 63u /**< an empty ring looks at the stream every 64th time */

/** The record at our head is there: its mark (first word, stored last by the sender with
 *  release order) is the salt plus the head's line number. */
static inline bool sfi_lane_rx_marked(const struct sfi_lane *l)
{
	const uint64_t *mark = (const uint64_t *)(const void *)(l->rx_map + SFI_LANE_CTRL +
								(l->rx_head & (l->rx_size - 1)));

	return __atomic_load_n(mark, __ATOMIC_ACQUIRE) == l->rx_salt + l->rx_head / SFI_LANE_LINE;
}

/**
 * Nothing to do on a connection whose peer writes into our ring, for a progress call that
 * only polls: no frame half taken or staged, nothing to send or complete, no record at the
 * head. Counts as one of sfi_lane_read's empty looks, and says no before the one that also
 * looks at the stream (every 64th: the peer's end).
 */
static inline bool sfi_conn_rx_quiet(struct sfi_conn *c)
{
	if (!c->lane.rx_on || c->lane.rx_gone || c->lane.rx_in_rec || c->rx_hdr_got ||
	    c->rx_in_payload || c->rx_stage_off != c->rx_stage_len || !sfi_list_empty(&c->txq) ||
	    !sfi_list_empty(&c->tx_done) || sfi_lane_rx_marked(&c->lane) ||
	    (c->lane.rx_idle & SFI_LANE_IDLE_LOOK) == SFI_LANE_IDLE_LOOK)
		return false;
	c->lane.rx_idle++;
	return true;
}

/** The arm step of sfi_conn_arm for the lane; @p tx_blocked: frames wait for ring room. */
int sfi_lane_arm(struct sfi_conn *c, bool rx_held, bool tx_blocked) SFI_HIDDEN;
/** Unmap both rings (after the SCIF endpoint is closed). */
void sfi_lane_fini(struct sfi_conn *c) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Endpoint constructors (fi_endpoint / fi_passive_ep dispatch on info->ep_attr->type). */

int sfi_msg_ep_open(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep,
		    void *context) SFI_HIDDEN;
int sfi_pep_open(struct fid_fabric *fabric, struct fi_info *info, struct fid_pep **pep,
		 void *context) SFI_HIDDEN;
int sfi_rdm_ep_open(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep,
		    void *context) SFI_HIDDEN;

/** The fi_info templates fi_getinfo starts from (sfi_init.c); MSG and RDM. */
extern const struct fi_info sfi_msg_info, sfi_rdm_info;

/* ------------------------------------------------------------------------------------ */
/* Filling unused ops slots: every slot of every table libfabric may call is filled. */

int sfi_no_bind(struct fid *fid, struct fid *bfid, uint64_t flags) SFI_HIDDEN;
int sfi_no_control(struct fid *fid, int command, void *arg) SFI_HIDDEN;
int sfi_no_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
		    void *context) SFI_HIDDEN;
int sfi_no_tostr(const struct fid *fid, char *buf, size_t len) SFI_HIDDEN;
int sfi_no_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops,
		   void *context) SFI_HIDDEN;
/** Tables for endpoints that lack a class of operations: every slot -FI_ENOSYS. */
extern struct fi_ops_atomic sfi_no_atomic_ops SFI_HIDDEN;
extern struct fi_ops_collective sfi_no_collective_ops SFI_HIDDEN;
extern struct fi_ops_tagged sfi_no_tagged_ops SFI_HIDDEN;
extern struct fi_ops_rma sfi_no_rma_ops SFI_HIDDEN;
extern struct fi_ops_msg sfi_no_msg_ops SFI_HIDDEN;
extern struct fi_ops_cm sfi_no_cm_ops SFI_HIDDEN;
/** Single -FI_ENOSYS slots, for tables that implement only part of a class. */
int sfi_no_getpeer(struct fid_ep *ep, void *addr, size_t *addrlen) SFI_HIDDEN;
int sfi_no_connect(struct fid_ep *ep, const void *addr, const void *param,
		   size_t paramlen) SFI_HIDDEN;
int sfi_no_listen(struct fid_pep *pep) SFI_HIDDEN;
int sfi_no_accept(struct fid_ep *ep, const void *param, size_t paramlen) SFI_HIDDEN;
int sfi_no_reject(struct fid_pep *pep, fid_t handle, const void *param,
		  size_t paramlen) SFI_HIDDEN;
int sfi_no_shutdown(struct fid_ep *ep, uint64_t flags) SFI_HIDDEN;
int sfi_no_join(struct fid_ep *ep, const void *addr, uint64_t flags, struct fid_mc **mc,
		void *context) SFI_HIDDEN;
/** Scalable endpoints are not supported: fi_tx_context/fi_rx_context fail -FI_ENOSYS. */
int sfi_no_tx_ctx(struct fid_ep *sep, int index, struct fi_tx_attr *attr,
		  struct fid_ep **tx_ep, void *context) SFI_HIDDEN;
int sfi_no_rx_ctx(struct fid_ep *sep, int index, struct fi_rx_attr *attr,
		  struct fid_ep **rx_ep, void *context) SFI_HIDDEN;
/** fi_rx/tx_size_left: free slots (*size - *used, read under the domain lock) of an
 *  enabled endpoint, -FI_EOPBADSTATE before fi_enable. */
ssize_t sfi_ep_queue_left(struct sfi_ep *ep, const size_t *size, const size_t *used) SFI_HIDDEN;

/**
 * Zero @p n bytes at @p p. Out of line on purpose: GCC expands a memset of a constant size
 * over 64 bytes as `rep stosq`, which takes about 30 cycles to start, where libc's memset
 * clears a 200-byte request in a few (a receive's or a send's setup on the message path).
 */
void sfi_zero(void *p, size_t n) SFI_HIDDEN;

/**
 * Copy @p count iovec entries, field by field: a caller's iovec was most likely stored that
 * way just before (fi_recv's { buf, len } on its stack), and a 16-byte load across the two
 * stores waits for the store buffer to drain, where two 8-byte loads are served from it
 * (so is a memcpy of a bounded count, which GCC expands as rep movsq).
 */
static inline void sfi_iov_copy(struct iovec *dst, const struct iovec *src, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		dst[i].iov_base = src[i].iov_base;
		dst[i].iov_len = src[i].iov_len;
	}
}

/**
 * Copy @p n bytes, at most SFI_COPY_SMALL, in a few moves (two overlapping ones of the
 * largest size that fits): a small message's payload, where a call into libc's memcpy and
 * its size dispatch cost more than the copy.
 */
#define SFI_COPY_SMALL 32u
static inline void sfi_copy_small(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	if (n >= 16) {
		memcpy(d, s, 16);
		memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		memcpy(d, s, 8);
		memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		memcpy(d, s, 4);
		memcpy(d + n - 4, s + n - 4, 4);
	} else if (n) {
		d[0] = s[0];
		d[n - 1] = s[n - 1];
		d[n / 2] = s[n / 2];
	}
}

/** Copy @p len bytes from an iovec at byte offset @p off into @p buf (and back). */
size_t sfi_copy_from_iov(void *buf, size_t len, const struct iovec *iov, size_t count,
			 size_t off) SFI_HIDDEN;
size_t sfi_copy_to_iov(const struct iovec *iov, size_t count, size_t off, const void *buf,
		       size_t len) SFI_HIDDEN;
/** Total bytes of an iovec (SIZE_MAX if they overflow). */
static inline size_t sfi_iov_len(const struct iovec *iov, size_t count)
{
	size_t total = 0;

	for (size_t i = 0; i < count; i++) {
		if (iov[i].iov_len > SIZE_MAX - total)
			return SIZE_MAX;
		total += iov[i].iov_len;
	}
	return total;
}
/** The strerror slot of CQs and EQs: the text of FI_E* code @p prov_errno (either sign),
 *  copied into @p buf when one is given. */
const char *sfi_strerror(int prov_errno, char *buf, size_t len) SFI_HIDDEN;

/* ------------------------------------------------------------------------------------ */
/* Windows kept over receive buffers (sfi_wcache.c). */

#define SFI_WCACHE_SLOTS 64                 /**< ranges known per connection */
#define SFI_WCACHE_BYTES (256ULL << 20)     /**< bytes their windows may cover */
#define SFI_WCACHE_STRIKES 2                /**< stale windows before a range gets none */

/** The file a mapping shows at an address, and the offset in it. */
struct sfi_wfile {
	uint64_t inode, dev, off;
};

/** A range [addr, addr + len) of this process a receive used; with a window at roff. */
struct sfi_wentry {
	uintptr_t addr;
	size_t len;
	off_t roff;
	struct sfi_wfile file; /**< what addr mapped right after registration */
	uint64_t used;         /**< wcache clock at the last use */
	bool registered;       /**< has the window (else only seen) */
	unsigned int strikes;  /**< its windows found holding other memory */
};

/** The windows one connection keeps (zeroed = empty). */
struct sfi_wcache {
	struct sfi_wentry e[SFI_WCACHE_SLOTS];
	unsigned int n;
	size_t bytes;
	uint64_t clock;
};

/** What is mapped at @p addr: its file (inode, device) and the file offset of @p addr, and
 *  how many bytes from @p addr the mapping covers. 0, or -1 if the kernel cannot say
 *  cheaply (no PROCMAP_QUERY before Linux 6.11). */
int sfi_map_where(uintptr_t addr, struct sfi_wfile *f, size_t *cover) SFI_HIDDEN;
/** Whether this kernel can tell what is mapped at an address cheaply (PROCMAP_QUERY). */
bool sfi_wcache_usable(void) SFI_HIDDEN;
/**
 * The window offset of page-aligned [@p addr, @p addr + @p len) on @p epd for the peer to
 * write: a kept window that still maps this memory, or a new one (scif_register,
 * SCIF_PROT_WRITE) for a range seen before, least recently used entries dropped for room.
 * @return 0, -FI_EAGAIN (no window this time: the range is new, or churns),
 *         -FI_EOPNOTSUPP (the kernel cannot tell), -FI_ENOMEM (registration failed).
 */
int sfi_wcache_get(struct sfi_wcache *wc, scif_epd_t epd, uintptr_t addr, size_t len,
		   off_t *roff) SFI_HIDDEN;

/**
 * The data movement of fi_read/fi_write and friends: copy between the local @p iov list
 * and the remote regions @p rma (offset key + addr) over the connected SCIF endpoint
 * @p epd with synchronous RMA (scif_vwriteto/scif_vreadfrom, SCIF_RMA_SYNC), walking both
 * lists until either ends (callers check that the lengths match).
 * @return 0, or the (positive) errno of the failed transfer, EACCES for an offset SCIF
 *         cannot express; each endpoint type maps it to its FI_E* code.
 */
int sfi_rma_copy(scif_epd_t epd, bool write, const struct iovec *iov, size_t count,
		 const struct fi_rma_iov *rma, size_t rma_count) SFI_HIDDEN;

#endif /* SFI_H */
