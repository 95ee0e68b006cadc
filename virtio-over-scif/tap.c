// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap.c - the TAP helpers of both virtio-net halves (tap.h): open a TAP with virtio-net
 * headers, its carrier and offloads, requests on its interface.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

#include "tap.h"

#define F(bit) (1ULL << (bit))

bool vos_tap_name_ok(const char *name)
{
	return *name && strlen(name) < IFNAMSIZ && !strchr(name, '/');
}

int vos_tap_open(const char *name, char ifname[IFNAMSIZ])
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr_len = VOS_NET_HDR_LEN, ret;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
	ifname[IFNAMSIZ - 1] = '\0';
	return fd;
}

int vos_tap_carrier(int fd, bool on)
{
	int v = on;

	return ioctl(fd, TUNSETCARRIER, &v) < 0 ? -errno : 0;
}

unsigned vos_tap_offloads(uint64_t f, bool to_driver)
{
	unsigned csum = to_driver ? VIRTIO_NET_F_GUEST_CSUM : VIRTIO_NET_F_CSUM;
	unsigned tso4 = to_driver ? VIRTIO_NET_F_GUEST_TSO4 : VIRTIO_NET_F_HOST_TSO4;
	unsigned tso6 = to_driver ? VIRTIO_NET_F_GUEST_TSO6 : VIRTIO_NET_F_HOST_TSO6;
	unsigned ecn = to_driver ? VIRTIO_NET_F_GUEST_ECN : VIRTIO_NET_F_HOST_ECN;
	unsigned off = 0;

	if (!(f & F(csum)))
		return 0;
	off |= TUN_F_CSUM;
	if (f & F(tso4))
		off |= TUN_F_TSO4;
	if (f & F(tso6))
		off |= TUN_F_TSO6;
	if ((off & (TUN_F_TSO4 | TUN_F_TSO6)) && (f & F(ecn)))
		off |= TUN_F_TSO_ECN;
	return off;
}

int vos_if_ioctl(const char *ifname, unsigned long req, struct ifreq *ifr)
{
	int ret = 0, s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", ifname);
	if (ioctl(s, req, ifr) < 0)
		ret = -errno;
	close(s);
	return ret;
}
