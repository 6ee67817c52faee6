//! Sessions end to end through the real binary: admission refusals (exit 3), budgets
//! spent by real measurements, violation thresholds and `session kill` stopping live
//! sandboxes of the session within a second, persistence, reset, concurrency, and
//! kill webhooks on a loopback server. Each test has its own store, audit log,
//! state and config directories.

// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self, yaml: &str) -> PathBuf {
        let p = self.path("policy.yaml");
        std::fs::write(&p, yaml).unwrap();
        p
    }

    fn cmd(&self) -> Command {
        let mut c = skillsandbox();
        c.env("SKILLSANDBOX_SESSION_DB", self.path("sessions.db"))
            .env("SKILLSANDBOX_AUDIT_LOG", self.path("audit.jsonl"))
            .env("XDG_STATE_HOME", self.path("state"))
            // No operator policy from the host leaks into the test.
            .env("XDG_CONFIG_HOME", self.path("config"));
        c
    }

    /// `exec --session ID [--policy P] <extra> -- argv`.
    fn exec(
        &self,
        session: &str,
        policy: Option<&PathBuf>,
        extra: &[&str],
        argv: &[&str],
    ) -> Command {
        let mut c = self.cmd();
        c.args(["exec", "-q", "--session", session]);
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        c.args(extra).arg("--").args(argv);
        c
    }

    fn show(&self, session: &str, policy: Option<&PathBuf>) -> Value {
        let mut c = self.cmd();
        c.args(["session", "show", session, "--json"]);
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Whether this host can run sandboxes; a failure under
    /// `SKILLSANDBOX_TEST_REQUIRE=full`.
    fn sandbox_works(&self) -> bool {
        let o = self
            .cmd()
            .args(["exec", "-q", "--", "true"])
            .output()
            .unwrap();
        if o.status.code() == Some(0) {
            return true;
        }
        let why = String::from_utf8_lossy(&o.stderr);
        assert!(!require_full(), "sandbox unavailable: {why}");
        eprintln!("skipping: this host cannot run sandboxes: {why}");
        false
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A sandbox that prints the host clock every 20 ms until it dies; the lines are
/// collected as they arrive.
struct Heartbeat {
    child: Child,
    beats: Arc<Mutex<Vec<f64>>>,
    trace: PathBuf,
}

const BEAT: &str =
    "import time\nwhile True:\n    print(time.time(), flush=True)\n    time.sleep(0.02)";

impl Heartbeat {
    fn start(env: &Env, session: &str, policy: Option<&PathBuf>) -> Heartbeat {
        let trace = env.path(&format!("{session}-long.json"));
        let mut c = env.exec(
            session,
            policy,
            &["--timeout", "60", "--trace-output", trace.to_str().unwrap()],
            &["python3", "-u", "-c", BEAT],
        );
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let beats = Arc::new(Mutex::new(Vec::new()));
        let b = beats.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(t) = line.trim().parse::<f64>() {
                    b.lock().unwrap().push(t);
                }
            }
        });
        let hb = Heartbeat {
            child,
            beats,
            trace,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while hb.beats.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the long sandbox never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        hb
    }

    /// Waits (bounded) for the sandbox's process to exit; its code and last beat.
    fn finish(mut self) -> (Option<i32>, f64, Value, String) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the long sandbox did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let last = *self.beats.lock().unwrap().last().unwrap();
        let trace: Value = serde_json::from_slice(&std::fs::read(&self.trace).unwrap()).unwrap();
        (status.code(), last, trace, err)
    }
}

/// `2026-11-22T06:36:50.456Z` → Unix seconds.
fn unix_seconds(rfc3339: &str) -> f64 {
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    // Days from civil (Howard Hinnant).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

#[test]
fn unix_seconds_helper_is_right() {
    assert_eq!(unix_seconds("1970-01-02T00:00:01.500Z"), 86_401.5);
    assert_eq!(unix_seconds("2024-03-01T00:00:00.000Z"), 1_709_251_200.0);
}

#[test]
fn invalid_policy_is_exit_2_with_file_line_column() {
    let env = Env::new();
    let p = env.policy("budget:\n  cpu_secs: 1\n");
    let o = env.exec("s", Some(&p), &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let e = stderr(&o);
    assert!(
        e.contains("policy.yaml:2:3: budget.cpu_secs: unknown key `cpu_secs`"),
        "{e}"
    );
    assert!(e.contains("did you mean `cpu_seconds`?"), "{e}");
    let o = env
        .cmd()
        .args(["session", "policy", "--policy"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn schema_and_policy_commands() {
    let env = Env::new();
    let o = env.cmd().args(["session", "schema"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(schema["properties"]["budget"].is_object());
    let p = env.policy("session: {max_runs: 3}\n");
    let o = env
        .cmd()
        .args(["session", "policy", "--policy"])
        .arg(&p)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["policy"]["session"]["max_runs"], 3);
    // No file anywhere: no limits.
    let o = env.cmd().args(["session", "policy"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["source"], Value::Null);
}

#[test]
fn max_runs_refuses_the_next_run_with_exit_3() {
    let env = Env::new();
    if !env.sandbox_works() {
        return;
    }
    let p = env.policy("session:\n  max_runs: 2\n");
    for _ in 0..2 {
        let o = env.exec("mr", Some(&p), &[], &["true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
    }
    let o = env.exec("mr", Some(&p), &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("max_runs reached (2 of 2 runs started)"), "{e}");
    let o = env
        .exec("mr", Some(&p), &["--json"], &["true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["refused"]["kind"], "max_runs");
    let st = env.show("mr", Some(&p));
    assert_eq!(st["runs"]["started"], 2);
    assert_eq!(st["runs"]["finished"], 2);
    let refused = env
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "session" && r["body"]["event"] == "refused")
        .count();
    assert_eq!(refused, 2);
}

#[test]
fn a_busy_skill_spends_the_cpu_budget_and_the_next_run_is_refused() {
    let env = Env::new();
    if !env.sandbox_works() {
        return;
    }
    // 0.5 s of CPU: a busy loop gets that within 3 s even on a loaded machine.
    let p = env.policy("budget:\n  cpu_seconds: 0.5\n  on_exceed: block\n");
    let busy = ["python3", "-c", "while True: pass"];
    let o = env
        .exec("cpu", Some(&p), &["--timeout", "3"], &busy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(124), "{o:?}");
    let e = stderr(&o);
    assert!(
        e.contains("session cpu: block: budget cpu_seconds spent"),
        "{e}"
    );
    let o = env.exec("cpu", Some(&p), &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stderr(&o).contains("budget cpu_seconds spent"),
        "{}",
        stderr(&o)
    );
    let st = env.show("cpu", Some(&p));
    assert_eq!(st["budgets"][0]["name"], "cpu_seconds");
    assert_eq!(st["budgets"][0]["spent"], true);
    assert!(st["usage"]["cpu_seconds"].as_f64().unwrap() >= 0.5);
    assert_eq!(st["runs"]["started"], 1);
    let spent = env
        .audit_records()
        .into_iter()
        .any(|r| r["body"]["event"] == "budget_spent" && r["body"]["rule"] == "budget.cpu_seconds");
    assert!(spent);
}

#[test]
fn a_violation_threshold_kills_a_live_sandbox_of_the_session_within_a_second() {
    let env = Env::new();
    if !env.sandbox_works() {
        return;
    }
    let p =
        env.policy("violations:\n  thresholds:\n    syscall_blocked: 1\n  on_threshold: kill\n");
    let long = Heartbeat::start(&env, "vt", Some(&p));
    let unshare = "import ctypes; ctypes.CDLL(None).unshare(0x10000000)";
    let o = env
        .exec("vt", Some(&p), &[], &["python3", "-c", unshare])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stderr(&o).contains("kill: violation threshold reached: syscall_blocked 1 of 1"));
    let (code, last_beat, trace, err) = long.finish();
    assert_eq!(code, Some(137), "{err}");
    assert_eq!(trace["termination"], "killed");
    assert!(err.contains("stopped: session vt killed"), "{err}");
    let st = env.show("vt", Some(&p));
    assert_eq!(st["state"], "killed");
    assert_eq!(st["violations"]["syscall_blocked"], 1);
    let killed_at = unix_seconds(st["killed_at"].as_str().unwrap());
    assert!(
        last_beat <= killed_at + 1.0,
        "the sandbox lived {:.3} s past the kill",
        last_beat - killed_at
    );
    let o = env.exec("vt", Some(&p), &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn session_kill_from_another_process_stops_a_run_and_survives_until_reset() {
    let env = Env::new();
    if !env.sandbox_works() {
        return;
    }
    let long = Heartbeat::start(&env, "op", None);
    let o = env
        .cmd()
        .args(["session", "kill", "op", "--reason", "operator test"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("session op killed: operator test"));
    let (code, last_beat, trace, _) = long.finish();
    assert_eq!(code, Some(137));
    assert_eq!(trace["termination"], "killed");
    let st = env.show("op", None);
    let killed_at = unix_seconds(st["killed_at"].as_str().unwrap());
    assert!(
        last_beat <= killed_at + 1.0,
        "lived {:.3} s past the kill",
        last_beat - killed_at
    );

    // Every later process refuses, with the reason.
    let o = env.exec("op", None, &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("session was killed (operator test)"),
        "{}",
        stderr(&o)
    );
    // A second kill keeps the first reason.
    let o = env
        .cmd()
        .args(["session", "kill", "op", "-r", "again"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("already killed: operator test"));

    let o = env.cmd().args(["session", "reset", "op"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = env.exec("op", None, &[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let st = env.show("op", None);
    assert_eq!(
        (st["state"].as_str(), st["resets"].as_u64()),
        (Some("open"), Some(1))
    );
    assert_eq!(st["runs"]["started"], 1);

    let events: Vec<String> = env
        .audit_records()
        .iter()
        .filter(|r| r["kind"] == "session")
        .map(|r| r["body"]["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["kill", "refused", "reset"]);
    let o = env
        .cmd()
        .args(["audit", "verify", "--log"])
        .arg(env.path("audit.jsonl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn eight_concurrent_runs_account_exactly_and_never_overshoot() {
    let env = Env::new();
    if !env.sandbox_works() {
        return;
    }
    let spawn_eight = |session: &str, policy: Option<&PathBuf>| -> Vec<Option<i32>> {
        let children: Vec<Child> = (0..8)
            .map(|_| {
                env.exec(session, policy, &[], &["true"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|mut c| c.wait().unwrap().code())
            .collect()
    };
    let codes = spawn_eight("c8", None);
    assert!(codes.iter().all(|c| *c == Some(0)), "{codes:?}");
    let st = env.show("c8", None);
    assert_eq!(st["runs"]["started"], 8);
    assert_eq!(st["runs"]["finished"], 8);
    assert!(st["usage"]["wall_seconds"].as_f64().unwrap() > 0.0);

    let p = env.policy("session: {max_runs: 5}\n");
    let codes = spawn_eight("c5", Some(&p));
    let ok = codes.iter().filter(|c| **c == Some(0)).count();
    let refused = codes.iter().filter(|c| **c == Some(3)).count();
    assert_eq!((ok, refused), (5, 3), "{codes:?}");
    assert_eq!(env.show("c5", Some(&p))["runs"]["started"], 5);
}

/// Accepts one request on `listener` and returns it (head and body).
fn serve_one(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&req).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed early");
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8(req).unwrap()
    })
}

#[test]
fn a_webhook_on_loopback_receives_the_kill_notice() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_one(listener);
    let p = env.policy(&format!(
        "kill_switch:\n  notify: [\"http://127.0.0.1:{port}/hook\"]\n"
    ));
    let o = env
        .cmd()
        .args([
            "session",
            "kill",
            "wh",
            "--reason",
            "webhook test",
            "--policy",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let req = server.join().unwrap();
    assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
    let body: Value = serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["session"], "wh");
    assert_eq!(body["reason"], "webhook test");
    assert_eq!(body["counts"]["runs"], 0);
    assert!(body["counts"]["violations"].is_object());
}

#[test]
fn a_failing_webhook_never_delays_or_prevents_the_kill() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let p = env.policy(&format!(
        "kill_switch:\n  notify: [\"http://127.0.0.1:{port}/\"]\n"
    ));
    let t = Instant::now();
    let o = env
        .cmd()
        .args(["session", "kill", "wf", "--policy"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(stderr(&o).contains(&format!("kill notice to http://127.0.0.1:{port}/ failed")));
    assert_eq!(env.show("wf", None)["state"], "killed");
}
