#!/usr/bin/env bash
# Run the compression benchmarks of issue 7 in sequence, memcached beside
# memcore (bench/compression/README.md says what each measures).  These are
# the commands behind the "Compression" section of docs/benchmarks.md.
#
# Usage: bench/compression/run-all.sh [--quick] [--out DIR] [--only a,b,...] [-- ARGS...]
#   --quick      1 round and smaller sizes each;
#                default: the full runs (each under 3 minutes, 11 in all on
#                a busy 2-CPU VM)
#   --out DIR    keep logs and <benchmark>.results.json in DIR/<name>/
#   --only LIST  run only these (names below, comma-separated)
#   ARGS         passed to every run (e.g. --rounds 1)
# Names: items-2k, items-200, levels-2k, levels-200, get-heavy, set-only,
#        levels-set, sizes
# Env: MEMCORE (memcore binary, default target/release/memcore), MEMCACHED,
#      MEMCORE_BENCH (default target/release/memcore-bench; needs --data-json).
# Exit status: 0 when every run finished (targets met or not), 1 otherwise.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
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

DEFAULTS='memcached; memcore --compress off; memcore; memcore --compress-dict auto'
LEVELS='memcore --compress off; memcore --compress-level -3; memcore; memcore --compress-level 3; memcore --compress-level -3 --compress-dict auto; memcore --compress-dict auto; memcore --compress-level 3 --compress-dict auto'
declare -A CMD=(
    [items-2k]="items-held.py --variants '$DEFAULTS'"
    [items-200]="items-held.py --size 200 --keys 1500000 --variants '$DEFAULTS'"
    [levels-2k]="items-held.py --rounds 1 --variants '$LEVELS' --baselines 'memcore --compress off; memcore'"
    [levels-200]="items-held.py --rounds 1 --size 200 --keys 1500000 --variants '$LEVELS' --baselines 'memcore --compress off; memcore'"
    [get-heavy]="throughput.py --workloads get-heavy --variants 'memcore --compress off; memcore; memcore --compress-dict auto; memcached'"
    [set-only]="throughput.py --workloads set-only --variants 'memcore --compress off; memcore; memcore --compress-dict auto; memcached'"
    [levels-set]="throughput.py --rounds 2 --workloads set-only --variants 'memcore --compress off; memcore --compress-level -3 --compress-dict auto; memcore --compress-dict auto; memcore --compress-level 3 --compress-dict auto'"
    [sizes]="size-sweep.py --variants 'memcore --compress off; memcore --compress-min 1; memcore --compress-min 1 --compress-dict auto; memcore --compress-min 1 --compress-dict auto --compress-level 3'"
)
ALL="items-2k items-200 levels-2k levels-200 get-heavy set-only levels-set sizes"
LIST=${ONLY:-$ALL}
LIST=${LIST//,/ }
for b in $LIST; do
    [ -n "${CMD[$b]:-}" ] || { echo "run-all.sh: unknown name $b (known: $ALL)" >&2; exit 2; }
done

failed=()
start=$SECONDS
for b in $LIST; do
    t0=$SECONDS
    out=()
    [ -z "$OUT" ] || out=(--out "$OUT/$b")
    echo "=== $b: bench/compression/${CMD[$b]} ${QUICK[*]} ${out[*]} $*"
    if ! eval "python3 \"$HERE\"/${CMD[$b]}" '"${QUICK[@]}" "${out[@]}" "$@"'; then
        failed+=("$b")
        echo "=== $b FAILED"
    fi
    echo "=== $b: $((SECONDS - t0)) s"
    echo
done
echo "run-all.sh: $((SECONDS - start)) s in all${failed[*]:+; FAILED: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
