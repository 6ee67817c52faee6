//! What `run` and `exec` share: the flags about recording and reporting a run, and
//! turning a [`RunOutcome`] into output and an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use serde_json::json;
use std::sync::Arc;

use skillsandbox_manifest::Policy;

use skillsandbox_runtime::{
    dry_run_plan, run, warm_stages, RunOutcome, RunRequest, RunSession, Sink, WarmStages,
};

#[derive(Debug, Clone, clap::Args)]
pub struct RunFlags {
    /// Write the trace here instead of $XDG_STATE_HOME/skillsandbox/traces/<id>.json.
    #[arg(long, value_name = "FILE")]
    pub trace_output: Option<PathBuf>,
    /// Append the audit record here (default: $SKILLSANDBOX_AUDIT_LOG, else
    /// $XDG_STATE_HOME/skillsandbox/audit.jsonl).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Capture the skill's output and print one JSON result object on stdout instead.
    #[arg(long)]
    pub json: bool,
    /// Print the launch plan (mounts, environment, limits, seccomp profile, Landlock
    /// rules) as JSON and exit without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// No summary on stderr after the run.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print where the run's time went, phase by phase (supervisor and sandbox steps
    /// on one clock), on stderr after the run; the trace has the same list.
    #[arg(long)]
    pub timings: bool,
    /// Run even when a requested protection (e.g. cgroup limits) cannot be applied;
    /// the trace lists exactly what was not enforced.
    #[arg(long)]
    pub allow_degraded: bool,
    /// Record every filesystem access the sandbox refuses (a hidden host path, a
    /// masked one, a write outside the writable mounts, what no Landlock rule grants)
    /// as a `filesystem_denied` violation with path, operation and program. Every path
    /// call then waits for the supervisor: about 9x the cost of an `open`.
    #[arg(long)]
    pub record_denials: bool,
    /// Charge this run to session ID (created on first use). Refused before it starts,
    /// with exit code 3 and the reason, when the session is killed or out of runs,
    /// time or budget; accounted after it; a kill of the session stops it within a
    /// second. See `skillsandbox session --help`.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Session policy file (default: $XDG_CONFIG_HOME/skillsandbox/policy.yaml when
    /// it exists; otherwise no limits). Needs --session.
    #[arg(long, value_name = "FILE", requires = "session")]
    pub policy: Option<PathBuf>,
    /// Set by `exec --explain`: the profile that blocked lines point at.
    #[arg(skip)]
    pub explain: Option<PathBuf>,
}

/// For a command that is about to run `policy`: its stage, spawned now on another
/// thread, and placed in a cgroup with the policy's limits there, so the re-exec of our
/// binary and the cgroup's creation overlap preparing the launch
/// ([`WarmStages::one`]). `None` for a dry run (nothing is launched), or when no
/// thread can be started (the launch then spawns its own stage).
pub fn early_stage(flags: &RunFlags, policy: &Policy) -> Option<Arc<WarmStages>> {
    if flags.dry_run {
        return None;
    }
    warm_stages(false, &policy.limits).ok().map(Arc::new)
}

pub fn finish_run(mut req: RunRequest, flags: &RunFlags) -> anyhow::Result<u8> {
    if flags.dry_run {
        let plan = dry_run_plan(&req.policy, &req.extra_args).map_err(|e| super::Exit {
            code: 125,
            message: e,
        })?;
        let doc = json!({ "policy": req.policy, "plan": plan });
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(0);
    }
    req.trace_output = flags.trace_output.clone();
    req.audit_log = flags.audit_log.clone();
    req.allow_degraded = flags.allow_degraded;
    req.record_denials = flags.record_denials;
    if flags.json {
        req.stdout = Sink::Capture;
        req.stderr = Sink::Capture;
    }
    let engine = match &flags.session {
        Some(id) => {
            let audit = flags.audit_log.clone();
            match super::session::open_run_engine(id, flags.policy.as_deref(), audit, flags.json)? {
                Ok(engine) => {
                    let engine = Arc::new(engine);
                    req.session = Some(RunSession::new(Arc::clone(&engine), id.clone()));
                    Some(engine)
                }
                Err(code) => return Ok(code),
            }
        }
        None => None,
    };
    let outcome = match run(req) {
        Ok(o) => o,
        Err(refusal) => return super::session::refused_run(&refusal, flags.json),
    };
    if let (Some(engine), Some(account)) = (&engine, &outcome.session) {
        super::session::after_run(engine, account, &outcome);
    }
    if let Some(profile) = &flags.explain {
        for line in skillsandbox_hook::explain(&outcome.trace, profile) {
            eprintln!("{line}");
        }
    }
    for w in &outcome.warnings {
        eprintln!("skillsandbox: warning: {w}");
    }
    if flags.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &result_json(&outcome))?;
        writeln!(out)?;
    } else if let Some(err) = &outcome.error {
        eprintln!("skillsandbox: {err}");
        if let Some(h) = &outcome.hint {
            eprintln!("  hint: {h}");
        }
    }
    if !flags.json && !flags.quiet && std::io::stderr().is_terminal() {
        eprint!("{}", summary(&outcome));
    }
    if flags.timings {
        eprint!("{}", timings_table(&outcome.trace.timings));
    }
    Ok(u8::try_from(outcome.exit_code.clamp(0, 255)).unwrap_or(1))
}

/// The phases of a run, one per line, with a total.
fn timings_table(t: &[skillsandbox_audit::PhaseTiming]) -> String {
    let mut s = String::from("skillsandbox: timings (ms)\n");
    for p in t {
        s.push_str(&format!("  {:<16}{:>9.3}\n", p.phase, p.us as f64 / 1000.0));
    }
    let total: u64 = t.iter().map(|p| p.us).sum();
    s.push_str(&format!(
        "  {:<16}{:>9.3}\n",
        "total",
        total as f64 / 1000.0
    ));
    s
}

/// The machine-readable result of a run (also the MCP tool result shape).
pub fn result_json(o: &RunOutcome) -> serde_json::Value {
    json!({
        "exit_code": o.exit_code,
        "termination": o.termination,
        "error": o.error,
        "hint": o.hint,
        "stdout": o.stdout.text(),
        "stderr": o.stderr.text(),
        "stdout_truncated": o.stdout.truncated,
        "stderr_truncated": o.stderr.truncated,
        "violations": o.trace.policy_violations,
        "enforcement": o.trace.enforcement,
        "usage": o.trace.usage,
        "network": o.trace.network,
        "trace_id": o.trace.trace_id,
        "trace_path": o.trace_path,
    })
}

fn summary(o: &RunOutcome) -> String {
    let termination = serde_json::to_value(o.termination)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut s = format!(
        "\n── skillsandbox: {} {} · exit {} ({termination}) · {} ms\n",
        o.trace.skill.name, o.trace.skill.version, o.exit_code, o.trace.duration_ms
    );
    if o.trace.policy_violations.is_empty() {
        s.push_str("   no violations\n");
    } else {
        s.push_str(&format!(
            "   {} blocked / limit events:\n",
            o.trace.policy_violations.len()
        ));
        for v in o.trace.policy_violations.iter().take(20) {
            s.push_str(&format!("   ✗ {}: {}\n", v.kind.as_str(), v.detail));
        }
        if o.trace.policy_violations.len() > 20 {
            s.push_str(&format!(
                "   … {} more in the trace\n",
                o.trace.policy_violations.len() - 20
            ));
        }
    }
    if let Some(p) = &o.trace_path {
        s.push_str(&format!("   trace: {}\n", p.display()));
    }
    s
}
