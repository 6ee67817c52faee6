//! The orchestrator: one confined run from a resolved policy to a written trace and
//! audit record (DESIGN.md §2, the arrow from `Policy` to `RunResult + Events`).
//!
//! Shared by every caller that starts a run (CLI, MCP server, `check`, the hook).
//! [`run`] is the one entry: session admission, tier choice and lowering (once),
//! launch, supervision, verdict, records, accounting. Knows every enforcement crate;
//! knows nothing about argument parsing or protocols.

pub mod adhoc;
mod denials;
mod egress;
mod enforcement;
mod intercept;
mod lower;
pub mod output;
mod prepare;
mod run;
pub mod session;
mod setup;
pub mod tier;
mod verdict;

pub use adhoc::{adhoc_policy, Grants};
pub use egress::HOSTS_OVERRIDE_ENV as EGRESS_HOSTS_ENV;
pub use lower::dry_run_plan;
pub use output::{Captured, Sink};
pub use run::{run, stage_exe, warm_stages, RunOutcome, RunRequest, StartGate, TerminalHandover};
pub use session::{RunSession, SessionAccount};
pub use skillsandbox_sandbox::plan::{ImageRoot, Volume};
pub use skillsandbox_sandbox::warm::WarmStages;
