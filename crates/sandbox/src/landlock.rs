//! Landlock: the unprivileged filesystem / TCP / IPC-scope ruleset the skill process
//! puts on itself right before the seccomp filter (DESIGN.md §3 step 6).
//!
//! Owns [`LandlockRules`] (pure data) and [`apply_landlock_on_current_thread`], which
//! handles every filesystem right of the running kernel's ABI, so that anything not
//! granted beneath a listed path is refused. Best effort by default, with the result
//! saying exactly what is in force; a hard requirement on request.
//!
//! Irreversible: never call the applier in a process that must stay unconfined.

use std::io;
use std::path::{Path, PathBuf};

use ::landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, RestrictSelf, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
    ABI,
};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// What the process may still reach once the ruleset is in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockRules {
    /// Trees that stay readable and executable (read file, read dir, execute).
    pub read_exec: Vec<PathBuf>,
    /// Trees that stay fully usable: every filesystem right of the running ABI.
    pub read_write: Vec<PathBuf>,
    /// Paths of the two lists above whose rule is opened with `RESOLVE_NO_SYMLINKS`:
    /// the declared paths, which the supervisor checked for symlinks before the launch.
    /// Whoever controls such a path could swap it (or a parent) for a symlink since
    /// then; following it would put the rule on the link's target (a TOCTOU). A
    /// symlink met here fails the run. System paths may be symlinks (`/bin` on a
    /// merged-usr host) and are followed.
    #[serde(default)]
    pub no_symlinks: Vec<PathBuf>,
    /// TCP ports `connect` may reach (ABI >= 4); `None` leaves TCP alone, `Some([])`
    /// refuses every TCP connect.
    pub tcp_connect_ports: Option<Vec<u16>>,
    /// Refuse signals to, and abstract unix sockets of, processes outside the
    /// sandbox (ABI >= 6).
    pub scope_signals_and_abstract_unix: bool,
    /// Leave the filesystem to another layer: the ruleset handles no filesystem
    /// right at all (the path lists are ignored) and only scopes signals and
    /// abstract unix sockets (and TCP, if asked). A domain that handles any
    /// filesystem right costs a path check on every `open` (measured: +8% on an
    /// open loop even with a single handled right, +40% with all). Only where the
    /// mount view is the boundary: the container tier, whose mounts hold only
    /// granted trees, read-only unless declared writable, a sealed `/dev` and a
    /// `/proc` with `/proc/sys` read-only (docs/tiers.md).
    pub filesystem_bounded_by_mounts: bool,
}

/// How much of the requested ruleset is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockEnforcement {
    /// Everything requested.
    Fully,
    /// A ruleset is in force but the kernel lacks some requested feature (listed in
    /// the detail).
    Partially,
    /// No ruleset: the kernel has no (enabled) Landlock.
    NotEnforced,
}

/// What [`apply_landlock_on_current_thread`] put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The Landlock ABI in force (0: none).
    pub abi: i32,
    pub status: LandlockEnforcement,
    /// Listed paths that do not exist and so got no rule (nothing beneath them is
    /// reachable).
    pub skipped_paths: Vec<PathBuf>,
    /// One line for the enforcement report.
    pub detail: String,
}

/// Errors of building or enforcing the ruleset.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error(
        "Landlock cannot enforce {missing} (kernel Landlock ABI {abi}); use a newer kernel \
         (6.12+ has every feature used here), or do not require Landlock"
    )]
    Unsupported { missing: String, abi: i32 },
    #[error("landlock ruleset setup (handled access rights) => {source}")]
    HandleAccess {
        #[source]
        source: RulesetError,
    },
    #[error("landlock_create_ruleset => {source}")]
    CreateRuleset {
        #[source]
        source: RulesetError,
    },
    #[error(
        "{source} (for a Landlock rule on {path}); check the path is accessible and not a symlink"
    )]
    OpenPath {
        path: PathBuf,
        #[source]
        source: crate::sys::SysError,
    },
    #[error("stat({path}) for a Landlock rule => {source}")]
    StatPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("landlock_add_rule({path}) => {source}")]
    AddPathRule {
        path: PathBuf,
        #[source]
        source: RulesetError,
    },
    #[error("landlock_add_rule(tcp port {port}) => {source}")]
    AddPortRule {
        port: u16,
        #[source]
        source: RulesetError,
    },
    #[error("landlock_restrict_self => {source}")]
    RestrictSelf {
        #[source]
        source: RulesetError,
    },
}

/// The Landlock ABI of the running kernel as this crate knows it (0: unavailable),
/// with why it is unavailable. A pure query: restricts nothing.
pub fn landlock_abi() -> (ABI, &'static str) {
    // No flags and no_new_privs off: `apply` only probes the kernel.
    match RestrictSelf::default().no_new_privs(false).apply() {
        Ok(status) => match status.landlock {
            LandlockStatus::Available { effective_abi, .. } => (effective_abi, "available"),
            LandlockStatus::NotEnabled => (ABI::Unsupported, "not enabled at boot (lsm=)"),
            LandlockStatus::NotImplemented => (ABI::Unsupported, "not built into the kernel"),
        },
        Err(_) => (ABI::Unsupported, "probe failed"),
    }
}

/// Filesystem rights every rule set here relies on: truncate (ABI 3) and device
/// ioctl (ABI 5) control; below that, writes the rules forbid can still happen.
const FS_FULL_ABI: ABI = ABI::V5;

/// Features `rules` asks for that `abi` lacks, as text.
fn missing_features(rules: &LandlockRules, abi: ABI) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if abi == ABI::Unsupported {
        missing.push("any rule (Landlock unavailable)");
        return missing;
    }
    if abi < FS_FULL_ABI && !rules.filesystem_bounded_by_mounts {
        missing.push("truncate and device-ioctl control (ABI 5)");
    }
    if rules.tcp_connect_ports.is_some() && abi < ABI::V4 {
        missing.push("TCP connect ports (ABI 4)");
    }
    if rules.scope_signals_and_abstract_unix && abi < ABI::V6 {
        missing.push("signal and abstract unix socket scoping (ABI 6)");
    }
    missing
}

/// Opens `path` for a rule (refusing symlinks in any component with `no_symlinks`);
/// `None` when it does not exist. Whether it is a directory comes from the fd, not
/// from a second lookup of the path.
fn open_rule_path(
    path: &Path,
    no_symlinks: bool,
) -> Result<Option<(OwnedFd, bool)>, LandlockError> {
    let fd = match crate::sys::open_path(path, no_symlinks) {
        Ok(fd) => fd,
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LandlockError::OpenPath {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| LandlockError::StatPath {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    })?;
    Ok(Some((fd, st.st_mode & libc::S_IFMT == libc::S_IFDIR)))
}

/// Restricts the calling thread (and what it later forks or executes) to `rules`.
/// Sets `no_new_privs`. With `require`, anything short of full enforcement is an
/// error and nothing is applied; otherwise the report says what is in force.
pub fn apply_landlock_on_current_thread(
    rules: &LandlockRules,
    require: bool,
) -> Result<LandlockReport, LandlockError> {
    let (abi, why) = landlock_abi();
    let abi_num = abi as i32;
    let missing = missing_features(rules, abi);
    if require && !missing.is_empty() {
        return Err(LandlockError::Unsupported {
            missing: missing.join(", "),
            abi: abi_num,
        });
    }
    if abi == ABI::Unsupported {
        return Ok(LandlockReport {
            abi: 0,
            status: LandlockEnforcement::NotEnforced,
            skipped_paths: Vec::new(),
            detail: format!("Landlock {why}: no filesystem rules in force"),
        });
    }

    let level = if require {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let all = if rules.filesystem_bounded_by_mounts {
        BitFlags::empty()
    } else {
        AccessFs::from_all(abi)
    };
    let read = AccessFs::from_read(abi) & all;
    let file_only = AccessFs::from_file(abi) & all;

    let mut ruleset = ::landlock::Ruleset::default().set_compatibility(level);
    if !all.is_empty() {
        ruleset = ruleset
            .handle_access(all)
            .map_err(|source| LandlockError::HandleAccess { source })?;
    }
    let connect_limited = rules.tcp_connect_ports.is_some() && abi >= ABI::V4;
    if connect_limited {
        ruleset = ruleset
            .handle_access(AccessNet::ConnectTcp)
            .map_err(|source| LandlockError::HandleAccess { source })?;
    }
    let scoped = rules.scope_signals_and_abstract_unix && abi >= ABI::V6;
    if scoped {
        ruleset = ruleset
            .scope(Scope::from_all(abi))
            .map_err(|source| LandlockError::HandleAccess { source })?;
    }
    if all.is_empty() && !connect_limited && !scoped {
        return Ok(LandlockReport {
            abi: abi_num,
            status: LandlockEnforcement::NotEnforced,
            skipped_paths: Vec::new(),
            detail: format!(
                "ABI {abi_num}: nothing to enforce (no filesystem rules asked, no scoping \
                 before ABI 6)"
            ),
        });
    }
    let mut created = ruleset
        .create()
        .map_err(|source| LandlockError::CreateRuleset { source })?;

    let mut skipped_paths = Vec::new();
    let lists: [(&[PathBuf], BitFlags<AccessFs>); 2] =
        [(&rules.read_exec, read), (&rules.read_write, all)];
    for (paths, access) in lists.into_iter().filter(|_| !all.is_empty()) {
        for path in paths {
            let Some((fd, is_dir)) = open_rule_path(path, rules.no_symlinks.contains(path))? else {
                skipped_paths.push(path.clone());
                continue;
            };
            let access = if is_dir { access } else { access & file_only };
            if access.is_empty() {
                // Nothing the ruleset handles is granted here (a read-only file when
                // reads are left to the mounts): no rule needed.
                continue;
            }
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|source| LandlockError::AddPathRule {
                    path: path.clone(),
                    source,
                })?;
        }
    }
    if connect_limited {
        for &port in rules.tcp_connect_ports.iter().flatten() {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(|source| LandlockError::AddPortRule { port, source })?;
        }
    }
    let status = created
        .restrict_self()
        .map_err(|source| LandlockError::RestrictSelf { source })?;

    let status = match status.ruleset {
        RulesetStatus::NotEnforced => LandlockEnforcement::NotEnforced,
        RulesetStatus::PartiallyEnforced => LandlockEnforcement::Partially,
        RulesetStatus::FullyEnforced if missing.is_empty() => LandlockEnforcement::Fully,
        RulesetStatus::FullyEnforced => LandlockEnforcement::Partially,
    };
    let detail = describe(
        rules,
        abi_num,
        connect_limited,
        scoped,
        &missing,
        &skipped_paths,
    );
    Ok(LandlockReport {
        abi: abi_num,
        status,
        skipped_paths,
        detail,
    })
}

fn describe(
    rules: &LandlockRules,
    abi: i32,
    connect_limited: bool,
    scoped: bool,
    missing: &[&str],
    skipped: &[PathBuf],
) -> String {
    let mut parts = vec![if rules.filesystem_bounded_by_mounts {
        format!(
            "ABI {abi}: no filesystem rules (the mount view is the filesystem boundary; no \
             path check on every open)"
        )
    } else {
        format!(
            "ABI {abi}: read/exec beneath {} path(s), read/write beneath {}",
            rules.read_exec.len()
                - skipped
                    .iter()
                    .filter(|p| rules.read_exec.contains(p))
                    .count(),
            rules.read_write.len()
                - skipped
                    .iter()
                    .filter(|p| rules.read_write.contains(p))
                    .count(),
        )
    }];
    match (&rules.tcp_connect_ports, connect_limited) {
        (Some(ports), true) if ports.is_empty() => parts.push("no TCP connect".into()),
        (Some(ports), true) => parts.push(format!("TCP connect only to ports {ports:?}")),
        _ => {}
    }

    if scoped {
        parts.push("signals and abstract unix sockets scoped to the sandbox".into());
    }
    if !missing.is_empty() {
        parts.push(format!("not enforced: {}", missing.join(", ")));
    }
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|p| p.display().to_string()).collect();
        parts.push(format!("missing paths skipped: {}", names.join(", ")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_features_follow_the_abi() {
        let mut rules = LandlockRules {
            tcp_connect_ports: Some(vec![]),
            scope_signals_and_abstract_unix: true,
            ..LandlockRules::default()
        };
        assert!(missing_features(&rules, ABI::V6).is_empty());
        assert_eq!(
            missing_features(&rules, ABI::V5),
            vec!["signal and abstract unix socket scoping (ABI 6)"]
        );
        assert_eq!(
            missing_features(&rules, ABI::V4),
            vec![
                "truncate and device-ioctl control (ABI 5)",
                "signal and abstract unix socket scoping (ABI 6)"
            ]
        );
        assert_eq!(missing_features(&rules, ABI::V3).len(), 3);
        assert_eq!(
            missing_features(&rules, ABI::Unsupported),
            vec!["any rule (Landlock unavailable)"]
        );
        rules.tcp_connect_ports = None;
        rules.scope_signals_and_abstract_unix = false;
        assert!(missing_features(&rules, ABI::V5).is_empty());
    }

    #[test]
    fn describe_names_what_is_in_force() {
        let rules = LandlockRules {
            read_exec: vec!["/usr".into(), "/nope".into()],
            read_write: vec!["/tmp/x".into()],
            tcp_connect_ports: Some(vec![443]),
            scope_signals_and_abstract_unix: true,
            filesystem_bounded_by_mounts: false,
            no_symlinks: vec![],
        };
        let d = describe(&rules, 7, true, true, &[], &["/nope".into()]);
        assert_eq!(
            d,
            "ABI 7: read/exec beneath 1 path(s), read/write beneath 1; TCP connect only to \
             ports [443]; signals and abstract unix sockets scoped to the sandbox; missing \
             paths skipped: /nope"
        );
    }
}
