//! Integration tests of the audit crate; one test binary, one module per area.
// Test helpers outside `#[test]` functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain;
mod concurrency;
mod docs;
mod otel;
mod trace;
