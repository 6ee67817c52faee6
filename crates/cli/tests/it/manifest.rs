//! `skillsandbox validate | inspect | schema` through the real binary, on the example
//! skills and on broken manifests written to temp dirs.

// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::skillsandbox;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn run(args: &[&str]) -> Output {
    skillsandbox()
        .args(args)
        .env("HOME", "/home/tester")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_manifest(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skillsandbox.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

#[test]
fn examples_validate() {
    for (name, skill) in [
        ("weather-lookup", "weather-lookup"),
        ("prototype", "weather-lookup"),
        ("malicious-weather", "malicious-weather"),
    ] {
        let dir = examples().join(name);
        let out = run(&["validate", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with(&format!("ok: {skill} 0.1.0")),
            "{name}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn manifest_file_path_works_like_the_directory() {
    let file = examples().join("weather-lookup/skillsandbox.yaml");
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn broken_manifest_exits_2_with_file_line_column() {
    let (_dir, path) = write_manifest(
        "skill:\n  name: demo\n  version: \"1.0.0\"\npermissions:\n  filesystem:\n    reed: [/tmp]\n  network:\n    egress:\n      - domain: api.*.example.com\nentrypoint:\n  command: python3\n",
    );
    let p = path.to_str().unwrap();
    let out = run(&["validate", p]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("{p}:6:5: permissions.filesystem.reed: unknown key `reed`")
    );
    assert_eq!(
        lines[1],
        "  hint: did you mean `read`? valid keys here: read, write, deny"
    );
    assert_eq!(
        lines[2],
        format!("{p}:9:17: permissions.network.egress[0].domain: invalid domain `api.*.example.com`: `*` is only allowed as the whole left-most label")
    );
    assert!(stderr.contains("invalid manifest (2 errors)"), "{stderr}");
    assert!(out.stdout.is_empty());

    // inspect refuses it the same way.
    let out = run(&["inspect", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with(&format!("{p}:6:5: ")));
}

#[test]
fn yaml_syntax_error_exits_2_positioned() {
    let (_dir, path) =
        write_manifest("skill: {name: demo, version: \"1.0.0\"\nentrypoint: {command: x}\n");
    let p = path.to_str().unwrap();
    let out = run(&["validate", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(&format!("{p}:2:1: invalid YAML: ")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_manifest_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no skillsandbox.yaml in this directory"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

/// The malicious example declares exactly what an honest weather skill declares:
/// nothing in its manifest is over-broad, so --strict passes. What it *does* is the
/// sandbox's job, not the linter's. A manifest that does ask for too much fails.
#[test]
fn strict_fails_only_on_warnings() {
    let malicious = examples().join("malicious-weather");
    let out = run(&["validate", "--json", malicious.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap().len();
    let out = run(&["validate", "--strict", malicious.to_str().unwrap()]);
    let expected = if warnings == 0 { 0 } else { 2 };
    assert_eq!(out.status.code(), Some(expected), "{}", text(&out.stderr));
    assert_eq!(
        warnings, 0,
        "the malicious example's manifest looks innocent by design"
    );

    // The prototype lists PATH: valid, one warning, so --strict fails.
    let proto = examples().join("prototype");
    let out = run(&["validate", proto.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning[env-sandbox-managed]"));
    let out = run(&["validate", "--strict", proto.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--strict"),
        "{}",
        text(&out.stderr)
    );

    let (_dir, path) = write_manifest(
        "skill: {name: greedy, version: \"1.0.0\"}\npermissions:\n  filesystem:\n    read: [\"~\"]\n  env_vars:\n    allow: [\"*\"]\nentrypoint: {command: sh}\n",
    );
    let p = path.to_str().unwrap();
    let out = run(&["validate", "--strict", p]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{p}:4:12: permissions.filesystem.read[0]: warning[sensitive-read]"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{p}:6:13: permissions.env_vars.allow[0]: warning[env-allow-all]"
        )),
        "{stderr}"
    );
}

#[test]
fn json_report() {
    let (_dir, path) =
        write_manifest("skill: {name: x, version: \"1\"}\nentrypoint: {command: sh}\n");
    let out = run(&["validate", "--json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let e = &report["errors"][0];
    assert_eq!(e["line"], 1);
    assert_eq!(e["column"], 27);
    assert_eq!(e["field"], "skill.version");
    assert_eq!(e["severity"], "error");

    let ok = run(&[
        "validate",
        "--json",
        examples().join("weather-lookup").to_str().unwrap(),
    ]);
    assert_eq!(ok.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["skill"]["name"], "weather-lookup");
}

#[test]
fn inspect_prints_the_resolved_policy() {
    let dir = examples().join("prototype");
    let out = run(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    let canonical = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(policy["skill_dir"], canonical.to_str().unwrap());
    assert_eq!(policy["limits"]["cpu_cores"], 0.25);
    assert_eq!(
        policy["network"]["egress"][0],
        serde_json::json!({"kind": "domain", "domain": {"match": "exact", "name": "api.openweathermap.org"}, "ports": [443]})
    );
    assert_eq!(policy["entrypoint"]["workdir"], "/skill");
    assert_eq!(policy["manifest"]["sha256"].as_str().unwrap().len(), 64);
    // Warnings go to stderr, positioned.
    assert!(text(&out.stderr).contains(
        "skillsandbox.yaml:16:44: permissions.env_vars.allow[2]: warning[env-sandbox-managed]"
    ));
}

#[test]
fn schema_prints_json_schema() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["title"], "skillsandbox.yaml");
    assert!(schema["properties"]["permissions"].is_object());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let out = run(&["schema", "--output", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, schema);

    // The copy in the repository (which the examples point their YAML language server
    // at) is the current one: regenerate with `skillsandbox schema --output ...`.
    let committed = examples().join("../docs/skillsandbox.schema.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
    assert_eq!(
        committed, schema,
        "docs/skillsandbox.schema.json is stale: run `skillsandbox schema --output docs/skillsandbox.schema.json`"
    );
}

#[test]
fn help_teaches_with_examples() {
    for cmd in ["validate", "inspect", "schema"] {
        let out = run(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        assert!(help.contains("Examples:"), "{cmd}: {help}");
        assert!(
            help.contains(&format!("skillsandbox {cmd}")),
            "{cmd}: {help}"
        );
    }
    let out = run(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "usage error exits 2");
}
