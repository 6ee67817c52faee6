//! Forked-child runner and the raw syscalls the tests make (all `unsafe` of these
//! tests lives here).

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How a forked child ended, and the message it sent back.
#[derive(Debug)]
pub struct ChildResult {
    pub status: WaitStatus,
    pub message: String,
}

impl ChildResult {
    /// Panics unless the child exited 0.
    pub fn assert_ok(&self) {
        assert!(
            matches!(self.status, WaitStatus::Exited(_, 0)),
            "child ended {:?}: {}",
            self.status,
            self.message
        );
    }

    /// Panics unless the child was killed by `SIGSYS`.
    pub fn assert_sigsys(&self) {
        assert!(
            matches!(
                self.status,
                WaitStatus::Signaled(_, nix::sys::signal::SIGSYS, _)
            ),
            "child was not killed by SIGSYS: {:?}: {}",
            self.status,
            self.message
        );
    }
}

/// Runs `f` in a forked child and waits for it. The child never returns into the
/// harness: it `_exit`s with 0 on `Ok`, 1 on `Err` (whose text comes back through a
/// pipe), 101 on panic. `before_wait` runs in the parent while the child runs.
pub fn in_child_with<P>(
    f: impl FnOnce() -> Result<(), String>,
    before_wait: impl FnOnce(Pid) -> P,
) -> (ChildResult, P) {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    // SAFETY: the child runs only `f` (which makes no use of locks other threads of the
    // harness might hold: glibc's malloc is fork-safe, nothing prints) and `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(rd);
            let (code, msg) = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => (0, String::new()),
                Ok(Err(m)) => (1, m),
                Err(_) => (101, "panicked".to_string()),
            };
            let _ = nix::unistd::write(&wr, msg.as_bytes());
            // SAFETY: `_exit` ends the child without running the harness's atexit
            // handlers or destructors of state copied from the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let p = before_wait(child);
            let mut message = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut message);
            let status = waitpid(child, None).expect("waitpid");
            (ChildResult { status, message }, p)
        }
    }
}

/// [`in_child_with`] without a parent side.
pub fn in_child(f: impl FnOnce() -> Result<(), String>) -> ChildResult {
    in_child_with(f, |_| ()).0
}

/// Whether CI demands every kernel feature (`SKILLSANDBOX_TEST_REQUIRE=full`).
pub fn require_full() -> bool {
    std::env::var("SKILLSANDBOX_TEST_REQUIRE").as_deref() == Ok("full")
}

/// `true` when the test may run; otherwise skips (or fails under `require_full`).
pub fn feature(available: bool, what: &str) -> bool {
    if !available {
        assert!(
            !require_full(),
            "{what} is unavailable but SKILLSANDBOX_TEST_REQUIRE=full"
        );
        eprintln!("skipped: {what} is unavailable on this host");
    }
    available
}

/// Seccomp filters can be installed (CONFIG_SECCOMP_FILTER).
pub fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

/// A raw syscall: `Ok(return value)` or `Err(errno)`.
pub fn raw_syscall(nr: i64, args: [u64; 6]) -> Result<i64, i32> {
    // SAFETY: the tests pass invalid pointers and flags on purpose; the kernel checks
    // them (EFAULT/EINVAL) and never writes through an invalid pointer into our memory.
    // Calls that could create a process are handled by the caller (`_exit` when 0).
    let ret = unsafe {
        libc::syscall(
            nr as libc::c_long,
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// A raw `clone` that, if it ever creates a process, ends that process at once.
pub fn raw_clone(flags: u64) -> Result<i64, i32> {
    raw_process_syscall(libc::SYS_clone, [flags, 0, 0, 0, 0, 0])
}

/// A raw process-creating syscall (`clone`, `fork`, `vfork`): a process it creates
/// despite the filter `_exit`s at once and is reaped.
pub fn raw_process_syscall(nr: i64, args: [u64; 6]) -> Result<i64, i32> {
    let r = raw_syscall(nr, args);
    if r == Ok(0) {
        // SAFETY: we are the new process; leave without touching shared state.
        unsafe { libc::_exit(0) }
    }
    if let Ok(pid) = r {
        let _ = waitpid(Pid::from_raw(pid as i32), None);
    }
    r
}

/// `getpid` through the i386 ABI (`int 0x80`, eax = 20) from this 64-bit process.
#[cfg(target_arch = "x86_64")]
pub fn int80_getpid() -> i64 {
    let mut eax: i64 = 20;
    // SAFETY: i386 getpid takes no arguments and touches no memory; the kernel's
    // compat entry may clobber r8-r11, declared below.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") eax,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    eax
}

/// Sends one fd over a unix socket (SCM_RIGHTS).
pub fn send_fd(sock: BorrowedFd<'_>, fd: RawFd) -> Result<(), String> {
    let fds = [fd];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"f")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("sendmsg(SCM_RIGHTS): {e}"))
}

/// Receives one fd sent with [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> OwnedFd {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it.
                return unsafe { OwnedFd::from_raw_fd(fd) };
            }
        }
    }
    panic!("no fd received");
}
