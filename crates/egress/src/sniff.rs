//! Reading the name a client puts in its first bytes: the SNI of a TLS ClientHello,
//! or the `Host` header (and an absolute-form or CONNECT target) of an HTTP/1
//! request; and the check that it names the domain the synthetic address stands for.
//! Pure functions over a byte prefix; never panics on any input.

/// What the first bytes of a connection say so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// A prefix of something we can parse: read more (within the limits).
    NeedMore,
    /// A complete TLS ClientHello; `sni` is the lower-cased server name, if sent.
    Tls { sni: Option<String> },
    /// A complete HTTP/1 request head. `names` holds every authority it carries
    /// (Host header, absolute-form or CONNECT target), lower-cased, port stripped.
    Http { method: String, names: Vec<String> },
    /// The HTTP/2 cleartext preface: the authority is HPACK-encoded, not checked.
    Http2Preface,
    /// Neither TLS nor HTTP/1: a protocol that carries no name we can read.
    Other,
    /// Started like TLS or HTTP but is not valid: refused, since it cannot be checked.
    Malformed(&'static str),
}

const HTTP_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) fn sniff(buf: &[u8]) -> Sniff {
    match buf.first() {
        None => Sniff::NeedMore,
        Some(0x16) => sniff_tls(buf),
        Some(_) => sniff_http(buf),
    }
}

/// Lower-cases `host`, strips a `:port` (also from `[v6]:port`) and a trailing dot.
pub(crate) fn normalize_authority(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        // A bare IPv6 literal has several colons and no port.
        match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn sniff_http(buf: &[u8]) -> Sniff {
    if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
        return if buf.len() >= H2_PREFACE.len() {
            Sniff::Http2Preface
        } else {
            Sniff::NeedMore
        };
    }
    let Some(method) = HTTP_METHODS.iter().find(|m| {
        let m = m.as_bytes();
        if buf.len() > m.len() {
            buf.starts_with(m) && buf[m.len()] == b' '
        } else {
            m.starts_with(buf)
        }
    }) else {
        return Sniff::Other;
    };
    if buf.len() <= method.len() {
        return Sniff::NeedMore;
    }
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Sniff::NeedMore;
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Sniff::Malformed("HTTP request head is not UTF-8");
    };
    // Servers that accept a bare LF (nginx, Go) end lines, and the head, where we
    // would not: a request they read could name a host we never saw.
    if head.split("\r\n").any(|l| l.contains(['\r', '\n'])) {
        return Sniff::Malformed("HTTP request head with a bare CR or LF line ending");
    }
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    // Runs of whitespace between the parts are skipped by lenient servers (nginx), so
    // the target is the first word after the method, however it is separated.
    let mut parts = request_line.split_ascii_whitespace();
    let (_, target) = (parts.next(), parts.next().unwrap_or(""));
    let mut names = Vec::new();
    let mut hosts = 0;
    for line in lines {
        let Some((field, value)) = line.split_once(':') else {
            return Sniff::Malformed("HTTP header line without a colon");
        };
        // "Host :" is invalid, but a lenient server might honour it: count it too.
        if field.trim().eq_ignore_ascii_case("host") {
            hosts += 1;
            names.push(normalize_authority(value));
        }
    }
    if hosts > 1 {
        return Sniff::Malformed("HTTP request with more than one Host header");
    }
    if *method == "CONNECT" {
        names.push(normalize_authority(target));
    } else if let Some(rest) = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
    {
        // Absolute-form: servers must prefer this authority over Host (RFC 9112 3.2.2).
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or("");
        names.push(normalize_authority(authority));
    }
    Sniff::Http {
        method: (*method).to_owned(),
        names,
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A big-endian reader over a byte slice; `None` when the input is short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Reassembles the handshake bytes carried by consecutive TLS handshake records
/// (a ClientHello may span several), then parses the ClientHello.
fn sniff_tls(buf: &[u8]) -> Sniff {
    let mut records = Reader(buf);
    let mut handshake = Vec::new();
    loop {
        if records.0.is_empty() {
            break;
        }
        let Some(header) = records.take(5) else {
            return Sniff::NeedMore;
        };
        if header[0] != 0x16 {
            return Sniff::Malformed("TLS record other than handshake before the ClientHello");
        }
        if header[1] != 3 {
            return Sniff::Malformed("TLS record with an unknown version");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Sniff::Malformed("TLS record with an invalid length");
        }
        let Some(body) = records.take(len) else {
            // A record still arriving: use what is there.
            handshake.extend_from_slice(records.0);
            break;
        };
        handshake.extend_from_slice(body);
    }
    let mut hs = Reader(&handshake);
    match hs.u8() {
        None => return Sniff::NeedMore,
        Some(1) => {}
        Some(_) => return Sniff::Malformed("first TLS handshake message is not a ClientHello"),
    }
    let Some(len) = hs.u24() else {
        return Sniff::NeedMore;
    };
    let Some(body) = hs.take(len) else {
        return Sniff::NeedMore;
    };
    match parse_client_hello(body) {
        Some(sni) => sni,
        None => Sniff::Malformed("truncated or inconsistent ClientHello"),
    }
}

fn parse_client_hello(body: &[u8]) -> Option<Sniff> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Some(Sniff::Tls { sni: None });
    }
    let mut exts = Reader(r.vec16()?);
    let mut sni = None;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        if sni.is_some() {
            return Some(Sniff::Malformed(
                "ClientHello with two server_name extensions",
            ));
        }
        let mut list = Reader(data);
        let mut names = Reader(list.vec16()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type != 0 {
                continue;
            }
            if sni.is_some() {
                return Some(Sniff::Malformed("server_name with two host names"));
            }
            let Ok(name) = std::str::from_utf8(name) else {
                return Some(Sniff::Malformed("server_name is not ASCII"));
            };
            if !name.is_ascii() || name.is_empty() {
                return Some(Sniff::Malformed("server_name is not ASCII"));
            }
            sni = Some(name.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    Some(Sniff::Tls { sni })
}

/// The outcome of checking a connection to a synthetic address for `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameCheck {
    /// Relay; the string says why (goes into the connection record).
    Allow(String),
    /// A name was found and it is another one: domain fronting / mismatch.
    Mismatch(String),
    /// No name could be checked where one is required, or the bytes are invalid.
    Refuse(String),
}

/// Ports on which a name is required (HTTP and HTTPS).
pub(crate) fn is_web_port(port: u16) -> bool {
    matches!(port, 80 | 443)
}

/// Decides a connection to the synthetic address of `name` on `port` from what its
/// first bytes say. `timed_out` is set when the sniff limits ran out before a
/// complete ClientHello / request head arrived.
pub(crate) fn check_name(sniffed: &Sniff, name: &str, port: u16, timed_out: bool) -> NameCheck {
    match sniffed {
        Sniff::Tls { sni: Some(sni) } if sni == name => NameCheck::Allow(format!("TLS SNI {sni}")),
        Sniff::Tls { sni: Some(sni) } => NameCheck::Mismatch(format!(
            "TLS SNI {sni} through the address issued for {name}"
        )),
        Sniff::Http { method, names } if names.is_empty() => no_name(
            port,
            &format!("HTTP {method} request without a Host header"),
        ),
        Sniff::Http { method, names } => match names.iter().find(|n| *n != name) {
            None => NameCheck::Allow(format!("HTTP Host {name}")),
            Some(other) => NameCheck::Mismatch(format!(
                "HTTP {method} for host {other} through the address issued for {name}"
            )),
        },
        Sniff::Tls { sni: None } => no_name(port, "TLS ClientHello without SNI"),
        Sniff::Http2Preface => no_name(port, "HTTP/2 cleartext (authority not inspected)"),
        Sniff::Other if timed_out => no_name(port, "no client bytes before the sniff timeout"),
        Sniff::Other => no_name(port, "protocol carries no name"),
        Sniff::NeedMore => NameCheck::Refuse(
            "incomplete TLS ClientHello / HTTP request head within the sniff limits".into(),
        ),
        Sniff::Malformed(why) => NameCheck::Refuse((*why).to_owned()),
    }
}

fn no_name(port: u16, what: &str) -> NameCheck {
    if is_web_port(port) {
        NameCheck::Refuse(format!("{what}; a name is required on port {port}"))
    } else {
        NameCheck::Allow(format!("{what}; allowed by destination name only"))
    }
}

#[cfg(test)]
#[path = "sniff_tests.rs"]
mod tests;
