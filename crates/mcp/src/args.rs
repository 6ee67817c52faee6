//! Tool arguments: typed and documented; the doc comments become the `inputSchema`
//! descriptions the agent reads.

use schemars::JsonSchema;
use serde::Deserialize;
use skillsandbox_runtime::session::UsageReport;

/// Arguments of `run_skill`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSkillArgs {
    /// The skill: its name as `list_skills` shows it, or the path of its directory
    /// (or of its skillsandbox.yaml) inside the server's skills directories.
    pub skill: String,
    /// Extra arguments appended to the skill's entrypoint. An agent skill with a
    /// SKILL.md and no skillsandbox.yaml runs its script (the one in scripts/, or
    /// `script`) under deny-all defaults, with the skill folder read-only at /skill
    /// as the working directory.
    #[serde(default)]
    pub args: Vec<String>,
    /// For an agent skill with several scripts and no skillsandbox.yaml: the script
    /// to run, relative to the skill folder (e.g. "scripts/fill.py").
    pub script: Option<String>,
}

/// Arguments of `exec_command`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCommandArgs {
    /// The command and its arguments, e.g. ["sh", "-c", "ls -l /data"]. Runs in a
    /// fresh sandbox: no network, no host files, no host environment unless granted
    /// below; read-only /usr, /bin, /lib; a private /tmp and $HOME.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Working directory inside the sandbox (absolute; default: the private $HOME).
    pub workdir: Option<String>,
    /// Domains the command may reach over TCP: "api.example.com",
    /// "*.example.com" (sub-domains only), optionally with ports
    /// "api.example.com:443,8443" (default 443). Capped by the operator's ceiling.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Absolute host paths to grant read-only (mounted at the same path). Capped by
    /// the operator's ceiling.
    #[serde(default)]
    pub read: Vec<String>,
    /// Absolute host paths to grant read-write (created if missing). Capped by the
    /// operator's ceiling.
    #[serde(default)]
    pub write: Vec<String>,
    /// Host environment variables to pass through (NAME or PREFIX*). Capped by the
    /// operator's ceiling.
    #[serde(default)]
    pub env: Vec<String>,
    /// Wall-clock limit in seconds (default 60, at most the ceiling); on expiry the
    /// whole process tree is killed and the exit code is 124.
    pub timeout_s: Option<u64>,
    /// Memory limit in MiB (default 256, at most the ceiling).
    pub memory_mb: Option<u64>,
}

/// A skill directory or manifest path.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillPathArgs {
    /// A skill directory (containing skillsandbox.yaml) or the manifest file,
    /// inside the server's skills directories (relative paths are taken from them).
    pub path: String,
}

/// Arguments of `list_skills`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSkillsArgs {
    /// Search only this directory (inside the skills directories); default: all of
    /// the server's skills directories.
    pub directory: Option<String>,
}

/// Arguments of `report_usage`: model usage the agent spent, charged to the
/// session's `cost_usd` budget. Either `model` with `input_tokens` and/or
/// `output_tokens` (priced by the operator's price table), or `usd` — not both.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportUsageArgs {
    /// The model the tokens were spent on, e.g. "claude-sonnet-4-20250514"; priced
    /// by its exact entry in the price table, else the longest entry it extends at
    /// a "-" ("claude-sonnet-4"). An unknown model is refused naming the known ones.
    pub model: Option<String>,
    /// Input (prompt) tokens spent on `model`.
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens spent on `model`.
    pub output_tokens: Option<u64>,
    /// A cost in US dollars (0 or more), taken as is; instead of model and tokens.
    #[schemars(range(min = 0.0))]
    pub usd: Option<f64>,
}

impl ReportUsageArgs {
    /// The report to record, or why the arguments do not make one.
    pub fn to_report(&self) -> Result<UsageReport, String> {
        let tokens = self.input_tokens.is_some() || self.output_tokens.is_some();
        if let Some(usd) = self.usd {
            if tokens || self.model.is_some() {
                return Err("pass either `usd`, or `model` with `input_tokens` and/or \
                     `output_tokens` — not both"
                    .to_string());
            }
            return Ok(UsageReport::Usd(usd));
        }
        let Some(model) = &self.model else {
            return Err(if tokens {
                "`input_tokens`/`output_tokens` need `model` (the model they were spent on)"
            } else {
                "nothing to report: pass `usd`, or `model` with `input_tokens` and/or \
                 `output_tokens`"
            }
            .to_string());
        };
        if model.trim().is_empty() {
            return Err("`model` is empty: name the model the tokens were spent on".to_string());
        }
        if !tokens {
            return Err("`model` needs `input_tokens` and/or `output_tokens`".to_string());
        }
        Ok(UsageReport::Tokens {
            model: model.clone(),
            input: self.input_tokens.unwrap_or(0),
            output: self.output_tokens.unwrap_or(0),
        })
    }
}

/// `session_status` takes no arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        model: Option<&str>,
        i: Option<u64>,
        o: Option<u64>,
        usd: Option<f64>,
    ) -> ReportUsageArgs {
        ReportUsageArgs {
            model: model.map(str::to_string),
            input_tokens: i,
            output_tokens: o,
            usd,
        }
    }

    #[test]
    fn report_usage_takes_exactly_one_of_tokens_or_usd() {
        assert_eq!(
            args(None, None, None, Some(0.25)).to_report(),
            Ok(UsageReport::Usd(0.25))
        );
        assert_eq!(
            args(Some("m"), Some(10), None, None).to_report(),
            Ok(UsageReport::Tokens {
                model: "m".into(),
                input: 10,
                output: 0
            })
        );
        assert_eq!(
            args(Some("m"), None, Some(7), None).to_report(),
            Ok(UsageReport::Tokens {
                model: "m".into(),
                input: 0,
                output: 7
            })
        );
        for (bad, why) in [
            (args(Some("m"), Some(1), None, Some(1.0)), "not both"),
            (args(Some("m"), None, None, Some(1.0)), "not both"),
            (args(None, Some(1), None, Some(1.0)), "not both"),
            (args(None, Some(1), None, None), "need `model`"),
            (args(None, None, None, None), "nothing to report"),
            (args(Some("m"), None, None, None), "needs `input_tokens`"),
            (args(Some(" "), Some(1), None, None), "empty"),
        ] {
            let e = bad.to_report().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<ReportUsageArgs, _> = serde_json::from_str(r#"{"usd": 1, "tokens": 3}"#);
        assert!(r.is_err());
    }
}
