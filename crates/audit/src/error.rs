//! The one error type of the evidence crate: every variant is named for the
//! operation that failed and carries the path it failed on and the underlying
//! error (`cause`). The message is complete on its own (it includes the cause),
//! so the cause is deliberately not also exposed as `source()`: printing an
//! error chain shows it once.

use std::path::PathBuf;

/// Why writing or checking run evidence failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot create directory {path}: {cause} (check that the state directory is writable, or point SKILLSANDBOX_AUDIT_LOG / --trace-output elsewhere)")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot serialize the trace: {cause}")]
    SerializeTrace { cause: serde_json::Error },
    #[error("cannot serialize the audit record body: {cause}")]
    SerializeRecord { cause: serde_json::Error },
    #[error("cannot write temporary file {path}: {cause}")]
    WriteTemp {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot rename {from} to {to}: {cause}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot fsync directory {path}: {cause}")]
    SyncDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot open audit log {path}: {cause}")]
    OpenLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("flock(LOCK_EX) on audit log {path} failed: {cause}")]
    LockLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read audit log {path}: {cause}")]
    ReadLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot append to audit log {path}: {cause} (the log was left as it was before this record)")]
    WriteLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("fsync of audit log {path} failed: {cause}")]
    SyncLog {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the last record of audit log {path} is damaged ({reason}); refusing to extend a broken chain. Run `skillsandbox audit verify --log {path}` and move the damaged log aside")]
    LogTailDamaged { path: PathBuf, reason: String },
    #[error("audit log {path} does not match its head file {head}: {reason}. The log was truncated or rewritten; run `skillsandbox audit verify --log {path}`, keep the damaged log as evidence and move it and its head file aside to start a new log")]
    HeadMismatch {
        path: PathBuf,
        head: PathBuf,
        reason: String,
    },
    #[error("cannot read head file {path}: {cause}")]
    ReadHead {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("head file {path} is not valid: {reason}")]
    ParseHead { path: PathBuf, reason: String },
    #[error("cannot parse audit record in {path}: {reason}; run `skillsandbox audit verify --log {path}`")]
    ParseRecord { path: PathBuf, reason: String },
    #[error("OTLP export to {endpoint} failed: {reason}")]
    OtlpExport { endpoint: String, reason: String },
}
