//! Small helpers over cgroupfs control files: write without creating, read optional
//! values, list `cgroup.procs`, remove a directory with a short retry on `EBUSY`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

/// Writes `value` to an existing control file in one `write(2)` (the kernel parses
/// each write separately). Never creates the file.
pub(crate) fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// The trimmed contents of a control file, or `None` when it is missing or unreadable.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// A control file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    read_opt(path)?.parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` per line: `memory.events`,
/// `pids.events`, `cpu.stat`, `memory.oom_control`).
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    parse_key(&read_opt(path)?, key)
}

pub(crate) fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// The pids listed in `<dir>/cgroup.procs`. A missing directory has none.
pub(crate) fn procs(dir: &Path) -> io::Result<Vec<i32>> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `rmdir`, retried for about a second while the kernel still reports `EBUSY` (tasks
/// that were just killed may take a moment to leave). A missing directory is success.
pub(crate) fn remove_dir(path: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn parse_key_finds_exact_keys_only() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_key(text, "oom_kill"), Some(3));
        assert_eq!(parse_key(text, "oom"), None);
        assert_eq!(parse_key("max 12", "max"), Some(12));
        assert_eq!(parse_key("max x", "max"), None);
        assert_eq!(
            parse_key("usage_usec 1500\nuser_usec 1", "usage_usec"),
            Some(1500)
        );
    }
}
