//! Three nodes in one process (one router each, real loopback TCP between
//! them), running a custom state machine with an observer attached.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_example_observer::{start_node, submit, CounterOp};
use synod_node::ClusterConfig;
use synod_types::ClientId;

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_rt::test]
async fn custom_state_machine_and_observer_see_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "cluster_id = \"obs\"\ndata_root = {:?}\n",
        dir.path().display().to_string()
    );
    for i in 1..=3 {
        text += &format!(
            "[[nodes]]\nid = \"n{i}\"\npeer_addr = \"127.0.0.1:{}\"\nclient_addr = \"127.0.0.1:{}\"\nroles = [\"proposer\", \"acceptor\", \"learner\", \"replica\"]\n",
            port(),
            port()
        );
    }
    let cfg = ClusterConfig::parse(&text, "inline").unwrap();
    let logs: Vec<_> = (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let nodes: Vec<_> = (1..=3)
        .map(|i| start_node(cfg.clone(), &format!("n{i}"), logs[i - 1].clone()).unwrap())
        .collect();

    // Each node takes commands from its own client; all see one sum.
    let mut last = 0;
    for (seq, n) in (1..=9).zip([1, 2, 3, 4, 5, 6, 7, 8, 9]) {
        let node = &nodes[seq as usize % 3];
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            submit(
                node,
                ClientId(100 + seq % 3),
                seq / 3 + 1,
                CounterOp::Add(n),
            ),
        )
        .await
        .expect("cluster answers")
        .expect("command applied");
        assert!(out > last, "sum grows: {out} after {last}");
        last = out;
    }
    assert_eq!(last, 45);
    let read = submit(&nodes[0], ClientId(7), 1, CounterOp::Read)
        .await
        .unwrap();
    assert_eq!(read, 45);

    // Every observer saw the same decided slots, with all 10 commands in them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let views: Vec<Vec<(u64, usize)>> = logs
        .iter()
        .map(|l| {
            let mut v = l.lock().unwrap().clone();
            v.sort();
            v
        })
        .collect();
    assert!(views.iter().all(|v| v == &views[0]), "{views:?}");
    let commands: usize = views[0].iter().map(|(_, n)| n).sum();
    assert!(
        commands >= 10,
        "9 adds and a read, retries may add copies: {views:?}"
    );
}
