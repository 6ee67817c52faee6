//! Landlock rules against the real kernel, in forked children.

use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use landlock::ABI;
use skillsandbox_sandbox::landlock::{
    apply_landlock_on_current_thread, landlock_abi, LandlockEnforcement, LandlockRules,
};

use crate::child::{feature, in_child};

fn abi_at_least(abi: ABI, what: &str) -> bool {
    feature(landlock_abi().0 >= abi, what)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "skillsandbox-layers-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn system_dirs() -> Vec<PathBuf> {
    ["/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect()
}

fn denied(what: &str, r: std::io::Result<impl Sized>) -> Result<(), String> {
    match r {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(format!("{what}: expected EACCES, got {e}")),
        Ok(_) => Err(format!("{what}: allowed, expected EACCES")),
    }
}

fn secret_host_file() -> &'static Path {
    if Path::new("/etc/hostname").exists() {
        Path::new("/etc/hostname")
    } else {
        Path::new("/etc/passwd")
    }
}

#[test]
fn filesystem_rules_confine_reads_and_writes() {
    if !abi_at_least(ABI::V5, "Landlock ABI 5 (truncate, device ioctl)") {
        return;
    }
    let tmp = TempDir::new("fs");
    let ro = tmp.0.join("ro");
    let rw = tmp.0.join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("data"), b"visible").unwrap();
    let missing = tmp.0.join("does-not-exist");
    let (ro_c, rw_c, missing_c) = (ro.clone(), rw.clone(), missing.clone());
    in_child(move || {
        // Control: all of this works before the ruleset.
        std::fs::read(secret_host_file()).map_err(|e| format!("control read: {e}"))?;
        let mut read_exec = system_dirs();
        read_exec.push(ro_c.clone());
        read_exec.push(missing_c.clone());
        let rules = LandlockRules {
            read_exec,
            read_write: vec![rw_c.clone()],
            no_symlinks: vec![],
            tcp_connect_ports: None,
            scope_signals_and_abstract_unix: false,
            filesystem_bounded_by_mounts: false,
        };
        let report = apply_landlock_on_current_thread(&rules, true).map_err(|e| e.to_string())?;
        if report.status != LandlockEnforcement::Fully || report.abi < 5 {
            return Err(format!("report: {report:?}"));
        }
        if !report.skipped_paths.contains(&missing_c)
            || report.skipped_paths.iter().any(|p| p.exists())
        {
            return Err(format!("skipped: {:?}", report.skipped_paths));
        }
        denied("read /etc file", std::fs::read(secret_host_file()))?;
        denied("list /etc", std::fs::read_dir("/etc"))?;
        std::fs::write(rw_c.join("out"), b"ok").map_err(|e| format!("write rw: {e}"))?;
        std::fs::create_dir(rw_c.join("sub")).map_err(|e| format!("mkdir rw: {e}"))?;
        std::fs::rename(rw_c.join("out"), rw_c.join("sub/out"))
            .map_err(|e| format!("rename rw: {e}"))?;
        std::fs::read(ro_c.join("data")).map_err(|e| format!("read ro: {e}"))?;
        denied("write ro", std::fs::write(ro_c.join("new"), b"x"))?;
        denied(
            "truncate ro",
            std::fs::OpenOptions::new()
                .write(true)
                .open(ro_c.join("data")),
        )?;
        denied("unlink ro", std::fs::remove_file(ro_c.join("data")))?;
        // Executing from a read_exec tree works.
        let st = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("exec /bin/true: {e}"))?;
        if !st.success() {
            return Err(format!("/bin/true: {st}"));
        }
        Ok(())
    })
    .assert_ok();
    assert_eq!(std::fs::read(rw.join("sub/out")).unwrap(), b"ok");
    assert_eq!(std::fs::read(ro.join("data")).unwrap(), b"visible");
}

/// A declared path swapped for a symlink after the supervisor's check: its rule is
/// opened with RESOLVE_NO_SYMLINKS, so the symlink (as the path, or as a parent) fails
/// the ruleset instead of granting the link's target; unlisted, a symlink is followed.
#[test]
fn no_symlinks_paths_refuse_a_symlink_instead_of_granting_its_target() {
    if !abi_at_least(ABI::V5, "Landlock ABI 5") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("secret"), b"canary").unwrap();
    let link = dir.path().join("declared");
    std::os::unix::fs::symlink(&canary, &link).unwrap();
    let parent_link = dir.path().join("parent");
    std::os::unix::fs::symlink(dir.path(), &parent_link).unwrap();
    let through_parent = parent_link.join("canary");
    for declared in [link.clone(), through_parent.clone()] {
        let d = declared.clone();
        in_child(move || {
            let rules = LandlockRules {
                read_exec: system_dirs().into_iter().chain([d.clone()]).collect(),
                no_symlinks: vec![d.clone()],
                ..LandlockRules::default()
            };
            match apply_landlock_on_current_thread(&rules, true) {
                Ok(r) => Err(format!(
                    "{} applied despite the symlink: {r:?}",
                    d.display()
                )),
                Err(e) if e.to_string().contains("RESOLVE_NO_SYMLINKS") => Ok(()),
                Err(e) => Err(format!("unexpected error: {e}")),
            }
        })
        .assert_ok();
    }
    // Control: not listed, the link is followed and its target granted.
    let l = link.clone();
    in_child(move || {
        let rules = LandlockRules {
            read_exec: system_dirs().into_iter().chain([l.clone()]).collect(),
            ..LandlockRules::default()
        };
        apply_landlock_on_current_thread(&rules, true).map_err(|e| e.to_string())?;
        std::fs::read(l.join("secret")).map_err(|e| format!("read through link: {e}"))?;
        Ok(())
    })
    .assert_ok();
}

#[test]
fn tcp_connect_is_limited_to_the_listed_ports() {
    if !abi_at_least(ABI::V4, "Landlock ABI 4 (TCP ports)") {
        return;
    }
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_addr = closed.local_addr().unwrap();
    let open_addr = open.local_addr().unwrap();
    in_child(move || {
        TcpStream::connect(closed_addr).map_err(|e| format!("control connect: {e}"))?;
        let rules = LandlockRules {
            read_exec: vec![],
            read_write: vec![],
            no_symlinks: vec![],
            tcp_connect_ports: Some(vec![open_port]),
            scope_signals_and_abstract_unix: false,
            filesystem_bounded_by_mounts: false,
        };
        let report = apply_landlock_on_current_thread(&rules, true).map_err(|e| e.to_string())?;
        if report.status != LandlockEnforcement::Fully {
            return Err(format!("report: {report:?}"));
        }
        denied("connect to unlisted port", TcpStream::connect(closed_addr))?;
        TcpStream::connect(open_addr).map_err(|e| format!("connect listed port: {e}"))?;
        Ok(())
    })
    .assert_ok();

    in_child(move || {
        let rules = LandlockRules {
            tcp_connect_ports: Some(vec![]),
            ..LandlockRules::default()
        };
        apply_landlock_on_current_thread(&rules, true).map_err(|e| e.to_string())?;
        denied("connect with no ports", TcpStream::connect(open_addr))
    })
    .assert_ok();
}

#[test]
fn scoping_refuses_outside_abstract_sockets_and_signals() {
    if !abi_at_least(ABI::V6, "Landlock ABI 6 (scopes)") {
        return;
    }
    let name = format!("skillsandbox-layers-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let parent = nix::unistd::getpid();
    in_child(move || {
        UnixStream::connect_addr(&addr).map_err(|e| format!("control connect: {e}"))?;
        nix::sys::signal::kill(parent, None).map_err(|e| format!("control kill: {e}"))?;
        let rules = LandlockRules {
            read_exec: system_dirs(),
            scope_signals_and_abstract_unix: true,
            ..LandlockRules::default()
        };
        let report = apply_landlock_on_current_thread(&rules, true).map_err(|e| e.to_string())?;
        if report.status != LandlockEnforcement::Fully {
            return Err(format!("report: {report:?}"));
        }
        match UnixStream::connect_addr(&addr) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return Err(format!("abstract connect after scoping: {other:?}")),
        }
        match nix::sys::signal::kill(parent, None) {
            Err(nix::errno::Errno::EPERM) => {}
            other => return Err(format!("signal to the parent after scoping: {other:?}")),
        }
        // Inside the domain, a socket of our own still works.
        let own = SocketAddr::from_abstract_name(b"skillsandbox-layers-own")
            .map_err(|e| e.to_string())?;
        let l = UnixListener::bind_addr(&own).map_err(|e| format!("bind own: {e}"))?;
        let mut c = UnixStream::connect_addr(&own).map_err(|e| format!("connect own: {e}"))?;
        c.write_all(b"x").map_err(|e| e.to_string())?;
        drop(l);
        Ok(())
    })
    .assert_ok();
    drop(listener);
}

#[test]
fn best_effort_reports_and_require_refuses_what_the_kernel_lacks() {
    let (abi, _) = landlock_abi();
    if abi == ABI::Unsupported {
        in_child(|| {
            let rules = LandlockRules::default();
            let r = apply_landlock_on_current_thread(&rules, false).map_err(|e| e.to_string())?;
            if r.status != LandlockEnforcement::NotEnforced || r.abi != 0 {
                return Err(format!("{r:?}"));
            }
            match apply_landlock_on_current_thread(&rules, true) {
                Err(_) => Ok(()),
                Ok(r) => Err(format!("required but got {r:?}")),
            }
        })
        .assert_ok();
        feature(false, "Landlock");
        return;
    }
    in_child(move || {
        let rules = LandlockRules {
            read_exec: system_dirs(),
            tcp_connect_ports: Some(vec![]),
            scope_signals_and_abstract_unix: true,
            ..LandlockRules::default()
        };
        let r = apply_landlock_on_current_thread(&rules, false).map_err(|e| e.to_string())?;
        let want = if abi >= ABI::V6 {
            LandlockEnforcement::Fully
        } else {
            LandlockEnforcement::Partially
        };
        if r.status != want || r.abi != abi as i32 || !r.detail.starts_with("ABI ") {
            return Err(format!("{r:?}"));
        }
        Ok(())
    })
    .assert_ok();
}
