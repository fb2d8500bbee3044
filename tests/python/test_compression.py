"""Transparent compression, seen from real clients: values and flags come
back exactly as stored, clients' own compression on top still works, and
stats show what the server compressed."""

from __future__ import annotations

import json
import os
import random

import pytest

import memcache
from pymemcache.client.base import Client

from mchelpers import Raw


def record(i: int) -> bytes:
    rng = random.Random(i)
    return json.dumps(
        {
            "id": i,
            "name": f"user{i}",
            "email": f"user{i}@example.com",
            "country": rng.choice(["fr", "de", "us", "jp", "br"]),
            "plan": rng.choice(["free", "pro", "team"]),
            "last_seen": 1_700_000_000 + rng.randrange(10**6),
            "tags": [rng.choice(["a", "b", "c", "d"]) for _ in range(5)],
            "bio": " ".join(rng.choice(["cache", "memory", "fast", "json", "rust", "core"]) for _ in range(30)),
        }
    ).encode()


def stats(srv) -> dict:
    r = Raw(srv.host, srv.port)
    try:
        r.send(b"stats\r\n")
        out = {}
        while True:
            line = r.line()
            if line == b"END":
                return out
            _, k, v = line.decode().split(" ", 2)
            out[k] = v
    finally:
        r.close()


@pytest.fixture
def memcore(spawned_server_factory):
    srv = spawned_server_factory(threads=2, extra=("-m", "64"))
    if srv.is_reference:
        pytest.skip("memcore's own compression")
    return srv


def test_values_and_flags_come_back_exactly(memcore):
    c = Client((memcore.host, memcore.port))
    values = {
        "json": record(1) * 4,
        "empty": b"",
        "one": b"x",
        "random": os.urandom(5000),
        "zeros": bytes(100_000),
        "gzip": b"\x1f\x8b" + record(2) * 10,
        "big": b"".join(record(i) for i in range(2000)),
    }
    for i, (k, v) in enumerate(values.items()):
        flags = [0, 1, 2**31, 2**32 - 1, 8, 0xDEADBEEF, 3][i]
        assert c.set(k, v, flags=flags, noreply=False)
        got, got_flags = c.get(k, default=None), None
        r = Raw(memcore.host, memcore.port)
        try:
            r.send(f"get {k}\r\n".encode())
            head = r.line().split()
            got_flags = int(head[2])
            body = r.exact(int(head[3]) + 2)[:-2]
            assert r.line() == b"END"
        finally:
            r.close()
        assert got == v and body == v, k
        assert got_flags == flags, f"{k}: flags {got_flags} != {flags}"
    st = stats(memcore)
    assert int(st["compress_items"]) >= 3
    assert float(st["compress_ratio"]) > 2
    assert int(st["compress_skipped_compressed"]) >= 2, "random and gzip values are not tried"


def test_python_memcached_own_compression_on_top(memcore):
    # python-memcached zlib-compresses values over min_compress_len and sets
    # its flag bit 8; the server must hand back its bytes and flag untouched.
    mc = memcache.Client([memcore.addr], debug=0)
    try:
        doc = {"rows": [json.loads(record(i)) for i in range(50)]}
        text = json.dumps(doc) * 3
        assert mc.set("doc", doc, min_compress_len=100)
        assert mc.set("text", text, min_compress_len=100)
        assert mc.set("plain", text, min_compress_len=0)
        assert mc.get("doc") == doc
        assert mc.get("text") == text
        assert mc.get("plain") == text
        r = Raw(memcore.host, memcore.port)
        try:
            vals = r.get_values(b"get text plain\r\n")
        finally:
            r.close()
        assert vals[b"text"][0] & memcache.Client._FLAG_COMPRESSED
        assert not vals[b"plain"][0] & memcache.Client._FLAG_COMPRESSED
        assert int(stats(memcore)["compress_items"]) >= 1, "the uncompressed copy is compressed by the server"
    finally:
        mc.disconnect_all()


def test_commands_on_compressed_items(memcore):
    c = Client((memcore.host, memcore.port))
    base = record(7) * 3
    assert c.set("k", base, noreply=False)
    assert c.append("k", b"<tail>", noreply=False)
    assert c.prepend("k", b"<head>", noreply=False)
    assert c.get("k") == b"<head>" + base + b"<tail>"
    value, cas = c.gets("k")
    assert c.cas("k", base, cas, noreply=False)
    assert c.touch("k", 100, noreply=False)
    r = Raw(memcore.host, memcore.port)
    try:
        assert r.get_values(b"gat 100 k\r\n")[b"k"][1] == base
    finally:
        r.close()
    number = b"12" + b" " * 300
    assert c.set("n", number, noreply=False)
    assert c.incr("n", 30) == 42
    assert c.get("n") == b"42" + b" " * 300


def test_compress_off(spawned_server_factory):
    srv = spawned_server_factory(threads=1, extra=("--compress", "off"))
    if srv.is_reference:
        pytest.skip("memcore's own flag")
    c = Client((srv.host, srv.port))
    assert c.set("json", record(1) * 10, noreply=False)
    assert c.get("json") == record(1) * 10
    assert int(stats(srv)["compress_items"]) == 0


def test_dictionary_training_helps_small_json(spawned_server_factory):
    srv = spawned_server_factory(threads=1, extra=("--compress-dict", "auto", "--compress-min", "64"))
    if srv.is_reference:
        pytest.skip("memcore's own flag")
    c = Client((srv.host, srv.port))
    for i in range(9000):
        c.set(f"r{i}", record(i)[:220], noreply=True)
    import time

    deadline = time.time() + 20
    while int(stats(srv)["compress_dictionaries"]) == 0:
        assert time.time() < deadline, "no dictionary was trained"
        time.sleep(0.1)
    before = stats(srv)
    for i in range(9000, 12000):
        c.set(f"r{i}", record(i)[:220], noreply=False)
    for i in (0, 5000, 11999):
        assert c.get(f"r{i}") == record(i)[:220]
    st = stats(srv)
    assert int(st["compress_dict_trainings"]) == 1
    added_in = int(st["compress_bytes_in"]) - int(before["compress_bytes_in"])
    added_out = int(st["compress_bytes_out"]) - int(before["compress_bytes_out"])
    assert added_in > 1.8 * added_out, f"{added_in} -> {added_out}"


def test_meta_commands_on_compressed_items(memcore):
    """Values the server compressed behave the same under the meta
    commands: read back (mg v), marked stale and read again (md I keeps the
    value and rewrites the stored frame), appended to, counted (ma reads a
    compressed number)."""
    doc = record(7) * 8
    r = Raw(memcore.host, memcore.port)
    try:
        def meta(line: bytes) -> bytes:
            r.send(line)
            head = r.line()
            if head.startswith(b"VA "):
                return head + b"|" + r.exact(int(head.split()[1]) + 2)[:-2]
            return head

        assert meta(b"ms zdoc %d F9 T0\r\n%s\r\n" % (len(doc), doc)) == b"HD"
        assert meta(b"mg zdoc v f s\r\n") == b"VA %d f9 s%d|%s" % (len(doc), len(doc), doc)
        assert meta(b"md zdoc I T60\r\n") == b"HD"
        assert meta(b"mg zdoc v\r\n") == b"VA %d X W|%s" % (len(doc), doc)
        assert meta(b"ms zdoc 5 MA\r\n!tail\r\n") == b"HD"
        assert meta(b"mg zdoc v\r\n") == b"VA %d|%s!tail" % (len(doc) + 5, doc)
        padded = b"41" + b" " * 98
        assert meta(b"ms znum 100\r\n%s\r\n" % padded) == b"HD"
        assert meta(b"ma znum v\r\n") == b"VA 2|42"
        assert meta(b"mg znum v\r\n") == b"VA 100|42" + b" " * 98
    finally:
        r.close()
    assert int(stats(memcore)["compress_items"]) >= 2
