#!/usr/bin/env bash
# Run one named load profile (bench/memtier/profiles.sh) against a memcached
# protocol server and print one normalized result line on stdout:
#
#   RESULT profile=P generator=G time_s=T ops_s=.. hits_s=.. misses_s=..
#          avg_ms=.. p50_ms=.. p99_ms=.. p999_ms=.. kb_s=.. hit_pct=..
#          keys_s=.. cpu_s=.. cpu_pct=.. ops_per_cpu_s=.. keys_per_cpu_s=..
#          gen_cpu_s=.. other_cpu_s=.. steal_s=..
#
# Figures are the generator's "Totals" line (memtier ALL STATS, or the same
# line of memcore-bench).  keys_s = get keys per second (hits + misses);
# with multi-get that is 10 keys per get.  cpu_s = the server's utime +
# stime (all threads, /proc/PID/stat) over the measured pass, prefill
# excluded; ops_per_cpu_s = ops_s * time_s / cpu_s.  CPU figures need the
# server's pid (--server-pid, else found with `ss -p` for a local port);
# without it they are "-".  gen_cpu_s = the generator's own user + sys CPU
# seconds in the measured pass (wall_s is that pass's wall time); other_cpu_s
# = all other busy CPU time of the machine in that pass (other processes,
# kernel threads, hypervisor steal; /proc/stat), steal_s = the steal part.
#
# Usage: bench/memtier/run-profile.sh [options] PROFILE HOST PORT [extra generator args]
#   --generator memtier|builtin   default memtier; builtin = memcore-bench
#                                 (also used, with a note, when memtier is missing)
#   --time S          measured seconds (default 10)
#   --gen-threads N   generator threads (-t, default 1); -c is per thread
#   --gen-cpus LIST   run the generator under taskset -c LIST
#   --server-pid PID  server process for the CPU accounting
#   --no-prefill      skip the prefill pass
#   --out DIR         keep generator logs / json there (default: temp, removed)
#   --quiet           do not print where the logs are
#   --list            print the profiles and exit
# Env: MEMTIER, MEMCORE_BENCH (generator paths).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=profiles.sh
. "$HERE/profiles.sh"

die() { echo "run-profile: $*" >&2; exit 1; }

GENERATOR=memtier TIME=10 GEN_THREADS=1 GEN_CPUS="" SERVER_PID="" PREFILL=1 OUT="" QUIET=0
while [ $# -gt 0 ]; do
    case $1 in
        --generator) GENERATOR=$2; shift 2 ;;
        --generator=*) GENERATOR=${1#*=}; shift ;;
        --time) TIME=$2; shift 2 ;;
        --gen-threads) GEN_THREADS=$2; shift 2 ;;
        --gen-cpus) GEN_CPUS=$2; shift 2 ;;
        --server-pid) SERVER_PID=$2; shift 2 ;;
        --no-prefill) PREFILL=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        --quiet) QUIET=1; shift ;;
        --list)
            for p in $PROFILES_ALL; do profile_load "$p"; printf '%-14s %s\n' "$p" "$P_DESC"; done; exit 0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (options go before PROFILE)" ;;
        *) break ;;
    esac
done
[ $# -ge 3 ] || die "usage: run-profile.sh [options] PROFILE HOST PORT [extra generator args]"
PROFILE=$1 HOST=$2 PORT=$3; shift 3
EXTRA=("$@")
profile_load "$PROFILE" || die "unknown profile '$PROFILE' (known: $PROFILES_ALL)"
[[ $TIME =~ ^[0-9]+$ ]] && [ "$TIME" -gt 0 ] || die "--time must be a positive integer"

case $GENERATOR in
    memtier)
        if ! GEN=$(find_memtier); then
            memtier_howto
            GEN=$(find_builtin) || die "no load generator: neither memtier_benchmark nor memcore-bench"
            echo "run-profile: falling back to the built-in generator $GEN" >&2
            GENERATOR=builtin
        fi ;;
    builtin)
        GEN=$(find_builtin) || die "memcore-bench not found (cargo build --release, or set MEMCORE_BENCH)" ;;
    *) die "--generator must be memtier or builtin" ;;
esac

if [ -z "$SERVER_PID" ] && { [ "$HOST" = 127.0.0.1 ] || [ "$HOST" = localhost ]; }; then
    SERVER_PID=$(ss -Hltnp "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
fi
[ -z "$SERVER_PID" ] || [ -r "/proc/$SERVER_PID/stat" ] || die "no process $SERVER_PID"

if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$OUT; KEEP=1; else WORK=$(mktemp -d /tmp/run-profile.XXXXXX); KEEP=0; fi
trap '[ "$KEEP" = 1 ] || rm -rf "$WORK"' EXIT
TAG=$PROFILE.$(date +%H%M%S).$$

# CPU seconds (user + sys) of this shell's waited-for children: the generator.
# (`times` must run in this shell, not in a $(...) subshell.)
children_cpu() { times >"$WORK/$TAG.times"; awk 'NR == 2 { split($0, f, /[ ms]+/); print f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$WORK/$TAG.times"; }

# Busy ticks of the whole machine (all CPUs: user nice system irq softirq
# steal) and steal ticks alone, from /proc/stat.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $9 }' /proc/stat; }

PIN=()
[ -z "$GEN_CPUS" ] || PIN=(taskset -c "$GEN_CPUS")

# gen_cmd ARGS... : sets CMD to the generator command line, with the
# protocol args the chosen generator understands.
gen_cmd() {
    local args=(-s "$HOST" -p "$PORT" "$@")
    if [ "$GENERATOR" = memtier ]; then
        args=(--protocol=memcache_text "${args[@]}")
    else
        mapfile -t args < <(builtin_filter_args "${args[@]}")
    fi
    CMD=("${PIN[@]}" "$GEN" "${args[@]}")
}

if [ "$PREFILL" = 1 ] && [ ${#P_PREFILL[@]} -gt 0 ]; then
    gen_cmd -t 1 "${P_PREFILL[@]}"
    if ! timeout 300 "${CMD[@]}" >"$WORK/$TAG.prefill.log" 2>&1; then
        tail -5 "$WORK/$TAG.prefill.log" >&2; die "$PROFILE: prefill failed"
    fi
fi

gen_cmd -t "$GEN_THREADS" "${P_ARGS[@]}" --test-time "$TIME" --json-out-file "$WORK/$TAG.json" "${EXTRA[@]}"
c0=""; [ -z "$SERVER_PID" ] || c0=$(cpu_ticks "$SERVER_PID")
children_cpu >"$WORK/$TAG.g0"
read -r m0 s0 < <(machine_ticks)
t0=$(date +%s.%N)
if ! timeout $((TIME + 60)) "${CMD[@]}" >"$WORK/$TAG.log" 2>&1; then
    tail -5 "$WORK/$TAG.log" >&2; die "$PROFILE: generator failed"
fi
t1=$(date +%s.%N)
children_cpu >"$WORK/$TAG.g1"
read -r m1 s1 < <(machine_ticks)
c1=""; [ -z "$SERVER_PID" ] || { kill -0 "$SERVER_PID" 2>/dev/null || die "$PROFILE: server $SERVER_PID died during the run"; c1=$(cpu_ticks "$SERVER_PID"); }
if grep -qiE 'error|refused|reset' "$WORK/$TAG.log"; then
    echo "run-profile: note: $PROFILE generator log mentions errors:" >&2
    grep -iE 'error|refused|reset' "$WORK/$TAG.log" | head -3 >&2
fi

awk -v prof="$PROFILE" -v gen="$GENERATOR" -v t="$TIME" -v wall="$(echo "$t1 - $t0" | bc)" \
    -v c0="$c0" -v c1="$c1" -v mbusy="$((m1 - m0))" -v msteal="$((s1 - s0))" -v gcpu="$(echo "$(cat "$WORK/$TAG.g1") - $(cat "$WORK/$TAG.g0")" | bc)" -v hz="$(getconf CLK_TCK)" '
    $1 == "Totals" { ops = $2; hits = $3; miss = $4; avg = $5; p50 = $6; p99 = $7; p999 = $8; kb = $9 }
    END {
        if (ops == "") { print "run-profile: no Totals line in the generator output" > "/dev/stderr"; exit 1 }
        if (hits == "---") hits = 0; if (miss == "---") miss = 0
        keys = hits + miss
        hit = (keys > 0) ? sprintf("%.2f", 100 * hits / keys) : "-"
        if (c0 != "" && c1 != "") {
            cs = (c1 - c0) / hz
            cpu = sprintf("%.2f", cs); pct = sprintf("%.1f", 100 * cs / t)
            eff = (cs > 0) ? sprintf("%.0f", ops * t / cs) : "-"
            keff = (cs > 0) ? sprintf("%.0f", keys * t / cs) : "-"
        } else { cpu = pct = eff = keff = "-"; cs = 0 }
        # everything else that ran on the machine meanwhile (other processes,
        # kernel threads, hypervisor steal), in CPU-seconds
        other = sprintf("%.2f", mbusy / hz - cs - gcpu); if (other < 0) other = "0.00"
        steal = sprintf("%.2f", msteal / hz)
        printf "RESULT profile=%s generator=%s time_s=%d wall_s=%.1f ops_s=%.0f hits_s=%.0f misses_s=%.0f avg_ms=%s p50_ms=%s p99_ms=%s p999_ms=%s kb_s=%.0f hit_pct=%s keys_s=%.0f cpu_s=%s cpu_pct=%s ops_per_cpu_s=%s keys_per_cpu_s=%s gen_cpu_s=%.2f other_cpu_s=%s steal_s=%s\n",
            prof, gen, t, wall, ops, hits, miss, avg, p50, p99, p999, kb, hit, keys, cpu, pct, eff, keff, gcpu, other, steal
    }' "$WORK/$TAG.log" || die "$PROFILE: could not parse the generator output (kept in $WORK)"
[ "$KEEP" = 0 ] || [ "$QUIET" = 1 ] || echo "run-profile: logs in $WORK/$TAG.*" >&2
