/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ivshm_server.h - host half of the pcie fabric over QEMU's ivshmem-doorbell: an ivshmem server
 * (QEMU's client-server protocol) in which the host itself takes part as peer 0.
 */
#ifndef SCIF_IVSHM_SERVER_H
#define SCIF_IVSHM_SERVER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Model. QEMU guests with "-device ivshmem-doorbell,chardev=...,vectors=N" connect to the server's
 * UNIX socket and get the shared-memory fd plus eventfds from it. The host is peer
 * SCIF__IVSHM_HOST_ID (0, SCIF's node 0) and never connects: the server announces it to every
 * guest as an ordinary peer, with N eventfds that the host reads. Guests get ids 1..65535, the
 * lowest free one first, so a guest that restarts usually gets its old id (its SCIF node) back.
 *
 *  - host rings guest G on vector v: scif__ivshm_ring(srv, G, v); the guest's MSI-X vector v fires.
 *  - guest G rings the host on vector v: G writes (0 << 16 | v) to its Doorbell register;
 *    scif__ivshm_host_eventfd(srv, G, v) becomes readable. Unlike QEMU's own server, each guest
 *    gets its own set of host eventfds, so the host knows which guest rang.
 *  - guests ring each other directly through QEMU; the server only hands out the eventfds.
 *
 * Every guest must be configured with the same vector count as the server (QEMU rejects extra
 * eventfds and leaves missing vectors unconnected). Rings sent before a guest has enabled MSI-X
 * are dropped by QEMU, and rings that arrive before the previous one was consumed coalesce:
 * handshake through shared memory first, and count events there, not rings.
 *
 * Event loop: scif__ivshm_fd() is pollable (readable when the server has work); call
 * scif__ivshm_dispatch() whenever it is, from one thread. All calls on one server must be
 * serialised by the caller. All functions return 0 (or a count) on success and -errno on failure.
 */

#define SCIF__IVSHM_HOST_ID 0
#define SCIF__IVSHM_MAX_ID 65535
#define SCIF__IVSHM_MAX_VECTORS 64

struct scif__ivshm_server;

enum scif__ivshm_event {
	SCIF__IVSHM_PEER_CONNECTED,	/* setup messages queued; its eventfds are valid now */
	SCIF__IVSHM_PEER_DISCONNECTED,	/* still listed during the callback; its eventfds are
					 * closed after it returns */
};

/*
 * Called from scif__ivshm_dispatch() (and destroy, for each remaining peer); every CONNECTED is
 * matched by one DISCONNECTED. The callback may ring peers and look up eventfds, but must not
 * destroy the server.
 */
typedef void (*scif__ivshm_peer_cb)(void *arg, enum scif__ivshm_event event, uint16_t peer_id);

/*
 * Listen on @socket_path (a stale socket file nobody listens on is replaced) and serve @shm_fd,
 * which must be at least @shm_size bytes (0: use the file's size); QEMU needs a power-of-two size.
 * The server keeps its own duplicate of @shm_fd. @nvectors is 1..SCIF__IVSHM_MAX_VECTORS.
 * Returns NULL with *@errp = -errno on failure.
 */
struct scif__ivshm_server *scif__ivshm_create(const char *socket_path, int shm_fd, uint64_t shm_size,
					      unsigned int nvectors, int *errp);

/* Stop listening, hang up on every guest (they see the peer disconnect), unlink the socket. */
void scif__ivshm_destroy(struct scif__ivshm_server *srv);

void scif__ivshm_set_peer_cb(struct scif__ivshm_server *srv, scif__ivshm_peer_cb cb, void *arg);

/* A pollable fd (epoll) that is readable whenever scif__ivshm_dispatch() has work to do. */
int scif__ivshm_fd(const struct scif__ivshm_server *srv);

/* Handle everything pending without blocking: accept guests, send queued setup messages,
 * notice hang-ups. Returns the number of events handled or -errno (server unusable). */
int scif__ivshm_dispatch(struct scif__ivshm_server *srv);

unsigned int scif__ivshm_nvectors(const struct scif__ivshm_server *srv);
uint64_t scif__ivshm_shm_size(const struct scif__ivshm_server *srv);

/* Connected guests' ids in ascending order: fills up to @max of them and returns how many there
 * are (which may be more than @max). */
size_t scif__ivshm_peer_ids(const struct scif__ivshm_server *srv, uint16_t *ids, size_t max);

/* The process at the other end of guest @peer_id's connection (SO_PEERCRED: for a QEMU guest,
 * QEMU; every device of one guest has the same), or -ENOENT for an unknown peer. */
int scif__ivshm_peer_pid(const struct scif__ivshm_server *srv, uint16_t peer_id);

/* The eventfd guest @peer_id receives vector @vector on (writing 1 to it rings the guest);
 * -ENOENT for an unknown peer, -EINVAL for a bad vector. Owned by the server. */
int scif__ivshm_peer_eventfd(const struct scif__ivshm_server *srv, uint16_t peer_id,
			     unsigned int vector);

/* The host's eventfd that guest @peer_id rings on @vector: readable when it did (read it to
 * re-arm; the count is how many rings were not yet consumed, coalesced). Non-blocking, owned by
 * the server. */
int scif__ivshm_host_eventfd(const struct scif__ivshm_server *srv, uint16_t peer_id,
			     unsigned int vector);

/* Ring guest @peer_id on @vector. */
int scif__ivshm_ring(struct scif__ivshm_server *srv, uint16_t peer_id, unsigned int vector);

/* Add one to eventfd @fd, as a doorbell does (a counter at its maximum is a ring pending
 * already: 0 too). 0 or -errno. */
int scif__eventfd_kick(int fd);

#endif /* SCIF_IVSHM_SERVER_H */
