#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/t-block.sh - virtio-blk end to end: scif-virtiod serves card 1 a 256 MiB sparse
# image (block0) and a read-only one (block1); scif-virtio-card exports them as NBD servers on
# RUNDIR/block<i>.sock. Checked through the card's sockets: nbdinfo, qemu-io patterns,
# qemu-img compare against the image, the NBD protocol itself (options, bad requests,
# pipelining, hostile clients), nbdfuse + loop: fio --verify, mkfs.ext4 + files with checksums
# across a remount; after a clean shutdown the image holds the file system and a known region;
# a card frontend SIGKILLed under a writer loses no acknowledged write; a daemon gone makes
# requests fail with EIO (no hang) and they work again when it is back; the read-only device
# refuses writes and serves reads. Run by `make check-virtio VIRTIO_CHECKS=block` (root).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup block

IMG=$VT/disk.img                 # the host's image of block0 (256 MiB, sparse)
ROIMG=$VT/ro.img                 # the host's image of block1 (served read-only)
SOCK=$VT/card1/block0.sock
ROSOCK=$VT/card1/block1.sock
URI="nbd+unix:///?socket=$SOCK"
ROURI="nbd+unix:///block1?socket=$ROSOCK"
FUSE=$VT/fuse                    # nbdfuse mount point: $FUSE/nbd is the export as a file
MNT=$VT/mnt
LOOP=

# A scripted NBD client (raw protocol, no library) for what qemu-io cannot do: protocol
# corner cases, hostile clients, a writer that records every acknowledged write.
cat >"$VT/nbd.py" <<'EOF'
import os, random, socket, struct, sys, time

NBDMAGIC, IHAVEOPT, REPMAGIC = 0x4e42444d41474943, 0x49484156454f5054, 0x3e889045565a9
REQ, REP = 0x25609513, 0x67446698
READ, WRITE, DISC, FLUSH, TRIM, WZ = 0, 1, 2, 3, 4, 6
FUA, NO_HOLE = 1, 2
EPERM, EIO, EINVAL = 1, 5, 22
ACK, SERVER, INFO = 1, 2, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN = 2**31 + 1, 2**31 + 3, 2**31 + 6
F_READ_ONLY, F_SEND_TRIM, F_SEND_WZ = 1 << 1, 1 << 5, 1 << 6

def fail(msg):
    sys.exit("FAILED: " + msg)

def check(cond, msg):
    if not cond:
        fail(msg)

class Nbd:
    def __init__(self, path, timeout=20, flags=3):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        magic, opt, self.hflags = struct.unpack(">QQH", self.recv(18))
        check(magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting")
        if flags is not None:
            self.s.sendall(struct.pack(">I", flags))
        self.lens = {}

    def recv(self, n):
        b = bytearray()
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("the server closed the connection")
            b += c
        return bytes(b)

    def closed_by_server(self, timeout=10):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.s.settimeout(timeout)
        try:
            while self.s.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def opt(self, o, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)

    def rep(self):
        magic, o, t, n = struct.unpack(">QIII", self.recv(20))
        check(magic == REPMAGIC, "bad option reply magic")
        return o, t, self.recv(n)

    def info(self, name=b"", o=7, infos=(3,)):
        """NBD_OPT_GO (7) or NBD_OPT_INFO (6): 0, or the error reply type."""
        self.opt(o, struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) +
                 b"".join(struct.pack(">H", i) for i in infos))
        while True:
            ro, t, d = self.rep()
            check(ro == o, "reply to option %d for option %d" % (ro, o))
            if t == INFO and struct.unpack(">H", d[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", d[2:])
            elif t == INFO and struct.unpack(">H", d[:2])[0] == 3:
                self.bs = struct.unpack(">III", d[2:])
            elif t != INFO:
                return 0 if t == ACK else t

    def send(self, cmd, off, n, handle, data=b"", flags=0):
        self.lens[handle] = n if cmd == READ else 0
        self.s.sendall(struct.pack(">IHHQQI", REQ, flags, cmd, handle, off, n) + data)

    def reply(self):
        """(error, handle, data) of the next reply."""
        magic, err, handle = struct.unpack(">IIQ", self.recv(16))
        check(magic == REP, "bad reply magic %#x" % magic)
        check(handle in self.lens, "reply for unknown handle %#x" % handle)
        n = self.lens.pop(handle)
        return err, handle, self.recv(n) if not err and n else b""

    def do(self, cmd, off, n, data=b"", flags=0):
        h = random.getrandbits(64)
        self.send(cmd, off, n, h, data, flags)
        err, rh, d = self.reply()
        check(rh == h, "reply handle %#x, sent %#x" % (rh, h))
        return err, d

def proto(path):
    """Handshake options, request validation, pipelining."""
    c = Nbd(path)
    check(c.hflags & 1, "no NBD_FLAG_FIXED_NEWSTYLE")
    c.opt(8)                                               # STRUCTURED_REPLY
    check(c.rep()[1] == ERR_UNSUP, "structured replies not refused")
    c.opt(1234, b"whatever")
    check(c.rep()[1] == ERR_UNSUP, "unknown option not refused")
    c.opt(3)                                               # LIST
    _, t, d = c.rep()
    check(t == SERVER and d[4:] == b"block0", "LIST: %d %r" % (t, d))
    check(c.rep()[1] == ACK, "LIST not acknowledged")
    c.opt(3, b"x")
    check(c.rep()[1] == ERR_INVALID, "LIST with data accepted")
    check(c.info(b"nosuch", 6) == ERR_UNKNOWN, "unknown export accepted")
    c.opt(6, struct.pack(">I", 1000) + b"ab")              # name longer than the option
    check(c.rep()[1] == ERR_INVALID, "bad INFO accepted")
    check(c.info(b"block0", 6) == 0, "INFO block0 refused")
    check(c.info(b"") == 0, "GO refused")
    size, bmin, bmax = c.size, c.bs[0], c.bs[2]
    check(size == 256 << 20 and bmin == 512 and bmax >= 1 << 20, "size %d bs %r" % (size, c.bs))
    check(c.tflags & F_SEND_TRIM and c.tflags & F_SEND_WZ and not c.tflags & F_READ_ONLY,
          "transmission flags %#x" % c.tflags)

    bad = [("read past the end", READ, size - 512, 1024, b"", 0),
           ("read with offset+len overflowing", READ, 2**64 - 512, 1024, b"", 0),
           ("read larger than the maximum", READ, 0, bmax + 512, b"", 0),
           ("unknown command", 77, 0, 512, b"", 0),
           ("unknown command flag", READ, 0, 512, b"", 1 << 9),
           ("unaligned write", WRITE, 1, 512, os.urandom(512), 0),
           ("write past the end", WRITE, size, 4096, os.urandom(4096), 0),
           ("trim past the end", TRIM, size - 512, 1024, b"", 0),
           ("write larger than the maximum", WRITE, 0, bmax + 4096, bytes(bmax + 4096), 0)]
    for name, cmd, off, n, data, flags in bad:
        err, _ = c.do(cmd, off, n, data, flags)
        check(err == EINVAL, "%s: error %d, want EINVAL" % (name, err))
    check(c.do(READ, 0, 0) == (0, b""), "zero-length read")

    # 128 writes of random sizes and places in flight at once, then reads of them (some
    # unaligned), all pipelined; replies may come in any order.
    base, blocks = 64 << 20, []
    for i in range(128):
        n = random.choice([512, 4096, 65536, 131072, 200704, 1 << 20])
        blocks.append((base, os.urandom(n)))
        base += n + 4096 * random.randrange(4)
    for i, (off, data) in enumerate(blocks):
        c.send(WRITE, off, len(data), i, data, FUA if i % 7 == 0 else 0)
    got = set()
    for _ in blocks:
        err, h, _ = c.reply()
        check(err == 0, "pipelined write %d: error %d" % (h, err))
        got.add(h)
    check(len(got) == len(blocks), "lost replies")
    want = {}
    for i, (off, data) in enumerate(blocks):
        skip = random.randrange(len(data) // 2) if i % 3 == 0 else 0
        want[1000 + i] = data[skip:]
        c.send(READ, off + skip, len(data) - skip, 1000 + i)
    for _ in blocks:
        err, h, d = c.reply()
        check(err == 0 and d == want[h], "pipelined read %d: error %d or wrong data" % (h, err))
    check(c.do(FLUSH, 0, 0)[0] == 0, "flush")
    off, data = blocks[0][0], blocks[0][1]
    check(c.do(WZ, off, len(data))[0] == 0, "write zeroes")
    check(c.do(READ, off, len(data)) == (0, bytes(len(data))), "zeroes not read back")
    check(c.do(WZ, off, 512, flags=NO_HOLE | FUA)[0] == 0, "write zeroes, no hole, FUA")
    check(c.do(TRIM, blocks[1][0] + 1, 100000)[0] == 0, "trim")
    c.send(DISC, 0, 0, 0)
    check(c.closed_by_server(), "server did not close after NBD_CMD_DISC")
    print("protocol: options, %d bad requests refused, %d pipelined writes and reads ok"
          % (len(bad), len(blocks)))

def hostile(path):
    """Clients speaking garbage are disconnected; the server goes on serving."""
    cases = 0
    c = Nbd(path, flags=None)
    c.s.sendall(os.urandom(64) + b"\xff\xff\xff\xff")      # unknown client flags first
    check(c.closed_by_server(), "garbage client flags")
    c = Nbd(path)
    c.s.sendall(os.urandom(16))                             # bad option magic
    check(c.closed_by_server(), "bad option magic")
    c = Nbd(path)
    c.s.sendall(struct.pack(">QII", IHAVEOPT, 7, 1 << 30))  # a 1 GiB option
    check(c.closed_by_server(), "huge option")
    c = Nbd(path)
    c.opt(1, b"nosuch")                                     # EXPORT_NAME, unknown
    check(c.closed_by_server(), "EXPORT_NAME of an unknown export")
    c = Nbd(path)
    check(c.info() == 0, "GO")
    c.s.sendall(os.urandom(28))                             # bad request magic
    check(c.closed_by_server(), "bad request magic")
    cases += 5
    for cut in (3, 17, 40):                                 # gone mid-handshake / mid-request
        c = Nbd(path)
        c.info()
        c.s.sendall(struct.pack(">IHHQQI", REQ, 0, WRITE, 1, 0, 4 << 20) + bytes(cut * 1000))
        c.s.close()
        cases += 1
    for _ in range(3):
        socket.socket(socket.AF_UNIX).connect(path)         # connect and vanish
    c = Nbd(path, flags=3)
    c.opt(2)                                                # ABORT
    check(c.rep()[1] == ACK and c.closed_by_server(), "ABORT")
    c = Nbd(path)
    c.opt(1, b"block0")                                     # old-style EXPORT_NAME works
    size, _ = struct.unpack(">QH", c.recv(10))
    check(size == 256 << 20, "EXPORT_NAME size %d" % size)
    check(c.do(READ, 0, 4096)[0] == 0, "read after EXPORT_NAME")
    conns = [Nbd(path) for _ in range(6)]                  # several clients at once
    for k in conns:
        check(k.info(b"block0") == 0, "GO on one of several connections")
    for i, k in enumerate(conns):
        k.send(READ, i * 4096, 4096, i)
    for k in conns:
        check(k.reply()[0] == 0, "read on one of several connections")
    print("%d hostile clients disconnected, then 7 good clients served" % cases)

def block(tag, i):
    return struct.pack(">QQ", tag, i) * 256

def numbered(path, ackfile, base, count, tag):
    """Write numbered 4 KiB blocks, 16 in flight, recording each acknowledged one."""
    base, count, tag = int(base), int(count), int(tag)
    c = Nbd(path)
    check(c.info() == 0, "GO")
    fd = os.open(ackfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    nxt, inflight, acked = 0, 0, 0
    try:
        while nxt < count or inflight:
            while nxt < count and inflight < 16:
                c.send(WRITE, base + nxt * 4096, 4096, nxt, block(tag, nxt))
                nxt, inflight = nxt + 1, inflight + 1
            err, h, _ = c.reply()
            inflight -= 1
            if err:
                break
            os.write(fd, b"%d\n" % h)
            acked += 1
    except (EOFError, OSError) as e:
        print("writer stopped: %s" % e)
    print("%d writes sent, %d acknowledged" % (nxt, acked))

def verify(img, ackfile, base, tag, least):
    base, tag = int(base), int(tag)
    acked = [int(x) for x in open(ackfile).read().split()]
    check(len(acked) >= int(least), "only %d acknowledged writes" % len(acked))
    with open(img, "rb") as f:
        for i in acked:
            f.seek(base + i * 4096)
            check(f.read(4096) == block(tag, i), "acknowledged block %d is not in the image" % i)
    print("all %d acknowledged blocks are in the image" % len(acked))

def readonly(path, img):
    c = Nbd(path)
    check(c.info(b"block1") == 0, "GO block1")
    check(c.tflags & F_READ_ONLY, "no NBD_FLAG_READ_ONLY: %#x" % c.tflags)
    want = open(img, "rb").read(1 << 20)
    check(c.do(READ, 0, 1 << 20) == (0, want), "read from the read-only device")
    err, _ = c.do(WRITE, 0, 4096, os.urandom(4096))
    check(err == EPERM, "write: error %d, want EPERM" % err)
    check(c.do(TRIM, 0, 4096)[0] == EPERM, "trim on a read-only device")
    check(c.do(READ, 4096, 4096) == (0, want[4096:8192]), "read after the refused write")
    print("read-only: reads ok, writes refused with EPERM")

def wait_file(p, t):
    end = time.monotonic() + t
    while not os.path.exists(p):
        check(time.monotonic() < end, "timed out waiting for " + p)
        time.sleep(0.05)

def hostgone(path, steps):
    """One connection across the daemon's death and return."""
    c = Nbd(path)
    check(c.info() == 0, "GO")
    data = os.urandom(65536)
    check(c.do(WRITE, 1 << 20, len(data), data)[0] == 0, "write before")
    # When the host goes: a 32 MiB READ done but its reply not yet taken by us (the data
    # waits in the device window), and a WRITE whose payload is a quarter sent.
    big = os.urandom(4 << 20)
    check(c.do(WRITE, 8 << 20, len(big), big)[0] == 0, "write before")
    c.send(READ, 8 << 20, 32 << 20, 1)
    time.sleep(1)
    payload = os.urandom(8 << 20)
    c.send(WRITE, 48 << 20, len(payload), 2, payload[:2 << 20])
    open(steps + "/ready", "w").close()
    wait_file(steps + "/killed", 30)
    c.s.sendall(payload[2 << 20:])
    err, h, d = c.reply()
    check(h == 1 and err == 0 and d[:len(big)] == big, "READ finished before the host went: "
          "handle %d error %d, data %s" % (h, err, "ok" if d[:len(big)] == big else "wrong"))
    err, h, d = c.reply()
    check(h == 2 and err == EIO, "WRITE cut by the host going: handle %d error %d" % (h, err))
    t = time.monotonic()
    err, _ = c.do(READ, 1 << 20, 65536)
    check(err == EIO, "read with the host gone: error %d, want EIO" % err)
    err, _ = c.do(WRITE, 0, 4096, bytes(4096))
    check(err == EIO, "write with the host gone: error %d, want EIO" % err)
    check(time.monotonic() - t < 5, "EIO took %.1f s" % (time.monotonic() - t))
    open(steps + "/failed", "w").close()
    wait_file(steps + "/restarted", 30)
    end = time.monotonic() + 20
    while True:
        err, d = c.do(READ, 1 << 20, 65536)
        if err == 0:
            break
        check(err == EIO and time.monotonic() < end, "read after the restart: error %d" % err)
        time.sleep(0.2)
    check(d == data, "data written before the daemon died reads back wrong")
    check(c.do(WRITE, 2 << 20, 4096, data[:4096])[0] == 0, "write after the restart")
    print("EIO while the host was gone, same connection works again after")

globals()[sys.argv[1]](*sys.argv[2:])
EOF
nbdpy() { timeout -k 5 "$1" python3 "$VT/nbd.py" "${@:2}"; }

# A dead peer explains most failures: say so, with its exit status.
gone() { [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]; }
peers() {
	local name pid
	for name in daemon:${VT_DAEMON:-} card:${VT_CARD:-}; do
		pid=${name#*:}
		[ -n "$pid" ] && gone "$pid" || continue
		wait "$pid" 2>/dev/null   # not in $(...): a subshell cannot wait for our children
		echo "${name%%:*} (pid $pid) is dead, exit status $?"
	done
	return 0
}
# stop NAME PID: SIGTERM; PASS-worthy only if it exits with status 0 within 10 s.
stop() {
	local rc
	kill -TERM "$2" 2>/dev/null
	vt_wait 10 gone "$2" || kill -KILL "$2" 2>/dev/null
	wait "$2" 2>/dev/null; rc=$?
	echo "$1 (pid $2) stopped: exit status $rc"
	[ "$rc" = 0 ]
}

# (Re)start the daemon or the card frontend; a stale status file must not count as ready.
daemon() {
	rm -f "$VT/host/status"
	vt_daemon "$VT_NS-h" -d "1:block:image=$IMG" -d "1:block:image=$ROIMG,ro"
}
card() {
	rm -f "$VT/card1/status"
	vt_card 1 "$VT_NS-c1"
	vt_card_ready 1 block0 && vt_card_ready 1 block1 && vt_wait 5 test -S "$SOCK" ||
		{ peers; return 1; }
}

t_start() {
	truncate -s 256M "$IMG" || return 1
	head -c 4M /dev/urandom >"$ROIMG" && truncate -s 16M "$ROIMG" || return 1
	vt_ns h >/dev/null && vt_ns c1 >/dev/null || return 1
	daemon || return 1
	card || return 1
	grep "^card1/block" "$VT/host/status"
	grep "^block" "$VT/card1/status"
}

t_nbdinfo() {
	local out
	out=$(timeout 20 nbdinfo "$URI") || { echo "$out"; peers; return 1; }
	echo "$out"
	grep -q "export-size: 268435456 " <<<"$out" && grep -q "can_trim: true" <<<"$out" &&
		grep -q "is_read_only: false" <<<"$out"
}

t_qemu_io() {
	local out
	out=$(timeout 60 qemu-io -f raw "$URI" \
		-c "write -P 0xab 0 1M" -c "read -P 0xab 0 1M" \
		-c "write -P 0x5c 3M 33M" -c "read -P 0x5c 3M 33M" \
		-c "write -P 0x11 40M 300k" -c "read -P 0x11 40M 300k" \
		-c "read -P 0xab 1000 1000" -c "write -P 0x22 100 10" -c "read -P 0x22 100 10" \
		-c "write -f -P 0x33 50M 64k" -c "write -z 48M 1M" -c "read -P 0 48M 1M" \
		-c "discard 52M 2M" -c "flush" 2>&1)
	echo "$out"
	! grep -qiE "fail|error" <<<"$out" && [ "$(grep -c '^wrote\|^read' <<<"$out")" = 12 ] ||
		{ peers; return 1; }
	# The export and the image file the host serves must be identical, byte for byte.
	timeout 60 qemu-img compare -f raw -F raw "$URI" "$IMG" || { peers; return 1; }
}

t_proto() { nbdpy 120 proto "$SOCK" || { peers; return 1; }; }
t_hostile() {
	nbdpy 120 hostile "$SOCK" || { peers; return 1; }
	gone "$VT_CARD" && { peers; return 1; }
	timeout 20 nbdinfo "$URI" >/dev/null
}

# Unmount the FUSE file; busy for a moment after losetup -d, lazily unmounted if it stays so.
fuse_down() {
	local i
	for i in $(seq 100); do
		mountpoint -q "$FUSE" || return 0
		fusermount3 -u "$FUSE" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "$FUSE stays busy: unmounted lazily"
	umount -l "$FUSE"
	return 1
}

t_fuse() {
	mkdir -p "$FUSE"
	vt_on_cleanup fuse_down
	timeout -k 5 600 nbdfuse -P "$VT/nbdfuse.pid" "$FUSE" --unix "$SOCK" \
		>"$VT/nbdfuse.log" 2>&1 &
	vt_pids+=("$!")
	vt_wait 10 test -s "$VT/nbdfuse.pid" || { cat "$VT/nbdfuse.log"; return 1; }
	[ "$(timeout 10 stat -c %s "$FUSE/nbd")" = 268435456 ] || { ls -l "$FUSE"; return 1; }
	# Clean-up detaches whatever loop device still backs our file, never a reused number.
	vt_on_cleanup "losetup -n -O NAME -j '$FUSE/nbd' | xargs -r -n1 losetup -d"
	LOOP=$(timeout 20 losetup -f --show "$FUSE/nbd") || return 1
	echo "loop device $LOOP on $FUSE/nbd"
}

# fio with checksums on the loop device: direct I/O, 16 in flight, bounded size and time.
t_fio() {
	[ -n "$LOOP" ] || return 1
	timeout -k 5 120 fio --name=vblk --filename="$LOOP" --direct=1 --ioengine=libaio \
		--iodepth=16 --rw=randwrite --bsrange=4k-256k --offset=192M --size=48M \
		--verify=crc32c --verify_fatal=1 --do_verify=1 --runtime=60 \
		>"$VT/fio.out" 2>&1 || { tail "$VT/fio.out"; peers; return 1; }
	grep -E "^ +(READ|WRITE):" "$VT/fio.out"
}

# A 20 MiB file and 200 small ones, checksummed, across an unmount and a remount.
t_ext4() {
	[ -n "$LOOP" ] || return 1
	mkdir -p "$MNT"
	timeout 60 mkfs.ext4 -q -F "$LOOP" 160M || return 1
	vt_on_cleanup "umount -l '$MNT'"
	timeout 20 mount "$LOOP" "$MNT" || return 1
	timeout 60 bash -c '
		head -c 20M /dev/urandom >"$1/big" && mkdir "$1/small" || exit 1
		for i in $(seq 200); do
			head -c $((RANDOM * 3 + i)) /dev/urandom >"$1/small/f$i" || exit 1
		done
		cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum >"$2"
	' sh "$MNT" "$VT/files.sha" || return 1
	timeout 60 umount "$MNT" || return 1
	# Nothing cached on this side: the remount reads from the card.
	timeout 20 blockdev --flushbufs "$LOOP" && echo 1 >/proc/sys/vm/drop_caches
	timeout 20 mount "$LOOP" "$MNT" || return 1
	(cd "$MNT" && timeout 60 sha256sum --quiet -c "$VT/files.sha") || return 1
	echo "$(wc -l <"$VT/files.sha") files verified after a remount"
	timeout 60 umount "$MNT"
}

# A known random region written through the loop device, then everything torn down in
# order: loop, FUSE, card frontend (SIGTERM), daemon (SIGTERM). The image must hold the region
# and a clean file system with the files checksummed above.
t_clean_shutdown() {
	local rc
	[ -n "$LOOP" ] || return 1
	head -c 8M /dev/urandom >"$VT/region"
	timeout 60 dd if="$VT/region" of="$LOOP" bs=1M seek=168 oflag=direct conv=fsync \
		status=none || return 1
	# losetup -d lets go of the file asynchronously: FUSE is busy until it has.
	timeout 20 losetup -d "$LOOP" || return 1
	fuse_down || return 1
	stop "card frontend" "$VT_CARD" && stop daemon "$VT_DAEMON" || return 1
	cmp <(dd if="$IMG" bs=1M skip=168 count=8 status=none) "$VT/region" || return 1
	timeout 60 e2fsck -fn "$IMG" || return 1
	timeout 20 mount -o ro,loop "$IMG" "$MNT" || return 1
	(cd "$MNT" && timeout 60 sha256sum --quiet -c "$VT/files.sha"); rc=$?
	umount "$MNT"
	[ "$rc" = 0 ] && echo "region and $(wc -l <"$VT/files.sha") files are in the image"
}

t_restart() { daemon && card; }

t_readonly() {
	nbdpy 60 readonly "$ROSOCK" "$ROIMG" || { peers; return 1; }
	local out
	out=$(timeout 20 qemu-io -f raw -c "write -P 1 0 4k" "$ROURI" 2>&1)
	echo "qemu-io write: $out"
	grep -qi "denied\|read-only\|not permitted" <<<"$out" || return 1
	out=$(timeout 20 qemu-io -r -f raw -c "read -v 0 16" "$ROURI" 2>&1)
	echo "qemu-io -r read: $out"
	[ "$(awk '/^00000000:/ { for (i = 2; i <= 17; i++) printf "%s", $i }' <<<"$out")" = \
	  "$(head -c 16 "$ROIMG" | od -An -tx1 | tr -d ' \n')" ]
}

acked_at_least() { [ "$(wc -l <"$VT/acked")" -ge "$1" ]; }
# SIGKILL the card frontend under a writer with 16 writes in flight: every write it had
# acknowledged must be in the image (read straight from the file, the daemon still running).
t_sigkill() {
	local w tag=$RANDOM$RANDOM
	: >"$VT/acked"
	nbdpy 120 numbered "$SOCK" "$VT/acked" $((96 << 20)) 30000 "$tag" >"$VT/writer.log" 2>&1 &
	w=$!
	vt_wait 30 acked_at_least 300 ||
		{ cat "$VT/writer.log"; kill "$w"; peers; return 1; }
	kill -KILL "$VT_CARD"
	echo "card frontend killed after $(wc -l <"$VT/acked") acks"
	wait "$VT_CARD"
	wait "$w"; cat "$VT/writer.log"
	nbdpy 60 verify "$IMG" "$VT/acked" $((96 << 20)) "$tag" 300 || return 1
	card || return 1
	gone "$VT_DAEMON" && { peers; return 1; }
	timeout 20 nbdinfo "$URI" >/dev/null
}

# The daemon goes away under a connected client: its requests fail with EIO (no hang), a READ
# it had finished is still delivered; the daemon comes back, the card re-attaches and the same
# connection works again.
t_host_gone() {
	local c steps=$VT/steps
	mkdir -p "$steps"
	nbdpy 120 hostgone "$SOCK" "$steps" & c=$!
	vt_wait 20 test -e "$steps/ready" || { kill "$c"; peers; return 1; }
	stop daemon "$VT_DAEMON"
	touch "$steps/killed"
	vt_wait 20 test -e "$steps/failed" || { kill "$c"; wait "$c"; return 1; }
	daemon || { kill "$c"; return 1; }
	touch "$steps/restarted"
	wait "$c" || return 1
	# Both exit cleanly after all that (with sanitizers: nothing leaked).
	stop "card frontend" "$VT_CARD" && stop daemon "$VT_DAEMON"
}

check block-start t_start
check block-nbdinfo t_nbdinfo
check block-qemu-io t_qemu_io
check block-protocol t_proto
check block-hostile-clients t_hostile
check block-nbdfuse-loop t_fuse
check block-fio-verify t_fio
check block-ext4 t_ext4
check block-clean-shutdown t_clean_shutdown
check block-restart t_restart
check block-read-only t_readonly
check block-sigkill-writer t_sigkill
check block-host-gone t_host_gone
vt_summary
