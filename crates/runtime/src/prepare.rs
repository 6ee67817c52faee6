//! Supervisor preparation before the launch (DESIGN.md §3 step 1): who the sandbox
//! runs as, declared write directories that must exist, and the launch plan.

use std::path::{Path, PathBuf};

use skillsandbox_manifest::Policy;
use skillsandbox_sandbox::disable::LayerDisabledForTests;
use skillsandbox_sandbox::host::capture_host_layout;
use skillsandbox_sandbox::plan::{self, Identity, ImageRoot, LaunchPlan, LowerInput};
use skillsandbox_sandbox::sys;

/// Host uid/gid the sandbox runs as when the invoker is root: `nobody`. The skill
/// never holds host root; declared paths are idmapped so what it writes there is
/// owned by the invoker.
pub const ROOT_INVOKER_SANDBOX_ID: u32 = 65534;

/// Errors a user can act on, before anything was started.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("declared path {path} is a symlink to {target}; declare {target} instead")]
    SymlinkPath { path: PathBuf, target: PathBuf },
    #[error("cannot create the declared write directory {path}: {source}")]
    CreateWriteDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lower the policy: {0}")]
    Plan(#[from] plan::PlanError),
    #[error("{0}")]
    DisableLayer(String),
}

pub fn identity() -> Identity {
    let uid = sys::getuid();
    if uid == 0 {
        Identity {
            host_uid: ROOT_INVOKER_SANDBOX_ID,
            host_gid: ROOT_INVOKER_SANDBOX_ID,
            drop_host_root: true,
            inside_uid: 0,
            inside_gid: 0,
        }
    } else {
        Identity {
            host_uid: uid,
            host_gid: sys::getgid(),
            drop_host_root: false,
            inside_uid: 0,
            inside_gid: 0,
        }
    }
}

/// Refuse declared paths that are symlinks (a link is resolved on the host and could
/// point anywhere); create missing write directories (mode 0700, owned by the
/// invoker). Missing read paths are skipped by the plan and reported.
pub fn check_declared_paths(policy: &Policy) -> Result<Vec<String>, PrepareError> {
    let mut notes = Vec::new();
    let fs = &policy.filesystem;
    for p in fs.read.iter().chain(&fs.write) {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            return Err(PrepareError::SymlinkPath {
                path: p.clone(),
                target,
            });
        }
        // A symlink in a parent component is refused the same way.
        if let Ok(real) = std::fs::canonicalize(p) {
            if real != *p {
                return Err(PrepareError::SymlinkPath {
                    path: p.clone(),
                    target: real,
                });
            }
        }
    }
    for w in &fs.write {
        if std::fs::symlink_metadata(w).is_err() {
            create_write_dir(w)?;
            notes.push(format!("created missing write directory {}", w.display()));
        }
    }
    for r in &fs.read {
        if std::fs::symlink_metadata(r).is_err() && !fs.write.contains(r) {
            notes.push(format!(
                "declared read path {} does not exist; not mounted",
                r.display()
            ));
        }
    }
    Ok(notes)
}

fn create_write_dir(p: &Path) -> Result<(), PrepareError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|source| PrepareError::CreateWriteDir {
            path: p.to_path_buf(),
            source,
        })
}

pub fn host_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Build the launch plan for this host. `extra_ro_binds` is empty except for `check`;
/// `image_root` is set by `skillsandbox oci` only.
pub fn launch_plan(
    policy: &Policy,
    extra_args: &[String],
    seccomp_notify: bool,
    extra_ro_binds: &[(PathBuf, PathBuf)],
    image_root: Option<&ImageRoot>,
) -> Result<LaunchPlan, PrepareError> {
    let disabled = LayerDisabledForTests::from_env().map_err(PrepareError::DisableLayer)?;
    let host = capture_host_layout(policy);
    let env = host_env();
    Ok(plan::lower(
        policy,
        &LowerInput {
            host: &host,
            identity: identity(),
            host_env: &env,
            extra_args,
            seccomp_notify,
            extra_ro_binds,
            dangerously_disabled_layer: disabled,
            image_root,
        },
    )?)
}

/// Where the host has `cmd` on its PATH, for the "entrypoint not visible" hint.
pub fn host_which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}
