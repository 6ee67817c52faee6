//! One module per subcommand. Each exposes `Args` (clap) and `main(Args) -> Result<u8>`.

pub mod inspect;
pub mod schema;
pub mod validate;

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
