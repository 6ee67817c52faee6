//! Thin, checked wrappers around the raw syscalls the launcher needs. Every `unsafe`
//! of the launcher lives here; each wrapper names the call and its arguments in its
//! error, the way `strace` would show it.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// A failed syscall: what was called (with arguments) and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{call} => {source}")]
pub struct SysError {
    pub call: String,
    #[source]
    pub source: io::Error,
}

pub type SysResult<T> = Result<T, SysError>;

fn check(ret: libc::c_long, call: impl FnOnce() -> String) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(SysError {
            call: call(),
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

fn cstr(p: &Path) -> SysResult<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SysError {
        call: format!("path {}", p.display()),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })
}

fn opt_cstr(s: Option<&str>) -> SysResult<Option<CString>> {
    s.map(|s| {
        CString::new(s).map_err(|_| SysError {
            call: format!("string {s:?}"),
            source: io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"),
        })
    })
    .transpose()
}

/// `mount(2)`.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let src = opt_cstr(source)?;
    let tgt = cstr(target)?;
    let fst = opt_cstr(fstype)?;
    let dat = opt_cstr(data)?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are NUL-terminated strings that outlive the call, or null.
    let ret = unsafe {
        libc::mount(
            ptr(&src),
            tgt.as_ptr(),
            ptr(&fst),
            flags,
            ptr(&dat).cast::<libc::c_void>(),
        )
    };
    check(ret.into(), || {
        format!(
            "mount({source:?}, {}, {fstype:?}, {flags:#x}, {data:?})",
            target.display()
        )
    })
    .map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &Path, flags: libc::c_int) -> SysResult<()> {
    let tgt = cstr(target)?;
    // SAFETY: tgt is a valid NUL-terminated path.
    let ret = unsafe { libc::umount2(tgt.as_ptr(), flags) };
    check(ret.into(), || {
        format!("umount2({}, {flags:#x})", target.display())
    })
    .map(drop)
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> SysResult<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: both are valid NUL-terminated paths; the syscall takes two pointers.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
    check(ret, || {
        format!("pivot_root({}, {})", new_root.display(), put_old.display())
    })
    .map(drop)
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: unshare takes an integer; no memory is involved.
    let ret = unsafe { libc::unshare(flags) };
    check(ret.into(), || format!("unshare({flags:#x})")).map(drop)
}

/// `setns(2)` into the namespace `fd` refers to (`nstype` 0: whatever it is).
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int, what: &str) -> SysResult<()> {
    // SAFETY: setns takes a descriptor and an integer; no memory is involved.
    let ret = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    check(ret.into(), || format!("setns({what})")).map(drop)
}

/// `fork(2)` through glibc, so its atfork handlers keep malloc usable in the child.
/// Only called from the single-threaded stage process.
pub fn fork() -> SysResult<libc::pid_t> {
    // SAFETY: the stage process that calls this is single-threaded (a fresh exec of
    // our own binary that starts no threads), so the child inherits no held locks.
    let pid = unsafe { libc::fork() };
    check(pid.into(), || "fork()".to_string()).map(|p| p as libc::pid_t)
}

/// `waitpid(2)`, retried on EINTR. Returns `(pid, raw status)`.
pub fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> SysResult<(libc::pid_t, libc::c_int)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return check(ret.into(), || format!("waitpid({pid}, {flags:#x})"))
            .map(|p| (p as libc::pid_t, status));
    }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn set_parent_death_signal(sig: libc::c_int) -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(ret.into(), || format!("prctl(PR_SET_PDEATHSIG, {sig})")).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub fn set_no_new_privs() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(ret.into(), || "prctl(PR_SET_NO_NEW_PRIVS, 1)".to_string()).map(drop)
}

/// `prctl(PR_SET_SECUREBITS, bits)`.
pub fn set_securebits(bits: libc::c_ulong) -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    check(ret.into(), || {
        format!("prctl(PR_SET_SECUREBITS, {bits:#x})")
    })
    .map(drop)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dumps, no ptrace attach from same-uid peers.
pub fn set_not_dumpable() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    check(ret.into(), || "prctl(PR_SET_DUMPABLE, 0)".to_string()).map(drop)
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() }
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail and touches no memory.
    unsafe { libc::getpid() }
}

pub fn getuid() -> libc::uid_t {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

pub fn getgid() -> libc::gid_t {
    // SAFETY: getgid cannot fail and touches no memory.
    unsafe { libc::getgid() }
}

/// `setgroups(0, NULL)`: drop every supplementary group.
pub fn clear_groups() -> SysResult<()> {
    // SAFETY: a zero-length list with a null pointer is valid for setgroups.
    let ret = unsafe { libc::setgroups(0, std::ptr::null()) };
    check(ret.into(), || "setgroups(0, NULL)".to_string()).map(drop)
}

pub fn setresgid(gid: libc::gid_t) -> SysResult<()> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::setresgid(gid, gid, gid) };
    check(ret.into(), || format!("setresgid({gid}, {gid}, {gid})")).map(drop)
}

pub fn setresuid(uid: libc::uid_t) -> SysResult<()> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::setresuid(uid, uid, uid) };
    check(ret.into(), || format!("setresuid({uid}, {uid}, {uid})")).map(drop)
}

pub fn setsid() -> SysResult<()> {
    // SAFETY: no arguments.
    let ret = unsafe { libc::setsid() };
    check(ret.into(), || "setsid()".to_string()).map(drop)
}

pub fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: pointer and length describe the bytes of `name`.
    let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(ret.into(), || format!("sethostname({name:?})")).map(drop)
}

pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64, name: &str) -> SysResult<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: lim is a valid rlimit for the duration of the call.
    let ret = unsafe { libc::setrlimit(resource, &lim) };
    check(ret.into(), || format!("setrlimit({name}, {value})")).map(drop)
}

/// `close_range(first, ~0, 0)`: close every fd from `first` up.
pub fn close_fds_from(first: libc::c_uint) -> SysResult<()> {
    // SAFETY: integer arguments only; closing fds we own is what is intended.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    check(ret, || format!("close_range({first}, ~0U, 0)")).map(drop)
}

/// Set or clear FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> SysResult<()> {
    // SAFETY: fcntl on an fd number; an invalid fd only yields EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    check(flags.into(), || format!("fcntl({fd}, F_GETFD)"))?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, new) };
    check(ret.into(), || format!("fcntl({fd}, F_SETFD, {new})")).map(drop)
}

/// `dup2(old, new)`.
pub fn dup2(old: RawFd, new: RawFd) -> SysResult<()> {
    // SAFETY: integer arguments; replacing `new` is intended by the caller.
    let ret = unsafe { libc::dup2(old, new) };
    check(ret.into(), || format!("dup2({old}, {new})")).map(drop)
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> SysError {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: path, argv and envp are NUL-terminated strings / null-terminated arrays
    // that stay alive across the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    SysError {
        call: format!("execve({path:?})"),
        source: io::Error::last_os_error(),
    }
}

/// `_exit(2)`: leave without running atexit handlers or destructors (child stages).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `kill(2)`.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::kill(pid, sig) };
    check(ret.into(), || format!("kill({pid}, {sig})")).map(drop)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Mount attributes for `mount_setattr(2)`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `openat2(path, O_PATH|O_CLOEXEC, RESOLVE_NO_SYMLINKS)`: an fd for exactly this path,
/// refusing symlinks in any component (so a planted link cannot redirect a bind).
pub fn open_path_no_symlinks(path: &Path) -> SysResult<OwnedFd> {
    open_path(path, true)
}

/// `openat2(path, O_PATH|O_CLOEXEC[, RESOLVE_NO_SYMLINKS])`: an `O_PATH` fd for
/// `path`; with `no_symlinks`, a symlink in any component is `ELOOP`.
pub fn open_path(path: &Path, no_symlinks: bool) -> SysResult<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    let p = cstr(path)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: if no_symlinks { RESOLVE_NO_SYMLINKS } else { 0 },
    };
    // SAFETY: p is a valid path, how a valid open_how of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(ret, || {
        if no_symlinks {
            format!("openat2({}, O_PATH, RESOLVE_NO_SYMLINKS)", path.display())
        } else {
            format!("openat2({}, O_PATH)", path.display())
        }
    })?;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `open_tree(fd, "", OPEN_TREE_CLONE|AT_EMPTY_PATH[|AT_RECURSIVE])`: a detached copy
/// of the mount tree at `fd`.
pub fn open_tree_clone(fd: BorrowedFd<'_>, recursive: bool, what: &Path) -> SysResult<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: an empty C string with AT_EMPTY_PATH refers to `fd` itself.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    let tree = check(ret, || {
        format!("open_tree({}, OPEN_TREE_CLONE)", what.display())
    })?;
    // SAFETY: fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH[|AT_RECURSIVE], {set, clr, userns})`.
pub fn mount_setattr_fd(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd<'_>>,
    what: &Path,
) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: attr is a valid mount_attr of the size passed; "" with AT_EMPTY_PATH.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret, || {
        format!(
            "mount_setattr({}, set={set:#x}, clear={clear:#x})",
            what.display()
        )
    })
    .map(drop)
}

/// `mount_setattr(AT_FDCWD, path, ...)` on an attached mount.
pub fn mount_setattr_path(path: &Path, recursive: bool, set: u64) -> SysResult<()> {
    let p = cstr(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: p is a valid path and attr a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret, || {
        format!("mount_setattr({}, set={set:#x})", path.display())
    })
    .map(drop)
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach a detached tree.
pub fn move_mount_to(fd: BorrowedFd<'_>, target: &Path) -> SysResult<()> {
    let t = cstr(target)?;
    // SAFETY: "" with F_EMPTY_PATH refers to fd; t is a valid path.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(ret, || format!("move_mount(-> {})", target.display())).map(drop)
}

/// Arrange for `cmd`'s child to find `control` at fd 3 (not close-on-exec) and to be
/// SIGKILLed when the spawning thread dies.
pub fn pass_control_fd(cmd: &mut std::process::Command, control: RawFd, target: RawFd) {
    use std::os::unix::process::CommandExt;
    let hook = move || -> io::Result<()> {
        // Only async-signal-safe syscalls here: this runs between fork and exec.
        // SAFETY: dup2/fcntl/prctl on integers; no allocation, no locks.
        unsafe {
            if control == target {
                let flags = libc::fcntl(target, libc::F_GETFD);
                if flags < 0 || libc::fcntl(target, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(control, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only performs async-signal-safe syscalls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Adopt an fd that arrived by `SCM_RIGHTS`.
pub fn adopt_received_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed this fd for us in recvmsg; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// `poll(2)` one fd for readability; `Ok(true)` when readable or hung up.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> SysResult<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is a valid pollfd array of length 1.
    let ret = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if ret < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
        return Ok(false);
    }
    check(ret.into(), || format!("poll({}, {timeout_ms})", p.fd)).map(|n| n > 0)
}

/// `poll` on several fds for readability (a pidfd is readable once its process
/// exited); which of them are ready, in order. Interrupted: none.
pub fn poll_any<const N: usize>(fds: [BorrowedFd<'_>; N], timeout_ms: i32) -> SysResult<[bool; N]> {
    let mut p = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: p is a valid pollfd array of length N.
    let ret = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if ret < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
        return Ok([false; N]);
    }
    check(ret.into(), || format!("poll({N} fds, {timeout_ms})"))?;
    Ok(p.map(|p| p.revents != 0))
}

/// `pidfd_open(pid, 0)`: an fd that becomes readable when the process exits.
pub fn pidfd_open(pid: u32) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    let fd = check(ret, || format!("pidfd_open({pid})"))?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1)`: let a socket send from an IPv6
/// address no interface holds. The sandbox's DNS socket answers queries sent to any
/// resolver address; with `local ::/0` routes IPv4 needs nothing, IPv6 source
/// selection still checks interface addresses.
pub fn set_ipv6_freebind(fd: BorrowedFd<'_>) -> SysResult<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid int option value of the size passed, on an fd we borrow.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_FREEBIND,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret.into(), || {
        format!(
            "setsockopt({}, IPPROTO_IPV6, IPV6_FREEBIND, 1)",
            fd.as_raw_fd()
        )
    })
    .map(drop)
}

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit. The supervisor holds
/// two fds per relayed connection (and the MCP server runs many sandboxes), so the
/// common 1024 soft default would let one busy skill starve the others. The skill
/// gets its own, declared limit in the stage.
pub fn raise_nofile_soft_limit() -> SysResult<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out-pointer for the call.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    check(ret.into(), || "getrlimit(RLIMIT_NOFILE)".to_string())?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a valid rlimit for the call.
        let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        check(ret.into(), || {
            format!("setrlimit(RLIMIT_NOFILE, {})", lim.rlim_max)
        })?;
    }
    Ok(lim.rlim_cur)
}

/// Hand a terminal's master end to a container engine as runc does: one message on
/// the (connected) console socket carrying the fd (`SCM_RIGHTS`) and, as its bytes,
/// the terminal's name.
pub fn send_terminal(socket: BorrowedFd<'_>, master: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [master.as_raw_fd()];
    let iov = [io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}
