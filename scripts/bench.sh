#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command: from a fresh Debian 12 checkout (as root), install what is
# needed, build libscif in _build/bench and run the full benchmark (`make bench`).
# Extra arguments go to scif_bench, e.g. `bash scripts/bench.sh --quick`.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

bash scripts/deps.sh
echo "bench: generating the build system"
# Quiet when it works; run again in the open to show why when it does not.
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p _build/bench
cd _build/bench
# Configure once; later runs reuse it (config.status re-runs itself when inputs change).
if [ ! -f config.status ]; then
	echo "bench: configuring in $PWD"
	../../configure --disable-tests --quiet
fi
echo "bench: building"
make -s -j"$(nproc)"
make -s bench BENCH_FLAGS="$*"
echo
echo "bench: plot    $PWD/bench.svg"
echo "bench: results $PWD/bench.json"
