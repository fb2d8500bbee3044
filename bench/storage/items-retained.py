#!/usr/bin/env python3
"""items-retained: how many small items fit in -m 64 (issue 4, "Items retained").

Per round, memcached then memcore, each on a fresh server (-t 2 -m 64 by
default): write KEYS distinct keys (memtier-1 .. memtier-KEYS) once, with
100-byte random values (generator: -c 4 --pipeline 32 --ratio 1:0
--key-pattern P:P -n allkeys --random-data -d 100).  Then read curr_items,
bytes and evictions from `stats`, and VmRSS / VmHWM (peak) from
/proc/PID/status, and check RSS <= -m x 1.05 + 32 MiB (the issue's bound).

Target (issue 4): memcore keeps >= 1.5x memcached's curr_items, within the
RSS bound.

Full: 3,000,000 keys, 2 rounds.  --quick: 1,000,000 keys, 1 round.
"""
import sys

import common as C


def main():
    p = C.base_parser(__doc__, mb=64, rounds=2)
    p.add_argument("--keys", type=int, help="distinct keys written (default 3000000, --quick 1000000)")
    p.add_argument("--size", type=int, default=100, help="value bytes (default 100)")
    a = C.finish_args(p.parse_args())
    a.keys = a.keys or (1_000_000 if a.quick else 3_000_000)
    gen = C.setup(a)
    bound = C.rss_bound(a.mb)
    C.header("items retained", a, gen, [
        f"each run: write {a.keys:,} distinct keys once, {a.size}-byte random values, into a fresh server",
        f"RSS bound: -m {a.mb} x 1.05 + 32 MiB = {C.mib(bound):.1f} MiB"])
    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        for name in a.servers:
            with C.Server(name, a, a.layout[0], f"r{r}") as srv:
                dt, out = gen.fill(srv.port, 1, a.keys, f"r{r}.{name}", size=a.size, timeout=150)
                st = srv.stats()
                rss, hwm = srv.mem()
            row = {
                "curr_items": st["curr_items"], "bytes": st["bytes"], "evictions": st.get("evictions"),
                "rss_mib": C.mib(rss), "hwm_mib": C.mib(hwm), "rss_ok": rss <= bound, "hwm_ok": hwm <= bound,
                "set_errors": st.get("store_no_memory"), "gen_errors": gen.errors(out),
                "rss_per_item": rss / st["curr_items"] if st["curr_items"] else None,
                "items_per_mib_limit": st["curr_items"] / a.mb, "fill_s": dt,
            }
            res[name].append(row)
            print(f"  round {r} {name:9}  curr_items {row['curr_items']:>10,}  bytes {row['bytes']:>11,}  "
                  f"evictions {row['evictions']:>10,}  RSS {row['rss_mib']:6.1f} MiB (peak {row['hwm_mib']:6.1f})  "
                  f"{'ok' if row['rss_ok'] and row['hwm_ok'] else 'OVER BOUND'}  out-of-memory sets {row['set_errors']}  "
                  f"fill {dt:.1f} s", flush=True)
    C.table(f"items retained: {a.keys:,} keys x {a.size} B into -m {a.mb} -t {a.threads}", [
        ("curr_items", "curr_items", 0, True),
        ("stats bytes", "bytes", 0, True),
        ("evictions", "evictions", 0, True),
        ("RSS MiB", "rss_mib", 1, True),
        ("peak RSS MiB", "hwm_mib", 1, True),
        (f"RSS <= {C.mib(bound):.1f} MiB", "rss_ok", 0, False),
        ("peak <= bound", "hwm_ok", 0, False),
        ("RSS bytes per item", "rss_per_item", 1, True),
        ("sets refused (out of memory)", "set_errors", 0, False),
        ("fill s", "fill_s", 1, True),
    ], res, a.servers)
    rr = C.ratios(res, "curr_items")
    if rr:
        m = sorted(rr)[len(rr) // 2]
        print(f"target: memcore curr_items >= 1.5x memcached's: {m:.3f}x -> {'met' if m >= 1.5 else 'NOT met'}"
              f"{'' if all(x['rss_ok'] and x['hwm_ok'] for x in res.get('memcore', [])) else ' (and memcore RSS over the bound)'}")
    C.save(a, "items-retained", res, {"keys": a.keys, "size": a.size, "mb": a.mb, "threads": a.threads})


if __name__ == "__main__":
    sys.exit(main())
