//! `check --compare bwrap`: the same probe runs under a hand-written bubblewrap
//! configuration (every namespace, read-only system dirs, the declared paths, a fresh
//! /proc and /dev), so users can see what our extra layers (seccomp, Landlock,
//! cgroup limits, rlimits, env scrubbing, egress filtering) buy.
//!
//! bubblewrap enforces no limits and no wall clock: the check itself kills a run that
//! outlives its deadline, and says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skillsandbox_manifest::Policy;
use skillsandbox_sandbox::plan::{ETC_PASSTHROUGH, SANDBOX_HOME, SYSTEM_DIRS};

use super::catalog::Run;
use super::params::PROBE_INSIDE;
use super::runner::{self, ReportItem, RunEnd, RunnerError};
use super::workspace::Workspace;

pub const BWRAP: &str = "/usr/bin/bwrap";

pub fn available() -> bool {
    Path::new(BWRAP).is_file()
}

/// The bwrap arguments (before `--`) for `policy`, with the probe and the check's
/// write directory bound. Plain data, so it can be shown and tested.
pub fn bwrap_args(policy: &Policy, exe: &Path, write_dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["--unshare-all", "--die-with-parent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    for dir in SYSTEM_DIRS {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(to) = std::fs::read_link(dir) {
                    push(&["--symlink", &to.to_string_lossy(), dir]);
                }
            }
            Ok(m) if m.is_dir() => push(&["--ro-bind", dir, dir]),
            _ => {}
        }
    }
    for e in ETC_PASSTHROUGH {
        push(&["--ro-bind-try", e, e]);
    }
    push(&[
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        SANDBOX_HOME,
    ]);
    let exe = exe.to_string_lossy();
    push(&["--ro-bind", &exe, PROBE_INSIDE]);
    let fs = &policy.filesystem;
    for r in fs.read.iter().filter(|r| !fs.write.contains(r)) {
        let r = r.to_string_lossy();
        push(&["--ro-bind-try", &r, &r]);
    }
    for w in fs.write.iter().map(PathBuf::as_path).chain([write_dir]) {
        let w = w.to_string_lossy();
        push(&["--bind-try", &w, &w]);
    }
    if let Some(dir) = &policy.skill_dir {
        push(&["--ro-bind", &dir.to_string_lossy(), "/skill"]);
    }
    push(&["--chdir", "/", "--setenv", "HOME", SANDBOX_HOME]);
    a
}

/// Run `argv` with a deadline; the check kills it when the deadline passes.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Result<(String, RunEnd), String> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {BWRAP}: {e}"))?;
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let mut err = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut killed = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() >= deadline => {
                let _ = child.kill();
                killed = true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for bwrap: {e}")),
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
    let end = RunEnd {
        exit_code: code,
        // bwrap as PID 1 reports a signalled child as 128+signal.
        signal: status.signal().or((code > 128).then_some(code - 128)),
        duration_ms: started.elapsed().as_millis() as u64,
        summary: if killed {
            format!(
                "killed by the check after {} s: bwrap has no wall clock",
                deadline.as_secs()
            )
        } else {
            format!("exit {code}")
        },
        stderr_tail: stderr
            .lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect(),
        ..RunEnd::default()
    };
    Ok((stdout, end))
}

/// The battery under bwrap, in catalog order.
pub fn run_battery(
    policy: &Policy,
    ws: &Workspace,
    exe: &Path,
) -> Result<Vec<ReportItem>, RunnerError> {
    let small = runner::limits_for(policy);
    let mut results = Vec::new();
    for r in Run::ALL {
        if r == Run::Requests {
            // bwrap has no request-level egress, and --unshare-all no network at all.
            for spec in super::catalog::items_of(r) {
                results.push(super::catalog::ItemResult {
                    id: spec.id.to_string(),
                    status: super::catalog::Status::NotApplicable,
                    detail: "bwrap --unshare-all has no network: no request leaves, and no per-request rules or secrets exist".into(),
                });
            }
            continue;
        }
        if r == Run::Race {
            for spec in super::catalog::items_of(r) {
                results.push(super::catalog::ItemResult {
                    id: spec.id.to_string(),
                    status: super::catalog::Status::NotApplicable,
                    detail: "not raced under bwrap: the race drives the check's own launches"
                        .into(),
                });
            }
            continue;
        }
        let params = ws.params(policy, small.clone());
        let mut cmd = Command::new(BWRAP);
        cmd.args(bwrap_args(policy, exe, &ws.write_dir))
            .arg("--")
            .arg(PROBE_INSIDE)
            .args(runner::probe_args(r, &params)?);
        let deadline = Duration::from_secs(if r == Run::WallClock {
            small.wall_clock_s + 1
        } else {
            60
        });
        let (stdout, mut end) =
            run_with_deadline(cmd, deadline).map_err(|message| RunnerError::Setup {
                run: r.name(),
                message,
                hint: Some("bubblewrap could not run here; drop --compare bwrap".into()),
                exit_code: 125,
            })?;
        end.run = r.name().to_string();
        results.extend(runner::judge_run(
            r,
            runner::parse_results(&stdout),
            &end,
            ws,
            &params,
        ));
    }
    Ok(runner::order(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_bind_the_probe_and_write_dir_and_unshare_everything() {
        let policy = skillsandbox_runtime::adhoc_policy(
            None,
            &["x".into()],
            &Default::default(),
            Path::new("/"),
        );
        let a = bwrap_args(&policy, Path::new("/opt/sk"), Path::new("/tmp/w"));
        let joined = a.join(" ");
        assert!(joined.starts_with("--unshare-all --die-with-parent"));
        assert!(joined.contains(&format!("--ro-bind /opt/sk {PROBE_INSIDE}")));
        assert!(joined.contains("--bind-try /tmp/w /tmp/w"));
        assert!(joined.contains("--proc /proc --dev /dev"));
    }
}
