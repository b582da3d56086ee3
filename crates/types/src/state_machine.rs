use serde::{de::DeserializeOwned, Serialize};

/// A deterministic state machine replicated by Synod.
///
/// Every replica feeds the same commands in the same order to its own copy,
/// so `apply` must depend on nothing but the current state and the command:
/// no clock, no randomness, no iteration over hash-ordered collections.
pub trait StateMachine: Send + 'static {
    type Command: Serialize + DeserializeOwned;
    type Output: Serialize + DeserializeOwned;

    /// Names this machine and the version of what `apply` does. Nodes
    /// compare it when they connect and refuse a peer with another one: two
    /// builds that answer a command differently would let replicas diverge.
    /// Change it whenever the effect or output of any command changes.
    const SEMANTICS: &'static str = "unversioned";

    fn apply(&mut self, command: Self::Command) -> Self::Output;

    /// A short fingerprint of the whole state; replicas that applied the same
    /// prefix of the log report the same digest.
    fn digest(&self) -> u64;

    /// The whole state as bytes, for snapshots. Called on the replica's
    /// thread between two commands, so it should be a copy, not a walk
    /// over something slow.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with one produced by [`StateMachine::snapshot`].
    /// Bytes come from disk or from a peer: reject anything malformed.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// Answers `command` from the current state without changing it, if it
    /// is a pure read; `None` means it must go through the log.
    ///
    /// Replicas use this for read-index reads: a read still must see every
    /// write acknowledged before it was issued, which the replica ensures by
    /// first applying the log up to the leader's read index. The default
    /// treats every command as a write, which is always safe.
    fn query(&self, _command: &Self::Command) -> Option<Self::Output> {
        None
    }

    /// Whether [`StateMachine::query`] answers `command`; checked when the
    /// request arrives, so it must be cheap and must agree with `query`.
    fn is_read_only(&self, _command: &Self::Command) -> bool {
        false
    }
}
