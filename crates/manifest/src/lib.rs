//! `skillsandbox.yaml`: schema, parsing with file:line:column errors, validation,
//! lints, JSON Schema, and resolution into a [`Policy`].
//!
//! Pure: no I/O beyond reading the manifest file.

pub mod policy;

pub use policy::*;
