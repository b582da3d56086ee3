//! The synod processes: the config file, the layout of roles onto
//! machines (one network namespace each: every role in one process, or
//! split into processes per role), one `ip netns exec` process per synod
//! process (the pid is synod's own: `ip netns exec` execs in place),
//! SIGKILL, SIGSTOP/SIGCONT and restart of whole machines, and
//! `SYNOD.STATUS` queries.

use crate::net;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PEER_PORT: u16 = 7100;
pub const CLIENT_PORT: u16 = 7000;

/// How roles map onto the machines (network namespaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// One process per machine running every role (configs/local-3.toml).
    Colocated,
    /// The roles as separate processes, as in configs/split-roles.toml:
    /// machines n1 and n2 run an acceptor, proposer, learner and replica
    /// each, n3 only an acceptor. Faults hit whole machines.
    Split,
}

/// The name of machine `i`: its namespace is `synod-j-<name>`.
pub fn node_id(i: usize) -> String {
    format!("n{}", i + 1)
}

/// One synod process on a machine.
#[derive(Clone, Debug)]
pub struct Proc {
    pub id: String,
    pub roles: &'static [&'static str],
    pub peer_port: u16,
    /// Runs a replica, so clients connect here.
    pub replica: bool,
}

/// The processes machine `i` runs.
pub fn procs(layout: Layout, i: usize) -> Vec<Proc> {
    let k = i + 1;
    match layout {
        Layout::Colocated => vec![Proc {
            id: node_id(i),
            roles: &["proposer", "acceptor", "learner", "replica"],
            peer_port: PEER_PORT,
            replica: true,
        }],
        Layout::Split => {
            let mut v = vec![Proc {
                id: format!("a{k}"),
                roles: &["acceptor"],
                peer_port: PEER_PORT,
                replica: false,
            }];
            if i < 2 {
                let one = |id: String, role: &'static [&'static str], port: u16| Proc {
                    id,
                    roles: role,
                    peer_port: port,
                    replica: role == ["replica"],
                };
                v.push(one(format!("p{k}"), &["proposer"], PEER_PORT + 1));
                v.push(one(format!("l{k}"), &["learner"], PEER_PORT + 2));
                v.push(one(format!("r{k}"), &["replica"], PEER_PORT + 3));
            }
            v
        }
    }
}

pub fn client_addr(i: usize) -> String {
    format!("{}:{CLIENT_PORT}", net::node_ip(i))
}

/// Writes the cluster config for `n` machines laid out as `layout`.
pub fn write_config(path: &Path, n: usize, layout: Layout, data_root: &Path) -> Result<()> {
    let mut s = String::new();
    s.push_str("# Written by synod-jepsen.\n");
    s.push_str("cluster_id = \"synod-jepsen\"\n");
    s.push_str(&format!(
        "data_root = {:?}\n\n",
        data_root.display().to_string()
    ));
    s.push_str(
        "[timing]\ntick_ms = 10\nheartbeat_ticks = 5\nelection_timeout_ticks = 30\n\
         retransmit_ticks = 20\nreplica_retry_ticks = 30\ncatch_up_ticks = 20\n\
         client_timeout_ms = 2000\n\n",
    );
    for i in 0..n {
        let ip = net::node_ip(i);
        for p in procs(layout, i) {
            let roles: Vec<String> = p.roles.iter().map(|r| format!("{r:?}")).collect();
            s.push_str(&format!(
                "[[nodes]]\nid = \"{}\"\npeer_addr = \"{ip}:{}\"\n",
                p.id, p.peer_port
            ));
            if p.replica {
                s.push_str(&format!("client_addr = \"{ip}:{CLIENT_PORT}\"\n"));
            }
            s.push_str(&format!("roles = [{}]\n\n", roles.join(", ")));
        }
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// One machine's processes as the nemesis sees them.
pub struct Node {
    pub procs: Vec<Proc>,
    /// One slot per process; `None` when it is not running.
    pub children: Vec<Option<Child>>,
    pub paused: bool,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub log_dir: PathBuf,
    pub nodes: Vec<Node>,
    /// Exits we did not cause: (process, exit status), a finding in itself.
    pub unexpected_exits: Vec<(String, String)>,
}

impl Cluster {
    pub fn new(
        bin: PathBuf,
        config: PathBuf,
        log_dir: PathBuf,
        n: usize,
        layout: Layout,
    ) -> Cluster {
        Cluster {
            bin,
            config,
            log_dir,
            nodes: (0..n)
                .map(|i| {
                    let procs = procs(layout, i);
                    Node {
                        children: procs.iter().map(|_| None).collect(),
                        procs,
                        paused: false,
                    }
                })
                .collect(),
            unexpected_exits: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Machines with a replica: where clients connect.
    pub fn replica_nodes(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].procs.iter().any(|p| p.replica))
            .collect()
    }

    /// The machine that runs process `id`.
    pub fn machine_of(&self, id: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.nodes[i].procs.iter().any(|p| p.id == id))
    }

    /// Starts every process of machine `i` that is not running.
    pub fn start(&mut self, i: usize) -> Result<()> {
        for k in 0..self.nodes[i].procs.len() {
            if self.nodes[i].children[k].is_some() {
                continue;
            }
            let id = self.nodes[i].procs[k].id.clone();
            let log_path = self.log_dir.join(format!("{id}.log"));
            let log: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &net::ns_name(i)])
                .arg(&self.bin)
                .arg("node")
                .arg("--config")
                .arg(&self.config)
                .arg("--id")
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Ctrl-C goes to the harness only; it stops the nodes itself.
                .process_group(0);
            for (k, _) in std::env::vars() {
                if k.starts_with("SYNOD_") {
                    cmd.env_remove(k);
                }
            }
            let child = cmd.spawn().with_context(|| format!("cannot start {id}"))?;
            self.nodes[i].children[k] = Some(child);
        }
        self.nodes[i].paused = false;
        Ok(())
    }

    /// `synod init` for every process, once, before the first start. The
    /// nemesis restarts processes later with their data kept; one whose
    /// acceptor log went missing would refuse to run, as it should.
    pub fn init_all(&self) -> Result<()> {
        for id in self
            .nodes
            .iter()
            .flat_map(|n| n.procs.iter().map(|p| &p.id))
        {
            let mut cmd = Command::new(&self.bin);
            cmd.args(["init", "--config"])
                .arg(&self.config)
                .args(["--id", id]);
            for (k, _) in std::env::vars() {
                if k.starts_with("SYNOD_") {
                    cmd.env_remove(k);
                }
            }
            let out = cmd.output().with_context(|| format!("cannot init {id}"))?;
            if !out.status.success() {
                bail!(
                    "synod init {id} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<()> {
        (0..self.len()).try_for_each(|i| self.start(i))
    }

    /// Every process of machine `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].children.iter().all(|c| c.is_some())
    }

    /// Notices processes that exited without our SIGKILL.
    pub fn reap(&mut self) {
        for node in &mut self.nodes {
            for (k, slot) in node.children.iter_mut().enumerate() {
                if let Some(child) = slot.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.unexpected_exits
                            .push((node.procs[k].id.clone(), status.to_string()));
                        *slot = None;
                    }
                }
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        for slot in &mut self.nodes[i].children {
            if let Some(mut child) = slot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.nodes[i].paused = false;
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) {
        for child in self.nodes[i].children.iter().flatten() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.nodes[i].paused = false;
    }

    /// Every node running and not paused.
    pub fn heal_processes(&mut self) -> Result<()> {
        self.reap();
        for i in 0..self.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            if !self.is_running(i) {
                self.start(i)?;
            }
        }
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            self.resume(i);
            self.kill(i);
        }
    }

    /// The machine of the leader most replicas name.
    pub fn leader(&self) -> Option<usize> {
        let mut votes = vec![0usize; self.len()];
        for i in self.replica_nodes() {
            let down = self.nodes[i].children.iter().any(|c| c.is_none());
            if self.nodes[i].paused || down {
                continue;
            }
            if let Some(l) = status(i, Duration::from_millis(300)).and_then(|s| s.leader) {
                if let Some(j) = self.machine_of(&l) {
                    votes[j] += 1;
                }
            }
        }
        let (best, n) = votes.iter().enumerate().max_by_key(|(_, &v)| v)?;
        (*n > 0).then_some(best)
    }
}

/// One replica's `SYNOD.STATUS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub node: String,
    pub applied: i64,
    pub digest: String,
    pub leader: Option<String>,
}

pub fn connect(i: usize, timeout: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{}/", client_addr(i))).ok()?;
    let con = client.get_connection_with_timeout(timeout).ok()?;
    con.set_read_timeout(Some(timeout)).ok()?;
    con.set_write_timeout(Some(timeout)).ok()?;
    Some(con)
}

pub fn status(i: usize, timeout: Duration) -> Option<Status> {
    let mut con = connect(i, timeout)?;
    let v: redis::Value = redis::cmd("SYNOD.STATUS").query(&mut con).ok()?;
    let redis::Value::Array(items) = v else {
        return None;
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    let mut st = Status {
        node: String::new(),
        applied: -1,
        digest: String::new(),
        leader: None,
    };
    for pair in items.chunks(2) {
        let [k, v] = pair else { continue };
        match text(k).as_deref() {
            Some("node") => st.node = text(v).unwrap_or_default(),
            Some("applied") => st.applied = text(v).and_then(|t| t.parse().ok()).unwrap_or(-1),
            Some("digest") => st.digest = text(v).unwrap_or_default(),
            Some("leader") => st.leader = text(v),
            _ => {}
        }
    }
    Some(st)
}

/// Appends a line to a harness log in the run dir.
pub fn append_line(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_node::config::ClusterConfig;

    /// The generated configs are ones the real node accepts, with the
    /// roles where the layout says.
    #[test]
    fn generated_configs_load_and_place_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (layout, n, ids) in [
            (Layout::Colocated, 5, vec!["n1", "n2", "n3", "n4", "n5"]),
            (
                Layout::Split,
                3,
                vec!["a1", "p1", "l1", "r1", "a2", "p2", "l2", "r2", "a3"],
            ),
        ] {
            write_config(&path, n, layout, dir.path()).unwrap();
            let cfg = ClusterConfig::load(&path).unwrap();
            let got: Vec<&str> = cfg.nodes.iter().map(|n| n.id.as_str()).collect();
            assert_eq!(got, ids);
            for node in &cfg.nodes {
                let replica = node.roles.iter().any(|r| r == "replica");
                assert_eq!(node.client_addr.is_some(), replica, "{}", node.id);
            }
            let c = Cluster::new(PathBuf::new(), path.clone(), PathBuf::new(), n, layout);
            let expect: Vec<usize> = if layout == Layout::Split {
                vec![0, 1]
            } else {
                (0..n).collect()
            };
            assert_eq!(c.replica_nodes(), expect);
        }
        let c = Cluster::new(PathBuf::new(), path, PathBuf::new(), 3, Layout::Split);
        assert_eq!(c.machine_of("p2"), Some(1));
        assert_eq!(c.machine_of("a3"), Some(2));
        assert_eq!(c.machine_of("x"), None);
    }
}
