//! Child side of the launch (DESIGN.md §3 steps 2–6), in the order they run.
//!
//! The supervisor re-executes its own binary with [`STAGE_ARG`]; that fresh,
//! single-threaded process (the *stage*) is the only place that forks, so no lock
//! held by a supervisor thread can leak into a child. Three processes:
//!
//! - **stage** (host PID namespace): receives the plan, drops host root if needed,
//!   unshares every namespace, waits for the uid/gid maps, forks PID 1, relays its
//!   exit status.
//! - **init** (PID 1 of the sandbox): network, filesystem, hostname; forks the skill,
//!   reaps orphans, reports the skill's exit, and takes every survivor down with it
//!   (the kernel kills a PID namespace whose init exits).
//! - **skill**: session, rlimits, fds, environment, capabilities, `no_new_privs`,
//!   Landlock, seccomp — then `execve`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::confine;
use crate::mounts;
use crate::plan::LaunchPlan;
use crate::proto::{self, FromChild, LayerNote, ToChild, CHILD_CONTROL_FD};
use crate::sys;

/// `argv[1]` that turns our binary into the stage process.
pub const STAGE_ARG: &str = "__skillsandbox-stage";

/// A setup failure inside the sandbox: which step, what happened, what to do.
#[derive(Debug)]
pub struct StageError {
    pub step: &'static str,
    pub message: String,
    pub hint: Option<String>,
    pub exit_code: i32,
}

impl StageError {
    pub fn new(step: &'static str, err: impl std::fmt::Display) -> Self {
        StageError {
            step,
            message: err.to_string(),
            hint: None,
            exit_code: 125,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// If this process was started as a stage, run it and never return.
/// Call this first thing in `main`, before any thread is started.
pub fn run_stage_if_requested() {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == STAGE_ARG) {
        stage_main();
    }
}

pub(crate) fn control() -> BorrowedFd<'static> {
    // SAFETY: fd 3 is the control socket the supervisor placed there (dup2 before
    // exec) and stays open for the whole life of the stage processes.
    unsafe { BorrowedFd::borrow_raw(CHILD_CONTROL_FD) }
}

pub(crate) fn report_failure(e: &StageError) {
    let _ = proto::send(
        control(),
        &FromChild::Failed {
            step: e.step.to_string(),
            message: e.message.clone(),
            hint: e.hint.clone(),
            exit_code: e.exit_code,
        },
        &[],
    );
}

fn stage_main() -> ! {
    crate::timing::stage_mark("stage_exec");
    // Nothing of the supervisor's but stdio and the control socket survives, and no
    // stage process keeps the invoker's controlling terminal (PID 1 runs without the
    // seccomp filter: it must have no terminal to TIOCSTI into).
    let setup = sys::set_cloexec(CHILD_CONTROL_FD, true)
        .and_then(|()| sys::close_fds_from(CHILD_CONTROL_FD as libc::c_uint + 1))
        .and_then(|()| sys::setsid());
    if let Err(e) = setup {
        report_failure(&StageError::new("detach from the supervisor", e));
        sys::exit_now(125);
    }
    match stage_outer() {
        Ok(code) => sys::exit_now(code),
        Err(e) => {
            report_failure(&e);
            sys::exit_now(e.exit_code);
        }
    }
}

/// An unset audit login uid may be set once by anyone: the skill would pick what the
/// host's audit records attribute its processes to. Set it first, to the invoker's
/// uid (this process's, before any drop); it is inherited and, once set, needs
/// `CAP_AUDIT_CONTROL` to change. No audit support (no file) or already set: nothing
/// to do.
fn claim_login_uid() {
    const UNSET: &str = "4294967295";
    let path = "/proc/self/loginuid";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == UNSET) {
        let _ = std::fs::write(path, sys::getuid().to_string());
    }
}

/// Stage process: steps 2 (namespaces, maps) and the fork of PID 1.
fn stage_outer() -> Result<i32, StageError> {
    let (msg, _) =
        proto::recv::<ToChild>(control()).map_err(|e| StageError::new("receive plan", e))?;
    let ToChild::Plan(plan) = msg else {
        return Err(StageError::new("receive plan", "unexpected message"));
    };
    crate::timing::stage_mark("receive_plan");
    claim_login_uid();
    let supervisor = sys::getppid();
    if let Some(process) = &plan.process {
        // Process tier: no namespaces, no mounts (crate::process_tier).
        return crate::process_tier::run_stage(&plan, process);
    }

    if let crate::plan::NetworkPlan::EngineJoin(path) = &plan.network {
        // Before the user namespace and before dropping host root: joining a network
        // namespace owned by the host's user namespace needs CAP_SYS_ADMIN there.
        join_engine_netns(path)?;
    }
    if plan.identity.drop_host_root {
        // Never hold host root inside: become the unprivileged sandbox uid before
        // creating any namespace. Supplementary groups go first (root may drop them).
        sys::clear_groups()
            .and_then(|()| sys::setresgid(plan.identity.host_gid))
            .and_then(|()| sys::setresuid(plan.identity.host_uid))
            .map_err(|e| StageError::new("drop host root", e))?;
        // Changing credentials resets the parent-death signal: set it again.
        sys::set_parent_death_signal(libc::SIGKILL)
            .map_err(|e| StageError::new("parent death signal", e))?;
        if sys::getppid() != supervisor {
            return Err(StageError::new("parent death signal", "supervisor is gone"));
        }
    }

    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if plan.dangerously_disabled_layer == Some(crate::disable::LayerDisabledForTests::Netns)
        || matches!(plan.network, crate::plan::NetworkPlan::EngineJoin(_))
    {
        flags &= !libc::CLONE_NEWNET;
    }
    sys::unshare(flags).map_err(|e| {
        StageError::new("create namespaces", e).hint(
            "user namespaces look disabled: sysctl kernel.unprivileged_userns_clone=1 \
             (or user.max_user_namespaces > 0; on Ubuntu 24.04 also \
             kernel.apparmor_restrict_unprivileged_userns=0), or use --tier process",
        )
    })?;
    crate::timing::stage_mark("unshare");
    proto::send(control(), &FromChild::Unshared { pid: sys::getpid() }, &[])
        .map_err(|e| StageError::new("report namespaces", e))?;
    let idmapped = match proto::recv::<ToChild>(control()) {
        Ok((ToChild::Mapped, fds)) => fds,
        Ok(_) => return Err(StageError::new("wait for uid map", "unexpected message")),
        Err(e) => return Err(StageError::new("wait for uid map", e)),
    };
    crate::timing::stage_mark("uid_map");
    // The ids the map gives us (root inside unless the plan says otherwise): no
    // transition from uid 0, so the namespace's capabilities stay for the setup.
    sys::setresgid(plan.identity.inside_gid)
        .and_then(|()| sys::setresuid(plan.identity.inside_uid))
        .map_err(|e| StageError::new("become the sandbox user", e))?;

    let pid = sys::fork().map_err(|e| StageError::new("fork init", e))?;
    if pid == 0 {
        let code = match init_main(&plan, idmapped) {
            Ok(code) => code,
            Err(e) => {
                report_failure(&e);
                e.exit_code
            }
        };
        sys::exit_now(code);
    }
    let (_, status) = sys::waitpid(pid, 0).map_err(|e| StageError::new("wait init", e))?;
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// `skillsandbox oci` with the engine's network: enter the namespace at `path`. The
/// host's own namespace (the one this process is in) is refused: that would be the
/// host network, not an engine's.
fn join_engine_netns(path: &std::path::Path) -> Result<(), StageError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::OpenOptionsExt;
    let step = "join the engine's network namespace";
    // Opened as host root on the spec's word: never a device or a FIFO (a namespace
    // file is a regular file of nsfs; `setns` below checks it is a network one).
    let kind = std::fs::metadata(path)
        .map_err(|e| StageError::new(step, format!("stat {}: {e}", path.display())))?;
    if !kind.is_file() {
        return Err(StageError::new(
            step,
            format!("{} is not a namespace file", path.display()),
        ));
    }
    let ns = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| StageError::new(step, format!("open {}: {e}", path.display())))?;
    let target = ns
        .metadata()
        .map_err(|e| StageError::new(step, format!("fstat {}: {e}", path.display())))?;
    // The same check on what was opened (the path may have changed since the stat).
    if !target.is_file() {
        return Err(StageError::new(
            step,
            format!("{} is not a namespace file", path.display()),
        ));
    }
    let own = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| StageError::new(step, format!("stat /proc/self/ns/net: {e}")))?;
    if (target.dev(), target.ino()) == (own.dev(), own.ino()) {
        return Err(StageError::new(
            step,
            format!("{} is the host's own network namespace", path.display()),
        )
        .hint("the host network is not supported; give the container its own namespace"));
    }
    // setns checks that the fd is a network namespace (EINVAL otherwise).
    sys::setns(ns.as_fd(), libc::CLONE_NEWNET, &path.display().to_string()).map_err(|e| {
        StageError::new(step, e)
            .hint("the path must be a network namespace, and the runtime must run as root")
    })
}

/// PID 1: steps 3 (network) and 4 (filesystem), then the skill's fork and reaping.
fn init_main(plan: &LaunchPlan, idmapped: Vec<OwnedFd>) -> Result<i32, StageError> {
    sys::set_parent_death_signal(libc::SIGKILL)
        .map_err(|e| StageError::new("parent death signal", e))?;
    // PID 1 holds the control socket and has no seccomp filter: the skill (same uid)
    // must not reach its fds or write its memory through /proc/1/mem.
    sys::set_not_dumpable().map_err(|e| StageError::new("not dumpable", e))?;

    crate::timing::stage_mark("fork_init");
    // 3. Network.
    confine::setup_network(plan)?;
    crate::timing::stage_mark("network");

    // 4. Filesystem.
    mounts::enter_scratch_root().map_err(|e| StageError::new("prepare mounts", e))?;
    mounts::apply_ops(&plan.mounts, idmapped).map_err(|e| {
        StageError::new("build root", e).hint(
            "a declared path may be unreadable for the sandbox user, or a symlink; \
             declare the real path",
        )
    })?;
    crate::timing::stage_mark("mounts");
    mounts::enter_new_root().map_err(|e| StageError::new("pivot_root", e))?;
    crate::timing::stage_mark("pivot_root");
    sys::sethostname(&plan.hostname).map_err(|e| StageError::new("hostname", e))?;

    let skill = sys::fork().map_err(|e| StageError::new("fork skill", e))?;
    if skill == 0 {
        let err = skill_main(plan);
        report_failure(&err);
        sys::exit_now(err.exit_code);
    }

    // Init: nothing but reaping. No capabilities are needed any more.
    let _ = confine::drop_capabilities();
    let _ = sys::set_no_new_privs();
    loop {
        let (pid, status) = sys::waitpid(-1, 0).map_err(|e| StageError::new("reap", e))?;
        if pid == skill {
            let (code, signal) = if libc::WIFEXITED(status) {
                (Some(libc::WEXITSTATUS(status)), None)
            } else {
                (None, Some(libc::WTERMSIG(status)))
            };
            let _ = proto::send(control(), &FromChild::Exited { code, signal }, &[]);
            // Returning ends PID 1: the kernel kills whatever the skill left behind.
            return Ok(code.unwrap_or(128 + signal.unwrap_or(0)));
        }
    }
}

/// The skill process: step 5 (process) and 6 (Landlock, seccomp), then `execve`.
/// Returns only on failure.
fn skill_main(plan: &LaunchPlan) -> StageError {
    exec_prepared(plan, prepare_skill(plan))
}

/// `execve` what `prepared` describes; returns only on failure, as the error with
/// the exit code the caller should see (127 not found, 126 not executable).
pub(crate) fn exec_prepared(plan: &LaunchPlan, prepared: Result<Exec, StageError>) -> StageError {
    match prepared {
        Ok((path, argv, envp)) => {
            let err = sys::execve(&path, &argv, &envp);
            let code = match err.source.raw_os_error() {
                Some(libc::ENOENT) => 127,
                _ => 126,
            };
            StageError {
                step: "execve",
                message: format!("cannot execute {:?}: {}", plan.argv[0], err.source),
                hint: None,
                exit_code: code,
            }
        }
        Err(e) => e,
    }
}

fn cstring(s: &str, what: &'static str) -> Result<CString, StageError> {
    CString::new(s).map_err(|_| StageError::new(what, format!("{s:?} contains a NUL byte")))
}

pub(crate) type Exec = (CString, Vec<CString>, Vec<CString>);

fn prepare_skill(plan: &LaunchPlan) -> Result<Exec, StageError> {
    // 5. Process: own session (no TIOCSTI into the caller's terminal), workdir,
    // rlimits, fds, environment, capabilities, no_new_privs.
    crate::timing::stage_mark("fork_skill");
    sys::setsid().map_err(|e| StageError::new("setsid", e))?;
    if plan.terminal {
        let (master, name) = open_terminal()?;
        send_fd(FromChild::Terminal { name }, master.as_fd())?;
    }
    enter_workdir_with_limits(plan, None)?;
    let (path_c, argv, envp) = exec_args(plan)?;

    let mut layers = confine::drop_capabilities()?;
    sys::set_no_new_privs().map_err(|e| StageError::new("no_new_privs", e))?;

    crate::timing::stage_mark("process");
    // 6. Landlock, then seccomp as the very last step before execve.
    layers.extend(confine::apply_landlock(plan)?);
    crate::timing::stage_mark("landlock");
    let (seccomp_layer, notify_fd) = confine::apply_seccomp(plan)?;
    crate::timing::stage_mark("seccomp");
    layers.push(seccomp_layer);
    if let Some(fd) = notify_fd {
        send_fd(FromChild::SeccompNotify, fd.as_fd())?;
    }
    report_ready_and_wait_for_go(layers)?;
    Ok((path_c, argv, envp))
}

/// [`crate::join`]: the skill process's own confinement (steps 5–6) for a process
/// joining a running sandbox, without the supervisor's handshake; the filter is
/// compiled here when the plan carries none.
/// With [`LaunchPlan::terminal`], the terminal's master end goes to `console` (the
/// engine's console socket, connected before the namespaces were joined).
pub(crate) fn confine_for_exec(
    plan: &LaunchPlan,
    console: Option<BorrowedFd<'_>>,
) -> Result<Exec, StageError> {
    sys::set_parent_death_signal(libc::SIGKILL).map_err(|e| StageError::new("pdeathsig", e))?;
    sys::setsid().map_err(|e| StageError::new("setsid", e))?;
    if plan.terminal {
        let console = console.ok_or_else(|| StageError::new("terminal", "no console socket"))?;
        let (master, name) = open_terminal()?;
        crate::sys::send_terminal(console, master.as_fd(), &name)
            .map_err(|e| StageError::new("send the terminal", e))?;
    }
    enter_workdir_with_limits(plan, None)?;
    let exec = exec_args(plan)?;
    confine::drop_capabilities()?;
    sys::set_no_new_privs().map_err(|e| StageError::new("no_new_privs", e))?;
    confine::apply_landlock(plan)?;
    let (_, notify) = confine::apply_seccomp(plan)?;
    drop(notify);
    Ok(exec)
}

/// Tell the supervisor what is in force, then wait for its go-ahead: it checks the
/// layers against what the caller accepts, and the skill must not run a single
/// instruction if it refuses (fail closed). The filter is already in place here;
/// `recvmsg` is allowed by every profile.
pub(crate) fn report_ready_and_wait_for_go(layers: Vec<LayerNote>) -> Result<(), StageError> {
    let marks = crate::timing::stage_marks();
    proto::send(control(), &FromChild::Ready { layers, marks }, &[])
        .map_err(|e| StageError::new("report ready", e))?;
    match proto::recv::<ToChild>(control()) {
        Ok((ToChild::Go, _)) => Ok(()),
        Ok(_) => Err(StageError::new("wait for go", "unexpected message")),
        Err(e) => Err(StageError::new("wait for go", e)),
    }
}

/// Workdir, rlimits (NOFILE, FSIZE, CORE) and every fd but 0–2 closed.
pub(crate) fn enter_workdir_with_limits(
    plan: &LaunchPlan,
    workdir_hint: Option<&str>,
) -> Result<(), StageError> {
    std::env::set_current_dir(&plan.workdir).map_err(|e| {
        let err = StageError::new(
            "workdir",
            format!("cannot enter {}: {e}", plan.workdir.display()),
        );
        match workdir_hint {
            Some(h) => err.hint(h),
            None => err,
        }
    })?;
    let r = &plan.rlimits;
    sys::setrlimit(libc::RLIMIT_NOFILE, r.nofile, "RLIMIT_NOFILE")
        .and_then(|()| sys::setrlimit(libc::RLIMIT_FSIZE, r.fsize_bytes, "RLIMIT_FSIZE"))
        .and_then(|()| sys::setrlimit(libc::RLIMIT_CORE, r.core, "RLIMIT_CORE"))
        .map_err(|e| StageError::new("rlimits", e))?;
    sys::close_fds_from(CHILD_CONTROL_FD as libc::c_uint + 1)
        .map_err(|e| StageError::new("close fds", e))
}

/// The entrypoint resolved in the sandbox PATH, argv and envp as C strings.
pub(crate) fn exec_args(plan: &LaunchPlan) -> Result<Exec, StageError> {
    let path = resolve_command(&plan.argv[0], &plan.env).ok_or_else(|| StageError {
        step: "entrypoint",
        message: format!("entrypoint {:?} not found in the sandbox", plan.argv[0]),
        hint: None,
        exit_code: 127,
    })?;
    let path_c = cstring(&path.to_string_lossy(), "entrypoint")?;
    let argv = plan
        .argv
        .iter()
        .map(|a| cstring(a, "argv"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = plan
        .env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}"), "environment"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((path_c, argv, envp))
}

/// [`LaunchPlan::terminal`]: a new terminal from the sandbox's own devpts (`/dev/ptmx`
/// points into it) becomes this session's controlling terminal and fds 0–2; returns
/// the master end and the terminal's name, for the engine (`--console-socket`).
/// Nothing of a host terminal is reachable through it: what `TIOCSTI` could inject
/// (refused anyway by the `default` and `strict` profiles) reaches only this terminal's
/// own readers, inside the sandbox.
fn open_terminal() -> Result<(OwnedFd, String), StageError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let err = |what: &'static str| move |e: nix::Error| StageError::new(what, e);
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(err("open /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(err("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(err("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(err("ptsname"))?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open the terminal"))?;
    // SAFETY: TIOCSCTTY on an fd we own, argument 0 (do not steal).
    let ret = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret != 0 {
        return Err(StageError::new(
            "TIOCSCTTY",
            std::io::Error::last_os_error(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 of an fd we own onto 0–2 (dup2 clears close-on-exec).
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(StageError::new(
                "dup2 terminal",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok((master.into(), name))
}

fn send_fd(msg: FromChild, fd: BorrowedFd<'_>) -> Result<(), StageError> {
    let raw: RawFd = fd.as_raw_fd();
    proto::send(control(), &msg, &[raw]).map_err(|e| StageError::new("hand over fd", e))
}

/// `execvp`-style lookup in the sandbox PATH, done before seccomp so errors are ours.
pub(crate) fn resolve_command(cmd: &str, env: &[(String, String)]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return p.exists().then_some(p);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(crate::plan::SANDBOX_PATH, |(_, v)| v.as_str());
    path.split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| is_exec(p))
}
