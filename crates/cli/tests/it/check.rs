//! `skillsandbox check` end to end: the checklist passes on a capable host, its JSON
//! has the documented shape, it attacks a manifest's egress, and it can fail: each
//! layer turned off by the test-only switch makes the items guarding it FAIL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::{require_full, skillsandbox};

const DISABLE: &str = "SKILLSANDBOX_DANGEROUSLY_DISABLE_LAYER_FOR_TESTS";

fn weather_lookup() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/weather-lookup")
}

struct Checked {
    code: i32,
    json: Value,
    stderr: String,
}

fn check(args: &[&str], disable: Option<&str>) -> Checked {
    let mut cmd = skillsandbox();
    cmd.arg("check").args(args).env_remove(DISABLE);
    if let Some(layer) = disable {
        cmd.env(DISABLE, layer);
    }
    let out: Output = cmd.output().expect("run skillsandbox check");
    Checked {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The default check, run once and shared; `None` (a skip) when this host cannot run
/// the sandbox at all, which `SKILLSANDBOX_TEST_REQUIRE=full` turns into a failure.
fn default_check() -> Option<&'static Checked> {
    static RUN: OnceLock<Checked> = OnceLock::new();
    let c = RUN.get_or_init(|| check(&["--json"], None));
    if c.json.is_null() {
        assert!(
            !require_full(),
            "SKILLSANDBOX_TEST_REQUIRE=full: check could not run here (exit {}): {}",
            c.code,
            c.stderr
        );
        eprintln!(
            "skipping check test: the sandbox cannot run here: {}",
            c.stderr
        );
        return None;
    }
    Some(c)
}

fn items(c: &Checked) -> &Vec<Value> {
    c.json["items"].as_array().expect("items array")
}

fn status_of<'a>(c: &'a Checked, id: &str) -> &'a str {
    items(c)
        .iter()
        .find(|i| i["id"] == id)
        .and_then(|i| i["status"].as_str())
        .unwrap_or_else(|| panic!("no item {id} in {}", c.json))
}

fn dump(c: &Checked) -> String {
    let lines: Vec<String> = items(c)
        .iter()
        .map(|i| format!("{} {} {}", i["status"], i["id"], i["detail"]))
        .collect();
    format!(
        "exit {}\n{}\nstderr: {}",
        c.code,
        lines.join("\n"),
        c.stderr
    )
}

#[test]
fn default_check_passes_every_item_on_a_capable_host() {
    let Some(c) = default_check() else { return };
    for i in items(c) {
        let (status, group) = (i["status"].as_str().unwrap(), i["group"].as_str().unwrap());
        match status {
            "PASS" => {}
            // The deny-all default declares no egress: only egress items may be N/A.
            "N/A" => assert_eq!(group, "egress", "unexpected N/A: {}", dump(c)),
            _ => panic!("{} failed:\n{}", i["id"], dump(c)),
        }
    }
    assert_eq!(status_of(c, "egress.declared_name"), "N/A");
    assert_eq!(c.code, 0, "{}", dump(c));
}

#[test]
fn json_has_the_documented_shape() {
    let Some(c) = default_check() else { return };
    let expected: BTreeSet<&str> = ["id", "group", "status", "detail"].into();
    let mut ids = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for i in items(c) {
        let keys: BTreeSet<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, expected, "{i}");
        assert!(
            ["PASS", "FAIL", "N/A"].contains(&i["status"].as_str().unwrap()),
            "{i}"
        );
        assert!(!i["detail"].as_str().unwrap().is_empty(), "{i}");
        assert!(!i["detail"].as_str().unwrap().contains('\n'), "{i}");
        groups.insert(i["group"].as_str().unwrap().to_string());
        assert!(
            ids.insert(i["id"].as_str().unwrap().to_string()),
            "duplicate {i}"
        );
    }
    let all: BTreeSet<String> = ["isolation", "limits", "egress"].map(String::from).into();
    assert_eq!(groups, all);
    for id in [
        "secrets.env",
        "secrets.proc_environ",
        "secrets.home_files",
        "secrets.proc_root",
        "fs.write_outside",
        "fs.write_declared",
        "fs.symlink_escape",
        "ns.pid",
        "ns.ipc",
        "ns.uts",
        "ns.net",
        "ns.mount",
        "priv.capabilities",
        "priv.no_new_privs",
        "priv.not_host_root",
        "priv.no_inherited_fds",
        "dev.minimal",
        "proc.sys_readonly",
        "seccomp.x32",
        "seccomp.i386",
        "seccomp.clone3",
        "seccomp.tiocsti",
        "seccomp.ptrace",
        "seccomp.bpf",
        "seccomp.keyctl",
        "seccomp.io_uring",
        "seccomp.mount",
        "seccomp.unshare",
        "limits.memory",
        "limits.pids",
        "limits.open_files",
        "limits.file_size",
        "limits.tmp_size",
        "limits.wall_clock",
        "egress.undeclared_name",
        "egress.ip_literal",
        "egress.ipv6_literal",
        "egress.dns_exfiltration",
        "egress.udp",
        "egress.host_loopback",
        "egress.declared_name",
        "egress.secret_exfiltration",
        "egress.fronting_keepalive",
    ] {
        assert!(ids.contains(id), "missing {id}");
    }
    let host = c.json["host"].as_object().expect("host object");
    // The report `skillsandbox doctor` prints.
    for k in [
        "kernel_release",
        "user_namespaces",
        "landlock",
        "seccomp",
        "cgroup",
        "auto",
    ] {
        assert!(host.contains_key(k), "host lacks {k}: {}", c.json["host"]);
    }
}

#[test]
fn text_checklist_is_grouped() {
    if default_check().is_none() {
        return;
    }
    let out = skillsandbox()
        .arg("check")
        .env_remove(DISABLE)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let iso = text.find("\nisolation\n").expect("isolation header");
    let lim = text.find("\nlimits\n").expect("limits header");
    let egr = text.find("\negress\n").expect("egress header");
    assert!(iso < lim && lim < egr, "{text}");
    assert!(text.contains("  PASS  secrets.env"), "{text}");
    assert!(text.contains("0 FAIL"), "{text}");
}

/// With `layer` off, the run is refused without --allow-degraded; with it, the
/// checklist shows `must_fail` failing and exits non-zero.
fn disabled_layer_fails(layer: &str, must_fail: &[&str]) {
    if default_check().is_none() {
        return;
    }
    let refused = check(&["--json"], Some(layer));
    assert_eq!(refused.code, 125, "{}", refused.stderr);
    assert!(refused.stderr.contains(DISABLE), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--allow-degraded"),
        "{}",
        refused.stderr
    );

    let c = check(&["--json", "--allow-degraded"], Some(layer));
    assert_eq!(c.code, 1, "{}", dump(&c));
    for id in must_fail {
        assert_eq!(status_of(&c, id), "FAIL", "{layer}: {id}\n{}", dump(&c));
    }
}

#[test]
fn without_seccomp_the_syscall_items_fail() {
    disabled_layer_fails(
        "seccomp",
        &[
            "seccomp.filter",
            "seccomp.clone3",
            "seccomp.unshare",
            "seccomp.ptrace",
            "seccomp.keyctl",
            "cve.shocker",
        ],
    );
}

#[test]
fn without_landlock_the_landlock_item_fails() {
    disabled_layer_fails("landlock", &["landlock.scope"]);
}

#[test]
fn without_the_cgroup_the_memory_and_pids_items_fail() {
    disabled_layer_fails("cgroup", &["limits.memory", "limits.pids"]);
}

#[test]
fn without_the_network_namespace_the_network_items_fail() {
    disabled_layer_fails(
        "netns",
        &["ns.net", "egress.host_loopback", "egress.ip_literal"],
    );
}

#[test]
fn a_manifest_with_egress_gets_the_egress_items_run() {
    if default_check().is_none() {
        return;
    }
    let path = weather_lookup();
    let c = check(&["--json", path.to_str().unwrap()], None);
    let egress: Vec<&Value> = items(&c)
        .iter()
        .filter(|i| i["group"] == "egress")
        .collect();
    assert!(egress.len() >= 7, "{}", dump(&c));
    for i in &egress {
        assert_eq!(i["status"], "PASS", "{}", dump(&c));
    }
    let declared = egress
        .iter()
        .find(|i| i["id"] == "egress.declared_name")
        .unwrap();
    let detail = declared["detail"].as_str().unwrap();
    assert!(
        detail.contains("api.openweathermap.org A 198.1"),
        "{detail}"
    );
    // The request-level items: judged by what reached the check's own upstream.
    let detail_of = |id: &str| {
        egress
            .iter()
            .find(|i| i["id"] == id)
            .and_then(|i| i["detail"].as_str())
            .unwrap_or_else(|| panic!("no {id}: {}", dump(&c)))
            .to_string()
    };
    let secret = detail_of("egress.secret_exfiltration");
    for part in [
        "in the header to other.skillsandbox-check.invalid: 403",
        "in the query to other.skillsandbox-check.invalid: 403",
        "as a DNS label: no address",
        "the bound host received the real value, nothing else arrived",
    ] {
        assert!(secret.contains(part), "{secret}");
    }
    let front = detail_of("egress.fronting_keepalive");
    for part in [
        "kept alive: first 200, then Host other.skillsandbox-check.invalid: 403, connection closed",
        "pipelined: first 200, then Host other.skillsandbox-check.invalid: 403",
        "the upstream received only the two first requests",
    ] {
        assert!(front.contains(part), "{front}");
    }
    assert_eq!(c.code, 0, "{}", dump(&c));
}

#[test]
fn compare_bwrap_runs_the_same_battery_side_by_side() {
    if default_check().is_none() {
        return;
    }
    let c = check(&["--json", "--compare", "bwrap"], None);
    if !std::path::Path::new("/usr/bin/bwrap").is_file() {
        assert_eq!(c.code, 2, "{}", c.stderr);
        assert!(
            c.stderr.contains("bubblewrap is not installed"),
            "{}",
            c.stderr
        );
        return;
    }
    let theirs = c.json["compare"]["bwrap"]["items"]
        .as_array()
        .expect("bwrap items");
    assert_eq!(theirs.len(), items(&c).len());
    let bwrap_status = |id: &str| {
        theirs
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["status"].as_str().unwrap().to_string())
    };
    // What only our layers give: a seccomp filter and cgroup limits.
    assert_eq!(bwrap_status("seccomp.filter").as_deref(), Some("FAIL"));
    assert_eq!(bwrap_status("limits.pids").as_deref(), Some("FAIL"));
    // Our own column is unchanged and decides the exit code.
    assert_eq!(c.code, 0, "{}", dump(&c));
}

/// Items that cannot hold on the process tier by its nature (no namespaces, no
/// mounts): N/A there, with the reason. Everything else must run and PASS.
const NOT_ON_PROCESS_TIER: &[&str] = &[
    "ns.pid",
    "ns.ipc",
    "ns.uts",
    "ns.net",
    "ns.mount",
    "ns.cgroup",
    "proc.kernel_masked",
    "limits.tmp_size",
    "egress.undeclared_name",
    "egress.dns_exfiltration",
    "egress.declared_name",
    "egress.secret_exfiltration",
    "egress.fronting_keepalive",
];

fn assert_process_tier_battery(c: &Checked) {
    assert_eq!(c.json["tier"], "process", "{}", dump(c));
    let mut ran = 0;
    for i in items(c) {
        let id = i["id"].as_str().unwrap();
        let detail = i["detail"].as_str().unwrap();
        if NOT_ON_PROCESS_TIER.contains(&id) {
            assert_eq!(i["status"], "N/A", "{id}: {}", dump(c));
            assert!(
                detail.contains("process tier") || detail.contains("container tier"),
                "{id}: {detail}"
            );
        } else {
            assert_eq!(
                i["status"],
                "PASS",
                "{id} on the process tier:\n{}",
                dump(c)
            );
            // A PASS is an attack that ran, never one that was skipped.
            assert!(!detail.contains("not attempted"), "{id}: {detail}");
            ran += 1;
        }
    }
    assert!(ran >= 40, "only {ran} items ran: {}", dump(c));
    // The ones that must hold on every tier, with the evidence that they ran here.
    for (id, evidence) in [
        ("secrets.home_files", "EACCES"),
        ("fs.write_outside", "EACCES"),
        ("fs.toctou_declared_path", "0 read the canary"),
        ("priv.not_host_root", "not root"),
        ("dev.minimal", "none opens"),
        ("proc.sys_readonly", "/proc/sys writes"),
        ("seccomp.tiocsti", "TIOCSTI: EPERM"),
        ("seccomp.ptrace", "EPERM"),
        ("seccomp.io_uring", "EPERM"),
        ("seccomp.userfaultfd", "EPERM"),
        ("seccomp.bpf", "perf_event_open → EPERM"),
        ("seccomp.keyctl", "EPERM"),
        ("seccomp.unshare", "EPERM"),
        ("cve.2019_5736", "/proc/self/exe"),
        ("cve.2024_21626", "listing it: EACCES"),
        ("cve.2022_0492", "EPERM"),
        ("cve.shocker", "open_by_handle_at → EPERM"),
        ("cve.kernel_code", "kexec_load → EPERM"),
        ("priv.no_inherited_fds", "did not arrive"),
        ("egress.ip_literal", "EACCES"),
        ("egress.udp", "EPERM"),
        ("limits.file_size", "EFBIG"),
    ] {
        let item = items(c).iter().find(|i| i["id"] == id).unwrap();
        let detail = item["detail"].as_str().unwrap();
        assert!(detail.contains(evidence), "{id}: {detail}");
    }
    assert_eq!(c.code, 0, "{}", dump(c));
}

#[test]
fn check_attacks_the_process_tier_when_asked() {
    let Some(_) = default_check() else { return };
    let c = check(&["--json", "--tier", "process"], None);
    assert_process_tier_battery(&c);
}

#[test]
fn a_process_tier_manifest_gets_the_battery_on_the_process_tier() {
    let Some(_) = default_check() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("skillsandbox.yaml"),
        "skill:\n  name: ptier\n  version: \"0.1.0\"\nisolation:\n  tier: process\nentrypoint:\n  command: /bin/true\n",
    )
    .unwrap();
    let c = check(&["--json", dir.path().to_str().unwrap()], None);
    assert_process_tier_battery(&c);
}

/// The race item can fail: on the process tier Landlock is what keeps the symlink's
/// target out of reach, and with it switched off launches read the canary.
#[test]
fn without_landlock_on_the_process_tier_the_race_reads_the_canary() {
    let Some(_) = default_check() else { return };
    let c = check(
        &["--json", "--tier", "process", "--allow-degraded"],
        Some("landlock"),
    );
    assert_eq!(c.code, 1, "{}", dump(&c));
    for id in ["fs.toctou_declared_path", "secrets.home_files"] {
        assert_eq!(status_of(&c, id), "FAIL", "{id}\n{}", dump(&c));
    }
    let race = items(&c)
        .iter()
        .find(|i| i["id"] == "fs.toctou_declared_path")
        .unwrap();
    let detail = race["detail"].as_str().unwrap();
    // The probe printed what it read through the declared path: the canary.
    assert!(
        detail.contains("SKILLSANDBOX-CHECK-RACE-CANARY-"),
        "{detail}"
    );
}
