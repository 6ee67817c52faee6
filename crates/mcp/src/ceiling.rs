//! The operator's ceiling for `exec_command`: the most an agent may grant itself.
//!
//! The operator sets it once at startup (`serve --ceiling-*`); every request is checked
//! against it before anything runs, and a request beyond it is refused naming exactly
//! what exceeded. Paths are compared after lexical normalisation (`a/../b` is `b`);
//! symlinked grants are refused later by the runtime, so a link inside a ceiling path
//! cannot lead outside it.
//!
//! Never widens anything: the result of a check is at most what the ceiling allows.

use std::path::{Path, PathBuf};

use skillsandbox_manifest::{defaults, DomainPattern, EgressRule};

/// Why a ceiling flag or an `exec_command` request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeilingError {
    #[error("{what} {path:?} is not absolute; pass an absolute path")]
    RelativePath { what: &'static str, path: String },
    #[error(
        "{what} {path} is outside the operator ceiling ({allowed}); \
         ask the operator to start the server with {flag} covering it"
    )]
    PathOutside {
        what: &'static str,
        path: String,
        allowed: String,
        flag: &'static str,
    },
    #[error(
        "env {name:?} is outside the operator ceiling ({allowed}); \
         ask the operator to add --ceiling-env {name}"
    )]
    EnvOutside { name: String, allowed: String },
    #[error("env {name:?} is not a variable name (letters, digits, `_`, optional trailing `*`)")]
    EnvName { name: String },
    #[error(
        "{what} {requested} exceeds the operator ceiling of {ceiling} {unit}; \
         ask for at most {ceiling} or ask the operator to raise {flag}"
    )]
    LimitExceeded {
        what: &'static str,
        requested: u64,
        ceiling: u64,
        unit: &'static str,
        flag: &'static str,
    },
    #[error("{what} must be at least 1")]
    LimitZero { what: &'static str },
    #[error("domain {domain:?}: {reason}")]
    DomainSyntax { domain: String, reason: String },
    #[error(
        "domain {domain} (ports {ports}) is outside the operator ceiling ({allowed}); \
         ask the operator to add --ceiling-domain {domain}"
    )]
    DomainOutside {
        domain: String,
        ports: String,
        allowed: String,
    },
}

/// A domain (exact or `*.suffix`) with the TCP ports it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainGrant {
    pub pattern: DomainPattern,
    pub ports: Vec<u16>,
}

impl DomainGrant {
    /// `example.com`, `*.example.com`, `example.com:443,8443` (default port 443).
    pub fn parse(text: &str) -> Result<DomainGrant, CeilingError> {
        skillsandbox_manifest::parse_domain_grant(text)
            .map(|(pattern, ports)| DomainGrant { pattern, ports })
            .map_err(|reason| CeilingError::DomainSyntax {
                domain: text.to_string(),
                reason,
            })
    }

    /// Whether this grant allows everything `other` asks for.
    fn covers(&self, other: &DomainGrant) -> bool {
        let name_ok = match (&self.pattern, &other.pattern) {
            (DomainPattern::Exact(a), DomainPattern::Exact(b)) => a == b,
            (DomainPattern::Exact(_), DomainPattern::Wildcard(_)) => false,
            (DomainPattern::Wildcard(_), DomainPattern::Exact(b)) => self.pattern.matches(b),
            (DomainPattern::Wildcard(a), DomainPattern::Wildcard(b)) => {
                b == a || b.strip_suffix(a.as_str()).is_some_and(|h| h.ends_with('.'))
            }
        };
        name_ok && other.ports.iter().all(|p| self.ports.contains(p))
    }

    fn display(&self) -> String {
        format!("{}:{}", self.pattern, join_ports(&self.ports))
    }

    /// The egress rule this grant stands for.
    pub fn to_rule(&self) -> EgressRule {
        EgressRule::Domain {
            domain: self.pattern.clone(),
            ports: self.ports.clone(),
            http: Default::default(),
            allow_private_resolution: false,
        }
    }
}

fn join_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Lexical normalisation: `.` dropped, `..` pops (never above `/`).
pub fn normalize(p: &Path) -> PathBuf {
    skillsandbox_manifest::normalize_path(p)
}

/// The most an agent may ask `exec_command` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    /// Absolute, normalised paths the agent may grant read access below.
    pub read: Vec<PathBuf>,
    /// Absolute, normalised paths the agent may grant write (and read) access below.
    pub write: Vec<PathBuf>,
    /// Variable names, or prefixes ending in `*`, the agent may pass through.
    pub env: Vec<String>,
    pub memory_mb: u64,
    pub timeout_s: u64,
    pub domains: Vec<DomainGrant>,
}

impl Default for Ceiling {
    /// Deny-all: no paths, variables or domains; the default memory and time limits.
    fn default() -> Self {
        Ceiling {
            read: Vec::new(),
            write: Vec::new(),
            env: Vec::new(),
            memory_mb: defaults::MEMORY_MB,
            timeout_s: defaults::MAX_RUNTIME_SECONDS,
            domains: Vec::new(),
        }
    }
}

/// What an `exec_command` request asks for (paths and names as the agent wrote them).
#[derive(Debug, Clone, Default)]
pub struct Requested<'a> {
    pub read: &'a [String],
    pub write: &'a [String],
    pub env: &'a [String],
    pub allow_domains: &'a [String],
    pub memory_mb: Option<u64>,
    pub timeout_s: Option<u64>,
}

/// A request that passed the ceiling, in the runtime's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub env: Vec<String>,
    pub egress: Vec<EgressRule>,
    /// Always set: the requested value, or the ceiling when the request has none and
    /// the ceiling is below the default.
    pub memory_mb: u64,
    pub timeout_s: u64,
}

impl Ceiling {
    /// Build from `serve` flags; relative paths are taken from `cwd`.
    pub fn from_flags(
        read: &[PathBuf],
        write: &[PathBuf],
        env: &[String],
        memory_mb: Option<u64>,
        timeout_s: Option<u64>,
        domains: &[String],
        cwd: &Path,
    ) -> Result<Ceiling, CeilingError> {
        let abs = |p: &PathBuf| normalize(&cwd.join(p));
        for e in env {
            check_env_name(e)?;
        }
        let memory_mb = memory_mb.unwrap_or(defaults::MEMORY_MB);
        let timeout_s = timeout_s.unwrap_or(defaults::MAX_RUNTIME_SECONDS);
        if memory_mb == 0 {
            return Err(CeilingError::LimitZero {
                what: "--ceiling-memory",
            });
        }
        if timeout_s == 0 {
            return Err(CeilingError::LimitZero {
                what: "--ceiling-timeout",
            });
        }
        Ok(Ceiling {
            read: read.iter().map(abs).collect(),
            write: write.iter().map(abs).collect(),
            env: env.to_vec(),
            memory_mb,
            timeout_s,
            domains: domains
                .iter()
                .map(|d| DomainGrant::parse(d))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Check a request; the first thing beyond the ceiling is the error.
    pub fn admit(&self, req: &Requested<'_>) -> Result<Admitted, CeilingError> {
        let readable: Vec<&PathBuf> = self.read.iter().chain(&self.write).collect();
        let mut read = Vec::new();
        for r in req.read {
            read.push(check_path("read path", r, &readable, "--ceiling-read")?);
        }
        let writable: Vec<&PathBuf> = self.write.iter().collect();
        let mut write = Vec::new();
        for w in req.write {
            write.push(check_path("write path", w, &writable, "--ceiling-write")?);
        }
        for e in req.env {
            check_env_name(e)?;
            if !self.env.iter().any(|c| env_covers(c, e)) {
                return Err(CeilingError::EnvOutside {
                    name: e.clone(),
                    allowed: list_or_none(self.env.iter().cloned()),
                });
            }
        }
        let mut egress = Vec::new();
        for d in req.allow_domains {
            let grant = DomainGrant::parse(d)?;
            if !self.domains.iter().any(|c| c.covers(&grant)) {
                return Err(CeilingError::DomainOutside {
                    domain: grant.pattern.to_string(),
                    ports: join_ports(&grant.ports),
                    allowed: list_or_none(self.domains.iter().map(DomainGrant::display)),
                });
            }
            egress.push(grant.to_rule());
        }
        let memory_mb = limit(
            "memory_mb",
            req.memory_mb,
            self.memory_mb,
            defaults::MEMORY_MB,
            "MiB",
            "--ceiling-memory",
        )?;
        let timeout_s = limit(
            "timeout_s",
            req.timeout_s,
            self.timeout_s,
            defaults::MAX_RUNTIME_SECONDS,
            "s",
            "--ceiling-timeout",
        )?;
        Ok(Admitted {
            read,
            write,
            env: req.env.to_vec(),
            egress,
            memory_mb,
            timeout_s,
        })
    }
}

fn limit(
    what: &'static str,
    requested: Option<u64>,
    ceiling: u64,
    default: u64,
    unit: &'static str,
    flag: &'static str,
) -> Result<u64, CeilingError> {
    match requested {
        Some(0) => Err(CeilingError::LimitZero { what }),
        Some(n) if n > ceiling => Err(CeilingError::LimitExceeded {
            what,
            requested: n,
            ceiling,
            unit,
            flag,
        }),
        Some(n) => Ok(n),
        None => Ok(default.min(ceiling)),
    }
}

fn check_path(
    what: &'static str,
    requested: &str,
    allowed: &[&PathBuf],
    flag: &'static str,
) -> Result<PathBuf, CeilingError> {
    let p = Path::new(requested);
    if !p.is_absolute() {
        return Err(CeilingError::RelativePath {
            what,
            path: requested.to_string(),
        });
    }
    let norm = normalize(p);
    if allowed.iter().any(|a| norm.starts_with(a)) {
        Ok(norm)
    } else {
        Err(CeilingError::PathOutside {
            what,
            path: norm.display().to_string(),
            allowed: list_or_none(allowed.iter().map(|a| a.display().to_string())),
            flag,
        })
    }
}

fn check_env_name(name: &str) -> Result<(), CeilingError> {
    let base = name.strip_suffix('*').unwrap_or(name);
    let ok = (!base.is_empty() || name == "*")
        && base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CeilingError::EnvName {
            name: name.to_string(),
        })
    }
}

/// Whether the ceiling entry `c` allows the request `r` (names or `PREFIX*`).
fn env_covers(c: &str, r: &str) -> bool {
    match (c.strip_suffix('*'), r.strip_suffix('*')) {
        (None, None) => c == r,
        (None, Some(_)) => false,
        (Some(cp), None) => r.starts_with(cp),
        (Some(cp), Some(rp)) => rp.starts_with(cp),
    }
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "the ceiling grants none".to_string()
    } else {
        format!("allowed: {}", v.join(", "))
    }
}

#[cfg(test)]
#[path = "ceiling_tests.rs"]
mod tests;
