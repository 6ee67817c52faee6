//! The canonical content hash of a skill folder: every entry's relative name, kind and
//! mode, and the SHA-256 of its contents (a symlink's target, not what it points to).
//! Two folders hash the same exactly when a skill in them would see the same files.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// At most this many entries in a skill folder.
pub const MAX_ENTRIES: usize = 10_000;
/// At most this many bytes of file contents in a skill folder.
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Every entry of a folder: relative path → `"<mode> <sha256>"` (`100644`/`100755` for
/// files, `120000` for symlinks, `040000` for directories, as git writes them), and
/// the digest over all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, String>,
    pub sha256: String,
}

/// Why a folder could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Unsupported { path: String, problem: String },
    #[error("the skill folder has more than {MAX_ENTRIES} entries or {MAX_BYTES} bytes; a skill is a small folder")]
    TooLarge,
}

/// Hash the folder `dir`.
pub fn hash(dir: &Path) -> Result<Tree, TreeError> {
    let mut entries = BTreeMap::new();
    let mut bytes = 0u64;
    walk(dir, "", &mut entries, &mut bytes)?;
    Ok(Tree {
        sha256: digest_of(&entries),
        entries,
    })
}

/// The digest of a listing (what [`hash`] stores in [`Tree::sha256`]).
pub fn digest_of(entries: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, what) in entries {
        // Length-prefixed, so no choice of names can collide with another listing.
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((what.len() as u64).to_be_bytes());
        h.update(what.as_bytes());
    }
    hex::encode(h.finalize())
}

fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
    bytes: &mut u64,
) -> Result<(), TreeError> {
    let read_err = |path: &Path, source| TreeError::Read {
        path: path.display().to_string(),
        source,
    };
    let read = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
    for entry in read {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| TreeError::Unsupported {
            path: path.display().to_string(),
            problem: "the name is not UTF-8".into(),
        })?;
        let rel = format!("{prefix}{name}");
        if out.len() >= MAX_ENTRIES {
            return Err(TreeError::TooLarge);
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| read_err(&path, e))?;
            let sha = hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes()));
            out.insert(rel, format!("120000 {sha}"));
        } else if kind.is_dir() {
            out.insert(rel.clone(), "040000 -".into());
            walk(&path, &format!("{rel}/"), out, bytes)?;
        } else if kind.is_file() {
            *bytes = bytes.saturating_add(meta.len());
            if *bytes > MAX_BYTES {
                return Err(TreeError::TooLarge);
            }
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            out.insert(rel, format!("{mode} {}", file_sha(&path)?));
        } else {
            return Err(TreeError::Unsupported {
                path: path.display().to_string(),
                problem: "not a regular file, directory or symlink (a skill ships only those)"
                    .into(),
            });
        }
    }
    Ok(())
}

fn file_sha(path: &Path) -> Result<String, TreeError> {
    let err = |source| TreeError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What changed between two listings, as `+ path`, `- path`, `~ path (what)` lines.
pub fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, what) in new {
        match old.get(path) {
            None => out.push(format!("+ file: {path}")),
            Some(before) if before != what => {
                let (m0, s0) = before.split_once(' ').unwrap_or((before, ""));
                let (m1, s1) = what.split_once(' ').unwrap_or((what, ""));
                let mut how = Vec::new();
                if s0 != s1 {
                    how.push("contents changed".to_owned());
                }
                if m0 != m1 {
                    how.push(format!("mode {m0} → {m1}"));
                }
                out.push(format!("~ file: {path} ({})", how.join(", ")));
            }
            Some(_) => {}
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            out.push(format!("- file: {path}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_a_new_file_a_mode_and_a_link_each_change_the_hash() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("scripts")).unwrap();
        std::fs::write(d.join("scripts/a.py"), "print(1)\n").unwrap();
        let base = hash(d).unwrap();
        assert_eq!(base, hash(d).unwrap());

        std::fs::write(d.join("scripts/a.py"), "print(2)\n").unwrap();
        let changed = hash(d).unwrap();
        assert_ne!(changed.sha256, base.sha256);
        assert_eq!(
            diff(&base.entries, &changed.entries),
            vec!["~ file: scripts/a.py (contents changed)"]
        );

        std::fs::write(d.join("scripts/a.py"), "print(1)\n").unwrap();
        assert_eq!(hash(d).unwrap().sha256, base.sha256);
        std::fs::set_permissions(
            d.join("scripts/a.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let moded = hash(d).unwrap();
        assert_eq!(
            diff(&base.entries, &moded.entries),
            vec!["~ file: scripts/a.py (mode 100644 → 100755)"]
        );
        std::fs::set_permissions(
            d.join("scripts/a.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let linked = hash(d).unwrap();
        assert_eq!(diff(&base.entries, &linked.entries), vec!["+ file: link"]);
        std::fs::remove_file(d.join("link")).unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        assert_ne!(hash(d).unwrap().sha256, base.sha256);
    }

    #[test]
    fn names_cannot_be_shifted_into_contents() {
        let a: BTreeMap<String, String> = [("ab".to_owned(), "c".to_owned())].into();
        let b: BTreeMap<String, String> = [("a".to_owned(), "bc".to_owned())].into();
        assert_ne!(digest_of(&a), digest_of(&b));
    }
}
