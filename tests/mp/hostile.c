// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * hostile.c - a peer that speaks libscif's local-fabric wire protocol but lies: garbage or
 * truncated control messages, regions that can shrink, impossible ring sizes, silence after
 * connecting, and after a correct handshake, ring indices no honest sender would publish and
 * answers to requests that no honest peer would give (or none at all).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nodeqp.h"
#include "rb.h"
#include "mp/hostile.h"
#include "scm.h"

static int raw_connect(uint16_t node, uint16_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	const char *base = getenv("SCIF_RUN_DIR");
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/scif-u%u/n%u.l%u",
			 base && *base ? base : "/tmp", (unsigned)geteuid(), node, port);

	for (int i = 0; i < 5000; i++) {
		if (connect(fd, (struct sockaddr *)&sa,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0)
			return fd;
		usleep(1000);
	}
	return -1;
}

static int send_fds(int link, const void *msg, size_t len, const int *fds, int nfds)
{
	return test_scm_send(link, msg, len, fds, nfds, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fds(int link, void *msg, size_t len, int *fds, int cap)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = msg, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	int got = 0;

	if (recvmsg(link, &mh, 0) <= 0)
		return -1;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		memcpy(fds, CMSG_DATA(h), sizeof(int) * (size_t)(k < cap ? k : cap));
		got = k;
	}
	return got;
}

static int make_region(uint32_t ring, int seal, void **map, uint32_t pid)
{
	int fd = memfd_create("hostile", MFD_ALLOW_SEALING);
	size_t len = SCIF_QP_HDR_SIZE + (size_t)ring;
	struct scif_qp_region *r;

	if (fd < 0 || ftruncate(fd, (off_t)len))
		return -1;
	r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	r->magic = SCIF_QP_MAGIC;
	r->version = SCIF_QP_VERSION;
	r->ring_size = ring;
	r->hdr_size = SCIF_QP_HDR_SIZE;
	r->owner_pid = pid;
	if (seal)
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	*map = r;
	return fd;
}

/* Wait up to 5 s for *w to become nonzero; returns it (0 on timeout). */
static uint64_t wait_word(const volatile uint64_t *w)
{
	for (int i = 0; i < 5000 && !*w; i++)
		usleep(1000);
	return *w;
}

/* Take queued bytes off a bell: wakes a victim sleeping for POLLOUT (msg.c's parking). */
static void drain(int fd)
{
	char buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/*
 * Lies about single-copy transfers (libscif/bulk.c), after an honest handshake with a region
 * that names us as its owner (so the victim would copy from us directly):
 *   offer-pos    an offer that does not start where the stream is    -> victim resets
 *   offer-len    an offer longer than any offer can be                -> victim resets
 *   offer-fault  an offer of memory we do not have: the victim declines it for good, and
 *                takes the same bytes through the ring                 -> "hello" arrives
 *   offer-pid    as offer-fault, but our region names another process (our parent): the
 *                victim must not copy from that one at all             -> "hello" arrives
 *   claim        a claim on the victim's offer beyond its end         -> victim resets
 * Exit 0 when the victim reacted as it should as far as we can see (declines), else > 0.
 */
static int hostile_bulk(int link, struct scif_ctl_msg *m, int bell, const char *kind)
{
	uint32_t ring = m->ring_size;
	uint32_t pid = !strcmp(kind, "offer-pid") ? (uint32_t)getppid() : (uint32_t)getpid();
	struct scif_qp_region *mine, *theirs;
	struct scif_ctl_msg g;
	int fds[4], rfd = make_region(ring, 1, (void **)&mine, pid);

	fds[0] = rfd;
	fds[1] = bell;
	if (send_fds(link, m, sizeof(*m), fds, 2))
		return 3;
	if (recv_fds(link, &g, sizeof(g), fds, 4) != 2 || g.op != SCIF_CNCT_GNT)
		return 4;
	theirs = mmap(NULL, SCIF_QP_HDR_SIZE + g.ring_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      fds[0], 0);
	if (!strcmp(kind, "nb-commit")) {
		uint64_t seq;

		/* Say we wait for 1 MiB, commit to the victim's non-blocking offer, copy nothing. */
		__atomic_store_n(&theirs->bulk_wait.want, 1u << 20, __ATOMIC_RELEASE);
		/* One ring byte after it: the victim receives it, then sends. */
		theirs->data[0] = 'w';
		__atomic_store_n(&theirs->in_widx, 1, __ATOMIC_RELEASE);
		send(fds[1], "x", 1, MSG_NOSIGNAL);
		seq = wait_word(&mine->bulk_offer.seq);
		if (!seq)
			return 5;
		__atomic_store_n(&theirs->bulk_claim.take, seq, __ATOMIC_SEQ_CST);
	} else if (!strcmp(kind, "claim")) {
		uint64_t seq = wait_word(&mine->bulk_offer.seq);

		if (!seq)
			return 5;
		theirs->bulk_claim.oseq = seq;
		theirs->bulk_claim.off = 0;
		theirs->bulk_claim.len = mine->bulk_offer.len + 4096;
		theirs->bulk_claim.dst = 4096;
		theirs->bulk_claim.front = 1ull << 32;
		__atomic_store_n(&theirs->bulk_claim.seq, 1, __ATOMIC_RELEASE);
		drain(bell);
	} else {
		uint64_t done;

		theirs->bulk_offer.pos = !strcmp(kind, "offer-pos") ? 777 : 0;
		theirs->bulk_offer.len = !strcmp(kind, "offer-len") ? 1ull << 31 : 5;
		theirs->bulk_offer.addr = 4096; /* nothing is mapped there */
		__atomic_store_n(&theirs->bulk_offer.seq, 1, __ATOMIC_RELEASE);
		send(fds[1], "x", 1, MSG_NOSIGNAL);
		if (!strcmp(kind, "offer-pos") || !strcmp(kind, "offer-len"))
			goto stay;
		done = wait_word(&mine->bulk_claim.done);
		if (done != ((1ull << 32) | SCIF_BULK_DECLINE | SCIF_BULK_NEVER))
			return 6;
		/* The declined bytes, through the ring as an honest sender would. */
		memcpy(theirs->data, "hello", 5);
		__atomic_store_n(&theirs->in_widx, 5, __ATOMIC_RELEASE);
		send(fds[1], "x", 1, MSG_NOSIGNAL);
	}
stay:;
	struct pollfd p = { .fd = link, .events = POLLIN };

	poll(&p, 1, 5000);
	return 0;
}

/*
 * Lies in answers to the victim's requests, after an honest handshake:
 *   reply-err:<n>  answer every request (registration, fence mark, ...) with error n
 *   reply-none     never answer
 * Stays until the victim hangs up (or 30 s). Exit 0 if at least one request came.
 */
static int hostile_reply(int link, struct scif_ctl_msg *m, int bell, const char *kind)
{
	struct scif_ctl_msg g, r;
	void *mine;
	int fds[4], got = 0;

	fds[0] = make_region(m->ring_size, 1, &mine, 0);
	fds[1] = bell;
	if (send_fds(link, m, sizeof(*m), fds, 2))
		return 3;
	if (recv_fds(link, &g, sizeof(g), fds, 4) != 2 || g.op != SCIF_CNCT_GNT)
		return 4;
	for (;;) {
		struct pollfd p = { .fd = link, .events = POLLIN };
		int n;

		if (poll(&p, 1, 30000) != 1)
			return 5;
		n = recv_fds(link, &r, sizeof(r), fds, 4);
		if (n < 0)
			return got ? 0 : 6;
		for (int i = 0; i < n; i++)
			close(fds[i]);
		if (r.magic != SCIF_CTL_MAGIC || r.op == SCIF_REPLY || r.op == SCIF_SIG)
			continue;
		got = 1;
		if (strncmp(kind, "reply-err:", 10))
			continue; /* reply-none */
		r.err = (int32_t)strtol(kind + 10, NULL, 0);
		r.op = SCIF_REPLY;
		send_fds(link, &r, sizeof(r), NULL, 0);
	}
}

int hostile_run(uint16_t node, uint16_t port, const char *kind)
{
	struct scif_ctl_msg m = { .magic = SCIF_CTL_MAGIC, .version = SCIF_CTL_VERSION,
				  .op = SCIF_CNCT_REQ };
	int link = raw_connect(node, port), sv[2], rfd, fds[4];
	uint32_t ring = 4096;
	void *mine;

	if (link < 0)
		return 2;
	m.src.node = 1;
	m.src.port = 4321;
	m.dst.node = node;
	m.dst.port = port;
	m.ring_size = ring;
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	if (!strcmp(kind, "garbage")) {
		char junk[64];

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (char)(i * 37 + 11);
		send_fds(link, junk, sizeof(junk), NULL, 0);
	} else if (!strcmp(kind, "short")) {
		send_fds(link, &m, 10, NULL, 0);
	} else if (!strcmp(kind, "nofds")) {
		send_fds(link, &m, sizeof(m), NULL, 0);
	} else if (!strcmp(kind, "unsealed") || !strcmp(kind, "badsize")) {
		rfd = make_region(ring, !strcmp(kind, "badsize"), &mine, 0);
		if (!strcmp(kind, "badsize"))
			m.ring_size = 3000; /* not a power of two, and not the region's size */
		fds[0] = rfd;
		fds[1] = sv[1];
		send_fds(link, &m, sizeof(m), fds, 2);
	} else if (!strcmp(kind, "widx") || !strcmp(kind, "ridx")) {
		struct scif_qp_region *theirs;
		struct scif_ctl_msg g;
		int got;

		rfd = make_region(ring, 1, &mine, 0);
		fds[0] = rfd;
		fds[1] = sv[1];
		if (send_fds(link, &m, sizeof(m), fds, 2))
			return 3;
		got = recv_fds(link, &g, sizeof(g), fds, 4);
		if (got != 2 || g.op != SCIF_CNCT_GNT)
			return 4;
		theirs = mmap(NULL, SCIF_QP_HDR_SIZE + g.ring_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, fds[0], 0);
		/* Lie at once, so the victim sees it from its first call on. */
		if (!strcmp(kind, "widx"))
			theirs->in_widx = (uint64_t)g.ring_size * 5 + 3;
		else
			theirs->out_ridx = 1u << 30;
		send(fds[1], "x", 1, MSG_NOSIGNAL);
	} else if (!strncmp(kind, "reply-", 6)) {
		return hostile_reply(link, &m, sv[1], kind);
	} else if (!strcmp(kind, "silent")) {
		/* Connected, and never a word: the listener must not wait for us. */
		struct pollfd p = { .fd = link, .events = POLLIN };

		poll(&p, 1, 5000);
		return 0;
	} else if (!strncmp(kind, "offer-", 6) || !strcmp(kind, "claim") ||
		   !strcmp(kind, "nb-commit")) {
		return hostile_bulk(link, &m, sv[1], kind);
	} else {
		return 64;
	}
	/* Stay until the victim hangs up (or 5 s). */
	struct pollfd p = { .fd = link, .events = POLLIN };
	poll(&p, 1, 5000);
	return 0;
}
