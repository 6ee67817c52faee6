//! The session policy file (`policy.yaml`): its types, their defaults and the JSON
//! Schema generated from them.
//!
//! Plain data: the file is read by `read.rs`, found by `load.rs`, and asked questions
//! by `decide.rs`. Reference for users: `docs/policy.md`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The whole policy file. Every section is optional; an absent limit is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "skillsandbox session policy")]
pub struct PolicyFile {
    /// Layout version of this file; only `1` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1))]
    pub version: Option<u32>,
    #[serde(default)]
    pub session: SessionLimits,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub violations: ViolationRules,
    #[serde(default)]
    pub kill_switch: KillSwitch,
    #[serde(default)]
    pub store: StoreRules,
    /// Model prices for `report_usage` in tokens, by model name (USD per million
    /// tokens). Entries here replace built-in entries of the same name; the built-in
    /// table is an example to check against your provider's current prices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
}

/// Limits on the session as a whole; checked before every run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLimits {
    /// How long the session may keep starting runs after it was opened (or reset):
    /// `90s`, `30m`, `2h`, `1d`, or combinations such as `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<Span>,
    /// How many runs the session may start (counted at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_runs: Option<u64>,
}

/// Resource and cost budgets, summed over the session's runs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// CPU time (user + system) of all runs, in seconds, measured by the cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cpu_seconds: Option<f64>,
    /// Wall-clock time of all runs, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub wall_seconds: Option<f64>,
    /// Bytes sent plus received over allowed network connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bytes: Option<u64>,
    /// Model cost reported by the caller (`report_usage`), in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cost_usd: Option<f64>,
    /// Fraction (0..1) of a budget at which an alert is raised once.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alert_at: f64,
    /// What happens when a budget is spent.
    pub on_exceed: Action,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            cpu_seconds: None,
            wall_seconds: None,
            egress_bytes: None,
            cost_usd: None,
            alert_at: DEFAULT_ALERT_AT,
            on_exceed: Action::Block,
        }
    }
}

/// Default `budget.alert_at`.
pub const DEFAULT_ALERT_AT: f64 = 0.8;

/// Violation counts at which the session reacts.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ViolationRules {
    /// Count per violation kind (`syscall_blocked`, `dns_blocked`, ...; see the trace
    /// reference) or `any` (all kinds together) at which `on_threshold` happens.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "thresholds_schema")]
    pub thresholds: BTreeMap<String, u64>,
    /// What happens when a threshold is reached.
    pub on_threshold: Action,
}

impl Default for ViolationRules {
    fn default() -> Self {
        ViolationRules {
            thresholds: BTreeMap::new(),
            on_threshold: Action::Kill,
        }
    }
}

/// The key that counts every violation kind together.
pub const ANY_VIOLATION: &str = "any";

/// The names `violations.thresholds` accepts: every violation kind, then `any`.
pub fn threshold_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = skillsandbox_audit::ViolationKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    keys.push(ANY_VIOLATION);
    keys
}

fn thresholds_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names = threshold_keys();
    schemars::json_schema!({
        "type": "object",
        "propertyNames": { "enum": names },
        "additionalProperties": { "type": "integer", "minimum": 1 }
    })
}

/// Who is told when the kill switch trips.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    /// `http://` URLs that receive a POST with JSON `{session, reason, counts}`.
    /// Sent in the background with a short timeout; failures are logged, never
    /// delay the kill. `https://` is not supported (no TLS client is built in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// A model's price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schemars(range(min = 0.0))]
    pub input_per_mtok: f64,
    #[schemars(range(min = 0.0))]
    pub output_per_mtok: f64,
}

/// How runs behave toward the session store they are charged to.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreRules {
    /// When the store cannot be reached: new runs are always refused; `fail_closed`
    /// also stops running sandboxes once the store has been unreachable for 10 s,
    /// `fail_open_for_running` lets them finish (their usage is recorded when the
    /// store returns).
    pub unavailable: Unavailable,
    /// How long a run stays `running` without its supervisor renewing it (every
    /// third of this); after that the store counts it `lost`. A supervisor killed
    /// with -9 cannot leave runs `running` for ever.
    pub lease: Span,
}

/// Default `store.lease`.
pub const DEFAULT_LEASE: Span = Span { seconds: 30 };

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            unavailable: Unavailable::FailClosed,
            lease: DEFAULT_LEASE,
        }
    }
}

/// `store.unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    FailClosed,
    FailOpenForRunning,
}

impl Unavailable {
    pub const NAMES: [&'static str; 2] = ["fail_closed", "fail_open_for_running"];

    pub fn parse(s: &str) -> Option<Unavailable> {
        match s {
            "fail_closed" => Some(Unavailable::FailClosed),
            "fail_open_for_running" => Some(Unavailable::FailOpenForRunning),
            _ => None,
        }
    }
}

/// What the session engine does when a budget is spent or a threshold reached.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Write a `session` record to the audit log; nothing else.
    Log,
    /// Log, and tell the caller (the CLI prints it on stderr).
    Alert,
    /// Log, alert, and refuse further runs until `session reset`.
    Block,
    /// Log, alert, and trip the kill switch: running sandboxes of the session die,
    /// later runs are refused, webhooks are told.
    Kill,
}

impl Action {
    pub const NAMES: [&'static str; 4] = ["log", "alert", "block", "kill"];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Block => "block",
            Action::Kill => "kill",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "log" => Some(Action::Log),
            "alert" => Some(Action::Alert),
            "block" => Some(Action::Block),
            "kill" => Some(Action::Kill),
            _ => None,
        }
    }

    /// Whether this action refuses later runs once triggered.
    pub fn refuses(self) -> bool {
        matches!(self, Action::Block | Action::Kill)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A length of time written as `90s`, `30m`, `2h`, `1d` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub seconds: u64,
}

impl Span {
    /// Parses `<n><unit>` groups (units `s`, `m`, `h`, `d`). The error says why.
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                other => return Err(format!("unknown unit `{other}`")),
            };
            if digits.is_empty() {
                return Err(format!("`{c}` has no number before it"));
            }
            let n: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| "duration too large".to_string())?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!("`{digits}` has no unit"));
        }
        if total == 0 {
            return Err("the duration must be longer than 0".into());
        }
        Ok(Span { seconds: total })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.seconds;
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if left >= size {
                write!(f, "{}{unit}", left / size)?;
                left %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Span".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+[smhd])+$",
            "description": "A duration: `90s`, `30m`, `2h`, `1d`, or combinations such as `1h30m`.",
            "examples": ["30m", "2h", "1h30m"]
        })
    }
}

/// JSON Schema (draft-07, as YAML language servers expect) of the policy file.
pub fn policy_json_schema() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<PolicyFile>();
    schema.insert(
        "$comment".into(),
        "Generated by `skillsandbox session schema`. Reference: docs/policy.md".into(),
    );
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("90s").unwrap().seconds, 90);
        assert_eq!(Span::parse("30m").unwrap().seconds, 1800);
        assert_eq!(Span::parse("2h").unwrap().seconds, 7200);
        assert_eq!(Span::parse("1h30m").unwrap().seconds, 5400);
        assert_eq!(Span::parse("1d").unwrap().to_string(), "1d");
        assert_eq!(Span::parse("90s").unwrap().to_string(), "1m30s");
        assert!(Span::parse("90").unwrap_err().contains("no unit"));
        assert!(Span::parse("5w").unwrap_err().contains("unknown unit"));
        assert!(Span::parse("0s").is_err());
        assert!(Span::parse("h").is_err());
        assert!(Span::parse("99999999999999999999s").is_err());
    }

    #[test]
    fn schema_lists_sections_and_threshold_names() {
        let s = policy_json_schema();
        let text = s.to_string();
        for key in ["session", "budget", "violations", "kill_switch", "prices"] {
            assert!(s["properties"].get(key).is_some(), "{key} missing");
        }
        assert!(text.contains("syscall_blocked"));
        assert_eq!(s["additionalProperties"], false);
    }
}
