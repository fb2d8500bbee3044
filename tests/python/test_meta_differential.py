"""Meta commands: the same bytes to memcached and to memcore (-t 1 and -t 2),
the same bytes back.

The mechanism is test_differential.py's (fresh servers, one connection per
case, replies read until silence); CAS values are normalised, in meta
replies (` c<n>`, me's `cas=<n>`) as in VALUE lines, since each server
numbers its writes its own way. Requests that carry a CAS use values whose
comparison comes out the same on both (0, 1, larger than any written).
Cases where memcore differs on purpose are in docs/protocol.md, not here.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import EXTERNAL_ADDR, finish, server_bin, spawn_server
from test_differential import exchange as exchange_until_silence


def exchange(port: int, data: bytes) -> bytes:
    """test_differential's exchange; a close with unread input (a reset)
    counts as a close, which both servers do to an over-long line."""
    try:
        return exchange_until_silence(port, data)
    except ConnectionResetError:
        return b"<CLOSED>"

CASES = [
    b"mg foo v\r\nmg foo\r\nmg foo q v\r\nmn\r\n",
    b"set foo 0 0 2\r\nhi\r\nmg foo\r\nmg foo v\r\nmg foo s v f t\r\nmg foo k v c\r\nmg foo Oabc k q v\r\n",
    b"set foo 5 100 2\r\nhi\r\nmg foo s t f h l v\r\nmg foo h l\r\nme foo\r\nme nope\r\n",
    b"ms foo 2\r\nhi\r\nms foo 2 q\r\nho\r\nms foo 2 k c Oxy\r\nhe\r\nmg foo v\r\n",
    b"ms foo 2 T0 F77\r\nhi\r\nmg foo f t v\r\nget foo\r\n",
    b"ms foo 2 MZ\r\nhi\r\nms foo 2 v v\r\nhi\r\nms foo\r\nms foo x\r\nms foo -1\r\nmg foo v\r\n",
    b"ms foo 2 ME\r\nhi\r\nms foo 2 ME\r\nho\r\nms bar 2 MR\r\nhi\r\nms foo 2 MA\r\nzz\r\nms foo 2 MP\r\naa\r\nmg foo v\r\nms nope 2 MA\r\nzz\r\n",
    b"ms foo 2 C12345\r\nhi\r\nms foo 2 C0\r\nhi\r\nms new 2 C5 ME\r\nhi\r\nmg new v\r\n",
    b"md foo\r\nms foo 2\r\nhi\r\nmd foo q\r\nmd foo\r\nmd foo k Oz\r\nmn\r\n",
    b"md foo I\r\nms foo 2\r\nhi\r\nmd foo I T30\r\nmg foo v t\r\nmg foo v t\r\nmg foo v\r\n",
    b"mg needwin s v N30 t\r\nmg needwin s t v N30\r\nmg needwin s t v N30\r\n",
    b"ma mo\r\nma mo D1\r\nset mo 0 0 1\r\n1\r\nma mo\r\nma mo v\r\nma mo v t\r\nset mo 0 0 1\r\nq\r\nma mo\r\n",
    b"ma mu N90 v t\r\nma mi N0 J13 v t\r\nma mi N0 J13 v t\r\nma mi N0 J13 v t D30\r\nma mi N0 J13 v t MD D22\r\nma mi N0 J13 v t MD D9000\r\nma mi q D1\r\nmn\r\nma mi MX\r\nma mi Dx\r\n",
    b"ma x N0 J5 q v\r\nma x q v\r\nma x v q k Oab\r\nmn\r\n",
    b"mg foo m o o o o o o o o o\r\nmg foo a b c d e f g h i j k l m n o p q\r\nmg foo a b c d e f g h i j k l m n o p q r\r\nmd foo a b c d e f g h i j k l m n o p q r\r\nms foo 2 a b c d e f g h i j k l m n o p q\r\nhi\r\n",
    b"mg\r\nms\r\nmd\r\nma\r\nme\r\nmn\r\nmx\r\nm\r\nmgg foo\r\n",
    b"mg foo T\r\nmg foo Tx\r\nmg foo b\r\nmg foo Fx\r\nmg foo MXY\r\nmg foo Jx\r\nmg foo Dx\r\nmg foo v v\r\nmg foo Oaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nmd foo Oaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    b"ms 44OG44K544OI 2 b\r\npo\r\nmg 44OG44K544OI v\r\nmg 44OG44K544OI b v k\r\nmg 44OG44K544OI b k s\r\nme 44OG44K544OI b\r\nmd 44OG44K544OI b k\r\nmg 44OG44K544OI b k\r\n",
    b"ms Zm9v 2 b k c\r\nhi\r\nget foo\r\nmg foo k v\r\nmg Zm9v b k v\r\nme foo\r\n",
    b"set k 0 0 2\r\nhi\r\nmg k t T30 t\r\nmg k t\r\nmg k T-1 v\r\nmg k v\r\n",
    b"set toinv 0 0 3\r\nmoo\r\nmd toinv I T30\r\nmg toinv s c v\r\nms toinv 1 T90 C0\r\nf\r\nms toinv 1 I T90 C1\r\nf\r\nmg toinv s v\r\n",
    b"ms quiet 2 q\r\nmo\r\nmd quiet q\r\nmg quiet s v q\r\nms quiet\r\n",
    b"ms quiet 2 q\r\nbo\r\nmg quiet v q\r\nmg quiet v q\r\nmg quietmiss v q\r\nmn\r\nmg quietautov s N30 t q\r\n",
    b"ms foo 2 T100\r\nna\r\nmg foo s\r\nmg foo s\r\nquit\r\nmg foo s\r\n",
    b"ms foo 5\r\nhi\r\nmg foo v\r\nms foo 2\r\nhiXX\r\n",
    b"ms foo 2 I\r\nhi\r\nmg foo v\r\nms foo 2 I C1\r\nhi\r\nmg foo v\r\n",
    b"ms hitflag 3 T100\r\nhit\r\nmg hitflag s t h\r\nmg hitflag s t h\r\nms noupdate 3 T100\r\nhit\r\nmg noupdate s t u h\r\nmg noupdate s t h\r\nmg noupdate s t u h\r\n",
    b"ms k 2 F4294967295\r\nhi\r\nmg k f\r\nms k 2 F-1\r\nhi\r\n",
    b"mg k R30 v\r\nset k 0 100 1\r\nx\r\nmg k R30 v\r\nmg k R300 v\r\nmg k R300 v\r\nmd k I\r\nmg k R300 v\r\nmg k v\r\n",
    b"delete noreply\r\nbget k\r\nbget\r\ndelete a noreply\r\ndelete noreply noreply\r\nset noreply 0 0 1\r\nx\r\ndelete noreply\r\n",
    # Framing found by comparing the two on random input.
    b"x" * 2000 + b"\r\n" + b"y" * 2100 + b"\r\nget k\r\n",
    b"y" * 16300 + b"\r\nget k\r\n",
    b"y" * 16400 + b"\r\nget k\r\n",
    b"set k 0 0 1\r\nx\r\n" + b"set " + b"k" * 251 + b" 0 0 3\r\nabc\r\n" + b"get k\r\n",
]


def normalise(b: bytes) -> bytes:
    b = re.sub(rb" c\d+", b" c<cas>", b)
    b = re.sub(rb"cas=\d+", b"cas=<cas>", b)
    return re.sub(rb"VALUE (\S+) (\d+) (\d+) \d+\r\n", rb"VALUE \1 \2 \3 <cas>\r\n", b)


@pytest.mark.skipif(EXTERNAL_ADDR is not None, reason="compares two spawned servers")
@pytest.mark.parametrize("threads", [1, 2])
def test_meta_replies_match_memcached_byte_for_byte(threads, tmp_path):
    memcached = shutil.which("memcached")
    if memcached is None:
        pytest.fail("memcached is not installed (CI installs it with apt-get)")
    ref = spawn_server(memcached, 1, tmp_path, tag="memcached")
    ours = spawn_server(server_bin(), threads, tmp_path, tag="memcore")
    try:
        diffs = []
        pool = ThreadPoolExecutor(2)
        for case in CASES:
            want, got = pool.map(lambda port: exchange(port, case), [ref.port, ours.port])
            if normalise(want) != normalise(got):
                diffs.append(f"{case[:90]!r}\n  memcached: {want[:300]!r}\n  memcore:   {got[:300]!r}")
        assert not diffs, "replies differ:\n" + "\n".join(diffs)
    finally:
        finish(ours)
        finish(ref)
