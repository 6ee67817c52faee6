//! One module per subcommand. Each exposes `Args` (clap) and `main(Args) -> Result<u8>`.

pub mod audit;
pub mod check;
pub mod doctor;
pub mod exec;
pub mod hook;
pub mod init;
pub mod inspect;
pub mod report;
pub mod run;
pub mod schema;
pub mod serve;
pub mod session;
pub mod validate;

use std::path::Path;

use skillsandbox_manifest::{load, Policy, ResolveEnv};

/// An error that carries the process exit code it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// Exit code for an error that reached `main`: the code an [`Exit`] carries, else 1.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Exit>())
        .map_or(1, |e| e.code)
}

/// Load and resolve a manifest; an invalid one is exit 2 with file:line:column.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    match load(path, &ResolveEnv::from_process_env()) {
        Ok(loaded) => Ok(loaded.policy),
        Err(e) => Err(Exit {
            code: 2,
            message: e.to_string(),
        }
        .into()),
    }
}
