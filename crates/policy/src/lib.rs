//! Session policy: the policy file (budgets, violation thresholds, kill switch), the
//! session store shared by every process (SQLite) or every host (PostgreSQL), the
//! decisions, and kill-switch webhooks.
//!
//! The sandbox constrains what a skill can reach; this crate constrains what an
//! agent session may keep doing. Flow: [`find_policy`] → [`PolicyFile`];
//! [`Store::admit`] before a run (may refuse), [`Store::finish_run`] after it
//! (accounts, decides, may trip the kill switch), [`KillWatch`] while it runs.
//! The runtime's `session` module wires these to runs, the audit log and webhooks.
//!
//! No Linux specifics, no sandboxing: data, SQLite or PostgreSQL, and a tiny HTTP
//! client.

pub mod decide;
pub mod file;
mod load;
pub mod locate;
pub mod notify;
mod pg;
pub mod price;
mod read;
mod sql;
pub mod status;
pub mod store;
mod tx;
pub mod usage;
mod watch;
mod yaml;

pub use decide::{Decision, Refusal, RefusalKind, Totals, Trigger};
pub use file::{
    policy_json_schema, Action, Budget, KillSwitch, PolicyFile, Price, SessionLimits, Span,
    StoreRules, Unavailable, ViolationRules,
};
pub use load::{
    default_policy_path, find_policy, load_policy_file, parse_policy, LoadedPolicy, PolicyFileError,
};
pub use locate::{StoreLocation, STORE_URL_ENV};
pub use status::SessionStatus;
pub use store::{
    check_session_id, default_store_path, Accounted, Admission, Killed, SessionRow, SessionState,
    Store, StoreError, SESSION_DB_ENV,
};
pub use tx::DbError;
pub use usage::{price_report, CostEntry, PriceError, RunUsage, UsageReport};
pub use watch::{KillWatch, WatchTarget};
pub use yaml::MAX_POLICY_BYTES;
