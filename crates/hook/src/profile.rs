//! `skillsandbox init`: the project profile (`.skillsandbox/profile.yaml`), written
//! from what the project directory shows. The profile is a manifest (same schema,
//! parser and diagnostics; `validate` accepts it); every line is commented so the
//! user can see why it is there and widen or narrow it.

use std::path::{Path, PathBuf};

/// Where the profile lives, relative to the project root.
pub const PROFILE_PATH: &str = ".skillsandbox/profile.yaml";

/// Credential stores hidden even inside readable trees.
pub const HIDDEN: &[(&str, &str)] = &[
    ("~/.ssh", "SSH keys"),
    ("~/.aws", "AWS credentials"),
    ("~/.config/gh", "GitHub CLI token"),
    ("~/.netrc", "netrc passwords"),
    ("~/.docker/config.json", "Docker registry credentials"),
    ("~/.kube", "Kubernetes credentials"),
    ("~/.gnupg", "GPG keys"),
    ("~/.local/share/keyrings", "desktop keyrings"),
    ("~/.password-store", "pass(1) store"),
    ("~/.mozilla", "Firefox profiles (cookies, saved logins)"),
    ("~/.config/google-chrome", "Chrome profiles"),
    ("~/.config/chromium", "Chromium profiles"),
    ("~/.config/gcloud", "Google Cloud credentials"),
    ("~/.azure", "Azure credentials"),
    ("~/.npmrc", "npm tokens"),
    ("~/.pypirc", "PyPI tokens"),
    ("~/.cargo/credentials.toml", "crates.io token"),
    ("~/.git-credentials", "git credential store"),
];

/// One ecosystem the project uses and the registry hosts it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ecosystem {
    /// The file that showed it, e.g. `Cargo.toml`.
    pub evidence: String,
    pub what: &'static str,
    pub hosts: &'static [&'static str],
}

/// What `init` found in the project directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectFacts {
    pub root: PathBuf,
    pub ecosystems: Vec<Ecosystem>,
    /// Git hosts the repository's remotes point at (host, the remote URL).
    pub git_hosts: Vec<(String, String)>,
    /// Readable trees outside the project (existing ones only).
    pub read_trees: Vec<PathBuf>,
}

const RULES: &[(&str, &str, &[&str])] = &[
    (
        "Cargo.toml",
        "Rust crates",
        &["crates.io", "index.crates.io", "static.crates.io"],
    ),
    ("package.json", "npm packages", &["registry.npmjs.org"]),
    (
        "pyproject.toml",
        "Python packages",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "requirements*.txt",
        "Python packages",
        &["pypi.org", "files.pythonhosted.org"],
    ),
    (
        "go.mod",
        "Go modules",
        &["proxy.golang.org", "sum.golang.org"],
    ),
    (
        "Gemfile",
        "Ruby gems",
        &["rubygems.org", "index.rubygems.org"],
    ),
];

/// Look at `root` (one directory level, plus `.git/config`).
pub fn detect(root: &Path) -> ProjectFacts {
    let names: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut ecosystems: Vec<Ecosystem> = Vec::new();
    for (pattern, what, hosts) in RULES {
        let found = names.iter().find(|n| match pattern.split_once('*') {
            Some((pre, post)) => n.starts_with(pre) && n.ends_with(post),
            None => n == pattern,
        });
        if let Some(n) = found {
            if !ecosystems.iter().any(|e| e.hosts == *hosts) {
                ecosystems.push(Ecosystem {
                    evidence: n.clone(),
                    what,
                    hosts,
                });
            }
        }
    }
    let git_hosts = std::fs::read_to_string(root.join(".git/config"))
        .map(|c| git_remote_hosts(&c))
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let read_trees = ["/home", "/root", "/srv"]
        .iter()
        .map(PathBuf::from)
        .chain(home)
        .filter(|p| p.is_dir())
        .fold(Vec::new(), |mut acc: Vec<PathBuf>, p| {
            if !acc.iter().any(|a| p.starts_with(a)) {
                acc.push(p);
            }
            acc
        });
    ProjectFacts {
        root: root.to_path_buf(),
        ecosystems,
        git_hosts,
        read_trees,
    }
}

/// Hosts of `url = ...` lines in a git config: `https://host/...`, `ssh://git@host/`,
/// `git@host:owner/repo`.
pub fn git_remote_hosts(config: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in config.lines() {
        let Some(url) = line.trim().strip_prefix("url").map(str::trim_start) else {
            continue;
        };
        let Some(url) = url.strip_prefix('=').map(str::trim) else {
            continue;
        };
        let rest = url
            .split_once("://")
            .map_or(url, |(_, r)| r)
            .rsplit_once('@')
            .map_or_else(|| url.split_once("://").map_or(url, |(_, r)| r), |(_, r)| r);
        let host: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            .collect::<String>()
            .to_ascii_lowercase();
        if host.contains('.') && !out.iter().any(|(h, _)| *h == host) {
            out.push((host, url.to_owned()));
        }
    }
    out
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// The profile text for `facts`.
pub fn render(facts: &ProjectFacts) -> String {
    let mut o = String::new();
    o.push_str(
        "# SkillSandbox project profile: the sandbox every shell command of a coding agent\n\
         # gets in this project (`skillsandbox hook`). Same schema as skillsandbox.yaml;\n\
         # check it with `skillsandbox validate .skillsandbox/profile.yaml`. Everything not\n\
         # granted here is denied: other files, every other host, every other variable.\n\
         skill:\n  name: project-shell\n  version: \"0.1.0\"\n  description: \"agent shell commands in this project\"\n\
         permissions:\n  filesystem:\n",
    );
    o.push_str("    # The project directory: writable.\n    write:\n");
    o.push_str(&format!(
        "      - {}\n",
        yaml_str(&facts.root.display().to_string())
    ));
    o.push_str(
        "    # Read-only: the rest of the filesystem a shell needs (system directories\n\
         \x20   # /usr, /bin, /lib, /opt are always there, read-only, and /etc is synthetic).\n\
         \x20   read:\n",
    );
    for t in &facts.read_trees {
        o.push_str(&format!("      - {}\n", yaml_str(&t.display().to_string())));
    }
    o.push_str("    # Credentials: hidden even inside the trees above.\n    deny:\n");
    for (p, why) in HIDDEN {
        o.push_str(&format!("      - {p}  # {why}\n"));
    }
    o.push_str("  network:\n");
    if facts.ecosystems.is_empty() && facts.git_hosts.is_empty() {
        o.push_str(
            "    # No package manifest or git remote found: no network at all.\n    egress: []\n",
        );
    } else {
        o.push_str("    egress:\n");
        for e in &facts.ecosystems {
            o.push_str(&format!(
                "      # {} found: {} from their registry.\n",
                e.evidence, e.what
            ));
            for h in e.hosts {
                o.push_str(&format!("      - domain: {h}\n        ports: [443]\n"));
            }
        }
        for (h, url) in &facts.git_hosts {
            o.push_str(&format!(
                "      # a git remote points here ({url}): fetch over https. The connection\n\
                 \x20     # rule cannot tell a fetch from a push; credentials stay hidden above.\n\
                 \x20     - domain: {h}\n        ports: [443]\n"
            ));
        }
    }
    o.push_str(
        "  env_vars:\n\
         \x20   # Only these host variables reach the command. Names that look like secrets\n\
         \x20   # (*_TOKEN, *_KEY, *_SECRET, AWS_*, ...) are never passed: add one here only\n\
         \x20   # if a command really needs it.\n\
         \x20   allow: [LANG, \"LC_*\", TERM, COLORTERM, NO_COLOR, TZ]\n\
         \x20 syscalls:\n    profile: default\n\
         resources:\n\
         \x20 memory_mb: 4096          # per command\n\
         \x20 max_runtime_seconds: 1800\n\
         \x20 max_processes: 1024\n\
         \x20 max_open_files: 8192\n\
         \x20 max_file_size_mb: 4096\n\
         \x20 max_output_bytes: 16777216\n\
         \x20 tmp_size_mb: 2048         # private /tmp and $HOME, gone after each command\n\
         isolation:\n  tier: auto\n\
         entrypoint:\n  command: /bin/sh   # the hook runs: /bin/sh -c '<the agent's command>'\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_of_every_url_form() {
        let cfg = "[remote \"origin\"]\n\turl = git@github.com:acme/app.git\n\
                   [remote \"up\"]\n\turl = https://gitlab.com/acme/app\n\
                   [remote \"x\"]\n\turl = ssh://git@Codeberg.org/a/b\n\
                   [remote \"dup\"]\n\turl = https://github.com/other/x\n";
        let hosts: Vec<String> = git_remote_hosts(cfg).into_iter().map(|(h, _)| h).collect();
        assert_eq!(hosts, ["github.com", "gitlab.com", "codeberg.org"]);
    }

    #[test]
    fn detection_explains_each_grant() {
        let dir = std::env::temp_dir().join(format!("hook-init-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "").unwrap();
        std::fs::write(dir.join("requirements-dev.txt"), "").unwrap();
        std::fs::write(dir.join(".git/config"), "url = https://github.com/a/b\n").unwrap();
        let facts = detect(&dir);
        let text = render(&facts);
        assert!(text.contains("# Cargo.toml found: Rust crates"), "{text}");
        assert!(
            text.contains("# requirements-dev.txt found: Python packages"),
            "{text}"
        );
        assert!(text.contains("- domain: github.com"), "{text}");
        assert!(!text.contains("registry.npmjs.org"), "{text}");
        assert!(text.contains("- ~/.ssh  # SSH keys"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
