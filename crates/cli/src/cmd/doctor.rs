//! `skillsandbox doctor`: what this host can enforce, why, and how to enable what is
//! missing. A thin view over `skillsandbox_sandbox::probe::host_report`.

use std::io::Write;

use skillsandbox_manifest::Tier;
use skillsandbox_sandbox::probe::{host_report, HostReport};

/// Show what this host can enforce: user namespaces (sysctls and a live probe),
/// Landlock ABI, seccomp, cgroups, idmapped mounts (as root), which tier `auto`
/// picks and why, and how to enable each missing item.
///
/// Exit code 0 whatever the host lacks (the report says it); 1 if the report cannot
/// be written.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as one JSON object (the same `host` object `check --json` embeds).
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let report = host_report();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&report).as_bytes())?;
        out.write_all(agent_hooks().as_bytes())?;
    }
    Ok(0)
}

/// Whether the agent-shell hook is installed for this project and would confine
/// (its profile loads).
fn agent_hooks() -> String {
    use skillsandbox_hook::{profile::PROFILE_PATH, Agent};
    let Ok(cwd) = std::env::current_dir() else {
        return String::new();
    };
    let profile = cwd.join(PROFILE_PATH);
    let profile_state = if !profile.is_file() {
        "no profile here (`skillsandbox init`)".to_string()
    } else {
        match skillsandbox_manifest::load(
            &profile,
            &skillsandbox_manifest::ResolveEnv::from_process_env(),
        ) {
            Ok(_) => format!("{} loads", profile.display()),
            Err(e) => format!(
                "{} is INVALID: {}",
                profile.display(),
                e.to_string().replace('\n', " ")
            ),
        }
    };
    let mut s = format!("{:<17}{profile_state}\n", "project profile");
    for agent in [Agent::ClaudeCode, Agent::Codex] {
        let found = super::hook::installed_in(agent, &cwd);
        let state = if found.is_empty() {
            format!(
                "not installed (`skillsandbox hook install {}`)",
                agent.name()
            )
        } else {
            let live = if profile.is_file() {
                "live"
            } else {
                "installed, but no profile: commands are denied"
            };
            format!(
                "{live}: {}",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        s.push_str(&format!(
            "{:<17}{state}\n",
            format!("hook {}", agent.name())
        ));
    }
    s
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO "
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(absent)".into())
}

/// The human-readable report.
pub fn render(r: &HostReport) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<17}{v}\n"));
    line(
        "kernel",
        format!(
            "{} (uid {}{})",
            r.kernel_release,
            r.uid,
            if r.host_root { ", host root" } else { "" }
        ),
    );
    let u = &r.user_namespaces;
    line(
        "user namespaces",
        format!(
            "{}  {} (live probe, {} µs)",
            yes(u.available),
            u.detail,
            u.probe_us
        ),
    );
    line(
        "",
        format!(
            "kernel.unprivileged_userns_clone={}  user.max_user_namespaces={}  \
             kernel.apparmor_restrict_unprivileged_userns={}",
            opt(&u.unprivileged_userns_clone),
            u.max_user_namespaces
                .map_or_else(|| "(absent)".to_string(), |n| n.to_string()),
            opt(&u.apparmor_restrict_unprivileged_userns)
        ),
    );
    let l = &r.landlock;
    line(
        "landlock",
        format!(
            "{}  {}{}",
            yes(l.abi > 0),
            l.detail,
            if l.features.is_empty() {
                String::new()
            } else {
                format!(": {}", l.features.join(", "))
            }
        ),
    );
    line(
        "seccomp",
        format!(
            "{}  filters; user notification {}",
            yes(r.seccomp.filter),
            yes(r.seccomp.user_notification).trim()
        ),
    );
    line(
        "cgroup",
        format!("{} ({})", r.cgroup.version, r.cgroup.detail),
    );
    for c in &r.cgroup.controllers {
        line(
            "",
            format!(
                "{} {:<7}{} {}",
                yes(c.available && c.writable),
                c.name,
                c.version.as_deref().unwrap_or("-"),
                c.detail
            ),
        );
    }
    match r.cgroup.favordynmods {
        Some(true) => line(
            "cgroup moves",
            "fast: favordynmods is on (moving a run into its cgroup waits for no RCU grace period)"
                .into(),
        ),
        Some(false) => line(
            "cgroup moves",
            "slow: each run's move into its cgroup waits for an RCU grace period (1.5-22 ms \
             measured); `mount -o remount,favordynmods <cgroup2 mount>` as root (Linux 6.0+) \
             makes it ~0.1 ms, at a small cost to fork and exit"
                .into(),
        ),
        None => {}
    }
    if let Some(i) = &r.idmapped_mounts {
        line(
            "idmapped mounts",
            format!("{}  {}", yes(i.available), i.detail),
        );
    }
    if let Some(k) = &r.kvm {
        line("kvm", format!("{}  {}", yes(k.available), k.detail));
    }
    let tier = match r.auto.tier {
        Tier::Process => "process",
        _ => "container",
    };
    line("tier auto", format!("{tier}: {}", r.auto.reason));
    if r.missing.is_empty() {
        s.push_str("\nnothing missing: every tier and layer is available\n");
    } else {
        s.push_str("\nmissing:\n");
        for m in &r.missing {
            s.push_str(&format!(
                "  - {}: {}\n      how: {}\n",
                m.item, m.effect, m.how
            ));
        }
    }
    s
}
