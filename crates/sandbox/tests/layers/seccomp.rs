//! Seccomp profiles against the real kernel (DESIGN.md §5), in forked children.

use std::os::fd::AsRawFd;

use skillsandbox_manifest::SyscallProfile;
use skillsandbox_sandbox::seccomp::{
    apply_seccomp_on_current_thread, seccomp_plan, syscall_number, SeccompOptions, DEFAULT_DENIED,
};

use crate::child::{
    feature, in_child, raw_clone, raw_process_syscall, raw_syscall, seccomp_available,
};

const X32_SYSCALL_BIT: i64 = 0x4000_0000;
/// Invalid pointers and flags: if a call ever got past the filter, the kernel would
/// refuse it (EFAULT/EINVAL/EBADF) instead of acting.
const BAD_ARGS: [u64; 6] = [u64::MAX; 6];

fn apply(profile: SyscallProfile) -> Result<(), String> {
    apply_seccomp_on_current_thread(&seccomp_plan(profile), &SeccompOptions::default())
        .map(|_| ())
        .map_err(|e| format!("apply {profile:?}: {e}"))
}

fn expect_errno(what: &str, got: Result<i64, i32>, errno: i32) -> Result<(), String> {
    match got {
        Err(e) if e == errno => Ok(()),
        other => Err(format!("{what}: expected errno {errno}, got {other:?}")),
    }
}

fn nr(name: &str) -> Result<i64, String> {
    syscall_number(name)
        .map(i64::from)
        .ok_or(format!("no syscall number for {name}"))
}

fn available() -> bool {
    feature(seccomp_available(), "seccomp filters")
}

#[test]
fn default_refuses_every_listed_syscall_with_its_errno() {
    if !available() {
        return;
    }
    in_child(|| {
        // No controlling terminal: vhangup would have nothing to hang up.
        let _ = nix::unistd::setsid();
        apply(SyscallProfile::Default)?;
        let mut wrong = Vec::new();
        for d in DEFAULT_DENIED {
            let got = raw_syscall(nr(d.name)?, BAD_ARGS);
            if got != Err(d.errno) {
                wrong.push(format!("{} -> {got:?} (want errno {})", d.name, d.errno));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    })
    .assert_ok();
}

#[test]
fn tiocsti_and_tioclinux_are_refused_even_with_high_bits() {
    if !available() {
        return;
    }
    in_child(|| {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
        let fd = pty.slave.as_raw_fd() as u64;
        let c = b"x".as_ptr() as u64;
        apply(SyscallProfile::Default)?;
        for req in [
            0x5412u64,
            0xdead_beef_0000_5412,
            0x1_0000_5412,
            0x541c,
            0xffff_ffff_0000_541c,
        ] {
            let got = raw_syscall(libc::SYS_ioctl, [fd, req, c, 0, 0, 0]);
            expect_errno(&format!("ioctl({req:#x})"), got, libc::EPERM)?;
        }
        // Other terminal ioctls still work.
        let mut ws = [0u16; 4];
        let got = raw_syscall(
            libc::SYS_ioctl,
            [fd, libc::TIOCGWINSZ, ws.as_mut_ptr() as u64, 0, 0, 0],
        );
        got.map(|_| ())
            .map_err(|e| format!("TIOCGWINSZ: errno {e}"))
    })
    .assert_ok();
}

#[test]
fn clone3_is_enosys_and_namespace_flags_are_refused() {
    if !available() {
        return;
    }
    in_child(|| {
        apply(SyscallProfile::Default)?;
        let got = raw_syscall(nr("clone3")?, [u64::MAX, 88, 0, 0, 0, 0]);
        expect_errno("clone3", got, libc::ENOSYS)?;
        let sigchld = libc::SIGCHLD as u64;
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
            0x80, // CLONE_NEWTIME
        ] {
            let flags = flag as u64 | sigchld;
            expect_errno(&format!("clone({flags:#x})"), raw_clone(flags), libc::EPERM)?;
            let combined = flags | libc::CLONE_FILES as u64;
            expect_errno(
                &format!("clone({combined:#x})"),
                raw_clone(combined),
                libc::EPERM,
            )?;
        }
        let got = raw_syscall(nr("unshare")?, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]);
        expect_errno("unshare(CLONE_NEWUSER)", got, libc::EPERM)?;
        // A plain fork still works.
        raw_clone(sigchld)
            .map(|_| ())
            .map_err(|e| format!("clone(SIGCHLD): errno {e}"))
    })
    .assert_ok();
}

fn foreign_abi_kills(profile: SyscallProfile) {
    // x32: getpid is 39 in the x32 table.
    in_child(move || {
        apply(profile)?;
        let got = raw_syscall(X32_SYSCALL_BIT | 39, [0; 6]);
        Err(format!(
            "x32 getpid returned {got:?} instead of killing the process"
        ))
    })
    .assert_sigsys();
    #[cfg(target_arch = "x86_64")]
    in_child(move || {
        apply(profile)?;
        let got = crate::child::int80_getpid();
        Err(format!(
            "int 0x80 getpid returned {got} instead of killing the process"
        ))
    })
    .assert_sigsys();
}

#[test]
fn non_native_abis_kill_the_process_in_every_profile() {
    if !available() {
        return;
    }
    for profile in [
        SyscallProfile::Permissive,
        SyscallProfile::Default,
        SyscallProfile::Strict,
    ] {
        foreign_abi_kills(profile);
    }
}

#[test]
fn native_calls_still_work_without_the_filter_for_comparison() {
    // The same i386 getpid is a real getpid when no filter is installed, so the
    // SIGSYS above comes from the filter, not from a kernel without IA32 emulation.
    #[cfg(target_arch = "x86_64")]
    in_child(|| {
        let got = crate::child::int80_getpid();
        if got == i64::from(std::process::id()) {
            Ok(())
        } else {
            Err(format!("int 0x80 getpid returned {got}"))
        }
    })
    .assert_ok();
}

#[test]
fn default_keeps_an_ordinary_workload_working() {
    if !available() {
        return;
    }
    in_child(|| {
        apply(SyscallProfile::Default)?;
        let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        nix::unistd::write(&wr, b"hello").map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 5];
        nix::unistd::read(&rd, &mut buf).map_err(|e| format!("read: {e}"))?;
        let v: Vec<u64> = (0..1_000_000).collect(); // mmap-backed allocation
        let sum: u64 = std::thread::scope(|s| {
            let h = s.spawn(|| v.iter().sum::<u64>());
            h.join().unwrap_or(0)
        });
        if sum != 499_999_500_000 {
            return Err(format!("thread computed {sum}"));
        }
        let status = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("spawn /bin/true: {e}"))?;
        if !status.success() {
            return Err(format!("/bin/true: {status}"));
        }
        let pers = nr("personality")?;
        raw_syscall(pers, [0xffff_ffff, 0, 0, 0, 0, 0])
            .map_err(|e| format!("personality query: errno {e}"))?;
        raw_syscall(pers, [0, 0, 0, 0, 0, 0]).map_err(|e| format!("personality(0): {e}"))?;
        let got = raw_syscall(pers, [0x0040000, 0, 0, 0, 0, 0]);
        expect_errno("personality(ADDR_NO_RANDOMIZE)", got, libc::EPERM)?;
        let got = raw_syscall(pers, [0x1_0004_0000, 0, 0, 0, 0, 0]);
        expect_errno("personality(1<<32 | ADDR_NO_RANDOMIZE)", got, libc::EPERM)?;
        Ok(())
    })
    .assert_ok();
}

#[test]
fn strict_refuses_other_socket_families_raw_sockets_and_processes() {
    if !available() {
        return;
    }
    in_child(|| {
        apply(SyscallProfile::Strict)?;
        let sock = |family: u64, ty: u64, proto: u64| {
            let r = raw_syscall(libc::SYS_socket, [family, ty, proto, 0, 0, 0]);
            if let Ok(fd) = r {
                let _ = nix::unistd::close(fd as i32);
            }
            r
        };
        let (unix, inet, inet6) = (
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::AF_INET6 as u64,
        );
        let (stream, dgram, raw) = (
            libc::SOCK_STREAM as u64,
            libc::SOCK_DGRAM as u64,
            libc::SOCK_RAW as u64,
        );
        let eaf = libc::EAFNOSUPPORT;
        expect_errno("AF_PACKET", sock(libc::AF_PACKET as u64, raw, 0), eaf)?;
        expect_errno("AF_NETLINK", sock(libc::AF_NETLINK as u64, raw, 0), eaf)?;
        expect_errno("AF_VSOCK", sock(libc::AF_VSOCK as u64, stream, 0), eaf)?;
        expect_errno("AF_PACKET|1<<32", sock(0x1_0000_0011, raw, 0), eaf)?;
        let nonblock = libc::SOCK_NONBLOCK as u64;
        expect_errno(
            "AF_INET SOCK_RAW",
            sock(inet, raw | nonblock, 1),
            libc::EPERM,
        )?;
        expect_errno("AF_INET6 SOCK_RAW", sock(inet6, raw, 58), libc::EPERM)?;
        expect_errno("AF_INET SOCK_PACKET", sock(inet, 10, 0), libc::EPERM)?;
        for (f, t) in [
            (unix, stream),
            (inet, stream),
            (inet6, dgram),
            (inet, dgram),
        ] {
            sock(f, t, 0).map_err(|e| format!("socket({f}, {t}): errno {e}"))?;
        }
        let got = raw_syscall(
            libc::SYS_socketpair,
            [libc::AF_NETLINK as u64, raw, 0, 0, 0, 0],
        );
        expect_errno("socketpair(AF_NETLINK)", got, eaf)?;
        let mut pair = [0i32; 2];
        raw_syscall(
            libc::SYS_socketpair,
            [unix, stream, 0, pair.as_mut_ptr() as u64, 0, 0],
        )
        .map_err(|e| format!("socketpair(AF_UNIX): errno {e}"))?;

        expect_errno(
            "clone(SIGCHLD)",
            raw_clone(libc::SIGCHLD as u64),
            libc::EPERM,
        )?;
        expect_errno(
            "fork",
            raw_process_syscall(nr("fork")?, [0; 6]),
            libc::EPERM,
        )?;
        expect_errno(
            "vfork",
            raw_process_syscall(nr("vfork")?, [0; 6]),
            libc::EPERM,
        )?;
        if std::process::Command::new("/bin/true").status().is_ok() {
            return Err("strict let a process be spawned".into());
        }
        let t = std::thread::spawn(|| 7)
            .join()
            .map_err(|_| "thread panicked")?;
        if t != 7 {
            return Err("thread result".into());
        }
        Ok(())
    })
    .assert_ok();
}

#[test]
fn permissive_allows_ptrace_traceme() {
    if !available() {
        return;
    }
    in_child(|| {
        apply(SyscallProfile::Permissive)?;
        raw_syscall(nr("ptrace")?, [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0])
            .map(|_| ())
            .map_err(|e| format!("ptrace(PTRACE_TRACEME): errno {e}"))
    })
    .assert_ok();
}

#[test]
fn default_refuses_ptrace_traceme() {
    if !available() {
        return;
    }
    in_child(|| {
        apply(SyscallProfile::Default)?;
        let got = raw_syscall(nr("ptrace")?, [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0]);
        expect_errno("ptrace(PTRACE_TRACEME)", got, libc::EPERM)
    })
    .assert_ok();
}
