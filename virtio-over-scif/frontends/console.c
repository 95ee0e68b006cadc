/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * frontends/console.c - the card half of virtio-console: a pty whose slave side the card's
 * programs use (a getty or a shell), linked as RUNDIR/console<i>. What the host sends on the
 * receiveq (queue 0) is written into the master; what the programs write to the slave is
 * read from the master and sent on the transmitq (queue 1). The host's window size (config
 * space, VIRTIO_CONSOLE_F_SIZE) is applied to the pty, so the card's shell gets SIGWINCH.
 *
 * The frontend keeps a slave fd of its own open, so the master never reports a hang-up while
 * no program has the console open: host input waits in the pty (with backpressure to the
 * host beyond its buffer) for the next getty. When the host goes away (stop()) the master is
 * closed, which hangs up the card's session (SIGHUP, EIO to readers), and a fresh pty takes
 * the symlink at once, so the console is never missing, only empty until the host is back.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <syslog.h>
#include <termios.h>
#include <unistd.h>
#include <endian.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>

#include "pty.h"
#include "vos.h"

#define CON_RXQ 0                 /* receiveq: host -> card */
#define CON_TXQ 1                 /* transmitq: card -> host */
#define CON_BUF 4096              /* bytes per buffer, both queues */
#define CON_NBUF 16               /* buffers per queue (at most the queue size) */
#define CON_INFO_MS 1000          /* the counters in the status file, this often */

struct ccon {
	int master;               /* pty master, O_NONBLOCK; -1 if creating it failed */
	int slave;                /* our own slave fd, O_NOCTTY: keeps POLLHUP away */
	char pts[64];             /* /dev/pts/K */
	char link[PATH_MAX];      /* RUNDIR/console<i> */
	bool started;             /* between start() and stop() */
	bool have_ws;
	struct winsize ws;        /* the host's last window size, kept for a fresh pty */
	short events;             /* what the master is watched for now */
	uint16_t qsize[2];        /* chosen in size() */
	/* receiveq: a used buffer whose bytes the master has not taken whole yet */
	uint8_t *rx_cur;
	uint32_t rx_len, rx_off;
	/* transmitq: buffers not posted */
	unsigned ntx_free;
	uint8_t *tx_free[CON_NBUF];
	uint64_t rx_bytes, tx_bytes;
};

static unsigned ccon_nbuf(uint16_t qsize)
{
	return qsize < CON_NBUF ? qsize : CON_NBUF;
}

/* Read the master while transmit buffers are free; write it while a received buffer waits. */
static int ccon_watch(struct vos_cdev *d, struct ccon *c)
{
	short ev = 0;
	int r;

	if (c->started && c->ntx_free)
		ev |= POLLIN;
	if (c->started && c->rx_cur)
		ev |= POLLOUT;
	if (ev == c->events)
		return 0;
	r = vos_cdev_watch(d, c->master, ev, false);
	if (!r)
		c->events = ev;
	return r;
}

/* Give the pty the host's window size (the session in front gets SIGWINCH). */
static void ccon_apply_ws(struct ccon *c)
{
	if (c->have_ws && c->master >= 0)
		ioctl(c->master, TIOCSWINSZ, &c->ws);
}

/* The card's status line: where the console is now (none if no pty), bytes each way. */
static void ccon_info(struct vos_cdev *d, const struct ccon *c)
{
	vos_cdev_set_info(d, "pty=%s rx=%llu tx=%llu", c->master >= 0 ? c->pts : "none",
			  (unsigned long long)c->rx_bytes, (unsigned long long)c->tx_bytes);
}

/* Point RUNDIR/console<i> at the current slave: a temporary link renamed over the old one. */
static int ccon_link(struct vos_cdev *d, struct ccon *c)
{
	int n = snprintf(c->link, sizeof(c->link), "%s/console%u", vos_cdev_rundir(d),
			 vos_cdev_index(d));

	if (n < 0 || (size_t)n >= sizeof(c->link))
		return -ENAMETOOLONG;
	return vos_symlink_replace(c->pts, c->link);
}

/* Close the pty: the card's session on it is hung up. */
static void ccon_pty_close(struct vos_cdev *d, struct ccon *c)
{
	if (c->master >= 0) {
		if (c->events)
			vos_cdev_watch(d, c->master, 0, false);
		c->events = 0;
		close(c->master);
	}
	if (c->slave >= 0)
		close(c->slave);
	c->master = c->slave = -1;
}

/* A fresh pty with the host's window size, and the symlink on it. */
static int ccon_pty_open(struct vos_cdev *d, struct ccon *c)
{
	int r = vos_pty_open(c->pts, sizeof(c->pts), &c->slave);

	if (r >= 0) {
		c->master = r;
		ccon_apply_ws(c);
		r = ccon_link(d, c);
	}
	if (r < 0) {
		vos_log(LOG_ERR, "%s: cannot set up a pty: %s", vos_cdev_name(d), strerror(-r));
		ccon_pty_close(d, c);
	}
	ccon_info(d, c);
	return r < 0 ? r : 0;
}

static int ccon_open(struct vos_cdev *d)
{
	struct ccon *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->master = c->slave = -1;
	vos_cdev_set_priv(d, c);
	r = ccon_pty_open(d, c);
	if (r < 0) {
		free(c);
		vos_cdev_set_priv(d, NULL);
		return r;
	}
	vos_cdev_set_tick(d, CON_INFO_MS);
	vos_log(LOG_INFO, "%s: %s -> %s", vos_cdev_name(d), c->link, c->pts);
	return 0;
}

static int ccon_size(struct vos_cdev *d, uint16_t qsize[VOS_MAX_QUEUES], size_t *pool)
{
	struct ccon *c = vos_cdev_priv(d);

	for (unsigned q = 0; q < 2; q++) {
		if (!qsize[q])
			return -EINVAL;
		if (qsize[q] > CON_NBUF)
			qsize[q] = CON_NBUF;
		c->qsize[q] = qsize[q];
	}
	*pool = (size_t)(ccon_nbuf(c->qsize[0]) + ccon_nbuf(c->qsize[1])) * CON_BUF;
	return 0;
}

/* Post one receive buffer. */
static int ccon_post_rx(struct vos_cdev *d, uint8_t *buf)
{
	struct vos_sg sg = { .addr = buf, .len = CON_BUF };

	return vos_cq_add(d, CON_RXQ, &sg, 0, 1, buf);
}

/* The config space's window size, if the host offers it. */
static int ccon_config(struct vos_cdev *d)
{
	struct ccon *c = vos_cdev_priv(d);
	struct virtio_console_config cfg;

	if (!(vos_cdev_features(d) & (1ULL << VIRTIO_CONSOLE_F_SIZE)))
		return 0;
	if (vos_cdev_config(d, &cfg, sizeof(cfg)) < offsetof(struct virtio_console_config,
							    max_nr_ports))
		return 0;
	c->ws = (struct winsize){ .ws_col = le16toh(cfg.cols), .ws_row = le16toh(cfg.rows) };
	c->have_ws = true;
	ccon_apply_ws(c);
	return 0;
}

/* Reclaim the transmit buffers the host is done with. */
static int ccon_tx_reclaim(struct vos_cdev *d, struct ccon *c)
{
	void *tok;
	uint32_t len;
	int r;

	while ((r = vos_cq_get_checked(d, CON_TXQ, &tok, &len)) > 0) {
		if (c->ntx_free == CON_NBUF)
			return -EBADMSG;       /* the framework checks ids: cannot happen */
		c->tx_free[c->ntx_free++] = tok;
	}
	return r;
}

/*
 * Card programs' output -> transmitq. Buffers are reclaimed lazily (IRQs off) and only when
 * none is free do we ask for an IRQ; until it comes the master is not read.
 */
static int ccon_tx(struct vos_cdev *d, struct ccon *c)
{
	bool added = false;
	int r = 0;

	for (;;) {
		struct vos_sg sg;
		ssize_t n;

		if (!c->ntx_free) {
			r = ccon_tx_reclaim(d, c);
			if (r < 0)
				break;
			if (!c->ntx_free) {
				r = vos_cq_irqs(d, CON_TXQ, true);
				if (r <= 0)
					break;
				continue;
			}
		}
		sg.addr = c->tx_free[c->ntx_free - 1];
		n = read(c->master, sg.addr, CON_BUF);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			r = 0;
			break;
		}
		if (n <= 0) {
			/* EIO cannot come while our slave fd is open (even a vhangup() of the
			 * console leaves the master alone); if it does, re-attaching gives a
			 * fresh pty. */
			r = n < 0 ? -errno : -EIO;
			break;
		}
		sg.len = (uint32_t)n;
		r = vos_cq_add(d, CON_TXQ, &sg, 1, 0, sg.addr);
		if (r < 0)
			break;
		c->ntx_free--;
		c->tx_bytes += (uint64_t)n;
		added = true;
	}
	if (added) {
		int e = vos_cq_kick(d, CON_TXQ);

		if (!r)
			r = e;
	}
	return r;
}

/*
 * receiveq -> the master. Used buffers are taken in order; one the master cannot take whole
 * stays in rx_cur (the rest wait in the used ring) until POLLOUT. Emptied buffers are posted
 * again.
 */
static int ccon_rx(struct vos_cdev *d, struct ccon *c)
{
	bool posted = false;
	int r = 0;

	for (;;) {
		if (!c->rx_cur) {
			void *tok;

			r = vos_cq_get_checked(d, CON_RXQ, &tok, &c->rx_len);
			if (r <= 0)
				break;
			c->rx_cur = tok;
			c->rx_off = 0;
		}
		while (c->rx_off < c->rx_len) {
			ssize_t n = write(c->master, c->rx_cur + c->rx_off, c->rx_len - c->rx_off);

			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				r = 0;
				goto out;
			}
			if (n < 0) {
				r = -errno;       /* a hung-up pty, as in ccon_tx */
				goto out;
			}
			c->rx_off += (uint32_t)n;
			c->rx_bytes += (uint64_t)n;
		}
		r = ccon_post_rx(d, c->rx_cur);
		if (r < 0)
			break;
		c->rx_cur = NULL;
		posted = true;
	}
out:
	if (posted) {
		int e = vos_cq_kick(d, CON_RXQ);

		if (!r)
			r = e;
	}
	return r;
}

static int ccon_start(struct vos_cdev *d)
{
	struct ccon *c = vos_cdev_priv(d);
	unsigned nrx = ccon_nbuf(c->qsize[0]), ntx = ccon_nbuf(c->qsize[1]);
	uint8_t *pool;
	int r = 0;

	if (c->master < 0)
		r = ccon_pty_open(d, c);
	pool = r < 0 ? NULL : vos_cdev_alloc(d, (size_t)(nrx + ntx) * CON_BUF, 64);
	if (!pool)
		return r < 0 ? r : -ENOMEM;
	for (unsigned i = 0; i < nrx && r >= 0; i++)
		r = ccon_post_rx(d, pool + (size_t)i * CON_BUF);
	for (c->ntx_free = 0; c->ntx_free < ntx; c->ntx_free++)
		c->tx_free[c->ntx_free] = pool + (size_t)(nrx + c->ntx_free) * CON_BUF;
	c->rx_cur = NULL;
	c->started = true;
	if (r >= 0)
		r = vos_cq_kick(d, CON_RXQ);
	if (r >= 0)
		r = vos_cq_irqs(d, CON_TXQ, false);
	if (r >= 0)
		r = ccon_config(d);
	if (r >= 0)
		r = ccon_watch(d, c);
	if (r < 0) {
		/* No stop() follows a failed start(). */
		c->started = false;
		ccon_watch(d, c);
	}
	return r < 0 ? r : 0;
}

static int ccon_irq(struct vos_cdev *d, unsigned q)
{
	struct ccon *c = vos_cdev_priv(d);
	int r;

	if (q == CON_RXQ) {
		r = ccon_rx(d, c);
	} else if (q == CON_TXQ) {
		r = vos_cq_irqs(d, CON_TXQ, false);
		if (r >= 0)
			r = ccon_tx_reclaim(d, c);
		if (r >= 0)
			r = ccon_tx(d, c);
	} else {
		return 0;
	}
	return r < 0 ? r : ccon_watch(d, c);
}

static int ccon_event(struct vos_cdev *d, int fd, short revents)
{
	struct ccon *c = vos_cdev_priv(d);
	int r = 0;

	if (fd != c->master)
		return 0;
	if (revents & (POLLOUT | POLLHUP | POLLERR))
		r = ccon_rx(d, c);
	if (!r && (revents & (POLLIN | POLLHUP | POLLERR)))
		r = ccon_tx(d, c);
	return r < 0 ? r : ccon_watch(d, c);
}

static void ccon_stop(struct vos_cdev *d, enum vos_stop_reason why)
{
	struct ccon *c = vos_cdev_priv(d);

	(void)why;
	c->started = false;
	c->rx_cur = NULL;
	c->ntx_free = 0;
	/* Hang up the card's session; a fresh pty waits for the host to come back. */
	ccon_pty_close(d, c);
	if (!ccon_pty_open(d, c))
		vos_log(LOG_DEBUG, "%s: hung up, now %s", vos_cdev_name(d), c->pts);
}

/* The counters in the status line (once a second, not per write). */
static int ccon_tick(struct vos_cdev *d)
{
	ccon_info(d, vos_cdev_priv(d));
	return 0;
}

static void ccon_close(struct vos_cdev *d)
{
	struct ccon *c = vos_cdev_priv(d);

	if (!c)
		return;
	ccon_pty_close(d, c);
	unlink(c->link);
	free(c);
	vos_cdev_set_priv(d, NULL);
}

const struct vos_frontend_ops vos_console_frontend = {
	.type = VIRTIO_ID_CONSOLE,
	.name = "console",
	.features = 1ULL << VIRTIO_CONSOLE_F_SIZE,
	.open = ccon_open,
	.size = ccon_size,
	.start = ccon_start,
	.irq = ccon_irq,
	.event = ccon_event,
	.tick = ccon_tick,
	.config = ccon_config,
	.stop = ccon_stop,
	.close = ccon_close,
};
