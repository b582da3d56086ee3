//! `synod inspect` shows what a node keeps on disk, read-only, and names
//! the file and offset of corruption.

use anyhow::{ensure, Result};
use std::process::Command;
use synod_integration_tests::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_synod-test-node");

fn inspect(dir: &std::path::Path) -> Result<(Option<i32>, String)> {
    let out = Command::new(BIN)
        .args(["inspect", "--data-dir"])
        .arg(dir)
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn inspect_reports_state_and_corruption() -> Result<()> {
    let mut c = Cluster::start("local-3.toml", BIN)?;
    c.wait_ready("n1")?;
    for i in 0..20 {
        c.set("n2", &format!("i{i}"), "x")?;
    }
    for id in ["n1", "n2", "n3"] {
        c.kill(id)?;
    }
    let dir = c.data_dir("n1");
    let log = c.acceptor_log("n1");
    let before = std::fs::read(&log)?;
    let (code, text) = inspect(&dir)?;
    ensure!(code == Some(0), "{text}");
    for want in [
        "promised ballot: (",
        "accepted slots: 0..=",
        "checksums: ok",
        "replica snapshot: none",
        "identity: node n1 of cluster",
    ] {
        ensure!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    ensure!(std::fs::read(&log)? == before, "inspect changed the log");

    let mut bad = before.clone();
    bad[12 + 8 + 2] ^= 0xff;
    std::fs::write(&log, &bad)?;
    let (code, text) = inspect(&dir)?;
    ensure!(code == Some(1), "{text}");
    ensure!(
        text.contains("BAD") && text.contains("acceptor.log") && text.contains("offset 12"),
        "{text}"
    );
    Ok(())
}

#[test]
fn inspect_of_a_missing_directory_fails_and_creates_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let typo = root.path().join("no-such-node");
    let out = Command::new(BIN)
        .args(["inspect", "--data-dir"])
        .arg(&typo)
        .output()?;
    ensure!(out.status.code() == Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("is not a directory"), "{err}");
    ensure!(!typo.exists(), "inspect created {}", typo.display());

    // An existing directory without a replica/ subdirectory stays as it is.
    let (code, text) = inspect(root.path())?;
    ensure!(code == Some(0), "{text}");
    ensure!(text.contains("replica snapshot: none"), "{text}");
    ensure!(
        !root.path().join("replica").exists(),
        "inspect created replica/"
    );
    Ok(())
}
