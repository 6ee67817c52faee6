//! Seccomp: the syscall filter the skill process installs as the very last step
//! before `execve` (DESIGN.md §3 step 6; the lists are §5).
//!
//! Owns the per-profile tables ([`DEFAULT_DENIED`], [`DEFAULT_ARG_RULES`],
//! [`STRICT_DENIED`], [`STRICT_ARG_RULES`]), the pure [`SeccompPlan`] built from them,
//! the applier that turns a plan into a libseccomp filter on the calling thread, and the
//! supervisor side of notify mode ([`serve_notifications`]).
//!
//! Never call the applier in a process that must stay unconfined: a filter cannot be
//! removed. Callers run it in the single-threaded child right before `execve`; tests
//! run it in forked children.
//!
//! Every profile, `permissive` included, builds the filter for the native
//! architecture only: a syscall made through another ABI (x32 numbers, i386 via
//! `int 0x80`) kills the whole process with `SIGSYS` ([`FOREIGN_ABI_ACTION`]).

mod apply;
mod lower;
mod notify;
mod observe;
mod stacked;
mod sys;
mod tables;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::Serialize;
use skillsandbox_manifest::SyscallProfile;

pub use apply::{
    apply_seccomp_on_current_thread, compile_filter, load_compiled_on_current_thread,
    CompiledFilter, SeccompOptions, SeccompReport,
};
pub use notify::{serve_notifications, SyscallRefusal};
pub use observe::{
    observed_syscalls, serve_observing, serve_watching_egress, watched_egress_syscalls, Access,
    AccessKind, OBSERVED_SYSCALLS, WATCHED_EGRESS_SYSCALLS,
};
pub use stacked::{
    compile_stacked, load_stacked_on_current_thread, StackedAction, StackedCond, StackedFilter,
    StackedOp, StackedProfile, StackedRule,
};
pub use tables::{
    DEFAULT_ARG_RULES, DEFAULT_DENIED, SETID_ARG_RULES, STRICT_ARG_RULES, STRICT_DENIED,
    STRICT_SOCKET_FAMILIES,
};

/// What happens to a syscall made through a non-native ABI, in every profile.
pub const FOREIGN_ABI_ACTION: &str = "kill the process (SIGSYS)";

/// Syscalls newer than some libseccomp releases know by name. Numbers from 424 on
/// are the same on every architecture but alpha.
pub const NEWER_SYSCALLS: &[(&str, i32)] = &[("open_tree_attr", 467), ("fchmodat2", 452)];

/// The native-architecture number of a syscall, as the filter resolves it (libseccomp's
/// table, then [`NEWER_SYSCALLS`]); `None` when neither knows the name.
pub fn syscall_number(name: &str) -> Option<i32> {
    if let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) {
        return Some(sc.as_raw_syscall());
    }
    NEWER_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, nr)| nr)
}

/// A syscall refused whatever its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeniedSyscall {
    pub name: &'static str,
    /// The errno the caller gets (positive, e.g. `libc::EPERM`).
    pub errno: i32,
    pub reason: &'static str,
}

/// One condition on a syscall argument. Conditions of a rule all hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum ArgCond {
    /// `(args[arg] & mask) == value`.
    MaskedEq { arg: u32, mask: u64, value: u64 },
    /// The low 32 bits of `args[arg]` are one of `values` (for `int` arguments, whose
    /// upper half the kernel ignores).
    Lo32In { arg: u32, values: &'static [u32] },
    /// The low 32 bits of `args[arg]` are none of `values`.
    Lo32NotIn { arg: u32, values: &'static [u32] },
}

impl ArgCond {
    /// The argument index this condition reads.
    pub fn arg(&self) -> u32 {
        match *self {
            ArgCond::MaskedEq { arg, .. }
            | ArgCond::Lo32In { arg, .. }
            | ArgCond::Lo32NotIn { arg, .. } => arg,
        }
    }

    /// Whether the condition holds for these syscall arguments.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        let Some(&a) = usize::try_from(self.arg()).ok().and_then(|i| args.get(i)) else {
            return false;
        };
        let lo32 = (a & 0xffff_ffff) as u32;
        match *self {
            ArgCond::MaskedEq { mask, value, .. } => a & mask == value,
            ArgCond::Lo32In { values, .. } => values.contains(&lo32),
            ArgCond::Lo32NotIn { values, .. } => !values.contains(&lo32),
        }
    }
}

fn fmt_value(v: u64) -> String {
    if v < 0x100 {
        v.to_string()
    } else {
        format!("{v:#x}")
    }
}

impl fmt::Display for ArgCond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &[u32]| {
            let items: Vec<String> = values.iter().map(|v| fmt_value(u64::from(*v))).collect();
            items.join(", ")
        };
        match *self {
            ArgCond::MaskedEq { arg, mask, value } => {
                write!(f, "arg{arg} & {mask:#x} == {value:#x}")
            }
            ArgCond::Lo32In { arg, values } => {
                write!(f, "arg{arg} (low 32 bits) in {{{}}}", list(values))
            }
            ArgCond::Lo32NotIn { arg, values } => {
                write!(f, "arg{arg} (low 32 bits) not in {{{}}}", list(values))
            }
        }
    }
}

/// A syscall refused when all of `when` hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArgRule {
    pub name: &'static str,
    pub errno: i32,
    pub when: &'static [ArgCond],
    pub reason: &'static str,
}

impl ArgRule {
    /// Whether the rule refuses a call with these arguments.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        self.when.iter().all(|c| c.matches(args))
    }

    /// The conditions as one line, e.g. `arg1 & 0xffffffff == 0x5412`.
    pub fn condition_text(&self) -> String {
        let parts: Vec<String> = self.when.iter().map(ToString::to_string).collect();
        parts.join(" and ")
    }
}

/// What the filter of one profile refuses, as data. Everything not listed is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompPlan {
    pub profile: SyscallProfile,
    /// Refused whatever the arguments.
    pub denied: Vec<DeniedSyscall>,
    /// Refused when the arguments match. For one syscall, rules with different
    /// errnos never match the same call (the tables keep them disjoint).
    pub arg_rules: Vec<ArgRule>,
}

/// Why and how a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub errno: i32,
    pub reason: &'static str,
}

impl SeccompPlan {
    /// The refusal this plan gives a call, or `None` when the filter lets it through.
    /// Mirrors the installed filter exactly (the supervisor answers notifications with it).
    pub fn refusal_for(&self, name: &str, args: &[u64; 6]) -> Option<Refusal> {
        if let Some(d) = self.denied.iter().find(|d| d.name == name) {
            return Some(Refusal {
                errno: d.errno,
                reason: d.reason,
            });
        }
        self.arg_rules
            .iter()
            .find(|r| r.name == name && r.matches(args))
            .map(|r| Refusal {
                errno: r.errno,
                reason: r.reason,
            })
    }

    /// Every syscall name the plan mentions, in table order, without repeats.
    pub fn syscall_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        let all = self.denied.iter().map(|d| d.name);
        for n in all.chain(self.arg_rules.iter().map(|r| r.name)) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// The plan without [`SETID_ARG_RULES`], for a run where nothing the skill
    /// creates outlives it on the host: a set-id bit then lands only on the run's own
    /// tmpfs, where it is inert (`no_new_privs` and `nosuid` mounts), and `openat`,
    /// `chmod` & co. get no argument rule, so the kernel's per-syscall cache lets them
    /// through without running the filter (measured: ~70 ns per `openat` here).
    pub fn without_setid_rules(mut self) -> Self {
        self.arg_rules.retain(|r| !SETID_ARG_RULES.contains(r));
        self
    }

    /// Whether the set-id refusals are in the plan (a profile that has them).
    pub fn refuses_setid(&self) -> bool {
        self.arg_rules.iter().any(|r| SETID_ARG_RULES.contains(r))
    }

    /// One line for the enforcement report.
    pub fn summary(&self) -> String {
        let setid = if self.profile != SyscallProfile::Permissive && !self.refuses_setid() {
            " (set-id modes allowed: no file of the run outlives it on the host)"
        } else {
            ""
        };
        format!(
            "{} profile: {} syscalls refused by name, {} argument rules{setid}; non-native \
             ABIs: {}",
            profile_name(self.profile),
            self.denied.len(),
            self.arg_rules.len(),
            FOREIGN_ABI_ACTION
        )
    }
}

/// The lowercase manifest name of a profile.
pub fn profile_name(profile: SyscallProfile) -> &'static str {
    match profile {
        SyscallProfile::Default => "default",
        SyscallProfile::Strict => "strict",
        SyscallProfile::Permissive => "permissive",
    }
}

/// The lists of one profile (DESIGN.md §5): `permissive` has none (the arch checks
/// only), `default` the default tables, `strict` the default tables plus its own.
pub fn seccomp_plan(profile: SyscallProfile) -> SeccompPlan {
    let (denied, arg_rules): (Vec<_>, Vec<_>) = match profile {
        SyscallProfile::Permissive => (Vec::new(), Vec::new()),
        SyscallProfile::Default => (
            DEFAULT_DENIED.to_vec(),
            [SETID_ARG_RULES, DEFAULT_ARG_RULES].concat(),
        ),
        SyscallProfile::Strict => (
            [DEFAULT_DENIED, STRICT_DENIED].concat(),
            [SETID_ARG_RULES, DEFAULT_ARG_RULES, STRICT_ARG_RULES].concat(),
        ),
    };
    SeccompPlan {
        profile,
        denied,
        arg_rules,
    }
}

/// The symbolic name of the errnos the tables use (`EPERM`, ...); `E<n>` otherwise.
pub fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        libc::EACCES => "EACCES".into(),
        other => format!("E{other}"),
    }
}

/// A markdown table of refused-by-name syscalls, as `docs/seccomp.md` shows it.
pub fn denied_table_markdown(rows: &[DeniedSyscall]) -> String {
    let mut out = String::from("| syscall | errno | reason |\n|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.name,
            errno_name(r.errno),
            r.reason
        ));
    }
    out
}

/// A markdown table of argument rules, as `docs/seccomp.md` shows it.
pub fn arg_rules_table_markdown(rows: &[ArgRule]) -> String {
    let mut out = String::from("| syscall | refused when | errno | reason |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            r.name,
            r.condition_text(),
            errno_name(r.errno),
            r.reason
        ));
    }
    out
}

/// Errors of building, loading or serving a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp_init => {source}; is libseccomp (>= 2.5) installed and working?")]
    CreateFilter {
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp_attr_set({attr}) => {source}")]
    SetAttribute {
        attr: &'static str,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error(
        "syscall {name} is unknown to the installed libseccomp and has no built-in number: \
         upgrade libseccomp"
    )]
    ResolveSyscall { name: &'static str },
    #[error("seccomp_rule_add({syscall}, {rule}) => {source}")]
    AddRule {
        syscall: &'static str,
        rule: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp_rule_add({syscall}) of the stacked filter => {source}")]
    AddStackedRule {
        syscall: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) (stacked filter) => {source}")]
    LoadStacked {
        #[source]
        source: std::io::Error,
    },
    #[error("prctl(PR_SET_NO_NEW_PRIVS, 1) => {source}")]
    SetNoNewPrivs {
        #[source]
        source: nix::Error,
    },
    #[error("seccomp_export_bpf => {source}")]
    Export {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "seccomp(SECCOMP_SET_MODE_FILTER) ({profile} profile) => {source}; the kernel needs \
         CONFIG_SECCOMP_FILTER (and user notification, Linux >= 5.0, when refusals are \
         observed)"
    )]
    LoadProgram {
        profile: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("poll(seccomp listener) => {source}")]
    PollNotifyFd {
        #[source]
        source: nix::Error,
    },
    #[error("ioctl(seccomp listener, SECCOMP_IOCTL_NOTIF_RECV) => {source}")]
    ReceiveNotification {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ioctl(seccomp listener, SECCOMP_IOCTL_NOTIF_SEND) for {syscall} of pid {pid} => {source}"
    )]
    RespondNotification {
        syscall: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}
