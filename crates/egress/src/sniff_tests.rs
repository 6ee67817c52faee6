//! Sniffing tests on real captures (curl, Python `ssl`, Node `tls`) and on
//! hand-built edge cases.

use super::*;

const CURL_TLS: &[u8] = include_bytes!("../testdata/curl-clienthello-api.openweathermap.org.bin");
const PY_TLS: &[u8] = include_bytes!("../testdata/python-clienthello-Example.COM.bin");
const NODE_TLS: &[u8] = include_bytes!("../testdata/node-clienthello-registry.npmjs.org.bin");
const CURL_POST: &[u8] = include_bytes!("../testdata/curl-http-post-webhook.site.bin");

fn sni(name: &str) -> Sniff {
    Sniff::Tls {
        sni: Some(name.into()),
    }
}

#[test]
fn sni_from_real_client_hellos() {
    assert_eq!(sniff(CURL_TLS), sni("api.openweathermap.org"));
    assert_eq!(sniff(PY_TLS), sni("example.com"));
    assert_eq!(sniff(NODE_TLS), sni("registry.npmjs.org"));
}

#[test]
fn every_prefix_of_a_client_hello_needs_more() {
    for cut in 0..CURL_TLS.len() {
        assert_eq!(sniff(&CURL_TLS[..cut]), Sniff::NeedMore, "cut at {cut}");
    }
}

/// Splits the ClientHello handshake message over two records, as a client with a
/// small record size would.
#[test]
fn client_hello_split_over_records() {
    let hs = &CURL_TLS[5..];
    let (a, b) = hs.split_at(100);
    let mut buf = Vec::new();
    for part in [a, b] {
        buf.extend_from_slice(&[0x16, 3, 1]);
        buf.extend_from_slice(&(part.len() as u16).to_be_bytes());
        buf.extend_from_slice(part);
    }
    assert_eq!(sniff(&buf), sni("api.openweathermap.org"));
}

/// A minimal ClientHello with the given extensions block.
fn client_hello(extensions: &[u8]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

fn sni_ext(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(0);
        list.extend_from_slice(&(n.len() as u16).to_be_bytes());
        list.extend_from_slice(n);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
    ext.extend_from_slice(&data);
    ext
}

#[test]
fn hand_built_client_hellos() {
    assert_eq!(sniff(&client_hello(&[])), Sniff::Tls { sni: None });
    assert_eq!(
        sniff(&client_hello(&sni_ext(&[b"Evil.Example."]))),
        sni("evil.example")
    );
    assert!(matches!(
        sniff(&client_hello(&sni_ext(&[b"a.example", b"b.example"]))),
        Sniff::Malformed(_)
    ));
    assert!(matches!(
        sniff(&client_hello(&sni_ext(&[b"\xff\xfe"]))),
        Sniff::Malformed(_)
    ));
    // Extension length pointing past the end.
    let mut bad = client_hello(&sni_ext(&[b"a.example"]));
    let n = bad.len();
    bad[n - 15] = 0xff;
    assert!(
        matches!(sniff(&bad), Sniff::Malformed(_)),
        "{:?}",
        sniff(&bad)
    );
    // Not a handshake record / not a ClientHello.
    assert!(matches!(
        sniff(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
        Sniff::Malformed(_)
    ));
    assert!(matches!(sniff(&[0x16, 9, 9, 0, 1, 1]), Sniff::Malformed(_)));
}

#[test]
fn no_panic_on_arbitrary_bytes() {
    let mut seed = 0x1234_5678_u32;
    for len in 0..600 {
        let mut buf = vec![0x16, 3, 1];
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            buf.push(seed as u8);
        }
        let _ = sniff(&buf);
        let _ = sniff(&buf[3..]);
        let mut flipped = CURL_TLS.to_vec();
        flipped[len % CURL_TLS.len()] ^= seed as u8 | 1;
        let _ = sniff(&flipped);
    }
}

#[test]
fn host_from_real_curl_post() {
    assert_eq!(
        sniff(CURL_POST),
        Sniff::Http {
            method: "POST".into(),
            names: vec!["webhook.site".into()]
        }
    );
    assert_eq!(sniff(&CURL_POST[..40]), Sniff::NeedMore);
    assert_eq!(sniff(b"PO"), Sniff::NeedMore);
    assert_eq!(sniff(b"GET"), Sniff::NeedMore);
}

#[test]
fn http_edge_cases() {
    let names = |b: &[u8]| match sniff(b) {
        Sniff::Http { names, .. } => names,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        names(b"GET http://evil.example:8080/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
        ["api.example.com", "evil.example"]
    );
    assert_eq!(
        names(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
        ["api.example.com", "evil.example"]
    );
    assert_eq!(names(b"GET / HTTP/1.0\r\n\r\n"), Vec::<String>::new());
    assert_eq!(
        names(b"GET / HTTP/1.1\r\nhOsT:  [::1]:80 \r\n\r\n"),
        ["::1"]
    );
    assert!(matches!(
        sniff(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        Sniff::Malformed(_)
    ));
    assert_eq!(sniff(b"SSH-2.0-OpenSSH_9.2\r\n"), Sniff::Other);
    assert_eq!(sniff(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), Sniff::Other);
    assert_eq!(sniff(H2_PREFACE), Sniff::Http2Preface);
    // Lenient servers skip runs of spaces before the target and end lines at a bare
    // LF: both would read a host the check never saw (second review).
    assert_eq!(
        names(b"GET  http://evil.example/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
        ["api.example.com", "evil.example"]
    );
    for head in [
        &b"GET / HTTP/1.1\nHost: evil.example\n\r\nHost: api.example.com\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX: y\rHost: evil\r\n\r\n",
    ] {
        assert!(matches!(sniff(head), Sniff::Malformed(_)), "{head:?}");
    }
}

#[test]
fn authority_normalization() {
    assert_eq!(
        normalize_authority("API.Example.com:443"),
        "api.example.com"
    );
    assert_eq!(normalize_authority("api.example.com."), "api.example.com");
    assert_eq!(normalize_authority("[2001:db8::1]:443"), "2001:db8::1");
    assert_eq!(normalize_authority("2001:db8::1"), "2001:db8::1");
}

#[test]
fn name_check_decisions() {
    let name = "api.example.com";
    let allow = |c: NameCheck| matches!(c, NameCheck::Allow(_));
    assert!(allow(check_name(&sni(name), name, 443, false)));
    assert!(matches!(
        check_name(&sni("webhook.site"), name, 443, false),
        NameCheck::Mismatch(_)
    ));
    let http = |names: &[&str]| Sniff::Http {
        method: "POST".into(),
        names: names.iter().map(|s| s.to_string()).collect(),
    };
    assert!(allow(check_name(&http(&[name]), name, 80, false)));
    assert!(matches!(
        check_name(&http(&[name, "evil.example"]), name, 80, false),
        NameCheck::Mismatch(_)
    ));
    // No name: refused on web ports, allowed elsewhere.
    for s in [
        Sniff::Tls { sni: None },
        Sniff::Other,
        http(&[]),
        Sniff::Http2Preface,
    ] {
        assert!(matches!(
            check_name(&s, name, 443, false),
            NameCheck::Refuse(_)
        ));
        assert!(matches!(
            check_name(&s, name, 80, true),
            NameCheck::Refuse(_)
        ));
        assert!(allow(check_name(&s, name, 5432, false)), "{s:?}");
    }
    assert!(matches!(
        check_name(&Sniff::NeedMore, name, 5432, true),
        NameCheck::Refuse(_)
    ));
    assert!(matches!(
        check_name(&Sniff::Malformed("x"), name, 5432, false),
        NameCheck::Refuse(_)
    ));
}
