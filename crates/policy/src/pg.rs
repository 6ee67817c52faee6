//! The PostgreSQL backend: one database shared by many hosts. Connection settings
//! (no TLS in this build: `sslmode=require` is refused), the schema and its
//! migration on open, and [`Tx`] for a PostgreSQL transaction.
//!
//! Atomic across hosts: every mutating operation locks its session row
//! (`SELECT … FOR UPDATE`) before it reads the totals, so admissions and accountings
//! of one session are serialized by the database, whichever host they come from.
//! A kill sends `NOTIFY skillsandbox_kill, '<session id>'` in the same transaction
//! (delivered on commit). The URL is never printed: [`redacted`] is what messages show.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use crate::decide::Totals;
use crate::store::{to_i64, to_u64, SessionRow, SessionState, StoreError};
use crate::tx::{DbError, Tx};
use crate::usage::{CostEntry, RunUsage};

/// The channel kills are announced on; the payload is the session id.
pub(crate) const KILL_CHANNEL: &str = "skillsandbox_kill";

const SCHEMA_VERSION: i64 = 2;

/// Any fixed number: held while one opener migrates, so concurrent openers on many
/// hosts do not race on `CREATE TABLE`.
const MIGRATION_LOCK: i64 = 0x0053_5353_544f_5245;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS skillsandbox.sessions (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL CHECK (state IN ('open', 'killed')),
    created_at_ms BIGINT NOT NULL,
    opened_at_ms  BIGINT NOT NULL,
    epoch         BIGINT NOT NULL,
    kill_count    BIGINT NOT NULL DEFAULT 0,
    killed_at_ms  BIGINT,
    kill_reason   TEXT,
    policy_json   TEXT
);
CREATE TABLE IF NOT EXISTS skillsandbox.runs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES skillsandbox.sessions(id),
    epoch          BIGINT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    trace_id       TEXT,
    cpu_ms         BIGINT NOT NULL DEFAULT 0,
    wall_ms        BIGINT NOT NULL DEFAULT 0,
    egress_bytes   BIGINT NOT NULL DEFAULT 0,
    exit_code      INTEGER,
    termination    TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_session ON skillsandbox.runs (session_id, epoch);
CREATE TABLE IF NOT EXISTS skillsandbox.violations (
    session_id TEXT NOT NULL REFERENCES skillsandbox.sessions(id),
    epoch      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (session_id, epoch, kind)
);
CREATE TABLE IF NOT EXISTS skillsandbox.costs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES skillsandbox.sessions(id),
    epoch         BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    model         TEXT,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    usd           DOUBLE PRECISION NOT NULL
);
";

/// Run leases (see `sql.rs`'s `SCHEMA_V2`).
const SCHEMA_V2: &str = "
ALTER TABLE skillsandbox.runs ADD COLUMN IF NOT EXISTS lease_until_ms BIGINT;
ALTER TABLE skillsandbox.runs ADD COLUMN IF NOT EXISTS lost_at_ms BIGINT;
";

/// Where and how to connect to PostgreSQL (opaque): the settings, and the TLS client when the URL asks
/// for TLS. Cloned into each kill watch.
#[derive(Clone)]
pub struct PgTarget {
    pub(crate) config: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PgTarget {
    // Not the config: it holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Parses a `postgres://` URL into connection settings, or refuses it.
///
/// TLS: `sslmode=require`, `verify-ca` or `verify-full` connect over TLS and
/// always verify the server's certificate and name — against `sslrootcert=FILE`
/// (PEM) when given, else the system's roots — so a TLS connection is never made
/// to an unverified server (stricter than libpq's `require`). Without them
/// (`disable`, `allow`, `prefer`, or no `sslmode`) the connection is plaintext:
/// `prefer` never silently downgrades, because it never upgrades either.
pub(crate) fn target(url: &str) -> Result<(PgTarget, String), StoreError> {
    let bad = |why: String| StoreError::InvalidPostgresUrl { why };
    let (rest, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut root, mut verify) = (None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslrootcert" => root = Some(std::path::PathBuf::from(percent_decoded(v))),
            "sslmode" if matches!(v, "verify-ca" | "verify-full") => {
                verify = true;
                kept.push("sslmode=require".to_owned());
            }
            "sslmode" if v == "allow" => kept.push("sslmode=disable".to_owned()),
            _ => kept.push(pair.to_owned()),
        }
    }
    let url = if kept.is_empty() {
        rest.to_owned()
    } else {
        format!("{rest}?{}", kept.join("&"))
    };
    let mut c = Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
    let label = redacted(&c);
    let tls = if verify || c.get_ssl_mode() == SslMode::Require {
        c.ssl_mode(SslMode::Require);
        Some(Arc::new(tls_client(root.as_deref(), &label)?))
    } else {
        if root.is_some() {
            return Err(bad(
                "sslrootcert is given but sslmode does not ask for TLS; add sslmode=verify-full"
                    .into(),
            ));
        }
        c.ssl_mode(SslMode::Disable);
        None
    };
    c.application_name("skillsandbox")
        .connect_timeout(Duration::from_secs(5))
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(15));
    Ok((PgTarget { config: c, tls }, label))
}

/// `%2F` → `/` and so on, for a path in a URL's query.
fn percent_decoded(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A rustls client trusting `root` (PEM certificates) or the system's roots.
fn tls_client(
    root: Option<&std::path::Path>,
    label: &str,
) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let tls_err = |why: String| StoreError::TlsSetup {
        store: label.to_owned(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read sslrootcert {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| tls_err(format!("sslrootcert {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root this build cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(tls_err(
            "no trusted root certificate to verify the server with".into(),
        ));
    }
    // ring, as the egress service uses; its default provider has no post-quantum
    // key exchange (hence the deprecation), which PostgreSQL servers lack anyway.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `postgres://USER@HOST:PORT/DB`, never the password.
pub(crate) fn redacted(c: &Config) -> String {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = c.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

pub(crate) fn connect(t: &PgTarget, label: &str) -> Result<Client, StoreError> {
    let connected = match &t.tls {
        Some(tls) => t
            .config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                rustls::ClientConfig::clone(tls),
            )),
        None => t.config.connect(NoTls),
    };
    connected.map_err(|e| {
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why.push_str(": ");
            why.push_str(&c.to_string());
            cause = c.source();
        }
        StoreError::PgConnect {
            store: label.to_owned(),
            why,
        }
    })
}

/// Idle connections a store keeps for reuse; more may be open at once while
/// that many threads use the store (`serve` runs in parallel), and the surplus is
/// closed when they are handed back.
pub(crate) const POOL_IDLE: usize = 4;

/// The store's connections: a small pool, so concurrent callers of one store
/// (the MCP server's runs) do not wait for each other's transactions. A broken
/// connection is dropped, never handed out again.
pub(crate) struct PgStore {
    config: PgTarget,
    pub(crate) label: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    // Not the config: it holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects and migrates the schema to the current version.
    pub(crate) fn open(url: &str) -> Result<PgStore, StoreError> {
        let (config, label) = target(url)?;
        let mut client = connect(&config, &label)?;
        migrate(&mut client).map_err(|source| StoreError::Query {
            store: label.clone(),
            what: "migrating the schema",
            source,
        })?;
        Ok(PgStore {
            config,
            label,
            idle: Mutex::new(vec![client]),
        })
    }

    pub(crate) fn target(&self) -> &PgTarget {
        &self.config
    }

    /// An open idle connection, or a new one.
    fn checkout(&self) -> Result<Client, StoreError> {
        let poisoned = || StoreError::Poisoned {
            store: self.label.clone(),
        };
        loop {
            let c = self.idle.lock().map_err(|_| poisoned())?.pop();
            match c {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => return connect(&self.config, &self.label),
            }
        }
    }

    /// Hands `c` back for reuse unless it broke or the pool is full.
    fn checkin(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL_IDLE {
                idle.push(c);
            }
        }
    }

    /// Runs `f` in one transaction on a pooled connection; retries it when the
    /// database reports a deadlock or serialization failure (nothing was committed
    /// then), on a fresh connection when the one in hand broke.
    pub(crate) fn with<T>(
        &self,
        what: &'static str,
        mut f: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let q = |source| StoreError::Query {
            store: self.label.clone(),
            what,
            source,
        };
        let mut tries = 0;
        loop {
            let mut client = self.checkout()?;
            let result = (|| {
                let mut tx = client.transaction()?;
                let out = f(&mut PgTx(&mut tx))?;
                tx.commit()?;
                Ok(out)
            })();
            self.checkin(client);
            match result {
                Ok(v) => return Ok(v),
                Err(DbError::Postgres(e)) if tries < 5 && retryable(&e) => tries += 1,
                Err(e) => return Err(q(e)),
            }
        }
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn migrate(client: &mut Client) -> Result<(), DbError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS skillsandbox;
         CREATE TABLE IF NOT EXISTS skillsandbox.schema_version (version BIGINT NOT NULL);",
    )?;
    let version: i64 = tx
        .query_opt("SELECT version FROM skillsandbox.schema_version", &[])?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    if version < 1 {
        tx.batch_execute(SCHEMA_V1)?;
    }
    if version < 2 {
        tx.batch_execute(SCHEMA_V2)?;
    }
    if version == 0 {
        tx.execute(
            "INSERT INTO skillsandbox.schema_version (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )?;
    } else if version < SCHEMA_VERSION {
        tx.execute(
            "UPDATE skillsandbox.schema_version SET version = $1",
            &[&SCHEMA_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn session_row(
    c: &mut impl postgres::GenericClient,
    id: &str,
) -> Result<Option<SessionRow>, DbError> {
    let row = c.query_opt(
        "SELECT id, state, created_at_ms, opened_at_ms, epoch, kill_count, killed_at_ms, kill_reason
         FROM skillsandbox.sessions WHERE id = $1",
        &[&id],
    )?;
    row.map(|r| -> Result<SessionRow, DbError> {
        let state: String = r.try_get(1)?;
        Ok(SessionRow {
            id: r.try_get(0)?,
            state: SessionState::from_column(&state),
            created_at_ms: r.try_get(2)?,
            opened_at_ms: r.try_get(3)?,
            epoch: r.try_get(4)?,
            kill_count: r.try_get(5)?,
            killed_at_ms: r.try_get(6)?,
            kill_reason: r.try_get(7)?,
        })
    })
    .transpose()
}

/// [`Tx`] over a PostgreSQL transaction (READ COMMITTED: after the row lock, each
/// statement sees everything the previous holder committed).
pub(crate) struct PgTx<'a, 'b>(pub(crate) &'a mut postgres::Transaction<'b>);

impl Tx for PgTx<'_, '_> {
    fn ensure_session(&mut self, id: &str, now: i64) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO skillsandbox.sessions (id, state, created_at_ms, opened_at_ms, epoch)
             VALUES ($1, 'open', $2, $2, 0) ON CONFLICT (id) DO NOTHING",
            &[&id, &now],
        )?;
        Ok(())
    }

    fn lock_session(&mut self, id: &str) -> Result<(), DbError> {
        self.0.query(
            "SELECT 1 FROM skillsandbox.sessions WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        Ok(())
    }

    fn session_row(&mut self, id: &str) -> Result<Option<SessionRow>, DbError> {
        session_row(self.0, id)
    }

    fn totals(&mut self, id: &str, epoch: i64) -> Result<Totals, DbError> {
        let r = self.0.query_one(
            "SELECT COUNT(*), COUNT(finished_at_ms), COALESCE(SUM(cpu_ms), 0)::BIGINT,
                    COALESCE(SUM(wall_ms), 0)::BIGINT, COALESCE(SUM(egress_bytes), 0)::BIGINT,
                    COUNT(*) FILTER (WHERE finished_at_ms IS NULL AND lost_at_ms IS NOT NULL)
             FROM skillsandbox.runs WHERE session_id = $1 AND epoch = $2",
            &[&id, &epoch],
        )?;
        let cost: f64 = self
            .0
            .query_one(
                "SELECT COALESCE(SUM(usd), 0.0)::DOUBLE PRECISION FROM skillsandbox.costs
                 WHERE session_id = $1 AND epoch = $2",
                &[&id, &epoch],
            )?
            .try_get(0)?;
        let mut violations = BTreeMap::new();
        for v in self.0.query(
            "SELECT kind, count FROM skillsandbox.violations WHERE session_id = $1 AND epoch = $2",
            &[&id, &epoch],
        )? {
            violations.insert(v.try_get::<_, String>(0)?, to_u64(v.try_get(1)?));
        }
        Ok(Totals {
            runs_started: to_u64(r.try_get(0)?),
            runs_finished: to_u64(r.try_get(1)?),
            cpu_ms: to_u64(r.try_get(2)?),
            wall_ms: to_u64(r.try_get(3)?),
            egress_bytes: to_u64(r.try_get(4)?),
            runs_lost: to_u64(r.try_get(5)?),
            cost_usd: cost,
            violations,
        })
    }

    fn kill(&mut self, id: &str, reason: &str, now: i64) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE skillsandbox.sessions SET state = 'killed', killed_at_ms = $2,
                    kill_reason = $3, kill_count = kill_count + 1
             WHERE id = $1 AND state = 'open'",
            &[&id, &now, &reason],
        )?;
        if n == 1 {
            self.0
                .execute("SELECT pg_notify($1, $2)", &[&KILL_CHANNEL, &id])?;
        }
        Ok(n == 1)
    }

    fn insert_run(&mut self, id: &str, epoch: i64, now: i64, lease: i64) -> Result<i64, DbError> {
        Ok(self
            .0
            .query_one(
                "INSERT INTO skillsandbox.runs (session_id, epoch, started_at_ms, lease_until_ms)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&id, &epoch, &now, &lease],
            )?
            .try_get(0)?)
    }

    fn renew_lease(&mut self, run_id: i64, until: i64) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE skillsandbox.runs SET lease_until_ms = $2, lost_at_ms = NULL
             WHERE id = $1 AND finished_at_ms IS NULL",
            &[&run_id, &until],
        )?;
        Ok(n == 1)
    }

    fn expire_leases(&mut self, id: &str, now: i64) -> Result<u64, DbError> {
        let n = self.0.execute(
            "UPDATE skillsandbox.runs SET lost_at_ms = $2
             WHERE session_id = $1 AND finished_at_ms IS NULL AND lost_at_ms IS NULL
               AND lease_until_ms < $2",
            &[&id, &now],
        )?;
        Ok(n)
    }

    fn set_policy(&mut self, id: &str, policy_json: &str) -> Result<(), DbError> {
        self.0.execute(
            "UPDATE skillsandbox.sessions SET policy_json = $2 WHERE id = $1",
            &[&id, &policy_json],
        )?;
        Ok(())
    }

    fn finish_run(&mut self, run_id: i64, now: i64, u: &RunUsage) -> Result<bool, DbError> {
        let n = self.0.execute(
            "UPDATE skillsandbox.runs SET finished_at_ms = $2, trace_id = $3, cpu_ms = $4,
                    wall_ms = $5, egress_bytes = $6, exit_code = $7, termination = $8
             WHERE id = $1 AND finished_at_ms IS NULL",
            &[
                &run_id,
                &now,
                &u.trace_id,
                &to_i64(u.cpu_ms),
                &to_i64(u.wall_ms),
                &to_i64(u.egress_bytes),
                &u.exit_code,
                &u.termination,
            ],
        )?;
        Ok(n == 1)
    }

    fn add_violations(&mut self, id: &str, epoch: i64, kind: &str, n: i64) -> Result<(), DbError> {
        self.0.execute(
            "INSERT INTO skillsandbox.violations AS v (session_id, epoch, kind, count)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (session_id, epoch, kind) DO UPDATE SET count = v.count + excluded.count",
            &[&id, &epoch, &kind, &n],
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
            "INSERT INTO skillsandbox.costs
                 (session_id, epoch, at_ms, model, input_tokens, output_tokens, usd)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &epoch,
                &now,
                &e.model,
                &e.input_tokens.map(to_i64),
                &e.output_tokens.map(to_i64),
                &e.usd,
            ],
        )?;
        Ok(())
    }

    fn reset(&mut self, id: &str, now: i64) -> Result<(), DbError> {
        self.0.execute(
            "UPDATE skillsandbox.sessions SET state = 'open', killed_at_ms = NULL,
                    kill_reason = NULL, epoch = epoch + 1, opened_at_ms = $2
             WHERE id = $1",
            &[&id, &now],
        )?;
        Ok(())
    }

    fn session_ids(&mut self) -> Result<Vec<String>, DbError> {
        Ok(self
            .0
            .query(
                "SELECT id FROM skillsandbox.sessions ORDER BY created_at_ms, id",
                &[],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }
}
