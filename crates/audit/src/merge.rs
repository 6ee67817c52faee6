//! Merging the audit logs of many hosts: each host keeps its own hash chain (one
//! writer per log, so no chain spans hosts); [`merge`] verifies every chain on its
//! own and interleaves the records that verified by time, so one session's story
//! across hosts reads in order.
//!
//! Read-only, like `verify.rs`. A broken chain is reported with its log, record and
//! line, and contributes only its records before the first bad one: a tampered
//! record is never shown as if it were trustworthy.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::AuditError;
use crate::log::{parse_and_check_line, AuditRecord};
use crate::verify::{verify_with, VerifyOptions, VerifyReport};

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
        let report = verify_with(path, opts)?;
        for record in read_records(path, report.records)? {
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

/// The first `n` records of the log (those [`verify_with`] found good).
fn read_records(path: &Path, n: u64) -> Result<Vec<AuditRecord>, AuditError> {
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    let file = File::open(path).map_err(|cause| AuditError::OpenLog {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    while (out.len() as u64) < n {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|cause| AuditError::ReadLog {
                path: path.to_path_buf(),
                cause,
            })?;
        if read == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        // Verified a moment ago; a line that no longer parses was changed since:
        // stop there rather than show it.
        match parse_and_check_line(text) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// A record's time as nanoseconds since the epoch; an unparsable time sorts first.
fn instant(t: &str) -> i128 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp_nanos())
        .unwrap_or(i128::MIN)
}
