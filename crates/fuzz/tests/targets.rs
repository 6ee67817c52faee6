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
