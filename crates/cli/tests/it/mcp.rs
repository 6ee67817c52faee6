//! `skillsandbox serve` driven by the official MCP Python SDK (tests/mcp/test_mcp.py)
//! as a real client, against the binary under test.
//!
//! Needs python3 with the `mcp` package (`pip install -r tests/mcp/requirements.txt`)
//! and a host that can run sandboxes. Without them the test is skipped with a
//! message — unless SKILLSANDBOX_TEST_REQUIRE=full, where that is a failure.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{require_full, skillsandbox};

fn python() -> String {
    std::env::var("SKILLSANDBOX_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/test_mcp.py")
}

/// Skip (or fail under `SKILLSANDBOX_TEST_REQUIRE=full`) with `why`.
fn unavailable(why: &str) {
    assert!(!require_full(), "SKILLSANDBOX_TEST_REQUIRE=full: {why}");
    eprintln!("skipping the MCP client test: {why}");
}

#[test]
fn python_sdk_client_drives_the_server() {
    let probe = Command::new(python())
        .args(["-c", "import mcp, anyio, prometheus_client"])
        .output();
    match probe {
        Err(e) => return unavailable(&format!("cannot run {}: {e}", python())),
        Ok(o) if !o.status.success() => {
            return unavailable(&format!(
            "the MCP Python SDK is not installed (pip install -r tests/mcp/requirements.txt): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
        }
        Ok(_) => {}
    }
    // Whether this host can run a sandbox at all (namespaces, cgroups, seccomp, ...).
    let state = tempfile::tempdir().unwrap();
    let canary = skillsandbox()
        .args(["exec", "--quiet", "--", "true"])
        .env("XDG_STATE_HOME", state.path())
        .env("SKILLSANDBOX_AUDIT_LOG", state.path().join("audit.jsonl"))
        .output()
        .unwrap();
    if !canary.status.success() {
        return unavailable(&format!(
            "this host cannot run a sandbox: {}",
            String::from_utf8_lossy(&canary.stderr).trim()
        ));
    }

    let out = Command::new(python())
        .arg(script())
        .env("SKILLSANDBOX_BIN", env!("CARGO_BIN_EXE_skillsandbox"))
        .env("SKILLSANDBOX_VERSION", env!("CARGO_PKG_VERSION"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the MCP client test failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(stdout.contains("PASSED: 0 failure(s)"), "{stdout}");
}
