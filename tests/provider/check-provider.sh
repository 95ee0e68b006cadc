#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/provider/check-provider.sh [CHECK...] - what `make check-provider` runs: the libfabric
# project's fabtests and MPI programs over the `scif` provider, against references that do
# not involve libscif (libfabric's `shm` provider, Open MPI's `vader` transport).
#
# Checks (default: all, in this order):
#   fabtests-build  extract FABTESTS_TARBALL into the build tree and build it against the
#                   installed libfabric, once (a stamp file marks a finished build)
#   fabtests-shm    runfabtests.sh -t quick on shm: the reference (passes if the run finished
#                   and some tests passed; its own failures are libfabric's)
#   fabtests-scif   the same on scif; fails if a test that passed on shm fails on scif
#   fabtests-rxm    the same on "scif;ofi_rxm" (RDM over scif's MSG endpoints), with
#                   libfabric's own list of what ofi_rxm does not support excluded
#   mpi-vader       mpi-p2p and mpi-coll over Open MPI's vader: proves the programs themselves
#   mpi-p2p         point-to-point over scif (pml cm, mtl ofi), 2 and 4 ranks, each rank on a
#                   SCIF node of its own (tests/provider/scif-rank) and all on node 0
#   mpi-coll        collectives, the same four runs
#   mpi-kill        a rank is SIGKILLed mid-run: the job must fail, within the time limit
#   bench-fi        scif_bench_fi (bench-provider's like-for-like tagged round trip) measures
#                   8 B to 64 KiB (inject, send, rendezvous) over scif, and its timing side
#                   fails, promptly, when the echoing side is SIGKILLed
#   pcie            the provider over the pcie fabric (a host process serving the aperture,
#                   card processes joining it as ivshmem clients): its Criterion programs,
#                   fabtests' tagged and MSG ping-pong from node 1 to node 0, mpi-p2p and
#                   mpi-coll with 2 and 4 ranks on nodes 0 and 1, and a rank killed
# Each run prints "PASS: ..." or "FAIL: ..."; the last line is "N passed, N failed" and the
# exit status is 0 only when nothing failed.
#
# Tests that pass on shm but do not run on scif (Notrun: the provider reports FI_ENODATA or
# FI_ENOSYS for a capability it does not offer, fabtests' own convention) are listed but do
# not fail the check, unless they are more than half of them (then the provider did not load
# or rejects everything); FABTESTS_STRICT=1 makes each of them fail it.
#
# Every run gets a fresh SCIF_RUN_DIR (a SCIF machine of its own) and runs in PID, mount and
# network namespaces of its own (unshare), with a private /dev/shm: runfabtests.sh ends by
# killing every process whose name starts with "fi_", which must not reach anyone else's;
# whatever a run leaves behind dies with it; runs side by side never meet in shared memory
# or on a TCP port.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute), MPIRUN, MPICC
# (empty without Open MPI), HAVE_LIBFABRIC (yes/no), FABTESTS_TARBALL, FABTESTS_TIMEOUT (per
# test, seconds), FABTESTS_RUN_TIMEOUT (per provider run), FABTESTS_JOBS (fabtests runs side
# by side), MPI_TIMEOUT (per mpirun).
set -uo pipefail

: "${top_builddir:?run through make check-provider}" "${top_srcdir:?run through make check-provider}"
# The tarball beside the checkout (../shared/vendor), else the team's shared copy.
FABTESTS_TARBALL=${FABTESTS_TARBALL:-$top_srcdir/../shared/vendor/fabtests-1.17.0.tar.gz}
if [ ! -r "$FABTESTS_TARBALL" ]; then
	for t in "$top_srcdir/../../shared/vendor" /work/shared/vendor; do
		[ -r "$t/fabtests-1.17.0.tar.gz" ] && { FABTESTS_TARBALL=$t/fabtests-1.17.0.tar.gz; break; }
	done
fi
# Every fabtests test allocates, fills and (here) registers 1 GiB per process, and client and
# server poll their queues busily: with three runs side by side on two cores a test that takes
# 5-7 s alone takes 15-20 s, on shm as on scif. A test's time limit is for hangs, not speed.
FABTESTS_TIMEOUT=${FABTESTS_TIMEOUT:-40}
FABTESTS_RUN_TIMEOUT=${FABTESTS_RUN_TIMEOUT:-1200}
FABTESTS_STRICT=${FABTESTS_STRICT:-0}
FABTESTS_JOBS=${FABTESTS_JOBS:-3}
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
MPIRUN=${MPIRUN:-mpirun}
MPICC=${MPICC:-}
HAVE_LIBFABRIC=${HAVE_LIBFABRIC:-yes}

work=$top_builddir/tests/provider
ftsrc=$work/fabtests-1.17.0
ftbin=$ftsrc/install/bin
results=$work/results
passed=0
failed=0

export FI_PROVIDER_PATH=$top_builddir/providers/scif/.libs
export LD_LIBRARY_PATH=$top_builddir/libscif/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Ranks spread over this many SCIF nodes of the local fabric (at least the largest -np).
export SCIF_LOCAL_NODES=${SCIF_LOCAL_NODES:-8}
mkdir -p "$results"

pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# isolate, new_run_dir, done_run_dir
# shellcheck source=tests/provider/isolate.sh
. "$top_srcdir/tests/provider/isolate.sh"

# ---------------------------------------------------------------------------------------
# fabtests

fabtests_build() {
	local log=$work/fabtests-build.log
	if [ -f "$ftsrc/.built" ] && [ -x "$ftbin/runfabtests.sh" ]; then
		pass "fabtests-build (reused $ftsrc)"
		return
	fi
	if [ ! -r "$FABTESTS_TARBALL" ]; then
		fail "fabtests-build: no $FABTESTS_TARBALL (set FABTESTS_TARBALL)"
		return
	fi
	rm -rf "$ftsrc"
	echo "fabtests: building in $ftsrc (log: $log)"
	if tar xzf "$FABTESTS_TARBALL" -C "$work" &&
		(cd "$ftsrc" && ./autogen.sh && ./configure --with-libfabric=/usr --prefix="$ftsrc/install" &&
			make -j"$(nproc 2>/dev/null || echo 2)" install) >"$log" 2>&1; then
		touch "$ftsrc/.built"
		pass "fabtests-build"
	else
		tail -n 20 "$log" | sed 's/^/    /'
		fail "fabtests-build (log: $log)"
	fi
}

# The results of a run's YAML as "RESULT<TAB>TEST" lines: the test without its -p argument
# and with the run's address (which unit tests name) written "ADDR", so that runs on
# different providers name their tests alike.
fabtests_parse() {
	awk -v addr="$2" '
	/^- name:/ { sub(/^- name:[ \t]*/, ""); sub(/ -p "[^"]*"$/, "")
		     n = split($0, w, " "); name = ""
		     for (i = 1; i <= n; i++) name = name (i > 1 ? " " : "") (w[i] == addr ? "ADDR" : w[i]) }
	/^  result:/ { sub(/^  result:[ \t]*/, ""); split($0, r, " "); print r[1] "\t" name }' "$1"
}

# runfabtests.sh runs each test as `timeout T fi_...`: tests/provider/fabtests-timeout.sh comes
# first in its PATH under that name, so that a test dies with the subshell runfabtests.sh
# kills, and a client over libscif starts once its server listens (see there).
shim=$results/shim
mkdir -p "$shim"
FABTESTS_REAL_TIMEOUT=$(command -v timeout)
export FABTESTS_REAL_TIMEOUT
printf '%s\n' '#!/bin/sh' '# Written by check-provider.sh (see there).' \
	"exec bash $(printf %q "$top_srcdir/tests/provider/fabtests-timeout.sh") \"\$@\"" >"$shim/timeout"
chmod +x "$shim/timeout"

# Every fabtests process allocates (malloc) and fills a 1 GiB buffer: on 4 KiB pages that is
# 3.4 s of page faults on a 2-core VM, most of a test's time. glibc's malloc gives its large
# blocks transparent huge pages when asked (Debian 12: glibc 2.36), for every provider alike;
# the fill then takes 1.1 s.
tunables=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1

# fabtests_run NAME PROVIDER ADDR [runfabtests.sh options...]: run the quick set, every
# process on address ADDR; leave $results/NAME.txt (parsed) and $results/NAME.yaml
# (runfabtests.sh -v output).
fabtests_run() {
	local name=$1 prov=$2 addr=$3 rc start
	shift 3
	if [ ! -x "$ftbin/runfabtests.sh" ]; then
		fail "$name: fabtests are not built (run the fabtests-build check)"
		return 1
	fi
	new_run_dir || { fail "$name: no run directory"; return 1; }
	start=$(date +%s)
	# runfabtests.sh writes its temporary files into the current directory.
	(cd "$results" && timeout -k 10 "$FABTESTS_RUN_TIMEOUT" "${isolate[@]}" \
		env PATH="$shim:$PATH" GLIBC_TUNABLES="$tunables" \
		${FABTESTS_PROVIDER_FILTER:+FI_PROVIDER="$FABTESTS_PROVIDER_FILTER"} \
		"$ftbin/runfabtests.sh" -v -T "$FABTESTS_TIMEOUT" -p "$ftbin" \
		-s "$addr" -c "$addr" -g "$addr" "$@" -t quick "$prov" >"$results/$name.yaml" 2>&1)
	rc=$?
	done_run_dir
	fabtests_parse "$results/$name.yaml" "$addr" >"$results/$name.txt"
	local p f n
	p=$(grep -c '^Pass' "$results/$name.txt")
	f=$(grep -c '^Fail' "$results/$name.txt")
	n=$(grep -c -E '^(Notrun|Excluded)' "$results/$name.txt")
	echo "fabtests $prov: $p pass, $f fail, $n notrun ($(($(date +%s) - start)) s; results: $results/$name.yaml)"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "    the run did not finish in $FABTESTS_RUN_TIMEOUT s (FABTESTS_RUN_TIMEOUT)"
		return 1
	fi
	if ! grep -q 'Total Pass' "$results/$name.yaml"; then
		echo "    runfabtests.sh ended without a summary (exit $rc)"
		tail -n 5 "$results/$name.yaml" | sed 's/^/    /'
		return 1
	fi
	return 0
}

# fabtests_compare NAME LABEL: the tests that passed on shm but not in run NAME. Fails
# (returns 1) when one of them failed or is missing, or (FABTESTS_STRICT=1) did not run.
fabtests_compare() {
	local name=$1 label=$2 test res bad=0 missing=0 notrun=0
	local -A got=()
	while IFS=$'\t' read -r res test; do got[$test]=$res; done <"$results/$name.txt"
	echo "tests that pass on shm but not on $label:"
	while IFS=$'\t' read -r res test; do
		[ "$res" = Pass ] || continue
		res=${got[$test]:-missing}
		case $res in
		Pass) ;;
		Notrun | Excluded)
			echo "  - $test: $res (not supported)"; notrun=$((notrun + 1))
			[ "$FABTESTS_STRICT" = 1 ] && bad=$((bad + 1)) ;;
		missing)
			echo "  - $test: did not run (the run stopped early)"; missing=$((missing + 1))
			bad=$((bad + 1)) ;;
		*)
			echo "  - $test: $res"; bad=$((bad + 1)) ;;
		esac
	done <"$results/shm.txt"
	[ "$bad" -eq 0 ] && [ "$notrun" -eq 0 ] && [ "$missing" -eq 0 ] && echo "  (none)"
	# Notrun is fabtests' "capability not offered"; a provider that fails to load, or whose
	# fi_getinfo rejects everything, would pass that way. Most must run.
	local ref
	ref=$(grep -c '^Pass' "$results/shm.txt")
	if [ $((2 * notrun)) -gt "$ref" ]; then
		echo "  $notrun of the $ref tests that pass on shm did not run on $label: unusable"
		bad=$((bad + 1))
	fi
	[ "$bad" -eq 0 ]
}

# The failures' YAML blocks (commands and output), for the log.
fabtests_show_failures() {
	awk '/^- name:/ { if (bad) printf "%s", block; block = ""; bad = 0 }
	     { block = block $0 "\n" }
	     /^  result: Fail/ { bad = 1 }
	     END { if (bad) printf "%s", block }' "$1" | head -n 300 | sed 's/^/    /'
}

# The reference. shm.done marks results complete; shm.running (set by fabtests_group) that a
# run alongside is producing them. Two tests that libfabric 1.17's shm fails by running
# into their time limit (fi_rdm_tagged_peek, fi_rdm g00n13s: 40 s each, the longest of the
# run) are left out of it: a reference that fails compares nothing (scif runs them).
fabtests_shm() {
	rm -f "$results/shm.done"
	if fabtests_run shm shm 127.0.0.1 -e 'dgram,^fi_rdm_tagged_peek$,^fi_rdm g00n13s$'; then
		if grep -q '^Pass' "$results/shm.txt"; then
			pass "fabtests-shm"
		else
			fail "fabtests-shm: no test passed on the reference provider"
		fi
	else
		fail "fabtests-shm"
	fi
	touch "$results/shm.done"
}

# The reference results for a comparison: wait for a run alongside to finish, else take
# those of an earlier run (shm does not change with libscif), else run it now.
need_shm() {
	local waited=0
	while [ -f "$results/shm.running" ] && [ ! -f "$results/shm.done" ] &&
		[ "$waited" -lt $((FABTESTS_RUN_TIMEOUT + 60)) ]; do
		sleep 1
		waited=$((waited + 1))
	done
	[ -f "$results/shm.done" ] && [ -s "$results/shm.txt" ] && return 0
	[ -f "$results/shm.running" ] || fabtests_shm
	[ -s "$results/shm.txt" ]
}

# scif takes its addresses as SCIF node numbers: every process is on node 0. libfabric
# lists utility providers layered on scif ("scif;ofi_rxm") before scif's own endpoints, and
# fabtests takes the first entry: this run excludes them, so it tests scif's native RDM.
fabtests_scif() {
	local ok=1
	FABTESTS_PROVIDER_FILTER="^ofi_rxm,ofi_rxd,ofi_mrail" fabtests_run scif scif 0 -e dgram || ok=0
	need_shm || { fail "fabtests-scif: no shm reference"; return; }
	fabtests_compare scif scif || ok=0
	if [ "$ok" = 1 ]; then
		pass "fabtests-scif"
	else
		fabtests_show_failures "$results/scif.yaml"
		fail "fabtests-scif (results: $results/scif.yaml)"
	fi
}

fabtests_rxm() {
	local ok=1 excl=$ftsrc/install/share/fabtests/test_configs/ofi_rxm/ofi_rxm.exclude
	fabtests_run rxm "scif;ofi_rxm" 0 -e dgram -f "$excl" || ok=0
	need_shm || { fail "fabtests-rxm: no shm reference"; return; }
	fabtests_compare rxm "scif;ofi_rxm" || ok=0
	if [ "$ok" = 1 ]; then
		pass "fabtests-rxm"
	else
		fabtests_show_failures "$results/rxm.yaml"
		fail "fabtests-rxm (results: $results/rxm.yaml)"
	fi
}

# fabtests_group CHECK...: the fabtests runs, FABTESTS_JOBS (3) at a time: they share
# nothing (namespaces, /dev/shm and SCIF machine of their own); each waits a second before
# every client, and side by side the three take about 5 minutes on two cores, which are busy
# the rest of the time (FABTESTS_TIMEOUT allows for that). Output in the order asked.
fabtests_group() {
	local c running=0 p f
	if [ "$FABTESTS_JOBS" -le 1 ] || [ $# -le 1 ]; then
		for c; do "fabtests_${c#fabtests-}"; done
		return
	fi
	case " $* " in *" fabtests-shm "*) rm -f "$results/shm.done"; touch "$results/shm.running" ;; esac
	for c; do
		if [ "$running" -ge "$FABTESTS_JOBS" ]; then
			wait -n
			running=$((running - 1))
		fi
		rm -f "$results/$c.count"
		(passed=0 failed=0; "fabtests_${c#fabtests-}"
		 echo "$passed $failed" >"$results/$c.count") >"$results/$c.out" 2>&1 &
		running=$((running + 1))
	done
	wait
	rm -f "$results/shm.running"
	for c; do
		cat "$results/$c.out"
		if read -r p f <"$results/$c.count" 2>/dev/null; then
			passed=$((passed + p))
			failed=$((failed + f))
		else
			fail "$c: the run ended without a result"
		fi
	done
}

# ---------------------------------------------------------------------------------------
# MPI

# The mpirun options of a transport: scif through the cm PML and the ofi MTL, or vader.
# Open MPI takes the first provider whose name starts with "scif", and libfabric lists
# "scif;ofi_rxm" (ofi_rxm layered on scif's MSG endpoints; its address vector takes only IP
# addresses, so MPI_Init fails) before scif itself: excluding ofi_rxm gives the ranks scif's
# own RDM endpoints (fabtests-rxm tests the layering).
mpi_transport_args() {
	case $1 in
	scif) echo "--mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include scif -x FI_PROVIDER=^ofi_rxm" ;;
	vader) echo "--mca pml ob1 --mca btl self,vader" ;;
	esac
}

# mpi_run LABEL TRANSPORT NP LAYOUT PROGRAM: one job under timeout(1). LAYOUT "spread" runs
# each rank on SCIF node (rank mod SCIF_LOCAL_NODES) through scif-rank, "node0" all on node
# 0. Sets mpi_rc, mpi_timed_out and mpi_log.
mpi_run() {
	local label=$1 transport=$2 np=$3 layout=$4 prog=$5 start
	local -a wrap=()
	[ "$layout" = spread ] && wrap=("$top_srcdir/tests/provider/scif-rank")
	mpi_log=$results/$label.log
	new_run_dir || { mpi_rc=99; mpi_timed_out=0; return; }
	start=$(date +%s)
	# shellcheck disable=SC2046 # the transport's options are words
	timeout -k 10 "$MPI_TIMEOUT" "${isolate[@]}" "$MPIRUN" --allow-run-as-root --oversubscribe \
		--bind-to none -np "$np" $(mpi_transport_args "$transport") \
		-x FI_PROVIDER_PATH -x LD_LIBRARY_PATH -x SCIF_RUN_DIR -x SCIF_LOCAL_NODES \
		"${wrap[@]}" "$work/$prog" >"$mpi_log" 2>&1
	mpi_rc=$?
	mpi_timed_out=0
	if [ "$mpi_rc" -eq 124 ] || [ $(($(date +%s) - start)) -ge "$MPI_TIMEOUT" ]; then
		mpi_timed_out=1
	fi
	done_run_dir
}

mpi_ready() {
	local prog
	if [ -z "$MPICC" ]; then
		fail "$1: configure found no mpicc (Debian: openmpi-bin, libopenmpi-dev)"
		return 1
	fi
	for prog in mpi-p2p mpi-coll mpi-kill; do
		if [ ! -x "$work/$prog" ]; then
			fail "$1: $work/$prog is not built (make check-provider builds it)"
			return 1
		fi
	done
}

# mpi_program PROGRAM TRANSPORT LAYOUT...: 2 and 4 ranks in each layout; each run one line.
mpi_program() {
	local prog=$1 transport=$2 np layout label
	shift 2
	mpi_ready "$prog" || return
	for layout in "$@"; do
		for np in 2 4; do
			label="$prog-$transport-np$np-$layout"
			mpi_run "$label" "$transport" "$np" "$layout" "$prog"
			if [ "$mpi_rc" -eq 0 ] && grep -q "^$prog: passed" "$mpi_log"; then
				pass "$label"
			else
				grep -E 'error:|failed' "$mpi_log" | head -n 20 | sed 's/^/    /'
				[ "$mpi_timed_out" = 1 ] && echo "    timed out after $MPI_TIMEOUT s"
				tail -n 15 "$mpi_log" | sed 's/^/    | /'
				fail "$label (exit $mpi_rc, log: $mpi_log)"
			fi
		done
	done
}

# The kill test: a non-zero end within the limit, after the ranks had communicated.
mpi_kill() {
	local np layout label
	mpi_ready mpi-kill || return
	for layout in spread node0; do
		for np in 2 4; do
			label="mpi-kill-scif-np$np-$layout"
			mpi_run "$label" scif "$np" "$layout" mpi-kill
			if [ "$mpi_timed_out" = 1 ]; then
				fail "$label: the job hung (killed after $MPI_TIMEOUT s; log: $mpi_log)"
			elif [ "$mpi_rc" -eq 0 ]; then
				fail "$label: the job succeeded although a rank died (log: $mpi_log)"
			elif ! grep -q 'rounds done by all ranks' "$mpi_log" ||
				! grep -q 'dies now' "$mpi_log"; then
				tail -n 15 "$mpi_log" | sed 's/^/    | /'
				fail "$label: the job failed before the kill (exit $mpi_rc, log: $mpi_log)"
			else
				pass "$label (exit $mpi_rc)"
			fi
		done
	done
}

# bench-fi: scif_bench_fi measures, and notices a dead peer.
bench_fi() {
	local bin=$top_builddir/tools/scif_bench/scif_bench_fi log=$work/bench-fi.log rc n
	if [ ! -x "$bin" ]; then
		fail "bench-fi: no $bin"
		return
	fi
	new_run_dir
	timeout -k 5 60 "${isolate[@]}" env FI_PROVIDER=scif "$bin" 0.05 8 4096 65536 >"$log" 2>&1
	rc=$?
	done_run_dir
	n=$(awk '$1 == "lat" && $3 > 0' "$log" | wc -l)
	if [ "$rc" -eq 0 ] && [ "$n" -eq 3 ]; then
		pass "bench-fi ($(awk '$1 == "lat" { printf "%s B %s us  ", $2, $3 }' "$log"))"
	else
		sed 's/^/    | /' "$log" | tail -n 15
		fail "bench-fi: exit $rc, $n of 3 sizes measured (log: $log)"
	fi
	# The echoing side (the newest scif_bench_fi) is killed half a second in.
	new_run_dir
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout -k 5 60 "${isolate[@]}" env FI_PROVIDER=scif BIN="$bin" LOG="$log.kill" \
		bash -c '"$BIN" 30 8 >"$LOG" 2>&1 & sleep 0.5; pkill -KILL -n -f "$BIN 30 8"
			 wait $!' 2>/dev/null
	rc=$?
	done_run_dir
	if [ "$rc" -eq 1 ] && grep -q 'other side' "$log.kill"; then
		pass "bench-fi-kill (exit $rc: $(tail -n 1 "$log.kill"))"
	else
		sed 's/^/    | /' "$log.kill" | tail -n 15
		fail "bench-fi-kill: exit $rc (log: $log.kill)"
	fi
}

# ---------------------------------------------------------------------------------------
# The provider over the pcie fabric

# pcie_run LOG COMMAND...: COMMAND in namespaces of its own on a pcie fabric of its own (an
# aperture of 1 GiB with four stations, its socket in a fresh run directory): the first
# process of node 0 to attach serves it (the host), every other process joins it as an
# ivshmem client, as QEMU's ivshmem-doorbell device would. A process on a node other than
# 0 takes a run directory of its own below (n1: its OS instance is the card's; scif-rank
# does that on this fabric). Sets pcie_rc.
pcie_run() {
	local log=$1
	shift
	new_run_dir || { pcie_rc=99; return; }
	timeout -k 10 "$MPI_TIMEOUT" "${isolate[@]}" env SCIF_FABRIC=pcie \
		SCIF_PCIE_SOCKET="$SCIF_RUN_DIR/ivshmem.sock" SCIF_PCIE_SIZE=1G SCIF_PCIE_NODES=4 \
		"$@" >"$log" 2>&1
	pcie_rc=$?
	done_run_dir
}

# pcie: the provider's own Criterion programs with every rank a process of node 0 (stations of
# one node, relayed by the hub), fabtests' tagged and MSG ping-pong between node 0 and node 1,
# and the MPI programs with their ranks on nodes 0 and 1 (two processes each with 4 ranks),
# one run with a rank killed. What only the pcie fabric has is in `make check-pcie`.
pcie_checks() {
	local p log label np prog summary start
	for p in test-fi-core test-fi-rdm test-fi-msg; do
		log=$results/pcie-$p.log
		if [ ! -x "$work/$p" ]; then
			fail "pcie $p: $work/$p is not built (make check-provider builds it)"
			continue
		fi
		pcie_run "$log" "$work/$p" -j1 --verbose
		summary=$(grep -a 'Synthesis' "$log" | tail -n 1)
		if [ "$pcie_rc" -eq 0 ] && echo "$summary" | grep -q 'Failing: 0 | Crashing: 0'; then
			pass "pcie $p (${summary#*Synthesis: })"
		else
			grep -a -B 8 -E '^\[(FAIL|ERR )' "$log" | tail -n 30 | sed 's/^/    | /'
			fail "pcie $p: exit $pcie_rc, ${summary:-no summary} (log: $log)"
		fi
	done
	for prog in fi_rdm_tagged_pingpong fi_msg_pingpong; do
		log=$results/pcie-$prog.log
		# shellcheck disable=SC2016 # expanded by the inner shell
		pcie_run "$log" env FI_PROVIDER=^ofi_rxm,ofi_rxd,ofi_mrail BIN="$ftbin/$prog" bash -c '
			SCIF_NODE=0 "$BIN" -p scif -s 0 -I 1000 >"$SCIF_PCIE_SOCKET.server" 2>&1 &
			server=$!
			sleep 1
			mkdir -p "$SCIF_RUN_DIR/n1"
			SCIF_NODE=1 SCIF_RUN_DIR=$SCIF_RUN_DIR/n1 "$BIN" -p scif -s 1 -I 1000 0
			rc=$?
			wait "$server" || rc=1
			sed "s/^/server: /" "$SCIF_PCIE_SOCKET.server"
			exit $rc'
		if [ "$pcie_rc" -eq 0 ] && grep -q '^64 ' "$log"; then
			pass "pcie $prog node 0 <-> node 1 ($(awk '$1 == 64 { print $6 " us per xfer at 64 B"; exit }' "$log"))"
		else
			tail -n 15 "$log" | sed 's/^/    | /'
			fail "pcie $prog: exit $pcie_rc (log: $log)"
		fi
	done
	mpi_ready "pcie MPI" || return
	for prog in mpi-p2p mpi-coll; do
		for np in 2 4; do
			label=pcie-$prog-np$np
			log=$results/$label.log
			# shellcheck disable=SC2046 # the transport's options are words
			pcie_run "$log" env SCIF_LOCAL_NODES=2 "$MPIRUN" --allow-run-as-root \
				--oversubscribe --bind-to none -np "$np" $(mpi_transport_args scif) \
				-x FI_PROVIDER_PATH -x LD_LIBRARY_PATH -x SCIF_RUN_DIR -x SCIF_LOCAL_NODES \
				-x SCIF_FABRIC -x SCIF_PCIE_SOCKET -x SCIF_PCIE_SIZE -x SCIF_PCIE_NODES \
				"$top_srcdir/tests/provider/scif-rank" "$work/$prog"
			if [ "$pcie_rc" -eq 0 ] && grep -q "^$prog: passed" "$log"; then
				pass "$label"
			else
				tail -n 15 "$log" | sed 's/^/    | /'
				fail "$label (exit $pcie_rc, log: $log)"
			fi
		done
	done
	label=pcie-mpi-kill-np4
	log=$results/$label.log
	start=$(date +%s)
	# shellcheck disable=SC2046 # the transport's options are words
	pcie_run "$log" env SCIF_LOCAL_NODES=2 "$MPIRUN" --allow-run-as-root --oversubscribe \
		--bind-to none -np 4 $(mpi_transport_args scif) \
		-x FI_PROVIDER_PATH -x LD_LIBRARY_PATH -x SCIF_RUN_DIR -x SCIF_LOCAL_NODES \
		-x SCIF_FABRIC -x SCIF_PCIE_SOCKET -x SCIF_PCIE_SIZE -x SCIF_PCIE_NODES \
		"$top_srcdir/tests/provider/scif-rank" "$work/mpi-kill"
	# mpirun exits 137 itself when a rank was killed: a hang is told by the time it took
	if [ "$pcie_rc" -eq 124 ] || [ $(($(date +%s) - start)) -ge "$MPI_TIMEOUT" ]; then
		fail "$label: the job hung (killed after $MPI_TIMEOUT s; log: $log)"
	elif [ "$pcie_rc" -ne 0 ] && grep -q 'rounds done by all ranks' "$log" &&
		grep -q 'dies now' "$log"; then
		pass "$label (exit $pcie_rc)"
	else
		tail -n 15 "$log" | sed 's/^/    | /'
		fail "$label: exit $pcie_rc, the job did not fail after the kill (log: $log)"
	fi
}

# ---------------------------------------------------------------------------------------

all_checks="fabtests-build fabtests-shm fabtests-scif fabtests-rxm mpi-vader mpi-p2p mpi-coll mpi-kill bench-fi pcie"
[ $# -eq 0 ] && set -- $all_checks
if [ "$HAVE_LIBFABRIC" != yes ]; then
	echo "FAIL: configure found no libfabric (Debian: libfabric-dev, libfabric-bin)"
	echo "0 passed, 1 failed"
	exit 1
fi
[ ${#isolate[@]} -eq 0 ] && echo "warning: no PID namespace (unshare needs root or user namespaces): runs are not isolated"
fabtests_runs=()
for c in "$@"; do
	case $c in fabtests-shm | fabtests-scif | fabtests-rxm) fabtests_runs+=("$c") ;; esac
done
for c in "$@"; do
	case $c in
	fabtests-build) fabtests_build ;;
	fabtests-shm | fabtests-scif | fabtests-rxm)
		# all of them at the first one, side by side
		[ ${#fabtests_runs[@]} -gt 0 ] && fabtests_group "${fabtests_runs[@]}"
		fabtests_runs=() ;;
	mpi-vader)
		mpi_program mpi-p2p vader node0
		mpi_program mpi-coll vader node0 ;;
	mpi-p2p) mpi_program mpi-p2p scif spread node0 ;;
	mpi-coll) mpi_program mpi-coll scif spread node0 ;;
	mpi-kill) mpi_kill ;;
	bench-fi) bench_fi ;;
	pcie) pcie_checks ;;
	*) fail "unknown check '$c' (checks: $all_checks)" ;;
	esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
