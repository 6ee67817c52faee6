//! Finding skills: directories with a `skillsandbox.yaml`, and agent-skill folders
//! with a `SKILL.md` (name and description from its YAML front matter).
//!
//! Reads manifests and front matter only; never follows a symlinked directory (a link
//! could lead out of the skills directories) and never descends into hidden ones.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;
use skillsandbox_manifest::{load, ResolveEnv, MANIFEST_FILE};

pub use skillsandbox_skill::SKILL_MD;
/// How deep below a skills directory skills are looked for.
const MAX_DEPTH: usize = 2;
/// At most this many skills are listed.
pub const MAX_LISTED: usize = 500;

/// Why a `SKILL.md` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the YAML front matter is invalid: {message}")]
    FrontMatter { path: PathBuf, message: String },
}

/// What kind of skill a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkillKind {
    /// A `skillsandbox.yaml` declares its entrypoint and permissions.
    Manifest,
    /// A `SKILL.md` agent skill without a manifest.
    AgentSkill,
}

/// How `run_skill` can run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Runnable {
    /// With exactly what its manifest declares.
    Manifest,
    /// No manifest: its script runs under deny-all defaults (no network, no host
    /// files, no host environment), with the skill folder read-only at /skill.
    DenyAllDefaults,
    /// Its manifest is invalid (see `problem`); fix it first.
    No,
}

/// One skill found under the skills directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SkillEntry {
    /// Skill name: the manifest's `skill.name`, the front matter's `name`, or the
    /// directory name.
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    /// Absolute path of the skill directory (pass it, or `name`, to `run_skill`).
    pub path: String,
    /// Absolute path of `skillsandbox.yaml`, when there is one.
    pub manifest: Option<String>,
    pub kind: SkillKind,
    pub runnable: Runnable,
    /// Why it cannot run as it is (invalid manifest), or what to know about it.
    pub problem: Option<String>,
}

/// The `name` and `description` of a `SKILL.md`'s front matter, as the agent-skills
/// format defines them (a file that breaks the format is an error, with its line).
pub fn read_front_matter(path: &Path) -> Result<(Option<String>, Option<String>), DiscoverError> {
    let md =
        skillsandbox_skill::skill_md::read(path, &path.display().to_string()).map_err(|d| {
            DiscoverError::FrontMatter {
                path: path.to_path_buf(),
                message: skillsandbox_manifest::diag::render(&d),
            }
        })?;
    Ok((Some(md.name), Some(md.description)))
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// The skill in `dir`, if it holds one (`dir` should be canonical).
pub fn describe_dir(dir: &Path) -> Option<SkillEntry> {
    let manifest = dir.join(MANIFEST_FILE);
    let skill_md = dir.join(SKILL_MD);
    let md = if skill_md.is_file() {
        Some(read_front_matter(&skill_md))
    } else {
        None
    };
    if manifest.is_file() {
        let md_description = match &md {
            Some(Ok((_, d))) => d.clone(),
            _ => None,
        };
        let entry = match load(dir, &ResolveEnv::from_process_env()) {
            Ok(loaded) => {
                let s = &loaded.policy.skill;
                SkillEntry {
                    name: s.name.clone(),
                    version: Some(s.version.clone()),
                    description: s.description.clone().or(md_description),
                    path: dir.display().to_string(),
                    manifest: Some(loaded.manifest_path.display().to_string()),
                    kind: SkillKind::Manifest,
                    runnable: Runnable::Manifest,
                    problem: None,
                }
            }
            Err(e) => SkillEntry {
                name: dir_name(dir),
                version: None,
                description: md_description,
                path: dir.display().to_string(),
                manifest: Some(manifest.display().to_string()),
                kind: SkillKind::Manifest,
                runnable: Runnable::No,
                problem: Some(first_line(&e.to_string())),
            },
        };
        return Some(entry);
    }
    let md = md?;
    let (name, description, problem) = match md {
        Ok((n, d)) => (n, d, None),
        Err(e) => (None, None, Some(e.to_string())),
    };
    Some(SkillEntry {
        name: name.unwrap_or_else(|| dir_name(dir)),
        version: None,
        description,
        path: dir.display().to_string(),
        manifest: None,
        kind: SkillKind::AgentSkill,
        runnable: Runnable::DenyAllDefaults,
        problem: problem.or_else(|| {
            Some(format!(
                "no {MANIFEST_FILE}: its script runs under deny-all defaults; add a \
                 manifest declaring what it needs"
            ))
        }),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Every skill in `dir` (itself, or below it down to [`MAX_DEPTH`]), in path order.
/// Returns `true` as the second value when the listing was cut at [`MAX_LISTED`].
pub fn scan(dirs: &[PathBuf]) -> (Vec<SkillEntry>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    for d in dirs {
        walk(d, 0, &mut out, &mut truncated);
    }
    (out, truncated)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<SkillEntry>, truncated: &mut bool) {
    if out.len() >= MAX_LISTED {
        *truncated = true;
        return;
    }
    if let Some(entry) = describe_dir(dir) {
        if !out.iter().any(|e: &SkillEntry| e.path == entry.path) {
            out.push(entry);
        }
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    children.sort();
    for c in children {
        walk(&c, depth + 1, out, truncated);
    }
}

/// Skills whose name (or directory name) is `name`.
pub fn find_by_name(dirs: &[PathBuf], name: &str) -> Vec<SkillEntry> {
    let (all, _) = scan(dirs);
    all.into_iter()
        .filter(|e| e.name == name || Path::new(&e.path).file_name().is_some_and(|f| f == name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn scan_finds_manifests_agent_skills_and_invalid_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        write(
            &root.join("hello/skillsandbox.yaml"),
            "skill:\n  name: hello\n  version: \"1.0.0\"\n  description: says hello\n\
             entrypoint:\n  command: echo\n  args: [hi]\n",
        );
        write(
            &root.join("group/pdf/SKILL.md"),
            "---\nname: pdf-tools\ndescription: Work with PDFs\nallowed-tools: Bash\n---\n# PDF\n",
        );
        write(
            &root.join("broken/skillsandbox.yaml"),
            "skill:\n  name: Bad Name\n",
        );
        write(&root.join(".hidden/SKILL.md"), "---\nname: hidden\n---\n");
        write(&root.join("a/b/c/SKILL.md"), "---\nname: too-deep\n---\n");
        std::os::unix::fs::symlink(root.join("hello"), root.join("zlink")).unwrap();

        let (found, truncated) = scan(std::slice::from_ref(&root));
        assert!(!truncated);
        let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["broken", "pdf-tools", "hello"]);
        let hello = &found[2];
        assert_eq!(hello.kind, SkillKind::Manifest);
        assert_eq!(hello.runnable, Runnable::Manifest);
        assert_eq!(hello.version.as_deref(), Some("1.0.0"));
        assert_eq!(hello.description.as_deref(), Some("says hello"));
        let pdf = &found[1];
        assert_eq!(pdf.kind, SkillKind::AgentSkill);
        assert_eq!(pdf.runnable, Runnable::DenyAllDefaults);
        assert_eq!(pdf.description.as_deref(), Some("Work with PDFs"));
        let broken = &found[0];
        assert_eq!(broken.runnable, Runnable::No);
        assert!(broken
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("skillsandbox.yaml"));

        assert_eq!(find_by_name(std::slice::from_ref(&root), "pdf").len(), 1);
        assert_eq!(
            find_by_name(std::slice::from_ref(&root), "pdf-tools").len(),
            1
        );
        assert!(find_by_name(std::slice::from_ref(&root), "hidden").is_empty());
    }
}
