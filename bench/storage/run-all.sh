#!/usr/bin/env bash
# Run every storage benchmark of issues 4 and 12 in sequence, memcached
# beside memcore: items-retained, mixed-sizes, hit-ratio, rss-phases, expiry,
# overwrite (the 1:10 mix; the others by hand, see README.md), overwrite-rss
# (bench/storage/README.md says what each measures).
#
# Usage: bench/storage/run-all.sh [--quick] [--out DIR] [--only a,b,...] [-- ARGS...]
#   --quick      smaller sizes and 1 round each (each benchmark under 40 s,
#                about 2 minutes in all); default: full sizes (each under 3 min)
#   --out DIR    keep logs and <benchmark>.results.json in DIR/<benchmark>/
#   --only LIST  run only these benchmarks (comma-separated names)
#   ARGS         passed to every benchmark (e.g. --servers memcore, --rounds 1)
# Env: MEMCORE (memcore binary, default target/release/memcore), MEMCACHED,
#      MEMCORE_BENCH (default target/release/memcore-bench), MEMTIER.
# Exit status: 0 when every benchmark ran (targets met or not), 1 otherwise.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ALL="items-retained mixed-sizes hit-ratio rss-phases expiry overwrite overwrite-rss"
QUICK=() OUT="" ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=(--quick); shift ;;
        --out) OUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
LIST=${ONLY:-$ALL}
LIST=${LIST//,/ }
for b in $LIST; do
    [ -x "$HERE/$b.py" ] || { echo "run-all.sh: unknown benchmark $b (known: $ALL)" >&2; exit 2; }
done

failed=()
start=$SECONDS
for b in $LIST; do
    t0=$SECONDS
    out=()
    [ -z "$OUT" ] || out=(--out "$OUT/$b")
    echo "=== $b ${QUICK[*]}"
    if ! python3 "$HERE/$b.py" "${QUICK[@]}" "${out[@]}" "$@"; then
        failed+=("$b")
        echo "=== $b FAILED"
    fi
    echo "=== $b: $((SECONDS - t0)) s"
    echo
done
echo "run-all.sh: $((SECONDS - start)) s in all${failed[*]:+; FAILED: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
