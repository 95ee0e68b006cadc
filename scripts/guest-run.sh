#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# scripts/guest-run.sh PROGRAM [ARGS...] - run a SCIF program on a card: a QEMU guest (TCG,
# Debian's kernel, kernel/shim loaded) whose ivshmem-doorbell device joins the aperture that a
# host process of the pcie fabric serves. In the guest the program runs as the card's node
# (SCIF_FABRIC=pcie, SCIF_PCIE_DEV=/dev/scif_shim0), with the build's libscif.
#
#   # the host side first: it makes the aperture and serves it
#   SCIF_FABRIC=pcie SCIF_PCIE_SOCKET=/tmp/ivs.sock examples/host &
#   SCIF_PCIE_SOCKET=/tmp/ivs.sock scripts/guest-run.sh examples/card
#
# The first run fetches Debian's kernel and builds the module (kernel/shim/tests/check-kernel.sh
# --prepare, as root it installs QEMU and the rest with apt-get); later runs reuse them.
#
# Environment:
#   SCIF_PCIE_SOCKET    the host process's ivshmem socket (libscif's default:
#                       /tmp/scif-pcie-<euid>.sock); waited for up to SCIF_PCIE_WAIT_MS (5000)
#   SCIF_BUILD_DIR      the configured build tree whose libscif.so goes into the guest (default:
#                       _build/plain of this source tree if it has one, else the tree itself)
#   SCIF_GUEST_TIMEOUT  seconds before the guest is killed (default 300)
#   SCIF_GUEST_SMP      guest CPUs (default 2)
#   SCIF_GUEST_DEVICES  ivshmem-doorbell devices on the aperture (default 1): how many SCIF
#                       processes may attach in the guest at once (one device, one station each)
#   SCIF_GUEST_FILES    more files to copy into the guest, each at its own path
#   SCIF_GUEST_RESET=1  SIGUSR1 to this script resets the guest: a hard reset, as a card's reset
#                       button, through QEMU's monitor (needs nc). QEMU and its device stay, the
#                       guest boots again and runs PROGRAM again; the exit status is that of
#                       its last run. Without it a guest that reboots (or panics) ends QEMU.
#   SCIF_*              every other SCIF_ variable passes into the guest's environment, except
#                       those that only the host side reads (SCIF_PCIE_SIZE, _SHM, _NODES,
#                       _BOOT_MS, _SERVE) or that name host paths (SCIF_RUN_DIR, SCIF_PCIE_SOCKET),
#                       and SCIF_NODE: the host process that serves numbers its cards (the first
#                       guest is node 1, all its processes alike)
#
# The program's stdout and stderr are copied to this script's stdout as the guest prints them
# (through the guest's second serial port). Exit status: the program's own (128+N if signal N
# ended it); 124 when the guest ran out of time; 125 when the program never ran (no guest, no
# device, no host socket). Killing this script, even with SIGKILL, kills its guest at once:
# that is how a test kills a card.
set -u -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "guest-run: $*" >&2; exit 125; }

[ $# -ge 1 ] || die "usage: guest-run.sh PROGRAM [ARGS...]"
prog=$1
shift
case $prog in
*/*) ;;
*) p=$(command -v "$prog") || die "$prog: not found"; prog=$p ;;
esac
[ -f "$prog" ] || die "$prog: no such file"
# A libtool wrapper script stands for the binary in .libs next to it.
if [ "$(head -c 4 "$prog" | od -An -c | tr -d ' ')" != '177ELF' ]; then
	real=$(dirname "$prog")/.libs/$(basename "$prog")
	[ -x "$real" ] || die "$prog: not an ELF program, and no $real beside it"
	prog=$real
fi

if [ -n "${SCIF_BUILD_DIR:-}" ]; then
	build=$SCIF_BUILD_DIR
elif [ -e "$top/_build/plain/config.status" ]; then
	build=$top/_build/plain
else
	build=$top
fi
build=$(cd "$build" && pwd) || die "no build directory $build"
libdir=$build/libscif/.libs
[ -e "$libdir/libscif.so.0" ] || die "no $libdir/libscif.so.0: build the tree first (make)"
kbuild=$build/kernel/shim/build
mkdir -p "$kbuild" || die "cannot make $kbuild"

# Debian's kernel and the module, once (several guest-run.sh at a time share the build dir).
(
	flock 9 || exit 1
	bash "$top/kernel/shim/tests/check-kernel.sh" --prepare "$kbuild" >"$kbuild/prepare.log" 2>&1
) 9>"$kbuild/.prepare.lock" ||
	{ tail -n 20 "$kbuild/prepare.log" >&2; die "the guest kernel or module could not be prepared"; }
# shellcheck disable=SC1091
. "$kbuild/guest.env"

sock=${SCIF_PCIE_SOCKET:-/tmp/scif-pcie-$(id -u).sock}
wait_ms=${SCIF_PCIE_WAIT_MS:-5000}
for ((t = 0; t < wait_ms; t += 50)); do
	[ -S "$sock" ] && break
	sleep 0.05
done
[ -S "$sock" ] || die "no host socket $sock (start the host side first)"

# Run directories of guests whose script was SIGKILLed are left behind: remove them.
for d in "${TMPDIR:-/tmp}"/scif-guest.*; do
	[ -f "$d/owner" ] || continue
	kill -0 "$(cat "$d/owner")" 2>/dev/null || rm -rf "$d"
done
run=$(mktemp -d "${TMPDIR:-/tmp}/scif-guest.XXXXXX") || die "no run directory"
echo $$ >"$run/owner"
qemu_pid=
tail_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null
	[ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the initramfs: busybox, the module, the program and the libraries it loads --------------
ird=$run/root
mkdir -p "$ird"/{bin,lib,prog,proc,sys,dev,tmp} || die "initramfs: mkdir"
cp /bin/busybox "$ird/bin/busybox" && cp "$MODULE" "$ird/scif_shim.ko" &&
	cp "$prog" "$ird/prog/" || die "initramfs: copy"
name=$(basename "$prog")
# ldd names the libraries by where the host resolves them, and the interpreter by the path
# the program asks for: the libraries go to /lib, the interpreter to its own path.
libs=$(LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ldd "$prog") ||
	die "$prog: ldd failed (a static or foreign program?)"
while read -r l; do
	case $l in
	*" => "/*) f=${l#* => }; f=${f%% (*}; cp -L "$f" "$ird/lib/$(basename "$f")" ;;
	/*) f=${l%% (*}; mkdir -p "$ird$(dirname "$f")" && cp -L "$f" "$ird$f" ;;
	*" => not found"*) die "$prog: ${l%% =>*} not found" ;;
	esac || die "initramfs: copy $l"
done <<<"$libs"
for f in ${SCIF_GUEST_FILES:-}; do
	mkdir -p "$ird$(dirname "$f")" && cp -L "$f" "$ird$f" || die "initramfs: copy $f"
done

{
	echo "#!/bin/busybox sh"
	echo "/bin/busybox --install -s /bin"
	echo "export PATH=/bin LD_LIBRARY_PATH=/lib"
	echo "mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev"
	echo "exec >/dev/ttyS0 2>&1"
	cat <<-'EOF'
	st=125
	if insmod /scif_shim.ko; then
		for i in $(seq 100); do [ -e /dev/scif_shim0 ] && break; sleep 0.05; done
		[ -e /dev/scif_shim0 ] || echo "GUEST: no /dev/scif_shim0 (no ivshmem-doorbell device bound)"
	else
		echo "GUEST: insmod scif_shim.ko failed"
	fi
	EOF
	# The caller's SCIF_ variables, but for what only a host reads or what names host paths,
	# and SCIF_NODE (the host numbers its cards).
	while IFS= read -r v; do
		case ${v%%=*} in
		SCIF_PCIE_SOCKET | SCIF_PCIE_SIZE | SCIF_PCIE_SHM | SCIF_PCIE_NODES | SCIF_PCIE_BOOT_MS | \
		SCIF_PCIE_SERVE | SCIF_RUN_DIR | SCIF_BUILD_DIR | SCIF_GUEST_* | SCIF_FABRIC | SCIF_PCIE_DEV | \
		SCIF_NODE) ;;
		*) printf 'export %q\n' "$v" ;;
		esac
	done < <(env | grep -E '^SCIF_[A-Za-z0-9_]*=')
	echo "export SCIF_FABRIC=pcie SCIF_PCIE_DEV=/dev/scif_shim0 SCIF_RUN_DIR=/tmp/scif"
	echo "mkdir -p /tmp/scif"
	printf 'if [ -e /dev/scif_shim0 ]; then cd /tmp; /prog/%q' "$name"
	for a in "$@"; do printf ' %q' "$a"; done
	echo ' </dev/null >/dev/ttyS1 2>&1; st=$?; fi'
	echo 'echo "GUEST-EXIT: $st"'
	echo "poweroff -f"
} >"$ird/init" && chmod 755 "$ird/init" || die "initramfs: init"
(cd "$ird" && find . | cpio -o -H newc --quiet >"$run/initramfs.cpio") || die "initramfs: cpio"
rm -rf "$ird"

# ---- the guest ---------------------------------------------------------------------------------
: >"$run/console"
: >"$run/out"
# A reset through the monitor (SCIF_GUEST_RESET=1) needs QEMU to reboot rather than exit.
if [ "${SCIF_GUEST_RESET:-0}" = 1 ]; then
	machine=(-monitor "unix:$run/monitor,server=on,wait=off")
	reset_guest() {
		printf 'system_reset\n' | timeout 5 nc -N -U "$run/monitor" >/dev/null 2>&1 ||
			echo "guest-run: could not reset the guest" >&2
	}
	trap reset_guest USR1
else
	machine=(-monitor none -no-reboot)
fi
# The card's devices, each its own connection to the host's ivshmem server (its own peer id).
ndev=${SCIF_GUEST_DEVICES:-1}
[[ $ndev =~ ^[1-7]$ ]] || die "SCIF_GUEST_DEVICES=$ndev: 1 to 7 devices"
devices=()
for ((i = 0; i < ndev; i++)); do
	devices+=(-chardev "socket,path=$sock,id=ivs$i" -device "ivshmem-doorbell,chardev=ivs$i,vectors=1")
done
# Each link of the chain dies with its parent (PR_SET_PDEATHSIG): this script, then timeout,
# then QEMU. A SIGKILLed script takes its guest with it.
start_guest() {
	setpriv --pdeathsig KILL -- timeout -k 5 "${SCIF_GUEST_TIMEOUT:-300}" \
		setpriv --pdeathsig KILL -- qemu-system-x86_64 -machine q35 -accel tcg -cpu max \
		-smp "${SCIF_GUEST_SMP:-2}" -m 512M -nodefaults -display none "${machine[@]}" \
		-serial file:"$run/console" -serial file:"$run/out" \
		-kernel "$BOOT_KERNEL" -initrd "$run/initramfs.cpio" \
		-append "console=ttyS0 loglevel=1 panic=-1 rdinit=/init" \
		"${devices[@]}" \
		>"$run/qemu.log" 2>&1 &
	qemu_pid=$!
}
# The program's output is copied as it comes, unbuffered (tail ends by itself once QEMU has,
# after the last lines). A socket left by a host that died is refused until its successor
# listens: QEMU gives up at once, and is started again within the same wait.
t0=$(date +%s%N)
for ((;;)); do
	start_guest
	tail --pid="$qemu_pid" -s 0.05 -n +1 -f "$run/out" 2>/dev/null | sed -u 's/\r$//' &
	tail_pid=$!
	# A trapped SIGUSR1 ends the wait, not QEMU.
	while :; do
		wait "$qemu_pid"
		rc=$?
		[ "$rc" -gt 128 ] && kill -0 "$qemu_pid" 2>/dev/null || break
	done
	qemu_pid=
	wait "$tail_pid" 2>/dev/null
	tail_pid=
	[ "$rc" = 1 ] && grep -q "Failed to connect" "$run/qemu.log" &&
		(( ($(date +%s%N) - t0) / 1000000 < wait_ms )) || break
	sleep 0.1
done

st=$(tr -d '\r' <"$run/console" | sed -n 's/^GUEST-EXIT: \([0-9]*\)$/\1/p' | tail -n 1)
if [ -n "$st" ]; then
	[ "$st" = 125 ] && tr -d '\r' <"$run/console" | grep '^GUEST: ' >&2
	exit "$st"
fi
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "guest-run: the guest ran out of time (${SCIF_GUEST_TIMEOUT:-300} s)" >&2
	exit 124
fi
echo "guest-run: the guest ended (QEMU status $rc) before the program did" >&2
tail -n 5 "$run/qemu.log" >&2
tr -d '\r' <"$run/console" | tail -n 20 >&2
exit 125
