//! The one run entry (DESIGN.md §2, §3 steps 1 and 7): every caller that starts a run
//! — `run`/`exec`, the MCP server, `check`, the hook — comes through [`run`], which
//! admits the session, chooses the tier and lowers the policy once ([`crate::lower`]),
//! launches, supervises, judges ([`crate::verdict`]), records and accounts.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use skillsandbox_audit::{
    self as audit, LayerReport, LayerStatus, Severity, Termination, Trace, TraceEvent, TraceSkill,
    ViolationKind,
};
use skillsandbox_manifest::Policy;
use skillsandbox_sandbox::cgroup::{CgroupLimits, SandboxCgroup};
use skillsandbox_sandbox::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use skillsandbox_sandbox::launch::{self, LaunchError, Running, StartOptions, WaitEnd};
use skillsandbox_sandbox::plan::ImageRoot;
use skillsandbox_sandbox::seccomp::Access;
use skillsandbox_sandbox::timing::Marks;
use skillsandbox_sandbox::warm::{Ahead, StageCgroup, WarmStage, WarmStages};

use crate::enforcement;
use crate::lower::{self, Mode, Prepared};
use crate::output::{self, Captured, Sink};
use crate::session::{Refusal, RunSession, SessionAccount};
use crate::setup::Setup;
use crate::verdict::{self, Observed};

/// Everything one run needs.
pub struct RunRequest {
    pub policy: Policy,
    /// Appended to the entrypoint's arguments.
    pub extra_args: Vec<String>,
    /// The skill's stdin; `None` gives it an empty pipe (end of input at once).
    pub stdin: Option<OwnedFd>,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Where the trace goes; `None`: `$XDG_STATE_HOME/skillsandbox/traces/<id>.json`.
    pub trace_output: Option<PathBuf>,
    /// The audit log; `None`: the default (`SKILLSANDBOX_AUDIT_LOG` or the state dir).
    pub audit_log: Option<PathBuf>,
    /// The session the run is charged to: admitted before anything starts, stopped
    /// by its kill switch, accounted after. `None`: no session.
    pub session: Option<RunSession>,
    /// The agent's tool call this run executes (recorded in the trace and audit log).
    pub tool_call_id: Option<String>,
    /// Run even when a requested layer (cgroup limits) cannot be applied; the trace
    /// then says exactly what is missing.
    pub allow_degraded: bool,
    /// Polled every 100 ms while the skill runs; `Some(reason)` kills the sandbox.
    pub should_stop: Box<dyn FnMut() -> Option<String> + Send>,
    /// (host path, absolute path inside): bound read-only and readable/executable
    /// under Landlock. Only `check` sets this (its probe binary); empty otherwise.
    pub extra_ro_binds: Vec<(PathBuf, PathBuf)>,
    /// `skillsandbox learn`: record every path and destination the skill names into
    /// [`RunOutcome::observed`] (seccomp user notification; the other layers still
    /// decide). Nothing else sets it.
    pub observe: bool,
    /// Names the egress service resolves to these addresses before the host
    /// resolver (over `SKILLSANDBOX_EGRESS_HOSTS`). Only `check` sets this, for its
    /// own local upstream; empty otherwise.
    pub egress_hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// `skillsandbox oci`: root the sandbox in an image's filesystem (with its own
    /// environment and hostname) instead of the host-built root. `None` otherwise.
    pub image_root: Option<ImageRoot>,
    /// Called once the sandbox is fully set up and enforced, with the skill waiting
    /// to `execve`; the skill runs only once it returns `Ok` (the OCI `create` /
    /// `start` split). `Err(reason)` ends the run as a setup failure, nothing run.
    pub start_gate: Option<StartGate>,
    /// `skillsandbox oci`: the spec's seccomp filter, stacked on ours (the stricter
    /// of the two). `None` otherwise.
    pub stacked_seccomp: Option<skillsandbox_sandbox::seccomp::StackedFilter>,
    /// `skillsandbox oci` with `skillsandbox.network=engine`: the engine's network
    /// namespace instead of ours (no egress enforcement; refused with declared
    /// egress). [`NetworkPlan::Sandbox`](skillsandbox_sandbox::plan::NetworkPlan) otherwise.
    pub network: skillsandbox_sandbox::plan::NetworkPlan,
    /// `skillsandbox oci` with `process.terminal`: the skill's stdio is a new terminal
    /// of the sandbox's own devpts; this receives its master end (and its path inside)
    /// once the sandbox is set up, before the start gate. `Err(reason)` ends the run as
    /// a setup failure. Container tier only.
    pub terminal: Option<TerminalHandover>,
    /// Record every filesystem access the sandbox refuses as a `filesystem_denied`
    /// violation (`--record-denials`; see `denials`): every path call then waits for
    /// the supervisor (about 9× the cost of an `open`).
    pub record_denials: bool,
    /// `skillsandbox oci` with `process.user`: the uid and gid the skill has inside
    /// (the sandbox's one unprivileged host id, mapped to them). `None`: root inside.
    /// Container tier only.
    pub user: Option<(u32, u32)>,
    /// Stages spawned ahead of the launch ([`WarmStages`]): one is taken for this
    /// run, taking the re-exec of our binary off its launch path. `None`: the launch
    /// spawns its own stage.
    pub stages: Option<Arc<WarmStages>>,
}

/// The binary a run's stage re-executes: ours. Also what a [`WarmStages`] pool for
/// [`RunRequest::stages`] spawns.
pub fn stage_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// See [`RunRequest::start_gate`].
pub type StartGate = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// See [`RunRequest::terminal`].
pub type TerminalHandover = Box<dyn FnOnce(OwnedFd, &str) -> Result<(), String> + Send>;

impl RunRequest {
    /// A request with the defaults: stream output to our stdout/stderr, default trace
    /// and audit locations, no session, fail closed.
    pub fn new(policy: Policy) -> Self {
        RunRequest {
            policy,
            extra_args: Vec::new(),
            stdin: None,
            stdout: Sink::Forward(Box::new(std::io::stdout())),
            stderr: Sink::Forward(Box::new(std::io::stderr())),
            trace_output: None,
            audit_log: None,
            session: None,
            tool_call_id: None,
            allow_degraded: false,
            should_stop: Box::new(|| None),
            extra_ro_binds: Vec::new(),
            observe: false,
            egress_hosts: Default::default(),
            image_root: None,
            start_gate: None,
            stacked_seccomp: None,
            network: Default::default(),
            terminal: None,
            user: None,
            record_denials: false,
            stages: None,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The process exit code to report (the skill's own, or 124/125/126/127/137).
    pub exit_code: i32,
    pub termination: Termination,
    pub stdout: Captured,
    pub stderr: Captured,
    pub trace: Trace,
    /// Where the trace was written (`None` if writing it failed: see `warnings`).
    pub trace_path: Option<PathBuf>,
    /// Setup failure: one line, then the hint.
    pub error: Option<String>,
    pub hint: Option<String>,
    /// Problems recording the run (trace or audit log could not be written).
    pub warnings: Vec<String>,
    /// What the session engine did with the run (`None`: no session).
    pub session: Option<SessionAccount>,
    /// With [`RunRequest::observe`]: every path and destination named, in order
    /// (bounded at [`MAX_OBSERVED`]).
    pub observed: Vec<Access>,
}

/// Observed calls kept per run; more are counted in a trace event, not kept.
pub const MAX_OBSERVED: usize = 100_000;

fn new_trace(req: &RunRequest, session_id: Option<&str>, trace_id: &str) -> Trace {
    let p = &req.policy;
    let mut command = vec![p.entrypoint.command.clone()];
    command.extend(p.entrypoint.args.iter().cloned());
    command.extend(req.extra_args.iter().cloned());
    let now = audit::now();
    Trace {
        schema_version: audit::TRACE_SCHEMA_VERSION,
        trace_id: trace_id.to_string(),
        run_id: trace_id.to_string(),
        session_id: session_id.map(str::to_owned),
        skill: TraceSkill {
            name: p.skill.name.clone(),
            version: p.skill.version.clone(),
            manifest_path: p.manifest.as_ref().map(|m| m.path.display().to_string()),
            manifest_sha256: p.manifest.as_ref().map(|m| m.sha256.clone()),
        },
        command,
        tier: "container".to_string(),
        started_at: now.clone(),
        finished_at: now,
        duration_ms: 0,
        exit_code: 0,
        termination: Termination::Exited,
        enforcement: Vec::new(),
        usage: Default::default(),
        network: Default::default(),
        events: Vec::new(),
        policy_violations: Vec::new(),
        setup_error: None,
        tool_call_id: req.tool_call_id.clone(),
        timings: Vec::new(),
    }
}

fn event(kind: &str, detail: impl Into<String>) -> TraceEvent {
    TraceEvent {
        time: audit::now(),
        kind: kind.to_string(),
        detail: detail.into(),
    }
}

/// Run one skill confined: admit it into its session (a refusal starts nothing and
/// writes no trace), prepare, launch, supervise, record, account. Blocking; call it
/// from a thread that lives until it returns (the sandbox is tied to the thread that
/// spawned it).
pub fn run(mut req: RunRequest) -> Result<RunOutcome, Refusal> {
    let session = req.session.take();
    let admission = match &session {
        Some(s) => Some(s.engine.admit(&s.id)?),
        None => None,
    };
    // The session's kill switch joins the caller's stop check; remember which fired.
    let stopped_by_session: Arc<OnceLock<String>> = Arc::default();
    if let (Some(s), Some(a)) = (&session, &admission) {
        let mut caller = std::mem::replace(&mut req.should_stop, Box::new(|| None));
        let mut killed = s.engine.stop_check(a);
        let noted = Arc::clone(&stopped_by_session);
        req.should_stop = Box::new(move || {
            if let Some(why) = caller() {
                return Some(why);
            }
            let why = killed()?;
            let _ = noted.set(why.clone());
            Some(why)
        });
    }
    let mut outcome = confine_and_record(req, session.as_ref().map(|s| s.id.as_str()));
    if let (Some(s), Some(a)) = (&session, &admission) {
        outcome.session = Some(s.account(a, &outcome.trace, stopped_by_session.get().cloned()));
    }
    Ok(outcome)
}

fn confine_and_record(mut req: RunRequest, session_id: Option<&str>) -> RunOutcome {
    let started = Instant::now();
    let mut marks = Marks::start();
    // A stage made ahead comes with its run's id (its cgroup is named after it).
    let warm = req.stages.as_ref().and_then(|w| w.take());
    let trace_id = match warm.as_ref().and_then(|w| w.cgroup.as_ref()) {
        Some(c) => c.run_id.clone(),
        None => audit::new_trace_id(),
    };
    let mut trace = new_trace(&req, session_id, &trace_id);
    let mut outcome = RunOutcome {
        exit_code: 125,
        termination: Termination::SetupFailed,
        stdout: Captured::default(),
        stderr: Captured::default(),
        trace: trace.clone(),
        trace_path: None,
        error: None,
        hint: None,
        warnings: Vec::new(),
        session: None,
        observed: Vec::new(),
    };
    if let Err(setup) = confined(
        &mut req,
        warm,
        &mut trace,
        &mut outcome,
        started,
        &mut marks,
    ) {
        trace.termination = Termination::SetupFailed;
        trace.exit_code = setup.exit_code;
        trace.setup_error = Some(match &setup.hint {
            Some(h) => format!("{} (hint: {h})", setup.message),
            None => setup.message.clone(),
        });
        outcome.exit_code = setup.exit_code;
        outcome.termination = Termination::SetupFailed;
        outcome.error = Some(setup.message);
        outcome.hint = setup.hint;
    }
    trace.finished_at = audit::now();
    trace.duration_ms = started.elapsed().as_millis() as u64;
    trace.timings = timings(&marks);
    record(&req, &mut trace, &mut outcome);
    // Writing the records is the last phase: in what the caller gets, not in the
    // trace file (which cannot time its own writing).
    marks.mark("record");
    trace.timings = timings(&marks);
    outcome.trace = trace;
    outcome
}

fn timings(marks: &Marks) -> Vec<audit::PhaseTiming> {
    marks
        .phases()
        .into_iter()
        .map(|(phase, us)| audit::PhaseTiming { phase, us })
        .collect()
}

fn record(req: &RunRequest, trace: &mut Trace, outcome: &mut RunOutcome) {
    let path = req
        .trace_output
        .clone()
        .unwrap_or_else(|| audit::default_trace_path(&trace.trace_id));
    // The trace file and the audit record are independent writes, each durable
    // (fsynced) before this returns; done at once, their fsyncs overlap (the
    // filesystem can commit them together) instead of queueing one after the other.
    let (written, appended) = std::thread::scope(|s| {
        let t: &Trace = trace;
        let writer = s.spawn(|| audit::write_trace_atomic(&path, t));
        let appended = match &req.audit_log {
            Some(p) => audit::AuditLog::open(p.clone()),
            None => audit::AuditLog::open_default(),
        }
        .and_then(|l| l.record_run(t, &path));
        let written = writer
            .join()
            .map_err(|_| "the writer thread panicked".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        (written, appended)
    });
    match written {
        Ok(()) => outcome.trace_path = Some(path.clone()),
        Err(e) => outcome.warnings.push(format!(
            "could not write the trace to {}: {e}",
            path.display()
        )),
    }
    if let Err(e) = appended {
        outcome
            .warnings
            .push(format!("could not append to the audit log: {e}"));
    }
    // OpenTelemetry: off unless OTEL_EXPORTER_OTLP_* is set; never fails the run.
    if let Err(e) = audit::export_run_span(trace) {
        outcome
            .warnings
            .push(format!("OpenTelemetry export failed: {e}"));
    }
}

fn confined(
    req: &mut RunRequest,
    warm: Option<WarmStage>,
    trace: &mut Trace,
    outcome: &mut RunOutcome,
    started: Instant,
    marks: &mut Marks,
) -> Result<(), Setup> {
    let policy = req.policy.clone();
    // The manifest's `isolation.record_denials`, or the caller's flag.
    req.record_denials |= policy.record_denials.unwrap_or(false);
    // 0. Request-level rules: the run's CA and the sandbox's trust in it.
    let intercept = crate::intercept::prepare(&policy)?;
    let mut binds = req.extra_ro_binds.clone();
    if let Some(i) = &intercept {
        binds.extend(i.binds.iter().cloned());
    }
    // 1. Supervisor: tier, declared paths, the plan (once), cgroup.
    let mut prepared = lower::prepare(
        &policy,
        &req.extra_args,
        Mode::Run {
            trace_id: &trace.trace_id,
            allow_degraded: req.allow_degraded,
            extra_ro_binds: &binds,
            observe: req.observe || req.record_denials,
            image_root: req.image_root.as_ref(),
            stacked_seccomp: req.stacked_seccomp.as_ref(),
            network: &req.network,
            terminal: req.terminal.is_some(),
            user: req.user,
        },
    )?;
    if let Some(i) = &intercept {
        if prepared.process.is_some() {
            return Err(Setup::new(
                "request-level egress rules (methods, paths, caps) need the container tier",
                Some("set `isolation: tier: container`, or leave the rules out".into()),
            ));
        }
        prepared
            .plan
            .env
            .retain(|(k, _)| !i.env.iter().any(|(n, _)| n == k));
        prepared.plan.env.extend(i.env.iter().cloned());
        prepared.plan.env.sort();
    }
    marks.extend(std::mem::take(&mut prepared.marks));
    if prepared.disabled() != Some(LayerDisabledForTests::Seccomp) {
        prepared.plan.compile_seccomp().map_err(|e| {
            Setup::new(
                format!("seccomp: {e}"),
                Some("the kernel needs CONFIG_SECCOMP_FILTER; see skillsandbox doctor".into()),
            )
        })?;
    }
    marks.mark("seccomp_compile");
    if req.record_denials {
        trace.events.push(event(
            "setup",
            "filesystem denials recorded: every path call is read by the supervisor \
             (seccomp user notification) and judged against the plan",
        ));
    }
    trace.tier = prepared.choice.name().to_string();
    for (kind, detail) in &prepared.events {
        trace.events.push(event(kind, detail.clone()));
    }
    let cgroup_disabled = prepared.disabled() == Some(LayerDisabledForTests::Cgroup);
    let (stage, premade) = warm_stage(warm, &policy, cgroup_disabled);
    // A cgroup made with the stage holds it already.
    let in_cgroup = premade.is_some();
    let (cgroup, cgroup_missing) = if cgroup_disabled {
        (None, Some(DISABLED_FOR_TESTS.to_string()))
    } else if let Some(cg) = premade {
        (Some(cg), None)
    } else {
        create_cgroup(&policy, &trace.trace_id, req.allow_degraded)?
    };
    if let Some(why) = &cgroup_missing {
        trace.events.push(event(
            "degraded",
            format!("cgroup limits not applied: {why}"),
        ));
    }
    marks.mark("cgroup_create");

    // 2–6. Spawn the stages; they come back once the skill is about to exec.
    if stage.is_some() {
        trace.events.push(event(
            "setup",
            if in_cgroup {
                "stage spawned ahead of the launch (warm), in a cgroup made with it and \
                 given this run's limits: a fresh process, used by this run only"
            } else {
                "stage spawned ahead of the launch (warm): a fresh process, used by this \
                 run only"
            },
        ));
    }
    let mut running = launch::start(
        &prepared.plan,
        StartOptions {
            exe: stage_exe(),
            stdin: req.stdin.take(),
            stage,
        },
        |pid| match &cgroup {
            Some(cg) if !in_cgroup => cg.add_pid(pid as i32).map_err(|e| e.to_string()),
            _ => Ok(()),
        },
    )
    .map_err(|e| Setup::launch(&policy, &e))?;
    marks.extend(std::mem::take(&mut running.marks));
    let egress_service = match running.egress.take() {
        Some((ports, fds)) => Some(
            crate::egress::start(
                &policy.network,
                &ports,
                fds,
                intercept.as_ref(),
                &req.egress_hosts,
            )
            .map_err(|e| Setup::new(format!("egress service: {e}"), None))?,
        ),
        None => None,
    };
    trace.enforcement = enforcement_report(
        &prepared,
        &running,
        cgroup.as_ref(),
        cgroup_missing.as_deref(),
        egress_service
            .as_ref()
            .map(|_| crate::egress::describe(&policy.network)),
    );
    if egress_service.is_some() {
        marks.mark("egress_start");
    }
    if let Some(hand_over) = req.terminal.take() {
        let (master, name) = running
            .terminal
            .take()
            .ok_or_else(|| Setup::new("the sandbox opened no terminal", None))?;
        hand_over(master, &name).map_err(|why| Setup::new(format!("terminal: {why}"), None))?;
        trace.events.push(event(
            "terminal",
            format!("{name} (the sandbox's own devpts) handed to the engine"),
        ));
    }
    refuse_unenforced(&trace.enforcement, &prepared, req.allow_degraded)?;
    if let Some(gate) = req.start_gate.take() {
        gate().map_err(|why| Setup::new(format!("not started: {why}"), None))?;
        marks.mark("start_gate");
    }
    // Only now may the skill run (it has been waiting, fully confined, for this).
    running
        .go()
        .map_err(|e| Setup::new(format!("starting the skill: {e}"), None))?;
    marks.mark("go");

    // 7. Serve, stream, enforce the wall clock, wait; then no survivors.
    let refusals = running.seccomp_notify.take().map(|fd| {
        let listen = Listen {
            observe: prepared.plan.seccomp_observe,
            keep_accesses: req.observe,
            // `learn` proposes a manifest from what it saw; it counts no violations.
            egress: (prepared.plan.seccomp_watch_egress && !req.observe).then_some(EgressWatch {
                // The process tier's loopback is the host's; the container tier's its own.
                loopback_is_host: prepared.process.is_some(),
            }),
            denials: req
                .record_denials
                .then(|| crate::denials::FsJudge::from_plan(&prepared.plan)),
        };
        observe_seccomp(fd, prepared.plan.seccomp_plan(), listen)
    });
    let deadline = started + Duration::from_secs(policy.limits.max_runtime_seconds);
    let end = supervise(
        req,
        &mut running,
        cgroup.as_ref(),
        deadline,
        outcome,
        trace,
        marks,
    );
    if let Some(msg) = running.late_failure.take() {
        trace.events.push(event("exec", msg));
    }
    if let Some(svc) = egress_service {
        let report = svc.finish();
        trace.network.dns = report.dns;
        trace.network.connections = report.connections;
        trace.policy_violations.extend(report.violations);
        if report.records_dropped > 0 {
            trace.events.push(event(
                "egress",
                format!(
                    "{} network records dropped at the bound",
                    report.records_dropped
                ),
            ));
        }
    }
    let usage = cgroup.as_ref().map(|c| c.usage());
    let end = end.map_err(|e| Setup::new(format!("waiting for the sandbox: {e}"), None))?;
    if let WaitEnd::Stopped(reason) = &end {
        trace.events.push(event("killed", reason.clone()));
    }
    let v = verdict::judge(
        &Observed {
            end: &end,
            cgroup: usage.as_ref(),
            stdout: &outcome.stdout,
            stderr: &outcome.stderr,
        },
        &policy.limits,
    );
    outcome.exit_code = v.exit_code;
    outcome.termination = v.termination;
    trace.exit_code = v.exit_code;
    trace.termination = v.termination;
    trace.usage = v.usage;
    trace.policy_violations.extend(v.violations);
    if let Some(seen) = refusals {
        let (violations, accesses, dropped) = drain_refusals(seen);
        trace.policy_violations.extend(violations);
        outcome.observed = accesses;
        if dropped > 0 {
            trace.events.push(event(
                "observe",
                format!("{dropped} observed calls not kept (bound {MAX_OBSERVED})"),
            ));
        }
    }
    // With the seccomp listener's refusals, which it may take a moment to hand over.
    marks.mark("verdict");
    Ok(())
}

/// Pump stdout/stderr into the request's sinks, wait for the end (wall clock, stop
/// check), kill whatever is left (on every exit path: no survivors), and leave what
/// was captured in `outcome`.
fn supervise(
    req: &mut RunRequest,
    running: &mut Running,
    cgroup: Option<&SandboxCgroup>,
    deadline: Instant,
    outcome: &mut RunOutcome,
    trace: &mut Trace,
    marks: &mut Marks,
) -> Result<WaitEnd, LaunchError> {
    let cap = req.policy.limits.max_output_bytes;
    let stdout_sink = std::mem::replace(&mut req.stdout, Sink::Capture);
    let stderr_sink = std::mem::replace(&mut req.stderr, Sink::Capture);
    let out_pump = running
        .stdout
        .take()
        .map(|s| output::pump(s, stdout_sink, cap, "stdout"));
    let err_pump = running
        .stderr
        .take()
        .map(|s| output::pump(s, stderr_sink, cap, "stderr"));
    let end = running.wait(deadline, &mut req.should_stop);
    marks.mark("skill");
    if let Some(cg) = cgroup {
        if let Err(e) = cg.kill_all() {
            trace
                .events
                .push(event("cleanup", format!("cgroup kill: {e}")));
        }
    }
    running.kill();
    // Joined only now: a daemon the skill left could hold the pipes open until killed.
    outcome.stdout = out_pump.and_then(|h| h.join().ok()).unwrap_or_default();
    outcome.stderr = err_pump.and_then(|h| h.join().ok()).unwrap_or_default();
    marks.mark("teardown");
    end
}

/// The enforcement report of the tier in use, from what the launch reported.
fn enforcement_report(
    prepared: &Prepared,
    running: &Running,
    cgroup: Option<&SandboxCgroup>,
    cgroup_missing: Option<&str>,
    egress_detail: Option<String>,
) -> Vec<LayerReport> {
    match &prepared.process {
        Some(p) => crate::tier::process_enforcement(
            &prepared.plan,
            &running.layers,
            cgroup,
            cgroup_missing,
            &p.gaps,
        ),
        None => enforcement::after_launch(
            &prepared.plan,
            &running.layers,
            cgroup,
            cgroup_missing,
            egress_detail,
        ),
    }
}

/// Every layer must be in force unless the caller opted into less. Container tier:
/// Landlock is defence in depth behind the mount namespace (best effort, reported).
/// Process tier: namespaces are absent by design and reported; Landlock may be
/// partial (scoping needs ABI 6), never absent.
fn refuse_unenforced(
    report: &[LayerReport],
    prepared: &Prepared,
    allow_degraded: bool,
) -> Result<(), Setup> {
    let tolerated = |l: &LayerReport| match &prepared.process {
        // The network layer is not ours when the caller opted into the engine's
        // (`skillsandbox oci`, skillsandbox.network=engine): the trace says so.
        None => {
            l.layer == "landlock" || (l.layer == "network" && !prepared.plan.network.is_sandbox())
        }
        Some(_) => {
            crate::tier::inherent_gap(&l.layer)
                || (l.layer == "landlock" && l.status == LayerStatus::Partial)
        }
    };
    match report
        .iter()
        .find(|l| l.status != LayerStatus::Enforced && !tolerated(l) && !allow_degraded)
    {
        Some(l) => Err(Setup::new(
            format!("layer {} is not enforced: {}", l.layer, l.detail),
            Some("pass --allow-degraded to run with less isolation".into()),
        )),
        None => Ok(()),
    }
}

/// What the seccomp listener saw: refusals (as violations), observed calls, how many
/// observed calls were past the bound; and whether the listener has finished.
#[derive(Default)]
struct SeenCalls {
    violations: Vec<audit::Violation>,
    accesses: Vec<Access>,
    dropped: u64,
}

/// What the listener saw, and a channel that disconnects when it has finished.
type Seen = (
    Arc<std::sync::Mutex<SeenCalls>>,
    std::sync::mpsc::Receiver<()>,
);

/// The refused syscalls (and observed calls) the listener saw. It hangs up once every
/// filtered process is gone (they are: the cgroup and the PID namespace were killed);
/// give it a moment.
fn drain_refusals(seen: Seen) -> (Vec<audit::Violation>, Vec<Access>, u64) {
    // Returns as soon as the listener's thread ends (its sender is dropped), not on
    // a polling tick.
    let _ = seen.1.recv_timeout(Duration::from_millis(500));
    match seen.0.lock() {
        Ok(mut g) => (
            std::mem::take(&mut g.violations),
            std::mem::take(&mut g.accesses),
            g.dropped,
        ),
        Err(_) => Default::default(),
    }
}

/// [`LaunchPlan::seccomp_watch_egress`](skillsandbox_sandbox::plan::LaunchPlan): how
/// the destinations seen are judged.
#[derive(Clone, Copy)]
struct EgressWatch {
    /// The sandbox shares the host's loopback (process tier): reaching it counts.
    loopback_is_host: bool,
}

impl EgressWatch {
    /// A violation for a destination no rule allows (none is declared): an internet
    /// address, or the host's loopback; `None` for the sandbox's own loopback and for
    /// unix sockets (local to the sandbox's view).
    fn judge(self, a: &Access) -> Option<audit::Violation> {
        let addr: std::net::SocketAddr = a.target.parse().ok()?;
        if addr.ip().is_loopback() && !self.loopback_is_host {
            return None;
        }
        let who = a.by();
        Some(audit::violation(
            ViolationKind::NetworkBlocked,
            Severity::High,
            format!(
                "{} to {addr}{who} refused: the manifest declares no network",
                a.syscall
            ),
            None,
        ))
    }
}

/// What the seccomp listener does besides answering refusals.
struct Listen {
    /// The filter sends every path and destination call (`learn`, `--record-denials`).
    observe: bool,
    /// Keep what was observed for the caller (`learn`).
    keep_accesses: bool,
    /// No egress declared: attempts to reach a host become violations.
    egress: Option<EgressWatch>,
    /// `--record-denials`: refused filesystem accesses become violations.
    denials: Option<crate::denials::FsJudge>,
}

/// Serve the seccomp listener on its own thread: every refused syscall is answered
/// with the plan's errno and recorded as a violation; per [`Listen`], the calls
/// naming a path or destination are kept, judged, and let through (the mount view,
/// Landlock and the network namespace refuse what they refuse).
fn observe_seccomp(
    fd: std::os::fd::OwnedFd,
    plan: skillsandbox_sandbox::seccomp::SeccompPlan,
    listen: Listen,
) -> Seen {
    use skillsandbox_sandbox::seccomp::{
        serve_notifications, serve_observing, serve_watching_egress, AccessKind, SyscallRefusal,
    };
    use std::sync::Mutex;
    let seen = Arc::new(Mutex::new(SeenCalls::default()));
    let (finished, done) = std::sync::mpsc::channel::<()>();
    let l = seen.clone();
    std::thread::spawn(move || {
        // Dropped when this thread ends, however it ends: that is the signal.
        let _finished = finished;
        let refused = |r: SyscallRefusal| {
            let v = audit::violation(
                ViolationKind::SyscallBlocked,
                Severity::High,
                r.detail(),
                audit::mitre_for_syscall(&r.syscall),
            );
            if let Ok(mut g) = l.lock() {
                // Bounded: a skill looping on a refused call must not grow our memory.
                if g.violations.len() < 1000 {
                    g.violations.push(v);
                }
            }
        };
        let seen_access = |a: Access| {
            let judged = match (&listen.egress, &listen.denials) {
                (Some(w), _) if a.kind == AccessKind::Connect => w.judge(&a),
                (_, Some(j)) => j.judge(&a),
                _ => None,
            };
            if let Ok(mut g) = l.lock() {
                if let Some(v) = judged {
                    if g.violations.len() < 1000 {
                        g.violations.push(v);
                    }
                }
                if listen.keep_accesses {
                    if g.accesses.len() < MAX_OBSERVED {
                        g.accesses.push(a);
                    } else {
                        g.dropped += 1;
                    }
                }
            }
        };
        if listen.observe {
            let _ = serve_observing(fd, &plan, refused, seen_access);
        } else if listen.egress.is_some() {
            let _ = serve_watching_egress(fd, &plan, refused, seen_access);
        } else {
            let _ = serve_notifications(fd, &plan, refused);
        }
    });
    (seen, done)
}

/// A stage from the warm pool, if any, and the cgroup made ahead that holds it,
/// given this run's limits. Where the stage's cgroup cannot be this run's (the limits cannot be
/// written, or the cgroup layer is disabled for a test), the stage is discarded with
/// it: it must never run in a cgroup the run does not report.
fn warm_stage(
    warm: Option<WarmStage>,
    policy: &Policy,
    cgroup_disabled: bool,
) -> (Option<launch::Stage>, Option<SandboxCgroup>) {
    let Some(WarmStage { stage, cgroup }) = warm else {
        return (None, None);
    };
    match cgroup {
        None => (Some(stage), None),
        Some(StageCgroup { mut cgroup, .. }) => {
            let limits = CgroupLimits::from_policy(&policy.limits);
            if !cgroup_disabled && cgroup.set_limits(&limits).is_ok() {
                (Some(stage), Some(cgroup))
            } else {
                // The stage first (killed and reaped), then its cgroup.
                drop(stage);
                drop(cgroup);
                (None, None)
            }
        }
    }
}

/// Stages spawned ahead of runs (see [`RunRequest::stages`]): one for the run that
/// follows, or (`keep`) one kept ready at all times for a long-lived supervisor. Each
/// waits in a cgroup made ahead with `usual` limits and named after its run's id; a
/// run with other limits writes its own over them.
pub fn warm_stages(
    keep: bool,
    usual: &skillsandbox_manifest::policy::Limits,
) -> std::io::Result<WarmStages> {
    let ahead = Some(Ahead {
        limits: CgroupLimits::from_policy(usual),
        new_run_id: audit::new_trace_id,
    });
    if keep {
        WarmStages::keep_one(stage_exe(), ahead)
    } else {
        WarmStages::one(stage_exe(), ahead)
    }
}

fn create_cgroup(
    policy: &Policy,
    trace_id: &str,
    allow_degraded: bool,
) -> Result<(Option<SandboxCgroup>, Option<String>), Setup> {
    let limits = CgroupLimits::from_policy(&policy.limits);
    match skillsandbox_sandbox::cgroup::create_for_run(trace_id, &limits) {
        Ok(cg) => Ok((Some(cg), None)),
        Err(e) if allow_degraded => Ok((None, Some(e.to_string()))),
        Err(e) => Err(Setup::new(
            format!("cannot apply resource limits: {e}"),
            Some("run as root, start from a delegated cgroup, or pass --allow-degraded".into()),
        )),
    }
}
