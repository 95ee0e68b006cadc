/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backends/net.c - virtio-net on the host: the card's receiveq (0) and transmitq (1) joined to
 * a TAP. Frames cross with their struct virtio_net_hdr_v1 unchanged, so TSO/GSO frames of up to
 * 64 KiB go through whole and the kernel on either side segments or accepts them.
 *
 * Host -> card: a receive buffer is popped before the TAP is read, so no frame is read that
 * has nowhere to go; with no buffers the TAP is left unread until the card kicks (the kernel
 * queues, nothing is dropped here). Card -> host: transmit buffers are copied out, their
 * header checked against the negotiated features, and written to the TAP; a TAP that says
 * EAGAIN keeps the frame until POLLOUT.
 */
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>

#include "tap.h"
#include "vos.h"

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_BUF_LEN (VOS_NET_HDR_LEN + VOS_NET_FRAME_MAX)
#define NET_RX_HELD 32            /* receive buffers one frame may take (MRG_RXBUF) */
#define NET_BATCH 64              /* frames between notifications / turns of the other side */
#define NET_F(bit) (1ULL << (bit))

#define NET_FEATURES (NET_F(VIRTIO_NET_F_MAC) | NET_F(VIRTIO_NET_F_STATUS) | \
	NET_F(VIRTIO_NET_F_MRG_RXBUF) | NET_F(VIRTIO_NET_F_CSUM) | NET_F(VIRTIO_NET_F_GUEST_CSUM) | \
	NET_F(VIRTIO_NET_F_HOST_TSO4) | NET_F(VIRTIO_NET_F_HOST_TSO6) | \
	NET_F(VIRTIO_NET_F_HOST_ECN) | NET_F(VIRTIO_NET_F_GUEST_TSO4) | \
	NET_F(VIRTIO_NET_F_GUEST_TSO6) | NET_F(VIRTIO_NET_F_GUEST_ECN))

/*
 * One device. Everything is touched by the device thread only. Receive buffers popped from
 * the card are held in rx_held[] until a frame fills them: at most one ahead of the frame
 * (popped before the TAP is read), more while a frame waits for MRG_RXBUF buffers.
 */
struct net_backend {
	int fd;                   /* the host TAP, non-blocking */
	char ifname[IFNAMSIZ];
	short watching;           /* events last passed to vos_hdev_watch */
	bool carrier;
	bool tap_broken;          /* the TAP failed (deleted?): not read or written any more */
	/* receiveq */
	bool rx_kicks;            /* KICKs of the receiveq asked for (only while starved) */
	bool rx_starved;          /* no receive buffer: the TAP is left unread until a KICK */
	uint32_t rx_frame;        /* bytes (header included) in rx_buf waiting for buffers */
	unsigned rx_nheld;
	/* transmitq */
	bool tx_blocked;          /* the TAP said EAGAIN: tx_req waits for POLLOUT */
	uint32_t tx_frame;        /* bytes (header included) of tx_req in tx_buf */
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes, drops;
	struct vos_req tx_req;
	struct vos_req rx_held[NET_RX_HELD];
	/* header + frame; aligned for the header's 16-bit fields */
	uint8_t rx_buf[NET_BUF_LEN] __attribute__((aligned(16)));
	uint8_t tx_buf[NET_BUF_LEN] __attribute__((aligned(16)));
};

/* ---------------------------------------------------------------------------------------- */
/* The TAP */

/* Link up and MTU (0: leave it) of interface `ifname`. */
static int net_if_setup(const char *ifname, unsigned mtu)
{
	struct ifreq ifr = { .ifr_mtu = (int)mtu };
	int ret = mtu ? vos_if_ioctl(ifname, SIOCSIFMTU, &ifr) : 0;

	if (!ret)
		ret = vos_if_ioctl(ifname, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	return ret ? ret : vos_if_ioctl(ifname, SIOCSIFFLAGS, &ifr);
}

/* Carrier on/off; a kernel without TUNSETCARRIER keeps its carrier on. */
static void net_carrier(struct net_backend *nb, bool on)
{
	nb->carrier = vos_tap_carrier(nb->fd, on) == 0 ? on : !nb->tap_broken;
}

/* Watch the TAP for what the state needs: frames to read unless starved, room if blocked. */
static int net_watch(struct vos_hdev *d, struct net_backend *nb)
{
	short events = 0;
	int ret;

	if (!nb->tap_broken)
		events = (short)((nb->rx_starved ? 0 : POLLIN) | (nb->tx_blocked ? POLLOUT : 0));
	if (events == nb->watching)
		return 0;
	ret = vos_hdev_watch(d, nb->fd, events, false);
	if (!ret)
		nb->watching = events;
	return ret;
}

/* A read or write of the TAP failed: EAGAIN is handled by the caller; a TAP that is gone
 * (EBADFD after `ip link del`) is given up with a log line rather than polled in a loop. */
static void net_tap_failed(struct vos_hdev *d, struct net_backend *nb, const char *op, int err)
{
	if (err == EBADFD || err == ENODEV || err == ENXIO) {
		if (!nb->tap_broken)
			vos_log(LOG_ERR, "%s: %s %s: %s; the TAP is no longer served",
				vos_hdev_name(d), op, nb->ifname, strerror(err));
		nb->tap_broken = true;
		nb->carrier = false;  /* for status(): nothing gets through any more */
	}
	nb->drops++;
}

/* ---------------------------------------------------------------------------------------- */
/* Host -> card: the receiveq */

/* Pops one more receive buffer into rx_held. 1 = got one; 0 = none: starved, the card is
 * asked for a KICK when it posts more; -errno = the card broke the ring. */
static int net_rx_pop(struct vos_hdev *d, struct net_backend *nb)
{
	struct vos_req *r = &nb->rx_held[nb->rx_nheld];
	int ret = vos_hq_pop(d, NET_RXQ, r);

	/* Empty: ask for KICKs; buffers posted meanwhile are taken now (no KICK would come). */
	while (ret == 0 && !nb->rx_kicks) {
		nb->rx_kicks = true;
		ret = vos_hq_kicks(d, NET_RXQ, true);
		if (ret > 0)
			ret = vos_hq_pop(d, NET_RXQ, r);
	}
	if (ret <= 0) {
		nb->rx_starved = ret == 0;
		return ret;
	}
	nb->rx_starved = false;
	if (nb->rx_kicks) {
		/* Buffers again: no KICKs needed until we run out. */
		nb->rx_kicks = false;
		ret = vos_hq_kicks(d, NET_RXQ, false);
		if (ret < 0)
			return ret;
	}
	/* virtio 1.x 5.1.6.3.1: every receive buffer holds at least the header. */
	if (r->in_len < VOS_NET_HDR_LEN) {
		vos_log(LOG_WARNING, "%s: receive buffer of %u bytes, shorter than the header",
			vos_hdev_name(d), r->in_len);
		return -EBADMSG;
	}
	nb->rx_nheld++;
	return 1;
}

/* Copies the frame in rx_buf into the first `nbufs` held buffers and returns them used. */
static int net_rx_deliver(struct vos_hdev *d, struct net_backend *nb, unsigned nbufs)
{
	struct virtio_net_hdr_v1 *h = (struct virtio_net_hdr_v1 *)nb->rx_buf;
	uint32_t off = 0;
	int ret;

	/* The TAP left num_buffers alone (vnet header size 12 > its 10 bytes): ours to set. */
	h->num_buffers = htole16((uint16_t)nbufs);
	for (unsigned i = 0; i < nbufs; i++) {
		const struct vos_req *r = &nb->rx_held[i];
		uint32_t chunk = nb->rx_frame - off < r->in_len ? nb->rx_frame - off : r->in_len;
		ssize_t n = vos_req_write(d, r, 0, nb->rx_buf + off, chunk);

		if (n < 0)
			return (int)n;
		if ((uint32_t)n != chunk)
			return -EIO;
		ret = vos_hq_push(d, NET_RXQ, r, chunk);
		if (ret < 0)
			return ret;
		off += chunk;
	}
	nb->rx_pkts++;
	nb->rx_bytes += nb->rx_frame - VOS_NET_HDR_LEN;
	nb->rx_frame = 0;
	nb->rx_nheld = 0;
	return 1;
}

/* Places the frame waiting in rx_buf: 1 = delivered or dropped, 0 = waiting for buffers. */
static int net_rx_place(struct vos_hdev *d, struct net_backend *nb)
{
	uint64_t room = 0;         /* 64 bits: a hostile card may post huge buffers */
	int ret;

	if (!(vos_hdev_features(d) & NET_F(VIRTIO_NET_F_MRG_RXBUF))) {
		if (nb->rx_held[0].in_len >= nb->rx_frame)
			return net_rx_deliver(d, nb, 1);
		/* Too big for the card's buffers (no GUEST_TSO, or smaller buffers than MTU):
		 * dropped; the buffer stays held for the next frame. */
		nb->drops++;
		nb->rx_frame = 0;
		return 1;
	}
	for (unsigned i = 0; i < nb->rx_nheld; i++)
		room += nb->rx_held[i].in_len;
	while (room < nb->rx_frame) {
		if (nb->rx_nheld == NET_RX_HELD) {
			/* The card posts tiny buffers: drop the frame, give them back empty. */
			for (unsigned i = 0; i < nb->rx_nheld; i++) {
				ret = vos_hq_push(d, NET_RXQ, &nb->rx_held[i], 0);
				if (ret < 0)
					return ret;
			}
			nb->drops++;
			nb->rx_frame = 0;
			nb->rx_nheld = 0;
			return 1;
		}
		ret = net_rx_pop(d, nb);
		if (ret <= 0)
			return ret;
		room += nb->rx_held[nb->rx_nheld - 1].in_len;
	}
	return net_rx_deliver(d, nb, nb->rx_nheld);
}

/* Moves up to NET_BATCH frames from the TAP to the card, then notifies it. */
static int net_rx_run(struct vos_hdev *d, struct net_backend *nb)
{
	unsigned frames = 0;
	int ret = 0, nret;

	for (unsigned turn = 0; turn < NET_BATCH && !nb->tap_broken; turn++) {
		if (!nb->rx_frame) {
			ssize_t n;

			if (!nb->rx_nheld && (ret = net_rx_pop(d, nb)) <= 0)
				break;
			n = read(nb->fd, nb->rx_buf, sizeof(nb->rx_buf));
			if (n < 0) {
				if (errno != EAGAIN && errno != EINTR)
					net_tap_failed(d, nb, "read", errno);
				break;
			}
			if ((size_t)n < VOS_NET_HDR_LEN + ETH_HLEN) {
				nb->drops++;
				continue;
			}
			nb->rx_frame = (uint32_t)n;
		}
		ret = net_rx_place(d, nb);
		if (ret <= 0)
			break;
		frames++;
	}
	nret = frames ? vos_hq_notify(d, NET_RXQ) : 0;
	return ret < 0 ? ret : nret;
}

/* ---------------------------------------------------------------------------------------- */
/* Card -> host: the transmitq */

/* Is the header of a frame of `len` bytes (header excluded) one the negotiated features allow,
 * with its offsets inside the frame? The kernel checks the rest when the TAP takes it. */
static bool net_tx_hdr_ok(uint64_t f, const struct virtio_net_hdr_v1 *h, uint32_t len)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return false;
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (!(f & NET_F(VIRTIO_NET_F_CSUM)) ||
	     (uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2 > len))
		return false;
	if (gso == VIRTIO_NET_HDR_GSO_NONE)
		return !(h->gso_type & VIRTIO_NET_HDR_GSO_ECN);
	if (gso == VIRTIO_NET_HDR_GSO_TCPV4 && !(f & NET_F(VIRTIO_NET_F_HOST_TSO4)))
		return false;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV6 && !(f & NET_F(VIRTIO_NET_F_HOST_TSO6)))
		return false;
	if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6)
		return false;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(f & NET_F(VIRTIO_NET_F_HOST_ECN)))
		return false;
	return h->gso_size != 0 && le16toh(h->hdr_len) <= len;
}

/* Writes the frame in tx_buf to the TAP and returns tx_req used: 1 = done (sent or dropped),
 * 0 = the TAP is full (tx_blocked: retried on POLLOUT). */
static int net_tx_write(struct vos_hdev *d, struct net_backend *nb)
{
	ssize_t n;
	int ret;

	if (nb->tap_broken) {
		nb->drops++;
	} else if ((n = write(nb->fd, nb->tx_buf, nb->tx_frame)) >= 0) {
		nb->tx_pkts++;
		nb->tx_bytes += nb->tx_frame - VOS_NET_HDR_LEN;
	} else if (errno == EAGAIN) {
		nb->tx_blocked = true;
		return 0;
	} else {
		/* EIO: the TAP is down; EINVAL: the kernel refused the header. Dropped. */
		net_tap_failed(d, nb, "write", errno);
	}
	nb->tx_blocked = false;
	ret = vos_hq_push(d, NET_TXQ, &nb->tx_req, 0);
	return ret < 0 ? ret : 1;
}

/* One transmit request just popped into tx_req: 1 = done, 0 = blocked, -errno. */
static int net_tx_one(struct vos_hdev *d, struct net_backend *nb)
{
	const struct vos_req *r = &nb->tx_req;
	ssize_t n;
	int ret;

	if (r->out_len < VOS_NET_HDR_LEN + ETH_HLEN || r->out_len > sizeof(nb->tx_buf))
		goto drop;
	n = vos_req_read(d, r, 0, nb->tx_buf, r->out_len);
	if (n < 0)
		return (int)n;
	if ((uint32_t)n != r->out_len)
		return -EIO;
	if (!net_tx_hdr_ok(vos_hdev_features(d), (const struct virtio_net_hdr_v1 *)nb->tx_buf,
			   r->out_len - (uint32_t)VOS_NET_HDR_LEN))
		goto drop;
	nb->tx_frame = r->out_len;
	return net_tx_write(d, nb);
drop:
	vos_log(LOG_DEBUG, "%s: transmit frame of %u bytes with a bad header dropped",
		vos_hdev_name(d), r->out_len);
	nb->drops++;
	ret = vos_hq_push(d, NET_TXQ, r, 0);
	return ret < 0 ? ret : 1;
}

/* Drains the transmitq into the TAP (vhost style: KICKs off while draining, back on and
 * a last look when empty). The receive side gets a turn every NET_BATCH frames. */
static int net_tx_run(struct vos_hdev *d, struct net_backend *nb)
{
	unsigned frames = 0;
	int ret, nret;

	if (nb->tx_blocked)
		return 0;
	ret = vos_hq_kicks(d, NET_TXQ, false);
	while (ret >= 0) {
		ret = vos_hq_pop(d, NET_TXQ, &nb->tx_req);
		if (ret == 0) {
			ret = vos_hq_kicks(d, NET_TXQ, true);
			if (ret <= 0)
				break;
			ret = vos_hq_kicks(d, NET_TXQ, false);
			continue;
		}
		if (ret > 0)
			ret = net_tx_one(d, nb);
		if (ret <= 0)
			break;
		if (++frames % NET_BATCH == 0) {
			ret = vos_hq_notify(d, NET_TXQ);
			if (ret >= 0)
				ret = net_rx_run(d, nb);
		}
	}
	nret = frames ? vos_hq_notify(d, NET_TXQ) : 0;
	return ret < 0 ? ret : nret;
}

/* ---------------------------------------------------------------------------------------- */
/* Ops */

/* "02:00:00:00:01:01" -> mac; only unicast, non-zero addresses. */
static int net_parse_mac(const char *s, uint8_t mac[ETH_ALEN])
{
	unsigned any = 0;

	for (int i = 0; i < ETH_ALEN; i++, s += 3) {
		char hex[3] = { s[0], s[0] ? s[1] : '\0', '\0' };

		if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) ||
		    s[2] != (i == ETH_ALEN - 1 ? '\0' : ':'))
			return -EINVAL;
		mac[i] = (uint8_t)strtoul(hex, NULL, 16);
		any |= mac[i];
	}
	return any && !(mac[0] & 1) ? 0 : -EINVAL;
}

static int net_open(struct vos_hdev *d, const struct vos_devconf *conf)
{
	/* Locally administered, derived from card and index: 02:53:43 ("SC") 00 card index. */
	struct virtio_net_config cfg = {
		.mac = { 0x02, 0x53, 0x43, 0x00, (uint8_t)conf->card, (uint8_t)conf->index },
		.status = htole16(VIRTIO_NET_S_LINK_UP),
	};
	const char *tap = vos_conf_get(conf, "tap"), *mac = vos_conf_get(conf, "mac");
	const char *mtu_s = vos_conf_get(conf, "mtu");
	uint64_t features = NET_FEATURES;
	char defname[IFNAMSIZ];
	struct net_backend *nb;
	unsigned long mtu = 0;
	int ret;

	for (unsigned i = 0; i < conf->nkv; i++) {
		if (strcmp(conf->kv[i].key, "tap") && strcmp(conf->kv[i].key, "mac") &&
		    strcmp(conf->kv[i].key, "mtu")) {
			vos_log(LOG_ERR, "%s: unknown option %s (tap=, mac=, mtu=)",
				vos_hdev_name(d), conf->kv[i].key);
			return -EINVAL;
		}
	}
	if (!tap) {
		snprintf(defname, sizeof(defname), "vos%dn%u", conf->card, conf->index);
		tap = defname;
	}
	if (!vos_tap_name_ok(tap)) {
		vos_log(LOG_ERR, "%s: bad TAP name \"%s\"", vos_hdev_name(d), tap);
		return -EINVAL;
	}
	if (mac && net_parse_mac(mac, cfg.mac) < 0) {
		vos_log(LOG_ERR, "%s: bad mac=%s (unicast XX:XX:XX:XX:XX:XX)", vos_hdev_name(d), mac);
		return -EINVAL;
	}
	if (mtu_s) {
		char *end;

		errno = 0;
		mtu = strtoul(mtu_s, &end, 10);
		if (errno || end == mtu_s || *end || mtu < ETH_MIN_MTU || mtu > ETH_MAX_MTU) {
			vos_log(LOG_ERR, "%s: bad mtu=%s (%u..%u)", vos_hdev_name(d), mtu_s,
				(unsigned)ETH_MIN_MTU, (unsigned)ETH_MAX_MTU);
			return -EINVAL;
		}
		cfg.mtu = htole16((uint16_t)mtu);
		features |= NET_F(VIRTIO_NET_F_MTU);
	}

	nb = calloc(1, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	nb->rx_kicks = true;      /* a queue starts with KICKs asked for */
	ret = vos_tap_open(tap, nb->ifname);
	if (ret < 0) {
		vos_log(LOG_ERR, "%s: TAP %s: %s", vos_hdev_name(d), tap, strerror(-ret));
		free(nb);
		return ret;
	}
	nb->fd = ret;
	net_carrier(nb, false);
	ret = net_if_setup(nb->ifname, (unsigned)mtu);
	if (ret < 0) {
		vos_log(LOG_ERR, "%s: TAP %s: link up/MTU %lu: %s", vos_hdev_name(d), nb->ifname,
			mtu, strerror(-ret));
		goto fail;
	}
	vos_hdev_set_features(d, features);
	ret = vos_hdev_set_config(d, &cfg, offsetof(struct virtio_net_config, speed));
	if (ret < 0)
		goto fail;
	vos_hdev_set_priv(d, nb);
	ret = net_watch(d, nb);
	if (ret < 0)
		goto fail;
	vos_log(LOG_INFO, "%s: TAP %s, card MAC %02x:%02x:%02x:%02x:%02x:%02x", vos_hdev_name(d),
		nb->ifname, cfg.mac[0], cfg.mac[1], cfg.mac[2], cfg.mac[3], cfg.mac[4], cfg.mac[5]);
	return 0;
fail:
	vos_hdev_set_priv(d, NULL);
	close(nb->fd);
	free(nb);
	return ret;
}

static int net_start(struct vos_hdev *d)
{
	struct net_backend *nb = vos_hdev_priv(d);
	/* What the host TAP may hand us: what the card accepts on its receiveq. */
	unsigned off = vos_tap_offloads(vos_hdev_features(d), true);

	if (ioctl(nb->fd, TUNSETOFFLOAD, off) < 0) {
		int ret = -errno;

		vos_log(LOG_ERR, "%s: TAP %s offloads %#x: %s", vos_hdev_name(d), nb->ifname, off,
			strerror(errno));
		return ret;
	}
	net_carrier(nb, true);
	return net_watch(d, nb);
}

static int net_kick(struct vos_hdev *d, unsigned q)
{
	struct net_backend *nb = vos_hdev_priv(d);
	int ret = q == NET_RXQ ? net_rx_run(d, nb) : q == NET_TXQ ? net_tx_run(d, nb) : 0;

	return ret < 0 ? ret : net_watch(d, nb);
}

static int net_event(struct vos_hdev *d, int fd, short revents)
{
	struct net_backend *nb = vos_hdev_priv(d);
	int ret = 0;

	(void)fd;
	if (revents & (POLLERR | POLLHUP | POLLNVAL))
		net_tap_failed(d, nb, "poll", EBADFD);
	if ((revents & POLLOUT) && nb->tx_blocked) {
		ret = net_tx_write(d, nb);
		if (ret > 0)
			ret = net_tx_run(d, nb);
	}
	if (ret >= 0 && (revents & POLLIN))
		ret = net_rx_run(d, nb);
	return ret < 0 ? ret : net_watch(d, nb);
}

static void net_stop(struct vos_hdev *d, enum vos_stop_reason why)
{
	struct net_backend *nb = vos_hdev_priv(d);

	(void)why;
	/* The rings are going away: what we hold of them is dropped with them. */
	nb->drops += (nb->rx_frame != 0) + nb->tx_blocked;
	nb->rx_frame = 0;
	nb->rx_nheld = 0;
	nb->rx_starved = false;
	nb->rx_kicks = true;
	nb->tx_blocked = false;
	net_carrier(nb, false);
	ioctl(nb->fd, TUNSETOFFLOAD, 0);
	net_watch(d, nb);
}

static void net_close(struct vos_hdev *d)
{
	struct net_backend *nb = vos_hdev_priv(d);

	if (!nb)
		return;
	vos_hdev_watch(d, nb->fd, 0, false);
	close(nb->fd);
	free(nb);
	vos_hdev_set_priv(d, NULL);
}

static void net_status(struct vos_hdev *d, FILE *out)
{
	struct net_backend *nb = vos_hdev_priv(d);

	fprintf(out, "tap=%s carrier=%s rx_pkts=%llu rx_bytes=%llu tx_pkts=%llu tx_bytes=%llu "
		"drops=%llu", nb->ifname, nb->carrier ? "on" : "off",
		(unsigned long long)nb->rx_pkts, (unsigned long long)nb->rx_bytes,
		(unsigned long long)nb->tx_pkts, (unsigned long long)nb->tx_bytes,
		(unsigned long long)nb->drops);
}

const struct vos_backend_ops vos_net_backend = {
	.type = VIRTIO_ID_NET,
	.name = "net",
	.nqueues = 2,
	.queue_max = 1024,
	.open = net_open,
	.start = net_start,
	.kick = net_kick,
	.event = net_event,
	.stop = net_stop,
	.close = net_close,
	.status = net_status,
};
