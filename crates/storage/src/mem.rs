use crate::{AcceptorState, AcceptorStorage, Record, StorageError};
use std::sync::{Arc, Mutex};

/// In-memory storage that models a disk: appended records stay volatile until
/// `sync`, and [`MemStorage::reopen`] (a crash and restart) sees only synced
/// ones. Clones share the same "disk".
#[derive(Clone, Default, Debug)]
pub struct MemStorage {
    disk: Arc<Mutex<Vec<Record>>>,
    volatile: Vec<Record>,
    syncs: u64,
}

impl MemStorage {
    /// The same disk after a crash: unsynced records are gone.
    pub fn reopen(&self) -> MemStorage {
        MemStorage {
            disk: self.disk.clone(),
            volatile: Vec::new(),
            syncs: 0,
        }
    }

    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        // A poisoned lock only means another test thread panicked mid-push;
        // the Vec itself is still consistent.
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AcceptorStorage for MemStorage {
    fn load(&mut self) -> Result<AcceptorState, StorageError> {
        let mut st = AcceptorState::default();
        for r in self.disk().iter() {
            st.apply(r.clone());
        }
        Ok(st)
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        self.volatile.extend_from_slice(records);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let v = std::mem::take(&mut self.volatile);
        self.disk().extend(v);
        self.syncs += 1;
        Ok(())
    }

    fn rewrite(&mut self, state: &AcceptorState) -> Result<(), StorageError> {
        // Unsynced appends are older than `state` and included in it.
        self.volatile.clear();
        *self.disk() = state.checkpoint();
        self.syncs += 1;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.disk().len() as u64
    }
}
