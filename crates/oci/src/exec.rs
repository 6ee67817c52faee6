//! `exec` (`docker exec`): one more process in a running container, confined like
//! its first one (crate `sandbox`, module `join`): the sandbox's namespaces and
//! cgroup, then no capabilities, `no_new_privs`, Landlock, the same seccomp profile.
//! What it does is not in the run's trace (its refused syscalls are answered, not
//! recorded), and its exit status is its own process's.

use std::path::Path;
use std::process::Stdio;

use oci_spec::runtime::Process;

use crate::bundle::{self, Defaults};
use crate::error::{io, OciError};
use crate::state::{self, Dir, Status};

fn unsupported(what: &str, hint: &str) -> OciError {
    OciError::Unsupported {
        what: what.into(),
        hint: hint.into(),
    }
}

/// Check the process and start the process that enters the sandbox; with `detach`,
/// return once it is started (its pid in `pid_file`), else wait for its status.
pub fn exec(
    root: &Path,
    id: &str,
    process: &Path,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
    detach: bool,
    global_args: &[String],
) -> Result<i32, OciError> {
    let dir = Dir::new(root, id)?;
    let rec = dir.read()?;
    if dir.status(&rec) != Status::Running {
        return Err(OciError::BadState {
            id: id.into(),
            status: dir.status(&rec).name(),
            what: "exec needs a running container",
        });
    }
    let text = std::fs::read_to_string(process).map_err(io("read", process))?;
    let p: Process = serde_json::from_str(&text).map_err(|e| OciError::Config {
        path: process.to_path_buf(),
        detail: e.to_string(),
    })?;
    check_process(&p, rec.user)?;
    // As runc: a terminal's master end goes to the console socket, so one needs the other.
    let terminal = p.terminal().unwrap_or(false);
    if terminal != console_socket.is_some() {
        return Err(OciError::Config {
            path: process.to_path_buf(),
            detail: if terminal {
                "process.terminal is set but no --console-socket was given".into()
            } else {
                "--console-socket was given but process.terminal is not set".into()
            },
        });
    }
    // The engine may remove its file once we return: keep our own copy.
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let copy = dir.file(&format!("exec-{n}.json"));
    std::fs::write(&copy, &text).map_err(io("write", &copy))?;
    let exe = std::env::current_exe().map_err(io("locate", "/proc/self/exe"))?;
    // With a terminal the process's stdio is the terminal, and the shim reads ours to
    // its end: the child must not hold it open (as the create supervisor).
    let stdio = || {
        if terminal {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("oci")
        .args(global_args)
        .arg("_exec")
        .arg(id)
        .arg(&copy);
    if let Some(s) = console_socket {
        cmd.arg(std::path::absolute(s).map_err(io("resolve", s))?);
    }
    let mut child = cmd
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .map_err(io("spawn", &exe))?;
    if let Some(f) = pid_file {
        let tmp = f.with_extension("skillsandbox-tmp");
        std::fs::write(&tmp, child.id().to_string()).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, f).map_err(io("rename", f))?;
    }
    if detach {
        // The shim (a subreaper) reaps it and reports its status.
        return Ok(0);
    }
    let status = child.wait().map_err(io("wait", &exe))?;
    Ok(status.code().unwrap_or(137))
}

fn check_process(p: &Process, container_user: (u32, u32)) -> Result<(), OciError> {
    let user = bundle::process_user(p)?;
    if user != container_user {
        return Err(unsupported(
            &format!(
                "exec as {}:{}, not the container's user {}:{}",
                user.0, user.1, container_user.0, container_user.1
            ),
            "exec as the container's user (the only id its user namespace maps)",
        ));
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(unsupported("exec without a command", "give a command"));
    }
    Ok(())
}

/// The process `exec` started: enter the sandbox and run; returns the exit code.
pub fn exec_inside(
    root: &Path,
    id: &str,
    process: &Path,
    console_socket: Option<&Path>,
    defaults: &Defaults,
) -> Result<i32, OciError> {
    let dir = Dir::new(root, id)?;
    let rec = dir.read()?;
    let text = std::fs::read_to_string(process).map_err(io("read", process))?;
    let _ = std::fs::remove_file(process);
    let p: Process = serde_json::from_str(&text).map_err(|e| OciError::Config {
        path: process.to_path_buf(),
        detail: e.to_string(),
    })?;
    check_process(&p, rec.user)?;
    let launch = bundle::load(&rec.bundle, defaults)?;
    // The same lowering as the run (its seccomp profile and limits), for this process.
    let mut plan =
        skillsandbox_runtime::dry_run_plan(&launch.policy, &[]).map_err(OciError::Setup)?;
    plan.argv = p.args().clone().unwrap_or_default();
    plan.env = bundle::process_env(&p);
    plan.workdir = p.cwd().clone();
    plan.seccomp_notify = false;
    plan.seccomp_observe = false;
    plan.seccomp_watch_egress = false;
    plan.seccomp_filter = None;
    plan.stacked_seccomp = launch.stacked_seccomp.clone();
    (plan.identity.inside_uid, plan.identity.inside_gid) = rec.user;
    plan.terminal = p.terminal().unwrap_or(false);
    // Connected here, in the host's mount namespace: inside the sandbox its path is gone.
    let console = match (plan.terminal, console_socket) {
        (true, Some(s)) => Some(std::os::fd::OwnedFd::from(
            std::os::unix::net::UnixStream::connect(s).map_err(io("connect", s))?,
        )),
        (true, None) => {
            return Err(OciError::Setup(
                "process.terminal without a console socket".into(),
            ))
        }
        _ => None,
    };
    let init = state::sandbox_processes(rec.pid)
        .into_iter()
        .find(|(_, inner)| *inner == 1)
        .map(|(host, _)| host)
        .ok_or_else(|| OciError::Setup("the sandbox's PID 1 was not found".into()))?;
    skillsandbox_sandbox::join::exec_in_sandbox(init, &plan, console)
        .map_err(|e| OciError::Setup(format!("{}: {}", e.step, e.message)))
}
