//! `skillsandbox learn` through the real binary: skills shaped like published ones
//! (Python, bash, Node; one that calls an API, one that transforms files in its
//! workdir, one converter that needs only local files) get a proposal they then pass
//! under with `run`, and `check` on it finds nothing; the credential stealers get
//! their stolen paths and exfiltration hosts listed as refused, never granted, and
//! still get nothing under the learned manifest; learning relays nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::skills::{code, copy_dir, text, Project};

const HEADER: &str = "# learned by skillsandbox learn";

/// The manifest's lines that are not comments.
fn grants(yaml: &str) -> String {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split("   #").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn learn(p: &Project, dir: &Path, extra: &[&str]) -> String {
    let mut a = vec!["learn", dir.to_str().unwrap()];
    a.extend(extra);
    let out = p.run(&a);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "learn {}: {so}\n{se}", dir.display());
    assert!(so.contains("wrote "), "{so}");
    let yaml = std::fs::read_to_string(dir.join("skillsandbox.yaml")).unwrap();
    assert!(yaml.starts_with(HEADER), "{yaml}");
    yaml
}

fn passes(p: &Project, dir: &Path, args: &[&str], want: &str) {
    let mut a = vec!["run", dir.to_str().unwrap(), "--"];
    a.extend(args);
    let out = p.run(&a);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "run {}: {so}\n{se}", dir.display());
    assert!(so.contains(want), "run {}: {so}\n{se}", dir.display());
}

fn check_finds_nothing(p: &Project, dir: &Path) {
    let out = p.run(&["check", dir.to_str().unwrap()]);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "check {}: {so}\n{se}", dir.display());
    assert!(so.contains(" 0 FAIL"), "check {}: {so}", dir.display());
}

#[test]
fn learned_manifests_are_least_privilege_and_the_skills_pass_under_them() {
    let p = Project::new();
    // A document outside /tmp (the sandbox's /tmp is private), for the converter.
    let docs = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let doc = std::fs::canonicalize(docs.path())
        .unwrap()
        .join("report.md");
    std::fs::write(&doc, "# Quarterly\n\nAll **green**.\n").unwrap();
    let doc = doc.to_str().unwrap();

    let stats = p.copy_fixture("word-stats");
    let yaml = learn(&p, &stats, &[]);
    assert!(!yaml.contains("filesystem:"), "{yaml}");
    assert!(!yaml.contains("network:"), "{yaml}");
    assert!(yaml.contains("#   exec /usr/bin/python3"), "{yaml}");
    passes(&p, &stats, &[], "lines=3 words=16 top=the:4");
    check_finds_nothing(&p, &stats);

    // Transforms files in its workdir (the run's private $TMPDIR): no grant needed.
    let slug = p.copy_fixture("slugify");
    let yaml = learn(&p, &slug, &["--", "Hello World!"]);
    assert!(!yaml.contains("filesystem:"), "{yaml}");
    assert!(yaml.contains("# Processes started: "), "{yaml}");
    assert!(yaml.contains("/usr/bin/sed"), "{yaml}");
    passes(&p, &slug, &["Hello World!"], "hello-world");
    check_finds_nothing(&p, &slug);

    // A converter that needs one local file: exactly that file, read-only.
    let conv = p.copy_fixture("md2html");
    let yaml = learn(&p, &conv, &["--", doc]);
    assert!(
        yaml.contains(&format!(
            "    read:\n      - \"{doc}\"   # read by scripts/convert.js\n"
        )),
        "{yaml}"
    );
    assert!(!yaml.contains("write:"), "{yaml}");
    assert!(!grants(&yaml).contains("package.json"), "{yaml}");
    passes(&p, &conv, &[doc], "<strong>green</strong>");
    check_finds_nothing(&p, &conv);

    // Learned, then approved, then run: the README's flow.
    let out = p.run(&["approve", conv.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let out = p.run(&[
        "run",
        "--require-approval",
        conv.to_str().unwrap(),
        "--",
        doc,
    ]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
}

/// An HTTP server on the host's loopback that counts its connections and answers
/// each with a quote.
fn quote_server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(16) {
            let Ok(mut c) = conn else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ =
                c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 22\r\n\r\nsimplicity is prudence");
        }
    });
    (port, seen)
}

#[test]
fn an_api_skill_gets_its_one_host_and_learning_relays_nothing() {
    let p = Project::new();
    let (port, seen) = quote_server();
    let dir = p.copy_fixture("quote-fetch");
    let url = format!("http://api.quotes.test:{port}/today");
    let out = p.run(&["learn", dir.to_str().unwrap(), "--", &url]);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "{so}\n{se}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "learning must not relay a single connection"
    );
    let yaml = std::fs::read_to_string(dir.join("skillsandbox.yaml")).unwrap();
    let rule = format!(
        "      - domain: \"api.quotes.test\"\n        ports: [{port}]   # connected by scripts/fetch.py\n"
    );
    assert!(yaml.contains(&rule), "{yaml}");
    assert!(so.contains("1 destination(s)"), "{so}");

    // Here a loopback server stands in for the internet, so the run also needs the
    // cidr rule every egress test uses for it (and the name pointed at it).
    let widened = yaml.replace(
        &rule,
        &format!("{rule}      - cidr: 127.0.0.1/32\n        ports: [{port}]\n"),
    );
    std::fs::write(dir.join("skillsandbox.yaml"), widened).unwrap();
    let hosts = p.state.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 api.quotes.test\n").unwrap();
    let out = p
        .cmd()
        .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
        .args(["run", dir.to_str().unwrap(), "--", &url])
        .output()
        .unwrap();
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "{so}\n{se}");
    assert!(so.contains("quote: simplicity is prudence"), "{so}\n{se}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // Any other name stays refused under the learned manifest.
    let other = format!("http://api.other.test:{port}/today");
    let out = p
        .cmd()
        .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
        .args(["run", dir.to_str().unwrap(), "--", &other])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0, "{:?}", text(&out));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// Everything a learned manifest must never grant for a stealer.
fn refused_not_granted(yaml: &str, summary: &str, what: &[&str]) {
    let granted = grants(yaml);
    for w in what {
        assert!(summary.contains(w), "refused list lacks {w}:\n{summary}");
        assert!(
            yaml.contains(&format!("#   {w}")),
            "{w} not in the refused block:\n{yaml}"
        );
        let target = w.split_whitespace().nth(1).unwrap();
        let host = target.split(':').next().unwrap();
        assert!(!granted.contains(host), "{host} granted:\n{granted}");
    }
}

#[test]
fn stealers_get_their_loot_refused_not_granted_and_still_get_nothing() {
    let p = Project::new();
    let stealer = p.copy_fixture("credential-stealer");
    let out = p.run(&["learn", stealer.to_str().unwrap(), "--", "Paris"]);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "{so}\n{se}");
    let yaml = std::fs::read_to_string(stealer.join("skillsandbox.yaml")).unwrap();
    refused_not_granted(
        &yaml,
        &so,
        &[
            "read /home/sandbox/.ssh/id_rsa: credential path",
            "read /root/.ssh/id_rsa: credential path",
            "read /root/.aws/credentials: credential path",
            "connect paste.example-exfil.net:443: exfiltration-shaped host",
        ],
    );
    assert!(
        yaml.contains("#     by scripts/weather.py (openat)"),
        "{yaml}"
    );
    assert!(!format!("{so}{se}{yaml}").contains("CANARY-key-91ce"));
    let out = p.run(&["run", stealer.to_str().unwrap()]);
    let (so, se) = text(&out);
    assert!(so.contains("nothing to steal"), "{so}\n{se}");
    assert!(so.contains("exfil failed"), "{so}\n{se}");

    // The malicious-weather example has a manifest: --force replaces it.
    let mw = p.root.join("skills/malicious-weather");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/malicious-weather"),
        &mw,
    );
    let out = p.run(&["learn", mw.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{:?}", text(&out));
    assert!(text(&out).1.contains("--diff"), "{:?}", text(&out));
    let out = p.run(&["learn", "--diff", mw.to_str().unwrap()]);
    let (so, _) = text(&out);
    assert_eq!(code(&out), 0, "{so}");
    assert!(so.contains("- network: api.openweathermap.org:443"), "{so}");
    let out = p.run(&["learn", "--force", mw.to_str().unwrap()]);
    let (so, se) = text(&out);
    assert_eq!(code(&out), 0, "{so}\n{se}");
    let yaml = std::fs::read_to_string(mw.join("skillsandbox.yaml")).unwrap();
    refused_not_granted(
        &yaml,
        &so,
        &[
            "read /etc/shadow: credential path",
            "read /root/.aws/credentials: credential path",
            "connect webhook.site:443: exfiltration-shaped host",
            "connect 93.184.216.34:80: raw IP destination",
            "connect dns.google:443: exfiltration-shaped host",
        ],
    );
    assert!(!grants(&yaml).contains("/home"), "{yaml}");
    let out = p.run(&["run", mw.to_str().unwrap(), "--", "Paris"]);
    let (_, se) = text(&out);
    assert!(se.contains("0 succeeded"), "{se}");
}
