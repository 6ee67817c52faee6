//! Lints: each over-broad grant produces its warning on the right field, and the
//! example manifests stay quiet.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::path::{Path, PathBuf};

use skillsandbox_manifest::*;

const HOME: &str = "/home/alice";

fn lints(permissions: &str) -> Vec<(&'static str, String)> {
    let yaml = format!(
        "skill: {{name: x, version: 0.1.0}}\nentrypoint: {{command: sh}}\npermissions:\n{permissions}"
    );
    let m = parse_str(&yaml, "m.yaml").unwrap();
    let env = ResolveEnv { home: HOME.into() };
    let policy = resolve(&m, Path::new("/skills/x"), &env).unwrap();
    lint_with_home(&policy, Some(Path::new(HOME)))
        .into_iter()
        .map(|d| (d.lint.unwrap(), d.field))
        .collect()
}

fn one(lint: &'static str, field: &str) -> Vec<(&'static str, String)> {
    vec![(lint, field.to_owned())]
}

#[test]
fn broad_writes() {
    for path in [
        "/",
        "~",
        "/etc",
        "/usr",
        "/var",
        "/home",
        "/etc/nginx",
        "~/.bashrc",
    ] {
        assert_eq!(
            lints(&format!("  filesystem:\n    write: [\"{path}\"]\n"))
                .iter()
                .filter(|(l, _)| *l == "broad-write")
                .count(),
            1,
            "{path}"
        );
    }
    for path in ["/tmp/cache", "/var/tmp/x", "~/skill-data", "data"] {
        assert_eq!(
            lints(&format!("  filesystem:\n    write: [\"{path}\"]\n")),
            vec![],
            "{path}"
        );
    }
}

#[test]
fn sensitive_reads() {
    for path in [
        "~/.ssh",
        "~/.ssh/id_ed25519",
        "~/.aws",
        "~/.gnupg",
        "~/.config",
        "~/.kube",
        "~/.docker",
        "~/.mozilla",
        "~/.config/google-chrome",
        "~/.config/chromium",
        "~/Library/Application Support/Google/Chrome",
        "~",
        "/home",
        "/",
        "/root",
        "/home/bob",
        "/etc/shadow",
    ] {
        assert_eq!(
            lints(&format!("  filesystem:\n    read: [\"{path}\"]\n")),
            one("sensitive-read", "permissions.filesystem.read[0]"),
            "{path}"
        );
    }
    for path in ["/tmp", "~/data", "/usr/share/zoneinfo", "/etc/ssl/certs"] {
        assert_eq!(
            lints(&format!("  filesystem:\n    read: [\"{path}\"]\n")),
            vec![],
            "{path}"
        );
    }
}

#[test]
fn deny_silences_the_secret_it_covers() {
    let found = lints("  filesystem:\n    read: [\"~/.ssh\"]\n    deny: [\"~/.ssh\"]\n");
    assert_eq!(found, vec![]);
    // Reading `~` with only .ssh denied still exposes .aws and the rest.
    let found = lints("  filesystem:\n    read: [\"~\"]\n    deny: [\"~/.ssh\"]\n");
    assert_eq!(
        found,
        one("sensitive-read", "permissions.filesystem.read[0]")
    );
}

#[test]
fn unused_deny() {
    assert_eq!(
        lints("  filesystem:\n    read: [/data]\n    deny: [/other]\n"),
        one("deny-unused", "permissions.filesystem.deny[0]")
    );
    assert_eq!(lints("  filesystem:\n    deny: [secrets]\n"), vec![]);
}

#[test]
fn multi_tenant_wildcards() {
    for d in [
        "*.amazonaws.com",
        "*.s3.amazonaws.com",
        "*.githubusercontent.com",
        "*.cloudfront.net",
        "*.herokuapp.com",
        "*.azurewebsites.net",
        "*.appspot.com",
        "*.vercel.app",
        "*.netlify.app",
        "*.workers.dev",
        "*.ngrok.io",
    ] {
        assert_eq!(
            lints(&format!(
                "  network:\n    egress:\n      - domain: \"{d}\"\n"
            )),
            one(
                "multi-tenant-wildcard",
                "permissions.network.egress[0].domain"
            ),
            "{d}"
        );
    }
    for d in [
        "*.example.com",
        "api.amazonaws.com",
        "*.myapp.herokuapp.com",
    ] {
        assert_eq!(
            lints(&format!(
                "  network:\n    egress:\n      - domain: \"{d}\"\n"
            )),
            vec![],
            "{d}"
        );
    }
}

#[test]
fn cidr_lints() {
    assert_eq!(
        lints("  network:\n    egress:\n      - cidr: 0.0.0.0/0\n"),
        one("cidr-everything", "permissions.network.egress[0].cidr")
    );
    assert_eq!(
        lints("  network:\n    egress:\n      - cidr: 169.254.0.0/16\n"),
        one("cidr-metadata", "permissions.network.egress[0].cidr")
    );
    assert_eq!(
        lints("  network:\n    egress:\n      - cidr: 10.0.0.0/8\n"),
        vec![]
    );
}

#[test]
fn env_lints() {
    assert_eq!(
        lints("  env_vars:\n    allow: [\"*\"]\n"),
        one("env-allow-all", "permissions.env_vars.allow[0]")
    );
    assert_eq!(
        lints("  env_vars:\n    allow: [LANG, PATH, HOME, TMPDIR, \"LC_*\"]\n"),
        vec![
            (
                "env-sandbox-managed",
                "permissions.env_vars.allow[1]".to_owned()
            ),
            (
                "env-sandbox-managed",
                "permissions.env_vars.allow[2]".to_owned()
            ),
            (
                "env-sandbox-managed",
                "permissions.env_vars.allow[3]".to_owned()
            ),
        ]
    );
}

#[test]
fn permissive_profile() {
    assert_eq!(
        lints("  syscalls:\n    profile: permissive\n"),
        one("permissive-profile", "permissions.syscalls.profile")
    );
    assert_eq!(lints("  syscalls:\n    profile: strict\n"), vec![]);
}

#[test]
fn lint_without_home_recognises_usual_homes() {
    let m = parse_str(
        "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\npermissions:\n  filesystem:\n    read: [/home/bob/.aws, /Users/carol]\n",
        "m.yaml",
    )
    .unwrap();
    let policy = resolve(
        &m,
        Path::new("/s"),
        &ResolveEnv {
            home: "/nonexistent".into(),
        },
    )
    .unwrap();
    let found: Vec<_> = lint(&policy).into_iter().map(|d| d.field).collect();
    let write_home = parse_str(
        "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\npermissions:\n  filesystem:\n    write: [/home]\n",
        "m.yaml",
    )
    .unwrap();
    let p = resolve(
        &write_home,
        Path::new("/s"),
        &ResolveEnv { home: "/x".into() },
    )
    .unwrap();
    let ids: Vec<_> = lint(&p).into_iter().map(|d| d.lint.unwrap()).collect();
    assert_eq!(ids, vec!["broad-write", "sensitive-read"]);
    assert_eq!(
        found,
        vec![
            "permissions.filesystem.read[0]",
            "permissions.filesystem.read[1]"
        ]
    );
}

#[test]
fn load_positions_warnings_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skillsandbox.yaml");
    std::fs::write(
        &path,
        "skill: {name: x, version: 0.1.0}\nentrypoint: {command: sh}\npermissions:\n  env_vars:\n    allow: [LANG, PATH]\n  syscalls:\n    profile: permissive\n",
    )
    .unwrap();
    let env = ResolveEnv {
        home: PathBuf::from(HOME),
    };
    let loaded = load(dir.path(), &env).unwrap();
    let label = path.display().to_string();
    let got: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| w.to_string().lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        vec![
            format!("{label}:5:19: permissions.env_vars.allow[1]: warning[env-sandbox-managed]: `PATH` is set by the sandbox (PATH=/usr/local/bin:/usr/bin:/bin); the host's value is never imported"),
            format!("{label}:7:14: permissions.syscalls.profile: warning[permissive-profile]: the `permissive` syscall profile only checks the architecture: ptrace, mount, bpf, keyctl and friends stay available"),
        ]
    );
}

#[test]
fn examples_are_lint_clean_except_the_prototype_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let env = ResolveEnv { home: HOME.into() };
    for (name, expected) in [
        ("weather-lookup", vec![]),
        ("malicious-weather", vec![]),
        ("prototype", vec![Some("env-sandbox-managed")]),
    ] {
        let loaded = load(&root.join(name), &env).unwrap();
        let got: Vec<_> = loaded.warnings.iter().map(|w| w.lint).collect();
        assert_eq!(got, expected, "{name}");
    }
}
