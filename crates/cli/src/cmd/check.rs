//! `skillsandbox check`: attack the sandbox a manifest gets and print the checklist;
//! and the hidden `__probe` subcommand that does the attacking from inside.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use skillsandbox_manifest::Tier;
use skillsandbox_runtime::{adhoc_policy, Grants};

use super::Exit;
use crate::probe::catalog::{self, Group, Status};
use crate::probe::host::{host_report, summary, HostReport};
use crate::probe::params::PROBE_INSIDE;
use crate::probe::runner::{self, ReportItem, RunnerError};
use crate::probe::workspace::{EnvCanary, Workspace};
use crate::probe::{bwrap, probe_main};

/// Attack the sandbox a manifest gets and show what holds.
///
/// Launches a probe (this binary, bound read-only inside; on the process tier granted
/// read/execute at its host path) in exactly the sandbox the manifest gets, plus a
/// scratch directory it may write, with small limits for the limit tests. The probe tries to read planted decoy secrets, write outside its
/// paths, escape through symlinks and /proc, see host processes and interfaces, make
/// refused syscalls, exhaust memory, processes, files and /tmp, outlive the wall
/// clock, and reach the network; and races a declared path against a symlink while
/// launches set it up. Each item is PASS, FAIL or N/A with a reason (on the process
/// tier, items that need namespaces are N/A). Exit status 1 when any item fails.
///
/// Without an argument: the deny-all sandbox `skillsandbox exec` gives a command.
///
/// Examples:
///   skillsandbox check
///   skillsandbox check examples/weather-lookup --json
///   skillsandbox check ./my-skill --compare bwrap
///   skillsandbox check --tier process
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skill directory (containing skillsandbox.yaml) or the manifest file.
    #[arg(value_name = "SKILL")]
    pub skill: Option<PathBuf>,
    /// Print `{"items": [...], "host": {...}}` instead of the checklist.
    #[arg(long)]
    pub json: bool,
    /// Also run the battery under a hand-written bubblewrap configuration.
    #[arg(long, value_name = "TOOL", value_parser = ["bwrap"])]
    pub compare: Option<String>,
    /// Run even when a layer cannot be applied (the failing items show what is lost).
    #[arg(long)]
    pub allow_degraded: bool,
    /// Isolation tier to attack: auto, container or process (default: the manifest's).
    #[arg(long, value_name = "T", value_parser = super::exec::parse_tier)]
    pub tier: Option<Tier>,
}

/// `skillsandbox __probe <run> <params>` (hidden): the attacker, inside the sandbox.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    pub run: String,
    pub params: String,
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<u8> {
    Ok(probe_main(&args.run, &args.params))
}

fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    // The canary goes into our own environment first, before any thread exists: the
    // sandbox must not inherit it.
    let canary = EnvCanary::new()?;
    std::env::set_var(&canary.name, &canary.value);

    let (mut policy, label) = match &args.skill {
        Some(path) => {
            let p = super::load_policy(path)?;
            let label = format!("{} {} ({})", p.skill.name, p.skill.version, path.display());
            (p, label)
        }
        None => {
            let cwd = std::env::current_dir()?;
            let p = adhoc_policy(None, &[PROBE_INSIDE.to_string()], &Grants::default(), &cwd);
            (p, "the deny-all default of `skillsandbox exec`".to_string())
        }
    };
    if args.compare.is_some() && !bwrap::available() {
        return Err(exit(
            2,
            format!(
                "--compare bwrap: bubblewrap is not installed ({} not found); install it \
                 (e.g. apt install bubblewrap) or drop --compare",
                bwrap::BWRAP
            ),
        ));
    }
    if let Some(t) = args.tier {
        policy.tier = t;
    }
    let host = host_report();
    // Items that cannot hold by the nature of the tier are N/A there, with the reason.
    let tier = match policy.tier {
        Tier::Auto => host.auto.tier,
        t => t,
    };
    let label = format!(
        "{label} · {} tier",
        if tier == Tier::Process {
            "process"
        } else {
            "container"
        }
    );
    let exe = std::env::current_exe()?;
    let ws = Workspace::create(&policy, canary)?;
    if tier == Tier::Process {
        let id = skillsandbox_runtime::tier::process_identity();
        if id.drop_host_root {
            ws.hand_write_dir_to(id.host_uid, id.host_gid)?;
        }
    }
    let started = Instant::now();
    let (items, ends) = match runner::run_battery(&policy, &ws, &exe, args.allow_degraded, tier) {
        Ok(x) => x,
        Err(RunnerError::Setup {
            run,
            message,
            hint,
            exit_code,
        }) => {
            let hint = hint.map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            return Err(exit(
                u8::try_from(exit_code).unwrap_or(125),
                format!("check: the {run} probe run could not start: {message}{hint}"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let compared = match args.compare {
        Some(_) => Some(
            bwrap::run_battery(&policy, &ws, &exe)
                .map_err(|e| exit(125, format!("check --compare bwrap: {e}")))?,
        ),
        None => None,
    };
    let elapsed = started.elapsed();
    let failed = items.iter().any(|i| i.status == Status::Fail);

    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = json!({
            "skill": { "name": policy.skill.name, "version": policy.skill.version, "label": label },
            "tier": if tier == Tier::Process { "process" } else { "container" },
            "items": items,
            "host": host,
            "runs": ends,
        });
        if let Some(b) = &compared {
            doc["compare"] = json!({ "bwrap": {
                "args": bwrap::bwrap_args(&policy, &exe, &ws.write_dir),
                "items": b,
            }});
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        write!(
            out,
            "{}",
            render(
                &label,
                &host,
                &items,
                compared.as_deref(),
                elapsed.as_secs_f64()
            )
        )?;
    }
    Ok(u8::from(failed))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// The text checklist (and the bwrap column when compared).
pub fn render(
    label: &str,
    host: &HostReport,
    items: &[ReportItem],
    compared: Option<&[ReportItem]>,
    secs: f64,
) -> String {
    let mut s = format!("skillsandbox check · {label}\nhost: {}\n", summary(host));
    let width = catalog::ITEMS
        .iter()
        .map(|i| i.id.len())
        .max()
        .unwrap_or(20);
    for g in Group::ALL {
        let in_group: Vec<&ReportItem> = items.iter().filter(|i| i.group == g).collect();
        if in_group.is_empty() {
            continue;
        }
        match compared {
            Some(_) => s.push_str(&format!(
                "\n{:<w$}  skillsandbox  bwrap\n",
                g.name(),
                w = width + 2
            )),
            None => s.push_str(&format!("\n{}\n", g.name())),
        }
        for i in in_group {
            match compared {
                None => {
                    s.push_str(&format!(
                        "  {:<4}  {:<width$}  {}\n",
                        i.status.label(),
                        i.id,
                        shorten(&i.detail, 110)
                    ));
                    // A failure also says what is at stake.
                    if let (Status::Fail, Some(spec)) =
                        (i.status, catalog::ITEMS.iter().find(|s| s.id == i.id))
                    {
                        s.push_str(&format!(
                            "  {:<4}  {:<width$}  ↳ expected: {}\n",
                            "", "", spec.title
                        ));
                    }
                }
                Some(other) => {
                    let b = other.iter().find(|o| o.id == i.id);
                    let (bs, bd) = b.map_or(("-", String::new()), |b| {
                        (b.status.label(), b.detail.clone())
                    });
                    let note = if bs == "FAIL" {
                        shorten(&bd, 80)
                    } else {
                        String::new()
                    };
                    s.push_str(&format!(
                        "  {:<width$}  {:<12}  {:<5} {}\n",
                        i.id,
                        i.status.label(),
                        bs,
                        note
                    ));
                }
            }
        }
    }
    let count = |st: Status| items.iter().filter(|i| i.status == st).count();
    s.push_str(&format!(
        "\n{} items: {} PASS · {} FAIL · {} N/A · {:.1} s\n",
        items.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::NotApplicable),
        secs
    ));
    if let Some(other) = compared {
        let bfail = other.iter().filter(|i| i.status == Status::Fail).count();
        s.push_str(&format!(
            "bwrap (hand-written configuration): {bfail} FAIL\n"
        ));
    }
    s
}
