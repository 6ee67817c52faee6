//! Loading a skill as it ships: a folder with a `skillsandbox.yaml`, or with only a
//! `SKILL.md` (its entrypoint discovered from its scripts, deny-all permissions).
//! Every command and the MCP server load skills through [`load`].

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use skillsandbox_manifest::{
    lint_with_home, parse_str, resolve, Diagnostic, ManifestError, ManifestSource, Policy,
    ResolveEnv, Severity, MANIFEST_FILE,
};

use crate::entry;
use crate::skill_md::{self, SkillMd, SKILL_MD};

/// A skill, ready to run or to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSkill {
    /// The canonical skill folder.
    pub dir: PathBuf,
    pub policy: Policy,
    /// Lint warnings, and `SKILL.md` problems of a skill that has a manifest.
    pub warnings: Vec<Diagnostic>,
    /// `skillsandbox.yaml`, when the skill has one.
    pub manifest_path: Option<PathBuf>,
    /// The `SKILL.md` front matter, when the skill has a valid one.
    pub skill_md: Option<SkillMd>,
    /// The discovered script, for a skill without a manifest.
    pub script: Option<String>,
}

impl LoadedSkill {
    /// The file that declares the skill: the manifest, else `SKILL.md`.
    pub fn declared_by(&self) -> PathBuf {
        self.manifest_path
            .clone()
            .unwrap_or_else(|| self.dir.join(SKILL_MD))
    }
}

const HINT: &str =
    "pass a skill folder (with a skillsandbox.yaml or a SKILL.md), or the manifest file itself";

fn locate_err(path: &Path, message: String, hint: &str) -> ManifestError {
    ManifestError::Locate {
        path: path.to_path_buf(),
        message,
        hint: hint.to_owned(),
    }
}

/// Load the skill at `path`: a skill folder, its `skillsandbox.yaml` or its `SKILL.md`.
/// `script` chooses the entrypoint of a `SKILL.md` skill among several scripts.
pub fn load(
    path: &Path,
    env: &ResolveEnv,
    script: Option<&Path>,
) -> Result<LoadedSkill, ManifestError> {
    load_with(path, env, script, true)
}

/// [`load`], for approving and checking approvals: a `SKILL.md` skill whose
/// entrypoint cannot be chosen (instructions only, or several scripts and no
/// `script`) loads with an empty entrypoint, which nothing runs.
pub fn load_for_approval(
    path: &Path,
    env: &ResolveEnv,
    script: Option<&Path>,
) -> Result<LoadedSkill, ManifestError> {
    load_with(path, env, script, false)
}

fn load_with(
    path: &Path,
    env: &ResolveEnv,
    script: Option<&Path>,
    runnable: bool,
) -> Result<LoadedSkill, ManifestError> {
    let mut skill = locate_and_load(path, env, script, runnable)?;
    // A skill is third-party code: what it tries and is refused (a credential
    // under `~/.ssh`, a write to `/usr`) is recorded unless its manifest says
    // `isolation.record_denials: false`. It costs every `open` a round trip to the
    // supervisor, which `exec` and the hook's shell commands do not pay by default.
    skill.policy.record_denials.get_or_insert(true);
    Ok(skill)
}

fn locate_and_load(
    path: &Path,
    env: &ResolveEnv,
    script: Option<&Path>,
    runnable: bool,
) -> Result<LoadedSkill, ManifestError> {
    let is_skill_md = path.file_name().is_some_and(|n| n == SKILL_MD) && path.is_file();
    let dir_given = if is_skill_md {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    };
    let has_manifest = !is_skill_md && (path.is_file() || path.join(MANIFEST_FILE).is_file());
    if has_manifest {
        if script.is_some() {
            return Err(locate_err(
                path,
                "--script is for SKILL.md skills without a manifest".into(),
                "the manifest's `entrypoint` says what runs; edit it there",
            ));
        }
        return with_manifest(path, env);
    }
    if !dir_given.join(SKILL_MD).is_file() {
        if dir_given.join("skillsandbox.yml").is_file() {
            // The manifest loader says how to fix that one.
            return with_manifest(path, env);
        }
        let message = if dir_given.is_dir() {
            format!("no {MANIFEST_FILE} in this directory (and no {SKILL_MD})")
        } else {
            "no such skill folder".to_owned()
        };
        return Err(locate_err(path, message, HINT));
    }
    skill_md_only(&dir_given, env, script, runnable)
}

fn with_manifest(path: &Path, env: &ResolveEnv) -> Result<LoadedSkill, ManifestError> {
    let loaded = skillsandbox_manifest::load(path, env)?;
    let dir = loaded.policy.skill_dir.clone().unwrap_or_else(|| {
        loaded
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    let mut warnings = loaded.warnings;
    let md_path = dir.join(SKILL_MD);
    let mut front = None;
    if md_path.is_file() {
        let label = label_for(path, &md_path);
        match skill_md::read(&md_path, &label) {
            Ok(md) => {
                if md.name != loaded.policy.skill.name {
                    warnings.push(
                        Diagnostic::warning(
                            "skill-name-mismatch",
                            "skill.name",
                            format!(
                                "{MANIFEST_FILE} names the skill `{}`, {SKILL_MD} names it `{}`",
                                loaded.policy.skill.name, md.name
                            ),
                        )
                        .with_hint("use one name in both files"),
                    );
                }
                front = Some(md);
            }
            Err(problems) => warnings.extend(problems.into_iter().map(|mut d| {
                d.severity = Severity::Warning;
                d
            })),
        }
    }
    Ok(LoadedSkill {
        dir,
        policy: loaded.policy,
        warnings,
        manifest_path: Some(loaded.manifest_path),
        skill_md: front,
        script: None,
    })
}

/// How `SKILL.md` is named in diagnostics: as the user gave the skill.
fn label_for(given: &Path, md_path: &Path) -> String {
    let base = if given.is_dir() {
        given
    } else {
        given.parent().unwrap_or(given)
    };
    let shown = base.join(SKILL_MD);
    if md_path.ends_with(SKILL_MD) {
        shown.display().to_string()
    } else {
        md_path.display().to_string()
    }
}

fn skill_md_only(
    dir_given: &Path,
    env: &ResolveEnv,
    script: Option<&Path>,
    runnable: bool,
) -> Result<LoadedSkill, ManifestError> {
    let dir = std::fs::canonicalize(dir_given)
        .map_err(|e| locate_err(dir_given, format!("cannot resolve the path: {e}"), HINT))?;
    let md_path = dir.join(SKILL_MD);
    let label = dir_given.join(SKILL_MD).display().to_string();
    let md = skill_md::read(&md_path, &label)
        .map_err(|diagnostics| ManifestError::Invalid { diagnostics })?;
    let (entry, chosen) = match entry::discover(&dir, &md.name, script) {
        Ok(e) => (e, true),
        Err(entry::EntryError::None { .. } | entry::EntryError::Ambiguous { .. }) if !runnable => {
            let placeholder = entry::Entry {
                command: "none".into(),
                args: Vec::new(),
                script: String::new(),
            };
            (placeholder, false)
        }
        Err(e) => {
            return Err(locate_err(
                dir_given,
                e.to_string(),
                "or add a skillsandbox.yaml beside SKILL.md that declares `entrypoint` and what the skill needs",
            ))
        }
    };
    let version = md
        .metadata
        .get("version")
        .filter(|v| semver_like(v))
        .cloned()
        .unwrap_or_else(|| "0.0.0".to_owned());
    let text = synthesized_manifest(&md, &version, &entry);
    let label = format!("{label} (as a manifest)");
    let manifest = parse_str(&text, &label)?;
    let mut policy = resolve(&manifest, &dir, env)?;
    if !chosen {
        policy.entrypoint.command.clear();
    }
    let bytes = std::fs::read(&md_path).map_err(|error| ManifestError::Read {
        path: md_path.clone(),
        error,
    })?;
    policy.manifest = Some(ManifestSource {
        path: md_path,
        sha256: hex::encode(Sha256::digest(&bytes)),
    });
    let home = Some(env.home.as_path()).filter(|h| h.is_absolute());
    let warnings = lint_with_home(&policy, home);
    Ok(LoadedSkill {
        dir,
        policy,
        warnings,
        manifest_path: None,
        skill_md: Some(md),
        script: chosen.then_some(entry.script),
    })
}

fn semver_like(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The manifest a `SKILL.md` skill without one runs under: its identity, its script,
/// and no permissions at all. JSON strings are YAML strings, so any text is safe here.
pub fn synthesized_manifest(md: &SkillMd, version: &str, entry: &entry::Entry) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let description: String = md.description.chars().take(1000).collect();
    let args: Vec<String> = entry.args.iter().map(|a| q(a)).collect();
    format!(
        "skill:\n  name: {}\n  version: {}\n  description: {}\nentrypoint:\n  command: {}\n  args: [{}]\n  workdir: /skill\n",
        q(&md.name),
        q(version),
        q(&description),
        q(&entry.command),
        args.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ResolveEnv {
        ResolveEnv {
            home: PathBuf::from("/home/u"),
        }
    }

    #[test]
    fn skill_md_only_gets_deny_all_and_its_script() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("scripts")).unwrap();
        std::fs::write(
            d.join("SKILL.md"),
            "---\nname: notes\ndescription: \"Counts \\\"notes\\\": lines\"\nmetadata:\n  version: 1.2.3\n---\n",
        )
        .unwrap();
        std::fs::write(d.join("scripts/count.sh"), "wc -l\n").unwrap();
        let s = load(d, &env(), None).unwrap();
        assert_eq!(s.policy.skill.name, "notes");
        assert_eq!(s.policy.skill.version, "1.2.3");
        assert_eq!(s.policy.entrypoint.command, "sh");
        assert_eq!(s.policy.entrypoint.args, vec!["scripts/count.sh"]);
        assert!(s.policy.network.egress.is_empty());
        assert!(s.policy.filesystem.read.is_empty() && s.policy.env.allow.is_empty());
        assert_eq!(s.script.as_deref(), Some("scripts/count.sh"));
        assert_eq!(
            load(&d.join("SKILL.md"), &env(), None).unwrap().policy,
            s.policy
        );
    }

    #[test]
    fn errors_name_skill_md_and_locate() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(
            d.join("SKILL.md"),
            "---\nname: Bad_Name\ndescription: x\n---\n",
        )
        .unwrap();
        let e = load(d, &env(), None).unwrap_err().to_string();
        assert!(e.contains("SKILL.md:2:7"), "{e}");
        std::fs::remove_file(d.join("SKILL.md")).unwrap();
        let e = load(d, &env(), None).unwrap_err().to_string();
        assert!(
            e.contains("no skillsandbox.yaml in this directory (and no SKILL.md)"),
            "{e}"
        );
    }
}
