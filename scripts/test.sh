#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# formatting, lints, unit + integration tests, the deterministic simulator
# over many seeds, a smoke run of scripts/cluster.sh with redis-cli, and a
# bounded Jepsen-style fault run with a linearizability check.
#
# SIM_SEEDS (default 5000) sets how many simulator seeds run: seeds
# 0..SIM_SEEDS, the same every run, then as many fresh ones from
# SIM_START (default: drawn from the clock and printed), so that every CI
# run explores schedules no earlier run tried. A failure prints the command
# that replays its seed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -E 'clippy|rustfmt' || true
command -v cargo-clippy >/dev/null || rustup component add clippy rustfmt

step "cargo fmt --check"
cargo fmt --all -- --check

# The storage engine benchmark (crates/storage-bench) pulls in redb and fjall
# only to compare them; it is built by its own command, not by the suite.
step "cargo clippy -D warnings"
cargo clippy --workspace --exclude synod-storage-bench --all-targets -q -- -D warnings

step "unit and integration tests"
cargo test --workspace --exclude synod-storage-bench -q

sim_seeds=${SIM_SEEDS:-5000}
# Clock seconds times 10,000: far above the fixed range, and runs started
# in different seconds get disjoint ranges (up to 10,000 seeds).
sim_start=${SIM_START:-$(( $(date +%s) * 10000 ))}
step "simulator: seeds 0..$sim_seeds, then $sim_seeds fresh seeds from $sim_start (SIM_START=$sim_start replays them)"
cargo run -q --release -p synod-sim -- --seeds "$sim_seeds"
cargo run -q --release -p synod-sim -- --seeds "$sim_seeds" --start "$sim_start"
# Sim values are a few bytes, so no message ever reaches the real 4 MiB
# budget; with a one-byte budget every promise, fetch and catch-up answer
# that gathers several slots comes in pieces, under the same faults.
step "simulator, one item per message: $(( sim_seeds / 5 )) seeds with --stress from $sim_start"
cargo run -q --release -p synod-sim -- --seeds "$(( sim_seeds / 5 ))" --start "$sim_start" --tiny-messages --stress

step "cluster.sh smoke (redis-cli against a 3-process cluster)"
scripts/smoke-cluster.sh

# Keeps scripts/bench.sh and the load generator working: Synod only, 1 and
# 16 clients, 2 s each; fails on any error. The etcd/Redis comparison runs
# outside CI (scripts/bench.sh), its figures live in docs/bench/.
step "benchmark smoke (scripts/bench.sh --smoke)"
scripts/bench.sh --smoke

# Real processes in network namespaces, every nemesis once (tc netem delay
# only where the kernel has it), 10 clients, history checked for
# linearizability. A failing run keeps run/jepsen/<timestamp>/ (history,
# seed, faults, node logs). JEPSEN_SEED=N replays a schedule.
step "jepsen: all nemeses, linearizability checked"
if [ "$(id -u)" = 0 ] && [ -z "${SKIP_JEPSEN:-}" ]; then
    # Think time and 8 keys keep the history (~150k ops) within the
    # checker's budget; without them a release build records ~1M ops.
    trap 'scripts/jepsen.sh --cleanup >/dev/null 2>&1 || true' EXIT
    scripts/jepsen.sh --nemesis all --time "${JEPSEN_TIME:-90}" --seed "${JEPSEN_SEED:-$(date +%s)}" \
        --keys 8 --think-ms 10
else
    echo "skipped: network namespaces need root (or SKIP_JEPSEN is set)"
fi

echo
echo "all checks passed"
