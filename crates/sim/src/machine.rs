//! The simulator's own state machine: a handful of registers.
//!
//! It is deliberately tiny and dependency-free (the real KV store lives in
//! another crate) but it remembers *which* operations it applied, in order,
//! so the checker can compare replicas operation by operation instead of
//! trusting a digest alone. Every operation carries an id unique in the run,
//! and a write stores its own id as the value, so two writes are never
//! confused and a read's answer names the exact write it observed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use synod_types::StateMachine;

/// One register operation, as carried (codec-encoded) in `Command::op`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum RegOp {
    /// Store `value` (unique in the run) under `key`; answers the previous value.
    Set { key: u8, value: u64 },
    /// Read `key`; `id` only makes the operation unique. Answers the value.
    Get { key: u8, id: u64 },
}

impl RegOp {
    /// The run-unique id of this operation.
    pub fn id(&self) -> u64 {
        match *self {
            RegOp::Set { value, .. } => value,
            RegOp::Get { id, .. } => id,
        }
    }

    pub fn key(&self) -> u8 {
        match *self {
            RegOp::Set { key, .. } | RegOp::Get { key, .. } => key,
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(self, RegOp::Set { .. })
    }
}

/// Output of an operation: the register's value before a `Set`, or at a `Get`.
pub type RegOutput = Option<u64>;

/// Register map plus the history of applied operation ids.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Register {
    values: BTreeMap<u8, u64>,
    applied: Vec<u64>,
    digest: u64,
}

impl Register {
    /// Ids of the operations applied so far, in order.
    pub fn applied(&self) -> &[u64] {
        &self.applied
    }

    pub fn get(&self, key: u8) -> Option<u64> {
        self.values.get(&key).copied()
    }

    pub fn values(&self) -> &BTreeMap<u8, u64> {
        &self.values
    }
}

impl StateMachine for Register {
    type Command = RegOp;
    type Output = RegOutput;

    fn apply(&mut self, op: RegOp) -> RegOutput {
        self.applied.push(op.id());
        // The digest folds in the whole history, not just the final map, so
        // replicas that read in a different order are told apart too.
        self.digest = mix(self.digest ^ op.id());
        match op {
            RegOp::Set { key, value } => self.values.insert(key, value),
            RegOp::Get { key, .. } => self.values.get(&key).copied(),
        }
    }

    fn digest(&self) -> u64 {
        self.digest
    }

    /// A `Get` on the read-index path is not applied, so it is not in
    /// `applied`: the checker places it in the log order by the value it
    /// returned instead.
    fn query(&self, op: &RegOp) -> Option<RegOutput> {
        match *op {
            RegOp::Get { key, .. } => Some(self.values.get(&key).copied()),
            RegOp::Set { .. } => None,
        }
    }

    fn is_read_only(&self, op: &RegOp) -> bool {
        !op.is_write()
    }

    /// The history of applied ids is part of the snapshot, so the checker
    /// can keep comparing a restored replica's history with the others'.
    fn snapshot(&self) -> Vec<u8> {
        let values: Vec<(u8, u64)> = self.values.iter().map(|(k, v)| (*k, *v)).collect();
        synod_codec::encode(&(values, &self.applied, self.digest)).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (values, applied, digest): (Vec<(u8, u64)>, Vec<u64>, u64) =
            synod_codec::decode(bytes).map_err(|e| e.to_string())?;
        self.values = values.into_iter().collect();
        self.applied = applied;
        self.digest = digest;
        Ok(())
    }
}

/// SplitMix64's finaliser: a cheap, well-spread 64-bit mixer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_answers_previous_get_answers_current() {
        let mut r = Register::default();
        assert_eq!(r.apply(RegOp::Get { key: 1, id: 1 }), None);
        assert_eq!(r.apply(RegOp::Set { key: 1, value: 2 }), None);
        assert_eq!(r.apply(RegOp::Set { key: 1, value: 3 }), Some(2));
        assert_eq!(r.apply(RegOp::Get { key: 1, id: 4 }), Some(3));
        assert_eq!(r.applied(), &[1, 2, 3, 4]);
    }

    #[test]
    fn digest_depends_on_order() {
        let (mut a, mut b) = (Register::default(), Register::default());
        a.apply(RegOp::Get { key: 0, id: 1 });
        a.apply(RegOp::Get { key: 0, id: 2 });
        b.apply(RegOp::Get { key: 0, id: 2 });
        b.apply(RegOp::Get { key: 0, id: 1 });
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn ops_round_trip_through_the_codec() {
        for op in [
            RegOp::Set {
                key: 3,
                value: u64::MAX,
            },
            RegOp::Get { key: 0, id: 7 },
        ] {
            let bytes = synod_codec::encode(&op).unwrap();
            assert_eq!(synod_codec::decode::<RegOp>(&bytes).unwrap(), op);
        }
    }
}
