/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * scif.h - the SCIF user API, source-compatible with Intel's libscif (MPSS 3.x and 4.x).
 * Programs written for Intel's header compile unchanged against this one.
 */
#ifndef __SCIF_H__
#define __SCIF_H__

#ifdef __KERNEL__
#error "scif.h is the user-mode SCIF header; kernel code uses the kernel API"
#endif

/*
 * Intel's header pulls these in and existing programs rely on it: they use uint16_t, off_t,
 * size_t, poll(), POLLIN and errno after including only <scif.h>.
 */
#include <stdint.h>
#include <unistd.h>
#include <errno.h>
#include <sys/types.h>
#include <sys/select.h>
#include <poll.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @file scif.h
 * @brief SCIF: the Symmetric Communication Interface between a host and its coprocessor cards.
 *
 * **Nodes.** A SCIF network is a set of nodes numbered by `uint16_t`: node 0 is the host, cards
 * are 1..N. Every process belongs to one node. With libscif's default *local* fabric all nodes
 * live on one machine and a process picks its node with the environment variable `SCIF_NODE`
 * (default 0), so a host program and a card program run side by side unchanged.
 *
 * **Ports and endpoints.** An endpoint (::scif_epd_t) is a file descriptor. It is bound to a
 * 16-bit port of its node; `(node, port)` (struct ::scif_portID) names it globally. A listening
 * endpoint accepts connection requests; each accepted connection is a new endpoint sharing the
 * listener's port. Connected endpoints exchange a reliable, ordered byte stream with
 * scif_send() and scif_recv(), and can be waited on with scif_poll(), poll(), select() or epoll.
 *
 * **Windows and the registered address space.** Each connected endpoint owns a private 64-bit
 * *registered address space* (RAS). scif_register() maps page-aligned memory of the process
 * into it as a *window*; the peer then reaches that memory by offset with one-sided RMA
 * (scif_readfrom(), scif_writeto(), scif_vreadfrom(), scif_vwriteto()) or maps it with
 * scif_mmap().
 *
 * **Fences.** RMAs issued without ::SCIF_RMA_SYNC complete asynchronously; scif_fence_mark(),
 * scif_fence_wait() and scif_fence_signal() order and observe their completion.
 *
 * **Errors.** Every call returns -1 (or the documented sentinel) and sets `errno`.
 */

/**
 * @defgroup types Types and constants
 * @{
 */

/** Endpoint descriptor: a real file descriptor (usable with poll(), select(), epoll, fcntl()). */
typedef int scif_epd_t;

/** Global port identity: a node and a port of that node. Size 4, no padding. */
struct scif_portID {
	uint16_t node; /**< node id (0 = host) */
	uint16_t port; /**< port number (1..65535) */
};

/** Deprecated compatibility name: `struct portID` is `struct scif_portID`. */
#define portID scif_portID
/** Deprecated compatibility typedef. */
typedef struct portID portID_t;

/** An entry of scif_poll(); layout-identical to `struct pollfd`. */
struct scif_pollepd {
	scif_epd_t epd; /**< endpoint to poll (negative entries are ignored) */
	short events;   /**< requested events (SCIF_POLLIN, SCIF_POLLOUT) */
	short revents;  /**< returned events */
};

/** Windows DLL-export marker of Intel's header; empty on Linux. */
#ifndef MICACCESSAPI
#define MICACCESSAPI
#endif

/** scif_accept(): block until a connection request arrives. */
#define SCIF_ACCEPT_SYNC 1
/** scif_send(): block until every byte is queued. */
#define SCIF_SEND_BLOCK 1
/** scif_recv(): block until every requested byte has arrived. */
#define SCIF_RECV_BLOCK 1

/** Deprecated alias of ::SCIF_ACCEPT_SYNC. */
#define ACCEPT_SYNC SCIF_ACCEPT_SYNC
/** Deprecated alias of ::SCIF_SEND_BLOCK. */
#define SEND_BLOCK SCIF_SEND_BLOCK
/** Deprecated alias of ::SCIF_RECV_BLOCK. */
#define RECV_BLOCK SCIF_RECV_BLOCK

/* These are enumerators in Intel's header (so `#ifdef SCIF_PROT_READ` is false); keep the kind. */
enum {
	SCIF_PROT_READ = 0x1,  /**< window / mapping readable */
	SCIF_PROT_WRITE = 0x2, /**< window / mapping writable */
};

enum {
	SCIF_MAP_FIXED = 0x10,  /**< use exactly the given offset / address */
	SCIF_MAP_KERNEL = 0x20, /**< kernel API only; rejected with EINVAL from user mode */
};

enum {
	SCIF_FENCE_INIT_SELF = 0x1, /**< fence the RMAs initiated through this endpoint */
	SCIF_FENCE_INIT_PEER = 0x2, /**< fence the RMAs initiated by the peer endpoint */
	SCIF_FENCE_RAS_SELF = 0x4,  /**< defined by Intel, accepted by no call (EINVAL) */
	SCIF_FENCE_RAS_PEER = 0x8,  /**< defined by Intel, accepted by no call (EINVAL) */
	SCIF_SIGNAL_LOCAL = 0x10,   /**< scif_fence_signal(): write lval into the local window */
	SCIF_SIGNAL_REMOTE = 0x20,  /**< scif_fence_signal(): write rval into the peer's window */
};

/** RMA: copy with the CPU. */
#define SCIF_RMA_USECPU 0x1
/** RMA: the local pages of a v-call may be kept for reuse (a hint). */
#define SCIF_RMA_USECACHE 0x2
/** RMA: return only when the data is in place at the destination. */
#define SCIF_RMA_SYNC 0x4
/** RMA: the last cache line lands after every other byte of the transfer. */
#define SCIF_RMA_ORDERED 0x8

#define SCIF_POLLIN POLLIN     /**< data (or a connection request) to read */
#define SCIF_POLLOUT POLLOUT   /**< room to send, or a non-blocking connect finished */
#define SCIF_POLLERR POLLERR   /**< endpoint not in a state that can be polled */
#define SCIF_POLLHUP POLLHUP   /**< peer disconnected */
#define SCIF_POLLNVAL POLLNVAL /**< not an open descriptor */

#define SCIF_OPEN_FAILED ((scif_epd_t)-1)  /**< scif_open() failure */
#define SCIF_REGISTER_FAILED ((off_t)-1)   /**< scif_register() failure */
#define SCIF_MMAP_FAILED ((void *)-1)      /**< scif_mmap() failure (== MAP_FAILED) */

/*
 * Well-known ports of the MPSS stack, in groups of ten: COI 40-49, OFED 60-69, NETDEV 80-89,
 * RAS 100-109, power management 120-129, board tools 130-139, MPSS daemon 160-169, COSM 201.
 * Ports below SCIF_ADMIN_PORT_END need privilege.
 */
/** @cond SCIF_WELL_KNOWN_PORTS */
#define SCIF_COI_PORT_0 40
#define SCIF_COI_PORT_1 41
#define SCIF_COI_PORT_2 42
#define SCIF_COI_PORT_3 43
#define SCIF_COI_PORT_4 44
#define SCIF_COI_PORT_5 45
#define SCIF_COI_PORT_6 46
#define SCIF_COI_PORT_7 47
#define SCIF_COI_PORT_8 48
#define SCIF_COI_PORT_9 49

#define SCIF_OFED_PORT_0 60
#define SCIF_OFED_PORT_1 61
#define SCIF_OFED_PORT_2 62
#define SCIF_OFED_PORT_3 63
#define SCIF_OFED_PORT_4 64
#define SCIF_OFED_PORT_5 65
#define SCIF_OFED_PORT_6 66
#define SCIF_OFED_PORT_7 67
#define SCIF_OFED_PORT_8 68
#define SCIF_OFED_PORT_9 69

#define SCIF_NETDEV_PORT_0 80
#define SCIF_NETDEV_PORT_1 81
#define SCIF_NETDEV_PORT_2 82
#define SCIF_NETDEV_PORT_3 83
#define SCIF_NETDEV_PORT_4 84
#define SCIF_NETDEV_PORT_5 85
#define SCIF_NETDEV_PORT_6 86
#define SCIF_NETDEV_PORT_7 87
#define SCIF_NETDEV_PORT_8 88
#define SCIF_NETDEV_PORT_9 89

#define SCIF_RAS_PORT_0 100
#define SCIF_RAS_PORT_1 101
#define SCIF_RAS_PORT_2 102
#define SCIF_RAS_PORT_3 103
#define SCIF_RAS_PORT_4 104
#define SCIF_RAS_PORT_5 105
#define SCIF_RAS_PORT_6 106
#define SCIF_RAS_PORT_7 107
#define SCIF_RAS_PORT_8 108
#define SCIF_RAS_PORT_9 109

#define SCIF_PM_PORT_0 120
#define SCIF_PM_PORT_1 121
#define SCIF_PM_PORT_2 122
#define SCIF_PM_PORT_3 123
#define SCIF_PM_PORT_4 124
#define SCIF_PM_PORT_5 125
#define SCIF_PM_PORT_6 126
#define SCIF_PM_PORT_7 127
#define SCIF_PM_PORT_8 128
#define SCIF_PM_PORT_9 129

#define SCIF_BT_PORT_0 130
#define SCIF_BT_PORT_1 131
#define SCIF_BT_PORT_2 132
#define SCIF_BT_PORT_3 133
#define SCIF_BT_PORT_4 134
#define SCIF_BT_PORT_5 135
#define SCIF_BT_PORT_6 136
#define SCIF_BT_PORT_7 137
#define SCIF_BT_PORT_8 138
#define SCIF_BT_PORT_9 139

#define MPSSD_MONRECV 160
#define MIC_NOTIFY 161
#define MPSSD_CRED 162
#define MPSSD_MONSEND 163
#define MPSSD_MICCTRL 164
#define MPSSD_RESV5 165
#define MPSSD_RESV6 166
#define MPSSD_RESV7 167
#define MPSSD_RESV8 168
#define MPSSD_RESV9 169

#define SCIF_COSM_LISTEN_PORT 201
/** @endcond */

/** Ports below this number require CAP_SYS_ADMIN to bind. */
#define SCIF_ADMIN_PORT_END 1024

/* MYO ports 1025-1034, SSG tools ports 1044-1053 (not protected, reserved for MPSS). */
/** @cond SCIF_WELL_KNOWN_PORTS */
#define SCIF_MYO_PORT_0 1025
#define SCIF_MYO_PORT_1 1026
#define SCIF_MYO_PORT_2 1027
#define SCIF_MYO_PORT_3 1028
#define SCIF_MYO_PORT_4 1029
#define SCIF_MYO_PORT_5 1030
#define SCIF_MYO_PORT_6 1031
#define SCIF_MYO_PORT_7 1032
#define SCIF_MYO_PORT_8 1033
#define SCIF_MYO_PORT_9 1034

#define SCIF_ST_PORT_0 1044
#define SCIF_ST_PORT_1 1045
#define SCIF_ST_PORT_2 1046
#define SCIF_ST_PORT_3 1047
#define SCIF_ST_PORT_4 1048
#define SCIF_ST_PORT_5 1049
#define SCIF_ST_PORT_6 1050
#define SCIF_ST_PORT_7 1051
#define SCIF_ST_PORT_8 1052
#define SCIF_ST_PORT_9 1053
/** @endcond */

/** Ports below this are reserved for MPSS; dynamic ports are handed out above it. */
#define SCIF_PORT_RSVD 1088

/** @} */

/**
 * @defgroup endpoints Endpoints and messaging
 * @{
 */

/**
 * @brief Create an endpoint.
 *
 * The new endpoint is UNBOUND. Its descriptor is a file descriptor with FD_CLOEXEC set.
 *
 * @return the endpoint descriptor, or ::SCIF_OPEN_FAILED (-1) and errno.
 *
 * Errors:
 * - ENOMEM: not enough memory.
 * - EMFILE, ENFILE: no descriptor available.
 * - ENXIO: the fabric is unavailable (e.g. SCIF_NODE names a node that is not online).
 */
MICACCESSAPI scif_epd_t scif_open(void);

/**
 * @brief Close an endpoint.
 *
 * Releases the endpoint once the last descriptor referring to it is gone (dup() and fork()
 * copies keep it alive). A connected peer becomes DISCONNECTED; pending connection requests on
 * a listener are refused; local windows are unregistered. scif_mmap() mappings stay valid.
 * Threads blocked in scif_send()/scif_recv()/scif_accept() on @p epd return -1/EINTR.
 *
 * @param epd endpoint descriptor
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - EBADF: @p epd is not an open descriptor.
 * - EINVAL: @p epd is an open descriptor but not a SCIF endpoint (it is not closed).
 */
MICACCESSAPI int scif_close(scif_epd_t epd);

/**
 * @brief Bind an endpoint to a port.
 *
 * @param epd endpoint descriptor (UNBOUND)
 * @param pn  port number; 0 picks the lowest free dynamic port above ::SCIF_PORT_RSVD
 * @return the bound port number (> 0), or -1 and errno.
 *
 * Errors, in check order:
 * - EACCES: @p pn below ::SCIF_ADMIN_PORT_END and the caller lacks CAP_SYS_ADMIN.
 * - EINVAL: the endpoint is already bound.
 * - EISCONN: the endpoint is listening, connecting, connected or disconnected.
 * - EINVAL: the port is in use.
 * - ENOSPC: @p pn is 0 and no dynamic port is free.
 * - EBADF, ENOTTY: @p epd is not an open descriptor / not an endpoint.
 */
MICACCESSAPI int scif_bind(scif_epd_t epd, uint16_t pn);

/**
 * @brief Mark a bound endpoint as listening for connection requests.
 *
 * @param epd     endpoint descriptor (BOUND)
 * @param backlog maximum number of pending (not yet accepted) requests; values above 1024 are
 *                clamped. Further requests are refused at once.
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - EINVAL: @p backlog <= 0, or the endpoint is UNBOUND or DISCONNECTED.
 * - EISCONN: the endpoint is already listening, connecting or connected.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_listen(scif_epd_t epd, int backlog);

/**
 * @brief Connect to a listening endpoint.
 *
 * An UNBOUND endpoint is first bound to a dynamic port. A blocking connect returns only when
 * the remote side has accepted the request (there is no implicit accept), it is refused, or
 * 10 s have passed (ECONNREFUSED). With O_NONBLOCK set on the descriptor the first call starts
 * the handshake and fails with EINPROGRESS; poll() reports POLLOUT when it finished and the
 * next scif_connect() returns the result. After a failure the endpoint is BOUND again.
 *
 * @param epd endpoint descriptor
 * @param dst node and port to connect to
 * @return the local port number (> 0), or -1 and errno.
 *
 * Errors, in check order:
 * - EINVAL: @p dst is NULL.
 * - ENODEV: @p dst->node is above the highest node id, or not online.
 * - EINVAL: @p dst->port is 0.
 * - EOPNOTSUPP: the endpoint is listening.
 * - EISCONN: the endpoint is already connected.
 * - EINPROGRESS: a non-blocking connect is in progress.
 * - EINVAL: the endpoint is DISCONNECTED.
 * - ENOSPC: no dynamic port for the automatic bind.
 * - ECONNREFUSED: nobody listens on the port, the backlog is full, the listener closed, or
 *   the request was not accepted in time.
 * - ENOMEM, ENOBUFS: not enough resources.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_connect(scif_epd_t epd, struct scif_portID *dst);

/**
 * @brief Accept a connection request on a listening endpoint.
 *
 * Takes the oldest pending request and returns a new connected endpoint bound to the
 * listener's port. The listener keeps listening.
 *
 * @param epd    listening endpoint
 * @param peer   receives the requester's node and port
 * @param newepd receives the new endpoint's descriptor
 * @param flags  0 (fail with EAGAIN if nothing is pending) or ::SCIF_ACCEPT_SYNC (wait)
 * @return 0, or -1 and errno.
 *
 * Errors, in check order:
 * - EINVAL: @p peer or @p newepd is NULL.
 * - EMFILE, ENFILE: no descriptor for the new endpoint (the request stays pending).
 * - EINVAL: @p flags has a bit other than ::SCIF_ACCEPT_SYNC, or @p epd is not listening.
 * - EAGAIN: nothing pending and no ::SCIF_ACCEPT_SYNC.
 * - EINTR: interrupted by a signal, or the listener was closed while waiting.
 * - ENOMEM, ENOBUFS: not enough resources.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_accept(scif_epd_t epd, struct scif_portID *peer, scif_epd_t *newepd,
			     int flags);

/**
 * @brief Send bytes on the connection's byte stream.
 *
 * Without ::SCIF_SEND_BLOCK, copies as many bytes as fit now and returns that count, which is
 * 0 when there is no room. With it, returns when all @p len bytes are queued, or earlier with
 * the count sent so far if interrupted or disconnected. Concurrent sends on one endpoint do not
 * interleave their bytes. @p len == 0 returns 0 before any other check.
 *
 * @param epd   connected endpoint
 * @param msg   bytes to send
 * @param len   number of bytes
 * @param flags 0 or ::SCIF_SEND_BLOCK (any value with bit 0 set blocks)
 * @return the number of bytes sent, or -1 and errno.
 *
 * Errors:
 * - EINVAL: @p len < 0, or @p flags non-zero without bit 0.
 * - EFAULT: @p msg is not readable.
 * - ENOTCONN: the endpoint is not connected.
 * - ECONNRESET: the peer disconnected and nothing was sent.
 * - EINTR: a signal arrived, or the endpoint was closed, before any byte was sent.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_send(scif_epd_t epd, void *msg, int len, int flags);

/**
 * @brief Receive bytes from the connection's byte stream.
 *
 * Without ::SCIF_RECV_BLOCK, returns what is available now (0 if nothing). With it, returns
 * when @p len bytes arrived, or earlier with a partial count if interrupted or disconnected.
 * After the peer closed, buffered bytes stay readable; then calls fail with ECONNRESET.
 *
 * @param epd   connected endpoint
 * @param msg   destination buffer
 * @param len   number of bytes wanted
 * @param flags 0 or ::SCIF_RECV_BLOCK (any value with bit 0 set blocks)
 * @return the number of bytes received, or -1 and errno.
 *
 * Errors:
 * - EINVAL: @p len < 0, or @p flags non-zero without bit 0.
 * - EFAULT: @p msg is not writable.
 * - ENOTCONN: the endpoint is not connected.
 * - ECONNRESET: the peer disconnected and no byte is left.
 * - EINTR: a signal arrived, or the endpoint was closed, before any byte arrived.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_recv(scif_epd_t epd, void *msg, int len, int flags);

/** @} */

/**
 * @defgroup rma Registration and RMA
 * @{
 */

/**
 * @brief Register memory as a window of the endpoint's registered address space.
 *
 * The peer may use the window as soon as this returns.
 *
 * @param epd        connected endpoint
 * @param addr       page-aligned start of the memory
 * @param len        page-aligned length (> 0)
 * @param offset     with ::SCIF_MAP_FIXED the exact offset (page aligned); otherwise a hint
 * @param prot_flags ::SCIF_PROT_READ and/or ::SCIF_PROT_WRITE (0 is accepted)
 * @param map_flags  0 or ::SCIF_MAP_FIXED
 * @return the window's offset, or ::SCIF_REGISTER_FAILED and errno.
 *
 * Errors, in check order:
 * - EINVAL: bad @p map_flags; FIXED with an unaligned, negative or wrapping @p offset; bad
 *   @p prot_flags; @p len 0 or unaligned; @p addr unaligned.
 * - ECONNRESET, ENOTCONN, ENODEV: the endpoint is disconnected / not connected / node lost.
 * - EADDRINUSE: FIXED range overlaps a window (including one still referenced after
 *   unregistration).
 * - ENOMEM: no room in the address space or memory.
 * - EFAULT: part of the range is not mapped, or not writable while WRITE was requested.
 * - EAGAIN: memory-lock limit reached.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI off_t scif_register(scif_epd_t epd, void *addr, size_t len, off_t offset,
				 int prot_flags, int map_flags);

/**
 * @brief Unregister every window lying entirely inside a range.
 *
 * @param epd    connected endpoint
 * @param offset page-aligned start of the range
 * @param len    page-aligned length (> 0)
 * @return 0 (also when the range holds no window), or -1 and errno.
 *
 * Errors:
 * - EINVAL: @p len 0 or unaligned, @p offset unaligned or negative, wrap-around, or a window
 *   straddles a boundary of the range (nothing is unregistered then).
 * - ECONNRESET, ENOTCONN, ENODEV.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_unregister(scif_epd_t epd, off_t offset, size_t len);

/**
 * @brief Copy from the peer's registered address space into the local one.
 *
 * @param epd       connected endpoint
 * @param loffset   destination offset in the local RAS (needs WRITE)
 * @param len       number of bytes (> 0)
 * @param roffset   source offset in the peer's RAS (needs READ)
 * @param rma_flags ::SCIF_RMA_USECPU, ::SCIF_RMA_SYNC, ::SCIF_RMA_ORDERED
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - ECONNRESET, ENOTCONN, ENODEV (checked first).
 * - EINVAL: bad @p rma_flags, @p len 0, or wrap-around.
 * - ENXIO: a range is not covered by contiguous windows, or an offset is negative.
 * - EPERM: a window lacks the needed protection.
 * - ENOMEM.
 * - EBADF, ENOTTY.
 */
MICACCESSAPI int scif_readfrom(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			       int rma_flags);

/**
 * @brief Copy from the local registered address space into the peer's.
 *
 * @param epd       connected endpoint
 * @param loffset   source offset in the local RAS (needs READ)
 * @param len       number of bytes (> 0)
 * @param roffset   destination offset in the peer's RAS (needs WRITE)
 * @param rma_flags ::SCIF_RMA_USECPU, ::SCIF_RMA_SYNC, ::SCIF_RMA_ORDERED
 * @return 0, or -1 and errno.
 *
 * Errors: as scif_readfrom().
 */
MICACCESSAPI int scif_writeto(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			      int rma_flags);

/**
 * @brief Copy from the peer's registered address space into ordinary local memory.
 *
 * @param epd       connected endpoint
 * @param addr      destination buffer (any alignment; must stay valid until completion)
 * @param len       number of bytes (> 0)
 * @param offset    source offset in the peer's RAS (needs READ)
 * @param rma_flags ::SCIF_RMA_USECPU, ::SCIF_RMA_USECACHE, ::SCIF_RMA_SYNC, ::SCIF_RMA_ORDERED
 * @return 0, or -1 and errno.
 *
 * Errors: as scif_readfrom(), plus EFAULT when @p addr is not writable.
 */
MICACCESSAPI int scif_vreadfrom(scif_epd_t epd, void *addr, size_t len, off_t offset,
				int rma_flags);

/**
 * @brief Copy from ordinary local memory into the peer's registered address space.
 *
 * @param epd       connected endpoint
 * @param addr      source buffer (any alignment; must stay valid until completion)
 * @param len       number of bytes (> 0)
 * @param offset    destination offset in the peer's RAS (needs WRITE)
 * @param rma_flags ::SCIF_RMA_USECPU, ::SCIF_RMA_USECACHE, ::SCIF_RMA_SYNC, ::SCIF_RMA_ORDERED
 * @return 0, or -1 and errno.
 *
 * Errors: as scif_readfrom(), plus EFAULT when @p addr is not readable.
 */
MICACCESSAPI int scif_vwriteto(scif_epd_t epd, void *addr, size_t len, off_t offset,
			       int rma_flags);

/** @} */

/**
 * @defgroup fences Fences
 * @{
 */

/**
 * @brief Mark the RMAs issued so far, for a later scif_fence_wait().
 *
 * @param epd   connected endpoint
 * @param flags exactly one of ::SCIF_FENCE_INIT_SELF or ::SCIF_FENCE_INIT_PEER
 * @param mark  receives an opaque mark
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - ECONNRESET, ENOTCONN, ENODEV.
 * - EINVAL: @p flags is not exactly one INIT flag.
 * - EFAULT: @p mark is not writable.
 * - ENOMEM.
 */
MICACCESSAPI int scif_fence_mark(scif_epd_t epd, int flags, int *mark);

/**
 * @brief Wait until every RMA covered by a mark has completed.
 *
 * @param epd  connected endpoint
 * @param mark a mark from scif_fence_mark() on this endpoint
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - ECONNRESET, ENOTCONN, ENODEV.
 * - EINVAL: @p mark was never issued on this endpoint.
 * - EINTR: interrupted by a signal.
 */
MICACCESSAPI int scif_fence_wait(scif_epd_t epd, int mark);

/**
 * @brief After the marked RMAs complete, write 64-bit values into windows.
 *
 * Returns at once. When every RMA initiated so far (by this side with
 * ::SCIF_FENCE_INIT_SELF, by the peer with ::SCIF_FENCE_INIT_PEER) has completed, @p lval is
 * stored at @p loff of the local RAS (::SCIF_SIGNAL_LOCAL) and/or @p rval at @p roff of the
 * peer's RAS (::SCIF_SIGNAL_REMOTE).
 *
 * @param epd   connected endpoint
 * @param loff  local offset (multiple of 4; the 8 bytes must lie in one writable window)
 * @param lval  value for the local window
 * @param roff  remote offset (same rules in the peer's RAS)
 * @param rval  value for the peer's window
 * @param flags one INIT flag OR-ed with ::SCIF_SIGNAL_LOCAL and/or ::SCIF_SIGNAL_REMOTE
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - ECONNRESET, ENOTCONN, ENODEV.
 * - EINVAL: bad flags, or an offset in use is not a multiple of 4.
 * - ENXIO: the 8 bytes are not inside one writable window.
 * - ENOMEM.
 */
MICACCESSAPI int scif_fence_signal(scif_epd_t epd, off_t loff, uint64_t lval, off_t roff,
				   uint64_t rval, int flags);

/** @} */

/**
 * @defgroup mmap_poll Remote mapping and poll
 * @{
 */

/**
 * @brief Map the peer's registered memory into the caller's address space.
 *
 * The mapping shows the same memory as the peer's windows, coherent both ways. It survives
 * scif_close() of either endpoint and the peer's scif_unregister(); it is not inherited by
 * fork(). @p len is rounded up to whole pages.
 *
 * @param addr       address hint, or the exact address with ::SCIF_MAP_FIXED
 * @param len        length (> 0)
 * @param prot_flags ::SCIF_PROT_READ and/or ::SCIF_PROT_WRITE
 * @param map_flags  0 or ::SCIF_MAP_FIXED
 * @param epd        connected endpoint
 * @param offset     page-aligned offset in the peer's RAS
 * @return the mapping's address, or ::SCIF_MMAP_FAILED and errno.
 *
 * Errors:
 * - EINVAL: @p offset unaligned, @p len 0, FIXED with unaligned @p addr, bad flags.
 * - ENXIO: the range is not covered by contiguous peer windows, or @p offset < 0.
 * - EPERM: a window does not allow @p prot_flags.
 * - ECONNRESET, ENOTCONN, ENODEV.
 * - ENOMEM: no address space.
 */
MICACCESSAPI void *scif_mmap(void *addr, size_t len, int prot_flags, int map_flags,
			     scif_epd_t epd, off_t offset);

/**
 * @brief Remove mappings made by scif_mmap() (or any mapping, as munmap()).
 *
 * @param addr page-aligned address
 * @param len  length (> 0), rounded up to whole pages
 * @return 0, or -1 and errno.
 *
 * Errors:
 * - EINVAL: @p addr not page aligned, or @p len 0.
 */
MICACCESSAPI int scif_munmap(void *addr, size_t len);

/**
 * @brief Wait for events on endpoints (and any other descriptors), like poll(2).
 *
 * Endpoint readiness: LISTENING reports POLLIN while a request is pending; CONNECTED reports
 * POLLIN when a byte is readable and POLLOUT when a byte fits; DISCONNECTED reports POLLHUP
 * (and POLLIN while bytes remain); a non-blocking connect reports POLLOUT when it finished;
 * other states report POLLERR. Negative entries are ignored; closed descriptors get POLLNVAL.
 *
 * @param epds    array of entries
 * @param nepds   number of entries
 * @param timeout milliseconds; negative waits forever, 0 does not wait
 * @return the number of entries with events, 0 on timeout, or -1 and errno.
 *
 * Errors:
 * - EINTR: a signal arrived.
 * - EFAULT: @p epds is not accessible.
 * - EINVAL: @p nepds exceeds RLIMIT_NOFILE.
 * - ENOMEM.
 */
MICACCESSAPI int scif_poll(struct scif_pollepd *epds, unsigned int nepds, long timeout);

/** @} */

/**
 * @defgroup nodes Node information
 * @{
 */

/**
 * @brief List the online nodes.
 *
 * @param nodes receives up to @p len node ids in ascending order (may be NULL if @p len is 0)
 * @param len   capacity of @p nodes
 * @param self  receives the caller's node id
 * @return the number of online nodes including the caller's (may exceed @p len), or -1 and
 *         errno.
 *
 * Errors:
 * - EFAULT: @p self is NULL, or @p nodes is NULL with @p len > 0.
 * - EINVAL: @p len < 0.
 */
MICACCESSAPI int scif_get_nodeIDs(uint16_t *nodes, int len, uint16_t *self);

/**
 * @brief The file descriptor behind an endpoint (the endpoint itself).
 *
 * @param epd endpoint descriptor
 * @return @p epd, unchanged.
 */
MICACCESSAPI int scif_get_fd(scif_epd_t epd);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* __SCIF_H__ */
