//! What can go wrong in `skillsandbox oci`, one variant per failed operation.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    /// The bundle asks for something this runtime does not do; nothing was started.
    #[error("{what} is not supported by skillsandbox oci")]
    Unsupported { what: String, hint: String },
    #[error("container id {0:?} is not valid (letters, digits, `-`, `_`, `.`; at most 128)")]
    BadId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {id} is {status}: {what}")]
    BadState {
        id: String,
        status: &'static str,
        what: &'static str,
    },
    #[error("manifest from {source_name}: {detail}")]
    Manifest { source_name: String, detail: String },
    #[error("unknown signal {0:?}")]
    BadSignal(String),
    #[error("signal {signal} to pid {pid}: {source}")]
    Signal {
        signal: i32,
        pid: i32,
        #[source]
        source: nix::Error,
    },
    /// The session engine refused the run (killed, out of budget): its reason.
    #[error("{0}")]
    Refused(String),
    #[error("session {id}: {detail}")]
    Session { id: String, detail: String },
    /// The supervisor exited before the sandbox was ready (its reason, if it left one).
    #[error("the sandbox did not come up: {0}")]
    Setup(String),
}

impl OciError {
    /// What the operator can do about it, when there is something.
    pub fn hint(&self) -> Option<String> {
        match self {
            OciError::Unsupported { hint, .. } => Some(hint.clone()),
            OciError::BadState { id, .. } => Some(format!(
                "skillsandbox oci kill {id} KILL, or delete --force {id}"
            )),
            OciError::Manifest { .. } => Some(
                "check it with `skillsandbox validate FILE`; an inline manifest is the \
                 annotation skillsandbox.manifest.inline"
                    .into(),
            ),
            _ => None,
        }
    }
}

pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io { op, path, source }
}
