#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/t-net.sh - virtio-net end to end: scif-virtiod (namespace h) serves card 1 a
# net device on host TAP vh1 and card 2 one on vh2 (MAC and MTU from the daemon's options);
# scif-virtio-card gives each card a TAP scifnet0 in a namespace of its own. Over that link:
# ping both ways, iperf3 both ways (figures printed), frames larger than the MTU crossing
# (TSO/GSO), MTU 65520 with iperf3 and 60000-byte pings, a 20 MiB file each way with nc and
# checksums, both cards at once, and a card frontend killed (host TAP carrier off within 1 s)
# and restarted. Run by `make check-virtio VIRTIO_CHECKS=net` (root).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup net
exec 3>&1                        # figures go to the output, past check's log redirection

H1=169.254.10.1 C1=169.254.10.2  # host vh1 / card 1 scifnet0
H2=169.254.11.1 C2=169.254.11.2  # host vh2 / card 2 scifnet0
MAC2=02:00:00:00:02:01 MTU2=9000
vt_ns h && vt_ns c1 && vt_ns c2 || { fail net-netns; exit 1; }
NS_H=$VT_NS-h NS_C1=$VT_NS-c1 NS_C2=$VT_NS-c2
CARD1= CARD2=

# A dead peer explains most failures: say so, with its exit status.
peers() {
	local name pid
	for name in daemon:${VT_DAEMON:-} card1:$CARD1 card2:$CARD2; do
		pid=${name#*:}
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo -n "${name%%:*} (pid $pid) is dead, exit status "; vt_exit_status "$pid"
		fi
	done
	return 0
}
status() { echo "host status:"; cat "$VT/host/status"; echo "card status:"; cat "$VT"/card*/status; }

# link_up NS DEV: the interface has carrier (LOWER_UP).
link_up() { ip -n "$1" link show "$2" 2>/dev/null | grep -q 'LOWER_UP'; }
no_carrier() { ip -n "$1" link show "$2" 2>/dev/null | grep -q 'NO-CARRIER'; }
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }

# card_net N NS ADDR: card N's TAP up with its address, carrier on both ends.
card_net() {
	local n=$1 ns=$2 addr=$3
	vt_card_ready "$n" net0 || { peers; return 1; }
	ip -n "$ns" addr add "$addr/24" dev scifnet0 && ip -n "$ns" link set scifnet0 up || return 1
	vt_wait 5 link_up "$ns" scifnet0 || { ip -n "$ns" link show scifnet0; status; return 1; }
	vt_wait 5 link_up "$NS_H" "vh$n" || { ip -n "$NS_H" link show "vh$n"; status; return 1; }
}

# pings NS ADDR [ARGS]: 20 pings 50 ms apart from namespace NS, none lost.
pings() {
	local ns=$1 addr=$2 out; shift 2
	out=$(ip netns exec "$ns" timeout -k 2 30 ping -c 20 -i 0.05 -W 2 "$@" "$addr" 2>&1)
	echo "$out"
	grep -q ' 0% packet loss' <<<"$out" || { peers; return 1; }
}

# iperf LABEL SERVER CLIENT_NS PORT [-R]: iperf3 TCP for 3 s from CLIENT_NS to SERVER (a
# one-off server in the host's namespace; -R: the server sends). Prints the figure.
iperf() {
	local label=$1 srv=$2 ns=$3 port=$4 spid mbps; shift 4
	ip netns exec "$NS_H" timeout -k 2 30 iperf3 -s -1 -B "$srv" -p "$port" \
		>"$VT/iperf-s-$label.log" 2>&1 &
	spid=$!
	vt_wait 5 listening "$NS_H" "$port" || { echo "no iperf3 server"; cat "$VT/iperf-s-$label.log"; return 1; }
	ip netns exec "$ns" timeout -k 2 20 iperf3 -c "$srv" -p "$port" -t 3 -f m "$@" \
		>"$VT/iperf-$label.log" 2>&1 ||
		{ cat "$VT/iperf-$label.log"; kill "$spid"; peers; return 1; }
	wait "$spid"
	cat "$VT/iperf-$label.log"
	mbps=$(awk '/receiver$/ { print $(NF - 2) }' "$VT/iperf-$label.log")
	echo "    iperf3 $label: ${mbps:-?} Mbit/s" >&3
	awk -v v="${mbps:-0}" 'BEGIN { exit !(v > 0) }'
}

# counter NAME: a counter of card1/net0 in the host's status file; ccounter NAME: of net0 in
# card 1's.
counter() { grep '^card1/net0 ' "$VT/host/status" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
ccounter() { grep '^net0 ' "$VT/card1/status" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

t_start() {
	vt_daemon "$NS_H" -d 1:net:tap=vh1 -d "2:net:tap=vh2,mac=$MAC2,mtu=$MTU2" || return 1
	# The host TAPs exist, up, without carrier while no card is attached.
	no_carrier "$NS_H" vh1 && no_carrier "$NS_H" vh2 || { ip -n "$NS_H" link; return 1; }
	ip -n "$NS_H" addr add "$H1/24" dev vh1 && ip -n "$NS_H" addr add "$H2/24" dev vh2 || return 1
	vt_card 1 "$NS_C1"; CARD1=$VT_CARD
	card_net 1 "$NS_C1" "$C1" || return 1
	vt_wait 5 grep -q '^card1/net0 net up tap=vh1 carrier=on ' "$VT/host/status" || { status; return 1; }
}

t_ping_c2h() { pings "$NS_C1" "$H1"; }
t_ping_h2c() { pings "$NS_H" "$C1"; }

# GSO frames crossed whole: with MTU 1500, the bulk transfers' frames averaged far more, as
# both the host's and the card's counters say.
t_tso_frames() {
	local tx rx ctx crx
	sleep 1.2                  # the status files' counters are at most 1 s old
	tx=$(( $(counter tx_bytes) / ($(counter tx_pkts) + 1) ))
	rx=$(( $(counter rx_bytes) / ($(counter rx_pkts) + 1) ))
	ctx=$(( $(ccounter tx_bytes) / ($(ccounter tx_pkts) + 1) ))
	crx=$(( $(ccounter rx_bytes) / ($(ccounter rx_pkts) + 1) ))
	echo "average frame: card->host $tx bytes, host->card $rx bytes (card: $ctx, $crx)"
	echo "    average frame at MTU 1500: card->host $tx bytes, host->card $rx bytes" >&3
	[ "$tx" -gt 3000 ] && [ "$rx" -gt 3000 ] && [ "$ctx" -gt 3000 ] && [ "$crx" -gt 3000 ]
}

# nc_file DIR: 20 MiB of random bytes with nc (c2h: card 1 sends, h2c: the host sends).
nc_file() {
	local src=$VT/$1.bin dst=$VT/$1.out port=5301 spid srv_ns cli_ns addr
	head -c $((20 << 20)) /dev/urandom >"$src"
	if [ "$1" = c2h ]; then srv_ns=$NS_H cli_ns=$NS_C1 addr=$H1
	else srv_ns=$NS_C1 cli_ns=$NS_H addr=$C1; fi
	ip netns exec "$srv_ns" timeout -k 2 30 nc -l "$addr" "$port" >"$dst" </dev/null &
	spid=$!
	vt_wait 5 listening "$srv_ns" "$port" || { echo "no nc server"; return 1; }
	ip netns exec "$cli_ns" timeout -k 2 30 nc -N "$addr" "$port" <"$src" ||
		{ echo "nc client: exit $?"; kill "$spid"; peers; return 1; }
	wait "$spid" || { echo "nc server: exit $?"; peers; return 1; }
	sha256sum "$src" "$dst"
	[ "$(sha256sum <"$src")" = "$(sha256sum <"$dst")" ]
}

t_mtu() {
	ip -n "$NS_H" link set vh1 mtu 65520 && ip -n "$NS_C1" link set scifnet0 mtu 65520 || return 1
	pings "$NS_C1" "$H1" -s 60000 -M do && pings "$NS_H" "$C1" -s 60000 -M do
}

# Card 2 at the same time as card 1: its MAC and MTU come from the daemon's options, and
# both links carry traffic at once.
t_card2() {
	local p1 rc=0
	vt_card 2 "$NS_C2"; CARD2=$VT_CARD
	card_net 2 "$NS_C2" "$C2" || return 1
	ip -n "$NS_C2" link show scifnet0
	ip -n "$NS_C2" link show scifnet0 | grep -q "mtu $MTU2 " &&
		ip -n "$NS_C2" link show scifnet0 | grep -q "link/ether $MAC2 " &&
		ip -n "$NS_H" link show vh2 | grep -q "mtu $MTU2 " || { echo "MAC/MTU not applied"; return 1; }
	pings "$NS_C1" "$H1" >"$VT/card2-ping1.log" 2>&1 &
	p1=$!
	iperf card2-c2h "$H2" "$NS_C2" 5202 || rc=1
	pings "$NS_C2" "$H2" || rc=1
	wait "$p1" || { echo "card 1 pings failed meanwhile:"; cat "$VT/card2-ping1.log"; rc=1; }
	return $rc
}

# SIGKILL card 1's frontend: the host TAP loses its carrier within 1 s.
t_card_kill() {
	local t0 ms
	link_up "$NS_H" vh1 || { echo "vh1 has no carrier to lose"; return 1; }
	t0=$(date +%s%N)
	kill -KILL "$CARD1"
	until no_carrier "$NS_H" vh1; do
		ms=$((($(date +%s%N) - t0) / 1000000))
		[ "$ms" -lt 5000 ] || { ip -n "$NS_H" link show vh1; status; return 1; }
		sleep 0.02
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
	vt_exit_status "$CARD1" >/dev/null
	echo "card frontend killed (exit status $VT_RC): NO-CARRIER after $ms ms"
	echo "    host TAP NO-CARRIER $ms ms after the card frontend was killed" >&3
	ip -n "$NS_H" link show vh1
	vt_wait 5 grep -q '^card1/net0 net down tap=vh1 carrier=off ' "$VT/host/status" ||
		{ status; return 1; }
	[ "$ms" -le 1000 ]
}

t_card_restart() {
	rm -f "$VT/card1/status"        # the killed frontend's: "net0 net up"
	vt_card 1 "$NS_C1"; CARD1=$VT_CARD
	card_net 1 "$NS_C1" "$C1" || return 1
	# The first frames may go to a stale neighbour entry: wait for a reply, then count.
	vt_wait 10 ip netns exec "$NS_C1" ping -c 1 -W 1 "$H1" || { peers; return 1; }
	pings "$NS_C1" "$H1" && pings "$NS_H" "$C1"
}

check net-start t_start
check net-ping-card-to-host t_ping_c2h
check net-ping-host-to-card t_ping_h2c
check net-iperf-card-to-host iperf c2h "$H1" "$NS_C1" 5201
check net-iperf-host-to-card iperf h2c "$H1" "$NS_C1" 5201 -R
check net-tso-frames t_tso_frames
check net-nc-card-to-host nc_file c2h
check net-nc-host-to-card nc_file h2c
check net-mtu65520-ping t_mtu
check net-mtu65520-iperf-card-to-host iperf c2h-65520 "$H1" "$NS_C1" 5201
check net-mtu65520-iperf-host-to-card iperf h2c-65520 "$H1" "$NS_C1" 5201 -R
check net-second-card t_card2
check net-card-kill-no-carrier t_card_kill
check net-card-restart t_card_restart
vt_summary
