//! The fuzz targets under bolero's test engine: each replays its committed corpus
//! (`tests/__fuzz__/<target>/corpus`, and `crashes` when one is found), then feeds
//! random inputs for `SKILLSANDBOX_FUZZ_SECONDS` (default 5; CI runs 60).

use std::time::Duration;

fn seconds() -> Duration {
    let s = std::env::var("SKILLSANDBOX_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(s)
}

macro_rules! target {
    ($name:ident) => {
        #[test]
        fn $name() {
            bolero::check!()
                .with_test_time(seconds())
                .for_each(|data: &[u8]| skillsandbox_fuzz::$name(data));
        }
    };
}

target!(dns);
target!(sniff);
target!(manifest);
target!(policy);
target!(mcp_args);
target!(audit_log);
target!(skill_md);
target!(hook_event);
target!(oci_spec);

/// The `oci_spec` seeds are specs the runtime accepts (Docker's own, captured from
/// `docker run` with volumes, tmpfs, a user, a terminal, limits and its seccomp
/// profile; a minimal one with the engine network): the target starts from the
/// mapping's properties, not from JSON it throws away.
#[test]
fn oci_spec_seeds_are_accepted_specs() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/__fuzz__/oci_spec/corpus"
    );
    for f in [
        "docker-run-full.json",
        "docker-run-no-seccomp.json",
        "minimal.json",
    ] {
        let data = std::fs::read(format!("{dir}/{f}")).unwrap();
        assert!(skillsandbox_fuzz::oci_spec_mapped(&data), "{f}");
    }
}
