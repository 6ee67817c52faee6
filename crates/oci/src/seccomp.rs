//! The spec's `linux.seccomp` → a filter stacked on SkillSandbox's own
//! ([`skillsandbox_sandbox::seccomp::StackedProfile`]): the stricter of the two,
//! never the looser (the kernel applies the highest-precedence action of every
//! filter in the chain).
//!
//! Pure. What cannot be honoured exactly is refused, never skipped: a tracer
//! (`SCMP_ACT_TRACE`), a second listener (`SCMP_ACT_NOTIFY`, `listenerPath`), flags
//! that loosen or need a kernel interface we do not pass (`SPEC_ALLOW`, `LOG`,
//! `WAIT_KILLABLE_RECV`), an `architectures` list without the native one, and a
//! syscall name this libseccomp does not know in a rule that refuses (dropping an
//! allowing rule only makes the filter stricter, as runc does). Other architectures
//! in the list are covered by our filter, which kills every non-native ABI.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use skillsandbox_sandbox::seccomp::{
    syscall_number, StackedAction, StackedCond, StackedOp, StackedProfile, StackedRule,
};

use crate::error::OciError;

/// The label the report uses.
pub const SOURCE: &str = "the OCI spec's linux.seccomp";

/// The actions, operators and flags [`lower`] accepts, for `features`.
pub const SUPPORTED_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
];
pub const SUPPORTED_OPERATORS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// `TSYNC` is accepted: the filter is loaded in a single-threaded process, where
/// synchronising threads is a no-op.
pub const SUPPORTED_FLAGS: &[&str] = &["SECCOMP_FILTER_FLAG_TSYNC"];

fn refuse(what: impl Into<String>, hint: &str) -> OciError {
    OciError::Unsupported {
        what: format!("linux.seccomp: {}", what.into()),
        hint: hint.into(),
    }
}

/// The `architectures` a profile must include one of (`features`): the filter is
/// built for the native one; others listed beside it are accepted (ours kills them).
pub fn native_arch_names() -> Vec<String> {
    let mut v = vec!["SCMP_ARCH_NATIVE".to_string()];
    if let Some(a) = native_arch() {
        v.push(a.to_string());
    }
    v
}

/// The architecture this binary's filter is built for.
fn native_arch() -> Option<Arch> {
    if cfg!(target_arch = "x86_64") {
        Some(Arch::ScmpArchX86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Arch::ScmpArchAarch64)
    } else if cfg!(target_arch = "riscv64") {
        Some(Arch::ScmpArchRiscv64)
    } else if cfg!(target_arch = "s390x") {
        Some(Arch::ScmpArchS390x)
    } else {
        None
    }
}

fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    default_errno: Option<u32>,
) -> Result<StackedAction, OciError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => StackedAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            // runtime-spec: errnoRet, else defaultErrnoRet, else EPERM.
            let e = errno.or(default_errno).unwrap_or(libc::EPERM as u32);
            let e = u16::try_from(e)
                .ok()
                .filter(|e| *e <= 4095)
                .ok_or_else(|| {
                    refuse(
                        format!("errno {e} (above 4095)"),
                        "use an errno between 0 and 4095",
                    )
                })?;
            StackedAction::Errno(e)
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            StackedAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => StackedAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => StackedAction::Trap,
        LinuxSeccompAction::ScmpActLog => StackedAction::Log,
        LinuxSeccompAction::ScmpActTrace => {
            return Err(refuse(
                "the action SCMP_ACT_TRACE",
                "nothing traces the container (ptrace is refused inside); use SCMP_ACT_ERRNO",
            ))
        }
        LinuxSeccompAction::ScmpActNotify => {
            return Err(refuse(
                "the action SCMP_ACT_NOTIFY",
                "SkillSandbox's supervisor holds the only listener; use SCMP_ACT_ERRNO",
            ))
        }
    })
}

fn op(o: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (StackedOp, u64) {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => (StackedOp::Ne, value),
        LinuxSeccompOperator::ScmpCmpLt => (StackedOp::Lt, value),
        LinuxSeccompOperator::ScmpCmpLe => (StackedOp::Le, value),
        LinuxSeccompOperator::ScmpCmpEq => (StackedOp::Eq, value),
        LinuxSeccompOperator::ScmpCmpGe => (StackedOp::Ge, value),
        LinuxSeccompOperator::ScmpCmpGt => (StackedOp::Gt, value),
        // runtime-spec (and libseccomp): `value` is the mask, `valueTwo` the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (StackedOp::MaskedEq(value), value_two.unwrap_or(0))
        }
    }
}

/// The conditions of one spec rule, as the rules libseccomp takes: all at once, or,
/// when one argument is compared more than once (libseccomp cannot AND two
/// comparisons of the same argument), one rule per comparison, as runc does.
fn conditions(call: &LinuxSyscall) -> Result<Vec<Vec<StackedCond>>, OciError> {
    let mut conds = Vec::new();
    for a in call.args().iter().flatten() {
        let arg = u32::try_from(a.index())
            .ok()
            .filter(|i| *i < 6)
            .ok_or_else(|| {
                refuse(
                    format!("argument index {}", a.index()),
                    "syscalls have arguments 0 to 5",
                )
            })?;
        let (o, value) = op(a.op(), a.value(), a.value_two());
        conds.push(StackedCond { arg, op: o, value });
    }
    let mut seen = HashSet::new();
    let repeated = conds.iter().any(|c| !seen.insert(c.arg));
    Ok(if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

/// Lowers the spec's profile. Pure.
pub fn lower(s: &LinuxSeccomp) -> Result<StackedProfile, OciError> {
    if s.listener_path().is_some() {
        return Err(refuse(
            "listenerPath (a seccomp agent)",
            "SkillSandbox's supervisor holds the only listener; remove listenerPath",
        ));
    }
    for f in s.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            other => {
                return Err(refuse(
                    format!("the flag {other}"),
                    "supported flags: SECCOMP_FILTER_FLAG_TSYNC",
                ))
            }
        }
    }
    if let Some(archs) = s.architectures() {
        let native = native_arch();
        if !archs.is_empty()
            && !archs
                .iter()
                .any(|a| *a == Arch::ScmpArchNative || Some(*a) == native)
        {
            return Err(refuse(
                "an architectures list without the native architecture",
                "add the native one (SCMP_ARCH_X86_64 on x86_64), or leave the list empty",
            ));
        }
    }
    let default_errno = s.default_errno_ret();
    let default_action = action(s.default_action(), default_errno, None)?;
    let mut rules = Vec::new();
    for call in s.syscalls().iter().flatten() {
        let act = action(call.action(), call.errno_ret(), default_errno)?;
        // A rule that does what the default does is a no-op (libseccomp refuses it).
        if act == default_action {
            continue;
        }
        let conds = conditions(call)?;
        for name in call.names() {
            let Some(nr) = syscall_number(name) else {
                if act == StackedAction::Allow {
                    // Not allowing a syscall we cannot even name is stricter.
                    continue;
                }
                return Err(refuse(
                    format!(
                        "the syscall {name:?} (unknown to this libseccomp) in a rule that refuses"
                    ),
                    "check the name, or upgrade libseccomp",
                ));
            };
            for c in &conds {
                rules.push(StackedRule {
                    syscall: name.clone(),
                    nr,
                    action: act,
                    conds: c.clone(),
                });
            }
        }
    }
    Ok(StackedProfile {
        source: SOURCE.into(),
        default_action,
        rules,
        deferred: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seccomp(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn nr(name: &str) -> i32 {
        syscall_number(name).unwrap()
    }

    #[test]
    fn an_allow_list_profile_lowers_to_its_rules_exactly() {
        let p = lower(&seccomp(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                          {"index": 1, "value": 5, "op": "SCMP_CMP_GT"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO"}
            ]
        })))
        .unwrap();
        let rule = |s: &str, action, conds| StackedRule {
            syscall: s.into(),
            nr: nr(s),
            action,
            conds,
        };
        let eq = |arg, value| StackedCond {
            arg,
            op: StackedOp::Eq,
            value,
        };
        assert_eq!(
            p,
            StackedProfile {
                source: SOURCE.into(),
                default_action: StackedAction::Errno(1),
                rules: vec![
                    rule("read", StackedAction::Allow, vec![]),
                    rule("write", StackedAction::Allow, vec![]),
                    // The same argument twice: one rule each (OR), as runc does.
                    rule("personality", StackedAction::Allow, vec![eq(0, 0)]),
                    rule("personality", StackedAction::Allow, vec![eq(0, 8)]),
                    rule(
                        "clone",
                        StackedAction::Allow,
                        vec![
                            StackedCond {
                                arg: 0,
                                op: StackedOp::MaskedEq(2114060288),
                                value: 0
                            },
                            StackedCond {
                                arg: 1,
                                op: StackedOp::Gt,
                                value: 5
                            },
                        ]
                    ),
                    rule("clone3", StackedAction::Errno(38), vec![]),
                    // errnoRet unset: defaultErrnoRet, which equals the default: dropped.
                ],
                deferred: vec![],
            }
        );
    }

    #[test]
    fn a_deny_list_profile_keeps_its_refusals() {
        let p = lower(&seccomp(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        let got: Vec<(&str, StackedAction)> = p
            .rules
            .iter()
            .map(|r| (r.syscall.as_str(), r.action))
            .collect();
        assert_eq!(p.default_action, StackedAction::Allow);
        assert_eq!(
            got,
            vec![
                ("mkdir", StackedAction::Errno(1)),
                ("mkdirat", StackedAction::Errno(1)),
                ("uname", StackedAction::KillProcess),
            ]
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let refused = |v: serde_json::Value, needle: &str| {
            let e = lower(&seccomp(v)).unwrap_err();
            assert!(matches!(e, OciError::Unsupported { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        };
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_TRACE"}]}),
            "SCMP_ACT_TRACE",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "SCMP_ACT_NOTIFY",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
            "listenerPath",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}),
            "SPEC_ALLOW",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_MIPS"]}),
            "native",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"}]}),
            "no_such_syscall_xyz",
        );
        refused(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
            "argument index 6",
        );
        // An architecture the spec does not know is refused when the bundle is read.
        assert!(serde_json::from_value::<LinuxSeccomp>(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]})
        )
        .is_err());
    }

    #[test]
    fn what_ours_always_refuses_is_left_to_ours_unless_the_spec_kills() {
        use skillsandbox_manifest::SyscallProfile;
        use skillsandbox_sandbox::seccomp::seccomp_plan;
        let ours = seccomp_plan(SyscallProfile::Default);
        assert!(ours.denied.iter().any(|d| d.name == "unshare"));
        assert!(ours.denied.iter().any(|d| d.name == "ptrace"));
        assert!(!ours.denied.iter().any(|d| d.name == "mkdir"));
        // An allow list (Docker's shape): unshare is refused by the default errno;
        // it becomes an explicit allow, so ours refuses and records it.
        let mut p = lower(&seccomp(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "mkdir"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        p.defer_to(&ours);
        assert!(
            p.deferred.contains(&"unshare".to_string()),
            "{:?}",
            p.deferred
        );
        assert!(p.rules.iter().any(|r| r.syscall == "unshare"
            && r.action == StackedAction::Allow
            && r.conds.is_empty()));
        // The spec's own refusals of what ours allows stay.
        assert_eq!(p.default_action, StackedAction::Errno(1));
        assert!(!p.deferred.contains(&"mkdir".to_string()));
        // A deny list: the errno rule for unshare is dropped, mkdir's kept, ptrace's
        // kill kept (stricter than ours).
        let mut p = lower(&seccomp(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare", "mkdir"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"}]
        })))
        .unwrap();
        p.defer_to(&ours);
        let got: Vec<(&str, StackedAction)> = p
            .rules
            .iter()
            .map(|r| (r.syscall.as_str(), r.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("mkdir", StackedAction::Errno(1)),
                ("ptrace", StackedAction::KillProcess)
            ]
        );
        assert_eq!(p.deferred, vec!["unshare".to_string()]);
    }

    #[test]
    fn the_lowered_profile_compiles() {
        let p = lower(&seccomp(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                         {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}]
        })))
        .unwrap();
        let f = skillsandbox_sandbox::seccomp::compile_stacked(&p).unwrap();
        assert!(!f.program.is_empty() && f.program.len().is_multiple_of(8));
        assert!(f.detail.contains("3 rules, default allow"), "{}", f.detail);
    }
}
