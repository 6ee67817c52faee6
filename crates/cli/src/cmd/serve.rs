//! `skillsandbox serve`: the MCP server over stdio (see docs/mcp.md).

use std::path::PathBuf;

use anyhow::Context;
use skillsandbox_mcp::{
    serve_stdio_blocking, Ceiling, ServerConfig, SkillRoots, DEFAULT_MAX_CONCURRENT_RUNS,
};
use skillsandbox_runtime::session::{new_session_id, SessionEngine, SessionError};

/// Serve the Model Context Protocol over stdin/stdout so agents (Claude Code, Claude
/// Desktop, any MCP client) can run skills and commands confined.
///
/// Tools: run_skill, exec_command, validate_skill, inspect_skill, list_skills,
/// session_status, report_usage. Stdout carries only the protocol; logs go to stderr.
///
/// The server is one session of the session policy (docs/policy.md): every run is
/// admitted by it (a refusal is a tool error), stopped within a second when the
/// session is killed from any process (`skillsandbox session kill ID`), and accounted
/// after. The session id is printed on stderr at start.
///
/// The agent may only point the server at skills inside the --skills-dir directories
/// (symlink and `..` escapes are refused) unless --allow-any-path is given. What
/// exec_command may grant is capped by the --ceiling-* flags: by default no host
/// paths, no environment variables, no network, at most 256 MiB and 60 s.
///
/// Examples:
///
///   skillsandbox serve --skills-dir ~/.skillsandbox/skills
///
///   skillsandbox serve --skills-dir ~/skills --session agent-42 --policy policy.yaml
///
///   claude mcp add skillsandbox -- skillsandbox serve --skills-dir ~/skills
///
///   skillsandbox serve --skills-dir ./skills --ceiling-read ~/src \
///       --ceiling-write /tmp/agent-out --ceiling-domain pypi.org --ceiling-timeout 300
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A directory of skills the agent may run, validate, inspect and list. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub skills_dir: Vec<PathBuf>,
    /// Let the agent point the server at any path, not only inside --skills-dir.
    #[arg(long)]
    pub allow_any_path: bool,
    /// Charge every run to this session id (default: a fresh s-<12 hex>, printed on
    /// stderr at start). Reusing an id resumes that session: its usage, limits and
    /// kill state carry over.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Session policy file (default: $XDG_CONFIG_HOME/skillsandbox/policy.yaml when
    /// it exists; otherwise no limits, runs are still counted and can be killed).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Append run and session records here (default: $SKILLSANDBOX_AUDIT_LOG, else
    /// $XDG_STATE_HOME/skillsandbox/audit.jsonl).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Most exec_command may grant: read access below this path. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub ceiling_read: Vec<PathBuf>,
    /// Most exec_command may grant: write access below this path. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub ceiling_write: Vec<PathBuf>,
    /// Most exec_command may grant: this environment variable (NAME or PREFIX*). Repeatable.
    #[arg(long, value_name = "NAME")]
    pub ceiling_env: Vec<String>,
    /// Most exec_command may grant: memory limit in MiB (default 256).
    #[arg(long, value_name = "MB")]
    pub ceiling_memory: Option<u64>,
    /// Most exec_command may grant: wall-clock limit in seconds (default 60).
    #[arg(long, value_name = "S")]
    pub ceiling_timeout: Option<u64>,
    /// Most exec_command may grant: this domain (`api.example.com`, `*.example.com`,
    /// optionally `:PORTS`, default 443). Repeatable.
    #[arg(long, value_name = "D[:PORTS]")]
    pub ceiling_domain: Vec<String>,
    /// Runs in flight at once; further calls wait for a free slot.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENT_RUNS)]
    pub max_concurrent_runs: usize,
    /// run_skill refuses any skill not approved as it is (`skillsandbox approve`),
    /// even where no skillsandbox.lock covers it.
    #[arg(long)]
    pub require_approval: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): runs
    /// by outcome, violations by kind, launch latency, egress bytes, and this
    /// session's usage and budgets as the store sees them (all hosts). Bind to
    /// loopback unless the scraper is trusted: it shows session ids and usage.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Spawn each run's stage and cgroup when the run starts, instead of keeping them
    /// made ahead (the warm path: about 30 % off each launch here, bench/serve.py).
    /// For comparing the two.
    #[arg(long)]
    pub no_warm: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let ceiling = Ceiling::from_flags(
        &args.ceiling_read,
        &args.ceiling_write,
        &args.ceiling_env,
        args.ceiling_memory,
        args.ceiling_timeout,
        &args.ceiling_domain,
        &cwd,
    )
    .map_err(|e| super::Exit {
        code: 2,
        message: format!("invalid ceiling: {e}"),
    })?;
    // A missing skills directory is a usage error, reported before the protocol starts.
    SkillRoots::new(&args.skills_dir, args.allow_any_path).map_err(|e| super::Exit {
        code: 2,
        message: e.to_string(),
    })?;
    let session = args.session.unwrap_or_else(new_session_id);
    skillsandbox_policy::check_session_id(&session).map_err(|e| super::Exit {
        code: 2,
        message: format!("invalid --session: {e}"),
    })?;
    // An invalid policy file is a usage error, reported before the protocol starts
    // (as for run/exec); a store that cannot be opened means no run could be
    // admitted, so the server does not start at all.
    let engine = match SessionEngine::open(args.policy.as_deref(), args.audit_log.clone()) {
        Ok(e) => e,
        Err(SessionError::LoadPolicy(e)) => {
            return Err(super::Exit {
                code: 2,
                message: e.to_string(),
            }
            .into())
        }
        Err(e) => return Err(anyhow::Error::new(e).context("opening the session store")),
    };
    serve_stdio_blocking(
        ServerConfig {
            skills_dirs: args.skills_dir,
            allow_any_path: args.allow_any_path,
            session_id: Some(session),
            audit_log: args.audit_log,
            ceiling,
            max_concurrent_runs: args.max_concurrent_runs,
            require_approval: args.require_approval,
            metrics: args.metrics,
            warm: !args.no_warm,
        },
        engine,
    )?;
    Ok(0)
}
