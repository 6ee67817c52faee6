//! A response body streamed from the upstream to the sandbox as it arrives, counted
//! against the host's `max_bytes_in`: crossing the cap ends the body with an error
//! (the sandbox's connection is cut) and records a `network_cap` violation. When the
//! body was read to its end, the upstream connection goes back to the idle pool; the
//! connection record (with the bytes moved) is written when the body is dropped.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::upstream::Sender;
use super::{BoxError, Conn};

pub(super) struct Metered {
    pub inner: Incoming,
    pub conn: Arc<Conn>,
    /// What the request was, for records: `HTTP GET /x to host`.
    pub what: String,
    pub status: u16,
    pub addr: IpAddr,
    /// Bytes the host's cap still allows, when it has one.
    pub left: Option<u64>,
    pub sender: Option<Sender>,
    /// Request-body bytes sent upstream; response-body bytes seen so far.
    pub sent: u64,
    pub seen: u64,
    pub cut: bool,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.seen += n;
                this.conn.usage(|u| u.bytes_in += n);
                if this.left.is_some_and(|l| this.seen > l) {
                    this.cut = true;
                    this.sender = None;
                    this.conn.cap_cut(
                        &this.what,
                        "the response passes max_bytes_in",
                        this.conn.rules.max_bytes_in,
                    );
                    return Poll::Ready(Some(Err("download cap reached".into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.sender = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let c = &self.conn;
        if let Some(s) = self.sender.take() {
            if !self.cut && self.inner.is_end_stream() {
                c.shared
                    .upstream_idle
                    .put(&c.name, c.port, c.tls, self.addr, s);
            }
        }
        let cut = if self.cut {
            "; cut at max_bytes_in"
        } else {
            ""
        };
        c.allowed(
            self.addr,
            format!("{}: {} (request checked){cut}", self.what, self.status),
            (self.sent, self.seen),
        );
    }
}
