//! `skillsandbox run`: run a skill confined by its manifest.

use std::path::PathBuf;

use skillsandbox_runtime::RunRequest;

use super::report::{finish_run, RunFlags};

/// Run a skill confined exactly as its `skillsandbox.yaml` declares.
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
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skill directory (containing skillsandbox.yaml) or the manifest file itself.
    #[arg(value_name = "SKILL")]
    pub skill: PathBuf,
    #[command(flatten)]
    pub run: RunFlags,
    /// Extra arguments appended to the entrypoint's own.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let policy = super::load_policy(&args.skill)?;
    let mut req = RunRequest::new(policy);
    req.extra_args = args.args;
    finish_run(req, &args.run)
}
