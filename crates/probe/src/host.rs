//! The host section of the checklist: kernel, user namespaces, Landlock ABI, seccomp,
//! cgroup version and controllers, and the tier `auto` would pick. The same report
//! `skillsandbox doctor` prints ([`host_report`]); this module only summarises it.

pub use skillsandbox_sandbox::probe::{host_report, HostReport};

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One line for the text checklist.
pub fn summary(r: &HostReport) -> String {
    let controllers: Vec<String> = r
        .cgroup
        .controllers
        .iter()
        .filter(|c| c.available)
        .map(|c| c.name.clone())
        .collect();
    format!(
        "kernel {} · user namespaces {} · Landlock ABI {} · seccomp {}{} · cgroup {} [{}] · auto tier: {}",
        r.kernel_release,
        yes(r.user_namespaces.available),
        r.landlock.abi,
        yes(r.seccomp.filter),
        if r.seccomp.user_notification {
            " (+notify)"
        } else {
            ""
        },
        r.cgroup.version,
        controllers.join(" "),
        format!("{:?}", r.auto.tier).to_lowercase()
    )
}
