//! Harness for end-to-end tests: takes a config from `configs/`, moves it to
//! free loopback ports and a temporary data root, starts one real node
//! process per `[[nodes]]` entry, and talks to the replicas with an ordinary
//! Redis client library.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// Node id → (peer port, client port if a replica).
    pub nodes: BTreeMap<String, Option<u16>>,
    procs: BTreeMap<String, Child>,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Rewrites `configs/<name>` onto free ports and a temp data root and
    /// starts every node.
    pub fn start(name: &str, bin: &str) -> Result<Cluster> {
        let text = std::fs::read_to_string(repo_root().join("configs").join(name))?;
        let mut doc: toml::Table = text.parse()?;
        let dir = tempfile::tempdir()?;
        doc.insert(
            "data_root".into(),
            toml::Value::String(dir.path().join("data").display().to_string()),
        );
        let mut nodes = BTreeMap::new();
        let list = doc
            .get_mut("nodes")
            .and_then(|n| n.as_array_mut())
            .ok_or_else(|| anyhow!("{name}: no nodes"))?;
        for node in list.iter_mut() {
            let t = node.as_table_mut().ok_or_else(|| anyhow!("bad node"))?;
            let id = t["id"].as_str().unwrap_or_default().to_string();
            t.insert(
                "peer_addr".into(),
                format!("127.0.0.1:{}", free_port()?).into(),
            );
            let client = if t.contains_key("client_addr") {
                let p = free_port()?;
                t.insert("client_addr".into(), format!("127.0.0.1:{p}").into());
                Some(p)
            } else {
                None
            };
            nodes.insert(id, client);
        }
        let config_path = dir.path().join(name);
        std::fs::write(&config_path, toml::to_string(&doc)?)?;
        let mut c = Cluster {
            config_path,
            dir,
            bin: PathBuf::from(bin),
            nodes,
            procs: BTreeMap::new(),
        };
        let ids: Vec<String> = c.nodes.keys().cloned().collect();
        for id in ids {
            c.start_node(&id)?;
        }
        Ok(c)
    }

    pub fn start_node(&mut self, id: &str) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{id}.log")))?;
        let child = Command::new(&self.bin)
            .args(["node", "--config"])
            .arg(&self.config_path)
            .args(["--id", id])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.procs.insert(id.to_string(), child);
        Ok(())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: &str) -> Result<()> {
        let mut child = self
            .procs
            .remove(id)
            .ok_or_else(|| anyhow!("{id} not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    pub fn replicas(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn client(&self, id: &str) -> Result<redis::Connection> {
        let port = self
            .nodes
            .get(id)
            .copied()
            .flatten()
            .ok_or_else(|| anyhow!("{id} has no client port"))?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(8)))?;
        Ok(conn)
    }

    /// One SET through `id`; Ok only if the cluster acknowledged it.
    pub fn set(&self, id: &str, key: &str, value: &str) -> Result<()> {
        let mut c = self.client(id)?;
        let r: String = redis::cmd("SET").arg(key).arg(value).query(&mut c)?;
        if r != "OK" {
            bail!("SET answered {r}");
        }
        Ok(())
    }

    pub fn get(&self, id: &str, key: &str) -> Result<Option<String>> {
        let mut c = self.client(id)?;
        Ok(redis::cmd("GET").arg(key).query(&mut c)?)
    }

    /// `SYNOD.STATUS` of a replica as a map.
    pub fn status(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let mut c = self.client(id)?;
        let v: Vec<Option<String>> = redis::cmd("SYNOD.STATUS").query(&mut c)?;
        Ok(v.chunks(2)
            .filter_map(|p| match p {
                [Some(k), v] => Some((k.clone(), v.clone().unwrap_or_default())),
                _ => None,
            })
            .collect())
    }

    /// Retries `f` until it succeeds or `limit` passes.
    pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() >= limit => {
                    return Err(e.context(format!("still failing after {limit:?}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until a write through `id` is acknowledged: a leader exists
    /// and a majority of acceptors answer.
    pub fn wait_ready(&self, id: &str) -> Result<Duration> {
        let start = Instant::now();
        Self::eventually(Duration::from_secs(30), || self.set(id, "__ready", "1"))?;
        Ok(start.elapsed())
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
