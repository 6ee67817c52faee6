//! The orchestrator: one confined run from a resolved policy to a written trace and
//! audit record (DESIGN.md §2, the arrow from `Policy` to `RunResult + Events`).
//!
//! Shared by the CLI and the MCP server. Knows every enforcement crate; knows nothing
//! about argument parsing or protocols.

pub mod adhoc;
mod egress;
mod enforcement;
pub mod output;
mod prepare;
mod run;
pub mod session;
pub mod tier;

pub use adhoc::{adhoc_policy, Grants};
pub use output::{Captured, Sink};
pub use run::{dry_run_plan, run, RunOutcome, RunRequest};
