#!/usr/bin/env python3
"""throughput: ops/s and server CPU with compression on and off (issue 7).

One server core (-t 1, pinned to the first CPU) and the generator on the
other CPU(s), as scripts/compare does.  Per round, each variant in turn on a
fresh server (-m 1024): prefill KEYS keys (memtier-1 .. memtier-KEYS) with
SIZE-byte JSON values (memcore-bench --data-json, -c 4 --pipeline 32), then
measure for --time seconds:

  get-heavy   1 set : 10 gets, 50 connections, no pipelining, uniform keys
              (memtier's and scripts/compare's get-heavy profile; every get hits)
  set-only    sets only, 50 connections, no pipelining, uniform keys

Per run: ops/s and p50/p99 from the generator's Totals line, the server's
CPU seconds over the measured pass (utime + stime of all threads,
/proc/PID/stat), ops per server CPU-second, the generator's own CPU seconds
(near --time means the generator was the limit) and what everything else on
the machine used meanwhile ("other CPU-s"; high values mean a disturbed run).

Target (issue 7): get-heavy ops/s with compression on >= 75% of off, on 2 KiB
values; the set cost is measured and stated.

Full: 3 rounds x 5 s per workload and variant (about 1 min per workload with
three variants).  --quick: 1 round x 3 s.
"""
import sys

import ccommon as X

WORKLOADS = {
    "get-heavy": ["-c", "50", "--ratio=1:10"],
    "set-only": ["-c", "50", "--ratio=1:0"],
    "get-only": ["-c", "50", "--ratio=0:1"],
}


def main():
    p = X.parser(__doc__, mb=1024, threads=1, rounds=3, quick_rounds=1,
                 variants=["memcore --compress off", "memcore", "memcached"],
                 baselines=["memcore --compress off", "memcached"])
    p.add_argument("--workloads", default="get-heavy,set-only",
                   help=f"comma-separated, from {', '.join(WORKLOADS)} (default get-heavy,set-only)")
    p.add_argument("--size", type=int, default=2048, help="value bytes (default 2048)")
    p.add_argument("--keys", type=int, default=50_000, help="key range, prefilled (default 50000)")
    p.add_argument("--time", type=int, default=None, help="measured seconds per run (default 5, --quick 3)")
    a, gen = X.finish(p.parse_args())
    a.time = a.time or (3 if a.quick else 5)
    wls = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for w in wls:
        if w not in WORKLOADS:
            X.die(f"unknown workload {w!r}")
    X.header("throughput", a, gen, [
        f"each run: fresh server, prefill keys 1..{a.keys:,} with {a.size}-byte JSON ({a.kind}), then "
        f"{a.time} s of the workload: {'; '.join(w + ' = ' + ' '.join(WORKLOADS[w]) for w in wls)}"])
    all_res = {}
    for w in wls:
        res = {v.label: [] for v in a.variants}
        for r in range(1, a.rounds + 1):
            for v in a.variants:
                with X.start(a, v, f"{w}.r{r}") as srv:
                    X.fill(gen, a, srv.port, 1, a.keys, f"{w}.r{r}.prefill", size=a.size, conns=1)
                    args = ["-t", "1", *WORKLOADS[w], f"--key-minimum=1", f"--key-maximum={a.keys}",
                            f"--test-time={a.time}", "--hide-histogram"] + X.json_args(a, a.size)
                    m = X.Meter(srv.pid)
                    _, out = gen.run(srv.port, args, a.time + 60, f"{w}.r{r}")
                    m.stop()
                    st = srv.stats()
                ops, p50, p99 = X.totals(out)
                gets, hits = X.stat(st, "cmd_get", 0), X.stat(st, "get_hits", 0)
                row = {
                    "ops_s": ops, "p50_ms": p50, "p99_ms": p99, "cpu_s": m.server,
                    "cpu_pct": 100 * m.server / a.time,
                    "ops_per_cpu_s": ops * a.time / m.server if m.server else None,
                    "us_per_op": 1e6 * m.server / (ops * a.time) if ops else None,
                    "gen_cpu_s": m.gen, "other_cpu_s": m.other,
                    "hit_pct": 100 * hits / gets if gets else None,
                    "compress_ratio": X.stat(st, "compress_ratio"),
                    "errors": gen.errors(out),
                }
                res[v.label].append(row)
                print(f"  {w:9} round {r} {v.label:38} {ops:9,.0f} ops/s  p50 {p50:.3f}  p99 {p99:.3f} ms  "
                      f"server CPU {m.server:5.2f} s ({row['cpu_pct']:3.0f}%)  "
                      f"{row['ops_per_cpu_s'] or 0:9,.0f} ops/CPU-s  generator {m.gen:4.2f} s  "
                      f"other {m.other:4.2f} s  hits {row['hit_pct'] or 0:.1f}%", flush=True)
        X.table(f"{w}: {' '.join(WORKLOADS[w])}, {a.size}-byte JSON ({a.kind}), {a.keys:,} keys, -t {a.threads}, "
                f"{a.rounds} x {a.time} s", [
                    ("ops/s", "ops_s", 0, True),
                    ("p50 ms", "p50_ms", 3, True),
                    ("p99 ms", "p99_ms", 3, True),
                    ("server CPU %", "cpu_pct", 0, False),
                    ("ops per server CPU-s", "ops_per_cpu_s", 0, True),
                    ("server CPU us/op", "us_per_op", 2, True),
                    ("generator CPU-s", "gen_cpu_s", 2, False),
                    ("other CPU-s", "other_cpu_s", 2, False),
                    ("get hits %", "hit_pct", 1, False),
                    ("compress_ratio", "compress_ratio", 2, False),
                ], res, a)
        for b in a.baselines:
            for v in a.variants:
                if v.label != b:
                    m1 = X.median_ratio(res, v.label, b, "ops_s")
                    m2 = X.median_ratio(res, v.label, b, "ops_per_cpu_s")
                    if m1 is not None:
                        print(f"{w}: {v.label} / {b}: ops/s {m1:.3f}x, ops per server CPU-s {m2:.3f}x")
        all_res[w] = res
    X.save(a, "throughput", all_res, {"keys": a.keys, "size": a.size, "kind": a.kind, "time": a.time,
                                      "mb": a.mb, "threads": a.threads, "workloads": wls,
                                      "variants": [v.label for v in a.variants]})


if __name__ == "__main__":
    sys.exit(main())
