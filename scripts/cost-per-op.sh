#!/usr/bin/env bash
# What one operation costs the whole machine, for Synod and for redis-server
# side by side: throughput, machine CPU busy, CPU time per op, TCP segments
# per op and context switches per op, from /proc/stat and /proc/net/snmp over
# the middle of each run. The counters are machine-wide, so run it on an
# otherwise quiet machine; the load generator is included in every figure.
#
#   scripts/cost-per-op.sh [--systems "synod-local3 redis"] [--clients "64 128"]
#                          [--workload set|get] [--rounds N]
#
# synod-local3 is configs/local-3.toml through scripts/cluster.sh with fresh
# data (under run/cost-local-3/); redis is one redis-server on 127.0.0.1:16379 without persistence (as
# in scripts/bench.sh). Rounds alternate the systems, since this machine is
# shared and noisy. Each run: 256-byte values, 10,000 keys, 10 s (1 s warmup),
# counters sampled over 5 s in the middle, load generator at nice -5 when
# root. docs/bench/perf.md ("Fifth pass") shows what the figures mean.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { echo "cost-per-op.sh: $*" >&2; exit 1; }

systems="synod-local3 redis"
clients="64 128"
workload="set"
rounds=1
while [ $# -gt 0 ]; do
    case "$1" in
        --systems) systems=${2:?}; shift 2 ;;
        --clients) clients=${2:?}; shift 2 ;;
        --workload) workload=${2:?}; shift 2 ;;
        --rounds) rounds=${2:?}; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
case "$workload" in set|get) ;; *) die "--workload must be set or get: $workload" ;; esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer: $rounds"
for c in $clients; do [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "--clients: not a positive integer: $c"; done
for s in $systems; do
    case "$s" in synod-local3|redis) ;; *) die "unknown system: $s (synod-local3 redis)" ;; esac
done
if ! [ -r /proc/stat ] || ! [ -r /proc/net/snmp ]; then die "needs Linux /proc counters"; fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
export SYNOD_BIN=$target_dir/release/synod
export RUST_LOG=${RUST_LOG:-warn}
loadgen=$target_dir/release/synod-loadgen
# A copy under its own name: cluster.sh then keeps this script's pids, logs
# and data in run/cost-local-3/, apart from a cluster the user started from
# configs/local-3.toml (cluster.sh refuses ports another process holds).
cfg=run/cost-local-3.toml
mkdir -p run
cp configs/local-3.toml "$cfg"
nice_level=0
[ "$(id -u)" = 0 ] && nice_level=-5

synod_running=0
redis_pid=""
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
    [ "$synod_running" = 1 ] && scripts/cluster.sh down "$cfg" >/dev/null 2>&1
    synod_running=0
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    redis_pid=""
}
trap cleanup EXIT

echo "== building synod and synod-loadgen (release)" >&2
cargo build -q --release -p synod-node --bin synod
cargo build -q --release -p synod-loadgen
if [[ " $systems " == *" redis "* ]]; then command -v redis-server >/dev/null || die "redis-server is not installed (scripts/bench.sh installs it)"; fi

# start SYSTEM: sets `target` to the load generator's target. Not called in a
# command substitution: the subshell would keep the pids cleanup needs.
target=""
start() {
    case "$1" in
        synod-local3)
            scripts/cluster.sh down "$cfg" >/dev/null 2>&1 || true
            rm -rf "run/$(basename "$cfg" .toml)"
            synod_running=1
            scripts/cluster.sh up "$cfg" >/dev/null || die "the cluster did not start (scripts/cluster.sh up $cfg)"
            target=$("$SYNOD_BIN" check-config --config "$cfg" \
                | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^client=/) { sub("client=", "", $i); print $i } }' | paste -sd, -) ;;
        redis)
            ! redis-cli -p 16379 PING >/dev/null 2>&1 || die "something already answers on 127.0.0.1:16379"
            redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
            redis_pid=$!
            local _
            for _ in $(seq 50); do redis-cli -p 16379 PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
            target=127.0.0.1:16379 ;;
    esac
}

segs() { awk '/^Tcp:/ && $2 ~ /^[0-9]/ { print $12 }' /proc/net/snmp; }   # OutSegs
switches() { awk '/^ctxt/ { print $2 }' /proc/stat; }

measure() { # SYSTEM CLIENTS
    local out lp s0 s1 g0 g1 c0 c1 ops p99
    start "$1"
    out=$(mktemp)
    local args=(--target "resp://$target" --clients "$2" --workload "$workload" --keys 10000 --value-size 256
        --duration 10 --warmup 1)
    [ "$workload" = get ] && args+=(--preload)
    nice -n "$nice_level" "$loadgen" "${args[@]}" >"$out" 2>&1 &
    lp=$!
    sleep 4
    g0=$(segs); c0=$(switches); s0=$(head -1 /proc/stat)
    sleep 5
    s1=$(head -1 /proc/stat); g1=$(segs); c1=$(switches)
    wait "$lp" || { cat "$out" >&2; die "load generator failed on $1"; }
    cleanup
    ops=$(grep -oE '[0-9]+ ops/s' "$out" | head -1 | cut -d' ' -f1)
    p99=$(grep -oE 'p99 [0-9.]+' "$out" | head -1 | cut -d' ' -f2)
    rm -f "$out"
    if [ -z "$ops" ] || [ "$ops" -eq 0 ]; then die "no throughput figure from the load generator on $1"; fi
    paste <(echo "$s0" | tr -s ' ' '\n' | tail -n +2) <(echo "$s1" | tr -s ' ' '\n' | tail -n +2) \
        | awk -v sys="$1" -v c="$2" -v ops="$ops" -v p99="$p99" -v segs=$((g1 - g0)) -v cs=$((c1 - c0)) \
            -v cpus="$(nproc)" '
            { d[NR] = $2 - $1; t += $2 - $1 }
            END {
                busy = 1 - (d[4] + d[5]) / t   # idle + iowait
                printf "| %s | %d | %d | %s | %.0f %% | %.1f | %.2f | %.2f | %.0f / %.0f / %.0f |\n",
                    sys, c, ops, p99, 100 * busy, busy * cpus * 1e6 / ops, segs / 5 / ops, cs / 5 / ops,
                    100 * d[1] / t, 100 * d[3] / t, 100 * d[7] / t
            }'
}

echo "| system | clients | ops/s | p99 ms | machine busy | CPU µs/op | TCP segs/op | ctx switches/op | user / sys / softirq % |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for _ in $(seq "$rounds"); do
    for c in $clients; do
        for s in $systems; do measure "$s" "$c"; done
    done
done
