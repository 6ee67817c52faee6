//! Host capability probing: what this host can enforce, why, and how to enable what
//! is missing. Feeds `skillsandbox doctor`, `skillsandbox check` and tier `auto`.
//!
//! Owns [`HostReport`] (plain serde data) and the probes behind it. Probing never
//! changes the host: the only live test, [`probe_user_namespaces`], runs in a
//! throw-away child. Nothing is cached: the user-namespace probe costs a fork (a few
//! hundred microseconds, see docs/tiers.md), and a host's settings can change between
//! runs.

mod sys;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use skillsandbox_manifest::Tier;

use crate::cgroup::{CgroupRoots, Controller};

/// The unprivileged id a root invoker's sandbox runs as (both tiers).
pub const ROOT_INVOKER_SANDBOX_ID: u32 = 65534;

/// Everything `doctor` reports about this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_release: String,
    /// Effective uid of the probing process.
    pub uid: u32,
    /// Whether uid 0 here is the host's root (not root of a nested user namespace).
    pub host_root: bool,
    pub user_namespaces: UserNamespaces,
    pub landlock: LandlockProbe,
    pub seccomp: SeccompProbe,
    pub cgroup: CgroupProbe,
    /// Only probed when running as host root (the container tier then idmaps the
    /// declared paths).
    pub idmapped_mounts: Option<Feature>,
    /// `/dev/kvm` and the KVM implementation behind it (for a VM tier; this build has
    /// none, so nothing depends on it yet).
    #[serde(default)]
    pub kvm: Option<Feature>,
    /// What tier `auto` picks here, and why.
    pub auto: AutoChoice,
    /// Every missing item, what it costs, and how to enable it.
    pub missing: Vec<Missing>,
}

/// A yes/no capability with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub available: bool,
    pub detail: String,
}

/// Unprivileged user namespaces: the sysctls that govern them and a live probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaces {
    /// The live probe succeeded: the container tier can start here.
    pub available: bool,
    /// Why (the probe's result, naming the failing step and errno).
    pub detail: String,
    /// `kernel.unprivileged_userns_clone` (Debian/Ubuntu kernels), when present.
    pub unprivileged_userns_clone: Option<String>,
    /// `user.max_user_namespaces` as seen from this user namespace.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+), when present.
    pub apparmor_restrict_unprivileged_userns: Option<String>,
    /// How long the live probe took, in microseconds.
    pub probe_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockProbe {
    /// The ABI version in force (0: none).
    pub abi: i32,
    pub detail: String,
    /// What the ABI provides that the tiers use.
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProbe {
    /// Seccomp filters (`SECCOMP_MODE_FILTER`) are available.
    pub filter: bool,
    /// `SECCOMP_RET_USER_NOTIF`: refusals can be observed by the supervisor.
    pub user_notification: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupProbe {
    /// `v2`, `v1`, `hybrid` or `none`.
    pub version: String,
    pub controllers: Vec<ControllerProbe>,
    pub detail: String,
    /// Whether a cgroup2 mount has `favordynmods`: without it, every task moved into
    /// a cgroup (each run's stage) waits for an RCU grace period, 1.5–22 ms measured
    /// on a hybrid host; with it about 0.1 ms. `None`: no cgroup2 mount.
    #[serde(default)]
    pub favordynmods: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerProbe {
    /// `memory`, `pids`, `cpu`.
    pub name: String,
    pub available: bool,
    /// `v1` or `v2` when available.
    pub version: Option<String>,
    /// Where the sandbox cgroups would be created.
    pub parent: Option<PathBuf>,
    /// Whether this process may create cgroups there.
    pub writable: bool,
    pub detail: String,
}

/// The tier `auto` resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoChoice {
    /// `container` or `process`.
    pub tier: Tier,
    pub reason: String,
}

/// One missing capability: what it costs and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub item: String,
    pub effect: String,
    pub how: String,
}

fn read_trimmed(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether uid 0 of this process's user namespace is the host's uid 0.
pub fn is_host_root() -> bool {
    if nix::unistd::geteuid().as_raw() != 0 {
        return false;
    }
    read_trimmed("/proc/self/uid_map").is_some_and(|m| uid_map_maps_root_to_root(&m))
}

/// Whether a `uid_map` text maps uid 0 to host uid 0.
pub fn uid_map_maps_root_to_root(uid_map: &str) -> bool {
    uid_map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        matches!(f.as_slice(), [0, 0, n] if *n > 0)
    })
}

fn errno_text(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOSPC => "ENOSPC",
        libc::EINVAL => "EINVAL",
        libc::EUSERS => "EUSERS",
        libc::ENOSYS => "ENOSYS",
        _ => "",
    };
    let msg = std::io::Error::from_raw_os_error(errno);
    if name.is_empty() {
        msg.to_string()
    } else {
        format!("{name}: {msg}")
    }
}

/// The live probe: can a sandbox user create a user + mount namespace and use its
/// capabilities there? Run as the unprivileged sandbox id when we are host root, as
/// the container stage does.
pub fn probe_user_namespaces() -> UserNamespaces {
    let unprivileged_userns_clone = read_trimmed("/proc/sys/kernel/unprivileged_userns_clone");
    let max_user_namespaces =
        read_trimmed("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse().ok());
    let apparmor = read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let as_id = is_host_root().then_some((ROOT_INVOKER_SANDBOX_ID, ROOT_INVOKER_SANDBOX_ID));
    let start = Instant::now();
    let result = sys::try_namespaces_in_child(as_id);
    let probe_us = start.elapsed().as_micros() as u64;
    let who = if as_id.is_some() {
        format!("as uid {ROOT_INVOKER_SANDBOX_ID} (the sandbox user of a root invoker)")
    } else {
        "as the invoker".to_string()
    };
    let (available, detail) = match result {
        Ok(sys::ChildProbe::Ok) => (
            true,
            format!("a user + mount namespace can be created and used {who}"),
        ),
        Ok(sys::ChildProbe::Failed(1, e)) => (
            false,
            format!("cannot switch to the sandbox user: {}", errno_text(e)),
        ),
        Ok(sys::ChildProbe::Failed(2, e)) => (
            false,
            format!(
                "unshare(CLONE_NEWUSER|CLONE_NEWNS) {who} => {}{}",
                errno_text(e),
                why_unshare_failed(e, &unprivileged_userns_clone, max_user_namespaces)
            ),
        ),
        Ok(sys::ChildProbe::Failed(3, e)) => (
            false,
            format!(
                "a user namespace was created {who} but grants no capabilities inside \
                 (mount => {}){}",
                errno_text(e),
                if apparmor.as_deref() == Some("1") {
                    ": kernel.apparmor_restrict_unprivileged_userns=1"
                } else {
                    ": a security module restricts user namespaces"
                }
            ),
        ),
        Ok(sys::ChildProbe::Failed(_, e)) => {
            (false, format!("probe child died: {}", errno_text(e)))
        }
        Err(e) => (false, format!("cannot fork the probe child: {e}")),
    };
    UserNamespaces {
        available,
        detail,
        unprivileged_userns_clone,
        max_user_namespaces,
        apparmor_restrict_unprivileged_userns: apparmor,
        probe_us,
    }
}

fn why_unshare_failed(errno: i32, clone_sysctl: &Option<String>, max: Option<u64>) -> String {
    if max == Some(0) {
        return ": user.max_user_namespaces is 0".into();
    }
    if errno == libc::EPERM && clone_sysctl.as_deref() == Some("0") {
        return ": kernel.unprivileged_userns_clone is 0".into();
    }
    if errno == libc::ENOSPC {
        return ": the user.max_user_namespaces limit is reached".into();
    }
    if errno == libc::EPERM {
        return ": forbidden by a sysctl, security module or seccomp filter of this host/container"
            .into();
    }
    String::new()
}

/// The Landlock ABI and what it provides.
pub fn probe_landlock() -> LandlockProbe {
    let (abi, why) = crate::landlock::landlock_abi();
    let abi = abi as i32;
    let mut features = Vec::new();
    for (min, what) in [
        (1, "filesystem access rules"),
        (2, "file reparenting control (refer)"),
        (3, "truncate control"),
        (4, "TCP connect/bind port rules"),
        (5, "device ioctl control"),
        (6, "signal and abstract unix socket scoping"),
        (7, "audit logging of denials"),
        (9, "pathname unix socket connect control"),
    ] {
        if abi >= min {
            features.push(what.to_string());
        }
    }
    let detail = if abi == 0 {
        format!("Landlock {why}")
    } else {
        format!("Landlock ABI {abi}")
    };
    LandlockProbe {
        abi,
        detail,
        features,
    }
}

/// Seccomp filter and user-notification support, from `/proc` only.
pub fn probe_seccomp() -> SeccompProbe {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let filter = status.lines().any(|l| l.starts_with("Seccomp:"))
        && read_trimmed("/proc/sys/kernel/seccomp/actions_avail").is_some();
    let actions = read_trimmed("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let user_notification = actions.split_whitespace().any(|a| a == "user_notif");
    let detail = if !filter {
        "kernel built without CONFIG_SECCOMP_FILTER".to_string()
    } else {
        format!("filter actions: {actions}")
    };
    SeccompProbe {
        filter,
        user_notification,
        detail,
    }
}

/// Cgroup version and, per controller we limit, where sandbox cgroups would go.
pub fn probe_cgroup() -> CgroupProbe {
    let roots = match CgroupRoots::discover() {
        Ok(r) => r,
        Err(e) => {
            return CgroupProbe {
                version: "none".into(),
                controllers: Vec::new(),
                detail: e.to_string(),
                favordynmods: None,
            }
        }
    };
    let mut controllers = Vec::new();
    let (mut v1, mut v2) = (false, roots.unified().is_some());
    for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
        controllers.push(match roots.placement(c) {
            Ok(p) => {
                let is_v1 = p.version.label() == crate::cgroup::CgroupVersion::V1.label();
                v1 |= is_v1;
                v2 |= !is_v1;
                let writable =
                    nix::unistd::access(&p.parent, nix::unistd::AccessFlags::W_OK).is_ok();
                ControllerProbe {
                    name: c.name().into(),
                    available: true,
                    version: Some(p.version.label().into()),
                    parent: Some(p.parent.clone()),
                    writable,
                    detail: if writable {
                        format!("sandbox cgroups go under {}", p.parent.display())
                    } else {
                        format!("{} is not writable for this user", p.parent.display())
                    },
                }
            }
            Err(why) => ControllerProbe {
                name: c.name().into(),
                available: false,
                version: None,
                parent: None,
                writable: false,
                detail: why.to_string(),
            },
        });
    }
    let version = match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    };
    let detail = match roots.unified() {
        Some(u) => format!("cgroup2 at {}", u.parent.display()),
        None => "no cgroup2 hierarchy".to_string(),
    };
    CgroupProbe {
        version: version.into(),
        controllers,
        detail,
        favordynmods: favordynmods(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        ),
    }
}

/// Whether any cgroup2 mount in `mountinfo` has `favordynmods` among its super-block
/// options (the kernel favours cgroup moves for every hierarchy once one has it).
fn favordynmods(mountinfo: &str) -> Option<bool> {
    let mut seen = None;
    for line in mountinfo.lines() {
        // ... mount options - fstype source super-options
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut f = tail.split_whitespace();
        if f.next() != Some("cgroup2") {
            continue;
        }
        let opts = f.nth(1).unwrap_or("");
        let on = opts.split(',').any(|o| o == "favordynmods");
        seen = Some(seen.unwrap_or(false) || on);
    }
    seen
}

/// `mount_setattr(2)` (Linux 5.12) is what idmapped mounts need from the kernel; the
/// filesystem of each declared path must support them too (checked at launch).
pub fn probe_idmapped_mounts() -> Feature {
    let present = sys::syscall_exists_with_bad_fd(libc::SYS_mount_setattr);
    Feature {
        available: present,
        detail: if present {
            "kernel has mount_setattr (idmapped mounts); per-filesystem support is checked \
             when a declared path is bound"
                .into()
        } else {
            "kernel lacks mount_setattr (Linux < 5.12)".into()
        },
    }
}

/// Whether `/dev/kvm` opens read-write and answers `KVM_GET_API_VERSION`, and which
/// module implements it. `kvm_pvm` (pagetable-based virtualisation, used where the
/// hardware's virtualisation is not passed through) runs only guest kernels built
/// with PVM guest support, which no distribution packages: a stock kernel's vCPU
/// spins in the host kernel without output (measured with Debian's 6.1 kernel).
pub fn probe_kvm() -> Feature {
    let fd = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(f) => f,
        Err(e) => {
            return Feature {
                available: false,
                detail: format!("/dev/kvm: {e}"),
            }
        }
    };
    // KVM_GET_API_VERSION = _IO(0xAE, 0x00); no argument, returns 12 on every kernel.
    // SAFETY: an ioctl without argument on a file descriptor we own.
    let api = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), 0xAE00, 0) };
    let module = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists());
    let (available, what) = match module {
        Some("kvm_pvm") => (
            false,
            "kvm_pvm (PVM: runs only guest kernels built with PVM guest support, which no distribution packages)",
        ),
        Some("kvm_intel") => (true, "kvm_intel (hardware virtualisation)"),
        Some("kvm_amd") => (true, "kvm_amd (hardware virtualisation)"),
        _ => (true, "implementation unknown (no kvm_intel, kvm_amd or kvm_pvm module)"),
    };
    Feature {
        available: available && api == 12,
        detail: format!("/dev/kvm read-write, API version {api}; {what}"),
    }
}

/// What `auto` picks: the container tier when the live user-namespace probe passes,
/// else the process tier.
pub fn choose_auto(userns: &UserNamespaces, landlock: &LandlockProbe) -> AutoChoice {
    if userns.available {
        return AutoChoice {
            tier: Tier::Container,
            reason: format!("container tier: {}", userns.detail),
        };
    }
    let mut reason = format!(
        "process tier: user namespaces unavailable ({})",
        userns.detail
    );
    if landlock.abi == 0 {
        reason.push_str(&format!(
            "; {} too, so runs fail closed unless --allow-degraded",
            landlock.detail
        ));
    }
    AutoChoice {
        tier: Tier::Process,
        reason,
    }
}

fn missing_items(r: &HostReport) -> Vec<Missing> {
    let mut out = Vec::new();
    let u = &r.user_namespaces;
    if !u.available {
        let mut how = Vec::new();
        if u.unprivileged_userns_clone.as_deref() == Some("0") {
            how.push("sysctl -w kernel.unprivileged_userns_clone=1");
        }
        if u.max_user_namespaces == Some(0) {
            how.push("sysctl -w user.max_user_namespaces=15000");
        }
        if u.apparmor_restrict_unprivileged_userns.as_deref() == Some("1") {
            how.push(
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor \
                 profile granting `userns,` to the skillsandbox binary)",
            );
        }
        if how.is_empty() {
            how.push(
                "allow unprivileged user namespaces (inside a container: run it with a \
                 seccomp/AppArmor profile that permits unshare/clone of CLONE_NEWUSER)",
            );
        }
        out.push(Missing {
            item: "user namespaces".into(),
            effect: "no container tier: runs use the process tier (no private root, PID, \
                     network or IPC namespace; no domain-filtered egress)"
                .into(),
            how: format!("{}; or keep using --tier process", how.join("; ")),
        });
    }
    let l = &r.landlock;
    if l.abi == 0 {
        out.push(Missing {
            item: "Landlock".into(),
            effect: "no process tier (it is the filesystem isolation there); the container \
                     tier loses a defence-in-depth layer"
                .into(),
            how: "boot with Landlock in the LSM list (lsm=landlock,... on the kernel command \
                  line, or CONFIG_LSM) on Linux 5.13+"
                .into(),
        });
    } else if l.abi < 6 {
        out.push(Missing {
            item: format!("Landlock ABI 6 (have {})", l.abi),
            effect: if l.abi < 4 {
                "process tier: TCP connects cannot be restricted (runs refused unless \
                 --allow-degraded); signals and abstract unix sockets not scoped"
                    .into()
            } else {
                "process tier: signals to other processes of the same user are not scoped".into()
            },
            how: "use Linux 6.12+".into(),
        });
    }
    if !r.seccomp.filter {
        out.push(Missing {
            item: "seccomp filters".into(),
            effect: "no tier can start (the syscall filter is mandatory)".into(),
            how: "use a kernel with CONFIG_SECCOMP_FILTER".into(),
        });
    } else if !r.seccomp.user_notification {
        out.push(Missing {
            item: "seccomp user notification".into(),
            effect: "refused syscalls are blocked but not recorded in the trace".into(),
            how: "use Linux 5.0+".into(),
        });
    }
    for c in &r.cgroup.controllers {
        if !c.available || !c.writable {
            out.push(Missing {
                item: format!("cgroup {} controller", c.name),
                effect: format!("no {} limit: runs refused unless --allow-degraded", c.name),
                how: "run as root, or from a delegated cgroup (systemd-run --user --scope -p \
                      Delegate=yes skillsandbox ...)"
                    .into(),
            });
        }
    }
    if let Some(idm) = &r.idmapped_mounts {
        if !idm.available {
            out.push(Missing {
                item: "idmapped mounts".into(),
                effect: "as root, declared write paths cannot be remapped to the sandbox user"
                    .into(),
                how: "use Linux 5.12+".into(),
            });
        }
    }
    out
}

/// Probe everything `doctor` shows. Costs one fork (the user-namespace probe).
pub fn host_report() -> HostReport {
    let user_namespaces = probe_user_namespaces();
    let landlock = probe_landlock();
    let host_root = is_host_root();
    let mut r = HostReport {
        kernel_release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        uid: nix::unistd::geteuid().as_raw(),
        host_root,
        auto: choose_auto(&user_namespaces, &landlock),
        user_namespaces,
        landlock,
        seccomp: probe_seccomp(),
        cgroup: probe_cgroup(),
        idmapped_mounts: host_root.then(probe_idmapped_mounts),
        kvm: Some(probe_kvm()),
        missing: Vec::new(),
    };
    r.missing = missing_items(&r);
    r
}

#[cfg(test)]
mod tests {

    #[test]
    fn favordynmods_is_read_from_cgroup2_super_options() {
        let off = "35 24 0:30 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
                   36 24 0:31 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory\n";
        assert_eq!(favordynmods(off), Some(false));
        let on = off.replace("cgroup2 cgroup2 rw", "cgroup2 cgroup2 rw,favordynmods");
        assert_eq!(favordynmods(&on), Some(true));
        assert_eq!(
            favordynmods("36 24 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"),
            None
        );
    }

    use super::*;

    #[test]
    fn root_mapping_is_read_from_uid_map() {
        assert!(uid_map_maps_root_to_root(
            "         0          0 4294967295\n"
        ));
        assert!(!uid_map_maps_root_to_root(
            "         0       1000          1\n"
        ));
        assert!(!uid_map_maps_root_to_root(""));
    }

    fn userns(available: bool) -> UserNamespaces {
        UserNamespaces {
            available,
            detail: "d".into(),
            unprivileged_userns_clone: None,
            max_user_namespaces: Some(0),
            apparmor_restrict_unprivileged_userns: Some("1".into()),
            probe_us: 1,
        }
    }

    #[test]
    fn auto_prefers_the_container_tier() {
        let ll = LandlockProbe {
            abi: 7,
            detail: "x".into(),
            features: vec![],
        };
        assert_eq!(choose_auto(&userns(true), &ll).tier, Tier::Container);
        let c = choose_auto(&userns(false), &ll);
        assert_eq!(c.tier, Tier::Process);
        assert!(c.reason.contains("user namespaces unavailable (d)"));
    }

    #[test]
    fn missing_userns_names_every_relevant_switch() {
        let r = HostReport {
            kernel_release: "6".into(),
            uid: 1000,
            host_root: false,
            user_namespaces: userns(false),
            landlock: LandlockProbe {
                abi: 3,
                detail: "x".into(),
                features: vec![],
            },
            seccomp: SeccompProbe {
                filter: true,
                user_notification: true,
                detail: String::new(),
            },
            cgroup: CgroupProbe {
                version: "v2".into(),
                controllers: vec![],
                detail: String::new(),
                favordynmods: None,
            },
            idmapped_mounts: None,
            kvm: None,
            auto: AutoChoice {
                tier: Tier::Process,
                reason: String::new(),
            },
            missing: vec![],
        };
        let m = missing_items(&r);
        assert_eq!(m.len(), 2);
        assert!(m[0].how.contains("user.max_user_namespaces=15000"));
        assert!(m[0].how.contains("apparmor_restrict_unprivileged_userns=0"));
        assert!(m[0].how.contains("--tier process"));
        assert!(m[1].effect.contains("TCP connects cannot be restricted"));
    }

    #[test]
    fn live_probe_reports_a_reason_either_way() {
        let u = probe_user_namespaces();
        assert!(!u.detail.is_empty());
        if crate::probe::is_host_root()
            && std::env::var("SKILLSANDBOX_TEST_REQUIRE").as_deref() == Ok("full")
        {
            assert!(u.available, "{}", u.detail);
        }
    }
}
