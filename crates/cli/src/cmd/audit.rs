//! `skillsandbox audit verify|tail`: check and read the hash-chained audit log.
//!
//! Read-only: never appends to, repairs or locks the log.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_audit::{
    default_audit_log_path, AuditRecord, VerifyOptions, VerifyReport, AUDIT_LOG_ENV,
};

use super::Exit;

/// Check and read the tamper-evident audit log.
///
/// Every run and every session event (kill, reset, threshold) appends one JSON
/// line to the audit log. Each record carries the SHA-256 of the previous record
/// (`prev_hash`) and its own (`hash`), so an edited, removed or reordered record
/// breaks the chain. The side file `<log>.head` holds the last record's seq and
/// hash and catches a tail that was cut off cleanly.
///
/// Default log: $SKILLSANDBOX_AUDIT_LOG, else
/// $XDG_STATE_HOME/skillsandbox/audit.jsonl (~/.local/state/skillsandbox/audit.jsonl).
/// Format and independent verification: docs/audit.md.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    Verify(VerifyArgs),
    Tail(TailArgs),
    Merge(MergeArgs),
}

/// Check the whole hash chain and the head file; name the first bad record.
///
/// Exit status: 0 when the log is intact, 1 when it is broken (edited, deleted or
/// reordered records, a cut tail) or cannot be read. The failure is printed as
/// "record N (line L): reason".
///
/// A hash chain without a secret cannot stop someone who rewrites the whole log
/// and its head file; note a recent hash (shown on success) somewhere else and
/// pass it later with --anchor to detect that too.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Audit log to check [default: $SKILLSANDBOX_AUDIT_LOG or the state dir's audit.jsonl].
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print the verification report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A record hash noted earlier that must still be in the chain (64 hex digits).
    #[arg(long, value_name = "HASH")]
    pub anchor: Option<String>,
    /// Check the chain only, not the end of the log against `<log>.head` (for a
    /// copy of the log made without its head file). A cut tail then goes unnoticed.
    #[arg(long)]
    pub no_head_check: bool,
}

/// Show the most recent records, one line each, oldest first.
///
/// Run records show skill, termination, exit code, violation counts and the trace
/// file; other records show their body's fields. Reads only the end of the file;
/// it does not verify the chain (use `audit verify`).
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// How many records to show.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub n: usize,
    /// Print the records as JSON lines, exactly the stored fields.
    #[arg(long)]
    pub json: bool,
    /// Audit log to read [default: $SKILLSANDBOX_AUDIT_LOG or the state dir's audit.jsonl].
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

/// Verify several hosts' audit logs, each its own chain, and print their records
/// interleaved by time.
///
/// Each host keeps its own hash-chained log; this checks every chain (and head
/// file) on its own, then prints the records that verified, oldest first, each
/// with the log it came from. A broken chain contributes only its records before
/// the first bad one, and is named on stderr as "LOG: record N (line L): reason".
/// Exit status: 0 when every log is intact, 1 when any is broken.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The logs to merge (two or more hosts' audit.jsonl files).
    #[arg(required = true, num_args = 1.., value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Print the records as JSON lines (each record's stored fields plus `log` and
    /// `log_index`), then one summary object `{"logs": [verify reports], "ok"}`.
    #[arg(long)]
    pub json: bool,
    /// Check the chains only, not their ends against `<log>.head`.
    #[arg(long)]
    pub no_head_check: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    match args.command {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Tail(a) => tail(a),
        AuditCommand::Merge(a) => merge(a),
    }
}

fn merge(args: MergeArgs) -> anyhow::Result<u8> {
    let opts = VerifyOptions {
        check_head: !args.no_head_check,
        anchor: None,
    };
    let report =
        skillsandbox_audit::merge(&args.logs, &opts).context("cannot merge the audit logs")?;
    let mut out = std::io::stdout().lock();
    for m in &report.records {
        if args.json {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)?;
        } else {
            writeln!(out, "[{}] {}", m.log_index + 1, render_record(&m.record))?;
        }
    }
    if args.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"logs": report.logs, "ok": report.ok}),
        )?;
        writeln!(out)?;
    }
    out.flush()?;
    for (i, r) in report.logs.iter().enumerate() {
        let log = r.log.display();
        match &r.first_bad {
            None => eprintln!("[{}] OK {log}: {} records", i + 1, r.records),
            Some(b) => eprintln!(
                "[{}] BROKEN {log}: record {} (line {}): {}",
                i + 1,
                b.seq,
                b.line,
                b.reason
            ),
        }
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn log_path(log: Option<PathBuf>) -> PathBuf {
    log.unwrap_or_else(default_audit_log_path)
}

fn verify(args: VerifyArgs) -> anyhow::Result<u8> {
    let path = log_path(args.log);
    let anchor = match args.anchor {
        Some(a) => {
            let a = a.trim().to_ascii_lowercase();
            if a.len() != 64 || !a.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Exit {
                    code: 2,
                    message: format!(
                        "--anchor must be a full record hash (64 hex digits), got {a:?}"
                    ),
                }
                .into());
            }
            Some(a)
        }
        None => None,
    };
    let opts = VerifyOptions {
        check_head: !args.no_head_check,
        anchor,
    };
    let report = skillsandbox_audit::verify_with(&path, &opts).with_context(|| {
        format!("cannot verify the audit log (choose one with --log or ${AUDIT_LOG_ENV})")
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_verify_human(&mut out, &report, &opts)?;
    }
    out.flush()?;
    Ok(if report.ok { 0 } else { 1 })
}

fn write_verify_human(
    out: &mut impl Write,
    report: &VerifyReport,
    opts: &VerifyOptions,
) -> std::io::Result<()> {
    let log = report.log.display();
    match &report.first_bad {
        None => {
            let head = if opts.check_head {
                if report.records == 0 {
                    "empty log"
                } else {
                    "head file matches"
                }
            } else {
                "head file not checked"
            };
            let anchor = if opts.anchor.is_some() {
                ", anchor found"
            } else {
                ""
            };
            writeln!(
                out,
                "OK {log}: {} records, chain intact, {head}{anchor}",
                report.records
            )?;
            if let Some(h) = &report.last_hash {
                writeln!(out, "last hash: {h}")?;
            }
        }
        Some(bad) => {
            writeln!(
                out,
                "BROKEN {log}: record {} (line {}): {}",
                bad.seq, bad.line, bad.reason
            )?;
            let plural = if report.records == 1 { "" } else { "s" };
            writeln!(
                out,
                "{} record{plural} before it verified; keep this file as evidence",
                report.records
            )?;
        }
    }
    Ok(())
}

fn tail(args: TailArgs) -> anyhow::Result<u8> {
    let path = log_path(args.log);
    let records = skillsandbox_audit::tail(&path, args.n).with_context(|| {
        format!("cannot read the audit log (choose one with --log or ${AUDIT_LOG_ENV})")
    })?;
    let mut out = std::io::stdout().lock();
    for r in &records {
        if args.json {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", render_record(r))?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// One readable line for a record. Values from the log are shown JSON-escaped
/// and stripped of control characters, so a record cannot drive the terminal.
pub fn render_record(r: &AuditRecord) -> String {
    let body = if r.kind == "run" && r.body["skill"].is_object() {
        render_run(&r.body)
    } else {
        render_fields(&r.body)
    };
    let line = format!(
        "#{:<5} {} {:<8} {}  [{}]",
        r.seq,
        r.time,
        r.kind,
        body,
        r.hash.get(..12).unwrap_or(&r.hash)
    );
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s)
            if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"') =>
        {
            s.clone()
        }
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn render_run(b: &serde_json::Value) -> String {
    let violations = match b["violations"].as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{}={}", text(&serde_json::Value::from(k.as_str())), text(n)))
            .collect::<Vec<_>>()
            .join(","),
        Some(_) => "none".to_owned(),
        None => "-".to_owned(),
    };
    let mut s = format!(
        "{} {} {} exit={} violations={} trace={}",
        text(&b["skill"]["name"]),
        text(&b["skill"]["version"]),
        text(&b["termination"]),
        text(&b["exit_code"]),
        violations,
        text(&b["trace_path"]),
    );
    if let Some(session) = b["session_id"].as_str() {
        s.push_str(&format!(" session={}", text(&session.into())));
    }
    s
}

fn render_fields(b: &serde_json::Value) -> String {
    match b.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{}={}", text(&serde_json::Value::from(k.as_str())), text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        None => text(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, body: serde_json::Value) -> AuditRecord {
        AuditRecord {
            seq: 7,
            time: "2026-01-02T03:04:05.678Z".into(),
            kind: kind.into(),
            body,
            prev_hash: "0".repeat(64),
            hash: "ab".repeat(32),
        }
    }

    #[test]
    fn run_record_renders_on_one_line() {
        let r = record(
            "run",
            json!({"skill": {"name": "weather", "version": "0.1.0"}, "termination": "exited",
                   "exit_code": 0, "violations": {"dns_blocked": 2}, "trace_path": "/t/x.json",
                   "session_id": null}),
        );
        assert_eq!(
            render_record(&r),
            "#7     2026-01-02T03:04:05.678Z run      weather 0.1.0 exited exit=0 \
             violations=dns_blocked=2 trace=/t/x.json  [abababababab]"
        );
    }

    #[test]
    fn session_record_escapes_hostile_text() {
        let r = record(
            "session",
            json!({"event": "kill", "reason": "a b\u{1b}[2J\n"}),
        );
        let line = render_record(&r);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("event=kill reason=\"a b\\u001b[2J\\n\""),
            "{line}"
        );
    }
}
