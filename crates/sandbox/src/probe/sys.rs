//! The `unsafe` of host probing: a throw-away child that tries to create namespaces.
//! (Kept here, like `seccomp/sys.rs`, so the probe stays self-contained.)

use std::io;

/// Outcome of [`try_namespaces_in_child`]: which step failed and with what errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildProbe {
    Ok,
    /// `(step, errno)`: 1 drop to the unprivileged id, 2 unshare, 3 mount in the new
    /// namespace (capabilities inside it).
    Failed(u8, i32),
}

/// Forks a child that (as `unprivileged` when given, the way the container stage
/// does) unshares `CLONE_NEWUSER | CLONE_NEWNS` and makes its new root mount private,
/// then exits. Nothing of it outlives the call; the caller's namespaces are untouched.
///
/// Safe to call from a multi-threaded process: between fork and `_exit` the child
/// only makes raw syscalls (no allocation, no locks).
pub(crate) fn try_namespaces_in_child(unprivileged: Option<(u32, u32)>) -> io::Result<ChildProbe> {
    // SAFETY: after fork the child runs only async-signal-safe syscalls with integer
    // or static-string arguments and leaves with `_exit`; the parent just waits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; every call takes integers or NUL-terminated literals.
        unsafe {
            let fail = |step: i32| -> ! {
                let errno = *libc::__errno_location();
                libc::_exit(step * 64 + errno.clamp(1, 63))
            };
            // Raw syscalls, not the glibc wrappers: in the child of a multi-threaded
            // parent, glibc's set*id would try to broadcast to threads that are gone.
            if let Some((uid, gid)) = unprivileged {
                if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0
                    || libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
                    || libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
                {
                    fail(1);
                }
            }
            if libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER | libc::CLONE_NEWNS) < 0 {
                fail(2);
            }
            // Needs CAP_SYS_ADMIN in the new user namespace: refused where a security
            // module strips it (Ubuntu's apparmor_restrict_unprivileged_userns).
            if libc::syscall(
                libc::SYS_mount,
                std::ptr::null::<libc::c_char>(),
                c"/".as_ptr(),
                std::ptr::null::<libc::c_char>(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null::<libc::c_void>(),
            ) < 0
            {
                fail(3);
            }
            libc::_exit(0);
        }
    }
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out-pointer; pid is our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if !libc::WIFEXITED(status) {
            return Ok(ChildProbe::Failed(0, libc::ECHILD));
        }
        let code = libc::WEXITSTATUS(status);
        return Ok(if code == 0 {
            ChildProbe::Ok
        } else {
            ChildProbe::Failed((code / 64) as u8, code % 64)
        });
    }
}

/// Whether the kernel knows syscall `nr` (a call with invalid arguments fails with
/// something other than `ENOSYS`). Only for syscalls that do nothing with a bad fd.
pub(crate) fn syscall_exists_with_bad_fd(nr: libc::c_long) -> bool {
    // SAFETY: fd -1 and null pointers: the kernel rejects the call (EBADF / EINVAL /
    // EFAULT) before touching anything.
    let ret = unsafe { libc::syscall(nr, -1, std::ptr::null::<libc::c_char>(), 0, 0, 0) };
    ret >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}
