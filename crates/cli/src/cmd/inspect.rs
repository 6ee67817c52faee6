//! `skillsandbox inspect`: print the resolved policy a manifest grants.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_manifest::ResolveEnv;

use super::validate::print_diagnostics;
use super::Exit;

/// Print the resolved policy of a skill as JSON: what the sandbox will enforce.
///
/// Resolution makes every path absolute (`~` becomes your home directory, relative
/// paths are joined to the skill directory), applies every default (ports [443],
/// limits, syscall profile, tier, workdir /skill) and parses domains and environment
/// patterns. The output includes the manifest's path and SHA-256. Lint warnings go
/// to stderr.
///
/// Exit status: 0, or 2 if the manifest is invalid.
///
/// Examples:
///
///   skillsandbox inspect examples/weather-lookup
///
///   skillsandbox inspect examples/weather-lookup | jq .network
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Skill folder (with a skillsandbox.yaml or a SKILL.md) or the manifest file.
    pub path: PathBuf,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let loaded = match skillsandbox_skill::load(&args.path, &ResolveEnv::from_process_env(), None) {
        Ok(l) => l,
        Err(e) => {
            let errors = e.diagnostics();
            print_diagnostics(&errors);
            return Err(Exit {
                code: 2,
                message: format!("{}: invalid manifest", args.path.display()),
            }
            .into());
        }
    };
    print_diagnostics(&loaded.warnings);
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &loaded.policy).context("writing JSON to stdout")?;
    writeln!(stdout).context("writing to stdout")?;
    Ok(0)
}
