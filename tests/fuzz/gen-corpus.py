#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""gen-corpus.py - write the seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/).

Each seed is a short input in its target's encoding (see the comment at the top of each
tests/fuzz/fuzz-*.c): honest sessions first, so that the fuzzer starts from inputs that reach
deep into the code, then a few typical lies. Seeds are rewritten when this script runs;
regression inputs (files named regress-*) are kept as they are.

    python3 tests/fuzz/gen-corpus.py [corpus-dir]
"""
import os
import struct
import sys


def u8(*v):
    return bytes(x & 0xFF for x in v)


def u16(v):
    return struct.pack('<H', v & 0xFFFF)


def u32(v):
    return struct.pack('<I', v & 0xFFFFFFFF)


def u64(v):
    return struct.pack('<Q', v & 0xFFFFFFFFFFFFFFFF)


# fzp_build_send: mask, ring index, fields by mask, descriptor byte (count ^ 2), kinds (^ default)
RING_IDX = {4096: 0, 8192: 1, 65536: 2, 1 << 20: 3, 0: 4, 3000: 5, 4097: 6}
FD_REGION, FD_BELL, FD_UNSEALED, FD_BADSIZE, FD_BADHDR, FD_PIPE, FD_DEVNULL, FD_SOCKET = range(8)
OP = dict(REQ=1, GNT=2, REJ=3, REGISTER=4, UNREGISTER=5, MAP_REF=6, MAP_UNREF=7, MARK=8,
          WAIT=9, SIG=10, REPLY=11)


def msg(ring=4096, op=None, rej_err_idx=None, kinds=(FD_REGION, FD_BELL), raw=None, length=None):
    mask = (4 if op is not None else 0) | (128 if raw is not None else 0) | \
        (64 if length is not None else 0)
    b = u8(mask, RING_IDX[ring])
    if op is not None:
        b += u8(op)
        if op == OP['REJ']:
            b += u8(rej_err_idx or 0)
    if raw is not None:
        b += raw.ljust(64, b'\0')[:64]
    if length is not None:
        b += u8(length)
    dflt = (FD_REGION, FD_BELL)
    b += u8(len(kinds) ^ 2)
    for i, k in enumerate(kinds):
        b += u8(k ^ (dflt[1] if i == 1 else dflt[0]))
    return b


def accept_seeds():
    def link(msgs, after=0):
        return u8(len(msgs) ^ 1) + b''.join(msgs) + u8(after)

    def inp(links, actions, backlog=1):
        return u8(backlog - 1, len(links) - 1) + b''.join(links) + u8(len(actions) - 1) + \
            b''.join(actions)
    accept = u8(0)
    use = u8(4, 0, 9, 1, 2) + u32(1 << 30) + u64(0) + u8(3)  # send, recv, header, poll
    return {
        'honest': inp([link([msg()])], [accept + use]),
        'three-connectors-backlog-1': inp([link([msg()]) for _ in range(3)],
                                          [accept + use, u8(1), accept + use, accept]),
        'sync-accept': inp([link([msg()])], [u8(3) + use, u8(4)]),
        'sync-accept-nothing-pending': inp([link([], after=0)], [u8(3)]),
        'ring-size-not-power-of-two': inp([link([msg(ring=3000)])], [accept]),
        'region-could-shrink': inp([link([msg(kinds=(FD_UNSEALED, FD_BELL))])], [accept]),
        'region-too-long': inp([link([msg(kinds=(FD_BADSIZE, FD_BELL))])], [accept]),
        'bell-is-a-pipe': inp([link([msg(kinds=(FD_REGION, FD_PIPE))])], [accept + use]),
        'five-descriptors': inp([link([msg(kinds=(FD_REGION, FD_BELL, FD_SOCKET, FD_DEVNULL,
                                                   FD_PIPE))])], [accept]),
        'grant-op-instead': inp([link([msg(op=OP['GNT'])])], [accept]),
        'garbage-then-honest': inp([link([msg(raw=bytes(range(7, 71))), msg()]),
                                    link([msg()])], [accept, accept + use], backlog=4),
        'short-datagram': inp([link([msg(length=10)])], [accept]),
        'withdrawn': inp([link([msg()], after=2), link([msg()])], [accept + use], backlog=2),
        'shutdown-after-request': inp([link([msg(), msg()], after=1)], [accept + use]),
    }


def connect_seeds():
    def inp(msgs, hangup=0, mode=0, use=b''):
        return u8(mode, len(msgs) ^ 1) + b''.join(msgs) + u8(hangup) + use
    use = u8(4, 0, 9, 1, 2) + u32(1 << 30) + u64(0) + u8(3)
    return {
        'honest': inp([msg()], use=use),
        'honest-blocking': inp([msg()], mode=1, use=use),
        'reject-enomem': inp([msg(op=OP['REJ'], rej_err_idx=1, kinds=())]),
        'reject-blocking': inp([msg(op=OP['REJ'], kinds=())], mode=1),
        'silence-then-hangup': inp([], hangup=2),
        'silence-blocking': inp([], mode=1),
        'region-too-long': inp([msg(kinds=(FD_BADSIZE, FD_BELL))]),
        'region-bad-header': inp([msg(kinds=(FD_BADHDR, FD_BELL))]),
        'grant-then-garbage': inp([msg(), msg(raw=b'\xff' * 64)], use=use),
        'ring-64k': inp([msg(ring=65536)], use=use),
        'bell-closed': inp([msg()], hangup=4, use=use),
    }


def ring_seeds(bulk):
    def op(code, n=0, *rest):
        return u8(code) + u32(n - 1 if n else 0) + b''.join(rest)
    W, C, B, RECV, SEND, POLL = 0, 1, 2, 3, 4, 5
    BLOCK = 16
    honest = (op(W, 100) + op(RECV, 50) + op(RECV | BLOCK, 50) + op(14) +
              op(SEND, 300) + op(C, 200) + op(B) + op(C, 200) +
              op(SEND | BLOCK, 10000) + op(14) + op(POLL) + op(POLL | BLOCK) +
              op(W, 5000) + op(RECV | BLOCK, 5000) + op(14))
    seeds = {
        'honest-exchange': u8(0, 0) + honest,
        'honest-large-rings': u8(2, 2) + honest,
        'write-index-beyond': u8(0, 0) + op(7, 1, u8(0, 0), u64(1 << 40)) + op(RECV, 10),
        'read-index-back': u8(0, 0) + op(SEND, 100) + op(7, 1, u8(3, 1), u16(0xff00)) +
        op(SEND, 5000),
        'scribble-and-drain': u8(1, 1) + op(W, 100) + op(8, 40, u16(7), bytes(40)) +
        op(6 | 16) + op(RECV, 100),
        'own-header-rewritten': u8(0, 0) + op(9, 1, u32(1 << 30), u64(0), u32(1)) +
        op(SEND, 4096) + op(C, 4096),
    }
    offer = op(10, 0, u32(100000 - 1), u32(4096))
    seeds['offer-taken'] = u8(0, 0) + offer + op(RECV | BLOCK, 100000) + op(14) + op(11, 0, u32(0))
    seeds['library-offers'] = u8(0, 0) + op(SEND | BLOCK, 200000) + op(12, 100000) + \
        op(12, 100000) + op(14)
    seeds['library-offer-declined'] = u8(0, 0) + op(SEND | BLOCK, 50000) + op(12 | 16, 1000) + \
        op(C, 60000) + op(14)
    seeds['claim-beyond'] = u8(0, 0) + op(SEND | BLOCK, 50000) + op(13, 0, u8(0, 0),
                                                                  u32(1 << 20), u32(0), u32(0))
    if bulk:
        seeds['offer-split'] = u8(0, 0) + op(10, 0, u32((1 << 20) - 1), u32(0)) + \
            op(RECV | BLOCK, 1 << 20) + op(11, 0, u32(1 << 19)) + op(14)
    return seeds


def ctl_seeds():
    def op(code, *rest):
        return u8(code) + b''.join(rest)
    # low 4 bits: the operation; bit 4: its flag (answer honestly, wait instead of mark)
    MSG, SERVICE, ANSWER, REG, UNREG, MARKWAIT, SIGNAL, RMA, MMAP, MUNMAP, BARRIER = \
        0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11
    HONEST = 16
    peer_reg = op(MSG, u8(0, 0), u8(2, 0, 0, 3))  # REGISTER: 3 pages at 0, READ|WRITE
    lib_reg = op(REG, u8(0, 4, 3, 0, 0, 0))
    answer = op(ANSWER | HONEST)
    settle = op(SERVICE) + answer + answer
    # RMA: sub (0 readfrom, 1 writeto, 2 vreadfrom, 3 vwriteto), the peer's window (how, len,
    # offset in it), the local window (same) or a buffer offset, flags index
    rma = op(RMA, u8(1), u8(0), u16(100), u16(0), u8(0), u16(0), u16(0), u8(0))
    return {
        'peer-registers': peer_reg + op(BARRIER | HONEST),
        'library-registers': lib_reg + settle + op(BARRIER | HONEST),
        'rma-both-ways': peer_reg + lib_reg + settle + op(BARRIER | HONEST) + rma +
        op(RMA, u8(0), u8(0), u16(100), u16(8), u8(0), u16(0), u16(64), u8(1)) +
        op(RMA, u8(3), u8(0), u16(4000), u16(5), u16(3), u8(2)) + op(BARRIER | HONEST),
        'fences': lib_reg + settle + op(MARKWAIT, u8(1, 0)) + settle + op(MARKWAIT | HONEST, u8(0)) +
        settle + op(SIGNAL, u8(0), u16(0), u16(0), u64(7), u8(0), u16(0), u64(9), u8(0, 0)) +
        settle,
        'mmap-munmap': peer_reg + op(BARRIER | HONEST) + op(MMAP, u8(0), u16(0), u16(0), u8(0, 3)) +
        settle + op(MUNMAP) + settle,
        'unregister-both': peer_reg + lib_reg + settle + op(UNREG, u8(0), u16(0), u16(0), u8(3)) +
        settle +
        op(MSG, u8(1, 0), u8(0)) + op(BARRIER | HONEST),
        'reply-lies': lib_reg + op(SERVICE) + op(ANSWER, u8(0x80), u32(12345)) + op(BARRIER),
        'reply-wrong-tag': lib_reg + op(SERVICE) + op(ANSWER, u8(1, 200)) + op(BARRIER),
        'register-unsealed': op(MSG, u8(8, 0), u8(2, 0, 0, 3)) + op(BARRIER | HONEST),
        'register-pipe': op(MSG, u8(24, 0), u8(2, 0, 0, 3)) + op(BARRIER | HONEST),
        'handshake-op-after': op(MSG, u8(0, 4), u8(2, 0, 0, 3), u8(1)) + op(BARRIER),
        'unanswered-request': lib_reg + op(13, u8(255)) + op(13, u8(255)) + op(BARRIER),
    }


def rb_seeds():
    def op(code, n, *rest):
        return u8(code) + u16(n) + b''.join(rest)
    return {
        'fill-and-drain': u8(0) + u64(0) + op(0x80, 4096) + op(0x81, 100) + op(0x80, 100) +
        op(0x81, 5000) + op(2, 0) + op(3, 0),
        'wrap': u8(1) + u64((1 << 40) - 3) + b''.join(op(0x80, 3000) + op(0x81, 2999)
                                                      for _ in range(8)),
        'lying-producer': u8(0) + u64(0) + op(0, 10) + op(4, 0, u8(1), u64(1 << 20)) + op(1, 100),
        'lying-consumer': u8(2) + u64(5) + op(0, 100) + op(5, 200, u8(0)) + op(0, 5000) + op(3, 0),
    }


def vq_seeds():
    """fuzz-vq: byte 0 features and log2 size (bit 7 the card half), window offset, start."""
    EVT, IND, CARD = 1, 2, 0x80
    NEXT, WRITE, INDIRECT = 1, 2, 4
    WOFF = 0x40000000

    def desc(addr=0, n=0, flags=0, nxt=0):
        return u64(addr) + u32(n) + u16(flags) + u16(nxt)

    def host(log2, feat=0, start=0, published=(), descs=(), window=b'', ops=b'', wsel=4,
             woff=WOFF, flags=0, used_event=0, idx=None):
        """A ring of 1 << log2 entries, the heads published at start, a window of 256 << wsel."""
        size = 1 << log2
        ring = list(published) + [0] * (size - len(published))
        b = u8(feat | log2 << 2) + u64(woff) + u16(start) + u8(wsel)
        b += u16(flags) + u16(start + len(published) if idx is None else idx) + u16(used_event)
        b += b''.join(u16(x) for x in ring)
        b += b''.join(descs) + desc() * (size - len(descs))
        return b + u16(len(window)) + window + ops

    def pop(hold=False, roff=0, rlen=0, woff=0, written=None):
        return u8(8 * hold + 16 * (written is not None)) + u16(roff) + u16(rlen) + u16(woff) + \
            (u32(written) if written is not None else b'')

    def publish(head):
        return u8(3) + u16(head)

    def push_held(i, written=0):
        return u8(1, i) + u32(written)

    irq, kicks_on, kicks_off, drain = u8(4), u8(5 | 8), u8(5), u8(7)
    chain = [desc(0x100, 64),                       # 0: one readable
             desc(0x200, 100, NEXT, 2),             # 1 -> 2 -> 3
             desc(0x300, 50, WRITE | NEXT, 3),
             desc(0x340, 30, WRITE),
             desc(0x400, 16, NEXT, 5),              # 4 -> 5, contiguous
             desc(0x410, 16),
             desc(0x500, 200, WRITE)]               # 6: one writable
    table = desc(WOFF + 0x800, 16, NEXT, 1) + desc(WOFF + 0x900, 100, WRITE | NEXT, 2) + \
        desc(WOFF + 0xa00, 8, WRITE)
    indirect = [desc(0, 48, INDIRECT), desc(0xc00, 32, NEXT, 2),
                desc(0x30, 48, INDIRECT)]           # 1 -> indirect at 0x30
    seeds = {
        'host-direct': host(3, published=(0, 1, 6), descs=chain,
                            ops=publish(4) + pop() + irq + drain),
        'host-chained-out-of-order': host(3, EVT, descs=chain, ops=publish(1) + publish(4) +
                                          publish(6) + pop(True) + pop(True, 10, 50, 20) +
                                          pop(written=7) + push_held(1, 30) + push_held(0, 5) +
                                          irq + kicks_off + publish(0) + kicks_on + pop() +
                                          irq + drain),
        'host-wrap': host(2, EVT, start=0xfffe, published=(1, 0, 1), descs=chain[:4],
                          ops=publish(0) + publish(1) + pop(True) + pop() + push_held(0) + irq),
        'host-indirect': host(3, IND, published=(0, 1), descs=indirect,
                              window=table + bytes(0x30 - 48) + table,
                              ops=publish(0) + pop(roff=8, rlen=100, woff=50) + drain),
        'host-indirect-event-idx': host(4, EVT | IND, descs=indirect,
                                        window=table + bytes(0x30 - 48) + table,
                                        ops=publish(1) + publish(0) + pop(True) + pop() +
                                        u8(6 | 8, 3) + publish(0) + pop() + u8(6) +
                                        push_held(0, 100) + irq),
        'host-large-window-top-of-ras': host(10, EVT | IND, published=(0,),
                                             descs=[desc(0, 0x10000, WRITE)],
                                             wsel=8, woff=2**64 - 0x20000, ops=drain),
        'host-card-rewrites': host(3, descs=chain, ops=publish(1) + u8(2, 0) + u16(16 + 12) +
                                   u8(2) + u16(0) + pop() + u8(2, 2) + u16(0x200) + u8(4) +
                                   b'\xff' * 4 + publish(0) + pop()),
        # lies
        'host-loop': host(2, published=(0,), descs=[desc(0, 8, NEXT, 1),
                                                     desc(0, 8, NEXT, 0)]),
        'host-window-edges': host(2, published=(0, 1), wsel=0, descs=[desc(0, 0), desc(248, 8)],
                                  ops=drain),
        'host-one-byte-past-the-window': host(2, published=(0,), descs=[desc(4089, 8)]),
        'host-avail-jump': host(2, published=(0,), idx=100, descs=chain[:1]),
        'host-nested-indirect': host(2, IND, published=(0,), descs=[desc(0, 16, INDIRECT)],
                                     window=desc(WOFF + 0x100, 16, INDIRECT)),
        'host-read-after-write': host(2, published=(0,), descs=[desc(0, 8, WRITE | NEXT, 1),
                                                                 desc(0, 8)]),
    }

    def card(log2, feat=0, start=0, ops=b'', woff=WOFF):
        return u8(CARD | feat | log2 << 2) + u64(woff) + u16(start) + ops

    def add(n, nout, seed, bad=False):
        return u8(8 * bad, n) + (u8(nout) if n else b'') + u16(seed)

    get, hpop = u8(1), u8(2)

    def hpush(i, written):
        return u8(3, i) + u32(written)

    notify = u8(7 | 8 | 16)
    honest = (add(1, 1, 1) + add(3, 1, 2) + add(5, 2, 3) + notify + hpop + hpop + hpop +
              hpush(1, 1000) + hpush(0, 0) + hpush(0, 40) + get + get + notify + get + get +
              add(70, 10, 4) + add(2, 0, 5) + hpop + hpop + hpush(1, 99) + get + u8(7) + get)
    seeds.update({
        'card-honest': card(3, ops=honest),
        'card-honest-indirect-event-idx': card(4, EVT | IND, ops=honest),
        'card-wrap': card(2, EVT, start=0xfffd, ops=honest),
        'card-full': card(2, IND, ops=b''.join(add(1 + i % 3, i % 2, i) for i in range(6)) +
                          add(0, 0, 0) + add(2, 1, 9, bad=True) + add(9, 3, 1)),
        'card-host-bad-id': card(3, ops=add(2, 1, 1) + u8(4) + u16(0) + u32(7) + u32(0) +
                                 u8(5, 1) + get),
        'card-host-too-long': card(3, ops=add(2, 1, 1) + hpop + u8(4) + u16(0) + u32(0) +
                                   u32(1 << 20) + u8(5, 1) + get),
        'card-host-replays': card(3, EVT, ops=add(1, 0, 1) + hpop + hpush(0, 10) + get +
                                  u8(5, 1) + get + add(1, 0, 2) + u8(5, 0x80) + get),
        'card-host-scribbles': card(3, EVT, ops=add(3, 1, 1) + hpop + u8(6) + u16(4) + u8(16) +
                                    bytes(range(16)) + get + notify + u8(7) + get),
    })
    return seeds


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(
        os.path.abspath(__file__)), 'corpus')
    sets = {'fuzz-accept': accept_seeds(), 'fuzz-connect': connect_seeds(),
            'fuzz-ring': ring_seeds(False), 'fuzz-bulk': ring_seeds(True),
            'fuzz-ctl': ctl_seeds(), 'fuzz-rb': rb_seeds(), 'fuzz-vq': vq_seeds()}
    for target, seeds in sets.items():
        d = os.path.join(top, target)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if not name.startswith('regress-'):
                os.unlink(os.path.join(d, name))
        for name, data in seeds.items():
            with open(os.path.join(d, name), 'wb') as f:
                f.write(data)
        print(f'{target}: {len(seeds)} seeds')


if __name__ == '__main__':
    main()
