//! `skillsandbox approve`: record that a person approved a skill as it is now.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_skill::lock::{self, Store};

use super::Exit;

/// Approve a skill: its files (a tree hash over every name, mode and content) and its
/// resolved permissions, recorded in `skillsandbox.lock` at the project root (the
/// user's config dir for skills outside any project) and pinned in your state dir.
///
/// Once a lockfile covers a skill, `run`, the MCP server's `run_skill` and the hook
/// refuse it whenever its files or permissions differ from what was approved, and
/// print the difference. Run this outside any sandbox: nothing inside one can write
/// the approval store, so a skill (or an agent) cannot approve itself.
///
/// Examples:
///
///   skillsandbox approve --show .claude/skills/pdf     # what approving would grant
///
///   skillsandbox approve .claude/skills/pdf
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Skill folder (with a skillsandbox.yaml or a SKILL.md), or its manifest.
    #[arg(value_name = "SKILL")]
    pub skill: PathBuf,
    /// Print what differs from the current approval, and approve nothing.
    #[arg(long)]
    pub show: bool,
    /// For a SKILL.md skill with several scripts: the one it runs.
    #[arg(long, value_name = "PATH")]
    pub script: Option<PathBuf>,
    /// The lockfile to write, instead of the one that covers the skill.
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let skill = skillsandbox_skill::load_for_approval(
        &args.skill,
        &skillsandbox_manifest::ResolveEnv::from_process_env(),
        args.script.as_deref(),
    )
    .map_err(|e| Exit {
        code: 2,
        message: e.to_string(),
    })?;
    let store = Store::for_invoker();
    let fail = |e: lock::LockError| Exit {
        code: 1,
        message: format!("skillsandbox approve: {e}"),
    };
    let (lockfile, diff) = lock::pending(&skill, &store, args.lockfile.as_deref()).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    let name = &skill.policy.skill.name;
    if diff.is_empty() {
        writeln!(out, "{name}: approved as it is ({})", lockfile.display()).context("stdout")?;
        return Ok(0);
    }
    writeln!(out, "{name} ({}):", skill.dir.display()).context("stdout")?;
    for line in &diff {
        writeln!(out, "  {line}").context("stdout")?;
    }
    if args.show {
        writeln!(
            out,
            "not approved; to approve: skillsandbox approve {}",
            args.skill.display()
        )
        .context("stdout")?;
        return Ok(0);
    }
    let written = lock::approve(&skill, &store, args.lockfile.as_deref()).map_err(fail)?;
    writeln!(out, "approved: {name} in {}", written.display()).context("stdout")?;
    Ok(0)
}
