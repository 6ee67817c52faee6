//! Turns a [`SeccompPlan`] into a libseccomp filter and loads it on the calling thread.

use std::os::fd::OwnedFd;

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Serialize};
use skillsandbox_manifest::SyscallProfile;

use super::lower::lower_conditions;
use super::{profile_name, syscall_number, SeccompError, SeccompPlan};

/// How the filter refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeccompOptions {
    /// Refuse through user notification instead of a direct errno: every refused call
    /// waits until the supervisor, holding [`SeccompReport::notify_fd`], answers it
    /// with the plan's errno (see [`super::serve_notifications`]). If nobody holds the
    /// fd any more, the kernel fails the call with `ENOSYS`: still refused.
    pub notify_denied: bool,
    /// Also send every call that names a path or a destination
    /// ([`super::OBSERVED_SYSCALLS`]) to the supervisor, which records it and lets it
    /// continue (see [`super::serve_observing`]); implies `notify_denied`. For
    /// `skillsandbox learn` only: the supervisor's answer is on the path of every open.
    pub observe: bool,
    /// Also send [`super::WATCHED_EGRESS_SYSCALLS`] (`connect`, and `sendto` with an
    /// address) to the supervisor, which records where they go and lets them continue
    /// (see [`super::serve_watching_egress`]). Rare calls: off the hot path.
    pub watch_egress: bool,
}

/// What was installed.
#[derive(Debug)]
pub struct SeccompReport {
    pub profile: SyscallProfile,
    /// Rules handed to libseccomp after lowering (one list row may become several).
    pub filter_rules: usize,
    /// `no_new_privs` was already set before this call.
    pub no_new_privs_was_set: bool,
    /// The listener fd in notify mode (close-on-exec); `None` otherwise. Hand it to
    /// the supervisor, then close it here before `execve`.
    pub notify_fd: Option<OwnedFd>,
    /// One line for the enforcement report.
    pub detail: String,
}

fn resolve(name: &'static str) -> Result<ScmpSyscall, SeccompError> {
    syscall_number(name)
        .map(ScmpSyscall::from)
        .ok_or(SeccompError::ResolveSyscall { name })
}

/// A filter context answering `default`, with the settings every filter of ours
/// has: only the native architecture (any other ABI — i386 through `int 0x80`, x32
/// numbers, which libseccomp checks on x86_64 — is "bad arch" and kills), and
/// `no_new_privs` set on load.
pub(super) fn new_context(default: ScmpAction) -> Result<ScmpFilterContext, SeccompError> {
    let mut ctx =
        ScmpFilterContext::new(default).map_err(|source| SeccompError::CreateFilter { source })?;
    ctx.set_act_badarch(ScmpAction::KillProcess)
        .map_err(|source| SeccompError::SetAttribute {
            attr: "SCMP_FLTATR_ACT_BADARCH",
            source,
        })?;
    ctx.set_ctl_nnp(true)
        .map_err(|source| SeccompError::SetAttribute {
            attr: "SCMP_FLTATR_CTL_NNP",
            source,
        })?;
    Ok(ctx)
}

/// Builds the libseccomp filter for `plan` (not loaded). Returns it with its rule count.
fn build_filter(
    plan: &SeccompPlan,
    opts: &SeccompOptions,
) -> Result<(ScmpFilterContext, usize), SeccompError> {
    let mut ctx = new_context(ScmpAction::Allow)?;
    // A binary tree over syscall numbers instead of a linear list: syscalls with
    // argument rules (openat, ioctl, clone, ...) are hot, and their cost is the walk.
    ctx.set_ctl_optimize(2)
        .map_err(|source| SeccompError::SetAttribute {
            attr: "SCMP_FLTATR_CTL_OPTIMIZE",
            source,
        })?;
    // ENOSYS entries (clone3, openat2) are compatibility fallbacks, not refusals: libc
    // retries with the older call, so the kernel answers them directly and they are
    // neither slowed down by a round trip nor reported as violations.
    let notify = opts.notify_denied || opts.observe;
    let action = |errno: i32| {
        if notify && errno != libc::ENOSYS {
            ScmpAction::Notify
        } else {
            ScmpAction::Errno(errno)
        }
    };
    let mut rules = 0usize;
    // Observe mode: an observed call always goes to the supervisor, which applies the
    // plan's argument rules itself (`SeccompPlan::refusal_for`); so those rules are
    // not in the filter for these calls (libseccomp takes one action per call shape).
    let observed = if opts.observe {
        super::observed_syscalls(plan)
    } else if opts.watch_egress {
        super::watched_egress_syscalls(plan)
    } else {
        Vec::new()
    };
    for name in &observed {
        // `sendto` without an address (a connected socket) names no destination.
        let added = if *name == "sendto" {
            ctx.add_rule_conditional(
                ScmpAction::Notify,
                resolve(name)?,
                &[ScmpArgCompare::new(4, ScmpCompareOp::NotEqual, 0)],
            )
        } else {
            ctx.add_rule(ScmpAction::Notify, resolve(name)?)
        };
        added.map_err(|source| SeccompError::AddRule {
            syscall: name,
            rule: if opts.observe {
                "observe"
            } else {
                "watch egress"
            }
            .into(),
            source,
        })?;
        rules += 1;
    }
    for d in &plan.denied {
        ctx.add_rule(action(d.errno), resolve(d.name)?)
            .map_err(|source| SeccompError::AddRule {
                syscall: d.name,
                rule: "always".into(),
                source,
            })?;
        rules += 1;
    }
    for r in plan
        .arg_rules
        .iter()
        .filter(|r| !observed.contains(&r.name))
    {
        let sc = resolve(r.name)?;
        for conj in lower_conditions(r.when) {
            let cmps: Vec<ScmpArgCompare> = conj
                .iter()
                .map(|c| ScmpArgCompare::new(c.arg, ScmpCompareOp::MaskedEqual(c.mask), c.value))
                .collect();
            ctx.add_rule_conditional(action(r.errno), sc, &cmps)
                .map_err(|source| SeccompError::AddRule {
                    syscall: r.name,
                    rule: r.condition_text(),
                    source,
                })?;
            rules += 1;
        }
    }
    Ok((ctx, rules))
}

/// A filter compiled ahead of the launch: classic BPF as the kernel takes it (8 bytes
/// per instruction), so the stage only has to load it. The supervisor compiles it
/// while it prepares the launch (and may reuse it for the same plan); libseccomp's
/// tree building stays off the sandbox's critical path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledFilter {
    pub profile: SyscallProfile,
    pub program: Vec<u8>,
    /// Load with `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the filter notifies.
    pub listener: bool,
    /// Rules handed to libseccomp after lowering.
    pub filter_rules: usize,
    /// One line for the enforcement report.
    pub detail: String,
}

/// Compiles `plan` with `opts` into the program [`load_compiled_on_current_thread`]
/// installs. Pure: loads nothing.
pub fn compile_filter(
    plan: &SeccompPlan,
    opts: &SeccompOptions,
) -> Result<CompiledFilter, SeccompError> {
    let (ctx, filter_rules) = build_filter(plan, opts)?;
    let program = super::sys::export_bpf(&ctx).map_err(|source| SeccompError::Export { source })?;
    let listener = (opts.notify_denied || opts.observe || opts.watch_egress) && filter_rules > 0;
    let mode = if listener && opts.observe {
        "refusals answered and paths observed by the supervisor (user notification)"
    } else if listener && opts.watch_egress {
        "refusals answered and egress attempts recorded by the supervisor (user notification)"
    } else if listener {
        "refusals answered by the supervisor (user notification)"
    } else {
        "refusals answered by the filter"
    };
    Ok(CompiledFilter {
        profile: plan.profile,
        program,
        listener,
        filter_rules,
        detail: format!("{}; {filter_rules} filter rules; {mode}", plan.summary()),
    })
}

/// Installs the filter of `plan` on the calling thread (and everything it later
/// `execve`s or forks): [`compile_filter`], then [`load_compiled_on_current_thread`].
pub fn apply_seccomp_on_current_thread(
    plan: &SeccompPlan,
    opts: &SeccompOptions,
) -> Result<SeccompReport, SeccompError> {
    load_compiled_on_current_thread(&compile_filter(plan, opts)?)
}

/// Installs a compiled filter on the calling thread (and everything it later
/// `execve`s or forks). Sets `no_new_privs` first if it is not set yet. Irreversible:
/// call it in the single-threaded child as the last step before `execve` (no TSYNC:
/// other threads, if any, stay unfiltered).
///
/// Call at most once per process with a listener: the kernel allows one listener
/// per filter chain.
pub fn load_compiled_on_current_thread(
    filter: &CompiledFilter,
) -> Result<SeccompReport, SeccompError> {
    let no_new_privs_was_set = nix::sys::prctl::get_no_new_privs()
        .map_err(|source| SeccompError::SetNoNewPrivs { source })?;
    if !no_new_privs_was_set {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|source| SeccompError::SetNoNewPrivs { source })?;
    }
    let notify_fd =
        super::sys::load_filter(&filter.program, filter.listener).map_err(|source| {
            SeccompError::LoadProgram {
                profile: profile_name(filter.profile),
                source,
            }
        })?;
    Ok(SeccompReport {
        profile: filter.profile,
        filter_rules: filter.filter_rules,
        no_new_privs_was_set,
        notify_fd,
        detail: filter.detail.clone(),
    })
}
