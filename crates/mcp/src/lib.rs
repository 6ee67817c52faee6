//! The MCP server (`skillsandbox serve`): agents call SkillSandbox over stdio with the
//! official Rust SDK (rmcp).
//!
//! Owns the tool surface (`run_skill`, `exec_command`, `validate_skill`,
//! `inspect_skill`, `list_skills`, `session_status`, `report_usage`), the
//! skills-directory confinement of every path an agent passes, the operator's
//! ceiling on ad-hoc grants, and the join to the session policy engine: the server is
//! one session; every run is admitted, watched for the kill switch and accounted.
//! Stdout carries only the protocol; everything this crate logs goes to stderr.
//! Enforcement itself lives in the runtime; this crate never weakens a policy and
//! never asks for degraded runs (fail closed).
//!
//! Reference: `docs/mcp.md`.

pub mod args;
pub mod ceiling;
pub mod discover;
pub mod metrics;
pub mod paths;
pub mod results;
mod runner;
mod server;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rmcp::ServiceExt;
use skillsandbox_runtime::session::{new_session_id, SessionEngine};
use skillsandbox_runtime::{adhoc_policy, warm_stages, Grants};

pub use ceiling::{Ceiling, CeilingError, DomainGrant};
pub use paths::{PathError, SkillRoots};
pub use server::SkillSandboxServer;

/// How many runs may be in flight at once by default; later calls wait their turn.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 8;
/// How long shutdown waits for killed runs to be reaped and recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the operator configured at startup.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directories the agent may run, validate, inspect and list skills in.
    pub skills_dirs: Vec<PathBuf>,
    /// Lift the skills-directory restriction (any path the server user can read).
    pub allow_any_path: bool,
    /// Session id for every run; `None`: a fresh one (`new_session_id()`).
    pub session_id: Option<String>,
    /// Where run and session records go; `None`: the default audit log
    /// (`$SKILLSANDBOX_AUDIT_LOG`, else the state directory).
    pub audit_log: Option<PathBuf>,
    /// The most `exec_command` may grant.
    pub ceiling: Ceiling,
    /// Runs in flight at once (at least 1).
    pub max_concurrent_runs: usize,
    /// `run_skill` refuses skills not approved as they are, even where no
    /// skillsandbox.lock covers them (where one does, approval is always required).
    pub require_approval: bool,
    /// `serve --metrics`: answer `GET /metrics` (Prometheus text) here.
    pub metrics: Option<std::net::SocketAddr>,
    /// Keep a stage and its cgroup made ahead of the next run
    /// (`skillsandbox_runtime::warm_stages`), off every run's launch path. Off: each
    /// run spawns its own.
    pub warm: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            skills_dirs: Vec::new(),
            allow_any_path: false,
            session_id: None,
            audit_log: None,
            ceiling: Ceiling::default(),
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            require_approval: false,
            metrics: None,
            warm: false,
        }
    }
}

/// One line on stderr (stdout belongs to the protocol).
pub(crate) fn log(msg: &str) {
    use std::io::Write;
    // Nothing useful can be done when stderr is gone.
    let _ = writeln!(std::io::stderr().lock(), "skillsandbox serve: {msg}");
}

/// Build the server for `config` (checks the skills directories and the session
/// id); `engine` holds the session policy and store every run goes through.
pub fn build_server(
    config: &ServerConfig,
    engine: SessionEngine,
) -> anyhow::Result<SkillSandboxServer> {
    let roots = SkillRoots::new(&config.skills_dirs, config.allow_any_path)
        .context("checking --skills-dir")?;
    let id = config.session_id.clone().unwrap_or_else(new_session_id);
    skillsandbox_policy::check_session_id(&id).context("checking --session")?;
    Ok(SkillSandboxServer::new(server::Shared {
        roots,
        ceiling: config.ceiling.clone(),
        session: session::ServerSession::new(id, engine).with_metrics(Arc::new(
            metrics::Metrics::new().context("building the metrics")?,
        )),
        audit_log: config.audit_log.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_runs.max(1),
        )),
        shutdown: Arc::new(AtomicBool::new(false)),
        require_approval: config.require_approval,
        approvals: skillsandbox_skill::lock::Store::for_invoker(),
        stages: if config.warm {
            // Each in a cgroup with the limits of an `exec_command` that asks for none.
            let usual = adhoc_policy(None, &[], &Grants::default(), Path::new("/")).limits;
            Some(Arc::new(
                warm_stages(true, &usual).context("starting the warm-stage thread")?,
            ))
        } else {
            None
        },
    }))
}

/// Serve MCP over stdin/stdout until the client disconnects. On the way out every
/// run still in flight is killed and recorded before this returns.
pub async fn serve_stdio(config: ServerConfig, engine: SessionEngine) -> anyhow::Result<()> {
    let server = build_server(&config, engine)?;
    let shared = Arc::clone(&server.shared);
    let startup = Arc::clone(&shared);
    let note = tokio::task::spawn_blocking(move || startup.session.startup_note())
        .await
        .context("reading the session store")?;
    log(&note);
    log(&format!(
        "{} {} ready on stdio; session {}; skills dirs: {}{}",
        "skillsandbox",
        env!("CARGO_PKG_VERSION"),
        shared.session.id(),
        if shared.roots.roots().is_empty() {
            "none".to_string()
        } else {
            shared
                .roots
                .roots()
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        if shared.roots.allow_any_path() {
            " (--allow-any-path)"
        } else {
            ""
        }
    ));
    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics {addr}"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        let scraped = Arc::clone(&shared);
        tokio::spawn(metrics::serve(
            listener,
            Arc::new(move || scraped.session.metrics_text()),
        ));
        log(&format!("metrics on http://{bound}/metrics"));
    }
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session on stdio")?;
    let quit = running.waiting().await;
    shared.shutdown.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shared.session.running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match quit {
        Ok(reason) => {
            log(&format!("client disconnected ({reason:?})"));
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("the MCP service task failed: {e}")),
    }
}

/// [`serve_stdio`] on a multi-threaded tokio runtime of its own, for callers that
/// are not async (the CLI).
pub fn serve_stdio_blocking(config: ServerConfig, engine: SessionEngine) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skillsandbox-mcp")
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve_stdio(config, engine))
}
