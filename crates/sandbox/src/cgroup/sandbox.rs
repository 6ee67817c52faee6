//! One sandbox's cgroups: created with limits in every needed hierarchy, joined by the
//! sandbox's first process, read for usage, killed and removed at the end (also on drop).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::discover::Placement;
use super::kill::Freezer;
use super::{files, limits};
use super::{CgroupError, CgroupLimits, CgroupRoots, CgroupUsage, CgroupVersion, Controller};

/// Prefix of every cgroup we create; `reap_stale` only ever touches these.
pub(crate) const PREFIX: &str = "skillsandbox-";
/// Leaf the supervisor moves itself into on v2 when its own cgroup must become an
/// inner node (not matched by `PREFIX`, so never reaped).
const SUPERVISOR_LEAF: &str = "skillsandbox.supervisor";
/// Leftovers younger than this may belong to a supervisor that is still setting up.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The cgroups of one sandbox. Dropping it kills every member and removes the
/// directories; [`destroy`](Self::destroy) does the same and reports errors.
#[derive(Debug)]
pub struct SandboxCgroup {
    /// Created directories, in creation order.
    created: Vec<PathBuf>,
    memory: Option<(CgroupVersion, PathBuf)>,
    pids: Option<(CgroupVersion, PathBuf)>,
    /// Where CPU time is read: a v1 cpuacct cgroup or the v2 cgroup.
    cpu_usage: Option<(CgroupVersion, PathBuf)>,
    pub(crate) unified: Option<PathBuf>,
    pub(crate) freezer: Option<Freezer>,
    layers: Vec<(String, bool, String)>,
    /// Where each limit was written ([`SandboxCgroup::set_limits`] rewrites them).
    limited: Vec<(Controller, CgroupVersion, PathBuf)>,
}

/// Options that only tests change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CreateOptions {
    /// Fail unless every limit is applied.
    pub(crate) strict: bool,
    /// Use the v1 freezer even when the v2 cgroup has `cgroup.freeze`.
    pub(crate) prefer_v1_freezer: bool,
}

impl CgroupRoots {
    /// Creates `skillsandbox-<name>` under our cgroup in every hierarchy a limit needs
    /// (plus the v2 cgroup for `cgroup.kill`, and a freezer) and writes the limits.
    /// Fails unless memory, pids and cpu are all enforced.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<SandboxCgroup, CgroupError> {
        self.create_with(
            name,
            limits,
            CreateOptions {
                strict: true,
                prefer_v1_freezer: false,
            },
        )
    }

    /// Like [`create`](Self::create), but a limit that cannot be applied is reported as
    /// not enforced in [`SandboxCgroup::enforcement`] instead of failing; fails only when
    /// no limit at all could be applied. For `--allow-degraded`.
    pub fn create_best_effort(
        &self,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<SandboxCgroup, CgroupError> {
        self.create_with(
            name,
            limits,
            CreateOptions {
                strict: false,
                prefer_v1_freezer: false,
            },
        )
    }

    pub(crate) fn create_with(
        &self,
        name: &str,
        limits: &CgroupLimits,
        opts: CreateOptions,
    ) -> Result<SandboxCgroup, CgroupError> {
        validate_name(name)?;
        limits.validate()?;
        let leaf = format!("{PREFIX}{name}");
        // Dropping `sc` on any early return removes what was created so far.
        let mut sc = SandboxCgroup {
            created: Vec::new(),
            memory: None,
            pids: None,
            cpu_usage: None,
            unified: None,
            freezer: None,
            layers: Vec::new(),
            limited: Vec::new(),
        };

        let mut first_error = None;
        let mut v2_enable_error: Option<String> = None;
        if let Err(e) = self.enable_v2_controllers() {
            if opts.strict {
                return Err(e);
            }
            v2_enable_error = Some(e.to_string());
        }
        for c in [Controller::Memory, Controller::Pids, Controller::Cpu] {
            let result = match self.placement(c) {
                Err(reason) => Err(CgroupError::ControllerUnavailable {
                    controller: c.name(),
                    reason: reason.to_string(),
                }),
                Ok(p) => match (&v2_enable_error, p.version, p.needs_enable) {
                    (Some(e), CgroupVersion::V2, true) => Err(CgroupError::ControllerUnavailable {
                        controller: c.name(),
                        reason: e.clone(),
                    }),
                    _ => self.apply_one(&mut sc, p, &leaf, c, limits),
                },
            };
            match result {
                Ok(detail) => sc.layers.push((c.layer().to_string(), true, detail)),
                Err(e) if opts.strict => return Err(e),
                Err(e) => {
                    sc.layers
                        .push((c.layer().to_string(), false, e.to_string()));
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error.filter(|_| !sc.layers.iter().any(|l| l.1)) {
            return Err(e);
        }

        // Helpers, best effort: the limits above are what must hold.
        if let Some(u) = &self.unified {
            sc.unified = sc.ensure_dir_soft(&u.parent.join(&leaf), self.uid);
        }
        if sc.cpu_usage.is_none() {
            if let Some(dir) = self
                .cpuacct_v1
                .as_ref()
                .and_then(|p| sc.ensure_dir_soft(&p.join(&leaf), self.uid))
            {
                sc.cpu_usage = Some((CgroupVersion::V1, dir));
            } else if let Some(u) = &sc.unified {
                sc.cpu_usage = Some((CgroupVersion::V2, u.clone()));
            }
        }
        let v2_freeze = sc
            .unified
            .clone()
            .filter(|u| u.join("cgroup.freeze").exists());
        sc.freezer = match (v2_freeze, opts.prefer_v1_freezer) {
            (Some(u), false) => Some(Freezer::V2(u)),
            (v2, _) => self
                .freezer_v1
                .as_ref()
                .and_then(|p| sc.ensure_dir_soft(&p.join(&leaf), self.uid))
                .map(Freezer::V1)
                .or(v2.map(Freezer::V2)),
        };
        Ok(sc)
    }

    /// Creates the controller's cgroup (shared when hierarchies coincide) and writes its
    /// limits; returns the enforcement detail.
    fn apply_one(
        &self,
        sc: &mut SandboxCgroup,
        p: &Placement,
        leaf: &str,
        c: Controller,
        limits: &CgroupLimits,
    ) -> Result<String, CgroupError> {
        let dir = p.parent.join(leaf);
        sc.ensure_dir(&dir, self.uid)?;
        let written = limits::apply(&dir, p.version, c, limits)?;
        sc.limited.push((c, p.version, dir.clone()));
        let slot = (p.version, dir.clone());
        match c {
            Controller::Memory => sc.memory = Some(slot),
            Controller::Pids => sc.pids = Some(slot),
            Controller::Cpu => {
                // v1 CPU time lives in cpuacct, which may be co-mounted as cpu,cpuacct.
                if p.version == CgroupVersion::V2 || self.cpuacct_v1.as_ref() == Some(&p.parent) {
                    sc.cpu_usage = Some(slot);
                }
            }
        }
        Ok(format!(
            "{} {}: {written}",
            p.version.label(),
            dir.display()
        ))
    }

    /// Enables the v2 controllers our placements need in our cgroup's
    /// `cgroup.subtree_control`. On `EBUSY` (our cgroup holds processes and is not the
    /// root) and when the supervisor is the only process there, moves the supervisor
    /// into a leaf child and retries; otherwise explains what to do.
    fn enable_v2_controllers(&self) -> Result<(), CgroupError> {
        let needed: Vec<&str> = [Controller::Memory, Controller::Pids, Controller::Cpu]
            .into_iter()
            .filter(|c| {
                self.placement(*c)
                    .is_ok_and(|p| p.version == CgroupVersion::V2 && p.needs_enable)
            })
            .map(Controller::name)
            .collect();
        let Some(u) = self.unified.as_ref().filter(|_| !needed.is_empty()) else {
            return Ok(());
        };
        let path = u.parent.join("cgroup.subtree_control");
        let value = needed
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let enable = || files::write(&path, &value);
        let err = |source: io::Error| match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => CgroupError::NotWritable {
                uid: self.uid,
                path: path.clone(),
                source,
            },
            Some(libc::EBUSY) => CgroupError::InnerNodeBusy {
                path: u.parent.clone(),
                controllers: needed.join(" "),
            },
            _ => CgroupError::EnableControllers {
                path: path.clone(),
                controllers: needed.join(" "),
                source,
            },
        };
        match enable() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !u.is_root => {
                let me = std::process::id();
                let members = files::procs(&u.parent).map_err(&err)?;
                if members.iter().any(|p| u32::try_from(*p).ok() != Some(me)) {
                    return Err(err(e));
                }
                let leaf = u.parent.join(SUPERVISOR_LEAF);
                let relocate = || -> io::Result<()> {
                    match fs::create_dir(&leaf) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                    files::write(&leaf.join("cgroup.procs"), &me.to_string())
                };
                relocate().map_err(|source| CgroupError::RelocateSelf {
                    pid: me,
                    path: leaf.clone(),
                    source,
                })?;
                enable().map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Removes leftover `skillsandbox-*` cgroups under our cgroups that have no process
    /// and are older than a minute (a crashed supervisor's leftovers). Returns how many
    /// directories were removed.
    pub fn reap_stale(&self) -> usize {
        let now = SystemTime::now();
        let mut removed = 0;
        for parent in self.parent_dirs() {
            let Ok(entries) = fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let stale = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(PREFIX))
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                    && files::procs(&path).is_ok_and(|p| p.is_empty())
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age >= STALE_AFTER);
                if stale && fs::remove_dir(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

impl SandboxCgroup {
    /// Writes `limits` over the ones [`CgroupRoots::create`] wrote: every file it wrote,
    /// in the same hierarchies, so the cgroup is as if created with them. For a cgroup
    /// made ahead of its run ([`crate::warm`]), before the run's first process may
    /// unshare. An error leaves the cgroup unfit for the run (drop it).
    pub fn set_limits(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        limits.validate()?;
        for (c, version, dir) in &self.limited {
            let written = limits::apply(dir, *version, *c, limits)?;
            let detail = format!("{} {}: {written}", version.label(), dir.display());
            if let Some(layer) = self.layers.iter_mut().find(|l| l.0 == c.layer()) {
                layer.2 = detail;
            }
        }
        Ok(())
    }

    /// Moves `pid` (a whole process) into the sandbox's cgroup in every hierarchy.
    /// Call it for the sandbox's first process before it unshares its cgroup namespace;
    /// its descendants inherit the membership.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.created {
            let path = dir.join("cgroup.procs");
            files::write(&path, &pid.to_string()).map_err(|source| CgroupError::AddPid {
                pid,
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// Resource usage so far. Values a kernel does not provide are `None`.
    pub fn usage(&self) -> CgroupUsage {
        let (pids_events_max, pids_peak) = self
            .pids
            .as_ref()
            .map(|(_, d)| limits::pids_usage(d))
            .unwrap_or((None, None));
        CgroupUsage {
            cpu_usage_ns: self
                .cpu_usage
                .as_ref()
                .and_then(|(v, d)| limits::cpu_usage_ns(*v, d)),
            memory_peak_bytes: self
                .memory
                .as_ref()
                .and_then(|(v, d)| limits::memory_peak(*v, d)),
            oom_kills: self
                .memory
                .as_ref()
                .and_then(|(v, d)| limits::oom_kills(*v, d))
                .unwrap_or(0),
            pids_peak,
            pids_events_max,
        }
    }

    /// `true` when the kernel's OOM killer killed a process of the sandbox.
    pub fn oom_killed(&self) -> bool {
        self.usage().oom_kills > 0
    }

    /// Per layer (`cgroup_memory`, `cgroup_pids`, `cgroup_cpu`): enforced or not, and
    /// the detail (`v1 /sys/fs/cgroup/memory/...: memory.limit_in_bytes=...`, or why not).
    pub fn enforcement(&self) -> Vec<(String, bool, String)> {
        self.layers.clone()
    }

    /// Every directory this sandbox created, in creation order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.created
    }

    pub(crate) fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.created.iter().map(PathBuf::as_path)
    }

    /// Kills every member and removes every directory, reporting the first error.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        let mut result = self.kill_all();
        for dir in std::mem::take(&mut self.created).into_iter().rev() {
            if let Err(source) = files::remove_dir(&dir) {
                if result.is_ok() {
                    result = Err(CgroupError::Remove { path: dir, source });
                }
            }
        }
        result
    }

    /// `mkdir`, recording the directory; a directory created earlier for another
    /// controller of the same hierarchy is reused.
    fn ensure_dir(&mut self, dir: &Path, uid: u32) -> Result<(), CgroupError> {
        if self.created.iter().any(|d| d == dir) {
            return Ok(());
        }
        fs::create_dir(dir).map_err(|source| match source.raw_os_error() {
            Some(libc::EEXIST) => CgroupError::AlreadyExists {
                path: dir.to_path_buf(),
            },
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => CgroupError::NotWritable {
                uid,
                path: dir.to_path_buf(),
                source,
            },
            _ => CgroupError::Create {
                path: dir.to_path_buf(),
                source,
            },
        })?;
        self.created.push(dir.to_path_buf());
        Ok(())
    }

    fn ensure_dir_soft(&mut self, dir: &Path, uid: u32) -> Option<PathBuf> {
        self.ensure_dir(dir, uid).ok().map(|()| dir.to_path_buf())
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; destroy() reports them.
        let _ = self.teardown();
    }
}

/// `[A-Za-z0-9._-]{1,64}`, not starting with '.': one path component, never `..`.
fn validate_name(name: &str) -> Result<(), CgroupError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
