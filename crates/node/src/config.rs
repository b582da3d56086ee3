//! Cluster configuration: topology (`[[nodes]]`: who runs which roles where)
//! kept apart from tunables (`[timing]`, `[limits]`). Loaded from TOML with
//! `SYNOD_*` environment overrides (e.g. `SYNOD_DATA_ROOT=/var/lib/synod`,
//! `SYNOD_TIMING__TICK_MS=5`) and validated in full before anything starts.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use synod_types::{NodeId, Role};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("invalid config {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Peers refuse connections from another cluster id.
    pub cluster_id: String,
    /// Data directories default to `<data_root>/<node id>`.
    #[serde(default = "default_data_root")]
    pub data_root: PathBuf,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub limits: Limits,
    /// How replicas serve read-only commands; both are linearizable.
    #[serde(default)]
    pub reads: ReadMode,
    pub nodes: Vec<NodeConfig>,
}

/// `reads = "read-index"` (default): the leader confirms it still leads
/// with one quorum round (shared by every read that arrives meanwhile) and
/// the replica answers from its state once it has applied up to the
/// leader's log position; no disk write. `reads = "log"`: a read takes a
/// log slot like a write, which costs an fsync on every acceptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    #[default]
    ReadIndex,
    Log,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: String,
    /// Where the node listens for other nodes.
    pub peer_addr: SocketAddr,
    /// RESP port for clients; required on nodes that run a replica.
    pub client_addr: Option<SocketAddr>,
    pub roles: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

/// Every duration is in ticks of `tick_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    pub tick_ms: u64,
    pub heartbeat_ticks: u64,
    pub election_timeout_ticks: u64,
    pub retransmit_ticks: u64,
    pub replica_retry_ticks: u64,
    pub catch_up_ticks: u64,
    pub client_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick_ms: 10,
            heartbeat_ticks: 5,
            election_timeout_ticks: 30,
            retransmit_ticks: 20,
            replica_retry_ticks: 30,
            catch_up_ticks: 20,
            client_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Log slots a leader keeps in phase 2 at once. Small on purpose:
    /// every slot costs a round of messages and a share of an fsync on
    /// each acceptor, so under load it is cheaper to let commands pile up
    /// behind a few slots in flight and ship them together (measured on
    /// 2 cores, 63 clients: window 4 ≈ 8 commands per slot, ~40 µs of CPU
    /// per write across the cluster; window 64 = 1 command per slot, ~58 µs).
    pub window: usize,
    pub max_batch: usize,
    pub max_batch_bytes: usize,
    pub max_queue: usize,
    pub max_frame_bytes: usize,
    pub peer_queue: usize,
    /// A replica snapshots after this many applied slots...
    pub snapshot_every: u64,
    /// ...or this many bytes of applied commands.
    pub snapshot_bytes: u64,
    /// Snapshot transfer chunk, per message.
    pub snapshot_chunk_bytes: usize,
    /// Client sessions each replica keeps for duplicate detection (least
    /// recently used dropped first). Replicated state: peers with another
    /// value are refused.
    pub max_sessions: usize,
    /// Bytes of last replies those sessions keep, in total, for answering
    /// retries. Past it the least recently used replies are let go (their
    /// retry is told the command was applied, without its output).
    /// Replicated state, like `max_sessions`.
    pub session_reply_bytes: u64,
    /// Thrifty phase 2: a leader sends each slot to a majority of acceptors
    /// (its own node's first) and brings in the rest only when that
    /// majority is slow to answer. Saves the other acceptors a write and an
    /// fsync per slot; costs a short stall (`tick_ms` × 5) when an acceptor
    /// of the chosen majority dies.
    pub thrifty: bool,
    /// RESP connections a node serves at once (Redis' `maxclients`).
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: 4,
            max_batch: 512,
            max_batch_bytes: 1 << 20,
            max_queue: 100_000,
            max_frame_bytes: synod_codec::DEFAULT_MAX_FRAME,
            peer_queue: 65_536,
            snapshot_every: 10_000,
            snapshot_bytes: 64 << 20,
            snapshot_chunk_bytes: 1 << 20,
            max_sessions: 100_000,
            session_reply_bytes: 256 << 20,
            thrifty: true,
            max_clients: 10_000,
        }
    }
}

/// What one command adds to a slot's encoding beside its op bytes (client
/// id, sequence number, length prefixes), with room to spare.
const SLOT_COMMAND_OVERHEAD: usize = 64;

/// The `SYNOD_*` variables that name config keys. Others with that prefix
/// (say `SYNOD_BIN` for a script) are not ours and must not be read as
/// unknown config keys.
fn config_env() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            let Some(key) = k.strip_prefix("SYNOD_") else {
                return false;
            };
            matches!(key, "CLUSTER_ID" | "DATA_ROOT" | "READS")
                || key.starts_with("TIMING__")
                || key.starts_with("LIMITS__")
        })
        .collect()
}

fn default_data_root() -> PathBuf {
    PathBuf::from("data")
}

impl ClusterConfig {
    /// Reads, overrides from the environment, and validates.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Load {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, shown: &str) -> Result<ClusterConfig, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: shown.to_string(),
            reason,
        };
        let cfg: ClusterConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("SYNOD")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(config_env())),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| invalid(e.to_string().replace('\n', " ")))?;
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.cluster_id.trim().is_empty() {
            return Err("cluster_id must not be empty".into());
        }
        if self.cluster_id.len() > synod_codec::MAX_CLUSTER_ID {
            return Err(format!(
                "cluster_id is {} bytes; at most {} are allowed",
                self.cluster_id.len(),
                synod_codec::MAX_CLUSTER_ID
            ));
        }
        if self.nodes.is_empty() {
            return Err("no [[nodes]] listed".into());
        }
        let mut ids = HashSet::new();
        let mut addrs: BTreeMap<SocketAddr, &str> = BTreeMap::new();
        for n in &self.nodes {
            let valid_id = !n.id.is_empty()
                && n.id.len() <= 23
                && n.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_id {
                return Err(format!(
                    "node id {:?} must be 1-23 characters of [A-Za-z0-9_-]",
                    n.id
                ));
            }
            if !ids.insert(n.id.as_str()) {
                return Err(format!("node id {} is listed twice", n.id));
            }
            if n.roles.is_empty() {
                return Err(format!("node {} has no roles", n.id));
            }
            for r in &n.roles {
                if Role::parse(r).is_none() {
                    return Err(format!(
                        "node {}: unknown role {r:?} (expected proposer, acceptor, learner or replica)",
                        n.id
                    ));
                }
            }
            // Wildcard addresses (`0.0.0.0:6379` on every host) are checked
            // per host below.
            let specific = std::iter::once(n.peer_addr)
                .chain(n.client_addr)
                .filter(|a| !a.ip().is_unspecified());
            for addr in specific {
                if let Some(other) = addrs.insert(addr, &n.id) {
                    return Err(format!(
                        "address {addr} is used twice (nodes {other} and {})",
                        n.id
                    ));
                }
            }
            // Peers dial the address a node listens on, so it must name
            // one host and one port.
            if n.peer_addr.port() == 0 || n.peer_addr.ip().is_unspecified() {
                return Err(format!(
                    "node {}: peer_addr {} must name a host and a port peers can dial",
                    n.id, n.peer_addr
                ));
            }
            if n.client_addr.is_some_and(|a| a.port() == 0) {
                return Err(format!("node {}: client_addr needs a port", n.id));
            }
            if n.has(Role::Replica) && n.client_addr.is_none() {
                return Err(format!(
                    "node {} runs a replica but has no client_addr",
                    n.id
                ));
            }
        }
        let acceptors = self.with_role(Role::Acceptor).len();
        if acceptors < 3 {
            return Err(format!(
                "{acceptors} acceptor(s) configured; a majority that survives a failure needs at least 3"
            ));
        }
        for role in [Role::Proposer, Role::Learner, Role::Replica] {
            if self.with_role(role).is_empty() {
                return Err(format!("no node runs a {role}"));
            }
        }
        // A wildcard listener (`0.0.0.0:P`) takes port P on every address
        // of its host, so it clashes with any other listener on P there,
        // which an exact-address comparison misses. Without this check the
        // second node would only fail at bind time.
        let binds: Vec<(&NodeConfig, SocketAddr)> = self
            .nodes
            .iter()
            .flat_map(|n| std::iter::once((n, n.peer_addr)).chain(n.client_addr.map(|a| (n, a))))
            .collect();
        for (i, &(a, x)) in binds.iter().enumerate() {
            for &(b, y) in &binds[i + 1..] {
                let wildcard = x.ip().is_unspecified() || y.ip().is_unspecified();
                if wildcard && x.port() == y.port() && same_host(a, b) {
                    return Err(format!(
                        "node {} listens on {x} and node {} on {y}: one host cannot bind \
                         port {} twice",
                        a.id,
                        b.id,
                        x.port()
                    ));
                }
            }
        }
        // Two nodes of one host (same peer IP) in one directory would
        // overwrite each other's acceptor log.
        for (i, a) in self.nodes.iter().enumerate() {
            for b in &self.nodes[i + 1..] {
                if a.peer_addr.ip() == b.peer_addr.ip() && self.data_dir(a) == self.data_dir(b) {
                    return Err(format!(
                        "nodes {} and {} share the data directory {}",
                        a.id,
                        b.id,
                        self.data_dir(a).display()
                    ));
                }
            }
        }
        let t = &self.timing;
        if t.tick_ms == 0
            || t.heartbeat_ticks == 0
            || t.retransmit_ticks == 0
            || t.replica_retry_ticks == 0
            || t.catch_up_ticks == 0
            || t.client_timeout_ms == 0
        {
            return Err(
                "timing: every tick count, tick_ms and client_timeout_ms must be positive".into(),
            );
        }
        // Beyond an hour a timer is a typo, and the arithmetic on ticks
        // (deadlines, `10 × catch_up_ticks`) must not overflow.
        const HOUR_MS: u64 = 3_600_000;
        for (name, ticks) in [
            ("heartbeat_ticks", t.heartbeat_ticks),
            ("election_timeout_ticks", t.election_timeout_ticks),
            ("retransmit_ticks", t.retransmit_ticks),
            ("replica_retry_ticks", t.replica_retry_ticks),
            ("catch_up_ticks", t.catch_up_ticks),
        ] {
            if t.tick_ms.saturating_mul(ticks) > HOUR_MS {
                return Err(format!(
                    "timing.{name} × tick_ms is {} ms; at most an hour is allowed",
                    t.tick_ms.saturating_mul(ticks)
                ));
            }
        }
        if t.client_timeout_ms > HOUR_MS {
            return Err("timing.client_timeout_ms must be at most an hour".into());
        }
        if t.election_timeout_ticks <= 2 * t.heartbeat_ticks {
            return Err(format!(
                "timing.election_timeout_ticks ({}) must exceed twice heartbeat_ticks ({})",
                t.election_timeout_ticks, t.heartbeat_ticks
            ));
        }
        let l = &self.limits;
        if l.window == 0
            || l.max_batch == 0
            || l.max_queue == 0
            || l.peer_queue == 0
            || l.max_sessions == 0
            || l.max_clients == 0
        {
            return Err(
                "limits.window, max_batch, max_queue, peer_queue, max_sessions and max_clients \
                 must be positive"
                    .into(),
            );
        }
        const COUNT_MAX: usize = 1 << 24;
        for (name, n) in [
            ("window", l.window),
            ("max_batch", l.max_batch),
            ("max_queue", l.max_queue),
            ("peer_queue", l.peer_queue),
            ("max_sessions", l.max_sessions),
            ("max_clients", l.max_clients),
        ] {
            if n > COUNT_MAX {
                return Err(format!("limits.{name} ({n}) must be at most {COUNT_MAX}"));
            }
        }
        // The largest message a node sends is a slot's batch (a single
        // client request may exceed max_batch_bytes and then fills a slot
        // alone) or a message gathered up to MESSAGE_BUDGET plus one such
        // slot. A frame too small for it would be dropped at the sender on
        // every retry, stalling the log for good.
        let largest_slot = l
            .max_batch_bytes
            .max(synod_resp::RespOptions::default().max_frame);
        let needed = synod_types::MESSAGE_BUDGET + largest_slot + (1 << 20);
        if l.max_frame_bytes < needed {
            return Err(format!(
                "limits.max_frame_bytes ({}) must be at least {needed}: a 4 MiB message budget, \
                 the largest slot (max_batch_bytes or a 16 MiB client request) and 1 MiB of framing",
                l.max_frame_bytes
            ));
        }
        // An acceptor logs a slot as one record: a slot past the record
        // cap would fail every acceptor's write (and exit it) on each retry.
        let largest_record = largest_slot + l.max_batch * SLOT_COMMAND_OVERHEAD + 4096;
        if largest_record > synod_storage::MAX_RECORD as usize {
            return Err(format!(
                "limits.max_batch_bytes ({}) with max_batch ({}) makes a slot of up to \
                 {largest_record} bytes; the acceptor log takes records of at most {}",
                l.max_batch_bytes,
                l.max_batch,
                synod_storage::MAX_RECORD
            ));
        }
        if l.snapshot_every == 0 || l.snapshot_bytes == 0 {
            return Err("limits.snapshot_every and snapshot_bytes must be positive".into());
        }
        if l.session_reply_bytes == 0 {
            return Err("limits.session_reply_bytes must be positive".into());
        }
        if l.snapshot_chunk_bytes == 0 || l.snapshot_chunk_bytes + 4096 > l.max_frame_bytes {
            return Err(
                "limits.snapshot_chunk_bytes must be positive and fit in max_frame_bytes".into(),
            );
        }
        Ok(())
    }

    pub fn node(&self, id: &str) -> Result<&NodeConfig, String> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            format!(
                "unknown node id {id:?} (the config lists {})",
                known.join(", ")
            )
        })
    }

    pub fn topology(&self) -> synod_types::Topology {
        synod_types::Topology {
            proposers: self.with_role(Role::Proposer),
            acceptors: self.with_role(Role::Acceptor),
            learners: self.with_role(Role::Learner),
            replicas: self.with_role(Role::Replica),
        }
    }

    /// What every node must agree on, for the peer hello: who runs which
    /// role (so majorities intersect), the limits that shape replicated
    /// state (session tables) or what a peer may send (frame size), and the
    /// state machine's semantics. Readable, so a refused link says what
    /// differs; the membership is hashed to keep the hello small.
    pub fn shared_settings(&self, semantics: &str) -> String {
        let mut members = String::new();
        for role in [Role::Proposer, Role::Acceptor, Role::Learner, Role::Replica] {
            let mut ids: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.has(role))
                .map(|n| n.id.as_str())
                .collect();
            ids.sort_unstable();
            members.push_str(&format!("{}={};", role.name(), ids.join(",")));
        }
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = members.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let l = &self.limits;
        let mut text = format!(
            "members={}:{hash:016x} max_sessions={} session_reply_bytes={} max_frame_bytes={} \
             machine={semantics}",
            self.nodes.len(),
            l.max_sessions,
            l.session_reply_bytes,
            l.max_frame_bytes,
        );
        // The semantics string comes from code, but keep the hello bounded
        // whatever a custom machine names itself.
        while text.len() > synod_codec::MAX_SETTINGS {
            text.pop();
        }
        text
    }

    /// Ids of the nodes that run `role`, in config order.
    pub fn with_role(&self, role: Role) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.has(role))
            .map(|n| NodeId::new(&n.id))
            .collect()
    }

    pub fn data_dir(&self, node: &NodeConfig) -> PathBuf {
        node.data_dir
            .clone()
            .unwrap_or_else(|| self.data_root.join(&node.id))
    }
}

impl NodeConfig {
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r == role.name())
    }
}

/// Whether two nodes run on one machine, as far as the config can tell:
/// the same node, or peer addresses on the same IP (every loopback address
/// is this machine). Nodes on distinct IPs of one multi-homed host look
/// like two hosts; nothing in the config says otherwise.
fn same_host(a: &NodeConfig, b: &NodeConfig) -> bool {
    let (x, y) = (a.peer_addr.ip(), b.peer_addr.ip());
    a.id == b.id || x == y || (x.is_loopback() && y.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_id = "t"
[[nodes]]
id = "n1"
peer_addr = "127.0.0.1:9101"
client_addr = "127.0.0.1:9001"
roles = ["proposer", "acceptor", "learner", "replica"]
[[nodes]]
id = "n2"
peer_addr = "127.0.0.1:9102"
roles = ["acceptor"]
[[nodes]]
id = "n3"
peer_addr = "127.0.0.1:9103"
roles = ["acceptor"]
"#;

    /// `GOOD` with `section` (a table and its keys) added.
    fn with_section(section: &str) -> String {
        GOOD.replace(
            "cluster_id = \"t\"",
            &format!("cluster_id = \"t\"\n{section}"),
        )
    }

    fn err(text: &str) -> String {
        ClusterConfig::parse(text, "x.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = ClusterConfig::parse(GOOD, "x.toml").unwrap();
        assert_eq!(c.with_role(Role::Acceptor).len(), 3);
        assert_eq!(c.timing.tick_ms, 10);
        assert_eq!(c.data_dir(c.node("n2").unwrap()), PathBuf::from("data/n2"));
        assert!(c.node("n9").unwrap_err().contains("n1, n2, n3"));
    }

    #[test]
    fn bad_configs_get_one_line_errors() {
        let cases = [
            (GOOD.replace("9102", "9101"), "used twice"),
            (GOOD.replace("\"n2\"", "\"n1\""), "listed twice"),
            (
                GOOD.replace(
                    "roles = [\"acceptor\"]\n[[nodes]]\nid = \"n3\"",
                    "roles = [\"learner\"]\n[[nodes]]\nid = \"n3\"",
                ),
                "at least 3",
            ),
            (GOOD.replace("\"replica\"", "\"replicant\""), "unknown role"),
            (
                GOOD.replace("client_addr = \"127.0.0.1:9001\"\n", ""),
                "no client_addr",
            ),
            (GOOD.replace("127.0.0.1:9103", "not-an-address"), "invalid"),
            (format!("{GOOD}\nbogus = 1\n"), "bogus"),
            ("cluster_id = ".to_string(), "invalid"),
            (
                GOOD.replace(
                    "cluster_id = \"t\"",
                    "cluster_id = \"t\"\n[limits]\nmax_sessions = 0",
                ),
                "max_sessions and max_clients must be positive",
            ),
            (
                GOOD.replace(
                    "cluster_id = \"t\"",
                    "cluster_id = \"t\"\n[limits]\nmax_frame_bytes = 1048576",
                ),
                "max_frame_bytes (1048576) must be at least",
            ),
            (
                GOOD.replace(
                    "cluster_id = \"t\"",
                    &format!("cluster_id = \"{}\"", "c".repeat(257)),
                ),
                "at most 256",
            ),
            (
                GOOD.replace("127.0.0.1:9102", "0.0.0.0:9102"),
                "peers can dial",
            ),
            (
                GOOD.replace("127.0.0.1:9102", "127.0.0.1:0"),
                "peers can dial",
            ),
            (
                // A wildcard client port taken by another node's peer port.
                GOOD.replace("127.0.0.1:9001", "0.0.0.0:9102"),
                "cannot bind port 9102 twice",
            ),
            (
                // ...or by the same node's own peer port.
                GOOD.replace("127.0.0.1:9001", "0.0.0.0:9101"),
                "cannot bind port 9101 twice",
            ),
            (
                // Loopback addresses are all this machine.
                GOOD.replace("127.0.0.1:9001", "[::]:9103")
                    .replace("127.0.0.1:9103", "127.0.0.3:9103"),
                "cannot bind port 9103 twice",
            ),
            (
                with_section("[timing]\nclient_timeout_ms = 0"),
                "client_timeout_ms must be positive",
            ),
            (
                with_section("[timing]\ntick_ms = 1000000000000000"),
                "at most an hour",
            ),
            (
                with_section("[limits]\npeer_queue = 4611686018427387904"),
                "limits.peer_queue",
            ),
            (
                GOOD.replace(
                    "peer_addr = \"127.0.0.1:9103\"",
                    "peer_addr = \"127.0.0.1:9103\"\ndata_dir = \"data/n2\"",
                ),
                "share the data directory",
            ),
            (
                // A slot this big would fail every acceptor's log write.
                with_section("[limits]\nmax_batch_bytes = 67108864\nmax_frame_bytes = 134217728"),
                "the acceptor log takes records of at most",
            ),
            (
                with_section("[limits]\nsession_reply_bytes = 0"),
                "session_reply_bytes must be positive",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains('\n'), "multi-line error: {e:?}");
        }
    }

    #[test]
    fn hosts_of_their_own_may_each_bind_the_wildcard_client_port() {
        let text = r#"
cluster_id = "t"
[[nodes]]
id = "n1"
peer_addr = "10.0.0.1:9100"
client_addr = "0.0.0.0:6379"
roles = ["proposer", "acceptor", "learner", "replica"]
[[nodes]]
id = "n2"
peer_addr = "10.0.0.2:9100"
client_addr = "0.0.0.0:6379"
roles = ["proposer", "acceptor", "learner", "replica"]
[[nodes]]
id = "n3"
peer_addr = "10.0.0.3:9100"
client_addr = "0.0.0.0:6379"
roles = ["proposer", "acceptor", "learner", "replica"]
"#;
        let c = ClusterConfig::parse(text, "x.toml").unwrap();
        assert_eq!(c.with_role(Role::Replica).len(), 3);
        // The same layout squeezed onto one machine cannot start.
        let one_host = text.replace("10.0.0.", "127.0.0.");
        assert!(err(&one_host).contains("cannot bind port 6379 twice"));
    }

    #[test]
    fn shared_settings_change_with_what_replicas_must_agree_on() {
        let base = ClusterConfig::parse(GOOD, "x.toml").unwrap();
        let ours = base.shared_settings("kv/1");
        assert!(ours.contains("max_sessions=100000"), "{ours}");
        // Node order in the file and per-node details (addresses, data
        // directories) may differ between hosts' copies...
        let reordered = GOOD.replace("id = \"n2\"", "id = \"n2\"\ndata_dir = \"/srv/n2\"");
        let c = ClusterConfig::parse(&reordered, "x.toml").unwrap();
        assert_eq!(c.shared_settings("kv/1"), ours);
        // ...but membership, replicated limits, frames and semantics may not.
        for other in [
            GOOD.replace(
                "roles = [\"acceptor\"]\n[[nodes]]\nid = \"n3\"",
                "roles = [\"acceptor\", \"learner\"]\n[[nodes]]\nid = \"n3\"",
            ),
            with_section("[limits]\nmax_sessions = 99"),
            with_section("[limits]\nsession_reply_bytes = 99"),
            with_section("[limits]\nmax_frame_bytes = 134217728"),
        ] {
            let c = ClusterConfig::parse(&other, "x.toml").unwrap();
            assert_ne!(c.shared_settings("kv/1"), ours, "{other}");
        }
        assert_ne!(base.shared_settings("kv/2"), ours);
        assert!(base.shared_settings(&"x".repeat(5000)).len() <= synod_codec::MAX_SETTINGS);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["local-3.toml", "split-roles.toml"] {
            let c = ClusterConfig::load(&root.join(name)).unwrap();
            assert!(c.with_role(Role::Acceptor).len() >= 3, "{name}");
        }
    }
}
