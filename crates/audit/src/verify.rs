//! Checking the audit log: the hash chain line by line, then the end of the log
//! against its head file and an optional anchor; and reading recent records.
//!
//! Read-only: never repairs, rewrites or locks the log. Names the first bad
//! record. Limits (what a chain alone cannot show) are in `docs/audit.md`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::AuditError;
use crate::log::{
    head_path_for, parse_and_check_line, read_head, read_last_lines, short, AuditRecord, LogHead,
    GENESIS_HASH,
};

/// What to check besides the chain itself.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check the end of the log against `<log>.head` (default true). Without it a
    /// cleanly removed tail cannot be detected.
    pub check_head: bool,
    /// A record hash noted earlier (e.g. from `audit tail`): the chain must still
    /// contain it. Detects a log cut or rewritten before that record even when
    /// the head file was cut or rewritten along with it.
    pub anchor: Option<String>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            check_head: true,
            anchor: None,
        }
    }
}

/// The first record that fails. `line` is 1-based; `seq` is the sequence number
/// the record at that position should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    pub line: u64,
    pub seq: u64,
    pub reason: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub log: PathBuf,
    /// Records that verified before the first bad one (all of them when `ok`).
    pub records: u64,
    pub ok: bool,
    pub first_bad: Option<BadRecord>,
    /// Hash of the last good record: note it to use as an anchor later.
    pub last_hash: Option<String>,
    /// The head file as read, when it was checked and exists.
    pub head: Option<LogHead>,
}

/// Verifies the log at `path` with the default options (chain + head file).
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    verify_with(path, &VerifyOptions::default())
}

struct Chain {
    records: u64,
    last_hash: Option<String>,
    /// Hash of the record with the head file's seq, when seen.
    head_seq_hash: Option<String>,
    anchor_found: bool,
}

/// Verifies the log at `path`: every line is a record whose content matches its
/// hash, whose `seq` is one more than the previous one (starting at 1) and whose
/// `prev_hash` is the previous record's hash (genesis: 64 zeros); the last line is
/// complete. When checked, the head file must name a record of this chain (same
/// seq, same hash); a head beyond the end means the tail was removed. The log may
/// run past the head (a crash between the log's fsync and the head update). An
/// anchor, when given, must be the hash of some record.
pub fn verify_with(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    verify_collecting(path, opts, None)
}

/// [`verify_with`], also handing every record that verified (in order) to `good`
/// as the chain is read: one pass over the file (`audit merge`).
pub(crate) fn verify_collecting(
    path: &Path,
    opts: &VerifyOptions,
    good: Option<&mut Vec<AuditRecord>>,
) -> Result<VerifyReport, AuditError> {
    let head_path = head_path_for(path);
    let head = if opts.check_head {
        read_head(&head_path)?
    } else {
        None
    };
    let anchor = opts.anchor.as_ref().map(|a| a.trim().to_ascii_lowercase());
    let mut report = VerifyReport {
        log: path.to_path_buf(),
        records: 0,
        ok: false,
        first_bad: None,
        last_hash: None,
        head: head.clone(),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && head.is_some() => {
            let h = head.as_ref().map_or(0, |h| h.seq);
            report.first_bad = Some(BadRecord {
                line: 1,
                seq: 1,
                reason: format!(
                    "missing: the log file is gone but its head file {} says it held {h} records",
                    head_path.display()
                ),
            });
            return Ok(report);
        }
        Err(cause) => {
            return Err(AuditError::OpenLog {
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    let chain = match check_chain(path, file, head.as_ref(), anchor.as_deref(), good)? {
        Ok(chain) => chain,
        Err((bad, records, last_hash)) => {
            report.records = records;
            report.last_hash = last_hash;
            report.first_bad = Some(bad);
            return Ok(report);
        }
    };
    report.records = chain.records;
    report.last_hash = chain.last_hash.clone();
    let n = chain.records;
    let next = |reason: String| BadRecord {
        line: n + 1,
        seq: n + 1,
        reason,
    };
    if opts.check_head {
        report.first_bad = match &head {
            None if n > 0 => Some(next(format!(
                "cannot rule out that records from here on were removed: the head file {} is missing (pass --no-head-check to check the chain alone)",
                head_path.display()
            ))),
            None => None,
            Some(h) if h.seq > n => Some(next(format!(
                "missing: the head file says the log ends at record {} ({}), but it ends at record {n}; the tail was removed",
                h.seq,
                short(&h.hash)
            ))),
            Some(h) if chain.head_seq_hash.as_deref() != Some(h.hash.as_str()) => {
                Some(BadRecord {
                    line: h.seq,
                    seq: h.seq,
                    reason: format!(
                        "hash differs from the one the head file recorded ({}): the log was rewritten from this record or earlier",
                        short(&h.hash)
                    ),
                })
            }
            Some(_) => None,
        };
    }
    if report.first_bad.is_none() {
        if let Some(a) = &anchor {
            if !chain.anchor_found {
                report.first_bad = Some(next(format!(
                    "no record has the anchor hash {}: the log was cut before it or rewritten",
                    short(a)
                )));
            }
        }
    }
    report.ok = report.first_bad.is_none();
    Ok(report)
}

type ChainResult = Result<Chain, (BadRecord, u64, Option<String>)>;

fn check_chain(
    path: &Path,
    file: File,
    head: Option<&LogHead>,
    anchor: Option<&str>,
    mut good: Option<&mut Vec<AuditRecord>>,
) -> Result<ChainResult, AuditError> {
    let mut reader = BufReader::new(file);
    let mut chain = Chain {
        records: 0,
        last_hash: None,
        head_seq_hash: None,
        anchor_found: false,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|cause| AuditError::ReadLog {
                path: path.to_path_buf(),
                cause,
            })?;
        if read == 0 {
            return Ok(Ok(chain));
        }
        let expected = chain.records + 1;
        let prev = chain.last_hash.as_deref().unwrap_or(GENESIS_HASH);
        let bad = |reason: String| BadRecord {
            line: expected,
            seq: expected,
            reason,
        };
        let Some(content) = line.strip_suffix(b"\n") else {
            let reason = "incomplete last line (no newline at the end): the log was cut mid-record";
            return Ok(Err((
                bad(reason.to_owned()),
                chain.records,
                chain.last_hash,
            )));
        };
        let verdict = if content.is_empty() {
            Err("empty line".to_owned())
        } else {
            parse_and_check_line(content).and_then(|r| check_link(&r, expected, prev).map(|()| r))
        };
        let record = match verdict {
            Ok(r) => r,
            Err(reason) => return Ok(Err((bad(reason), chain.records, chain.last_hash))),
        };
        if head.is_some_and(|h| h.seq == record.seq) {
            chain.head_seq_hash = Some(record.hash.clone());
        }
        if anchor == Some(record.hash.as_str()) {
            chain.anchor_found = true;
        }
        chain.records = expected;
        chain.last_hash = Some(record.hash.clone());
        if let Some(g) = good.as_deref_mut() {
            g.push(record);
        }
    }
}

fn check_link(record: &AuditRecord, expected: u64, prev: &str) -> Result<(), String> {
    if record.seq > expected {
        return Err(format!(
            "seq is {}, expected {expected}: records were removed or reordered before this line",
            record.seq
        ));
    }
    if record.seq < expected {
        return Err(format!(
            "seq is {}, expected {expected}: records were reordered or duplicated",
            record.seq
        ));
    }
    if record.prev_hash != prev {
        let what = if expected == 1 {
            "the genesis value (64 zeros): records were removed from the start".to_owned()
        } else {
            format!(
                "the hash of record {} ({}): that record was replaced, or records were removed or reordered",
                expected - 1,
                short(prev)
            )
        };
        return Err(format!("prev_hash does not match {what}"));
    }
    Ok(())
}

/// The last `n` records of the log at `path`, oldest first, read from the end of
/// the file. A damaged line among them is an error (run [`verify`] to locate it).
pub fn tail(path: &Path, n: usize) -> Result<Vec<AuditRecord>, AuditError> {
    let file = File::open(path).map_err(|cause| AuditError::OpenLog {
        path: path.to_path_buf(),
        cause,
    })?;
    let read_err = |cause| AuditError::ReadLog {
        path: path.to_path_buf(),
        cause,
    };
    let len = file.metadata().map_err(read_err)?.len();
    let lines = read_last_lines(&file, len, n).map_err(read_err)?;
    lines
        .iter()
        .map(|l| {
            serde_json::from_slice::<AuditRecord>(l).map_err(|e| AuditError::ParseRecord {
                path: path.to_path_buf(),
                reason: format!("a line near the end is not a valid record: {e}"),
            })
        })
        .collect()
}
