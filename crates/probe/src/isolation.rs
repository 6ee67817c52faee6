//! Probe items of the isolation group about files: host secrets, writes outside and
//! inside the declared paths, escapes through symlinks and /proc, Landlock.
//! Runs inside the sandbox; each item prints exactly one result.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::params::ProbeParams;
use super::{errno_name, fail, io_name, pass, sys};

pub fn run_all(p: &ProbeParams) {
    secrets_env(p);
    secrets_proc_environ(p);
    secrets_home_files(p);
    secrets_proc_root(p);
    fs_write_outside(p);
    fs_write_declared(p);
    fs_symlink_escape(p);
    landlock_scope();
}

/// The outcome of trying to read `path`: `Ok(bytes)` or the errno name.
fn try_read(path: &Path) -> Result<Vec<u8>, String> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        // A directory "exists and is reachable" as much as a file does.
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Ok(Vec::new()),
        Err(e) => Err(io_name(&e)),
    }
}

/// Tally of refusals: "3×ENOENT, 1×EACCES".
pub fn tally(errors: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in errors {
        match counts.iter_mut().find(|(k, _)| k == e) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n}×{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn secrets_env(p: &ProbeParams) {
    let id = "secrets.env";
    let vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    if let Some((k, _)) = vars
        .iter()
        .find(|(k, v)| *k == p.canary_env || v.contains(&p.canary_value))
    {
        return fail(id, format!("the undeclared host variable {k} is visible"));
    }
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    pass(
        id,
        format!(
            "host canary {} absent; {} variables set: {}",
            p.canary_env,
            names.len(),
            names.join(" ")
        ),
    );
}

pub fn proc_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

fn secrets_proc_environ(p: &ProbeParams) {
    let id = "secrets.proc_environ";
    let pids = proc_pids();
    let mut unreadable = 0;
    for pid in &pids {
        match fs::read(format!("/proc/{pid}/environ")) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if text.contains(&p.canary_env) || text.contains(&p.canary_value) {
                    return fail(
                        id,
                        format!(
                            "/proc/{pid}/environ carries the host canary {}",
                            p.canary_env
                        ),
                    );
                }
            }
            Err(_) => unreadable += 1,
        }
    }
    if let Ok(b) = fs::read(format!("/proc/{}/environ", p.host.pid)) {
        if String::from_utf8_lossy(&b).contains(&p.canary_env) {
            return fail(id, "the check process's environment is readable");
        }
    }
    pass(
        id,
        format!(
            "{} processes visible ({} environ unreadable); none carries {}",
            pids.len(),
            unreadable,
            p.canary_env
        ),
    );
}

/// Host paths that must stay unreachable: the planted canaries and the invoker's
/// real credential stores.
fn secret_paths(p: &ProbeParams) -> Vec<PathBuf> {
    let mut paths = p.canary_files.clone();
    if let Some(home) = &p.host.home {
        for rel in [
            ".ssh",
            ".aws",
            ".config/gcloud",
            ".docker/config.json",
            ".netrc",
            ".env",
        ] {
            paths.push(home.join(rel));
        }
    }
    paths
}

fn secrets_home_files(p: &ProbeParams) {
    let id = "secrets.home_files";
    let mut errors = Vec::new();
    for path in secret_paths(p) {
        match try_read(&path) {
            Ok(_) => return fail(id, format!("{} is readable inside", path.display())),
            Err(e) => errors.push(e),
        }
    }
    pass(
        id,
        format!(
            "{} host paths tried (planted canaries, ~/.ssh, ~/.aws, ...): {}",
            errors.len(),
            tally(&errors)
        ),
    );
}

fn secrets_proc_root(p: &ProbeParams) {
    let id = "secrets.proc_root";
    let mut errors = Vec::new();
    let roots = [
        "/proc/1/root".to_string(),
        "/proc/self/root".to_string(),
        format!("/proc/{}/root", p.host.pid),
        "/proc/self/cwd/../../../..".to_string(),
    ];
    for root in &roots {
        for f in &p.canary_files {
            let rel = f.strip_prefix("/").unwrap_or(f);
            let path = Path::new(root).join(rel);
            match try_read(&path) {
                Ok(b) if String::from_utf8_lossy(&b).contains(&p.canary_value) => {
                    return fail(
                        id,
                        format!("read the host canary through {}", path.display()),
                    )
                }
                Ok(_) => return fail(id, format!("{} exists inside", path.display())),
                Err(e) => errors.push(e),
            }
        }
    }
    pass(
        id,
        format!(
            "{} paths via /proc/1/root, /proc/self/root, the host pid, cwd/..: {}",
            errors.len(),
            tally(&errors)
        ),
    );
}

fn try_create(dir: &Path) -> Result<(), String> {
    let path = dir.join(".skillsandbox-check-write");
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
    {
        Ok(_) => {
            let _ = fs::remove_file(&path);
            Ok(())
        }
        Err(e) => Err(io_name(&e)),
    }
}

fn fs_write_outside(p: &ProbeParams) {
    let id = "fs.write_outside";
    let mut targets: Vec<PathBuf> = [
        "/", "/usr", "/etc", "/var", "/run", "/dev", "/proc", "/bin", "/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if Path::new("/skill").is_dir() {
        targets.push("/skill".into());
    }
    targets.extend(p.read_only_paths.iter().cloned());
    targets.extend(
        p.canary_files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf)),
    );
    let mut errors = Vec::new();
    for t in &targets {
        match try_create(t) {
            Ok(()) => return fail(id, format!("created a file in {}", t.display())),
            Err(e) => errors.push(e),
        }
    }
    let shown: Vec<String> = targets
        .iter()
        .take(12)
        .map(|t| t.display().to_string())
        .collect();
    pass(
        id,
        format!(
            "{} places refused ({}): {}",
            targets.len(),
            tally(&errors),
            shown.join(" ")
        ),
    );
}

fn fs_write_declared(p: &ProbeParams) {
    let id = "fs.write_declared";
    let Some(dir) = &p.write_dir else {
        return fail(id, "the check declared no write directory");
    };
    let path = dir.join(&p.write_marker);
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .and_then(|mut f| f.write_all(p.write_marker.as_bytes()));
    match written.and_then(|()| fs::read_to_string(&path)) {
        Ok(back) if back == p.write_marker => {
            pass(id, format!("wrote and read back {}", path.display()))
        }
        Ok(_) => fail(
            id,
            format!("{} reads back different contents", path.display()),
        ),
        Err(e) => fail(
            id,
            format!("cannot write the declared {}: {e}", path.display()),
        ),
    }
}

fn fs_symlink_escape(p: &ProbeParams) {
    let id = "fs.symlink_escape";
    let mut attempts: Vec<PathBuf> = Vec::new();
    let names: Vec<&std::ffi::OsStr> = p
        .canary_files
        .iter()
        .filter_map(|f| f.file_name())
        .collect();
    // A symlink the host planted in the declared directory, pointing outside it.
    if let Some(link) = &p.escape_link {
        for n in &names {
            attempts.push(link.join(n));
        }
    }
    // Symlinks made inside, to host paths and through /proc.
    for (i, f) in p.canary_files.iter().enumerate() {
        let link = PathBuf::from(format!("/tmp/.skillsandbox-check-link{i}"));
        let _ = fs::remove_file(&link);
        if std::os::unix::fs::symlink(f, &link).is_ok() {
            attempts.push(link);
        }
        let rel = f.strip_prefix("/").unwrap_or(f);
        let via_proc = PathBuf::from(format!("/tmp/.skillsandbox-check-proc{i}"));
        let _ = fs::remove_file(&via_proc);
        if std::os::unix::fs::symlink(Path::new("/proc/1/root").join(rel), &via_proc).is_ok() {
            attempts.push(via_proc);
        }
        // `..` out of the declared directory.
        if let Some(dir) = &p.write_dir {
            let ups = "../".repeat(dir.components().count() + 2);
            attempts.push(dir.join(ups).join(rel));
        }
    }
    let mut errors = Vec::new();
    for a in &attempts {
        match try_read(a) {
            Ok(b) if String::from_utf8_lossy(&b).contains(&p.canary_value) => {
                return fail(id, format!("read the host canary through {}", a.display()))
            }
            Ok(_) => return fail(id, format!("{} resolves to something inside", a.display())),
            Err(e) => errors.push(e),
        }
    }
    if attempts.is_empty() {
        return fail(id, "no escape attempt could be set up");
    }
    pass(
        id,
        format!(
            "{} escape paths refused: {}",
            attempts.len(),
            tally(&errors)
        ),
    )
}

/// A Landlock domain is in force: the skill may not signal a process outside it.
/// The sandbox's PID 1 is one (it confines only the skill it forks) and has the
/// skill's uid, so only Landlock's signal scoping refuses `kill(1, 0)`. (The
/// filesystem is bounded by the mount view on this tier: the `fs.*` items.)
fn landlock_scope() {
    let id = "landlock.scope";
    match sys::syscall6(libc::SYS_kill, [1, 0, 0, 0, 0, 0]) {
        Ok(_) => fail(id, "kill(1, 0) allowed: no Landlock domain scopes signals"),
        Err(libc::EPERM) => pass(id, "signal to PID 1 (outside the domain): EPERM"),
        Err(e) => fail(id, format!("kill(1, 0): unexpected {}", errno_name(e))),
    }
}
