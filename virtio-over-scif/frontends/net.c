/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * frontends/net.c - virtio-net on the card: a TAP (scifnet<i>) whose frames go to the host
 * through the transmitq (1) and come back through the receiveq (0). Frames keep their
 * struct virtio_net_hdr_v1 both ways, so TSO/GSO frames of up to 64 KiB cross whole.
 *
 * Buffers live in the device window: receive buffers are posted once and reposted as soon
 * as their frame is in the TAP; the TAP is read straight into a free transmit slot (no copy
 * on the card), and slots the host has finished with are taken back lazily, when the next
 * frame needs one (transmit IRQs stay off unless the card runs out of slots).
 */
#include <endian.h>
#include <errno.h>
#include <net/if_arp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>

#include "tap.h"
#include "vos.h"

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_SLOT_LEN ((VOS_NET_HDR_LEN + VOS_NET_FRAME_MAX + 63) & ~(size_t)63)
#define NET_RX_MRG_LEN 16384      /* receive buffer with MRG_RXBUF (a 64 KiB frame takes 5) */
#define NET_RX_MRG_NUM 256
#define NET_RX_BIG_NUM 64         /* receive buffers of NET_SLOT_LEN, without MRG_RXBUF */
#define NET_TX_NUM 64             /* transmit slots of NET_SLOT_LEN */
#define NET_BATCH 64              /* frames between kicks / turns of the other direction */
#define NET_INFO_MS 1000          /* the counters in the status file, this often */
#define NET_F(bit) (1ULL << (bit))

/* Everything is touched by the device's thread only. */
struct net_frontend {
	int fd;                   /* the card's TAP, non-blocking */
	char ifname[IFNAMSIZ];
	short watching;           /* events last passed to vos_cdev_watch */
	bool started;             /* between start() and stop() */
	bool carrier;             /* as last set (on if the kernel cannot switch it) */
	bool tx_starved;          /* no free transmit slot: TAP unwatched until a transmit IRQ */
	uint16_t mtu;             /* last MTU / MAC taken from the config (0 / zeros: none), so */
	uint8_t mac[ETH_ALEN];    /* a re-attach does not undo what the card's admin set */
	/* sizes chosen in size() */
	uint16_t nrx, ntx;
	uint32_t rx_len;          /* bytes of one receive buffer */
	/* receiveq: a frame spread over num_buffers buffers, collected until it is complete */
	unsigned rx_want, rx_have;
	struct iovec *rx_iov;     /* [nrx] */
	/* transmitq: free slots (stack) */
	unsigned ntx_free;
	uint8_t **tx_free;        /* [ntx] */
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes, drops;
};

/* ---------------------------------------------------------------------------------------- */
/* The TAP */

/* The card's status line: the TAP, its carrier, the counters (refreshed by netf_tick). */
static void net_info(struct vos_cdev *d, const struct net_frontend *nf)
{
	vos_cdev_set_info(d, "tap=%s carrier=%s rx_pkts=%llu rx_bytes=%llu tx_pkts=%llu "
			  "tx_bytes=%llu drops=%llu", nf->ifname, nf->carrier ? "on" : "off",
			  (unsigned long long)nf->rx_pkts, (unsigned long long)nf->rx_bytes,
			  (unsigned long long)nf->tx_pkts, (unsigned long long)nf->tx_bytes,
			  (unsigned long long)nf->drops);
}

/* Carrier on/off (a kernel without TUNSETCARRIER keeps it on). */
static void net_carrier(struct vos_cdev *d, struct net_frontend *nf, bool on)
{
	nf->carrier = vos_tap_carrier(nf->fd, on) == 0 ? on : true;
	net_info(d, nf);
}

static int net_watch(struct vos_cdev *d, struct net_frontend *nf)
{
	short events = nf->started && !nf->tx_starved ? POLLIN : 0;
	int ret;

	if (events == nf->watching)
		return 0;
	ret = vos_cdev_watch(d, nf->fd, events, false);
	if (!ret)
		nf->watching = events;
	return ret;
}

/* Takes MAC, MTU and link state from the config space: MAC and MTU only when the host
 * changed them (they are the card's to change otherwise), carrier while started. */
static void net_apply_config(struct vos_cdev *d, struct net_frontend *nf, bool features_known)
{
	struct virtio_net_config cfg = { 0 };
	uint64_t f = vos_cdev_features(d);
	struct ifreq ifr = { 0 };
	uint16_t mtu;
	int ret;

	vos_cdev_config(d, &cfg, sizeof(cfg));
	mtu = le16toh(cfg.mtu);
	if ((!features_known || (f & NET_F(VIRTIO_NET_F_MAC))) && !(cfg.mac[0] & 1) &&
	    memcmp(cfg.mac, nf->mac, ETH_ALEN) && memcmp(cfg.mac, (uint8_t[ETH_ALEN]){ 0 }, ETH_ALEN)) {
		ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
		memcpy(ifr.ifr_hwaddr.sa_data, cfg.mac, ETH_ALEN);
		ret = vos_if_ioctl(nf->ifname, SIOCSIFHWADDR, &ifr);
		if (ret < 0)
			vos_log(LOG_WARNING, "%s: %s: MAC address: %s", vos_cdev_name(d),
				nf->ifname, strerror(-ret));
		memcpy(nf->mac, cfg.mac, ETH_ALEN);
	}
	if ((!features_known || (f & NET_F(VIRTIO_NET_F_MTU))) && mtu != nf->mtu &&
	    mtu >= ETH_MIN_MTU) {
		ifr.ifr_mtu = mtu;
		ret = vos_if_ioctl(nf->ifname, SIOCSIFMTU, &ifr);
		if (ret < 0)
			vos_log(LOG_WARNING, "%s: %s: MTU %u: %s", vos_cdev_name(d), nf->ifname,
				mtu, strerror(-ret));
		nf->mtu = mtu;
	}
	net_carrier(d, nf, nf->started && (!(f & NET_F(VIRTIO_NET_F_STATUS)) ||
					   (le16toh(cfg.status) & VIRTIO_NET_S_LINK_UP)));
}

/* ---------------------------------------------------------------------------------------- */
/* Host -> card: the receiveq */

static int net_rx_post(struct vos_cdev *d, struct net_frontend *nf, void *buf)
{
	struct vos_sg sg = { .addr = buf, .len = nf->rx_len };

	return vos_cq_add(d, NET_RXQ, &sg, 0, 1, buf);
}

/* The collected frame into the TAP (one writev, the header first), its buffers reposted. */
static int net_rx_frame(struct vos_cdev *d, struct net_frontend *nf)
{
	ssize_t n = writev(nf->fd, nf->rx_iov, (int)nf->rx_have);
	int ret = 0;

	if (n < 0) {
		/* EINVAL: the kernel refused the header; EIO: the TAP is down. */
		vos_log(LOG_DEBUG, "%s: %s: frame dropped: %s", vos_cdev_name(d), nf->ifname,
			strerror(errno));
		nf->drops++;
	} else {
		nf->rx_pkts++;
		nf->rx_bytes += (uint64_t)n - VOS_NET_HDR_LEN;
	}
	for (unsigned i = 0; i < nf->rx_have && ret >= 0; i++)
		ret = net_rx_post(d, nf, nf->rx_iov[i].iov_base);
	nf->rx_have = 0;
	return ret;
}

static int net_tx_run(struct vos_cdev *d, struct net_frontend *nf);

/* Used receive buffers into the TAP. With MRG_RXBUF a frame is num_buffers buffers: they are
 * collected (across IRQs if the host published them one by one) before the frame is written.
 * The transmit side gets a turn every NET_BATCH frames. */
static int net_rx_irq(struct vos_cdev *d, struct net_frontend *nf)
{
	bool mrg = vos_cdev_features(d) & NET_F(VIRTIO_NET_F_MRG_RXBUF);
	unsigned frames = 0;
	int ret;

	for (;;) {
		uint32_t len;
		void *buf;

		ret = vos_cq_get_checked(d, NET_RXQ, &buf, &len);
		if (ret <= 0)
			break;
		if (!nf->rx_have) {
			struct virtio_net_hdr_v1 h;
			unsigned nbufs;

			memcpy(&h, buf, sizeof(h));  /* one read of what the host wrote */
			nbufs = mrg ? le16toh(h.num_buffers) : 1;
			if (len < VOS_NET_HDR_LEN + ETH_HLEN || !nbufs || nbufs > nf->nrx) {
				vos_log(LOG_DEBUG, "%s: bad frame: %u bytes, %u buffers",
					vos_cdev_name(d), len, nbufs);
				nf->drops++;
				ret = net_rx_post(d, nf, buf);
				if (ret < 0)
					break;
				continue;
			}
			nf->rx_want = nbufs;
		}
		nf->rx_iov[nf->rx_have++] = (struct iovec){ .iov_base = buf, .iov_len = len };
		if (nf->rx_have < nf->rx_want)
			continue;
		ret = net_rx_frame(d, nf);
		if (ret < 0)
			break;
		if (++frames % NET_BATCH == 0) {
			ret = vos_cq_kick(d, NET_RXQ);
			if (ret >= 0 && !nf->tx_starved)
				ret = net_tx_run(d, nf);
			if (ret < 0)
				break;
		}
	}
	if (ret < 0)
		return ret;
	return vos_cq_kick(d, NET_RXQ);
}

/* ---------------------------------------------------------------------------------------- */
/* Card -> host: the transmitq */

/* Take back the slots the host has sent. */
static int net_tx_reclaim(struct vos_cdev *d, struct net_frontend *nf)
{
	uint32_t len;
	void *slot;
	int ret;

	while ((ret = vos_cq_get_checked(d, NET_TXQ, &slot, &len)) > 0)
		nf->tx_free[nf->ntx_free++] = slot;
	return ret;
}

/* Frames from the TAP straight into transmit slots, a kick per NET_BATCH. Out of slots:
 * the TAP is left unread (the kernel queues) until the host returns some. */
static int net_tx_run(struct vos_cdev *d, struct net_frontend *nf)
{
	unsigned added = 0;
	int ret = 0;

	for (unsigned turn = 0; turn < NET_BATCH; turn++) {
		struct vos_sg sg;
		ssize_t n;

		if (!nf->ntx_free) {
			ret = net_tx_reclaim(d, nf);
			if (ret < 0)
				break;
		}
		if (!nf->ntx_free) {
			/* Ask for an IRQ when the host returns a slot; one may be back already. */
			nf->tx_starved = true;
			ret = vos_cq_irqs(d, NET_TXQ, true);
			if (ret <= 0)
				break;
			nf->tx_starved = false;
			ret = vos_cq_irqs(d, NET_TXQ, false);
			continue;
		}
		sg.addr = nf->tx_free[nf->ntx_free - 1];
		n = read(nf->fd, sg.addr, NET_SLOT_LEN);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				vos_log(LOG_DEBUG, "%s: %s: read: %s", vos_cdev_name(d),
					nf->ifname, strerror(errno));
				nf->drops++;
			}
			break;
		}
		if ((size_t)n < VOS_NET_HDR_LEN + ETH_HLEN) {
			nf->drops++;
			continue;
		}
		sg.len = (uint32_t)n;
		ret = vos_cq_add(d, NET_TXQ, &sg, 1, 0, sg.addr);
		if (ret < 0)
			break;
		nf->ntx_free--;
		nf->tx_pkts++;
		nf->tx_bytes += (uint64_t)n - VOS_NET_HDR_LEN;
		added++;
	}
	if (ret < 0)
		return ret;
	return added ? vos_cq_kick(d, NET_TXQ) : 0;
}

/* A transmit IRQ: slots are back; if we were waiting for them, read the TAP again. */
static int net_tx_irq(struct vos_cdev *d, struct net_frontend *nf)
{
	int ret = net_tx_reclaim(d, nf);

	if (ret < 0 || !nf->tx_starved || !nf->ntx_free)
		return ret;
	nf->tx_starved = false;
	ret = vos_cq_irqs(d, NET_TXQ, false);
	return ret < 0 ? ret : net_tx_run(d, nf);
}

/* ---------------------------------------------------------------------------------------- */
/* Ops */

static int netf_open(struct vos_cdev *d)
{
	const char *tap = vos_cdev_opt(d, "tap");
	struct net_frontend *nf;
	char defname[IFNAMSIZ];
	int ret;

	if (!tap) {
		snprintf(defname, sizeof(defname), "scifnet%u", vos_cdev_index(d));
		tap = defname;
	}
	if (!vos_tap_name_ok(tap)) {
		vos_log(LOG_ERR, "%s: bad TAP name \"%s\"", vos_cdev_name(d), tap);
		return -EINVAL;
	}
	nf = calloc(1, sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	ret = vos_tap_open(tap, nf->ifname);
	if (ret < 0) {
		vos_log(LOG_ERR, "%s: TAP %s: %s", vos_cdev_name(d), tap, strerror(-ret));
		free(nf);
		return ret;
	}
	nf->fd = ret;
	vos_cdev_set_priv(d, nf);
	net_apply_config(d, nf, false);   /* carrier off: not started */
	vos_cdev_set_tick(d, NET_INFO_MS);
	vos_log(LOG_INFO, "%s: TAP %s", vos_cdev_name(d), nf->ifname);
	return 0;
}

static int netf_size(struct vos_cdev *d, uint16_t qsize[VOS_MAX_QUEUES], size_t *pool)
{
	struct net_frontend *nf = vos_cdev_priv(d);
	bool mrg = vos_cdev_features(d) & NET_F(VIRTIO_NET_F_MRG_RXBUF);
	uint16_t rx = mrg ? NET_RX_MRG_NUM : NET_RX_BIG_NUM, tx = NET_TX_NUM;

	if (!qsize[NET_RXQ] || !qsize[NET_TXQ])
		return -EINVAL;
	/* Both powers of 2, so is the smaller. */
	qsize[NET_RXQ] = nf->nrx = qsize[NET_RXQ] < rx ? qsize[NET_RXQ] : rx;
	qsize[NET_TXQ] = nf->ntx = qsize[NET_TXQ] < tx ? qsize[NET_TXQ] : tx;
	nf->rx_len = mrg ? NET_RX_MRG_LEN : (uint32_t)NET_SLOT_LEN;
	*pool = (size_t)nf->nrx * nf->rx_len + (size_t)nf->ntx * NET_SLOT_LEN + 2 * 4096;
	return 0;
}

static int netf_start(struct vos_cdev *d)
{
	struct net_frontend *nf = vos_cdev_priv(d);
	/* What the card's TAP may hand us: what the host accepts on the transmitq. */
	unsigned off = vos_tap_offloads(vos_cdev_features(d), false);
	uint8_t *rx_pool, *tx_pool;
	int ret;

	free(nf->rx_iov);   /* left by a start() that failed */
	free(nf->tx_free);
	nf->rx_iov = calloc(nf->nrx, sizeof(*nf->rx_iov));
	nf->tx_free = calloc(nf->ntx, sizeof(*nf->tx_free));
	rx_pool = vos_cdev_alloc(d, (size_t)nf->nrx * nf->rx_len, 4096);
	tx_pool = vos_cdev_alloc(d, (size_t)nf->ntx * NET_SLOT_LEN, 4096);
	if (!nf->rx_iov || !nf->tx_free || !rx_pool || !tx_pool)
		return -ENOMEM;
	for (unsigned i = 0; i < nf->nrx; i++) {
		ret = net_rx_post(d, nf, rx_pool + (size_t)i * nf->rx_len);
		if (ret < 0)
			return ret;
	}
	for (unsigned i = 0; i < nf->ntx; i++)
		nf->tx_free[i] = tx_pool + (size_t)i * NET_SLOT_LEN;
	nf->ntx_free = nf->ntx;
	ret = vos_cq_kick(d, NET_RXQ);
	if (ret < 0)
		return ret;
	/* Transmit slots are taken back when needed: no IRQ per sent frame. */
	ret = vos_cq_irqs(d, NET_TXQ, false);
	if (ret < 0)
		return ret;
	if (ioctl(nf->fd, TUNSETOFFLOAD, off) < 0) {
		ret = -errno;
		vos_log(LOG_ERR, "%s: %s: offloads %#x: %s", vos_cdev_name(d), nf->ifname, off,
			strerror(errno));
		return ret;
	}
	nf->started = true;
	net_apply_config(d, nf, true);
	return net_watch(d, nf);
}

static int netf_irq(struct vos_cdev *d, unsigned q)
{
	struct net_frontend *nf = vos_cdev_priv(d);
	int ret = q == NET_RXQ ? net_rx_irq(d, nf) : q == NET_TXQ ? net_tx_irq(d, nf) : 0;

	return ret < 0 ? ret : net_watch(d, nf);
}

static int netf_event(struct vos_cdev *d, int fd, short revents)
{
	struct net_frontend *nf = vos_cdev_priv(d);
	int ret = 0;

	(void)fd;
	if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
		/* Our own TAP cannot go away while we hold it: only if deleted by force. */
		vos_log(LOG_ERR, "%s: %s: poll error %#x", vos_cdev_name(d), nf->ifname, revents);
		return -EIO;
	}
	if (revents & POLLIN)
		ret = net_tx_run(d, nf);
	return ret < 0 ? ret : net_watch(d, nf);
}

/* The counters in the status line (once a second, not per frame). */
static int netf_tick(struct vos_cdev *d)
{
	net_info(d, vos_cdev_priv(d));
	return 0;
}

static int netf_config(struct vos_cdev *d)
{
	struct net_frontend *nf = vos_cdev_priv(d);

	net_apply_config(d, nf, nf->started);
	return 0;
}

static void netf_stop(struct vos_cdev *d, enum vos_stop_reason why)
{
	struct net_frontend *nf = vos_cdev_priv(d);

	(void)why;
	/* In-flight frames go with the window. */
	vos_log(LOG_INFO, "%s: %s carrier off, %llu frames dropped so far", vos_cdev_name(d),
		nf->ifname, (unsigned long long)nf->drops);
	nf->started = false;
	nf->tx_starved = false;
	net_carrier(d, nf, false);
	net_watch(d, nf);
	nf->rx_have = 0;
	nf->ntx_free = 0;
	free(nf->rx_iov);
	free(nf->tx_free);
	nf->rx_iov = NULL;
	nf->tx_free = NULL;
}

static void netf_close(struct vos_cdev *d)
{
	struct net_frontend *nf = vos_cdev_priv(d);

	if (!nf)
		return;
	free(nf->rx_iov);
	free(nf->tx_free);
	close(nf->fd);
	free(nf);
	vos_cdev_set_priv(d, NULL);
}

const struct vos_frontend_ops vos_net_frontend = {
	.type = VIRTIO_ID_NET,
	.name = "net",
	.features = NET_F(VIRTIO_NET_F_MAC) | NET_F(VIRTIO_NET_F_MTU) |
		    NET_F(VIRTIO_NET_F_STATUS) | NET_F(VIRTIO_NET_F_MRG_RXBUF) |
		    NET_F(VIRTIO_NET_F_CSUM) | NET_F(VIRTIO_NET_F_GUEST_CSUM) |
		    NET_F(VIRTIO_NET_F_HOST_TSO4) | NET_F(VIRTIO_NET_F_HOST_TSO6) |
		    NET_F(VIRTIO_NET_F_HOST_ECN) | NET_F(VIRTIO_NET_F_GUEST_TSO4) |
		    NET_F(VIRTIO_NET_F_GUEST_TSO6) | NET_F(VIRTIO_NET_F_GUEST_ECN),
	.open = netf_open,
	.size = netf_size,
	.start = netf_start,
	.irq = netf_irq,
	.event = netf_event,
	.tick = netf_tick,
	.config = netf_config,
	.stop = netf_stop,
	.close = netf_close,
};
