//! `SKILL.md` as the agent-skills format defines it: YAML front matter (`name`,
//! `description`, optional `license`, `compatibility`, `metadata`, `allowed-tools`)
//! between `---` lines, then Markdown. Violations of the format are diagnostics with
//! the line and column in `SKILL.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use skillsandbox_manifest::yaml::{parse_document, Node, Value};
use skillsandbox_manifest::{Diagnostic, Pos};

/// The instructions file of an agent skill.
pub const SKILL_MD: &str = "SKILL.md";
/// Largest `SKILL.md` read (the format recommends well under 500 lines).
pub const MAX_SKILL_MD_BYTES: u64 = 256 * 1024;
const MAX_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 1024;
const MAX_COMPATIBILITY: usize = 500;

/// The front matter of a `SKILL.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkillMd {
    pub name: String,
    pub description: String,
    pub license: Option<String>,
    pub compatibility: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools`, split on whitespace.
    pub allowed_tools: Vec<String>,
}

/// Read and parse `path` (a `SKILL.md`); `label` names it in diagnostics.
pub fn read(path: &Path, label: &str) -> Result<SkillMd, Vec<Diagnostic>> {
    let fail = |m: String| vec![Diagnostic::error(label, None, "", m)];
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SKILL_MD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_SKILL_MD_BYTES {
        return Err(fail(format!(
            "larger than {MAX_SKILL_MD_BYTES} bytes; keep SKILL.md short and move detail to references/"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    parse(&text, label)
}

/// Parse the text of a `SKILL.md`. Every violation is reported, not just the first.
pub fn parse(text: &str, label: &str) -> Result<SkillMd, Vec<Diagnostic>> {
    let at = |line: u32, col: u32| Some(Pos::new(line, col));
    let Some(yaml) = front_matter(text) else {
        return Err(vec![Diagnostic::error(
            label,
            at(1, 1),
            "",
            "SKILL.md must start with YAML front matter between `---` lines",
        )
        .with_hint("begin the file with:\n---\nname: my-skill\ndescription: What it does and when to use it.\n---")]);
    };
    let root = parse_document(yaml, label, MAX_SKILL_MD_BYTES as usize, "front matter")
        .map_err(|d| vec![shift(*d)])?;
    let Value::Map(entries) = &root.value else {
        return Err(vec![Diagnostic::error(
            label,
            Some(line_after(root.pos)),
            "",
            format!(
                "the front matter must be a mapping, found {}",
                root.value.kind()
            ),
        )]);
    };
    let mut errors = Vec::new();
    let mut out = SkillMd::default();
    let (mut name, mut description) = (None, None);
    for (k, v) in entries {
        let pos = Some(line_after(v.pos));
        let Value::Str(key) = &k.value else {
            errors.push(Diagnostic::error(
                label,
                Some(line_after(k.pos)),
                "",
                "keys must be strings",
            ));
            continue;
        };
        let string = |errors: &mut Vec<Diagnostic>| match &v.value {
            Value::Str(s) => Some(s.clone()),
            other => {
                errors.push(Diagnostic::error(
                    label,
                    pos,
                    key,
                    format!("`{key}` must be a string, found {}", other.kind()),
                ));
                None
            }
        };
        match key.as_str() {
            "name" => name = string(&mut errors).map(|s| (s, pos)),
            "description" => description = string(&mut errors).map(|s| (s, pos)),
            "license" => out.license = string(&mut errors),
            "compatibility" => {
                out.compatibility = string(&mut errors);
                if out.compatibility.as_ref().is_some_and(|c| c.chars().count() > MAX_COMPATIBILITY) {
                    errors.push(Diagnostic::error(
                        label,
                        pos,
                        key,
                        format!("`compatibility` is at most {MAX_COMPATIBILITY} characters"),
                    ));
                }
            }
            "allowed-tools" => match &v.value {
                Value::Str(s) => out.allowed_tools = s.split_whitespace().map(str::to_owned).collect(),
                other => errors.push(
                    Diagnostic::error(
                        label,
                        pos,
                        key,
                        format!("`allowed-tools` is a space-separated string, found {}", other.kind()),
                    )
                    .with_hint("write it as `allowed-tools: Bash Read`"),
                ),
            },
            "metadata" => metadata(v, label, &mut out.metadata, &mut errors),
            other => errors.push(
                Diagnostic::error(label, Some(line_after(k.pos)), other, format!("unknown front matter field `{other}`"))
                    .with_hint("the fields are name, description, license, compatibility, metadata and allowed-tools; put anything else under metadata"),
            ),
        }
    }
    match name {
        None => errors.push(Diagnostic::error(
            label,
            at(2, 1),
            "name",
            "`name` is required",
        )),
        Some((n, pos)) => {
            if let Some(problem) = name_problem(&n) {
                errors.push(
                    Diagnostic::error(label, pos, "name", problem).with_hint(
                        "lower-case letters, digits and single hyphens, e.g. `pdf-tools`",
                    ),
                );
            }
            out.name = n;
        }
    }
    match description {
        None => errors.push(
            Diagnostic::error(label, at(2, 1), "description", "`description` is required")
                .with_hint("say what the skill does and when to use it"),
        ),
        Some((d, pos)) => {
            if d.trim().is_empty() {
                errors.push(Diagnostic::error(
                    label,
                    pos,
                    "description",
                    "`description` is empty",
                ));
            } else if d.chars().count() > MAX_DESCRIPTION {
                errors.push(Diagnostic::error(
                    label,
                    pos,
                    "description",
                    format!("`description` is at most {MAX_DESCRIPTION} characters"),
                ));
            }
            out.description = d.trim().to_owned();
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn metadata(
    v: &Node,
    label: &str,
    out: &mut BTreeMap<String, String>,
    errors: &mut Vec<Diagnostic>,
) {
    let Value::Map(pairs) = &v.value else {
        errors.push(Diagnostic::error(
            label,
            Some(line_after(v.pos)),
            "metadata",
            format!(
                "`metadata` must be a mapping of strings, found {}",
                v.value.kind()
            ),
        ));
        return;
    };
    for (k, val) in pairs {
        let text = match &val.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match (&k.value, text) {
            (Value::Str(key), Some(text)) => {
                out.insert(key.clone(), text);
            }
            _ => errors.push(Diagnostic::error(
                label,
                Some(line_after(val.pos)),
                "metadata",
                "`metadata` maps string keys to string values",
            )),
        }
    }
}

/// Why `name` breaks the format's rules, if it does.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("`name` is empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Some(format!("`name` is at most {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "`name` may hold lower-case letters, digits and hyphens only, not {c:?}"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("`name` must not start or end with a hyphen".into());
    }
    if name.contains("--") {
        return Some("`name` must not contain consecutive hyphens".into());
    }
    None
}

/// The front matter starts on line 2 of the file.
fn line_after(pos: Pos) -> Pos {
    Pos::new(pos.line.saturating_add(1), pos.column)
}

fn shift(mut d: Diagnostic) -> Diagnostic {
    d.pos = d.pos.map(line_after);
    d
}

/// The text between a leading `---` line and the next `---` (or `...`) line.
pub fn front_matter(text: &str) -> Option<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare == "---" || bare == "..." {
            return Some(&rest[..offset]);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_front_matter() {
        let md = parse(
            "---\nname: pdf-tools\ndescription: Work with PDFs.\nlicense: MIT\nallowed-tools: Bash Read\nmetadata:\n  version: \"1.2.0\"\n  author: acme\n---\n# PDF\n",
            "SKILL.md",
        )
        .unwrap();
        assert_eq!(md.name, "pdf-tools");
        assert_eq!(md.allowed_tools, vec!["Bash", "Read"]);
        assert_eq!(
            md.metadata.get("version").map(String::as_str),
            Some("1.2.0")
        );
    }

    #[test]
    fn violations_have_lines() {
        let errs = parse(
            "---\nname: PDF_Tools\ndescription: \"\"\nallowed-tools: [Bash]\ncolour: blue\n---\n",
            "s/SKILL.md",
        )
        .unwrap_err();
        let at: Vec<(u32, &str)> = errs
            .iter()
            .map(|d| (d.pos.map_or(0, |p| p.line), d.field.as_str()))
            .collect();
        assert!(at.contains(&(2, "name")), "{at:?}");
        assert!(at.contains(&(3, "description")), "{at:?}");
        assert!(at.contains(&(4, "allowed-tools")), "{at:?}");
        assert!(at.contains(&(5, "colour")), "{at:?}");
    }

    #[test]
    fn missing_front_matter_and_fields() {
        assert_eq!(
            parse("# hi\n", "SKILL.md").unwrap_err()[0].pos,
            Some(Pos::new(1, 1))
        );
        let errs = parse("---\nlicense: MIT\n---\n", "SKILL.md").unwrap_err();
        assert_eq!(errs.len(), 2);
        let errs = parse("---\nname: [x\n---\n", "SKILL.md").unwrap_err();
        assert!(errs[0].pos.is_some_and(|p| p.line >= 2));
    }

    #[test]
    fn names() {
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", &"a".repeat(65)] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        for good in ["a", "pdf-tools", "x1-2"] {
            assert_eq!(name_problem(good), None);
        }
    }
}
