//! The supervisor's one look at the host before lowering: which system directories
//! and `/etc` entries exist and what they are, which declared paths are missing.

use std::fs;
use std::path::{Path, PathBuf};

use skillsandbox_manifest::Policy;

use crate::plan::{HostEntry, HostLayout, ETC_PASSTHROUGH, SYSTEM_DIRS};

fn entry(p: &Path) -> Option<HostEntry> {
    let meta = fs::symlink_metadata(p).ok()?;
    if meta.file_type().is_symlink() {
        fs::read_link(p).ok().map(HostEntry::Symlink)
    } else if meta.is_dir() {
        Some(HostEntry::Dir)
    } else if meta.is_file() {
        Some(HostEntry::File)
    } else {
        None
    }
}

/// Capture the host layout the plan depends on.
pub fn capture_host_layout(policy: &Policy) -> HostLayout {
    let mut layout = HostLayout::default();
    for p in SYSTEM_DIRS.iter().chain(ETC_PASSTHROUGH) {
        if let Some(e) = entry(Path::new(p)) {
            layout.entries.insert(PathBuf::from(p), e);
        }
    }
    let fs = &policy.filesystem;
    for p in fs.read.iter().chain(&fs.write).chain(&fs.deny) {
        if fs::symlink_metadata(p).is_err() {
            layout.missing.push(p.clone());
        }
    }
    layout
}
