#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/check-ofi.sh [--fabric local|ofi] [PROGRAM...] - what `make check-ofi` runs: the
# multi-process tests with every SCIF node a host of its own, a network namespace made by
# tests/ofi/netns.sh (node 0: the Criterion program; node 1: the peers it spawns).
#
# PROGRAMs (default: all four, in this order): test-compat test-mp test-rma-mp test-bulk.
# Each runs in node 0's namespace under `timeout -k 10 600`, with SCIF_TEST_NODE_EXEC set to
# tests/ofi/node-exec.sh, so that the tests' spawners start each peer in the namespace of the
# node in its SCIF_NODE; its Criterion results are printed, then the last line is
# "N passed, N failed" (Criterion tests; a program that crashed or timed out without its
# summary counts as one failure). The exit status is 0 only when nothing failed.
#
#   --fabric local  (default) the library's default fabric. It joins the namespaces through
#                   Unix sockets in the shared SCIF_RUN_DIR, so this must pass today: it
#                   proves the harness.
#   --fabric ofi    SCIF_FABRIC=ofi, SCIF_NODES_FILE=<the run's cluster file>,
#                   FI_PROVIDER=<--provider: sockets (default) or tcp, i.e. tcp;ofi_rxm>,
#                   and each node a SCIF_RUN_DIR of its own (node-exec.sh): the nodes share
#                   no directory, so they can only meet through their addresses; a library
#                   that ignored SCIF_FABRIC and used the local fabric would fail, not pass.
#
# Only tests that can work between hosts run; the others are excluded by Criterion --filter
# patterns below, each with the reason. Everything the script makes (namespaces, the SCIF run
# directory) is removed on every exit, also on failure, SIGINT and SIGTERM.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute); OFI_TIMEOUT
# (600: each program's hard limit, seconds); OFI_FILTER (a Criterion --filter pattern that
# replaces every program's own, to run one test while working on it). Needs root.
# Logs: $top_builddir/tests/ofi/<fabric>-<program>.log (Criterion's --verbose output).
set -uo pipefail

: "${top_builddir:?run through make check-ofi}" "${top_srcdir:?run through make check-ofi}"
here=$top_srcdir/tests/ofi
. "$top_srcdir/tests/tally.sh"
fabric=local
provider=sockets
progs=()
while [ $# -gt 0 ]; do
	case $1 in
	--fabric) fabric=${2:-}; shift 2 || break ;;
	--fabric=*) fabric=${1#--fabric=}; shift ;;
	--provider) provider=${2:-}; shift 2 || break ;;
	--provider=*) provider=${1#--provider=}; shift ;;
	-*) echo "check-ofi.sh: unknown option $1"; echo "0 passed, 1 failed"; exit 2 ;;
	*) progs+=("$1"); shift ;;
	esac
done
case $fabric in local | ofi) ;; *)
	echo "check-ofi.sh: --fabric must be local or ofi, not '$fabric'"; echo "0 passed, 1 failed"; exit 2 ;;
esac
[ ${#progs[@]} -gt 0 ] || progs=(test-compat test-mp test-rma-mp test-bulk)
[ "$fabric" = ofi ] && [ "$progs" = test-compat ] && [ ${#progs[@]} = 4 ] && progs+=(test-ofi)

# ---------------------------------------------------------------------------------------
# What runs across nodes, and why the rest does not: tests/ofi/programs.sh.
. "$here/programs.sh"

for p in "${progs[@]}"; do
	[ -n "${path[$p]:-}" ] || {
		echo "check-ofi.sh: unknown program $p (test-compat test-mp test-rma-mp test-bulk)"
		echo "0 passed, 1 failed"; exit 2; }
done

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: check-ofi: needs root (network namespaces)"; echo "0 passed, 1 failed"; exit 1
fi

# ---------------------------------------------------------------------------------------
# The machine: two nodes in namespaces, a SCIF run directory; torn down on every exit.
run=$$
# Each program's hard limit, seconds (the tests' own Criterion timeouts come first).
hard_timeout=${OFI_TIMEOUT:-600}
logdir=$top_builddir/tests/ofi
mkdir -p "$logdir"
child=
rundir=

cleanup() {
	if [ -n "$child" ]; then
		# timeout(1) passes TERM on to its process group: the test program and its peers.
		kill -TERM "$child" 2>/dev/null
		wait "$child" 2>/dev/null
		child=
	fi
	bash "$here/netns.sh" down "$run"
	[ -n "$rundir" ] && rm -rf "$rundir"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

nodes_file=$(bash "$here/netns.sh" up "$run" 2) || {
	echo "FAIL: check-ofi: cannot set up the namespaces"; echo "0 passed, 1 failed"; exit 1; }
rundir=$(mktemp -d "${TMPDIR:-/tmp}/scif-ofi-XXXXXX") && chmod 1777 "$rundir" || {
	echo "FAIL: check-ofi: no run directory"; echo "0 passed, 1 failed"; exit 1; }

if [ "$fabric" = ofi ]; then
	# A run directory per node (node-exec.sh makes those of spawned peers); node 0's here.
	export SCIF_TEST_NODE_RUN_BASE=$rundir
	export SCIF_RUN_DIR=$rundir/n0
	mkdir -p "$SCIF_RUN_DIR"
else
	unset SCIF_TEST_NODE_RUN_BASE
	export SCIF_RUN_DIR=$rundir
fi
export SCIF_TEST_NODE_EXEC=$here/node-exec.sh
export SCIF_TEST_NETNS_RUN=$run
export SCIF_TEST_NETNS_SH=$here/netns.sh
export SCIF_TEST_PEER=$top_builddir/tests/mp/scif-peer
export SCIF_TEST_OFI_HOSTILE=$top_builddir/tests/ofi/ofi-hostile
export SCIF_TEST_TOP=$top_builddir
export SCIF_COMPAT_DIR=$top_builddir/tests/compat
export LD_LIBRARY_PATH=$top_builddir/libscif/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CRITERION_JOBS=${CRITERION_JOBS:-2}
export SCIF_NODE=0
if [ "$fabric" = ofi ]; then
	export SCIF_FABRIC=ofi SCIF_NODES_FILE=$nodes_file FI_PROVIDER=$provider
else
	unset SCIF_FABRIC SCIF_NODES_FILE
fi

echo "check-ofi: fabric $fabric${SCIF_FABRIC:+ (libfabric provider $provider)}, netns run $run, nodes:"
grep -v '^#' "$nodes_file" | sed 's/^/    node /'

passed=0
failed=0
for p in "${progs[@]}"; do
	log=$logdir/$fabric-$p.log
	[ -z "${OFI_FILTER:-}" ] || filter[$p]=$OFI_FILTER
	echo "== $p (filter ${filter[$p]})"
	timeout -k 10 "$hard_timeout" bash "$here/netns.sh" exec "$run" 0 \
		"$top_builddir/${path[$p]}" --verbose --filter="${filter[$p]}" \
		--jobs="${jobs[$p]:-$CRITERION_JOBS}" >"$log" 2>&1 &
	child=$!
	wait "$child"
	rc=$?
	child=
	# Criterion's results, without the start of each test and the excluded ones.
	tally "ofi-$fabric $p" "$log" "$rc" "$hard_timeout"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
