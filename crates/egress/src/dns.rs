//! The DNS decision: one query in, one reply (or nothing) out, plus the records.
//! Declared names get A/AAAA answers with their synthetic addresses, other types for
//! declared names get NODATA, every other name NXDOMAIN and a `dns_blocked`
//! violation. Nothing is ever forwarded. Malformed input gets FORMERR (or is dropped
//! when not even the header is there); this module never panics on any input.

use std::sync::Mutex;

use skillsandbox_audit::{now, DnsDecision, DnsRecord, ViolationKind};
use skillsandbox_manifest::NetworkPolicy;

use crate::record::Recorder;
use crate::synthetic::SyntheticPool;

/// TTL of synthetic answers. The address of a name never changes within a sandbox.
const ANSWER_TTL: u32 = 300;
/// EDNS UDP payload size we advertise (the DNS flag day 2020 value).
const EDNS_UDP_SIZE: u16 = 1232;
/// Longest name kept in a record (escaped wire names can be longer than 255).
const MAX_RECORDED_NAME: usize = 300;
/// Longest name on the wire (RFC 1035 3.1).
const MAX_WIRE_NAME: usize = 255;

const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// What the responder needs to decide.
pub(crate) struct DnsContext<'a> {
    pub(crate) secrets: &'a [crate::LiveSecret],
    pub(crate) network: &'a NetworkPolicy,
    pub(crate) pool: &'a Mutex<SyntheticPool>,
    pub(crate) recorder: &'a Recorder,
}

/// The one question of a query, borrowed from the packet.
struct Query<'a> {
    /// The question section as sent (name in the client's case, type, class).
    question: &'a [u8],
    labels: Vec<&'a [u8]>,
    qtype: u16,
    qclass: u16,
    edns: bool,
}

/// The reply to `query`, or `None` when it must be dropped (shorter than a header, or
/// itself a response).
///
/// The question is parsed here rather than with a general DNS library: those refuse
/// unknown query types and classes, and every query, whatever its type, must be
/// decided and recorded (odd types are a favourite of DNS tunnels).
pub(crate) fn answer(packet: &[u8], ctx: &DnsContext<'_>) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (packet[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Some(reply(packet, &[], RCODE_NOTIMP, None, false));
    }
    let Some(query) = parse_query(packet) else {
        return Some(reply(packet, &[], RCODE_FORMERR, None, false));
    };
    let qtype = qtype_name(query.qtype);
    let (name, valid) = name_of(&query.labels);
    let record = |decision, answers: Vec<String>| DnsRecord {
        time: now(),
        name: name.clone(),
        qtype: qtype.clone(),
        decision,
        answers,
    };

    let nxdomain = || {
        Some(reply(
            packet,
            query.question,
            RCODE_NXDOMAIN,
            None,
            query.edns,
        ))
    };
    if let Some(s) = crate::secrets::placeholder_in(ctx.secrets, name.as_bytes()) {
        ctx.recorder.dns(record(DnsDecision::Blocked, Vec::new()));
        ctx.recorder.violation(
            ViolationKind::SecretExfiltration,
            format!(
                "DNS {qtype} query carries the placeholder of secret {}: answered NXDOMAIN",
                s.name
            ),
        );
        return nxdomain();
    }
    if !valid || !(ctx.network.record || ctx.network.domain_declared(&name)) {
        ctx.recorder.dns(record(DnsDecision::Blocked, Vec::new()));
        ctx.recorder.dns_blocked(
            &name,
            &qtype,
            "no egress rule declares this name; answered NXDOMAIN",
        );
        return nxdomain();
    }

    let wants_address = query.qclass == CLASS_IN && matches!(query.qtype, TYPE_A | TYPE_AAAA);
    if !wants_address {
        ctx.recorder.dns(record(DnsDecision::Nodata, Vec::new()));
        return Some(reply(packet, query.question, 0, None, query.edns));
    }

    let assigned = ctx
        .pool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .assign(&name);
    let Some((v4, v6)) = assigned else {
        ctx.recorder.dns(record(DnsDecision::Blocked, Vec::new()));
        ctx.recorder.dns_blocked(
            &name,
            &qtype,
            "the synthetic address ranges are exhausted (too many distinct names); answered SERVFAIL",
        );
        return Some(reply(
            packet,
            query.question,
            RCODE_SERVFAIL,
            None,
            query.edns,
        ));
    };
    let (rdata, shown) = if query.qtype == TYPE_A {
        (v4.octets().to_vec(), v4.to_string())
    } else {
        (v6.octets().to_vec(), v6.to_string())
    };
    ctx.recorder.dns(record(DnsDecision::Answered, vec![shown]));
    Some(reply(
        packet,
        query.question,
        0,
        Some((query.qtype, &rdata)),
        query.edns,
    ))
}

/// Parses the header's single question and notes whether an OPT record is present.
fn parse_query(packet: &[u8]) -> Option<Query<'_>> {
    let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    if count(4) != 1 {
        return None;
    }
    let (ancount, nscount, arcount) = (count(6), count(8), count(10));
    let mut pos = 12;
    let mut labels = Vec::new();
    let mut wire_len = 1;
    loop {
        let len = usize::from(*packet.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types make no sense in the first
        // name of a query.
        if len & 0xc0 != 0 {
            return None;
        }
        wire_len += len + 1;
        if wire_len > MAX_WIRE_NAME {
            return None;
        }
        labels.push(packet.get(pos..pos + len)?);
        pos += len;
    }
    let fixed = packet.get(pos..pos + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    let question = &packet[12..pos + 4];
    // An OPT record in the additional section (only looked for in plain queries).
    let edns = ancount == 0 && nscount == 0 && has_opt(&packet[pos + 4..], arcount);
    Some(Query {
        question,
        labels,
        qtype,
        qclass,
        edns,
    })
}

fn has_opt(mut rest: &[u8], count: u16) -> bool {
    for _ in 0..count {
        // Name: labels and/or a pointer.
        let mut i = 0;
        loop {
            let Some(&len) = rest.get(i) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                i += 2;
                break;
            }
            i += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        let Some(fixed) = rest.get(i..i + 10) else {
            return false;
        };
        if u16::from_be_bytes([fixed[0], fixed[1]]) == TYPE_OPT {
            return true;
        }
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let Some(next) = rest.get(i + 10 + rdlen..) else {
            return false;
        };
        rest = next;
    }
    false
}

/// A reply echoing the query's id, opcode, RD bit and `question` (empty for header
/// only errors), with `rcode`, at most one answer (type, rdata) pointing back at the
/// question name, and an OPT record when the query had one.
fn reply(
    packet: &[u8],
    question: &[u8],
    rcode: u8,
    answer: Option<(u16, &[u8])>,
    edns: bool,
) -> Vec<u8> {
    let mut r = Vec::with_capacity(12 + question.len() + 40);
    r.extend_from_slice(&packet[..2]);
    r.push(0x80 | (packet[2] & 0x79)); // QR, opcode, RD
    r.push(0x80 | rcode); // RA
    r.extend_from_slice(&u16::from(!question.is_empty()).to_be_bytes());
    r.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&u16::from(edns).to_be_bytes());
    r.extend_from_slice(question);
    if let Some((rtype, rdata)) = answer {
        r.extend_from_slice(&[0xc0, 12]); // pointer to the question name
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
    }
    if edns {
        r.push(0); // root name
        r.extend_from_slice(&TYPE_OPT.to_be_bytes());
        r.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // ext-rcode, version, flags, rdlen
    }
    r
}

/// The name as recorded (lower-case, dot-separated, other bytes escaped as `\DDD` and
/// `.`/`\\` inside a label escaped), and whether every label is a valid hostname
/// label (letters, digits, inner hyphens; at most 63 bytes).
fn name_of(labels: &[&[u8]]) -> (String, bool) {
    let valid_label = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && l.first() != Some(&b'-')
            && l.last() != Some(&b'-')
    };
    let valid = !labels.is_empty() && labels.iter().all(|l| valid_label(l));
    let mut shown = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            shown.push('.');
        }
        for &b in *label {
            match b {
                b'.' | b'\\' => {
                    shown.push('\\');
                    shown.push(char::from(b));
                }
                0x21..=0x7e => shown.push(char::from(b.to_ascii_lowercase())),
                _ => shown.push_str(&format!("\\{b:03}")),
            }
        }
    }
    if shown.len() > MAX_RECORDED_NAME {
        shown.truncate(MAX_RECORDED_NAME);
        shown.push_str("...");
    }
    (shown, valid)
}

/// The presentation name of a query type (`TYPE123` for unknown ones, RFC 3597).
pub(crate) fn qtype_name(raw: u16) -> String {
    let known = match raw {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{raw}"),
    };
    known.to_owned()
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
