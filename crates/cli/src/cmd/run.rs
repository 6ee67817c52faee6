//! `skillsandbox run`: run a skill confined by its manifest.

use std::path::PathBuf;

use skillsandbox_runtime::RunRequest;

use super::report::{finish_run, RunFlags};

/// Run a skill confined exactly as its `skillsandbox.yaml` declares (deny-all for a
/// SKILL.md skill without one).
///
/// The skill's stdout and stderr stream through as they are produced; its exit code
/// becomes ours (124 timeout, 137 killed/OOM, 125 sandbox setup failed, 126/127
/// entrypoint not executable/not found, 2 invalid manifest). Every run writes a
/// trace (default `$XDG_STATE_HOME/skillsandbox/traces/<id>.json`) and appends a
/// record to the audit log.
///
/// Examples:
///   skillsandbox run examples/weather-lookup -- Paris
///   skillsandbox run ./my-skill --json > result.json
///   skillsandbox run ./my-skill --dry-run
///   skillsandbox run ./pdf-skill --script scripts/convert.py -- in.pdf
///
/// A skill covered by a skillsandbox.lock runs only as approved (`skillsandbox
/// approve`); a change to its files or permissions is refused with the diff.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skill folder (with a skillsandbox.yaml, or only a SKILL.md), or the manifest
    /// file itself. A SKILL.md skill without a manifest runs its script under
    /// deny-all permissions.
    #[arg(value_name = "SKILL")]
    pub skill: PathBuf,
    /// For a SKILL.md skill with several scripts: the one to run (relative to the
    /// skill folder).
    #[arg(long, value_name = "PATH")]
    pub script: Option<PathBuf>,
    /// Refuse the skill unless `skillsandbox approve` approved it as it is now (this
    /// is always so where a skillsandbox.lock covers the skill).
    #[arg(long)]
    pub require_approval: bool,
    #[command(flatten)]
    pub run: RunFlags,
    /// Extra arguments appended to the entrypoint's own.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let skill = super::load_skill(&args.skill, args.script.as_deref())?;
    super::require_approved(&skill, args.require_approval)?;
    let stages = super::report::early_stage(&args.run, &skill.policy);
    let mut req = RunRequest::new(skill.policy);
    req.stages = stages;
    req.extra_args = args.args;
    finish_run(req, &args.run)
}
