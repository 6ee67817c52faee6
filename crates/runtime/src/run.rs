//! One confined run, start to record (DESIGN.md §3 steps 1 and 7).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use skillsandbox_audit::{
    self as audit, LayerStatus, Severity, Termination, Trace, TraceEvent, TraceSkill, ViolationKind,
};
use skillsandbox_manifest::{Policy, Tier};
use skillsandbox_sandbox::cgroup::{CgroupLimits, CgroupRoots, SandboxCgroup};
use skillsandbox_sandbox::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use skillsandbox_sandbox::launch::{self, LaunchError, StartOptions, WaitEnd};
use skillsandbox_sandbox::plan::LaunchPlan;

use crate::enforcement;
use crate::output::{self, Captured, Sink};
use crate::prepare;

/// Everything one run needs.
pub struct RunRequest {
    pub policy: Policy,
    /// Appended to the entrypoint's arguments.
    pub extra_args: Vec<String>,
    /// The skill's stdin; `None` gives it `/dev/null`.
    pub stdin: Option<OwnedFd>,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Where the trace goes; `None`: `$XDG_STATE_HOME/skillsandbox/traces/<id>.json`.
    pub trace_output: Option<PathBuf>,
    /// The audit log; `None`: the default (`SKILLSANDBOX_AUDIT_LOG` or the state dir).
    pub audit_log: Option<PathBuf>,
    pub session_id: Option<String>,
    /// Run even when a requested layer (cgroup limits) cannot be applied; the trace
    /// then says exactly what is missing.
    pub allow_degraded: bool,
    /// Polled every 100 ms while the skill runs; `Some(reason)` kills the sandbox.
    pub should_stop: Box<dyn FnMut() -> Option<String> + Send>,
    /// (host path, absolute path inside): bound read-only and readable/executable
    /// under Landlock. Only `check` sets this (its probe binary); empty otherwise.
    pub extra_ro_binds: Vec<(PathBuf, PathBuf)>,
}

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
            session_id: None,
            allow_degraded: false,
            should_stop: Box::new(|| None),
            extra_ro_binds: Vec::new(),
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
}

/// The launch plan a run would use (for `--dry-run`).
pub fn dry_run_plan(policy: &Policy, extra_args: &[String]) -> Result<LaunchPlan, String> {
    if crate::tier::choose(policy.tier).is_ok_and(|c| c.tier == Tier::Process) {
        return crate::tier::dry_run_process_plan(policy, extra_args, false)
            .map_err(|e| e.to_string());
    }
    prepare::launch_plan(policy, extra_args, false, &[]).map_err(|e| e.to_string())
}

struct Setup {
    message: String,
    hint: Option<String>,
    exit_code: i32,
}

impl Setup {
    fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Setup {
            message: message.into(),
            hint,
            exit_code: 125,
        }
    }
}

fn new_trace(req: &RunRequest, trace_id: &str) -> Trace {
    let p = &req.policy;
    let mut command = vec![p.entrypoint.command.clone()];
    command.extend(p.entrypoint.args.iter().cloned());
    command.extend(req.extra_args.iter().cloned());
    let now = audit::now();
    Trace {
        schema_version: audit::TRACE_SCHEMA_VERSION,
        trace_id: trace_id.to_string(),
        run_id: trace_id.to_string(),
        session_id: req.session_id.clone(),
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
    }
}

fn event(kind: &str, detail: impl Into<String>) -> TraceEvent {
    TraceEvent {
        time: audit::now(),
        kind: kind.to_string(),
        detail: detail.into(),
    }
}

/// Run one skill confined. Blocking; call it from a thread that lives until it
/// returns (the sandbox is tied to the thread that spawned it).
pub fn run(mut req: RunRequest) -> RunOutcome {
    let started = Instant::now();
    let trace_id = audit::new_trace_id();
    let mut trace = new_trace(&req, &trace_id);
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
    };

    match confined(&mut req, &mut trace, &mut outcome, started) {
        Ok(()) => {}
        Err(setup) => {
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
    }
    trace.finished_at = audit::now();
    trace.duration_ms = started.elapsed().as_millis() as u64;
    record(&req, &mut trace, &mut outcome);
    outcome.trace = trace;
    outcome
}

fn record(req: &RunRequest, trace: &mut Trace, outcome: &mut RunOutcome) {
    let path = req
        .trace_output
        .clone()
        .unwrap_or_else(|| audit::default_trace_path(&trace.trace_id));
    match audit::write_trace_atomic(&path, trace) {
        Ok(()) => outcome.trace_path = Some(path.clone()),
        Err(e) => outcome.warnings.push(format!(
            "could not write the trace to {}: {e}",
            path.display()
        )),
    }
    let log = match &req.audit_log {
        Some(p) => audit::AuditLog::open(p.clone()),
        None => audit::AuditLog::open_default(),
    };
    match log.and_then(|l| l.record_run(trace, &path)) {
        Ok(_) => {}
        Err(e) => outcome
            .warnings
            .push(format!("could not append to the audit log: {e}")),
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
    trace: &mut Trace,
    outcome: &mut RunOutcome,
    started: Instant,
) -> Result<(), Setup> {
    let policy = req.policy.clone();
    // 1. Supervisor: tier, declared paths, plan, cgroup.
    let choice =
        crate::tier::choose(policy.tier).map_err(|e| Setup::new(e.to_string(), e.hint()))?;
    trace.tier = choice.name().to_string();
    trace.events.push(event("tier", choice.reason.clone()));
    let fresh_writes = crate::tier::absent_write_dirs(&policy);
    let notes =
        prepare::check_declared_paths(&policy).map_err(|e| Setup::new(e.to_string(), None))?;
    for n in notes {
        trace.events.push(event("setup", n));
    }
    // The process tier: refusal of what it cannot enforce, scratch dir, its own plan.
    let process = match choice.tier {
        Tier::Process => Some(
            crate::tier::prepare_process(
                &policy,
                &req.extra_args,
                &trace.trace_id,
                req.allow_degraded,
                &fresh_writes,
            )
            .map_err(|e| Setup::new(e.to_string(), e.hint()))?,
        ),
        _ => None,
    };
    for g in process.iter().flat_map(|p| &p.gaps) {
        let what = format!("{} not enforced: {}", g.layer, g.detail);
        trace.events.push(event("degraded", what));
    }
    let plan = match &process {
        Some(p) => p.plan.clone(),
        None => prepare::launch_plan(&policy, &req.extra_args, true, &req.extra_ro_binds)
            .map_err(|e| Setup::new(e.to_string(), None))?,
    };
    // The test-only switch: never run with a layer off unless the caller opted in.
    let disabled = plan.dangerously_disabled_layer;
    if let Some(layer) = disabled {
        if !req.allow_degraded {
            return Err(Setup::new(
                format!("layer {} is {DISABLED_FOR_TESTS}", layer.name()),
                Some("unset it (it exists for tests), or pass --allow-degraded".into()),
            ));
        }
        trace.events.push(event(
            "degraded",
            format!("layer {} {DISABLED_FOR_TESTS}", layer.name()),
        ));
    }

    let (cgroup, cgroup_missing) = if disabled == Some(LayerDisabledForTests::Cgroup) {
        (None, Some(DISABLED_FOR_TESTS.to_string()))
    } else {
        create_cgroup(&policy, &trace.trace_id, req.allow_degraded)?
    };
    if let Some(why) = &cgroup_missing {
        trace.events.push(event(
            "degraded",
            format!("cgroup limits not applied: {why}"),
        ));
    }

    // 2–6. Spawn the stages; they come back once the skill is about to exec.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut running = launch::start(
        &plan,
        StartOptions {
            exe,
            stdin: req.stdin.take(),
        },
        |pid| match &cgroup {
            Some(cg) => cg.add_pid(pid as i32).map_err(|e| e.to_string()),
            None => Ok(()),
        },
    )
    .map_err(|e| launch_failure(&policy, &e))?;

    let egress_service = match running.egress.take() {
        Some((ports, fds)) => Some(
            crate::egress::start(&policy.network, &ports, fds)
                .map_err(|e| Setup::new(format!("egress service: {e}"), None))?,
        ),
        None => None,
    };
    let egress_detail = egress_service
        .as_ref()
        .map(|_| crate::egress::describe(&policy.network));
    trace.enforcement = match &process {
        Some(p) => crate::tier::process_enforcement(
            &plan,
            &running.layers,
            cgroup.as_ref(),
            cgroup_missing.as_deref(),
            &p.gaps,
        ),
        None => enforcement::after_launch(
            &plan,
            &running.layers,
            cgroup.as_ref(),
            cgroup_missing.as_deref(),
            egress_detail,
        ),
    };
    // Container tier: Landlock is defence in depth behind the mount namespace (best
    // effort, reported). Process tier: namespaces are absent by design and reported;
    // Landlock may be partial (scoping needs ABI 6), never absent.
    let tolerated = |l: &skillsandbox_audit::LayerReport| match &process {
        None => l.layer == "landlock",
        Some(_) => {
            crate::tier::inherent_gap(&l.layer)
                || (l.layer == "landlock" && l.status == LayerStatus::Partial)
        }
    };
    // Every other layer must be in force unless the caller opted into less.
    if let Some(degraded) = trace
        .enforcement
        .iter()
        .find(|l| l.status != LayerStatus::Enforced && !tolerated(l) && !req.allow_degraded)
    {
        return Err(Setup::new(
            format!(
                "layer {} is not enforced: {}",
                degraded.layer, degraded.detail
            ),
            Some("pass --allow-degraded to run with less isolation".into()),
        ));
    }
    // Only now may the skill run (it has been waiting, fully confined, for this).
    running
        .go()
        .map_err(|e| Setup::new(format!("starting the skill: {e}"), None))?;

    // 7. Serve, stream, enforce the wall clock, wait.
    let refusals = running
        .seccomp_notify
        .take()
        .map(|fd| observe_seccomp(fd, plan.seccomp));
    let cap = policy.limits.max_output_bytes;
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
    let deadline = started + Duration::from_secs(policy.limits.max_runtime_seconds);
    let end = running.wait(deadline, &mut req.should_stop);

    // On every exit path: no survivors, then usage.
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.kill_all() {
            trace
                .events
                .push(event("cleanup", format!("cgroup kill: {e}")));
        }
    }
    running.kill();
    outcome.stdout = out_pump.and_then(|h| h.join().ok()).unwrap_or_default();
    outcome.stderr = err_pump.and_then(|h| h.join().ok()).unwrap_or_default();
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
    let oom = usage.as_ref().is_some_and(|u| u.oom_kills > 0);

    let end = end.map_err(|e| Setup::new(format!("waiting for the sandbox: {e}"), None))?;
    let (code, termination) = match end {
        WaitEnd::TimedOut => (124, Termination::Timeout),
        WaitEnd::Stopped(reason) => {
            trace.events.push(event("killed", reason));
            (137, Termination::Killed)
        }
        WaitEnd::Exited { code: Some(c), .. } if !oom => (c, Termination::Exited),
        WaitEnd::Exited { .. } if oom => (137, Termination::Oom),
        WaitEnd::Exited { signal, .. } => (128 + signal.unwrap_or(0), Termination::Signaled),
    };
    outcome.exit_code = code;
    outcome.termination = termination;
    trace.exit_code = code;
    trace.termination = termination;

    // Usage and resource violations.
    let u = &mut trace.usage;
    u.stdout_bytes = outcome.stdout.total;
    u.stderr_bytes = outcome.stderr.total;
    u.stdout_truncated = outcome.stdout.truncated;
    u.stderr_truncated = outcome.stderr.truncated;
    if let Some(cu) = &usage {
        u.cpu_user_ms = cu.cpu_usage_ns.unwrap_or(0) / 1_000_000;
        u.memory_peak_bytes = cu.memory_peak_bytes;
        u.pids_peak = cu.pids_peak;
    }
    let limits = &policy.limits;
    let mut violations = Vec::new();
    if termination == Termination::Timeout {
        violations.push(audit::violation(
            ViolationKind::Timeout,
            Severity::Medium,
            format!(
                "wall clock of {} s ran out; the whole tree was killed",
                limits.max_runtime_seconds
            ),
            None,
        ));
    }
    if oom {
        violations.push(audit::violation(
            ViolationKind::MemoryLimit,
            Severity::Medium,
            format!("memory limit of {} MiB hit; OOM kill", limits.memory_mb),
            None,
        ));
    }
    if let Some(n) = usage
        .as_ref()
        .and_then(|u| u.pids_events_max)
        .filter(|n| *n > 0)
    {
        violations.push(audit::violation(
            ViolationKind::ProcessLimit,
            Severity::Medium,
            format!(
                "{n} fork(s) refused at the limit of {} processes",
                limits.max_processes
            ),
            None,
        ));
    }
    for (name, c) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        if c.truncated {
            violations.push(audit::violation(
                ViolationKind::OutputLimit,
                Severity::Low,
                format!(
                    "{name}: {} bytes written, {} kept",
                    c.total, limits.max_output_bytes
                ),
                None,
            ));
        }
    }
    if matches!(end_signal(termination, code), Some(libc::SIGSYS)) {
        violations.push(audit::violation(
            ViolationKind::SyscallBlocked,
            Severity::High,
            "killed by SIGSYS: a syscall through a non-native ABI (x32 or i386 int 0x80) was refused",
            audit::mitre_for_syscall("int 0x80"),
        ));
    }
    if matches!(end_signal(termination, code), Some(libc::SIGXFSZ)) {
        violations.push(audit::violation(
            ViolationKind::FileSizeLimit,
            Severity::Low,
            format!(
                "a write beyond {} MiB was refused (SIGXFSZ)",
                limits.max_file_size_mb
            ),
            None,
        ));
    }
    if let Some(seen) = refusals {
        // The listener hangs up once every filtered process is gone (they are: the
        // cgroup and the PID namespace were killed above); give it a moment to drain.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !seen.1.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let list = seen.0.lock().map(|v| v.clone()).unwrap_or_default();
        violations.extend(list);
    }
    trace.policy_violations.extend(violations);
    Ok(())
}

type Seen = (
    std::sync::Arc<std::sync::Mutex<Vec<audit::Violation>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

/// Serve the seccomp listener on its own thread: every refused syscall is answered
/// with the profile's errno and recorded as a violation.
fn observe_seccomp(
    fd: std::os::fd::OwnedFd,
    profile: skillsandbox_manifest::SyscallProfile,
) -> Seen {
    use std::sync::{atomic::AtomicBool, Arc, Mutex};
    let list = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (l, d) = (list.clone(), done.clone());
    std::thread::spawn(move || {
        let _ = skillsandbox_sandbox::seccomp::serve_notifications(fd, profile, |r| {
            let v = audit::violation(
                ViolationKind::SyscallBlocked,
                Severity::High,
                r.detail(),
                audit::mitre_for_syscall(&r.syscall),
            );
            if let Ok(mut g) = l.lock() {
                // Bounded: a skill looping on a refused call must not grow our memory.
                if g.len() < 1000 {
                    g.push(v);
                }
            }
        });
        d.store(true, std::sync::atomic::Ordering::Release);
    });
    (list, done)
}

fn end_signal(t: Termination, code: i32) -> Option<i32> {
    (t == Termination::Signaled).then_some(code - 128)
}

fn create_cgroup(
    policy: &Policy,
    trace_id: &str,
    allow_degraded: bool,
) -> Result<(Option<SandboxCgroup>, Option<String>), Setup> {
    let limits = CgroupLimits::from_policy(&policy.limits);
    let short: String = trace_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let created = CgroupRoots::discover().and_then(|roots| {
        roots.reap_stale();
        roots.create(&short, &limits)
    });
    match created {
        Ok(cg) => Ok((Some(cg), None)),
        Err(e) if allow_degraded => Ok((None, Some(e.to_string()))),
        Err(e) => Err(Setup::new(
            format!("cannot apply resource limits: {e}"),
            Some("run as root, start from a delegated cgroup, or pass --allow-degraded".into()),
        )),
    }
}

fn launch_failure(policy: &Policy, e: &LaunchError) -> Setup {
    let mut hint = e.hint().map(str::to_string);
    if e.exit_code() == 127 {
        let cmd = &policy.entrypoint.command;
        hint = Some(match prepare::host_which(cmd) {
            Some(p) => format!(
                "the host has {cmd} at {}; the sandbox sees /usr, /bin, /lib and /opt only: \
                 declare its directory under permissions.filesystem.read, or use a command from /usr/bin",
                p.display()
            ),
            None => format!("{cmd} is not installed on the host either"),
        });
    }
    Setup {
        message: e.to_string(),
        hint,
        exit_code: e.exit_code(),
    }
}
