//! Serving DNS on the sandbox's port-53 sockets: UDP (answered from the address the
//! client asked, via packet info) and TCP (2-byte length framing, several queries
//! per connection). A TCP connection on port 53 to an address a `cidr` rule allows
//! on port 53 is relayed instead (a declared resolver); UDP is always answered here.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::dns::answer;
use crate::tcp::{literal, original_destination, reset};
use crate::{pktinfo, Shared};

/// Largest UDP query read; longer ones are truncated and answered FORMERR.
const UDP_BUFFER: usize = 4096;
/// An idle DNS-over-TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Consecutive receive errors after which a UDP socket is given up (it is broken).
const MAX_UDP_ERRORS: u32 = 1000;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut errors = 0u32;
    loop {
        let received = sock
            .async_io(Interest::READABLE, || {
                pktinfo::recv_with_dst(&sock, &mut buf)
            })
            .await;
        match received {
            Ok((len, src, dst)) => {
                errors = 0;
                if let Some(reply) = answer(&buf[..len], &shared.dns_context()) {
                    // UDP is lossy anyway: a reply that cannot be sent is retried by
                    // the client.
                    let _ = pktinfo::send_from(&sock, &reply, src, dst);
                }
            }
            Err(_) => {
                errors += 1;
                if errors >= MAX_UDP_ERRORS {
                    return;
                }
            }
        }
    }
}

pub(crate) async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // DNS over TCP counts against the same cap as every other connection:
                // idle ones would otherwise pile up as descriptors in the supervisor.
                let Ok(permit) = shared.conn_limit.clone().try_acquire_owned() else {
                    reset(stream);
                    continue;
                };
                let s = shared.clone();
                shared.tasks.spawn(async move {
                    let _permit = permit;
                    let Some((ip, port)) = original_destination(&stream) else {
                        return;
                    };
                    if s.network.cidr_allows(ip, port) {
                        literal(stream, ip, port, &s).await;
                    } else {
                        serve_tcp_connection(stream, &s).await;
                    }
                });
            }
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: &Shared) {
    loop {
        let mut len = [0u8; 2];
        match timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        let mut query = vec![0u8; len];
        match timeout(TCP_IDLE, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(reply) = answer(&query, &shared.dns_context()) else {
            reset(stream);
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
