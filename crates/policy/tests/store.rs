//! The session store on a real SQLite file and on a real PostgreSQL server, one
//! suite for both (`<test>::sqlite`, `<test>::postgres`): admission, accounting,
//! decisions, kill and reset, concurrency across connections and hosts, and
//! persistence across reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use skillsandbox_policy::{
    parse_policy, Action, KillWatch, RefusalKind, RunUsage, SessionState, Store, StoreLocation,
    UsageReport,
};

/// Where a test's store lives; [`Backend::open`] is one more process (or host)
/// opening the same store.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Option<Backend> {
        support::pg::database().map(Backend::Postgres)
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite(d) => {
                format!("sqlite:{}", d.path().join("state/sessions.db").display())
            }
            Backend::Postgres(u) => u.clone(),
        }
    }

    fn open(&self) -> Store {
        Store::open_location(&StoreLocation::parse(&self.url()).unwrap()).unwrap()
    }
}

/// One test per backend, both running the same body.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Backend::sqlite());
            }
            #[test]
            fn postgres() {
                if let Some(b) = super::Backend::postgres() {
                    super::$name(&b);
                }
            }
        }
    )*};
}

both!(
    max_runs_counts_at_admission,
    budget_block_then_reset,
    threshold_kill_trips_the_switch_and_the_watch_sees_it,
    kill_persists_across_reopen_and_keeps_the_first_reason,
    costs_count_against_the_budget,
    concurrent_connections_never_lose_an_update_or_overshoot,
    concurrent_supervisors_never_overspend_a_budget,
    a_kill_reaches_every_watch_within_a_second,
    an_unrenewed_lease_makes_a_run_lost_and_its_late_usage_counts_once,
);

/// A watch may learn of a kill a moment later (PostgreSQL: its own thread).
fn wait_killed(w: &KillWatch) -> Option<String> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Some(r) = w.killed().unwrap() {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn usage(cpu_ms: u64, violations: &[(&str, u64)]) -> RunUsage {
    RunUsage {
        trace_id: "t".into(),
        cpu_ms,
        wall_ms: 10,
        egress_bytes: 7,
        exit_code: 0,
        termination: "exited".into(),
        violations: violations
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect(),
    }
}

fn an_unrenewed_lease_makes_a_run_lost_and_its_late_usage_counts_once(b: &Backend) {
    let p = parse_policy("store: {lease: 3s}\n", "p.yaml").unwrap();
    let s = b.open();
    let dead = s.admit("lease", &p).unwrap().unwrap();
    let alive = s.admit("lease", &p).unwrap().unwrap();
    let runs = |s: &Store| {
        let (_, t) = s.get("lease").unwrap().unwrap();
        (t.runs_started, t.runs_finished, t.runs_lost)
    };
    assert_eq!(runs(&s), (2, 0, 0));
    // One supervisor renews its run; the other has died and never does.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(3500) {
        std::thread::sleep(Duration::from_millis(500));
        assert!(s.renew_lease(&alive, &p).unwrap());
    }
    // Another host sees the dead one's run lost, the renewed one still running.
    let other = b.open();
    assert_eq!(runs(&other), (2, 0, 1));
    // The lost run is still counted as started (max_runs), and if its usage does
    // arrive after all, it counts once and the run is no longer lost.
    other.finish_run(&dead, &usage(40, &[]), &p).unwrap();
    other.finish_run(&dead, &usage(40, &[]), &p).unwrap();
    s.finish_run(&alive, &usage(2, &[]), &p).unwrap();
    assert_eq!(runs(&other), (2, 2, 0));
    assert_eq!(other.get("lease").unwrap().unwrap().1.cpu_ms, 42);
    // A finished run's lease is not renewed.
    assert!(!s.renew_lease(&alive, &p).unwrap());
}

#[test]
fn files_are_private_and_wal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("state/sessions.db")).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(s.path()), 0o600);
    let conn = rusqlite::Connection::open(s.path()).unwrap();
    let jm: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "wal");
}

fn max_runs_counts_at_admission(b: &Backend) {
    let s = b.open();
    let p = parse_policy("session: {max_runs: 2}\n", "p").unwrap();
    let a1 = s.admit("s1", &p).unwrap().unwrap();
    let _a2 = s.admit("s1", &p).unwrap().unwrap();
    // Neither run finished, the third is refused already.
    let r = s.admit("s1", &p).unwrap().unwrap_err();
    assert_eq!(r.kind, RefusalKind::MaxRuns);
    assert!(r.reason.contains("2 of 2"), "{}", r.reason);
    s.finish_run(&a1, &usage(1, &[]), &p).unwrap();
    // Accounting twice never counts twice.
    s.finish_run(&a1, &usage(1, &[]), &p).unwrap();
    let (_, t) = s.get("s1").unwrap().unwrap();
    assert_eq!((t.runs_started, t.runs_finished, t.cpu_ms), (2, 1, 1));
    // Another session is independent.
    assert!(s.admit("s2", &p).unwrap().is_ok());
}

fn budget_block_then_reset(b: &Backend) {
    let s = b.open();
    let p = parse_policy("budget: {cpu_seconds: 1, on_exceed: block}\n", "p").unwrap();
    let a = s.admit("b", &p).unwrap().unwrap();
    let acc = s.finish_run(&a, &usage(700, &[]), &p).unwrap();
    assert_eq!(acc.decisions.len(), 0);
    let a = s.admit("b", &p).unwrap().unwrap();
    let acc = s.finish_run(&a, &usage(200, &[]), &p).unwrap();
    assert_eq!(acc.decisions.len(), 1);
    assert_eq!(acc.decisions[0].action, Action::Alert);
    let a = s.admit("b", &p).unwrap().unwrap();
    let acc = s.finish_run(&a, &usage(200, &[]), &p).unwrap();
    assert_eq!(acc.decisions[0].action, Action::Block);
    assert_eq!(acc.killed, None);
    let r = s.admit("b", &p).unwrap().unwrap_err();
    assert_eq!(r.kind, RefusalKind::Budget);
    let row = s.reset("b").unwrap();
    assert_eq!((row.state, row.epoch), (SessionState::Open, 1));
    let (_, t) = s.get("b").unwrap().unwrap();
    assert_eq!(t.cpu_ms, 0);
    assert!(s.admit("b", &p).unwrap().is_ok());
}

fn threshold_kill_trips_the_switch_and_the_watch_sees_it(b: &Backend) {
    let s = b.open();
    let p = parse_policy(
        "violations: {thresholds: {syscall_blocked: 2}, on_threshold: kill}\n",
        "p",
    )
    .unwrap();
    let long = s.admit("k", &p).unwrap().unwrap();
    let watch = s.watch_target().open("k", Some(long.kill_count)).unwrap();
    assert_eq!(watch.killed().unwrap(), None);
    let a = s.admit("k", &p).unwrap().unwrap();
    let acc = s
        .finish_run(&a, &usage(1, &[("syscall_blocked", 1)]), &p)
        .unwrap();
    assert_eq!(acc.killed, None);
    let a = s.admit("k", &p).unwrap().unwrap();
    let acc = s
        .finish_run(&a, &usage(1, &[("syscall_blocked", 1)]), &p)
        .unwrap();
    let reason = acc.killed.unwrap();
    assert!(reason.contains("syscall_blocked 2 of 2"), "{reason}");
    assert!(wait_killed(&watch).unwrap().contains("syscall_blocked"));
    let r = s.admit("k", &p).unwrap().unwrap_err();
    assert_eq!(r.kind, RefusalKind::Killed);
    // A reset reopens, but a run admitted before the kill stays stopped.
    s.reset("k").unwrap();
    assert!(watch.killed().unwrap().is_some());
    assert!(s.admit("k", &p).unwrap().is_ok());
    // Its late accounting lands in the old epoch and decides nothing.
    let acc = s
        .finish_run(&long, &usage(1, &[("syscall_blocked", 5)]), &p)
        .unwrap();
    assert!(acc.decisions.is_empty());
    assert_eq!(
        s.get("k")
            .unwrap()
            .unwrap()
            .1
            .violations
            .get("syscall_blocked"),
        None
    );
}

fn kill_persists_across_reopen_and_keeps_the_first_reason(b: &Backend) {
    let p = parse_policy("", "p").unwrap();
    {
        let s = b.open();
        let k = s.kill("x", "operator said so").unwrap();
        assert!(k.newly);
        let k = s.kill("x", "again").unwrap();
        assert!(!k.newly);
        assert_eq!(k.reason, "operator said so");
    }
    let s = b.open();
    let r = s.admit("x", &p).unwrap().unwrap_err();
    assert_eq!(r.kind, RefusalKind::Killed);
    assert!(r.reason.contains("operator said so"));
    assert!(s.reset("nope").is_err());
    assert!(s.admit("bad id!", &p).is_err());
}

fn costs_count_against_the_budget(b: &Backend) {
    let s = b.open();
    let p = parse_policy(
        "budget: {cost_usd: 1, on_exceed: kill}\nprices: {m: {input_per_mtok: 1000000, output_per_mtok: 0}}\n",
        "p",
    )
    .unwrap();
    let e = skillsandbox_policy::price_report(
        &UsageReport::Tokens {
            model: "m".into(),
            input: 1,
            output: 0,
        },
        &p,
    )
    .unwrap();
    assert_eq!(e.usd, 1.0);
    let acc = s.add_cost("c", &e, &p).unwrap();
    assert!(acc.killed.unwrap().contains("cost_usd"));
    assert_eq!(
        s.admit("c", &p).unwrap().unwrap_err().kind,
        RefusalKind::Killed
    );
}

fn concurrent_connections_never_lose_an_update_or_overshoot(b: &Backend) {
    let url = b.url();
    let p = parse_policy("session: {max_runs: 12}\n", "p").unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, p, barrier) = (url.clone(), p.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = Store::open_location(&StoreLocation::parse(&url).unwrap()).unwrap();
                barrier.wait();
                let mut admitted = 0;
                for _ in 0..2 {
                    if let Ok(a) = s.admit("shared", &p).unwrap() {
                        s.finish_run(&a, &usage(3, &[("dns_blocked", 1)]), &p)
                            .unwrap();
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 12);
    let s = b.open();
    let (_, t) = s.get("shared").unwrap().unwrap();
    assert_eq!((t.runs_started, t.runs_finished, t.cpu_ms), (12, 12, 36));
    assert_eq!(t.violations["dns_blocked"], 12);
    assert_eq!(t.egress_bytes, 84);
}

/// N supervisors (each its own store connection, as separate hosts have) start
/// runs at once against one CPU budget: usage is never lost, and once the recorded
/// spend reaches the budget no supervisor gets another run in.
fn concurrent_supervisors_never_overspend_a_budget(b: &Backend) {
    let p = parse_policy("budget: {cpu_seconds: 1, on_exceed: block}\n", "p").unwrap();
    let n = 6;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, p, barrier) = (b.url(), p.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = Store::open_location(&StoreLocation::parse(&url).unwrap()).unwrap();
                barrier.wait();
                let (mut admitted, mut refused) = (0u64, 0u64);
                for _ in 0..10 {
                    match s.admit("budget", &p).unwrap() {
                        Ok(a) => {
                            // Each run spends 100 ms of CPU.
                            s.finish_run(&a, &usage(100, &[]), &p).unwrap();
                            admitted += 1;
                        }
                        Err(r) => {
                            assert_eq!(r.kind, RefusalKind::Budget, "{}", r.reason);
                            refused += 1;
                        }
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let (mut admitted, mut refused) = (0, 0);
    for h in handles {
        let (a, r) = h.join().unwrap();
        admitted += a;
        refused += r;
    }
    let (_, t) = b.open().get("budget").unwrap().unwrap();
    // Every admitted run's usage is there.
    assert_eq!((t.runs_started, t.runs_finished), (admitted, admitted));
    assert_eq!(t.cpu_ms, admitted * 100);
    assert_eq!(admitted + refused, 60);
    // A budget counts recorded usage: a run is admitted only while the recorded
    // spend is under 1 s, so at most the n - 1 runs in flight on the other
    // supervisors can land past it — never more, however the hosts interleave.
    assert!(
        (10..10 + n as u64).contains(&admitted),
        "admitted {admitted}, cpu_ms {}",
        t.cpu_ms
    );
}

/// Three watchers (three supervisors' stop checks) on one session: a kill from a
/// fourth connection reaches all three; prints how long it took.
fn a_kill_reaches_every_watch_within_a_second(b: &Backend) {
    let s = b.open();
    let p = parse_policy("", "p").unwrap();
    let a = s.admit("fleet", &p).unwrap().unwrap();
    let stores: Vec<Store> = (0..3).map(|_| b.open()).collect();
    let watches: Vec<KillWatch> = stores
        .iter()
        .map(|st| st.watch_target().open("fleet", Some(a.kill_count)).unwrap())
        .collect();
    // Let the PostgreSQL watches connect and LISTEN.
    std::thread::sleep(Duration::from_millis(500));
    for w in &watches {
        assert_eq!(w.killed().unwrap(), None);
    }
    let t = Instant::now();
    s.kill("fleet", "operator: stop everywhere").unwrap();
    let mut pending: Vec<usize> = (0..3).collect();
    let mut latencies = Vec::new();
    while !pending.is_empty() && t.elapsed() < Duration::from_secs(10) {
        pending.retain(|i| match watches[*i].killed().unwrap() {
            Some(r) => {
                assert!(r.contains("stop everywhere"), "{r}");
                latencies.push(t.elapsed());
                false
            }
            None => true,
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "kill latency ({}): {:?}",
        s.backend(),
        latencies.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    assert!(pending.is_empty(), "watches {pending:?} never saw the kill");
    // Generous bound: the issue asks for 1 s; fail only well past it.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// The PostgreSQL kill arrives by `NOTIFY`, not by the fallback poll: with the poll
/// set to a minute, a watch still sees a kill from another connection at once. (It
/// fails if the kill sends no notice or the watch does not `LISTEN`.)
#[test]
fn a_postgres_kill_is_delivered_by_notify_not_by_the_poll() {
    let Some(b) = Backend::postgres() else { return };
    let s = b.open();
    let p = parse_policy("", "p").unwrap();
    let a = s.admit("notify", &p).unwrap().unwrap();
    let watcher = b.open();
    let w = watcher
        .watch_target()
        .with_poll(Duration::from_secs(60))
        .open("notify", Some(a.kill_count))
        .unwrap();
    // The first read happens right after LISTEN; wait for it, then kill.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.killed().unwrap(), None);
    let t = Instant::now();
    b.open().kill("notify", "operator: notify").unwrap();
    let seen = wait_killed(&w);
    eprintln!("kill by NOTIFY seen after {:?}", t.elapsed());
    assert!(seen.is_some_and(|r| r.contains("operator: notify")));
}

/// The database restarts under an open store: operations fail as unreachable (so
/// callers retry rather than give up), then the store reconnects by itself, and a
/// retried accounting counts once.
#[test]
fn a_postgres_restart_is_unreachable_then_reconnected_and_counts_once() {
    let Some(c) = support::pg::private_cluster("restart") else {
        return;
    };
    let s = Store::open_postgres(&c.url("postgres")).unwrap();
    let p = parse_policy("", "p.yaml").unwrap();
    let a = s.admit("r", &p).unwrap().unwrap();
    c.stop_server().unwrap();
    let e = s
        .finish_run(&a, &usage(5, &[("dns_blocked", 1)]), &p)
        .unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    let e = s.admit("r", &p).unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    c.start_server().unwrap();
    s.finish_run(&a, &usage(5, &[("dns_blocked", 1)]), &p)
        .unwrap();
    // The same accounting again (its commit's answer lost, say): no double count.
    s.finish_run(&a, &usage(5, &[("dns_blocked", 1)]), &p)
        .unwrap();
    let (_, t) = s.get("r").unwrap().unwrap();
    assert_eq!((t.runs_started, t.runs_finished, t.cpu_ms), (1, 1, 5));
    assert_eq!(t.violations_total(), 1);
    // A bad request is not "unreachable".
    assert!(!s.admit("bad id!", &p).unwrap_err().is_unreachable());
}

/// `sslmode=verify-full` (or `require`) with the server's CA: the store runs over
/// TLS (the server says so), the kill watch too; the wrong CA, or TLS asked of a
/// server without it, is an error — never a plaintext fallback.
#[test]
fn postgres_over_tls_verifies_the_server_and_never_falls_back() {
    let Some(c) = support::pg::private_tls_cluster("tls") else {
        return;
    };
    let ca = c.ca_pem();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        c.url("postgres"),
        ca.display()
    );
    let s = Store::open_location(&StoreLocation::parse(&url).unwrap()).unwrap();
    let p = parse_policy("", "p.yaml").unwrap();
    s.admit("tls", &p).unwrap().unwrap();
    let w = s.watch_target().open("tls", Some(0)).unwrap();
    // The server's own view: the store's and the watch's connections are both
    // encrypted (the watch connects from its own thread: wait for it).
    let mut admin = postgres::Client::connect(&c.url("postgres"), postgres::NoTls).unwrap();
    let t = Instant::now();
    let ssl = loop {
        let rows = admin
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'skillsandbox'",
                &[],
            )
            .unwrap();
        let ssl: Vec<bool> = rows.iter().map(|r| r.get(0)).collect();
        if ssl.len() >= 2 || t.elapsed() > Duration::from_secs(5) {
            break ssl;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ssl.len() == 2 && ssl.iter().all(|x| *x), "{ssl:?}");
    s.kill("tls", "over tls").unwrap();
    assert_eq!(wait_killed(&w).as_deref(), Some("over tls"));

    // Another CA: the certificate does not verify, and nothing connects.
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("wrong.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&wrong, params.self_signed(&key).unwrap().pem()).unwrap();
    let bad = format!(
        "{}?sslmode=require&sslrootcert={}",
        c.url("postgres"),
        wrong.display()
    );
    let e = Store::open_location(&StoreLocation::parse(&bad).unwrap()).unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // An unreadable CA file is a clear error naming it.
    let missing = format!(
        "{}?sslmode=require&sslrootcert=/nonexistent.pem",
        c.url("postgres")
    );
    let e = Store::open_location(&StoreLocation::parse(&missing).unwrap()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
    // A CA without asking for TLS is refused rather than ignored.
    let e = Store::open_location(
        &StoreLocation::parse(&format!(
            "{}?sslrootcert={}",
            c.url("postgres"),
            ca.display()
        ))
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("sslmode"), "{e}");

    // TLS asked of a server without it: refused, not downgraded.
    let Some(plain) = support::pg::database() else {
        return;
    };
    let e = Store::open_location(
        &StoreLocation::parse(&format!(
            "{plain}?sslmode=require&sslrootcert={}",
            ca.display()
        ))
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("server does not support TLS"), "{e}");
}

/// One PostgreSQL store used by many threads at once (the MCP server's runs) opens
/// several connections instead of queueing on one, keeps at most a few idle, and
/// every admission and accounting still counts exactly.
#[test]
fn one_postgres_store_pools_connections_across_threads() {
    let Some(url) = support::pg::database() else {
        return;
    };
    let s = Arc::new(Store::open_postgres(&url).unwrap());
    let p = Arc::new(parse_policy("", "p.yaml").unwrap());
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, p, start) = (s.clone(), p.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..15 {
                    let a = s.admit("pool", &p).unwrap().unwrap();
                    s.finish_run(&a, &usage(1, &[]), &p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (_, t) = s.get("pool").unwrap().unwrap();
    assert_eq!((t.runs_started, t.runs_finished, t.cpu_ms), (120, 120, 120));
    // The server's view of this database's skillsandbox connections: more than one
    // was used, and no more than the pool keeps are left open.
    let (base, db) = url.rsplit_once('/').unwrap();
    let mut admin =
        postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).unwrap();
    let open: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE application_name = 'skillsandbox' AND datname = $1",
            &[&db],
        )
        .unwrap()
        .get(0);
    assert!((2..=4).contains(&open), "{open} connections open");
}
