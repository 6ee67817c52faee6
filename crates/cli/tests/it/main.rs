//! End-to-end tests through the real `skillsandbox` binary. All integration tests
//! compile into this one test binary; each area has its own module.

mod agents;
mod audit;
mod check;
mod common;
mod denials;
mod egress;
mod egress_l7;
mod escape;
mod escape_fs;
mod escape_life;
mod escape_limits;
mod escape_proc;
mod examples;
mod fleet;
mod hook;
mod learn;
mod manifest;
mod mcp;
mod oci;
/// A real PostgreSQL server, shared with the store suite.
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../../../policy/tests/support/pg.rs"]
mod pg;
mod review2;
mod rootless;
mod scan;
mod session;
mod skills;
mod tier;
mod timings;
