//! `skillsandbox exec`: run an agent's shell command in an ad-hoc sandbox.

use std::path::PathBuf;

use skillsandbox_manifest::{DomainPattern, EgressRule, Tier};
use skillsandbox_runtime::{adhoc_policy, Grants, RunRequest};

use super::report::{finish_run, RunFlags};

/// Run a command in an ad-hoc sandbox: deny-all defaults plus what the flags grant.
///
/// Nothing is shared unless granted: no network, no host files (not even the current
/// directory), no host environment variables. The command sees a fresh root with
/// read-only /usr, /bin, /lib, /etc (synthetic), a private /tmp and $HOME, and runs
/// with no capabilities under the seccomp `default` profile, Landlock, and cgroup
/// limits.
///
/// Examples:
///   skillsandbox exec -- python3 -c 'print(1+1)'
///   skillsandbox exec --read . --write ./out -- python3 build.py
///   skillsandbox exec --env LANG --memory 128 --timeout 10 -- sh -c 'ulimit -a'
///   skillsandbox exec --allow-domain pypi.org --allow-domain files.pythonhosted.org -- pip download requests
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start from this manifest's permissions and limits instead of deny-all.
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub manifest: Option<PathBuf>,
    /// Run under a project profile (`.skillsandbox/profile.yaml`, written by
    /// `skillsandbox init`): its permissions and limits, the working directory the
    /// current one unless --workdir says otherwise. What the agent-shell hook uses.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// After the run, one stderr line per wall the command hit: what was blocked, by
    /// which rule, and the profile line that would allow it.
    #[arg(long)]
    pub explain: bool,
    /// The agent tool call this command executes (recorded in the trace and audit log).
    #[arg(long, value_name = "ID")]
    pub tool_call_id: Option<String>,
    /// Grant read-only access to a host path (mounted at the same path). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// Grant read-write access to a host path (created if missing). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// Allow egress to a domain (exact, or `*.example.com` for its sub-domains) on
    /// the given TCP ports (default 443), e.g. `pypi.org` or `api.example.com:443,8443`.
    /// DNS is answered only for allowed names; TLS SNI / HTTP Host must match.
    /// Repeatable.
    #[arg(long, value_name = "DOMAIN[:PORTS]", value_parser = parse_domain)]
    pub allow_domain: Vec<(DomainPattern, Vec<u16>)>,
    /// Pass a host environment variable through (NAME, or PREFIX*). Repeatable.
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,
    /// Memory limit in MiB (default 256).
    #[arg(long, value_name = "MB")]
    pub memory: Option<u64>,
    /// Wall-clock limit in seconds (default 60); on expiry the whole tree dies, exit 124.
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// Maximum number of processes and threads (default 64).
    #[arg(long, value_name = "N")]
    pub max_processes: Option<u64>,
    /// Isolation tier: auto, container or process.
    #[arg(long, value_name = "T", value_parser = parse_tier)]
    pub tier: Option<Tier>,
    /// Working directory inside the sandbox (default: the private $HOME).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Relay our stdin to the command through a pipe (default: an empty pipe, at end
    /// of input at once). The command never gets our descriptor itself, so a file or
    /// directory on stdin gives it the bytes, not the file.
    #[arg(long)]
    pub stdin: bool,
    #[command(flatten)]
    pub run: RunFlags,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_domain(s: &str) -> Result<(DomainPattern, Vec<u16>), String> {
    skillsandbox_manifest::parse_domain_grant(s)
}

pub fn parse_tier(s: &str) -> Result<Tier, String> {
    match s {
        "auto" => Ok(Tier::Auto),
        "container" => Ok(Tier::Container),
        "process" => Ok(Tier::Process),
        other => Err(format!(
            "unknown tier {other:?}: expected auto, container or process"
        )),
    }
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let cwd = std::env::current_dir()?;
    let source = args.profile.as_ref().or(args.manifest.as_ref());
    let base = match source {
        Some(m) => Some(super::load_policy(m)?),
        None => None,
    };
    let workdir = match (&args.workdir, &args.profile) {
        (None, Some(_)) => Some(cwd.clone()),
        (w, _) => w.clone(),
    };
    let grants = Grants {
        read: args.read,
        write: args.write,
        env: args.env,
        memory_mb: args.memory,
        timeout_s: args.timeout,
        max_processes: args.max_processes,
        tier: args.tier,
        workdir,
    };
    let mut policy = adhoc_policy(base, &args.command, &grants, &cwd);
    policy
        .network
        .egress
        .extend(
            args.allow_domain
                .into_iter()
                .map(|(domain, ports)| EgressRule::Domain {
                    domain,
                    ports,
                    http: Default::default(),
                    allow_private_resolution: false,
                }),
        );
    let stages = super::report::early_stage(&args.run, &policy);
    let mut req = RunRequest::new(policy);
    req.stages = stages;
    req.tool_call_id = args.tool_call_id;
    let mut flags = args.run;
    if args.explain {
        flags.explain = Some(
            source
                .cloned()
                .unwrap_or_else(|| PathBuf::from("the exec flags")),
        );
    }
    if args.stdin {
        use std::os::fd::AsFd;
        req.stdin = Some(std::io::stdin().as_fd().try_clone_to_owned()?);
    }
    finish_run(req, &flags)
}
