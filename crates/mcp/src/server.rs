//! The MCP tools: thin wrappers over the manifest front end, the runtime and the
//! session ledger. Every run happens on its own blocking thread; a cancelled request
//! (or the server shutting down) kills its sandbox through `should_stop`.
//!
//! Skill failures and refusals are tool results with `isError: true`; protocol errors
//! are left to rmcp (malformed arguments, unknown tools).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;
use skillsandbox_manifest::{Policy, ResolveEnv, MANIFEST_FILE};
use skillsandbox_runtime::session::Refusal;
use skillsandbox_runtime::{adhoc_policy, Grants, RunRequest, Sink};

use crate::args::{
    ExecCommandArgs, ListSkillsArgs, NoArgs, ReportUsageArgs, RunSkillArgs, SkillPathArgs,
};
use crate::ceiling::{Ceiling, Requested};
use crate::discover::{self, SKILL_MD};
use crate::log;
use crate::paths::SkillRoots;
use crate::results::{
    diagnostic_line, DiagnosticOut, InspectResult, ListResult, RunResult, SkillRef, ValidateResult,
};
use crate::runner::{run_in_session, Ran};
use crate::session::{ReportUsageResult, ServerSession, SessionStatusResult};

const INSTRUCTIONS: &str = "SkillSandbox runs skills and shell commands confined by the \
Linux kernel (namespaces, seccomp, Landlock, cgroups, per-domain egress filtering). Use \
list_skills to see what is installed, run_skill to run one exactly as its skillsandbox.yaml \
declares, exec_command to run a command in a deny-all sandbox with only the grants you ask \
for (capped by the operator), validate_skill / inspect_skill to check a manifest, and \
session_status for the session's state, runs, violations and budgets. Report the model \
usage you spend with report_usage. A result's `violations` lists what the skill tried that \
was blocked; its `session` lists what the session policy decided (alerts, blocks, the kill \
switch). A run refused by the session policy (session killed, out of runs, time or budget) \
is a tool error saying why; do not retry it.";

/// State shared by every tool call.
pub(crate) struct Shared {
    pub roots: SkillRoots,
    pub ceiling: Ceiling,
    pub session: ServerSession,
    /// Where run and session records go (`None`: the default audit log).
    pub audit_log: Option<PathBuf>,
    pub slots: Arc<tokio::sync::Semaphore>,
    pub shutdown: Arc<AtomicBool>,
    /// Refuse unapproved skills even where no lockfile covers them.
    pub require_approval: bool,
    /// Where approvals are checked (never written: no tool approves).
    pub approvals: skillsandbox_skill::lock::Store,
    /// [`crate::ServerConfig::warm`]: stages spawned ahead of the runs.
    pub stages: Option<Arc<skillsandbox_runtime::WarmStages>>,
}

/// The `skillsandbox` MCP server.
#[derive(Clone)]
pub struct SkillSandboxServer {
    pub(crate) shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

/// A refusal or failure the agent should read: `isError: true`, text only.
fn refused(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// Structured content, its schema-described value, plus the readable text.
fn structured<T: Serialize>(
    value: &T,
    text: String,
    is_error: bool,
) -> Result<CallToolResult, McpError> {
    let v = serde_json::to_value(value)
        .map_err(|e| McpError::internal_error(format!("cannot serialise the result: {e}"), None))?;
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(v);
    r.is_error = Some(is_error);
    Ok(r)
}

#[tool_router]
impl SkillSandboxServer {
    pub(crate) fn new(shared: Shared) -> Self {
        SkillSandboxServer {
            shared: Arc::new(shared),
            tool_router: Self::tool_router(),
        }
    }

    /// Run a skill confined exactly as its skillsandbox.yaml declares (network
    /// egress, filesystem paths, environment variables, syscall profile, resource
    /// limits). Returns exit code, termination, stdout/stderr (capped, with
    /// truncation flags), `violations` (what the skill attempted that was blocked),
    /// the enforcement report, resource usage, network activity and the trace id and
    /// path. A non-zero exit, a blocked setup, a timeout or a kill is a tool error
    /// (isError) with the same structured result. Only skills inside the server's
    /// skills directories can be run.
    #[tool(
        output_schema = schema_for_output::<RunResult>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = true)
    )]
    async fn run_skill(
        &self,
        Parameters(args): Parameters<RunSkillArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let path = match self.locate_skill(&args.skill) {
            Ok(t) => t,
            Err(msg) => return Ok(refused(msg)),
        };
        let script = args.script.as_deref().map(Path::new);
        let skill = match skillsandbox_skill::load(&path, &ResolveEnv::from_process_env(), script) {
            Ok(s) => s,
            Err(e) => return Ok(refused(format!("the skill cannot run; nothing ran:\n{e}"))),
        };
        let approvals = &self.shared.approvals;
        match skillsandbox_skill::lock::check(&skill, approvals, self.shared.require_approval) {
            Ok(checked) => {
                if let Some(why) = checked.refusal(&skill) {
                    return Ok(refused(format!(
                        "{why}\nOnly the user can approve a skill (outside any sandbox); do not retry."
                    )));
                }
            }
            Err(e) => {
                return Ok(refused(format!(
                    "the approval of {} cannot be checked, so it does not run: {e}",
                    skill.dir.display()
                )))
            }
        }
        let policy = skill.policy;
        let what = format!("skill {} {}", policy.skill.name, policy.skill.version);
        let extra = args.args;
        self.confined_run(policy, extra, what, &context).await
    }

    /// Run a command in a fresh ad-hoc sandbox: deny-all defaults (no network, no
    /// host files — not even the current directory —, no host environment
    /// variables) plus exactly the grants in the request. The grants are capped by
    /// the operator's ceiling; a request beyond it is refused naming what exceeded.
    /// Inside, the command runs as uid 0 of a user namespace mapped to an
    /// unprivileged host user, with no capabilities, under seccomp, Landlock and
    /// cgroup limits. Same structured result as run_skill.
    #[tool(
        output_schema = schema_for_output::<RunResult>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = true)
    )]
    async fn exec_command(
        &self,
        Parameters(args): Parameters<ExecCommandArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if args.command.is_empty() || args.command[0].is_empty() {
            return Ok(refused(
                "command is empty: pass the program and its arguments, e.g. [\"ls\", \"-l\"]",
            ));
        }
        let admitted = match self.shared.ceiling.admit(&Requested {
            read: &args.read,
            write: &args.write,
            env: &args.env,
            allow_domains: &args.allow_domains,
            memory_mb: args.memory_mb,
            timeout_s: args.timeout_s,
        }) {
            Ok(a) => a,
            Err(e) => return Ok(refused(format!("refused by the operator ceiling: {e}"))),
        };
        if let Some(w) = &args.workdir {
            if !Path::new(w).is_absolute() {
                return Ok(refused(format!(
                    "workdir {w:?} is not absolute; pass a path inside the sandbox such as /home/sandbox or a granted path"
                )));
            }
        }
        let grants = Grants {
            read: admitted.read,
            write: admitted.write,
            env: admitted.env,
            memory_mb: Some(admitted.memory_mb),
            timeout_s: Some(admitted.timeout_s),
            max_processes: None,
            tier: None,
            workdir: args.workdir.map(PathBuf::from),
        };
        let mut policy = adhoc_policy(None, &args.command, &grants, Path::new("/"));
        policy.network.egress = admitted.egress;
        let what = format!("exec {}", args.command.join(" "));
        self.confined_run(policy, Vec::new(), what, &context).await
    }

    /// Check a skill manifest (skillsandbox.yaml) without running anything: every
    /// error with file, line, column, field and a hint, plus lint warnings for
    /// over-broad grants. `ok: false` is the answer for an invalid manifest (the
    /// call itself succeeded).
    #[tool(
        output_schema = schema_for_output::<ValidateResult>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn validate_skill(
        &self,
        Parameters(args): Parameters<SkillPathArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = match self.shared.roots.resolve(&args.path) {
            Ok(p) => p,
            Err(e) => return Ok(refused(e.to_string())),
        };
        let result = match skillsandbox_skill::load(&path, &ResolveEnv::from_process_env(), None) {
            Ok(loaded) => ValidateResult {
                ok: true,
                manifest: loaded.declared_by().display().to_string(),
                skill: Some(SkillRef {
                    name: loaded.policy.skill.name.clone(),
                    version: loaded.policy.skill.version.clone(),
                }),
                errors: Vec::new(),
                warnings: loaded.warnings.iter().map(DiagnosticOut::from).collect(),
            },
            Err(e) => ValidateResult {
                ok: false,
                manifest: manifest_label(&path),
                skill: None,
                errors: e.diagnostics().iter().map(DiagnosticOut::from).collect(),
                warnings: Vec::new(),
            },
        };
        let text = result.text();
        structured(&result, text, false)
    }

    /// Show the resolved policy of a skill: exactly what the sandbox will enforce
    /// (every path absolute, every default applied), plus lint warnings.
    #[tool(
        output_schema = schema_for_output::<InspectResult>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn inspect_skill(
        &self,
        Parameters(args): Parameters<SkillPathArgs>,
    ) -> Result<CallToolResult, McpError> {
        let path = match self.shared.roots.resolve(&args.path) {
            Ok(p) => p,
            Err(e) => return Ok(refused(e.to_string())),
        };
        let loaded = match skillsandbox_skill::load(&path, &ResolveEnv::from_process_env(), None) {
            Ok(l) => l,
            Err(e) => {
                let lines: Vec<String> = e
                    .diagnostics()
                    .iter()
                    .map(|d| diagnostic_line(&DiagnosticOut::from(d)))
                    .collect();
                return Ok(refused(format!("invalid manifest:\n{}", lines.join("\n"))));
            }
        };
        let policy = serde_json::to_value(&loaded.policy).map_err(|e| {
            McpError::internal_error(format!("cannot serialise the policy: {e}"), None)
        })?;
        let result = InspectResult {
            manifest: loaded.declared_by().display().to_string(),
            skill: SkillRef {
                name: loaded.policy.skill.name.clone(),
                version: loaded.policy.skill.version.clone(),
            },
            policy,
            warnings: loaded.warnings.iter().map(DiagnosticOut::from).collect(),
        };
        let mut text = format!(
            "{} {} ({}): resolved policy in structuredContent.policy",
            result.skill.name, result.skill.version, result.manifest
        );
        for w in &result.warnings {
            text.push('\n');
            text.push_str(&diagnostic_line(w));
        }
        text.push('\n');
        text.push_str(&serde_json::to_string_pretty(&result.policy).unwrap_or_default());
        structured(&result, text, false)
    }

    /// List the skills in the server's skills directories (or one directory inside
    /// them): skillsandbox.yaml skills with name, version and description, and
    /// agent-skill folders with a SKILL.md (name/description from its front matter),
    /// which have no manifest and so run only under deny-all defaults.
    #[tool(
        output_schema = schema_for_output::<ListResult>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_skills(
        &self,
        Parameters(args): Parameters<ListSkillsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let dirs = match &args.directory {
            Some(d) => match self.shared.roots.resolve(d) {
                Ok(p) if p.is_dir() => vec![p],
                Ok(p) => return Ok(refused(format!("{} is not a directory", p.display()))),
                Err(e) => return Ok(refused(e.to_string())),
            },
            None if self.shared.roots.roots().is_empty() => {
                return Ok(refused(
                    "the server has no skills directories; pass `directory`, or ask the operator to start it with --skills-dir DIR",
                ))
            }
            None => self.shared.roots.roots().to_vec(),
        };
        let (skills, truncated) = blocking("listing", {
            let dirs = dirs.clone();
            move || discover::scan(&dirs)
        })
        .await?;
        let result = ListResult {
            directories: dirs.iter().map(|d| d.display().to_string()).collect(),
            skills,
            truncated,
        };
        let text = result.text();
        structured(&result, text, false)
    }

    /// This server's session as the session policy engine records it (shared with
    /// every process using the same session id): id, state (open | killed) and
    /// kill reason, runs started/finished, usage (CPU, wall time, egress bytes,
    /// reported cost), violations by kind, each budget's limit/used/left, violation
    /// thresholds, max_runs/max_duration left, and why the next run would be
    /// refused (null: it would be admitted); plus this server process's own counts.
    #[tool(
        output_schema = schema_for_output::<SessionStatusResult>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn session_status(
        &self,
        Parameters(_args): Parameters<NoArgs>,
    ) -> Result<CallToolResult, McpError> {
        let shared = Arc::clone(&self.shared);
        let status = blocking("the status thread", move || shared.session.status()).await?;
        match status {
            Ok(st) => {
                let text = st.text();
                structured(&st, text, false)
            }
            Err(e) => Ok(refused(format!("cannot read the session store: {e}"))),
        }
    }

    /// Report model usage this agent session spent, charged to the session's
    /// cost_usd budget: either `model` with `input_tokens`/`output_tokens` (priced
    /// by the operator's price table) or `usd` (dollars, as is) — exactly one of the
    /// two. Returns the cost added, the session's total, the cost budget left, and
    /// what the report triggered (an alert, later runs blocked, or the kill switch
    /// tripped: running sandboxes stopped and later runs refused).
    #[tool(
        output_schema = schema_for_output::<ReportUsageResult>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn report_usage(
        &self,
        Parameters(args): Parameters<ReportUsageArgs>,
    ) -> Result<CallToolResult, McpError> {
        let report = match args.to_report() {
            Ok(r) => r,
            Err(msg) => return Ok(refused(msg)),
        };
        let shared = Arc::clone(&self.shared);
        let recorded = blocking("the report thread", move || {
            shared.session.report_usage(&report)
        })
        .await?;
        match recorded {
            Ok(r) => {
                let text = r.text();
                structured(&r, text, false)
            }
            Err(e) => Ok(refused(format!("usage not recorded: {e}"))),
        }
    }
}

impl SkillSandboxServer {
    /// Name (from the listing) or path (inside the skills directories) to a target.
    fn locate_skill(&self, skill: &str) -> Result<PathBuf, String> {
        let roots = &self.shared.roots;
        let is_name = !skill.is_empty() && !skill.contains('/') && skill != "." && skill != "..";
        let path = if is_name {
            let found = discover::find_by_name(roots.roots(), skill);
            match found.as_slice() {
                [one] => PathBuf::from(&one.path),
                [] => roots.resolve(skill).map_err(|e| {
                    format!("no skill named {skill:?}: {e}; list_skills shows what is installed")
                })?,
                many => {
                    return Err(format!(
                        "{} skills are named {skill:?}: {}; pass the path of the one to run",
                        many.len(),
                        many.iter()
                            .map(|e| e.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        } else {
            roots.resolve(skill).map_err(|e| e.to_string())?
        };
        if path.is_file() || path.join(MANIFEST_FILE).is_file() || path.join(SKILL_MD).is_file() {
            return Ok(path);
        }
        Err(format!(
            "{} holds neither {MANIFEST_FILE} nor {SKILL_MD}; list_skills shows the skills",
            path.display()
        ))
    }

    /// Run on a dedicated blocking thread inside the session: admitted first (a
    /// refusal is a tool error), stopped by the request's cancellation, server
    /// shutdown or the session's kill switch, accounted after.
    async fn confined_run(
        &self,
        policy: Policy,
        extra_args: Vec<String>,
        what: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let ct = context.ct.clone();
        let permit = tokio::select! {
            p = self.shared.slots.clone().acquire_owned() => p
                .map_err(|_| McpError::internal_error("the server is shutting down", None))?,
            _ = ct.cancelled() => {
                return Ok(refused("cancelled before the run started"));
            }
        };
        let mut req = RunRequest::new(policy);
        req.extra_args = extra_args;
        req.stdout = Sink::Capture;
        req.stderr = Sink::Capture;
        req.audit_log = self.shared.audit_log.clone();
        req.stages = self.shared.stages.clone();
        let stop_ct = ct.clone();
        let shutdown = Arc::clone(&self.shared.shutdown);
        let stop = move || {
            if stop_ct.is_cancelled() {
                Some("the MCP request was cancelled (notifications/cancelled)".to_string())
            } else if shutdown.load(Ordering::Relaxed) {
                Some("the MCP server is shutting down".to_string())
            } else {
                None
            }
        };
        let cancel_ct = ct.clone();
        let shared = Arc::clone(&self.shared);
        log(&format!("{what}: starting"));
        let ran = blocking("the run thread", move || {
            let _permit = permit;
            run_in_session(&shared.session, req, stop, move || cancel_ct.is_cancelled())
        })
        .await?;
        let done = match ran {
            Ran::Refused(r) => {
                return Ok(refused(format!(
                    "refused by the session policy ({}): {r}\nnothing ran",
                    refusal_kind(&r)
                )))
            }
            Ran::Finished(done) => done,
        };
        let mut result = RunResult::from_outcome(&done.outcome);
        result.session = done.accounted.session;
        result.warnings.extend(done.accounted.warnings);
        log(&format!(
            "{what}: exit {} ({:?}), {} violation(s){}",
            result.exit_code,
            result.termination,
            result.violations.len(),
            if done.cancelled {
                ", request cancelled"
            } else {
                ""
            }
        ));
        let text = result.text(&what, done.outcome.trace.duration_ms);
        structured(&result, text, result.failed())
    }
}

/// The snake_case name of a refusal's kind (`killed`, `max_runs`, ...).
fn refusal_kind(r: &Refusal) -> String {
    match serde_json::to_value(r.kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "refused".to_string(),
    }
}

/// The deny-all policy for a SKILL.md folder without a manifest: `command` runs with
/// the folder read-only at /skill as its working directory and nothing else granted.
fn manifest_label(path: &Path) -> String {
    if path.is_dir() {
        path.join(MANIFEST_FILE).display().to_string()
    } else {
        path.display().to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SkillSandboxServer {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "skillsandbox",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Run blocking work (file scans, SQLite, a sandbox) on its own thread; a thread that
/// died is an internal error naming `what`.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, McpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| McpError::internal_error(format!("{what} failed: {e}"), None))
}
