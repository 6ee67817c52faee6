//! Property tests: random and mutated YAML never panics the parser; the result is a
//! manifest that resolves and lints, or errors that all carry a line ≥ 1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::path::Path;

use proptest::prelude::*;
use skillsandbox_manifest::{lint, parse_str, resolve, ManifestError, ResolveEnv};

const EXAMPLES: &[&str] = &[
    include_str!("../../../examples/weather-lookup/skillsandbox.yaml"),
    include_str!("../../../examples/malicious-weather/skillsandbox.yaml"),
    include_str!("../../../examples/prototype/skillsandbox.yaml"),
];

/// The property: no panic; Ok resolves (parse success implies resolve success for an
/// absolute skill dir and home) and lints; Err is positioned.
fn check(src: &str) -> Result<(), TestCaseError> {
    match parse_str(src, "fuzz.yaml") {
        Ok(m) => {
            let env = ResolveEnv {
                home: "/home/u".into(),
            };
            let policy = resolve(&m, Path::new("/skills/s"), &env);
            prop_assert!(
                policy.is_ok(),
                "parsed but did not resolve: {:?}",
                policy.err()
            );
            if let Ok(p) = policy {
                let _ = lint(&p);
            }
        }
        Err(ManifestError::Invalid { diagnostics }) => {
            prop_assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                let pos = d.pos;
                prop_assert!(
                    pos.is_some_and(|p| p.line >= 1 && p.column >= 1),
                    "unpositioned: {d}"
                );
                prop_assert!(d.to_string().starts_with("fuzz.yaml:"));
            }
        }
        Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Flip(usize, char),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                ' ', '\t', ':', '-', '[', ']', '{', '}', '"', '\'', '#', '*', '&', '!', '|', '>',
                '%', '@', '`', ',', '?', '\n', 'x', '0', '~', '\\', '\u{0}', 'é', '\u{feff}',
            ])
        )
            .prop_map(|(i, c)| Mutation::Flip(i, c)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_owned).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Flip(i, c) => {
                let line = &mut lines[i % n];
                let chars: Vec<char> = line.chars().collect();
                if !chars.is_empty() {
                    let k = (i / n) % chars.len();
                    *line = chars[..k]
                        .iter()
                        .chain(std::iter::once(c))
                        .chain(&chars[k + 1..])
                        .collect();
                }
            }
            Mutation::Insert(i, bytes) => {
                let line = &mut lines[i % n];
                let at = line
                    .char_indices()
                    .map(|(j, _)| j)
                    .nth((i / n) % (line.len() + 1))
                    .unwrap_or(line.len());
                line.insert_str(at, &String::from_utf8_lossy(bytes));
            }
            Mutation::Truncate(i) => lines.truncate(i % n),
        }
    }
    lines.join("\n")
}

/// Manifest-shaped YAML from a small vocabulary: reaches deep into validation.
fn manifest_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "skill",
        "name",
        "version",
        "permissions",
        "network",
        "egress",
        "- domain",
        "- cidr",
        "ports",
        "protocol",
        "filesystem",
        "read",
        "write",
        "deny",
        "env_vars",
        "allow",
        "syscalls",
        "profile",
        "resources",
        "memory_mb",
        "cpu_cores",
        "cpu_shares",
        "max_runtime_seconds",
        "isolation",
        "tier",
        "entrypoint",
        "command",
        "args",
        "workdir",
        "unknown",
        "<<",
    ]);
    let value = prop::sample::select(vec![
        "",
        "demo",
        "\"0.1.0\"",
        "1.0",
        "0",
        "-1",
        "443",
        "70000",
        "[443, 0]",
        "[]",
        "{}",
        "~",
        "\"*.example.com\"",
        "a.*.b",
        "10.0.0.0/8",
        "10.0.0.1/8",
        "::/0",
        "[/tmp, ~/x, ../y]",
        "[A, \"LC_*\", \"*\", 1X]",
        "strict",
        "permissive",
        "vm",
        "tcp",
        "udp",
        "python3",
        "\"\"",
        "[main.py]",
        "/skill",
        "rel",
        "true",
        "null",
        "&a 1",
        "*a",
        "!!str 5",
        "0x10",
        "1e400",
        "bücher.de",
        "\"a\\u0000b\"",
    ]);
    prop::collection::vec((0usize..4, key, value), 0..24).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(indent, k, v)| format!("{}{k}: {v}\n", "  ".repeat(indent)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(src in ".{0,300}") {
        check(&src)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..EXAMPLES.len(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        check(&apply(EXAMPLES[which], &muts))?;
    }

    #[test]
    fn manifest_shaped_yaml_never_panics(src in manifest_like()) {
        check(&src)?;
    }
}

#[test]
fn unmutated_examples_parse() {
    for src in EXAMPLES {
        assert!(parse_str(src, "x.yaml").is_ok());
    }
}
