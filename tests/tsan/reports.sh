#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# reports.sh - the distinct ThreadSanitizer reports in the logs of the TSan test programs
# (tests/tsan), one per pair of accesses: the kind, the first project frame of each of the
# two stacks, how often and in which tests (by the runner's "[RUN ] suite::name (pid N)"
# lines; a pid the runner did not start is a peer process), then the first report in full.
#   tests/tsan/reports.sh LOG...
# Prints nothing if there is no report.
awk '
FNR == 1 { prog = FILENAME; sub(/.*\//, "", prog); sub(/\.log$/, "", prog) }
/^\[RUN \] / { p = $NF; sub(/\)$/, "", p); test_of[p] = prog " " $3 }
/^WARNING: ThreadSanitizer: / {
	inrep = 1; block = $0 "\n"; kind = $0; sub(/^WARNING: ThreadSanitizer: /, "", kind);
	pid = kind; sub(/.*pid=/, "", pid); sub(/\).*/, "", pid); sub(/ \(pid=.*/, "", kind);
	nstack = 0; top[1] = top[2] = ""; first[1] = first[2] = ""; next
}
inrep && /^SUMMARY: ThreadSanitizer/ {
	for (i = 1; i <= 2; i++) if (top[i] == "") top[i] = first[i];
	key = kind " | " top[1] " | " top[2];
	if (!(key in count)) { order[++n] = key; full[key] = block }
	count[key]++;
	who = (pid in test_of) ? test_of[pid] : prog " (a peer process)";
	if (index(tests[key], who) == 0) tests[key] = tests[key] "\n      " who;
	inrep = 0; next
}
inrep {
	block = block $0 "\n";
	if ($0 ~ /^  [A-Z]/ && $0 !~ /^  (Location|Mutex|Thread|Previous atomic)/ || $0 ~ /^  Previous/) nstack++;
	if ($0 ~ /^    #[0-9]+ / && nstack >= 1 && nstack <= 2) {
		f = $2 " " $3; sub(/ (\.\.\/)+/, " ", f);
		if (first[nstack] == "") first[nstack] = f;
		if (top[nstack] == "" && $3 ~ /(libscif|virtio-over-scif|tests)\//) top[nstack] = f;
	}
}
END {
	if (!n) exit;
	printf "%d distinct ThreadSanitizer reports\n", n;
	for (i = 1; i <= n; i++) {
		k = order[i];
		printf "\n--- %d: %s\n    seen %d times, in:%s\n", i, k, count[k], tests[k];
		printf "%s", full[k];
	}
}' "$@"
