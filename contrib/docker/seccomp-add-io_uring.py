#!/usr/bin/env python3
"""Add the io_uring system calls to a Docker/OCI seccomp profile.

Docker's and containerd's default profiles block io_uring_setup,
io_uring_enter and io_uring_register, and memcore's cores run on io_uring.
This reads a profile (the default one of your Docker version, from moby's
repository at that version's tag), allows those three calls, and writes the
result; everything else in the profile stays as it is.

    curl -fsSL https://raw.githubusercontent.com/moby/moby/v28.2.2/profiles/seccomp/default.json \
        | python3 contrib/docker/seccomp-add-io_uring.py > memcore-seccomp.json
    docker run --security-opt seccomp=memcore-seccomp.json ...
"""

import json
import sys

IO_URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]


def add_io_uring(profile: dict) -> dict:
    rules = profile.setdefault("syscalls", [])
    # Drop any rule that denies them, then allow them in a rule of their own.
    for rule in rules:
        if rule.get("action") != "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule.get("names", []) if n not in IO_URING]
    rules[:] = [r for r in rules if r.get("names") or r.get("name")]
    if not any(r.get("action") == "SCMP_ACT_ALLOW" and set(IO_URING) <= set(r.get("names", [])) and not r.get("args")
               and not r.get("includes") and not r.get("excludes") for r in rules):
        rules.append({"names": list(IO_URING), "action": "SCMP_ACT_ALLOW",
                      "comment": "memcore runs on io_uring"})
    return profile


def main() -> int:
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    profile = json.load(src)
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        print("seccomp-add-io_uring: not a seccomp profile (no defaultAction)", file=sys.stderr)
        return 1
    json.dump(add_io_uring(profile), sys.stdout, indent="\t")
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
