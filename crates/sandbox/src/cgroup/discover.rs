//! Discovery: which hierarchy (cgroup v2 or a v1 controller hierarchy) holds each
//! controller we limit, and where our own cgroup lives in each of them.
//!
//! Inputs are the texts of `/proc/self/mountinfo` and `/proc/self/cgroup` (parameters, so
//! tests feed fixtures) plus a few reads of `cgroup.controllers` / `cgroup.subtree_control`
//! / `cgroup.type` in our v2 cgroup. This module never writes anything.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupVersion, Controller};

/// Where one controller's sandbox cgroups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub version: CgroupVersion,
    /// Our own cgroup in that hierarchy: `skillsandbox-<name>` is created inside it.
    pub parent: PathBuf,
    /// v2 only: the controller is available to our cgroup but not yet enabled in its
    /// `cgroup.subtree_control`; `create` enables it.
    pub needs_enable: bool,
}

/// Our v2 cgroup, used for limits whose controller is on v2 and, on every host that
/// mounts cgroup2, for `cgroup.kill` / `cgroup.freeze` and `cpu.stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedCgroup {
    /// Our own cgroup in the v2 hierarchy.
    pub parent: PathBuf,
    /// The hierarchy's real root (no `cgroup.type` file): exempt from the
    /// no-internal-processes rule.
    pub is_root: bool,
}

/// The result of discovery: per controller a placement or the reason there is none.
#[derive(Debug, Clone)]
pub struct CgroupRoots {
    pub(crate) memory: Result<Placement, String>,
    pub(crate) pids: Result<Placement, String>,
    pub(crate) cpu: Result<Placement, String>,
    /// Our cgroup in the v1 `cpuacct` hierarchy (may be the `cpu,cpuacct` one).
    pub(crate) cpuacct_v1: Option<PathBuf>,
    /// Our cgroup in the v1 `freezer` hierarchy.
    pub(crate) freezer_v1: Option<PathBuf>,
    pub(crate) unified: Option<UnifiedCgroup>,
    /// Effective uid, for error messages.
    pub(crate) uid: u32,
}

/// One cgroup or cgroup2 mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    /// Which part of the hierarchy is mounted (`/` unless bind-mounted or in a cgroupns).
    root: String,
    mountpoint: PathBuf,
    v2: bool,
    /// v1: the super options (`rw`, `memory`, `cpu`, `cpuacct`, `name=systemd`, ...).
    options: Vec<String>,
}

/// Our membership per hierarchy, from `/proc/self/cgroup`.
#[derive(Debug, Default)]
struct Membership {
    v2: Option<String>,
    /// (controllers, path) per v1 hierarchy.
    v1: Vec<(Vec<String>, String)>,
}

impl CgroupRoots {
    /// Reads the real `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn discover() -> Result<CgroupRoots, CgroupError> {
        let read = |p: &str| {
            fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let cgroup = read("/proc/self/cgroup")?;
        Self::discover_from(&mountinfo, &cgroup)
    }

    /// Discovery over given texts; the v2 control files it consults are read from the
    /// paths the texts name.
    pub fn discover_from(
        mountinfo: &str,
        proc_self_cgroup: &str,
    ) -> Result<CgroupRoots, CgroupError> {
        Self::discover_with(mountinfo, proc_self_cgroup, &|p: &Path| {
            fs::read_to_string(p).ok()
        })
    }

    /// Like [`discover_from`](Self::discover_from) with the file reader as a parameter.
    pub(crate) fn discover_with(
        mountinfo: &str,
        proc_self_cgroup: &str,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<CgroupRoots, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        if mounts.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        let member = parse_proc_cgroup(proc_self_cgroup);

        let mut v2_dir_error = None;
        let unified = match (mounts.iter().find(|m| m.v2), &member.v2) {
            (Some(m), Some(path)) => match our_dir(m, path) {
                Ok(parent) => {
                    let is_root = read(&parent.join("cgroup.type")).is_none();
                    Some(UnifiedCgroup { parent, is_root })
                }
                Err(e) => {
                    v2_dir_error = Some(e);
                    None
                }
            },
            _ => None,
        };
        let (v2_available, v2_enabled) = match &unified {
            Some(u) => (
                words(read(&u.parent.join("cgroup.controllers"))),
                words(read(&u.parent.join("cgroup.subtree_control"))),
            ),
            None => (Vec::new(), Vec::new()),
        };

        let place = |c: Controller| -> Result<Placement, String> {
            let name = c.name();
            if let Some(u) = &unified {
                if v2_enabled.iter().any(|w| w == name) || v2_available.iter().any(|w| w == name) {
                    return Ok(Placement {
                        version: CgroupVersion::V2,
                        parent: u.parent.clone(),
                        needs_enable: !v2_enabled.iter().any(|w| w == name),
                    });
                }
            }
            match v1_dir(&mounts, &member, name) {
                Some(Ok(parent)) => Ok(Placement {
                    version: CgroupVersion::V1,
                    parent,
                    needs_enable: false,
                }),
                Some(Err(e)) => Err(e),
                None => Err(match (&unified, &v2_dir_error) {
                    (Some(u), _) => format!(
                        "not in {}/cgroup.controllers and no cgroup v1 hierarchy has it",
                        u.parent.display()
                    ),
                    (None, Some(e)) => format!("{e}, and no cgroup v1 hierarchy has it"),
                    (None, None) => "no cgroup v1 or v2 hierarchy provides it".to_string(),
                }),
            }
        };

        Ok(CgroupRoots {
            memory: place(Controller::Memory),
            pids: place(Controller::Pids),
            cpu: place(Controller::Cpu),
            cpuacct_v1: v1_dir(&mounts, &member, "cpuacct").and_then(Result::ok),
            freezer_v1: v1_dir(&mounts, &member, "freezer").and_then(Result::ok),
            unified,
            uid: nix::unistd::geteuid().as_raw(),
        })
    }

    /// Where `controller`'s sandbox cgroups go, or why it is unavailable.
    pub fn placement(&self, controller: Controller) -> Result<&Placement, &str> {
        let p = match controller {
            Controller::Memory => &self.memory,
            Controller::Pids => &self.pids,
            Controller::Cpu => &self.cpu,
        };
        p.as_ref().map_err(String::as_str)
    }

    /// Our cgroup in the v2 hierarchy, when cgroup2 is mounted.
    pub fn unified(&self) -> Option<&UnifiedCgroup> {
        self.unified.as_ref()
    }

    /// Our cgroup in the v1 `freezer` hierarchy, when mounted.
    pub fn freezer_v1(&self) -> Option<&Path> {
        self.freezer_v1.as_deref()
    }

    /// Our cgroup in the v1 `cpuacct` hierarchy, when mounted.
    pub fn cpuacct_v1(&self) -> Option<&Path> {
        self.cpuacct_v1.as_deref()
    }

    /// Every distinct directory a sandbox cgroup may be created in.
    pub(crate) fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let candidates = [&self.memory, &self.pids, &self.cpu]
            .into_iter()
            .filter_map(|p| p.as_ref().ok().map(|p| p.parent.clone()))
            .chain(self.unified.iter().map(|u| u.parent.clone()))
            .chain(self.cpuacct_v1.clone())
            .chain(self.freezer_v1.clone());
        for d in candidates {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// Whitespace-separated words of a control file; an unreadable file has none.
fn words(text: Option<String>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Our cgroup directory in the v1 hierarchy that has `controller`: `None` when no v1
/// hierarchy has it, `Some(Err)` when it is mounted but our cgroup is not visible there.
fn v1_dir(
    mounts: &[CgroupMount],
    member: &Membership,
    controller: &str,
) -> Option<Result<PathBuf, String>> {
    let (_, path) = member
        .v1
        .iter()
        .find(|(ctrls, _)| ctrls.iter().any(|c| c == controller))?;
    let mut first_error = None;
    for m in mounts
        .iter()
        .filter(|m| !m.v2 && m.options.iter().any(|o| o == controller))
    {
        match our_dir(m, path) {
            Ok(dir) => return Some(Ok(dir)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map(Err)
}

/// `mountpoint` + our cgroup path relative to the mounted root of the hierarchy.
fn our_dir(mount: &CgroupMount, cgroup_path: &str) -> Result<PathBuf, String> {
    let root = mount.root.trim_end_matches('/');
    let rest = if root.is_empty() {
        Some(cgroup_path)
    } else if cgroup_path == root {
        Some("")
    } else {
        cgroup_path
            .strip_prefix(root)
            .filter(|r| r.starts_with('/'))
    };
    match rest {
        Some(rest) if !rest.split('/').any(|c| c == "..") => {
            Ok(mount.mountpoint.join(rest.trim_start_matches('/')))
        }
        _ => Err(format!(
            "our cgroup {cgroup_path} is outside the part {} of the hierarchy mounted at {}",
            mount.root,
            mount.mountpoint.display()
        )),
    }
}

/// The cgroup and cgroup2 mounts in mountinfo, in order. Malformed lines are skipped.
fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(mountpoint), Some(fstype), Some(opts)) = (
            fields.get(3),
            fields.get(4),
            fields.get(sep + 1),
            fields.get(sep + 3),
        ) else {
            continue;
        };
        let v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape(root),
            mountpoint: PathBuf::from(unescape(mountpoint)),
            v2,
            options: opts.split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/cgroup`: `hierarchy-id:controllers:path` per line; `0::path` is v2.
fn parse_proc_cgroup(text: &str) -> Membership {
    let mut m = Membership::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            m.v2 = Some(path.to_string());
        } else {
            let ctrls = ctrls.split(',').map(str::to_string).collect();
            m.v1.push((ctrls, path.to_string()));
        }
    }
    m
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
