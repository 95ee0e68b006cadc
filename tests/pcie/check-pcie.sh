#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/pcie/check-pcie.sh [PROGRAM...] - what `make check-pcie` runs: the multi-process tests
# across the pcie fabric (SCIF_FABRIC=pcie), with two host processes standing in for the two
# sides of a PCIe window: node 0, the Criterion program's test process, makes the aperture and
# serves it as an ivshmem server (the host, ivshmem peer 0); node 1, the peer it spawns, joins
# as an ivshmem client exactly as QEMU's ivshmem-doorbell device would (the card, ivshmem peer
# 1).
#
# Then the guest pass: the same programs again, with every card peer (node 1) in a QEMU guest
# of its own (tests/pcie/guest-exec.sh, scripts/guest-run.sh: Debian's kernel under TCG,
# kernel/shim loaded, the card on the shim's ivshmem-doorbell device) and node 0 on the host.
# A guest boots in about 5 s, so the guest pass runs the tests that say something new across
# a real guest (filters "gfilter" below); the host pass runs them all. PCIE_GUEST=0 leaves the
# guest pass out (it then says so and fails nothing: for machines without QEMU; the README's
# test command always runs it).
#
# PROGRAMs (default: all, in this order): test-compat test-mp test-rma-mp test-bulk test-pcie,
# and examples (the example pairs examples/host + card and rma_host + rma_card, unchanged).
# Each runs under `timeout -k 10 $PCIE_TIMEOUT` (600 s), with SCIF_TEST_NODE_EXEC set to
# tests/pcie/node-exec.sh (each node its own SCIF_RUN_DIR) and CRITERION_JOBS=1: the tests run
# one at a time, each with the aperture its own test process serves (the hub, station 0). Its Criterion results are
# printed, then the last line is "N passed, N failed" (Criterion tests; a program that
# crashed or timed out without its summary counts as one failure). Exit status 0 only when
# nothing failed.
#
# Only tests that can work between two OS instances run; the others are excluded by the
# Criterion --filter patterns below, each with the reason.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute); PCIE_TIMEOUT.
# Logs: $top_builddir/tests/pcie/pcie-<program>.log and guest-<program>.log (Criterion's --verbose
# output of each pass).
set -uo pipefail

: "${top_builddir:?run through make check-pcie}" "${top_srcdir:?run through make check-pcie}"
here=$top_srcdir/tests/pcie
. "$top_srcdir/tests/tally.sh"
progs=("$@")
all=0
[ ${#progs[@]} -gt 0 ] || { progs=(test-compat test-mp test-rma-mp test-bulk test-pcie examples); all=1; }

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

# test-pcie, with a full aperture and a card that corrupts it (tests/pcie/pcie-liar), all but
# the tests of a card in a guest: reset, and a second process refused (on the host, a second
# ivshmem client is another card).
filter[test-pcie]='!(pcie/@(card_reset_connects_again|second_card_process_in_a_guest_is_refused))'

# The guest pass: the card in a guest, booted for each peer and killed with it.
declare -A gfilter
# compat pairs: as in the host pass, in one start order: a guest takes about 5 s to boot, so
# its card program starts well after the host's whichever is spawned first (the host waits
# for the card, SCIF_PCIE_BOOT_MS below), and the two orders ran the same thing. The host
# pass runs both.
gfilter[test-compat]='compat/@(errno|ring|fence|multi|mixsync|regrace)_host_first'
# test-mp: echo; 16 connections moving 256 MiB in all, checksummed; the guest SIGKILLed at
# random points of the handshake and of a transfer (6 times); a blocked recv when the guest
# dies. The amounts are a quarter of the host pass's (SCIF_TEST_SCALE_PCT=25 below): every
# guest boots under TCG for about 5 s, and the host pass has done the full amounts.
gfilter[test-mp]='mp/@(echo_between_node0_and_node1|stress_16_connections_1GiB_both_directions|sigkill_peer_at_random_points|blocked_recv_returns_econnreset_when_peer_killed)'
# test-rma-mp: integrity, scif_mmap ping-pong, fence ordering, the guest killed during async
# RMA, a window that survives its owner's fork.
gfilter[test-rma-mp]='rma_mp/@(integrity_1MiB|integrity_16MiB|mmap_ping_pong_across_processes|signal_never_before_the_data|peer_killed_during_async_rma|window_survives_owner_fork)'
# test-bulk: echoes that go through the ring across the window, non-blocking sends, a sender
# killed with a send pending.
gfilter[test-bulk]='bulk/@(echo_split_between_both_sides|nonblocking_sends_64k|nonblocking_offer_sender_killed)'
# test-pcie: the host's process killed under a card in a guest (its heartbeat tells), a second
# host process killed under it (the hub tells), a card process killed in a guest that lives on
# (the shim's last will tells; its heartbeat when a fork keeps the device), then the next one
# on that device, and the card reset (its guest reboots) under a connection; a second card
# process in a guest with one device refused, three processes in a guest with three devices
# served, one of two killed beside the other, one guest serving two host processes in turn
# under the hub daemon; and a card that corrupts the aperture from its guest (the liar maps BAR2 a second
# time).
gfilter[test-pcie]='pcie/@(host_killed_resets_the_card|second_host_process_killed_resets_the_card|card_process_killed_*|card_reset_connects_again|second_card_process_in_a_guest_is_refused|three_processes_in_one_card|hub_daemon_outlives_host_processes|card_process_killed_beside_another|*_costs_the_links_not_the_host)'

for p in "${progs[@]}"; do
	[ -n "${path[$p]:-}" ] || [ "$p" = examples ] || {
		echo "check-pcie.sh: unknown program $p (test-compat test-mp test-rma-mp test-bulk" \
			"test-pcie examples)"
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

# verdict OK LOG WHAT...: one result of this script's own (not a Criterion program's), tallied;
# a failure shows the end of LOG.
verdict() {
	local ok=$1 log=$2
	shift 2
	if [ "$ok" = 1 ]; then
		echo "PASS: $*"
		passed=$((passed + 1))
	else
		tail -n 20 "$log"
		echo "FAIL: $* (log: $log)"
		failed=$((failed + 1))
	fi
}

# example_pair LABEL HOST CARD: the example pair (examples/HOST, examples/CARD), unchanged,
# across the window: HOST serves node 0 on an aperture of its own; CARD is node 1, an ivshmem
# client process (LABEL pcie) or a program in a QEMU guest (LABEL guest). Both must exit 0.
example_pair() {
	local label=$1 host=$2 card=$3 log sock hs cs h
	log=$logdir/$label-example-$host.log
	sock=$rundir/example-$host.sock
	echo "== examples/$host + examples/$card, $label"
	mkdir -p "$rundir/ex0" "$rundir/ex1"
	SCIF_PCIE_SOCKET=$sock SCIF_PCIE_BOOT_MS=0 SCIF_RUN_DIR=$rundir/ex0 \
		timeout -k 5 300 "$top_builddir/examples/$host" >"$log" 2>&1 &
	h=$!
	if [ "$label" = guest ]; then
		SCIF_PCIE_SOCKET=$sock timeout -k 5 300 bash "$top_srcdir/scripts/guest-run.sh" \
			"$top_builddir/examples/$card" >>"$log" 2>&1
	else
		SCIF_PCIE_SOCKET=$sock SCIF_NODE=1 SCIF_RUN_DIR=$rundir/ex1 \
			timeout -k 5 60 "$top_builddir/examples/$card" >>"$log" 2>&1
	fi
	cs=$?
	wait "$h"
	hs=$?
	verdict "$([ "$hs" = 0 ] && [ "$cs" = 0 ] && echo 1)" "$log" \
		"$label example $host + $card: host status $hs, card status $cs"
}

# run_prog PROGRAM FILTER LABEL: one Criterion program, tallied (examples: the example pairs).
run_prog() {
	local p=$1 f=$2 label=$3 log rc
	if [ "$p" = examples ]; then
		example_pair "$label" host card
		example_pair "$label" rma_host rma_card
		return
	fi
	log=$logdir/$label-$p.log
	echo "== $p, $label (filter $f)"
	timeout -k 10 "$hard_timeout" "$top_builddir/${path[$p]}" --verbose \
		--filter="$f" >"$log" 2>&1 &
	child=$!
	wait "$child"
	rc=$?
	child=
	tally "$label $p" "$log" "$rc" "$hard_timeout"
}

echo "check-pcie: SCIF_FABRIC=pcie, aperture $SCIF_PCIE_SIZE served at $SCIF_PCIE_SOCKET"
passed=0
failed=0
for p in "${progs[@]}"; do
	run_prog "$p" "${filter[$p]:-}" pcie
done

# guest_bench: scif_bench's round trip and bandwidth from a card in a guest to the host, and in
# the same run the raw round trip through an aperture (tests/pcie/pcie-pingpong: one word
# bounced, no SCIF): under TCG the figures say little by themselves, their ratio says what
# libscif adds. It passes when every figure was measured (speed is shown, never asserted).
guest_bench() {
	local log=$logdir/guest-bench.log b=$top_builddir/tools/scif_bench/scif_bench
	local pp=$top_builddir/tests/pcie/pcie-pingpong srv raw lat8 bw64 bw1m mm8
	: >"$log"
	echo "== scif_bench across the window, beside a raw aperture ping-pong"
	timeout -k 5 300 "$pp" host "$rundir/raw.sock" 20000 >>"$log" 2>&1 &
	srv=$!
	SCIF_PCIE_SOCKET=$rundir/raw.sock timeout -k 5 300 bash "$top_srcdir/scripts/guest-run.sh" \
		"$pp" card 20000 >>"$log" 2>&1
	wait "$srv"
	SCIF_PCIE_SOCKET=$rundir/bench.sock SCIF_PCIE_BOOT_MS=0 \
		timeout -k 5 400 "$b" --server --port 3999 --no-pin >>"$log" 2>&1 &
	srv=$!
	SCIF_PCIE_SOCKET=$rundir/bench.sock timeout -k 5 400 bash \
		"$top_srcdir/scripts/guest-run.sh" "$b" --client --node 0 --port 3999 --no-pin \
		--tests lat,mmap-lat,bw --sizes 8,64K,1M --time 0.5 --csv - >>"$log" 2>&1
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	raw=$(sed -n 's/^raw aperture round trip: \([0-9.]*\) us.*/\1/p' "$log")
	field() { awk -F, -v t="$1" -v z="$2" '$1 == t && $2 == z { print $4; exit }' "$log"; }
	lat8=$(field lat 8)
	mm8=$(field mmap-lat 8)
	bw64=$(field bw 65536)
	bw1m=$(field bw 1048576)
	if [ -n "$raw" ] && [ -n "$lat8" ] && [ -n "$mm8" ] && [ -n "$bw64" ] && [ -n "$bw1m" ]; then
		echo "guest bench (TCG): raw aperture round trip $raw us; SCIF 8 B round trip $lat8 us" \
			"($(awk -v a="$lat8" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')x raw)," \
			"scif_mmap 8 B round trip $mm8 us" \
			"($(awk -v a="$mm8" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')x raw);" \
			"send/recv 64 KiB $bw64 GB/s, 1 MiB $bw1m GB/s"
		verdict 1 "$log" "guest bench: every figure measured"
	else
		verdict 0 "$log" "guest bench: figures missing"
	fi
}

if [ "${PCIE_GUEST:-1}" = 0 ]; then
	echo "check-pcie: PCIE_GUEST=0: the guest pass is left out"
else
	echo "check-pcie: the guest pass: every card peer in a QEMU guest (scripts/guest-run.sh)"
	export SCIF_TEST_NODE_EXEC=$here/guest-exec.sh SCIF_BUILD_DIR=$top_builddir
	# A peer is a guest to boot first; a killed test leaves no guest behind (guest-exec.sh).
	export SCIF_TEST_SPAWN_MS=60000 SCIF_GUEST_TIMEOUT=${SCIF_GUEST_TIMEOUT:-600}
	# Stress tests do a quarter of their work (tests/common.h, test_scaled()).
	export SCIF_TEST_SCALE_PCT=${SCIF_TEST_SCALE_PCT:-25}
	for p in "${progs[@]}"; do
		[ -n "${gfilter[$p]:-}" ] || [ "$p" = examples ] || continue
		# The compat hosts check at once that their card is online: wait for its boot.
		# Elsewhere the host attaches before it spawns its card: waiting would only delay.
		if [ "$p" = test-compat ]; then
			SCIF_PCIE_BOOT_MS=60000 run_prog "$p" "${gfilter[$p]:-}" guest
		else
			SCIF_PCIE_BOOT_MS=0 run_prog "$p" "${gfilter[$p]:-}" guest
		fi
	done
	[ "$all" = 1 ] && guest_bench	# with everything only: PCIE_CHECKS picks programs
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
