//! Probe items of the seccomp filter: each calls the refused syscall for real, with
//! arguments that would succeed without the filter, and reports what the kernel said.
//! Attacks that would change the probe's own state (new namespaces, tracing, a
//! controlling terminal) run in a forked child.

use super::params::ProbeParams;
use super::sys::{self, ChildEnd};
use super::{emit, errno_name, fail, pass, status_field, verdict};
use crate::catalog::Status;

const CLONE_NEWUSER: i32 = libc::CLONE_NEWUSER;

pub fn run_all(_p: &ProbeParams) {
    filter_installed();
    clone3();
    unshare();
    mount();
    ptrace();
    tiocsti();
    bpf();
    keyctl();
    io_uring();
    userfaultfd();
}

/// `Ok(value)` → "succeeded", `Err(errno)` → its name.
fn outcome(r: &sys::Sys<i64>) -> String {
    match r {
        Ok(v) => format!("succeeded ({v})"),
        Err(e) => errno_name(*e),
    }
}

/// A forked child's verdict on one attack: exit 0 = the attack worked, exit N = it
/// was refused with errno N. Signals are reported as such.
fn child_errno(f: impl FnOnce() -> sys::Sys<()>) -> Result<Result<(), i32>, String> {
    let end = sys::in_child(|| match f() {
        Ok(()) => 0,
        Err(e) => e.clamp(1, 125),
    });
    match end {
        Ok(ChildEnd::Exited(0)) => Ok(Ok(())),
        Ok(ChildEnd::Exited(e)) => Ok(Err(e)),
        Ok(ChildEnd::Signaled(s)) => Err(format!("test child killed by signal {s}")),
        Err(e) => Err(format!("cannot fork a test child: {}", errno_name(e))),
    }
}

fn filter_installed() {
    let mode = status_field("Seccomp").unwrap_or_default();
    let filters = status_field("Seccomp_filters").unwrap_or_else(|| "?".into());
    verdict(
        "seccomp.filter",
        mode == "2",
        format!("Seccomp: {mode} (2 = filter), {filters} filter(s)"),
    );
}

fn clone3() {
    let id = "seccomp.clone3";
    match sys::clone3_fork(0) {
        Err(libc::ENOSYS) => pass(
            id,
            "clone3 → ENOSYS: libc falls back to clone, whose flags the filter checks",
        ),
        Err(e) => pass(id, format!("clone3 refused: {}", errno_name(e))),
        Ok(pid) => {
            let _ = sys::wait(pid);
            fail(
                id,
                "clone3 created a process: its flags (namespaces) are not checked",
            )
        }
    }
}

fn unshare() {
    let id = "seccomp.unshare";
    let tries: [(&str, i32); 4] = [
        ("unshare(CLONE_NEWUSER)", CLONE_NEWUSER),
        ("unshare(CLONE_NEWNS)", libc::CLONE_NEWNS),
        ("unshare(CLONE_NEWNET)", libc::CLONE_NEWNET),
        ("unshare(CLONE_NEWUTS)", libc::CLONE_NEWUTS),
    ];
    let mut parts = Vec::new();
    for (name, flag) in tries {
        match child_errno(|| sys::unshare(flag)) {
            Ok(Ok(())) => return fail(id, format!("{name} succeeded")),
            Ok(Err(e)) => parts.push(format!("{name}: {}", errno_name(e))),
            Err(msg) => return fail(id, format!("{name}: {msg}")),
        }
    }
    // clone(CLONE_NEWUSER) as a plain fork with a namespace flag.
    let clone = child_errno(|| {
        match sys::syscall6(
            libc::SYS_clone,
            [(CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0],
        ) {
            Ok(0) => sys::exit_now(0),
            Ok(pid) => {
                let _ = sys::wait(pid as i32);
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
    match clone {
        Ok(Ok(())) => fail(
            id,
            "clone(CLONE_NEWUSER) created a process in a new user namespace",
        ),
        Ok(Err(e)) => {
            parts.push(format!("clone(CLONE_NEWUSER): {}", errno_name(e)));
            pass(id, parts.join("; "))
        }
        Err(msg) => fail(id, format!("clone(CLONE_NEWUSER): {msg}")),
    }
}

fn mount() {
    let id = "seccomp.mount";
    // Root of a fresh user namespace could mount; try to get one first, then mount.
    // The child's exit code: the mount's errno (0: mounted), +128 if unshare failed.
    let end = sys::in_child(|| {
        let unshared = sys::unshare(CLONE_NEWUSER | libc::CLONE_NEWNS);
        let mounted = match sys::mount_tmpfs(std::path::Path::new("/tmp")) {
            Ok(()) => 0,
            Err(e) => e.clamp(1, 125),
        };
        mounted + if unshared.is_ok() { 0 } else { 128 }
    });
    let (unshared, mounted) = match end {
        Ok(ChildEnd::Exited(code)) => (code < 128, code % 128),
        Ok(ChildEnd::Signaled(s)) => return fail(id, format!("test child killed by signal {s}")),
        Err(e) => return fail(id, format!("cannot fork a test child: {}", errno_name(e))),
    };
    let how = if unshared {
        "unshare(NEWUSER|NEWNS) succeeded first"
    } else {
        "unshare(NEWUSER|NEWNS) refused first"
    };
    if mounted == 0 {
        fail(id, format!("mounted a tmpfs over /tmp ({how})"))
    } else {
        pass(
            id,
            format!("mount(tmpfs) → {} ({how})", errno_name(mounted)),
        )
    }
}

fn ptrace() {
    let id = "seccomp.ptrace";
    let traceme = child_errno(sys::ptrace_traceme);
    let vm = sys::process_vm_read_self(16);
    match (traceme, vm) {
        (Ok(Err(a)), Err(b)) => pass(
            id,
            format!(
                "ptrace(PTRACE_TRACEME) → {}; process_vm_readv → {}",
                errno_name(a),
                errno_name(b)
            ),
        ),
        (Ok(Ok(())), _) => fail(id, "ptrace(PTRACE_TRACEME) succeeded"),
        (_, Ok(n)) => fail(id, format!("process_vm_readv read {n} bytes")),
        (Err(msg), _) => fail(id, format!("ptrace: {msg}")),
    }
}

/// In a child: become a session leader, take a fresh pty slave as the controlling
/// terminal, and push a byte into its input queue (TIOCSTI, also with high bits set
/// in the request), then try TIOCLINUX. The child prints the result itself.
fn tiocsti() {
    let id = "seccomp.tiocsti";
    let end = sys::in_child(|| {
        let _ = sys::setsid();
        let (master, slave) = match sys::open_pty() {
            Ok(x) => x,
            Err(e) => {
                // No terminal to inject into (the process tier grants no ptmx); the
                // filter must still refuse the requests, on any fd: EPERM is its
                // answer, ENOTTY the kernel's (the request got through).
                let mut parts = Vec::new();
                let mut through = Vec::new();
                for (name, req) in [
                    ("TIOCSTI", libc::TIOCSTI),
                    ("TIOCSTI|1<<32", libc::TIOCSTI | (1u64 << 32)),
                    ("TIOCLINUX", 0x541C),
                ] {
                    match sys::ioctl_char(0, req, b'x') {
                        Err(libc::EPERM) => parts.push(format!("{name}: EPERM")),
                        Ok(()) => through.push(format!("{name}: accepted")),
                        Err(e) => through.push(format!("{name}: {}", errno_name(e))),
                    }
                }
                let detail = format!(
                    "no terminal can be opened ({}); on stdin: {}",
                    errno_name(e),
                    parts
                        .iter()
                        .chain(&through)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if through.is_empty() {
                    emit(id, Status::Pass, detail);
                } else {
                    emit(
                        id,
                        Status::Fail,
                        format!("{detail}: the filter let the request through"),
                    );
                }
                return 0;
            }
        };
        let fd = match sys::open_rdwr_ctty(&slave) {
            Ok(fd) => fd,
            Err(e) => {
                sys::close(master);
                emit(
                    id,
                    Status::Pass,
                    format!("pty slave cannot be opened ({})", errno_name(e)),
                );
                return 0;
            }
        };
        let tiocsti = libc::TIOCSTI;
        let tries: [(&str, u64, u8); 3] = [
            ("TIOCSTI", tiocsti, b'x'),
            ("TIOCSTI|1<<32", tiocsti | (1u64 << 32), b'x'),
            ("TIOCLINUX", 0x541C, 0),
        ];
        let mut parts = Vec::new();
        for (name, req, byte) in tries {
            match sys::ioctl_char(fd, req, byte) {
                Ok(()) if name != "TIOCLINUX" => {
                    emit(
                        id,
                        Status::Fail,
                        format!("{name} injected a byte into the terminal"),
                    );
                    return 0;
                }
                Ok(()) => parts.push(format!("{name}: accepted (no virtual console)")),
                Err(e) => parts.push(format!("{name}: {}", errno_name(e))),
            }
        }
        emit(id, Status::Pass, parts.join("; "));
        sys::close(fd);
        sys::close(master);
        0
    });
    match end {
        Ok(ChildEnd::Exited(0)) => {}
        Ok(other) => fail(id, format!("test child ended: {other:?}")),
        Err(e) => fail(id, format!("cannot fork a test child: {}", errno_name(e))),
    }
}

fn bpf() {
    let id = "seccomp.bpf";
    let b = sys::bpf_map_create();
    let perf = sys::perf_event_open_self();
    for fd in [&b, &perf].into_iter().flatten() {
        sys::close(*fd as i32);
    }
    verdict(
        id,
        b.is_err() && perf.is_err(),
        format!(
            "bpf(BPF_MAP_CREATE) → {}; perf_event_open → {}",
            outcome(&b),
            outcome(&perf)
        ),
    );
}

fn keyctl() {
    let id = "seccomp.keyctl";
    let join = sys::keyctl_join_session();
    let add = sys::add_user_key();
    verdict(
        id,
        join.is_err() && add.is_err(),
        format!(
            "keyctl(JOIN_SESSION_KEYRING) → {}; add_key → {}",
            outcome(&join),
            outcome(&add)
        ),
    );
}

fn io_uring() {
    let r = sys::io_uring_setup(1);
    if let Ok(fd) = r {
        sys::close(fd as i32);
    }
    verdict(
        "seccomp.io_uring",
        r.is_err(),
        format!("io_uring_setup → {}", outcome(&r)),
    );
}

fn userfaultfd() {
    let r = sys::userfaultfd();
    if let Ok(fd) = r {
        sys::close(fd as i32);
    }
    verdict(
        "seccomp.userfaultfd",
        r.is_err(),
        format!("userfaultfd(UFFD_USER_MODE_ONLY) → {}", outcome(&r)),
    );
}

/// The x32 run: one x32-ABI getpid. The filter kills us with SIGSYS before this
/// prints anything; the check reads the death.
pub fn run_x32() {
    const X32_SYSCALL_BIT: i64 = 0x4000_0000;
    let r = sys::syscall6((X32_SYSCALL_BIT | libc::SYS_getpid) as libc::c_long, [0; 6]);
    match r {
        Ok(pid) => fail(
            "seccomp.x32",
            format!("x32 getpid returned {pid}: the x32 ABI is usable"),
        ),
        Err(libc::ENOSYS) => pass(
            "seccomp.x32",
            "ENOSYS: this kernel has no x32 ABI (the filter did not have to act)",
        ),
        Err(e) => pass(
            "seccomp.x32",
            format!("x32 getpid refused: {}", errno_name(e)),
        ),
    }
}

/// The i386 run: getpid through `int 0x80`. SIGSYS (the filter) or SIGSEGV (no ia32
/// emulation) ends us before this prints; the check reads the death.
pub fn run_i386() {
    let r = sys::int80_getpid();
    if r >= 0 {
        fail(
            "seccomp.i386",
            format!("int 0x80 getpid returned {r}: the i386 ABI is usable"),
        );
    } else {
        pass(
            "seccomp.i386",
            format!("int 0x80 getpid refused: {}", errno_name((-r) as i32)),
        );
    }
}
