// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fabric/local.c - all SCIF nodes as processes of one OS instance. Ports are locked files and
 * links Unix sockets in a directory only the trust domain can enter (the kernel drops the
 * locks with the process), regions and window memory are sealed memfds passed over the link
 * (fabric handles: descriptors by SCM_RIGHTS, words in a trailer, local.h), doorbells are
 * bytes on a socketpair. Needs no daemon or privilege.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "scif.h"
#include "fabric.h"
#include "local.h"

#define LOCAL_DEFAULT_NODES 2
/* Bytes parked on the user end to make it unwritable (see local_bell_create). */
#define LOCAL_JUNK_SNDBUF 4096

/*
 * Names are files in the trust domain's directory (local_dir, see local_domain_dir):
 *   <dir>/n<node>.p<port>        a port: held by an flock on this file
 *   <dir>/n<node>.l<port>        listen socket of a listening endpoint
 *   <dir>/admin/n<node>.[pl]<port>   the same for privileged ports (< SCIF_ADMIN_PORT_END)
 * Only the domain's members can enter the directory, so no other user can take, block or
 * impersonate a name of ours, and only root can create names under admin/. The kernel drops
 * an flock with its last descriptor, so a killed process leaves no port held; a listen socket
 * file it leaves behind refuses connections (ECONNREFUSED) until the port's next holder
 * replaces it.
 */
static char local_dir[80];

static socklen_t local_name(const struct scif_fabric *fab, struct sockaddr_un *sa, char kind,
			    uint16_t node, uint16_t port)
{
	int n;

	(void)fab;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%sn%u.%c%u", local_dir,
		     port < SCIF_ADMIN_PORT_END ? "admin/" : "", node, kind, port);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

static int env_uint(const char *name, unsigned long max, unsigned long dflt, unsigned long *out)
{
	const char *v = getenv(name);
	char *end;
	unsigned long x;

	if (!v || !*v) {
		*out = dflt;
		return 0;
	}
	errno = 0;
	x = strtoul(v, &end, 0);
	if (errno || *end || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

/* Is gid among this process's groups? */
static int local_in_group(gid_t gid)
{
	gid_t groups[256];
	int n;

	if (getegid() == gid)
		return 1;
	n = getgroups(256, groups);
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/*
 * SCIF_DOMAIN selects who may meet: unset, each Unix user has a private SCIF machine; set to
 * "group:<name|gid>", every member of that group shares one.
 */
static int local_domain(struct scif_fabric *fab)
{
	const char *v = getenv("SCIF_DOMAIN");
	char *end;

	fab->share_gid = (gid_t)-1;
	if (!v || !*v) {
		snprintf(fab->domain, sizeof(fab->domain), "u%u", (unsigned)geteuid());
		return 0;
	}
	if (strncmp(v, "group:", 6))
		return -EINVAL;
	v += 6;
	errno = 0;
	unsigned long g = strtoul(v, &end, 10);
	if (!*v || errno || *end) {
		struct group *gr = getgrnam(v);

		if (!gr)
			return -EINVAL;
		g = gr->gr_gid;
	}
	if (!local_in_group((gid_t)g) && geteuid() != 0)
		return -EACCES;
	fab->share_gid = (gid_t)g;
	snprintf(fab->domain, sizeof(fab->domain), "g%lu", g);
	return 0;
}

/*
 * Make the directory @path with its final group and mode at once: a private one made beside
 * it, set up, then renamed into place. Processes starting together must never see it half
 * made (a mode not yet set reads as a directory someone else may have planted). Losing the
 * race to another process is success: what it made is checked like any directory found.
 */
static int local_make_dir(const char *path, mode_t mode, gid_t gid)
{
	char tmp[sizeof(local_dir) + 16];
	int err;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	if (!mkdtemp(tmp))
		return -errno;
	if ((gid != (gid_t)-1 && chown(tmp, (uid_t)-1, gid)) || chmod(tmp, mode) ||
	    (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0 &&
	     (errno != EINVAL || rename(tmp, path) < 0))) {
		err = errno;
		rmdir(tmp);
		return err == EEXIST || err == ENOTEMPTY ? 0 : -err;
	}
	return 0;
}

/*
 * Make (or check) a directory that only the domain can use: a user domain's is the user's,
 * mode 0700; a group domain's carries the group, mode 3770 (setgid, so names inherit the
 * group; sticky, so members cannot remove each other's names); root's is root's. A directory
 * that is a link, or whose owner, group or mode allow anyone else in, is refused.
 */
static int local_private_dir(const char *path, const struct scif_fabric *fab, int admin)
{
	mode_t mode = admin ? 0755 : fab->share_gid != (gid_t)-1 ? 03770 : 0700;
	struct stat st;

	if (lstat(path, &st) < 0) {
		int ret = errno == ENOENT ? local_make_dir(path, mode,
							   admin ? (gid_t)-1 : fab->share_gid)
					  : -errno;

		if (ret)
			return ret;
		if (lstat(path, &st) < 0)
			return -errno;
	}
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 07777) != mode)
		return -EACCES;
	if (admin)
		return st.st_uid == 0 ? 0 : -EACCES;
	if (fab->share_gid != (gid_t)-1)
		return st.st_gid == fab->share_gid ? 0 : -EACCES;
	return st.st_uid == geteuid() ? 0 : -EACCES;
}

/*
 * The domain's directory: $SCIF_RUN_DIR/scif-<domain>, or /tmp/scif-<domain> (the same path
 * for every process of the domain, whoever it runs as). Root also makes admin/ in it.
 */
static int local_domain_dir(const struct scif_fabric *fab)
{
	const char *base = getenv("SCIF_RUN_DIR");
	char admin[sizeof(local_dir) + 8];
	int n, ret;

	if (!base || !*base)
		base = "/tmp";
	n = snprintf(local_dir, sizeof(local_dir), "%s/scif-%s", base, fab->domain);
	/* The longest name (admin/n65535.l65535) must fit a socket address. */
	if (n < 0 || (size_t)n >= sizeof(local_dir) ||
	    (size_t)n + 20 >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	ret = local_private_dir(local_dir, fab, 0);
	if (ret || geteuid() != 0)
		return ret;
	snprintf(admin, sizeof(admin), "%s/admin", local_dir);
	return local_private_dir(admin, fab, 1);
}

int scif__local_names(struct scif_fabric *fab)
{
	int ret = local_domain(fab);

	return ret ? ret : local_domain_dir(fab);
}

static int local_attach(struct scif_fabric *fab)
{
	unsigned long nodes, self;
	int ret;

	/* SCIF_LOCAL_NODES: how many nodes (0..N-1) are online; a host with one card by default. */
	ret = env_uint("SCIF_LOCAL_NODES", SCIF_MAX_NODES, LOCAL_DEFAULT_NODES, &nodes);
	if (ret || nodes == 0)
		return -ENXIO;
	ret = env_uint("SCIF_NODE", 65535, 0, &self);
	if (ret || self >= nodes)
		return -ENXIO;
	if (scif__local_names(fab))
		return -ENXIO;
	fab->self = (uint16_t)self;
	fab->max_node = (uint16_t)(nodes - 1);
	fab->online = nodes == 64 ? ~0ULL : (1ULL << nodes) - 1;
	return 0;
}

static int local_socket(int type)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	return fd < 0 ? -errno : fd;
}

static int local_port_reserve(struct scif_fabric *fab, uint16_t port)
{
	struct sockaddr_un sa;
	int fd;

	local_name(fab, &sa, 'p', fab->self, port);
	fd = open(sa.sun_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		  fab->share_gid != (gid_t)-1 ? 0660 : 0600);
	if (fd < 0)
		return errno == EACCES || errno == ENOENT ? -EACCES : -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		close(fd);
		return err == EWOULDBLOCK ? -EADDRINUSE : -err;
	}
	return fd;
}

static int local_listen(struct scif_fabric *fab, uint16_t port, int backlog)
{
	struct sockaddr_un sa;
	socklen_t len = local_name(fab, &sa, 'l', fab->self, port);
	int fd = local_socket(SOCK_SEQPACKET);
	int err;

	if (fd < 0)
		return fd;
	/* We hold the port: a socket file left there is a dead holder's. */
	unlink(sa.sun_path);
	/* The kernel admits backlog + 1 pending links; SCIF admits exactly backlog. */
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 ||
	    chmod(sa.sun_path, fab->share_gid != (gid_t)-1 ? 0660 : 0600) < 0 ||
	    listen(fd, backlog - 1) < 0) {
		err = errno;
		close(fd);
		return err == EADDRINUSE ? -EADDRINUSE : -err;
	}
	return fd;
}

static int local_connect(struct scif_fabric *fab, int holder, const struct scif_portID *dst)
{
	struct sockaddr_un sa;
	socklen_t len = local_name(fab, &sa, 'l', dst->node, dst->port);
	int fd = local_socket(SOCK_SEQPACKET);
	int err;

	(void)holder;
	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, len) == 0)
		return fd;
	err = errno;
	close(fd);
	/* No listener (or a dead one's name), or its backlog is full: SCIF refuses at once. */
	if (err == ECONNREFUSED || err == ENOENT || err == EAGAIN || err == EACCES)
		return -ECONNREFUSED;
	return -err;
}

static int local_accept(struct scif_fabric *fab, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	(void)fab;
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return fd;
}

static int local_relisten(int lfd, int backlog)
{
	/* listen() again on a listening socket only changes its backlog (kernel: backlog+1). */
	return listen(lfd, backlog - 1) < 0 ? -errno : 0;
}

/* Does the process with this pid carry gid among its groups? (/proc is the kernel's word.) */
static int local_pid_in_group(pid_t pid, gid_t gid)
{
	char path[64], line[1024];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p;

		if (strncmp(line, "Groups:", 7) && strncmp(line, "Gid:", 4))
			continue;
		p = strchr(line, ':') + 1;
		for (;;) {
			char *end;
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			if ((gid_t)g == gid)
				found = 1;
			p = end;
		}
	}
	fclose(f);
	return found;
}

static int local_peer_allowed(struct scif_fabric *fab, int link)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(link, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	if (cr.uid == geteuid() || cr.uid == 0)
		return 0;
	if (fab->share_gid != (gid_t)-1 && local_pid_in_group(cr.pid, fab->share_gid))
		return 0;
	return -EACCES;
}

static pid_t local_peer_process(int link)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(link, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != geteuid())
		return 0;
	return cr.pid;
}

/* Does @fh need a trailer entry (local.h)? Only a descriptor alone does not. */
static int local_fh_plain(const struct scif_fh *fh)
{
	return fh->fd >= 0 && !fh->kind && !fh->word[0] && !fh->word[1] && !fh->word[2];
}

static int local_link_send(int link, const void *msg, size_t len, const struct scif_fh *fh,
			   int nfh)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SCIF_LINK_MAX_FH)];
	} c;
	struct local_fh_wire tr[SCIF_LINK_MAX_FH];
	struct iovec iov[2] = { { .iov_base = (void *)msg, .iov_len = len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 1 };
	int fds[SCIF_LINK_MAX_FH], nfds = 0, plain = 1;
	ssize_t n;

	if (nfh < 0 || nfh > SCIF_LINK_MAX_FH)
		return -EINVAL;
	for (int i = 0; i < nfh; i++) {
		plain &= local_fh_plain(&fh[i]);
		memset(&tr[i], 0, sizeof(tr[i]));
		tr[i].magic = LOCAL_FH_MAGIC;
		tr[i].index = (uint16_t)i;
		tr[i].kind = fh[i].kind;
		memcpy(tr[i].word, fh[i].word, sizeof(tr[i].word));
		if (fh[i].fd >= 0) {
			tr[i].flags = LOCAL_FH_HAS_FD;
			fds[nfds++] = fh[i].fd;
		}
	}
	if (!plain) {
		iov[1].iov_base = tr;
		iov[1].iov_len = sizeof(tr[0]) * (size_t)nfh;
		mh.msg_iovlen = 2;
	}
	if (nfds > 0) {
		memset(&c, 0, sizeof(c));
		mh.msg_control = c.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c.h.cmsg_level = SOL_SOCKET;
		c.h.cmsg_type = SCM_RIGHTS;
		c.h.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(&c.h), fds, sizeof(int) * (size_t)nfds);
	}
	for (int i = 0; (n = sendmsg(link, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0; i++) {
		if ((errno != EINTR && errno != ENOBUFS && errno != ENOMEM) || i == 20)
			break;
		if (errno != EINTR)
			usleep(50); /* a transient shortage of kernel memory */
	}
	if (n < 0)
		return errno == EPIPE ? -ECONNRESET : errno == ENOBUFS ? -ENOMEM : -errno;
	return (size_t)n == len + (plain ? 0 : iov[1].iov_len) ? 0 : -EPROTO;
}

/*
 * The handles of a datagram of @n bytes for a message of @len: its @nfds descriptors alone
 * (no trailer), or the trailer's entries with the descriptors in order. Returns how many, or
 * -EPROTO if the trailer is malformed or does not account for exactly the descriptors.
 */
static int local_fh_parse(const struct local_fh_wire *tr, size_t n, size_t len, const int *fds,
			  int nfds, struct scif_fh *fh)
{
	size_t extra = n - len;
	int k, used = 0;

	if (n <= len) {
		for (int i = 0; i < nfds; i++)
			fh[i] = (struct scif_fh){ .fd = fds[i] };
		return nfds;
	}
	if (extra % sizeof(*tr) || extra / sizeof(*tr) > SCIF_LINK_MAX_FH)
		return -EPROTO;
	k = (int)(extra / sizeof(*tr));
	for (int i = 0; i < k; i++) {
		if (tr[i].magic != LOCAL_FH_MAGIC || tr[i].index != i || tr[i].pad ||
		    (tr[i].flags & ~LOCAL_FH_HAS_FD))
			return -EPROTO;
		fh[i].fd = -1;
		if (tr[i].flags & LOCAL_FH_HAS_FD) {
			if (used == nfds)
				return -EPROTO;
			fh[i].fd = fds[used++];
		}
		fh[i].kind = tr[i].kind;
		memcpy(fh[i].word, tr[i].word, sizeof(fh[i].word));
	}
	return used == nfds ? k : -EPROTO;
}

static int local_link_recv(int link, void *msg, size_t len, struct scif_fh *fh, int *nfh)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SCIF_LINK_MAX_FH)];
	} c;
	struct local_fh_wire tr[SCIF_LINK_MAX_FH];
	struct scif_fh got[SCIF_LINK_MAX_FH];
	struct iovec iov[2] = { { .iov_base = msg, .iov_len = len },
				{ .iov_base = tr, .iov_len = sizeof(tr) } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf) };
	int fds[SCIF_LINK_MAX_FH * 2], nfds = 0, k = 0, bad;
	ssize_t n;

	do
		n = recvmsg(link, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t m = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int tmp[SCIF_LINK_MAX_FH * 2];

		if (m > SCIF_LINK_MAX_FH * 2)
			m = SCIF_LINK_MAX_FH * 2;
		memcpy(tmp, CMSG_DATA(h), m * sizeof(int));
		for (size_t i = 0; i < m; i++) {
			if (nfds < SCIF_LINK_MAX_FH * 2)
				fds[nfds++] = tmp[i];
			else
				close(tmp[i]);
		}
	}
	/*
	 * A truncated message is a protocol error. A truncated control block (our descriptor
	 * table is full) is not the peer's fault: the message stands, with *nfh = -1.
	 * An empty message reads as a hang-up: no handle may come with it (or leak).
	 */
	bad = (mh.msg_flags & MSG_TRUNC) != 0;
	/*
	 * The control buffer holds SCIF_LINK_MAX_FH descriptors (more arrive as MSG_CTRUNC); a
	 * message without a trailer never yields more handles than that, whatever the buffer.
	 */
	if ((size_t)n <= len)
		while (nfds > SCIF_LINK_MAX_FH)
			close(fds[--nfds]);
	if (!bad && n > 0 && !(mh.msg_flags & MSG_CTRUNC)) {
		k = local_fh_parse(tr, (size_t)n, len, fds, nfds, got);
		bad = k < 0 || (k > 0 && (!fh || k > *nfh));
	}
	if (bad || n == 0 || (mh.msg_flags & MSG_CTRUNC)) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		k = bad || n == 0 ? 0 : -1;
	} else if (k > 0) {
		memcpy(fh, got, sizeof(*fh) * (size_t)k);
	}
	if (nfh)
		*nfh = k;
	if (bad)
		return -EPROTO;
	return (size_t)n > len ? (int)len : (int)n;
}

static int local_region_create(struct scif_fabric *fab, size_t len, struct scif_region *r)
{
	const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	int fd, err;
	void *p;

	(void)fab;
	fd = memfd_create("scif-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0 || fcntl(fd, F_ADD_SEALS, seals) < 0)
		goto fail;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	r->addr = p;
	r->len = len;
	r->priv[0] = (uint64_t)fd;
	return 0;
fail:
	err = errno;
	close(fd);
	return -err;
}

static void local_region_export(const struct scif_region *r, struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = (int)r->priv[0] };
}

/*
 * The peer's region is trusted only after the kernel confirms it cannot change size: without
 * the seals a hostile peer could truncate it and turn our stores into SIGBUS.
 */
static int local_region_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len,
			       struct scif_region *r)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW;
	struct stat st;
	int seals;
	void *p;

	(void)fab;
	if (fh->fd < 0 || fh->kind || fh->word[0] || fh->word[1] || fh->word[2])
		return -EPROTO;
	seals = fcntl(fh->fd, F_GET_SEALS);
	if (seals < 0 || (seals & need) != need || fstat(fh->fd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || (size_t)st.st_size != len)
		return -EPROTO;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fh->fd, 0);
	if (p == MAP_FAILED)
		return errno == ENOMEM ? -ENOMEM : -EPROTO;
	r->addr = p;
	r->len = len;
	r->priv[0] = (uint64_t)fh->fd;
	fh->fd = -1;
	return 0;
}

static void local_region_destroy(struct scif_region *r)
{
	if (!r->addr)
		return;
	munmap(r->addr, r->len);
	close((int)r->priv[0]);
	r->addr = NULL;
	r->priv[0] = 0;
}

/*
 * The endpoint descriptor is one end of a stream socketpair; the other end (the own bell) is
 * rung by the peer (and by ourselves) to make the endpoint readable, and a message parked on
 * the user end makes it unwritable until the bell end is drained. A small send buffer keeps
 * that parked message small. The peer imports the bell end itself: ringing and unparking are
 * then a send and a recv on it, and its hang-up says that the endpoint descriptor is closed.
 */
static int local_bell_create(struct scif_fabric *fab, int *user, struct scif_bell *own)
{
	int sv[2], sz = LOCAL_JUNK_SNDBUF;

	(void)fab;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0 ||
	    fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0) {
		int err = errno;

		close(sv[0]);
		close(sv[1]);
		return -err;
	}
	*user = sv[0];
	*own = (struct scif_bell){ .fd = sv[1] };
	return 0;
}

static void local_bell_export(const struct scif_bell *own, struct scif_fh *fh)
{
	*fh = (struct scif_fh){ .fd = own->fd };
}

static int local_bell_import(struct scif_fabric *fab, struct scif_fh *fh, struct scif_bell *peer)
{
	(void)fab;
	if (fh->fd < 0 || fh->kind || fh->word[0] || fh->word[1] || fh->word[2])
		return -EPROTO;
	*peer = (struct scif_bell){ .fd = fh->fd };
	fh->fd = -1;
	return 0;
}

static int local_ring(const struct scif_bell *b)
{
	static const char one = 1;

	/* A full bell is rung already; a transient shortage is tried again a few times. */
	for (int i = 0; send(b->fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0; i++) {
		if (errno == EAGAIN)
			return 0;
		if ((errno != EINTR && errno != ENOBUFS && errno != ENOMEM) || i == 20)
			return -errno;
		if (errno != EINTR)
			usleep(50);
	}
	return 0;
}

static int local_drain(int fd)
{
	char buf[4096];
	ssize_t n;

	do
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	while (n > 0 || (n < 0 && errno == EINTR));
	return 0;
}

/* The peer parked its message on its descriptor: we hold the other end, its bell. */
static int local_unpark(const struct scif_bell *peer)
{
	return local_drain(peer->fd);
}

static void local_bell_close(struct scif_bell *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}

/*
 * Window memory is a sealed memfd (hugetlbfs-backed for huge pages): the owner maps it where
 * the application's pages were, and the peer maps it after checking that it cannot shrink.
 */
static int local_mem_alloc(struct scif_fabric *fab, size_t len, unsigned int page_shift,
			   struct scif_mem *m)
{
	/* memfd_create encodes the page size as mmap does (MFD_HUGE_SHIFT == MAP_HUGE_SHIFT). */
	int fd = memfd_create("scif-window",
			      MFD_CLOEXEC | MFD_ALLOW_SEALING |
				      (page_shift ? MFD_HUGETLB | (page_shift << MAP_HUGE_SHIFT) : 0));

	(void)fab;
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		if (fd >= 0)
			close(fd);
		/* Out of memory, hugetlb pages or descriptors: all "resources" (spec 3.9). */
		return -ENOMEM;
	}
	*m = (struct scif_mem){ .fd = fd, .off = 0, .len = len };
	return 0;
}

/* The memfd, and the window's offset in it (word 0; 0 needs no trailer on the link). */
static void local_mem_export(const struct scif_mem *m, off_t off, size_t len, int prot,
			     struct scif_fh *fh)
{
	(void)len;
	(void)prot; /* the peer maps it with the window's protection (mem_import) */
	*fh = (struct scif_fh){ .fd = m->fd, .word = { (uint64_t)(m->off + off) } };
}

static int local_mem_import(struct scif_fabric *fab, struct scif_fh *fh, size_t len, int prot,
			    struct scif_mem *m)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW;
	uint64_t foff = fh->word[0];
	struct stat st;
	int seals;
	void *p;

	(void)fab;
	if (fh->fd < 0 || fh->kind || fh->word[1] || fh->word[2] || !len || (foff & (4096 - 1)) ||
	    foff > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	seals = fcntl(fh->fd, F_GET_SEALS);
	if (seals < 0 || (seals & need) != need || fstat(fh->fd, &st) < 0 ||
	    (uint64_t)st.st_size < foff + len)
		return -EINVAL;
	p = mmap(NULL, len, prot, MAP_SHARED, fh->fd, (off_t)foff);
	if (p == MAP_FAILED)
		return -ENOMEM;
	*m = (struct scif_mem){ .fd = -1, .off = (off_t)foff, .len = len, .addr = p };
	/*
	 * The mapping is all the core needs (scif_mmap remaps it): the descriptor goes, so the
	 * peer's windows cost us none. hugetlbfs mappings cannot be remapped: keep it.
	 */
	if (st.st_blksize > 4096)
		m->fd = fh->fd;
	else
		close(fh->fd);
	fh->fd = -1;
	return 0;
}

static void local_mem_free(struct scif_mem *m)
{
	if (m->addr)
		munmap(m->addr, m->len);
	if (m->fd >= 0)
		close(m->fd);
	m->addr = NULL;
	m->fd = -1;
}

const struct scif_fabric_ops scif__fabric_local = {
	.size = sizeof(struct scif_fabric_ops),
	.name = "local",
	.attach = local_attach,
	.port_reserve = local_port_reserve,
	.listen = local_listen,
	.connect = local_connect,
	.accept = local_accept,
	.relisten = local_relisten,
	.peer_allowed = local_peer_allowed,
	.peer_process = local_peer_process,
	.link_send = local_link_send,
	.link_recv = local_link_recv,
	.region_create = local_region_create,
	.region_export = local_region_export,
	.region_import = local_region_import,
	.region_destroy = local_region_destroy,
	.bell_create = local_bell_create,
	.bell_export = local_bell_export,
	.bell_import = local_bell_import,
	.ring = local_ring,
	.drain = local_drain,
	.unpark = local_unpark,
	.bell_close = local_bell_close,
	.mem_alloc = local_mem_alloc,
	.mem_export = local_mem_export,
	.mem_import = local_mem_import,
	.mem_free = local_mem_free,
};
