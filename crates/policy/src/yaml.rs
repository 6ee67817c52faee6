//! YAML text → a tree of nodes that each keep their line and column: the manifest's
//! reader (`skillsandbox_manifest::yaml`), so policy files report errors exactly the
//! way manifests do.

use skillsandbox_manifest::yaml::parse_document;
pub(crate) use skillsandbox_manifest::yaml::{Node, Value};
use skillsandbox_manifest::{Diagnostic, Pos};

/// Largest policy file we parse. Real ones are a few hundred bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// Parse one policy document; an empty file is an empty policy (no limits).
pub(crate) fn parse(src: &str, file: &str) -> Result<Node, Box<Diagnostic>> {
    if src.trim().is_empty() && src.len() <= MAX_POLICY_BYTES {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos::new(1, 1),
        });
    }
    parse_document(src, file, MAX_POLICY_BYTES, "policy file")
}
