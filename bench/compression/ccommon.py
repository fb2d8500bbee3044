"""Shared helpers for the compression benchmarks in bench/compression/ (issue 7).

Python 3 standard library only.  Builds on bench/storage/common.py (servers
on free loopback ports pinned with taskset, the load generator, stats,
/proc, cleanup of every process started, by PID) and adds:

* variants: a server with extra flags, e.g. "memcore --compress off" or
  "memcore --compress-dict auto"; a benchmark runs each variant on a fresh
  server, round after round (A, B, C, A, B, C, ...), and reports ratios of
  adjacent runs (same round) against baseline variants;
* JSON values from memcore-bench --data-json (seeded realistic user profiles
  and product listings; the same bytes for a key on every server and run);
* server CPU seconds (utime + stime of all its threads, /proc/PID/stat), the
  generator's own CPU (getrusage of children) and what everything else on
  the machine used meanwhile (/proc/stat), as scripts/compare does.

Environment as for bench/storage: MEMCORE (or MEMCORE_BIN), MEMCACHED,
MEMCORE_BENCH.
"""

import argparse
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "storage"))
import common as C  # noqa: E402  (bench/storage/common.py)

die, note, MIB = C.die, C.note, C.MIB
HZ = os.sysconf("SC_CLK_TCK")


class Variant:
    """One server configuration: memcached, or memcore with extra flags."""

    def __init__(self, spec):
        words = shlex.split(spec)
        if not words or words[0] not in ("memcached", "memcore"):
            die(f"variant {spec!r} must start with memcached or memcore")
        self.server, self.flags = words[0], words[1:]
        self.label = " ".join(words)

    def __repr__(self):
        return self.label


def parser(desc, *, mb, threads, rounds, quick_rounds, variants, baselines):
    p = argparse.ArgumentParser(description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds, each running every variant once (default {rounds}, --quick {quick_rounds})")
    p.add_argument("--mb", "-m", type=int, default=mb, help=f"-m for every server (default {mb})")
    p.add_argument("--threads", "-t", type=int, default=threads, help=f"-t for every server (default {threads})")
    p.add_argument("--variants", default=";".join(variants),
                   help="servers to run per round, ';'-separated, each 'memcached' or 'memcore FLAGS...' "
                        f"(default: {'; '.join(variants)})")
    p.add_argument("--baselines", default=";".join(baselines),
                   help="variants the others are divided by, per round ('; '-separated; "
                        f"default: {'; '.join(baselines)})")
    p.add_argument("--kind", default="mix", choices=["user", "product", "mix"],
                   help="JSON records: user profiles, product listings or half each (default mix)")
    p.add_argument("--data-seed", type=int, default=1, help="seed of the JSON values (default 1)")
    p.add_argument("--out", help="keep server and generator logs and <name>.results.json in this directory")
    p.add_argument("--max-seconds", type=int, default=170,
                   help="stop everything after this many seconds (default 170)")
    p.set_defaults(_rounds=rounds, _quick_rounds=quick_rounds)
    return p


def finish(a):
    if a.rounds is None:
        a.rounds = a._quick_rounds if a.quick else a._rounds
    if a.rounds < 1 or a.mb < 1 or a.threads < 1:
        die("--rounds, --mb and --threads must be >= 1")
    a.variants = [Variant(s) for s in a.variants.split(";") if s.strip()]
    labels = [v.label for v in a.variants]
    if len(set(labels)) != len(labels):
        die("two variants are the same")
    a.baselines = [" ".join(shlex.split(s)) for s in a.baselines.split(";") if s.strip()]
    a.baselines = [b for b in a.baselines if b in labels]
    a.servers = sorted({v.server for v in a.variants}, key=["memcached", "memcore"].index)
    a.generator = "builtin"
    # bench/storage/common.py's cleanup, work directory and checks.
    servers = a.servers
    a.servers = ",".join(servers)
    a = C.finish_args(a)
    a.layout = C.cpu_layout(a.threads)
    gen = C.Generator(a, a.layout[1])
    h = subprocess.run([gen.path, "--help"], capture_output=True, text=True, timeout=10).stdout
    if "--data-json" not in h:
        die(f"{gen.path} has no --data-json: rebuild it from this tree (cargo build --release) or set $MEMCORE_BENCH")
    return a, gen


def header(title, a, gen, extra=()):
    scpu, gcpu, shared = a.layout
    print(f"{C.PROG}: {title}")
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    print(f"  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.uname().nodename}, "
          f"{os.cpu_count()} CPU(s) \"{cpu_model}\", kernel {os.uname().release}, load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    commit = subprocess.run(["git", "-C", C.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    for s in a.servers:
        b = C.server_binary(s)
        v = subprocess.run([b, "-V"], capture_output=True, text=True, timeout=10).stdout.strip() or "?"
        built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(b)))
        print(f"  {s + ':':10} {b} ({v}; file dated {built}; repository at {commit})")
    print(f"  generator: {gen.describe()}, on CPU(s) {C.cpulist(gcpu)}")
    print(f"  servers: -t {a.threads} -m {a.mb} -U 0 -l 127.0.0.1{' -u root' if os.geteuid() == 0 else ''}, "
          f"pinned to CPU(s) {C.cpulist(scpu)}; {a.rounds} round(s), each running in turn:")
    for v in a.variants:
        print(f"    {v.label}")
    if shared:
        print("  NOTE: the load generator shares the servers' CPUs")
    for line in extra:
        print(f"  {line}")
    print(flush=True)


def start(a, v, tag, mb=None):
    return C.Server(v.server, a, a.layout[0], tag, mb=mb, extra=v.flags).start()


# --- CPU accounting -------------------------------------------------------------

def proc_cpu(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def machine_busy():
    with open("/proc/stat") as f:
        v = f.readline().split()
    # user nice system (idle iowait) irq softirq steal
    return (int(v[1]) + int(v[2]) + int(v[3]) + int(v[6]) + int(v[7]) + int(v[8])) / HZ


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def threads_cpu(pid):
    """CPU seconds of the live threads of `pid`, in nanoseconds' precision
    (/proc/PID/task/*/schedstat); threads that have ended are not counted."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


class Meter:
    """Server CPU, generator CPU and the rest of the machine over a span.
    precise: server CPU from the threads' schedstat (ns) instead of
    /proc/PID/stat (ticks of 10 ms, but also counting ended threads)."""

    def __init__(self, pid, precise=False):
        self.pid = pid
        self.cpu = threads_cpu if precise else proc_cpu
        self.s0, self.g0, self.m0, self.t0 = self.cpu(pid), children_cpu(), machine_busy(), time.monotonic()

    def stop(self):
        s1, g1, m1 = self.cpu(self.pid), children_cpu(), machine_busy()
        self.wall = time.monotonic() - self.t0
        self.server = s1 - self.s0
        self.gen = g1 - self.g0
        self.other = max(0.0, (m1 - self.m0) - self.server - self.gen)
        return self


# --- generator ------------------------------------------------------------------

def json_args(a, size=None, size_range=None):
    args = [f"--data-json={a.kind}", f"--data-seed={a.data_seed}"]
    if size_range:
        args.append(f"--data-size-range={size_range[0]}-{size_range[1]}")
    else:
        args += ["-d", str(size)]
    return args


def fill(gen, a, port, kmin, kmax, tag, *, size=None, size_range=None, prefix="memtier-", conns=4, pipeline=32,
         timeout=120):
    """Set every key prefix+N, N in [kmin, kmax], once, with JSON values."""
    args = ["-t", "1", "-c", str(conns), f"--pipeline={pipeline}", "--ratio=1:0", "--key-pattern=P:P",
            "-n", "allkeys", f"--key-minimum={kmin}", f"--key-maximum={kmax}", f"--key-prefix={prefix}",
            "--hide-histogram"] + json_args(a, size, size_range)
    return gen.run(port, args, timeout, tag)


def totals(out):
    """(ops/s, p50 ms, p99 ms) from memcore-bench's Totals line."""
    for line in out.splitlines():
        if line.startswith("Totals"):
            f = line.split()
            return float(f[1]), float(f[5]), float(f[6])
    die("no Totals line in the generator output")


def expected_values(a, kmin, n, size=None, size_range=None, gen=None):
    """The values memcore-bench sends for keys kmin .. kmin+n-1."""
    cmd = [gen.path, f"--key-minimum={kmin}", f"--print-values={n}"] + json_args(a, size, size_range)
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if p.returncode != 0:
        die(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace')[-300:]}")
    return p.stdout.split(b"\n")[:n]


def check_values(port, keys_values, prefix="memtier-"):
    """get each key; returns (hits, mismatches).  A miss is fine (evicted)."""
    hits = bad = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        r = s.makefile("rb")
        for k, want in keys_values:
            s.sendall(f"get {prefix}{k}\r\n".encode())
            line = r.readline()
            if line == b"END\r\n":
                continue
            if not line.startswith(b"VALUE "):
                raise OSError(f"unexpected reply to get: {line[:80]!r}")
            n = int(line.split()[3])
            data = r.read(n + 2)[:-2]
            if r.readline() != b"END\r\n":
                raise OSError("no END after VALUE")
            hits += 1
            if data != want:
                bad += 1
    return hits, bad


def stat(st, key, default=None):
    v = st.get(key, default)
    return v if isinstance(v, (int, float)) else default


# --- reporting ------------------------------------------------------------------

def summary(vals, d):
    return C.summary(vals, d)


def table(title, cols, res, a):
    """cols: (header, key, decimals, ratio?) tuples.  res: label -> list of
    per-round dicts.  One row per variant (median [min .. max] over the
    rounds), then one row per (variant, baseline) pair with the per-round
    ratios of the columns marked ratio?."""
    print()
    print(f"#### {title}")
    print()
    print("| | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for v in a.variants:
        rs = res.get(v.label, [])
        print(f"| {v.label} | " + " | ".join(summary([r.get(c[1]) for r in rs], c[2]) for c in cols) + " |")
    for b in a.baselines:
        for v in a.variants:
            if v.label == b:
                continue
            cells = []
            for c in cols:
                rr = ratios(res, v.label, b, c[1]) if c[3] else []
                cells.append(summary(rr, 3) if rr else "")
            if any(cells):
                print(f"| {v.label} / {b} | " + " | ".join(cells) + " |")
    print(flush=True)


def ratios(res, num, den, key):
    out = []
    for x, y in zip(res.get(num, []), res.get(den, [])):
        p, q = x.get(key), y.get(key)
        if isinstance(p, (int, float)) and isinstance(q, (int, float)) and not isinstance(p, bool) and q:
            out.append(p / q)
    return out


def median_ratio(res, num, den, key):
    rr = ratios(res, num, den, key)
    return statistics.median(rr) if rr else None


def save(a, name, res, params):
    C.save(a, name, res, params)
