//! `skillsandbox scan`: a folder of skills (a clone of a public skills repository,
//! say) as a report: each skill, its manifest state, its approval state, whether it
//! runs, and the static red flags of its files with file:line.
//!
//! One entry: [`scan`]. Reads only; runs nothing.

mod flags;

use std::path::{Path, PathBuf};

use serde::Serialize;
use skillsandbox_manifest::{ResolveEnv, MANIFEST_FILE};

pub use flags::{line_flags, Flag};

use crate::learn::LEARNED_HEADER;
use crate::lock::{self, Store, Verdict};
use crate::SKILL_MD;

/// Folders below the scanned one looked into, at most.
const MAX_DEPTH: usize = 6;
/// Files larger than this are not read for flags (reported).
const MAX_FILE: u64 = 1024 * 1024;
/// Skills reported at most.
const MAX_SKILLS: usize = 2000;

/// One skill of the folder.
#[derive(Debug, Clone, Serialize)]
pub struct SkillReport {
    pub name: String,
    /// Relative to the scanned folder (`.` for the folder itself).
    pub path: String,
    /// `none`, `present`, `learned`, or `invalid`.
    pub manifest: &'static str,
    /// `approved`, `changed`, `unapproved`, `untrusted` (a lockfile record this
    /// machine never approved, or one edited since), or `no lockfile`.
    pub approval: String,
    /// `None` when it runs; else why not (one line).
    pub not_runnable: Option<String>,
    pub flags: Vec<Flag>,
    /// Files not read for flags, and why.
    pub skipped: Vec<String>,
}

/// The whole folder.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub dir: String,
    pub skills: Vec<SkillReport>,
    /// More skills than [`MAX_SKILLS`] were found; the rest are not reported.
    pub truncated: bool,
}

impl ScanReport {
    pub fn flag_count(&self) -> usize {
        self.skills.iter().map(|s| s.flags.len()).sum()
    }
}

fn is_skill(dir: &Path) -> bool {
    dir.join(SKILL_MD).is_file() || dir.join(MANIFEST_FILE).is_file()
}

/// Skill folders at or below `dir`, sorted; never through symlinks, `.git` or
/// `node_modules`, nor inside a skill.
fn find(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if out.len() > MAX_SKILLS {
        return;
    }
    if is_skill(dir) {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !matches!(e.file_name().to_str(), Some(".git" | "node_modules")))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for d in subdirs {
        find(&d, depth + 1, out);
    }
}

fn manifest_state(dir: &Path) -> &'static str {
    match std::fs::read_to_string(dir.join(MANIFEST_FILE)) {
        Err(_) if !dir.join(MANIFEST_FILE).exists() => "none",
        Err(_) => "invalid",
        Ok(text) => {
            let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
            if first.starts_with(LEARNED_HEADER) {
                "learned"
            } else {
                "present"
            }
        }
    }
}

/// Every text file of a skill, relative names, sorted.
fn files(dir: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else {
        return;
    };
    let mut list: Vec<_> = entries.filter_map(Result::ok).collect();
    list.sort_by_key(|e| e.file_name());
    for e in list {
        let Ok(t) = e.file_type() else { continue };
        let name = rel.join(e.file_name());
        if t.is_dir() && depth < MAX_DEPTH && e.file_name() != ".git" {
            files(dir, &name, depth + 1, out);
        } else if t.is_file() {
            out.push(name);
        }
    }
}

fn flags_of(dir: &Path, flags: &mut Vec<Flag>, skipped: &mut Vec<String>) {
    let mut list = Vec::new();
    files(dir, Path::new(""), 0, &mut list);
    for rel in list {
        let shown = rel.display().to_string();
        if shown == MANIFEST_FILE || shown == lock::LOCKFILE {
            continue;
        }
        let path = dir.join(&rel);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE) {
            skipped.push(format!("{shown}: larger than 1 MiB"));
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            skipped.push(format!("{shown}: unreadable"));
            continue;
        };
        if bytes.contains(&0) {
            continue; // binary
        }
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            flags.extend(line_flags(&shown, i + 1, line));
        }
    }
}

fn approval(skill: &crate::LoadedSkill, store: &Store) -> String {
    match lock::check(skill, store, false) {
        Ok(c) => match c.verdict {
            Verdict::NotRequired => "no lockfile".into(),
            Verdict::Approved { .. } => "approved".into(),
            Verdict::Refused { reason, .. } if reason.starts_with("it changed") => "changed".into(),
            Verdict::Refused { reason, .. }
                if reason.starts_with("it has not been approved")
                    || reason.starts_with("approval is required") =>
            {
                "unapproved".into()
            }
            // The lockfile's record cannot be trusted here (edited, gone, or never
            // approved on this machine).
            Verdict::Refused { .. } => "untrusted".into(),
        },
        Err(e) => format!("unknown ({e})"),
    }
}

/// Reports every skill at or below `dir`.
pub fn scan(dir: &Path, store: &Store, env: &ResolveEnv) -> ScanReport {
    let mut found = Vec::new();
    find(dir, 0, &mut found);
    let truncated = found.len() > MAX_SKILLS;
    found.truncate(MAX_SKILLS);
    let skills = found
        .into_iter()
        .map(|d| {
            let rel = d.strip_prefix(dir).unwrap_or(&d);
            let path = if rel.as_os_str().is_empty() {
                ".".to_string()
            } else {
                rel.display().to_string()
            };
            let folder = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            let mut manifest = manifest_state(&d);
            let (name, approval, not_runnable) = match crate::load(&d, env, None) {
                Ok(s) => (s.policy.skill.name.clone(), approval(&s, store), None),
                Err(e) => {
                    if manifest != "none" && d.join(MANIFEST_FILE).is_file() {
                        manifest = "invalid";
                    }
                    let first = e.to_string().lines().next().unwrap_or("").to_string();
                    (folder, "unknown (does not load)".into(), Some(first))
                }
            };
            let (mut flags, mut skipped) = (Vec::new(), Vec::new());
            flags_of(&d, &mut flags, &mut skipped);
            SkillReport {
                name,
                path,
                manifest,
                approval,
                not_runnable,
                flags,
                skipped,
            }
        })
        .collect();
    ScanReport {
        dir: dir.display().to_string(),
        skills,
        truncated,
    }
}
