//! Cgroup limits and kill on the real host (root, or a delegated cgroup). Without
//! writable cgroups these tests skip, unless SKILLSANDBOX_TEST_REQUIRE=full, where a
//! missing feature is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use skillsandbox_sandbox::cgroup::{
    CgroupError, CgroupLimits, CgroupRoots, Controller, KillMethod, SandboxCgroup,
};

const LIMITS: CgroupLimits = CgroupLimits {
    memory_bytes: 64 << 20,
    pids_max: 16,
    cpu_cores: 0.5,
};

fn require_full() -> bool {
    std::env::var("SKILLSANDBOX_TEST_REQUIRE").is_ok_and(|v| v == "full")
}

fn unique(label: &str) -> String {
    format!("test-{}-{label}", std::process::id())
}

/// A sandbox cgroup, or `None` (skip) when this host cannot give us one.
fn sandbox(label: &str, limits: &CgroupLimits) -> Option<SandboxCgroup> {
    let result = CgroupRoots::discover().and_then(|r| r.create(&unique(label), limits));
    match result {
        Ok(cg) => Some(cg),
        Err(
            e @ (CgroupError::NotWritable { .. }
            | CgroupError::ControllerUnavailable { .. }
            | CgroupError::InnerNodeBusy { .. }
            | CgroupError::NoHierarchy),
        ) if !require_full() => {
            eprintln!("SKIP {label}: {e}");
            None
        }
        Err(e) => panic!("creating the sandbox cgroup: {e}"),
    }
}

/// `sh -c script` that waits on stdin until it has been added to the cgroup.
fn spawn_in(cg: &SandboxCgroup, script: &str) -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    cg.add_pid(pid).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    child
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Alive = exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let Some(cg) = sandbox("oom", &LIMITS) else {
        return;
    };
    // dash keeps the whole command substitution in memory: 300 MB against 64 MiB.
    let mut child = spawn_in(
        &cg,
        r#"x=$(head -c 300000000 /dev/zero | tr '\000' a); echo survived"#,
    );
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    cg.kill_all().unwrap();
    let status = status.unwrap_or_else(|| child.wait().unwrap());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let usage = cg.usage();
    assert!(!out.contains("survived"), "the hog finished: {status:?}");
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(cg.oom_killed());
    if let Some(peak) = usage.memory_peak_bytes {
        assert!(peak <= LIMITS.memory_bytes + (1 << 20), "{usage:?}");
    }
}

#[test]
fn fork_loop_is_capped_by_pids_max() {
    let Some(cg) = sandbox("forks", &LIMITS) else {
        return;
    };
    let mut child = spawn_in(&cg, "while :; do sleep 100 & done");
    let capped = wait_until(Duration::from_secs(20), || {
        cg.usage().pids_events_max.unwrap_or(0) >= 1
    });
    let count = cg.pids().len();
    let usage = cg.usage();
    cg.kill_all().unwrap();
    child.wait().unwrap();
    assert!(capped, "pids.max never refused a fork: {usage:?}");
    assert!(count <= 16, "{count} processes with pids.max 16");
    if let Some(peak) = usage.pids_peak {
        assert!(peak <= 16, "{usage:?}");
    }
    assert!(cg.pids().is_empty());
}

/// A cgroup made ahead of its run (the warm path) gets the run's limits written over
/// the ones it was made with: the new pids limit is what holds, and the enforcement
/// report names it.
#[test]
fn set_limits_rewrites_what_create_wrote() {
    let Some(mut cg) = sandbox(
        "relimit",
        &CgroupLimits {
            pids_max: 64,
            ..LIMITS
        },
    ) else {
        return;
    };
    cg.set_limits(&CgroupLimits {
        pids_max: 5,
        ..LIMITS
    })
    .unwrap();
    let report = format!("{:?}", cg.enforcement());
    assert!(report.contains("pids.max=5"), "{report}");
    let mut child = spawn_in(&cg, "while :; do sleep 100 & done");
    let capped = wait_until(Duration::from_secs(20), || {
        cg.usage().pids_events_max.unwrap_or(0) >= 1
    });
    let count = cg.pids().len();
    cg.kill_all().unwrap();
    child.wait().unwrap();
    assert!(capped, "pids.max 5 never refused a fork");
    assert!(count <= 5, "{count} processes with pids.max 5");
    assert!(cg
        .set_limits(&CgroupLimits {
            pids_max: 0,
            ..LIMITS
        })
        .is_err());
}

/// Double-forked `setsid` daemons plus loops that fork all the time: every kill method
/// leaves nobody.
fn assert_kill_leaves_no_survivor(label: &str, method: Option<KillMethod>) {
    let Some(cg) = sandbox(label, &LIMITS) else {
        return;
    };
    if let Some(m) = method {
        if !cg.kill_methods().contains(&m) {
            assert!(!require_full(), "{} unavailable", m.name());
            eprintln!("SKIP {label}: {} unavailable", m.name());
            return;
        }
    }
    let mut child = spawn_in(
        &cg,
        concat!(
            r#"(setsid sh -c "sleep 1000" &); setsid sh -c "sleep 1000" & "#,
            r#"for i in 1 2 3; do (while :; do sleep 0.01 & wait; done) & done; sleep 1000"#
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || cg.pids().len() >= 8),
        "the tree did not start: {:?}",
        cg.pids()
    );
    let seen = cg.pids();
    match method {
        Some(m) => cg.kill_all_with(m).unwrap(),
        None => cg.kill_all().unwrap(),
    }
    child.wait().unwrap();
    assert!(cg.pids().is_empty(), "{:?}", cg.pids());
    let survivors: Vec<i32> = seen.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
}

#[test]
fn kill_all_leaves_no_survivor() {
    assert_kill_leaves_no_survivor("kill", None);
}

#[test]
fn kill_with_cgroup_kill() {
    assert_kill_leaves_no_survivor("kill-ck", Some(KillMethod::CgroupKill));
}

#[test]
fn kill_with_freezer() {
    assert_kill_leaves_no_survivor("kill-fr", Some(KillMethod::Freeze));
}

#[test]
fn kill_with_signal_rounds() {
    assert_kill_leaves_no_survivor("kill-sig", Some(KillMethod::Signal));
}

#[test]
fn drop_kills_and_removes_every_directory() {
    let Some(cg) = sandbox("drop", &LIMITS) else {
        return;
    };
    let paths = cg.paths().to_vec();
    assert!(!paths.is_empty());
    assert!(paths.iter().all(|p| p.is_dir()), "{paths:?}");
    let mut child = spawn_in(&cg, "setsid sh -c 'sleep 1000' & sleep 1000");
    assert!(wait_until(Duration::from_secs(10), || cg.pids().len() >= 3));
    let seen = cg.pids();
    drop(cg);
    child.wait().unwrap();
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(seen.iter().all(|p| !alive(*p)), "{seen:?}");
}

#[test]
fn destroy_reports_success_and_removes() {
    let Some(cg) = sandbox("destroy", &LIMITS) else {
        return;
    };
    let paths = cg.paths().to_vec();
    let mut child = spawn_in(&cg, "sleep 1000");
    assert!(wait_until(Duration::from_secs(10), || !cg
        .pids()
        .is_empty()));
    cg.destroy().unwrap();
    child.wait().unwrap();
    assert!(paths.iter().all(|p| !p.exists()), "{paths:?}");
}

#[test]
fn cpu_quota_holds_a_busy_loop_to_half_a_core() {
    let Some(cg) = sandbox("cpu", &LIMITS) else {
        return;
    };
    let mut child = spawn_in(&cg, "while :; do :; done");
    thread::sleep(Duration::from_millis(2000));
    let usage = cg.usage();
    cg.kill_all().unwrap();
    child.wait().unwrap();
    let ns = usage.cpu_usage_ns.unwrap_or(0);
    assert!(ns > 0, "{usage:?}");
    // 0.5 cores for 2 s is 1 s of CPU time; unlimited it would be about 2 s.
    assert!(ns <= 1_300_000_000, "{usage:?}");
}

#[test]
fn enforcement_names_each_layer_and_where() {
    let Some(cg) = sandbox("report", &LIMITS) else {
        return;
    };
    let layers = cg.enforcement();
    let names: Vec<&str> = layers.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(names, ["cgroup_memory", "cgroup_pids", "cgroup_cpu"]);
    for (layer, enforced, detail) in &layers {
        assert!(enforced, "{layer}: {detail}");
        assert!(
            detail.starts_with("v1 /") || detail.starts_with("v2 /"),
            "{detail}"
        );
        assert!(detail.contains("skillsandbox-test-"), "{detail}");
    }
    assert!(layers[0].2.contains("67108864"), "{}", layers[0].2);
    assert!(layers[2].2.contains("50000"), "{}", layers[2].2);
}

#[test]
fn same_name_twice_and_bad_names_are_refused() {
    let Some(cg) = sandbox("twice", &LIMITS) else {
        return;
    };
    let roots = CgroupRoots::discover().unwrap();
    let again = roots.create(&unique("twice"), &LIMITS);
    assert!(
        matches!(again, Err(CgroupError::AlreadyExists { .. })),
        "{again:?}"
    );
    // The failed attempt must not have removed the first sandbox's directories.
    assert!(cg.paths().iter().all(|p| p.is_dir()));
    for bad in ["", "..", "a/b", ".hidden", &"x".repeat(65)] {
        let r = roots.create(bad, &LIMITS);
        assert!(
            matches!(r, Err(CgroupError::InvalidName { .. })),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn reap_stale_removes_old_empty_leftovers_only() {
    let Some(cg) = sandbox("reap-probe", &LIMITS) else {
        return;
    };
    let roots = CgroupRoots::discover().unwrap();
    let parent = roots.placement(Controller::Pids).unwrap().parent.clone();
    let old = parent.join(format!("skillsandbox-{}", unique("stale-old")));
    let fresh = parent.join(format!("skillsandbox-{}", unique("stale-fresh")));
    let other = parent.join(format!("not-ours-{}", unique("stale")));
    for d in [&old, &fresh, &other] {
        fs::create_dir(d).unwrap();
    }
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for d in [&old, &other] {
        fs::File::open(d)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let mut child = spawn_in(&cg, "sleep 1000");
    let removed = roots.reap_stale();
    let (old_gone, fresh_kept, other_kept) = (!old.exists(), fresh.exists(), other.exists());
    let live_kept = cg.paths().iter().all(|p| p.is_dir());
    for d in [&fresh, &other] {
        let _ = fs::remove_dir(d);
    }
    drop(cg);
    child.wait().unwrap();
    assert!(removed >= 1 && old_gone, "removed {removed}");
    assert!(fresh_kept && other_kept && live_kept);
}

/// As an unprivileged uid, creation fails with one line naming the uid and the ways
/// out. As root the test re-runs itself as uid 65534.
#[test]
fn not_writable_error_names_uid_and_hint() {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(&exe)
            .args([
                "--exact",
                "not_writable_error_names_uid_and_hint",
                "--nocapture",
            ])
            .uid(65534)
            .gid(65534)
            .env("SKILLSANDBOX_TEST_REQUIRE", "full")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "as uid 65534:\n{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    let roots = match CgroupRoots::discover() {
        Ok(r) => r,
        Err(e) => panic!("discovery: {e}"),
    };
    match roots.create(&unique("rootless"), &LIMITS) {
        Err(e @ CgroupError::NotWritable { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("not writable for uid {uid}")),
                "{msg}"
            );
            assert!(
                msg.contains("Delegate=yes") && msg.contains("--allow-degraded"),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
        Err(e) => eprintln!("not a NotWritable case on this host: {e}"),
        Ok(cg) => eprintln!("cgroups are delegated to uid {uid}: {:?}", cg.paths()),
    }
}

#[test]
fn usage_is_readable_on_an_empty_sandbox() {
    let Some(cg) = sandbox("usage", &LIMITS) else {
        return;
    };
    let u = cg.usage();
    assert_eq!(u.oom_kills, 0);
    assert!(!cg.oom_killed());
    assert!(u.cpu_usage_ns.is_some(), "{u:?}");
    assert!(u.memory_peak_bytes.is_some(), "{u:?}");
    assert_eq!(u.pids_events_max, Some(0));
    assert!(Path::new(&cg.paths()[0]).is_dir());
}
