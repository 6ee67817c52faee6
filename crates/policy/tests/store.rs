//! The session store on a real SQLite file: admission, accounting, decisions, kill
//! and reset, concurrency across connections, and persistence across reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use skillsandbox_policy::{
    parse_policy, Action, KillWatch, RefusalKind, RunUsage, SessionState, Store, UsageReport,
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("state/sessions.db")).unwrap();
    (dir, s)
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

#[test]
fn files_are_private_and_wal() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, s) = store();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(s.path()), 0o600);
    let conn = rusqlite::Connection::open(s.path()).unwrap();
    let jm: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "wal");
}

#[test]
fn max_runs_counts_at_admission() {
    let (_d, s) = store();
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

#[test]
fn budget_block_then_reset() {
    let (_d, s) = store();
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

#[test]
fn threshold_kill_trips_the_switch_and_the_watch_sees_it() {
    let (_d, s) = store();
    let p = parse_policy(
        "violations: {thresholds: {syscall_blocked: 2}, on_threshold: kill}\n",
        "p",
    )
    .unwrap();
    let long = s.admit("k", &p).unwrap().unwrap();
    let watch = KillWatch::open(s.path(), "k", Some(long.kill_count)).unwrap();
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
    assert!(watch.killed().unwrap().unwrap().contains("syscall_blocked"));
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

#[test]
fn kill_persists_across_reopen_and_keeps_the_first_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let p = parse_policy("", "p").unwrap();
    {
        let s = Store::open(&path).unwrap();
        let k = s.kill("x", "operator said so").unwrap();
        assert!(k.newly);
        let k = s.kill("x", "again").unwrap();
        assert!(!k.newly);
        assert_eq!(k.reason, "operator said so");
    }
    let s = Store::open(&path).unwrap();
    let r = s.admit("x", &p).unwrap().unwrap_err();
    assert_eq!(r.kind, RefusalKind::Killed);
    assert!(r.reason.contains("operator said so"));
    assert!(s.reset("nope").is_err());
    assert!(s.admit("bad id!", &p).is_err());
}

#[test]
fn costs_count_against_the_budget() {
    let (_d, s) = store();
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

#[test]
fn concurrent_connections_never_lose_an_update_or_overshoot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let p = parse_policy("session: {max_runs: 12}\n", "p").unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (path, p, barrier) = (path.clone(), p.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = Store::open(&path).unwrap();
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
    let s = Store::open(&path).unwrap();
    let (_, t) = s.get("shared").unwrap().unwrap();
    assert_eq!((t.runs_started, t.runs_finished, t.cpu_ms), (12, 12, 36));
    assert_eq!(t.violations["dns_blocked"], 12);
    assert_eq!(t.egress_bytes, 84);
}
