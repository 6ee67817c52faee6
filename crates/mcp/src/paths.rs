//! Where the agent may point the server: inside the operator's skills directories.
//!
//! Every path a tool receives (`run_skill`, `validate_skill`, `inspect_skill`,
//! `list_skills`) is canonicalised — symlinks and `..` resolved by the kernel's view of
//! the filesystem — and must then be one of the skills directories or below one.
//! `--allow-any-path` lifts the restriction; nothing else does.

use std::path::{Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("skills directory {path}: {source}; pass an existing directory to --skills-dir")]
    SkillsDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("skills directory {path} is not a directory")]
    SkillsDirNotDir { path: PathBuf },
    #[error("{path:?} does not exist{where_}")]
    NotFound { path: String, where_: String },
    #[error(
        "{path:?} resolves to {resolved}, which is outside the skills directories ({roots}); \
         the server only opens paths inside them (the operator may start it with --allow-any-path)"
    )]
    Outside {
        path: String,
        resolved: PathBuf,
        roots: String,
    },
    #[error(
        "{path:?} is refused: the server was started without --skills-dir, so no path is \
         allowed (the operator may add --skills-dir DIR or --allow-any-path)"
    )]
    NoRoots { path: String },
}

/// The canonical skills directories and whether any path is allowed.
#[derive(Debug, Clone)]
pub struct SkillRoots {
    roots: Vec<PathBuf>,
    allow_any_path: bool,
}

impl SkillRoots {
    /// Canonicalise the operator's directories; each must exist and be a directory.
    pub fn new(dirs: &[PathBuf], allow_any_path: bool) -> Result<SkillRoots, PathError> {
        let mut roots = Vec::new();
        for d in dirs {
            let c = std::fs::canonicalize(d).map_err(|source| PathError::SkillsDir {
                path: d.clone(),
                source,
            })?;
            if !c.is_dir() {
                return Err(PathError::SkillsDirNotDir { path: d.clone() });
            }
            if !roots.contains(&c) {
                roots.push(c);
            }
        }
        Ok(SkillRoots {
            roots,
            allow_any_path,
        })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub fn allow_any_path(&self) -> bool {
        self.allow_any_path
    }

    /// Whether a canonical path is a root or below one.
    pub fn contains(&self, canonical: &Path) -> bool {
        self.roots.iter().any(|r| canonical.starts_with(r))
    }

    /// Resolve what the agent wrote to a canonical path it may use. Absolute paths are
    /// taken as they are; relative ones are tried below each skills directory in turn
    /// (and, with `--allow-any-path`, below the server's working directory last).
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, PathError> {
        let p = Path::new(requested);
        let candidates: Vec<PathBuf> = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            let mut c: Vec<PathBuf> = self.roots.iter().map(|r| r.join(p)).collect();
            if self.allow_any_path {
                c.push(p.to_path_buf());
            }
            c
        };
        if !self.allow_any_path && self.roots.is_empty() {
            return Err(PathError::NoRoots {
                path: requested.to_string(),
            });
        }
        let mut outside = None;
        for cand in candidates {
            let Ok(canonical) = std::fs::canonicalize(&cand) else {
                continue;
            };
            if self.allow_any_path || self.contains(&canonical) {
                return Ok(canonical);
            }
            outside.get_or_insert(canonical);
        }
        match outside {
            Some(resolved) => Err(PathError::Outside {
                path: requested.to_string(),
                resolved,
                roots: self.describe(),
            }),
            None => Err(PathError::NotFound {
                path: requested.to_string(),
                where_: if p.is_absolute() {
                    String::new()
                } else {
                    format!(" in the skills directories ({})", self.describe())
                },
            }),
        }
    }

    fn describe(&self) -> String {
        if self.roots.is_empty() {
            return "none".to_string();
        }
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("skills");
        let outside = base.join("secret");
        std::fs::create_dir_all(root.join("hello")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            outside,
        }
    }

    #[test]
    fn inside_paths_resolve_relative_and_absolute() {
        let f = fixture();
        let roots = SkillRoots::new(std::slice::from_ref(&f.root), false).unwrap();
        assert_eq!(roots.resolve("hello").unwrap(), f.root.join("hello"));
        let abs = f.root.join("hello/../hello");
        assert_eq!(
            roots.resolve(abs.to_str().unwrap()).unwrap(),
            f.root.join("hello")
        );
        assert_eq!(roots.resolve(f.root.to_str().unwrap()).unwrap(), f.root);
    }

    #[test]
    fn dotdot_symlink_and_absolute_escapes_are_refused() {
        let f = fixture();
        let roots = SkillRoots::new(std::slice::from_ref(&f.root), false).unwrap();
        for p in ["../secret", "link", "hello/../../secret"] {
            let err = roots.resolve(p).unwrap_err();
            assert!(matches!(err, PathError::Outside { .. }), "{p}: {err}");
        }
        let err = roots.resolve(f.outside.to_str().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("outside the skills directories"),
            "{err}"
        );
        assert!(matches!(
            roots.resolve("nope"),
            Err(PathError::NotFound { .. })
        ));
    }

    #[test]
    fn allow_any_path_and_no_roots() {
        let f = fixture();
        let any = SkillRoots::new(std::slice::from_ref(&f.root), true).unwrap();
        assert_eq!(any.resolve(f.outside.to_str().unwrap()).unwrap(), f.outside);
        let none = SkillRoots::new(&[], false).unwrap();
        assert!(matches!(none.resolve("/"), Err(PathError::NoRoots { .. })));
        assert!(matches!(
            SkillRoots::new(&[f.root.join("missing")], false),
            Err(PathError::SkillsDir { .. })
        ));
    }
}
