//! `skillsandbox scan`: report a folder of skills without running any of them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_manifest::ResolveEnv;
use skillsandbox_skill::lock::Store;
use skillsandbox_skill::scan;

use super::Exit;

/// Report a folder of skills (a clone of a skills repository, your `.claude/skills`):
/// each skill, its manifest (none / present / learned / invalid), its approval
/// (approved / changed / unapproved / no lockfile), whether it runs, and the static
/// red flags in its files, each with file:line: `curl … | sh`, eval of fetched
/// content, base64 blobs that decode to code, credential paths and secret variables,
/// whole-environment harvesting, exfiltration hosts, raw IPs and obfuscated hosts.
///
/// Runs nothing. Exit 0 when nothing is flagged, 1 when something is, 2 when the
/// folder cannot be read.
///
/// Examples:
///
///   skillsandbox scan ~/src/community-skills
///
///   skillsandbox scan .claude/skills --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The folder to scan (a skill, or a folder holding skills at any depth up to 6).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let dir = std::fs::canonicalize(&args.dir)
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| Exit {
            code: 2,
            message: format!(
                "skillsandbox scan: {} is not a readable folder",
                args.dir.display()
            ),
        })?;
    let report = scan::scan(&dir, &Store::for_invoker(), &ResolveEnv::from_process_env());
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        table(&mut out, &report).context("stdout")?;
    }
    Ok(if report.flag_count() > 0 { 1 } else { 0 })
}

fn table(out: &mut impl Write, r: &scan::ScanReport) -> std::io::Result<()> {
    if r.skills.is_empty() {
        writeln!(
            out,
            "no skills (SKILL.md or skillsandbox.yaml) under {}",
            r.dir
        )?;
        return Ok(());
    }
    let w = r
        .skills
        .iter()
        .map(|s| s.path.len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<w$}  {:<20}  {:<8}  {:<12}  {:<8}  FLAGS",
        "SKILL", "NAME", "MANIFEST", "APPROVAL", "RUNNABLE"
    )?;
    for s in &r.skills {
        let runnable = if s.not_runnable.is_some() {
            "no"
        } else {
            "yes"
        };
        writeln!(
            out,
            "{:<w$}  {:<20}  {:<8}  {:<12}  {:<8}  {}",
            s.path,
            s.name,
            s.manifest,
            s.approval,
            runnable,
            s.flags.len()
        )?;
    }
    for s in &r.skills {
        if s.flags.is_empty() && s.not_runnable.is_none() && s.skipped.is_empty() {
            continue;
        }
        writeln!(out, "\n{}:", s.path)?;
        if let Some(why) = &s.not_runnable {
            writeln!(out, "  does not run: {why}")?;
        }
        for f in &s.flags {
            writeln!(out, "  {}:{}  {}  {}", f.file, f.line, f.rule, f.message)?;
        }
        for k in &s.skipped {
            writeln!(out, "  not read: {k}")?;
        }
    }
    if r.truncated {
        writeln!(
            out,
            "\n(more skills than reported: the first 2000 are shown)"
        )?;
    }
    Ok(())
}
