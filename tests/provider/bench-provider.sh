#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/provider/bench-provider.sh - what `make bench-provider` runs: the scif provider's
# latency and bandwidth next to what a user would run instead on one machine, in one run:
#   fi_rdm_tagged_pingpong  round trips, 8 B to 1 MiB, scif against libfabric's shm
#   fi_rma_bw -o write      4 MiB RMA writes, scif against shm
#   scif_bench_mpi          MPI round trips (8 B) and bandwidth (64 KiB, 4 MiB) over scif
#                           (pml cm, mtl ofi) against Open MPI's vader (pml ob1)
#   scif_bench              libscif's own 8 B round trip, and memcpy at 4 MiB
#   scif_bench_fi           libfabric's 8 B tagged round trip over scif, timed as scif_bench
#                           times libscif's (median of round trips timed one by one, no
#                           clock read while polling: fabtests' loop reads it after every
#                           completion and every empty CQ read, which its figure includes)
# then the ratios. The two processes of every pair are pinned to CPUs 0 and 1 (taskset;
# mpirun --bind-to core), as scif_bench pins its own, and scif's are on SCIF nodes 0 and 1,
# as scif_bench's host and card are. fabtests' round trip is its usec/xfer times two (it
# times a whole ping-pong loop and counts two transfers per iteration); MPI's and
# scif_bench's are medians of individually timed round trips. Bandwidths are GB/s (10^9 B/s).
#
# The 8-byte round trips and scif's 4 MiB RMA write are measured in BENCH_ROUNDS (3) rounds,
# and every ratio is taken within a round: the host moves the two vCPUs between cores and
# sibling threads every minute or so, which changes a round trip by 2-4x, so figures taken
# half a minute apart do not divide. Within a round, each 8-byte round trip over scif is
# measured between two runs of each of its references (shm, then scif_bench lat, scif's
# ping-pong in fabtests and in scif_bench_fi, scif_bench lat, shm; vader, MPI over scif,
# vader), and divided by the lower of
# the two, as scif_bench takes its baselines: the ratio can only come out worse for it. When
# a reference's two runs differ by more than 1.25x the CPUs moved in between, and the group
# is measured again (at most three times; a round that never settles is marked "~" and still
# counts). The median of the rounds' ratios is printed, with the range. Each round also
# runs the scif ping-pong and MPI over the SCIF byte stream (FI_SCIF_LANE_SIZE=0), to show
# what the provider's mapped lanes are worth in the same round. scif's RMA write is measured
# between two scif_bench runs and divided by the higher of their memcpy figures (one run's
# memcpy may differ from the next one's by 1.4x here).
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute), MPICC (empty
# without Open MPI), FABTESTS_TARBALL. BENCH_MPI_SECONDS (0.5) times each MPI size,
# BENCH_ROUNDS (3) the rounds.
# Exits non-zero when a measurement could not be made (after printing all the others).
set -uo pipefail

: "${top_builddir:?run through make bench-provider}" "${top_srcdir:?run through make bench-provider}"
MPICC=${MPICC:-}
BENCH_MPI_SECONDS=${BENCH_MPI_SECONDS:-0.5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
work=$top_builddir/tests/provider
ftbin=$work/fabtests-1.17.0/install/bin
out=$work/bench
mpi_bin=$top_builddir/tools/scif_bench/scif_bench_mpi
fi_bin=$top_builddir/tools/scif_bench/scif_bench_fi
missing=0
export FI_PROVIDER_PATH=$top_builddir/providers/scif/.libs
export LD_LIBRARY_PATH=$top_builddir/libscif/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SCIF_LOCAL_NODES=2
mkdir -p "$out"

# fabtests, built once (check-provider.sh's fabtests-build check).
bash "$top_srcdir/tests/provider/check-provider.sh" fabtests-build | grep -v 'passed, ' ||
	true
[ -x "$ftbin/fi_rma_bw" ] || { echo "bench-provider: fabtests could not be built"; exit 1; }

# Namespaces of their own for each measured pair, as check-provider.sh runs (a private
# /dev/shm for shm; nothing is left running): isolate, new_run_dir, done_run_dir.
# shellcheck source=tests/provider/isolate.sh
. "$top_srcdir/tests/provider/isolate.sh"

# fabtest PROVIDER LOG PROGRAM ARGS...: a fabtests pair, server on CPU 0 (SCIF node 0),
# client on CPU 1 (SCIF node 1); the client's machine-readable output (-m) goes to LOG, the
# server's to LOG.server. shm's addresses are names, scif's SCIF node numbers.
fabtest() {
	local prov=$1 log=$2 prog=$3 rc
	shift 3
	local s_src=127.0.0.1 c_src=127.0.0.1 dst=127.0.0.1 filter=
	# scif's own RDM endpoint: libfabric lists "scif;ofi_rxm" first and fabtests take the
	# first entry (see check-provider.sh)
	[ "$prov" = scif ] && { s_src=0; c_src=1; dst=0; filter=^ofi_rxm,ofi_rxd,ofi_mrail; }
	new_run_dir
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout -k 5 120 "${isolate[@]}" env ${filter:+FI_PROVIDER="$filter"} \
		S_SRC="$s_src" C_SRC="$c_src" DST="$dst" LOG="$log" \
		bash -c '
		SCIF_NODE=0 taskset -c 0 "$@" -s "$S_SRC" >"$LOG.server" 2>&1 &
		server=$!
		sleep 1
		SCIF_NODE=1 taskset -c 1 "$@" -s "$C_SRC" "$DST" >"$LOG" 2>&1
		rc=$?
		wait "$server" || rc=1
		exit $rc' fabtest "$ftbin/$prog" -p "$prov" -m "$@"
	rc=$?
	done_run_dir
	return $rc
}

# The number after "KEY: " in a fabtests -m line.
ft_field() { grep -o "$1: [0-9.]*" "$2" 2>/dev/null | tail -n 1 | awk '{print $2}'; }

declare -A fig=()
# note KEY LOG: a measurement that could not be made.
lost() { missing=$((missing + 1)); echo "    $1: no result (log: $2)"; }

pingpong_sizes="8 256 4096 65536 1048576"
iters_for() {
	if [ "$1" -le 8 ]; then echo 100000; elif [ "$1" -le 4096 ]; then echo 20000
	elif [ "$1" -le 65536 ]; then echo 5000; else echo 500; fi
}

# pingpong PROVIDER SIZE LOG: fabtests' tagged round trip in us, or nothing.
pingpong() {
	fabtest "$1" "$3" fi_rdm_tagged_pingpong -S "$2" -I "$(iters_for "$2")" -w 100 &&
		ft_field usec/xfer "$3" | awk '{ printf "%.3f", 2 * $1 }'
}

echo "bench-provider: fi_rdm_tagged_pingpong, scif and shm (8 B: in the rounds below)"
for prov in scif shm; do
	for s in $pingpong_sizes; do
		[ "$s" = 8 ] && continue
		log=$out/pingpong-$prov-$s.txt
		fig[pp-$prov-$s]=$(pingpong "$prov" "$s" "$log")
		[ -n "${fig[pp-$prov-$s]:-}" ] || lost "$prov $s B" "$log"
	done
done

# rma_bw PROVIDER LOG: fi_rma_bw's 4 MiB write bandwidth in GB/s, or nothing.
rma_bw() {
	fabtest "$1" "$2" fi_rma_bw -e rdm -o write -S 4194304 -I 500 -W 64 &&
		ft_field MB/sec "$2" | awk '{ printf "%.3f", $1 / 1000 }'
}

echo "bench-provider: fi_rma_bw -e rdm -o write, 4 MiB, shm (scif: in the rounds below)"
fig[rma-shm]=$(rma_bw shm "$out/rma-write-shm.txt")
[ -n "${fig[rma-shm]:-}" ] || lost "shm RMA write" "$out/rma-write-shm.txt"

# mpi TRANSPORT PATTERN SIZES...: scif_bench_mpi PATTERN over scif (ranks on SCIF nodes 0
# and 1) or vader, its result lines to stdout.
mpi() {
	local transport=$1 pattern=$2
	shift 2
	# shellcheck disable=SC2054 # "self,vader" is one argument
	local -a args=(--mca pml ob1 --mca btl self,vader) wrap=()
	if [ "$transport" = scif ]; then
		# scif's own RDM endpoints, not ofi_rxm layered on its MSG ones (check-provider.sh)
		args=(--mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include scif
		      -x FI_PROVIDER=^ofi_rxm)
		wrap=("$top_srcdir/tests/provider/scif-rank")
	fi
	new_run_dir
	timeout -k 5 180 "${isolate[@]}" mpirun --allow-run-as-root -np 2 --bind-to core \
		--map-by core "${args[@]}" -x FI_PROVIDER_PATH -x LD_LIBRARY_PATH -x SCIF_RUN_DIR \
		-x SCIF_LOCAL_NODES "${wrap[@]}" "$mpi_bin" "$pattern" "$BENCH_MPI_SECONDS" "$@" \
		2>&1 | tee -a "$out/mpi-$transport.log" | grep -E '^(lat|bw) '
	done_run_dir
}

echo "bench-provider: scif_bench_mpi, over scif (mtl ofi) and vader"
if [ -z "$MPICC" ] || [ ! -x "$mpi_bin" ]; then
	echo "    no $mpi_bin (configure found no mpicc)"
	missing=$((missing + 4))
else
	for transport in scif vader; do
		: >"$out/mpi-$transport.log"
		while read -r kind size v _; do
			fig[mpi-$kind-$transport-$size]=$v
		done < <(mpi "$transport" bw 65536 4194304)
		for k in bw-65536 bw-4194304; do
			[ -n "${fig[mpi-${k%%-*}-$transport-${k#*-}]:-}" ] ||
				lost "MPI $transport $k" "$out/mpi-$transport.log"
		done
	done
fi

# scif_bench pins itself (CPUs 0 and 1) and starts its own card process.
json_median() {
	python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
try:
    for r in json.load(open(sys.argv[1]))["results"]:
        if r["test"] == sys.argv[2] and r["size"] == int(sys.argv[3]):
            print(r["median"])
            break
except (OSError, ValueError, KeyError):
    pass
EOF
}
# scif_bench_run LOG TESTS SIZE: scif_bench with its own run directory, JSON to LOG.json.
scif_bench_run() {
	new_run_dir
	timeout -k 5 120 "$top_builddir/tools/scif_bench/scif_bench" --tests "$2" --sizes "$3" \
		--json "$1.json" >"$1.txt" 2>&1
	done_run_dir
}

# ---------------------------------------------------------------------------------------
# Rounds: the 8-byte round trips between runs of their references, and scif's RMA write
# next to memcpy; every ratio within one round (see the top of this file).

# median LIST...: the median of the numbers given (empty for none).
median() { printf '%s\n' "$@" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
# span LIST...: "min-max" of the numbers given.
span() { printf '%s\n' "$@" | sed '/^$/d' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f-%.2f", lo, hi }'; }
# quot A B: A / B to 3 decimals, or nothing.
quot() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b }'; }
# lower A B: the lower of the two (either may be empty); higher: the higher.
lower() { printf '%s\n' "$@" | sed '/^$/d' | sort -g | head -n 1; }
higher() { printf '%s\n' "$@" | sed '/^$/d' | sort -g | tail -n 1; }
# settled A B: both measured, and within 1.25x of each other.
settled() {
	[ -n "${1:-}" ] && [ -n "${2:-}" ] &&
		awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= 1.25 * b && b <= 1.25 * a) }'
}
# sb_lat LOG: scif_bench's 8-byte round trip in us, or nothing.
sb_lat() { scif_bench_run "$1" lat 8; json_median "$1.json" lat 8; }
# fi_lat LOG: scif_bench_fi's 8-byte tagged round trip over scif in us, or nothing.
fi_lat() {
	new_run_dir
	timeout -k 5 120 "${isolate[@]}" env FI_PROVIDER=scif "$fi_bin" 0.5 8 >"$1" 2>&1
	done_run_dir
	awk '$1 == "lat" { print $3 }' "$1"
}
# mpi_lat TRANSPORT: scif_bench_mpi's 8-byte round trip in us, or nothing.
mpi_lat() { mpi "$1" lat 8 | awk '$1 == "lat" { print $3 }'; }

declare -A runs=()
have_mpi=false
[ -n "$MPICC" ] && [ -x "$mpi_bin" ] && have_mpi=true
echo "bench-provider: $BENCH_ROUNDS rounds: 8-byte round trips (fabtests scif between shm and scif_bench lat; MPI scif between vader), 4 MiB RMA write (fi_rma_bw scif, scif_bench memcpy)"
for r in $(seq "$BENCH_ROUNDS"); do
	moved=''
	for try in 1 2 3; do
		pph1=$(pingpong shm 8 "$out/pingpong-shm-8-r$r-a.txt")
		sbl1=$(sb_lat "$out/scif_bench-lat-r$r-a")
		pps=$(pingpong scif 8 "$out/pingpong-scif-8-r$r.txt")
		pfi=$(fi_lat "$out/scif_bench_fi-r$r.txt")
		sbl2=$(sb_lat "$out/scif_bench-lat-r$r-b")
		pph2=$(pingpong shm 8 "$out/pingpong-shm-8-r$r-b.txt")
		settled "$sbl1" "$sbl2" && settled "$pph1" "$pph2" && break
		[ "$try" = 3 ] && moved='~'
	done
	pph=$(lower "$pph1" "$pph2") sbl=$(lower "$sbl1" "$sbl2")
	# the same over the SCIF byte stream: what the mapped lanes are worth, in this round
	ppo=$(FI_SCIF_LANE_SIZE=0 pingpong scif 8 "$out/pingpong-scif-stream-8-r$r.txt")
	# memcpy before and after, the higher the bar: one scif_bench run's memcpy may differ
	# from the next one's by 1.4x here
	scif_bench_run "$out/scif_bench-rma-r$r-a" rma-write/sync-cpu 4M
	rma=$(rma_bw scif "$out/rma-write-scif-r$r.txt")
	scif_bench_run "$out/scif_bench-rma-r$r-b" rma-write/sync-cpu 4M
	mem1=$(json_median "$out/scif_bench-rma-r$r-a.json" memcpy 4194304)
	mem2=$(json_median "$out/scif_bench-rma-r$r-b.json" memcpy 4194304)
	mem=$(higher "$mem1" "$mem2")
	sbr=$(higher "$(json_median "$out/scif_bench-rma-r$r-a.json" rma-write/sync-cpu 4194304)" \
		"$(json_median "$out/scif_bench-rma-r$r-b.json" rma-write/sync-cpu 4194304)")
	ms='' mso='' mv='' mv1='' mv2=''
	if $have_mpi; then
		for try in 1 2 3; do
			mv1=$(mpi_lat vader)
			ms=$(mpi_lat scif)
			mv2=$(mpi_lat vader)
			settled "$mv1" "$mv2" && break
			[ "$try" = 3 ] && moved='~'
		done
		mv=$(lower "$mv1" "$mv2")
		mso=$(FI_SCIF_LANE_SIZE=0 mpi_lat scif)
	fi
	echo "    round $r$moved: tagged scif ${pps:-?} (scif_bench_fi ${pfi:-?}, stream ${ppo:-?}) shm ${pph1:-?}/${pph2:-?}, scif_bench lat ${sbl1:-?}/${sbl2:-?}, MPI scif ${ms:-?} (stream ${mso:-?}) vader ${mv1:-?}/${mv2:-?} (us); RMA write ${rma:-?}, memcpy ${mem1:-?}/${mem2:-?} (GB/s)"
	runs[pp-scif]+=" $pps" runs[pp-shm]+=" $pph" runs[sb-lat]+=" $sbl" runs[fi-lat]+=" $pfi"
	runs[mpi-scif]+=" $ms" runs[mpi-vader]+=" $mv"
	runs[rma-scif]+=" $rma" runs[sb-memcpy]+=" $mem" runs[sb-rma]+=" $sbr"
	runs[r-shm]+=" $(quot "$pps" "$pph")" runs[r-lat]+=" $(quot "$pps" "$sbl")"
	runs[r-filat]+=" $(quot "$pfi" "$sbl")"
	runs[r-mpi]+=" $(quot "$ms" "$mv")" runs[r-rma]+=" $(quot "$rma" "$mem")"
	runs[r-lane]+=" $(quot "$pps" "$ppo")" runs[r-lane-mpi]+=" $(quot "$ms" "$mso")"
done
# shellcheck disable=SC2086 # word splitting of the lists is wanted
{
	fig[pp-scif-8]=$(median ${runs[pp-scif]}) fig[pp-shm-8]=$(median ${runs[pp-shm]})
	fig[sb-lat]=$(median ${runs[sb-lat]}) fig[fi-lat]=$(median ${runs[fi-lat]})
	fig[mpi-lat-scif-8]=$(median ${runs[mpi-scif]}) fig[mpi-lat-vader-8]=$(median ${runs[mpi-vader]})
	fig[rma-scif]=$(median ${runs[rma-scif]}) fig[sb-memcpy]=$(median ${runs[sb-memcpy]})
	fig[sb-rma]=$(median ${runs[sb-rma]})
	for k in r-shm r-lat r-filat r-mpi r-rma r-lane r-lane-mpi; do
		fig[$k]=$(median ${runs[$k]}) fig[$k-span]=$(span ${runs[$k]})
	done
}
[ -n "${fig[pp-scif-8]}" ] || lost "scif 8 B" "$out/pingpong-scif-8-r*.txt"
[ -n "${fig[pp-shm-8]}" ] || lost "shm 8 B" "$out/pingpong-shm-8-r*.txt"
[ -n "${fig[sb-lat]}" ] || lost "scif_bench lat" "$out/scif_bench-lat-r*.txt"
[ -n "${fig[fi-lat]}" ] || lost "scif_bench_fi" "$out/scif_bench_fi-r*.txt"
[ -n "${fig[rma-scif]}" ] || lost "scif RMA write" "$out/rma-write-scif-r*.txt"
[ -n "${fig[sb-memcpy]}" ] || lost "scif_bench memcpy" "$out/scif_bench-rma-r*-?.txt"
if $have_mpi; then
	[ -n "${fig[mpi-lat-scif-8]}" ] || lost "MPI scif lat-8" "$out/mpi-scif.log"
	[ -n "${fig[mpi-lat-vader-8]}" ] || lost "MPI vader lat-8" "$out/mpi-vader.log"
fi

# ---------------------------------------------------------------------------------------
# The table: scif, the reference, scif / reference.

ratio() { # A B: A / B, or "n/a"
	if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'
	else
		echo n/a
	fi
}
row() { # WHAT SIZE UNIT SCIF REF REFNAME
	printf '%-34s %9s %12s %12s %-8s %9s\n' "$1" "$2" "${4:-n/a}${4:+ $3}" "${5:-n/a}${5:+ $3}" \
		"$6" "$(ratio "${4:-}" "${5:-}")"
}
human() { # bytes -> 8 B, 64 KiB, 4 MiB
	if [ "$1" -ge 1048576 ]; then echo "$(($1 / 1048576)) MiB"
	elif [ "$1" -ge 1024 ]; then echo "$(($1 / 1024)) KiB"
	else echo "$1 B"; fi
}

echo
echo "bench-provider: pinned to CPUs 0 and 1; round trips in us (lower is better), bandwidth GB/s"
printf '%-34s %9s %12s %12s %-8s %9s\n' test size scif reference ref scif/ref
for s in $pingpong_sizes; do
	row "fi_rdm_tagged_pingpong round trip" "$(human "$s")" us "${fig[pp-scif-$s]:-}" \
		"${fig[pp-shm-$s]:-}" shm
done
row "fi_rma_bw write" "4 MiB" GB/s "${fig[rma-scif]:-}" "${fig[rma-shm]:-}" shm
row "MPI round trip (scif_bench_mpi)" "8 B" us "${fig[mpi-lat-scif-8]:-}" \
	"${fig[mpi-lat-vader-8]:-}" vader
for s in 65536 4194304; do
	row "MPI bandwidth (scif_bench_mpi)" "$(human "$s")" GB/s "${fig[mpi-bw-scif-$s]:-}" \
		"${fig[mpi-bw-vader-$s]:-}" vader
done
row "scif_bench_fi tagged round trip" "8 B" us "${fig[fi-lat]:-}" "${fig[sb-lat]:-}" "sb lat"
row "scif_bench lat (libscif alone)" "8 B" us "${fig[sb-lat]:-}" "" ""
row "scif_bench rma-write/sync-cpu" "4 MiB" GB/s "${fig[sb-rma]:-}" "${fig[sb-memcpy]:-}" memcpy

echo
echo "bench-provider: ratios (rounds: the median of the rounds' own ratios, and their range; each to the lower of its reference's runs before and after)"
rounds() { # KEY: "0.61x (0.55-0.70)" or n/a
	if [ -n "${fig[$1]:-}" ]; then printf '%.2fx (%s)' "${fig[$1]}" "${fig[$1-span]}"; else echo n/a; fi
}
printf '  %-46s %s\n' \
	"scif/shm tagged round trip, 8 B" "$(rounds r-shm)" \
	"scif/vader MPI round trip, 8 B" "$(rounds r-mpi)" \
	"scif/vader MPI bandwidth, 4 MiB" \
	"$(ratio "${fig[mpi-bw-scif-4194304]:-}" "${fig[mpi-bw-vader-4194304]:-}")" \
	"tagged round trip / scif_bench lat, 8 B" "$(rounds r-filat)" \
	"  the same, fabtests' loop (clock reads in it)" "$(rounds r-lat)" \
	"fi_rma_bw write / memcpy, 4 MiB" "$(rounds r-rma)" \
	"lanes / SCIF stream, tagged round trip, 8 B" "$(rounds r-lane)" \
	"lanes / SCIF stream, MPI round trip, 8 B" "$(rounds r-lane-mpi)"
echo "bench-provider: logs in $out"
if [ "$missing" -gt 0 ]; then
	echo "bench-provider: $missing measurement(s) missing"
	exit 1
fi
