//! Every raw syscall the probe and the check make, and the only `unsafe` in this
//! crate. The probe calls forbidden syscalls on purpose; each wrapper returns the
//! kernel's answer (`Ok(value)` or `Err(errno)`) and never panics.
//!
//! Functions that fork return in both processes; callers in the child must end with
//! [`exit_now`].

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

/// `Ok(return value)` or `Err(errno)`.
pub type Sys<T> = Result<T, i32>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(ret: libc::c_long) -> Sys<i64> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn cpath(p: &Path) -> Sys<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

/// A syscall by number with integer arguments.
pub fn syscall6(nr: libc::c_long, a: [u64; 6]) -> Sys<i64> {
    // SAFETY: the probe passes only integer arguments or null pointers to the calls it
    // makes this way (none of them writes through an argument), so no memory of ours
    // can be touched; an unknown or refused number just returns an error.
    let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    check(ret)
}

/// getpid through the i386 ABI (`int 0x80`, eax = 20). Under the sandbox's filter this
/// kills the process with SIGSYS; without ia32 emulation it faults (SIGSEGV).
#[cfg(target_arch = "x86_64")]
pub fn int80_getpid() -> i64 {
    let mut ret: i64 = 20;
    // SAFETY: `int 0x80` with eax=20 is the i386 getpid, which takes no arguments and
    // touches no memory; the clobbered registers are declared.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inout("rax") ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
pub fn int80_getpid() -> i64 {
    -(libc::ENOSYS as i64)
}

/// `fork()`: `Ok(0)` in the child, `Ok(pid)` in the parent.
pub fn fork() -> Sys<libc::pid_t> {
    // SAFETY: the probe is single-threaded when it forks (no runtime, no threads), so
    // the child inherits no lock held by another thread.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(errno())
    } else {
        Ok(pid)
    }
}

/// End a forked child at once (no destructors, no atexit, no stdio flush).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

pub fn wait(pid: libc::pid_t) -> Sys<ChildEnd> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        break;
    }
    Ok(if libc::WIFEXITED(status) {
        ChildEnd::Exited(libc::WEXITSTATUS(status))
    } else {
        ChildEnd::Signaled(libc::WTERMSIG(status))
    })
}

/// Run `f` in a forked child and report how the child ended; `f`'s return value is the
/// child's exit code.
pub fn in_child(f: impl FnOnce() -> i32) -> Sys<ChildEnd> {
    match fork()? {
        0 => exit_now(f()),
        pid => wait(pid),
    }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> Sys<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) } as libc::c_long).map(|_| ())
}

pub fn setsid() -> Sys<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() } as libc::c_long).map(|_| ())
}

/// Sleep until a signal ends us.
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::getpid() }
}

pub fn unshare(flags: libc::c_int) -> Sys<()> {
    // SAFETY: unshare takes plain flags.
    check(unsafe { libc::unshare(flags) } as libc::c_long).map(|_| ())
}

/// `mount("none", target, "tmpfs", 0, NULL)`.
pub fn mount_tmpfs(target: &Path) -> Sys<()> {
    let t = cpath(target)?;
    // SAFETY: every pointer is a valid NUL-terminated string living across the call;
    // data is null.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            t.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    check(r as libc::c_long).map(|_| ())
}

/// `mount(source, target, fstype, 0, data)`.
pub fn mount_fs(source: &str, target: &Path, fstype: &str, data: &str) -> Sys<()> {
    let t = cpath(target)?;
    let (src, fs, d) = (
        CString::new(source).map_err(|_| libc::EINVAL)?,
        CString::new(fstype).map_err(|_| libc::EINVAL)?,
        CString::new(data).map_err(|_| libc::EINVAL)?,
    );
    // SAFETY: every pointer is a valid NUL-terminated string living across the call.
    let r = unsafe { libc::mount(src.as_ptr(), t.as_ptr(), fs.as_ptr(), 0, d.as_ptr().cast()) };
    check(r as libc::c_long).map(|_| ())
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount(target: &Path) -> Sys<()> {
    let t = cpath(target)?;
    // SAFETY: `t` is a valid C string for the call.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } as libc::c_long).map(|_| ())
}

/// `struct file_handle` with room for any handle the kernel makes.
#[repr(C)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    data: [u8; 128],
}

/// `name_to_handle_at(AT_FDCWD, "/", &handle, &mount_id, 0)`.
pub fn name_to_handle_root() -> Sys<i64> {
    let mut h = FileHandle {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the path is a valid C string; `h` has `bytes` of room after its header
    // as the call requires; `mount_id` is a valid int.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &mut h as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    check(r)
}

/// `open_by_handle_at(AT_FDCWD, &handle, O_RDONLY)` with the shocker's guess: inode 2
/// (the root of an ext4 filesystem), generation 0. An fd it returns is closed.
pub fn open_by_handle_root() -> Sys<i64> {
    let mut h = FileHandle {
        bytes: 8,
        kind: 1, // FILEID_INO32_GEN
        data: [0; 128],
    };
    h.data[0] = 2;
    // SAFETY: `h` is a valid handle buffer of `bytes` bytes after its header.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            libc::AT_FDCWD,
            &mut h as *mut FileHandle,
            libc::O_RDONLY,
        )
    };
    let r = check(r);
    if let Ok(fd) = r {
        close(fd as RawFd);
    }
    r
}

/// `mknod(path, S_IFCHR|0600, makedev(major, minor))`.
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> Sys<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is a valid C string for the call.
    let r = unsafe {
        libc::mknod(
            p.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    check(r as libc::c_long).map(|_| ())
}

/// `ioctl(fd, request, &byte)` (TIOCSTI takes a pointer to one char).
pub fn ioctl_char(fd: RawFd, request: u64, byte: u8) -> Sys<()> {
    let b = byte;
    // SAFETY: the kernel reads one byte through the pointer, which points at `b`.
    let r = unsafe { libc::syscall(libc::SYS_ioctl, fd, request, &b as *const u8) };
    check(r).map(|_| ())
}

/// `process_vm_readv` of `len` bytes from our own address space.
pub fn process_vm_read_self(len: usize) -> Sys<i64> {
    let src = vec![7u8; len];
    let mut dst = vec![0u8; len];
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: both iovecs describe live buffers of `len` bytes owned by this frame.
    let r = unsafe { libc::process_vm_readv(getpid(), &local, 1, &remote, 1, 0) };
    check(r as libc::c_long)
}

/// `io_uring_setup(entries, &params)`; returns the ring fd on success.
pub fn io_uring_setup(entries: u32) -> Sys<i64> {
    let mut params = [0u8; 120];
    // SAFETY: the kernel writes at most sizeof(struct io_uring_params) = 120 bytes.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, params.as_mut_ptr()) };
    check(r)
}

/// `clone3` with `{flags, exit_signal: SIGCHLD}`: a fork. The child exits at once.
pub fn clone3_fork(flags: u64) -> Sys<libc::pid_t> {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls (CLONE_ARGS_SIZE_VER0 = 64 bytes).
    let args: [u64; 8] = [flags, 0, 0, 0, libc::SIGCHLD as u64, 0, 0, 0];
    // SAFETY: `args` is a valid clone_args of the size passed; without a stack the
    // child continues on a copy of ours, like fork, and leaves through _exit.
    let r = unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), 64usize) };
    match check(r)? {
        0 => exit_now(0),
        pid => Ok(pid as libc::pid_t),
    }
}

/// `bpf(BPF_MAP_CREATE, {array, 4-byte keys and values, 1 entry})`.
pub fn bpf_map_create() -> Sys<i64> {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: the kernel reads `size` bytes of the attribute buffer, which we own.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), 128usize) };
    check(r)
}

/// `perf_event_open` for a software task-clock counter on ourselves.
pub fn perf_event_open_self() -> Sys<i64> {
    // struct perf_event_attr (PERF_ATTR_SIZE_VER0 = 64): type, size, config...
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&1u64.to_ne_bytes()); // PERF_COUNT_SW_TASK_CLOCK
                                                      // exclude_kernel | exclude_hv: bits 5 and 6 of the flags word at offset 40.
    attr[40..48].copy_from_slice(&((1u64 << 5) | (1u64 << 6)).to_ne_bytes());
    // SAFETY: the kernel reads the attribute buffer, which we own and sized correctly.
    let r = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0) };
    check(r)
}

/// `add_key("user", desc, payload, len, KEY_SPEC_PROCESS_KEYRING)`.
pub fn add_user_key() -> Sys<i64> {
    let payload = b"skillsandbox-check";
    // SAFETY: every pointer refers to a live NUL-terminated string or buffer of the
    // length passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"skillsandbox-check".as_ptr(),
            payload.as_ptr(),
            payload.len(),
            -2i32, // KEY_SPEC_PROCESS_KEYRING
        )
    };
    check(r)
}

/// Clear close-on-exec on `fd` (the check's deliberately leaky canary fd).
pub fn clear_cloexec(fd: RawFd) -> Sys<()> {
    // SAFETY: fcntl with F_SETFD takes an integer argument.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } as libc::c_long).map(|_| ())
}

/// Ignore SIGXFSZ so a write past RLIMIT_FSIZE returns EFBIG instead of killing us.
pub fn ignore_sigxfsz() -> Sys<()> {
    // SAFETY: installing SIG_IGN needs no handler code.
    let r = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if r == libc::SIG_ERR {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `getrlimit` soft value.
pub fn rlimit_soft(resource: libc::__rlimit_resource_t) -> Sys<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer.
    check(unsafe { libc::getrlimit(resource, &mut r) } as libc::c_long)?;
    Ok(r.rlim_cur)
}

/// Open the pty master and unlock its slave; returns (master fd, slave path).
pub fn open_pty() -> Sys<(RawFd, String)> {
    // SAFETY: posix_openpt takes flags; the fd is owned by the caller.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if m < 0 {
        return Err(errno());
    }
    // SAFETY: `m` is the master fd just opened.
    if unsafe { libc::grantpt(m) } < 0 || unsafe { libc::unlockpt(m) } < 0 {
        let e = errno();
        close(m);
        return Err(e);
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is writable for its length.
    if unsafe { libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) } != 0 {
        let e = errno();
        close(m);
        return Err(e);
    }
    // SAFETY: ptsname_r NUL-terminated the buffer on success.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((m, name))
}

/// `open(path, O_RDWR)` without O_NOCTTY (a session leader gains it as its terminal).
pub fn open_rdwr_ctty(path: &str) -> Sys<RawFd> {
    let p = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: `p` is a valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

/// `ptrace(PTRACE_TRACEME)`.
pub fn ptrace_traceme() -> Sys<()> {
    // SAFETY: PTRACE_TRACEME takes no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }).map(|_| ())
}

/// `userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC)`.
pub fn userfaultfd() -> Sys<i64> {
    syscall6(
        libc::SYS_userfaultfd,
        [1 | libc::O_CLOEXEC as u64, 0, 0, 0, 0, 0],
    )
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: a new anonymous session keyring.
pub fn keyctl_join_session() -> Sys<i64> {
    syscall6(libc::SYS_keyctl, [1, 0, 0, 0, 0, 0])
}

/// `stat(path).st_dev`.
pub fn stat_dev(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// `renameat2(from, to, RENAME_EXCHANGE)`: swap two names atomically (the racer's
/// flip between a directory and a symlink; neither name is ever missing).
pub fn rename_exchange(from: &Path, to: &Path) -> Sys<()> {
    let (a, b) = (cpath(from)?, cpath(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let ret = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    check(ret as libc::c_long).map(|_| ())
}
