#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/bench-virtio.sh - `make bench-virtio` (not in CI, root): how virtio over SCIF
# compares with what the same machine does without it. One function per device:
#   bench_net    iperf3 TCP over virtio-net (card 1 <-> host TAP) against a veth pair between
#                two namespaces, BENCH_RUNS runs (3) of BENCH_TIME seconds (3) each, in the
#                same run; prints each run's ratio and the range (target: >= 0.5x veth).
#   bench_block  fio through card 1's virtio-blk (its NBD export, via nbdfuse and a loop
#                device) against the same image file on the host, direct I/O, 16 in flight:
#                1 MiB sequential reads and writes (target: >= 0.7x each), 4 KiB random reads
#                (reported); and fio's NBD engine straight on the export, which skips FUSE and
#                the loop device; with the CPU the daemon, the card frontend and nbdfuse used.
#                BENCH_RUNS runs of BENCH_TIME seconds per figure, in the same run; a
#                BENCH_IMG_MB (256) MiB image on real storage (never tmpfs).
# BENCH_GROUPS="net" picks some (default: each of "net block" that is defined here).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup bench
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_TIME=${BENCH_TIME:-3}

listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }
link_up() { ip -n "$1" link show "$2" 2>/dev/null | grep -q 'LOWER_UP'; }

# net_iperf SERVER_NS ADDR CLIENT_NS [ARGS]: one iperf3 TCP run; prints Mbit/s (receiver).
net_iperf() {
	local sns=$1 addr=$2 cns=$3 spid log=$VT/iperf.log; shift 3
	ip netns exec "$sns" timeout -k 2 $((BENCH_TIME + 30)) iperf3 -s -1 -B "$addr" -p 5201 \
		>/dev/null 2>&1 &
	spid=$!
	vt_wait 5 listening "$sns" 5201 || { echo "no iperf3 server in $sns" >&2; return 1; }
	if ! ip netns exec "$cns" timeout -k 2 $((BENCH_TIME + 20)) iperf3 -c "$addr" -p 5201 \
		-t "$BENCH_TIME" -f m "$@" >"$log" 2>&1; then
		cat "$log" >&2
		kill "$spid" 2>/dev/null
		return 1
	fi
	wait "$spid"
	awk '/receiver$/ { print $(NF - 2) }' "$log"
}

# ratio A B: A / B with 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

bench_net() {
	local ns_h=$VT_NS-h ns_c=$VT_NS-c1 ns_a=$VT_NS-va ns_b=$VT_NS-vb
	local run c2h h2c veth r1 r2 all=() lo hi
	vt_ns h && vt_ns c1 && vt_ns va && vt_ns vb ||
		{ fail bench-net-setup "namespaces"; return; }
	# virtio-net: host TAP vh1 169.254.10.1 <-> card 1 scifnet0 169.254.10.2, MTU 1500.
	vt_daemon "$ns_h" -d 1:net:tap=vh1 || { fail bench-net-setup "daemon"; return; }
	ip -n "$ns_h" addr add 169.254.10.1/24 dev vh1
	vt_card 1 "$ns_c"
	vt_card_ready 1 net0 || { fail bench-net-setup "card 1 net0 not up"; return; }
	ip -n "$ns_c" addr add 169.254.10.2/24 dev scifnet0 && ip -n "$ns_c" link set scifnet0 up
	vt_wait 5 link_up "$ns_c" scifnet0 || { fail bench-net-setup "no carrier"; return; }
	# The baseline: a veth pair, MTU 1500, the kernel's default offloads.
	ip link add va0 netns "$ns_a" type veth peer name vb0 netns "$ns_b" &&
		ip -n "$ns_a" addr add 169.254.20.1/24 dev va0 && ip -n "$ns_a" link set va0 up &&
		ip -n "$ns_b" addr add 169.254.20.2/24 dev vb0 && ip -n "$ns_b" link set vb0 up ||
		{ fail bench-net-setup "veth"; return; }
	vt_wait 5 ip netns exec "$ns_c" ping -c 1 -W 1 169.254.10.1 &&
		vt_wait 5 ip netns exec "$ns_b" ping -c 1 -W 1 169.254.20.1 ||
		{ fail bench-net-setup "no ping"; return; }
	pass bench-net-setup
	echo "iperf3 TCP, ${BENCH_TIME} s per run, Mbit/s (receiver side)"
	for run in $(seq "$BENCH_RUNS"); do
		c2h=$(net_iperf "$ns_h" 169.254.10.1 "$ns_c") &&
			h2c=$(net_iperf "$ns_h" 169.254.10.1 "$ns_c" -R) &&
			veth=$(net_iperf "$ns_a" 169.254.20.1 "$ns_b") ||
			{ fail bench-net-run-$run "iperf3 failed"; continue; }
		r1=$(ratio "$c2h" "$veth") r2=$(ratio "$h2c" "$veth")
		all+=("$r1" "$r2")
		printf 'run %d: virtio card->host %s, host->card %s, veth %s: ratio %sx, %sx\n' \
			"$run" "$c2h" "$h2c" "$veth" "$r1" "$r2"
	done
	[ ${#all[@]} -gt 0 ] || { fail bench-net "no run completed"; return; }
	lo=$(printf '%s\n' "${all[@]}" | sort -g | head -n1)
	hi=$(printf '%s\n' "${all[@]}" | sort -g | tail -n1)
	echo "virtio-net / veth: ${lo}x .. ${hi}x (target >= 0.5x)"
	grep '^card1/net0 ' "$VT/host/status"
	cat <<'EOF'
Where the time goes: veth hands each skb to the other namespace with no copy; virtio-net
copies every frame three times. Card -> host: the card's TAP read (kernel -> window slot),
the daemon's scif_vreadfrom (window -> its buffer), its TAP write (buffer -> kernel).
Host -> card: TAP read (kernel -> daemon buffer), scif_vwriteto (-> card's receive buffer),
the card's TAP writev (window -> kernel). GSO frames of up to 64 KiB keep the per-frame
costs (syscalls, descriptors, doorbells) low; both ends also share the machine's 2 cores.
EOF
	if awk -v v="$lo" 'BEGIN { exit !(v >= 0.5) }'; then pass bench-net-target
	else fail bench-net-target "lowest ratio ${lo}x < 0.5x"; fi
}

# The image of bench_block on real storage (on tmpfs, host O_DIRECT would measure memory):
# $VT, else /var/tmp, else the build tree. Prints the directory.
blk_image_dir() {
	local d
	for d in "$VT" /var/tmp "$top_builddir"; do
		case $(stat -f -c %T "$d" 2>/dev/null) in
		tmpfs|ramfs|"") ;;
		*) echo "$d"; return 0 ;;
		esac
	done
	return 1
}

# blk_fio METRIC FIO-ARGS...: one fio job, 16 in flight, BENCH_TIME seconds over the image's
# size; prints METRIC (read_mbs, write_mbs, read_iops) from its JSON report.
blk_fio() {
	local metric=$1 out=$VT/fio.json; shift
	if ! timeout -k 5 $((BENCH_TIME + 60)) fio --name=bench --output-format=json \
		--output="$out" --iodepth=16 --size="${BENCH_IMG_MB}M" --runtime="$BENCH_TIME" \
		--time_based "$@" >"$VT/fio.err" 2>&1; then
		cat "$VT/fio.err" "$out" >&2
		return 1
	fi
	case $metric in
	read_mbs) jq -r '.jobs[0].read.bw_bytes / 1e6 | floor' "$out" ;;
	write_mbs) jq -r '.jobs[0].write.bw_bytes / 1e6 | floor' "$out" ;;
	read_iops) jq -r '.jobs[0].read.iops | floor' "$out" ;;
	esac
}

# blk_measure KIND WORKLOAD FIO-ARGS...: blk_fio, which sets BLK_FIG to its figure, and adds
# the CPU time the daemon, the card frontend and nbdfuse (blk_pids) used meanwhile, in % of one
# core, to blk_cpu[KIND WORKLOAD] ("daemon card nbdfuse runs").
declare -A blk_cpu
blk_pids=()
blk_ticks() {  # user + system clock ticks of each of blk_pids, on one line
	local p
	for p in "${blk_pids[@]}"; do
		awk '{ sub(/.*\) /, ""); printf "%d ", $12 + $13 }' "/proc/$p/stat" 2>/dev/null ||
			printf '0 '
	done
}
blk_measure() {
	local key="$1 $2" t0 s0; shift 2
	t0=$(blk_ticks) s0=$EPOCHREALTIME
	BLK_FIG=$(blk_fio "$@") || return 1
	blk_cpu[$key]=$(awk -v t0="$t0" -v t1="$(blk_ticks)" -v s="$s0" -v e="$EPOCHREALTIME" \
		-v hz="$(getconf CLK_TCK)" -v acc="${blk_cpu[$key]:-0 0 0 0}" 'BEGIN {
			split(t0, a, " "); split(t1, b, " "); split(acc, c, " ")
			for (i = 1; i <= 3; i++)
				printf "%.1f ", c[i] + 100 * (b[i] - a[i]) / hz / (e - s)
			print c[4] + 1 }')
}

# blk_cpu_line KIND WORKLOAD: "daemon/card/nbdfuse" percentages, mean of the runs.
blk_cpu_line() {
	awk -v c="${blk_cpu[$1 $2]:-0 0 0 1}" 'BEGIN { split(c, v, " ")
		printf "%d/%d/%d", v[1] / v[4], v[2] / v[4], v[3] / v[4] }'
}

# blk_fuse_down DIR: unmount nbdfuse; busy for a moment after losetup -d, lazily if it stays so.
blk_fuse_down() {
	for _ in $(seq 50); do
		mountpoint -q "$1" || return 0
		fusermount3 -u "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	umount -l "$1"
}

# range WHAT RATIOS...: prints "WHAT: lo x .. hi x".
range() {
	echo "$1: $(printf '%s\n' "${@:2}" | sort -g | head -n1)x .. $(printf '%s\n' "${@:2}" |
		sort -g | tail -n1)x"
}

bench_block() {
	local ns_h=$VT_NS-bh ns_c=$VT_NS-bc1 fuse=$VT/fuse dir img sock loop run w host virt nbd
	local args=() figs=() rd=() wr=() rr=() rdn=() wrn=() rrn=() lo
	BENCH_IMG_MB=${BENCH_IMG_MB:-256}
	dir=$(blk_image_dir) || { fail bench-block-setup "no directory on real storage"; return; }
	img=$(mktemp "$dir/vos-bench-XXXXXX.img") || { fail bench-block-setup "image"; return; }
	vt_on_cleanup "rm -f '$img'"
	echo "image: $img, $BENCH_IMG_MB MiB on $(df --output=source,fstype "$dir" | tail -n1 |
		tr -s ' ')"
	# Real data, on the disk: neither side reads holes, unwritten extents or cached pages.
	dd if=/dev/urandom of="$img" bs=1M count="$BENCH_IMG_MB" conv=fsync status=none &&
		dd if="$img" iflag=nocache count=0 status=none ||
		{ fail bench-block-setup "image"; return; }
	vt_ns bh && vt_ns bc1 || { fail bench-block-setup "namespaces"; return; }
	vt_daemon "$ns_h" -d "1:block:image=$img" || { fail bench-block-setup "daemon"; return; }
	vt_card 1 "$ns_c"
	sock=$VT/card1/block0.sock
	vt_card_ready 1 block0 && vt_wait 5 test -S "$sock" ||
		{ fail bench-block-setup "card 1 block0 not up"; return; }
	# The card's export as a block device: nbdfuse makes it a file, losetup a device.
	# BENCH_NBD_CONNS (4) connections: the export offers multi-conn, and nbdfuse's single
	# connection is the first limit (with 1, sequential writes reach about 0.45-0.65x).
	mkdir -p "$fuse"
	vt_on_cleanup "blk_fuse_down '$fuse'"
	timeout -k 5 3600 nbdfuse -C "${BENCH_NBD_CONNS:-4}" -P "$VT/nbdfuse.pid" "$fuse" \
		"nbd+unix:///?socket=$sock" >"$VT/nbdfuse.log" 2>&1 &
	vt_pids+=("$!")
	vt_wait 10 test -s "$VT/nbdfuse.pid" ||
		{ cat "$VT/nbdfuse.log"; fail bench-block-setup "nbdfuse"; return; }
	blk_pids=("$VT_DAEMON" "$VT_CARD" "$(cat "$VT/nbdfuse.pid")")
	vt_on_cleanup "losetup -n -O NAME -j '$fuse/nbd' | xargs -r -n1 losetup -d"
	loop=$(timeout 20 losetup -f --show --direct-io=on "$fuse/nbd") ||
		{ fail bench-block-setup "losetup"; return; }
	pass bench-block-setup
	cat <<EOF
virtio: fio -> $loop -> FUSE -> nbdfuse -> NBD socket -> card frontend -> virtqueue ->
  (SCIF) host backend -> pread/pwrite on the image; nbd: fio's NBD engine on the card's socket
  (no FUSE, no loop); host: fio on the image file. Direct I/O, libaio, 16 in flight. The
  daemon itself reads and writes the image through the host's page cache (buffered I/O).
EOF
	for run in $(seq "$BENCH_RUNS"); do
		figs=()
		for w in read write randread; do
			case $w in
			read) args=(read_mbs --rw=read --bs=1M) ;;
			write) args=(write_mbs --rw=write --bs=1M) ;;
			randread) args=(read_iops --rw=randread --bs=4k) ;;
			esac
			host=$(blk_fio "${args[@]}" --filename="$img" --direct=1 --ioengine=libaio) &&
				blk_measure virtio $w "${args[@]}" --filename="$loop" --direct=1 \
					--ioengine=libaio && virt=$BLK_FIG &&
				blk_measure nbd $w "${args[@]}" --ioengine=nbd \
					--uri="nbd+unix:///?socket=$sock" && nbd=$BLK_FIG ||
				{ fail "bench-block-run-$run" "fio $w failed"; continue 2; }
			figs+=("$w: virtio $virt, nbd $nbd, host $host:" \
			       "$(ratio "$virt" "$host")x ($(ratio "$nbd" "$host")x)")
			case $w in
			read) rd+=("$(ratio "$virt" "$host")") rdn+=("$(ratio "$nbd" "$host")") ;;
			write) wr+=("$(ratio "$virt" "$host")") wrn+=("$(ratio "$nbd" "$host")") ;;
			randread) rr+=("$(ratio "$virt" "$host")") rrn+=("$(ratio "$nbd" "$host")") ;;
			esac
		done
		echo "run $run (1 MiB sequential: MB/s, 4 KiB random: IOPS; ratio virtio/host (nbd/host)):"
		printf '  %s %s\n' "${figs[@]}"
	done
	[ ${#rd[@]} -gt 0 ] || { fail bench-block "no run completed"; return; }
	range "sequential read, virtio / host" "${rd[@]}"
	range "sequential write, virtio / host" "${wr[@]}"
	range "4 KiB random read, virtio / host" "${rr[@]}"
	range "without FUSE and loop (nbd / host): sequential read" "${rdn[@]}"
	range "without FUSE and loop (nbd / host): sequential write" "${wrn[@]}"
	range "without FUSE and loop (nbd / host): 4 KiB random read" "${rrn[@]}"
	echo "CPU while fio ran, % of one core (of 2), daemon/card frontend/nbdfuse, mean of the runs:"
	for w in read write randread; do
		echo "  $w: virtio $(blk_cpu_line virtio $w), nbd $(blk_cpu_line nbd $w)"
	done
	grep '^card1/block0 ' "$VT/host/status"
	lo=$(printf '%s\n' "${rd[@]}" "${wr[@]}" | sort -g | head -n1)
	if awk -v v="$lo" 'BEGIN { exit !(v >= 0.7) }'; then pass bench-block-target
	else fail bench-block-target "lowest sequential ratio ${lo}x < 0.7x"; fi
}

groups=(${BENCH_GROUPS:-net block})
for g in "${groups[@]}"; do
	if ! declare -F "bench_$g" >/dev/null; then
		[ -n "${BENCH_GROUPS:-}" ] && fail "bench-$g" "no such bench"
		continue
	fi
	echo "== $g"
	"bench_$g"
	# The next group starts on an idle machine: no daemon, card or client of this one left.
	for p in "${vt_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${vt_pids[@]}"; do wait "$p" 2>/dev/null; done
	vt_pids=()
done
vt_summary
