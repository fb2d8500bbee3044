#!/usr/bin/env python3
"""overwrite-rss: RSS after an overwrite loop with far more memory than live
data (issue 12: "memory tracks live data"; target: memcore's RSS <= 1.3x
memcached's).

Per round, memcached then memcore, each on a fresh server (-t 2 -m 1024 by
default), for each case: KEYS keys of SIZE random bytes, set over and over
with uniformly random keys (generator -c 4 --pipeline 16 --ratio 1:0
--key-pattern R) for SECONDS seconds; then VmRSS, curr_items, bytes and,
for memcore, engine_memory and engine_dead_bytes.

Cases: 100,000 x 100 B and 10,000 x 16 KiB (the issue's), 15 s each.
--quick: 5 s each.
"""
import sys

import common as C


def main():
    p = C.base_parser(__doc__, mb=1024, rounds=1)
    p.add_argument("--seconds", type=int, help="overwrite loop length per case (default 15, --quick 5)")
    a = C.finish_args(p.parse_args())
    a.seconds = a.seconds or (5 if a.quick else 15)
    cases = [(100_000, 100), (10_000, 16384)]
    gen = C.setup(a)
    C.header("RSS after an overwrite loop", a, gen, [
        f"cases: {', '.join(f'{k:,} keys x {s} B' for k, s in cases)}; each set {a.seconds} s with random keys"])
    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        for name in a.servers:
            row = {}
            for keys, size in cases:
                tag = f"r{r}.{size}"
                with C.Server(name, a, a.layout[0], tag) as srv:
                    args = ["-t", "1", "-c", "4", "--pipeline=16", "--ratio=1:0", "--key-pattern=R",
                            "--key-minimum=1", f"--key-maximum={keys}", "--random-data", "-d", str(size),
                            f"--test-time={a.seconds}", "--hide-histogram"]
                    gen.run(srv.port, args, timeout=a.seconds + 60, tag=f"{tag}.{name}")
                    st = srv.stats()
                    rss, hwm = srv.mem()
                k = f"{size}"
                row[f"rss_{k}"] = C.mib(rss)
                row[f"hwm_{k}"] = C.mib(hwm)
                row[f"items_{k}"] = st["curr_items"]
                row[f"bytes_{k}"] = C.mib(st["bytes"])
                row[f"engine_{k}"] = C.mib(st["engine_memory"]) if "engine_memory" in st else None
                row[f"dead_{k}"] = st["engine_dead_bytes"] / st["engine_memory"] if "engine_memory" in st else None
                print(f"  round {r} {name:9} {keys:,} x {size} B: RSS {C.mib(rss):.1f} MiB (peak {C.mib(hwm):.1f})  "
                      f"curr_items {st['curr_items']:,}  bytes {C.mib(st['bytes']):.1f} MiB"
                      + (f"  engine_memory {row[f'engine_{k}']:.1f} MiB, dead {row[f'dead_{k}']:.3f}"
                         if row[f"engine_{k}"] is not None else ""), flush=True)
            res[name].append(row)
    for keys, size in cases:
        k = f"{size}"
        C.table(f"overwrite loop: {keys:,} keys x {size} B, {a.seconds} s, -m {a.mb} -t {a.threads}", [
            ("**RSS MiB**", f"rss_{k}", 1, True),
            ("peak RSS MiB", f"hwm_{k}", 1, True),
            ("curr_items", f"items_{k}", 0, True),
            ("stats bytes MiB", f"bytes_{k}", 1, True),
            ("engine_memory MiB", f"engine_{k}", 1, False),
            ("dead / engine memory", f"dead_{k}", 3, False),
        ], res, a.servers)
        rr = C.ratios(res, f"rss_{k}")
        if rr:
            m = sorted(rr)[len(rr) // 2]
            print(f"target: RSS <= 1.3x memcached's: {m:.3f}x -> {'met' if m <= 1.3 else 'NOT met'}")
    C.save(a, "overwrite-rss", res, {"seconds": a.seconds, "cases": cases, "mb": a.mb, "threads": a.threads})


if __name__ == "__main__":
    sys.exit(main())
