//! Cgroup resource limits for one sandbox (DESIGN.md §3 steps 1 and 7): discovery of
//! the v2 / v1 hierarchies (hybrid hosts mix both), creation of `skillsandbox-<name>`
//! with memory, pids and CPU limits, joining the sandbox's first process, usage, and a
//! kill of the whole cgroup that leaves no survivors.
//!
//! This module owns everything under `<hierarchy>/<our cgroup>/skillsandbox-*` and the
//! supervisor leaf `skillsandbox.supervisor` (v2 only). It never touches other cgroups
//! and never signals a process that is not listed in one of its `cgroup.procs` files.
//! User documentation: docs/cgroups.md.

mod discover;
mod error;
mod files;
mod kill;
mod limits;
mod sandbox;

pub use discover::{CgroupRoots, Placement, UnifiedCgroup};
pub use error::CgroupError;
pub use kill::KillMethod;
pub use sandbox::SandboxCgroup;

use serde::{Deserialize, Serialize};

/// The name (after `skillsandbox-`) of the cgroup of the run `run_id`: its first 16
/// letters and digits.
fn name_for_run(run_id: &str) -> String {
    run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect()
}

/// The cgroup of the run `run_id`, with `limits`, named after the run
/// ([`name_for_run`]), once stale sandbox cgroups are reaped. Whether made on the
/// launch path or ahead of it ([`crate::warm`]), every run's cgroup is made here.
pub fn create_for_run(run_id: &str, limits: &CgroupLimits) -> Result<SandboxCgroup, CgroupError> {
    let roots = CgroupRoots::discover()?;
    roots.reap_stale();
    roots.create(&name_for_run(run_id), limits)
}

/// The limits of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// Memory cap; swap cannot extend it.
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: u64,
    /// CPU bandwidth in cores (0.5 = half of one core per 100 ms period).
    pub cpu_cores: f64,
}

impl CgroupLimits {
    /// The cgroup part of a resolved policy's limits.
    pub fn from_policy(limits: &skillsandbox_manifest::policy::Limits) -> CgroupLimits {
        CgroupLimits {
            memory_bytes: limits.memory_mb.saturating_mul(1024 * 1024),
            pids_max: limits.max_processes,
            cpu_cores: limits.cpu_cores,
        }
    }
}

/// What a sandbox used. `None` where the kernel does not provide the counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupUsage {
    /// CPU time of all processes (v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec × 1000).
    pub cpu_usage_ns: Option<u64>,
    /// Highest memory charge (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_peak_bytes: Option<u64>,
    /// Processes killed by the OOM killer (`oom_kill` in v1 `memory.oom_control` or v2
    /// `memory.events`); 0 when the kernel does not count them.
    pub oom_kills: u64,
    /// Highest number of tasks at once (`pids.peak`, Linux 6.1+).
    pub pids_peak: Option<u64>,
    /// Forks refused because of `pids.max` (`pids.events` max).
    pub pids_events_max: Option<u64>,
}

/// Which cgroup hierarchy flavour holds a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn label(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

/// The controllers a sandbox is limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    /// The enforcement-report layer name.
    pub fn layer(self) -> &'static str {
        match self {
            Controller::Memory => "cgroup_memory",
            Controller::Pids => "cgroup_pids",
            Controller::Cpu => "cgroup_cpu",
        }
    }
}
