# shellcheck shell=bash
# Named load profiles for memtier_benchmark (memcache_text protocol) and for
# the built-in generator memcore-bench, which takes the same flags.
# Sourced by bench/memtier/run-profile.sh and scripts/compare; defines each
# profile's load-generator arguments once.
#
# profile_load NAME sets:
#   P_DESC          one-line description
#   P_ARGS[@]       generator args for the measured pass (without -s -p -t
#                   --test-time, which the caller adds)
#   P_PREFILL[@]    generator args of the prefill pass (every key of the
#                   range set once, sequentially), empty if no prefill
#   P_KEYS_PER_GET  keys per get command (1, or N for multi-get)
#   P_KEYMAX        top of the key range
# and returns 1 for an unknown name.
#
# -c is per generator thread, as in memtier; with the default one generator
# thread it is the number of connections.  Values are random (incompressible,
# --random-data).  Keys are memtier's "memtier-N", N in 1..P_KEYMAX.

PROFILES_ALL="get-heavy set-only pipelined multi-get large dragonfly-set dragonfly-get"

profile_load() {
    local name=$1 size keymax
    P_KEYS_PER_GET=1
    case $name in
        get-heavy)
            P_DESC="1 set : 10 gets, 50 connections, 100-byte values, 100k keys"
            size=100; keymax=100000
            P_ARGS=(-c 50 --ratio 1:10) ;;
        set-only)
            P_DESC="sets only, 50 connections, 100-byte values, 100k keys"
            size=100; keymax=100000
            P_ARGS=(-c 50 --ratio 1:0) ;;
        pipelined)
            P_DESC="1:10, 50 connections, 16 requests in flight per connection, 100-byte values"
            size=100; keymax=100000
            P_ARGS=(-c 50 --pipeline 16 --ratio 1:10) ;;
        multi-get)
            P_DESC="gets only, 10 keys per get, 50 connections, 100-byte values"
            size=100; keymax=100000
            # memtier: with --multi-key-get N the get side of --ratio counts
            # keys, batched up to N per get; 0:10 = gets of 10 keys, no sets.
            P_ARGS=(-c 50 --ratio 0:10 --multi-key-get 10)
            P_KEYS_PER_GET=10 ;;
        large)
            P_DESC="1:10, 50 connections, 16 KiB values, 20k keys (330 MB)"
            size=16384; keymax=20000
            P_ARGS=(-c 50 --ratio 1:10) ;;
        dragonfly-set|dragonfly-get)
            # Dragonfly's published memcached comparison (README, "Dragonfly
            # vs. Memcached"): memtier_benchmark --ratio ... -t <threads>
            # -c 30 -n 200000 --distinct-client-seed -d 256, one SET run
            # (1:0) and one GET run (0:1).  Here: a bounded test time
            # instead of -n 200000, and a 100k key range (their command
            # leaves memtier's default 1..10M) so GET hits after prefill.
            size=256; keymax=100000
            if [ "$name" = dragonfly-set ]; then
                P_DESC="Dragonfly's memcached comparison, SET run: -c 30 -d 256 --ratio 1:0"
                P_ARGS=(-c 30 --ratio 1:0 --distinct-client-seed)
            else
                P_DESC="Dragonfly's memcached comparison, GET run: -c 30 -d 256 --ratio 0:1"
                P_ARGS=(-c 30 --ratio 0:1 --distinct-client-seed)
            fi ;;
        *) return 1 ;;
    esac
    P_KEYMAX=$keymax
    local common=(--random-data -d "$size" --key-minimum 1 --key-maximum "$keymax" --hide-histogram)
    P_ARGS=("${common[@]}" "${P_ARGS[@]}")
    case $name in
        set-only|dragonfly-set) P_PREFILL=() ;;
        *) P_PREFILL=("${common[@]}" -c 1 --pipeline 32 --ratio 1:0 --key-pattern P:P -n allkeys) ;;
    esac
    return 0
}

# Where the generators are.  MEMTIER / MEMCORE_BENCH override.
find_memtier() {
    local m=${MEMTIER:-$(command -v memtier_benchmark || true)}
    [ -n "$m" ] && [ -x "$m" ] && echo "$m"
}
find_builtin() {
    local root b
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    b=${MEMCORE_BENCH:-$root/target/release/memcore-bench}
    [ -x "$b" ] && echo "$b"
}

memtier_howto() {
    cat >&2 <<'EOF'
memtier_benchmark not found (set $MEMTIER or put it on PATH).  To get it,
build it outside this tree:
  apt-get install autoconf automake libtool libevent-dev libssl-dev zlib1g-dev
  git clone https://github.com/RedisLabs/memtier_benchmark && cd memtier_benchmark
  autoreconf -ivf && ./configure && make      # then: make install, or MEMTIER=$PWD/memtier_benchmark
Meanwhile the built-in generator is used if present (target/release/memcore-bench,
cargo build --release; or set $MEMCORE_BENCH).
EOF
}

# Generator args that memcore-bench does not take.
builtin_filter_args() {
    local a
    for a in "$@"; do
        case $a in
            --protocol=*|--distinct-client-seed) ;;
            *) printf '%s\n' "$a" ;;
        esac
    done
}

# utime+stime in clock ticks of a process, all its threads (/proc/PID/stat
# fields 14 and 15; the command name may contain spaces, so cut after ')').
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
