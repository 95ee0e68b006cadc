// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * peer.c - the fuzzers' side of the local fabric's wire protocol (peer.h): links, control
 * messages with descriptors, regions and bells, and an honest handshake to start from.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "local.h"
#include "peer.h"
#include "../scm.h"

void fzp_path(char *buf, size_t len, uint16_t node, uint16_t port)
{
	const char *dir = getenv("SCIF_RUN_DIR");

	/* fabric/local.c: <dir>/scif-u<euid>/n<node>.l<port> (ports >= 1024) */
	snprintf(buf, len, "%s/scif-u%u/n%u.l%u", dir && *dir ? dir : "/tmp", (unsigned)geteuid(),
		 node, port);
}

static socklen_t fzp_addr(struct sockaddr_un *sa, uint16_t node, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	fzp_path(sa->sun_path, sizeof(sa->sun_path), node, port);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1);
}

int fzp_connect(uint16_t node, uint16_t port)
{
	struct sockaddr_un sa;
	socklen_t len = fzp_addr(&sa, node, port);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err;

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, len) == 0)
		return fd;
	err = errno;
	close(fd);
	return -err;
}

int fzp_listen(uint16_t node, uint16_t port)
{
	struct sockaddr_un sa;
	socklen_t len = fzp_addr(&sa, node, port);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err;

	if (fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, len) == 0 && listen(fd, 16) == 0)
		return fd;
	err = errno;
	close(fd);
	return -err;
}

int fzp_send(int link, const void *msg, size_t len, const int *fds, int nfds)
{
	return test_scm_send(link, msg, len, fds, nfds, MSG_DONTWAIT) < 0 ? -errno : 0;
}

void fzp_close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

int fzp_recv(int link, void *msg, size_t len, int *fds, int cap, int *nfds, int timeout_ms)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} c;
	struct iovec iov = { .iov_base = msg, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf) };
	struct pollfd p = { .fd = link, .events = POLLIN };
	ssize_t n;

	*nfds = 0;
	if (poll(&p, 1, timeout_ms) == 0)
		return -ETIMEDOUT;
	n = recvmsg(link, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int)), tmp[16];

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(tmp, CMSG_DATA(h), sizeof(int) * (size_t)k);
		for (int i = 0; i < k; i++) {
			if (*nfds < cap)
				fds[(*nfds)++] = tmp[i];
			else
				close(tmp[i]);
		}
	}
	return (int)n;
}

int fzp_region_make(struct fzp_region *r, uint32_t ring, int kind, uint32_t pid)
{
	/* An impossible ring size is refused before any mapping: keep such regions small. */
	size_t len = SCIF_QP_HDR_SIZE + (ring <= SCIF_RING_MAX ? (size_t)ring : 4096u);
	struct scif_qp_region *q;
	int fd;

	r->fd = -1;
	r->map = NULL;
	fd = memfd_create("fuzz-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		fz_fail("memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)(len + (kind == FZP_FD_BADSIZE ? 4096u : 0))) < 0)
		fz_fail("ftruncate: %s", strerror(errno));
	q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (q == MAP_FAILED)
		fz_fail("mmap region: %s", strerror(errno));
	q->magic = SCIF_QP_MAGIC;
	q->version = SCIF_QP_VERSION + (kind == FZP_FD_BADHDR);
	q->ring_size = ring;
	q->hdr_size = SCIF_QP_HDR_SIZE;
	q->owner_pid = pid;
	if (kind != FZP_FD_UNSEALED && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		fz_fail("seal: %s", strerror(errno));
	r->fd = fd;
	r->map = q;
	r->len = len;
	return fd;
}

void fzp_region_free(struct fzp_region *r)
{
	if (r->map)
		munmap(r->map, r->len);
	if (r->fd >= 0)
		close(r->fd);
	r->map = NULL;
	r->fd = -1;
}

int fzp_fd_make(int kind, uint32_t ring, struct fzp_region *keep, int *user)
{
	struct fzp_region r;
	int sv[2], fd;

	switch (kind) {
	case FZP_FD_REGION:
	case FZP_FD_UNSEALED:
	case FZP_FD_BADSIZE:
	case FZP_FD_BADHDR:
		fd = fzp_region_make(&r, ring, kind, (uint32_t)getpid());
		if (keep && !keep->map) {
			*keep = r;
			keep->fd = -1; /* the caller closes the returned descriptor */
		} else {
			munmap(r.map, r.len);
		}
		return fd;
	case FZP_FD_BELL:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			fz_fail("socketpair: %s", strerror(errno));
		if (user && *user < 0)
			*user = sv[0];
		else
			close(sv[0]);
		return sv[1];
	case FZP_FD_PIPE:
		if (pipe2(sv, O_CLOEXEC) < 0)
			fz_fail("pipe: %s", strerror(errno));
		close(sv[1]);
		return sv[0];
	case FZP_FD_DEVNULL:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			fz_fail("/dev/null: %s", strerror(errno));
		return fd;
	default:
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fz_fail("socket: %s", strerror(errno));
		return fd;
	}
}

void fzp_msg(struct scif_ctl_msg *m, uint16_t op, uint16_t node, uint16_t port)
{
	memset(m, 0, sizeof(*m));
	m->magic = SCIF_CTL_MAGIC;
	m->version = SCIF_CTL_VERSION;
	m->op = op;
	m->src.node = FZP_NODE;
	m->src.port = 4321;
	m->dst.node = node;
	m->dst.port = port;
	m->pid = (uint32_t)getpid();
}

static const uint32_t ring_sizes[] = { 4096, 8192, 65536, 1u << 20, 0, 3000, 4097, 1u << 27,
				       SCIF_RING_MAX, 2048, 1u << 31, 12288 };
static const int32_t errnos[] = { ECONNREFUSED, ENOMEM, 0, -1, EINVAL, EAGAIN, INT32_MIN, 4096 };

void fzp_build_send(struct fz *f, int link, uint16_t op, uint16_t node, uint16_t port,
		    struct fzp_region *keep, int *user, struct fzp_sent *out)
{
	uint8_t raw[256];
	struct scif_ctl_msg m;
	uint8_t mask = fz_u8(f), fb;
	int fds[8], nf, len = sizeof(m);

	fzp_msg(&m, op, node, port);
	m.ring_size = ring_sizes[fz_u8(f) % (sizeof(ring_sizes) / sizeof(ring_sizes[0]))];
	if (mask & 1)
		m.magic = fz_u32(f);
	if (mask & 2)
		m.version = fz_u16(f);
	if (mask & 4)
		m.op = (uint16_t)(fz_u8(f) % (SCIF_CTL_MAX + 2));
	if (m.op == SCIF_CNCT_REJ)
		m.err = errnos[fz_u8(f) % (sizeof(errnos) / sizeof(errnos[0]))];
	if (mask & 8) {
		m.src.node = fz_u16(f) % 4;
		m.src.port = fz_u16(f);
		m.dst.node = fz_u16(f);
		m.dst.port = fz_u8(f) & 1 ? fz_u16(f) : port;
	}
	if (mask & 16)
		m.ring_size = fz_u32(f);
	if (mask & 32) {
		m.pid = fz_u32(f);
		m.err = (int32_t)fz_u32(f);
		m.tag = fz_u32(f);
		for (int i = 0; i < 4; i++)
			m.payload[i] = fz_u64(f);
	}
	if (mask & 128)
		fz_bytes(f, &m, sizeof(m));
	memcpy(raw, &m, sizeof(m));
	if (mask & 64) {
		len = fz_u8(f);
		if (len > (int)sizeof(m)) {
			uint32_t magic;

			fz_bytes(f, raw + sizeof(m), (size_t)len - sizeof(m));
			/*
			 * Bytes after the message are a handle trailer to the local fabric (local.h):
			 * keep them from being a well-formed one, so "another length" stays malformed.
			 */
			memcpy(&magic, raw + sizeof(m), sizeof(magic));
			if (magic == LOCAL_FH_MAGIC)
				raw[sizeof(m)] ^= 1;
		}
	}
	fb = fz_u8(f);
	nf = (fb & 7) ^ 2;
	out->kind0 = -1;
	for (int i = 0; i < nf; i++) {
		int dflt = i == 1 ? FZP_FD_BELL : FZP_FD_REGION;
		int kind = (fz_u8(f) ^ dflt) % FZP_FD_KINDS;

		if (i == 0)
			out->kind0 = kind;
		fds[i] = fzp_fd_make(kind, m.ring_size, keep, user);
	}
	fzp_send(link, raw, (size_t)len, fds, nf);
	fzp_close_fds(fds, nf);
	out->m = m;
	out->len = len;
	out->nfds = nf;
}

int fzp_valid_hdr(const struct scif_ctl_msg *m)
{
	return m->magic == SCIF_CTL_MAGIC && m->version == SCIF_CTL_VERSION;
}

int fzp_valid_ring(uint32_t ring)
{
	return ring >= SCIF_RING_MIN && ring <= SCIF_RING_MAX && !(ring & (ring - 1));
}

void fzp_expect_msg(const struct scif_ctl_msg *m, int len, uint16_t op, int nfds, int want_fds)
{
	if (len <= 0)
		fz_fail("expected op %u from the library, got %s", op,
			len == 0 ? "a hang-up" : strerror(-len));
	if (len != (int)sizeof(*m) || m->magic != SCIF_CTL_MAGIC || m->version != SCIF_CTL_VERSION)
		fz_fail("the library sent a malformed control message (%d bytes, magic %#x, "
			"version %u)", len, len >= 8 ? m->magic : 0, len >= 8 ? m->version : 0);
	if (m->op != op || nfds != want_fds)
		fz_fail("the library sent op %u with %d descriptors, expected op %u with %d", m->op,
			nfds, op, want_fds);
}

void fzp_take_qp(struct fzp_conn *c, const struct scif_ctl_msg *m, int *fds)
{
	uint32_t ring = m->ring_size;
	size_t len = SCIF_QP_HDR_SIZE + (size_t)ring;
	struct scif_qp_region *q;
	struct stat st;
	int seals = fcntl(fds[0], F_GET_SEALS);

	if (ring < SCIF_RING_MIN || ring > SCIF_RING_MAX || (ring & (ring - 1)))
		fz_fail("the library announced a ring of %u bytes", ring);
	if (fstat(fds[0], &st) < 0 || (size_t)st.st_size != len || seals < 0 ||
	    (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		fz_fail("the library's region is not a sealed %zu-byte memfd", len);
	q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (q == MAP_FAILED)
		fz_fail("mmap the library's region: %s", strerror(errno));
	if (q->magic != SCIF_QP_MAGIC || q->version != SCIF_QP_VERSION || q->ring_size != ring ||
	    q->hdr_size != SCIF_QP_HDR_SIZE || q->owner_pid != (uint32_t)getpid())
		fz_fail("the library's region header is wrong");
	close(fds[0]);
	fds[0] = -1;
	c->theirs = q;
	c->theirs_len = len;
	c->ring_theirs = ring;
	c->lib_bell = fds[1];
	fds[1] = -1;
}

int fzp_conn_accept(struct fzp_conn *c, scif_epd_t lep, uint16_t port, uint32_t ring,
		    uint32_t pid)
{
	struct scif_ctl_msg m;
	struct scif_portID peer;
	int fds[4], nfds, sv[2], n, r = -1;

	memset(c, 0, sizeof(*c));
	c->ep = c->link = c->user = c->lib_bell = -1;
	c->mine.fd = -1;
	c->link = fzp_connect(0, port);
	if (c->link < 0)
		fz_fail("connect to the listener: %s", strerror(-c->link));
	fds[0] = fzp_region_make(&c->mine, ring, FZP_FD_REGION, pid);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fz_fail("socketpair: %s", strerror(errno));
	c->user = sv[0];
	fds[1] = sv[1];
	c->ring_mine = ring;
	fzp_msg(&m, SCIF_CNCT_REQ, 0, port);
	m.ring_size = ring;
	if (fzp_send(c->link, &m, sizeof(m), fds, 2))
		fz_fail("send REQ: %s", strerror(errno));
	close(sv[1]);
	close(c->mine.fd);
	c->mine.fd = -1;
	/* The REQ is there before the accept: a non-blocking accept takes it (the monitor may
	 * look at the listener at the same time, so allow it a moment). */
	for (int i = 0; i < 1000 && r < 0; i++) {
		r = scif_accept(lep, &peer, &c->ep, 0);
		fz_expect_errno("scif_accept", r, FZ_ERRNOS(EAGAIN, ENOMEM));
		if (r < 0 && errno != EAGAIN)
			return -1;
		if (r < 0)
			usleep(100);
	}
	if (r < 0)
		fz_fail("an honest request was not accepted in 100 ms");
	if (peer.node != FZP_NODE || peer.port != 4321)
		fz_fail("scif_accept reported peer %u:%u", peer.node, peer.port);
	n = fzp_recv(c->link, &m, sizeof(m), fds, 4, &nfds, 1000);
	fzp_expect_msg(&m, n, SCIF_CNCT_GNT, nfds, 2);
	fzp_take_qp(c, &m, fds);
	return 0;
}

void fzp_conn_hangup(struct fzp_conn *c)
{
	if (c->link >= 0)
		close(c->link);
	if (c->user >= 0)
		close(c->user);
	if (c->lib_bell >= 0)
		close(c->lib_bell);
	c->link = c->user = c->lib_bell = -1;
	fzp_region_free(&c->mine);
	if (c->theirs)
		munmap(c->theirs, c->theirs_len);
	c->theirs = NULL;
}

void fzp_use_connection(struct fz *f, scif_epd_t ep, struct fzp_region *reg)
{
	char buf[256];

	for (int i = 0, k = fz_u8(f) % 5; i < k; i++) {
		struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN | SCIF_POLLOUT };
		int r;

		switch (fz_u8(f) % 4) {
		case 0:
			r = scif_send(ep, buf, 1 + fz_u8(f), 0);
			fz_expect_errno("scif_send", r, FZ_ERRNOS(ECONNRESET));
			break;
		case 1:
			r = scif_recv(ep, buf, sizeof(buf), 0);
			fz_expect_errno("scif_recv", r, FZ_ERRNOS(ECONNRESET));
			if (r > 0) /* nobody sent anything */
				fz_fail("scif_recv returned %d bytes nobody sent", r);
			break;
		case 2: /* a peer rewriting its header after the handshake changes nothing */
			if (reg->map) {
				struct scif_qp_region *q = reg->map;

				q->ring_size = fz_u32(f);
				q->magic = fz_u64(f);
			}
			break;
		default:
			r = scif_poll(&p, 1, 0);
			fz_expect_errno("scif_poll", r, FZ_ERRNOS(EINTR, ENOMEM));
			break;
		}
	}
}
