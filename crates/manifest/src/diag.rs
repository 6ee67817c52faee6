//! Diagnostics: positioned errors and lint warnings, and [`ManifestError`].
//!
//! Every diagnostic prints as `FILE:LINE:COL: FIELD.PATH: message`, followed by an
//! optional `  hint: ...` line, so editors and terminals can jump to the spot.
//! Warnings put `warning[<lint>]: ` in front of the message.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A 1-based line and column (in characters) in the manifest file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning about a manifest (or a resolved policy). Serialises (for
/// `--json`) as `{severity, file, line, column, field, message, hint, lint}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The manifest as the user named it (empty for a policy without a manifest).
    pub file: String,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// Dotted path of the offending field, e.g. `permissions.network.egress[0].domain`.
    /// Empty for problems that belong to no field (YAML syntax errors).
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Stable lint identifier for warnings, e.g. `broad-write`.
    pub lint: Option<&'static str>,
}

impl Serialize for Diagnostic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Diagnostic", 8)?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("file", &self.file)?;
        st.serialize_field("line", &self.pos.map(|p| p.line))?;
        st.serialize_field("column", &self.pos.map(|p| p.column))?;
        st.serialize_field("field", &self.field)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("hint", &self.hint)?;
        st.serialize_field("lint", &self.lint)?;
        st.end()
    }
}

impl Diagnostic {
    pub fn error(file: &str, pos: Option<Pos>, field: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            pos,
            field: field.to_owned(),
            message: message.into(),
            hint: None,
            lint: None,
        }
    }

    pub fn warning(lint: &'static str, field: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            file: String::new(),
            pos: None,
            field: field.to_owned(),
            message: message.into(),
            hint: None,
            lint: Some(lint),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if let Some(pos) = self.pos {
                write!(f, ":{pos}")?;
            }
            f.write_str(": ")?;
        } else if let Some(pos) = self.pos {
            write!(f, "{pos}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        if let (Severity::Warning, Some(lint)) = (self.severity, self.lint) {
            write!(f, "warning[{lint}]: ")?;
        } else if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a manifest could not be found, read, parsed, validated or resolved.
/// Displays in the positioned format, one diagnostic per line (plus hint lines).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The path is neither a manifest file nor a directory containing `skillsandbox.yaml`.
    #[error("{}: {message}\n  hint: {hint}", path.display())]
    Locate {
        path: PathBuf,
        message: String,
        hint: String,
    },
    /// The manifest file exists but could not be read.
    #[error("{}: cannot read the manifest: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The manifest was read but is invalid; holds every error found in one pass.
    #[error("{}", render(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

/// Diagnostics one per line, as every skillsandbox file format prints them.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ManifestError {
    /// The error as diagnostics (for JSON output). Never empty.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ManifestError::Locate {
                path,
                message,
                hint,
            } => vec![
                Diagnostic::error(&path.display().to_string(), None, "", message)
                    .with_hint(hint.clone()),
            ],
            ManifestError::Read { path, error } => vec![Diagnostic::error(
                &path.display().to_string(),
                None,
                "",
                format!("cannot read the manifest: {error}"),
            )],
            ManifestError::Invalid { diagnostics } => diagnostics.clone(),
        }
    }

    pub(crate) fn invalid(mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| d.pos.unwrap_or(Pos::new(u32::MAX, u32::MAX)));
        ManifestError::Invalid { diagnostics }
    }
}
