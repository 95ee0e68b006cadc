/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vq.h - virtio 1.x split virtqueues, both halves, with no SCIF connection management:
 * vq_host is the device half (the host reads the card's rings through a mapping and reaches
 * buffers by RAS offset), vq_card the driver half (rings and buffers in the card's own window).
 * Used by the frameworks (host.c, card.c) and tested on its own (tests/virtio/test-vq).
 *
 * Memory ordering follows the virtio spec's driver/device rules: the driver writes descriptors,
 * then (release) the avail ring entry and avail->idx; the device reads avail->idx (acquire)
 * before the entries. The device writes used elements, then (release) used->idx. Around the
 * notification-suppression fields (avail_event / used_event) a full barrier separates "publish
 * my index" from "read the peer's event index", or a kick or IRQ can be lost.
 */
#ifndef VOS_VQ_H
#define VOS_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/virtio_ring.h>

#include "vos.h"

/* Copies between host memory and the card, by RAS offset (the framework supplies SCIF). */
struct vq_mem_ops {
	/* Read len bytes at card offset off into buf; 0 or -errno. */
	int (*read)(void *ctx, void *buf, size_t len, uint64_t off);
	/* Write len bytes from buf to card offset off (done when it returns); 0 or -errno. */
	int (*write)(void *ctx, const void *buf, size_t len, uint64_t off);
};

/* Device half. The rings are mapped by the caller; every value read from them is checked. */
struct vq_host {
	uint16_t size;
	bool event_idx, indirect;          /* negotiated VIRTIO_RING_F_EVENT_IDX / INDIRECT_DESC */
	volatile struct vring_desc *desc;  /* the card's memory: read only */
	volatile struct vring_avail *avail;/* the card's memory: read only */
	volatile struct vring_used *used;  /* the card's memory: the host writes it */
	uint64_t win_off, win_len;         /* descriptors must point inside [win_off, +win_len) */
	const struct vq_mem_ops *mem;      /* reads indirect tables, copies request data */
	void *mem_ctx;
	uint16_t last_avail;               /* next avail entry to consume (host-private) */
	uint16_t used_idx;                 /* shadow of used->idx (host-private) */
	uint16_t signalled_used;           /* used_idx at the last IRQ */
	bool signalled_valid;
	bool kicks_off;                    /* VRING_USED_F_NO_NOTIFY set by us */
};

/* Checks size (power of 2, <= VOS_QUEUE_MAX) and ring alignment, zeroes nothing in the card. */
int vq_host_init(struct vq_host *vq, uint16_t size, uint64_t features,
		 void *desc, void *avail, void *used, uint64_t win_off, uint64_t win_len,
		 const struct vq_mem_ops *mem, void *mem_ctx);
/* 1 = a request, 0 = empty, -EBADMSG = avail idx jumped by more than size, bad head, loop,
 * chain too long, readable after writable, segment outside the window, bad indirect table;
 * -errno of mem->read (indirect table). With event idx and kicks on, finding the queue empty
 * also asks the card for a kick at the next buffer: pop until 0 and no kick is lost. */
int vq_host_pop(struct vq_host *vq, struct vos_req *r);
/* Return r with `written` bytes in its writable part: 0, or -EINVAL if written > r->in_len. */
int vq_host_push(struct vq_host *vq, const struct vos_req *r, uint32_t written);
/* True if the card should get an IRQ now (pushes since the last decision, and event idx /
 * NO_INTERRUPT ask for it); records the decision. */
bool vq_host_need_irq(struct vq_host *vq);
/* Turn kick requests on/off; on: returns true if buffers are available already. */
bool vq_host_kicks(struct vq_host *vq, bool on);
/* As vos_req_read/vos_req_write (vos.h): bytes copied from byte `off` of the readable (read)
 * or writable (write) part, short at its end; -errno of the mem op that failed. */
ssize_t vq_req_read(struct vq_host *vq, const struct vos_req *r, size_t off, void *buf,
		    size_t len);
ssize_t vq_req_write(struct vq_host *vq, const struct vos_req *r, size_t off,
		     const void *buf, size_t len);

/* Driver half: rings laid out in memory of the card's device window. */
struct vq_card {
	uint16_t size;
	bool event_idx, indirect;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;           /* written by the host, validated on read */
	uint8_t *win_base;                 /* the window in this process ... */
	uint64_t win_off, win_len;         /* ... and where it sits in the RAS */
	struct vring_desc *indirect_tables;/* size tables of VQ_INDIRECT_MAX entries, or NULL */
	void **token;                      /* per head: the caller's token, NULL = free */
	uint32_t *in_len;                  /* per head: writable bytes, to check used lengths */
	uint16_t *chain;                   /* per head: descriptors it holds (1 if indirect) */
	uint16_t *next;                    /* per descriptor: next in its chain or the free list
					    * (private: the host can scribble the table) */
	uint16_t free_head, num_free;
	uint16_t avail_idx;                /* shadow of avail->idx */
	uint16_t last_used;                /* next used entry to consume */
	uint16_t kicked_avail;             /* avail_idx at the last kick decision */
	bool irqs_off;
};

#define VQ_INDIRECT_MAX 64                 /* segments per indirect table */

/* Bytes of window memory the rings (and indirect tables if negotiated) of a queue need;
 * vq_card_init lays them out in `mem` (page-aligned) in that order. */
size_t vq_card_ring_bytes(uint16_t size, uint64_t features);
int vq_card_init(struct vq_card *vq, uint16_t size, uint64_t features, void *mem,
		 uint8_t *win_base, uint64_t win_off, uint64_t win_len);
void vq_card_destroy(struct vq_card *vq);   /* frees token/in_len/chain/next arrays */
/* RAS offset of p (the rings, for the card's half of the device page); p must be inside the
 * window. */
uint64_t vq_card_off(const struct vq_card *vq, const void *p);
/* Post nout readable then nin writable segments (inside the window) with a non-NULL token:
 * 0, -ENOSPC (not enough free descriptors now), -EINVAL (bad segment, or never fits). */
int vq_card_add(struct vq_card *vq, const struct vos_sg *sg, unsigned nout, unsigned nin,
		void *token);
/* 1 = *token and *len filled, 0 = nothing used, -EBADMSG = the host returned a bad id/length.
 * With event idx and IRQs on, finding nothing also asks for an IRQ at the next used buffer. */
int vq_card_get(struct vq_card *vq, void **token, uint32_t *len);
/* True if the host should get a KICK now; records it as sent. */
bool vq_card_need_kick(struct vq_card *vq);
bool vq_card_irqs(struct vq_card *vq, bool on);
unsigned vq_card_space(const struct vq_card *vq);

#endif /* VOS_VQ_H */
