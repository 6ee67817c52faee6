//! `skillsandbox init`: write the project profile the agent-shell hook uses.

use std::path::PathBuf;

use skillsandbox_hook::profile::{detect, render, PROFILE_PATH};
use skillsandbox_manifest::ResolveEnv;

use super::Exit;

/// Write `.skillsandbox/profile.yaml`: the sandbox every agent shell command gets in
/// this project. The project directory is writable, the rest of the filesystem
/// read-only, credentials hidden, the network limited to the registries of the
/// ecosystems found (each explained in a comment), everything else denied.
///
/// Examples:
///   skillsandbox init && skillsandbox hook install claude-code
///   skillsandbox init ~/src/app --force
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The project directory (default: the current one).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace an existing profile.
    #[arg(long)]
    pub force: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let root = dir.canonicalize().map_err(|e| Exit {
        code: 2,
        message: format!("{}: {e}", dir.display()),
    })?;
    let path = root.join(PROFILE_PATH);
    if path.exists() && !args.force {
        return Err(Exit {
            code: 2,
            message: format!(
                "{} exists; edit it, or pass --force to write a fresh one",
                path.display()
            ),
        }
        .into());
    }
    let text = render(&detect(&root));
    // What we write must load: the hook would otherwise deny every command.
    skillsandbox_manifest::parse_str(&text, &path.display().to_string())
        .and_then(|m| skillsandbox_manifest::resolve(&m, &root, &ResolveEnv::from_process_env()))
        .map_err(|e| anyhow::anyhow!("the generated profile does not load (a bug): {e}"))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, &text)?;
    super::hook::approve_profile(&path, text.as_bytes())?;
    println!("wrote and approved {}", path.display());
    println!("next: `skillsandbox hook install claude-code` (or codex --user)");
    Ok(0)
}
