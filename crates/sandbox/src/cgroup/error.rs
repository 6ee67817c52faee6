//! The one error type of the `cgroup` module. Variants are named for the operation that
//! failed, carry the path and the OS error, and say what to do next where there is
//! something to do.

use std::io;
use std::path::PathBuf;

/// What to tell a user who cannot write any cgroup.
pub(crate) const NOT_WRITABLE_HINT: &str = "run as root, or start from a delegated cgroup \
(systemd-run --user --scope -p Delegate=yes ...), or pass --allow-degraded to run without \
resource limits";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error(
        "no cgroup hierarchy is mounted (no cgroup or cgroup2 entry in /proc/self/mountinfo); \
         mount cgroup2 on /sys/fs/cgroup, or pass --allow-degraded to run without resource limits"
    )]
    NoHierarchy,

    #[error(
        "cgroup controller {controller} is not available: {reason}; enable it for our cgroup, \
         or pass --allow-degraded to run without that limit"
    )]
    ControllerUnavailable {
        controller: &'static str,
        reason: String,
    },

    #[error("cgroups are not writable for uid {uid} (creating {path}: {source}): {hint}", hint = NOT_WRITABLE_HINT)]
    NotWritable {
        uid: u32,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "cgroup {path} exists already: another sandbox with this name is running, or a crashed \
         run left it behind (CgroupRoots::reap_stale removes empty leftovers)"
    )]
    AlreadyExists { path: PathBuf },

    #[error("creating cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },

    #[error(
        "cgroup v2: cannot enable {controllers} for children of {path} because that cgroup \
         holds other processes (the kernel allows no processes in inner cgroups with \
         controllers); start skillsandbox as the only process of a delegated cgroup \
         (systemd-run --user --scope -p Delegate=yes skillsandbox ...) so it can move itself \
         into a leaf, or pass --allow-degraded"
    )]
    InnerNodeBusy { path: PathBuf, controllers: String },

    #[error("enabling {controllers} in {path}: {source}")]
    EnableControllers {
        path: PathBuf,
        controllers: String,
        source: io::Error,
    },

    #[error("moving the supervisor (pid {pid}) into leaf cgroup {path}: {source}")]
    RelocateSelf {
        pid: u32,
        path: PathBuf,
        source: io::Error,
    },

    #[error("writing {value:?} to {path}: {source}")]
    WriteControl {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    #[error("invalid cgroup limits: {reason}")]
    InvalidLimits { reason: String },

    #[error(
        "invalid sandbox cgroup name {name:?}: use 1-64 characters from [A-Za-z0-9._-], not \
         starting with '.'"
    )]
    InvalidName { name: String },

    #[error("adding pid {pid} to {path}: {source}")]
    AddPid {
        pid: i32,
        path: PathBuf,
        source: io::Error,
    },

    #[error("kill method {method} is not available for this cgroup")]
    KillMethodUnavailable { method: &'static str },

    #[error(
        "killing cgroup {path}: {} process(es) survived {rounds} rounds ({pids:?}); \
         a process in uninterruptible sleep may need more time, check /proc/<pid>/stack",
        pids.len()
    )]
    KillIncomplete {
        path: PathBuf,
        pids: Vec<i32>,
        rounds: u32,
    },

    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}
