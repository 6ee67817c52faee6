//! The one `unsafe` of the seccomp module: taking over libseccomp's listener fd.
//! (Kept here rather than in `crate::sys` so the seccomp files stay self-contained;
//! it is a single borrow of a descriptor libseccomp guarantees open.)

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// Duplicates (close-on-exec) the listener fd libseccomp keeps in its global state.
pub(super) fn dup_listener(raw: RawFd) -> std::io::Result<OwnedFd> {
    if raw < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `raw` is the listener fd `seccomp_notify_fd` just returned; libseccomp
    // keeps it open in its global state until `seccomp_reset(NULL, 0)`, which the
    // caller runs only after this borrow (and the duplicate it makes) has ended.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    borrowed.try_clone_to_owned()
}
