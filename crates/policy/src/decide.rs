//! Decisions, as pure functions of the policy and the session's totals: whether the
//! next run is refused ([`refusal`]), and what a change of usage triggers
//! ([`decisions_after`]: alerts at `alert_at`, spent budgets, reached thresholds).
//!
//! No I/O: the store calls these inside its transactions, the engine carries out
//! what they return.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::file::{Action, Budget, PolicyFile, ANY_VIOLATION};

/// Usage summed over a session since it was opened or last reset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Totals {
    /// Runs admitted (including ones still running or never accounted).
    pub runs_started: u64,
    /// Runs accounted after they ended.
    pub runs_finished: u64,
    /// Runs whose supervisor stopped renewing their lease before accounting them
    /// (killed, crashed, cut off from the store): neither running nor finished.
    pub runs_lost: u64,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub egress_bytes: u64,
    pub cost_usd: f64,
    /// Violations by kind (`syscall_blocked`, ...).
    pub violations: BTreeMap<String, u64>,
}

impl Totals {
    /// All violations together (what `thresholds.any` counts).
    pub fn violations_total(&self) -> u64 {
        self.violations.values().sum()
    }

    /// The count a threshold key refers to: a kind, or `any`.
    pub fn violation_count(&self, key: &str) -> u64 {
        if key == ANY_VIOLATION {
            self.violations_total()
        } else {
            self.violations.get(key).copied().unwrap_or(0)
        }
    }
}

/// One budget of `budget:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    CpuSeconds,
    WallSeconds,
    EgressBytes,
    CostUsd,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::CpuSeconds,
        Metric::WallSeconds,
        Metric::EgressBytes,
        Metric::CostUsd,
    ];

    /// The key in `budget:`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::CpuSeconds => "cpu_seconds",
            Metric::WallSeconds => "wall_seconds",
            Metric::EgressBytes => "egress_bytes",
            Metric::CostUsd => "cost_usd",
        }
    }

    pub fn limit(self, b: &Budget) -> Option<f64> {
        match self {
            Metric::CpuSeconds => b.cpu_seconds,
            Metric::WallSeconds => b.wall_seconds,
            Metric::EgressBytes => b.egress_bytes.map(|v| v as f64),
            Metric::CostUsd => b.cost_usd,
        }
    }

    /// Usage in the budget's unit.
    pub fn used(self, t: &Totals) -> f64 {
        match self {
            Metric::CpuSeconds => t.cpu_ms as f64 / 1000.0,
            Metric::WallSeconds => t.wall_ms as f64 / 1000.0,
            Metric::EgressBytes => t.egress_bytes as f64,
            Metric::CostUsd => t.cost_usd,
        }
    }

    /// A value in the budget's unit, for messages.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::CpuSeconds | Metric::WallSeconds => format!("{v:.2} s"),
            Metric::EgressBytes => format!("{v:.0} bytes"),
            Metric::CostUsd => format!("${v:.4}"),
        }
    }
}

/// Why the next run of a session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The kill switch tripped; only `session reset` reopens the session.
    Killed,
    /// `session.max_duration` has passed since the session was opened or reset.
    MaxDuration,
    /// `session.max_runs` runs were already started.
    MaxRuns,
    /// A budget with `on_exceed: block|kill` is spent.
    Budget,
    /// A violation threshold with `on_threshold: block|kill` is reached.
    Threshold,
    /// The session store could not be read or written (fail closed).
    Store,
}

/// A refused admission: the kind and a one-line reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, thiserror::Error)]
#[error("session {session}: {reason}")]
pub struct Refusal {
    pub session: String,
    pub kind: RefusalKind,
    pub reason: String,
}

/// What the session knows besides its totals when deciding on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// `Some(reason)` once the kill switch tripped.
    pub killed: Option<String>,
    /// When the session was opened or last reset (Unix ms).
    pub opened_at_ms: i64,
}

/// Whether the next run of session `id` is refused, and why. Checked in this order:
/// killed, `max_duration`, `max_runs`, spent blocking budgets, reached blocking
/// thresholds.
pub fn refusal(
    id: &str,
    policy: &PolicyFile,
    standing: &Standing,
    totals: &Totals,
    now_ms: i64,
) -> Option<Refusal> {
    let refuse = |kind, reason: String| {
        Some(Refusal {
            session: id.to_owned(),
            kind,
            reason,
        })
    };
    let reopen = format!("`skillsandbox session reset {id}` reopens it");
    if let Some(why) = &standing.killed {
        return refuse(
            RefusalKind::Killed,
            format!("session was killed ({why}); {reopen}"),
        );
    }
    if let Some(max) = policy.session.max_duration {
        let age_s = now_ms.saturating_sub(standing.opened_at_ms).max(0) / 1000;
        if age_s as u64 >= max.seconds {
            return refuse(
                RefusalKind::MaxDuration,
                format!("max_duration {max} has passed (session open for {age_s} s); {reopen}"),
            );
        }
    }
    if let Some(max) = policy.session.max_runs {
        if totals.runs_started >= max {
            return refuse(
                RefusalKind::MaxRuns,
                format!(
                    "max_runs reached ({} of {max} runs started); {reopen}",
                    totals.runs_started
                ),
            );
        }
    }
    let b = &policy.budget;
    if b.on_exceed.refuses() {
        for m in Metric::ALL {
            let Some(limit) = m.limit(b) else { continue };
            let used = m.used(totals);
            if used >= limit {
                return refuse(
                    RefusalKind::Budget,
                    format!(
                        "budget {} spent ({} used of {}; on_exceed: {}); {reopen}",
                        m.name(),
                        m.show(used),
                        m.show(limit),
                        b.on_exceed
                    ),
                );
            }
        }
    }
    let v = &policy.violations;
    if v.on_threshold.refuses() {
        for (key, n) in &v.thresholds {
            let count = totals.violation_count(key);
            if count >= *n {
                return refuse(
                    RefusalKind::Threshold,
                    format!(
                        "violation threshold reached ({key}: {count} of {n}; on_threshold: {}); {reopen}",
                        v.on_threshold
                    ),
                );
            }
        }
    }
    None
}

/// What kind of rule a [`Decision`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A budget passed `alert_at` of its limit.
    BudgetAlert,
    /// A budget is spent.
    BudgetSpent,
    /// A violation threshold is reached.
    Threshold,
}

/// Something a change of usage triggered; the engine carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    pub action: Action,
    pub trigger: Trigger,
    /// The rule: `budget.cpu_seconds` or `violations.thresholds.syscall_blocked`.
    pub rule: String,
    pub message: String,
}

/// What moving from `before` to `after` triggers. Each rule fires once, when its
/// line is crossed; a reset starts over.
pub fn decisions_after(policy: &PolicyFile, before: &Totals, after: &Totals) -> Vec<Decision> {
    let mut out = Vec::new();
    let b = &policy.budget;
    for m in Metric::ALL {
        let Some(limit) = m.limit(b) else { continue };
        let (was, now) = (m.used(before), m.used(after));
        let rule = format!("budget.{}", m.name());
        if was < limit && now >= limit {
            out.push(Decision {
                action: b.on_exceed,
                trigger: Trigger::BudgetSpent,
                message: format!(
                    "budget {} spent: {} used of {} (on_exceed: {})",
                    m.name(),
                    m.show(now),
                    m.show(limit),
                    b.on_exceed
                ),
                rule,
            });
            continue;
        }
        let line = b.alert_at * limit;
        if b.alert_at < 1.0 && was < line && now >= line && now < limit {
            out.push(Decision {
                action: if b.on_exceed == Action::Log {
                    Action::Log
                } else {
                    Action::Alert
                },
                trigger: Trigger::BudgetAlert,
                message: format!(
                    "budget {} at {:.0}%: {} used of {}",
                    m.name(),
                    now / limit * 100.0,
                    m.show(now),
                    m.show(limit)
                ),
                rule,
            });
        }
    }
    let v = &policy.violations;
    for (key, n) in &v.thresholds {
        let (was, now) = (before.violation_count(key), after.violation_count(key));
        if was < *n && now >= *n {
            out.push(Decision {
                action: v.on_threshold,
                trigger: Trigger::Threshold,
                rule: format!("violations.thresholds.{key}"),
                message: format!(
                    "violation threshold reached: {key} {now} of {n} (on_threshold: {})",
                    v.on_threshold
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Span;

    fn open() -> Standing {
        Standing {
            killed: None,
            opened_at_ms: 0,
        }
    }

    fn policy() -> PolicyFile {
        let mut p = PolicyFile::default();
        p.session.max_runs = Some(3);
        p.session.max_duration = Some(Span { seconds: 60 });
        p.budget.cpu_seconds = Some(1.0);
        p.violations.thresholds.insert("syscall_blocked".into(), 2);
        p.violations.thresholds.insert("any".into(), 3);
        p
    }

    #[test]
    fn refusals_in_order() {
        let p = policy();
        let t = Totals::default();
        assert_eq!(refusal("s", &p, &open(), &t, 1000), None);
        let killed = Standing {
            killed: Some("manual".into()),
            opened_at_ms: 0,
        };
        let r = refusal("s", &p, &killed, &t, 1000).unwrap();
        assert_eq!(r.kind, RefusalKind::Killed);
        assert!(r.reason.contains("manual") && r.reason.contains("session reset s"));
        let r = refusal("s", &p, &open(), &t, 60_000).unwrap();
        assert_eq!(r.kind, RefusalKind::MaxDuration);
        let t3 = Totals {
            runs_started: 3,
            ..Totals::default()
        };
        assert_eq!(
            refusal("s", &p, &open(), &t3, 0).unwrap().kind,
            RefusalKind::MaxRuns
        );
        let cpu = Totals {
            cpu_ms: 1000,
            ..Totals::default()
        };
        let r = refusal("s", &p, &open(), &cpu, 0).unwrap();
        assert_eq!(r.kind, RefusalKind::Budget);
        assert!(
            r.reason
                .contains("cpu_seconds spent (1.00 s used of 1.00 s"),
            "{}",
            r.reason
        );
        let mut v = Totals::default();
        v.violations.insert("dns_blocked".into(), 3);
        let r = refusal("s", &p, &open(), &v, 0).unwrap();
        assert_eq!(r.kind, RefusalKind::Threshold);
        assert!(r.reason.contains("any: 3 of 3"), "{}", r.reason);
    }

    #[test]
    fn log_and_alert_budgets_never_refuse() {
        let mut p = policy();
        p.budget.on_exceed = Action::Alert;
        p.violations.on_threshold = Action::Log;
        let mut t = Totals {
            cpu_ms: 5000,
            ..Totals::default()
        };
        t.violations.insert("syscall_blocked".into(), 9);
        assert_eq!(refusal("s", &p, &open(), &t, 0), None);
    }

    #[test]
    fn crossings_fire_once() {
        let p = policy();
        let zero = Totals::default();
        let half = Totals {
            cpu_ms: 500,
            ..Totals::default()
        };
        let alert = Totals {
            cpu_ms: 850,
            ..Totals::default()
        };
        let spent = Totals {
            cpu_ms: 1200,
            ..Totals::default()
        };
        assert!(decisions_after(&p, &zero, &half).is_empty());
        let d = decisions_after(&p, &half, &alert);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].action, d[0].trigger),
            (Action::Alert, Trigger::BudgetAlert)
        );
        assert_eq!(d[0].rule, "budget.cpu_seconds");
        // Straight past both lines: only the spent decision.
        let d = decisions_after(&p, &zero, &spent);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].action, d[0].trigger),
            (Action::Block, Trigger::BudgetSpent)
        );
        assert!(decisions_after(&p, &spent, &spent).is_empty());

        let mut v1 = Totals::default();
        v1.violations.insert("syscall_blocked".into(), 2);
        v1.violations.insert("dns_blocked".into(), 1);
        let d = decisions_after(&p, &zero, &v1);
        let rules: Vec<&str> = d.iter().map(|d| d.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "violations.thresholds.any",
                "violations.thresholds.syscall_blocked"
            ]
        );
        assert!(d.iter().all(|d| d.action == Action::Kill));
    }
}
