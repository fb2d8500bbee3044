"""Fixtures for the client-level test suite.

Servers under test
------------------
* Default: spawn ``<repo>/target/release/memcore`` (override with env
  ``MEMCORE_BIN``; ``MEMCORE_BIN=/usr/bin/memcached`` works too, since both
  take the same flags) on a free loopback port, once per test, parametrized
  over ``-t 1`` and ``-t 2``.
* ``MEMCORE_TEST_ADDR=host:port``: use that already-running server instead of
  spawning one (e.g. a real memcached, to validate the tests themselves).
  The three-server fixture then spawns three ``memcached`` processes if
  ``memcached`` is on PATH, else those tests are skipped.

Spawned processes are ended at teardown by their own PID (Popen.kill), never
by name.  A spawned server that died during a test turns into a test error
that shows the tail of its stderr.
"""

from __future__ import annotations

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
READY_TIMEOUT = 10.0  # seconds to wait for the port to accept connections

EXTERNAL_ADDR = os.environ.get("MEMCORE_TEST_ADDR", "").strip() or None


def server_bin() -> str:
    return os.environ.get("MEMCORE_BIN", "").strip() or str(DEFAULT_BIN)


def parse_addr(addr: str):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise pytest.UsageError(f"MEMCORE_TEST_ADDR must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_pid(host: str, port: int) -> Optional[int]:
    """The pid the server on host:port reports in `stats`, or None."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"stats\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    for line in buf.split(b"\r\n"):
        if line.startswith(b"STAT pid "):
            return int(line.split()[2])
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
        return not self.spawned or os.path.basename(self.argv[0]).startswith("memcached")

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


def spawn_server(binary: str, threads: int, tmp_dir: Path, extra=(), tag="srv") -> Server:
    """Start `binary` on a free port and wait until it accepts connections."""
    if os.sep in binary and not os.path.exists(binary):
        pytest.fail(
            f"server binary {binary} does not exist: build it with "
            "`cargo build --release`, or set MEMCORE_BIN / MEMCORE_TEST_ADDR",
            pytrace=False,
        )
    last_err = ""
    for attempt in range(3):  # retry in case another process grabbed the port
        port = free_port()
        argv = [binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                "-t", str(threads), "-u", "root", *extra]
        stderr_path = tmp_dir / f"{tag}-{port}.stderr"
        errf = open(stderr_path, "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=errf, stderr=errf)
        errf.close()
        srv = Server("127.0.0.1", port, threads, proc, stderr_path, argv)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if can_connect("127.0.0.1", port):
                # Another process may hold the port free_port picked (ours
                # then fails to bind): make sure it is ours.
                if server_pid("127.0.0.1", port) == proc.pid:
                    return srv
                break
            time.sleep(0.02)
        code = srv.stop()
        last_err = (f"attempt {attempt + 1}: `{' '.join(argv)}` "
                    + (f"exited with code {code}" if code is not None
                       else f"did not accept connections within {READY_TIMEOUT}s")
                    + "\n--- stderr ---\n" + srv.stderr_tail())
    pytest.fail("could not start server:\n" + last_err, pytrace=False)


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
