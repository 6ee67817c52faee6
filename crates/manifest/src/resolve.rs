//! Raw [`Manifest`] → resolved [`Policy`]: absolute paths, `~` expanded, relative paths
//! joined to the skill directory, defaults applied, domains and env patterns parsed.
//!
//! Pure: no filesystem or environment access. List order is kept one-to-one with the
//! manifest (rules, paths and patterns are never merged or re-ordered), so a
//! diagnostic about `filesystem.write[2]` of the policy points at the manifest's
//! `permissions.filesystem.write[2]`.

use std::path::{Path, PathBuf};

use crate::check::{self, HostPath, Problem};
use crate::diag::{Diagnostic, ManifestError, Pos};
use crate::policy::{self, defaults, EgressRule as PolicyRule, Limits, Policy};
use crate::types::{bounds, EgressRule, Located, Manifest};

/// What resolution needs from the invoking user's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveEnv {
    /// The invoking user's home directory, for `~`. Must be absolute when the
    /// manifest uses `~`.
    pub home: PathBuf,
}

impl ResolveEnv {
    /// From `$HOME` of this process (empty when unset: `~` paths then fail to resolve).
    pub fn from_process_env() -> Self {
        ResolveEnv {
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
        }
    }
}

/// Resolve a parsed manifest against the skill directory and the user's home.
/// `skill_dir` must be absolute. Errors are positioned like parse errors; `file_label`
/// of the diagnostics is empty (the caller knows the file).
pub fn resolve(m: &Manifest, skill_dir: &Path, env: &ResolveEnv) -> Result<Policy, ManifestError> {
    let mut errors = Vec::new();
    if !skill_dir.is_absolute() {
        errors.push(Diagnostic::error(
            "",
            None,
            "",
            format!("skill directory `{}` is not absolute", skill_dir.display()),
        ));
    }
    let policy = lower(m, skill_dir, &env.home, &mut errors);
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(ManifestError::invalid(errors))
    }
}

/// Lowers `m`, pushing a diagnostic for every value that does not check (none, for a
/// manifest that came from `parse_str`, except a `~` without an absolute home).
fn lower(m: &Manifest, skill_dir: &Path, home: &Path, errors: &mut Vec<Diagnostic>) -> Policy {
    let mut cx = Lower {
        errors,
        home,
        skill_dir,
    };
    let perms = m.permissions.clone().unwrap_or_default();
    let egress_rules = perms.network.and_then(|n| n.egress).unwrap_or_default();
    let fs = perms.filesystem.unwrap_or_default();
    let env = perms.env_vars.and_then(|e| e.allow).unwrap_or_default();
    let res = m.resources.clone().unwrap_or_default();

    let egress: Vec<PolicyRule> = egress_rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| cx.rule(r, &format!("permissions.network.egress[{i}]")))
        .collect();
    let filesystem = policy::FilesystemPolicy {
        read: cx.paths(fs.read.as_deref(), "permissions.filesystem.read"),
        write: cx.paths(fs.write.as_deref(), "permissions.filesystem.write"),
        deny: cx.paths(fs.deny.as_deref(), "permissions.filesystem.deny"),
    };
    let allow: Vec<policy::EnvPattern> = env
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            cx.check(
                p,
                &format!("permissions.env_vars.allow[{i}]"),
                check::env_pattern,
            )
        })
        .collect();

    let secrets = cx.secrets(
        perms.secrets.as_deref().unwrap_or_default(),
        &egress,
        &allow,
    );

    let int = |v: &Option<Located<u64>>, default: u64| v.as_ref().map_or(default, |l| l.value);
    #[allow(clippy::cast_precision_loss)] // cpu_shares is at most 262144
    let cpu_cores = match (&res.cpu_cores, &res.cpu_shares) {
        (Some(c), _) => c.value,
        (None, Some(s)) => s.value as f64 / bounds::SHARES_PER_CORE,
        (None, None) => defaults::CPU_CORES,
    };
    let limits = Limits {
        memory_mb: int(&res.memory_mb, defaults::MEMORY_MB),
        cpu_cores,
        max_runtime_seconds: int(&res.max_runtime_seconds, defaults::MAX_RUNTIME_SECONDS),
        max_output_bytes: int(&res.max_output_bytes, defaults::MAX_OUTPUT_BYTES),
        max_processes: int(&res.max_processes, defaults::MAX_PROCESSES),
        max_open_files: int(&res.max_open_files, defaults::MAX_OPEN_FILES),
        max_file_size_mb: int(&res.max_file_size_mb, defaults::MAX_FILE_SIZE_MB),
        tmp_size_mb: int(&res.tmp_size_mb, defaults::TMP_SIZE_MB),
    };

    let ep = &m.entrypoint;
    let workdir = match &ep.workdir {
        Some(w) => cx
            .check(w, "entrypoint.workdir", check::workdir)
            .unwrap_or_else(|| PathBuf::from("/skill")),
        None => PathBuf::from("/skill"),
    };
    cx.check(&ep.command, "entrypoint.command", check::command);
    cx.check(&m.skill.name, "skill.name", check::skill_name);
    cx.check(&m.skill.version, "skill.version", check::version);

    Policy {
        skill: policy::SkillInfo {
            name: m.skill.name.value.clone(),
            version: m.skill.version.value.clone(),
            description: m.skill.description.as_ref().map(|d| d.value.clone()),
            author: m.skill.author.as_ref().map(|a| a.value.clone()),
        },
        skill_dir: Some(skill_dir.to_path_buf()),
        manifest: None,
        network: policy::NetworkPolicy {
            egress,
            record: false,
            secrets,
        },
        filesystem,
        env: policy::EnvPolicy { allow },
        syscalls: perms
            .syscalls
            .and_then(|s| s.profile)
            .map_or_else(Default::default, |p| p.value),
        limits,
        tier: m
            .isolation
            .as_ref()
            .and_then(|i| i.tier.as_ref())
            .map_or_else(Default::default, |t| t.value),
        record_denials: m
            .isolation
            .as_ref()
            .and_then(|i| i.record_denials.as_ref())
            .map(|r| r.value),
        entrypoint: policy::Entrypoint {
            command: ep.command.value.clone(),
            args: ep.args.iter().flatten().map(|a| a.value.clone()).collect(),
            workdir,
        },
    }
}

struct Lower<'a> {
    errors: &'a mut Vec<Diagnostic>,
    home: &'a Path,
    skill_dir: &'a Path,
}

impl Lower<'_> {
    fn check<T>(
        &mut self,
        v: &Located<String>,
        field: &str,
        f: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        match f(&v.value) {
            Ok(t) => Some(t),
            Err(p) => {
                self.push(v.pos, field, p);
                None
            }
        }
    }

    fn push(&mut self, pos: Pos, field: &str, p: Problem) {
        self.errors
            .push(Diagnostic::error("", Some(pos), field, p.message).with_hint_opt(p.hint));
    }

    /// The secrets, each host checked against the domain rules and each name against
    /// the allowed variables (a secret's real value must never be passed through).
    fn secrets(
        &mut self,
        list: &[(Located<String>, crate::types::Secret)],
        egress: &[PolicyRule],
        allow: &[policy::EnvPattern],
    ) -> Vec<policy::SecretRule> {
        let mut out = Vec::new();
        for (name, sec) in list {
            let field = format!("permissions.secrets.{}", name.value);
            let passed = policy::EnvPolicy {
                allow: allow.to_vec(),
            }
            .allows(&name.value);
            if passed {
                self.push(
                    name.pos,
                    &field,
                    Problem::new(format!(
                        "`{}` is both a secret and an allowed environment variable: its real value would reach the sandbox",
                        name.value
                    ))
                    .hint("remove it from `env_vars.allow`; the secret gives the skill a placeholder"),
                );
                continue;
            }
            let mut hosts = Vec::new();
            for (i, h) in sec.hosts.iter().enumerate() {
                let hf = format!("{field}.hosts[{i}]");
                let Some(pattern) = self.check(h, &hf, check::domain) else {
                    continue;
                };
                let name_for_check = match &pattern {
                    policy::DomainPattern::Exact(n) => n.clone(),
                    policy::DomainPattern::Wildcard(suffix) => format!("x.{suffix}"),
                };
                let allowed = egress.iter().any(|r| match r {
                    PolicyRule::Domain { domain, .. } => domain.matches(&name_for_check),
                    PolicyRule::Cidr { .. } => false,
                });
                if !allowed {
                    self.push(
                        h.pos,
                        &hf,
                        Problem::new(format!(
                            "secret `{}` is bound to `{}`, which no egress domain rule allows",
                            name.value, h.value
                        ))
                        .hint("add a `- domain:` rule for that host, or bind the secret to an allowed one"),
                    );
                    continue;
                }
                hosts.push(pattern);
            }
            let from = match sec.from.value.split_once(':') {
                Some(("env", v)) => policy::SecretSource::Env(v.to_owned()),
                Some(("file", p)) => policy::SecretSource::File(PathBuf::from(p)),
                _ => continue,
            };
            if hosts.len() == sec.hosts.len() {
                out.push(policy::SecretRule {
                    name: name.value.clone(),
                    from,
                    hosts,
                    header: sec.header.as_ref().map(|h| h.value.clone()),
                });
            }
        }
        out
    }

    fn rule(&mut self, r: &EgressRule, field: &str) -> Option<PolicyRule> {
        let ports_of = |ports: &Option<Vec<Located<u16>>>| -> Vec<u16> {
            let mut out: Vec<u16> = Vec::new();
            match ports {
                Some(ps) => {
                    for p in ps {
                        if !out.contains(&p.value) {
                            out.push(p.value);
                        }
                    }
                }
                None => out.extend(defaults::EGRESS_PORTS),
            }
            out
        };
        match r {
            EgressRule::Domain(d) => {
                let domain = self.check(&d.domain, &format!("{field}.domain"), check::domain)?;
                let strings = |l: &Option<Vec<Located<String>>>| -> Vec<String> {
                    l.iter().flatten().map(|s| s.value.clone()).collect()
                };
                Some(PolicyRule::Domain {
                    domain,
                    ports: ports_of(&d.ports),
                    http: policy::HttpRules {
                        methods: strings(&d.methods),
                        paths: strings(&d.paths),
                        max_bytes_out: d.max_bytes_out.as_ref().map(|v| v.value),
                        max_bytes_in: d.max_bytes_in.as_ref().map(|v| v.value),
                        max_requests: d.max_requests.as_ref().map(|v| v.value),
                    },
                    allow_private_resolution: d
                        .allow_private_resolution
                        .as_ref()
                        .is_some_and(|v| v.value),
                })
            }
            EgressRule::Cidr(c) => {
                let cidr = self.check(&c.cidr, &format!("{field}.cidr"), check::cidr)?;
                Some(PolicyRule::Cidr {
                    cidr,
                    ports: ports_of(&c.ports),
                })
            }
        }
    }

    fn paths(&mut self, list: Option<&[Located<String>]>, field: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (i, p) in list.unwrap_or_default().iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some(hp) = self.check(p, &field, check::host_path) else {
                continue;
            };
            let h = self.home;
            if matches!(hp, HostPath::Home(_)) && !h.is_absolute() {
                let msg = if h.as_os_str().is_empty() {
                    "cannot expand `~`: HOME is not set".to_owned()
                } else {
                    format!(
                        "cannot expand `~`: HOME (`{}`) is not absolute",
                        h.display()
                    )
                };
                self.push(
                    p.pos,
                    &field,
                    Problem {
                        message: msg,
                        hint: Some(
                            "set HOME to your home directory, or write an absolute path".into(),
                        ),
                    },
                );
                continue;
            }
            out.push(hp.resolve(h, self.skill_dir));
        }
        out
    }
}
