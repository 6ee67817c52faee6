//! The validation battery behind `skillsandbox check`.
//!
//! Two halves share this module:
//! - the **probe** (`skillsandbox __probe <run> <params-json>`): our own binary,
//!   started *inside* the sandbox a manifest gets, attacks it and prints one JSON
//!   result per line ([`catalog::ItemResult`]). It runs single-threaded, forks only
//!   for attacks that could change its own state, and never trusts what it cannot
//!   observe: a test that gets no answer reports it, it does not guess.
//! - the **check side** ([`runner`], [`bwrap`], [`host`]): plants canaries on the
//!   host, launches one probe run per [`catalog::Run`] through the real runtime,
//!   verifies from outside what only the host can see, and returns the checklist.
//!
//! All raw syscalls (and this crate's only `unsafe`) live in [`sys`].

pub mod bwrap;
pub mod catalog;
mod cve;
mod egress;
pub mod host;
mod isolation;
mod limits;
mod namespaces;
pub mod params;
pub mod race;
mod requests;
pub mod runner;
mod seccomp;
mod sys;
pub mod upstream;
pub mod workspace;

use std::io::Write;
use std::path::Path;

use catalog::{ItemResult, Run, Status};
use params::ProbeParams;

/// Leave close-on-exec off on `fd` (the check's deliberately leaky canary).
pub fn leak_fd_into_children(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    sys::clear_cloexec(fd).map_err(std::io::Error::from_raw_os_error)
}

/// Print one result line. Each line is flushed at once: later items may kill us.
pub fn emit(id: &str, status: Status, detail: impl Into<String>) {
    let r = ItemResult {
        id: id.to_string(),
        status,
        // One line per item, always.
        detail: detail.into().replace('\n', " "),
    };
    if let Ok(line) = serde_json::to_string(&r) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

pub fn pass(id: &str, detail: impl Into<String>) {
    emit(id, Status::Pass, detail);
}

pub fn fail(id: &str, detail: impl Into<String>) {
    emit(id, Status::Fail, detail);
}

/// `PASS` when `ok`, else `FAIL`, with the same detail.
pub fn verdict(id: &str, ok: bool, detail: impl Into<String>) {
    emit(id, if ok { Status::Pass } else { Status::Fail }, detail);
}

/// The errno's symbolic name (`EPERM`), or its number.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::EAGAIN => "EAGAIN",
        libc::EMFILE => "EMFILE",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTDIR => "ENOTDIR",
        libc::EXDEV => "EXDEV",
        libc::EBADF => "EBADF",
        libc::ENOTTY => "ENOTTY",
        libc::EIO => "EIO",
        libc::ENODEV => "ENODEV",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// The errno name of an I/O error (or its text when it has no errno).
pub fn io_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// Read a small text file; `None` when it cannot be read.
pub fn read_text(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// A field of `/proc/self/status` (`"NoNewPrivs"` → `"1"`).
pub fn status_field(name: &str) -> Option<String> {
    let text = read_text("/proc/self/status")?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// Entry point of the hidden `__probe` subcommand, inside the sandbox. Returns the
/// exit code; the results went to stdout.
pub fn probe_main(run: &str, params_json: &str) -> u8 {
    let Some(run) = Run::parse(run) else {
        eprintln!("skillsandbox __probe: unknown run {run:?}");
        return 2;
    };
    let params: ProbeParams = match serde_json::from_str(params_json) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skillsandbox __probe: bad parameters: {e}");
            return 2;
        }
    };
    match run {
        Run::Main => {
            isolation::run_all(&params);
            namespaces::run_all(&params);
            seccomp::run_all(&params);
            cve::run_all(&params);
            egress::run_all(&params);
        }
        Run::Limits => limits::run_limits(&params),
        Run::Memory => limits::run_memory(&params),
        Run::X32 => seccomp::run_x32(),
        Run::I386 => seccomp::run_i386(),
        Run::WallClock => limits::run_wall_clock(&params),
        Run::Requests => requests::run_all(&params),
        Run::Race => race::run_probe(&params),
    }
    0
}
pub fn kill_survivor(pid: i32) {
    let _ = sys::kill(pid, libc::SIGKILL);
}
