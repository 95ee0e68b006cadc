#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/virtio/t-console.sh - virtio-console end to end: scif-virtiod serves card 1 a console,
# scif-virtio-card gives it a pty with an interactive shell on it, and the host drives that
# shell through its own pty (RUNDIR/card1/console0): a command and its output, 1 MiB each way
# with checksums, a window size change seen by `stty size` on the card, card output with no
# host user (dropped, never blocking), a card frontend killed and restarted under a host user
# who keeps the host pty open (their typing waits for the new card), the daemon killed and
# restarted (the card's shell hung up, its console never missing), and clean exits removing
# the links. Run by `make check-virtio VIRTIO_CHECKS=console` (root).
. "$top_srcdir/tests/virtio/lib.sh"
vt_setup console

HCON=$VT/host/card1/console0     # the host user's side
CCON=$VT/card1/console0          # the card's side: the shell runs here
STATUS_RE='pty=/dev/pts/[0-9]+ cols=[0-9]+ rows=[0-9]+ rx=[0-9]+ tx=[0-9]+$'

# The host user, scripted: opens HCON (raw), types, reads back with a deadline, never
# blocks on the pty (it reads while it writes, so flow control cannot deadlock it).
cat >"$VT/con.py" <<'EOF'
import base64, fcntl, hashlib, os, random, re, select, struct, sys, termios, time, tty

class Con:
    def __init__(self, path, deadline):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.out = bytearray()
        self.end = time.monotonic() + deadline

    def left(self):
        t = self.end - time.monotonic()
        if t <= 0:
            sys.exit("deadline passed; the output ends with %r" % bytes(self.out[-200:]))
        return t

    def pump(self, want_write, timeout):
        """Read what is there (waiting up to timeout); True if the pty takes writes."""
        r, w, _ = select.select([self.fd], [self.fd] if want_write else [], [],
                                min(timeout, self.left()))
        if r:
            try:
                self.out += os.read(self.fd, 65536)
            except BlockingIOError:
                pass
            except OSError as e:
                sys.exit("reading the host pty: %s (hung up?)" % e)
        return bool(w)

    def send(self, data):
        data = memoryview(data)
        while data:
            if self.pump(True, 1.0):
                try:
                    data = data[os.write(self.fd, data):]
                except BlockingIOError:
                    pass

    def expect(self, pattern, timeout, start=0):
        """Search the output from start for pattern (a short marker); None on timeout."""
        rx = re.compile(pattern)
        end = min(time.monotonic() + timeout, self.end)
        while True:
            m = rx.search(self.out, start)
            if m:
                return m
            start = max(start, len(self.out) - 200)
            t = end - time.monotonic()
            if t <= 0:
                return None
            self.pump(False, t)

def main(path, mode, *args):
    n = random.randrange(10**8)
    mark = lambda name: (b"echo %s-$((%d+1))" % (name, n), rb"%s-%d\r?\n" % (name, n + 1))
    if mode == "hello":
        c = Con(path, 30)
        cmd, want = mark(b"hello")
        for _ in range(10):
            start = len(c.out)
            c.send(cmd + b"\n")
            if c.expect(want, 3, start):
                return print("marker back after %d bytes" % len(c.out))
        sys.exit("no marker; output: %r" % bytes(c.out[-300:]))
    if mode == "c2h":
        # the card's shell prints a file as base64 into the host's pty
        src = open(args[0], "rb").read()
        c = Con(path, 120)
        cmd, want = mark(b"BEGIN")
        c.send(cmd + b"; base64 %s; echo END-$((%d+1))\n" % (args[0].encode(), n))
        m1 = c.expect(want, 30) or sys.exit("no BEGIN marker: %r" % bytes(c.out[-300:]))
        m2 = c.expect(rb"END-%d\r?\n" % (n + 1), 110, m1.end())
        m2 or sys.exit("no END marker after %d bytes" % (len(c.out) - m1.end()))
        got = base64.b64decode(bytes(c.out[m1.end():m2.start()]).translate(None, b"\r\n"))
        if hashlib.sha256(got).digest() != hashlib.sha256(src).digest():
            sys.exit("checksum mismatch: %d bytes received, %d sent" % (len(got), len(src)))
        return print("%d bytes card -> host, sha256 matches" % len(got))
    if mode == "h2c":
        # the host types a file as base64 into `base64 -d` on the card (echo off)
        src, dst = args[0], args[1]
        data = open(src, "rb").read()
        c = Con(path, 120)
        cmd, want = mark(b"READY")
        c.send(b"stty -echo; " + cmd + b"\n")
        m = c.expect(want, 20) or sys.exit("no READY marker: %r" % bytes(c.out[-300:]))
        c.send(b"base64 -d >%s; echo DONE-$((%d+1))\n" % (dst.encode(), n))
        c.send(base64.encodebytes(data) + b"\x04")
        c.expect(rb"DONE-%d\r?\n" % (n + 1), 100, m.end()) or \
            sys.exit("no DONE marker: %r" % bytes(c.out[-300:]))
        c.send(b"stty echo\n")
        got = open(dst, "rb").read()
        if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            sys.exit("checksum mismatch: %d bytes on the card, %d sent" % (len(got), len(data)))
        return print("%d bytes host -> card, sha256 matches" % len(got))
    if mode == "winsize":
        rows, cols = int(args[0]), int(args[1])
        c = Con(path, 30)
        fcntl.ioctl(c.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        for _ in range(20):
            start = len(c.out)
            c.send(b"stty size\n")
            if c.expect(rb"(?m)^%d %d\r?$" % (rows, cols), 1, start):
                return print("card sees %d rows %d cols" % (rows, cols))
        sys.exit("stty size never showed %d %d: %r" % (rows, cols, bytes(c.out[-300:])))
    if mode == "queued":
        # opened while a card is up; types once, after the card died, and keeps the pty
        # open until the next card's shell ran the command
        c = Con(path, 90)
        while not os.path.exists(args[0]):
            c.pump(False, 0.1)
        cmd, want = mark(b"queued")
        c.send(cmd + b"\n")
        c.expect(want, 80) or sys.exit("typed input lost: %r" % bytes(c.out[-300:]))
        return print("input typed while no card was there ran on the next card")
    sys.exit("unknown mode " + mode)

main(*sys.argv[1:])
EOF
con() { timeout -k 5 150 python3 "$VT/con.py" "$HCON" "$@"; }

# A dead peer explains most failures: say so, with its exit status.
peers() {
	local name pid
	for name in daemon:${VT_DAEMON:-} card:${VT_CARD:-} shell:${VT_SHELL:-}; do
		pid=${name#*:}
		if [ -n "$pid" ] && gone "$pid"; then
			echo -n "${name%%:*} (pid $pid) is dead, exit status "
			vt_exit_status "$pid"    # not in $(...): a subshell may not see it reaped
		fi
	done
	return 0
}
# gone PID: the process exited (a zombie counts: it is our child).
gone() { [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]; }

# An interactive shell on the card's console, as a session leader that takes the pty as its
# controlling terminal (so a hang-up reaches it as SIGHUP). Sets VT_SHELL.
card_shell() {
	vt_wait 10 test -e "$CCON" || { echo "no $CCON"; return 1; }
	env -u ENV PS1='$ ' setsid sh -c 'exec sh -i <>"$1" >&0 2>&0' sh "$CCON" \
		</dev/null >/dev/null 2>&1 &
	VT_SHELL=$!
	vt_pids+=("$VT_SHELL")
}

t_start() {
	vt_ns h && vt_ns c1 || return 1
	vt_daemon "$VT_NS-h" -d 1:console || return 1
	vt_card 1 "$VT_NS-c1"
	vt_card_ready 1 console0 || { peers; return 1; }
	vt_wait 5 grep -qE "^card1/console0 console up $STATUS_RE" "$VT/host/status" ||
		{ echo "host status:"; cat "$VT/host/status"; peers; return 1; }
	readlink "$HCON" | grep -q '^/dev/pts/[0-9]*$' || { ls -l "$VT/host/card1"; return 1; }
	readlink "$CCON" | grep -q '^/dev/pts/[0-9]*$' || { ls -l "$VT/card1"; return 1; }
	# The card's status line names the pty its symlink points at.
	vt_wait 5 grep -qE "^console0 console up pty=$(readlink "$CCON") rx=[0-9]+ tx=[0-9]+$" \
		"$VT/card1/status" || { echo "card status:"; cat "$VT/card1/status"; return 1; }
	card_shell
}

t_hello() { con hello || { peers; return 1; }; }

t_card_to_host() {
	head -c 1048576 /dev/urandom >"$VT/c2h.bin"
	con c2h "$VT/c2h.bin" || { peers; return 1; }
}

t_host_to_card() {
	head -c 1048576 /dev/urandom >"$VT/h2c.bin"
	con h2c "$VT/h2c.bin" "$VT/h2c.out" || { peers; return 1; }
}

t_winsize() {
	con winsize 37 101 || { peers; return 1; }
	vt_wait 5 grep -q "^card1/console0 console up .* cols=101 rows=37 " "$VT/host/status" ||
		{ echo "host status:"; cat "$VT/host/status"; return 1; }
}

# No host user: the card's output is dropped, its programs never block on it, and the next
# host user does not get a stale flood.
t_unattended() {
	local out n
	timeout 20 sh -c 'head -c 1048576 /dev/zero | tr "\0" x >"$1"' sh "$CCON" ||
		{ echo "1 MiB to the card's console with no host user: exit status $?"; peers; return 1; }
	out=$(con hello) || { peers; return 1; }
	echo "$out"
	n=${out##*after }; n=${n%% *}
	[ "$n" -lt 2000 ] || { echo "stale output reached the next host user"; return 1; }
}

# The card frontend dies under a host user holding the host pty: the card's shell is hung
# up, the host pty and its link stay, what the user types waits for the next card, whose
# new shell runs it.
t_card_restart() {
	local pts shell=$VT_SHELL q rc
	pts=$(readlink "$HCON")
	rm -f "$VT/go"
	timeout -k 5 150 python3 "$VT/con.py" "$HCON" queued "$VT/go" & q=$!
	sleep 1
	kill -KILL "$VT_CARD"
	echo -n "card frontend killed: exit status "
	vt_exit_status "$VT_CARD"
	vt_wait 10 gone "$shell" || { echo "the card's shell was not hung up"; kill $q; return 1; }
	vt_wait 10 grep -q "^card 1 offline" "$VT/host/status" ||
		{ cat "$VT/host/status"; peers; kill $q; return 1; }
	[ "$(readlink "$HCON")" = "$pts" ] && [ -c "$pts" ] ||
		{ echo "host pty changed: $pts -> $(readlink "$HCON")"; kill $q; return 1; }
	touch "$VT/go"            # the user types now, with no card
	sleep 0.5
	vt_card 1 "$VT_NS-c1"
	vt_card_ready 1 console0 || { peers; kill $q; return 1; }
	card_shell || { kill $q; return 1; }
	wait $q; rc=$?
	[ "$rc" = 0 ] || { echo "host user: exit status $rc"; peers; return 1; }
	con hello || { peers; return 1; }
}

# The daemon dies: the card's shell is hung up and a fresh pty takes the card's link at once
# (never a missing console); the next daemon makes a new host pty over the stale link.
t_daemon_restart() {
	local shell=$VT_SHELL pts
	kill -KILL "$VT_DAEMON"
	echo -n "daemon killed: exit status "
	vt_exit_status "$VT_DAEMON"
	vt_wait 10 gone "$shell" || { echo "the card's shell was not hung up"; return 1; }
	vt_wait 10 grep -q "^host disconnected" "$VT/card1/status" ||
		{ cat "$VT/card1/status"; peers; return 1; }
	pts=$(readlink "$CCON")
	[ -c "$pts" ] || { echo "the card's console $pts is missing"; return 1; }
	rm -f "$VT/host/status"
	vt_daemon "$VT_NS-h" -d 1:console || return 1
	vt_card_ready 1 console0 15 || { peers; return 1; }
	vt_wait 5 grep -qE "^card1/console0 console up $STATUS_RE" "$VT/host/status" ||
		{ cat "$VT/host/status"; peers; return 1; }
	card_shell || return 1
	con hello || { peers; return 1; }
}

# Clean exits remove the links.
t_shutdown() {
	kill -TERM "$VT_DAEMON" "$VT_CARD"
	vt_wait 10 gone "$VT_DAEMON" && vt_wait 10 gone "$VT_CARD" || { echo "no clean exit"; return 1; }
	echo -n "daemon: exit status "; vt_exit_status "$VT_DAEMON"
	echo -n "card: exit status "; vt_exit_status "$VT_CARD"
	[ ! -e "$HCON" ] && [ ! -L "$HCON" ] || { ls -l "$HCON"; return 1; }
	[ ! -e "$CCON" ] && [ ! -L "$CCON" ] || { ls -l "$CCON"; return 1; }
}

check console-start t_start
check console-hello t_hello
check console-card-to-host t_card_to_host
check console-host-to-card t_host_to_card
check console-winsize t_winsize
check console-unattended t_unattended
check console-card-restart t_card_restart
check console-daemon-restart t_daemon_restart
check console-shutdown t_shutdown
vt_summary
