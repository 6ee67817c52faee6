//! Finding and reading a manifest file: the only module that touches the filesystem.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, ManifestError, Pos};
use crate::lint::lint_with_home;
use crate::policy::{ManifestSource, Policy};
use crate::resolve::{resolve, ResolveEnv};
use crate::yaml::MAX_MANIFEST_BYTES;

/// The manifest's file name inside a skill directory.
pub const MANIFEST_FILE: &str = "skillsandbox.yaml";

/// A manifest read, validated, resolved and linted.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The resolved policy; `manifest` holds the file's path and SHA-256.
    pub policy: Policy,
    /// Lint warnings, positioned in the manifest.
    pub warnings: Vec<Diagnostic>,
    /// Absolute (canonical) path of the manifest file.
    pub manifest_path: PathBuf,
}

const LOCATE_HINT: &str =
    "pass a skill directory that contains skillsandbox.yaml, or the manifest file itself";

/// `path` is a skill directory (containing `skillsandbox.yaml`) or a manifest file.
/// Returns the canonical skill directory and manifest file.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf), ManifestError> {
    let fail = |message: String, hint: &str| ManifestError::Locate {
        path: path.to_path_buf(),
        message,
        hint: hint.to_owned(),
    };
    let meta = fs::metadata(path).map_err(|e| fail(format!("cannot open: {e}"), LOCATE_HINT))?;
    let file = if meta.is_dir() {
        let file = path.join(MANIFEST_FILE);
        if !file.is_file() {
            let hint = if path.join("skillsandbox.yml").is_file() {
                "rename skillsandbox.yml to skillsandbox.yaml"
            } else {
                LOCATE_HINT
            };
            return Err(fail(format!("no {MANIFEST_FILE} in this directory"), hint));
        }
        file
    } else if meta.is_file() {
        path.to_path_buf()
    } else {
        return Err(fail("not a regular file or directory".into(), LOCATE_HINT));
    };
    let file = fs::canonicalize(&file)
        .map_err(|e| fail(format!("cannot resolve the path: {e}"), LOCATE_HINT))?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fail("the manifest has no parent directory".into(), LOCATE_HINT))?;
    Ok((dir, file))
}

/// Locate, read, parse, validate, resolve and lint. Diagnostics name the file as
/// `path` was given (joined with `skillsandbox.yaml` for a directory).
pub fn load(path: &Path, env: &ResolveEnv) -> Result<Loaded, ManifestError> {
    let (skill_dir, manifest_path) = locate(path)?;
    let label = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    }
    .display()
    .to_string();
    let bytes = read_limited(&manifest_path)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let src = std::str::from_utf8(&bytes).map_err(|e| {
        let head = &bytes[..e.valid_up_to()];
        let line = head.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = head.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&head[line_start..]).chars().count() + 1;
        let pos = Pos::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        );
        ManifestError::invalid(vec![Diagnostic::error(
            &label,
            Some(pos),
            "",
            "the manifest is not valid UTF-8",
        )
        .with_hint("save the file as UTF-8")])
    })?;
    let manifest = crate::parse_str(src, &label)?;
    let mut policy = resolve(&manifest, &skill_dir, env).map_err(|e| {
        let mut diagnostics = e.diagnostics();
        for d in &mut diagnostics {
            d.file.clone_from(&label);
        }
        ManifestError::invalid(diagnostics)
    })?;
    policy.manifest = Some(ManifestSource {
        path: manifest_path.clone(),
        sha256,
    });
    let home = Some(env.home.as_path()).filter(|h| h.is_absolute());
    let mut warnings = lint_with_home(&policy, home);
    for w in &mut warnings {
        w.file.clone_from(&label);
        w.pos = manifest.positions.get(&w.field).copied();
    }
    Ok(Loaded {
        policy,
        warnings,
        manifest_path,
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ManifestError> {
    let read_err = |error| ManifestError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_MANIFEST_BYTES).unwrap_or(u64::MAX) + 1;
    file.take(limit).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(read_err(std::io::Error::other(format!(
            "larger than {MAX_MANIFEST_BYTES} bytes; a manifest is a small YAML file"
        ))));
    }
    Ok(bytes)
}
