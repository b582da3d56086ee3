//! Two routers in one process, talking over real loopback TCP: delivery,
//! handshake refusal, and garbage from a peer closing only that connection.

use actix::prelude::*;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_codec::{Frame, PeerCodec, PROTOCOL_VERSION};
use synod_transport::{Deliver, LocalRoles, Outbound, Register, Router, TransportConfig};
use synod_types::{LearnerMsg, Message as Msg, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

struct Sink(Arc<Mutex<Vec<(NodeId, LearnerMsg)>>>);
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<Deliver<LearnerMsg>> for Sink {
    type Result = ();
    fn handle(&mut self, d: Deliver<LearnerMsg>, _: &mut Context<Self>) {
        self.0.lock().unwrap().push((d.from, d.msg));
    }
}

fn addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(me: &str, listen: SocketAddr, peer: (&str, SocketAddr)) -> TransportConfig {
    let mut c = TransportConfig::new("test-cluster", NodeId::new(me));
    c.settings = "max_sessions=100".into();
    c.listen = Some(listen);
    c.peers.insert(NodeId::new(peer.0), peer.1);
    c
}

async fn wait_for(got: &Arc<Mutex<Vec<(NodeId, LearnerMsg)>>>, n: usize) -> bool {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[actix_rt::test]
async fn messages_cross_tcp_and_local_mailboxes_alike() {
    let (a_addr, b_addr) = (addr(), addr());
    let a = Router::start(config("a", a_addr, ("b", b_addr))).unwrap();
    let b = Router::start(config("b", b_addr, ("a", a_addr))).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(got.clone()).start();
    b.do_send(Register(LocalRoles {
        learner: Some(sink.recipient()),
        ..Default::default()
    }));
    // Links come up with backoff; keep sending until one lands.
    let msg = || Msg::Learner(LearnerMsg::CatchUp { from_slot: 7 });
    for _ in 0..100 {
        a.do_send(Outbound {
            to: NodeId::new("b"),
            msg: msg(),
        });
        if wait_for(&got, 1).await {
            break;
        }
    }
    assert_eq!(
        got.lock().unwrap()[0],
        (NodeId::new("a"), LearnerMsg::CatchUp { from_slot: 7 })
    );
    // The same role code sending to its own node goes through the mailbox.
    b.do_send(Outbound {
        to: NodeId::new("b"),
        msg: msg(),
    });
    let n = got.lock().unwrap().len();
    assert!(wait_for(&got, n + 1).await);
    assert_eq!(got.lock().unwrap().last().unwrap().0, NodeId::new("b"));
}

async fn handshake_answer(to: SocketAddr, hello: Frame) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    PeerCodec::default().encode(&hello, &mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    out
}

#[actix_rt::test]
async fn handshake_refuses_other_clusters_versions_and_strangers() {
    let b_addr = addr();
    let _b = Router::start(config("b", b_addr, ("a", addr()))).unwrap();
    let hello = |cluster: &str, version, node: &str| Frame::Hello {
        cluster_id: cluster.into(),
        version,
        node: NodeId::new(node),
        settings: "max_sessions=100".into(),
    };
    let other_settings = Frame::Hello {
        cluster_id: "test-cluster".into(),
        version: PROTOCOL_VERSION,
        node: NodeId::new("a"),
        settings: "max_sessions=99".into(),
    };
    for bad in [
        hello("other-cluster", PROTOCOL_VERSION, "a"),
        hello("test-cluster", PROTOCOL_VERSION + 1, "a"),
        hello("test-cluster", PROTOCOL_VERSION, "mallory"),
        other_settings,
    ] {
        // Closed without a hello back: zero bytes, EOF.
        assert!(handshake_answer(b_addr, bad).await.is_empty());
    }
    let ok = handshake_answer(b_addr, hello("test-cluster", PROTOCOL_VERSION, "a"));
    // A good peer gets our hello (and the connection stays open: timeout).
    let answer = tokio::time::timeout(Duration::from_secs(3), ok)
        .await
        .unwrap();
    assert!(!answer.is_empty());
}

#[actix_rt::test]
async fn nodes_with_other_cluster_wide_settings_never_link() {
    // Two nodes whose configs differ only in a replicated limit: had they
    // linked, their session tables could drop different entries and the
    // replicas diverge. Neither direction may deliver anything.
    let (a_addr, b_addr) = (addr(), addr());
    let mut a_cfg = config("a", a_addr, ("b", b_addr));
    a_cfg.settings = "max_sessions=99".into();
    let a = Router::start(a_cfg).unwrap();
    let b = Router::start(config("b", b_addr, ("a", a_addr))).unwrap();
    let (got_a, got_b) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    a.do_send(Register(LocalRoles {
        learner: Some(Sink(got_a.clone()).start().recipient()),
        ..Default::default()
    }));
    b.do_send(Register(LocalRoles {
        learner: Some(Sink(got_b.clone()).start().recipient()),
        ..Default::default()
    }));
    let msg = || Msg::Learner(LearnerMsg::CatchUp { from_slot: 7 });
    for _ in 0..20 {
        a.do_send(Outbound {
            to: NodeId::new("b"),
            msg: msg(),
        });
        b.do_send(Outbound {
            to: NodeId::new("a"),
            msg: msg(),
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got_a.lock().unwrap().is_empty());
    assert!(got_b.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn garbage_from_a_peer_closes_only_that_connection() {
    let (a_addr, b_addr) = (addr(), addr());
    let b = Router::start(config("b", b_addr, ("a", a_addr))).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    b.do_send(Register(LocalRoles {
        learner: Some(Sink(got.clone()).start().recipient()),
        ..Default::default()
    }));
    for garbage in [
        vec![0xff; 64],
        vec![0, 0, 0, 3, 1, 2, 3],
        b"\x7f\xff\xff\xffhuge".to_vec(),
    ] {
        let mut s = tokio::net::TcpStream::connect(b_addr).await.unwrap();
        let _ = s.write_all(&garbage).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        assert!(out.is_empty());
    }
    // The node still works: a real peer connects and delivers.
    let a = Router::start(config("a", a_addr, ("b", b_addr))).unwrap();
    for _ in 0..100 {
        a.do_send(Outbound {
            to: NodeId::new("b"),
            msg: Msg::Learner(LearnerMsg::CatchUp { from_slot: 1 }),
        });
        if wait_for(&got, 1).await {
            break;
        }
    }
    assert!(!got.lock().unwrap().is_empty());
}

/// Dials `to` as node `a` and completes the handshake.
async fn dial_as_a(to: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let hello = Frame::Hello {
        cluster_id: "test-cluster".into(),
        version: PROTOCOL_VERSION,
        node: NodeId::new("a"),
        settings: "max_sessions=100".into(),
    };
    PeerCodec::default().encode(&hello, &mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).await.unwrap();
    s
}

#[actix_rt::test]
async fn a_newer_connection_from_a_peer_closes_the_older_one() {
    // A peer whose old connection died on its side (a partition) dials
    // again; our end of the old one must not linger forever.
    let b_addr = addr();
    let _b = Router::start(config("b", b_addr, ("a", addr()))).unwrap();
    let mut old = dial_as_a(b_addr).await;
    let mut rest = Vec::new();
    let idle = tokio::time::timeout(Duration::from_millis(300), old.read_to_end(&mut rest)).await;
    assert!(idle.is_err(), "the only connection stays open: {idle:?}");
    let mut new = dial_as_a(b_addr).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), old.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the older connection was not closed: {closed:?}"
    );
    let idle = tokio::time::timeout(Duration::from_millis(300), new.read_to_end(&mut rest)).await;
    assert!(idle.is_err(), "the newest connection stays open");
}

#[actix_rt::test]
async fn connections_that_never_say_hello_are_bounded() {
    let b_addr = addr();
    let _b = Router::start(config("b", b_addr, ("a", addr()))).unwrap();
    let mut idle = Vec::new();
    for _ in 0..synod_transport::MAX_HANDSHAKING {
        idle.push(tokio::net::TcpStream::connect(b_addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is closed at once, not held for the handshake timeout (5 s).
    let mut extra = tokio::net::TcpStream::connect(b_addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Once they go, a real peer gets in.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hello = Frame::Hello {
        cluster_id: "test-cluster".into(),
        version: PROTOCOL_VERSION,
        node: NodeId::new("a"),
        settings: "max_sessions=100".into(),
    };
    assert!(
        !handshake_answer(b_addr, hello).await.is_empty(),
        "a hello back"
    );
}
