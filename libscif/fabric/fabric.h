/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fabric.h - the "hardware bus" under the SCIF core: how nodes are found, how a port is held,
 * how two endpoints get a control link, shared memory and doorbells. The core never knows
 * which fabric it runs on; a fabric never knows SCIF semantics.
 */
#ifndef SCIF_FABRIC_H
#define SCIF_FABRIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct scif_portID;

#define SCIF_MAX_NODES 64
#define SCIF_LINK_MAX_FDS 4

/**
 * struct scif_region - memory one side allocates and the other maps.
 * @addr: where it is mapped in this process.
 * @len:  its length (fixed for its lifetime: the fabric guarantees the peer cannot shrink it).
 * @fd:   the handle that is passed to the peer (local: a sealed memfd), or -1 once not needed.
 */
struct scif_region {
	void *addr;
	size_t len;
	int fd;
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
 * -errno. Descriptors returned are close-on-exec and owned by the caller.
 *
 * A *link* is a reliable, ordered, message-preserving control channel between two endpoints
 * that can carry fabric handles (regions, doorbells) and whose hang-up tells the peer that
 * the other side is gone. A *doorbell* is what one side rings to make the other's endpoint
 * descriptor readable (or, for the sender-wake direction, writable again).
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
 * @link_send:     send one control message with up to SCIF_LINK_MAX_FDS handles.
 * @link_recv:     receive one control message; returns its length, 0 on hang-up, -EAGAIN;
 *                 handles in @fds (*@nfds of them), or *@nfds = -1 if they were lost
 *                 because this process has no descriptor left for them.
 * @region_create: allocate @len bytes of memory the peer can map.
 * @region_import: map a region the peer sent; validates that it is exactly @len long and
 *                 cannot change size.
 * @region_destroy: unmap and release.
 * @notify_pair:   create the endpoint descriptor and its doorbell: @user is what the
 *                 application sees, @bell is rung (written) to make @user readable and read
 *                 to make it writable.
 * @ring:          ring a doorbell once (non-blocking; a full doorbell is already rung).
 * @drain:         consume everything queued on a doorbell's readable side.
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
	int (*link_send)(int link, const void *msg, size_t len, const int *fds, int nfds);
	int (*link_recv)(int link, void *msg, size_t len, int *fds, int *nfds);
	int (*region_create)(struct scif_fabric *fab, size_t len, struct scif_region *r);
	int (*region_import)(struct scif_fabric *fab, int fd, size_t len, struct scif_region *r);
	void (*region_destroy)(struct scif_region *r);
	int (*notify_pair)(int *user, int *bell);
	int (*ring)(int bell);
	int (*drain)(int fd);
};

extern const struct scif_fabric_ops scif__fabric_local;

#endif /* SCIF_FABRIC_H */
