//! `json_schema()` is a valid JSON Schema, the example manifests (YAML → JSON) validate
//! against it, and it rejects what the parser rejects structurally.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::path::Path;

use serde_json::Value;
use skillsandbox_manifest::{json_schema, parse_str};

fn yaml_to_json(src: &str) -> Value {
    serde_saphyr::from_str::<Value>(src).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&json_schema()).unwrap()
}

#[test]
fn schema_is_valid_draft7() {
    let schema = json_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::meta::validate(&schema).unwrap();
    assert_eq!(
        schema["required"],
        serde_json::json!(["skill", "entrypoint"])
    );
    // The positions map is internal, never part of the file format.
    assert!(schema["properties"].get("positions").is_none());
}

#[test]
fn examples_validate_against_the_schema() {
    let v = validator();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path().join("skillsandbox.yaml");
        if !path.exists() {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let instance = yaml_to_json(&src);
        let errors: Vec<String> = v.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        assert!(parse_str(&src, "x").is_ok());
        seen += 1;
    }
    assert!(
        seen >= 3,
        "expected the three example manifests, saw {seen}"
    );
}

#[test]
fn schema_rejects_structural_errors_the_parser_rejects() {
    let v = validator();
    let head = "skill: {name: demo, version: \"1.0.0\"}\nentrypoint: {command: sh}\n";
    for (what, src) in [
        ("unknown key", format!("{head}permisions: {{}}\n")),
        ("missing entrypoint", "skill: {name: demo, version: \"1.0.0\"}\n".to_owned()),
        ("bad enum", format!("{head}isolation: {{tier: vm}}\n")),
        ("bad name", "skill: {name: Demo, version: \"1.0.0\"}\nentrypoint: {command: sh}\n".to_owned()),
        ("port 0", format!("{head}permissions: {{network: {{egress: [{{domain: a.b.c, ports: [0]}}]}}}}\n")),
        ("domain and cidr", format!("{head}permissions: {{network: {{egress: [{{domain: a.b.c, cidr: 10.0.0.0/8}}]}}}}\n")),
        ("zero memory", format!("{head}resources: {{memory_mb: 0}}\n")),
        ("unknown nested key", format!("{head}permissions: {{filesystem: {{reed: [/x]}}}}\n")),
        ("bad env name", format!("{head}permissions: {{env_vars: {{allow: [1X]}}}}\n")),
    ] {
        assert!(!v.is_valid(&yaml_to_json(&src)), "schema accepted: {what}");
        assert!(parse_str(&src, "x").is_err(), "parser accepted: {what}");
    }
}
