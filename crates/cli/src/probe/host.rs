//! The host section of the checklist: kernel, user namespaces, Landlock ABI, seccomp,
//! cgroup version and controllers, and the tier `auto` would pick.
//!
//! A minimal local reading until `skillsandbox doctor`'s shared host report lands;
//! then this module becomes a thin adapter over it.

use serde::Serialize;
use skillsandbox_sandbox::cgroup::{CgroupRoots, Controller};

#[derive(Debug, Clone, Serialize)]
pub struct HostSection {
    pub kernel: String,
    pub uid: u32,
    pub user_namespaces: Feature,
    pub landlock_abi: i32,
    pub landlock: String,
    pub seccomp: Feature,
    pub cgroup: CgroupSection,
    pub auto_tier: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub available: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupSection {
    /// "v1", "v2", "hybrid" or "none".
    pub version: String,
    pub controllers: Vec<String>,
    pub detail: String,
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn user_namespaces() -> Feature {
    let max: Option<u64> = read("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse().ok());
    let clone = read("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let mut off = Vec::new();
    if max == Some(0) {
        off.push("user.max_user_namespaces=0");
    }
    if clone.as_deref() == Some("0") {
        off.push("kernel.unprivileged_userns_clone=0");
    }
    if apparmor.as_deref() == Some("1") && proc_uid() != 0 {
        off.push("kernel.apparmor_restrict_unprivileged_userns=1");
    }
    let available = std::path::Path::new("/proc/self/ns/user").exists() && off.is_empty();
    Feature {
        available,
        detail: if off.is_empty() {
            format!(
                "max_user_namespaces={}",
                max.map_or("?".to_string(), |m| m.to_string())
            )
        } else {
            off.join(", ")
        },
    }
}

/// Our real uid, read from /proc/self/status.
fn proc_uid() -> u32 {
    read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

fn seccomp() -> Feature {
    let actions = read("/proc/sys/kernel/seccomp/actions_avail");
    match actions {
        Some(a) => Feature {
            available: a.split_whitespace().any(|x| x == "errno"),
            detail: format!("actions: {a}"),
        },
        None => Feature {
            available: false,
            detail: "no /proc/sys/kernel/seccomp: seccomp filters unsupported".into(),
        },
    }
}

fn cgroup() -> CgroupSection {
    match CgroupRoots::discover() {
        Err(e) => CgroupSection {
            version: "none".into(),
            controllers: Vec::new(),
            detail: e.to_string(),
        },
        Ok(roots) => {
            let mut versions = Vec::new();
            let mut controllers = Vec::new();
            let mut missing = Vec::new();
            for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
                match roots.placement(c) {
                    Ok(p) => {
                        controllers.push(format!("{} ({})", c.name(), p.version.label()));
                        if !versions.contains(&p.version.label()) {
                            versions.push(p.version.label());
                        }
                    }
                    Err(why) => missing.push(format!("{}: {why}", c.name())),
                }
            }
            let version = match versions.len() {
                0 => "none".to_string(),
                1 => versions[0].to_string(),
                _ => "hybrid".to_string(),
            };
            CgroupSection {
                version,
                controllers,
                detail: if missing.is_empty() {
                    "memory, pids and cpu limits can be applied".into()
                } else {
                    missing.join("; ")
                },
            }
        }
    }
}

/// What this host can enforce.
pub fn host_section() -> HostSection {
    let (abi, why) = skillsandbox_sandbox::landlock::landlock_abi();
    let userns = user_namespaces();
    HostSection {
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into()),
        uid: proc_uid(),
        auto_tier: if userns.available {
            "container".into()
        } else {
            "process".into()
        },
        user_namespaces: userns,
        landlock_abi: abi as i32,
        landlock: why.to_string(),
        seccomp: seccomp(),
        cgroup: cgroup(),
    }
}

impl HostSection {
    /// One line for the text checklist.
    pub fn summary(&self) -> String {
        format!(
            "kernel {} · user namespaces {} · Landlock ABI {} · seccomp {} · cgroup {} [{}] · auto tier: {}",
            self.kernel,
            if self.user_namespaces.available { "yes" } else { "no" },
            self.landlock_abi,
            if self.seccomp.available { "yes" } else { "no" },
            self.cgroup.version,
            self.cgroup.controllers.join(", "),
            self.auto_tier
        )
    }
}
