#!/usr/bin/env bash
# Superseded by scripts/compare (all profiles; see bench/memtier/profiles.sh).
# Kept so that the command in docs/benchmarks.md still works: it runs the
# get-heavy profile (memtier -c 50 --ratio 1:10 --random-data -d 100, 100k
# keys, prefilled), memcached vs memcore -t 1, alternating, R rounds of T s,
# server pinned to the first CPU and memtier to the others.
# Env: R=3 T=10 MB=1024 OUT=dir, MEMTIER, MEMCACHED, MEMCORE_BIN.
# (SERVER_CPU / CLIENT_CPU are gone: scripts/compare pins the server to the
# first CPU and the generator to the rest.)
set -euo pipefail
exec "$(cd "$(dirname "$0")/../.." && pwd)/scripts/compare" --profiles get-heavy \
    --rounds "${R:-3}" --time "${T:-10}" --mb "${MB:-1024}" ${OUT:+--out "$OUT"} "$@"
