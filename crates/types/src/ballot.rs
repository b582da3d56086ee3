use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

/// Index of one single-decree Paxos instance in the replicated log.
pub type Slot = u64;

/// Name of a node (one OS process) as written in the cluster config, e.g. `n1`.
///
/// Cheap to clone (inline up to 23 bytes), ordered, and used as the tie-breaker
/// inside [`Ballot`], so two proposers can never build the same ballot.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct NodeId(SmolStr);

impl NodeId {
    pub fn new(name: &str) -> Self {
        NodeId(SmolStr::new(name))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId::new(s)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proposal number `(round, node)`. Field order matters: the derived `Ord`
/// compares the round first and breaks ties by node id, so ballots are
/// totally ordered and unique per proposer.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }

    /// The ballot every acceptor starts out having promised: lower than any
    /// ballot a proposer builds, since proposers start at round 1.
    pub fn zero() -> Self {
        Ballot::default()
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.round, self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ballot() -> impl Strategy<Value = Ballot> {
        (0u64..4, "[a-c][0-9]").prop_map(|(r, n)| Ballot::new(r, NodeId::new(&n)))
    }

    proptest! {
        #[test]
        fn ballots_are_totally_ordered(a in ballot(), b in ballot(), c in ballot()) {
            // Exactly one of <, ==, > holds, and equality means same proposer.
            let rel = [a < b, a == b, a > b];
            prop_assert_eq!(rel.iter().filter(|x| **x).count(), 1);
            if a == b { prop_assert_eq!(&a.node, &b.node); }
            if a < b && b < c { prop_assert!(a < c); }
            if a.round < b.round { prop_assert!(a < b); }
        }
    }

    #[test]
    fn zero_is_below_every_real_ballot() {
        assert!(Ballot::zero() < Ballot::new(1, NodeId::new("")));
        assert!(Ballot::zero() < Ballot::new(0, NodeId::new("a")));
    }
}
