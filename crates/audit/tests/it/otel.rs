//! OTLP/HTTP export against a receiver this test starts on loopback: it parses the
//! HTTP request and the OTLP/JSON body the way a collector would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use skillsandbox_audit::otel::{export_run_span_to, OtlpConfig};
use skillsandbox_audit::{violation, Severity, Trace, ViolationKind};

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// Accepts one HTTP/1.1 request on 127.0.0.1, answers with `status`, and hands
/// the parsed request back.
fn receiver(status: &'static str) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap().to_owned();
        let path = parts.next().unwrap().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        (&stream).write_all(answer.as_bytes()).unwrap();
        tx.send(Request {
            method,
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap(),
        })
        .unwrap();
    });
    (format!("http://{addr}"), rx)
}

fn trace() -> Trace {
    let mut t: Trace = serde_json::from_value(serde_json::json!({
        "schema_version": 1, "trace_id": "3f6c9a54-2d0e-4b8e-9a51-8f0c1d2e3b4a",
        "run_id": "run-1", "session_id": "sess-9",
        "skill": {"name": "weather-lookup", "version": "0.1.0"},
        "command": ["python3", "main.py"], "tier": "container",
        "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:01.500Z",
        "duration_ms": 1500, "exit_code": 124, "termination": "timeout", "enforcement": [],
        "usage": {"cpu_user_ms": 1, "cpu_system_ms": 1, "stdout_bytes": 0, "stderr_bytes": 0,
                  "stdout_truncated": false, "stderr_truncated": false},
        "network": {},
        "events": [{"time": "2026-01-01T00:00:01.400Z", "kind": "cgroup_killed", "detail": "3 tasks"}]
    }))
    .unwrap();
    t.policy_violations = vec![
        violation(
            ViolationKind::DnsBlocked,
            Severity::Medium,
            "A attacker.example",
            None,
        ),
        violation(
            ViolationKind::Timeout,
            Severity::Low,
            "wall clock 1 s",
            None,
        ),
    ];
    t
}

fn config(endpoint: String) -> OtlpConfig {
    OtlpConfig::from_vars(|name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("authorization=Bearer%20t0k".to_owned()),
        _ => None,
    })
    .unwrap()
    .unwrap()
}

fn attrs(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
        .collect()
}

#[test]
fn receiver_gets_the_run_span_with_violation_events() {
    let (endpoint, rx) = receiver("200 OK");
    export_run_span_to(&trace(), &config(endpoint)).unwrap();
    let req = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["authorization"], "Bearer t0k");

    let rs = &req.body["resourceSpans"][0];
    assert_eq!(
        attrs(&rs["resource"]["attributes"])["service.name"]["stringValue"],
        "skillsandbox"
    );
    let span = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(span["name"], "skillsandbox.run");
    assert_eq!(span["traceId"], "3f6c9a542d0e4b8e9a518f0c1d2e3b4a");
    assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
    assert_eq!(span["startTimeUnixNano"], "1767225600000000000");
    assert_eq!(span["endTimeUnixNano"], "1767225601500000000");
    assert_eq!(span["status"]["code"], 2);
    let a = attrs(&span["attributes"]);
    assert_eq!(a["skill.name"]["stringValue"], "weather-lookup");
    assert_eq!(a["skillsandbox.exit_code"]["intValue"], "124");
    assert_eq!(a["skillsandbox.termination"]["stringValue"], "timeout");
    assert_eq!(a["skillsandbox.session_id"]["stringValue"], "sess-9");
    assert_eq!(a["skillsandbox.violations"]["intValue"], "2");

    let events = span["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    let dns = attrs(&events[0]["attributes"]);
    assert_eq!(events[0]["name"], "skillsandbox.violation");
    assert_eq!(dns["violation.kind"]["stringValue"], "dns_blocked");
    assert_eq!(dns["violation.detail"]["stringValue"], "A attacker.example");
    assert_eq!(dns["mitre.technique_id"]["stringValue"], "T1071.004");
    assert_eq!(
        attrs(&events[1]["attributes"])["violation.kind"]["stringValue"],
        "timeout"
    );
    assert_eq!(events[2]["name"], "skillsandbox.cgroup_killed");
    assert_eq!(events[2]["timeUnixNano"], "1767225601400000000");
}

#[test]
fn collector_error_is_reported() {
    let (endpoint, rx) = receiver("503 Service Unavailable");
    let err = export_run_span_to(&trace(), &config(endpoint)).unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn unreachable_collector_fails_fast() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = export_run_span_to(&trace(), &config(format!("http://127.0.0.1:{port}")));
    assert!(err.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn export_run_span_reads_the_standard_variables() {
    // The environment is per process: a child exports, the parent receives.
    if std::env::var_os("SKILLSANDBOX_AUDIT_TEST_OTEL_CHILD").is_some() {
        skillsandbox_audit::export_run_span(&trace()).unwrap();
        return;
    }
    let run_child = |envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "otel::export_run_span_reads_the_standard_variables",
        ])
        .env("SKILLSANDBOX_AUDIT_TEST_OTEL_CHILD", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.status().unwrap().success()
    };
    let (endpoint, rx) = receiver("200 OK");
    let traces_endpoint = format!("{endpoint}/custom/path");
    assert!(run_child(&[(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        &traces_endpoint
    )]));
    let req = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.path, "/custom/path");
    // Unset: off, and still a success.
    assert!(run_child(&[]));
}
