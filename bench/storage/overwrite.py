#!/usr/bin/env python3
"""overwrite: live items, dead bytes and get misses when keys are written
again (issue 12, "Overwrites must not waste memory").

Load: memcore-bench, key popularity Zipf (alpha 0.99) for sets and gets
alike, at a set:get ratio (--ratio, default 1:10; 1:1 for the write-heavy
mix), over a key space KEYS_X times what -m holds (KEYS = KEYS_X x MB MiB /
(value size + 64), default 8x), random (incompressible) values of --size
bytes or uniform in --size-range.  Gets that miss are not followed by a set
(every write is part of the mix, so hot keys are overwritten most).
Optional: --expiry S gives every set a TTL (the TTL-heavy mix), and
--deletes D (ratio S:G:D) deletes Zipf-chosen keys (the delete-heavy mix).

Per round, memcached then memcore, each on a fresh server (-t 1 -m 64 by
default):
  fill:     WARMUP requests of the same mix, not measured; WARMUP is
            PASSES x (what memcached holds) x (S+G+D)/S, so that the sets
            alone write the memory over PASSES times;
  measured: REQUESTS requests in two halves, `stats` before, between, after.
Reported: curr_items and bytes at the end, get miss ratio = delta get_misses
/ delta cmd_get over the measured part, memcore's engine_dead_bytes /
engine_memory (sampled at the end of each half: "steady state" when both
agree), RSS.  Same seeds for both servers in a round.

Targets (issue 12, overwrite-heavy mixes): memcore curr_items >= 1.4x
memcached's, miss ratio <= 0.85x, dead bytes <= 15% of engine memory.

Full: -m 64, 1 round, PASSES 4, REQUESTS = WARMUP / 2.  --quick: -m 16,
PASSES 3.
"""
import os
import sys

import common as C


def cpu_seconds(pid):
    """utime + stime of every thread of the process (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mix(gen, srv, a, n, seed, tag):
    per_conn = max(1, n // a.conns)
    ratio = f"{a.sets}:{a.gets}" + (f":{a.deletes}" if a.deletes else "")
    args = ["-t", "1", "-c", str(a.conns), f"--pipeline={a.pipeline}", f"--ratio={ratio}", "--key-pattern=Z",
            f"--zipf-alpha={a.alpha}", "--key-minimum=1", f"--key-maximum={a.keys}", "--random-data",
            "-n", str(per_conn), f"--seed={seed}", "--hide-histogram"]
    if a.size_range:
        args.append(f"--data-size-range={a.size_range}")
    else:
        args += ["-d", str(a.size)]
    if a.expiry:
        args.append(f"--expiry-range={a.expiry}-{a.expiry}")
    dt, out = gen.run(srv.port, args, timeout=a.max_seconds, tag=tag)
    return dt, out


def latencies(out):
    """(p99, p99.9) in ms of the generator's Sets and Totals rows."""
    got = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 9 and f[0] in ("Sets", "Totals"):
            got[f[0]] = (float(f[6]), float(f[7]))
    return got


def main():
    p = C.base_parser(__doc__, mb=64, threads=1, rounds=1, quick_mb=16)
    p.add_argument("--ratio", default="1:10", help="sets:gets (default 1:10)")
    p.add_argument("--deletes", type=int, default=0, help="deletes per S+G requests (default 0)")
    p.add_argument("--size", type=int, default=200, help="value bytes (default 200)")
    p.add_argument("--size-range", help="value bytes uniform in A-B (overrides --size)")
    p.add_argument("--keys-x", type=float, default=8, help="key space / what -m holds (default 8)")
    p.add_argument("--keys", type=int, help="key space (overrides --keys-x)")
    p.add_argument("--alpha", type=float, default=0.99, help="Zipf exponent (default 0.99)")
    p.add_argument("--expiry", type=int, default=0, help="TTL of every set in seconds (default 0: none)")
    p.add_argument("--passes", type=float, help="warm-up: sets write -m this many times (default 4, --quick 3)")
    p.add_argument("--requests", type=int, help="measured requests (default: half the warm-up)")
    p.add_argument("--conns", type=int, default=8, help="connections (default 8)")
    p.add_argument("--pipeline", type=int, default=16, help="requests in flight per connection (default 16)")
    p.add_argument("--seed", type=int, default=1212, help="base seed (round r uses seed+10r, +1, +2)")
    a = C.finish_args(p.parse_args())
    s, _, g = a.ratio.partition(":")
    a.sets, a.gets = int(s), int(g or 0)
    if a.sets < 1:
        C.die("--ratio needs sets")
    if a.size_range:
        lo, hi = (int(x) for x in a.size_range.split("-"))
        mean = (lo + hi) / 2
    else:
        mean = a.size
    # What memcached holds, roughly: its item is ~56 bytes of header, the key
    # and the value, in a slab chunk up to 25% larger.
    held = a.mb * C.MIB / (mean + 64)
    a.keys = a.keys or int(a.keys_x * held)
    a.passes = a.passes or (3 if a.quick else 4)
    period = a.sets + a.gets + a.deletes
    a.warmup = int(a.passes * held * period / a.sets)
    a.requests = a.requests or a.warmup // 2
    gen = C.setup(a)
    mix = (f"Zipf {a.alpha} sets:gets{':deletes' if a.deletes else ''} {a.ratio}{f':{a.deletes}' if a.deletes else ''}"
           f" over {a.keys:,} keys ({a.keys_x if not a.keys else a.keys / held:.1f}x what -m holds), "
           f"{a.size_range or a.size} B random values{f', TTL {a.expiry} s' if a.expiry else ''}")
    C.header("overwrites", a, gen, [
        f"each run: {mix}; {a.warmup:,} warm-up requests, then {a.requests:,} measured in two halves",
        f"generator: -t 1 -c {a.conns} --pipeline {a.pipeline}"])
    res = {sv: [] for sv in a.servers}
    for r in range(1, a.rounds + 1):
        seed = a.seed + 10 * r
        for name in a.servers:
            tag = f"r{r}.{name}"
            with C.Server(name, a, a.layout[0], f"r{r}") as srv:
                run_mix(gen, srv, a, a.warmup, seed, tag)
                s0 = srv.stats()
                c0 = cpu_seconds(srv.pid)
                t1, o1 = run_mix(gen, srv, a, a.requests // 2, seed + 1, tag)
                s1 = srv.stats()
                t2, o2 = run_mix(gen, srv, a, a.requests - a.requests // 2, seed + 2, tag)
                s2 = srv.stats()
                c2 = cpu_seconds(srv.pid)
                rss, hwm = srv.mem()

            def miss(x, y):
                n = y["cmd_get"] - x["cmd_get"]
                return (y["get_misses"] - x["get_misses"]) / n if n else None

            def dead(x):
                return x["engine_dead_bytes"] / x["engine_memory"] if x.get("engine_memory") else None

            row = {
                "miss": miss(s0, s2), "miss_h1": miss(s0, s1), "miss_h2": miss(s1, s2),
                "curr_items": s2["curr_items"], "bytes_mib": C.mib(s2["bytes"]),
                "dead": dead(s2), "dead_h1": dead(s1),
                "evictions": s2.get("evictions"),
                "rss_mib": C.mib(rss), "hwm_mib": C.mib(hwm),
                "ops_s": (s2["cmd_get"] - s0["cmd_get"] + s2["cmd_set"] - s0["cmd_set"]) / (t1 + t2),
                "ops_cpu": (s2["cmd_get"] - s0["cmd_get"] + s2["cmd_set"] - s0["cmd_set"]) / max(c2 - c0, 1e-9),
                "compacted_items": s2.get("engine_compacted_items"),
            }
            lat = [latencies(o1), latencies(o2)]
            for k, name_ in (("Sets", "set"), ("Totals", "all")):
                row[f"{name_}_p99"] = max(x[k][0] for x in lat if k in x) if all(k in x for x in lat) else None
                row[f"{name_}_p999"] = max(x[k][1] for x in lat if k in x) if all(k in x for x in lat) else None
            res[name].append(row)
            d = f"  dead {row['dead']:.3f} (half 1: {row['dead_h1']:.3f}) of engine memory" if row["dead"] is not None else ""
            print(f"  round {r} {name:9}  miss ratio {row['miss']:.4f} (halves {row['miss_h1']:.4f} "
                  f"{row['miss_h2']:.4f})  curr_items {row['curr_items']:,}  bytes {row['bytes_mib']:.1f} MiB{d}  "
                  f"evictions {row['evictions']:,}  RSS {row['rss_mib']:.1f} MiB  {row['ops_s']:,.0f} ops/s  "
                  f"{row['ops_cpu']:,.0f} ops per server CPU-s  p99 {row['all_p99']} ms (sets {row['set_p99']}), "
                  f"p99.9 {row['all_p999']} ms",
                  flush=True)
    C.table(f"overwrites: {mix}, -m {a.mb} -t {a.threads}", [
        ("**curr_items**", "curr_items", 0, True),
        ("**get miss ratio**", "miss", 4, True),
        ("1st half", "miss_h1", 4, True),
        ("2nd half", "miss_h2", 4, True),
        ("bytes MiB", "bytes_mib", 1, True),
        ("**dead / engine memory**", "dead", 3, False),
        ("evictions", "evictions", 0, True),
        ("RSS MiB", "rss_mib", 1, True),
        ("ops/s (info)", "ops_s", 0, True),
        ("ops per server CPU-s", "ops_cpu", 0, True),
        ("p99 ms, all (worse half)", "all_p99", 3, True),
        ("p99.9 ms, all", "all_p999", 3, True),
        ("p99 ms, sets", "set_p99", 3, True),
        ("items moved by compaction", "compacted_items", 0, False),
    ], res, a.servers)
    ri, rm = C.ratios(res, "curr_items"), C.ratios(res, "miss")
    if ri and rm:
        mi, mm = sorted(ri)[len(ri) // 2], sorted(rm)[len(rm) // 2]
        dd = [x["dead"] for x in res.get("memcore", []) if x["dead"] is not None]
        print(f"targets: curr_items >= 1.4x memcached's: {mi:.3f}x -> {'met' if mi >= 1.4 else 'NOT met'}; "
              f"miss ratio <= 0.85x: {mm:.3f}x -> {'met' if mm <= 0.85 else 'NOT met'}"
              + (f"; dead <= 15%: {max(dd):.3f} -> {'met' if max(dd) <= 0.15 else 'NOT met'}" if dd else ""))
    C.save(a, "overwrite", res, {k: getattr(a, k) for k in ("ratio", "deletes", "size", "size_range", "keys",
                                                             "alpha", "expiry", "warmup", "requests", "conns",
                                                             "pipeline", "seed", "mb", "threads")})


if __name__ == "__main__":
    sys.exit(main())
