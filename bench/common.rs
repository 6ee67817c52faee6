//! Shared by the egress benchmarks: the synthetic-address set-up a sandboxed client
//! sees, on loopback.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

/// A free port P on both `synthetic` (the front) and 127.0.0.1 (the upstream).
pub fn port_pair(synthetic: Ipv4Addr) -> std::io::Result<(TcpListener, TcpListener)> {
    for _ in 0..50 {
        let front = TcpListener::bind((synthetic, 0))?;
        let port = front.local_addr()?.port();
        if let Ok(up) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok((front, up));
        }
    }
    Err(std::io::Error::other("no free port pair"))
}

/// One A query for `name`, so the service hands out `synthetic` for it.
pub async fn issue_address(dns: SocketAddr, name: &str, synthetic: Ipv4Addr) -> Result<(), String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, dns).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .map_err(|_| "no DNS answer".to_string())?
        .map_err(|e| e.to_string())?;
    if n < 4 || buf[n - 4..n] != synthetic.octets() {
        return Err("unexpected DNS answer".into());
    }
    Ok(())
}
