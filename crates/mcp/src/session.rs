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
