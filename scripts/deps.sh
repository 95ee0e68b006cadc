#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Install what building, testing and benchmarking libscif need on Debian 12 (as root).
set -euo pipefail
pkgs=(build-essential autoconf automake libtool pkg-config libcriterion-dev doxygen valgrind
      gnuplot-nox python3
      clang libclang-rt-14-dev  # the libFuzzer targets (tests/fuzz: -fsanitize=fuzzer)
      # the libfabric provider (providers/scif) and `make check-provider`: libfabric's headers
      # and fi_info, Open MPI (mpicc, mpirun) for the MPI programs; fabtests, built from
      # their tarball, need autoconf, automake and libtool (above), runfabtests.sh python3;
      # the runs are isolated with unshare (util-linux) and ip (iproute2).
      libfabric-dev libfabric-bin openmpi-bin libopenmpi-dev iproute2
      # virtio-over-scif and `make check-virtio`: the real clients on the card's devices
      # (ping, iperf3, nc; qemu-img/qemu-io, nbdinfo/nbdfuse, fio, mkfs.ext4) and FUSE;
      # jq reads fio's reports in `make bench-virtio`.
      iputils-ping iperf3 netcat-openbsd qemu-utils libnbd-bin fuse3 fio e2fsprogs jq)
# scif_bench --peers: Open MPI (mpirun, and mpicc for scif_bench_mpi) and UCX (ucx_perftest).
[ "${1:-}" = "--bench" ] && pkgs+=(openmpi-bin libopenmpi-dev ucx-utils)
[ "${1:-}" = "--kernel" ] && pkgs+=(qemu-system-x86 busybox-static cpio xz-utils zstd kmod gcc-12 make libc6-dev libelf1
                                    libelf-dev libssl3 bc
                                    flex bison
                                    ibverbs-providers)  # librxe for `make check-rxe` (soft-RoCE)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
