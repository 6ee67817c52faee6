//! Synthetic addresses: each declared name that is looked up gets one IPv4 and one
//! IPv6 address from the configured ranges, stable for the life of the sandbox, and
//! the reverse map address → name. A connection to a synthetic address is therefore
//! unambiguously for that one name. Pure data; the service keeps it behind a mutex.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

#[derive(Debug)]
pub(crate) struct SyntheticPool {
    v4: Ipv4Net,
    v6: Ipv6Net,
    by_name: HashMap<String, (Ipv4Addr, Ipv6Addr)>,
    by_addr: HashMap<IpAddr, String>,
    /// Offset of the next pair inside both ranges; 0 (the network address) is skipped.
    next: u128,
    capacity: u128,
}

impl SyntheticPool {
    pub(crate) fn new(v4: Ipv4Net, v6: Ipv6Net) -> Self {
        let v4 = v4.trunc();
        let v6 = v6.trunc();
        // Offsets 1 ..= size-2 in IPv4 (no network, no broadcast address); IPv6 is
        // capped the same way so both families always come in pairs.
        let v4_hosts = (1u128 << (32 - u32::from(v4.prefix_len()))).saturating_sub(2);
        let v6_hosts = 1u128
            .checked_shl(128 - u32::from(v6.prefix_len()))
            .unwrap_or(u128::MAX)
            .saturating_sub(2);
        SyntheticPool {
            v4,
            v6,
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            next: 1,
            capacity: v4_hosts.min(v6_hosts),
        }
    }

    /// The pair for `name` (lower-case, no trailing dot), assigning one on first use;
    /// `None` once the ranges are exhausted.
    pub(crate) fn assign(&mut self, name: &str) -> Option<(Ipv4Addr, Ipv6Addr)> {
        if let Some(pair) = self.by_name.get(name) {
            return Some(*pair);
        }
        if self.next > self.capacity {
            return None;
        }
        let offset = self.next;
        self.next += 1;
        // Offsets never exceed the v4 range size, so they fit in u32.
        let v4 = Ipv4Addr::from(u32::from(self.v4.network()).wrapping_add(offset as u32));
        let v6 = Ipv6Addr::from(u128::from(self.v6.network()).wrapping_add(offset));
        self.by_name.insert(name.to_owned(), (v4, v6));
        self.by_addr.insert(IpAddr::V4(v4), name.to_owned());
        self.by_addr.insert(IpAddr::V6(v6), name.to_owned());
        Some((v4, v6))
    }

    /// The name a synthetic address was issued for.
    pub(crate) fn name_for(&self, ip: IpAddr) -> Option<&str> {
        self.by_addr.get(&ip).map(String::as_str)
    }

    /// Whether `ip` lies in one of the synthetic ranges (issued or not).
    pub(crate) fn in_range(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(&v4),
            IpAddr::V6(v6) => self.v6.contains(&v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_pairs_and_reverse_map() {
        let mut p = SyntheticPool::new(
            "198.18.0.0/15".parse().unwrap(),
            "fd5b:5b5b:5b5b::/64".parse().unwrap(),
        );
        let a = p.assign("api.example.com").unwrap();
        let b = p.assign("cdn.example.com").unwrap();
        assert_eq!(a.0, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(a.1, "fd5b:5b5b:5b5b::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b.0, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(p.assign("api.example.com").unwrap(), a);
        assert_eq!(p.name_for(a.0.into()), Some("api.example.com"));
        assert_eq!(p.name_for(b.1.into()), Some("cdn.example.com"));
        assert_eq!(p.name_for("198.18.0.3".parse().unwrap()), None);
        assert!(p.in_range("198.19.255.254".parse().unwrap()));
        assert!(!p.in_range("198.20.0.1".parse().unwrap()));
    }

    #[test]
    fn exhaustion_is_reported_not_wrapped() {
        let mut p =
            SyntheticPool::new("10.0.0.0/30".parse().unwrap(), "fd00::/64".parse().unwrap());
        assert!(p.assign("a").is_some());
        assert!(p.assign("b").is_some());
        assert_eq!(p.assign("c"), None);
        assert!(p.assign("a").is_some());
    }
}
