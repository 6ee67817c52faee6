//! `--record-denials`: what the sandbox refuses on the filesystem becomes a
//! `filesystem_denied` violation naming path, operation and program, on both tiers;
//! what it allows, and files that are simply missing, do not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use crate::common::skillsandbox;

fn exec(tier: &str, record: bool, script: &str) -> Value {
    let mut c = skillsandbox();
    c.args(["exec", "--tier", tier, "--json"]);
    if record {
        c.arg("--record-denials");
    }
    c.args(["--", "sh", "-c", script]);
    let out = c.output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn denials(o: &Value) -> Vec<(String, Option<String>)> {
    o["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "filesystem_denied")
        .map(|v| {
            (
                v["detail"].as_str().unwrap().to_string(),
                v["mitre"]["technique_id"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn refused_filesystem_accesses_are_recorded_with_path_operation_and_program() {
    // A credential of the host's user, in a directory the sandbox never shows.
    let home = std::env::var("HOME").unwrap();
    let dir = tempfile::Builder::new()
        .prefix(".skillsandbox-denials-")
        .tempdir_in(&home)
        .unwrap();
    std::fs::create_dir(dir.path().join(".ssh")).unwrap();
    let key = dir.path().join(".ssh/id_ed25519");
    std::fs::write(&key, "PRIVATE KEY\n").unwrap();
    let key = key.display().to_string();
    let script = format!(
        "cat {key} 2>/dev/null || echo key-refused; \
         echo x > /usr/skillsandbox-denied 2>/dev/null || echo usr-refused; \
         cat /no/such/file/anywhere 2>/dev/null; cat /usr/bin/env > /dev/null && echo usr-read"
    );
    for tier in ["container", "process"] {
        let o = exec(tier, true, &script);
        assert_eq!(
            o["stdout"].as_str().unwrap(),
            "key-refused\nusr-refused\nusr-read\n",
            "{tier}: {o}"
        );
        let d = denials(&o);
        let read = d
            .iter()
            .find(|(t, _)| t.starts_with(&format!("read of {key} (")))
            .unwrap_or_else(|| panic!("{tier}: no denial of the key: {d:?}"));
        assert!(
            read.0.contains(" by /usr/bin/cat refused: "),
            "{tier}: {read:?}"
        );
        assert_eq!(read.1.as_deref(), Some("T1552.004"), "{tier}: {read:?}");
        assert!(
            d.iter()
                .any(|(t, _)| t.starts_with("write of /usr/skillsandbox-denied (")),
            "{tier}: {d:?}"
        );
        // Allowed and missing paths are not denials.
        assert!(
            !d.iter()
                .any(|(t, _)| t.contains("/no/such/file") || t.contains("/usr/bin/env")),
            "{tier}: {d:?}"
        );
        // Not asked for: nothing of the kind (and the same refusals).
        let o = exec(tier, false, &script);
        assert!(denials(&o).is_empty(), "{tier}: {o}");
        assert_eq!(
            o["stdout"].as_str().unwrap(),
            "key-refused\nusr-refused\nusr-read\n"
        );
    }
}

/// The manifest's `isolation.record_denials: true` asks for the same (so a hook
/// profile or an MCP skill can), without the flag.
#[test]
fn a_manifest_asks_for_the_record_with_isolation_record_denials() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("skillsandbox.yaml");
    std::fs::write(
        &manifest,
        "skill: {name: denials, version: 0.1.0}\n\
         isolation: {record_denials: true}\n\
         entrypoint: {command: \"true\"}\n",
    )
    .unwrap();
    let out = skillsandbox()
        .args(["exec", "--json", "--manifest"])
        .arg(&manifest)
        .args([
            "--",
            "sh",
            "-c",
            "echo x > /usr/skillsandbox-denied 2>/dev/null || echo refused",
        ])
        .output()
        .unwrap();
    let o: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(o["stdout"], "refused\n", "{o}");
    let d = denials(&o);
    assert!(
        d.iter()
            .any(|(t, _)| t.starts_with("write of /usr/skillsandbox-denied (")),
        "{d:?}"
    );
}
