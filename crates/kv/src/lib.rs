//! The key-value state machine Synod replicates.
//!
//! This crate owns the command and output vocabulary of the store
//! ([`KvCommand`], [`KvOutput`]) and [`KvStore`], the deterministic
//! [`StateMachine`] every replica applies the chosen log to. It knows nothing
//! of the network or of RESP: front ends translate their protocol into
//! [`KvCommand`]s and encode them with `synod_codec`, the replica hands the
//! decoded commands to [`KvStore::apply`].
//!
//! Determinism is the whole contract: the store is a `BTreeMap`, and
//! [`KvStore::digest`] is an FNV-1a hash written here over the sorted
//! entries, so its value cannot change with the Rust version or the process.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use synod_types::StateMachine;

/// When a `Set` may write, mirroring Redis' `NX` / `XX` options.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug, Default)]
pub enum SetCond {
    #[default]
    Always,
    /// `NX`: only when the key does not exist yet.
    IfAbsent,
    /// `XX`: only when the key already exists.
    IfPresent,
}

/// One command of the store, as it travels through the log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum KvCommand {
    /// Compare-and-set: write `new` only if the key currently holds exactly
    /// `expected` (`None`: only if the key is absent). Answers 1 or 0.
    Cas {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
    },
    /// Adds `by` to the integer stored at `key` (absent counts as 0) and
    /// answers the new value; refuses non-integers and overflow like Redis.
    Incr {
        key: Bytes,
        by: i64,
    },
    /// A read: served through the leader's read index by default, or
    /// through the log when reads are configured so; linearizable either way.
    Get {
        key: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        cond: SetCond,
        /// Answer with the previous value (Redis `SET ... GET`) instead of
        /// `Ok`/`Nil`.
        get_old: bool,
    },
    /// Answers how many of `keys` existed and were removed.
    Del {
        keys: Vec<Bytes>,
    },
    /// Answers how many of `keys` exist; a key named twice counts twice, as
    /// in Redis.
    Exists {
        keys: Vec<Bytes>,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    /// Number of keys in the store.
    DbSize,
    /// Commands a client sent back to back without waiting (a RESP
    /// pipeline), applied in order as one log entry so the pipeline costs
    /// one consensus round instead of one per command. Answers
    /// [`KvOutput::Pipeline`], one output per command applied; each command
    /// succeeds or fails on its own, as in a Redis pipeline. Never nested:
    /// a pipeline inside a pipeline answers an error in its place.
    ///
    /// The replies of one pipeline share [`MAX_REPLY_BYTES`]. A command
    /// whose reply would not fit, after the first, is not applied: it and
    /// every command after it are left out of the output, and the front end
    /// sends them again as a pipeline of their own. So a client's commands
    /// answer the same however the front end happened to group them (which
    /// depends on how its bytes arrived), and the cut depends only on the
    /// state, so every replica makes the same one.
    ///
    /// Added last so the encoding of every older variant, and so every log
    /// and snapshot written before it, is unchanged.
    ///
    /// Decoding refuses a pipeline inside a pipeline: these bytes come from
    /// peers and from disk, and decoding a nested one would recurse, so a
    /// deep enough nesting would overflow the stack.
    Pipeline(#[serde(deserialize_with = "flat")] Vec<KvCommand>),
}

thread_local! {
    /// Set while this thread decodes the elements of a pipeline.
    static IN_PIPELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Decodes a pipeline's elements, refusing a pipeline among them: the
/// nested one's own `deserialize_with` finds the flag set and fails at once,
/// so decoding never goes deeper than one level whatever the bytes say.
fn flat<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_PIPELINE.with(|f| f.set(false));
        }
    }
    if IN_PIPELINE.with(|f| f.replace(true)) {
        return Err(serde::de::Error::custom("a pipeline inside a pipeline"));
    }
    let _reset = Reset;
    Vec::deserialize(d)
}

/// What applying a [`KvCommand`] answers. Each variant maps onto exactly one
/// RESP2 reply type, so front ends need no knowledge of the command.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum KvOutput {
    Ok,
    /// A missing key, or a conditional `Set` that did not write.
    Nil,
    Value(Bytes),
    Int(i64),
    Values(Vec<Option<Bytes>>),
    /// The command was applied (deterministically) and refused, e.g. INCR
    /// of a value that is not an integer; the state did not change.
    Error(String),
    /// The outputs of a [`KvCommand::Pipeline`], in its order. A front end
    /// answers each as its own reply. Decoding refuses nesting, as for
    /// [`KvCommand::Pipeline`] (replies travel inside peers' snapshots).
    Pipeline(#[serde(deserialize_with = "flat")] Vec<KvOutput>),
}

/// Most value bytes one reply may carry (an `MGET`, or all the reads of a
/// pipeline together). Every replica keeps each client's last reply for
/// retries, so without a bound a few bytes of `MGET big big big ...` would
/// make every node hold gigabytes. The check depends only on the state, so
/// every replica refuses the same commands.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Sums byte counts in `u64`, saturating: the total is compared with
/// [`MAX_REPLY_BYTES`] and printed in errors, so it must come out the same
/// on a 32-bit replica as on a 64-bit one, and never overflow.
fn total_bytes(lens: impl Iterator<Item = usize>) -> u64 {
    lens.fold(0u64, |sum, n| sum.saturating_add(n as u64))
}

fn reply_too_large(bytes: u64) -> KvOutput {
    KvOutput::Error(format!(
        "ERR reply of {bytes} bytes exceeds the {MAX_REPLY_BYTES}-byte limit"
    ))
}

/// Parses an integer argument or stored value the way Redis does
/// (`string2ll`): an optional `-`, then digits without leading zeros, and
/// nothing else; `+5`, `007`, `-0` and ` 5` are not integers.
pub fn parse_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let negative = digits.len() < bytes.len();
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [first, ..] if !(b'1'..=b'9').contains(first) => return None,
        _ => {}
    }
    // Accumulate towards the negative side, which holds i64::MIN.
    let mut n: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

impl KvOutput {
    fn from_option(value: Option<Bytes>) -> Self {
        value.map_or(KvOutput::Nil, KvOutput::Value)
    }

    /// Value bytes this output carries.
    pub fn value_bytes(&self) -> u64 {
        match self {
            KvOutput::Value(v) => v.len() as u64,
            KvOutput::Values(vs) => total_bytes(vs.iter().flatten().map(Bytes::len)),
            KvOutput::Pipeline(outs) => outs
                .iter()
                .fold(0u64, |sum, o| sum.saturating_add(o.value_bytes())),
            KvOutput::Ok | KvOutput::Nil | KvOutput::Int(_) | KvOutput::Error(_) => 0,
        }
    }

    fn count(n: usize) -> Self {
        KvOutput::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// The replicated key-value store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    data: BTreeMap<Bytes, Bytes>,
}

impl KvStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.data.iter()
    }

    fn set(&mut self, key: Bytes, value: Bytes, cond: SetCond, get_old: bool) -> KvOutput {
        use std::collections::btree_map::Entry;
        // One descent of the tree per SET: this runs for every write on
        // every replica, and key comparisons were its main cost.
        let (allowed, old) = match (self.data.entry(key), cond) {
            (Entry::Occupied(mut e), SetCond::Always | SetCond::IfPresent) => {
                (true, Some(e.insert(value)))
            }
            (Entry::Occupied(e), SetCond::IfAbsent) => (false, Some(e.get().clone())),
            (Entry::Vacant(e), SetCond::Always | SetCond::IfAbsent) => {
                e.insert(value);
                (true, None)
            }
            (Entry::Vacant(_), SetCond::IfPresent) => (false, None),
        };
        match (get_old, allowed) {
            (true, _) => KvOutput::from_option(old),
            (false, true) => KvOutput::Ok,
            (false, false) => KvOutput::Nil,
        }
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Output = KvOutput;

    /// 2: strict integers (44f1e5c) and the 64 MiB cap on a read's values.
    /// 3: a pipeline stops before a command whose reply would pass the cap.
    const SEMANTICS: &'static str = "synod-kv/3";

    fn apply(&mut self, command: KvCommand) -> KvOutput {
        // Reads answer the same whether they come through the log or the
        // read index: one function serves both.
        if let Some(output) = self.query(&command) {
            return output;
        }
        match command {
            KvCommand::Get { .. }
            | KvCommand::Exists { .. }
            | KvCommand::MGet { .. }
            | KvCommand::DbSize => KvOutput::Error("ERR internal: read not answered".into()),
            KvCommand::Pipeline(commands) => {
                let mut budget = ReplyBudget::default();
                let mut outs = Vec::with_capacity(commands.len());
                for c in commands {
                    if !outs.is_empty() && !budget.fits(self.reply_bytes(&c)) {
                        break;
                    }
                    outs.push(match c {
                        KvCommand::Pipeline(_) => nested_pipeline(),
                        c if self.is_read_only(&c) => budget.admit(self.apply(c)),
                        // Only the first command can get here with a reply
                        // past the budget. A write (`SET ... GET`) is
                        // applied whatever its reply costs, and the client
                        // is told so instead of getting the old value.
                        c => budget.admit_write(self.apply(c)),
                    });
                }
                KvOutput::Pipeline(outs)
            }
            KvCommand::Set {
                key,
                value,
                cond,
                get_old,
            } => self.set(key, value, cond, get_old),
            KvCommand::Del { keys } => KvOutput::count(
                keys.iter()
                    .filter(|k| self.data.remove(*k).is_some())
                    .count(),
            ),
            KvCommand::Cas { key, expected, new } => {
                if self.data.get(&key) == expected.as_ref() {
                    self.data.insert(key, new);
                    KvOutput::Int(1)
                } else {
                    KvOutput::Int(0)
                }
            }
            KvCommand::Incr { key, by } => {
                let current = match self.data.get(&key) {
                    None => Some(0),
                    Some(v) => parse_int(v),
                };
                match current.map(|c| c.checked_add(by)) {
                    None => KvOutput::Error("ERR value is not an integer or out of range".into()),
                    Some(None) => {
                        KvOutput::Error("ERR increment or decrement would overflow".into())
                    }
                    Some(Some(n)) => {
                        self.data.insert(key, Bytes::from(n.to_string()));
                        KvOutput::Int(n)
                    }
                }
            }
        }
    }

    fn query(&self, command: &KvCommand) -> Option<KvOutput> {
        Some(match command {
            KvCommand::Get { key } => KvOutput::from_option(self.data.get(key).cloned()),
            KvCommand::Exists { keys } => {
                KvOutput::count(keys.iter().filter(|k| self.data.contains_key(*k)).count())
            }
            KvCommand::MGet { keys } => {
                let found = self.reply_bytes(command);
                if found > MAX_REPLY_BYTES as u64 {
                    return Some(reply_too_large(found));
                }
                KvOutput::Values(keys.iter().map(|k| self.data.get(k).cloned()).collect())
            }
            KvCommand::DbSize => KvOutput::count(self.data.len()),
            KvCommand::Pipeline(commands) if self.is_read_only(command) => {
                // Cut where `apply` would, so both paths answer alike.
                let mut budget = ReplyBudget::default();
                let mut outs = Vec::with_capacity(commands.len());
                for c in commands {
                    if !outs.is_empty() && !budget.fits(self.reply_bytes(c)) {
                        break;
                    }
                    outs.push(budget.admit(self.query(c).unwrap_or_else(nested_pipeline)));
                }
                KvOutput::Pipeline(outs)
            }
            KvCommand::Pipeline(_)
            | KvCommand::Set { .. }
            | KvCommand::Del { .. }
            | KvCommand::Cas { .. }
            | KvCommand::Incr { .. } => return None,
        })
    }

    fn is_read_only(&self, command: &KvCommand) -> bool {
        match command {
            KvCommand::Get { .. }
            | KvCommand::Exists { .. }
            | KvCommand::MGet { .. }
            | KvCommand::DbSize => true,
            // A pipeline of reads only skips the log as a whole; one write
            // anywhere in it sends every command through the log, which
            // keeps the pipeline's order without splitting it.
            KvCommand::Pipeline(commands) => {
                !commands.is_empty()
                    && commands
                        .iter()
                        .all(|c| !matches!(c, KvCommand::Pipeline(_)) && self.is_read_only(c))
            }
            KvCommand::Set { .. }
            | KvCommand::Del { .. }
            | KvCommand::Cas { .. }
            | KvCommand::Incr { .. } => false,
        }
    }

    fn digest(&self) -> u64 {
        let mut h = Fnv1a::new();
        h.write_u64(self.data.len() as u64);
        for (k, v) in &self.data {
            // Length prefixes keep ("a", "bc") and ("ab", "c") apart.
            h.write_u64(k.len() as u64);
            h.write(k);
            h.write_u64(v.len() as u64);
            h.write(v);
        }
        h.finish()
    }

    fn snapshot(&self) -> Vec<u8> {
        let entries: Vec<(&Bytes, &Bytes)> = self.data.iter().collect();
        // Encoding a list of byte pairs cannot fail short of running out of
        // memory; an empty snapshot would be caught on restore anyway.
        synod_codec::encode(&entries).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let entries: Vec<(Bytes, Bytes)> =
            synod_codec::decode(snapshot).map_err(|e| format!("kv snapshot: {e}"))?;
        self.data = entries.into_iter().collect();
        Ok(())
    }
}

impl KvStore {
    /// Value bytes the reply to `command` would carry if applied now.
    fn reply_bytes(&self, command: &KvCommand) -> u64 {
        let len = |k: &Bytes| self.data.get(k).map_or(0, Bytes::len);
        match command {
            KvCommand::Get { key } => len(key) as u64,
            KvCommand::MGet { keys } => total_bytes(keys.iter().map(len)),
            KvCommand::Set {
                key, get_old: true, ..
            } => len(key) as u64,
            KvCommand::Set { .. }
            | KvCommand::Exists { .. }
            | KvCommand::DbSize
            | KvCommand::Del { .. }
            | KvCommand::Cas { .. }
            | KvCommand::Incr { .. }
            | KvCommand::Pipeline(_) => 0,
        }
    }
}

/// [`MAX_REPLY_BYTES`] shared by the outputs of one pipeline, in order.
#[derive(Default)]
struct ReplyBudget {
    used: u64,
}

impl ReplyBudget {
    fn fits(&self, bytes: u64) -> bool {
        self.used.saturating_add(bytes) <= MAX_REPLY_BYTES as u64
    }

    /// `output` if it fits, else the total it would have made.
    fn take(&mut self, output: KvOutput) -> Result<KvOutput, u64> {
        let total = self.used.saturating_add(output.value_bytes());
        if total > MAX_REPLY_BYTES as u64 {
            return Err(total);
        }
        self.used = total;
        Ok(output)
    }

    fn admit(&mut self, output: KvOutput) -> KvOutput {
        self.take(output).unwrap_or_else(reply_too_large)
    }

    fn admit_write(&mut self, output: KvOutput) -> KvOutput {
        self.take(output).unwrap_or_else(|total| {
            KvOutput::Error(format!(
                "ERR applied, but its reply would make {total} bytes, past the \
                 {MAX_REPLY_BYTES}-byte limit"
            ))
        })
    }
}

fn nested_pipeline() -> KvOutput {
    KvOutput::Error("ERR a pipeline cannot hold a pipeline".into())
}

/// 64-bit FNV-1a. Written out rather than taken from std because the
/// digest is compared across nodes and builds, and std's hashers promise no
/// stable algorithm.
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn keys(ks: &[&str]) -> Vec<Bytes> {
        ks.iter().map(|k| b(k)).collect()
    }

    fn set(k: &str, v: &str, cond: SetCond, get_old: bool) -> KvCommand {
        KvCommand::Set {
            key: b(k),
            value: b(v),
            cond,
            get_old,
        }
    }

    fn get(k: &str) -> KvCommand {
        KvCommand::Get { key: b(k) }
    }

    #[test]
    fn cas_swaps_only_on_an_exact_match() {
        let mut kv = KvStore::new();
        let cas = |e: Option<&str>, n: &str| KvCommand::Cas {
            key: Bytes::from("k"),
            expected: e.map(|e| Bytes::from(e.to_string())),
            new: Bytes::from(n.to_string()),
        };
        assert_eq!(
            kv.apply(cas(Some("1"), "2")),
            KvOutput::Int(0),
            "absent is not \"1\""
        );
        assert_eq!(kv.apply(cas(None, "1")), KvOutput::Int(1));
        assert_eq!(
            kv.apply(cas(None, "9")),
            KvOutput::Int(0),
            "no longer absent"
        );
        assert_eq!(kv.apply(cas(Some("1"), "2")), KvOutput::Int(1));
        assert_eq!(
            kv.apply(cas(Some("1"), "3")),
            KvOutput::Int(0),
            "a retry of the same CAS fails"
        );
        assert_eq!(kv.get(b"k"), Some(&Bytes::from("2")));
    }

    #[test]
    fn incr_counts_from_zero_and_refuses_non_integers() {
        let mut kv = KvStore::new();
        let incr = |by| KvCommand::Incr {
            key: Bytes::from("n"),
            by,
        };
        assert_eq!(kv.apply(incr(1)), KvOutput::Int(1));
        assert_eq!(kv.apply(incr(-5)), KvOutput::Int(-4));
        kv.apply(set("n", "abc", SetCond::Always, false));
        assert!(matches!(kv.apply(incr(1)), KvOutput::Error(_)));
        assert_eq!(
            kv.get(b"n"),
            Some(&Bytes::from("abc")),
            "refused INCR changes nothing"
        );
        kv.apply(set("n", &i64::MAX.to_string(), SetCond::Always, false));
        assert!(matches!(kv.apply(incr(1)), KvOutput::Error(e) if e.contains("overflow")));
    }

    #[test]
    fn snapshot_round_trips_and_garbage_is_refused() {
        let mut a = KvStore::new();
        for i in 0..50u32 {
            a.apply(set(
                &format!("k{i}"),
                &format!("v{i}"),
                SetCond::Always,
                false,
            ));
        }
        let mut b = KvStore::new();
        b.restore(&a.snapshot()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert!(b.restore(b"\xff\xff\xff").is_err());
        assert_eq!(a, b, "a failed restore leaves the state alone");
    }

    #[test]
    fn a_state_larger_than_a_peer_frame_snapshots_and_restores() {
        // 70 values of 1 MiB: past the 64 MiB peer-frame cap, which once
        // bounded every decode, so a node that saved this could not start.
        let mut a = KvStore::new();
        for i in 0..70u8 {
            a.apply(KvCommand::Set {
                key: Bytes::from(format!("k{i}")),
                value: Bytes::from(vec![i; 1 << 20]),
                cond: SetCond::Always,
                get_old: false,
            });
        }
        let image = a.snapshot();
        assert!(image.len() > synod_codec::DEFAULT_MAX_FRAME);
        let mut b = KvStore::new();
        b.restore(&image).unwrap();
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn integers_parse_as_redis_parses_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-12", Some(-12)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+5", None),
            ("007", None),
            ("-0", None),
            ("-", None),
            ("", None),
            (" 5", None),
            ("5 ", None),
            ("1e3", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
        let mut kv = KvStore::new();
        kv.apply(set("n", "007", SetCond::Always, false));
        let incr = KvCommand::Incr { key: b("n"), by: 1 };
        assert!(matches!(kv.apply(incr), KvOutput::Error(e) if e.contains("not an integer")));
    }

    #[test]
    fn replies_past_the_limit_are_refused_the_same_on_every_replica() {
        let mut kv = KvStore::new();
        let big = Bytes::from(vec![b'x'; 16 << 20]);
        kv.apply(KvCommand::Set {
            key: b("big"),
            value: big,
            cond: SetCond::Always,
            get_old: false,
        });
        let mget = |n| KvCommand::MGet {
            keys: vec![b("big"); n],
        };
        assert!(matches!(kv.apply(mget(4)), KvOutput::Values(v) if v.len() == 4));
        assert!(matches!(kv.apply(mget(5)), KvOutput::Error(e) if e.contains("exceeds")));
        // A pipeline's replies share the budget: it stops before the
        // command that would pass it, leaving that one and the rest
        // unapplied for the front end to send again, on the log path and
        // the read path alike.
        let reads = KvCommand::Pipeline(vec![get("big"), mget(3), get("big"), get("big")]);
        let read_outs = kv.query(&reads);
        let rest = vec![
            get("big"),
            set("after", "1", SetCond::Always, true),
            get("after"),
        ];
        let mut cmds = vec![get("big"), mget(3)];
        cmds.extend(rest.iter().cloned());
        let out = kv.apply(KvCommand::Pipeline(cmds));
        let KvOutput::Pipeline(outs) = out else {
            panic!("{out:?}")
        };
        assert_eq!(outs.len(), 2, "cut before the third command");
        assert_eq!(outs[0].value_bytes() + outs[1].value_bytes(), 64 << 20);
        assert_eq!(kv.get(b"after"), None, "the write after the cut waits");
        let Some(KvOutput::Pipeline(read_outs)) = read_outs else {
            panic!("{read_outs:?}")
        };
        assert_eq!(read_outs, outs);
        // Sent again on their own, the rest all succeed.
        let out = kv.apply(KvCommand::Pipeline(rest));
        let KvOutput::Pipeline(outs) = out else {
            panic!("{out:?}")
        };
        assert_eq!(outs.len(), 3);
        assert_eq!(outs[0].value_bytes(), 16 << 20);
        assert_eq!(outs[1], KvOutput::Nil);
        assert_eq!(outs[2], KvOutput::Value(b("1")));
        // The first command always runs, and is refused if it alone is
        // too large; a write is applied even then.
        let out = kv.apply(KvCommand::Pipeline(vec![mget(5), get("after")]));
        let KvOutput::Pipeline(outs) = out else {
            panic!("{out:?}")
        };
        assert!(matches!(&outs[0], KvOutput::Error(e) if e.contains("exceeds")));
        assert_eq!(outs[1], KvOutput::Value(b("1")));
    }

    #[test]
    fn reply_sizes_saturate_instead_of_overflowing() {
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        let out = KvOutput::Values(vec![Some(big); 5000]);
        assert_eq!(out.value_bytes(), 5000 << 20);
        assert_eq!(total_bytes([usize::MAX, usize::MAX].into_iter()), u64::MAX);
        let nested = KvOutput::Pipeline(vec![KvOutput::Value(Bytes::from_static(b"ab")), out]);
        assert_eq!(nested.value_bytes(), (5000 << 20) + 2);
    }

    #[test]
    fn set_then_get() {
        let mut s = KvStore::new();
        assert_eq!(s.apply(get("a")), KvOutput::Nil);
        assert_eq!(s.apply(set("a", "1", SetCond::Always, false)), KvOutput::Ok);
        assert_eq!(s.apply(get("a")), KvOutput::Value(b("1")));
        assert_eq!(s.apply(set("a", "2", SetCond::Always, false)), KvOutput::Ok);
        assert_eq!(s.apply(get("a")), KvOutput::Value(b("2")));
    }

    #[test]
    fn set_nx_writes_only_absent_keys() {
        let mut s = KvStore::new();
        assert_eq!(
            s.apply(set("a", "1", SetCond::IfAbsent, false)),
            KvOutput::Ok
        );
        assert_eq!(
            s.apply(set("a", "2", SetCond::IfAbsent, false)),
            KvOutput::Nil
        );
        assert_eq!(s.get(b"a"), Some(&b("1")));
    }

    #[test]
    fn set_xx_writes_only_present_keys() {
        let mut s = KvStore::new();
        assert_eq!(
            s.apply(set("a", "1", SetCond::IfPresent, false)),
            KvOutput::Nil
        );
        assert!(s.is_empty());
        s.apply(set("a", "1", SetCond::Always, false));
        assert_eq!(
            s.apply(set("a", "2", SetCond::IfPresent, false)),
            KvOutput::Ok
        );
        assert_eq!(s.get(b"a"), Some(&b("2")));
    }

    #[test]
    fn set_get_returns_the_old_value() {
        let mut s = KvStore::new();
        assert_eq!(s.apply(set("a", "1", SetCond::Always, true)), KvOutput::Nil);
        assert_eq!(
            s.apply(set("a", "2", SetCond::Always, true)),
            KvOutput::Value(b("1"))
        );
        assert_eq!(s.get(b"a"), Some(&b("2")));
        // With a condition that fails, GET still reports the current value and
        // nothing is written (Redis 7 semantics).
        assert_eq!(
            s.apply(set("a", "3", SetCond::IfAbsent, true)),
            KvOutput::Value(b("2"))
        );
        assert_eq!(s.get(b"a"), Some(&b("2")));
        assert_eq!(
            s.apply(set("z", "3", SetCond::IfPresent, true)),
            KvOutput::Nil
        );
        assert_eq!(s.get(b"z"), None);
    }

    #[test]
    fn a_pipeline_cannot_nest_and_an_empty_one_is_not_a_read() {
        let mut s = KvStore::new();
        let empty = KvCommand::Pipeline(vec![]);
        assert!(!s.is_read_only(&empty));
        assert_eq!(s.apply(empty), KvOutput::Pipeline(vec![]));
        let nested = KvCommand::Pipeline(vec![
            get("a"),
            KvCommand::Pipeline(vec![get("a")]),
            set("a", "1", SetCond::Always, false),
        ]);
        assert!(!s.is_read_only(&nested));
        assert_eq!(
            s.apply(nested),
            KvOutput::Pipeline(vec![KvOutput::Nil, nested_pipeline(), KvOutput::Ok])
        );
        assert_eq!(s.get(b"a"), Some(&b("1")));
        // Reads around a nested pipeline still do not make it a read.
        let reads = KvCommand::Pipeline(vec![get("a"), KvCommand::Pipeline(vec![])]);
        assert!(!s.is_read_only(&reads));
        assert_eq!(s.query(&reads), None);
    }

    /// A nested pipeline comes only from a faulty peer or a damaged log:
    /// decoding refuses it at any depth instead of recursing into it.
    #[test]
    fn a_nested_pipeline_does_not_decode_however_deep() {
        let nested = KvCommand::Pipeline(vec![KvCommand::Pipeline(vec![get("a")])]);
        let wire = synod_codec::encode(&nested).unwrap();
        assert!(synod_codec::decode::<KvCommand>(&wire).is_err());
        let mut deep = [8u8, 1].repeat(200_000);
        deep.push(7);
        assert!(synod_codec::decode::<KvCommand>(&deep).is_err());
        let flat = KvCommand::Pipeline(vec![get("a"), KvCommand::DbSize]);
        let wire = synod_codec::encode(&flat).unwrap();
        assert_eq!(synod_codec::decode::<KvCommand>(&wire).unwrap(), flat);
        let mut deep_out = [6u8, 1].repeat(200_000);
        deep_out.push(0);
        assert!(synod_codec::decode::<KvOutput>(&deep_out).is_err());
        let outs = KvOutput::Pipeline(vec![KvOutput::Int(1), KvOutput::Error("e".into())]);
        let wire = synod_codec::encode(&outs).unwrap();
        assert_eq!(synod_codec::decode::<KvOutput>(&wire).unwrap(), outs);
    }

    /// Logs and snapshots written before `Pipeline` existed must decode the
    /// same: the variant went last, so older discriminants did not move.
    #[test]
    fn older_commands_keep_their_encoding() {
        assert_eq!(synod_codec::encode(&KvCommand::DbSize).unwrap(), vec![7]);
        assert_eq!(
            synod_codec::encode(&KvCommand::Get { key: b("k") }).unwrap(),
            vec![2, 1, b'k']
        );
        assert_eq!(synod_codec::encode(&KvOutput::Int(5)).unwrap()[0], 3);
    }

    #[test]
    fn del_counts_only_existing_keys() {
        let mut s = KvStore::new();
        s.apply(set("a", "1", SetCond::Always, false));
        s.apply(set("b", "2", SetCond::Always, false));
        let del = KvCommand::Del {
            keys: keys(&["a", "missing", "a", "b"]),
        };
        assert_eq!(s.apply(del), KvOutput::Int(2));
        assert!(s.is_empty());
    }

    #[test]
    fn exists_counts_repeats() {
        let mut s = KvStore::new();
        s.apply(set("a", "1", SetCond::Always, false));
        let exists = KvCommand::Exists {
            keys: keys(&["a", "a", "missing"]),
        };
        assert_eq!(s.apply(exists), KvOutput::Int(2));
    }

    #[test]
    fn mget_keeps_request_order_and_holes() {
        let mut s = KvStore::new();
        s.apply(set("a", "1", SetCond::Always, false));
        s.apply(set("c", "3", SetCond::Always, false));
        let mget = KvCommand::MGet {
            keys: keys(&["c", "b", "a"]),
        };
        assert_eq!(
            s.apply(mget),
            KvOutput::Values(vec![Some(b("3")), None, Some(b("1"))])
        );
    }

    #[test]
    fn dbsize_counts_keys() {
        let mut s = KvStore::new();
        assert_eq!(s.apply(KvCommand::DbSize), KvOutput::Int(0));
        s.apply(set("a", "1", SetCond::Always, false));
        s.apply(set("b", "1", SetCond::Always, false));
        s.apply(set("a", "2", SetCond::Always, false));
        assert_eq!(s.apply(KvCommand::DbSize), KvOutput::Int(2));
    }

    #[test]
    fn digest_is_a_known_constant() {
        // Pins the algorithm: a change here means replicas of different
        // builds would disagree on digests of equal states.
        assert_eq!(KvStore::new().digest(), 0xa8c7_f832_281a_39c5);
        let mut one = KvStore::new();
        one.apply(set("a", "1", SetCond::Always, false));
        assert_eq!(one.digest(), 0x2d31_ddcd_27d7_de34);
    }

    #[test]
    fn fnv1a_matches_the_reference_vector() {
        let mut h = Fnv1a::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn digest_tells_contents_apart() {
        let mut ab = KvStore::new();
        ab.apply(set("a", "bc", SetCond::Always, false));
        let mut ab2 = KvStore::new();
        ab2.apply(set("ab", "c", SetCond::Always, false));
        assert_ne!(ab.digest(), ab2.digest());
        assert_ne!(ab.digest(), KvStore::new().digest());

        let mut v2 = KvStore::new();
        v2.apply(set("a", "bd", SetCond::Always, false));
        assert_ne!(ab.digest(), v2.digest());
    }

    fn command() -> impl Strategy<Value = KvCommand> {
        let key = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(b);
        let keys = prop::collection::vec(key.clone(), 0..4);
        let cond = prop_oneof![
            Just(SetCond::Always),
            Just(SetCond::IfAbsent),
            Just(SetCond::IfPresent)
        ];
        prop_oneof![
            key.clone().prop_map(|key| KvCommand::Get { key }),
            (key, "[a-z]{0,3}", cond, any::<bool>()).prop_map(|(key, v, cond, get_old)| {
                KvCommand::Set {
                    key,
                    value: b(&v),
                    cond,
                    get_old,
                }
            }),
            keys.clone().prop_map(|keys| KvCommand::Del { keys }),
            keys.clone().prop_map(|keys| KvCommand::Exists { keys }),
            keys.prop_map(|keys| KvCommand::MGet { keys }),
            Just(KvCommand::DbSize),
        ]
    }

    proptest! {
        /// Two replicas fed the same commands agree on every output and on the
        /// digest, and the commands survive the log's encoding unchanged.
        #[test]
        fn same_commands_same_digest(cmds in prop::collection::vec(command(), 0..40)) {
            let (mut x, mut y) = (KvStore::new(), KvStore::new());
            for cmd in cmds {
                let wire = synod_codec::encode(&cmd).unwrap();
                let back: KvCommand = synod_codec::decode(&wire).unwrap();
                prop_assert_eq!(&back, &cmd);
                let out = x.apply(cmd);
                let out_bytes = synod_codec::encode(&out).unwrap();
                prop_assert_eq!(synod_codec::decode::<KvOutput>(&out_bytes).unwrap(), out.clone());
                prop_assert_eq!(y.apply(back), out);
            }
            prop_assert_eq!(x.digest(), y.digest());
            prop_assert_eq!(&x, &y);
        }

        /// A pipeline answers, and leaves the store, exactly as its commands
        /// sent one at a time would; when it holds only reads it takes the
        /// read path and `query` agrees with `apply`.
        #[test]
        fn a_pipeline_is_its_commands_in_order(
            before in prop::collection::vec(command(), 0..10),
            cmds in prop::collection::vec(command(), 1..12),
        ) {
            let mut one_by_one = KvStore::new();
            for c in &before {
                one_by_one.apply(c.clone());
            }
            let mut piped = one_by_one.clone();
            let expected: Vec<KvOutput> =
                cmds.iter().map(|c| one_by_one.apply(c.clone())).collect();
            let pipeline = KvCommand::Pipeline(cmds.clone());
            let reads_only = cmds.iter().all(|c| piped.is_read_only(c));
            prop_assert_eq!(piped.is_read_only(&pipeline), reads_only);
            if reads_only {
                prop_assert_eq!(
                    piped.query(&pipeline),
                    Some(KvOutput::Pipeline(expected.clone()))
                );
            } else {
                prop_assert_eq!(piped.query(&pipeline), None);
            }
            let wire = synod_codec::encode(&pipeline).unwrap();
            let back: KvCommand = synod_codec::decode(&wire).unwrap();
            prop_assert_eq!(piped.apply(back), KvOutput::Pipeline(expected));
            prop_assert_eq!(&piped, &one_by_one);
        }

        /// Digests differ whenever contents differ (no collisions on small
        /// stores; a collision would be a 2^-64 event, not a test flake).
        #[test]
        fn different_contents_different_digest(
            a in prop::collection::btree_map("[a-c]{0,2}", "[a-c]{0,2}", 0..4),
            c in prop::collection::btree_map("[a-c]{0,2}", "[a-c]{0,2}", 0..4),
        ) {
            let fill = |m: &BTreeMap<String, String>| {
                let mut s = KvStore::new();
                for (k, v) in m {
                    s.apply(set(k, v, SetCond::Always, false));
                }
                s
            };
            let (sa, sc) = (fill(&a), fill(&c));
            prop_assert_eq!(a == c, sa.digest() == sc.digest());
        }
    }
}
