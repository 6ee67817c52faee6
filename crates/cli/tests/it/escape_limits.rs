//! Escape tests, resource limits: fork bomb (pids), memory bomb (OOM → 137), /tmp
//! and $HOME fill (ENOSPC at `tmp_size_mb`), file size (RLIMIT_FSIZE → EFBIG /
//! SIGXFSZ), open files (EMFILE), wall clock (124), output flood (capped, marked).
//! Harness: `escape.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::escape::{host_pids_with, skill_dir, unique, Lab};

/// A manifest for `exec --manifest` with these `resources` lines.
fn limits_manifest(lab: &Lab, name: &str, resources: &str) -> PathBuf {
    skill_dir(
        lab,
        name,
        "  env_vars:\n    allow: []",
        resources,
        "true",
        &[],
    )
    .join("skillsandbox.yaml")
}

/// Reads `KEY=value` printed by a payload.
fn value<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
}

#[test]
fn fork_bomb_stops_at_the_pids_limit_and_leaves_nothing() {
    let Some(lab) = Lab::new() else { return };
    let marker = unique("FORKBOMB");
    let code = r#"
import os, sys, time, errno
n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
        n += 1
    print("FORK_ERRNO=none")
except OSError as e:
    print("FORK_ERRNO=" + errno.errorcode[e.errno])
print("FORKS=%d" % n, flush=True)
"#;
    let started = Instant::now();
    let o = lab.exec(
        &["--max-processes", "12"],
        &["python3", "-c", code, &marker],
    );
    assert_eq!(
        value(&o.stdout, "FORK_ERRNO"),
        Some("EAGAIN"),
        "{}",
        o.dump()
    );
    let forks: u32 = value(&o.stdout, "FORKS").unwrap().parse().unwrap();
    assert!(
        forks < 12,
        "{forks} processes forked under a limit of 12\n{}",
        o.dump()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the fork bomb was not contained quickly"
    );
    assert!(
        o.violations()
            .iter()
            .any(|v| v.starts_with("process_limit")),
        "{}",
        o.dump()
    );
    assert_eq!(
        host_pids_with(&marker, &[]),
        Vec::<u32>::new(),
        "forked children outlived the run"
    );
}

#[test]
fn memory_bomb_is_oom_killed_with_137() {
    let Some(lab) = Lab::new() else { return };
    let code = "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n";
    let o = lab.exec(&["--memory", "32"], &["python3", "-c", code]);
    assert_eq!(o.exit_code, 137, "{}", o.dump());
    assert_eq!(o.termination(), "oom", "{}", o.dump());
    assert!(
        o.violations().iter().any(|v| v.starts_with("memory_limit")),
        "{}",
        o.dump()
    );
}

#[test]
fn tmp_and_home_fill_up_at_tmp_size() {
    let Some(lab) = Lab::new() else { return };
    let m = limits_manifest(&lab, "tmpfill", "  tmp_size_mb: 4\n  max_file_size_mb: 64");
    let code = r#"
import errno, sys
for d in ("/tmp", "/home/sandbox"):
    total = 0
    try:
        with open(d + "/fill", "wb") as f:
            while total < 64 << 20:
                f.write(b"\0" * (256 << 10)); f.flush(); total += 256 << 10
        res = "none"
    except OSError as e:
        res = errno.errorcode[e.errno]
    print("%s=%s %d" % (d, res, total), flush=True)
"#;
    let o = lab.exec(
        &["--manifest", &m.display().to_string()],
        &["python3", "-c", code],
    );
    for d in ["/tmp", "/home/sandbox"] {
        let v = value(&o.stdout, d).unwrap_or_else(|| panic!("{d}: no result\n{}", o.dump()));
        let (res, bytes) = v.split_once(' ').unwrap();
        assert_eq!(res, "ENOSPC", "{d}\n{}", o.dump());
        let bytes: u64 = bytes.parse().unwrap();
        assert!(
            bytes <= 4 << 20,
            "{d}: wrote {bytes} bytes into a 4 MiB tmpfs"
        );
    }
}

#[test]
fn file_size_limit_refuses_big_files() {
    let Some(lab) = Lab::new() else { return };
    let m = limits_manifest(&lab, "fsize", "  tmp_size_mb: 16\n  max_file_size_mb: 1");
    // python ignores SIGXFSZ and sees EFBIG; `head` gets the signal (128 + 25).
    let script = r#"python3 -c '
import errno
total = 0
try:
    with open("/tmp/big", "wb", buffering=0) as f:
        while total < 8 << 20:
            total += f.write(b"x" * 65536)
    print("FSIZE=none", total)
except OSError as e:
    print("FSIZE=" + errno.errorcode[e.errno], total)
'
head -c 4000000 /dev/zero > /tmp/big2; echo HEAD_STATUS=$?; echo SIZE2=$(wc -c < /tmp/big2)"#;
    let o = lab.exec(
        &["--manifest", &m.display().to_string()],
        &["sh", "-c", script],
    );
    let fsize = value(&o.stdout, "FSIZE").unwrap_or_else(|| panic!("{}", o.dump()));
    let (res, total) = fsize.split_once(' ').unwrap();
    assert_eq!(res, "EFBIG", "{}", o.dump());
    assert!(total.parse::<u64>().unwrap() <= 1 << 20, "{}", o.dump());
    assert_eq!(value(&o.stdout, "HEAD_STATUS"), Some("153"), "{}", o.dump());
    assert!(value(&o.stdout, "SIZE2").unwrap().parse::<u64>().unwrap() <= 1 << 20);
}

#[test]
fn open_files_stop_at_the_limit() {
    let Some(lab) = Lab::new() else { return };
    let m = limits_manifest(&lab, "nofile", "  max_open_files: 32");
    let code = r#"
import errno, os
fds = []
try:
    while len(fds) < 10000:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print("NOFILE=none", len(fds))
except OSError as e:
    print("NOFILE=" + errno.errorcode[e.errno], len(fds))
"#;
    let o = lab.exec(
        &["--manifest", &m.display().to_string()],
        &["python3", "-c", code],
    );
    let v = value(&o.stdout, "NOFILE").unwrap_or_else(|| panic!("{}", o.dump()));
    let (res, n) = v.split_once(' ').unwrap();
    assert_eq!(res, "EMFILE", "{}", o.dump());
    assert!(n.parse::<u32>().unwrap() <= 32, "{}", o.dump());
}

#[test]
fn wall_clock_kills_the_tree_with_124() {
    let Some(lab) = Lab::new() else { return };
    let marker = unique("TIMEOUT");
    let started = Instant::now();
    let o = lab.exec(
        &["--timeout", "2"],
        &["sh", "-c", "sleep 30 & sleep 30; echo NOT_REACHED", &marker],
    );
    let took = started.elapsed();
    assert_eq!(o.exit_code, 124, "{}", o.dump());
    assert_eq!(o.termination(), "timeout");
    assert!(!o.stdout.contains("NOT_REACHED"));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert!(
        o.violations().iter().any(|v| v.starts_with("timeout")),
        "{}",
        o.dump()
    );
    assert_eq!(
        host_pids_with(&marker, &[]),
        Vec::<u32>::new(),
        "processes outlived the timeout"
    );
}

#[test]
fn output_flood_is_capped_and_marked() {
    let Some(lab) = Lab::new() else { return };
    let m = limits_manifest(&lab, "flood", "  max_output_bytes: 65536");
    let flood = "import sys\nfor _ in range(256):\n    sys.stdout.write('A' * 32768)\n    sys.stderr.write('B' * 32768)\n";
    let started = Instant::now();
    let o = lab.exec(
        &["--manifest", &m.display().to_string()],
        &["python3", "-c", flood],
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(o.json["stdout_truncated"], true);
    assert_eq!(o.json["stderr_truncated"], true);
    assert!(o.stdout.len() <= 65536 && o.stderr.len() <= 65536);
    assert_eq!(
        o.json["usage"]["stdout_bytes"],
        256 * 32768,
        "the total is still counted"
    );
    assert!(
        o.violations().iter().any(|v| v.starts_with("output_limit")),
        "{}",
        o.dump()
    );

    // Streaming (no --json): what reaches our stdout is bounded too, with a marker.
    let out = lab
        .cmd()
        .args([
            "exec",
            "--quiet",
            "--manifest",
            &m.display().to_string(),
            "--",
            "python3",
            "-c",
            flood,
        ])
        .output()
        .unwrap();
    assert!(
        out.stdout.len() <= 65536 + 200,
        "streamed {} bytes",
        out.stdout.len()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("truncated"));
}
