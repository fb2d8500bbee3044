#!/usr/bin/env python3
"""Replication benchmarks (issue 6), on loopback only.

What it measures, each as a ratio where that makes sense:

* write throughput of a node with two peers in `async` mode, and in `sync`
  and `majority` modes, against the same node with no peers (sets only);
  also the node's own ops per CPU-second (utime + stime from /proc), which
  on a shared 2-CPU machine is the cleaner figure;
* replication lag at that load: a probe writes a key on the node every
  10 ms and polls both peers until they return it; lag = time from the
  node's STORED to the value readable on the peer (p50 / p99 / max);
* time to resync N MiB of items (default 1024) into an empty node.

Placement (2 CPUs): the node under test runs with -t 1 on CPU 0; the load
generator (memcore-bench, or memtier_benchmark with --memtier) and the two
peers (-t 1 each) share CPU 1. Configurations alternate within each round
(the order rotates from round to round) and every configuration starts
fresh processes. The resync runs both nodes with -t 2.

Usage:
  bench/replication/bench.py [--rounds 3] [--time 5] [--lag-time 10]
                             [--resync-mib 1024] [--only throughput,lag,resync]
                             [--bin-dir target/release] [--memtier] [--secret]

Every process it starts is killed by its PID at the end (also on errors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
STARTED: list[subprocess.Popen] = []
# How the nodes authenticate each other: --repl-insecure, or --repl-secret
# FILE with --secret (then every replication frame is sealed: encrypted and
# authenticated). A throughput configuration named MODE+sealed uses the
# secret whatever --secret says (SEALED_AUTH), so sealed and clear links
# alternate within one run.
REPL_AUTH: list[str] = ["--repl-insecure"]
SEALED_AUTH: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Mc:
    """A bare text-protocol connection (enough for set, get, stats)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _until(self, end: bytes) -> bytes:
        while not self.buf.endswith(end):
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("server closed")
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out

    def set(self, key: str, value: bytes) -> bytes:
        self.s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
        return self._until(b"\r\n")

    def get(self, key: str) -> bytes:
        self.s.sendall(b"get %s\r\n" % key.encode())
        return self._until(b"END\r\n")

    def stats(self, arg: str = "") -> dict:
        self.s.sendall(f"stats {arg}\r\n".encode())
        out = {}
        for line in self._until(b"END\r\n").decode().split("\r\n"):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out

    def close(self):
        self.s.close()


class Node:
    def __init__(self, bin_dir: Path, cpus: str, threads: int, mem_mb: int, repl: list[str], log_dir: Path, tag: str):
        self.port = free_port()
        self.log = log_dir / f"{tag}-{self.port}.log"
        argv = ["taskset", "-c", cpus, str(bin_dir / "memcore"), "-p", str(self.port), "-l", "127.0.0.1",
                "-U", "0", "-t", str(threads), "-u", "root", "-m", str(mem_mb), "--compress", "off", *repl]
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        STARTED.append(self.proc)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{tag} exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{tag} does not listen: {self.log.read_text()[-2000:]}")
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def repl(self) -> dict:
        c = Mc(self.port)
        try:
            return c.stats("repl")
        finally:
            c.close()


def group(args, mode: str | None, log_dir: Path, threads=(1, 1, 1), cpus=("0", "1", "1"), mem_mb=1024,
          extra=()) -> list[Node]:
    """`group_once`, tried again (with new ports) when a port that was free
    a moment ago was taken by another process before a node bound it."""
    for attempt in range(3):
        try:
            return group_once(args, mode, log_dir, threads, cpus, mem_mb, extra)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    pass


def group_once(args, mode: str | None, log_dir: Path, threads, cpus, mem_mb, extra) -> list[Node]:
    """The node under test, then its peers (none when mode is None); a mode
    ending in +sealed links them with the secret."""
    auth = REPL_AUTH
    if mode is not None and mode.endswith("+sealed"):
        mode, auth = mode.removesuffix("+sealed"), SEALED_AUTH
    if mode is None:
        return [Node(args.bin_dir, cpus[0], threads[0], mem_mb, list(extra), log_dir, "solo")]
    n = len(threads)
    ports = [free_port() for _ in range(n)]
    nodes = []
    try:
        for i in range(n):
            peers = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(ports) if j != i)
            repl = ["--repl-listen", f"127.0.0.1:{ports[i]}", "--peers", peers, "--node-id", str(i + 1),
                    *auth, "--repl-mode", mode, *extra]
            nodes.append(Node(args.bin_dir, cpus[i], threads[i], mem_mb, repl, log_dir, f"{mode}{i}"))
    except RuntimeError as e:
        for nd in nodes:
            nd.stop()
        if "address already in use" in str(e):
            raise PortTaken(str(e)) from e
        raise
    wait_linked(nodes)
    return nodes


def wait_linked(nodes: list[Node], limit: float = 15.0):
    deadline = time.monotonic() + limit
    for nd in nodes:
        while True:
            s = nd.repl()
            states = [v for k, v in s.items() if k.startswith("peer") and k.endswith("_state")]
            if states and all(v == "connected" for v in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"links not up: {s}")
            time.sleep(0.05)


def load(args, port: int, secs: float, out: Path) -> dict:
    """Sets only, 50 connections, 100-byte values over 100k keys."""
    if args.memtier:
        cmd = ["taskset", "-c", "1", args.memtier, "-s", "127.0.0.1", "-p", str(port), "-P", "memcache_text",
               "-t", "1", "-c", "50", "--ratio=1:0", "-d", "100", "--key-maximum=100000",
               f"--pipeline={args.pipeline}",
               f"--test-time={int(secs)}", "--hide-histogram", f"--json-out-file={out}"]
    else:
        cmd = ["taskset", "-c", "1", str(args.bin_dir / "memcore-bench"), "-p", str(port), "-t", "1", "-c", "50",
               "--ratio", "1:0", "-d", "100", "--key-maximum", "100000", "--test-time", str(secs),
               "--pipeline", str(args.pipeline),
               "--hide-histogram", "--json-out-file", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = json.loads(out.read_text())
    if args.memtier:
        t = d["ALL STATS"]["Totals"]
        pct = t.get("Percentile Latencies", {})
        return {"ops": t["Ops/sec"], "p50": pct.get("p50.00"), "p99": pct.get("p99.00")}
    return {"ops": d["ops_per_sec"], "p50": d["latency_ms"]["p50"], "p99": d["latency_ms"]["p99"],
            "errors": d["errors"]["error_replies"]}


class Probe(threading.Thread):
    """Writes probe keys on `src` every 10 ms and times their arrival on
    each peer (polling it without pause until the value is there)."""

    def __init__(self, src: int, peers: list[int]):
        super().__init__(daemon=True)
        self.src, self.peers = src, peers
        self.lags: list[list[float]] = [[] for _ in peers]
        self.missing = 0
        self.stop_flag = threading.Event()

    def run(self):
        w = Mc(self.src)
        rs = [Mc(p) for p in self.peers]
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            key, val = f"probe:{n}", str(n).encode()
            assert w.set(key, val) == b"STORED\r\n"
            t0 = time.perf_counter()
            pending = set(range(len(rs)))
            while pending and time.perf_counter() - t0 < 2.0:
                for i in list(pending):
                    if b"VALUE" in rs[i].get(key):
                        self.lags[i].append((time.perf_counter() - t0) * 1000)
                        pending.discard(i)
            self.missing += len(pending)
            time.sleep(0.01)
        for c in [w, *rs]:
            c.close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def throughput(args, log_dir: Path):
    configs = args.configs.split(",")
    res = {c: [] for c in configs}
    for r in range(args.rounds):
        k = r % len(configs)
        order = configs[k:] + configs[:k]
        for c in order:
            nodes = group(args, None if c == "solo" else c, log_dir)
            try:
                cpu0 = [n.cpu() for n in nodes]
                t0 = time.monotonic()
                m = load(args, nodes[0].port, args.time, log_dir / f"{c}-{r}.json")
                wall = time.monotonic() - t0
                cpu = [n.cpu() - c0 for n, c0 in zip(nodes, cpu0)]
                m["node_cpu"] = cpu[0]
                m["peers_cpu"] = sum(cpu[1:])
                m["ops_per_cpu_s"] = m["ops"] * wall / max(cpu[0], 1e-9)
                if c != "solo":
                    s = nodes[0].repl()
                    m["timeouts"] = int(s["repl_write_timeouts"])
                res[c].append(m)
                m["load"] = os.getloadavg()[0]
                print(f"round {r + 1} {c:9s} {m['ops']:>10.0f} ops/s  p50 {m['p50']} ms  p99 {m['p99']} ms  "
                      f"node CPU {cpu[0]:.2f} s  peers CPU {m['peers_cpu']:.2f} s  load {m['load']:.1f}", flush=True)
            finally:
                for n in nodes:
                    n.stop()
    ref = res["solo" if "solo" in res else configs[0]]

    def paired(c: str, key: str) -> str:
        """Per-round ratio against the reference run of the same round."""
        rs = sorted(m[key] / r[key] for m, r in zip(res[c], ref))
        return f"{statistics.median(rs):.2f} [{rs[0]:.2f} .. {rs[-1]:.2f}]"

    ref_name = "no peers" if "solo" in res else configs[0]
    print(f"\nRatios: per round against {ref_name} in the same round, median [min .. max] over {args.rounds} rounds.")
    print(f"| mode | writes/s, median (each round) | vs {ref_name} | node's ops per CPU-s | vs {ref_name} "
          "| p50 / p99 ms | peers' CPU s |")
    print("|---|---|---|---|---|---|---|")
    for c in configs:
        ops = statistics.median(m["ops"] for m in res[c])
        opc = statistics.median(m["ops_per_cpu_s"] for m in res[c])
        p50 = statistics.median(m["p50"] for m in res[c])
        p99 = statistics.median(m["p99"] for m in res[c])
        peers = statistics.median(m["peers_cpu"] for m in res[c])
        name = "no peers" if c == "solo" else f"2 peers, {c}"
        if c != "solo" and "+sealed" not in c:
            name += " (sealed)" if args.secret else " (clear)"
        each = ", ".join(f"{m['ops']:,.0f}" for m in res[c])
        print(f"| {name} | {ops:,.0f} ({each}) | {paired(c, 'ops')} | {opc:,.0f} | {paired(c, 'ops_per_cpu_s')} | "
              f"{p50:.2f} / {p99:.2f} | {peers:.2f} |")
    sealed = [c for c in configs if c.endswith("+sealed") and c.removesuffix("+sealed") in res]
    if sealed:
        print("\nSealed against clear links of the same mode, per round (same round, alternating):")
        print("| mode | writes/s sealed / clear | node's ops per CPU-s sealed / clear | peers' CPU s sealed / clear |")
        print("|---|---|---|---|")
        for c in sealed:
            base = c.removesuffix("+sealed")

            def vs(key: str) -> str:
                rs = sorted(m[key] / max(b[key], 1e-9) for m, b in zip(res[c], res[base]))
                return f"{statistics.median(rs):.2f} [{rs[0]:.2f} .. {rs[-1]:.2f}]"

            print(f"| {base} | {vs('ops')} | {vs('ops_per_cpu_s')} | {vs('peers_cpu')} |")
    to = [m.get("timeouts", 0) for c in configs for m in res[c]]
    print(f"\nsync/majority writes that timed out: {sum(to)}")


def lag(args, log_dir: Path):
    nodes = group(args, "async", log_dir)
    try:
        probe = Probe(nodes[0].port, [n.port for n in nodes[1:]])
        probe.start()
        m = load(args, nodes[0].port, args.lag_time, log_dir / "lag.json")
        probe.stop_flag.set()
        probe.join()
        print(f"\nlag probe under load ({m['ops']:,.0f} writes/s on the node, async, 2 peers, {args.lag_time} s):")
        print("| peer | probes | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        for i, xs in enumerate(probe.lags):
            print(f"| peer {i + 1} | {len(xs)} | {pct(xs, 50):.2f} | {pct(xs, 99):.2f} | {max(xs):.2f} |")
        print(f"probes not seen within 2 s: {probe.missing}")
        s = nodes[0].repl()
        print("stats repl on the node after the run:", {k: v for k, v in s.items() if k.endswith("lag_ms")})
    finally:
        for n in nodes:
            n.stop()


def resync(args, log_dir: Path):
    value = 1024
    count = args.resync_mib * 1024 * 1024 // value
    mem = int(args.resync_mib * 1.4) + 128
    ports = [free_port(), free_port()]

    def node(i: int) -> Node:
        repl = ["--repl-listen", f"127.0.0.1:{ports[i]}", "--peers", f"127.0.0.1:{ports[1 - i]}",
                "--node-id", str(i + 1), *REPL_AUTH]
        return Node(args.bin_dir, "0,1", 2, mem, repl, log_dir, f"resync{i}")

    a = node(0)
    b = None
    try:
        t = time.monotonic()
        subprocess.run([str(args.bin_dir / "memcore-bench"), "-p", str(a.port), "-t", "2", "-c", "8",
                        "--ratio", "1:0", "-d", str(value), "-R", "--key-pattern", "P:P", "--key-minimum", "1",
                        "--key-maximum", str(count), "-n", "allkeys", "--hide-histogram"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = Mc(a.port)
        st, sa = c.stats(), c.stats("repl")
        c.close()
        items, nbytes = int(st["curr_items"]), int(st["bytes"])
        print(f"\nresync: filled the node with {items:,} items, {nbytes / 2**20:,.0f} MiB (stats bytes) "
              f"in {time.monotonic() - t:.1f} s; evictions {st.get('evictions')}")
        t0 = time.monotonic()
        b = node(1)
        started = time.monotonic() - t0
        linked = None
        while True:
            s = b.repl()
            if linked is None and s.get("peer0_state") in ("connected", "syncing"):
                linked = time.monotonic() - t0
            if s.get("repl_items") == sa["repl_items"] and s.get("repl_state") == "ok" \
                    and s.get("repl_digest") == sa["repl_digest"]:
                break
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"no resync after 600 s: {s}")
            time.sleep(0.05)
        took = time.monotonic() - t0
        print("| items | MiB | empty node up (s) | link up (s) | all items and digest equal (s) | MiB/s |")
        print("|---|---|---|---|---|---|")
        print(f"| {items:,} | {nbytes / 2**20:,.0f} | {started:.2f} | {linked or 0:.2f} | {took:.2f} | "
              f"{nbytes / 2**20 / took:,.0f} |")
    finally:
        for n in [a, b]:
            if n:
                n.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--time", type=float, default=5, help="seconds per throughput run")
    p.add_argument("--configs", default="solo,async,sync,majority",
                   help="throughput configurations: solo (no peers), async, sync, majority (two peers); "
                        "MODE+sealed: the same with --repl-secret (encrypted links) whatever --secret says")
    p.add_argument("--pipeline", type=int, default=1, help="requests in flight per connection")
    p.add_argument("--lag-time", type=float, default=10, help="seconds of load during the lag probe")
    p.add_argument("--resync-mib", type=int, default=1024)
    p.add_argument("--only", default="throughput,lag,resync")
    p.add_argument("--bin-dir", type=Path, default=Path(os.environ.get("MEMCORE_BIN_DIR", REPO / "target/release")))
    p.add_argument("--memtier", nargs="?", const=shutil.which("memtier_benchmark"), default=None,
                   help="use memtier_benchmark (from PATH, or this path) as the load generator")
    p.add_argument("--secret", action="store_true",
                   help="link the nodes with --repl-secret (sealed frames) instead of --repl-insecure")
    args = p.parse_args()
    if os.cpu_count() and os.cpu_count() < 2:
        sys.exit("needs 2 CPUs (node on CPU 0, generator and peers on CPU 1)")
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="memcore-replbench-") as d:
        log_dir = Path(d)
        secret = log_dir / "secret"
        secret.write_text("bench secret\n")
        SEALED_AUTH[:] = ["--repl-secret", str(secret)]
        if args.secret:
            REPL_AUTH[:] = SEALED_AUTH
        try:
            print(f"binaries: {args.bin_dir}; generator: {args.memtier or 'memcore-bench'}", flush=True)
            if "throughput" in parts:
                throughput(args, log_dir)
            if "lag" in parts:
                lag(args, log_dir)
            if "resync" in parts:
                resync(args, log_dir)
        finally:
            for proc in STARTED:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
