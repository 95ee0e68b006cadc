#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/pcie/guest-exec.sh CMD [ARGS...] - SCIF_TEST_NODE_EXEC for check-pcie's guest pass
# (tests/pcie/check-pcie.sh): a node-0 process runs on the host as node-exec.sh runs it; any
# other node is a card, so CMD runs in a QEMU guest of its own (scripts/guest-run.sh), booted
# for it and killed with it: a test that SIGKILLs its peer kills the whole guest, and so does
# the death of the test process that spawned it (PR_SET_PDEATHSIG: a failed test leaves no
# guest running behind it).
set -u
: "${SCIF_NODE:?guest-exec.sh: SCIF_NODE is not set}"
here=$(cd "$(dirname "$0")" && pwd)
if [ "$SCIF_NODE" = 0 ]; then
	exec bash "$here/node-exec.sh" "$@"
fi
exec setpriv --pdeathsig KILL -- bash "$here/../../scripts/guest-run.sh" "$@"
