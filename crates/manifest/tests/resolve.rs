//! `resolve` is pure: exact expected policies for given manifests, skill dirs and homes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::path::{Path, PathBuf};

use skillsandbox_manifest::*;

fn env() -> ResolveEnv {
    ResolveEnv {
        home: PathBuf::from("/home/alice"),
    }
}

fn resolved(yaml: &str) -> Policy {
    let m = parse_str(yaml, "m.yaml").unwrap();
    resolve(&m, Path::new("/skills/demo"), &env()).unwrap()
}

#[test]
fn full_manifest_resolves_exactly() {
    let policy = resolved(
        r#"
skill:
  name: demo
  version: "1.2.3"
  description: a demo
  author: me
permissions:
  network:
    egress:
      - domain: API.Example.com
      - domain: "*.example.org"
        ports: [443, 8443, 443]
        protocol: tcp
      - cidr: 10.20.0.0/16
        ports: [5432]
      - cidr: "2001:db8::/32"
  filesystem:
    read: [/data/in/, "~", "~/.cache/x", ./assets, "sub/../cfg", .]
    write: [/tmp/out]
    deny: [/data/in/secret]
  env_vars:
    allow: [API_KEY, "LC_*", "*"]
  syscalls:
    profile: strict
resources:
  memory_mb: 512
  cpu_shares: 512
  max_runtime_seconds: 10
  max_output_bytes: 4096
  max_processes: 8
  max_open_files: 32
  max_file_size_mb: 2
  tmp_size_mb: 16
isolation:
  tier: process
  record_denials: true
entrypoint:
  command: python3
  args: [main.py, --fast]
  workdir: /skill/bin
"#,
    );
    let expected = Policy {
        skill: SkillInfo {
            name: "demo".into(),
            version: "1.2.3".into(),
            description: Some("a demo".into()),
            author: Some("me".into()),
        },
        skill_dir: Some("/skills/demo".into()),
        manifest: None,
        network: NetworkPolicy {
            egress: vec![
                EgressRule::Domain {
                    domain: DomainPattern::Exact("api.example.com".into()),
                    ports: vec![443],
                    http: Default::default(),
                    allow_private_resolution: false,
                },
                EgressRule::Domain {
                    domain: DomainPattern::Wildcard("example.org".into()),
                    ports: vec![443, 8443],
                    http: Default::default(),
                    allow_private_resolution: false,
                },
                EgressRule::Cidr {
                    cidr: "10.20.0.0/16".parse().unwrap(),
                    ports: vec![5432],
                },
                EgressRule::Cidr {
                    cidr: "2001:db8::/32".parse().unwrap(),
                    ports: vec![443],
                },
            ],
            record: false,
            secrets: Vec::new(),
        },
        filesystem: FilesystemPolicy {
            read: vec![
                "/data/in".into(),
                "/home/alice".into(),
                "/home/alice/.cache/x".into(),
                "/skills/demo/assets".into(),
                "/skills/demo/cfg".into(),
                "/skills/demo".into(),
            ],
            write: vec!["/tmp/out".into()],
            deny: vec!["/data/in/secret".into()],
        },
        env: EnvPolicy {
            allow: vec![
                EnvPattern::Exact("API_KEY".into()),
                EnvPattern::Prefix("LC_".into()),
                EnvPattern::Prefix(String::new()),
            ],
        },
        syscalls: SyscallProfile::Strict,
        limits: Limits {
            memory_mb: 512,
            cpu_cores: 0.5,
            max_runtime_seconds: 10,
            max_output_bytes: 4096,
            max_processes: 8,
            max_open_files: 32,
            max_file_size_mb: 2,
            tmp_size_mb: 16,
        },
        tier: Tier::Process,
        record_denials: Some(true),
        entrypoint: Entrypoint {
            command: "python3".into(),
            args: vec!["main.py".into(), "--fast".into()],
            workdir: "/skill/bin".into(),
        },
    };
    assert_eq!(policy, expected);
}

#[test]
fn minimal_manifest_gets_every_default() {
    let policy = resolved("skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\n");
    assert_eq!(
        policy,
        Policy {
            skill: SkillInfo {
                name: "x".into(),
                version: "0.1.0".into(),
                description: None,
                author: None,
            },
            skill_dir: Some("/skills/demo".into()),
            manifest: None,
            network: NetworkPolicy {
                egress: vec![],
                record: false,
                secrets: Vec::new(),
            },
            filesystem: FilesystemPolicy::default(),
            env: EnvPolicy { allow: vec![] },
            syscalls: SyscallProfile::Default,
            limits: Limits::default(),
            tier: Tier::Auto,
            record_denials: None,
            entrypoint: Entrypoint {
                command: "sh".into(),
                args: vec![],
                workdir: "/skill".into(),
            },
        }
    );
    assert_eq!(policy.limits.memory_mb, 256);
    assert_eq!(policy.limits.cpu_cores, 1.0);
}

#[test]
fn null_sections_are_left_out() {
    let policy = resolved(
        "skill: {name: x, version: 0.1.0, description: ~}\npermissions:\nresources:\n  memory_mb:\nentrypoint: {command: sh, args: ~}\n",
    );
    assert_eq!(policy.skill.description, None);
    assert_eq!(policy.limits, Limits::default());
    assert!(policy.entrypoint.args.is_empty());
}

#[test]
fn prototype_manifest_resolves_with_cpu_shares_converted() {
    let src = include_str!("../../../examples/prototype/skillsandbox.yaml");
    let policy = resolved(src);
    assert_eq!(policy.limits.cpu_cores, 0.25);
    assert_eq!(policy.limits.memory_mb, 128);
    assert_eq!(policy.limits.max_runtime_seconds, 30);
    assert_eq!(
        policy.env.allow,
        vec![
            EnvPattern::Exact("OPENWEATHER_API_KEY".into()),
            EnvPattern::Exact("LANG".into()),
            EnvPattern::Exact("PATH".into()),
        ]
    );
    // Declared for compatibility, never imported from the host.
    assert!(!policy.env.allows("PATH"));
    assert!(policy.network.domain_allows("api.openweathermap.org", 443));
    assert!(!policy.network.domain_allows("api.openweathermap.org", 80));
}

#[test]
fn tilde_needs_an_absolute_home() {
    let m = parse_str(
        "skill: {name: x, version: 0.1.0}\npermissions:\n  filesystem:\n    read: [\"~/.cache\", /ok]\nentrypoint: {command: sh}\n",
        "m.yaml",
    )
    .unwrap();
    for home in ["", "relative/home"] {
        let env = ResolveEnv { home: home.into() };
        let err = resolve(&m, Path::new("/s"), &env).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!(d.field, "permissions.filesystem.read[0]");
        assert_eq!(d.pos, Some(Pos::new(4, 12)));
        assert!(d.message.starts_with("cannot expand `~`"), "{}", d.message);
    }
    // Without `~`, no home is needed.
    let m = parse_str(
        "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\n",
        "m.yaml",
    )
    .unwrap();
    let env = ResolveEnv {
        home: PathBuf::new(),
    };
    assert!(resolve(&m, Path::new("/s"), &env).is_ok());
}

#[test]
fn relative_skill_dir_is_refused() {
    let m = parse_str(
        "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\n",
        "m.yaml",
    )
    .unwrap();
    assert!(resolve(&m, Path::new("skills/x"), &env()).is_err());
}

#[test]
fn secrets_resolve_and_bad_bindings_name_their_line() {
    let head = "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\npermissions:\n  network:\n    egress:\n      - domain: a.example.com\n";
    let p = resolved(&format!(
        "{head}  secrets:\n    TOKEN:\n      from: env:HOST_TOKEN\n      hosts: [a.example.com]\n      header: Authorization\n"
    ));
    assert_eq!(p.network.secrets.len(), 1);
    assert_eq!(
        p.network.secrets[0].from,
        SecretSource::Env("HOST_TOKEN".into())
    );
    assert!(p.network.intercepts());
    assert!(p.network.http_rules("a.example.com", 443).is_some());
    for (extra, field, pos, message) in [
        (
            "  secrets:\n    TOKEN:\n      from: env:TOKEN\n      hosts: [b.example.com]\n",
            "permissions.secrets.TOKEN.hosts[0]",
            Pos::new(10, 15),
            "secret `TOKEN` is bound to `b.example.com`, which no egress domain rule allows",
        ),
        (
            "  env_vars:\n    allow: [TOK*]\n  secrets:\n    TOKEN:\n      from: env:TOKEN\n      hosts: [a.example.com]\n",
            "permissions.secrets.TOKEN",
            Pos::new(10, 5),
            "`TOKEN` is both a secret and an allowed environment variable: its real value would reach the sandbox",
        ),
    ] {
        let m = parse_str(&format!("{head}{extra}"), "m.yaml").unwrap();
        let err = resolve(&m, Path::new("/s"), &env()).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!((d.field.as_str(), d.pos, d.message.as_str()), (field, Some(pos), message));
    }
}
