#!/usr/bin/env bash
# Drives a local multi-process Synod cluster described by a config file.
#
#   scripts/cluster.sh up [CONFIG]   build if needed, start every node, wait for a leader
#   scripts/cluster.sh down          stop every node (SIGTERM, then SIGKILL)
#   scripts/cluster.sh status        per node: pid, state, applied slot, digest, leader
#   scripts/cluster.sh leader        print the id of the node the replicas call leader
#   scripts/cluster.sh kill ID       SIGKILL one node
#   scripts/cluster.sh start ID      start one node again
#   scripts/cluster.sh pause ID      SIGSTOP one node
#   scripts/cluster.sh resume ID     SIGCONT one node
#
# CONFIG defaults to configs/local-3.toml; the other commands act on the
# config of the last `up` (or take it as their second argument: `down CONFIG`). Pid files, logs and data live under run/<config name>/ (git
# ignores run/). SYNOD_BIN overrides the binary; SYNOD_PROFILE=debug builds a
# debug binary instead of release.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p run

die() { echo "cluster.sh: $*" >&2; exit 1; }

profile=${SYNOD_PROFILE:-release}
bin=${SYNOD_BIN:-${CARGO_TARGET_DIR:-$root/target}/$profile/synod}

current_config() {
    if [ -n "${1:-}" ]; then echo "$1"
    elif [ -f run/current-config ]; then cat run/current-config
    else echo configs/local-3.toml; fi
}

case "${1:-}" in
    up) config=${2:-configs/local-3.toml} ;;
    kill|start|pause|resume) config=$(current_config "") ;;
    *) config=$(current_config "${2:-}") ;;
esac
[ -f "$config" ] || die "no such config: $config"
name=$(basename "$config" .toml)
rundir=$root/run/$name
mkdir -p "$rundir/pids" "$rundir/logs"

build() {
    if [ -z "${SYNOD_BIN:-}" ]; then
        local flag=""
        [ "$profile" = release ] && flag=--release
        echo "building synod ($profile)..." >&2
        cargo build -q $flag -p synod-node --bin synod
    fi
    [ -x "$bin" ] || die "no binary at $bin"
}

# "id client_addr" per node, from the validated config.
topology() { "$bin" check-config --config "$config"; }
node_ids() { topology | awk '{print $1}'; }
client_of() { topology | awk -v id="$1" '$1 == id { for (i = 1; i <= NF; i++) if ($i ~ /^client=/) { sub("client=", "", $i); print $i } }'; }
clients() { topology | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^client=/) { sub("client=", "", $i); print $i } }'; }

pid_of() {
    local f=$rundir/pids/$1.pid
    [ -f "$f" ] || return 1
    local pid; pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Sends one RESP command (arguments as words) and prints the raw reply.
resp() {
    local addr=$1; shift
    local host=${addr%:*} port=${addr##*:}
    local req="*$#\r\n" a
    for a in "$@"; do req+="\$${#a}\r\n$a\r\n"; done
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf "%b" "$req" >&3
    local out="" line
    while IFS= read -r -t 3 line <&3; do
        out+="${line%$'\r'}"$'\n'
        # Stop once a complete simple reply or our flat status array is read.
        case "$out" in
            +*|-*|:*) break ;;
            \**) [ "$(printf '%s' "$out" | grep -c '')" -ge $(( $(printf '%s' "${out%%$'\n'*}" | tr -d '*') * 2 + 1 )) ] && break ;;
        esac
    done
    exec 3<&- 3>&-
    printf '%s' "$out"
}

# Addresses (host:port) a node listens on: its peer and client addresses.
listen_addrs_of() { topology | awk -v id="$1" '$1 == id { for (i = 2; i <= NF; i++) if ($i ~ /^(peer|client)=/) { sub(/^[a-z]+=/, "", $i); print $i } }'; }
addr_in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

start_node() {
    local id=$1 addr
    if pid_of "$id" >/dev/null; then echo "$id already running (pid $(pid_of "$id"))"; return; fi
    # Another process on our ports (say, a cluster from another checkout)
    # would answer in this node's place and hide that it never started.
    for addr in $(listen_addrs_of "$id"); do
        addr_in_use "$addr" && die "$addr (node $id) is already in use by another process; stop it first"
    done
    SYNOD_DATA_ROOT="$rundir/data" RUST_LOG=${RUST_LOG:-info} \
        nohup "$bin" node --config "$config" --id "$id" >>"$rundir/logs/$id.log" 2>&1 &
    echo $! >"$rundir/pids/$id.pid"
    echo "started $id (pid $!, log run/$name/logs/$id.log)"
}

wait_leader() {
    local deadline=$((SECONDS + 60)) addr
    while [ $SECONDS -lt $deadline ]; do
        for addr in $(clients); do
            if resp "$addr" SET __synod_up 1 2>/dev/null | grep -q '^+OK'; then
                echo "leader elected; a write through $addr was acknowledged"
                return 0
            fi
        done
        sleep 0.2
    done
    die "no leader after 60s; see run/$name/logs/"
}

# Picks FIELD out of a raw SYNOD.STATUS reply (read on stdin).
pick() {
    awk -v f="$1" 'NR > 1 && !/^\$/ { sub(/^[:+]/, ""); if (prev == f) { print; exit } prev = $0 }'
}
status_field() { # status_field ADDR FIELD
    resp "$1" SYNOD.STATUS 2>/dev/null | pick "$2"
}

case "${1:-}" in
up)
    build
    echo "$config" >run/current-config
    if [ ! -d "$rundir/data" ]; then
        # A new cluster: each node's data directory is set up once. Later
        # `up`s and `start`s reuse it, and a node whose acceptor log has
        # gone missing refuses to start rather than forget its promises.
        for id in $(node_ids); do
            SYNOD_DATA_ROOT="$rundir/data" "$bin" init --config "$config" --id "$id" >/dev/null
        done
    fi
    for id in $(node_ids); do start_node "$id"; done
    wait_leader
    for id in $(node_ids); do
        pid_of "$id" >/dev/null || { tail -5 "$rundir/logs/$id.log" >&2; die "$id exited after starting; see run/$name/logs/$id.log"; }
    done
    echo "clients:"
    for id in $(node_ids); do
        addr=$(client_of "$id")
        [ -n "$addr" ] && echo "  $id  redis-cli -h ${addr%:*} -p ${addr##*:}"
    done
    ;;
down)
    for id in $(node_ids); do
        if pid=$(pid_of "$id"); then
            kill -TERM "$pid" 2>/dev/null || true
            kill -CONT "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for id in $(node_ids); do
        if pid=$(pid_of "$id"); then kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$rundir/pids/$id.pid"
    done
    echo "stopped $name"
    ;;
status)
    [ -x "$bin" ] || die "not built yet: run up first"
    printf '%-6s %-8s %-8s %-10s %-18s %s\n' NODE PID STATE APPLIED DIGEST LEADER
    for id in $(node_ids); do
        if pid=$(pid_of "$id"); then
            st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo ?)
            [ "$st" = T ] && state=paused || state=running
        else
            pid=-; state=down
        fi
        addr=$(client_of "$id"); applied=-; digest=-; leader=-
        if [ -n "$addr" ] && [ "$state" = running ]; then
            # One reply per node, so applied and digest describe one moment.
            reply=$(resp "$addr" SYNOD.STATUS 2>/dev/null || true)
            applied=$(pick applied <<<"$reply"); digest=$(pick digest <<<"$reply"); leader=$(pick leader <<<"$reply")
        fi
        printf '%-6s %-8s %-8s %-10s %-18s %s\n' "$id" "$pid" "$state" "${applied:--}" "${digest:--}" "${leader:--}"
    done
    ;;
leader)
    for addr in $(clients); do
        l=$(status_field "$addr" leader)
        if [ -n "$l" ]; then echo "$l"; exit 0; fi
    done
    die "no replica knows a leader yet"
    ;;
kill)
    id=${2:?usage: cluster.sh kill ID}
    pid=$(pid_of "$id") || die "$id is not running"
    kill -KILL "$pid"; rm -f "$rundir/pids/$id.pid"; echo "killed $id (pid $pid)"
    ;;
start)
    id=${2:?usage: cluster.sh start ID}
    [ -x "$bin" ] || build
    node_ids | grep -qx "$id" || die "unknown node $id"
    start_node "$id"
    ;;
pause)
    id=${2:?usage: cluster.sh pause ID}
    pid=$(pid_of "$id") || die "$id is not running"; kill -STOP "$pid"; echo "paused $id"
    ;;
resume)
    id=${2:?usage: cluster.sh resume ID}
    pid=$(pid_of "$id") || die "$id is not running"; kill -CONT "$pid"; echo "resumed $id"
    ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
