//! YAML node tree → raw [`Manifest`], collecting every error in one pass: unknown and
//! duplicate keys, missing required keys, wrong types, out-of-range numbers, and every
//! value that fails its check (`check.rs`).
//!
//! A key whose value is null (`key:` or `key: ~`) counts as left out.

use std::collections::BTreeMap;

use crate::check::{self, Problem};
use crate::diag::Diagnostic;
use crate::policy::{SyscallProfile, Tier};
use crate::reader::Cx;
use crate::types::*;
use crate::yaml::{Node, Value};

const ROOT_KEYS: &[&str] = &[
    "skill",
    "permissions",
    "resources",
    "isolation",
    "entrypoint",
];
const SKILL_KEYS: &[&str] = &["name", "version", "description", "author"];
const PERMISSION_KEYS: &[&str] = &["network", "filesystem", "env_vars", "syscalls", "secrets"];
const SECRET_KEYS: &[&str] = &["from", "hosts", "header"];
const NETWORK_KEYS: &[&str] = &["egress"];
const RULE_KEYS: &[&str] = &[
    "domain",
    "cidr",
    "ports",
    "protocol",
    "methods",
    "paths",
    "max_bytes_out",
    "max_bytes_in",
    "max_requests",
    "allow_private_resolution",
];
/// Keys of a domain rule that make the sandbox check each HTTP request.
const HTTP_RULE_KEYS: &[&str] = &[
    "methods",
    "paths",
    "max_bytes_out",
    "max_bytes_in",
    "max_requests",
];
const FS_KEYS: &[&str] = &["read", "write", "deny"];
const ENV_KEYS: &[&str] = &["allow"];
const SYSCALL_KEYS: &[&str] = &["profile"];
const RESOURCE_KEYS: &[&str] = &[
    "memory_mb",
    "cpu_cores",
    "cpu_shares",
    "max_runtime_seconds",
    "max_output_bytes",
    "max_processes",
    "max_open_files",
    "max_file_size_mb",
    "tmp_size_mb",
];
const ISOLATION_KEYS: &[&str] = &["tier", "record_denials"];
const ENTRYPOINT_KEYS: &[&str] = &["command", "args", "workdir"];

pub(crate) fn convert(root: &Node, file: &str) -> Result<Manifest, Vec<Diagnostic>> {
    let mut cx = Cx {
        file,
        errors: Vec::new(),
        positions: BTreeMap::new(),
    };
    if root.value == Value::Null {
        cx.error(root.pos, "", "the manifest is empty", Some(
            "a manifest needs at least `skill` (name, version) and `entrypoint` (command); see docs/manifest.md".into(),
        ));
        return Err(cx.errors);
    }
    let manifest = cx.manifest(root);
    match manifest {
        Some(m) if cx.errors.is_empty() => Ok(m),
        _ => Err(cx.errors),
    }
}

impl Cx<'_> {
    fn manifest(&mut self, root: &Node) -> Option<Manifest> {
        let m = self.mapping(root, "", ROOT_KEYS)?;
        let skill = self
            .required(&m, "skill", "add `skill:` with `name:` and `version:`")
            .and_then(|n| self.skill(n));
        let permissions = m.get("permissions").and_then(|n| self.permissions(n));
        let resources = m.get("resources").and_then(|n| self.resources(n));
        let isolation = m.get("isolation").and_then(|n| {
            let s = self.mapping(n, "isolation", ISOLATION_KEYS)?;
            let tier = s.get("tier").and_then(|t| {
                let choices = [
                    ("auto", Tier::Auto),
                    ("container", Tier::Container),
                    ("process", Tier::Process),
                ];
                self.choice(t, "isolation.tier", &choices)
            });
            let record_denials = s
                .get("record_denials")
                .and_then(|r| self.flag(r, "isolation.record_denials"));
            Some(Isolation {
                tier,
                record_denials,
            })
        });
        let entrypoint = self
            .required(
                &m,
                "entrypoint",
                "add `entrypoint:` with at least `command:`",
            )
            .and_then(|n| self.entrypoint(n));
        Some(Manifest {
            skill: skill?,
            permissions,
            resources,
            isolation,
            entrypoint: entrypoint?,
            positions: std::mem::take(&mut self.positions),
        })
    }

    fn skill(&mut self, node: &Node) -> Option<Skill> {
        let m = self.mapping(node, "skill", SKILL_KEYS)?;
        let name = self
            .required(&m, "name", "e.g. `name: weather-lookup`")
            .and_then(|n| self.checked(n, "skill.name", check::skill_name));
        let version = self
            .required(&m, "version", "e.g. `version: \"0.1.0\"`")
            .and_then(|n| self.checked(n, "skill.version", |s| check::version(s).map(drop)));
        let description = m
            .get("description")
            .and_then(|n| self.string(n, "skill.description"));
        let author = m.get("author").and_then(|n| self.string(n, "skill.author"));
        Some(Skill {
            name: name?,
            version: version?,
            description,
            author,
        })
    }

    fn permissions(&mut self, node: &Node) -> Option<Permissions> {
        let m = self.mapping(node, "permissions", PERMISSION_KEYS)?;
        let network = m.get("network").and_then(|n| {
            let net = self.mapping(n, "permissions.network", NETWORK_KEYS)?;
            let egress = net.get("egress").and_then(|e| {
                let path = "permissions.network.egress";
                let items = self.list(e, path)?;
                let rules: Vec<EgressRule> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| self.egress_rule(r, &format!("{path}[{i}]")))
                    .collect();
                Some(rules)
            });
            Some(Network { egress })
        });
        let filesystem = m.get("filesystem").and_then(|n| {
            let fs = self.mapping(n, "permissions.filesystem", FS_KEYS)?;
            let mut paths = |key: &str| {
                let path = fs.child(key);
                fs.get(key)
                    .and_then(|l| self.strings(l, &path, check::host_path))
            };
            Some(Filesystem {
                read: paths("read"),
                write: paths("write"),
                deny: paths("deny"),
            })
        });
        let env_vars = m.get("env_vars").and_then(|n| {
            let env = self.mapping(n, "permissions.env_vars", ENV_KEYS)?;
            let allow = env
                .get("allow")
                .and_then(|l| self.strings(l, "permissions.env_vars.allow", check::env_pattern));
            Some(EnvVars { allow })
        });
        let syscalls = m.get("syscalls").and_then(|n| {
            let sc = self.mapping(n, "permissions.syscalls", SYSCALL_KEYS)?;
            let choices = [
                ("default", SyscallProfile::Default),
                ("strict", SyscallProfile::Strict),
                ("permissive", SyscallProfile::Permissive),
            ];
            let profile = sc
                .get("profile")
                .and_then(|p| self.choice(p, "permissions.syscalls.profile", &choices));
            Some(Syscalls { profile })
        });
        let secrets = m.get("secrets").and_then(|n| self.secrets(n));
        Some(Permissions {
            network,
            filesystem,
            env_vars,
            syscalls,
            secrets,
        })
    }

    fn secrets(&mut self, node: &Node) -> Option<Vec<(Located<String>, Secret)>> {
        let path = "permissions.secrets";
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping of variable names to secrets");
            return None;
        };
        let mut out: Vec<(Located<String>, Secret)> = Vec::new();
        for (k, v) in entries {
            let Value::Str(name) = &k.value else {
                self.wrong_type(k, path, "a variable name");
                continue;
            };
            let field = format!("{path}.{name}");
            if let Err(p) = check::secret_name(name) {
                self.problem(k.pos, &field, p);
                continue;
            }
            if out.iter().any(|(n, _)| &n.value == name) {
                self.error(k.pos, &field, format!("duplicate secret `{name}`"), None);
                continue;
            }
            self.positions.insert(field.clone(), k.pos);
            let Some(sm) = self.mapping(v, &field, SECRET_KEYS) else {
                continue;
            };
            let from = match sm.get("from") {
                Some(f) => self.checked(f, &sm.child("from"), check::secret_source),
                None => {
                    self.error(
                        sm.pos,
                        &field,
                        "missing key `from`",
                        Some(
                            "e.g. `from: env:GITHUB_TOKEN` or `from: file:/run/keys/token`".into(),
                        ),
                    );
                    None
                }
            };
            let hosts = match sm.get("hosts") {
                Some(h) => self.strings(h, &sm.child("hosts"), check::domain),
                None => {
                    self.error(
                        sm.pos,
                        &field,
                        "missing key `hosts`",
                        Some("list the hosts the real value may be sent to, e.g. `hosts: [api.github.com]`".into()),
                    );
                    None
                }
            };
            if hosts.as_ref().is_some_and(Vec::is_empty) {
                self.error(sm.pos, &sm.child("hosts"), "no hosts listed", None);
                continue;
            }
            let header = sm
                .get("header")
                .and_then(|h| self.checked(h, &sm.child("header"), check::header_name));
            if let (Some(from), Some(hosts)) = (from, hosts) {
                out.push((
                    Located::new(name.clone(), k.pos),
                    Secret {
                        from,
                        hosts,
                        header,
                    },
                ));
            }
        }
        Some(out)
    }

    fn egress_rule(&mut self, node: &Node, path: &str) -> Option<EgressRule> {
        let m = self.mapping(node, path, RULE_KEYS)?;
        let ports = m
            .get("ports")
            .and_then(|p| self.ports(p, &m.child("ports")));
        let protocol = m.get("protocol").and_then(|p| {
            let field = m.child("protocol");
            if matches!(&p.value, Value::Str(s) if s.eq_ignore_ascii_case("udp")) {
                self.error(p.pos, &field, "only `tcp` egress is supported in v1", Some(
                    "DNS is answered by the sandbox itself; other UDP traffic cannot be allowed".into(),
                ));
                return None;
            }
            self.choice(p, &field, &[("tcp", Protocol::Tcp)])
        });
        let domain = m
            .get("domain")
            .and_then(|d| self.checked(d, &m.child("domain"), |s| check::domain(s).map(drop)));
        let cidr = m
            .get("cidr")
            .and_then(|c| self.checked(c, &m.child("cidr"), |s| check::cidr(s).map(drop)));
        if m.get("cidr").is_some() {
            for key in HTTP_RULE_KEYS {
                if let Some(n) = m.get(key) {
                    self.error(
                        n.pos,
                        &m.child(key),
                        format!("`{key}` needs a `domain` rule: a `cidr` rule is raw TCP, with no HTTP request to check"),
                        Some("write the host name as `- domain: ...` with this rule".into()),
                    );
                }
            }
        }
        let methods = m
            .get("methods")
            .and_then(|n| self.strings(n, &m.child("methods"), check::http_method));
        let paths = m
            .get("paths")
            .and_then(|n| self.strings(n, &m.child("paths"), check::http_path));
        let max_bytes_out = m
            .get("max_bytes_out")
            .and_then(|n| self.byte_size(n, &m.child("max_bytes_out")));
        let max_bytes_in = m
            .get("max_bytes_in")
            .and_then(|n| self.byte_size(n, &m.child("max_bytes_in")));
        let max_requests = m
            .get("max_requests")
            .and_then(|n| self.uint(n, &m.child("max_requests"), (1, u64::from(u32::MAX))));
        let allow_private_resolution = m.get("allow_private_resolution").and_then(|n| {
            let field = m.child("allow_private_resolution");
            if m.get("cidr").is_some() {
                self.error(
                    n.pos,
                    &field,
                    "`allow_private_resolution` needs a `domain` rule: a `cidr` rule already names its addresses",
                    None,
                );
                return None;
            }
            self.flag(n, &field)
        });
        match (m.get("domain").is_some(), m.get("cidr").is_some()) {
            (true, true) => {
                self.error(
                    m.pos,
                    path,
                    "set either `domain` or `cidr` in one rule, not both",
                    Some("write two rules, one with `domain` and one with `cidr`".into()),
                );
                None
            }
            (false, false) => {
                self.error(
                    m.pos,
                    path,
                    "an egress rule needs `domain` or `cidr`",
                    Some("e.g. `- domain: api.example.com` or `- cidr: 10.0.0.0/8`".into()),
                );
                None
            }
            (true, false) => Some(EgressRule::Domain(DomainRule {
                domain: domain?,
                ports,
                protocol,
                methods,
                paths,
                max_bytes_out,
                max_bytes_in,
                max_requests,
                allow_private_resolution,
            })),
            (false, true) => Some(EgressRule::Cidr(CidrRule {
                cidr: cidr?,
                ports,
                protocol,
            })),
        }
    }

    /// A byte count: a whole number, or a string with a unit (`1MB`, `512KiB`).
    fn byte_size(&mut self, node: &Node, path: &str) -> Option<Located<u64>> {
        if let Value::Str(text) = &node.value {
            return match check::byte_size(text) {
                Ok(v) => Some(Located::new(v, node.pos)),
                Err(p) => {
                    self.problem(node.pos, path, p);
                    None
                }
            };
        }
        self.uint(node, path, (1, u64::MAX >> 1))
    }

    fn ports(&mut self, node: &Node, path: &str) -> Option<Vec<Located<u16>>> {
        let items = self.list(node, path)?;
        if items.is_empty() {
            self.error(
                node.pos,
                path,
                "no ports listed",
                Some("list at least one port, or leave `ports` out for [443]".into()),
            );
            return None;
        }
        let ports = items
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let v = self.uint(p, &format!("{path}[{i}]"), (1, 65535))?;
                Some(Located::new(u16::try_from(v.value).ok()?, v.pos))
            })
            .collect();
        Some(ports)
    }

    fn resources(&mut self, node: &Node) -> Option<Resources> {
        let m = self.mapping(node, "resources", RESOURCE_KEYS)?;
        let mut int =
            |key: &str, range| m.get(key).and_then(|n| self.uint(n, &m.child(key), range));
        let mut r = Resources {
            memory_mb: int("memory_mb", bounds::MEMORY_MB),
            cpu_cores: None,
            cpu_shares: int("cpu_shares", bounds::CPU_SHARES),
            max_runtime_seconds: int("max_runtime_seconds", bounds::MAX_RUNTIME_SECONDS),
            max_output_bytes: int("max_output_bytes", bounds::MAX_OUTPUT_BYTES),
            max_processes: int("max_processes", bounds::MAX_PROCESSES),
            max_open_files: int("max_open_files", bounds::MAX_OPEN_FILES),
            max_file_size_mb: int("max_file_size_mb", bounds::MAX_FILE_SIZE_MB),
            tmp_size_mb: int("tmp_size_mb", bounds::TMP_SIZE_MB),
        };
        r.cpu_cores = m
            .get("cpu_cores")
            .and_then(|n| self.float(n, "resources.cpu_cores", bounds::CPU_CORES));
        if let (Some(_), Some(shares)) = (m.get("cpu_cores"), m.get("cpu_shares")) {
            self.error(
                shares.pos,
                "resources.cpu_shares",
                "set `cpu_cores` or the legacy `cpu_shares`, not both",
                Some("remove `cpu_shares` (it means cpu_shares/1024 cores)".into()),
            );
        }
        Some(r)
    }

    fn entrypoint(&mut self, node: &Node) -> Option<Entrypoint> {
        let m = self.mapping(node, "entrypoint", ENTRYPOINT_KEYS)?;
        let command = match m.get("command") {
            Some(n) => self.checked(n, "entrypoint.command", check::command),
            None => {
                self.error(
                    m.pos,
                    "entrypoint.command",
                    "missing required key `command`",
                    Some("name the program to run, e.g. `command: python3`".into()),
                );
                None
            }
        };
        let args = m.get("args").and_then(|a| {
            self.strings(a, "entrypoint.args", |s| {
                if s.contains('\0') {
                    Err(Problem {
                        message: "argument contains a NUL byte".into(),
                        hint: None,
                    })
                } else {
                    Ok(())
                }
            })
        });
        let workdir = m
            .get("workdir")
            .and_then(|w| self.checked(w, "entrypoint.workdir", |s| check::workdir(s).map(drop)));
        Some(Entrypoint {
            command: command?,
            args,
            workdir,
        })
    }
}
