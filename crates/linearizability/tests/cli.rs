//! `synod-lincheck`: its exit codes are its interface to a harness.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const LINEARIZABLE: &str = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"}}
{"type":"ok","process":0,"id":0,"result":{"f":"write"}}
{"type":"invoke","process":1,"id":1,"op":{"f":"read","key":"x"}}
{"type":"ok","process":1,"id":1,"result":{"f":"read","value":"1"}}
{"type":"invoke","process":1,"id":2,"op":{"f":"write","key":"y","value":"2"}}
{"type":"info","process":1,"id":2}
"#;

const STALE: &str = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"}}
{"type":"ok","process":0,"id":0,"result":{"f":"write"}}
{"type":"invoke","process":1,"id":1,"op":{"f":"read","key":"x"}}
{"type":"ok","process":1,"id":1,"result":{"f":"read","value":null}}
"#;

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("synod-lincheck-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod-lincheck"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn synod-lincheck");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait");
    (
        status.code().expect("exited"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn linearizable_history_exits_0_with_per_key_stats() {
    let file = TempFile::new("ok.jsonl", LINEARIZABLE);
    let path = file.0.to_string_lossy().into_owned();
    let (code, out, err) = run(&[&path], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"x\""), "{out}");
    assert!(out.contains("\"y\""), "{out}");
    assert!(out.contains("checker time"), "{out}");
    assert!(out.trim_end().ends_with("linearizable"), "{out}");
}

#[test]
fn violation_exits_1_and_explains() {
    let (code, out, err) = run(&["-"], STALE);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("NOT linearizable"), "{out}");
    assert!(out.contains("line 3"), "{out}");
}

#[test]
fn malformed_history_exits_2_naming_the_line() {
    let file = TempFile::new("bad.jsonl", &format!("{LINEARIZABLE}{{\"type\":\"ok\"\n"));
    let path = file.0.to_string_lossy().into_owned();
    let (code, _, err) = run(&[&path], "");
    assert_eq!(code, 2);
    assert!(err.contains("line 7"), "{err}");
}

#[test]
fn exhausted_budget_exits_2() {
    let (code, out, _) = run(&["--max-states", "1", "-"], LINEARIZABLE);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown"), "{out}");
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(run(&[], "").0, 2);
    assert_eq!(run(&["--max-states", "lots", "-"], "").0, 2);
    assert_eq!(run(&["/nonexistent/history.jsonl"], "").0, 2);
}
