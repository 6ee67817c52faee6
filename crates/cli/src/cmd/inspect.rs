//! `skillsandbox inspect` (being written by the manifest work; see issue 2).

/// Placeholder arguments until the manifest front end lands.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skill directory or manifest file.
    pub path: std::path::PathBuf,
}

pub fn main(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`inspect` is not built yet")
}
