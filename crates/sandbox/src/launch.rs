//! Supervisor side of the launch (DESIGN.md §3 steps 2 and 7): spawn the stage
//! process, place it in the cgroup before it unshares, write its uid/gid maps, collect
//! the sockets and fds it hands over, and wait for it under a deadline.
//!
//! The stage's parent-death signal fires when the *thread* that spawned it exits: call
//! [`start`] and [`Running::wait`] from the thread that spawned the stage (it does,
//! unless given a [`Stage`]), or from any thread while the spawning one lives on (the
//! warm pool's, [`crate::warm`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::{LaunchPlan, MountOp};
use crate::proto::{self, FromChild, LayerNote, ToChild, CHILD_CONTROL_FD};
use crate::stage::STAGE_ARG;
use crate::sys;

/// How long the sandbox may take to set itself up before we give up on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("spawn {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Proto(#[from] proto::ProtoError),
    #[error("write {path}: {source}")]
    IdMap {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("sandbox setup failed at {step}: {message}")]
    Setup {
        step: String,
        message: String,
        hint: Option<String>,
        exit_code: i32,
    },
    #[error("sandbox setup did not finish within {0:?}")]
    SetupTimeout(Duration),
    #[error("sandbox setup died before reporting (status {0})")]
    SetupDied(String),
    #[error("{0}")]
    Sys(#[from] sys::SysError),
}

impl LaunchError {
    /// The exit code this failure should produce (125 unless the skill's entrypoint
    /// was missing or not executable).
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Setup { exit_code, .. } => *exit_code,
            _ => 125,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            LaunchError::Setup { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

/// What the caller wires in.
pub struct StartOptions {
    /// Our own binary (the stage entry point), usually `/proc/self/exe`.
    pub exe: PathBuf,
    /// What the skill reads on stdin; `None` gives it an empty pipe (end of input at
    /// once). Never handed over as it is: the skill gets the read end of a fresh pipe
    /// that a supervisor thread fills from it ([`relay_stdin`]).
    pub stdin: Option<OwnedFd>,
    /// A stage spawned ahead of this launch ([`Stage::spawn`], [`crate::warm`]); `None`
    /// spawns one now.
    pub stage: Option<Stage>,
}

/// A stage process started before its plan is known: our binary re-executed with
/// [`STAGE_ARG`], detached from the supervisor (fds, session) and blocked reading the
/// control socket. Nothing in it depends on the run it will serve: the plan and stdin's
/// contents come later, in [`start`], and a cgroup made ahead for it is given the
/// run's limits before the plan is sent ([`crate::warm`]). So it can be spawned
/// while the supervisor still prepares the run, or kept ready by a long-lived
/// supervisor ([`crate::warm`]), taking the re-exec of our binary off the launch path.
///
/// Each stage serves one launch. Dropped unused, it is killed and reaped. It dies
/// with the thread that spawned it (its parent-death signal).
pub struct Stage {
    /// `None` once [`start`] took it over.
    parts: Option<StageParts>,
    spawned_at: u64,
}

struct StageParts {
    child: Child,
    control: OwnedFd,
    /// The write end of the stage's stdin pipe (filled, or closed, in [`start`]).
    stdin: OwnedFd,
}

impl Stage {
    /// Spawn a stage of `exe`. Returns once `execve` succeeded; the stage then starts
    /// up on its own and waits for a plan.
    pub fn spawn(exe: &std::path::Path) -> Result<Stage, LaunchError> {
        let (sup_end, child_end) = proto::control_pair()?;
        let (stdin_read, stdin_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
                LaunchError::Sys(sys::SysError {
                    call: "pipe2(stdin)".into(),
                    source: std::io::Error::from(e),
                })
            })?;
        let mut cmd = Command::new(exe);
        cmd.arg(STAGE_ARG)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::from(stdin_read));
        sys::pass_control_fd(&mut cmd, child_end.as_raw_fd(), CHILD_CONTROL_FD);
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
        Ok(Stage {
            parts: Some(StageParts {
                child,
                control: sup_end,
                stdin: stdin_write,
            }),
            spawned_at: crate::timing::now_us(),
        })
    }

    /// Still waiting for its plan: not killed, crashed or stopped meanwhile (a stopped
    /// stage would hold its launch until the setup deadline).
    pub fn is_waiting(&mut self) -> bool {
        self.parts.as_mut().is_some_and(|p| {
            matches!(p.child.try_wait(), Ok(None))
                && proc_state(p.child.id()).is_some_and(|s| !matches!(s, 'T' | 't' | 'Z' | 'X'))
        })
    }

    /// Host pid of the stage process.
    pub fn pid(&self) -> Option<u32> {
        self.parts.as_ref().map(|p| p.child.id())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(mut p) = self.parts.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A started sandbox: the skill passed every setup step and is exec'ing.
pub struct Running {
    child: Child,
    control: OwnedFd,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// Egress sockets (dns_udp4, dns_udp6, dns_tcp, one per port) and their ports.
    pub egress: Option<(Vec<u16>, Vec<OwnedFd>)>,
    pub seccomp_notify: Option<OwnedFd>,
    /// [`LaunchPlan::terminal`]: the master end of the skill's terminal, and its path
    /// inside the sandbox.
    pub terminal: Option<(OwnedFd, String)>,
    pub layers: Vec<LayerNote>,
    exited: Option<(Option<i32>, Option<i32>)>,
    /// A failure reported after `Ready` (execve itself failed).
    pub late_failure: Option<String>,
    /// The launch's phases so far: the supervisor's and the stage's ([`crate::timing`]).
    pub marks: Vec<crate::timing::Mark>,
}

/// How [`Running::wait`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// The skill ended: exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The deadline passed; the sandbox was killed.
    TimedOut,
    /// `should_stop` asked for it; the sandbox was killed. Carries the reason.
    Stopped(String),
}

/// Spawn the stage, or take over [`StartOptions::stage`]; `attach` receives its host
/// pid before it unshares anything (put it into the cgroup there). Returns once the
/// skill is about to `execve`.
pub fn start(
    plan: &LaunchPlan,
    opts: StartOptions,
    attach: impl FnOnce(u32) -> Result<(), String>,
) -> Result<Running, LaunchError> {
    let prestarted = opts.stage.is_some();
    let mut stage = match opts.stage {
        Some(stage) => stage,
        None => Stage::spawn(&opts.exe)?,
    };
    let spawned = stage.spawned_at;
    let Some(StageParts {
        mut child,
        control,
        stdin,
    }) = stage.parts.take()
    else {
        return Err(LaunchError::SetupDied("the stage was already used".into()));
    };
    let mut running = Running {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        control,
        egress: None,
        seccomp_notify: None,
        terminal: None,
        layers: Vec::new(),
        exited: None,
        late_failure: None,
        // A stage spawned for this launch: its spawn is this launch's first phase. A
        // prestarted one was spawned before the launch's clock started.
        marks: if prestarted {
            Vec::new()
        } else {
            vec![crate::timing::Mark {
                phase: "spawn_stage".into(),
                at_us: spawned,
            }]
        },
    };
    // The skill's stdin: the caller's bytes through a relay thread, or end of input.
    match opts.stdin {
        Some(from) => {
            if let Err(e) = relay_stdin(from, stdin) {
                running.kill();
                return Err(e);
            }
        }
        None => drop(stdin),
    }
    if let Err(e) = attach(running.child.id()) {
        running.kill();
        return Err(LaunchError::Cgroup(e));
    }
    running.mark("cgroup_attach");
    match handshake(&mut running, plan) {
        Ok(()) => Ok(running),
        Err(e) => {
            running.kill();
            Err(e)
        }
    }
}

/// Fill the stage's stdin pipe (`to`, its write end) from `source` on a thread, until
/// either side ends. A descriptor of the caller's (a file, a directory, a terminal)
/// would otherwise be the skill's fd 0, and through it `/proc/self/fd/0` reaches a
/// host inode past every mount: rewrite or `fchmod` the file, walk `..` from a
/// directory onto the host's filesystem. A pipe of our own carries the bytes and
/// nothing else.
fn relay_stdin(source: OwnedFd, to: OwnedFd) -> Result<(), LaunchError> {
    std::thread::Builder::new()
        .name("skillsandbox-stdin".into())
        .spawn(move || {
            let mut from = std::fs::File::from(source);
            let mut to = std::fs::File::from(to);
            // Ends at the caller's end of input, or when the skill's side is closed
            // (EPIPE: Rust ignores SIGPIPE).
            let _ = std::io::copy(&mut from, &mut to);
        })
        .map(|_| ())
        .map_err(|source| {
            LaunchError::Sys(sys::SysError {
                call: "spawn stdin relay".into(),
                source,
            })
        })
}

fn handshake(r: &mut Running, plan: &LaunchPlan) -> Result<(), LaunchError> {
    proto::send(
        r.control.as_fd(),
        &ToChild::Plan(Box::new(plan.clone())),
        &[],
    )?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LaunchError::SetupTimeout(SETUP_TIMEOUT));
        }
        if !sys::poll_readable(r.control.as_fd(), left.as_millis().min(1000) as i32)? {
            continue;
        }
        let (msg, mut fds) = match proto::recv::<FromChild>(r.control.as_fd()) {
            Ok(m) => m,
            Err(proto::ProtoError::Closed) => {
                let status = r.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(LaunchError::SetupDied(status));
            }
            Err(e) => return Err(e.into()),
        };
        match msg {
            FromChild::Unshared { pid } => {
                write_id_maps(pid, plan)?;
                let trees = idmapped_trees(pid, plan)?;
                r.mark("write_uid_map");
                let raw: Vec<i32> = trees.iter().map(|t| t.as_raw_fd()).collect();
                proto::send(r.control.as_fd(), &ToChild::Mapped, &raw)?;
            }
            FromChild::EgressSockets { ports } => r.egress = Some((ports, fds)),
            FromChild::SeccompNotify => r.seccomp_notify = fds.pop(),
            FromChild::Terminal { name } => r.terminal = fds.pop().map(|fd| (fd, name)),
            FromChild::Ready { layers, marks } => {
                r.layers = layers;
                r.marks.extend(marks);
                r.mark("ready");
                return Ok(());
            }
            FromChild::Failed {
                step,
                message,
                hint,
                exit_code,
            } => {
                let _ = r.child.wait();
                return Err(LaunchError::Setup {
                    step,
                    message,
                    hint,
                    exit_code,
                });
            }
            FromChild::Exited { code, signal } => r.exited = Some((code, signal)),
        }
    }
}

fn write_id_maps(pid: i32, plan: &LaunchPlan) -> Result<(), LaunchError> {
    let id = &plan.identity;
    for (file, contents) in [
        ("setgroups", "deny".to_string()),
        ("uid_map", format!("{} {} 1\n", id.inside_uid, id.host_uid)),
        ("gid_map", format!("{} {} 1\n", id.inside_gid, id.host_gid)),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, contents).map_err(|source| LaunchError::IdMap { path, source })?;
    }
    Ok(())
}

/// For a root invoker: detached, idmapped copies of the declared paths (and the skill
/// directory), mapped through the sandbox's own user namespace, in plan order. The
/// stage attaches them; it could not open them itself (it no longer is host root).
fn idmapped_trees(pid: i32, plan: &LaunchPlan) -> Result<Vec<OwnedFd>, LaunchError> {
    // (source, writable, the idmap may be left out where the filesystem refuses it)
    let binds: Vec<(&std::path::Path, bool, bool)> = plan
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountOp::Bind {
                source,
                writable,
                idmap: true,
                ..
            } => Some((source.as_path(), *writable, false)),
            MountOp::ImageRoot { source } => Some((source.as_path(), true, true)),
            _ => None,
        })
        .collect();
    if binds.is_empty() {
        return Ok(Vec::new());
    }
    let ns_path = format!("/proc/{pid}/ns/user");
    let userns = std::fs::File::open(&ns_path).map_err(|source| LaunchError::IdMap {
        path: ns_path,
        source,
    })?;
    let mut trees = Vec::with_capacity(binds.len());
    for (source, writable, idmap_optional) in binds {
        let fd = sys::open_path_no_symlinks(source)?;
        let tree = sys::open_tree_clone(fd.as_fd(), true, source)?;
        let mut set = sys::MOUNT_ATTR_IDMAP | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
        if !writable {
            set |= sys::MOUNT_ATTR_RDONLY;
        }
        let mapped =
            sys::mount_setattr_fd(tree.as_fd(), true, set, 0, Some(userns.as_fd()), source);
        match mapped {
            Ok(()) => {}
            // overlayfs (an image's rootfs) cannot be idmapped: bind it as it is.
            Err(_) if idmap_optional => sys::mount_setattr_fd(
                tree.as_fd(),
                true,
                set & !sys::MOUNT_ATTR_IDMAP,
                0,
                None,
                source,
            )?,
            Err(e) => return Err(e.into()),
        }
        trees.push(tree);
    }
    Ok(trees)
}

impl Running {
    fn mark(&mut self, phase: &str) {
        self.marks.push(crate::timing::Mark {
            phase: phase.into(),
            at_us: crate::timing::now_us(),
        });
    }

    /// Host pid of the stage process (outside the sandbox's PID namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let the skill `execve`: until this is sent it waits, fully confined, so a
    /// caller that finds a layer unacceptable can kill it before it ran anything.
    pub fn go(&self) -> Result<(), LaunchError> {
        proto::send(self.control.as_fd(), &ToChild::Go, &[])?;
        Ok(())
    }

    /// Kill everything beneath the stage, then the stage. On the container tier its
    /// PID 1 would take the whole PID namespace with it anyway; on the process tier,
    /// without a cgroup, nothing else kills the skill's children (their subreaper,
    /// the stage, dies first; the skill's parent-death signal is not inherited), and
    /// they would keep running past the deadline holding the output pipes.
    ///
    /// Only while the stage is alive and not yet reaped is its pid surely its own
    /// (a reaped pid may already be another process's, whose children this must never
    /// touch); once it has ended its orphans are no longer beneath it anyway. So a run
    /// whose stage already ended (the common case) walks nothing here.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_descendants(self.child.id());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the skill to end, the deadline to pass, or `should_stop` to return a
    /// reason (checked every 100 ms). Kills the sandbox in the latter two cases.
    /// Wakes on the stage's exit itself (a pidfd), not on the next poll tick.
    pub fn wait(
        &mut self,
        deadline: Instant,
        mut should_stop: impl FnMut() -> Option<String>,
    ) -> Result<WaitEnd, LaunchError> {
        let pidfd = sys::pidfd_open(self.child.id()).ok();
        let mut control_open = true;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| LaunchError::SetupDied(format!("waitpid: {e}")))?
            {
                self.drain_control();
                return Ok(match self.exited {
                    Some((code, signal)) => WaitEnd::Exited { code, signal },
                    // PID 1 died without a report (killed from outside).
                    None => WaitEnd::Exited {
                        code: None,
                        signal: Some(
                            std::os::unix::process::ExitStatusExt::signal(&status)
                                .unwrap_or(libc::SIGKILL),
                        ),
                    },
                });
            }
            if Instant::now() >= deadline {
                self.kill();
                return Ok(WaitEnd::TimedOut);
            }
            if let Some(reason) = should_stop() {
                self.kill();
                return Ok(WaitEnd::Stopped(reason));
            }
            match (&pidfd, control_open) {
                (Some(p), true) => {
                    let [control, _] = sys::poll_any([self.control.as_fd(), p.as_fd()], 100)?;
                    if control && !self.read_one() {
                        // Closed: the stage is exiting; only its pidfd is left to wait on.
                        control_open = false;
                    }
                }
                (Some(p), false) => {
                    sys::poll_readable(p.as_fd(), 100)?;
                }
                (None, _) => {
                    if sys::poll_readable(self.control.as_fd(), 100)? && !self.read_one() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    }

    fn note(&mut self, msg: FromChild) {
        match msg {
            FromChild::Exited { code, signal } => self.exited = Some((code, signal)),
            FromChild::Failed { message, .. } => self.late_failure = Some(message),
            _ => {}
        }
    }

    /// Reads one message; false when the socket is closed or sent garbage (the stage
    /// is exiting: `try_wait` will see it soon).
    fn read_one(&mut self) -> bool {
        match proto::recv::<FromChild>(self.control.as_fd()) {
            Ok((msg, _)) => {
                self.note(msg);
                true
            }
            Err(_) => false,
        }
    }

    fn drain_control(&mut self) {
        while matches!(sys::poll_readable(self.control.as_fd(), 0), Ok(true)) {
            match proto::recv::<FromChild>(self.control.as_fd()) {
                Ok((msg, _)) => self.note(msg),
                Err(_) => break,
            }
        }
    }
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), from `/proc/<pid>/stat`;
/// `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command's closing parenthesis.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Live (not zombie) children of `pid`, over all its threads.
fn live_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|k| proc_state(*k).is_some_and(|s| s != 'Z'))
        .collect();
    kids.sort_unstable();
    kids.dedup();
    kids
}

/// SIGKILL every process beneath `root` (not `root` itself), round after round until
/// none is left. Each round stops what it found before killing it: a stopped process
/// neither forks nor reaps, so a pid found is still the process it names when the
/// kill arrives (its parent cannot reap it meanwhile, unless that parent was not
/// found yet). Orphans reparent to the stage (the process tier's subreaper) or die
/// with their PID namespace, and the next round sees what is left.
fn kill_descendants(root: u32) {
    for _ in 0..64 {
        let mut found = Vec::new();
        let mut queue = vec![root];
        while let Some(p) = queue.pop() {
            for k in live_children(p) {
                if !found.contains(&k) {
                    found.push(k);
                    queue.push(k);
                }
            }
        }
        if found.is_empty() {
            return;
        }
        for &k in &found {
            if let Ok(pid) = i32::try_from(k) {
                let _ = sys::kill(pid, libc::SIGSTOP);
            }
        }
        for &k in &found {
            if let Ok(pid) = i32::try_from(k) {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
