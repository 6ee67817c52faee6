//! The versioned run trace (`trace.json`, DESIGN.md §6): its types, its JSON
//! Schema, where it goes by default, and how it is written (atomically, never half).
//!
//! Field-by-field reference: `docs/trace.md`. Bump [`TRACE_SCHEMA_VERSION`] on any
//! change that breaks a reader (a removed or renamed field, a changed meaning);
//! adding an optional field does not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AuditError;
use crate::event::{
    ConnectionRecord, DnsRecord, LayerReport, Termination, Timestamp, Violation, ViolationKind,
};
use crate::fsutil;

/// Version of the `trace.json` layout written by this build.
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// Everything one run left behind: who ran what, how it ended, what was enforced,
/// what it used, where it tried to connect, and what was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trace {
    /// Layout version; [`TRACE_SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// Unique id of this trace (random UUID v4, lowercase hyphenated).
    pub trace_id: String,
    /// Id of the run this trace records (may equal `trace_id`).
    pub run_id: String,
    /// Session the run was charged to, if any.
    #[serde(default)]
    pub session_id: Option<String>,
    pub skill: TraceSkill,
    /// The argv that was executed inside the sandbox (entrypoint command first).
    pub command: Vec<String>,
    /// Isolation tier in force: `container` or `process`.
    pub tier: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Wall-clock duration of the run in milliseconds.
    pub duration_ms: u64,
    /// The exit code `skillsandbox run` returns for this run (DESIGN.md §6).
    pub exit_code: i32,
    pub termination: Termination,
    /// One entry per protection layer: enforced, partial or unavailable, and why.
    pub enforcement: Vec<LayerReport>,
    pub usage: ResourceUsage,
    pub network: NetworkTrace,
    /// Notable things the runtime did or saw, in time order (not violations).
    #[serde(default)]
    pub events: Vec<TraceEvent>,
    /// What the skill attempted that a layer refused. Empty for a benign run.
    #[serde(default)]
    pub policy_violations: Vec<Violation>,
    /// Why the sandbox could not be set up (`termination == setup_failed`).
    #[serde(default)]
    pub setup_error: Option<String>,
    /// The agent's tool call this run executes (`skillsandbox hook`: Claude Code's
    /// `tool_use_id`, Codex's call id); `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Where the run's time went, phase by phase, in order (`skillsandbox exec
    /// --timings` prints the same list): supervisor and sandbox steps on one clock.
    /// Empty when the run never started a launch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<PhaseTiming>,
}

/// One phase of a run and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseTiming {
    pub phase: String,
    /// Microseconds.
    pub us: u64,
}

/// The skill a run executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TraceSkill {
    pub name: String,
    pub version: String,
    /// Absolute path of the manifest, when the run came from one (`exec` may not).
    #[serde(default)]
    pub manifest_path: Option<String>,
    /// SHA-256 (lowercase hex) of the manifest file's bytes.
    #[serde(default)]
    pub manifest_sha256: Option<String>,
}

/// What the run consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceUsage {
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// Peak memory of the run's cgroup; `null` when no cgroup was available.
    #[serde(default)]
    pub memory_peak_bytes: Option<u64>,
    /// Peak number of tasks in the run's cgroup; `null` when unknown.
    #[serde(default)]
    pub pids_peak: Option<u64>,
    /// Bytes the skill wrote to stdout (including any dropped past the cap).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// True when stdout passed `max_output_bytes` and the rest was dropped.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// What the egress service saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkTrace {
    #[serde(default)]
    pub dns: Vec<DnsRecord>,
    #[serde(default)]
    pub connections: Vec<ConnectionRecord>,
}

/// A notable runtime event that is not a violation (e.g. `cgroup_killed`,
/// `landlock_abi`, `output_capped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TraceEvent {
    pub time: Timestamp,
    pub kind: String,
    pub detail: String,
}

impl Trace {
    /// Number of violations per kind, in kind order.
    pub fn violation_counts(&self) -> std::collections::BTreeMap<ViolationKind, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for v in &self.policy_violations {
            *counts.entry(v.kind).or_insert(0) += 1;
        }
        counts
    }
}

/// A fresh random trace id (UUID v4, lowercase hyphenated).
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The JSON Schema (draft 2020-12) of `trace.json`.
pub fn trace_json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Trace);
    schema.to_value()
}

/// The exact bytes [`write_trace_atomic`] writes: pretty JSON plus a final newline.
pub fn trace_bytes(trace: &Trace) -> Result<Vec<u8>, AuditError> {
    let mut bytes =
        serde_json::to_vec_pretty(trace).map_err(|cause| AuditError::SerializeTrace { cause })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// SHA-256 (lowercase hex) of the trace file [`write_trace_atomic`] writes.
pub fn trace_sha256(trace: &Trace) -> Result<String, AuditError> {
    Ok(hex::encode(Sha256::digest(trace_bytes(trace)?)))
}

/// Writes `trace` to `path` so that a reader sees either no file or the complete
/// trace: parent directories are created with mode 0700, the JSON goes to a 0600
/// temporary file in the same directory, which is fsynced, renamed over `path`,
/// and the directory is fsynced.
pub fn write_trace_atomic(path: &Path, trace: &Trace) -> Result<(), AuditError> {
    let bytes = trace_bytes(trace)?;
    fsutil::write_file_atomic(path, &bytes, true)
}

/// Where run evidence lives: `$XDG_STATE_HOME/skillsandbox` when that is set to an
/// absolute path, else `~/.local/state/skillsandbox`.
pub fn default_state_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME") {
        let xdg = PathBuf::from(xdg);
        // The XDG spec says relative values are invalid and must be ignored.
        if xdg.is_absolute() {
            return xdg.join("skillsandbox");
        }
    }
    let home = std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local").join("state").join("skillsandbox")
}

/// Default trace location: `<state dir>/traces/<trace_id>.json`. Never the skill
/// directory, which may be read-only or shared.
pub fn default_trace_path(trace_id: &str) -> PathBuf {
    // A trace id is ours (a UUID), but never let one escape the traces directory.
    let safe: String = trace_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    default_state_dir()
        .join("traces")
        .join(format!("{safe}.json"))
}
