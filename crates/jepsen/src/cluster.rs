//! The synod processes: the config file, one `ip netns exec` process per
//! node (the pid is synod's own: `ip netns exec` execs in place), SIGKILL,
//! SIGSTOP/SIGCONT, restart, and `SYNOD.STATUS` queries.

use crate::net;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PEER_PORT: u16 = 7100;
pub const CLIENT_PORT: u16 = 7000;

pub fn node_id(i: usize) -> String {
    format!("n{}", i + 1)
}

pub fn client_addr(i: usize) -> String {
    format!("{}:{CLIENT_PORT}", net::node_ip(i))
}

/// Writes the cluster config: every node runs every role.
pub fn write_config(path: &Path, n: usize, data_root: &Path) -> Result<()> {
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
        s.push_str(&format!(
            "[[nodes]]\nid = \"{}\"\npeer_addr = \"{ip}:{PEER_PORT}\"\nclient_addr = \"{ip}:{CLIENT_PORT}\"\n\
             roles = [\"proposer\", \"acceptor\", \"learner\", \"replica\"]\n\n",
            node_id(i)
        ));
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// One node's process state as the nemesis sees it.
pub struct Node {
    pub child: Option<Child>,
    pub paused: bool,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub log_dir: PathBuf,
    pub nodes: Vec<Node>,
    /// Exits we did not cause: (node, exit status), a finding in itself.
    pub unexpected_exits: Vec<(usize, String)>,
}

impl Cluster {
    pub fn new(bin: PathBuf, config: PathBuf, log_dir: PathBuf, n: usize) -> Cluster {
        Cluster {
            bin,
            config,
            log_dir,
            nodes: (0..n)
                .map(|_| Node {
                    child: None,
                    paused: false,
                })
                .collect(),
            unexpected_exits: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn start(&mut self, i: usize) -> Result<()> {
        let log_path = self.log_dir.join(format!("{}.log", node_id(i)));
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
            .arg(node_id(i))
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
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", node_id(i)))?;
        self.nodes[i] = Node {
            child: Some(child),
            paused: false,
        };
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<()> {
        (0..self.len()).try_for_each(|i| self.start(i))
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Notices nodes that exited without our SIGKILL.
    pub fn reap(&mut self) {
        for i in 0..self.len() {
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.unexpected_exits.push((i, status.to_string()));
                    self.nodes[i].child = None;
                }
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) {
        if let Some(child) = self.nodes[i].child.as_ref() {
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

    /// The leader most replicas name, as a node index.
    pub fn leader(&self) -> Option<usize> {
        let mut votes = vec![0usize; self.len()];
        for i in 0..self.len() {
            if self.nodes[i].paused || self.nodes[i].child.is_none() {
                continue;
            }
            if let Some(l) = status(i, Duration::from_millis(300)).and_then(|s| s.leader) {
                if let Some(j) = (0..self.len()).find(|&j| node_id(j) == l) {
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
