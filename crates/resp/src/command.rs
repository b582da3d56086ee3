//! The pure part of the front end: a request frame in, what to do about it
//! out, and KV outputs back to frames. Nothing here touches a socket or an
//! actor, so every command's parsing and every reply's shape is unit-tested.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;
use synod_kv::{KvCommand, KvOutput, SetCond};
use synod_replica::actor::ReplicaStatus;
use synod_types::ClientId;

/// The Redis version this server claims. Clients read it (from `HELLO` and
/// `INFO`) to pick a dialect; 7.0 is the command surface we follow.
pub const REDIS_VERSION: &str = "7.0.0";

/// Commands this front end knows, for `COMMAND COUNT` / `COMMAND LIST`.
pub const COMMANDS: &[&str] = &[
    "get",
    "set",
    "del",
    "unlink",
    "exists",
    "mget",
    "dbsize",
    "cas",
    "incr",
    "incrby",
    "decr",
    "decrby",
    "ping",
    "echo",
    "quit",
    "select",
    "command",
    "config",
    "client",
    "hello",
    "info",
    "auth",
    "synod.status",
];

/// Parameters `CONFIG GET` reports. redis-benchmark asks for `save` and
/// `appendonly` at startup and gives up if the reply is not a pair list.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("timeout", "0"),
];

pub const TIMEOUT_ERROR: &str =
    "ERR timeout waiting for the cluster (request may still be applied)";

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Answer with this frame at once.
    Reply(BytesFrame),
    /// Send no reply: Redis ignores empty requests.
    Ignore,
    /// Answer `+OK`, then close the connection.
    Quit,
    /// Goes through the replicated log.
    Kv(KvCommand),
    /// Answered from the connection's own state.
    Session(SessionCmd),
    /// Needs the local replica's status.
    Status(StatusView),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCmd {
    SetName(Bytes),
    GetName,
    Id,
    Info,
    Hello { set_name: Option<Bytes> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatusView {
    /// `SYNOD.STATUS`
    Synod,
    /// `INFO [section ...]`; all (few) sections are always returned.
    Info,
}

pub fn ok() -> BytesFrame {
    BytesFrame::SimpleString(Bytes::from_static(b"OK"))
}

/// An error reply. Callers pass client bytes only through [`printable`]: a
/// CR or LF inside an error line would desynchronise the client.
pub fn error(msg: impl Into<String>) -> BytesFrame {
    BytesFrame::Error(msg.into().into())
}

fn bulk(s: impl Into<Bytes>) -> BytesFrame {
    BytesFrame::BulkString(s.into())
}

fn bulk_str(s: &str) -> BytesFrame {
    bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Client bytes made safe (and short) for an error line.
pub fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 128;
    let mut s = bytes[..bytes.len().min(MAX)].escape_ascii().to_string();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

fn arity_error(name: &str) -> BytesFrame {
    error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn syntax_error() -> BytesFrame {
    error("ERR syntax error")
}

fn unknown_subcommand(sub: &[u8], cmd: &str) -> BytesFrame {
    error(format!(
        "ERR unknown subcommand '{}'. Try {cmd} HELP.",
        printable(sub)
    ))
}

/// Maps a KV output onto its RESP2 reply.
pub fn output_frame(out: KvOutput) -> BytesFrame {
    match out {
        KvOutput::Ok => ok(),
        KvOutput::Nil => BytesFrame::Null,
        KvOutput::Value(v) => bulk(v),
        KvOutput::Int(n) => BytesFrame::Integer(n),
        KvOutput::Error(e) => error(e),
        KvOutput::Values(vs) => BytesFrame::Array(
            vs.into_iter()
                .map(|v| v.map_or(BytesFrame::Null, bulk))
                .collect(),
        ),
        // The connection answers a pipeline's outputs one by one; an array
        // is only what one would look like as a single reply.
        KvOutput::Pipeline(outs) => BytesFrame::Array(outs.into_iter().map(output_frame).collect()),
    }
}

fn incr(key: &Bytes, by: Option<i64>) -> Request {
    match by {
        Some(by) => Request::Kv(KvCommand::Incr {
            key: key.clone(),
            by,
        }),
        None => Request::Reply(error("ERR value is not an integer or out of range")),
    }
}

/// Decides what a request frame asks for.
pub fn parse_request(frame: BytesFrame) -> Request {
    let args = match frame {
        BytesFrame::Array(items) => items
            .into_iter()
            .map(|f| match f {
                BytesFrame::BulkString(b) => Some(b),
                _ => None,
            })
            .collect::<Option<Vec<Bytes>>>(),
        _ => None,
    };
    let Some(args) = args else {
        return Request::Reply(error(
            "ERR Protocol error: expected an array of bulk strings",
        ));
    };
    let Some((name, args)) = args.split_first() else {
        return Request::Ignore;
    };
    let lname = name.to_ascii_lowercase();
    // `need(min, max)` checks the argument count after the command name.
    let need = |canonical: &str, min: usize, max: Option<usize>| {
        if args.len() < min || max.is_some_and(|m| args.len() > m) {
            Err(Request::Reply(arity_error(canonical)))
        } else {
            Ok(())
        }
    };
    let parsed = match lname.as_slice() {
        b"get" => need("get", 1, Some(1)).map(|()| {
            Request::Kv(KvCommand::Get {
                key: args[0].clone(),
            })
        }),
        b"set" => need("set", 2, None).map(|()| parse_set(args)),
        b"del" | b"unlink" => {
            need(if lname == b"del" { "del" } else { "unlink" }, 1, None).map(|()| {
                Request::Kv(KvCommand::Del {
                    keys: args.to_vec(),
                })
            })
        }
        b"exists" => need("exists", 1, None).map(|()| {
            Request::Kv(KvCommand::Exists {
                keys: args.to_vec(),
            })
        }),
        b"mget" => need("mget", 1, None).map(|()| {
            Request::Kv(KvCommand::MGet {
                keys: args.to_vec(),
            })
        }),
        b"dbsize" => need("dbsize", 0, Some(0)).map(|()| Request::Kv(KvCommand::DbSize)),
        b"cas" => need("cas", 3, Some(3)).map(|()| {
            Request::Kv(KvCommand::Cas {
                key: args[0].clone(),
                expected: Some(args[1].clone()),
                new: args[2].clone(),
            })
        }),
        b"incr" | b"decr" => {
            let (name, by) = if lname == b"incr" {
                ("incr", 1)
            } else {
                ("decr", -1)
            };
            need(name, 1, Some(1)).map(|()| incr(&args[0], Some(by)))
        }
        b"incrby" | b"decrby" => {
            let (name, sign) = if lname == b"incrby" {
                ("incrby", 1)
            } else {
                ("decrby", -1)
            };
            need(name, 2, Some(2)).map(|()| match synod_kv::parse_int(&args[1]) {
                // As Redis: -i64::MIN has no i64, so DECRBY cannot take it.
                Some(i64::MIN) if sign < 0 => Request::Reply(error("ERR decrement would overflow")),
                by => incr(&args[0], by.map(|n| n * sign)),
            })
        }
        b"ping" => need("ping", 0, Some(1)).map(|()| {
            Request::Reply(match args.first() {
                None => BytesFrame::SimpleString(Bytes::from_static(b"PONG")),
                Some(msg) => bulk(msg.clone()),
            })
        }),
        b"echo" => need("echo", 1, Some(1)).map(|()| Request::Reply(bulk(args[0].clone()))),
        b"quit" => Ok(Request::Quit),
        b"select" => need("select", 1, Some(1)).map(|()| Request::Reply(select(&args[0]))),
        b"command" => Ok(Request::Reply(command(args))),
        b"config" => need("config", 1, None).map(|()| Request::Reply(config(args))),
        b"client" => need("client", 1, None).and_then(|()| client(args)),
        b"hello" => hello(args),
        b"info" => Ok(Request::Status(StatusView::Info)),
        b"auth" => need("auth", 1, Some(2)).map(|()| Request::Reply(auth_error())),
        b"synod.status" => {
            need("synod.status", 0, Some(0)).map(|()| Request::Status(StatusView::Synod))
        }
        _ => Ok(Request::Reply(error(unknown_command(name, args)))),
    };
    parsed.unwrap_or_else(|refusal| refusal)
}

fn auth_error() -> BytesFrame {
    error(
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?",
    )
}

fn parse_set(args: &[Bytes]) -> Request {
    let (key, value) = (args[0].clone(), args[1].clone());
    let mut cond = SetCond::Always;
    let mut get_old = false;
    for opt in &args[2..] {
        let upper = opt.to_ascii_uppercase();
        match upper.as_slice() {
            b"NX" if cond != SetCond::IfPresent => cond = SetCond::IfAbsent,
            b"XX" if cond != SetCond::IfAbsent => cond = SetCond::IfPresent,
            b"GET" => get_old = true,
            // Keep the key's expiry: no key has one, so there is nothing to
            // keep, and clients that always send it still work.
            b"KEEPTTL" => {}
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                // Expiry needs time inside the state machine, which must stay
                // deterministic: it would have to come from the leader's clock
                // through the log. Until then, refuse rather than ignore.
                return Request::Reply(error(format!(
                    "ERR SET option '{}' is not supported yet (no key expiry)",
                    printable(&upper)
                )));
            }
            _ => return Request::Reply(syntax_error()),
        }
    }
    Request::Kv(KvCommand::Set {
        key,
        value,
        cond,
        get_old,
    })
}

/// Redis 7's wording: the name, then the arguments quoted, up to about
/// 128 characters of them.
fn unknown_command(name: &[u8], args: &[Bytes]) -> String {
    let mut shown = String::new();
    for arg in args {
        if shown.len() >= 128 {
            break;
        }
        let arg = printable(arg);
        let room = 128 - shown.len();
        let cut: String = arg.chars().take(room).collect();
        shown.push_str(&format!("'{cut}' "));
    }
    let name: String = printable(name).chars().take(128).collect();
    format!("ERR unknown command '{name}', with args beginning with: {shown}")
}

fn select(db: &[u8]) -> BytesFrame {
    match synod_kv::parse_int(db) {
        Some(0) => ok(),
        Some(_) => error("ERR DB index is out of range"),
        None => error("ERR value is not an integer or out of range"),
    }
}

fn command(args: &[Bytes]) -> BytesFrame {
    let Some(sub) = args.first() else {
        // The full command table is optional for clients (redis-cli uses it
        // for hints only); an empty table is a valid answer.
        return BytesFrame::Array(vec![]);
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"count" => BytesFrame::Integer(COMMANDS.len() as i64),
        b"docs" => BytesFrame::Array(vec![]),
        b"list" => BytesFrame::Array(COMMANDS.iter().map(|c| bulk_str(c)).collect()),
        b"info" => BytesFrame::Array(args[1..].iter().map(|_| BytesFrame::Null).collect()),
        _ => unknown_subcommand(sub, "COMMAND"),
    }
}

fn config(args: &[Bytes]) -> BytesFrame {
    let sub = &args[0];
    match sub.to_ascii_lowercase().as_slice() {
        b"get" if args.len() >= 2 => {
            let mut pairs = Vec::new();
            for (name, value) in CONFIG {
                if args[1..].iter().any(|p| glob_match(p, name.as_bytes())) {
                    pairs.push(bulk_str(name));
                    pairs.push(bulk_str(value));
                }
            }
            BytesFrame::Array(pairs)
        }
        b"get" => arity_error("config|get"),
        b"set" => error("ERR CONFIG SET is not supported; Synod is configured by its config file"),
        b"resetstat" => ok(),
        _ => unknown_subcommand(sub, "CONFIG"),
    }
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

fn name_error() -> BytesFrame {
    error("ERR Client names cannot contain spaces, newlines or special characters.")
}

fn client(args: &[Bytes]) -> Result<Request, Request> {
    let sub = &args[0];
    let lsub = sub.to_ascii_lowercase();
    let n = args.len() - 1;
    let arity = |name: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Request::Reply(arity_error(name)))
        }
    };
    match lsub.as_slice() {
        b"setname" => {
            arity("client|setname", n == 1)?;
            if !valid_client_name(&args[1]) {
                return Ok(Request::Reply(name_error()));
            }
            Ok(Request::Session(SessionCmd::SetName(args[1].clone())))
        }
        b"getname" => {
            arity("client|getname", n == 0).map(|()| Request::Session(SessionCmd::GetName))
        }
        b"id" => arity("client|id", n == 0).map(|()| Request::Session(SessionCmd::Id)),
        // Only this connection is known here, so LIST shows just that one.
        b"info" | b"list" => Ok(Request::Session(SessionCmd::Info)),
        b"setinfo" => {
            arity("client|setinfo", n == 2)?;
            match args[1].to_ascii_lowercase().as_slice() {
                b"lib-name" | b"lib-ver" => Ok(Request::Reply(ok())),
                _ => Ok(Request::Reply(error(format!(
                    "ERR Unrecognized option '{}'",
                    printable(&args[1])
                )))),
            }
        }
        _ => Ok(Request::Reply(unknown_subcommand(sub, "CLIENT"))),
    }
}

fn hello(args: &[Bytes]) -> Result<Request, Request> {
    let refuse = |msg: &str| Err(Request::Reply(error(msg)));
    let Some((version, opts)) = args.split_first() else {
        return Ok(Request::Session(SessionCmd::Hello { set_name: None }));
    };
    match synod_kv::parse_int(version) {
        Some(2) => {}
        Some(3) => return refuse("NOPROTO this server speaks RESP2 only"),
        Some(_) => return refuse("NOPROTO unsupported protocol version"),
        None => return refuse("ERR Protocol version is not an integer or out of range"),
    }
    let mut set_name = None;
    let mut i = 0;
    while i < opts.len() {
        let opt = opts[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < opts.len() => return Err(Request::Reply(auth_error())),
            b"SETNAME" if i + 1 < opts.len() => {
                if !valid_client_name(&opts[i + 1]) {
                    return Err(Request::Reply(name_error()));
                }
                set_name = Some(opts[i + 1].clone());
                i += 2;
            }
            _ => {
                return Err(Request::Reply(error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    printable(&opts[i])
                ))))
            }
        }
    }
    Ok(Request::Session(SessionCmd::Hello { set_name }))
}

/// Redis-style glob (`*`, `?`, ASCII case-insensitive) for `CONFIG GET`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and how much of `text` it has swallowed.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Per-connection state the session commands read and write.
#[derive(Debug)]
pub struct Session {
    pub client: ClientId,
    pub peer: String,
    name: Option<Bytes>,
    last_seq: u64,
}

impl Session {
    pub fn new(client: ClientId, peer: String) -> Self {
        Session {
            client,
            peer,
            name: None,
            last_seq: 0,
        }
    }

    /// The request number for the next log request: 1, 2, 3, ... A request
    /// that timed out still used its number, so the replica's "seq ≤ last
    /// applied ⇒ duplicate" rule never confuses two different requests.
    pub fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    fn id(&self) -> i64 {
        // Ids are drawn below 2^63 so the integer reply is exact.
        i64::try_from(self.client.0).unwrap_or(i64::MAX)
    }

    fn info_line(&self) -> String {
        let name = self.name.as_deref().map(printable).unwrap_or_default();
        format!(
            "id={} addr={} name={} db=0 resp=2\n",
            self.id(),
            self.peer,
            name
        )
    }

    pub fn answer(&mut self, cmd: SessionCmd) -> BytesFrame {
        match cmd {
            SessionCmd::SetName(name) => {
                self.name = (!name.is_empty()).then_some(name);
                ok()
            }
            SessionCmd::GetName => self.name.clone().map_or(BytesFrame::Null, bulk),
            SessionCmd::Id => BytesFrame::Integer(self.id()),
            SessionCmd::Info => bulk_str(&self.info_line()),
            SessionCmd::Hello { set_name } => {
                if let Some(name) = set_name {
                    self.name = (!name.is_empty()).then_some(name);
                }
                BytesFrame::Array(vec![
                    bulk_str("server"),
                    bulk_str("synod"),
                    bulk_str("version"),
                    bulk_str(REDIS_VERSION),
                    bulk_str("proto"),
                    BytesFrame::Integer(2),
                    bulk_str("id"),
                    BytesFrame::Integer(self.id()),
                    bulk_str("mode"),
                    bulk_str("standalone"),
                    bulk_str("role"),
                    bulk_str("master"),
                    bulk_str("modules"),
                    BytesFrame::Array(vec![]),
                ])
            }
        }
    }
}

/// Renders the replica status for `SYNOD.STATUS` or `INFO`. `status` is
/// `None` when the replica did not answer; `INFO` still answers then, since
/// clients call it at connect time.
pub fn status_frame(view: StatusView, status: Option<&ReplicaStatus>) -> BytesFrame {
    match (view, status) {
        (StatusView::Synod, None) => error("ERR the local replica did not answer"),
        (StatusView::Synod, Some(s)) => BytesFrame::Array(status_pairs(s)),
        (StatusView::Info, status) => bulk_str(&info_text(status)),
    }
}

fn status_pairs(s: &ReplicaStatus) -> Vec<BytesFrame> {
    let int = |v: u64| BytesFrame::Integer(i64::try_from(v).unwrap_or(i64::MAX));
    let mut pairs = vec![
        bulk_str("node"),
        bulk_str(s.node.as_str()),
        bulk_str("applied"),
        BytesFrame::Integer(i64::try_from(s.applied).unwrap_or(i64::MAX)),
        bulk_str("snapshot"),
        BytesFrame::Integer(i64::try_from(s.snapshot).unwrap_or(i64::MAX)),
        bulk_str("digest"),
        bulk_str(&format!("{:016x}", s.digest)),
        bulk_str("leader"),
        s.leader_hint
            .as_ref()
            .map_or(BytesFrame::Null, |l| bulk_str(l.as_str())),
    ];
    for (k, v) in &s.extra {
        pairs.push(bulk_str(k));
        pairs.push(int(*v));
    }
    pairs
}

fn info_text(status: Option<&ReplicaStatus>) -> String {
    let mut s = format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nsynod_version:{}\r\nredis_mode:standalone\r\n\
         process_id:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    // Every Synod replica takes writes (they go through the log), so to a
    // Redis client each one is a master.
    s.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
    if let Some(st) = status {
        s.push_str(&format!(
            "\r\n# Synod\r\nsynod_node:{}\r\nsynod_applied_slot:{}\r\nsynod_snapshot_slot:{}\r\nsynod_digest:{:016x}\r\nsynod_leader:{}\r\n",
            st.node,
            st.applied,
            st.snapshot,
            st.digest,
            st.leader_hint.as_ref().map(|l| l.as_str()).unwrap_or("")
        ));
        for (k, v) in &st.extra {
            s.push_str(&format!("synod_{k}:{v}\r\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_types::NodeId;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn req(args: &[&str]) -> Request {
        parse_request(BytesFrame::Array(args.iter().map(|a| bulk(b(a))).collect()))
    }

    fn err_text(r: Request) -> String {
        match r {
            Request::Reply(BytesFrame::Error(e)) => e.to_string(),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn kv_commands_map_to_kv_commands() {
        assert_eq!(
            req(&["GET", "k"]),
            Request::Kv(KvCommand::Get { key: b("k") })
        );
        assert_eq!(
            req(&["set", "k", "v"]),
            Request::Kv(KvCommand::Set {
                key: b("k"),
                value: b("v"),
                cond: SetCond::Always,
                get_old: false
            })
        );
        assert_eq!(
            req(&["DEL", "a", "b"]),
            Request::Kv(KvCommand::Del {
                keys: vec![b("a"), b("b")]
            })
        );
        assert_eq!(
            req(&["unlink", "a"]),
            Request::Kv(KvCommand::Del { keys: vec![b("a")] })
        );
        assert_eq!(
            req(&["Exists", "a", "a"]),
            Request::Kv(KvCommand::Exists {
                keys: vec![b("a"), b("a")]
            })
        );
        assert_eq!(
            req(&["MGET", "a", "b"]),
            Request::Kv(KvCommand::MGet {
                keys: vec![b("a"), b("b")]
            })
        );
        assert_eq!(req(&["DBSIZE"]), Request::Kv(KvCommand::DbSize));
        assert_eq!(
            req(&["CAS", "k", "old", "new"]),
            Request::Kv(KvCommand::Cas {
                key: b("k"),
                expected: Some(b("old")),
                new: b("new")
            })
        );
        assert_eq!(
            req(&["INCR", "n"]),
            Request::Kv(KvCommand::Incr { key: b("n"), by: 1 })
        );
        assert_eq!(
            req(&["DECRBY", "n", "5"]),
            Request::Kv(KvCommand::Incr {
                key: b("n"),
                by: -5
            })
        );
        assert!(matches!(
            req(&["INCRBY", "n", "x"]),
            Request::Reply(BytesFrame::Error(_))
        ));
        assert!(matches!(
            req(&["CAS", "k", "v"]),
            Request::Reply(BytesFrame::Error(_))
        ));
    }

    #[test]
    fn set_options() {
        let set = |opts: &[&str]| {
            let mut a = vec!["SET", "k", "v"];
            a.extend_from_slice(opts);
            req(&a)
        };
        let kv = |cond, get_old| {
            Request::Kv(KvCommand::Set {
                key: b("k"),
                value: b("v"),
                cond,
                get_old,
            })
        };
        assert_eq!(set(&["nx"]), kv(SetCond::IfAbsent, false));
        assert_eq!(set(&["XX", "GET"]), kv(SetCond::IfPresent, true));
        assert_eq!(set(&["GET", "NX", "NX"]), kv(SetCond::IfAbsent, true));
        assert_eq!(err_text(set(&["NX", "XX"])), "ERR syntax error");
        assert_eq!(err_text(set(&["bogus"])), "ERR syntax error");
        assert_eq!(set(&["KEEPTTL", "nx"]), kv(SetCond::IfAbsent, false));
        for opt in ["EX", "px", "EXAT"] {
            let e = err_text(set(&[opt, "10"]));
            assert!(
                e.starts_with("ERR SET option '") && e.contains("not supported yet"),
                "{e}"
            );
        }
    }

    #[test]
    fn wrong_arity_is_refused() {
        assert_eq!(
            err_text(req(&["GET"])),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err_text(req(&["get", "a", "b"])),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err_text(req(&["SET", "a"])),
            "ERR wrong number of arguments for 'set' command"
        );
        for cmd in [
            "DEL", "EXISTS", "MGET", "ECHO", "SELECT", "CONFIG", "CLIENT",
        ] {
            let e = err_text(req(&[cmd]));
            assert!(e.starts_with("ERR wrong number of arguments"), "{cmd}: {e}");
        }
        assert!(err_text(req(&["PING", "a", "b"])).starts_with("ERR wrong number"));
    }

    #[test]
    fn unknown_commands_are_refused_safely() {
        assert_eq!(
            err_text(req(&["foo", "x", "y"])),
            "ERR unknown command 'foo', with args beginning with: 'x' 'y' "
        );
        assert_eq!(
            err_text(req(&["foo"])),
            "ERR unknown command 'foo', with args beginning with: "
        );
        let long = "z".repeat(500);
        let e = err_text(req(&["foo", &long, "never"]));
        assert!(e.len() < 300 && !e.contains("never"), "{e}");
        // CR/LF from the client must not reach the error line raw.
        let e = err_text(req(&["a\r\n+OK", "\r\n"]));
        assert!(!e.contains('\r') && !e.contains('\n'), "{e}");
    }

    #[test]
    fn integer_arguments_are_as_strict_as_redis() {
        for by in ["+5", "007", "-0", " 1", "1.0", "9223372036854775808"] {
            assert_eq!(
                err_text(req(&["INCRBY", "k", by])),
                "ERR value is not an integer or out of range",
                "{by:?}"
            );
        }
        assert_eq!(
            err_text(req(&["DECRBY", "k", "-9223372036854775808"])),
            "ERR decrement would overflow"
        );
        assert!(matches!(
            req(&["DECRBY", "k", "5"]),
            Request::Kv(KvCommand::Incr { by: -5, .. })
        ));
        assert!(matches!(
            req(&["INCRBY", "k", "-9223372036854775808"]),
            Request::Kv(KvCommand::Incr { by: i64::MIN, .. })
        ));
    }

    #[test]
    fn non_array_requests_are_protocol_errors() {
        let expected = "ERR Protocol error: expected an array of bulk strings";
        for frame in [
            BytesFrame::SimpleString(b("PING")),
            BytesFrame::Integer(1),
            BytesFrame::Null,
            bulk(b("PING")),
            BytesFrame::Array(vec![bulk(b("GET")), BytesFrame::Integer(1)]),
        ] {
            assert_eq!(err_text(parse_request(frame)), expected);
        }
        assert_eq!(parse_request(BytesFrame::Array(vec![])), Request::Ignore);
    }

    #[test]
    fn local_commands() {
        assert_eq!(
            req(&["PING"]),
            Request::Reply(BytesFrame::SimpleString(b("PONG")))
        );
        assert_eq!(req(&["ping", "hi"]), Request::Reply(bulk(b("hi"))));
        assert_eq!(req(&["ECHO", "x"]), Request::Reply(bulk(b("x"))));
        assert_eq!(req(&["QUIT"]), Request::Quit);
        assert_eq!(req(&["SELECT", "0"]), Request::Reply(ok()));
        assert_eq!(
            err_text(req(&["SELECT", "1"])),
            "ERR DB index is out of range"
        );
        assert!(err_text(req(&["SELECT", "x"])).contains("not an integer"));
        assert_eq!(req(&["COMMAND"]), Request::Reply(BytesFrame::Array(vec![])));
        assert_eq!(
            req(&["COMMAND", "DOCS"]),
            Request::Reply(BytesFrame::Array(vec![]))
        );
        assert_eq!(
            req(&["command", "count"]),
            Request::Reply(BytesFrame::Integer(COMMANDS.len() as i64))
        );
        assert!(err_text(req(&["COMMAND", "nope"])).starts_with("ERR unknown subcommand"));
        assert_eq!(req(&["INFO"]), Request::Status(StatusView::Info));
        assert_eq!(req(&["synod.status"]), Request::Status(StatusView::Synod));
        assert!(err_text(req(&["AUTH", "pw"])).starts_with("ERR AUTH"));
    }

    #[test]
    fn config_get_answers_name_value_pairs() {
        let pairs =
            |v: &[&str]| Request::Reply(BytesFrame::Array(v.iter().map(|s| bulk(b(s))).collect()));
        assert_eq!(req(&["CONFIG", "GET", "save"]), pairs(&["save", ""]));
        assert_eq!(
            req(&["config", "get", "APPENDONLY"]),
            pairs(&["appendonly", "no"])
        );
        assert_eq!(
            req(&["CONFIG", "GET", "save", "appendonly"]),
            pairs(&["save", "", "appendonly", "no"])
        );
        assert_eq!(req(&["CONFIG", "GET", "nope"]), pairs(&[]));
        assert_eq!(
            req(&["CONFIG", "GET", "*"]),
            pairs(&[
                "save",
                "",
                "appendonly",
                "no",
                "databases",
                "1",
                "maxmemory",
                "0",
                "timeout",
                "0"
            ])
        );
        assert!(err_text(req(&["CONFIG", "GET"])).starts_with("ERR wrong number"));
        assert!(err_text(req(&["CONFIG", "SET", "save", ""])).starts_with("ERR CONFIG SET"));
    }

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"s*", b"save"));
        assert!(glob_match(b"*e", b"save"));
        assert!(glob_match(b"s?v?", b"save"));
        assert!(glob_match(b"*a*e*", b"save"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(!glob_match(b"s", b"save"));
        assert!(!glob_match(b"*x*", b"save"));
        assert!(!glob_match(b"", b"save"));
        assert!(glob_match(b"**", b""));
    }

    #[test]
    fn client_and_hello() {
        let mut s = Session::new(ClientId(42), "127.0.0.1:1".into());
        let answer = |s: &mut Session, r: Request| match r {
            Request::Session(cmd) => s.answer(cmd),
            Request::Reply(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            answer(&mut s, req(&["CLIENT", "GETNAME"])),
            BytesFrame::Null
        );
        assert_eq!(answer(&mut s, req(&["CLIENT", "SETNAME", "bob"])), ok());
        assert_eq!(answer(&mut s, req(&["client", "getname"])), bulk(b("bob")));
        assert_eq!(
            answer(&mut s, req(&["CLIENT", "ID"])),
            BytesFrame::Integer(42)
        );
        assert_eq!(
            answer(&mut s, req(&["CLIENT", "SETINFO", "lib-name", "x"])),
            ok()
        );
        assert!(err_text(req(&["CLIENT", "SETNAME", "a b"])).contains("cannot contain spaces"));
        match answer(&mut s, req(&["CLIENT", "INFO"])) {
            BytesFrame::BulkString(line) => {
                assert!(line.starts_with(b"id=42 addr=127.0.0.1:1 name=bob"))
            }
            other => panic!("{other:?}"),
        }

        match answer(&mut s, req(&["HELLO", "2", "SETNAME", "carol"])) {
            BytesFrame::Array(items) => {
                assert_eq!(items.len(), 14);
                assert_eq!(items[4], bulk(b("proto")));
                assert_eq!(items[5], BytesFrame::Integer(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(&mut s, req(&["CLIENT", "GETNAME"])),
            bulk(b("carol"))
        );
        assert!(matches!(
            req(&["HELLO"]),
            Request::Session(SessionCmd::Hello { set_name: None })
        ));
        assert_eq!(
            err_text(req(&["HELLO", "3"])),
            "NOPROTO this server speaks RESP2 only"
        );
        assert!(err_text(req(&["HELLO", "x"])).contains("not an integer"));
        assert!(err_text(req(&["HELLO", "2", "AUTH", "u", "p"])).starts_with("ERR AUTH"));
        assert!(err_text(req(&["HELLO", "2", "BOGUS"])).starts_with("ERR Syntax error"));
    }

    #[test]
    fn seqs_count_from_one() {
        let mut s = Session::new(ClientId(1), String::new());
        assert_eq!((s.next_seq(), s.next_seq(), s.next_seq()), (1, 2, 3));
    }

    #[test]
    fn outputs_map_to_frames() {
        assert_eq!(output_frame(KvOutput::Ok), ok());
        assert_eq!(output_frame(KvOutput::Nil), BytesFrame::Null);
        assert_eq!(output_frame(KvOutput::Value(b("v"))), bulk(b("v")));
        assert_eq!(output_frame(KvOutput::Int(3)), BytesFrame::Integer(3));
        assert_eq!(
            output_frame(KvOutput::Values(vec![Some(b("a")), None])),
            BytesFrame::Array(vec![bulk(b("a")), BytesFrame::Null])
        );
    }

    #[test]
    fn status_rendering() {
        let st = ReplicaStatus {
            node: NodeId::new("n1"),
            applied: 7,
            snapshot: 5,
            digest: 0xab,
            leader_hint: Some(NodeId::new("n2")),
            extra: vec![],
        };
        assert_eq!(
            status_frame(StatusView::Synod, Some(&st)),
            BytesFrame::Array(vec![
                bulk(b("node")),
                bulk(b("n1")),
                bulk(b("applied")),
                BytesFrame::Integer(7),
                bulk(b("snapshot")),
                BytesFrame::Integer(5),
                bulk(b("digest")),
                bulk(b("00000000000000ab")),
                bulk(b("leader")),
                bulk(b("n2")),
            ])
        );
        match status_frame(StatusView::Info, Some(&st)) {
            BytesFrame::BulkString(text) => {
                let text = String::from_utf8(text.to_vec()).unwrap();
                assert!(text.contains("role:master\r\n"), "{text}");
                assert!(text.contains("synod_node:n1\r\n"), "{text}");
                assert!(text.contains("synod_leader:n2\r\n"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            status_frame(StatusView::Synod, None),
            BytesFrame::Error(_)
        ));
        assert!(matches!(
            status_frame(StatusView::Info, None),
            BytesFrame::BulkString(_)
        ));
    }
}
