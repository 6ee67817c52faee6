//! `skillsandbox schema`: print the JSON Schema of skillsandbox.yaml.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

/// Print the JSON Schema (draft-07) of skillsandbox.yaml, generated from the same
/// Rust types the parser fills in, so editors can check and complete manifests.
///
/// With the YAML language server (VS Code "YAML" extension, and most editors), save
/// the schema and put this first line in the manifest:
///
///   # yaml-language-server: $schema=./skillsandbox.schema.json
///
/// or map it in VS Code settings.json:
///
///   "yaml.schemas": { "./skillsandbox.schema.json": "**/skillsandbox.yaml" }
///
/// The schema checks structure and types; `skillsandbox validate` checks everything
/// (domain syntax, paths, CIDRs, ...) and lints.
///
/// Examples:
///
///   skillsandbox schema > skillsandbox.schema.json
///
///   skillsandbox schema --output skillsandbox.schema.json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Write the schema to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let mut text = serde_json::to_string_pretty(&skillsandbox_manifest::json_schema())
        .context("serialising the schema")?;
    text.push('\n');
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("writing the schema to {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to stdout")?,
    }
    Ok(0)
}
