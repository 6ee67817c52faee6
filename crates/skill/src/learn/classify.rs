//! Where each observed path or destination goes in a proposal: already in the
//! sandbox's view, a grant, or refused with its reason. Pure.

use std::net::IpAddr;

use skillsandbox_sandbox::plan::{ETC_PASSTHROUGH, SANDBOX_HOME, SANDBOX_RESOLVER, SYSTEM_DIRS};

use crate::danger;

/// Where the skill folder is inside the sandbox.
pub const SKILL_MOUNT: &str = "/skill";

/// The verdict on one path access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathClass {
    /// Part of the system view every sandbox gets read-only (interpreters, libraries,
    /// certificates): no grant needed.
    System,
    /// The skill's own folder (read-only) or the run's private scratch and home, or
    /// the kernel interfaces of the sandbox: no grant needed.
    Provided,
    /// Host configuration outside the system view: looked up, absent in the sandbox,
    /// and programs run without it (`/etc/gai.conf`). Not proposed, not a refusal.
    Unneeded,
    /// Needs `filesystem.read`.
    Read,
    /// Needs `filesystem.write` (only inside paths the manifest already grants).
    Write,
    /// Never proposed: why.
    Refused(String),
    /// `/`, a top-level directory or a whole home: refused when it exists (a listing
    /// of it shows everything there), a lookup when it does not.
    OverBroad,
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// Scratch and home: private to the run, writable, gone after it.
const SCRATCH: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", SANDBOX_HOME];
/// Kernel interfaces the sandbox provides; writes there are refused.
const KERNEL: &[&str] = &["/proc", "/sys", "/dev"];
/// Device files a program may write to.
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/fd",
    "/dev/pts",
    "/dev/ptmx",
];
/// Files the sandbox writes itself (present in every run).
const SANDBOX_ETC: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
];

/// Classifies a read, write or exec of `path` (absolute, normalised, as the sandbox
/// sees it). `declared_writes` are the write paths the existing manifest grants.
pub fn path(write: bool, path: &str, declared_writes: &[String]) -> PathClass {
    if let Some(what) = danger::credential_path(path) {
        return PathClass::Refused(format!("credential path ({what})"));
    }
    if SCRATCH.iter().any(|d| under(path, d)) {
        return PathClass::Provided;
    }
    if under(path, SKILL_MOUNT) {
        return if write {
            PathClass::Refused(
                "write into the skill folder, which is read-only (write to $TMPDIR instead)".into(),
            )
        } else {
            PathClass::Provided
        };
    }
    if KERNEL.iter().any(|d| under(path, d)) {
        return if !write || WRITABLE_DEVICES.iter().any(|d| under(path, d)) {
            PathClass::Provided
        } else {
            PathClass::Refused("write to a kernel interface".into())
        };
    }
    if write {
        if declared_writes.iter().any(|d| under(path, d)) {
            return PathClass::Write;
        }
        return PathClass::Refused(
            "write outside the skill's workdir (its private $TMPDIR and the write paths the \
             manifest already declares)"
                .into(),
        );
    }
    if SYSTEM_DIRS.iter().any(|d| under(path, d))
        || ETC_PASSTHROUGH.iter().any(|d| under(path, d))
        || SANDBOX_ETC.contains(&path)
    {
        return PathClass::System;
    }
    if under(path, "/etc") {
        return PathClass::Unneeded;
    }
    if over_broad(path) {
        return PathClass::OverBroad;
    }
    PathClass::Read
}

/// `/`, a top-level directory, or a whole home directory.
fn over_broad(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    matches!(parts.as_slice(), [] | [_] | ["home", _])
}

/// The verdict on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestClass {
    /// Inside the sandbox (loopback, its DNS resolver, the name service cache probe).
    Provided,
    /// A declared name on a port.
    Domain {
        name: String,
        port: u16,
    },
    Refused(String),
}

/// Classifies a `connect` target (`ip:port`, `[ip6]:port`, `unix:PATH`); `name_of`
/// maps a synthetic address to the name the sandbox's DNS handed it out for.
pub fn destination(target: &str, name_of: impl Fn(&str) -> Option<String>) -> DestClass {
    if let Some(path) = target.strip_prefix("unix:") {
        if let Some(what) = danger::credential_path(path) {
            return DestClass::Refused(format!("socket of {what}"));
        }
        if path.ends_with("/nscd/socket") || SCRATCH.iter().any(|d| under(path, d)) {
            return DestClass::Provided;
        }
        return DestClass::Refused("a host service's unix socket (never granted)".into());
    }
    let Some((ip, port)) = split_host_port(target) else {
        return DestClass::Refused(format!("unparsable destination {target}"));
    };
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return DestClass::Refused(format!("unparsable destination {target}"));
    };
    if addr.is_loopback() || addr.is_unspecified() || ip == SANDBOX_RESOLVER {
        return DestClass::Provided;
    }
    match name_of(&ip) {
        Some(name) => match danger::exfil_host(&name) {
            Some(what) => DestClass::Refused(format!("exfiltration-shaped host ({what})")),
            None => DestClass::Domain { name, port },
        },
        None => DestClass::Refused(
            "raw IP destination (not reached through a name; never granted)".into(),
        ),
    }
}

fn split_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let w = vec!["/data/out".to_string()];
        let cases: &[(bool, &str, PathClass)] = &[
            (false, "/usr/lib/python3.11/os.py", PathClass::System),
            (
                false,
                "/etc/ssl/certs/ca-certificates.crt",
                PathClass::System,
            ),
            (false, "/skill/data/sample.txt", PathClass::Provided),
            (true, "/tmp/slugs.txt", PathClass::Provided),
            (false, "/proc/self/status", PathClass::Provided),
            (true, "/dev/null", PathClass::Provided),
            (false, "/data/in/a.csv", PathClass::Read),
            (true, "/data/out/b.csv", PathClass::Write),
            (false, "/etc/gai.conf", PathClass::Unneeded),
            (false, "/home", PathClass::OverBroad),
            (false, "/home/u", PathClass::OverBroad),
            (false, "/root", PathClass::OverBroad),
            (false, "/package.json", PathClass::OverBroad),
        ];
        for (write, p, want) in cases {
            assert_eq!(&path(*write, p, &w), want, "{p}");
        }
        for (write, p, why) in [
            (false, "/root/.ssh/id_rsa", "credential path"),
            (false, "/home/sandbox/.aws/credentials", "credential path"),
            (
                true,
                "/home/u/notes.txt",
                "write outside the skill's workdir",
            ),
            (true, "/skill/cache.json", "write into the skill folder"),
            (
                true,
                "/proc/sys/kernel/core_pattern",
                "write to a kernel interface",
            ),
        ] {
            match path(write, p, &w) {
                PathClass::Refused(r) => assert!(r.starts_with(why), "{p}: {r}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn destinations() {
        let names = |ip: &str| (ip == "198.18.0.1").then(|| "api.example.com".to_string());
        let evil = |ip: &str| (ip == "198.18.0.2").then(|| "paste.example-exfil.net".to_string());
        assert_eq!(
            destination("198.18.0.1:443", names),
            DestClass::Domain {
                name: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(destination("127.0.0.1:8080", names), DestClass::Provided);
        assert_eq!(destination("192.0.2.53:53", names), DestClass::Provided);
        assert!(
            matches!(destination("203.0.113.9:443", names), DestClass::Refused(r) if r.starts_with("raw IP"))
        );
        assert!(
            matches!(destination("198.18.0.2:443", evil), DestClass::Refused(r) if r.starts_with("exfiltration"))
        );
        assert!(
            matches!(destination("unix:/run/docker.sock", names), DestClass::Refused(r) if r.contains("Docker"))
        );
        assert_eq!(
            destination("unix:/var/run/nscd/socket", names),
            DestClass::Provided
        );
    }
}
