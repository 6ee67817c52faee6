//! YAML node tree → raw [`Manifest`], collecting every error in one pass: unknown and
//! duplicate keys, missing required keys, wrong types, out-of-range numbers, and every
//! value that fails its check (`check.rs`).
//!
//! A key whose value is null (`key:` or `key: ~`) counts as left out.

use std::collections::BTreeMap;

use crate::check::{self, Problem};
use crate::diag::{Diagnostic, Pos};
use crate::policy::{SyscallProfile, Tier};
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
const PERMISSION_KEYS: &[&str] = &["network", "filesystem", "env_vars", "syscalls"];
const NETWORK_KEYS: &[&str] = &["egress"];
const RULE_KEYS: &[&str] = &["domain", "cidr", "ports", "protocol"];
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
const ISOLATION_KEYS: &[&str] = &["tier"];
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

struct Cx<'f> {
    file: &'f str,
    errors: Vec<Diagnostic>,
    positions: BTreeMap<String, Pos>,
}

/// A mapping whose keys were checked: only known keys, each once, values not null.
struct Mapping<'n> {
    path: String,
    pos: Pos,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Mapping<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
    fn child(&self, key: &str) -> String {
        child(&self.path, key)
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => format!("{s:?}"),
        other => other.kind().to_owned(),
    }
}

impl<'f> Cx<'f> {
    fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.errors
            .push(Diagnostic::error(self.file, Some(pos), field, message).with_hint_opt(hint));
    }

    fn problem(&mut self, pos: Pos, field: &str, p: Problem) {
        self.error(pos, field, p.message, p.hint);
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        let hint = match (&node.value, expected) {
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), "a string") => Some(format!(
                "put the value in quotes: \"{}\"",
                describe(&node.value)
            )),
            (Value::Str(s), "a whole number" | "a number") if s.trim().parse::<f64>().is_ok() => {
                Some("remove the quotes".to_owned())
            }
            (Value::Str(_) | Value::Int(_) | Value::Float(_), "a list") => {
                Some(format!("write a list: [{}]", describe(&node.value)))
            }
            _ => None,
        };
        self.error(
            node.pos,
            field,
            format!("expected {expected}, found {}", node.value.kind()),
            hint,
        );
    }

    /// Checks the keys of a mapping. `None` (after reporting) when it is not a mapping.
    fn mapping<'n>(&mut self, node: &'n Node, path: &str, keys: &[&str]) -> Option<Mapping<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping (key: value pairs)");
            return None;
        };
        let mut out = Mapping {
            path: path.to_owned(),
            pos: node.pos,
            entries: Vec::new(),
        };
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        for (k, v) in entries {
            let Value::Str(key) = &k.value else {
                self.error(
                    k.pos,
                    path,
                    format!("keys must be strings, found {}", k.value.kind()),
                    Some(format!("valid keys here: {}", keys.join(", "))),
                );
                continue;
            };
            let field = child(path, key);
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == key) {
                self.error(
                    k.pos,
                    &field,
                    format!("duplicate key `{key}` (first set at {first})"),
                    Some("keep one of them: YAML keys must be unique".into()),
                );
                continue;
            }
            seen.push((key, k.pos));
            if !keys.contains(&key.as_str()) {
                let hint = match check::closest(key, keys) {
                    Some(near) => {
                        format!(
                            "did you mean `{near}`? valid keys here: {}",
                            keys.join(", ")
                        )
                    }
                    None => format!("valid keys here: {}", keys.join(", ")),
                };
                self.error(k.pos, &field, format!("unknown key `{key}`"), Some(hint));
                continue;
            }
            if v.value != Value::Null {
                self.positions.insert(field, v.pos);
                out.entries.push((key, v));
            }
        }
        Some(out)
    }

    fn required<'n>(&mut self, m: &Mapping<'n>, key: &str) -> Option<&'n Node> {
        let node = m.get(key);
        if node.is_none() {
            self.error(
                m.pos,
                &m.child(key),
                format!("missing required key `{key}`"),
                None,
            );
        }
        node
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<Located<String>> {
        match &node.value {
            Value::Str(s) => Some(Located::new(s.clone(), node.pos)),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, path: &str, (min, max): (u64, u64)) -> Option<Located<u64>> {
        let n = match &node.value {
            Value::Int(i) => *i,
            Value::Float(f) if f.fract() == 0.0 => {
                self.out_of_range(node, path, &describe(&node.value), min, max);
                return None;
            }
            _ => {
                self.wrong_type(node, path, "a whole number");
                return None;
            }
        };
        match u64::try_from(n) {
            Ok(v) if (min..=max).contains(&v) => Some(Located::new(v, node.pos)),
            _ => {
                self.out_of_range(node, path, &n.to_string(), min, max);
                None
            }
        }
    }

    fn float(&mut self, node: &Node, path: &str, (min, max): (f64, f64)) -> Option<Located<f64>> {
        #[allow(clippy::cast_precision_loss)] // range-checked right below
        let v = match &node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => {
                self.wrong_type(node, path, "a number");
                return None;
            }
        };
        if (min..=max).contains(&v) {
            Some(Located::new(v, node.pos))
        } else {
            self.error(
                node.pos,
                path,
                format!(
                    "{} is out of range: must be between {min} and {max}",
                    describe(&node.value)
                ),
                None,
            );
            None
        }
    }

    fn out_of_range(&mut self, node: &Node, path: &str, got: &str, min: u64, max: u64) {
        let message = if min == 1 && got.parse::<i128>().is_ok_and(|v| v < 1) {
            format!("must be greater than 0 (got {got})")
        } else {
            format!("{got} is out of range: must be between {min} and {max}")
        };
        self.error(node.pos, path, message, None);
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.positions.insert(format!("{path}[{i}]"), item.pos);
                }
                Some(items)
            }
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// A list of strings, each passed through `check`.
    fn strings<T>(
        &mut self,
        node: &Node,
        path: &str,
        check: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<Vec<Located<String>>> {
        let items = self.list(node, path)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{path}[{i}]");
            if let Some(s) = self.string(item, &field) {
                match check(&s.value) {
                    Ok(_) => out.push(s),
                    Err(p) => self.problem(s.pos, &field, p),
                }
            }
        }
        Some(out)
    }

    fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &str,
        choices: &[(&str, T)],
    ) -> Option<Located<T>> {
        let s = self.string(node, path)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s.value) {
            return Some(Located::new(*v, s.pos));
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let lower = s.value.to_ascii_lowercase();
        let hint = match check::closest(&lower, &names) {
            Some(near) => format!("did you mean `{near}`? valid values: {}", names.join(", ")),
            None => format!("valid values: {}", names.join(", ")),
        };
        self.error(
            s.pos,
            path,
            format!("invalid value `{}`", s.value),
            Some(hint),
        );
        None
    }

    fn checked(
        &mut self,
        node: &Node,
        path: &str,
        check: impl Fn(&str) -> Result<(), Problem>,
    ) -> Option<Located<String>> {
        let s = self.string(node, path)?;
        match check(&s.value) {
            Ok(()) => Some(s),
            Err(p) => {
                self.problem(s.pos, path, p);
                None
            }
        }
    }

    fn manifest(&mut self, root: &Node) -> Option<Manifest> {
        let m = self.mapping(root, "", ROOT_KEYS)?;
        let skill = self.required(&m, "skill").and_then(|n| self.skill(n));
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
            Some(Isolation { tier })
        });
        let entrypoint = self
            .required(&m, "entrypoint")
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
            .required(&m, "name")
            .and_then(|n| self.checked(n, "skill.name", check::skill_name));
        let version = self
            .required(&m, "version")
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
        Some(Permissions {
            network,
            filesystem,
            env_vars,
            syscalls,
        })
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
            })),
            (false, true) => Some(EgressRule::Cidr(CidrRule {
                cidr: cidr?,
                ports,
                protocol,
            })),
        }
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
