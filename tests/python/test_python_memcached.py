"""memcore driven by the python-memcached client (`import memcache`)."""

from __future__ import annotations

import pickle
import time
import zlib

import pytest

import memcache

from mchelpers import Raw

FLAG_PICKLE = memcache.Client._FLAG_PICKLE
FLAG_INTEGER = memcache.Client._FLAG_INTEGER
FLAG_COMPRESSED = memcache.Client._FLAG_COMPRESSED
FLAG_TEXT = memcache.Client._FLAG_TEXT


@pytest.fixture
def mc(server):
    c = memcache.Client([server.addr], debug=0, socket_timeout=5)
    yield c
    c.disconnect_all()


def raw_get(server, key: bytes):
    r = Raw(server.host, server.port)
    try:
        return r.get_values(b"get " + key + b"\r\n").get(key)
    finally:
        r.close()


def test_readme_example(server):
    # the classic example from python-memcached's README
    mc = memcache.Client([server.addr], debug=0)
    mc.set("some_key", "Some value")
    value = mc.get("some_key")
    assert value == "Some value"
    mc.set("another_key", 3)
    mc.delete("another_key")
    mc.set("key", "1")  # note that the key used for incr/decr must be a string.
    assert mc.incr("key") == 2
    assert mc.decr("key") == 1
    mc.disconnect_all()


def test_set_get_delete(mc):
    assert mc.set("k", "v")
    assert mc.get("k") == "v"
    assert mc.get("nope") is None
    assert mc.delete("k")
    assert mc.get("k") is None
    mc.set(b"bytes-key", b"\x00\xff raw")
    assert mc.get(b"bytes-key") == b"\x00\xff raw"


def test_get_multi_set_multi(mc):
    data = {f"m{i}": f"val{i}" for i in range(100)}
    assert mc.set_multi(data) == []  # list of keys that failed
    got = mc.get_multi(list(data) + ["absent"])
    assert got == data
    # key_prefix form
    assert mc.set_multi({"a": 1, "b": 2}, key_prefix="pfx:") == []
    assert mc.get("pfx:a") == 1
    assert mc.get_multi(["a", "b", "c"], key_prefix="pfx:") == {"a": 1, "b": 2}
    assert mc.delete_multi(["a", "b"], key_prefix="pfx:")
    assert mc.get_multi(["a", "b"], key_prefix="pfx:") == {}


def test_incr_decr(mc):
    assert mc.incr("cnt") is None  # missing key
    mc.set("cnt", "10")
    assert mc.incr("cnt") == 11
    assert mc.incr("cnt", 9) == 20
    assert mc.decr("cnt", 5) == 15
    assert mc.decr("cnt", 100) == 0
    mc.set("icnt", 41)  # stored as an integer with FLAG_INTEGER
    assert mc.incr("icnt") == 42
    assert mc.get("icnt") == 42


def test_add_replace(mc):
    assert mc.add("ar", "one")
    assert not mc.add("ar", "two")
    assert mc.get("ar") == "one"
    assert mc.replace("ar", "three")
    assert mc.get("ar") == "three"
    assert not mc.replace("ar-missing", "x")
    assert mc.get("ar-missing") is None


def test_append_prepend(mc):
    assert not mc.append("ap", "x")
    mc.set("ap", "mid")
    assert mc.append("ap", "-end")
    assert mc.prepend("ap", "start-")
    assert mc.get("ap") == "start-mid-end"


def test_python_objects_pickled(server, mc):
    obj = {"list": [1, 2.5, "three", None], "tuple": (1, 2), "set": {4, 5},
           "nested": {"x": b"bytes"}}
    assert mc.set("obj", obj)
    assert mc.get("obj") == obj
    flags, data, _ = raw_get(server, b"obj")
    assert flags & FLAG_PICKLE
    assert pickle.loads(data) == obj
    # ints use their own flag and a decimal text body
    mc.set("int", 12345)
    assert mc.get("int") == 12345
    flags, data, _ = raw_get(server, b"int")
    assert flags & FLAG_INTEGER and data == b"12345"
    # a large pickled object
    big = list(range(50000))
    assert mc.set("bigobj", big)
    assert mc.get("bigobj") == big


def test_min_compress_len_round_trip(server, mc):
    text = "compress me please " * 2000
    assert mc.set("z", text, min_compress_len=100)
    assert mc.get("z") == text
    flags, data, _ = raw_get(server, b"z")
    assert flags & FLAG_COMPRESSED, flags
    assert flags & FLAG_TEXT, flags
    assert len(data) < len(text)
    assert zlib.decompress(data).decode("utf-8") == text
    # below the threshold it is stored plain
    mc.set("z2", "short", min_compress_len=100)
    flags, data, _ = raw_get(server, b"z2")
    assert not flags & FLAG_COMPRESSED and data == b"short"
    # compressed pickles too
    obj = {"rows": ["row %d" % i for i in range(3000)]}
    assert mc.set("zo", obj, min_compress_len=1)
    assert mc.get("zo") == obj
    flags, _, _ = raw_get(server, b"zo")
    assert flags & FLAG_COMPRESSED and flags & FLAG_PICKLE


def test_unicode(server, mc):
    s = "héllo wörld — 日本語 🎉"
    assert mc.set("uni", s)
    assert mc.get("uni") == s
    flags, data, _ = raw_get(server, b"uni")
    assert flags & FLAG_TEXT
    assert data == s.encode("utf-8")
    # unicode key (encoded to utf-8 by the client)
    assert mc.set("ключ", "значение")
    assert mc.get("ключ") == "значение"


def test_get_stats(server, mc):
    mc.set("st", "v")
    mc.get("st")
    stats = mc.get_stats()
    assert len(stats) == 1
    name, data = stats[0]
    assert f"{server.host}:{server.port}" in name
    for field in ("pid", "uptime", "curr_connections", "cmd_get", "get_hits",
                  "curr_items", "threads", "version"):
        assert field in data, f"stats lacks {field}: {sorted(data)}"
    assert int(data["cmd_get"]) >= 1
    assert int(data["get_hits"]) >= 1
    assert int(data["curr_items"]) >= 1
    if server.spawned:
        assert int(data["threads"]) == server.threads
        assert int(data["pid"]) == server.proc.pid


def test_flush_all(mc):
    mc.set_multi({"f1": 1, "f2": 2})
    mc.flush_all()
    assert mc.get_multi(["f1", "f2"]) == {}


def test_gets_cas(server):
    mc = memcache.Client([server.addr], debug=0, cache_cas=True)
    try:
        mc.set("c", "one")
        assert mc.gets("c") == "one"
        assert mc.cas("c", "two")
        # the cached token is now stale
        assert not mc.cas("c", "three")
        assert mc.get("c") == "two"
    finally:
        mc.disconnect_all()


def test_touch_and_expiry(mc):
    mc.set("tt", "v", time=100)
    assert mc.touch("tt", 1)
    deadline = time.monotonic() + 5
    while mc.get("tt") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mc.get("tt") is None
