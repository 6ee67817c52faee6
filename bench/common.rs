//! Shared by the egress benchmarks: the synthetic-address set-up a sandboxed client
//! sees, on loopback.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use skillsandbox_egress::{start, EgressConfig, EgressHandle, EgressListeners};
use skillsandbox_manifest::{DomainPattern, EgressRule, HttpRules, NetworkPolicy};

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

/// The service's configuration for `name` on `port`: the name resolves to 127.0.0.1
/// (allowed by a cidr rule), with `http` request rules; synthetic range 127.77.0.0/24.
pub fn config(name: &str, port: u16, http: HttpRules) -> EgressConfig {
    let mut config = EgressConfig::new(NetworkPolicy {
        egress: vec![
            EgressRule::Domain {
                domain: DomainPattern::Exact(name.into()),
                ports: vec![port],
                http,
                allow_private_resolution: false,
            },
            EgressRule::Cidr {
                cidr: ipnet::IpNet::from(IpAddr::from([127, 0, 0, 1])),
                ports: vec![port],
            },
        ],
        record: false,
        secrets: Vec::new(),
    });
    config.synthetic_v4 = ipnet::Ipv4Net::new(Ipv4Addr::new(127, 77, 0, 0), 24).unwrap_or_default();
    config.hosts_override = HashMap::from([(name.to_owned(), vec![IpAddr::from([127, 0, 0, 1])])]);
    config
}

/// Starts the service with `front` as its listener and has it hand out `synthetic`
/// for `name`: the handle, and the address a sandboxed client would connect to.
pub async fn serve(
    config: EgressConfig,
    front: TcpListener,
    name: &str,
    synthetic: Ipv4Addr,
) -> Result<(EgressHandle, SocketAddr), Box<dyn std::error::Error + Send + Sync>> {
    let port = front.local_addr()?.port();
    let dns = UdpSocket::bind("127.0.0.1:0")?;
    let dns_addr = dns.local_addr()?;
    let handle = start(
        config,
        EgressListeners {
            dns_udp4: dns,
            dns_udp6: UdpSocket::bind("[::1]:0")?,
            dns_tcp: TcpListener::bind("127.0.0.1:0")?,
            tcp: vec![(port, front)],
        },
        &tokio::runtime::Handle::current(),
    )?;
    issue_address(dns_addr, name, synthetic).await?;
    Ok((handle, SocketAddr::from((synthetic, port))))
}
