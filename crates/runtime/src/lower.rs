//! Supervisor preparation, once per run (DESIGN.md §3 step 1): choose the tier, check
//! and create the declared paths, lower the policy into the one launch plan the run
//! uses. `--dry-run` goes through the same function without touching the host.

use std::path::PathBuf;

use skillsandbox_manifest::{Policy, Tier};
use skillsandbox_sandbox::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use skillsandbox_sandbox::plan::{ImageRoot, LaunchPlan, NetworkPlan};
use skillsandbox_sandbox::seccomp::StackedFilter;

use crate::prepare;
use crate::setup::Setup;
use crate::tier::{self, ProcessRun, TierChoice};

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
    let mut events = vec![("tier", choice.reason.clone())];
    let Mode::Run {
        trace_id,
        allow_degraded,
        extra_ro_binds,
        observe,
        image_root,
        stacked_seccomp,
        network,
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
    Ok(Prepared {
        choice,
        plan,
        process,
        events,
    })
}

/// The launch plan a run would use (for `--dry-run`): the same tier choice and
/// lowering as a run, with no effect on the host.
pub fn dry_run_plan(policy: &Policy, extra_args: &[String]) -> Result<LaunchPlan, String> {
    prepare(policy, extra_args, Mode::DryRun)
        .map(|p| p.plan)
        .map_err(|s| s.message)
}
