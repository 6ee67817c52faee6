//! The `unsafe` of the seccomp module: exporting libseccomp's program and handing a
//! classic-BPF program to the kernel. (Kept here rather than in `crate::sys` so the
//! seccomp files stay self-contained.)

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libseccomp::ScmpFilterContext;

/// One classic-BPF instruction, as `struct sock_filter`.
const INSN: usize = 8;

/// Whole instructions, at least one, no more than a `sock_fprog` can count.
fn is_program(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().is_multiple_of(INSN) && bytes.len() / INSN <= u16::MAX as usize
}

/// The filter's program as the kernel takes it (libseccomp 2.5 exports only to an fd:
/// a memfd, read back).
pub(super) fn export_bpf(ctx: &ScmpFilterContext) -> std::io::Result<Vec<u8>> {
    let fd = nix::sys::memfd::memfd_create(c"seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    ctx.export_bpf(&fd).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut program = Vec::new();
    file.read_to_end(&mut program)?;
    if !is_program(&program) {
        return Err(std::io::Error::other(format!(
            "exported program of {} bytes is not a list of instructions",
            program.len()
        )));
    }
    Ok(program)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`: installs `program` on the calling
/// thread; with `listener`, asks for the user-notification fd (returned,
/// close-on-exec). `no_new_privs` must already be set.
pub(super) fn load_filter(program: &[u8], listener: bool) -> std::io::Result<Option<OwnedFd>> {
    if !is_program(program) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Copied into properly aligned instructions (the byte buffer may not be).
    let insns: Vec<libc::sock_filter> = program
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr().cast_mut(),
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the
    // program and reads nothing else of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if !listener {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER the kernel returned a fresh fd (close-on-exec) that
    // nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
}
