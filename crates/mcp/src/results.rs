//! Tool results: typed, schema-described structures (`outputSchema` +
//! `structuredContent`) and the short readable text that accompanies each.
//!
//! [`RunResult`] is the machine-readable result of one confined run, the same shape
//! as `skillsandbox run --json`.

use schemars::JsonSchema;
use serde::Serialize;
use skillsandbox_audit::{LayerReport, NetworkTrace, ResourceUsage, Termination, Violation};
use skillsandbox_manifest::Diagnostic;
use skillsandbox_runtime::RunOutcome;

use crate::discover::SkillEntry;

/// The result of one confined run (`run_skill`, `exec_command`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunResult {
    /// The skill's own exit code, or 124 timeout, 125 sandbox setup failed, 126/127
    /// not executable / not found, 137 killed (memory limit, cancelled request).
    pub exit_code: i32,
    pub termination: Termination,
    /// Why the sandbox could not be set up (the skill never ran).
    pub error: Option<String>,
    /// What to do about `error`.
    pub hint: Option<String>,
    /// The skill's stdout (lossy UTF-8), at most `max_output_bytes`.
    pub stdout: String,
    pub stderr: String,
    /// True when the stream passed `max_output_bytes` and the rest was dropped.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// What the skill attempted that a layer refused. Empty for a benign run.
    pub violations: Vec<Violation>,
    /// Each protection layer and whether it was in force.
    pub enforcement: Vec<LayerReport>,
    pub usage: ResourceUsage,
    /// DNS questions and TCP connections the egress service saw.
    pub network: NetworkTrace,
    pub trace_id: String,
    /// Where the full trace was written (null if it could not be written).
    pub trace_path: Option<String>,
    /// Problems recording the run (trace or audit log not written, session not
    /// accounted).
    pub warnings: Vec<String>,
    /// What the session policy decided because of this run, one line each: an
    /// alert (a budget nearly used, a violation threshold reached), later runs
    /// blocked, the kill switch tripped — or that the session's kill switch stopped
    /// this run. Empty: nothing to act on.
    pub session: Vec<String>,
}

impl RunResult {
    pub fn from_outcome(o: &RunOutcome) -> RunResult {
        RunResult {
            exit_code: o.exit_code,
            termination: o.termination,
            error: o.error.clone(),
            hint: o.hint.clone(),
            stdout: o.stdout.text(),
            stderr: o.stderr.text(),
            stdout_truncated: o.stdout.truncated,
            stderr_truncated: o.stderr.truncated,
            violations: o.trace.policy_violations.clone(),
            enforcement: o.trace.enforcement.clone(),
            usage: o.trace.usage.clone(),
            network: o.trace.network.clone(),
            trace_id: o.trace.trace_id.clone(),
            trace_path: o.trace_path.as_ref().map(|p| p.display().to_string()),
            warnings: o.warnings.clone(),
            session: Vec::new(),
        }
    }

    /// A run that did not end with exit 0 on its own is a tool error (`isError`).
    pub fn failed(&self) -> bool {
        self.exit_code != 0 || self.termination != Termination::Exited
    }

    /// The readable summary: outcome line, setup error, violations, output.
    pub fn text(&self, what: &str, duration_ms: u64) -> String {
        let mut s = format!(
            "{what}: exit {} ({}) in {duration_ms} ms; {}",
            self.exit_code,
            termination_name(self.termination),
            match self.violations.len() {
                0 => "no violations".to_string(),
                1 => "1 violation".to_string(),
                n => format!("{n} violations"),
            }
        );
        if let Some(e) = &self.error {
            s.push_str(&format!("\nsandbox setup failed: {e}"));
            if let Some(h) = &self.hint {
                s.push_str(&format!("\nhint: {h}"));
            }
        }
        for v in self.violations.iter().take(20) {
            s.push_str(&format!(
                "\nBLOCKED {} ({}): {}",
                serde_name(&v.kind),
                serde_name(&v.severity),
                v.detail
            ));
        }
        if self.violations.len() > 20 {
            s.push_str(&format!("\n... and {} more", self.violations.len() - 20));
        }
        for (name, text, truncated) in [
            ("stdout", &self.stdout, self.stdout_truncated),
            ("stderr", &self.stderr, self.stderr_truncated),
        ] {
            if !text.is_empty() {
                s.push_str(&format!(
                    "\n--- {name} ---\n{}",
                    text.trim_end_matches('\n')
                ));
                if truncated {
                    s.push_str("\n[truncated at max_output_bytes]");
                }
            }
        }
        for line in &self.session {
            s.push_str(&format!("\nSESSION {line}"));
        }
        s.push_str(&format!(
            "\ntrace: {}",
            self.trace_path.as_deref().unwrap_or(&self.trace_id)
        ));
        s
    }
}

fn termination_name(t: Termination) -> String {
    serde_name(&t)
}

/// The snake_case JSON name of a unit enum value.
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// One manifest error or warning, positioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DiagnosticOut {
    /// `error` or `warning`.
    pub severity: String,
    pub file: String,
    /// 1-based line in the manifest, when known.
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// Dotted path of the field, e.g. `permissions.network.egress[0].domain`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
    /// Lint id for warnings, e.g. `broad-write`.
    pub lint: Option<String>,
}

impl From<&Diagnostic> for DiagnosticOut {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticOut {
            severity: if d.is_error() { "error" } else { "warning" }.to_string(),
            file: d.file.clone(),
            line: d.pos.map(|p| p.line),
            column: d.pos.map(|p| p.column),
            field: d.field.clone(),
            message: d.message.clone(),
            hint: d.hint.clone(),
            lint: d.lint.map(str::to_string),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SkillRef {
    pub name: String,
    pub version: String,
}

/// The result of `validate_skill`. `ok: false` is an answer, not a failed call.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ValidateResult {
    /// True when the manifest is valid (warnings do not make it invalid).
    pub ok: bool,
    /// The manifest file that was checked.
    pub manifest: String,
    /// Name and version, when the manifest is valid.
    pub skill: Option<SkillRef>,
    pub errors: Vec<DiagnosticOut>,
    pub warnings: Vec<DiagnosticOut>,
}

impl ValidateResult {
    pub fn text(&self) -> String {
        let mut s = match (&self.skill, self.ok) {
            (Some(k), true) => format!("ok: {} {} ({})", k.name, k.version, self.manifest),
            _ => format!(
                "invalid manifest {}: {} error(s)",
                self.manifest,
                self.errors.len()
            ),
        };
        for d in self.errors.iter().chain(&self.warnings) {
            s.push('\n');
            s.push_str(&diagnostic_line(d));
        }
        s
    }
}

/// `FILE:LINE:COL: FIELD: message (hint: ...)`.
pub fn diagnostic_line(d: &DiagnosticOut) -> String {
    let mut s = d.file.clone();
    if let (Some(l), Some(c)) = (d.line, d.column) {
        s.push_str(&format!(":{l}:{c}"));
    }
    s.push_str(": ");
    if !d.field.is_empty() {
        s.push_str(&format!("{}: ", d.field));
    }
    if let Some(lint) = &d.lint {
        s.push_str(&format!("warning[{lint}]: "));
    }
    s.push_str(&d.message);
    if let Some(h) = &d.hint {
        s.push_str(&format!(" (hint: {h})"));
    }
    s
}

/// The result of `inspect_skill`: what the sandbox will enforce.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InspectResult {
    pub manifest: String,
    pub skill: SkillRef,
    /// The resolved policy (every path absolute, every default applied), as
    /// `skillsandbox inspect` prints it.
    pub policy: serde_json::Value,
    /// Lint warnings about over-broad grants.
    pub warnings: Vec<DiagnosticOut>,
}

/// The result of `list_skills`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ListResult {
    /// The directories that were searched.
    pub directories: Vec<String>,
    pub skills: Vec<SkillEntry>,
    /// True when more skills exist than were listed.
    pub truncated: bool,
}

impl ListResult {
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} skill(s) in {}",
            self.skills.len(),
            self.directories.join(", ")
        );
        for e in &self.skills {
            s.push_str(&format!(
                "\n- {}{} [{}]: {}{}",
                e.name,
                e.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                serde_name(&e.runnable),
                e.description.as_deref().unwrap_or("(no description)"),
                e.problem
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ));
        }
        if self.truncated {
            s.push_str("\n(listing truncated)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillsandbox_audit::{Severity, ViolationKind};

    fn result() -> RunResult {
        RunResult {
            exit_code: 1,
            termination: Termination::Exited,
            error: None,
            hint: None,
            stdout: "out\n".into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            violations: vec![Violation {
                kind: ViolationKind::DnsBlocked,
                severity: Severity::High,
                detail: "DNS query for evil.example refused".into(),
                time: "2026-01-01T00:00:00.000Z".into(),
                mitre: None,
            }],
            enforcement: Vec::new(),
            usage: Default::default(),
            network: Default::default(),
            trace_id: "t1".into(),
            trace_path: Some("/tmp/t1.json".into()),
            warnings: Vec::new(),
            session: Vec::new(),
        }
    }

    #[test]
    fn run_text_names_the_block_and_output() {
        let r = result();
        assert!(r.failed());
        assert_eq!(
            r.text("skill x 1.0.0", 12),
            "skill x 1.0.0: exit 1 (exited) in 12 ms; 1 violation\n\
             BLOCKED dns_blocked (high): DNS query for evil.example refused\n\
             --- stdout ---\nout\ntrace: /tmp/t1.json"
        );
        let mut r = result();
        r.session = vec!["session s: alert: budget cpu_seconds at 80%".into()];
        assert!(r.text("x", 1).ends_with(
            "\nSESSION session s: alert: budget cpu_seconds at 80%\ntrace: /tmp/t1.json"
        ));
    }

    #[test]
    fn run_result_serialises_like_the_cli() {
        let v = serde_json::to_value(result()).unwrap();
        for key in [
            "exit_code",
            "termination",
            "error",
            "hint",
            "stdout",
            "stderr",
            "stdout_truncated",
            "stderr_truncated",
            "violations",
            "enforcement",
            "usage",
            "network",
            "trace_id",
            "trace_path",
            "session",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["violations"][0]["kind"], "dns_blocked");
    }

    #[test]
    fn diagnostic_line_format() {
        let d = DiagnosticOut {
            severity: "error".into(),
            file: "s/skillsandbox.yaml".into(),
            line: Some(3),
            column: Some(9),
            field: "skill.name".into(),
            message: "bad".into(),
            hint: Some("fix".into()),
            lint: None,
        };
        assert_eq!(
            diagnostic_line(&d),
            "s/skillsandbox.yaml:3:9: skill.name: bad (hint: fix)"
        );
    }
}
