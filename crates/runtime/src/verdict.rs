//! How a run ended, from what was observed after it (DESIGN.md §3 step 7): exit code,
//! termination, usage, and the resource violations. Pure.

use skillsandbox_audit::{
    self as audit, ResourceUsage, Severity, Termination, Violation, ViolationKind,
};
use skillsandbox_manifest::Limits;
use skillsandbox_sandbox::cgroup::CgroupUsage;
use skillsandbox_sandbox::launch::WaitEnd;

use crate::output::Captured;

/// What the supervisor saw once the sandbox was gone.
pub(crate) struct Observed<'a> {
    pub end: &'a WaitEnd,
    pub cgroup: Option<&'a CgroupUsage>,
    pub stdout: &'a Captured,
    pub stderr: &'a Captured,
}

/// The verdict on a finished run.
pub(crate) struct Verdict {
    pub exit_code: i32,
    pub termination: Termination,
    pub usage: ResourceUsage,
    pub violations: Vec<Violation>,
}

/// Exit code, termination, usage and resource violations of a finished run.
pub(crate) fn judge(o: &Observed<'_>, limits: &Limits) -> Verdict {
    let oom = o.cgroup.is_some_and(|u| u.oom_kills > 0);
    let (exit_code, termination) = match o.end {
        WaitEnd::TimedOut => (124, Termination::Timeout),
        WaitEnd::Stopped(_) => (137, Termination::Killed),
        WaitEnd::Exited { code: Some(c), .. } if !oom => (*c, Termination::Exited),
        WaitEnd::Exited { .. } if oom => (137, Termination::Oom),
        WaitEnd::Exited { signal, .. } => (128 + signal.unwrap_or(0), Termination::Signaled),
    };
    let mut usage = ResourceUsage {
        stdout_bytes: o.stdout.total,
        stderr_bytes: o.stderr.total,
        stdout_truncated: o.stdout.truncated,
        stderr_truncated: o.stderr.truncated,
        ..Default::default()
    };
    if let Some(cu) = o.cgroup {
        usage.cpu_user_ms = cu.cpu_usage_ns.unwrap_or(0) / 1_000_000;
        usage.memory_peak_bytes = cu.memory_peak_bytes;
        usage.pids_peak = cu.pids_peak;
    }
    let mut violations = Vec::new();
    let mut push = |kind, severity, detail: String, mitre| {
        violations.push(audit::violation(kind, severity, detail, mitre));
    };
    if termination == Termination::Timeout {
        push(
            ViolationKind::Timeout,
            Severity::Medium,
            format!(
                "wall clock of {} s ran out; the whole tree was killed",
                limits.max_runtime_seconds
            ),
            None,
        );
    }
    if oom {
        push(
            ViolationKind::MemoryLimit,
            Severity::Medium,
            format!("memory limit of {} MiB hit; OOM kill", limits.memory_mb),
            None,
        );
    }
    if let Some(n) = o.cgroup.and_then(|u| u.pids_events_max).filter(|n| *n > 0) {
        push(
            ViolationKind::ProcessLimit,
            Severity::Medium,
            format!(
                "{n} fork(s) refused at the limit of {} processes",
                limits.max_processes
            ),
            None,
        );
    }
    for (name, c) in [("stdout", o.stdout), ("stderr", o.stderr)] {
        if c.truncated {
            push(
                ViolationKind::OutputLimit,
                Severity::Low,
                format!(
                    "{name}: {} bytes written, {} kept",
                    c.total, limits.max_output_bytes
                ),
                None,
            );
        }
    }
    let signal = (termination == Termination::Signaled).then_some(exit_code - 128);
    if signal == Some(libc::SIGSYS) {
        push(
            ViolationKind::SyscallBlocked,
            Severity::High,
            "killed by SIGSYS: a syscall through a non-native ABI (x32 or i386 int 0x80) was refused"
                .into(),
            audit::mitre_for_syscall("int 0x80"),
        );
    }
    if signal == Some(libc::SIGXFSZ) {
        push(
            ViolationKind::FileSizeLimit,
            Severity::Low,
            format!(
                "a write beyond {} MiB was refused (SIGXFSZ)",
                limits.max_file_size_mb
            ),
            None,
        );
    }
    Verdict {
        exit_code,
        termination,
        usage,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(total: u64, truncated: bool) -> Captured {
        Captured {
            total,
            truncated,
            ..Default::default()
        }
    }

    #[test]
    fn oom_wins_over_the_exit_code_and_is_a_violation() {
        let out = captured(3, false);
        let cg = CgroupUsage {
            oom_kills: 1,
            ..Default::default()
        };
        let v = judge(
            &Observed {
                end: &WaitEnd::Exited {
                    code: None,
                    signal: Some(9),
                },
                cgroup: Some(&cg),
                stdout: &out,
                stderr: &out,
            },
            &Limits::default(),
        );
        assert_eq!((v.exit_code, v.termination), (137, Termination::Oom));
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].kind, ViolationKind::MemoryLimit);
    }

    #[test]
    fn sigsys_timeout_and_truncation_are_named() {
        let (ok, cut) = (captured(1, false), captured(9, true));
        let sigsys = judge(
            &Observed {
                end: &WaitEnd::Exited {
                    code: None,
                    signal: Some(libc::SIGSYS),
                },
                cgroup: None,
                stdout: &ok,
                stderr: &cut,
            },
            &Limits::default(),
        );
        assert_eq!(sigsys.termination, Termination::Signaled);
        let kinds: Vec<_> = sigsys.violations.iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            [ViolationKind::OutputLimit, ViolationKind::SyscallBlocked]
        );
        let timeout = judge(
            &Observed {
                end: &WaitEnd::TimedOut,
                cgroup: None,
                stdout: &ok,
                stderr: &ok,
            },
            &Limits::default(),
        );
        assert_eq!(
            (timeout.exit_code, timeout.termination),
            (124, Termination::Timeout)
        );
        assert_eq!(timeout.violations[0].kind, ViolationKind::Timeout);
    }
}
