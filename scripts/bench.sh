#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command: from a fresh Debian 12 checkout (as root), install what is
# needed (Open MPI and UCX included, for the peers), build libscif in _build/bench and run the
# full benchmark with the peers in the same run (`make bench BENCH_FLAGS=--peers`).
# Extra arguments go to scif_bench, e.g. `bash scripts/bench.sh --quick`.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

bash scripts/deps.sh --bench
echo "bench: generating the build system"
# Quiet when it works; run again in the open to show why when it does not.
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p _build/bench
cd _build/bench
# Configure once; later runs reuse it (config.status re-runs itself when inputs change).
# Configured before mpicc was installed: again, so that scif_bench_mpi is built.
if [ ! -f config.status ] || { command -v mpicc >/dev/null && ! grep -q '^MPICC = /' Makefile; }; then
	echo "bench: configuring in $PWD"
	../../configure --disable-tests --quiet
fi
echo "bench: building"
make -s -j"$(nproc)"
make -s bench BENCH_FLAGS="--peers $*"
echo
echo "bench: plot    $PWD/bench.svg"
echo "bench: results $PWD/bench.json"
