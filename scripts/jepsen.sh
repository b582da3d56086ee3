#!/usr/bin/env bash
# Runs the Jepsen-style fault-injection harness against real synod nodes.
#
#   scripts/jepsen.sh [--nemesis NAME] [--time SECONDS] [--seed N] [--nodes 3|5] [--layout colocated|split] [other synod-jepsen flags]
#   scripts/jepsen.sh --cleanup        remove leftover synod-j* namespaces, veths and the bridge
#
# NAME: none, kill, pause, partition, isolate-leader, bridge, one-way,
# kill-all, delay, or all (default). Needs root (network namespaces,
# iptables inside them); installs iproute2 and iptables with apt-get if
# missing. Builds release `synod` and `synod-jepsen`; each run writes
# run/jepsen/<timestamp>/ (history.jsonl, history.lincheck.jsonl,
# faults.jsonl, logs/, summary.txt).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { echo "jepsen.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0 $*)"

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "please install: ${missing[*]}"
    echo "installing ${missing[*]}..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables >/dev/null
fi

target=${CARGO_TARGET_DIR:-$root/target}
echo "building synod and synod-jepsen (release)..." >&2
# One at a time, so synod is the same build cluster.sh and bench.sh use.
cargo build -q --release -p synod-node --bin synod
cargo build -q --release -p synod-jepsen --bin synod-jepsen

exec "$target/release/synod-jepsen" --bin "$target/release/synod" --out "$root/run/jepsen" "$@"
