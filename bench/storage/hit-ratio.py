#!/usr/bin/env python3
"""hit-ratio: miss ratio of a look-aside cache under Zipf(0.99) popularity at
4x oversubscription (issue 4, "Hit ratio"; target: memcore's miss ratio
<= 0.9x memcached's in the same run).

Working set: KEYS keys (memtier-1 .. memtier-KEYS) of 100-byte values.
memcached stores such an item in a 192-byte chunk, 5461 to a 1 MiB page, so
-m 64 holds 349,504 of them (see items-retained.py); the default KEYS =
4 x 5461 x MB (1,398,016 for -m 64) is 4x its capacity.  Each run prints
KEYS / curr_items when full to confirm it.

Load (memcore-bench, the only generator here with --set-on-miss): gets only
(--ratio 0:1), key popularity Zipf with alpha 0.99 (rank 1 = memtier-1),
and after every get that misses, a set of that key on the same connection
(what a look-aside cache client does).  1 thread x 8 connections, 16 requests
in flight each, random 100-byte values.

Per round, memcached then memcore, each on a fresh, empty server:
  warm-up:  WARMUP gets (with their sets), not measured;
  measured: GETS gets in two halves, `stats` before, between and after.
miss ratio = delta get_misses / delta cmd_get over the measured part (and
per half: equal halves show the cache was in steady state).  The same seeds
are used for both servers in a round, so both see the same key sequence.

Steady state: memcached's segmented LRU keeps improving for a long time
(measured here, 1.6.18, -m 64: miss ratio 0.140 after 3M gets, 0.136 after
5M, 0.132 after 8M, 0.131 after 10M), so the warm-up is 125,000 x MB gets
(8M for -m 64; about 23 passes over memcached's capacity) and the measured
part 62,500 x MB (4M).  The script warns when the two halves differ by more
than 2%.

Full: -m 64, 1,398,016 keys, 8M warm-up + 4M measured gets, 1 round (about
30 s per server on a quiet machine).  --quick: the same at a quarter of the
scale, -m 16, 349,504 keys, 2M + 1M gets (the ratio to memcached came out
the same as at -m 64 here, the miss ratios themselves ~10% higher).
"""
import sys

import common as C


def gets_run(gen, srv, a, n, seed, tag):
    per_conn = max(1, n // a.conns)
    args = ["-t", "1", "-c", str(a.conns), f"--pipeline={a.pipeline}", "--ratio=0:1", "--key-pattern=Z",
            f"--zipf-alpha={a.alpha}", "--key-minimum=1", f"--key-maximum={a.keys}", "--random-data",
            "-d", str(a.size), "--set-on-miss", "-n", str(per_conn), f"--seed={seed}", "--hide-histogram"]
    dt, _ = gen.run(srv.port, args, timeout=150, tag=tag)
    return dt


def main():
    p = C.base_parser(__doc__, mb=64, rounds=1, quick_mb=16)
    p.add_argument("--keys", type=int, help="key space (default 4 x 5461 x MB: 4x what memcached holds)")
    p.add_argument("--alpha", type=float, default=0.99, help="Zipf exponent (default 0.99)")
    p.add_argument("--size", type=int, default=100, help="value bytes (default 100)")
    p.add_argument("--warmup", type=int, help="warm-up gets (default 125000 x MB: 8M for -m 64)")
    p.add_argument("--gets", type=int, help="measured gets (default 62500 x MB: 4M for -m 64)")
    p.add_argument("--conns", type=int, default=8, help="connections (default 8)")
    p.add_argument("--pipeline", type=int, default=16, help="requests in flight per connection (default 16)")
    p.add_argument("--seed", type=int, default=4242, help="base seed (round r uses seed+10r, +1, +2)")
    a = C.finish_args(p.parse_args())
    a.keys = a.keys or 4 * 5461 * a.mb
    a.warmup = a.warmup if a.warmup is not None else 125_000 * a.mb
    a.gets = a.gets or 62_500 * a.mb
    gen = C.setup(a, need_set_on_miss=True)
    C.header("hit ratio (look-aside, Zipf)", a, gen, [
        f"each run: key space {a.keys:,}, Zipf alpha {a.alpha}, {a.size}-byte random values, get + set on miss; "
        f"{a.warmup:,} warm-up gets, then {a.gets:,} measured gets in two halves",
        f"generator: -t 1 -c {a.conns} --pipeline {a.pipeline}"])
    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        seed = a.seed + 10 * r
        for name in a.servers:
            tag = f"r{r}.{name}"
            with C.Server(name, a, a.layout[0], f"r{r}") as srv:
                if a.warmup:
                    gets_run(gen, srv, a, a.warmup, seed, tag)
                s0 = srv.stats()
                t1 = gets_run(gen, srv, a, a.gets // 2, seed + 1, tag)
                s1 = srv.stats()
                t2 = gets_run(gen, srv, a, a.gets - a.gets // 2, seed + 2, tag)
                s2 = srv.stats()
                rss, hwm = srv.mem()

            def miss(x, y):
                g = y["cmd_get"] - x["cmd_get"]
                return (y["get_misses"] - x["get_misses"]) / g if g else None

            row = {
                "miss": miss(s0, s2), "miss_h1": miss(s0, s1), "miss_h2": miss(s1, s2),
                "gets": s2["cmd_get"] - s0["cmd_get"], "sets": s2["cmd_set"] - s0["cmd_set"],
                "curr_items": s2["curr_items"], "evictions": s2.get("evictions"),
                "keys_per_item": a.keys / s2["curr_items"] if s2["curr_items"] else None,
                "rss_mib": C.mib(rss), "hwm_mib": C.mib(hwm), "ops_s": (s2["cmd_get"] - s0["cmd_get"] +
                                                                       s2["cmd_set"] - s0["cmd_set"]) / (t1 + t2),
            }
            res[name].append(row)
            if row["miss_h1"] and abs(row["miss_h2"] / row["miss_h1"] - 1) > 0.02:
                print(f"      NOTE: {name}'s miss ratio moved {100 * (row['miss_h2'] / row['miss_h1'] - 1):+.1f}% "
                      "between the halves: not in steady state yet (more --warmup)", flush=True)
            print(f"  round {r} {name:9}  miss ratio {row['miss']:.4f} (halves {row['miss_h1']:.4f} "
                  f"{row['miss_h2']:.4f})  gets {row['gets']:,}  sets {row['sets']:,}  curr_items "
                  f"{row['curr_items']:,} (key space / curr_items {row['keys_per_item']:.2f})  evictions "
                  f"{row['evictions']:,}  RSS {row['rss_mib']:.1f} MiB  {row['ops_s']:,.0f} ops/s", flush=True)
    C.table(f"hit ratio: Zipf {a.alpha} over {a.keys:,} keys x {a.size} B, get + set on miss, -m {a.mb} -t {a.threads}", [
        ("**miss ratio**", "miss", 4, True),
        ("1st half", "miss_h1", 4, True),
        ("2nd half", "miss_h2", 4, True),
        ("measured gets", "gets", 0, False),
        ("curr_items at end", "curr_items", 0, True),
        ("key space / curr_items", "keys_per_item", 2, False),
        ("evictions (total)", "evictions", 0, True),
        ("RSS MiB", "rss_mib", 1, True),
        ("peak RSS MiB", "hwm_mib", 1, True),
        ("ops/s (info)", "ops_s", 0, True),
    ], res, a.servers)
    rr = C.ratios(res, "miss")
    if rr:
        m = sorted(rr)[len(rr) // 2]
        print(f"target: memcore miss ratio <= 0.9x memcached's: {m:.3f}x -> {'met' if m <= 0.9 else 'NOT met'}")
    C.save(a, "hit-ratio", res, {k: getattr(a, k) for k in ("keys", "alpha", "size", "warmup", "gets", "conns",
                                                             "pipeline", "seed", "mb", "threads")})


if __name__ == "__main__":
    sys.exit(main())
