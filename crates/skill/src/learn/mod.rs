//! `skillsandbox learn`: a least-privilege manifest from what a skill did in an
//! observing sandbox.
//!
//! - [`observing_policy`]: the sandbox a learning run uses (the skill's own policy,
//!   with the network in record mode and roomy limits: host credentials stay hidden,
//!   the home is ephemeral, nothing leaves);
//! - [`propose`]: the one entry that turns the runs' observations (paths and
//!   destinations from the seccomp observer, names and connections from the egress
//!   service, usage from the cgroup) into a [`Proposal`]: the manifest text, with every
//!   grant commented by the program that used it, and what was refused, with evidence.
//!
//! Pure: the CLI runs the skill and writes the file.

mod classify;
mod render;

use std::collections::{BTreeMap, BTreeSet};

use skillsandbox_audit::Trace;
use skillsandbox_manifest::{NetworkPolicy, Policy, Tier};
use skillsandbox_sandbox::seccomp::{Access, AccessKind};

pub use classify::{DestClass, PathClass, SKILL_MOUNT};

use crate::LoadedSkill;

/// The first line of every learned manifest (`scan` reports such a manifest as
/// `learned`).
pub const LEARNED_HEADER: &str = "# learned by skillsandbox learn";

/// What one observing run produced.
#[derive(Debug, Clone, Default)]
pub struct RunObservation {
    /// The arguments the skill got.
    pub args: Vec<String>,
    pub accesses: Vec<Access>,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
    /// Names the sandbox's DNS answered, with the synthetic addresses it handed out.
    pub dns: Vec<(String, Vec<String>)>,
}

impl RunObservation {
    /// The observation of a run from its trace and the observer's calls.
    pub fn new(args: Vec<String>, accesses: Vec<Access>, trace: &Trace) -> Self {
        RunObservation {
            args,
            accesses,
            exit_code: trace.exit_code,
            duration_ms: trace.duration_ms,
            memory_peak_bytes: trace.usage.memory_peak_bytes,
            pids_peak: trace.usage.pids_peak,
            dns: trace
                .network
                .dns
                .iter()
                .map(|d| (d.name.clone(), d.answers.clone()))
                .collect(),
        }
    }
}

/// The sandbox a learning run uses: `skill`'s own policy (its manifest, else
/// deny-all) on the container tier, with the network in record mode and limits wide
/// enough to see the skill finish.
pub fn observing_policy(skill: &LoadedSkill) -> Policy {
    let mut p = skill.policy.clone();
    p.network = NetworkPolicy {
        egress: Vec::new(),
        record: true,
        secrets: Vec::new(),
    };
    p.tier = Tier::Container;
    p.limits.memory_mb = p.limits.memory_mb.max(1024);
    p.limits.max_runtime_seconds = p.limits.max_runtime_seconds.max(120);
    p.limits.max_processes = p.limits.max_processes.max(256);
    p
}

/// Who used a grant: the script (for an interpreter) or the program, and how.
pub type Users = BTreeSet<String>;

/// A grant the proposal never makes, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedGrant {
    /// `read /root/.ssh/id_rsa`, `connect paste.example-exfil.net:443`, ...
    pub what: String,
    pub why: String,
    /// Who tried, and the call: `scripts/weather.py (openat)`.
    pub evidence: Vec<String>,
}

/// What the runs showed, sorted into the proposal's parts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Learned {
    pub read: BTreeMap<String, Users>,
    pub write: BTreeMap<String, Users>,
    /// name → port → users.
    pub domains: BTreeMap<String, BTreeMap<u16, Users>>,
    /// Paths of the system view used (collapsed), with how.
    pub system: BTreeMap<String, BTreeSet<&'static str>>,
    /// Looked up outside the sandbox's view and not needed (host configuration).
    pub unneeded: BTreeSet<String>,
    /// Names resolved but never connected to.
    pub resolved_only: BTreeSet<String>,
    pub refused: Vec<RefusedGrant>,
    /// Programs executed.
    pub processes: BTreeSet<String>,
    pub peak_memory_bytes: Option<u64>,
    pub peak_pids: Option<u64>,
    pub longest_run_ms: u64,
    pub runs: usize,
    /// Exit codes of the runs, in order.
    pub exit_codes: Vec<i32>,
}

/// A proposed manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proposal {
    /// The manifest text (starts with [`LEARNED_HEADER`]).
    pub yaml: String,
    pub learned: Learned,
}

fn user(a: &Access) -> String {
    a.script
        .clone()
        .or_else(|| a.program.clone())
        .unwrap_or_else(|| format!("pid {}", a.pid))
}

fn refuse(learned: &mut Learned, what: String, why: String, evidence: String) {
    if let Some(r) = learned
        .refused
        .iter_mut()
        .find(|r| r.what == what && r.why == why)
    {
        if !r.evidence.contains(&evidence) && r.evidence.len() < 8 {
            r.evidence.push(evidence);
        }
        return;
    }
    learned.refused.push(RefusedGrant {
        what,
        why,
        evidence: vec![evidence],
    });
}

/// The system-view path shown in the proposal's comment block: executables as they
/// are, everything else cut to its first three components (`/usr/lib/python3.11`).
fn system_key(kind: AccessKind, path: &str) -> String {
    if kind == AccessKind::Exec || path.starts_with("/etc/") {
        return path.to_string();
    }
    let parent = path.rsplit_once('/').map_or("", |(d, _)| d);
    let parts: Vec<&str> = parent
        .split('/')
        .filter(|c| !c.is_empty())
        .take(3)
        .collect();
    format!("/{}", parts.join("/"))
}

/// Sorts every observation of every run. `exists` says whether a path exists on the
/// host: a read of one that does not was a lookup (a module search, a config probe)
/// and is not proposed.
pub fn learn(
    skill: &LoadedSkill,
    runs: &[RunObservation],
    exists: &dyn Fn(&str) -> bool,
) -> Learned {
    let declared_writes: Vec<String> = skill
        .policy
        .filesystem
        .write
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut l = Learned {
        runs: runs.len(),
        ..Learned::default()
    };
    for run in runs {
        l.exit_codes.push(run.exit_code);
        l.longest_run_ms = l.longest_run_ms.max(run.duration_ms);
        l.peak_memory_bytes = l.peak_memory_bytes.max(run.memory_peak_bytes);
        l.peak_pids = l.peak_pids.max(run.pids_peak);
        let mut synthetic: BTreeMap<String, String> = BTreeMap::new();
        let mut resolved: BTreeSet<String> = BTreeSet::new();
        for (name, answers) in &run.dns {
            for a in answers {
                synthetic.insert(a.clone(), name.clone());
            }
            if !answers.is_empty() {
                resolved.insert(name.clone());
            }
        }
        let mut connected: BTreeSet<String> = BTreeSet::new();
        for a in &run.accesses {
            let who = user(a);
            let evidence = format!("{who} ({})", a.syscall);
            match a.kind {
                AccessKind::Connect => {
                    match classify::destination(&a.target, |ip| synthetic.get(ip).cloned()) {
                        DestClass::Provided => {}
                        DestClass::Domain { name, port } => {
                            connected.insert(name.clone());
                            l.domains
                                .entry(name)
                                .or_default()
                                .entry(port)
                                .or_default()
                                .insert(who);
                        }
                        DestClass::Refused(why) => {
                            let shown = shown_destination(&a.target, &synthetic);
                            if let Some((name, _)) = shown.split_once(':') {
                                connected.insert(name.to_string());
                            }
                            refuse(&mut l, format!("connect {shown}"), why, evidence);
                        }
                    }
                }
                kind => {
                    if kind == AccessKind::Exec {
                        l.processes.insert(a.target.clone());
                    }
                    let write = kind == AccessKind::Write;
                    match classify::path(write, &a.target, &declared_writes) {
                        PathClass::Provided => {}
                        PathClass::System => {
                            l.system
                                .entry(system_key(kind, &a.target))
                                .or_default()
                                .insert(verb(kind));
                        }
                        PathClass::Unneeded => {
                            l.unneeded.insert(a.target.clone());
                        }
                        PathClass::Read | PathClass::OverBroad if !exists(&a.target) => {
                            l.unneeded.insert(a.target.clone());
                        }
                        PathClass::Read => {
                            l.read.entry(a.target.clone()).or_default().insert(who);
                        }
                        PathClass::Write => {
                            l.write.entry(a.target.clone()).or_default().insert(who);
                        }
                        PathClass::OverBroad => refuse(
                            &mut l,
                            format!("{} {}", verb(kind), a.target),
                            "over-broad: a top-level directory or a whole home (a listing of \
                             it shows everything there)"
                                .into(),
                            evidence,
                        ),
                        PathClass::Refused(why) => refuse(
                            &mut l,
                            format!("{} {}", verb(kind), a.target),
                            why,
                            evidence,
                        ),
                    }
                }
            }
        }
        for name in resolved.difference(&connected) {
            l.resolved_only.insert(name.clone());
        }
    }
    // A name reached in one run is not "resolved only" because another run did not.
    let reached: BTreeSet<String> = l.domains.keys().cloned().collect();
    l.resolved_only.retain(|n| !reached.contains(n));
    l.read = collapse(std::mem::take(&mut l.read));
    l.write = collapse(std::mem::take(&mut l.write));
    l
}

/// Under `/home` or `/root` (the invoker's files, not the sandbox's own home).
pub(crate) fn in_home(path: &str) -> bool {
    path.starts_with("/home/") || path == "/root" || path.starts_with("/root/")
}

/// A destination as shown: the name behind a synthetic address when there is one.
fn shown_destination(target: &str, synthetic: &BTreeMap<String, String>) -> String {
    if let Some((ip, port)) = target.rsplit_once(':') {
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if let Some(name) = synthetic.get(ip) {
            return format!("{name}:{port}");
        }
    }
    target.to_string()
}

fn verb(kind: AccessKind) -> &'static str {
    match kind {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::Exec => "exec",
        AccessKind::Connect => "connect",
    }
}

/// Paths collapse to their directory when three or more files of one directory were
/// used; never to a top-level directory, nor anywhere in a home directory (homes hold
/// secrets: there each file is granted on its own). Otherwise each path stays as is.
fn collapse(paths: BTreeMap<String, Users>) -> BTreeMap<String, Users> {
    let mut by_dir: BTreeMap<String, Vec<(String, Users)>> = BTreeMap::new();
    for (p, users) in paths {
        let dir = p
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        by_dir.entry(dir).or_default().push((p, users));
    }
    let mut out: BTreeMap<String, Users> = BTreeMap::new();
    for (dir, files) in by_dir {
        let deep_enough = dir.matches('/').count() >= 2;
        let in_home = in_home(&dir);
        if files.len() >= 3 && deep_enough && !in_home {
            let users = files.into_iter().flat_map(|(_, u)| u).collect();
            out.insert(dir, users);
        } else {
            out.extend(files);
        }
    }
    // A path under another granted path is covered by it.
    let keys: Vec<String> = out.keys().cloned().collect();
    out.retain(|p, _| {
        !keys
            .iter()
            .any(|k| k != p && p.starts_with(&format!("{k}/")))
    });
    out
}

/// The one entry: observations of `runs` → the proposed manifest for `skill`.
/// `when` is the timestamp written in the header; `exists` as for [`learn`].
pub fn propose(
    skill: &LoadedSkill,
    runs: &[RunObservation],
    when: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Proposal {
    let learned = learn(skill, runs, exists);
    let yaml = render::manifest(skill, &learned, runs, when);
    Proposal { yaml, learned }
}

#[cfg(test)]
mod tests;
