//! Fuzz targets: one function per parser that reads bytes a skill, an agent or a
//! downloaded file controls. Each takes arbitrary bytes and panics only when a
//! property is broken (a parser panicking is itself the bug being hunted):
//!
//! | target | parser | properties beyond "no panic" |
//! |---|---|---|
//! | `dns` | the egress DNS responder (`egress::dns`) | reply echoes the id, is a response, carries at most one question, stays under 4 KiB; undeclared names never get an address |
//! | `sniff` | TLS ClientHello SNI / HTTP/1 head (`egress::sniff`) | a connection passes for a name only when every name it carries is that name; normalising is idempotent |
//! | `manifest` | `skillsandbox.yaml` (positioned reader, checks, resolve, lint) | every error names a line inside the input |
//! | `policy` | the session policy file | every error names a line inside the input |
//! | `mcp_args` | MCP tool arguments (JSON) and the domain-grant syntax | an accepted grant round-trips through its own text |
//! | `audit_log` | `audit verify` over a hostile log file | a verdict, never a panic |
//! | `skill_md` | SKILL.md front matter (`skill::skill_md::parse`) | every error names a line inside the input |
//! | `hook_event` | the agent-shell hook's PreToolUse JSON and its decision (`hook::parse_event`, `decide`) | a shell tool call is confined or refused, never passed through; the rewritten command splits back (POSIX single quotes) into exactly our `exec` argv ending in `/bin/sh -c <the agent's command>` |
//! | `oci_spec` | an OCI bundle's `config.json` mapped onto a run (`oci::bundle::map_spec`: process, user, mounts, resources, rlimits, seccomp, network annotations) | an accepted spec runs on the container tier, every mount it adds lies outside `/proc`, `/dev`, `/sys` at an absolute plain path, a tmpfs is at least 1 MiB and within the memory limit, limits never exceed the defaults, no terminal without `process.terminal` |
//!
//! The same functions are driven three ways: `cargo test -p skillsandbox-fuzz`
//! (bolero's test engine: the committed corpus under `tests/__fuzz__/`, then random
//! inputs for `SKILLSANDBOX_FUZZ_SECONDS`, 5 by default, CI 60), and
//! `bench/fuzz.sh` (a longer run of the same engine).

use std::path::Path;
use std::sync::OnceLock;

use skillsandbox_manifest::{NetworkPolicy, ResolveEnv};

/// Largest reply the responder may produce for any query (EDNS payload 1232, with
/// room to spare): a bigger one means an unbounded answer.
const MAX_DNS_REPLY: usize = 4096;

/// The last line a position in `text` may name: YAML's line breaks are `\n`, `\r`
/// and `\r\n` (a position past the last is a bug in the reader).
fn line_count(text: &str) -> u32 {
    let breaks = text.replace("\r\n", "\n").matches(['\n', '\r']).count();
    u32::try_from(breaks + 1).unwrap_or(u32::MAX)
}

/// The network the DNS and sniff targets decide against: one exact and one
/// wildcard name, resolved through the real manifest path so the target follows
/// the schema as it grows.
fn network() -> &'static NetworkPolicy {
    static NET: OnceLock<NetworkPolicy> = OnceLock::new();
    NET.get_or_init(|| {
        let yaml = "skill: {name: fuzz, version: 0.1.0}\n\
             permissions:\n  network:\n    egress:\n      - domain: api.example.com\n\
             \x20       ports: [443]\n      - domain: \"*.allowed.test\"\n        ports: [443, 80]\n\
             entrypoint: {command: \"true\"}\n";
        let parsed = skillsandbox_manifest::parse_str(yaml, "fuzz.yaml");
        let policy = parsed.ok().and_then(|m| {
            skillsandbox_manifest::resolve(&m, Path::new("/skill"), &env()).ok()
        });
        match policy {
            Some(p) => p.network,
            None => panic!("the fuzz targets' own manifest no longer parses"),
        }
    })
}

fn env() -> ResolveEnv {
    ResolveEnv {
        home: "/home/fuzz".into(),
    }
}

/// The DNS responder on one query packet.
pub fn dns(data: &[u8]) {
    let Some(reply) = skillsandbox_egress::fuzzing::dns_reply(data, network()) else {
        return;
    };
    assert!(reply.len() >= 12, "reply shorter than a header");
    assert!(
        reply.len() <= MAX_DNS_REPLY,
        "reply of {} bytes",
        reply.len()
    );
    assert_eq!(reply[..2], data[..2], "id not echoed");
    assert!(reply[2] & 0x80 != 0, "reply is not a response");
    let qdcount = u16::from_be_bytes([reply[4], reply[5]]);
    assert!(qdcount <= 1, "{qdcount} questions in the reply");
    let ancount = u16::from_be_bytes([reply[6], reply[7]]);
    if ancount > 0 {
        let name = question_name(&reply).unwrap_or_default();
        let allowed = name == "api.example.com"
            || (name.ends_with(".allowed.test") && name.len() > ".allowed.test".len());
        assert!(allowed, "an answer for undeclared name {name:?}");
    }
}

/// The question name of a packet, lower-cased, labels joined by dots (`None` when
/// it is not plain labels).
fn question_name(p: &[u8]) -> Option<String> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*p.get(i)?);
        if len == 0 {
            break;
        }
        if len >= 0x40 {
            return None;
        }
        let label = p.get(i + 1..i + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += 1 + len;
    }
    Some(labels.join("."))
}

/// The first bytes of a connection, checked against a declared name.
pub fn sniff(data: &[u8]) {
    for (name, port) in [("api.example.com", 443), ("www.allowed.test", 80)] {
        let (names, passes) = skillsandbox_egress::fuzzing::sniff_names(data, name, port);
        if passes {
            assert!(
                names.iter().all(|n| n == name),
                "passed for {name} while carrying {names:?}"
            );
        }
        for n in &names {
            let once = skillsandbox_egress::fuzzing::normalize(n);
            assert_eq!(
                skillsandbox_egress::fuzzing::normalize(&once),
                once,
                "normalising {n:?} is not idempotent"
            );
        }
    }
}

/// A manifest: positioned parse, resolve, lint.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = line_count(&text);
    match skillsandbox_manifest::parse_str(&text, "fuzz.yaml") {
        Err(e) => {
            for d in e.diagnostics() {
                if let Some(pos) = d.pos {
                    assert!(pos.line <= lines, "error at line {} of {lines}", pos.line);
                }
            }
        }
        Ok(m) => {
            if let Ok(policy) = skillsandbox_manifest::resolve(&m, Path::new("/skill"), &env()) {
                let _ = skillsandbox_manifest::lint(&policy);
            }
        }
    }
}

/// A session policy file.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = line_count(&text);
    if let Err(skillsandbox_policy::PolicyFileError::Invalid { diagnostics }) =
        skillsandbox_policy::parse_policy(&text, "fuzz-policy.yaml")
    {
        for d in diagnostics {
            if let Some(pos) = d.pos {
                assert!(pos.line <= lines, "error at line {} of {lines}", pos.line);
            }
        }
    }
}

/// MCP tool arguments as a client sends them, and the domain-grant syntax they
/// and `exec --allow-domain` share.
pub fn mcp_args(data: &[u8]) {
    use skillsandbox_mcp::args::{ExecCommandArgs, ReportUsageArgs, RunSkillArgs};
    let _ = serde_json::from_slice::<RunSkillArgs>(data);
    let _ = serde_json::from_slice::<ExecCommandArgs>(data);
    if let Ok(r) = serde_json::from_slice::<ReportUsageArgs>(data) {
        let _ = r.to_report();
    }
    let text = String::from_utf8_lossy(data);
    if let Ok((domain, ports)) = skillsandbox_manifest::parse_domain_grant(&text) {
        assert!(!ports.is_empty(), "a grant without ports: {text:?}");
        let again = format!(
            "{domain}:{}",
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let round = skillsandbox_manifest::parse_domain_grant(&again);
        assert_eq!(round, Ok((domain, ports)), "{text:?} -> {again:?}");
    }
}

/// `audit verify` over a log file with arbitrary contents.
pub fn audit_log(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("audit.jsonl");
    if std::fs::write(&path, data).is_ok() {
        let _ = skillsandbox_audit::verify(&path);
    }
}

/// A SKILL.md file's text.
pub fn skill_md(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = line_count(&text);
    if let Err(diagnostics) = skillsandbox_skill::skill_md::parse(&text, "SKILL.md") {
        for d in diagnostics {
            if let Some(pos) = d.pos {
                assert!(pos.line <= lines, "error at line {} of {lines}", pos.line);
            }
        }
    }
}

/// The words a POSIX shell makes of `s` when it holds only single-quoted words
/// separated by single spaces (what the hook writes); `None` for anything else.
fn split_single_quoted(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' if in_word => cur.push(chars.next()?),
            ' ' if in_word => {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            _ => return None,
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// A PreToolUse payload through the hook's parser and decision.
pub fn hook_event(data: &[u8]) {
    use skillsandbox_hook::{decide, parse_event, Decision, HookProfile, SessionView};
    let Ok(event) = parse_event(data) else {
        return;
    };
    let profile = HookProfile {
        path: "/project/.skillsandbox/profile.yaml".into(),
        hidden: vec!["/project/secrets".into()],
        protected: vec!["/project/.skillsandbox".into()],
        exe: "/usr/bin/skillsandbox".into(),
    };
    let shell_field = match event.tool_name.as_str() {
        "Bash" | "shell" | "local_shell" => Some("command"),
        "exec_command" => Some("cmd"),
        _ => None,
    };
    let decision = decide(&event, &profile, &SessionView::Open);
    let Some(field) = shell_field else {
        return;
    };
    if event.hook_event_name != "PreToolUse" {
        assert!(matches!(decision, Decision::Deny { .. }), "{decision:?}");
        return;
    }
    match decision {
        Decision::PassThrough => panic!("a {} call passed through unconfined", event.tool_name),
        Decision::Deny { .. } => {}
        Decision::Allow { updated_input, .. } => {
            let cmd = updated_input[field].as_str().unwrap_or_default();
            let words = split_single_quoted(cmd)
                .unwrap_or_else(|| panic!("not a list of single-quoted words: {cmd:?}"));
            assert_eq!(
                words.first().map(String::as_str),
                Some("/usr/bin/skillsandbox")
            );
            assert_eq!(words.get(1).map(String::as_str), Some("exec"));
            let n = words.len();
            assert!(n >= 4, "{words:?}");
            assert_eq!(&words[n - 4..n - 1], ["--", "/bin/sh", "-c"], "{words:?}");
            if let Some(original) = event.tool_input.get(field).and_then(|v| v.as_str()) {
                assert_eq!(words[n - 1], original, "the agent's command changed");
            }
        }
    }
}

/// An OCI bundle's `config.json` through the runtime's mapping. The engine writes it,
/// but from what a pod or container spec's author chose (annotations, mounts, user,
/// seccomp profile): nothing in it may panic the runtime or loosen what we enforce.
pub fn oci_spec(data: &[u8]) {
    let _ = oci_spec_mapped(data);
}

/// [`oci_spec`], saying whether the spec was accepted (and so its properties checked).
pub fn oci_spec_mapped(data: &[u8]) -> bool {
    use skillsandbox_oci::bundle::{map_spec, Defaults};
    use skillsandbox_sandbox::plan::Volume;
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else {
        return false;
    };
    let annotations = spec.annotations().clone().unwrap_or_default();
    let defaults = Defaults::default();
    let Ok(launch) = map_spec(&spec, "/rootfs".into(), annotations, None, &defaults) else {
        return false;
    };
    let base = skillsandbox_runtime::adhoc_policy(
        None,
        &["true".to_string()],
        &skillsandbox_runtime::Grants::default(),
        Path::new("/"),
    );
    let l = &launch.policy.limits;
    assert_eq!(launch.policy.tier, skillsandbox_manifest::Tier::Container);
    assert!(l.memory_mb <= base.limits.memory_mb, "{l:?}");
    assert!(l.max_processes <= base.limits.max_processes, "{l:?}");
    assert!(l.max_open_files <= base.limits.max_open_files, "{l:?}");
    assert!(l.cpu_cores <= base.limits.cpu_cores, "{l:?}");
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    assert_eq!(launch.terminal, terminal);
    for v in &launch.volumes {
        let t = v.target();
        assert!(t.is_absolute() && t != Path::new("/"), "{v:?}");
        assert!(
            t.components().all(|c| matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )),
            "{v:?}"
        );
        for r in ["/proc", "/dev", "/sys"] {
            assert!(!t.starts_with(r), "{v:?}");
        }
        if let Volume::Tmpfs { size_mb, .. } = v {
            assert!(*size_mb >= 1 && *size_mb <= l.memory_mb.max(1), "{v:?}");
        }
    }
    true
}
