#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/baseline.sh [--runs N] [--no-pin] - what `make bench-ofi` runs: the figures the
# ofi fabric's benchmark is compared with, between two network namespaces made by
# tests/ofi/netns.sh (the same topology as check-ofi.sh), node 1 the server, node 0 the client.
#
# One line per figure and run, "<figure>: <value> <unit>":
#   fi_pingpong rdm 8B          libfabric's fi_pingpong -p tcp -e rdm (tcp;ofi_rxm, what the
#                               ofi fabric uses), 8-byte messages: usec/xfer, half a round trip
#   fi_pingpong msg 8B          the same on tcp's own MSG endpoints (no ofi_rxm)
#   fi_rma_bw write rdm 4MiB    fabtests' fi_rma_bw -p tcp -e rdm -o write -S 4 MiB: MB/s
#   fi_rma_bw write msg 4MiB    the same on MSG endpoints
#   tcp lat 8B                  tests/ofi/tcp-pp (C, plain sockets, TCP_NODELAY): ping-pong
#                               of 8 bytes, usec/xfer, half a round trip
#   tcp bw 4MiB                 tests/ofi/tcp-pp: 4 MiB messages one way, MB/s
#   scif lat 8B (P)             scif_bench across the same namespaces on the ofi fabric over
#                               libfabric provider P (tcp, sockets): 8-byte send/recv, half
#                               the median round trip, usec/xfer (as fi_pingpong counts)
#   scif writeto 4MiB (P)       scif_bench rma-write/sync-cpu at 4 MiB: MB/s
#   ... (tcp, SCIF_OFI_PUT=0)   the same with every flush an RDMA write (no PUT messages),
#                               to show what carrying data, index and doorbell together gains
#   ratio ...                   SCIF over the provider's own figure of the same run
# MB/s is 10^6 bytes per second, as fabtests print it. With --runs N > 1, a last block gives
# each figure's median and range (min..max) over the runs.
#
# fabtests (fi_rma_bw) are built from FABTESTS_TARBALL into the build tree once, in the
# place and the way check-provider.sh builds them (tests/provider/fabtests-1.17.0), and never
# copied into the source tree; without them the fi_rma_bw lines say why.
#
# Client and server are pinned to the first and second CPU this script may use (as scif_bench
# pins its client and server), unless --no-pin. fi_pingpong and fi_rma_bw busy-poll their
# completion queues, tcp-pp sleeps in recv(): on a busy machine the busy-pollers suffer most.
#
# Environment (set by the make target): top_builddir, top_srcdir (absolute);
# OFI_LAT_ITERS (10000), OFI_BW_ITERS (100), OFI_BW_WINDOW (16, fi_rma_bw -W). Needs root.
set -uo pipefail

: "${top_builddir:?run through make bench-ofi}" "${top_srcdir:?run through make bench-ofi}"
here=$top_srcdir/tests/ofi
runs=1
pin=1
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:-}; shift 2 || break ;;
	--runs=*) runs=${1#--runs=}; shift ;;
	--no-pin) pin=0; shift ;;
	*) echo "usage: baseline.sh [--runs N] [--no-pin]" >&2; exit 2 ;;
	esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "baseline.sh: --runs needs a positive number" >&2; exit 2; }
lat_iters=${OFI_LAT_ITERS:-10000}
bw_iters=${OFI_BW_ITERS:-100}
bw_window=${OFI_BW_WINDOW:-16}
bw_size=$((4 << 20))
step_timeout=300

FABTESTS_TARBALL=${FABTESTS_TARBALL:-$top_srcdir/../shared/vendor/fabtests-1.17.0.tar.gz}
[ -r "$FABTESTS_TARBALL" ] || FABTESTS_TARBALL=/work/shared/vendor/fabtests-1.17.0.tar.gz
ftwork=$top_builddir/tests/provider
ftsrc=$ftwork/fabtests-1.17.0
ftbin=$ftsrc/install/bin
TCP_PP=$top_builddir/tests/ofi/tcp-pp
SCIF_BENCH=$top_builddir/tools/scif_bench/scif_bench

[ "$(id -u)" = 0 ] || { echo "baseline.sh: needs root (network namespaces)" >&2; exit 1; }
[ -x "$TCP_PP" ] || { echo "baseline.sh: no $TCP_PP (make tests/ofi/tcp-pp)" >&2; exit 1; }
command -v fi_pingpong >/dev/null || echo "baseline.sh: no fi_pingpong (libfabric-bin)" >&2

# ---------------------------------------------------------------------------------------
run=$$
server= # the server running now, if any (its timeout(1) process)
cleanup() {
	if [ -n "$server" ]; then
		kill -TERM "$server" 2>/dev/null
		wait "$server" 2>/dev/null
	fi
	bash "$here/netns.sh" down "$run"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# fabtests, once, as check-provider.sh builds them.
fabtests_build() {
	[ -f "$ftsrc/.built" ] && [ -x "$ftbin/fi_rma_bw" ] && return 0
	[ -r "$FABTESTS_TARBALL" ] || { ft_why="no $FABTESTS_TARBALL"; return 1; }
	echo "baseline: building fabtests in $ftsrc (log: $ftwork/fabtests-build.log)" >&2
	mkdir -p "$ftwork" && rm -rf "$ftsrc" &&
		tar xzf "$FABTESTS_TARBALL" -C "$ftwork" &&
		(cd "$ftsrc" && ./autogen.sh && ./configure --with-libfabric=/usr --prefix="$ftsrc/install" &&
			make -j"$(nproc 2>/dev/null || echo 2)" install) >"$ftwork/fabtests-build.log" 2>&1 &&
		touch "$ftsrc/.built" && return 0
	ft_why="fabtests build failed (log: $ftwork/fabtests-build.log)"
	return 1
}
ft_why=
have_ft=0
fabtests_build && have_ft=1

nodes_file=$(bash "$here/netns.sh" up "$run" 2) || { echo "baseline.sh: no namespaces" >&2; exit 1; }
srv_addr=$(awk '$1 == 1 { print $2 }' "$nodes_file")

# The CPUs for client and server: the first two this process may run on.
cpus=()
if [ "$pin" = 1 ]; then
	for r in $(grep Cpus_allowed_list /proc/self/status | cut -f2 | tr ',' ' '); do
		if [[ $r == *-* ]]; then
			for ((c = ${r%-*}; c <= ${r#*-}; c++)); do cpus+=("$c"); done
		else
			cpus+=("$r")
		fi
	done
	[ ${#cpus[@]} -ge 2 ] || pin=0
fi
on() { # on NODE CMD...: CMD in NODE's namespace, pinned (client node 0: CPU 0; server: CPU 1)
	local node=$1; shift
	if [ "$pin" = 1 ]; then
		set -- taskset -c "${cpus[$node]}" "$@"
	fi
	# exec: started with & (or in $(...)), the subshell *is* timeout, so that killing $!
	# reaches the program (netns.sh, ip netns exec and taskset exec it in turn); a kill of
	# a subshell that waited for it would leave the server running, spinning the CPUs the
	# next figures need.
	exec timeout -k 5 "$step_timeout" bash "$here/netns.sh" exec "$run" "$node" "$@"
}

# wait_listen PORT: until something listens on TCP PORT in node 1 (10 s).
wait_listen() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ -n "$(ip netns exec "scif${run}n1" ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	return 1
}

# fabtests_col COLUMN < output: the value under the header COLUMN in the last result line.
fabtests_col() {
	awk -v want="$1" '
		$1 == "bytes" { for (i = 1; i <= NF; i++) if ($i == want) col = i; next }
		col && NF >= col { v = $col }
		END { if (v != "") print v; else exit 1 }'
}

declare -A samples units
order=()
figure() { # figure NAME VALUE UNIT
	echo "$1: $2 $3"
	samples[$1]+="$2 "
	units[$1]=$3
	[[ " ${order[*]} " == *" $1 "* ]] || order+=("$1")
}
nofigure() { echo "$1: n/a ($2)"; }

# fabtests_pair NAME PORT COLUMN UNIT SERVER-CMD... -- CLIENT-CMD...: one fabtests figure
# (PORT: where the server listens once it is ready).
fabtests_pair() {
	local name=$1 port=$2 col=$3 unit=$4 srv=() cli=() out v
	shift 4
	while [ "$1" != -- ]; do srv+=("$1"); shift; done
	shift
	cli=("$@")
	on 1 "${srv[@]}" >/dev/null 2>&1 &
	server=$!
	if ! wait_listen "$port"; then
		kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; server=
		nofigure "$name" "the server did not start"; return
	fi
	out=$(on 0 "${cli[@]}" 2>&1)
	wait "$server" 2>/dev/null
	server=
	if v=$(fabtests_col "$col" <<<"$out"); then
		figure "$name" "$v" "$unit"
	else
		nofigure "$name" "$(tail -n 1 <<<"$out")"
	fi
}

# scif_pair PROVIDER [LABEL ENV=VALUE...]: scif_bench server in node 1, client in node 0, on
# the ofi fabric; figures named "(LABEL)" (default: PROVIDER), with the extra environment.
scif_pair() {
	local prov=$1 label=${2:-$1} out v sport=$((3300 + RANDOM % 2000)) rundir
	shift; [ $# -gt 0 ] && shift
	local env=(env SCIF_FABRIC=ofi SCIF_NODES_FILE="$nodes_file" FI_PROVIDER="$prov"
		LD_LIBRARY_PATH="$top_builddir/libscif/.libs" "$@")
	prov=$label
	if [ ! -x "$SCIF_BENCH" ]; then
		nofigure "scif lat 8B ($prov)" "no $SCIF_BENCH"; return
	fi
	rundir=$(mktemp -d /tmp/scif-bench-ofi.XXXXXX)
	on 1 "${env[@]}" SCIF_NODE=1 SCIF_RUN_DIR="$rundir" "$SCIF_BENCH" --server --port "$sport" \
		>/dev/null 2>&1 &
	server=$!
	if ! wait_listen "$sport"; then
		kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; server=
		rm -rf "$rundir"
		nofigure "scif lat 8B ($prov)" "the scif_bench server did not start"; return
	fi
	out=$(on 0 "${env[@]}" SCIF_NODE=0 SCIF_RUN_DIR="$rundir" "$SCIF_BENCH" --client --node 1 \
		--port "$sport" --no-pin --tests lat,rma-write/sync-cpu --sizes 8,4M --time 1 2>&1)
	kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; server=
	rm -rf "$rundir"
	v=$(awk '$1 == "lat" && $2 == "8" { printf "%.2f", $3 / 2 }' <<<"$out")
	if [ -n "$v" ]; then figure "scif lat 8B ($prov)" "$v" usec/xfer
	else nofigure "scif lat 8B ($prov)" "$(tail -n 1 <<<"$out")"; fi
	v=$(awk '$1 == "rma-write/sync-cpu" && $2 == "4M" { printf "%.1f", $3 * 1000 }' <<<"$out")
	if [ -n "$v" ]; then figure "scif writeto 4MiB ($prov)" "$v" MB/s
	else nofigure "scif writeto 4MiB ($prov)" "$(tail -n 1 <<<"$out")"; fi
}

# ratio NAME A B: A / B of this run's last samples, if both exist.
ratio() {
	local a b
	read -r -a a <<<"${samples[$2]:-}"
	read -r -a b <<<"${samples[$3]:-}"
	[ ${#a[@]} -gt 0 ] && [ ${#b[@]} -gt 0 ] || return 0
	figure "$1" "$(awk -v x="${a[-1]}" -v y="${b[-1]}" 'BEGIN { printf "%.3f", x / y }')" x
}

one_run() {
	local e v out port=5001
	for e in rdm msg; do
		if command -v fi_pingpong >/dev/null; then
			fabtests_pair "fi_pingpong $e 8B" 47592 usec/xfer usec/xfer \
				fi_pingpong -p tcp -e "$e" -S 8 -I "$lat_iters" -- \
				fi_pingpong -p tcp -e "$e" -S 8 -I "$lat_iters" "$srv_addr"
		else
			nofigure "fi_pingpong $e 8B" "fi_pingpong is not installed"
		fi
	done
	for e in rdm msg; do
		if [ "$have_ft" = 1 ]; then
			fabtests_pair "fi_rma_bw write $e 4MiB" 9228 MB/sec MB/s \
				"$ftbin/fi_rma_bw" -p tcp -e "$e" -o write -S "$bw_size" -I "$bw_iters" \
				-W "$bw_window" -s "$srv_addr" -- \
				"$ftbin/fi_rma_bw" -p tcp -e "$e" -o write -S "$bw_size" -I "$bw_iters" \
				-W "$bw_window" "$srv_addr"
		else
			nofigure "fi_rma_bw write $e 4MiB" "$ft_why"
		fi
	done
	on 1 "$TCP_PP" server "$srv_addr" "$port" >/dev/null 2>&1 &
	server=$!
	out=$(on 0 "$TCP_PP" client "$srv_addr" "$port" lat 8 "$lat_iters" bw "$bw_size" \
		"$bw_iters" 2>&1)
	wait "$server" 2>/dev/null
	server=
	v=$(sed -n -E 's/^tcp-pp lat: .* ([0-9.]+) usec\/xfer.*/\1/p' <<<"$out")
	if [ -n "$v" ]; then figure "tcp lat 8B" "$v" usec/xfer; else nofigure "tcp lat 8B" "$out"; fi
	v=$(sed -n -E 's/^tcp-pp bw: .* ([0-9.]+) MB\/s.*/\1/p' <<<"$out")
	if [ -n "$v" ]; then figure "tcp bw 4MiB" "$v" MB/s; else nofigure "tcp bw 4MiB" "$out"; fi
	scif_pair tcp
	scif_pair tcp "tcp, SCIF_OFI_PUT=0" SCIF_OFI_PUT=0
	scif_pair sockets
	ratio "ratio scif lat (tcp) / fi_pingpong rdm" "scif lat 8B (tcp)" "fi_pingpong rdm 8B"
	ratio "ratio scif lat (tcp, SCIF_OFI_PUT=0) / fi_pingpong rdm" \
		"scif lat 8B (tcp, SCIF_OFI_PUT=0)" "fi_pingpong rdm 8B"
	ratio "ratio scif writeto (tcp) / fi_rma_bw rdm" "scif writeto 4MiB (tcp)" \
		"fi_rma_bw write rdm 4MiB"
	ratio "ratio scif lat (tcp) / tcp" "scif lat 8B (tcp)" "tcp lat 8B"
}

echo "baseline: netns run $run, server node 1 ($srv_addr), client node 0;" \
	"$([ "$pin" = 1 ] && echo "client on CPU ${cpus[0]}, server on CPU ${cpus[1]}" || echo "not pinned");" \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= runs; r++)); do
	[ "$runs" -gt 1 ] && echo "== run $r of $runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
	one_run
done
if [ "$runs" -gt 1 ]; then
	echo "== median and range over $runs runs"
	for name in "${order[@]}"; do
		read -r -a v <<<"${samples[$name]}"
		printf '%s\n' "${v[@]}" | sort -g | awk -v name="$name" -v unit="${units[$name]}" \
			'{ a[NR] = $1 } END {
				m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
				printf "%s: %.2f %s (%s..%s, %d runs)\n", name, m, unit, a[1], a[NR], NR }'
	done
fi
