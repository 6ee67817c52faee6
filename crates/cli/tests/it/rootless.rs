//! The container tier without root: the binary run as an ordinary user (uid 65534)
//! still gets every namespace, the fresh root, seccomp and Landlock; only the cgroup
//! limits need a writable cgroup, so they fail closed unless `--allow-degraded`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::common::require_full;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A copy of the binary and a home/state tree that uid 65534 can use.
struct Rootless {
    dir: tempfile::TempDir,
}

impl Rootless {
    /// A lab to drop to uid 65534 in, when running as root. Rootless already there is
    /// nothing to switch to; CI runs as root, where that is a failure.
    fn if_root() -> Option<Self> {
        if !is_root() {
            assert!(
                !require_full(),
                "CI runs as root so that this test can drop to uid 65534"
            );
            return None;
        }
        Some(Self::new())
    }

    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sksb-rootless-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("skillsandbox");
        std::fs::copy(env!("CARGO_BIN_EXE_skillsandbox"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["home", "state", "out"] {
            let p = dir.path().join(d);
            std::fs::create_dir(&p).unwrap();
            chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        Rootless { dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(self.path("skillsandbox"));
        c.uid(NOBODY)
            .gid(NOBODY)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("SKILLSANDBOX_AUDIT_LOG", self.path("state/audit.jsonl"))
            .env("ROOTLESS_SECRET", "SKSB-ROOTLESS-SECRET");
        c
    }
}

fn owner(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().uid()
}

#[test]
fn an_ordinary_user_gets_the_container_tier_and_fails_closed_on_cgroups() {
    let Some(r) = Rootless::if_root() else {
        return;
    };
    let out_dir = r.path("out");
    let script = format!(
        "cat /proc/self/uid_map; echo written > {out}/f; cat /etc/shadow 2>&1; \
         echo \"secret=[$ROOTLESS_SECRET]\"; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
        out = out_dir.display()
    );

    // Without a writable cgroup the limits cannot be applied: refused, with the way out.
    let refused = r
        .cmd()
        .args(["exec", "--write"])
        .arg(&out_dir)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(125), "{text}");
    assert!(text.contains("--allow-degraded"), "{text}");
    assert!(
        !out_dir.join("f").exists(),
        "the skill ran although setup was refused"
    );

    // Opting into less: everything but the cgroup is still enforced, and the trace says so.
    let ran = r
        .cmd()
        .args(["exec", "--json", "--allow-degraded", "--write"])
        .arg(&out_dir)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&ran.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&ran.stderr)));
    let stdout = json["stdout"].as_str().unwrap_or_default();
    assert_eq!(json["exit_code"], 0, "{json:#}");
    let map: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", "65534", "1"], "uid map: {stdout}");
    assert!(stdout.contains("secret=[]"), "{stdout}");
    assert!(!stdout.contains("root:"), "/etc/shadow leaked: {stdout}");
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert!(stdout.contains("Seccomp:\t2"), "{stdout}");
    assert_eq!(owner(&out_dir.join("f")), NOBODY, "written as the invoker");

    let layers = json["enforcement"].as_array().unwrap();
    let status = |name: &str| {
        layers
            .iter()
            .find(|l| l["layer"] == name)
            .map(|l| l["status"].as_str().unwrap_or("").to_string())
    };
    for ns in [
        "user_namespace",
        "mount_namespace",
        "pid_namespace",
        "network",
    ] {
        assert_eq!(status(ns).as_deref(), Some("enforced"), "{ns}: {json:#}");
    }
    assert_eq!(status("seccomp").as_deref(), Some("enforced"));
    assert_eq!(
        status("cgroup_memory").as_deref(),
        Some("unavailable"),
        "{json:#}"
    );
}

/// The process tier without a cgroup: at the deadline the supervisor kills what the
/// skill started, not only the skill. Before, the stage (the children's subreaper)
/// was killed first and the skill's children — a background job, a `setsid` daemon —
/// kept running past the wall clock and kept the run waiting on its output pipes.
#[test]
fn the_process_tier_without_a_cgroup_kills_the_skills_children_at_the_deadline() {
    let Some(r) = Rootless::if_root() else {
        return;
    };
    // A unique duration marks the processes: `sleep` takes a fraction.
    let marker = format!("300.{}", std::process::id());
    let script = format!("sleep {marker} & setsid sh -c 'sleep {marker} &'; sleep {marker}");
    let started = std::time::Instant::now();
    let mut child = r
        .cmd()
        .args([
            "exec",
            "--json",
            "--tier",
            "process",
            "--allow-degraded",
            "--timeout",
            "2",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Never wait forever: a hang is the failure.
    let mut ended = None;
    while started.elapsed() < std::time::Duration::from_secs(20) {
        if let Some(st) = child.try_wait().unwrap() {
            ended = Some(st);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let survivors = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            })
            .collect()
    };
    let left = survivors();
    for pid in &left {
        // SAFETY: kill takes plain integers; these are this test's own processes.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        ended.is_some(),
        "the run did not end by the wall clock ({secs:.1} s)"
    );
    assert!(left.is_empty(), "survived the run: pids {left:?}");
    let out = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 124, "{json:#}");
    assert_eq!(json["termination"], "timeout", "{json:#}");
    assert!(secs < 10.0, "took {secs:.1} s for a 2 s wall clock");
}
