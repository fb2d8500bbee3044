#!/usr/bin/env python3
"""items-held: how many JSON items fit in -m 64, compression on and off (issue 7).

Per round, each variant in turn on a fresh server (-t 2 -m 64 by default):
write KEYS distinct keys (memtier-1 .. memtier-KEYS) once, in key order, with
JSON values from memcore-bench --data-json (realistic user profiles and
product listings, the same bytes for a key on every server; generator: -c 4
--pipeline 32 --ratio 1:0 --key-pattern P:P -n allkeys).  KEYS is several
times what fits, so every server ends full and evicting, holding the most
recent items.  Then read curr_items, evictions, bytes and the compress_*
stats, VmRSS, the server CPU the fill took, and check 200 of the last keys
written: a hit must return exactly the bytes that were set.

Targets (issue 7): 2 KiB values, default flags: curr_items >= 3x --compress
off and >= 3x memcached; 200-byte values with --compress-dict auto: >= 1.8x
--compress off.

Examples:
  bench/compression/items-held.py                        # 2 KiB, on / off / memcached
  bench/compression/items-held.py --size 200 --keys 2000000 \\
      --variants 'memcore --compress off; memcore --compress-dict auto; memcore'
  bench/compression/items-held.py --variants 'memcore --compress off; memcore --compress-level -3; memcore; memcore --compress-level 3'
Full: 3 rounds.  --quick: 1 round and half the keys (given or default).
"""
import sys

import ccommon as X


def main():
    p = X.parser(__doc__, mb=64, threads=2, rounds=3, quick_rounds=1,
                 variants=["memcached", "memcore --compress off", "memcore"],
                 baselines=["memcore --compress off", "memcached"])
    p.add_argument("--size", type=int, default=2048, help="value bytes (default 2048)")
    p.add_argument("--size-range", help="value bytes A-B, uniform per key (overrides --size)")
    p.add_argument("--keys", type=int, help="distinct keys written (default: 8 x what -m holds uncompressed, "
                                            "at least 100000; halved with --quick)")
    a, gen = X.finish(p.parse_args())
    sr = tuple(int(x) for x in a.size_range.split("-")) if a.size_range else None
    mean = (sr[0] + sr[1]) / 2 if sr else a.size
    a.keys = a.keys or max(100_000, int(8 * a.mb * X.MIB / (mean + 50)))
    if a.quick:
        a.keys = max(50_000, a.keys // 2)
    desc = f"{sr[0]}-{sr[1]}-byte" if sr else f"{a.size}-byte"
    X.header("items held", a, gen, [
        f"each run: write {a.keys:,} distinct keys once, {desc} JSON values ({a.kind}, --data-seed "
        f"{a.data_seed}), into a fresh server; then check 200 of the last keys written"])
    res = {v.label: [] for v in a.variants}
    check_lo = a.keys - 199
    want = X.expected_values(a, check_lo, 200, a.size, sr, gen)
    for r in range(1, a.rounds + 1):
        for v in a.variants:
            with X.start(a, v, f"r{r}") as srv:
                m = X.Meter(srv.pid)
                dt, out = X.fill(gen, a, srv.port, 1, a.keys, f"r{r}", size=a.size, size_range=sr, timeout=150)
                m.stop()
                st = srv.stats()
                rss, hwm = srv.mem()
                hits, bad = X.check_values(srv.port, zip(range(check_lo, a.keys + 1), want))
            items = st["curr_items"]
            citems = X.stat(st, "compress_items")
            row = {
                "curr_items": items, "evictions": st.get("evictions"), "bytes": st.get("bytes"),
                "compress_items_pct": 100 * citems / items if citems is not None and items else None,
                "compress_ratio": X.stat(st, "compress_ratio"),
                "dicts": X.stat(st, "compress_dictionaries"), "trainings": X.stat(st, "compress_dict_trainings"),
                "skipped_incompressible": X.stat(st, "compress_skipped_incompressible"),
                "rss_mib": rss / X.MIB, "hwm_mib": hwm / X.MIB, "fill_s": dt, "fill_kops": a.keys / dt / 1000,
                "cpu_s": m.server, "cpu_us_per_set": 1e6 * m.server / a.keys, "other_cpu_s": m.other,
                "gen_errors": gen.errors(out), "checked_hits": hits, "checked_bad": bad,
            }
            res[v.label].append(row)
            print(f"  round {r} {v.label:40} curr_items {items:>9,}  evictions {row['evictions']:>9,}  "
                  f"compressed {row['compress_items_pct'] or 0:5.1f}%  ratio {row['compress_ratio'] or 0:5.2f}  "
                  f"RSS {row['rss_mib']:5.1f} MiB  fill {dt:5.1f} s  server CPU {m.server:5.2f} s "
                  f"({row['cpu_us_per_set']:.2f} us/set)  other {m.other:4.1f} s  check {hits}/200 hits"
                  f"{f', {bad} WRONG' if bad else ''}", flush=True)
            if bad:
                X.die(f"{v.label} returned {bad} wrong values")
    X.table(f"items held: {a.keys:,} keys x {desc} JSON ({a.kind}) into -m {a.mb} -t {a.threads}", [
        ("curr_items", "curr_items", 0, True),
        ("evictions", "evictions", 0, False),
        ("stored compressed %", "compress_items_pct", 1, False),
        ("compress_ratio", "compress_ratio", 2, False),
        ("dictionaries", "dicts", 0, False),
        ("RSS MiB", "rss_mib", 1, True),
        ("fill s", "fill_s", 1, True),
        ("server CPU us per set", "cpu_us_per_set", 2, True),
        ("other CPU-s", "other_cpu_s", 1, False),
    ], res, a)
    for b in a.baselines:
        for v in a.variants:
            if v.label != b:
                m = X.median_ratio(res, v.label, b, "curr_items")
                if m is not None:
                    print(f"curr_items {v.label} / {b}: {m:.2f}x (median of {a.rounds} round(s))")
    X.save(a, "items-held", res, {"keys": a.keys, "size": a.size, "size_range": sr, "kind": a.kind,
                                  "mb": a.mb, "threads": a.threads, "variants": [v.label for v in a.variants]})


if __name__ == "__main__":
    sys.exit(main())
