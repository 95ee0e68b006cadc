#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/check-rxe.sh [PROGRAM...] - what `make check-rxe` runs: check-ofi.sh's cross-node
# suite over RDMA, libfabric's verbs provider (verbs;ofi_rxm) on soft-RoCE devices (rdma_rxe),
# in a QEMU guest that runs Debian's kernel (TCG). Neither this machine's kernel nor its
# containers have an RDMA device; Debian's kernel has rdma_rxe as a module.
#
# PROGRAMs (default: test-compat test-mp test-rma-mp test-bulk), each with check-ofi.sh's
# filter (tests/ofi/programs.sh). test-ofi is not run: it pulls cables with netns.sh.
#
# The guest (one, 2 vCPUs, 1 GiB) is the two hosts: a veth pair v0/v1, node 0 at
# 169.254.77.1 on v0 with rxe0, node 1 at 169.254.77.2 on v1 with rxe1. Both addresses are
# local to the one kernel, which would deliver node 0's packets to node 1 through the loopback
# device, where no rxe device listens (rxe in 6.1 sees only the packets of its own netdev,
# and only in the initial network namespace, so two namespaces do not work either). Policy
# routing sends what each address sends to the other out of its own veth instead (rules for
# locally made packets, "iif lo", ahead of the local table), and the other end accepts
# packets from a local source (accept_local): every RoCE packet and every TCP segment of the
# links crosses the veth pair, as between two hosts. Node 1's processes are started by a
# shell node-exec (SCIF_TEST_NODE_EXEC) that gives each node a SCIF_RUN_DIR of its own.
#
# The host side: Debian's kernel and its modules come from check-kernel.sh --prepare (the
# build directory guest-run.sh uses); the initramfs holds busybox, the modules, iproute2's
# ip and rdma, the rxe user-space driver, and the test programs with every library ldd
# names (libfabric is loaded by dlopen: it goes in by name). The programs' output comes back
# on the guest's second serial port; the tally is check-ofi.sh's. Needs root (apt-get) only
# for a first run on a machine without QEMU.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute). RXE_TIMEOUT:
# each program's hard limit inside the guest, seconds (900); the guest itself gets their sum
# plus 120 s. OFI_FILTER: a Criterion --filter for every program (one test at a time while
# working on it). SCIF_LOG* and FI_LOG* pass into the guest. SCIF_TEST_SCALE_PCT (25) and SCIF_TEST_SPAWN_MS (60000) as in check-pcie's
# guest pass: every byte crosses an emulated CPU.
# Logs: $top_builddir/tests/ofi/rxe-<program>.log; the guest's console in rxe-console.log, its
# init in rxe-init.sh, everything the programs printed in rxe-out.log.
set -uo pipefail

: "${top_builddir:?run through make check-rxe}" "${top_srcdir:?run through make check-rxe}"
here=$top_srcdir/tests/ofi
. "$top_srcdir/tests/tally.sh"
. "$here/programs.sh"
# Over soft-RoCE on an emulated CPU RDMA moves a few megabytes a second: the integrity runs
# of 16 and 256 MiB windows (gigabytes in all) would take most of an hour. check-ofi runs
# them over tcp and sockets; here RMA is checked up to 1 MiB windows.
filter[test-rma-mp]='!(rma_mp/@(mmap_ping_pong_across_processes|integrity_16MiB|integrity_256MiB))'
progs=("$@")
[ ${#progs[@]} -gt 0 ] || progs=(test-compat test-mp test-rma-mp test-bulk)
for p in "${progs[@]}"; do
	[ -n "${path[$p]:-}" ] && [ "$p" != test-ofi ] || {
		echo "check-rxe.sh: unknown program $p (test-compat test-mp test-rma-mp test-bulk)"
		echo "0 passed, 1 failed"; exit 2; }
done
prog_timeout=${RXE_TIMEOUT:-900}
logdir=$top_builddir/tests/ofi
mkdir -p "$logdir"
passed=0
failed=0
fail() { echo "FAIL: check-rxe: $*"; echo "0 passed, 1 failed"; exit 1; }

# ---- Debian's kernel, and the modules soft-RoCE needs from its image package ---------------
kbuild=$top_builddir/kernel/shim/build
mkdir -p "$kbuild" || fail "cannot make $kbuild"
(
	flock 9 || exit 1
	bash "$top_srcdir/kernel/shim/tests/check-kernel.sh" --prepare "$kbuild" >"$kbuild/prepare.log" 2>&1
) 9>"$kbuild/.prepare.lock" || { tail -n 20 "$kbuild/prepare.log"; fail "the guest kernel could not be prepared"; }
# shellcheck disable=SC1091
. "$kbuild/guest.env" # KVER, BOOT_KERNEL
# In load order: what rdma_rxe needs (crc32 for its ICRC, the UDP tunnels it listens on, the
# verbs core), then the connection manager librdmacm talks to, which the verbs provider uses.
modules=(crypto/crc32_generic fs/configfs/configfs net/ipv4/udp_tunnel net/ipv6/ip6_udp_tunnel
	 drivers/infiniband/core/ib_core drivers/infiniband/core/ib_uverbs
	 drivers/infiniband/sw/rxe/rdma_rxe drivers/infiniband/core/iw_cm
	 drivers/infiniband/core/ib_cm drivers/infiniband/core/rdma_cm
	 drivers/infiniband/core/rdma_ucm drivers/net/veth)
moddir=$kbuild/rxe-modules-$KVER
if [ ! -e "$moddir/.done" ]; then
	deb=$(compgen -G "$kbuild/kernel-$KVER/debs/linux-image-$KVER-amd64_*.deb" | head -n 1)
	[ -n "$deb" ] || fail "no linux-image-$KVER-amd64 package in $kbuild/kernel-$KVER/debs"
	rm -rf "$moddir" && mkdir -p "$moddir" || fail "cannot make $moddir"
	members=()
	for m in "${modules[@]}"; do members+=("./lib/modules/$KVER-amd64/kernel/$m.ko"); done
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$moddir" "${members[@]}" 2>/dev/null
	for m in "${modules[@]}"; do
		[ -f "$moddir/lib/modules/$KVER-amd64/kernel/$m.ko" ] ||
			fail "linux-image-$KVER-amd64 has no $m.ko (modules compressed or renamed?)"
	done
	touch "$moddir/.done"
fi

# ---- what runs in the guest --------------------------------------------------------------
need() { [ -e "$1" ] || fail "$1 missing (Debian: $2)"; }
ip_bin=$(command -v ip) || fail "no ip (Debian: iproute2)"
rdma_bin=$(command -v rdma) || fail "no rdma (Debian: iproute2)"
timeout_bin=$(command -v timeout) || fail "no timeout (coreutils)"
libfabric=$(ldconfig -p | awk '/libfabric\.so\.1 /{print $NF; exit}')
[ -n "$libfabric" ] || fail "no libfabric.so.1 (Debian: libfabric1)"
rxe_driver=/etc/libibverbs.d/rxe.driver
rxe_lib=$(compgen -G "/usr/lib/*/libibverbs/librxe-rdmav*.so" | head -n 1)
need "$rxe_driver" ibverbs-providers
[ -n "$rxe_lib" ] || fail "no librxe-rdmav*.so (Debian: ibverbs-providers)"
need /bin/busybox busybox-static
command -v qemu-system-x86_64 >/dev/null || fail "no qemu-system-x86_64 (Debian: qemu-system-x86)"

run=$(mktemp -d "${TMPDIR:-/tmp}/scif-rxe.XXXXXX") || fail "no run directory"
qemu_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

ird=$run/root
mkdir -p "$ird"/{bin,lib,lib64,mods,proc,sys,dev,tmp,etc/libibverbs.d} || fail "initramfs: mkdir"
cp /bin/busybox "$ird/bin/busybox" || fail "initramfs: busybox"
for m in "${modules[@]}"; do
	cp "$moddir/lib/modules/$KVER-amd64/kernel/$m.ko" "$ird/mods/" || fail "initramfs: $m.ko"
done
# FILE at its own path in the guest (a libtool wrapper: the binary it stands for), and every
# library ldd names, in /lib (the interpreter at the path programs ask for).
put() {
	local src=$1 dst=${2:-$1} l f
	if [ "$(head -c 4 "$src" | od -An -c | tr -d ' ')" != '177ELF' ]; then
		src=$(dirname "$src")/.libs/$(basename "$src")
	fi
	mkdir -p "$ird$(dirname "$dst")" && cp -L "$src" "$ird$dst" || fail "initramfs: copy $src"
	while read -r l; do
		case $l in
		*" => "/*) f=${l#* => }; f=${f%% (*}
			[ -e "$ird/lib/$(basename "$f")" ] || cp -L "$f" "$ird/lib/" ;;
		/*) f=${l%% (*}; mkdir -p "$ird$(dirname "$f")"; [ -e "$ird$f" ] || cp -L "$f" "$ird$f"
			# and by name in /lib, where a dlmopen namespace looks for it (no ld.so.cache)
			[ -e "$ird/lib/$(basename "$f")" ] || cp -L "$f" "$ird/lib/" ;;
		*" => not found"*) fail "$src: ${l%% =>*} not found" ;;
		esac || fail "initramfs: copy $l"
	done < <(LD_LIBRARY_PATH=$top_builddir/libscif/.libs ldd "$src" 2>/dev/null)
}
for f in "$ip_bin" "$rdma_bin" "$timeout_bin" "$libfabric" "$rxe_lib"; do put "$f"; done
cp "$rxe_driver" "$ird$rxe_driver" || fail "initramfs: $rxe_driver"
b=$top_builddir
for p in "${progs[@]}"; do put "$b/${path[$p]}"; done
put "$b/tests/mp/scif-peer"
for f in "$b"/tests/compat/c-*-host "$b"/tests/compat/c-*-card; do put "$f"; done

# The guest's init: the two hosts, then each program; its output to the second serial port,
# between markers the host splits the logs by.
{
	echo '#!/bin/busybox sh'
	echo '/bin/busybox --install -s /bin'
	echo 'export PATH=/usr/sbin:/usr/bin:/bin LD_LIBRARY_PATH=/lib'
	echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev'
	echo 'mkdir -p /dev/shm; mount -t tmpfs -o mode=1777 tmpfs /dev/shm # Criterion: its arena'
	echo 'exec >/dev/ttyS0 2>&1'
	printf 'for m in'; for m in "${modules[@]}"; do printf ' %s' "${m##*/}"; done; echo '; do'
	echo '	insmod /mods/$m.ko || echo "GUEST: insmod $m failed"'
	echo 'done'
	cat <<-EOF
	ip=$ip_bin
	rdma=$rdma_bin
	EOF
	cat <<-'EOF'
	# glibc's resolver (librdmacm asks it) needs a host name and a hosts file.
	hostname guest
	printf '127.0.0.1 localhost\n169.254.77.1 guest\n' >/etc/hosts
	printf 'hosts: files\n' >/etc/nsswitch.conf
	$ip link set lo up
	$ip link add v0 type veth peer name v1
	$ip addr add 169.254.77.1/24 dev v0
	$ip addr add 169.254.77.2/24 dev v1
	$ip link set v0 up
	$ip link set v1 up
	for i in all default lo v0 v1; do
		echo 1 >/proc/sys/net/ipv4/conf/$i/accept_local
		echo 0 >/proc/sys/net/ipv4/conf/$i/rp_filter
	done
	# Locally made packets between the two addresses leave by their own veth.
	$ip rule add pref 100 lookup local
	$ip rule del pref 0
	$ip route add 169.254.77.2/32 dev v0 src 169.254.77.1 table 10
	$ip route add 169.254.77.1/32 dev v1 src 169.254.77.2 table 11
	$ip rule add pref 10 from 169.254.77.1 to 169.254.77.2 iif lo lookup 10
	$ip rule add pref 11 from 169.254.77.2 to 169.254.77.1 iif lo lookup 11
	$ip neigh add 169.254.77.2 lladdr $(cat /sys/class/net/v1/address) dev v0 nud permanent
	$ip neigh add 169.254.77.1 lladdr $(cat /sys/class/net/v0/address) dev v1 nud permanent
	# The ephemeral ports stay clear of SCIF's (netns.sh says why).
	echo "62000 65535" >/proc/sys/net/ipv4/ip_local_port_range
	$rdma link add rxe0 type rxe netdev v0 || echo "GUEST: no rxe0"
	$rdma link add rxe1 type rxe netdev v1 || echo "GUEST: no rxe1"
	$rdma link show
	printf '0 169.254.77.1\n1 169.254.77.2\n' >/tmp/nodes
	mkdir -p /tmp/scif/n0
	cat >/bin/node-exec <<-'X'
	#!/bin/busybox sh
	export SCIF_RUN_DIR=/tmp/scif/n$SCIF_NODE
	mkdir -p $SCIF_RUN_DIR
	exec "$@"
	X
	chmod 755 /bin/node-exec
	export SCIF_FABRIC=ofi SCIF_NODES_FILE=/tmp/nodes FI_PROVIDER=verbs SCIF_NODE=0
	export SCIF_RUN_DIR=/tmp/scif/n0 SCIF_TEST_NODE_EXEC=/bin/node-exec
	# rxm sizes its completion queues by the universe size: the default (256) asks rxe
	# for more entries than it has (32767).
	export FI_UNIVERSE_SIZE=32
	cd /tmp
	EOF
	cat <<-EOF
	export SCIF_TEST_PEER=$b/tests/mp/scif-peer SCIF_COMPAT_DIR=$b/tests/compat
	export SCIF_TEST_SCALE_PCT=${SCIF_TEST_SCALE_PCT:-25} SCIF_TEST_SPAWN_MS=${SCIF_TEST_SPAWN_MS:-60000}
	export CRITERION_JOBS=2
	EOF
	# The caller's logging choices (SCIF_LOG, FI_LOG_LEVEL, ...) pass in.
	while IFS= read -r v; do
		case ${v%%=*} in
		SCIF_LOG* | FI_LOG*) printf 'export %q\n' "$v" ;;
		esac
	done < <(env)
	for p in "${progs[@]}"; do
		printf 'echo "=== begin %s" >/dev/ttyS1\n' "$p"
		# --ascii: the serial port is a terminal, and the tally reads plain text.
		printf '%q -k 10 %q %q --ascii --verbose --filter=%q --jobs=%q </dev/null >/dev/ttyS1 2>&1\n' \
			"$timeout_bin" "$prog_timeout" "$b/${path[$p]}" "${OFI_FILTER:-${filter[$p]}}" \
			"${jobs[$p]:-2}"
		printf 'echo "=== end %s $?" >/dev/ttyS1\n' "$p"
	done
	echo 'poweroff -f'
} >"$ird/init" && chmod 755 "$ird/init" || fail "initramfs: init"
cp "$ird/init" "$logdir/rxe-init.sh"
(cd "$ird" && find . | cpio -o -H newc --quiet >"$run/initramfs.cpio") || fail "initramfs: cpio"
rm -rf "$ird"

# ---- the guest ---------------------------------------------------------------------------
guest_limit=$((prog_timeout * ${#progs[@]} + 120))
echo "check-rxe: Debian's kernel $KVER in QEMU (TCG); node 0 169.254.77.1 (rxe0), node 1" \
	"169.254.77.2 (rxe1); libfabric verbs;ofi_rxm; programs: ${progs[*]}"
: >"$run/out"
setpriv --pdeathsig KILL -- timeout -k 5 "$guest_limit" qemu-system-x86_64 -machine q35 \
	-accel tcg -cpu max -smp 2 -m 1G -nodefaults -display none -monitor none -no-reboot \
	-serial file:"$logdir/rxe-console.log" -serial file:"$run/out" \
	-kernel "$BOOT_KERNEL" -initrd "$run/initramfs.cpio" \
	-append "console=ttyS0 loglevel=3 panic=-1 rdinit=/init" >"$run/qemu.log" 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qrc=$?
qemu_pid=
[ "$qrc" = 0 ] || { echo "check-rxe: the guest ended with status $qrc"; tail -n 5 "$run/qemu.log"; }
if ! grep -a -q 'rxe1/1 state ACTIVE' "$logdir/rxe-console.log"; then
	echo "check-rxe: the guest did not bring its rxe devices up:"
	grep -a -E 'GUEST|rxe|error' "$logdir/rxe-console.log" | tail -n 10 | sed 's/^/    /'
fi
cp "$run/out" "$logdir/rxe-out.log"
for p in "${progs[@]}"; do
	log=$logdir/rxe-$p.log
	tr -d '\r' <"$run/out" | sed -n "/^=== begin $p\$/,/^=== end $p /p" >"$log"
	rc=$(sed -n "s/^=== end $p \([0-9]*\)\$/\1/p" "$log")
	tally "ofi-rxe $p" "$log" "${rc:-124}" "$prog_timeout"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
