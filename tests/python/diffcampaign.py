"""Randomized differential campaign: the same random byte streams to
memcached and memcore, replies compared byte for byte.

A scenario is a list of steps, each on one of a few connections: a random
mix of storage and retrieval commands (good and bad: noreply, bad numbers,
overlong keys, negative or over-limit lengths, bad data chunks, bare `\\n`,
extra tokens, garbage lines), pipelined, and cut at random byte boundaries
into separately sent pieces.  After each step a `version` line is sent: its
reply (the only `VERSION` any stream produces) marks the step's end, so a
step costs one round trip unless the step left the server waiting for data
(then a short silence ends it).  CAS values cannot be equal across servers,
so `cas` commands name them by reference (the last CAS this server gave for
that key), and replies are compared with each server's CAS values replaced
by the order in which they first appeared: equal CAS values must be equal on
both, different ones different.

Left out on purpose: what docs/protocol.md lists as different (flags of
2^32 or more, exptimes outside 32 bits, get lines over 1 MiB, stats,
version strings), times that could expire during a run (only 0, far future
and already past exptimes are used), and the meta commands.

Used by test_differential.py; `python3 diffcampaign.py PORT_A PORT_B SEED`
replays one seed against two running servers and prints the first
difference.
"""

from __future__ import annotations

import random
import re
import socket
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

# Servers run with -I 2k (memcached also needs -o slab_chunk_max=1024), so
# over-limit values are cheap to send; the boundary is near 1988 bytes.
SERVER_FLAGS = ["-I", "2k", "-o", "slab_chunk_max=1024,no_lru_crawler,no_lru_maintainer"]
LIMIT_LENGTHS = [1985, 1986, 1987, 1988, 1989, 1990, 2048]

KEYS = [b"a", b"b", b"n", b"kk", b"z" * 250]
LONG_KEY = b"y" * 251
# Twice: a data block one to three bytes longer than declared eats part of
# the first (then one VERSION comes back, and a short silence ends the step).
SENTINEL = b"version\r\n" * 2
# Sent before a connection ends: completes any data block being read or
# swallowed (at most 2050 bytes here).  memcached holds its replies while it
# swallows a refused value; memcore sends them at once.  Both agree once the
# swallow is over.
FILLER = b"\r\n" * 1030
SILENCE = 0.5  # seconds that end a step whose sentinel was swallowed
SHORT_SILENCE = 0.05  # after one VERSION of two

Part = Union[bytes, Tuple[str, bytes]]  # ("cas", key): last CAS seen for key


@dataclass
class Step:
    conn: int
    parts: List[Part]
    cuts: List[int]  # byte offsets at which to pause between sends
    half_close: bool = False


def _sp(r: random.Random) -> bytes:
    return b"  " if r.random() < 0.05 else b" "


def _eol(r: random.Random) -> bytes:
    return b"\n" if r.random() < 0.1 else b"\r\n"


def _key(r: random.Random, long_ok: bool = True) -> bytes:
    x = r.random()
    if x < 0.03 and long_ok:
        return LONG_KEY
    if x < 0.06:
        return b"nokey"
    return r.choice(KEYS)


# Numbers as C's strto* read them: signs, zeros, whitespace inside a token.
ODD_NUMBERS = [b"abc", b"-1", b"", b"1x", b"+5", b"00", b"0x10", b"-0", b"+-1",
               b"\t7", b"7\t", b"7\tx", b"7\x00x", b"\x0b3", b"0000000000000000000000009",
               b"-", b"+"]
BIG_NUMBERS = [b"4294967295", b"18446744073709551615", b"18446744073709551616",
               b"-18446744073709551615", b"-9223372036854775809", b"9223372036854775808"]


def _number(r: random.Random, small: List[bytes], big: bool = True) -> bytes:
    """A number token; `big` False keeps to what fits 32 bits (flags and
    exptimes of more are refused on purpose, docs/protocol.md)."""
    x = r.random()
    if x < 0.8:
        return r.choice(small)
    return r.choice(ODD_NUMBERS + (BIG_NUMBERS if big else []))


def _data(r: random.Random) -> bytes:
    x = r.random()
    if x < 0.35:
        return str(r.choice([0, 1, 9, 10, 99, 100, 255, 2**32, 2**64 - 1,
                             2**64 - 2, r.randrange(10**6)])).encode()
    if x < 0.45:
        return r.choice([b" 12", b"12 ", b"-5", b"1e3", b"007", b"",
                         b"184467440737095516160", b"12\r\n3"])
    if x < 0.52:
        # In lines: read as commands (after a refused command line), a
        # line of over 2048 bytes closes the connection on both, but only
        # if it is read before its newline arrives, which timing decides.
        return ((b"d" * 498 + b"\r\n") * 5)[:r.choice(LIMIT_LENGTHS)]
    n = r.randrange(0, 40)
    return bytes(r.choice(b"abcxyz019 \t\r\n\x00\xff") for _ in range(n))


def _storage(r: random.Random, parts: List[Part]) -> None:
    cmd = r.choice([b"set", b"set", b"add", b"replace", b"append", b"prepend", b"cas"])
    key = _key(r)
    flags = _number(r, [b"0", b"0", b"1", b"4294967295", b"123"], big=False)
    exp = _number(r, [b"0", b"0", b"1000", b"-1", b"2592001", b"2592000"], big=False)
    data = _data(r)
    length = str(len(data)).encode()
    x = r.random()
    if x < 0.06:
        length = str(len(data) + r.choice([-2, -1, 1, 2, 3])).encode()
    elif x < 0.12:
        length = r.choice([b"-1", b"abc", b"1x", b"-0", b"+3"])
    line = [cmd, _sp(r), key, _sp(r), flags, _sp(r), exp, _sp(r), length]
    if cmd == b"cas":
        line.append(b" ")
        y = r.random()
        ref: Part = ("cas", key) if y < 0.7 else r.choice(
            [b"0", b"abc", b"-1", b"-0", b"9223372036854775807", b"18446744073709551616"])
        parts.append(b"".join(line))
        parts.append(ref)
        line = []
    if r.random() < 0.15:
        line.append(b" noreply")
    if r.random() < 0.04:
        line.append(b" extra")
    line.append(_eol(r))
    end = b"\r\n"
    y = r.random()
    if y < 0.04:
        end = b"\n"
    elif y < 0.08:
        end = b"xx"
    parts.append(b"".join(line) + data + end)


def _retrieval(r: random.Random, parts: List[Part]) -> None:
    # memcached drops the replies it has queued and not yet sent when a
    # retrieval names a key over 250 bytes (conn_release_items); memcore
    # keeps them (docs/protocol.md).  Such a get comes first in its step.
    # gat/gats never: memcached touches the keys before the long one.
    cmd = r.choice([b"get", b"get", b"gets", b"gets", b"gat", b"gats"])
    long_ok = not parts and cmd in (b"get", b"gets")
    line = cmd
    if cmd in (b"gat", b"gats"):
        line += b" " + _number(r, [b"0", b"1000", b"-1", b"2592001"], big=False)
    # gat/gats lines stay under 2048 bytes: memcore may read a longer one
    # in two pieces and close on the first (docs/protocol.md, Not yet).
    counts = [0, 1, 1, 1, 2, 3, 5] + ([30] if cmd in (b"get", b"gets") else [])
    for _ in range(r.choice(counts)):
        line += _sp(r) + _key(r, long_ok)
    if r.random() < 0.05:
        line += b" "
    parts.append(line + _eol(r))


def _other(r: random.Random, parts: List[Part]) -> None:
    key = _key(r)
    x = r.random()
    nr = b" noreply" if r.random() < 0.15 else b""
    if x < 0.3:
        cmd = r.choice([b"incr", b"decr"])
        delta = _number(r, [b"1", b"5", b"100", b"0", b"18446744073709551615"])
        line = cmd + _sp(r) + key + b" " + delta + nr
    elif x < 0.45:
        line = b"touch " + key + b" " + _number(r, [b"0", b"1000", b"-1", b"2592001"], big=False) + nr
    elif x < 0.65:
        line = b"delete " + key + r.choice([b"", b"", b" 0", b" 5", b" x"]) + nr
    elif x < 0.7:
        line = b"flush_all" + r.choice([b"", b" 0", b" noreply", b" 0 noreply", b" -1", b" x"])
    elif x < 0.75:
        line = b"verbosity" + r.choice([b" 1", b" 0", b"", b" x", b" 1 noreply", b" noreply"])
    elif x < 0.85:
        # Wrong token counts, case, empty lines.
        line = r.choice([b"incr", b"decr " + key, b"touch " + key, b"delete",
                         b"set " + key + b" 0 0", b"cas " + key + b" 0 0 1",
                         b"GET " + key, b"Set " + key + b" 0 0 1", b"", b" ",
                         b"get", b"gets", b"gat", b"gat 0", b"incr " + key + b" 1 2 3 4 5 6",
                         b"get " + b" ".join([b"a"] * 30)])
    else:
        # Garbage: never starting with "m" (meta commands, other branches)
        # and never ending in an HTTP/ token.
        n = r.randrange(1, 60)
        line = bytes(r.choice(b"ABCXYZ0129 \t\x00\x01\x7f\xfe") for _ in range(n))
    parts.append(line + _eol(r))


def scenario(seed: int, steps: int = 150, conns: int = 3) -> List[Step]:
    r = random.Random(seed)
    out: List[Step] = []
    for _ in range(steps):
        parts: List[Part] = []
        for _ in range(r.choice([1, 1, 1, 2, 3, 6])):
            x = r.random()
            if x < 0.45:
                _storage(r, parts)
            elif x < 0.75:
                _retrieval(r, parts)
            else:
                _other(r, parts)
        size = sum(len(p) if isinstance(p, bytes) else 20 for p in parts)
        # No cuts where a value near -I may be read as a command line: a
        # line of over 2048 bytes without its newline yet closes the
        # connection on both, so where it is cut decides.
        cuts = []
        if size > 1 and r.random() < 0.25 and size < 1000:
            cuts = sorted(r.sample(range(1, size), min(size - 1, r.choice([1, 2, 5]))))
        out.append(Step(r.randrange(conns), parts, cuts))
    # Some connections end half-closed: memcached still answers what it has.
    for c in range(conns):
        if r.random() < 0.3:
            out.append(Step(c, [b"get a b n\r\n"], [], half_close=True))
    return out


_CAS_IN_VALUE = re.compile(rb"^VALUE (\S+) \d+ \d+ (\d+)\r\n", re.M)


class Session:
    """One server's side of a scenario: its connections and transcripts."""

    def __init__(self, port: int, conns: int):
        self.port = port
        self.socks: List[Optional[socket.socket]] = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(s)
        self.out: List[bytearray] = [bytearray() for _ in range(conns)]
        self.last_cas: Dict[bytes, bytes] = {}
        self.trace: List[Tuple[int, bytes, bytes]] = []  # (conn, sent, reply)
        self.timeouts: List[int] = []  # steps that ended in silence

    def _resolve(self, parts: List[Part]) -> bytes:
        b = b""
        for p in parts:
            if isinstance(p, bytes):
                b += p
            else:
                # Zero-padded to one width: the same bytes on both servers
                # when swallowed as data.
                b += self.last_cas.get(p[1], b"999999999999").rjust(20, b"0")
        return b

    def _read(self, c: int, want_sentinel: bool) -> None:
        s = self.socks[c]
        buf = self.out[c]
        start = len(buf)
        deadline = time.monotonic() + 5
        s.settimeout(SILENCE)
        while time.monotonic() < deadline:
            if want_sentinel and buf.endswith(b"\r\n"):
                versions = len(re.findall(rb"^VERSION [^\r\n]*\r\n", bytes(buf[start:]), re.M))
                last = buf[:-2].rfind(b"\n")
                if versions >= 2 and buf[last + 1:].startswith(b"VERSION "):
                    break
                s.settimeout(SHORT_SILENCE if versions == 1 else SILENCE)
            try:
                d = s.recv(65536)
            except socket.timeout:
                if want_sentinel and s.gettimeout() == SILENCE:
                    self.timeouts.append(len(self.trace))
                break
            except OSError:
                d = b""
            if not d:
                buf += b"<CLOSED>"
                s.close()
                self.socks[c] = None
                break
            buf += d
        for m in _CAS_IN_VALUE.finditer(bytes(buf[start:])):
            self.last_cas[m.group(1)] = m.group(2)

    def run(self, step: Step) -> None:
        s = self.socks[step.conn]
        if s is None:
            return
        data = self._resolve(step.parts)
        if step.half_close:
            data = FILLER + data
        try:
            prev = 0
            for cut in [c for c in step.cuts if c < len(data)] + [len(data)]:
                s.sendall(data[prev:cut])
                prev = cut
                if cut < len(data):
                    time.sleep(0.002)
            if step.half_close:
                s.shutdown(socket.SHUT_WR)
            else:
                s.sendall(SENTINEL)
        except OSError:
            pass
        start = len(self.out[step.conn])
        self._read(step.conn, not step.half_close)
        self.trace.append((step.conn, data, bytes(self.out[step.conn][start:])))

    def finish(self) -> List[bytes]:
        for c, s in enumerate(self.socks):
            if s is not None:
                try:
                    s.sendall(FILLER + SENTINEL)
                except OSError:
                    pass
                self._read(c, True)
                s = self.socks[c]
            if s is not None:
                s.close()
        return [bytes(b) for b in self.out]


def normalise(transcripts: List[bytes]) -> List[bytes]:
    """Version strings out; CAS values as the order of first appearance."""
    seen: Dict[bytes, bytes] = {}

    def label(m: re.Match) -> bytes:
        cas = m.group(4)
        seen.setdefault(cas, b"<cas%d>" % len(seen))
        return b"VALUE %s %s %s %s\r\n" % (m.group(1), m.group(2), m.group(3), seen[cas])

    out = []
    for t in transcripts:
        t = re.sub(rb"VERSION [^\r\n]*\r\n", b"VERSION <v>\r\n", t)
        out.append(re.sub(rb"^VALUE (\S+) (\d+) (\d+) (\d+)\r\n", label, t, flags=re.M))
    return out


def play(port: int, seed: int, steps: int = 150, conns: int = 3) -> List[bytes]:
    sess = Session(port, conns)
    sess.socks[0].sendall(b"flush_all\r\n")
    assert sess.socks[0].recv(100) == b"OK\r\n"
    for st in scenario(seed, steps, conns):
        sess.run(st)
    return normalise(sess.finish())


def first_difference(want: List[bytes], got: List[bytes]) -> Optional[str]:
    for c, (w, g) in enumerate(zip(want, got)):
        if w != g:
            i = next((i for i in range(min(len(w), len(g))) if w[i] != g[i]), min(len(w), len(g)))
            lo = max(0, w.rfind(b"\n", 0, max(0, i - 200)))
            return (f"connection {c}, byte {i}:\n  memcached: {w[lo:i + 120]!r}\n"
                    f"  memcore:   {g[lo:i + 120]!r}")
    return None


def replay(port_a: int, port_b: int, seed: int) -> None:
    """Print the first step after which the two transcripts can no longer
    agree (neither is a prefix of the other), with the bytes sent on that
    connection in the steps before it."""
    sa, sb = Session(port_a, 3), Session(port_b, 3)
    for s in (sa, sb):
        s.socks[0].sendall(b"flush_all\r\n")
        assert s.socks[0].recv(100) == b"OK\r\n"

    def differ(final: bool) -> bool:
        for x, y in zip(normalise([bytes(o) for o in sa.out]), normalise([bytes(o) for o in sb.out])):
            if final and x != y or not (x.startswith(y) or y.startswith(x)):
                return True
        return False

    steps = scenario(seed)
    for i, st in enumerate(steps):
        sa.run(st)
        sb.run(st)
        last = i == len(steps) - 1
        if last:
            sa.finish()
            sb.finish()
        if differ(last):
            if last:
                print(first_difference(normalise([bytes(o) for o in sa.out]),
                                       normalise([bytes(o) for o in sb.out])))
            c = st.conn
            for j, ((cj, sj, raj), (_, _, rbj)) in enumerate(zip(sa.trace, sb.trace)):
                if cj == c and j >= i - 4:
                    print(f"seed {seed} step {j} conn {c}\n  sent:      {sj[:800]!r}\n"
                          f"  memcached: {raj[:600]!r}\n  memcore:   {rbj[:600]!r}")
            return
    print("same")


if __name__ == "__main__":
    replay(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
