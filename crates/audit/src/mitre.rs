//! Building violations: the time stamp, default severities, and the MITRE ATT&CK
//! tables (by violation kind, by refused syscall, by refused path).
//!
//! A technique is given only where it clearly fits whatever the detail is; the
//! tables and their reasons are documented in `docs/trace.md`. Producers that know
//! more (a destination, a syscall, a path) pass their own [`Mitre`].

use crate::event::{now, Mitre, Severity, Violation, ViolationKind};

fn mitre(tactic: &str, technique_id: &str, technique: &str) -> Mitre {
    Mitre {
        tactic: tactic.to_owned(),
        technique_id: technique_id.to_owned(),
        technique: technique.to_owned(),
    }
}

/// A violation stamped with the current time. When `mitre` is `None` the default
/// for `kind` ([`mitre_for`]) is used, if there is one.
pub fn violation(
    kind: ViolationKind,
    severity: Severity,
    detail: impl Into<String>,
    mitre: Option<Mitre>,
) -> Violation {
    Violation {
        kind,
        severity,
        detail: detail.into(),
        time: now(),
        mitre: mitre.or_else(|| mitre_for(kind)),
    }
}

/// The default severity of a kind, for producers without a better judgement.
pub fn default_severity(kind: ViolationKind) -> Severity {
    match kind {
        ViolationKind::DomainMismatch | ViolationKind::SecretExfiltration => Severity::Critical,
        ViolationKind::NetworkBlocked
        | ViolationKind::NetworkCap
        | ViolationKind::RebindingBlocked
        | ViolationKind::SyscallBlocked => Severity::High,
        ViolationKind::DnsBlocked
        | ViolationKind::FilesystemDenied
        | ViolationKind::ProcessLimit => Severity::Medium,
        ViolationKind::MemoryLimit
        | ViolationKind::Timeout
        | ViolationKind::OutputLimit
        | ViolationKind::FileSizeLimit => Severity::Low,
    }
}

/// The ATT&CK technique that fits every violation of `kind`, if one does.
pub fn mitre_for(kind: ViolationKind) -> Option<Mitre> {
    match kind {
        // Every query for an undeclared name carries data (the name) to whoever
        // answers for that zone: DNS used as an application-layer channel.
        ViolationKind::DnsBlocked => Some(mitre(
            "Command and Control",
            "T1071.004",
            "Application Layer Protocol: DNS",
        )),
        // TLS SNI / HTTP Host naming another domain than the address was issued for
        // is the definition of domain fronting.
        ViolationKind::DomainMismatch => Some(mitre(
            "Command and Control",
            "T1090.004",
            "Proxy: Domain Fronting",
        )),
        ViolationKind::SecretExfiltration => Some(mitre(
            "Exfiltration",
            "T1041",
            "Exfiltration Over C2 Channel",
        )),
        // Exhausting the pids limit is a fork bomb in practice.
        ViolationKind::ProcessLimit => Some(mitre("Impact", "T1499", "Endpoint Denial of Service")),
        // A refused connection, a rebinding answer, a syscall, a path and the other
        // resource limits say too little on their own; producers add one from the
        // detail (see `mitre_for_syscall`, `mitre_for_path`).
        ViolationKind::NetworkBlocked
        | ViolationKind::NetworkCap
        | ViolationKind::RebindingBlocked
        | ViolationKind::SyscallBlocked
        | ViolationKind::FilesystemDenied
        | ViolationKind::MemoryLimit
        | ViolationKind::Timeout
        | ViolationKind::OutputLimit
        | ViolationKind::FileSizeLimit => None,
    }
}

/// The ATT&CK technique a refused syscall (by name, e.g. `ptrace`) clearly
/// points at, if any.
pub fn mitre_for_syscall(name: &str) -> Option<Mitre> {
    match name {
        "ptrace" => Some(mitre(
            "Defense Evasion, Privilege Escalation",
            "T1055.008",
            "Process Injection: Ptrace System Calls",
        )),
        "process_vm_writev" => Some(mitre(
            "Defense Evasion, Privilege Escalation",
            "T1055",
            "Process Injection",
        )),
        "mount" | "umount2" | "pivot_root" | "chroot" | "fsopen" | "fsmount" | "open_tree"
        | "move_mount" | "mount_setattr" | "unshare" | "setns" | "open_by_handle_at" => {
            Some(mitre("Privilege Escalation", "T1611", "Escape to Host"))
        }
        "init_module" | "finit_module" => Some(mitre(
            "Persistence, Privilege Escalation",
            "T1547.006",
            "Boot or Logon Autostart Execution: Kernel Modules and Extensions",
        )),
        "reboot" => Some(mitre("Impact", "T1529", "System Shutdown/Reboot")),
        _ => None,
    }
}

/// The ATT&CK technique a refused filesystem access clearly points at, judged by
/// the path alone (credential stores), if any.
pub fn mitre_for_path(path: &str) -> Option<Mitre> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let has = |name: &str| components.contains(&name);
    let file = components.last().copied().unwrap_or("");
    if path == "/etc/shadow" || path == "/etc/gshadow" {
        return Some(mitre(
            "Credential Access",
            "T1003.008",
            "OS Credential Dumping: /etc/passwd and /etc/shadow",
        ));
    }
    if has(".ssh") || has(".gnupg") {
        return Some(mitre(
            "Credential Access",
            "T1552.004",
            "Unsecured Credentials: Private Keys",
        ));
    }
    let browser = has(".mozilla")
        || has("google-chrome")
        || has("chromium")
        || has("BraveSoftware")
        || file == "Cookies"
        || file == "cookies.sqlite"
        || file == "Login Data";
    if browser {
        return Some(mitre(
            "Credential Access",
            "T1555.003",
            "Credentials from Password Stores: Credentials from Web Browsers",
        ));
    }
    let credential_file = has(".aws")
        || has(".kube")
        || has("gcloud")
        || has(".azure")
        || (has(".docker") && file == "config.json")
        || matches!(
            file,
            ".env" | ".netrc" | ".git-credentials" | ".npmrc" | ".pypirc" | "credentials"
        )
        || file.starts_with(".env.");
    if credential_file {
        return Some(mitre(
            "Credential Access",
            "T1552.001",
            "Unsecured Credentials: Credentials In Files",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_stamps_time_and_defaults_mitre() {
        let v = violation(
            ViolationKind::DomainMismatch,
            Severity::Critical,
            "sni evil.example",
            None,
        );
        assert!(v.time.ends_with('Z'), "{}", v.time);
        assert_eq!(
            v.mitre.map(|m| m.technique_id).as_deref(),
            Some("T1090.004")
        );
        let own = mitre("Exfiltration", "T1041", "Exfiltration Over C2 Channel");
        let v = violation(
            ViolationKind::NetworkBlocked,
            Severity::High,
            "x",
            Some(own.clone()),
        );
        assert_eq!(v.mitre, Some(own));
        let v = violation(ViolationKind::Timeout, Severity::Low, "60 s", None);
        assert_eq!(v.mitre, None);
    }

    #[test]
    fn syscall_and_path_tables() {
        let id = |m: Option<Mitre>| m.map(|m| m.technique_id);
        assert_eq!(
            id(mitre_for_syscall("ptrace")).as_deref(),
            Some("T1055.008")
        );
        assert_eq!(id(mitre_for_syscall("unshare")).as_deref(), Some("T1611"));
        assert_eq!(id(mitre_for_syscall("read")), None);
        assert_eq!(
            id(mitre_for_path("/home/u/.ssh/id_ed25519")).as_deref(),
            Some("T1552.004")
        );
        assert_eq!(
            id(mitre_for_path("/home/u/.aws/credentials")).as_deref(),
            Some("T1552.001")
        );
        assert_eq!(
            id(mitre_for_path("/srv/app/.env")).as_deref(),
            Some("T1552.001")
        );
        assert_eq!(
            id(mitre_for_path(
                "/home/u/.config/google-chrome/Default/Cookies"
            ))
            .as_deref(),
            Some("T1555.003")
        );
        assert_eq!(
            id(mitre_for_path("/etc/shadow")).as_deref(),
            Some("T1003.008")
        );
        assert_eq!(id(mitre_for_path("/usr/share/doc/readme")), None);
        assert_eq!(id(mitre_for_path("/home/u/.environment")), None);
    }
}
