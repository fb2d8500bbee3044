"""memcached's own meta protocol tests, run against memcore.

tests/memcached-t/ holds t/metaget.t and its t/lib/MemcachedTest.pm from
memcached 1.6.18 (BSD licence, tests/memcached-t/LICENSE), unchanged.  The
harness tests an already running server when T_MEMD_USE_DAEMON names it;
it only asks the binary at ``./memcached-debug`` for its ``-h`` (which
decides that extstore parts are skipped), so that name points at the
server under test in a scratch directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXTERNAL_ADDR, finish, server_bin, spawn_server

TESTS = Path(__file__).resolve().parents[1] / "memcached-t"


def run_t(script: str, addr: str, tmp_path: Path) -> str:
    work = tmp_path / "mt"
    shutil.copytree(TESTS / "t", work / "t")
    shim = work / "memcached-debug"
    shim.write_text("#!/bin/sh\necho 'memcore under test: memcached -h shim'\n")
    shim.chmod(0o755)
    env = {**os.environ, "T_MEMD_USE_DAEMON": addr}
    done = subprocess.run(["perl", f"t/{script}"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "not ok" not in out, out[-4000:]
    return out


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl runs memcached's tests")
@pytest.mark.parametrize("threads", [1, 2])
def test_memcached_metaget_t_passes(threads, tmp_path):
    if EXTERNAL_ADDR is not None:
        out = run_t("metaget.t", EXTERNAL_ADDR, tmp_path)
    else:
        srv = spawn_server(server_bin(), threads, tmp_path, tag="memcore")
        try:
            out = run_t("metaget.t", srv.addr, tmp_path)
        finally:
            finish(srv)
    assert "1..148" in out, out[-2000:]
