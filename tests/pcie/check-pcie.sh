#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/pcie/check-pcie.sh [PROGRAM...] - what `make check-pcie` runs: the multi-process tests
# across the pcie fabric (SCIF_FABRIC=pcie), with two host processes standing in for the two
# sides of a PCIe window: node 0, the Criterion program's test process, makes the aperture and
# serves it as an ivshmem server (the host, ivshmem peer 0); node 1, the peer it spawns, joins
# as an ivshmem client exactly as QEMU's ivshmem-doorbell device would (the card, ivshmem peer
# 1). No guest is booted: see docs/pcie-fabric.md for what is missing for one.
#
# PROGRAMs (default: all, in this order): test-compat test-mp test-rma-mp test-bulk test-pcie.
# Each runs under `timeout -k 10 $PCIE_TIMEOUT` (600 s), with SCIF_TEST_NODE_EXEC set to
# tests/pcie/node-exec.sh (each node its own SCIF_RUN_DIR) and CRITERION_JOBS=1: the fabric
# attaches one process per node (one host process serves the aperture), so the tests run one
# at a time, each with the aperture of its own host process. Its Criterion results are
# printed, then the last line is "N passed, N failed" (Criterion tests; a program that
# crashed or timed out without its summary counts as one failure). Exit status 0 only when
# nothing failed.
#
# Only tests that can work with one process per node and between two OS instances run; the
# others are excluded by the Criterion --filter patterns below, each with the reason.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute); PCIE_TIMEOUT.
# Logs: $top_builddir/tests/pcie/pcie-<program>.log (Criterion's --verbose output).
set -uo pipefail

: "${top_builddir:?run through make check-pcie}" "${top_srcdir:?run through make check-pcie}"
here=$top_srcdir/tests/pcie
. "$top_srcdir/tests/tally.sh"
progs=("$@")
[ ${#progs[@]} -gt 0 ] || progs=(test-compat test-mp test-rma-mp test-bulk test-pcie)

declare -A path filter
path[test-compat]=tests/compat/test-compat
path[test-mp]=tests/mp/test-mp
path[test-rma-mp]=tests/mp/test-rma-mp
path[test-bulk]=tests/mp/test-bulk
path[test-pcie]=tests/pcie/test-pcie

# compat pairs (host on node 0, card on node 1), all but:
#   fork_*        fork children connect and use endpoints their parent opened: the fabric's
#                 progress thread and queue pair state stay with the parent (a child's
#                 connect is refused, its control messages fail with ECONNRESET).
filter[test-compat]='!(compat/fork_*)'

# test-mp, all but:
#   hostile/*     the lying peer (tests/mp/hostile.c) speaks the local fabric's wire format
#                 (Unix sockets, memfds by SCM_RIGHTS); the pcie fabric needs its own liars
#                 (a peer that corrupts the aperture: not written yet).
#   mp/killed_listener_leaves_no_port_behind
#                 kills the card's process and connects to node 1 again at once: with one
#                 process per node, that process *is* node 1, which goes offline (ENODEV,
#                 not retried by the test) until the next card process attaches.
filter[test-mp]='!(hostile/*|mp/killed_listener_leaves_no_port_behind)'

# test-rma-mp: all of it.
filter[test-rma-mp]='*'

# test-bulk, all but:
#   bulk/echo_from_a_fork_child   a fork child uses its parent's endpoint (see fork_* above).
#   hostile_bulk/*                lies about single-copy offers: the local fabric's format.
#   bulk/nonblocking_sends_1m, bulk/nonblocking_sends_4m, bulk/abandoned_offer_is_not_delivered
#                 single-copy (process_vm_readv between the two sides), which only exists
#                 between processes of one OS: across the window bytes go through the ring.
filter[test-bulk]='!(hostile_bulk/*|bulk/@(echo_from_a_fork_child|nonblocking_sends_1m|nonblocking_sends_4m|abandoned_offer_is_not_delivered))'

# test-pcie: all of it (a full aperture, a card that corrupts it: tests/pcie/pcie-liar).
filter[test-pcie]='pcie/*'

for p in "${progs[@]}"; do
	[ -n "${path[$p]:-}" ] || {
		echo "check-pcie.sh: unknown program $p (test-compat test-mp test-rma-mp test-bulk test-pcie)"
		echo "0 passed, 1 failed"; exit 2; }
done

hard_timeout=${PCIE_TIMEOUT:-600}
logdir=$top_builddir/tests/pcie
mkdir -p "$logdir"
child=
rundir=
cleanup() {
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null
		wait "$child" 2>/dev/null
		child=
	fi
	[ -n "$rundir" ] && rm -rf "$rundir"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

rundir=$(mktemp -d "${TMPDIR:-/tmp}/scif-pcie-XXXXXX") || {
	echo "FAIL: check-pcie: no run directory"; echo "0 passed, 1 failed"; exit 1; }
export SCIF_FABRIC=pcie
export SCIF_PCIE_SOCKET=$rundir/ivshmem.sock
# 1 GiB (sparse): two slices of 512 MiB, room for rma_mp/integrity_256MiB's window. With the
# default 256 MiB that test gets ENOMEM from scif_register, as the spec says it must.
export SCIF_PCIE_SIZE=${SCIF_PCIE_SIZE:-1G}
# The host's attach waits for the card as a host driver waits for its card to boot: the tests
# were written for the local fabric, where node 1 is online from the start.
export SCIF_PCIE_BOOT_MS=${SCIF_PCIE_BOOT_MS:-2000}
export SCIF_TEST_NODE_RUN_BASE=$rundir
export SCIF_RUN_DIR=$rundir/n0
mkdir -p "$SCIF_RUN_DIR"
export SCIF_TEST_NODE_EXEC=$here/node-exec.sh
export SCIF_TEST_PEER=$top_builddir/tests/mp/scif-peer
export SCIF_TEST_TOP=$top_builddir
export SCIF_COMPAT_DIR=$top_builddir/tests/compat
export LD_LIBRARY_PATH=$top_builddir/libscif/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CRITERION_JOBS=1
export SCIF_NODE=0
unset SCIF_NODES_FILE SCIF_PCIE_DEV

echo "check-pcie: SCIF_FABRIC=pcie, aperture $SCIF_PCIE_SIZE served at $SCIF_PCIE_SOCKET"
passed=0
failed=0
for p in "${progs[@]}"; do
	log=$logdir/pcie-$p.log
	echo "== $p (filter ${filter[$p]})"
	timeout -k 10 "$hard_timeout" "$top_builddir/${path[$p]}" --verbose \
		--filter="${filter[$p]}" >"$log" 2>&1 &
	child=$!
	wait "$child"
	rc=$?
	child=
	tally "pcie $p" "$log" "$rc" "$hard_timeout"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
