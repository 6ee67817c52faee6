//! [`KillWatch`]: how a running sandbox learns that its session was killed by any
//! process (SQLite: within its poll interval) or any host (PostgreSQL: at once, by
//! `LISTEN skillsandbox_kill`, with a poll every [`PG_FALLBACK_POLL`] in case a
//! notice is lost).
//!
//! [`KillWatch::killed`] never blocks on the network: a PostgreSQL watch has its own
//! thread and connection, and `killed` only reads what that thread last learned.
//! When the thread has not reached the database for a while, `killed` is an error,
//! and the caller's fail-closed rule applies.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use rusqlite::Connection;

use crate::pg::{self, KILL_CHANNEL};
use crate::sql::{connect, session_row};
use crate::store::{SessionRow, SessionState, StoreError};

/// How often a PostgreSQL watch reads the session even without a notice.
pub const PG_FALLBACK_POLL: Duration = Duration::from_secs(1);

/// A PostgreSQL watch that has not heard from the database for its poll interval
/// and this much more reports an error (a healthy one hears once per poll).
const PG_SILENCE_MARGIN: Duration = Duration::from_secs(4);

/// Where a [`KillWatch`] reads from: [`crate::Store::watch_target`].
#[derive(Debug, Clone)]
pub enum WatchTarget {
    Sqlite(PathBuf),
    Postgres {
        target: Box<pg::PgTarget>,
        label: String,
        /// The fallback poll ([`PG_FALLBACK_POLL`] unless set by [`Self::with_poll`]).
        poll: Duration,
    },
}

impl WatchTarget {
    /// Watches session `id`; a kill after `baseline` kills (or any kill state) stops.
    pub fn open(&self, id: &str, baseline: Option<i64>) -> Result<KillWatch, StoreError> {
        match self {
            WatchTarget::Sqlite(path) => KillWatch::open(path, id, baseline),
            WatchTarget::Postgres {
                target,
                label,
                poll,
            } => Ok(KillWatch {
                inner: Inner::Postgres(PgWatch::start(target, label, *poll, id, baseline)),
                id: id.to_owned(),
                baseline,
            }),
        }
    }

    /// A PostgreSQL watch that re-reads the session every `poll` without a notice
    /// (a SQLite watch is read by its caller's loop: unchanged).
    pub fn with_poll(mut self, d: Duration) -> WatchTarget {
        if let WatchTarget::Postgres { poll, .. } = &mut self {
            *poll = d;
        }
        self
    }
}

/// A watch on one session's kill state while its runs are alive.
#[derive(Debug)]
pub struct KillWatch {
    inner: Inner,
    id: String,
    baseline: Option<i64>,
}

#[derive(Debug)]
enum Inner {
    Sqlite { path: PathBuf, conn: Connection },
    Postgres(PgWatch),
}

impl KillWatch {
    /// Watches session `id` in the SQLite store at `path`.
    pub fn open(path: &Path, id: &str, baseline: Option<i64>) -> Result<KillWatch, StoreError> {
        // Readers never wait on writers under WAL; keep any rare wait short so the
        // poll loop it runs in stays responsive.
        let conn = connect(path, Duration::from_millis(50))?;
        Ok(KillWatch {
            inner: Inner::Sqlite {
                path: path.to_owned(),
                conn,
            },
            id: id.to_owned(),
            baseline,
        })
    }

    /// `Some(reason)` when the session is killed, or was killed after the baseline.
    pub fn killed(&self) -> Result<Option<String>, StoreError> {
        match &self.inner {
            Inner::Sqlite { path, conn } => {
                let row = session_row(conn, &self.id).map_err(|source| StoreError::Query {
                    store: path.display().to_string(),
                    what: "polling the session state",
                    source: source.into(),
                })?;
                Ok(row.and_then(|r| verdict(r, self.baseline)))
            }
            Inner::Postgres(w) => w.killed(),
        }
    }
}

fn verdict(row: SessionRow, baseline: Option<i64>) -> Option<String> {
    let killed_since = baseline.is_some_and(|b| row.kill_count > b);
    (row.state == SessionState::Killed || killed_since).then(|| {
        row.kill_reason
            .unwrap_or_else(|| "session killed (reset since)".into())
    })
}

/// What the watch thread last learned.
#[derive(Debug)]
struct Seen {
    killed: Option<String>,
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct PgWatch {
    label: String,
    silence_limit: Duration,
    started: Instant,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl PgWatch {
    fn start(
        config: &pg::PgTarget,
        label: &str,
        poll: Duration,
        id: &str,
        baseline: Option<i64>,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen {
            killed: None,
            last_ok: None,
            last_error: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (config, label2, id) = (config.clone(), label.to_owned(), id.to_owned());
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("kill-listen".into())
            .spawn(move || listen(&config, &label2, poll, &id, baseline, &seen2, &stop2));
        if let Err(e) = spawned {
            if let Ok(mut s) = seen.lock() {
                s.last_error = Some(format!("no thread for the kill watch: {e}"));
            }
        }
        PgWatch {
            label: label.to_owned(),
            silence_limit: poll + PG_SILENCE_MARGIN,
            started: Instant::now(),
            seen,
            stop,
        }
    }

    fn killed(&self) -> Result<Option<String>, StoreError> {
        let seen = self.seen.lock().map_err(|_| StoreError::Poisoned {
            store: self.label.clone(),
        })?;
        if seen.killed.is_some() {
            return Ok(seen.killed.clone());
        }
        let heard = seen.last_ok.unwrap_or(self.started);
        if heard.elapsed() < self.silence_limit {
            return Ok(None);
        }
        Err(StoreError::WatchSilent {
            store: self.label.clone(),
            secs: heard.elapsed().as_secs(),
            why: seen
                .last_error
                .clone()
                .unwrap_or_else(|| "no answer".into()),
        })
    }
}

impl Drop for PgWatch {
    fn drop(&mut self) {
        // The thread sees it within one poll and closes its connection.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The watch thread: connect, `LISTEN`, read the session; then read it again on
/// every notice for it and every `poll`; reconnect after errors.
fn listen(
    config: &pg::PgTarget,
    label: &str,
    poll: Duration,
    id: &str,
    baseline: Option<i64>,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) {
    let record = |r: Result<Option<SessionRow>, String>| {
        let Ok(mut s) = seen.lock() else { return true };
        match r {
            Ok(row) => {
                s.last_ok = Some(Instant::now());
                s.killed = row.and_then(|r| verdict(r, baseline));
            }
            Err(e) => s.last_error = Some(e),
        }
        s.killed.is_some()
    };
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !std::mem::take(&mut first) {
            // Reconnecting after an error: never a tight loop against the server.
            std::thread::sleep(Duration::from_millis(200));
        }
        let listening = pg::connect(config, label)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {KILL_CHANNEL}"))
                    .map_err(|e| e.to_string())?;
                Ok(c)
            });
        let mut client = match listening {
            Ok(c) => c,
            Err(e) => {
                record(Err(e));
                continue;
            }
        };
        loop {
            // After LISTEN, so a kill committed meanwhile is either read here or noticed.
            let read = pg::session_row(&mut client, id).map_err(|e| e.to_string());
            let failed = read.is_err();
            if record(read) {
                return;
            }
            if failed || stop.load(Ordering::Relaxed) {
                break;
            }
            let mut notes = client.notifications();
            let mut it = notes.timeout_iter(poll);
            // Wait for a notice for this session, or the fallback poll.
            // (Other sessions' notices reset its timer: keep our own deadline.)
            let deadline = Instant::now() + poll;
            let mut broken = false;
            loop {
                match it.next() {
                    Ok(Some(n)) if n.payload() == id => break,
                    Ok(Some(_)) if Instant::now() < deadline => continue,
                    Ok(Some(_)) => break,
                    Ok(None) => break,
                    Err(e) => {
                        record(Err(e.to_string()));
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
        }
    }
}
