//! `skillsandbox audit verify|tail` through the real binary, on logs written with
//! the audit crate's writer.

// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::json;
use skillsandbox_audit::AuditLog;

use crate::common::skillsandbox;

fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for i in 1..=n {
        if i % 2 == 1 {
            log.append(
                "run",
                json!({"trace_id": format!("t{i}"), "skill": {"name": "weather-lookup", "version": "0.1.0"},
                       "termination": "exited", "exit_code": 0,
                       "violations": {"dns_blocked": 1}, "trace_path": "/state/traces/t.json",
                       "session_id": null}),
            )
            .unwrap();
        } else {
            log.append(
                "session",
                json!({"session_id": "s1", "event": "kill", "reason": "budget"}),
            )
            .unwrap();
        }
    }
    (dir, path)
}

fn audit(args: &[&str], log: &Path) -> Output {
    skillsandbox()
        .arg("audit")
        .args(args)
        .arg("--log")
        .arg(log)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verify_intact_log_exits_0() {
    let (_d, path) = log_with(4);
    let o = audit(&["verify"], &path);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).starts_with("OK "), "{}", stdout(&o));
    assert!(stdout(&o).contains("4 records"));
    let o = audit(&["verify", "--json"], &path);
    assert_eq!(o.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["records"], 4);
}

#[test]
fn verify_names_the_edited_record_and_exits_1() {
    let (_d, path) = log_with(4);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"reason\":\"budget\"", "\"reason\":\"manual\""),
    )
    .unwrap();
    let o = audit(&["verify"], &path);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stdout(&o).contains("record 2 (line 2): content does not match"),
        "{}",
        stdout(&o)
    );
    let o = audit(&["verify", "--json"], &path);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["first_bad"]["seq"], 2);
}

#[test]
fn verify_catches_a_removed_tail_unless_told_to_skip_the_head() {
    let (_d, path) = log_with(4);
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&path, format!("{}\n", kept.join("\n"))).unwrap();
    let o = audit(&["verify"], &path);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("record 4 (line 4): missing"),
        "{}",
        stdout(&o)
    );
    let o = audit(&["verify", "--no-head-check"], &path);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn verify_with_anchor() {
    let (_d, path) = log_with(2);
    let last = skillsandbox_audit::tail(&path, 1).unwrap()[0].hash.clone();
    assert_eq!(
        audit(&["verify", "--anchor", &last], &path).status.code(),
        Some(0)
    );
    let other = "f".repeat(64);
    let o = audit(&["verify", "--anchor", &other], &path);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("anchor"));
    assert_eq!(
        audit(&["verify", "--anchor", "xyz"], &path).status.code(),
        Some(2)
    );
}

#[test]
fn verify_missing_log_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.jsonl");
    let o = audit(&["verify"], &path);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope.jsonl"),
        "{o:?}"
    );
}

#[test]
fn env_var_selects_the_log() {
    let (_d, path) = log_with(3);
    let o = skillsandbox()
        .args(["audit", "verify"])
        .env("SKILLSANDBOX_AUDIT_LOG", &path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("3 records"));
}

#[test]
fn tail_shows_recent_records_readably_and_as_json() {
    let (_d, path) = log_with(5);
    let o = audit(&["tail", "-n", "2"], &path);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("#4 ") && lines[0].contains("session"),
        "{out}"
    );
    assert!(lines[0].contains("event=kill"), "{out}");
    assert!(
        lines[1].starts_with("#5 ") && lines[1].contains("weather-lookup 0.1.0 exited exit=0"),
        "{out}"
    );
    assert!(lines[1].contains("violations=dns_blocked=1"), "{out}");

    let o = audit(&["tail", "--json"], &path);
    assert_eq!(o.status.code(), Some(0));
    let records: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(records[4]["seq"], 5);
    assert_eq!(records[4]["prev_hash"], records[3]["hash"]);
}

#[test]
fn help_explains_the_commands() {
    let o = skillsandbox()
        .args(["audit", "verify", "--help"])
        .output()
        .unwrap();
    let help = stdout(&o);
    assert!(
        help.contains("--anchor") && help.contains("record N (line L)"),
        "{help}"
    );
    let o = skillsandbox().args(["audit", "--help"]).output().unwrap();
    assert!(stdout(&o).contains("tail"));
}

#[test]
fn merge_interleaves_three_hosts_by_time_and_finds_the_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (1..=3)
        .map(|h| dir.path().join(format!("host{h}.jsonl")))
        .collect();
    let logs: Vec<AuditLog> = paths.iter().map(|p| AuditLog::open(p).unwrap()).collect();
    // Round robin over the hosts: the merged order is 1,2,3,1,2,3,...
    for i in 0..9 {
        logs[i % 3]
            .append(
                "session",
                json!({"session_id": "s", "event": "alert", "n": i}),
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let merge = |json: bool| {
        let mut c = skillsandbox();
        c.args(["audit", "merge"]).args(&paths);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let o = merge(true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order: Vec<u64> = lines[..9]
        .iter()
        .map(|r| r["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..9).collect::<Vec<u64>>());
    assert_eq!(lines[1]["log_index"], 1);
    assert_eq!(lines[9]["ok"], true);

    // Host 2's second record is edited: its chain breaks there, the merge says so
    // and shows none of host 2's records from that one on.
    let text = std::fs::read_to_string(&paths[1]).unwrap();
    std::fs::write(&paths[1], text.replace("\"n\":4", "\"n\":40")).unwrap();
    let o = merge(false);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[2] BROKEN")
            && err.contains("host2.jsonl: record 2 (line 2): content does not match"),
        "{err}"
    );
    assert!(err.contains("[1] OK") && err.contains("[3] OK"), "{err}");
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(!out.contains("\"n\":40") && !out.contains("n=40"), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("[2] #1 "), "{out}");
}
