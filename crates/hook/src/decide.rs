//! The decision (pure): which tool calls run confined, which are denied, which pass.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::event::{Agent, Event};
use crate::quote::sh_single_quote;

/// What the hook knows about the project's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookProfile {
    /// The profile file (absolute): `.skillsandbox/profile.yaml`.
    pub path: PathBuf,
    /// Paths the profile hides (`filesystem.deny`, absolute).
    pub hidden: Vec<PathBuf>,
    /// Paths the agent's own file tools may read but never write: the profile's
    /// directory and the agents' project settings (the hook's own configuration).
    pub protected: Vec<PathBuf>,
    /// The `skillsandbox` binary the rewritten command calls (absolute).
    pub exe: PathBuf,
}

/// What the session engine says about the agent's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionView {
    /// A run would be admitted (or the session is new).
    Open,
    /// A run would be refused: the reason, for the agent.
    Refused(String),
}

/// The hook's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the tool with this input instead (the shell command, confined).
    Allow {
        updated_input: Value,
        reason: String,
    },
    /// Refuse the tool call; the agent sees the reason.
    Deny { reason: String },
    /// Not ours to decide (tools that neither run commands nor touch hidden paths).
    PassThrough,
}

impl Decision {
    /// The reply in the agent's hook protocol (both agents read Claude Code's
    /// `hookSpecificOutput` shape).
    pub fn to_json(&self, _agent: Agent) -> Value {
        match self {
            Decision::Allow {
                updated_input,
                reason,
            } => json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "permissionDecisionReason": reason,
                "updatedInput": updated_input,
            }}),
            Decision::Deny { reason } => json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }}),
            Decision::PassThrough => json!({}),
        }
    }
}

/// Shell tools: the field that holds the command line.
const SHELL_TOOLS: &[(&str, &str)] = &[
    ("Bash", "command"),
    ("shell", "command"),
    ("exec_command", "cmd"),
    ("local_shell", "command"),
];

/// File tools and the fields that name paths.
const FILE_TOOLS: &[(&str, &[&str])] = &[
    ("Read", &["file_path"]),
    ("Write", &["file_path"]),
    ("Edit", &["file_path"]),
    ("MultiEdit", &["file_path"]),
    ("NotebookEdit", &["notebook_path"]),
    ("NotebookRead", &["notebook_path"]),
    ("Glob", &["path", "pattern"]),
    ("Grep", &["path", "glob"]),
    ("LS", &["path"]),
    ("read_file", &["path", "file_path"]),
    ("list_dir", &["path"]),
    ("view_image", &["path"]),
];

/// File tools that write.
const WRITING_TOOLS: &[&str] = &["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// A write by the agent's own tools into the hook's configuration.
fn write_check(event: &Event, paths: &[String], profile: &HookProfile) -> Option<Decision> {
    paths.iter().find_map(|p| {
        let abs = normalise(&Path::new(&event.cwd).join(p));
        let real = std::fs::canonicalize(&abs).unwrap_or_else(|_| abs.clone());
        profile
            .protected
            .iter()
            .find(|g| abs.starts_with(normalise(g)) || real.starts_with(normalise(g)))
            .map(|g| Decision::Deny {
                reason: format!(
                    "skillsandbox: {} on {p} is refused: {} configures the sandbox of this                      agent; only the user changes it (then `skillsandbox hook approve`)",
                    event.tool_name,
                    g.display()
                ),
            })
    })
}

/// The skill an agent's `Skill` tool call loads (Claude Code: `{"skill": "pdf"}`;
/// a plugin's `plugin:pdf` names the folder `pdf`). Its folder's approval is the
/// caller's to check: loading a skill changes what the agent will run.
pub fn skill_of(event: &Event) -> Option<&str> {
    if event.tool_name != "Skill" {
        return None;
    }
    let name = event
        .tool_input
        .get("skill")
        .or(event.tool_input.get("command"))
        .and_then(Value::as_str)?;
    let name = name.rsplit(':').next().unwrap_or(name).trim();
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    plain.then_some(name)
}

/// Decide one event.
pub fn decide(event: &Event, profile: &HookProfile, session: &SessionView) -> Decision {
    if event.hook_event_name != "PreToolUse" {
        return Decision::Deny {
            reason: format!(
                "skillsandbox hook: got a {:?} event; it handles PreToolUse only. Fix: register \
                 `skillsandbox hook <agent>` under PreToolUse (skillsandbox hook install)",
                event.hook_event_name
            ),
        };
    }
    if let Some((_, field)) = SHELL_TOOLS.iter().find(|(t, _)| *t == event.tool_name) {
        return shell(event, field, profile, session);
    }
    if event.tool_name == "apply_patch" {
        let patch = event
            .tool_input
            .get("input")
            .or(event.tool_input.get("patch"));
        let paths = patch
            .and_then(Value::as_str)
            .map(patch_paths)
            .unwrap_or_default();
        return write_check(event, &paths, profile)
            .unwrap_or_else(|| hidden_path_check(event, &paths, profile));
    }
    if let Some((_, fields)) = FILE_TOOLS.iter().find(|(t, _)| *t == event.tool_name) {
        let mut paths: Vec<String> = fields
            .iter()
            .filter_map(|f| event.tool_input.get(*f).and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        if paths.is_empty() {
            paths.push(event.cwd.clone());
        }
        if WRITING_TOOLS.contains(&event.tool_name.as_str()) {
            if let Some(deny) = write_check(event, &paths, profile) {
                return deny;
            }
        }
        return hidden_path_check(event, &paths, profile);
    }
    Decision::PassThrough
}

fn shell(event: &Event, field: &str, profile: &HookProfile, session: &SessionView) -> Decision {
    let command = match event.tool_input.get(field) {
        Some(Value::String(s)) => s.clone(),
        // Codex's exec_command may send argv as an array: run it as one command line.
        Some(Value::Array(parts)) if parts.iter().all(Value::is_string) => parts
            .iter()
            .filter_map(Value::as_str)
            .map(sh_single_quote)
            .collect::<Vec<_>>()
            .join(" "),
        _ => {
            return Decision::Deny {
                reason: format!(
                    "skillsandbox hook: the {} call has no string `{field}`; refusing to run \
                     it unconfined",
                    event.tool_name
                ),
            }
        }
    };
    if let SessionView::Refused(why) = session {
        return Decision::Deny {
            reason: format!(
                "skillsandbox: session {} refuses new commands: {why}. Ask the user; \
                 `skillsandbox session show {}` says why",
                event.session_id, event.session_id
            ),
        };
    }
    let mut input = event.tool_input.clone();
    input.insert(
        field.to_owned(),
        Value::String(wrap_command(&command, event, profile)),
    );
    Decision::Allow {
        updated_input: Value::Object(input),
        reason: format!(
            "confined by skillsandbox (profile {})",
            profile.path.display()
        ),
    }
}

/// The original command, run by `/bin/sh` inside the project's sandbox.
pub fn wrap_command(command: &str, event: &Event, profile: &HookProfile) -> String {
    let mut argv: Vec<String> = vec![
        profile.exe.display().to_string(),
        "exec".into(),
        "--quiet".into(),
        "--explain".into(),
        "--profile".into(),
        profile.path.display().to_string(),
        "--session".into(),
        event.session_id.clone(),
        "--workdir".into(),
        event.cwd.clone(),
    ];
    if let Some(id) = &event.tool_use_id {
        argv.push("--tool-call-id".into());
        argv.push(id.clone());
    }
    argv.extend([
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        command.to_owned(),
    ]);
    argv.iter()
        .map(|a| sh_single_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn hidden_path_check(event: &Event, paths: &[String], profile: &HookProfile) -> Decision {
    for p in paths {
        if let Some(h) = hides(profile, &event.cwd, p) {
            return Decision::Deny {
                reason: format!(
                    "skillsandbox: {} on {p} is refused: the project profile hides {} \
                     (filesystem.deny in {}). Ask the user before widening it",
                    event.tool_name,
                    h.display(),
                    profile.path.display()
                ),
            };
        }
    }
    Decision::PassThrough
}

/// The hidden path that `p` (relative to `cwd`, `~` for HOME-less expansion is the
/// profile's business) falls under, comparing lexically normalised paths and, when
/// it exists, the resolved one (a symlink into a hidden tree is still hidden).
fn hides<'a>(profile: &'a HookProfile, cwd: &str, p: &str) -> Option<&'a PathBuf> {
    // A glob names a tree by its literal prefix.
    let literal: String = p
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{'))
        .collect();
    let expanded = match literal.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map(|h| Path::new(&h).join(rest)),
        None => Some(PathBuf::from(&literal)),
    }?;
    let abs = normalise(&Path::new(cwd).join(expanded));
    let real = std::fs::canonicalize(&abs).ok();
    profile.hidden.iter().find(|h| {
        let h = normalise(h);
        abs.starts_with(&h)
            || h.starts_with(&abs) && p.contains(['*', '?'])
            || real.as_ref().is_some_and(|r| r.starts_with(&h))
    })
}

/// `.` and `..` removed without touching the filesystem.
fn normalise(p: &Path) -> PathBuf {
    skillsandbox_manifest::normalize_path(p)
}

/// The files an `apply_patch` input touches.
fn patch_paths(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| {
            [
                "*** Add File: ",
                "*** Update File: ",
                "*** Delete File: ",
                "*** Move to: ",
            ]
            .iter()
            .find_map(|p| l.strip_prefix(p))
        })
        .map(|s| s.trim().to_owned())
        .collect()
}
