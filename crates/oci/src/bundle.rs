//! A bundle's `config.json` → what the engine runs: the policy (from the
//! `skillsandbox.*` annotations, else deny-all), the image root, the session.
//!
//! Pure apart from reading the bundle and the manifest. What the spec asks for and
//! SkillSandbox always applies anyway (its own user, mount, PID, network, IPC, UTS and
//! cgroup namespaces; all capabilities dropped; `no_new_privs`; its seccomp profile;
//! a read-only root) is not taken from the spec: ours is the stricter. What it asks
//! for that we would have to *add* and cannot (a terminal, hooks, mounts other than
//! recursive binds, a user other than root inside) is refused here, before anything
//! starts. The engine's binds (`-v`) are the operator's grant, bound as under runc.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use skillsandbox_manifest::{Policy, ResolveEnv, Tier};
use skillsandbox_runtime::{adhoc_policy, Grants, Volume};
use skillsandbox_sandbox::plan::NetworkPlan;

use crate::error::OciError;

/// Annotation: path of a manifest file (its permissions and limits apply).
pub const ANN_MANIFEST: &str = "skillsandbox.manifest";
/// Annotation: a manifest's YAML text.
pub const ANN_MANIFEST_INLINE: &str = "skillsandbox.manifest.inline";
/// Annotation: the session the container is charged to (and killed with).
pub const ANN_SESSION: &str = "skillsandbox.session";
/// Annotation: `skillsandbox` (the default) or `engine`.
pub const ANN_NETWORK: &str = "skillsandbox.network";
/// [`ANN_NETWORK`]: SkillSandbox's network (the manifest's egress, or deny-all).
pub const NETWORK_SKILLSANDBOX: &str = "skillsandbox";
/// [`ANN_NETWORK`]: the engine's network namespace; SkillSandbox enforces no egress.
pub const NETWORK_ENGINE: &str = "engine";

/// Mount destinations the engine's spec always has and SkillSandbox replaces with its
/// own (fresh `/proc` with masks, minimal `/dev`, its `/etc/resolv.conf`...), or
/// leaves out (`/sys`, `/dev/mqueue`).
const REPLACED_MOUNTS: &[&str] = &[
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/resolv.conf",
    "/etc/hostname",
    "/etc/hosts",
];

/// A wall clock for containers whose manifest sets none: a container is a service,
/// not a skill call; this is the manifest's upper bound (one day).
pub const CONTAINER_MAX_RUNTIME_SECONDS: u64 = 86_400;

/// Everything `create` and the supervisor need from the bundle.
#[derive(Debug, Clone)]
pub struct Launch {
    pub policy: Policy,
    /// Host path of the root filesystem, symlinks resolved.
    pub rootfs: PathBuf,
    pub env: Vec<(String, String)>,
    pub hostname: String,
    pub session: Option<String>,
    /// Where the policy came from, for `state` and the log.
    pub policy_source: String,
    pub annotations: HashMap<String, String>,
    /// The spec's `linux.seccomp`, lowered ([`crate::seccomp::lower`]); stacked on
    /// ours. `None`: the spec has none (`--security-opt seccomp=unconfined`): ours only.
    pub spec_seccomp: Option<skillsandbox_sandbox::seccomp::StackedProfile>,
    /// [`Launch::spec_seccomp`] compiled (by [`load`]).
    pub stacked_seccomp: Option<skillsandbox_sandbox::seccomp::StackedFilter>,
    /// The network namespace ([`NetworkPlan::Sandbox`] unless opted into the engine's).
    pub network: NetworkPlan,
    /// The engine's bind mounts (`docker run -v`), parents first.
    pub volumes: Vec<Volume>,
    /// `process.terminal` (`docker run -t`): a terminal of the sandbox's own, its
    /// master end sent to `--console-socket`.
    pub terminal: bool,
    /// `process.user` (`docker run --user U:G`): the uid and gid inside. Whatever they
    /// are, the process is the same unprivileged host id, without capabilities.
    pub user: (u32, u32),
}

impl Launch {
    /// The value `state` shows for [`ANN_NETWORK`].
    pub fn network_name(&self) -> &'static str {
        if self.network.is_sandbox() {
            NETWORK_SKILLSANDBOX
        } else {
            NETWORK_ENGINE
        }
    }
}

/// Operator defaults (the runtime's registration flags).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub manifest: Option<PathBuf>,
    pub session: Option<String>,
    /// `--default-network`: [`ANN_NETWORK`]'s value when the annotations set none.
    pub network: Option<String>,
    /// Where traces and the audit log go (the operator's choice; see `args::Global`).
    pub trace_dir: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    /// Let a manifest from the container's annotations grant host paths and secrets
    /// (`--trust-annotations`). Off: whoever writes the pod or container spec is not
    /// trusted with the host — the supervisor runs as host root and would bind the
    /// paths and read the secret files for them.
    pub trust_annotations: bool,
}

fn unsupported(what: impl Into<String>, hint: impl Into<String>) -> OciError {
    OciError::Unsupported {
        what: what.into(),
        hint: hint.into(),
    }
}

/// Read and map `bundle/config.json`.
pub fn load(bundle: &Path, defaults: &Defaults) -> Result<Launch, OciError> {
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| OciError::Config {
        path: config.clone(),
        detail: e.to_string(),
    })?;
    let root = spec.root().as_ref().ok_or_else(|| OciError::Config {
        path: config.clone(),
        detail: "no root".into(),
    })?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    // The sandbox opens binds with RESOLVE_NO_SYMLINKS: resolve them here, once
    // (`/var/run` is a link to `/run` on most hosts).
    let rootfs = std::fs::canonicalize(&rootfs).map_err(crate::error::io("resolve", &rootfs))?;
    let annotations: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
    let manifest = manifest_policy(&annotations, defaults)?;
    if let Some((policy, source)) = &manifest {
        if source.starts_with("annotation") && !defaults.trust_annotations {
            refuse_host_grants(policy, source)?;
        }
    }
    let mut launch = map_spec(&spec, rootfs, annotations, manifest, defaults)?;
    for v in &mut launch.volumes {
        if let Volume::Bind { source, .. } = v {
            // Opened with RESOLVE_NO_SYMLINKS by the sandbox: resolved here, once.
            let resolved =
                std::fs::canonicalize(&*source).map_err(crate::error::io("resolve", &*source))?;
            *source = resolved;
        }
    }
    if let Some(p) = &mut launch.spec_seccomp {
        // What ours refuses whatever the arguments stays ours to refuse (and record).
        p.defer_to(&skillsandbox_sandbox::seccomp::seccomp_plan(
            launch.policy.syscalls,
        ));
        let f =
            skillsandbox_sandbox::seccomp::compile_stacked(p).map_err(|e| OciError::Config {
                path: config.clone(),
                detail: format!("linux.seccomp: {e}"),
            })?;
        launch.stacked_seccomp = Some(f);
    }
    Ok(launch)
}

/// The manifest named by the annotations (or the operator default), resolved.
fn manifest_policy(
    ann: &HashMap<String, String>,
    defaults: &Defaults,
) -> Result<Option<(Policy, String)>, OciError> {
    let env = ResolveEnv::from_process_env();
    if let Some(text) = ann.get(ANN_MANIFEST_INLINE) {
        let label = format!("annotation {ANN_MANIFEST_INLINE}");
        let m = skillsandbox_manifest::parse_str(text, &label).map_err(|e| OciError::Manifest {
            source_name: label.clone(),
            detail: e.to_string(),
        })?;
        let p = skillsandbox_manifest::resolve(&m, Path::new("/"), &env).map_err(|e| {
            OciError::Manifest {
                source_name: label.clone(),
                detail: e.to_string(),
            }
        })?;
        return Ok(Some((p, label)));
    }
    if let Some(p) = ann.get(ANN_MANIFEST) {
        let label = format!("annotation {ANN_MANIFEST} ({p})");
        let loaded = skillsandbox_manifest::load(Path::new(p), &env).map_err(|e| {
            OciError::Manifest {
                source_name: label.clone(),
                // The file is read as host root on behalf of the spec's author: its
                // contents are not theirs to see in an error unless they are trusted.
                detail: if defaults.trust_annotations {
                    e.to_string()
                } else {
                    "not a valid manifest (check it on the host with `skillsandbox validate`)"
                        .into()
                },
            }
        })?;
        return Ok(Some((loaded.policy, label)));
    }
    match &defaults.manifest {
        Some(p) => {
            let loaded = skillsandbox_manifest::load(p, &env).map_err(|e| OciError::Manifest {
                source_name: p.display().to_string(),
                detail: e.to_string(),
            })?;
            Ok(Some((loaded.policy, p.display().to_string())))
        }
        None => Ok(None),
    }
}

/// A manifest from the annotations may shape the network and the limits, not reach
/// into the host: no declared paths, no secrets (read by the root supervisor).
fn refuse_host_grants(policy: &Policy, source: &str) -> Result<(), OciError> {
    let fs = &policy.filesystem;
    let what = if !fs.read.is_empty() || !fs.write.is_empty() {
        Some("host paths (permissions.filesystem)")
    } else if !policy.network.secrets.is_empty() {
        Some("secrets (permissions.secrets)")
    } else {
        None
    };
    match what {
        Some(w) => Err(OciError::Unsupported {
            what: format!("a manifest from {source} granting {w}"),
            hint: "register the manifest with the runtime (--default-manifest), or start the \
                   runtime with --trust-annotations if whoever writes the specs may reach the host"
                .into(),
        }),
        None => Ok(()),
    }
}

/// The spec and the manifest (if any) → the launch. Pure.
pub fn map_spec(
    spec: &Spec,
    rootfs: PathBuf,
    annotations: HashMap<String, String>,
    manifest: Option<(Policy, String)>,
    defaults: &Defaults,
) -> Result<Launch, OciError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| unsupported("a bundle without a process", "set process.args"))?;
    let user = process_user(process)?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(unsupported(
            "empty process.args",
            "give the container a command",
        ));
    }
    if let Some(hooks) = spec.hooks() {
        let mut all = Vec::new();
        for list in [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
            hooks.poststart(),
            hooks.poststop(),
        ]
        .into_iter()
        .flatten()
        {
            all.extend(list.iter());
        }
        // dockerd's own hook hands the container's network namespace to its network
        // controller; SkillSandbox's network replaces that one, so it has nothing to do.
        if let Some(h) = all
            .iter()
            .find(|h| !h.args().iter().flatten().any(|a| a == "libnetwork-setkey"))
        {
            return Err(unsupported(
                format!("the OCI hook {}", h.path().display()),
                "remove the hook (hooks run as host root outside the sandbox)",
            ));
        }
    }
    let network = engine_network(spec, &annotations, defaults, manifest.as_ref())?;

    let spec_seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::lower)
        .transpose()?;

    let (base, policy_source) = match manifest {
        Some((p, src)) => (Some(p), src),
        None => (None, "none (deny-all)".to_string()),
    };
    let had_manifest = base.is_some();
    let cwd = process.cwd().clone();
    let mut policy = adhoc_policy(base, &args, &Grants::default(), &cwd);
    policy.entrypoint.workdir = cwd;
    // The image is the root: no skill directory is mounted, and only the container
    // tier can root a sandbox in it.
    policy.skill_dir = None;
    policy.tier = Tier::Container;
    if !had_manifest {
        policy.skill.name = "oci".into();
        policy.limits.max_runtime_seconds = CONTAINER_MAX_RUNTIME_SECONDS;
    }
    // Resources: the stricter of the spec's and ours.
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        if let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) {
            if limit > 0 {
                let mb = (limit as u64).div_ceil(1024 * 1024).max(1);
                policy.limits.memory_mb = policy.limits.memory_mb.min(mb);
            }
        }
        if let Some(pids) = res.pids().as_ref().map(|p| p.limit()) {
            if pids > 0 {
                policy.limits.max_processes = policy.limits.max_processes.min(pids as u64);
            }
        }
        // `docker run --cpus N`: quota / period cores.
        if let Some(cpu) = res.cpu() {
            if let (Some(quota), Some(period)) = (cpu.quota(), cpu.period()) {
                if quota > 0 && period > 0 {
                    let cores = quota as f64 / period as f64;
                    policy.limits.cpu_cores = policy.limits.cpu_cores.min(cores);
                }
            }
        }
    }
    stricter_rlimits(process, &mut policy.limits);
    let mut volumes = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if REPLACED_MOUNTS
            .iter()
            .any(|r| Path::new(r) == m.destination())
        {
            continue;
        }
        volumes.push(volume(m, policy.limits.memory_mb)?);
    }
    // Parents before what is bound inside them.
    volumes.sort_by_key(|v| v.target().components().count());
    let env = process_env(process);
    let hostname = spec
        .hostname()
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skillsandbox".into());
    let session = annotations
        .get(ANN_SESSION)
        .cloned()
        .or_else(|| defaults.session.clone());
    Ok(Launch {
        policy,
        rootfs,
        env,
        hostname,
        session,
        policy_source,
        annotations,
        spec_seccomp,
        stacked_seccomp: None,
        network,
        volumes,
        terminal: process.terminal().unwrap_or(false),
        user,
    })
}

/// `process.user` → (uid, gid) inside. The user namespace maps exactly one id, so
/// supplementary groups other than the primary one cannot be given (refused); a
/// username (Windows only in the spec) and a umask are refused too.
pub(crate) fn process_user(p: &oci_spec::runtime::Process) -> Result<(u32, u32), OciError> {
    let u = p.user();
    let (uid, gid) = (u.uid(), u.gid());
    if uid == u32::MAX || gid == u32::MAX {
        return Err(unsupported(
            format!("process.user {uid}:{gid}"),
            "give a uid and gid below 4294967295",
        ));
    }
    if let Some(g) = u.additional_gids().iter().flatten().find(|g| **g != gid) {
        return Err(unsupported(
            format!("the supplementary group {g} of process.user {uid}:{gid}"),
            "drop --group-add (one id is mapped inside: the user's own uid and gid)",
        ));
    }
    if u.umask().is_some() || u.username().is_some() {
        return Err(unsupported(
            "process.user.umask or username",
            "leave them unset",
        ));
    }
    Ok((uid, gid))
}

/// Where a volume may not go: SkillSandbox's own `/proc`, `/dev` and `/sys` (a bind
/// there could undo their masks), and the root itself.
const NO_VOLUME_UNDER: &[&str] = &["/proc", "/dev", "/sys"];

/// One of the spec's mounts that is not one SkillSandbox replaces: a recursive bind
/// (`docker run -v`, `--mount type=bind`, a named volume, a Kubernetes volume) or a
/// tmpfs (`--tmpfs`); anything else is refused. `memory_mb` bounds a tmpfs that names
/// no size (its pages count against the container's memory anyway). Pure: [`load`]
/// resolves a bind's source, the supervisor makes the mount point.
fn volume(m: &oci_spec::runtime::Mount, memory_mb: u64) -> Result<Volume, OciError> {
    let dest = m.destination();
    let source = m.source().clone().unwrap_or_default();
    let what = format!("the mount {} at {}", source.display(), dest.display());
    let options = m.options().clone().unwrap_or_default();
    let plain = |p: &Path| {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if !plain(dest) || dest == Path::new("/") {
        return Err(unsupported(
            format!("{what} (paths must be absolute, without . or .., not /)"),
            "give both paths in full",
        ));
    }
    if let Some(r) = NO_VOLUME_UNDER.iter().find(|r| dest.starts_with(r)) {
        return Err(unsupported(
            format!("{what} (SkillSandbox's own {r})"),
            "mount it elsewhere; devices (--device) are not supported",
        ));
    }
    let bad_option = |o: &str| {
        unsupported(
            format!("{what} with the option {o}"),
            "use ro/rw (and for a tmpfs size=, mode=, exec/noexec)",
        )
    };
    // Ours always: private propagation, nosuid, nodev.
    let ours = |o: &str| {
        matches!(
            o,
            "private" | "rprivate" | "slave" | "rslave" | "nosuid" | "nodev"
        )
    };
    if m.typ().as_deref() == Some("tmpfs") {
        let (mut size_mb, mut mode, mut readonly, mut noexec) = (memory_mb, 0o1777, false, false);
        for o in &options {
            match o.as_str() {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "noexec" => noexec = true,
                "exec" => noexec = false,
                o if ours(o) => {}
                o => {
                    if let Some(v) = o.strip_prefix("size=") {
                        size_mb = tmpfs_size_mb(v).ok_or_else(|| bad_option(o))?;
                    } else if let Some(v) = o.strip_prefix("mode=") {
                        mode = u32::from_str_radix(v, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| bad_option(o))?;
                    } else {
                        return Err(bad_option(o));
                    }
                }
            }
        }
        return Ok(Volume::Tmpfs {
            target: dest.clone(),
            size_mb: size_mb.min(memory_mb).max(1),
            mode,
            readonly,
            noexec,
        });
    }
    let rbind = options.iter().any(|o| o == "rbind");
    if m.typ().as_deref().is_some_and(|t| t != "bind")
        || !(rbind || options.iter().any(|o| o == "bind"))
    {
        return Err(unsupported(
            format!("{what} of type {}", m.typ().as_deref().unwrap_or("-")),
            "only bind mounts (-v HOST:INSIDE, named volumes) and tmpfs (--tmpfs) are supported",
        ));
    }
    if !rbind {
        // Ours is recursive (what lies under the source is bound too): the looser.
        return Err(unsupported(
            format!("{what} as a non-recursive bind"),
            "bind it recursively (rbind; docker's -v and --mount do)",
        ));
    }
    if !plain(&source) {
        return Err(unsupported(
            format!("{what} (paths must be absolute, without . or .., not /)"),
            "give both paths in full",
        ));
    }
    let mut writable = true;
    for o in &options {
        match o.as_str() {
            "ro" => writable = false,
            "rw" | "bind" | "rbind" => {}
            o if ours(o) => {}
            other => return Err(bad_option(other)),
        }
    }
    Ok(Volume::Bind {
        source,
        target: dest.clone(),
        writable,
    })
}

/// A tmpfs `size=` (bytes, or with a k/m/g suffix) in MiB, rounded up; `None` if
/// malformed or zero.
fn tmpfs_size_mb(v: &str) -> Option<u64> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let bytes = match unit {
        'b' => n,
        'k' => n.checked_mul(1 << 10)?,
        'm' => n.checked_mul(1 << 20)?,
        'g' => n.checked_mul(1 << 30)?,
        _ => return None,
    };
    (bytes > 0).then(|| bytes.div_ceil(1 << 20))
}

/// Make `target`'s mount point in the image `root`, as host root, before anything runs
/// in it: each component is opened without following symlinks and what is missing is
/// created (directories 0755; the last one an empty file when `dir` is false). The
/// image is untrusted: a symlink anywhere on the way is refused, never followed. Nothing
/// runs in the image before `start`, so what is checked here is what the sandbox binds.
pub fn make_mountpoint(root: &Path, target: &Path, dir: bool) -> Result<(), OciError> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
    let refuse = |why: &str| {
        unsupported(
            format!(
                "a volume at {} (its path in the image {why})",
                target.display()
            ),
            "bind it at a path of the image that is a real directory (or absent)",
        )
    };
    let mut here = std::fs::File::open(root)
        .map(std::os::fd::OwnedFd::from)
        .map_err(crate::error::io("open", root))?;
    let names: Vec<_> = target.components().skip(1).collect();
    for (i, c) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let name = c.as_os_str();
        let kind = match fstatat(&here, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Some(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(crate::error::io("inspect", root.join(target))(e.into())),
        };
        match kind {
            Some(SFlag::S_IFLNK) => return Err(refuse("passes through a symlink")),
            Some(SFlag::S_IFDIR) => {}
            Some(_) if last && !dir => return Ok(()),
            Some(_) => return Err(refuse("is not a directory")),
            None if last && !dir => {
                let flags = OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                openat(&here, name, flags, Mode::from_bits_truncate(0o644))
                    .map_err(|e| crate::error::io("create", root.join(target))(e.into()))?;
                return Ok(());
            }
            None => mkdirat(&here, name, Mode::from_bits_truncate(0o755))
                .map_err(|e| crate::error::io("mkdir", root.join(target))(e.into()))?,
        }
        if last && !dir {
            return Err(refuse("is a directory, the volume a file"));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        here = openat(&here, name, flags, Mode::empty())
            .map_err(|_| refuse("changed while it was made"))?;
    }
    Ok(())
}

/// [`ANN_NETWORK`] (else `--default-network`, else ours) → the network namespace.
/// `engine`: the spec's network namespace — its path, joined, or a new one — and no
/// egress enforcement; refused with a manifest that declares network rules (a
/// contradiction), and without a network namespace in the spec (the host network).
fn engine_network(
    spec: &Spec,
    annotations: &HashMap<String, String>,
    defaults: &Defaults,
    manifest: Option<&(Policy, String)>,
) -> Result<NetworkPlan, OciError> {
    let (value, from) = match annotations.get(ANN_NETWORK) {
        Some(v) => (v.as_str(), format!("the annotation {ANN_NETWORK}")),
        None => match &defaults.network {
            Some(v) => (v.as_str(), "--default-network".to_string()),
            None => (NETWORK_SKILLSANDBOX, String::new()),
        },
    };
    match value {
        NETWORK_SKILLSANDBOX => return Ok(NetworkPlan::Sandbox),
        NETWORK_ENGINE => {}
        other => {
            return Err(unsupported(
                format!("{from}={other}"),
                "use `skillsandbox` (the manifest's egress rules, none: deny-all) or `engine` \
                 (the engine's network, egress not enforced by SkillSandbox)",
            ))
        }
    }
    if let Some((policy, source)) = manifest {
        let n = &policy.network;
        if n.active() || !n.egress.is_empty() || !n.secrets.is_empty() {
            return Err(unsupported(
                format!(
                    "{from}=engine with network rules in the manifest from {source} (a \
                     contradiction: the engine's network would not enforce them)"
                ),
                "drop the manifest's permissions.network, or the engine opt-in",
            ));
        }
    }
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| {
            nss.iter()
                .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        });
    match ns {
        None => Err(unsupported(
            format!("{from}=engine without a network namespace in the spec (the host network, --network host)"),
            "give the container a network namespace (a CNI namespace path, or a new one)",
        )),
        Some(n) => match n.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.is_absolute() {
                    return Err(unsupported(
                        format!("the network namespace path {}", p.display()),
                        "give an absolute path (/var/run/netns/NAME, /proc/PID/ns/net)",
                    ));
                }
                Ok(NetworkPlan::EngineJoin(p.clone()))
            }
            _ => Ok(NetworkPlan::EngineNew),
        },
    }
}

/// A process's `env` (`KEY=VALUE` entries) as pairs; entries without `=` are dropped.
pub(crate) fn process_env(process: &oci_spec::runtime::Process) -> Vec<(String, String)> {
    process
        .env()
        .iter()
        .flatten()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The spec's `process.rlimits` that SkillSandbox also sets, each the lower of the
/// two (the soft value: the one the process meets): `RLIMIT_NOFILE` → open files,
/// `RLIMIT_FSIZE` → largest file (whole MiB, at least 1), `RLIMIT_NPROC` → processes
/// (our cgroup's pids limit counts the sandbox's, a stricter scope). Core dumps are
/// always off. The others (`docker run --ulimit stack=…`) are not applied: docs/oci.md.
fn stricter_rlimits(
    process: &oci_spec::runtime::Process,
    limits: &mut skillsandbox_manifest::Limits,
) {
    use oci_spec::runtime::PosixRlimitType as R;
    for r in process.rlimits().iter().flatten() {
        let soft = r.soft();
        match r.typ() {
            R::RlimitNofile => limits.max_open_files = limits.max_open_files.min(soft.max(1)),
            R::RlimitFsize => {
                limits.max_file_size_mb = limits.max_file_size_mb.min((soft >> 20).max(1))
            }
            R::RlimitNproc => limits.max_processes = limits.max_processes.min(soft.max(1)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo hi"],
                        "env": ["PATH=/bin", "HOSTNAME=abc"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "hostname": "abc",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/etc/hosts", "type": "bind", "source": "/x/hosts"}],
            "linux": {"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 32}}}
        })
    }

    fn map(v: serde_json::Value, manifest: Option<(Policy, String)>) -> Result<Launch, OciError> {
        map_spec(
            &spec(v),
            "/r".into(),
            HashMap::new(),
            manifest,
            &Defaults::default(),
        )
    }

    #[test]
    fn the_spec_rlimits_and_cpu_quota_lower_ours_never_raise_them() {
        let mut v = base();
        v["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 100},
            {"type": "RLIMIT_FSIZE", "hard": 1_u64 << 40, "soft": 8_u64 << 20},
            {"type": "RLIMIT_NPROC", "hard": 1_000_000, "soft": 1_000_000},
            {"type": "RLIMIT_STACK", "hard": 1, "soft": 1}
        ]);
        v["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 50000, "period": 100000});
        let l = map(v, None).unwrap().policy.limits;
        let ours = skillsandbox_manifest::Limits::default();
        assert_eq!(l.max_open_files, 100);
        assert_eq!(l.max_file_size_mb, 8.min(ours.max_file_size_mb));
        // A looser spec value never raises ours.
        assert_eq!(l.max_processes, 32.min(ours.max_processes));
        assert_eq!(l.cpu_cores, 0.5_f64.min(ours.cpu_cores));
        let mut loose = base();
        loose["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1_u64 << 20, "soft": 1_u64 << 20}]);
        loose["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 800000, "period": 100000});
        let l = map(loose, None).unwrap().policy.limits;
        assert_eq!(l.max_open_files, ours.max_open_files);
        assert_eq!(l.cpu_cores, ours.cpu_cores);
    }

    #[test]
    fn no_manifest_is_deny_all_with_the_spec_process_and_the_stricter_limits() {
        let l = map(base(), None).unwrap();
        assert!(l.policy.network.egress.is_empty());
        assert!(l.policy.filesystem.read.is_empty() && l.policy.filesystem.write.is_empty());
        assert_eq!(l.policy.entrypoint.command, "sh");
        assert_eq!(l.policy.entrypoint.args, vec!["-c", "echo hi"]);
        assert_eq!(l.policy.limits.memory_mb, 64);
        assert_eq!(l.policy.limits.max_processes, 32);
        assert_eq!(l.policy.tier, Tier::Container);
        assert!(l.policy.skill_dir.is_none());
        assert_eq!(
            l.env,
            vec![
                ("PATH".into(), "/bin".into()),
                ("HOSTNAME".into(), "abc".into())
            ]
        );
        assert_eq!(l.hostname, "abc");
        assert_eq!(l.policy_source, "none (deny-all)");
    }

    #[test]
    fn a_manifest_limit_below_the_specs_wins() {
        let m = skillsandbox_manifest::parse_str(
            "skill: {name: t, version: 0.1.0}\nresources: {memory_mb: 16}\nentrypoint: {command: x}\n",
            "t",
        )
        .unwrap();
        let p = skillsandbox_manifest::resolve(&m, Path::new("/"), &ResolveEnv::from_process_env())
            .unwrap();
        let l = map(base(), Some((p, "m".into()))).unwrap();
        assert_eq!(l.policy.limits.memory_mb, 16);
        // The container's command runs, not the manifest's entrypoint.
        assert_eq!(l.policy.entrypoint.command, "sh");
    }

    #[test]
    fn a_manifest_from_annotations_may_not_reach_into_the_host() {
        let parse = |text: &str| {
            let m = skillsandbox_manifest::parse_str(text, "t").unwrap();
            skillsandbox_manifest::resolve(&m, Path::new("/"), &ResolveEnv::from_process_env())
                .unwrap()
        };
        let net = parse(
            "skill: {name: t, version: 0.1.0}\npermissions:\n  network:\n    egress:\n      - domain: a.test\nentrypoint: {command: x}\n",
        );
        assert!(refuse_host_grants(&net, "annotation x").is_ok());
        let paths = parse(
            "skill: {name: t, version: 0.1.0}\npermissions:\n  filesystem:\n    read: [/etc]\nentrypoint: {command: x}\n",
        );
        let e = refuse_host_grants(&paths, "annotation x").unwrap_err();
        assert!(e.to_string().contains("host paths"), "{e}");
        let secrets = parse(
            "skill: {name: t, version: 0.1.0}\npermissions:\n  network:\n    egress:\n      - domain: a.test\n  secrets:\n    T:\n      from: file:/root/.ssh/id_rsa\n      hosts: [a.test]\nentrypoint: {command: x}\n",
        );
        let e = refuse_host_grants(&secrets, "annotation x").unwrap_err();
        assert!(e.to_string().contains("secrets"), "{e}");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let mut v = base();
        v["process"]["terminal"] = true.into();
        assert!(map(v, None).unwrap().terminal);
        assert!(!map(base(), None).unwrap().terminal);
        let mut v = base();
        v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 100});
        assert_eq!(map(v, None).unwrap().user, (1000, 100));
        assert_eq!(map(base(), None).unwrap().user, (0, 0));
        let mut v = base();
        v["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 100, "additionalGids": [100, 27]});
        let e = map(v, None).unwrap_err().to_string();
        assert!(e.contains("the supplementary group 27"), "{e}");
        let mut v = base();
        v["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 100, "additionalGids": [100]});
        assert!(map(v, None).is_ok());
        let mut v = base();
        v["hooks"] = serde_json::json!({"prestart": [{"path": "/usr/bin/nvidia-hook"}]});
        assert!(matches!(map(v, None), Err(OciError::Unsupported { .. })));
        let mut v = base();
        v["hooks"] = serde_json::json!({"prestart": [{"path": "/proc/1/exe", "args": ["x", "libnetwork-setkey"]}]});
        assert!(map(v, None).is_ok());
    }

    #[test]
    fn recursive_binds_are_volumes_the_rest_is_refused() {
        let with = |mounts: serde_json::Value| {
            let mut v = base();
            v["mounts"] = mounts;
            map(v, None)
        };
        let l = with(serde_json::json!([
            {"destination": "/data/sub", "type": "bind", "source": "/srv/b", "options": ["rbind", "ro"]},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/srv/a", "options": ["rbind", "rprivate"]},
        ]))
        .unwrap();
        assert_eq!(
            l.volumes,
            vec![
                Volume::Bind {
                    source: "/srv/a".into(),
                    target: "/data".into(),
                    writable: true
                },
                Volume::Bind {
                    source: "/srv/b".into(),
                    target: "/data/sub".into(),
                    writable: false
                },
            ]
        );
        // docker run --tmpfs /scratch:size=64m,mode=700 (docker adds the rest), and one
        // with no size: bounded by the container's memory.
        let l = with(serde_json::json!([
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
             "options": ["noexec", "nosuid", "nodev", "size=65536k", "mode=700"]},
            {"destination": "/big", "type": "tmpfs", "source": "tmpfs", "options": ["exec", "ro"]},
        ]))
        .unwrap();
        let mem = l.policy.limits.memory_mb;
        assert_eq!(
            l.volumes,
            vec![
                Volume::Tmpfs {
                    target: "/scratch".into(),
                    size_mb: 64.min(mem),
                    mode: 0o700,
                    readonly: false,
                    noexec: true
                },
                Volume::Tmpfs {
                    target: "/big".into(),
                    size_mb: mem,
                    mode: 0o1777,
                    readonly: true,
                    noexec: false
                },
            ]
        );
        assert_eq!(tmpfs_size_mb("1"), Some(1));
        assert_eq!(tmpfs_size_mb("2g"), Some(2048));
        for bad in ["", "0", "x", "12q", "99999999999999999g"] {
            assert_eq!(tmpfs_size_mb(bad), None, "{bad}");
        }
        let refused = |m: serde_json::Value, needle: &str| {
            let e = with(serde_json::json!([m])).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        };
        refused(
            serde_json::json!({"destination": "/run", "type": "overlay", "source": "x", "options": ["rbind"]}),
            "of type overlay",
        );
        refused(
            serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["size=lots"]}),
            "the option size=lots",
        );
        refused(
            serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=99"]}),
            "the option mode=99",
        );
        refused(
            serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nr_inodes=5"]}),
            "the option nr_inodes=5",
        );
        refused(
            serde_json::json!({"destination": "/d", "type": "bind", "source": "/srv"}),
            "of type bind",
        );
        refused(
            serde_json::json!({"destination": "/d", "type": "bind", "source": "/srv", "options": ["bind"]}),
            "non-recursive",
        );
        refused(
            serde_json::json!({"destination": "/d", "type": "bind", "source": "/srv", "options": ["rbind", "noexec"]}),
            "the option noexec",
        );
        refused(
            serde_json::json!({"destination": "/d", "type": "bind", "source": "/srv", "options": ["rbind", "rshared"]}),
            "the option rshared",
        );
        for dest in ["/proc/sys", "/dev/sda", "/sys/kernel"] {
            refused(
                serde_json::json!({"destination": dest, "type": "bind", "source": "/srv", "options": ["rbind"]}),
                "SkillSandbox's own",
            );
        }
        for (src, dest) in [
            ("/srv", "/"),
            ("/srv/../etc", "/d"),
            ("/srv", "/d/../etc"),
            ("srv", "/d"),
        ] {
            refused(
                serde_json::json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind"]}),
                "paths must be absolute",
            );
        }
    }

    #[test]
    fn a_volume_path_through_a_symlink_in_the_image_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/file"), "").unwrap();
        std::os::unix::fs::symlink("/oldroot/root", r.join("data")).unwrap();
        std::os::unix::fs::symlink("../etc", r.join("etc/up")).unwrap();
        for (t, dir, why) in [
            ("/data", true, "passes through a symlink"),
            ("/data/x", true, "passes through a symlink"),
            ("/etc/up/y", false, "passes through a symlink"),
            ("/etc/file/x", true, "is not a directory"),
            ("/etc", false, "is a directory, the volume a file"),
        ] {
            let e = make_mountpoint(r, Path::new(t), dir).unwrap_err();
            assert!(e.to_string().contains(why), "{t}: {e}");
        }
        // Nothing was made through the links.
        assert!(!r.join("etc/y").exists());
        make_mountpoint(r, Path::new("/etc/new/deeper"), true).unwrap();
        assert!(r.join("etc/new/deeper").is_dir());
        make_mountpoint(r, Path::new("/etc/conf/app.toml"), false).unwrap();
        assert!(r.join("etc/conf/app.toml").is_file());
        // Idempotent.
        make_mountpoint(r, Path::new("/etc/new/deeper"), true).unwrap();
        make_mountpoint(r, Path::new("/etc/file"), false).unwrap();
    }

    fn map_ann(
        v: serde_json::Value,
        ann: &[(&str, &str)],
        manifest: Option<(Policy, String)>,
        defaults: &Defaults,
    ) -> Result<Launch, OciError> {
        let ann = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map_spec(&spec(v), "/r".into(), ann, manifest, defaults)
    }

    #[test]
    fn the_engine_network_is_an_explicit_opt_in() {
        let d = Defaults::default();
        let with_ns = |ns: serde_json::Value| {
            let mut v = base();
            v["linux"]["namespaces"] = ns;
            v
        };
        // Default: ours.
        let l = map_ann(
            with_ns(serde_json::json!([{"type": "network"}])),
            &[],
            None,
            &d,
        )
        .unwrap();
        assert_eq!(l.network, NetworkPlan::Sandbox);
        assert_eq!(l.network_name(), "skillsandbox");
        let engine = [(ANN_NETWORK, "engine")];
        // No path: a new namespace.
        let l = map_ann(
            with_ns(serde_json::json!([{"type": "network"}])),
            &engine,
            None,
            &d,
        )
        .unwrap();
        assert_eq!(l.network, NetworkPlan::EngineNew);
        assert_eq!(l.network_name(), "engine");
        // A path: joined.
        let l = map_ann(
            with_ns(serde_json::json!([{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}])),
            &engine,
            None,
            &d,
        )
        .unwrap();
        assert_eq!(
            l.network,
            NetworkPlan::EngineJoin("/var/run/netns/cni-1".into())
        );
        // The runtime-level flag, for engines that cannot set annotations; the
        // annotation wins over it.
        let flag = Defaults {
            network: Some("engine".into()),
            ..Defaults::default()
        };
        let l = map_ann(
            with_ns(serde_json::json!([{"type": "network"}])),
            &[],
            None,
            &flag,
        )
        .unwrap();
        assert_eq!(l.network, NetworkPlan::EngineNew);
        let l = map_ann(
            with_ns(serde_json::json!([{"type": "network"}])),
            &[(ANN_NETWORK, "skillsandbox")],
            None,
            &flag,
        )
        .unwrap();
        assert_eq!(l.network, NetworkPlan::Sandbox);
    }

    #[test]
    fn the_engine_network_refusals() {
        let d = Defaults::default();
        let engine = [(ANN_NETWORK, "engine")];
        let refused = |r: Result<Launch, OciError>, needle: &str| {
            let e = r.unwrap_err();
            assert!(matches!(e, OciError::Unsupported { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        };
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "network"}]);
        refused(
            map_ann(v.clone(), &[(ANN_NETWORK, "host")], None, &d),
            "skillsandbox.network=host",
        );
        // A manifest with network rules contradicts the opt-in.
        let m = skillsandbox_manifest::parse_str(
            "skill: {name: t, version: 0.1.0}\npermissions:\n  network:\n    egress:\n      - domain: a.test\nentrypoint: {command: x}\n",
            "t",
        )
        .unwrap();
        let p = skillsandbox_manifest::resolve(&m, Path::new("/"), &ResolveEnv::from_process_env())
            .unwrap();
        refused(
            map_ann(v.clone(), &engine, Some((p, "m".into())), &d),
            "contradiction",
        );
        // No network namespace in the spec: the host network.
        let mut host = base();
        host["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        refused(map_ann(host, &engine, None, &d), "host network");
        let mut rel = base();
        rel["linux"]["namespaces"] = serde_json::json!([{"type": "network", "path": "netns/x"}]);
        refused(map_ann(rel, &engine, None, &d), "netns/x");
    }
}
