//! Observe mode (`skillsandbox learn`): the filter also sends the calls that name a
//! path or a destination to the supervisor, which reads their arguments out of the
//! caller's memory, records them, and lets them continue. Everything the plan
//! refuses is still refused with the plan's errno, exactly as in notify mode.
//!
//! What is read is a record, never a decision: the caller can change its memory
//! between our read and the kernel's (the usual user-notification race), so nothing
//! here may ever allow what the other layers refuse. The mount view, Landlock and the
//! egress service decide; this only watches.

use std::os::fd::{AsRawFd, OwnedFd};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use serde::{Deserialize, Serialize};

use super::notify::{next_request, refusal_of, respond, syscall_name, Next, SyscallRefusal};
use super::{SeccompError, SeccompPlan};

/// The calls observe mode sends to the supervisor, when the plan does not refuse
/// them outright (those keep their direct errno).
pub const OBSERVED_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "creat",
    "truncate",
    "execve",
    "execveat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "connect",
];

/// The calls sent to the supervisor when no egress is declared
/// ([`super::SeccompOptions::watch_egress`]): the ones that name a destination.
/// `sendmsg`/`sendmmsg` carry theirs inside a struct the filter cannot read, and are
/// not watched; in the sandbox's own network namespace they fail all the same.
pub const WATCHED_EGRESS_SYSCALLS: &[&str] = &["connect", "sendto"];

/// The syscalls observe mode adds to `plan`'s filter (those it does not deny outright).
pub fn observed_syscalls(plan: &SeccompPlan) -> Vec<&'static str> {
    not_denied(plan, OBSERVED_SYSCALLS)
}

/// The syscalls egress watching adds to `plan`'s filter (those it does not deny outright).
pub fn watched_egress_syscalls(plan: &SeccompPlan) -> Vec<&'static str> {
    not_denied(plan, WATCHED_EGRESS_SYSCALLS)
}

fn not_denied(plan: &SeccompPlan, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|n| !plan.denied.iter().any(|d| d.name == *n))
        .collect()
}

/// What a call did to a path or a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    Read,
    Write,
    Exec,
    Connect,
}

/// One observed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The caller, in the supervisor's PID namespace.
    pub pid: u32,
    pub kind: AccessKind,
    pub syscall: String,
    /// An absolute path as the caller sees it (lexically normalised), or for
    /// `connect` the destination: `ip:port`, `[ip6]:port` or `unix:PATH`.
    pub target: String,
    /// The program making the call (`/proc/PID/exe`), when readable.
    pub program: Option<String>,
    /// For an interpreter (python, node, a shell, ...), the script it runs: its first
    /// argument that is not an option, as given (`scripts/fetch.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

impl Access {
    /// ` by PROGRAM (SCRIPT)` for a record's text, or nothing when unknown.
    pub fn by(&self) -> String {
        match (&self.script, &self.program) {
            (Some(s), Some(p)) => format!(" by {p} ({s})"),
            (None, Some(p)) => format!(" by {p}"),
            _ => String::new(),
        }
    }
}

/// Interpreters whose first non-option argument names the program that really runs.
const INTERPRETERS: &[&str] = &[
    "python", "node", "nodejs", "bash", "sh", "dash", "zsh", "perl", "ruby", "deno", "bun", "php",
];

/// The program of `pid`, and for an interpreter the script it runs.
fn program_of(pid: u32) -> (Option<String>, Option<String>) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string());
    let base = exe
        .as_deref()
        .and_then(|e| e.rsplit('/').next())
        .unwrap_or("");
    let interpreted = INTERPRETERS.iter().any(|i| {
        base == *i
            || base
                .strip_prefix(i)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    });
    let script = if interpreted {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|raw| {
                raw.split(|b| *b == 0)
                    .skip(1)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .take_while(|a| a != "-c")
                    .find(|a| !a.is_empty() && !a.starts_with('-'))
            })
    } else {
        None
    };
    (exe, script)
}

const AT_FDCWD: i64 = -100;
const PATH_MAX: usize = 4096;

/// Serves the listener of a filter installed with [`super::SeccompOptions::observe`]:
/// refusals go to `on_refusal` (answered with the plan's errno), observed calls to
/// `on_access` (then allowed to continue). Returns when every filtered process is gone.
pub fn serve_observing(
    fd: OwnedFd,
    plan: &SeccompPlan,
    on_refusal: impl FnMut(SyscallRefusal),
    on_access: impl FnMut(Access),
) -> Result<u64, SeccompError> {
    serve(fd, plan, &observed_syscalls(plan), on_refusal, on_access)
}

/// Serves the listener of a filter installed with
/// [`super::SeccompOptions::watch_egress`]: as [`serve_observing`], for the
/// destinations of [`WATCHED_EGRESS_SYSCALLS`] only.
pub fn serve_watching_egress(
    fd: OwnedFd,
    plan: &SeccompPlan,
    on_refusal: impl FnMut(SyscallRefusal),
    on_access: impl FnMut(Access),
) -> Result<u64, SeccompError> {
    serve(
        fd,
        plan,
        &watched_egress_syscalls(plan),
        on_refusal,
        on_access,
    )
}

fn serve(
    fd: OwnedFd,
    plan: &SeccompPlan,
    observed: &[&str],
    mut on_refusal: impl FnMut(SyscallRefusal),
    mut on_access: impl FnMut(Access),
) -> Result<u64, SeccompError> {
    let mut programs: std::collections::HashMap<u32, (Option<String>, Option<String>)> =
        std::collections::HashMap::new();
    let mut served = 0u64;
    loop {
        let req = match next_request(&fd)? {
            Next::Request(req) => req,
            Next::Again => continue,
            Next::HungUp => return Ok(served),
        };
        served += 1;
        let name = syscall_name(&req);
        let refused = plan.refusal_for(&name, &req.data.args);
        if refused.is_some() || !observed.contains(&name.as_str()) {
            let refusal = refusal_of(&req, &name, refused);
            respond(&fd, &req, &name, refusal.errno)?;
            on_refusal(refusal);
            continue;
        }
        let program = programs
            .entry(req.pid)
            .or_insert_with(|| program_of(req.pid))
            .clone();
        if name.starts_with("execve") {
            // The next call of this pid comes from the new program.
            programs.remove(&req.pid);
        }
        let access = decode(&req, &name, program);
        // Read before the answer, while the caller is still blocked in the call; then
        // make sure the id (and so the pid) still belongs to that same blocked call.
        let valid = libseccomp::notify_id_valid(fd.as_raw_fd(), req.id).is_ok();
        let resp = ScmpNotifResp::new_continue(req.id, ScmpNotifRespFlags::empty());
        if resp.respond(fd.as_raw_fd()).is_err() {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOENT) {
                return Err(SeccompError::RespondNotification {
                    syscall: name,
                    pid: req.pid,
                    source: err,
                });
            }
        }
        if valid {
            on_access_all(access, &mut on_access);
        }
    }
}

fn on_access_all(access: Vec<Access>, on_access: &mut impl FnMut(Access)) {
    for a in access {
        on_access(a);
    }
}

/// The path(s) or destination a call names. Unreadable arguments give nothing (the
/// call still goes ahead: observing never refuses).
fn decode(
    req: &ScmpNotifReq,
    name: &str,
    (program, script): (Option<String>, Option<String>),
) -> Vec<Access> {
    let a = req.data.args;
    let pid = req.pid;
    let at = |dirfd: u64, ptr: u64| resolve_at(pid, dirfd as i64, ptr);
    let cwd = |ptr: u64| resolve_at(pid, AT_FDCWD, ptr);
    let open_kind = |flags: u64| {
        let acc = (flags as i32) & libc::O_ACCMODE;
        if acc != libc::O_RDONLY || (flags as i32) & (libc::O_CREAT | libc::O_TRUNC) != 0 {
            AccessKind::Write
        } else {
            AccessKind::Read
        }
    };
    let found: Vec<(AccessKind, Option<String>)> = match name {
        "open" => vec![(open_kind(a[1]), cwd(a[0]))],
        "openat" => vec![(open_kind(a[2]), at(a[0], a[1]))],
        "creat" | "truncate" | "mkdir" | "rmdir" | "unlink" => {
            vec![(AccessKind::Write, cwd(a[0]))]
        }
        "mkdirat" | "unlinkat" => vec![(AccessKind::Write, at(a[0], a[1]))],
        "rename" | "link" => vec![
            (AccessKind::Write, cwd(a[0])),
            (AccessKind::Write, cwd(a[1])),
        ],
        "renameat" | "renameat2" | "linkat" => vec![
            (AccessKind::Write, at(a[0], a[1])),
            (AccessKind::Write, at(a[2], a[3])),
        ],
        "symlink" => vec![(AccessKind::Write, cwd(a[1]))],
        "symlinkat" => vec![(AccessKind::Write, at(a[1], a[2]))],
        "execve" => vec![(AccessKind::Exec, cwd(a[0]))],
        "execveat" => vec![(AccessKind::Exec, at(a[0], a[1]))],
        "connect" => vec![(AccessKind::Connect, sockaddr(pid, a[1], a[2]))],
        "sendto" if a[4] != 0 => vec![(AccessKind::Connect, sockaddr(pid, a[4], a[5]))],
        _ => Vec::new(),
    };
    found
        .into_iter()
        .filter_map(|(kind, target)| {
            Some(Access {
                pid,
                kind,
                syscall: name.to_string(),
                target: target?,
                program: program.clone(),
                script: script.clone(),
            })
        })
        .collect()
}

/// Bytes of the caller's memory at `addr` (at most `len`), or fewer where the mapping
/// ends.
fn read_mem(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    use std::io::IoSliceMut;
    let mut out = Vec::with_capacity(len.min(PATH_MAX));
    let mut at = addr as usize;
    while out.len() < len {
        // Page by page: a read that crosses into an unmapped page fails as a whole.
        let page_left = 4096 - (at % 4096);
        let want = page_left.min(len - out.len());
        let mut buf = vec![0u8; want];
        let remote = [RemoteIoVec {
            base: at,
            len: want,
        }];
        let mut local = [IoSliceMut::new(&mut buf)];
        match process_vm_readv(nix::unistd::Pid::from_raw(pid as i32), &mut local, &remote) {
            Ok(n) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                if n < want {
                    break;
                }
                at += n;
            }
            _ => break,
        }
    }
    out
}

/// A NUL-terminated string of the caller's.
fn read_cstr(pid: u32, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    let mut at = addr;
    while bytes.len() < PATH_MAX {
        let chunk_len = (4096 - (at % 4096) as usize).min(PATH_MAX - bytes.len());
        let chunk = read_mem(pid, at, chunk_len);
        if chunk.is_empty() {
            return None;
        }
        if let Some(end) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&chunk[..end]);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk);
        at += chunk.len() as u64;
    }
    None
}

/// The absolute path a `*at` call names, as the caller sees it.
fn resolve_at(pid: u32, dirfd: i64, ptr: u64) -> Option<String> {
    let path = read_cstr(pid, ptr)?;
    if path.starts_with('/') {
        return Some(normalize(&path));
    }
    let base = if (dirfd as i32) == AT_FDCWD as i32 {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
    } else {
        std::fs::read_link(format!("/proc/{pid}/fd/{}", dirfd as i32)).ok()?
    };
    let base = base.to_str()?.to_string();
    if !base.starts_with('/') {
        return None;
    }
    Some(normalize(&format!("{base}/{path}")))
}

fn normalize(p: &str) -> String {
    skillsandbox_manifest::normalize_path(std::path::Path::new(p))
        .display()
        .to_string()
}

/// `ip:port` (or `unix:PATH`) of the `sockaddr` the caller passed to `connect`.
fn sockaddr(pid: u32, addr: u64, len: u64) -> Option<String> {
    let len = (len as usize).min(128);
    let b = read_mem(pid, addr, len);
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as i32;
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(format!("{ip}:{port}"))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(o)))
        }
        libc::AF_UNIX => {
            let path: Vec<u8> = b[2..].iter().copied().take_while(|c| *c != 0).collect();
            if path.is_empty() {
                // Abstract socket: the name follows a NUL.
                let name: String = String::from_utf8_lossy(&b[3.min(b.len())..]).into_owned();
                Some(format!("unix:@{}", name.trim_end_matches('\0')))
            } else {
                Some(format!("unix:{}", String::from_utf8_lossy(&path)))
            }
        }
        _ => None,
    }
}
