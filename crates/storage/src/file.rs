//! On-disk format of `acceptor.log`:
//!
//! ```text
//! header:  b"SYNODACC" | u32 LE format version
//! record:  u32 LE payload length | u32 LE crc32(payload) | payload (bincode Record)
//! ```
//!
//! A crash can leave the last record torn (short, or with a bad checksum and
//! nothing after it). That record was never synced, so nothing depending on
//! it was revealed: it is cut off on open. A bad record with more data after
//! it is corruption of the durable prefix, and opening fails naming the file
//! and offset, because starting without a promise we revealed could break
//! safety.

use crate::{AcceptorState, AcceptorStorage, Record, StorageError};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SYNODACC";
const FORMAT: u32 = 1;
const HEADER: u64 = 12;
/// No single record may claim more than this; a larger length is garbage.
const MAX_RECORD: u32 = 64 * 1024 * 1024;

pub struct FileStorage {
    dir: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
}

impl FileStorage {
    /// Opens (creating if needed) `dir/acceptor.log`.
    pub fn open(dir: &Path) -> Result<FileStorage, StorageError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("acceptor.log");
        let fresh = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        if fresh || file.metadata().map_err(io(&path))?.len() == 0 {
            let mut h = Vec::with_capacity(HEADER as usize);
            h.extend_from_slice(MAGIC);
            h.extend_from_slice(&FORMAT.to_le_bytes());
            file.write_all(&h).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            // The new directory entry must be durable too, or a crash could
            // lose the whole file after we already acted on its contents.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        let size = file.metadata().map_err(io(&path))?.len();
        Ok(FileStorage {
            out: BufWriter::with_capacity(1 << 16, file),
            dir: dir.to_path_buf(),
            path,
            size,
        })
    }

    fn encode_into(buf: &mut Vec<u8>, r: &Record) -> Result<(), StorageError> {
        let payload = synod_codec::encode(r).map_err(|e| StorageError::Encode(e.to_string()))?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| StorageError::Encode(format!("record of {} bytes", payload.len())))?;
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn scan(&self) -> Result<(Vec<Record>, u64, u64), StorageError> {
        scan(&self.path)
    }
}

/// What `synod inspect` shows about an acceptor log, read without
/// changing it (a torn tail is reported, not cut).
#[derive(Debug)]
pub struct LogReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub records: usize,
    /// Bytes after the last intact record (a torn write), if any.
    pub torn_bytes: u64,
    pub state: AcceptorState,
}

/// Reads `dir/acceptor.log` read-only. Corruption inside the durable
/// prefix is an error naming the file and offset, exactly as at startup.
pub fn inspect_log(dir: &Path) -> Result<LogReport, StorageError> {
    let path = dir.join("acceptor.log");
    let (records, good, total) = scan(&path)?;
    let mut state = AcceptorState::default();
    let n = records.len();
    for r in records {
        state.apply(r);
    }
    Ok(LogReport {
        path,
        bytes: total,
        records: n,
        torn_bytes: total - good,
        state,
    })
}

/// Reads every intact record of the log at `path`; returns them, the
/// offset where the intact prefix ends, and the file's length.
fn scan(path: &Path) -> Result<(Vec<Record>, u64, u64), StorageError> {
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|source| StorageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() < HEADER as usize || &buf[..8] != MAGIC {
        return Err(corrupt(0, "missing or wrong file header".into()));
    }
    let format = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if format != FORMAT {
        return Err(corrupt(8, format!("unknown format version {format}")));
    }
    let total = buf.len() as u64;
    let mut records = Vec::new();
    let mut off = HEADER as usize;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < 8 {
            break; // torn header of the last record
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            if rest.len() as u64 <= 8 + MAX_RECORD as u64 {
                break; // garbage length in the tail: torn
            }
            return Err(corrupt(
                off as u64,
                format!("record length {len} too large"),
            ));
        }
        let end = 8 + len as usize;
        if rest.len() < end {
            break; // torn payload
        }
        let payload = &rest[8..end];
        if crc32fast::hash(payload) != crc {
            if rest.len() == end {
                break; // torn: checksum of the very last record
            }
            return Err(corrupt(off as u64, "checksum mismatch".into()));
        }
        let record: Record =
            synod_codec::decode(payload).map_err(|e| corrupt(off as u64, e.to_string()))?;
        records.push(record);
        off += end;
    }
    Ok((records, off as u64, total))
}

impl AcceptorStorage for FileStorage {
    fn load(&mut self) -> Result<AcceptorState, StorageError> {
        self.out.flush().map_err(|e| self.io(e))?;
        let (records, good, total) = self.scan()?;
        if good < total {
            tracing::warn!(path = %self.path.display(), offset = good, dropped = total - good,
                "discarding torn final record");
            let f = self.out.get_mut();
            f.set_len(good).map_err(|e| StorageError::Io {
                path: self.path.clone(),
                source: e,
            })?;
            f.seek(SeekFrom::End(0)).map_err(|e| StorageError::Io {
                path: self.path.clone(),
                source: e,
            })?;
            f.sync_all().map_err(|e| StorageError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        }
        let mut st = AcceptorState::default();
        for r in records {
            st.apply(r);
        }
        Ok(st)
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for r in records {
            Self::encode_into(&mut buf, r)?;
        }
        self.out.write_all(&buf).map_err(|e| self.io(e))?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }

    /// Writes the checkpoint to `acceptor.log.new`, syncs it, renames it
    /// over `acceptor.log` and syncs the directory: rename is atomic, so a
    /// crash leaves one complete log or the other.
    fn rewrite(&mut self, state: &AcceptorState) -> Result<(), StorageError> {
        let tmp = self.dir.join("acceptor.log.new");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT.to_le_bytes());
        for r in state.checkpoint() {
            Self::encode_into(&mut buf, &r)?;
        }
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&buf).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        // The old writer's buffer only held records already in `state`.
        self.out = BufWriter::with_capacity(1 << 16, file);
        self.size = buf.len() as u64;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_types::{Ballot, NodeId};

    fn promise(r: u64) -> Record {
        Record::Promise(Ballot::new(r, NodeId::new("n1")))
    }

    #[test]
    fn torn_tail_is_discarded_and_prefix_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&[promise(1), promise(2)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join("acceptor.log");
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut s = FileStorage::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap().promised.round, 1);
        // And the log is writable again after the cut.
        s.append(&[promise(7)]).unwrap();
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            FileStorage::open(dir.path())
                .unwrap()
                .load()
                .unwrap()
                .promised
                .round,
            7
        );
    }

    #[test]
    fn corruption_inside_prefix_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStorage::open(dir.path()).unwrap();
        s.append(&[promise(1), promise(2)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join("acceptor.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER as usize + 9] ^= 0xFF; // inside the first record's payload
        std::fs::write(&path, bytes).unwrap();
        let err = FileStorage::open(dir.path())
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("acceptor.log"), "{err}");
        assert!(err.contains("offset 12"), "{err}");
    }
}
