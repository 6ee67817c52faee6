//! Escape-test harness: every attack in `escape_*.rs` is a small payload (a python
//! script or a C program from `tests/payloads/`) run through the real binary with
//! `skillsandbox exec --json`, with host secrets planted where a credential stealer
//! would look. A payload that succeeds fails its test; each payload prints one
//! marker line per attempt and the tests assert on those markers (errno names), on
//! the secret never showing up, and on the host state afterwards.
//!
//! The list of attacks, the expected refusal and the layer that stops each one is
//! `docs/escape-tests.md`.
//!
//! Kernel features: when the sandbox cannot start at all on this host (no user
//! namespaces, no cgroups), the tests skip with a message, except under
//! `SKILLSANDBOX_TEST_REQUIRE=full`, where that is a failure.

// Test helpers panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

/// `tests/payloads/` of the repository (canonical: declared paths may not be links).
pub fn payload_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/payloads")
        .canonicalize()
        .expect("tests/payloads exists")
}

/// The python payload, as the sandbox sees it (its directory is granted read-only).
pub fn ops_py() -> String {
    payload_dir().join("ops.py").display().to_string()
}

/// `tests/payloads/probe.c`, compiled once per test run with the host gcc into a
/// directory the tests grant read-only. Returns the directory.
pub fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("escape-payloads");
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let tmp = dir.join(format!("probe.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(payload_dir().join("probe.c"))
            .output()
            .expect("gcc runs (the escape tests compile their C payloads)");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, dir.join("probe")).unwrap();
        dir
    })
}

pub fn probe() -> String {
    probe_dir().join("probe").display().to_string()
}

/// Whether the sandbox can run here at all (checked once). Skips with a message, or
/// panics under `SKILLSANDBOX_TEST_REQUIRE=full`.
pub fn sandbox_available() -> bool {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    let res = OK.get_or_init(|| {
        let lab = Lab::bare();
        let o = lab.exec(&[], &["true"]);
        if o.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "exit {}: {} {}",
                o.exit_code, o.json["error"], o.json["hint"]
            ))
        }
    });
    match res {
        Ok(()) => true,
        Err(e) if require_full() => {
            panic!("SKILLSANDBOX_TEST_REQUIRE=full: the sandbox cannot run here: {e}")
        }
        Err(e) => {
            eprintln!("skipping escape test: the sandbox cannot run on this host: {e}");
            false
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A string no other test (or process) uses: secrets and process markers.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("SKSB-{tag}-{}-{n}-{nanos:x}", std::process::id())
}

/// A temp directory with host secrets planted the way a real host has them, and the
/// environment the binary runs with (secret variables, state dirs inside the lab).
pub struct Lab {
    pub dir: tempfile::TempDir,
    /// The secret string: in `~/.ssh/id_rsa`, `~/.aws/credentials`, a host temp file
    /// and two environment variables of the binary.
    pub secret: String,
    /// The binary's `$HOME` (a fake one, with `.ssh` and `.aws`).
    pub home: PathBuf,
    /// A secret file in the host `/tmp` (a temp dir under it).
    pub tmp_secret: PathBuf,
}

impl Lab {
    /// `None` (test skipped) when the sandbox cannot run on this host.
    pub fn new() -> Option<Lab> {
        sandbox_available().then(Lab::bare)
    }

    fn bare() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("sksb-escape-")
            .tempdir()
            .unwrap();
        let secret = unique("SECRET");
        let home = dir.path().join("home");
        for (rel, body) in [
            (
                ".ssh/id_rsa",
                format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n"),
            ),
            (
                ".aws/credentials",
                format!("[default]\naws_secret_access_key = {secret}\n"),
            ),
            (".env", format!("OPENAI_API_KEY={secret}\n")),
        ] {
            let p = home.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
        }
        let tmp_secret = dir.path().join("host-tmp-secret.txt");
        std::fs::write(&tmp_secret, format!("{secret}\n")).unwrap();
        for d in ["state", "tmpdir"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Lab {
            dir,
            secret,
            home,
            tmp_secret,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary, with this lab's environment.
    pub fn cmd(&self) -> Command {
        let mut c = skillsandbox();
        c.env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.path("state"))
            .env("SKILLSANDBOX_AUDIT_LOG", self.path("state/audit.jsonl"))
            .env("TMPDIR", self.path("tmpdir"))
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("GITHUB_TOKEN", &self.secret);
        c
    }

    /// `skillsandbox exec --json FLAGS -- ARGV`, payload directories granted read-only.
    pub fn exec(&self, flags: &[&str], argv: &[&str]) -> Outcome {
        let mut c = self.cmd();
        c.args(["exec", "--json", "--read"])
            .arg(payload_dir())
            .arg("--read")
            .arg(probe_dir())
            .args(flags)
            .arg("--")
            .args(argv);
        Outcome::from(c.output().expect("spawn skillsandbox"))
    }

    /// `exec` of `ops.py OPS...` (python payload).
    pub fn ops(&self, flags: &[&str], ops: &[&str]) -> Outcome {
        let py = ops_py();
        let mut argv = vec!["python3", py.as_str()];
        argv.extend_from_slice(ops);
        self.exec(flags, &argv)
    }
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Outcome {
    pub output: Output,
    /// The `--json` result object (Null if the binary printed none).
    pub json: Value,
    pub exit_code: i64,
    /// The skill's captured stdout / stderr.
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        Outcome {
            exit_code: json["exit_code"]
                .as_i64()
                .unwrap_or_else(|| output.status.code().map_or(-1, i64::from)),
            stdout: text("stdout"),
            stderr: text("stderr"),
            json,
            output,
        }
    }
}

impl Outcome {
    pub fn termination(&self) -> &str {
        self.json["termination"].as_str().unwrap_or("")
    }

    /// Everything anyone could see: the binary's own stdout/stderr (which contain the
    /// skill's output) — for "the secret never appears" checks.
    pub fn everything(&self) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    /// The `detail` of every violation in the result.
    pub fn violations(&self) -> Vec<String> {
        self.json["violations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| {
                        format!(
                            "{}: {}",
                            v["kind"].as_str().unwrap_or(""),
                            v["detail"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The result of `ops.py` operation `op` on `path`: "OK ..." or "ERR <ERRNO>".
    pub fn op(&self, op: &str, path: &str) -> String {
        let prefix = format!("OP {op} {path} ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no result for {op} {path}:\n{}", self.dump()))
    }

    /// The errno name `probe` reported for `name` ("0" when the call succeeded).
    pub fn sc(&self, name: &str) -> String {
        let prefix = format!("SC {name} ");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("probe printed nothing for {name}:\n{}", self.dump()));
        line.rsplit("errno=").next().unwrap_or("").to_string()
    }

    /// Fails unless the payload ran to its end marker (so a refusal is not a crash).
    pub fn assert_done(&self, marker: &str) {
        assert!(
            self.stdout.lines().any(|l| l == marker),
            "payload did not reach {marker}:\n{}",
            self.dump()
        );
    }

    pub fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.everything().contains(secret),
            "BREACH: the host secret reached the sandbox's output:\n{}",
            self.dump()
        );
    }

    pub fn dump(&self) -> String {
        format!(
            "exit {} ({})\n--- skill stdout\n{}\n--- skill stderr\n{}\n--- binary stderr\n{}\n--- violations\n{:#?}\n--- error {} hint {}",
            self.exit_code,
            self.termination(),
            self.stdout,
            self.stderr,
            String::from_utf8_lossy(&self.output.stderr),
            self.violations(),
            self.json["error"],
            self.json["hint"],
        )
    }
}

/// Asserts that `result` (from [`Outcome::op`]) is a refusal with one of `errnos`.
#[track_caller]
pub fn assert_refused(o: &Outcome, op: &str, path: &str, errnos: &[&str]) {
    let r = o.op(op, path);
    let errno = r.strip_prefix("ERR ").unwrap_or("");
    assert!(
        errnos.contains(&errno),
        "BREACH or unexpected result: {op} {path} => {r} (expected one of {errnos:?})\n{}",
        o.dump()
    );
}

/// Host pids whose command line contains `marker`, excluding `except`.
pub fn host_pids_with(marker: &str, except: &[u32]) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || except.contains(&pid) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every directory under `/sys/fs/cgroup` whose name is in `names` (any hierarchy,
/// any depth).
pub fn cgroup_dirs_named(names: &BTreeSet<String>) -> Vec<PathBuf> {
    fn walk(dir: &Path, names: &BTreeSet<String>, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 8 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_str().is_some_and(|n| names.contains(n)) {
                found.push(p.clone());
            }
            walk(&p, names, depth + 1, found);
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), names, 0, &mut found);
    found
}

/// The cgroup directory name the supervisor uses for a run with this trace id.
pub fn cgroup_name_for(trace_id: &str) -> String {
    let short: String = trace_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("skillsandbox-{short}")
}

/// The host's mount table without the per-line mount ids (which are stable anyway).
pub fn host_mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A minimal `skillsandbox.yaml` skill directory under `lab` running `command args`,
/// with extra YAML for `permissions`/`resources` inserted verbatim.
pub fn skill_dir(
    lab: &Lab,
    name: &str,
    permissions: &str,
    resources: &str,
    command: &str,
    args: &[&str],
) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    let yaml = format!(
        "skill:\n  name: {name}\n  version: \"0.1.0\"\npermissions:\n{permissions}\nresources:\n{resources}\nentrypoint:\n  command: {}\n  args: [{}]\n",
        serde_json::to_string(command).unwrap(),
        args.join(", ")
    );
    std::fs::write(dir.join("skillsandbox.yaml"), yaml).unwrap();
    dir
}
