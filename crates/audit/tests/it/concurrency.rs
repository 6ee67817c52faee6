//! Concurrent writers (threads in one process, and separate processes) keep the
//! chain valid: exactly one line per append, no interleaving, no forks.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use skillsandbox_audit::{tail, verify, AuditLog};

/// When set, `concurrent_processes_keep_the_chain` acts as one writer process
/// appending to the log at this path instead of orchestrating.
const WRITER_ENV: &str = "SKILLSANDBOX_AUDIT_TEST_WRITER_LOG";
const PER_WRITER: u64 = 25;

fn assert_chain(path: &Path, expected: u64) {
    let r = verify(path).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.records, expected);
    let records = tail(path, usize::MAX).unwrap();
    assert_eq!(records.len() as u64, expected);
    // Every writer's every append is there exactly once.
    let mut ids: Vec<(String, u64)> = records
        .iter()
        .map(|r| {
            (
                r.body["writer"].as_str().unwrap().to_owned(),
                r.body["n"].as_u64().unwrap(),
            )
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, expected);
}

#[test]
fn concurrent_threads_keep_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let log = log.clone();
            s.spawn(move || {
                for n in 0..PER_WRITER {
                    log.append("run", json!({"writer": format!("t{t}"), "n": n}))
                        .unwrap();
                }
            });
        }
    });
    assert_chain(&path, 8 * PER_WRITER);
}

#[test]
fn concurrent_processes_keep_the_chain() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        // Child mode: one writer process.
        let log = AuditLog::open(path).unwrap();
        let me = format!("p{}", std::process::id());
        for n in 0..PER_WRITER {
            log.append("session", json!({"writer": me, "n": n}))
                .unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrency::concurrent_processes_keep_the_chain",
                    "--test-threads=1",
                ])
                .env(WRITER_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer process failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_chain(&path, 4 * PER_WRITER);
}
