//! Real-cgroup tests of paths the public API does not select on this host: the v1
//! freezer (hybrid hosts prefer v2 `cgroup.freeze`) and best-effort creation.
//! Skip without writable cgroups unless SKILLSANDBOX_TEST_REQUIRE=full.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::cgroup::KillMethod;

const LIMITS: CgroupLimits = CgroupLimits {
    memory_bytes: 64 << 20,
    pids_max: 16,
    cpu_cores: 0.5,
};

fn require_full() -> bool {
    std::env::var("SKILLSANDBOX_TEST_REQUIRE").is_ok_and(|v| v == "full")
}

fn roots_or_skip(label: &str) -> Option<CgroupRoots> {
    let probe = CgroupRoots::discover().and_then(|r| {
        r.create(
            &format!("unit-{}-{label}-probe", std::process::id()),
            &LIMITS,
        )
        .map(|_| r)
    });
    match probe {
        Ok(r) => Some(r),
        Err(e) if !require_full() => {
            eprintln!("SKIP {label}: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn v1_freezer_kills_a_forking_tree() {
    let Some(roots) = roots_or_skip("v1freeze") else {
        return;
    };
    if roots.freezer_v1().is_none() {
        assert!(
            !require_full() || roots.unified().is_some(),
            "no freezer at all"
        );
        eprintln!("SKIP: no v1 freezer on this host");
        return;
    }
    let opts = CreateOptions {
        strict: true,
        prefer_v1_freezer: true,
    };
    let cg = roots
        .create_with(
            &format!("unit-{}-v1freeze", std::process::id()),
            &LIMITS,
            opts,
        )
        .unwrap();
    assert!(
        matches!(cg.freezer, Some(Freezer::V1(_))),
        "{:?}",
        cg.freezer
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read go; (setsid sh -c 'sleep 1000' &); for i in 1 2 3; do (while :; do sleep 0.01 & wait; done) & done; sleep 1000")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add_pid(i32::try_from(child.id()).unwrap()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let start = Instant::now();
    while cg.pids().len() < 6 && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(cg.pids().len() >= 6, "{:?}", cg.pids());
    cg.kill_all_with(KillMethod::Freeze).unwrap();
    child.wait().unwrap();
    assert!(cg.pids().is_empty());
    let paths = cg.paths().to_vec();
    cg.destroy().unwrap();
    assert!(paths.iter().all(|p| !p.exists()), "{paths:?}");
}

#[test]
fn best_effort_reports_a_missing_controller_instead_of_failing() {
    let Some(mut roots) = roots_or_skip("besteffort") else {
        return;
    };
    roots.cpu = Err("not here (test)".to_string());
    let name = format!("unit-{}-besteffort", std::process::id());
    let strict = roots.create(&name, &LIMITS);
    assert!(
        matches!(
            strict,
            Err(CgroupError::ControllerUnavailable {
                controller: "cpu",
                ..
            })
        ),
        "{strict:?}"
    );
    drop(strict);
    let cg = roots.create_best_effort(&name, &LIMITS).unwrap();
    let layers = cg.enforcement();
    assert_eq!(layers.len(), 3);
    assert!(layers[0].1 && layers[1].1, "{layers:?}");
    assert!(
        !layers[2].1 && layers[2].2.contains("not here (test)"),
        "{layers:?}"
    );
    let paths = cg.paths().to_vec();
    drop(cg);
    assert!(paths.iter().all(|p| !p.exists()), "{paths:?}");
}

#[test]
fn name_validation() {
    for ok in ["a", "weather-lookup.1_2", &"x".repeat(64)] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".", "..", ".x", "a/b", "a b", "ä", &"x".repeat(65)] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}
