//! Config overrides from the environment, as the README, `config.rs` and
//! `configs/local-3.toml` document them: `SYNOD_<KEY>` for a top-level key,
//! `SYNOD_<SECTION>__<KEY>` for a key of a table.

use anyhow::{ensure, Result};
use std::time::Duration;
use synod_integration_tests::{repo_root, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_synod-test-node");

/// `check-config` validates the config after the overrides: an invalid
/// override must be refused like an invalid file.
#[test]
fn documented_env_override_is_applied_before_validation() -> Result<()> {
    let config = repo_root().join("configs/local-3.toml");
    for (var, want) in [
        ("SYNOD_LIMITS__SNAPSHOT_EVERY", "snapshot_every"),
        ("SYNOD_TIMING__TICK_MS", "tick_ms"),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .env(var, "0")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{var}=0: {} {}", out.status, err.trim());
        ensure!(
            out.status.code() == Some(2) && err.contains(want),
            "{var}=0 was not applied: {}, stderr {err:?}",
            out.status
        );
    }
    Ok(())
}

/// End to end: a snapshot interval set from the environment takes effect.
#[test]
fn snapshot_interval_from_the_environment_takes_effect() -> Result<()> {
    let c = Cluster::start_with_env(
        "local-3.toml",
        BIN,
        &[("SYNOD_LIMITS__SNAPSHOT_EVERY", "100")],
    )?;
    c.wait_ready("n1")?;
    for i in 0..300 {
        c.set("n1", &format!("e{i}"), "x")?;
    }
    let snapshot = Cluster::eventually(Duration::from_secs(5), || {
        let s = c.status("n1")?;
        let snap: u64 = s.get("snapshot").and_then(|v| v.parse().ok()).unwrap_or(0);
        ensure!(snap > 0, "n1 has no snapshot after 300 slots: {s:?}");
        Ok(snap)
    })?;
    eprintln!("n1 snapshot slot {snapshot}");
    Ok(())
}
