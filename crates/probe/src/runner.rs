//! The check side: one probe run per [`Run`] through the real runtime, in the exact
//! sandbox the manifest gets (plus a declared scratch directory, the probe binary
//! bound read-only, and small limits for the limit runs), then the verdicts only the
//! host can give: did the declared write land, did anything reach the host's loopback,
//! did the daemon survive, how did the run end.

use std::path::PathBuf;

use serde::Serialize;
use skillsandbox_audit::Termination;
use skillsandbox_manifest::{
    DomainPattern, EgressRule, HttpRules, Policy, SecretRule, SecretSource, Tier,
};
use skillsandbox_runtime::{run, RunRequest, Sink};

use super::catalog::{self, Group, ItemResult, Run, Status};
use super::params::{ProbeLimits, ProbeParams, PROBE_INSIDE, PROBE_SUBCOMMAND};
use super::race;
use super::workspace::{Workspace, CHECKED_NAME, OTHER_NAME};

/// The small limits substituted for the limit runs (or the manifest's, if smaller).
pub const CHECK_MEMORY_MB: u64 = 64;
pub const CHECK_PIDS: u64 = 16;
pub const CHECK_OPEN_FILES: u64 = 64;
pub const CHECK_FILE_SIZE_MB: u64 = 1;
pub const CHECK_TMP_MB: u64 = 4;
pub const CHECK_WALL_CLOCK_S: u64 = 2;
/// No probe run may take longer than this, whatever the manifest says.
const RUN_CAP_S: u64 = 60;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportItem {
    pub id: String,
    pub group: Group,
    pub status: Status,
    pub detail: String,
}

/// How one probe run ended, whoever ran it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunEnd {
    pub run: String,
    pub exit_code: i32,
    /// The signal that ended the probe, if any.
    pub signal: Option<i32>,
    /// The sandbox's own wall clock ended it.
    pub timed_out: bool,
    /// The sandbox's memory limit ended it.
    pub oom: bool,
    pub duration_ms: u64,
    pub memory_peak_bytes: Option<u64>,
    /// How it ended, in words (for details).
    pub summary: String,
    /// The sandbox resolver's decisions (names and whether they were refused).
    #[serde(skip)]
    pub dns: Vec<(String, String)>,
    #[serde(skip)]
    pub stderr_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("the {run} probe run could not start: {message}")]
    Setup {
        run: &'static str,
        message: String,
        hint: Option<String>,
        exit_code: i32,
    },
    #[error("cannot encode the probe parameters: {0}")]
    Params(#[from] serde_json::Error),
}

/// The limits each run is given (and the probe judges against).
pub fn limits_for(policy: &Policy) -> ProbeLimits {
    let l = &policy.limits;
    ProbeLimits {
        memory_mb: l.memory_mb.min(CHECK_MEMORY_MB),
        pids: l.max_processes.min(CHECK_PIDS),
        open_files: l.max_open_files.min(CHECK_OPEN_FILES),
        file_size_mb: l.max_file_size_mb.clamp(1, CHECK_FILE_SIZE_MB),
        tmp_mb: l.tmp_size_mb.clamp(1, CHECK_TMP_MB),
        wall_clock_s: l.max_runtime_seconds.clamp(1, CHECK_WALL_CLOCK_S),
    }
}

/// The manifest's policy, with the probe as entrypoint and the run's small limits.
pub fn policy_for(base: &Policy, run: Run, ws: &Workspace, small: &ProbeLimits) -> Policy {
    let mut p = base.clone();
    p.entrypoint.command = PROBE_INSIDE.to_string();
    p.entrypoint.args = Vec::new();
    if run == Run::Main {
        p.filesystem.write.push(ws.write_dir.clone());
    }
    let l = &mut p.limits;
    l.max_runtime_seconds = l.max_runtime_seconds.min(RUN_CAP_S);
    match run {
        Run::Limits => {
            l.max_processes = small.pids;
            l.max_open_files = small.open_files;
            l.max_file_size_mb = small.file_size_mb;
            l.tmp_size_mb = small.tmp_mb;
        }
        Run::Memory => l.memory_mb = small.memory_mb,
        Run::WallClock => l.max_runtime_seconds = small.wall_clock_s,
        Run::Requests => {
            let port = ws.upstream.port;
            let checked = DomainPattern::Exact(CHECKED_NAME.to_string());
            p.network.egress.extend([
                EgressRule::Domain {
                    domain: checked.clone(),
                    ports: vec![port],
                    http: HttpRules {
                        methods: vec!["GET".to_string()],
                        ..HttpRules::default()
                    },
                    allow_private_resolution: true,
                },
                EgressRule::Domain {
                    domain: DomainPattern::Exact(OTHER_NAME.to_string()),
                    ports: vec![port],
                    http: HttpRules::default(),
                    allow_private_resolution: true,
                },
            ]);
            p.network.secrets.push(SecretRule {
                name: ws.secret.name.clone(),
                from: SecretSource::File(ws.secret.file.clone()),
                hosts: vec![checked],
                header: Some("Authorization".to_string()),
            });
        }
        Run::Main | Run::X32 | Run::I386 | Run::Race => {}
    }
    p
}

/// The probe's argv after the binary: `__probe <run> <params>`.
pub fn probe_args(run: Run, params: &ProbeParams) -> Result<Vec<String>, RunnerError> {
    Ok(vec![
        PROBE_SUBCOMMAND.to_string(),
        run.name().to_string(),
        serde_json::to_string(params)?,
    ])
}

/// Result lines in the probe's output (anything else is ignored).
pub fn parse_results(stdout: &str) -> Vec<ItemResult> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<ItemResult>(l.trim()).ok())
        .collect()
}

/// Run the whole battery through the runtime. A run that cannot be set up stops the
/// check: nothing about the sandbox can be said then.
pub fn run_battery(
    policy: &Policy,
    ws: &Workspace,
    exe: &std::path::Path,
    allow_degraded: bool,
    tier: Tier,
) -> Result<(Vec<ReportItem>, Vec<RunEnd>), RunnerError> {
    let process_tier = tier == Tier::Process;
    let small = limits_for(policy);
    let mut results = Vec::new();
    let mut ends = Vec::new();
    for r in Run::ALL {
        if r == Run::Requests && policy.network.egress.is_empty() {
            for spec in catalog::items_of(r) {
                results.push(result(
                    spec.id,
                    Status::NotApplicable,
                    "the manifest declares no egress: no request leaves the sandbox to front a host or carry a secret",
                ));
            }
            continue;
        }
        if process_tier && r == Run::Requests {
            // Refused by the runtime there: say why instead of stopping the check.
            for spec in catalog::items_of(r) {
                results.push(result(
                    spec.id,
                    Status::NotApplicable,
                    catalog::not_on_process_tier(spec.id).unwrap_or("not on the process tier"),
                ));
            }
            continue;
        }
        if r == Run::Race {
            results.push(race_launches(
                policy,
                ws,
                exe,
                allow_degraded,
                &small,
                process_tier,
            )?);
            continue;
        }
        let mut params = ws.params(policy, small.clone());
        params.process_tier = process_tier;
        let req = request(
            policy_for(policy, r, ws, &small),
            r,
            &params,
            ws,
            exe,
            allow_degraded,
        )?;
        // No session is attached, so nothing can refuse; a refusal is still reported.
        let outcome = run(req).map_err(|refusal| RunnerError::Setup {
            run: r.name(),
            message: refusal.to_string(),
            hint: None,
            exit_code: 3,
        })?;
        if let Some(message) = outcome.error.clone() {
            return Err(RunnerError::Setup {
                run: r.name(),
                message,
                hint: outcome.hint.clone(),
                exit_code: outcome.exit_code,
            });
        }
        let t = &outcome.trace;
        let end = RunEnd {
            run: r.name().to_string(),
            exit_code: outcome.exit_code,
            signal: (outcome.termination == Termination::Signaled)
                .then_some(outcome.exit_code - 128),
            timed_out: outcome.termination == Termination::Timeout,
            oom: outcome.termination == Termination::Oom,
            duration_ms: t.duration_ms,
            memory_peak_bytes: t.usage.memory_peak_bytes,
            summary: format!("{:?}, exit {}", outcome.termination, outcome.exit_code)
                .to_lowercase(),
            dns: t
                .network
                .dns
                .iter()
                .map(|d| (d.name.clone(), format!("{:?}", d.decision).to_lowercase()))
                .collect(),
            stderr_tail: tail(&outcome.stderr.text()),
        };
        results.extend(judge_run(
            r,
            parse_results(&outcome.stdout.text()),
            &end,
            ws,
            &params,
        ));
        ends.push(end);
    }
    if process_tier {
        for r in &mut results {
            if let Some(why) = catalog::not_on_process_tier(&r.id) {
                r.status = Status::NotApplicable;
                r.detail = why.to_string();
            }
        }
    }
    Ok((order(results), ends))
}

/// The run request of one probe run of `r` under `policy` (already [`policy_for`]).
fn request(
    policy: Policy,
    r: Run,
    params: &ProbeParams,
    ws: &Workspace,
    exe: &std::path::Path,
    allow_degraded: bool,
) -> Result<RunRequest, RunnerError> {
    let mut req = RunRequest::new(policy);
    req.extra_args = probe_args(r, params)?;
    req.stdout = Sink::Capture;
    req.stderr = Sink::Capture;
    req.trace_output = Some(ws.root.join(format!("trace-{}.json", r.name())));
    req.audit_log = Some(ws.root.join("audit.jsonl"));
    req.allow_degraded = allow_degraded;
    req.extra_ro_binds = vec![(exe.to_path_buf(), PathBuf::from(PROBE_INSIDE))];
    if r == Run::Requests {
        let local = vec![std::net::IpAddr::from([127, 0, 0, 1])];
        req.egress_hosts = [CHECKED_NAME, OTHER_NAME]
            .iter()
            .map(|n| (n.to_string(), local.clone()))
            .collect();
    }
    Ok(req)
}

/// Launches per variant of the race: at least this many, more (up to
/// [`RACE_MAX_LAUNCHES`]) until [`RACE_MIN_RAN`] of them ran the probe, within
/// [`RACE_BUDGET`].
const RACE_MIN_LAUNCHES: usize = 20;
const RACE_MAX_LAUNCHES: usize = 80;
const RACE_MIN_RAN: usize = 3;
const RACE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// `fs.toctou_declared_path`: for each variant, a racer on the host swaps the
/// declared path (or its parent) with a symlink to the canary while launch after
/// launch declares it and reads through it.
fn race_launches(
    policy: &Policy,
    ws: &Workspace,
    exe: &std::path::Path,
    allow_degraded: bool,
    small: &ProbeLimits,
    process_tier: bool,
) -> Result<ItemResult, RunnerError> {
    let mut raced = Vec::new();
    for v in race::Variant::ALL {
        let mut params = ws.params(policy, small.clone());
        params.process_tier = process_tier;
        params.race = Some(ws.race.probe(v));
        let mut p = policy_for(policy, Run::Race, ws, small);
        p.filesystem.read.push(ws.race.declared(v));
        let racer = race::Racer::start(&ws.race, v).map_err(|e| RunnerError::Setup {
            run: Run::Race.name(),
            message: format!("start the racer thread: {e}"),
            hint: None,
            exit_code: 125,
        })?;
        let started = std::time::Instant::now();
        let mut launches = Vec::new();
        let ran = |l: &[race::Launch]| {
            l.iter()
                .filter(|x| matches!(x, race::Launch::Ran { .. }))
                .count()
        };
        while launches.len() < RACE_MIN_LAUNCHES
            || (ran(&launches) < RACE_MIN_RAN
                && launches.len() < RACE_MAX_LAUNCHES
                && started.elapsed() < RACE_BUDGET)
        {
            let req = request(p.clone(), Run::Race, &params, ws, exe, allow_degraded)?;
            let launch = match run(req) {
                Err(refusal) => race::refused(&refusal.to_string()),
                Ok(outcome) => match outcome.error {
                    Some(message) => race::refused(&message),
                    None => {
                        let stdout = outcome.stdout.text();
                        let result = parse_results(&stdout)
                            .into_iter()
                            .find(|r| r.id == race::ITEM);
                        race::Launch::Ran { stdout, result }
                    }
                },
            };
            launches.push(launch);
        }
        raced.push(race::Raced {
            variant: v,
            launches,
            racer: racer.stop(),
        });
    }
    Ok(race::judge(&raced, &ws.race.canary_value))
}

fn tail(s: &str) -> String {
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(160).collect()
}

/// Items in catalog order, with their group.
pub fn order(results: Vec<ItemResult>) -> Vec<ReportItem> {
    catalog::ITEMS
        .iter()
        .filter_map(|s| {
            let r = results.iter().find(|r| r.id == s.id)?;
            Some(ReportItem {
                id: r.id.clone(),
                group: s.group,
                status: r.status,
                detail: r.detail.clone(),
            })
        })
        .collect()
}

fn result(id: &str, status: Status, detail: impl Into<String>) -> ItemResult {
    ItemResult {
        id: id.to_string(),
        status,
        detail: detail.into(),
    }
}

/// Every item the run owes, judged with what only the host knows. An item the probe
/// did not report is a FAIL unless the way the run ended is the expected verdict.
pub fn judge_run(
    run: Run,
    reported: Vec<ItemResult>,
    end: &RunEnd,
    ws: &Workspace,
    params: &ProbeParams,
) -> Vec<ItemResult> {
    let mut out = Vec::new();
    for spec in catalog::items_of(run) {
        let found = reported.iter().find(|r| r.id == spec.id).cloned();
        out.push(judge_item(spec.id, found, end, ws, params));
    }
    out
}

fn judge_item(
    id: &str,
    found: Option<ItemResult>,
    end: &RunEnd,
    ws: &Workspace,
    params: &ProbeParams,
) -> ItemResult {
    use Status::{Fail, Pass};
    let sigsys = end.signal == Some(libc::SIGSYS);
    match (id, found) {
        ("limits.memory", None) if end.oom => {
            let peak = end
                .memory_peak_bytes
                .map(|b| format!(", peak {} MiB", b / (1024 * 1024)))
                .unwrap_or_default();
            result(
                id,
                Pass,
                format!(
                    "OOM-killed (exit {}) under a {} MiB limit{peak}",
                    end.exit_code, params.limits.memory_mb
                ),
            )
        }
        ("seccomp.x32", None) if sigsys => {
            result(id, Pass, "killed by SIGSYS: the filter refuses the x32 ABI")
        }
        ("seccomp.i386", None) if sigsys => {
            result(id, Pass, "killed by SIGSYS: the filter refuses int 0x80")
        }
        ("seccomp.i386", None) if end.signal == Some(libc::SIGSEGV) => {
            result(id, Pass, "SIGSEGV: this kernel has no i386 emulation")
        }
        ("limits.wall_clock", None) if end.timed_out => result(
            id,
            Pass,
            format!(
                "killed at the deadline: {} ms for a {} s wall clock (exit {})",
                end.duration_ms, params.limits.wall_clock_s, end.exit_code
            ),
        ),
        ("limits.no_survivors", Some(r)) if r.status == Pass => {
            let left = ws.survivors();
            if left.is_empty() {
                result(id, Pass, "the detached daemon died with the run")
            } else {
                let pids: Vec<String> = left.iter().map(|p| p.to_string()).collect();
                for pid in left {
                    super::kill_survivor(pid);
                }
                result(
                    id,
                    Fail,
                    format!(
                        "host pid(s) {} survived the run (killed now)",
                        pids.join(" ")
                    ),
                )
            }
        }
        ("fs.write_declared", Some(r)) if r.status == Pass => {
            let host = ws.write_dir.join(&ws.marker);
            match std::fs::read_to_string(&host) {
                Ok(s) if s == ws.marker => {
                    use std::os::unix::fs::MetadataExt;
                    let owner = std::fs::metadata(&host)
                        .map(|m| m.uid())
                        .unwrap_or(u32::MAX);
                    result(
                        id,
                        Pass,
                        format!("{}; on the host, owned by uid {owner}", r.detail),
                    )
                }
                _ => result(
                    id,
                    Fail,
                    format!(
                        "the probe wrote {} but it is not on the host",
                        host.display()
                    ),
                ),
            }
        }
        ("cve.2020_15257", Some(r)) if r.status == Pass && ws.abstract_unix_was_reached() => {
            result(
                id,
                Fail,
                "the host's abstract unix listener accepted a connection from the sandbox",
            )
        }
        ("egress.host_loopback", Some(r)) if r.status == Pass => match ws.loopback_was_reached() {
            Some(how) => result(id, Fail, how),
            None => result(
                id,
                Pass,
                format!("{}; the host listeners saw no connection", r.detail),
            ),
        },
        ("egress.secret_exfiltration", Some(r)) if r.status == Pass => judge_secret(r, ws),
        ("egress.fronting_keepalive", Some(r)) if r.status == Pass => {
            let seen = ws.upstream.requests();
            let fronted: Vec<&String> = seen
                .iter()
                .filter(|l| l.contains(" /front-keepalive ") || l.contains(" /front-pipelined "))
                .collect();
            let first = seen.iter().filter(|l| l.contains(" /front-first ")).count();
            if !fronted.is_empty() {
                result(
                    id,
                    Fail,
                    format!("{}; but the upstream received {fronted:?}", r.detail),
                )
            } else if first != 2 {
                result(
                    id,
                    Fail,
                    format!(
                        "{}; but the upstream received {first} first requests, not 2",
                        r.detail
                    ),
                )
            } else {
                result(
                    id,
                    Pass,
                    format!(
                        "{}; the upstream received only the two first requests",
                        r.detail
                    ),
                )
            }
        }
        ("egress.dns_exfiltration" | "egress.undeclared_name", Some(r)) => {
            judge_dns(r, end, params.egress_declared)
        }
        (_, Some(r)) => r,
        (_, None) => {
            let stderr = if end.stderr_tail.is_empty() {
                String::new()
            } else {
                format!("; stderr: {}", end.stderr_tail)
            };
            result(
                id,
                Fail,
                format!(
                    "no result from the probe (run ended {}){stderr}",
                    end.summary
                ),
            )
        }
    }
}

/// The secret item, re-judged with what reached the check's upstream: the bound
/// request carried the real value, no refused request arrived, and the value is in
/// nothing the probe reported.
fn judge_secret(r: ItemResult, ws: &Workspace) -> ItemResult {
    let value = &ws.secret.value;
    let seen = ws.upstream.requests();
    let bound = seen
        .iter()
        .any(|l| l.contains(" /secret-bound ") && l.ends_with(&format!("Bearer {value}")));
    let refused: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("/secret-header") || l.contains("/secret-query"))
        .collect();
    let (status, why) = if r.detail.contains(value.as_str()) {
        (
            Status::Fail,
            "the real value is in the probe's report".to_string(),
        )
    } else if !refused.is_empty() {
        (
            Status::Fail,
            format!("the upstream received {} refused request(s)", refused.len()),
        )
    } else if !bound {
        (
            Status::Fail,
            "the bound host did not receive the real value".to_string(),
        )
    } else {
        (
            Status::Pass,
            "the bound host received the real value, nothing else arrived".to_string(),
        )
    };
    result(&r.id, status, format!("{}; {why}", r.detail))
}

/// DNS items, re-judged with the sandbox resolver's records. Each part of the detail
/// starts with the name asked. With egress declared, an "answered" refusal counts only
/// if the sandbox resolver recorded that very query (otherwise a real resolver
/// answered: the query left). A query that got no answer is a FAIL unless the record
/// shows the sandbox resolver received and refused it: then it was delivered inside
/// the namespace and cannot also have left (the missing answer is the resolver's
/// problem, not a leak).
fn judge_dns(r: ItemResult, end: &RunEnd, egress: bool) -> ItemResult {
    let recorded = |name: &str| {
        end.dns
            .iter()
            .find(|(n, _)| n.trim_end_matches('.').eq_ignore_ascii_case(name))
            .map(|(_, d)| d.clone())
    };
    let mut all_held = true;
    let parts: Vec<String> = r
        .detail
        .split("; ")
        .map(|part| {
            let name = part.split_whitespace().next().unwrap_or("");
            let silent = part.contains("no answer within");
            let answered = part.contains(": answered ");
            let leaked = part.contains(" resolved to ") || part.contains("no resolver should be reachable");
            match recorded(name) {
                Some(d) if silent && d == "blocked" => format!(
                    "{}: no answer came back, but the sandbox resolver received and refused it \
                     (trace: blocked), so it never left",
                    part.split(": no answer").next().unwrap_or(part)
                ),
                Some(d) => {
                    all_held &= !silent && !leaked && d == "blocked";
                    format!("{part} (trace: {d})")
                }
                None if answered && egress => {
                    all_held = false;
                    format!("{part}, but the sandbox resolver has no record of it: a resolver outside answered")
                }
                None => {
                    all_held &= !silent && !leaked;
                    part.to_string()
                }
            }
        })
        .collect();
    result(
        &r.id,
        if all_held { Status::Pass } else { Status::Fail },
        parts.join("; "),
    )
}
