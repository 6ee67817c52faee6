//! The server's session: one id for every run this server starts, joined to the
//! session policy engine (`SessionEngine`: admission, kill watch, accounting,
//! reported cost), plus what only this server process knows (runs in flight,
//! cancelled requests, refusals).
//!
//! The engine's store is the source of truth for the session's state, runs, usage,
//! violations and budgets; it is shared with every other process using the same
//! session id (`skillsandbox session kill ID` from anywhere stops this server's
//! runs). Nothing here is estimated: numbers come from the store or from counts this
//! process made.

use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Serialize;
use skillsandbox_audit::Termination;
use skillsandbox_policy::status::{rfc3339_ms, session_status, BudgetStatus};
use skillsandbox_policy::{Action, SessionRow, Totals};
use skillsandbox_runtime::session::{
    describe_decision, Decision, Refusal, SessionEngine, SessionError, SessionState, SessionStatus,
    UsageReport,
};
use skillsandbox_runtime::{RunOutcome, RunSession};

use crate::log;

/// What this server process counted (the store counts the whole session).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ServerCounts {
    /// When this server process started (RFC 3339 UTC).
    pub started_at: String,
    /// Runs this server started (admitted by the session policy).
    pub runs: u64,
    /// Of those, runs that did not exit 0 on their own.
    pub failed_runs: u64,
    /// Of those, runs killed because their request was cancelled.
    pub cancelled_runs: u64,
    /// Runs the session policy refused before they started.
    pub refused_runs: u64,
    /// Runs in progress right now in this server.
    pub running: u64,
}

/// The result of `session_status`: the session engine's status of this server's
/// session, plus this server process's own counts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SessionStatusResult {
    #[serde(flatten)]
    pub status: SessionStatus,
    /// False when the session store has no record of the session yet (nothing ran
    /// and no usage was reported): the counts are zero and `created_at` /
    /// `opened_at` are this server's start.
    pub recorded: bool,
    /// Where the session policy came from; null: no policy file, no limits (runs
    /// are still counted and the session can still be killed).
    pub policy_source: Option<String>,
    pub server: ServerCounts,
}

impl SessionStatusResult {
    pub fn text(&self) -> String {
        let s = &self.status;
        let mut t = format!(
            "session {} ({}): {} run(s) started, {} finished; {} violation(s)",
            s.id,
            state_name(s.state),
            s.runs.started,
            s.runs.finished,
            s.violations_total
        );
        if let Some(why) = &s.kill_reason {
            t.push_str(&format!("\nkilled: {why}"));
        }
        for (k, n) in &s.violations {
            t.push_str(&format!("\n- {k}: {n}"));
        }
        t.push_str(&format!(
            "\nusage: cpu {:.2} s, wall {:.2} s, egress {} bytes, cost ${:.4}",
            s.usage.cpu_seconds, s.usage.wall_seconds, s.usage.egress_bytes, s.usage.cost_usd
        ));
        if let (Some(max), Some(left)) = (s.limits.max_runs, s.limits.runs_left) {
            t.push_str(&format!("\nmax_runs {max}: {left} left"));
        }
        for b in &s.budgets {
            t.push_str(&format!(
                "\nbudget {}: {} used of {}, {} left (on_exceed: {})",
                b.name,
                short(b.used),
                short(b.limit),
                short(b.left),
                b.on_exceed
            ));
        }
        if s.budgets.is_empty() {
            t.push_str("\nbudgets: none set by the session policy");
        }
        match &s.next_run_refused {
            Some(why) => t.push_str(&format!("\nnext run: refused: {why}")),
            None => t.push_str("\nnext run: admitted"),
        }
        let c = &self.server;
        t.push_str(&format!(
            "\nthis server: {} run(s), {} failed, {} cancelled, {} refused, {} running",
            c.runs, c.failed_runs, c.cancelled_runs, c.refused_runs, c.running
        ));
        t
    }
}

/// A recorded model cost.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CostOut {
    /// The model the tokens were priced for; null for a cost reported in dollars.
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The cost added to the session, in US dollars.
    pub usd: f64,
}

/// The result of `report_usage`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReportUsageResult {
    pub session_id: String,
    /// What was added to the session's cost.
    pub cost: CostOut,
    /// The session's reported cost since it was opened or last reset, after this
    /// report; null if the store could not be read back (see `warnings`).
    pub total_cost_usd: Option<f64>,
    /// The `cost_usd` budget after this report; null when the policy sets none.
    pub budget: Option<BudgetStatus>,
    /// What this report triggered (alerts, blocks, the kill switch); empty: nothing.
    pub decisions: Vec<Decision>,
    /// The decisions the agent should act on, one readable line each.
    pub session: Vec<String>,
    pub warnings: Vec<String>,
}

impl ReportUsageResult {
    pub fn text(&self) -> String {
        let mut t = format!(
            "recorded ${:.6} for session {}",
            self.cost.usd, self.session_id
        );
        if let Some(m) = &self.cost.model {
            t.push_str(&format!(
                " ({m}: {} input, {} output tokens)",
                self.cost.input_tokens.unwrap_or(0),
                self.cost.output_tokens.unwrap_or(0)
            ));
        }
        if let Some(total) = self.total_cost_usd {
            t.push_str(&format!("; session total ${total:.6}"));
        }
        if let Some(b) = &self.budget {
            t.push_str(&format!(" of a ${} budget (${:.6} left)", b.limit, b.left));
        }
        for line in self.session.iter().chain(&self.warnings) {
            t.push('\n');
            t.push_str(line);
        }
        t
    }
}

/// What accounting a finished run produced for its tool result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAccounted {
    /// Decisions with an action the agent is told about, one line each.
    pub session: Vec<String>,
    /// Accounting problems (the store could not be written).
    pub warnings: Vec<String>,
}

#[derive(Debug, Default)]
struct Counts {
    runs: u64,
    failed_runs: u64,
    cancelled_runs: u64,
    refused_runs: u64,
    running: u64,
}

/// This server's session. Shared by every tool call; `Sync`.
#[derive(Debug)]
pub struct ServerSession {
    id: String,
    engine: Arc<SessionEngine>,
    started_at_ms: i64,
    counts: Mutex<Counts>,
    /// `serve --metrics`: fed by every run of this session.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Marks one run in progress for as long as it lives.
pub struct RunningGuard<'a> {
    session: &'a ServerSession,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.session.lock();
        c.running = c.running.saturating_sub(1);
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

/// A measurement for people: at most 4 decimals, no trailing zeros.
fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Open => "open",
        SessionState::Killed => "killed",
    }
}

impl ServerSession {
    /// Session `id` under `engine`'s policy and store.
    pub fn new(id: String, engine: SessionEngine) -> ServerSession {
        ServerSession {
            id,
            engine: Arc::new(engine),
            started_at_ms: now_ms(),
            counts: Mutex::new(Counts::default()),
            metrics: None,
        }
    }

    /// Feed `metrics` with every run and refusal of this session.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> ServerSession {
        self.metrics = Some(metrics);
        self
    }

    /// The Prometheus text for a scrape: this server's counters, and the session
    /// as the store sees it now (blocking: reads the store).
    pub fn metrics_text(&self) -> String {
        let Some(m) = &self.metrics else {
            return String::new();
        };
        let status = match self.engine.status(&self.id) {
            Ok(st) => st,
            Err(e) => {
                log(&format!("metrics: cannot read session {}: {e}", self.id));
                None
            }
        };
        m.render(status.as_ref())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn engine(&self) -> &Arc<SessionEngine> {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counters stay meaningful even if a holder panicked mid-update.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs in progress in this server.
    pub fn running(&self) -> u64 {
        self.lock().running
    }

    /// What a run of this session carries into the run entry, which admits it,
    /// stops it on the kill switch and accounts it.
    pub fn run_session(&self) -> RunSession {
        RunSession::new(Arc::clone(&self.engine), self.id.clone())
    }

    /// A run the session policy refused: counted and logged.
    pub fn note_refused(&self, refusal: &Refusal) {
        self.lock().refused_runs += 1;
        if let Some(m) = &self.metrics {
            m.observe_refusal();
        }
        log(&format!(
            "refused by the session policy: {}",
            refusal.to_string().replace('\n', " ")
        ));
    }

    /// Count a run as running here until the guard drops.
    pub fn start_run(&self) -> RunningGuard<'_> {
        self.lock().running += 1;
        RunningGuard { session: self }
    }

    /// Counts a finished run and turns what its accounting triggered (in
    /// `outcome.session`) into what the agent is told; alerts, blocks and kills
    /// are logged on stderr too.
    pub fn finish_run(&self, outcome: &RunOutcome, cancelled: bool) -> RunAccounted {
        if let Some(m) = &self.metrics {
            m.observe_run(&outcome.trace);
        }
        {
            let mut c = self.lock();
            c.runs += 1;
            if outcome.exit_code != 0 || outcome.termination != Termination::Exited {
                c.failed_runs += 1;
            }
            if cancelled {
                c.cancelled_runs += 1;
            }
        }
        let Some(account) = &outcome.session else {
            return RunAccounted::default();
        };
        let mut session = self.tell(&account.decisions);
        if let Some(why) = &account.stopped_by_session {
            let line = format!("stopped by the session kill switch: {why}");
            log(&line);
            session.insert(0, line);
        }
        let warnings: Vec<String> = account.error.iter().cloned().collect();
        for w in &warnings {
            log(w);
        }
        RunAccounted { session, warnings }
    }

    /// Records model usage (priced by the policy's table, or in dollars) and
    /// carries out what it triggers. Blocking (SQLite).
    pub fn report_usage(&self, report: &UsageReport) -> Result<ReportUsageResult, SessionError> {
        let acc = self.engine.report_usage(&self.id, report)?;
        let session = self.tell(&acc.decisions);
        let mut warnings = Vec::new();
        let (total, budget) = match self.engine.status(&self.id) {
            Ok(Some(st)) => (
                Some(st.usage.cost_usd),
                st.budgets.into_iter().find(|b| b.name == "cost_usd"),
            ),
            Ok(None) => (None, None),
            Err(e) => {
                warnings.push(format!(
                    "the cost was recorded, but the session could not be read back: {e}"
                ));
                (None, None)
            }
        };
        let c = acc.cost;
        log(&format!(
            "report_usage: ${:.6} added to session {}",
            c.usd, self.id
        ));
        Ok(ReportUsageResult {
            session_id: self.id.clone(),
            cost: CostOut {
                model: c.model,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
                usd: c.usd,
            },
            total_cost_usd: total,
            budget,
            decisions: acc.decisions,
            session,
            warnings,
        })
    }

    /// Decisions the caller is told about (alert and above), as lines; logged.
    fn tell(&self, decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.action >= Action::Alert)
            .map(|d| {
                let line = describe_decision(&self.id, d);
                log(&line);
                line
            })
            .collect()
    }

    /// The session as the store has it, plus this server's counts. Blocking.
    pub fn status(&self) -> Result<SessionStatusResult, SessionError> {
        let (status, recorded) = match self.engine.status(&self.id)? {
            Some(st) => (st, true),
            None => (self.unrecorded_status(), false),
        };
        let c = self.lock();
        Ok(SessionStatusResult {
            status,
            recorded,
            policy_source: self
                .engine
                .policy()
                .source
                .as_ref()
                .map(|p| p.display().to_string()),
            server: ServerCounts {
                started_at: rfc3339_ms(self.started_at_ms),
                runs: c.runs,
                failed_runs: c.failed_runs,
                cancelled_runs: c.cancelled_runs,
                refused_runs: c.refused_runs,
                running: c.running,
            },
        })
    }

    /// A session the store has never seen: open (a kill would have created it),
    /// nothing used; evaluated against the policy like any other.
    fn unrecorded_status(&self) -> SessionStatus {
        let row = SessionRow {
            id: self.id.clone(),
            state: SessionState::Open,
            created_at_ms: self.started_at_ms,
            opened_at_ms: self.started_at_ms,
            epoch: 0,
            kill_count: 0,
            killed_at_ms: None,
            kill_reason: None,
        };
        session_status(
            &row,
            &Totals::default(),
            &self.engine.policy().policy,
            now_ms(),
        )
    }

    /// One line for the start-up log: the policy in force and, when the session is
    /// already killed or refusing, why.
    pub fn startup_note(&self) -> String {
        let policy = match &self.engine.policy().source {
            Some(p) => format!("policy {}", p.display()),
            None => "no session policy file (no limits)".to_string(),
        };
        let standing = match self.engine.status(&self.id) {
            Ok(Some(st)) => match (&st.state, &st.next_run_refused) {
                (SessionState::Killed, _) => format!(
                    "; the session is KILLED ({}): every run is refused until `skillsandbox session reset {}`",
                    st.kill_reason.as_deref().unwrap_or("no reason given"),
                    self.id
                ),
                (_, Some(why)) => format!("; runs are refused: {why}"),
                _ => format!("; resuming: {} run(s) so far", st.runs.started),
            },
            Ok(None) => String::new(),
            Err(e) => format!("; the session store cannot be read ({e}): runs will be refused"),
        };
        format!(
            "session {} ({policy}; store {}){standing}; stop it from anywhere with `skillsandbox session kill {}`",
            self.id,
            self.engine.store_path().display(),
            self.id
        )
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
