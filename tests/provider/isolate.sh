# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by check-provider.sh and bench-provider.sh.
#
# isolate: the prefix that runs a command in namespaces of its own: PIDs (it and everything it
# starts die with it), a private /dev/shm (shm's region names contain PIDs, which repeat across
# PID namespaces) and a network with only loopback (fabtests' out-of-band sockets use fixed
# TCP ports). Root uses plain unshare; others a user namespace too, where allowed. Empty when
# neither works.
isolate=()
for user in "" --map-root-user; do
	for net in --net ""; do
		setup='mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"'
		[ -n "$net" ] && setup="ip link set lo up && $setup"
		cmd=(unshare --kill-child ${user:+"$user"} ${net:+"$net"} --pid --fork --mount-proc
		     sh -c "$setup" isolate)
		if "${cmd[@]}" true 2>/dev/null; then
			isolate=("${cmd[@]}")
			break 2
		fi
	done
done

# A fresh SCIF machine for one run (removed by done_run_dir).
new_run_dir() {
	SCIF_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/scif-prov-XXXXXX") && chmod 1777 "$SCIF_RUN_DIR" &&
		export SCIF_RUN_DIR
}
done_run_dir() { rm -rf "$SCIF_RUN_DIR"; unset SCIF_RUN_DIR; }
