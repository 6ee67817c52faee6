//! The in-process confinement layers (seccomp, Landlock), each test in a forked
//! child: the restrictions are irreversible and must never reach the harness.
//!
//! With `SKILLSANDBOX_TEST_REQUIRE=full`, a missing kernel feature fails a test
//! instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod child;
mod landlock;
mod seccomp;
mod seccomp_notify;
mod seccomp_observe;
