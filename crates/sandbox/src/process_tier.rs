//! The process tier (DESIGN.md §7): confinement without namespaces or mounts, for
//! hosts where user namespaces are unavailable.
//!
//! Owns the pure lowering [`lower_process`] (Policy → a [`LaunchPlan`] with no mounts
//! and a [`ProcessTierPlan`]) and, in submodules, the child side: the stage (same
//! fresh exec of our binary as the container tier) drops host root, becomes the
//! subreaper of the run and forks the skill, which puts on itself, in order: session,
//! parent-death signal, rlimits, closed fds, scrubbed environment, empty capability
//! sets, `no_new_privs`, Landlock (filesystem + TCP ports + scoping; the filesystem
//! isolation of this tier, so required unless degraded), a socket-family filter and
//! the seccomp profile — then `execve`.
//!
//! Everything the skill may touch is a host path: the skill directory, declared
//! paths, the system directories, a few `/etc` files, a private scratch directory
//! (HOME and TMPDIR) the supervisor creates and removes. This module never lowers to
//! anything the kernel cannot enforce without namespaces; what that leaves out is
//! listed by the runtime's tier check (domain/cidr egress, `deny` carve-outs).

mod sockets;
mod stage;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillsandbox_manifest::Policy;

use crate::disable::LayerDisabledForTests;
use crate::plan::{
    lower_env, Identity, LandlockPlan, LaunchPlan, PlanError, Rlimits, ETC_PASSTHROUGH,
    SANDBOX_HOME, SYSTEM_DIRS,
};

pub use sockets::{socket_filter_rules, SocketRule};
pub(crate) use stage::run_stage;

/// Host `/etc` files the process tier grants read access to on top of
/// [`ETC_PASSTHROUGH`] (the container tier synthesises these instead). Never all of
/// `/etc`.
pub const ETC_PROCESS_EXTRA: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
];

/// Device nodes that stay usable (read-write).
pub const PROCESS_DEV_NODES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/dev/tty",
    "/dev/pts",
];

/// Where the skill directory appears in the container tier; the process tier maps
/// this prefix (in the workdir, the command and its arguments) to the host path.
pub const CONTAINER_SKILL_DIR: &str = "/skill";

/// What only the process tier needs, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTierPlan {
    /// Private per-run directory (HOME and TMPDIR), created 0700 by the supervisor.
    pub scratch: PathBuf,
    /// TCP ports `connect` may reach, on any address (Landlock cannot filter by
    /// address or name). Empty: no TCP connect at all.
    pub tcp_connect_ports: Vec<u16>,
    /// Let the skill create UDP sockets. Only in a degraded run with egress declared
    /// (name resolution needs it); UDP is then unfiltered.
    pub allow_udp: bool,
    /// Landlock must be in force (fail closed); false only with `--allow-degraded`.
    pub require_landlock: bool,
}

/// Inputs of [`lower_process`] besides the policy.
#[derive(Debug, Clone)]
pub struct ProcessLowerInput<'a> {
    pub identity: Identity,
    /// Host environment (name, value) pairs; only allowed names are taken.
    pub host_env: &'a [(String, String)],
    /// Arguments appended to the entrypoint's own.
    pub extra_args: &'a [String],
    pub seccomp_notify: bool,
    pub scratch: &'a Path,
    /// The run was allowed to proceed with less than the manifest asks
    /// (`--allow-degraded`): declared egress ports open on any address, UDP allowed,
    /// Landlock not required.
    pub degraded: bool,
    /// What the container tier binds read-only at a fixed path inside (only `check`,
    /// for its probe binary): here the host path is granted read/execute by Landlock,
    /// and the inside path, where the command or an argument names it, is mapped to
    /// the host path (there is no mount to put it there).
    pub extra_ro_binds: &'a [(PathBuf, PathBuf)],
    /// Test-only: a layer to skip (see [`crate::disable`]).
    pub dangerously_disabled_layer: Option<LayerDisabledForTests>,
}

/// Maps a path as the container tier sees it to the host path the process tier uses:
/// an extra bind's inside path → its host path, `/skill/...` → the skill directory,
/// `$HOME`/`/tmp` of the sandbox → scratch.
fn host_path(
    p: &str,
    binds: &[(PathBuf, PathBuf)],
    skill_dir: Option<&Path>,
    scratch: &Path,
) -> Option<PathBuf> {
    let path = Path::new(p);
    if let Some((source, _)) = binds.iter().find(|(_, inside)| path == inside) {
        return Some(source.clone());
    }
    let map = |prefix: &str, to: &Path| {
        path.strip_prefix(prefix).ok().map(|rest| {
            if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            }
        })
    };
    if let Some(dir) = skill_dir {
        if let Some(m) = map(CONTAINER_SKILL_DIR, dir) {
            return Some(m);
        }
    }
    map(SANDBOX_HOME, scratch).or_else(|| map("/tmp", scratch))
}

/// Lower a policy for the process tier. Pure: same inputs, same plan.
pub fn lower_process(
    policy: &Policy,
    input: &ProcessLowerInput<'_>,
) -> Result<LaunchPlan, PlanError> {
    if policy.entrypoint.command.is_empty() {
        return Err(PlanError::EmptyCommand);
    }
    let skill_dir = policy.skill_dir.as_deref();
    let scratch = input.scratch;
    if !scratch.is_absolute() {
        return Err(PlanError::NotAbsolute(scratch.to_path_buf()));
    }
    let fs = &policy.filesystem;
    for p in fs.read.iter().chain(&fs.write) {
        if !p.is_absolute() {
            return Err(PlanError::NotAbsolute(p.clone()));
        }
    }

    let mut env = lower_env(policy, input.host_env);
    for (k, v) in &mut env {
        if k == "HOME" || k == "TMPDIR" {
            *v = scratch.display().to_string();
        }
    }

    let map_arg = |a: &String| {
        if a.starts_with('/') {
            host_path(a, input.extra_ro_binds, skill_dir, scratch)
                .map_or_else(|| a.clone(), |p| p.display().to_string())
        } else {
            a.clone()
        }
    };
    let mut argv = vec![map_arg(&policy.entrypoint.command)];
    argv.extend(policy.entrypoint.args.iter().map(map_arg));
    argv.extend(input.extra_args.iter().map(map_arg));
    let wd = &policy.entrypoint.workdir;
    let workdir =
        host_path(&wd.display().to_string(), &[], skill_dir, scratch).unwrap_or_else(|| wd.clone());

    let mut read_exec: Vec<PathBuf> = SYSTEM_DIRS
        .iter()
        .chain(ETC_PASSTHROUGH)
        .chain(ETC_PROCESS_EXTRA)
        .map(PathBuf::from)
        .collect();
    read_exec.extend(skill_dir.map(Path::to_path_buf));
    for (source, inside) in input.extra_ro_binds {
        for p in [source, inside] {
            if !p.is_absolute() {
                return Err(PlanError::NotAbsolute(p.clone()));
            }
        }
        read_exec.push(source.clone());
    }
    read_exec.extend(fs.read.iter().filter(|p| !fs.write.contains(p)).cloned());
    read_exec.push(PathBuf::from("/proc"));
    let mut read_write: Vec<PathBuf> = vec![scratch.to_path_buf()];
    read_write.extend(fs.write.iter().cloned());
    read_write.extend(PROCESS_DEV_NODES.iter().map(PathBuf::from));

    let limits = &policy.limits;
    Ok(LaunchPlan {
        identity: input.identity.clone(),
        hostname: String::new(),
        mounts: Vec::new(),
        egress_ports: Vec::new(),
        egress: false,
        network: crate::plan::NetworkPlan::Sandbox,
        env,
        argv,
        workdir,
        rlimits: Rlimits {
            nofile: limits.max_open_files,
            fsize_bytes: limits.max_file_size_mb.saturating_mul(1024 * 1024),
            core: 0,
        },
        landlock: LandlockPlan {
            read_exec,
            read_write,
            // What the manifest declares: checked for symlinks by the supervisor, and
            // possibly in the hands of someone who can swap them since (a workspace).
            no_symlinks: {
                let mut d: Vec<PathBuf> = fs.read.iter().chain(&fs.write).cloned().collect();
                d.sort();
                d.dedup();
                d
            },
        },
        seccomp: policy.syscalls,
        // The host filesystem is the skill's filesystem here.
        files_outlive_run: true,
        seccomp_notify: input.seccomp_notify,
        seccomp_filter: None,
        seccomp_observe: false,
        stacked_seccomp: None,
        dangerously_disabled_layer: input.dangerously_disabled_layer,
        process: Some(ProcessTierPlan {
            scratch: scratch.to_path_buf(),
            tcp_connect_ports: if input.degraded {
                policy.network.ports()
            } else {
                Vec::new()
            },
            allow_udp: input.degraded && !policy.network.egress.is_empty(),
            require_landlock: !input.degraded,
        }),
        terminal: false,
        seccomp_watch_egress: false,
    })
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
            network: NetworkPolicy {
                egress: vec![EgressRule::Domain {
                    domain: DomainPattern::Exact("api.example.com".into()),
                    ports: vec![443, 8443],
                    http: Default::default(),
                    allow_private_resolution: false,
                }],
                record: false,
                secrets: Vec::new(),
            },
            filesystem: FilesystemPolicy {
                read: vec!["/data/in".into(), "/data/out".into()],
                write: vec!["/data/out".into()],
                deny: vec![],
            },
            env: EnvPolicy {
                allow: vec![EnvPattern::Exact("API_KEY".into())],
            },
            syscalls: SyscallProfile::Default,
            limits: Limits::default(),
            tier: Tier::Process,
            record_denials: None,
            entrypoint: Entrypoint {
                command: "/skill/run.sh".into(),
                args: vec!["/skill/data.txt".into(), "-v".into(), "/tmp/x".into()],
                workdir: "/skill".into(),
            },
        }
    }

    fn input<'a>(env: &'a [(String, String)], degraded: bool) -> ProcessLowerInput<'a> {
        ProcessLowerInput {
            identity: Identity {
                host_uid: 1000,
                host_gid: 1000,
                drop_host_root: false,
                inside_uid: 0,
                inside_gid: 0,
            },
            host_env: env,
            extra_args: &[],
            seccomp_notify: true,
            scratch: Path::new("/run/user/1000/skillsandbox-abc"),
            degraded,
            extra_ro_binds: &[],
            dangerously_disabled_layer: None,
        }
    }

    #[test]
    fn extra_ro_binds_are_granted_read_exec_at_their_host_path() {
        let mut p = policy();
        p.entrypoint.command = "/run/check/probe".into();
        p.entrypoint.args = vec!["/run/check/probe".into(), "/run/check/probe/x".into()];
        let binds = vec![(
            PathBuf::from("/opt/bin/skillsandbox"),
            PathBuf::from("/run/check/probe"),
        )];
        let mut inp = input(&[], false);
        inp.extra_ro_binds = &binds;
        let plan = lower_process(&p, &inp).unwrap();
        assert!(plan.mounts.is_empty());
        assert_eq!(
            plan.argv,
            vec![
                "/opt/bin/skillsandbox",
                "/opt/bin/skillsandbox",
                // Only the bound path itself is mapped: nothing is beneath a file.
                "/run/check/probe/x",
            ]
        );
        assert!(plan
            .landlock
            .read_exec
            .contains(&PathBuf::from("/opt/bin/skillsandbox")));
        assert!(!plan
            .landlock
            .read_exec
            .contains(&PathBuf::from("/run/check/probe")));
        assert!(!plan
            .landlock
            .read_write
            .contains(&PathBuf::from("/opt/bin/skillsandbox")));
        // Without the bind, nothing of it is granted.
        let plain = lower_process(&p, &input(&[], false)).unwrap();
        assert!(!plain
            .landlock
            .read_exec
            .contains(&PathBuf::from("/opt/bin/skillsandbox")));
        let rel = vec![(PathBuf::from("bin/x"), PathBuf::from("/run/x"))];
        inp.extra_ro_binds = &rel;
        assert!(matches!(
            lower_process(&p, &inp),
            Err(PlanError::NotAbsolute(_))
        ));
    }

    #[test]
    fn no_mounts_and_host_paths_everywhere() {
        let env = vec![
            ("API_KEY".to_string(), "k".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
        ];
        let plan = lower_process(&policy(), &input(&env, false)).unwrap();
        assert!(plan.mounts.is_empty());
        assert!(!plan.egress);
        assert_eq!(
            plan.argv,
            vec![
                "/srv/skill/run.sh",
                "/srv/skill/data.txt",
                "-v",
                "/run/user/1000/skillsandbox-abc/x"
            ]
        );
        assert_eq!(plan.workdir, PathBuf::from("/srv/skill"));
        let get = |k: &str| {
            plan.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some("/run/user/1000/skillsandbox-abc"));
        assert_eq!(get("TMPDIR"), Some("/run/user/1000/skillsandbox-abc"));
        assert_eq!(get("API_KEY"), Some("k"));
        assert_eq!(get("AWS_SECRET_ACCESS_KEY"), None);
    }

    #[test]
    fn landlock_rules_grant_exactly_the_declared_and_system_paths() {
        let plan = lower_process(&policy(), &input(&[], false)).unwrap();
        let ro = &plan.landlock.read_exec;
        assert!(ro.contains(&PathBuf::from("/usr")));
        assert!(ro.contains(&PathBuf::from("/srv/skill")));
        assert!(ro.contains(&PathBuf::from("/data/in")));
        assert!(ro.contains(&PathBuf::from("/etc/passwd")));
        assert!(ro.contains(&PathBuf::from("/proc")));
        // Never all of /etc, never the write path as read-only.
        assert!(!ro.contains(&PathBuf::from("/etc")));
        assert!(!ro.contains(&PathBuf::from("/data/out")));
        assert!(ro
            .iter()
            .all(|p| !p.starts_with("/etc/shadow") && !p.starts_with("/home")));
        assert_eq!(
            plan.landlock.read_write,
            vec![
                PathBuf::from("/run/user/1000/skillsandbox-abc"),
                PathBuf::from("/data/out"),
                PathBuf::from("/dev/null"),
                PathBuf::from("/dev/zero"),
                PathBuf::from("/dev/urandom"),
                PathBuf::from("/dev/random"),
                PathBuf::from("/dev/tty"),
                PathBuf::from("/dev/pts"),
            ]
        );
        // The declared paths, and only they, are opened without following symlinks
        // (system paths such as /bin may be symlinks; the skill dir is ours).
        assert_eq!(
            plan.landlock.no_symlinks,
            vec![PathBuf::from("/data/in"), PathBuf::from("/data/out")]
        );
    }

    #[test]
    fn network_opens_only_when_degraded() {
        let strict = lower_process(&policy(), &input(&[], false)).unwrap();
        let p = strict.process.unwrap();
        assert!(p.tcp_connect_ports.is_empty());
        assert!(!p.allow_udp);
        assert!(p.require_landlock);
        let degraded = lower_process(&policy(), &input(&[], true)).unwrap();
        let p = degraded.process.unwrap();
        assert_eq!(p.tcp_connect_ports, vec![443, 8443]);
        assert!(p.allow_udp);
        assert!(!p.require_landlock);
    }

    #[test]
    fn home_workdir_maps_to_scratch() {
        let mut pol = policy();
        pol.skill_dir = None;
        pol.entrypoint.workdir = SANDBOX_HOME.into();
        pol.entrypoint.command = "ls".into();
        let plan = lower_process(&pol, &input(&[], false)).unwrap();
        assert_eq!(
            plan.workdir,
            PathBuf::from("/run/user/1000/skillsandbox-abc")
        );
        assert_eq!(plan.argv[0], "ls");
        // Without a skill directory, /skill is not special.
        assert_eq!(plan.argv[1], "/skill/data.txt");
    }
}
