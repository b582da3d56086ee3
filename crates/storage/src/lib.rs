//! Durable acceptor state.
//!
//! An acceptor must never forget a promise or an accepted value it revealed,
//! so its state is a sequence of [`Record`]s appended to storage and made
//! durable before any message that depends on them leaves the node. Storage
//! sits behind [`AcceptorStorage`]; [`FileStorage`] is the on-disk log and
//! [`MemStorage`] the simulator's twin that can "crash" and keep only what
//! was synced. Both run the same conformance suite (`tests` below).

mod file;
mod mem;

pub use file::FileStorage;
pub use mem::MemStorage;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use synod_types::{Ballot, Slot, Value};

/// One durable change to an acceptor's state.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Record {
    Promise(Ballot),
    Accept {
        slot: Slot,
        ballot: Ballot,
        value: Value,
    },
}

/// What an acceptor recovers on restart.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct AcceptorState {
    pub promised: Ballot,
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
}

impl AcceptorState {
    /// Replays one record. Replay is idempotent and order-preserving, so the
    /// state after a restart equals the state before it, minus what was
    /// never synced.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Promise(b) => {
                if b > self.promised {
                    self.promised = b;
                }
            }
            Record::Accept {
                slot,
                ballot,
                value,
            } => {
                if ballot > self.promised {
                    self.promised = ballot.clone();
                }
                self.accepted.insert(slot, (ballot, value));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt record at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("encode: {0}")]
    Encode(String),
}

/// Where an acceptor's records go. `append` may buffer; only after `sync`
/// returns Ok may anything that depends on the appended records be revealed.
pub trait AcceptorStorage: Send {
    /// Replays every durable record.
    fn load(&mut self) -> Result<AcceptorState, StorageError>;
    fn append(&mut self, records: &[Record]) -> Result<(), StorageError>;
    fn sync(&mut self) -> Result<(), StorageError>;
}

#[cfg(test)]
mod tests {
    //! Conformance suite: every storage implementation must pass it.
    use super::*;
    use synod_types::{ClientId, Command, NodeId};

    fn b(r: u64, n: &str) -> Ballot {
        Ballot::new(r, NodeId::new(n))
    }
    fn v(x: u8) -> Value {
        Value::Batch(vec![Command {
            client: ClientId(1),
            seq: x as u64,
            op: vec![x].into(),
        }])
    }

    fn conformance<S: AcceptorStorage>(mut open: impl FnMut() -> S) {
        let mut s = open();
        assert_eq!(s.load().unwrap(), AcceptorState::default());
        s.append(&[Record::Promise(b(1, "a"))]).unwrap();
        s.append(&[
            Record::Accept {
                slot: 0,
                ballot: b(1, "a"),
                value: v(1),
            },
            Record::Accept {
                slot: 5,
                ballot: b(1, "a"),
                value: v(2),
            },
        ])
        .unwrap();
        s.sync().unwrap();
        s.append(&[
            Record::Promise(b(2, "b")),
            Record::Accept {
                slot: 0,
                ballot: b(2, "b"),
                value: v(3),
            },
        ])
        .unwrap();
        s.sync().unwrap();
        drop(s);

        let mut s = open();
        let st = s.load().unwrap();
        assert_eq!(st.promised, b(2, "b"));
        assert_eq!(st.accepted.get(&0), Some(&(b(2, "b"), v(3))));
        assert_eq!(st.accepted.get(&5), Some(&(b(1, "a"), v(2))));
        assert_eq!(st.accepted.len(), 2);
        // Appending after a reload continues the same history.
        s.append(&[Record::Promise(b(3, "a"))]).unwrap();
        s.sync().unwrap();
        drop(s);
        assert_eq!(open().load().unwrap().promised, b(3, "a"));
    }

    #[test]
    fn file_storage_conforms() {
        let dir = tempfile::tempdir().unwrap();
        conformance(|| FileStorage::open(dir.path()).unwrap());
    }

    #[test]
    fn mem_storage_conforms() {
        let shared = MemStorage::default();
        conformance(|| shared.reopen());
    }

    #[test]
    fn mem_storage_crash_keeps_only_synced() {
        let mut s = MemStorage::default();
        s.append(&[Record::Promise(b(1, "a"))]).unwrap();
        s.sync().unwrap();
        s.append(&[Record::Promise(b(2, "a"))]).unwrap();
        let mut after = s.reopen();
        assert_eq!(after.load().unwrap().promised, b(1, "a"));
    }
}
