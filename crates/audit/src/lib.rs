//! Run evidence: event types, the versioned trace (`trace.json`), the append-only
//! hash-chained audit log and its verification.
//!
//! Pure data plus file I/O; knows nothing about Linux confinement.

pub mod event;

pub use event::*;
