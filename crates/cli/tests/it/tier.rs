//! The process tier and tier selection, end to end through the real binary
//! (docs/tiers.md). Every process-tier test forces `--tier process` (or
//! `isolation.tier: process`) and runs an attack that must fail; exit 0 of an attack
//! or a secret in the output is a breach.
//!
//! Directories handed to the sandbox are made world-searchable: when the tests run as
//! root (CI), the process-tier skill runs as uid 65534, and the point of each test is
//! that Landlock — not file permissions — is what stops it.
//!
//! Needs Landlock (the process tier refuses to run without it). Missing: skip with a
//! message, or fail under `SKILLSANDBOX_TEST_REQUIRE=full`.

// Test helpers panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn doctor() -> Value {
    let out = skillsandbox().args(["doctor", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether the process tier can run here; otherwise skip (or fail under CI).
fn process_tier_available() -> bool {
    let abi = doctor()["landlock"]["abi"].as_i64().unwrap_or(0);
    if abi >= 4 {
        return true;
    }
    let msg = format!("the process tier needs Landlock ABI >= 4; this host has {abi}");
    assert!(!require_full(), "{msg}");
    eprintln!("skipping: {msg}");
    false
}

/// Whether runs must pass `--allow-degraded` because this user cannot create cgroups.
fn needs_degraded_for_cgroups() -> bool {
    doctor()["cgroup"]["controllers"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["writable"] != Value::Bool(true)))
}

/// A temp directory the sandbox user may search (see the module docs).
fn lab() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tier-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn real(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

struct Run {
    code: i32,
    result: Value,
    trace: Value,
    stderr: String,
}

/// `skillsandbox exec --tier process --json` with `flags`, recording into `dir`.
fn exec_process(dir: &Path, flags: &[&str], cmd: &[&str], env: &[(&str, &str)]) -> Run {
    let trace = dir.join(format!(
        "trace-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut c = skillsandbox();
    c.args(["exec", "--tier", "process", "--json", "--trace-output"])
        .arg(&trace)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .args(flags);
    if needs_degraded_for_cgroups() {
        c.arg("--allow-degraded");
    }
    c.arg("--").args(cmd);
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c.output().unwrap(), &trace)
}

fn finish(out: Output, trace: &Path) -> Run {
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let trace = std::fs::read(trace)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        result,
        trace,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stdout(r: &Run) -> String {
    r.result["stdout"].as_str().unwrap_or_default().to_string()
}

fn layer<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["enforcement"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["layer"] == name))
        .unwrap_or(&Value::Null)
}

fn assert_namespaces_unavailable(trace: &Value) {
    for ns in ["user", "pid", "mount", "ipc", "uts", "cgroup"] {
        let l = layer(trace, &format!("{ns}_namespace"));
        assert_eq!(l["status"], "unavailable", "{ns}: {l}");
        assert!(
            l["detail"].as_str().unwrap().starts_with("process tier"),
            "{l}"
        );
    }
}

#[test]
fn process_tier_confines_the_filesystem() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let root = real(lab.path());
    let secrets = root.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("id_rsa"), "TOPSECRET-4711\n").unwrap();
    for (p, m) in [(&secrets, 0o755), (&secrets.join("id_rsa"), 0o644)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "readable-ok\n").unwrap();
    std::fs::set_permissions(data.join("in.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let outside = root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = root.join("out");

    let script = format!(
        "cat {s}/id_rsa; echo rc_secret=$?; cat {d}/in.txt; \
         echo evil > {o}/evil; echo rc_outside=$?; \
         echo data > {w}/result; echo rc_write=$?; \
         cat /etc/shadow; echo rc_shadow=$?; ls /root >/dev/null; echo rc_root=$?; \
         echo $HOME > $HOME/home-ok && cat $HOME/home-ok",
        s = secrets.display(),
        d = data.display(),
        o = outside.display(),
        w = out.display()
    );
    let r = exec_process(
        &root,
        &[
            "--read",
            data.to_str().unwrap(),
            "--write",
            out.to_str().unwrap(),
        ],
        &["sh", "-c", &script],
        &[],
    );
    let so = stdout(&r);
    assert_eq!(r.code, 0, "{so}\n{}\n{}", r.stderr, r.result);
    assert!(!so.contains("TOPSECRET"), "secret leaked: {so}");
    assert!(!r.result.to_string().contains("TOPSECRET"));
    for bad in ["rc_secret=0", "rc_outside=0", "rc_shadow=0", "rc_root=0"] {
        assert!(!so.contains(bad), "{bad}: {so}");
    }
    assert!(so.contains("readable-ok"), "{so}");
    assert!(so.contains("rc_write=0"), "{so}");
    assert!(!outside.join("evil").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("result")).unwrap(),
        "data\n"
    );
    // HOME is the private scratch directory, removed after the run.
    let home = so.lines().last().unwrap().trim().to_string();
    assert!(home.contains("skillsandbox-"), "{so}");
    assert!(!Path::new(&home).exists(), "scratch {home} left behind");

    assert_eq!(r.trace["tier"], "process");
    assert_eq!(layer(&r.trace, "landlock")["status"], "enforced");
    assert_namespaces_unavailable(&r.trace);
}

#[test]
fn process_tier_refuses_tcp_and_udp_without_egress() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let (tp, up) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let script = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{tp}) && echo TCP-CONNECTED; \
         (echo leak >/dev/udp/127.0.0.1/{up}) && echo UDP-SENT; \
         python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(\"BOUND\")'; \
         python3 -c 'import socket; s=socket.socket(); s.listen(); print(\"LISTENING\")'; \
         python3 -c 'import socket; socket.socket(socket.AF_UNIX); print(\"UNIX\")'; \
         echo done"
    );
    let r = exec_process(&real(lab.path()), &[], &["bash", "-c", &script], &[]);
    let so = stdout(&r);
    assert_eq!(r.code, 0, "{so}\n{}", r.stderr);
    assert!(so.contains("done"), "{so}");
    for breach in ["TCP-CONNECTED", "UDP-SENT", "BOUND", "LISTENING", "UNIX"] {
        assert!(!so.contains(breach), "{breach}: {so}");
    }
    assert!(
        tcp.accept().is_err(),
        "a connection reached the host listener"
    );
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a datagram reached the host"
    );
    let net = layer(&r.trace, "network");
    assert_eq!(net["status"], "enforced", "{net}");
}

#[test]
fn process_tier_seccomp_env_and_rlimits() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let script = "env; echo nofile=$(ulimit -n); unshare -U true; echo rc_unshare=$?; \
        python3 -c 'import ctypes; l=ctypes.CDLL(None, use_errno=True); \
        print(\"ptrace\", l.ptrace(0, 0, 0, 0), ctypes.get_errno())'";
    let r = exec_process(
        &real(lab.path()),
        &["--env", "LANG"],
        &["sh", "-c", script],
        &[
            ("AWS_SECRET_ACCESS_KEY", "zz-secret-zz"),
            ("LANG", "C.UTF-8"),
        ],
    );
    let so = stdout(&r);
    assert_eq!(r.code, 0, "{so}\n{}", r.stderr);
    assert!(!so.contains("zz-secret-zz"), "{so}");
    assert!(!so.contains("AWS_SECRET"), "{so}");
    assert!(so.contains("LANG=C.UTF-8"), "{so}");
    assert!(so.contains("nofile=256"), "{so}");
    assert!(!so.contains("rc_unshare=0"), "{so}");
    assert!(
        so.contains("ptrace -1 1"),
        "ptrace not refused with EPERM: {so}"
    );
    let seen: Vec<String> = r.trace["policy_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    for sc in ["unshare(", "ptrace("] {
        assert!(
            seen.iter().any(|d| d.starts_with(sc)),
            "{sc} not recorded: {seen:?}"
        );
    }
    assert_eq!(layer(&r.trace, "seccomp")["status"], "enforced");
    assert_eq!(layer(&r.trace, "environment")["status"], "enforced");
}

#[test]
fn process_tier_timeout_kills_the_whole_tree() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let root = real(lab.path());
    let w = root.join("pids");
    let script = format!(
        "(setsid sh -c 'echo $$ > {w}/daemon; exec sleep 300' &); sleep 1; sleep 300",
        w = w.display()
    );
    let start = Instant::now();
    let r = exec_process(
        &root,
        &["--timeout", "2", "--write", w.to_str().unwrap()],
        &["sh", "-c", &script],
        &[],
    );
    assert_eq!(r.code, 124, "{}\n{}", r.stderr, r.result);
    assert!(start.elapsed() < Duration::from_secs(30));
    let pid = std::fs::read_to_string(w.join("daemon")).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("sleep"));
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "detached daemon {pid} survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(r.trace["termination"], "timeout");
}

fn write_skill(dir: &Path, egress: &str) -> PathBuf {
    let skill = dir.join("skill");
    std::fs::create_dir(&skill).unwrap();
    std::fs::set_permissions(&skill, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manifest = format!(
        "skill:\n  name: tiertest\n  version: \"0.1.0\"\npermissions:\n  network:\n    egress:\n{egress}\
         isolation:\n  tier: process\nentrypoint:\n  command: sh\n  args: [\"-c\", \"echo ran\"]\n"
    );
    let path = skill.join("skillsandbox.yaml");
    std::fs::write(&path, manifest).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    skill
}

#[test]
fn domain_egress_is_refused_unless_degraded() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let root = real(lab.path());
    let skill = write_skill(
        &root,
        "      - domain: api.example.com\n        ports: [443]\n",
    );
    let run = |extra: &[&str]| {
        let trace = root.join(format!("t{}.json", extra.len()));
        let out = skillsandbox()
            .arg("run")
            .arg(&skill)
            .arg("--trace-output")
            .arg(&trace)
            .arg("--audit-log")
            .arg(root.join("audit.jsonl"))
            .args(extra)
            .output()
            .unwrap();
        finish(out, &trace)
    };
    let refused = run(&[]);
    assert_eq!(refused.code, 125, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("cannot filter by domain (api.example.com)"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--allow-degraded"),
        "{}",
        refused.stderr
    );

    let ran = run(&["--allow-degraded", "--json"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stderr, ran.result);
    assert_eq!(stdout(&ran), "ran\n");
    assert_eq!(ran.trace["tier"], "process");
    let net = layer(&ran.trace, "network");
    assert_eq!(net["status"], "partial", "{net}");
    assert!(
        net["detail"].as_str().unwrap().starts_with(
            "ports [443] reachable on ANY address: the process tier cannot filter by domain"
        ),
        "{net}"
    );
    assert_namespaces_unavailable(&ran.trace);
}

/// Runs the binary where creating a user namespace is impossible: inside a user
/// namespace whose `user.max_user_namespaces` is 0 (the sysctl is per namespace). As
/// root, the namespace is created by uid 65534 so that its root is not host root.
fn without_userns(args: &[&str]) -> Option<Output> {
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "unshare",
        ]);
        c
    } else {
        Command::new("unshare")
    };
    c.args([
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
        "sh",
    ])
    .arg(env!("CARGO_BIN_EXE_skillsandbox"))
    .args(args);
    let out = c.output().ok()?;
    // Could not even build the test environment (no unshare, no userns at all).
    if out.status.code() == Some(1) && out.stdout.is_empty() {
        let e = String::from_utf8_lossy(&out.stderr);
        if e.contains("unshare") || e.contains("setpriv") {
            let msg = format!("cannot create the no-userns environment: {e}");
            assert!(!require_full(), "{msg}");
            eprintln!("skipping: {msg}");
            return None;
        }
    }
    Some(out)
}

#[test]
fn auto_falls_back_to_the_process_tier_without_user_namespaces() {
    if !process_tier_available() {
        return;
    }
    let lab = lab();
    let root = real(lab.path());
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();

    let Some(out) = without_userns(&["doctor", "--json"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["user_namespaces"]["available"], false, "{doc}");
    assert_eq!(doc["user_namespaces"]["max_user_namespaces"], 0);
    assert_eq!(doc["auto"]["tier"], "process", "{doc}");
    assert!(doc["auto"]["reason"]
        .as_str()
        .unwrap()
        .contains("user namespaces unavailable"));

    let trace = root.join("auto.json");
    let audit = root.join("audit.jsonl");
    let (t, a) = (trace.to_str().unwrap(), audit.to_str().unwrap());
    // Inside, cgroups belong to the host: degraded is needed for the limits.
    let out = without_userns(&[
        "exec",
        "--allow-degraded",
        "--trace-output",
        t,
        "--audit-log",
        a,
        "--",
        "sh",
        "-c",
        "echo fallback-ran",
    ])
    .unwrap();
    let r = finish(out, &trace);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.trace["tier"], "process", "{}", r.trace);
    let tier_event = r.trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "tier")
        .unwrap();
    assert!(
        tier_event["detail"]
            .as_str()
            .unwrap()
            .contains("process tier: user namespaces unavailable"),
        "{tier_event}"
    );
    assert_namespaces_unavailable(&r.trace);

    // Asking for the container tier there fails closed, with the hint.
    let out = without_userns(&[
        "exec",
        "--tier",
        "container",
        "--audit-log",
        a,
        "--",
        "true",
    ])
    .unwrap();
    let mut err = String::new();
    (&out.stderr[..]).read_to_string(&mut err).unwrap();
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("needs user namespaces"), "{err}");
    assert!(err.contains("--tier process"), "{err}");
}

#[test]
fn doctor_reports_kvm_and_the_pvm_limit() {
    let kvm = &doctor()["kvm"];
    let detail = kvm["detail"].as_str().unwrap_or_default().to_string();
    let available = kvm["available"].as_bool().unwrap();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        assert!(!available, "{detail}");
        assert!(detail.starts_with("/dev/kvm: "), "{detail}");
        return;
    }
    assert!(detail.contains("API version 12"), "{detail}");
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // A PVM host cannot boot a packaged guest kernel: never reported as usable.
        assert!(!available, "{detail}");
        assert!(detail.contains("kvm_pvm"), "{detail}");
    } else {
        assert!(available, "{detail}");
    }
}
