//! Splicing an accepted client to its upstream, both ways, counting bytes as they
//! pass (the counters are read live, so a relay cut short by the end of the run
//! still reports what went through).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::record::Counters;

/// Buffer per direction: large enough that a bulk transfer is not syscall-bound.
const RELAY_BUFFER: usize = 64 * 1024;

/// The client side of a relay: what we read from it went out, what we write to it
/// came in.
struct Counted {
    inner: TcpStream,
    counters: Arc<Counters>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.counters
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        res
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.counters
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relays until both directions are closed (half-close is passed on) or one fails.
pub(crate) async fn relay(client: TcpStream, mut upstream: TcpStream, counters: Arc<Counters>) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut client = Counted {
        inner: client,
        counters,
    };
    // An error here is a reset from either side: the relay is over either way.
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
}
