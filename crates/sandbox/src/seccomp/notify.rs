//! Supervisor side of notify mode: answer every refused call with the plan's errno
//! and report it. Runs in a supervisor thread; never answers "continue", so a
//! refused call is never executed, whatever the supervisor does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use super::{errno_name, Refusal, SeccompError, SeccompPlan, NEWER_SYSCALLS};

/// One refused call, as the supervisor observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyscallRefusal {
    /// The caller, in the supervisor's PID namespace.
    pub pid: u32,
    pub syscall: String,
    pub nr: i32,
    pub args: [u64; 6],
    /// The errno the caller got.
    pub errno: i32,
    pub reason: &'static str,
}

impl SyscallRefusal {
    /// One line for a violation record, e.g. `ptrace(0x10, 0x1, 0x0, 0x0) refused (EPERM): ...`.
    pub fn detail(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .take(4)
            .map(|a| format!("{a:#x}"))
            .collect();
        format!(
            "{}({}) refused ({}): {}",
            self.syscall,
            args.join(", "),
            errno_name(self.errno),
            self.reason
        )
    }
}

pub(super) fn syscall_name(req: &ScmpNotifReq) -> String {
    let nr = req.data.syscall.as_raw_syscall();
    if let Ok(name) = req.data.syscall.get_name_by_arch(req.data.arch) {
        return name;
    }
    NEWER_SYSCALLS
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| (*name).to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

/// A call the filter sent here but the plan does not refuse cannot happen unless the
/// filter and the plan disagree; refuse it anyway (fail closed).
const MISMATCH: Refusal = Refusal {
    errno: libc::EPERM,
    reason: "sent by the filter but not in the plan (refused: fail closed)",
};

/// Serves the listener fd of a filter installed with `notify_denied` for `plan`:
/// receives each refused call, answers it with `-errno` from the plan, and passes it
/// to `on_event`. Blocks until every process using the filter is gone (the fd hangs
/// up), then returns how many calls it answered.
pub fn serve_notifications(
    fd: OwnedFd,
    plan: &SeccompPlan,
    mut on_event: impl FnMut(SyscallRefusal),
) -> Result<u64, SeccompError> {
    let mut served = 0u64;
    loop {
        let req = match next_request(&fd)? {
            Next::Request(req) => req,
            Next::Again => continue,
            Next::HungUp => return Ok(served),
        };
        let name = syscall_name(&req);
        let refusal = refusal_of(&req, &name, plan.refusal_for(&name, &req.data.args));
        respond(&fd, &req, &name, refusal.errno)?;
        served += 1;
        on_event(refusal);
    }
}

/// The record of a call the plan refuses (`refused`), or of one the filter sent but
/// the plan does not know ([`MISMATCH`]: refused too, fail closed).
pub(super) fn refusal_of(
    req: &ScmpNotifReq,
    name: &str,
    refused: Option<Refusal>,
) -> SyscallRefusal {
    let refusal = refused.unwrap_or(MISMATCH);
    SyscallRefusal {
        pid: req.pid,
        syscall: name.to_string(),
        nr: req.data.syscall.as_raw_syscall(),
        args: req.data.args,
        errno: refusal.errno,
        reason: refusal.reason,
    }
}

/// Answers a notification with `-errno`. A caller that died or was interrupted
/// (`ENOENT`) did not run the call: not an error.
pub(super) fn respond(
    fd: &OwnedFd,
    req: &ScmpNotifReq,
    name: &str,
    errno: i32,
) -> Result<(), SeccompError> {
    let resp = ScmpNotifResp::new_error(req.id, -errno, ScmpNotifRespFlags::empty());
    if resp.respond(fd.as_raw_fd()).is_err() {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOENT) {
            return Err(SeccompError::RespondNotification {
                syscall: name.to_string(),
                pid: req.pid,
                source: err,
            });
        }
    }
    Ok(())
}

/// What waiting on the listener gave.
pub(super) enum Next {
    Request(ScmpNotifReq),
    /// Nothing to serve (a signal, or the caller died before we read it).
    Again,
    /// Every process using the filter is gone.
    HungUp,
}

/// Waits for the next notification on the listener.
pub(super) fn next_request(fd: &OwnedFd) -> Result<Next, SeccompError> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match nix::poll::poll(&mut fds, PollTimeout::NONE) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(Next::Again),
        Err(source) => return Err(SeccompError::PollNotifyFd { source }),
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if !revents.contains(PollFlags::POLLIN) {
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Ok(Next::HungUp);
        }
        return Ok(Next::Again);
    }
    match ScmpNotifReq::receive(fd.as_raw_fd()) {
        Ok(req) => Ok(Next::Request(req)),
        Err(_) => {
            let err = std::io::Error::last_os_error();
            // ENOENT: the caller died or was interrupted before we read it.
            if err.raw_os_error() == Some(libc::ENOENT) {
                Ok(Next::Again)
            } else {
                Err(SeccompError::ReceiveNotification { source: err })
            }
        }
    }
}
