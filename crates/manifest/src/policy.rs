//! The resolved policy: what a manifest (or an ad-hoc `exec` request) grants, with
//! every path absolute, `~` expanded and every default applied.
//!
//! This is the contract between the manifest front end and everything that enforces
//! it. It is plain data: enforcement code asks it questions instead of re-reading YAML.
//! It never touches the filesystem.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default limits, shared by the manifest defaults and the ad-hoc `exec` sandbox.
pub mod defaults {
    pub const MEMORY_MB: u64 = 256;
    pub const CPU_CORES: f64 = 1.0;
    pub const MAX_RUNTIME_SECONDS: u64 = 60;
    pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
    pub const MAX_PROCESSES: u64 = 64;
    pub const MAX_OPEN_FILES: u64 = 256;
    pub const MAX_FILE_SIZE_MB: u64 = 64;
    pub const TMP_SIZE_MB: u64 = 64;
    pub const EGRESS_PORTS: [u16; 1] = [443];
}

/// Everything the runtime needs to confine one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub skill: SkillInfo,
    /// Absolute host path of the skill directory, mounted read-only at `/skill`.
    /// `None` for ad-hoc `exec` sandboxes, which get no skill directory.
    pub skill_dir: Option<PathBuf>,
    /// Where the manifest came from, and the SHA-256 (hex) of its bytes.
    pub manifest: Option<ManifestSource>,
    pub network: NetworkPolicy,
    pub filesystem: FilesystemPolicy,
    pub env: EnvPolicy,
    pub syscalls: SyscallProfile,
    pub limits: Limits,
    pub tier: Tier,
    /// `isolation.record_denials`: refused filesystem accesses become violations.
    /// `None` when the manifest does not say: skills record them
    /// (`skillsandbox_skill::load` sets `Some(true)`), other callers do not.
    #[serde(default)]
    pub record_denials: Option<bool>,
    pub entrypoint: Entrypoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillInfo {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Empty: no network at all (loopback inside the sandbox only).
    pub egress: Vec<EgressRule>,
    /// `skillsandbox learn` only, never from a manifest: every name resolves (to a
    /// synthetic address) and every connection is recorded with the name it carries,
    /// then reset. Nothing is relayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// Secrets swapped in by the egress service (the sandbox sees placeholders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRule>,
}

/// One secret: its variable, where its value comes from, where it may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRule {
    pub name: String,
    pub from: SecretSource,
    pub hosts: Vec<DomainPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum SecretSource {
    /// A variable of the invoker's environment.
    Env(String),
    /// A file of the host (its content, without a trailing newline).
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EgressRule {
    Domain {
        domain: DomainPattern,
        ports: Vec<u16>,
        /// Request-level rules; empty: the host is SNI/Host-checked pass-through.
        #[serde(default, skip_serializing_if = "HttpRules::is_empty")]
        http: HttpRules,
        /// The name may resolve to a private or reserved address (never the cloud
        /// metadata service).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_private_resolution: bool,
    },
    Cidr {
        cidr: ipnet::IpNet,
        ports: Vec<u16>,
    },
}

/// What each HTTP request to a host must satisfy, and the host's caps. Any of these
/// set makes the egress service terminate the connection and check every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRules {
    /// Allowed methods (upper case); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Allowed paths, `*` matching any run of characters; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
}

impl HttpRules {
    pub fn is_empty(&self) -> bool {
        self == &HttpRules::default()
    }

    /// Whether `method` is allowed.
    pub fn method_allowed(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// Whether `path` (without the query string) is allowed.
    pub fn path_allowed(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| glob_match(p, path))
    }
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A lower-case ASCII (punycode) domain name, exact or `*.suffix` (sub-domains only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", content = "name", rename_all = "snake_case")]
pub enum DomainPattern {
    Exact(String),
    /// Holds the suffix without the `*.`: `Wildcard("example.com")` matches
    /// `a.example.com` and `a.b.example.com`, never `example.com` itself.
    Wildcard(String),
}

impl DomainPattern {
    /// Whether `name` (any case, optional trailing dot) is covered by this pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self {
            DomainPattern::Exact(d) => name == *d,
            DomainPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainPattern::Exact(d) => f.write_str(d),
            DomainPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl NetworkPolicy {
    /// The rule that allows `name` on `port`, if any.
    pub fn domain_allows(&self, name: &str, port: u16) -> bool {
        self.egress.iter().any(|r| match r {
            EgressRule::Domain { domain, ports, .. } => {
                domain.matches(name) && ports.contains(&port)
            }
            EgressRule::Cidr { .. } => false,
        })
    }

    /// Whether any domain rule covers `name`, on whatever port.
    /// Whether the sandbox gets the egress service at all (rules, or record mode).
    pub fn active(&self) -> bool {
        !self.egress.is_empty() || self.record
    }

    /// The request-level rules of the domain rule that allows `name` on `port`, when
    /// its requests are checked: it has rules, or the run has secrets (then every
    /// host is checked, so a placeholder cannot leave inside TLS to any of them).
    pub fn http_rules(&self, name: &str, port: u16) -> Option<&HttpRules> {
        self.egress.iter().find_map(|r| match r {
            EgressRule::Domain {
                domain,
                ports,
                http,
                ..
            } if domain.matches(name)
                && ports.contains(&port)
                && (!http.is_empty() || !self.secrets.is_empty()) =>
            {
                Some(http)
            }
            _ => None,
        })
    }

    /// Whether the domain rule that allows `name` on `port` lets it resolve to a
    /// private or reserved address.
    pub fn private_resolution(&self, name: &str, port: u16) -> bool {
        self.egress.iter().any(|r| {
            matches!(r, EgressRule::Domain { domain, ports, allow_private_resolution: true, .. }
                if domain.matches(name) && ports.contains(&port))
        })
    }

    /// Whether any rule checks requests (the run then needs the interception CA).
    pub fn intercepts(&self) -> bool {
        !self.secrets.is_empty()
            || self
                .egress
                .iter()
                .any(|r| matches!(r, EgressRule::Domain { http, .. } if !http.is_empty()))
    }

    pub fn domain_declared(&self, name: &str) -> bool {
        self.egress.iter().any(|r| match r {
            EgressRule::Domain { domain, .. } => domain.matches(name),
            EgressRule::Cidr { .. } => false,
        })
    }

    /// Whether a `cidr` rule allows `addr` on `port`.
    pub fn cidr_allows(&self, addr: IpAddr, port: u16) -> bool {
        self.egress.iter().any(|r| match r {
            EgressRule::Cidr { cidr, ports } => cidr.contains(&addr) && ports.contains(&port),
            EgressRule::Domain { .. } => false,
        })
    }

    /// Every TCP port some rule declares, sorted and de-duplicated.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .egress
            .iter()
            .flat_map(|r| match r {
                EgressRule::Domain { ports, .. } | EgressRule::Cidr { ports, .. } => ports.clone(),
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    pub fn has_domain_rules(&self) -> bool {
        self.egress
            .iter()
            .any(|r| matches!(r, EgressRule::Domain { .. }))
    }
}

/// Absolute host paths. `write` implies read; `deny` wins over both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemPolicy {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub deny: Vec<PathBuf>,
}

impl FilesystemPolicy {
    pub fn is_denied(&self, path: &Path) -> bool {
        self.deny.iter().any(|d| path.starts_with(d))
    }

    pub fn allows_write(&self, path: &Path) -> bool {
        !self.is_denied(path) && self.write.iter().any(|w| path.starts_with(w))
    }

    pub fn allows_read(&self, path: &Path) -> bool {
        !self.is_denied(path)
            && (self.allows_write(path) || self.read.iter().any(|r| path.starts_with(r)))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPolicy {
    pub allow: Vec<EnvPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", content = "name", rename_all = "snake_case")]
pub enum EnvPattern {
    Exact(String),
    /// `LC_*` is stored as `Prefix("LC_")`.
    Prefix(String),
}

impl EnvPolicy {
    /// Whether the host variable `name` may be passed into the sandbox. `PATH`, `HOME`
    /// and `TMPDIR` are set by the sandbox itself and are never imported.
    pub fn allows(&self, name: &str) -> bool {
        if matches!(name, "PATH" | "HOME" | "TMPDIR") {
            return false;
        }
        self.allow.iter().any(|p| match p {
            EnvPattern::Exact(n) => n == name,
            EnvPattern::Prefix(pre) => name.starts_with(pre.as_str()),
        })
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SyscallProfile {
    #[default]
    Default,
    Strict,
    Permissive,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Auto,
    Container,
    Process,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_mb: u64,
    pub cpu_cores: f64,
    pub max_runtime_seconds: u64,
    pub max_output_bytes: u64,
    pub max_processes: u64,
    pub max_open_files: u64,
    pub max_file_size_mb: u64,
    pub tmp_size_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: defaults::MEMORY_MB,
            cpu_cores: defaults::CPU_CORES,
            max_runtime_seconds: defaults::MAX_RUNTIME_SECONDS,
            max_output_bytes: defaults::MAX_OUTPUT_BYTES,
            max_processes: defaults::MAX_PROCESSES,
            max_open_files: defaults::MAX_OPEN_FILES,
            max_file_size_mb: defaults::MAX_FILE_SIZE_MB,
            tmp_size_mb: defaults::TMP_SIZE_MB,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entrypoint {
    /// A bare name (looked up in the sandbox PATH) or an absolute path inside the sandbox.
    pub command: String,
    pub args: Vec<String>,
    /// Absolute path inside the sandbox.
    pub workdir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = DomainPattern::Wildcard("example.com".into());
        assert!(p.matches("a.example.com"));
        assert!(p.matches("A.B.Example.COM."));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
        assert!(!p.matches(".example.com"));
    }

    #[test]
    fn exact_matches_only_itself() {
        let p = DomainPattern::Exact("api.example.com".into());
        assert!(p.matches("API.example.com."));
        assert!(!p.matches("x.api.example.com"));
    }

    #[test]
    fn env_never_imports_path_home_tmpdir() {
        let e = EnvPolicy {
            allow: vec![
                EnvPattern::Exact("PATH".into()),
                EnvPattern::Prefix("LC_".into()),
                EnvPattern::Prefix(String::new()),
            ],
        };
        assert!(!e.allows("PATH"));
        assert!(!e.allows("HOME"));
        assert!(e.allows("LC_ALL"));
    }

    #[test]
    fn deny_wins_over_write() {
        let fs = FilesystemPolicy {
            read: vec![],
            write: vec!["/data".into()],
            deny: vec!["/data/secret".into()],
        };
        assert!(fs.allows_write(Path::new("/data/x")));
        assert!(fs.allows_read(Path::new("/data/x")));
        assert!(!fs.allows_read(Path::new("/data/secret/k")));
        assert!(!fs.allows_write(Path::new("/etc")));
    }
}
