/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * local.h - the local fabric's link framing (fabric/local.c), shared with the test peers that
 * speak it (tests/fuzz/peer.c).
 *
 * A link is a SOCK_SEQPACKET socket; one control message is one datagram, its handles' file
 * descriptors go with it by SCM_RIGHTS, in order. Handles whose kind and words are all zero
 * (the local fabric's regions and bells, and window memory at file offset 0) need nothing
 * more: the datagram is the message alone, and each descriptor is one handle. Otherwise a
 * trailer follows the message: one struct local_fh_wire per handle, in order, each saying
 * whether a descriptor belongs to it. A datagram that is neither exactly the message nor the
 * message and a well-formed trailer (magic, count, descriptors) is malformed.
 */
#ifndef SCIF_FABRIC_LOCAL_H
#define SCIF_FABRIC_LOCAL_H

#include <stdint.h>

#define LOCAL_FH_MAGIC 0x48464c53u /* "SLFH" */
#define LOCAL_FH_HAS_FD 1u

struct local_fh_wire {
	uint32_t magic; /* LOCAL_FH_MAGIC */
	uint16_t flags; /* LOCAL_FH_HAS_FD: the next descriptor of the datagram is this one's */
	uint16_t index; /* position in the trailer: 0, 1, ... */
	uint32_t kind;
	uint32_t pad;   /* 0 */
	uint64_t word[3];
};

struct scif_fabric;

/*
 * The trust domain (SCIF_DOMAIN) and its directory of port names, for a fabric that holds
 * its ports as the local fabric does (fabric/ofi.c): 0 or -errno.
 */
int scif__local_names(struct scif_fabric *fab);

#endif /* SCIF_FABRIC_LOCAL_H */
