"""Shared helpers for the storage benchmarks in bench/storage/ (issue 4).

Python 3 standard library only.  Each benchmark script imports this module
to start memcached and memcore side by side (same flags, free loopback
ports, pinned with taskset), drive them with a load generator, read `stats`
and /proc/PID/status, and print one table per benchmark.

Servers:    $MEMCACHED (default: memcached on PATH) and $MEMCORE (or
            $MEMCORE_BIN; default target/release/memcore).  Both get
            -p PORT -l 127.0.0.1 -U 0 -t T -m MB, plus -u root when run as root.
Generators: the built-in memcore-bench ($MEMCORE_BENCH, default
            target/release/memcore-bench) by default, or memtier_benchmark
            ($MEMTIER, or on PATH) with --generator memtier; they take the same
            options.  memcore-bench is the default here because memtier cannot
            parse "SERVER_ERROR out of memory storing object", which memcached
            sends now and then when full (memtier then stops sending and hangs
            until the time limit kills it); memcore-bench counts such replies.
            The hit-ratio benchmark needs memcore-bench with --set-on-miss.

Every process a script starts is recorded and killed (by its PID only) when
the script exits, also on Ctrl-C, SIGTERM and the --max-seconds alarm.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1024 * 1024
PROG = os.path.basename(sys.argv[0])

_children = []  # Popen objects started by this script (servers)


def die(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(1)


def note(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _kill(p):
    if p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        note(f"pid {p.pid} ignored SIGTERM for 5 s; SIGKILL")
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def _cleanup():
    while _children:
        _kill(_children.pop())


def _on_signal(signum, _frame):
    if signum == signal.SIGALRM:
        print(f"{PROG}: time limit (--max-seconds) reached; stopping", file=sys.stderr)
        raise SystemExit(124)
    print(f"{PROG}: stopped by signal {signum}; stopping the servers it started", file=sys.stderr)
    raise SystemExit(128 + signum)


def install_cleanup(max_seconds):
    atexit.register(_cleanup)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, _on_signal)
    if max_seconds > 0:
        signal.alarm(int(max_seconds))


# --- command line -------------------------------------------------------------

def base_parser(desc, *, mb, threads=2, rounds=1, quick_rounds=1, quick_mb=None):
    """Options every benchmark takes; the script adds its own."""
    p = argparse.ArgumentParser(description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, 1 round (each benchmark under 40 s)")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds, each memcached then memcore (default {rounds}, --quick {quick_rounds})")
    p.add_argument("--mb", "-m", type=int, default=None,
                   help=f"-m for both servers (default {mb}{f', --quick {quick_mb}' if quick_mb else ''})")
    p.add_argument("--threads", "-t", type=int, default=threads, help=f"-t for both servers (default {threads})")
    p.add_argument("--generator", choices=["memtier", "builtin"], default="builtin",
                   help="builtin = memcore-bench (default; counts error replies) or memtier_benchmark "
                        "(hangs on memcached's SERVER_ERROR out of memory)")
    p.add_argument("--servers", default="memcached,memcore",
                   help="which servers to run, in this order per round (default memcached,memcore)")
    p.add_argument("--out", help="keep server and generator logs and results.json in this directory")
    p.add_argument("--max-seconds", type=int, default=600,
                   help="stop everything after this many seconds (default 600)")
    p.set_defaults(_rounds=rounds, _quick_rounds=quick_rounds, _mb=mb, _quick_mb=quick_mb or mb)
    return p


def finish_args(a):
    if a.rounds is None:
        a.rounds = a._quick_rounds if a.quick else a._rounds
    if a.mb is None:
        a.mb = a._quick_mb if a.quick else a._mb
    if a.rounds < 1 or a.mb < 1 or a.threads < 1:
        die("--rounds, --mb and --threads must be >= 1")
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in a.servers:
        if s not in ("memcached", "memcore"):
            die(f"unknown server {s!r} in --servers")
    install_cleanup(a.max_seconds)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        a.work = a.out
    else:
        a.work = tempfile.mkdtemp(prefix="bench-storage.")
        atexit.register(shutil.rmtree, a.work, True)
    return a


# --- binaries and CPUs ------------------------------------------------------------

def _exe(path):
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def _which(name):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        f = _exe(os.path.join(d, name))
        if f:
            return f
    return None


def server_binary(name):
    if name == "memcached":
        b = os.environ.get("MEMCACHED") or _which("memcached")
        if not _exe(b):
            die("memcached not found (apt-get install memcached, or set $MEMCACHED)")
        return b
    b = os.environ.get("MEMCORE") or os.environ.get("MEMCORE_BIN") or os.path.join(ROOT, "target/release/memcore")
    if not _exe(b):
        die(f"memcore binary {b} missing: cargo build --release, or set $MEMCORE")
    return b


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def cpu_layout(threads):
    """(server CPU list, generator CPU list, shared?) as in scripts/compare."""
    cpus = allowed_cpus()
    if threads < len(cpus):
        return cpus[:threads], cpus[threads:], False
    return cpus, cpus, True


def cpulist(cpus):
    return ",".join(str(c) for c in cpus)


# --- servers -------------------------------------------------------------------------

def _connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One memcached or memcore process on a free loopback port."""

    def __init__(self, name, a, cpus, tag, mb=None, extra=()):
        self.name, self.bin = name, server_binary(name)
        self.mb = a.mb if mb is None else mb
        self.threads, self.cpus, self.extra = a.threads, cpus, list(extra)
        self.log = os.path.join(a.work, f"{tag}.{name}.log")
        self.proc = None
        self.port = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        user = ["-u", "root"] if os.geteuid() == 0 else []
        for _ in range(5):
            port = _free_port()
            cmd = ["taskset", "-c", cpulist(self.cpus), self.bin, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                   "-t", str(self.threads), "-m", str(self.mb)] + user + self.extra
            with open(self.log, "ab") as log:
                log.write(("# " + " ".join(cmd) + "\n").encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            _children.append(self.proc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _connectable(port):
                    self.port = port
                    return self
                time.sleep(0.05)
            note(f"{self.name} did not come up on port {port}; see {self.log}")
            self.stop()
        die(f"could not start {self.name}")

    def stop(self):
        if self.proc is not None:
            _kill(self.proc)
            if self.proc in _children:
                _children.remove(self.proc)
            self.proc = None

    def check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            die(f"{self.name} exited (status {self.proc.returncode if self.proc else '?'}); log: {self.log}")

    def stats(self, arg=""):
        self.check_alive()
        return stats(self.port, arg)

    def mem(self):
        """(VmRSS, VmHWM) in bytes, from /proc/PID/status."""
        return proc_mem(self.pid)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def proc_mem(pid):
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def stats(port, arg=""):
    """`stats [arg]` as a dict of strings (numbers converted where they parse)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"stats {arg}".strip().encode() + b"\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed during stats")
            buf += chunk
            if buf.startswith(b"ERROR") or buf.startswith(b"CLIENT_ERROR"):
                raise OSError(f"stats {arg}: {buf.strip().decode(errors='replace')}")
    out = {}
    for line in buf.decode(errors="replace").split("\r\n"):
        f = line.split(" ", 2)
        if len(f) == 3 and f[0] == "STAT":
            v = f[2]
            try:
                v = int(v)
            except ValueError:
                try:
                    v = float(v)
                except ValueError:
                    pass
            out[f[1]] = v
    return out


def count_values(port, prefix, kmin, kmax, batch=100, window=16):
    """Get every key prefix+N, N in [kmin, kmax], in multi-gets of `batch` keys,
    `window` requests in flight.  Returns (items found, sum of value lengths)."""
    items = vbytes = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        r = s.makefile("rb", buffering=1 << 20)
        k = kmin
        while k <= kmax:
            reqs = []
            for _ in range(window):
                if k > kmax:
                    break
                hi = min(kmax, k + batch - 1)
                reqs.append("get " + " ".join(f"{prefix}{i}" for i in range(k, hi + 1)) + "\r\n")
                k = hi + 1
            s.sendall("".join(reqs).encode())
            for _ in reqs:
                while True:
                    line = r.readline()
                    if line == b"END\r\n":
                        break
                    if not line.startswith(b"VALUE "):
                        raise OSError(f"unexpected reply to get: {line[:80]!r}")
                    n = int(line.split()[3])
                    data = r.read(n + 2)
                    if len(data) != n + 2:
                        raise OSError("short read")
                    items += 1
                    vbytes += n
    return items, vbytes


# --- load generators ------------------------------------------------------------------

class Generator:
    """memtier_benchmark or memcore-bench, with memtier's option names."""

    def __init__(self, a, cpus, need_set_on_miss=False):
        self.cpus = cpus
        self.work = a.work
        memtier = _exe(os.environ.get("MEMTIER")) or _which("memtier_benchmark")
        builtin = _exe(os.environ.get("MEMCORE_BENCH") or os.path.join(ROOT, "target/release/memcore-bench"))
        if need_set_on_miss or a.generator == "builtin" or not memtier:
            if not builtin and memtier and not need_set_on_miss:
                note(f"memcore-bench not found; using memtier_benchmark {memtier} (it hangs on SERVER_ERROR)")
                self.kind, self.path = "memtier", memtier
                self.n = 0
                return
            if not builtin:
                if need_set_on_miss:
                    die("this benchmark needs memcore-bench (cargo build --release --bin memcore-bench, "
                        "or set $MEMCORE_BENCH)")
                die("no load generator: neither memtier_benchmark ($MEMTIER, PATH) nor memcore-bench "
                    "($MEMCORE_BENCH, target/release/memcore-bench)")
            if need_set_on_miss:
                h = subprocess.run([builtin, "--help"], capture_output=True, text=True, timeout=10).stdout
                if "--set-on-miss" not in h:
                    die(f"{builtin} has no --set-on-miss: rebuild it from this tree "
                        "(cargo build --release --bin memcore-bench) or set $MEMCORE_BENCH")
            elif a.generator == "memtier":
                note(f"memtier_benchmark not found; using the built-in generator {builtin}")
            self.kind, self.path = "builtin", builtin
        else:
            self.kind, self.path = "memtier", memtier
        self.n = 0

    def describe(self):
        return f"{self.kind} ({self.path})"

    def run(self, port, args, timeout, tag):
        """Run the generator with memtier-style `args` (list); returns
        (seconds, output).  Dies on failure or timeout."""
        args = list(args)
        if self.kind == "memtier":
            args = ["--protocol=memcache_text"] + args
        else:
            conv = []
            for x in args:
                if x.startswith("--expiry-range="):
                    lo, _, hi = x.split("=", 1)[1].partition("-")
                    if lo != hi:
                        die("memcore-bench takes one expiry, not a range")
                    conv += ["--expiry", lo]
                elif x == "--distinct-client-seed":
                    continue
                else:
                    conv.append(x)
            args = conv
        cmd = ["taskset", "-c", cpulist(self.cpus), self.path, "-s", "127.0.0.1", "-p", str(port)] + args
        self.n += 1
        log = os.path.join(self.work, f"{tag}.gen{self.n}.log")
        t0 = time.monotonic()
        with open(log, "wb") as f:
            f.write(("# " + " ".join(cmd) + "\n").encode())
            f.flush()
            try:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
            except subprocess.TimeoutExpired:
                die(f"generator ran past its {timeout} s limit (killed); log: {log}")
        dt = time.monotonic() - t0
        with open(log, "rb") as f:
            out = f.read().decode(errors="replace")
        if p.returncode != 0:
            tail = "\n".join(out.splitlines()[-5:])
            die(f"generator failed (status {p.returncode}); log: {log}\n{tail}")
        return dt, out

    @staticmethod
    def errors(out):
        """Error replies counted by memcore-bench (None for memtier)."""
        for line in out.splitlines():
            if line.startswith("Hit ratio ") and "; errors " in line:
                return int(line.split("; errors ")[1].split(",")[0])
        return None

    def fill(self, port, kmin, kmax, tag, *, size=None, size_range=None, prefix="memtier-", expiry=0,
             threads=1, conns=4, pipeline=32, timeout=120):
        """Set every key prefix+N, N in [kmin, kmax], once (sequential slices, one
        per connection), with random (incompressible) values."""
        args = ["-t", str(threads), "-c", str(conns), f"--pipeline={pipeline}", "--ratio=1:0", "--key-pattern=P:P",
                "-n", "allkeys", f"--key-minimum={kmin}", f"--key-maximum={kmax}", f"--key-prefix={prefix}",
                "--random-data", "--hide-histogram"]
        if size_range:
            args.append(f"--data-size-range={size_range[0]}-{size_range[1]}")
        else:
            args += ["-d", str(size)]
        if expiry:
            args.append(f"--expiry-range={expiry}-{expiry}")
        return self.run(port, args, timeout, tag)


# --- reporting ---------------------------------------------------------------------------

def header(title, a, gen=None, extra=()):
    scpu, gcpu, shared = a.layout
    print(f"{PROG}: {title}")
    print(f"  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.uname().nodename}, "
          f"{os.cpu_count()} CPU(s), kernel {os.uname().release}, load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    for s in a.servers:
        b = server_binary(s)
        v = subprocess.run([b, "-V"], capture_output=True, text=True, timeout=10).stdout.strip() or "?"
        built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(b)))
        print(f"  {s + ':':10} {b} ({v}; file dated {built})")
    if gen:
        print(f"  generator: {gen.describe()}, on CPU(s) {cpulist(gcpu)}")
    print(f"  servers: -t {a.threads} -m {a.mb} -U 0 -l 127.0.0.1{' -u root' if os.geteuid() == 0 else ''}, "
          f"pinned to CPU(s) {cpulist(scpu)}; {a.rounds} round(s), alternating {', '.join(a.servers)}")
    if shared:
        print("  NOTE: the load generator shares the servers' CPUs (fine here: these benchmarks count items, "
              "bytes and misses, not speed)")
    for line in extra:
        print(f"  {line}")
    print(flush=True)


def setup(a, need_set_on_miss=False, need_gen=True):
    a.layout = cpu_layout(a.threads)
    return Generator(a, a.layout[1], need_set_on_miss) if need_gen else None


def _fmt(x, d):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if d == 0:
        return f"{x:,.0f}"
    return f"{x:,.{d}f}"


def summary(vals, d):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if all(isinstance(v, bool) for v in vals):
        n = sum(vals)
        return "yes" if n == len(vals) else ("**NO**" if n == 0 else f"**NO** ({len(vals) - n} of {len(vals)})")
    if isinstance(vals[0], str):
        return " ".join(vals)
    if len(vals) == 1:
        return _fmt(vals[0], d)
    return f"{_fmt(statistics.median(vals), d)} [{_fmt(min(vals), d)} .. {_fmt(max(vals), d)}]"


def ratios(results, key):
    """memcore/memcached per round (adjacent runs)."""
    out = []
    for ra, rb in zip(results.get("memcached", []), results.get("memcore", [])):
        x, y = ra.get(key), rb.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool) and x:
            out.append(y / x)
    return out


def table(title, cols, results, servers):
    """cols: (header, key, decimals, ratio?) tuples; results: server -> list of
    per-round dicts.  Prints a markdown table: median [min .. max] per server
    and the memcore/memcached ratio per round."""
    print()
    print(f"#### {title}")
    print()
    print("| | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for s in servers:
        rs = results.get(s, [])
        print(f"| {s} | " + " | ".join(summary([r.get(c[1]) for r in rs], c[2]) for c in cols) + " |")
    if "memcached" in results and "memcore" in results:
        cells = []
        for c in cols:
            rr = ratios(results, c[1]) if c[3] else []
            cells.append(summary(rr, 3) if rr else "")
        print("| memcore/memcached | " + " | ".join(cells) + " |")
    print(flush=True)


def save(a, name, results, params):
    if a.out:
        with open(os.path.join(a.out, f"{name}.results.json"), "w") as f:
            json.dump({"benchmark": name, "params": params, "results": results}, f, indent=1)
        print(f"raw results: {os.path.join(a.out, name + '.results.json')}; logs in {a.out}")


def rss_bound(mb):
    """The issue's bound on RSS: -m x 1.05 + 32 MiB, in bytes."""
    return int(mb * MIB * 1.05 + 32 * MIB)


def mib(x):
    return x / MIB
