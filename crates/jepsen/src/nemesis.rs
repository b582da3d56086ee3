//! Faults and their seeded schedule. A fault window is: pick targets (from
//! the seeded RNG and, for leader faults, `SYNOD.STATUS`), inject, hold,
//! heal. Healing is total and idempotent: flush every namespace's rules and
//! qdiscs, SIGCONT paused nodes, restart killed ones.

use crate::cluster::{node_id, Cluster};
use crate::net;
use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
    IsolateLeader,
    Bridge,
    OneWay,
    KillAll,
    Delay,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Partition,
        Fault::Pause,
        Fault::IsolateLeader,
        Fault::Bridge,
        Fault::OneWay,
        Fault::Delay,
        Fault::KillAll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
            Fault::KillAll => "kill-all",
            Fault::Delay => "delay",
        }
    }
}

/// `--nemesis NAME`: the faults to cycle through (empty for `none`).
pub fn parse(name: &str) -> Result<Vec<Fault>> {
    match name {
        "none" => Ok(Vec::new()),
        "all" => Ok(Fault::ALL.to_vec()),
        _ => match Fault::ALL.iter().find(|f| f.name() == name) {
            Some(f) => Ok(vec![*f]),
            None => bail!(
                "unknown nemesis {name:?}: none, all, {}",
                Fault::ALL.map(|f| f.name()).join(", ")
            ),
        },
    }
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|&i| node_id(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// A random minority, or the leader (half the time, when one is known).
fn victim(c: &Cluster, rng: &mut StdRng) -> (usize, &'static str) {
    if rng.gen_bool(0.5) {
        if let Some(l) = c.leader() {
            return (l, "leader");
        }
    }
    (rng.gen_range(0..c.len()), "random")
}

/// Cuts every link between `a` and `b` in both directions.
fn cut(a: &[usize], b: &[usize]) -> Result<()> {
    for &x in a {
        for &y in b {
            net::drop_one_way(x, y)?;
            net::drop_one_way(y, x)?;
        }
    }
    Ok(())
}

/// Injects `fault`; returns a description of what was done.
pub fn inject(fault: Fault, c: &mut Cluster, rng: &mut StdRng) -> Result<String> {
    let n = c.len();
    let mut all: Vec<usize> = (0..n).collect();
    Ok(match fault {
        Fault::Kill => {
            let (v, why) = victim(c, rng);
            c.kill(v);
            format!("SIGKILL {} ({why})", node_id(v))
        }
        Fault::Pause => {
            let (v, why) = victim(c, rng);
            c.pause(v);
            format!("SIGSTOP {} ({why})", node_id(v))
        }
        Fault::KillAll => {
            for i in 0..n {
                c.kill(i);
            }
            "SIGKILL all nodes".to_owned()
        }
        Fault::Partition => {
            all.shuffle(rng);
            let minority = all.split_off(n / 2 + 1);
            cut(&all, &minority)?;
            format!(
                "majority [{}] | minority [{}]",
                names(&all),
                names(&minority)
            )
        }
        Fault::IsolateLeader => {
            let l = c.leader().unwrap_or_else(|| rng.gen_range(0..n));
            let rest: Vec<usize> = all.into_iter().filter(|&i| i != l).collect();
            cut(&[l], &rest)?;
            format!("isolate {} from [{}]", node_id(l), names(&rest))
        }
        Fault::Bridge => {
            // Two halves that only the bridge node (in both) connects.
            all.shuffle(rng);
            let bridge = all[n / 2];
            let (left, right) = (&all[..n / 2], &all[n / 2 + 1..]);
            cut(left, right)?;
            format!(
                "[{}] <-> {} <-> [{}]",
                names(left),
                node_id(bridge),
                names(right)
            )
        }
        Fault::OneWay => {
            // The target sends but hears nobody: a leader that keeps
            // heartbeating while deaf is the nasty case.
            let (v, why) = victim(c, rng);
            for i in (0..n).filter(|&i| i != v) {
                net::drop_input(v, i)?;
            }
            format!("{} ({why}) hears nobody, everyone hears it", node_id(v))
        }
        Fault::Delay => {
            let ms = rng.gen_range(50..=200);
            for i in 0..n {
                net::delay(i, ms, ms / 2)?;
            }
            format!("netem delay {ms}ms +-{}ms on every node", ms / 2)
        }
    })
}

/// Removes every fault: rules, qdiscs, stopped and killed processes.
pub fn heal(c: &mut Cluster) -> Result<()> {
    for i in 0..c.len() {
        net::heal(i)?;
    }
    c.heal_processes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_names() {
        assert!(parse("none").unwrap().is_empty());
        assert_eq!(parse("all").unwrap().len(), Fault::ALL.len());
        for f in Fault::ALL {
            assert_eq!(parse(f.name()).unwrap(), vec![f]);
        }
        assert!(parse("meteor").is_err());
    }
}
