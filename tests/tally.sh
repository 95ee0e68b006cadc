# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/tally.sh - sourced by the scripts that run Criterion programs in a harness of their
# own (tests/ofi/check-ofi.sh, tests/pcie/check-pcie.sh).
#
# tally LABEL LOG RC TIMEOUT: print the results in LOG (Criterion --verbose output of a program
# that exited RC, under a hard limit of TIMEOUT seconds) without the start of each test and
# the excluded ones, then "PASS: LABEL: ok/n passed" or "FAIL: ...", and add to the caller's
# $passed and $failed: Criterion's passing tests, and its failing and crashing ones; a program
# without a summary (crashed, timed out) or that ran nothing counts as one failure.
tally() {
	local label=$1 log=$2 rc=$3 limit=$4 line why t ok f c
	grep -a -v -E '^\[(RUN |SKIP)\]|^\[====\] Running' "$log"
	line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then why="timed out after $limit s"; else why="exit status $rc"; fi
		echo "FAIL: $label: no result ($why; log: $log)"
		failed=$((failed + 1))
		return
	fi
	t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line")
	ok=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
	f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
	c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$line")
	passed=$((passed + ok))
	failed=$((failed + f + c))
	if [ $((f + c)) = 0 ] && [ "$t" -gt 0 ]; then
		echo "PASS: $label: $ok/$t passed"
	else
		echo "FAIL: $label: $ok/$t passed (log: $log)"
		[ "$t" -gt 0 ] || failed=$((failed + 1)) # nothing ran: the filter matched nothing
	fi
}
