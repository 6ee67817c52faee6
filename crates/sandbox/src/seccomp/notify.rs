//! Supervisor side of notify mode: answer every refused call with the plan's errno
//! and report it. Runs in a supervisor thread; never answers "continue", so a
//! refused call is never executed, whatever the supervisor does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use skillsandbox_manifest::SyscallProfile;

use super::{errno_name, seccomp_plan, Refusal, SeccompError, NEWER_SYSCALLS};

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

fn syscall_name(req: &ScmpNotifReq) -> String {
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

/// Serves the listener fd of a filter installed with `notify_denied` for `profile`:
/// receives each refused call, answers it with `-errno` from the plan, and passes it
/// to `on_event`. Blocks until every process using the filter is gone (the fd hangs
/// up), then returns how many calls it answered.
pub fn serve_notifications(
    fd: OwnedFd,
    profile: SyscallProfile,
    mut on_event: impl FnMut(SyscallRefusal),
) -> Result<u64, SeccompError> {
    let plan = seccomp_plan(profile);
    let mut served = 0u64;
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => return Err(SeccompError::PollNotifyFd { source }),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                return Ok(served);
            }
            continue;
        }
        let req = match ScmpNotifReq::receive(fd.as_raw_fd()) {
            Ok(req) => req,
            Err(_) => {
                let err = std::io::Error::last_os_error();
                // ENOENT: the caller died or was interrupted before we read it.
                if err.raw_os_error() == Some(libc::ENOENT) {
                    continue;
                }
                return Err(SeccompError::ReceiveNotification { source: err });
            }
        };
        let name = syscall_name(&req);
        let refusal = plan.refusal_for(&name, &req.data.args).unwrap_or(MISMATCH);
        let resp = ScmpNotifResp::new_error(req.id, -refusal.errno, ScmpNotifRespFlags::empty());
        if resp.respond(fd.as_raw_fd()).is_err() {
            let err = std::io::Error::last_os_error();
            // ENOENT: the caller died or a signal interrupted the call; it did not run.
            if err.raw_os_error() != Some(libc::ENOENT) {
                return Err(SeccompError::RespondNotification {
                    syscall: name,
                    pid: req.pid,
                    source: err,
                });
            }
        }
        served += 1;
        on_event(SyscallRefusal {
            pid: req.pid,
            syscall: name,
            nr: req.data.syscall.as_raw_syscall(),
            args: req.data.args,
            errno: refusal.errno,
            reason: refusal.reason,
        });
    }
}
