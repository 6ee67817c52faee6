//! Ad-hoc sandboxes for an agent's shell command (`exec`, MCP `exec_command`):
//! deny-all defaults plus exactly what the caller grants. The current directory is
//! never granted implicitly.

use std::path::{Path, PathBuf};

use skillsandbox_manifest::{
    Entrypoint, EnvPattern, FilesystemPolicy, Limits, Policy, SkillInfo, Tier,
};

/// Grants for an ad-hoc sandbox. `None` limits keep the base (or default) value.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    /// Variable names, or prefixes ending in `*`.
    pub env: Vec<String>,
    pub memory_mb: Option<u64>,
    pub timeout_s: Option<u64>,
    pub max_processes: Option<u64>,
    pub tier: Option<Tier>,
    /// Working directory inside the sandbox (must be granted or scratch space).
    pub workdir: Option<PathBuf>,
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    // Lexical normalisation: `a/../b` → `b`; the launcher refuses symlinks separately.
    skillsandbox_manifest::normalize_path(&joined)
}

/// The policy for `command` under `grants`, on top of `base` (a manifest's policy) or
/// the deny-all default. Relative paths are taken from `cwd`.
pub fn adhoc_policy(
    base: Option<Policy>,
    command: &[String],
    grants: &Grants,
    cwd: &Path,
) -> Policy {
    let mut p = base.unwrap_or_else(|| Policy {
        skill: SkillInfo {
            name: "exec".to_string(),
            version: "0.0.0".to_string(),
            description: Some("ad-hoc command".to_string()),
            author: None,
        },
        skill_dir: None,
        manifest: None,
        network: Default::default(),
        filesystem: FilesystemPolicy::default(),
        env: Default::default(),
        syscalls: Default::default(),
        limits: Limits::default(),
        tier: Tier::Auto,
        record_denials: None,
        entrypoint: Entrypoint {
            command: String::new(),
            args: Vec::new(),
            workdir: PathBuf::from(skillsandbox_sandbox::plan::SANDBOX_HOME),
        },
    });
    if let Some((cmd, args)) = command.split_first() {
        p.entrypoint.command = cmd.clone();
        p.entrypoint.args = args.to_vec();
    }
    p.filesystem
        .read
        .extend(grants.read.iter().map(|r| absolute(cwd, r)));
    p.filesystem
        .write
        .extend(grants.write.iter().map(|w| absolute(cwd, w)));
    for e in &grants.env {
        p.env.allow.push(match e.strip_suffix('*') {
            Some(prefix) => EnvPattern::Prefix(prefix.to_string()),
            None => EnvPattern::Exact(e.clone()),
        });
    }
    if let Some(m) = grants.memory_mb {
        p.limits.memory_mb = m;
    }
    if let Some(t) = grants.timeout_s {
        p.limits.max_runtime_seconds = t;
    }
    if let Some(n) = grants.max_processes {
        p.limits.max_processes = n;
    }
    if let Some(t) = grants.tier {
        p.tier = t;
    }
    if let Some(w) = &grants.workdir {
        p.entrypoint.workdir = absolute(cwd, w);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_all_by_default_and_cwd_not_granted() {
        let p = adhoc_policy(
            None,
            &["ls".into(), "-l".into()],
            &Grants::default(),
            Path::new("/home/u/proj"),
        );
        assert!(p.filesystem.read.is_empty());
        assert!(p.filesystem.write.is_empty());
        assert!(p.network.egress.is_empty());
        assert!(p.env.allow.is_empty());
        assert_eq!(p.entrypoint.command, "ls");
        assert_eq!(p.entrypoint.args, vec!["-l"]);
        assert_eq!(p.entrypoint.workdir, PathBuf::from("/home/sandbox"));
    }

    #[test]
    fn grants_are_made_absolute() {
        let g = Grants {
            read: vec!["src".into()],
            write: vec!["../out/./x".into()],
            env: vec!["LC_*".into(), "TERM".into()],
            memory_mb: Some(64),
            ..Default::default()
        };
        let p = adhoc_policy(None, &["true".into()], &g, Path::new("/w/proj"));
        assert_eq!(p.filesystem.read, vec![PathBuf::from("/w/proj/src")]);
        assert_eq!(p.filesystem.write, vec![PathBuf::from("/w/out/x")]);
        assert_eq!(
            p.env.allow,
            vec![
                EnvPattern::Prefix("LC_".into()),
                EnvPattern::Exact("TERM".into())
            ]
        );
        assert_eq!(p.limits.memory_mb, 64);
    }
}
