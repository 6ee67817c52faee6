//! Limits and usage per controller and cgroup version: which control files get which
//! values (pure, exact-output tested) and how usage is read back.

use std::path::Path;

use super::files;
use super::{CgroupError, CgroupLimits, CgroupVersion, Controller};

/// The CFS period we use everywhere, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

impl CgroupLimits {
    /// Refuses values the kernel would reject or that make no sense for a sandbox.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let bad = |reason: String| Err(CgroupError::InvalidLimits { reason });
        if self.memory_bytes < 1024 * 1024 {
            return bad(format!("memory_bytes {} is below 1 MiB", self.memory_bytes));
        }
        if self.pids_max == 0 {
            return bad("pids_max must be at least 1".to_string());
        }
        if !(self.cpu_cores.is_finite() && self.cpu_cores > 0.0 && self.cpu_cores <= 65536.0) {
            return bad(format!(
                "cpu_cores {} must be a number in (0, 65536]",
                self.cpu_cores
            ));
        }
        Ok(())
    }

    /// The CFS quota for `cpu_cores`, in microseconds per [`CPU_PERIOD_US`].
    pub(crate) fn cpu_quota_us(&self) -> u64 {
        // validate() bounds cpu_cores, so the product fits comfortably in u64.
        let q = (self.cpu_cores * CPU_PERIOD_US as f64).round() as u64;
        q.max(CPU_MIN_QUOTA_US)
    }
}

/// The (file, value) writes, in order, that apply `limits` for `controller`.
/// `present(file)` says whether an optional file exists in the new cgroup.
pub(crate) fn writes(
    version: CgroupVersion,
    controller: Controller,
    limits: &CgroupLimits,
    present: &dyn Fn(&str) -> bool,
) -> Vec<(&'static str, String)> {
    let mut w = Vec::new();
    match (version, controller) {
        (CgroupVersion::V1, Controller::Memory) => {
            // limit_in_bytes first: memsw may never be below it.
            w.push(("memory.limit_in_bytes", limits.memory_bytes.to_string()));
            if present("memory.memsw.limit_in_bytes") {
                // memory+swap capped at the same value: swap cannot extend the limit.
                w.push((
                    "memory.memsw.limit_in_bytes",
                    limits.memory_bytes.to_string(),
                ));
            } else if present("memory.swappiness") {
                // No swap accounting: at least keep the cgroup's anon pages out of swap.
                w.push(("memory.swappiness", "0".to_string()));
            }
            // A child inherits oom_kill_disable from its parent: make sure the OOM
            // killer acts instead of freezing the sandbox forever.
            w.push(("memory.oom_control", "0".to_string()));
        }
        (CgroupVersion::V2, Controller::Memory) => {
            w.push(("memory.max", limits.memory_bytes.to_string()));
            if present("memory.swap.max") {
                w.push(("memory.swap.max", "0".to_string()));
            }
        }
        (_, Controller::Pids) => w.push(("pids.max", limits.pids_max.to_string())),
        (CgroupVersion::V1, Controller::Cpu) => {
            w.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
            w.push(("cpu.cfs_quota_us", limits.cpu_quota_us().to_string()));
        }
        (CgroupVersion::V2, Controller::Cpu) => w.push((
            "cpu.max",
            format!("{} {}", limits.cpu_quota_us(), CPU_PERIOD_US),
        )),
    }
    w
}

/// Applies [`writes`] in `dir`; returns a short description of what was written.
pub(crate) fn apply(
    dir: &Path,
    version: CgroupVersion,
    controller: Controller,
    limits: &CgroupLimits,
) -> Result<String, CgroupError> {
    let list = writes(version, controller, limits, &|f: &str| dir.join(f).exists());
    let mut desc = Vec::new();
    for (file, value) in list {
        let path = dir.join(file);
        files::write(&path, &value).map_err(|source| CgroupError::WriteControl {
            path: path.clone(),
            value: value.clone(),
            source,
        })?;
        desc.push(format!("{file}={value}"));
    }
    Ok(desc.join(" "))
}

/// CPU time of the cgroup in nanoseconds: v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec.
pub(crate) fn cpu_usage_ns(version: CgroupVersion, dir: &Path) -> Option<u64> {
    match version {
        CgroupVersion::V1 => files::read_u64(&dir.join("cpuacct.usage")),
        CgroupVersion::V2 => {
            files::read_key(&dir.join("cpu.stat"), "usage_usec").map(|us| us.saturating_mul(1000))
        }
    }
}

/// Peak memory: v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (Linux 5.19+).
pub(crate) fn memory_peak(version: CgroupVersion, dir: &Path) -> Option<u64> {
    match version {
        CgroupVersion::V1 => files::read_u64(&dir.join("memory.max_usage_in_bytes")),
        CgroupVersion::V2 => files::read_u64(&dir.join("memory.peak")),
    }
}

/// OOM kills: v1 `memory.oom_control` oom_kill (Linux 4.13+), v2 `memory.events`.
pub(crate) fn oom_kills(version: CgroupVersion, dir: &Path) -> Option<u64> {
    match version {
        CgroupVersion::V1 => files::read_key(&dir.join("memory.oom_control"), "oom_kill"),
        CgroupVersion::V2 => files::read_key(&dir.join("memory.events"), "oom_kill"),
    }
}

/// Forks refused by `pids.max` (`pids.events` max) and the highest pid count
/// (`pids.peak`, Linux 6.1+); the files are the same on v1 and v2.
pub(crate) fn pids_usage(dir: &Path) -> (Option<u64>, Option<u64>) {
    (
        files::read_key(&dir.join("pids.events"), "max"),
        files::read_u64(&dir.join("pids.peak")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CgroupLimits {
        CgroupLimits {
            memory_bytes: 64 << 20,
            pids_max: 16,
            cpu_cores: 0.5,
        }
    }

    fn owned(w: Vec<(&'static str, String)>) -> Vec<(String, String)> {
        w.into_iter().map(|(f, v)| (f.to_string(), v)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn v1_memory_caps_swap_and_keeps_oom_killer() {
        let all = |_: &str| true;
        assert_eq!(
            owned(writes(
                CgroupVersion::V1,
                Controller::Memory,
                &limits(),
                &all
            )),
            pairs(&[
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "67108864"),
                ("memory.oom_control", "0"),
            ])
        );
        let no_memsw = |f: &str| f != "memory.memsw.limit_in_bytes";
        assert_eq!(
            owned(writes(
                CgroupVersion::V1,
                Controller::Memory,
                &limits(),
                &no_memsw
            )),
            pairs(&[
                ("memory.limit_in_bytes", "67108864"),
                ("memory.swappiness", "0"),
                ("memory.oom_control", "0"),
            ])
        );
    }

    #[test]
    fn v2_memory_sets_swap_max_only_when_present() {
        assert_eq!(
            owned(writes(
                CgroupVersion::V2,
                Controller::Memory,
                &limits(),
                &|_| true
            )),
            pairs(&[("memory.max", "67108864"), ("memory.swap.max", "0")])
        );
        assert_eq!(
            owned(writes(
                CgroupVersion::V2,
                Controller::Memory,
                &limits(),
                &|_| false
            )),
            pairs(&[("memory.max", "67108864")])
        );
    }

    #[test]
    fn cpu_and_pids_values() {
        assert_eq!(
            owned(writes(
                CgroupVersion::V1,
                Controller::Cpu,
                &limits(),
                &|_| true
            )),
            pairs(&[
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000")
            ])
        );
        assert_eq!(
            owned(writes(
                CgroupVersion::V2,
                Controller::Cpu,
                &limits(),
                &|_| true
            )),
            pairs(&[("cpu.max", "50000 100000")])
        );
        for v in [CgroupVersion::V1, CgroupVersion::V2] {
            assert_eq!(
                owned(writes(v, Controller::Pids, &limits(), &|_| true)),
                pairs(&[("pids.max", "16")])
            );
        }
        let tiny = CgroupLimits {
            cpu_cores: 0.001,
            ..limits()
        };
        assert_eq!(tiny.cpu_quota_us(), 1000);
    }

    #[test]
    fn validate_refuses_nonsense() {
        assert!(limits().validate().is_ok());
        for bad in [
            CgroupLimits {
                memory_bytes: 4096,
                ..limits()
            },
            CgroupLimits {
                pids_max: 0,
                ..limits()
            },
            CgroupLimits {
                cpu_cores: 0.0,
                ..limits()
            },
            CgroupLimits {
                cpu_cores: f64::NAN,
                ..limits()
            },
            CgroupLimits {
                cpu_cores: f64::INFINITY,
                ..limits()
            },
            CgroupLimits {
                cpu_cores: -1.0,
                ..limits()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(CgroupError::InvalidLimits { .. })),
                "{bad:?}"
            );
        }
    }
}
