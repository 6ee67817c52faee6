//! The trace: written atomically (no temp file left, never half), round-trips
//! through JSON, and validates against its published JSON Schema.

use skillsandbox_audit::{
    default_trace_path, new_trace_id, run_record_body, trace_json_schema, trace_sha256, violation,
    write_trace_atomic, ConnectionDecision, ConnectionRecord, DnsDecision, DnsRecord, LayerReport,
    LayerStatus, NetworkTrace, ResourceUsage, Severity, Termination, Trace, TraceEvent, TraceSkill,
    ViolationKind, TRACE_SCHEMA_VERSION,
};

fn sample_trace() -> Trace {
    let now = skillsandbox_audit::now();
    Trace {
        schema_version: TRACE_SCHEMA_VERSION,
        trace_id: new_trace_id(),
        run_id: new_trace_id(),
        session_id: Some("sess-1".into()),
        skill: TraceSkill {
            name: "weather-lookup".into(),
            version: "0.1.0".into(),
            manifest_path: Some("/skills/weather/skillsandbox.yaml".into()),
            manifest_sha256: Some("ab".repeat(32)),
        },
        command: vec!["python3".into(), "main.py".into()],
        tier: "container".into(),
        started_at: now.clone(),
        finished_at: now.clone(),
        duration_ms: 42,
        exit_code: 1,
        termination: Termination::Exited,
        enforcement: vec![LayerReport {
            layer: "seccomp".into(),
            status: LayerStatus::Enforced,
            detail: "default profile".into(),
        }],
        usage: ResourceUsage {
            cpu_user_ms: 10,
            cpu_system_ms: 3,
            memory_peak_bytes: Some(1 << 20),
            pids_peak: None,
            stdout_bytes: 12,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
        },
        network: NetworkTrace {
            dns: vec![DnsRecord {
                time: now.clone(),
                name: "evil.example".into(),
                qtype: "A".into(),
                decision: DnsDecision::Blocked,
                answers: vec![],
            }],
            connections: vec![ConnectionRecord {
                time: now.clone(),
                name: None,
                dest: "203.0.113.7".into(),
                port: 443,
                real_addr: None,
                decision: ConnectionDecision::Blocked,
                reason: "no rule allows 203.0.113.7:443".into(),
                bytes_out: 0,
                bytes_in: 0,
            }],
        },
        events: vec![TraceEvent {
            time: now,
            kind: "landlock_abi".into(),
            detail: "ABI 4".into(),
        }],
        policy_violations: vec![
            violation(
                ViolationKind::DnsBlocked,
                Severity::Medium,
                "A evil.example",
                None,
            ),
            violation(
                ViolationKind::DnsBlocked,
                Severity::Medium,
                "A evil2.example",
                None,
            ),
            violation(
                ViolationKind::NetworkBlocked,
                Severity::High,
                "203.0.113.7:443",
                None,
            ),
        ],
        setup_error: None,
        tool_call_id: None,
        timings: Vec::new(),
    }
}

#[test]
fn atomic_write_leaves_only_the_trace_and_round_trips() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("trace.json");
    let trace = sample_trace();
    write_trace_atomic(&path, &trace).unwrap();
    // Overwrite with a different trace: still one file, the new content.
    let mut second = trace.clone();
    second.exit_code = 0;
    write_trace_atomic(&path, &second).unwrap();
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("trace.json")]);
    let bytes = std::fs::read(&path).unwrap();
    let back: Trace = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, second);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    // The run record's trace_sha256 is the hash of the file as written.
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        trace_sha256(&second).unwrap()
    );
}

#[test]
fn failed_write_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a non-empty directory: rename must fail.
    let path = dir.path().join("trace.json");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"x").unwrap();
    assert!(write_trace_atomic(&path, &sample_trace()).is_err());
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn trace_validates_against_its_schema() {
    let schema = trace_json_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let instance = serde_json::to_value(sample_trace()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // And the schema is not vacuous: a wrong termination and a missing field fail.
    let mut bad = instance.clone();
    bad["termination"] = "exploded".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = instance;
    bad.as_object_mut().unwrap().remove("exit_code");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn run_record_body_summarizes_the_trace() {
    let trace = sample_trace();
    let body = run_record_body(&trace, std::path::Path::new("/tmp/t.json"));
    assert_eq!(body["trace_id"], trace.trace_id.as_str());
    assert_eq!(body["skill"]["name"], "weather-lookup");
    assert_eq!(body["exit_code"], 1);
    assert_eq!(body["termination"], "exited");
    assert_eq!(body["violations"]["dns_blocked"], 2);
    assert_eq!(body["violations"]["network_blocked"], 1);
    assert_eq!(body["trace_path"], "/tmp/t.json");
    assert_eq!(body["trace_sha256"], trace_sha256(&trace).unwrap().as_str());
}

#[test]
fn default_paths_follow_xdg_state_home() {
    // The environment is per process: a child prints the paths it computes.
    if std::env::var_os("SKILLSANDBOX_AUDIT_TEST_PATHS").is_some() {
        println!(
            "PATHS {}|{}|{}",
            default_trace_path("abc-123").display(),
            default_trace_path("../../etc/passwd").display(),
            skillsandbox_audit::default_audit_log_path().display()
        );
        return;
    }
    let run = |envs: &[(&str, &str)], removes: &[&str]| -> Vec<String> {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "trace::default_paths_follow_xdg_state_home",
            "--nocapture",
        ])
        .env("SKILLSANDBOX_AUDIT_TEST_PATHS", "1")
        .env("HOME", "/home/tester");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        for k in removes {
            cmd.env_remove(k);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PATHS "))
            .unwrap();
        line.split('|').map(str::to_owned).collect()
    };
    assert_eq!(
        run(
            &[("XDG_STATE_HOME", "/xdg/state")],
            &["SKILLSANDBOX_AUDIT_LOG"]
        ),
        [
            "/xdg/state/skillsandbox/traces/abc-123.json",
            "/xdg/state/skillsandbox/traces/______etc_passwd.json",
            "/xdg/state/skillsandbox/audit.jsonl",
        ]
    );
    // Unset or relative XDG_STATE_HOME: ~/.local/state (relative values are invalid).
    for xdg in [None, Some("xdg/state")] {
        let envs: Vec<(&str, &str)> = xdg.map(|x| ("XDG_STATE_HOME", x)).into_iter().collect();
        let removes: &[&str] = if xdg.is_none() {
            &["SKILLSANDBOX_AUDIT_LOG", "XDG_STATE_HOME"]
        } else {
            &["SKILLSANDBOX_AUDIT_LOG"]
        };
        let paths = run(&envs, removes);
        assert_eq!(
            paths[0],
            "/home/tester/.local/state/skillsandbox/traces/abc-123.json"
        );
        assert_eq!(
            paths[2],
            "/home/tester/.local/state/skillsandbox/audit.jsonl"
        );
    }
    // SKILLSANDBOX_AUDIT_LOG wins for the log.
    let paths = run(
        &[
            ("XDG_STATE_HOME", "/xdg/state"),
            ("SKILLSANDBOX_AUDIT_LOG", "/x/log"),
        ],
        &[],
    );
    assert_eq!(paths[2], "/x/log");
}
