//! Harness for end-to-end tests: takes a config from `configs/`, moves it to
//! free loopback ports and a temporary data root, starts one real node
//! process per `[[nodes]]` entry, and talks to the replicas with an ordinary
//! Redis client library.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// Node id → (peer port, client port if a replica).
    pub nodes: BTreeMap<String, Option<u16>>,
    procs: BTreeMap<String, Child>,
    /// Extra environment for every node process.
    env: Vec<(String, String)>,
}

/// Line the harness writes to a node's log before each start.
const START_MARKER: &str = "=== harness: starting node ";

/// Set this variable (to anything) to keep the temporary directory (config,
/// data root, node logs) after the test; its path is printed.
pub const KEEP_ENV: &str = "SYNOD_TEST_KEEP";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Hands out loopback ports no other caller in this process got before.
///
/// Binding port 0 and closing the listener lets the kernel hand the same
/// port out again, to this cluster or to one a parallel test is building:
/// holding the listeners until the config is written and remembering every
/// port handed out rules both out (CI once saw "address used twice").
struct PortPool {
    held: Vec<TcpListener>,
}

static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

impl PortPool {
    fn new() -> Self {
        PortPool { held: Vec::new() }
    }

    fn take(&mut self) -> Result<u16> {
        for _ in 0..64 {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let fresh = HANDED_OUT
                .lock()
                .map_err(|_| anyhow!("port pool poisoned"))?
                .insert(port);
            // Keep even a refused listener open so the kernel does not offer
            // the same port again on the next bind.
            self.held.push(listener);
            if fresh {
                return Ok(port);
            }
        }
        bail!("no fresh loopback port after 64 tries")
    }
}

impl Cluster {
    /// Rewrites `configs/<name>` onto free ports and a temp data root and
    /// starts every node.
    pub fn start(name: &str, bin: &str) -> Result<Cluster> {
        Self::start_with_env(name, bin, &[])
    }

    /// Like [`Cluster::start`], with extra environment variables for every
    /// node process, passed as given. They also apply to nodes restarted
    /// later with [`Cluster::start_node`].
    pub fn start_with_env(name: &str, bin: &str, env: &[(&str, &str)]) -> Result<Cluster> {
        Self::start_with(name, bin, &[], env)
    }

    /// Like [`Cluster::start`], after setting `settings` in the rewritten
    /// config file: `("limits.snapshot_every", "100")` sets key
    /// `snapshot_every` of table `[limits]` to the TOML value `100`. And
    /// with extra environment variables for every node process.
    pub fn start_with(
        name: &str,
        bin: &str,
        settings: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Result<Cluster> {
        let text = std::fs::read_to_string(repo_root().join("configs").join(name))?;
        let mut doc: toml::Table = text.parse()?;
        for (path, value) in settings {
            let value = format!("v = {value}")
                .parse::<toml::Table>()
                .with_context(|| format!("setting {path} = {value}"))?
                .remove("v")
                .ok_or_else(|| anyhow!("setting {path}: no value"))?;
            let mut table = &mut doc;
            let mut parts: Vec<&str> = path.split('.').collect();
            let key = parts.pop().unwrap_or_default();
            for part in parts {
                table = table
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| anyhow!("setting {path}: {part} is not a table"))?;
            }
            table.insert(key.to_string(), value);
        }
        let dir = tempfile::tempdir()?;
        doc.insert(
            "data_root".into(),
            toml::Value::String(dir.path().join("data").display().to_string()),
        );
        let mut nodes = BTreeMap::new();
        let mut ports = PortPool::new();
        let list = doc
            .get_mut("nodes")
            .and_then(|n| n.as_array_mut())
            .ok_or_else(|| anyhow!("{name}: no nodes"))?;
        for node in list.iter_mut() {
            let t = node.as_table_mut().ok_or_else(|| anyhow!("bad node"))?;
            let id = t["id"].as_str().unwrap_or_default().to_string();
            t.insert(
                "peer_addr".into(),
                format!("127.0.0.1:{}", ports.take()?).into(),
            );
            let client = if t.contains_key("client_addr") {
                let p = ports.take()?;
                t.insert("client_addr".into(), format!("127.0.0.1:{p}").into());
                Some(p)
            } else {
                None
            };
            nodes.insert(id, client);
        }
        let config_path = dir.path().join(name);
        std::fs::write(&config_path, toml::to_string(&doc)?)?;
        drop(ports);
        let mut c = Cluster {
            config_path,
            dir,
            bin: PathBuf::from(bin),
            nodes,
            procs: BTreeMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let ids: Vec<String> = c.nodes.keys().cloned().collect();
        for id in &ids {
            c.init_node(id)?;
        }
        for id in ids {
            c.start_node(&id)?;
        }
        Ok(c)
    }

    /// `synod init` for node `id`: its first start needs it, a restart
    /// must not (the node refuses to run without its acceptor log).
    pub fn init_node(&self, id: &str) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(["init", "--config"])
            .arg(&self.config_path)
            .args(["--id", id])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {} init", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "synod init {id} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts (or restarts) node `id`. Its stderr is appended to
    /// `<tempdir>/<id>.log`, after a marker line, so the logs of earlier
    /// runs of the same node stay readable (see [`Cluster::last_log`]).
    pub fn start_node(&mut self, id: &str) -> Result<()> {
        if self.procs.contains_key(id) {
            bail!("{id} is already running");
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{id}.log")))?;
        writeln!(log, "{START_MARKER}{id}")?;
        let child = Command::new(&self.bin)
            .args(["node", "--config"])
            .arg(&self.config_path)
            .args(["--id", id])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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

    /// Waits up to `limit` for the process of `id` to exit by itself and
    /// returns its exit status; the node then counts as not running. An
    /// error if it is still running after `limit` (it is left running).
    pub fn wait_exit(&mut self, id: &str, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        let child = self
            .procs
            .get_mut(id)
            .ok_or_else(|| anyhow!("{id} not running"))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.procs.remove(id);
                return Ok(status);
            }
            if start.elapsed() >= limit {
                bail!("{id} still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process of `id` was started and has not exited.
    pub fn is_running(&mut self, id: &str) -> bool {
        match self.procs.get_mut(id) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `<data_root>/<id>`: the node's data directory.
    pub fn data_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("data").join(id)
    }

    /// The node's acceptor log, `<data_root>/<id>/acceptor.log`.
    pub fn acceptor_log(&self, id: &str) -> PathBuf {
        self.data_dir(id).join("acceptor.log")
    }

    /// RESP port of a replica.
    pub fn client_port(&self, id: &str) -> Option<u16> {
        self.nodes.get(id).copied().flatten()
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
            .client_port(id)
            .ok_or_else(|| anyhow!("{id} has no client port"))?;
        connect(port, Duration::from_secs(8))
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

    /// Everything node `id` wrote to stderr, over all its runs, without
    /// terminal colour codes.
    pub fn log(&self, id: &str) -> String {
        let raw =
            std::fs::read_to_string(self.dir.path().join(format!("{id}.log"))).unwrap_or_default();
        strip_ansi(&raw)
    }

    /// What node `id` wrote to stderr since it was last started.
    pub fn last_log(&self, id: &str) -> String {
        let all = self.log(id);
        let marker = format!("{START_MARKER}{id}\n");
        match all.rfind(&marker) {
            Some(i) => all[i + marker.len()..].to_string(),
            None => all,
        }
    }
}

/// Drops `ESC [ ... letter` sequences (the node colours its log).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// A RESP connection to a local port, with a read timeout.
pub fn connect(port: u16, read_timeout: Duration) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(read_timeout))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// One record of an acceptor log, as framed on disk.
#[derive(Clone, Debug)]
pub struct LogRecord {
    /// Byte offset of the record's length prefix in the file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// Variant of the bincode-encoded `Record`: 0 Promise, 1 Accept,
    /// 2 Compacted.
    pub tag: u8,
    /// The slot of an Accept, the `below` of a Compacted.
    pub slot: Option<u64>,
}

/// What [`read_acceptor_log`] found.
#[derive(Clone, Debug, Default)]
pub struct AcceptorLog {
    /// Length of the file, preallocated zeros included.
    pub file_len: u64,
    /// End of the last record whose length and checksum are intact.
    pub intact_len: u64,
    /// Non-zero bytes after `intact_len` (a torn write, or damage).
    pub damaged: u64,
    pub records: Vec<LogRecord>,
}

impl AcceptorLog {
    pub const HEADER: u64 = 12;

    /// Intact from the header to the preallocated zeros.
    pub fn is_clean(&self) -> bool {
        self.damaged == 0
    }

    pub fn accepts(&self) -> usize {
        self.records.iter().filter(|r| r.tag == 1).count()
    }

    /// The highest `Compacted { below }` mark in the log (0 if none).
    pub fn compacted_below(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.tag == 2)
            .filter_map(|r| r.slot)
            .max()
            .unwrap_or(0)
    }

    /// The lowest slot with an Accept record still in the log.
    pub fn lowest_accepted_slot(&self) -> Option<u64> {
        self.records
            .iter()
            .filter(|r| r.tag == 1)
            .filter_map(|r| r.slot)
            .min()
    }
}

/// bincode "standard" varint: < 251 in one byte, else a marker byte and a
/// little-endian u16/u32/u64.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let le = |n: usize| -> Option<u64> {
        let bytes = b.get(1..1 + n)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )
    };
    match first {
        0..=250 => Some((u64::from(first), 1)),
        251 => Some((le(2)?, 3)),
        252 => Some((le(4)?, 5)),
        253 => Some((le(8)?, 9)),
        _ => None,
    }
}

/// Reads an acceptor log (format 2 or 3: the same framing, format 3 only
/// adds rules for the writer) without the storage crate: checks the
/// header, walks the `u32 len | u32 crc32(len ++ payload) | payload` frames
/// up to the zero end marker or the first one that is short or fails its
/// checksum, and decodes just enough of each payload (variant tag, first
/// field) to tell records apart. Read-only, so it may look at the log of a
/// running node (a half-written tail just ends the walk).
pub fn read_acceptor_log(path: &Path) -> Result<AcceptorLog> {
    let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let format = buf
        .get(8..12)
        .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
    if buf.len() < 12 || &buf[..8] != b"SYNODACC" || !matches!(format, Some(2 | 3)) {
        bail!(
            "{}: no acceptor log header of format 2 or 3",
            path.display()
        );
    }
    let mut log = AcceptorLog {
        file_len: buf.len() as u64,
        ..Default::default()
    };
    let mut off = AcceptorLog::HEADER as usize;
    while off + 8 <= buf.len() {
        let len = u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
        let crc = u32::from_le_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]]);
        let Some(payload) = buf.get(off + 8..off + 8 + len as usize) else {
            break;
        };
        if len == 0 || crc32(&[&buf[off..off + 4], payload].concat()) != crc {
            break;
        }
        let (tag, used) = varint(payload).unwrap_or((u64::MAX, 0));
        let slot = match tag {
            1 | 2 => varint(&payload[used..]).map(|(v, _)| v),
            _ => None,
        };
        log.records.push(LogRecord {
            offset: off as u64,
            len,
            tag: u8::try_from(tag).unwrap_or(u8::MAX),
            slot,
        });
        off += 8 + len as usize;
    }
    log.intact_len = off as u64;
    log.damaged = buf[off..]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1);
    Ok(log)
}

/// CRC-32 (IEEE, reflected, as `crc32fast` computes it), bit by bit: the
/// logs the tests read are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("{KEEP_ENV}: keeping {}", self.dir.path().display());
        }
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
