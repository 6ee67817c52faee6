//! The checklist: every item `check` reports, which group it belongs to, which probe
//! run produces it and what it attacks. The probe (inside the sandbox) and the check
//! (outside) share these ids; an item a run was expected to produce but did not is a
//! FAIL, never silently dropped.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Isolation,
    Limits,
    Egress,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Isolation, Group::Limits, Group::Egress];

    pub fn name(self) -> &'static str {
        match self {
            Group::Isolation => "isolation",
            Group::Limits => "limits",
            Group::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        }
    }
}

/// One probe invocation: a separate sandbox, because its items kill the process or
/// need different (small) limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Run {
    /// The manifest's own sandbox: isolation, seccomp and egress items.
    Main,
    /// Small pids / open files / file size / tmp limits.
    Limits,
    /// Small memory limit; the run is expected to end in an OOM kill.
    Memory,
    /// One x32-ABI syscall; the run is expected to die of SIGSYS.
    X32,
    /// One i386 `int 0x80` syscall; the run is expected to die of SIGSYS.
    I386,
    /// Short wall clock; the run is expected to be killed at the deadline.
    WallClock,
    /// Request-level egress: the check adds two names of its own, one with checked
    /// requests and a secret bound to it, leading to its local upstream.
    Requests,
    /// Many short launches, each declaring a path a racer on the host keeps swapping
    /// with a symlink to a canary (`fs.toctou_declared_path`).
    Race,
}

impl Run {
    pub const ALL: [Run; 8] = [
        Run::Main,
        Run::Limits,
        Run::Memory,
        Run::X32,
        Run::I386,
        Run::WallClock,
        Run::Requests,
        Run::Race,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Run::Main => "main",
            Run::Limits => "limits",
            Run::Memory => "memory",
            Run::X32 => "x32",
            Run::I386 => "i386",
            Run::WallClock => "wall-clock",
            Run::Requests => "requests",
            Run::Race => "race",
        }
    }

    pub fn parse(s: &str) -> Option<Run> {
        Run::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// A checklist entry.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub id: &'static str,
    pub group: Group,
    pub run: Run,
    /// What the item attacks, in a few words (the checklist's left column).
    pub title: &'static str,
}

const fn spec(id: &'static str, group: Group, run: Run, title: &'static str) -> Spec {
    Spec {
        id,
        group,
        run,
        title,
    }
}

use Group::{Egress as E, Isolation as I, Limits as L};

/// Every item, in report order.
pub const ITEMS: &[Spec] = &[
    spec(
        "secrets.env",
        I,
        Run::Main,
        "host environment variables are not inherited",
    ),
    spec(
        "secrets.proc_environ",
        I,
        Run::Main,
        "no /proc/*/environ shows host variables",
    ),
    spec(
        "secrets.home_files",
        I,
        Run::Main,
        "~/.ssh, ~/.aws and other undeclared host files are unreachable",
    ),
    spec(
        "secrets.proc_root",
        I,
        Run::Main,
        "no host file is reachable through /proc/<pid>/root",
    ),
    spec(
        "fs.write_outside",
        I,
        Run::Main,
        "writes outside declared paths fail",
    ),
    spec(
        "fs.write_declared",
        I,
        Run::Main,
        "writes to a declared path work and land on the host",
    ),
    spec(
        "fs.symlink_escape",
        I,
        Run::Main,
        "symlinks and .. cannot leave the sandbox's view",
    ),
    spec(
        "fs.toctou_declared_path",
        I,
        Run::Race,
        "a declared path (or its parent) swapped with a symlink during setup never exposes the symlink's target",
    ),
    spec(
        "landlock.scope",
        I,
        Run::Main,
        "Landlock scopes signals to the sandbox",
    ),
    spec(
        "ns.pid",
        I,
        Run::Main,
        "host processes are invisible (PID namespace)",
    ),
    spec(
        "ns.ipc",
        I,
        Run::Main,
        "private SysV IPC and message queues (IPC namespace)",
    ),
    spec("ns.uts", I, Run::Main, "own hostname (UTS namespace)"),
    spec(
        "ns.net",
        I,
        Run::Main,
        "no host network interfaces (network namespace)",
    ),
    spec(
        "ns.mount",
        I,
        Run::Main,
        "the host root is not mounted (mount namespace)",
    ),
    spec(
        "ns.cgroup",
        I,
        Run::Main,
        "own cgroup tree (cgroup namespace)",
    ),
    spec(
        "priv.capabilities",
        I,
        Run::Main,
        "no capabilities in any set",
    ),
    spec("priv.no_new_privs", I, Run::Main, "no_new_privs is set"),
    spec(
        "priv.not_host_root",
        I,
        Run::Main,
        "uid 0 inside is not root on the host",
    ),
    spec(
        "priv.no_inherited_fds",
        I,
        Run::Main,
        "no file descriptor of the caller is inherited",
    ),
    spec(
        "dev.minimal",
        I,
        Run::Main,
        "/dev holds only harmless nodes; mknod fails",
    ),
    spec(
        "proc.sys_readonly",
        I,
        Run::Main,
        "/proc/sys is read-only",
    ),
    spec(
        "proc.kernel_masked",
        I,
        Run::Main,
        "kernel internals in /proc are masked",
    ),
    spec(
        "seccomp.filter",
        I,
        Run::Main,
        "a seccomp filter is installed",
    ),
    spec("seccomp.x32", I, Run::X32, "x32 ABI syscalls are refused"),
    spec(
        "seccomp.i386",
        I,
        Run::I386,
        "i386 syscalls through int 0x80 are refused",
    ),
    spec(
        "seccomp.clone3",
        I,
        Run::Main,
        "clone3 returns ENOSYS (flags of clone are checked)",
    ),
    spec(
        "seccomp.unshare",
        I,
        Run::Main,
        "no new namespaces (unshare, clone flags)",
    ),
    spec(
        "seccomp.mount",
        I,
        Run::Main,
        "mount fails, even after trying a new user namespace",
    ),
    spec(
        "seccomp.ptrace",
        I,
        Run::Main,
        "ptrace and process_vm_readv are refused",
    ),
    spec(
        "seccomp.tiocsti",
        I,
        Run::Main,
        "TIOCSTI / TIOCLINUX terminal injection is refused",
    ),
    spec(
        "seccomp.bpf",
        I,
        Run::Main,
        "bpf and perf_event_open are refused",
    ),
    spec(
        "seccomp.keyctl",
        I,
        Run::Main,
        "kernel keyring calls are refused",
    ),
    spec("seccomp.io_uring", I, Run::Main, "io_uring is refused"),
    spec(
        "seccomp.userfaultfd",
        I,
        Run::Main,
        "userfaultfd is refused",
    ),
    spec(
        "cve.2020_15257",
        I,
        Run::Main,
        "a host service on an abstract unix socket is unreachable",
    ),
    spec(
        "cve.2019_5736",
        I,
        Run::Main,
        "the runtime's binary cannot be overwritten through /proc/<pid>/exe",
    ),
    spec(
        "cve.2024_21626",
        I,
        Run::Main,
        "no leaked working directory climbs out to the host root",
    ),
    spec(
        "cve.2022_0492",
        I,
        Run::Main,
        "no cgroup v1 mount, no writable release_agent",
    ),
    spec(
        "cve.shocker",
        I,
        Run::Main,
        "open_by_handle_at cannot open host files by inode",
    ),
    spec(
        "cve.kernel_code",
        I,
        Run::Main,
        "kexec and kernel modules cannot be loaded",
    ),
    spec(
        "limits.memory",
        L,
        Run::Memory,
        "memory past the limit is OOM-killed",
    ),
    spec(
        "limits.pids",
        L,
        Run::Limits,
        "fork past the process limit fails",
    ),
    spec(
        "limits.open_files",
        L,
        Run::Limits,
        "open files stop at RLIMIT_NOFILE",
    ),
    spec(
        "limits.file_size",
        L,
        Run::Limits,
        "files stop at RLIMIT_FSIZE",
    ),
    spec("limits.tmp_size", L, Run::Limits, "/tmp stops at its size"),
    spec(
        "limits.wall_clock",
        L,
        Run::WallClock,
        "the run is killed at the wall clock",
    ),
    spec(
        "limits.no_survivors",
        L,
        Run::WallClock,
        "a detached daemon dies with the run",
    ),
    spec(
        "egress.undeclared_name",
        E,
        Run::Main,
        "undeclared names do not resolve",
    ),
    spec(
        "egress.ip_literal",
        E,
        Run::Main,
        "TCP to an IPv4 literal is not relayed",
    ),
    spec(
        "egress.ipv6_literal",
        E,
        Run::Main,
        "TCP to an IPv6 literal is not relayed",
    ),
    spec(
        "egress.dns_exfiltration",
        E,
        Run::Main,
        "a DNS query to an outside resolver never leaves",
    ),
    spec(
        "egress.udp",
        E,
        Run::Main,
        "UDP to other ports never leaves",
    ),
    spec(
        "egress.host_loopback",
        E,
        Run::Main,
        "services on the host's loopback are unreachable",
    ),
    spec(
        "egress.declared_name",
        E,
        Run::Main,
        "declared names get a synthetic address from the sandbox resolver",
    ),
    spec(
        "egress.secret_exfiltration",
        E,
        Run::Requests,
        "a secret's placeholder to another host (header, query, DNS label) is refused; only its host gets the value",
    ),
    spec(
        "egress.fronting_keepalive",
        E,
        Run::Requests,
        "a second request naming another host on a kept-alive or pipelined connection is refused",
    ),
];

/// Why an item cannot hold on the process tier, by the nature of the tier (no
/// namespaces, no mounts: docs/tiers.md). Such an item is reported N/A there with this
/// reason, whatever the probe saw; every other item runs and must PASS.
pub fn not_on_process_tier(id: &str) -> Option<&'static str> {
    Some(match id {
        "ns.pid" => "the process tier has no PID namespace: host processes are visible (Landlock scopes signals, seccomp refuses ptrace: landlock.scope, seccomp.ptrace)",
        "ns.ipc" => "the process tier has no IPC namespace: SysV IPC and message queues are the host's",
        "ns.uts" => "the process tier has no UTS namespace: the hostname is the host's (and cannot be changed: no capabilities)",
        "ns.net" => "the process tier has no network namespace: Landlock refuses TCP connects, the socket filter UDP (egress.ip_literal, egress.udp)",
        "ns.mount" => "the process tier has no mount namespace: the host's root, with Landlock as the filesystem boundary (secrets.*, fs.*)",
        "ns.cgroup" => "the process tier has no cgroup namespace: /proc/self/cgroup shows the run's host cgroup",
        "proc.kernel_masked" => "the process tier cannot mask /proc files (no mount namespace): the skill reads /proc/kallsyms etc. as any unprivileged host process does",
        "limits.tmp_size" => "the process tier's /tmp is a scratch directory on the host's filesystem, not a sized tmpfs (file size is still capped: limits.file_size)",
        "egress.undeclared_name" | "egress.dns_exfiltration" => "the process tier has no sandbox resolver: a query needs a UDP socket, which the socket filter refuses (egress.udp)",
        "egress.declared_name" => "the process tier has no sandbox resolver, so no synthetic answers",
        "egress.secret_exfiltration" | "egress.fronting_keepalive" => "request-level egress rules and secrets need the container tier",
        _ => return None,
    })
}

pub fn items_of(run: Run) -> impl Iterator<Item = &'static Spec> {
    ITEMS.iter().filter(move |s| s.run == run)
}

/// One result line, as the probe prints it (JSON, one per line) and `check` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub status: Status,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_run_has_items() {
        let mut ids: Vec<&str> = ITEMS.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ITEMS.len());
        for r in Run::ALL {
            assert!(items_of(r).count() > 0, "{}", r.name());
            assert_eq!(Run::parse(r.name()), Some(r));
        }
    }

    #[test]
    fn process_tier_reasons_name_real_items() {
        let na: Vec<&str> = ITEMS
            .iter()
            .filter(|s| not_on_process_tier(s.id).is_some())
            .map(|s| s.id)
            .collect();
        assert_eq!(na.len(), 13, "{na:?}");
        // What must hold on every tier.
        for id in [
            "fs.toctou_declared_path",
            "secrets.home_files",
            "seccomp.tiocsti",
            "proc.sys_readonly",
            "cve.2019_5736",
            "cve.shocker",
        ] {
            assert_eq!(not_on_process_tier(id), None, "{id}");
        }
    }

    #[test]
    fn docs_describe_every_item() {
        let docs = include_str!("../../../docs/check.md");
        for s in ITEMS {
            assert!(
                docs.contains(&format!("| `{}` |", s.id)),
                "docs/check.md lacks {}",
                s.id
            );
        }
    }

    #[test]
    fn status_serializes_as_the_checklist_shows_it() {
        let r = ItemResult {
            id: "ns.pid".into(),
            status: Status::NotApplicable,
            detail: "x".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"id":"ns.pid","status":"N/A","detail":"x"}"#);
        assert_eq!(serde_json::from_str::<ItemResult>(&text).unwrap(), r);
    }
}
