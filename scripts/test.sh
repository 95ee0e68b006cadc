#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build everything and run the whole test suite on Debian 12, installing what is missing:
# the Criterion suite (plain -Werror build, then ASan+UBSan), the libFuzzer targets for
# FUZZ_SECONDS (45) each, the multi-threaded tests under ThreadSanitizer, fabtests and MPI
# over the libfabric provider, virtio over SCIF with real clients, valgrind on the example
# pair, the ofi fabric across network namespaces, the pcie fabric between a host and a card
# process and a card in a QEMU guest, the kernel shim in a QEMU guest, the docs
# and man-page checks, and make distcheck.
# The last line is the total: "N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
logdir=$top/_build/logs

bash "$top/scripts/deps.sh" --kernel || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p "$logdir"
cd "$top" && autoreconf -fi >"$logdir/autoreconf.log" 2>&1 || {
	cat "$logdir/autoreconf.log"; echo "0 passed, 1 failed"; exit 1; }

# stage TITLE: begin a stage, saying how long the one before took (where CI's time goes).
stage_start=$SECONDS
stage() {
	[ -z "${stage_title:-}" ] || echo "   ($((SECONDS - stage_start)) s)"
	stage_title=$1 stage_start=$SECONDS
	[ -z "$1" ] || echo "== $1"
}

# One named check that counts as one test.
check() {
	local name=$1; shift
	if "$@" >"$logdir/$name.log" 2>&1; then
		echo "PASS: $name"; passed=$((passed + 1))
	else
		echo "FAIL: $name (log: $logdir/$name.log)"
		# Which inner tests failed, and Criterion's words on them, before the tail.
		grep -E '^(FAIL|ERROR|XPASS): |\[(FAIL|----)\]|CRASH|Timed out' "$logdir/$name.log" |
			head -n 40 | sed 's/^/    /'
		tail -n 30 "$logdir/$name.log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

# Add up Criterion's "Synthesis" lines of every test program's log in a build tree.
count_criterion() {
	local dir=$1 label=$2 t p f c log
	while IFS= read -r log; do
		local line
		line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
		if [ -z "$line" ]; then
			echo "FAIL: $label ${log#"$dir"/} (no result: crashed or timed out)"
			failed=$((failed + 1)); continue
		fi
		t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line")
		p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
		f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
		c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$line")
		echo "$label ${log#"$dir"/}: $p/$t passed"
		passed=$((passed + p)); failed=$((failed + f + c))
		if [ $((f + c)) -gt 0 ]; then
			grep -a -E 'FAIL|CRASH|Assertion|expected' "$log" | head -n 20 | sed 's/^/    /'
		fi
	done < <(find "$dir/tests" -name 'test-*.log' | sort)
}

build() {
	local dir=$1; shift
	mkdir -p "$dir" && cd "$dir" &&
		"$top/configure" --enable-werror "$@" >configure.log 2>&1 &&
		make -j"$jobs" >make.log 2>&1
}

suite() {
	local dir=$1 label=$2
	# Old logs must not stand in for tests that did not run this time.
	find "$dir/tests" -name '*.log' -delete 2>/dev/null
	(cd "$dir" && make -j"$jobs" check >check.log 2>&1)
	if ! grep -q 'Testsuite summary' "$dir/check.log"; then
		echo "FAIL: $label test suite did not run (log: $dir/check.log)"
		grep -E 'error|Error' "$dir/check.log" | head -n 20 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
	count_criterion "$dir" "$label"
}

stage "plain build (-Werror) and the Criterion suite"
check build-plain build "$top/_build/plain"
[ -f "$top/_build/plain/Makefile" ] && suite "$top/_build/plain" plain

# The sanitizer builds run the stress tests at a quarter of their amounts (connections, bytes,
# killed peers: SCIF_TEST_SCALE_PCT, test_scaled() in tests/common.h): a sanitizer looks at
# every path a test takes, and the amounts only repeat those paths, at the sanitizer's price
# (under TSan the 10,000-connection leak test alone took 175 s). The plain build above ran
# them in full.
san_scale=${SCIF_TEST_SCALE_PCT:-25}

stage "ASan + UBSan build and the Criterion suite"
check build-asan build "$top/_build/asan" --enable-sanitizers
[ -f "$top/_build/asan/Makefile" ] && SCIF_TEST_SCALE_PCT=$san_scale suite "$top/_build/asan" asan+ubsan

stage "libFuzzer targets (clang, ASan+UBSan), ${FUZZ_SECONDS:-45} s each, beside the ThreadSanitizer build"
# Each target is one check: it fails on a crash, a sanitizer report, a hang or a failed
# check (tests/fuzz/run.sh prints the diagnosis); the summary line gives its executions.
fuzz_build() {
	mkdir -p "$top/_build/fuzz" && cd "$top/_build/fuzz" &&
		"$top/configure" CC=clang --enable-fuzz --enable-werror >configure.log 2>&1 &&
		make -j"$jobs" fuzz-build >make.log 2>&1
}
check build-fuzz fuzz_build
# The targets run in two lanes side by side, one per core (in each, the fuzzer and the
# library's threads take turns: about one core busy), each target for its full time.
fuzz_lane() {
	local t
	for t in "$@"; do
		bash "$top/tests/fuzz/run.sh" --seconds "${FUZZ_SECONDS:-45}" \
			--build "$top/_build/fuzz" "$t" >"$logdir/$t.out" 2>&1
		echo $? >"$logdir/$t.rc"
	done
}
fuzz_result() {
	cat "$logdir/$1.out"
	return "$(cat "$logdir/$1.rc" 2>/dev/null || echo 1)"
}
lanes=()
if [ -x "$top/_build/fuzz/tests/fuzz/fuzz-rb" ]; then
	fuzz_lane fuzz-accept fuzz-ring fuzz-ctl fuzz-vq &
	lanes+=("$!")
	fuzz_lane fuzz-connect fuzz-bulk fuzz-rb &
	lanes+=("$!")
fi
# Meanwhile the ThreadSanitizer tree builds: a fuzzer's time is fixed (the compiler only takes
# some of its executions), and compiling has no timing that a test could trip on. Only the
# tests that run several threads on one endpoint and the peer they spawn are built, against
# tests/tsan's stand-in for Criterion (which cannot start under TSan), not all 54 programs.
tsan_tests="tests/tsan/test-send-recv tests/tsan/test-accept tests/tsan/test-connect
	tests/tsan/test-listen tests/tsan/test-bind tests/tsan/test-poll tests/tsan/test-rma
	tests/tsan/test-mp tests/tsan/test-bulk tests/tsan/test-rma-mp tests/tsan/test-vq
	tests/tsan/test-vos"
tsan_progs="tests/mp/scif-peer $(echo $tsan_tests)"
tsan_build() {
	build "$top/_build/tsan" --enable-tsan &&
		make -j"$jobs" $tsan_progs >>make.log 2>&1
}
check build-tsan tsan_build
if [ ${#lanes[@]} -gt 0 ]; then
	wait "${lanes[@]}"
	for t in fuzz-accept fuzz-connect fuzz-ring fuzz-bulk fuzz-ctl fuzz-rb fuzz-vq; do
		f0=$failed
		check "$t" fuzz_result "$t"
		# A failure's log tail already shows it.
		[ "$failed" = "$f0" ] && grep -E "^$t: " "$logdir/$t.log" | sed 's/^/    /'
	done
fi

stage "ThreadSanitizer: the multi-threaded tests"
# A test in which TSan reports a race fails; the distinct reports, with both stacks, are
# collected in _build/logs/tsan-reports.txt.
if [ -f "$top/_build/tsan/Makefile" ]; then
	find "$top/_build/tsan/tests" -name '*.log' -delete 2>/dev/null
	(cd "$top/_build/tsan" && SCIF_TEST_SCALE_PCT=$san_scale make -j"$jobs" check \
		TESTS="$(echo $tsan_tests)" \
		check_PROGRAMS="$tsan_progs" \
		TSAN_OPTIONS="history_size=4 second_deadlock_stack=1 atexit_sleep_ms=0" \
		>check.log 2>&1)
	count_criterion "$top/_build/tsan" tsan
	bash "$top/tests/tsan/reports.sh" "$top/_build/tsan"/tests/tsan/test-*.log \
		>"$logdir/tsan-reports.txt"
	if [ -s "$logdir/tsan-reports.txt" ]; then
		echo "    $(head -n 1 "$logdir/tsan-reports.txt") (log: $logdir/tsan-reports.txt):"
		grep -E '^--- ' "$logdir/tsan-reports.txt" | sed 's/^/    /'
	fi
fi

stage "libfabric provider: fabtests and MPI"
# make check-provider in the plain build (tests/provider/check-provider.sh): fabtests, built
# once from FABTESTS_TARBALL, on shm (the reference), on scif and on "scif;ofi_rxm" (each
# fails when a test that passes on shm fails on it), side by side; then the MPI programs of
# tests/provider over vader and over scif, 2 and 4 ranks. Each of its PASS/FAIL lines counts
# as one check: one per fabtests provider run, one per MPI job.
if [ -f "$top/_build/plain/Makefile" ]; then
	if (cd "$top/_build/plain" && make check-provider >"$logdir/check-provider.log" 2>&1); then :; fi
	grep -E '^(PASS|FAIL): |^fabtests .*: [0-9]+ pass|^tests that pass on shm|^  - ' \
		"$logdir/check-provider.log" | sed 's/^/provider /'
	pp=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logdir/check-provider.log" | tail -n 1)
	if [ -n "$pp" ]; then
		passed=$((passed + $(cut -d' ' -f1 <<<"$pp"))); failed=$((failed + $(cut -d' ' -f3 <<<"$pp")))
	else
		echo "FAIL: check-provider produced no result (log: $logdir/check-provider.log)"
		tail -n 30 "$logdir/check-provider.log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
fi

stage "virtio over SCIF: daemon and card frontend with real clients"
# make check-virtio in the plain build (tests/virtio/check-virtio.sh): console, block, net and
# lifecycle groups, each in network namespaces of its own; each PASS/FAIL line is one check.
if [ -f "$top/_build/plain/Makefile" ]; then
	if (cd "$top/_build/plain" && make check-virtio >"$logdir/check-virtio.log" 2>&1); then :; fi
	grep -E '^(PASS|FAIL): ' "$logdir/check-virtio.log" | sed 's/^/virtio /'
	vp=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logdir/check-virtio.log" | tail -n 1)
	if [ -n "$vp" ]; then
		passed=$((passed + $(cut -d' ' -f1 <<<"$vp"))); failed=$((failed + $(cut -d' ' -f3 <<<"$vp")))
	else
		echo "FAIL: check-virtio produced no result (log: $logdir/check-virtio.log)"
		tail -n 30 "$logdir/check-virtio.log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
fi

stage "the ofi fabric: SCIF nodes in network namespaces, libfabric between them"
# make check-ofi in the plain build (tests/ofi/check-ofi.sh): the compat pairs and the
# multi-process suites with node 0 and node 1 in namespaces of their own, over libfabric's
# sockets provider, then over tcp;ofi_rxm (the provider a user picks on Ethernet).

# make_tally NAME PREFIX TARGET [VAR=VALUE...]: run a make target of the plain build whose last
# line is "N passed, N failed", show its PASS/FAIL lines under PREFIX, and add its counts.
make_tally() {
	local name=$1 prefix=$2 log=$logdir/$1.log n
	shift 2
	if (cd "$top/_build/plain" && make "$@" >"$log" 2>&1); then :; fi
	grep -a -E '^(PASS|FAIL): ' "$log" | sed "s/^/$prefix /"
	# Which Criterion tests failed and what they said: the log stays on the machine that ran.
	if grep -a -q -E '^FAIL: ' "$log"; then
		grep -a -E '^\[(FAIL|----)\] |CRASH|Timed out|Assertion' "$log" |
			grep -a -v '\] Criterion v' | head -n 40 | sed 's/^/    /'
	fi
	n=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -n "$n" ]; then
		passed=$((passed + $(cut -d' ' -f1 <<<"$n"))); failed=$((failed + $(cut -d' ' -f3 <<<"$n")))
	else
		echo "FAIL: $name produced no result (log: $log)"
		tail -n 30 "$log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}
if [ -f "$top/_build/plain/Makefile" ]; then
	make_tally check-ofi-sockets "ofi (sockets)" check-ofi OFI_PROVIDER=sockets
	make_tally check-ofi-tcp "ofi (tcp;ofi_rxm)" check-ofi OFI_PROVIDER=tcp
fi

stage "the ofi fabric over RDMA: verbs;ofi_rxm on soft-RoCE in a QEMU guest"
# make check-rxe (tests/ofi/check-rxe.sh): the same programs, node 0 and node 1 each on an
# rdma_rxe device over one veth pair inside Debian's kernel under QEMU (docs/network-fabric.md).
if [ -f "$top/_build/plain/Makefile" ]; then
	make_tally check-rxe "ofi (verbs;ofi_rxm, rxe)" check-rxe
fi

stage "the pcie fabric: a host and a card sharing one ivshmem aperture, the card a process then a QEMU guest"
# make check-pcie in the plain build (tests/pcie/check-pcie.sh): the compat pairs and the
# multi-process suites with node 0 serving the aperture and node 1 an ivshmem client, and
# test-pcie (a full aperture, a card that corrupts it, departures); then the guest pass, every
# card peer in a QEMU guest through kernel/shim, and scif_bench across beside a raw aperture
# ping-pong (its figures printed): docs/pcie-fabric.md.
if [ -f "$top/_build/plain/Makefile" ]; then
	make_tally check-pcie pcie check-pcie
	grep -a '^guest bench' "$logdir/check-pcie.log" || true
fi

stage "valgrind on the host/card example pair"
vg() {
	local who=$1 b=$top/_build/plain/examples
	local vgcmd=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite -q)
	if [ "$who" = host ]; then
		SCIF_NODE=0 "${vgcmd[@]}" "$b/.libs/host" & local h=$!
		sleep 1; SCIF_NODE=1 "$b/card" || return 1
	else
		SCIF_NODE=0 "$b/host" & local h=$!
		sleep 0.2; SCIF_NODE=1 "${vgcmd[@]}" "$b/.libs/card" || return 1
	fi
	wait "$h"
}
export LD_LIBRARY_PATH=$top/_build/plain/libscif/.libs
check valgrind-host vg host
check valgrind-card vg card
unset LD_LIBRARY_PATH

stage "documentation: every exported symbol has a Doxygen block and a man page"
check docs-doxygen make -C "$top/_build/plain" docs
check docs-man bash "$top/scripts/check-docs.sh" "$top" "$top/_build/plain/libscif/.libs/libscif.so.0"

stage "kernel shim in a QEMU guest"
if (cd "$top/_build/plain" && make check-kernel >"$logdir/check-kernel.log" 2>&1); then :; fi
grep -E '^(PASS|FAIL): ' "$logdir/check-kernel.log" | sed 's/^/kernel /'
kp=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logdir/check-kernel.log" | tail -n 1)
if [ -n "$kp" ]; then
	passed=$((passed + $(cut -d' ' -f1 <<<"$kp"))); failed=$((failed + $(cut -d' ' -f3 <<<"$kp")))
else
	echo "FAIL: check-kernel produced no result"; tail -n 30 "$logdir/check-kernel.log"
	failed=$((failed + 1))
fi

stage "make distcheck"
# The tarball builds (every test program too), installs, uninstalls and passes the suite, all
# of it but the fault-injection sweep (tests/fault/test-fault) and the multi-process stress
# programs (tests/mp/): the plain and ASan builds above ran them on the same sources (mp/ under
# TSan and across the ofi and pcie fabrics too; about a minute by themselves). What distcheck
# adds is the tarball: every test program is still built from it, and test-compat still runs
# the compat programs it ships.
dc_tests=$(printf 'print-tests:\n\t@echo $(TESTS)\n' |
	make -s -C "$top/_build/plain" -f Makefile -f - print-tests 2>/dev/null |
	tr ' ' '\n' | grep -v -e '^$' -e '^tests/fault/test-fault$' -e '^tests/mp/' | tr '\n' ' ')
check distcheck make -j"$jobs" -C "$top/_build/plain" distcheck \
	DISTCHECK_CONFIGURE_FLAGS=--enable-werror ${dc_tests:+TESTS="$dc_tests"}
# A failed distcheck keeps its tree: show what its failing tests said.
for f in "$top"/_build/plain/libscif-*/_build/sub/test-suite.log; do
	[ -f "$f" ] && grep -qE '^(FAIL|ERROR): ' "$f" || continue
	grep -vE '^\[(RUN |PASS)\]' "$f" | head -n 80 | sed 's/^/    /'
done

stage ""
echo "total: $SECONDS s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
