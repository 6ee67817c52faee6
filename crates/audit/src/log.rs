//! The append-only, hash-chained audit log (JSONL): one record per run and per
//! session event, each carrying the SHA-256 of the previous record and its own.
//!
//! Writers serialize on an exclusive `flock` of the log file; each record is one
//! line written at the end, fsynced before `append` returns, and the side file
//! `<log>.head` (last seq + hash) is replaced under the same lock. The exact bytes
//! that are hashed are described in `docs/audit.md` and [`encode_record`].
//! This module never rewrites or removes a record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AuditError;
use crate::event::{now, Timestamp};
use crate::fsutil;
use crate::sys;
use crate::trace::{default_state_dir, trace_sha256, Trace};

/// `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Environment variable that overrides the default log location.
pub const AUDIT_LOG_ENV: &str = "SKILLSANDBOX_AUDIT_LOG";

/// Every line ends with exactly this member followed by 64 hex digits and `"}`.
pub(crate) const HASH_MEMBER: &[u8] = b",\"hash\":\"";
/// Length of `,"hash":"<64 hex>"}`.
pub(crate) const HASH_SUFFIX_LEN: usize = HASH_MEMBER.len() + 64 + 2;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1 for the first record, then +1 per record, no gaps.
    pub seq: u64,
    pub time: Timestamp,
    /// `run` or `session`.
    pub kind: String,
    pub body: serde_json::Value,
    /// `hash` of the previous record; [`GENESIS_HASH`] for the first.
    pub prev_hash: String,
    /// SHA-256 (lowercase hex) of this line without its `hash` member.
    pub hash: String,
}

/// The record without `hash`, in the order the line is written.
#[derive(Serialize)]
struct UnhashedRecord<'a> {
    seq: u64,
    time: &'a str,
    kind: &'a str,
    body: &'a serde_json::Value,
    prev_hash: &'a str,
}

/// Contents of `<log>.head`: where the log ended after the last append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    pub seq: u64,
    pub hash: String,
}

/// The log at `path`. Cheap to clone; every append opens its own descriptor so
/// threads and processes exclude each other through the file lock.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// `$SKILLSANDBOX_AUDIT_LOG` when set and non-empty, else `<state dir>/audit.jsonl`.
pub fn default_audit_log_path() -> PathBuf {
    match std::env::var_os(AUDIT_LOG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_state_dir().join("audit.jsonl"),
    }
}

/// The head file that anchors the end of the log at `log`: `<log>.head`.
pub fn head_path_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(".head");
    PathBuf::from(name)
}

/// Serializes a record: returns the full line (with `\n`) and its hash.
///
/// The hashed bytes are the compact JSON object
/// `{"seq":..,"time":..,"kind":..,"body":..,"prev_hash":..}` exactly as written;
/// the line is those bytes with the closing `}` replaced by `,"hash":"<hex>"}`.
/// So a verifier recovers the hashed bytes from a line (without its `\n`) by
/// dropping its last [`HASH_SUFFIX_LEN`] (75) bytes and appending `}`.
pub fn encode_record(
    seq: u64,
    time: &str,
    kind: &str,
    body: &serde_json::Value,
    prev_hash: &str,
) -> Result<(Vec<u8>, String), AuditError> {
    let unhashed = UnhashedRecord {
        seq,
        time,
        kind,
        body,
        prev_hash,
    };
    let mut bytes =
        serde_json::to_vec(&unhashed).map_err(|cause| AuditError::SerializeRecord { cause })?;
    let hash = hex::encode(Sha256::digest(&bytes));
    // `to_vec` of a struct always ends with the object's closing brace.
    bytes.pop();
    bytes.extend_from_slice(HASH_MEMBER);
    bytes.extend_from_slice(hash.as_bytes());
    bytes.extend_from_slice(b"\"}\n");
    Ok((bytes, hash))
}

/// Splits one line (without `\n`) into the bytes its hash covers and the hash it
/// claims. `Err` says why the line does not have the shape every record has.
pub(crate) fn split_line(line: &[u8]) -> Result<(Vec<u8>, &str), String> {
    if line.len() < HASH_SUFFIX_LEN + 2 {
        return Err("too short to be a record".to_owned());
    }
    let (head, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hex = &suffix[HASH_MEMBER.len()..HASH_MEMBER.len() + 64];
    let well_formed = suffix.starts_with(HASH_MEMBER)
        && suffix.ends_with(b"\"}")
        && hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !well_formed {
        return Err("does not end with a \"hash\" member of 64 lowercase hex digits".to_owned());
    }
    let mut hashed = head.to_vec();
    hashed.push(b'}');
    // The bytes were just checked to be ASCII hex digits.
    let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
    Ok((hashed, hex))
}

/// Parses one line and checks that its content matches its own hash.
pub(crate) fn parse_and_check_line(line: &[u8]) -> Result<AuditRecord, String> {
    let (hashed, claimed) = split_line(line)?;
    let record: AuditRecord =
        serde_json::from_slice(line).map_err(|e| format!("not a valid audit record: {e}"))?;
    if record.hash != claimed {
        return Err("malformed: more than one \"hash\" member".to_owned());
    }
    if hex::encode(Sha256::digest(&hashed)) != claimed {
        return Err("content does not match its hash: the record was edited".to_owned());
    }
    Ok(record)
}

/// Reads up to the last `n` lines of `file` (of length `len`) without reading the
/// whole file: chunks from the end until `n` line breaks are seen. Lines come
/// without their `\n`, oldest first; an unterminated last line is included.
pub(crate) fn read_last_lines(file: &File, len: u64, n: usize) -> std::io::Result<Vec<Vec<u8>>> {
    const CHUNK: u64 = 16 * 1024;
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let step = CHUNK.min(pos);
        pos -= step;
        // `step` is at most CHUNK, which fits in usize.
        let mut chunk = vec![0u8; step as usize];
        file.read_exact_at(&mut chunk, pos)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        let content = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let breaks = content.iter().filter(|&&b| b == b'\n').count();
        if breaks >= n || pos == 0 {
            let mut lines: Vec<Vec<u8>> =
                content.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let keep = lines.len().min(n);
            return Ok(lines.split_off(lines.len() - keep));
        }
    }
}

impl AuditLog {
    /// The log at `path`; creates its directory (0700) and the file (0600) when
    /// missing, so a fresh log verifies as empty.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let path = path.into();
        fsutil::create_private_dir_all(&fsutil::parent_dir(&path))?;
        open_for_append(&path)?;
        Ok(Self { path })
    }

    /// The log at [`default_audit_log_path`].
    pub fn open_default() -> Result<Self, AuditError> {
        Self::open(default_audit_log_path())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record of `kind` with `body` and returns it once it is on disk.
    ///
    /// Under an exclusive `flock`: reads the last record from the tail of the file
    /// and checks it against the head file (refusing to extend a damaged or cut
    /// chain), writes the whole line at the end, fdatasyncs, and replaces the head
    /// file. A failed write is truncated away so no partial line stays behind.
    pub fn append(&self, kind: &str, body: serde_json::Value) -> Result<AuditRecord, AuditError> {
        let file = open_for_append(&self.path)?;
        let _lock = sys::lock_exclusive(&file).map_err(|cause| AuditError::LockLog {
            path: self.path.clone(),
            cause,
        })?;
        let read_err = |cause| AuditError::ReadLog {
            path: self.path.clone(),
            cause,
        };
        let len = file.metadata().map_err(read_err)?.len();
        let last = self.last_record(&file, len)?;
        self.check_head(last.as_ref())?;

        let (seq, prev_hash) = match &last {
            Some(r) => (r.seq + 1, r.hash.clone()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let time = now();
        let (line, hash) = encode_record(seq, &time, kind, &body, &prev_hash)?;
        if let Err(cause) = (&file).write_all(&line) {
            // Leave the log exactly as it was; the lock keeps others out meanwhile.
            let _ = file.set_len(len);
            return Err(AuditError::WriteLog {
                path: self.path.clone(),
                cause,
            });
        }
        file.sync_data().map_err(|cause| AuditError::SyncLog {
            path: self.path.clone(),
            cause,
        })?;
        if len == 0 {
            fsutil::sync_dir(&fsutil::parent_dir(&self.path))?;
        }
        let head = serde_json::to_vec(&LogHead {
            seq,
            hash: hash.clone(),
        })
        .map_err(|cause| AuditError::SerializeRecord { cause })?;
        fsutil::write_file_atomic(&head_path_for(&self.path), &head, true)?;
        Ok(AuditRecord {
            seq,
            time,
            kind: kind.to_owned(),
            body,
            prev_hash,
            hash,
        })
    }

    /// Appends a `run` record for a trace already written to `trace_path`.
    pub fn record_run(&self, trace: &Trace, trace_path: &Path) -> Result<AuditRecord, AuditError> {
        self.append("run", run_record_body(trace, trace_path))
    }

    fn last_record(&self, file: &File, len: u64) -> Result<Option<AuditRecord>, AuditError> {
        let damaged = |reason: String| AuditError::LogTailDamaged {
            path: self.path.clone(),
            reason,
        };
        let lines = read_last_lines(file, len, 1).map_err(|cause| AuditError::ReadLog {
            path: self.path.clone(),
            cause,
        })?;
        let Some(line) = lines.last() else {
            return Ok(None);
        };
        let mut last_byte = [0u8; 1];
        file.read_exact_at(&mut last_byte, len - 1)
            .map_err(|cause| AuditError::ReadLog {
                path: self.path.clone(),
                cause,
            })?;
        if last_byte[0] != b'\n' {
            return Err(damaged("the last line is incomplete".to_owned()));
        }
        parse_and_check_line(line).map(Some).map_err(damaged)
    }

    /// The last record must be the one the head file names, or its successor
    /// (a crash between the log's fsync and the head update).
    fn check_head(&self, last: Option<&AuditRecord>) -> Result<(), AuditError> {
        let head_path = head_path_for(&self.path);
        let head = read_head(&head_path)?;
        let mismatch = |reason: String| AuditError::HeadMismatch {
            path: self.path.clone(),
            head: head_path.clone(),
            reason,
        };
        match (head, last) {
            (None, None) => Ok(()),
            (None, Some(r)) => Err(mismatch(format!(
                "the head file is missing but the log holds records up to {}",
                r.seq
            ))),
            (Some(h), None) => Err(mismatch(format!(
                "the log is empty but the head file says it ends at record {}",
                h.seq
            ))),
            (Some(h), Some(r)) => {
                let current = h.seq == r.seq && h.hash == r.hash;
                let one_behind = h.seq + 1 == r.seq && h.hash == r.prev_hash;
                if current || one_behind {
                    Ok(())
                } else {
                    Err(mismatch(format!(
                        "the head file says the log ends at record {} ({}), the log ends at record {} ({})",
                        h.seq,
                        short(&h.hash),
                        r.seq,
                        short(&r.hash)
                    )))
                }
            }
        }
    }
}

fn open_for_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|cause| AuditError::OpenLog {
            path: path.to_path_buf(),
            cause,
        })
}

/// Reads `<log>.head`; `None` when it does not exist.
pub(crate) fn read_head(path: &Path) -> Result<Option<LogHead>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(AuditError::ReadHead {
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    let head: LogHead = serde_json::from_slice(&bytes).map_err(|e| AuditError::ParseHead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let valid_hash = head.hash.len() == 64
        && head
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if head.seq == 0 || !valid_hash {
        return Err(AuditError::ParseHead {
            path: path.to_path_buf(),
            reason: "seq must be >= 1 and hash 64 lowercase hex digits".to_owned(),
        });
    }
    Ok(Some(head))
}

/// The first 12 hex digits of a hash, for messages.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The body of a `run` record: what happened, in brief, and which trace file
/// holds the details (with the SHA-256 of that file's bytes).
pub fn run_record_body(trace: &Trace, trace_path: &Path) -> serde_json::Value {
    let violations: serde_json::Map<String, serde_json::Value> = trace
        .violation_counts()
        .into_iter()
        .map(|(kind, n)| (kind.as_str().to_owned(), serde_json::Value::from(n)))
        .collect();
    serde_json::json!({
        "trace_id": trace.trace_id,
        "run_id": trace.run_id,
        "session_id": trace.session_id,
        "tool_call_id": trace.tool_call_id,
        "skill": { "name": trace.skill.name, "version": trace.skill.version },
        "tier": trace.tier,
        "exit_code": trace.exit_code,
        "termination": trace.termination,
        "duration_ms": trace.duration_ms,
        "violations": violations,
        "trace_path": trace_path.to_string_lossy(),
        "trace_sha256": trace_sha256(trace).ok(),
    })
}
