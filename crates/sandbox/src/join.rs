//! `skillsandbox oci exec` (`docker exec`): one more process in a running sandbox.
//!
//! The caller (host root, single-threaded) enters the sandbox's cgroup and its
//! cgroup, IPC, UTS, network, PID, mount and user namespaces — those of the
//! sandbox's PID 1 — becomes uid/gid 0 there (an unprivileged host id), forks into
//! the PID namespace, and the child confines itself exactly as the skill process does
//! (stage steps 5–6: session, workdir, rlimits, fds, environment, capabilities,
//! `no_new_privs`, Landlock, seccomp) before `execve`. Its refused syscalls get the
//! profile's errno but are not recorded: the run's seccomp listener serves the run's
//! processes only.

use std::os::fd::AsFd;

use crate::plan::LaunchPlan;
use crate::stage::StageError;
use crate::sys;

/// Namespaces joined, in this order: the user namespace last (joining it first would
/// drop the host capabilities the others need).
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
    ("user", libc::CLONE_NEWUSER),
];

/// Move the calling process into the sandbox cgroups of `pid` (the directories named
/// `skillsandbox-*` in `/proc/PID/cgroup`, v1 controllers or v2), so its limits and
/// the run's final kill cover the new process too. None found is an error.
fn join_cgroups(pid: i32) -> Result<(), StageError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| StageError::new("read cgroups", e))?;
    let me = std::process::id().to_string();
    let mut joined = 0;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if !path.contains("skillsandbox-") {
            continue;
        }
        let rel = path.trim_start_matches('/');
        let candidates: Vec<std::path::PathBuf> = if controllers.is_empty() {
            vec![std::path::Path::new("/sys/fs/cgroup").join(rel)]
        } else {
            std::iter::once(controllers.to_string())
                .chain(controllers.split(',').map(String::from))
                .map(|c| {
                    std::path::Path::new("/sys/fs/cgroup")
                        .join(c.trim_start_matches("name="))
                        .join(rel)
                })
                .collect()
        };
        let Some(dir) = candidates.iter().find(|d| d.is_dir()) else {
            continue;
        };
        std::fs::write(dir.join("cgroup.procs"), &me)
            .map_err(|e| StageError::new("join cgroup", format!("{}: {e}", dir.display())))?;
        joined += 1;
    }
    if joined == 0 {
        return Err(StageError::new(
            "join cgroup",
            format!("pid {pid} is in no sandbox cgroup"),
        ));
    }
    Ok(())
}

/// Run `plan.argv` inside the sandbox whose PID 1 is host pid `init`; returns its
/// exit code (128 + signal when killed). Call from a single-threaded process. With
/// [`LaunchPlan::terminal`], `console` is the engine's console socket, connected.
pub fn exec_in_sandbox(
    init: i32,
    plan: &LaunchPlan,
    console: Option<std::os::fd::OwnedFd>,
) -> Result<i32, StageError> {
    let mut fds = Vec::new();
    for (name, kind) in NAMESPACES {
        let path = format!("/proc/{init}/ns/{name}");
        let f = std::fs::File::open(&path)
            .map_err(|e| StageError::new("open namespace", format!("{path}: {e}")))?;
        fds.push((*name, *kind, f));
    }
    join_cgroups(init)?;
    // While still host root: the sandbox's user namespace denies setgroups.
    sys::clear_groups().map_err(|e| StageError::new("setgroups", e))?;
    for (name, kind, f) in &fds {
        sys::setns(f.as_fd(), *kind, name).map_err(|e| StageError::new("setns", e))?;
    }
    sys::setresgid(plan.identity.inside_gid).map_err(|e| StageError::new("setresgid", e))?;
    sys::setresuid(plan.identity.inside_uid).map_err(|e| StageError::new("setresuid", e))?;
    // The PID namespace applies to children: the process runs in a fork.
    let child = sys::fork().map_err(|e| StageError::new("fork", e))?;
    if child == 0 {
        let err = match crate::stage::confine_for_exec(plan, console.as_ref().map(|c| c.as_fd())) {
            Ok((path, argv, envp)) => {
                let e = sys::execve(&path, &argv, &envp);
                StageError::new("execve", e)
            }
            Err(e) => e,
        };
        eprintln!("skillsandbox: exec: {}: {}", err.step, err.message);
        sys::exit_now(err.exit_code);
    }
    let (_, status) = sys::waitpid(child, 0).map_err(|e| StageError::new("waitpid", e))?;
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}
