#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# run.sh - run the libFuzzer targets of tests/fuzz for a bounded time each, starting from
# their seed corpora, and report executions per target. `make fuzz` and scripts/test.sh use it.
#
#   tests/fuzz/run.sh [--seconds N] [--build DIR] [--corpus DIR] [target...]
#
# --build is a tree configured with CC=clang --enable-fuzz in which `make fuzz-build` ran
# (default: .); --corpus holds the seeds, one directory per target (default: next to this
# script). New inputs go to DIR/tests/fuzz/work/<target>, crashes to
# DIR/tests/fuzz/artifacts/, each target's output to DIR/tests/fuzz/<target>.log.
# Exit status 0 if no target crashed, leaked, hung or failed a check; else 1.
set -uo pipefail
seconds=60
build=.
corpus=$(cd "$(dirname "$0")" && pwd)/corpus
targets=()
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--corpus) corpus=$2; shift 2 ;;
	-h|--help) sed -n '3,12p' "$0"; exit 0 ;;
	*) targets+=("$1"); shift ;;
	esac
done
[ ${#targets[@]} -gt 0 ] || targets=(fuzz-accept fuzz-connect fuzz-ring fuzz-bulk fuzz-ctl fuzz-rb fuzz-vq)
dir=$build/tests/fuzz
rc=0
# The targets make their SCIF_RUN_DIR under TMPDIR; libFuzzer may end them without exit
# handlers, so the whole directory goes here, whatever happens.
fztmp=$(mktemp -d /tmp/scif-fz.XXXXXX) || exit 1
trap 'rm -rf "$fztmp"' EXIT
export TMPDIR=$fztmp
for t in "${targets[@]}"; do
	exe=$dir/$t
	if [ ! -x "$exe" ]; then
		echo "$t: not built (make fuzz-build in a tree configured with CC=clang --enable-fuzz)"
		rc=1
		continue
	fi
	mkdir -p "$dir/work/$t" "$dir/artifacts"
	log=$dir/$t.log
	# -timeout: an input running this long is a hang (the targets bound their own waits).
	start=$SECONDS
	"$exe" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$dir/artifacts/$t-" "$dir/work/$t" "$corpus/$t" >"$log" 2>&1
	st=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	echo "$t: ${execs:-?} execs in $((SECONDS - start)) s, ${rate:-?} execs/s, exit $st"
	if [ "$st" -ne 0 ]; then
		# The diagnosis: the target's own message and the sanitizer's report.
		grep -a -E '^fuzz: |ERROR: |SUMMARY: |^    #[0-9]+ |artifact|Test unit written' "$log" |
			head -n 40 | sed 's/^/    /'
		rc=1
	fi
done
exit $rc
