"""Process-level behaviour shared with memcached: start-up checks, signals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import EXTERNAL_ADDR, can_connect, free_port, server_bin, spawn_server


def _binary():
    if EXTERNAL_ADDR:
        b = shutil.which("memcached")
        if not b:
            pytest.skip("MEMCORE_TEST_ADDR set and no memcached on PATH")
        return b
    return server_bin()


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful as root")
def test_root_without_u_refuses_to_start():
    port = free_port()
    argv = [_binary(), "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-t", "1"]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(argv)}` as root without -u kept running "
                    "(memcached refuses to start)", pytrace=False)
    assert p.returncode != 0, p
    assert not can_connect("127.0.0.1", port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_exits_promptly(tmp_path, sig):
    srv = spawn_server(_binary(), 2, tmp_path, tag="sig")
    try:
        # one idle connection open while the signal arrives
        with socket.create_connection((srv.host, srv.port), timeout=5):
            srv.proc.send_signal(sig)
            try:
                code = srv.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        if code is None:
            pytest.fail(f"server still running 5 s after {sig.name}\n"
                        f"--- stderr ---\n{srv.stderr_tail()}", pytrace=False)
        assert code in (0, -sig, 128 + sig), code
    finally:
        srv.stop()
