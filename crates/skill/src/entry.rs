//! The entrypoint of a `SKILL.md` skill that has no manifest: the one script it ships.
//!
//! Candidates are the scripts in `scripts/` (or, when there is no such directory, at
//! the top of the skill folder) with a known interpreter, by shebang or extension.
//! One candidate is the entrypoint; among several, one named `main`, `run`, `cli`,
//! `index` or after the skill wins; otherwise the choice is the caller's (`--script`),
//! and the error lists the candidates.

use std::io::Read;
use std::path::{Path, PathBuf};

/// How a script is started inside the sandbox: `command args...` in `/skill`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub command: String,
    pub args: Vec<String>,
    /// The script, relative to the skill folder.
    pub script: String,
}

/// Why no entrypoint could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("{dir}: no script to run: SKILL.md skills run a script from scripts/ (Python, shell, Node, Ruby or Perl)")]
    None { dir: String },
    #[error("{dir}: several scripts could be the entrypoint: {}; pass the one to run with --script", candidates.join(", "))]
    Ambiguous {
        dir: String,
        candidates: Vec<String>,
    },
    #[error("{dir}: --script {script}: {problem}")]
    BadScript {
        dir: String,
        script: String,
        problem: String,
    },
}

const PREFERRED: &[&str] = &["main", "run", "cli", "index"];

/// The interpreter for a script, from its shebang or its extension.
fn interpreter(path: &Path) -> Option<String> {
    let mut head = [0u8; 128];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    if let Some(line) = head[..n].strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(line);
        let line = line.lines().next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let name = if first.ends_with("/env") {
            words.find(|w| !w.starts_with('-'))?
        } else {
            first.rsplit('/').next().unwrap_or(first)
        };
        return Some(name.to_owned());
    }
    let ext = path.extension()?.to_str()?;
    let interp = match ext {
        "py" => "python3",
        "sh" => "sh",
        "bash" => "bash",
        "js" | "mjs" | "cjs" => "node",
        "rb" => "ruby",
        "pl" => "perl",
        _ => return None,
    };
    Some(interp.to_owned())
}

fn is_candidate_name(name: &str) -> bool {
    !(name.starts_with('.')
        || name.starts_with('_')
        || name.starts_with("test_")
        || name.contains("_test.")
        || name.contains(".test."))
}

/// Every script in `dir/scripts` (or `dir`), relative to `dir`, sorted.
pub fn candidates(dir: &Path) -> Vec<(String, String)> {
    let scripts = dir.join("scripts");
    let (base, prefix) = if scripts.is_dir() {
        (scripts, "scripts/")
    } else {
        (dir.to_path_buf(), "")
    };
    let Ok(read) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if !is_candidate_name(&name) {
                return None;
            }
            let interp = interpreter(&e.path())?;
            Some((format!("{prefix}{name}"), interp))
        })
        .collect();
    out.sort();
    out
}

/// The entrypoint of the skill in `dir` named `skill_name`; `script` is the caller's
/// choice (relative to `dir`), if any.
pub fn discover(dir: &Path, skill_name: &str, script: Option<&Path>) -> Result<Entry, EntryError> {
    let shown = dir.display().to_string();
    if let Some(script) = script {
        return chosen(dir, script);
    }
    let found = candidates(dir);
    let pick = match found.as_slice() {
        [] => return Err(EntryError::None { dir: shown }),
        [one] => one.clone(),
        many => {
            let stem = |p: &str| {
                Path::new(p)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .unwrap_or_default()
            };
            let preferred: Vec<&(String, String)> = many
                .iter()
                .filter(|(p, _)| {
                    let s = stem(p);
                    PREFERRED.contains(&s.as_str()) || s == skill_name
                })
                .collect();
            match preferred.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(EntryError::Ambiguous {
                        dir: shown,
                        candidates: many.iter().map(|(p, _)| p.clone()).collect(),
                    })
                }
            }
        }
    };
    Ok(Entry {
        command: pick.1,
        args: vec![pick.0.clone()],
        script: pick.0,
    })
}

fn chosen(dir: &Path, script: &Path) -> Result<Entry, EntryError> {
    let fail = |problem: &str| EntryError::BadScript {
        dir: dir.display().to_string(),
        script: script.display().to_string(),
        problem: problem.to_owned(),
    };
    let rel = skillsandbox_manifest::normalize_path(script);
    if rel.is_absolute()
        || rel.as_os_str().is_empty()
        || script
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(fail("give a path inside the skill folder, relative to it"));
    }
    let full: PathBuf = dir.join(&rel);
    let meta =
        std::fs::symlink_metadata(&full).map_err(|_| fail("no such file in the skill folder"))?;
    if !meta.is_file() {
        return Err(fail("not a regular file"));
    }
    let interp = interpreter(&full).ok_or_else(|| {
        fail("no shebang and no known extension (.py .sh .bash .js .mjs .cjs .rb .pl)")
    })?;
    let rel = rel
        .to_str()
        .ok_or_else(|| fail("the path is not UTF-8"))?
        .to_owned();
    Ok(Entry {
        command: interp,
        args: vec![rel.clone()],
        script: rel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        t
    }

    #[test]
    fn one_script_is_the_entrypoint() {
        let t = skill(&[
            ("SKILL.md", ""),
            ("scripts/fetch.py", "print(1)\n"),
            ("scripts/README", "x"),
        ]);
        let e = discover(t.path(), "x", None).unwrap();
        assert_eq!(
            (e.command.as_str(), e.args.clone()),
            ("python3", vec!["scripts/fetch.py".to_owned()])
        );
    }

    #[test]
    fn shebang_wins_over_extension() {
        let t = skill(&[
            ("run", "#!/usr/bin/env -S node --no-warnings\n"),
            ("SKILL.md", ""),
        ]);
        assert_eq!(discover(t.path(), "x", None).unwrap().command, "node");
        let t = skill(&[("scripts/a.sh", "#!/bin/bash\n")]);
        assert_eq!(discover(t.path(), "x", None).unwrap().command, "bash");
    }

    #[test]
    fn ambiguous_lists_candidates_and_preferred_names_win() {
        let t = skill(&[
            ("scripts/a.py", ""),
            ("scripts/b.sh", ""),
            ("scripts/_lib.py", ""),
        ]);
        match discover(t.path(), "x", None) {
            Err(EntryError::Ambiguous { candidates, .. }) => {
                assert_eq!(candidates, vec!["scripts/a.py", "scripts/b.sh"]);
            }
            other => panic!("{other:?}"),
        }
        let t = skill(&[("scripts/a.py", ""), ("scripts/convert.py", "")]);
        assert_eq!(
            discover(t.path(), "convert", None).unwrap().script,
            "scripts/convert.py"
        );
        assert_eq!(
            discover(t.path(), "x", Some(Path::new("scripts/a.py")))
                .unwrap()
                .script,
            "scripts/a.py"
        );
    }

    #[test]
    fn chosen_script_stays_inside() {
        let t = skill(&[("scripts/a.py", "")]);
        for bad in ["../x.py", "/etc/passwd", "scripts/none.py", "scripts"] {
            assert!(
                matches!(
                    discover(t.path(), "x", Some(Path::new(bad))),
                    Err(EntryError::BadScript { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            discover(&t.path().join("none"), "x", None),
            Err(EntryError::None { .. })
        ));
    }
}
