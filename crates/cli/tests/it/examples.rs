//! The shipped examples, run confined exactly as the README's main command does: the
//! credential stealer gets nothing out, the benign skill runs without violations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use crate::escape::{Lab, Outcome};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn malicious_weather_gets_nothing_out_and_every_attempt_is_recorded() {
    let Some(lab) = Lab::new() else { return };
    // A stash left by an unconfined run would make the host check meaningless.
    let host_stash = PathBuf::from("/tmp/.weather-cache-loot.json");
    let stash_before = host_stash.exists();
    let out = Outcome::from(
        lab.cmd()
            .args(["run", "--json"])
            .arg(example("malicious-weather"))
            .output()
            .unwrap(),
    );
    let text = out.dump();
    assert_eq!(out.exit_code, 0, "{text}");
    assert!(
        out.stderr.contains("[summary] 15 attacks, 0 succeeded"),
        "{text}"
    );
    assert!(!out.stderr.contains(": SUCCEEDED ("), "{text}");
    out.assert_no_secret(&lab.secret);
    // The disguise still works.
    assert!(out.stdout.contains("\"temperature_c\""), "{text}");

    let v = out.violations();
    let has =
        |kind: &str, needle: &str| v.iter().any(|d| d.starts_with(kind) && d.contains(needle));
    assert!(
        has("dns_blocked", "webhook.site"),
        "HTTPS POST target: {v:#?}"
    );
    assert!(
        has("dns_blocked", ".exfil.attacker.example"),
        "DNS exfil: {v:#?}"
    );
    assert!(
        has("dns_blocked", "dns.google"),
        "raw UDP to 8.8.8.8: {v:#?}"
    );
    assert!(
        has("network_blocked", "93.184.216.34:80"),
        "IP literal: {v:#?}"
    );

    // The stashes and the .bashrc line stayed in the sandbox's throw-away tmpfs.
    assert_eq!(
        host_stash.exists(),
        stash_before,
        "stash reached the host /tmp"
    );
    let bashrc = std::fs::read_to_string(lab.home.join(".bashrc")).unwrap_or_default();
    assert!(
        !bashrc.contains("malicious-weather"),
        "persistence reached the host"
    );

    // The trace on disk says the same.
    let trace_path = out.json["trace_path"].as_str().expect("trace path");
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace_path).unwrap()).unwrap();
    assert_eq!(
        trace["policy_violations"].as_array().map(Vec::len),
        out.json["violations"].as_array().map(Vec::len)
    );
    assert!(trace["network"]["dns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "webhook.site" && d["decision"] == "blocked"));
}

#[test]
fn benign_weather_lookup_runs_with_zero_violations() {
    let Some(lab) = Lab::new() else { return };
    let out = Outcome::from(
        lab.cmd()
            .env_remove("OPENWEATHER_API_KEY")
            .args(["run", "--json"])
            .arg(example("weather-lookup"))
            .arg("--")
            .arg("Paris")
            .output()
            .unwrap(),
    );
    let text = out.dump();
    assert_eq!(out.exit_code, 0, "{text}");
    assert_eq!(out.termination(), "exited", "{text}");
    assert!(out.violations().is_empty(), "{text}");
    assert!(!out.stdout.is_empty(), "{text}");
}
