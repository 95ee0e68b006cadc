#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
# /init of the check-kernel guest: mount the pseudo filesystems, run the shim's guest test on the
# serial console, power off. The host script parses the console output.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "GUEST: booted in $(cut -d' ' -f1 /proc/uptime) s"
/shim_guest_test /scif_shim.ko
echo "GUEST: exit status $?"
echo "GUEST-END"
poweroff -f
