//! The independent verifier printed in docs/audit.md really verifies our logs
//! (and really fails on a broken one).

use std::path::Path;
use std::process::Command;

use serde_json::json;
use skillsandbox_audit::AuditLog;

fn snippet() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let start = text.find("<!-- verify.py: begin").unwrap();
    let end = text.find("<!-- verify.py: end -->").unwrap();
    let block = &text[start..end];
    let code_start = block.find("```python\n").unwrap() + "```python\n".len();
    let code_end = block.rfind("```").unwrap();
    block[code_start..code_end].to_owned()
}

fn python(script: &Path, log: &Path) -> Option<(bool, String)> {
    let out = Command::new("python3").arg(script).arg(log).output();
    match out {
        Ok(o) => Some((
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("python3: {e}"),
    }
}

#[test]
fn documented_python_verifier_agrees_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.py");
    std::fs::write(&script, snippet()).unwrap();
    let log_path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&log_path).unwrap();
    for i in 0..3 {
        // Bytes a re-serializing verifier would get wrong: floats, escapes, non-ASCII.
        log.append(
            "run",
            json!({"i": i, "f": 1.5e20, "s": "ünï \u{1b} \"q\" \u{2028} 😀", "z": null}),
        )
        .unwrap();
    }
    let Some((ok, out)) = python(&script, &log_path) else {
        let full = std::env::var("SKILLSANDBOX_TEST_REQUIRE").is_ok_and(|v| v == "full");
        assert!(
            !full,
            "python3 is required with SKILLSANDBOX_TEST_REQUIRE=full"
        );
        eprintln!("skipping: python3 not found");
        return;
    };
    assert!(ok && out.contains("OK: 3 records"), "{out}");

    let text = std::fs::read_to_string(&log_path).unwrap();
    std::fs::write(&log_path, text.replacen("\"i\":1", "\"i\":7", 1)).unwrap();
    let (ok, out) = python(&script, &log_path).unwrap();
    assert!(!ok && out.contains("record 2: edited"), "{out}");

    let lines: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&log_path, format!("{}\n", lines.join("\n"))).unwrap();
    let (ok, out) = python(&script, &log_path).unwrap();
    assert!(!ok && out.contains("tail removed"), "{out}");
}

#[test]
fn documented_trace_example_is_a_valid_trace() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/trace.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let example = &text[text.find("## Example").unwrap()..];
    let start = example.find("```json\n").unwrap() + "```json\n".len();
    let end = start + example[start..].find("```").unwrap();
    let value: serde_json::Value = serde_json::from_str(&example[start..end]).unwrap();
    let schema = skillsandbox_audit::trace_json_schema();
    assert!(jsonschema::is_valid(&schema, &value));
    let trace: skillsandbox_audit::Trace = serde_json::from_value(value).unwrap();
    assert_eq!(
        trace.schema_version,
        skillsandbox_audit::TRACE_SCHEMA_VERSION
    );
    assert_eq!(
        trace.policy_violations[0].mitre,
        skillsandbox_audit::mitre_for(trace.policy_violations[0].kind)
    );
}
