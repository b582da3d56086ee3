//! Starting a node in-process: what happens before its ports are taken.

use std::net::TcpListener;
use synod_kv::KvStore;
use synod_node::{ClusterConfig, NodeBuilder};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_node_whose_log_is_damaged_fails_before_it_takes_its_peer_port() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let text = format!(
        r#"
cluster_id = "start-test"
data_root = "{root}"
[[nodes]]
id = "n1"
peer_addr = "127.0.0.1:{p1}"
client_addr = "127.0.0.1:{c1}"
roles = ["proposer", "acceptor", "learner", "replica"]
[[nodes]]
id = "n2"
peer_addr = "127.0.0.1:{p2}"
roles = ["acceptor"]
[[nodes]]
id = "n3"
peer_addr = "127.0.0.1:{p3}"
roles = ["acceptor"]
"#,
        root = dir.path().display(),
        p1 = ports[0],
        c1 = ports[1],
        p2 = ports[2],
        p3 = ports[3],
    );
    let cfg = ClusterConfig::parse(&text, "start.toml").unwrap();
    let log = synod_node::init(&cfg, "n1")
        .unwrap()
        .join(synod_storage::LOG_NAME);
    // A flipped byte in the header: the log cannot be trusted.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&log, bytes).unwrap();

    actix::System::new().block_on(async {
        let started = NodeBuilder::new(cfg, "n1", KvStore::default()).start();
        let err = started
            .err()
            .expect("a damaged log fails the start")
            .to_string();
        assert!(err.contains(&log.display().to_string()), "{err}");
        // Neither port was taken, even while this system lives on: an
        // embedder can fix the disk and start again in the same process.
        TcpListener::bind(("127.0.0.1", ports[0])).expect("peer port free");
        TcpListener::bind(("127.0.0.1", ports[1])).expect("client port free");
    });
}
