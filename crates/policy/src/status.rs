//! [`SessionStatus`]: a session's state, usage, violations and what is left of each
//! limit, as `session show`/`list` and the MCP server report it. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::{refusal, Metric, Standing, Totals};
use crate::file::{Action, PolicyFile};
use crate::store::{SessionRow, SessionState};

/// Everything known about one session, under one policy.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SessionStatus {
    pub id: String,
    pub state: SessionState,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When the session was created or last reset; usage counts from here.
    pub opened_at: String,
    pub killed_at: Option<String>,
    pub kill_reason: Option<String>,
    /// How many times the session was reset.
    pub resets: u64,
    pub runs: RunCounts,
    pub usage: UsageTotals,
    /// Violations by kind since the session was opened or reset.
    pub violations: BTreeMap<String, u64>,
    pub violations_total: u64,
    /// One entry per budget the policy sets.
    pub budgets: Vec<BudgetStatus>,
    /// One entry per violation threshold the policy sets.
    pub thresholds: Vec<ThresholdStatus>,
    pub limits: LimitStatus,
    /// Why the next run would be refused; `null` when it would be admitted.
    pub next_run_refused: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RunCounts {
    /// Admitted runs (counted against `max_runs`).
    pub started: u64,
    /// Runs accounted after they ended.
    pub finished: u64,
    /// Started and not accounted yet (running, or lost).
    pub unfinished: u64,
    /// Unfinished and leased: their supervisor is alive and renewing them.
    pub running: u64,
    /// Unfinished, and their supervisor stopped renewing the lease (killed with -9,
    /// crashed, cut off from the store). Accounted after all if it comes back.
    pub lost: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct UsageTotals {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub egress_bytes: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BudgetStatus {
    /// `cpu_seconds`, `wall_seconds`, `egress_bytes` or `cost_usd`.
    pub name: String,
    pub limit: f64,
    pub used: f64,
    /// `limit - used`, never below 0.
    pub left: f64,
    /// `used / limit` (1 or more: spent).
    pub fraction_used: f64,
    pub spent: bool,
    pub on_exceed: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ThresholdStatus {
    /// A violation kind, or `any`.
    pub kind: String,
    pub threshold: u64,
    pub count: u64,
    pub reached: bool,
    pub on_threshold: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LimitStatus {
    pub max_runs: Option<u64>,
    pub runs_left: Option<u64>,
    /// `max_duration` as written (`30m`).
    pub max_duration: Option<String>,
    /// When the session stops admitting runs (RFC 3339 UTC).
    pub expires_at: Option<String>,
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The status of a session from its row and totals, under `policy`, at `now_ms`.
pub fn session_status(
    row: &SessionRow,
    totals: &Totals,
    policy: &PolicyFile,
    now_ms: i64,
) -> SessionStatus {
    let b = &policy.budget;
    let budgets = Metric::ALL
        .iter()
        .filter_map(|m| {
            let limit = m.limit(b)?;
            let used = m.used(totals);
            Some(BudgetStatus {
                name: m.name().to_owned(),
                limit,
                used,
                left: (limit - used).max(0.0),
                fraction_used: if limit > 0.0 { used / limit } else { 1.0 },
                spent: used >= limit,
                on_exceed: b.on_exceed,
            })
        })
        .collect();
    let v = &policy.violations;
    let thresholds = v
        .thresholds
        .iter()
        .map(|(k, n)| {
            let count = totals.violation_count(k);
            ThresholdStatus {
                kind: k.clone(),
                threshold: *n,
                count,
                reached: count >= *n,
                on_threshold: v.on_threshold,
            }
        })
        .collect();
    let standing = Standing {
        killed: (row.state == SessionState::Killed).then(|| {
            row.kill_reason
                .clone()
                .unwrap_or_else(|| "no reason given".into())
        }),
        opened_at_ms: row.opened_at_ms,
    };
    let s = &policy.session;
    SessionStatus {
        id: row.id.clone(),
        state: row.state,
        created_at: rfc3339_ms(row.created_at_ms),
        opened_at: rfc3339_ms(row.opened_at_ms),
        killed_at: row.killed_at_ms.map(rfc3339_ms),
        kill_reason: row.kill_reason.clone(),
        resets: u64::try_from(row.epoch).unwrap_or(0),
        runs: RunCounts {
            started: totals.runs_started,
            finished: totals.runs_finished,
            unfinished: totals.runs_started.saturating_sub(totals.runs_finished),
            running: totals
                .runs_started
                .saturating_sub(totals.runs_finished)
                .saturating_sub(totals.runs_lost),
            lost: totals.runs_lost,
        },
        usage: UsageTotals {
            cpu_seconds: totals.cpu_ms as f64 / 1000.0,
            wall_seconds: totals.wall_ms as f64 / 1000.0,
            egress_bytes: totals.egress_bytes,
            cost_usd: totals.cost_usd,
        },
        violations: totals.violations.clone(),
        violations_total: totals.violations_total(),
        budgets,
        thresholds,
        limits: LimitStatus {
            max_runs: s.max_runs,
            runs_left: s.max_runs.map(|m| m.saturating_sub(totals.runs_started)),
            max_duration: s.max_duration.map(|d| d.to_string()),
            expires_at: s.max_duration.map(|d| {
                let secs = i64::try_from(d.seconds).unwrap_or(i64::MAX / 1000);
                rfc3339_ms(row.opened_at_ms.saturating_add(secs.saturating_mul(1000)))
            }),
        },
        next_run_refused: refusal(&row.id, policy, &standing, totals, now_ms).map(|r| r.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_budgets_and_limits() {
        let mut p = PolicyFile::default();
        p.session.max_runs = Some(4);
        p.session.max_duration = Some(crate::file::Span { seconds: 60 });
        p.budget.cpu_seconds = Some(2.0);
        p.violations.thresholds.insert("any".into(), 5);
        let row = SessionRow {
            id: "s".into(),
            state: SessionState::Open,
            created_at_ms: 0,
            opened_at_ms: 1_000,
            epoch: 1,
            kill_count: 0,
            killed_at_ms: None,
            kill_reason: None,
        };
        let mut t = Totals {
            runs_started: 3,
            runs_finished: 2,
            cpu_ms: 500,
            ..Totals::default()
        };
        t.violations.insert("dns_blocked".into(), 2);
        let s = session_status(&row, &t, &p, 2_000);
        assert_eq!((s.runs.unfinished, s.runs.running, s.runs.lost), (1, 1, 0));
        assert_eq!(s.limits.runs_left, Some(1));
        assert_eq!(
            s.limits.expires_at.as_deref(),
            Some("1970-01-01T00:01:01.000Z")
        );
        assert_eq!(s.budgets.len(), 1);
        assert_eq!(s.budgets[0].left, 1.5);
        assert_eq!(s.thresholds[0].count, 2);
        assert_eq!(s.next_run_refused, None);
        let s = session_status(&row, &t, &p, 61_000);
        assert!(s.next_run_refused.unwrap().contains("max_duration"));
    }
}
