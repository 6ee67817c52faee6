//! Discovery over fixture texts: this CI host (hybrid: v1 controllers, an empty v2
//! tree at /sys/fs/cgroup/unified), a pure v2 host, and a pure v1 host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const HYBRID_MOUNTINFO: &str = include_str!("fixtures/hybrid.mountinfo");
const HYBRID_CGROUP: &str = include_str!("fixtures/hybrid.cgroup");
const V2_MOUNTINFO: &str = include_str!("fixtures/v2.mountinfo");
const V2_CGROUP: &str = include_str!("fixtures/v2.cgroup");
const V1_MOUNTINFO: &str = include_str!("fixtures/v1.mountinfo");
const V1_CGROUP: &str = include_str!("fixtures/v1.cgroup");

const V2_SCOPE: &str =
    "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u42.scope";

fn discover(mountinfo: &str, cgroup: &str, files: &[(&str, &str)]) -> CgroupRoots {
    let files: HashMap<PathBuf, String> = files
        .iter()
        .map(|(p, c)| (PathBuf::from(p), c.to_string()))
        .collect();
    let read = move |p: &Path| files.get(p).cloned();
    match CgroupRoots::discover_with(mountinfo, cgroup, &read) {
        Ok(r) => r,
        Err(e) => panic!("discovery failed: {e}"),
    }
}

fn placed(r: &CgroupRoots, c: Controller) -> Placement {
    match r.placement(c) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{} unavailable: {e}", c.name()),
    }
}

fn v1(parent: &str) -> Placement {
    Placement {
        version: CgroupVersion::V1,
        parent: PathBuf::from(parent),
        needs_enable: false,
    }
}

fn v2(parent: &str, needs_enable: bool) -> Placement {
    Placement {
        version: CgroupVersion::V2,
        parent: PathBuf::from(parent),
        needs_enable,
    }
}

#[test]
fn hybrid_host_uses_v1_controllers_and_v2_for_kill() {
    // The v2 root here offers only hugetlb; memory, pids and cpu are bound to v1.
    let r = discover(
        HYBRID_MOUNTINFO,
        HYBRID_CGROUP,
        &[
            ("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n"),
            ("/sys/fs/cgroup/unified/cgroup.subtree_control", "\n"),
        ],
    );
    assert_eq!(
        placed(&r, Controller::Memory),
        v1("/sys/fs/cgroup/memory/ci/job-2b6c7776")
    );
    assert_eq!(placed(&r, Controller::Pids), v1("/sys/fs/cgroup/pids"));
    assert_eq!(placed(&r, Controller::Cpu), v1("/sys/fs/cgroup/cpu"));
    assert_eq!(r.cpuacct_v1(), Some(Path::new("/sys/fs/cgroup/cpuacct")));
    assert_eq!(r.freezer_v1(), Some(Path::new("/sys/fs/cgroup/freezer")));
    assert_eq!(
        r.unified(),
        Some(&UnifiedCgroup {
            parent: PathBuf::from("/sys/fs/cgroup/unified"),
            // No cgroup.type in the fixture files: the hierarchy root.
            is_root: true,
        })
    );
    let dirs = r.parent_dirs();
    assert_eq!(dirs.len(), 6, "{dirs:?}");
}

#[test]
fn pure_v2_host_uses_v2_and_knows_what_to_enable() {
    let controllers = format!("{V2_SCOPE}/cgroup.controllers");
    let subtree = format!("{V2_SCOPE}/cgroup.subtree_control");
    let ty = format!("{V2_SCOPE}/cgroup.type");
    let r = discover(
        V2_MOUNTINFO,
        V2_CGROUP,
        &[
            (&controllers, "cpuset cpu io memory pids\n"),
            (&subtree, "memory\n"),
            (&ty, "domain\n"),
        ],
    );
    assert_eq!(placed(&r, Controller::Memory), v2(V2_SCOPE, false));
    assert_eq!(placed(&r, Controller::Pids), v2(V2_SCOPE, true));
    assert_eq!(placed(&r, Controller::Cpu), v2(V2_SCOPE, true));
    assert_eq!(r.freezer_v1(), None);
    assert_eq!(r.cpuacct_v1(), None);
    assert_eq!(
        r.unified(),
        Some(&UnifiedCgroup {
            parent: PathBuf::from(V2_SCOPE),
            is_root: false
        })
    );
}

#[test]
fn pure_v2_host_without_delegated_controller_says_why() {
    let controllers = format!("{V2_SCOPE}/cgroup.controllers");
    let r = discover(V2_MOUNTINFO, V2_CGROUP, &[(&controllers, "memory pids\n")]);
    assert_eq!(placed(&r, Controller::Memory), v2(V2_SCOPE, true));
    let err = r
        .placement(Controller::Cpu)
        .err()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("cgroup.controllers"), "{err}");
    assert!(err.contains("no cgroup v1 hierarchy"), "{err}");
}

#[test]
fn pure_v1_host_with_comounted_cpu_cpuacct() {
    let r = discover(V1_MOUNTINFO, V1_CGROUP, &[]);
    let svc = "/system.slice/ci-runner.service";
    assert_eq!(
        placed(&r, Controller::Memory),
        v1(&format!("/sys/fs/cgroup/memory{svc}"))
    );
    assert_eq!(
        placed(&r, Controller::Pids),
        v1(&format!("/sys/fs/cgroup/pids{svc}"))
    );
    let cpu = format!("/sys/fs/cgroup/cpu,cpuacct{svc}");
    assert_eq!(placed(&r, Controller::Cpu), v1(&cpu));
    assert_eq!(r.cpuacct_v1(), Some(Path::new(&cpu)));
    assert_eq!(r.freezer_v1(), Some(Path::new("/sys/fs/cgroup/freezer")));
    assert_eq!(r.unified(), None);
    // memory, pids, cpu,cpuacct, freezer
    assert_eq!(r.parent_dirs().len(), 4);
}

#[test]
fn bind_mounted_subtree_is_resolved_relative_to_its_root() {
    // A container that sees only its own part of the hierarchy.
    let mi = "50 40 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let r = discover(
        mi,
        "0::/docker/abc/app\n",
        &[("/sys/fs/cgroup/app/cgroup.controllers", "pids")],
    );
    assert_eq!(placed(&r, Controller::Pids), v2("/sys/fs/cgroup/app", true));

    let r = discover(mi, "0::/other\n", &[]);
    let err = r
        .placement(Controller::Pids)
        .err()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    assert!(r.unified().is_none());
}

#[test]
fn escaped_mountpoints_and_garbage_lines() {
    let mi = "garbage\n\n1 2 3\n60 1 0:40 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\n";
    let r = discover(mi, "x\n5:pids:/a\n", &[]);
    assert_eq!(placed(&r, Controller::Pids), v1("/mnt/my cgroups/a"));
    assert!(r.placement(Controller::Memory).is_err());
}

#[test]
fn dotdot_in_cgroup_path_is_refused() {
    let mi = "60 1 0:40 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
    let r = discover(mi, "5:pids:/../../etc\n", &[]);
    assert!(r.placement(Controller::Pids).is_err());
}

#[test]
fn no_cgroup_mount_is_an_error() {
    let r = CgroupRoots::discover_with("22 27 0:21 / /proc rw - proc proc rw\n", "0::/\n", &|_| {
        None
    });
    assert!(matches!(r, Err(CgroupError::NoHierarchy)));
}

#[test]
fn unescape_handles_octal_and_plain() {
    assert_eq!(unescape("a\\040b\\011c\\\\d"), "a b\tc\\\\d");
    assert_eq!(unescape("\\04"), "\\04");
    assert_eq!(unescape("\\777x"), "?x");
}
