//! Observe mode (`learn`): every call naming a path or destination reaches the
//! supervisor, which records it and lets it run; what the plan refuses stays refused
//! with the plan's errno, argument rules included (observing never loosens).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use skillsandbox_manifest::SyscallProfile;
use skillsandbox_sandbox::seccomp::{
    apply_seccomp_on_current_thread, seccomp_plan, serve_observing, Access, AccessKind,
    SeccompOptions, SyscallRefusal,
};

use crate::child::{feature, in_child_with, raw_syscall, recv_fd, send_fd};

#[test]
fn observed_calls_run_and_are_recorded_refused_ones_stay_refused() {
    if !feature(
        crate::child::seccomp_available() && libseccomp::get_api() >= 6,
        "seccomp user notification",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = std::fs::canonicalize(dir.path()).expect("canonical");
    let readable = dir.join("input.txt");
    std::fs::write(&readable, "observed").expect("write input");
    let setuid = dir.join("setuid-bin");
    let relative = "made-here.txt";
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let (r, s, d) = (readable.clone(), setuid.clone(), dir.clone());
    let child = move || -> Result<(), String> {
        let _ = nix::unistd::setsid();
        std::env::set_current_dir(&d).map_err(|e| format!("chdir: {e}"))?;
        let opts = SeccompOptions {
            notify_denied: true,
            observe: true,
            watch_egress: false,
        };
        let report = apply_seccomp_on_current_thread(&seccomp_plan(SyscallProfile::Default), &opts)
            .map_err(|e| format!("apply: {e}"))?;
        let fd = report.notify_fd.ok_or("no notify fd in observe mode")?;
        send_fd(child_sock.as_fd(), fd.as_raw_fd())?;
        drop(fd);
        let mut wrong = Vec::new();
        let c = |p: &std::path::Path| CString::new(p.to_str().unwrap_or("")).unwrap_or_default();
        // An observed open goes ahead: the file really opens and reads.
        let path = c(&r);
        let at = libc::AT_FDCWD as u64;
        match raw_syscall(
            libc::SYS_openat,
            [at, path.as_ptr() as u64, libc::O_RDONLY as u64, 0, 0, 0],
        ) {
            Ok(fd) => {
                let mut buf = [0u8; 8];
                let n = raw_syscall(
                    libc::SYS_read,
                    [fd as u64, buf.as_mut_ptr() as u64, 8, 0, 0, 0],
                );
                if n != Ok(8) || &buf != b"observed" {
                    wrong.push(format!("read after observed open -> {n:?}"));
                }
            }
            Err(e) => wrong.push(format!("observed openat -> errno {e}")),
        }
        // A relative path is recorded against the caller's cwd.
        let rel = CString::new(relative).unwrap_or_default();
        let flags = (libc::O_CREAT | libc::O_WRONLY) as u64;
        if let Err(e) = raw_syscall(
            libc::SYS_openat,
            [at, rel.as_ptr() as u64, flags, 0o644, 0, 0],
        ) {
            wrong.push(format!("relative create -> errno {e}"));
        }
        // The plan's argument rule on openat (set-id mode bits) still refuses.
        let sp = c(&s);
        let got = raw_syscall(
            libc::SYS_openat,
            [at, sp.as_ptr() as u64, flags, 0o4755, 0, 0],
        );
        if got != Err(libc::EPERM) {
            wrong.push(format!("set-uid create -> {got:?}"));
        }
        // A connect is recorded with its destination and goes ahead (refused by the
        // kernel here: nothing listens on port 1).
        let sock = raw_syscall(
            libc::SYS_socket,
            [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
        )
        .map_err(|e| format!("socket: {e}"))?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 1u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as u64;
        let got = raw_syscall(
            libc::SYS_connect,
            [sock as u64, &addr as *const _ as u64, len, 0, 0, 0],
        );
        if got != Err(libc::ECONNREFUSED) {
            wrong.push(format!("connect -> {got:?}"));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    };
    let (result, (accesses, refusals)) = in_child_with(child, |_pid| {
        let fd = recv_fd(parent_sock.as_fd());
        let mut accesses: Vec<Access> = Vec::new();
        let mut refusals: Vec<SyscallRefusal> = Vec::new();
        serve_observing(
            fd,
            &seccomp_plan(SyscallProfile::Default),
            |r| refusals.push(r),
            |a| accesses.push(a),
        )
        .expect("serve_observing");
        (accesses, refusals)
    });
    result.assert_ok();
    let has = |kind: AccessKind, target: &str| {
        accesses
            .iter()
            .any(|a| a.kind == kind && a.target == target && a.syscall == "openat")
    };
    assert!(
        has(AccessKind::Read, readable.to_str().unwrap()),
        "{accesses:#?}"
    );
    assert!(
        has(AccessKind::Write, dir.join(relative).to_str().unwrap()),
        "{accesses:#?}"
    );
    assert!(
        accesses
            .iter()
            .any(|a| a.kind == AccessKind::Connect && a.target == "127.0.0.1:1"),
        "{accesses:#?}"
    );
    // The refused call is a refusal, not an observed access.
    assert!(
        !accesses
            .iter()
            .any(|a| a.target == setuid.to_str().unwrap()),
        "{accesses:#?}"
    );
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].syscall, "openat");
    assert_eq!(refusals[0].errno, libc::EPERM);
    assert!(
        !setuid.exists(),
        "the set-uid file must not have been created"
    );
}
