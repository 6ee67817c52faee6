//! The shipped example policy parses, and docs/policy.md shows it verbatim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use skillsandbox_policy::{load_policy_file, Action};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn example_policy_parses_and_is_documented() {
    let path = repo().join("examples/policy.yaml");
    let p = load_policy_file(&path).unwrap();
    assert_eq!(p.session.max_runs, Some(200));
    assert_eq!(p.session.max_duration.unwrap().seconds, 7200);
    assert_eq!(p.budget.on_exceed, Action::Block);
    assert_eq!(p.violations.thresholds["syscall_blocked"], 1);
    assert_eq!(p.violations.on_threshold, Action::Kill);
    assert_eq!(p.kill_switch.notify.len(), 1);
    assert!(p.prices.contains_key("my-local-model"));

    let example = std::fs::read_to_string(&path).unwrap();
    let docs = std::fs::read_to_string(repo().join("docs/policy.md")).unwrap();
    assert!(
        docs.contains(&format!("```yaml\n{example}```")),
        "docs/policy.md must show examples/policy.yaml verbatim"
    );
}
