//! `exec --timings` and the trace's `timings`: every launch phase, on both sides of
//! the launch, on one clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use crate::common::skillsandbox;

/// The phases a container-tier run without egress goes through, supervisor and
/// sandbox side. `exec` spawns its stage before the run starts (warm: the spawn and
/// the stage's own start-up overlap preparing the run), so `spawn_stage` is not one
/// of its phases, and `stage_exec` only when the stage starts up after the run did.
const PHASES: &[&str] = &[
    "tier",
    "declared_paths",
    "lower",
    "seccomp_compile",
    "cgroup_create",
    "cgroup_attach",
    "receive_plan",
    "unshare",
    "write_uid_map",
    "uid_map",
    "fork_init",
    "network",
    "mounts",
    "pivot_root",
    "fork_skill",
    "process",
    "landlock",
    "seccomp",
    "ready",
    "go",
    "skill",
    "teardown",
    "verdict",
];

#[test]
fn exec_timings_name_every_phase_and_add_up_to_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("trace.json");
    let out = skillsandbox()
        .args([
            "exec",
            "-q",
            "--timings",
            "--tier",
            "container",
            "--trace-output",
        ])
        .arg(&trace_path)
        .args(["--", "/bin/sh", "-c", "sleep 0.2"])
        .env("XDG_STATE_HOME", dir.path())
        .env("SKILLSANDBOX_AUDIT_LOG", dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let trace: Value = serde_json::from_slice(&std::fs::read(&trace_path).unwrap()).unwrap();
    let timings = trace["timings"].as_array().expect("timings in the trace");
    let names: Vec<&str> = timings
        .iter()
        .map(|t| t["phase"].as_str().unwrap())
        .collect();
    for p in PHASES {
        assert!(names.contains(p), "phase {p} missing from {names:?}");
        assert!(
            stderr
                .lines()
                .any(|l| l.split_whitespace().next() == Some(p)),
            "phase {p} missing from --timings:\n{stderr}"
        );
    }
    assert!(stderr.contains("record"), "{stderr}");
    let events = trace["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("stage spawned ahead of the launch"))),
        "the trace says the stage was spawned ahead: {events:?}"
    );
    assert!(!names.contains(&"spawn_stage"), "{names:?}");
    // The skill slept 200 ms: that is in its phase, not spread over the others.
    let us = |name: &str| {
        timings
            .iter()
            .find(|t| t["phase"] == name)
            .and_then(|t| t["us"].as_u64())
            .unwrap()
    };
    assert!(us("skill") >= 200_000, "{timings:?}");
    // One clock on both sides: the phases sum to the run's duration (less what
    // happens before the first mark and after the last).
    let total: u64 = timings.iter().map(|t| t["us"].as_u64().unwrap()).sum();
    let duration_us = trace["duration_ms"].as_u64().unwrap() * 1000;
    assert!(
        total <= duration_us + 1000 && total + 5000 >= duration_us,
        "phases sum to {total} us, the run took {duration_us} us: {timings:?}"
    );
}
