#!/usr/bin/env bash
# Compares Synod with etcd and Redis under the same closed-loop load, on this
# machine, in one run: 256-byte values over 10,000 keys, SET (etcd: put) and
# GET (etcd: linearizable range, keys preloaded) at each client count.
#
#   scripts/bench.sh [--duration SECS] [--clients "1 16 64 256"]
#                    [--systems "synod-local3 synod-split etcd redis"] (also: etcd-gateway)
#                    [--loadgen-nice N] [--repeat N] [--pipeline D]
#   scripts/bench.sh --smoke
#
# Systems, one at a time, each started fresh and stopped afterwards:
#   synod-local3  configs/local-3.toml via scripts/cluster.sh, from a copy under run/
#                 (pids, logs, data in run/bench-local-3/, wiped first)
#   synod-split   configs/split-roles.toml the same way (run/bench-split-roles/)
#   etcd          3 members from Debian's etcd-server on 127.0.0.1:{1,2,3}2379
#                 (peers :{1,2,3}2380), data under run/bench/etcd-*, default fsync,
#                 driven over its native gRPC (HTTP/2), as its own clients do
#   etcd-gateway  the same cluster through its v3 JSON gateway (HTTP/1.1); the
#                 gateway's own cost counts against etcd, so it is not the
#                 default (earlier tables up to 37ea92a used it)
#   redis         one redis-server on 127.0.0.1:16379, no persistence
# Clients are spread round-robin over every client address of the system.
# The load generator runs at nice -5 (default when root; 0 otherwise): it is
# the measuring instrument, and on two shared cores the servers' processes
# would otherwise preempt it and its own delays would count as theirs.
# etcd-server / redis-server are installed with apt-get if missing.
#
# --repeat N measures every point N times in a row (default 1); the table
# shows each point's median run, since this machine is shared and noisy.
# Output: run/bench/results.jsonl (one line per run), then `synod-loadgen
# report` writes docs/bench/{results.md,throughput.svg,latency.svg} and
# copies the raw runs to docs/bench/results.jsonl.
# --pipeline D: clients share connections, D per connection, so each
# connection carries pipelines up to D deep (redis-benchmark -P style; for
# etcd, D concurrent HTTP/2 streams per connection); systems default to
# "synod-local3 redis" and the report goes to docs/bench/pipelined/ (raw
# runs under run/bench/pipelined/), leaving the headline table alone.
# --smoke: synod-local3 only, clients 1 and 16, 2 s each, output under
# run/bench/smoke/ (docs/bench untouched); fails if any run has 0 ops or
# any error. Builds with cargo (honours CARGO_TARGET_DIR) before anything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { echo "bench.sh: $*" >&2; exit 1; }
usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; }

duration=10
warmup=1
clients="1 16 64 256"
systems="synod-local3 synod-split etcd redis"
smoke=0
repeat=1
pipeline=0
systems_given=0
loadgen_nice=0
[ "$(id -u)" = 0 ] && loadgen_nice=-5
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=${2:?--duration needs a value}; shift 2 ;;
        --clients) clients=${2:?--clients needs a value}; shift 2 ;;
        --systems) systems=${2:?--systems needs a value}; systems_given=1; shift 2 ;;
        --pipeline) pipeline=${2:?--pipeline needs a value}; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --repeat) repeat=${2:?--repeat needs a value}; shift 2 ;;
        --loadgen-nice) loadgen_nice=${2:?--loadgen-nice needs a value}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ "$pipeline" =~ ^[0-9]+$ ]] || die "--pipeline must be a whole number of requests per connection: $pipeline"
if [ "$smoke" = 1 ]; then
    systems="synod-local3"; clients="1 16"; duration=2; warmup=0.5
    out=run/bench/smoke; report_dir=run/bench/smoke
elif [ "$pipeline" -gt 0 ]; then
    [ "$systems_given" = 1 ] || systems="synod-local3 redis"
    out=run/bench/pipelined; report_dir=docs/bench/pipelined
else
    out=run/bench; report_dir=docs/bench
fi
if ! [[ "$duration" =~ ^[0-9]+([.][0-9]+)?$ ]] || ! awk -v d="$duration" 'BEGIN { exit !(d > 0) }'; then
    die "--duration must be a positive number of seconds: $duration"
fi
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive integer: $repeat"
if ! [[ "$loadgen_nice" =~ ^-?[0-9]+$ ]] || [ "$loadgen_nice" -lt -20 ] || [ "$loadgen_nice" -gt 19 ]; then
    die "--loadgen-nice must be an integer from -20 to 19: $loadgen_nice"
fi
for c in $clients; do [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "--clients: not a positive integer: $c"; done
[ -n "${clients// /}" ] || die "--clients is empty"
[ -n "${systems// /}" ] || die "--systems is empty"
for s in $systems; do
    case "$s" in synod-local3|synod-split|etcd|etcd-gateway|redis) ;; *) die "unknown system: $s (synod-local3 synod-split etcd etcd-gateway redis)" ;; esac
done

keys=10000
value_size=256
results=$out/results.jsonl
logs=$out/logs
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
loadgen=$target_dir/release/synod-loadgen
# The synod binary cluster.sh should run: exactly the one built below.
export SYNOD_BIN=$target_dir/release/synod
export RUST_LOG=${RUST_LOG:-warn}

# ---- cleanup: whatever this script started is stopped on exit, error or Ctrl-C
synod_up=()     # the config started with cluster.sh, while it runs
etcd_pids=()
redis_pid=""
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
    local cfg
    for cfg in "${synod_up[@]}"; do scripts/cluster.sh down "$cfg" >/dev/null 2>&1 || true; done
    synod_up=()
    stop_pids "${etcd_pids[@]}" ${redis_pid:+"$redis_pid"}
    etcd_pids=(); redis_pid=""
}
# SIGTERM, up to 10 s to exit (an etcd leader hands over leadership first), then SIGKILL.
stop_pids() {
    local pid i
    [ $# -gt 0 ] || return 0
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 100); do
        local alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
require_free() {
    local p
    for p in "$@"; do port_open "$p" && die "port $p is already in use; stop whatever listens there first"; done
    return 0
}

# ---- build
echo "== building synod-loadgen and synod (release, target dir $target_dir)"
# Built one at a time: building them together would unify their
# dependencies' features and rebuild (and re-LTO) synod once more in CI.
cargo build -q --release -p synod-node --bin synod
cargo build -q --release -p synod-loadgen
[ -x "$loadgen" ] || die "no binary at $loadgen"
[ -x "$SYNOD_BIN" ] || die "no binary at $SYNOD_BIN"

mkdir -p "$out" "$logs"
rm -f "$results"
failed=()

# run_load LABEL TARGET WORKLOAD CLIENTS
run_load() {
    local args=(--target "$2" --workload "$3" --clients "$4" --keys "$keys" --value-size "$value_size"
        --duration "$duration" --warmup "$warmup" --label "$1" --json-out "$results")
    [ "$3" = get ] && args+=(--preload)
    [ "$pipeline" -gt 0 ] && args+=(--connections $(( ($4 + pipeline - 1) / pipeline )))
    local r
    for r in $(seq "$repeat"); do
        if ! nice -n "$loadgen_nice" "$loadgen" "${args[@]}"; then
            failed+=("$1 $3 @$4 clients (run $r of $repeat)")
        fi
    done
}

# run_system LABEL TARGET: every workload at every client count
run_system() {
    local w c
    for w in set get; do
        for c in $clients; do run_load "$1" "$2" "$w" "$c"; done
    done
}

# ---- Synod through cluster.sh, fresh data
synod_bench() { # LABEL CONFIG
    local label=$1 cfg name addrs ports
    # A copy under its own name, so cluster.sh keeps the benchmark's pids,
    # logs and data in run/bench-<config>/, apart from a cluster the user
    # started from the same config (whose data must survive a benchmark).
    name=bench-$(basename "$2" .toml)
    cfg=run/$name.toml
    cp "$2" "$cfg"
    addrs=$("$SYNOD_BIN" check-config --config "$cfg" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^client=/) { sub("client=", "", $i); print $i } }' | paste -sd, -)
    [ -n "$addrs" ] || die "$cfg has no client addresses"
    ports=$("$SYNOD_BIN" check-config --config "$cfg" | grep -o '127\.0\.0\.1:[0-9]*' | sed 's/.*://' | sort -u)
    scripts/cluster.sh down "$cfg" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    require_free $ports
    rm -rf "run/$name"
    echo "== $label: $2, fresh data in run/$name, clients on $addrs"
    synod_up=("$cfg")
    scripts/cluster.sh up "$cfg" >"$logs/$label-up.log" 2>&1 || { cat "$logs/$label-up.log" >&2; die "$label did not start"; }
    run_system "$label" "resp://$addrs"
    scripts/cluster.sh down "$cfg" >/dev/null
    synod_up=()
}

# ---- etcd: 3 members started here; serves both etcd and etcd-gateway
etcd_health() { # PORT: true if /health says so
    local reply
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
    [[ "$reply" == *'"health":"true"'* ]]
}
etcd_bench() {
    command -v etcd >/dev/null || {
        echo "== installing etcd-server (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >"$logs/apt-etcd.log" 2>&1 \
            || { apt-get update -q >>"$logs/apt-etcd.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >>"$logs/apt-etcd.log" 2>&1; } \
            || die "cannot install etcd-server; see $logs/apt-etcd.log"
    }
    require_free 12379 12380 22379 22380 32379 32380
    rm -rf "$out"/etcd-*
    local cluster="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380" i
    echo "== etcd: $(etcd --version | head -1 | sed 's/^etcd Version: //'), 3 members, data in $out/etcd-*"
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$out/etcd-e$i" \
            --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
            --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token synod-bench \
            --logger zap --log-level warn >"$logs/etcd-e$i.log" 2>&1 &
        etcd_pids+=($!)
    done
    local deadline=$((SECONDS + 60))
    until etcd_health 12379 && etcd_health 22379 && etcd_health 32379; do
        [ $SECONDS -lt $deadline ] || die "etcd not healthy after 60 s; see $logs/etcd-e*.log"
        for i in "${etcd_pids[@]}"; do kill -0 "$i" 2>/dev/null || die "an etcd member exited; see $logs/etcd-e*.log"; done
        sleep 0.2
    done
    local addrs=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
    [[ " $systems " == *" etcd "* ]] && run_system etcd "etcd-grpc://$addrs"
    [[ " $systems " == *" etcd-gateway "* ]] && run_system etcd-gateway "etcd://$addrs"
    stop_pids "${etcd_pids[@]}"
    etcd_pids=()
}

# ---- redis: one server, no persistence
redis_bench() {
    command -v redis-server >/dev/null || {
        echo "== installing redis-server (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >"$logs/apt-redis.log" 2>&1 \
            || { apt-get update -q >>"$logs/apt-redis.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >>"$logs/apt-redis.log" 2>&1; } \
            || die "cannot install redis-server; see $logs/apt-redis.log"
    }
    require_free 16379
    echo "== redis: $(redis-server --version | awk '{print $3}'), 127.0.0.1:16379, no persistence"
    redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no >"$logs/redis.log" 2>&1 &
    redis_pid=$!
    local deadline=$((SECONDS + 20))
    until port_open 16379; do
        [ $SECONDS -lt $deadline ] || die "redis-server did not start; see $logs/redis.log"
        kill -0 "$redis_pid" 2>/dev/null || die "redis-server exited; see $logs/redis.log"
        sleep 0.1
    done
    run_system redis "resp://127.0.0.1:16379"
    stop_pids "$redis_pid"
    redis_pid=""
}

started=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for s in $systems; do
    case "$s" in
        synod-local3) synod_bench synod-local3 configs/local-3.toml ;;
        synod-split) synod_bench synod-split configs/split-roles.toml ;;
        etcd) etcd_bench ;;
        # One cluster serves both; started once, where etcd would be.
        etcd-gateway) [[ " $systems " == *" etcd "* ]] || etcd_bench ;;
        redis) redis_bench ;;
    esac
done

[ -s "$results" ] || die "no results were recorded"

# ---- report
notes=$out/setup.md
{
    echo "- Generated by \`scripts/bench.sh$([ "$smoke" = 1 ] && echo " --smoke") --duration $duration --clients \"$clients\" --systems \"$systems\" --repeat $repeat --loadgen-nice $loadgen_nice\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - started)) s."
    echo "- Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')."
    echo "- Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr); load average before the run: $load_before (other work on the machine skews results)."
    echo "- Load generator: \`synod-loadgen\`, single-threaded, same machine, at nice $loadgen_nice (the systems at 0); $([ "$pipeline" -gt 0 ] && echo "clients share connections, $pipeline per connection (pipelines up to $pipeline deep)" || echo "one connection per client"); ${warmup} s warmup; each point measured $repeat time(s) in a row, the table shows the median run (all runs: \`results.jsonl\`); clients spread round-robin over each system's client addresses."
    for s in $systems; do
        case "$s" in
            synod-local3) echo "- synod-local3: \`configs/local-3.toml\`, 3 nodes with every role, acceptors fsync before replying (group commit)." ;;
            synod-split) echo "- synod-split: \`configs/split-roles.toml\`, 9 processes (3 acceptors, 2 proposers, 2 learners, 2 replicas)." ;;
            etcd) echo "- etcd: $(etcd --version 2>/dev/null | head -1 | sed 's/^etcd Version: //'), 3 members, default settings (WAL fsync), native gRPC over HTTP/2 (\`etcdserverpb.KV/Put\` and \`/Range\`, one stream per request); reads are linearizable ranges." ;;
            etcd-gateway) echo "- etcd-gateway: the same etcd cluster through its v3 JSON gateway over HTTP/1.1 keep-alive (the gateway's HTTP, JSON and extra in-process gRPC hop count against etcd)." ;;
            redis) echo "- redis: $(redis-server --version | awk '{print $3}' | sed 's/v=//'), one server, no persistence (\`--save '' --appendonly no\`), not replicated: an upper bound, not a peer." ;;
        esac
    done
} >"$notes"
"$loadgen" report --input "$results" --out-dir "$report_dir" --notes "$notes"
[ "$smoke" = 1 ] || cp "$results" "$report_dir/results.jsonl"

status=0
if [ ${#failed[@]} -gt 0 ]; then
    printf 'bench.sh: run failed: %s\n' "${failed[@]}" >&2
    status=1
fi
if [ "$smoke" = 1 ]; then
    expected=$(( $(wc -w <<<"$clients") * 2 * repeat ))
    got=$(grep -c . "$results")
    [ "$got" -eq "$expected" ] || { echo "bench.sh: smoke: $got of $expected runs recorded" >&2; status=1; }
    awk '{
        ops = 0; err = 0
        if (match($0, /"ops":[0-9]+/)) ops = substr($0, RSTART + 6, RLENGTH - 6) + 0
        if (match($0, /"errors":[0-9]+/)) err = substr($0, RSTART + 9, RLENGTH - 9) + 0
        if (ops == 0 || err > 0) { bad++; print "bench.sh: smoke: bad run (ops " ops ", errors " err "): " $0 > "/dev/stderr" }
    } END { exit bad > 0 }' "$results" || status=1
    [ "$status" = 0 ] && echo "bench.sh: smoke passed ($got runs, no errors)"
fi
exit "$status"
