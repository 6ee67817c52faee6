//! Killing every process of a sandbox cgroup, including double-forked `setsid`
//! daemons and fork loops: `cgroup.kill` (v2, Linux 5.14+) kills the whole cgroup in
//! one race-free step; otherwise freeze → SIGKILL every member → thaw, repeated until
//! `cgroup.procs` is empty; without any freezer, SIGKILL rounds until empty.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files;
use super::{CgroupError, SandboxCgroup};

/// How [`SandboxCgroup::kill_all_with`] kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMethod {
    /// Write `1` to v2 `cgroup.kill`.
    CgroupKill,
    /// Freeze (v2 `cgroup.freeze` or the v1 freezer), SIGKILL every member, thaw.
    Freeze,
    /// SIGKILL every member of `cgroup.procs`, repeated; a fork can race a round.
    Signal,
}

impl KillMethod {
    pub fn name(self) -> &'static str {
        match self {
            KillMethod::CgroupKill => "cgroup.kill",
            KillMethod::Freeze => "freeze",
            KillMethod::Signal => "signal",
        }
    }
}

/// A freezer of the sandbox: the v2 cgroup (`cgroup.freeze`) or a v1 freezer cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freezer {
    V2(PathBuf),
    V1(PathBuf),
}

const ROUNDS: u32 = 20;
const POLL: Duration = Duration::from_millis(2);

impl SandboxCgroup {
    /// The kill methods this cgroup supports, best first.
    pub fn kill_methods(&self) -> Vec<KillMethod> {
        let mut m = Vec::new();
        if self
            .unified
            .as_ref()
            .is_some_and(|u| u.join("cgroup.kill").exists())
        {
            m.push(KillMethod::CgroupKill);
        }
        if self.freezer.is_some() {
            m.push(KillMethod::Freeze);
        }
        m.push(KillMethod::Signal);
        m
    }

    /// Every pid currently in any of the sandbox's cgroups (deduplicated).
    pub fn pids(&self) -> Vec<i32> {
        let mut all: Vec<i32> = Vec::new();
        for dir in self.dirs() {
            // An unreadable cgroup.procs counts as empty here; kill_all's final check
            // reports survivors it can see.
            for pid in files::procs(dir).unwrap_or_default() {
                if !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
        all
    }

    /// Kills every process in the sandbox and waits until `cgroup.procs` is empty in
    /// every hierarchy. Tries each of [`kill_methods`](Self::kill_methods) in turn.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let mut last = None;
        for method in self.kill_methods() {
            match self.kill_all_with(method) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Kills with one specific method (tests use it to exercise every path).
    pub fn kill_all_with(&self, method: KillMethod) -> Result<(), CgroupError> {
        if self.pids().is_empty() {
            return Ok(());
        }
        match method {
            KillMethod::CgroupKill => {
                let Some(dir) = self
                    .unified
                    .as_ref()
                    .filter(|u| u.join("cgroup.kill").exists())
                else {
                    return Err(CgroupError::KillMethodUnavailable {
                        method: method.name(),
                    });
                };
                for _ in 0..3 {
                    let path = dir.join("cgroup.kill");
                    files::write(&path, "1").map_err(|source| CgroupError::WriteControl {
                        path,
                        value: "1".to_string(),
                        source,
                    })?;
                    if self.wait_empty(Duration::from_secs(2)) {
                        return Ok(());
                    }
                }
                Err(self.survivors(3))
            }
            KillMethod::Freeze => {
                let Some(freezer) = &self.freezer else {
                    return Err(CgroupError::KillMethodUnavailable {
                        method: method.name(),
                    });
                };
                for _ in 0..ROUNDS {
                    freeze(freezer, true)?;
                    sigkill_all(&self.pids());
                    freeze(freezer, false)?;
                    if self.wait_empty(Duration::from_millis(200)) {
                        return Ok(());
                    }
                }
                Err(self.survivors(ROUNDS))
            }
            KillMethod::Signal => {
                let rounds = 1000;
                for _ in 0..rounds {
                    let pids = self.pids();
                    if pids.is_empty() {
                        return Ok(());
                    }
                    sigkill_all(&pids);
                    thread::sleep(POLL);
                }
                if self.wait_empty(Duration::from_millis(500)) {
                    return Ok(());
                }
                Err(self.survivors(rounds))
            }
        }
    }

    /// Polls until no hierarchy lists a process, at most `timeout`.
    fn wait_empty(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.pids().is_empty() {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    fn survivors(&self, rounds: u32) -> CgroupError {
        CgroupError::KillIncomplete {
            path: self
                .dirs()
                .next()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            pids: self.pids(),
            rounds,
        }
    }
}

/// SIGKILL each pid; pids that are already gone are fine. Never signals pid <= 0
/// (process groups / everything) or ourselves.
fn sigkill_all(pids: &[i32]) {
    let me = std::process::id();
    for &pid in pids {
        if pid > 0 && u32::try_from(pid).ok() != Some(me) {
            // ESRCH: exited meanwhile. Other errors leave the pid listed, and the
            // caller's emptiness check reports it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Freezes or thaws, then waits (bounded) for the state to settle. A freezer that does
/// not settle in time is not an error: the kill round proceeds and the emptiness check
/// decides.
fn freeze(freezer: &Freezer, frozen: bool) -> Result<(), CgroupError> {
    let (path, value, settled): (PathBuf, &str, Box<dyn Fn() -> bool>) = match freezer {
        Freezer::V2(dir) => {
            let events = dir.join("cgroup.events");
            let want = if frozen { 1 } else { 0 };
            (
                dir.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
                Box::new(move || files::read_key(&events, "frozen") == Some(want)),
            )
        }
        Freezer::V1(dir) => {
            let state = dir.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            (
                dir.join("freezer.state"),
                want,
                Box::new(move || files::read_opt(&state).as_deref() == Some(want)),
            )
        }
    };
    files::write(&path, value).map_err(|source| CgroupError::WriteControl {
        path: path.clone(),
        value: value.to_string(),
        source,
    })?;
    let start = Instant::now();
    while !settled() && start.elapsed() < Duration::from_millis(500) {
        thread::sleep(POLL);
    }
    Ok(())
}
