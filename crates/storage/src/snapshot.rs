//! Replica snapshots on disk: one file, replaced atomically.
//!
//! ```text
//! b"SYNODSNP" | u32 LE format | u64 LE slot | u64 LE length | u32 LE crc32(data) | data
//! ```
//!
//! Written to `snapshot.bin.new`, synced, renamed over `snapshot.bin`, and
//! the directory synced: a crash leaves the old snapshot or the new one.
//! A snapshot that fails its checksum is corruption (it was complete when
//! renamed into place), so loading fails naming the file and offset.

use crate::StorageError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use synod_types::Slot;

const MAGIC: &[u8; 8] = b"SYNODSNP";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 4;

pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Opens `dir` for snapshots, creating it (durably: the cluster may
    /// compact its log against a snapshot in it) if missing.
    pub fn open(dir: &Path) -> Result<SnapshotStore, StorageError> {
        crate::create_dir_durably(dir)?;
        Ok(SnapshotStore::read_only(dir))
    }

    /// For reading what `dir` holds without changing anything on disk
    /// (`synod inspect`); `load` finds no snapshot if `dir` is missing.
    pub fn read_only(dir: &Path) -> SnapshotStore {
        SnapshotStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("snapshot.bin")
    }

    /// Makes `data` (covering the log below `slot`) the durable snapshot.
    pub fn save(&self, slot: Slot, data: &[u8]) -> Result<(), StorageError> {
        let tmp = self.dir.join("snapshot.bin.new");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        let mut head = Vec::with_capacity(HEADER);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&FORMAT.to_le_bytes());
        head.extend_from_slice(&slot.to_le_bytes());
        head.extend_from_slice(&(data.len() as u64).to_le_bytes());
        head.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&head).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let path = self.path();
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// The durable snapshot, if any: `(slot, data)`.
    pub fn load(&self) -> Result<Option<(Slot, Vec<u8>)>, StorageError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let corrupt = |offset: usize, reason: &str| StorageError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason: reason.to_string(),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(corrupt(0, "missing or wrong snapshot header"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(8) != FORMAT {
            return Err(corrupt(8, "unknown snapshot format"));
        }
        let slot = u64_at(12);
        let len = u64_at(20);
        if len != (bytes.len() - HEADER) as u64 {
            return Err(corrupt(20, "length does not match the file"));
        }
        let data = bytes[HEADER..].to_vec();
        if crc32fast::hash(&data) != u32_at(28) {
            return Err(corrupt(HEADER, "snapshot checksum mismatch"));
        }
        Ok(Some((slot, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_replace_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(dir.path()).unwrap();
        assert!(s.load().unwrap().is_none());
        s.save(10, b"first").unwrap();
        s.save(20, b"second").unwrap();
        assert_eq!(s.load().unwrap(), Some((20, b"second".to_vec())));
        let mut bytes = std::fs::read(s.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(s.path(), bytes).unwrap();
        let err = s.load().unwrap_err().to_string();
        assert!(
            err.contains("snapshot.bin") && err.contains("offset 32"),
            "{err}"
        );
    }
}
