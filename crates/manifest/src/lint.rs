//! Lints: warnings about grants that are valid but over-broad or misleading. They
//! look at the resolved [`Policy`] (so they also apply to ad-hoc `exec` policies) and
//! name the manifest field each one is about; `load` adds the file position.
//!
//! Every lint has a stable identifier, listed in docs/manifest.md.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::policy::{DomainPattern, EgressRule, EnvPattern, Policy, SyscallProfile};

/// Credential stores and browser profiles, relative to a home directory.
const SECRETS_IN_HOME: &[&str] = &[
    ".ssh",
    ".aws",
    ".gnupg",
    ".config",
    ".kube",
    ".docker",
    ".azure",
    ".mozilla",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/gcloud",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".password-store",
    ".local/share/keyrings",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Firefox",
    "Library/Keychains",
    "Library/Cookies",
];

/// Files that run code at the next login: writing them is persistence.
const STARTUP_FILES_IN_HOME: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".config/autostart",
    ".local/bin",
];

const SYSTEM_SECRETS: &[&str] = &["/etc/shadow", "/etc/gshadow", "/etc/sudoers"];

/// Writing these (or anything containing them) changes the host.
const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/usr", "/var", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/opt", "/srv", "/root",
    "/home", "/Users",
];
/// Writing anywhere inside these changes the host.
const SYSTEM_TREES: &[&str] = &["/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot"];

/// Domains where anyone can get a sub-domain (or a path) of their own: a wildcard
/// over them lets a skill reach attacker-controlled hosts.
const MULTI_TENANT: &[&str] = &[
    "amazonaws.com",
    "cloudfront.net",
    "githubusercontent.com",
    "github.io",
    "gitlab.io",
    "herokuapp.com",
    "azurewebsites.net",
    "windows.net",
    "cloudapp.net",
    "appspot.com",
    "googleusercontent.com",
    "cloudfunctions.net",
    "run.app",
    "web.app",
    "firebaseapp.com",
    "vercel.app",
    "netlify.app",
    "pages.dev",
    "workers.dev",
    "r2.dev",
    "fly.dev",
    "onrender.com",
    "railway.app",
    "glitch.me",
    "repl.co",
    "ngrok.io",
    "ngrok.app",
    "ngrok-free.app",
    "trycloudflare.com",
    "loca.lt",
    "digitaloceanspaces.com",
    "blogspot.com",
    "fastly.net",
    "akamaized.net",
    "co.uk",
    "com.au",
    "co.jp",
    "com.br",
];
/// Bases where every level below is shared too (`*.s3.amazonaws.com`).
const MULTI_TENANT_DEEP: &[&str] = &["amazonaws.com", "windows.net", "googleusercontent.com"];

const METADATA_ADDRS: &[&str] = &["169.254.169.254", "fd00:ec2::254"];

/// Lints `policy` without knowing the user's home: home directories are recognised
/// as `/root`, `/home/NAME` and `/Users/NAME`.
pub fn lint(policy: &Policy) -> Vec<Diagnostic> {
    lint_with_home(policy, None)
}

/// Lints `policy`; `home` (the invoking user's) is checked besides the usual places.
pub fn lint_with_home(policy: &Policy, home: Option<&Path>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let homes = home_candidates(policy, home);
    let fs = &policy.filesystem;
    for (i, w) in fs.write.iter().enumerate() {
        let field = format!("permissions.filesystem.write[{i}]");
        broad_write(w, &homes, home, &field, &mut out);
        exposed_secrets(policy, w, &homes, home, &field, &mut out);
    }
    for (i, r) in fs.read.iter().enumerate() {
        let field = format!("permissions.filesystem.read[{i}]");
        exposed_secrets(policy, r, &homes, home, &field, &mut out);
    }
    for (i, d) in fs.deny.iter().enumerate() {
        let covered = fs.read.iter().chain(&fs.write).any(|g| d.starts_with(g))
            || policy.skill_dir.as_ref().is_some_and(|s| d.starts_with(s));
        if !covered {
            out.push(
                Diagnostic::warning(
                    "deny-unused",
                    &format!("permissions.filesystem.deny[{i}]"),
                    format!("`{}` is not inside any read or write path, so denying it has no effect", d.display()),
                )
                .with_hint("everything not granted is already invisible; remove this entry or fix the path"),
            );
        }
    }
    network(policy, &mut out);
    env(policy, &mut out);
    if policy.syscalls == SyscallProfile::Permissive {
        out.push(
            Diagnostic::warning(
                "permissive-profile",
                "permissions.syscalls.profile",
                "the `permissive` syscall profile only checks the architecture: ptrace, mount, bpf, keyctl and friends stay available",
            )
            .with_hint("use `default` unless the skill is known to need one of those calls"),
        );
    }
    if let Some(m) = &policy.manifest {
        let file = m.path.display().to_string();
        for d in &mut out {
            d.file.clone_from(&file);
        }
    }
    out
}

fn home_candidates(policy: &Policy, home: Option<&Path>) -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = home.map(Path::to_path_buf).into_iter().collect();
    homes.push(PathBuf::from("/root"));
    let fs = &policy.filesystem;
    for g in fs.read.iter().chain(&fs.write) {
        let mut c = g.components();
        if let (Some(root), Some(base), Some(user)) = (c.next(), c.next(), c.next()) {
            let base = base.as_os_str();
            if root.as_os_str() == "/" && (base == "home" || base == "Users") {
                homes.push(Path::new("/").join(base).join(user.as_os_str()));
            }
        }
    }
    homes.sort();
    homes.dedup();
    homes
}

/// `~/x` when `p` is in the user's home, else the absolute path.
fn show(p: &Path, home: Option<&Path>) -> String {
    match home.and_then(|h| p.strip_prefix(h).ok()) {
        Some(rest) if rest.as_os_str().is_empty() => "~".to_owned(),
        Some(rest) => format!("~/{}", rest.display()),
        None => p.display().to_string(),
    }
}

/// `a, b, c and N more`.
fn list(mut items: Vec<String>, max: usize) -> String {
    let more = items.len().saturating_sub(max);
    items.truncate(max);
    if more > 0 {
        format!("{} and {more} more", items.join(", "))
    } else {
        items.join(", ")
    }
}

fn broad_write(
    w: &Path,
    homes: &[PathBuf],
    home: Option<&Path>,
    field: &str,
    out: &mut Vec<Diagnostic>,
) {
    // Your home first: it is what people care about most.
    let mut covered: Vec<String> = homes
        .iter()
        .filter(|h| h.starts_with(w))
        .map(|h| show(h, home))
        .collect();
    for dir in SYSTEM_DIRS.iter().filter(|s| Path::new(s).starts_with(w)) {
        if !covered.iter().any(|c| c == dir) {
            covered.push((*dir).to_owned());
        }
    }
    let inside = SYSTEM_TREES
        .iter()
        .find(|s| w.starts_with(s) && w != Path::new(s));
    let startup: Vec<String> = homes
        .iter()
        .flat_map(|h| STARTUP_FILES_IN_HOME.iter().map(move |f| h.join(f)))
        .filter(|f| f.starts_with(w) || w.starts_with(f))
        .map(|f| show(&f, home))
        .collect();
    let shown = show(w, home);
    let message = if !covered.is_empty() {
        format!("write access to `{shown}` covers {}", list(covered, 5))
    } else if let Some(tree) = inside {
        format!("write access to `{shown}` inside the system directory {tree}")
    } else if !startup.is_empty() {
        format!(
            "write access to `{shown}` lets the skill plant code that runs at your next login ({})",
            list(startup, 5)
        )
    } else {
        return;
    };
    out.push(
        Diagnostic::warning("broad-write", field, message)
            .with_hint("grant write access only to a dedicated directory, e.g. `/tmp/<skill>-cache` or a path in the skill directory"),
    );
}

fn exposed_secrets(
    policy: &Policy,
    g: &Path,
    homes: &[PathBuf],
    home: Option<&Path>,
    field: &str,
    out: &mut Vec<Diagnostic>,
) {
    if policy.filesystem.is_denied(g) {
        return;
    }
    let mut secrets: Vec<PathBuf> = homes
        .iter()
        .flat_map(|h| SECRETS_IN_HOME.iter().map(move |s| h.join(s)))
        .chain(SYSTEM_SECRETS.iter().map(PathBuf::from))
        .filter(|s| (s.starts_with(g) && !policy.filesystem.is_denied(s)) || g.starts_with(s))
        .collect();
    // `~/.config` already names `~/.config/chromium`.
    let all = secrets.clone();
    secrets.retain(|s| {
        !all.iter()
            .any(|o| o != s && s.starts_with(o) && o.starts_with(g))
    });
    let all_homes = ["/", "/home", "/Users"].iter().any(|r| Path::new(r) == g);
    if secrets.is_empty() && !all_homes {
        return;
    }
    let mut names: Vec<String> = secrets.iter().map(|s| show(s, home)).collect();
    if all_homes {
        names.insert(0, "every user's home directory".to_owned());
    }
    let list = list(names, 6);
    let verb = if field.contains(".write[") {
        "write"
    } else {
        "read"
    };
    out.push(
        Diagnostic::warning(
            "sensitive-read",
            field,
            format!("{verb} access to `{}` exposes credentials or browser data: {list}", show(g, home)),
        )
        .with_hint("grant only the directories the skill needs, or list the secret ones under permissions.filesystem.deny"),
    );
}

fn network(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (i, rule) in policy.network.egress.iter().enumerate() {
        match rule {
            EgressRule::Domain {
                domain: DomainPattern::Wildcard(suffix),
                ..
            } => {
                let shared = MULTI_TENANT.iter().find(|base| {
                    suffix == *base
                        || (MULTI_TENANT_DEEP.contains(base)
                            && suffix.ends_with(&format!(".{base}")))
                });
                if let Some(base) = shared {
                    out.push(
                        Diagnostic::warning(
                            "multi-tenant-wildcard",
                            &format!("permissions.network.egress[{i}].domain"),
                            format!("`*.{suffix}` matches hosts anyone can create under {base}, including an attacker's"),
                        )
                        .with_hint("list the exact host names the skill needs, e.g. `my-bucket.s3.amazonaws.com`"),
                    );
                }
            }
            EgressRule::Cidr { cidr, .. } => {
                let field = format!("permissions.network.egress[{i}].cidr");
                if cidr.prefix_len() == 0 {
                    out.push(
                        Diagnostic::warning("cidr-everything", &field, format!("`{cidr}` allows every address, including private networks and the cloud metadata service"))
                            .with_hint("use domain rules, or the narrowest network the skill needs"),
                    );
                } else if let Some(addr) = METADATA_ADDRS
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .find(|a| cidr.contains(a))
                {
                    out.push(
                        Diagnostic::warning("cidr-metadata", &field, format!("`{cidr}` includes the cloud metadata service {addr}, which hands out instance credentials"))
                            .with_hint("narrow the range so it leaves out 169.254.169.254"),
                    );
                }
            }
            EgressRule::Domain { .. } => {}
        }
        if let EgressRule::Domain {
            domain,
            allow_private_resolution: true,
            ..
        } = rule
        {
            out.push(
                Diagnostic::warning(
                    "private-resolution",
                    &format!("permissions.network.egress[{i}].allow_private_resolution"),
                    format!("`{domain}` may resolve to a private address: whoever controls its DNS chooses what inside your network the skill reaches"),
                )
                .with_hint("prefer a `cidr` rule naming the mirror's network; the metadata service stays refused either way"),
            );
        }
    }
}

fn env(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (i, p) in policy.env.allow.iter().enumerate() {
        let field = format!("permissions.env_vars.allow[{i}]");
        match p {
            EnvPattern::Prefix(pre) if pre.is_empty() => out.push(
                Diagnostic::warning("env-allow-all", &field, "`*` passes every host environment variable into the sandbox, with every token and password in them")
                    .with_hint("list the variables the skill needs, e.g. `OPENWEATHER_API_KEY`, `LANG`, `LC_*`"),
            ),
            EnvPattern::Exact(name) if matches!(name.as_str(), "PATH" | "HOME" | "TMPDIR") => {
                let inside = match name.as_str() {
                    "PATH" => "PATH=/usr/local/bin:/usr/bin:/bin",
                    "HOME" => "HOME to a private scratch directory",
                    _ => "TMPDIR=/tmp",
                };
                out.push(
                    Diagnostic::warning("env-sandbox-managed", &field, format!("`{name}` is set by the sandbox ({inside}); the host's value is never imported"))
                        .with_hint(format!("accepted for compatibility; remove `{name}` from the list")),
                );
            }
            _ => {}
        }
    }
}
