/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pcie.h - the pcie fabric's aperture layout (the bytes both OS instances see) and the small
 * interface through which fabric/pcie.c reaches the aperture and the doorbells (pcie_dev.c).
 *
 * The aperture is one shared memory window (ivshmem's BAR2 / the host's shared-memory file).
 * It is cut into a header page and one *slice* per *station*. A station is one process attached
 * to the aperture, numbered by its ivshmem peer id: station 0 is the host process that serves
 * the aperture, every other station a process of the host or of a card (several processes of
 * one OS instance are several stations of one SCIF node; a station says its node in its HELLO).
 * Below, "node n" in a layout name means station n. Slice n is "station n's memory": station n
 * only ever *reads* its own slice, every other station only ever *writes* into it
 * (ARCHITECTURE.md, "no reads across the bus"). The one exception is the header page, written
 * by the host before it serves the aperture and read once by a station when it attaches.
 *
 * Control records travel on queue pairs between station 0 and each other station only: station
 * 0 is the hub, and relays a record between two other stations (pcie_rec.route). Everything
 * else (bells, connection rings, windows) goes straight between the two stations.
 *
 *   page 0            struct pcie_ap_hdr                     host writes, before serving
 *   slice n (n = 0..nnodes-1) at first_slice + n * slice_size:
 *     +0              struct pcie_peer_ctl ctl[PCIE_MAX_NODES]  ctl[m]: written by node m only
 *     +PCIE_BELL_OFF  uint32_t ring[nbells], unpark[nbells]     set to 1 by a peer, cleared
 *                                                               (exchanged to 0) by node n
 *     +PCIE_RING_OFF  ring_bytes of data per node m (index m):  written by node m only
 *                     the node queue pair m -> n
 *     +heap_off       pages node n's process allocates: its regions (connection queue
 *                     pairs) and registered windows; written by n, and by the peer it hands
 *                     them to (the SCIF core's own discipline inside a region)
 *
 * Node queue pair m -> n: data in n's slice (ring m), write index in n's slice
 * (ctl[m].windex, m writes it), read index in m's slice (ctl[n].rindex, n writes it). Indices
 * are free-running byte counts; records are 8-byte aligned and never wrap (a PAD record fills
 * the end of the ring). Barriers: the sender stores a record's bytes, then windex with release
 * (pairs with the receiver's acquire load of windex); the receiver copies the record out,
 * then stores rindex with release (pairs with the sender's acquire load of rindex before it
 * reuses the space).
 */
#ifndef SCIF_FABRIC_PCIE_H
#define SCIF_FABRIC_PCIE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define PCIE_MAGIC 0x45494350u /* "PCIE" */
#define PCIE_VERSION 3u /* 3: stations, a hub that relays records (pcie_rec.route), ROSTER */
#define PCIE_MAX_NODES 8
#define PCIE_PAGE 4096u
#define PCIE_NBELLS 4096u
#define PCIE_BELL_OFF PCIE_PAGE
#define PCIE_RING_OFF (PCIE_BELL_OFF + 2 * PCIE_NBELLS * 4u)
#define PCIE_RING_BYTES (256u * 1024u)
#define PCIE_BEAT_MS 100u      /* the host's heartbeat period */
/* A card takes a heartbeat that stopped this long as the host gone: the host beats from a
 * thread of a host process, late by far less than this even when QEMU guests load its CPUs
 * (a card that is itself starved sees the count moved when it runs again: no false alarm). */
#define PCIE_BEAT_LOST_MS 500u
/* The host takes a card process's stopped heartbeat as its death after this long: longer, as
 * a guest's progress thread can be starved by its own (under TCG, up to 1.1 s seen). */
#define PCIE_CARD_LOST_MS 5000u
#define PCIE_KBEAT_MS 100u /* a card kernel's heartbeat period (pcie_peer_ctl.kbeat) */
/* The host takes a card kernel's heartbeat that stopped this long as the card's OS gone. */
#define PCIE_KBEAT_LOST_MS 700u

/**
 * struct pcie_ap_hdr - page 0 of the aperture; written by the host before it serves the
 * aperture, never changed after; a card reads and validates it once at attach.
 * @magic:       PCIE_MAGIC.
 * @version:     PCIE_VERSION.
 * @size:        the aperture's size in bytes.
 * @nnodes:      slices (nodes 0..nnodes-1), 2..PCIE_MAX_NODES.
 * @nbells:      bell words per slice (PCIE_NBELLS).
 * @ring_bytes:  bytes of each node queue pair's data ring (a multiple of 8).
 * @first_slice: offset of slice 0 (PCIE_PAGE).
 * @slice_size:  bytes per slice, a multiple of PCIE_PAGE.
 * @heap_off:    offset of the heap inside a slice, a multiple of PCIE_PAGE.
 */
struct pcie_ap_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t size;
	uint32_t nnodes;
	uint32_t nbells;
	uint64_t ring_bytes;
	uint64_t first_slice;
	uint64_t slice_size;
	uint64_t heap_off;
};
static_assert(sizeof(struct pcie_ap_hdr) == 56, "pcie_ap_hdr layout");

/*
 * Page 0 also holds, at PCIE_CARDS_OFF, the host's numbering of its cards: a byte per station,
 * the SCIF node of the card station s belongs to (every device of one QEMU guest is one card:
 * the same process connected them), 0 where there is none (a host process, or an ivshmem client
 * that says its node itself). Written by the hub as stations come, go and say HELLO; read by a
 * card's station once, at attach (the header's exception to "no reads across the bus").
 */
#define PCIE_CARDS_OFF 256u

/**
 * struct pcie_peer_ctl - in slice n, entry m: what node m tells node n. Every field is
 * written by node m only and read by node n only; one cache line each.
 * @windex: bytes node m has produced into ring m -> n (data in slice n, ring index m); stored
 *          with release after the data (pairs with n's acquire load).
 * @rindex: bytes node m has consumed of ring n -> m (data in slice m); stored with release
 *          after m copied the records out (pairs with n's acquire load before reusing space).
 * @session: (card m, in the host's slice) a nonzero number m picks each time it attaches,
 *          stored with release after m reset @windex and @rindex to 0 (pairs with the
 *          host's acquire load): the host reads ring m -> host only once it sees a session
 *          other than the last one, so a stale index of an earlier card is never parsed.
 * @beat:   (the host, in a card's slice) a count the host's progress thread advances every
 *          PCIE_BEAT_MS while it lives: a card that cannot see its host's process end (a
 *          guest: QEMU keeps the memory) takes a count that stops as the host gone. Relaxed
 *          stores and loads: only its changing matters, it orders nothing.
 * @bye:    (card m, in the host's slice) the low 32 bits of @session when the card process
 *          that stored it has ended: written not by the process but by the card's kernel
 *          (kernel/shim's last will, made as the process's device file is released), followed
 *          by a doorbell, so the host learns of a card process's death at once rather than
 *          when its heartbeat (@beat) has stopped for PCIE_CARD_LOST_MS. Zeroed by the next
 *          process at attach. A 32-bit word: the will writes 32 bits.
 * @kbeat:  (card m, in the host's slice) the card's *kernel* heartbeat: a count the card's
 *          kernel advances every PCIE_KBEAT_MS from a timer while the card process's device
 *          file is open (kernel/shim), 0 where there is none. Unlike @beat it goes on while
 *          the process is starved, so the host can take a count stopped for
 *          PCIE_KBEAT_LOST_MS as the card's OS gone (reset, crashed, hung) that much sooner.
 *          Zeroed by the process at attach, before the kernel starts it.
 */
struct pcie_peer_ctl {
	uint64_t windex;
	uint64_t rindex;
	uint64_t session;
	uint64_t beat;
	uint32_t bye;
	uint32_t kbeat;
	uint64_t pad[3];
};
static_assert(sizeof(struct pcie_peer_ctl) == 64, "pcie_peer_ctl layout");
static_assert(sizeof(struct pcie_peer_ctl) * PCIE_MAX_NODES <= PCIE_BELL_OFF, "ctl fits");
static_assert(PCIE_RING_OFF % PCIE_PAGE == 0, "rings page-aligned");

/* One record of a node queue pair: this header, the message, then its handles. */
enum {
	PCIE_REC_PAD = 1, /* skip to the end of the ring */
	PCIE_REC_HELLO,   /* card -> host: my slice is ready, talk to me */
	PCIE_REC_CONNECT, /* src: the connector's link; body: struct pcie_connect */
	PCIE_REC_ACCEPT,  /* dst: the connector's link; src: the acceptor's */
	PCIE_REC_REFUSE,  /* dst: the connector's link */
	PCIE_REC_MSG,     /* dst: the receiver's link; body: msglen bytes, then nfh handles */
	PCIE_REC_CLOSE,   /* dst: the receiver's link: the sender's end is gone */
	PCIE_REC_ROSTER,  /* station 0 -> a station: body struct pcie_roster */
};

/**
 * struct pcie_rec - a node queue pair record header (all fields written by the sender).
 * @len:    bytes of the whole record, header included, a multiple of 8.
 * @type:   PCIE_REC_*.
 * @nfh:    handles after the message (MSG only), <= SCIF_LINK_MAX_FH.
 * @dst, @dst_gen: the receiving process's link (index and generation).
 * @src, @src_gen: the sending process's link.
 * @msglen: bytes of the message body.
 * @route:  0: the record is for the station that reads it, from the one that wrote it. In a
 *          record a station writes to station 0 (the hub): the destination station + 1, which
 *          the hub relays the record to, with @route set to the origin station + 1: so in a
 *          record station 0 writes, it names the station the record comes from. A station
 *          trusts the hub's @route as it trusts the hub.
 */
struct pcie_rec {
	uint32_t len;
	uint16_t type;
	uint16_t nfh;
	uint32_t dst;
	uint32_t dst_gen;
	uint32_t src;
	uint32_t src_gen;
	uint32_t msglen;
	uint32_t route;
};
static_assert(sizeof(struct pcie_rec) == 32, "pcie_rec layout");

struct pcie_connect {
	uint32_t port; /* the destination port */
	uint32_t pad;
};

/* HELLO's body: the SCIF node the station belongs to (0: the host). */
struct pcie_hello {
	uint32_t node;
	uint32_t pad;
};

#define PCIE_NODE_NONE 0xffffffffu

/*
 * ROSTER's body: station @station now serves SCIF node @node, or is gone (PCIE_NODE_NONE): its
 * links hang up. The hub sends one for each station that said HELLO or left, to every other
 * station that said HELLO, and a newcomer one for each station already there.
 */
struct pcie_roster {
	uint32_t station;
	uint32_t node;
};

/* A fabric handle on the wire (kind PCIE_FH_*, words as below). */
enum {
	PCIE_FH_REGION = 1, /* word 0: aperture offset, word 1: length */
	PCIE_FH_BELL,       /* word 0: bell slot in the owner's slice */
	PCIE_FH_MEM,        /* word 0: aperture offset, word 1: length, word 2: prot */
};
struct pcie_fh_wire {
	uint32_t kind;
	uint32_t pad;
	uint64_t word[3];
};
static_assert(sizeof(struct pcie_fh_wire) == 32, "pcie_fh_wire layout");

/* ---- how a process reaches the aperture and the doorbells (pcie_dev.c) ------------------ */

enum pcie_dev_event { PCIE_DEV_UP, PCIE_DEV_DOWN };
typedef void (*pcie_dev_cb)(void *arg, enum pcie_dev_event ev, uint16_t node);

/**
 * struct pcie_dev - one process's device: the aperture's descriptor and the doorbells.
 * @fd:       a descriptor whose mapping at @map_off is the aperture (the shared-memory file
 *            on the host, /dev/scif_shimN's BAR2 on a card).
 * @map_off:  offset of the aperture in @fd.
 * @size:     the aperture's size.
 * @self:     this process's station (its ivshmem peer id; the serving host process: 0).
 * @node:     the SCIF node it belongs to: set by the caller before @open (from SCIF_NODE), a
 *            backend that knows better (the shim: the card's device) sets it.
 * @host:     1 if this process made the aperture (and writes its header): station 0.
 * @departed: set by the caller before @open; a host backend calls it the moment station
 *            @station's device leaves, before its id can be given to a newcomer (from within
 *            @handle, backend lock held: it may only touch the aperture and the station's
 *            tx lock). What a departure makes stale must go here, not in @handle's later
 *            PCIE_DEV_DOWN: by then the next device with that id may have written its entry.
 * @priv:     the backend's.
 */
struct pcie_dev {
	const struct pcie_dev_ops *ops;
	int fd;
	uint64_t map_off;
	uint64_t size;
	uint16_t self;
	uint16_t node;
	int host;
	int blind; /* a card that is not told when its host goes away: it watches the heartbeat */
	void (*departed)(struct pcie_dev *d, uint16_t station);
	void *priv;
};

/**
 * struct pcie_dev_ops - a backend. All return 0 or -errno.
 * @open:   attach (make or join the aperture); @size and @self are set on return. A host
 *          backend calls @ready (with the mapped aperture) before it lets a card in, so the
 *          card finds the header written; it fails with -EADDRINUSE, having touched nothing,
 *          when another host process serves the aperture already (then join it as a client).
 * @kick:   ring station @node's doorbell (any thread).
 * @pollfds: the descriptors the progress thread must poll (at most @max), all POLLIN.
 * @handle: after a poll: consume doorbells, handle the control socket; station arrivals and
 *          departures are reported through @cb (from the progress thread, no lock held): the
 *          host reports every station, a client only station 0's departure.
 * @peer_group: host: the process behind station @node's connection (the devices of one QEMU
 *          guest share it), or -errno.
 * @will:   optional (a card whose departure the host is not told of): when this process
 *          ends, however it ends, have @value written at aperture offset @off, then the
 *          host's doorbell rung. -ENOTSUP if the device cannot.
 * @kbeat:  optional (the same card): while this process lives, have its OS's kernel write a
 *          count at aperture offset @off every @period_ms. -ENOTSUP if the device cannot.
 * @close:  detach.
 */
struct pcie_dev_ops {
	const char *name;
	int (*open)(struct pcie_dev *d, int (*ready)(struct pcie_dev *d));
	int (*kick)(struct pcie_dev *d, uint16_t node);
	int (*pollfds)(struct pcie_dev *d, int *fds, int max);
	int (*handle)(struct pcie_dev *d, pcie_dev_cb cb, void *arg);
	int (*peer_group)(struct pcie_dev *d, uint16_t node);
	int (*will)(struct pcie_dev *d, uint64_t off, uint32_t value);
	int (*kbeat)(struct pcie_dev *d, uint64_t off, uint32_t period_ms);
	void (*close)(struct pcie_dev *d);
};

/* Backends: the host (an in-process ivshmem server, the host being peer 0), the card as an
 * ivshmem client (as QEMU is; host processes standing in for a card), the card through
 * kernel/shim (/dev/scif_shimN, in a guest). */
extern const struct pcie_dev_ops scif__pcie_dev_host;
extern const struct pcie_dev_ops scif__pcie_dev_client;
extern const struct pcie_dev_ops scif__pcie_dev_shim;

#endif /* SCIF_FABRIC_PCIE_H */
