//! Tests of [`ServerSession`] against a real SQLite store in a temp directory.

use super::*;
use skillsandbox_audit::{self as audit, Severity, Trace, TraceSkill, Violation, ViolationKind};
use skillsandbox_policy::{parse_policy, LoadedPolicy, Store};
use skillsandbox_runtime::session::{Admission, RefusalKind, STOP_POLL};
use skillsandbox_runtime::Captured;

const POLICY: &str = "session: {max_runs: 3}\n\
    budget: {cost_usd: 1.0, alert_at: 0.5, on_exceed: alert}\n\
    violations: {thresholds: {dns_blocked: 2}, on_threshold: alert}\n\
    prices: {m: {input_per_mtok: 1000000, output_per_mtok: 0}}\n";

fn engine(dir: &std::path::Path) -> SessionEngine {
    let policy = LoadedPolicy {
        policy: parse_policy(POLICY, "p.yaml").unwrap(),
        source: Some(dir.join("p.yaml")),
    };
    let store = Store::open(dir.join("sessions.db")).unwrap();
    SessionEngine::new(policy, store, Some(dir.join("audit.jsonl")))
}

fn outcome(exit_code: i32, termination: Termination, kinds: &[ViolationKind]) -> RunOutcome {
    let trace = Trace {
        schema_version: audit::TRACE_SCHEMA_VERSION,
        trace_id: audit::new_trace_id(),
        run_id: "r".into(),
        session_id: Some("s1".into()),
        skill: TraceSkill {
            name: "s".into(),
            version: "1.0.0".into(),
            manifest_path: None,
            manifest_sha256: None,
        },
        command: vec!["true".into()],
        tier: "container".into(),
        started_at: audit::now(),
        finished_at: audit::now(),
        duration_ms: 1500,
        exit_code,
        termination,
        enforcement: Vec::new(),
        usage: Default::default(),
        network: Default::default(),
        events: Vec::new(),
        policy_violations: kinds
            .iter()
            .map(|k| Violation {
                kind: *k,
                severity: Severity::Medium,
                detail: "x".into(),
                time: audit::now(),
                mitre: None,
            })
            .collect(),
        setup_error: None,
        tool_call_id: None,
        timings: Vec::new(),
    };
    RunOutcome {
        exit_code,
        termination,
        stdout: Captured::default(),
        stderr: Captured::default(),
        trace,
        trace_path: None,
        error: None,
        hint: None,
        warnings: Vec::new(),
        session: None,
        observed: Vec::new(),
    }
}

/// What the run entry does around a run: admission, then accounting of its trace.
fn admit(s: &ServerSession) -> Result<Admission, Refusal> {
    let r = s.engine().admit(s.id());
    if let Err(refusal) = &r {
        s.note_refused(refusal);
    }
    r
}

fn accounted(
    s: &ServerSession,
    a: &Admission,
    mut o: RunOutcome,
    stopped: Option<&str>,
) -> RunOutcome {
    o.session = Some(
        s.run_session()
            .account(a, &o.trace, stopped.map(str::to_owned)),
    );
    o
}

#[test]
fn unrecorded_session_is_open_with_nothing_used() {
    let dir = tempfile::tempdir().unwrap();
    let s = ServerSession::new("s0".into(), engine(dir.path()));
    let st = s.status().unwrap();
    assert!(!st.recorded);
    assert_eq!(st.status.id, "s0");
    assert_eq!(st.status.state, SessionState::Open);
    assert_eq!(st.status.runs.started, 0);
    assert_eq!(st.status.limits.runs_left, Some(3));
    assert_eq!(st.status.budgets.len(), 1);
    assert_eq!(st.status.budgets[0].left, 1.0);
    assert_eq!(st.status.next_run_refused, None);
    assert!(st.policy_source.unwrap().ends_with("p.yaml"));
    // Reading the status creates nothing.
    assert!(s.engine().status("s0").unwrap().is_none());
    assert!(s.startup_note().contains("skillsandbox session kill s0"));
    let v = serde_json::to_value(s.status().unwrap()).unwrap();
    for key in [
        "id",
        "state",
        "runs",
        "violations",
        "budgets",
        "kill_reason",
        "server",
    ] {
        assert!(v.get(key).is_some(), "{key}: {v}");
    }
}

#[test]
fn runs_are_admitted_accounted_and_refused_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let s = ServerSession::new("s1".into(), engine(dir.path()));

    let a = admit(&s).unwrap();
    {
        let _g = s.start_run();
        assert_eq!(s.running(), 1);
        let kinds = [ViolationKind::DnsBlocked, ViolationKind::DnsBlocked];
        let o = accounted(&s, &a, outcome(3, Termination::Exited, &kinds), None);
        let acc = s.finish_run(&o, false);
        assert_eq!(acc.warnings, Vec::<String>::new());
        assert_eq!(acc.session.len(), 1, "{:?}", acc.session);
        assert!(acc.session[0].contains("alert"), "{:?}", acc.session);
        assert!(acc.session[0].contains("dns_blocked"), "{:?}", acc.session);
    }
    assert_eq!(s.running(), 0);

    let r = s
        .report_usage(&UsageReport::Tokens {
            model: "m".into(),
            input: 0,
            output: 0,
        })
        .unwrap();
    assert_eq!(r.cost.usd, 0.0);
    assert!(r.decisions.is_empty());
    let r = s.report_usage(&UsageReport::Usd(0.6)).unwrap();
    assert_eq!(r.total_cost_usd, Some(0.6));
    assert_eq!(r.budget.as_ref().map(|b| b.name.as_str()), Some("cost_usd"));
    assert_eq!(r.decisions.len(), 1);
    assert!(r.session[0].contains("budget cost_usd"), "{:?}", r.session);
    assert!(r.text().contains("session total $0.600000"), "{}", r.text());

    // A run in flight sees a kill made through another engine (another process).
    let a2 = admit(&s).unwrap();
    let g = s.start_run();
    let mut stop = s.engine().stop_check(&a2);
    assert_eq!(stop(), None);
    let other = engine(dir.path());
    other.kill("s1", "operator test").unwrap();
    std::thread::sleep(STOP_POLL);
    assert!(stop().unwrap().contains("operator test"));
    let why = stop().unwrap();
    let o = accounted(&s, &a2, outcome(137, Termination::Killed, &[]), Some(&why));
    let acc = s.finish_run(&o, true);
    assert_eq!(acc.session.len(), 1, "{:?}", acc.session);
    assert!(acc.session[0].starts_with("stopped by the session kill switch"));
    drop(g);

    let refusal = admit(&s).unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Killed);
    assert!(refusal.reason.contains("operator test"));

    let st = s.status().unwrap();
    assert!(st.recorded);
    assert_eq!(st.status.state, SessionState::Killed);
    assert_eq!(st.status.kill_reason.as_deref(), Some("operator test"));
    assert_eq!((st.status.runs.started, st.status.runs.finished), (2, 2));
    assert_eq!(st.status.violations.get("dns_blocked"), Some(&2));
    assert_eq!(st.status.usage.cost_usd, 0.6);
    assert_eq!(st.status.usage.wall_seconds, 3.0);
    let c = &st.server;
    assert_eq!(
        (
            c.runs,
            c.failed_runs,
            c.cancelled_runs,
            c.refused_runs,
            c.running
        ),
        (2, 2, 1, 1, 0)
    );
    assert!(st.text().contains("killed: operator test"), "{}", st.text());
    assert!(
        st.text()
            .contains("budget cost_usd: 0.6 used of 1, 0.4 left (on_exceed: alert)"),
        "{}",
        st.text()
    );
    assert!(s.startup_note().contains("KILLED"));
}
