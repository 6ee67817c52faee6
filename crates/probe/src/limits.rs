//! Probe items of the limits group, run under the small limits `check` substitutes.
//! Each pushes one resource past its limit and reports where it stopped; the memory
//! and wall-clock runs are expected to be ended by the runtime, which the check reads
//! from the run's termination.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use super::params::ProbeParams;
use super::sys::{self, ChildEnd};
use super::{errno_name, fail, io_name, pass, verdict};

const MIB: u64 = 1024 * 1024;

pub fn run_limits(p: &ProbeParams) {
    pids(p);
    open_files(p);
    file_size(p);
    tmp_size(p);
}

fn pids(p: &ProbeParams) {
    let id = "limits.pids";
    let limit = p.limits.pids;
    let ceiling = limit.saturating_mul(4).max(8);
    let mut children = Vec::new();
    let mut stop = None;
    while (children.len() as u64) < ceiling {
        match sys::fork() {
            Ok(0) => sys::pause_forever(),
            Ok(pid) => children.push(pid),
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
    }
    let made = children.len();
    for pid in children {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait(pid);
    }
    match stop {
        Some(libc::EAGAIN) if (made as u64) < limit => pass(
            id,
            format!("fork → EAGAIN after {made} children (limit {limit} processes in the cgroup)"),
        ),
        Some(e) if (made as u64) < limit => pass(
            id,
            format!(
                "fork → {} after {made} children (limit {limit})",
                errno_name(e)
            ),
        ),
        Some(e) => fail(
            id,
            format!(
                "{made} children forked before {} (limit {limit})",
                errno_name(e)
            ),
        ),
        None => fail(
            id,
            format!("{made} children forked with a limit of {limit}"),
        ),
    }
}

fn open_files(p: &ProbeParams) {
    let id = "limits.open_files";
    let limit = p.limits.open_files;
    let soft = sys::rlimit_soft(libc::RLIMIT_NOFILE).unwrap_or(u64::MAX);
    let mut files = Vec::new();
    let err = loop {
        match fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => break Some(e),
        }
        if files.len() as u64 > limit.saturating_mul(4) {
            break None;
        }
    };
    let opened = files.len();
    drop(files);
    match err {
        Some(e) if e.raw_os_error() == Some(libc::EMFILE) && soft <= limit => pass(
            id,
            format!("EMFILE after {opened} opens (RLIMIT_NOFILE {soft}, 3 fds already open)"),
        ),
        Some(e) => verdict(
            id,
            soft <= limit && (opened as u64) < limit,
            format!(
                "stopped after {opened} opens with {} (RLIMIT_NOFILE {soft}, expected {limit})",
                io_name(&e)
            ),
        ),
        None => fail(id, format!("{opened} files open with a limit of {limit}")),
    }
}

/// Write `chunk`-sized blocks to `path` until an error or `max` bytes.
fn fill(path: &str, chunk: usize, max: u64) -> (u64, Option<std::io::Error>) {
    let buf = vec![0x5au8; chunk];
    let mut f = match fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return (0, Some(e)),
    };
    let mut written = 0u64;
    while written < max {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

fn file_size(p: &ProbeParams) {
    let id = "limits.file_size";
    let limit = p.limits.file_size_mb * MIB;
    if let Err(e) = sys::ignore_sigxfsz() {
        return fail(id, format!("cannot ignore SIGXFSZ: {}", errno_name(e)));
    }
    // $TMPDIR: the process tier's is the run's scratch directory, not /tmp.
    let dir = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
    let path = std::path::Path::new(&dir).join(".skillsandbox-check-fsize");
    let path = path.to_string_lossy().into_owned();
    let path = path.as_str();
    let (written, err) = fill(path, 64 * 1024, limit * 2);
    let _ = fs::remove_file(path);
    match err {
        Some(e) if e.raw_os_error() == Some(libc::EFBIG) && written <= limit => pass(
            id,
            format!(
                "EFBIG at {written} bytes (RLIMIT_FSIZE {} MiB)",
                p.limits.file_size_mb
            ),
        ),
        Some(e) => fail(
            id,
            format!("stopped at {written} bytes with {}", io_name(&e)),
        ),
        None => fail(id, format!("wrote {written} bytes with a limit of {limit}")),
    }
}

fn tmp_size(p: &ProbeParams) {
    let id = "limits.tmp_size";
    let limit = p.limits.tmp_mb * MIB;
    // Files smaller than RLIMIT_FSIZE, so only the tmpfs size can stop us.
    let per_file = (p.limits.file_size_mb * MIB / 2).max(64 * 1024);
    let mut total = 0u64;
    let mut n = 0;
    let outcome = loop {
        let path = format!("/tmp/.skillsandbox-check-fill{n}");
        n += 1;
        let (w, err) = fill(&path, 64 * 1024, per_file);
        total += w;
        if let Some(e) = err {
            break Some(e);
        }
        if total > limit * 3 {
            break None;
        }
    };
    for i in 0..n {
        let _ = fs::remove_file(format!("/tmp/.skillsandbox-check-fill{i}"));
    }
    match outcome {
        Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && total <= limit => pass(
            id,
            format!(
                "ENOSPC after {total} bytes in /tmp (size {} MiB)",
                p.limits.tmp_mb
            ),
        ),
        Some(e) => fail(
            id,
            format!("stopped after {total} bytes with {}", io_name(&e)),
        ),
        None => fail(
            id,
            format!("{total} bytes written to a {} MiB /tmp", p.limits.tmp_mb),
        ),
    }
}

/// The memory run: allocate and touch memory in steps up to four times the limit.
/// The cgroup's OOM killer should end the run first.
pub fn run_memory(p: &ProbeParams) {
    let id = "limits.memory";
    let limit = p.limits.memory_mb;
    let step = 8 * MIB as usize;
    let mut held: Vec<Vec<u8>> = Vec::new();
    while (held.len() * step) as u64 / MIB < limit * 4 {
        // vec![1; n] writes every byte: the pages are really in use.
        held.push(vec![1u8; step]);
    }
    let total = held.iter().map(Vec::len).sum::<usize>() as u64 / MIB;
    fail(
        id,
        format!("allocated {total} MiB with a memory limit of {limit} MiB"),
    );
}

/// The wall-clock run: leave a detached daemon behind (double fork + setsid), then
/// outlive the deadline. The runtime must kill the run, daemon included.
pub fn run_wall_clock(p: &ProbeParams) {
    let daemon = sys::in_child(|| {
        let _ = sys::setsid();
        match sys::fork() {
            Ok(0) => sys::pause_forever(),
            Ok(_) => 0,
            Err(e) => e,
        }
    });
    match daemon {
        Ok(ChildEnd::Exited(0)) => pass(
            "limits.no_survivors",
            format!(
                "a detached daemon was started (marker {})",
                p.survivor_marker
            ),
        ),
        other => fail(
            "limits.no_survivors",
            format!("could not start the daemon: {other:?}"),
        ),
    }
    let started = Instant::now();
    let outlive = Duration::from_secs(p.limits.wall_clock_s.saturating_mul(6).max(10));
    while started.elapsed() < outlive {
        std::thread::sleep(Duration::from_millis(200));
    }
    fail(
        "limits.wall_clock",
        format!(
            "still running after {} s with a wall clock of {} s",
            outlive.as_secs(),
            p.limits.wall_clock_s
        ),
    );
}
