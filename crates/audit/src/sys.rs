//! The crate's only `unsafe`: advisory whole-file locks (`flock(2)`).
//!
//! `flock` locks belong to the open file description, so every writer must open
//! its own descriptor; threads sharing one descriptor would not exclude each other.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// An exclusive `flock` held on a file; released on drop (and by the kernel when
/// the descriptor closes, so a crashed writer never leaves the log locked).
pub struct FlockGuard<'a> {
    file: &'a File,
}

/// Blocks until this descriptor holds `LOCK_EX` on `file`. Retries on `EINTR`.
pub fn lock_exclusive(file: &File) -> io::Result<FlockGuard<'_>> {
    loop {
        // SAFETY: `file` is a live, open descriptor borrowed for the call; flock
        // takes no pointers and only changes the lock state of that descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(FlockGuard { file });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the descriptor is still open (the guard borrows the File); an
        // unlock failure is harmless because closing the descriptor unlocks too.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
