//! The check's side of the bait: decoy secrets planted on the host where the sandbox
//! is not granted, a declared write directory with an escape symlink in it, a leaky
//! fd, listeners on the host's loopback, and the host's own view for comparison.
//! Everything is removed when the [`Workspace`] drops.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use skillsandbox_manifest::Policy;

use super::params::{HostView, HttpCheck, ProbeLimits, ProbeParams};
use super::upstream::CheckUpstream;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no temporary directory outside the manifest's declared paths (tried {0})")]
    NoPrivateTemp(String),
    #[error("listen on the host loopback: {0}")]
    Listen(#[source] std::io::Error),
    #[error("read /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}

/// Random hex (16 characters) from the kernel.
pub fn random_hex() -> Result<String, WorkspaceError> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(WorkspaceError::Random)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The canary variable the check puts into its own environment.
#[derive(Debug, Clone)]
pub struct EnvCanary {
    pub name: String,
    pub value: String,
}

impl EnvCanary {
    pub fn new() -> Result<EnvCanary, WorkspaceError> {
        let tag = random_hex()?.to_ascii_uppercase();
        Ok(EnvCanary {
            name: format!("SKILLSANDBOX_CHECK_CANARY_{tag}"),
            value: format!("canary{}", random_hex()?),
        })
    }
}

pub struct Workspace {
    pub root: PathBuf,
    pub write_dir: PathBuf,
    pub canary_files: Vec<PathBuf>,
    pub escape_link: PathBuf,
    pub marker: String,
    pub survivor_marker: String,
    /// Kept open without close-on-exec for the whole check.
    pub canary_fd: File,
    pub loopback_v4: TcpListener,
    pub loopback_v6: Option<TcpListener>,
    /// A host service on an abstract unix socket (CVE-2020-15257's shape), and its name.
    pub abstract_unix: (std::os::unix::net::UnixListener, String),
    pub env: EnvCanary,
    /// The `requests` run's upstream, and the secret bound to its checked name.
    pub upstream: CheckUpstream,
    pub secret: CheckSecret,
    /// The `race` run's tree: declared paths a racer swaps with a symlink to a canary.
    pub race: super::race::RaceTree,
    /// [`OWNER_LOCK`] of `root`, locked for the whole check: a workspace whose lock can
    /// be taken belongs to a check that died without cleaning up (SIGKILL).
    _owner: File,
}

/// The secret the `requests` run is given: its value lives in a file of the
/// workspace (outside everything the sandbox is granted).
pub struct CheckSecret {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
}

/// The names only the check declares, for the `requests` run.
pub const CHECKED_NAME: &str = "checked.skillsandbox-check.invalid";
pub const OTHER_NAME: &str = "other.skillsandbox-check.invalid";
/// Every check secret's value starts with this.
pub const SECRET_PREFIX: &str = "skillsandbox-check-secret-";

fn mkdir(p: &Path) -> Result<(), WorkspaceError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(|source| WorkspaceError::Create {
            path: p.to_path_buf(),
            source,
        })?;
    // Explicit: the umask must not make the decoys unreadable for DAC reasons.
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|source| {
        WorkspaceError::Create {
            path: p.to_path_buf(),
            source,
        }
    })
}

/// A new file (never an existing one) with `contents`, mode 0644 whatever the umask.
pub(crate) fn plant(p: &Path, contents: &str) -> Result<(), WorkspaceError> {
    let err = |source| WorkspaceError::Create {
        path: p.to_path_buf(),
        source,
    };
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()))
        .map_err(err)?;
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(err)
}

/// A base directory for the workspace that no declared path covers.
fn private_base(policy: &Policy) -> Result<PathBuf, WorkspaceError> {
    let fs = &policy.filesystem;
    let candidates = [
        std::env::temp_dir(),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev/shm"),
    ];
    for c in &candidates {
        let Ok(real) = fs::canonicalize(c) else {
            continue;
        };
        let covered = fs.read.iter().chain(&fs.write).any(|d| real.starts_with(d));
        if !covered && real.is_dir() {
            return Ok(real);
        }
    }
    Err(WorkspaceError::NoPrivateTemp(
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// Each workspace's lock file, held with `flock(LOCK_EX)` by the check that made it.
pub const OWNER_LOCK: &str = ".owner.lock";
/// A workspace directory's name: this prefix and a random tag.
const WORKSPACE_PREFIX: &str = "skillsandbox-check-";

/// Create `root/OWNER_LOCK` and lock it; the file stays close-on-exec, so no sandboxed
/// child holds it.
fn lock_owner(root: &Path) -> Result<File, WorkspaceError> {
    let path = root.join(OWNER_LOCK);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| WorkspaceError::Create {
            path: path.clone(),
            source,
        })?;
    // Blocking: a reaper that opened the still-empty file holds it for a moment only.
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(WorkspaceError::Create {
            path,
            source: std::io::Error::last_os_error(),
        });
    }
    // Non-empty marks the lock as taken: a reaper skips an empty one (being created).
    (&f).write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(|source| WorkspaceError::Create { path, source })?;
    Ok(f)
}

/// Remove the workspaces under `base` left by checks that died (SIGKILL, a crash):
/// directories of ours, named like a workspace, whose owner lock nobody holds. A
/// directory without a lock file is one being created (or made by someone else) and
/// is left alone, as is anything not owned by this uid or not a real directory.
/// Returns what was removed.
pub fn reap_stale(base: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(base) else {
        return removed;
    };
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(WORKSPACE_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(md) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !md.is_dir() || md.uid() != me {
            continue;
        }
        let lock = dir.join(OWNER_LOCK);
        let Ok(f) = fs::OpenOptions::new().read(true).open(&lock) else {
            continue;
        };
        if !f
            .metadata()
            .is_ok_and(|m| m.is_file() && m.uid() == me && m.len() > 0)
        {
            continue; // not ours, or its check is between creating and locking it
        }
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // its check is alive
        }
        if fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

impl Workspace {
    pub fn create(policy: &Policy, env: EnvCanary) -> Result<Workspace, WorkspaceError> {
        let tag = random_hex()?;
        let base = private_base(policy)?;
        reap_stale(&base);
        let root = base.join(format!("{WORKSPACE_PREFIX}{tag}"));
        mkdir(&root)?;
        let owner = match lock_owner(&root) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        // From here on, Drop cleans up whatever was made.
        let home = root.join("home");
        let write_dir = root.join("write");
        let value = format!("SKILLSANDBOX-CHECK-CANARY-{tag}");
        for d in [&home, &home.join(".ssh"), &home.join(".aws"), &write_dir] {
            if let Err(e) = mkdir(d) {
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        }
        let canary_files = vec![
            home.join(".ssh/id_rsa"),
            home.join(".aws/credentials"),
            home.join(".env"),
        ];
        let escape_link = write_dir.join("escape");
        let made = canary_files
            .iter()
            .try_for_each(|f| plant(f, &value))
            .and_then(|()| {
                std::os::unix::fs::symlink(home.join(".ssh"), &escape_link).map_err(|source| {
                    WorkspaceError::Create {
                        path: escape_link.clone(),
                        source,
                    }
                })
            })
            .and_then(|()| {
                File::open(&canary_files[0]).map_err(|source| WorkspaceError::Create {
                    path: canary_files[0].clone(),
                    source,
                })
            })
            .and_then(|fd| {
                super::leak_fd_into_children(fd.as_raw_fd()).map_err(|source| {
                    WorkspaceError::Create {
                        path: canary_files[0].clone(),
                        source,
                    }
                })?;
                let v4 = TcpListener::bind("127.0.0.1:0").map_err(WorkspaceError::Listen)?;
                v4.set_nonblocking(true).map_err(WorkspaceError::Listen)?;
                // ::1 may not exist on this host; IPv4 is enough then.
                let v6 = TcpListener::bind("[::1]:0")
                    .ok()
                    .filter(|l| l.set_nonblocking(true).is_ok());
                Ok((fd, v4, v6))
            });
        let made = made.and_then(|x| {
            let secret = CheckSecret {
                name: "SKILLSANDBOX_CHECK_TOKEN".to_string(),
                value: format!("{SECRET_PREFIX}{}{}", random_hex()?, random_hex()?),
                file: root.join("secret"),
            };
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&secret.file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, secret.value.as_bytes()))
                .map_err(|source| WorkspaceError::Create {
                    path: secret.file.clone(),
                    source,
                })?;
            let up = CheckUpstream::start().map_err(WorkspaceError::Listen)?;
            Ok((x, up, secret))
        });
        let made = made.and_then(|x| Ok((x, abstract_listener()?)));
        let made =
            made.and_then(|x| Ok((x, super::race::RaceTree::create(root.join("race"), &tag)?)));
        let ((((canary_fd, loopback_v4, loopback_v6), upstream, secret), abstract_unix), race) =
            match made {
                Ok(x) => x,
                Err(e) => {
                    let _ = fs::remove_dir_all(&root);
                    return Err(e);
                }
            };
        Ok(Workspace {
            marker: format!("written-by-check-{}", random_hex()?),
            survivor_marker: random_hex()?,
            root,
            write_dir,
            canary_files,
            escape_link,
            canary_fd,
            loopback_v4,
            loopback_v6,
            abstract_unix,
            env,
            _owner: owner,
            upstream,
            secret,
            race,
        })
    }

    /// Give the declared write directory to the uid the skill runs as on the process
    /// tier (a root invoker's skill runs as 65534 there, and no idmapped mount makes
    /// the invoker's directory its own).
    pub fn hand_write_dir_to(&self, uid: u32, gid: u32) -> Result<(), WorkspaceError> {
        std::os::unix::fs::chown(&self.write_dir, Some(uid), Some(gid)).map_err(|source| {
            WorkspaceError::Create {
                path: self.write_dir.clone(),
                source,
            }
        })
    }

    /// Whether anything connected to the host's abstract unix listener.
    pub fn abstract_unix_was_reached(&self) -> bool {
        self.abstract_unix.0.accept().is_ok()
    }

    /// Whether anything connected to the host loopback listeners.
    pub fn loopback_was_reached(&self) -> Option<String> {
        let mut reached = None;
        for l in std::iter::once(&self.loopback_v4).chain(self.loopback_v6.as_ref()) {
            if let Ok((_, from)) = l.accept() {
                reached = Some(format!(
                    "the host listener on {:?} accepted a connection from {from}",
                    l.local_addr().ok()
                ));
            }
        }
        reached
    }

    /// The parameters for one probe run.
    pub fn params(&self, policy: &Policy, limits: ProbeLimits) -> ProbeParams {
        let fs = &policy.filesystem;
        let declared_names: Vec<String> = policy
            .network
            .egress
            .iter()
            .filter_map(|r| match r {
                skillsandbox_manifest::EgressRule::Domain { domain, .. } => Some(match domain {
                    skillsandbox_manifest::DomainPattern::Exact(d) => d.clone(),
                    skillsandbox_manifest::DomainPattern::Wildcard(s) => format!("check.{s}"),
                }),
                skillsandbox_manifest::EgressRule::Cidr { .. } => None,
            })
            .collect();
        ProbeParams {
            canary_env: self.env.name.clone(),
            canary_value: self.env.value.clone(),
            canary_files: self.canary_files.clone(),
            canary_fd: Some(self.canary_fd.as_raw_fd()),
            host: host_view(policy),
            write_dir: Some(self.write_dir.clone()),
            write_marker: self.marker.clone(),
            escape_link: Some(self.escape_link.clone()),
            read_only_paths: fs
                .read
                .iter()
                .filter(|r| !fs.write.iter().any(|w| r.starts_with(w)) && r.is_dir())
                .cloned()
                .collect(),
            loopback_v4_port: self.loopback_v4.local_addr().map(|a| a.port()).unwrap_or(0),
            loopback_v6_port: self
                .loopback_v6
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port()),
            egress_declared: !policy.network.egress.is_empty(),
            declared_names,
            synthetic_ranges: vec![
                skillsandbox_egress::DEFAULT_SYNTHETIC_V4.to_string(),
                skillsandbox_egress::DEFAULT_SYNTHETIC_V6.to_string(),
            ],
            limits,
            survivor_marker: self.survivor_marker.clone(),
            host_abstract_unix: Some(self.abstract_unix.1.clone()),
            http: Some(HttpCheck {
                port: self.upstream.port,
                checked: CHECKED_NAME.to_string(),
                other: OTHER_NAME.to_string(),
                secret_env: self.secret.name.clone(),
                secret_prefix: SECRET_PREFIX.to_string(),
            }),
            process_tier: false,
            race: None,
        }
    }

    /// Host processes whose command line carries the survivor marker.
    pub fn survivors(&self) -> Vec<i32> {
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&self.survivor_marker))
            })
            .collect()
    }
}

/// A listener on a fresh abstract unix name in this (the host's) network namespace.
fn abstract_listener() -> Result<(std::os::unix::net::UnixListener, String), WorkspaceError> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("skillsandbox-check-{}", random_hex()?);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(WorkspaceError::Listen)?;
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(WorkspaceError::Listen)?;
    l.set_nonblocking(true).map_err(WorkspaceError::Listen)?;
    Ok((l, name))
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The check process's own view of the host.
pub fn host_view(policy: &Policy) -> HostView {
    let mut namespaces = BTreeMap::new();
    for ns in ["pid", "ipc", "uts", "net", "mnt", "cgroup", "user"] {
        if let Ok(l) = fs::read_link(format!("/proc/self/ns/{ns}")) {
            namespaces.insert(ns.to_string(), l.display().to_string());
        }
    }
    // The invoker's home, unless the manifest grants it (then it is declared).
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && !policy.filesystem.allows_read(h));
    HostView {
        pid: std::process::id(),
        namespaces,
        hostname: fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        root_dev: fs::metadata("/").map(|m| m.dev()).unwrap_or(0),
        home,
    }
}

#[cfg(test)]
mod reap_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn base() -> PathBuf {
        let b =
            std::env::temp_dir().join(format!("skillsandbox-reap-test-{}", random_hex().unwrap()));
        fs::create_dir(&b).unwrap();
        b
    }

    #[test]
    fn only_unlocked_workspaces_of_dead_checks_are_removed() {
        let b = base();
        // A check killed with SIGKILL: its lock file is there, nobody holds it.
        let dead = b.join(format!("{WORKSPACE_PREFIX}dead"));
        fs::create_dir(&dead).unwrap();
        drop(lock_owner(&dead).unwrap());
        fs::write(dead.join("secret"), "x").unwrap();
        // A live check: the lock is held (by this test).
        let live = b.join(format!("{WORKSPACE_PREFIX}live"));
        fs::create_dir(&live).unwrap();
        let held = lock_owner(&live).unwrap();
        // A check between mkdir and its lock; one between creating and locking it.
        let young = b.join(format!("{WORKSPACE_PREFIX}young"));
        fs::create_dir(&young).unwrap();
        let empty = b.join(format!("{WORKSPACE_PREFIX}empty"));
        fs::create_dir(&empty).unwrap();
        File::create(empty.join(OWNER_LOCK)).unwrap();
        // Not a workspace; a symlink named like one.
        let other = b.join("unrelated");
        fs::create_dir(&other).unwrap();
        drop(lock_owner(&other).unwrap());
        let link = b.join(format!("{WORKSPACE_PREFIX}link"));
        std::os::unix::fs::symlink(&dead, &link).unwrap();

        let removed = reap_stale(&b);
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        for kept in [&live, &young, &empty, &other] {
            assert!(kept.is_dir(), "{} was removed", kept.display());
        }
        drop(held);
        // Once its owner lets go, the live one is stale too.
        assert_eq!(reap_stale(&b), vec![live.clone()]);
        fs::remove_dir_all(&b).unwrap();
    }
}
