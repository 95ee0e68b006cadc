#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/pcie/node-exec.sh CMD [ARGS...] - start CMD as a process of the SCIF node named by
# SCIF_NODE, for tests/pcie/check-pcie.sh: the test programs' spawners put this script in
# front of a peer's argv (SCIF_TEST_NODE_EXEC). It execs CMD, so the pid the spawner got is
# CMD's and its kill() and waitpid() reach CMD; the environment passes unchanged but for
# SCIF_RUN_DIR, which is $SCIF_TEST_NODE_RUN_BASE/n<node>: the nodes share no directory, as
# two OS instances would not, so they can only meet through the aperture.
set -u
: "${SCIF_NODE:?node-exec.sh: SCIF_NODE is not set}"
: "${SCIF_TEST_NODE_RUN_BASE:?node-exec.sh: SCIF_TEST_NODE_RUN_BASE is not set}"
export SCIF_RUN_DIR=$SCIF_TEST_NODE_RUN_BASE/n$SCIF_NODE
mkdir -p "$SCIF_RUN_DIR" || exit 127
exec "$@"
