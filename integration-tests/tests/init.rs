//! A node's first start needs `synod init`; a node whose acceptor log is
//! gone, or whose data directory belongs to another node, refuses to start
//! instead of forgetting what it promised.

use anyhow::{ensure, Result};
use std::time::Duration;
use synod_integration_tests::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_synod-test-node");

#[test]
fn a_node_never_starts_over_with_an_empty_acceptor_log() -> Result<()> {
    let mut c = Cluster::start("local-3.toml", BIN)?;
    c.wait_ready("n1")?;
    c.set("n1", "k", "v")?;

    // Setting up a node a second time is refused, running or not.
    let again = c.init_node("n1").unwrap_err().to_string();
    ensure!(again.contains("already exists"), "{again}");

    // The log is lost: the node refuses to start, and says why.
    c.kill("n1")?;
    std::fs::remove_file(c.acceptor_log("n1"))?;
    c.start_node("n1")?;
    let status = c.wait_exit("n1", Duration::from_secs(10))?;
    ensure!(!status.success());
    let log = c.last_log("n1");
    ensure!(log.contains("no acceptor log"), "{log}");
    ensure!(!c.acceptor_log("n1").exists(), "nothing was created");
    // `init` will not paper over the loss either.
    let again = c.init_node("n1").unwrap_err().to_string();
    ensure!(again.contains("already exists"), "{again}");

    // Another node's directory in n1's place is refused too.
    c.kill("n2")?;
    let (n1, n2) = (c.data_dir("n1"), c.data_dir("n2"));
    std::fs::remove_dir_all(&n1)?;
    copy_dir(&n2, &n1)?;
    c.start_node("n1")?;
    let status = c.wait_exit("n1", Duration::from_secs(10))?;
    ensure!(!status.success());
    let log = c.last_log("n1");
    ensure!(log.contains("belongs to node n2"), "{log}");

    // A second copy of a running node is refused at the data directory's
    // lock, before it binds a port or touches the log.
    let out = std::process::Command::new(BIN)
        .args(["node", "--config"])
        .arg(&c.config_path)
        .args(["--id", "n3"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "{err}");
    ensure!(err.contains("in use by another running node"), "{err}");

    // The rest of the cluster is unharmed: n3 alone is no majority, so
    // bring n2 back and read the write.
    c.start_node("n2")?;
    c.wait_ready("n2")?;
    ensure!(c.get("n3", "k")?.as_deref() == Some("v"));
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
