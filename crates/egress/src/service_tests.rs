//! End-to-end tests of the running service on loopback sockets, no namespaces.
//!
//! Synthetic addresses are taken from 127.77.0.0/24 here, so a test listener bound
//! to 127.77.0.1 sees exactly the destination a sandboxed client would: the first
//! name looked up. Upstream servers listen on 127.0.0.1 with the same port, reached
//! through `hosts_override` and a `cidr` rule for 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use skillsandbox_audit::{ConnectionDecision, DnsDecision, ViolationKind};
use skillsandbox_manifest::{DomainPattern, EgressRule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const CURL_TLS: &[u8] = include_bytes!("../testdata/curl-clienthello-api.openweathermap.org.bin");
const PY_TLS: &[u8] = include_bytes!("../testdata/python-clienthello-Example.COM.bin");
const CURL_POST: &[u8] = include_bytes!("../testdata/curl-http-post-webhook.site.bin");
const NAME: &str = "api.openweathermap.org";
const SYNTHETIC: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

fn domain(name: &str, ports: &[u16]) -> EgressRule {
    EgressRule::Domain {
        domain: DomainPattern::Exact(name.into()),
        ports: ports.to_vec(),
        http: Default::default(),
        allow_private_resolution: false,
    }
}

fn cidr(net: &str, ports: &[u16]) -> EgressRule {
    EgressRule::Cidr {
        cidr: net.parse().unwrap(),
        ports: ports.to_vec(),
    }
}

struct Service {
    handle: EgressHandle,
    dns4: SocketAddr,
    dns6: SocketAddr,
    dns_tcp: SocketAddr,
}

/// Starts the service with TCP listeners bound at `tcp` (port 0: any).
fn start_service(
    rules: Vec<EgressRule>,
    hosts: &[(&str, &str)],
    tcp: &[SocketAddr],
) -> (Service, Vec<SocketAddr>) {
    let dns_udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns_udp6 = UdpSocket::bind("[::1]:0").unwrap();
    let dns_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let (dns4, dns6, dns_tcp_addr) = (
        dns_udp4.local_addr().unwrap(),
        dns_udp6.local_addr().unwrap(),
        dns_tcp.local_addr().unwrap(),
    );
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in tcp {
        let l = TcpListener::bind(addr).unwrap();
        let a = l.local_addr().unwrap();
        bound.push(a);
        listeners.push((a.port(), l));
    }
    let mut config = EgressConfig::new(NetworkPolicy {
        egress: rules,
        record: false,
        secrets: Vec::new(),
    });
    config.synthetic_v4 = "127.77.0.0/24".parse().unwrap();
    for (name, ip) in hosts {
        config
            .hosts_override
            .insert(name.to_string(), vec![ip.parse().unwrap()]);
    }
    let handle = start(
        config,
        EgressListeners {
            dns_udp4,
            dns_udp6,
            dns_tcp,
            tcp: listeners,
        },
        &Handle::current(),
    )
    .unwrap();
    (
        Service {
            handle,
            dns4,
            dns6,
            dns_tcp: dns_tcp_addr,
        },
        bound,
    )
}

/// A wire query for `name`/`qtype` with RD set.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, qtype as u8, 0, 1]);
    q
}

/// Asks over a *connected* UDP socket: a reply from another source address than the
/// one asked would be filtered by the kernel and the lookup would time out.
async fn ask_udp(server: SocketAddr, name: &str, qtype: u16) -> Vec<u8> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.unwrap();
    sock.connect(server).await.unwrap();
    sock.send(&query(0x4242, name, qtype)).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .expect("DNS reply")
        .unwrap();
    buf.truncate(n);
    buf
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

/// The address in a one-answer reply, decoded by an independent parser.
fn answer_ip(reply: &[u8]) -> IpAddr {
    use simple_dns::rdata::RData;
    let p = simple_dns::Packet::parse(reply).unwrap();
    let [rr] = p.answers.as_slice() else {
        panic!("{p:?}")
    };
    match &rr.rdata {
        RData::A(a) => IpAddr::from(Ipv4Addr::from(a.address)),
        RData::AAAA(a) => IpAddr::from(std::net::Ipv6Addr::from(a.address)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_udp4_udp6_and_tcp() {
    let (svc, _) = start_service(vec![domain(NAME, &[443])], &[], &[]);
    let a = ask_udp(svc.dns4, NAME, 1).await;
    assert_eq!(rcode(&a), 0);
    assert_eq!(answer_ip(&a), IpAddr::V4(SYNTHETIC));
    let aaaa = ask_udp(svc.dns6, NAME, 28).await;
    assert_eq!(rcode(&aaaa), 0);
    assert_eq!(
        answer_ip(&aaaa),
        "fd5b:5b5b:5b5b::1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(rcode(&ask_udp(svc.dns6, "webhook.site", 1).await), 3);

    // TCP: two framed queries on one connection.
    let mut s = tokio::net::TcpStream::connect(svc.dns_tcp).await.unwrap();
    for (name, want) in [(NAME, 0u8), ("evil.example", 3)] {
        let q = query(7, name, 1);
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(rcode(&reply), want, "{name}");
    }
    drop(s);

    let report = svc.handle.finish();
    let dns: Vec<_> = report
        .dns
        .iter()
        .map(|r| (r.name.as_str(), r.decision))
        .collect();
    assert_eq!(
        dns,
        [
            (NAME, DnsDecision::Answered),
            (NAME, DnsDecision::Answered),
            ("webhook.site", DnsDecision::Blocked),
            (NAME, DnsDecision::Answered),
            ("evil.example", DnsDecision::Blocked),
        ]
    );
    assert_eq!(report.violations.len(), 2);
    assert!(report
        .violations
        .iter()
        .all(|v| v.kind == ViolationKind::DnsBlocked));
}

/// An upstream on 127.0.0.1:`port` that echoes what it reads, after sending `banner`.
async fn echo_upstream(port: u16, banner: &'static [u8]) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(banner).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    })
}

/// A service with `NAME` declared on one port P (listener on the synthetic address,
/// P chosen by the kernel), an echo upstream on 127.0.0.1:P, and `NAME` resolving to
/// `real` on the supervisor side. Looks the name up once so its address is issued.
async fn synthetic_setup(
    real: &str,
    allow_loopback: bool,
    banner: &'static [u8],
) -> (Service, u16) {
    // Pick P so that both 127.77.0.1:P and 127.0.0.1:P are free.
    for _ in 0..20 {
        let probe = TcpListener::bind((SYNTHETIC, 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        let Ok(up) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        drop((probe, up));
        let mut rules = vec![domain(NAME, &[port])];
        if allow_loopback {
            rules.push(cidr("127.0.0.1/32", &[port]));
        }
        let (svc, _) = start_service(
            rules,
            &[(NAME, real)],
            &[SocketAddr::from((SYNTHETIC, port))],
        );
        echo_upstream(port, banner).await;
        assert_eq!(
            answer_ip(&ask_udp(svc.dns4, NAME, 1).await),
            IpAddr::V4(SYNTHETIC)
        );
        return (svc, port);
    }
    panic!("no free port pair");
}

/// Sends `hello`, then reads until the peer closes or `want` bytes came back.
fn exchange(port: u16, hello: &[u8], want: usize) -> std::io::Result<Vec<u8>> {
    let mut s = StdTcpStream::connect((SYNTHETIC, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(hello)?;
    let mut got = vec![0u8; want];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_name_with_matching_sni_is_relayed_and_counted() {
    let (svc, port) = synthetic_setup("127.0.0.1", true, b"").await;
    let echoed = tokio::task::spawn_blocking(move || exchange(port, CURL_TLS, CURL_TLS.len()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, CURL_TLS);
    // Closed by the client; give the relay a moment to see it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = svc.handle.snapshot_bytes();
    assert_eq!(bytes.bytes_out, CURL_TLS.len() as u64);
    let report = svc.handle.finish();
    let [c] = report.connections.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(c.decision, ConnectionDecision::Allowed);
    assert_eq!(c.name.as_deref(), Some(NAME));
    assert_eq!(c.dest, SYNTHETIC.to_string());
    assert_eq!(c.real_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (c.bytes_out, c.bytes_in),
        (CURL_TLS.len() as u64, CURL_TLS.len() as u64)
    );
    assert!(
        c.reason.contains("TLS SNI api.openweathermap.org"),
        "{}",
        c.reason
    );
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

fn assert_reset(result: std::io::Result<Vec<u8>>) {
    let err = result.expect_err("connection must be refused");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_or_host_of_another_name_is_blocked_as_domain_mismatch() {
    let (svc, port) = synthetic_setup("127.0.0.1", true, b"").await;
    for hello in [PY_TLS, CURL_POST] {
        let r = tokio::task::spawn_blocking(move || exchange(port, hello, 1))
            .await
            .unwrap();
        assert_reset(r);
    }
    let report = svc.handle.finish();
    assert_eq!(report.connections.len(), 2);
    assert!(report
        .connections
        .iter()
        .all(|c| c.decision == ConnectionDecision::Blocked));
    let v: Vec<_> = report
        .violations
        .iter()
        .map(|v| (v.kind, v.detail.as_str()))
        .collect();
    assert_eq!(v[0].0, ViolationKind::DomainMismatch);
    assert!(v[0].1.contains("TLS SNI example.com"), "{}", v[0].1);
    assert!(
        v[1].1.contains("HTTP POST for host webhook.site"),
        "{}",
        v[1].1
    );
    assert_eq!(
        report.violations[0].mitre.as_ref().unwrap().technique_id,
        "T1090.004"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_to_loopback_or_metadata_is_refused() {
    for (real, metadata) in [("127.0.0.1", false), ("169.254.169.254", true)] {
        let (svc, port) = synthetic_setup(real, false, b"").await;
        let r = tokio::task::spawn_blocking(move || exchange(port, CURL_TLS, 1))
            .await
            .unwrap();
        assert_reset(r);
        let report = svc.handle.finish();
        let [v] = report.violations.as_slice() else {
            panic!("{report:?}")
        };
        assert_eq!(v.kind, ViolationKind::RebindingBlocked);
        assert!(v.detail.contains(real), "{}", v.detail);
        assert_eq!(
            v.mitre.as_ref().map(|m| m.technique_id.as_str()) == Some("T1552.005"),
            metadata
        );
        assert_eq!(report.connections[0].real_addr.as_deref(), Some(real));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocols_are_relayed_after_a_short_wait() {
    let (svc, port) = synthetic_setup("127.0.0.1", true, b"220 mail ready\r\n").await;
    let start = std::time::Instant::now();
    let banner = tokio::task::spawn_blocking(move || exchange(port, b"", 16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner, b"220 mail ready\r\n");
    assert!(start.elapsed() >= crate::tcp::SERVER_FIRST_WAIT);
    let report = svc.handle.finish();
    assert!(report.connections[0]
        .reason
        .contains("allowed by destination name only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_addresses_need_a_cidr_rule() {
    // Blocked: no rule for 127.0.0.1 on this port.
    let (svc, bound) = start_service(
        vec![domain(NAME, &[443])],
        &[],
        &["127.0.0.1:0".parse().unwrap()],
    );
    let dest = bound[0];
    let r = tokio::task::spawn_blocking(move || {
        let mut s = StdTcpStream::connect(dest)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map(|_| b.to_vec())
    })
    .await
    .unwrap();
    assert_reset(r);
    let report = svc.handle.finish();
    let [v] = report.violations.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(v.kind, ViolationKind::NetworkBlocked);
    assert!(v.detail.contains(&dest.to_string()), "{}", v.detail);

    // Allowed: the relay path for a literal, with the destination given directly
    // (here the listener address and the destination cannot differ).
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    echo_upstream_on(upstream);
    let (svc, front_addr, server) = literal_relay_to(up).await;
    let mut c = tokio::net::TcpStream::connect(front_addr).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    drop(c);
    server.await.unwrap();
    let report = svc.handle.finish();
    let [conn] = report.connections.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(conn.decision, ConnectionDecision::Allowed);
    assert!(
        conn.reason.contains("cidr rule 127.0.0.0/8"),
        "{}",
        conn.reason
    );
    assert_eq!((conn.bytes_out, conn.bytes_in), (4, 4));
}

/// A service allowing 127.0.0.0/8 on `up`'s port, and a front listener whose one
/// accepted connection it relays to `up` as a literal destination.
async fn literal_relay_to(up: SocketAddr) -> (Service, SocketAddr, tokio::task::JoinHandle<()>) {
    let (svc, _) = start_service(vec![cidr("127.0.0.0/8", &[up.port()])], &[], &[]);
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let shared = svc.handle.shared.clone();
    let server = tokio::spawn(async move {
        let (s, _) = front.accept().await.unwrap();
        tcp::literal(s, up.ip(), up.port(), &shared).await;
    });
    (svc, front_addr, server)
}

fn echo_upstream_on(l: tokio::net::TcpListener) {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_port_and_unissued_address_are_blocked() {
    let (svc, bound) = start_service(
        vec![domain(NAME, &[443])],
        &[],
        &[
            SocketAddr::from((SYNTHETIC, 0)),
            "127.77.0.9:0".parse().unwrap(),
        ],
    );
    ask_udp(svc.dns4, NAME, 1).await;
    for dest in bound {
        let r = tokio::task::spawn_blocking(move || {
            let mut s = StdTcpStream::connect(dest)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(CURL_TLS)?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).map(|_| b.to_vec())
        })
        .await
        .unwrap();
        assert_reset(r);
    }
    let report = svc.handle.finish();
    let details: Vec<_> = report
        .violations
        .iter()
        .map(|v| v.detail.as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].contains("is not declared for api.openweathermap.org"),
        "{}",
        details[0]
    );
    assert!(details[1].contains("never handed out"), "{}", details[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_closes_live_relays_and_reports_their_bytes() {
    let (svc, port) = synthetic_setup("127.0.0.1", true, b"").await;
    let mut c = tokio::net::TcpStream::connect((SYNTHETIC, port))
        .await
        .unwrap();
    c.write_all(CURL_TLS).await.unwrap();
    let mut back = vec![0u8; CURL_TLS.len()];
    c.read_exact(&mut back).await.unwrap();
    // The relay counts a write just after the client can read it.
    for _ in 0..100 {
        if svc.handle.snapshot_bytes().bytes_in == CURL_TLS.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = svc.handle.finish();
    let [conn] = report.connections.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(
        (conn.bytes_out, conn.bytes_in),
        (CURL_TLS.len() as u64, CURL_TLS.len() as u64)
    );
    // The relay is gone: the client sees the end of the stream.
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b))
        .await
        .expect("closed promptly");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

/// The relay moves megabytes each way intact, passes the client's half-close on
/// (the upstream answers only after end of stream) and counts every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_relay_is_intact_passes_half_close_and_counts() {
    const OUT: usize = 8 << 20;
    const BACK: usize = 3 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let back: Vec<u8> = (0..BACK).map(pattern).collect();
        s.write_all(&back).await.unwrap();
        got
    });
    let (svc, front_addr, server) = literal_relay_to(up).await;
    let mut c = tokio::net::TcpStream::connect(front_addr).await.unwrap();
    let out: Vec<u8> = (0..OUT).map(pattern).collect();
    c.write_all(&out).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert!(served.await.unwrap() == out, "upstream got other bytes");
    assert!(back.len() == BACK && back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    server.await.unwrap();
    let report = svc.handle.finish();
    let [conn] = report.connections.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!((conn.bytes_out, conn.bytes_in), (OUT as u64, BACK as u64));
}
