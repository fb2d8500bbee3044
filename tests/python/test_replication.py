"""Replication seen from a plain client: pymemcache's HashClient over two
replica groups of two memcore nodes each (one server entry per group, as
docs/replication.md suggests). Every key lands in one group and is then
readable from both nodes of that group, and from neither node of the other.

memcore only (the replication flags are not memcached's): skipped under
MEMCORE_TEST_ADDR or when MEMCORE_BIN is a memcached."""

from __future__ import annotations

import os
import socket
from typing import Dict, List

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from conftest import EXTERNAL_ADDR, Server, finish_all, server_bin, spawn_server
from mchelpers import CLIENT_TIMEOUT, Raw, wait_until

NKEYS = 1000


def free_port() -> int:
    """A port that was free a moment ago (another process may take it before
    the server binds it): the replication ports must be known before the
    nodes start, since each names the other in --peers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repl_stats(srv: Server) -> Dict[str, str]:
    r = Raw(srv.host, srv.port)
    try:
        r.send(b"stats repl\r\n")
        out = {}
        while True:
            line = r.line().decode()
            if line == "END":
                return out
            _, name, value = line.split(" ", 2)
            out[name] = value
    finally:
        r.close()


def client(srv: Server) -> Client:
    return Client((srv.host, srv.port), connect_timeout=CLIENT_TIMEOUT, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def two_groups(tmp_path) -> List[List[Server]]:
    """Two replica groups of two nodes (node ids 1 and 2 in each; the groups
    do not know each other), with their links up. Group 0 shares a secret
    (its links are encrypted), group 1 runs with --repl-insecure."""
    binary = server_bin()
    if EXTERNAL_ADDR or os.path.basename(binary).startswith("memcached"):
        pytest.skip("replication groups need spawned memcore processes")
    groups: List[List[Server]] = []
    started: List[Server] = []
    secret = tmp_path / "repl-secret"
    secret.write_bytes(b"group zero secret\n")
    security = [["--repl-secret", str(secret)], ["--repl-insecure"]]
    try:
        for g in range(2):
            ports = [free_port(), free_port()]
            nodes = []
            for i in range(2):
                extra = ["--repl-listen", f"127.0.0.1:{ports[i]}", "--peers", f"127.0.0.1:{ports[1 - i]}",
                         "--node-id", str(i + 1)] + security[g]
                srv = spawn_server(binary, 2, tmp_path, extra=extra, tag=f"group{g}-node{i}")
                started.append(srv)
                nodes.append(srv)
            groups.append(nodes)
        for srv in started:
            up = wait_until(lambda: repl_stats(srv).get("peer0_state") == "connected", timeout=10)
            assert up, f"{srv.addr}: link not up: {repl_stats(srv)}\n{srv.stderr_tail()}"
        for g, nodes in enumerate(groups):
            assert all(repl_stats(s)["repl_encrypted"] == ("yes" if g == 0 else "no") for s in nodes)
        yield groups
    finally:
        finish_all(started)


def test_hashclient_over_two_replica_groups_every_key_on_both_nodes_of_its_group(two_groups):
    # One server entry per group: its first node.
    entries = [g[0] for g in two_groups]
    hc = HashClient([(s.host, s.port) for s in entries], connect_timeout=CLIENT_TIMEOUT,
                    timeout=CLIENT_TIMEOUT, retry_attempts=0, ignore_exc=False)
    keys = [f"grp:{i}" for i in range(NKEYS)]
    want = {k: f"value of {k}".encode() for k in keys}
    clients = [[client(s) for s in g] for g in two_groups]
    try:
        for k in keys:
            hc.set(k, want[k])  # noreply, as HashClient does by default
        got = hc.get_many(keys)
        assert got == want

        # Which group took each key: the one whose entry node has it.
        on_entry = [clients[g][0].get_many(keys) for g in range(2)]
        owner = {}
        for k in keys:
            holders = [g for g in range(2) if k in on_entry[g]]
            assert len(holders) == 1, f"{k} is on the entry nodes of groups {holders}"
            owner[k] = holders[0]
        per_group = [sum(1 for g in owner.values() if g == x) for x in range(2)]
        assert all(n > 0 for n in per_group), per_group

        # Both nodes of the owning group serve every key; the other group has none.
        for g in range(2):
            mine = [k for k in keys if owner[k] == g]
            replica = clients[g][1]
            expect_mine = {k: want[k] for k in mine}
            wait_until(lambda: replica.get_many(mine) == expect_mine, timeout=5, interval=0.02)
            last = replica.get_many(mine)
            assert last == expect_mine, f"group {g}: {len(last)} of {len(mine)} on its 2nd node"
            others = [k for k in keys if owner[k] != g]
            for c in clients[g]:
                assert c.get_many(others) == {}, f"group {g} holds keys of the other group"

        # Writes and deletes made on either node of a group reach the other.
        changed = [k for k in keys if owner[k] == 0][:50]
        for k in changed[:25]:
            assert clients[0][1].set(k, b"rewritten on node 2", noreply=False)
        for k in changed[25:]:
            assert hc.delete(k, noreply=False)
        expect = {k: b"rewritten on node 2" for k in changed[:25]}
        assert wait_until(lambda: hc.get_many(changed) == expect, timeout=5, interval=0.02), hc.get_many(changed)
        # The deletes went to the entry node: node 2 gets them asynchronously.
        last = wait_until(lambda: clients[0][1].get_many(changed) == expect, timeout=5, interval=0.02)
        assert last, clients[0][1].get_many(changed)

        # The two nodes of each group agree on everything.
        for g, (a, b) in enumerate(two_groups):
            same = wait_until(lambda: repl_stats(a)["repl_digest"] == repl_stats(b)["repl_digest"], timeout=5)
            assert same, f"group {g}: {repl_stats(a)} vs {repl_stats(b)}"
            assert repl_stats(a)["repl_items"] == str(per_group[g] - (25 if g == 0 else 0))
    finally:
        hc.close()
        for g in clients:
            for c in g:
                c.close()


def meta(srv: Server, line: bytes) -> bytes:
    """One meta request, its reply line (and a value block's line after VA)."""
    r = Raw(srv.host, srv.port)
    try:
        r.send(line)
        out = r.line()
        if out.startswith(b"VA "):
            out += b"|" + r.line()
        return out
    finally:
        r.close()


def test_meta_writes_reach_the_other_node_of_the_group(two_groups):
    """What meta writes change travels: an invalidated (stale) item, a TTL
    set by mg T, an ma result, a vivified lease; the other node answers
    alike (CAS values are each node's own)."""
    a, b = two_groups[0]
    assert meta(a, b"ms page 2 T100\r\nv1\r\n") == b"HD"
    assert wait_until(lambda: meta(b, b"mg page v u\r\n") == b"VA 2|v1")
    assert meta(a, b"md page I T30\r\n") == b"HD"
    # Stale on b too: the first reader there wins the recache, the next
    # is told another did.
    assert wait_until(lambda: meta(b, b"mg page u\r\n") == b"HD X W")
    got = meta(b, b"mg page v t\r\n")
    assert got.startswith(b"VA 2 t") and got.endswith(b" Z X|v1"), got
    assert meta(a, b"mg page T500 v\r\n").startswith(b"VA 2")
    assert wait_until(lambda: meta(b, b"mg page t u\r\n").startswith(b"HD t4"))
    assert meta(a, b"ma cnt N0 J40 v\r\n") == b"VA 2|40"
    assert meta(a, b"ma cnt D2 v\r\n") == b"VA 2|42"
    assert wait_until(lambda: meta(b, b"mg cnt v\r\n") == b"VA 2|42")
    # A lease won on a is held on b: b's readers see Z, not a second W.
    assert meta(a, b"mg lease N30 s\r\n") == b"HD s0 W"
    assert wait_until(lambda: meta(b, b"mg lease N30 s\r\n") == b"HD s0 Z")
