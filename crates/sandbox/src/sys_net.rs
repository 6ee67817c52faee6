//! The only `unsafe` of the network setup's tests: running a scenario in a forked,
//! single-threaded child. `unshare(CLONE_NEWUSER)` refuses multi-threaded callers and
//! the test harness always runs tests on a spawned thread, so the namespace tests
//! re-execute the test binary (a quiet process whose only other thread is parked in
//! `join`) and fork from there.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Runs `scenario` in a forked child and returns its exit code (128 + signal when it
/// was killed). The child never returns into the caller: it exits.
pub(crate) fn run_in_forked_child(scenario: impl FnOnce() -> i32) -> Result<i32, nix::Error> {
    // SAFETY: the caller is the re-executed test process whose only other thread is the
    // harness's main thread blocked joining the test thread, so no lock the child needs
    // is held across the fork; glibc's fork also keeps malloc usable in the child. The
    // child leaves through `exit` without unwinding into the harness.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario)).unwrap_or(101);
            std::process::exit(code)
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None)? {
                WaitStatus::Exited(_, code) => return Ok(code),
                WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
                _ => continue,
            }
        },
    }
}
