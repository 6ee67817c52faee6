//! The container's process as the shim sees it: the pid in `--pid-file`, started by
//! `create`, exiting with the container's status.
//!
//! It runs the one engine entry, [`skillsandbox_runtime::run`], with the bundle's
//! image as the root and a start gate: once the sandbox is fully set up (every layer
//! in force, the container's process waiting to `execve`) it reports `created` and
//! waits on `exec.fifo` until `start` opens it (runc's pattern), or a kill arrives.
//! The container's stdio is ours (inherited from the shim through `create`).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skillsandbox_runtime::session::SessionEngine;
use skillsandbox_runtime::{ImageRoot, RunRequest, RunSession, Sink, Volume};

use crate::bundle::{self, Defaults};
use crate::error::{io, OciError};
use crate::state::{self, Dir};

/// How often the start gate looks for `start` (or a kill) while created.
const GATE_POLL: Duration = Duration::from_millis(10);

/// Run the container; returns the exit code the supervisor exits with.
pub fn supervise(dir: &Dir, defaults: &Defaults) -> i32 {
    match supervise_inner(dir, defaults) {
        Ok(code) => code,
        Err(e) => {
            let mut line = e.to_string();
            if let Some(h) = e.hint() {
                line.push_str(&format!(" (hint: {h})"));
            }
            let _ = std::fs::write(dir.file("error"), &line);
            let _ = writeln!(std::io::stderr(), "skillsandbox: {line}");
            125
        }
    }
}

fn supervise_inner(dir: &Dir, defaults: &Defaults) -> Result<i32, OciError> {
    let mut rec = dir.read()?;
    let launch = bundle::load(&rec.bundle, defaults)?;
    let me = std::process::id() as i32;
    rec.pid = me;
    rec.pid_start = state::start_time(me);
    rec.policy_source = launch.policy_source.clone();
    rec.network = launch.network_name().into();
    rec.session = launch.session.clone();
    rec.annotations = launch.annotations.clone();
    dir.write(&rec)?;

    for v in &launch.volumes {
        let dir = match v {
            Volume::Bind { source, .. } => source.is_dir(),
            Volume::Tmpfs { .. } => true,
        };
        bundle::make_mountpoint(&launch.rootfs, v.target(), dir)?;
    }
    let files = generated_files(dir, &launch.hostname)?;
    let mut req = RunRequest::new(launch.policy.clone());
    req.image_root = Some(ImageRoot {
        rootfs: launch.rootfs.clone(),
        files,
        env: launch.env.clone(),
        hostname: launch.hostname.clone(),
        volumes: launch.volumes.clone(),
    });
    req.tool_call_id = Some(dir.id.clone());
    req.stacked_seccomp = launch.stacked_seccomp.clone();
    req.network = launch.network.clone();
    if let Some(d) = &defaults.trace_dir {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis());
        req.trace_output = Some(d.join(format!("{}-{ms}.json", dir.id)));
    }
    req.audit_log = defaults.audit_log.clone();
    if launch.user != (0, 0) {
        req.user = Some(launch.user);
    }
    if launch.terminal {
        let socket = rec
            .console_socket
            .clone()
            .ok_or_else(|| OciError::Setup("process.terminal without a console socket".into()))?;
        req.terminal = Some(Box::new(move |master, name| {
            send_console(&socket, master, name)
        }));
    } else {
        req.stdin = std::io::stdin().as_fd().try_clone_to_owned().ok();
    }
    req.stdout = Sink::Forward(Box::new(std::io::stdout()));
    req.stderr = Sink::Forward(Box::new(std::io::stderr()));
    if let Some(id) = &launch.session {
        let engine = SessionEngine::open(None, None).map_err(|e| OciError::Session {
            id: id.clone(),
            detail: e.to_string(),
        })?;
        req.session = Some(RunSession::new(Arc::new(engine), id.clone()));
    }
    let stop_file = dir.file("stop");
    let stop = stop_file.clone();
    req.should_stop = Box::new(move || {
        stop.exists()
            .then(|| "stopped by skillsandbox oci kill/delete".to_string())
    });
    let fifo = dir.file("exec.fifo");
    let created = dir.file("created");
    let gate_stop = stop_file.clone();
    req.start_gate = Some(Box::new(move || {
        wait_for_start(&fifo, &created, &gate_stop)
    }));

    let outcome = match skillsandbox_runtime::run(req) {
        Ok(o) => o,
        Err(refusal) => return Err(OciError::Refused(refusal.to_string())),
    };
    if let Some(p) = &outcome.trace_path {
        let _ = std::fs::write(dir.file("trace"), p.display().to_string());
    }
    for w in &outcome.warnings {
        let _ = writeln!(std::io::stderr(), "skillsandbox: warning: {w}");
    }
    if let Some(err) = &outcome.error {
        // Killed before `start`: the container ends as killed, not as a failed setup.
        if let Some(sig) = requested_signal(&stop_file) {
            return Ok(128 + sig);
        }
        let mut line = err.clone();
        if let Some(h) = &outcome.hint {
            line.push_str(&format!(" (hint: {h})"));
        }
        let _ = std::fs::write(dir.file("error"), &line);
        let _ = writeln!(std::io::stderr(), "skillsandbox: {line}");
    }
    Ok(outcome.exit_code)
}

fn requested_signal(stop: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(stop).ok()?.trim().parse().ok()
}

/// `/etc/resolv.conf` (the sandbox's resolver: answered for declared names only),
/// `/etc/hosts` and `/etc/hostname`, bound read-only over the image's.
fn generated_files(dir: &Dir, hostname: &str) -> Result<Vec<(PathBuf, PathBuf)>, OciError> {
    use skillsandbox_sandbox::plan::SANDBOX_RESOLVER;
    let etc = dir.file("etc");
    std::fs::create_dir_all(&etc).map_err(io("create", &etc))?;
    let mut out = Vec::new();
    for (name, text) in [
        (
            "resolv.conf",
            format!("nameserver {SANDBOX_RESOLVER}\noptions timeout:2 attempts:1\n"),
        ),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
        ),
        ("hostname", format!("{hostname}\n")),
    ] {
        let p = etc.join(name);
        std::fs::write(&p, text).map_err(io("write", &p))?;
        out.push((p, PathBuf::from("/etc").join(name)));
    }
    Ok(out)
}

/// The start gate: say `created`, then wait until `start` opens the fifo for reading
/// (an open for writing succeeds only then) or a kill request arrives.
fn wait_for_start(
    fifo: &std::path::Path,
    created: &std::path::Path,
    stop: &std::path::Path,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::write(created, "").map_err(|e| format!("write {}: {e}", created.display()))?;
    loop {
        if stop.exists() {
            return Err("killed before start".into());
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(mut f) => {
                f.write_all(b"0")
                    .map_err(|e| format!("write {}: {e}", fifo.display()))?;
                return Ok(());
            }
            // ENXIO: nobody has it open for reading yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => std::thread::sleep(GATE_POLL),
            Err(e) => return Err(format!("open {}: {e}", fifo.display())),
        }
    }
}

/// Hand the terminal's master end to the engine on its console socket (as runc does).
fn send_console(socket: &Path, master: OwnedFd, name: &str) -> Result<(), String> {
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect to the console socket {}: {e}", socket.display()))?;
    skillsandbox_sandbox::sys::send_terminal(stream.as_fd(), master.as_fd(), name)
        .map_err(|e| format!("send the terminal to {}: {e}", socket.display()))
}
