//! Approvals: `skillsandbox.lock` records, per skill, what a person approved (the
//! folder's tree hash and every file, the resolved permissions, who and when), and
//! this machine's approval store pins each record's SHA-256.
//!
//! The lockfile lives in the project (it can be reviewed and committed), so a
//! confined command that may write the project could edit it. It is trusted only
//! through the store: a record counts when its digest is pinned in the invoker's
//! state directory, which is outside every writable set. A lockfile that was used
//! here is remembered there too, so deleting it does not turn approvals off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::load::LoadedSkill;
use crate::{grants, tree};

/// The lockfile's name, at the project root.
pub const LOCKFILE: &str = "skillsandbox.lock";
const FORMAT_VERSION: u32 = 1;
const MAX_LOCKFILE_BYTES: u64 = 16 * 1024 * 1024;

/// The lockfile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    /// Keyed by the skill folder, relative to the lockfile's directory (absolute for
    /// a skill outside it).
    pub skills: BTreeMap<String, Approval>,
}

/// What was approved for one skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub name: String,
    pub tree_sha256: String,
    /// Every entry of the folder: path → `"<mode> <sha256>"`.
    pub files: BTreeMap<String, String>,
    /// The resolved permissions, as [`grants::lines`] writes them.
    pub permissions: Vec<String>,
    pub approved_by: String,
    pub approved_at: String,
}

impl Approval {
    fn digest(&self) -> String {
        let canonical = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// Where approvals are looked up and kept on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The invoker's state directory; pins go in `approvals/` below it.
    pub state_dir: PathBuf,
    /// The user's config directory for skillsandbox: the lockfile of skills that
    /// belong to no project.
    pub config_dir: PathBuf,
}

impl Store {
    /// `$XDG_STATE_HOME/skillsandbox` (or `~/.local/state/skillsandbox`) and
    /// `$XDG_CONFIG_HOME/skillsandbox` (or `~/.config/skillsandbox`).
    pub fn for_invoker() -> Self {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| {
                std::env::home_dir()
                    .unwrap_or_else(|| PathBuf::from("/"))
                    .join(".config")
            });
        Store {
            state_dir: skillsandbox_audit::default_state_dir(),
            config_dir: config.join("skillsandbox"),
        }
    }

    fn approvals(&self) -> PathBuf {
        self.state_dir.join("approvals")
    }

    fn pin_path(&self, lockfile: &Path, key: &str) -> PathBuf {
        let mut id = lockfile.as_os_str().as_encoded_bytes().to_vec();
        id.push(b'\n');
        id.extend_from_slice(key.as_bytes());
        self.approvals()
            .join("records")
            .join(hex::encode(Sha256::digest(&id)))
    }

    fn marker_path(&self, lockfile: &Path) -> PathBuf {
        let id = Sha256::digest(lockfile.as_os_str().as_encoded_bytes());
        self.approvals().join("lockfiles").join(hex::encode(id))
    }

    fn marked(&self, lockfile: &Path) -> bool {
        self.marker_path(lockfile).is_file()
    }
}

/// Why the approval state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid lockfile: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
}

/// The answer for one skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No lockfile covers the skill and nobody asked for approval.
    NotRequired,
    /// Exactly what was approved.
    Approved { by: String, at: String },
    /// Not to be run: why, and what differs from the approval.
    Refused { reason: String, diff: Vec<String> },
}

/// The verdict and the lockfile it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    pub lockfile: PathBuf,
    pub key: String,
}

impl Checked {
    /// The refusal as the user reads it: the reason, the diff, the command that approves.
    pub fn refusal(&self, skill: &LoadedSkill) -> Option<String> {
        let Verdict::Refused { reason, diff } = &self.verdict else {
            return None;
        };
        let mut out = format!(
            "skill {} is refused: {reason} ({})",
            skill.policy.skill.name,
            self.lockfile.display()
        );
        for line in diff {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out.push_str(&format!(
            "\n  hint: review it, then approve it outside any sandbox: skillsandbox approve {}",
            skill.dir.display()
        ));
        Some(out)
    }
}

/// The lockfile that covers `skill_dir`: the nearest one above it that exists or was
/// used on this machine; else `skillsandbox.lock` at the root of the enclosing git
/// repository; else the user's own.
pub fn lockfile_for(skill_dir: &Path, store: &Store) -> PathBuf {
    let above = || skill_dir.ancestors().skip(1);
    for dir in above() {
        let candidate = dir.join(LOCKFILE);
        if candidate.is_file() || store.marked(&candidate) {
            return candidate;
        }
    }
    for dir in above() {
        if dir.join(".git").exists() {
            return dir.join(LOCKFILE);
        }
    }
    store.config_dir.join(LOCKFILE)
}

fn key_for(lockfile: &Path, skill_dir: &Path) -> String {
    let base = lockfile.parent().unwrap_or(Path::new("/"));
    match skill_dir.strip_prefix(base) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => skill_dir.display().to_string(),
    }
}

/// Read a lockfile; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Lockfile>, LockError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut text = String::new();
    file.take(MAX_LOCKFILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let lock: Lockfile = serde_json::from_str(&text).map_err(|e| LockError::Parse {
        path: path.to_path_buf(),
        message: format!("line {} column {}: {e}", e.line(), e.column()),
    })?;
    if lock.version != FORMAT_VERSION {
        return Err(LockError::Parse {
            path: path.to_path_buf(),
            message: format!(
                "version {} (this skillsandbox reads {FORMAT_VERSION})",
                lock.version
            ),
        });
    }
    Ok(Some(lock))
}

/// What approving `skill` now would record (who and when left empty).
fn current(skill: &LoadedSkill) -> Result<Approval, LockError> {
    let t = tree::hash(&skill.dir)?;
    Ok(Approval {
        name: skill.policy.skill.name.clone(),
        tree_sha256: t.sha256,
        files: t.entries,
        permissions: grants::lines(&skill.policy),
        approved_by: String::new(),
        approved_at: String::new(),
    })
}

fn changes(approved: &Approval, now: &Approval) -> Vec<String> {
    let mut out = grants::diff(&approved.permissions, &now.permissions);
    if approved.tree_sha256 != now.tree_sha256 {
        let files = tree::diff(&approved.files, &now.files);
        if files.is_empty() {
            out.push("~ files: the recorded listing does not match its tree hash".into());
        }
        out.extend(files);
    }
    out
}

fn all_granted(now: &Approval) -> Vec<String> {
    let mut out: Vec<String> = now.permissions.iter().map(|l| format!("+ {l}")).collect();
    out.push(format!(
        "+ files: {} entries, tree sha256 {}",
        now.files.len(),
        now.tree_sha256
    ));
    out
}

/// Whether `skill` may run. `require` forces approval even where no lockfile exists.
pub fn check(skill: &LoadedSkill, store: &Store, require: bool) -> Result<Checked, LockError> {
    let lockfile = lockfile_for(&skill.dir, store);
    let key = key_for(&lockfile, &skill.dir);
    let done = |verdict| Checked {
        verdict,
        lockfile: lockfile.clone(),
        key: key.clone(),
    };
    let pin = store.pin_path(&lockfile, &key);
    let required = require || lockfile.is_file() || store.marked(&lockfile) || pin.is_file();
    if !required {
        return Ok(done(Verdict::NotRequired));
    }
    let now = current(skill)?;
    let refused = |reason: &str, diff| {
        Ok(done(Verdict::Refused {
            reason: reason.to_owned(),
            diff,
        }))
    };
    let Some(lock) = read(&lockfile)? else {
        let reason = if store.marked(&lockfile) {
            "the lockfile that held this project's approvals is gone"
        } else {
            "approval is required and there is no lockfile"
        };
        return refused(reason, all_granted(&now));
    };
    let Some(approved) = lock.skills.get(&key) else {
        return refused("it has not been approved", all_granted(&now));
    };
    let pinned = std::fs::read_to_string(&pin).ok();
    match pinned {
        None => {
            let reason = format!(
                "the lockfile says {} approved it at {}, but it was not approved on this machine",
                approved.approved_by, approved.approved_at
            );
            return refused(&reason, changes(approved, &now));
        }
        Some(d) if d.trim() != approved.digest() => {
            return refused(
                "its record in the lockfile was changed after it was approved",
                changes(approved, &now),
            );
        }
        Some(_) => {}
    }
    let diff = changes(approved, &now);
    if diff.is_empty() {
        Ok(done(Verdict::Approved {
            by: approved.approved_by.clone(),
            at: approved.approved_at.clone(),
        }))
    } else {
        refused("it changed since it was approved", diff)
    }
}

/// What approving would change: the diff against the current approval (every grant
/// for a skill never approved); empty when it is approved as it is.
pub fn pending(
    skill: &LoadedSkill,
    store: &Store,
    lockfile: Option<&Path>,
) -> Result<(PathBuf, Vec<String>), LockError> {
    let lockfile = lockfile.map_or_else(|| lockfile_for(&skill.dir, store), Path::to_path_buf);
    let key = key_for(&lockfile, &skill.dir);
    let now = current(skill)?;
    let approved = read(&lockfile)?.and_then(|l| l.skills.get(&key).cloned());
    let pinned = std::fs::read_to_string(store.pin_path(&lockfile, &key)).ok();
    let diff = match approved {
        Some(a) if pinned.is_some_and(|p| p.trim() == a.digest()) => changes(&a, &now),
        Some(a) => {
            let mut d =
                vec!["~ approval: recorded in the lockfile, not on this machine".to_owned()];
            d.extend(changes(&a, &now));
            d
        }
        None => all_granted(&now),
    };
    Ok((lockfile, diff))
}

/// Record `skill` as approved by the invoker, now: its record in the lockfile, and
/// the record's digest in the store. Returns the lockfile written.
pub fn approve(
    skill: &LoadedSkill,
    store: &Store,
    lockfile: Option<&Path>,
) -> Result<PathBuf, LockError> {
    let lockfile = lockfile.map_or_else(|| lockfile_for(&skill.dir, store), Path::to_path_buf);
    let key = key_for(&lockfile, &skill.dir);
    let mut approval = current(skill)?;
    approval.approved_by = invoker();
    approval.approved_at = now_rfc3339();
    let mut lock = read(&lockfile)?.unwrap_or(Lockfile {
        version: FORMAT_VERSION,
        skills: BTreeMap::new(),
    });
    lock.skills.insert(key.clone(), approval.clone());
    let text = serde_json::to_string_pretty(&lock).unwrap_or_default() + "\n";
    write_atomic(&lockfile, text.as_bytes())?;
    write_atomic(
        &store.pin_path(&lockfile, &key),
        (approval.digest() + "\n").as_bytes(),
    )?;
    write_atomic(
        &store.marker_path(&lockfile),
        (lockfile.display().to_string() + "\n").as_bytes(),
    )?;
    Ok(lockfile)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LockError> {
    let err = |source| LockError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("lock"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

fn invoker() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            format!("uid {uid}")
        });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match host.trim() {
        "" => user,
        h => format!("{user}@{h}"),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillsandbox_manifest::ResolveEnv;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        store: Store,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let proj = root.join("proj");
        std::fs::create_dir_all(proj.join(".git")).unwrap();
        std::fs::create_dir_all(proj.join("skills/w/scripts")).unwrap();
        std::fs::write(
            proj.join("skills/w/SKILL.md"),
            "---\nname: w\ndescription: d\n---\n",
        )
        .unwrap();
        std::fs::write(proj.join("skills/w/scripts/run.py"), "print(1)\n").unwrap();
        let store = Store {
            state_dir: root.join("state"),
            config_dir: root.join("config"),
        };
        Fixture {
            _tmp: tmp,
            root,
            store,
        }
    }

    fn skill(f: &Fixture) -> LoadedSkill {
        crate::load(
            &f.root.join("proj/skills/w"),
            &ResolveEnv { home: "/h".into() },
            None,
        )
        .unwrap()
    }

    fn refused(c: &Checked) -> (String, Vec<String>) {
        match &c.verdict {
            Verdict::Refused { reason, diff } => (reason.clone(), diff.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn approve_then_tamper_each_way() {
        let f = fixture();
        let s = skill(&f);
        assert_eq!(
            check(&s, &f.store, false).unwrap().verdict,
            Verdict::NotRequired
        );
        let (reason, diff) = refused(&check(&s, &f.store, true).unwrap());
        assert!(reason.contains("no lockfile"), "{reason}");
        assert!(diff
            .iter()
            .any(|l| l.starts_with("+ entrypoint: python3 scripts/run.py")));

        let lock = approve(&s, &f.store, None).unwrap();
        assert_eq!(lock, f.root.join("proj").join(LOCKFILE));
        assert!(matches!(
            check(&s, &f.store, false).unwrap().verdict,
            Verdict::Approved { .. }
        ));
        assert!(pending(&s, &f.store, None).unwrap().1.is_empty());

        // One byte of a script.
        let script = f.root.join("proj/skills/w/scripts/run.py");
        std::fs::write(&script, "print(2)\n").unwrap();
        let (_, diff) = refused(&check(&skill(&f), &f.store, false).unwrap());
        assert_eq!(diff, vec!["~ file: scripts/run.py (contents changed)"]);
        std::fs::write(&script, "print(1)\n").unwrap();

        // A new file.
        std::fs::write(f.root.join("proj/skills/w/scripts/x.sh"), "").unwrap();
        let (_, diff) = refused(&check(&skill(&f), &f.store, false).unwrap());
        assert_eq!(diff, vec!["+ file: scripts/x.sh"]);
        std::fs::remove_file(f.root.join("proj/skills/w/scripts/x.sh")).unwrap();
        assert!(matches!(
            check(&s, &f.store, false).unwrap().verdict,
            Verdict::Approved { .. }
        ));

        // A widened permission, with the lockfile edited to match (as an agent would).
        let mut widened = s.clone();
        widened.policy.filesystem.read.push("/".into());
        let (_, diff) = refused(&check(&widened, &f.store, false).unwrap());
        assert_eq!(
            diff,
            vec![
                "+ files.read: /",
                "- files: none beyond the skill folder (read-only)"
            ]
        );
        let mut l = read(&lock).unwrap().unwrap();
        for a in l.skills.values_mut() {
            a.permissions = grants::lines(&widened.policy);
        }
        std::fs::write(&lock, serde_json::to_string(&l).unwrap()).unwrap();
        let (reason, _) = refused(&check(&widened, &f.store, false).unwrap());
        assert!(reason.contains("changed after it was approved"), "{reason}");

        // Deleting the lockfile does not turn approvals off.
        std::fs::remove_file(&lock).unwrap();
        let (reason, _) = refused(&check(&s, &f.store, false).unwrap());
        assert!(reason.contains("is gone"), "{reason}");

        // A lockfile that arrives with a clone is not trusted until approved here.
        approve(&s, &f.store, None).unwrap();
        let other = Store {
            state_dir: f.root.join("state2"),
            config_dir: f.root.join("config"),
        };
        let (reason, diff) = refused(&check(&s, &other, false).unwrap());
        assert!(reason.contains("not approved on this machine"), "{reason}");
        assert!(diff.is_empty());
    }

    #[test]
    fn user_level_lockfile_for_skills_outside_projects() {
        let f = fixture();
        let d = f.root.join("loose/skill");
        assert_eq!(
            lockfile_for(&d, &f.store),
            f.store.config_dir.join(LOCKFILE)
        );
        assert_eq!(
            key_for(&f.store.config_dir.join(LOCKFILE), &d),
            d.display().to_string()
        );
        assert_eq!(
            lockfile_for(&f.root.join("proj/skills/w"), &f.store),
            f.root.join("proj").join(LOCKFILE)
        );
    }
}
