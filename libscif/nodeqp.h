/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nodeqp.h - control messages exchanged on a connection's fabric link (the handshake;
 * RMA control joins them later). Every field is validated on receipt.
 */
#ifndef SCIF_NODEQP_H
#define SCIF_NODEQP_H

#include <assert.h>
#include <stdint.h>

#include "scif.h"

#define SCIF_CTL_MAGIC 0x4c544353u /* "SCTL" */
/* 2: no CNCT_GNTACK; MAP_REF/MAP_UNREF are answered. 3: handles are fabric handles (a
 * window's file offset travels in its handle, no longer in REGISTER's payload[3]). */
#define SCIF_CTL_VERSION 3

enum scif_ctl_op {
	SCIF_CNCT_REQ = 1, /* connector -> acceptor: its region and bell */
	SCIF_CNCT_GNT,     /* acceptor -> connector: its region and bell; both connected */
	SCIF_CNCT_REJ,     /* acceptor -> connector: refused (err) */
	SCIF_REGISTER,     /* a window: offset, len, prot; its memory's handle attached */
	SCIF_UNREGISTER,   /* windows inside [offset, offset+len) are gone */
	SCIF_MAP_REF,      /* the sender scif_mmap'ed [offset, offset+len) of the receiver's RAS */
	SCIF_MAP_UNREF,    /* ... and unmapped it (both answered: counted when the call returns) */
	SCIF_MARK,         /* take a mark on your RMAs: reply carries it */
	SCIF_WAIT,         /* reply when your RMAs up to payload[0] are complete */
	SCIF_SIG,          /* after your RMAs so far: signal (flags in err) */
	SCIF_REPLY,        /* answer to the request with the same tag: err, payload */
	SCIF_CTL_MAX,
};

/**
 * struct scif_ctl_msg - one control message (fixed size, little-endian host order).
 * @magic:     SCIF_CTL_MAGIC.
 * @op:        enum scif_ctl_op.
 * @version:   SCIF_CTL_VERSION.
 * @src:       sender's (node, port).
 * @dst:       the (node, port) the sender addresses.
 * @ring_size: size of the ring in the region sent with this message (REQ, GNT).
 * @pid:       sender's process id (diagnostics).
 * @err:       positive errno (REJ, REPLY), or flags (SIG).
 * @tag:       request tag, echoed by REPLY.
 * @payload:   op-specific words.
 */
struct scif_ctl_msg {
	uint32_t magic;
	uint16_t op;
	uint16_t version;
	struct scif_portID src;
	struct scif_portID dst;
	uint32_t ring_size;
	uint32_t pid;
	int32_t err;
	uint32_t tag;
	uint64_t payload[4];
};

static_assert(sizeof(struct scif_ctl_msg) == 64, "control message size");

#endif /* SCIF_NODEQP_H */
