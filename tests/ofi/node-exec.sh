#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/node-exec.sh CMD [ARGS...] - start CMD in the network namespace of the SCIF node
# named by SCIF_NODE, of the tests/ofi/netns.sh run SCIF_TEST_NETNS_RUN.
#
# The test programs' spawners (test_spawn_peer in tests/common.h, spawn_side in
# tests/compat/test-compat.c) put the program named by SCIF_TEST_NODE_EXEC, this one, in
# front of a peer's argv when that variable is set (tests/ofi/check-ofi.sh sets it). Every
# step execs the next (this script, netns.sh, ip netns exec, CMD): the pid the spawner got
# is CMD's, so its kill() and waitpid() reach CMD; the environment passes unchanged.
#
# With SCIF_TEST_NODE_RUN_BASE set (check-ofi.sh --fabric ofi), CMD's SCIF_RUN_DIR is
# $SCIF_TEST_NODE_RUN_BASE/n<node>: the nodes share no directory, as hosts would not, so no
# test can pass through the local fabric's files by mistake.
set -u
: "${SCIF_NODE:?node-exec.sh: SCIF_NODE is not set}"
: "${SCIF_TEST_NETNS_RUN:?node-exec.sh: SCIF_TEST_NETNS_RUN is not set}"
if [ -n "${SCIF_TEST_NODE_RUN_BASE:-}" ]; then
	export SCIF_RUN_DIR=$SCIF_TEST_NODE_RUN_BASE/n$SCIF_NODE
	mkdir -p "$SCIF_RUN_DIR" || exit 127
fi
exec "$(dirname "$0")/netns.sh" exec "$SCIF_TEST_NETNS_RUN" "$SCIF_NODE" "$@"
