//! Value checks: pure functions from what the user wrote to the parsed value, or a
//! [`Problem`] saying what is wrong and what to write instead. Used both while parsing
//! (to report every bad value) and while resolving (to build the policy).

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use ipnet::IpNet;

use crate::policy::{DomainPattern, EnvPattern};

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
        }
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`.
pub(crate) fn skill_name(s: &str) -> Result<(), Problem> {
    let ok_first = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok_first && ok_rest && s.len() <= 64 {
        return Ok(());
    }
    let suggestion: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect::<String>()
        .trim_start_matches(['.', '_', '-'])
        .to_owned();
    let p = Problem::new(format!(
        "invalid skill name `{s}`: use 1-64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    ));
    Err(if suggestion.is_empty() {
        p
    } else {
        p.hint(format!("for example `{suggestion}`"))
    })
}

pub(crate) fn version(s: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(s).map_err(|e| {
        Problem::new(format!(
            "invalid version `{s}`: not semantic versioning ({e})"
        ))
        .hint("write MAJOR.MINOR.PATCH, e.g. \"0.1.0\"")
    })
}

/// An exact host name or `*.suffix`, lower-cased. See DESIGN.md §5.
/// HTTP methods a rule may name.
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(crate) fn http_method(s: &str) -> Result<(), Problem> {
    if HTTP_METHODS.contains(&s) {
        return Ok(());
    }
    let upper = s.to_ascii_uppercase();
    let hint = if HTTP_METHODS.contains(&upper.as_str()) {
        format!("write it in capitals: `{upper}`")
    } else {
        format!("valid methods: {}", HTTP_METHODS.join(", "))
    };
    Err(Problem::new(format!("invalid HTTP method `{s}`")).hint(hint))
}

pub(crate) fn http_path(s: &str) -> Result<(), Problem> {
    if !s.starts_with('/') {
        return Err(
            Problem::new(format!("invalid path `{s}`: must start with `/`"))
                .hint("write the path of the URL, e.g. `/repos/acme/*`, without the host"),
        );
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        return Err(Problem::new(format!(
            "invalid path `{s}`: character {c:?} is not allowed"
        ))
        .hint("paths are matched without the query string; `*` matches any run of characters"));
    }
    if s.len() > 1024 {
        return Err(Problem::new("path longer than 1024 characters"));
    }
    Ok(())
}

/// `1MB`, `512 KiB`, `2GB`, `100B`, `4096`.
pub(crate) fn byte_size(s: &str) -> Result<u64, Problem> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Problem::new(format!("invalid size `{s}`"))
            .hint("write a number of bytes, or a size such as `512KB`, `1MB`, `2GiB`")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "TB" => 1000 * 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(0) => {
            Err(Problem::new("a size of 0 allows nothing").hint("leave the cap out for no cap"))
        }
        Some(v) if v <= u64::MAX >> 1 => Ok(v),
        _ => Err(Problem::new(format!("size `{s}` is too large"))),
    }
}

pub(crate) fn domain(s: &str) -> Result<DomainPattern, Problem> {
    if s.is_empty() {
        return Err(Problem::new("empty domain").hint("write a host name like `api.example.com`"));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: non-ASCII character `{c}`; internationalised names must be written in punycode"
        ))
        .hint("convert the name to its ASCII form (labels starting with `xn--`), e.g. `bücher.example` is `xn--bcher-kva.example`"));
    }
    if s.contains("://") || s.contains('/') {
        return Err(
            Problem::new(format!("invalid domain `{s}`: a URL, not a host name"))
                .hint("write only the host name, e.g. `api.example.com`; ports go in `ports`"),
        );
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(
            Problem::new(format!("`{s}` is an IP address, not a domain")).hint(format!(
                "use a cidr rule instead: `- cidr: {}`",
                single_host_cidr(s)
            )),
        );
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        return Err(
            Problem::new(format!("invalid domain `{s}`: contains a port"))
                .hint(format!("write `domain: {host}` and `ports: [{port}]`")),
        );
    }
    if s.ends_with('.') {
        return Err(Problem::new(format!("invalid domain `{s}`: trailing dot"))
            .hint(format!("write `{}`", s.trim_end_matches('.'))));
    }
    let lower = s.to_ascii_lowercase();
    if lower.len() > 253 {
        return Err(Problem::new(format!(
            "invalid domain: {} characters long; the limit is 253",
            lower.len()
        )));
    }
    let labels: Vec<&str> = lower.split('.').collect();
    let (wildcard, names) = match labels.split_first() {
        Some((&"*", rest)) => (true, rest),
        _ => (false, labels.as_slice()),
    };
    for label in names {
        check_label(s, label, wildcard)?;
    }
    if names
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: the last label is all digits"
        ))
        .hint("an IP address goes in a `cidr` rule"));
    }
    if wildcard {
        if names.len() < 2 {
            return Err(Problem::new(format!(
                "wildcard `{s}` is too broad: it must be followed by at least two labels"
            ))
            .hint("write e.g. `*.example.com`, or list the exact host names"));
        }
        return Ok(DomainPattern::Wildcard(names.join(".")));
    }
    Ok(DomainPattern::Exact(lower))
}

fn check_label(s: &str, label: &str, wildcard: bool) -> Result<(), Problem> {
    if label.contains('*') {
        let p = Problem::new(format!(
            "invalid domain `{s}`: `*` is only allowed as the whole left-most label"
        ));
        return Err(if wildcard {
            p.hint("one wildcard covers every depth: `*.example.com` matches `a.b.example.com`")
        } else {
            p.hint("write `*.example.com` to allow every sub-domain of example.com")
        });
    }
    if label.is_empty() {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: empty label (`..` or a leading dot)"
        )));
    }
    if label.len() > 63 {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: label `{label}` is {} characters; the limit is 63",
            label.len()
        )));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: character `{c}` is not allowed; host names use letters, digits and `-`"
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(Problem::new(format!(
            "invalid domain `{s}`: label `{label}` starts or ends with `-`"
        )));
    }
    Ok(())
}

fn single_host_cidr(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("{addr}/128"),
        _ => format!("{addr}/32"),
    }
}

pub(crate) fn cidr(s: &str) -> Result<IpNet, Problem> {
    if s.parse::<IpAddr>().is_ok() {
        return Err(
            Problem::new(format!("`{s}` has no prefix length")).hint(format!(
                "write `{}` for this one address",
                single_host_cidr(s)
            )),
        );
    }
    let net: IpNet = s.parse().map_err(|_| {
        Problem::new(format!("invalid CIDR `{s}`"))
            .hint("write ADDRESS/PREFIX, e.g. `10.20.0.0/16` or `2001:db8::/32`")
    })?;
    if net.addr() != net.network() {
        let host_len = net.max_prefix_len();
        return Err(Problem::new(format!(
            "CIDR `{s}` has host bits set: the address has bits set beyond the /{} prefix",
            net.prefix_len()
        ))
        .hint(format!(
            "write `{}` for the whole network, or `{}/{host_len}` for the single address",
            net.trunc(),
            net.addr()
        )));
    }
    Ok(net)
}

/// Where a host path is anchored, before `~` and the skill directory are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPath {
    Absolute(PathBuf),
    /// Relative to the home directory (`~` alone is the empty path).
    Home(PathBuf),
    /// Relative to the skill directory, already normalised (no `.` or `..`).
    Skill(PathBuf),
}

impl HostPath {
    pub fn resolve(&self, home: &Path, skill_dir: &Path) -> PathBuf {
        match self {
            HostPath::Absolute(p) => p.clone(),
            HostPath::Home(rest) => join_clean(home, rest),
            HostPath::Skill(rest) => join_clean(skill_dir, rest),
        }
    }
}

fn join_clean(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

pub(crate) fn host_path(s: &str) -> Result<HostPath, Problem> {
    if s.is_empty() {
        return Err(Problem::new("empty path"));
    }
    if s.contains('\0') {
        return Err(Problem::new("path contains a NUL byte"));
    }
    if let Some(rest) = s.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(
                Problem::new(format!("`{s}`: only `~` and `~/...` are supported"))
                    .hint("other users' home directories must be written as absolute paths"),
            );
        }
        let rest = rest.trim_start_matches('/');
        return Ok(HostPath::Home(no_dotdot(s, rest)?));
    }
    if s.starts_with('/') {
        let clean = no_dotdot(s, s)?;
        return Ok(HostPath::Absolute(clean));
    }
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(Problem::new(format!(
                        "`{s}` climbs out of the skill directory"
                    ))
                    .hint("relative paths stay inside the skill directory; write an absolute path or `~/...` for anything else"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(HostPath::Skill(out))
}

/// Absolute and home paths may not contain `..`: with symlinks the kernel and a
/// textual clean-up would disagree about where they point.
fn no_dotdot(original: &str, p: &str) -> Result<PathBuf, Problem> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::ParentDir => {
                return Err(Problem::new(format!("`{original}` contains `..`"))
                    .hint("write the path it means without `..`"));
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// `NAME` or `PREFIX*` (a bare `*` is allowed, and linted).
pub(crate) fn secret_name(s: &str) -> Result<(), Problem> {
    match env_pattern(s) {
        Ok(EnvPattern::Exact(_)) => Ok(()),
        _ => Err(Problem::new(format!("invalid secret name `{s}`"))
            .hint("a secret is named by the variable the skill reads, e.g. `GITHUB_TOKEN`")),
    }
}

pub(crate) fn secret_source(s: &str) -> Result<(), Problem> {
    if let Some(var) = s.strip_prefix("env:") {
        return secret_name(var).map_err(|_| {
            Problem::new(format!(
                "invalid source `{s}`: `{var}` is not a variable name"
            ))
        });
    }
    if let Some(path) = s.strip_prefix("file:") {
        if Path::new(path).is_absolute() {
            return Ok(());
        }
        return Err(Problem::new(format!(
            "invalid source `{s}`: the path must be absolute"
        )));
    }
    Err(Problem::new(format!("invalid source `{s}`"))
        .hint("write `env:NAME` (the invoker's environment) or `file:/absolute/path`"))
}

pub(crate) fn header_name(s: &str) -> Result<(), Problem> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(format!("invalid header name `{s}`")).hint("e.g. `Authorization`"))
    }
}

pub(crate) fn env_pattern(s: &str) -> Result<EnvPattern, Problem> {
    let (name, prefix) = match s.strip_suffix('*') {
        Some(p) => (p, true),
        None => (s, false),
    };
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if !valid || (name.is_empty() && !prefix) {
        let hint = if name.contains('*') {
            "`*` may only end a prefix, e.g. `LC_*`"
        } else if name.contains('=') {
            "list only the variable's name; its value comes from the host"
        } else {
            "names use letters, digits and `_`, and do not start with a digit; `PREFIX*` matches a prefix"
        };
        return Err(Problem::new(format!("invalid environment variable name `{s}`")).hint(hint));
    }
    Ok(if prefix {
        EnvPattern::Prefix(name.to_owned())
    } else {
        EnvPattern::Exact(name.to_owned())
    })
}

/// Non-empty; a bare name or an absolute path inside the sandbox.
pub(crate) fn command(s: &str) -> Result<(), Problem> {
    if s.trim().is_empty() {
        return Err(Problem::new("the entrypoint command is empty")
            .hint("name the program to run, e.g. `python3`"));
    }
    if s.contains('\0') {
        return Err(Problem::new("the entrypoint command contains a NUL byte"));
    }
    if s.contains('/') && !s.starts_with('/') {
        let rest = s.trim_start_matches("./");
        return Err(Problem::new(format!(
            "`{s}` is a relative path; the command must be a bare name or an absolute path inside the sandbox"
        ))
        .hint(format!("the skill directory is mounted at /skill: write `/skill/{rest}`")));
    }
    Ok(())
}

/// Absolute, no `..`, no NUL.
pub(crate) fn workdir(s: &str) -> Result<PathBuf, Problem> {
    if s.contains('\0') {
        return Err(Problem::new("workdir contains a NUL byte"));
    }
    if !s.starts_with('/') {
        return Err(Problem::new(format!(
            "workdir `{s}` is not absolute; it is a path inside the sandbox"
        ))
        .hint(format!(
            "the skill directory is mounted at /skill: write `/skill/{}`",
            s.trim_start_matches("./")
        )));
    }
    no_dotdot(s, s)
}

/// A near miss among `candidates`, for "did you mean" hints.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            domain("API.Example.com"),
            Ok(DomainPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            domain("*.example.com"),
            Ok(DomainPattern::Wildcard("example.com".into()))
        );
        assert_eq!(
            domain("xn--bcher-kva.example"),
            Ok(DomainPattern::Exact("xn--bcher-kva.example".into()))
        );
        for bad in [
            "*.com",
            "a.*.com",
            "*a.com",
            "**.a.com",
            "-a.com",
            "a-.com",
            "a..com",
            ".a.com",
            "a_b.com",
            "bücher.de",
            "1.2.3.4",
            "a.com:443",
            "https://a.com",
            "a.com.",
            "a.123",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(domain(&long).is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(host_path("/a/./b/"), Ok(HostPath::Absolute("/a/b".into())));
        assert_eq!(host_path("~"), Ok(HostPath::Home("".into())));
        assert_eq!(host_path("~/x/"), Ok(HostPath::Home("x".into())));
        assert_eq!(
            host_path("data/../cache"),
            Ok(HostPath::Skill("cache".into()))
        );
        assert_eq!(host_path("."), Ok(HostPath::Skill("".into())));
        assert!(host_path("../x").is_err());
        assert!(host_path("a/../../x").is_err());
        assert!(host_path("/a/../b").is_err());
        assert!(host_path("~bob/x").is_err());
        assert!(host_path("a\0b").is_err());
    }

    #[test]
    fn env_patterns() {
        assert_eq!(env_pattern("LC_*"), Ok(EnvPattern::Prefix("LC_".into())));
        assert_eq!(env_pattern("*"), Ok(EnvPattern::Prefix(String::new())));
        assert_eq!(env_pattern("_X1"), Ok(EnvPattern::Exact("_X1".into())));
        for bad in ["", "1X", "A-B", "A*B", "A=1", "**"] {
            assert!(env_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert!(cidr("10.20.0.0/16").is_ok());
        assert!(cidr("2001:db8::/32").is_ok());
        let e = cidr("10.20.1.0/16").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("write `10.20.0.0/16` for the whole network, or `10.20.1.0/32` for the single address"));
        assert!(cidr("10.0.0.1").is_err());
        assert!(cidr("10.0.0.0/33").is_err());
    }
}
