//! The relay without a copy through user space: each direction moves bytes socket →
//! pipe → socket with `splice(2)`, so the kernel hands page references along instead
//! of copying every byte twice through a buffer here. Used when nothing has to look
//! at the bytes (no secret in the run: see [`crate::relay`]).
//!
//! One pipe per direction, enlarged to [`PIPE_SIZE`] where the kernel allows it; no
//! allocation per chunk. Half-close is passed on (the reader's end of stream becomes
//! a `shutdown(SHUT_WR)` of the writer); a reset on either side ends both directions.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for: a bulk transfer moves up to this much per pair of calls.
/// Above `/proc/sys/fs/pipe-max-size` (1 MiB by default) the kernel refuses and the
/// default 64 KiB pipe is used.
const PIPE_SIZE: i32 = 1024 * 1024;

/// Relays both ways until both directions have ended; counts what went each way.
/// Returns an error only when no pipe could be made (nothing has been relayed then,
/// so the caller can fall back to copying).
pub(crate) async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    bytes_out: &AtomicU64,
    bytes_in: &AtomicU64,
) -> io::Result<()> {
    let out_pipe = Pipe::new()?;
    let in_pipe = Pipe::new()?;
    // A failed direction is a reset: the other one is dropped with it, and the
    // caller's close of both sockets tells each side.
    let _ = tokio::try_join!(
        one_way(client, upstream, &out_pipe, bytes_out),
        one_way(upstream, client, &in_pipe, bytes_in),
    );
    Ok(())
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Best effort: a smaller pipe only means more calls per megabyte.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Self { read, write })
    }
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Moves `from` → `to` through `pipe` until `from` ends, then half-closes `to`.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    counter: &AtomicU64,
) -> io::Result<()> {
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(
                    from.as_fd(),
                    None,
                    &pipe.write,
                    None,
                    PIPE_SIZE as usize,
                    FLAGS,
                )
                .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            // End of stream: pass the half-close on.
            shutdown_write(to);
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let m = to
                .async_io(Interest::WRITABLE, || {
                    splice(&pipe.read, None, to.as_fd(), None, left, FLAGS).map_err(io::Error::from)
                })
                .await?;
            if m == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            left -= m;
            counter.fetch_add(m as u64, Ordering::Relaxed);
        }
    }
}

fn shutdown_write(s: &TcpStream) {
    // Already closed or reset: the relay is ending anyway.
    let _ = shutdown(s.as_raw_fd(), Shutdown::Write);
}
