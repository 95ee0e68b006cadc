/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backends/console.c - the host half of virtio-console: one port on a pty whose slave side
 * host users open through the symlink RUNDIR/card<N>/console<i>. Queue 0 (receiveq) carries
 * what host users type to the card, queue 1 (transmitq) the card's output to them.
 *
 * The master stays open from open() to close(), so the symlink outlives card attach and
 * detach. Two states of the pty decide what flows:
 *  - No card attached: the master is not read; what host users type waits in the pty until a
 *    card attaches (and, beyond the pty's buffer, their writes block).
 *  - No host user has the slave open (the master polls POLLHUP, reads fail with EIO): like
 *    a serial line nobody listens to, the card's output is dropped rather than stalling the
 *    card's programs or waiting, stale, for the next host user. A tick notices a host user
 *    opening the slave (POLLHUP clears) and resumes reading; the same tick polls the window
 *    size, since a master is not told of TIOCSWINSZ.
 * Otherwise both directions have backpressure and lose nothing: no receive buffer posted ->
 * the master is not read until the card kicks; the master full -> the transmit request is
 * kept and POLLOUT watched.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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
#define CON_CHUNK 4096            /* bytes moved per read/write */
#define CON_RX_BATCH 64           /* receive buffers filled per event before polling again */
#define CON_TICK_MS 200           /* window size and host-user polling period */
#define CON_DEFAULT_COLS 80
#define CON_DEFAULT_ROWS 25

struct hcon {
	int master;               /* pty master, O_NONBLOCK */
	char pts[64];             /* its slave, /dev/pts/K */
	char link[PATH_MAX];      /* RUNDIR/card<N>/console<i> */
	struct virtio_console_config cfg;   /* as last given to the card (little-endian) */
	bool started;             /* between start() and stop() */
	bool user;                /* a host user has the slave open (no POLLHUP on the master) */
	bool rx_blocked;          /* receiveq empty: waiting for a KICK */
	bool rx_have, tx_have;    /* rxreq / txreq popped and not yet pushed */
	size_t tx_off;            /* bytes of txreq's readable part already written */
	short events;             /* what the master is watched for now */
	uint64_t rx_bytes, tx_bytes;
	struct vos_req rxreq, txreq;
	uint8_t buf[CON_CHUNK];
};

/* True if a host user has the slave open: the master reports POLLHUP once the last one
 * closed it (and until one opens it again). */
static bool hcon_user(const struct hcon *h)
{
	struct pollfd p = { .fd = h->master };

	return poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* Watch the master for what the state asks: input while a card and a host user are there
 * and receive buffers are available, output while a transmit request waits. */
static int hcon_watch(struct vos_hdev *d, struct hcon *h)
{
	short ev = 0;
	int r;

	if (h->started && h->user && !h->rx_blocked)
		ev |= POLLIN;
	if (h->started && h->tx_have)
		ev |= POLLOUT;
	if (ev == h->events)
		return 0;
	r = vos_hdev_watch(d, h->master, ev, false);
	if (!r)
		h->events = ev;
	return r;
}

/* The window size of the pty as config space; 0 rows or columns (never set) read as 80x25. */
static int hcon_winsize(struct vos_hdev *d, struct hcon *h)
{
	struct winsize ws;
	struct virtio_console_config cfg = { 0 };

	if (ioctl(h->master, TIOCGWINSZ, &ws) < 0)
		return -errno;
	cfg.cols = htole16(ws.ws_col ? ws.ws_col : CON_DEFAULT_COLS);
	cfg.rows = htole16(ws.ws_row ? ws.ws_row : CON_DEFAULT_ROWS);
	if (!memcmp(&cfg, &h->cfg, sizeof(cfg)))
		return 0;
	h->cfg = cfg;
	return vos_hdev_set_config(d, &cfg, sizeof(cfg));
}

/* Point RUNDIR/card<N>/console<i> at the slave, replacing a stale link atomically. */
static int hcon_link(struct vos_hdev *d, struct hcon *h)
{
	char dir[PATH_MAX];
	int n;

	n = snprintf(dir, sizeof(dir), "%s/card%d", vos_hdev_rundir(d), vos_hdev_card(d));
	if (n < 0 || (size_t)n >= sizeof(dir))
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	n = snprintf(h->link, sizeof(h->link), "%s/console%u", dir, vos_hdev_index(d));
	if (n < 0 || (size_t)n >= sizeof(h->link))
		return -ENAMETOOLONG;
	return vos_symlink_replace(h->pts, h->link);
}

/* A pty whose slave is in raw mode (host users get the card's bytes unchanged; a terminal
 * program they run sets its own modes anyway). The slave is opened once to set the modes and
 * closed, so the master starts in the "no host user" state. */
static int hcon_pty(struct hcon *h)
{
	struct termios t;
	int slave, e = 0;

	h->master = vos_pty_open(h->pts, sizeof(h->pts), &slave);
	if (h->master < 0)
		return h->master;
	if (tcgetattr(slave, &t) < 0)
		e = -errno;
	if (!e) {
		cfmakeraw(&t);
		if (tcsetattr(slave, TCSANOW, &t) < 0)
			e = -errno;
	}
	close(slave);
	return e;
}

static void hcon_close(struct vos_hdev *d)
{
	struct hcon *h = vos_hdev_priv(d);

	if (!h)
		return;
	if (h->link[0]) {
		char dir[PATH_MAX];

		unlink(h->link);
		snprintf(dir, sizeof(dir), "%s/card%d", vos_hdev_rundir(d), vos_hdev_card(d));
		rmdir(dir);    /* only if no other device left something there */
	}
	if (h->master >= 0) {
		if (h->events)
			vos_hdev_watch(d, h->master, 0, false);
		close(h->master);
	}
	free(h);
	vos_hdev_set_priv(d, NULL);
}

static int hcon_open(struct vos_hdev *d, const struct vos_devconf *conf)
{
	struct hcon *h;
	int r;

	if (conf->nkv) {
		vos_log(LOG_ERR, "%s: unknown option '%s' (console takes none)", vos_hdev_name(d),
			conf->kv[0].key);
		return -EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->master = -1;
	vos_hdev_set_priv(d, h);
	r = hcon_pty(h);
	if (r < 0) {
		vos_log(LOG_ERR, "%s: cannot create a pty: %s", vos_hdev_name(d), strerror(-r));
		goto fail;
	}
	r = hcon_link(d, h);
	if (r < 0) {
		vos_log(LOG_ERR, "%s: cannot link %s to %s: %s", vos_hdev_name(d), h->link,
			h->pts, strerror(-r));
		h->link[0] = '\0';
		goto fail;
	}
	vos_hdev_set_features(d, 1ULL << VIRTIO_CONSOLE_F_SIZE);
	r = hcon_winsize(d, h);
	if (r < 0)
		goto fail;
	vos_hdev_set_tick(d, CON_TICK_MS);
	vos_log(LOG_INFO, "%s: %s -> %s", vos_hdev_name(d), h->link, h->pts);
	return 0;
fail:
	hcon_close(d);
	return r;
}

/*
 * receiveq: what host users typed, read from the master into the card's buffers. A popped
 * buffer is kept (rxreq) while the master has nothing to read, so no byte is ever read
 * without a place to put it.
 */
static int hcon_rx(struct vos_hdev *d, struct hcon *h)
{
	bool pushed = false;
	int r = 0;

	for (unsigned i = 0; i < CON_RX_BATCH && h->user && !h->rx_blocked; i++) {
		ssize_t n, w;

		if (!h->rx_have) {
			r = vos_hq_pop(d, CON_RXQ, &h->rxreq);
			if (r < 0)
				goto out;
			if (r == 0) {
				/* Ask for a KICK; buffers may have come meanwhile. */
				r = vos_hq_kicks(d, CON_RXQ, true);
				if (r < 0)
					goto out;
				h->rx_blocked = r == 0;
				continue;
			}
			if (!h->rxreq.in_len) {
				vos_log(LOG_WARNING, "%s: receive buffer with no writable part",
					vos_hdev_name(d));
				r = -EBADMSG;
				goto out;
			}
			h->rx_have = true;
		}
		n = read(h->master, h->buf, h->rxreq.in_len < CON_CHUNK ? h->rxreq.in_len
									 : CON_CHUNK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			/* EIO: the last host user closed the slave; the tick sees the next. */
			if (n < 0 && errno != EIO) {
				r = -errno;
				goto out;
			}
			h->user = false;
			break;
		}
		w = vos_req_write(d, &h->rxreq, 0, h->buf, (size_t)n);
		if (w < 0) {
			r = (int)w;
			goto out;
		}
		r = vos_hq_push(d, CON_RXQ, &h->rxreq, (uint32_t)w);
		if (r < 0)
			goto out;
		h->rx_have = false;
		h->rx_bytes += (uint64_t)w;
		pushed = true;
	}
	r = 0;
out:
	if (pushed) {
		int e = vos_hq_notify(d, CON_RXQ);

		if (!r)
			r = e;
	}
	return r;
}

/*
 * transmitq: the card's output, written to the master. A request the master cannot take
 * whole stays in txreq (tx_off says how far it got) until POLLOUT; while no host user has
 * the slave open, requests are returned unread (the output is dropped).
 */
static int hcon_tx(struct vos_hdev *d, struct hcon *h)
{
	bool pushed = false;
	int r = 0;

	/* A master takes writes with no host user there (into the slave's buffer, for the next
	 * one to see stale): look for the hang-up first. */
	h->user = hcon_user(h);
	for (;;) {
		if (!h->tx_have) {
			r = vos_hq_pop(d, CON_TXQ, &h->txreq);
			if (r < 0)
				goto out;
			if (r == 0) {
				r = vos_hq_kicks(d, CON_TXQ, true);
				if (r <= 0)
					goto out;
				continue;
			}
			h->tx_have = true;
			h->tx_off = 0;
		}
		while (h->user && h->tx_off < h->txreq.out_len) {
			size_t len = h->txreq.out_len - h->tx_off;
			ssize_t n, w;

			n = vos_req_read(d, &h->txreq, h->tx_off, h->buf,
					 len < CON_CHUNK ? len : CON_CHUNK);
			if (n <= 0) {
				r = n < 0 ? (int)n : -EIO;
				goto out;
			}
			w = write(h->master, h->buf, (size_t)n);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				r = -errno;
				goto out;
			}
			if (w > 0) {
				h->tx_off += (size_t)w;
				h->tx_bytes += (uint64_t)w;
			}
			if (w < n) {
				/* The pty is full: keep the request, wait for POLLOUT. */
				r = vos_hq_kicks(d, CON_TXQ, false);
				goto out;
			}
		}
		r = vos_hq_push(d, CON_TXQ, &h->txreq, 0);
		if (r < 0)
			goto out;
		h->tx_have = false;
		pushed = true;
	}
out:
	if (pushed) {
		int e = vos_hq_notify(d, CON_TXQ);

		if (!r)
			r = e;
	}
	return r < 0 ? r : 0;
}

static int hcon_start(struct vos_hdev *d)
{
	struct hcon *h = vos_hdev_priv(d);
	int r;

	h->started = true;
	h->rx_blocked = false;
	h->user = hcon_user(h);
	r = hcon_winsize(d, h);
	if (r >= 0)
		r = hcon_watch(d, h);
	if (r < 0)
		h->started = false;
	return r < 0 ? r : 0;
}

static int hcon_kick(struct vos_hdev *d, unsigned q)
{
	struct hcon *h = vos_hdev_priv(d);
	int r;

	if (q == CON_TXQ) {
		r = hcon_tx(d, h);
	} else if (q == CON_RXQ) {
		/* Buffers are there: input drives the receiveq until they run out again. */
		h->rx_blocked = false;
		r = vos_hq_kicks(d, CON_RXQ, false);
		if (r >= 0)
			r = hcon_rx(d, h);
	} else {
		return 0;
	}
	return r < 0 ? r : hcon_watch(d, h);
}

static int hcon_event(struct vos_hdev *d, int fd, short revents)
{
	struct hcon *h = vos_hdev_priv(d);
	int r = 0;

	if (fd != h->master)
		return 0;
	/* POLLHUP: the last host user left; reading drains what they typed, then EIO. */
	if (revents & (POLLIN | POLLHUP | POLLERR))
		r = hcon_rx(d, h);
	if (!r && h->tx_have)
		r = hcon_tx(d, h);
	/* Stop watching a hung-up master whatever the loops above got to. */
	if (!r && (revents & (POLLHUP | POLLERR)) && !hcon_user(h))
		h->user = false;
	return r < 0 ? r : hcon_watch(d, h);
}

static int hcon_tick(struct vos_hdev *d)
{
	struct hcon *h = vos_hdev_priv(d);
	int r = hcon_winsize(d, h);

	if (r < 0)
		return r;
	if (h->started && !h->user && hcon_user(h)) {
		h->user = true;
		r = hcon_rx(d, h);
	}
	return r < 0 ? r : hcon_watch(d, h);
}

static void hcon_stop(struct vos_hdev *d, enum vos_stop_reason why)
{
	struct hcon *h = vos_hdev_priv(d);

	(void)why;
	/* Requests in flight belong to queues that are going away: forget them. What host
	 * users typed and was not read stays in the pty for the next card. */
	h->started = false;
	h->rx_have = h->tx_have = false;
	h->rx_blocked = false;
	hcon_watch(d, h);
}

static void hcon_status(struct vos_hdev *d, FILE *out)
{
	struct hcon *h = vos_hdev_priv(d);

	fprintf(out, "pty=%s cols=%u rows=%u rx=%llu tx=%llu", h->pts, le16toh(h->cfg.cols),
		le16toh(h->cfg.rows), (unsigned long long)h->rx_bytes,
		(unsigned long long)h->tx_bytes);
}

const struct vos_backend_ops vos_console_backend = {
	.type = VIRTIO_ID_CONSOLE,
	.name = "console",
	.nqueues = 2,
	.queue_max = 256,
	.open = hcon_open,
	.start = hcon_start,
	.kick = hcon_kick,
	.event = hcon_event,
	.tick = hcon_tick,
	.stop = hcon_stop,
	.close = hcon_close,
	.status = hcon_status,
};
