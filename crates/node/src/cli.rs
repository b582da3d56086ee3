//! The `synod` command line, as a library function so test harnesses can
//! build the very same program under another binary name.

use crate::{ClusterConfig, NodeBuilder, NodeError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use synod_kv::KvStore;

/// `println!` that does not panic when stdout is closed early
/// (`synod check-config ... | head`): the reader went away, nothing to do.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Exit code for a bad config or command line, as the issue tracker asks.
const EXIT_CONFIG: u8 = 2;
/// A panic anywhere in the process (EX_SOFTWARE, as for a storage failure).
pub const EXIT_PANIC: i32 = 70;

/// Makes any panic end the process. Actix catches a panic at the boundary
/// of the task it happened in, so without this a panicking role would stop
/// alone and leave a node that still answers PING and holds its ports but
/// serves nothing: neither a supervisor nor the peers could tell. A node
/// that cannot do its part must be seen to be gone.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(EXIT_PANIC);
    }));
}

#[derive(Parser)]
#[command(
    name = "synod",
    version,
    about = "Synod: a Multi-Paxos replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the roles that the config assigns to node ID.
    Node {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Set up node ID's data directory for its first start (an empty
    /// acceptor log and an identity file). Refuses if it was set up before:
    /// a node that lost its acceptor log must not rejoin with an empty one.
    Init {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Validate a config file and print its topology.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print what a node keeps on disk (read-only): promised ballot,
    /// accepted slots, compaction mark, snapshot, checksum status.
    Inspect {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs the `synod` command line with the process arguments.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.cmd {
        Cmd::CheckConfig { config } => match ClusterConfig::load(&config) {
            Ok(cfg) => {
                for n in &cfg.nodes {
                    let client = n
                        .client_addr
                        .map(|a| format!(" client={a}"))
                        .unwrap_or_default();
                    out!(
                        "{} peer={}{} roles={}",
                        n.id,
                        n.peer_addr,
                        client,
                        n.roles.join(",")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("synod: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Cmd::Node { config, id } => run_node(config, id),
        Cmd::Init { config, id } => {
            let cfg = match ClusterConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("synod: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match crate::init(&cfg, &id) {
                Ok(dir) => {
                    out!("node {id} set up in {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("synod: init {id}: {e}");
                    ExitCode::from(if matches!(e, NodeError::Config(_)) {
                        EXIT_CONFIG
                    } else {
                        1
                    })
                }
            }
        }
        Cmd::Inspect { data_dir } => inspect(&data_dir),
    }
}

/// Exit 0 if everything on disk checks out, 1 if anything is corrupt.
fn inspect(dir: &std::path::Path) -> ExitCode {
    // Reads only: a typo in the path must not create directories and then
    // report an empty, healthy node.
    if !dir.is_dir() {
        eprintln!("synod: inspect: {} is not a directory", dir.display());
        return ExitCode::from(1);
    }
    let mut ok = true;
    out!("data dir: {}", dir.display());
    match synod_storage::DataDirIdentity::read(dir) {
        Ok(Some(id)) => out!("identity: node {} of cluster {:?}", id.node, id.cluster_id),
        Ok(None) => out!("identity: none (set up before identity files, or never)"),
        Err(e) => {
            ok = false;
            out!("identity: BAD: {e}");
        }
    }
    if dir.join(synod_storage::LOG_NAME).exists() {
        match synod_storage::inspect_log(dir) {
            Ok(r) => {
                let st = &r.state;
                let range = match (st.accepted.keys().next(), st.accepted.keys().last()) {
                    (Some(a), Some(b)) => format!("{a}..={b} ({} slots)", st.accepted.len()),
                    _ => "none".into(),
                };
                out!(
                    "acceptor log: {} (format {}, {} records in {} bytes, file preallocated to {} bytes)",
                    r.path.display(),
                    r.format,
                    r.records,
                    r.end,
                    r.bytes
                );
                out!(
                    "  promised ballot: ({}, {})",
                    st.promised.round,
                    st.promised.node
                );
                out!("  accepted slots: {range}");
                out!("  compacted below slot: {}", st.compacted_below);
                if r.torn_bytes > 0 {
                    out!(
                        "  checksums: ok; torn final record: {} bytes at offset {} (discarded at next start)",
                        r.torn_bytes,
                        r.end
                    );
                } else {
                    out!("  checksums: ok");
                }
            }
            Err(e) => {
                ok = false;
                out!("acceptor log: BAD: {e}");
            }
        }
    } else {
        out!("acceptor log: none");
    }
    let snapshots = dir.join("replica");
    let store = synod_storage::SnapshotStore::read_only(&snapshots);
    match store.load().map(|l| (store.path(), l)) {
        Ok((path, Some((slot, data)))) => {
            out!(
                "replica snapshot: {} (covers slots below {slot}, {} bytes, checksum ok)",
                path.display(),
                data.len()
            )
        }
        Ok((_, None)) => out!("replica snapshot: none"),
        Err(e) => {
            ok = false;
            out!("replica snapshot: BAD: {e}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_node(config: PathBuf, id: String) -> ExitCode {
    exit_on_panic();
    let cfg = match ClusterConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("synod: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = cfg.node(&id) {
        eprintln!("synod: {}: {e}", config.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let sys = actix::System::new();
    let started = sys.block_on(async {
        NodeBuilder::new(cfg, &id, KvStore::default())
            .with_extension(crate::resp_front_end)
            .start()
    });
    let ctx = match started {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("synod: node {id}: {e}");
            return ExitCode::from(if matches!(e, NodeError::Config(_)) {
                EXIT_CONFIG
            } else {
                1
            });
        }
    };
    tracing::info!(node = %ctx.id, roles = ?ctx.node.roles, peer = %ctx.node.peer_addr,
        client = ?ctx.node.client_addr, "node started");
    match sys.run_with_code() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("synod: node {id}: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a child process (this test binary again): a panic in a
    /// thread that is not main, as in an actor's task, must end it.
    #[test]
    fn a_panic_in_any_thread_ends_the_process() {
        if std::env::var_os("SYNOD_PANIC_CHILD").is_some() {
            exit_on_panic();
            let _ = std::thread::spawn(|| panic!("a role failed")).join();
            // Only reached if the panic was swallowed.
            std::process::exit(0);
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cli::tests::a_panic_in_any_thread_ends_the_process",
            ])
            .env("SYNOD_PANIC_CHILD", "1")
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(EXIT_PANIC));
    }
}
