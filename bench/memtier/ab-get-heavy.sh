#!/usr/bin/env bash
# A/B benchmark: memcached -t 1 vs memcore -t 1, get-heavy memtier profile.
#
# Both servers run pinned to one CPU (SERVER_CPU, default 0) and memtier to
# another (CLIENT_CPU, default 1).  Each run starts a fresh server on a free
# port, prefills every key once (set-only pass), then measures
#   memtier --protocol=memcache_text -t 1 -c 50 --ratio 1:10 --random-data
#           -d 100 --key-maximum 100000 --test-time T
# Runs alternate memcached, memcore, memcached, memcore, ... for R rounds,
# so that slow drift of a shared machine hits both sides alike.  Per run it
# records ops/s, p50 and p99 (ms, memtier Totals), get hit ratio, and the
# server's CPU seconds during the measured pass (utime+stime of the whole
# process from /proc/<pid>/stat, / CLK_TCK) -> ops per server CPU-second.
#
# Usage: bench/memtier/ab-get-heavy.sh            (from anywhere)
# Env:   R=3 T=10 MB=1024 SERVER_CPU=0 CLIENT_CPU=1
#        MEMTIER=/path/to/memtier_benchmark (default: found on PATH)
#        MEMCACHED=/path/to/memcached      (default: found on PATH)
#        MEMCORE_BIN=/path/to/memcore      (default: target/release/memcore)
#        OUT=dir   keep memtier logs / json there (default: a temp dir, removed)
set -euo pipefail

R=${R:-3}
T=${T:-10}
MB=${MB:-1024}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MEMCORE_BIN=${MEMCORE_BIN:-$ROOT/target/release/memcore}

die() { echo "ab-get-heavy: $*" >&2; exit 1; }

MEMTIER=${MEMTIER:-$(command -v memtier_benchmark || true)}
if [ -z "$MEMTIER" ] || [ ! -x "$MEMTIER" ]; then
    cat >&2 <<'EOF'
ab-get-heavy: memtier_benchmark not found (set $MEMTIER or put it on PATH).
Build it outside this tree, e.g.:
  apt-get install build-essential autoconf automake libpcre3-dev libevent-dev pkg-config zlib1g-dev libssl-dev
  git clone https://github.com/RedisLabs/memtier_benchmark && cd memtier_benchmark
  autoreconf -ivf && ./configure && make && sudo make install
EOF
    exit 2
fi
MEMCACHED=${MEMCACHED:-$(command -v memcached || true)}
[ -n "$MEMCACHED" ] && [ -x "$MEMCACHED" ] || die "memcached not found (set \$MEMCACHED)"
[ -x "$MEMCORE_BIN" ] || die "$MEMCORE_BIN missing: run 'cargo build --release' (or set MEMCORE_BIN)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
[ "$(nproc --all)" -ge 2 ] || echo "ab-get-heavy: warning: fewer than 2 CPUs; server and client will share" >&2

CLK_TCK=$(getconf CLK_TCK)
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"; WORK=$OUT; KEEP=1
else
    WORK=$(mktemp -d /tmp/ab-get-heavy.XXXXXX); KEEP=0
fi

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# CPU seconds (utime+stime, all threads) of a process, as "ticks".
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

# start_server NAME LOG -> sets SERVER_PID and PORT
start_server() {
    local name=$1 log=$2 tries
    for tries in 1 2 3 4 5 6 7 8; do
        PORT=$(( 20000 + RANDOM % 40000 ))
        port_free "$PORT" || continue
        case $name in
            memcached) taskset -c "$SERVER_CPU" "$MEMCACHED" -p "$PORT" -l 127.0.0.1 -U 0 -t 1 -u root -m "$MB" >"$log" 2>&1 & ;;
            memcore)   taskset -c "$SERVER_CPU" "$MEMCORE_BIN" -p "$PORT" -l 127.0.0.1 -U 0 -t 1 -u root -m "$MB" >"$log" 2>&1 & ;;
        esac
        SERVER_PID=$!
        for _ in $(seq 100); do
            listening "$PORT" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        echo "ab-get-heavy: $name did not come up on port $PORT (try $tries):" >&2; tail -3 "$log" >&2 || true
        cleanup_server
    done
    die "could not start $name"
}
cleanup_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "ab-get-heavy: warning: server $SERVER_PID ignored SIGTERM for 5s; SIGKILL" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

KEYMAX=100000
COMMON=(-s 127.0.0.1 --protocol=memcache_text --random-data -d 100 --key-minimum 1 --key-maximum $KEYMAX --hide-histogram)

# run_one NAME ROUND -> appends a line to $WORK/results.tsv
run_one() {
    local name=$1 round=$2 tag="$1.r$2"
    start_server "$name" "$WORK/$tag.server.log"
    # Prefill: every key 1..KEYMAX set once, sequentially (1 connection).
    if ! taskset -c "$CLIENT_CPU" "$MEMTIER" "${COMMON[@]}" -p "$PORT" -t 1 -c 1 --pipeline 32 \
        --ratio 1:0 --key-pattern P:P -n allkeys >"$WORK/$tag.prefill.log" 2>&1; then
        tail -5 "$WORK/$tag.prefill.log" >&2; die "$tag: prefill failed"
    fi
    local c0 c1
    c0=$(cpu_ticks "$SERVER_PID")
    if ! taskset -c "$CLIENT_CPU" "$MEMTIER" "${COMMON[@]}" -p "$PORT" -t 1 -c 50 --ratio 1:10 \
        --test-time "$T" --json-out-file "$WORK/$tag.json" >"$WORK/$tag.log" 2>&1; then
        tail -5 "$WORK/$tag.log" >&2; die "$tag: memtier failed"
    fi
    c1=$(cpu_ticks "$SERVER_PID")
    kill -0 "$SERVER_PID" 2>/dev/null || die "$tag: server died during the run"
    cleanup_server
    # ALL STATS table: Totals = ops/s hits misses avg p50 p99 p99.9 KB/s; Gets = ops hits misses ...
    awk -v name="$name" -v round="$round" -v cpu=$(( c1 - c0 )) -v hz="$CLK_TCK" -v t="$T" '
        /^ALL STATS/ { all = 1 }
        all && $1 == "Gets"   { gh = $3; gm = $4 }
        all && $1 == "Totals" { ops = $2; p50 = $6; p99 = $7 }
        END {
            if (ops == "") { print "no Totals line" > "/dev/stderr"; exit 1 }
            cs = cpu / hz
            hit = (gh + gm > 0) ? 100 * gh / (gh + gm) : 0
            printf "%s\t%d\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%.0f\t%.2f\n", name, round, ops, p50, p99, hit, cs, (cs > 0 ? ops * t / cs : 0), 100 * cs / t
        }' "$WORK/$tag.log" >>"$WORK/results.tsv" || die "$tag: could not parse memtier output"
    grep -qi "error" "$WORK/$tag.log" && echo "ab-get-heavy: note: '$tag' memtier log mentions errors:" >&2 && grep -i error "$WORK/$tag.log" | head -3 >&2
    tail -1 "$WORK/results.tsv" | awk -F'\t' '{ printf "  %-9s round %s: %8s ops/s  p50 %s ms  p99 %s ms  hit %s%%  cpu %s s  %s ops/cpu-s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
}

echo "ab-get-heavy: R=$R rounds x T=${T}s, server on CPU $SERVER_CPU, memtier on CPU $CLIENT_CPU"
echo "  memcached: $MEMCACHED ($("$MEMCACHED" -V 2>/dev/null || echo '?'))"
echo "  memcore:   $MEMCORE_BIN"
echo "  memtier:   $MEMTIER"
: >"$WORK/results.tsv"
for r in $(seq 1 "$R"); do
    run_one memcached "$r"
    run_one memcore "$r"
done

echo
echo "Per run (ops/s and ops/CPU-s: memtier Totals over the ${T}s pass; latencies in ms; cpu = server utime+stime during the pass)"
printf '| %-9s | %5s | %9s | %7s | %7s | %6s | %7s | %6s | %11s |\n' server round ops/s p50 p99 hit% cpu_s cpu% ops/cpu-s
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------- ----------- --------- --------- -------- --------- -------- -------------
awk -F'\t' '{ printf "| %-9s | %5s | %9s | %7s | %7s | %6s | %7s | %6s | %11s |\n", $1, $2, $3, $4, $5, $6, $7, $9, $8 }' "$WORK/results.tsv"

echo
echo "memcore / memcached, per round (paired adjacent runs); median [min .. max] over $R rounds"
awk -F'\t' '
    function sort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
    function median(a, n) { return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { v[$1, $2, "ops"] = $3; v[$1, $2, "p50"] = $4; v[$1, $2, "p99"] = $5; v[$1, $2, "eff"] = $8; if ($2 > R) R = $2 }
    END {
        split("ops p50 p99 eff", m, " ")
        label["ops"] = "ops/s"; label["p50"] = "p50 latency"; label["p99"] = "p99 latency"; label["eff"] = "ops per server CPU-s"
        for (k = 1; k <= 4; k++) {
            n = 0; line = ""
            for (r = 1; r <= R; r++) {
                a = v["memcached", r, m[k]]; b = v["memcore", r, m[k]]
                if (a > 0) { x[++n] = b / a; line = line sprintf(" %.3f", x[n]) }
            }
            if (n == 0) continue
            sort(x, n)
            printf "  %-22s median %.3f  [%.3f .. %.3f]   rounds:%s\n", label[m[k]], median(x, n), x[1], x[n], line
        }
    }' "$WORK/results.tsv"
[ "$KEEP" = 1 ] && echo && echo "raw results and memtier logs: $WORK"
exit 0
