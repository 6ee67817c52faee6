//! What gets accounted: a finished run's measurements (taken from its trace) and the
//! model cost a caller reports.

use std::collections::BTreeMap;

use skillsandbox_audit::Trace;

use crate::file::PolicyFile;
use crate::price::{cost_usd, price_for, price_table};

/// What one run used, as the session store records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunUsage {
    pub trace_id: String,
    /// CPU time, user + system, from the run's cgroup.
    pub cpu_ms: u64,
    /// Wall-clock duration of the run.
    pub wall_ms: u64,
    /// Bytes in + out over the run's network connections (egress service).
    pub egress_bytes: u64,
    pub exit_code: i32,
    /// `exited`, `timeout`, `killed`, ... as in the trace.
    pub termination: String,
    /// Violations by kind (`syscall_blocked`, ...), from `policy_violations`.
    pub violations: BTreeMap<String, u64>,
}

impl RunUsage {
    /// The measurements of a finished run, from its trace.
    pub fn from_trace(t: &Trace) -> RunUsage {
        let egress = t.network.connections.iter().fold(0u64, |acc, c| {
            acc.saturating_add(c.bytes_in).saturating_add(c.bytes_out)
        });
        RunUsage {
            trace_id: t.trace_id.clone(),
            cpu_ms: t.usage.cpu_user_ms.saturating_add(t.usage.cpu_system_ms),
            wall_ms: t.duration_ms,
            egress_bytes: egress,
            exit_code: t.exit_code,
            termination: serde_json::to_value(t.termination)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            violations: t
                .violation_counts()
                .into_iter()
                .map(|(k, n)| (k.as_str().to_owned(), n))
                .collect(),
        }
    }
}

/// Model usage a caller reports (the MCP tool `report_usage`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageReport {
    /// Tokens of a model, priced by the policy's price table.
    Tokens {
        model: String,
        input: u64,
        output: u64,
    },
    /// A cost in US dollars, taken as is.
    Usd(f64),
}

/// A priced usage report, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEntry {
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub usd: f64,
}

/// Why a usage report could not be priced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("no price for model {model:?}; known models: {known}\n  hint: add it under `prices:` in the policy file (USD per million tokens)")]
    UnknownModel { model: String, known: String },
    #[error("invalid amount {usd}: a cost must be a finite number of dollars, 0 or more")]
    InvalidAmount { usd: f64 },
}

/// Prices a report with the built-in example table plus the policy's `prices:`.
pub fn price_report(report: &UsageReport, policy: &PolicyFile) -> Result<CostEntry, PriceError> {
    match report {
        UsageReport::Usd(usd) => {
            if !usd.is_finite() || *usd < 0.0 {
                return Err(PriceError::InvalidAmount { usd: *usd });
            }
            Ok(CostEntry {
                model: None,
                input_tokens: None,
                output_tokens: None,
                usd: *usd,
            })
        }
        UsageReport::Tokens {
            model,
            input,
            output,
        } => {
            let table = price_table(&policy.prices);
            let Some((_, price)) = price_for(&table, model) else {
                return Err(PriceError::UnknownModel {
                    model: model.clone(),
                    known: table.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            };
            Ok(CostEntry {
                model: Some(model.clone()),
                input_tokens: Some(*input),
                output_tokens: Some(*output),
                usd: cost_usd(price, *input, *output),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillsandbox_audit::{
        ConnectionDecision, ConnectionRecord, Severity, Termination, ViolationKind,
    };

    fn trace() -> Trace {
        let json = serde_json::json!({
            "schema_version": 1, "trace_id": "t1", "run_id": "t1",
            "skill": {"name": "s", "version": "0.1.0"}, "command": ["true"], "tier": "container",
            "started_at": "x", "finished_at": "y", "duration_ms": 1500, "exit_code": 137,
            "termination": "killed", "enforcement": [],
            "usage": {"cpu_user_ms": 700, "cpu_system_ms": 50, "stdout_bytes": 0, "stderr_bytes": 0,
                      "stdout_truncated": false, "stderr_truncated": false},
            "network": {}
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn usage_from_trace() {
        let mut t = trace();
        for (i, o) in [(10, 20), (5, 0)] {
            t.network.connections.push(ConnectionRecord {
                time: "x".into(),
                name: None,
                dest: "198.18.0.1".into(),
                port: 443,
                real_addr: None,
                decision: ConnectionDecision::Allowed,
                reason: "r".into(),
                bytes_out: o,
                bytes_in: i,
            });
        }
        for k in [
            ViolationKind::SyscallBlocked,
            ViolationKind::SyscallBlocked,
            ViolationKind::DnsBlocked,
        ] {
            t.policy_violations
                .push(skillsandbox_audit::violation(k, Severity::High, "d", None));
        }
        let u = RunUsage::from_trace(&t);
        assert_eq!(u.cpu_ms, 750);
        assert_eq!(u.wall_ms, 1500);
        assert_eq!(u.egress_bytes, 35);
        assert_eq!(u.termination, "killed");
        assert_eq!(u.violations["syscall_blocked"], 2);
        assert_eq!(u.violations["dns_blocked"], 1);
        assert_eq!(t.termination, Termination::Killed);
    }

    #[test]
    fn prices_reports() {
        let p = PolicyFile::default();
        let c = price_report(
            &UsageReport::Tokens {
                model: "gpt-4o-mini".into(),
                input: 1_000_000,
                output: 0,
            },
            &p,
        )
        .unwrap();
        assert!((c.usd - 0.15).abs() < 1e-9);
        let e = price_report(
            &UsageReport::Tokens {
                model: "mystery".into(),
                input: 1,
                output: 1,
            },
            &p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prices:"));
        assert!(price_report(&UsageReport::Usd(-1.0), &p).is_err());
        assert!(price_report(&UsageReport::Usd(f64::NAN), &p).is_err());
        assert_eq!(price_report(&UsageReport::Usd(0.5), &p).unwrap().usd, 0.5);
    }
}
