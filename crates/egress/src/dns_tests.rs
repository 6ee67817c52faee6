//! DNS decision tests on hand-built wire queries.

use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, RCODE};
use skillsandbox_manifest::{DomainPattern, EgressRule};

use super::*;

fn network() -> NetworkPolicy {
    NetworkPolicy {
        egress: vec![
            EgressRule::Domain {
                domain: DomainPattern::Exact("api.example.com".into()),
                ports: vec![443],
                http: Default::default(),
                allow_private_resolution: false,
            },
            EgressRule::Domain {
                domain: DomainPattern::Wildcard("cdn.example.net".into()),
                ports: vec![443],
                http: Default::default(),
                allow_private_resolution: false,
            },
        ],
        record: false,
        secrets: Vec::new(),
    }
}

struct Fixture {
    network: NetworkPolicy,
    pool: Mutex<SyntheticPool>,
    recorder: Recorder,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            network: network(),
            pool: Mutex::new(SyntheticPool::new(
                "198.18.0.0/15".parse().unwrap(),
                "fd5b:5b5b:5b5b::/64".parse().unwrap(),
            )),
            recorder: Recorder::default(),
        }
    }
    fn ask(&self, query: &[u8]) -> Option<Vec<u8>> {
        answer(
            query,
            &DnsContext {
                secrets: &[],
                network: &self.network,
                pool: &self.pool,
                recorder: &self.recorder,
            },
        )
    }
}

/// A standard query with RD set; `edns` adds an OPT record.
pub(crate) fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[test]
fn declared_names_get_stable_synthetic_addresses() {
    let f = Fixture::new();
    let reply = f.ask(&query(0x1234, "API.example.com.", 1, true)).unwrap();
    let p = Packet::parse(&reply).unwrap();
    assert_eq!(p.id(), 0x1234);
    assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_DESIRED));
    assert_eq!(p.rcode(), RCODE::NoError);
    assert!(p.opt().is_some(), "EDNS query gets an OPT back");
    assert_eq!(p.questions.len(), 1);
    let [rr] = p.answers.as_slice() else {
        panic!("{p:?}")
    };
    assert!(
        matches!(rr.rdata, RData::A(A { address }) if Ipv4Addr::from(address) == Ipv4Addr::new(198, 18, 0, 1))
    );

    let reply = f.ask(&query(7, "x.y.cdn.example.net", 28, false)).unwrap();
    let p = Packet::parse(&reply).unwrap();
    assert!(p.opt().is_none());
    let [rr] = p.answers.as_slice() else {
        panic!("{p:?}")
    };
    let want: Ipv6Addr = "fd5b:5b5b:5b5b::2".parse().unwrap();
    assert!(matches!(rr.rdata, RData::AAAA(AAAA { address }) if Ipv6Addr::from(address) == want));

    // Same name again: same address.
    let again = f.ask(&query(8, "api.example.com", 1, false)).unwrap();
    let p = Packet::parse(&again).unwrap();
    assert!(
        matches!(p.answers[0].rdata, RData::A(A { address }) if address == u32::from(Ipv4Addr::new(198, 18, 0, 1)))
    );

    let report = f.recorder.finish();
    assert!(report.violations.is_empty());
    let decisions: Vec<_> = report
        .dns
        .iter()
        .map(|r| (r.name.as_str(), r.qtype.as_str(), r.decision))
        .collect();
    assert_eq!(
        decisions,
        [
            ("api.example.com", "A", DnsDecision::Answered),
            ("x.y.cdn.example.net", "AAAA", DnsDecision::Answered),
            ("api.example.com", "A", DnsDecision::Answered),
        ]
    );
    assert_eq!(report.dns[1].answers, ["fd5b:5b5b:5b5b::2"]);
}

#[test]
fn other_types_of_declared_names_get_nodata() {
    let f = Fixture::new();
    for qtype in [16u16, 15, 65, 255, 4242] {
        let reply = f.ask(&query(1, "api.example.com", qtype, false)).unwrap();
        assert_eq!(rcode(&reply), 0, "qtype {qtype}");
        assert_eq!(&reply[6..8], &[0, 0], "no answers for qtype {qtype}");
    }
    // The reply decodes with an independent parser and echoes the question.
    let reply = f.ask(&query(2, "api.example.com", 65, true)).unwrap();
    let p = Packet::parse(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
    assert!(p.opt().is_some());
    assert_eq!(p.questions[0].qname.to_string(), "api.example.com");
    // Unknown types too (checked by hand: the decoder refuses them).
    let q = query(3, "api.example.com", 4242, false);
    let reply = f.ask(&q).unwrap();
    assert_eq!(&reply[12..], &q[12..]);
    let report = f.recorder.finish();
    assert!(report.violations.is_empty());
    assert!(report.dns.iter().all(|r| r.decision == DnsDecision::Nodata));
    assert_eq!(report.dns[2].qtype, "HTTPS");
    assert_eq!(report.dns[4].qtype, "TYPE4242");
}

#[test]
fn undeclared_names_get_nxdomain_and_one_violation_each() {
    let f = Fixture::new();
    for (name, qtype) in [
        ("webhook.site", 1),
        ("webhook.site", 1),
        ("webhook.site", 28),
        ("cdn.example.net", 1), // wildcard does not cover the apex
        (
            "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldCBrZXk.exfil.example",
            16,
        ),
    ] {
        let reply = f.ask(&query(9, name, qtype, false)).unwrap();
        Packet::parse(&reply).unwrap();
        assert_eq!(rcode(&reply), 3, "{name}");
        assert_eq!(&reply[6..8], &[0, 0]);
    }
    let report = f.recorder.finish();
    assert_eq!(report.dns.len(), 5);
    assert_eq!(report.dns[4].qtype, "TXT");
    assert!(report
        .dns
        .iter()
        .all(|r| r.decision == DnsDecision::Blocked));
    let details: Vec<_> = report
        .violations
        .iter()
        .map(|v| v.detail.as_str())
        .collect();
    assert_eq!(details.len(), 4, "{details:?}");
    assert!(
        details[0].contains("A query for webhook.site"),
        "{}",
        details[0]
    );
    assert!(details[1].contains("AAAA query for webhook.site"));
    assert_eq!(
        report.violations[0].severity,
        skillsandbox_audit::Severity::Medium
    );
    let exfil = &report.violations[3];
    assert_eq!(exfil.severity, skillsandbox_audit::Severity::High);
    assert_eq!(exfil.mitre.as_ref().unwrap().technique_id, "T1048.003");
}

#[test]
fn invalid_label_bytes_are_never_declared() {
    let f = Fixture::new();
    // One label "api.example.com" (dot inside a label) is not the name api.example.com.
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 15];
    q.extend_from_slice(b"api.example.com");
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let reply = f.ask(&q).unwrap();
    assert_eq!(rcode(&reply), 3);
    // CHAOS class (version.bind) and odd bytes: decided and recorded, escaped.
    let mut ch = query(3, "version.bind", 16, false);
    let n = ch.len();
    ch[n - 1] = 3;
    assert_eq!(rcode(&f.ask(&ch).unwrap()), 3);
    let mut odd = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', 0, 0xff];
    odd.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode(&f.ask(&odd).unwrap()), 3);
    let report = f.recorder.finish();
    assert_eq!(report.dns[0].name, "api\\.example\\.com");
    assert_eq!(report.dns[1].name, "version.bind");
    assert_eq!(report.dns[2].name, "a\\000\\255");
    assert_eq!(report.violations.len(), 3);
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped() {
    let f = Fixture::new();
    assert_eq!(f.ask(&[]), None);
    assert_eq!(f.ask(&[1, 2, 3]), None);
    // A response is never answered (no loops).
    let mut resp = query(5, "api.example.com", 1, false);
    resp[2] |= 0x80;
    assert_eq!(f.ask(&resp), None);
    // Truncated question.
    let q = query(0xbeef, "api.example.com", 1, false);
    let reply = f.ask(&q[..q.len() - 3]).unwrap();
    assert_eq!(&reply[..2], &[0xbe, 0xef]);
    assert_eq!(rcode(&reply), 1);
    assert_eq!(reply[2] & 0x80, 0x80);
    // Two questions.
    let mut two = query(1, "api.example.com", 1, false);
    two[5] = 2;
    two.extend_from_slice(&two.clone()[12..]);
    assert_eq!(rcode(&f.ask(&two).unwrap()), 1);
    // Not a standard query.
    let mut notify = query(1, "api.example.com", 1, false);
    notify[2] = 0x20;
    assert_eq!(rcode(&f.ask(&notify).unwrap()), 4);
    // Compression loop in the name.
    let mut lp = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert!(f.ask(&lp).is_some_and(|r| rcode(&r) == 1));
    lp.truncate(13);
    let _ = f.ask(&lp);
    // Random bytes never panic.
    let mut seed = 0x9e37_79b9_u32;
    for len in 12..400 {
        let mut buf = query(1, "api.example.com", 1, true);
        for i in 0..len.min(buf.len()) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if seed.is_multiple_of(7) {
                buf[i] = seed as u8;
            }
        }
        buf[2] &= 0x7f;
        let _ = f.ask(&buf);
    }
    assert!(f.recorder.finish().violations.len() < 400);
}

#[test]
fn qtype_names() {
    assert_eq!(qtype_name(1), "A");
    assert_eq!(qtype_name(28), "AAAA");
    assert_eq!(qtype_name(16), "TXT");
    assert_eq!(qtype_name(65534), "TYPE65534");
}
