//! Policy YAML node tree → [`PolicyFile`], reporting every problem in one pass with
//! `file:line:column`, the field path, and a hint (unknown keys get "did you mean").

use std::collections::BTreeMap;

use skillsandbox_manifest::{Diagnostic, Pos};

use crate::file::{
    threshold_keys, Action, Budget, KillSwitch, PolicyFile, Price, SessionLimits, Span, StoreRules,
    Unavailable, ViolationRules,
};
use crate::yaml::{Node, Value};

const TOP: &[&str] = &[
    "version",
    "session",
    "budget",
    "violations",
    "kill_switch",
    "store",
    "prices",
];
const SESSION: &[&str] = &["max_duration", "max_runs"];
const BUDGET: &[&str] = &[
    "cpu_seconds",
    "wall_seconds",
    "egress_bytes",
    "cost_usd",
    "alert_at",
    "on_exceed",
];
const VIOLATIONS: &[&str] = &["thresholds", "on_threshold"];
const KILL_SWITCH: &[&str] = &["notify"];
const STORE: &[&str] = &["unavailable", "lease"];
const PRICE: &[&str] = &["input_per_mtok", "output_per_mtok"];

/// Reads the whole file. `Err` holds every error found, sorted by position.
pub(crate) fn read(root: &Node, file: &str) -> Result<PolicyFile, Vec<Diagnostic>> {
    let mut cx = Cx {
        file,
        errors: Vec::new(),
    };
    let mut out = PolicyFile::default();
    let empty = Node {
        value: Value::Map(Vec::new()),
        pos: root.pos,
    };
    let root = if root.value == Value::Null {
        &empty
    } else {
        root
    };
    if let Some(top) = cx.mapping(root, "", TOP) {
        for (key, node) in top {
            match key {
                "version" => {
                    if let Some(v) = cx.uint(node, "version") {
                        if v != 1 {
                            cx.error(
                                node.pos,
                                "version",
                                format!("unknown policy file version {v}"),
                                Some("this build reads version 1".into()),
                            );
                        }
                        out.version = Some(1);
                    }
                }
                "session" => out.session = cx.session(node),
                "budget" => out.budget = cx.budget(node),
                "violations" => out.violations = cx.violations(node),
                "kill_switch" => out.kill_switch = cx.kill_switch(node),
                "store" => out.store = cx.store(node),
                "prices" => out.prices = cx.prices(node),
                _ => {}
            }
        }
    }
    if cx.errors.is_empty() {
        Ok(out)
    } else {
        cx.errors
            .sort_by_key(|d| d.pos.unwrap_or(Pos::new(u32::MAX, u32::MAX)));
        Err(cx.errors)
    }
}

struct Cx<'f> {
    file: &'f str,
    errors: Vec<Diagnostic>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A near miss among `candidates`, for "did you mean" hints.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Int(i) => format!("a number ({i})"),
        Value::Float(f) => format!("a number ({f:?})"),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Str(s) => format!("a string ({s:?})"),
        other => other.kind().to_owned(),
    }
}

impl Cx<'_> {
    fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.errors
            .push(Diagnostic::error(self.file, Some(pos), field, message).with_hint_opt(hint));
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        let hint = match &node.value {
            Value::Str(s) if expected.contains("number") && s.trim().parse::<f64>().is_ok() => {
                Some("remove the quotes".to_owned())
            }
            _ => None,
        };
        let message = format!("expected {expected}, found {}", describe(&node.value));
        self.error(node.pos, field, message, hint);
    }

    /// The entries of a mapping whose keys are all in `keys` (each once, null values
    /// skipped). `None` (after reporting) when the node is not a mapping.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        keys: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node)>> {
        self.entries(node, path, Some(keys))
    }

    fn entries<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        keys: Option<&[&str]>,
    ) -> Option<Vec<(&'n str, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping (key: value pairs)");
            return None;
        };
        let mut out: Vec<(&'n str, &'n Node)> = Vec::new();
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        for (k, v) in entries {
            let Value::Str(key) = &k.value else {
                let message = format!("keys must be strings, found {}", k.value.kind());
                self.error(k.pos, path, message, None);
                continue;
            };
            let field = child(path, key);
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == key) {
                let message = format!("duplicate key `{key}` (first set at {first})");
                let hint = Some("keep one of them: YAML keys must be unique".into());
                self.error(k.pos, &field, message, hint);
                continue;
            }
            seen.push((key, k.pos));
            if let Some(keys) = keys {
                if !keys.contains(&key.as_str()) {
                    let hint = match closest(key, keys) {
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
            }
            if v.value != Value::Null {
                out.push((key.as_str(), v));
            }
        }
        Some(out)
    }

    fn uint(&mut self, node: &Node, field: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 => match u64::try_from(*i) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(node.pos, field, "the number is too large", None);
                    None
                }
            },
            Value::Int(i) => {
                let message = format!("must not be negative, found {i}");
                self.error(node.pos, field, message, None);
                None
            }
            _ => {
                self.wrong_type(node, field, "a whole number");
                None
            }
        }
    }

    fn positive_uint(&mut self, node: &Node, field: &str) -> Option<u64> {
        let v = self.uint(node, field)?;
        if v == 0 {
            let hint = Some("use at least 1, or remove the key for no limit".into());
            self.error(node.pos, field, "must be at least 1", hint);
            return None;
        }
        Some(v)
    }

    fn number(&mut self, node: &Node, field: &str, min: f64, max: f64) -> Option<f64> {
        let v = match &node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => {
                self.wrong_type(node, field, "a number");
                return None;
            }
        };
        if !v.is_finite() || v < min || v > max {
            let range = if max.is_finite() {
                format!("between {min} and {max}")
            } else {
                format!("at least {min}")
            };
            self.error(node.pos, field, format!("must be {range}, found {v}"), None);
            return None;
        }
        Some(v)
    }

    fn string<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    fn action(&mut self, node: &Node, field: &str) -> Option<Action> {
        self.one_of(node, field, "action", &Action::NAMES, Action::parse)
    }

    /// A string naming one of `names` (`parse` turns it into the value); anything
    /// else is an error with "did you mean" and the valid values.
    fn one_of<T>(
        &mut self,
        node: &Node,
        field: &str,
        what: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(node, field)?;
        let found = parse(s);
        if found.is_none() {
            let hint = match closest(s, names) {
                Some(near) => format!("did you mean `{near}`? valid values: {}", names.join(", ")),
                None => format!("valid values: {}", names.join(", ")),
            };
            self.error(node.pos, field, format!("unknown {what} {s:?}"), Some(hint));
        }
        found
    }

    /// A duration with a unit (`90s`, `30m`, `2h`, `1d`, `1h30m`).
    fn span(&mut self, v: &Node, field: &str) -> Option<Span> {
        let text = match &v.value {
            Value::Str(s) => s.as_str(),
            Value::Int(_) => {
                let hint = Some("add a unit: `90s`, `30m`, `2h`, `1d`".into());
                self.error(v.pos, field, "a duration needs a unit", hint);
                return None;
            }
            _ => {
                self.wrong_type(v, field, "a duration such as `30m`");
                return None;
            }
        };
        match Span::parse(text) {
            Ok(span) => Some(span),
            Err(why) => {
                self.error(
                    v.pos,
                    field,
                    format!("invalid duration {text:?}: {why}"),
                    Some("write e.g. `90s`, `30m`, `2h`, `1d` or `1h30m`".into()),
                );
                None
            }
        }
    }

    fn store(&mut self, node: &Node) -> StoreRules {
        let mut out = StoreRules::default();
        let Some(m) = self.mapping(node, "store", STORE) else {
            return out;
        };
        for (key, v) in m {
            let field = child("store", key);
            match key {
                "unavailable" => {
                    let names = Unavailable::NAMES;
                    if let Some(u) = self.one_of(v, &field, "value", &names, Unavailable::parse) {
                        out.unavailable = u;
                    }
                }
                "lease" => match self.span(v, &field) {
                    Some(span) if span.seconds >= 3 => out.lease = span,
                    Some(_) => self.error(
                        v.pos,
                        &field,
                        "a lease shorter than 3 s",
                        Some("renewals happen every third of the lease; use `3s` or more".into()),
                    ),
                    None => {}
                },
                _ => {}
            }
        }
        out
    }

    fn session(&mut self, node: &Node) -> SessionLimits {
        let mut out = SessionLimits::default();
        let Some(m) = self.mapping(node, "session", SESSION) else {
            return out;
        };
        for (key, v) in m {
            let field = child("session", key);
            match key {
                "max_duration" => out.max_duration = self.span(v, &field),
                "max_runs" => out.max_runs = self.positive_uint(v, &field),
                _ => {}
            }
        }
        out
    }

    fn budget(&mut self, node: &Node) -> Budget {
        let mut out = Budget::default();
        let Some(m) = self.mapping(node, "budget", BUDGET) else {
            return out;
        };
        for (key, v) in m {
            let field = child("budget", key);
            match key {
                "cpu_seconds" => out.cpu_seconds = self.number(v, &field, 0.0, f64::INFINITY),
                "wall_seconds" => out.wall_seconds = self.number(v, &field, 0.0, f64::INFINITY),
                "cost_usd" => out.cost_usd = self.number(v, &field, 0.0, f64::INFINITY),
                "egress_bytes" => out.egress_bytes = self.uint(v, &field),
                "alert_at" => {
                    if let Some(f) = self.number(v, &field, 0.0, 1.0) {
                        out.alert_at = f;
                    }
                }
                "on_exceed" => {
                    if let Some(a) = self.action(v, &field) {
                        out.on_exceed = a;
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn violations(&mut self, node: &Node) -> ViolationRules {
        let mut out = ViolationRules::default();
        let Some(m) = self.mapping(node, "violations", VIOLATIONS) else {
            return out;
        };
        for (key, v) in m {
            let field = child("violations", key);
            match key {
                "thresholds" => {
                    let names = threshold_keys();
                    let Some(entries) = self.entries(v, &field, None) else {
                        continue;
                    };
                    for (kind, n) in entries {
                        let kfield = child(&field, kind);
                        if !names.contains(&kind) {
                            let hint = match closest(kind, &names) {
                                Some(near) => format!(
                                    "did you mean `{near}`? violation kinds: {}",
                                    names.join(", ")
                                ),
                                None => format!("violation kinds: {}", names.join(", ")),
                            };
                            let message = format!("unknown violation kind `{kind}`");
                            self.error(n.pos, &kfield, message, Some(hint));
                            continue;
                        }
                        if let Some(count) = self.positive_uint(n, &kfield) {
                            out.thresholds.insert(kind.to_owned(), count);
                        }
                    }
                }
                "on_threshold" => {
                    if let Some(a) = self.action(v, &field) {
                        out.on_threshold = a;
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn kill_switch(&mut self, node: &Node) -> KillSwitch {
        let mut out = KillSwitch::default();
        let Some(m) = self.mapping(node, "kill_switch", KILL_SWITCH) else {
            return out;
        };
        for (key, v) in m {
            let field = child("kill_switch", key);
            let Value::Seq(items) = &v.value else {
                self.wrong_type(v, &field, "a list of http:// URLs");
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let ifield = format!("{field}[{i}]");
                let Some(url) = self.string(item, &ifield) else {
                    continue;
                };
                match crate::notify::WebhookUrl::parse(url) {
                    Ok(_) => out.notify.push(url.to_owned()),
                    Err(e) => self.error(item.pos, &ifield, e.message, e.hint),
                }
            }
        }
        out
    }

    fn prices(&mut self, node: &Node) -> BTreeMap<String, Price> {
        let mut out = BTreeMap::new();
        let Some(models) = self.entries(node, "prices", None) else {
            return out;
        };
        for (model, v) in models {
            let field = child("prices", model);
            let Some(m) = self.mapping(v, &field, PRICE) else {
                continue;
            };
            let (mut input, mut output) = (None, None);
            for (key, n) in &m {
                let f = self.number(n, &child(&field, key), 0.0, f64::INFINITY);
                match *key {
                    "input_per_mtok" => input = f,
                    _ => output = f,
                }
            }
            for (key, got) in [("input_per_mtok", input), ("output_per_mtok", output)] {
                if got.is_none() && !m.iter().any(|(k, _)| *k == key) {
                    let message = format!("missing required key `{key}`");
                    let hint = Some("give both prices, in USD per million tokens".into());
                    self.error(v.pos, &child(&field, key), message, hint);
                }
            }
            if let (Some(input_per_mtok), Some(output_per_mtok)) = (input, output) {
                out.insert(
                    model.to_owned(),
                    Price {
                        input_per_mtok,
                        output_per_mtok,
                    },
                );
            }
        }
        out
    }
}
