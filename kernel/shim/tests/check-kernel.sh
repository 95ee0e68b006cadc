#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# check-kernel: build scif_shim against Debian 12's kernel (fetched with apt-get, unpacked in the
# build dir), boot that kernel under QEMU TCG with an ivshmem-doorbell device, run the tests.
#
# usage: check-kernel.sh [BUILD_DIR]      (default: kernel/shim/build)
#        check-kernel.sh --prepare [BUILD_DIR]
#                 only the dependencies, Debian's kernel and the module, for booting guests of
#                 one's own (scripts/guest-run.sh): progress on stderr, then BUILD_DIR/guest.env
#                 (BOOT_KERNEL, MODULE, KVER as shell assignments); exit status 0 when ready
# env:   SCIF_SHIM_KVER=6.1.0-NN  pin the kernel ABI instead of asking linux-image-amd64
#        SCIF_SHIM_TIMEOUT=SECS   bound on the guest run (default 150)
#        SCIF_SHIM_SMP=N          guest CPUs (default 2: remove() races the other entry points
#                                 on a second CPU)
#        SCIF_SHIM_APPEND="..."   extra guest kernel arguments
#        SCIF_SHIM_APT_SOURCE="deb http://deb.debian.org/debian bookworm-backports main"
#                                 fetch the kernel from that source only (private apt state in
#                                 the build dir), e.g. to test a newer kernel (backports: 6.12)
# Prints PASS:/FAIL: lines, the doorbell round-trip time, and "N passed, N failed" last.
set -u -o pipefail

PREPARE=no
if [ "${1:-}" = --prepare ]; then
	PREPARE=yes
	shift
	exec 1>&2		# nothing but guest.env is the result: progress to stderr
fi
SHIM=$(cd "$(dirname "$0")/.." && pwd)		# kernel/shim
TOP=$(cd "$SHIM/../.." && pwd)
BUILD=${1:-$SHIM/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd) || exit 1
TIMEOUT=${SCIF_SHIM_TIMEOUT:-150}
START=$(date +%s)

# Packages this script needs on a Debian 12 machine (CI installs them through here).
DEPS="qemu-system-x86 busybox-static cpio xz-utils zstd kmod gcc gcc-12 make libc6-dev libelf1
      libelf-dev libssl3 bc flex bison"

PASSED=0
FAILED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
note() { echo "check-kernel: $*"; }
finish() {
	[ $PREPARE = yes ] && exit 1	# only a fatal step ends a preparation early
	note "done in $(($(date +%s) - START)) s (build dir $BUILD)"
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	exit
}
# A step the rest depends on failed: say which, then stop.
fatal() { fail "$*"; finish; }

RUN=""
HOST_PID=""
QEMU_PID=""
cleanup() {
	[ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
	[ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null
	[ -n "$RUN" ] && rm -rf "$RUN"
}
trap cleanup EXIT

# ---- 1. dependencies -------------------------------------------------------------------------
apt_updated=no
apt_update() {
	[ $apt_updated = yes ] && return 0
	apt_updated=yes
	note "apt-get update"
	apt-get -o DPkg::Lock::Timeout=300 update -qq >"$BUILD/apt-update.log" 2>&1
}

missing=""
for p in $DEPS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || fatal "dependencies: missing$missing (run as root or install them)"
	apt_update
	note "installing$missing"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
		--no-install-recommends $missing >"$BUILD/apt-install.log" 2>&1 ||
		fatal "dependencies: apt-get install$missing failed (see $BUILD/apt-install.log)"
fi

# ---- 2. Debian's kernel: image, headers, kbuild, cached in the build dir ---------------------
# The kernel packages come from the system's apt sources, or from SCIF_SHIM_APT_SOURCE alone
# through a private apt state that leaves the system's untouched.
APT_OPTS=(-o APT::Sandbox::User=root)
if [ -n "${SCIF_SHIM_APT_SOURCE:-}" ]; then
	A=$BUILD/apt
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
	echo "$SCIF_SHIM_APT_SOURCE" >"$A/sources.list"
	APT_OPTS+=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
		   -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache")
fi
kapt_update() {
	if [ -n "${SCIF_SHIM_APT_SOURCE:-}" ]; then
		[ -e "$BUILD/apt/.updated" ] && return 0
		note "apt-get update ($SCIF_SHIM_APT_SOURCE)"
		apt-get "${APT_OPTS[@]}" update -qq >"$BUILD/apt-update.log" 2>&1 &&
			touch "$BUILD/apt/.updated"
	else
		[ "$(id -u)" = 0 ] && apt_update
	fi
}
KVER=${SCIF_SHIM_KVER:-}
if [ -z "$KVER" ]; then
	kver_from_apt() {
		apt-cache "${APT_OPTS[@]}" depends linux-image-amd64 2>/dev/null |
			sed -n 's/.*Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n1
	}
	KVER=$(kver_from_apt)
	if [ -z "$KVER" ]; then
		kapt_update
		KVER=$(kver_from_apt)
	fi
	# offline re-run: use what an earlier run fetched
	[ -z "$KVER" ] && KVER=$(ls -d "$BUILD"/kernel-*/ 2>/dev/null | tail -n1 |
				 sed 's|.*/kernel-\(.*\)/$|\1|')
fi
[ -n "$KVER" ] || fatal "kernel: cannot tell linux-image-amd64's version (apt-cache depends)"
KDIR_ROOT=$BUILD/kernel-$KVER
KDEBS=$KDIR_ROOT/debs
mkdir -p "$KDEBS"

have_deb() { compgen -G "$KDEBS/$1_*.deb" >/dev/null; }	# $1 may hold a glob
if ! have_deb "linux-kbuild-*"; then
	kbuild_from_apt() {
		apt-cache "${APT_OPTS[@]}" depends "linux-headers-$KVER-amd64" 2>/dev/null |
			sed -n 's/.*Depends: \(linux-kbuild-[^ ]*\)$/\1/p' | head -n1
	}
	KBUILD_PKG=$(kbuild_from_apt)
	if [ -z "$KBUILD_PKG" ]; then
		kapt_update
		KBUILD_PKG=$(kbuild_from_apt)
	fi
	[ -n "$KBUILD_PKG" ] || fatal "kernel: cannot find the kbuild package of linux-headers-$KVER-amd64"
else
	KBUILD_PKG=""
fi
want=""
for p in "linux-image-$KVER-amd64" "linux-headers-$KVER-amd64" "linux-headers-$KVER-common" \
	 $KBUILD_PKG; do
	have_deb "$p" || want="$want $p"
done
if [ -n "$want" ]; then
	note "downloading$want"
	# stale package lists name versions the mirror dropped: refresh them once and retry
	kdownload() { (cd "$KDEBS" && apt-get "${APT_OPTS[@]}" download $want) >>"$KDIR_ROOT/download.log" 2>&1; }
	kdownload || { kapt_update && kdownload; } ||
		fatal "kernel: apt-get download$want failed (see $KDIR_ROOT/download.log)"
fi

ROOT=$KDIR_ROOT/root
KDIR=$ROOT/usr/src/linux-headers-$KVER-amd64
if [ ! -e "$KDIR_ROOT/.unpacked" ]; then
	note "unpacking kernel $KVER"
	rm -rf "$ROOT"
	mkdir -p "$ROOT"
	for d in "$KDEBS"/linux-headers-*.deb "$KDEBS"/linux-kbuild-*.deb; do
		dpkg-deb -x "$d" "$ROOT" || fatal "kernel: dpkg-deb -x $d"
	done
	# only the bzImage from the image package, not its hundreds of MB of modules
	dpkg-deb --fsys-tarfile "$KDEBS"/linux-image-"$KVER"-amd64_*.deb |
		tar -x -C "$ROOT" "./boot/vmlinuz-$KVER-amd64" ||
		fatal "kernel: no vmlinuz in linux-image-$KVER-amd64"
	# The arch headers include the common ones by absolute path (/usr/src/...): point them at
	# our copy instead of the system's.
	sed -i "s|/usr/src/linux-headers-$KVER-common|$ROOT/usr/src/linux-headers-$KVER-common|" \
		"$KDIR/Makefile" || fatal "kernel: headers Makefile"
	touch "$KDIR_ROOT/.unpacked"
fi
BZIMAGE=$ROOT/boot/vmlinuz-$KVER-amd64

# The uncompressed vmlinux boots straight into its PVH entry, skipping the decompressor (much
# faster under TCG). Find the payload through the x86 boot header: setup_sects at 0x1f1,
# payload_offset/length at 0x248/0x24c (boot protocol >= 2.08), minus the 4-byte size trailer.
VMLINUX=$KDIR_ROOT/vmlinux
extract_vmlinux() {
	local rd setup off len magic dec
	rd() { od -An -t u"$2" -j "$1" -N "$2" "$BZIMAGE" | tr -d ' '; }
	setup=$(rd $((0x1f1)) 1)
	off=$(( (setup + 1) * 512 + $(rd $((0x248)) 4) ))
	len=$(rd $((0x24c)) 4)
	[ "$len" -gt 4 ] || return 1
	magic=$(od -An -t x1 -j "$off" -N 4 "$BZIMAGE" | tr -d ' ')
	case $magic in
	fd377a58) dec="xz -dc" ;;
	1f8b*) dec="gzip -dc" ;;
	28b52ffd) dec="zstd -dcq" ;;
	02214c18) dec="lz4 -dc" ;;
	5d00*) dec="xz -dc --format=lzma" ;;
	425a68*) dec="bzip2 -dc" ;;
	*) return 1 ;;
	esac
	dd if="$BZIMAGE" iflag=skip_bytes,count_bytes skip="$off" count=$((len - 4)) status=none |
		$dec >"$VMLINUX.tmp" 2>/dev/null &&
		od -An -c -N 4 "$VMLINUX.tmp" | grep -q 'E   L   F' && mv "$VMLINUX.tmp" "$VMLINUX"
}
if [ ! -s "$VMLINUX" ] && ! extract_vmlinux; then
	rm -f "$VMLINUX.tmp"
	note "could not extract vmlinux; booting the bzImage"
fi
BOOT_KERNEL=$BZIMAGE
[ -s "$VMLINUX" ] && BOOT_KERNEL=$VMLINUX

# ---- 3. build: module, host programs, guest programs ----------------------------------------
MOD=$BUILD/module
mkdir -p "$MOD/uapi" "$BUILD/bin"
# Kbuild builds in its source dir: build a copy, so the source tree stays clean (cp -p keeps
# mtimes, so an unchanged file is not rebuilt).
cp -p "$SHIM"/Kbuild "$SHIM"/*.c "$SHIM"/*.h "$MOD"/ && cp -p "$SHIM"/uapi/*.h "$MOD"/uapi/ ||
	fatal "module: copy sources"
# No BTF for the module: it needs pahole and only serves BPF tooling.
if make -C "$KDIR" M="$MOD" W=1 CONFIG_DEBUG_INFO_BTF_MODULES= modules \
	>"$BUILD/module-build.log" 2>&1; then
	if grep -E "warning:|error:" "$BUILD/module-build.log"; then
		fail "module_build: warnings against $KVER (see $BUILD/module-build.log)"
	else
		pass "module_build: scif_shim.ko for $KVER, no warnings (W=1)"
	fi
else
	tail -n 30 "$BUILD/module-build.log"
	fatal "module_build: against $KVER"
fi

if [ $PREPARE = yes ]; then
	printf 'KVER=%q\nBOOT_KERNEL=%q\nMODULE=%q\n' "$KVER" "$BOOT_KERNEL" "$MOD/scif_shim.ko" \
		>"$BUILD/guest.env.tmp" && mv "$BUILD/guest.env.tmp" "$BUILD/guest.env" || exit 1
	exit 0
fi

if [ -x "$KDIR/scripts/checkpatch.pl" ]; then
	if "$KDIR/scripts/checkpatch.pl" --no-tree -q -f "$SHIM"/*.c "$SHIM"/*.h "$SHIM"/uapi/*.h; then
		pass "checkpatch"
	else
		fail "checkpatch"
	fi
else
	note "checkpatch.pl is not in Debian's headers package: skipped"
fi

CFLAGS="-std=c11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
build_c() {	# name, extra flags/sources...
	local out=$1
	shift
	# shellcheck disable=SC2086
	gcc $CFLAGS -o "$BUILD/bin/$out" "$@" >>"$BUILD/programs-build.log" 2>&1
}
: >"$BUILD/programs-build.log"
SRV_SRC=$TOP/libscif/fabric/ivshm_server.c
# The server library runs under ASan+UBSan in both host-side tests: a memory error in it fails
# them (the static guest test cannot use the sanitizers).
SAN="-g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if build_c scif_ivshmem_server -I"$TOP/libscif" "$TOP/tools/scif_ivshmem_server.c" "$SRV_SRC" &&
   build_c ivshm_server_test $SAN -I"$TOP/libscif" "$SHIM/tests/ivshm_server_test.c" "$SRV_SRC" &&
   build_c shim_host_peer $SAN -I"$TOP/libscif" "$SHIM/tests/shim_host_peer.c" "$SRV_SRC" &&
   build_c shim_guest_test -static "$SHIM/tests/shim_guest_test.c"; then
	pass "programs_build: server library, CLI, host peer (ASan+UBSan), static guest test"
else
	cat "$BUILD/programs-build.log"
	fatal "programs_build"
fi

# The uapi header must be usable with nothing but linux/types.h and linux/ioctl.h.
if echo '#include "scif_shim.h"' | gcc -std=c99 -Wall -Werror -x c -fsyntax-only \
	-I"$SHIM/uapi" - 2>>"$BUILD/programs-build.log"; then
	pass "uapi_header_standalone"
else
	fail "uapi_header_standalone"
fi

# ---- 4. host-only: the ivshmem server against fake QEMU clients -----------------------------
timeout -k 5 60 "$BUILD/bin/ivshm_server_test" >"$BUILD/ivshm_server_test.log" 2>&1
srv_rc=$?
while read -r line; do
	case $line in
	PASS:*) pass "${line#PASS: }" ;;
	FAIL:*) fail "${line#FAIL: }" ;;
	esac
done <"$BUILD/ivshm_server_test.log"
if [ "$srv_rc" -ne 0 ] && ! grep -q '^FAIL: ' "$BUILD/ivshm_server_test.log"; then
	tail -n 30 "$BUILD/ivshm_server_test.log"
	fail "ivshm_server_test_exit: exited with status $srv_rc"
fi

# ---- 5. initramfs ----------------------------------------------------------------------------
IRD=$BUILD/initramfs
rm -rf "$IRD"
mkdir -p "$IRD/bin" "$IRD/proc" "$IRD/sys" "$IRD/dev" "$IRD/tmp"
cp /bin/busybox "$IRD/bin/busybox" && cp "$SHIM/tests/guest-init.sh" "$IRD/init" &&
	cp "$MOD/scif_shim.ko" "$BUILD/bin/shim_guest_test" "$IRD/" && chmod 755 "$IRD/init" ||
	fatal "initramfs: copy"
file_busybox=$(od -An -c -N 4 "$IRD/bin/busybox" | tr -d ' ')
[ "$file_busybox" = '177ELF' ] || fatal "initramfs: /bin/busybox is not a binary"
(cd "$IRD" && find . | cpio -o -H newc --quiet >"$BUILD/initramfs.cpio") || fatal "initramfs: cpio"

# ---- 6. boot ---------------------------------------------------------------------------------
RUN=$(mktemp -d /tmp/scif-shim-check.XXXXXX)	# short path: UNIX socket names are limited
SOCK=$RUN/ivshmem.sock
GUEST_LOG=$BUILD/guest.log
HOST_LOG=$BUILD/host.log
rm -f "$GUEST_LOG" "$HOST_LOG"

timeout -k 5 $((TIMEOUT + 10)) "$BUILD/bin/shim_host_peer" "$SOCK" $((TIMEOUT + 5)) \
	>"$HOST_LOG" 2>&1 &
HOST_PID=$!
for _ in $(seq 100); do
	[ -S "$SOCK" ] && break
	sleep 0.05
done
[ -S "$SOCK" ] || { cat "$HOST_LOG"; fatal "host_peer: server socket never appeared"; }

# SLUB debugging and page poisoning: a use-after-free or overflow of the shim's objects, or a
# write into DMA pages after they were freed, becomes a "BUG" or corruption report that
# dmesg_clean fails on, instead of silent corruption.
KARGS="slub_debug=FZPU page_poison=1"
note "booting $(basename "$BOOT_KERNEL") under QEMU TCG (timeout ${TIMEOUT}s)"
boot_start=$(date +%s)
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -machine q35 -accel tcg -cpu max \
	-smp "${SCIF_SHIM_SMP:-2}" -m 256M \
	-nodefaults -display none -no-reboot -monitor none \
	-serial file:"$GUEST_LOG" \
	-kernel "$BOOT_KERNEL" -initrd "$BUILD/initramfs.cpio" \
	-append "console=ttyS0 loglevel=1 panic=-1 rdinit=/init $KARGS ${SCIF_SHIM_APPEND:-}" \
	-chardev socket,path="$SOCK",id=ivs \
	-device ivshmem-doorbell,chardev=ivs,vectors=4 \
	-device pci-testdev \
	>"$BUILD/qemu.log" 2>&1 &
QEMU_PID=$!
wait "$QEMU_PID"
qemu_rc=$?
QEMU_PID=""
wait "$HOST_PID"
host_rc=$?
HOST_PID=""
note "guest ran $(($(date +%s) - boot_start)) s"

if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
	fail "guest_run: QEMU timed out after ${TIMEOUT}s"
elif [ "$qemu_rc" -ne 0 ]; then
	cat "$BUILD/qemu.log"
	fail "guest_run: QEMU exited with $qemu_rc"
fi

# ---- 7. results -------------------------------------------------------------------------------
# Echo a log's own lines and count its PASS/FAIL lines, in the order they came.
collect() {	# log, regex of lines to echo as they are
	local line
	while IFS= read -r line; do
		case $line in
		PASS:\ *) pass "${line#PASS: }" ;;
		FAIL:\ *) fail "${line#FAIL: }" ;;
		*) [[ $line =~ $2 ]] && echo "$line" ;;
		esac
	done <"$1"
}
tr -d '\r' <"$GUEST_LOG" >"$GUEST_LOG.txt" 2>/dev/null
echo "--- guest (QEMU serial console) ---"
collect "$GUEST_LOG.txt" '^(GUEST|RTT|dmesg)'
grep -q '^GUEST-END' "$GUEST_LOG.txt" || {
	tail -n 40 "$GUEST_LOG.txt"
	fail "guest_completed: the guest test did not finish (see $GUEST_LOG.txt)"
}
echo "--- host (ivshmem server, peer 0) ---"
collect "$HOST_LOG" '^(RTT|[a-z].*: )'
# a non-zero exit without a FAIL line of its own: a sanitizer report or a crash
if [ "$host_rc" -ne 0 ] && ! grep -q '^FAIL: ' "$HOST_LOG"; then
	grep -A20 -E 'Sanitizer|runtime error' "$HOST_LOG"
	fail "host_peer_exit: exited with status $host_rc (see $HOST_LOG)"
fi

echo "--- summary ---"
grep -h '^RTT' "$HOST_LOG" | sed 's/^RTT: /doorbell round trip: /'
finish
