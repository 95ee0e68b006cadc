# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/lib.sh - sourced by the check-virtio scripts (t-*.sh, bench-virtio.sh).
#
# One "machine" per script run: a fresh SCIF_RUN_DIR (the local fabric's nodes), a work dir
# $VT, and network namespaces it creates itself: "$VT_NS-h" for the host daemon (node 0) and
# "$VT_NS-cN" for card N. Everything is removed by vt_cleanup, which runs on every exit
# (trap), also when a check fails or the script is killed by its watchdog.
#
# Results: pass NAME / fail NAME "why" print "PASS: NAME" / "FAIL: NAME: why"; vt_summary
# prints "N passed, N failed" and returns non-zero if anything failed.
#
# Every wait has a deadline (vt_wait), every client runs under `timeout`, and the caller
# (check-virtio.sh) runs each script under a watchdog too: nothing here can hang.
set -uo pipefail

: "${top_builddir:?run through make check-virtio}" "${top_srcdir:?run through make check-virtio}"
VOS_BIN=$top_builddir/virtio-over-scif
VIRTIOD=$VOS_BIN/scif-virtiod
VCARD=$VOS_BIN/scif-virtio-card
SCIFCTL=$VOS_BIN/scifctl
export LD_LIBRARY_PATH=$top_builddir/libscif/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SCIF_LOCAL_NODES=${SCIF_LOCAL_NODES:-4}

vt_passed=0
vt_failed=0
pass() { echo "PASS: $1"; vt_passed=$((vt_passed + 1)); }
fail() { echo "FAIL: $1: ${2:-failed}"; vt_failed=$((vt_failed + 1)); }
# check NAME CMD...: one check, PASS if CMD exits 0 (its output goes to $VT/NAME.log).
check() {
	local name=$1; shift
	if "$@" >"$VT/$name.log" 2>&1; then pass "$name"
	else fail "$name" "exit $? (log: $VT/$name.log)"; tail -n 15 "$VT/$name.log" | sed 's/^/    /'; fi
}
vt_summary() { echo "$vt_passed passed, $vt_failed failed"; [ "$vt_failed" = 0 ]; }

vt_pids=()
vt_netns=()
vt_cleanup_hooks=()
vt_cleanup() {
	local h p ns
	for h in "${vt_cleanup_hooks[@]}"; do eval "$h" >/dev/null 2>&1; done
	for p in "${vt_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.2
	for p in "${vt_pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for ns in "${vt_netns[@]}"; do ip netns del "$ns" 2>/dev/null; done
	[ -n "${SCIF_RUN_DIR:-}" ] && rm -rf "$SCIF_RUN_DIR"
	[ -n "${VT:-}" ] && [ "${VT_KEEP:-0}" = 0 ] && rm -rf "$VT"
}
# vt_on_cleanup 'shell code': run before processes are killed (umount, losetup -d, ...).
vt_on_cleanup() { vt_cleanup_hooks=("$1" "${vt_cleanup_hooks[@]}"); }

# vt_setup NAME: the machine for one script.
vt_setup() {
	if [ "$(id -u)" != 0 ]; then
		echo "FAIL: $1: needs root (network namespaces, TAP, FUSE, mount)"; exit 1
	fi
	VT=$(mktemp -d "${TMPDIR:-/tmp}/vos-$1-XXXXXX")
	SCIF_RUN_DIR=$VT/scif; mkdir -p "$SCIF_RUN_DIR"; export SCIF_RUN_DIR
	# Short, unique namespace names: interface and namespace names are limited.
	VT_NS=vos$$
	trap vt_cleanup EXIT
	trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
}

# vt_ns NAME: create network namespace $VT_NS-NAME with loopback up. Call it in the script's
# own shell (not inside $(...)), or vt_cleanup never learns of the namespace.
vt_ns() {
	local ns=$VT_NS-$1
	ip netns add "$ns" || return 1
	vt_netns+=("$ns")
	ip -n "$ns" link set lo up
}

# vt_wait SECONDS CMD...: poll CMD every 0.1 s until it succeeds; 1 on the deadline.
vt_wait() {
	local end=$((SECONDS + $1)); shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
}

# vt_daemon NS ARGS...: start scif-virtiod (node 0) in namespace NS, in the foreground of a
# background job, run dir $VT/host, log $VT/virtiod.log; waits for its status file.
# Sets VT_DAEMON (pid).
vt_daemon() {
	local ns=$1; shift
	mkdir -p "$VT/host"
	rm -f "$VT/host/status"     # a killed daemon's file must not pass for the new one's
	SCIF_NODE=0 ip netns exec "$ns" "$VIRTIOD" --foreground --run-dir "$VT/host" "$@" \
		>>"$VT/virtiod.log" 2>&1 &
	VT_DAEMON=$!
	vt_pids+=("$VT_DAEMON")
	vt_wait 10 test -s "$VT/host/status" || { echo "daemon did not start:"; tail "$VT/virtiod.log"; return 1; }
}

# vt_card N NS ARGS...: start scif-virtio-card as node N in namespace NS, run dir
# $VT/cardN, log $VT/cardN.log. Sets VT_CARD (pid). Does not wait: use vt_card_ready.
vt_card() {
	local n=$1 ns=$2; shift 2
	mkdir -p "$VT/card$n"
	rm -f "$VT/card$n/status"   # a killed frontend's file must not pass for the new one's
	SCIF_NODE=$n ip netns exec "$ns" "$VCARD" --run-dir "$VT/card$n" "$@" \
		>>"$VT/card$n.log" 2>&1 &
	VT_CARD=$!
	vt_pids+=("$VT_CARD")
}

# vt_card_ready N DEV [SECONDS]: wait until card N's status file shows DEV (e.g. net0) "up".
vt_card_ready() {
	vt_wait "${3:-10}" grep -qE "^$2 .*\bup\b" "$VT/card$1/status" ||
		{ echo "card$1 $2 not up:"; cat "$VT/card$1/status" 2>/dev/null; tail "$VT/card$1.log"; return 1; }
}

# vt_exit_status PID: reap a background job, print its exit status and set VT_RC to it (for
# "dead peer" reports). Call it in the script's own shell, never inside $(...): a subshell
# cannot wait for its parent's children.
vt_exit_status() { wait "$1" 2>/dev/null; VT_RC=$?; echo "$VT_RC"; }
