//! "Blocked means explained": one stderr line per wall a confined command hit,
//! naming what was blocked, by which rule, and the profile line that would allow
//! it, so the agent can ask the user instead of retrying blindly. Pure.

use std::path::Path;

use skillsandbox_audit::{ConnectionDecision, DnsDecision, Trace, ViolationKind};

/// The lines for a finished run confined by the profile at `profile`.
pub fn explain(trace: &Trace, profile: &Path) -> Vec<String> {
    let p = profile.display();
    let mut out: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if !out.contains(&line) {
            out.push(line);
        }
    };
    for d in &trace.network.dns {
        if d.decision == DnsDecision::Blocked {
            push(format!(
                "skillsandbox: blocked: DNS lookup of {} (no egress rule declares it); to \
                 allow it add `- domain: {}` under permissions.network.egress in {p}",
                d.name, d.name
            ));
        }
    }
    for c in &trace.network.connections {
        if c.decision == ConnectionDecision::Blocked {
            let line = match &c.name {
                Some(name) => format!(
                    "skillsandbox: blocked: connection to {name}:{} ({}); to allow it add \
                     `- domain: {name}` with `ports: [{}]` under permissions.network.egress in {p}",
                    c.port, c.reason, c.port
                ),
                None => format!(
                    "skillsandbox: blocked: connection to {}:{} ({}); raw addresses need a \
                     `- cidr: {}/32` rule with `ports: [{}]` under permissions.network.egress \
                     in {p} (prefer a domain rule)",
                    c.dest, c.port, c.reason, c.dest, c.port
                ),
            };
            push(line);
        }
    }
    for v in &trace.policy_violations {
        let line = match v.kind {
            ViolationKind::SyscallBlocked => format!(
                "skillsandbox: blocked: {} (seccomp profile); `permissions.syscalls.profile: \
                 permissive` in {p} would allow it — ask the user first",
                v.detail
            ),
            ViolationKind::MemoryLimit => format!(
                "skillsandbox: stopped: {}; raise resources.memory_mb in {p}",
                v.detail
            ),
            ViolationKind::Timeout => format!(
                "skillsandbox: stopped: {}; raise resources.max_runtime_seconds in {p}",
                v.detail
            ),
            ViolationKind::ProcessLimit => format!(
                "skillsandbox: blocked: {}; raise resources.max_processes in {p}",
                v.detail
            ),
            ViolationKind::OutputLimit => format!(
                "skillsandbox: cut: {}; raise resources.max_output_bytes in {p}",
                v.detail
            ),
            ViolationKind::FileSizeLimit => format!(
                "skillsandbox: blocked: {}; raise resources.max_file_size_mb in {p}",
                v.detail
            ),
            _ => continue,
        };
        push(line);
    }
    out
}
