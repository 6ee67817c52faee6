//! Event and record types shared by every producer of run evidence (the egress
//! service, the supervisor, the session engine) and by the trace and the audit log.
//!
//! Violations are built only from what the skill attempted and something refused —
//! never from the runtime's own setup messages.

use serde::{Deserialize, Serialize};

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-22T05:48:15.123Z`.
pub type Timestamp = String;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// The skill exited on its own; `exit_code` is its status.
    Exited,
    /// The skill was killed by a signal it did not get from us.
    Signaled,
    /// The wall clock ran out; the whole tree was killed (exit 124).
    Timeout,
    /// The memory limit was hit and the kernel killed the skill (exit 137).
    Oom,
    /// Stopped by the kill switch or a cancelled request (exit 137).
    Killed,
    /// The sandbox could not be set up; the skill never ran (exit 125).
    SetupFailed,
}

/// Whether one protection layer is in force for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    Enforced,
    Partial,
    Unavailable,
}

/// One line of the enforcement report: a layer (`user_namespace`, `seccomp`,
/// `landlock`, `cgroup_memory`, ...), its status, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerReport {
    pub layer: String,
    pub status: LayerStatus,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// What kind of refused attempt a violation records.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A DNS query for a name no rule declares.
    DnsBlocked,
    /// A TCP connection to an address/port no rule allows.
    NetworkBlocked,
    /// TLS SNI or HTTP Host named another domain than the address was issued for.
    DomainMismatch,
    /// A host's request, upload or download cap was crossed.
    NetworkCap,
    /// A secret's placeholder was sent somewhere its value may not go.
    SecretExfiltration,
    /// A declared name resolved to loopback/private/link-local/metadata space.
    RebindingBlocked,
    /// A syscall the seccomp profile refuses.
    SyscallBlocked,
    /// A filesystem access Landlock or the mount layout refused.
    FilesystemDenied,
    /// The memory limit was hit (OOM kill).
    MemoryLimit,
    /// The process-count limit refused a fork.
    ProcessLimit,
    /// The wall clock ran out.
    Timeout,
    /// Output beyond `max_output_bytes` was dropped.
    OutputLimit,
    /// A write beyond `max_file_size_mb` (SIGXFSZ / EFBIG).
    FileSizeLimit,
}

/// A MITRE ATT&CK technique, where one clearly fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mitre {
    pub tactic: String,
    pub technique_id: String,
    pub technique: String,
}

/// Something the skill attempted that a layer refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    pub kind: ViolationKind,
    pub severity: Severity,
    /// Human-readable, specific: the name, address, port, syscall or path.
    pub detail: String,
    pub time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mitre: Option<Mitre>,
}

/// What the egress service decided for one DNS question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DnsDecision {
    /// Declared name, answered with a synthetic address.
    Answered,
    /// Declared name, record type we do not serve: empty NOERROR answer.
    Nodata,
    /// Undeclared name: NXDOMAIN, never forwarded.
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DnsRecord {
    pub time: Timestamp,
    pub name: String,
    /// `A`, `AAAA`, `TXT`, ...
    pub qtype: String,
    pub decision: DnsDecision,
    /// Synthetic addresses handed out, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionDecision {
    Allowed,
    Blocked,
}

/// One TCP connection the skill opened, allowed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConnectionRecord {
    pub time: Timestamp,
    /// The domain the synthetic address stands for, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// The address the skill connected to (synthetic or literal).
    pub dest: String,
    pub port: u16,
    /// The real address the supervisor connected to, when it did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub real_addr: Option<String>,
    pub decision: ConnectionDecision,
    /// Why it was blocked, or which rule allowed it.
    pub reason: String,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// Current time as an RFC 3339 UTC timestamp with milliseconds.
pub fn now() -> Timestamp {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

impl ViolationKind {
    /// Every kind, in declaration order.
    pub const ALL: [ViolationKind; 11] = [
        ViolationKind::DnsBlocked,
        ViolationKind::NetworkBlocked,
        ViolationKind::DomainMismatch,
        ViolationKind::RebindingBlocked,
        ViolationKind::SyscallBlocked,
        ViolationKind::FilesystemDenied,
        ViolationKind::MemoryLimit,
        ViolationKind::ProcessLimit,
        ViolationKind::Timeout,
        ViolationKind::OutputLimit,
        ViolationKind::FileSizeLimit,
    ];

    /// The snake_case name used in JSON (`dns_blocked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::DnsBlocked => "dns_blocked",
            ViolationKind::NetworkBlocked => "network_blocked",
            ViolationKind::NetworkCap => "network_cap",
            ViolationKind::SecretExfiltration => "secret_exfiltration",
            ViolationKind::DomainMismatch => "domain_mismatch",
            ViolationKind::RebindingBlocked => "rebinding_blocked",
            ViolationKind::SyscallBlocked => "syscall_blocked",
            ViolationKind::FilesystemDenied => "filesystem_denied",
            ViolationKind::MemoryLimit => "memory_limit",
            ViolationKind::ProcessLimit => "process_limit",
            ViolationKind::Timeout => "timeout",
            ViolationKind::OutputLimit => "output_limit",
            ViolationKind::FileSizeLimit => "file_size_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_name() {
        for kind in ViolationKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json.as_str(), Some(kind.as_str()));
        }
    }
}
