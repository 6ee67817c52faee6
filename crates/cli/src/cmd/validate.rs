//! `skillsandbox validate`: parse, check, resolve and lint a manifest; print every error
//! and warning as `FILE:LINE:COL: FIELD: message`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use skillsandbox_manifest::{Diagnostic, ResolveEnv};

use super::Exit;

/// Check a skill manifest (skillsandbox.yaml) without running anything.
///
/// Reports every error with its file, line and column, the field it is about and a
/// hint, plus lint warnings for over-broad grants (write access to /etc, read access
/// to ~/.ssh, `*.amazonaws.com`, env allow `*`, the permissive syscall profile, ...).
/// Prints `ok: NAME VERSION` when the manifest is valid.
///
/// Exit status: 0 valid; 2 invalid (or, with --strict, valid with warnings).
///
/// Examples:
///
///   skillsandbox validate examples/weather-lookup
///
///   skillsandbox validate --strict path/to/skillsandbox.yaml
///
///   skillsandbox validate --json examples/malicious-weather | jq .warnings
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Skill folder (with a skillsandbox.yaml or a SKILL.md) or the manifest file.
    pub path: PathBuf,
    /// Treat warnings as errors: exit 2 if any lint fires.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON object on stdout: {ok, manifest, skill, errors, warnings}.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let env = ResolveEnv::from_process_env();
    let (skill, errors, warnings) = match skillsandbox_skill::load(&args.path, &env, None) {
        Ok(loaded) => {
            let s = &loaded.policy.skill;
            (
                Some((s.name.clone(), s.version.clone())),
                Vec::new(),
                loaded.warnings,
            )
        }
        Err(e) => (None, e.diagnostics(), Vec::new()),
    };
    let failed = !errors.is_empty() || (args.strict && !warnings.is_empty());

    if args.json {
        let out = json!({
            "ok": !failed,
            "manifest": args.path.display().to_string(),
            "skill": skill.as_ref().map(|(n, v)| json!({"name": n, "version": v})),
            "errors": errors,
            "warnings": warnings,
        });
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &out).context("writing JSON to stdout")?;
        writeln!(stdout).context("writing to stdout")?;
    } else {
        print_diagnostics(&errors);
        print_diagnostics(&warnings);
        if let (Some((name, version)), false) = (&skill, failed) {
            let note = match warnings.len() {
                0 => String::new(),
                1 => " (1 warning)".to_owned(),
                n => format!(" ({n} warnings)"),
            };
            writeln!(std::io::stdout(), "ok: {name} {version}{note}")
                .context("writing to stdout")?;
        }
    }

    if !errors.is_empty() {
        let n = errors.len();
        return Err(Exit {
            code: 2,
            message: format!(
                "{}: invalid manifest ({n} error{})",
                args.path.display(),
                if n == 1 { "" } else { "s" }
            ),
        }
        .into());
    }
    if failed {
        let n = warnings.len();
        return Err(Exit {
            code: 2,
            message: format!(
                "{}: {n} warning{} and --strict",
                args.path.display(),
                if n == 1 { "" } else { "s" }
            ),
        }
        .into());
    }
    Ok(0)
}

/// Diagnostics go to stderr, one per line (hints indented below).
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let mut stderr = std::io::stderr().lock();
    for d in diagnostics {
        // A closed stderr leaves nothing useful to do with the error.
        let _ = writeln!(stderr, "{d}");
    }
}
