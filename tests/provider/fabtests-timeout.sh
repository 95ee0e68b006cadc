#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# fabtests-timeout.sh T COMMAND...: what runfabtests.sh runs as `timeout T COMMAND...`;
# check-provider.sh puts it first in runfabtests.sh's PATH under the name `timeout`.
#
# The test dies with whoever started it. runfabtests.sh runs each test in a background
# subshell and, when a client fails, kills the server's subshell with SIGKILL: the server
# would live on, holding its port (fabtests' default 9228, the same for every test) until its
# timeout, and the tests started meanwhile would fail. Parent-death signals chain the
# processes: the subshell's death kills the timeout, whose death kills the test.
#
# A client over libscif waits for its server to listen. runfabtests.sh starts the client one
# second after the server, and a server on a loaded machine can take longer than that to
# reach fi_listen (libfabric's initialisation reads /proc/kallsyms twice; `fi_info -p scif`
# alone takes 0.55 s on a busy 2-core machine): a connecting client is then refused, as it
# would be by TCP. So a
# client of provider scif (or a utility provider over it) waits until a listening socket of
# the local fabric for the server's port shows in /proc/net/unix, for at most
# FABTESTS_READY_WAIT seconds (default 10), and then starts either way: a server that never
# listens fails the test as it would have. It stops waiting as soon as the server is gone: a
# server that finds a capability missing exits at once (fabtests' "Notrun"), and each such
# test cost the whole wait before (19 of them on scif: over 3 minutes of every CI run). The
# server's instance of this script leaves its pid in the run directory (the pid stays
# timeout(1)'s, which lives as long as the test); the client's looks at it, then removes it.
# Nothing else changes: the test, its arguments and its timeout are runfabtests.sh's.

t=$1
shift
port=9228 # fabtests' default, the same for every test

# scif_test ARGS...: whether the test runs over provider scif (or a utility provider over it)
# on $port, the run's SCIF_RUN_DIR set.
scif_test() {
	local prov="" i n=$#
	local -a a=("$@")

	[ -n "${SCIF_RUN_DIR:-}" ] || return 1
	for ((i = 0; i < n - 1; i++)); do
		case ${a[i]} in
		-p) prov=${a[i + 1]} ;;
		-B | -P) return 1 ;; # a port of its own: not the default this looks for
		esac
	done
	case $prov in scif | "scif;"*) return 0 ;; esac
	return 1
}

# The client's command line ends "-s CLIENT_ADDR SERVER_ADDR"; the server's "-s ADDR".
ready_wait() {
	local node n=$# end pid mark
	local -a a=("$@")

	[ "$n" -ge 3 ] && [ "${a[n - 3]}" = -s ] && scif_test "$@" || return 0
	node=${a[n - 1]}
	case $node in '' | *[!0-9]*) return 0 ;; esac
	mark=$SCIF_RUN_DIR/fabtests-server.$port
	end=$((${EPOCHREALTIME/./} + ${FABTESTS_READY_WAIT:-10} * 1000000))
	while [ "${EPOCHREALTIME/./}" -lt "$end" ]; do
		# Flags 00010000: a listening socket; its path is the run's node and port.
		awk -v dir="$SCIF_RUN_DIR/" -v name="/n$node.l$port" '
			$4 == "00010000" && index($8, dir) == 1 &&
			substr($8, length($8) - length(name) + 1) == name { found = 1; exit }
			END { exit !found }' /proc/net/unix && break
		# The server exited without listening.
		pid=
		[ -r "$mark" ] && read -r pid <"$mark"
		[ -n "$pid" ] && [ ! -d "/proc/$pid" ] && break
		sleep 0.02
	done
	rm -f "$mark"
	return 0
}

# A server leaves its pid for its client (above).
n=$#
if [ "$n" -ge 2 ] && [ "${!#}" != -s ] && [ "${@:n-1:1}" = -s ] && scif_test "$@"; then
	echo $$ >"$SCIF_RUN_DIR/fabtests-server.$port"
fi

parent=$PPID
ready_wait "$@"
# The subshell that started us died while we waited: so do we, as the test would have.
read -r _ _ _ ppid _ </proc/$$/stat
[ "$ppid" = "$parent" ] || exit 137
exec setpriv --pdeathsig KILL -- "${FABTESTS_REAL_TIMEOUT:-/usr/bin/timeout}" "$t" \
	setpriv --pdeathsig KILL -- "$@"
