//! Notify mode: the child's refusals are answered by a supervisor that sees each one.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use skillsandbox_manifest::SyscallProfile;
use skillsandbox_sandbox::seccomp::{
    apply_seccomp_on_current_thread, seccomp_plan, serve_notifications, syscall_number,
    SeccompOptions, SyscallRefusal, DEFAULT_DENIED,
};

use crate::child::{feature, in_child, in_child_with, raw_clone, raw_syscall, recv_fd, send_fd};

fn notify_available() -> bool {
    // libseccomp API level 6: the kernel has user notification (Linux >= 5.0) and the
    // library supports it.
    feature(
        crate::child::seccomp_available() && libseccomp::get_api() >= 6,
        "seccomp user notification",
    )
}

const NOTIFY: SeccompOptions = SeccompOptions {
    notify_denied: true,
    observe: false,
    watch_egress: false,
};

#[test]
fn supervisor_sees_and_answers_every_refusal() {
    if !notify_available() {
        return;
    }
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");

    let child = move || -> Result<(), String> {
        let _ = nix::unistd::setsid();
        let report =
            apply_seccomp_on_current_thread(&seccomp_plan(SyscallProfile::Default), &NOTIFY)
                .map_err(|e| format!("apply: {e}"))?;
        let fd = report.notify_fd.ok_or("no notify fd in notify mode")?;
        send_fd(child_sock.as_fd(), fd.as_raw_fd())?;
        drop(fd);
        let mut wrong = Vec::new();
        for d in DEFAULT_DENIED {
            let nr = syscall_number(d.name).ok_or(format!("no number for {}", d.name))?;
            let got = raw_syscall(i64::from(nr), [u64::MAX; 6]);
            if got != Err(d.errno) {
                wrong.push(format!("{} -> {got:?}", d.name));
            }
        }
        let tiocsti = raw_syscall(libc::SYS_ioctl, [0, 0xdead_0000_5412, 0, 0, 0, 0]);
        if tiocsti != Err(libc::EPERM) {
            wrong.push(format!("ioctl(TIOCSTI) -> {tiocsti:?}"));
        }
        let newuser = raw_clone(libc::CLONE_NEWUSER as u64 | libc::SIGCHLD as u64);
        if newuser != Err(libc::EPERM) {
            wrong.push(format!("clone(CLONE_NEWUSER) -> {newuser:?}"));
        }
        // Allowed calls are not notifications.
        if raw_syscall(libc::SYS_getpid, [0; 6]).is_err() {
            wrong.push("getpid failed".into());
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    };
    let (result, events) = in_child_with(child, |pid| {
        let fd = recv_fd(parent_sock.as_fd());
        let mut events: Vec<SyscallRefusal> = Vec::new();
        let served = serve_notifications(fd, &seccomp_plan(SyscallProfile::Default), |e| {
            events.push(e)
        })
        .expect("serve_notifications");
        assert_eq!(served, events.len() as u64);
        (pid, events)
    });
    result.assert_ok();
    let (pid, events) = events;

    let seen: BTreeSet<&str> = events.iter().map(|e| e.syscall.as_str()).collect();
    // ENOSYS entries (clone3, openat2) are compatibility fallbacks the kernel answers
    // itself: never notifications.
    let mut want: BTreeSet<&str> = DEFAULT_DENIED
        .iter()
        .filter(|d| d.errno != libc::ENOSYS)
        .map(|d| d.name)
        .collect();
    want.insert("ioctl");
    want.insert("clone");
    assert_eq!(seen, want, "syscalls the supervisor saw");
    assert_eq!(
        events.len(),
        want.len(),
        "one notification per refused call"
    );
    for e in &events {
        assert_eq!(e.pid, pid.as_raw() as u32, "{}", e.detail());
        let planned = DEFAULT_DENIED
            .iter()
            .find(|d| d.name == e.syscall)
            .map_or(libc::EPERM, |d| d.errno);
        assert_eq!(e.errno, planned, "{}", e.detail());
    }
    let ioctl = events
        .iter()
        .find(|e| e.syscall == "ioctl")
        .expect("ioctl event");
    assert_eq!(ioctl.args[1], 0xdead_0000_5412);
    assert!(ioctl.reason.starts_with("TIOCSTI"), "{}", ioctl.detail());
}

#[test]
fn refusals_stay_refused_when_nobody_answers() {
    if !notify_available() {
        return;
    }
    in_child(|| {
        let report =
            apply_seccomp_on_current_thread(&seccomp_plan(SyscallProfile::Default), &NOTIFY)
                .map_err(|e| format!("apply: {e}"))?;
        // The only listener fd goes away: the kernel fails notified calls with ENOSYS.
        drop(report.notify_fd);
        let nr = syscall_number("ptrace").ok_or("no ptrace number")?;
        let got = raw_syscall(i64::from(nr), [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0]);
        if got == Err(libc::ENOSYS) {
            Ok(())
        } else {
            Err(format!(
                "ptrace without a supervisor -> {got:?}, want ENOSYS"
            ))
        }
    })
    .assert_ok();
}
