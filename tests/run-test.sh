#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/run-test.sh TIMEOUT PROGRAM [ARGS...] - the LOG_COMPILER of every test program.
#
# Each program gets a SCIF machine of its own: SCIF_RUN_DIR points at a fresh directory
# (mode 1777 like /tmp, so that tests which switch to another user can still make their
# domain there), removed afterwards. Programs that run side by side under make -j then
# never meet each other's ports: the lowest free port goes to whoever asks next, and a
# test that connects to a port it just closed must not find another program's listener.
#
# The program is killed after TIMEOUT seconds (with its peers: timeout(1) signals its
# process group) and then counts as failed.
timeout_s=$1
shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/scif-test-XXXXXX") || exit 99
chmod 1777 "$dir" || exit 99
SCIF_RUN_DIR=$dir
export SCIF_RUN_DIR
timeout --signal=KILL "$timeout_s" "$@"
rc=$?
rm -rf "$dir"
exit $rc
