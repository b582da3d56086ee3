//! Measures how fast an acceptor can make its state durable with Synod's own
//! append-only log ([`FileStorage`]) compared with two embedded key-value
//! engines, `redb` (copy-on-write B-tree) and `fjall` (LSM tree).
//!
//! Workload "accept": `Record::Accept` records for increasing slots, each
//! holding a `Value::Batch` of one `Command` with a 256-byte op, written in
//! group commits of 1, 16 and 64 records per durable sync:
//!
//! - FileStorage: `append(batch)` then `sync()` (one `fdatasync`);
//! - redb: one write transaction per batch, `Durability::Immediate`;
//! - fjall: one `WriteBatch` per batch, then `persist(PersistMode::SyncData)`;
//! - prealloc (experiment, not Synod code): FileStorage's record framing
//!   written at an offset into a file pre-sized with `set_len(64 MiB)`, as
//!   fjall does with its journal, so `fdatasync` need not log a new file
//!   size on every sync.
//!
//! The KV engines store key = slot as big-endian u64, value = the record
//! encoded with `synod_codec::encode` (they checksum pages/blocks
//! themselves). For each engine and batch size it reports records/s,
//! syncs/s, p50/p99 latency of one batch (encode + write + sync), bytes on
//! disk after N records, and recovery time (reopen + replay every record into
//! an `AcceptorState`), then prints ratios against FileStorage. All engines
//! run in one process, interleaved per batch size, on the same file system.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use synod_storage::{AcceptorState, AcceptorStorage, FileStorage, Record};
use synod_types::{Ballot, ClientId, Command, NodeId, SplitMix64, Value};

#[derive(Parser, Debug)]
#[command(about = "Durable-write benchmark: FileStorage vs redb vs fjall")]
struct Args {
    /// Records written per engine and batch size.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Records per durable sync (group-commit size); comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    batch: Vec<usize>,
    /// Engines to run; comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Engine::File, Engine::Redb, Engine::Fjall, Engine::Prealloc])]
    engines: Vec<Engine>,
    /// Size of each command's op in bytes.
    #[arg(long, default_value_t = 256)]
    op_bytes: usize,
    /// Directory under which a temporary directory is made for the data;
    /// put it on the disk the acceptor would use. Default: current directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Repeat the whole matrix this many times (engine order rotates each
    /// round); latencies are pooled and recovery is the median.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, ValueEnum)]
enum Engine {
    File,
    Redb,
    Fjall,
    Prealloc,
}

impl Engine {
    fn label(self) -> &'static str {
        match self {
            Engine::File => "FileStorage",
            Engine::Redb => "redb 4.6.0",
            Engine::Fjall => "fjall 3.1.13",
            Engine::Prealloc => "prealloc log (experiment)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Engine::File => "FileStorage",
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
            Engine::Prealloc => "the pre-sized log experiment",
        }
    }

    fn open(self, dir: &Path) -> Result<Box<dyn Writer>> {
        Ok(match self {
            Engine::File if dir.join(synod_storage::LOG_NAME).exists() => {
                Box::new(FileStorage::open(dir)?)
            }
            Engine::File => Box::new(FileStorage::create(dir)?),
            Engine::Redb => Box::new(RedbWriter::open(dir)?),
            Engine::Fjall => Box::new(FjallWriter::open(dir)?),
            Engine::Prealloc => Box::new(PreallocLog::open(dir)?),
        })
    }

    /// Reopens the data in `dir` and replays every record.
    fn recover(self, dir: &Path) -> Result<AcceptorState> {
        match self {
            Engine::File => Ok(FileStorage::open(dir)?.load()?),
            Engine::Redb => RedbWriter::recover(dir),
            Engine::Fjall => FjallWriter::recover(dir),
            Engine::Prealloc => PreallocLog::recover(dir),
        }
    }
}

/// One group commit: when `commit` returns, every record in `batch` is durable.
trait Writer {
    fn commit(&mut self, batch: &[Record]) -> Result<()>;
}

impl Writer for FileStorage {
    fn commit(&mut self, batch: &[Record]) -> Result<()> {
        self.append(batch)?;
        self.sync()?;
        Ok(())
    }
}

/// Key of a record in the KV engines: the slot as big-endian u64, so keys
/// sort in slot order.
fn kv_key(r: &Record) -> Result<[u8; 8]> {
    match r {
        Record::Accept { slot, .. } => Ok(slot.to_be_bytes()),
        Record::Promise(_) | Record::Compacted { .. } => {
            bail!("the accept workload writes only accepts")
        }
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("acceptor");

struct RedbWriter {
    db: redb::Database,
}

impl RedbWriter {
    fn path(dir: &Path) -> PathBuf {
        dir.join("acceptor.redb")
    }

    fn open(dir: &Path) -> Result<Self> {
        let db = redb::Database::create(Self::path(dir))?;
        // Create the table up front so the timed commits only insert.
        let txn = db.begin_write()?;
        txn.open_table(REDB_TABLE)?;
        txn.commit()?;
        Ok(RedbWriter { db })
    }

    fn recover(dir: &Path) -> Result<AcceptorState> {
        use redb::{ReadableDatabase, ReadableTable};
        let db = redb::Database::open(Self::path(dir))?;
        let txn = db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let mut st = AcceptorState::default();
        for entry in table.iter()? {
            let (_, v) = entry?;
            st.apply(synod_codec::decode(v.value())?);
        }
        Ok(st)
    }
}

impl Writer for RedbWriter {
    fn commit(&mut self, batch: &[Record]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            for r in batch {
                let value = synod_codec::encode(r)?;
                table.insert(&kv_key(r)?[..], &value[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

const FJALL_KEYSPACE: &str = "acceptor";

struct FjallWriter {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl FjallWriter {
    fn open(dir: &Path) -> Result<Self> {
        let db = fjall::Database::builder(dir.join("fjall")).open()?;
        let ks = db.keyspace(FJALL_KEYSPACE, fjall::KeyspaceCreateOptions::default)?;
        Ok(FjallWriter { db, ks })
    }

    fn recover(dir: &Path) -> Result<AcceptorState> {
        let w = Self::open(dir)?;
        let mut st = AcceptorState::default();
        for guard in w.ks.iter() {
            let (_, v) = guard.into_inner()?;
            st.apply(synod_codec::decode(&v)?);
        }
        Ok(st)
    }
}

impl Writer for FjallWriter {
    fn commit(&mut self, batch: &[Record]) -> Result<()> {
        let mut wb = self.db.batch();
        for r in batch {
            wb.insert(&self.ks, kv_key(r)?.to_vec(), synod_codec::encode(r)?);
        }
        wb.commit()?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }
}

/// Bytes a [`PreallocLog`] sizes its file to up front (fjall's journal uses
/// the same).
const PREALLOC: u64 = 64 * 1024 * 1024;

/// Experiment: FileStorage's framing (`u32 len | u32 crc32 | payload`), but
/// written with `pwrite` into a file whose length is set once up front, so a
/// sync only flushes data blocks (plus block allocation when a write first
/// touches a 4 KiB block) instead of also journaling a new file size. The
/// zero-filled tail ends the log: no record has length 0.
struct PreallocLog {
    file: std::fs::File,
    len: u64,
    off: u64,
    buf: Vec<u8>,
}

impl PreallocLog {
    fn path(dir: &Path) -> PathBuf {
        dir.join("acceptor.prealloc.log")
    }

    fn open(dir: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(Self::path(dir))?;
        file.set_len(PREALLOC)?;
        file.sync_all()?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(PreallocLog {
            file,
            len: PREALLOC,
            off: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    fn recover(dir: &Path) -> Result<AcceptorState> {
        use std::io::Read;
        let path = Self::path(dir);
        let mut r = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&path)?);
        let mut st = AcceptorState::default();
        let mut head = [0u8; 8];
        let mut payload = Vec::new();
        loop {
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_le_bytes(head[..4].try_into()?) as usize;
            let crc = u32::from_le_bytes(head[4..].try_into()?);
            if len == 0 {
                break; // the zero-filled, never written tail
            }
            payload.resize(len, 0);
            r.read_exact(&mut payload)?;
            if crc32fast::hash(&payload) != crc {
                break; // torn last record
            }
            st.apply(synod_codec::decode(&payload)?);
        }
        Ok(st)
    }
}

impl Writer for PreallocLog {
    fn commit(&mut self, batch: &[Record]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.buf.clear();
        for r in batch {
            let payload = synod_codec::encode(r)?;
            self.buf
                .extend_from_slice(&u32::try_from(payload.len())?.to_le_bytes());
            self.buf
                .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            self.buf.extend_from_slice(&payload);
        }
        let end = self.off + self.buf.len() as u64;
        if end > self.len {
            self.len = end.next_multiple_of(PREALLOC);
            self.file.set_len(self.len)?;
        }
        self.file.write_all_at(&self.buf, self.off)?;
        self.off = end;
        self.file.sync_data()?;
        Ok(())
    }
}

/// The records every engine writes: slots 0..n, one 256-byte command each.
fn workload(n: u64, op_bytes: usize) -> Vec<Record> {
    let ballot = Ballot::new(1, NodeId::new("n1"));
    let mut rng = SplitMix64::new(0x5EED);
    (0..n)
        .map(|slot| {
            // Pseudo-random ops: compression must not flatter any engine.
            let op: Vec<u8> = (0..op_bytes).map(|_| rng.next_u64() as u8).collect();
            Record::Accept {
                slot,
                ballot: ballot.clone(),
                value: Value::Batch(vec![Command {
                    client: ClientId(7),
                    seq: slot + 1,
                    op: Bytes::from(op),
                }]),
            }
        })
        .collect()
}

/// Apparent size (sum of file lengths) and allocated size (blocks) of every
/// file under `dir`.
fn disk_usage(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0, 0);
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

/// Results of one engine at one batch size, pooled over rounds.
#[derive(Default)]
struct Cell {
    records: u64,
    syncs: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    apparent: u64,
    allocated: u64,
    recoveries: Vec<Duration>,
}

impl Cell {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    fn syncs_per_sec(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let rank = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len());
        l[rank - 1]
    }
    fn recovery(&self) -> Duration {
        let mut r = self.recoveries.clone();
        r.sort_unstable();
        r[r.len() / 2]
    }
}

fn run_one(
    engine: Engine,
    base: &Path,
    records: &[Record],
    batch: usize,
    cell: &mut Cell,
) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("synod-storage-bench-")
        .tempdir_in(base)
        .with_context(|| format!("temp dir under {}", base.display()))?;
    let dir = tmp.path();

    let mut w = engine.open(dir)?;
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        let t = Instant::now();
        w.commit(chunk)?;
        cell.latencies.push(t.elapsed());
        cell.syncs += 1;
    }
    cell.elapsed += start.elapsed();
    cell.records += records.len() as u64;
    drop(w);

    let (apparent, allocated) = disk_usage(dir)?;
    cell.apparent = apparent;
    cell.allocated = allocated;

    let t = Instant::now();
    let st = engine.recover(dir)?;
    cell.recoveries.push(t.elapsed());
    ensure!(
        st.accepted.len() == records.len(),
        "{}: recovered {} of {} records",
        engine.label(),
        st.accepted.len(),
        records.len()
    );
    if let Some(Record::Accept {
        slot,
        ballot,
        value,
    }) = records.last()
    {
        ensure!(
            st.accepted.get(slot) == Some(&(ballot.clone(), value.clone())),
            "{}: last record recovered wrong",
            engine.label()
        );
    }
    Ok(())
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.records > 0, "--records must be positive");
    ensure!(
        args.batch.iter().all(|b| *b > 0),
        "batch sizes must be positive"
    );
    ensure!(args.rounds > 0, "--rounds must be positive");
    ensure!(!args.engines.is_empty(), "no engine selected");
    std::fs::create_dir_all(&args.dir)?;
    let base = args.dir.canonicalize()?;

    let records = workload(args.records, args.op_bytes);
    let encoded = synod_codec::encode(&records[0])?.len();
    println!(
        "# Synod storage bench: {} Accept records/run ({} B encoded each, op {} B), batches {:?}, rounds {}, dir {}\n",
        args.records,
        encoded,
        args.op_bytes,
        args.batch,
        args.rounds,
        base.display()
    );

    let mut cells: Vec<Vec<Cell>> = args
        .batch
        .iter()
        .map(|_| args.engines.iter().map(|_| Cell::default()).collect())
        .collect();
    let total = Instant::now();
    for round in 0..args.rounds {
        for (bi, &batch) in args.batch.iter().enumerate() {
            // Engines run back to back per batch size, starting with a
            // different one each round, so drift on a noisy machine is shared.
            for k in 0..args.engines.len() {
                let ei = (k + round) % args.engines.len();
                let engine = args.engines[ei];
                let t = Instant::now();
                run_one(engine, &base, &records, batch, &mut cells[bi][ei])?;
                eprintln!(
                    "round {} batch {batch:>3} {:<12} {:>6.2} s",
                    round + 1,
                    engine.label(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    eprintln!("total {:.1} s\n", total.elapsed().as_secs_f64());

    println!("| engine | batch | records/s | syncs/s | p50 batch | p99 batch | disk apparent / allocated (KiB) | B/record | recovery |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (bi, &batch) in args.batch.iter().enumerate() {
        for (ei, engine) in args.engines.iter().enumerate() {
            let c = &cells[bi][ei];
            println!(
                "| {} | {batch} | {} | {} | {} | {} | {} / {} | {:.0} | {} |",
                engine.label(),
                fmt_rate(c.records_per_sec()),
                fmt_rate(c.syncs_per_sec()),
                fmt_dur(c.percentile(0.50)),
                fmt_dur(c.percentile(0.99)),
                c.apparent / 1024,
                c.allocated / 1024,
                c.allocated as f64 / args.records as f64,
                fmt_dur(c.recovery()),
            );
        }
    }

    if let Some(fi) = args.engines.iter().position(|e| *e == Engine::File) {
        println!("\n## Ratios vs FileStorage (throughput: >1× is faster; latency, disk, recovery: <1× is better)\n");
        for (bi, &batch) in args.batch.iter().enumerate() {
            let f = &cells[bi][fi];
            for (ei, engine) in args.engines.iter().enumerate() {
                if ei == fi {
                    continue;
                }
                let c = &cells[bi][ei];
                let ratio = |a: f64, b: f64| a / b;
                println!(
                    "- {} is {:.2}× FileStorage throughput at batch {batch} (p50 latency {:.2}×, p99 {:.2}×, disk {:.2}×, recovery {:.2}×)",
                    engine.short(),
                    ratio(c.records_per_sec(), f.records_per_sec()),
                    ratio(
                        c.percentile(0.50).as_secs_f64(),
                        f.percentile(0.50).as_secs_f64()
                    ),
                    ratio(
                        c.percentile(0.99).as_secs_f64(),
                        f.percentile(0.99).as_secs_f64()
                    ),
                    ratio(c.allocated as f64, f.allocated as f64),
                    ratio(c.recovery().as_secs_f64(), f.recovery().as_secs_f64()),
                );
            }
        }
    }
    Ok(())
}
