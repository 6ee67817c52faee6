//! Child side of the process tier, in the order it runs (docs/tiers.md lists the same
//! steps). Two processes, no namespaces:
//!
//! - **stage** (a fresh exec of our binary, already in the run's cgroup): drops host
//!   root (bounding set first, then groups, gid, uid), becomes the child subreaper of
//!   the run, forks the skill, reaps whatever the skill orphans, and when the skill
//!   ends kills every process left beneath it before reporting the exit.
//! - **skill**: session, parent-death signal, workdir, rlimits, fds, capabilities,
//!   `no_new_privs`, Landlock (+ a TCP-bind ruleset), socket filter, seccomp —
//!   then `execve` with the scrubbed environment.

use crate::stage::Exec;
use std::os::fd::{AsFd, AsRawFd};

use caps::CapSet;

use super::sockets::apply_socket_filter;
use super::ProcessTierPlan;
use crate::confine::note;
use crate::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use crate::landlock::{apply_landlock_on_current_thread, LandlockEnforcement, LandlockRules};
use crate::plan::LaunchPlan;
use crate::proto::{self, FromChild, LayerNote};
use crate::stage::{control, report_failure, StageError};
use crate::sys;

/// Landlock ABI from which `connect` to pathname unix sockets is policed.
const ABI_RESOLVE_UNIX: i32 = 9;

/// The stage of a process-tier run; returns the skill's exit status.
pub(crate) fn run_stage(plan: &LaunchPlan, p: &ProcessTierPlan) -> Result<i32, StageError> {
    let supervisor = sys::getppid();
    if plan.identity.drop_host_root {
        // Never run the skill as host root: empty the bounding set while we still may,
        // then become the unprivileged sandbox user (permitted/effective empty out).
        caps::clear(None, CapSet::Bounding)
            .map_err(|e| StageError::new("drop bounding caps", e))?;
        sys::clear_groups()
            .and_then(|()| sys::setresgid(plan.identity.host_gid))
            .and_then(|()| sys::setresuid(plan.identity.host_uid))
            .map_err(|e| StageError::new("drop host root", e))?;
        // That cleared the parent-death signal: the pidfd below watches instead.
    }
    // Orphans of the skill reparent here, so none outlives the run unnoticed.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| StageError::new("prctl(PR_SET_CHILD_SUBREAPER)", e))?;

    // The supervisor, watched through a pidfd; opened, then checked to be still our
    // parent (were it gone, the pid could name another process by now).
    let watch = sys::pidfd_open(supervisor as u32)
        .map_err(|e| StageError::new("watch the supervisor", e))?;
    if sys::getppid() != supervisor {
        return Err(StageError::new(
            "watch the supervisor",
            "supervisor is gone",
        ));
    }

    let stage_pid = sys::getpid();
    let skill = sys::fork().map_err(|e| StageError::new("fork skill", e))?;
    if skill == 0 {
        crate::timing::stage_mark("fork_skill");
        let err = skill_main(plan, p, stage_pid);
        report_failure(&err);
        sys::exit_now(err.exit_code);
    }
    // Outlive the supervisor: were it killed, a parent-death SIGKILL would take this
    // stage down before it could kill the skill's detached descendants (only the
    // skill itself has a death signal, ours), and no PID namespace ends them on this
    // tier. Its death is noticed through the pidfd instead, and everything goes.
    sys::set_parent_death_signal(0).map_err(|e| StageError::new("parent death signal", e))?;
    let Some(status) = wait_skill(skill, &watch)? else {
        kill_leftovers(stage_pid);
        return Ok(128 + libc::SIGKILL);
    };
    kill_leftovers(stage_pid);
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (None, Some(libc::WTERMSIG(status)))
    };
    let _ = proto::send(control(), &FromChild::Exited { code, signal }, &[]);
    Ok(code.unwrap_or(128 + signal.unwrap_or(0)))
}

/// Reaps children as they end until the skill does: its wait status, or `None` once
/// the supervisor (`watch`, its pidfd) is gone. Orphans of the skill that end
/// meanwhile are reaped within 100 ms (they would hold pids of the cgroup's limit).
fn wait_skill(
    skill: libc::pid_t,
    watch: &std::os::fd::OwnedFd,
) -> Result<Option<libc::c_int>, StageError> {
    use std::os::fd::AsFd;
    let skill_fd = sys::pidfd_open(skill as u32).map_err(|e| StageError::new("reap", e))?;
    loop {
        while let Ok((pid, status)) = sys::waitpid(-1, libc::WNOHANG) {
            if pid <= 0 {
                break;
            }
            if pid == skill {
                return Ok(Some(status));
            }
        }
        let [supervisor_gone, _] = sys::poll_any([watch.as_fd(), skill_fd.as_fd()], 100)
            .map_err(|e| StageError::new("reap", e))?;
        if supervisor_gone {
            return Ok(None);
        }
    }
}

/// Kills and reaps every remaining child (orphans reparent to us, the subreaper),
/// generation after generation, until none is left. A process we have not reaped
/// keeps its pid, so no unrelated process can be hit.
fn kill_leftovers(stage_pid: libc::pid_t) {
    let path = format!("/proc/{stage_pid}/task/{stage_pid}/children");
    for _ in 0..10_000 {
        let kids: Vec<libc::pid_t> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if kids.is_empty() {
            break;
        }
        for &k in &kids {
            let _ = sys::kill(k, libc::SIGKILL);
        }
        for &k in &kids {
            let _ = sys::waitpid(k, 0);
        }
    }
    while let Ok((pid, _)) = sys::waitpid(-1, libc::WNOHANG) {
        if pid <= 0 {
            break;
        }
    }
}

/// The skill process; returns only on failure.
fn skill_main(plan: &LaunchPlan, p: &ProcessTierPlan, stage_pid: libc::pid_t) -> StageError {
    crate::stage::exec_prepared(plan, prepare(plan, p, stage_pid))
}

fn prepare(
    plan: &LaunchPlan,
    p: &ProcessTierPlan,
    stage_pid: libc::pid_t,
) -> Result<Exec, StageError> {
    // Session (no controlling terminal: no TIOCSTI into the caller's shell), then
    // die with the stage.
    sys::setsid().map_err(|e| StageError::new("setsid", e))?;
    sys::set_parent_death_signal(libc::SIGKILL)
        .map_err(|e| StageError::new("parent death signal", e))?;
    if sys::getppid() != stage_pid {
        return Err(StageError::new("parent death signal", "stage is gone"));
    }
    crate::stage::enter_workdir_with_limits(
        plan,
        Some("the workdir must be the skill directory, the scratch directory or a declared path"),
    )?;
    let (path_c, argv, envp) = crate::stage::exec_args(plan)?;

    let mut layers = vec![drop_capabilities()?];
    sys::set_no_new_privs().map_err(|e| StageError::new("no_new_privs", e))?;

    // Landlock: the filesystem isolation of this tier, plus TCP connect ports and
    // signal / abstract-socket scoping.
    let rules = LandlockRules {
        read_exec: plan.landlock.read_exec.clone(),
        read_write: plan.landlock.read_write.clone(),
        no_symlinks: plan.landlock.no_symlinks.clone(),
        tcp_connect_ports: Some(p.tcp_connect_ports.clone()),
        scope_signals_and_abstract_unix: true,
        // Landlock is this tier's filesystem boundary: every right handled.
        filesystem_bounded_by_mounts: false,
    };
    if plan.dangerously_disabled_layer == Some(LayerDisabledForTests::Landlock) {
        layers.push(note("landlock", "unavailable", DISABLED_FOR_TESTS));
        return finish(plan, p, 0, layers, (path_c, argv, envp));
    }
    let report = apply_landlock_on_current_thread(&rules, false)
        .map_err(|e| StageError::new("landlock", e))?;
    if report.status == LandlockEnforcement::NotEnforced && p.require_landlock {
        return Err(StageError::new("landlock", report.detail).hint(
            "the process tier relies on Landlock for filesystem isolation: enable it \
             (lsm=landlock on Linux 5.13+), use the container tier, or pass \
             --allow-degraded to run without it",
        ));
    }
    let status = match report.status {
        LandlockEnforcement::Fully => "enforced",
        LandlockEnforcement::Partially => "partial",
        LandlockEnforcement::NotEnforced => "unavailable",
    };
    layers.push(note("landlock", status, report.detail.clone()));
    crate::timing::stage_mark("landlock");
    if report.abi >= 4 {
        layers.push(restrict_tcp_bind()?);
    }
    finish(plan, p, report.abi, layers, (path_c, argv, envp))
}

/// Not dumpable, the socket filter, then the profile as the very last step before
/// execve; reports the layers.
fn finish(
    plan: &LaunchPlan,
    p: &ProcessTierPlan,
    landlock_abi: i32,
    mut layers: Vec<LayerNote>,
    exec: Exec,
) -> Result<Exec, StageError> {
    sys::set_not_dumpable().map_err(|e| StageError::new("dumpable", e))?;
    layers.push(apply_socket_filter(
        landlock_abi >= ABI_RESOLVE_UNIX,
        p.allow_udp,
    )?);
    let (seccomp_layer, notify_fd) = crate::confine::apply_seccomp(plan)?;
    crate::timing::stage_mark("seccomp");
    layers.push(seccomp_layer);
    if let Some(fd) = notify_fd {
        proto::send(
            control(),
            &FromChild::SeccompNotify,
            &[fd.as_fd().as_raw_fd()],
        )
        .map_err(|e| StageError::new("hand over fd", e))?;
    }
    crate::stage::report_ready_and_wait_for_go(layers)?;
    Ok(exec)
}

/// Empty every capability set we may. Uid 0 of a nested user namespace goes the
/// container tier's way (bounding set, locked securebits: no capabilities come back
/// at execve); an unprivileged process has no permitted capabilities to lose, and
/// `no_new_privs` keeps setuid and file capabilities from granting any.
fn drop_capabilities() -> Result<LayerNote, StageError> {
    if nix::unistd::geteuid().is_root() {
        let mut notes = crate::confine::drop_capabilities()?;
        return notes
            .pop()
            .ok_or_else(|| StageError::new("drop caps", "no capability report"));
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| StageError::new("drop caps", e))?;
    }
    let bounding = if caps::clear(None, CapSet::Bounding).is_ok() {
        "bounding set empty"
    } else {
        "bounding set left as inherited (no CAP_SETPCAP); no_new_privs keeps it unusable"
    };
    Ok(note(
        "capabilities",
        "enforced",
        format!(
            "runs as uid {} with ambient, inheritable, permitted and effective sets empty; {bounding}",
            nix::unistd::geteuid()
        ),
    ))
}

/// A second Landlock layer that handles TCP bind with no port allowed: the skill
/// cannot listen on the host's network (the first layer only limits connects).
fn restrict_tcp_bind() -> Result<LayerNote, StageError> {
    use ::landlock::{AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr};
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessNet::BindTcp)
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| StageError::new("landlock (tcp bind)", e))?;
    if status.ruleset != ::landlock::RulesetStatus::FullyEnforced {
        return Err(StageError::new(
            "landlock (tcp bind)",
            "ruleset not enforced",
        ));
    }
    Ok(note(
        "tcp_bind",
        "enforced",
        "Landlock: no TCP bind on any port",
    ))
}
