#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/netns.sh - SCIF nodes as network namespaces, for the ofi fabric's tests: each
# node is a "host" with an address of its own, all on one Ethernet segment.
#
#   netns.sh up RUN N         namespaces scif<RUN>n0 .. scif<RUN>n<N-1> (the nodes) and
#                             scif<RUN>br (the switch); prints the cluster file's path
#   netns.sh down RUN         delete all of run RUN's namespaces and its directory; never fails
#   netns.sh exec RUN NODE CMD...   run CMD in node NODE's namespace (ip netns exec: CMD
#                             replaces the shell, same pid, same environment)
#   netns.sh link RUN NODE down|up  pull / plug node NODE's cable (see "link" below)
#   netns.sh nodes RUN        print the cluster file's path
#
# Topology: the namespace scif<RUN>br holds a bridge "br0"; each node namespace has one
# interface "eth0", a veth whose other end "n<NODE>" is a port of br0. Every interface is
# created inside a namespace of the run, never in the caller's: names only need to be unique
# within their namespace (all are far below IFNAMSIZ, 15 characters), runs side by side never
# meet, and deleting the namespaces deletes every interface with them. RUN is 1 to 8 letters
# or digits, so "scif<RUN>n<NODE>" fits 15 characters too (NODE < 100).
#
# Addresses: node n is 169.254.<x>.<n+1>/24 on its eth0, loopback up; <x> (1..254) is a hash
# of RUN, so runs side by side use different subnets as well (they could not reach each
# other anyway: nothing is routed out of a run's bridge).
#
# Ephemeral ports: port P of a node is TCP port P on its address, so a node's outgoing
# connections must not take the ports its SCIF endpoints bind. Each node namespace uses
# 62000-65535 for them (net.ipv4.ip_local_port_range is per namespace), above the ports the
# tests pick (2000-61999, tests/common.h) and SCIF's dynamic ports (from 1089, lowest first).
#
# The cluster file, <dir>/nodes, has one line "<node-id> <ipv4-address>" per node (the format
# of SCIF_NODES_FILE); <dir> is $SCIF_NETNS_DIR, or ${TMPDIR:-/tmp}/scif-netns-<RUN>.
#
# link: "down" takes the switch's port n<NODE> down, as if the node's cable were pulled: the
# node's own configuration is untouched (its eth0 only loses carrier), packets between it and
# the other nodes vanish, so their connections to it see timeouts / EHOSTUNREACH rather than
# a reset. "up" plugs it back in.
#
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
set -uo pipefail

die() { echo "netns.sh: $*" >&2; exit 2; }

usage() {
	sed -n '3,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

check_run() {
	[[ $1 =~ ^[A-Za-z0-9]{1,8}$ ]] || die "RUN must be 1 to 8 letters or digits: '$1'"
}

check_node() {
	[[ $1 =~ ^[0-9]{1,2}$ ]] || die "NODE must be a number below 100: '$1'"
}

ns_br() { echo "scif$1br"; }
ns_node() { echo "scif$1n$2"; }
run_dir() { echo "${SCIF_NETNS_DIR:-${TMPDIR:-/tmp}/scif-netns-$1}"; }

# The third octet of run RUN's subnet, 1..254.
subnet() {
	local h
	h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
	echo $((h % 254 + 1))
}

# The namespaces of run RUN that exist now (nodes, then the switch).
run_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^scif$1(n[0-9]+|br)\$" | sort -r
}

cmd_down() {
	local run=$1 ns dir
	check_run "$run"
	for ns in $(run_namespaces "$run"); do
		ip netns del "$ns" 2>/dev/null
	done
	dir=$(run_dir "$run")
	rm -f "$dir/nodes"
	rmdir "$dir" 2>/dev/null
	return 0
}

cmd_up() {
	local run=$1 n=$2 br x i ns dir
	check_run "$run"
	[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 100 ] ||
		die "N must be 1 to 100: '$n'"
	[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
	[ -z "$(run_namespaces "$run")" ] || die "run $run exists already (netns.sh down $run)"
	br=$(ns_br "$run")
	x=$(subnet "$run")
	dir=$(run_dir "$run")
	# On any failure, take down what was made so far.
	{
		ip netns add "$br" &&
			ip -n "$br" link set lo up &&
			ip -n "$br" link add br0 type bridge forward_delay 0 stp_state 0 &&
			ip -n "$br" link set br0 up
	} || { cmd_down "$run"; die "cannot create the switch namespace $br"; }
	for ((i = 0; i < n; i++)); do
		ns=$(ns_node "$run" "$i")
		{
			ip netns add "$ns" &&
				ip -n "$ns" link set lo up &&
				ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="62000 65535" &&
				ip -n "$br" link add "n$i" type veth peer name eth0 netns "$ns" &&
				ip -n "$br" link set "n$i" master br0 up &&
				ip -n "$ns" addr add "169.254.$x.$((i + 1))/24" dev eth0 &&
				ip -n "$ns" link set eth0 up
		} || { cmd_down "$run"; die "cannot create node $i ($ns)"; }
	done
	mkdir -p "$dir" || { cmd_down "$run"; die "cannot create $dir"; }
	{
		echo "# SCIF cluster file of netns run $run: <node-id> <ipv4-address>"
		for ((i = 0; i < n; i++)); do
			echo "$i 169.254.$x.$((i + 1))"
		done
	} >"$dir/nodes" || { cmd_down "$run"; die "cannot write $dir/nodes"; }
	echo "$dir/nodes"
}

cmd_exec() {
	local run=$1 node=$2
	shift 2
	check_run "$run"
	check_node "$node"
	[ $# -ge 1 ] || die "exec: no command"
	exec ip netns exec "$(ns_node "$run" "$node")" "$@"
}

cmd_link() {
	local run=$1 node=$2 state=$3
	check_run "$run"
	check_node "$node"
	case $state in up | down) ;; *) die "link: state must be up or down: '$state'" ;; esac
	ip -n "$(ns_br "$run")" link set "n$node" "$state"
}

[ $# -ge 2 ] || usage
case $1 in
up) [ $# = 3 ] || usage; cmd_up "$2" "$3" ;;
down) [ $# = 2 ] || usage; cmd_down "$2" ;;
exec) [ $# -ge 4 ] || usage; shift; cmd_exec "$@" ;;
link) [ $# = 4 ] || usage; cmd_link "$2" "$3" "$4" ;;
nodes) [ $# = 2 ] || usage; check_run "$2"; echo "$(run_dir "$2")/nodes" ;;
*) usage ;;
esac
