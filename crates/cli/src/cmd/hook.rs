//! `skillsandbox hook`: the agent-shell hook (DESIGN.md §9.1). The decision is the
//! pure `skillsandbox_hook::decide`; this is the thin shell around it: stdin, the
//! project profile, the session store, stdout. Every failure is a deny with the fix.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use skillsandbox_hook::install::{add_hook, has_hook, remove_hook};
use skillsandbox_hook::profile::PROFILE_PATH;
use skillsandbox_hook::{
    decide, parse_event, skill_of, Agent, Decision, Event, HookProfile, SessionView,
};
use skillsandbox_manifest::{load, ResolveEnv};
use skillsandbox_runtime::session::SessionEngine;

use super::Exit;

/// Confine a coding agent's shell: answer its PreToolUse hook.
///
/// `skillsandbox hook claude-code` and `skillsandbox hook codex` read one PreToolUse
/// event (JSON) on stdin and print the decision: the shell command rewritten to run
/// in `skillsandbox exec --profile .skillsandbox/profile.yaml --session <agent
/// session>`; file tools on paths the profile hides denied; anything not understood
/// denied with how to fix it. `hook install` puts the hook in the agent's settings.
///
/// Examples:
///   skillsandbox init && skillsandbox hook install claude-code
///   skillsandbox hook install codex --user
///   skillsandbox hook uninstall claude-code
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: HookCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HookCommand {
    /// Answer one Claude Code PreToolUse event (stdin → stdout).
    ClaudeCode(AnswerArgs),
    /// Answer one Codex PreToolUse event (stdin → stdout).
    Codex(AnswerArgs),
    /// Add the hook to the agent's settings (keeps every other hook and setting).
    Install(InstallArgs),
    /// Remove the hook from the agent's settings.
    Uninstall(InstallArgs),
    /// Approve the project profile as it is now (after you reviewed a change to it).
    /// Until then the hook denies every command: a confined command can write the
    /// project directory, so a changed profile is never trusted on its own.
    Approve(ApproveArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    /// Read the event from this file instead of stdin (benchmarks, debugging).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// `claude-code` or `codex`.
    #[arg(value_name = "AGENT")]
    pub agent: String,
    /// The project's settings (`<dir>/.claude/settings.json`; the default for
    /// claude-code).
    #[arg(long, conflicts_with = "user")]
    pub project: bool,
    /// The user's settings (`~/.claude/settings.json`, or `$CODEX_HOME/hooks.json`;
    /// the only place for codex).
    #[arg(long)]
    pub user: bool,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Largest event accepted on stdin.
const MAX_EVENT_BYTES: u64 = 4 * 1024 * 1024;

pub fn main(args: Args) -> anyhow::Result<u8> {
    match args.command {
        HookCommand::ClaudeCode(a) => answer(Agent::ClaudeCode, a.input.as_deref()),
        HookCommand::Codex(a) => answer(Agent::Codex, a.input.as_deref()),
        HookCommand::Install(a) => install(&a, true),
        HookCommand::Uninstall(a) => install(&a, false),
        HookCommand::Approve(a) => approve(a.dir),
    }
}

fn approve(dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let path = dir.canonicalize()?.join(PROFILE_PATH);
    let bytes = std::fs::read(&path).map_err(|e| Exit {
        code: 2,
        message: format!("{}: {e}; run `skillsandbox init` first", path.display()),
    })?;
    // Approving something the hook would then refuse helps nobody.
    load(&path, &ResolveEnv::from_process_env()).map_err(|e| Exit {
        code: 2,
        message: e.to_string(),
    })?;
    approve_profile(&path, &bytes)?;
    println!("approved {}", path.display());
    Ok(0)
}

/// Record `bytes` as the approved profile at `path` (also used by `init`).
pub fn approve_profile(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let state = skillsandbox_audit::default_state_dir();
    skillsandbox_hook::pin::approve(&state, path, bytes).map_err(|e| {
        anyhow::anyhow!("cannot record the approval under {}: {e}", state.display())
    })?;
    Ok(())
}

fn answer(agent: Agent, from: Option<&Path>) -> anyhow::Result<u8> {
    let mut input = Vec::new();
    let read = match from {
        Some(p) => {
            std::fs::File::open(p).and_then(|f| f.take(MAX_EVENT_BYTES + 1).read_to_end(&mut input))
        }
        None => std::io::stdin()
            .take(MAX_EVENT_BYTES + 1)
            .read_to_end(&mut input),
    };
    let decision = match read {
        Err(e) => deny(format!(
            "skillsandbox hook: cannot read the event on stdin: {e}"
        )),
        Ok(_) if input.len() as u64 > MAX_EVENT_BYTES => {
            deny("skillsandbox hook: the event is larger than 4 MiB; refusing".into())
        }
        Ok(_) => match parse_event(&input) {
            Err(e) => deny(format!(
                "skillsandbox hook: {e}. The hook expects the {} PreToolUse JSON on stdin",
                agent.name()
            )),
            Ok(event) => decide_event(&event),
        },
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &decision.to_json(agent))?;
    writeln!(out)?;
    Ok(0)
}

fn deny(reason: String) -> Decision {
    Decision::Deny { reason }
}

fn decide_event(event: &Event) -> Decision {
    let profile = match hook_profile(Path::new(&event.cwd)) {
        Ok(p) => p,
        Err(reason) => return deny(reason),
    };
    if let Some(name) = skill_of(event) {
        if let Some(reason) = skill_refusal(&profile, name) {
            return deny(reason);
        }
    }
    decide(event, &profile, &session_view(&event.session_id))
}

/// Where agents keep skills, below the project root and the home directory.
const SKILL_DIRS: &[&str] = &[".claude/skills", ".codex/skills", ".agents/skills"];

/// Why the agent may not load the skill `name`, if it may not: its folder is not
/// approved as it is where approval is required (a skillsandbox.lock covers it).
fn skill_refusal(profile: &HookProfile, name: &str) -> Option<String> {
    let root = profile.path.parent().and_then(Path::parent)?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = [Some(root.to_path_buf()), home]
        .into_iter()
        .flatten()
        .flat_map(|base| SKILL_DIRS.iter().map(move |d| base.join(d).join(name)))
        .find(|d| d.is_dir())?;
    let skill =
        match skillsandbox_skill::load_for_approval(&dir, &ResolveEnv::from_process_env(), None) {
            Ok(s) => s,
            Err(e) => return Some(format!("skillsandbox: the skill {name} is invalid: {e}")),
        };
    let store = skillsandbox_skill::lock::Store::for_invoker();
    match skillsandbox_skill::lock::check(&skill, &store, false) {
        Ok(checked) => checked
            .refusal(&skill)
            .map(|r| format!("skillsandbox: {r}")),
        Err(e) => Some(format!(
            "skillsandbox: the approval of the skill {name} cannot be checked: {e}"
        )),
    }
}

/// The profile of the project `cwd` lies in: the nearest `.skillsandbox/profile.yaml`
/// at or above it.
fn hook_profile(cwd: &Path) -> Result<HookProfile, String> {
    let Some(path) = cwd
        .ancestors()
        .map(|d| d.join(PROFILE_PATH))
        .find(|p| p.is_file())
    else {
        return Err(format!(
            "skillsandbox: no {PROFILE_PATH} in {} or above, so shell commands cannot run \
             confined. Fix: run `skillsandbox init` in the project directory",
            cwd.display()
        ));
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("skillsandbox: cannot read {}: {e}", path.display()))?;
    skillsandbox_hook::pin::check(&skillsandbox_audit::default_state_dir(), &path, &bytes)?;
    let loaded = load(&path, &ResolveEnv::from_process_env())
        .map_err(|e| format!("skillsandbox: the project profile is invalid: {e}"))?;
    let root = path
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .map_err(|e| format!("skillsandbox hook: cannot find its own binary: {e}"))?;
    Ok(HookProfile {
        path,
        hidden: loaded.policy.filesystem.deny,
        protected: [
            ".skillsandbox",
            ".claude",
            ".codex",
            skillsandbox_skill::lock::LOCKFILE,
        ]
        .iter()
        .map(|d| root.join(d))
        .collect(),
        exe,
    })
}

/// Whether the agent's session would admit a run; an unreadable store refuses.
fn session_view(id: &str) -> SessionView {
    if let Err(e) = skillsandbox_policy::check_session_id(id) {
        return SessionView::Refused(format!("the agent's session id is not usable: {e}"));
    }
    let status = SessionEngine::open(None, None)
        .map_err(|e| e.to_string())
        .and_then(|engine| engine.status(id).map_err(|e| e.to_string()));
    match status {
        Ok(Some(s)) => match s.next_run_refused {
            Some(why) => SessionView::Refused(why),
            None => SessionView::Open,
        },
        Ok(None) => SessionView::Open,
        Err(e) => SessionView::Refused(format!("the session store is unavailable: {e}")),
    }
}

fn settings_path(a: &InstallArgs, agent: Agent) -> anyhow::Result<PathBuf> {
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("HOME is not set"))
    };
    Ok(match agent {
        Agent::ClaudeCode if a.user => home()?.join(".claude/settings.json"),
        Agent::ClaudeCode => {
            let dir = match &a.dir {
                Some(d) => d.clone(),
                None => std::env::current_dir()?,
            };
            dir.join(".claude/settings.json")
        }
        Agent::Codex if a.project => {
            return Err(Exit {
                code: 2,
                message: "codex reads hooks from $CODEX_HOME/hooks.json only: use --user".into(),
            }
            .into())
        }
        Agent::Codex => match std::env::var_os("CODEX_HOME") {
            Some(h) => PathBuf::from(h).join("hooks.json"),
            None => home()?.join(".codex/hooks.json"),
        },
    })
}

fn install(a: &InstallArgs, add: bool) -> anyhow::Result<u8> {
    let agent = Agent::parse(&a.agent).ok_or_else(|| Exit {
        code: 2,
        message: format!("unknown agent {:?}: expected claude-code or codex", a.agent),
    })?;
    let path = settings_path(a, agent)?;
    let exe = std::env::current_exe()?.canonicalize()?;
    let command = format!("{} hook {}", exe.display(), agent.name());
    let mut settings: Value = match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Value::Null,
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Exit {
            code: 2,
            message: format!(
                "{}: not valid JSON ({e}); fix it, nothing was changed",
                path.display()
            ),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let changed = if add {
        add_hook(&mut settings, &command).map_err(|e| Exit {
            code: 2,
            message: format!("{}: {e}", path.display()),
        })?
    } else {
        remove_hook(&mut settings, &command)
    };
    if changed {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.skillsandbox-tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&settings)? + "\n")?;
        std::fs::rename(&tmp, &path)?;
    }
    let verb = match (add, changed) {
        (true, true) => "installed in",
        (true, false) => "already installed in",
        (false, true) => "removed from",
        (false, false) => "was not in",
    };
    println!("skillsandbox hook {verb} {}", path.display());
    if add && agent == Agent::Codex {
        println!(
            "codex runs a hook only once it is trusted: trust it in the TUI (/hooks), or ship \
             it as a managed hook in requirements.toml. Codex's own sandbox blocks the \
             nested `skillsandbox exec`: set sandbox_mode = \"danger-full-access\" in \
             config.toml — SkillSandbox is then the sandbox of every shell command."
        );
    }
    if add && !profile_present(a) {
        println!("next: `skillsandbox init` writes the project profile the hook needs");
    }
    Ok(0)
}

fn profile_present(a: &InstallArgs) -> bool {
    let dir = a
        .dir
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    dir.join(PROFILE_PATH).is_file()
}

/// Whether the hook is in the agent's project or user settings (for `doctor`).
pub fn installed_in(agent: Agent, project: &Path) -> Vec<PathBuf> {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return Vec::new();
    };
    let command = format!("{} hook {}", exe.display(), agent.name());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidates = match agent {
        Agent::ClaudeCode => vec![
            project.join(".claude/settings.json"),
            home.join(".claude/settings.json"),
        ],
        Agent::Codex => vec![std::env::var_os("CODEX_HOME")
            .map_or_else(|| home.join(".codex"), PathBuf::from)
            .join("hooks.json")],
    };
    candidates
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| has_hook(&v, &command))
        })
        .collect()
}
