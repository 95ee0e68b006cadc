/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peer.h - the fuzzers' side of libscif's local-fabric wire protocol: raw links (Unix
 * SOCK_SEQPACKET sockets at the fabric's names), control messages with passed descriptors,
 * sealed memfd regions and bells. The fuzzer plays the peer of a real connection in its own
 * process, and feeds the library whatever the input says, honest or not.
 */
#ifndef SCIF_FUZZ_PEER_H
#define SCIF_FUZZ_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <scif.h>

#include "nodeqp.h"
#include "rb.h"

/* The node the fuzzer plays when the library connects to it (the library is node 0). */
#define FZP_NODE 1

/* Kinds of descriptor a message may carry (fzp_fd_make). */
enum fzp_fd_kind {
	FZP_FD_REGION,    /* an honest queue-pair region of the announced ring size */
	FZP_FD_BELL,      /* the sending side's bell (one end of a stream socketpair) */
	FZP_FD_UNSEALED,  /* a region that could shrink */
	FZP_FD_BADSIZE,   /* a sealed region one page longer than announced */
	FZP_FD_BADHDR,    /* a sealed region with a wrong magic, version or ring size */
	FZP_FD_PIPE,      /* a pipe */
	FZP_FD_DEVNULL,   /* /dev/null */
	FZP_FD_SOCKET,    /* a seqpacket socket */
	FZP_FD_KINDS,
};

/**
 * struct fzp_region - a memfd region the fuzzer made and maps.
 * @fd:  its descriptor (-1 once handed over and closed).
 * @map: where it is mapped here (NULL if not).
 * @len: mapped length.
 */
struct fzp_region {
	int fd;
	void *map;
	size_t len;
};

/**
 * struct fzp_conn - one connection between the library (endpoint @ep) and the fuzzer.
 * @ep:        the library's endpoint (-1 if none).
 * @link:      the fuzzer's end of the control link.
 * @user:      the fuzzer's "endpoint descriptor": the library rings it; closing it is the
 *             fuzzer's scif_close.
 * @lib_bell:  the library's bell: a byte makes the library's endpoint readable; draining it
 *             makes it writable again.
 * @mine:      the fuzzer's region (the library writes into its ring and header words).
 * @theirs:    the library's region as mapped here (the fuzzer writes the words a peer may).
 * @theirs_len: its mapped length.
 * @ring_mine, @ring_theirs: ring sizes of the two regions.
 */
struct fzp_conn {
	scif_epd_t ep;
	int link;
	int user;
	int lib_bell;
	struct fzp_region mine;
	struct scif_qp_region *theirs;
	size_t theirs_len;
	uint32_t ring_mine, ring_theirs;
};

/* The fabric's socket path of (node, port) of kind 'l' (listen socket). */
void fzp_path(char *buf, size_t len, uint16_t node, uint16_t port);
/* A non-blocking link to the listener of (node, port); -errno if none (or it is full). */
int fzp_connect(uint16_t node, uint16_t port);
/* A listen socket at (node, port) that the library can connect to; -errno on failure. */
int fzp_listen(uint16_t node, uint16_t port);

/* Send @len bytes with @nfds descriptors (0 or -errno); never blocks. */
int fzp_send(int link, const void *msg, size_t len, const int *fds, int nfds);
/*
 * Receive one message within @timeout_ms: its length, 0 on hang-up, -ETIMEDOUT, or -errno.
 * Up to @cap descriptors land in @fds (*nfds says how many); any beyond are closed.
 */
int fzp_recv(int link, void *msg, size_t len, int *fds, int cap, int *nfds, int timeout_ms);
void fzp_close_fds(int *fds, int n);

/* A region of @ring bytes of ring (header filled in, owner @pid), of the given kind. */
int fzp_region_make(struct fzp_region *r, uint32_t ring, int kind, uint32_t pid);
void fzp_region_free(struct fzp_region *r);
/* A descriptor of @kind for a message announcing @ring; *keep gets what the fuzzer keeps. */
int fzp_fd_make(int kind, uint32_t ring, struct fzp_region *keep, int *user);

struct fz;

/**
 * struct fzp_sent - what fzp_build_send sent.
 * @m:     the message (its first 64 bytes).
 * @len:   the datagram's length.
 * @nfds:  descriptors sent with it.
 * @kind0: the kind of the first (-1 if none).
 */
struct fzp_sent {
	struct scif_ctl_msg m;
	int len;
	int nfds;
	int kind0;
};

/*
 * Send one message built from the input on @link: by default an honest @op to (node, port)
 * with a region (keeping its mapping in *keep if that is free) and a bell (its user end in
 * *user if that is free), then, by a mask byte, any field from the input (bit 0 magic,
 * 1 version, 2 opcode, 3 addresses, 4 ring size, 5 the other words, 6 a datagram of another
 * length, 7 all 64 bytes raw), then a descriptor byte: count (low 3 bits, xor 2) and a kind
 * per descriptor (region, then bell, by default).
 */
void fzp_build_send(struct fz *f, int link, uint16_t op, uint16_t node, uint16_t port,
		    struct fzp_region *keep, int *user, struct fzp_sent *out);
/* Magic and version right. */
int fzp_valid_hdr(const struct scif_ctl_msg *m);
/* A ring size the protocol allows. */
int fzp_valid_ring(uint32_t ring);

/* A control message with the fuzzer's identity, addressed to (node, port). */
void fzp_msg(struct scif_ctl_msg *m, uint16_t op, uint16_t node, uint16_t port);
/*
 * Check a message the library sent: well-formed, of opcode @op. A library that sends
 * anything else is a bug (the fuzzer aborts).
 */
void fzp_expect_msg(const struct scif_ctl_msg *m, int len, uint16_t op, int nfds, int want_fds);

/*
 * Map the region and keep the bell the library sent in a GNT or REQ (two descriptors),
 * checking them as a peer would. Returns 0, aborting on a malformed region.
 */
void fzp_take_qp(struct fzp_conn *c, const struct scif_ctl_msg *m, int *fds);

/*
 * An honest connection: the fuzzer connects to the listener @lep on @port with its own
 * ring of @ring bytes (region owned by @pid), the library accepts it (non-blocking).
 * Returns 0, or -1 if the library refused (the fuzzer aborts on anything unexpected).
 */
int fzp_conn_accept(struct fzp_conn *c, scif_epd_t lep, uint16_t port, uint32_t ring,
		    uint32_t pid);
/* The fuzzer's side goes away (link, user end, mappings); the library's endpoint stays. */
void fzp_conn_hangup(struct fzp_conn *c);

struct fz;
/*
 * A few calls, chosen by the input, on a connection the library made (send, recv, poll),
 * with the fuzzer's region @reg under it, which the input may also rewrite: the calls may
 * fail only as the spec allows (fuzz-accept and fuzz-connect share it).
 */
void fzp_use_connection(struct fz *f, scif_epd_t ep, struct fzp_region *reg);

#endif /* SCIF_FUZZ_PEER_H */
