"""The packaging files: the seccomp profile helper and the systemd unit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "contrib" / "docker" / "seccomp-add-io_uring.py"
IO_URING = {"io_uring_setup", "io_uring_enter", "io_uring_register"}


def run_script(profile: dict) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT)], input=json.dumps(profile), capture_output=True,
                         text=True, check=True, timeout=30)
    return json.loads(out.stdout)


def allowed(profile: dict) -> set:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            and not r.get("includes") and not r.get("excludes") for n in r.get("names", [])}


def test_seccomp_helper_allows_io_uring_and_keeps_the_rest():
    # Shaped as Docker's default since it dropped io_uring: an allow list,
    # and a rule that denies io_uring explicitly.
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            {"names": ["accept4", "read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["io_uring_setup", "io_uring_enter", "io_uring_register"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": 1},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    out = run_script(profile)
    assert IO_URING <= allowed(out)
    assert {"accept4", "read", "write"} <= allowed(out)
    assert not any(IO_URING & set(r.get("names", [])) for r in out["syscalls"] if r["action"] != "SCMP_ACT_ALLOW")
    assert out["defaultAction"] == "SCMP_ACT_ERRNO"
    assert any(r.get("args") for r in out["syscalls"]), "conditional rules kept"
    # Idempotent.
    assert run_script(out) == out


def test_seccomp_helper_refuses_what_is_not_a_profile():
    r = subprocess.run([sys.executable, str(SCRIPT)], input="[]", capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "not a seccomp profile" in r.stderr


def test_dockerfile_is_multi_stage_non_root_with_memcore_as_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    stages = [l for l in text.splitlines() if l.startswith("FROM ")]
    assert len(stages) == 2 and " AS build" in stages[0]
    assert "USER memcore" in text
    assert 'ENTRYPOINT ["/usr/local/bin/memcore"' in text
    assert "target" in (ROOT / ".dockerignore").read_text().split()
