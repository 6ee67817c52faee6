//! What `check` tells the probe: where the planted canaries are, what the host looks
//! like from outside (so the probe can tell "different" from "same"), what was
//! declared, and the small limits substituted for the limit runs. Passed as one JSON
//! argument; nothing in it is secret (the canaries are decoys).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the probe binary is bound inside the sandbox.
pub const PROBE_INSIDE: &str = "/run/skillsandbox-check/skillsandbox";

/// The hidden subcommand that turns our binary into the probe.
pub const PROBE_SUBCOMMAND: &str = "__probe";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeLimits {
    pub memory_mb: u64,
    pub pids: u64,
    pub open_files: u64,
    pub file_size_mb: u64,
    pub tmp_mb: u64,
    pub wall_clock_s: u64,
}

/// The check's own view of the host, for comparison inside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// The check process's pid on the host.
    pub pid: u32,
    /// `readlink /proc/self/ns/<name>` of the check process, by name.
    pub namespaces: BTreeMap<String, String>,
    pub hostname: String,
    /// `st_dev` of the host's `/`.
    pub root_dev: u64,
    /// The invoker's real home (its `.ssh`, `.aws` must be unreachable).
    pub home: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeParams {
    /// Name of a variable set in the check process's environment and not declared.
    pub canary_env: String,
    /// Contents of every planted canary file.
    pub canary_value: String,
    /// Planted decoy secrets on the host (`.ssh/id_rsa`, `.aws/credentials`, `.env`),
    /// in a directory the sandbox is not granted.
    pub canary_files: Vec<PathBuf>,
    /// The fd number the check left open (without close-on-exec) on a canary file.
    pub canary_fd: Option<i32>,
    pub host: HostView,
    /// A directory the check declared writable for this run.
    pub write_dir: Option<PathBuf>,
    /// File name and contents the probe writes into `write_dir`.
    pub write_marker: String,
    /// A symlink the check planted inside `write_dir`, pointing at the canary
    /// directory on the host.
    pub escape_link: Option<PathBuf>,
    /// Declared read-only paths: writes there must fail.
    pub read_only_paths: Vec<PathBuf>,
    /// TCP listeners the check holds on the host's 127.0.0.1 and ::1.
    pub loopback_v4_port: u16,
    pub loopback_v6_port: Option<u16>,
    /// Whether the manifest declares any egress, and the names to ask the resolver.
    pub egress_declared: bool,
    pub declared_names: Vec<String>,
    /// The ranges the sandbox resolver answers declared names from (CIDR text).
    pub synthetic_ranges: Vec<String>,
    pub limits: ProbeLimits,
    /// Marks the daemon the wall-clock run leaves behind (its argv carries it).
    pub survivor_marker: String,
    /// The `requests` run's names, port and secret.
    #[serde(default)]
    pub http: Option<HttpCheck>,
    /// An abstract unix socket the check listens on in the host's network namespace.
    #[serde(default)]
    pub host_abstract_unix: Option<String>,
    /// The sandbox is the process tier's (no namespaces: the host's /dev, /proc, user
    /// and network namespace, Landlock and seccomp as the boundary).
    #[serde(default)]
    pub process_tier: bool,
    /// The `race` run's declared path to read through (`fs.toctou_declared_path`).
    #[serde(default)]
    pub race: Option<super::race::RaceProbe>,
}

/// What the `requests` run is given: two names only the check declares, leading to
/// its own upstream on `port`; the first checks every request and has the check's
/// secret bound to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    pub port: u16,
    pub checked: String,
    pub other: String,
    /// The variable holding the secret's placeholder inside.
    pub secret_env: String,
    /// Every real value the check makes starts with this, so the probe can look for
    /// one without knowing it.
    pub secret_prefix: String,
}
