#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/bench-virtio.sh - `make bench-virtio` (not in CI, root): how virtio over SCIF
# compares with what the same machine does without it. One function per device:
#   bench_net    iperf3 TCP over virtio-net (card 1 <-> host TAP) against a veth pair between
#                two namespaces, BENCH_RUNS runs (3) of BENCH_TIME seconds (3) each, in the
#                same run; prints each run's ratio and the range (target: >= 0.5x veth).
# BENCH_GROUPS="net" picks some (default: each of "net block" that is defined here).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup bench
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_TIME=${BENCH_TIME:-3}

listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }
link_up() { ip -n "$1" link show "$2" 2>/dev/null | grep -q 'LOWER_UP'; }

# net_iperf SERVER_NS ADDR CLIENT_NS [ARGS]: one iperf3 TCP run; prints Mbit/s (receiver).
net_iperf() {
	local sns=$1 addr=$2 cns=$3 spid log=$VT/iperf.log; shift 3
	ip netns exec "$sns" timeout -k 2 $((BENCH_TIME + 30)) iperf3 -s -1 -B "$addr" -p 5201 \
		>/dev/null 2>&1 &
	spid=$!
	vt_wait 5 listening "$sns" 5201 || { echo "no iperf3 server in $sns" >&2; return 1; }
	if ! ip netns exec "$cns" timeout -k 2 $((BENCH_TIME + 20)) iperf3 -c "$addr" -p 5201 \
		-t "$BENCH_TIME" -f m "$@" >"$log" 2>&1; then
		cat "$log" >&2
		kill "$spid" 2>/dev/null
		return 1
	fi
	wait "$spid"
	awk '/receiver$/ { print $(NF - 2) }' "$log"
}

# ratio A B: A / B with 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

bench_net() {
	local ns_h=$VT_NS-h ns_c=$VT_NS-c1 ns_a=$VT_NS-va ns_b=$VT_NS-vb
	local run c2h h2c veth r1 r2 all=() lo hi
	vt_ns h && vt_ns c1 && vt_ns va && vt_ns vb ||
		{ fail bench-net-setup "namespaces"; return; }
	# virtio-net: host TAP vh1 169.254.10.1 <-> card 1 scifnet0 169.254.10.2, MTU 1500.
	vt_daemon "$ns_h" -d 1:net:tap=vh1 || { fail bench-net-setup "daemon"; return; }
	ip -n "$ns_h" addr add 169.254.10.1/24 dev vh1
	vt_card 1 "$ns_c"
	vt_card_ready 1 net0 || { fail bench-net-setup "card 1 net0 not up"; return; }
	ip -n "$ns_c" addr add 169.254.10.2/24 dev scifnet0 && ip -n "$ns_c" link set scifnet0 up
	vt_wait 5 link_up "$ns_c" scifnet0 || { fail bench-net-setup "no carrier"; return; }
	# The baseline: a veth pair, MTU 1500, the kernel's default offloads.
	ip link add va0 netns "$ns_a" type veth peer name vb0 netns "$ns_b" &&
		ip -n "$ns_a" addr add 169.254.20.1/24 dev va0 && ip -n "$ns_a" link set va0 up &&
		ip -n "$ns_b" addr add 169.254.20.2/24 dev vb0 && ip -n "$ns_b" link set vb0 up ||
		{ fail bench-net-setup "veth"; return; }
	vt_wait 5 ip netns exec "$ns_c" ping -c 1 -W 1 169.254.10.1 &&
		vt_wait 5 ip netns exec "$ns_b" ping -c 1 -W 1 169.254.20.1 ||
		{ fail bench-net-setup "no ping"; return; }
	pass bench-net-setup
	echo "iperf3 TCP, ${BENCH_TIME} s per run, Mbit/s (receiver side)"
	for run in $(seq "$BENCH_RUNS"); do
		c2h=$(net_iperf "$ns_h" 169.254.10.1 "$ns_c") &&
			h2c=$(net_iperf "$ns_h" 169.254.10.1 "$ns_c" -R) &&
			veth=$(net_iperf "$ns_a" 169.254.20.1 "$ns_b") ||
			{ fail bench-net-run-$run "iperf3 failed"; continue; }
		r1=$(ratio "$c2h" "$veth") r2=$(ratio "$h2c" "$veth")
		all+=("$r1" "$r2")
		printf 'run %d: virtio card->host %s, host->card %s, veth %s: ratio %sx, %sx\n' \
			"$run" "$c2h" "$h2c" "$veth" "$r1" "$r2"
	done
	[ ${#all[@]} -gt 0 ] || { fail bench-net "no run completed"; return; }
	lo=$(printf '%s\n' "${all[@]}" | sort -g | head -n1)
	hi=$(printf '%s\n' "${all[@]}" | sort -g | tail -n1)
	echo "virtio-net / veth: ${lo}x .. ${hi}x (target >= 0.5x)"
	grep '^card1/net0 ' "$VT/host/status"
	cat <<'EOF'
Where the time goes: veth hands each skb to the other namespace with no copy; virtio-net
copies every frame three times. Card -> host: the card's TAP read (kernel -> window slot),
the daemon's scif_vreadfrom (window -> its buffer), its TAP write (buffer -> kernel).
Host -> card: TAP read (kernel -> daemon buffer), scif_vwriteto (-> card's receive buffer),
the card's TAP writev (window -> kernel). GSO frames of up to 64 KiB keep the per-frame
costs (syscalls, descriptors, doorbells) low; both ends also share the machine's 2 cores.
EOF
	if awk -v v="$lo" 'BEGIN { exit !(v >= 0.5) }'; then pass bench-net-target
	else fail bench-net-target "lowest ratio ${lo}x < 0.5x"; fi
}

groups=(${BENCH_GROUPS:-net block})
for g in "${groups[@]}"; do
	if ! declare -F "bench_$g" >/dev/null; then
		[ -n "${BENCH_GROUPS:-}" ] && fail "bench-$g" "no such bench"
		continue
	fi
	echo "== $g"
	"bench_$g"
done
vt_summary
