"""memcore on a UNIX socket (-s, TCP off) driven by pymemcache."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time

import pytest
from pymemcache.client.base import Client

from conftest import is_memcached, server_bin
from mchelpers import CLIENT_TIMEOUT, wait_until


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def unix_server(request, tmp_path):
    binary = server_bin()
    if os.environ.get("MEMCORE_TEST_ADDR") or is_memcached(binary):
        pytest.skip("memcore-specific")
    path = tmp_path / "memcore.sock"
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([binary, "-s", str(path), "-a", "600", "-t", str(request.param), "-u", "root"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def up():
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
            return True
        except OSError:
            return proc.poll() is not None
    assert wait_until(up, 10) and proc.poll() is None, (tmp_path / "log").read_text()
    yield path
    proc.terminate()
    assert proc.wait(timeout=5) == 0
    log.close()
    assert not path.exists(), "socket file removed at exit"


def test_pymemcache_over_a_unix_socket(unix_server):
    assert stat.S_IMODE(os.stat(unix_server).st_mode) == 0o600
    c = Client(str(unix_server), connect_timeout=CLIENT_TIMEOUT, timeout=CLIENT_TIMEOUT)
    assert c.set("k", b"v", noreply=False) is True
    assert c.get("k") == b"v"
    c.set_many({f"m{i}": str(i).encode() * 100 for i in range(100)}, noreply=False)
    assert c.get_many([f"m{i}" for i in range(100)]) == {f"m{i}": str(i).encode() * 100 for i in range(100)}
    big = bytes(range(256)) * 4000
    assert c.set("big", big, noreply=False) is True
    assert c.get("big") == big
    assert c.incr("n", 1) is None
    c.set("n", b"41", noreply=False)
    assert c.incr("n", 1) == 42
    assert c.delete("k", noreply=False) is True
    assert c.get("k") is None
    stats = c.stats()
    assert int(stats[b"curr_connections"]) >= 1
    c.close()
