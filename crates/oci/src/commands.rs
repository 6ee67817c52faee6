//! The runtime-spec operations: create, start, state, kill, delete, features.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use oci_spec::runtime::{ContainerState, State};

use crate::bundle::{self, Defaults};
use crate::error::{io, OciError};
use crate::state::{self, Dir, Record, Status};

/// How long `create` waits for the sandbox to come up.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `delete --force` waits for the supervisor after the kill.
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Start the supervisor and return once the sandbox is created (every layer in
/// force, the container's process waiting for `start`); write its pid to `pid_file`.
pub fn create(
    root: &Path,
    id: &str,
    bundle_dir: &Path,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
    global_args: &[String],
    defaults: &Defaults,
) -> Result<(), OciError> {
    let dir = Dir::new(root, id)?;
    let bundle_dir = std::fs::canonicalize(bundle_dir).map_err(io("resolve", bundle_dir))?;
    // Map the bundle now: what cannot be honoured fails the create, synchronously.
    let launch = bundle::load(&bundle_dir, defaults)?;
    // As runc: a terminal's master end goes to the console socket, so one needs the other.
    match (launch.terminal, console_socket) {
        (true, None) => {
            return Err(OciError::Config {
                path: bundle_dir.join("config.json"),
                detail: "process.terminal is set but no --console-socket was given".into(),
            })
        }
        (false, Some(_)) => {
            return Err(OciError::Config {
                path: bundle_dir.join("config.json"),
                detail: "--console-socket was given but process.terminal is not set".into(),
            })
        }
        _ => {}
    }
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    match std::fs::create_dir(&dir.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::Exists(id.into()))
        }
        Err(e) => return Err(io("create", &dir.path)(e)),
    }
    let console_socket = console_socket
        .map(std::path::absolute)
        .transpose()
        .map_err(io("resolve", console_socket.unwrap_or(Path::new("-"))))?;
    let result = start_supervisor(
        &dir,
        &bundle_dir,
        &launch,
        pid_file,
        console_socket,
        global_args,
    );
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir.path);
    }
    result
}

fn start_supervisor(
    dir: &Dir,
    bundle_dir: &Path,
    launch: &bundle::Launch,
    pid_file: Option<&Path>,
    console_socket: Option<PathBuf>,
    global_args: &[String],
) -> Result<(), OciError> {
    dir.write(&Record {
        console_socket,
        user: launch.user,
        id: dir.id.clone(),
        bundle: bundle_dir.to_path_buf(),
        created: skillsandbox_audit::now().to_string(),
        annotations: launch.annotations.clone(),
        policy_source: launch.policy_source.clone(),
        network: launch.network_name().into(),
        session: launch.session.clone(),
        ..Default::default()
    })?;
    let fifo = dir.file("exec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
        OciError::Io {
            op: "mkfifo",
            path: fifo.clone(),
            source: std::io::Error::from(e),
        }
    })?;
    let exe = std::env::current_exe().map_err(io("locate", "/proc/self/exe"))?;
    // The supervisor keeps our stdio: it is the container's (the shim's pipes). With a
    // terminal the container's stdio is the terminal, and the shim reads ours to its
    // end (as runc's, whose output it collects): the supervisor must not hold it open.
    let stdio = || {
        if launch.terminal {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let mut child = std::process::Command::new(&exe)
        .arg("oci")
        .args(global_args)
        .arg("_supervise")
        .arg(&dir.id)
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .map_err(io("spawn", &exe))?;
    let deadline = Instant::now() + CREATE_TIMEOUT;
    loop {
        if dir.file("created").exists() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let why = std::fs::read_to_string(dir.file("error"))
                .unwrap_or_else(|_| format!("the supervisor exited ({status})"));
            return Err(OciError::Setup(why));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OciError::Setup(format!(
                "not ready after {} s",
                CREATE_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(p) = pid_file {
        let tmp = p.with_extension("skillsandbox-tmp");
        std::fs::write(&tmp, child.id().to_string()).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, p).map_err(io("rename", p))?;
    }
    // Not waited for: once we exit it is the shim's (a subreaper) to reap.
    drop(child);
    Ok(())
}

/// Release the created container's process.
pub fn start(root: &Path, id: &str) -> Result<(), OciError> {
    let dir = Dir::new(root, id)?;
    let rec = dir.read()?;
    match dir.status(&rec) {
        Status::Created => {}
        s => {
            return Err(OciError::BadState {
                id: id.into(),
                status: s.name(),
                what: "only a created container can be started",
            })
        }
    }
    let fifo = dir.file("exec.fifo");
    // Blocks until the supervisor's gate opens it for writing (within 10 ms).
    let mut f = std::fs::File::open(&fifo).map_err(io("open", &fifo))?;
    let mut b = [0u8; 1];
    let n = f.read(&mut b).map_err(io("read", &fifo))?;
    std::fs::remove_file(&fifo).map_err(io("remove", &fifo))?;
    if n == 0 {
        return Err(OciError::Setup(
            "the container ended before it was started".into(),
        ));
    }
    Ok(())
}

/// The runtime-spec state document.
pub fn state_json(root: &Path, id: &str) -> Result<String, OciError> {
    let dir = Dir::new(root, id)?;
    let rec = dir.read()?;
    let status = dir.status(&rec);
    let mut ann = rec.annotations.clone();
    ann.insert("skillsandbox.policy".into(), rec.policy_source.clone());
    let network = if rec.network.is_empty() {
        bundle::NETWORK_SKILLSANDBOX
    } else {
        rec.network.as_str()
    };
    ann.insert("skillsandbox.network".into(), network.into());
    if let Ok(t) = std::fs::read_to_string(dir.file("trace")) {
        ann.insert("skillsandbox.trace".into(), t);
    }
    if let Ok(e) = std::fs::read_to_string(dir.file("error")) {
        ann.insert("skillsandbox.error".into(), e);
    }
    let mut s = State::default();
    s.set_version("1.0.2".into());
    s.set_id(rec.id.clone());
    s.set_status(match status {
        Status::Creating => ContainerState::Creating,
        Status::Created => ContainerState::Created,
        Status::Running => ContainerState::Running,
        Status::Stopped => ContainerState::Stopped,
    });
    s.set_pid(match status {
        Status::Stopped => Some(0),
        _ => Some(rec.pid),
    });
    s.set_bundle(rec.bundle.clone());
    s.set_annotations(Some(ann));
    serde_json::to_string_pretty(&s).map_err(|e| OciError::Config {
        path: dir.file("container.json"),
        detail: e.to_string(),
    })
}

/// Deliver `signal` to the container's process (`all`: every process in it). A
/// SIGKILL also asks the supervisor to end the sandbox, so nothing is left even if
/// the process cannot be found.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
    let dir = Dir::new(root, id)?;
    let rec = dir.read()?;
    let status = dir.status(&rec);
    if status == Status::Stopped {
        return Err(OciError::BadState {
            id: id.into(),
            status: status.name(),
            what: "container not running",
        });
    }
    if signal == libc::SIGKILL || status != Status::Running {
        // Before `start` nothing of the container's has run: any signal ends it.
        request_stop(&dir, signal)?;
    }
    let procs = state::sandbox_processes(rec.pid);
    // Pid 1 inside is the sandbox's init; the container's process is the next.
    let targets: Vec<i32> = if all {
        procs.iter().map(|(p, _)| *p).collect()
    } else {
        procs
            .iter()
            .find(|(_, inner)| *inner > 1)
            .map(|(p, _)| vec![*p])
            .unwrap_or_default()
    };
    if targets.is_empty() && signal != libc::SIGKILL && status == Status::Running {
        return Err(OciError::BadState {
            id: id.into(),
            status: status.name(),
            what: "its process was not found",
        });
    }
    let sig = nix::sys::signal::Signal::try_from(signal)
        .map_err(|_| OciError::BadSignal(signal.to_string()))?;
    for p in targets {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                return Err(OciError::Signal {
                    signal,
                    pid: p,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn request_stop(dir: &Dir, signal: i32) -> Result<(), OciError> {
    let p = dir.file("stop");
    std::fs::write(&p, signal.to_string()).map_err(io("write", &p))
}

/// Remove the container's state; `force` kills it first (and waits for it).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), OciError> {
    let dir = Dir::new(root, id)?;
    if !dir.exists() {
        // Idempotent under --force, as the shim retries deletes.
        return if force {
            Ok(())
        } else {
            Err(OciError::NotFound(id.into()))
        };
    }
    let rec = dir.read().unwrap_or_default();
    let status = dir.status(&rec);
    if status != Status::Stopped {
        if !force {
            return Err(OciError::BadState {
                id: id.into(),
                status: status.name(),
                what: "cannot delete a live container without --force",
            });
        }
        let _ = kill(root, id, libc::SIGKILL, true);
        if rec.pid > 0 && !wait_gone(rec.pid, rec.pid_start, DELETE_WAIT) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(rec.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_gone(rec.pid, rec.pid_start, DELETE_WAIT);
        }
    }
    std::fs::remove_dir_all(&dir.path).map_err(io("remove", &dir.path))
}

fn wait_gone(pid: i32, start: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while state::alive(pid, start) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The runtime-spec `features` document: what this runtime honours.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": [],
        "mountOptions": [],
        "linux": {
            "namespaces": ["user", "mount", "pid", "network", "ipc", "uts", "cgroup"],
            "capabilities": [],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::SUPPORTED_ACTIONS,
                "operators": crate::seccomp::SUPPORTED_OPERATORS,
                "archs": crate::seccomp::native_arch_names(),
                "knownFlags": crate::seccomp::SUPPORTED_FLAGS,
                "supportedFlags": crate::seccomp::SUPPORTED_FLAGS,
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {
            "io.github.skillsandbox.policy": "skillsandbox.manifest, skillsandbox.manifest.inline, skillsandbox.session",
            "io.github.skillsandbox.network": "skillsandbox.network=skillsandbox (default): the manifest's egress rules replace the engine's network (none: deny-all); skillsandbox.network=engine (or --default-network engine): the spec's network namespace (its path, or a new one), egress not enforced by SkillSandbox, refused with declared egress",
            "io.github.skillsandbox.seccomp": "the spec's linux.seccomp is stacked on SkillSandbox's filter: a call runs only if both allow it; SCMP_ACT_TRACE, SCMP_ACT_NOTIFY, listenerPath and flags other than TSYNC are refused",
            "io.github.skillsandbox.exec": "joins the sandbox's namespaces and cgroup, confined as the first process; not in the run's trace",
        }
    })
}

/// One error line for `--log` in the shim's format (`--log-format json`).
pub fn log_error(log: Option<&PathBuf>, json: bool, msg: &str) {
    let Some(p) = log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
    else {
        return;
    };
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": skillsandbox_audit::now().to_string()})
            .to_string()
    } else {
        format!("level=error msg={msg:?}")
    };
    let _ = writeln!(f, "{line}");
}
