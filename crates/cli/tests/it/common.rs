//! Helpers shared by the end-to-end tests.

use std::process::Command;

/// A `Command` for the real binary under test.
pub fn skillsandbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skillsandbox"))
}

/// `SKILLSANDBOX_TEST_REQUIRE=full` (CI) turns a missing kernel feature into a failure.
pub fn require_full() -> bool {
    std::env::var("SKILLSANDBOX_TEST_REQUIRE").is_ok_and(|v| v == "full")
}
