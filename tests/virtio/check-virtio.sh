#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/check-virtio.sh [GROUP...] - what `make check-virtio` runs: scif-virtiod and
# scif-virtio-card end to end over the local fabric, with real clients on the card's devices.
# Groups (default: all, in this order), each a script of its own with its own namespaces:
#   console    t-console.sh    a shell on the card's console driven from the host's pty
#   block      t-block.sh      NBD export: qemu-img/qemu-io, nbdfuse + loop: mkfs.ext4, mount,
#                              files with checksums, fio --verify; the image holds the writes
#   net        t-net.sh        TAP on both sides: ping, iperf3 both ways, 64 KiB MTU / TSO,
#                              a file copied with nc and checksummed
#   lifecycle  t-lifecycle.sh  card frontend SIGKILLed and restarted, daemon SIGKILLed and
#                              restarted under traffic, clean shutdown, hostile peers
# Each script's PASS/FAIL lines count; the last line is "N passed, N failed", exit 0 only
# when nothing failed. A group that does not finish within VIRTIO_TIMEOUT seconds (300) is
# killed (its cleanup trap removes its namespaces) and counts as one failure.
set -uo pipefail
: "${top_builddir:?run through make check-virtio}" "${top_srcdir:?run through make check-virtio}"
export top_builddir top_srcdir
VIRTIO_TIMEOUT=${VIRTIO_TIMEOUT:-300}
groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(console block net lifecycle)
passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for g in "${groups[@]}"; do
	script=$top_srcdir/tests/virtio/t-$g.sh
	if [ ! -f "$script" ]; then echo "FAIL: $g: no such check group"; failed=$((failed + 1)); continue; fi
	echo "== $g"
	timeout -s TERM -k 10 "$VIRTIO_TIMEOUT" bash "$script" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	p=$(grep -c '^PASS: ' "$out"); f=$(grep -c '^FAIL: ' "$out")
	passed=$((passed + p)); failed=$((failed + f))
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		echo "FAIL: $g: killed by the watchdog after ${VIRTIO_TIMEOUT} s"; failed=$((failed + 1))
	elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		echo "FAIL: $g: exit status $rc with no failed check"; failed=$((failed + 1))
	elif [ "$p" = 0 ] && [ "$f" = 0 ]; then
		echo "FAIL: $g: ran no check"; failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
