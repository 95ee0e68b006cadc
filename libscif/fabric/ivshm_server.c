// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ivshm_server.c - the ivshmem server of the pcie fabric's host side: accepts QEMU ivshmem-doorbell
 * devices, hands them the shared memory and eventfds, and lets the host ring and be rung as peer 0.
 *
 * Ids are reused (the lowest free one: a card that comes back is usually the same node), but
 * QEMU cannot take an id back once told that its peer left (it frees that peer's eventfds and
 * writes into the freed memory when the id connects again: heap corruption, seen with QEMU 7.2).
 * So an id below IVSHM_KEEP_IDS keeps its eventfds while any live peer holds them: whoever gets
 * the id gets the same ones, the other peers are told of the departure not at all and of the
 * return only if they never held them (the host's callback hears of both). A peer that still
 * holds a departed id's eventfds rings nobody, or the id's next holder.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */
#endif
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ivshm_server.h"

/* Protocol version the server announces; QEMU >= 2.5 accepts 0 only. */
#define IVSHM_PROTOCOL_VERSION 0
/* The "shared memory follows" message value. */
#define IVSHM_MSG_SHM (-1)
/* Ids below this keep their eventfds for the server's lifetime (above). */
#define IVSHM_KEEP_IDS 64

/**
 * struct ivshm_msg - one queued protocol message
 * @value: the 64-bit number (sent little-endian)
 * @fd: a duplicate owned by the queue and closed once sent, or -1 for a message without fd.
 *      Duplicating decouples the queue from the lifetime of the peer the fd belongs to.
 */
struct ivshm_msg {
	int64_t value;
	int fd;
};

/**
 * struct ivshm_peer - one connected guest
 * @sock: its connection; the protocol is one-way (server to guest), the guest only ever hangs up
 * @id: its peer id (1..65535); its position in scif__ivshm_server.peers follows it
 * @efd: @nvectors eventfds the guest receives interrupts on (ring it by writing them)
 * @host_efd: @nvectors eventfds the guest rings the host through (the host reads them)
 * @q: queued messages, @q_head..@q_len not yet sent; a setup burst is 2 + (peers + 2) * nvectors
 *     messages with fds, more than a socket buffer may hold, so sending waits for EPOLLOUT
 * @q_cap: allocated entries of @q
 * @q_head: first unsent entry
 * @q_len: entries in use
 * @out_armed: EPOLLOUT is in the epoll set (only while @q has unsent messages)
 * @announced: the host's callback was told it connected, so it must hear of its departure
 * @holds: ids below IVSHM_KEEP_IDS whose eventfds it was sent (it keeps them)
 * @pid: the connecting process (SO_PEERCRED), 0 if unknown
 * @failed: a send failed; reap() disconnects it outside of loops over the peer array
 * @dead: disconnected; events still pending for it in the current batch are ignored
 * @next_zombie: list of dead peers freed at the end of scif__ivshm_dispatch()
 */
struct ivshm_peer {
	int sock;
	uint16_t id;
	int *efd;
	int *host_efd;
	uint64_t holds;
	pid_t pid;
	struct ivshm_msg *q;
	size_t q_cap, q_head, q_len;
	bool out_armed;
	bool announced;
	bool failed;
	bool dead;
	struct ivshm_peer *next_zombie;
};

/**
 * struct scif__ivshm_server - the server
 * @epfd: epoll set of the listener and every guest socket: the fd scif__ivshm_fd() returns
 * @lsock: listening socket; its address doubles as the listener's epoll tag
 * @shm_fd: our duplicate of the shared-memory fd
 * @shm_size: its size
 * @nvectors: vectors per peer
 * @path: socket path, unlinked on destroy
 * @peers: live guests sorted by id (dead ones leave it at once)
 * @npeers: entries in @peers
 * @peers_cap: allocated entries of @peers
 * @kept_efd, @kept_host_efd: the eventfds of each id below IVSHM_KEEP_IDS that is not taken
 *         but that a live peer holds (else NULL); a peer that takes the id takes them
 * @zombies: dead peers not yet freed
 * @cb: peer event callback
 * @cb_arg: its argument
 */
struct scif__ivshm_server {
	int epfd;
	int lsock;
	int shm_fd;
	uint64_t shm_size;
	unsigned int nvectors;
	char *path;
	struct ivshm_peer **peers;
	size_t npeers, peers_cap;
	int *kept_efd[IVSHM_KEEP_IDS];
	int *kept_host_efd[IVSHM_KEEP_IDS];
	struct ivshm_peer *zombies;
	scif__ivshm_peer_cb cb;
	void *cb_arg;
};

static void close_fds(int *fds, unsigned int n)
{
	unsigned int i;

	if (!fds)
		return;
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Grow an array of @elem-sized entries to hold at least @need, with checked arithmetic. */
static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 8, bytes;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (__builtin_mul_overflow(ncap, (size_t)2, &ncap))
			return -ENOMEM;
	}
	if (__builtin_mul_overflow(ncap, elem, &bytes))
		return -ENOMEM;
	p = realloc(*arr, bytes);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static struct ivshm_peer *find_peer(const struct scif__ivshm_server *srv, uint16_t id)
{
	size_t lo = 0, hi = srv->npeers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (srv->peers[mid]->id == id)
			return srv->peers[mid];
		if (srv->peers[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int set_out_interest(struct scif__ivshm_server *srv, struct ivshm_peer *p, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
				  .data.ptr = p };

	if (p->out_armed == on)
		return 0;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, p->sock, &ev) < 0)
		return -errno;
	p->out_armed = on;
	return 0;
}

/* Send what the socket takes now; arm EPOLLOUT for the rest. */
static int flush(struct scif__ivshm_server *srv, struct ivshm_peer *p)
{
	while (p->q_head < p->q_len) {
		struct ivshm_msg *m = &p->q[p->q_head];
		uint64_t le = htole64((uint64_t)m->value);
		struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (m->fd >= 0) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &m->fd, sizeof(int));
		}
		n = sendmsg(p->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return set_out_interest(srv, p, true);
		if (n < 0)
			return -errno;
		/*
		 * An 8-byte message on a stream socket is never split in practice (the socket had
		 * room, or we got EAGAIN); a short write would desynchronise the stream for good.
		 */
		if ((size_t)n != sizeof(le))
			return -EPROTO;
		if (m->fd >= 0)
			close(m->fd);
		p->q_head++;
	}
	p->q_head = p->q_len = 0;
	return set_out_interest(srv, p, false);
}

/* Queue one message; @fd (if >= 0) is duplicated, the caller keeps its own. */
static int queue_msg(struct ivshm_peer *p, int64_t value, int fd)
{
	int dupfd = -1, ret;

	if (fd >= 0) {
		dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (dupfd < 0)
			return -errno;
	}
	ret = grow((void **)&p->q, &p->q_cap, p->q_len + 1, sizeof(*p->q));
	if (ret) {
		if (dupfd >= 0)
			close(dupfd);
		return ret;
	}
	p->q[p->q_len].value = value;
	p->q[p->q_len].fd = dupfd;
	p->q_len++;
	return 0;
}

/* Queue "peer @id is reachable through these eventfds" (@fds: nvectors of them). */
static int queue_vectors(struct scif__ivshm_server *srv, struct ivshm_peer *to, uint16_t id,
			 const int *fds)
{
	unsigned int v;
	int ret;

	for (v = 0; v < srv->nvectors; v++) {
		ret = queue_msg(to, id, fds[v]);
		if (ret)
			return ret;
	}
	return 0;
}

static void peer_free(struct scif__ivshm_server *srv, struct ivshm_peer *p)
{
	size_t i;

	for (i = p->q_head; i < p->q_len; i++)
		if (p->q[i].fd >= 0)
			close(p->q[i].fd);
	if (p->efd)
		close_fds(p->efd, srv->nvectors);
	if (p->host_efd)
		close_fds(p->host_efd, srv->nvectors);
	free(p->efd);
	free(p->host_efd);
	free(p->q);
	free(p);
}

/* Close the kept eventfds of ids that no live peer holds: nobody can ring them any more. */
static void release_unheld(struct scif__ivshm_server *srv)
{
	uint64_t held = 0;

	for (size_t i = 0; i < srv->npeers; i++)
		held |= srv->peers[i]->holds;
	for (unsigned int id = 0; id < IVSHM_KEEP_IDS; id++) {
		if (!srv->kept_efd[id] || (held >> id & 1))
			continue;
		close_fds(srv->kept_efd[id], srv->nvectors);
		close_fds(srv->kept_host_efd[id], srv->nvectors);
		free(srv->kept_efd[id]);
		free(srv->kept_host_efd[id]);
		srv->kept_efd[id] = srv->kept_host_efd[id] = NULL;
	}
}

/*
 * Disconnect @p: tell the other guests (QEMU then drops the peer's eventfds), tell the host's
 * callback, and park @p as a zombie so events already fetched for it are ignored safely.
 * Other guests whose notification fails are only marked: reap() takes them next.
 */
static void peer_kill(struct scif__ivshm_server *srv, struct ivshm_peer *p, bool notify)
{
	size_t i, j;

	if (p->dead)
		return;
	p->dead = true;
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, p->sock, NULL);
	close(p->sock);
	p->sock = -1;
	/* while it is still listed, so the host can look its eventfds up to forget them */
	if (srv->cb && p->announced)
		srv->cb(srv->cb_arg, SCIF__IVSHM_PEER_DISCONNECTED, p->id);
	for (i = j = 0; i < srv->npeers; i++)
		if (srv->peers[i] != p)
			srv->peers[j++] = srv->peers[i];
	srv->npeers = j;
	if (p->id < IVSHM_KEEP_IDS && p->efd && p->host_efd) {
		/* Its eventfds stay with the id; the others keep theirs and hear nothing. */
		srv->kept_efd[p->id] = p->efd;
		srv->kept_host_efd[p->id] = p->host_efd;
		p->efd = p->host_efd = NULL;
		notify = false;
	}
	release_unheld(srv); /* its own and any that only @p held */
	for (i = 0; notify && i < srv->npeers; i++) {
		struct ivshm_peer *o = srv->peers[i];

		if (o->failed || queue_msg(o, p->id, -1) || flush(srv, o))
			o->failed = true;
	}
	p->next_zombie = srv->zombies;
	srv->zombies = p;
}

/* Disconnect every peer marked failed, including those that fail while we do. */
static void reap(struct scif__ivshm_server *srv)
{
	bool again = true;

	while (again) {
		size_t i;

		again = false;
		for (i = 0; i < srv->npeers; i++) {
			if (srv->peers[i]->failed) {
				peer_kill(srv, srv->peers[i], true);
				again = true;
				break;	/* the array changed */
			}
		}
	}
}

static void free_zombies(struct scif__ivshm_server *srv)
{
	while (srv->zombies) {
		struct ivshm_peer *p = srv->zombies;

		srv->zombies = p->next_zombie;
		peer_free(srv, p);
	}
}

static int make_eventfds(int **out, unsigned int n)
{
	unsigned int i;
	int *fds = malloc(n * sizeof(*fds));

	if (!fds)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fds[i] = -1;
	*out = fds;
	for (i = 0; i < n; i++) {
		/* Non-blocking so neither a ring nor a drain can ever stall the host's event loop. */
		fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fds[i] < 0)
			return -errno;
	}
	return 0;
}

/* The lowest id in 1..SCIF__IVSHM_MAX_ID no live guest has, or 0 when all are taken. */
static uint16_t free_id(const struct scif__ivshm_server *srv)
{
	uint32_t want = 1;
	size_t i;

	for (i = 0; i < srv->npeers && want <= SCIF__IVSHM_MAX_ID; i++) {
		if (srv->peers[i]->id != want)
			break;
		want++;
	}
	return want <= SCIF__IVSHM_MAX_ID ? (uint16_t)want : 0;
}

/*
 * A guest connected: give it an id, the memory, everyone's doorbells (the host's first, as peer
 * 0) and its own interrupt eventfds, in the order of QEMU's ivshmem spec; then introduce it to
 * the other guests.
 */
static int accept_one(struct scif__ivshm_server *srv)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct ivshm_peer *p;
	size_t i, pos;
	uint16_t id;
	int sock, ret;
	bool have_kept = false;

	sock = accept4(srv->lsock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (sock < 0)
		return -errno;
	id = free_id(srv);
	if (!id) {
		close(sock);	/* QEMU fails to realize the device: better than a shared id */
		return 0;
	}
	ret = grow((void **)&srv->peers, &srv->peers_cap, srv->npeers + 1, sizeof(*srv->peers));
	if (ret)
		goto err_sock;
	p = calloc(1, sizeof(*p));
	if (!p) {
		ret = -ENOMEM;
		goto err_sock;
	}
	p->sock = sock;
	p->id = id;
	{
		struct ucred cred;
		socklen_t cl = sizeof(cred);

		if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			p->pid = cred.pid;
	}
	if (id < IVSHM_KEEP_IDS && srv->kept_efd[id]) {
		p->efd = srv->kept_efd[id];
		p->host_efd = srv->kept_host_efd[id];
		srv->kept_efd[id] = srv->kept_host_efd[id] = NULL;
		ret = 0;
		have_kept = true;
	} else {
		ret = make_eventfds(&p->efd, srv->nvectors);
		if (!ret)
			ret = make_eventfds(&p->host_efd, srv->nvectors);
	}
	if (ret)
		goto err_peer;

	ret = queue_msg(p, IVSHM_PROTOCOL_VERSION, -1);
	if (!ret)
		ret = queue_msg(p, id, -1);
	if (!ret)
		ret = queue_msg(p, IVSHM_MSG_SHM, srv->shm_fd);
	if (!ret)
		ret = queue_vectors(srv, p, SCIF__IVSHM_HOST_ID, p->host_efd);
	for (i = 0; !ret && i < srv->npeers; i++) {
		ret = queue_vectors(srv, p, srv->peers[i]->id, srv->peers[i]->efd);
		if (srv->peers[i]->id < IVSHM_KEEP_IDS)
			p->holds |= 1ull << srv->peers[i]->id;
	}
	if (!ret)
		ret = queue_vectors(srv, p, id, p->efd);
	if (ret)
		goto err_peer;

	ev.data.ptr = p;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, sock, &ev) < 0) {
		ret = -errno;
		goto err_peer;
	}
	/* free_id() returned the first gap, so that is where the sorted array takes it */
	for (pos = 0; pos < srv->npeers && srv->peers[pos]->id < id; pos++)
		;
	memmove(&srv->peers[pos + 1], &srv->peers[pos], (srv->npeers - pos) * sizeof(*srv->peers));
	srv->peers[pos] = p;
	srv->npeers++;

	if (flush(srv, p))
		p->failed = true;
	for (i = 0; i < srv->npeers; i++) {
		struct ivshm_peer *o = srv->peers[i];

		if (o == p || o->failed)
			continue;
		if (id < IVSHM_KEEP_IDS && (o->holds >> id & 1))
			continue; /* it holds this id's eventfds from its last holder: the same */
		if (queue_vectors(srv, o, id, p->efd) || flush(srv, o))
			o->failed = true;
		else if (id < IVSHM_KEEP_IDS)
			o->holds |= 1ull << id;
	}
	if (srv->cb && !p->failed) {
		p->announced = true;
		srv->cb(srv->cb_arg, SCIF__IVSHM_PEER_CONNECTED, id);
	}
	reap(srv);
	return 1;

err_peer:
	p->sock = -1;
	if (have_kept) { /* they stay the id's: peers hold copies */
		srv->kept_efd[id] = p->efd;
		srv->kept_host_efd[id] = p->host_efd;
		p->efd = p->host_efd = NULL;
	}
	peer_free(srv, p);
err_sock:
	close(sock);
	return ret;
}

/* The guest wrote or hung up. It never sends anything legitimately; drop data, watch for EOF. */
static void peer_input(struct ivshm_peer *p)
{
	char buf[256];
	ssize_t n;

	for (;;) {
		n = recv(p->sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		p->failed = true;	/* EOF or error */
		return;
	}
}

int scif__ivshm_dispatch(struct scif__ivshm_server *srv)
{
	struct epoll_event evs[32];
	int n, i, handled = 0, ret = 0;
	bool incoming = false;

	n = epoll_wait(srv->epfd, evs, 32, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n; i++) {
		struct ivshm_peer *p = evs[i].data.ptr;

		if (evs[i].data.ptr == &srv->lsock) {
			incoming = true;
			continue;
		}
		if (p->dead)
			continue;
		handled++;
		if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			peer_input(p);
		if (!p->failed && (evs[i].events & (EPOLLHUP | EPOLLERR)))
			p->failed = true;
		if (!p->failed && (evs[i].events & EPOLLOUT) && flush(srv, p))
			p->failed = true;
	}
	/*
	 * Departures before arrivals: a guest that left and the one that replaces it can show up
	 * in the same wait (a card process killed and the next started, with the server slow
	 * to look). Reaped first, the departed guest's id is free again and its departure is
	 * announced first, so the newcomer becomes the same node instead of the next free one.
	 */
	reap(srv);
	if (incoming) {
		int r;

		/* accept everything queued; a failed guest setup is not a server failure */
		while ((r = accept_one(srv)) > 0)
			handled++;
		if (r < 0 && r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED &&
		    r != -EINTR && r != -EMFILE && r != -ENFILE && r != -ENOMEM)
			ret = r;
	}
	free_zombies(srv);
	return ret ? ret : handled;
}

/* Bind @path, replacing a socket file nobody listens on any more. */
static int bind_path(int sock, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int probe, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return -errno;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -EADDRINUSE;
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return -errno;
	ret = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
	close(probe);
	if (ret == 0 || errno != ECONNREFUSED)
		return -EADDRINUSE;	/* someone is serving it */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
}

struct scif__ivshm_server *scif__ivshm_create(const char *socket_path, int shm_fd, uint64_t shm_size,
					      unsigned int nvectors, int *errp)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct scif__ivshm_server *srv;
	struct stat st;
	int ret;

	if (!socket_path || !*socket_path || nvectors < 1 || nvectors > SCIF__IVSHM_MAX_VECTORS) {
		*errp = -EINVAL;
		return NULL;
	}
	if (fstat(shm_fd, &st) < 0) {
		*errp = -errno;
		return NULL;
	}
	if (!shm_size)
		shm_size = (uint64_t)st.st_size;
	/* QEMU maps the whole file as BAR2 and PCI BAR sizes are powers of two. */
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != shm_size || !shm_size ||
	    (shm_size & (shm_size - 1))) {
		*errp = -EINVAL;
		return NULL;
	}

	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		*errp = -ENOMEM;
		return NULL;
	}
	srv->epfd = srv->lsock = srv->shm_fd = -1;
	srv->nvectors = nvectors;
	srv->shm_size = shm_size;
	srv->path = strdup(socket_path);
	if (!srv->path) {
		ret = -ENOMEM;
		goto err;
	}
	srv->shm_fd = fcntl(shm_fd, F_DUPFD_CLOEXEC, 0);
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->shm_fd < 0 || srv->epfd < 0 || srv->lsock < 0) {
		ret = -errno;
		goto err;
	}
	ret = bind_path(srv->lsock, socket_path);
	if (ret) {
		free(srv->path);	/* not ours: never unlink it */
		srv->path = NULL;
		goto err;
	}
	ev.data.ptr = &srv->lsock;
	if (listen(srv->lsock, 16) < 0 || epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lsock, &ev) < 0) {
		ret = -errno;
		goto err;
	}
	return srv;

err:
	scif__ivshm_destroy(srv);
	*errp = ret;
	return NULL;
}

void scif__ivshm_destroy(struct scif__ivshm_server *srv)
{
	if (!srv)
		return;
	/* No notifications: every guest loses the server at once, and sees its socket close. */
	while (srv->npeers)
		peer_kill(srv, srv->peers[srv->npeers - 1], false);
	free_zombies(srv);
	if (srv->lsock >= 0) {
		close(srv->lsock);
		if (srv->path)
			unlink(srv->path);
	}
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->shm_fd >= 0)
		close(srv->shm_fd);
	for (unsigned int id = 0; id < IVSHM_KEEP_IDS; id++) {
		if (srv->kept_efd[id])
			close_fds(srv->kept_efd[id], srv->nvectors);
		if (srv->kept_host_efd[id])
			close_fds(srv->kept_host_efd[id], srv->nvectors);
		free(srv->kept_efd[id]);
		free(srv->kept_host_efd[id]);
	}
	free(srv->peers);
	free(srv->path);
	free(srv);
}

void scif__ivshm_set_peer_cb(struct scif__ivshm_server *srv, scif__ivshm_peer_cb cb, void *arg)
{
	srv->cb = cb;
	srv->cb_arg = arg;
}

int scif__ivshm_fd(const struct scif__ivshm_server *srv)
{
	return srv->epfd;
}

unsigned int scif__ivshm_nvectors(const struct scif__ivshm_server *srv)
{
	return srv->nvectors;
}

uint64_t scif__ivshm_shm_size(const struct scif__ivshm_server *srv)
{
	return srv->shm_size;
}

size_t scif__ivshm_peer_ids(const struct scif__ivshm_server *srv, uint16_t *ids, size_t max)
{
	size_t i;

	for (i = 0; i < srv->npeers && i < max; i++)
		ids[i] = srv->peers[i]->id;
	return srv->npeers;
}

int scif__ivshm_peer_pid(const struct scif__ivshm_server *srv, uint16_t peer_id)
{
	const struct ivshm_peer *p = find_peer(srv, peer_id);

	return p ? (int)p->pid : -ENOENT;
}

int scif__ivshm_peer_eventfd(const struct scif__ivshm_server *srv, uint16_t peer_id,
			     unsigned int vector)
{
	const struct ivshm_peer *p = find_peer(srv, peer_id);

	if (!p)
		return -ENOENT;
	if (vector >= srv->nvectors)
		return -EINVAL;
	return p->efd[vector];
}

int scif__ivshm_host_eventfd(const struct scif__ivshm_server *srv, uint16_t peer_id,
			     unsigned int vector)
{
	const struct ivshm_peer *p = find_peer(srv, peer_id);

	if (!p)
		return -ENOENT;
	if (vector >= srv->nvectors)
		return -EINVAL;
	return p->host_efd[vector];
}

int scif__eventfd_kick(int fd)
{
	uint64_t one = 1;

	for (;;) {
		if (write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
			return 0;
		if (errno == EINTR)
			continue;
		/* a counter at its maximum means a ring is already pending: nothing is lost */
		return errno == EAGAIN ? 0 : -errno;
	}
}

int scif__ivshm_ring(struct scif__ivshm_server *srv, uint16_t peer_id, unsigned int vector)
{
	int fd = scif__ivshm_peer_eventfd(srv, peer_id, vector);

	return fd < 0 ? fd : scif__eventfd_kick(fd);
}
