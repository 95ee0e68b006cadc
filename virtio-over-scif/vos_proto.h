/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vos_proto.h - virtio over SCIF: what crosses the "bus" between the host daemon (node 0) and a
 * card frontend (node N). Both sides include it; nothing here knows about TAP, NBD or ptys.
 *
 * Connections. The daemon listens on one SCIF port (VOS_DEFAULT_PORT unless configured).
 *  - A card frontend opens one *control* connection: HELLO (card -> host) names the device page
 *    the card registered on that connection; WELCOME (host -> card) answers with a session
 *    cookie once the host has written the card's devices into the page. DEVPAGE (host -> card)
 *    says a slot changed (device added, removed, config changed). BYE ends the session cleanly.
 *  - For each device it drives, the card opens one *device* connection: ATTACH names the slot
 *    and the session cookie; on that connection the card registers one window holding the
 *    device's virtqueues and its buffers, writes the queue offsets and DRIVER_OK into its slot,
 *    and sends READY. From then on KICK (card -> host: new available buffers in queue q) and
 *    IRQ (host -> card: new used buffers in queue q) are the doorbells, both suppressed with
 *    VIRTIO_RING_F_EVENT_IDX. CONFIG (host -> card) says the slot's config space changed.
 *    A device the host resets (bad input from the card, backend failure) has its connection
 *    closed by the host after it set VOS_HSTATUS_NEEDS_RESET; the card re-attaches.
 *
 * Every message is one struct vos_msg (16 bytes, little-endian as on both ends of the bus).
 *
 * Memory. All addresses the card hands the host are offsets in the registered address space of
 * the connection they came on: queue offsets and descriptor addresses in the device window of
 * the device connection, the device page in a window of the control connection. The host maps
 * the device page and the rings (scif_mmap) and moves buffer data with scif_vreadfrom() and
 * scif_vwriteto() (the DMA engine). It validates every index, offset and length it reads.
 *
 * The device page follows SCIF's rule as far as a page both sides change can: each half of a
 * slot has one writer. The host writes struct vos_slot_host, the card struct vos_slot_card;
 * each side reads the other's half, and a generation counter written last (after a release
 * barrier) says when a half is complete.
 */
#ifndef VOS_PROTO_H
#define VOS_PROTO_H

#include <stdint.h>

#define VOS_MAGIC 0x534f5676u     /* "vVOS" */
#define VOS_VERSION 1
#define VOS_DEFAULT_PORT 120      /* below 1024: only root can bind it (SCIF_ADMIN_PORT_END) */

#define VOS_MAX_SLOTS 16          /* devices per card */
#define VOS_MAX_QUEUES 8          /* virtqueues per device */
#define VOS_QUEUE_MAX 1024        /* largest queue size a driver may pick (power of 2) */
#define VOS_CONFIG_MAX 256        /* bytes of device-specific config space */
#define VOS_DEVPAGE_SIZE 16384    /* sizeof(struct vos_devpage) rounded to pages */

/* Messages (struct vos_msg.type). */
enum vos_msg_type {
	VOS_MSG_HELLO = 1,  /* card->host, control: arg = devpage offset, len = devpage size */
	VOS_MSG_WELCOME,    /* host->card, control: arg = session cookie, len = slots in use */
	VOS_MSG_DEVPAGE,    /* host->card, control: slot `dev` changed (host_gen bumped) */
	VOS_MSG_BYE,        /* card->host, control: clean shutdown, devices flushed */
	VOS_MSG_ATTACH,     /* card->host, device: dev = slot, arg = session cookie */
	VOS_MSG_READY,      /* card->host, device: slot's card half is complete, DRIVER_OK set */
	VOS_MSG_KICK,       /* card->host, device: queue `queue` has new available buffers */
	VOS_MSG_IRQ,        /* host->card, device: queue `queue` has new used buffers */
	VOS_MSG_CONFIG,     /* host->card, device: config space changed (config_gen bumped) */
	VOS_MSG_REFUSE,     /* host->card, either: request refused, len = errno value */
	VOS_MSG_MAX
};

struct vos_msg {
	uint8_t type;       /* enum vos_msg_type */
	uint8_t queue;      /* KICK, IRQ: virtqueue index */
	uint16_t dev;       /* slot index where it applies */
	uint32_t len;       /* per type, see above */
	uint64_t arg;       /* per type, see above */
};
_Static_assert(sizeof(struct vos_msg) == 16, "vos_msg is 16 bytes on the wire");

/* Device types are virtio's (VIRTIO_ID_NET 1, VIRTIO_ID_BLOCK 2, VIRTIO_ID_CONSOLE 3). */

/* struct vos_slot_host.host_status */
#define VOS_HSTATUS_NEEDS_RESET 0x1   /* host gave up on the card's half; re-attach */
#define VOS_HSTATUS_REMOVED     0x2   /* slot removed by the host; stop using it */

/* The host's half of one slot: written by the daemon only, read by the card. */
struct vos_slot_host {
	uint32_t host_gen;        /* bumped (release) after every change of this half; 0 = empty */
	uint8_t type;             /* virtio device id; 0 = no device in this slot */
	uint8_t nqueues;          /* virtqueues the device has (<= VOS_MAX_QUEUES) */
	uint16_t config_len;      /* valid bytes of config[] */
	uint64_t features;        /* device feature bits offered (virtio bits, incl. VERSION_1) */
	uint16_t queue_max[VOS_MAX_QUEUES]; /* largest size per queue (power of 2) */
	uint32_t host_status;     /* VOS_HSTATUS_* */
	uint32_t config_gen;      /* bumped (release) after each config[] change */
	uint8_t config[VOS_CONFIG_MAX]; /* struct virtio_net_config, virtio_blk_config, ... */
} __attribute__((aligned(64)));

/* One virtqueue as the card laid it out: offsets in the device window of the device connection. */
struct vos_queue_desc {
	uint16_t size;            /* power of 2, <= queue_max; 0 = queue not set up */
	uint16_t reserved[3];
	uint64_t desc;            /* struct vring_desc[size], 16-byte aligned */
	uint64_t avail;           /* struct vring_avail + ring[size] + used_event, 2-byte aligned */
	uint64_t used;            /* struct vring_used + ring[size] + avail_event, 4-byte aligned */
};

/* virtio status bits (VIRTIO_CONFIG_S_*) go in struct vos_slot_card.status. */

/* The card's half of one slot: written by the card only, read by the host. */
struct vos_slot_card {
	uint32_t card_gen;        /* bumped (release) after every change of this half */
	uint32_t status;          /* VIRTIO_CONFIG_S_ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK */
	uint64_t features;        /* driver feature bits accepted: a subset of host features */
	uint64_t window;          /* offset of the device window on the device connection */
	uint64_t window_len;      /* its length */
	struct vos_queue_desc queue[VOS_MAX_QUEUES];
} __attribute__((aligned(64)));

struct vos_slot {
	struct vos_slot_host host;
	struct vos_slot_card card;
};

/* The device page: the card allocates and registers it on the control connection. */
struct vos_devpage {
	uint32_t magic;           /* card writes VOS_MAGIC */
	uint16_t version;         /* card writes VOS_VERSION */
	uint16_t nslots;          /* card writes VOS_MAX_SLOTS */
	uint32_t host_gen;        /* host bumps (release) after any slot change */
	uint32_t reserved;
	struct vos_slot slot[VOS_MAX_SLOTS];
};
_Static_assert(sizeof(struct vos_devpage) <= VOS_DEVPAGE_SIZE, "device page fits its window");

#endif /* VOS_PROTO_H */
