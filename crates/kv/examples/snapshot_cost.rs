//! Prints how long `KvStore::snapshot` and `restore` take for a live set of
//! 10,000 keys with 100-byte values (the size the durability benchmark
//! uses): snapshots are encoded on the replica's thread between two
//! commands, so this is how long one holds up applying.
//!
//! `cargo run --release -p synod-kv --example snapshot_cost`

use bytes::Bytes;
use std::time::Instant;
use synod_kv::{KvCommand, KvStore, SetCond};
use synod_types::StateMachine;

fn main() {
    let mut kv = KvStore::new();
    for i in 0..10_000u32 {
        kv.apply(KvCommand::Set {
            key: Bytes::from(format!("key:{i:012}")),
            value: Bytes::from(vec![b'x'; 100]),
            cond: SetCond::Always,
            get_old: false,
        });
    }
    let rounds = 20;
    let t = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..rounds {
        bytes = kv.snapshot();
    }
    let encode = t.elapsed() / rounds;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut back = KvStore::new();
        back.restore(&bytes).expect("own snapshot restores");
    }
    let restore = t.elapsed() / rounds;
    println!(
        "10000 keys, {} snapshot bytes: snapshot {:.2} ms, restore {:.2} ms",
        bytes.len(),
        encode.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3
    );
}
