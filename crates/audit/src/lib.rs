//! Run evidence: event types, the versioned trace (`trace.json`), the append-only
//! hash-chained audit log and its verification.
//!
//! Pure data plus file I/O; knows nothing about Linux confinement.

pub mod error;
pub mod event;
mod fsutil;
pub mod log;
pub mod merge;
pub mod mitre;
pub mod otel;
mod sys;
pub mod trace;
pub mod verify;

pub use error::AuditError;
pub use event::*;
pub use log::{
    default_audit_log_path, encode_record, head_path_for, run_record_body, AuditLog, AuditRecord,
    LogHead, AUDIT_LOG_ENV, GENESIS_HASH,
};
pub use merge::{merge, MergeReport, MergedRecord};
pub use mitre::{default_severity, mitre_for, mitre_for_path, mitre_for_syscall, violation};
pub use otel::{export_run_span, OtlpConfig};
pub use trace::*;
pub use verify::{tail, verify, verify_with, BadRecord, VerifyOptions, VerifyReport};
