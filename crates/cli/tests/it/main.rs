//! End-to-end tests through the real `skillsandbox` binary. All integration tests
//! compile into this one test binary; each area has its own module.

mod audit;
mod common;
mod manifest;
