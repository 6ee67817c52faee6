//! YAML text → a tree of nodes that each keep their line and column.
//!
//! serde-saphyr parses (YAML 1.2, panic-free, with budgets against alias bombs and deep
//! nesting); this module only collects its events into [`Node`]s through
//! `serde_saphyr::Spanned`, so every later check can point at the exact value. Duplicate
//! keys are passed through here and reported (with both positions) by `convert`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

use crate::diag::{Diagnostic, Pos};

/// Largest manifest we parse. Real ones are a few hundred bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
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

/// Parse one manifest document. Syntax errors come back as one positioned diagnostic.
pub(crate) fn parse(src: &str, file: &str) -> Result<Node, Box<Diagnostic>> {
    parse_document(src, file, MAX_MANIFEST_BYTES, "manifest")
}

/// Parse one YAML document of at most `limit` bytes into a position-keeping tree;
/// `what` names the document in messages ("manifest", "policy file"). Shared by
/// every skillsandbox file format so all of them report errors the same way.
pub fn parse_document(
    src: &str,
    file: &str,
    limit: usize,
    what: &str,
) -> Result<Node, Box<Diagnostic>> {
    if src.len() > limit {
        return Err(Box::new(Diagnostic::error(
            file,
            Some(Pos::new(1, 1)),
            "",
            format!("the {what} is {} bytes; the limit is {limit}", src.len()),
        )));
    }
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        // `y`, `no`, `on` stay strings: YAML 1.1 booleans surprise people.
        strict_booleans: true,
        // `0755` stays a string instead of silently becoming a number.
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
            Err(Box::new(
                Diagnostic::error(file, Some(pos), "", format!("invalid YAML: {message}"))
                    .with_hint(syntax_hint(&message, what)),
            ))
        }
    }
}

fn syntax_hint(message: &str, what: &str) -> String {
    if message.contains("tab") {
        "YAML indentation must use spaces, not tabs".to_owned()
    } else if message.contains("multiple") {
        format!("a {what} is a single YAML document: remove the `---` separators")
    } else {
        "check the indentation and the quotes/brackets around this point".to_owned()
    }
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    if loc.line() == 0 {
        return Pos::new(1, 1);
    }
    Pos::new(clamp(loc.line()), clamp(loc.column().max(1)))
}

fn into_node(s: Spanned<RawNode>) -> Node {
    let pos = pos_of(&s);
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
        // Beyond i128 is beyond every bound we check; keep it as a number that fails them.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let n = parse("a:\n  b: [1, x]\n", "f").unwrap();
        let Value::Map(top) = &n.value else { panic!() };
        let (k, v) = &top[0];
        assert_eq!(k.pos, Pos::new(1, 1));
        let Value::Map(inner) = &v.value else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos::new(2, 3));
        let Value::Seq(items) = &inner[0].1.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos::new(2, 10));
        assert_eq!(items[1].value, Value::Str("x".into()));
    }

    #[test]
    fn yaml11_booleans_and_leading_zeros_stay_strings() {
        let n = parse("a: yes\nb: 0755\n", "f").unwrap();
        let Value::Map(m) = n.value else { panic!() };
        assert_eq!(m[0].1.value, Value::Str("yes".into()));
        assert_eq!(m[1].1.value, Value::Str("0755".into()));
    }

    #[test]
    fn syntax_error_is_positioned() {
        let d = parse("a: [1, 2\nb: 3\n", "m.yaml").unwrap_err();
        assert_eq!(d.pos, Some(Pos::new(2, 2)));
        assert!(d.to_string().starts_with("m.yaml:2:2: invalid YAML: "));
    }
}
