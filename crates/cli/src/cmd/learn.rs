//! `skillsandbox learn`: run a skill in an observing sandbox and propose its manifest.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_runtime::{run, RunRequest, Sink};
use skillsandbox_skill::learn::{self, RunObservation};
use skillsandbox_skill::{grants, LoadedSkill};

use super::Exit;

/// Learn a least-privilege manifest: run the skill once (or `--runs N` times, or once
/// per `--args`) in an observing sandbox, and write the proposed `skillsandbox.yaml`
/// beside it.
///
/// The observing sandbox is the skill's usual one: host credentials stay hidden, the
/// home is ephemeral, its manifest's paths (none for a SKILL.md-only skill) are all
/// it sees. Every path it opens, writes or executes and every destination it
/// connects to is recorded by the supervisor (seccomp user notification); names are
/// answered and each connection's TLS name or Host is read, but nothing is relayed:
/// no byte leaves during learning. Calls that fail for lack of a grant are recorded
/// too, so the proposal covers what the skill tried.
///
/// The proposal grants what was used, each grant commented with the program that
/// used it; never a credential path, an exfiltration-shaped host, a raw IP or a write
/// outside the skill's workdir: those are listed under "refused" with the evidence.
/// Review it, then `skillsandbox approve`.
///
/// Examples:
///
///   skillsandbox learn .claude/skills/weather -- Paris
///
///   skillsandbox learn ./pdf-skill --args "in.pdf" --args "--pages 2 in.pdf"
///
///   skillsandbox learn ./my-skill --diff      # against the existing manifest
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Skill folder (with a SKILL.md, a skillsandbox.yaml, or both).
    #[arg(value_name = "SKILL")]
    pub skill: PathBuf,
    /// For a SKILL.md skill with several scripts: the one it runs.
    #[arg(long, value_name = "PATH")]
    pub script: Option<PathBuf>,
    /// Run this many times (with the same arguments) and merge what they did.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// One more run with these arguments (split on spaces); repeat for each variant.
    /// Merged with the others.
    #[arg(long = "args", value_name = "ARGS")]
    pub variants: Vec<String>,
    /// Print the permission diff between the existing manifest and the proposal;
    /// write nothing.
    #[arg(long, conflicts_with_all = ["print", "force"])]
    pub diff: bool,
    /// Print the proposal on stdout; write nothing.
    #[arg(long)]
    pub print: bool,
    /// Replace an existing skillsandbox.yaml.
    #[arg(long)]
    pub force: bool,
    /// Append the runs' audit records here (default: the usual audit log).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Arguments for the runs (appended to the entrypoint's own).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Every run's arguments: `--runs` times the trailing ones, then each `--args`.
fn run_args(args: &Args) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = (0..args.runs).map(|_| args.args.clone()).collect();
    if !args.variants.is_empty() && args.runs == 1 && args.args.is_empty() {
        all.clear();
    }
    for v in &args.variants {
        all.push(v.split_whitespace().map(str::to_owned).collect());
    }
    all
}

fn observe(
    skill: &LoadedSkill,
    args: Vec<String>,
    audit: Option<PathBuf>,
) -> anyhow::Result<RunObservation> {
    let mut req = RunRequest::new(learn::observing_policy(skill));
    req.extra_args = args.clone();
    req.observe = true;
    req.audit_log = audit;
    // The skill's output goes to stderr: stdout carries the proposal or the diff.
    req.stdout = Sink::Forward(Box::new(std::io::stderr()));
    req.stderr = Sink::Forward(Box::new(std::io::stderr()));
    let outcome = run(req).map_err(|r| Exit {
        code: 3,
        message: format!("skillsandbox learn: refused: {}", r.reason),
    })?;
    if let Some(err) = &outcome.error {
        let hint = outcome
            .hint
            .as_deref()
            .map(|h| format!("\n  hint: {h}"))
            .unwrap_or_default();
        return Err(Exit {
            code: 125,
            message: format!("skillsandbox learn: the observing sandbox failed: {err}{hint}"),
        }
        .into());
    }
    if outcome.observed.is_empty() {
        return Err(Exit {
            code: 125,
            message: "skillsandbox learn: the observer saw nothing (not even the skill's own start), so a proposal would be empty, not least privilege\n  hint: `skillsandbox doctor` shows whether seccomp user notification works here".into(),
        }
        .into());
    }
    Ok(RunObservation::new(args, outcome.observed, &outcome.trace))
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let skill = super::load_skill(&args.skill, args.script.as_deref())?;
    let target = skill.dir.join(skillsandbox_manifest::MANIFEST_FILE);
    if target.exists() && !(args.diff || args.print || args.force) {
        return Err(Exit {
            code: 2,
            message: format!(
                "skillsandbox learn: {} exists; nothing learned\n  hint: pass --diff to compare it with what the skill does, --print to see the proposal, or --force to replace it",
                target.display()
            ),
        }
        .into());
    }
    let mut runs = Vec::new();
    for a in run_args(&args) {
        runs.push(observe(&skill, a, args.audit_log.clone())?);
    }
    let when = skillsandbox_audit::now();
    let exists = |p: &str| std::path::Path::new(p).exists();
    let proposal = learn::propose(&skill, &runs, &when.to_string(), &exists);
    let mut out = std::io::stdout().lock();
    if args.print {
        out.write_all(proposal.yaml.as_bytes()).context("stdout")?;
        return Ok(0);
    }
    if args.diff {
        let proposed = reload(&skill, &proposal.yaml)?;
        let diff = grants::diff(&grants::lines(&skill.policy), &grants::lines(&proposed));
        if diff.is_empty() {
            writeln!(
                out,
                "{}: the manifest grants what the skill used",
                skill.policy.skill.name
            )
            .context("stdout")?;
        }
        for line in &diff {
            writeln!(out, "{line}").context("stdout")?;
        }
        summary(&mut out, &proposal.learned)?;
        return Ok(0);
    }
    std::fs::write(&target, &proposal.yaml)
        .with_context(|| format!("writing {}", target.display()))?;
    summary(&mut out, &proposal.learned)?;
    writeln!(
        out,
        "wrote {}; review it, then: skillsandbox approve {}",
        target.display(),
        skill.dir.display()
    )
    .context("stdout")?;
    Ok(0)
}

/// The proposal, parsed back as the manifest it is (it must be one).
fn reload(skill: &LoadedSkill, yaml: &str) -> anyhow::Result<skillsandbox_manifest::Policy> {
    use skillsandbox_manifest::{parse_str, resolve, ResolveEnv};
    let invalid = |e: skillsandbox_manifest::ManifestError| Exit {
        code: 1,
        message: format!("skillsandbox learn: the proposal is not a valid manifest (a bug): {e}"),
    };
    let m = parse_str(yaml, "proposal").map_err(invalid)?;
    let p = resolve(&m, &skill.dir, &ResolveEnv::from_process_env()).map_err(invalid)?;
    Ok(p)
}

fn summary(out: &mut impl Write, l: &learn::Learned) -> anyhow::Result<()> {
    let domains: usize = l.domains.values().map(|p| p.len()).sum();
    writeln!(
        out,
        "learned from {} run(s): {} destination(s), {} read path(s), {} write path(s); {} refused",
        l.runs,
        domains,
        l.read.len(),
        l.write.len(),
        l.refused.len()
    )?;
    if !l.refused.is_empty() {
        writeln!(out, "refused, would have been denied:")?;
        for r in &l.refused {
            writeln!(
                out,
                "  {}: {} (by {})",
                r.what,
                r.why,
                r.evidence.join("; ")
            )?;
        }
    }
    Ok(())
}
