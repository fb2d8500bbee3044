#!/usr/bin/env python3
"""size-sweep: what compression saves and costs per value size (for --compress-min).

For each value size and variant, on a fresh memcore (-t 1 on the first CPU,
-m 1024 so nothing is evicted; the generator on the other CPU):

1. warm-up: write 20,000 keys (prefix warm-) of that size, so that a
   --compress-dict auto variant has trained its dictionary (the script waits
   up to 10 s for compress_dictionaries >= 1) before the measured keys;
2. write KEYS keys (memtier-1 ..) once with JSON values of exactly SIZE
   bytes (-c 4 --pipeline 32: little per-request overhead, so the codec's
   cost shows); server CPU over this pass / KEYS = CPU per set;
3. read every measured key once with gets (same pipelining): CPU per get.

Server CPU here is the sum of /proc/PID/task/*/schedstat (nanoseconds, live
threads): the passes are short and /proc/PID/stat counts in 10 ms ticks.

From the difference of the compress_* stats before and after step 2: the
share of values kept compressed and the space ratio over all values of that
size (value bytes / stored value bytes, values kept raw included).  The
"--compress off" variant is the baseline: extra CPU per set and per get =
variant - off, per round (adjacent runs).

Variants default to off, on with --compress-min 1 (every size tried) and the
same with --compress-dict auto.  A value below --compress-min is stored as
it is, so for a given --compress-min the sizes below it get the "off" figures.

Full: sizes 64 96 128 192 256 384 512 1024 2048, 1 round; --quick: 64 128
256 512, fewer keys.
"""
import sys
import time

import ccommon as X


def main():
    p = X.parser(__doc__, mb=1024, threads=1, rounds=1, quick_rounds=1,
                 variants=["memcore --compress off", "memcore --compress-min 1",
                           "memcore --compress-min 1 --compress-dict auto"],
                 baselines=["memcore --compress off"])
    p.add_argument("--sizes", help="value sizes (default 64,96,128,192,256,384,512,1024,2048; "
                                   "--quick 64,128,256,512)")
    p.add_argument("--keys", type=int, default=None, help="measured keys per size (default 100000, --quick 50000)")
    a, gen = X.finish(p.parse_args())
    sizes = [int(s) for s in (a.sizes or ("64,128,256,512" if a.quick else
                                          "64,96,128,192,256,384,512,1024,2048")).split(",")]
    a.keys = a.keys or (50_000 if a.quick else 100_000)
    X.header("size sweep", a, gen, [
        f"per size: 20,000 warm-up keys, then {a.keys:,} measured keys written once and read once "
        f"(JSON {a.kind}, -c 4 --pipeline 32); sizes {' '.join(map(str, sizes))}"])
    all_res = {}
    for size in sizes:
        res = {v.label: [] for v in a.variants}
        for r in range(1, a.rounds + 1):
            for v in a.variants:
                tag = f"s{size}.r{r}"
                with X.start(a, v, tag) as srv:
                    X.fill(gen, a, srv.port, 1, 20_000, f"{tag}.warm", size=size, prefix="warm-")
                    if "auto" in v.flags:
                        t = time.monotonic()
                        while X.stat(srv.stats(), "compress_dictionaries", 0) < 1 and time.monotonic() - t < 10:
                            time.sleep(0.1)
                    s0 = srv.stats()
                    m = X.Meter(srv.pid, precise=True)
                    X.fill(gen, a, srv.port, 1, a.keys, f"{tag}.set", size=size)
                    m.stop()
                    s1 = srv.stats()
                    g = X.Meter(srv.pid, precise=True)
                    args = ["-t", "1", "-c", "4", "--pipeline=32", "--ratio=0:1", "--key-pattern=P:P",
                            "-n", "allkeys", "--key-minimum=1", f"--key-maximum={a.keys}", "--hide-histogram"]
                    _, out = gen.run(srv.port, args, 120, f"{tag}.get")
                    g.stop()
                    s2 = srv.stats()

                def d(k, x=s1, y=s0):
                    return (X.stat(x, k, 0) or 0) - (X.stat(y, k, 0) or 0)
                items, cin, cout = d("curr_items"), d("compress_bytes_in"), d("compress_bytes_out")
                hits = d("get_hits", s2, s1)
                stored = cout + (items * size - cin)
                row = {
                    "items": items, "compressed_pct": 100 * d("compress_items") / items if items else None,
                    "space_ratio": items * size / stored if stored else None,
                    "stored_per_value": stored / items if items else None,
                    "us_per_set": 1e6 * m.server / a.keys, "us_per_get": 1e6 * g.server / a.keys,
                    "hit_pct": 100 * hits / a.keys, "dicts": X.stat(s2, "compress_dictionaries"),
                    "other_cpu_s": m.other + g.other,
                }
                res[v.label].append(row)
                print(f"  {size:5} B round {r} {v.label:46} compressed {row['compressed_pct'] or 0:5.1f}%  "
                      f"space ratio {row['space_ratio'] or 0:5.2f} ({row['stored_per_value'] or 0:6.1f} B/value)  "
                      f"set {row['us_per_set']:5.2f} us  get {row['us_per_get']:5.2f} us  "
                      f"hits {row['hit_pct']:.1f}%  dicts {row['dicts']}  other {row['other_cpu_s']:.1f} s",
                      flush=True)
        X.table(f"{size}-byte JSON ({a.kind}), {a.keys:,} keys, -t {a.threads}", [
            ("stored compressed %", "compressed_pct", 1, False),
            ("space ratio", "space_ratio", 2, False),
            ("stored bytes/value", "stored_per_value", 1, True),
            ("server CPU us/set", "us_per_set", 2, True),
            ("server CPU us/get", "us_per_get", 2, True),
            ("other CPU-s", "other_cpu_s", 1, False),
        ], res, a)
        all_res[size] = res
    # One summary table: per size and variant, space ratio and extra CPU
    # over off (median over rounds).
    base = a.baselines[0] if a.baselines else None
    print()
    print("#### summary: space ratio, and server CPU per op over --compress off (us)")
    print()
    others = [v for v in a.variants if v.label != base]
    print("| size | " + " | ".join(f"{v.label}: ratio, +us/set, +us/get" for v in others) + " |")
    print("|---" * (len(others) + 1) + "|")
    for size in sizes:
        res = all_res[size]
        cells = []
        for v in others:
            rs = res[v.label]
            ratio = X.summary([x["space_ratio"] for x in rs], 2)
            ds = [x["us_per_set"] - y["us_per_set"] for x, y in zip(rs, res.get(base, []))]
            dg = [x["us_per_get"] - y["us_per_get"] for x, y in zip(rs, res.get(base, []))]
            cells.append(f"{ratio}, {X.summary(ds, 2)}, {X.summary(dg, 2)}")
        print(f"| {size} | " + " | ".join(cells) + " |")
    print(flush=True)
    X.save(a, "size-sweep", {str(k): v for k, v in all_res.items()},
           {"keys": a.keys, "sizes": sizes, "kind": a.kind, "variants": [v.label for v in a.variants]})


if __name__ == "__main__":
    sys.exit(main())
