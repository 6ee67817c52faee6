//! The enforcement report: one line per layer, `enforced | partial | unavailable`,
//! built from what the launch actually did — never from what was merely planned.

use skillsandbox_audit::{LayerReport, LayerStatus};
use skillsandbox_sandbox::cgroup::SandboxCgroup;
use skillsandbox_sandbox::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use skillsandbox_sandbox::plan::LaunchPlan;
use skillsandbox_sandbox::proto::LayerNote;

pub fn layer(name: &str, status: LayerStatus, detail: impl Into<String>) -> LayerReport {
    LayerReport {
        layer: name.to_string(),
        status,
        detail: detail.into(),
    }
}

pub(crate) fn status_of(s: &str) -> LayerStatus {
    match s {
        "enforced" => LayerStatus::Enforced,
        "partial" => LayerStatus::Partial,
        _ => LayerStatus::Unavailable,
    }
}

/// The network layer's line when the engine's network was opted into: not ours.
pub fn engine_network_detail(network: &skillsandbox_sandbox::plan::NetworkPlan) -> String {
    use skillsandbox_sandbox::plan::NetworkPlan;
    let ns = match network {
        NetworkPlan::EngineJoin(p) => format!("the engine's network namespace {}", p.display()),
        _ => "a new network namespace, loopback only (nothing configures it)".to_string(),
    };
    format!(
        "not enforced by SkillSandbox: opted out by skillsandbox.network=engine; {ns}; \
         egress is whatever the engine's network allows, and no egress violation is recorded"
    )
}

/// Layers that are in force once the skill reported `Ready`: the stage could not have
/// got there without them.
pub fn after_launch(
    plan: &LaunchPlan,
    notes: &[LayerNote],
    cgroup: Option<&SandboxCgroup>,
    cgroup_missing: Option<&str>,
    egress_detail: Option<String>,
) -> Vec<LayerReport> {
    use LayerStatus::*;
    let id = &plan.identity;
    let mut out = vec![
        layer(
            "user_namespace",
            Enforced,
            format!(
                "uid 0 inside maps to unprivileged host uid {}{}",
                id.host_uid,
                if id.drop_host_root {
                    " (invoker is root; host root dropped before unshare)"
                } else {
                    ""
                }
            ),
        ),
        layer(
            "pid_namespace",
            Enforced,
            "skill is a child of a private PID 1; the namespace dies with it",
        ),
        layer(
            "mount_namespace",
            Enforced,
            "fresh tmpfs root via pivot_root; host root detached; root read-only",
        ),
        layer(
            "ipc_namespace",
            Enforced,
            "private SysV IPC and POSIX message queues",
        ),
        layer(
            "uts_namespace",
            Enforced,
            format!("hostname {}", plan.hostname),
        ),
        layer(
            "cgroup_namespace",
            Enforced,
            "cgroup tree rooted at the sandbox's own cgroup",
        ),
        match &egress_detail {
            _ if plan.dangerously_disabled_layer == Some(LayerDisabledForTests::Netns) => {
                layer("network", Unavailable, DISABLED_FOR_TESTS)
            }
            _ if !plan.network.is_sandbox() => {
                layer("network", Unavailable, engine_network_detail(&plan.network))
            }
            Some(d) => layer("network", Enforced, d.clone()),
            None => layer(
                "network",
                Enforced,
                "private network namespace; no egress declared, nothing leaves it",
            ),
        },
        layer(
            "environment",
            Enforced,
            format!(
                "cleared; {} variables set: {}",
                plan.env.len(),
                plan.env
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        layer(
            "rlimits",
            Enforced,
            format!(
                "RLIMIT_NOFILE={} RLIMIT_FSIZE={} RLIMIT_CORE={}",
                plan.rlimits.nofile, plan.rlimits.fsize_bytes, plan.rlimits.core
            ),
        ),
        layer(
            "no_new_privs",
            Enforced,
            "PR_SET_NO_NEW_PRIVS set before exec",
        ),
        layer("fds", Enforced, "every fd but 0-2 closed before exec"),
        layer("session", Enforced, "setsid: no controlling terminal"),
    ];
    append_reported(&mut out, notes, cgroup, cgroup_missing, "");
    out
}

/// The layers the skill process reported, then the cgroup's (one line per
/// controller; `missing_note` is appended to the reason when there is no cgroup).
pub(crate) fn append_reported(
    out: &mut Vec<LayerReport>,
    notes: &[LayerNote],
    cgroup: Option<&SandboxCgroup>,
    cgroup_missing: Option<&str>,
    missing_note: &str,
) {
    for n in notes {
        out.push(layer(&n.layer, status_of(&n.status), n.detail.clone()));
    }
    match (cgroup, cgroup_missing) {
        (Some(cg), _) => {
            for (name, on, detail) in cg.enforcement() {
                let status = if on {
                    LayerStatus::Enforced
                } else {
                    LayerStatus::Unavailable
                };
                out.push(layer(&name, status, detail));
            }
        }
        (None, Some(why)) => {
            for name in ["cgroup_memory", "cgroup_pids", "cgroup_cpu"] {
                out.push(layer(
                    name,
                    LayerStatus::Unavailable,
                    format!("{why}{missing_note}"),
                ));
            }
        }
        (None, None) => {}
    }
}
