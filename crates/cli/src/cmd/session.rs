//! `skillsandbox session list|show|kill|reset|schema|policy`, and the admission and
//! accounting `run`/`exec --session` do around a run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use skillsandbox_audit::Termination;
use skillsandbox_policy::{policy_json_schema, Action, PolicyFileError};
use skillsandbox_runtime::session::{
    describe_decision, Refusal, SessionEngine, SessionError, SessionState, SessionStatus,
};
use skillsandbox_runtime::{RunOutcome, SessionAccount};

use super::Exit;

/// Inspect and control agent sessions: budgets, violation thresholds, kill switch.
///
/// A session groups the runs of one agent session (`run`/`exec --session ID`,
/// or one `serve` process). The session policy file limits what the session may
/// keep doing: how long and how many runs, CPU / wall / egress / cost budgets, and
/// how many violations of each kind; when a limit is hit the session logs, alerts,
/// blocks later runs, or trips the kill switch (running sandboxes of the session die
/// within a second, later runs are refused with exit code 3, webhooks are told).
///
/// State lives in SQLite: $SKILLSANDBOX_SESSION_DB, else
/// $XDG_STATE_HOME/skillsandbox/sessions.db, shared by every process. The policy is
/// --policy FILE, else $XDG_CONFIG_HOME/skillsandbox/policy.yaml when it exists,
/// else no limits (runs are still counted). Reference: docs/policy.md.
///
/// Examples:
///
///   skillsandbox exec --session agent-42 -- python3 tool.py
///
///   skillsandbox session list
///
///   skillsandbox session show agent-42 --json
///
///   skillsandbox session kill agent-42 --reason "exfiltration attempt"
///
///   skillsandbox session reset agent-42
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Session policy file (default: $XDG_CONFIG_HOME/skillsandbox/policy.yaml when
    /// it exists; otherwise no limits).
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Append session records here (default: $SKILLSANDBOX_AUDIT_LOG, else
    /// $XDG_STATE_HOME/skillsandbox/audit.jsonl).
    #[arg(long, global = true, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List every session: state, runs, usage, violations, whether the next run
    /// would be admitted.
    List {
        /// One JSON array of session objects (same shape as `show --json`).
        #[arg(long)]
        json: bool,
    },
    /// Show one session: state, runs, usage, violations by kind, budgets and limits
    /// used and left, and why the next run would be refused (if it would).
    Show {
        /// The session id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Trip the kill switch: every running sandbox of the session (in any process)
    /// dies within a second, later runs are refused until `session reset`, the
    /// audit log records it and the policy's webhooks are told.
    Kill {
        /// The session id (a session never seen before is created killed).
        id: String,
        /// Why; recorded in the store, the audit log and the webhook notice.
        #[arg(long, short, default_value = "killed by operator")]
        reason: String,
    },
    /// Reopen a session: open again, usage and counts start over, max_duration
    /// counts from now. The only way back from a kill.
    Reset {
        /// The session id.
        id: String,
    },
    /// Print the JSON Schema (draft-07) of the policy file, for editors.
    Schema,
    /// Check the policy file and print the policy in force (as JSON) and where it
    /// came from. Exit 2 with file:line:column errors when it is invalid.
    Policy,
}

/// Exit code of a run the session policy refused.
pub const REFUSED: u8 = 3;

/// How long a finishing process waits for kill notices in flight.
const NOTICE_GRACE: Duration = Duration::from_secs(3);

pub fn main(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Schema => {
            print_json(&policy_json_schema())?;
            return Ok(0);
        }
        Command::Policy => {
            let loaded =
                skillsandbox_policy::find_policy(args.policy.as_deref()).map_err(policy_error)?;
            let doc = serde_json::json!({
                "source": loaded.source,
                "policy": loaded.policy,
            });
            print_json(&doc)?;
            return Ok(0);
        }
        _ => {}
    }
    let engine = open_engine(args.policy.as_deref(), args.audit_log)?;
    let code = match args.command {
        Command::List { json } => list(&engine, json)?,
        Command::Show { id, json } => show(&engine, &id, json)?,
        Command::Kill { id, reason } => kill(&engine, &id, &reason)?,
        Command::Reset { id } => {
            let st = engine.reset(&id)?;
            println!(
                "session {id} reopened (reset #{}); usage and counts start over",
                st.resets
            );
            0
        }
        Command::Schema | Command::Policy => 0,
    };
    engine.wait_notifications(NOTICE_GRACE);
    Ok(code)
}

fn policy_error(e: PolicyFileError) -> anyhow::Error {
    Exit {
        code: 2,
        message: e.to_string(),
    }
    .into()
}

fn open_engine(policy: Option<&Path>, audit_log: Option<PathBuf>) -> anyhow::Result<SessionEngine> {
    match SessionEngine::open(policy, audit_log) {
        Ok(e) => Ok(e),
        Err(SessionError::LoadPolicy(e)) => Err(policy_error(e)),
        Err(e) => Err(e.into()),
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).context("writing JSON to stdout")?;
    writeln!(out)?;
    Ok(())
}

fn list(engine: &SessionEngine, json: bool) -> anyhow::Result<u8> {
    let all = engine.list()?;
    if json {
        print_json(&all)?;
        return Ok(0);
    }
    if all.is_empty() {
        println!("no sessions in {}", engine.store_path().display());
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<6} {:>5} {:>9} {:>9} {:>12} {:>9} {:>5}  NEXT RUN",
        "ID", "STATE", "RUNS", "CPU s", "WALL s", "EGRESS B", "COST $", "VIOL"
    )?;
    for s in &all {
        writeln!(
            out,
            "{:<24} {:<6} {:>5} {:>9.2} {:>9.2} {:>12} {:>9.4} {:>5}  {}",
            s.id,
            state_name(s.state),
            s.runs.started,
            s.usage.cpu_seconds,
            s.usage.wall_seconds,
            s.usage.egress_bytes,
            s.usage.cost_usd,
            s.violations_total,
            if s.next_run_refused.is_some() {
                "refused"
            } else {
                "admitted"
            }
        )?;
    }
    Ok(0)
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Open => "open",
        SessionState::Killed => "killed",
    }
}

fn show(engine: &SessionEngine, id: &str, json: bool) -> anyhow::Result<u8> {
    let Some(s) = engine.status(id)? else {
        return Err(Exit {
            code: 1,
            message: format!(
                "no session {id:?} in {}\n  hint: `skillsandbox session list` shows the known sessions",
                engine.store_path().display()
            ),
        }
        .into());
    };
    if json {
        print_json(&s)?;
    } else {
        print!("{}", render(&s));
    }
    Ok(0)
}

fn render(s: &SessionStatus) -> String {
    let mut o = format!("session {}: {}\n", s.id, state_name(s.state));
    if let (Some(at), Some(why)) = (&s.killed_at, &s.kill_reason) {
        o.push_str(&format!("  killed at {at}: {why}\n"));
    }
    o.push_str(&format!(
        "  created {}, opened {} ({} reset(s))\n",
        s.created_at, s.opened_at, s.resets
    ));
    let mut runs = format!(
        "  runs: {} started, {} finished, {} running, {} lost",
        s.runs.started, s.runs.finished, s.runs.running, s.runs.lost
    );
    if let (Some(max), Some(left)) = (s.limits.max_runs, s.limits.runs_left) {
        runs.push_str(&format!(" (max_runs {max}, {left} left)"));
    }
    o.push_str(&runs);
    o.push('\n');
    if let (Some(d), Some(until)) = (&s.limits.max_duration, &s.limits.expires_at) {
        o.push_str(&format!("  max_duration {d}: admits runs until {until}\n"));
    }
    o.push_str(&format!(
        "  usage: cpu {:.2} s, wall {:.2} s, egress {} bytes, cost ${:.4}\n",
        s.usage.cpu_seconds, s.usage.wall_seconds, s.usage.egress_bytes, s.usage.cost_usd
    ));
    if s.violations.is_empty() {
        o.push_str("  violations: none\n");
    } else {
        let list: Vec<String> = s
            .violations
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        o.push_str(&format!(
            "  violations: {} (total {})\n",
            list.join(", "),
            s.violations_total
        ));
    }
    for b in &s.budgets {
        o.push_str(&format!(
            "  budget {}: {:.4} of {} used ({:.0}%), {:.4} left, on_exceed {}{}\n",
            b.name,
            b.used,
            b.limit,
            b.fraction_used * 100.0,
            b.left,
            b.on_exceed,
            if b.spent { " — SPENT" } else { "" }
        ));
    }
    for t in &s.thresholds {
        o.push_str(&format!(
            "  threshold {}: {} of {}, on_threshold {}{}\n",
            t.kind,
            t.count,
            t.threshold,
            t.on_threshold,
            if t.reached { " — REACHED" } else { "" }
        ));
    }
    match &s.next_run_refused {
        Some(why) => o.push_str(&format!("  next run: refused: {why}\n")),
        None => o.push_str("  next run: admitted\n"),
    }
    o
}

fn kill(engine: &SessionEngine, id: &str, reason: &str) -> anyhow::Result<u8> {
    let k = engine.kill(id, reason)?;
    if k.newly {
        println!(
            "session {id} killed: {}\nrunning sandboxes of this session stop within a second; \
             later runs are refused until `skillsandbox session reset {id}`",
            k.reason
        );
    } else {
        println!("session {id} was already killed: {}", k.reason);
    }
    Ok(0)
}

/// Before a run with `--session ID`: the session engine, or the exit code of a
/// refusal when it cannot be opened (printed here: one line on stderr, and a JSON
/// object with `--json`). Admission itself happens in the run entry.
pub fn open_run_engine(
    id: &str,
    policy: Option<&Path>,
    audit_log: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<Result<SessionEngine, u8>> {
    match SessionEngine::open(policy, audit_log) {
        Ok(e) => Ok(Ok(e)),
        Err(SessionError::LoadPolicy(e)) => Err(policy_error(e)),
        Err(e) => {
            let reason = format!("the session store is unavailable, refusing: {e}");
            refused(id, "store", &reason, json).map(Err)
        }
    }
}

/// A run the session engine refused: nothing started. Prints it; the exit code.
pub fn refused_run(r: &Refusal, json: bool) -> anyhow::Result<u8> {
    let kind = serde_json::to_value(r.kind).unwrap_or_default();
    refused(
        &r.session,
        kind.as_str().unwrap_or("refused"),
        &r.reason,
        json,
    )
}

fn refused(id: &str, kind: &str, reason: &str, json: bool) -> anyhow::Result<u8> {
    let one_line = reason.replace('\n', " ");
    eprintln!("skillsandbox: refused by the session policy: session {id}: {one_line}");
    if json {
        print_json(&serde_json::json!({
            "exit_code": REFUSED,
            "refused": {"session": id, "kind": kind, "reason": reason},
        }))?;
    }
    Ok(REFUSED)
}

/// After a run with `--session`: account it, print alerts and kills on stderr, and
/// give kill notices in flight a moment.
pub fn after_run(engine: &SessionEngine, account: &SessionAccount, outcome: &RunOutcome) {
    let id = &account.admission.session_id;
    if outcome.termination == Termination::Killed {
        let why = outcome
            .trace
            .events
            .iter()
            .rev()
            .find(|e| e.kind == "killed")
            .map_or("the session was killed", |e| e.detail.as_str());
        eprintln!("skillsandbox: stopped: {why}");
    }
    for d in account
        .decisions
        .iter()
        .filter(|d| d.action >= Action::Alert)
    {
        eprintln!("skillsandbox: {}", describe_decision(id, d));
    }
    if let Some(e) = &account.error {
        eprintln!("skillsandbox: warning: {e}");
    }
    engine.wait_notifications(NOTICE_GRACE);
}
