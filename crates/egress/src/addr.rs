//! Which real addresses a declared name may lead to: everything that is not public
//! unicast (loopback, private, link-local, CGNAT, ULA, cloud metadata, multicast,
//! reserved, and IPv6 forms that embed such an IPv4 address) is refused unless a
//! `cidr` rule covers it. This is what stops DNS rebinding and SSRF through an
//! allowed name. Pure functions only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public unicast address, or `None` when it is.
pub(crate) fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

/// Whether `ip` is a cloud instance-metadata endpoint (AWS/GCP/Azure/OpenStack
/// 169.254.169.254, AWS IPv6 fd00:ec2::254), also when embedded in IPv6.
pub(crate) fn is_metadata(ip: IpAddr) -> bool {
    const V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
    const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4 == V4,
        IpAddr::V6(v6) => v6 == V6 || embedded_v4(v6).is_some_and(|v4| v4 == V4),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if is_metadata(IpAddr::V4(ip)) {
        return Some("cloud metadata");
    }
    let class = match (a, b, c) {
        (0, _, _) => "this-network",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "carrier-grade NAT",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (synthetic range)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 (2002::/16)
/// IPv6 address: such an address reaches whatever that IPv4 address reaches.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if is_metadata(IpAddr::V6(ip)) {
        return Some("cloud metadata");
    }
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let s = ip.segments();
    let class = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique local (ULA)"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        "documentation"
    } else if s[0] == 0x100 && s[1..4] == [0, 0, 0] {
        "discard"
    } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d
        "IPv4-compatible"
    } else {
        return None;
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        special_purpose(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn rebinding_targets_are_refused() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.255.1", "private"),
            ("192.168.1.1", "private"),
            ("100.100.100.200", "carrier-grade NAT"),
            ("169.254.169.254", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "unique local (ULA)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("0.0.0.0", "this-network"),
            ("::", "unspecified"),
            ("198.18.0.1", "benchmarking (synthetic range)"),
            ("239.1.1.1", "multicast"),
            ("255.255.255.255", "reserved"),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
        assert_eq!(class("172.32.0.1"), None);
        assert_eq!(class("64:ff9b::808:808"), None);
    }
}
