//! [`KillWatch`]: how a running sandbox learns, within its poll interval, that its
//! session was killed by any process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::sql::{connect, session_row};
use crate::store::{SessionState, StoreError};

/// A cheap, separate connection for polling one session's kill state while its
/// runs are alive (a kill from any process shows up here).
#[derive(Debug)]
pub struct KillWatch {
    path: PathBuf,
    conn: Connection,
    id: String,
    baseline: Option<i64>,
}

impl KillWatch {
    /// Watches session `id`; a kill after `baseline` kills (or any kill state) stops.
    pub fn open(path: &Path, id: &str, baseline: Option<i64>) -> Result<KillWatch, StoreError> {
        // Readers never wait on writers under WAL; keep any rare wait short so the
        // poll loop it runs in stays responsive.
        let conn = connect(path, Duration::from_millis(50))?;
        Ok(KillWatch {
            path: path.to_owned(),
            conn,
            id: id.to_owned(),
            baseline,
        })
    }

    /// `Some(reason)` when the session is killed, or was killed after the baseline.
    pub fn killed(&self) -> Result<Option<String>, StoreError> {
        let row = session_row(&self.conn, &self.id).map_err(|source| StoreError::Query {
            path: self.path.clone(),
            what: "polling the session state",
            source,
        })?;
        let Some(row) = row else { return Ok(None) };
        let killed_since = self.baseline.is_some_and(|b| row.kill_count > b);
        if row.state == SessionState::Killed || killed_since {
            Ok(Some(
                row.kill_reason
                    .unwrap_or_else(|| "session killed (reset since)".into()),
            ))
        } else {
            Ok(None)
        }
    }
}
