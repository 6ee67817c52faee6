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
    if !is_root() {
        // The whole suite is already running rootless; nothing to switch to.
        assert!(
            !require_full(),
            "CI runs as root so that this test can drop to uid 65534"
        );
        return;
    }
    let r = Rootless::new();
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
