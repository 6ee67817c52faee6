//! One module per subcommand. Each exposes `Args` (clap) and `main(Args) -> Result<u8>`.

pub mod approve;
pub mod audit;
pub mod check;
pub mod doctor;
pub mod exec;
pub mod hook;
pub mod init;
pub mod inspect;
pub mod learn;
pub mod oci;
pub mod report;
pub mod run;
pub mod scan;
pub mod schema;
pub mod serve;
pub mod session;
pub mod validate;

use std::path::Path;

use skillsandbox_manifest::{Policy, ResolveEnv};
use skillsandbox_skill::LoadedSkill;

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

/// Load and resolve a skill (manifest or `SKILL.md`); an invalid one is exit 2 with
/// file:line:column.
pub fn load_skill(path: &Path, script: Option<&Path>) -> anyhow::Result<LoadedSkill> {
    skillsandbox_skill::load(path, &ResolveEnv::from_process_env(), script).map_err(|e| {
        Exit {
            code: 2,
            message: e.to_string(),
        }
        .into()
    })
}

/// [`load_skill`], for the policy only.
pub fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    load_skill(path, None).map(|s| s.policy)
}

/// Refuse (exit 125, with the diff and the command that approves) a skill that is
/// not approved as it is, where approval is required.
pub fn require_approved(skill: &LoadedSkill, require: bool) -> anyhow::Result<()> {
    let store = skillsandbox_skill::lock::Store::for_invoker();
    let checked = skillsandbox_skill::lock::check(skill, &store, require).map_err(|e| Exit {
        code: 125,
        message: format!(
            "skillsandbox: cannot check the approval of {}: {e}\n  hint: fix or remove the lockfile, then `skillsandbox approve {}`",
            skill.dir.display(),
            skill.dir.display()
        ),
    })?;
    match checked.refusal(skill) {
        Some(message) => Err(Exit { code: 125, message }.into()),
        None => Ok(()),
    }
}
