//! The front end over real TCP against a fake replica: an actor that applies
//! each request to a local `KvStore` after a short delay, and records what
//! the protocol between front end and replica promises (seqs 1, 2, 3, ... per
//! client, never two requests of one client outstanding).

use actix::prelude::*;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use redis_protocol::codec::Resp2;
use redis_protocol::resp2::types::BytesFrame;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_kv::{KvCommand, KvStore};
use synod_replica::actor::{
    ClientGone, ClientReply, ClientRequest, GetStatus, ReplicaHandle, ReplicaStatus,
};
use synod_resp::RespOptions;
use synod_types::{ClientId, NodeId, StateMachine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// A GET of this key is never answered, to exercise the timeout.
const BLACK_HOLE_KEY: &str = "black-hole";
const BLACK_HOLE: &[u8] = BLACK_HOLE_KEY.as_bytes();

#[derive(Default)]
struct Record {
    seqs: BTreeMap<ClientId, Vec<u64>>,
    /// Commands in each request, in arrival order (more than one: a pipeline).
    sizes: Vec<usize>,
    outstanding: BTreeSet<ClientId>,
    violations: Vec<String>,
    gone: Vec<ClientId>,
}

struct FakeReplica {
    store: KvStore,
    applied: u64,
    delay: Duration,
    record: Arc<Mutex<Record>>,
    black_holed: Vec<tokio::sync::oneshot::Sender<ClientReply>>,
}

impl Actor for FakeReplica {
    type Context = Context<Self>;
}

impl Handler<ClientRequest> for FakeReplica {
    type Result = ();
    fn handle(&mut self, req: ClientRequest, ctx: &mut Context<Self>) {
        {
            let mut guard = self.record.lock().unwrap();
            let rec = &mut *guard;
            let seqs = rec.seqs.entry(req.client).or_default();
            let expected = seqs.last().map_or(1, |s| s + 1);
            if req.seq != expected {
                let msg = format!(
                    "{:?}: seq {} where {} was due",
                    req.client, req.seq, expected
                );
                rec.violations.push(msg);
            }
            seqs.push(req.seq);
            if !rec.outstanding.insert(req.client) {
                let msg = format!(
                    "{:?}: seq {} sent while another is outstanding",
                    req.client, req.seq
                );
                rec.violations.push(msg);
            }
        }
        let cmd: KvCommand = synod_codec::decode(&req.op).expect("front end sent a bad op");
        let black_hole =
            |c: &KvCommand| matches!(c, KvCommand::Get { key } if key.as_ref() == BLACK_HOLE);
        let size = match &cmd {
            KvCommand::Pipeline(cmds) => {
                if cmds.len() < 2 {
                    let msg = format!("{:?}: a pipeline of {}", req.client, cmds.len());
                    self.record.lock().unwrap().violations.push(msg);
                }
                cmds.len()
            }
            _ => 1,
        };
        self.record.lock().unwrap().sizes.push(size);
        let swallowed = match &cmd {
            KvCommand::Pipeline(cmds) => cmds.iter().any(black_hole),
            c => black_hole(c),
        };
        if swallowed {
            // The client gives up on this one; it no longer counts as outstanding.
            self.record.lock().unwrap().outstanding.remove(&req.client);
            self.black_holed.push(req.reply);
            return;
        }
        let out = self.store.apply(cmd);
        self.applied += 1;
        let out = Bytes::from(synod_codec::encode(&out).unwrap());
        let (client, reply) = (req.client, req.reply);
        ctx.run_later(self.delay, move |act, _| {
            act.record.lock().unwrap().outstanding.remove(&client);
            let _ = reply.send(ClientReply::Output(out));
        });
    }
}

impl Handler<ClientGone> for FakeReplica {
    type Result = ();
    fn handle(&mut self, ClientGone(client): ClientGone, _: &mut Context<Self>) {
        self.record.lock().unwrap().gone.push(client);
    }
}

impl Handler<GetStatus> for FakeReplica {
    type Result = ReplicaStatus;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> ReplicaStatus {
        ReplicaStatus {
            node: NodeId::new("fake1"),
            applied: self.applied,
            snapshot: 0,
            digest: self.store.digest(),
            leader_hint: Some(NodeId::new("fake1")),
            extra: vec![],
        }
    }
}

struct Harness {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

fn start_server(opts: RespOptions) -> Harness {
    let record = Arc::new(Mutex::new(Record::default()));
    let fake = FakeReplica {
        store: KvStore::default(),
        applied: 0,
        delay: Duration::from_millis(2),
        record: record.clone(),
        black_holed: Vec::new(),
    }
    .start();
    let handle = ReplicaHandle {
        request: fake.clone().recipient(),
        gone: fake.clone().recipient(),
        status: fake.recipient(),
    };
    let addr = synod_resp::start("127.0.0.1:0".parse().unwrap(), handle, opts).unwrap();
    Harness { addr, record }
}

impl Harness {
    async fn connect(&self) -> Framed<TcpStream, Resp2> {
        Framed::new(
            TcpStream::connect(self.addr).await.unwrap(),
            Resp2::default(),
        )
    }

    fn record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().unwrap())
    }
}

fn cmd(args: &[&str]) -> BytesFrame {
    BytesFrame::Array(
        args.iter()
            .map(|a| BytesFrame::BulkString(Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    )
}

fn bulk(s: &str) -> BytesFrame {
    BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
}

fn simple(s: &str) -> BytesFrame {
    BytesFrame::SimpleString(Bytes::copy_from_slice(s.as_bytes()))
}

fn err_text(frame: BytesFrame) -> String {
    match frame {
        BytesFrame::Error(e) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn call(conn: &mut Framed<TcpStream, Resp2>, frame: BytesFrame) -> BytesFrame {
    conn.send(frame).await.unwrap();
    next(conn).await
}

async fn next(conn: &mut Framed<TcpStream, Resp2>) -> BytesFrame {
    tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("no reply within 5s")
        .expect("connection closed")
        .expect("undecodable reply")
}

/// Reads raw bytes until the server closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .unwrap();
    out
}

#[actix_rt::test]
async fn set_then_get_round_trip() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(call(&mut c, cmd(&["SET", "k", "v1"])).await, simple("OK"));
    assert_eq!(call(&mut c, cmd(&["GET", "k"])).await, bulk("v1"));
    assert_eq!(
        call(&mut c, cmd(&["GET", "missing"])).await,
        BytesFrame::Null
    );
    assert_eq!(
        call(&mut c, cmd(&["SET", "k", "v2", "GET"])).await,
        bulk("v1")
    );
    assert_eq!(
        call(&mut c, cmd(&["SET", "k", "v3", "NX"])).await,
        BytesFrame::Null
    );
    assert_eq!(
        call(&mut c, cmd(&["MGET", "k", "missing"])).await,
        BytesFrame::Array(vec![bulk("v2"), BytesFrame::Null])
    );
    assert_eq!(
        call(&mut c, cmd(&["EXISTS", "k", "k", "missing"])).await,
        BytesFrame::Integer(2)
    );
    assert_eq!(call(&mut c, cmd(&["DBSIZE"])).await, BytesFrame::Integer(1));
    assert_eq!(
        call(&mut c, cmd(&["DEL", "k", "missing"])).await,
        BytesFrame::Integer(1)
    );
    assert_eq!(call(&mut c, cmd(&["GET", "k"])).await, BytesFrame::Null);
}

#[actix_rt::test]
async fn pipelined_requests_are_answered_in_order() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    let mut expected = Vec::new();
    for i in 0..40 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        c.feed(cmd(&["SET", &k, &v])).await.unwrap();
        expected.push(simple("OK"));
        // Local replies must wait their turn behind the log requests.
        c.feed(cmd(&["ECHO", &format!("e{i}")])).await.unwrap();
        expected.push(bulk(&format!("e{i}")));
        c.feed(cmd(&["GET", &k])).await.unwrap();
        expected.push(bulk(&v));
    }
    SinkExt::<BytesFrame>::flush(&mut c).await.unwrap();
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&next(&mut c).await, want, "reply {i}");
    }
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // Every SET and GET reached the replica once, and the requests that
        // carried them were numbered 1, 2, 3, ... with none skipped.
        assert_eq!(r.sizes.iter().sum::<usize>(), 80);
        let seqs: Vec<_> = r.seqs.values().collect();
        assert_eq!(
            seqs,
            vec![&(1..=r.sizes.len() as u64).collect::<Vec<u64>>()]
        );
    });
}

/// Waits for one reply per frame sent, in order.
async fn replies(conn: &mut Framed<TcpStream, Resp2>, n: usize) -> Vec<BytesFrame> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(conn).await);
    }
    out
}

/// Sends all of `frames` in one write, as a pipelining client does.
async fn pipeline(conn: &mut Framed<TcpStream, Resp2>, frames: &[BytesFrame]) {
    for f in frames {
        conn.feed(f.clone()).await.unwrap();
    }
    SinkExt::<BytesFrame>::flush(conn).await.unwrap();
}

#[actix_rt::test]
async fn a_pipeline_reaches_the_replica_as_few_requests_and_each_command_keeps_its_reply() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(
        call(&mut c, cmd(&["SET", "word", "abc"])).await,
        simple("OK")
    );
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for i in 0..30 {
        frames.push(cmd(&["INCR", "n"]));
        want.push(BytesFrame::Integer(i + 1));
        if i % 10 == 0 {
            // Fails on its own; the commands around it still apply.
            frames.push(cmd(&["INCR", "word"]));
            want.push(BytesFrame::Error(
                "ERR value is not an integer or out of range".into(),
            ));
        }
    }
    frames.push(cmd(&["GET", "n"]));
    want.push(bulk("30"));
    pipeline(&mut c, &frames).await;
    assert_eq!(replies(&mut c, want.len()).await, want);
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.sizes[0], 1);
        let piped = &r.sizes[1..];
        assert_eq!(piped.iter().sum::<usize>(), frames.len());
        // The first command of a pipeline may go before the rest arrive;
        // everything read with it goes along as one request.
        assert!(
            piped.len() <= 3,
            "{} commands took {:?}",
            frames.len(),
            piped
        );
        let seqs: Vec<_> = r.seqs.values().collect();
        assert_eq!(
            seqs,
            vec![&(1..=r.sizes.len() as u64).collect::<Vec<u64>>()]
        );
    });
}

#[actix_rt::test]
async fn a_pipeline_is_cut_at_the_configured_limits() {
    let h = start_server(RespOptions {
        max_pipeline: 4,
        ..Default::default()
    });
    let mut c = h.connect().await;
    let frames: Vec<_> = (0..40)
        .map(|i| cmd(&["SET", &format!("k{i}"), "v"]))
        .collect();
    pipeline(&mut c, &frames).await;
    assert_eq!(replies(&mut c, 40).await, vec![simple("OK"); 40]);
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.sizes.iter().sum::<usize>(), 40);
        assert!(r.sizes.iter().all(|&n| n <= 4), "{:?}", r.sizes);
        assert!(r.sizes.contains(&4), "{:?}", r.sizes);
    });

    // 3 values of 100 KB fit under a 256 KB cap two at a time at most.
    let h = start_server(RespOptions {
        max_pipeline_bytes: 256 * 1024,
        ..Default::default()
    });
    let mut c = h.connect().await;
    let big = "x".repeat(100_000);
    let frames: Vec<_> = (0..6)
        .map(|i| cmd(&["SET", &format!("k{i}"), &big]))
        .collect();
    pipeline(&mut c, &frames).await;
    assert_eq!(replies(&mut c, 6).await, vec![simple("OK"); 6]);
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.sizes.iter().sum::<usize>(), 6);
        // The first of a run is taken as it comes; the cap bounds the
        // commands that join it.
        assert!(r.sizes.iter().all(|&n| n <= 3), "{:?}", r.sizes);
    });
}

#[actix_rt::test]
async fn big_reads_answer_alike_however_they_were_pipelined() {
    // Eight 12 MiB reads make 96 MiB, past the 64 MiB one reply may carry.
    // Sent one at a time each would succeed, so sent as a pipeline each
    // must too: the replica answers the front that fits and the front end
    // sends the rest again.
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    let big = "v".repeat(12 << 20);
    assert_eq!(call(&mut c, cmd(&["SET", "big", &big])).await, simple("OK"));
    let mut frames = vec![cmd(&["GET", "big"]); 8];
    frames.push(cmd(&["SET", "big", "small", "GET"]));
    frames.push(cmd(&["GET", "big"]));
    pipeline(&mut c, &frames).await;
    let got = replies(&mut c, frames.len()).await;
    for (i, reply) in got[..9].iter().enumerate() {
        assert!(
            matches!(reply, BytesFrame::BulkString(v) if v.len() == 12 << 20),
            "reply {i}: {}",
            match reply {
                BytesFrame::Error(e) => e.to_string(),
                _ => "not a 12 MiB value".into(),
            }
        );
    }
    assert_eq!(got[9], bulk("small"));
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // The commands cut off were sent again: more went to the replica
        // than the client sent.
        let sent: usize = r.sizes.iter().sum();
        assert!(sent > 1 + frames.len(), "{:?}", r.sizes);
        assert!(r.sizes[1..].iter().all(|&n| n <= frames.len()));
    });
}

/// A server whose requests time out after 200 ms, and a connection on which
/// `SET a 1` has been answered (so the next request takes seq 2).
async fn timing_out_server_after_set_a() -> (Harness, Framed<TcpStream, Resp2>) {
    let h = start_server(RespOptions {
        request_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let mut c = h.connect().await;
    assert_eq!(call(&mut c, cmd(&["SET", "a", "1"])).await, simple("OK"));
    (h, c)
}

#[actix_rt::test]
async fn a_timed_out_pipeline_fails_every_command_in_it() {
    let (h, mut c) = timing_out_server_after_set_a().await;
    // The PING ends the run: the two KV commands before it share a request.
    let frames = [
        cmd(&["SET", "b", "2"]),
        cmd(&["GET", BLACK_HOLE_KEY]),
        cmd(&["PING"]),
        cmd(&["GET", "a"]),
    ];
    pipeline(&mut c, &frames).await;
    let got = replies(&mut c, 4).await;
    let timeout = "ERR timeout waiting for the cluster (request may still be applied)";
    assert_eq!(err_text(got[0].clone()), timeout);
    assert_eq!(err_text(got[1].clone()), timeout);
    assert_eq!(got[2], simple("PONG"));
    assert_eq!(got[3], bulk("1"));
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.sizes, vec![1, 2, 1]);
        assert_eq!(r.seqs.values().collect::<Vec<_>>(), vec![&vec![1, 2, 3]]);
    });
}

#[actix_rt::test]
async fn each_connection_counts_seqs_from_one_with_one_request_in_flight() {
    let h = start_server(RespOptions::default());
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(h.connect().await);
    }
    for c in conns.iter_mut() {
        for i in 0..20 {
            c.feed(cmd(&["SET", "shared", &i.to_string()]))
                .await
                .unwrap();
        }
        SinkExt::<BytesFrame>::flush(c).await.unwrap();
    }
    for c in conns.iter_mut() {
        for _ in 0..20 {
            assert_eq!(next(c).await, simple("OK"));
        }
    }
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.seqs.len(), 3, "each connection has its own client id");
        assert_eq!(r.sizes.iter().sum::<usize>(), 60);
        for seqs in r.seqs.values() {
            let n = seqs.len() as u64;
            assert_eq!(seqs, &(1..=n).collect::<Vec<u64>>());
        }
    });

    drop(conns);
    for _ in 0..100 {
        if h.record(|r| r.gone.len()) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.record(|r| {
        let gone: BTreeSet<_> = r.gone.iter().copied().collect();
        let clients: BTreeSet<_> = r.seqs.keys().copied().collect();
        assert_eq!(gone, clients, "ClientGone for every closed connection");
    });
}

#[actix_rt::test]
async fn malformed_request_gets_an_error_and_the_connection_survives() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    let protocol = "ERR Protocol error: expected an array of bulk strings";
    assert_eq!(err_text(call(&mut c, simple("PING")).await), protocol);
    assert_eq!(
        err_text(call(&mut c, BytesFrame::Integer(3)).await),
        protocol
    );
    let mixed = BytesFrame::Array(vec![bulk("GET"), BytesFrame::Integer(1)]);
    assert_eq!(err_text(call(&mut c, mixed).await), protocol);
    assert_eq!(call(&mut c, cmd(&["PING"])).await, simple("PONG"));
    assert_eq!(call(&mut c, cmd(&["SET", "a", "1"])).await, simple("OK"));
}

#[actix_rt::test]
async fn unknown_commands_and_bad_arity_are_errors() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(
        err_text(call(&mut c, cmd(&["foo", "bar"])).await),
        "ERR unknown command 'foo', with args beginning with: 'bar' "
    );
    assert_eq!(
        err_text(call(&mut c, cmd(&["GET"])).await),
        "ERR wrong number of arguments for 'get' command"
    );
    assert!(
        err_text(call(&mut c, cmd(&["SET", "k", "v", "EX", "10"])).await)
            .contains("not supported yet")
    );
    assert_eq!(call(&mut c, cmd(&["GET", "k"])).await, BytesFrame::Null);
}

#[actix_rt::test]
async fn config_get_answers_name_value_pairs() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(
        call(&mut c, cmd(&["CONFIG", "GET", "save"])).await,
        BytesFrame::Array(vec![bulk("save"), bulk("")])
    );
    assert_eq!(
        call(&mut c, cmd(&["CONFIG", "GET", "appendonly"])).await,
        BytesFrame::Array(vec![bulk("appendonly"), bulk("no")])
    );
    assert_eq!(
        call(&mut c, cmd(&["CONFIG", "GET", "no-such-thing"])).await,
        BytesFrame::Array(vec![])
    );
}

#[actix_rt::test]
async fn hello_and_client_commands() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(
        err_text(call(&mut c, cmd(&["HELLO", "3"])).await),
        "NOPROTO this server speaks RESP2 only"
    );
    let BytesFrame::Array(hello) = call(&mut c, cmd(&["HELLO", "2"])).await else {
        panic!("HELLO 2 should answer an array");
    };
    assert_eq!(hello[4..6], [bulk("proto"), BytesFrame::Integer(2)]);
    assert_eq!(
        call(&mut c, cmd(&["CLIENT", "SETNAME", "me"])).await,
        simple("OK")
    );
    assert_eq!(call(&mut c, cmd(&["CLIENT", "GETNAME"])).await, bulk("me"));
    let BytesFrame::Integer(id) = call(&mut c, cmd(&["CLIENT", "ID"])).await else {
        panic!("CLIENT ID should answer an integer");
    };
    assert_eq!(hello[7], BytesFrame::Integer(id));
    assert_eq!(call(&mut c, cmd(&["SET", "a", "1"])).await, simple("OK"));
    h.record(|r| {
        assert_eq!(
            r.seqs.keys().copied().collect::<Vec<_>>(),
            vec![ClientId(id as u64)]
        )
    });
}

#[actix_rt::test]
async fn synod_status_reports_the_replica() {
    let h = start_server(RespOptions::default());
    let mut c = h.connect().await;
    assert_eq!(call(&mut c, cmd(&["SET", "a", "1"])).await, simple("OK"));
    let mut expected = KvStore::default();
    expected.apply(KvCommand::Set {
        key: Bytes::from_static(b"a"),
        value: Bytes::from_static(b"1"),
        cond: synod_kv::SetCond::Always,
        get_old: false,
    });
    assert_eq!(
        call(&mut c, cmd(&["SYNOD.STATUS"])).await,
        BytesFrame::Array(vec![
            bulk("node"),
            bulk("fake1"),
            bulk("applied"),
            BytesFrame::Integer(1),
            bulk("snapshot"),
            BytesFrame::Integer(0),
            bulk("digest"),
            bulk(&format!("{:016x}", expected.digest())),
            bulk("leader"),
            bulk("fake1"),
        ])
    );
    let BytesFrame::BulkString(info) = call(&mut c, cmd(&["INFO"])).await else {
        panic!("INFO should answer a bulk string");
    };
    let info = String::from_utf8(info.to_vec()).unwrap();
    assert!(
        info.contains("role:master\r\n") && info.contains("synod_node:fake1\r\n"),
        "{info}"
    );
}

#[actix_rt::test]
async fn timeout_answers_an_error_and_the_next_request_takes_the_next_seq() {
    let (h, mut c) = timing_out_server_after_set_a().await;
    assert_eq!(
        err_text(call(&mut c, cmd(&["GET", BLACK_HOLE_KEY])).await),
        "ERR timeout waiting for the cluster (request may still be applied)"
    );
    assert_eq!(call(&mut c, cmd(&["GET", "a"])).await, bulk("1"));
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.seqs.values().collect::<Vec<_>>(), vec![&vec![1, 2, 3]]);
    });
}

#[actix_rt::test]
async fn undecodable_bytes_get_an_error_then_the_connection_closes() {
    let h = start_server(RespOptions::default());
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n")
        .await
        .unwrap();
    let out = read_to_close(&mut s).await;
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("+PONG\r\n-ERR Protocol error: "), "{out:?}");
    assert!(
        out.ends_with("\r\n") && out.matches("\r\n").count() == 2,
        "{out:?}"
    );
}

#[actix_rt::test]
async fn oversized_request_is_refused() {
    let h = start_server(RespOptions {
        max_frame: 1024,
        ..Default::default()
    });
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n")
        .await
        .unwrap();
    let out = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(
        out.starts_with("-ERR Protocol error: request larger than 1024 bytes"),
        "{out:?}"
    );
}

#[actix_rt::test]
async fn quit_replies_ok_and_closes() {
    let h = start_server(RespOptions::default());
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut s).await, b"+OK\r\n");
}

#[actix_rt::test]
async fn inline_commands_work() {
    let h = start_server(RespOptions::default());
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"PING\r\nSET a hello\r\nGET a\r\nQUIT\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        b"+PONG\r\n+OK\r\n$5\r\nhello\r\n+OK\r\n"
    );
}

#[actix_rt::test]
async fn a_stopped_replica_yields_errors_not_hangs() {
    // A replica that is not running: its mailbox drops every request.
    let record = Arc::new(Mutex::new(Record::default()));
    let addr = {
        let fake = FakeReplica {
            store: KvStore::default(),
            applied: 0,
            delay: Duration::ZERO,
            record,
            black_holed: Vec::new(),
        }
        .start();
        fake.do_send(StopNow);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let handle = ReplicaHandle {
            request: fake.clone().recipient(),
            gone: fake.clone().recipient(),
            status: fake.recipient(),
        };
        synod_resp::start(
            "127.0.0.1:0".parse().unwrap(),
            handle,
            RespOptions::default(),
        )
        .unwrap()
    };
    let mut c = Framed::new(TcpStream::connect(addr).await.unwrap(), Resp2::default());
    assert_eq!(
        err_text(call(&mut c, cmd(&["GET", "a"])).await),
        "ERR the replica dropped the request"
    );
    assert!(matches!(
        call(&mut c, cmd(&["SYNOD.STATUS"])).await,
        BytesFrame::Error(_)
    ));
    assert_eq!(call(&mut c, cmd(&["PING"])).await, simple("PONG"));
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopNow;

impl Handler<StopNow> for FakeReplica {
    type Result = ();
    fn handle(&mut self, _: StopNow, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[test]
fn start_outside_a_system_is_an_error() {
    let sys = actix::System::new();
    let handle = sys.block_on(async {
        let fake = FakeReplica {
            store: KvStore::default(),
            applied: 0,
            delay: Duration::ZERO,
            record: Default::default(),
            black_holed: Vec::new(),
        }
        .start();
        ReplicaHandle {
            request: fake.clone().recipient(),
            gone: fake.clone().recipient(),
            status: fake.recipient(),
        }
    });
    let thread = std::thread::spawn(move || {
        synod_resp::start(
            "127.0.0.1:0".parse().unwrap(),
            handle,
            RespOptions::default(),
        )
    });
    assert!(thread.join().unwrap().is_err());
}

#[actix_rt::test]
async fn read_ahead_stops_at_its_byte_budget() {
    // With room for no bytes beyond the first request, nothing is read
    // ahead: a pipeline reaches the replica one command at a time, and
    // every reply still comes back, in order.
    let h = start_server(RespOptions {
        max_pending_bytes: 1,
        ..Default::default()
    });
    let mut c = h.connect().await;
    let frames: Vec<_> = (0..12)
        .map(|i| cmd(&["SET", &format!("k{i}"), "v"]))
        .collect();
    pipeline(&mut c, &frames).await;
    assert_eq!(replies(&mut c, 12).await, vec![simple("OK"); 12]);
    h.record(|r| {
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.sizes, vec![1; 12]);
    });
}

#[actix_rt::test]
async fn clients_past_max_clients_are_refused_until_one_leaves() {
    let h = start_server(RespOptions {
        max_clients: 2,
        ..Default::default()
    });
    let mut a = h.connect().await;
    let mut b = h.connect().await;
    assert_eq!(call(&mut a, cmd(&["PING"])).await, simple("PONG"));
    assert_eq!(call(&mut b, cmd(&["PING"])).await, simple("PONG"));
    let mut third = h.connect().await;
    assert_eq!(
        err_text(next(&mut third).await),
        "ERR max number of clients reached"
    );
    drop(a);
    // The server notices the close on its next read; until then a new
    // client may still be refused, so try a few times.
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut raw = TcpStream::connect(h.addr).await.unwrap();
        if raw.write_all(b"PING\r\n").await.is_err() {
            continue;
        }
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        if buf[..n].starts_with(b"+PONG") {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a slot freed when a client left");
    assert_eq!(call(&mut b, cmd(&["PING"])).await, simple("PONG"));
}
