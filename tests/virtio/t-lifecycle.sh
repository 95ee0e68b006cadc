#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/t-lifecycle.sh - the lives of scif-virtiod and scif-virtio-card with all three
# device types on card 1 (console, block on an image file, net on TAPs): start from a config
# file, scifctl's views, the card frontend SIGKILLed (the daemon marks the card offline within
# 1 s, serves the restarted one), the daemon SIGKILLed under traffic and restarted (the card
# goes "disconnected" and comes back by itself, its devices never missing), SIGHUP adding and
# removing a device and refusing a broken config, hostile peers on the card's node refused
# without disturbing it, a broken config at start, and clean exits
# (SIGTERM: BYE from the card, status file removed by the daemon). Run by
# `make check-virtio VIRTIO_CHECKS=lifecycle` (root).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup lifecycle

CONF=$VT/virtiod.conf
IMG=$VT/disk.img
HADDR=169.254.71.1                 # host TAP vl1
CADDR=169.254.71.2                 # card TAP scifnet0
HSTATUS=$VT/host/status
CSTATUS=$VT/card1/status

# A dead peer explains most failures: say so, with its exit status.
peers() {
	local name pid
	for name in daemon:${VT_DAEMON:-} card:${VT_CARD:-}; do
		pid=${name#*:}
		if [ -n "$pid" ] && gone "$pid"; then
			echo -n "${name%%:*} (pid $pid) is dead, exit status "
			vt_exit_status "$pid"
		fi
	done
	echo "host status:"; cat "$HSTATUS" 2>/dev/null
	echo "card status:"; cat "$CSTATUS" 2>/dev/null
	return 0
}
# gone PID: the process exited (a zombie counts: it is our child).
gone() { [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

write_conf() {
	{
		echo "# t-lifecycle: card 1 gets one device of each type"
		echo "card 1 console"
		echo "card 1 block image=$IMG   # raw image"
		echo "card 1 net tap=vl1 mtu=1500"
		if [ "${1:-}" = console1 ]; then echo "card 1 console"; fi
	} >"$CONF"
}

all_up_host() {
	grep -q "^card 1 online$" "$HSTATUS" &&
		grep -q "^card1/console0 console up" "$HSTATUS" &&
		grep -q "^card1/block0 block up" "$HSTATUS" &&
		grep -q "^card1/net0 net up" "$HSTATUS"
}
all_down_host() {
	grep -q "^card 1 offline$" "$HSTATUS" && ! grep -qE "^card1/[a-z]+[0-9] [a-z]+ up" "$HSTATUS"
}
# Card devices up and the host agreeing; the TAPs addressed; one ping through.
card_up() {
	vt_card_ready 1 console0 15 && vt_card_ready 1 block0 && vt_card_ready 1 net0 ||
		{ peers; return 1; }
	vt_wait 5 all_up_host || { peers; return 1; }
}
net_setup() {
	ip -n "$NS_H" addr replace "$HADDR/24" dev vl1 && ip -n "$NS_H" link set vl1 up &&
		ip -n "$NS_C" addr replace "$CADDR/24" dev scifnet0 &&
		ip -n "$NS_C" link set scifnet0 up || return 1
	vt_wait 10 ip netns exec "$NS_C" ping -c 1 -W 1 "$HADDR" ||
		{ echo "no ping through"; ip -n "$NS_H" link show vl1; ip -n "$NS_C" link show scifnet0
		  peers; return 1; }
}

t_start() {
	vt_ns h >/dev/null && vt_ns c1 >/dev/null || return 1
	NS_H=$VT_NS-h NS_C=$VT_NS-c1
	truncate -s 16M "$IMG" && write_conf || return 1
	vt_daemon "$NS_H" -c "$CONF" || return 1
	cat "$HSTATUS"
	grep -q "^daemon pid=$VT_DAEMON port=120$" "$HSTATUS" && all_down_host ||
		{ echo "before any card:"; cat "$HSTATUS"; return 1; }
	vt_card 1 "$NS_C"
	card_up && net_setup || return 1
	cat "$HSTATUS" "$CSTATUS"
}

t_scifctl() {
	local out
	out=$("$SCIFCTL" --run-dir "$VT/host" status) || { echo "status: exit $?"; return 1; }
	echo "$out"
	grep -q "^scif-virtiod pid $VT_DAEMON, SCIF port 120$" <<<"$out" &&
		grep -qE "^1 +online$" <<<"$out" &&
		grep -qE "^card1/console0 +console +up " <<<"$out" &&
		grep -qE "^card1/block0 +block +up" <<<"$out" &&
		grep -qE "^card1/net0 +net +up" <<<"$out" || { echo "unexpected status table"; return 1; }
	out=$("$SCIFCTL" --run-dir "$VT/host" cards) || { echo "cards: exit $?"; return 1; }
	echo "$out"
	[ "$(grep -cE '^[0-9]+ ' <<<"$out")" = 1 ] && grep -qE "^1 +online$" <<<"$out" ||
		{ echo "unexpected card list"; return 1; }
	out=$("$SCIFCTL" --run-dir "$VT/card1" status) || { echo "card status: exit $?"; return 1; }
	echo "$out"
	grep -q "^card frontend, host connected$" <<<"$out" && grep -qE "^net0 +net +up" <<<"$out" ||
		{ echo "unexpected card table"; return 1; }
	"$SCIFCTL" --run-dir "$VT/nowhere" status && { echo "no daemon, yet exit 0"; return 1; }
	"$SCIFCTL" --run-dir "$VT/host" bogus && { echo "bad command, yet exit 0"; return 1; }
	return 0
}

# The card frontend dies: offline within 1 s, every device stopped; a new one is served.
t_card_kill() {
	local t0 ms
	kill -KILL "$VT_CARD"
	t0=$(now_ms)
	while ! all_down_host; do
		ms=$(($(now_ms) - t0))
		[ "$ms" -lt 3000 ] || { echo "card still online after $ms ms"; peers; return 1; }
		sleep 0.02
	done
	ms=$(($(now_ms) - t0))
	echo -n "card killed: exit status "; vt_exit_status "$VT_CARD"
	echo "host status says offline, devices down after $ms ms"
	[ "$ms" -le 1000 ] || { cat "$HSTATUS"; return 1; }
	grep -q "card1: offline: connection lost" "$VT/virtiod.log" || { tail "$VT/virtiod.log"; return 1; }
	vt_card 1 "$NS_C"
	card_up && net_setup
}

# The daemon dies under traffic: the card stays, shows "disconnected", and comes back up by
# itself with the next daemon; its TAP, NBD socket and console link never go away.
t_daemon_kill() {
	local card=$VT_CARD idx ping n
	idx=$(ip netns exec "$NS_C" cat /sys/class/net/scifnet0/ifindex)
	ip netns exec "$NS_C" timeout 60 ping -i 0.02 -W 1 "$HADDR" >"$VT/ping.log" 2>&1 & ping=$!
	sleep 1
	kill -KILL "$VT_DAEMON"
	echo -n "daemon killed: exit status "; vt_exit_status "$VT_DAEMON"
	vt_wait 3 grep -q "^host disconnected$" "$CSTATUS" || { peers; kill $ping; return 1; }
	vt_wait 3 bash -c "! grep -qE '^[a-z]+[0-9] [a-z]+ up' '$CSTATUS'" ||
		{ echo "card devices still up"; peers; kill $ping; return 1; }
	"$SCIFCTL" --run-dir "$VT/host" status >/dev/null &&
		{ echo "scifctl: a dead daemon counts as running"; kill $ping; return 1; }
	gone "$card" && { echo "the card frontend died with the daemon"; peers; kill $ping; return 1; }
	[ "$(ip netns exec "$NS_C" cat /sys/class/net/scifnet0/ifindex)" = "$idx" ] &&
		[ -S "$VT/card1/block0.sock" ] && [ -L "$VT/card1/console0" ] ||
		{ echo "a card device went away"; ls -l "$VT/card1"; kill $ping; return 1; }
	sleep 1
	rm -f "$HSTATUS"
	vt_daemon "$NS_H" -c "$CONF" || { kill $ping; return 1; }
	card_up && net_setup || { kill $ping; return 1; }
	[ "$VT_CARD" = "$card" ] && ! gone "$card" || { echo "the card was restarted"; return 1; }
	n=$(grep -c "bytes from" "$VT/ping.log")
	sleep 1
	kill $ping 2>/dev/null; wait $ping 2>/dev/null
	[ "$(grep -c "bytes from" "$VT/ping.log")" -gt "$n" ] ||
		{ echo "the ping under way did not resume:"; tail -5 "$VT/ping.log"; return 1; }
	echo "ping: $(grep -c "bytes from" "$VT/ping.log") replies across the restart"
}

# SIGHUP with a second console: it is added on both sides; the others are not touched.
t_hup_add() {
	local ups
	ups=$(grep -c "card1/net0: up" "$VT/virtiod.log")
	write_conf console1
	kill -HUP "$VT_DAEMON"
	vt_card_ready 1 console1 10 || { peers; return 1; }
	vt_wait 5 grep -q "^card1/console1 console up" "$HSTATUS" || { peers; return 1; }
	[ -L "$VT/host/card1/console1" ] && [ -L "$VT/card1/console1" ] ||
		{ ls -l "$VT/host/card1" "$VT/card1"; return 1; }
	all_up_host || { peers; return 1; }
	[ "$(grep -c "card1/net0: up" "$VT/virtiod.log")" = "$ups" ] ||
		{ echo "net0 was restarted by the reload"; return 1; }
	ip netns exec "$NS_C" ping -c 1 -W 2 "$HADDR" >/dev/null || { echo "no ping"; return 1; }
}

# SIGHUP without it: removed on both sides.
t_hup_remove() {
	write_conf
	kill -HUP "$VT_DAEMON"
	vt_wait 5 bash -c "! grep -q '^console1 ' '$CSTATUS'" || { peers; return 1; }
	vt_wait 5 bash -c "! grep -q '^card1/console1 ' '$HSTATUS'" || { peers; return 1; }
	all_up_host || { peers; return 1; }
}

# SIGHUP with a broken file: refused with FILE:LINE, the old devices stay.
t_hup_broken() {
	write_conf
	echo "card one net" >>"$CONF"
	kill -HUP "$VT_DAEMON"
	vt_wait 5 grep -q "$CONF:5: bad card number" "$VT/virtiod.log" ||
		{ tail "$VT/virtiod.log"; return 1; }
	grep -q "keeping the old configuration" "$VT/virtiod.log" || return 1
	sleep 0.5
	gone "$VT_DAEMON" && { peers; return 1; }
	all_up_host || { peers; return 1; }
	write_conf
}

# Hostile peers on the card's node (raw SCIF through ctypes): a connection that says
# nothing, a first message of garbage, a HELLO with a wrong page size, an ATTACH with a wrong
# cookie. Each is refused or dropped; the card's session and devices are not touched.
t_hostile_peers() {
	local ups asan
	ups=$(grep -c "card1/net0: up" "$VT/virtiod.log")
	cat >"$VT/hostile.py" <<'EOF'
import ctypes, struct, sys, time
lib = ctypes.CDLL("libscif.so.0", use_errno=True)
class PortID(ctypes.Structure):
    _fields_ = [("node", ctypes.c_uint16), ("port", ctypes.c_uint16)]
def peer(msg=None):
    e = lib.scif_open()
    if e < 0 or lib.scif_connect(e, ctypes.byref(PortID(0, 120))) < 0:
        sys.exit("connect: errno %d" % ctypes.get_errno())
    if msg:
        buf = ctypes.create_string_buffer(struct.pack("<BBHIQ", *msg), 16)
        if lib.scif_send(e, buf, 16, 1) != 16:
            sys.exit("send: errno %d" % ctypes.get_errno())
    return e
def closed_within(e, secs):
    buf = ctypes.create_string_buffer(16)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if lib.scif_recv(e, buf, 16, 0) < 0:
            return True
        time.sleep(0.02)
    return False
silent = peer()
t0 = time.monotonic()
for name, msg in (("garbage", (77, 0, 0, 0, 0)), ("HELLO of 4096 bytes", (1, 0, 0, 4096, 0)),
                  ("ATTACH with a wrong cookie", (5, 0, 0, 0, 42))):
    if not closed_within(peer(msg), 2):
        sys.exit(name + ": not refused within 2 s")
    print(name + ": refused")
if not closed_within(silent, 4) or time.monotonic() - t0 > 3.5:
    sys.exit("the silent connection was not dropped after 2 s")
print("silent connection dropped after %.1f s" % (time.monotonic() - t0))
EOF
	# A libscif built with --enable-sanitizers needs its runtime loaded first into python.
	asan=$(ldd "$top_builddir/libscif/.libs/libscif.so.0" | awk '/libasan/ { print $3 }')
	SCIF_NODE=1 LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 timeout 20 python3 "$VT/hostile.py" ||
		{ peers; return 1; }
	grep -q "card1: no HELLO or ATTACH within 2000 ms: dropped" "$VT/virtiod.log" &&
		grep -q "card1: first message of type 77: dropped" "$VT/virtiod.log" ||
		{ tail "$VT/virtiod.log"; return 1; }
	gone "$VT_DAEMON" && { peers; return 1; }
	all_up_host && grep -q "^host connected$" "$CSTATUS" || { peers; return 1; }
	[ "$(grep -c "card1/net0: up" "$VT/virtiod.log")" = "$ups" ] ||
		{ echo "the card's devices were restarted"; return 1; }
	ip netns exec "$NS_C" ping -c 1 -W 2 "$HADDR" >/dev/null || { echo "no ping"; return 1; }
}

# A broken file at start: FILE:LINE on stderr, exit 1, nothing started.
t_broken_start() {
	local out rc
	printf 'card 1 console\ncard 2 disk image=x\n' >"$VT/bad.conf"
	out=$(SCIF_NODE=0 timeout 10 "$VIRTIOD" -f --run-dir "$VT/bad" --port 121 -c "$VT/bad.conf" 2>&1)
	rc=$?
	echo "$out"
	[ "$rc" = 1 ] && grep -q "$VT/bad.conf:2: unknown device type" <<<"$out" &&
		[ ! -e "$VT/bad/status" ] || { echo "exit status $rc"; return 1; }
	out=$(SCIF_NODE=0 timeout 10 "$VIRTIOD" -f --run-dir "$VT/bad" --port 121 \
		-d 1:net:mtu=1,mtu=2 2>&1)
	rc=$?
	echo "$out"
	[ "$rc" = 1 ] && grep -q "key given twice" <<<"$out" || { echo "exit status $rc"; return 1; }
}

# SIGTERM to the card: BYE, exit 0; the daemon sees a clean end.
t_card_shutdown() {
	local rc
	kill -TERM "$VT_CARD"
	vt_wait 10 gone "$VT_CARD" || { echo "card did not exit"; return 1; }
	rc=$(vt_exit_status "$VT_CARD")
	echo "card: exit status $rc"
	[ "$rc" = 0 ] || { tail "$VT/card1.log"; return 1; }
	vt_wait 3 all_down_host || { peers; return 1; }
	grep -q "card1: offline: BYE" "$VT/virtiod.log" || { tail "$VT/virtiod.log"; return 1; }
	[ ! -e "$CSTATUS" ] || { echo "card status file left behind"; return 1; }
	! ip netns exec "$NS_C" ip link show scifnet0 >/dev/null 2>&1 || { echo "TAP left"; return 1; }
}

# SIGTERM to the daemon: exit 0, status file removed; a card keeps waiting for the next one.
t_daemon_shutdown() {
	local rc
	vt_card 1 "$NS_C"
	card_up || return 1
	kill -TERM "$VT_DAEMON"
	vt_wait 10 gone "$VT_DAEMON" || { echo "daemon did not exit"; return 1; }
	rc=$(vt_exit_status "$VT_DAEMON")
	echo "daemon: exit status $rc"
	[ "$rc" = 0 ] && [ ! -e "$HSTATUS" ] || { tail "$VT/virtiod.log"; return 1; }
	"$SCIFCTL" --run-dir "$VT/host" status && { echo "scifctl: exit 0 with no daemon"; return 1; }
	vt_wait 3 grep -q "^host disconnected$" "$CSTATUS" || { peers; return 1; }
	sleep 1
	gone "$VT_CARD" && { peers; return 1; }
	kill -TERM "$VT_CARD"
	vt_wait 10 gone "$VT_CARD" || { echo "card did not exit"; return 1; }
	rc=$(vt_exit_status "$VT_CARD")
	echo "card (never connected again): exit status $rc"
	[ "$rc" = 0 ]
}

check lifecycle-start t_start
[ "$vt_failed" = 0 ] || { vt_summary; exit 1; }
check lifecycle-scifctl t_scifctl
check lifecycle-card-kill t_card_kill
check lifecycle-daemon-kill t_daemon_kill
check lifecycle-hup-add t_hup_add
check lifecycle-hup-remove t_hup_remove
check lifecycle-hup-broken t_hup_broken
check lifecycle-hostile-peers t_hostile_peers
check lifecycle-broken-start t_broken_start
check lifecycle-card-shutdown t_card_shutdown
check lifecycle-daemon-shutdown t_daemon_shutdown
vt_summary
