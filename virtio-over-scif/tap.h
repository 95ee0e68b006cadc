/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tap.h - what the two halves of virtio-net (backends/net.c on the host, frontends/net.c on
 * the card) share: a TAP that carries a struct virtio_net_hdr_v1 in front of every frame, so
 * TSO/GSO frames cross whole, and the interface behind it.
 */
#ifndef VOS_TAP_H
#define VOS_TAP_H

#include <stdbool.h>
#include <stdint.h>
#include <net/if.h>
#include <linux/if_ether.h>
#include <linux/virtio_net.h>

#define VOS_NET_HDR_LEN sizeof(struct virtio_net_hdr_v1)  /* VERSION_1: always 12 bytes */
/* Largest frame: a 64 KiB IP packet (TSO/GSO or MTU 65535) behind an Ethernet + VLAN header. */
#define VOS_NET_FRAME_MAX (65535 + ETH_HLEN + 4)

/** True if @name can name an interface: not empty, shorter than IFNAMSIZ, no '/'. */
bool vos_tap_name_ok(const char *name);

/**
 * Create or attach TAP @name, non-blocking, with a VOS_NET_HDR_LEN virtio-net header on every
 * frame and its offloads off. @ifname gets the name the kernel gave it.
 * @return the TAP's fd, or -errno.
 */
int vos_tap_open(const char *name, char ifname[IFNAMSIZ]);

/**
 * Carrier of the TAP on @fd on or off (TUNSETCARRIER).
 * @return 0, or -errno (a kernel without TUNSETCARRIER keeps the carrier on).
 */
int vos_tap_carrier(int fd, bool on);

/**
 * The TUN_F_* offloads a TAP may use for frames that go to the virtio-net peer that
 * negotiated @features: to the driver's receiveq if @to_driver (VIRTIO_NET_F_GUEST_*: the
 * host's TAP), else to the device's transmitq (VIRTIO_NET_F_CSUM and HOST_*: the card's TAP).
 */
unsigned vos_tap_offloads(uint64_t features, bool to_driver);

/**
 * One SIOCGIF* or SIOCSIF* request @req on interface @ifname, through a socket of this
 * network namespace. @return 0 or -errno.
 */
int vos_if_ioctl(const char *ifname, unsigned long req, struct ifreq *ifr);

#endif /* VOS_TAP_H */
