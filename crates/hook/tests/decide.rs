//! `decide` on payloads shaped as each agent's hook reference documents them,
//! malicious command strings included: every one ends confined, denied, or (for
//! tools that run nothing and touch no hidden path) passed through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use skillsandbox_hook::{decide, parse_event, sh_single_quote, Decision, HookProfile, SessionView};

fn profile() -> HookProfile {
    HookProfile {
        path: "/work/proj/.skillsandbox/profile.yaml".into(),
        hidden: vec!["/home/u/.ssh".into(), "/home/u/.aws".into()],
        protected: vec![
            "/work/proj/.skillsandbox".into(),
            "/work/proj/.claude".into(),
        ],
        exe: "/usr/local/bin/skillsandbox".into(),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(p).unwrap()
}

fn decide_fixture(name: &str, session: &SessionView) -> Decision {
    let ev = parse_event(&fixture(name)).unwrap();
    decide(&ev, &profile(), session)
}

#[test]
fn claude_bash_is_wrapped_and_keeps_every_other_field() {
    let raw: Value = serde_json::from_slice(&fixture("claude-bash.json")).unwrap();
    let original = raw["tool_input"]["command"].as_str().unwrap().to_owned();
    let Decision::Allow { updated_input, .. } =
        decide_fixture("claude-bash.json", &SessionView::Open)
    else {
        panic!("not allowed");
    };
    for key in ["description", "timeout", "run_in_background"] {
        assert_eq!(updated_input[key], raw["tool_input"][key], "{key}");
    }
    let cmd = updated_input["command"].as_str().unwrap();
    let expected = format!(
        "'/usr/local/bin/skillsandbox' 'exec' '--quiet' '--explain' '--profile' \
         '/work/proj/.skillsandbox/profile.yaml' '--session' \
         '5f1c9a52-2a43-4a8b-9d7e-0c4e1f2b9a10' '--workdir' '/work/proj' '--tool-call-id' \
         'toolu_01ABC' '--' '/bin/sh' '-c' {}",
        sh_single_quote(&original)
    );
    assert_eq!(cmd, expected);
}

#[test]
fn the_wrapped_command_hands_sh_exactly_the_original() {
    // Replace the binary by a printer of its last argument: what /bin/sh passes on.
    let dir = std::env::temp_dir().join(format!("hook-argv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let printer = dir.join("last-arg");
    std::fs::write(
        &printer,
        "#!/bin/sh\nfor a; do last=$a; done\nprintf %s \"$last\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&printer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = profile();
    p.exe = printer;
    let raw: Value = serde_json::from_slice(&fixture("claude-bash.json")).unwrap();
    let ev = parse_event(&fixture("claude-bash.json")).unwrap();
    let Decision::Allow { updated_input, .. } = decide(&ev, &p, &SessionView::Open) else {
        panic!("not allowed");
    };
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(updated_input["command"].as_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        raw["tool_input"]["command"].as_str().unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn codex_bash_is_wrapped_with_its_call_id() {
    let Decision::Allow { updated_input, .. } =
        decide_fixture("codex-bash.json", &SessionView::Open)
    else {
        panic!("not allowed");
    };
    let cmd = updated_input["command"].as_str().unwrap();
    assert!(cmd.contains("'--tool-call-id' 'call_7d2'"), "{cmd}");
    assert!(
        cmd.ends_with("'/bin/sh' '-c' 'printenv AWS_SECRET_ACCESS_KEY'"),
        "{cmd}"
    );
}

#[test]
fn a_refused_session_denies_the_shell_with_the_reason() {
    let d = decide_fixture(
        "codex-bash.json",
        &SessionView::Refused("killed: exfil".into()),
    );
    let Decision::Deny { reason } = d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("killed: exfil"), "{reason}");
}

#[test]
fn file_tools_on_hidden_paths_are_denied_elsewhere_passed() {
    for f in [
        "claude-read-ssh.json",
        "claude-glob-dotdot.json",
        "codex-apply-patch.json",
    ] {
        let d = decide_fixture(f, &SessionView::Open);
        assert!(
            matches!(&d, Decision::Deny { reason } if reason.contains("hides")),
            "{f}: {d:?}"
        );
    }
    assert_eq!(
        decide_fixture("claude-edit-project.json", &SessionView::Open),
        Decision::PassThrough
    );
    assert_eq!(
        decide_fixture("claude-webfetch.json", &SessionView::Open),
        Decision::PassThrough
    );
}

#[test]
fn the_agents_file_tools_cannot_rewrite_the_hooks_configuration() {
    for (tool, path) in [
        ("Write", "/work/proj/.skillsandbox/profile.yaml"),
        ("Edit", "./.claude/settings.json"),
        ("MultiEdit", "src/../.claude/settings.local.json"),
    ] {
        let ev = parse_event(
            serde_json::json!({"session_id": "s", "cwd": "/work/proj",
                "hook_event_name": "PreToolUse", "tool_name": tool,
                "tool_input": {"file_path": path, "content": "x"}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let d = decide(&ev, &profile(), &SessionView::Open);
        assert!(
            matches!(&d, Decision::Deny { reason } if reason.contains("only the user")),
            "{tool} {path}: {d:?}"
        );
    }
    let patch = serde_json::json!({"session_id": "s", "cwd": "/work/proj",
        "hook_event_name": "PreToolUse", "tool_name": "apply_patch",
        "tool_input": {"input": "*** Begin Patch\n*** Update File: .skillsandbox/profile.yaml\n+x\n*** End Patch\n"}});
    let ev = parse_event(patch.to_string().as_bytes()).unwrap();
    assert!(matches!(
        decide(&ev, &profile(), &SessionView::Open),
        Decision::Deny { .. }
    ));
    // Reading them is fine.
    let read = serde_json::json!({"session_id": "s", "cwd": "/work/proj",
        "hook_event_name": "PreToolUse", "tool_name": "Read",
        "tool_input": {"file_path": "/work/proj/.skillsandbox/profile.yaml"}});
    let ev = parse_event(read.to_string().as_bytes()).unwrap();
    assert_eq!(
        decide(&ev, &profile(), &SessionView::Open),
        Decision::PassThrough
    );
}

#[test]
fn what_the_hook_does_not_understand_is_denied_never_empty() {
    for f in ["claude-post.json", "claude-bash-nocommand.json"] {
        let d = decide_fixture(f, &SessionView::Open);
        assert!(matches!(d, Decision::Deny { .. }), "{f}: {d:?}");
        let reply = d.to_json(skillsandbox_hook::Agent::ClaudeCode);
        assert_eq!(reply["hookSpecificOutput"]["permissionDecision"], "deny");
    }
    for bad in [&b"not json"[..], b"[]", b"{}", br#"{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":"ls"}"#] {
        assert!(parse_event(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}
