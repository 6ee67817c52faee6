//! Finding and reading the policy file: `--policy F`, else
//! `$XDG_CONFIG_HOME/skillsandbox/policy.yaml` (else `~/.config/...`) when it exists,
//! else no file and no limits.

use std::path::{Path, PathBuf};

use skillsandbox_manifest::Diagnostic;

use crate::file::PolicyFile;

/// Why a policy file could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("{}: cannot read the policy file: {source}\n  hint: check the path given to --policy", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every error found, one per line in `file:line:column: field: message` form.
    #[error("{}", skillsandbox_manifest::diag::render(.diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

impl PolicyFileError {
    /// The error as diagnostics (for JSON output). Never empty.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            PolicyFileError::Read { path, source } => vec![Diagnostic::error(
                &path.display().to_string(),
                None,
                "",
                format!("cannot read the policy file: {source}"),
            )],
            PolicyFileError::Invalid { diagnostics } => diagnostics.clone(),
        }
    }
}

/// A policy and where it came from (`None`: no file, no limits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedPolicy {
    pub policy: PolicyFile,
    pub source: Option<PathBuf>,
}

/// Parse and check policy text. `file_label` names the file in diagnostics.
pub fn parse_policy(src: &str, file_label: &str) -> Result<PolicyFile, PolicyFileError> {
    let root = crate::yaml::parse(src, file_label).map_err(|d| PolicyFileError::Invalid {
        diagnostics: vec![*d],
    })?;
    crate::read::read(&root, file_label)
        .map_err(|diagnostics| PolicyFileError::Invalid { diagnostics })
}

/// Read and check the policy file at `path`.
pub fn load_policy_file(path: &Path) -> Result<PolicyFile, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_policy(&text, &path.display().to_string())
}

/// `$XDG_CONFIG_HOME/skillsandbox/policy.yaml` when `XDG_CONFIG_HOME` is an absolute
/// path, else `~/.config/skillsandbox/policy.yaml`. It may not exist.
pub fn default_policy_path() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return xdg.join("skillsandbox").join("policy.yaml");
        }
    }
    let home = std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"));
    home.join(".config")
        .join("skillsandbox")
        .join("policy.yaml")
}

/// The policy in force: `explicit` (must exist), else the default file when it
/// exists, else no limits.
pub fn find_policy(explicit: Option<&Path>) -> Result<LoadedPolicy, PolicyFileError> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let p = default_policy_path();
            if !p.exists() {
                return Ok(LoadedPolicy::default());
            }
            p
        }
    };
    Ok(LoadedPolicy {
        policy: load_policy_file(&path)?,
        source: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{Action, Span};

    fn errors(src: &str) -> String {
        parse_policy(src, "p.yaml").unwrap_err().to_string()
    }

    #[test]
    fn reads_a_full_policy() {
        let p = parse_policy(
            "version: 1\nsession:\n  max_duration: 30m\n  max_runs: 5\nbudget:\n  cpu_seconds: 1.5\n  \
             wall_seconds: 60\n  egress_bytes: 1000\n  cost_usd: 2\n  alert_at: 0.5\n  on_exceed: kill\n\
             violations:\n  thresholds: {syscall_blocked: 1, any: 3}\n  on_threshold: alert\n\
             kill_switch:\n  notify: [\"http://127.0.0.1:9/k\"]\n\
             prices:\n  m1: {input_per_mtok: 1, output_per_mtok: 2.5}\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(p.session.max_duration, Some(Span { seconds: 1800 }));
        assert_eq!(p.session.max_runs, Some(5));
        assert_eq!(p.budget.cpu_seconds, Some(1.5));
        assert_eq!(p.budget.wall_seconds, Some(60.0));
        assert_eq!(p.budget.egress_bytes, Some(1000));
        assert_eq!(p.budget.cost_usd, Some(2.0));
        assert_eq!(p.budget.alert_at, 0.5);
        assert_eq!(p.budget.on_exceed, Action::Kill);
        assert_eq!(p.violations.thresholds["syscall_blocked"], 1);
        assert_eq!(p.violations.thresholds["any"], 3);
        assert_eq!(p.violations.on_threshold, Action::Alert);
        assert_eq!(
            p.kill_switch.notify,
            vec!["http://127.0.0.1:9/k".to_string()]
        );
        assert_eq!(p.prices["m1"].output_per_mtok, 2.5);
    }

    #[test]
    fn empty_file_means_no_limits() {
        assert_eq!(parse_policy("", "p").unwrap(), PolicyFile::default());
        assert_eq!(
            parse_policy("# nothing\n", "p").unwrap(),
            PolicyFile::default()
        );
    }

    #[test]
    fn unknown_keys_are_positioned_with_did_you_mean() {
        let e = errors("budget:\n  cpu_secs: 1\n");
        assert!(
            e.starts_with("p.yaml:2:3: budget.cpu_secs: unknown key `cpu_secs`"),
            "{e}"
        );
        assert!(e.contains("did you mean `cpu_seconds`?"), "{e}");
        let e = errors("sesion: {}\n");
        assert!(e.contains("p.yaml:1:1: sesion: unknown key"), "{e}");
        assert!(e.contains("did you mean `session`?"), "{e}");
    }

    #[test]
    fn bad_values_are_positioned_and_all_reported() {
        let e = errors(
            "session:\n  max_duration: 30\n  max_runs: 0\nbudget:\n  alert_at: 1.5\n  on_exceed: blok\n\
             violations:\n  thresholds:\n    syscal_blocked: 1\n",
        );
        let lines: Vec<&str> = e.lines().filter(|l| !l.starts_with("  hint")).collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(lines[0].starts_with("p.yaml:2:17: session.max_duration: a duration needs a unit"));
        assert!(lines[1].starts_with("p.yaml:3:13: session.max_runs: must be at least 1"));
        assert!(lines[2].starts_with("p.yaml:5:13: budget.alert_at: must be between 0 and 1"));
        assert!(lines[3].starts_with("p.yaml:6:14: budget.on_exceed: unknown action \"blok\""));
        assert!(lines[4].starts_with(
            "p.yaml:9:21: violations.thresholds.syscal_blocked: unknown violation kind"
        ));
        assert!(e.contains("did you mean `block`?"));
        assert!(e.contains("did you mean `syscall_blocked`?"));
    }

    #[test]
    fn https_webhooks_and_syntax_errors_are_refused() {
        let e = errors("kill_switch:\n  notify: [\"https://x/\"]\n");
        assert!(
            e.starts_with("p.yaml:2:12: kill_switch.notify[0]: https:// webhooks"),
            "{e}"
        );
        let e = errors("budget: [1,\n");
        assert!(e.starts_with("p.yaml:"), "{e}");
        assert!(e.contains("invalid YAML"), "{e}");
        let e = errors("prices:\n  m: {input_per_mtok: 1}\n");
        assert!(
            e.contains("prices.m.output_per_mtok: missing required key"),
            "{e}"
        );
        let e = errors("budget:\n  cpu_seconds: \"1\"\n");
        assert!(e.contains("remove the quotes"), "{e}");
    }

    #[test]
    fn the_store_section_is_read_and_checked() {
        use crate::file::{Span, Unavailable};
        let p = parse_policy(
            "store:\n  unavailable: fail_open_for_running\n  lease: 1m\n",
            "p",
        )
        .unwrap();
        assert_eq!(p.store.unavailable, Unavailable::FailOpenForRunning);
        assert_eq!(p.store.lease, Span { seconds: 60 });
        let d = parse_policy("", "p").unwrap().store;
        assert_eq!(
            (d.unavailable, d.lease.seconds),
            (Unavailable::FailClosed, 30)
        );
        let e = errors("store:\n  unavailable: fail_opn\n  lease: 2s\n  leese: 3s\n");
        let lines: Vec<&str> = e.lines().filter(|l| !l.starts_with("  hint")).collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("p.yaml:2:16: store.unavailable: unknown value \"fail_opn\""));
        assert!(lines[1].starts_with("p.yaml:3:10: store.lease: a lease shorter than 3 s"));
        assert!(
            lines[2].starts_with("p.yaml:4:3: store.leese: unknown key"),
            "{e}"
        );
        assert!(e.contains("did you mean `fail_open_for_running`?"), "{e}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = find_policy(Some(Path::new("/nonexistent/policy.yaml"))).unwrap_err();
        assert!(e.to_string().contains("cannot read the policy file"));
    }
}
