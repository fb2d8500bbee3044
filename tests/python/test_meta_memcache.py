"""The `meta-memcache` client (PyPI), which speaks only the meta protocol:
get, set, delete, touch, counters, unicode keys (sent base64), and its herd
control: stale-while-revalidate (a delete marks the item stale; one reader
wins the recache, the others keep the stale value) and leases (the first
reader of a missing key wins, the others wait for its value).

Runs against each spawned memcore (-t 1, -t 2) or MEMCORE_TEST_ADDR, and
passes against memcached 1.6.18 (MEMCORE_BIN=/usr/bin/memcached).
"""

from __future__ import annotations

import pytest

meta_memcache = pytest.importorskip("meta_memcache")
from meta_memcache import (  # noqa: E402
    CacheClient,
    Key,
    LeasePolicy,
    RecachePolicy,
    ServerAddress,
    StalePolicy,
    connection_pool_factory_builder,
)


def client(server):
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host=server.host, port=server.port)],
        connection_pool_factory_fn=connection_pool_factory_builder(recv_timeout=5),
    )


def test_get_set_delete_touch(server):
    c = client(server)
    assert c.get("nope") is None
    assert c.set("k", "value", ttl=100)
    assert c.get("k") == "value"
    assert c.set("n", {"a": [1, 2]}, ttl=0)
    assert c.get("n") == {"a": [1, 2]}
    assert c.touch("k", ttl=5)
    assert not c.touch("nope", ttl=5)
    assert c.delete("k")
    assert not c.delete("k")
    assert c.get("k") is None
    assert c.invalidate("k")
    many = c.multi_get(["n", "k", "nope"])
    assert many[Key("n")] == {"a": [1, 2]} and many[Key("k")] is None


def test_cas_and_modes(server):
    c = client(server)
    cas = c.set_cas("k", "one", ttl=100)
    assert cas
    value, cas2 = c.get_cas("k")
    assert value == "one" and cas2 == cas, "the CAS a set returns is the one a get sees"
    assert c.set("k", "two", ttl=100, cas_token=cas)
    assert not c.set("k", "three", ttl=100, cas_token=cas), "an old CAS loses"
    assert c.get("k") == "two"
    assert not c.refill("k", "refilled", ttl=100), "refill adds only"
    assert c.refill("new", "refilled", ttl=100)
    assert c.get("new") == "refilled"


def test_counters(server):
    c = client(server)
    assert not c.delta("cnt", 1)
    assert c.delta_initialize("cnt", 1, initial_value=10, initial_ttl=100)
    assert c.delta_and_get("cnt", 5) == 15
    assert c.delta_initialize_and_get("other", 2, initial_value=7, initial_ttl=0) == 7
    assert c.delta_and_get("other", -3) == 4


def test_unicode_and_binary_keys_travel_base64(server):
    c = client(server)
    assert c.set(Key("🍺 and spaces"), "beer", ttl=100)
    assert c.get(Key("🍺 and spaces")) == "beer"
    assert c.delete(Key("🍺 and spaces"))
    assert c.get(Key("🍺 and spaces")) is None


def test_stale_while_revalidate(server):
    a, b = client(server), client(server)
    stale = StalePolicy(mark_stale_on_deletion_ttl=30)
    assert a.set("page", "v1", ttl=100)
    assert a.delete("page", stale_policy=stale)
    # The first reader wins the recache (a miss for it), the next one is
    # served the stale value while the winner rebuilds.
    assert a.get("page") is None
    assert b.get("page") == "v1"
    assert b.get("page") == "v1"
    assert a.set("page", "v2", ttl=100)
    assert b.get("page") == "v2"
    assert a.get("page") == "v2"


def test_recache_before_expiry(server):
    a, b = client(server), client(server)
    assert a.set("hot", "v1", ttl=20)
    policy = RecachePolicy(ttl=60)
    # TTL left (20) is under the recache threshold (60): one reader wins.
    assert a.get("hot", recache_policy=policy) is None
    assert b.get("hot", recache_policy=policy) == "v1"
    assert a.set("hot", "v2", ttl=1000)
    assert b.get("hot", recache_policy=policy) == "v2"


def test_lease_on_miss(server):
    a, b = client(server), client(server)
    lease = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=0.01, miss_max_retry_wait=0.05)
    waits = []

    def wait_then_fill(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            assert a.set("lease", "filled", ttl=100)

    # a wins the lease: a miss for it, the key now holds a lease.
    assert a.get_or_lease("lease", lease_policy=lease) is None
    # b waits for a's value instead of going to the backend.
    assert b.get_or_lease("lease", lease_policy=lease, lease_wait_fn=wait_then_fill) == "filled"
    assert len(waits) == 2
