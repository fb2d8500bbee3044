"""libmemcached's protocol conformance checker, ASCII tests only.

`memccapable -a` against memcached 1.6 prints one "ascii <name> ... [pass]"
line per test and "All tests passed", and exits 0.  Note it FLUSHes the
server it is pointed at.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def test_memccapable_ascii(server):
    exe = shutil.which("memccapable")
    if not exe:
        pytest.fail("memccapable not found on PATH: install Debian's "
                    "libmemcached-tools (apt-get install libmemcached-tools); "
                    ".ci/run does this", pytrace=False)
    argv = [exe, "-a", "-h", server.host, "-p", str(server.port), "-t", "10"]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(argv)}` timed out after 300 s\n"
                    f"--- stdout ---\n{(e.stdout or b'').decode(errors='replace')}",
                    pytrace=False)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    lines = out.splitlines()
    failed = [ln for ln in lines if "fail" in ln.lower()]
    passed = [ln for ln in lines if ln.rstrip().endswith("[pass]")]
    if p.returncode != 0 or failed or "All tests passed" not in out:
        pytest.fail(f"`{' '.join(argv)}` exited {p.returncode}; "
                    f"{len(passed)} passed, failing lines: {failed}\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}",
                    pytrace=False)
    assert len(passed) >= 20, out
