#!/usr/bin/env bash
# Smoke test of the operator workflow a new user follows: cluster.sh up,
# redis-cli SET/GET across nodes, kill the leader, write again, down.
# Uses a debug build and its own run folder; installs redis-tools if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-cli >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq redis-tools) >/dev/null
    else
        echo "redis-cli missing and cannot be installed here: skipping smoke"; exit 0
    fi
fi

export SYNOD_PROFILE=debug
cfg=configs/local-3.toml
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
rm -rf run/local-3
scripts/cluster.sh up "$cfg"
[ "$(redis-cli -p 7001 SET a 1)" = OK ]
[ "$(redis-cli -p 7002 GET a)" = 1 ]
redis-benchmark -p 7001 -t set,get -n 2000 -c 10 -q | tee run/smoke-bench.txt
grep -q 'requests per second' run/smoke-bench.txt
leader=$(scripts/cluster.sh leader)
port=$((7000 + ${leader#n}))
scripts/cluster.sh kill "$leader"
other=7001; [ "$port" = 7001 ] && other=7002
start=$(date +%s%N)
until [ "$(redis-cli -p $other SET b 2 2>/dev/null)" = OK ]; do
    [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 10000 ] || { echo "no write 10s after leader kill"; exit 1; }
    sleep 0.05
done
echo "failover: write acknowledged $(( ($(date +%s%N) - start) / 1000000 )) ms after killing leader $leader"
[ "$(redis-cli -p $other GET a)" = 1 ]
scripts/cluster.sh start "$leader"
scripts/cluster.sh status
echo "smoke ok"
