//! The SQLite backend's SQL: the schema, and [`Tx`] for a SQLite transaction.
//! Callers hold the (`IMMEDIATE`) transaction; nothing here commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::decide::{Standing, Totals};
use crate::store::{to_i64, to_u64, SessionRow, SessionState, StoreError};
use crate::tx::{DbError, Tx};
use crate::usage::{CostEntry, RunUsage};

pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Version 1: the tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL CHECK (state IN ('open', 'killed')),
    created_at_ms INTEGER NOT NULL,
    opened_at_ms  INTEGER NOT NULL,   -- created or last reset: max_duration counts from here
    epoch         INTEGER NOT NULL,   -- bumped by reset: totals count the current epoch only
    kill_count    INTEGER NOT NULL DEFAULT 0,
    killed_at_ms  INTEGER,
    kill_reason   TEXT,
    policy_json   TEXT                -- the policy last applied to this session
);
CREATE TABLE IF NOT EXISTS runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     TEXT NOT NULL REFERENCES sessions(id),
    epoch          INTEGER NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    trace_id       TEXT,
    cpu_ms         INTEGER NOT NULL DEFAULT 0,
    wall_ms        INTEGER NOT NULL DEFAULT 0,
    egress_bytes   INTEGER NOT NULL DEFAULT 0,
    exit_code      INTEGER,
    termination    TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, epoch);
CREATE TABLE IF NOT EXISTS violations (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    epoch      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (session_id, epoch, kind)
);
CREATE TABLE IF NOT EXISTS costs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id    TEXT NOT NULL REFERENCES sessions(id),
    epoch         INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    model         TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    usd           REAL NOT NULL
);
";

/// Version 2: run leases. A running run's supervisor renews `lease_until_ms`; a run
/// still unfinished past it is marked `lost_at_ms` (its supervisor died).
pub(crate) const SCHEMA_V2: &str = "
ALTER TABLE runs ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE runs ADD COLUMN lost_at_ms INTEGER;
";

/// Open a connection with the store's settings (no schema work).
pub(crate) fn connect(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(busy).map_err(open)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open)?;
    Ok(conn)
}

pub(crate) fn standing(row: &SessionRow) -> Standing {
    Standing {
        killed: match row.state {
            SessionState::Killed => Some(
                row.kill_reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into()),
            ),
            SessionState::Open => None,
        },
        opened_at_ms: row.opened_at_ms,
    }
}

pub(crate) fn session_row(conn: &Connection, id: &str) -> rusqlite::Result<Option<SessionRow>> {
    conn.query_row(
        "SELECT id, state, created_at_ms, opened_at_ms, epoch, kill_count, killed_at_ms, kill_reason
         FROM sessions WHERE id = ?1",
        params![id],
        |r| {
            let state: String = r.get(1)?;
            Ok(SessionRow {
                id: r.get(0)?,
                state: SessionState::from_column(&state),
                created_at_ms: r.get(2)?,
                opened_at_ms: r.get(3)?,
                epoch: r.get(4)?,
                kill_count: r.get(5)?,
                killed_at_ms: r.get(6)?,
                kill_reason: r.get(7)?,
            })
        },
    )
    .optional()
}

pub(crate) fn totals(conn: &Connection, id: &str, epoch: i64) -> rusqlite::Result<Totals> {
    let mut t = conn.query_row(
        "SELECT COUNT(*), COUNT(finished_at_ms), COALESCE(SUM(cpu_ms), 0),
                COALESCE(SUM(wall_ms), 0), COALESCE(SUM(egress_bytes), 0),
                COALESCE(SUM(CASE WHEN finished_at_ms IS NULL AND lost_at_ms IS NOT NULL
                             THEN 1 ELSE 0 END), 0)
         FROM runs WHERE session_id = ?1 AND epoch = ?2",
        params![id, epoch],
        |r| {
            Ok(Totals {
                runs_started: to_u64(r.get(0)?),
                runs_finished: to_u64(r.get(1)?),
                cpu_ms: to_u64(r.get(2)?),
                wall_ms: to_u64(r.get(3)?),
                egress_bytes: to_u64(r.get(4)?),
                runs_lost: to_u64(r.get(5)?),
                cost_usd: 0.0,
                violations: BTreeMap::new(),
            })
        },
    )?;
    t.cost_usd = conn.query_row(
        "SELECT COALESCE(SUM(usd), 0.0) FROM costs WHERE session_id = ?1 AND epoch = ?2",
        params![id, epoch],
        |r| r.get(0),
    )?;
    let mut stmt =
        conn.prepare("SELECT kind, count FROM violations WHERE session_id = ?1 AND epoch = ?2")?;
    let rows = stmt.query_map(params![id, epoch], |r| {
        Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?)))
    })?;
    for row in rows {
        let (k, n) = row?;
        t.violations.insert(k, n);
    }
    Ok(t)
}

/// [`Tx`] over a SQLite transaction. The `IMMEDIATE` transaction already holds the
/// write lock on the whole file, so [`Tx::lock_session`] has nothing to add.
pub(crate) struct SqliteTx<'a>(pub(crate) &'a rusqlite::Transaction<'a>);

impl Tx for SqliteTx<'_> {
    fn ensure_session(&mut self, id: &str, now: i64) -> Result<(), DbError> {
        self.0.execute(
            "INSERT OR IGNORE INTO sessions (id, state, created_at_ms, opened_at_ms, epoch)
             VALUES (?1, 'open', ?2, ?2, 0)",
            params![id, now],
        )?;
        Ok(())
    }

    fn lock_session(&mut self, _id: &str) -> Result<(), DbError> {
        Ok(())
    }

    fn session_row(&mut self, id: &str) -> Result<Option<SessionRow>, DbError> {
        Ok(session_row(self.0, id)?)
    }

    fn totals(&mut self, id: &str, epoch: i64) -> Result<Totals, DbError> {
        Ok(totals(self.0, id, epoch)?)
    }

    fn kill(&mut self, id: &str, reason: &str, now: i64) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE sessions SET state = 'killed', killed_at_ms = ?2, kill_reason = ?3,
                    kill_count = kill_count + 1
             WHERE id = ?1 AND state = 'open'",
            params![id, now, reason],
        )?;
        Ok(n == 1)
    }

    fn insert_run(&mut self, id: &str, epoch: i64, now: i64, lease: i64) -> Result<i64, DbError> {
        self.0.execute(
            "INSERT INTO runs (session_id, epoch, started_at_ms, lease_until_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, epoch, now, lease],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    fn renew_lease(&mut self, run_id: i64, until: i64) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE runs SET lease_until_ms = ?2, lost_at_ms = NULL
             WHERE id = ?1 AND finished_at_ms IS NULL",
            params![run_id, until],
        )?;
        Ok(n == 1)
    }

    fn expire_leases(&mut self, id: &str, now: i64) -> Result<u64, DbError> {
        let n = self.0.execute(
            "UPDATE runs SET lost_at_ms = ?2
             WHERE session_id = ?1 AND finished_at_ms IS NULL AND lost_at_ms IS NULL
               AND lease_until_ms < ?2",
            params![id, now],
        )?;
        Ok(n as u64)
    }

    fn set_policy(&mut self, id: &str, policy_json: &str) -> Result<(), DbError> {
        self.0.execute(
            "UPDATE sessions SET policy_json = ?2 WHERE id = ?1",
            params![id, policy_json],
        )?;
        Ok(())
    }

    fn finish_run(&mut self, run_id: i64, now: i64, u: &RunUsage) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE runs SET finished_at_ms = ?2, trace_id = ?3, cpu_ms = ?4, wall_ms = ?5,
                    egress_bytes = ?6, exit_code = ?7, termination = ?8
             WHERE id = ?1 AND finished_at_ms IS NULL",
            params![
                run_id,
                now,
                u.trace_id,
                to_i64(u.cpu_ms),
                to_i64(u.wall_ms),
                to_i64(u.egress_bytes),
                u.exit_code,
                u.termination,
            ],
        )?;
        Ok(n == 1)
    }

    fn add_violations(&mut self, id: &str, epoch: i64, kind: &str, n: i64) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO violations (session_id, epoch, kind, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (session_id, epoch, kind) DO UPDATE SET count = count + excluded.count",
            params![id, epoch, kind, n],
        )?;
        Ok(())
    }

    fn insert_cost(
        &mut self,
        id: &str,
        epoch: i64,
        now: i64,
        e: &CostEntry,
    ) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO costs (session_id, epoch, at_ms, model, input_tokens, output_tokens, usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                epoch,
                now,
                e.model,
                e.input_tokens.map(to_i64),
                e.output_tokens.map(to_i64),
                e.usd
            ],
        )?;
        Ok(())
    }

    fn reset(&mut self, id: &str, now: i64) -> Result<(), DbError> {
        self.0.execute(
            "UPDATE sessions SET state = 'open', killed_at_ms = NULL, kill_reason = NULL,
                    epoch = epoch + 1, opened_at_ms = ?2
             WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    fn session_ids(&mut self) -> Result<Vec<String>, DbError> {
        Ok(self
            .0
            .prepare("SELECT id FROM sessions ORDER BY created_at_ms, id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_version_1_file_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO sessions (id, state, created_at_ms, opened_at_ms, epoch)
                 VALUES ('old', 'open', 1, 1, 0);
                 INSERT INTO runs (session_id, epoch, started_at_ms) VALUES ('old', 0, 1);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let (_, t) = s.get("old").unwrap().unwrap();
        // A run from before leases has none: unfinished, never marked lost.
        assert_eq!((t.runs_started, t.runs_finished, t.runs_lost), (1, 0, 0));
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop(s);
        // Opening again does not migrate twice.
        assert!(Store::open(&path).is_ok());
    }
}
