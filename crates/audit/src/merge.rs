//! Merging the audit logs of many hosts: each host keeps its own hash chain (one
//! writer per log, so no chain spans hosts); [`merge`] verifies every chain on its
//! own and interleaves the records that verified by time, so one session's story
//! across hosts reads in order.
//!
//! Read-only, like `verify.rs`, in one pass per log (the verifier hands over the
//! records it checked). A broken chain is reported with its log, record and
//! line, and contributes only its records before the first bad one: a tampered
//! record is never shown as if it were trustworthy.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::AuditError;
use crate::log::AuditRecord;
use crate::verify::{verify_collecting, VerifyOptions, VerifyReport};

/// One record of the merged stream and the log it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedRecord {
    /// Index of the log in the order given (0-based).
    pub log_index: usize,
    pub log: PathBuf,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// The outcome of [`merge`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeReport {
    /// Every log's own verification, in the order given.
    pub logs: Vec<VerifyReport>,
    /// Whether every chain verified.
    pub ok: bool,
    /// The verified records of all logs, oldest first (ties: log order, then seq).
    pub records: Vec<MergedRecord>,
}

/// Verifies each log in `paths` with `opts` and interleaves their verified
/// records by time. A log that cannot be opened is an error; a log that fails
/// verification is reported in [`MergeReport::logs`] and `ok` is false.
pub fn merge(paths: &[PathBuf], opts: &VerifyOptions) -> Result<MergeReport, AuditError> {
    let mut logs = Vec::with_capacity(paths.len());
    let mut records = Vec::new();
    for (log_index, path) in paths.iter().enumerate() {
        let mut good = Vec::new();
        let report = verify_collecting(path, opts, Some(&mut good))?;
        for record in good {
            records.push(MergedRecord {
                log_index,
                log: path.clone(),
                record,
            });
        }
        logs.push(report);
    }
    records.sort_by(|a, b| {
        instant(&a.record.time)
            .cmp(&instant(&b.record.time))
            .then(a.log_index.cmp(&b.log_index))
            .then(a.record.seq.cmp(&b.record.seq))
    });
    Ok(MergeReport {
        ok: logs.iter().all(|r| r.ok),
        logs,
        records,
    })
}

/// A record's time as nanoseconds since the epoch; an unparsable time sorts first.
fn instant(t: &str) -> i128 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp_nanos())
        .unwrap_or(i128::MIN)
}
