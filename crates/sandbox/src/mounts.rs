//! Child side, DESIGN.md §3 step 4: assemble the new root from the plan's mount ops,
//! `pivot_root` into it, detach the host root and make the root read-only.
//!
//! Runs in the sandbox's first process (PID 1 of the new PID namespace), which holds
//! every capability of the new user namespace and none on the host.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::plan::{MountOp, NEWROOT, OLDROOT};
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MountError + 'a {
    move |source| MountError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The host path `p` as seen while the host root sits at [`OLDROOT`].
fn host(p: &Path) -> PathBuf {
    Path::new(OLDROOT).join(p.strip_prefix("/").unwrap_or(p))
}

fn mkdir_p(p: &Path, mode: u32) -> Result<(), MountError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(io_err("mkdir", p))
}

fn ensure_mountpoint(target: &Path, is_dir: bool) -> Result<(), MountError> {
    if is_dir {
        return mkdir_p(target, 0o755);
    }
    if let Some(parent) = target.parent() {
        mkdir_p(parent, 0o755)?;
    }
    if target.symlink_metadata().is_err() {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(target)
            .map_err(io_err("create mountpoint", target))?;
    }
    Ok(())
}

/// Step 4a: private mounts, a scratch tmpfs as the temporary root, host root at /oldroot.
pub fn enter_scratch_root() -> Result<(), MountError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    // Any existing directory serves as the base; /tmp is always there. The tmpfs only
    // lives in our mount namespace.
    let base = Path::new("/tmp");
    sys::mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("size=1m,mode=0755"),
    )?;
    std::env::set_current_dir(base).map_err(io_err("chdir", base))?;
    mkdir_p(Path::new("newroot"), 0o755)?;
    mkdir_p(Path::new("oldroot"), 0o755)?;
    sys::pivot_root(Path::new("."), Path::new("oldroot"))?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;
    Ok(())
}

/// Step 4b: execute the mount ops in order. `idmapped` holds the trees the supervisor
/// prepared for the `idmap` binds, in plan order.
pub fn apply_ops(ops: &[MountOp], idmapped: Vec<OwnedFd>) -> Result<(), MountError> {
    let mut idmapped = idmapped.into_iter();
    for op in ops {
        match op {
            MountOp::Bind {
                idmap: true,
                target,
                source,
                ..
            } => {
                let tree = idmapped.next().ok_or_else(|| MountError::Io {
                    op: "idmapped tree",
                    path: source.clone(),
                    source: std::io::Error::other("the supervisor sent fewer trees than planned"),
                })?;
                // From the tree itself: the stage may not be able to stat the host path.
                let is_dir = match nix::sys::stat::fstat(&tree) {
                    Ok(st) => st.st_mode & libc::S_IFMT == libc::S_IFDIR,
                    Err(_) => fs::metadata(host(source)).map_or(true, |m| m.is_dir()),
                };
                ensure_mountpoint(target, is_dir)?;
                sys::move_mount_to(tree.as_fd(), target)?;
            }
            MountOp::ImageRoot { source } => {
                let tree = idmapped.next().ok_or_else(|| MountError::Io {
                    op: "image root tree",
                    path: source.clone(),
                    source: std::io::Error::other("the supervisor sent fewer trees than planned"),
                })?;
                sys::move_mount_to(tree.as_fd(), Path::new(NEWROOT))?;
                // The clone keeps the host mount's peer group (shared, under a container
                // engine): pivot_root refuses a shared new root, and nothing may propagate.
                sys::mount(
                    None,
                    Path::new(NEWROOT),
                    None,
                    libc::MS_REC | libc::MS_PRIVATE,
                    None,
                )?;
            }
            _ => apply_op(op)?,
        }
    }
    Ok(())
}

fn tmpfs(
    target: &Path,
    size_mb: u64,
    mode: u32,
    readonly: bool,
    noexec: bool,
) -> Result<(), MountError> {
    mkdir_p(target, 0o755)?;
    let data = format!("size={}m,mode={:o}", size_mb.max(1), mode);
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if noexec {
        flags |= libc::MS_NOEXEC;
    }
    sys::mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(&data))?;
    if readonly {
        sys::mount_setattr_path(target, false, sys::MOUNT_ATTR_RDONLY)?;
    }
    Ok(())
}

fn apply_op(op: &MountOp) -> Result<(), MountError> {
    match op {
        // Attached by `apply_ops` from the supervisor's tree.
        MountOp::ImageRoot { source } => Err(MountError::Io {
            op: "image root",
            path: source.clone(),
            source: std::io::Error::other("needs the supervisor's tree"),
        }),
        MountOp::Tmpfs {
            target,
            size_mb,
            mode,
            readonly,
            noexec,
        } => tmpfs(target, *size_mb, *mode, *readonly, *noexec),
        MountOp::Bind {
            source,
            target,
            writable,
            device,
            ..
        } => {
            let src = host(source);
            let fd = sys::open_path_no_symlinks(&src)?;
            let is_dir = fs::metadata(&src).map_err(io_err("stat", &src))?.is_dir();
            let tree = sys::open_tree_clone(fd.as_fd(), true, source)?;
            let mut set = sys::MOUNT_ATTR_NOSUID;
            if !device {
                set |= sys::MOUNT_ATTR_NODEV;
            } else {
                set |= sys::MOUNT_ATTR_NOEXEC;
            }
            if !writable {
                set |= sys::MOUNT_ATTR_RDONLY;
            }
            sys::mount_setattr_fd(tree.as_fd(), true, set, 0, None, source)?;
            ensure_mountpoint(target, is_dir)?;
            sys::move_mount_to(tree.as_fd(), target)?;
            Ok(())
        }
        MountOp::File {
            target,
            contents,
            mode,
        } => {
            if let Some(parent) = target.parent() {
                mkdir_p(parent, 0o755)?;
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(*mode)
                .open(target)
                .map_err(io_err("create", target))?;
            f.write_all(contents.as_bytes())
                .map_err(io_err("write", target))?;
            Ok(())
        }
        MountOp::Symlink { target, link_to } => {
            if let Some(parent) = target.parent() {
                mkdir_p(parent, 0o755)?;
            }
            std::os::unix::fs::symlink(link_to, target).map_err(io_err("symlink", target))
        }
        MountOp::Dir { target, mode } => {
            mkdir_p(target, *mode)?;
            fs::set_permissions(target, fs::Permissions::from_mode(*mode))
                .map_err(io_err("chmod", target))
        }
        MountOp::Proc { target } => {
            mkdir_p(target, 0o555)?;
            sys::mount(
                Some("proc"),
                target,
                Some("proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )?;
            Ok(())
        }
        MountOp::Devpts { target } => {
            mkdir_p(target, 0o755)?;
            sys::mount(
                Some("devpts"),
                target,
                Some("devpts"),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )?;
            if let Some(dev) = target.parent() {
                let ptmx = dev.join("ptmx");
                std::os::unix::fs::symlink("pts/ptmx", &ptmx).map_err(io_err("symlink", &ptmx))?;
            }
            Ok(())
        }
        MountOp::ReadonlyBindSelf { target } => {
            if target.symlink_metadata().is_err() {
                return Ok(());
            }
            let t = target.to_string_lossy().into_owned();
            sys::mount(Some(&t), target, None, libc::MS_BIND | libc::MS_REC, None)?;
            sys::mount_setattr_path(
                target,
                true,
                sys::MOUNT_ATTR_RDONLY
                    | sys::MOUNT_ATTR_NOSUID
                    | sys::MOUNT_ATTR_NODEV
                    | sys::MOUNT_ATTR_NOEXEC,
            )?;
            Ok(())
        }
        MountOp::MaskFile { target } => {
            if target.symlink_metadata().is_err() {
                return Ok(());
            }
            let null = Path::new(NEWROOT).join("dev/null");
            let n = null.to_string_lossy().into_owned();
            sys::mount(Some(&n), target, None, libc::MS_BIND, None)?;
            sys::mount_setattr_path(target, false, sys::MOUNT_ATTR_RDONLY)?;
            Ok(())
        }
        MountOp::Seal { target } => {
            sys::mount_setattr_path(target, false, sys::MOUNT_ATTR_RDONLY)?;
            Ok(())
        }
        MountOp::MaskDir { target } => {
            let Ok(meta) = target.symlink_metadata() else {
                return Ok(());
            };
            if meta.is_dir() {
                sys::mount(
                    Some("tmpfs"),
                    target,
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some("size=4k,mode=0000"),
                )?;
                sys::mount_setattr_path(target, false, sys::MOUNT_ATTR_RDONLY)?;
            } else {
                let null = Path::new(NEWROOT).join("dev/null");
                let n = null.to_string_lossy().into_owned();
                sys::mount(Some(&n), target, None, libc::MS_BIND, None)?;
                sys::mount_setattr_path(target, false, sys::MOUNT_ATTR_RDONLY)?;
            }
            Ok(())
        }
    }
}

/// Step 4c: drop the host root, pivot into the new root, make it read-only.
pub fn enter_new_root() -> Result<(), MountError> {
    sys::umount2(Path::new(OLDROOT), libc::MNT_DETACH)?;
    let newroot = Path::new(NEWROOT);
    std::env::set_current_dir(newroot).map_err(io_err("chdir", newroot))?;
    sys::pivot_root(Path::new("."), Path::new("."))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH)?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;
    sys::mount_setattr_path(
        Path::new("/"),
        false,
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
    )?;
    Ok(())
}
