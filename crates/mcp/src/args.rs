//! Tool arguments: typed and documented; the doc comments become the `inputSchema`
//! descriptions the agent reads.

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `run_skill`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSkillArgs {
    /// The skill: its name as `list_skills` shows it, or the path of its directory
    /// (or of its skillsandbox.yaml) inside the server's skills directories.
    pub skill: String,
    /// Extra arguments appended to the skill's entrypoint. For an agent skill with a
    /// SKILL.md and no skillsandbox.yaml, the whole command to run (e.g.
    /// ["python3", "scripts/fill.py", "in.pdf"]) under deny-all defaults, with the
    /// skill folder read-only at /skill as the working directory.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Arguments of `exec_command`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCommandArgs {
    /// The command and its arguments, e.g. ["sh", "-c", "ls -l /data"]. Runs in a
    /// fresh sandbox: no network, no host files, no host environment unless granted
    /// below; read-only /usr, /bin, /lib; a private /tmp and $HOME.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Working directory inside the sandbox (absolute; default: the private $HOME).
    pub workdir: Option<String>,
    /// Domains the command may reach over TCP: "api.example.com",
    /// "*.example.com" (sub-domains only), optionally with ports
    /// "api.example.com:443,8443" (default 443). Capped by the operator's ceiling.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Absolute host paths to grant read-only (mounted at the same path). Capped by
    /// the operator's ceiling.
    #[serde(default)]
    pub read: Vec<String>,
    /// Absolute host paths to grant read-write (created if missing). Capped by the
    /// operator's ceiling.
    #[serde(default)]
    pub write: Vec<String>,
    /// Host environment variables to pass through (NAME or PREFIX*). Capped by the
    /// operator's ceiling.
    #[serde(default)]
    pub env: Vec<String>,
    /// Wall-clock limit in seconds (default 60, at most the ceiling); on expiry the
    /// whole process tree is killed and the exit code is 124.
    pub timeout_s: Option<u64>,
    /// Memory limit in MiB (default 256, at most the ceiling).
    pub memory_mb: Option<u64>,
}

/// A skill directory or manifest path.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillPathArgs {
    /// A skill directory (containing skillsandbox.yaml) or the manifest file,
    /// inside the server's skills directories (relative paths are taken from them).
    pub path: String,
}

/// Arguments of `list_skills`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSkillsArgs {
    /// Search only this directory (inside the skills directories); default: all of
    /// the server's skills directories.
    pub directory: Option<String>,
}

/// `session_status` takes no arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}
