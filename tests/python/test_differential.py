"""Same bytes to memcached and to memcore, same bytes back.

Each case is sent on a fresh connection to a freshly spawned memcached and
memcore (-t 1 and -t 2); replies must be identical once CAS uniques and the
version string, which legitimately differ, are normalised. Cases where
memcore deliberately differs from memcached are listed in docs/protocol.md
and are not here.

No expected bytes are written here: this catches differences no test
foresaw.  The Rust suite's expected bytes are checked the other way, by
running it against memcached (MEMCORE_TEST_ADDR / MEMCORE_TEST_MEMCACHED_BIN,
see tests/common/mod.rs).
"""

from __future__ import annotations

import random
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

import diffcampaign
from conftest import EXTERNAL_ADDR, finish, server_bin, spawn_server
from mchelpers import Raw

CASES = [
    b"set k 0 0 1\r\na\r\nappend k 5 5 2\r\nbc\r\nget k\r\n",
    b"set k 0 0 1\r\na\r\nprepend k 0 0 1 noreply\r\nz\r\nget k\r\n",
    b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\nget n\r\n",
    b"set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 21\r\n184467440737095516150\r\nincr n 1\r\n",
    b"set n 0 0 3\r\n 12\r\nincr n 1\r\n",
    b"set n 0 0 3\r\n12 \r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 3\r\n100\r\ndecr n 95\r\nget n\r\n",
    b"incr nokey 1\r\ndecr nokey 1\r\ntouch nokey 1\r\ndelete nokey\r\n",
    b"set t 0 0 1\r\nx\r\ntouch t 100\r\ngat 0 t\r\ngats 0 t nokey\r\n",
    b"add k2 0 0 1\r\nx\r\nadd k2 0 0 1\r\ny\r\nreplace k2 0 0 1\r\nz\r\nget k2\r\nreplace nok 0 0 1\r\nz\r\n",
    b"cas nok 0 0 1 1\r\nx\r\n",
    b"set e 0 -1 1\r\nx\r\nget e\r\n",
    b"set e 0 0 0\r\n\r\nget e\r\n",
    b"set a 0 0 1\r\n1\r\nget " + b"a " * 300 + b"\r\n",
    b"get a " + b"k" * 251 + b" a\r\n",
    b"delete k 0\r\ndelete k noreply\r\ndelete k 0 noreply\r\ndelete k 1 noreply\r\ndelete k 1\r\n",
    b"flush_all 0\r\nflush_all noreply\r\nflush_all x\r\nflush_all -1\r\nflush_all 1 2 3\r\n",
    b"verbosity 5\r\nverbosity 1 noreply\r\nverbosity\r\nverbosity x\r\nverbosity noreply\r\nversion\r\n",
    # (stats sizes differs on purpose: memcore always tracks sizes, like
    # memcached -o track_sizes; docs/protocol.md)
    b"stats detail\r\nstats detail on\r\nstats detail dump\r\nstats bogus\r\n",
    b"set k 0 0 1 noreply\r\nx\r\nget k\r\n",
    b"set k 0 0 5\r\nab\r\n\r\n",
    b"set k 0 0 3\r\nabcde\r\nget k\r\n",
    b"get k\r\n\n\r\nget\r\n",
    b"incr k\r\nincr\r\ndecr k 1 2 3\r\nincr k abc\r\nincr k -1\r\n",
    b"touch k 1 2 3\r\ntouch k x\r\ngat x k\r\ngat 1\r\n",
    b"set k 0 0 4294967295\r\nset k 0 0 -1\r\nset k 0 0 abc\r\nset k 0\r\n",
    b"set k 00 0 1\r\nx\r\nget k\r\nset k +5 0 1\r\nx\r\nget k\r\n",
    b"set k 0 0 1 bogus\r\nx\r\nset  k  0 0 1\r\ny\r\nget k\r\n",
    b"gets\r\ngets k k\r\n",
    b"cas k 0 0 1 0 noreply\r\nx\r\nversion\r\n",
    b"quit\r\nget k\r\n",
    b"stats reset\r\n",
    b"cache_memlimit 0\r\ncache_memlimit abc\r\ncache_memlimit\r\ncache_memlimit 64\r\n",
    b"shutdown\r\nversion foo\r\n",
    b"GET / HTTP/1.1\r\n",
    b"get x HTTP/1.1\r\n",
    b"FOO\r\nget\tx\r\n",
    b"set k 0 0 1\r\nx\r\nget k",
    b"x" * 3000,
    b"get " + b"k" * 3000,
    # Numbers as memcached's safe_strto* read them (glibc strtoull/strtol).
    b"set n 0 0 2\r\n-0\r\nincr n 5\r\nincr n -0\r\nincr n +1\r\nincr n 0000000000000000000000001\r\n"
    b"incr n \t1\r\ndecr n 1\t\r\nincr n -18446744073709551615\r\nincr n -1\r\nincr n 1-\r\nget n\r\n",
    b"cas k -0 -0 1 -0\r\nx\r\nset k -0 \t0 +1\r\nx\r\ngets k\r\ntouch k \t100\r\nflush_all -0\r\n",
    # A stored value is a C string for incr: a NUL ends it.
    b"set n 0 0 3\r\n7\x00b\r\nincr n 1\r\nget n\r\n",
    # A command line is a C string too: it ends at its first NUL.
    b"set k 0 0 1\r\nx\r\nget k\x00junk\r\nset k 0 7\x00x 1\r\ny\r\nget k\r\n\x00get k\r\n",
]


def exchange(port: int, data: bytes) -> bytes:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    # Replies to arbitrary bytes have no known end: read until 150 ms of
    # silence (or a close), the same for both servers.
    s.settimeout(0.15)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                out += b"<CLOSED>"
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def normalise(b: bytes) -> bytes:
    b = re.sub(rb"VALUE (\S+) (\d+) (\d+) \d+\r\n", rb"VALUE \1 \2 \3 <cas>\r\n", b)
    return re.sub(rb"VERSION [^\r]*\r\n", b"VERSION <v>\r\n", b)


@contextmanager
def memcached_and_memcore(threads, tmp_path, extra=()):
    """A fresh memcached (-t 1) and memcore (-t `threads`), both with
    `extra` flags; both ended (and checked alive) afterwards."""
    memcached = shutil.which("memcached")
    if memcached is None:
        pytest.fail("memcached is not installed (CI installs it with apt-get)")
    ref = spawn_server(memcached, 1, tmp_path, extra=extra, tag="memcached")
    ours = spawn_server(server_bin(), threads, tmp_path, extra=extra, tag="memcore")
    try:
        # Both answer before the first case: a case's replies are read
        # until 150 ms of silence, which a server still starting (under
        # load) could exceed.
        for srv in (ref, ours):
            assert Raw(srv.host, srv.port).cmd(b"version\r\n").startswith(b"VERSION ")
        yield ref, ours
    finally:
        finish(ours)
        finish(ref)


@pytest.mark.skipif(EXTERNAL_ADDR is not None, reason="compares two spawned servers")
@pytest.mark.parametrize("threads", [1, 2])
def test_replies_match_memcached_byte_for_byte(threads, tmp_path):
    with memcached_and_memcore(threads, tmp_path) as (ref, ours):
        diffs = []
        pool = ThreadPoolExecutor(2)
        for case in CASES:
            want, got = pool.map(lambda port: exchange(port, case), [ref.port, ours.port])
            if normalise(want) != normalise(got):
                diffs.append(f"{case[:70]!r}\n  memcached: {want[:200]!r}\n  memcore:   {got[:200]!r}")
        assert not diffs, "replies differ:\n" + "\n".join(diffs)


# The randomized campaign (diffcampaign.py): fixed seeds, plus one new seed
# per run, printed so that a failure can be replayed with
# `python3 tests/python/diffcampaign.py MEMCACHED_PORT MEMCORE_PORT SEED`.
CAMPAIGN_SEEDS = list(range(1, 13))
RANDOM_SEED = random.SystemRandom().randrange(1000, 10**9)


@pytest.mark.skipif(EXTERNAL_ADDR is not None, reason="compares two spawned servers")
@pytest.mark.parametrize("threads", [1, 2])
def test_random_streams_match_memcached(threads, tmp_path):
    print(f"random campaign seed: {RANDOM_SEED}")
    with memcached_and_memcore(threads, tmp_path, diffcampaign.SERVER_FLAGS) as (ref, ours):
        pool = ThreadPoolExecutor(2)
        for seed in CAMPAIGN_SEEDS + [RANDOM_SEED]:
            want, got = pool.map(lambda port: diffcampaign.play(port, seed), [ref.port, ours.port])
            diff = diffcampaign.first_difference(want, got)
            assert diff is None, (f"seed {seed} (-t {threads}): replay with "
                                  f"`python3 tests/python/diffcampaign.py <memcached port> "
                                  f"<memcore port> {seed}` against servers started with "
                                  f"{' '.join(diffcampaign.SERVER_FLAGS)}\n{diff}")
