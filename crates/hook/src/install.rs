//! Adding the hook to an agent's settings and taking it out again, without
//! disturbing anything else in them. Pure over JSON values: the CLI reads and
//! writes the files (`.claude/settings.json`, Codex's `hooks.json`).
//!
//! Both files hold `{"hooks": {"PreToolUse": [{"matcher": M, "hooks": [{"type":
//! "command", "command": C}]}]}}`. Our entry is recognised by its command, so
//! installing twice changes nothing and uninstalling removes only ours.

use serde_json::{json, Map, Value};

/// The tools the hook must see: every shell tool and every file tool it checks.
pub const MATCHER: &str =
    "Bash|Read|Write|Edit|MultiEdit|NotebookEdit|NotebookRead|Glob|Grep|LS|shell|exec_command|local_shell|apply_patch|read_file|list_dir|view_image";

/// Why a settings document cannot take the hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("{0} is not a JSON object; fix or move the file, then run this again")]
    NotObject(&'static str),
}

fn object<'a>(
    v: &'a mut Value,
    what: &'static str,
) -> Result<&'a mut Map<String, Value>, InstallError> {
    v.as_object_mut().ok_or(InstallError::NotObject(what))
}

fn is_ours(entry: &Value, command: &str) -> bool {
    entry
        .get("hooks")
        .and_then(Value::as_array)
        .is_some_and(|hs| {
            hs.iter()
                .any(|h| h.get("command").and_then(Value::as_str) == Some(command))
        })
}

/// `settings` with our PreToolUse entry for `command` added (unless present).
/// Returns whether anything changed.
pub fn add_hook(settings: &mut Value, command: &str) -> Result<bool, InstallError> {
    if settings.is_null() {
        *settings = json!({});
    }
    let root = object(settings, "the settings file")?;
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    let hooks = object(hooks, "its \"hooks\"")?;
    let pre = hooks.entry("PreToolUse").or_insert_with(|| json!([]));
    let Some(list) = pre.as_array_mut() else {
        return Err(InstallError::NotObject(
            "its \"hooks.PreToolUse\" (an array)",
        ));
    };
    if list.iter().any(|e| is_ours(e, command)) {
        return Ok(false);
    }
    list.push(json!({
        "matcher": MATCHER,
        "hooks": [{"type": "command", "command": command}],
    }));
    Ok(true)
}

/// `settings` without our entry for `command`. Returns whether anything changed.
pub fn remove_hook(settings: &mut Value, command: &str) -> bool {
    let Some(list) = settings
        .get_mut("hooks")
        .and_then(|h| h.get_mut("PreToolUse"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = list.len();
    list.retain(|e| !is_ours(e, command));
    before != list.len()
}

/// Whether `settings` carries our entry for `command`.
pub fn has_hook(settings: &Value, command: &str) -> bool {
    settings
        .get("hooks")
        .and_then(|h| h.get("PreToolUse"))
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|e| is_ours(e, command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "/usr/local/bin/skillsandbox hook claude-code";

    #[test]
    fn existing_hooks_and_settings_are_kept_and_twice_is_once() {
        let mut s = json!({
            "model": "x",
            "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}],
                "PostToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": "log.sh"}]}]
            }
        });
        let original = s.clone();
        assert!(add_hook(&mut s, CMD).unwrap());
        let once = s.clone();
        assert!(!add_hook(&mut s, CMD).unwrap());
        assert_eq!(s, once);
        assert_eq!(s["model"], "x");
        assert_eq!(s["hooks"]["PostToolUse"], original["hooks"]["PostToolUse"]);
        let pre = s["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0], original["hooks"]["PreToolUse"][0]);
        assert!(has_hook(&s, CMD));
        assert!(remove_hook(&mut s, CMD));
        assert_eq!(s, original);
        assert!(!remove_hook(&mut s, CMD));
    }

    #[test]
    fn empty_or_missing_settings_get_a_fresh_document_and_odd_ones_are_refused() {
        let mut s = Value::Null;
        assert!(add_hook(&mut s, CMD).unwrap());
        assert_eq!(s["hooks"]["PreToolUse"][0]["hooks"][0]["command"], CMD);
        let mut bad = json!([1, 2]);
        assert!(add_hook(&mut bad, CMD).is_err());
        let mut bad = json!({"hooks": {"PreToolUse": {}}});
        assert!(add_hook(&mut bad, CMD).is_err());
    }
}
