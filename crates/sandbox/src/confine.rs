//! The per-process layers the stages apply, each turned into a [`LayerNote`] that
//! says what is really in force. A layer the plan requires and the kernel refuses is
//! a [`StageError`]: the skill does not run with less than asked.

use caps::CapSet;

use crate::disable::{LayerDisabledForTests, DISABLED_FOR_TESTS};
use crate::plan::LaunchPlan;
use crate::proto::LayerNote;
use crate::stage::StageError;
use crate::sys;

pub(crate) fn note(layer: &str, status: &str, detail: impl Into<String>) -> LayerNote {
    LayerNote {
        layer: layer.to_string(),
        status: status.to_string(),
        detail: detail.into(),
    }
}

/// Step 3: with egress declared, every address becomes local to the namespace and
/// the listening sockets go to the supervisor, which serves them from the host side
/// (DESIGN.md §4). Without egress: loopback only, nothing routes anywhere.
pub fn setup_network(plan: &LaunchPlan) -> Result<(), StageError> {
    use std::os::fd::AsRawFd;
    if plan.dangerously_disabled_layer == Some(LayerDisabledForTests::Netns) {
        // Still in the host's namespace: touch nothing there.
        return Ok(());
    }
    match &plan.network {
        crate::plan::NetworkPlan::Sandbox => {}
        // The engine's namespace, joined before the user namespace: not ours to
        // configure (and no capability over it here).
        crate::plan::NetworkPlan::EngineJoin(_) => return Ok(()),
        crate::plan::NetworkPlan::EngineNew => {
            return crate::net::setup_loopback_only().map_err(|e| StageError::new("network", e))
        }
    }
    if !plan.egress {
        return crate::net::setup_loopback_only().map_err(|e| StageError::new("network", e));
    }
    crate::net::setup_loopback_and_local_routes().map_err(|e| StageError::new("network", e))?;
    let socks = crate::net::create_egress_sockets(&plan.egress_ports)
        .map_err(|e| StageError::new("egress sockets", e))?;
    let mut fds = vec![
        socks.dns_udp4.as_raw_fd(),
        socks.dns_udp6.as_raw_fd(),
        socks.dns_tcp.as_raw_fd(),
    ];
    let ports: Vec<u16> = socks.tcp.iter().map(|(p, _)| *p).collect();
    fds.extend(socks.tcp.iter().map(|(_, fd)| fd.as_raw_fd()));
    crate::proto::send(
        crate::stage::control(),
        &crate::proto::FromChild::EgressSockets { ports },
        &fds,
    )
    .map_err(|e| StageError::new("hand over egress sockets", e))
    // `socks` drops here: the sandbox keeps no handle on its own listeners.
}

/// Drop every capability: bounding set first (needs CAP_SETPCAP), then lock the
/// securebits so uid 0 inside never regains capabilities on execve, then ambient,
/// inheritable, permitted and effective.
pub fn drop_capabilities() -> Result<Vec<LayerNote>, StageError> {
    caps::clear(None, CapSet::Bounding).map_err(|e| StageError::new("drop bounding caps", e))?;
    // SECBIT_NOROOT | _LOCKED, SECBIT_NO_SETUID_FIXUP | _LOCKED, SECBIT_KEEP_CAPS_LOCKED,
    // SECBIT_NO_CAP_AMBIENT_RAISE | _LOCKED.
    let bits: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;
    sys::set_securebits(bits).map_err(|e| StageError::new("securebits", e))?;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| StageError::new("drop caps", e))?;
    }
    let left = caps::read(None, CapSet::Permitted)
        .map_err(|e| StageError::new("read caps", e))?
        .len()
        + caps::read(None, CapSet::Bounding)
            .map_err(|e| StageError::new("read caps", e))?
            .len();
    if left != 0 {
        return Err(StageError::new(
            "drop caps",
            format!("{left} capabilities remain"),
        ));
    }
    Ok(vec![note(
        "capabilities",
        "enforced",
        "bounding, ambient, inheritable, permitted and effective sets empty; securebits locked (noroot)",
    )])
}

/// Landlock on the container tier: signal and abstract-unix scoping only (the mounts
/// bound the filesystem); best effort, the ABI in force is reported.
pub fn apply_landlock(plan: &LaunchPlan) -> Result<Vec<LayerNote>, StageError> {
    use crate::landlock::{apply_landlock_on_current_thread, LandlockEnforcement, LandlockRules};
    if plan.dangerously_disabled_layer == Some(LayerDisabledForTests::Landlock) {
        return Ok(vec![note("landlock", "unavailable", DISABLED_FOR_TESTS)]);
    }
    let rules = LandlockRules {
        scope_signals_and_abstract_unix: true,
        // The mount view is the filesystem boundary here (docs/tiers.md).
        filesystem_bounded_by_mounts: true,
        ..LandlockRules::default()
    };
    let report = apply_landlock_on_current_thread(&rules, false)
        .map_err(|e| StageError::new("landlock", e))?;
    let status = match report.status {
        LandlockEnforcement::Fully => "enforced",
        LandlockEnforcement::Partially => "partial",
        LandlockEnforcement::NotEnforced => "unavailable",
    };
    Ok(vec![note("landlock", status, report.detail)])
}

/// The seccomp filter for the plan's profile; the very last step before execve.
/// With `seccomp_notify`, refused calls are answered by the supervisor (which records
/// them) instead of by the kernel; the listener fd is returned for handing over.
pub fn apply_seccomp(
    plan: &LaunchPlan,
) -> Result<(LayerNote, Option<std::os::fd::OwnedFd>), StageError> {
    use crate::seccomp::{apply_seccomp_on_current_thread, load_compiled_on_current_thread};
    if plan.dangerously_disabled_layer == Some(LayerDisabledForTests::Seccomp) {
        return Ok((note("seccomp", "unavailable", DISABLED_FOR_TESTS), None));
    }
    let report = match &plan.seccomp_filter {
        Some(filter) => load_compiled_on_current_thread(filter),
        None => apply_seccomp_on_current_thread(&plan.seccomp_plan(), &plan.seccomp_options()),
    }
    .map_err(|e| StageError::new("seccomp", e))?;
    let mut detail = report.detail;
    // Ours first (its listener is the chain's only one), the spec's stacked on it:
    // the kernel applies the stricter result of the two.
    if let Some(stacked) = &plan.stacked_seccomp {
        crate::seccomp::load_stacked_on_current_thread(stacked)
            .map_err(|e| StageError::new("seccomp (stacked)", e))?;
        detail.push_str("; ");
        detail.push_str(&stacked.detail);
    }
    Ok((note("seccomp", "enforced", detail), report.notify_fd))
}
