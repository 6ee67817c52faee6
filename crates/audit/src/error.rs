//! The one error type of the evidence crate: every variant is named for the
//! operation that failed and carries the path it failed on. The OS error is the
//! `source`, not part of the message: print the chain (`{:#}` with anyhow).

use std::path::PathBuf;

/// Why writing or checking run evidence failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot create directory {path} (check that the state directory is writable, or point SKILLSANDBOX_AUDIT_LOG / --trace-output elsewhere)")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialize the trace")]
    SerializeTrace { source: serde_json::Error },
    #[error("cannot serialize the audit record body")]
    SerializeRecord { source: serde_json::Error },
    #[error("cannot write temporary file {path}")]
    WriteTemp {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rename {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fsync directory {path}")]
    SyncDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open audit log {path}")]
    OpenLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("flock(LOCK_EX) on audit log {path} failed")]
    LockLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read audit log {path}")]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot append to audit log {path} (the log was left as it was before this record)")]
    WriteLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fsync of audit log {path} failed")]
    SyncLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the last record of audit log {path} is damaged ({reason}); refusing to extend a broken chain. Run `skillsandbox audit verify --log {path}` and move the damaged log aside")]
    LogTailDamaged { path: PathBuf, reason: String },
    #[error("audit log {path} does not match its head file {head}: {reason}. The log was truncated or rewritten; run `skillsandbox audit verify --log {path}`, keep the damaged log as evidence and move it and its head file aside to start a new log")]
    HeadMismatch {
        path: PathBuf,
        head: PathBuf,
        reason: String,
    },
    #[error("cannot read head file {path}")]
    ReadHead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("head file {path} is not valid: {reason}")]
    ParseHead { path: PathBuf, reason: String },
    #[error("cannot parse audit record in {path}: {reason}; run `skillsandbox audit verify --log {path}`")]
    ParseRecord { path: PathBuf, reason: String },
    #[error("OTLP export to {endpoint} failed: {reason}")]
    OtlpExport { endpoint: String, reason: String },
}
