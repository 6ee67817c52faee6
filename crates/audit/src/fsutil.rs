//! Durable file writes shared by the trace and the audit log's head file:
//! private directories, write-to-temp + fsync + rename + fsync(dir).
//!
//! Never leaves a half-written target behind: readers see the old file or the new
//! one, and a failed write removes its temporary file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::AuditError;

/// The directory a file lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and its missing parents with mode 0700 (existing ones are left as
/// they are).
pub(crate) fn create_private_dir_all(dir: &Path) -> Result<(), AuditError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|cause| AuditError::CreateDir {
            path: dir.to_path_buf(),
            cause,
        })
}

/// fsyncs a directory so a rename or a newly created entry in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|cause| AuditError::SyncDir {
            path: dir.to_path_buf(),
            cause,
        })
}

fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    parent_dir(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: private parent dirs, a 0600 temporary
/// file in the same directory, fsync, rename over `path`, then — when
/// `sync_parent` — fsync of the directory so the rename itself survives a crash.
pub(crate) fn write_file_atomic(
    path: &Path,
    bytes: &[u8],
    sync_parent: bool,
) -> Result<(), AuditError> {
    let dir = parent_dir(path);
    create_private_dir_all(&dir)?;
    let tmp = temp_path_for(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(cause) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(AuditError::WriteTemp { path: tmp, cause });
    }
    if let Err(cause) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(AuditError::Rename {
            from: tmp,
            to: path.to_path_buf(),
            cause,
        });
    }
    if sync_parent {
        sync_dir(&dir)?;
    }
    Ok(())
}
