#!/usr/bin/env bash
# Measures what issue 3 asks for, on a fresh local-3 cluster (release build):
#   - disk use and resident memory per node while 1,000,000 SETs over 10,000
#     keys go in (sampled every 250,000: they must stay flat);
#   - acceptor fsyncs per acknowledged write at 64 clients;
#   - restart time of a node with a full log and a snapshot;
#   - catch-up time of a replica that is far behind (killed during writes).
# Usage: scripts/durability-bench.sh [TOTAL_WRITES] [BEHIND_WRITES]
# Needs redis-benchmark and redis-cli (apt-get install redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-1000000}
behind=${2:-200000}
step=$((total / 4))

command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (redis-tools)"; exit 1; }
scripts/cluster.sh down configs/local-3.toml >/dev/null 2>&1 || true
rm -rf run/local-3
RUST_LOG=warn scripts/cluster.sh up configs/local-3.toml >/dev/null
pid() { cat "run/local-3/pids/$1.pid"; }
field() { redis-cli -p "$1" SYNOD.STATUS | awk -v f="$2" 'prev == f { print; exit } { prev = $0 }'; }
sample() {
    for n in 1 2 3; do
        local p; p=$(pid "n$n")
        printf '  n%s: disk %6s KiB  rss %7s KiB  applied %8s  snapshot %8s  acceptor.log %9s B\n' "$n" \
            "$(du -sk "run/local-3/data/n$n" | cut -f1)" "$(awk '/VmRSS/ {print $2}' "/proc/$p/status")" \
            "$(field 700$n applied)" "$(field 700$n snapshot)" "$(stat -c %s "run/local-3/data/n$n/acceptor.log")"
    done
}

echo "== $total SETs over 10000 keys, 64 clients, 100-byte values"
f0=$(field 7001 acceptor_fsyncs)
for i in 1 2 3 4; do
    redis-benchmark -p $((7000 + (i % 3) + 1)) -t set -n "$step" -r 10000 -c 64 -d 100 -q 2>&1 | grep -a -o 'SET: [0-9.]* requests per second.*' | tail -1
    echo " after $((i * step)) writes:"
    sample
done
f1=$(field 7001 acceptor_fsyncs)
awk -v a="$f0" -v b="$f1" -v n="$total" 'BEGIN { printf "fsyncs per acknowledged write (n1 acceptor): %.4f (%d fsyncs / %d writes)\n", (b - a) / n, b - a, n }'

echo "== restart of n3 (full log and snapshot)"
want=$(field 7001 applied)
scripts/cluster.sh kill n3 >/dev/null
start=$(date +%s%N)
scripts/cluster.sh start n3 >/dev/null
until [ "$(field 7003 applied 2>/dev/null || echo 0)" -ge "$want" ] 2>/dev/null; do sleep 0.01; done
echo "restart: serving and caught up to slot $want after $(( ($(date +%s%N) - start) / 1000000 )) ms"

echo "== catch-up of n3 after it missed $behind slots"
scripts/cluster.sh kill n3 >/dev/null
before=$(field 7001 applied)
# The leader batches several commands into one slot, so keep writing until n3
# is $behind slots (not writes) behind; bounded at 40 rounds.
writes=0
for _ in $(seq 40); do
    redis-benchmark -p 7001 -t set -n 100000 -r 10000 -c 64 -d 100 -q 2>&1 | grep -a -o 'SET: [0-9.]* requests per second.*' | tail -1
    writes=$((writes + 100000))
    [ $(( $(field 7001 applied) - before )) -lt "$behind" ] || break
done
want=$(field 7001 applied)
echo "n3 is $((want - before)) slots behind ($writes writes)"
start=$(date +%s%N)
scripts/cluster.sh start n3 >/dev/null
until [ "$(field 7003 applied 2>/dev/null || echo 0)" -ge "$want" ] 2>/dev/null; do sleep 0.02; done
echo "catch-up: $(( ($(date +%s%N) - start) / 1000000 )) ms (digest n1 $(field 7001 digest), n3 $(field 7003 digest))"
sample
scripts/cluster.sh down >/dev/null
