//! Supervisor preparation, once per run (DESIGN.md §3 step 1): choose the tier, check
//! and create the declared paths, lower the policy into the one launch plan the run
//! uses. `--dry-run` goes through the same function without touching the host.

use std::path::PathBuf;

use skillsandbox_manifest::{Policy, Tier};
use skillsandbox_sandbox::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use skillsandbox_sandbox::plan::{ImageRoot, LaunchPlan, NetworkPlan};
use skillsandbox_sandbox::seccomp::StackedFilter;
use skillsandbox_sandbox::timing::{now_us, Mark};

use crate::prepare;
use crate::setup::Setup;
use crate::tier::{self, ProcessRun, TierChoice};

/// The end of one of preparation's phases, on the launch's clock.
fn mark(phase: &str) -> Mark {
    Mark {
        phase: phase.into(),
        at_us: now_us(),
    }
}

/// What the run does to the host while preparing.
pub(crate) enum Mode<'a> {
    /// Nothing: no directory created, no scratch, no seccomp listener.
    DryRun,
    /// The real thing.
    Run {
        trace_id: &'a str,
        allow_degraded: bool,
        extra_ro_binds: &'a [(PathBuf, PathBuf)],
        /// `learn`: the supervisor observes every path and destination named.
        observe: bool,
        /// `skillsandbox oci`: the image's root filesystem (container tier only).
        image_root: Option<&'a ImageRoot>,
        /// `skillsandbox oci`: the spec's seccomp filter, stacked on ours.
        stacked_seccomp: Option<&'a StackedFilter>,
        /// `skillsandbox oci`: the engine's network instead of ours, when opted into.
        network: &'a NetworkPlan,
        /// `skillsandbox oci`: the skill's stdio is a terminal of its own.
        terminal: bool,
        /// `skillsandbox oci`: the uid and gid inside (root when `None`).
        user: Option<(u32, u32)>,
    },
}

/// The result of preparing a run: the tier, the plan, and (process tier) its
/// scratch directory and gaps.
pub(crate) struct Prepared {
    pub choice: TierChoice,
    pub plan: LaunchPlan,
    pub process: Option<ProcessRun>,
    /// Trace events: (kind, detail).
    pub events: Vec<(&'static str, String)>,
    /// The ends of preparation's phases (`tier`, `declared_paths`, `lower`), on the
    /// launch's clock ([`skillsandbox_sandbox::timing`]).
    pub marks: Vec<Mark>,
}

impl Prepared {
    /// The test-only switch in force, if any.
    pub fn disabled(&self) -> Option<LayerDisabledForTests> {
        self.plan.dangerously_disabled_layer
    }
}

/// Choose the tier and lower the policy for it, once.
pub(crate) fn prepare(
    policy: &Policy,
    extra_args: &[String],
    mode: Mode<'_>,
) -> Result<Prepared, Setup> {
    let choice = tier::choose(policy.tier).map_err(|e| Setup::new(e.to_string(), e.hint()))?;
    let mut marks = vec![mark("tier")];
    let mut events = vec![("tier", choice.reason.clone())];
    let Mode::Run {
        trace_id,
        allow_degraded,
        extra_ro_binds,
        observe,
        image_root,
        stacked_seccomp,
        network,
        terminal,
        user,
    } = mode
    else {
        let plan = match choice.tier {
            Tier::Process => tier::dry_run_process_plan(policy, extra_args, false)
                .map_err(|e| Setup::new(e.to_string(), e.hint()))?,
            _ => prepare::launch_plan(policy, extra_args, false, &[], None)
                .map_err(|e| Setup::new(e.to_string(), None))?,
        };
        return Ok(Prepared {
            choice,
            plan,
            process: None,
            events,
            marks,
        });
    };

    if image_root.is_some() && choice.tier == Tier::Process {
        return Err(Setup::new(
            "an image's root filesystem needs the container tier; this host offers only the process tier",
            Some("enable unprivileged user namespaces (see skillsandbox doctor)".into()),
        ));
    }
    let fresh_writes = tier::absent_write_dirs(policy);
    let notes =
        prepare::check_declared_paths(policy).map_err(|e| Setup::new(e.to_string(), None))?;
    events.extend(notes.into_iter().map(|n| ("setup", n)));
    marks.push(mark("declared_paths"));
    let (mut plan, process) = match choice.tier {
        Tier::Process => {
            let (plan, p) = tier::prepare_process(
                policy,
                extra_args,
                trace_id,
                allow_degraded,
                &fresh_writes,
                extra_ro_binds,
            )
            .map_err(|e| Setup::new(e.to_string(), e.hint()))?;
            for g in &p.gaps {
                events.push((
                    "degraded",
                    format!("{} not enforced: {}", g.layer, g.detail),
                ));
            }
            (plan, Some(p))
        }
        _ => (
            prepare::launch_plan(policy, extra_args, true, extra_ro_binds, image_root)
                .map_err(|e| Setup::new(e.to_string(), None))?,
            None,
        ),
    };
    if (terminal || user.is_some()) && process.is_some() {
        return Err(Setup::new(
            "a terminal or a user other than root inside needs the container tier",
            Some("run without them, or on a host with the container tier".into()),
        ));
    }
    plan.terminal = terminal;
    if let Some((uid, gid)) = user {
        plan.identity.inside_uid = uid;
        plan.identity.inside_gid = gid;
        events.push(("setup", format!("runs as uid {uid}, gid {gid} inside")));
    }
    plan.seccomp_observe = observe;
    plan.stacked_seccomp = stacked_seccomp.cloned();
    if !network.is_sandbox() {
        if plan.egress || process.is_some() {
            return Err(Setup::new(
                "the engine's network with declared egress (or on the process tier)",
                Some("declare no network rules when the engine's network decides".into()),
            ));
        }
        plan.network = network.clone();
    }
    // No egress declared, in a network of ours: attempts to reach a host are recorded.
    plan.seccomp_watch_egress = !plan.egress && plan.network.is_sandbox();
    // The test-only switch: never run with a layer off unless the caller opted in.
    if let Some(layer) = plan.dangerously_disabled_layer {
        if !allow_degraded {
            return Err(Setup::new(
                format!("layer {} is {DISABLED_FOR_TESTS}", layer.name()),
                Some("unset it (it exists for tests), or pass --allow-degraded".into()),
            ));
        }
        events.push((
            "degraded",
            format!("layer {} {DISABLED_FOR_TESTS}", layer.name()),
        ));
    }
    marks.push(mark("lower"));
    Ok(Prepared {
        choice,
        plan,
        process,
        events,
        marks,
    })
}

/// The launch plan a run would use (for `--dry-run`): the same tier choice and
/// lowering as a run, with no effect on the host.
pub fn dry_run_plan(policy: &Policy, extra_args: &[String]) -> Result<LaunchPlan, String> {
    prepare(policy, extra_args, Mode::DryRun)
        .map(|p| p.plan)
        .map_err(|s| s.message)
}
