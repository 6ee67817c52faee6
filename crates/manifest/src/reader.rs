//! Reading the YAML node tree: checked mappings (unknown, duplicate and missing keys),
//! typed scalars and lists, each error positioned and named by field path. The
//! manifest sections themselves are read in `convert.rs`.

use std::collections::BTreeMap;

use crate::check::{self, Problem};
use crate::diag::{Diagnostic, Pos};
use crate::types::Located;
use crate::yaml::{Node, Value};

/// Collects every error and the position of every value while reading.
pub(crate) struct Cx<'f> {
    pub file: &'f str,
    pub errors: Vec<Diagnostic>,
    pub positions: BTreeMap<String, Pos>,
}

/// A mapping whose keys were checked: only known keys, each once, values not null.
pub(crate) struct Mapping<'n> {
    pub path: String,
    pub pos: Pos,
    pub entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Mapping<'n> {
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
    pub(crate) fn child(&self, key: &str) -> String {
        child(&self.path, key)
    }
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What was found, for type errors: scalars by value, collections by kind.
fn found(v: &Value) -> String {
    match v {
        Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_) => {
            format!("{} ({})", v.kind(), describe(v))
        }
        other => other.kind().to_owned(),
    }
}

pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => format!("{s:?}"),
        other => other.kind().to_owned(),
    }
}

impl<'f> Cx<'f> {
    pub(crate) fn error(
        &mut self,
        pos: Pos,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.errors
            .push(Diagnostic::error(self.file, Some(pos), field, message).with_hint_opt(hint));
    }

    pub(crate) fn problem(&mut self, pos: Pos, field: &str, p: Problem) {
        self.error(pos, field, p.message, p.hint);
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        let hint = match (&node.value, expected) {
            (Value::Int(_) | Value::Float(_), "a string") if field == "skill.version" => {
                Some("write a quoted semantic version, e.g. \"0.1.0\"".to_owned())
            }
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), "a string") => Some(format!(
                "put the value in quotes: \"{}\"",
                describe(&node.value)
            )),
            (Value::Str(s), "a whole number" | "a number") if s.trim().parse::<f64>().is_ok() => {
                Some("remove the quotes".to_owned())
            }
            (Value::Str(_) | Value::Int(_) | Value::Float(_), "a list") => {
                Some(format!("write a list: [{}]", describe(&node.value)))
            }
            _ => None,
        };
        self.error(
            node.pos,
            field,
            format!("expected {expected}, found {}", found(&node.value)),
            hint,
        );
    }

    /// Checks the keys of a mapping. `None` (after reporting) when it is not a mapping.
    pub(crate) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        keys: &[&str],
    ) -> Option<Mapping<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping (key: value pairs)");
            return None;
        };
        let mut out = Mapping {
            path: path.to_owned(),
            pos: node.pos,
            entries: Vec::new(),
        };
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        for (k, v) in entries {
            let Value::Str(key) = &k.value else {
                self.error(
                    k.pos,
                    path,
                    format!("keys must be strings, found {}", k.value.kind()),
                    Some(format!("valid keys here: {}", keys.join(", "))),
                );
                continue;
            };
            let field = child(path, key);
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == key) {
                self.error(
                    k.pos,
                    &field,
                    format!("duplicate key `{key}` (first set at {first})"),
                    Some("keep one of them: YAML keys must be unique".into()),
                );
                continue;
            }
            seen.push((key, k.pos));
            if !keys.contains(&key.as_str()) {
                let hint = match check::closest(key, keys) {
                    Some(near) => {
                        format!(
                            "did you mean `{near}`? valid keys here: {}",
                            keys.join(", ")
                        )
                    }
                    None => format!("valid keys here: {}", keys.join(", ")),
                };
                self.error(k.pos, &field, format!("unknown key `{key}`"), Some(hint));
                continue;
            }
            if v.value != Value::Null {
                self.positions.insert(field, v.pos);
                out.entries.push((key, v));
            }
        }
        Some(out)
    }

    pub(crate) fn required<'n>(
        &mut self,
        m: &Mapping<'n>,
        key: &str,
        hint: &str,
    ) -> Option<&'n Node> {
        let node = m.get(key);
        if node.is_none() {
            let message = format!("missing required key `{key}`");
            self.error(m.pos, &m.child(key), message, Some(hint.to_owned()));
        }
        node
    }

    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<Located<String>> {
        match &node.value {
            Value::Str(s) => Some(Located::new(s.clone(), node.pos)),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    pub(crate) fn uint(
        &mut self,
        node: &Node,
        path: &str,
        (min, max): (u64, u64),
    ) -> Option<Located<u64>> {
        let n = match &node.value {
            Value::Int(i) => *i,
            Value::Float(f) if f.fract() == 0.0 => {
                self.out_of_range(node, path, &describe(&node.value), min, max);
                return None;
            }
            _ => {
                self.wrong_type(node, path, "a whole number");
                return None;
            }
        };
        match u64::try_from(n) {
            Ok(v) if (min..=max).contains(&v) => Some(Located::new(v, node.pos)),
            _ => {
                self.out_of_range(node, path, &n.to_string(), min, max);
                None
            }
        }
    }

    pub(crate) fn flag(&mut self, node: &Node, path: &str) -> Option<Located<bool>> {
        match &node.value {
            Value::Bool(b) => Some(Located::new(*b, node.pos)),
            _ => {
                self.wrong_type(node, path, "true or false");
                None
            }
        }
    }

    pub(crate) fn float(
        &mut self,
        node: &Node,
        path: &str,
        (min, max): (f64, f64),
    ) -> Option<Located<f64>> {
        #[allow(clippy::cast_precision_loss)] // range-checked right below
        let v = match &node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => {
                self.wrong_type(node, path, "a number");
                return None;
            }
        };
        if (min..=max).contains(&v) {
            Some(Located::new(v, node.pos))
        } else {
            self.error(
                node.pos,
                path,
                format!(
                    "{} is out of range: must be between {min} and {max}",
                    describe(&node.value)
                ),
                None,
            );
            None
        }
    }

    pub(crate) fn out_of_range(&mut self, node: &Node, path: &str, got: &str, min: u64, max: u64) {
        let message = if min == 1 && got.parse::<i128>().is_ok_and(|v| v < 1) {
            format!("must be greater than 0 (got {got})")
        } else {
            format!("{got} is out of range: must be between {min} and {max}")
        };
        self.error(node.pos, path, message, None);
    }

    pub(crate) fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.positions.insert(format!("{path}[{i}]"), item.pos);
                }
                Some(items)
            }
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// A list of strings, each passed through `check`.
    pub(crate) fn strings<T>(
        &mut self,
        node: &Node,
        path: &str,
        check: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<Vec<Located<String>>> {
        let items = self.list(node, path)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{path}[{i}]");
            if let Some(s) = self.string(item, &field) {
                match check(&s.value) {
                    Ok(_) => out.push(s),
                    Err(p) => self.problem(s.pos, &field, p),
                }
            }
        }
        Some(out)
    }

    pub(crate) fn choice<T: Copy>(
        &mut self,
        node: &Node,
        path: &str,
        choices: &[(&str, T)],
    ) -> Option<Located<T>> {
        let s = self.string(node, path)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s.value) {
            return Some(Located::new(*v, s.pos));
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let lower = s.value.to_ascii_lowercase();
        let hint = match check::closest(&lower, &names) {
            Some(near) => format!("did you mean `{near}`? valid values: {}", names.join(", ")),
            None => format!("valid values: {}", names.join(", ")),
        };
        self.error(
            s.pos,
            path,
            format!("invalid value `{}`", s.value),
            Some(hint),
        );
        None
    }

    pub(crate) fn checked(
        &mut self,
        node: &Node,
        path: &str,
        check: impl Fn(&str) -> Result<(), Problem>,
    ) -> Option<Located<String>> {
        let s = self.string(node, path)?;
        match check(&s.value) {
            Ok(()) => Some(s),
            Err(p) => {
                self.problem(s.pos, path, p);
                None
            }
        }
    }
}
