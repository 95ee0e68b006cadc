// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fabric/pcie_dev.c - how a pcie-fabric process reaches the aperture and the doorbells
 * (struct pcie_dev_ops, pcie.h): the host runs the ivshmem server in-process as peer 0; a card
 * is an ivshmem client, exactly as QEMU's ivshmem-doorbell device is (host processes standing
 * in for a card); a card in a guest reaches its device through kernel/shim.
 *
 * Configuration (environment):
 *   SCIF_PCIE_SOCKET   the ivshmem server's UNIX socket (default /tmp/scif-pcie-<euid>.sock)
 *   SCIF_PCIE_SIZE     host: the aperture's size, a power of two (default 256M; k/M/G suffix)
 *   SCIF_PCIE_SHM      host: back the aperture with this file instead of a memfd
 *   SCIF_PCIE_SERVE    host: 1: serve the aperture or fail, never join another server's
 *   SCIF_PCIE_WAIT_MS  card: how long to wait for the host's server to appear (default 5000)
 *   SCIF_PCIE_DEV      card: reach the aperture through kernel/shim (/dev/scif_shimN)
 * Only vector 0 is used: every doorbell of a station (one process) is that one interrupt.
 * A second host process finds the aperture served (the server's lock, below) and joins it as
 * a client, as a card does: it is another station of node 0.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fabric.h"
#include "pcie.h"
#include "ivshm_server.h"
#include "scif_shim.h"

static int dev_env_size(const char *name, uint64_t dflt, uint64_t *out)
{
	const char *v = getenv(name);
	unsigned long long x;
	unsigned int shift = 0;
	char *end;

	if (!v || !*v) {
		*out = dflt;
		return 0;
	}
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || end == v)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || x > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)x << shift;
	return 0;
}

static const char *dev_socket_path(char *buf, size_t len)
{
	const char *v = getenv("SCIF_PCIE_SOCKET");

	if (v && *v)
		return v;
	snprintf(buf, len, "/tmp/scif-pcie-%u.sock", (unsigned)geteuid());
	return buf;
}

static void dev_eventfd_drain(int fd)
{
	uint64_t n;

	while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		;
}

static int dev_eventfd_kick(int fd)
{
	return fd < 0 ? -ECONNRESET : scif__eventfd_kick(fd);
}

/* ---- host: the ivshmem server in this process, the host being peer 0 ------------------- */

/**
 * struct dev_host - @lock orders kicks (any thread) against the progress thread's dispatch,
 * which may close a departed card's eventfds. @in[n]/@out[n]: our duplicates of the eventfd
 * card n rings us on, and of the one we ring it on (vector 0), -1 when n is not connected.
 * @ev_up/@ev_down: arrivals and departures seen during one dispatch, reported after it (a
 * departure's pcie_dev.departed at once). @dev: the device we serve, for that callback.
 */
struct dev_host {
	pthread_mutex_t lock;
	struct pcie_dev *dev;
	struct scif__ivshm_server *srv;
	int lockfd; /* "<socket>.lock", held while we serve */
	int in[PCIE_MAX_NODES];
	int out[PCIE_MAX_NODES];
	uint32_t ev_up, ev_down;
};

static void host_peer_cb(void *arg, enum scif__ivshm_event event, uint16_t id)
{
	struct dev_host *h = arg;

	if (id >= PCIE_MAX_NODES)
		return; /* beyond any slice: never a SCIF node */
	if (h->in[id] >= 0)
		close(h->in[id]);
	if (h->out[id] >= 0)
		close(h->out[id]);
	h->in[id] = h->out[id] = -1;
	if (event == SCIF__IVSHM_PEER_CONNECTED) {
		int in = scif__ivshm_host_eventfd(h->srv, id, 0);
		int out = scif__ivshm_peer_eventfd(h->srv, id, 0);

		h->in[id] = in >= 0 ? fcntl(in, F_DUPFD_CLOEXEC, 0) : -1;
		h->out[id] = out >= 0 ? fcntl(out, F_DUPFD_CLOEXEC, 0) : -1;
		/* A departure just before stays: the card left, and another took its id. */
		h->ev_up |= 1u << id;
	} else {
		h->ev_up &= ~(1u << id);
		h->ev_down |= 1u << id;
		/* Now, inside the dispatch: a newcomer may be given this id before it returns. */
		if (h->dev->departed)
			h->dev->departed(h->dev, id);
	}
}

/*
 * Serving is decided by a lock next to the socket, taken before anything is touched: a
 * second host process must not truncate the aperture file or reset the socket of a live
 * server (it joins as a client); the lock goes with the server's process, however it ends.
 */
static int host_lock(const char *sock)
{
	char path[128];
	int fd;

	if (snprintf(path, sizeof(path), "%s.lock", sock) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		close(fd);
		return err == EWOULDBLOCK ? -EADDRINUSE : -err;
	}
	return fd;
}

static int host_open(struct pcie_dev *d, int (*ready)(struct pcie_dev *d))
{
	const char *file = getenv("SCIF_PCIE_SHM");
	char sbuf[108];
	const char *sock = dev_socket_path(sbuf, sizeof(sbuf));
	struct dev_host *h;
	uint64_t size;
	int fd, ret;

	ret = dev_env_size("SCIF_PCIE_SIZE", 256u << 20, &size);
	if (ret || size < (4u << 20) || (size & (size - 1)))
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->lockfd = host_lock(sock);
	if (h->lockfd < 0) {
		ret = h->lockfd;
		free(h);
		return ret;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->dev = d;
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		h->in[i] = h->out[i] = -1;
	fd = file && *file ? open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)
			   : memfd_create("scif-pcie-aperture", MFD_CLOEXEC);
	/* A file: truncated to nothing first, so that no byte of an earlier run survives. */
	if (fd < 0 || (file && *file && ftruncate(fd, 0) < 0) || ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		goto fail;
	}
	d->fd = fd;
	d->map_off = 0;
	d->size = size;
	d->self = SCIF__IVSHM_HOST_ID;
	d->node = 0;
	d->host = 1;
	d->priv = h;
	ret = ready(d);
	if (ret)
		goto fail;
	h->srv = scif__ivshm_create(sock, fd, size, 1, &ret);
	if (!h->srv)
		goto fail;
	scif__ivshm_set_peer_cb(h->srv, host_peer_cb, h);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	d->fd = -1;
	pthread_mutex_destroy(&h->lock);
	close(h->lockfd);
	free(h);
	d->priv = NULL;
	return ret ? ret : -ENXIO;
}

static int host_kick(struct pcie_dev *d, uint16_t node)
{
	struct dev_host *h = d->priv;
	int ret;

	if (node >= PCIE_MAX_NODES)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	ret = dev_eventfd_kick(h->out[node]);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static int host_pollfds(struct pcie_dev *d, int *fds, int max)
{
	struct dev_host *h = d->priv;
	int n = 0;

	/* Only the progress thread changes the set (in host_handle): no lock needed to read. */
	if (n < max)
		fds[n++] = scif__ivshm_fd(h->srv);
	for (int i = 0; i < PCIE_MAX_NODES && n < max; i++)
		if (h->in[i] >= 0)
			fds[n++] = h->in[i];
	return n;
}

static int host_handle(struct pcie_dev *d, pcie_dev_cb cb, void *arg)
{
	struct dev_host *h = d->priv;
	uint32_t up, down;
	int ret;

	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		if (h->in[i] >= 0)
			dev_eventfd_drain(h->in[i]);
	ret = scif__ivshm_dispatch(h->srv);
	up = h->ev_up;
	down = h->ev_down;
	h->ev_up = h->ev_down = 0;
	pthread_mutex_unlock(&h->lock);
	/*
	 * A card that came and went within one dispatch: gone. One that went and came (a card
	 * process killed and the next one, the server slow to look): gone, then here again.
	 */
	for (uint16_t i = 0; i < PCIE_MAX_NODES; i++) {
		if (down >> i & 1)
			cb(arg, PCIE_DEV_DOWN, i);
		if (up >> i & 1)
			cb(arg, PCIE_DEV_UP, i);
	}
	return ret < 0 ? ret : 0;
}

static int host_peer_group(struct pcie_dev *d, uint16_t node)
{
	struct dev_host *h = d->priv;
	int pid;

	pthread_mutex_lock(&h->lock);
	pid = scif__ivshm_peer_pid(h->srv, node);
	pthread_mutex_unlock(&h->lock);
	return pid;
}

static void host_close(struct pcie_dev *d)
{
	struct dev_host *h = d->priv;

	if (!h)
		return;
	scif__ivshm_set_peer_cb(h->srv, NULL, NULL);
	scif__ivshm_destroy(h->srv);
	for (int i = 0; i < PCIE_MAX_NODES; i++) {
		if (h->in[i] >= 0)
			close(h->in[i]);
		if (h->out[i] >= 0)
			close(h->out[i]);
	}
	close(h->lockfd);
	free(h);
	d->priv = NULL;
}

const struct pcie_dev_ops scif__pcie_dev_host = {
	.name = "host",
	.open = host_open,
	.kick = host_kick,
	.pollfds = host_pollfds,
	.handle = host_handle,
	.peer_group = host_peer_group,
	.close = host_close,
};

/* ---- card: an ivshmem client, as QEMU's ivshmem-doorbell is ----------------------------- */

/**
 * struct dev_client - @sock: the connection to the server (it only ever talks to us: peer
 * arrivals and departures); @in: the eventfd our vector 0 fires on (the other stations ring
 * it); @out[n]: station n's vector 0, which we ring, -1 while n is not connected;
 * @buf/@have: a message partly read. @lock orders kicks (any thread) against the progress
 * thread's updates of @out.
 */
struct dev_client {
	pthread_mutex_t lock;
	int sock;
	int in;
	int out[PCIE_MAX_NODES];
	uint8_t buf[8];
	size_t have;
};

/* A peer's vector (@fd >= 0) arrived, or the peer left (@fd -1): keep our copy of its bell. */
static void client_peer(struct dev_client *c, int64_t id, int fd)
{
	if (id < 0 || id >= PCIE_MAX_NODES) {
		if (fd >= 0)
			close(fd); /* beyond any slice: never a station */
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (fd < 0 && c->out[id] >= 0) {
		close(c->out[id]);
		c->out[id] = -1;
	} else if (fd >= 0 && c->out[id] < 0) {
		c->out[id] = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&c->lock);
	if (fd >= 0)
		close(fd); /* another vector of a peer we hold vector 0 of */
}

/*
 * Read one protocol message (a little-endian int64, perhaps with a descriptor): 1, 0 if none
 * is there yet (@wait_ms 0), -ECONNRESET at EOF, -EPROTO for garbage.
 */
static int client_msg(struct dev_client *c, int wait_ms, int64_t *value, int *fd)
{
	*fd = -1;
	while (c->have < sizeof(c->buf)) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { c->buf + c->have, sizeof(c->buf) - c->have };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf) };
		ssize_t n = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = c->sock, .events = POLLIN };

			if (!wait_ms || poll(&p, 1, wait_ms) <= 0)
				return 0;
			continue;
		}
		if (n <= 0)
			return -ECONNRESET;
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
			size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int tmp[4];

			if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
				continue;
			memcpy(tmp, CMSG_DATA(h), (k > 4 ? 4 : k) * sizeof(int));
			for (size_t i = 0; i < k && i < 4; i++) {
				if (*fd < 0)
					*fd = tmp[i];
				else
					close(tmp[i]); /* one per message: more is garbage */
			}
		}
		c->have += (size_t)n;
		if (c->have < sizeof(c->buf) && *fd >= 0) {
			close(*fd); /* a descriptor must come with a message's first byte */
			*fd = -1;
			return -EPROTO;
		}
	}
	uint64_t le;

	memcpy(&le, c->buf, sizeof(le));
	*value = (int64_t)le64toh(le);
	c->have = 0;
	return 1;
}

static int client_connect(const char *path, int wait_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t until = scif_fabric_now_ms() + (uint64_t)wait_ms;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		/* The host may not be up yet: wait for its server a while. */
		if ((errno != ENOENT && errno != ECONNREFUSED) || scif_fabric_now_ms() >= until)
			return -ENXIO;
		usleep(20000);
	}
}

/*
 * QEMU's side of the protocol: version 0, our id, the memory (-1 with its descriptor), then
 * each peer's vectors (its id with an eventfd, once per vector), ours last. We keep the
 * memory, our id, our own vector 0 and every other station's vector 0 (to ring it); the rest
 * is closed.
 */
static int client_open(struct pcie_dev *d, int (*ready)(struct pcie_dev *d))
{
	char sbuf[108];
	const char *path = dev_socket_path(sbuf, sizeof(sbuf));
	uint64_t wait_ms, until;
	struct dev_client *c;
	int64_t v, self = -1;
	int fd, shm = -1, ret, step = 0;
	struct stat st;

	(void)ready;
	if (dev_env_size("SCIF_PCIE_WAIT_MS", 5000, &wait_ms) || wait_ms > 600000)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->in = -1;
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		c->out[i] = -1;
	c->sock = client_connect(path, (int)wait_ms);
	if (c->sock < 0) {
		ret = c->sock;
		free(c);
		return ret;
	}
	until = scif_fabric_now_ms() + 5000;
	while (shm < 0 || c->in < 0 || c->out[SCIF__IVSHM_HOST_ID] < 0) {
		uint64_t now = scif_fabric_now_ms();

		ret = now >= until ? 0 : client_msg(c, (int)(until - now), &v, &fd);
		if (ret <= 0) {
			ret = ret ? ret : -ETIMEDOUT;
			goto fail;
		}
		ret = -EPROTO;
		if (step == 0) { /* the protocol version */
			if (v != 0 || fd >= 0)
				goto fail_fd;
			step = 1;
		} else if (step == 1) { /* our id */
			if (v < 0 || v > SCIF__IVSHM_MAX_ID || fd >= 0)
				goto fail_fd;
			self = v;
			step = 2;
		} else if (step == 2) { /* the memory */
			if (v != -1 || fd < 0)
				goto fail_fd;
			shm = fd;
			step = 3;
		} else if (fd >= 0 && v == self && c->in < 0) {
			c->in = fd;
			fcntl(fd, F_SETFL, O_NONBLOCK);
		} else if (fd >= 0 && v == self) {
			close(fd); /* another vector of ours */
		} else if (fd < 0 && v == SCIF__IVSHM_HOST_ID) {
			ret = -ECONNRESET;
			goto fail;
		} else {
			client_peer(c, v, fd);
		}
		continue;
fail_fd:
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	if (fstat(shm, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
		ret = -EPROTO;
		goto fail;
	}
	d->fd = shm;
	d->map_off = 0;
	d->size = (uint64_t)st.st_size;
	d->self = (uint16_t)self;
	d->host = 0;
	d->priv = c;
	return 0;
fail:
	if (shm >= 0)
		close(shm);
	if (c->in >= 0)
		close(c->in);
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		if (c->out[i] >= 0)
			close(c->out[i]);
	close(c->sock);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return ret;
}

static int client_kick(struct pcie_dev *d, uint16_t node)
{
	struct dev_client *c = d->priv;
	int ret;

	if (node >= PCIE_MAX_NODES)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	ret = dev_eventfd_kick(c->out[node]);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int client_pollfds(struct pcie_dev *d, int *fds, int max)
{
	struct dev_client *c = d->priv;
	int n = 0;

	if (c->sock >= 0 && n < max)
		fds[n++] = c->sock;
	if (n < max)
		fds[n++] = c->in;
	return n;
}

static int client_handle(struct pcie_dev *d, pcie_dev_cb cb, void *arg)
{
	struct dev_client *c = d->priv;
	int64_t v;
	int fd, ret;

	dev_eventfd_drain(c->in);
	while (c->sock >= 0 && (ret = client_msg(c, 0, &v, &fd)) != 0) {
		if (ret < 0 || (fd < 0 && v == SCIF__IVSHM_HOST_ID)) {
			/* The server (the host process) is gone, or says the host is. */
			close(c->sock);
			c->sock = -1;
			cb(arg, PCIE_DEV_DOWN, SCIF__IVSHM_HOST_ID);
			break;
		}
		/* Another station came or went (the hub's ROSTER tells us what it serves). */
		client_peer(c, v, fd);
	}
	return 0;
}

static void client_close(struct pcie_dev *d)
{
	struct dev_client *c = d->priv;

	if (!c)
		return;
	if (c->sock >= 0)
		close(c->sock);
	close(c->in);
	for (int i = 0; i < PCIE_MAX_NODES; i++)
		if (c->out[i] >= 0)
			close(c->out[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
	d->priv = NULL;
}

const struct pcie_dev_ops scif__pcie_dev_client = {
	.name = "ivshmem-client",
	.open = client_open,
	.kick = client_kick,
	.pollfds = client_pollfds,
	.handle = client_handle,
	.close = client_close,
};

/* ---- card through kernel/shim (/dev/scif_shimN) ------------------------------------------ */

/*
 * SCIF_PCIE_DEV names the shim's device of the card's ivshmem-doorbell function. A card may
 * have several on the one aperture, one per process that may attach at once:
 * /dev/scif_shim0, /dev/scif_shim1, ... (the name's number counts up from SCIF_PCIE_DEV's). A
 * process takes the first that no other process holds (an exclusive flock, which goes with
 * the open file, however the process ends). Its station is that device's peer id
 * (IVPosition); the card's node is the number the host gave the card (pcie.c reads it from
 * the aperture, PCIE_CARDS_OFF), or SCIF_NODE if set; here, as a fallback, the lowest peer id
 * of the card's devices. The aperture is BAR2 (mapped write-combining by the shim), our doorbell vector
 * 0 delivered to an eventfd (SCIF_SHIM_IOC_SET_IRQ), and ringing station n a write of
 * (n, vector 0) to BAR0's Doorbell register.
 *
 * Unlike the ivshmem client, nothing tells such a card that the host went away (QEMU keeps
 * the device's memory and says nothing to the guest): it is "blind", and watches the host's
 * heartbeat in the aperture instead (pcie_peer_ctl.beat).
 */
#define SHIM_BAR_DOORBELL_REGS 0
#define SHIM_BAR_APERTURE 2

struct dev_shim {
	volatile uint32_t *regs; /* BAR0's page: IVPosition, Doorbell */
	int irq;                 /* eventfd of vector 0 */
};

/* Is @fd a shim device this backend can drive? Its description in @info. */
static int shim_usable(int fd, struct scif_shim_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, SCIF_SHIM_IOC_INFO, info) == 0 &&
	       info->abi_version == SCIF_SHIM_ABI_VERSION &&
	       (info->flags & SCIF_SHIM_INFO_PEER_ID) && info->nr_vectors >= 1 &&
	       info->peer_id >= 1 && info->peer_id < PCIE_MAX_NODES &&
	       (info->bars[SHIM_BAR_APERTURE].flags & SCIF_SHIM_BAR_MMAP) &&
	       !info->bars[SHIM_BAR_APERTURE].excl_size &&
	       (info->bars[SHIM_BAR_DOORBELL_REGS].flags & SCIF_SHIM_BAR_MMAP) &&
	       info->bars[SHIM_BAR_DOORBELL_REGS].size >= SCIF_SHIM_IVSHMEM_DOORBELL + 4;
}

/*
 * The card's devices, from SCIF_PCIE_DEV on: the first one free, locked (its descriptor), in
 * @info; the card's node (the lowest peer id) in *@node. -EBUSY if every one is held,
 * -ENXIO if there is none.
 */
static int shim_pick(const char *path, struct scif_shim_info *info, uint16_t *node)
{
	size_t len = strlen(path), digits = len;
	unsigned long first = 0;
	int mine = -1, seen = 0;

	while (digits && path[digits - 1] >= '0' && path[digits - 1] <= '9')
		digits--;
	if (digits < len)
		first = strtoul(path + digits, NULL, 10);
	*node = PCIE_MAX_NODES;
	for (unsigned long i = 0; i < PCIE_MAX_NODES; i++) {
		struct scif_shim_info in;
		char name[128];
		int fd;

		if (digits == len && i)
			break; /* a name without a number: that device only */
		if (snprintf(name, sizeof(name), "%.*s%lu", (int)digits, path, first + i) >=
		    (int)sizeof(name))
			break;
		fd = open(i || digits < len ? name : path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			break;
		if (!shim_usable(fd, &in)) {
			close(fd);
			continue;
		}
		seen++;
		if (in.peer_id < *node)
			*node = (uint16_t)in.peer_id;
		if (mine < 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
			mine = fd;
			*info = in;
		} else {
			close(fd);
		}
	}
	return mine >= 0 ? mine : seen ? -EBUSY : -ENXIO;
}

static int shim_open(struct pcie_dev *d, int (*ready)(struct pcie_dev *d))
{
	const char *path = getenv("SCIF_PCIE_DEV");
	struct scif_shim_info info;
	struct scif_shim_irq irq = { .vector = 0 };
	struct dev_shim *sh;
	void *regs = MAP_FAILED;
	uint16_t node;
	int fd, ret = -ENXIO;

	(void)ready;
	if (!path || !*path)
		return -ENXIO;
	memset(&info, 0, sizeof(info));
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	sh->irq = -1;
	/*
	 * One process per device: a second would reset its slice and session under the first.
	 * The lock goes when this open file does (the process's end, a kill included).
	 */
	fd = shim_pick(path, &info, &node);
	if (fd < 0) {
		free(sh);
		return fd == -EBUSY ? -EBUSY : -ENXIO;
	}
	regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		    (off_t)info.bars[SHIM_BAR_DOORBELL_REGS].mmap_offset);
	sh->irq = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (regs == MAP_FAILED || sh->irq < 0)
		goto fail;
	irq.fd = sh->irq;
	if (ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq) < 0)
		goto fail;
	sh->regs = regs;
	d->fd = fd;
	d->map_off = info.bars[SHIM_BAR_APERTURE].mmap_offset;
	d->size = info.bars[SHIM_BAR_APERTURE].size;
	d->self = (uint16_t)info.peer_id;
	if (!d->node)
		d->node = node; /* a fallback: the card's lowest peer id */
	d->host = 0;
	d->blind = 1;
	d->priv = sh;
	return 0;
fail:
	if (regs != MAP_FAILED)
		munmap(regs, 4096);
	if (sh->irq >= 0)
		close(sh->irq);
	close(fd);
	free(sh);
	return ret;
}

static int shim_kick(struct pcie_dev *d, uint16_t node)
{
	struct dev_shim *sh = d->priv;

	if (node >= PCIE_MAX_NODES)
		return -EINVAL;
	/* Order the aperture's write-combined stores before the doorbell's uncached one. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	sh->regs[SCIF_SHIM_IVSHMEM_DOORBELL / 4] = SCIF_SHIM_IVSHMEM_DOORBELL_VAL(node, 0);
	return 0;
}

static int shim_pollfds(struct pcie_dev *d, int *fds, int max)
{
	struct dev_shim *sh = d->priv;

	if (max < 1)
		return 0;
	fds[0] = sh->irq;
	return 1;
}

static int shim_handle(struct pcie_dev *d, pcie_dev_cb cb, void *arg)
{
	struct dev_shim *sh = d->priv;

	(void)cb;
	(void)arg;
	dev_eventfd_drain(sh->irq);
	return 0;
}

/*
 * The shim's last will (SCIF_SHIM_IOC_SET_WILL): as our device file is released (this
 * process's end, a kill included), the guest's kernel writes @value at @off in BAR2, then
 * rings the host. ENOTTY from a module older than the ioctl: -ENOTSUP.
 */
static int shim_will(struct pcie_dev *d, uint64_t off, uint32_t value)
{
	struct scif_shim_will w = {
		.nr = 2,
		.w = { { .bar = SHIM_BAR_APERTURE, .offset = off, .value = value },
		       { .bar = SHIM_BAR_DOORBELL_REGS, .offset = SCIF_SHIM_IVSHMEM_DOORBELL,
			 .value = SCIF_SHIM_IVSHMEM_DOORBELL_VAL(SCIF__IVSHM_HOST_ID, 0) } },
	};

	if (ioctl(d->fd, SCIF_SHIM_IOC_SET_WILL, &w) == 0)
		return 0;
	return errno == ENOTTY ? -ENOTSUP : -errno;
}

/* The shim's kernel heartbeat (SCIF_SHIM_IOC_SET_BEAT) into BAR2's word @off. */
static int shim_kbeat(struct pcie_dev *d, uint64_t off, uint32_t period_ms)
{
	struct scif_shim_beat b = { .bar = SHIM_BAR_APERTURE, .period_ms = period_ms, .offset = off };

	if (ioctl(d->fd, SCIF_SHIM_IOC_SET_BEAT, &b) == 0)
		return 0;
	return errno == ENOTTY ? -ENOTSUP : -errno;
}

static void shim_close(struct pcie_dev *d)
{
	struct dev_shim *sh = d->priv;

	if (!sh)
		return;
	munmap((void *)sh->regs, 4096);
	close(sh->irq);
	free(sh);
	d->priv = NULL;
}

const struct pcie_dev_ops scif__pcie_dev_shim = {
	.name = "shim",
	.open = shim_open,
	.kick = shim_kick,
	.pollfds = shim_pollfds,
	.handle = shim_handle,
	.will = shim_will,
	.kbeat = shim_kbeat,
	.close = shim_close,
};
