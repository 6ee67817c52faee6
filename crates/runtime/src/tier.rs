//! Tier selection and the supervisor side of the process tier (DESIGN.md §7).
//!
//! [`choose`] resolves `auto | container | process` against this host (a live
//! user-namespace probe, no cache); [`process_gaps`] lists what the process tier
//! cannot enforce for a policy (the run is refused unless `--allow-degraded`);
//! [`prepare_process`] creates the private scratch directory and lowers the plan;
//! [`process_enforcement`] builds the trace's enforcement report, where namespaces
//! appear as `unavailable`, never as enforced.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use skillsandbox_audit::{LayerReport, LayerStatus};
use skillsandbox_manifest::{EgressRule, Policy, Tier};
use skillsandbox_sandbox::cgroup::SandboxCgroup;
use skillsandbox_sandbox::disable::LayerDisabledForTests;
use skillsandbox_sandbox::plan::{Identity, LaunchPlan};
use skillsandbox_sandbox::probe::{self, ROOT_INVOKER_SANDBOX_ID};
use skillsandbox_sandbox::process_tier::{lower_process, ProcessLowerInput};
use skillsandbox_sandbox::proto::LayerNote;

use crate::enforcement::layer;

/// The hint for a host without user namespaces.
pub const USERNS_HINT: &str = "user namespaces are unavailable: sysctl \
     kernel.unprivileged_userns_clone=1 (Debian), user.max_user_namespaces > 0, \
     kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04); \
     `skillsandbox doctor` shows which; or use --tier process";

/// Errors of choosing a tier or preparing a process-tier run.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("the container tier needs user namespaces: {detail}")]
    ContainerUnavailable { detail: String },
    #[error("the process tier cannot enforce what this run needs: {}", .gaps.join("; "))]
    Unenforceable { gaps: Vec<String> },
    #[error(
        "cannot create the scratch directory {path}: {source}; set TMPDIR to a writable directory"
    )]
    CreateScratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hand {path} to the sandbox user {uid}: {source}")]
    Chown {
        path: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not {what} for uid {uid}, which the skill runs as on the process tier \
         when the invoker is root (no idmapped mounts without namespaces)"
    )]
    Unreachable {
        path: PathBuf,
        what: &'static str,
        uid: u32,
    },
    #[error("cannot lower the policy for the process tier: {0}")]
    Plan(#[from] skillsandbox_sandbox::plan::PlanError),
    #[error("{0}")]
    DisableLayer(String),
}

impl TierError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            TierError::ContainerUnavailable { .. } => USERNS_HINT.to_string(),
            TierError::Unenforceable { .. } => "use the container tier (`skillsandbox doctor` \
                 says what this host lacks), or pass --allow-degraded to run anyway; the trace \
                 then lists exactly what was not enforced"
                .to_string(),
            TierError::Unreachable { uid, .. } => format!(
                "make it readable (directories: searchable) for uid {uid}, or use the \
                 container tier"
            ),
            _ => return None,
        })
    }
}

/// The tier a run uses and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChoice {
    /// `Container` or `Process`, never `Auto`.
    pub tier: Tier,
    pub reason: String,
}

impl TierChoice {
    /// The trace's `tier` field.
    pub fn name(&self) -> &'static str {
        match self.tier {
            Tier::Process => "process",
            _ => "container",
        }
    }
}

/// Resolve the requested tier on this host. `container` without user namespaces is
/// an error (never silently less isolation); `auto` falls back to `process`.
pub fn choose(requested: Tier) -> Result<TierChoice, TierError> {
    match requested {
        Tier::Process => Ok(TierChoice {
            tier: Tier::Process,
            reason: "process tier: requested".into(),
        }),
        Tier::Container => {
            let userns = user_namespaces();
            if userns.available {
                Ok(TierChoice {
                    tier: Tier::Container,
                    reason: format!("container tier: requested; {}", userns.detail),
                })
            } else {
                Err(TierError::ContainerUnavailable {
                    detail: userns.detail,
                })
            }
        }
        Tier::Auto => {
            let choice = probe::choose_auto(&user_namespaces(), &probe::probe_landlock());
            Ok(TierChoice {
                tier: choice.tier,
                reason: format!("auto: {}", choice.reason),
            })
        }
    }
}

/// The user-namespace probe (a fork, ~0.5-0.9 ms), run once per process while it
/// succeeds: a long-lived supervisor (`serve`) then pays it once, not per run. Only a
/// success is kept, in this process's memory (never on disk, where a process-tier
/// skill could forge it): were user namespaces switched off later, the next launch
/// fails closed at `unshare` with that error, never quietly on a weaker tier. A
/// failure is probed again each time, so a host that gains them is seen at once.
fn user_namespaces() -> probe::UserNamespaces {
    static AVAILABLE: std::sync::OnceLock<probe::UserNamespaces> = std::sync::OnceLock::new();
    if let Some(known) = AVAILABLE.get() {
        return known.clone();
    }
    let probed = probe::probe_user_namespaces();
    if probed.available {
        let _ = AVAILABLE.set(probed.clone());
    }
    probed
}

/// One thing the process tier cannot enforce for a policy: the layer and exactly
/// what stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub layer: &'static str,
    pub detail: String,
}

/// What the process tier cannot enforce for `policy` with Landlock ABI `abi`. Pure.
pub fn process_gaps(policy: &Policy, abi: i32) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let net = &policy.network;
    if !net.egress.is_empty() {
        let mut why = Vec::new();
        let domains: Vec<String> = net
            .egress
            .iter()
            .filter_map(|r| match r {
                EgressRule::Domain { domain, .. } => Some(domain.to_string()),
                EgressRule::Cidr { .. } => None,
            })
            .collect();
        let cidrs: Vec<String> = net
            .egress
            .iter()
            .filter_map(|r| match r {
                EgressRule::Cidr { cidr, .. } => Some(cidr.to_string()),
                EgressRule::Domain { .. } => None,
            })
            .collect();
        if !domains.is_empty() {
            why.push(format!(
                "the process tier cannot filter by domain ({})",
                domains.join(", ")
            ));
        }
        if !cidrs.is_empty() {
            why.push(format!(
                "the process tier cannot filter by address ({})",
                cidrs.join(", ")
            ));
        }
        gaps.push(Gap {
            layer: "network",
            detail: format!(
                "ports {:?} reachable on ANY address: {}; UDP (DNS included) unfiltered; \
                 no DNS or connection records",
                net.ports(),
                why.join("; ")
            ),
        });
    }
    if abi == 0 {
        gaps.push(Gap {
            layer: "landlock",
            detail: "Landlock unavailable: no filesystem isolation, no TCP restriction, \
                     every host file the invoker can read is readable"
                .into(),
        });
    } else if abi < 4 && net.egress.is_empty() {
        gaps.push(Gap {
            layer: "network",
            detail: format!(
                "Landlock ABI {abi} < 4: TCP connects cannot be restricted (any address, \
                 any port reachable)"
            ),
        });
    }
    // Landlock only grants; a carve-out inside a granted tree stays reachable.
    let fs = &policy.filesystem;
    let granted: Vec<&PathBuf> = fs
        .read
        .iter()
        .chain(&fs.write)
        .chain(policy.skill_dir.iter())
        .collect();
    for d in &fs.deny {
        if let Some(g) = granted.iter().find(|g| d.starts_with(g)) {
            gaps.push(Gap {
                layer: "filesystem",
                detail: format!(
                    "deny {} stays reachable: it lies inside the granted {} and Landlock \
                     cannot carve out part of a grant",
                    d.display(),
                    g.display()
                ),
            });
        }
    }
    gaps
}

/// The private scratch directory (HOME and TMPDIR) of one process-tier run, removed
/// when dropped.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks the skill may have planted.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Who the skill runs as on the process tier: the invoker, or the unprivileged
/// sandbox id when the invoker is host root. Uid 0 of a nested user namespace is
/// not host root: it keeps its uid and loses every capability.
pub fn process_identity() -> Identity {
    if probe::is_host_root() {
        Identity {
            host_uid: ROOT_INVOKER_SANDBOX_ID,
            host_gid: ROOT_INVOKER_SANDBOX_ID,
            drop_host_root: true,
            inside_uid: 0,
            inside_gid: 0,
        }
    } else {
        Identity {
            host_uid: skillsandbox_sandbox::sys::getuid(),
            host_gid: skillsandbox_sandbox::sys::getgid(),
            drop_host_root: false,
            inside_uid: 0,
            inside_gid: 0,
        }
    }
}

/// Declared write directories that do not exist yet (call before they are created,
/// so a root invoker can hand exactly those to the sandbox user).
pub fn absent_write_dirs(policy: &Policy) -> Vec<PathBuf> {
    policy
        .filesystem
        .write
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .cloned()
        .collect()
}

fn create_scratch(trace_id: &str, id: &Identity) -> Result<Scratch, TierError> {
    let short: String = trace_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let path = std::env::temp_dir().join(format!("skillsandbox-{short}"));
    // mkdir fails on anything already there (a planted symlink included).
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(|source| TierError::CreateScratch {
            path: path.clone(),
            source,
        })?;
    let scratch = Scratch { path };
    if id.drop_host_root {
        chown(&scratch.path, id)?;
    }
    Ok(scratch)
}

fn chown(path: &Path, id: &Identity) -> Result<(), TierError> {
    std::os::unix::fs::chown(path, Some(id.host_uid), Some(id.host_gid)).map_err(|source| {
        TierError::Chown {
            path: path.to_path_buf(),
            uid: id.host_uid,
            source,
        }
    })
}

/// Whether `uid`/`gid` may use `path` (`need`: the rwx bits wanted on it) and search
/// every ancestor, by the permission bits.
fn reachable(path: &Path, uid: u32, gid: u32, need: u32) -> bool {
    let allows = |p: &Path, bits: u32| {
        std::fs::metadata(p).is_ok_and(|m| {
            let shift = if m.uid() == uid {
                6
            } else if m.gid() == gid {
                3
            } else {
                0
            };
            (m.mode() >> shift) & bits == bits
        })
    };
    path.ancestors().skip(1).all(|a| allows(a, 0o1)) && allows(path, need)
}

/// A root invoker's skill runs as uid 65534: refuse paths it could not use, with a
/// message naming the path, instead of an EACCES deep inside the skill.
fn check_reachable(policy: &Policy, id: &Identity) -> Result<(), TierError> {
    let (uid, gid) = (id.host_uid, id.host_gid);
    let fs = &policy.filesystem;
    let dir_or_file = |p: &Path| if p.is_dir() { 0o5 } else { 0o4 };
    for p in policy.skill_dir.iter().chain(&fs.read) {
        if p.exists() && !reachable(p, uid, gid, dir_or_file(p)) {
            return Err(TierError::Unreachable {
                path: p.clone(),
                what: "readable",
                uid,
            });
        }
    }
    for p in &fs.write {
        let need = if p.is_dir() { 0o7 } else { 0o6 };
        if p.exists() && !reachable(p, uid, gid, need) {
            return Err(TierError::Unreachable {
                path: p.clone(),
                what: "writable",
                uid,
            });
        }
    }
    Ok(())
}

/// What the supervisor keeps for a process-tier run besides its plan.
pub struct ProcessRun {
    pub scratch: Scratch,
    pub gaps: Vec<Gap>,
    pub landlock_abi: i32,
}

/// Refuse what the tier cannot enforce (unless `degraded`), create the scratch
/// directory, hand fresh write directories to a root invoker's sandbox user, lower.
/// `fresh_writes` comes from [`absent_write_dirs`] before the directories were made.
pub fn prepare_process(
    policy: &Policy,
    extra_args: &[String],
    trace_id: &str,
    degraded: bool,
    fresh_writes: &[PathBuf],
    extra_ro_binds: &[(PathBuf, PathBuf)],
) -> Result<(LaunchPlan, ProcessRun), TierError> {
    let landlock_abi = probe::probe_landlock().abi;
    let gaps = process_gaps(policy, landlock_abi);
    if !gaps.is_empty() && !degraded {
        return Err(TierError::Unenforceable {
            gaps: gaps
                .iter()
                .map(|g| format!("{}: {}", g.layer, g.detail))
                .collect(),
        });
    }
    let disabled = LayerDisabledForTests::from_env().map_err(TierError::DisableLayer)?;
    let identity = process_identity();
    if identity.drop_host_root {
        for w in fresh_writes {
            chown(w, &identity)?;
        }
        check_reachable(policy, &identity)?;
    }
    let scratch = create_scratch(trace_id, &identity)?;
    let env = crate::prepare::host_env();
    let plan = lower_process(
        policy,
        &ProcessLowerInput {
            identity,
            host_env: &env,
            extra_args,
            seccomp_notify: true,
            scratch: &scratch.path,
            degraded,
            extra_ro_binds,
            dangerously_disabled_layer: disabled,
        },
    )?;
    Ok((
        plan,
        ProcessRun {
            scratch,
            gaps,
            landlock_abi,
        },
    ))
}

/// The plan `--dry-run` prints for the process tier (scratch path not created).
pub fn dry_run_process_plan(
    policy: &Policy,
    extra_args: &[String],
    degraded: bool,
) -> Result<LaunchPlan, TierError> {
    let env = crate::prepare::host_env();
    Ok(lower_process(
        policy,
        &ProcessLowerInput {
            identity: process_identity(),
            host_env: &env,
            extra_args,
            seccomp_notify: false,
            scratch: &std::env::temp_dir().join("skillsandbox-<run>"),
            degraded,
            extra_ro_binds: &[],
            dangerously_disabled_layer: None,
        },
    )?)
}

/// Layers that are missing by the nature of the tier (reported, never a reason to
/// refuse a run on their own).
pub fn inherent_gap(layer_name: &str) -> bool {
    layer_name.ends_with("_namespace") || layer_name == "scratch"
}

/// The enforcement report of a process-tier run, from what the stage reported.
pub fn process_enforcement(
    plan: &LaunchPlan,
    notes: &[LayerNote],
    cgroup: Option<&SandboxCgroup>,
    cgroup_missing: Option<&str>,
    gaps: &[Gap],
) -> Vec<LayerReport> {
    use LayerStatus::*;
    let id = &plan.identity;
    let who = if id.drop_host_root {
        format!(
            "the skill runs as host uid {} (invoker is root; host root dropped)",
            id.host_uid
        )
    } else {
        format!("the skill runs as host uid {} (the invoker)", id.host_uid)
    };
    let tier = "process tier";
    let mut out = vec![
        layer("user_namespace", Unavailable, format!("{tier}: {who}")),
        layer(
            "pid_namespace",
            Unavailable,
            format!(
                "{tier}: host processes are visible in /proc; ptrace is refused (seccomp, \
                 Landlock) and signals are scoped where Landlock ABI >= 6"
            ),
        ),
        layer(
            "mount_namespace",
            Unavailable,
            format!(
                "{tier}: the host filesystem is visible; Landlock limits access to granted paths"
            ),
        ),
        layer(
            "ipc_namespace",
            Unavailable,
            format!("{tier}: host SysV IPC objects and POSIX message queues are shared"),
        ),
        layer(
            "uts_namespace",
            Unavailable,
            format!("{tier}: host hostname"),
        ),
        layer(
            "cgroup_namespace",
            Unavailable,
            format!("{tier}: host cgroup paths are visible (not writable: /sys is not granted)"),
        ),
    ];
    let p = plan.process.as_ref();
    let net_gap: Vec<&Gap> = gaps.iter().filter(|g| g.layer == "network").collect();
    out.push(if net_gap.is_empty() {
        let landlock_on = notes
            .iter()
            .any(|n| n.layer == "landlock" && n.status != "unavailable");
        if landlock_on {
            layer(
                "network",
                Enforced,
                "no egress declared: no TCP connect or bind on any address (Landlock), no \
                 UDP, raw or other IP sockets (socket filter); the host network namespace \
                 is shared but unreachable",
            )
        } else {
            layer(
                "network",
                Unavailable,
                "Landlock not in force: TCP is not restricted",
            )
        }
    } else {
        layer(
            "network",
            Partial,
            net_gap
                .iter()
                .map(|g| g.detail.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    for g in gaps.iter().filter(|g| g.layer == "filesystem") {
        out.push(layer("filesystem", Partial, g.detail.clone()));
    }
    out.push(layer(
        "scratch",
        Partial,
        format!(
            "private HOME and TMPDIR {} (0700, removed after the run); its size is not \
             limited (no tmpfs without a mount namespace), each file is capped by RLIMIT_FSIZE",
            p.map(|p| p.scratch.display().to_string())
                .unwrap_or_default()
        ),
    ));
    out.push(layer(
        "environment",
        Enforced,
        format!(
            "cleared; {} variables set: {}",
            plan.env.len(),
            plan.env
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    out.push(layer(
        "rlimits",
        Enforced,
        format!(
            "RLIMIT_NOFILE={} RLIMIT_FSIZE={} RLIMIT_CORE={}",
            plan.rlimits.nofile, plan.rlimits.fsize_bytes, plan.rlimits.core
        ),
    ));
    out.push(layer(
        "no_new_privs",
        Enforced,
        "PR_SET_NO_NEW_PRIVS set before exec",
    ));
    out.push(layer(
        "fds",
        Enforced,
        "every fd but 0-2 closed before exec",
    ));
    out.push(layer(
        "session",
        Enforced,
        "setsid: no controlling terminal; SIGKILL when the stage dies (PDEATHSIG); the \
         stage is the subreaper and kills what the skill leaves behind",
    ));
    crate::enforcement::append_reported(
        &mut out,
        notes,
        cgroup,
        cgroup_missing,
        "; processes that leave the skill's tree can outlive a timeout",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillsandbox_manifest::*;

    fn policy() -> Policy {
        Policy {
            skill: SkillInfo {
                name: "t".into(),
                version: "0.1.0".into(),
                description: None,
                author: None,
            },
            skill_dir: Some("/srv/skill".into()),
            manifest: None,
            network: NetworkPolicy::default(),
            filesystem: FilesystemPolicy::default(),
            env: EnvPolicy::default(),
            syscalls: SyscallProfile::Default,
            limits: Limits::default(),
            tier: Tier::Process,
            record_denials: None,
            entrypoint: Entrypoint {
                command: "true".into(),
                args: vec![],
                workdir: "/skill".into(),
            },
        }
    }

    #[test]
    fn nothing_to_refuse_without_egress_or_carve_outs() {
        assert!(process_gaps(&policy(), 6).is_empty());
        assert_eq!(process_gaps(&policy(), 0)[0].layer, "landlock");
        assert!(process_gaps(&policy(), 3)[0]
            .detail
            .contains("TCP connects cannot be restricted"));
    }

    #[test]
    fn domain_and_cidr_egress_are_named() {
        let mut p = policy();
        p.network.egress = vec![
            EgressRule::Domain {
                domain: DomainPattern::Exact("api.example.com".into()),
                ports: vec![443],
                http: Default::default(),
                allow_private_resolution: false,
            },
            EgressRule::Cidr {
                cidr: "10.0.0.0/8".parse().unwrap(),
                ports: vec![5432],
            },
        ];
        let gaps = process_gaps(&p, 7);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].layer, "network");
        assert!(gaps[0].detail.starts_with(
            "ports [443, 5432] reachable on ANY address: the process tier cannot filter by \
             domain (api.example.com); the process tier cannot filter by address (10.0.0.0/8)"
        ));
    }

    #[test]
    fn deny_inside_a_grant_is_a_gap_outside_is_not() {
        let mut p = policy();
        p.filesystem.read = vec!["/data".into()];
        p.filesystem.deny = vec!["/data/secret".into(), "/elsewhere".into()];
        let gaps = process_gaps(&p, 7);
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].detail.contains("deny /data/secret"));
    }

    #[test]
    fn namespaces_are_never_reported_enforced() {
        let plan = dry_run_process_plan(&policy(), &[], false).unwrap();
        let report = process_enforcement(&plan, &[], None, Some("no cgroup"), &[]);
        for l in &report {
            if l.layer.ends_with("_namespace") {
                assert_eq!(l.status, LayerStatus::Unavailable, "{}", l.layer);
                assert!(l.detail.starts_with("process tier"));
            }
        }
        // No Landlock note: the network cannot be called enforced either.
        let net = report.iter().find(|l| l.layer == "network").unwrap();
        assert_eq!(net.status, LayerStatus::Unavailable);
    }

    #[test]
    fn reachability_follows_the_mode_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tier-reach-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let me = skillsandbox_sandbox::sys::getuid();
        assert!(reachable(&f, me, u32::MAX, 0o4));
        assert!(!reachable(&f, 4242, 4242, 0o4));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(reachable(&f, 4242, 4242, 0o4));
        assert!(!reachable(&f, 4242, 4242, 0o6));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
