//! The store's SQL: the schema, and the reads and writes its transactions are
//! made of. Callers hold the transaction; nothing here commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::decide::{decisions_after, Standing, Totals};
use crate::file::{Action, PolicyFile};
use crate::store::{to_u64, Accounted, SessionRow, SessionState, StoreError};

pub(crate) const SCHEMA_VERSION: i64 = 1;

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

pub(crate) fn ensure_session(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO sessions (id, state, created_at_ms, opened_at_ms, epoch)
         VALUES (?1, 'open', ?2, ?2, 0)",
        params![id, now],
    )?;
    Ok(())
}

pub(crate) fn kill_in(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE sessions SET state = 'killed', killed_at_ms = ?2, kill_reason = ?3,
                kill_count = kill_count + 1
         WHERE id = ?1 AND state = 'open'",
        params![id, now, reason],
    )?;
    Ok(n == 1)
}

/// After a change: decide against the totals before it; a `kill` decision trips
/// the switch (when the usage belongs to the session's current epoch).
pub(crate) fn decide_and_trip(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    epoch: i64,
    policy: &PolicyFile,
    before: &Totals,
    now: i64,
) -> rusqlite::Result<Accounted> {
    let after = totals(tx, id, epoch)?;
    let row = session_row(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    if row.epoch != epoch {
        // The session was reset since this run started: its usage is history.
        return Ok(Accounted {
            totals: after,
            ..Accounted::default()
        });
    }
    let decisions = decisions_after(policy, before, &after);
    let mut killed = None;
    if let Some(d) = decisions.iter().find(|d| d.action == Action::Kill) {
        if kill_in(tx, id, &d.message, now)? {
            killed = Some(d.message.clone());
        }
    }
    Ok(Accounted {
        decisions,
        killed,
        totals: after,
    })
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
                state: if state == "killed" {
                    SessionState::Killed
                } else {
                    SessionState::Open
                },
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
                COALESCE(SUM(wall_ms), 0), COALESCE(SUM(egress_bytes), 0)
         FROM runs WHERE session_id = ?1 AND epoch = ?2",
        params![id, epoch],
        |r| {
            Ok(Totals {
                runs_started: to_u64(r.get(0)?),
                runs_finished: to_u64(r.get(1)?),
                cpu_ms: to_u64(r.get(2)?),
                wall_ms: to_u64(r.get(3)?),
                egress_bytes: to_u64(r.get(4)?),
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
