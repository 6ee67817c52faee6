//! The session store: one SQLite file (WAL, busy timeout) shared by every process
//! of a host, or one PostgreSQL database shared by many hosts, so limits hold
//! across processes, hosts and restarts.
//!
//! Every change happens in one transaction that locks the session (SQLite: an
//! `IMMEDIATE` transaction; PostgreSQL: `SELECT … FOR UPDATE` on its row), reads
//! the totals, decides (`decide.rs`) and writes: concurrent admissions cannot
//! overshoot `max_runs` and concurrent accountings never lose an update. This module never
//! sends anything anywhere; it returns what it decided.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::decide::{decisions_after, refusal, Decision, Refusal, Totals};
use crate::file::{Action, PolicyFile};
use crate::locate::StoreLocation;
use crate::pg::PgStore;
use crate::sql::{connect, standing, SqliteTx, SCHEMA, SCHEMA_V2, SCHEMA_VERSION};
use crate::tx::{DbError, Tx};
use crate::usage::{CostEntry, RunUsage};
use crate::watch::WatchTarget;

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
    // The whole cause chain in the message, before the hint (`why`, not `source`).
    #[error("cannot connect to the session store {store}: {why}\n  hint: check that the database is up and the URL in --store / $SKILLSANDBOX_STORE is right")]
    PgConnect { store: String, why: String },
    #[error("session store {store}: {what}: {source}")]
    Query {
        store: String,
        what: &'static str,
        source: DbError,
    },
    #[error(
        "session store {store}: the kill watch has not reached the database for {secs} s: {why}"
    )]
    WatchSilent {
        store: String,
        secs: u64,
        why: String,
    },
    #[error("invalid session id {id:?}: {why}")]
    InvalidSessionId { id: String, why: &'static str },
    #[error("no session {id:?}\n  hint: `skillsandbox session list` shows the known sessions")]
    UnknownSession { id: String },
    #[error("session store {store}: the connection lock was poisoned by a panic")]
    Poisoned { store: String },
    #[error("invalid session store URL: {why}\n  hint: use sqlite:PATH or postgres://USER@HOST/DB (set by --store or $SKILLSANDBOX_STORE)")]
    InvalidStoreUrl { why: &'static str },
    #[error(
        "invalid PostgreSQL URL: {why}\n  hint: write postgres://USER[:PASSWORD]@HOST[:PORT]/DB"
    )]
    InvalidPostgresUrl { why: String },
    #[error("session store {store}: sslmode=require, but this build has no TLS client for PostgreSQL; refusing rather than connecting in plaintext\n  hint: reach the database over a trusted network or a local TLS tunnel and use sslmode=disable")]
    TlsUnavailable { store: String },
}

impl StoreError {
    /// The store could not be reached (connection refused or lost), as opposed to
    /// a refusal, a bad request or a schema problem: worth trying again later.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::PgConnect { .. } => true,
            StoreError::Query {
                source: DbError::Postgres(e),
                ..
            } => {
                use postgres::error::SqlState;
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                    || e.code().is_some_and(|c| {
                        *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW
                    })
            }
            StoreError::Query {
                source: DbError::Sqlite(e),
                ..
            } => is_busy(e),
            _ => false,
        }
    }
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

impl SessionState {
    /// From the `state` column of either backend (`'open'` or `'killed'`).
    pub(crate) fn from_column(state: &str) -> SessionState {
        if state == "killed" {
            SessionState::Killed
        } else {
            SessionState::Open
        }
    }
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

/// The session store: a SQLite file on this host, or a PostgreSQL database shared
/// by many hosts. Every operation below is written once against [`Tx`].
#[derive(Debug)]
pub struct Store {
    /// The SQLite file, or the PostgreSQL URL without its password (for messages).
    path: PathBuf,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres(Box<PgStore>),
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
            let store = path.display().to_string();
            move |source: rusqlite::Error| StoreError::Query {
                store,
                what,
                source: source.into(),
            }
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
        if version < 1 {
            tx.execute_batch(SCHEMA).map_err(q("creating the tables"))?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_V2)
                .map_err(q("adding run leases to the schema"))?;
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(q("setting the schema version"))?;
        }
        tx.commit().map_err(q("creating the tables"))?;
        Ok(Store {
            path,
            backend: Backend::Sqlite(Mutex::new(conn)),
        })
    }

    /// The store named by `$SKILLSANDBOX_STORE`, else the SQLite file at
    /// [`default_store_path`].
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open_location(&StoreLocation::from_env()?)
    }

    /// The store at `loc`: a SQLite file, or a PostgreSQL database (connected and
    /// migrated now; an unreachable database is an error, never replaced by a file).
    pub fn open_location(loc: &StoreLocation) -> Result<Store, StoreError> {
        match loc {
            StoreLocation::Sqlite(path) => Store::open(path.clone()),
            StoreLocation::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// Connects to the PostgreSQL database at `url` and migrates its schema.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let pg = PgStore::open(url)?;
        Ok(Store {
            path: PathBuf::from(&pg.label),
            backend: Backend::Postgres(Box::new(pg)),
        })
    }

    /// The SQLite file, or the PostgreSQL URL without its password: for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A watch on session `id`'s kill state (see [`KillWatch`]) from this store's
    /// location; `'static`, so a run's stop check can own it.
    pub fn watch_target(&self) -> WatchTarget {
        match &self.backend {
            Backend::Sqlite(_) => WatchTarget::Sqlite(self.path.clone()),
            Backend::Postgres(pg) => WatchTarget::Postgres {
                config: Box::new(pg.config().clone()),
                label: pg.label.clone(),
                poll: crate::watch::PG_FALLBACK_POLL,
            },
        }
    }

    fn with<T>(
        &self,
        what: &'static str,
        mut f: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let conn = match &self.backend {
            Backend::Postgres(pg) => return pg.with(what, f),
            Backend::Sqlite(conn) => conn,
        };
        let store = || self.path.display().to_string();
        let mut conn = conn
            .lock()
            .map_err(|_| StoreError::Poisoned { store: store() })?;
        let q = |source: DbError| StoreError::Query {
            store: store(),
            what,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| q(e.into()))?;
        let out = f(&mut SqliteTx(&tx)).map_err(q)?;
        tx.commit().map_err(|e| q(e.into()))?;
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
            tx.ensure_session(id, now)?;
            tx.lock_session(id)?;
            tx.expire_leases(id, now)?;
            let row = tx.session_row(id)?.ok_or(DbError::MissingRow)?;
            let totals = tx.totals(id, row.epoch)?;
            if let Some(r) = refusal(id, policy, &standing(&row), &totals, now) {
                return Ok(Err(r));
            }
            let run_id = tx.insert_run(id, row.epoch, now, now + lease_ms(policy))?;
            tx.set_policy(id, &policy_json)?;
            Ok(Ok(Admission {
                session_id: id.to_owned(),
                run_id,
                epoch: row.epoch,
                kill_count: row.kill_count,
            }))
        })
    }

    /// Extends a running run's lease by the policy's `store.lease` from now; false
    /// when the run was accounted already. Its supervisor calls this every third of
    /// the lease while the run lives.
    pub fn renew_lease(&self, a: &Admission, policy: &PolicyFile) -> Result<bool, StoreError> {
        let until = now_ms() + lease_ms(policy);
        self.with("renewing a run's lease", |tx| {
            tx.renew_lease(a.run_id, until)
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
            tx.lock_session(&a.session_id)?;
            let before = tx.totals(&a.session_id, a.epoch)?;
            if !tx.finish_run(a.run_id, now, usage)? {
                // Already accounted: never count a run twice.
                return Ok(Accounted {
                    totals: before,
                    ..Accounted::default()
                });
            }
            for (kind, n) in &usage.violations {
                tx.add_violations(&a.session_id, a.epoch, kind, to_i64(*n))?;
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
            tx.ensure_session(id, now)?;
            tx.lock_session(id)?;
            let row = tx.session_row(id)?.ok_or(DbError::MissingRow)?;
            let before = tx.totals(id, row.epoch)?;
            tx.insert_cost(id, row.epoch, now, entry)?;
            decide_and_trip(tx, id, row.epoch, policy, &before, now)
        })
    }

    /// Trips the kill switch of session `id` (creating it, killed, when new).
    pub fn kill(&self, id: &str, reason: &str) -> Result<Killed, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        self.with("killing a session", |tx| {
            tx.ensure_session(id, now)?;
            tx.lock_session(id)?;
            let newly = tx.kill(id, reason, now)?;
            let row = tx.session_row(id)?.ok_or(DbError::MissingRow)?;
            Ok(Killed {
                newly,
                reason: row.kill_reason.unwrap_or_else(|| reason.to_owned()),
                totals: tx.totals(id, row.epoch)?,
            })
        })
    }

    /// Reopens session `id`: state open, usage and counts start over, `max_duration`
    /// counts from now. Past runs stay in the store.
    pub fn reset(&self, id: &str) -> Result<SessionRow, StoreError> {
        check_session_id(id)?;
        let now = now_ms();
        let row = self.with("resetting a session", |tx| {
            tx.lock_session(id)?;
            tx.reset(id, now)?;
            tx.session_row(id)
        })?;
        row.ok_or_else(|| StoreError::UnknownSession { id: id.to_owned() })
    }

    /// The session row and its current totals, if the session exists (runs whose
    /// lease ran out are marked lost first).
    pub fn get(&self, id: &str) -> Result<Option<(SessionRow, Totals)>, StoreError> {
        let now = now_ms();
        self.with("reading a session", |tx| {
            tx.expire_leases(id, now)?;
            let Some(row) = tx.session_row(id)? else {
                return Ok(None);
            };
            let t = tx.totals(id, row.epoch)?;
            Ok(Some((row, t)))
        })
    }

    /// Every session with its current totals, oldest first.
    pub fn list(&self) -> Result<Vec<(SessionRow, Totals)>, StoreError> {
        let now = now_ms();
        self.with("listing sessions", |tx| {
            let ids = tx.session_ids()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                tx.expire_leases(&id, now)?;
                if let Some(row) = tx.session_row(&id)? {
                    let t = tx.totals(&id, row.epoch)?;
                    out.push((row, t));
                }
            }
            Ok(out)
        })
    }
}

/// After a change: decide against the totals before it; a `kill` decision trips
/// the switch (when the usage belongs to the session's current epoch).
fn decide_and_trip(
    tx: &mut dyn Tx,
    id: &str,
    epoch: i64,
    policy: &PolicyFile,
    before: &Totals,
    now: i64,
) -> Result<Accounted, DbError> {
    let after = tx.totals(id, epoch)?;
    let row = tx.session_row(id)?.ok_or(DbError::MissingRow)?;
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
        if tx.kill(id, &d.message, now)? {
            killed = Some(d.message.clone());
        }
    }
    Ok(Accounted {
        decisions,
        killed,
        totals: after,
    })
}

fn lease_ms(policy: &PolicyFile) -> i64 {
    to_i64(policy.store.lease.seconds.saturating_mul(1000))
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
