//! The one interface both store backends implement: the reads and writes a store
//! transaction is made of. `store.rs` writes every operation once against [`Tx`];
//! a backend (`sql.rs` for SQLite, `pg.rs` for PostgreSQL) supplies the SQL, the
//! transaction and the locking that makes each operation atomic across processes
//! and hosts. Nothing here commits.

use crate::decide::Totals;
use crate::store::SessionRow;
use crate::usage::{CostEntry, RunUsage};

/// Why one statement failed, from either backend.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("a row the transaction just wrote is missing")]
    MissingRow,
}

/// The statements of a store transaction. Every mutating operation first calls
/// [`Tx::lock_session`]; from then on, until commit, no other transaction on any
/// host can change that session (SQLite: the `IMMEDIATE` write lock on the whole
/// file; PostgreSQL: `SELECT … FOR UPDATE` on the session row).
pub(crate) trait Tx {
    /// Creates session `id` (open, epoch 0) unless it exists.
    fn ensure_session(&mut self, id: &str, now: i64) -> Result<(), DbError>;
    /// Holds session `id` for the rest of the transaction.
    fn lock_session(&mut self, id: &str) -> Result<(), DbError>;
    fn session_row(&mut self, id: &str) -> Result<Option<SessionRow>, DbError>;
    fn totals(&mut self, id: &str, epoch: i64) -> Result<Totals, DbError>;
    /// Kills an open session; false when it was killed already. Wakes watchers.
    fn kill(&mut self, id: &str, reason: &str, now: i64) -> Result<bool, DbError>;
    /// Counts a run as started, leased until `lease`; returns its id.
    fn insert_run(&mut self, id: &str, epoch: i64, now: i64, lease: i64) -> Result<i64, DbError>;
    /// Extends an unfinished run's lease (and takes back a `lost` mark); false when
    /// the run has finished.
    fn renew_lease(&mut self, run_id: i64, until: i64) -> Result<bool, DbError>;
    /// Marks session `id`'s unfinished runs whose lease ran out as lost; how many.
    fn expire_leases(&mut self, id: &str, now: i64) -> Result<u64, DbError>;
    fn set_policy(&mut self, id: &str, policy_json: &str) -> Result<(), DbError>;
    /// Records a run's usage once; false when it was recorded already.
    fn finish_run(&mut self, run_id: i64, now: i64, u: &RunUsage) -> Result<bool, DbError>;
    fn add_violations(&mut self, id: &str, epoch: i64, kind: &str, n: i64) -> Result<(), DbError>;
    fn insert_cost(&mut self, id: &str, epoch: i64, now: i64, e: &CostEntry)
        -> Result<(), DbError>;
    /// Reopens session `id` in a new epoch (no-op when it does not exist).
    fn reset(&mut self, id: &str, now: i64) -> Result<(), DbError>;
    /// Every session id, oldest first.
    fn session_ids(&mut self) -> Result<Vec<String>, DbError>;
}
