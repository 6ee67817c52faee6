//! The proposed manifest as text: every grant with a comment saying who used it,
//! the system runtime and the refused grants as comment blocks. Pure.

use std::fmt::Write as _;

use skillsandbox_manifest::{EnvPattern, Policy};

use super::{Learned, RunObservation, Users, LEARNED_HEADER};
use crate::LoadedSkill;

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `# read by a, b` (at most three names, then how many more).
fn by(verb: &str, users: &Users) -> String {
    let names: Vec<&str> = users.iter().map(String::as_str).take(3).collect();
    let more = users.len().saturating_sub(3);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("# {verb} by {}{tail}", names.join(", "))
}

/// A comment line's text with newlines removed (a comment must stay one line).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

fn round_up(v: u64, step: u64) -> u64 {
    v.div_ceil(step) * step
}

fn env_pattern(p: &EnvPattern) -> String {
    match p {
        EnvPattern::Exact(n) => n.clone(),
        EnvPattern::Prefix(p) => format!("{p}*"),
    }
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn permissions(out: &mut String, policy: &Policy, l: &Learned) {
    out.push_str("permissions:\n");
    if !l.domains.is_empty() {
        out.push_str("  network:\n    egress:\n");
        for (name, ports) in &l.domains {
            let list: Vec<String> = ports.keys().map(u16::to_string).collect();
            let users: Users = ports.values().flatten().cloned().collect();
            let _ = writeln!(
                out,
                "      - domain: {}\n        ports: [{}]   {}",
                q(name),
                list.join(", "),
                one_line(&by("connected", &users))
            );
        }
    }
    if !l.read.is_empty() || !l.write.is_empty() {
        out.push_str("  filesystem:\n");
        for (key, paths, verb) in [("read", &l.read, "read"), ("write", &l.write, "written")] {
            if paths.is_empty() {
                continue;
            }
            let _ = writeln!(out, "    {key}:");
            for (p, users) in paths {
                let check = if super::in_home(p) {
                    " (in a home directory: check that the skill should see it)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "      - {}   {}{check}",
                    q(p),
                    one_line(&by(verb, users))
                );
            }
        }
    }
    if policy.env.allow.is_empty() {
        out.push_str(
            "  # env_vars: none. Reads of the environment happen in the program's memory and\n  \
             # cannot be observed; add the variables the skill needs (never a secret it has\n  \
             # no business with).\n",
        );
    } else {
        let names: Vec<String> = policy
            .env
            .allow
            .iter()
            .map(|p| q(&env_pattern(p)))
            .collect();
        let _ = writeln!(
            out,
            "  env_vars:\n    # kept from the existing manifest: environment reads cannot be observed\n    allow: [{}]",
            names.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  syscalls:\n    profile: {}",
        enum_name(&policy.syscalls)
    );
}

fn resources(out: &mut String, l: &Learned) {
    out.push_str("resources:\n");
    match l.peak_memory_bytes {
        Some(peak) => {
            let mb = round_up((mib(peak) * 2).max(64), 16);
            let _ = writeln!(
                out,
                "  memory_mb: {mb}   # peak {} MiB observed, twice that as headroom",
                mib(peak)
            );
        }
        None => out.push_str("  # memory_mb: not measured (no cgroup); the default applies\n"),
    }
    let secs = (l.longest_run_ms * 3).div_ceil(1000).max(10);
    let _ = writeln!(
        out,
        "  max_runtime_seconds: {secs}   # longest run {} ms observed, three times that as headroom",
        l.longest_run_ms
    );
    if let Some(pids) = l.peak_pids {
        let n = (pids * 2).max(8);
        let _ = writeln!(
            out,
            "  max_processes: {n}   # peak {pids} tasks observed, twice that as headroom"
        );
    }
}

fn comments(out: &mut String, l: &Learned) {
    if !l.system.is_empty() {
        out.push_str(
            "\n# System runtime: the interpreter, its libraries and certificates, provided\n\
             # read-only by every sandbox (no grant needed):\n",
        );
        for (p, how) in &l.system {
            let how: Vec<&str> = how.iter().copied().collect();
            let _ = writeln!(out, "#   {} {}", how.join("+"), one_line(p));
        }
    }
    if !l.unneeded.is_empty() {
        let list: Vec<String> = l.unneeded.iter().map(|p| one_line(p)).collect();
        let _ = writeln!(
            out,
            "#\n# Looked up, absent from the sandbox's view or the host, not granted: {}",
            list.join(", ")
        );
    }
    if !l.processes.is_empty() {
        let list: Vec<String> = l.processes.iter().map(|p| one_line(p)).collect();
        let _ = writeln!(out, "#\n# Processes started: {}", list.join(", "));
    }
    if !l.resolved_only.is_empty() {
        let list: Vec<String> = l.resolved_only.iter().map(|p| one_line(p)).collect();
        let _ = writeln!(
            out,
            "#\n# Resolved but never connected to (not granted): {}",
            list.join(", ")
        );
    }
    if !l.refused.is_empty() {
        out.push_str(
            "#\n# Refused, would have been denied (never granted; the evidence follows):\n",
        );
        for r in &l.refused {
            let _ = writeln!(out, "#   {}: {}", one_line(&r.what), one_line(&r.why));
            let _ = writeln!(out, "#     by {}", one_line(&r.evidence.join("; ")));
        }
    }
}

/// The manifest text.
pub(super) fn manifest(
    skill: &LoadedSkill,
    l: &Learned,
    runs: &[RunObservation],
    when: &str,
) -> String {
    let p = &skill.policy;
    let mut out = String::new();
    let codes: Vec<String> = l.exit_codes.iter().map(i32::to_string).collect();
    let _ = writeln!(
        out,
        "{LEARNED_HEADER} on {} from {} run(s) (exit codes {}).\n\
         # Review it, then `skillsandbox approve`. Grants name the program that used them.",
        one_line(when),
        runs.len(),
        codes.join(", ")
    );
    for r in runs.iter().filter(|r| !r.args.is_empty()) {
        let _ = writeln!(out, "# run with: {}", one_line(&r.args.join(" ")));
    }
    let _ = writeln!(
        out,
        "skill:\n  name: {}\n  version: {}",
        q(&p.skill.name),
        q(&p.skill.version)
    );
    if let Some(d) = &p.skill.description {
        let d: String = d.chars().take(1000).collect();
        let _ = writeln!(out, "  description: {}", q(&d));
    }
    permissions(&mut out, p, l);
    resources(&mut out, l);
    let _ = writeln!(out, "isolation:\n  tier: {}", enum_name(&p.tier));
    let args: Vec<String> = p.entrypoint.args.iter().map(|a| q(a)).collect();
    let _ = writeln!(
        out,
        "entrypoint:\n  command: {}\n  args: [{}]\n  workdir: {}",
        q(&p.entrypoint.command),
        args.join(", "),
        q(&p.entrypoint.workdir.display().to_string())
    );
    comments(&mut out, l);
    out
}
