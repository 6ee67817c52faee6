//! Escape tests, lifetime: a double-forked `setsid` daemon does not outlive its run;
//! a SIGKILLed supervisor takes the sandbox with it (and its empty cgroup is reaped
//! by a later run); many runs of every kind leave no processes, cgroups, mounts,
//! temp files or supervisor fds behind. Harness: `escape.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::escape::{
    cgroup_dirs_named, cgroup_name_for, host_mounts, host_pids_with, unique, wait_until, Lab,
    Outcome,
};

/// python payload: double fork + setsid, the grandchild sleeps with `marker` in its
/// argv; the skill exits 0 as soon as the daemon runs.
fn daemon_code() -> &'static str {
    r#"
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        os.write(w, b"up")
        os.execvp("python3", ["python3", "-c", "import time; time.sleep(1000)", sys.argv[1]])
    os._exit(0)
os.close(w)
print("DAEMON=" + os.read(r, 2).decode(), flush=True)
"#
}

#[test]
fn a_double_forked_setsid_daemon_does_not_outlive_the_run() {
    let Some(lab) = Lab::new() else { return };
    let marker = unique("DAEMON");
    let o = lab.exec(&[], &["python3", "-c", daemon_code(), &marker]);
    assert!(
        o.stdout.contains("DAEMON=up"),
        "the daemon never started:\n{}",
        o.dump()
    );
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    // The supervisor kills the cgroup before it returns: nothing may be left now.
    assert_eq!(
        host_pids_with(&marker, &[]),
        Vec::<u32>::new(),
        "BREACH: the daemon survived the run"
    );
}

/// The `skillsandbox-*` cgroup directories a host process is in.
fn sandbox_cgroups_of(pid: u32) -> BTreeSet<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|n| n.starts_with("skillsandbox-"))
        .map(str::to_string)
        .collect()
}

/// A supervisor running `python3 -c CODE MARKER` confined, in the background.
fn spawn_python(lab: &Lab, code: &str, marker: &str) -> std::process::Child {
    spawn_python_on(lab, "auto", code, marker)
}

fn spawn_python_on(lab: &Lab, tier: &str, code: &str, marker: &str) -> std::process::Child {
    lab.cmd()
        .args([
            "exec", "--json", "--tier", tier, "--", "python3", "-c", code, marker,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn supervisor_sigkill_takes_the_sandbox_down() {
    supervisor_sigkill_takes_everything_down("container");
}

/// No PID namespace ends the skill's descendants on the process tier: its stage
/// notices the supervisor's death (a pidfd, not a parent-death SIGKILL that would end
/// it first) and kills them, detached ones too.
#[test]
fn supervisor_sigkill_takes_a_process_tier_sandbox_down() {
    supervisor_sigkill_takes_everything_down("process");
}

fn supervisor_sigkill_takes_everything_down(tier: &str) {
    let Some(lab) = Lab::new() else { return };
    let marker = unique("ORPHAN");
    let mounts_before = host_mounts();
    let mut sup = spawn_python_on(
        &lab,
        tier,
        "import os, time\nif os.fork() == 0: os.setsid()\ntime.sleep(1000)",
        &marker,
    );
    let sup_pid = sup.id();
    let mut inside = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            inside = host_pids_with(&marker, &[sup_pid]);
            inside.len() >= 2
        }),
        "the sandboxed processes never showed up"
    );
    let cgroups: BTreeSet<String> = inside.iter().flat_map(|p| sandbox_cgroups_of(*p)).collect();
    sup.kill().unwrap();
    sup.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || host_pids_with(&marker, &[])
            .is_empty()),
        "BREACH: sandbox processes {:?} survived their supervisor's SIGKILL",
        host_pids_with(&marker, &[])
    );
    assert_eq!(host_mounts(), mounts_before, "the host mount table changed");
    // The dead supervisor could not remove its cgroup directories: they are left
    // empty, and a later run reaps `skillsandbox-*` leftovers older than a minute.
    // Age them instead of waiting.
    let left = cgroup_dirs_named(&cgroups);
    for dir in &left {
        // The orphaned stage is SIGKILLed with its supervisor but stays listed until
        // the host's init has reaped it: give that a moment, then insist.
        let procs_of = || std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        wait_until(Duration::from_secs(5), || procs_of().trim().is_empty());
        let procs = procs_of();
        assert!(
            procs.trim().is_empty(),
            "{} still has processes: {procs}",
            dir.display()
        );
        let old = SystemTime::now() - Duration::from_secs(300);
        let secs = old
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let st = Command::new("touch")
            .arg("-d")
            .arg(format!("@{secs}"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let o = lab.exec(&[], &["true"]);
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(
        cgroup_dirs_named(&cgroups),
        Vec::<std::path::PathBuf>::new(),
        "stale cgroups were not reaped"
    );
}

/// The kinds of run the leak test mixes.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Normal,
    ExitCode,
    Daemon,
    Timeout,
    Oom,
    BadCommand,
    SetupFailure,
}

const MIX: [Kind; 10] = [
    Kind::Normal,
    Kind::Daemon,
    Kind::ExitCode,
    Kind::Timeout,
    Kind::Normal,
    Kind::Oom,
    Kind::BadCommand,
    Kind::SetupFailure,
    Kind::Daemon,
    Kind::Normal,
];

fn one_run(lab: &Lab, kind: Kind, marker: &str, link: &str) -> Outcome {
    let (flags, argv): (Vec<&str>, Vec<&str>) = match kind {
        Kind::Normal => (vec![], vec!["python3", "-c", "print('ok')", marker]),
        Kind::ExitCode => (
            vec![],
            vec!["python3", "-c", "import sys; sys.exit(3)", marker],
        ),
        Kind::Daemon => (vec![], vec!["python3", "-c", daemon_code(), marker]),
        Kind::Timeout => (
            vec!["--timeout", "1"],
            vec![
                "python3",
                "-c",
                "import os, time; os.fork(); time.sleep(30)",
                marker,
            ],
        ),
        Kind::Oom => (
            vec!["--memory", "24"],
            vec![
                "python3",
                "-c",
                "a = []\nwhile True: a.append(bytearray(1 << 20))",
                marker,
            ],
        ),
        Kind::BadCommand => (vec![], vec!["no-such-command-escape-test", marker]),
        Kind::SetupFailure => (
            vec!["--read", link],
            vec!["python3", "-c", "print('never')", marker],
        ),
    };
    lab.exec(&flags, &argv)
}

fn expected_exit(kind: Kind) -> i64 {
    match kind {
        Kind::Normal | Kind::Daemon => 0,
        Kind::ExitCode => 3,
        Kind::Timeout => 124,
        Kind::Oom => 137,
        Kind::BadCommand => 127,
        Kind::SetupFailure => 125,
    }
}

/// Every `__skillsandbox-stage` process must have a skillsandbox parent (its
/// supervisor or its stage); an orphan is a leftover of some run.
fn orphaned_stages() -> Vec<u32> {
    let mut orphans = Vec::new();
    for pid in host_pids_with("__skillsandbox-stage", &[]) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let Some(ppid) = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue; // gone meanwhile
        };
        let parent = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&parent).contains("skillsandbox") {
            orphans.push(pid);
        }
    }
    orphans
}

#[test]
fn many_runs_of_every_kind_leave_nothing_behind() {
    let Some(lab) = Lab::new() else { return };
    let runs: usize = std::env::var("SKILLSANDBOX_LEAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // `bench/soak.sh` and CI's soak step raise both.
    let workers: usize = std::env::var("SKILLSANDBOX_LEAK_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let marker = unique("LEAK");
    let link = lab.path("link");
    std::os::unix::fs::symlink(&lab.home, &link).unwrap();
    let link = link.display().to_string();
    let mounts_before = host_mounts();

    // Two workers by default, like two agents sharing a host.
    let trace_ids: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|w| {
                let (lab, marker, link) = (&lab, &marker, &link);
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for i in (w..runs).step_by(workers) {
                        let kind = MIX[i % MIX.len()];
                        let o = one_run(lab, kind, marker, link);
                        assert_eq!(
                            o.exit_code,
                            expected_exit(kind),
                            "run {i} ({kind:?}):\n{}",
                            o.dump()
                        );
                        ids.push(o.json["trace_id"].as_str().unwrap().to_string());
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(trace_ids.len(), runs);
    // Every run has exactly one trace, and the audit chain holds all of them.
    let unique: BTreeSet<&String> = trace_ids.iter().collect();
    assert_eq!(unique.len(), runs, "a trace id was reused");
    let traces = std::fs::read_dir(lab.path("state/skillsandbox/traces"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(traces, runs, "trace files vs runs");
    let verify = lab.cmd().args(["audit", "verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let records = std::fs::read_to_string(lab.path("state/audit.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(records, runs, "audit records vs runs");

    // Supervisor fds during a run: stdio, the control socket, the output pipes, the
    // cgroup, the seccomp listener, a few for the trace — not dozens.
    let mut sup = spawn_python(&lab, "import time; time.sleep(2)", &marker);
    let sup_pid = sup.id();
    assert!(wait_until(Duration::from_secs(10), || host_pids_with(
        &marker,
        &[sup_pid]
    )
    .len()
        == 1));
    let fds = std::fs::read_dir(format!("/proc/{sup_pid}/fd"))
        .unwrap()
        .count();
    assert!(fds <= 24, "the supervisor holds {fds} fds during a run");
    assert!(sup.wait().unwrap().success());

    assert_eq!(
        host_pids_with(&marker, &[]),
        Vec::<u32>::new(),
        "leftover sandbox processes"
    );
    assert_eq!(
        orphaned_stages(),
        Vec::<u32>::new(),
        "orphaned stage / init processes"
    );
    let names: BTreeSet<String> = trace_ids.iter().map(|t| cgroup_name_for(t)).collect();
    assert_eq!(
        cgroup_dirs_named(&names),
        Vec::<std::path::PathBuf>::new(),
        "leftover cgroups"
    );
    let new_mounts: Vec<String> = host_mounts().difference(&mounts_before).cloned().collect();
    assert_eq!(
        new_mounts,
        Vec::<String>::new(),
        "new mounts in the host mount namespace"
    );
    let tmp_left: Vec<_> = std::fs::read_dir(lab.path("tmpdir"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(tmp_left.is_empty(), "temp files left behind: {tmp_left:?}");
    // Only this test's runs: other tests run at the same time and have their own
    // scratch dirs in /tmp while they run.
    let scratch_names: BTreeSet<String> = trace_ids
        .iter()
        .map(|t| {
            let short: String = t
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(16)
                .collect();
            format!("skillsandbox-{short}")
        })
        .collect();
    let host_tmp: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| scratch_names.contains(&*e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    assert!(
        host_tmp.is_empty(),
        "skillsandbox temp dirs in /tmp: {host_tmp:?}"
    );
}
