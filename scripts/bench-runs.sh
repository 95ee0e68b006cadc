#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run scif_bench N times (default 3) with the given arguments and print, for every SCIF row
# and every target, the range of its same-run ratio over the runs: the figures a note
# reports. A ratio is only meaningful against baselines of the same run (README, "The
# benchmark"); this script never mixes runs, it only gathers their ratios.
#   bash scripts/bench-runs.sh 3 --peers --tests lat,bw --sizes 8,64K,4M
# Uses the scif_bench of BUILD (default _build/bench, as scripts/bench.sh builds it) and
# jq. The JSON of each run stays in BUILD/bench-runs/.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-3}
shift || true
build=${BUILD:-$top/_build/bench}
bench=$build/tools/scif_bench/scif_bench
command -v jq >/dev/null || { echo "bench-runs: needs jq (apt-get install jq)" >&2; exit 1; }
[ -x "$bench" ] || { echo "bench-runs: no $bench (run scripts/bench.sh first)" >&2; exit 1; }
out=$build/bench-runs
mkdir -p "$out"
rm -f "$out"/run-*.json
for i in $(seq 1 "$runs"); do
	echo "bench-runs: run $i of $runs" >&2
	"$bench" "$@" --json "$out/run-$i.json" >"$out/run-$i.txt" 2>&1 ||
		{ echo "bench-runs: run $i failed (see $out/run-$i.txt)" >&2; exit 1; }
done
# Per row: min-max of the ratio to its baseline, of vs peer, and the 8 B placement (base).
jq -rs '
  def r3: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
  def range(f): [.[] | f | select(. != null)] | if length == 0 then "-"
      else "\(min | r3)-\(max | r3)" end;
  [.[] | .results[] | select(.is_baseline | not)] | group_by(.test, .size)[] |
  "\(.[0].test)\t\(.[0].size)\t\(.[0].baseline // "-")\t\(range(.ratio))\t\(.[0].peer // "-")\t\(range(.ratio_peer))\t\(range(.baseline_median))\t\([.[] | select(.peer_placement_differs)] | length)"
' "$out"/run-*.json | sort -t $'\t' -k1,1 -k2,2n |
	(printf 'test\tsize\tbaseline\tratio range\tpeer\tvs peer range\tbase range\tpeer placed otherwise (runs)\n'; cat) |
	column -t -s $'\t'
echo
jq -rs '
  def r3: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
  [.[] | .targets[]] | group_by(.target)[] |
  ([.[] | .value | select(. != null)]) as $v |
  "\(.[0].target)\t\(if ($v | length) == 0 then "not measured" else "\($v | min | r3)x-\($v | max | r3)x" end)\tmet in \([.[] | select(.met == true)] | length) of \(length)"
' "$out"/run-*.json | column -t -s $'\t'
