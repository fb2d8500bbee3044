#!/usr/bin/env bash
# The floor of a 1-core memcached text server on this machine (issue 5):
# memcached and memcore next to bench/raw_loop.rs, a minimal server with a
# raw epoll loop and raw io_uring loops (cargo build --release --example
# raw_loop).  Standalone; follows scripts/compare's method.
#
# Each run: start one server pinned to CPU 0 (taskset -c 0) on a fresh
# 127.0.0.1 port, prefill keys 1..100000 with 100 random bytes
# (memtier -c 1 --pipeline 32 --key-pattern P:P -n allkeys --ratio 1:0),
# then measure for --time seconds with memtier pinned to CPU 1
# (-t 1 -c 50 --key-pattern R:R -d 100 --key-maximum 100000 and the
# profile's --ratio / --pipeline), then stop the server.  Recorded: memtier's
# Totals ops/s and hit rate, the server's CPU seconds over the measured pass
# (utime + stime, /proc/PID/stat fields 14 and 15, / CLK_TCK) and the busy
# time of CPU 0 outside the server ("other", a disturbance indicator).
# Servers alternate round by round (A, B, C, ..., A, B, C, ...); the tables
# give median [min .. max] over the rounds, and per-round ratios to the
# memcached run of the same round.
#
# Profiles (those of bench/memtier/profiles.sh):
#   get-heavy  --ratio 1:10, 50 connections
#   set-only   --ratio 1:0, 50 connections
#   pipelined  --ratio 1:10 --pipeline 16, 50 connections
#
# Servers (--servers, comma separated):
#   memcached        /usr/bin/memcached -t 1 -U 0 -m 1024 [-u root]
#   memcore          target/release/memcore -t 1 -U 0 -m 1024 [-u root]
#   memcore-head     the same flags, binary $MEMCORE_HEAD_BIN (e.g. a build of
#                    a clean checkout, next to a working tree's memcore)
#   epoll, uring-poll, uring, uring-multishot
#                    raw_loop --mode MODE; a suffix +coop or +defer picks the
#                    ring's --setup, +pollfirst adds --poll-first
#                    (e.g. uring+defer, uring-multishot+coop)
#
# --syscalls: instead of the rounds, one get-heavy pass per server during
# which `perf stat -e 'syscalls:sys_enter_*' -a -C 0 -- sleep 4` counts the
# syscalls on CPU 0; divided by the requests the server counted meanwhile
# (stats cmd_get + cmd_set, before and after).  --perf-record: likewise, a
# flat `perf record -C 0` profile of that window (top symbols).
#
# Usage: bench/raw_loop.sh [--profiles P,..] [--servers S,..] [--rounds N]
#                          [--time S] [--syscalls] [--perf-record] [--out DIR]
#                          [--wait-quiet S]
#   defaults: --profiles get-heavy --rounds 3 --time 5
#             --servers memcached,memcore,epoll,uring-poll,uring,uring-multishot
#   (about 2 minutes; keep one invocation under ~4 minutes: one or two
#   profiles per call)
#   --out DIR       keep results.tsv and all logs in DIR
#   --wait-quiet S  before each run wait up to S s (default 10) until the
#                   machine uses under 0.25 CPU (other tenants' builds...)
# Env: MEMCACHED (default /usr/bin/memcached), MEMCORE_BIN (default
#      target/release/memcore), MEMCORE_HEAD_BIN (for memcore-head), RAW_LOOP (default
#      target/release/examples/raw_loop), MEMTIER (default memtier_benchmark
#      on PATH), BENCH_LOCK (default /tmp/memcore-bench.lock).
#
# The machine is shared: the whole run holds `flock $BENCH_LOCK` so that
# benchmark runs never overlap; the script re-executes itself under
# `flock $BENCH_LOCK` unless it already runs under it.  It stops every
# process it started by PID, and sends traffic only to 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=${BENCH_LOCK:-/tmp/memcore-bench.lock}

die() { echo "raw_loop.sh: $*" >&2; exit 1; }

# --- the benchmark lock ---------------------------------------------------------
under_lock() { # is an ancestor `flock ... $LOCK ...`?
    local pid=$PPID cmd
    while [ "${pid:-0}" -gt 1 ]; do
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
        case $cmd in *flock*" $LOCK "*) return 0 ;; esac
        pid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    done
    return 1
}
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
if ! under_lock; then
    command -v flock >/dev/null || die "flock not found (util-linux)"
    echo "raw_loop.sh: taking $LOCK (waits while another benchmark runs)" >&2
    exec flock "$LOCK" "$0" "$@"
fi

PROFILES=get-heavy SERVERS=memcached,memcore,epoll,uring-poll,uring,uring-multishot
ROUNDS=3 TIME=5 SYSCALLS=0 PERF_RECORD=0 OUT="" WAIT_QUIET=10
while [ $# -gt 0 ]; do
    case $1 in
        --profiles) PROFILES=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --time) TIME=$2; shift 2 ;;
        --syscalls) SYSCALLS=1; shift ;;
        --perf-record) PERF_RECORD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --wait-quiet) WAIT_QUIET=$2; shift 2 ;;
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
PROFILES=${PROFILES//,/ } SERVERS=${SERVERS//,/ }
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || die "--wait-quiet takes whole seconds"
for v in ROUNDS TIME; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "--${v,,} must be a positive integer"
done

# --- binaries -------------------------------------------------------------------
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
MEMCORE_BIN=${MEMCORE_BIN:-$ROOT/target/release/memcore}
RAW_LOOP=${RAW_LOOP:-$ROOT/target/release/examples/raw_loop}
MEMTIER=${MEMTIER:-$(command -v memtier_benchmark || true)}
[ -x "$MEMTIER" ] || die "memtier_benchmark not found (set MEMTIER)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
[ "$SYSCALLS$PERF_RECORD" = 00 ] || command -v perf >/dev/null || die "perf not found"
HZ=$(getconf CLK_TCK)

if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$OUT; KEEP=1; else WORK=$(mktemp -d /tmp/raw_loop.XXXXXX); KEEP=0; fi
# Private copies, so that a rebuild during the run does not change them.
for s in $SERVERS; do
    case $s in
        memcached) [ -x "$MEMCACHED" ] || die "$MEMCACHED missing" ;;
        memcore) [ -x "$MEMCORE_BIN" ] || die "$MEMCORE_BIN missing: cargo build --release"
                 cp "$MEMCORE_BIN" "$WORK/memcore.bin" ;;
        memcore-head) [ -x "${MEMCORE_HEAD_BIN:-}" ] || die "memcore-head: set MEMCORE_HEAD_BIN to a memcore binary"
                 cp "$MEMCORE_HEAD_BIN" "$WORK/memcore-head.bin" ;;
        epoll*|uring*) [ -x "$RAW_LOOP" ] || die "$RAW_LOOP missing: cargo build --release --example raw_loop"
                 cp "$RAW_LOOP" "$WORK/raw_loop.bin" ;;
        *) die "unknown server $s (see --help)" ;;
    esac
done
for p in $PROFILES; do
    case $p in get-heavy|set-only|pipelined) ;; *) die "unknown profile $p" ;; esac
done

# --- servers --------------------------------------------------------------------
SERVER_PID="" PORT=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
PERF_PID=""
cleanup() {
    if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; fi
    stop_server
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && ! listening "$1"; }
USER_FLAG=(); [ "$(id -u)" != 0 ] || USER_FLAG=(-u root)

server_cmd() { # NAME PORT -> CMD
    local name=$1 port=$2 mode flags=()
    case $name in
        memcached) CMD=("$MEMCACHED" -p "$port" -l 127.0.0.1 -t 1 -U 0 -m 1024 "${USER_FLAG[@]}") ;;
        memcore|memcore-head) CMD=("$WORK/$name.bin" -p "$port" -l 127.0.0.1 -t 1 -U 0 -m 1024 "${USER_FLAG[@]}") ;;
        *)
            mode=${name%%+*}
            case $name in *+coop*) flags+=(--setup coop) ;; *+defer*) flags+=(--setup defer) ;; esac
            case $name in *+pollfirst*) flags+=(--poll-first) ;; esac
            CMD=("$WORK/raw_loop.bin" --mode "$mode" --port "$port" "${flags[@]}") ;;
    esac
}

start_server() { # NAME LOG -> SERVER_PID, PORT
    local name=$1 log=$2 try
    for try in 1 2 3 4 5; do
        PORT=$(( 20000 + RANDOM % 40000 ))
        port_free "$PORT" || continue
        server_cmd "$name" "$PORT"
        taskset -c 0 "${CMD[@]}" >"$log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do
            listening "$PORT" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        echo "raw_loop.sh: $name did not come up on port $PORT (try $try):" >&2; tail -3 "$log" >&2 || true
        stop_server
    done
    die "could not start $name"
}

# wait_quiet: up to WAIT_QUIET s until the machine uses < 0.25 CPU over 0.5 s.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
wait_quiet() {
    [ "$WAIT_QUIET" -gt 0 ] || return 0
    local end=$((SECONDS + WAIT_QUIET)) b0 b1
    while :; do
        b0=$(busy_ticks); sleep 0.5; b1=$(busy_ticks)
        [ $(( (b1 - b0) * 8 )) -ge "$HZ" ] || return 0
        if [ "$SECONDS" -ge "$end" ]; then
            echo "  (machine still busy after $WAIT_QUIET s: $(( (b1 - b0) * 200 / HZ ))% of a CPU; running anyway)"
            return 0
        fi
    done
}

# utime + stime ticks of a process, all threads (fields 14, 15; cut after ')').
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
# busy ticks of CPU 0 (user nice system irq softirq steal)
cpu0_ticks() { awk '$1 == "cpu0" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# requests the server has handled (stats: cmd_get + cmd_set)
server_reqs() {
    local l n=0
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'stats\r\n' >&3
    while IFS= read -r -t 3 l <&3; do
        l=${l%$'\r'}
        case $l in "STAT cmd_get "*|"STAT cmd_set "*) n=$((n + ${l##* })) ;; END) break ;; esac
    done
    exec 3<&- 3>&-
    echo "$n"
}

KEYS=(--random-data -d 100 --key-minimum 1 --key-maximum 100000 --hide-histogram)
prefill() { # LOG
    taskset -c 1 "$MEMTIER" -s 127.0.0.1 -p "$PORT" -P memcache_text -t 1 -c 1 --pipeline 32 \
        "${KEYS[@]}" --key-pattern P:P -n allkeys --ratio 1:0 >"$1" 2>&1 || { tail -3 "$1" >&2; die "prefill failed"; }
}
profile_args() { # PROFILE -> LOAD
    case $1 in
        get-heavy) LOAD=(-c 50 --ratio 1:10) ;;
        set-only) LOAD=(-c 50 --ratio 1:0) ;;
        pipelined) LOAD=(-c 50 --ratio 1:10 --pipeline 16) ;;
    esac
    LOAD=(-t 1 "${LOAD[@]}" --key-pattern R:R "${KEYS[@]}")
}

# --- header -----------------------------------------------------------------------
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -z "$(git -C "$ROOT" status --porcelain -- src vendor Cargo.toml Cargo.lock bench/raw_loop.rs 2>/dev/null)" ] || commit="$commit + uncommitted changes"
echo "raw_loop.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU(s) \"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)\", kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  servers on CPU 0, memtier on CPU 1; repository at $commit"
echo "  memcached: $("$MEMCACHED" -V 2>/dev/null || echo '?'); memtier: $("$MEMTIER" --version 2>/dev/null | head -1)"
[ ! -e "$WORK/memcore.bin" ] || echo "  memcore: $MEMCORE_BIN (built $(date -u -r "$MEMCORE_BIN" '+%Y-%m-%d %H:%M UTC'))"
[ ! -e "$WORK/memcore-head.bin" ] || echo "  memcore-head: $MEMCORE_HEAD_BIN (built $(date -u -r "$MEMCORE_HEAD_BIN" '+%Y-%m-%d %H:%M UTC'))"
[ ! -e "$WORK/raw_loop.bin" ] || echo "  raw_loop: $RAW_LOOP (built $(date -u -r "$RAW_LOOP" '+%Y-%m-%d %H:%M UTC'))"
echo "  servers: $SERVERS"

# --- syscalls per request / perf record --------------------------------------------
if [ "$SYSCALLS" = 1 ] || [ "$PERF_RECORD" = 1 ]; then
    profile_args get-heavy
    passes=()
    [ "$SYSCALLS" = 0 ] || passes+=(syscalls)
    [ "$PERF_RECORD" = 0 ] || passes+=(record)
    for pass in "${passes[@]}"; do
        echo
        if [ "$pass" = syscalls ]; then
            echo "Syscalls on CPU 0 per request (get-heavy, perf stat -e 'syscalls:sys_enter_*' -a -C 0 -- sleep 4;"
            echo "requests = the server's cmd_get + cmd_set over the same window; syscalls under 0.005 per request left out):"
        else
            echo "Flat profile of CPU 0 (get-heavy, perf record -C 0 -- sleep 4; perf report --sort dso,sym, top 12):"
        fi
        for srv in $SERVERS; do
            tag=$pass.$srv
            wait_quiet
            start_server "$srv" "$WORK/$tag.server.log"
            prefill "$WORK/$tag.prefill.log"
            taskset -c 1 "$MEMTIER" -s 127.0.0.1 -p "$PORT" -P memcache_text "${LOAD[@]}" --test-time 10 \
                >"$WORK/$tag.memtier.log" 2>&1 &
            gen=$!
            sleep 2
            # The requests are counted inside the perf window: the command
            # perf runs reads the server's stats, sleeps 4 s, reads them
            # again (pinned to CPU 1, so that its own syscalls are not counted).
            window="$(declare -f server_reqs); PORT=$PORT; server_reqs >'$WORK/$tag.r0'; sleep 4; server_reqs >'$WORK/$tag.r1'"
            if [ "$pass" = syscalls ]; then
                perf stat -x, -o "$WORK/$tag.perf" -e 'syscalls:sys_enter_*' -a -C 0 -- \
                    taskset -c 1 bash -c "$window" >/dev/null 2>"$WORK/$tag.perf.err" &
            else
                perf record -q -o "$WORK/$tag.data" -C 0 -- \
                    taskset -c 1 bash -c "$window" >/dev/null 2>"$WORK/$tag.perf.err" &
            fi
            PERF_PID=$!
            wait "$PERF_PID" || { cat "$WORK/$tag.perf.err" >&2; die "$srv: perf failed"; }
            PERF_PID=""
            r0=$(cat "$WORK/$tag.r0") r1=$(cat "$WORK/$tag.r1")
            wait "$gen" || die "$srv: memtier failed"
            stop_server
            reqs=$((r1 - r0))
            if [ "$pass" = syscalls ]; then
                awk -F, -v srv="$srv" -v reqs="$reqs" '
                    $3 ~ /^syscalls:sys_enter_/ && $1 ~ /^[0-9]+$/ {
                        n = $1 / reqs; name = $3; sub(/^syscalls:sys_enter_/, "", name)
                        tot += n
                        if (n >= 0.005) out = out sprintf(" %s %.2f,", name, n)
                    }
                    END { sub(/,$/, "", out); printf "  %-22s %9d requests: %.2f syscalls/request:%s\n", srv, reqs, tot, out }
                ' "$WORK/$tag.perf"
            else
                echo "  $srv ($reqs requests in the window):"
                perf report -q -i "$WORK/$tag.data" --sort dso,sym --stdio 2>/dev/null \
                    | awk 'NF && $1 ~ /%$/ && n++ < 12 { print "    " $0 }' || true
            fi
        done
    done
    exit 0
fi

# --- rounds ----------------------------------------------------------------------------
: >"$WORK/results.tsv"
for prof in $PROFILES; do
    profile_args "$prof"
    echo
    echo "$prof: memtier ${LOAD[*]} --test-time $TIME"
    for r in $(seq 1 "$ROUNDS"); do
        for srv in $SERVERS; do
            tag=$prof.r$r.$srv
            wait_quiet
            start_server "$srv" "$WORK/$tag.server.log"
            prefill "$WORK/$tag.prefill.log"
            c0=$(cpu_ticks "$SERVER_PID"); o0=$(cpu0_ticks)
            taskset -c 1 "$MEMTIER" -s 127.0.0.1 -p "$PORT" -P memcache_text "${LOAD[@]}" --test-time "$TIME" \
                >"$WORK/$tag.memtier.log" 2>&1 || { tail -3 "$WORK/$tag.memtier.log" >&2; die "$tag: memtier failed"; }
            kill -0 "$SERVER_PID" 2>/dev/null || die "$tag: the server died"
            c1=$(cpu_ticks "$SERVER_PID"); o1=$(cpu0_ticks)
            stop_server
            row=$(awk -v prof="$prof" -v srv="$srv" -v r="$r" -v t="$TIME" -v hz="$HZ" \
                    -v cs="$((c1 - c0))" -v os="$((o1 - o0))" '
                $1 == "Totals" { ops = $2; hits = $3; miss = $4 }
                END {
                    if (ops == "") exit 1
                    if (hits == "---") hits = 0; if (miss == "---") miss = 0
                    cpu = cs / hz; other = (os - cs) / hz; if (other < 0) other = 0
                    hit = (hits + miss > 0) ? sprintf("%.1f", 100 * hits / (hits + miss)) : "-"
                    printf "%s\t%s\t%d\t%.0f\t%.2f\t%.1f\t%.0f\t%s\t%.2f\n", prof, srv, r, ops, cpu,
                        100 * cpu / t, (cpu > 0) ? ops * t / cpu : 0, hit, other
                }' "$WORK/$tag.memtier.log") || die "$tag: no Totals line in memtier's output"
            echo "$row" >>"$WORK/results.tsv"
            awk -F'\t' '{ printf "  round %d %-22s %9.0f ops/s  server CPU %5.2f s (%5.1f%%)  %8.0f ops/CPU-s  hits %s%%  other CPU0 %.2f s\n",
                $3, $2, $4, $5, $6, $7, $8, $9 }' <<<"$row"
        done
    done
done

# --- tables ------------------------------------------------------------------------------
echo
echo "median [min .. max] over $ROUNDS round(s) of $TIME s.  ops/CPU-s = ops / server CPU-second (utime+stime"
echo "during the measured pass).  x memcached = ratio to memcached's run in the same round.  other CPU0-s ="
echo "busy time of CPU 0 outside the server during the pass (disturbance)."
for prof in $PROFILES; do
    echo
    echo "#### $prof"
    echo
    awk -F'\t' -v prof="$prof" -v R="$ROUNDS" -v servers="$SERVERS" '
        function sort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
        function med(a, n) { return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
        function f(x, d) { return sprintf("%." d "f", x) }
        function summ(a, n, d) { sort(a, n); return (n == 1) ? f(a[1], d) : f(med(a, n), d) " [" f(a[1], d) " .. " f(a[n], d) "]" }
        function col(s, c, d,   n, r, x) { n = 0; for (r = 1; r <= R; r++) if ((s, r) in have && v[s, r, c] != "-") x[++n] = v[s, r, c]; return n ? summ(x, n, d) : "-" }
        function ratio(s, c,   n, r, x) {
            n = 0
            for (r = 1; r <= R; r++) if ((s, r) in have && ("memcached", r) in have && v["memcached", r, c] > 0) x[++n] = v[s, r, c] / v["memcached", r, c]
            return n ? summ(x, n, 2) : "-"
        }
        $1 == prof { have[$2, $3] = 1; for (c = 4; c <= NF; c++) v[$2, $3, c] = $c }
        END {
            print "| server | ops/s | server CPU % | ops/CPU-s | ops/s x memcached | ops/CPU-s x memcached | get hit % | other CPU0-s |"
            print "|---|---|---|---|---|---|---|---|"
            ns = split(servers, S, " ")
            for (i = 1; i <= ns; i++) {
                s = S[i]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s, col(s, 4, 0), col(s, 6, 0), col(s, 7, 0),
                    ratio(s, 4), ratio(s, 7), col(s, 8, 1), col(s, 9, 2)
            }
        }' "$WORK/results.tsv"
done
echo
[ "$KEEP" = 0 ] || echo "raw results: $WORK/results.tsv (profile server round ops_s cpu_s cpu_pct ops_per_cpu_s hit_pct other_cpu0_s); logs in $WORK"
