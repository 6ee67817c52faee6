//! Table of invalid manifests: each must fail with exactly these errors (line, column,
//! field path, message), in this order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use skillsandbox_manifest::{parse_str, ManifestError};

/// A valid manifest's first five lines; cases append sections from line 6 on.
const HEAD: &str = "skill:\n  name: demo\n  version: \"1.0.0\"\nentrypoint:\n  command: python3\n";

struct Case {
    name: &'static str,
    yaml: String,
    /// (line, column, field, message)
    errors: &'static [(u32, u32, &'static str, &'static str)],
    /// Hint of the first error, when the case checks it.
    hint: Option<&'static str>,
}

fn head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

fn case(
    name: &'static str,
    yaml: impl Into<String>,
    errors: &'static [(u32, u32, &'static str, &'static str)],
) -> Case {
    Case {
        name,
        yaml: yaml.into(),
        errors,
        hint: None,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            hint: Some("did you mean `permissions`? valid keys here: skill, permissions, resources, isolation, entrypoint"),
            ..case("unknown top-level key", head("permisions: {}\n"), &[(6, 1, "permisions", "unknown key `permisions`")])
        },
        Case {
            hint: Some("did you mean `read`? valid keys here: read, write, deny"),
            ..case(
                "unknown nested key",
                head("permissions:\n  filesystem:\n    reed: [/tmp]\n"),
                &[(8, 5, "permissions.filesystem.reed", "unknown key `reed`")],
            )
        },
        Case {
            hint: Some("for example `weather-lookup`"),
            ..case(
                "bad name",
                "skill:\n  name: Weather Lookup\n  version: \"1.0.0\"\nentrypoint:\n  command: x\n",
                &[(2, 9, "skill.name", "invalid skill name `Weather Lookup`: use 1-64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or digit")],
            )
        },
        case(
            "name too long",
            format!("skill:\n  name: {}\n  version: \"1.0.0\"\nentrypoint:\n  command: x\n", "a".repeat(65)),
            &[(2, 9, "skill.name", "invalid skill name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`: use 1-64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or digit")],
        ),
        case(
            "bad semver",
            "skill:\n  name: demo\n  version: \"1.0\"\nentrypoint:\n  command: x\n",
            &[(3, 12, "skill.version", "invalid version `1.0`: not semantic versioning (unexpected end of input while parsing minor version number)")],
        ),
        Case {
            hint: Some("write a quoted semantic version, e.g. \"0.1.0\""),
            ..case(
                "unquoted number version",
                "skill:\n  name: demo\n  version: 1.0\nentrypoint:\n  command: x\n",
                &[(3, 12, "skill.version", "expected a string, found a number (1.0)")],
            )
        },
        case(
            "bad domain character",
            head("permissions:\n  network:\n    egress:\n      - domain: api_x.example.com\n"),
            &[(9, 17, "permissions.network.egress[0].domain", "invalid domain `api_x.example.com`: character `_` is not allowed; host names use letters, digits and `-`")],
        ),
        case(
            "wildcard in the middle",
            head("permissions:\n  network:\n    egress:\n      - domain: api.*.example.com\n"),
            &[(9, 17, "permissions.network.egress[0].domain", "invalid domain `api.*.example.com`: `*` is only allowed as the whole left-most label")],
        ),
        case(
            "wildcard over a TLD",
            head("permissions:\n  network:\n    egress:\n      - domain: \"*.com\"\n"),
            &[(9, 17, "permissions.network.egress[0].domain", "wildcard `*.com` is too broad: it must be followed by at least two labels")],
        ),
        Case {
            hint: Some("convert the name to its ASCII form (labels starting with `xn--`), e.g. `bücher.example` is `xn--bcher-kva.example`"),
            ..case(
                "non-ASCII domain",
                head("permissions:\n  network:\n    egress:\n      - domain: bücher.de\n"),
                &[(9, 17, "permissions.network.egress[0].domain", "invalid domain `bücher.de`: non-ASCII character `ü`; internationalised names must be written in punycode")],
            )
        },
        case(
            "port 0 and port 70000",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        ports: [0, 70000]\n"),
            &[
                (10, 17, "permissions.network.egress[0].ports[0]", "must be greater than 0 (got 0)"),
                (10, 20, "permissions.network.egress[0].ports[1]", "70000 is out of range: must be between 1 and 65535"),
            ],
        ),
        case(
            "empty ports",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        ports: []\n"),
            &[(10, 16, "permissions.network.egress[0].ports", "no ports listed")],
        ),
        case(
            "bad CIDR",
            head("permissions:\n  network:\n    egress:\n      - cidr: 10.0.0.0/33\n"),
            &[(9, 15, "permissions.network.egress[0].cidr", "invalid CIDR `10.0.0.0/33`")],
        ),
        Case {
            hint: Some("write `10.20.0.0/16` for the whole network, or `10.20.1.0/32` for the single address"),
            ..case(
                "CIDR with host bits",
                head("permissions:\n  network:\n    egress:\n      - cidr: 10.20.1.0/16\n"),
                &[(9, 15, "permissions.network.egress[0].cidr", "CIDR `10.20.1.0/16` has host bits set: the address has bits set beyond the /16 prefix")],
            )
        },
        case(
            "domain and cidr in one rule",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        cidr: 10.0.0.0/8\n"),
            &[(9, 9, "permissions.network.egress[0]", "set either `domain` or `cidr` in one rule, not both")],
        ),
        case(
            "lower-case HTTP method",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        methods: [get]\n"),
            &[(10, 19, "permissions.network.egress[0].methods[0]", "invalid HTTP method `get`")],
        ),
        case(
            "path without a leading slash",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        paths: [\"repos/*\"]\n"),
            &[(10, 17, "permissions.network.egress[0].paths[0]", "invalid path `repos/*`: must start with `/`")],
        ),
        case(
            "size with an unknown unit",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        max_bytes_out: 1 MBs\n"),
            &[(10, 24, "permissions.network.egress[0].max_bytes_out", "invalid size `1 MBs`")],
        ),
        case(
            "path rule on a cidr rule",
            head("permissions:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        paths: [/x]\n"),
            &[(10, 16, "permissions.network.egress[0].paths", "`paths` needs a `domain` rule: a `cidr` rule is raw TCP, with no HTTP request to check")],
        ),
        case(
            "secret from an unknown source",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n  secrets:\n    TOKEN:\n      from: vault:x\n      hosts: [a.example.com]\n"),
            &[(12, 13, "permissions.secrets.TOKEN.from", "invalid source `vault:x`")],
        ),
        case(
            "udp protocol",
            head("permissions:\n  network:\n    egress:\n      - domain: a.example.com\n        protocol: udp\n"),
            &[(10, 19, "permissions.network.egress[0].protocol", "only `tcp` egress is supported in v1")],
        ),
        case(
            "relative path climbing out",
            head("permissions:\n  filesystem:\n    read: [data/../../secrets]\n"),
            &[(8, 12, "permissions.filesystem.read[0]", "`data/../../secrets` climbs out of the skill directory")],
        ),
        case(
            "other user's home",
            head("permissions:\n  filesystem:\n    write: [\"~root/.ssh\"]\n"),
            &[(8, 13, "permissions.filesystem.write[0]", "`~root/.ssh`: only `~` and `~/...` are supported")],
        ),
        case(
            "bad env names",
            head("permissions:\n  env_vars:\n    allow: [OK_1, 1BAD, \"A*B\", \"X=1\"]\n"),
            &[
                (8, 19, "permissions.env_vars.allow[1]", "invalid environment variable name `1BAD`"),
                (8, 25, "permissions.env_vars.allow[2]", "invalid environment variable name `A*B`"),
                (8, 32, "permissions.env_vars.allow[3]", "invalid environment variable name `X=1`"),
            ],
        ),
        Case {
            hint: Some("did you mean `strict`? valid values: default, strict, permissive"),
            ..case(
                "bad profile",
                head("permissions:\n  syscalls:\n    profile: strcit\n"),
                &[(8, 14, "permissions.syscalls.profile", "invalid value `strcit`")],
            )
        },
        Case {
            hint: Some("valid values: auto, container, process"),
            ..case("bad tier", head("isolation:\n  tier: vm\n"), &[(7, 9, "isolation.tier", "invalid value `vm`")])
        },
        case("record_denials not a boolean", head("isolation:\n  record_denials: sometimes\n"), &[(7, 19, "isolation.record_denials", "expected true or false, found a string (\"sometimes\")")]),
        case("zero memory", head("resources:\n  memory_mb: 0\n"), &[(7, 14, "resources.memory_mb", "must be greater than 0 (got 0)")]),
        case(
            "huge memory",
            head("resources:\n  memory_mb: 2000000\n"),
            &[(7, 14, "resources.memory_mb", "2000000 is out of range: must be between 1 and 1048576")],
        ),
        case(
            "cpu_cores and cpu_shares",
            head("resources:\n  cpu_cores: 1\n  cpu_shares: 512\n"),
            &[(8, 15, "resources.cpu_shares", "set `cpu_cores` or the legacy `cpu_shares`, not both")],
        ),
        case(
            "fractional limit",
            head("resources:\n  max_processes: 1.5\n"),
            &[(7, 18, "resources.max_processes", "expected a whole number, found a number (1.5)")],
        ),
        case(
            "empty command",
            "skill:\n  name: demo\n  version: \"1.0.0\"\nentrypoint:\n  command: \"\"\n",
            &[(5, 12, "entrypoint.command", "the entrypoint command is empty")],
        ),
        Case {
            hint: Some("add `entrypoint:` with at least `command:`"),
            ..case(
                "missing entrypoint",
                "skill:\n  name: demo\n  version: \"1.0.0\"\n",
                &[(1, 1, "entrypoint", "missing required key `entrypoint`")],
            )
        },
        Case {
            hint: Some("the skill directory is mounted at /skill: write `/skill/src`"),
            ..case(
                "relative workdir",
                head("  workdir: src\n"),
                &[(6, 12, "entrypoint.workdir", "workdir `src` is not absolute; it is a path inside the sandbox")],
            )
        },
        case(
            "wrong type for a section",
            head("permissions: [network]\n"),
            &[(6, 14, "permissions", "expected a mapping (key: value pairs), found a list")],
        ),
        Case {
            hint: Some("write a list: [\"/tmp\"]"),
            ..case(
                "scalar where a list belongs",
                head("permissions:\n  filesystem:\n    read: /tmp\n"),
                &[(8, 11, "permissions.filesystem.read", "expected a list, found a string (\"/tmp\")")],
            )
        },
        Case {
            hint: Some("check the indentation and the quotes/brackets around this point"),
            ..case(
                "YAML syntax error",
                head("permissions:\n  env_vars: {allow: [A\n"),
                &[(7, 21, "", "invalid YAML: unclosed bracket '['")],
            )
        },
        Case {
            hint: Some("YAML indentation must use spaces, not tabs"),
            ..case(
                "tab indentation",
                head("resources:\n\tmemory_mb: 1\n"),
                &[(7, 2, "", "invalid YAML: tabs disallowed within this context (block indentation)")],
            )
        },
        Case {
            hint: Some("keep one of them: YAML keys must be unique"),
            ..case(
                "duplicate key",
                head("resources:\n  memory_mb: 64\n  memory_mb: 128\n"),
                &[(8, 3, "resources.memory_mb", "duplicate key `memory_mb` (first set at 7:3)")],
            )
        },
        case("empty file", "", &[(1, 1, "", "the manifest is empty")]),
        case(
            "several errors in one pass",
            "skill:\n  name: Demo\n  version: x\n  autor: me\nentrypoint:\n  command: \"\"\n",
            &[
                (2, 9, "skill.name", "invalid skill name `Demo`: use 1-64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or digit"),
                (3, 12, "skill.version", "invalid version `x`: not semantic versioning (unexpected character 'x' while parsing major version number)"),
                (4, 3, "skill.autor", "unknown key `autor`"),
                (6, 12, "entrypoint.command", "the entrypoint command is empty"),
            ],
        ),
    ]
}

#[test]
fn invalid_manifests_fail_with_exact_positions_and_messages() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for c in &cases {
        let err = match parse_str(&c.yaml, "m.yaml") {
            Ok(_) => {
                failures.push(format!("{}: parsed without error", c.name));
                continue;
            }
            Err(e) => e,
        };
        let ManifestError::Invalid { diagnostics } = &err else {
            failures.push(format!("{}: unexpected error kind {err:?}", c.name));
            continue;
        };
        let got: Vec<(u32, u32, &str, &str)> = diagnostics
            .iter()
            .map(|d| {
                let pos = d.pos.unwrap_or_default();
                (pos.line, pos.column, d.field.as_str(), d.message.as_str())
            })
            .collect();
        if got != c.errors {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                c.name, c.errors, got
            ));
        }
        if let Some(hint) = c.hint {
            if diagnostics[0].hint.as_deref() != Some(hint) {
                failures.push(format!("{}: hint {:?}", c.name, diagnostics[0].hint));
            }
        }
        // The display format is FILE:LINE:COL: FIELD: message.
        let first = &c.errors[0];
        let field = if first.2.is_empty() {
            String::new()
        } else {
            format!("{}: ", first.2)
        };
        let want = format!("m.yaml:{}:{}: {field}{}", first.0, first.1, first.3);
        if !err.to_string().starts_with(&want) {
            failures.push(format!("{}: display {:?}", c.name, err.to_string()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn root_that_is_not_a_mapping() {
    let err = parse_str("- a\n- b\n", "m.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "m.yaml:1:1: expected a mapping (key: value pairs), found a list"
    );
}
