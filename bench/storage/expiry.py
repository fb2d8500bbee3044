#!/usr/bin/env python3
"""expiry: how fast items that expire and are never read again leave
curr_items and bytes (issue 4, "Expiry": 1M items with a 2-second TTL gone
within a few seconds, by proactive reclaim).

Per round, memcached then memcore, each on a fresh server (-t 2 -m 1024 by
default, so nothing is evicted): write ITEMS distinct keys once with
100-byte random values and exptime 2 (generator -t 2 -c 4 --pipeline 64,
--expiry 2 / memtier --expiry-range=2-2), never read them, and poll `stats`
every 0.5 s: curr_items and bytes.  Times are seconds after the last write
completed; the last item written expires about TTL (2) s later, so about
2-3 s is the best possible (memcached's clock ticks in whole seconds).
Reported per server: curr_items and bytes just after the writes, and the
seconds until both are <= 1% of ITEMS / of the bytes seen after the writes
("~0"), and until both are exactly 0; "> T" when not reached within the
polling limit.  RSS before and after is shown too (informative).

Full: 1,000,000 items, poll up to 60 s, 3 rounds.  --quick: 300,000 items,
poll up to 12 s.
"""
import sys
import time

import common as C


def main():
    p = C.base_parser(__doc__, mb=1024, rounds=3)
    p.add_argument("--items", type=int, help="items written (default 1000000, --quick 300000)")
    p.add_argument("--ttl", type=int, default=2, help="exptime in seconds (default 2)")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--poll", type=float, default=0.5, help="seconds between polls (default 0.5)")
    p.add_argument("--limit", type=float, help="stop polling after this many seconds (default 60, --quick 12)")
    a = C.finish_args(p.parse_args())
    a.items = a.items or (300_000 if a.quick else 1_000_000)
    a.limit = a.limit or (12 if a.quick else 60)
    gen = C.setup(a)
    C.header("expiry of never-read items", a, gen, [
        f"each run: {a.items:,} keys x {a.size} B with exptime {a.ttl}, never read; poll stats every {a.poll} s "
        f"for up to {a.limit:g} s after the last write"])
    res = {s: [] for s in a.servers}
    for r in range(1, a.rounds + 1):
        for name in a.servers:
            with C.Server(name, a, a.layout[0], f"r{r}") as srv:
                rss0, _ = srv.mem()
                dt, out = gen.fill(srv.port, 1, a.items, f"r{r}.{name}", size=a.size, expiry=a.ttl, threads=2,
                                   pipeline=64, timeout=120)
                t0 = time.monotonic()
                st = srv.stats()
                items0, bytes0 = st["curr_items"], st["bytes"]
                rss1, _ = srv.mem()
                t_1pct = t_zero = None
                trace = [(0.0, items0, bytes0)]
                n = 0
                while True:
                    n += 1
                    time.sleep(max(0.0, t0 + n * a.poll - time.monotonic()))
                    t = time.monotonic() - t0
                    st = srv.stats()
                    it, by = st["curr_items"], st["bytes"]
                    trace.append((round(t, 2), it, by))
                    if t_1pct is None and it <= a.items / 100 and by <= max(bytes0, 1) / 100:
                        t_1pct = t
                    if it == 0 and by == 0:
                        t_zero = t
                        break
                    if t >= a.limit:
                        break
                rss2, _ = srv.mem()
                ev = st.get("evictions", 0)
            row = {"write_s": dt, "items0": items0, "bytes0": bytes0, "bytes0_mib": C.mib(bytes0), "t_1pct": t_1pct, "t_zero": t_zero,
                   "items_end": it, "bytes_end": by, "polled_s": t, "evictions": ev,
                   "rss0_mib": C.mib(rss0), "rss1_mib": C.mib(rss1), "rss2_mib": C.mib(rss2),
                   "reclaimed": st.get("reclaimed"), "crawler_reclaimed": st.get("crawler_reclaimed"),
                   "trace": trace}
            res[name].append(row)
            f = lambda x: f"{x:.1f} s" if x is not None else f"> {t:.1f} s"
            print(f"  round {r} {name:9}  writes {dt:.1f} s; after them: curr_items {items0:,}, bytes {bytes0:,}; "
                  f"<= 1%: {f(t_1pct)}; 0: {f(t_zero)}; at the end curr_items {it:,}, bytes {by:,}; evictions {ev:,}; "
                  f"RSS {C.mib(rss1):.0f} -> {C.mib(rss2):.0f} MiB", flush=True)
            print("      trace (s, curr_items, bytes): " + "  ".join(f"{x[0]:g}:{x[1]}/{x[2]}" for x in trace[:12]) +
                  (" ..." if len(trace) > 12 else ""), flush=True)
            if items0 < a.items:
                print(f"      NOTE: only {items0:,} of {a.items:,} items left when the writes ended: the writes took "
                      f"longer than the TTL, so the first ones had expired already", flush=True)
            if ev:
                print(f"      NOTE: {ev:,} evictions: -m {a.mb} is too small for {a.items:,} items; raise --mb")
    # Not-reached times are shown as "> T" text cells.
    for rows in res.values():
        for x in rows:
            for k in ("t_1pct", "t_zero"):
                if x[k] is None:
                    x[k + "_txt"] = f"> {x['polled_s']:.1f}"
                else:
                    x[k + "_txt"] = f"{x[k]:.1f}"
    C.table(f"expiry: {a.items:,} items, TTL {a.ttl} s, never read; seconds after the last write, -m {a.mb} "
            f"-t {a.threads}", [
        ("write s", "write_s", 1, False),
        ("curr_items after writes", "items0", 0, True),
        ("stats bytes after writes, MiB", "bytes0_mib", 1, True),
        ("**s until both <= 1%**", "t_1pct_txt", 1, False),
        ("s until both = 0", "t_zero_txt", 1, False),
        ("curr_items at the end", "items_end", 0, False),
        ("bytes at the end", "bytes_end", 0, False),
        ("RSS MiB after writes", "rss1_mib", 0, True),
        ("RSS MiB at the end", "rss2_mib", 0, True),
    ], res, a.servers)
    C.save(a, "expiry", res, {"items": a.items, "ttl": a.ttl, "size": a.size, "mb": a.mb, "threads": a.threads,
                              "poll": a.poll, "limit": a.limit})


if __name__ == "__main__":
    sys.exit(main())
