#!/usr/bin/env python3
"""rss-phases: RSS while the value sizes shift small -> large -> small, and
how much of the new size the cache holds after each shift (issue 4, "Exact
memory accounting" and "No calcification").

Write phases (each key written once, generator -c 4, random values; each
phase writes several times -m):
  small1: SMALL keys s1-N of 100 bytes (--pipeline 32);
  large:  LARGE keys l-N of 100 KiB .. 500 KiB, uniform (--pipeline 2);
  small2: SMALL new keys s2-N of 100 bytes (--pipeline 32).

Per round, memcached then memcore, each in three runs on fresh servers
(-t 2 -m 64 by default):
  run 1: small1, large, small2.  After each phase VmRSS and VmHWM (peak so
         far) from /proc/PID/status, checked against -m x 1.05 + 32 MiB, and
         curr_items, bytes, evictions and sets refused (store_no_memory).
         At the end every s2- key is read back: the small2 value bytes held.
  run 2: small1, large; then every l- key is read back (large after a shift).
  run 3: large only, then read back (large from a cold start).
Reading items marks them as used, so reads happen only at the end of a run;
the small cold start (small1) needs no reads: all its items are s1- keys,
so its value bytes are curr_items x 100.

Calcification (the issue asks >= 0.8 for both): value bytes of the new size
held after a shift / held after a cold start with that size alone:
  large shift = run 2 large / run 3 large;  small shift = small2 / small1.

Full: SMALL 1,200,000, LARGE 1000, 2 rounds.  --quick: 800,000 and 600, 1 round.
"""
import sys

import common as C


def main():
    p = C.base_parser(__doc__, mb=64, rounds=2)
    p.add_argument("--small", type=int, help="keys per small phase (default 1200000, --quick 800000)")
    p.add_argument("--large", type=int, help="keys in the large phase (default 1000, --quick 600)")
    p.add_argument("--small-size", type=int, default=100)
    p.add_argument("--large-range", default="102400-512000", help="large value sizes A-B (default 100..500 KiB)")
    a = C.finish_args(p.parse_args())
    a.small = a.small or (800_000 if a.quick else 1_200_000)
    a.large = a.large or (600 if a.quick else 1000)
    lo, hi = (int(x) for x in a.large_range.split("-"))
    gen = C.setup(a)
    bound = C.rss_bound(a.mb)
    C.header("RSS across small -> large -> small phases", a, gen, [
        f"phases: small {a.small:,} x {a.small_size} B; large {a.large:,} x {lo // 1024}..{hi // 1024} KiB "
        f"(~{a.large * (lo + hi) / 2 / C.MIB:,.0f} MiB); small again, {a.small:,} new keys",
        "runs per server: 1 = small1, large, small2 (RSS after each); 2 = small1, large (read large back); "
        "3 = large alone (read back)",
        f"RSS bound: -m {a.mb} x 1.05 + 32 MiB = {C.mib(bound):.1f} MiB"])

    def phase(srv, ph, tag, prev, row, label):
        if ph == "large":
            dt, out = gen.fill(srv.port, 1, a.large, tag, size_range=(lo, hi), prefix="l-", pipeline=2, timeout=150)
        else:
            dt, out = gen.fill(srv.port, 1, a.small, tag, size=a.small_size, prefix=ph[0] + ph[-1] + "-",
                               timeout=150)
        st = srv.stats()
        rss, hwm = srv.mem()
        ok = rss <= bound and hwm <= bound
        refused = st.get("store_no_memory", 0) - prev.get("store_no_memory", 0)
        ge = gen.errors(out)
        row.update({f"{label}_rss": C.mib(rss), f"{label}_hwm": C.mib(hwm), f"{label}_ok": ok,
                    f"{label}_items": st["curr_items"], f"{label}_refused": refused})
        print(f"  round {row['round']} {srv.name:9} {label:13} RSS {C.mib(rss):6.1f} MiB (peak {C.mib(hwm):6.1f})  "
              f"{'ok' if ok else 'OVER BOUND'}  curr_items {st['curr_items']:>9,}  bytes {C.mib(st['bytes']):5.1f} MiB  "
              f"sets {st['cmd_set'] - prev['cmd_set']:,} ({refused:,} refused: out of memory; generator saw "
              f"{ge if ge is not None else '?'} error replies)  evictions {st.get('evictions', 0):,}  {dt:.1f} s",
              flush=True)
        return st

    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        for name in a.servers:
            row = {"round": r}
            with C.Server(name, a, a.layout[0], f"r{r}.run1") as srv:
                st = srv.stats()
                for ph in ("small1", "large", "small2"):
                    st = phase(srv, ph, f"r{r}.run1.{name}", st, row, ph)
                    if ph == "small1":
                        row["small1_vmib"] = C.mib(st["curr_items"] * a.small_size)
                n, vb = C.count_values(srv.port, "s2-", 1, a.small)
                row["small2_found"], row["small2_vmib"] = n, C.mib(vb)
                srv.check_alive()
            with C.Server(name, a, a.layout[0], f"r{r}.run2") as srv:
                st = srv.stats()
                for ph in ("small1", "large"):
                    st = phase(srv, ph, f"r{r}.run2.{name}", st, row, "run2 " + ph)
                n, vb = C.count_values(srv.port, "l-", 1, a.large, batch=10, window=2)
                row["shift_large_found"], row["shift_large_vmib"] = n, C.mib(vb)
            with C.Server(name, a, a.layout[0], f"r{r}.run3") as srv:
                phase(srv, "large", f"r{r}.run3.{name}", srv.stats(), row, "run3 large")
                n, vb = C.count_values(srv.port, "l-", 1, a.large, batch=10, window=2)
                row["cold_large_found"], row["cold_large_vmib"] = n, C.mib(vb)
            row["all_ok"] = all(v for k, v in row.items() if k.endswith("_ok"))
            row["peak_mib"] = max(v for k, v in row.items() if k.endswith("_hwm"))
            row["small_shift"] = row["small2_vmib"] / row["small1_vmib"] if row["small1_vmib"] else None
            row["large_shift"] = (row["shift_large_vmib"] / row["cold_large_vmib"]) if row["cold_large_vmib"] else None
            print(f"  round {r} {name:9} held: small1 {row['small1_vmib']:.1f} MiB, small2 {row['small2_vmib']:.1f} MiB "
                  f"({row['small2_found']:,} items) -> small shift {row['small_shift']:.3f}; large after small "
                  f"{row['shift_large_vmib']:.1f} MiB ({row['shift_large_found']} items), cold {row['cold_large_vmib']:.1f} "
                  f"MiB ({row['cold_large_found']}) -> large shift {row['large_shift'] or 0:.3f}", flush=True)
            res[name].append(row)
    C.table(f"RSS by phase, run 1 (MiB; bound {C.mib(bound):.1f}), -m {a.mb} -t {a.threads}", [
        ("after small1", "small1_rss", 1, True),
        ("after large", "large_rss", 1, True),
        ("after small2", "small2_rss", 1, True),
        ("peak, all runs", "peak_mib", 1, True),
        ("within bound, all runs and phases", "all_ok", 0, False),
        ("sets refused: large", "large_refused", 0, False),
        ("sets refused: small2", "small2_refused", 0, False),
    ], res, a.servers)
    C.table("value MiB held of the current size (calcification: shift / cold start, target >= 0.8)", [
        ("small cold (small1)", "small1_vmib", 1, True),
        ("small after large (small2)", "small2_vmib", 1, True),
        ("**small shift**", "small_shift", 3, True),
        ("large cold (run 3)", "cold_large_vmib", 1, True),
        ("large after small (run 2)", "shift_large_vmib", 1, True),
        ("**large shift**", "large_shift", 3, True),
        ("large items cold", "cold_large_found", 0, True),
        ("large items after small", "shift_large_found", 0, True),
    ], res, a.servers)
    C.save(a, "rss-phases", res, {"small": a.small, "large": a.large, "small_size": a.small_size,
                                  "large_range": [lo, hi], "mb": a.mb, "threads": a.threads})


if __name__ == "__main__":
    sys.exit(main())
