//! Tests of the operator ceiling.

use super::*;

fn ceiling() -> Ceiling {
    Ceiling::from_flags(
        &["/data/in".into(), "rel".into()],
        &["/data/out".into()],
        &["LANG".into(), "LC_*".into()],
        Some(512),
        Some(30),
        &["api.example.com".into(), "*.corp.test:443,8443".into()],
        Path::new("/srv"),
    )
    .unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn flags_are_made_absolute_and_defaults_apply() {
    let c = ceiling();
    assert_eq!(
        c.read,
        vec![PathBuf::from("/data/in"), PathBuf::from("/srv/rel")]
    );
    let d = Ceiling::default();
    assert_eq!((d.memory_mb, d.timeout_s), (256, 60));
    assert!(d.read.is_empty() && d.domains.is_empty());
}

#[test]
fn paths_equal_or_below_are_admitted_normalised() {
    let read = strs(&["/data/in", "/data/in/x/../y", "/data/out/sub"]);
    let write = strs(&["/data/out/./o"]);
    let a = ceiling()
        .admit(&Requested {
            read: &read,
            write: &write,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        a.read,
        vec![
            PathBuf::from("/data/in"),
            PathBuf::from("/data/in/y"),
            PathBuf::from("/data/out/sub")
        ]
    );
    assert_eq!(a.write, vec![PathBuf::from("/data/out/o")]);
}

#[test]
fn escapes_and_siblings_are_refused() {
    let c = ceiling();
    for p in ["/data/in/../secret", "/data/inx", "/etc/shadow", "/data"] {
        let read = strs(&[p]);
        let err = c
            .admit(&Requested {
                read: &read,
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, CeilingError::PathOutside { .. }),
            "{p}: {err}"
        );
    }
    // read-only ceiling paths cannot be written
    let write = strs(&["/data/in/x"]);
    let err = c
        .admit(&Requested {
            write: &write,
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("--ceiling-write"), "{err}");
    let rel = strs(&["data/in"]);
    let err = c
        .admit(&Requested {
            read: &rel,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, CeilingError::RelativePath { .. }));
}

#[test]
fn env_names_and_prefixes() {
    let c = ceiling();
    for ok in ["LANG", "LC_ALL", "LC_*", "LC_X*"] {
        let env = strs(&[ok]);
        assert!(
            c.admit(&Requested {
                env: &env,
                ..Default::default()
            })
            .is_ok(),
            "{ok}"
        );
    }
    for bad in ["HOME_SECRET", "LANGUAGE", "L*", "*"] {
        let env = strs(&[bad]);
        let err = c
            .admit(&Requested {
                env: &env,
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, CeilingError::EnvOutside { .. }),
            "{bad}: {err}"
        );
    }
    let env = strs(&["A-B"]);
    assert!(matches!(
        c.admit(&Requested {
            env: &env,
            ..Default::default()
        }),
        Err(CeilingError::EnvName { .. })
    ));
}

#[test]
fn limits_are_capped_and_default_to_min() {
    let c = ceiling();
    let a = c.admit(&Requested::default()).unwrap();
    assert_eq!((a.memory_mb, a.timeout_s), (256, 30));
    let err = c
        .admit(&Requested {
            memory_mb: Some(1024),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory_mb 1024 exceeds the operator ceiling of 512 MiB; ask for at most 512 \
         or ask the operator to raise --ceiling-memory"
    );
    assert!(matches!(
        c.admit(&Requested {
            timeout_s: Some(0),
            ..Default::default()
        }),
        Err(CeilingError::LimitZero { .. })
    ));
    let a = c
        .admit(&Requested {
            memory_mb: Some(512),
            timeout_s: Some(5),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((a.memory_mb, a.timeout_s), (512, 5));
}

#[test]
fn domains_must_be_covered_with_their_ports() {
    let c = ceiling();
    for ok in [
        "api.example.com",
        "API.example.com.",
        "a.corp.test:8443",
        "*.x.corp.test",
        "*.corp.test",
    ] {
        let d = strs(&[ok]);
        assert!(
            c.admit(&Requested {
                allow_domains: &d,
                ..Default::default()
            })
            .is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "example.com",
        "api.example.com:80",
        "corp.test",
        "*.example.com",
        "a.corp.test:22",
    ] {
        let d = strs(&[bad]);
        let err = c
            .admit(&Requested {
                allow_domains: &d,
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, CeilingError::DomainOutside { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn domain_syntax() {
    let g = DomainGrant::parse("*.Example.com:8443,443,443").unwrap();
    assert_eq!(g.pattern, DomainPattern::Wildcard("example.com".into()));
    assert_eq!(g.ports, vec![443, 8443]);
    for bad in [
        "*.com",
        "a..b.com",
        "-a.b.com",
        "a.b.com:0",
        "a.b.com:x",
        "ä.example.com",
        "a.*.com",
    ] {
        assert!(
            matches!(
                DomainGrant::parse(bad),
                Err(CeilingError::DomainSyntax { .. })
            ),
            "{bad}"
        );
    }
}
