//! The glue between runs and the session engine (DESIGN.md §2, "Session engine (may
//! refuse)"): admission before a run, the kill watch while it runs, accounting from
//! its trace after it, and the side effects of decisions — `session` records in the
//! audit log and kill-switch webhooks.
//!
//! Used by the CLI (`run`/`exec --session`, `session ...`) and the MCP server (one
//! session per server). Decisions themselves are made in `skillsandbox-policy`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use skillsandbox_audit::{AuditLog, Trace};
use skillsandbox_policy::notify::{self, Pending};
use skillsandbox_policy::status::session_status;
use skillsandbox_policy::{
    find_policy, price_report, Action, KillWatch, LoadedPolicy, PolicyFileError, PriceError,
    RunUsage, Store, StoreError, Totals, Trigger, Unavailable,
};

pub use skillsandbox_policy::{
    Admission, CostEntry, Decision, Killed, Refusal, RefusalKind, SessionState, SessionStatus,
    UsageReport,
};

/// How often a running sandbox's stop check reads the session state.
pub const STOP_POLL: Duration = Duration::from_millis(200);

/// How long the stop check tolerates an unreadable store before it fails closed
/// (`store.unavailable: fail_closed`, the default).
pub const STORE_UNREADABLE_LIMIT: Duration = Duration::from_secs(10);

/// How long a finished run's supervisor keeps trying to record its usage while the
/// store is unreachable. Recording is idempotent (a run is accounted once), so a
/// retry after an unanswered commit never counts twice.
pub const ACCOUNT_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// Why the session engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    LoadPolicy(#[from] PolicyFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    PriceUsage(#[from] PriceError),
}

/// What [`SessionEngine::report_usage`] recorded and what it triggered.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageAccounted {
    pub cost: CostEntry,
    pub decisions: Vec<Decision>,
}

/// The session store plus the policy in force, and where session records go.
/// `Sync`: one engine can serve many concurrent runs (the MCP server).
#[derive(Debug)]
pub struct SessionEngine {
    policy: LoadedPolicy,
    store: Store,
    audit_log: Option<PathBuf>,
    pending: Mutex<Vec<Pending>>,
}

// One engine serves concurrent runs (the MCP server): keep it shareable.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<SessionEngine>();
};

/// The session a run is charged to (see [`crate::RunRequest::session`]).
#[derive(Debug, Clone)]
pub struct RunSession {
    pub engine: Arc<SessionEngine>,
    pub id: String,
}

/// What the session engine did around one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionAccount {
    pub admission: Admission,
    /// What accounting triggered (alerts, blocks, the kill switch), in order.
    pub decisions: Vec<Decision>,
    /// The session's kill switch stopped this run: its reason.
    pub stopped_by_session: Option<String>,
    /// Accounting failed; the run still happened.
    pub error: Option<String>,
}

impl RunSession {
    pub fn new(engine: Arc<SessionEngine>, id: impl Into<String>) -> Self {
        RunSession {
            engine,
            id: id.into(),
        }
    }

    /// Account a finished run (its trace) and carry out what that triggers.
    pub fn account(
        &self,
        admission: &Admission,
        trace: &Trace,
        stopped_by_session: Option<String>,
    ) -> SessionAccount {
        let (decisions, error) = match self.engine.account(admission, trace) {
            Ok(d) => (d, None),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "could not account the run to session {}: {e}",
                    self.id
                )),
            ),
        };
        SessionAccount {
            admission: admission.clone(),
            decisions,
            stopped_by_session,
            error,
        }
    }
}

/// A fresh session id for a caller that has none (e.g. `serve`): `s-` + 12 hex.
pub fn new_session_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("s-{}", &u[..12])
}

impl SessionEngine {
    /// The policy from `policy` (or the default file, or none) and the store at its
    /// default place (`SKILLSANDBOX_SESSION_DB`, else the state directory). Session
    /// records go to `audit_log`, else the default audit log.
    pub fn open(policy: Option<&Path>, audit_log: Option<PathBuf>) -> Result<Self, SessionError> {
        let policy = find_policy(policy)?;
        let store = Store::open_default()?;
        Ok(Self::new(policy, store, audit_log))
    }

    pub fn new(policy: LoadedPolicy, store: Store, audit_log: Option<PathBuf>) -> Self {
        SessionEngine {
            policy,
            store,
            audit_log,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The policy in force and the file it came from (`None`: no file, no limits).
    pub fn policy(&self) -> &LoadedPolicy {
        &self.policy
    }

    pub fn store_path(&self) -> &Path {
        self.store.path()
    }

    /// Lets a run of `session_id` in (counting it at once), or says why not. A store
    /// that cannot be read refuses (fail closed). Refusals are audited.
    pub fn admit(&self, session_id: &str) -> Result<Admission, Refusal> {
        let result = match self.store.admit(session_id, &self.policy.policy) {
            Ok(r) => r,
            Err(e) => Err(Refusal {
                session: session_id.to_owned(),
                kind: RefusalKind::Store,
                reason: format!("the session store is unavailable, refusing: {e}"),
            }),
        };
        if let Err(r) = &result {
            self.audit(json!({
                "session_id": session_id, "event": "refused",
                "kind": r.kind, "reason": r.reason,
            }));
        }
        result
    }

    /// The `should_stop` callback for an admitted run: cheap to call every 100 ms
    /// (it reads the store at most every [`STOP_POLL`], on its own connection) and
    /// returns the kill reason once the session is killed from any process or host
    /// — also when it was killed and reset since this check was made. If the store
    /// stays unreadable for [`STORE_UNREADABLE_LIMIT`], it stops the run, unless the
    /// policy says `store.unavailable: fail_open_for_running`. While it lives, a
    /// thread renews the run's lease every third of `store.lease`.
    pub fn stop_check(
        self: &Arc<Self>,
        admission: &Admission,
    ) -> impl FnMut() -> Option<String> + Send + 'static {
        let target = self.store.watch_target();
        let id = admission.session_id.clone();
        let baseline = Some(admission.kill_count);
        let fail_open = self.policy.policy.store.unavailable == Unavailable::FailOpenForRunning;
        let lease = LeaseKeeper::start(Arc::clone(self), admission.clone());
        let mut watch: Option<KillWatch> = None;
        let mut last: Option<Instant> = None;
        let mut failing_since: Option<Instant> = None;
        let mut verdict: Option<String> = None;
        move || {
            let _keep = &lease;
            if verdict.is_some() {
                return verdict.clone();
            }
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < STOP_POLL) {
                return None;
            }
            last = Some(now);
            let read = match &watch {
                Some(w) => w.killed(),
                None => match target.open(&id, baseline) {
                    Ok(w) => watch.insert(w).killed(),
                    Err(e) => Err(e),
                },
            };
            match read {
                Ok(Some(reason)) => verdict = Some(format!("session {id} killed: {reason}")),
                Ok(None) => failing_since = None,
                Err(e) => {
                    let since = *failing_since.get_or_insert(now);
                    if since == now {
                        let then = if fail_open {
                            "the run goes on (store.unavailable: fail_open_for_running)"
                        } else {
                            "the run stops if it stays unreadable (store.unavailable: fail_closed)"
                        };
                        eprintln!("skillsandbox: warning: cannot read session {id}: {e}; {then}");
                    }
                    if !fail_open && now.duration_since(since) >= STORE_UNREADABLE_LIMIT {
                        verdict = Some(format!(
                            "session {id}: the session store was unreadable for {} s; stopping (fail closed)",
                            STORE_UNREADABLE_LIMIT.as_secs()
                        ));
                    }
                }
            }
            verdict.clone()
        }
    }

    /// Records what a finished run used (CPU and wall time, egress bytes,
    /// violations by kind — all from its trace), then carries out what that
    /// triggers: alerts, blocks, and the kill switch. Returns the decisions; the
    /// caller shows those with [`Action::Alert`] or more to the user.
    pub fn account(
        &self,
        admission: &Admission,
        trace: &Trace,
    ) -> Result<Vec<Decision>, SessionError> {
        let usage = RunUsage::from_trace(trace);
        let acc = self.retrying_while_unreachable(&admission.session_id, || {
            self.store
                .finish_run(admission, &usage, &self.policy.policy)
        })?;
        self.carry_out(
            &admission.session_id,
            &acc.decisions,
            acc.killed,
            &acc.totals,
            Some(&usage.trace_id),
        );
        Ok(acc.decisions)
    }

    /// `op`, tried again (backing off, for up to [`ACCOUNT_RETRY_LIMIT`]) while the
    /// store cannot be reached; any other error at once.
    fn retrying_while_unreachable<T>(
        &self,
        session_id: &str,
        mut op: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + ACCOUNT_RETRY_LIMIT;
        let mut pause = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match op() {
                Err(e) if e.is_unreachable() && Instant::now() + pause < deadline => {
                    if !warned {
                        warned = true;
                        eprintln!(
                            "skillsandbox: warning: session {session_id}: cannot reach the store to record the run ({e}); retrying for up to {} s",
                            ACCOUNT_RETRY_LIMIT.as_secs()
                        );
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Records model usage for `session_id`, priced by the policy's table (or taken
    /// as is in dollars), then carries out what that triggers.
    pub fn report_usage(
        &self,
        session_id: &str,
        report: &UsageReport,
    ) -> Result<UsageAccounted, SessionError> {
        let cost = price_report(report, &self.policy.policy)?;
        let acc = self
            .store
            .add_cost(session_id, &cost, &self.policy.policy)?;
        self.carry_out(session_id, &acc.decisions, acc.killed, &acc.totals, None);
        Ok(UsageAccounted {
            cost,
            decisions: acc.decisions,
        })
    }

    /// Trips the kill switch: every running sandbox of the session stops within a
    /// second (their stop checks see it), later runs are refused until
    /// [`reset`](Self::reset), the audit log records it and webhooks are told. A
    /// session that was already killed keeps its first reason and is not re-notified.
    pub fn kill(&self, session_id: &str, reason: &str) -> Result<Killed, SessionError> {
        let k = self.store.kill(session_id, reason)?;
        if k.newly {
            self.tripped(session_id, &k.reason, "operator", &k.totals);
        }
        Ok(k)
    }

    /// Reopens a session: open again, usage and counts start over, `max_duration`
    /// counts from now. Audited.
    pub fn reset(&self, session_id: &str) -> Result<SessionStatus, SessionError> {
        let row = self.store.reset(session_id)?;
        self.audit(json!({"session_id": session_id, "event": "reset", "resets": row.epoch}));
        self.status(session_id)?.ok_or_else(|| {
            SessionError::Store(StoreError::UnknownSession {
                id: session_id.to_owned(),
            })
        })
    }

    /// State, usage, violations and what is left of each limit; `None` for a
    /// session the store has never seen.
    pub fn status(&self, session_id: &str) -> Result<Option<SessionStatus>, SessionError> {
        Ok(self
            .store
            .get(session_id)?
            .map(|(row, totals)| session_status(&row, &totals, &self.policy.policy, now_ms())))
    }

    /// Every session the store knows, oldest first.
    pub fn list(&self) -> Result<Vec<SessionStatus>, SessionError> {
        let now = now_ms();
        Ok(self
            .store
            .list()?
            .iter()
            .map(|(row, totals)| session_status(row, totals, &self.policy.policy, now))
            .collect())
    }

    /// Gives kill notices still in flight up to `timeout` to finish (a short-lived
    /// process calls this before exiting; the kill itself never waits for them).
    pub fn wait_notifications(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if let Ok(mut list) = self.pending.lock() {
            for p in list.iter_mut() {
                p.wait(deadline.saturating_duration_since(Instant::now()));
            }
            list.retain(|p| p.in_flight() > 0);
        }
    }

    fn carry_out(
        &self,
        session_id: &str,
        decisions: &[Decision],
        killed: Option<String>,
        totals: &Totals,
        trace_id: Option<&str>,
    ) {
        for d in decisions {
            let event = match d.trigger {
                Trigger::BudgetAlert => "alert",
                Trigger::BudgetSpent => "budget_spent",
                Trigger::Threshold => "threshold",
            };
            self.audit(json!({
                "session_id": session_id, "event": event, "action": d.action,
                "rule": d.rule, "message": d.message, "trace_id": trace_id,
            }));
        }
        if let Some(reason) = killed {
            let by = decisions
                .iter()
                .find(|d| d.action == Action::Kill)
                .map_or("policy", |d| d.rule.as_str());
            self.tripped(session_id, &reason, by, totals);
        }
    }

    /// The side effects of a kill that just happened: audit record, webhooks.
    fn tripped(&self, session_id: &str, reason: &str, by: &str, totals: &Totals) {
        let counts = counts_json(totals);
        self.audit(json!({
            "session_id": session_id, "event": "kill", "reason": reason, "by": by,
            "counts": counts,
        }));
        let urls = &self.policy.policy.kill_switch.notify;
        if urls.is_empty() {
            return;
        }
        let notice = json!({
            "event": "kill",
            "session": session_id,
            "reason": reason,
            "by": by,
            "time": skillsandbox_audit::now(),
            "counts": counts,
        });
        let pending = notify::notify_all(urls, &notice);
        if let Ok(mut list) = self.pending.lock() {
            list.push(pending);
        }
    }

    fn audit(&self, body: serde_json::Value) {
        let log = match &self.audit_log {
            Some(p) => AuditLog::open(p.clone()),
            None => AuditLog::open_default(),
        };
        if let Err(e) = log.and_then(|l| l.append("session", body)) {
            eprintln!(
                "skillsandbox: warning: could not append a session record to the audit log: {e}"
            );
        }
    }
}

impl Drop for SessionEngine {
    /// A process that drops its engine gives kill notices a bounded moment.
    fn drop(&mut self) {
        self.wait_notifications(notify::NOTIFY_TIMEOUT + Duration::from_millis(500));
    }
}

/// Renews an admitted run's lease from its own thread every third of
/// `store.lease` until dropped (the run ended) or the run is accounted. A renewal
/// that fails is tried again at the next tick; the lease runs out only when the
/// supervisor is gone or cut off for a whole lease.
struct LeaseKeeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    fn start(engine: Arc<SessionEngine>, admission: Admission) -> LeaseKeeper {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let every = Duration::from_millis(engine.policy.policy.store.lease.seconds * 1000 / 3);
        // Weak: the thread never keeps the engine (and its Drop, which gives kill
        // notices their moment) alive past the run's own holders.
        let engine = Arc::downgrade(&engine);
        let thread = std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || loop {
                std::thread::park_timeout(every);
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                match engine.store.renew_lease(&admission, &engine.policy.policy) {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => eprintln!(
                        "skillsandbox: warning: session {}: cannot renew the run's lease: {e}",
                        admission.session_id
                    ),
                }
            })
            .ok();
        LeaseKeeper { stop, thread }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // Not joined: a renewal stuck on an unreachable store must not hold up
            // the run's end; the thread exits at its next wake-up.
        }
    }
}

/// The counts a kill notice and a kill record carry.
fn counts_json(t: &Totals) -> serde_json::Value {
    json!({
        "runs": t.runs_started,
        "runs_finished": t.runs_finished,
        "cpu_seconds": t.cpu_ms as f64 / 1000.0,
        "wall_seconds": t.wall_ms as f64 / 1000.0,
        "egress_bytes": t.egress_bytes,
        "cost_usd": t.cost_usd,
        "violations": t.violations,
        "violations_total": t.violations_total(),
    })
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// One line for people about a decision, e.g. for stderr:
/// `session s1: alert: budget cpu_seconds at 85%: 0.85 s used of 1.00 s`.
pub fn describe_decision(session_id: &str, d: &Decision) -> String {
    let tail = match d.action {
        Action::Block => "; later runs of this session are refused",
        Action::Kill => "; kill switch tripped: running sandboxes of this session are stopped",
        Action::Log | Action::Alert => "",
    };
    format!("session {session_id}: {}: {}{tail}", d.action, d.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A private directory removed when dropped (no tempfile dependency here).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("ssb-session-{}", new_session_id()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn engine(yaml: &str, dir: &Path) -> SessionEngine {
        let policy = LoadedPolicy {
            policy: skillsandbox_policy::parse_policy(yaml, "p.yaml").unwrap(),
            source: Some(dir.join("p.yaml")),
        };
        let store = Store::open(dir.join("sessions.db")).unwrap();
        SessionEngine::new(policy, store, Some(dir.join("audit.jsonl")))
    }

    fn session_events(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] == "session")
            .map(|r| r["body"]["event"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn reported_cost_trips_the_kill_switch_end_to_end() {
        let dir = TempDir::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !String::from_utf8_lossy(&req).ends_with('}') {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
            String::from_utf8(req).unwrap()
        });
        let e = engine(
            &format!(
                "budget: {{cost_usd: 1.0, alert_at: 0.5, on_exceed: kill}}\n\
                 prices: {{m: {{input_per_mtok: 1000000, output_per_mtok: 0}}}}\n\
                 kill_switch: {{notify: [\"http://127.0.0.1:{port}/k\"]}}\n"
            ),
            dir.path(),
        );
        let e = Arc::new(e);
        let admission = e.admit("c").unwrap();
        let mut stop = e.stop_check(&admission);
        assert_eq!(stop(), None);

        let r = e.report_usage("c", &UsageReport::Usd(0.6)).unwrap();
        assert_eq!(r.decisions.len(), 1);
        assert_eq!(r.decisions[0].action, Action::Alert);
        let r = e
            .report_usage(
                "c",
                &UsageReport::Tokens {
                    model: "m".into(),
                    input: 1,
                    output: 0,
                },
            )
            .unwrap();
        assert_eq!(r.cost.usd, 1.0);
        assert_eq!(r.decisions[0].action, Action::Kill);
        assert!(describe_decision("c", &r.decisions[0]).contains("kill switch tripped"));

        e.wait_notifications(Duration::from_secs(5));
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /k HTTP/1.1"), "{req}");
        assert!(req.contains("\"session\":\"c\""), "{req}");
        assert!(req.contains("\"by\":\"budget.cost_usd\""), "{req}");

        // The running run's stop check sees the kill (after its poll interval).
        std::thread::sleep(STOP_POLL);
        assert!(stop().unwrap().contains("budget cost_usd spent"));
        let refusal = e.admit("c").unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Killed);
        let unknown = e.report_usage(
            "c",
            &UsageReport::Tokens {
                model: "nope".into(),
                input: 1,
                output: 1,
            },
        );
        assert!(matches!(unknown, Err(SessionError::PriceUsage(_))));

        let st = e.reset("c").unwrap();
        assert_eq!((st.state, st.resets), (SessionState::Open, 1));
        assert!(e.admit("c").is_ok());
        // The stop check of the run admitted before the kill still says stop.
        std::thread::sleep(STOP_POLL);
        assert!(stop().is_some());
        drop(admission);
        assert_eq!(
            session_events(dir.path()),
            ["alert", "budget_spent", "kill", "refused", "reset"]
        );
        assert_eq!(e.list().unwrap().len(), 1);
        assert!(e.status("other").unwrap().is_none());
    }
}
