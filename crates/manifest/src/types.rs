//! The raw manifest: `skillsandbox.yaml` v1 as written (DESIGN.md §5), every value with
//! the position it came from. Parsing fills these in (`convert`), resolution turns them
//! into a [`crate::Policy`].
//!
//! The doc comments on these types are the descriptions in the JSON Schema that
//! `skillsandbox schema` prints, so they are written for manifest authors.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::diag::Pos;
use crate::policy::{SyscallProfile, Tier};

/// Upper (and lower) bounds of the numeric settings. Documented in docs/manifest.md.
pub mod bounds {
    pub const MEMORY_MB: (u64, u64) = (1, 1_048_576);
    pub const CPU_CORES: (f64, f64) = (0.001, 1024.0);
    pub const CPU_SHARES: (u64, u64) = (2, 262_144);
    pub const MAX_RUNTIME_SECONDS: (u64, u64) = (1, 86_400);
    pub const MAX_OUTPUT_BYTES: (u64, u64) = (1, 1_073_741_824);
    pub const MAX_PROCESSES: (u64, u64) = (1, 65_536);
    pub const MAX_OPEN_FILES: (u64, u64) = (1, 1_048_576);
    pub const MAX_FILE_SIZE_MB: (u64, u64) = (1, 1_048_576);
    pub const TMP_SIZE_MB: (u64, u64) = (1, 65_536);
    /// cgroup v1 `cpu.shares` that equals one full core.
    pub const SHARES_PER_CORE: f64 = 1024.0;
}

/// A value together with the position of the YAML node it came from. Its JSON Schema
/// is the schema of `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Located<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Located { value, pos }
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A SkillSandbox manifest (`skillsandbox.yaml`, version 1): what a skill is and the
/// only things it may touch. Everything not granted here is denied. Only `skill` and
/// `entrypoint` are required.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, title = "skillsandbox.yaml")]
pub struct Manifest {
    /// Who the skill is.
    pub skill: Skill,
    /// What the skill may reach. Leave it out to grant nothing: no network, no host
    /// files beyond the skill directory, no host environment variables.
    pub permissions: Option<Permissions>,
    /// Resource limits; each one left out takes its default.
    pub resources: Option<Resources>,
    /// How strongly to isolate the skill.
    pub isolation: Option<Isolation>,
    /// The program to run, inside the sandbox.
    pub entrypoint: Entrypoint,
    /// Where each field was written, by dotted path (`permissions.filesystem.read[0]`).
    /// Lets diagnostics about the resolved policy point back into the file.
    #[schemars(skip)]
    pub positions: BTreeMap<String, Pos>,
}

/// Identity of the skill: shown in traces and audit records.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Skill {
    /// Skill name: 1-64 characters, lower-case letters, digits, `.`, `_` and `-`,
    /// starting with a letter or digit. Example: `weather-lookup`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: Located<String>,
    /// Semantic version (https://semver.org), e.g. `"0.1.0"`. Quote it: an unquoted
    /// `1.0` is a number in YAML.
    #[schemars(length(min = 5))]
    pub version: Located<String>,
    /// One line about what the skill does.
    pub description: Option<Located<String>>,
    /// Who publishes the skill.
    pub author: Option<Located<String>>,
}

/// What the skill may reach. Every part defaults to "nothing".
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Permissions {
    /// Network access. Default: none at all (only loopback inside the sandbox).
    pub network: Option<Network>,
    /// Host files and directories the skill may see. The skill directory itself is
    /// always mounted read-only at `/skill`.
    pub filesystem: Option<Filesystem>,
    /// Host environment variables passed into the sandbox.
    pub env_vars: Option<EnvVars>,
    /// Which system calls are refused.
    pub syscalls: Option<Syscalls>,
    /// Secrets the skill uses without ever seeing them: inside the sandbox the
    /// variable holds a per-run placeholder, which the egress service swaps for the
    /// real value only in requests to the secret's hosts. Keyed by variable name.
    #[schemars(with = "Option<BTreeMap<String, Secret>>")]
    pub secrets: Option<Vec<(Located<String>, Secret)>>,
}

/// One secret: where the real value comes from and where it may go.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Secret {
    /// `env:NAME` (the invoker's environment) or `file:/absolute/path`.
    pub from: Located<String>,
    /// The hosts the real value may be sent to; each must be allowed by an egress
    /// `domain` rule.
    #[schemars(length(min = 1))]
    pub hosts: Vec<Located<String>>,
    /// The request header the value goes in (e.g. `Authorization`); default: wherever
    /// the placeholder appears in the request.
    pub header: Option<Located<String>>,
}

/// Outbound network access.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Network {
    /// Allowed outbound connections. Default `[]`: no network. DNS is answered by the
    /// sandbox, for the declared domains only.
    pub egress: Option<Vec<EgressRule>>,
}

/// One allowed destination: a `domain` or a `cidr`, never both.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum EgressRule {
    Domain(DomainRule),
    Cidr(CidrRule),
}

/// Connections to a domain name.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DomainRule {
    /// An exact host name (`api.openweathermap.org`), or `*.example.com` for every
    /// sub-domain of example.com (not example.com itself). ASCII only: write
    /// internationalised names in punycode (`xn--...`).
    #[schemars(length(min = 1, max = 253))]
    pub domain: Located<String>,
    /// TCP ports, 1-65535. Default: `[443]`.
    #[schemars(length(min = 1), inner(range(min = 1, max = 65535)))]
    pub ports: Option<Vec<Located<u16>>>,
    /// Transport protocol. Only `tcp` in v1 (DNS is handled by the sandbox).
    pub protocol: Option<Located<Protocol>>,
    /// HTTP methods allowed (`[GET, POST]`). Setting this, `paths` or a cap makes
    /// the sandbox check every request to this host (TLS is terminated with a per-run
    /// CA the sandbox trusts). Default: any method.
    #[schemars(length(min = 1))]
    pub methods: Option<Vec<Located<String>>>,
    /// Request paths allowed: exact (`/user`) or with `*` matching any run of
    /// characters (`/repos/acme/*`). The query string is not part of the path.
    /// Default: any path.
    #[schemars(length(min = 1))]
    pub paths: Option<Vec<Located<String>>>,
    /// Most request-body bytes sent to this host per run: a number of bytes, or a
    /// size such as `512KB`, `1MB`, `2GiB`.
    #[schemars(with = "Option<ByteSize>")]
    pub max_bytes_out: Option<Located<u64>>,
    /// Most response-body bytes received from this host per run (same syntax).
    #[schemars(with = "Option<ByteSize>")]
    pub max_bytes_in: Option<Located<u64>>,
    /// Most requests to this host per run.
    #[schemars(range(min = 1))]
    pub max_requests: Option<Located<u64>>,
    /// Let this one name resolve to a private or reserved address (a corporate
    /// mirror, split-horizon DNS), which is otherwise refused unless a `cidr` rule
    /// covers it. The address is recorded in the trace. Never the cloud metadata
    /// service (169.254.169.254, fd00:ec2::254). Default `false`; lint warns.
    pub allow_private_resolution: Option<Located<bool>>,
}

/// A byte count: a whole number of bytes, or a size with a unit (`KB`, `MB`, `GB`
/// are powers of 1000; `KiB`, `MiB`, `GiB` powers of 1024).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

/// Connections to an address range. The only way to reach private or loopback
/// addresses.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CidrRule {
    /// An IPv4 or IPv6 network in CIDR notation with the host bits zero, e.g.
    /// `10.20.0.0/16`, `192.0.2.7/32`, `2001:db8::/32`.
    pub cidr: Located<String>,
    /// TCP ports, 1-65535. Default: `[443]`.
    #[schemars(length(min = 1), inner(range(min = 1, max = 65535)))]
    pub ports: Option<Vec<Located<u16>>>,
    /// Transport protocol. Only `tcp` in v1.
    pub protocol: Option<Located<Protocol>>,
}

/// Transport protocol of an egress rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
}

/// Host paths: absolute (`/data`), in your home (`~`, `~/cache`), or relative to the
/// skill directory (`data/`, which may not climb out with `..`).
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Filesystem {
    /// Paths the skill may read (files or whole directory trees).
    pub read: Option<Vec<Located<String>>>,
    /// Paths the skill may read and write.
    pub write: Option<Vec<Located<String>>>,
    /// Carve-outs inside `read`/`write` trees: never visible, whatever else says.
    pub deny: Option<Vec<Located<String>>>,
}

/// Environment variables copied from the host when they are set there.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EnvVars {
    /// Names (`OPENWEATHER_API_KEY`) or prefixes ending in `*` (`LC_*`). `PATH`, `HOME`
    /// and `TMPDIR` are always set by the sandbox itself and never copied.
    #[schemars(inner(regex(pattern = r"^([A-Za-z_][A-Za-z0-9_]*\*?|\*)$")))]
    pub allow: Option<Vec<Located<String>>>,
}

/// System-call filtering.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Syscalls {
    /// `default` refuses dangerous calls (ptrace, mount, bpf, ...); `strict` also
    /// refuses unusual socket families and creating processes; `permissive` only
    /// checks the architecture. Default: `default`.
    pub profile: Option<Located<SyscallProfile>>,
}

/// Resource limits. Each one left out takes the default shown.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB (cgroup); exceeding it kills the skill with exit 137.
    /// Default 256, at most 1048576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub memory_mb: Option<Located<u64>>,
    /// CPU quota in cores, e.g. `0.5`. Default 1.0, between 0.001 and 1024.
    #[schemars(range(min = 0.001, max = 1024.0))]
    pub cpu_cores: Option<Located<f64>>,
    /// Legacy (prototype) CPU weight; converted to `cpu_shares / 1024` cores, so 256
    /// means a quarter core. Between 2 and 262144. Use `cpu_cores` instead; do not set
    /// both.
    #[schemars(range(min = 2, max = 262_144))]
    pub cpu_shares: Option<Located<u64>>,
    /// Wall-clock limit in seconds; the whole process tree is killed and the exit code
    /// is 124. Default 60, at most 86400 (one day).
    #[schemars(range(min = 1, max = 86_400))]
    pub max_runtime_seconds: Option<Located<u64>>,
    /// Bytes kept per output stream (stdout, stderr); the rest is dropped and marked.
    /// Default 1048576, at most 1073741824.
    #[schemars(range(min = 1, max = 1_073_741_824))]
    pub max_output_bytes: Option<Located<u64>>,
    /// Maximum number of processes and threads (cgroup pids). Default 64, at most 65536.
    #[schemars(range(min = 1, max = 65_536))]
    pub max_processes: Option<Located<u64>>,
    /// Maximum open file descriptors (RLIMIT_NOFILE). Default 256, at most 1048576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub max_open_files: Option<Located<u64>>,
    /// Largest file the skill may write, in MiB (RLIMIT_FSIZE). Default 64, at most
    /// 1048576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub max_file_size_mb: Option<Located<u64>>,
    /// Size of the private `/tmp` and `$HOME`, in MiB. Default 64, at most 65536.
    #[schemars(range(min = 1, max = 65_536))]
    pub tmp_size_mb: Option<Located<u64>>,
}

/// Isolation settings.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Isolation {
    /// `container` (namespaces + everything), `process` (for hosts without user
    /// namespaces: Landlock, seccomp, rlimits), or `auto` (the strongest this host
    /// supports). Default: `auto`.
    pub tier: Option<Located<Tier>>,
    /// Record every filesystem access the sandbox refuses as a `filesystem_denied`
    /// violation (path, operation, program). Every path call then waits for the
    /// supervisor: about 9x the cost of an `open`. Default: false.
    pub record_denials: Option<Located<bool>>,
}

/// The program to run.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Entrypoint {
    /// A command name looked up in the sandbox `PATH` (`python3`), or an absolute path
    /// inside the sandbox (`/skill/run.sh`; the skill directory is mounted at `/skill`).
    #[schemars(length(min = 1))]
    pub command: Located<String>,
    /// Arguments. Arguments given on the command line are appended.
    pub args: Option<Vec<Located<String>>>,
    /// Working directory inside the sandbox; absolute. Default: `/skill`.
    pub workdir: Option<Located<String>>,
}
