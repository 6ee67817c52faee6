//! The session store: one SQLite file (WAL, busy timeout) shared by every process
//! that runs skills, so limits hold across processes and restarts.
//!
//! Every change happens in an `IMMEDIATE` transaction that reads the totals, decides
//! (`decide.rs`) and writes in one step: concurrent admissions cannot overshoot
//! `max_runs` and concurrent accountings never lose an update. This module never
//! sends anything anywhere; it returns what it decided.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::decide::{refusal, Decision, Refusal, Totals};
use crate::file::PolicyFile;
use crate::locate::StoreLocation;
use crate::sql::{
    connect, decide_and_trip, ensure_session, kill_in, session_row, standing, totals, SCHEMA,
    SCHEMA_VERSION,
};
use crate::usage::{CostEntry, RunUsage};

/// Environment variable that overrides the store location (tests, per-user setups).
pub const SESSION_DB_ENV: &str = "SKILLSANDBOX_SESSION_DB";

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the session store directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the session store {}: {source}\n  hint: set {SESSION_DB_ENV} to a writable path", path.display())]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the session store {}: {source}\n  hint: set {SESSION_DB_ENV} to a writable path", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("session store {}: {what}: {source}", path.display())]
    Query {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("invalid session id {id:?}: {why}")]
    InvalidSessionId { id: String, why: &'static str },
    #[error("no session {id:?}\n  hint: `skillsandbox session list` shows the known sessions")]
    UnknownSession { id: String },
    #[error("session store {}: the connection lock was poisoned by a panic", path.display())]
    Poisoned { path: PathBuf },
    #[error("invalid session store URL: {why}\n  hint: use sqlite:PATH (set by --store or $SKILLSANDBOX_STORE)")]
    InvalidStoreUrl { why: &'static str },
    #[error("session store backend {backend:?} is not available in this build\n  hint: use sqlite:PATH, or unset $SKILLSANDBOX_STORE")]
    BackendUnavailable { backend: &'static str },
}

/// Session ids: 1–128 characters of `A-Z a-z 0-9 . _ : @ -`.
pub fn check_session_id(id: &str) -> Result<(), StoreError> {
    let bad = |why| {
        Err(StoreError::InvalidSessionId {
            id: id.chars().take(140).collect(),
            why,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > 128 {
        return bad("it is longer than 128 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))
    {
        return bad("use only letters, digits and . _ : @ -");
    }
    Ok(())
}

/// `$SKILLSANDBOX_SESSION_DB` when set and non-empty, else
/// `$XDG_STATE_HOME/skillsandbox/sessions.db` (else `~/.local/state/...`).
pub fn default_store_path() -> PathBuf {
    match std::env::var_os(SESSION_DB_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => skillsandbox_audit::default_state_dir().join("sessions.db"),
    }
}

/// Whether a session accepts runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Killed,
}

/// One row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub state: SessionState,
    pub created_at_ms: i64,
    pub opened_at_ms: i64,
    /// Number of resets.
    pub epoch: i64,
    /// Number of times the kill switch tripped (never decreases).
    pub kill_count: i64,
    pub killed_at_ms: Option<i64>,
    pub kill_reason: Option<String>,
}

/// A run the store let in; hand it back to [`Store::finish_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub session_id: String,
    pub run_id: i64,
    pub epoch: i64,
    /// `kill_count` when admitted: a later kill stops this run even after a reset.
    pub kill_count: i64,
}

/// What recording some usage triggered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accounted {
    pub decisions: Vec<Decision>,
    /// `Some(reason)` when this change tripped the kill switch.
    pub killed: Option<String>,
    /// Totals after the change (of the epoch the usage belongs to).
    pub totals: Totals,
}

/// The outcome of [`Store::kill`].
#[derive(Debug, Clone, PartialEq)]
pub struct Killed {
    /// False when the session was already killed (its first reason stays).
    pub newly: bool,
    pub reason: String,
    pub totals: Totals,
}

/// The session store at one path.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating when missing: directory 0700, file 0600) the store at `path`,
    /// switches it to WAL and creates the tables.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let path = path.into();
        prepare_file(&path)?;
        let mut conn = connect(&path, BUSY_TIMEOUT)?;
        let q = |what| {
            let path = path.clone();
            move |source| StoreError::Query { path, what, source }
        };
        // Switching to WAL needs a moment alone with the file; only the very first
        // opener does it, others may see SQLITE_BUSY meanwhile.
        let mut tries = 0;
        loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                Ok(_) => break,
                Err(e) if tries < 100 && is_busy(&e) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(q("switching to WAL")(e)),
            }
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(q("creating the tables"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(q("reading the schema version"))?;
        if version < SCHEMA_VERSION {
            tx.execute_batch(SCHEMA).map_err(q("creating the tables"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(q("setting the schema version"))?;
        }
        tx.commit().map_err(q("creating the tables"))?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The store named by `$SKILLSANDBOX_STORE`, else the SQLite file at
    /// [`default_store_path`].
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open_location(&StoreLocation::from_env()?)
    }

    /// The store at `loc`. Only SQLite exists in this build: a PostgreSQL location
    /// is refused, never replaced by a local file.
    pub fn open_location(loc: &StoreLocation) -> Result<Store, StoreError> {
        match loc {
            StoreLocation::Sqlite(path) => Store::open(path.clone()),
            StoreLocation::Postgres(_) => Err(StoreError::BackendUnavailable {
                backend: loc.backend(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned {
            path: self.path.clone(),
        })?;
        let q = |source| StoreError::Query {
            path: self.path.clone(),
            what,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(q)?;
        let out = f(&tx).map_err(q)?;
        tx.commit().map_err(q)?;
        Ok(out)
    }

    /// Admits a run of session `id` under `policy` (creating the session when new),
    /// counting it as started in the same transaction; or says why not.
    pub fn admit(
        &self,
        id: &str,
        policy: &PolicyFile,
    ) -> Result<Result<Admission, Refusal>, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        let policy_json = serde_json::to_string(policy).unwrap_or_default();
        self.with("admitting a run", |tx| {
            ensure_session(tx, id, now)?;
            let row = session_row(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let totals = totals(tx, id, row.epoch)?;
            if let Some(r) = refusal(id, policy, &standing(&row), &totals, now) {
                return Ok(Err(r));
            }
            tx.execute(
                "INSERT INTO runs (session_id, epoch, started_at_ms) VALUES (?1, ?2, ?3)",
                params![id, row.epoch, now],
            )?;
            let run_id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE sessions SET policy_json = ?2 WHERE id = ?1",
                params![id, policy_json],
            )?;
            Ok(Ok(Admission {
                session_id: id.to_owned(),
                run_id,
                epoch: row.epoch,
                kill_count: row.kill_count,
            }))
        })
    }

    /// Records what an admitted run used, then decides (alerts, spent budgets,
    /// thresholds) and trips the kill switch when a decision says `kill`.
    pub fn finish_run(
        &self,
        a: &Admission,
        usage: &RunUsage,
        policy: &PolicyFile,
    ) -> Result<Accounted, StoreError> {
        let now = now_ms();
        self.with("accounting a run", |tx| {
            let before = totals(tx, &a.session_id, a.epoch)?;
            let changed = tx.execute(
                "UPDATE runs SET finished_at_ms = ?2, trace_id = ?3, cpu_ms = ?4, wall_ms = ?5,
                        egress_bytes = ?6, exit_code = ?7, termination = ?8
                 WHERE id = ?1 AND finished_at_ms IS NULL",
                params![
                    a.run_id,
                    now,
                    usage.trace_id,
                    to_i64(usage.cpu_ms),
                    to_i64(usage.wall_ms),
                    to_i64(usage.egress_bytes),
                    usage.exit_code,
                    usage.termination,
                ],
            )?;
            if changed == 0 {
                // Already accounted: never count a run twice.
                return Ok(Accounted {
                    totals: before,
                    ..Accounted::default()
                });
            }
            for (kind, n) in &usage.violations {
                tx.execute(
                    "INSERT INTO violations (session_id, epoch, kind, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id, epoch, kind) DO UPDATE SET count = count + excluded.count",
                    params![a.session_id, a.epoch, kind, to_i64(*n)],
                )?;
            }
            decide_and_trip(tx, &a.session_id, a.epoch, policy, &before, now)
        })
    }

    /// Records a model cost for session `id` (creating it when new) and decides.
    pub fn add_cost(
        &self,
        id: &str,
        entry: &CostEntry,
        policy: &PolicyFile,
    ) -> Result<Accounted, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        self.with("recording a cost", |tx| {
            ensure_session(tx, id, now)?;
            let row = session_row(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let before = totals(tx, id, row.epoch)?;
            tx.execute(
                "INSERT INTO costs (session_id, epoch, at_ms, model, input_tokens, output_tokens, usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    row.epoch,
                    now,
                    entry.model,
                    entry.input_tokens.map(to_i64),
                    entry.output_tokens.map(to_i64),
                    entry.usd
                ],
            )?;
            decide_and_trip(tx, id, row.epoch, policy, &before, now)
        })
    }

    /// Trips the kill switch of session `id` (creating it, killed, when new).
    pub fn kill(&self, id: &str, reason: &str) -> Result<Killed, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        self.with("killing a session", |tx| {
            ensure_session(tx, id, now)?;
            let newly = kill_in(tx, id, reason, now)?;
            let row = session_row(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(Killed {
                newly,
                reason: row.kill_reason.unwrap_or_else(|| reason.to_owned()),
                totals: totals(tx, id, row.epoch)?,
            })
        })
    }

    /// Reopens session `id`: state open, usage and counts start over, `max_duration`
    /// counts from now. Past runs stay in the store.
    pub fn reset(&self, id: &str) -> Result<SessionRow, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        let row = self.with("resetting a session", |tx| {
            tx.execute(
                "UPDATE sessions SET state = 'open', killed_at_ms = NULL, kill_reason = NULL,
                        epoch = epoch + 1, opened_at_ms = ?2
                 WHERE id = ?1",
                params![id, now],
            )?;
            session_row(tx, id)
        })?;
        row.ok_or_else(|| StoreError::UnknownSession { id: id.to_owned() })
    }

    /// The session row and its current totals, if the session exists.
    pub fn get(&self, id: &str) -> Result<Option<(SessionRow, Totals)>, StoreError> {
        self.with("reading a session", |tx| {
            let Some(row) = session_row(tx, id)? else {
                return Ok(None);
            };
            let t = totals(tx, id, row.epoch)?;
            Ok(Some((row, t)))
        })
    }

    /// Every session with its current totals, oldest first.
    pub fn list(&self) -> Result<Vec<(SessionRow, Totals)>, StoreError> {
        self.with("listing sessions", |tx| {
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM sessions ORDER BY created_at_ms, id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = session_row(tx, &id)? {
                    let t = totals(tx, &id, row.epoch)?;
                    out.push((row, t));
                }
            }
            Ok(out)
        })
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn prepare_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    // Create the file ourselves so it is 0600 (SQLite's WAL files copy its mode).
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })?;
    Ok(())
}
