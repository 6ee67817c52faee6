//! Many hosts, one session, through the real binary: three supervisors, each with
//! its own state directory, audit log and config (three hosts), share one
//! PostgreSQL session store (`$SKILLSANDBOX_STORE`) on a real server
//! (`crates/policy/tests/support/pg.rs`). The budget holds across them, and a
//! `session kill` on one host stops the sandboxes on all three within a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{require_full, skillsandbox};
use crate::pg;

/// One host: its own directories, the shared store.
struct Host {
    dir: tempfile::TempDir,
    store: String,
}

impl Host {
    fn new(store: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), "session: {max_runs: 6}\n").unwrap();
        Host {
            dir,
            store: store.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = skillsandbox();
        c.env("SKILLSANDBOX_STORE", &self.store)
            .env_remove("SKILLSANDBOX_SESSION_DB")
            .env("SKILLSANDBOX_AUDIT_LOG", self.path("audit.jsonl"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CONFIG_HOME", self.path("config"));
        c
    }

    fn exec(&self, session: &str, argv: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(["exec", "-q", "--timeout", "60", "--session", session])
            .arg("--policy")
            .arg(self.path("policy.yaml"))
            .arg("--")
            .args(argv);
        c
    }

    fn show(&self, session: &str) -> Value {
        self.show_with(session, &self.path("policy.yaml"))
    }

    fn show_with(&self, session: &str, policy: &PathBuf) -> Value {
        let o = self
            .cmd()
            .args(["session", "show", session, "--json", "--policy"])
            .arg(policy)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// Three hosts on one fresh database, or `None` (printed) when the host has no
/// PostgreSQL server or cannot run sandboxes and is not required to.
fn three_hosts() -> Option<Vec<Host>> {
    let url = pg::database()?;
    let hosts: Vec<Host> = (0..3).map(|_| Host::new(&url)).collect();
    let o = hosts[0]
        .cmd()
        .args(["exec", "-q", "--", "true"])
        .output()
        .unwrap();
    if o.status.code() != Some(0) {
        let why = String::from_utf8_lossy(&o.stderr);
        assert!(!require_full(), "sandbox unavailable: {why}");
        eprintln!("skipped: this host cannot run sandboxes: {why}");
        return None;
    }
    Some(hosts)
}

#[test]
fn three_hosts_share_one_budget_and_never_overshoot_it() {
    let Some(hosts) = three_hosts() else { return };
    // Four runs at once on each host, twelve in all, against max_runs: 6.
    let children: Vec<Child> = hosts
        .iter()
        .flat_map(|h| {
            (0..4).map(|_| {
                h.exec("shared", &["true"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
        })
        .collect();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code())
        .collect();
    let ok = codes.iter().filter(|c| **c == Some(0)).count();
    let refused = codes.iter().filter(|c| **c == Some(3)).count();
    assert_eq!((ok, refused), (6, 6), "{codes:?}");
    // Every host sees the same session: six started, six accounted, none lost.
    for h in &hosts {
        let st = h.show("shared");
        assert_eq!(st["runs"]["started"], 6, "{st}");
        assert_eq!(st["runs"]["finished"], 6, "{st}");
    }
    // Each host's own audit log holds its own runs' records and verifies.
    let mut runs = 0;
    for h in &hosts {
        let log = std::fs::read_to_string(h.path("audit.jsonl")).unwrap();
        runs += log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["kind"] == "run" && r["body"]["session_id"] == "shared")
            .count();
        let o = h
            .cmd()
            .args(["audit", "verify", "--log"])
            .arg(h.path("audit.jsonl"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
    }
    assert_eq!(runs, 6);
}

/// A sandbox that prints the host clock every 20 ms until it dies.
const BEAT: &str =
    "import time\nwhile True:\n    print(time.time(), flush=True)\n    time.sleep(0.02)";

struct Beating {
    child: Child,
    last: Arc<Mutex<Option<f64>>>,
}

fn start_beating(h: &Host, session: &str) -> Beating {
    start_beating_with(h, session, &["python3", "-u", "-c", BEAT], "")
}

/// Starts `argv` in a sandbox of `session` on `h`; waits (bounded) for its first
/// line when `first` is not empty.
fn start_beating_with(h: &Host, session: &str, argv: &[&str], first: &str) -> Beating {
    let mut child = h
        .exec(session, argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let last = Arc::new(Mutex::new(None));
    let l = last.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(t) = line.trim().parse::<f64>() {
                *l.lock().unwrap() = Some(t);
            } else {
                *l.lock().unwrap() = Some(0.0);
            }
        }
    });
    if !first.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while last.lock().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the sandbox never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Beating { child, last }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_kill_on_one_host_stops_the_sandboxes_on_all_three_within_a_second() {
    let Some(hosts) = three_hosts() else { return };
    let mut beating: Vec<Beating> = hosts.iter().map(|h| start_beating(h, "fleet")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while beating.iter().any(|b| b.last.lock().unwrap().is_none()) {
        assert!(Instant::now() < deadline, "a sandbox never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let t0 = Instant::now();
    let killed_at = unix_now();
    let o = hosts[1]
        .cmd()
        .args(["session", "kill", "fleet", "--reason", "fleet test"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // The time from the kill command to the last supervisor on the last host gone.
    let mut gone = vec![None; beating.len()];
    let deadline = Instant::now() + Duration::from_secs(15);
    while gone.iter().any(Option::is_none) {
        for (i, b) in beating.iter_mut().enumerate() {
            if gone[i].is_none() {
                if let Some(s) = b.child.try_wait().unwrap() {
                    gone[i] = Some((t0.elapsed(), s.code()));
                }
            }
        }
        if Instant::now() > deadline {
            for b in &mut beating {
                let _ = b.child.kill();
            }
            panic!("a sandbox outlived the kill by 15 s: {gone:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let last_gone = gone.iter().map(|g| g.unwrap().0).max().unwrap();
    eprintln!(
        "fleet kill: last of 3 hosts' sandboxes gone {:.0} ms after `session kill` started ({:?})",
        last_gone.as_secs_f64() * 1000.0,
        gone.iter()
            .map(|g| g.unwrap().0.as_millis())
            .collect::<Vec<_>>()
    );
    for g in &gone {
        assert_eq!(g.unwrap().1, Some(137), "{gone:?}");
    }
    // The sandboxes' own clocks: no beat more than a second after the kill began.
    std::thread::sleep(Duration::from_millis(100));
    for b in &beating {
        let last = b.last.lock().unwrap().unwrap();
        assert!(
            last <= killed_at + 1.0,
            "a sandbox beat {:.3} s after the kill",
            last - killed_at
        );
    }
    assert!(
        last_gone <= Duration::from_secs(1),
        "the last sandbox was gone only after {last_gone:?}"
    );
    // Every host refuses the killed session.
    for h in &hosts {
        let o = h.exec("fleet", &["true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{o:?}");
    }
}

#[test]
fn a_supervisor_killed_with_sigkill_leaves_no_sandbox_and_its_run_is_leased_out() {
    let Some(hosts) = three_hosts() else { return };
    let (h, watcher) = (&hosts[0], &hosts[2]);
    std::fs::write(h.path("policy.yaml"), "store: {lease: 3s}\n").unwrap();
    std::fs::write(watcher.path("policy.yaml"), "store: {lease: 3s}\n").unwrap();
    let marker = format!("lease-{}", std::process::id());
    let script = format!("import time\nprint('{marker}', flush=True)\ntime.sleep(60)");
    let mut b = start_beating_with(h, "leased", &["python3", "-u", "-c", &script], &marker);
    let runs = |st: &Value| {
        (
            st["runs"]["running"].as_u64().unwrap(),
            st["runs"]["lost"].as_u64().unwrap(),
        )
    };
    assert_eq!(runs(&watcher.show("leased")), (1, 0));
    // A live supervisor renews its lease: past one whole lease, still running.
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(runs(&watcher.show("leased")), (1, 0));
    // kill -9 of the supervisor: no chance to account or clean up in user space.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    // The sandbox dies with its supervisor (no stray process of the skill).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        if o.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the skill outlived its supervisor: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another host still sees it running until the lease (3 s) runs out, then lost.
    let t = Instant::now();
    let deadline = t + Duration::from_secs(10);
    loop {
        let st = watcher.show("leased");
        match runs(&st) {
            (0, 1) => break,
            (1, 0) => {}
            other => panic!("unexpected run counts {other:?}: {st}"),
        }
        assert!(
            Instant::now() < deadline,
            "the dead run stayed running: {st}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "lease: the killed supervisor's run was lost {:.1} s after kill -9 (lease 3 s)",
        t.elapsed().as_secs_f64()
    );
    let o = watcher
        .cmd()
        .args(["session", "show", "leased", "--policy"])
        .arg(watcher.path("policy.yaml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 running, 1 lost"),
        "{o:?}"
    );
}

/// Waits (bounded) for `child` to exit; its exit code and stderr.
fn finish(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            return (s.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a run did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_database_restart_mid_run_loses_nothing_and_counts_nothing_twice() {
    let Some(cluster) = pg::private_cluster("restart") else {
        return;
    };
    let h = Host::new(&cluster.url("postgres"));
    let o = h.cmd().args(["exec", "-q", "--", "true"]).output().unwrap();
    if o.status.code() != Some(0) {
        let why = String::from_utf8_lossy(&o.stderr);
        assert!(!require_full(), "sandbox unavailable: {why}");
        return;
    }
    let open = h.path("open.yaml");
    std::fs::write(&open, "store: {unavailable: fail_open_for_running}\n").unwrap();
    let closed = h.path("closed.yaml");
    std::fs::write(&closed, "store: {unavailable: fail_closed}\n").unwrap();
    let marker = format!("restart-{}", std::process::id());
    let run = |session: &str, policy: &PathBuf, secs: u32| {
        let script = format!("import time\ntime.sleep({secs})  # {marker}-{session}");
        h.cmd()
            .args([
                "exec",
                "-q",
                "--timeout",
                "60",
                "--session",
                session,
                "--policy",
            ])
            .arg(policy)
            .args(["--", "python3", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Outlives the outage; ends during it; would run for a minute.
    let long = run("fo", &open, 20);
    let short = run("fo", &open, 3);
    let strict = run("fc", &closed, 60);
    std::thread::sleep(Duration::from_millis(1500));
    let down = Instant::now();
    cluster.stop_server().unwrap();

    // No new run starts while the store is away (fail closed for new runs).
    let o = h
        .cmd()
        .args(["exec", "-q", "--session", "fo", "--policy"])
        .arg(&open)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("session store is unavailable"),
        "{o:?}"
    );
    // fail_closed stops its running sandbox once the store stays unreadable (its
    // supervisor then waits for the store to record the run).
    let deadline = Instant::now() + Duration::from_secs(30);
    let strict_marker = format!("{marker}-fc");
    loop {
        let o = Command::new("pgrep")
            .args(["-f", &strict_marker])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).lines().count() <= 1 {
            // Only the supervisor (whose argv holds the script) is left.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fail_closed sandbox kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "restart: the fail_closed sandbox stopped {:.1} s into the outage",
        down.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(1));
    cluster.start_server().unwrap();
    eprintln!(
        "restart: the database was down {:.1} s",
        down.elapsed().as_secs_f64()
    );

    let (code, err) = finish(strict, Duration::from_secs(30));
    assert_eq!(code, Some(137), "{err}");
    assert!(err.contains("fail closed"), "{err}");
    // fail_open_for_running: both runs went on and ended normally; the one that
    // ended during the outage recorded its usage once the store was back.
    let (code, err) = finish(short, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("retrying"), "{err}");
    let (code, err) = finish(long, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    let st = h.show_with("fo", &open);
    assert_eq!(st["runs"]["started"], 2, "{st}");
    assert_eq!(st["runs"]["finished"], 2, "{st}");
    assert_eq!(st["runs"]["lost"], 0, "{st}");
    let wall = st["usage"]["wall_seconds"].as_f64().unwrap();
    assert!((23.0..30.0).contains(&wall), "wall {wall}: {st}");
    let st = h.show_with("fc", &closed);
    assert_eq!(st["runs"]["finished"], 1, "{st}");
}

#[test]
fn a_run_is_admitted_and_accounted_over_tls_with_the_store_url_from_the_flag() {
    let Some(cluster) = pg::private_tls_cluster("cli-tls") else {
        return;
    };
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url("postgres"),
        cluster.ca_pem().display()
    );
    // The environment names another (unreachable) store: --store wins.
    let h = Host::new("postgres://nobody@127.0.0.1:1/none");
    let o = h
        .cmd()
        .arg("--store")
        .arg(&url)
        .args(["exec", "-q", "--session", "tls", "--", "true"])
        .output()
        .unwrap();
    if o.status.code() == Some(125) {
        assert!(!require_full(), "sandbox unavailable: {o:?}");
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = h
        .cmd()
        .arg("--store")
        .arg(&url)
        .args(["session", "show", "tls", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["runs"]["finished"], 1, "{st}");
    // Without the CA the system roots do not know the server: refused (exit 3, a
    // store that cannot be used admits nothing), never plaintext.
    let o = h
        .cmd()
        .arg("--store")
        .arg(format!("{}?sslmode=require", cluster.url("postgres")))
        .args(["exec", "-q", "--session", "tls", "--", "true"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("certificate") || err.contains("trusted root"),
        "{err}"
    );
}
