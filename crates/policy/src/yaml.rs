//! YAML text → a tree of nodes that each keep their line and column.
//!
//! serde-saphyr parses (YAML 1.2, panic-free, with budgets against alias bombs and
//! deep nesting); this module only collects its events into [`Node`]s through
//! `serde_saphyr::Spanned`, so `read.rs` can point every error at the exact value.
//! Same approach as the manifest reader, whose tree is private to its crate.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};
use skillsandbox_manifest::{Diagnostic, Pos};

/// Largest policy file we parse. Real ones are a few hundred bytes.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What the user wrote, in words, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parse one YAML document. Syntax errors come back as one positioned diagnostic.
pub(crate) fn parse(src: &str, file: &str) -> Result<Node, Box<Diagnostic>> {
    if src.len() > MAX_POLICY_BYTES {
        return Err(Box::new(Diagnostic::error(
            file,
            Some(Pos::new(1, 1)),
            "",
            format!(
                "the policy file is {} bytes; the limit is {MAX_POLICY_BYTES}",
                src.len()
            ),
        )));
    }
    if src.trim().is_empty() {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos::new(1, 1),
        });
    }
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(src, options) {
        Ok(spanned) => Ok(into_node(spanned)),
        Err(err) => {
            let pos = err
                .location()
                .filter(|l| l.line() >= 1)
                .map(|l| Pos::new(clamp(l.line()), clamp(l.column().max(1))))
                .unwrap_or(Pos::new(1, 1));
            let message = UserMessageFormatter
                .format_message(err.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>();
            let hint = if message.contains("tab") {
                "YAML indentation must use spaces, not tabs"
            } else {
                "check the indentation and the quotes/brackets around this point"
            };
            Err(Box::new(
                Diagnostic::error(file, Some(pos), "", format!("invalid YAML: {message}"))
                    .with_hint(hint),
            ))
        }
    }
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn into_node(s: Spanned<RawNode>) -> Node {
    let loc = s.referenced;
    let pos = if loc.line() == 0 {
        Pos::new(1, 1)
    } else {
        Pos::new(clamp(loc.line()), clamp(loc.column().max(1)))
    };
    let value = match s.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b),
        RawNode::Int(i) => Value::Int(i),
        RawNode::Float(f) => Value::Float(f),
        RawNode::Str(s) => Value::Str(s),
        RawNode::Seq(items) => Value::Seq(items.into_iter().map(into_node).collect()),
        RawNode::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (into_node(k), into_node(v)))
                .collect(),
        ),
    };
    Node { value, pos }
}

/// The shape serde-saphyr fills in; nesting is bounded by its depth budget.
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        Ok(i128::try_from(v).map_or(RawNode::Float(v as f64), RawNode::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}
