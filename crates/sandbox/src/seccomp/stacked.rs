//! A second filter stacked on ours: an OCI bundle's `linux.seccomp` (Docker's default
//! profile, or `--security-opt seccomp=FILE`).
//!
//! The kernel runs every filter of a chain on each call and applies the action of the
//! highest precedence (`KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF >
//! TRACE > LOG > ALLOW`), so a call passes only if both filters let it pass: the
//! stricter of the two, never the looser. One consequence: a call both refuse is
//! refused with the stacked filter's `ERRNO` (or kill), which outranks our
//! `USER_NOTIF`, so our supervisor would never see it and record no violation. So
//! [`StackedProfile::defer_to`] leaves the syscalls ours refuses whatever their
//! arguments to ours (the stacked filter allows them; ours refuses and records them):
//! exactly as strict, and recorded. The spec's kill and trap actions are kept.
//!
//! Pure data ([`StackedProfile`]) lowered by the caller; [`compile_stacked`] turns it
//! into a classic-BPF program; the stage loads it after ours, as its last filter.

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpSyscall};
use serde::{Deserialize, Serialize};

use super::SeccompError;

/// What the stacked filter does with a call (the subset of libseccomp's actions a
/// stacked filter may take: no tracer, no second listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackedAction {
    Allow,
    /// Fail the call with this (positive) errno.
    Errno(u16),
    KillThread,
    KillProcess,
    Trap,
    /// Allow and log (audit).
    Log,
}

impl StackedAction {
    fn scmp(self) -> ScmpAction {
        match self {
            StackedAction::Allow => ScmpAction::Allow,
            StackedAction::Errno(e) => ScmpAction::Errno(i32::from(e)),
            StackedAction::KillThread => ScmpAction::KillThread,
            StackedAction::KillProcess => ScmpAction::KillProcess,
            StackedAction::Trap => ScmpAction::Trap,
            StackedAction::Log => ScmpAction::Log,
        }
    }
}

/// A comparison of one syscall argument with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackedOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// `args[arg] <op> value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackedCond {
    pub arg: u32,
    pub op: StackedOp,
    pub value: u64,
}

/// One rule: `action` for `syscall` when all `conds` hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackedRule {
    pub syscall: String,
    /// The native number ([`super::syscall_number`]).
    pub nr: i32,
    pub action: StackedAction,
    pub conds: Vec<StackedCond>,
}

/// A whole stacked filter, as data: native architecture only (our filter kills every
/// other ABI, so rules for them could only be looser than ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackedProfile {
    /// Where it came from, for the report (`the OCI spec's linux.seccomp`).
    pub source: String,
    pub default_action: StackedAction,
    pub rules: Vec<StackedRule>,
    /// Syscalls left to ours by [`StackedProfile::defer_to`].
    #[serde(default)]
    pub deferred: Vec<String>,
}

fn refuses_without_killing(a: StackedAction) -> bool {
    matches!(
        a,
        StackedAction::Allow | StackedAction::Log | StackedAction::Errno(_)
    )
}

impl StackedProfile {
    /// Leave every syscall `ours` refuses whatever its arguments to our filter, where
    /// the stacked filter would answer it with an errno: its rules for it are replaced
    /// by one `ALLOW` (when the default would refuse it) or dropped. The call is still
    /// refused, whatever its arguments — by ours, which records it as a violation —
    /// instead of by an `ERRNO` that outranks our `USER_NOTIF` and hides it. Kill and
    /// trap actions of the spec are kept (they are stricter: the process dies).
    pub fn defer_to(&mut self, ours: &super::SeccompPlan) {
        for d in &ours.denied {
            let Some(nr) = super::syscall_number(d.name) else {
                continue;
            };
            let mentioned = self.rules.iter().any(|r| r.nr == nr);
            let default_refuses = self.default_action != StackedAction::Allow
                && self.default_action != StackedAction::Log;
            if !mentioned && !default_refuses {
                continue;
            }
            let all_soft = refuses_without_killing(self.default_action)
                && self
                    .rules
                    .iter()
                    .filter(|r| r.nr == nr)
                    .all(|r| refuses_without_killing(r.action));
            if !all_soft {
                continue;
            }
            self.rules.retain(|r| r.nr != nr);
            if default_refuses {
                self.rules.push(StackedRule {
                    syscall: d.name.to_string(),
                    nr,
                    action: StackedAction::Allow,
                    conds: Vec::new(),
                });
            }
            self.deferred.push(d.name.to_string());
        }
    }
}

/// A stacked filter compiled by the supervisor; the stage only loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackedFilter {
    pub program: Vec<u8>,
    /// One line for the enforcement report.
    pub detail: String,
}

/// Builds the program of `profile`. Pure: loads nothing.
pub fn compile_stacked(profile: &StackedProfile) -> Result<StackedFilter, SeccompError> {
    let mut ctx = super::apply::new_context(profile.default_action.scmp())?;
    for r in &profile.rules {
        let cmps: Vec<ScmpArgCompare> = r
            .conds
            .iter()
            .map(|c| {
                let op = match c.op {
                    StackedOp::Ne => ScmpCompareOp::NotEqual,
                    StackedOp::Lt => ScmpCompareOp::Less,
                    StackedOp::Le => ScmpCompareOp::LessOrEqual,
                    StackedOp::Eq => ScmpCompareOp::Equal,
                    StackedOp::Ge => ScmpCompareOp::GreaterEqual,
                    StackedOp::Gt => ScmpCompareOp::Greater,
                    StackedOp::MaskedEq(mask) => ScmpCompareOp::MaskedEqual(mask),
                };
                ScmpArgCompare::new(c.arg, op, c.value)
            })
            .collect();
        ctx.add_rule_conditional(r.action.scmp(), ScmpSyscall::from(r.nr), &cmps)
            .map_err(|source| SeccompError::AddStackedRule {
                syscall: r.syscall.clone(),
                source,
            })?;
    }
    let program = super::sys::export_bpf(&ctx).map_err(|source| SeccompError::Export { source })?;
    let default = match profile.default_action {
        StackedAction::Allow => "allow".to_string(),
        StackedAction::Errno(e) => format!("errno {}", super::errno_name(i32::from(e))),
        StackedAction::KillThread => "kill thread".into(),
        StackedAction::KillProcess => "kill process".into(),
        StackedAction::Trap => "trap".into(),
        StackedAction::Log => "log".into(),
    };
    let deferred = if profile.deferred.is_empty() {
        String::new()
    } else {
        format!(
            "; {} syscalls ours always refuses left to ours, so they are recorded",
            profile.deferred.len()
        )
    };
    Ok(StackedFilter {
        program,
        detail: format!(
            "{} stacked ({} rules, default {default}): a call runs only if both filters \
             allow it{deferred}",
            profile.source,
            profile.rules.len()
        ),
    })
}

/// Installs a stacked filter on the calling thread, without a listener.
/// `no_new_privs` must already be set (ours sets it).
pub fn load_stacked_on_current_thread(filter: &StackedFilter) -> Result<(), SeccompError> {
    super::sys::load_filter(&filter.program, false)
        .map(drop)
        .map_err(|source| SeccompError::LoadStacked { source })
}
