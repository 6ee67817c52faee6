#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use skillsandbox_manifest::ResolveEnv;
use skillsandbox_sandbox::seccomp::{Access, AccessKind};

use super::*;

fn skill() -> (tempfile::TempDir, LoadedSkill) {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("scripts")).unwrap();
    std::fs::write(
        t.path().join("SKILL.md"),
        "---\nname: weather-now\ndescription: Current weather.\n---\n",
    )
    .unwrap();
    std::fs::write(t.path().join("scripts/weather.py"), "print(1)\n").unwrap();
    let env = ResolveEnv {
        home: PathBuf::from("/home/u"),
    };
    let s = crate::load(t.path(), &env, None).unwrap();
    (t, s)
}

fn acc(kind: AccessKind, syscall: &str, target: &str) -> Access {
    Access {
        pid: 7,
        kind,
        syscall: syscall.into(),
        target: target.into(),
        program: Some("/usr/bin/python3.11".into()),
        script: Some("scripts/weather.py".into()),
    }
}

fn run(accesses: Vec<Access>) -> RunObservation {
    RunObservation {
        args: vec!["Paris".into()],
        accesses,
        exit_code: 0,
        duration_ms: 1200,
        memory_peak_bytes: Some(20 * 1024 * 1024),
        pids_peak: Some(3),
        dns: vec![
            ("api.weather.example".into(), vec!["198.18.0.1".into()]),
            ("paste.example-exfil.net".into(), vec!["198.18.0.2".into()]),
            ("unused.example".into(), vec!["198.18.0.3".into()]),
        ],
    }
}

fn observed() -> Vec<Access> {
    use AccessKind::*;
    vec![
        acc(Exec, "execve", "/usr/bin/python3.11"),
        acc(Read, "openat", "/usr/lib/python3.11/os.py"),
        acc(Read, "openat", "/etc/ssl/certs/ca-certificates.crt"),
        acc(Read, "openat", "/skill/scripts/weather.py"),
        acc(Read, "openat", "/data/in/a.csv"),
        acc(Read, "openat", "/data/in/b.csv"),
        acc(Read, "openat", "/data/in/c.csv"),
        acc(Read, "openat", "/srv/one.txt"),
        acc(Read, "openat", "/srv/absent"),
        acc(Write, "openat", "/tmp/out.txt"),
        acc(Read, "openat", "/home/sandbox/.ssh/id_rsa"),
        acc(Read, "openat", "/root/.aws/credentials"),
        acc(Write, "openat", "/home/u/report.txt"),
        acc(Connect, "connect", "192.0.2.53:53"),
        acc(Connect, "connect", "198.18.0.1:443"),
        acc(Connect, "connect", "198.18.0.2:443"),
        acc(Connect, "connect", "203.0.113.7:8443"),
    ]
}

#[test]
fn grants_what_was_used_and_refuses_what_is_dangerous() {
    let (_t, s) = skill();
    let l = learn(&s, &[run(observed())], &|p| p != "/srv/absent");
    let read: Vec<&str> = l.read.keys().map(String::as_str).collect();
    assert_eq!(read, vec!["/data/in", "/srv/one.txt"]);
    assert!(l.write.is_empty());
    assert!(l.unneeded.contains("/srv/absent"));
    assert_eq!(
        l.domains.keys().collect::<Vec<_>>(),
        vec!["api.weather.example"]
    );
    assert_eq!(
        l.resolved_only.iter().collect::<Vec<_>>(),
        vec!["unused.example"]
    );
    let refused: Vec<&str> = l.refused.iter().map(|r| r.what.as_str()).collect();
    assert_eq!(
        refused,
        vec![
            "read /home/sandbox/.ssh/id_rsa",
            "read /root/.aws/credentials",
            "write /home/u/report.txt",
            "connect paste.example-exfil.net:443",
            "connect 203.0.113.7:8443",
        ]
    );
    assert_eq!(
        l.refused[0].evidence,
        vec!["scripts/weather.py (openat)".to_string()]
    );
    assert!(l.system.contains_key("/usr/lib/python3.11"));
    assert!(l.system.contains_key("/usr/bin/python3.11"));
}

#[test]
fn the_proposal_is_a_valid_manifest_with_comments_and_no_dangerous_grant() {
    let (t, s) = skill();
    let p = propose(&s, &[run(observed())], "2026-12-06T10:00:00Z", &|p| {
        p != "/srv/absent"
    });
    assert!(p.yaml.starts_with(LEARNED_HEADER), "{}", p.yaml);
    std::fs::write(t.path().join("skillsandbox.yaml"), &p.yaml).unwrap();
    let env = ResolveEnv {
        home: PathBuf::from("/home/u"),
    };
    let again = crate::load(t.path(), &env, None);
    assert!(again.is_ok(), "{:?}\n{}", again.err(), p.yaml);
    let again = again.unwrap();
    assert_eq!(again.policy.filesystem.read.len(), 2);
    assert_eq!(again.policy.network.egress.len(), 1);
    assert_eq!(again.policy.entrypoint, s.policy.entrypoint);
    assert!(p.yaml.contains(
        "      - domain: \"api.weather.example\"\n        ports: [443]   # connected by scripts/weather.py"
    ));
    assert!(p
        .yaml
        .contains("      - \"/data/in\"   # read by scripts/weather.py"));
    assert!(p.yaml.contains("memory_mb: 64   # peak 20 MiB observed"));
    assert!(p.yaml.contains("max_runtime_seconds: 10"));
    // Dangerous things appear only in comments.
    for line in p.yaml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(!line.contains("paste.example-exfil.net"), "{line}");
        assert!(!line.contains(".ssh"), "{line}");
        assert!(!line.contains("203.0.113.7"), "{line}");
    }
    assert!(p
        .yaml
        .contains("#   read /home/sandbox/.ssh/id_rsa: credential path (SSH private key)"));
}

#[test]
fn files_in_a_home_are_never_collapsed_into_the_home() {
    let (_t, s) = skill();
    let reads = ["a", "b", "c"]
        .iter()
        .map(|f| acc(AccessKind::Read, "openat", &format!("/home/u/{f}.txt")))
        .chain(
            ["a", "b", "c"]
                .iter()
                .map(|f| acc(AccessKind::Read, "openat", &format!("/root/notes/{f}.md"))),
        )
        .collect();
    let l = learn(&s, &[run(reads)], &|_| true);
    let read: Vec<&str> = l.read.keys().map(String::as_str).collect();
    assert_eq!(read.len(), 6, "{read:?}");
    let p = propose(
        &s,
        &[run(vec![acc(AccessKind::Read, "openat", "/home/u/a.txt")])],
        "t",
        &|_| true,
    );
    assert!(
        p.yaml
            .contains("\"/home/u/a.txt\"   # read by scripts/weather.py (in a home directory"),
        "{}",
        p.yaml
    );
}

#[test]
fn runs_merge() {
    let (_t, s) = skill();
    let a = run(vec![acc(AccessKind::Read, "openat", "/srv/one.txt")]);
    let mut b = run(vec![acc(AccessKind::Read, "openat", "/srv/two.txt")]);
    b.duration_ms = 9000;
    let l = learn(&s, &[a, b], &|_| true);
    assert_eq!(l.read.len(), 2);
    assert_eq!(l.runs, 2);
    assert_eq!(l.longest_run_ms, 9000);
}
