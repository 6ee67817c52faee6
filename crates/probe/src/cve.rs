//! The escape regression pack: each item re-creates the technique of a public
//! container escape (named by its CVE or report), not the vulnerable binary, and
//! passes only when the technique gets nowhere in this sandbox. Nothing here writes
//! to anything it manages to open: an open that succeeds is the failure.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::params::ProbeParams;
use super::{errno_name, io_name, sys, verdict};

pub fn run_all(p: &ProbeParams) {
    host_abstract_unix(p);
    proc_exe_overwrite(p);
    leaked_cwd(p);
    release_agent();
    shocker();
    kexec_and_modules();
}

/// `Ok` when an open for writing is refused; `Err` names the path when it opened
/// (closed again at once, nothing written, never truncated).
fn open_for_write(path: &Path) -> Result<(), String> {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => Err(format!("{} opened for writing", path.display())),
        Err(_) => Ok(()),
    }
}

/// CVE-2020-15257 (containerd-shim): the shim's API listened on an abstract unix
/// socket, which a container sharing the host's network namespace could reach and
/// use to start a privileged container. Abstract names belong to a network
/// namespace: connect to one the check holds on the host.
fn host_abstract_unix(p: &ProbeParams) {
    use std::os::linux::net::SocketAddrExt;
    let id = "cve.2020_15257";
    let Some(name) = &p.host_abstract_unix else {
        return verdict(id, false, "the check gave no abstract socket to try");
    };
    let r = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
    match r {
        Ok(_) => verdict(id, false, format!("connected to the host's @{name}")),
        Err(e) => verdict(id, true, format!("connect(@{name}) → {}", io_name(&e))),
    }
}

/// CVE-2019-5736 (runc): the container opens the runtime's own binary through
/// `/proc/<pid>/exe` and overwrites it. Here PID 1 of the sandbox is our stage, i.e.
/// the host's `skillsandbox` binary; the probe itself is `/proc/self/exe`. Tries a
/// direct open for writing and the re-open of an `O_PATH` descriptor through
/// `/proc/self/fd`.
fn proc_exe_overwrite(p: &ProbeParams) {
    let id = "cve.2019_5736";
    let mut tried = Vec::new();
    let mut opened = Vec::new();
    let mut targets = vec!["/proc/1/exe".to_string(), "/proc/self/exe".to_string()];
    // On the process tier the supervisor (the check process itself) is visible: the
    // runtime's binary, as in runc's case. Elsewhere its pid does not exist inside.
    if p.process_tier {
        targets.push(format!("/proc/{}/exe", p.host.pid));
    }
    for target in &targets {
        let target = target.as_str();
        let p = Path::new(target);
        match open_for_write(p) {
            Ok(()) => tried.push(format!("{target}: refused")),
            Err(e) => opened.push(e),
        }
        // O_PATH needs no permission on the file; re-opening it for writing does.
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(p)
        {
            Ok(f) => {
                let via = PathBuf::from(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&f)
                ));
                match open_for_write(&via) {
                    Ok(()) => tried.push(format!("{target} via O_PATH fd: refused")),
                    Err(e) => opened.push(format!("{e} (O_PATH re-open of {target})")),
                }
            }
            Err(e) => tried.push(format!("{target} O_PATH: {}", io_name(&e))),
        }
    }
    verdict(
        id,
        opened.is_empty(),
        if opened.is_empty() {
            tried.join("; ")
        } else {
            opened.join("; ")
        },
    );
}

/// CVE-2024-21626 (runc): a working directory left on a host directory (a leaked
/// fd's path) lets `..` climb to the host's root. Climbs from the working directory
/// far past any depth and compares where it lands with the sandbox's `/`.
fn leaked_cwd(p: &ProbeParams) {
    let id = "cve.2024_21626";
    let mut up = PathBuf::from(".");
    for _ in 0..64 {
        up.push("..");
    }
    if p.process_tier {
        // One root for host and skill here: climbing reaches the host root by design,
        // and Landlock must keep what is there out of reach.
        return match std::fs::read_dir(&up) {
            Ok(_) => verdict(
                id,
                false,
                "64 × .. from the working directory lists the host root",
            ),
            Err(e) => verdict(
                id,
                true,
                format!(
                    "64 × .. from the working directory is the host root (process tier: one \
                     root); listing it: {}",
                    io_name(&e)
                ),
            ),
        };
    }
    match (std::fs::metadata("/"), std::fs::metadata(&up)) {
        (Ok(root), Ok(top)) => verdict(
            id,
            (root.dev(), root.ino()) == (top.dev(), top.ino()),
            format!(
                "64 × .. from the working directory ends at the sandbox root: {}",
                (root.dev(), root.ino()) == (top.dev(), top.ino())
            ),
        ),
        (r, t) => verdict(
            id,
            false,
            format!(
                "cannot compare: stat / {:?}, stat cwd/../.. {:?}",
                r.err().map(|e| io_name(&e)),
                t.err().map(|e| io_name(&e))
            ),
        ),
    }
}

/// CVE-2022-0492: mount a cgroup v1 hierarchy (possible with a user namespace on
/// kernels without the fix) and write its `release_agent`, which the host kernel
/// runs as root. Tries the mount, and looks for any `release_agent` it could open
/// for writing where cgroups are visible.
fn release_agent() {
    let id = "cve.2022_0492";
    let dir = std::env::temp_dir().join("cve-2022-0492");
    let _ = std::fs::create_dir_all(&dir);
    let mounted = sys::mount_fs("cgroup", &dir, "cgroup", "none,name=ssbprobe");
    let mut writable = Vec::new();
    let mut found = 0;
    for root in ["/sys/fs/cgroup", dir.to_str().unwrap_or("/nonexistent")] {
        for p in find_named(Path::new(root), "release_agent", 3) {
            found += 1;
            if open_for_write(&p).is_err() {
                writable.push(p.display().to_string());
            }
        }
    }
    if mounted.is_ok() {
        let _ = sys::umount(&dir);
    }
    let ok = mounted.is_err() && writable.is_empty();
    verdict(
        id,
        ok,
        format!(
            "mount(cgroup v1) → {}; release_agent files seen {found}, writable: {}",
            match mounted {
                Ok(()) => "succeeded".to_string(),
                Err(e) => errno_name(e),
            },
            if writable.is_empty() {
                "none".to_string()
            } else {
                writable.join(", ")
            }
        ),
    );
}

fn find_named(dir: &Path, name: &str, depth: u32) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name() == name {
            out.push(p);
        } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(find_named(&p, name, depth - 1));
        }
    }
    out
}

/// The "shocker" escape (Docker 0.x, 2014): `open_by_handle_at` opens a host file by
/// a guessed inode handle, bypassing every path the mount view hides. The handle of
/// `/` comes from `name_to_handle_at`; both must be refused.
fn shocker() {
    let id = "cve.shocker";
    let name = sys::name_to_handle_root();
    let open = sys::open_by_handle_root();
    let refused = |r: &sys::Sys<i64>| matches!(r, Err(libc::EPERM | libc::ENOSYS | libc::EACCES));
    verdict(
        id,
        refused(&name) && refused(&open),
        format!(
            "name_to_handle_at(/) → {}; open_by_handle_at → {}",
            describe(&name),
            describe(&open)
        ),
    );
}

/// Loading kernel code: `kexec_load`, `kexec_file_load`, `init_module`,
/// `finit_module`, `delete_module`. Each must be refused before the kernel looks at
/// its arguments (EPERM), not fail on them.
fn kexec_and_modules() {
    let id = "cve.kernel_code";
    let calls: [(&str, libc::c_long, [u64; 6]); 5] = [
        ("kexec_load", libc::SYS_kexec_load, [0; 6]),
        (
            "kexec_file_load",
            libc::SYS_kexec_file_load,
            [u64::MAX, u64::MAX, 0, 0, 0, 0],
        ),
        ("init_module", libc::SYS_init_module, [0; 6]),
        (
            "finit_module",
            libc::SYS_finit_module,
            [u64::MAX, 0, 0, 0, 0, 0],
        ),
        ("delete_module", libc::SYS_delete_module, [0; 6]),
    ];
    let mut all = true;
    let mut parts = Vec::new();
    for (name, nr, args) in calls {
        let r = sys::syscall6(nr, args);
        all &= matches!(r, Err(libc::EPERM | libc::ENOSYS));
        parts.push(format!("{name} → {}", describe(&r)));
    }
    verdict(id, all, parts.join("; "));
}

fn describe(r: &sys::Sys<i64>) -> String {
    match r {
        Ok(v) => format!("succeeded ({v})"),
        Err(e) => errno_name(*e),
    }
}
