/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fabric.h - the "hardware bus" under the SCIF core: how nodes are found, how a port is held,
 * how two endpoints get a control link, shared memory and doorbells. The core never knows
 * which fabric it runs on; a fabric never knows SCIF semantics.
 *
 * Three kinds of fabric are meant to fit this table: "local" (every node a set of processes
 * of one OS instance: Unix sockets, memfds, socket pairs; fabric/local.c), "pcie" (a PCIe
 * memory window shared with another OS instance: memory is offsets into one aperture file,
 * doorbells are interrupt vectors shared by many endpoints) and "ofi" (nodes on other hosts
 * through libfabric: memory is registered regions the peer reaches by RDMA, not by mapping).
 * So nothing that crosses a link is assumed to be a file descriptor: it is a *fabric handle*
 * (struct scif_fh), which may carry one where the fabric can pass descriptors.
 */
#ifndef SCIF_FABRIC_H
#define SCIF_FABRIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Nanoseconds on the monotonic clock. */
static inline uint64_t scif_fabric_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds on the same clock: the fabrics' deadlines. */
static inline uint64_t scif_fabric_now_ms(void)
{
	return scif_fabric_now_ns() / 1000000u;
}

struct scif_portID;

#define SCIF_MAX_NODES 64
#define SCIF_LINK_MAX_FH 4

/**
 * struct scif_fh - a fabric handle: how a region, a doorbell or window memory is named on a
 * link. The core never looks inside: it moves handles from an export op to link_send, and
 * from link_recv to an import op.
 * @fd:   a descriptor that travels with the handle on fabrics that can pass one (local:
 *        SCM_RIGHTS), else -1.
 * @kind: fabric-defined (for instance which table @word indexes); 0 on the local fabric.
 * @word: fabric-defined words (pcie: aperture offset and length; ofi: address, key, length).
 *
 * Ownership: a handle filled by an export op *borrows* from its object (nothing to release;
 * valid while the object lives). A handle filled by link_recv is owned by the receiver: an
 * import op that succeeds takes what it keeps (it sets @fd to -1), and the core releases
 * every handle it received and did not import with scif_fh_release().
 */
struct scif_fh {
	int fd;
	uint32_t kind;
	uint64_t word[3];
};

/* Let go of received handles that were not imported (a no-op for imported ones). */
static inline void scif_fh_release(struct scif_fh *fh, int n)
{
	for (int i = 0; i < n; i++)
		if (fh[i].fd >= 0) {
			close(fh[i].fd);
			fh[i].fd = -1;
		}
}

/* The owner of a region writes only its first SCIF_REGION_HEAD bytes, and only before it
 * exports it; the rest starts zeroed and is the peer's to write. */
#define SCIF_REGION_HEAD 4096u

/* region_flush: a flush of this thread or a ring of the peer's bell follows at once. */
#define SCIF_FLUSH_MORE 1u
/* region_flush: a consumer's progress, which the peer needs only to find room; may be held. */
#define SCIF_FLUSH_LAZY 2u

/**
 * struct scif_region - memory one side allocates and the other maps (a connection's queue
 * pair). The core reads @addr and @len; @priv is the fabric's. A region whose @addr is NULL
 * holds nothing (a zeroed one is empty).
 * @addr: where it is mapped in this process.
 * @len:  its length (fixed for its lifetime: the fabric guarantees the peer cannot shrink it).
 * @priv: fabric-private state (local: the sealed memfd, meaningful while @addr is set).
 */
struct scif_region {
	void *addr;
	size_t len;
	uint64_t priv[2];
};

/**
 * struct scif_bell - a doorbell. An endpoint has its *own* bell, which makes its descriptor
 * (the one the application polls) readable, and once connected the *peer's* bell, which it
 * rings after producing bytes.
 * @fd:   own bell: the other end of the endpoint descriptor's socket pair, on every fabric
 *        (the core watches it to learn that the application closed its descriptor, parks a
 *        message on the descriptor and shuts it down at disconnect, all generic socket
 *        operations). Peer bell: a descriptor whose hang-up means that every copy of the
 *        peer's endpoint descriptor is closed, which the core may poll and watch; -1 where
 *        the fabric has none (then the link's hang-up is the only sign).
 * @priv32, @priv: fabric-private state (local: none; pcie: a vector and a slot, say). The
 *        bell sits among an endpoint's hot fields: keep it small.
 */
struct scif_bell {
	int fd;
	uint32_t priv32;
	uint64_t priv;
};

/**
 * struct scif_mem - window memory (registration).
 * @fd:   owner (mem_alloc): a descriptor the core maps MAP_SHARED at @off, for the in-place
 *        move of the application's pages and its own copies; imported (mem_import): a
 *        descriptor the core may map again at @off (scif_mmap), or -1 if @addr is all there
 *        is (scif_mmap then makes a second mapping of @addr's pages).
 * @off:  offset of the memory in @fd's file.
 * @len:  its length.
 * @addr: imported only: the fabric's mapping of the peer's window with the protection asked
 *        for, or NULL if the peer's memory cannot be mapped here (a remote-DMA fabric: RMA
 *        then goes by the fabric's @mem_copy op, and scif_mmap answers EOPNOTSUPP).
 * @priv: fabric-private state.
 */
struct scif_mem {
	int fd;
	off_t off;
	size_t len;
	void *addr;
	uint64_t priv[3];
};

/**
 * struct scif_fabric - one process's attachment to a fabric.
 * @ops:      the fabric's operations.
 * @self:     this process's node id.
 * @max_node: highest node id the fabric knows of (online or not).
 * @online:   bitmap of online nodes (bit n = node n).
 * @domain:   the trust domain: endpoints of different domains never see each other.
 * @share_gid: with a group domain, the group whose members may connect (else (gid_t)-1).
 */
struct scif_fabric {
	const struct scif_fabric_ops *ops;
	uint16_t self;
	uint16_t max_node;
	uint64_t online;
	char domain[48];
	gid_t share_gid;
};

/**
 * struct scif_fabric_ops - what a fabric provides. Every op returns 0 / a descriptor, or
 * -errno; none may be NULL unless it says "optional". Descriptors returned are close-on-exec
 * and owned by the caller. On failure an op leaves its output objects empty and takes no
 * handle.
 *
 * A *link* is a reliable, ordered, message-preserving control channel between two endpoints
 * that carries fabric handles, and whose hang-up tells the peer that the other side is gone.
 * Links, listen and port holders are pollable descriptors on every fabric.
 *
 * @size:          sizeof(struct scif_fabric_ops), checked by the core.
 * @name:          fabric name ("local", "pcie", ...).
 * @attach:        learn the own node id and online nodes; -ENXIO if this node is not online.
 * @port_reserve:  hold @port of the own node; returns a holder descriptor whose close frees
 *                 the port; -EADDRINUSE if taken.
 * @listen:        accept links for @port with at most @backlog pending; returns its fd.
 * @connect:       start a link to @dst from the holder of local port @lport; non-blocking;
 *                 returns the link fd (it may still be completing) or -ECONNREFUSED.
 * @accept:        take one pending link from a listen fd; -EAGAIN if none.
 * @relisten:      change how many links may wait in the listen fd (@backlog >= 1).
 * @peer_allowed:  whether the process at the other end of @link may talk to us (credentials).
 * @peer_process:  optional: the process id at the other end of @link if this process may
 *                 copy to and from that process's memory directly (same host, same user),
 *                 else 0. Single-copy transfers (bulk.c) are used only where it says so.
 * @link_send:     send one control message of @len bytes with @nfh (<= SCIF_LINK_MAX_FH)
 *                 handles, borrowed (the objects keep them). -EAGAIN if the link is full,
 *                 -ECONNRESET if the peer is gone.
 * @link_recv:     receive one control message; returns its length, 0 on hang-up, -EAGAIN
 *                 (none whole yet: the link polls readable again only once one is, so a
 *                 message that arrives in pieces is never waited for), -EPROTO for a
 *                 malformed one. Up to *@nfh handles land in @fh (*@nfh says
 *                 how many; the caller owns them), or *@nfh = -1 if they were lost because
 *                 this process has no descriptor left for them (the message stands).
 * @region_create: allocate @len bytes of memory the peer can map.
 * @region_export: name region @r in @fh (borrowed).
 * @region_import: map a region the peer sent in @fh; validates that it is exactly @len long
 *                 and cannot change size (-EPROTO), -ENOMEM for resources. A fabric that
 *                 imports a shadow copies the region's head (SCIF_REGION_HEAD) into it.
 * @region_destroy: unmap and release (an empty region: nothing).
 * @region_flush:  optional: for a fabric whose imported region is a local *shadow* of the
 *                 peer's memory (written here, carried there by remote writes): make bytes
 *                 [@off, @off + @len) of the shadow reach the peer, after every range flushed
 *                 before on the same link (the ring discipline: data, then its index). The
 *                 bytes are read when the call is made or, for ranges longer than a cache line,
 *                 before the peer can see a later flush; -ECONNRESET if the peer is gone. NULL
 *                 where an imported region is the peer's memory itself (local, pcie).
 *                 @flags: SCIF_FLUSH_MORE promises that this thread flushes again without
 *                 it, or rings the peer's bell, before it does anything else with the
 *                 fabric: the fabric may then hold the range and carry it with those (one
 *                 message for data, index and doorbell), else it sends at once.
 *                 SCIF_FLUSH_LAZY (never with MORE) says the peer can wait for the range
 *                 until it asks: the fabric may hold it (its bytes read when it goes, so a
 *                 later write of the range is carried too) and carry it with the next
 *                 message toward the peer's process, but at the latest before anything
 *                 else this side sends there (a ring, an unpark, the answer to a fence),
 *                 so that the peer's region_fence always brings it.
 * @region_fence:  optional, with @region_flush: a two-way barrier for a side about to sleep.
 *                 On return, every range flushed to the peer before the call has landed there,
 *                 and every range the peer flushed toward us before it could see those has
 *                 landed here. Pairs a waiter's "publish my wait word, then look at the
 *                 other's index" with the other side's "publish my index, then look at the
 *                 wait word", which a store/load barrier pairs on coherent memory. Gives up
 *                 with -ECONNRESET once @link, the connection's link, hangs up.
 * @bell_create:   create the endpoint descriptor (*@user, a local socket end the application
 *                 polls) and the own bell @own whose ring makes it readable.
 * @bell_export:   name the own bell @own in @fh (borrowed), so the peer can import it.
 * @bell_import:   take the peer's bell from @fh into @peer (-EPROTO if it is not one).
 * @ring:          ring a bell once, own or peer: make that endpoint's descriptor readable
 *                 (non-blocking; a bell already rung stays rung). The fast path: one call.
 * @drain:         consume everything queued on the readable side of a descriptor of the
 *                 endpoint's socket pair: the user descriptor (the rings of the own bell) or
 *                 the own bell's @fd (a message parked on the user descriptor).
 * @unpark:        make the peer's descriptor writable again (local: drain what the peer
 *                 parked on it, through its bell).
 * @bell_close:    release a bell, own or peer (a bell whose @fd is -1 and has no state:
 *                 nothing).
 * @mem_alloc:     memory of @len bytes for a window, in pages of 2^@page_shift bytes if
 *                 @page_shift is not 0 (-ENOMEM for any resource); see struct scif_mem.
 * @mem_export:    name [@off, @off+@len) of @m in @fh (borrowed), for a window that grants
 *                 the peer @prot (SCIF_PROT_READ/WRITE): a fabric whose handle is itself the
 *                 peer's access (a remote key) grants no more than that.
 * @mem_import:    take the peer's window of @len bytes from @fh and map it with @prot
 *                 (PROT_READ/PROT_WRITE); -EINVAL if the handle cannot hold such a window
 *                 (it could shrink, is too short, is no memory), -ENOMEM for resources.
 * @mem_free:      release memory from mem_alloc or mem_import (unmapping @addr).
 * @mem_copy:      optional, required by a fabric whose mem_import leaves @addr NULL: copy
 *                 @len bytes between @buf (any memory of this process) and byte @off of the
 *                 imported window @m (@to_peer: into it), complete (visible to the peer) on
 *                 return and after every copy that returned before. 0, -EINVAL if the range
 *                 is not inside @m, -ECONNRESET if the peer is gone.
 * @poll:          optional: one non-blocking pass of the fabric's own progress, for a core
 *                 thread that spins waiting for the peer (@spin 1) or a non-blocking call
 *                 that found nothing (@spin 0), on a fabric whose peer's writes land only
 *                 when someone progresses it. Must be cheap when there is nothing. Such a
 *                 fabric may count on a spinner, and leave its own progress alone, for a
 *                 short while after each call with @spin (unless @sleep says a thread
 *                 sleeps waiting); a non-blocking caller may go on to sleep in its own
 *                 poll(2), where the library cannot see it, so it vouches for nothing.
 * @sleep:         optional, for a fabric with @poll: a thread of the core is about to sleep
 *                 in poll(2) until the peer writes or rings (@asleep 1), or is back (0);
 *                 every 1 is followed by one 0. While one sleeps, the fabric progresses by
 *                 itself.
 * @bell_drain:    optional: drain(@user) where @user is the other end of our own bell @own
 *                 (bell_create): a fabric that knows nothing was rung since the last drain
 *                 may skip the system call.
 * @bell_quiet:    optional: the peer's rings of the own bell @own (each tells the owner to
 *                 look at what the peer wrote, and comes after it) may be left out while
 *                 *@word has a bit of @mask set: the owner is looking by itself. The fabric
 *                 reads @word when those bytes are in place, after a full barrier; the owner
 *                 clears the bits, makes a full barrier and looks once more before it
 *                 sleeps, so one of the two always sees the other. For a fabric that takes
 *                 the peer's rings on the owner's side (the peer of a shadow fabric rings
 *                 every time: it cannot read @word). @word lives as long as @own.
 */
struct scif_fabric_ops {
	size_t size;
	const char *name;
	int (*attach)(struct scif_fabric *fab);
	int (*port_reserve)(struct scif_fabric *fab, uint16_t port);
	int (*listen)(struct scif_fabric *fab, uint16_t port, int backlog);
	int (*connect)(struct scif_fabric *fab, int holder, const struct scif_portID *dst);
	int (*accept)(struct scif_fabric *fab, int lfd);
	int (*relisten)(int lfd, int backlog);
	int (*peer_allowed)(struct scif_fabric *fab, int link);
	pid_t (*peer_process)(int link);
	int (*link_send)(int link, const void *msg, size_t len, const struct scif_fh *fh,
			 int nfh);
	int (*link_recv)(int link, void *msg, size_t len, struct scif_fh *fh, int *nfh);
	int (*region_create)(struct scif_fabric *fab, size_t len, struct scif_region *r);
	void (*region_export)(const struct scif_region *r, struct scif_fh *fh);
	int (*region_import)(struct scif_fabric *fab, struct scif_fh *fh, size_t len,
			     struct scif_region *r);
	void (*region_destroy)(struct scif_region *r);
	int (*region_flush)(const struct scif_region *r, size_t off, size_t len,
			    unsigned int flags);
	int (*region_fence)(const struct scif_region *r, int link);
	int (*bell_create)(struct scif_fabric *fab, int *user, struct scif_bell *own);
	void (*bell_export)(const struct scif_bell *own, struct scif_fh *fh);
	int (*bell_import)(struct scif_fabric *fab, struct scif_fh *fh, struct scif_bell *peer);
	int (*ring)(const struct scif_bell *b);
	int (*drain)(int fd);
	int (*unpark)(const struct scif_bell *peer);
	void (*bell_close)(struct scif_bell *b);
	int (*mem_alloc)(struct scif_fabric *fab, size_t len, unsigned int page_shift,
			 struct scif_mem *m);
	void (*mem_export)(const struct scif_mem *m, off_t off, size_t len, int prot,
			   struct scif_fh *fh);
	int (*mem_import)(struct scif_fabric *fab, struct scif_fh *fh, size_t len, int prot,
			  struct scif_mem *m);
	void (*mem_free)(struct scif_mem *m);
	int (*mem_copy)(const struct scif_mem *m, size_t off, void *buf, size_t len, int to_peer);
	void (*poll)(int spin);
	void (*sleep)(int asleep);
	int (*bell_drain)(const struct scif_bell *own, int user);
	void (*bell_quiet)(struct scif_bell *own, const uint64_t *word, uint64_t mask);
};

extern const struct scif_fabric_ops scif__fabric_local;
extern const struct scif_fabric_ops scif__fabric_pcie;
#ifdef SCIF_HAVE_OFI
extern const struct scif_fabric_ops scif__fabric_ofi;
#endif

#endif /* SCIF_FABRIC_H */
