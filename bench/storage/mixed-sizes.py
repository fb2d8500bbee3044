#!/usr/bin/env python3
"""mixed-sizes: value bytes retained per MiB of RSS, sizes 64 B .. 16 KiB
(issue 4, "Mixed sizes").

Per round, memcached then memcore, each on a fresh server (-t 2 -m 64 by
default): write KEYS distinct keys once with random values of uniformly
random size in [64, 16384] bytes (generator --data-size-range=64-16384
--random-data, -c 4 --pipeline 16).  KEYS defaults to 5x what -m holds in
mean-size values, so the cache is written well past full and has been
evicting for most of the run.  Then, in this order:
  1. `stats`: curr_items, bytes (memcached counts item headers and keys in
     it), evictions; /proc/PID/status: VmRSS, VmHWM (peak);
  2. every key is read back (multi-gets of 100 keys) and the value lengths
     of the hits are summed: the value bytes a client can actually get.
Reported: counted value MiB, value MiB per MiB of RSS (the main figure;
higher is better), stats bytes per MiB of RSS, counted value bytes / -m, and
the RSS check (<= -m x 1.05 + 32 MiB).

Full: 3 rounds, write factor 5.  --quick: 1 round, write factor 3.
"""
import sys

import common as C


def main():
    p = C.base_parser(__doc__, mb=64, rounds=3)
    p.add_argument("--min-size", type=int, default=64)
    p.add_argument("--max-size", type=int, default=16384)
    p.add_argument("--write-factor", type=float,
                   help="bytes of values written / -m (default 5, --quick 3); sets the number of keys")
    a = C.finish_args(p.parse_args())
    wf = a.write_factor or (3 if a.quick else 5)
    mean = (a.min_size + a.max_size) / 2
    keys = int(wf * a.mb * C.MIB / mean)
    gen = C.setup(a)
    bound = C.rss_bound(a.mb)
    C.header("mixed sizes", a, gen, [
        f"each run: write {keys:,} distinct keys once (values {a.min_size}..{a.max_size} B uniform, random bytes; "
        f"{wf:g}x -m in expected value bytes), then read every key back and sum the value lengths",
        f"RSS bound: -m {a.mb} x 1.05 + 32 MiB = {C.mib(bound):.1f} MiB"])
    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        for name in a.servers:
            with C.Server(name, a, a.layout[0], f"r{r}") as srv:
                dt, out = gen.fill(srv.port, 1, keys, f"r{r}.{name}", size_range=(a.min_size, a.max_size),
                                 pipeline=16, timeout=150)
                st = srv.stats()
                rss, hwm = srv.mem()
                found, vbytes = C.count_values(srv.port, "memtier-", 1, keys)
                srv.check_alive()
            row = {
                "curr_items": st["curr_items"], "found": found, "bytes": st["bytes"],
                "evictions": st.get("evictions"), "value_mib": C.mib(vbytes),
                "rss_mib": C.mib(rss), "hwm_mib": C.mib(hwm),
                "value_per_rss": vbytes / rss, "bytes_per_rss": st["bytes"] / rss,
                "value_per_limit": vbytes / (a.mb * C.MIB), "mean_value": vbytes / found if found else None,
                "rss_ok": rss <= bound, "hwm_ok": hwm <= bound, "fill_s": dt,
                "set_errors": st.get("store_no_memory"),
            }
            res[name].append(row)
            print(f"  round {r} {name:9}  curr_items {row['curr_items']:>7,} (readable {found:,})  "
                  f"values {row['value_mib']:5.1f} MiB  stats bytes {C.mib(row['bytes']):5.1f} MiB  "
                  f"RSS {row['rss_mib']:5.1f} MiB (peak {row['hwm_mib']:5.1f})  "
                  f"value MiB per RSS MiB {row['value_per_rss']:.3f}  fill {dt:.1f} s", flush=True)
    C.table(f"mixed sizes: {keys:,} keys of {a.min_size}..{a.max_size} B into -m {a.mb} -t {a.threads}", [
        ("curr_items", "curr_items", 0, True),
        ("readable items", "found", 0, True),
        ("value MiB (counted)", "value_mib", 1, True),
        ("**value MiB per RSS MiB**", "value_per_rss", 3, True),
        ("stats bytes per RSS MiB", "bytes_per_rss", 3, True),
        ("value bytes / -m", "value_per_limit", 3, True),
        ("mean value B", "mean_value", 0, True),
        ("RSS MiB", "rss_mib", 1, True),
        ("peak RSS MiB", "hwm_mib", 1, True),
        (f"RSS <= {C.mib(bound):.1f}", "rss_ok", 0, False),
        ("peak <= bound", "hwm_ok", 0, False),
        ("evictions", "evictions", 0, True),
        ("sets refused (out of memory)", "set_errors", 0, False),
    ], res, a.servers)
    C.save(a, "mixed-sizes", res, {"keys": keys, "min_size": a.min_size, "max_size": a.max_size, "mb": a.mb,
                                   "threads": a.threads, "write_factor": wf})


if __name__ == "__main__":
    sys.exit(main())
