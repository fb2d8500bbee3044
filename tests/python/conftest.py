"""Fixtures for the client-level test suite.

This suite holds what real clients add: pymemcache, python-memcached,
memccapable, replication seen through a client, and the byte-for-byte
comparison with memcached.  The server process itself (flags, signals,
root, pid and port files) is tested once, in tests/lifecycle.rs.

Servers under test
------------------
* Default: spawn ``<repo>/target/release/memcore`` (override with env
  ``MEMCORE_BIN``; ``MEMCORE_BIN=/usr/bin/memcached`` works too, since both
  take the same flags) on a loopback port it picks itself (``-p 0``, told in
  its ``--port-file``), once per test, parametrized over ``-t 1`` and
  ``-t 2``.
* ``MEMCORE_TEST_ADDR=host:port``: use that already-running server instead of
  spawning one (e.g. a real memcached, to validate the tests themselves).
  The three-server fixture then spawns three ``memcached`` processes if
  ``memcached`` is on PATH, else those tests are skipped.

Spawned processes are ended at teardown by their own PID (Popen.kill), never
by name.  A spawned server that died during a test turns into a test error
that shows the tail of its stderr.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

from mchelpers import CLIENT_TIMEOUT, Raw

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "memcore"
READY_TIMEOUT = 10.0  # seconds to wait for the port file

EXTERNAL_ADDR = os.environ.get("MEMCORE_TEST_ADDR", "").strip() or None


def server_bin() -> str:
    return os.environ.get("MEMCORE_BIN", "").strip() or str(DEFAULT_BIN)


def parse_addr(addr: str):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise pytest.UsageError(f"MEMCORE_TEST_ADDR must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def is_memcached(binary: str) -> bool:
    return os.path.basename(binary).startswith("memcached")


def any_port_argv(binary: str, port_file: Path):
    """Flags and environment that ask `binary` for a free port, told in
    `port_file`: memcore's ``-p 0 --port-file``, or memcached's ``-p -1``
    with MEMCACHED_PORT_FILENAME (memcached reads ``-p 0`` as "no TCP").
    Both write lines such as ``TCP INET: 40935``."""
    if is_memcached(binary):
        return ["-p", "-1"], {**os.environ, "MEMCACHED_PORT_FILENAME": str(port_file)}
    return ["-p", "0", "--port-file", str(port_file)], None


def read_port_file(port_file: Path, proc: subprocess.Popen) -> Optional[int]:
    """The first TCP port in `port_file` once the server has written it (it
    listens from then on), or None if the server exits or times out first."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            for line in port_file.read_text().splitlines():
                if line.startswith("TCP INET"):
                    return int(line.split(": ")[1])
        except (OSError, ValueError, IndexError):
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    return None


@dataclass
class Server:
    host: str
    port: int
    threads: Optional[int] = None
    proc: Optional[subprocess.Popen] = None
    stderr_path: Optional[Path] = None
    argv: List[str] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def spawned(self) -> bool:
        return self.proc is not None

    @property
    def is_reference(self) -> bool:
        """True when this is (presumably) the real memcached: an external
        MEMCORE_TEST_ADDR server, or a spawned `memcached` binary.  Used only
        to tolerate documented memcached quirks, never for memcore."""
        return not self.spawned or is_memcached(self.argv[0])

    def stderr_tail(self, n: int = 40) -> str:
        if not self.stderr_path or not self.stderr_path.exists():
            return ""
        lines = self.stderr_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self) -> Optional[int]:
        """Kill the spawned process by its own PID; return its exit code if it
        had already exited before we killed it (i.e. it died by itself)."""
        if self.proc is None:
            return None
        died_early = self.proc.poll()
        if died_early is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        return died_early


_SPAWNED = itertools.count()


def spawn_server(binary: str, threads: int, tmp_dir: Path, extra=(), tag="srv") -> Server:
    """Start `binary` on a free port it picks itself and learn the port from
    its port file.  Connections made once the file exists wait in the
    listen backlog until the server accepts them: no readiness probe.
    A start that fails because a port named in `extra` (a replication port
    from free_port) is still in use is retried for up to 3 s."""
    deadline = time.monotonic() + 3
    while True:
        srv = _spawn_once(binary, threads, tmp_dir, extra, tag)
        if srv.port or "already in use" not in srv.stderr_tail() or time.monotonic() > deadline:
            break
        srv.stop()
        time.sleep(0.05)
    if not srv.port:
        code = srv.stop()
        pytest.fail(f"could not start server: `{' '.join(srv.argv)}` "
                    + (f"exited with code {code}" if code is not None
                       else f"wrote no port file within {READY_TIMEOUT}s")
                    + "\n--- stderr ---\n" + srv.stderr_tail(), pytrace=False)
    return srv


def _spawn_once(binary: str, threads: int, tmp_dir: Path, extra, tag) -> Server:
    if os.sep in binary and not os.path.exists(binary):
        pytest.fail(
            f"server binary {binary} does not exist: build it with "
            "`cargo build --release`, or set MEMCORE_BIN / MEMCORE_TEST_ADDR",
            pytrace=False,
        )
    port_file = tmp_dir / f"{tag}-{next(_SPAWNED)}.port"
    port_argv, env = any_port_argv(binary, port_file)
    argv = [binary, *port_argv, "-l", "127.0.0.1", "-U", "0",
            "-t", str(threads), "-u", "root", *extra]
    stderr_path = port_file.with_suffix(".stderr")
    with open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=errf, stderr=errf, env=env)
    port = read_port_file(port_file, proc)
    return Server("127.0.0.1", port or 0, threads, proc, stderr_path, argv)


def finish(srv: Server) -> None:
    code = srv.stop()
    if code is not None:
        pytest.fail(
            f"server `{' '.join(srv.argv)}` died during the test "
            f"(exit code {code})\n--- stderr ---\n{srv.stderr_tail()}",
            pytrace=False,
        )


def finish_all(servers: List[Server]) -> None:
    """`finish` every server, even when one fails; then raise the first failure."""
    errors = []
    for srv in servers:
        try:
            finish(srv)
        except BaseException as e:  # collect all, kill all
            errors.append(e)
    if errors:
        raise errors[0]


def flush(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT) as s:
        s.sendall(b"flush_all\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        assert buf == b"OK\r\n", f"flush_all answered {buf!r}"


_THREAD_PARAMS = ["external"] if EXTERNAL_ADDR else [1, 2]


@pytest.fixture(params=_THREAD_PARAMS,
                ids=lambda p: "external" if p == "external" else f"t{p}")
def server(request, tmp_path) -> Server:
    """One server: a fresh spawned process per test (-t 1 and -t 2), or the
    external MEMCORE_TEST_ADDR server, flushed before the test."""
    if request.param == "external":
        host, port = parse_addr(EXTERNAL_ADDR)
        if not can_connect(host, port):
            pytest.fail(f"MEMCORE_TEST_ADDR={EXTERNAL_ADDR}: cannot connect",
                        pytrace=False)
        flush(host, port)
        yield Server(host, port)
        return
    srv = spawn_server(server_bin(), request.param, tmp_path)
    yield srv
    finish(srv)


@pytest.fixture
def three_servers(tmp_path) -> List[Server]:
    """Three fresh server processes (for HashClient)."""
    if EXTERNAL_ADDR:
        binary = shutil.which("memcached")
        if not binary:
            pytest.skip("MEMCORE_TEST_ADDR set and no memcached on PATH "
                        "to spawn three servers")
    else:
        binary = server_bin()
    servers: List[Server] = []
    try:
        for i in range(3):
            servers.append(spawn_server(binary, 2, tmp_path, tag=f"hash{i}"))
        yield servers
    finally:
        finish_all(servers)


@pytest.fixture
def spawned_server_factory(tmp_path):
    """Spawn a server with extra flags (e.g. -I 2m); only when not using an
    external server.  Processes are killed at teardown."""
    started: List[Server] = []

    def make(threads=1, extra=()):
        binary = shutil.which("memcached") if EXTERNAL_ADDR else server_bin()
        if not binary:
            pytest.skip("MEMCORE_TEST_ADDR set and no memcached on PATH")
        srv = spawn_server(binary, threads, tmp_path, extra=extra, tag="custom")
        started.append(srv)
        return srv

    yield make
    for srv in started:
        finish(srv)


@pytest.fixture
def raw(server):
    conns = []

    def make():
        r = Raw(server.host, server.port)
        conns.append(r)
        return r

    yield make
    for r in conns:
        r.close()
