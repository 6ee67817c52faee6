//! The server's session: one id for every run this server starts, and the counts an
//! agent (or operator) reads with `session_status`.
//!
//! Counts only what runs reported; the session policy engine (budgets, violation
//! thresholds, kill switch) plugs in at [`SessionLedger::budgets`] and
//! [`SessionLedger::state`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use skillsandbox_audit::{self as audit, Termination};
use skillsandbox_runtime::RunOutcome;

use crate::results::{BudgetStatus, SessionState, SessionStatus};

#[derive(Debug, Default)]
struct Counts {
    runs: u64,
    failed_runs: u64,
    cancelled_runs: u64,
    running: u64,
    violations_by_kind: BTreeMap<String, u64>,
}

/// Per-server session accounting. Shared by every tool call.
#[derive(Debug)]
pub struct SessionLedger {
    id: String,
    started_at: String,
    counts: Mutex<Counts>,
}

/// Marks one run in progress for as long as it lives.
pub struct RunningGuard<'a> {
    ledger: &'a SessionLedger,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.ledger.lock();
        c.running = c.running.saturating_sub(1);
    }
}

impl SessionLedger {
    /// A session with the operator's id, or a fresh `mcp-<uuid>`.
    pub fn new(id: Option<String>) -> SessionLedger {
        SessionLedger {
            id: id.unwrap_or_else(|| format!("mcp-{}", audit::new_trace_id())),
            started_at: audit::now(),
            counts: Mutex::new(Counts::default()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counters stay meaningful even if a holder panicked mid-update.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a run as started; it stays "running" until the guard drops.
    pub fn start_run(&self) -> RunningGuard<'_> {
        let mut c = self.lock();
        c.runs += 1;
        c.running += 1;
        RunningGuard { ledger: self }
    }

    /// Record how a run ended.
    pub fn finish_run(&self, outcome: &RunOutcome, cancelled: bool) {
        let mut c = self.lock();
        if outcome.exit_code != 0 || outcome.termination != Termination::Exited {
            c.failed_runs += 1;
        }
        if cancelled {
            c.cancelled_runs += 1;
        }
        for (kind, n) in outcome.trace.violation_counts() {
            *c.violations_by_kind
                .entry(kind.as_str().to_string())
                .or_insert(0) += n;
        }
    }

    /// Extension point for the session policy engine: whether the session may keep
    /// running. Always active until the engine (kill switch) is wired.
    pub fn state(&self) -> SessionState {
        SessionState::Active
    }

    /// Extension point for the session policy engine: budgets used and left. `None`
    /// until budgets are enforced — never invented numbers.
    pub fn budgets(&self) -> Option<Vec<BudgetStatus>> {
        None
    }

    pub fn status(&self) -> SessionStatus {
        let c = self.lock();
        SessionStatus {
            session_id: self.id.clone(),
            state: self.state(),
            started_at: self.started_at.clone(),
            runs: c.runs,
            failed_runs: c.failed_runs,
            cancelled_runs: c.cancelled_runs,
            running: c.running,
            violations_total: c.violations_by_kind.values().sum(),
            violations_by_kind: c.violations_by_kind.clone(),
            budgets: self.budgets(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillsandbox_audit::{Severity, Trace, TraceSkill, Violation, ViolationKind};
    use skillsandbox_runtime::Captured;

    fn outcome(exit_code: i32, termination: Termination, kinds: &[ViolationKind]) -> RunOutcome {
        let trace = Trace {
            schema_version: audit::TRACE_SCHEMA_VERSION,
            trace_id: "t".into(),
            run_id: "t".into(),
            session_id: None,
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
            duration_ms: 1,
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
        }
    }

    #[test]
    fn counts_runs_failures_cancellations_and_violations() {
        let ledger = SessionLedger::new(Some("s1".into()));
        {
            let _g = ledger.start_run();
            assert_eq!(ledger.status().running, 1);
            ledger.finish_run(&outcome(0, Termination::Exited, &[]), false);
        }
        {
            let _g = ledger.start_run();
            let kinds = [
                ViolationKind::DnsBlocked,
                ViolationKind::DnsBlocked,
                ViolationKind::Timeout,
            ];
            ledger.finish_run(&outcome(124, Termination::Timeout, &kinds), false);
        }
        {
            let _g = ledger.start_run();
            ledger.finish_run(&outcome(137, Termination::Killed, &[]), true);
        }
        let st = ledger.status();
        assert_eq!(st.session_id, "s1");
        assert_eq!(
            (st.runs, st.failed_runs, st.cancelled_runs, st.running),
            (3, 2, 1, 0)
        );
        assert_eq!(st.violations_total, 3);
        assert_eq!(st.violations_by_kind.get("dns_blocked"), Some(&2));
        assert_eq!(st.violations_by_kind.get("timeout"), Some(&1));
        assert_eq!(st.state, SessionState::Active);
        assert!(st.budgets.is_none());
        assert!(SessionLedger::new(None).id().starts_with("mcp-"));
    }
}
