//! Relaying an accepted client to its upstream, both ways, counting bytes as they
//! pass (the counters are read live, so a relay cut short by the end of the run
//! still reports what went through). In a run with secrets, what the client sends
//! is scanned for their placeholders: one found ends the relay before that chunk
//! goes upstream.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::record::Counters;
use crate::secrets::{placeholder_in, LiveSecret};

/// Buffer per direction: large enough that a bulk transfer is not syscall-bound.
const RELAY_BUFFER: usize = 64 * 1024;

/// The client side of a relay: what we read from it went out, what we write to it
/// came in.
struct Counted {
    inner: TcpStream,
    counters: Arc<Counters>,
    secrets: Arc<Vec<LiveSecret>>,
    /// The end of what was read last, so a placeholder split across reads is seen.
    tail: Vec<u8>,
    /// The secret whose placeholder the client sent.
    caught: Option<String>,
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
        if n > 0 && !self.secrets.is_empty() {
            let mut seen = std::mem::take(&mut self.tail);
            seen.extend_from_slice(&buf.filled()[before..]);
            if let Some(s) = placeholder_in(&self.secrets, &seen) {
                self.caught = Some(s.name.clone());
                return Poll::Ready(Err(io::Error::other("secret placeholder")));
            }
            let keep = seen.len().saturating_sub(TAIL);
            self.tail = seen.split_off(keep);
        }
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

/// Bytes kept between reads: a placeholder (`sksb` + 32 hex digits) less one.
const TAIL: usize = 35;

/// Relays until both directions are closed (half-close is passed on) or one fails.
/// Returns the name of the secret whose placeholder the client sent, if it did.
pub(crate) async fn relay(
    client: TcpStream,
    mut upstream: TcpStream,
    counters: Arc<Counters>,
    secrets: Arc<Vec<LiveSecret>>,
) -> Option<String> {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if secrets.is_empty() {
        // Nothing to look for in the bytes: let the kernel move them.
        // Err: no pipe (fd limit), nothing relayed yet: copy instead.
        if crate::splice::relay(&client, &upstream, &counters.bytes_out, &counters.bytes_in)
            .await
            .is_ok()
        {
            return None;
        }
    }
    let mut client = Counted {
        inner: client,
        counters,
        secrets,
        tail: Vec::new(),
        caught: None,
    };
    // An error here is a reset from either side: the relay is over either way.
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
    client.caught
}
