//! Pure lowering: [`Policy`] + a snapshot of the host layout → [`LaunchPlan`].
//!
//! Everything the child stages do is decided here, as data, so it can be printed by
//! `--dry-run` and tested against exact expected output. Nothing in this module
//! touches the kernel or the filesystem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skillsandbox_manifest::{Policy, SyscallProfile};

use crate::disable::LayerDisabledForTests;

/// Where the new root is assembled before the final `pivot_root`.
pub const NEWROOT: &str = "/newroot";
/// Where the host root is visible while the new root is assembled.
pub const OLDROOT: &str = "/oldroot";
/// The sandbox user's home (a private tmpfs).
pub const SANDBOX_HOME: &str = "/home/sandbox";
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
pub const SANDBOX_HOSTNAME: &str = "skillsandbox";
/// Address `/etc/resolv.conf` names; with the egress routes it lands on the sandbox's
/// own DNS socket, without them nothing answers.
pub const SANDBOX_RESOLVER: &str = "192.0.2.53";

/// Top-level host directories whose system content the sandbox sees read-only.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
];

/// Host `/etc` entries programs need; everything else in `/etc` is left out.
/// Directories are bound read-only, files bound read-only, symlinks recreated.
pub const ETC_PASSTHROUGH: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/python3.12",
];

/// Files under `/proc` hidden behind `/dev/null` (kernel memory, tracing, triggers).
pub const PROC_MASKED_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/kallsyms",
    "/proc/sysrq-trigger",
    "/proc/timer_list",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
];
/// Directories under `/proc` hidden behind an empty read-only tmpfs.
/// (`/proc/pressure`: a PSI trigger written there is a system-wide kernel object.)
pub const PROC_MASKED_DIRS: &[&str] =
    &["/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/pressure"];

/// Device nodes bound from the host `/dev`.
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What the host looks like, captured once by the supervisor (the only I/O input).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLayout {
    /// For each path in [`SYSTEM_DIRS`] and [`ETC_PASSTHROUGH`] that exists on the
    /// host: what it is.
    pub entries: BTreeMap<PathBuf, HostEntry>,
    /// Declared paths that do not exist on the host.
    pub missing: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "target", rename_all = "snake_case")]
pub enum HostEntry {
    Dir,
    File,
    Symlink(PathBuf),
}

/// Identity of the sandbox user as seen inside and on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Host uid/gid the sandbox runs as (the invoker when rootless, an unprivileged
    /// id when the invoker is root).
    pub host_uid: u32,
    pub host_gid: u32,
    /// Whether the stage must first switch from host root to `host_uid`.
    pub drop_host_root: bool,
    /// The uid/gid `host_uid`/`host_gid` are inside the user namespace (its only
    /// mapping): 0 (root inside, no capabilities once the skill runs) unless an OCI
    /// spec's `process.user` asks for another (`docker run --user 1000:1000`).
    #[serde(default)]
    pub inside_uid: u32,
    #[serde(default)]
    pub inside_gid: u32,
}

/// One step of building the new root, executed in order by the child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MountOp {
    /// A tmpfs at `target` (inside the new root).
    Tmpfs {
        target: PathBuf,
        size_mb: u64,
        mode: u32,
        readonly: bool,
        /// `noexec` too (an engine's `--tmpfs`, which asks for it by default).
        #[serde(default)]
        noexec: bool,
    },
    /// Bind the host path `source` at `target`. Symlinks in `source` are refused.
    Bind {
        source: PathBuf,
        target: PathBuf,
        writable: bool,
        /// Device nodes must keep working: no `nodev`.
        device: bool,
        /// Prepared by the (root) supervisor as an idmapped mount, so host-root-owned
        /// files appear as the sandbox user's and what it writes is owned by root.
        #[serde(default)]
        idmap: bool,
    },
    /// `skillsandbox oci`: the image's root filesystem at the new root. Opened by the
    /// supervisor (the stage, no longer host root, may not reach it), idmapped when
    /// the filesystem allows (overlayfs does not: its files then keep their host
    /// owners, seen inside as the overflow id), read-only once the root is entered.
    ImageRoot {
        source: PathBuf,
    },
    /// A file with fixed contents (synthetic `/etc` entries).
    File {
        target: PathBuf,
        contents: String,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
        link_to: PathBuf,
    },
    Dir {
        target: PathBuf,
        mode: u32,
    },
    /// A fresh `/proc` for the new PID namespace.
    Proc {
        target: PathBuf,
    },
    /// A fresh devpts instance at `target`, `/dev/ptmx` pointing into it.
    Devpts {
        target: PathBuf,
    },
    /// Make an existing mount read-only (bind it onto itself first).
    ReadonlyBindSelf {
        target: PathBuf,
    },
    /// Hide a file behind `/dev/null` (missing files are skipped).
    MaskFile {
        target: PathBuf,
    },
    /// Hide a directory behind an empty read-only tmpfs (missing dirs are skipped).
    MaskDir {
        target: PathBuf,
    },
    /// Make one mount read-only, not its submounts (`/dev` once populated).
    Seal {
        target: PathBuf,
    },
}

/// Resource limits applied with `setrlimit` in the skill process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    pub nofile: u64,
    pub fsize_bytes: u64,
    pub core: u64,
}

/// Landlock path rules (host paths): the process tier's filesystem boundary. Empty
/// on the container tier, where the mount view is the boundary (docs/tiers.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockPlan {
    pub read_exec: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// The declared paths among them: their rules are opened without following
    /// symlinks ([`crate::landlock::LandlockRules::no_symlinks`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_symlinks: Vec<PathBuf>,
}

/// The network namespace the sandbox runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "path", rename_all = "snake_case")]
pub enum NetworkPlan {
    /// SkillSandbox's own: a new namespace, loopback only, plus the egress routes and
    /// sockets when egress is declared (DESIGN.md §4).
    #[default]
    Sandbox,
    /// `skillsandbox oci` with the engine's network opted into, the spec naming no
    /// namespace path: a new namespace with loopback up, nothing else. SkillSandbox
    /// enforces no egress (there is no route out either).
    EngineNew,
    /// `skillsandbox oci` with the engine's network opted into: the spec's namespace
    /// at this path (a CNI or `ip netns` namespace), joined by the stage while it still
    /// holds host root, before it creates the user namespace (joining one owned by the
    /// host's user namespace needs `CAP_SYS_ADMIN` there). Inside, the sandbox has no
    /// capability over it (no interface, route or firewall change). SkillSandbox
    /// enforces no egress: the engine's network decides. The host's own namespace is
    /// refused.
    EngineJoin(PathBuf),
}

impl NetworkPlan {
    /// Whether SkillSandbox's network layer (deny-all, or the egress allow-list) is
    /// in force.
    pub fn is_sandbox(&self) -> bool {
        *self == NetworkPlan::Sandbox
    }
}

/// Everything the child stages need, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub identity: Identity,
    pub hostname: String,
    pub mounts: Vec<MountOp>,
    /// Ports the egress service listens on inside the sandbox; empty: loopback only.
    pub egress_ports: Vec<u16>,
    pub egress: bool,
    /// Which network namespace; [`NetworkPlan::Sandbox`] unless `skillsandbox oci`
    /// opted into the engine's (then `egress` is false).
    #[serde(default, skip_serializing_if = "NetworkPlan::is_sandbox")]
    pub network: NetworkPlan,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    pub rlimits: Rlimits,
    pub landlock: LandlockPlan,
    pub seccomp: SyscallProfile,
    /// A file the skill creates can outlive the run on the host (a declared writable
    /// path; anything on the process tier): the profile's set-id refusals stay in the
    /// filter. Otherwise they are left out ([`crate::seccomp::SeccompPlan::without_setid_rules`]).
    pub files_outlive_run: bool,
    /// Observe seccomp refusals through user notification (the supervisor answers).
    pub seccomp_notify: bool,
    /// The filter, compiled by the supervisor ([`LaunchPlan::compile_seccomp`]); `None`:
    /// the stage compiles it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_filter: Option<crate::seccomp::CompiledFilter>,
    /// `skillsandbox learn`: the supervisor also observes every path and destination
    /// the skill names (see [`crate::seccomp::serve_observing`]). Set by the runtime
    /// after lowering, never by a manifest.
    #[serde(default)]
    pub seccomp_observe: bool,
    /// `skillsandbox oci`: the spec's own filter (`linux.seccomp`), compiled by the
    /// supervisor and loaded after ours: the kernel applies the stricter result of the
    /// two (see [`crate::seccomp::compile_stacked`]). `None`: ours only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacked_seccomp: Option<crate::seccomp::StackedFilter>,
    /// Test-only: the layer the stages skip (see [`crate::disable`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dangerously_disabled_layer: Option<LayerDisabledForTests>,
    /// Set for the process tier (no namespaces, no mounts); `None`: container tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::process_tier::ProcessTierPlan>,
    /// `skillsandbox oci` with `process.terminal`: the skill's stdin, stdout and stderr
    /// are a new terminal of the sandbox's own devpts, its controlling terminal; the
    /// master end goes to the supervisor ([`crate::proto::FromChild::Terminal`]).
    #[serde(default)]
    pub terminal: bool,
    /// No egress declared, in our own network namespace: the filter also sends
    /// `connect` and addressed `sendto` to the supervisor, which records an attempt
    /// to reach another host as a violation and lets the call go on to fail (the
    /// namespace has no route). See [`crate::seccomp::WATCHED_EGRESS_SYSCALLS`].
    #[serde(default)]
    pub seccomp_watch_egress: bool,
}

impl LaunchPlan {
    /// How the stage installs the filter.
    pub fn seccomp_options(&self) -> crate::seccomp::SeccompOptions {
        crate::seccomp::SeccompOptions {
            notify_denied: self.seccomp_notify,
            observe: self.seccomp_observe,
            watch_egress: self.seccomp_watch_egress && !self.seccomp_observe,
        }
    }

    /// Compiles the filter now, so the stage only loads it (call after the last
    /// change to the seccomp fields). The profile, whether files outlive the run and
    /// the two notify options decide the program entirely (the tables are constants),
    /// so a long-lived supervisor (`serve`, the MCP server) compiles each one once.
    pub fn compile_seccomp(&mut self) -> Result<(), crate::seccomp::SeccompError> {
        use std::sync::Mutex;
        type Key = (&'static str, bool, bool, bool, bool);
        static COMPILED: Mutex<Vec<(Key, crate::seccomp::CompiledFilter)>> = Mutex::new(Vec::new());
        let key = (
            crate::seccomp::profile_name(self.seccomp),
            self.files_outlive_run,
            self.seccomp_notify,
            self.seccomp_observe,
            self.seccomp_watch_egress,
        );
        let cached = COMPILED
            .lock()
            .ok()
            .and_then(|c| c.iter().find(|(k, _)| *k == key).map(|(_, f)| f.clone()));
        let filter = match cached {
            Some(f) => f,
            None => {
                let f =
                    crate::seccomp::compile_filter(&self.seccomp_plan(), &self.seccomp_options())?;
                if let Ok(mut c) = COMPILED.lock() {
                    c.push((key, f.clone()));
                }
                f
            }
        };
        self.seccomp_filter = Some(filter);
        Ok(())
    }

    /// The seccomp plan this launch installs, and the supervisor answers by.
    pub fn seccomp_plan(&self) -> crate::seccomp::SeccompPlan {
        let plan = crate::seccomp::seccomp_plan(self.seccomp);
        if self.files_outlive_run {
            plan
        } else {
            plan.without_setid_rules()
        }
    }
}

/// Errors of lowering a policy that cannot be expressed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the entrypoint command is empty")]
    EmptyCommand,
    #[error("path {0} is not absolute")]
    NotAbsolute(PathBuf),
    #[error(
        "deny path {deny} lies inside the write path {write}: the skill could rename it \
         between runs and the carve-out would no longer hold; grant narrower write paths instead"
    )]
    DenyInsideWrite { deny: PathBuf, write: PathBuf },
}

/// `skillsandbox oci`: the new root is an image's own filesystem (an OCI bundle's
/// `rootfs`) instead of one assembled from the host's system directories. The rest of
/// the view is ours as always: fresh `/proc` with masks, minimal `/dev`, private
/// `/tmp`, declared paths, the root read-only once entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRoot {
    /// Host path of the root filesystem (no symlink anywhere in it).
    pub rootfs: PathBuf,
    /// Host files bound read-only over the image's (`/etc/resolv.conf`,
    /// `/etc/hosts`, `/etc/hostname`): (host path, path inside).
    pub files: Vec<(PathBuf, PathBuf)>,
    /// The process environment, exactly: the image's, never the host's.
    pub env: Vec<(String, String)>,
    pub hostname: String,
    /// The engine's volumes and tmpfs mounts, in this order (parents first).
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

/// A mount the container engine asks for in an image root, beyond the ones ours
/// replace: a volume (`docker run -v HOST:INSIDE[:ro]`, the operator's grant, as under
/// runc) or a tmpfs (`--tmpfs`). No component of `target` in the image is a symlink
/// (checked before the run; nothing runs in the image until it starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Volume {
    Bind {
        /// Host path, symlinks resolved.
        source: PathBuf,
        /// Absolute path inside the image.
        target: PathBuf,
        writable: bool,
    },
    Tmpfs {
        target: PathBuf,
        size_mb: u64,
        mode: u32,
        readonly: bool,
        noexec: bool,
    },
}

impl Volume {
    /// Its path inside the image.
    pub fn target(&self) -> &Path {
        match self {
            Volume::Bind { target, .. } | Volume::Tmpfs { target, .. } => target,
        }
    }
}

/// Inputs of [`lower`] besides the policy.
#[derive(Debug, Clone)]
pub struct LowerInput<'a> {
    pub host: &'a HostLayout,
    pub identity: Identity,
    /// Host environment (name, value) pairs; only allowed names are taken.
    pub host_env: &'a [(String, String)],
    /// Arguments appended to the entrypoint's own.
    pub extra_args: &'a [String],
    pub seccomp_notify: bool,
    /// Host files or directories bound read-only at a fixed absolute path inside (and
    /// granted read/execute by Landlock). Only `check` uses this, for its probe
    /// binary; normal runs pass nothing.
    pub extra_ro_binds: &'a [(PathBuf, PathBuf)],
    /// Test-only: a layer to skip (see [`crate::disable`]).
    pub dangerously_disabled_layer: Option<LayerDisabledForTests>,
    /// `skillsandbox oci`: root the sandbox in this image; `None`: the host-built root.
    pub image_root: Option<&'a ImageRoot>,
}

fn under_root(p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(NEWROOT).join(rel)
}

/// Lower a policy into a launch plan. Pure: same inputs, same plan.
pub fn lower(policy: &Policy, input: &LowerInput<'_>) -> Result<LaunchPlan, PlanError> {
    if policy.entrypoint.command.is_empty() {
        return Err(PlanError::EmptyCommand);
    }
    let mut mounts = Vec::new();
    let tmp_mb = policy.limits.tmp_size_mb;

    match input.image_root {
        None => host_root_mounts(&mut mounts, input),
        Some(image) => image_root_mounts(&mut mounts, image, input.identity.drop_host_root),
    }

    // /dev: a tmpfs with the harmless nodes bound from the host, devpts, shm.
    mounts.push(MountOp::Tmpfs {
        target: under_root(Path::new("/dev")),
        size_mb: 1,
        mode: 0o755,
        readonly: false,
        noexec: false,
    });
    for node in DEV_NODES {
        mounts.push(MountOp::Bind {
            source: Path::new("/dev").join(node),
            target: under_root(&Path::new("/dev").join(node)),
            writable: true,
            device: true,
            idmap: false,
        });
    }
    mounts.push(MountOp::Devpts {
        target: under_root(Path::new("/dev/pts")),
    });
    mounts.push(MountOp::Tmpfs {
        target: under_root(Path::new("/dev/shm")),
        size_mb: tmp_mb,
        mode: 0o1777,
        readonly: false,
        noexec: false,
    });
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        mounts.push(MountOp::Symlink {
            target: under_root(&Path::new("/dev").join(name)),
            link_to: PathBuf::from(to),
        });
    }

    // Nothing may be created in /dev itself (pts and shm are separate mounts).
    mounts.push(MountOp::Seal {
        target: under_root(Path::new("/dev")),
    });

    // /proc: fresh, /proc/sys read-only, kernel internals masked.
    mounts.push(MountOp::Proc {
        target: under_root(Path::new("/proc")),
    });
    mounts.push(MountOp::ReadonlyBindSelf {
        target: under_root(Path::new("/proc/sys")),
    });
    for f in PROC_MASKED_FILES {
        mounts.push(MountOp::MaskFile {
            target: under_root(Path::new(f)),
        });
    }
    for d in PROC_MASKED_DIRS {
        mounts.push(MountOp::MaskDir {
            target: under_root(Path::new(d)),
        });
    }

    // Private scratch space.
    mounts.push(MountOp::Tmpfs {
        target: under_root(Path::new("/tmp")),
        size_mb: tmp_mb,
        mode: 0o1777,
        readonly: false,
        noexec: false,
    });
    if input.image_root.is_none() {
        host_scratch_dirs(&mut mounts, tmp_mb);
    }

    // The skill directory, read-only.
    if let Some(dir) = &policy.skill_dir {
        mounts.push(MountOp::Bind {
            source: dir.clone(),
            target: under_root(Path::new("/skill")),
            writable: false,
            device: false,
            idmap: input.identity.drop_host_root,
        });
    }

    // Extra read-only binds the caller asked for (never from a manifest).
    for (source, inside) in input.extra_ro_binds {
        for p in [source, inside] {
            if !p.is_absolute() {
                return Err(PlanError::NotAbsolute(p.clone()));
            }
        }
        mounts.push(MountOp::Bind {
            source: source.clone(),
            target: under_root(inside),
            writable: false,
            device: false,
            idmap: false,
        });
    }

    // Declared paths, shallowest first so nested grants land on top of their parents.
    let fs = &policy.filesystem;
    for d in &fs.deny {
        if let Some(w) = fs.write.iter().find(|w| d.starts_with(w)) {
            return Err(PlanError::DenyInsideWrite {
                deny: d.clone(),
                write: w.clone(),
            });
        }
    }
    let mut declared: Vec<(PathBuf, bool)> = fs
        .write
        .iter()
        .map(|p| (p.clone(), true))
        .chain(
            fs.read
                .iter()
                .filter(|p| !fs.write.contains(p))
                .map(|p| (p.clone(), false)),
        )
        .filter(|(p, _)| !input.host.missing.contains(p))
        .collect();
    for (p, _) in &declared {
        if !p.is_absolute() {
            return Err(PlanError::NotAbsolute(p.clone()));
        }
    }
    declared.sort_by_key(|(p, w)| (p.components().count(), p.clone(), *w));
    declared.dedup_by(|a, b| a.0 == b.0);
    for (p, writable) in &declared {
        mounts.push(MountOp::Bind {
            source: p.clone(),
            target: under_root(p),
            writable: *writable,
            device: false,
            idmap: input.identity.drop_host_root,
        });
    }
    for d in &fs.deny {
        if declared.iter().any(|(p, _)| d.starts_with(p)) && !input.host.missing.contains(d) {
            mounts.push(MountOp::MaskDir {
                target: under_root(d),
            });
        }
    }

    let env = match input.image_root {
        Some(image) => image.env.clone(),
        None => lower_env(policy, input.host_env),
    };
    let mut argv = vec![policy.entrypoint.command.clone()];
    argv.extend(policy.entrypoint.args.iter().cloned());
    argv.extend(input.extra_args.iter().cloned());

    // Device nodes are bound writable too, but a node of the host is not the skill's
    // to chmod, and it creates none.
    let files_outlive_run = mounts.iter().any(|m| {
        matches!(
            m,
            MountOp::Bind {
                writable: true,
                device: false,
                ..
            }
        )
    });
    let limits = &policy.limits;
    Ok(LaunchPlan {
        identity: input.identity.clone(),
        hostname: input
            .image_root
            .map_or_else(|| SANDBOX_HOSTNAME.to_string(), |i| i.hostname.clone()),
        mounts,
        egress_ports: egress_ports(policy),
        egress: policy.network.active(),
        network: NetworkPlan::Sandbox,
        env,
        argv,
        workdir: policy.entrypoint.workdir.clone(),
        rlimits: Rlimits {
            nofile: limits.max_open_files,
            fsize_bytes: limits.max_file_size_mb.saturating_mul(1024 * 1024),
            core: 0,
        },
        // The mount view is the filesystem boundary here: no Landlock path rules.
        landlock: LandlockPlan::default(),
        seccomp: policy.syscalls,
        files_outlive_run,
        seccomp_notify: input.seccomp_notify,
        seccomp_filter: None,
        seccomp_observe: false,
        stacked_seccomp: None,
        dangerously_disabled_layer: input.dangerously_disabled_layer,
        process: None,
        terminal: false,
        seccomp_watch_egress: false,
    })
}

/// The new root built from the host: a small tmpfs (made read-only at the end), the
/// system directories read-only, a synthetic `/etc`.
fn host_root_mounts(mounts: &mut Vec<MountOp>, input: &LowerInput<'_>) {
    // The new root itself: a small tmpfs, made read-only at the end.
    mounts.push(MountOp::Tmpfs {
        target: PathBuf::from(NEWROOT),
        size_mb: 16,
        mode: 0o755,
        readonly: false,
        noexec: false,
    });

    // System directories, read-only; merged-/usr symlinks are recreated as links.
    for dir in SYSTEM_DIRS {
        match input.host.entries.get(Path::new(dir)) {
            Some(HostEntry::Dir) => mounts.push(MountOp::Bind {
                source: PathBuf::from(dir),
                target: under_root(Path::new(dir)),
                writable: false,
                device: false,
                idmap: false,
            }),
            Some(HostEntry::Symlink(to)) => mounts.push(MountOp::Symlink {
                target: under_root(Path::new(dir)),
                link_to: to.clone(),
            }),
            Some(HostEntry::File) | None => {}
        }
    }

    // Synthetic /etc: only what programs need, no host secrets.
    mounts.push(MountOp::Dir {
        target: under_root(Path::new("/etc")),
        mode: 0o755,
    });
    for (name, contents) in synthetic_etc() {
        mounts.push(MountOp::File {
            target: under_root(&Path::new("/etc").join(name)),
            contents,
            mode: 0o644,
        });
    }
    for entry in ETC_PASSTHROUGH {
        let p = Path::new(entry);
        match input.host.entries.get(p) {
            Some(HostEntry::Dir) | Some(HostEntry::File) => mounts.push(MountOp::Bind {
                source: p.to_path_buf(),
                target: under_root(p),
                writable: false,
                device: false,
                idmap: false,
            }),
            Some(HostEntry::Symlink(to)) => mounts.push(MountOp::Symlink {
                target: under_root(p),
                link_to: to.clone(),
            }),
            None => {}
        }
    }
}

/// The new root is the image's own filesystem ([`MountOp::ImageRoot`]), read-only once
/// entered; the runtime's generated files go over the image's. Nothing of the host's
/// system directories or `/etc` is visible.
fn image_root_mounts(mounts: &mut Vec<MountOp>, image: &ImageRoot, idmap: bool) {
    mounts.push(MountOp::ImageRoot {
        source: image.rootfs.clone(),
    });
    // Before the generated files, which go over a volume at `/etc`.
    for v in &image.volumes {
        mounts.push(match v {
            Volume::Bind {
                source,
                target,
                writable,
            } => MountOp::Bind {
                source: source.clone(),
                target: under_root(target),
                writable: *writable,
                device: false,
                idmap,
            },
            Volume::Tmpfs {
                target,
                size_mb,
                mode,
                readonly,
                noexec,
            } => MountOp::Tmpfs {
                target: under_root(target),
                size_mb: *size_mb,
                mode: *mode,
                readonly: *readonly,
                noexec: *noexec,
            },
        });
    }
    for (host, inside) in &image.files {
        // Opened by a root supervisor (they live in the runtime's state directory,
        // which the sandbox user cannot reach).
        mounts.push(MountOp::Bind {
            source: host.clone(),
            target: under_root(inside),
            writable: false,
            device: false,
            idmap,
        });
    }
}

/// The host-built root's private `$HOME`, `/var/tmp` and `/run` (an image has its own).
fn host_scratch_dirs(mounts: &mut Vec<MountOp>, tmp_mb: u64) {
    mounts.push(MountOp::Tmpfs {
        target: under_root(Path::new(SANDBOX_HOME)),
        size_mb: tmp_mb,
        mode: 0o700,
        readonly: false,
        noexec: false,
    });
    mounts.push(MountOp::Dir {
        target: under_root(Path::new("/var")),
        mode: 0o755,
    });
    mounts.push(MountOp::Symlink {
        target: under_root(Path::new("/var/tmp")),
        link_to: PathBuf::from("/tmp"),
    });
    mounts.push(MountOp::Dir {
        target: under_root(Path::new("/run")),
        mode: 0o755,
    });
}

/// Record mode (`learn`) also listens on the other ports web clients, package
/// managers and databases commonly use, to read the name a connection carries.
/// Connections elsewhere are still seen by the seccomp observer (address and port).
const RECORD_PORTS: [u16; 12] = [
    21, 22, 25, 465, 587, 993, 3000, 5000, 8000, 8080, 8443, 9418,
];

/// Ports the sandbox listens on when egress is declared: the declared ones, plus 80
/// and 443 so that attempts on the common web ports are seen and reported even when
/// no rule allows them (elsewhere the kernel refuses silently).
fn egress_ports(policy: &Policy) -> Vec<u16> {
    if !policy.network.active() {
        return Vec::new();
    }
    let mut ports = policy.network.ports();
    ports.extend([80, 443]);
    if policy.network.record {
        ports.extend(RECORD_PORTS);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The environment inside: fixed PATH/HOME/TMPDIR, LANG defaulting to C.UTF-8, plus
/// the allowed host variables that are set. Sorted, so the plan is deterministic.
pub fn lower_env(policy: &Policy, host_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), SANDBOX_PATH.into());
    env.insert("HOME".into(), SANDBOX_HOME.into());
    env.insert("TMPDIR".into(), "/tmp".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    for (k, v) in host_env {
        if policy.env.allows(k) {
            env.insert(k.clone(), v.clone());
        }
    }
    env.into_iter().collect()
}

fn synthetic_etc() -> Vec<(&'static str, String)> {
    vec![
        (
            "passwd",
            format!("sandbox:x:0:0:skillsandbox:{SANDBOX_HOME}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        ("group", "sandbox:x:0:\nnogroup:x:65534:\n".to_string()),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{SANDBOX_HOSTNAME}\n"),
        ),
        ("hostname", format!("{SANDBOX_HOSTNAME}\n")),
        (
            "resolv.conf",
            format!("nameserver {SANDBOX_RESOLVER}\noptions timeout:2 attempts:1\n"),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_string(),
        ),
    ]
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
            filesystem: FilesystemPolicy {
                read: vec!["/data/in".into(), "/data".into()],
                write: vec!["/data/out".into()],
                deny: vec!["/data/secret".into()],
            },
            env: EnvPolicy {
                allow: vec![
                    EnvPattern::Exact("API_KEY".into()),
                    EnvPattern::Prefix("LC_".into()),
                ],
            },
            syscalls: SyscallProfile::Default,
            limits: Limits::default(),
            tier: Tier::Container,
            record_denials: None,
            entrypoint: Entrypoint {
                command: "python3".into(),
                args: vec!["main.py".into()],
                workdir: "/skill".into(),
            },
        }
    }

    fn input<'a>(host: &'a HostLayout, env: &'a [(String, String)]) -> LowerInput<'a> {
        LowerInput {
            host,
            identity: Identity {
                host_uid: 1000,
                host_gid: 1000,
                drop_host_root: false,
                inside_uid: 0,
                inside_gid: 0,
            },
            host_env: env,
            extra_args: &[],
            seccomp_notify: false,
            extra_ro_binds: &[],
            dangerously_disabled_layer: None,
            image_root: None,
        }
    }

    #[test]
    fn an_image_root_replaces_the_host_built_root_and_keeps_our_proc_dev_and_tmp() {
        let mut host = HostLayout::default();
        host.entries.insert("/usr".into(), HostEntry::Dir);
        let image = ImageRoot {
            rootfs: "/var/lib/engine/merged".into(),
            files: vec![(
                "/run/ss/c1/etc/resolv.conf".into(),
                "/etc/resolv.conf".into(),
            )],
            env: vec![("PATH".into(), "/bin".into())],
            hostname: "c1".into(),
            volumes: vec![Volume::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                writable: true,
            }],
        };
        let host_env = vec![("API_KEY".to_string(), "k".to_string())];
        let mut i = input(&host, &host_env);
        i.image_root = Some(&image);
        let plan = lower(&policy(), &i).unwrap();
        assert_eq!(
            plan.mounts[0],
            MountOp::ImageRoot {
                source: "/var/lib/engine/merged".into()
            }
        );
        // The volume right after the root, before the generated files.
        assert_eq!(
            plan.mounts[1],
            MountOp::Bind {
                source: "/srv/data".into(),
                target: "/newroot/data".into(),
                writable: true,
                device: false,
                idmap: false,
            }
        );
        assert!(plan.mounts.contains(&MountOp::Bind {
            source: "/run/ss/c1/etc/resolv.conf".into(),
            target: "/newroot/etc/resolv.conf".into(),
            writable: false,
            device: false,
            idmap: false,
        }));
        // Nothing of the host's system directories or /etc, no synthetic files in the image.
        assert!(!plan.mounts.iter().any(|m| matches!(m,
            MountOp::Bind { source, .. } if source == Path::new("/usr"))));
        assert!(!plan
            .mounts
            .iter()
            .any(|m| matches!(m, MountOp::File { .. })));
        assert!(!plan.mounts.iter().any(|m| matches!(m,
            MountOp::Tmpfs { target, .. } if target == Path::new("/newroot/home/sandbox"))));
        // Ours as always.
        for t in ["/newroot/proc", "/newroot/tmp", "/newroot/dev"] {
            assert!(
                plan.mounts.iter().any(|m| matches!(m,
                    MountOp::Proc { target } | MountOp::Tmpfs { target, .. } if target == Path::new(t))),
                "{t}"
            );
        }
        // The image's environment and hostname, never the host's.
        assert_eq!(plan.env, vec![("PATH".to_string(), "/bin".to_string())]);
        assert_eq!(plan.hostname, "c1");
    }

    #[test]
    fn env_is_scrubbed_and_defaults_set() {
        let host_env = vec![
            ("API_KEY".to_string(), "k".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
            ("PATH".to_string(), "/evil".to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
        ];
        let env = lower_env(&policy(), &host_env);
        assert_eq!(
            env,
            vec![
                ("API_KEY".into(), "k".into()),
                ("HOME".into(), SANDBOX_HOME.into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("LC_ALL".into(), "C".into()),
                ("PATH".into(), SANDBOX_PATH.into()),
                ("TMPDIR".into(), "/tmp".into()),
            ]
        );
    }

    #[test]
    fn declared_paths_are_bound_shallowest_first_with_deny_masks() {
        let host = HostLayout::default();
        let plan = lower(&policy(), &input(&host, &[])).unwrap();
        let binds: Vec<(String, bool)> = plan
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountOp::Bind {
                    source, writable, ..
                } if source.starts_with("/data") => Some((source.display().to_string(), *writable)),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            vec![
                ("/data".to_string(), false),
                ("/data/in".to_string(), false),
                ("/data/out".to_string(), true),
            ]
        );
        assert!(plan.mounts.contains(&MountOp::MaskDir {
            target: "/newroot/data/secret".into()
        }));
        assert_eq!(plan.argv, vec!["python3", "main.py"]);
        assert!(!plan.egress);
    }

    #[test]
    fn setid_refusals_stay_exactly_when_a_declared_path_is_writable() {
        let host = HostLayout::default();
        let creat_suid = [libc::AT_FDCWD as u64, 0, 0o100, 0o4755, 0, 0];
        let plan = lower(&policy(), &input(&host, &[])).unwrap();
        assert!(plan.files_outlive_run);
        assert!(plan
            .seccomp_plan()
            .refusal_for("openat", &creat_suid)
            .is_some());
        let mut p = policy();
        p.filesystem.write.clear();
        let plan = lower(&p, &input(&host, &[])).unwrap();
        assert!(!plan.files_outlive_run);
        let sc = plan.seccomp_plan();
        assert!(sc.refusal_for("openat", &creat_suid).is_none());
        assert!(sc.refusal_for("ioctl", &[0, 0x5412, 0, 0, 0, 0]).is_some());
    }

    #[test]
    fn deny_inside_a_write_tree_is_refused() {
        let mut p = policy();
        p.filesystem.deny.push("/data/out/key".into());
        let host = HostLayout::default();
        assert!(matches!(
            lower(&p, &input(&host, &[])),
            Err(PlanError::DenyInsideWrite { .. })
        ));
    }

    #[test]
    fn merged_usr_symlinks_are_recreated_and_missing_paths_skipped() {
        let mut host = HostLayout::default();
        host.entries.insert("/usr".into(), HostEntry::Dir);
        host.entries
            .insert("/bin".into(), HostEntry::Symlink("usr/bin".into()));
        host.missing.push("/data/in".into());
        let plan = lower(&policy(), &input(&host, &[])).unwrap();
        assert!(plan.mounts.contains(&MountOp::Bind {
            source: "/usr".into(),
            target: "/newroot/usr".into(),
            writable: false,
            device: false,
            idmap: false
        }));
        assert!(plan.mounts.contains(&MountOp::Symlink {
            target: "/newroot/bin".into(),
            link_to: "usr/bin".into()
        }));
        assert!(!plan.mounts.iter().any(|m| matches!(m,
            MountOp::Bind { source, .. } if source == Path::new("/data/in"))));
        assert!(!plan.mounts.iter().any(|m| matches!(m,
            MountOp::Bind { source, .. } if source == Path::new("/lib64"))));
    }

    #[test]
    fn no_host_etc_secrets_are_bound() {
        let mut host = HostLayout::default();
        for e in ETC_PASSTHROUGH {
            host.entries.insert(e.into(), HostEntry::File);
        }
        let plan = lower(&policy(), &input(&host, &[])).unwrap();
        for m in &plan.mounts {
            if let MountOp::Bind { source, .. } = m {
                let s = source.display().to_string();
                assert!(
                    !s.contains("shadow") && !s.starts_with("/etc/passwd") && !s.contains("/root"),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn extra_ro_binds_are_bound_read_only_and_only_when_asked() {
        let host = HostLayout::default();
        let plain = lower(&policy(), &input(&host, &[])).unwrap();
        assert!(!plain
            .mounts
            .iter()
            .any(|m| matches!(m, MountOp::Bind { target, .. } if target.ends_with("run/probe"))));
        let binds = [(PathBuf::from("/opt/bin/tool"), PathBuf::from("/run/probe"))];
        let mut inp = input(&host, &[]);
        inp.extra_ro_binds = &binds;
        let plan = lower(&policy(), &inp).unwrap();
        assert!(plan.mounts.contains(&MountOp::Bind {
            source: "/opt/bin/tool".into(),
            target: "/newroot/run/probe".into(),
            writable: false,
            device: false,
            idmap: false
        }));
        assert_eq!(plan.landlock, LandlockPlan::default());
        let bad = [(PathBuf::from("tool"), PathBuf::from("/run/probe"))];
        inp.extra_ro_binds = &bad;
        assert!(matches!(
            lower(&policy(), &inp),
            Err(PlanError::NotAbsolute(_))
        ));
    }
}
